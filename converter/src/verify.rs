//! `albert-convert verify`: runs an ONNX graph (tract, fp32) and a `.albert` file
//! ([`albert_edge::Model`]) on the same token ids and compares every output the two have
//! in common, by name (`logits`, `last_hidden_state`, `pooler_output`, `start_logits`,
//! `end_logits`).
//!
//! Everything here is a plain function over in-memory values so tests can call it:
//! [`synthetic_cases`] / [`parse_cases`] make the inputs, [`OnnxRunner`] and [`run_albert`]
//! produce [`NamedOutput`]s, [`compare`] measures them and [`verify`] ties it together
//! into a [`VerifyReport`].
//!
//! Tolerances ([`Tolerance`]): an explicit `--tolerance T` bounds the max abs error of
//! every output by `T`. Without it, f32 files must be within 1e-4 (ONNX Runtime and
//! transformers agree to ~3e-6 on the fixtures; our f32 files to < 1e-6), int8 files
//! within 15% of the largest |value| of the ONNX output (per output name, over all
//! cases). Measured int8 errors, relative to that maximum: 0.4% on sst2-tiny, 3.5% on
//! tiny-base/seqcls2 and 9.4% on tiny-base/base's `pooler_output` (fixtures built with
//! outlier channels to stress int8). A file converted from different weights is off by
//! the order of the outputs themselves, far above 15%.

use albert_edge::{Input, Model, Precision};
use anyhow::{anyhow, bail, ensure, Context, Result};
use serde_json::Value;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use tract_onnx::pb::ModelProto;
use tract_onnx::prelude::{
    DatumType, Framework, InferenceFact, InferenceModel, InferenceModelExt, IntoRunnable,
    IntoTValue, TVec, Tensor,
};
use tract_onnx::tract_hir::infer::Factoid;

/// The output names the runtime can produce; only these are compared.
pub const OUTPUT_NAMES: [&str; 5] = [
    "logits",
    "last_hidden_state",
    "pooler_output",
    "start_logits",
    "end_logits",
];

/// Default max abs error for f32 files.
pub const F32_TOLERANCE: f32 = 1e-4;
/// Default max abs error for int8 files, as a fraction of the largest |value| of the
/// ONNX output it is compared with.
pub const INT8_RELATIVE_TOLERANCE: f32 = 0.15;

/// One batch of inputs, `[batch][seq]` row-major, as the ONNX graph takes them.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// Shown in the report.
    pub name: String,
    /// Sequences.
    pub batch: usize,
    /// Tokens per sequence.
    pub seq: usize,
    /// Token ids.
    pub input_ids: Vec<i64>,
    /// 1 = attend, 0 = padding.
    pub attention_mask: Vec<i64>,
    /// Segment ids.
    pub token_type_ids: Vec<i64>,
}

/// A few deterministic cases that fit a model with this vocabulary, position table and
/// token-type table: one token, an unpadded sequence, a sentence pair (token type 1 on
/// the second part when the table has two types) and a right-padded batch of two.
pub fn synthetic_cases(vocab_size: u32, max_positions: u32, type_vocab_size: u32) -> Vec<Case> {
    let v = u64::from(vocab_size.max(1));
    let p = (max_positions as usize).max(1);
    let second_type = i64::from(type_vocab_size > 1);
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next_id = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 33) % v) as i64
    };
    let mut cases = Vec::new();
    // One token: [CLS] (id 2) when the vocabulary has it.
    cases.push(Case {
        name: "synthetic_len1".into(),
        batch: 1,
        seq: 1,
        input_ids: vec![if v > 2 { 2 } else { 0 }],
        attention_mask: vec![1],
        token_type_ids: vec![0],
    });
    let s = 9.min(p);
    cases.push(Case {
        name: format!("synthetic_len{s}"),
        batch: 1,
        seq: s,
        input_ids: (0..s).map(|_| next_id()).collect(),
        attention_mask: vec![1; s],
        token_type_ids: vec![0; s],
    });
    let s = 24.min(p);
    cases.push(Case {
        name: format!("synthetic_pair{s}"),
        batch: 1,
        seq: s,
        input_ids: (0..s).map(|_| next_id()).collect(),
        attention_mask: vec![1; s],
        token_type_ids: (0..s)
            .map(|i| if i >= s / 2 { second_type } else { 0 })
            .collect(),
    });
    let s = 16.min(p);
    let lens = [s, (s / 3).max(1)];
    let mut c = Case {
        name: format!("synthetic_batch2_padded{s}"),
        batch: 2,
        seq: s,
        input_ids: Vec::new(),
        attention_mask: Vec::new(),
        token_type_ids: Vec::new(),
    };
    for (row, &len) in lens.iter().enumerate() {
        for i in 0..s {
            let real = i < len;
            c.input_ids.push(if real { next_id() } else { 0 });
            c.attention_mask.push(i64::from(real));
            // Row 0 is a pair; row 1 a single padded sentence.
            c.token_type_ids.push(if row == 0 && i >= len / 2 {
                second_type
            } else {
                0
            });
        }
    }
    cases.push(c);
    cases
}

/// Reads `{"shape": [B, S], "data": [...]}` (an optional `"dtype"` must be an integer type).
fn int_array(v: &Value, what: &str) -> Result<(usize, usize, Vec<i64>)> {
    let obj = v
        .as_object()
        .ok_or_else(|| anyhow!("{what}: expected an object with \"shape\" and \"data\""))?;
    if obj.contains_key("safetensors") {
        bail!("{what}: arrays stored in a safetensors sidecar are not supported for inputs");
    }
    if let Some(dt) = obj.get("dtype") {
        let dt = dt.as_str().unwrap_or("");
        ensure!(
            matches!(dt, "i64" | "i32" | "int64" | "int32"),
            "{what}: dtype {dt:?} is not an integer type"
        );
    }
    let shape = obj
        .get("shape")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("{what}: missing \"shape\""))?;
    ensure!(
        shape.len() == 2,
        "{what}: shape must be [batch, seq], got {} dimensions",
        shape.len()
    );
    let dim = |i: usize| -> Result<usize> {
        shape[i]
            .as_u64()
            .and_then(|d| usize::try_from(d).ok())
            .filter(|&d| d > 0)
            .ok_or_else(|| anyhow!("{what}: shape[{i}] must be a positive integer"))
    };
    let (b, s) = (dim(0)?, dim(1)?);
    let data = obj
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("{what}: missing \"data\""))?;
    let n = b
        .checked_mul(s)
        .ok_or_else(|| anyhow!("{what}: shape too large"))?;
    ensure!(
        data.len() == n,
        "{what}: shape [{b}, {s}] needs {n} values, \"data\" has {}",
        data.len()
    );
    let vals = data
        .iter()
        .enumerate()
        .map(|(i, x)| {
            x.as_i64()
                .ok_or_else(|| anyhow!("{what}: data[{i}] = {x} is not an integer"))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((b, s, vals))
}

/// Reads one case object (`input_ids`, optional `attention_mask` / `token_type_ids`,
/// optional `name`).
fn parse_case(v: &Value, default_name: &str) -> Result<Case> {
    let name = v
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or(default_name)
        .to_string();
    let ids = v
        .get("input_ids")
        .ok_or_else(|| anyhow!("case {name}: missing \"input_ids\""))?;
    let (batch, seq, input_ids) = int_array(ids, &format!("case {name}: input_ids"))?;
    let other = |key: &str, default: i64| -> Result<Vec<i64>> {
        match v.get(key) {
            None | Some(Value::Null) => Ok(vec![default; batch * seq]),
            Some(a) => {
                let (b, s, d) = int_array(a, &format!("case {name}: {key}"))?;
                ensure!(
                    (b, s) == (batch, seq),
                    "case {name}: {key} has shape [{b}, {s}], input_ids [{batch}, {seq}]"
                );
                Ok(d)
            }
        }
    };
    let attention_mask = other("attention_mask", 1)?;
    let token_type_ids = other("token_type_ids", 0)?;
    Ok(Case {
        name,
        batch,
        seq,
        input_ids,
        attention_mask,
        token_type_ids,
    })
}

/// Parses `--inputs`: one case in the `reference.json` case layout
/// (`{"input_ids": {"shape": [B,S], "data": [...]}, "attention_mask": ..., "token_type_ids": ...}`),
/// a whole `reference.json` (every entry of `"cases"`), or a JSON array of cases.
/// `default_name` names cases that have no `"name"`.
pub fn parse_cases(json: &str, default_name: &str) -> Result<Vec<Case>> {
    let v: Value = serde_json::from_str(json).context("not valid JSON")?;
    let list = if let Some(cases) = v.get("cases") {
        cases
            .as_array()
            .ok_or_else(|| anyhow!("\"cases\" is not an array"))?
            .clone()
    } else if let Some(a) = v.as_array() {
        a.clone()
    } else if v.get("input_ids").is_some() {
        vec![v]
    } else {
        bail!("expected a case with \"input_ids\", a reference.json with \"cases\", or an array of cases");
    };
    ensure!(!list.is_empty(), "no cases in the input file");
    list.iter()
        .enumerate()
        .map(|(i, c)| {
            let name = if list.len() == 1 {
                default_name.to_string()
            } else {
                format!("{default_name}[{i}]")
            };
            parse_case(c, &name)
        })
        .collect()
}

/// [`parse_cases`] on a file (cases without a name are named after the file).
pub fn read_cases(path: &Path) -> Result<Vec<Case>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "case".into());
    parse_cases(&text, &stem).with_context(|| format!("{}", path.display()))
}

/// One output tensor, owned.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedOutput {
    /// transformers' output name.
    pub name: String,
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
}

/// Turns a panic payload into text.
fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Runs `f`, turning a panic inside tract into an error (untrusted graphs must not abort).
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => Err(anyhow!("{what}: tract panicked: {}", panic_message(p))),
    }
}

/// Which of our three inputs a graph input is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InputRole {
    Ids,
    Mask,
    Types,
}

/// An ONNX graph decoded once by tract, run in fp32 for each input shape.
#[derive(Debug, Clone)]
pub struct OnnxRunner {
    model: InferenceModel,
    inputs: Vec<(InputRole, DatumType)>,
    outputs: Vec<String>,
    /// A multiple-choice graph: `[batch, choices, seq]` inputs. A case's rows
    /// are run as the choices of one question (`[1, rows, seq]`), and the
    /// `[1, rows]` logits compared as the model file's `[rows, 1]`.
    choices: bool,
}

impl OnnxRunner {
    /// Decodes the graph at `path`. Its inputs must be (a subset of) `input_ids`,
    /// `attention_mask` and `token_type_ids`, of an integer type.
    pub fn load(path: &Path) -> Result<OnnxRunner> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let proto = guarded("decoding the ONNX file", || {
            tract_onnx::onnx()
                .proto_model_for_read(&mut bytes.as_slice())
                .map_err(|e| anyhow!("not a valid ONNX protobuf file ({e})"))
        })
        .with_context(|| format!("{}", path.display()))?;
        Self::from_proto(&proto, path.parent()).with_context(|| format!("{}", path.display()))
    }

    /// Builds the runner from a decoded `ModelProto`; `dir` is the folder external data
    /// is resolved against.
    pub fn from_proto(proto: &ModelProto, dir: Option<&Path>) -> Result<OnnxRunner> {
        let dir = dir
            .map(|d| {
                d.to_str()
                    .ok_or_else(|| anyhow!("the model folder path is not UTF-8"))
            })
            .transpose()?
            .map(|d| if d.is_empty() { "." } else { d });
        let model = guarded("loading the ONNX graph", || {
            tract_onnx::onnx()
                .parse(proto, dir)
                .map(|p| p.model)
                .map_err(|e| anyhow!("not a graph tract can read ({e:#})"))
        })?;
        Self::from_model(model)
    }

    /// Wraps an already decoded model.
    pub fn from_model(model: InferenceModel) -> Result<OnnxRunner> {
        let mut inputs = Vec::new();
        let mut choices = false;
        for (ix, outlet) in model.input_outlets()?.iter().enumerate() {
            let name = model.node(outlet.node).name.as_str();
            let role = match name {
                "input_ids" => InputRole::Ids,
                "attention_mask" => InputRole::Mask,
                "token_type_ids" => InputRole::Types,
                other => bail!(
                    "graph input {other:?} is not one of input_ids, attention_mask, token_type_ids"
                ),
            };
            let dt = model
                .input_fact(ix)?
                .datum_type
                .concretize()
                .unwrap_or(DatumType::I64);
            ensure!(
                matches!(dt, DatumType::I64 | DatumType::I32),
                "graph input {name} has type {dt:?}, expected int64 or int32"
            );
            choices |= model.input_fact(ix)?.shape.rank().concretize() == Some(3);
            inputs.push((role, dt));
        }
        ensure!(
            inputs.iter().any(|(r, _)| *r == InputRole::Ids),
            "the graph has no input_ids input"
        );
        let outputs = model
            .output_outlets()?
            .iter()
            .enumerate()
            .map(|(i, o)| {
                model
                    .outlet_label(*o)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("output_{i}"))
            })
            .collect();
        Ok(OnnxRunner {
            model,
            inputs,
            outputs,
            choices,
        })
    }

    /// The graph's output names, in order.
    pub fn output_names(&self) -> &[String] {
        &self.outputs
    }

    /// Runs the graph on `case` (the model is specialized to the case's `[batch, seq]`
    /// and optimized first).
    pub fn run(&self, case: &Case) -> Result<Vec<NamedOutput>> {
        guarded("running the ONNX graph", || self.run_inner(case))
            .with_context(|| format!("case {}", case.name))
    }

    fn run_inner(&self, case: &Case) -> Result<Vec<NamedOutput>> {
        let (b, s) = (case.batch, case.seq);
        let mut model = self.model.clone();
        // Shapes the file declares for intermediate values (`value_info`, e.g. written by
        // ONNX Runtime's pre-processing with symbolic `batch` / `sequence`) would conflict
        // with the concrete input shapes; forget them and let tract infer everything from
        // the inputs. Constants (facts with a known value) are kept.
        let inputs: Vec<usize> = model.input_outlets()?.iter().map(|o| o.node).collect();
        for id in 0..model.nodes().len() {
            if inputs.contains(&id) {
                continue;
            }
            for slot in 0..model.node(id).outputs.len() {
                let outlet = tract_onnx::prelude::OutletId::new(id, slot);
                if model.outlet_fact(outlet)?.value.concretize().is_none() {
                    model.set_outlet_fact(outlet, InferenceFact::default())?;
                }
            }
        }
        let dims = if self.choices {
            vec![1, b, s]
        } else {
            vec![b, s]
        };
        let mut values = TVec::new();
        for (ix, (role, dt)) in self.inputs.iter().enumerate() {
            let data = match role {
                InputRole::Ids => &case.input_ids,
                InputRole::Mask => &case.attention_mask,
                InputRole::Types => &case.token_type_ids,
            };
            model.set_input_fact(ix, InferenceFact::dt_shape(*dt, dims.clone()))?;
            let t = if *dt == DatumType::I32 {
                let d = data
                    .iter()
                    .map(|&x| i32::try_from(x).map_err(|_| anyhow!("value {x} does not fit int32")))
                    .collect::<Result<Vec<_>>>()?;
                Tensor::from_shape(&dims, &d)?
            } else {
                Tensor::from_shape(&dims, data)?
            };
            values.push(t.into_tvalue());
        }
        let plan = model
            .into_optimized()
            .map_err(|e| anyhow!("tract cannot optimize the graph: {e:#}"))?
            .into_runnable()
            .map_err(|e| anyhow!("tract cannot plan the graph: {e:#}"))?;
        let results = plan.run(values).map_err(|e| anyhow!("tract: {e:#}"))?;
        ensure!(
            results.len() == self.outputs.len(),
            "tract returned {} outputs, the graph declares {}",
            results.len(),
            self.outputs.len()
        );
        let mut out = Vec::new();
        for (name, v) in self.outputs.iter().zip(results.iter()) {
            let t = v
                .cast_to::<f32>()
                .map_err(|e| anyhow!("output {name}: {e}"))?;
            let view = t.to_plain_array_view::<f32>()?;
            let shape = match t.shape() {
                // One logit per choice, as the model file gives it: one per row.
                [1, rows] if self.choices => vec![*rows, 1],
                s => s.to_vec(),
            };
            out.push(NamedOutput {
                name: name.clone(),
                shape,
                data: view.iter().copied().collect(),
            });
        }
        Ok(out)
    }
}

/// Converts int64 ids to the runtime's u32, refusing negative or huge values.
fn to_u32(v: &[i64], what: &str) -> Result<Vec<u32>> {
    v.iter()
        .enumerate()
        .map(|(i, &x)| u32::try_from(x).map_err(|_| anyhow!("{what}[{i}] = {x} is not a valid id")))
        .collect()
}

/// Runs a `.albert` model on `case` and copies its outputs.
pub fn run_albert(model: &Model<'_>, case: &Case) -> Result<Vec<NamedOutput>> {
    let ids = to_u32(&case.input_ids, "input_ids")?;
    let mask: Vec<u32> = case
        .attention_mask
        .iter()
        .map(|&m| u32::from(m != 0))
        .collect();
    let types = to_u32(&case.token_type_ids, "token_type_ids")?;
    let input = Input {
        batch: case.batch,
        seq: case.seq,
        input_ids: &ids,
        attention_mask: Some(&mask),
        token_type_ids: Some(&types),
    };
    let needed = model.workspace_len(case.seq, case.batch);
    ensure!(
        needed != usize::MAX,
        "case {}: workspace size overflows",
        case.name
    );
    let mut ws = model.new_workspace(case.seq, case.batch);
    let outs = model
        .run(&mut ws, &input)
        .map_err(|e| anyhow!("case {}: {e}", case.name))?;
    Ok(outs
        .iter()
        .map(|o| NamedOutput {
            name: o.name.to_string(),
            shape: o.shape().to_vec(),
            data: o.data.to_vec(),
        })
        .collect())
}

/// Max abs difference and cosine similarity of two equally long vectors (computed in
/// f64). The cosine of two zero vectors is 1, of a zero and a non-zero vector 0.
/// A NaN anywhere gives a NaN max abs error (which fails every tolerance).
pub fn compare(a: &[f32], b: &[f32]) -> (f32, f64) {
    let mut max_abs = 0f32;
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let d = (x - y).abs();
        if d.is_nan() || d > max_abs {
            max_abs = if max_abs.is_nan() { max_abs } else { d };
        }
        dot += f64::from(x) * f64::from(y);
        na += f64::from(x) * f64::from(x);
        nb += f64::from(y) * f64::from(y);
    }
    let cos = match (na == 0.0, nb == 0.0) {
        (true, true) => 1.0,
        (true, false) | (false, true) => 0.0,
        _ => dot / (na.sqrt() * nb.sqrt()),
    };
    (max_abs, cos)
}

/// How the allowed max abs error of an output is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tolerance {
    /// The same bound for every output.
    Absolute(f32),
    /// A fraction of the largest |value| of the ONNX (reference) output; [`verify`] takes
    /// that maximum over all cases of the same output name.
    RelativeToMax(f32),
}

impl Tolerance {
    /// The default for a file of this precision: 1e-4 absolute for f32, 15% of the
    /// reference's max |value| for int8.
    pub fn default_for(p: Precision) -> Tolerance {
        match p {
            Precision::F32 => Tolerance::Absolute(F32_TOLERANCE),
            Precision::Int8 => Tolerance::RelativeToMax(INT8_RELATIVE_TOLERANCE),
        }
    }

    /// The bound for an output whose reference values are `reference` (one case).
    pub fn bound(&self, reference: &[f32]) -> f32 {
        match *self {
            Tolerance::Absolute(t) => t,
            Tolerance::RelativeToMax(r) => r * reference.iter().fold(0f32, |m, &x| m.max(x.abs())),
        }
    }

    /// Human-readable description for the report.
    pub fn describe(&self) -> String {
        match *self {
            Tolerance::Absolute(t) => format!("max abs error <= {t:e}"),
            Tolerance::RelativeToMax(r) => {
                format!("max abs error <= {r} x max|ONNX output| over all cases")
            }
        }
    }
}

/// One output of one case, compared.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Case name.
    pub case: String,
    /// Output name.
    pub output: String,
    /// Shape (of the ONNX output).
    pub shape: Vec<usize>,
    /// Largest |onnx - albert|; infinite when the shapes differ.
    pub max_abs: f32,
    /// Cosine similarity of the flattened outputs (0 when the shapes differ).
    pub cosine: f64,
    /// Largest |value| of the ONNX output.
    pub reference_max_abs: f32,
    /// The bound `max_abs` was held to.
    pub bound: f32,
}

impl Comparison {
    /// Whether `max_abs <= bound` (false for NaN).
    pub fn passed(&self) -> bool {
        self.max_abs <= self.bound
    }
}

/// Compares the outputs of one case by name; outputs only one side has are skipped.
pub fn compare_outputs(
    case: &str,
    onnx: &[NamedOutput],
    albert: &[NamedOutput],
    tol: Tolerance,
) -> Vec<Comparison> {
    let mut out = Vec::new();
    for name in OUTPUT_NAMES {
        let (Some(o), Some(a)) = (
            onnx.iter().find(|x| x.name == name),
            albert.iter().find(|x| x.name == name),
        ) else {
            continue;
        };
        let reference_max_abs = o.data.iter().fold(0f32, |m, &x| m.max(x.abs()));
        let (max_abs, cosine) = if o.shape == a.shape && o.data.len() == a.data.len() {
            compare(&o.data, &a.data)
        } else {
            (f32::INFINITY, 0.0)
        };
        out.push(Comparison {
            case: case.to_string(),
            output: name.to_string(),
            shape: o.shape.clone(),
            max_abs,
            cosine,
            reference_max_abs,
            bound: tol.bound(&o.data),
        });
    }
    out
}

/// Everything `verify` measured.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    /// The `.albert` file's precision.
    pub precision: Precision,
    /// The tolerance rule applied.
    pub tolerance: Tolerance,
    /// One entry per case and common output.
    pub comparisons: Vec<Comparison>,
}

impl VerifyReport {
    /// True when every comparison is within its bound (and there is at least one).
    pub fn passed(&self) -> bool {
        !self.comparisons.is_empty() && self.comparisons.iter().all(Comparison::passed)
    }

    /// Largest max abs error over all cases, per output name.
    pub fn worst(&self, output: &str) -> Option<&Comparison> {
        self.comparisons
            .iter()
            .filter(|c| c.output == output)
            .max_by(|a, b| a.max_abs.total_cmp(&b.max_abs))
    }
}

/// The synthetic default cases for a loaded model.
pub fn default_cases(model: &Model<'_>) -> Vec<Case> {
    let c = model.config();
    synthetic_cases(c.vocab_size, c.max_positions, c.type_vocab_size)
}

/// Runs both models on every case and compares. `tolerance` overrides the precision's
/// default. Fails (rather than reporting) when a run fails or when the two have no output
/// name in common.
pub fn verify(
    onnx: &OnnxRunner,
    albert: &Model<'_>,
    cases: &[Case],
    tolerance: Option<Tolerance>,
) -> Result<VerifyReport> {
    ensure!(!cases.is_empty(), "no input cases");
    let precision = albert.config().precision;
    let tol = tolerance.unwrap_or(Tolerance::default_for(precision));
    let mut comparisons = Vec::new();
    // A graph without a token_type_ids input computes type 0 for every token (HF's
    // default); the model file reads them, so it gets those zeros.
    let zero_types = !onnx.inputs.iter().any(|(r, _)| *r == InputRole::Types);
    for case in cases {
        let a = if zero_types {
            let mut c = case.clone();
            c.token_type_ids.iter_mut().for_each(|t| *t = 0);
            run_albert(albert, &c)?
        } else {
            run_albert(albert, case)?
        };
        let o = onnx.run(case)?;
        let c = compare_outputs(&case.name, &o, &a, tol);
        if c.is_empty() {
            let names = |v: &[NamedOutput]| {
                v.iter()
                    .map(|x| x.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            bail!(
                "no output in common: the ONNX graph has [{}], the model file [{}]",
                names(&o),
                names(&a)
            );
        }
        comparisons.extend(c);
    }
    // A relative bound uses the largest |value| of the output over all cases, so a case
    // whose outputs happen to be small is not held to a tighter absolute bound.
    if let Tolerance::RelativeToMax(r) = tol {
        for i in 0..comparisons.len() {
            let name = &comparisons[i].output;
            let m = comparisons
                .iter()
                .filter(|c| &c.output == name)
                .fold(0f32, |m, c| m.max(c.reference_max_abs));
            comparisons[i].bound = r * m;
        }
    }
    Ok(VerifyReport {
        precision,
        tolerance: tol,
        comparisons,
    })
}

/// [`verify`] on files: `cases` of `None` means [`default_cases`].
pub fn verify_files(
    onnx: &Path,
    albert: &Path,
    cases: Option<&[Case]>,
    tolerance: Option<Tolerance>,
) -> Result<VerifyReport> {
    let model = Model::read(albert).map_err(|e| anyhow!("{}: {e}", albert.display()))?;
    let runner = OnnxRunner::load(onnx)?;
    let defaults;
    let cases = match cases {
        Some(c) => c,
        None => {
            defaults = default_cases(&model);
            &defaults
        }
    };
    verify(&runner, &model, cases, tolerance)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_cases_are_valid() {
        for (v, p, t) in [(30000, 512, 2), (100, 4, 1), (3, 1, 1)] {
            let cases = synthetic_cases(v, p, t);
            assert!(cases.iter().any(|c| c.seq == 1));
            assert!(cases.iter().any(|c| c.batch == 2));
            for c in &cases {
                let n = c.batch * c.seq;
                assert!(c.seq <= p as usize);
                assert_eq!(c.input_ids.len(), n);
                assert_eq!(c.attention_mask.len(), n);
                assert_eq!(c.token_type_ids.len(), n);
                assert!(c.input_ids.iter().all(|&i| (0..v as i64).contains(&i)));
                assert!(c.token_type_ids.iter().all(|&i| (0..t as i64).contains(&i)));
            }
            if t > 1 {
                assert!(cases.iter().any(|c| c.token_type_ids.contains(&1)));
            }
        }
        assert_eq!(synthetic_cases(100, 64, 2), synthetic_cases(100, 64, 2));
    }

    #[test]
    fn parses_case_layouts() {
        let one = r#"{"input_ids": {"shape": [1, 3], "dtype": "i64", "data": [2, 5, 3]}}"#;
        let c = parse_cases(one, "x").unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].name, "x");
        assert_eq!(c[0].attention_mask, vec![1, 1, 1]);
        assert_eq!(c[0].token_type_ids, vec![0, 0, 0]);
        let refjson = format!(
            r#"{{"cases": [{}, {}]}}"#,
            one,
            one.replace("[1, 3]", "[3, 1]")
        );
        assert_eq!(parse_cases(&refjson, "r").unwrap().len(), 2);
        for bad in [
            "nope",
            "{}",
            r#"{"cases": []}"#,
            r#"{"input_ids": {"shape": [2, 3], "data": [1]}}"#,
            r#"{"input_ids": {"shape": [1, 1], "data": [1.5]}}"#,
            r#"{"input_ids": {"shape": [1, 1], "data": [1]}, "attention_mask": {"shape": [1, 2], "data": [1, 1]}}"#,
            r#"{"input_ids": {"shape": [0, 1], "data": []}}"#,
            r#"{"input_ids": {"shape": [1], "data": [1]}}"#,
        ] {
            assert!(parse_cases(bad, "b").is_err(), "{bad}");
        }
    }

    #[test]
    fn compare_measures() {
        let (m, c) = compare(&[1.0, 0.0], &[1.0, 0.5]);
        assert_eq!(m, 0.5);
        assert!((c - 1.0 / 1.25f64.sqrt()).abs() < 1e-12);
        assert_eq!(compare(&[0.0], &[0.0]), (0.0, 1.0));
        assert!(compare(&[f32::NAN], &[0.0]).0.is_nan());
        assert!(compare(&[0.0, f32::NAN, 0.0], &[0.0, 0.0, 0.0]).0.is_nan());
        assert_eq!(Tolerance::RelativeToMax(0.25).bound(&[-2.0, 1.0]), 0.5);
    }
}
