//! Fault tests: what happens when the environment misbehaves.
//!
//! * The model file is replaced while mapped (by rename: the old mapping stays
//!   valid) or truncated in place (the documented hazard of `Model::open`: the
//!   process gets `SIGBUS`; `Model::read` is immune).
//! * The output of a conversion cannot be written: file-size limit reached
//!   (`EFBIG`, the same path as a full disk), a read-only directory, a missing
//!   one. No partial or temporary file may be left behind, and an existing
//!   model file at the destination must stay intact.
//! * The conversion is killed (`SIGKILL`) at arbitrary points: the destination
//!   is always either absent / the old file, or the complete new file.
//! * One workspace is reused across different models (a too-small one is an
//!   error; stale contents never change a result), and many threads run one
//!   `Model` at once with their own workspaces (results bit-identical to
//!   sequential runs).
//!
//! The child-process cases re-run this test binary with `ALBERT_FAULTS_CHILD`
//! set (through `$ALBERT_EDGE_TEST_RUNNER` when the suite runs under emulation).

mod common;

use albert_edge::{Input, Model, Precision, RunError, Workspace};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "ALBERT_FAULTS_CHILD";

/// A fresh, empty scratch directory for one test.
fn scratch_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("albert-edge-faults-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The bundled demo model (real weights and tokenizer; int8).
fn bundled() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/models/sst2-tiny.albert"
    ))
}

/// Names of every entry in `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Logits of `m` for a fixed input, as bits.
fn logits_bits(m: &Model<'_>, ids: &[u32]) -> Vec<u32> {
    let mut ws = m.new_workspace(ids.len(), 1);
    let out = m.run(&mut ws, &Input::single(ids)).unwrap();
    let o = out.iter().next().unwrap();
    o.data.iter().map(|v| v.to_bits()).collect()
}

/// This test binary as a child process running `child_entry` with `task`.
fn child(task: &str) -> Command {
    let exe = std::env::current_exe().unwrap();
    let mut c = match std::env::var("ALBERT_EDGE_TEST_RUNNER") {
        Ok(r) if !r.trim().is_empty() => {
            let mut parts = r.split_whitespace();
            let mut c = Command::new(parts.next().unwrap());
            c.args(parts).arg(exe);
            c
        }
        _ => Command::new(exe),
    };
    c.args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, task)
        .stdin(Stdio::null());
    c
}

/// Like [`child`], under `sh` with a file-size limit of `blocks` (ulimit units)
/// and `SIGXFSZ` ignored, so that writes past the limit fail with `EFBIG`
/// instead of killing the process: the same error path as a full disk.
fn child_with_file_limit(task: &str, blocks: u32) -> Command {
    let inner = child(task);
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!("trap '' XFSZ; ulimit -f {blocks}; exec \"$@\""))
        .arg("sh")
        .arg(inner.get_program())
        .args(inner.get_args())
        .env(CHILD_ENV, task)
        .stdin(Stdio::null());
    c
}

/// What the child processes do. A no-op in a normal test run.
#[test]
fn child_entry() {
    let Ok(task) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (verb, arg) = task.split_once(':').unwrap();
    match verb {
        // Convert a fixture and write it to `arg` the way albert-convert does;
        // report the result on stdout.
        "convert" => {
            let bytes = common::convert_fixture("tiny-base/seqcls2", Precision::F32);
            match albert_convert::write::write_atomic(Path::new(arg), &bytes) {
                Ok(()) => println!("CHILD-WROTE {}", bytes.len()),
                Err(e) => println!("CHILD-ERROR {e:#}"),
            }
        }
        // Map `arg`, truncate it in place, then run: the documented hazard.
        "truncate-mapped" => {
            let m = Model::open(arg).unwrap();
            std::fs::File::create(arg).unwrap(); // truncates to 0 bytes
            println!("CHILD-TRUNCATED");
            let _ = logits_bits(&m, &[2, 48, 13, 3]);
            println!("CHILD-SURVIVED");
        }
        other => panic!("unknown child task {other}"),
    }
}

#[test]
fn replacing_a_mapped_file_by_rename_keeps_the_old_model() {
    let dir = scratch_dir("rename");
    let path = dir.join("model.albert");
    let old = std::fs::read(bundled()).unwrap();
    std::fs::write(&path, &old).unwrap();
    let ids = [2u32, 48, 13, 1234, 3];
    let mapped = Model::open(&path).unwrap();
    let before = logits_bits(&mapped, &ids);

    // Replace the file the way albert-convert does (temporary file + rename).
    let new = common::convert_fixture("tiny-base/seqcls2", Precision::Int8);
    albert_convert::write::write_atomic(&path, &new).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), new);

    // The mapping still shows the old file: same bytes, same results.
    assert_eq!(mapped.bytes(), &old[..]);
    assert_eq!(logits_bits(&mapped, &ids), before);
    // Opening again gives the new model.
    let reopened = Model::open(&path).unwrap();
    assert_eq!(reopened.config().hidden_size, 64);
    assert_ne!(logits_bits(&reopened, &ids), before);
    assert_eq!(entries(&dir), ["model.albert"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn truncating_a_mapped_file_kills_the_mapper_but_not_a_reader() {
    let dir = scratch_dir("truncate");
    let path = dir.join("model.albert");
    std::fs::copy(bundled(), &path).unwrap();

    // `Model::open` maps the file: truncating it in place under a live model
    // is the hazard `Model::open` documents. The process dies with SIGBUS on
    // the next access (it must not read garbage and carry on).
    let out = child(&format!("truncate-mapped:{}", path.display()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("CHILD-TRUNCATED"),
        "child did not get that far: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !stdout.contains("CHILD-SURVIVED"),
        "ran on a truncated mapping"
    );
    assert!(!out.status.success());
    if std::env::var_os("ALBERT_EDGE_TEST_RUNNER").is_none() {
        assert_eq!(
            out.status.signal(),
            Some(7 /* SIGBUS */),
            "{:?}",
            out.status
        );
    }

    // `Model::read` owns a private copy: the same abuse changes nothing.
    std::fs::copy(bundled(), &path).unwrap();
    let ids = [2u32, 48, 13, 3];
    let copy = Model::read(&path).unwrap();
    let before = logits_bits(&copy, &ids);
    std::fs::File::create(&path).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    assert_eq!(logits_bits(&copy, &ids), before);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Runs the converter child with a file-size limit below the model's size and
/// checks that the write failed cleanly and left nothing behind.
fn check_write_failure_leaves_nothing(existing: Option<&[u8]>) {
    let dir = scratch_dir(if existing.is_some() {
        "efbig-old"
    } else {
        "efbig"
    });
    let path = dir.join("out.albert");
    if let Some(old) = existing {
        std::fs::write(&path, old).unwrap();
    }
    // 64 blocks (32 or 64 KiB depending on the shell): far below the model's size.
    let out = child_with_file_limit(&format!("convert:{}", path.display()), 64)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("CHILD-ERROR"),
        "the write did not fail: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "child crashed: {:?}", out.status);
    match existing {
        None => assert!(entries(&dir).is_empty(), "left behind: {:?}", entries(&dir)),
        Some(old) => {
            assert_eq!(entries(&dir), ["out.albert"]);
            assert_eq!(std::fs::read(&path).unwrap(), old, "existing model changed");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn file_size_limit_fails_the_conversion_and_leaves_no_file() {
    check_write_failure_leaves_nothing(None);
}

#[test]
fn file_size_limit_keeps_an_existing_model_intact() {
    let old = std::fs::read(bundled()).unwrap();
    check_write_failure_leaves_nothing(Some(&old[..]));
}

#[test]
fn read_only_or_missing_output_directory_is_a_clear_error() {
    let bytes = vec![0u8; 4096];
    // A directory that does not exist, and a "directory" that is a file.
    let dir = scratch_dir("readonly");
    let missing = dir.join("no-such-dir").join("out.albert");
    let e = albert_convert::write::write_atomic(&missing, &bytes).unwrap_err();
    assert!(format!("{e:#}").contains("temporary file"), "{e:#}");
    let file = dir.join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    assert!(albert_convert::write::write_atomic(&file.join("out.albert"), &bytes).is_err());
    // A file system that refuses new files for everyone, root included.
    assert!(albert_convert::write::write_atomic(Path::new("/proc/out.albert"), &bytes).is_err());
    // A read-only directory (root bypasses permission bits: reported as skipped).
    let ro = dir.join("ro");
    std::fs::create_dir(&ro).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    let probe = ro.join("probe");
    if std::fs::write(&probe, b"x").is_ok() {
        std::fs::remove_file(&probe).unwrap();
        eprintln!(
            "[faults] read-only directory case SKIPPED: running as root ignores permission bits"
        );
    } else {
        let e = albert_convert::write::write_atomic(&ro.join("out.albert"), &bytes).unwrap_err();
        assert!(format!("{e:#}").contains("temporary file"), "{e:#}");
        assert!(entries(&ro).is_empty());
    }
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(entries(&dir), ["plain-file", "ro"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn killing_the_conversion_never_leaves_a_partial_model() {
    let dir = scratch_dir("kill");
    let path = dir.join("out.albert");
    let old = std::fs::read(bundled()).unwrap();
    // Where a complete conversion ends up (to recognize the new file).
    let new = common::convert_fixture("tiny-base/seqcls2", Precision::F32);
    let (mut absent, mut old_kept, mut new_written, mut leftovers) = (0, 0, 0, 0);
    for round in 0..8u64 {
        // Half the rounds start with an existing model at the destination.
        let had_old = round % 2 == 1;
        if had_old {
            std::fs::write(&path, &old).unwrap();
        }
        let mut c = child(&format!("convert:{}", path.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill it at a different point each round; from round 4 on, as soon as
        // its temporary file appears (mid-write).
        let start = Instant::now();
        if round < 4 {
            std::thread::sleep(Duration::from_millis(round * 40));
        } else {
            while start.elapsed() < Duration::from_secs(60)
                && !entries(&dir).iter().any(|n| n.ends_with(".tmp"))
                && c.try_wait().unwrap().is_none()
            {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        let _ = c.kill(); // SIGKILL (an error only if it was already reaped)
        c.wait().unwrap();
        // The destination is the old file, absent, or the complete new file.
        match std::fs::read(&path) {
            Err(_) => {
                assert!(!had_old, "round {round}: the existing model vanished");
                absent += 1;
            }
            Ok(b) if b == new => new_written += 1,
            Ok(b) if had_old && b == old => old_kept += 1,
            Ok(b) => panic!(
                "round {round}: a partial or foreign file of {} bytes",
                b.len()
            ),
        }
        // A killed writer cannot clean up: its temporary file may stay (named
        // `.albert-convert-*.tmp`, documented in docs/security.md). Remove it.
        for n in entries(&dir) {
            if n != "out.albert" {
                assert!(
                    n.starts_with(".albert-convert-") && n.ends_with(".tmp"),
                    "{n}"
                );
                std::fs::remove_file(dir.join(n)).unwrap();
                leftovers += 1;
            }
        }
        let _ = std::fs::remove_file(&path);
    }
    eprintln!(
        "[faults] 8 killed conversions: destination absent {absent}, old kept {old_kept}, \
         new complete {new_written}; temporary files left {leftovers}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_workspace_reused_across_models_is_checked_and_never_leaks_state() {
    let big = Model::open(bundled()).unwrap(); // H 312
    let small = Model::from_vec(&common::convert_fixture(
        "tiny-base/seqcls2",
        Precision::Int8,
    ))
    .unwrap(); // H 64
    let ids = [2u32, 48, 13, 1234, 77, 3];
    let input = Input::single(&ids);
    let reference = |m: &Model<'_>| logits_bits(m, &ids);
    let (ref_big, ref_small) = (reference(&big), reference(&small));

    // Sized for the small model: the big one refuses it with an error.
    let mut ws = small.new_workspace(ids.len(), 1);
    assert!(matches!(
        big.run(&mut ws, &input),
        Err(RunError::WorkspaceTooSmall { .. })
    ));
    // The refused run did not disturb the small model's use of it.
    let out = small.run(&mut ws, &input).unwrap();
    assert_eq!(
        out.iter()
            .next()
            .unwrap()
            .data
            .iter()
            .map(|v| v.to_bits())
            .collect::<Vec<_>>(),
        ref_small
    );

    // Sized for the big one, filled with garbage (NaN bytes), alternated
    // between the two models: every result equals a fresh workspace's.
    let len = big
        .workspace_len(ids.len(), 1)
        .max(small.workspace_len(ids.len(), 1));
    let mut buf = vec![0xffu8; len + 3];
    let mut ws = Workspace::from_bytes(&mut buf[3..]); // misaligned on purpose
    for round in 0..3 {
        for (m, want) in [(&big, &ref_big), (&small, &ref_small)] {
            let out = m.run(&mut ws, &input).unwrap();
            let got: Vec<u32> = out
                .iter()
                .next()
                .unwrap()
                .data
                .iter()
                .map(|v| v.to_bits())
                .collect();
            assert_eq!(&got, want, "round {round}");
        }
    }
}

#[test]
fn concurrent_runs_on_one_model_match_sequential_runs() {
    // The mapped bundled model, shared by reference between threads.
    let model = Model::open(bundled()).unwrap();
    let mut rng = 0x1234_5678_9abc_def0u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    // Inputs of assorted lengths and batch sizes, with padding masks and types.
    // (batch, seq, ids, mask, types)
    type Case = (usize, usize, Vec<u32>, Vec<u32>, Vec<u32>);
    let inputs: Vec<Case> = (0..24)
        .map(|i| {
            let batch = 1 + i % 3;
            let seq = 3 + (next() % 40) as usize;
            let ids = (0..batch * seq).map(|_| (next() % 8000) as u32).collect();
            let mask = (0..batch * seq)
                .map(|j| u32::from(j % seq < seq - i % 4))
                .collect();
            let types = (0..batch * seq)
                .map(|j| u32::from(j % seq >= seq / 2))
                .collect();
            (batch, seq, ids, mask, types)
        })
        .collect();
    let run = |m: &Model<'_>, ws: &mut Workspace<'_>, k: usize| -> Vec<u32> {
        let (batch, seq, ids, mask, types) = &inputs[k];
        let input = Input {
            batch: *batch,
            seq: *seq,
            input_ids: ids,
            attention_mask: Some(mask),
            token_type_ids: Some(types),
        };
        let out = m.run(ws, &input).unwrap();
        out.iter()
            .flat_map(|o| o.data.iter().map(|v| v.to_bits()))
            .collect()
    };
    let mut ws = model.new_workspace(64, 3);
    let sequential: Vec<Vec<u32>> = (0..inputs.len()).map(|k| run(&model, &mut ws, k)).collect();

    let threads = 8;
    let n_inputs = inputs.len();
    let results: Vec<Vec<(usize, Vec<u32>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (model, run) = (&model, &run);
                let n = n_inputs;
                s.spawn(move || {
                    let mut ws = model.new_workspace(64, 3);
                    // Every thread runs every input, each starting elsewhere.
                    (0..n)
                        .map(|j| {
                            let k = (j + t * 5) % n;
                            (k, run(model, &mut ws, k))
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut checked = 0;
    for per_thread in &results {
        for (k, bits) in per_thread {
            assert_eq!(bits, &sequential[*k], "input {k} differs under concurrency");
            checked += 1;
        }
    }
    assert_eq!(checked, threads * n_inputs);
}
