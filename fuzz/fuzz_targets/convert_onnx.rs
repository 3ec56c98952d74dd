//! The converter's ONNX reader on mutated ONNX files (needs `--features onnx`,
//! which builds tract). Protobuf decoding is tract's; recognizing ALBERT in the
//! graph and extracting its weights is ours and must fail with an error, never
//! panic. Seeds: `tiny-base/seqcls2/model.onnx`-style files from the fixtures
//! (not committed: see `fuzz/README.md`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    use tract_onnx::prelude::Framework;
    let Ok(proto) = tract_onnx::onnx().proto_model_for_read(&mut &data[..]) else {
        return;
    };
    // No folder: external-data references must be refused, not read.
    let _ = albert_convert::load::onnx::from_model_proto(&proto, None);
});
