//! Value parsers for flags: numbers that must be finite, names of serde enums.

/// A finite f32 (`nan` and `inf` are refused here, with the flag's own wording, instead of
/// failing later as a JSON null).
pub fn finite_f32(s: &str) -> Result<f32, String> {
    let v: f32 = s.trim().parse().map_err(|_| format!("`{s}` is not a number"))?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(format!("{s} is not a finite number"))
    }
}

/// A finite, positive f64.
pub fn positive_f64(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|_| format!("`{s}` is not a number"))?;
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(format!("{s} is not a positive finite number"))
    }
}

/// A value of a serde enum by its name (e.g. `adamw`, `stream`, `test`).
pub fn serde_name<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|e| e.to_string())
}
