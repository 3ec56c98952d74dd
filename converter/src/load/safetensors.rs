//! Hugging Face checkpoint folder reader (`config.json`, `model.safetensors`, tokenizer files).
