//! The kernel choices measured on this CPU (`tensor::tune`), cached per CPU model in
//! `<cache>/cpu-tuning/<model>.json` (the corpus cache's folder: `$CONVLM_CACHE`, else
//! `~/.cache/convlm`), so each machine measures once. A run records the choices it trained
//! with in its state, and a resume installs those, not the cache's: the same kernels, the
//! same bits.

use std::path::PathBuf;

use crate::io::{atomic_write, read_json};
use crate::tensor::cpu;
use crate::tensor::tune::{self, Tuning};

/// What the cache file holds.
#[derive(serde::Serialize, serde::Deserialize)]
struct Cached {
    cpu: String,
    /// [`CANDIDATES`] when measured (0 in files from before it was written).
    #[serde(default)]
    candidates: u32,
    tuning: Tuning,
}

/// The version of the set of candidates `tune::measure` chooses from: a cache measured
/// among others is measured again (2: the crate's products come with zgemm's fused head).
const CANDIDATES: u32 = 2;

/// The cache file of this CPU model.
fn cache_file() -> PathBuf {
    let model = cpu::model_name();
    let slug: String = model.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    super::prepare::cache_root().join("cpu-tuning").join(format!("{}.json", slug.trim_matches('-')))
}

/// This CPU's tuning: from the cache, or measured now (about a second) and cached. A cache
/// that cannot be read or written only costs the measurement.
pub fn for_this_cpu() -> Tuning {
    let path = cache_file();
    if let Ok(cached) = read_json::<Cached>(&path) {
        if cached.cpu == cpu::model_name() && cached.candidates == CANDIDATES {
            return cached.tuning;
        }
    }
    let tuning = tune::measure();
    let cached = Cached { cpu: cpu::model_name(), candidates: CANDIDATES, tuning };
    if let (Some(dir), Ok(bytes)) = (path.parent(), serde_json::to_vec_pretty(&cached)) {
        let _ = std::fs::create_dir_all(dir).map(|_| atomic_write(&path, &bytes));
    }
    tuning
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_file_is_named_after_the_cpu_model() {
        let name = cache_file();
        let file = name.file_name().unwrap().to_str().unwrap();
        assert!(file.ends_with(".json") && !file.contains(' ') && !file.contains('(') && file.len() > 5, "{file}");
        assert_eq!(name.parent().unwrap().file_name().unwrap(), "cpu-tuning");
    }
}
