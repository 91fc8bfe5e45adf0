//! The plots of a run directory: `loss.svg` from its metrics and `embeddings.svg` from its
//! best (or last) weights, drawn by [`crate::report`] and written atomically.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::io::atomic_write;
use crate::report::{embeddings_svg, loss_curves_svg, pca2, series, visible_token, NO_RECORDS};
use crate::run::checkpoint::{RunDir, BEST_FILE, METRICS_FILE, MODEL_FILE, PLOT_FILE};
use crate::run::metrics::read_records_skipping;

/// File name of the embedding plot inside a run directory.
pub const EMBEDDINGS_PLOT_FILE: &str = "embeddings.svg";

/// Name of the parameter holding the (V, E) token embedding table in every family.
pub const EMBEDDING_PARAM: &str = "embedding.weight";

/// The run directory's own name, for titles.
fn run_name(run: &RunDir) -> String {
    run.root().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| run.root().display().to_string())
}

/// A loss plot written by [`plot_run`].
#[derive(Clone, Debug)]
pub struct LossPlot {
    /// Where it was written (`loss.svg` in the run directory).
    pub path: PathBuf,
    /// Lines of metrics.jsonl that could not be read and were left out, in words.
    pub skipped: Vec<String>,
}

/// Writes loss.svg into the run directory from its metrics.jsonl.
///
/// A missing metrics file, or one without any training or validation record, is an error
/// naming the file ("no training records yet"); a damaged line is left out of the plot and
/// reported in [`LossPlot::skipped`].
pub fn plot_run(run: &RunDir) -> Result<LossPlot> {
    let metrics = run.file(METRICS_FILE);
    if !metrics.is_file() {
        return Err(Error::bad_file(&metrics, format!("{NO_RECORDS} (the file does not exist)")));
    }
    let (records, skipped) = read_records_skipping(&metrics)?;
    if series(&records, "loss").is_empty() && series(&records, "val_loss").is_empty() {
        return Err(Error::bad_file(&metrics, NO_RECORDS));
    }
    let family = run.load_config().map(|c| format!(" ({})", c.model.family())).unwrap_or_default();
    let svg = loss_curves_svg(&records, &format!("{}{family}: loss", run_name(run)))?;
    let out = run.file(PLOT_FILE);
    atomic_write(&out, svg.as_bytes())?;
    Ok(LossPlot { path: out, skipped })
}

/// Writes embeddings.svg (2-D PCA of the token embedding table, every token labelled with its
/// text) for the run's best model (best.safetensors), else its latest (model.safetensors),
/// and returns its path. Errors name the missing or unusable file.
pub fn plot_embeddings(run: &RunDir) -> Result<PathBuf> {
    let config = run.load_config()?;
    let tokenizer = run.load_tokenizer()?;
    let weights = if run.file(BEST_FILE).is_file() { BEST_FILE } else { MODEL_FILE };
    let model = run.load_model(weights, &config, &tokenizer)?;
    let table = &model
        .params()
        .find(EMBEDDING_PARAM)
        .ok_or_else(|| Error::bad_file(run.file(weights), format!("the {} model has no {EMBEDDING_PARAM}", config.model.family())))?
        .value;
    let pca = pca2(table)?;
    let specials = tokenizer.specials();
    let ids = 0..pca.points.len() as u32;
    let labels: Vec<String> = ids.clone().map(|id| visible_token(&tokenizer.token_text(id))).collect();
    let is_special: Vec<bool> = ids.map(|id| specials.contains(id)).collect();
    let total = pca.total_variance;
    let title = format!(
        "{}: token embeddings of {weights} ({}), PCA{}",
        run_name(run),
        config.model.family(),
        if total > 0.0 {
            format!(", {:.0}% + {:.0}% of the variance", 100.0 * pca.variances[0] / total, 100.0 * pca.variances[1] / total)
        } else {
            String::new()
        }
    );
    let svg = embeddings_svg(&pca.points, &labels, &is_special, &title)?;
    let out = run.file(EMBEDDINGS_PLOT_FILE);
    atomic_write(&out, svg.as_bytes())?;
    Ok(out)
}
