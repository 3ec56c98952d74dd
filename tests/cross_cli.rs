//! Cross-compilation checks (toolchains from `.ci/cross-setup.sh`):
//!
//! * `firmware-examples/raspberry-pi/cross-run.sh`: the CLI cross-built for
//!   aarch64 and armv7 Linux, run under QEMU user mode, must print what the
//!   host build prints;
//! * `firmware-examples/no-std-cortex-m`: the bare-metal example builds for
//!   `thumbv7em-none-eabihf` (so the runtime core is `no_std` without an
//!   allocator), and, when `qemu-system-arm` is present, runs on an emulated
//!   Cortex-M4F and prints the logits of a host scalar run, bit for bit.
//!
//! Each test prints `SKIP: ...` and passes when its tools are absent.

mod common;

use albert_edge::{Input, Kernels, Model, Precision};
use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn tmp() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn have_tool(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn have_rust_target(triple: &str) -> bool {
    let Ok(out) = Command::new("rustc").args(["--print", "sysroot"]).output() else {
        return false;
    };
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Path::new(&sysroot)
        .join("lib/rustlib")
        .join(triple)
        .join("lib")
        .is_dir()
}

/// The names of the missing tools and targets (empty when all are there).
fn missing(tools: &[&str], targets: &[&str]) -> Vec<String> {
    let mut m: Vec<String> = tools
        .iter()
        .filter(|t| !have_tool(t))
        .map(|t| t.to_string())
        .collect();
    m.extend(
        targets
            .iter()
            .filter(|t| !have_rust_target(t))
            .map(|t| format!("rust target {t}")),
    );
    m
}

/// The SST-2 demo model, or a conversion of it in the test folder.
fn sst2_model() -> PathBuf {
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
    let out = tmp().join("sst2-tiny-cross.albert");
    std::fs::write(&out, bytes).unwrap();
    out
}

#[test]
fn cli_on_arm_linux_under_qemu_matches_the_host() {
    let m = missing(
        &[
            "aarch64-linux-gnu-gcc",
            "arm-linux-gnueabihf-gcc",
            "qemu-aarch64",
            "qemu-arm",
        ],
        &["aarch64-unknown-linux-gnu", "armv7-unknown-linux-gnueabihf"],
    );
    if !m.is_empty() {
        println!(
            "SKIP: cross CLI test needs {} (run .ci/cross-setup.sh)",
            m.join(", ")
        );
        return;
    }
    let model = sst2_model();
    let out = Command::new("bash")
        .arg(Path::new(ROOT).join("firmware-examples/raspberry-pi/cross-run.sh"))
        .arg(&model)
        .env("CARGO", cargo())
        .env("CARGO_TARGET_DIR", tmp().join("cross-target"))
        .env("HOST_BIN", env!("CARGO_BIN_EXE_albert-edge"))
        .output()
        .expect("run cross-run.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(0),
        "cross-run.sh reported differences or failed"
    );
    assert!(stdout.contains("cross-run: all identical"));
}

/// Must equal `INPUT_IDS` in `firmware-examples/no-std-cortex-m/src/main.rs`.
const FIRMWARE_IDS: [u32; 8] = [2, 48, 13, 201, 77, 640, 9, 3];

#[test]
fn no_std_firmware_builds_and_runs_on_cortex_m4() {
    let m = missing(&[], &["thumbv7em-none-eabihf"]);
    if !m.is_empty() {
        println!(
            "SKIP: firmware build needs {} (run .ci/cross-setup.sh)",
            m.join(", ")
        );
        return;
    }
    let dir = Path::new(ROOT).join("firmware-examples/no-std-cortex-m");
    let src = std::fs::read_to_string(dir.join("src/main.rs")).unwrap();
    assert!(
        src.contains("const INPUT_IDS: [u32; 8] = [2, 48, 13, 201, 77, 640, 9, 3];"),
        "FIRMWARE_IDS is out of sync with the firmware source"
    );
    let target = tmp().join("firmware-target");
    let out = Command::new(cargo())
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", &target)
        .args(["build", "--release", "--target", "thumbv7em-none-eabihf"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "firmware build failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let elf = target.join("thumbv7em-none-eabihf/release/albert-edge-cortex-m-example");
    println!(
        "built {} ({} bytes)",
        elf.display(),
        std::fs::metadata(&elf).unwrap().len()
    );

    if !have_tool("qemu-system-arm") {
        println!("SKIP: running the firmware needs qemu-system-arm (run .ci/cross-setup.sh)");
        return;
    }
    let out = Command::new("timeout")
        .args([
            "120",
            "qemu-system-arm",
            "-cpu",
            "cortex-m4",
            "-machine",
            "mps2-an386",
        ])
        .args([
            "-nographic",
            "-semihosting-config",
            "enable=on,target=native",
            "-kernel",
        ])
        .arg(&elf)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "firmware exited with {}", out.status);

    // The same model and ids on the host, scalar kernels (the firmware's tier).
    let bytes = std::fs::read(dir.join("model/seqcls2.int8.albert")).unwrap();
    let mut model = Model::from_vec(&bytes).unwrap();
    model.set_kernels(Kernels::scalar());
    let mut ws = model.new_workspace(FIRMWARE_IDS.len(), 1);
    let outs = model.run(&mut ws, &Input::single(&FIRMWARE_IDS)).unwrap();
    let logits = outs.get("logits").unwrap().data;
    for (i, v) in logits.iter().enumerate() {
        let line = format!("logit[{i}] = {:08x}", v.to_bits());
        assert!(
            stdout.contains(&line),
            "firmware lacks {line:?} (host scalar run: {logits:?})"
        );
    }
}
