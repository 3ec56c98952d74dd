//! `Model::from_bytes` / `Model::from_vec` on arbitrary bytes: every input is
//! either rejected with a `LoadError` or loads and then answers every accessor
//! without panicking. Seeds are small valid model files, so the mutations also
//! start from valid files (most are caught by the checksums; see
//! `model_resealed` for mutations that get past them).
#![no_main]

use albert_edge::Model;
use fuzz_support::Aligned;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let a = Aligned::new(data);
    match Model::from_bytes(a.bytes()) {
        Ok(m) => {
            // A file that loads from borrowed bytes loads from a copy too.
            assert!(Model::from_vec(data).is_ok());
            fuzz_support::exercise(&m);
        }
        Err(e) => {
            let _ = e.to_string();
            assert!(Model::from_vec(data).is_err());
        }
    }
    // One byte off the 64-byte alignment: always rejected, never read misaligned.
    if data.len() > 1 {
        let shifted = Aligned::new(&[&[0u8][..], data].concat());
        assert!(Model::from_bytes(&shifted.bytes()[1..]).is_err());
    }
});
