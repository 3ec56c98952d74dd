//! Multiple-choice exports (`AlbertForMultipleChoice`), turned back into the
//! sequence-classification graph they wrap.
//!
//! `AlbertForMultipleChoice.forward` takes `[batch, choices, seq]` inputs,
//! flattens each to `[batch * choices, seq]` (`x.view(-1, x.size(-1))`), runs
//! the model of `AlbertForSequenceClassification` with one output, and
//! reshapes the logits to `[batch, choices]` (`logits.view(-1, num_choices)`,
//! `num_choices = input_ids.shape[1]`). The exporters write those as `Reshape`
//! nodes whose shapes are computed from the inputs' `Shape`:
//!
//! ```text
//! ids2 = Reshape(input_ids, Concat([-1], Unsqueeze(Squeeze(Slice(Shape(input_ids), -1, MAX)))))
//! logits = Reshape(scores, Concat([-1], Unsqueeze(Gather(Shape(input_ids), 1))))
//! ```
//!
//! (the dynamo exporter reads the sizes off any of the inputs, which must agree).
//! [`unflatten`] evaluates those shape expressions symbolically and, only when
//! each reshape of a rank-3 graph input gives exactly `[-1, dimension 2 of a
//! rank-3 input]` and the graph's one output reshapes to `[-1, dimension 1 of
//! one]`, replaces those `Reshape` nodes by `Identity`: the rest of
//! the reader then sees the sequence-classification graph, one row per
//! (prompt, choice) pair, which is what the runtime runs.

use super::graph::Graph;
use super::shapes::{shape_value, Dim};
use anyhow::{bail, Result};
use std::path::Path;
use tract_onnx::pb::tensor_shape_proto::dimension::Value as DimValue;
use tract_onnx::pb::type_proto::Value as TypeValue;
use tract_onnx::pb::{GraphProto, NodeProto};

/// The declared rank of a graph input and its static dimensions.
fn input_dims(g: &GraphProto, name: &str) -> Option<Vec<Option<i64>>> {
    let v = g.input.iter().find(|v| v.name == name)?;
    let TypeValue::TensorType(t) = v.r#type.as_ref()?.value.as_ref()?;
    Some(
        t.shape
            .as_ref()?
            .dim
            .iter()
            .map(|d| match d.value {
                Some(DimValue::DimValue(n)) => Some(n),
                _ => None,
            })
            .collect(),
    )
}

/// `g` with the multiple-choice reshapes replaced by `Identity`; `None` when
/// the graph does not flatten rank-3 inputs. A graph that flattens them but
/// does not end in the multiple-choice reshape of one score per row is
/// refused.
pub(crate) fn unflatten(g: &GraphProto, dir: Option<&Path>) -> Result<Option<GraphProto>> {
    let graph = Graph::new(g, dir)?;
    let rank3 = |x: &str| graph.is_graph_input(x) && input_dims(g, x).map(|d| d.len()) == Some(3);
    // Graph inputs only: their `Shape`s are what the flattening reads.
    let rank = |x: &str| {
        graph
            .is_graph_input(x)
            .then(|| input_dims(g, x).map(|d| d.len()))
            .flatten()
    };
    // Dimension `axis` of a rank-3 input: the exporters may read the sequence
    // length (or the number of choices) off any input, as they must agree.
    let dim_of = |d: &Dim, axis: usize| matches!(d, Dim::Of(x, a) if *a == axis && rank3(x));
    let is_reshape =
        |n: &NodeProto| n.op_type == "Reshape" && n.domain.is_empty() && n.input.len() == 2;
    // Reshapes of a rank-3 graph input to [-1, sequence].
    let mut flattened: Vec<usize> = Vec::new();
    for (i, n) in g.node.iter().enumerate() {
        if !is_reshape(n) {
            continue;
        }
        let Ok(x) = graph.resolve(&n.input[0]) else {
            continue;
        };
        if !rank3(x) {
            continue;
        }
        let shape = shape_value(&graph, &rank, &n.input[1]);
        match shape.as_deref() {
            Some([Dim::Const(-1), s]) if dim_of(s, 2) => flattened.push(i),
            _ => bail!(
                "the graph input {x:?} has three dimensions and is reshaped to {shape:?}, not flattened to [-1, sequence] as a multiple-choice model does"
            ),
        }
    }
    if flattened.is_empty() {
        return Ok(None);
    }
    let static_choices: Vec<i64> = g
        .input
        .iter()
        .filter(|v| rank3(&v.name))
        .filter_map(|v| input_dims(g, &v.name)?[1])
        .collect();
    let choices =
        |d: &Dim| dim_of(d, 1) || matches!(d, Dim::Const(c) if static_choices.contains(c));
    let mut unflattened = None;
    for (i, n) in g.node.iter().enumerate() {
        if !is_reshape(n) || !graph.is_graph_output(&n.output[0]) {
            continue;
        }
        match shape_value(&graph, &rank, &n.input[1]).as_deref() {
            Some([Dim::Const(-1), d]) if choices(d) && unflattened.is_none() => {
                unflattened = Some(i)
            }
            _ => bail!(
                "the graph flattens [batch, choices, sequence] inputs (multiple choice) but its output {:?} is not one score per choice reshaped to [batch, choices]",
                n.output[0]
            ),
        }
    }
    let Some(out) = unflattened else {
        bail!("the graph flattens [batch, choices, sequence] inputs (multiple choice) but no output is reshaped back to [batch, choices]");
    };
    let mut rewritten = g.clone();
    for i in flattened.into_iter().chain([out]) {
        let n = &mut rewritten.node[i];
        n.op_type = "Identity".into();
        n.input.truncate(1);
        n.attribute.clear();
    }
    Ok(Some(rewritten))
}
