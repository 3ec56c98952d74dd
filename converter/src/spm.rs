//! `spiece.model` reader: builds the model file's tokenizer section.
