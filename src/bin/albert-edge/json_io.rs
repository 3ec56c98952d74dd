//! Reading the JSON inputs of the CLI (the `reference.json` case layout).

use serde_json::Value;

/// A batch read from a case file.
pub struct Case {
    pub batch: usize,
    pub seq: usize,
    pub input_ids: Vec<u32>,
    pub attention_mask: Option<Vec<u32>>,
    pub token_type_ids: Option<Vec<u32>>,
}

/// A `{"shape": [...], "data": [...]}` array: its shape and values.
type Array = (Vec<usize>, Vec<u32>);

fn array(v: &Value, name: &str) -> Result<Option<Array>, String> {
    let Some(a) = v.get(name) else {
        return Ok(None);
    };
    if a.is_null() {
        return Ok(None);
    }
    let shape: Vec<usize> = a
        .get("shape")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("{name}: missing \"shape\""))?
        .iter()
        .map(|d| {
            d.as_u64()
                .map(|d| d as usize)
                .ok_or_else(|| format!("{name}: shape entries must be non-negative integers"))
        })
        .collect::<Result<_, _>>()?;
    let data: Vec<u32> = a
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("{name}: missing \"data\""))?
        .iter()
        .map(|d| {
            d.as_u64()
                .and_then(|d| u32::try_from(d).ok())
                .ok_or_else(|| format!("{name}: values must be integers in 0..2^32"))
        })
        .collect::<Result<_, _>>()?;
    Ok(Some((shape, data)))
}

/// Parses `{"input_ids": {"shape": [B, S], "data": [...]}, "attention_mask": ..., "token_type_ids": ...}`.
pub fn parse_case(text: &str) -> Result<Case, String> {
    let v: Value =
        serde_json::from_str(text).map_err(|e| format!("input is not valid JSON: {e}"))?;
    let (shape, input_ids) = array(&v, "input_ids")?.ok_or("input has no \"input_ids\"")?;
    if shape.len() != 2 {
        return Err(format!(
            "input_ids: shape must be [batch, seq], got {shape:?}"
        ));
    }
    let (batch, seq) = (shape[0], shape[1]);
    if batch.checked_mul(seq) != Some(input_ids.len()) {
        return Err(format!(
            "input_ids: {} values do not match shape {shape:?}",
            input_ids.len()
        ));
    }
    let mut rest = [None, None];
    for (slot, name) in rest.iter_mut().zip(["attention_mask", "token_type_ids"]) {
        if let Some((s, d)) = array(&v, name)? {
            if s != shape || d.len() != input_ids.len() {
                return Err(format!(
                    "{name}: shape {s:?} differs from input_ids {shape:?}"
                ));
            }
            *slot = Some(d);
        }
    }
    let [attention_mask, token_type_ids] = rest;
    Ok(Case {
        batch,
        seq,
        input_ids,
        attention_mask,
        token_type_ids,
    })
}
