//! The one place that knows Hugging Face ALBERT tensor names.
use anyhow::{bail, Result};
/// Activation code stored in the model file for a `hidden_act` name.
pub fn activation_code(name: &str) -> Result<u32> {
    Ok(match name {
        "gelu_new" | "gelu_pytorch_tanh" => 0,
        "gelu" => 1,
        "relu" => 2,
        other => bail!("config.json: hidden_act {other:?} is not supported (gelu_new, gelu, relu)"),
    })
}
