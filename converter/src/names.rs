//! The one place that knows Hugging Face ALBERT tensor names: turns a
//! [`RawCheckpoint`] into an [`Albert`], checking every shape.
//!
//! Names follow transformers' `modeling_albert.py` (v5.24.0): `AlbertModel`
//! tensors are unprefixed; the head classes put the backbone under `albert.`
//! and add `pooler` (sequence classification and the base model only),
//! `classifier`, `qa_outputs` or `predictions.*` (the MLM decoder is tied to the
//! word embeddings and usually absent).

use crate::load::{RawCheckpoint, Tensor};
use crate::model::{Albert, Arch, Layer, Linear, Mat, MlmHead, Norm};
use albert_edge::{Activation, HeadKind, ProblemType};
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet};

/// Activation code stored in the model file for a `hidden_act` name.
pub fn activation_code(name: &str) -> Result<u32> {
    Ok(activation(name)? as u32)
}

/// Parses a `hidden_act` name.
///
/// transformers spells the same three functions several ways (its
/// `activations.ACT2CLS`): the tanh approximation of GELU is `gelu_new`,
/// `gelu_pytorch_tanh`, `gelu_python_tanh`, `gelu_fast` and `gelu_accurate`
/// (the same formula, its constant written out or not), the erf GELU is `gelu`
/// and `gelu_python`.
pub fn activation(name: &str) -> Result<Activation> {
    Ok(match name {
        "gelu_new" | "gelu_pytorch_tanh" | "gelu_python_tanh" | "gelu_fast" | "gelu_accurate" => {
            Activation::GeluNew
        }
        "gelu" | "gelu_python" => Activation::Gelu,
        "relu" => Activation::Relu,
        other => bail!(
            "config.json: hidden_act {other:?} is not supported (gelu_new and its aliases \
             gelu_pytorch_tanh, gelu_python_tanh, gelu_fast, gelu_accurate; gelu, gelu_python; relu)"
        ),
    })
}

struct Take<'a> {
    tensors: &'a BTreeMap<String, Tensor>,
    used: BTreeSet<String>,
}

impl Take<'_> {
    fn get(&mut self, name: &str, shape: &[usize]) -> Result<&Tensor> {
        let t = self
            .tensors
            .get(name)
            .with_context(|| format!("missing tensor {name}"))?;
        if t.shape != shape {
            bail!(
                "tensor {name} has shape {:?}, expected {:?}",
                t.shape,
                shape
            );
        }
        self.used.insert(name.to_string());
        Ok(t)
    }
    fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
    fn mat(&mut self, name: &str, rows: usize, cols: usize) -> Result<Mat> {
        Ok(Mat {
            rows,
            cols,
            data: self.get(name, &[rows, cols])?.data.clone(),
        })
    }
    fn vec(&mut self, name: &str, n: usize) -> Result<Vec<f32>> {
        Ok(self.get(name, &[n])?.data.clone())
    }
    fn linear(&mut self, prefix: &str, out: usize, inp: usize) -> Result<Linear> {
        Ok(Linear {
            w: self.mat(&format!("{prefix}.weight"), out, inp)?,
            b: self.vec(&format!("{prefix}.bias"), out)?,
        })
    }
    fn norm(&mut self, prefix: &str, n: usize) -> Result<Norm> {
        Ok(Norm {
            gamma: self.vec(&format!("{prefix}.weight"), n)?,
            beta: self.vec(&format!("{prefix}.bias"), n)?,
        })
    }
}

/// Interprets a checkpoint. Refuses unknown tensors, missing ones, wrong shapes,
/// and configurations the runtime cannot reproduce exactly.
pub fn interpret(raw: &RawCheckpoint) -> Result<Albert> {
    let c = &raw.config;
    c.check()?;
    let mut t = Take {
        tensors: &raw.tensors,
        used: BTreeSet::new(),
    };
    let p = if t.has("albert.embeddings.word_embeddings.weight") {
        "albert."
    } else {
        ""
    };
    let (v, e, h, i) = (
        c.vocab_size,
        c.embedding_size,
        c.hidden_size,
        c.intermediate_size,
    );
    let heads = c.num_attention_heads;
    let arch = Arch {
        vocab: v,
        embedding: e,
        hidden: h,
        heads,
        head_dim: h / heads,
        intermediate: i,
        layers: c.num_hidden_layers,
        groups: c.num_hidden_groups,
        inner: c.inner_group_num,
        activation: activation(&c.hidden_act)?,
        eps: c.layer_norm_eps as f32,
        max_positions: c.max_position_embeddings,
        type_vocab: c.type_vocab_size,
    };
    let word = t.mat(&format!("{p}embeddings.word_embeddings.weight"), v, e)?;
    let position = t.mat(
        &format!("{p}embeddings.position_embeddings.weight"),
        c.max_position_embeddings,
        e,
    )?;
    let token_type = t.mat(
        &format!("{p}embeddings.token_type_embeddings.weight"),
        c.type_vocab_size,
        e,
    )?;
    let emb_norm = t.norm(&format!("{p}embeddings.LayerNorm"), e)?;
    let mapping_in = t.linear(&format!("{p}encoder.embedding_hidden_mapping_in"), h, e)?;
    let mut layers = Vec::new();
    for g in 0..c.num_hidden_groups {
        for j in 0..c.inner_group_num {
            let l = format!("{p}encoder.albert_layer_groups.{g}.albert_layers.{j}.");
            layers.push(Layer {
                query: t.linear(&format!("{l}attention.query"), h, h)?,
                key: t.linear(&format!("{l}attention.key"), h, h)?,
                value: t.linear(&format!("{l}attention.value"), h, h)?,
                dense: t.linear(&format!("{l}attention.dense"), h, h)?,
                attn_norm: t.norm(&format!("{l}attention.LayerNorm"), h)?,
                ffn: t.linear(&format!("{l}ffn"), i, h)?,
                ffn_output: t.linear(&format!("{l}ffn_output"), h, i)?,
                out_norm: t.norm(&format!("{l}full_layer_layer_norm"), h)?,
            });
        }
    }
    let pooler = if t.has(&format!("{p}pooler.weight")) {
        Some(t.linear(&format!("{p}pooler"), h, h)?)
    } else {
        None
    };
    let arch_name = c
        .architectures
        .as_ref()
        .and_then(|a| a.first())
        .map(String::as_str)
        .unwrap_or("");
    let (head, classifier, mlm) = if t.has("qa_outputs.weight") {
        (
            HeadKind::QuestionAnswering,
            Some(t.linear("qa_outputs", 2, h)?),
            None,
        )
    } else if t.has("classifier.weight") {
        let n = raw.tensors["classifier.weight"]
            .shape
            .first()
            .copied()
            .unwrap_or(0);
        if n == 0 {
            bail!("tensor classifier.weight has no rows");
        }
        if arch_name == "AlbertForMultipleChoice" && n != 1 {
            bail!("AlbertForMultipleChoice has one classifier output, but classifier.weight has {n} rows");
        }
        let kind = if arch_name == "AlbertForTokenClassification"
            || (pooler.is_none()
                && arch_name != "AlbertForSequenceClassification"
                && arch_name != "AlbertForMultipleChoice")
        {
            HeadKind::TokenClassification
        } else {
            HeadKind::SequenceClassification
        };
        if kind == HeadKind::SequenceClassification && pooler.is_none() {
            bail!("sequence classification checkpoint lacks {p}pooler.weight");
        }
        (kind, Some(t.linear("classifier", n, h)?), None)
    } else if t.has("predictions.bias") {
        let dense = t.linear("predictions.dense", e, h)?;
        let norm = t.norm("predictions.LayerNorm", e)?;
        let bias = t.vec("predictions.bias", v)?;
        let mut decoder = None;
        if t.has("predictions.decoder.weight") {
            let d = t.mat("predictions.decoder.weight", v, e)?;
            if d != word {
                decoder = Some(d);
            }
        }
        if t.has("predictions.decoder.bias") {
            let db = t.vec("predictions.decoder.bias", v)?;
            if db != bias {
                bail!("predictions.decoder.bias differs from predictions.bias (transformers ties them)");
            }
        }
        (
            HeadKind::MaskedLm,
            None,
            Some(MlmHead {
                dense,
                norm,
                bias,
                decoder,
            }),
        )
    } else {
        (HeadKind::Base, None, None)
    };
    if !arch_name.is_empty() {
        let expect = match head {
            HeadKind::Base => "AlbertModel",
            HeadKind::SequenceClassification => "AlbertForSequenceClassification",
            HeadKind::TokenClassification => "AlbertForTokenClassification",
            HeadKind::QuestionAnswering => "AlbertForQuestionAnswering",
            HeadKind::MaskedLm => "AlbertForMaskedLM",
        };
        let ok = arch_name == expect
            || (head == HeadKind::MaskedLm && arch_name == "AlbertForPreTraining")
            || (head == HeadKind::SequenceClassification && arch_name == "AlbertForMultipleChoice");
        if !ok {
            bail!("config.json says {arch_name}, but the tensors describe {expect}");
        }
    }
    // Tensors the runtime would silently ignore are refused, except the sentence-order
    // head of AlbertForPreTraining, which is not part of masked-LM inference.
    let unused: Vec<&String> = raw
        .tensors
        .keys()
        .filter(|k| !t.used.contains(*k) && !k.starts_with("sop_classifier."))
        .collect();
    if let Some(first) = unused.first() {
        bail!("unexpected tensor {first} ({} unused in all); this checkpoint is not an ALBERT the converter understands", unused.len());
    }
    let labels = match head {
        HeadKind::SequenceClassification | HeadKind::TokenClassification => {
            c.label_names(classifier.as_ref().map_or(0, |l| l.w.rows))
        }
        _ => Vec::new(),
    };
    // transformers reads `problem_type` in sequence classification only; a
    // multiple-choice model is a one-output sequence classifier whose rows
    // (the choices of one question) compete.
    let problem_type = match head {
        HeadKind::SequenceClassification if arch_name == "AlbertForMultipleChoice" => {
            ProblemType::MultipleChoice
        }
        HeadKind::SequenceClassification => c.problem()?,
        _ => ProblemType::SingleLabel,
    };
    Ok(Albert {
        arch,
        head,
        labels,
        problem_type,
        word,
        position,
        token_type,
        emb_norm,
        mapping_in,
        layers,
        pooler,
        classifier,
        mlm,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_act_aliases_name_the_same_three_functions() {
        for name in [
            "gelu_new",
            "gelu_pytorch_tanh",
            "gelu_python_tanh",
            "gelu_fast",
            "gelu_accurate",
        ] {
            assert_eq!(activation(name).unwrap(), Activation::GeluNew, "{name}");
        }
        for name in ["gelu", "gelu_python"] {
            assert_eq!(activation(name).unwrap(), Activation::Gelu, "{name}");
        }
        assert_eq!(activation("relu").unwrap(), Activation::Relu);
        for name in ["gelu_10", "quick_gelu", "silu", "swish", "GELU", ""] {
            let e = activation(name).unwrap_err().to_string();
            assert!(
                e.contains("hidden_act") && e.contains("not supported"),
                "{name}: {e}"
            );
        }
    }
}
