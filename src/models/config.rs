//! [`ModelConfig`]: a family and its hyper-parameters, as `{"family": "wavenet", ...}` in
//! JSON and `[model] family = "wavenet"` in TOML presets.

use serde::de::Error as _;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::family::{Family, Input};
use super::registry::{lookup, FamilyInfo};
use crate::error::{Error, Result};

/// A model family and its hyper-parameters (every one filled in: defaults are applied when
/// a config is read).
#[derive(Clone)]
pub struct ModelConfig {
    family: &'static FamilyInfo,
    settings: Map<String, Value>,
}

impl ModelConfig {
    /// The config of family `F` with the given hyper-parameters.
    pub fn new<F: Family>(config: F::Config) -> Result<Self> {
        let family = lookup(F::NAME)?;
        let settings = match serde_json::to_value(&config) {
            Ok(Value::Object(map)) => map,
            _ => return Err(Error::config("model", format!("{}: its config does not serialize to an object", F::NAME))),
        };
        Ok(ModelConfig { family, settings })
    }

    /// The default configuration of a family given by name (`mlp`, `causal-cnn`, …).
    pub fn default_for(family: &str) -> Result<Self> {
        let family = lookup(family)?;
        Ok(ModelConfig { family, settings: family.defaults() })
    }

    /// Parses `{"family": "...", ...}`; the error says what is wrong (unknown family, unknown
    /// or mistyped field).
    pub fn from_value(value: Value) -> std::result::Result<Self, String> {
        let Value::Object(mut map) = value else {
            return Err(format!("a model config must be a table with a `family` key, got {value}"));
        };
        let name = match map.remove("family") {
            Some(Value::String(name)) => name,
            Some(other) => return Err(format!("`family` must be a string, got {other}")),
            None => return Err("missing field `family`".into()),
        };
        let family = lookup(&name).map_err(|e| e.to_string())?;
        let settings = family.normalize(map).map_err(|e| format!("{name}: {e}"))?;
        Ok(ModelConfig { family, settings })
    }

    /// Parses a config from JSON text of the form `{"family": "...", ...}`; `source` names
    /// the file in errors.
    pub fn from_json(text: &str, source: &std::path::Path) -> Result<Self> {
        let value: Value = serde_json::from_str(text).map_err(|e| Error::bad_file(source, format!("model config: {e}")))?;
        Self::from_value(value).map_err(|e| Error::bad_file(source, format!("model config: {e}")))
    }

    /// The family name.
    pub fn family(&self) -> &'static str {
        self.family.name
    }

    /// The family's registry entry.
    pub fn info(&self) -> &'static FamilyInfo {
        self.family
    }

    /// Whether the family works on 2-D token grids (B, H, W) rather than sequences.
    pub fn is_grid(&self) -> bool {
        self.family.input == Input::Grid
    }

    /// The hyper-parameters as family `F`'s config; `None` for another family.
    pub fn settings<F: Family>(&self) -> Option<F::Config> {
        if self.family.name != F::NAME {
            return None;
        }
        serde_json::from_value(Value::Object(self.settings.clone())).ok()
    }

    /// The hyper-parameters as JSON (without `family`).
    pub fn settings_json(&self) -> &Map<String, Value> {
        &self.settings
    }

    /// The family's own checks (sizes that would build an empty or ill-formed network).
    pub fn validate(&self) -> Result<()> {
        self.family.validate(&self.settings)
    }
}

impl PartialEq for ModelConfig {
    fn eq(&self, other: &Self) -> bool {
        self.family.name == other.family.name && self.settings == other.settings
    }
}

impl std::fmt::Debug for ModelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelConfig").field("family", &self.family.name).field("settings", &self.settings).finish()
    }
}

impl Serialize for ModelConfig {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.settings.len() + 1))?;
        map.serialize_entry("family", self.family.name)?;
        for (k, v) in &self.settings {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for ModelConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        ModelConfig::from_value(Value::deserialize(d)?).map_err(D::Error::custom)
    }
}
