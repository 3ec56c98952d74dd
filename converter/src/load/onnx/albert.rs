//! Recognizes the ALBERT forward pass in an ONNX graph by its dataflow, not by names.
//!
//! The walk follows the model the way `modeling_albert.py` computes it (see
//! `shared/fixtures/README.md` section 4):
//!
//! 1. **Embeddings.** Three `Gather`s read 2-D tables (float, or uint8 + `DequantizeLinear`
//!    for ONNX Runtime's int8 graphs). The one indexed by something that is not a graph
//!    input is the position table (its ids come from a constant `0..max` buffer). Of the two
//!    indexed by graph inputs, the larger table is the word table and the other the token
//!    type table (input names are only a tie-breaker). A graph without a `token_type_ids`
//!    input reads the token type table at a constant index 0 instead. Their sum (an `Add`
//!    tree) must feed a `LayerNormalization`.
//! 2. **Projection.** Exactly one Linear reads the embeddings LayerNorm
//!    (`embedding_hidden_mapping_in`). Three would mean BERT (no factorized embeddings).
//! 3. **Layer calls.** While exactly three Linears read the hidden state `h`, they are
//!    query/key/value: the one that reaches the left side of the score `MatMul` is the
//!    query, the right side the key, and the one meeting the `Softmax` output in the second
//!    `MatMul` is the value. The head split is read from the `Reshape` shape constants and the
//!    `Transpose` permutations are checked to give `[B, heads, S, d]` (and `[B, heads, d, S]`
//!    for the key). The score scaling must be `d^-0.5`. The context goes back to `[B, S, H]`
//!    into `attention.dense`, `Add(h, .)`, `LayerNormalization` (attention.LayerNorm), `ffn`,
//!    the activation, `ffn_output`, `Add(a, .)`, `LayerNormalization`
//!    (full_layer_layer_norm): the next `h`.
//! 4. **Activation.** The elementwise nodes between `ffn` and `ffn_output` are evaluated on
//!    sample points and compared with `gelu_new`, exact `gelu` and `relu`, so any spelling of
//!    those functions (Pow/Tanh, Erf, a `Gelu` op, `Relu`) is recognized, and anything else is
//!    refused.
//! 5. **Heads**, from what reads the last `h`: `Gather(h, 0, axis=1)` -> Linear -> `Tanh` is
//!    the pooler; a Linear on the pooled value is the sequence classifier; a Linear on `h`
//!    whose result is a graph output is the token classifier; one with two outputs split on
//!    the last axis is the QA head; Linear -> activation -> LayerNorm -> Linear to the vocab
//!    is the masked-LM head.

use super::graph::{attr_i, attr_ints, attr_s, describe, Const, Graph, Values};
use super::linear::{dequantize_table, linears_from, Linear};
use super::shapes::{shape_value, Dim};
use crate::load::Tensor;
use anyhow::{anyhow, bail, ensure, Result};
use std::collections::{BTreeSet, HashMap};

/// An embedding table and the value its lookup produces.
#[derive(Debug, Clone)]
pub(crate) struct Embedding {
    pub table: Tensor,
    pub quant_step: Option<f32>,
    /// Output of the lookup (after dequantization when quantized).
    pub output: String,
    /// The index input of the Gather.
    pub index: String,
}

/// A `LayerNormalization` over the last axis.
#[derive(Debug, Clone)]
pub(crate) struct Norm {
    pub gamma: Tensor,
    pub beta: Tensor,
    pub eps: f32,
    pub output: String,
    pub keys: (String, String),
}

/// One application of an ALBERT layer.
#[derive(Debug, Clone)]
pub(crate) struct LayerCall {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    pub dense: Linear,
    pub attention_norm: Norm,
    pub ffn: Linear,
    pub ffn_output: Linear,
    pub full_norm: Norm,
    pub heads: usize,
    pub act: &'static str,
}

/// The task head found after the encoder.
#[derive(Debug, Clone)]
pub(crate) enum Head {
    /// `AlbertModel`: pooler present when `pooler_output` (or its use) is in the graph.
    Base { pooler: Option<Linear> },
    /// `AlbertForSequenceClassification`.
    SequenceClassification { pooler: Linear, classifier: Linear },
    /// `AlbertForTokenClassification`.
    TokenClassification { classifier: Linear },
    /// `AlbertForQuestionAnswering`.
    QuestionAnswering { qa_outputs: Linear },
    /// `AlbertForMaskedLM`.
    MaskedLm {
        dense: Linear,
        act: &'static str,
        norm: Norm,
        decoder: Linear,
    },
}

/// Everything recognized in the graph.
#[derive(Debug, Clone)]
pub(crate) struct Albert {
    pub word: Embedding,
    pub position: Embedding,
    pub token_type: Embedding,
    pub embedding_norm: Norm,
    pub projection: Linear,
    pub calls: Vec<LayerCall>,
    pub head: Head,
}

/// Runs the whole recognition.
pub(crate) fn recognize(g: &Graph, opset: i64) -> Result<Albert> {
    let (word, position, token_type) = embeddings(g)?;
    let embedding_norm = embedding_sum_norm(g, &word, &position, &token_type)?;
    let e = word.table.shape[1];
    ensure!(
        embedding_norm.gamma.shape[0] == e,
        "embeddings LayerNorm has {} features, the tables {e}",
        embedding_norm.gamma.shape[0]
    );

    // 2. The factorized projection E -> H.
    let lins = linears_from(g, &embedding_norm.output)?;
    let projection = match lins.len() {
        1 => lins.into_iter().next().ok_or_else(|| anyhow!("unreachable"))?,
        0 => bail!("no Linear (embedding_hidden_mapping_in) reads the embeddings LayerNorm output"),
        3 => bail!("the embeddings LayerNorm output feeds 3 Linears directly: there is no embedding_hidden_mapping_in projection, so this looks like BERT, not ALBERT"),
        n => bail!("the embeddings LayerNorm output feeds {n} Linears, expected 1 (embedding_hidden_mapping_in)"),
    };
    ensure!(
        projection.in_features() == e,
        "embedding_hidden_mapping_in takes {} features, embeddings have {e}",
        projection.in_features()
    );
    ensure!(
        projection.bias.is_some(),
        "embedding_hidden_mapping_in ({}) has no bias",
        projection.op
    );
    let hidden = projection.out_features();

    // 3. Layer calls, as long as three Linears read the hidden state.
    let mut h = projection.output.clone();
    let mut calls = Vec::new();
    for _ in 0..g.nodes().len() {
        let lins = linears_from(g, &h)?;
        if lins.len() != 3 {
            ensure!(
                lins.len() <= 1 || !calls.is_empty(),
                "the projected embeddings feed {} Linears, expected 3 (query, key, value)",
                lins.len()
            );
            break;
        }
        let call = layer_call(g, &h, lins, hidden, opset, calls.len())?;
        h = call.full_norm.output.clone();
        calls.push(call);
    }
    ensure!(!calls.is_empty(), "no attention layer (three Linears query/key/value on the hidden state) after the embedding projection");
    let first = &calls[0];
    for (i, c) in calls.iter().enumerate() {
        ensure!(
            c.heads == first.heads && c.act == first.act && c.ffn.out_features() == first.ffn.out_features(),
            "layer call {i} has a different shape or activation than layer call 0 ({} heads, {}, intermediate {} vs {} heads, {}, intermediate {})",
            c.heads,
            c.act,
            c.ffn.out_features(),
            first.heads,
            first.act,
            first.ffn.out_features()
        );
    }
    let head = head(g, &h, hidden, e, word.table.shape[0], opset)?;
    check_outputs(g, &h, &head)?;
    Ok(Albert {
        word,
        position,
        token_type,
        embedding_norm,
        projection,
        calls,
        head,
    })
}

/// Finds the three embedding lookups and tells them apart.
fn embeddings(g: &Graph) -> Result<(Embedding, Embedding, Embedding)> {
    let mut found = Vec::new();
    for n in g.nodes() {
        if n.op_type != "Gather" || n.input.len() != 2 || attr_i(n, "axis", 0) != 0 {
            continue;
        }
        let Some(table) = g.constant(&n.input[0])? else {
            continue;
        };
        if table.shape.len() != 2 {
            continue;
        }
        let ctx = format!("embedding lookup {}", describe(n));
        let (shape, data, step, output) = match &table.values {
            Values::F32(v) => (table.shape.clone(), v.clone(), None, n.output[0].clone()),
            Values::U8(_) | Values::I8(_) => {
                let (data, s, out) = dequantize_table(g, &table, &n.output[0], &ctx)?;
                (table.shape.clone(), data, Some(s), out)
            }
            Values::I64(_) => continue, // an integer buffer, not an embedding table
        };
        found.push(Embedding {
            table: Tensor { shape, data },
            quant_step: step,
            output,
            index: n.input[1].clone(),
        });
    }
    ensure!(!found.is_empty(), "no embedding lookup (Gather on a 2-D weight table) found: this is not a transformer text model");
    ensure!(
        found.len() == 3,
        "found {} embedding lookups (Gather on a 2-D weight table), expected 3 (word, position, token type)",
        found.len()
    );
    let from_input: Vec<bool> = found.iter().map(|e| g.is_graph_input(&e.index)).collect();
    let n_inputs = from_input.iter().filter(|&&b| b).count();
    let pick = |hint: &str| {
        found
            .iter()
            .position(|e| g.resolve(&e.index).map(|r| r == hint).unwrap_or(false))
    };
    let (wi, pi, ti) = match n_inputs {
        2 => {
            let pi = from_input.iter().position(|&b| !b).ok_or_else(|| anyhow!("unreachable"))?;
            let mut rest: Vec<usize> = (0..3).filter(|&i| i != pi).collect();
            // Larger table = word embeddings; equal sizes fall back to the input names.
            rest.sort_by_key(|&i| std::cmp::Reverse(found[i].table.shape[0]));
            let (a, b) = (rest[0], rest[1]);
            if found[a].table.shape[0] == found[b].table.shape[0] {
                match (pick("input_ids"), pick("token_type_ids")) {
                    (Some(w), Some(t)) if w != t => (w, pi, t),
                    _ => bail!("cannot tell the word and token type embeddings apart: both tables have {} rows", found[a].table.shape[0]),
                }
            } else {
                (a, pi, b)
            }
        }
        3 => match (pick("input_ids"), pick("position_ids"), pick("token_type_ids")) {
            (Some(w), Some(p), Some(t)) if w != p && p != t && w != t => (w, p, t),
            _ => bail!("all three embedding lookups are indexed by graph inputs and the inputs are not named input_ids / position_ids / token_type_ids"),
        },
        // An export without a `token_type_ids` input (HF fills in type 0): the token type
        // lookup reads a constant zero index.
        1 => {
            let wi = from_input.iter().position(|&b| b).ok_or_else(|| anyhow!("unreachable"))?;
            let others: Vec<usize> = (0..3).filter(|&i| i != wi).collect();
            let zero = [
                zero_ids(g, &found[others[0]].index)?,
                zero_ids(g, &found[others[1]].index)?,
            ];
            match zero {
                [true, false] => (wi, others[1], others[0]),
                [false, true] => (wi, others[0], others[1]),
                _ => bail!("one embedding lookup is indexed by a graph input: of the other two, one must read positions 0..S-1 and the other token type 0 for every token"),
            }
        }
        n => bail!("{n} of the 3 embedding lookups are indexed by graph inputs, expected 2 (input_ids, token_type_ids), or 1 with token type 0 built in"),
    };
    let e = found[wi].table.shape[1];
    for (name, i) in [("position", pi), ("token type", ti)] {
        ensure!(
            found[i].table.shape[1] == e,
            "the {name} embedding table is {:?}, the word table {:?}",
            found[i].table.shape,
            found[wi].table.shape
        );
    }
    check_position_ids(g, &found[pi].index)?;
    let mut v: Vec<Option<Embedding>> = found.into_iter().map(Some).collect();
    let mut take = |i: usize| v[i].take().ok_or_else(|| anyhow!("unreachable"));
    Ok((take(wi)?, take(pi)?, take(ti)?))
}

/// Whether the ids at `index` are the constant 0 for every token: a zero constant (or
/// `ConstantOfShape` of 0) through ops that pick or reshape elements, as exports without a
/// `token_type_ids` input compute HF's default token types.
fn zero_ids(g: &Graph, index: &str) -> Result<bool> {
    let mut cur = index.to_string();
    for _ in 0..8 {
        if let Some(c) = g.constant(&cur)? {
            return Ok(c
                .as_i64s()
                .is_some_and(|v| !v.is_empty() && v.iter().all(|&x| x == 0)));
        }
        let Some(n) = g.producer(&cur).map(|i| g.node(i)) else {
            return Ok(false);
        };
        match n.op_type.as_str() {
            "ConstantOfShape" => {
                return Ok(
                    match super::graph::attr(n, "value").and_then(|a| a.t.as_ref()) {
                        None => true, // the default value is 0
                        Some(t) => super::graph::decode_tensor(t, None)?
                            .as_i64s()
                            .is_some_and(|v| v.iter().all(|&x| x == 0)),
                    },
                );
            }
            // Ops that only pick, repeat or reshape elements of their first input: zeros
            // stay zeros (transformers 5 gathers its zero buffer at the position ids).
            "Slice" | "Expand" | "Unsqueeze" | "Squeeze" | "Cast" | "Reshape" | "Gather"
            | "GatherElements" => {}
            _ => return Ok(false),
        }
        match n.input.first() {
            Some(i) => cur = i.clone(),
            None => return Ok(false),
        }
    }
    Ok(false)
}

/// The runtime uses positions `0..S-1` (HF's default `position_ids`). Checks that the graph
/// computes exactly that: a slice from 0 with step 1 of a constant `0, 1, 2, ...` buffer, or
/// `Range(0, S, 1)`, through shape-only ops. A `position_ids` graph input is accepted too
/// (the caller supplies them; HF's default is the same `0..S-1`).
fn check_position_ids(g: &Graph, index: &str) -> Result<()> {
    let mut cur = index.to_string();
    for _ in 0..8 {
        if g.is_graph_input(&cur) {
            return Ok(());
        }
        if let Some(c) = g.constant(&cur)? {
            let v = c
                .as_i64s()
                .ok_or_else(|| anyhow!("position ids are not integers"))?;
            let last = c.shape.last().copied().unwrap_or(v.len()).max(1);
            ensure!(
                v.iter().enumerate().all(|(i, &x)| x == (i % last) as i64),
                "the position ids buffer is not 0, 1, 2, ...: this reader only supports absolute positions from 0"
            );
            return Ok(());
        }
        let n = g
            .producer(&cur)
            .map(|i| g.node(i))
            .ok_or_else(|| anyhow!("position ids come from nowhere"))?;
        let konst = |i: usize| -> Result<Option<Vec<i64>>> {
            match n.input.get(i).filter(|s| !s.is_empty()) {
                Some(s) => Ok(Some(
                    g.require_const(s, &describe(n))?
                        .as_i64s()
                        .unwrap_or_default(),
                )),
                None => Ok(None),
            }
        };
        match n.op_type.as_str() {
            "Slice" => {
                ensure!(
                    konst(1)?.is_some_and(|v| v.iter().all(|&x| x == 0)),
                    "{}: position ids do not start at 0",
                    describe(n)
                );
                ensure!(
                    konst(4)?.is_none_or(|v| v.iter().all(|&x| x == 1)),
                    "{}: position ids do not step by 1",
                    describe(n)
                );
            }
            "Range" => {
                ensure!(
                    konst(0)? == Some(vec![0]) && konst(2)? == Some(vec![1]),
                    "{}: position ids are not Range(0, S, 1)",
                    describe(n)
                );
                return Ok(());
            }
            "Expand" | "Unsqueeze" | "Squeeze" | "Cast" | "Reshape" => {}
            _ => bail!(
                "position ids are computed by {}; expected 0..S-1",
                describe(n)
            ),
        }
        cur = n
            .input
            .first()
            .cloned()
            .ok_or_else(|| anyhow!("{} has no input", describe(n)))?;
    }
    bail!("cannot follow how the position ids are computed")
}

/// Parses a `LayerNormalization` node reading `x` (over the last axis).
fn norm_node(g: &Graph, idx: usize, features: Option<usize>) -> Result<Norm> {
    let n = g.node(idx);
    ensure!(
        n.input.len() >= 3 && !n.input[2].is_empty(),
        "{}: has no bias input",
        describe(n)
    );
    let axis = attr_i(n, "axis", -1);
    ensure!(
        axis == -1 || axis == 2,
        "{}: normalizes over axis {axis}, expected the last axis",
        describe(n)
    );
    let eps = super::graph::attr_f(n, "epsilon", 1e-5);
    ensure!(
        eps.is_finite() && eps >= 0.0,
        "{}: epsilon {eps} is invalid",
        describe(n)
    );
    let (gs, gamma) = g
        .require_const(&n.input[1], &describe(n))?
        .into_f32(&describe(n))?;
    let (bs, beta) = g
        .require_const(&n.input[2], &describe(n))?
        .into_f32(&describe(n))?;
    ensure!(
        gs.len() == 1 && bs == gs,
        "{}: scale {gs:?} and bias {bs:?} must be equal 1-D shapes",
        describe(n)
    );
    if let Some(f) = features {
        ensure!(
            gs[0] == f,
            "{}: has {} features, expected {f}",
            describe(n),
            gs[0]
        );
    }
    for extra in n.output.iter().skip(1).filter(|o| !o.is_empty()) {
        ensure!(
            g.consumers(extra).is_empty(),
            "{}: its mean / inverse std outputs are used, which is not ALBERT",
            describe(n)
        );
    }
    Ok(Norm {
        gamma: Tensor {
            shape: gs.clone(),
            data: gamma,
        },
        beta: Tensor {
            shape: bs,
            data: beta,
        },
        eps,
        output: n.output[0].clone(),
        keys: (g.const_key(&n.input[1]), g.const_key(&n.input[2])),
    })
}

/// The single `LayerNormalization` reading `v`.
fn norm_after(g: &Graph, v: &str, features: usize, what: &str) -> Result<Norm> {
    let cons = g.data_consumers(v);
    let lns: Vec<usize> = cons
        .iter()
        .copied()
        .filter(|&i| g.node(i).op_type == "LayerNormalization")
        .collect();
    ensure!(
        lns.len() == 1 && cons.len() == 1,
        "no LayerNormalization after {what} (found {})",
        cons.iter()
            .map(|&i| g.node(i).op_type.clone())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if g.nodes()[lns[0]].input.first().map(|i| g.same(i, v)) != Some(true) {
        bail!(
            "{what} is not the normalized input of {}",
            describe(g.node(lns[0]))
        );
    }
    norm_node(g, lns[0], Some(features))
}

/// Checks that the embedding lookups are summed and normalized.
fn embedding_sum_norm(g: &Graph, w: &Embedding, p: &Embedding, t: &Embedding) -> Result<Norm> {
    // Walk from the word lookup through Adds to the LayerNormalization.
    let mut cur = w.output.clone();
    let mut ln = None;
    for _ in 0..4 {
        let cons = g.data_consumers(&cur);
        ensure!(
            cons.len() == 1,
            "no LayerNormalization after the embeddings Add (the word embedding sum is read by {} nodes, expected a single Add chain)",
            cons.len()
        );
        let n = g.node(cons[0]);
        match n.op_type.as_str() {
            "Add" => cur = n.output[0].clone(),
            "LayerNormalization" => {
                ln = Some(cons[0]);
                break;
            }
            _ => bail!(
                "no LayerNormalization after the embeddings Add (found {})",
                describe(n)
            ),
        }
    }
    let ln = ln.ok_or_else(|| anyhow!("no LayerNormalization after the embeddings Add"))?;
    // The LayerNorm input must be exactly word + position + token type.
    let mut leaves = BTreeSet::new();
    let mut stack = vec![g.node(ln).input[0].clone()];
    while let Some(v) = stack.pop() {
        match g.producer(&v).map(|i| g.node(i)) {
            Some(n) if n.op_type == "Add" && n.input.len() == 2 && leaves.len() < 8 => {
                stack.extend(n.input.iter().cloned());
            }
            _ => {
                leaves.insert(g.resolve(&v)?.to_string());
            }
        }
    }
    let want: BTreeSet<String> = [&w.output, &p.output, &t.output]
        .iter()
        .map(|s| g.resolve(s).map(str::to_string))
        .collect::<Result<_>>()?;
    ensure!(
        leaves == want,
        "the embeddings LayerNorm input is not exactly word + position + token type embeddings"
    );
    norm_node(g, ln, None)
}

/// The input of a binary node `n` that is not `cur`; errors unless `n` has exactly two inputs.
fn other_input<'n>(g: &Graph, n: &'n tract_onnx::pb::NodeProto, cur: &str) -> Result<&'n str> {
    ensure!(
        n.input.len() == 2,
        "{}: expected 2 inputs, found {}",
        describe(n),
        n.input.len()
    );
    Ok(if g.same(&n.input[0], cur) {
        &n.input[1]
    } else {
        &n.input[0]
    })
}

/// Shape constants of a `Reshape`: `Some(v)` where known, `None` where computed at run time.
fn reshape_dims(g: &Graph, shape: &str) -> Result<Vec<Option<i64>>> {
    if let Some(c) = g.constant(shape)? {
        return Ok(c
            .as_i64s()
            .unwrap_or_default()
            .into_iter()
            .map(Some)
            .collect());
    }
    match g.producer(shape).map(|i| g.node(i)) {
        Some(n) if n.op_type == "Concat" => {
            let mut out = Vec::new();
            for i in &n.input {
                match g.constant(i)? {
                    Some(c) => out.extend(c.as_i64s().unwrap_or_default().into_iter().map(Some)),
                    None => out.push(None), // a runtime dimension (batch, sequence): Unsqueeze'd scalar
                }
            }
            Ok(out)
        }
        _ => Ok(vec![]),
    }
}

/// Where a q/k/v projection ends up: which activation-by-activation MatMul and input slot,
/// the head split, the axis layout and any constant scaling on the way.
struct HeadPath {
    matmul: usize,
    slot: usize,
    heads: usize,
    head_dim: usize,
    /// Axis labels after the transposes: 0=batch, 1=sequence, 2=head, 3=head_dim.
    layout: Vec<usize>,
    scale: f64,
}

fn scalar_const(g: &Graph, v: &str) -> Result<Option<f64>> {
    Ok(g.constant(v)?.and_then(|c: Const| c.scalar()))
}

/// Follows a q/k/v projection through Reshape / Transpose / constant scaling to the MatMul.
fn trace_heads(g: &Graph, lin: &Linear, hidden: usize) -> Result<HeadPath> {
    let ctx = &lin.op;
    let mut cur = lin.output.clone();
    let mut split: Option<(usize, usize)> = None;
    let mut layout: Vec<usize> = vec![];
    let mut scale = 1.0f64;
    for _ in 0..8 {
        let cons = g.data_consumers(&cur);
        ensure!(
            cons.len() == 1,
            "{ctx}: the attention projection output is read by {} nodes, expected 1",
            cons.len()
        );
        let n = g.node(cons[0]);
        match n.op_type.as_str() {
            "Reshape" if split.is_none() => {
                let dims = reshape_dims(g, n.input.get(1).map(String::as_str).unwrap_or(""))?;
                // `view(B, S, heads, d)`; transformers 5 writes `view(B, S, -1, d)`, so one of
                // the two may be -1 (inferred from the hidden size).
                let infer = |known: i64| -> Option<usize> {
                    let k = usize::try_from(known).ok().filter(|&k| k > 0)?;
                    hidden.is_multiple_of(k).then_some(hidden / k)
                };
                let (h, d) = match dims.as_slice() {
                    [_, _, Some(h), Some(d)] if *h > 0 && *d > 0 => (*h as usize, *d as usize),
                    [_, _, Some(-1), Some(d)] if infer(*d).is_some() => {
                        (infer(*d).unwrap_or(0), *d as usize)
                    }
                    [_, _, Some(h), Some(-1)] if infer(*h).is_some() => {
                        (*h as usize, infer(*h).unwrap_or(0))
                    }
                    _ => bail!(
                        "{}: cannot read the number of heads from the reshape shape {dims:?}",
                        describe(n)
                    ),
                };
                ensure!(
                    h.checked_mul(d) == Some(hidden),
                    "{}: {h} heads x {d} does not give the hidden size {hidden}",
                    describe(n)
                );
                split = Some((h, d));
                layout = vec![0, 1, 2, 3];
            }
            "Transpose" if split.is_some() => {
                let perm =
                    attr_ints(n, "perm").ok_or_else(|| anyhow!("{}: no perm", describe(n)))?;
                ensure!(
                    perm.len() == 4,
                    "{}: expected a 4-D permutation",
                    describe(n)
                );
                let mut next = Vec::with_capacity(4);
                for &p in perm {
                    let p = usize::try_from(p)
                        .ok()
                        .filter(|&p| p < 4)
                        .ok_or_else(|| anyhow!("{}: bad perm", describe(n)))?;
                    next.push(layout[p]);
                }
                layout = next;
            }
            "Mul" | "Div" => {
                let other = other_input(g, n, &cur)?;
                let c = scalar_const(g, other)?.ok_or_else(|| {
                    anyhow!("{}: scales attention by a non-constant", describe(n))
                })?;
                ensure!(
                    n.op_type == "Mul" || g.same(&n.input[0], &cur),
                    "{}: divides a constant by the activation",
                    describe(n)
                );
                scale = if n.op_type == "Mul" {
                    scale * c
                } else {
                    scale / c
                };
            }
            "MatMul" if split.is_some() => {
                let slot = n
                    .input
                    .iter()
                    .position(|i| g.same(i, &cur))
                    .ok_or_else(|| anyhow!("unreachable"))?;
                let (heads, head_dim) = split.ok_or_else(|| anyhow!("unreachable"))?;
                return Ok(HeadPath {
                    matmul: cons[0],
                    slot,
                    heads,
                    head_dim,
                    layout,
                    scale,
                });
            }
            "Reshape" if split.is_some() => match swap_last_two(g, cons[0], &cur) {
                Some(out) => {
                    layout.swap(2, 3);
                    cur = out;
                    continue;
                }
                None => bail!("{ctx}: unexpected {} on the attention path", describe(n)),
            },
            _ => bail!("{ctx}: unexpected {} on the attention path", describe(n)),
        }
        cur = n.output[0].clone();
    }
    bail!("{ctx}: the attention projection does not reach a MatMul")
}

/// `p`, or the output of `Where(IsNaN(p), 0, p)` when that follows it: the
/// scaled-dot-product-attention export (transformers' default `sdpa`
/// attention) zeroes the NaN rows a fully masked softmax gives. Those rows are
/// queries of a sequence with no token to attend to; every row the runtime
/// computes has at least one, so the result is the softmax itself.
fn nan_to_zero(g: &Graph, p: &str) -> Result<String> {
    let cons = g.data_consumers(p);
    let [a, b] = cons.as_slice() else {
        return Ok(p.to_string());
    };
    let (isnan, wh) = match (g.node(*a).op_type.as_str(), g.node(*b).op_type.as_str()) {
        ("IsNaN", "Where") => (g.node(*a), g.node(*b)),
        ("Where", "IsNaN") => (g.node(*b), g.node(*a)),
        _ => return Ok(p.to_string()),
    };
    let zero = match wh.input.get(1) {
        Some(z) => g.constant(z)?.is_some_and(
            |c| matches!(&c.values, Values::F32(v) if !v.is_empty() && v.iter().all(|&x| x == 0.0)),
        ),
        None => false,
    };
    ensure!(
        wh.input.len() == 3
            && g.same(&wh.input[0], &isnan.output[0])
            && zero
            && g.same(&wh.input[2], p)
            && g.data_consumers(&isnan.output[0]).len() == 1,
        "{}: the attention probabilities go through IsNaN and Where, but not as Where(IsNaN(p), 0, p)",
        describe(wh)
    );
    Ok(wh.output[0].clone())
}

/// Whether `n` reshapes a `[batch, heads, seq, head_dim]` tensor to the
/// shape it has, as the scaled-dot-product-attention exports do with its
/// output: `[B, -1 or heads, S, head_dim or dim 3 of a Shape]`, where `B` and
/// `S` are computed at run time (as the head split's `[B, S, heads, d]` is
/// read).
fn same_shape_reshape(g: &Graph, n: &tract_onnx::pb::NodeProto, heads: usize, d: usize) -> bool {
    /// `Gather(Shape(x), i)`'s `i`, through `Unsqueeze` / `Squeeze` / `Cast`.
    fn shape_index(g: &Graph, v: &str) -> Option<i64> {
        let mut cur = v.to_string();
        for _ in 0..4 {
            let p = g.node(g.producer(&cur)?);
            match p.op_type.as_str() {
                "Unsqueeze" | "Squeeze" | "Cast" => cur = p.input.first()?.clone(),
                "Gather" if attr_i(p, "axis", 0) == 0 && p.input.len() == 2 => {
                    let shape = g.node(g.producer(&p.input[0])?);
                    let i = g.constant(&p.input[1]).ok()??.scalar()?;
                    return (shape.op_type == "Shape" && i.fract() == 0.0).then_some(i as i64);
                }
                _ => return None,
            }
        }
        None
    }
    let Some(concat) = n
        .input
        .get(1)
        .and_then(|s| g.producer(s))
        .map(|i| g.node(i))
    else {
        return false;
    };
    if concat.op_type != "Concat" || concat.input.len() != 4 {
        return false;
    }
    let dim = |i: usize| -> Option<Result<i64, i64>> {
        let v = &concat.input[i];
        match g.constant(v).ok()? {
            Some(c) => match c.as_i64s()?.as_slice() {
                [x] => Some(Ok(*x)),
                _ => None,
            },
            None => shape_index(g, v).map(Err),
        }
    };
    let runtime = |i: usize| !matches!(dim(i), Some(Ok(_)));
    runtime(0)
        && runtime(2)
        && matches!(dim(1), Some(Ok(h)) if h == -1 || h == heads as i64)
        && matches!(dim(3), Some(last) if last == Err(3) || last == Ok(d as i64))
}

/// The output of the transpose of the last two axes of the 4-D `x` that
/// starts at the `Reshape` node `r1`, as the dynamo exporter writes
/// `k.transpose(-2, -1)` in scaled dot-product attention:
/// `Reshape(Transpose(Reshape(x, [-1, x.shape[2], x.shape[3]]), [0, 2, 1]),
/// [x.shape[0], x.shape[1], x.shape[3], x.shape[2]])`; `None` if it is not that.
fn swap_last_two(g: &Graph, r1: usize, x: &str) -> Option<String> {
    let x = g.resolve(x).ok()?;
    let rank = |n: &str| (n == x).then_some(4);
    let of = |a: usize| Dim::Of(x.to_string(), a);
    let only = |v: &str, op: &str| -> Option<usize> {
        match g.data_consumers(v).as_slice() {
            [i] if g.node(*i).op_type == op => Some(*i),
            _ => None,
        }
    };
    let r1 = g.node(r1);
    if shape_value(g, &rank, r1.input.get(1)?)? != [Dim::Const(-1), of(2), of(3)] {
        return None;
    }
    let t = g.node(only(&r1.output[0], "Transpose")?);
    if attr_ints(t, "perm")? != [0, 2, 1] {
        return None;
    }
    let r2 = g.node(only(&t.output[0], "Reshape")?);
    (shape_value(g, &rank, r2.input.get(1)?)? == [of(0), of(1), of(3), of(2)])
        .then(|| r2.output[0].clone())
}

/// Parses one layer call whose query/key/value Linears read `h`.
fn layer_call(
    g: &Graph,
    h: &str,
    lins: Vec<Linear>,
    hidden: usize,
    opset: i64,
    index: usize,
) -> Result<LayerCall> {
    let ctx = format!("layer call {index}");
    for l in &lins {
        ensure!(
            l.in_features() == hidden && l.out_features() == hidden,
            "{ctx}: attention projection {} is {}x{}, expected {hidden}x{hidden}",
            l.op,
            l.out_features(),
            l.in_features()
        );
        ensure!(
            l.bias.is_some(),
            "{ctx}: attention projection {} has no bias",
            l.op
        );
    }
    let paths: Vec<HeadPath> = lins
        .iter()
        .map(|l| trace_heads(g, l, hidden))
        .collect::<Result<_>>()?;
    // The score MatMul is the one reached by two projections.
    let mut count: HashMap<usize, usize> = HashMap::new();
    for p in &paths {
        *count.entry(p.matmul).or_default() += 1;
    }
    let scores = *count.iter().find(|(_, &c)| c == 2).map(|(m, _)| m).ok_or_else(|| {
        anyhow!("{ctx}: found no attention score MatMul reading two of the query/key/value projections")
    })?;
    let qi = paths.iter().position(|p| p.matmul == scores && p.slot == 0);
    let ki = paths.iter().position(|p| p.matmul == scores && p.slot == 1);
    let vi = paths.iter().position(|p| p.matmul != scores && p.slot == 1);
    let (qi, ki, vi) = match (qi, ki, vi) {
        (Some(q), Some(k), Some(v)) => (q, k, v),
        _ => bail!("{ctx}: cannot tell query, key and value apart from the attention MatMuls"),
    };
    let (heads, d) = (paths[qi].heads, paths[qi].head_dim);
    for p in &paths {
        ensure!(
            (p.heads, p.head_dim) == (heads, d),
            "{ctx}: query/key/value use different head splits"
        );
    }
    // Layouts: q, v -> [B, heads, S, d]; k -> [B, heads, d, S].
    ensure!(
        paths[qi].layout == [0, 2, 1, 3],
        "{ctx}: the query is not transposed to [batch, heads, seq, head_dim]"
    );
    ensure!(
        paths[ki].layout == [0, 2, 3, 1],
        "{ctx}: the key is not transposed to [batch, heads, head_dim, seq]"
    );
    ensure!(
        paths[vi].layout == [0, 2, 1, 3],
        "{ctx}: the value is not transposed to [batch, heads, seq, head_dim]"
    );
    ensure!(paths[vi].scale == 1.0, "{ctx}: the value is scaled");

    // scores -> (scale, mask) -> Softmax over the last axis.
    let mut scale = paths[qi].scale * paths[ki].scale;
    let mut cur = g.node(scores).output[0].clone();
    let mut masks = 0;
    let softmax = loop {
        let cons = g.data_consumers(&cur);
        ensure!(
            cons.len() == 1,
            "{ctx}: attention scores are read by {} nodes, expected 1",
            cons.len()
        );
        let n = g.node(cons[0]);
        match n.op_type.as_str() {
            "Mul" | "Div" => {
                let other = other_input(g, n, &cur)?;
                let c = scalar_const(g, other)?
                    .ok_or_else(|| anyhow!("{}: scales scores by a non-constant", describe(n)))?;
                ensure!(
                    n.op_type == "Mul" || g.same(&n.input[0], &cur),
                    "{}: divides by the scores",
                    describe(n)
                );
                scale = if n.op_type == "Mul" {
                    scale * c
                } else {
                    scale / c
                };
            }
            "Add" => {
                let other = other_input(g, n, &cur)?;
                ensure!(!g.is_const(other), "{}: adds a constant bias to the attention scores (relative positions?), not ALBERT", describe(n));
                masks += 1;
                ensure!(
                    masks == 1,
                    "{}: a second additive term on the attention scores",
                    describe(n)
                );
            }
            "Softmax" => {
                let default_axis = if opset >= 13 { -1 } else { 1 };
                let axis = attr_i(n, "axis", default_axis);
                ensure!(
                    axis == -1 || axis == 3,
                    "{}: softmax over axis {axis}, expected the last axis",
                    describe(n)
                );
                break cons[0];
            }
            _ => bail!(
                "{ctx}: unexpected {} between the attention scores and the Softmax",
                describe(n)
            ),
        }
        cur = n.output[0].clone();
    };
    let want = 1.0 / (d as f64).sqrt();
    ensure!(
        (scale - want).abs() <= 1e-6 * want,
        "{ctx}: attention scores are scaled by {scale}, expected 1/sqrt({d}) = {want}"
    );
    let pv = paths[vi].matmul;
    let probs = nan_to_zero(g, &g.node(softmax).output[0])?;
    ensure!(
        g.node(pv).input.first().map(|i| g.same(i, &probs)) == Some(true)
            && g.data_consumers(&probs) == [pv],
        "{ctx}: the attention probabilities are not multiplied by the value"
    );

    // context: [B, heads, S, d] -> transpose -> [B, S, heads, d] -> reshape [B, S, H] -> dense.
    let mut layout = vec![0usize, 2, 1, 3];
    let mut cur = g.node(pv).output[0].clone();
    let mut merged = false;
    for _ in 0..4 {
        let cons = g.data_consumers(&cur);
        ensure!(
            cons.len() == 1,
            "{ctx}: the attention context is read by {} nodes, expected 1",
            cons.len()
        );
        let n = g.node(cons[0]);
        match n.op_type.as_str() {
            "Transpose" => {
                let perm =
                    attr_ints(n, "perm").ok_or_else(|| anyhow!("{}: no perm", describe(n)))?;
                ensure!(
                    perm.len() == 4,
                    "{}: expected a 4-D permutation",
                    describe(n)
                );
                let mut next = Vec::with_capacity(4);
                for &p in perm {
                    let p = usize::try_from(p)
                        .ok()
                        .filter(|&p| p < 4)
                        .ok_or_else(|| anyhow!("{}: bad perm", describe(n)))?;
                    next.push(layout[p]);
                }
                layout = next;
            }
            // The scaled-dot-product-attention export reshapes its output to
            // [batch, -1, seq, head_dim], the shape it already has.
            "Reshape" if layout == [0, 2, 1, 3] && same_shape_reshape(g, n, heads, d) => {}
            "Reshape" => {
                ensure!(layout == [0, 1, 2, 3], "{ctx}: the attention context is not transposed back to [batch, seq, heads, head_dim]");
                let dims = reshape_dims(g, n.input.get(1).map(String::as_str).unwrap_or(""))?;
                ensure!(
                    dims.len() == 3 && (dims[2] == Some(hidden as i64) || dims[2] == Some(-1)),
                    "{}: the attention context is reshaped to {dims:?}, expected [batch, seq, {hidden}]",
                    describe(n)
                );
                cur = n.output[0].clone();
                merged = true;
                break;
            }
            _ => bail!("{ctx}: unexpected {} on the attention context", describe(n)),
        }
        cur = n.output[0].clone();
    }
    ensure!(
        merged,
        "{ctx}: the attention heads are not merged back with a Reshape"
    );
    let dense = single_linear(g, &cur, hidden, hidden, &format!("{ctx}: attention.dense"))?;
    let attention_norm = residual_norm(
        g,
        &dense.output,
        h,
        hidden,
        &format!("{ctx}: attention output"),
    )?;

    // FFN.
    let ffn = {
        let lins = linears_from(g, &attention_norm.output)?;
        ensure!(
            lins.len() == 1,
            "{ctx}: the attention LayerNorm output feeds {} Linears, expected 1 (ffn)",
            lins.len()
        );
        lins.into_iter()
            .next()
            .ok_or_else(|| anyhow!("unreachable"))?
    };
    ensure!(
        ffn.in_features() == hidden && ffn.bias.is_some(),
        "{ctx}: ffn ({}) is not a biased Linear from {hidden} features",
        ffn.op
    );
    let (act, act_out) = activation(g, &ffn.output, &format!("{ctx}: ffn activation"))?;
    let ffn_output = single_linear(
        g,
        &act_out,
        ffn.out_features(),
        hidden,
        &format!("{ctx}: ffn_output"),
    )?;
    let full_norm = residual_norm(
        g,
        &ffn_output.output,
        &attention_norm.output,
        hidden,
        &format!("{ctx}: ffn output"),
    )?;
    let [query, key, value]: [Linear; 3] = {
        let mut v: Vec<Option<Linear>> = lins.into_iter().map(Some).collect();
        let mut take = |i: usize| v[i].take().ok_or_else(|| anyhow!("unreachable"));
        [take(qi)?, take(ki)?, take(vi)?]
    };
    Ok(LayerCall {
        query,
        key,
        value,
        dense,
        attention_norm,
        ffn,
        ffn_output,
        full_norm,
        heads,
        act,
    })
}

/// The one Linear reading `x`, with the given shape and a bias.
fn single_linear(g: &Graph, x: &str, n_in: usize, n_out: usize, what: &str) -> Result<Linear> {
    let lins = linears_from(g, x)?;
    ensure!(
        lins.len() == 1,
        "{what}: expected one Linear, found {}",
        lins.len()
    );
    let l = lins
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("unreachable"))?;
    ensure!(
        l.in_features() == n_in && l.out_features() == n_out,
        "{what}: {} is {}x{}, expected {n_out}x{n_in}",
        l.op,
        l.out_features(),
        l.in_features()
    );
    ensure!(l.bias.is_some(), "{what}: {} has no bias", l.op);
    Ok(l)
}

/// `LayerNorm(residual + branch)`: the branch output must be added to `residual` and normalized.
fn residual_norm(
    g: &Graph,
    branch: &str,
    residual: &str,
    features: usize,
    what: &str,
) -> Result<Norm> {
    let cons = g.data_consumers(branch);
    ensure!(
        cons.len() == 1,
        "{what}: read by {} nodes, expected the residual Add",
        cons.len()
    );
    let n = g.node(cons[0]);
    ensure!(
        n.op_type == "Add" && n.input.len() == 2,
        "{what}: expected the residual Add, found {}",
        describe(n)
    );
    let other = if g.same(&n.input[0], branch) {
        &n.input[1]
    } else {
        &n.input[0]
    };
    ensure!(
        g.same(other, residual),
        "{what}: the residual Add does not add the layer input"
    );
    norm_after(g, &n.output[0], features, what)
}

/// Ops that may appear inside an activation function.
const ELEMENTWISE: &[&str] = &[
    "Mul", "Add", "Sub", "Div", "Pow", "Tanh", "Erf", "Relu", "Sigmoid", "Gelu", "Sqrt",
];

/// Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7), enough to tell gelu variants apart.
fn erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.3275911 * x.abs());
    let y = 1.0
        - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t
            + 0.254829592)
            * t
            * (-x * x).exp();
    if x >= 0.0 {
        y
    } else {
        -y
    }
}

/// Identifies the activation applied to `x` by evaluating the elementwise nodes that read it.
/// Returns the Hugging Face name and the value holding the activation's result.
pub(crate) fn activation(g: &Graph, x: &str, what: &str) -> Result<(&'static str, String)> {
    // Collect the elementwise region reachable from x.
    let mut region: Vec<usize> = Vec::new();
    let mut frontier = vec![g.resolve(x)?.to_string()];
    let mut values: BTreeSet<String> = frontier.iter().cloned().collect();
    while let Some(v) = frontier.pop() {
        for &i in g.consumers(&v) {
            let n = g.node(i);
            if !ELEMENTWISE.contains(&n.op_type.as_str())
                || !n.domain.is_empty()
                || region.contains(&i)
            {
                continue;
            }
            ensure!(
                region.len() < 32,
                "{what}: more than 32 elementwise nodes, not a known activation"
            );
            region.push(i);
            for o in &n.output {
                if values.insert(o.clone()) {
                    frontier.push(o.clone());
                }
            }
        }
    }
    ensure!(!region.is_empty(), "{what}: no activation function found");
    // Exits: region values read outside the region (or graph outputs).
    let mut exits = Vec::new();
    for &i in &region {
        for o in &g.node(i).output {
            let outside =
                g.consumers(o).iter().any(|c| !region.contains(c)) || g.is_graph_output(o);
            if outside {
                exits.push(o.clone());
            }
        }
    }
    ensure!(
        exits.len() == 1,
        "{what}: the elementwise nodes after the Linear have {} results used elsewhere, expected 1",
        exits.len()
    );
    let exit = exits.remove(0);
    if g.consumers(x).iter().any(|c| !region.contains(c)) {
        bail!("{what}: the Linear output is also used outside the activation");
    }
    // Evaluate the region on sample points.
    let xs: Vec<f64> = (-24..=24).map(|i| i as f64 * 0.25).collect();
    let mut env: HashMap<String, Vec<f64>> = HashMap::new();
    env.insert(g.resolve(x)?.to_string(), xs.clone());
    let mut done = vec![false; region.len()];
    for _ in 0..region.len() {
        for (k, &i) in region.iter().enumerate() {
            if done[k] {
                continue;
            }
            let n = g.node(i);
            let mut args: Vec<Vec<f64>> = Vec::new();
            let mut ready = true;
            for inp in &n.input {
                let r = g.resolve(inp)?.to_string();
                if let Some(v) = env.get(&r) {
                    args.push(v.clone());
                } else if let Some(c) = scalar_const(g, inp)? {
                    args.push(vec![c; xs.len()]);
                } else if values.contains(&r) {
                    ready = false;
                    break;
                } else {
                    bail!("{what}: {} reads {inp:?}, which is neither a scalar constant nor part of the activation", describe(n));
                }
            }
            if !ready {
                continue;
            }
            let a = |j: usize| {
                args.get(j)
                    .ok_or_else(|| anyhow!("{what}: {} is missing an input", describe(n)))
            };
            let out: Vec<f64> = match n.op_type.as_str() {
                "Mul" => a(0)?.iter().zip(a(1)?).map(|(p, q)| p * q).collect(),
                "Add" => a(0)?.iter().zip(a(1)?).map(|(p, q)| p + q).collect(),
                "Sub" => a(0)?.iter().zip(a(1)?).map(|(p, q)| p - q).collect(),
                "Div" => a(0)?.iter().zip(a(1)?).map(|(p, q)| p / q).collect(),
                "Pow" => a(0)?.iter().zip(a(1)?).map(|(p, q)| p.powf(*q)).collect(),
                "Tanh" => a(0)?.iter().map(|p| p.tanh()).collect(),
                "Erf" => a(0)?.iter().map(|&p| erf(p)).collect(),
                "Relu" => a(0)?.iter().map(|p| p.max(0.0)).collect(),
                "Sigmoid" => a(0)?.iter().map(|p| 1.0 / (1.0 + (-p).exp())).collect(),
                "Sqrt" => a(0)?.iter().map(|p| p.sqrt()).collect(),
                "Gelu" => {
                    let tanh = attr_s(n, "approximate").as_deref() == Some("tanh");
                    a(0)?
                        .iter()
                        .map(|&p| if tanh { gelu_new(p) } else { gelu(p) })
                        .collect()
                }
                other => bail!("{what}: unsupported op {other}"),
            };
            ensure!(n.output.len() == 1, "{}: expected one output", describe(n));
            env.insert(n.output[0].clone(), out);
            done[k] = true;
        }
    }
    ensure!(
        done.iter().all(|&d| d),
        "{what}: the activation nodes form a cycle or read unknown values"
    );
    let y = env
        .get(&exit)
        .ok_or_else(|| anyhow!("{what}: activation result not computed"))?;
    let close = |f: fn(f64) -> f64| {
        xs.iter()
            .zip(y)
            .all(|(&p, &q)| (f(p) - q).abs() <= 1e-5 * (1.0 + p.abs()))
    };
    let name = if close(gelu_new) {
        "gelu_new"
    } else if close(gelu) {
        "gelu"
    } else if close(|p| p.max(0.0)) {
        "relu"
    } else {
        bail!(
            "{what}: the activation ({} nodes) is none of gelu_new, gelu, relu",
            region.len()
        )
    };
    Ok((name, exit))
}

fn gelu_new(x: f64) -> f64 {
    0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
}

fn gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))
}

/// Every graph output must be something the recognized head produces, so that no part of
/// the computation is silently dropped. (QA outputs are checked in [`check_qa_split`].)
fn check_outputs(g: &Graph, h: &str, head: &Head) -> Result<()> {
    let mut allowed: Vec<String> = Vec::new();
    let kind = match head {
        Head::Base { pooler } => {
            allowed.push(h.to_string());
            if let Some(p) = pooler {
                allowed.extend(
                    g.data_consumers(&p.output)
                        .iter()
                        .map(|&c| g.node(c).output[0].clone()),
                );
            }
            "AlbertModel"
        }
        Head::SequenceClassification { classifier, .. } => {
            allowed.push(classifier.output.clone());
            "sequence classification"
        }
        Head::TokenClassification { classifier } => {
            allowed.push(classifier.output.clone());
            "token classification"
        }
        Head::MaskedLm { decoder, .. } => {
            allowed.push(decoder.output.clone());
            "masked-LM"
        }
        Head::QuestionAnswering { .. } => return Ok(()),
    };
    for (resolved, declared) in &g.outputs {
        ensure!(
            allowed.iter().any(|a| g.same(a, resolved)),
            "graph output {declared:?} is not produced by the recognized {kind} head: the graph computes something this reader does not understand"
        );
    }
    Ok(())
}

/// Finds the task head reading the final hidden state `h`.
fn head(g: &Graph, h: &str, hidden: usize, e: usize, vocab: usize, opset: i64) -> Result<Head> {
    let _ = opset;
    let mut pooler: Option<Linear> = None;
    let mut pooled: Option<String> = None;
    for &i in &g.data_consumers(h) {
        let n = g.node(i);
        match n.op_type.as_str() {
            // pooler: h[:, 0] -> Linear -> Tanh
            "Gather"
                if attr_i(n, "axis", 0) == 1 && n.input.len() == 2 && g.same(&n.input[0], h) =>
            {
                let idx = scalar_const(g, &n.input[1])?;
                let c = g.require_const(&n.input[1], &describe(n))?;
                ensure!(
                    idx == Some(0.0) && c.shape.is_empty(),
                    "{}: the pooler must read position 0 of the sequence",
                    describe(n)
                );
                ensure!(pooler.is_none(), "two pooler lookups on the encoder output");
                let lin = single_linear(g, &n.output[0], hidden, hidden, "pooler")?;
                let cons = g.data_consumers(&lin.output);
                ensure!(
                    cons.len() == 1
                        && g.node(cons[0]).op_type == "Tanh"
                        && !g.is_graph_output(&lin.output),
                    "pooler: the Linear on h[:, 0] is not followed by Tanh"
                );
                pooled = Some(g.node(cons[0]).output[0].clone());
                pooler = Some(lin);
            }
            "MatMul" | "Gemm" | "DynamicQuantizeLinear" => {} // Linears, handled below
            _ => bail!(
                "the encoder output is read by {}, which is not part of a recognized ALBERT head",
                describe(n)
            ),
        }
    }
    let token_lins = linears_from(g, h)?;
    ensure!(
        token_lins.len() <= 1,
        "the encoder output feeds {} Linears, expected at most 1 head",
        token_lins.len()
    );
    if let Some(lin) = token_lins.into_iter().next() {
        ensure!(
            pooler.is_none(),
            "both a pooler and a per-token head read the encoder output"
        );
        ensure!(
            lin.in_features() == hidden,
            "{}: head takes {} features, hidden size is {hidden}",
            lin.op,
            lin.in_features()
        );
        ensure!(
            lin.bias.is_some(),
            "{}: the head Linear has no bias",
            lin.op
        );
        if g.is_graph_output(&lin.output) {
            return Ok(Head::TokenClassification { classifier: lin });
        }
        let cons = g.data_consumers(&lin.output);
        let all_split = !cons.is_empty()
            && cons
                .iter()
                .all(|&i| matches!(g.node(i).op_type.as_str(), "Split" | "Slice" | "Gather"));
        if all_split {
            check_qa_split(g, &lin, &cons)?;
            return Ok(Head::QuestionAnswering { qa_outputs: lin });
        }
        // Masked LM: dense(E) -> act -> LayerNorm -> decoder(vocab)
        ensure!(
            lin.out_features() == e,
            "{}: unrecognized head (output of {} features is not a graph output)",
            lin.op,
            lin.out_features()
        );
        let (act, act_out) = activation(g, &lin.output, "masked-LM head activation")?;
        let norm = norm_after(g, &act_out, e, "the masked-LM head activation")?;
        let decoder = single_linear(g, &norm.output, e, vocab, "masked-LM decoder")?;
        ensure!(
            g.is_graph_output(&decoder.output),
            "masked-LM decoder output is not a graph output"
        );
        return Ok(Head::MaskedLm {
            dense: lin,
            act,
            norm,
            decoder,
        });
    }
    let Some(pooler) = pooler else {
        ensure!(
            g.is_graph_output(h),
            "the encoder output is not used by any recognized head and is not a graph output"
        );
        return Ok(Head::Base { pooler: None });
    };
    let pooled = pooled.ok_or_else(|| anyhow!("unreachable"))?;
    let lins = linears_from(g, &pooled)?;
    match lins.len() {
        0 => {
            ensure!(
                g.is_graph_output(&pooled),
                "the pooler output is not used and is not a graph output"
            );
            Ok(Head::Base {
                pooler: Some(pooler),
            })
        }
        1 => {
            let classifier = lins
                .into_iter()
                .next()
                .ok_or_else(|| anyhow!("unreachable"))?;
            ensure!(
                classifier.in_features() == hidden && classifier.bias.is_some(),
                "{}: classifier is not a biased Linear from {hidden}",
                classifier.op
            );
            ensure!(
                g.is_graph_output(&classifier.output),
                "{}: the classifier output is not a graph output",
                classifier.op
            );
            Ok(Head::SequenceClassification { pooler, classifier })
        }
        n => bail!("the pooler output feeds {n} Linears, expected 1 classifier"),
    }
}

/// QA: the 2-feature output is split on the last axis into start (column 0) and end (column 1).
fn check_qa_split(g: &Graph, lin: &Linear, cons: &[usize]) -> Result<()> {
    ensure!(
        lin.out_features() == 2,
        "{}: a split head with {} outputs, question answering needs 2",
        lin.op,
        lin.out_features()
    );
    if cons.len() == 1 && g.node(cons[0]).op_type == "Split" {
        let n = g.node(cons[0]);
        let axis = attr_i(n, "axis", 0);
        ensure!(
            axis == -1 || axis == 2,
            "{}: splits axis {axis}, expected the last",
            describe(n)
        );
        ensure!(n.output.len() == 2, "{}: expected 2 outputs", describe(n));
        let sizes = match n.input.get(1).filter(|s| !s.is_empty()) {
            Some(s) => g
                .require_const(s, &describe(n))?
                .as_i64s()
                .unwrap_or_default(),
            None => attr_ints(n, "split")
                .map(|v| v.to_vec())
                .unwrap_or_else(|| vec![1, 1]),
        };
        ensure!(
            sizes == [1, 1],
            "{}: split sizes {sizes:?}, expected [1, 1]",
            describe(n)
        );
        // Name hints: if the outputs are named, start must come from column 0.
        for (col, o) in n.output.iter().enumerate() {
            let mut v = o.clone();
            for _ in 0..3 {
                if let Some(name) = g.output_name(&v) {
                    let bad =
                        (col == 0 && name.contains("end")) || (col == 1 && name.contains("start"));
                    ensure!(
                        !bad,
                        "{}: column {col} goes to the graph output {name:?}",
                        describe(n)
                    );
                    break;
                }
                match g.data_consumers(&v).as_slice() {
                    [c] if g.node(*c).op_type == "Squeeze" => v = g.node(*c).output[0].clone(),
                    _ => break,
                }
            }
        }
        return Ok(());
    }
    // Slice / Gather on the last axis: accept, the weights do not depend on how the two
    // columns are taken apart.
    Ok(())
}
