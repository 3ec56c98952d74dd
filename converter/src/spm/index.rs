//! Builds the hash table the runtime uses for piece lookup and for the
//! common-prefix search of the Viterbi lattice.
//!
//! Format (see `albert_edge::tokenizer::layout`): `slots` u32 values, a power of
//! two larger than the number of pieces; piece `p` with id `i` sits in slot
//! `(fnv1a(p) + j) mod slots` for the smallest `j` that was free when it was
//! inserted (linear probing, pieces inserted in id order); empty slots hold
//! `NO_ID`. `probes` is the largest `j + 1`: a lookup examines at most that many
//! slots, and stops early at an empty one.

use albert_edge::tokenizer::layout::{fnv1a, MAX_PROBES, NO_ID};
use anyhow::{bail, Result};
use std::collections::HashSet;

/// A built piece index.
#[derive(Debug, Clone, PartialEq)]
pub struct PieceIndex {
    /// Piece ids by slot, `NO_ID` where empty.
    pub slots: Vec<u32>,
    /// The most slots any piece's lookup examines.
    pub probes: u32,
}

impl PieceIndex {
    /// Indexes `keys` (piece `i` is `keys[i]`; non-empty and distinct), in the
    /// smallest table of at least twice as many slots as pieces whose probe
    /// sequences stay within [`MAX_PROBES`].
    pub fn build(keys: &[&[u8]]) -> Result<Self> {
        let mut seen = HashSet::new();
        for k in keys {
            if k.is_empty() {
                bail!("empty piece");
            }
            if !seen.insert(*k) {
                bail!("duplicate piece {:?}", String::from_utf8_lossy(k));
            }
        }
        let mut n = (2 * keys.len()).next_power_of_two().max(2);
        loop {
            let mut slots = vec![NO_ID; n];
            let mut probes = 0u32;
            for (id, k) in keys.iter().enumerate() {
                let h = fnv1a(k) as usize;
                let j = (0..n)
                    .find(|j| slots[(h + j) & (n - 1)] == NO_ID)
                    .expect("more slots than pieces");
                slots[(h + j) & (n - 1)] = id as u32;
                probes = probes.max(j as u32 + 1);
            }
            if probes <= MAX_PROBES {
                return Ok(PieceIndex { slots, probes });
            }
            if n >= 1 << 28 {
                bail!("cannot index {} pieces", keys.len());
            }
            n *= 2;
        }
    }

    /// The id of `key` among the indexed `keys`, looked up as the runtime does.
    pub fn get(&self, keys: &[&[u8]], key: &[u8]) -> Option<u32> {
        let n = self.slots.len();
        let h = fnv1a(key) as usize;
        (0..self.probes as usize)
            .map(|j| self.slots[(h + j) & (n - 1)])
            .take_while(|&id| id != NO_ID)
            .find(|&id| keys.get(id as usize) == Some(&key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_and_lookup() {
        let keys: Vec<&[u8]> = vec![
            b"a",
            b"ab",
            b"abc",
            b"b",
            "\u{2581}x".as_bytes(),
            &[0u8, 255],
        ];
        let ix = PieceIndex::build(&keys).unwrap();
        assert_eq!(ix.slots.len(), 16);
        assert_eq!(ix.slots.iter().filter(|&&s| s != NO_ID).count(), keys.len());
        for (id, k) in keys.iter().enumerate() {
            assert_eq!(ix.get(&keys, k), Some(id as u32));
        }
        for absent in [&b"abd"[..], b"", b"c", &[0u8]] {
            assert_eq!(ix.get(&keys, absent), None);
        }
    }

    #[test]
    fn probes_stay_bounded() {
        // 30000 pieces (an albert-base vocabulary's size).
        let owned: Vec<Vec<u8>> = (0..30000)
            .map(|i| format!("\u{2581}p{i}").into_bytes())
            .collect();
        let keys: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
        let ix = PieceIndex::build(&keys).unwrap();
        assert!(ix.probes <= MAX_PROBES);
        assert_eq!(ix.slots.len(), 65536);
        assert!(keys
            .iter()
            .enumerate()
            .all(|(id, k)| ix.get(&keys, k) == Some(id as u32)));
    }

    #[test]
    fn duplicates_and_empty_rejected() {
        assert!(PieceIndex::build(&[b"a", b"a"]).is_err());
        assert!(PieceIndex::build(&[b""]).is_err());
    }
}
