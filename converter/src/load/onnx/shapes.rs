//! Shape vectors computed in the graph (`Shape`, `Slice`, `Gather`, `Concat`,
//! ...), evaluated symbolically: each element a constant or a dimension of a
//! named tensor. Exporters build `Reshape` targets this way; the reader checks
//! what they amount to instead of guessing.

use super::graph::{attr_i, attr_ints, Graph};
use std::cell::Cell;

/// One element of a shape vector computed in the graph.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Dim {
    Const(i64),
    /// Dimension `axis` of tensor `name`.
    Of(String, usize),
}

/// ONNX `Slice` bounds on a vector of `len` elements (step 1).
pub(crate) fn slice_range(start: i64, end: i64, len: usize) -> (usize, usize) {
    let len = len as i64;
    let clamp = |v: i64| (if v < 0 { v + len } else { v }).clamp(0, len) as usize;
    let (s, e) = (clamp(start), clamp(end));
    (s, e.max(s))
}

/// The value of the 1-D (or scalar) integer tensor `v` as [`Dim`]s, when the
/// graph computes it from constants and the `Shape` of tensors whose rank
/// `rank` knows.
pub(crate) fn shape_value(
    g: &Graph,
    rank: &dyn Fn(&str) -> Option<usize>,
    v: &str,
) -> Option<Vec<Dim>> {
    // A crafted graph could make the walk exponential (a Concat of one value
    // many times, nested): it gives up after this many nodes.
    value(g, rank, v, &Cell::new(256))
}

/// Shape vectors longer than this are not reshape targets of a text model.
const MAX_LEN: usize = 8;

fn value(
    g: &Graph,
    rank: &dyn Fn(&str) -> Option<usize>,
    v: &str,
    budget: &Cell<usize>,
) -> Option<Vec<Dim>> {
    budget.set(budget.get().checked_sub(1)?);
    if let Ok(Some(c)) = g.constant(v) {
        let v = c.as_i64s()?;
        return (v.len() <= MAX_LEN).then(|| v.into_iter().map(Dim::Const).collect());
    }
    let n = g.node(g.producer(v)?);
    if !n.domain.is_empty() {
        return None;
    }
    let arg = |i: usize| value(g, rank, n.input.get(i)?, budget);
    let const_ints =
        |i: usize| -> Option<Vec<i64>> { g.constant(n.input.get(i)?).ok()??.as_i64s() };
    match n.op_type.as_str() {
        "Shape" => {
            let x = g.resolve(n.input.first()?).ok()?;
            let rank = rank(x).filter(|&r| r <= MAX_LEN)?;
            let all: Vec<Dim> = (0..rank).map(|a| Dim::Of(x.to_string(), a)).collect();
            // Opset 15's optional `start` / `end` attributes.
            let (s, e) = slice_range(attr_i(n, "start", 0), attr_i(n, "end", i64::MAX), rank);
            Some(all[s..e].to_vec())
        }
        "Slice" => {
            let data = arg(0)?;
            let (starts, ends, axes, steps) = if n.input.len() >= 3 {
                (
                    const_ints(1)?,
                    const_ints(2)?,
                    if n.input.len() >= 4 && !n.input[3].is_empty() {
                        Some(const_ints(3)?)
                    } else {
                        None
                    },
                    if n.input.len() >= 5 && !n.input[4].is_empty() {
                        Some(const_ints(4)?)
                    } else {
                        None
                    },
                )
            } else {
                // Before opset 10: attributes.
                (
                    attr_ints(n, "starts")?.to_vec(),
                    attr_ints(n, "ends")?.to_vec(),
                    attr_ints(n, "axes").map(<[i64]>::to_vec),
                    None,
                )
            };
            if starts.len() != 1
                || ends.len() != 1
                || axes.is_some_and(|a| a != [0] && a != [-1])
                || steps.is_some_and(|s| s != [1])
            {
                return None;
            }
            let (s, e) = slice_range(starts[0], ends[0], data.len());
            Some(data[s..e].to_vec())
        }
        "Gather" => {
            if attr_i(n, "axis", 0) != 0 {
                return None;
            }
            let data = arg(0)?;
            let len = data.len() as i64;
            const_ints(1)?
                .into_iter()
                .map(|i| {
                    let i = if i < 0 { i + len } else { i };
                    (0..len).contains(&i).then(|| data[i as usize].clone())
                })
                .collect()
        }
        // A scalar and a one-element vector are the same list here.
        "Squeeze" | "Unsqueeze" | "Cast" | "Identity" => arg(0),
        "Concat" => {
            let mut out = Vec::new();
            for i in 0..n.input.len() {
                out.extend(arg(i)?);
                if out.len() > MAX_LEN {
                    return None;
                }
            }
            Some(out)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::pb::{GraphProto, NodeProto, TensorProto};

    #[test]
    fn slices_follow_onnx_clamping() {
        assert_eq!(slice_range(-1, i64::MAX, 3), (2, 3));
        assert_eq!(slice_range(1, 2, 3), (1, 2));
        assert_eq!(slice_range(0, -1, 3), (0, 2));
        assert_eq!(slice_range(5, 9, 3), (3, 3));
        assert_eq!(slice_range(2, 1, 3), (2, 2));
        assert_eq!(slice_range(-9, 1, 3), (0, 1));
        assert_eq!(slice_range(i64::MIN, -2, 4), (0, 2));
    }

    fn node(op: &str, inputs: &[&str], output: &str) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            ..Default::default()
        }
    }

    fn ints(name: &str, v: &[i64]) -> TensorProto {
        TensorProto {
            name: name.into(),
            dims: vec![v.len() as i64],
            data_type: 7,
            raw_data: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn shapes_are_evaluated_and_bombs_refused() {
        // Concat([-1], Gather(Shape(x), 2)) with x of rank 3.
        let mut g = GraphProto {
            node: vec![
                node("Shape", &["x"], "s"),
                node("Gather", &["s", "two"], "d"),
                node("Concat", &["minus_one", "d"], "shape"),
            ],
            initializer: vec![ints("two", &[2]), ints("minus_one", &[-1])],
            ..Default::default()
        };
        // Twenty levels of Gather(Concat(v, v), 0): the value stays [-1], but
        // the walk would visit 2^20 nodes without its budget.
        g.initializer.push(ints("zero", &[0]));
        for i in 0..20 {
            let prev = if i == 0 {
                "minus_one".to_string()
            } else {
                format!("c{}", i - 1)
            };
            g.node
                .push(node("Concat", &[&prev, &prev], &format!("k{i}")));
            g.node.push(node(
                "Gather",
                &[&format!("k{i}"), "zero"],
                &format!("c{i}"),
            ));
        }
        let graph = Graph::new(&g, None).unwrap();
        let rank = |n: &str| (n == "x").then_some(3);
        assert_eq!(
            shape_value(&graph, &rank, "shape"),
            Some(vec![Dim::Const(-1), Dim::Of("x".into(), 2)])
        );
        // Unknown rank: not evaluated.
        assert_eq!(shape_value(&graph, &|_| None, "shape"), None);
        assert_eq!(shape_value(&graph, &rank, "c5"), Some(vec![Dim::Const(-1)]));
        assert_eq!(shape_value(&graph, &rank, "c19"), None);
        // Longer than any reshape target: not evaluated.
        assert_eq!(shape_value(&graph, &rank, "k0").map(|v| v.len()), Some(2));
        let long: Vec<&str> = vec!["minus_one"; MAX_LEN + 1];
        g.node.push(node("Concat", &long, "long"));
        let graph = Graph::new(&g, None).unwrap();
        assert_eq!(shape_value(&graph, &rank, "long"), None);
    }
}
