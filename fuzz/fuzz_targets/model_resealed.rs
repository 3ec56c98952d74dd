//! Mutated model files with their checksums recomputed, so that a mutation
//! anywhere (config, labels, tensor table, padding, int8 weights, tokenizer
//! section) reaches the structural validation behind the CRCs. Whatever loads
//! must then run and tokenize without panicking.
#![no_main]

use albert_edge::Model;
use fuzz_support::Aligned;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut b = data.to_vec();
    fuzz_support::reseal(&mut b);
    let a = Aligned::new(&b);
    if let Ok(m) = Model::from_bytes(a.bytes()) {
        fuzz_support::exercise(&m);
    }
});
