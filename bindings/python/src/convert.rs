//! JSON values (metrics records, configs, reports) to Python objects and back.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::Value;

use crate::errors::config_error;

/// `v` as a Python object: dicts, lists, str, int, float, bool and None.
pub fn to_py<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => u.into_pyobject(py)?.into_any(),
            (None, Some(i)) => i.into_pyobject(py)?.into_any(),
            _ => n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any(),
        },
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(items) => PyList::new(py, items.iter().map(|i| to_py(py, i)).collect::<PyResult<Vec<_>>>()?)?.into_any(),
        Value::Object(map) => {
            let d = PyDict::new(py);
            for (k, item) in map {
                d.set_item(k, to_py(py, item)?)?;
            }
            d.into_any()
        }
    })
}

/// A Python value as JSON, for a setting named `key`: None, bool, int, float, str, and lists,
/// tuples and dicts of them; anything else is a `ConfigError` naming the key.
pub fn from_py(key: &str, v: &Bound<'_, PyAny>) -> PyResult<Value> {
    if v.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = v.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if v.is_instance_of::<PyInt>() {
        if let Ok(i) = v.extract::<i64>() {
            return Ok(Value::from(i));
        }
        if let Ok(u) = v.extract::<u64>() {
            return Ok(Value::from(u));
        }
        return Err(config_error("settings", format!("`{key}`: {v} does not fit in 64 bits")));
    }
    if v.is_instance_of::<PyFloat>() {
        let f: f64 = v.extract()?;
        return serde_json::Number::from_f64(f).map(Value::Number).ok_or_else(|| config_error("settings", format!("`{key}`: {f} is not a finite number")));
    }
    if let Ok(s) = v.cast::<PyString>() {
        return Ok(Value::String(s.to_str()?.to_string()));
    }
    if v.is_instance_of::<PyList>() || v.is_instance_of::<PyTuple>() {
        return v.try_iter()?.map(|item| from_py(key, &item?)).collect::<PyResult<Vec<_>>>().map(Value::Array);
    }
    if let Ok(d) = v.cast::<PyDict>() {
        let mut map = serde_json::Map::new();
        for (k, item) in d.iter() {
            let k: String = k.extract().map_err(|_| config_error("settings", format!("`{key}`: the keys of a table must be strings")))?;
            map.insert(k.clone(), from_py(&format!("{key}.{k}"), &item)?);
        }
        return Ok(Value::Object(map));
    }
    let type_name = v.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "object".into());
    Err(config_error("settings", format!("`{key}`: a value of type {type_name} is not a setting (use a number, a string, a bool, None or a list)")))
}
