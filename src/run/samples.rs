//! Turning a model into text: one place that knows how each dataset kind is sampled, used
//! by training (samples at each evaluation) and by `convlm sample`.

use serde::Serialize;

use crate::data::{Dataset, DatasetKind, Split, Tokenizer};
use crate::error::{Error, Result};
use crate::generate::{generate, generate_grid, GenerateRequest, SamplingConfig};
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
            let cells = generate_grid(model, h, w, &prompt_ids, &cfg, &[sp.bos, sp.eos, sp.unk])?;
            let rows: Vec<String> = cells.chunks(w).map(|r| tokenizer.decode(r).trim_end().to_string()).collect();
            out.push(Sample { text: rows.join("\n"), novelty: None });
        }
        return Ok(out);
    }
    let prompts = match kind {
        DatasetKind::Lines => {
            let mut p = vec![sp.bos];
            p.extend(&prompt_ids);
            vec![p; req.count]
        }
        _ => {
            // A stream has no <bos>: start from the prompt, or from a newline when the
            // vocabulary has one, else from <bos> (never trained, but harmless).
            let start = if prompt_ids.is_empty() { tokenizer.encode("\n").ok().filter(|v| !v.is_empty()).unwrap_or(vec![sp.bos]) } else { prompt_ids.clone() };
            vec![start; req.count]
        }
    };
    let stop = (kind == DatasetKind::Lines).then_some(sp.eos);
    let prefix = req.prompt.clone().unwrap_or_default();
    let request = GenerateRequest { prompts, stop, sampling: &req.sampling, banned };
    let generated = generate(model, &request)?;
    Ok(generated
        .into_iter()
        .map(|ids| {
            let text = format!("{prefix}{}", decode_continuation(tokenizer, &prompt_ids, &ids));
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

/// The text that `generated` adds after `prompt_ids`, decoded in context: a decoder that
/// treats a sequence's first token specially (`Metaspace` drops its leading space) or a
/// character split across the boundary (byte-level BPE) would read wrong decoded alone.
/// Falls back to `generated` decoded alone when the prompt's text does not begin the whole.
pub fn decode_continuation(tokenizer: &Tokenizer, prompt_ids: &[u32], generated: &[u32]) -> String {
    if prompt_ids.is_empty() {
        return tokenizer.decode(generated);
    }
    let head = tokenizer.decode(prompt_ids);
    let whole = tokenizer.decode(&[prompt_ids, generated].concat());
    match whole.strip_prefix(head.as_str()) {
        Some(rest) => rest.to_string(),
        None => tokenizer.decode(generated),
    }
}
