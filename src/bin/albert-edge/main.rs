//! `albert-edge`: inspect, benchmark, evaluate and run `.albert` model files.
//!
//! Every failure prints one line on stderr and exits with 1 (2 for usage errors).

mod bench;
mod eval;
mod json_io;
mod text;

use albert_edge::{
    HeadKind, Input, Kernels, Model, Outputs, RunError, ThreadPool, Tier, Workspace,
};
use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::OnceLock;

#[derive(Parser)]
#[command(
    name = "albert-edge",
    version,
    about = "Run ALBERT models converted by albert-convert"
)]
struct Cli {
    /// Force a kernel tier (scalar, avx2, avxvnni, avx512vnni, neon, neon-dot, neon-i8mm); default: the best this CPU supports.
    #[arg(long, global = true)]
    tier: Option<String>,
    /// Threads for one inference (run, classify, choose, embed, fill-mask, qa, tag, eval, bench): 1 = the
    /// calling thread only, 0 = one per CPU. Results are bit-identical for any value.
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print the model's config, head, labels, precision, sizes and workspace needs.
    Info {
        /// Model file.
        model: PathBuf,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run the model on token ids from a JSON case file and print every output as JSON.
    Run {
        /// Model file.
        model: PathBuf,
        /// JSON with input_ids, attention_mask, token_type_ids as {"shape": [B, S], "data": [...]}.
        #[arg(long)]
        input: PathBuf,
    },
    /// Tokenize text with the model's tokenizer and print ids and pieces.
    Tokenize(text::TokenizeArgs),
    /// Classify a text (or a pair) with a sequence-classification model.
    Classify(text::ClassifyArgs),
    /// Pick the best of several answers with a multiple-choice model (`--choice` two or more times).
    Choose(text::ChooseArgs),
    /// Print the embedding of a text (base models).
    Embed(text::EmbedArgs),
    /// Predict the pieces at each [MASK] (masked-LM models).
    FillMask(text::FillMaskArgs),
    /// Extract the answer span from a context (question-answering models).
    Qa(text::QaArgs),
    /// Label every piece of a text (token-classification models).
    Tag(text::TagArgs),
    /// Time `run` on a batch-1 input of N tokens.
    Bench(bench::BenchArgs),
    /// How a classifier does on a labelled TSV file: accuracy, multi-label F1, regression correlations (columns `sentence`, `label`, optional second sentence) or multiple-choice accuracy (a prompt, `ending0`, `ending1`, ..., `label`).
    Eval(eval::EvalArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("albert-edge: error: {msg}");
            ExitCode::from(1)
        }
    }
}

/// Opens a model and applies `--tier`.
pub fn load(path: &PathBuf, tier: &Option<String>) -> Result<Model<'static>, String> {
    let mut model = Model::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(t) = tier {
        let tier = Tier::from_name(t).ok_or_else(|| format!("unknown tier {t:?}"))?;
        let k = Kernels::for_tier(tier)
            .ok_or_else(|| format!("tier {t} is not supported on this CPU"))?;
        model.set_kernels(k);
    }
    Ok(model)
}

/// The pool behind `--threads` (absent for one thread), created once in `run`.
static POOL: OnceLock<ThreadPool> = OnceLock::new();

/// Creates the pool for `--threads n` (0 = one per CPU).
fn start_pool(n: usize) -> Result<(), String> {
    let n = if n == 0 {
        albert_edge::pool::available_parallelism()
    } else {
        n
    };
    if n > 1 {
        let pool = ThreadPool::new(n).map_err(|e| format!("cannot start {n} threads: {e}"))?;
        let _ = POOL.set(pool);
    }
    Ok(())
}

/// Threads each inference uses (`--threads`, resolved).
pub fn threads() -> usize {
    POOL.get().map_or(1, ThreadPool::threads)
}

/// A workspace for `batch` x `seq` inputs run by [`run_model`].
pub fn new_workspace(m: &Model<'_>, seq: usize, batch: usize) -> Workspace<'static> {
    m.new_workspace_threads(seq, batch, threads())
}

/// `Model::run`, or `Model::run_with` on the `--threads` pool.
pub fn run_model<'w>(
    m: &Model<'_>,
    ws: &'w mut Workspace<'_>,
    input: &Input<'_>,
) -> Result<Outputs<'w>, RunError> {
    match POOL.get() {
        Some(pool) => m.run_with(pool, ws, input),
        None => m.run(ws, input),
    }
}

fn run(cli: Cli) -> Result<(), String> {
    if !matches!(cli.cmd, Cmd::Info { .. } | Cmd::Tokenize(_)) {
        start_pool(cli.threads)?;
    }
    let tier = &cli.tier;
    match &cli.cmd {
        Cmd::Info { model, json } => info(&load(model, tier)?, *json),
        Cmd::Run { model, input } => {
            let m = load(model, tier)?;
            let text = std::fs::read_to_string(input)
                .map_err(|e| format!("cannot read {}: {e}", input.display()))?;
            let case = json_io::parse_case(&text)?;
            let mut ws = new_workspace(&m, case.seq, case.batch);
            let inp = Input {
                batch: case.batch,
                seq: case.seq,
                input_ids: &case.input_ids,
                attention_mask: case.attention_mask.as_deref(),
                token_type_ids: case.token_type_ids.as_deref(),
            };
            let out = run_model(&m, &mut ws, &inp).map_err(|e| e.to_string())?;
            let mut outputs = serde_json::Map::new();
            for o in out.iter() {
                outputs.insert(
                    o.name.to_string(),
                    json!({"shape": o.shape(), "dtype": "f32", "data": o.data}),
                );
            }
            println!("{}", json!({ "outputs": outputs }));
            Ok(())
        }
        Cmd::Tokenize(a) => text::tokenize(&load(&a.model, tier)?, a),
        Cmd::Classify(a) => text::classify(&load(&a.model, tier)?, a),
        Cmd::Choose(a) => text::choose(&load(&a.model, tier)?, a),
        Cmd::Embed(a) => text::embed(&load(&a.model, tier)?, a),
        Cmd::FillMask(a) => text::fill_mask(&load(&a.model, tier)?, a),
        Cmd::Qa(a) => text::qa(&load(&a.model, tier)?, a),
        Cmd::Tag(a) => text::tag(&load(&a.model, tier)?, a),
        Cmd::Bench(a) => bench::bench(&load(&a.model, tier)?, a),
        Cmd::Eval(a) => eval::eval(a, tier),
    }
}

fn info(m: &Model<'_>, as_json: bool) -> Result<(), String> {
    let c = m.config();
    let labels: Vec<&str> = m.labels().collect();
    let ws128 = m.workspace_len(128.min(c.max_positions as usize), 1);
    let ws_max = m.workspace_len(c.max_positions as usize, 1);
    // Matrix kinds whose activations are quantized in two parts (`Q8R`).
    let mut two_parts: Vec<&str> = Vec::new();
    for t in m.tensors() {
        let name = t.role.kind.name();
        if t.dtype == albert_edge::format::DType::Q8R && !two_parts.contains(&name) {
            two_parts.push(name);
        }
    }
    let v: Value = json!({
        "head": c.head.name(),
        "precision": c.precision.name(),
        "two_part_activations": two_parts,
        "pair_bounded_weights": c.precision == albert_edge::Precision::Int8 && m.pairs_bounded(),
        "labels": labels,
        "problem_type": (c.head == HeadKind::SequenceClassification).then(|| c.problem_type.name()),
        "score_function": (c.head == HeadKind::SequenceClassification).then(|| c.score_function().name()),
        "parameters": m.parameter_count(),
        "file_bytes": m.bytes().len(),
        "tier": m.kernels().tier.name(),
        "tokenizer": m.tokenizer().is_some(),
        "workspace_bytes_seq128": ws128,
        "workspace_bytes_max_seq": ws_max,
        "config": {
            "vocab_size": c.vocab_size, "embedding_size": c.embedding_size, "hidden_size": c.hidden_size,
            "num_attention_heads": c.num_heads, "head_dim": c.head_dim, "intermediate_size": c.intermediate_size,
            "num_hidden_layers": c.num_layers, "num_hidden_groups": c.num_groups, "inner_group_num": c.inner_group_num,
            "hidden_act": c.activation.name(), "layer_norm_eps": c.layer_norm_eps, "max_position_embeddings": c.max_positions,
            "type_vocab_size": c.type_vocab_size, "num_labels": c.num_labels, "pooler": c.has_pooler,
        },
    });
    if as_json {
        println!("{v}");
        return Ok(());
    }
    println!("head              {}", c.head.name());
    if !labels.is_empty() {
        println!("labels            {}", labels.join(", "));
    }
    if c.head == HeadKind::SequenceClassification {
        println!(
            "problem type      {} (scores: {})",
            c.problem_type.name(),
            c.score_function().name()
        );
    }
    println!("precision         {}", c.precision.name());
    if !two_parts.is_empty() {
        println!("two-part activ.   {}", two_parts.join(", "));
    }
    if c.precision == albert_edge::Precision::Int8 {
        let pairs = if m.pairs_bounded() { "bounded" } else { "free" };
        println!("int8 weight pairs {pairs}");
    }
    println!("parameters        {}", m.parameter_count());
    println!("file size         {} bytes", m.bytes().len());
    println!("kernel tier       {}", m.kernels().tier.name());
    println!(
        "tokenizer         {}",
        if m.tokenizer().is_some() {
            "embedded"
        } else {
            "none (run on token ids)"
        }
    );
    println!(
        "shape             vocab {} | E {} | H {} | heads {} x {} | FFN {} | layers {} ({} group(s) x {} inner) | {}",
        c.vocab_size, c.embedding_size, c.hidden_size, c.num_heads, c.head_dim, c.intermediate_size, c.num_layers, c.num_groups, c.inner_group_num, c.activation.name()
    );
    println!(
        "max positions     {} (token types {})",
        c.max_positions, c.type_vocab_size
    );
    println!(
        "workspace         {ws128} bytes at 128 tokens, {ws_max} bytes at {} tokens",
        c.max_positions
    );
    Ok(())
}
