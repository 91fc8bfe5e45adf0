//! The registry: the one table of model families ([`REGISTRY`]). Configs name a family (`"family":
//! "wavenet"`), and every lookup by name goes through [`find`]. Families outside this crate
//! (a test's toy model, a user's experiment) join at run time with [`register`].

use std::sync::{Arc, RwLock};

use serde_json::{Map, Value};

use super::family::{Family, Input, Network};
use super::{CausalCnn, Dilated, GatedCnn, Hierarchical, Hyena, Mlp, PixelCnn, WaveNet};
use crate::error::{Error, Result};
use crate::nn::ModelBuilder;

/// A family's entry in the registry: its name and the functions that parse, validate and
/// build its configurations (made by [`family`]).
#[derive(Clone, Copy)]
pub struct FamilyInfo {
    /// Name in configs and on the command line.
    pub name: &'static str,
    /// One line describing it.
    pub about: &'static str,
    /// The token layout it reads.
    pub input: Input,
    normalize: fn(Settings) -> std::result::Result<Settings, String>,
    defaults: fn() -> Settings,
    validate: fn(&Settings) -> Result<()>,
    build: fn(&Settings, usize, &mut ModelBuilder) -> Result<Arc<dyn Network>>,
}

/// A family's hyper-parameters as JSON (the config without `family`).
type Settings = Map<String, Value>;

/// The families convlm ships, in the order of reference/models.py. Adding one: a file in
/// `src/models/`, a line here, and its golden file in `../shared/golden/models/`.
pub const REGISTRY: &[FamilyInfo] = &[
    family::<Mlp>(),
    family::<CausalCnn>(),
    family::<Dilated>(),
    family::<Hierarchical>(),
    family::<WaveNet>(),
    family::<GatedCnn>(),
    family::<PixelCnn>(),
    family::<Hyena>(),
];

/// The names of the built-in families, in [`REGISTRY`] order.
pub const FAMILIES: [&str; REGISTRY.len()] = {
    let mut names = [""; REGISTRY.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = REGISTRY[i].name;
        i += 1;
    }
    names
};

/// The registry entry of family `F`.
pub const fn family<F: Family>() -> FamilyInfo {
    FamilyInfo {
        name: F::NAME,
        about: F::ABOUT,
        input: F::INPUT,
        normalize: normalize::<F>,
        defaults: defaults::<F>,
        validate: validate::<F>,
        build: build::<F>,
    }
}

/// Families registered at run time with [`register`] (leaked: they live as long as the
/// process, like the built-in table).
static REGISTERED: RwLock<Vec<&'static FamilyInfo>> = RwLock::new(Vec::new());

/// Adds a family defined outside this crate, so configs can name it. Errors when the name
/// is taken.
pub fn register(info: FamilyInfo) -> Result<()> {
    let mut extra = REGISTERED.write().unwrap_or_else(|e| e.into_inner());
    if find_in(&extra, info.name).is_some() {
        return Err(Error::config("model", format!("a family named `{}` is already registered", info.name)));
    }
    extra.push(Box::leak(Box::new(info)));
    Ok(())
}

fn find_in(extra: &[&'static FamilyInfo], name: &str) -> Option<&'static FamilyInfo> {
    REGISTRY.iter().find(|f| f.name == name).or_else(|| extra.iter().copied().find(|f| f.name == name))
}

/// The family called `name`.
pub fn find(name: &str) -> Option<&'static FamilyInfo> {
    find_in(&REGISTERED.read().unwrap_or_else(|e| e.into_inner()), name)
}

/// Every family name, built-in ones first.
pub fn names() -> Vec<&'static str> {
    let extra = REGISTERED.read().unwrap_or_else(|e| e.into_inner());
    REGISTRY.iter().chain(extra.iter().copied()).map(|f| f.name).collect()
}

/// The family called `name`, or an error listing the known ones.
pub fn lookup(name: &str) -> Result<&'static FamilyInfo> {
    find(name).ok_or_else(|| Error::config("model", format!("unknown family `{name}` (expected one of {})", names().join(", "))))
}

impl FamilyInfo {
    /// Parses settings (without `family`) into the family's config, defaults filled in, and
    /// returns them re-serialized; the error is serde's (unknown field, wrong type…).
    pub(crate) fn normalize(&self, settings: Map<String, Value>) -> std::result::Result<Map<String, Value>, String> {
        (self.normalize)(settings)
    }

    /// The default settings.
    pub(crate) fn defaults(&self) -> Map<String, Value> {
        (self.defaults)()
    }

    /// The family's own checks of normalized settings.
    pub(crate) fn validate(&self, settings: &Map<String, Value>) -> Result<()> {
        (self.validate)(settings)
    }

    /// Builds the network of normalized settings with `b`.
    pub(crate) fn build(&self, settings: &Map<String, Value>, vocab_size: usize, b: &mut ModelBuilder) -> Result<Arc<dyn Network>> {
        (self.build)(settings, vocab_size, b)
    }
}

impl std::fmt::Display for FamilyInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name)
    }
}

impl std::fmt::Debug for FamilyInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FamilyInfo").field("name", &self.name).field("input", &self.input).finish_non_exhaustive()
    }
}

/// The typed config of already-normalized settings (cannot fail for them; the error covers
/// settings made by hand).
fn typed<F: Family>(settings: &Map<String, Value>) -> Result<F::Config> {
    serde_json::from_value(Value::Object(settings.clone())).map_err(|e| Error::config("model", format!("{}: {e}", F::NAME)))
}

fn to_map<T: serde::Serialize>(value: &T) -> std::result::Result<Map<String, Value>, String> {
    match serde_json::to_value(value) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(format!("a family config must serialize to an object, not {other}")),
        Err(e) => Err(e.to_string()),
    }
}

fn normalize<F: Family>(settings: Map<String, Value>) -> std::result::Result<Map<String, Value>, String> {
    let config: F::Config = serde_json::from_value(Value::Object(settings)).map_err(|e| e.to_string())?;
    to_map(&config)
}

fn defaults<F: Family>() -> Map<String, Value> {
    to_map(&F::Config::default()).unwrap_or_default()
}

fn validate<F: Family>(settings: &Map<String, Value>) -> Result<()> {
    F::validate(&typed::<F>(settings)?)
}

fn build<F: Family>(settings: &Map<String, Value>, vocab_size: usize, b: &mut ModelBuilder) -> Result<Arc<dyn Network>> {
    let config = typed::<F>(settings)?;
    F::validate(&config)?;
    Ok(Arc::new(F::build(&config, vocab_size, b)?))
}
