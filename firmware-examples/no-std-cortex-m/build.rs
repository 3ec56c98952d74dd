//! Puts `memory.x` on the linker path and computes the exact workspace size
//! for the embedded model at `MAX_SEQ` tokens, with the host build of the same
//! runtime, so the firmware's static workspace is sized by a constant.

use std::io::Write;
use std::path::PathBuf;

/// Longest sequence the firmware runs (keep in sync with `src/main.rs`, which
/// checks it at run time too).
const MAX_SEQ: usize = 16;
const MODEL: &str = "model/seqcls2.int8.albert";

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    std::fs::copy("memory.x", out.join("memory.x")).unwrap();
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-changed={MODEL}");
    println!("cargo:rerun-if-changed=build.rs");

    let bytes = std::fs::read(MODEL).expect("read the model file");
    let model = albert_edge::Model::from_vec(&bytes).expect("the model file validates");
    let ws = model.workspace_len(MAX_SEQ, 1);
    let labels = model.config().num_labels;
    let mut f = std::fs::File::create(out.join("sizes.rs")).unwrap();
    writeln!(f, "/// Longest sequence the workspace is sized for.").unwrap();
    writeln!(f, "pub const MAX_SEQ: usize = {MAX_SEQ};").unwrap();
    writeln!(f, "/// `Model::workspace_len(MAX_SEQ, 1)` of the embedded model.").unwrap();
    writeln!(f, "pub const WORKSPACE_LEN: usize = {ws};").unwrap();
    writeln!(f, "/// Labels of the embedded model's head.").unwrap();
    writeln!(f, "pub const NUM_LABELS: usize = {labels};").unwrap();
}
