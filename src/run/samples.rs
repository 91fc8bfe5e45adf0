//! Turning a model into text: one place that knows how each dataset kind is sampled, used
//! by training (samples at each evaluation) and by `convlm sample`.

use serde::Serialize;

use crate::data::{Dataset, DatasetKind, Split, Tokenizer};
use crate::error::{Error, Result};
use crate::generate::{generate_grid_on, generate_on, Engine, GenerateRequest, SamplingConfig};
use crate::models::Model;

/// Where a sampled line also occurs (line datasets), as makemore reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Novelty {
    InTrain,
    InTest,
    New,
}

impl Novelty {
    /// `in-train`, `in-test` or `new`, as makemore prints them.
    pub fn name(self) -> &'static str {
        match self {
            Novelty::InTrain => "in-train",
            Novelty::InTest => "in-test",
            Novelty::New => "new",
        }
    }
}

/// One generated sample.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    pub text: String,
    /// Only for line datasets.
    pub novelty: Option<Novelty>,
}

/// What to sample.
#[derive(Clone, Debug)]
pub struct SampleRequest {
    pub count: usize,
    /// Text the model consumes before sampling (after `<bos>` for line datasets).
    pub prompt: Option<String>,
    pub sampling: SamplingConfig,
}

/// Samples `req.count` texts. `kind` is the dataset kind of the run; `dataset` (when
/// available) marks line samples as in-train / in-test / new.
pub fn sample_texts(
    model: &Model,
    tokenizer: &Tokenizer,
    kind: DatasetKind,
    grid: Option<(usize, usize)>,
    dataset: Option<&Dataset>,
    req: &SampleRequest,
) -> Result<Vec<Sample>> {
    sample_texts_on(model, Engine::Cpu, tokenizer, kind, grid, dataset, req)
}

/// [`sample_texts`] generated on `engine` (a GPU holding the model's parameters, or the CPU).
pub fn sample_texts_on(
    model: &Model,
    engine: Engine<'_>,
    tokenizer: &Tokenizer,
    kind: DatasetKind,
    grid: Option<(usize, usize)>,
    dataset: Option<&Dataset>,
    req: &SampleRequest,
) -> Result<Vec<Sample>> {
    req.sampling.validate()?;
    let sp = tokenizer.specials();
    let prompt_ids = match &req.prompt {
        Some(p) => tokenizer.encode(p)?,
        None => Vec::new(),
    };
    let banned = vec![sp.pad, sp.bos, sp.unk];
    if kind == DatasetKind::Grid {
        let (h, w) = grid.ok_or_else(|| Error::config("model", "grid sampling needs the grid size"))?;
        let mut out = Vec::new();
        for i in 0..req.count {
            let mut cfg = req.sampling.clone();
            cfg.seed = cfg.seed.wrapping_add(i as u64);
            let cells = generate_grid_on(model, engine, h, w, &prompt_ids, &cfg, &[sp.bos, sp.eos, sp.unk])?;
            let rows: Vec<String> = cells.chunks(w).map(|r| tokenizer.decode(r).trim_end().to_string()).collect();
            out.push(Sample { text: rows.join("\n"), novelty: None });
        }
        return Ok(out);
    }
    let (prompts, stop, prefix) = match kind {
        DatasetKind::Lines => {
            let mut p = vec![sp.bos];
            p.extend(&prompt_ids);
            (vec![p; req.count], Some(sp.eos), req.prompt.clone().unwrap_or_default())
        }
        _ => {
            // A stream has no <bos>: start from the prompt, or from a newline when the
            // vocabulary has one, else from <bos> (never trained, but harmless).
            let start = if prompt_ids.is_empty() { tokenizer.encode("\n").ok().filter(|v| !v.is_empty()).unwrap_or(vec![sp.bos]) } else { prompt_ids.clone() };
            (vec![start; req.count], None, req.prompt.clone().unwrap_or_default())
        }
    };
    let request = GenerateRequest { prompts, stop, sampling: &req.sampling, banned };
    let generated = generate_on(model, engine, &request)?;
    Ok(generated
        .into_iter()
        .map(|ids| {
            let text = format!("{prefix}{}", tokenizer.decode(&ids));
            let novelty = match (kind, dataset) {
                (DatasetKind::Lines, Some(d)) => Some(if d.contains_line(Split::Train, &text) {
                    Novelty::InTrain
                } else if d.contains_line(Split::Test, &text) {
                    Novelty::InTest
                } else {
                    Novelty::New
                }),
                _ => None,
            };
            Sample { text, novelty }
        })
        .collect())
}
