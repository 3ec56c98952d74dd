//! LayerNorm as exporters before opset 17 spell it, fused back into one
//! `LayerNormalization` node so that the rest of the reader sees one graph shape.
//!
//! `torch.onnx.export` with `opset_version < 17` (and tools built on it, such as
//! `optimum`'s default opset 14) writes `nn.LayerNorm` as
//!
//! ```text
//! m = ReduceMean(x, axes=[-1])      d = Sub(x, m)        v = ReduceMean(Pow(d, 2), axes=[-1])
//! y = Add(Mul(Div(d, Sqrt(Add(v, eps))), gamma), beta)
//! ```
//!
//! which is `LayerNormalization(x, gamma, beta, epsilon=eps, axis=-1)` exactly as ALBERT
//! computes it. Only that dataflow is fused, with every intermediate value read by the
//! next step alone (`d` by the `Pow` and the `Div`), the last axis reduced with
//! `keepdims`, the exponent the constant 2 (or `Mul(d, d)`), `eps` a finite constant and
//! `gamma` and `beta` constants; anything else is left as it is and refused later by the
//! reader, naming what it found.

use super::graph::{attr_i, attr_ints, Graph};
use anyhow::Result;
use std::path::Path;
use tract_onnx::pb::{AttributeProto, GraphProto, NodeProto};

/// `AttributeProto.AttributeType` codes.
const ATTR_FLOAT: i32 = 1;
const ATTR_INT: i32 = 2;

/// One decomposed LayerNorm: the nodes it spans and the node replacing the last of them.
struct Found {
    nodes: [usize; 9],
    fused: NodeProto,
}

/// `g` with every decomposed LayerNorm fused; `None` when there is none.
pub(crate) fn layer_norms(g: &GraphProto, dir: Option<&Path>) -> Result<Option<GraphProto>> {
    let graph = Graph::new(g, dir)?;
    let found: Vec<Found> = (0..graph.nodes().len())
        .filter_map(|i| decomposed_at(&graph, i))
        .collect();
    if found.is_empty() {
        return Ok(None);
    }
    let mut drop = vec![false; g.node.len()];
    let mut replace = std::collections::HashMap::new();
    for f in &found {
        for &i in &f.nodes {
            drop[i] = true;
        }
        // The final Add: every input of the fused node exists before it.
        replace.insert(f.nodes[8], f.fused.clone());
    }
    let mut out = g.clone();
    out.node = g
        .node
        .iter()
        .enumerate()
        .filter_map(|(i, n)| match replace.remove(&i) {
            Some(fused) => Some(fused),
            None if drop[i] => None,
            None => Some(n.clone()),
        })
        .collect();
    Ok(Some(out))
}

/// The single node reading `v` (shape reads aside), if it has op type `op`.
fn only_reader(g: &Graph, v: &str, op: &str) -> Option<usize> {
    match g.data_consumers(v).as_slice() {
        [i] if g.node(*i).op_type == op && g.node(*i).domain.is_empty() => Some(*i),
        _ => None,
    }
}

/// Whether `n` is a `ReduceMean` over the last axis of `x` keeping the dimension.
fn mean_last_axis(g: &Graph, n: usize, x: &str) -> bool {
    let n = g.node(n);
    n.op_type == "ReduceMean"
        && n.domain.is_empty()
        && n.input.len() == 1
        && g.same(&n.input[0], x)
        && attr_ints(n, "axes") == Some(&[-1][..])
        && attr_i(n, "keepdims", 1) == 1
}

/// For a binary node reading `v`, its other input if that is a constant.
fn const_operand<'n>(g: &Graph, n: &'n NodeProto, v: &str) -> Option<&'n str> {
    match n.input.as_slice() {
        [a, b] if g.same(a, v) && g.is_const(b) => Some(b),
        [a, b] if g.same(b, v) && g.is_const(a) => Some(a),
        _ => None,
    }
}

/// The decomposed LayerNorm whose first `ReduceMean` is node `r1`, if it is one.
fn decomposed_at(g: &Graph, r1: usize) -> Option<Found> {
    let n1 = g.node(r1);
    let x = n1.input.first()?;
    if !mean_last_axis(g, r1, x) {
        return None;
    }
    let mean = &n1.output[0];
    let sub = only_reader(g, mean, "Sub")?;
    let ns = g.node(sub);
    if !(ns.input.len() == 2 && g.same(&ns.input[0], x) && g.same(&ns.input[1], mean)) {
        return None;
    }
    let d = &ns.output[0];
    // `d` feeds the square and the division, nothing else.
    let readers = g.data_consumers(d);
    if readers.len() != 2 {
        return None;
    }
    let is_square = |i: usize| {
        let n = g.node(i);
        n.domain.is_empty()
            && match n.op_type.as_str() {
                "Pow" => {
                    n.input.len() == 2
                        && g.same(&n.input[0], d)
                        && g.constant(&n.input[1])
                            .ok()
                            .flatten()
                            .and_then(|c| c.scalar())
                            == Some(2.0)
                }
                "Mul" => n.input.len() == 2 && g.same(&n.input[0], d) && g.same(&n.input[1], d),
                _ => false,
            }
    };
    let (sq, div) = match (readers[0], readers[1]) {
        (a, b) if is_square(a) && g.node(b).op_type == "Div" => (a, b),
        (a, b) if is_square(b) && g.node(a).op_type == "Div" => (b, a),
        _ => return None,
    };
    let r2 = only_reader(g, &g.node(sq).output[0], "ReduceMean")?;
    if !mean_last_axis(g, r2, &g.node(sq).output[0]) {
        return None;
    }
    let add_eps = only_reader(g, &g.node(r2).output[0], "Add")?;
    let eps_name = const_operand(g, g.node(add_eps), &g.node(r2).output[0])?;
    let eps = g.constant(eps_name).ok().flatten()?.scalar()?;
    if !(eps.is_finite() && eps >= 0.0) {
        return None;
    }
    let sqrt = only_reader(g, &g.node(add_eps).output[0], "Sqrt")?;
    let nd = g.node(div);
    if !(nd.domain.is_empty()
        && nd.input.len() == 2
        && g.same(&nd.input[0], d)
        && g.same(&nd.input[1], &g.node(sqrt).output[0])
        && g.data_consumers(&g.node(sqrt).output[0]) == [div])
    {
        return None;
    }
    let mul = only_reader(g, &nd.output[0], "Mul")?;
    let gamma = const_operand(g, g.node(mul), &nd.output[0])?;
    let add = only_reader(g, &g.node(mul).output[0], "Add")?;
    let beta = const_operand(g, g.node(add), &g.node(mul).output[0])?;
    let last = g.node(add);
    let attr = |name: &str, r#type: i32, f: f32, i: i64| AttributeProto {
        name: name.into(),
        r#type,
        f,
        i,
        ..Default::default()
    };
    let fused = NodeProto {
        op_type: "LayerNormalization".into(),
        name: format!("{}/fused_layer_norm", last.name),
        input: vec![x.clone(), gamma.to_string(), beta.to_string()],
        output: vec![last.output[0].clone()],
        attribute: vec![
            attr("axis", ATTR_INT, 0.0, -1),
            attr("epsilon", ATTR_FLOAT, eps as f32, 0),
        ],
        ..Default::default()
    };
    Some(Found {
        nodes: [r1, sub, sq, r2, add_eps, sqrt, div, mul, add],
        fused,
    })
}
