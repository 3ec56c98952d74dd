//! `albert-convert`: checkpoint folder (or ONNX file) -> `.albert` model file, and
//! `albert-convert verify` to compare an ONNX graph with a converted file.

use albert_convert::convert::{Heads, Options};
use albert_convert::verify::{self, Tolerance};
use albert_convert::{convert, corpus, load, write};
use albert_edge::Precision;
use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Copy, ValueEnum)]
enum PrecisionArg {
    Int8,
    F32,
}

/// Convert an ALBERT checkpoint (Hugging Face folder with config.json +
/// model.safetensors [+ spiece.model], or an ONNX export) into one .albert file.
///
/// `albert-convert verify model.onnx model.albert` checks a converted file against
/// the ONNX graph it came from.
#[derive(Parser)]
#[command(
    name = "albert-convert",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    convert: ConvertArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run an ONNX graph (tract, fp32) and a .albert file on the same token ids and
    /// compare every output they have in common (logits, last_hidden_state,
    /// pooler_output, start_logits, end_logits): max abs error and cosine similarity.
    ///
    /// Exit code 0 when every max abs error is within the tolerance, 1 otherwise or
    /// on any error, 2 for usage errors.
    Verify(VerifyArgs),
}

#[derive(Args)]
struct ConvertArgs {
    /// Checkpoint folder or .onnx file.
    #[arg(required = true)]
    input: Option<PathBuf>,
    /// Output model file.
    #[arg(short, long, required = true)]
    output: Option<PathBuf>,
    /// Weight precision.
    #[arg(long, value_enum, default_value = "int8")]
    precision: PrecisionArg,
    /// spiece.model (or a transformers 5 tokenizer.json) to embed (default: the
    /// spiece.model next to the checkpoint, else the tokenizer.json there).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// No progress bar and no summary.
    #[arg(short, long)]
    quiet: bool,
    /// Remove attention heads from every stored layer (the shared block): a count N
    /// removes the N least important heads; a comma-separated list removes those head
    /// indices (`3,7`; a single index is written `5,`).
    #[arg(long, value_name = "N|LIST", value_parser = parse_heads)]
    prune_heads: Option<Heads>,
    /// Remove this fraction of the FFN neurons of every stored layer, least important
    /// first; in [0, 1).
    #[arg(long, value_name = "FRACTION", value_parser = parse_fraction)]
    prune_ffn: Option<f64>,
    /// A pruning preset: `fast` removes a sixth of the heads (2 of 12) and at least 40%
    /// of the FFN neurons, more (up to 75%) until a quarter of the parameters are gone
    /// (use it with --calibrate, which also refits the pruned layers; measured in
    /// docs/accuracy.md).
    #[arg(long, value_enum, value_name = "PRESET", conflicts_with_all = ["prune_heads", "prune_ffn"])]
    prune: Option<PresetArg>,
    /// Calibration texts (a TSV with a `sentence` column, or one text per line): pruning
    /// importance is scored from activations on them instead of from the weights alone,
    /// the layers that lose inputs to pruning are refitted by least squares on them, and
    /// int8 activation ranges come from them instead of synthetic token sequences.
    #[arg(long, value_name = "FILE")]
    calibrate: Option<PathBuf>,
    /// Keep only the vocabulary pieces CORPUS (a TSV with a `sentence` column, or one
    /// text per line) uses, plus special, user-defined and single-character pieces: the
    /// corpus tokenizes and runs exactly as before; other text still tokenizes (into
    /// shorter pieces or `<unk>`) and runs.
    #[arg(long, value_name = "CORPUS")]
    keep_vocab: Option<PathBuf>,
    /// int8: how activations are quantized before each int8 matrix. `1`: one int8
    /// part per token row. `2`: two parts (the row, then what rounding left out),
    /// about 16-bit activations for twice the multiplies. `auto`: `1`, unless the
    /// file's outputs then differ from the f32 model's by more than a cosine of
    /// 0.9999 on synthetic check inputs; `2` is then given to the matrix kinds
    /// that close the gap best, one kind at a time.
    #[arg(long, value_enum, default_value = "auto")]
    activation_parts: PartsArg,
    /// int8: `free` lets each weight take any value in -127..=127 (the most
    /// precise). `bounded` keeps the two weights of inputs 2j and 2j+1 of a row
    /// within 128 in sum, with each row's scale chosen for it: the AVX2 kernels
    /// (x86 without AVX-512 VNNI) then skip a step per multiply, about 13%
    /// faster, for coarser weights (see docs/accuracy.md); other CPUs run the
    /// file as fast as a `free` one.
    #[arg(long, value_enum, default_value = "free")]
    weight_pairs: PairsArg,
}

#[derive(Clone, Copy, ValueEnum)]
enum PairsArg {
    /// Any int8 values.
    Free,
    /// Pair-bounded int8 values.
    Bounded,
}

#[derive(Clone, Copy, ValueEnum)]
enum PartsArg {
    /// Decide per model (see above).
    Auto,
    /// One int8 part.
    #[value(name = "1")]
    One,
    /// Two int8 parts.
    #[value(name = "2")]
    Two,
}

#[derive(Clone, Copy, ValueEnum)]
enum PresetArg {
    /// A sixth of the heads and 40-75% of the FFN neurons removed: a quarter of the
    /// parameters where the FFN allows.
    Fast,
}

fn parse_heads(s: &str) -> std::result::Result<Heads, String> {
    let s = s.trim();
    if s.contains(',') {
        let mut list = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            list.push(
                part.parse::<usize>()
                    .map_err(|_| format!("{part:?} is not a head index"))?,
            );
        }
        if list.is_empty() {
            return Err("an empty list of heads".into());
        }
        Ok(Heads::List(list))
    } else {
        match s.parse::<usize>() {
            Ok(0) => Ok(Heads::Keep),
            Ok(n) => Ok(Heads::Count(n)),
            Err(_) => Err(format!(
                "{s:?} is neither a number of heads nor a comma-separated list of head indices"
            )),
        }
    }
}

fn parse_fraction(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if (0.0..1.0).contains(&f) => Ok(f),
        _ => Err(format!("{s:?} is not a fraction in [0, 1)")),
    }
}

#[derive(Args)]
struct VerifyArgs {
    /// The ONNX graph (the reference).
    onnx: PathBuf,
    /// The .albert file to check.
    albert: PathBuf,
    /// Inputs: one case in the reference.json layout ({"input_ids": {"shape": [B,S],
    /// "data": [..]}, "attention_mask": .., "token_type_ids": ..}), a whole
    /// reference.json (all its "cases"), or a JSON array of cases. Default: synthetic
    /// cases built from the model's config (1 token, an unpadded sequence, a pair with
    /// both token types, a padded batch of 2).
    #[arg(long)]
    inputs: Option<PathBuf>,
    /// Largest allowed max abs error, for every output. Default: 1e-4 for f32 files;
    /// for int8 files 0.15 x the largest |value| of that ONNX output over all cases
    /// (e.g. 0.085 for logits peaking at 0.56): int8 weights and activations move
    /// outputs by 0.4-10% of their range on the test models, while a file made from
    /// other weights is off by about 100%.
    #[arg(long, value_name = "T", value_parser = parse_tolerance)]
    tolerance: Option<f32>,
}

fn parse_tolerance(s: &str) -> std::result::Result<f32, String> {
    match s.parse::<f32>() {
        Ok(t) if t.is_finite() && t >= 0.0 => Ok(t),
        _ => Err(format!("{s:?} is not a finite non-negative number")),
    }
}

fn main() {
    let cli = Cli::parse();
    let result = match &cli.command {
        Some(Command::Verify(v)) => run_verify(v),
        None => run(&cli.convert).map(|()| true),
    };
    match result {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            // One line: the causes joined by ": ".
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("albert-convert: error: {msg}");
            std::process::exit(1);
        }
    }
}

fn step(pb: &ProgressBar, msg: &'static str) {
    pb.set_message(msg);
    pb.inc(1);
}

fn run(cli: &ConvertArgs) -> Result<()> {
    let (Some(input), Some(output)) = (&cli.input, &cli.output) else {
        bail!("an input and -o <output> are required");
    };
    let pb = if cli.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(4)
    };
    pb.set_style(
        ProgressStyle::with_template("{spinner} [{bar:20}] {pos}/{len} {msg} ({elapsed})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    // Only draw when a step takes noticeable time.
    pb.enable_steady_tick(Duration::from_millis(1000));
    pb.set_message("reading checkpoint");
    let mut raw = if input.is_dir() {
        load::safetensors::load_dir(input)?
    } else if input.extension().is_some_and(|e| e == "onnx") {
        load::onnx::load_onnx(input, cli.tokenizer.as_deref())?
    } else {
        bail!(
            "{}: expected a checkpoint folder (config.json + model.safetensors) or an .onnx file",
            input.display()
        )
    };
    // transformers 5 saves tokenizer.json instead of spiece.model: read the sentencepiece
    // model back from it.
    let from_json = |p: &std::path::Path| -> Result<Vec<u8>> {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
        let m = albert_convert::spm::from_tokenizer_json(&text).with_context(|| {
            format!(
                "{} (pass --tokenizer spiece.model to embed another tokenizer)",
                p.display()
            )
        })?;
        Ok(m.to_proto())
    };
    if let Some(t) = &cli.tokenizer {
        raw.spiece = Some(if t.extension().is_some_and(|e| e == "json") {
            from_json(t)?
        } else {
            std::fs::read(t).with_context(|| format!("cannot read {}", t.display()))?
        });
    } else if raw.spiece.is_none() {
        let dir = if input.is_dir() {
            Some(input.as_path())
        } else {
            input.parent()
        };
        if let Some(p) = dir.map(|d| d.join("tokenizer.json")).filter(|p| p.exists()) {
            raw.spiece = Some(from_json(&p)?);
        }
    }
    let precision = match cli.precision {
        PrecisionArg::Int8 => Precision::Int8,
        PrecisionArg::F32 => Precision::F32,
    };
    let mut options = Options {
        heads: cli.prune_heads.clone().unwrap_or_default(),
        ffn_fraction: cli.prune_ffn.unwrap_or(0.0),
        activation_parts: match cli.activation_parts {
            PartsArg::Auto => convert::ActivationParts::Auto,
            PartsArg::One => convert::ActivationParts::One,
            PartsArg::Two => convert::ActivationParts::Two,
        },
        weight_pairs: match cli.weight_pairs {
            PairsArg::Free => convert::WeightPairs::Free,
            PairsArg::Bounded => convert::WeightPairs::Bounded,
        },
        ..Options::default()
    };
    if let Some(PresetArg::Fast) = cli.prune {
        options.preset = Some(convert::FAST);
    }
    if let Some(p) = &cli.calibrate {
        options.calibrate = Some(corpus::read(p)?);
    }
    if let Some(p) = &cli.keep_vocab {
        options.keep_vocab = Some(corpus::read(p)?);
    }
    step(&pb, "quantizing and packing");
    let (bytes, report) =
        convert::convert_with(&raw, precision, &options, &mut |stage, done, total| {
            pb.set_message(stage.to_string());
            pb.set_length(total as u64);
            pb.set_position(done as u64);
        })?;
    pb.set_length(4);
    pb.set_position(2);
    step(&pb, "writing");
    write::write_atomic(output, &bytes)?;
    step(&pb, "done");
    pb.finish_and_clear();
    if !cli.quiet {
        print_summary(output, precision, &report);
    }
    Ok(())
}

fn print_summary(output: &std::path::Path, precision: Precision, r: &convert::Report) {
    println!("wrote {} ({})", output.display(), precision.name());
    if let Some(b) = &r.before {
        let pct = |a: usize, b: usize| 100.0 * (a as f64 / b.max(1) as f64 - 1.0);
        println!("  pruned             before -> after");
        println!(
            "    parameters       {} -> {} ({:+.1}%)",
            b.parameters,
            r.parameters,
            pct(r.parameters, b.parameters)
        );
        println!(
            "    file size        {} -> {} bytes ({:+.1}%)",
            b.file_bytes,
            r.file_bytes,
            pct(r.file_bytes, b.file_bytes)
        );
        println!(
            "    workspace        {} -> {} bytes ({:+.1}%, one sequence of {} tokens)",
            b.workspace_bytes_max_seq,
            r.workspace_bytes_max_seq,
            pct(r.workspace_bytes_max_seq, b.workspace_bytes_max_seq),
            r.max_seq
        );
        println!("    heads per layer  {} -> {}", b.heads, r.heads);
        println!(
            "    FFN size         {} -> {}",
            b.intermediate, r.intermediate
        );
        if let Some(v) = &r.vocab {
            println!(
                "    vocabulary       {} -> {} pieces ({} used by the {} corpus texts)",
                v.before, v.kept, v.used, v.texts
            );
        }
    }
    println!("  parameters         {}", r.parameters);
    println!(
        "  file size          {} bytes ({:.1}% of the {} input bytes)",
        r.file_bytes,
        100.0 * r.file_bytes as f64 / r.input_bytes.max(1) as f64,
        r.input_bytes
    );
    println!(
        "  workspace          {} bytes for one sequence of {} tokens",
        r.workspace_bytes_max_seq, r.max_seq
    );
    println!(
        "  tokenizer          {}",
        if r.has_tokenizer {
            "embedded"
        } else {
            "none (run on token ids)"
        }
    );
    if let Some(p) = &r.parts {
        let kinds: Vec<&str> = p.two_parts.iter().map(|k| k.name()).collect();
        let which = if kinds.is_empty() {
            "none".to_string()
        } else {
            kinds.join(", ")
        };
        println!("  two-part activations {which}");
        if let (Some(one), Some(chosen)) = (p.cosine_one, p.cosine_chosen) {
            println!(
                "    worst output cosine with f32 on the check inputs: {one:.6} with one part, {chosen:.6} as written (target {})",
                convert::PARTS_TARGET
            );
        }
    }
    if !r.quant_errors.is_empty() {
        println!("  int8 weight error (relative RMS, max abs) per matrix:");
        for e in &r.quant_errors {
            println!("    {:<48} {:.5}  {:.5}", e.name, e.relative_rms, e.max_abs);
        }
    }
}

/// `verify`: prints one line per case and output, then the verdict; `Ok(false)` when an
/// output is outside the tolerance.
fn run_verify(v: &VerifyArgs) -> Result<bool> {
    // tract can panic on malformed graphs; those panics are caught and reported as
    // errors, so keep the default hook from printing a backtrace notice too.
    std::panic::set_hook(Box::new(|_| {}));
    let cases = match &v.inputs {
        Some(p) => Some(verify::read_cases(p)?),
        None => None,
    };
    let report = verify::verify_files(
        &v.onnx,
        &v.albert,
        cases.as_deref(),
        v.tolerance.map(Tolerance::Absolute),
    )?;
    println!(
        "verify {} against {} ({}; {})",
        v.albert.display(),
        v.onnx.display(),
        report.precision.name(),
        report.tolerance.describe()
    );
    println!(
        "  {:<28} {:<18} {:<14} {:>11} {:>11} {:>10} {:>10}",
        "case", "output", "shape", "max abs", "bound", "max|onnx|", "cosine"
    );
    for c in &report.comparisons {
        println!(
            "  {:<28} {:<18} {:<14} {:>11.3e} {:>11.3e} {:>10.4} {:>10.7} {}",
            c.case,
            c.output,
            format!("{:?}", c.shape),
            c.max_abs,
            c.bound,
            c.reference_max_abs,
            c.cosine,
            if c.passed() { "ok" } else { "FAIL" }
        );
    }
    let failed = report.comparisons.iter().filter(|c| !c.passed()).count();
    if failed == 0 {
        println!(
            "PASS: {} comparisons within the tolerance",
            report.comparisons.len()
        );
        Ok(true)
    } else {
        println!(
            "FAIL: {failed} of {} comparisons exceed the tolerance",
            report.comparisons.len()
        );
        Ok(false)
    }
}
