//! `albert-convert`: checkpoint folder (or ONNX file) -> `.albert` model file.

use albert_convert::{convert, load, write};
use albert_edge::Precision;
use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
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
#[derive(Parser)]
#[command(name = "albert-convert", version)]
struct Cli {
    /// Checkpoint folder or .onnx file.
    input: PathBuf,
    /// Output model file.
    #[arg(short, long)]
    output: PathBuf,
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

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(&cli) {
        eprintln!("albert-convert: error: {e:#}");
        std::process::exit(1);
    }
}

fn step(pb: &ProgressBar, msg: &'static str) {
    pb.set_message(msg);
    pb.inc(1);
}

fn run(cli: &Cli) -> Result<()> {
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
    let mut raw = if cli.input.is_dir() {
        load::safetensors::load_dir(&cli.input)?
    } else if cli.input.extension().is_some_and(|e| e == "onnx") {
        bail!("ONNX input is not supported by this build yet")
    } else {
        bail!(
            "{}: expected a checkpoint folder (config.json + model.safetensors) or an .onnx file",
            cli.input.display()
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
    write::write_atomic(&cli.output, &bytes)?;
    step(&pb, "done");
    pb.finish_and_clear();
    if !cli.quiet {
        print_summary(cli, precision, &report);
    }
    Ok(())
}

fn print_summary(cli: &Cli, precision: Precision, r: &convert::Report) {
    println!("wrote {} ({})", cli.output.display(), precision.name());
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
