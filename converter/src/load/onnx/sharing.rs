//! Works out ALBERT's cross-layer sharing (`num_hidden_layers`, `num_hidden_groups`,
//! `inner_group_num`) from which layer calls use identical weights.
//!
//! Hugging Face semantics (`AlbertTransformer.forward`): for `i in 0..num_hidden_layers`,
//! group `g = int(i / (num_hidden_layers / num_hidden_groups))` runs its `inner_group_num`
//! layers in order. So the graph makes `num_hidden_layers * inner_group_num` layer calls,
//! and call `i * inner + j` uses layer `(g(i), j)`.

use super::albert::LayerCall;
use crate::load::Tensor;

/// Names (relative to `albert_layers.{j}.`) and values of the 16 tensors of a layer call.
pub(crate) fn layer_tensors(c: &LayerCall) -> Vec<(&'static str, &Tensor)> {
    let mut v: Vec<(&'static str, &Tensor)> = Vec::with_capacity(16);
    for (name, lin) in [
        ("attention.query", &c.query),
        ("attention.key", &c.key),
        ("attention.value", &c.value),
        ("attention.dense", &c.dense),
        ("ffn", &c.ffn),
        ("ffn_output", &c.ffn_output),
    ] {
        v.push((leak_name(name, "weight"), &lin.weight));
        if let Some(b) = &lin.bias {
            v.push((leak_name(name, "bias"), b));
        }
    }
    v.push(("attention.LayerNorm.weight", &c.attention_norm.gamma));
    v.push(("attention.LayerNorm.bias", &c.attention_norm.beta));
    v.push(("full_layer_layer_norm.weight", &c.full_norm.gamma));
    v.push(("full_layer_layer_norm.bias", &c.full_norm.beta));
    v
}

/// `"{name}.{suffix}"` as a static string (the set of names is fixed and small).
fn leak_name(name: &str, suffix: &str) -> &'static str {
    match (name, suffix) {
        ("attention.query", "weight") => "attention.query.weight",
        ("attention.query", _) => "attention.query.bias",
        ("attention.key", "weight") => "attention.key.weight",
        ("attention.key", _) => "attention.key.bias",
        ("attention.value", "weight") => "attention.value.weight",
        ("attention.value", _) => "attention.value.bias",
        ("attention.dense", "weight") => "attention.dense.weight",
        ("attention.dense", _) => "attention.dense.bias",
        ("ffn", "weight") => "ffn.weight",
        ("ffn", _) => "ffn.bias",
        ("ffn_output", "weight") => "ffn_output.weight",
        _ => "ffn_output.bias",
    }
}

/// Bit-exact tensor equality (NaNs with equal bits compare equal).
pub(crate) fn bit_equal(a: &Tensor, b: &Tensor) -> bool {
    a.shape == b.shape
        && a.data.len() == b.data.len()
        && a.data
            .iter()
            .zip(&b.data)
            .all(|(x, y)| x.to_bits() == y.to_bits())
}

/// Names of the tensors in which two layer calls differ (empty when bit-identical).
pub(crate) fn differing(a: &LayerCall, b: &LayerCall) -> Vec<&'static str> {
    layer_tensors(a)
        .into_iter()
        .zip(layer_tensors(b))
        .filter(|((_, x), (_, y))| !bit_equal(x, y))
        .map(|((n, _), _)| n)
        .collect()
}

/// Same weights: identical constants by name, or bit-identical values (per-call copies).
fn same_weights(a: &LayerCall, b: &LayerCall) -> bool {
    let keys = |c: &LayerCall| {
        [&c.query, &c.key, &c.value, &c.dense, &c.ffn, &c.ffn_output]
            .map(|l| l.keys.clone())
            .to_vec()
    };
    let norm_keys = |c: &LayerCall| [c.attention_norm.keys.clone(), c.full_norm.keys.clone()];
    if keys(a) == keys(b) && norm_keys(a) == norm_keys(b) {
        return true;
    }
    layer_tensors(a).len() == layer_tensors(b).len() && differing(a, b).is_empty()
}

/// For each call, the index of the first call with the same weights (distinct-set ids in
/// order of first appearance), and the number of distinct sets.
pub(crate) fn distinct_ids(calls: &[LayerCall]) -> (Vec<usize>, usize) {
    let mut reps: Vec<usize> = Vec::new(); // call index of each distinct set
    let mut ids = Vec::with_capacity(calls.len());
    for (i, c) in calls.iter().enumerate() {
        match reps.iter().position(|&r| same_weights(&calls[r], c)) {
            Some(id) => ids.push(id),
            None => {
                ids.push(reps.len());
                reps.push(i);
            }
        }
    }
    let n = reps.len();
    (ids, n)
}

/// The Hugging Face group of layer `i` (Python: `int(i / (L / G))`).
pub(crate) fn group_of(i: usize, layers: usize, groups: usize) -> usize {
    (i as f64 / (layers as f64 / groups as f64)) as usize
}

/// A sharing layout that reproduces the call sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    pub num_hidden_layers: usize,
    pub num_hidden_groups: usize,
    pub inner_group_num: usize,
}

impl Layout {
    /// `(group, inner index)` used by call `c`.
    pub fn slot(&self, c: usize) -> (usize, usize) {
        let i = c / self.inner_group_num;
        (
            group_of(i, self.num_hidden_layers, self.num_hidden_groups),
            c % self.inner_group_num,
        )
    }
}

/// Finds `(L, G, inner)` such that the HF call order maps one-to-one onto the distinct
/// weight sets `ids` (smallest `inner`, then smallest `G`). `None` when no layout fits.
pub(crate) fn infer_layout(ids: &[usize], n_distinct: usize) -> Option<Layout> {
    let n = ids.len();
    for inner in 1..=n {
        if !n.is_multiple_of(inner) || !n_distinct.is_multiple_of(inner) {
            continue;
        }
        let layers = n / inner;
        let groups = n_distinct / inner;
        if groups == 0 || groups > layers {
            continue;
        }
        let layout = Layout {
            num_hidden_layers: layers,
            num_hidden_groups: groups,
            inner_group_num: inner,
        };
        let mut slot_to_id: std::collections::HashMap<(usize, usize), usize> = Default::default();
        let mut id_to_slot: std::collections::HashMap<usize, (usize, usize)> = Default::default();
        let ok = ids.iter().enumerate().all(|(c, &id)| {
            let s = layout.slot(c);
            *slot_to_id.entry(s).or_insert(id) == id && *id_to_slot.entry(id).or_insert(s) == s
        });
        if ok && slot_to_id.len() == n_distinct {
            return Some(layout);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fit(ids: &[usize]) -> Option<(usize, usize, usize)> {
        let n = ids.iter().copied().max().map_or(0, |m| m + 1);
        infer_layout(ids, n).map(|l| (l.num_hidden_layers, l.num_hidden_groups, l.inner_group_num))
    }

    #[test]
    fn one_shared_layer() {
        assert_eq!(fit(&[0; 6]), Some((6, 1, 1)));
    }

    #[test]
    fn groups_and_inner_layers() {
        // tiny-groups: 4 layers, 2 groups, 2 inner layers -> 8 calls.
        assert_eq!(fit(&[0, 1, 0, 1, 2, 3, 2, 3]), Some((4, 2, 2)));
        // 6 layers, 2 groups: groups 0,0,0,1,1,1.
        assert_eq!(fit(&[0, 0, 0, 1, 1, 1]), Some((6, 2, 1)));
        // 3 layers, 2 groups: int(i / 1.5) = 0, 0, 1.
        assert_eq!(fit(&[0, 0, 1]), Some((3, 2, 1)));
        // no sharing at all is a valid ALBERT with one group per layer
        assert_eq!(fit(&[0, 1, 2]), Some((3, 3, 1)));
    }

    #[test]
    fn one_differing_copy_does_not_fit() {
        assert_eq!(fit(&[0, 0, 0, 1, 0, 0]), None);
        assert_eq!(fit(&[0, 1, 0, 0]), None);
    }
}
