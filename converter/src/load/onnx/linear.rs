//! Recognizes `nn.Linear` applications in an ONNX graph, in every form the exporters and
//! ONNX Runtime's quantizer write, and recovers the weight as Hugging Face stores it
//! (`[out, in]`) plus the bias.
//!
//! Forms (x is the activation the search starts from):
//!
//! 1. `MatMul(x, W)` with a constant `W` `[in, out]` (the exporter's pre-transposed copy),
//!    optionally followed by `Add(b, .)` / `Add(., b)` with a constant `b` `[out]`.
//! 2. `Gemm(x, W, b)` (2-D inputs: pooler, classifier); `transB = 1` means `W` is
//!    `[out, in]` already; `transA = 0`, `alpha = beta = 1` are required.
//! 3. ONNX Runtime dynamic quantization:
//!    `DynamicQuantizeLinear(x) -> (xq, xs, xz)`,
//!    `MatMulInteger(xq, Wq, xz, Wzp) -> Cast(to=float) -> Mul(., Mul(xs, Ws))`, then the
//!    bias `Add`. `Wq` is int8/uint8 `[in, out]`; the weight is dequantized as
//!    `(Wq - Wzp) * Ws` (per tensor, or per output column when `Ws`/`Wzp` have `out` values).
//!
//! `W` itself may also be `Transpose(perm=[1,0])` of a constant (an export without constant
//! folding), which is folded here.

use super::graph::{attr_f, attr_i, attr_ints, describe, dtype, Const, Graph, Values};
use crate::load::Tensor;
use anyhow::{bail, ensure, Result};

/// One recognized Linear layer.
#[derive(Debug, Clone)]
pub(crate) struct Linear {
    /// Weight as `[out, in]`.
    pub weight: Tensor,
    /// Bias `[out]`, if the graph adds one.
    pub bias: Option<Tensor>,
    /// The value holding `x W^T + b`.
    pub output: String,
    /// Largest quantization step of the weight when it was dequantized from int8.
    pub quant_step: Option<f32>,
    /// Names of the constants the weight and bias were read from (cheap sharing check).
    pub keys: (String, Option<String>),
    /// The op that did the multiplication, for messages.
    pub op: String,
}

impl Linear {
    /// Output features.
    pub fn out_features(&self) -> usize {
        self.weight.shape[0]
    }
    /// Input features.
    pub fn in_features(&self) -> usize {
        self.weight.shape[1]
    }
}

/// Transposes a row-major `[r, c]` matrix into `[c, r]`.
pub(crate) fn transpose(rows: usize, cols: usize, data: &[f32]) -> Vec<f32> {
    let mut out = vec![0f32; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

/// A constant float matrix, following a `Transpose` of a constant if needed.
/// Returns `None` when `name` is not constant (an activation).
/// `(shape, row-major values, storage key)` of a constant matrix.
type Matrix = (Vec<usize>, Vec<f32>, String);

fn const_matrix(g: &Graph, name: &str) -> Result<Option<Matrix>> {
    if let Some(c) = g.constant(name)? {
        let (shape, data) = c.into_f32(&format!("weight {name:?}"))?;
        return Ok(Some((shape, data, g.const_key(name))));
    }
    if let Some(p) = g.producer(name) {
        let n = g.node(p);
        if n.op_type == "Transpose" && n.input.len() == 1 && g.is_const(&n.input[0]) {
            let perm = attr_ints(n, "perm").unwrap_or(&[1, 0]);
            ensure!(
                perm == [1, 0],
                "{}: only a 2-D transpose of a weight is supported",
                describe(n)
            );
            let (shape, data) = g
                .require_const(&n.input[0], "transposed weight")?
                .into_f32("transposed weight")?;
            ensure!(shape.len() == 2, "{}: weight is not 2-D", describe(n));
            return Ok(Some((
                vec![shape[1], shape[0]],
                transpose(shape[0], shape[1], &data),
                g.const_key(&n.input[0]),
            )));
        }
    }
    Ok(None)
}

/// If `out` (the product `x W^T`, `[.., n_out]`) is followed by exactly one `Add` with a
/// constant `[n_out]`, returns (bias, bias key, value after the add).
fn bias_after(g: &Graph, out: &str, n_out: usize) -> Result<Option<(Tensor, String, String)>> {
    let cons = g.data_consumers(out);
    if cons.len() != 1 || g.is_graph_output(out) {
        return Ok(None);
    }
    let n = g.node(cons[0]);
    if n.op_type != "Add" || n.input.len() != 2 || n.output.len() != 1 {
        return Ok(None);
    }
    let other = if g.same(&n.input[0], out) {
        &n.input[1]
    } else {
        &n.input[0]
    };
    let Some(c) = g.constant(other)? else {
        return Ok(None);
    };
    let (shape, data) = c.into_f32(&format!("bias of {}", describe(n)))?;
    // Accept [n_out] and [1, .., n_out] (broadcast along the last axis only).
    let ok = shape.last() == Some(&n_out) && shape.iter().rev().skip(1).all(|&d| d == 1);
    ensure!(
        ok,
        "{}: bias shape {shape:?} does not broadcast over the last axis of {n_out} features",
        describe(n)
    );
    Ok(Some((
        Tensor {
            shape: vec![n_out],
            data,
        },
        g.const_key(other),
        n.output[0].clone(),
    )))
}

/// Finds every Linear whose input is `x`.
pub(crate) fn linears_from(g: &Graph, x: &str) -> Result<Vec<Linear>> {
    let mut out = Vec::new();
    for &i in g.consumers(x) {
        let n = g.node(i);
        match n.op_type.as_str() {
            "MatMul" if n.input.len() == 2 && g.same(&n.input[0], x) => {
                let Some((shape, data, key)) = const_matrix(g, &n.input[1])? else {
                    continue;
                };
                ensure!(
                    shape.len() == 2,
                    "{}: weight has shape {shape:?}, expected 2-D",
                    describe(n)
                );
                let (k, m) = (shape[0], shape[1]);
                let weight = Tensor {
                    shape: vec![m, k],
                    data: transpose(k, m, &data),
                };
                out.push(finish(
                    g,
                    n.output[0].clone(),
                    weight,
                    key,
                    None,
                    describe(n),
                )?);
            }
            "Gemm" if n.input.len() >= 2 && g.same(&n.input[0], x) => {
                let Some((shape, data, key)) = const_matrix(g, &n.input[1])? else {
                    continue;
                };
                ensure!(
                    shape.len() == 2,
                    "{}: weight has shape {shape:?}, expected 2-D",
                    describe(n)
                );
                ensure!(
                    attr_i(n, "transA", 0) == 0,
                    "{}: transA=1 is not supported",
                    describe(n)
                );
                ensure!(
                    attr_f(n, "alpha", 1.0) == 1.0,
                    "{}: alpha != 1 is not supported",
                    describe(n)
                );
                let weight = if attr_i(n, "transB", 0) == 1 {
                    Tensor {
                        shape: shape.clone(),
                        data,
                    }
                } else {
                    Tensor {
                        shape: vec![shape[1], shape[0]],
                        data: transpose(shape[0], shape[1], &data),
                    }
                };
                let n_out = weight.shape[0];
                let mut bias = None;
                if let Some(c) = n.input.get(2).filter(|s| !s.is_empty()) {
                    ensure!(
                        attr_f(n, "beta", 1.0) == 1.0,
                        "{}: beta != 1 is not supported",
                        describe(n)
                    );
                    let (bshape, bdata) =
                        g.require_const(c, &describe(n))?.into_f32(&describe(n))?;
                    ensure!(
                        bshape.last() == Some(&n_out)
                            && bshape.iter().rev().skip(1).all(|&d| d == 1),
                        "{}: bias shape {bshape:?} does not match {n_out} outputs",
                        describe(n)
                    );
                    bias = Some((
                        Tensor {
                            shape: vec![n_out],
                            data: bdata,
                        },
                        g.const_key(c),
                    ));
                }
                let lin = match bias {
                    Some((b, bkey)) => Linear {
                        weight,
                        bias: Some(b),
                        output: n.output[0].clone(),
                        quant_step: None,
                        keys: (key, Some(bkey)),
                        op: describe(n),
                    },
                    None => finish(g, n.output[0].clone(), weight, key, None, describe(n))?,
                };
                out.push(lin);
            }
            "DynamicQuantizeLinear" if n.input.len() == 1 && n.output.len() == 3 => {
                for &j in g.consumers(&n.output[0]) {
                    out.push(quantized_linear(g, n, j)?);
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Adds the bias (if any) after the multiplication and builds the [`Linear`].
fn finish(
    g: &Graph,
    product: String,
    weight: Tensor,
    key: String,
    step: Option<f32>,
    op: String,
) -> Result<Linear> {
    let n_out = weight.shape[0];
    Ok(match bias_after(g, &product, n_out)? {
        Some((b, bkey, output)) => Linear {
            weight,
            bias: Some(b),
            output,
            quant_step: step,
            keys: (key, Some(bkey)),
            op,
        },
        None => Linear {
            weight,
            bias: None,
            output: product,
            quant_step: step,
            keys: (key, None),
            op,
        },
    })
}

/// Single data consumer of `v` with the given op type, or an error naming what was found.
fn only_consumer<'g>(
    g: &'g Graph,
    v: &str,
    op: &str,
    ctx: &str,
) -> Result<&'g tract_onnx::pb::NodeProto> {
    let cons = g.data_consumers(v);
    ensure!(
        cons.len() == 1 && !g.is_graph_output(v),
        "{ctx}: expected {v:?} to be read only by a {op}, found {} readers",
        cons.len()
    );
    let n = g.node(cons[0]);
    ensure!(
        n.op_type == op,
        "{ctx}: expected {op} after {v:?}, found {}",
        describe(n)
    );
    Ok(n)
}

/// Recognizes `MatMulInteger -> Cast -> Mul(scales)` fed by the `DynamicQuantizeLinear`
/// node `dq`, starting at its consumer `mm_idx`. Anything else reading the quantized
/// activation is refused: ONNX Runtime's dynamic quantization produces only this.
fn quantized_linear(g: &Graph, dq: &tract_onnx::pb::NodeProto, mm_idx: usize) -> Result<Linear> {
    let mm = g.node(mm_idx);
    let ctx = describe(mm);
    ensure!(
        mm.op_type == "MatMulInteger",
        "{ctx}: a dynamically quantized activation is read by {}, expected MatMulInteger",
        mm.op_type
    );
    ensure!(
        mm.input.len() >= 3
            && g.same(&mm.input[0], &dq.output[0])
            && g.same(&mm.input[2], &dq.output[2]),
        "{ctx}: inputs are not (quantized activation, weight, activation zero point, ...)"
    );
    let wq = g.require_const(&mm.input[1], &format!("{ctx} weight"))?;
    ensure!(
        wq.shape.len() == 2,
        "{ctx}: quantized weight has shape {:?}, expected 2-D",
        wq.shape
    );
    let (k, m) = (wq.shape[0], wq.shape[1]);
    let zp = match mm.input.get(3).filter(|s| !s.is_empty()) {
        Some(z) => {
            let c = g.require_const(z, &format!("{ctx} weight zero point"))?;
            ensure!(
                std::mem::discriminant(&c.values) == std::mem::discriminant(&wq.values),
                "{ctx}: weight zero point type differs from the weight type"
            );
            c.as_i64s().unwrap_or_default()
        }
        None => vec![0],
    };
    ensure!(
        zp.len() == 1 || zp.len() == m,
        "{ctx}: weight zero point has {} values for {m} columns",
        zp.len()
    );
    // MatMulInteger -> Cast(float) -> Mul(., scales)
    let cast = only_consumer(g, &mm.output[0], "Cast", &ctx)?;
    ensure!(
        attr_i(cast, "to", 0) == dtype::FLOAT as i64,
        "{}: does not cast to float32",
        describe(cast)
    );
    let mul = only_consumer(g, &cast.output[0], "Mul", &ctx)?;
    ensure!(mul.input.len() == 2, "{}: expected 2 inputs", describe(mul));
    let scales = if g.same(&mul.input[0], &cast.output[0]) {
        &mul.input[1]
    } else {
        &mul.input[0]
    };
    // scales = Mul(activation scale, weight scale), in either order.
    let sp = g.producer(scales).map(|i| g.node(i));
    let sp = match sp {
        Some(s) if s.op_type == "Mul" && s.input.len() == 2 => s,
        _ => bail!(
            "{ctx}: the integer product is not rescaled by Mul(activation scale, weight scale)"
        ),
    };
    let ws_name = if g.same(&sp.input[0], &dq.output[1]) {
        &sp.input[1]
    } else if g.same(&sp.input[1], &dq.output[1]) {
        &sp.input[0]
    } else {
        bail!("{ctx}: the rescale does not use the activation scale of the DynamicQuantizeLinear")
    };
    let (sshape, ws) = g
        .require_const(ws_name, &format!("{ctx} weight scale"))?
        .into_f32(&format!("{ctx} weight scale"))?;
    ensure!(
        ws.len() == 1 || (ws.len() == m && sshape.last() == Some(&m)),
        "{ctx}: weight scale has shape {sshape:?} for {m} columns"
    );
    ensure!(
        ws.iter().all(|s| s.is_finite() && *s >= 0.0),
        "{ctx}: weight scale is negative or not finite"
    );
    // Dequantize into [out = m, in = k].
    let q: Vec<i64> = wq
        .as_i64s()
        .ok_or_else(|| anyhow::anyhow!("{ctx}: quantized weight is not an integer tensor"))?;
    ensure!(
        matches!(wq.values, Values::I8(_) | Values::U8(_)),
        "{ctx}: quantized weight must be int8 or uint8"
    );
    let mut data = vec![0f32; k * m];
    for r in 0..k {
        for c in 0..m {
            let z = if zp.len() == 1 { zp[0] } else { zp[c] };
            let s = if ws.len() == 1 { ws[0] } else { ws[c] };
            data[c * k + r] = ((q[r * m + c] - z) as f32) * s;
        }
    }
    let step = ws.iter().cloned().fold(0f32, f32::max);
    let weight = Tensor {
        shape: vec![m, k],
        data,
    };
    let key = format!("{}|{}", g.const_key(&mm.input[1]), g.const_key(ws_name));
    finish(g, mul.output[0].clone(), weight, key, Some(step), ctx)
}

/// Dequantizes an embedding table read as `Gather(q_table) -> DequantizeLinear(., s, zp)`.
/// Returns (dequantized table, scale, value after the dequantization).
pub(crate) fn dequantize_table(
    g: &Graph,
    table: &Const,
    gathered: &str,
    ctx: &str,
) -> Result<(Vec<f32>, f32, String)> {
    let dq = only_consumer(g, gathered, "DequantizeLinear", ctx)?;
    ensure!(dq.input.len() >= 2, "{}: missing scale", describe(dq));
    let s = g.require_const(&dq.input[1], ctx)?;
    let s = match (&s.values, s.len()) {
        (Values::F32(v), 1) => v[0],
        _ => bail!("{}: only a single float32 scale is supported", describe(dq)),
    };
    ensure!(
        s.is_finite() && s >= 0.0,
        "{}: scale is negative or not finite",
        describe(dq)
    );
    let zp = match dq.input.get(2).filter(|z| !z.is_empty()) {
        Some(z) => {
            let c = g.require_const(z, ctx)?;
            ensure!(
                c.len() == 1,
                "{}: only a single zero point is supported",
                describe(dq)
            );
            ensure!(
                std::mem::discriminant(&c.values) == std::mem::discriminant(&table.values),
                "{}: zero point type differs from the table type",
                describe(dq)
            );
            c.as_i64s().and_then(|v| v.first().copied()).unwrap_or(0)
        }
        None => 0,
    };
    let q = table
        .as_i64s()
        .ok_or_else(|| anyhow::anyhow!("{ctx}: table is not an integer tensor"))?;
    let data = q.iter().map(|&v| ((v - zp) as f32) * s).collect();
    Ok((data, s, dq.output[0].clone()))
}
