//! Robustness of the tokenizer: arbitrary texts never panic and always terminate, scratch
//! limits give errors, every Unicode scalar value respects `MAX_EXPANSION`, and truncated or
//! corrupted sections are rejected (or, if they happen to validate, still never panic).

use albert_edge::tokenizer::{TokenizeError, Tokenizer, MAX_EXPANSION};

/// Under Miri (too slow to build or validate the 8000-piece vocabulary), the
/// tiny 59-piece section of the fuzz seeds (written by the same converter).
#[cfg(miri)]
fn section() -> Vec<u8> {
    include_bytes!("../fuzz/seeds/tokenizer_section/tiny").to_vec()
}

/// `n` normally, about `n / 100` (at least 2) under Miri.
fn scaled(n: usize) -> usize {
    if cfg!(miri) {
        (n / 100).max(2)
    } else {
        n
    }
}

#[cfg(not(miri))]
fn section() -> Vec<u8> {
    let dir = std::env::var_os("ALBERT_EDGE_SHARED")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared"))
        });
    let p = dir.join("fixtures/spiece/spiece.model");
    let model = std::fs::read(&p).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}); set ALBERT_EDGE_SHARED to the shared/ folder",
            p.display()
        )
    });
    albert_convert::spm::build_tokenizer_section(&model, None).unwrap()
}

/// xorshift64*: tiny deterministic PRNG.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const ALPHABET: &[&str] = &[
    "a",
    "b",
    "Z",
    " ",
    "  ",
    "\t",
    "\n",
    "\r\n",
    "\u{0}",
    "\u{1}",
    "\u{1c}",
    "\u{85}",
    "\u{a0}",
    "\u{3000}",
    "\u{200b}",
    "\u{200d}",
    "\u{feff}",
    "\u{301}",
    "é",
    "İ",
    "ı",
    "ß",
    "Σ",
    "ﬁ",
    "½",
    "\u{fdfa}",
    "\u{3300}",
    "😀",
    "👨\u{200d}👩",
    "日本",
    "한",
    "\u{2581}",
    "▁▁",
    ",",
    "1,",
    "9",
    "12,3",
    ".",
    "(",
    ")",
    "\"",
    "``",
    "''",
    "`",
    "'",
    "-",
    "–",
    "£",
    "€",
    "<pad>",
    "<PAD>",
    "<unk>",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "[mask]",
    "[",
    "<",
    ">",
    "]",
    "\u{ffff}",
    "\u{10ffff}",
    "\u{e000}",
    "𝔘",
    "\u{1d6ba}",
    "K",
    "\u{212a}",
];

fn random_text(rng: &mut Rng) -> String {
    let mut s = String::new();
    let n = rng.below(40);
    for _ in 0..n {
        match rng.below(10) {
            0 => {
                // an arbitrary scalar value
                let c = loop {
                    if let Some(c) = char::from_u32(rng.below(0x11_0000) as u32) {
                        break c;
                    }
                };
                s.push(c);
            }
            1 => {
                let w = ALPHABET[rng.below(ALPHABET.len())];
                for _ in 0..rng.below(30) {
                    s.push_str(w);
                }
            }
            _ => s.push_str(ALPHABET[rng.below(ALPHABET.len())]),
        }
    }
    s
}

#[test]
fn random_texts_never_panic() {
    let bytes = section();
    let tok = Tokenizer::from_section(&bytes).unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut scratch = vec![0u8; tok.scratch_len(4096)];
    let mut ids = vec![0u32; 40_000];
    let mut types = vec![0u32; 40_000];
    for i in 0..scaled(3000) {
        let a = random_text(&mut rng);
        let b = random_text(&mut rng);
        let pair = (i % 2 == 0).then_some(b.as_str());
        let max_len = (i % 3 == 0).then(|| rng.below(70));
        match tok.encode_into(&a, pair, max_len, &mut scratch, &mut ids, &mut types) {
            Ok(n) => {
                assert!(ids[..n].iter().all(|&id| (id as usize) < tok.vocab_size()));
                if let Some(m) = max_len {
                    assert!(n <= m);
                }
            }
            Err(TokenizeError::MaxLenTooSmall) => assert!(max_len.is_some()),
            Err(e) => panic!("{a:?} / {pair:?}: {e}"),
        }
        // Random bytes, made valid UTF-8 lossily.
        let raw: Vec<u8> = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
        let text = String::from_utf8_lossy(&raw);
        tok.encode_into(&text, None, None, &mut scratch, &mut ids, &mut types)
            .unwrap();
    }
}

#[test]
fn long_inputs_are_linear_and_bounded() {
    let bytes = section();
    let tok = Tokenizer::from_section(&bytes).unwrap();
    let mut ids = vec![0u32; 1_000_000];
    let mut types = vec![0u32; 1_000_000];
    for unit in ["a", "😀", "\u{0}", ",", "(", " ", "ab ", "1,", "\u{fdfa}"] {
        let text = unit.repeat(if cfg!(miri) { 240 } else { 200_000 } / unit.len());
        let mut scratch = vec![0u8; tok.scratch_len(text.len())];
        let t = std::time::Instant::now();
        let n = tok
            .encode_into(&text, None, None, &mut scratch, &mut ids, &mut types)
            .unwrap();
        assert!(n >= 2);
        assert!(
            cfg!(miri) || t.elapsed().as_secs() < 20, // Miri is ~1000x slower
            "{unit:?} took {:?}",
            t.elapsed()
        );
        // With a small scratch, a single huge word is an error, not a panic.
        let mut small = vec![0u8; tok.scratch_len_for_word(64)];
        let r = tok.encode_into(&text, None, None, &mut small, &mut ids, &mut types);
        if unit.trim().len() == unit.len() && unit != "\u{fdfa}" {
            assert_eq!(r, Err(TokenizeError::ScratchTooSmall), "{unit:?}");
        }
    }
}

#[test]
fn tiny_scratch_is_an_error_not_a_panic() {
    let bytes = section();
    let tok = Tokenizer::from_section(&bytes).unwrap();
    let mut ids = [0u32; 64];
    let mut types = [0u32; 64];
    let text = "hello world , it 's (fine) 😀";
    let need = tok.scratch_len(text.len());
    let mut first_ok = None;
    for len in (0..200).step_by(if cfg!(miri) { 7 } else { 1 }) {
        let mut scratch = vec![0u8; len];
        match tok.encode_into(text, Some(text), None, &mut scratch, &mut ids, &mut types) {
            Ok(_) => {
                first_ok.get_or_insert(len);
            }
            Err(e) => assert_eq!(e, TokenizeError::ScratchTooSmall),
        }
    }
    assert!(first_ok.unwrap() <= need);
    // Empty output buffers.
    let mut scratch = vec![0u8; need];
    assert_eq!(
        tok.encode_into(text, None, None, &mut scratch, &mut [], &mut []),
        Err(TokenizeError::OutputTooSmall {
            needed: tok.encode(text).len()
        })
    );
}

#[test]
fn every_scalar_value_respects_max_expansion() {
    let bytes = section();
    let tok = Tokenizer::from_section(&bytes).unwrap();
    let mut ids = [0u32; 512];
    let mut types = [0u32; 512];
    for cp in (0..=0x10_ffffu32).step_by(if cfg!(miri) { 5449 } else { 1 }) {
        let Some(c) = char::from_u32(cp) else {
            continue;
        };
        let text: String = std::iter::repeat_n(c, 3).collect();
        let mut scratch = vec![0u8; tok.scratch_len(text.len())];
        if let Err(e) = tok.encode_into(&text, None, None, &mut scratch, &mut ids, &mut types) {
            panic!("U+{cp:04X}: {e} (MAX_EXPANSION {MAX_EXPANSION} too small?)");
        }
    }
}

#[test]
fn corrupted_sections_never_panic() {
    let good = section();
    // Truncations (the declared length no longer matches) and truncations with the length
    // field patched, so that deeper checks run.
    let step = (good.len() / scaled(3000)).max(1);
    for len in (0..good.len()).step_by(step).chain(0..scaled(200)) {
        let mut s = good[..len].to_vec();
        assert!(Tokenizer::from_section(&s).is_err());
        if s.len() >= 96 {
            s[84..88].copy_from_slice(&(len as u32).to_le_bytes());
            assert!(
                Tokenizer::from_section(&s).is_err(),
                "truncated at {len} accepted"
            );
        }
    }
    // Bit flips: whatever validates must still encode without panicking.
    let mut rng = Rng(12345);
    let mut scratch = vec![0u8; 1 << 16];
    let mut ids = [0u32; 256];
    let mut types = [0u32; 256];
    let mut accepted = 0;
    for i in 0..scaled(400) {
        let mut s = good.clone();
        let at = if i < scaled(400) / 2 {
            rng.below(200)
        } else {
            rng.below(s.len())
        };
        s[at] ^= 1 << rng.below(8);
        if let Ok(t) = Tokenizer::from_section(&s) {
            accepted += 1;
            for text in ["Hello, world! (x) £5 😀", "a\u{0}b [CLS] <PAD> 1,000"] {
                let _ = t.encode_into(
                    text,
                    Some(text),
                    Some(40),
                    &mut scratch,
                    &mut ids,
                    &mut types,
                );
            }
        }
    }
    println!(
        "{accepted} of {} bit-flipped sections validated (flips in scores/charsmap strings)",
        scaled(400)
    );
}
