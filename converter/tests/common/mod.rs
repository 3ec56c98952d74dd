//! Helpers shared by the converter's integration tests.
#![allow(dead_code)] // each test crate uses its own subset

use std::path::PathBuf;

/// The reference data beside the repository (`ALBERT_EDGE_SHARED`, default
/// `../shared`); fails clearly when the fixtures are not there.
pub fn shared() -> PathBuf {
    let p = std::env::var_os("ALBERT_EDGE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared")));
    assert!(
        p.join("fixtures").is_dir(),
        "fixtures not found at {} (set ALBERT_EDGE_SHARED to the shared/ folder)",
        p.display()
    );
    p
}

/// A fresh, empty scratch directory `albert-convert-{group}-{pid}-{name}` in
/// the system temporary directory.
pub fn tmpdir(group: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "albert-convert-{group}-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
