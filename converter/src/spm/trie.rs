//! Builds the double-array trie the runtime uses for piece lookup and for the
//! common-prefix search of the Viterbi lattice.
//!
//! Format (see `albert_edge::tokenizer::layout`): three u32 arrays `base`, `check`, `value`
//! of equal length. The root is node 0. The child of node `s` by byte `b` is
//! `t = base[s] + b` when `t < len` and `check[t] == s`. `value[t]` is the id of the key
//! ending at `t`, or `NO_ID`. Unused slots and the root have `check == TRIE_FREE`.

use albert_edge::tokenizer::layout::{NO_ID, TRIE_FREE};
use anyhow::{bail, Result};

/// The three arrays of a built trie.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct DoubleArray {
    /// `base[s]`: offset of the children of `s`.
    pub base: Vec<u32>,
    /// `check[t]`: parent of `t`, or `TRIE_FREE`.
    pub check: Vec<u32>,
    /// `value[t]`: id of the key ending at `t`, or `NO_ID`.
    pub value: Vec<u32>,
}

impl DoubleArray {
    /// Builds the trie of `keys` (`(bytes, id)`; keys must be non-empty and distinct).
    pub fn build(keys: &[(&[u8], u32)]) -> Result<Self> {
        let mut sorted: Vec<(&[u8], u32)> = keys.to_vec();
        sorted.sort();
        for w in sorted.windows(2) {
            if w[0].0 == w[1].0 {
                bail!("duplicate piece {:?}", String::from_utf8_lossy(w[0].0));
            }
        }
        if sorted.iter().any(|(k, _)| k.is_empty()) {
            bail!("empty piece");
        }
        let mut da = DoubleArray {
            base: vec![0],
            check: vec![TRIE_FREE],
            value: vec![NO_ID],
        };
        let mut used = vec![true];
        let mut first_free = 1usize;
        // (node, key range, depth)
        let mut stack = vec![(0u32, 0usize, sorted.len(), 0usize)];
        while let Some((node, mut lo, hi, depth)) = stack.pop() {
            if lo < hi && sorted[lo].0.len() == depth {
                da.value[node as usize] = sorted[lo].1;
                lo += 1;
            }
            if lo == hi {
                continue;
            }
            // Children: distinct bytes at `depth`, with their key sub-ranges.
            let mut children: Vec<(u8, usize, usize)> = Vec::new();
            let mut i = lo;
            while i < hi {
                let b = sorted[i].0[depth];
                let mut j = i + 1;
                while j < hi && sorted[j].0[depth] == b {
                    j += 1;
                }
                children.push((b, i, j));
                i = j;
            }
            let min_label = children[0].0 as usize;
            let mut base = first_free.saturating_sub(min_label).max(1);
            'search: loop {
                for &(b, _, _) in &children {
                    let t = base + b as usize;
                    if t < used.len() && used[t] {
                        base += 1;
                        continue 'search;
                    }
                }
                break;
            }
            let max_t = base + children.last().unwrap().0 as usize;
            if max_t >= u32::MAX as usize - 1 {
                bail!("trie too large");
            }
            if max_t >= used.len() {
                used.resize(max_t + 1, false);
                da.base.resize(max_t + 1, 0);
                da.check.resize(max_t + 1, TRIE_FREE);
                da.value.resize(max_t + 1, NO_ID);
            }
            da.base[node as usize] = base as u32;
            for &(b, clo, chi) in &children {
                let t = base + b as usize;
                used[t] = true;
                da.check[t] = node;
                stack.push((t as u32, clo, chi, depth + 1));
            }
            while first_free < used.len() && used[first_free] {
                first_free += 1;
            }
        }
        Ok(da)
    }

    /// Exact lookup (used by tests).
    pub fn get(&self, key: &[u8]) -> Option<u32> {
        let mut s = 0usize;
        for &b in key {
            let t = (*self.base.get(s)? as usize).checked_add(b as usize)?;
            if *self.check.get(t)? != s as u32 {
                return None;
            }
            s = t;
        }
        self.value.get(s).copied().filter(|&v| v != NO_ID)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_and_lookup() {
        let keys: Vec<(&[u8], u32)> = vec![
            (b"a", 0),
            (b"ab", 1),
            (b"abc", 2),
            (b"b", 3),
            ("\u{2581}x".as_bytes(), 4),
            (&[0u8, 255], 5),
        ];
        let da = DoubleArray::build(&keys).unwrap();
        for (k, id) in &keys {
            assert_eq!(da.get(k), Some(*id));
        }
        assert_eq!(da.get(b"abd"), None);
        assert_eq!(da.get(b""), None);
        assert_eq!(da.get(b"c"), None);
        assert_eq!(da.get(&[0u8]), None);
    }

    #[test]
    fn duplicates_and_empty_rejected() {
        assert!(DoubleArray::build(&[(b"a", 0), (b"a", 1)]).is_err());
        assert!(DoubleArray::build(&[(b"", 0)]).is_err());
    }
}
