//! The converter's safetensors reader on arbitrary bytes (seeds: small valid
//! files with F32, F16 and BF16 tensors): an error, or tensors whose data
//! length matches their shape.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tensors) = albert_convert::load::safetensors::read_safetensors(data) {
        for t in tensors.values() {
            assert_eq!(t.shape.iter().product::<usize>(), t.data.len());
        }
    }
});
