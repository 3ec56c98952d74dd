//! Tensor table entries, roles, dtypes and the int8 matrix layout.

use super::{
    align_up, rd_u32, rd_u64, HeadKind, LoadError, ModelConfig, ParsedFile, Precision, ALIGN,
    TENSOR_ENTRY_LEN,
};
use core::ops::Range;

/// Output rows per block of a packed int8 matrix.
pub const Q8_N_BLOCK: usize = 16;
/// Inner-dimension elements stored together per row in a packed int8 matrix.
pub const Q8_K_GROUP: usize = 4;

/// Element type and layout of a stored tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    /// f32, row-major `[rows][cols]` (matrices are `[out][in]`, like `nn.Linear`).
    F32 = 1,
    /// int8 matrix `[rows = out][cols = in]`, packed for the kernels (see [`q8_layout`]).
    Q8 = 2,
    /// [`DType::Q8`] storage whose activations are quantized in two int8 parts:
    /// the row as for `Q8`, then what that leaves out (the residual), each part
    /// multiplied by the weights and the two results added (about 16 bits of
    /// activation precision for twice the multiply work; see `docs/FORMAT.md`).
    /// Never on the word embeddings.
    Q8R = 3,
}

impl DType {
    fn from_code(c: u32) -> Option<Self> {
        match c {
            1 => Some(Self::F32),
            2 => Some(Self::Q8),
            3 => Some(Self::Q8R),
            _ => None,
        }
    }

    /// Whether the tensor is an int8 matrix ([`DType::Q8`] or [`DType::Q8R`]).
    pub fn is_q8(self) -> bool {
        matches!(self, Self::Q8 | Self::Q8R)
    }
}

/// The byte layout of a packed int8 matrix of `n` rows (outputs) and `k` columns (inputs).
///
/// ```text
/// packed  : i8 [ceil(n/16)][ceil(k/4)][16][4]   element (r, c) at
///           ((r/16)*ceil(k/4) + c/4)*64 + (r%16)*4 + c%4; padding is zero
/// scales  : f32[ceil(n/16)*16]   w(r, c) = packed(r, c) * scales[r]; padding 0
/// row_sums: i32[ceil(n/16)*16]   sum over c of packed(r, c); padding 0
/// smooth  : f32[round_up(k, 16)]  per-input-channel multiplier applied to the
///           activations before they are quantized (SmoothQuant-style outlier
///           migration: the converter divided column c of the weights by it);
///           positive and finite for c < k, 0 on padding
/// ```
///
/// All four parts start 64-byte aligned. Values are in -127..=127 (never -128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Q8Layout {
    /// `ceil(n/16)`.
    pub n_blocks: usize,
    /// `ceil(k/4)`.
    pub k_groups: usize,
    /// Bytes of the packed weights.
    pub packed_len: usize,
    /// Offset of the scales from the tensor start.
    pub scales_offset: usize,
    /// Offset of the row sums from the tensor start.
    pub row_sums_offset: usize,
    /// Offset of the input smoothing vector from the tensor start.
    pub smooth_offset: usize,
    /// Total bytes.
    pub total_len: usize,
}

/// Bound on `|w[r][2j] + w[r][2j + 1]|` of a *pair-bounded* int8 matrix.
///
/// With it, `u0 * w0 + u1 * w1` fits an i16 for any unsigned activations
/// `u0, u1 <= 255` (same signs: `255 * 128 = 32640`; opposite signs: at most
/// `255 * 127`), so a kernel may offset the activations to u8 and use a
/// pairwise multiply that saturates to i16 (AVX2 `vpmaddubsw`) exactly.
/// The converter writes pair-bounded matrices; the runtime checks each file at
/// load and uses such kernels only when every int8 matrix is pair-bounded.
pub const Q8_PAIR_BOUND: i32 = 128;

/// Whether the weights `w0`, `w1` of inputs `2j`, `2j + 1` of one row are
/// within [`Q8_PAIR_BOUND`]. (Opposite signs always are: `|w0 + w1| <= 127`.)
#[inline]
pub const fn q8_pair_bounded(w0: i8, w1: i8) -> bool {
    (w0 as i32 + w1 as i32).abs() <= Q8_PAIR_BOUND
}

/// Computes [`Q8Layout`] with checked arithmetic.
pub fn q8_layout(n: usize, k: usize) -> Option<Q8Layout> {
    let n_blocks = n.checked_add(Q8_N_BLOCK - 1)? / Q8_N_BLOCK;
    let k_groups = k.checked_add(Q8_K_GROUP - 1)? / Q8_K_GROUP;
    let packed_len = n_blocks
        .checked_mul(k_groups)?
        .checked_mul(Q8_N_BLOCK * Q8_K_GROUP)?;
    let vec_len = n_blocks.checked_mul(Q8_N_BLOCK * 4)?;
    let scales_offset = packed_len;
    let row_sums_offset = scales_offset.checked_add(vec_len)?;
    let smooth_offset = row_sums_offset.checked_add(vec_len)?;
    let smooth_len = k.checked_add(15)? / 16 * 64;
    let total_len = smooth_offset.checked_add(smooth_len)?;
    Some(Q8Layout {
        n_blocks,
        k_groups,
        packed_len,
        scales_offset,
        row_sums_offset,
        smooth_offset,
        total_len,
    })
}

/// What a tensor is, independent of its layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[allow(missing_docs)]
pub enum RoleKind {
    WordEmbeddings = 1,
    PositionEmbeddings = 2,
    TokenTypeEmbeddings = 3,
    EmbeddingsLnGamma = 4,
    EmbeddingsLnBeta = 5,
    MappingInWeight = 6,
    MappingInBias = 7,
    QkvWeight = 10,
    QkvBias = 11,
    AttnOutWeight = 12,
    AttnOutBias = 13,
    AttnLnGamma = 14,
    AttnLnBeta = 15,
    FfnWeight = 16,
    FfnBias = 17,
    FfnOutWeight = 18,
    FfnOutBias = 19,
    OutLnGamma = 20,
    OutLnBeta = 21,
    PoolerWeight = 30,
    PoolerBias = 31,
    ClassifierWeight = 32,
    ClassifierBias = 33,
    MlmDenseWeight = 34,
    MlmDenseBias = 35,
    MlmLnGamma = 36,
    MlmLnBeta = 37,
    MlmBias = 38,
    MlmDecoderWeight = 39,
}

impl RoleKind {
    /// Every kind, in code order.
    pub const ALL: [RoleKind; 29] = [
        Self::WordEmbeddings,
        Self::PositionEmbeddings,
        Self::TokenTypeEmbeddings,
        Self::EmbeddingsLnGamma,
        Self::EmbeddingsLnBeta,
        Self::MappingInWeight,
        Self::MappingInBias,
        Self::QkvWeight,
        Self::QkvBias,
        Self::AttnOutWeight,
        Self::AttnOutBias,
        Self::AttnLnGamma,
        Self::AttnLnBeta,
        Self::FfnWeight,
        Self::FfnBias,
        Self::FfnOutWeight,
        Self::FfnOutBias,
        Self::OutLnGamma,
        Self::OutLnBeta,
        Self::PoolerWeight,
        Self::PoolerBias,
        Self::ClassifierWeight,
        Self::ClassifierBias,
        Self::MlmDenseWeight,
        Self::MlmDenseBias,
        Self::MlmLnGamma,
        Self::MlmLnBeta,
        Self::MlmBias,
        Self::MlmDecoderWeight,
    ];

    /// Decodes a stored kind.
    pub fn from_code(c: u32) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| *k as u32 == c)
    }

    /// Whether the tensor belongs to a stored layer (one per group and inner index).
    pub fn is_layer(self) -> bool {
        (10..=21).contains(&(self as u32))
    }

    /// Whether the tensor is a weight matrix that may be stored as int8.
    pub fn is_matrix(self) -> bool {
        matches!(
            self,
            Self::WordEmbeddings
                | Self::MappingInWeight
                | Self::QkvWeight
                | Self::AttnOutWeight
                | Self::FfnWeight
                | Self::FfnOutWeight
                | Self::PoolerWeight
                | Self::ClassifierWeight
                | Self::MlmDenseWeight
                | Self::MlmDecoderWeight
        )
    }

    /// A readable name, close to the Hugging Face parameter name.
    pub fn name(self) -> &'static str {
        match self {
            Self::WordEmbeddings => "embeddings.word_embeddings.weight",
            Self::PositionEmbeddings => "embeddings.position_embeddings.weight",
            Self::TokenTypeEmbeddings => "embeddings.token_type_embeddings.weight",
            Self::EmbeddingsLnGamma => "embeddings.LayerNorm.weight",
            Self::EmbeddingsLnBeta => "embeddings.LayerNorm.bias",
            Self::MappingInWeight => "encoder.embedding_hidden_mapping_in.weight",
            Self::MappingInBias => "encoder.embedding_hidden_mapping_in.bias",
            Self::QkvWeight => "layer.attention.qkv.weight",
            Self::QkvBias => "layer.attention.qkv.bias",
            Self::AttnOutWeight => "layer.attention.dense.weight",
            Self::AttnOutBias => "layer.attention.dense.bias",
            Self::AttnLnGamma => "layer.attention.LayerNorm.weight",
            Self::AttnLnBeta => "layer.attention.LayerNorm.bias",
            Self::FfnWeight => "layer.ffn.weight",
            Self::FfnBias => "layer.ffn.bias",
            Self::FfnOutWeight => "layer.ffn_output.weight",
            Self::FfnOutBias => "layer.ffn_output.bias",
            Self::OutLnGamma => "layer.full_layer_layer_norm.weight",
            Self::OutLnBeta => "layer.full_layer_layer_norm.bias",
            Self::PoolerWeight => "pooler.weight",
            Self::PoolerBias => "pooler.bias",
            Self::ClassifierWeight => "classifier.weight",
            Self::ClassifierBias => "classifier.bias",
            Self::MlmDenseWeight => "predictions.dense.weight",
            Self::MlmDenseBias => "predictions.dense.bias",
            Self::MlmLnGamma => "predictions.LayerNorm.weight",
            Self::MlmLnBeta => "predictions.LayerNorm.bias",
            Self::MlmBias => "predictions.bias",
            Self::MlmDecoderWeight => "predictions.decoder.weight",
        }
    }

    /// Expected `(rows, cols)` for this kind under `cfg`. Vectors are `(1, len)`.
    pub fn shape(self, cfg: &ModelConfig) -> (u32, u32) {
        let (v, e, h, i) = (
            cfg.vocab_size,
            cfg.embedding_size,
            cfg.hidden_size,
            cfg.intermediate_size,
        );
        let a = cfg.attention_dim() as u32;
        let l = cfg.num_labels;
        match self {
            Self::WordEmbeddings | Self::MlmDecoderWeight => (v, e),
            Self::PositionEmbeddings => (cfg.max_positions, e),
            Self::TokenTypeEmbeddings => (cfg.type_vocab_size, e),
            Self::EmbeddingsLnGamma
            | Self::EmbeddingsLnBeta
            | Self::MlmDenseBias
            | Self::MlmLnGamma
            | Self::MlmLnBeta => (1, e),
            Self::MappingInWeight => (h, e),
            Self::QkvWeight => (3 * a, h),
            Self::QkvBias => (1, 3 * a),
            Self::AttnOutWeight => (h, a),
            Self::FfnWeight => (i, h),
            Self::FfnBias => (1, i),
            Self::FfnOutWeight => (h, i),
            Self::MappingInBias
            | Self::AttnOutBias
            | Self::AttnLnGamma
            | Self::AttnLnBeta
            | Self::FfnOutBias
            | Self::OutLnGamma
            | Self::OutLnBeta
            | Self::PoolerBias => (1, h),
            Self::PoolerWeight => (h, h),
            Self::ClassifierWeight => (l, h),
            Self::ClassifierBias => (1, l),
            Self::MlmDenseWeight => (e, h),
            Self::MlmBias => (1, v),
        }
    }
}

/// A tensor's identity: its kind and, for layer tensors, the stored layer
/// (`group * inner_group_num + inner`). Encoded as `kind | layer << 16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Role {
    /// What the tensor is.
    pub kind: RoleKind,
    /// Stored layer index; 0 for global tensors.
    pub layer: u32,
}

impl Role {
    /// A global tensor.
    pub const fn global(kind: RoleKind) -> Self {
        Role { kind, layer: 0 }
    }
    /// A tensor of stored layer `layer`.
    pub const fn layer(kind: RoleKind, layer: u32) -> Self {
        Role { kind, layer }
    }
    /// Stored encoding.
    pub fn code(self) -> u32 {
        self.kind as u32 | (self.layer << 16)
    }
}

/// One decoded entry of the tensor table: role u32, dtype u32, rows u32,
/// cols u32, offset u64 (absolute), len u64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorEntry {
    /// Identity.
    pub role: Role,
    /// Element type and layout.
    pub dtype: DType,
    /// Rows (outputs for matrices; 1 for vectors).
    pub rows: u32,
    /// Columns (inputs for matrices; length for vectors).
    pub cols: u32,
    /// Absolute byte range in the file.
    pub range: Range<usize>,
}

impl TensorEntry {
    /// Encodes to 32 bytes.
    pub fn encode(
        role: Role,
        dtype: DType,
        rows: u32,
        cols: u32,
        offset: u64,
        len: u64,
    ) -> [u8; TENSOR_ENTRY_LEN] {
        let mut o = [0u8; TENSOR_ENTRY_LEN];
        o[0..4].copy_from_slice(&role.code().to_le_bytes());
        o[4..8].copy_from_slice(&(dtype as u32).to_le_bytes());
        o[8..12].copy_from_slice(&rows.to_le_bytes());
        o[12..16].copy_from_slice(&cols.to_le_bytes());
        o[16..24].copy_from_slice(&offset.to_le_bytes());
        o[24..32].copy_from_slice(&len.to_le_bytes());
        o
    }

    /// Decodes an entry that [`validate_table`] has already accepted.
    pub(super) fn decode(b: &[u8]) -> Self {
        let code = rd_u32(b, 0);
        let offset = rd_u64(b, 16) as usize;
        TensorEntry {
            role: Role {
                kind: RoleKind::from_code(code & 0xffff).unwrap_or(RoleKind::WordEmbeddings),
                layer: code >> 16,
            },
            dtype: DType::from_code(rd_u32(b, 4)).unwrap_or(DType::F32),
            rows: rd_u32(b, 8),
            cols: rd_u32(b, 12),
            range: offset..offset + rd_u64(b, 24) as usize,
        }
    }
}

/// Bytes a tensor of this dtype and shape occupies.
pub fn tensor_len(dtype: DType, rows: u32, cols: u32) -> Option<usize> {
    match dtype {
        DType::F32 => (rows as usize).checked_mul(cols as usize)?.checked_mul(4),
        DType::Q8 | DType::Q8R => Some(q8_layout(rows as usize, cols as usize)?.total_len),
    }
}

/// Which roles a config requires (`true`) or allows (`Some(false)`), `None` if forbidden.
fn requirement(kind: RoleKind, cfg: &ModelConfig) -> Option<bool> {
    use RoleKind::*;
    match kind {
        PoolerWeight | PoolerBias => cfg.has_pooler.then_some(true),
        ClassifierWeight | ClassifierBias => matches!(
            cfg.head,
            HeadKind::SequenceClassification
                | HeadKind::TokenClassification
                | HeadKind::QuestionAnswering
        )
        .then_some(true),
        MlmDenseWeight | MlmDenseBias | MlmLnGamma | MlmLnBeta | MlmBias => {
            (cfg.head == HeadKind::MaskedLm).then_some(true)
        }
        MlmDecoderWeight => (cfg.head == HeadKind::MaskedLm).then_some(false),
        _ => Some(true),
    }
}

/// Validates the tensor table: known roles, no duplicates, expected shapes and
/// dtypes, exact byte lengths, 64-byte aligned offsets that tile the data section
/// in table order with zero padding, every required tensor present, and for int8
/// matrices the value range, zero padding and stored row sums.
pub(super) fn validate_table(
    bytes: &[u8],
    file: &ParsedFile,
    data: Range<usize>,
) -> Result<bool, LoadError> {
    let mut pairs_bounded = true;
    let cfg = &file.config;
    let n_layers = cfg.num_groups * cfg.inner_group_num;
    let mut expected_offset = data.start as u64;
    let mut seen_prev: Option<Role> = None;
    for i in 0..file.tensor_count {
        let off = file.tensor_table.start + i * TENSOR_ENTRY_LEN;
        let b = &bytes[off..off + TENSOR_ENTRY_LEN];
        let code = rd_u32(b, 0);
        let kind = RoleKind::from_code(code & 0xffff).ok_or(LoadError::UnknownCode {
            field: "tensor role",
            value: code,
        })?;
        let layer = code >> 16;
        let role = Role { kind, layer };
        let bad = |reason: &'static str| LoadError::BadTensor {
            role: kind.name(),
            layer,
            reason,
        };
        if kind.is_layer() {
            if layer >= n_layers {
                return Err(bad("layer index out of range"));
            }
        } else if layer != 0 {
            return Err(bad("global tensor with a layer index"));
        }
        if requirement(kind, cfg).is_none() {
            return Err(bad("not used by this head"));
        }
        // Table order is strictly increasing by role, which also rules out duplicates.
        if let Some(p) = seen_prev {
            if role.code() <= p.code() {
                return Err(bad(
                    "tensor table is not sorted by role, or has a duplicate",
                ));
            }
        }
        seen_prev = Some(role);
        let dtype = DType::from_code(rd_u32(b, 4)).ok_or(LoadError::UnknownCode {
            field: "tensor dtype",
            value: rd_u32(b, 4),
        })?;
        if dtype.is_q8() && (!kind.is_matrix() || cfg.precision != Precision::Int8) {
            return Err(bad("int8 storage is not allowed here"));
        }
        if dtype == DType::Q8R && kind == RoleKind::WordEmbeddings {
            return Err(bad("two-part activations on an embedding table"));
        }
        let (rows, cols) = (rd_u32(b, 8), rd_u32(b, 12));
        if (rows, cols) != kind.shape(cfg) {
            return Err(bad("shape does not match the config"));
        }
        let (offset, len) = (rd_u64(b, 16), rd_u64(b, 24));
        let want_len = tensor_len(dtype, rows, cols).ok_or(LoadError::Overflow)?;
        if len != want_len as u64 {
            return Err(bad("byte length does not match dtype and shape"));
        }
        let start = align_up(expected_offset).ok_or(LoadError::Overflow)?;
        if offset != start {
            return Err(bad(
                "offset is not where the previous tensor's aligned end puts it",
            ));
        }
        let end = offset.checked_add(len).ok_or(LoadError::Overflow)?;
        if end > data.end as u64 {
            return Err(bad("runs past the tensor data section"));
        }
        if bytes[expected_offset as usize..offset as usize]
            .iter()
            .any(|&x| x != 0)
        {
            return Err(bad("padding before the tensor is not zero"));
        }
        if dtype.is_q8() {
            pairs_bounded &= validate_q8(
                &bytes[offset as usize..end as usize],
                rows as usize,
                cols as usize,
            )
            .map_err(bad)?;
        }
        expected_offset = end;
    }
    // The data section (and so the file) ends at the next 64-byte boundary after
    // the last tensor, with zero padding.
    if align_up(expected_offset).ok_or(LoadError::Overflow)? != data.end as u64 {
        return Err(LoadError::BadSection {
            section: "tensor data",
            reason: "bytes after the last tensor",
        });
    }
    if bytes[expected_offset as usize..data.end]
        .iter()
        .any(|&x| x != 0)
    {
        return Err(LoadError::BadSection {
            section: "tensor data",
            reason: "padding after the last tensor is not zero",
        });
    }
    // Required tensors.
    for kind in RoleKind::ALL {
        if requirement(kind, cfg) != Some(true) {
            continue;
        }
        let layers = if kind.is_layer() { n_layers } else { 1 };
        for layer in 0..layers {
            if file.find(bytes, Role { kind, layer }).is_none() {
                return Err(LoadError::MissingTensor {
                    role: kind.name(),
                    layer,
                });
            }
        }
    }
    let _ = ALIGN;
    Ok(pairs_bounded)
}

/// Checks a packed int8 matrix: values in -127..=127, zero padding, finite
/// non-negative scales (zero on padding rows), and row sums equal to the sums of
/// the stored values. Returns whether the matrix is pair-bounded
/// ([`q8_pair_bounded`] holds for every row's inputs `2j, 2j + 1`).
fn validate_q8(t: &[u8], n: usize, k: usize) -> Result<bool, &'static str> {
    let mut bounded = true;
    let lay = q8_layout(n, k).ok_or("size overflow")?;
    let block = lay.k_groups * Q8_N_BLOCK * Q8_K_GROUP;
    let mut sums = [0i32; Q8_N_BLOCK];
    for nb in 0..lay.n_blocks {
        sums.fill(0);
        let blk = &t[nb * block..(nb + 1) * block];
        let edge_rows = (nb + 1) * Q8_N_BLOCK > n;
        for (kg, chunk) in blk.chunks_exact(Q8_N_BLOCK * Q8_K_GROUP).enumerate() {
            let edge = edge_rows || (kg + 1) * Q8_K_GROUP > k;
            // One row's 4 inputs kg*4 .. kg*4 + 4 at a time.
            for ((j, w), sum) in chunk.chunks_exact(Q8_K_GROUP).enumerate().zip(&mut sums) {
                let v = [w[0] as i8, w[1] as i8, w[2] as i8, w[3] as i8];
                if v.contains(&-128) {
                    return Err("int8 weight -128 (the range is -127..=127)");
                }
                if edge {
                    let r = nb * Q8_N_BLOCK + j;
                    for (i, &x) in v.iter().enumerate() {
                        if (r >= n || kg * Q8_K_GROUP + i >= k) && x != 0 {
                            return Err("int8 padding is not zero");
                        }
                    }
                }
                *sum += v.iter().map(|&x| x as i32).sum::<i32>();
                // Bytes 2i and 2i + 1 of a block are inputs 2j, 2j + 1 of one row.
                bounded &= q8_pair_bounded(v[0], v[1]) & q8_pair_bounded(v[2], v[3]);
            }
        }
        for (j, &s) in sums.iter().enumerate() {
            let r = nb * Q8_N_BLOCK + j;
            let so = lay.scales_offset + r * 4;
            let ro = lay.row_sums_offset + r * 4;
            let scale = f32::from_le_bytes([t[so], t[so + 1], t[so + 2], t[so + 3]]);
            let stored = i32::from_le_bytes([t[ro], t[ro + 1], t[ro + 2], t[ro + 3]]);
            if !(scale.is_finite() && scale >= 0.0) || (r >= n && scale != 0.0) {
                return Err("int8 scale is not finite and non-negative (or padding not zero)");
            }
            if stored != s {
                return Err("stored row sum does not match the weights");
            }
        }
    }
    for (c, b) in t[lay.smooth_offset..lay.total_len]
        .chunks_exact(4)
        .enumerate()
    {
        let v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let ok = if c < k {
            v.is_finite() && v > 0.0
        } else {
            v == 0.0
        };
        if !ok {
            return Err(
                "int8 input smoothing vector is not positive and finite (or padding not zero)",
            );
        }
    }
    Ok(bounded)
}
