//! The converter's `spiece.model` (protobuf), `tokenizer.json` and
//! `tokenizer_config.json` readers on arbitrary bytes. Whatever section the
//! converter builds must be accepted by the runtime's validation (the converter
//! never writes a file the runtime rejects) and must encode text.
#![no_main]

use albert_edge::tokenizer::Tokenizer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Input: `spiece.model` bytes, optionally followed by 0xff 0xfe and a
    // tokenizer_config.json text; or a tokenizer.json text (starting with `{`),
    // which the converter turns into `spiece.model` bytes.
    let (model, config) = match data.windows(2).position(|w| w == [0xff, 0xfe]) {
        Some(p) => (&data[..p], std::str::from_utf8(&data[p + 2..]).ok()),
        None => (data, None),
    };
    let from_json;
    let model = match std::str::from_utf8(model) {
        Ok(json) if json.starts_with('{') => {
            match albert_convert::spm::from_tokenizer_json(json) {
                Ok(m) => {
                    from_json = m.to_proto();
                    &from_json[..]
                }
                Err(_) => return,
            }
        }
        _ => model,
    };
    if let Some(c) = config {
        let _ = albert_convert::spm::parse_tokenizer_config(c);
    }
    let _ = albert_convert::spm::parse_model(model);
    if let Ok(section) = albert_convert::spm::build_tokenizer_section(model, config) {
        let t = Tokenizer::from_section(&section)
            .unwrap_or_else(|e| panic!("the runtime rejects a section the converter built: {e}"));
        let text = "Hello, world! 1,000 \u{e9}t\u{e9} [MASK]";
        let mut scratch = vec![0u8; t.scratch_len(text.len())];
        let _ = t.encode_with(text, Some("b"), Some(8), &mut scratch, |_| {});
    }
});
