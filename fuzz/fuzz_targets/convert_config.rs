//! The converter's `config.json` reader on arbitrary text: an error or a
//! config that passed `check`, never a panic.
#![no_main]

use albert_convert::config::HfConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cfg) = HfConfig::from_json(text) {
        assert!(cfg.check().is_ok());
        let n = cfg.num_labels.unwrap_or(2).min(64);
        assert_eq!(cfg.label_names(n).len(), n);
    }
});
