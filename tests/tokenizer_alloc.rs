//! `encode_into` performs no heap allocation (counting global allocator).

use albert_edge::tokenizer::Tokenizer;

#[path = "common/counting_alloc.rs"]
mod counting_alloc;

#[test]
fn encode_into_does_not_allocate() {
    let dir = std::env::var_os("ALBERT_EDGE_SHARED")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../shared").into());
    let model = std::fs::read(dir.join("fixtures/spiece/spiece.model"))
        .expect("spiece.model not found; set ALBERT_EDGE_SHARED to the shared/ folder");
    let bytes = albert_convert::spm::build_tokenizer_section(&model, None).unwrap();
    let texts = [
        "HeLLo WoRLD, This Is ALBERT. ``quoted'' café İstanbul 😀👍 日本語",
        "the movie is[MASK]good <PAD> [CLS] 1,000,000 (x) – £5 €10 \u{0}\u{200b}\u{fdfa}",
        "",
    ];
    let mut scratch = vec![0u8; 1 << 16];
    let mut ids = vec![0u32; 512];
    let mut types = vec![0u32; 512];
    counting_alloc::count_this_thread();
    let before = counting_alloc::allocations();
    let tok = Tokenizer::from_section(&bytes).unwrap();
    let mut total = 0;
    for a in texts {
        for b in [None, Some(texts[0]), Some("")] {
            for max_len in [None, Some(10), Some(3)] {
                if let Ok(n) = tok.encode_into(a, b, max_len, &mut scratch, &mut ids, &mut types) {
                    total += n;
                }
            }
        }
        let mut count = 0usize;
        tok.encode_with(a, None, None, &mut scratch, |t| count += t.text.len())
            .unwrap();
        total += count;
    }
    let after = counting_alloc::allocations();
    assert!(total > 100);
    assert_eq!(after - before, 0, "from_section/encode_into allocated");
}
