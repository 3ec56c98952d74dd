//! `Tokenizer::from_section` on mutated tokenizer sections (seeds: sections
//! the converter built). A section that validates must then encode any text
//! without panicking, with `scratch_len` always enough.
#![no_main]

use albert_edge::tokenizer::{TokenizeError, Tokenizer};
use fuzz_support::Aligned;
use libfuzzer_sys::fuzz_target;

const TEXTS: [&str; 4] = [
    "Hello, world! (x) 1,000 \u{e9}t\u{e9} [MASK] <pad> \u{1f600}",
    "",
    "   a\u{0}b\tc\u{3000}\u{fdfa}\u{301} 12,5,",
    "the film is good",
];

fuzz_target!(|data: &[u8]| {
    let a = Aligned::new(data);
    let Ok(t) = Tokenizer::from_section(a.bytes()) else {
        return;
    };
    let _ = (t.vocab_size(), t.unk_id(), t.pad_id(), t.mask_id());
    for id in [0, 1, t.vocab_size() as u32, u32::MAX] {
        let _ = t.piece(id);
    }
    for (i, text) in TEXTS.iter().enumerate() {
        let pair = (i % 2 == 0).then_some(TEXTS[(i + 1) % TEXTS.len()]);
        let longest = text.len().max(pair.map_or(0, str::len));
        let mut scratch = vec![0u8; t.scratch_len(longest)];
        let mut n = 0usize;
        match t.encode_with(text, pair, None, &mut scratch, |tok| {
            assert!((tok.id as usize) < t.vocab_size());
            n += 1;
        }) {
            Ok(count) => assert_eq!(count, n),
            // A charsmap rule longer than the look-ahead window is a documented error.
            Err(TokenizeError::LookaheadExceeded) => {}
            Err(e) => panic!("validated section, full scratch: {e}"),
        }
    }
});
