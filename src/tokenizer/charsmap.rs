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

/// Longest key (bytes) accepted; it bounds the normalizer's look-ahead window.
pub(crate) const MAX_KEY_LEN: usize = 64;

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

    /// Splits and fully validates a blob. Walks the whole trie once (depth first, each node
    /// probed for its 255 possible labels), checking that every leaf's value is the start of a
    /// NUL-terminated UTF-8 string in the pool and that no key is longer than
    /// [`MAX_KEY_LEN`]. Returns the map and its longest key length.
    pub(crate) fn parse(blob: &'a [u8]) -> Result<(Self, usize), TokenizerError> {
        if blob.is_empty() {
            return Ok((Self::empty(), 0));
        }
        let head = blob.get(..4).ok_or(TokenizerError::BadCharsmap)?;
        let trie_size = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let rest = blob.get(4..).unwrap_or(&[]);
        if trie_size == 0 || trie_size % 4 != 0 || trie_size > rest.len() {
            return Err(TokenizerError::BadCharsmap);
        }
        let (units, pool) = rest.split_at(trie_size);
        let map = Charsmap { units, pool };
        let n_units = trie_size / 4;
        let root = map.unit(0).ok_or(TokenizerError::BadCharsmap)?;
        let mut visited = 0usize;
        let mut max_depth = 0usize;
        // Iterative depth-first walk with one label cursor per level (fixed-size stack:
        // depth == key length). `visited` bounds the work on a corrupted (cyclic) array.
        let mut cursor = [0u16; MAX_KEY_LEN + 1];
        let mut node = [0usize; MAX_KEY_LEN + 1];
        node[0] = offset(root);
        cursor[0] = 1;
        let mut level = 0usize;
        loop {
            let c = cursor.get(level).copied().unwrap_or(256) as usize;
            if c > 255 {
                if level == 0 {
                    break;
                }
                level -= 1;
                continue;
            }
            if let Some(cur) = cursor.get_mut(level) {
                *cur += 1;
            }
            let child = node.get(level).copied().unwrap_or(0) ^ c;
            let Some(u) = map.unit(child) else { continue };
            if label(u) != c as u32 {
                continue;
            }
            visited += 1;
            if visited > n_units {
                return Err(TokenizerError::BadCharsmap);
            }
            let next = child ^ offset(u);
            let depth = level + 1;
            if has_leaf(u) {
                let v = map.unit(next).ok_or(TokenizerError::BadCharsmap)?;
                map.replacement(value(v))
                    .ok_or(TokenizerError::BadCharsmap)?;
                max_depth = max_depth.max(depth);
            }
            if depth >= MAX_KEY_LEN {
                // A key may end here but must not continue.
                for c2 in 1..=255usize {
                    if map.unit(next ^ c2).is_some_and(|u2| label(u2) == c2 as u32) {
                        return Err(TokenizerError::BadCharsmap);
                    }
                }
                continue;
            }
            level = depth;
            if let (Some(n), Some(cur)) = (node.get_mut(level), cursor.get_mut(level)) {
                *n = next;
                *cur = 1;
            }
        }
        Ok((map, max_depth))
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
    pub(crate) fn longest_prefix(&self, input: &[u8]) -> Option<(usize, &'a [u8])> {
        let root = self.unit(0)?;
        let mut pos = offset(root);
        let mut best = None;
        for (i, &b) in input.iter().enumerate() {
            pos ^= b as usize;
            let Some(u) = self.unit(pos) else { break };
            if label(u) != b as u32 {
                break;
            }
            pos ^= offset(u);
            if has_leaf(u) {
                if let Some(v) = self.unit(pos) {
                    best = Some((i + 1, value(v)));
                }
            }
        }
        let (len, v) = best?;
        // Validated at load; an invalid value would mean a bug, so it is treated as no match.
        self.replacement(v).map(|r| (len, r))
    }
}
