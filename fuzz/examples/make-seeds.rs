//! Writes the committed seed corpora under `fuzz/seeds/<target>/`: small valid
//! inputs built with the project's own converter (run from the `fuzz` folder:
//! `cargo run --example make-seeds`). Deterministic: re-running rewrites the
//! same bytes.

use albert_edge::{HeadKind, Precision};
use std::path::Path;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn safetensors(tensors: &[(&str, &str, &[usize], Vec<u8>)]) -> Vec<u8> {
    // Header JSON, 8-byte aligned with spaces, then the concatenated data.
    let mut header = String::from("{");
    let mut off = 0;
    for (i, (name, dtype, shape, data)) in tensors.iter().enumerate() {
        if i > 0 {
            header.push(',');
        }
        let shape: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        header.push_str(&format!(
            "\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":[{}],\"data_offsets\":[{off},{}]}}",
            shape.join(","),
            off + data.len()
        ));
        off += data.len();
    }
    header.push_str(",\"__metadata__\":{\"format\":\"pt\"}}");
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    for (.., data) in tensors {
        out.extend_from_slice(data);
    }
    out
}

fn main() {
    // Model files (shared by model_load and model_resealed): every head in int8,
    // sequence classification (with a tokenizer) and masked LM in f32 too.
    for (head, name) in [
        (HeadKind::Base, "base"),
        (HeadKind::SequenceClassification, "seqcls"),
        (HeadKind::TokenClassification, "tokcls"),
        (HeadKind::QuestionAnswering, "qa"),
        (HeadKind::MaskedLm, "mlm"),
    ] {
        for (p, pn) in [(Precision::Int8, "int8"), (Precision::F32, "f32")] {
            if p == Precision::F32
                && !matches!(head, HeadKind::SequenceClassification | HeadKind::MaskedLm)
            {
                continue;
            }
            let tok = head == HeadKind::SequenceClassification;
            let b = fuzz_support::tiny_model(head, p, tok);
            write("models", &format!("{name}-{pn}.albert"), &b);
        }
    }
    write(
        "models",
        "mini-int8.albert",
        &fuzz_support::mini_model(Precision::Int8),
    );
    write(
        "models",
        "mini-f32.albert",
        &fuzz_support::mini_model(Precision::F32),
    );
    // model_run: knobs (model, batch, seq, flags, workspace) then ids.
    write(
        "model_run",
        "single",
        &[1, 1, 5, 0, 0, 2, 0, 40, 0, 41, 0, 42, 0, 3, 0],
    );
    write(
        "model_run",
        "batch-mask-types",
        &[
            8, 2, 4, 3, 0, 2, 0, 9, 0, 9, 0, 3, 0, 2, 0, 9, 0, 3, 0, 0, 0, 1, 0, 1, 0, 1, 0, 0, 0,
            1, 0, 1, 0, 0, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0,
        ],
    );
    write("model_run", "mlm", &[9, 1, 40, 1, 0]);

    // Tokenizer texts: knobs (flags, max_len, small scratch) then text.
    for (i, t) in [
        "Hello, world! It's a \"great\" film (really) -- 1,000 times \u{2013} \u{a3}5 \u{20ac}.",
        "a\u{1}pair of texts, truncated",
        "\u{fb01}\u{301}e\u{301} \u{1f600} \u{3000}\u{ff21} [CLS]<pad>[MASK]  x\u{0}y",
        "12,5, 3,4 10,000,000",
    ]
    .iter()
    .enumerate()
    {
        let mut v = vec![(i as u8) | 1, 12, 40, 0];
        v.extend_from_slice(t.as_bytes());
        write("tokenizer_text", &format!("text{i}"), &v);
    }

    // Tokenizer sections: the tiny vocabulary, with and without the tokenizer_config flags.
    let spm = fuzz_support::tiny_spm().to_proto();
    let s = albert_convert::spm::build_tokenizer_section(&spm, None).unwrap();
    write("tokenizer_section", "tiny", &s);
    let s = albert_convert::spm::build_tokenizer_section(
        &spm,
        Some(r#"{"do_lower_case": false, "keep_accents": true, "remove_space": false}"#),
    )
    .unwrap();
    write("tokenizer_section", "tiny-keep-accents", &s);

    // spiece.model (+ tokenizer_config.json after 0xff 0xfe).
    write("convert_spiece", "tiny.model", &spm);
    let mut with_cfg = spm.clone();
    with_cfg.extend_from_slice(&[0xff, 0xfe]);
    with_cfg.extend_from_slice(br#"{"do_lower_case": true, "keep_accents": false, "remove_space": true, "mask_token": "[MASK]"}"#);
    write("convert_spiece", "tiny-with-config", &with_cfg);

    // config.json.
    write(
        "convert_config",
        "seqcls.json",
        br#"{"architectures":["AlbertForSequenceClassification"],"model_type":"albert","vocab_size":8000,"embedding_size":128,"hidden_size":312,"num_attention_heads":12,"intermediate_size":1248,"num_hidden_layers":4,"num_hidden_groups":1,"inner_group_num":1,"hidden_act":"gelu_new","layer_norm_eps":1e-12,"max_position_embeddings":512,"type_vocab_size":2,"id2label":{"0":"negative","1":"positive"},"position_embedding_type":"absolute"}"#,
    );
    write(
        "convert_config",
        "minimal.json",
        br#"{"model_type":"albert"}"#,
    );

    // safetensors.
    let f32s: Vec<u8> = [1.0f32, -2.5, 0.0, 3.25, f32::MIN_POSITIVE, -0.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let halves: Vec<u8> = [0x3c00u16, 0xc000, 0x0001, 0x7bff]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    write(
        "convert_safetensors",
        "mixed.safetensors",
        &safetensors(&[
            ("albert.embeddings.LayerNorm.weight", "F32", &[2, 3], f32s),
            ("albert.pooler.bias", "F16", &[4], halves.clone()),
            ("classifier.bias", "BF16", &[2, 2], halves),
            (
                "albert.embeddings.position_ids",
                "I64",
                &[1, 1],
                0i64.to_le_bytes().to_vec(),
            ),
        ]),
    );
    println!("seeds written to {}/seeds", env!("CARGO_MANIFEST_DIR"));
}
