//! The C API from C: the header compiles (as C and C++) and matches
//! `src/capi/mod.rs`, the misuse program gets error codes and never crashes,
//! and `firmware-examples/c-classify` prints the same logits as the Rust API.
//!
//! The static library is built once per run with
//! `cargo rustc --lib --release --no-default-features --features capi --crate-type staticlib`
//! into this test's own target folder. Needs a C compiler (`$CC` or `cc`).

mod common;

use albert_edge::tokenizer::Tokenizer;
use albert_edge::{Input, Model, Precision};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn tmp() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

/// `cargo rustc` of the library with the C API as `crate_type`, into `target`
/// (extra arguments go to rustc).
fn build_capi(target: &Path, crate_type: &str, rustc_args: &[&str]) -> Output {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    Command::new(cargo)
        .current_dir(ROOT)
        .env("CARGO_TARGET_DIR", target)
        .args(["rustc", "--lib", "--release", "--no-default-features"])
        .args(["--features", "capi", "--crate-type", crate_type, "--"])
        .args(rustc_args)
        .output()
        .expect("run cargo")
}

/// Builds `libalbert_edge.a` (once) and returns it with the native libraries it needs.
fn staticlib() -> &'static (PathBuf, Vec<String>) {
    static LIB: OnceLock<(PathBuf, Vec<String>)> = OnceLock::new();
    LIB.get_or_init(|| {
        let target = tmp().join("capi-target");
        let out = build_capi(&target, "staticlib", &["--print", "native-static-libs"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "building the static library failed:\n{stderr}"
        );
        // Printed only when rustc actually ran; otherwise use the usual Linux set.
        let libs = stderr
            .lines()
            .find_map(|l| l.split("native-static-libs:").nth(1))
            .map(|s| s.split_whitespace().map(String::from).collect())
            .unwrap_or_else(|| {
                [
                    "-lgcc_s",
                    "-lutil",
                    "-lrt",
                    "-lpthread",
                    "-lm",
                    "-ldl",
                    "-lc",
                ]
                .map(String::from)
                .to_vec()
            });
        let a = target.join("release/libalbert_edge.a");
        assert!(a.is_file(), "{} missing", a.display());
        (a, libs)
    })
}

/// Builds `libalbert_edge.so` (once, in its own target folder) and returns its folder.
fn cdylib_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = tmp().join("capi-dylib-target");
        let out = build_capi(&target, "cdylib", &[]);
        check(&out, "building the shared library");
        let dir = target.join("release");
        assert!(
            dir.join("libalbert_edge.so").is_file(),
            "libalbert_edge.so missing"
        );
        dir
    })
}

fn cc() -> String {
    std::env::var("CC").unwrap_or_else(|_| "cc".into())
}

fn check(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Compiles and links one C file against the static library.
fn build_c(src: &str, exe: &str) -> PathBuf {
    let (lib, libs) = staticlib();
    let exe = tmp().join(exe);
    let out = Command::new(cc())
        .args([
            "-std=c11",
            "-O1",
            "-g",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
        ])
        .arg(format!("-I{ROOT}/include"))
        .arg("-o")
        .arg(&exe)
        .arg(Path::new(ROOT).join(src))
        .arg(lib)
        .args(libs)
        .arg("-lm")
        .output()
        .expect("run the C compiler");
    check(&out, &format!("compiling {src}"));
    exe
}

/// Compiles one C file and links it against the shared library (with an rpath).
fn build_c_dynamic(src: &str, exe: &str) -> PathBuf {
    let dir = cdylib_dir();
    let exe = tmp().join(exe);
    let out = Command::new(cc())
        .args([
            "-std=c11",
            "-O1",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
        ])
        .arg(format!("-I{ROOT}/include"))
        .arg("-o")
        .arg(&exe)
        .arg(Path::new(ROOT).join(src))
        .arg(format!("-L{}", dir.display()))
        .arg(format!("-Wl,-rpath,{}", dir.display()))
        .arg("-lalbert_edge")
        .arg("-lm")
        .output()
        .expect("run the C compiler");
    check(&out, &format!("compiling {src} against the shared library"));
    exe
}

/// The SST-2 demo model: `models/sst2-tiny.albert`, or converted from
/// `shared/models/sst2-tiny` into the test folder when the repo lacks it.
fn sst2_model() -> &'static PathBuf {
    static M: OnceLock<PathBuf> = OnceLock::new();
    M.get_or_init(|| {
        let p = Path::new(ROOT).join("models/sst2-tiny.albert");
        if p.is_file() {
            return p;
        }
        let dir = common::shared().join("models/sst2-tiny");
        eprintln!(
            "models/sst2-tiny.albert absent: converting {}",
            dir.display()
        );
        let raw = albert_convert::load::safetensors::load_dir(&dir).expect("load sst2-tiny");
        let bytes = albert_convert::convert::convert(&raw, Precision::Int8)
            .expect("convert sst2-tiny")
            .0;
        let out = tmp().join("sst2-tiny.albert");
        std::fs::write(&out, bytes).unwrap();
        out
    })
}

// ---------------------------------------------------------------------------

/// `CamelCase` -> `CAMEL_CASE`.
fn snake_upper(s: &str) -> String {
    let mut o = String::new();
    for (i, c) in s.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            o.push('_');
        }
        o.push(c.to_ascii_uppercase());
    }
    o
}

#[test]
fn header_matches_the_rust_side() {
    let header = std::fs::read_to_string(Path::new(ROOT).join("include/albert_edge.h")).unwrap();
    let rust = std::fs::read_to_string(Path::new(ROOT).join("src/capi/mod.rs")).unwrap();

    // Result codes: same names and numbers.
    let c_codes: BTreeMap<String, u32> = header
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let (name, rest) = l.strip_prefix("ALBERT_")?.split_once(" = ")?;
            let num: String = rest.chars().take_while(char::is_ascii_digit).collect();
            Some((name.to_string(), num.parse().ok()?))
        })
        .collect();
    let enum_body = rust
        .split("pub enum AlbertResult {")
        .nth(1)
        .and_then(|s| s.split("\n}\n").next())
        .expect("AlbertResult enum in src/capi/mod.rs");
    let rust_codes: BTreeMap<String, u32> = enum_body
        .lines()
        .filter_map(|l| {
            let (name, num) = l.trim().trim_end_matches(',').split_once(" = ")?;
            Some((snake_upper(name), num.parse().ok()?))
        })
        .collect();
    assert_eq!(
        c_codes, rust_codes,
        "result codes differ between header and Rust"
    );

    // Functions: every exported Rust function is declared, and vice versa.
    let rust_fns: Vec<&str> = rust
        .split("extern \"C\" fn ")
        .skip(1)
        .map(|s| s.split('(').next().unwrap())
        .collect();
    let c_fns: Vec<&str> = header
        .split("albert_")
        .skip(1)
        .filter_map(|s| {
            let name = s.split('(').next()?;
            (name.len() < s.len() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
                .then_some(name)
        })
        .collect();
    let mut a: Vec<String> = rust_fns.iter().map(|s| s.to_string()).collect();
    let mut b: Vec<String> = c_fns.iter().map(|s| format!("albert_{s}")).collect();
    a.sort();
    a.dedup();
    b.sort();
    b.dedup();
    assert_eq!(a, b, "exported functions differ between header and Rust");
}

#[test]
fn header_compiles_as_c_and_cpp() {
    let src = tmp().join("header_only.c");
    std::fs::write(
        &src,
        "#include \"albert_edge.h\"\n#include \"albert_edge.h\"\n\
         int main(void) { albert_result r = ALBERT_OK; return (int)r + (albert_version() == 0); }\n",
    )
    .unwrap();
    let (lib, libs) = staticlib();
    for (compiler, lang) in [(cc(), "c"), ("c++".to_string(), "c++")] {
        let exe = tmp().join(format!("header_only_{}", lang.replace('+', "p")));
        let out = match Command::new(&compiler)
            .args(["-x", lang, "-Wall", "-Wextra", "-Werror", "-pedantic"])
            .arg(format!("-I{ROOT}/include"))
            .arg(&src)
            .args(["-x", "none"])
            .arg(lib)
            .args(libs)
            .arg("-o")
            .arg(&exe)
            .output()
        {
            Ok(o) => o,
            Err(e) if lang == "c++" => {
                eprintln!("SKIP: no C++ compiler ({e})");
                continue;
            }
            Err(e) => panic!("{compiler}: {e}"),
        };
        check(&out, &format!("compiling the header as {lang}"));
        check(
            &Command::new(&exe).output().unwrap(),
            "running the header test",
        );
    }
}

fn run_misuse(model: &Path, exe: &str) {
    let exe = build_c("tests/c/capi_misuse.c", exe);
    let out = Command::new(&exe).arg(model).output().unwrap();
    println!("{}", String::from_utf8_lossy(&out.stdout));
    check(&out, "capi_misuse");
    assert!(String::from_utf8_lossy(&out.stdout).contains(", 0 failed"));
}

/// A model without a tokenizer (the firmware example's, committed).
#[test]
fn c_misuse_gets_error_codes_not_crashes() {
    run_misuse(
        &Path::new(ROOT).join("firmware-examples/no-std-cortex-m/model/seqcls2.int8.albert"),
        "capi_misuse_a",
    );
}

/// The SST-2 model, with its tokenizer (tokenizer misuse too).
#[test]
fn c_misuse_with_tokenizer_gets_error_codes_not_crashes() {
    run_misuse(sst2_model(), "capi_misuse_b");
}

struct Classified {
    label: String,
    logits: Vec<f32>,
}

fn classify_c(exe: &Path, model: &Path, text: &str) -> Classified {
    let out = Command::new(exe).arg(model).arg(text).output().unwrap();
    check(&out, "c-classify");
    let stdout = String::from_utf8(out.stdout).unwrap();
    println!("{text:?}\n{stdout}");
    let field = |k: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or_else(|| panic!("no {k} in output"))
            .trim()
            .to_string()
    };
    Classified {
        label: field("label:"),
        logits: field("logits:")
            .split_whitespace()
            .map(|v| v.parse().unwrap())
            .collect(),
    }
}

fn classify_rust(model: &Model<'_>, text: &str) -> Vec<f32> {
    let tok = Tokenizer::from_section(model.tokenizer_section().expect("tokenizer")).unwrap();
    let e = tok.encode_pair(text, None, Some(128));
    let mut ws = model.new_workspace(e.ids.len(), 1);
    let input = Input {
        batch: 1,
        seq: e.ids.len(),
        input_ids: &e.ids,
        attention_mask: None,
        token_type_ids: Some(&e.type_ids),
    };
    model
        .run(&mut ws, &input)
        .unwrap()
        .get("logits")
        .unwrap()
        .data
        .to_vec()
}

#[test]
fn c_classify_matches_the_rust_api() {
    let exe = build_c("firmware-examples/c-classify/main.c", "c-classify");
    let path = sst2_model();
    let model = Model::open(path).unwrap();
    for (text, want) in [
        (
            "a gorgeous, witty, seductive movie that i loved.",
            "positive",
        ),
        (
            "one of the best films of the year: moving, funny and beautifully acted.",
            "positive",
        ),
        (
            "a dull, tedious mess with no redeeming qualities.",
            "negative",
        ),
        (
            "the worst movie i have ever seen, boring and stupid.",
            "negative",
        ),
    ] {
        let c = classify_c(&exe, path, text);
        assert_eq!(c.label, want, "{text}");
        let r = classify_rust(&model, text);
        // %.9g round-trips an f32 exactly: the C path must be the Rust path, bit for bit.
        assert_eq!(
            c.logits.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            r.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{text}: C {:?} vs Rust {:?}",
            c.logits,
            r
        );
    }
    // Usage and load errors exit non-zero with a message.
    let out = Command::new(&exe).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(&exe)
        .args(["/nonexistent.albert", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error 200"));
}

/// The header's functions, by name (every `albert_*(` declaration).
fn header_functions() -> Vec<String> {
    let header = std::fs::read_to_string(Path::new(ROOT).join("include/albert_edge.h")).unwrap();
    let mut names: Vec<String> = header
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("albert_"))
        .filter(|w| header.contains(&format!("{w}(")))
        .map(String::from)
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn shared_library_exports_the_header_and_classifies_like_the_static_one() {
    let dir = cdylib_dir();
    // Every function of the header is exported by the .so.
    let nm = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(dir.join("libalbert_edge.so"))
        .output()
        .expect("run nm");
    check(&nm, "nm -D");
    let exported = String::from_utf8_lossy(&nm.stdout).into_owned();
    let functions = header_functions();
    assert!(
        functions.len() >= 10,
        "parsed too few functions: {functions:?}"
    );
    for f in &functions {
        assert!(
            exported
                .lines()
                .any(|l| l.split_whitespace().last() == Some(f.as_str())),
            "{f} is declared in the header but not exported by libalbert_edge.so"
        );
    }
    // The C example linked dynamically gives the statically linked build's answers, bit for bit.
    let dynamic = build_c_dynamic("firmware-examples/c-classify/main.c", "c-classify-dynamic");
    let stat = build_c("firmware-examples/c-classify/main.c", "c-classify-static");
    let ldd = Command::new("ldd").arg(&dynamic).output().expect("run ldd");
    assert!(
        String::from_utf8_lossy(&ldd.stdout).contains("libalbert_edge.so"),
        "the dynamic build does not load libalbert_edge.so"
    );
    let path = sst2_model();
    for text in ["a gorgeous, witty movie.", "a dull, tedious mess."] {
        let (d, s) = (
            classify_c(&dynamic, path, text),
            classify_c(&stat, path, text),
        );
        assert_eq!(d.label, s.label, "{text}");
        assert_eq!(
            d.logits.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            s.logits.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{text}"
        );
    }
}
