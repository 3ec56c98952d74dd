//! The Hugging Face `config.json` of an ALBERT checkpoint, as far as the converter needs it.

use albert_edge::ProblemType;
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;

/// Fields of an ALBERT `config.json`. Unknown fields are ignored; missing ones take
/// the defaults of transformers' `AlbertConfig`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct HfConfig {
    /// Must be `"albert"`.
    #[serde(default)]
    pub model_type: Option<String>,
    /// `architectures[0]`, e.g. `AlbertForSequenceClassification`.
    #[serde(default)]
    pub architectures: Option<Vec<String>>,
    /// Vocabulary size.
    #[serde(default = "d_vocab")]
    pub vocab_size: usize,
    /// Factorized embedding size E.
    #[serde(default = "d_e")]
    pub embedding_size: usize,
    /// Hidden size H.
    #[serde(default = "d_h")]
    pub hidden_size: usize,
    /// Attention heads.
    #[serde(default = "d_heads")]
    pub num_attention_heads: usize,
    /// FFN inner size.
    #[serde(default = "d_i")]
    pub intermediate_size: usize,
    /// Number of layer applications.
    #[serde(default = "d_layers")]
    pub num_hidden_layers: usize,
    /// Number of distinct layer groups.
    #[serde(default = "one")]
    pub num_hidden_groups: usize,
    /// Layers per group.
    #[serde(default = "one")]
    pub inner_group_num: usize,
    /// Activation name (`gelu_new`, `gelu`, `relu`, ...).
    #[serde(default = "d_act")]
    pub hidden_act: String,
    /// LayerNorm epsilon.
    #[serde(default = "d_eps")]
    pub layer_norm_eps: f64,
    /// Position table size.
    #[serde(default = "d_pos")]
    pub max_position_embeddings: usize,
    /// Token type table size.
    #[serde(default = "two")]
    pub type_vocab_size: usize,
    /// Optional label names.
    #[serde(default)]
    pub id2label: Option<BTreeMap<String, String>>,
    /// Optional label count.
    #[serde(default)]
    pub num_labels: Option<usize>,
    /// `position_embedding_type`; only `absolute` is supported.
    #[serde(default)]
    pub position_embedding_type: Option<String>,
    /// `problem_type` of a sequence classifier: `regression`,
    /// `single_label_classification`, `multi_label_classification` or unset.
    #[serde(default)]
    pub problem_type: Option<String>,
}

fn d_vocab() -> usize {
    30000
}
fn d_e() -> usize {
    128
}
fn d_h() -> usize {
    4096
}
fn d_heads() -> usize {
    64
}
fn d_i() -> usize {
    16384
}
fn d_layers() -> usize {
    12
}
fn one() -> usize {
    1
}
fn two() -> usize {
    2
}
fn d_act() -> String {
    "gelu_new".into()
}
fn d_eps() -> f64 {
    1e-12
}
fn d_pos() -> usize {
    512
}

impl HfConfig {
    /// Parses `config.json` text and checks that it describes an ALBERT this project can run.
    pub fn from_json(text: &str) -> Result<Self> {
        let cfg: HfConfig = serde_json::from_str(text)
            .context("config.json is not valid JSON for an ALBERT config")?;
        cfg.check()?;
        Ok(cfg)
    }

    /// Rejects configurations the runtime cannot run exactly.
    pub fn check(&self) -> Result<()> {
        match self.model_type.as_deref() {
            Some("albert") => {}
            Some(other) => {
                bail!("config.json: model_type {other:?} is not supported (only \"albert\")")
            }
            None => bail!("config.json: missing field model_type (expected \"albert\")"),
        }
        if let Some(p) = &self.position_embedding_type {
            if p != "absolute" {
                bail!("config.json: position_embedding_type {p:?} is not supported (only \"absolute\")");
            }
        }
        crate::names::activation_code(&self.hidden_act)?;
        self.problem()?;
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("embedding_size", self.embedding_size),
            ("hidden_size", self.hidden_size),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_hidden_groups", self.num_hidden_groups),
            ("inner_group_num", self.inner_group_num),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ] {
            if v == 0 || v > (1 << 24) {
                bail!("config.json: {name} = {v} is out of range");
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            bail!(
                "config.json: hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size,
                self.num_attention_heads
            );
        }
        if self.num_hidden_groups > self.num_hidden_layers {
            bail!("config.json: num_hidden_groups > num_hidden_layers");
        }
        let calls = self.num_hidden_layers.saturating_mul(self.inner_group_num);
        if calls > albert_edge::format::MAX_LAYER_CALLS as usize {
            bail!(
                "config.json: num_hidden_layers x inner_group_num = {calls} layer applications, more than the {} a model file may ask for",
                albert_edge::format::MAX_LAYER_CALLS
            );
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps >= 0.0) {
            bail!("config.json: layer_norm_eps must be a finite non-negative number");
        }
        Ok(())
    }

    /// The `problem_type` (the default when unset).
    pub fn problem(&self) -> Result<ProblemType> {
        match self.problem_type.as_deref() {
            None => Ok(ProblemType::SingleLabel),
            Some(p) => ProblemType::from_name(p).ok_or_else(|| {
                anyhow::anyhow!(
                    "config.json: problem_type {p:?} is not one of \"regression\", \"single_label_classification\", \"multi_label_classification\""
                )
            }),
        }
    }

    /// Label names in index order, when `id2label` gives a complete set for `n` labels.
    pub fn label_names(&self, n: usize) -> Vec<String> {
        let mut out: Vec<String> = (0..n).map(|i| format!("LABEL_{i}")).collect();
        if let Some(map) = &self.id2label {
            for (k, v) in map {
                if let Ok(i) = k.parse::<usize>() {
                    if i < n {
                        out[i] = v.clone();
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_type_names_are_transformers_and_others_refused() {
        let with = |p: &str| {
            format!(r#"{{"model_type": "albert", "hidden_size": 64, "num_attention_heads": 4{p}}}"#)
        };
        assert_eq!(
            HfConfig::from_json(&with("")).unwrap().problem().unwrap(),
            ProblemType::SingleLabel
        );
        assert_eq!(
            HfConfig::from_json(&with(r#", "problem_type": null"#))
                .unwrap()
                .problem()
                .unwrap(),
            ProblemType::SingleLabel
        );
        for p in [
            ProblemType::SingleLabel,
            ProblemType::MultiLabel,
            ProblemType::Regression,
        ] {
            let c = HfConfig::from_json(&with(&format!(r#", "problem_type": "{}""#, p.name())))
                .unwrap();
            assert_eq!(c.problem().unwrap(), p);
        }
        let e = HfConfig::from_json(&with(r#", "problem_type": "multi_label""#)).unwrap_err();
        assert!(
            format!("{e:#}").contains("problem_type \"multi_label\""),
            "{e:#}"
        );
    }

    #[test]
    fn layer_applications_are_bounded() {
        let with = |layers: usize, inner: usize| {
            HfConfig::from_json(&format!(
                r#"{{"model_type": "albert", "num_hidden_layers": {layers}, "inner_group_num": {inner}}}"#
            ))
            .and_then(|c| c.check())
        };
        with(12, 1).unwrap();
        with(512, 2).unwrap();
        let e = format!("{:#}", with(513, 2).unwrap_err());
        assert!(e.contains("1026 layer applications"), "{e}");
    }
}
