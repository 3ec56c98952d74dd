//! `albert-convert`: checkpoint folder (or ONNX file) -> `.albert` model file, and
//! `albert-convert verify` to compare an ONNX graph with a converted file.

use albert_convert::verify::{self, Tolerance};
use albert_convert::{convert, load, write};
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
    /// spiece.model to embed (default: the one next to the checkpoint).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// No progress bar and no summary.
    #[arg(short, long)]
    quiet: bool,
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
    if let Some(t) = &cli.tokenizer {
        raw.spiece =
            Some(std::fs::read(t).with_context(|| format!("cannot read {}", t.display()))?);
    }
    let precision = match cli.precision {
        PrecisionArg::Int8 => Precision::Int8,
        PrecisionArg::F32 => Precision::F32,
    };
    step(&pb, "quantizing and packing");
    let (bytes, report) = convert::convert(&raw, precision)?;
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
