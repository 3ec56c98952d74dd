//! sentencepiece's `precompiled_charsmap`, read in place.
//!
//! Layout (normalizer.cc `DecodePrecompiledCharsMap`,
//! <https://github.com/google/sentencepiece/blob/v0.2.0/src/normalizer.cc>): a u32 LE
//! `trie_size`, then `trie_size` bytes of darts-clone double-array units (u32 LE), then a pool
//! of NUL-terminated replacement strings. A trie leaf's value is a byte offset into the pool.
//!
//! darts-clone unit encoding (darts.h, `DoubleArrayUnit`):
//! `has_leaf = (u >> 8) & 1`, `value = u & 0x7fff_ffff`, `label = u & (0x8000_0000 | 0xff)`,
//! `offset = (u >> 10) << ((u & (1 << 9)) >> 6)`.

use super::TokenizerError;

#[derive(Clone, Copy, Debug)]
pub(crate) struct Charsmap<'a> {
    units: &'a [u8],
    pool: &'a [u8],
}

#[inline]
fn has_leaf(u: u32) -> bool {
    (u >> 8) & 1 == 1
}
#[inline]
fn value(u: u32) -> u32 {
    u & 0x7fff_ffff
}
#[inline]
fn label(u: u32) -> u32 {
    u & (0x8000_0000 | 0xff)
}
#[inline]
fn offset(u: u32) -> usize {
    ((u >> 10) << ((u & (1 << 9)) >> 6)) as usize
}

impl<'a> Charsmap<'a> {
    /// An empty map (identity normalization).
    pub(crate) fn empty() -> Self {
        Charsmap {
            units: &[],
            pool: &[],
        }
    }

    #[inline]
    fn unit(&self, i: usize) -> Option<u32> {
        let at = i.checked_mul(4)?;
        let b = self.units.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Splits and validates a blob in one linear pass over the units: every unit that is a
    /// node with a leaf (bit 31 clear, `has_leaf` set) must point at a value unit (bit 31
    /// set) whose value is the start of a NUL-terminated UTF-8 string in the pool. (darts-clone
    /// shares common suffix subtrees between parents, so a tree walk could visit far more
    /// nodes than there are units; the per-unit check covers every reachable leaf without
    /// one.) Lookups are bounds-checked, so no other unit can cause harm.
    pub(crate) fn parse(blob: &'a [u8]) -> Result<Self, TokenizerError> {
        if blob.is_empty() {
            return Ok(Self::empty());
        }
        let head = blob.get(..4).ok_or(TokenizerError::BadCharsmap)?;
        let trie_size = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let rest = blob.get(4..).unwrap_or(&[]);
        if trie_size == 0 || !trie_size.is_multiple_of(4) || trie_size > rest.len() {
            return Err(TokenizerError::BadCharsmap);
        }
        let (units, pool) = rest.split_at(trie_size);
        let map = Charsmap { units, pool };
        for i in 0..trie_size / 4 {
            let u = map.unit(i).ok_or(TokenizerError::BadCharsmap)?;
            if u >> 31 == 0 && has_leaf(u) {
                let v = map.unit(i ^ offset(u)).ok_or(TokenizerError::BadCharsmap)?;
                if v >> 31 == 0 || map.replacement(value(v)).is_none() {
                    return Err(TokenizerError::BadCharsmap);
                }
            }
        }
        Ok(map)
    }

    /// The replacement string at pool offset `v` (up to its NUL), if well-formed.
    fn replacement(&self, v: u32) -> Option<&'a [u8]> {
        let tail = self.pool.get(v as usize..)?;
        let first = *tail.first()?;
        if (0x80..0xc0).contains(&first) {
            return None;
        }
        let nul = tail.iter().position(|&b| b == 0)?;
        let s = tail.get(..nul)?;
        core::str::from_utf8(s).ok()?;
        Some(s)
    }

    /// Longest key that is a prefix of `input`: `(key length, replacement)`.
    /// Equivalent to `commonPrefixSearch` + "keep the longest" in `Normalizer::NormalizePrefix`.
    /// `Err(())` if the walk was still matching when it reached the end of `input` while more
    /// text follows (`!is_final`): the caller's look-ahead window was too short.
    #[allow(clippy::result_unit_err)]
    pub(crate) fn longest_prefix(
        &self,
        input: &[u8],
        is_final: bool,
    ) -> Result<Option<(usize, &'a [u8])>, ()> {
        let Some(root) = self.unit(0) else {
            return Ok(None);
        };
        let mut pos = offset(root);
        let mut best = None;
        let mut walked = 0;
        for (i, &b) in input.iter().enumerate() {
            pos ^= b as usize;
            let Some(u) = self.unit(pos) else { break };
            if label(u) != b as u32 {
                break;
            }
            walked = i + 1;
            pos ^= offset(u);
            if has_leaf(u) {
                if let Some(v) = self.unit(pos) {
                    best = Some((i + 1, value(v)));
                }
            }
        }
        if walked == input.len() && !is_final && !input.is_empty() {
            return Err(());
        }
        // Validated at load; an invalid value would mean a bug, so it is treated as no match.
        Ok(best.and_then(|(len, v)| self.replacement(v).map(|r| (len, r))))
    }
}
