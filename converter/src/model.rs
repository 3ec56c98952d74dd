//! [`Albert`]: an ALBERT checkpoint interpreted into roles, in f32. Pruning and
//! quantization work on this type; `pack` turns it into a model file.

use albert_edge::{Activation, HeadKind, ProblemType};

/// A row-major f32 matrix `[rows][cols]` (`nn.Linear` weights are `[out][in]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Mat {
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// `rows * cols` values.
    pub data: Vec<f32>,
}

impl Mat {
    /// Row `r`.
    pub fn row(&self, r: usize) -> &[f32] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }
}

/// `y = x W^T + b`.
#[derive(Debug, Clone, PartialEq)]
pub struct Linear {
    /// `[out][in]`.
    pub w: Mat,
    /// `[out]`.
    pub b: Vec<f32>,
}

/// LayerNorm parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Norm {
    /// Gain.
    pub gamma: Vec<f32>,
    /// Bias.
    pub beta: Vec<f32>,
}

/// One stored `AlbertLayer` (shared by every application of its group).
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    /// `attention.query`.
    pub query: Linear,
    /// `attention.key`.
    pub key: Linear,
    /// `attention.value`.
    pub value: Linear,
    /// `attention.dense`.
    pub dense: Linear,
    /// `attention.LayerNorm`.
    pub attn_norm: Norm,
    /// `ffn`.
    pub ffn: Linear,
    /// `ffn_output`.
    pub ffn_output: Linear,
    /// `full_layer_layer_norm`.
    pub out_norm: Norm,
}

/// The architecture numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arch {
    /// Vocabulary size.
    pub vocab: usize,
    /// Embedding size E.
    pub embedding: usize,
    /// Hidden size H.
    pub hidden: usize,
    /// Heads currently in the shared block(s).
    pub heads: usize,
    /// Size of one head.
    pub head_dim: usize,
    /// FFN inner size.
    pub intermediate: usize,
    /// Layer applications.
    pub layers: usize,
    /// Layer groups.
    pub groups: usize,
    /// Layers per group.
    pub inner: usize,
    /// Activation.
    pub activation: Activation,
    /// LayerNorm epsilon.
    pub eps: f32,
    /// Position table size.
    pub max_positions: usize,
    /// Token-type table size.
    pub type_vocab: usize,
}

/// The masked-LM head.
#[derive(Debug, Clone, PartialEq)]
pub struct MlmHead {
    /// `predictions.dense` `[E][H]`.
    pub dense: Linear,
    /// `predictions.LayerNorm`.
    pub norm: Norm,
    /// `predictions.bias` `[vocab]`.
    pub bias: Vec<f32>,
    /// An untied decoder `[vocab][E]`; `None` when tied to the word embeddings.
    pub decoder: Option<Mat>,
}

/// An interpreted checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Albert {
    /// Shape.
    pub arch: Arch,
    /// Task head.
    pub head: HeadKind,
    /// Label names (classification heads).
    pub labels: Vec<String>,
    /// What a sequence classifier's logits mean (the default for other heads).
    pub problem_type: ProblemType,
    /// `[vocab][E]`.
    pub word: Mat,
    /// `[max_positions][E]`.
    pub position: Mat,
    /// `[type_vocab][E]`.
    pub token_type: Mat,
    /// `embeddings.LayerNorm`.
    pub emb_norm: Norm,
    /// `embedding_hidden_mapping_in` `[H][E]`.
    pub mapping_in: Linear,
    /// Stored layers, index `group * inner + j`.
    pub layers: Vec<Layer>,
    /// `pooler` `[H][H]`.
    pub pooler: Option<Linear>,
    /// `classifier` / `qa_outputs`.
    pub classifier: Option<Linear>,
    /// `predictions.*`.
    pub mlm: Option<MlmHead>,
}

impl Albert {
    /// Parameters as Hugging Face counts them (each shared weight once; a tied
    /// decoder not counted twice).
    pub fn parameter_count(&self) -> usize {
        let lin = |l: &Linear| l.w.data.len() + l.b.len();
        let norm = |n: &Norm| n.gamma.len() + n.beta.len();
        let mut n = self.word.data.len()
            + self.position.data.len()
            + self.token_type.data.len()
            + norm(&self.emb_norm)
            + lin(&self.mapping_in);
        for l in &self.layers {
            n += lin(&l.query)
                + lin(&l.key)
                + lin(&l.value)
                + lin(&l.dense)
                + norm(&l.attn_norm)
                + lin(&l.ffn)
                + lin(&l.ffn_output)
                + norm(&l.out_norm);
        }
        n += self.pooler.as_ref().map_or(0, lin) + self.classifier.as_ref().map_or(0, lin);
        if let Some(m) = &self.mlm {
            n += lin(&m.dense)
                + norm(&m.norm)
                + m.bias.len()
                + m.decoder.as_ref().map_or(0, |d| d.data.len());
        }
        n
    }
}
