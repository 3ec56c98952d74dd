//! The tokenizer on arbitrary text (and text pairs, truncation lengths and
//! scratch sizes), with the real 8000-piece vocabulary and charsmap of the
//! bundled `models/sst2-tiny.albert` and with a tiny vocabulary. Checks:
//! no panic; `scratch_len` is always enough; the token count from
//! `encode_with` is exactly what `encode_into` needs; `[CLS] … [SEP]`
//! framing, type ids and ids in range; truncation honoured; a smaller scratch
//! either fails with `ScratchTooSmall` or gives the same tokens.
#![no_main]

use albert_edge::tokenizer::{TokenizeError, Tokenizer};
use fuzz_support::Knobs;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static BUNDLED: &[u8] = include_bytes!("../../models/sst2-tiny.albert");

fn tokenizers() -> &'static [Tokenizer<'static>; 2] {
    static S: OnceLock<[Vec<u8>; 2]> = OnceLock::new();
    static T: OnceLock<[Tokenizer<'static>; 2]> = OnceLock::new();
    let s = S.get_or_init(|| {
        let real = fuzz_support::section(BUNDLED, albert_edge::format::section::TOKENIZER)
            .expect("the bundled model has a tokenizer")
            .to_vec();
        let tiny = albert_convert::spm::build_tokenizer_section(
            &fuzz_support::tiny_spm().to_proto(),
            None,
        )
        .expect("tiny vocabulary builds");
        [real, tiny]
    });
    T.get_or_init(|| {
        s.each_ref()
            .map(|b| Tokenizer::from_section(b).expect("section validates"))
    })
}

fn run(
    t: &Tokenizer<'_>,
    a: &str,
    b: Option<&str>,
    max_len: Option<usize>,
    scratch: &mut [u8],
) -> Result<Vec<(u32, u32)>, TokenizeError> {
    let mut v = Vec::new();
    let n = t.encode_with(a, b, max_len, scratch, |tok| v.push((tok.id, tok.type_id)))?;
    assert_eq!(
        n,
        v.len(),
        "returned count differs from the tokens handed out"
    );
    Ok(v)
}

fuzz_target!(|data: &[u8]| {
    let mut k = Knobs::new(data);
    let flags = k.byte();
    let max_len = k.byte() as usize;
    let small = k.u16() as usize;
    let text = String::from_utf8_lossy(k.rest());
    let (a, b) = match text.split_once('\u{1}') {
        Some((a, b)) if flags & 1 != 0 => (a, Some(b)),
        _ => (&text[..], None),
    };
    let max_len = (flags & 2 != 0).then_some(max_len);
    let t = &tokenizers()[(flags >> 2) as usize % 2];
    let longest = a.len().max(b.map_or(0, str::len));
    let mut scratch = vec![0u8; t.scratch_len(longest)];
    let toks = match run(t, a, b, max_len, &mut scratch) {
        Ok(v) => v,
        Err(TokenizeError::MaxLenTooSmall) => {
            assert!(max_len.is_some());
            return;
        }
        Err(e) => panic!("full scratch failed: {e}"),
    };
    // Framing, ranges, truncation.
    let vocab = t.vocab_size() as u32;
    assert!(toks.iter().all(|&(id, ty)| id < vocab && ty <= 1));
    assert_eq!(toks.first().map(|x| x.0), Some(t.cls_id()));
    assert_eq!(toks.last().map(|x| x.0), Some(t.sep_id()));
    let seps = toks.iter().filter(|x| x.0 == t.sep_id()).count();
    assert!(seps >= if b.is_some() { 2 } else { 1 });
    if b.is_none() {
        assert!(toks.iter().all(|x| x.1 == 0));
    }
    // Type ids never go from 1 back to 0.
    assert!(toks.windows(2).all(|w| w[0].1 <= w[1].1));
    if let Some(m) = max_len {
        assert!(toks.len() <= m, "{} tokens for max_len {m}", toks.len());
    }
    // Deterministic, and `encode_into` needs exactly that many slots.
    assert_eq!(
        run(t, a, b, max_len, &mut scratch).ok().as_ref(),
        Some(&toks)
    );
    let n = toks.len();
    let (mut ids, mut types) = (vec![0u32; n], vec![0u32; n]);
    assert_eq!(
        t.encode_into(a, b, max_len, &mut scratch, &mut ids, &mut types),
        Ok(n)
    );
    assert!(ids.iter().zip(&types).eq(toks.iter().map(|(i, t)| (i, t))));
    assert_eq!(
        t.encode_into(a, b, max_len, &mut scratch, &mut ids[..n - 1], &mut types),
        Err(TokenizeError::OutputTooSmall { needed: n })
    );
    // A smaller scratch: a clean error or the same answer.
    let mut little = vec![0u8; small.min(scratch.len())];
    match run(t, a, b, max_len, &mut little) {
        Ok(v) => assert_eq!(v, toks),
        Err(TokenizeError::ScratchTooSmall) => {}
        Err(e) => panic!("small scratch: unexpected {e}"),
    }
});
