//! Turning a model into text: one place that knows how each dataset kind is sampled, used
//! by training (samples at each evaluation) and by `convlm sample`.

use serde::Serialize;

use crate::cancel::CancelToken;
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
    /// Stops sampling between tokens (and grids) with [`Error::Cancelled`].
    pub cancel: Option<CancelToken>,
}

/// What a request will do that its asker may not expect, in words (for warnings): prompt
/// characters outside the vocabulary (read as `<unk>`), and samples that a model's context
/// ends before `max_tokens`.
pub fn request_notes(model: &Model, tokenizer: &Tokenizer, kind: DatasetKind, req: &SampleRequest) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    let unk = tokenizer.specials().unk;
    let mut prompt_len = usize::from(kind == DatasetKind::Lines);
    if let Some(prompt) = &req.prompt {
        prompt_len += tokenizer.encode(prompt)?.len();
        let mut unknown: Vec<char> = Vec::new();
        for c in prompt.chars() {
            if !unknown.contains(&c) && tokenizer.encode(&c.to_string())?.contains(&unk) {
                unknown.push(c);
            }
        }
        if !unknown.is_empty() {
            let shown: Vec<String> = unknown.iter().take(10).map(|c| format!("{c:?}")).collect();
            notes.push(format!(
                "the prompt has {} character(s) outside the run's vocabulary ({}{}): the model reads each as {}",
                unknown.len(),
                shown.join(", "),
                if unknown.len() > 10 { ", …" } else { "" },
                crate::data::UNK
            ));
        }
    }
    if let (Some(max), false) = (model.max_len(), kind == DatasetKind::Grid) {
        // A sample ends once it holds max_len + 1 tokens (see `generate`).
        let room = (max + 1).saturating_sub(prompt_len);
        if req.sampling.max_tokens > room {
            notes.push(format!(
                "the {} model reads at most {max} tokens: samples end after {room} new tokens, not --max-tokens {}",
                model.config().family(),
                req.sampling.max_tokens
            ));
        }
    }
    Ok(notes)
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
    if kind != DatasetKind::Grid && req.sampling.max_tokens == 0 {
        return Err(Error::config("--max-tokens", "must be at least 1 (0 would give empty samples)"));
    }
    let per_sample = match (kind, grid) {
        (DatasetKind::Grid, Some((h, w))) => h.saturating_mul(w),
        _ => req.sampling.max_tokens.saturating_add(req.prompt.as_ref().map_or(1, |p| p.len() + 1)),
    };
    let bytes = crate::run::memory::estimate_generation(model, req.count, per_sample);
    let what = format!("sampling {} texts of up to {per_sample} tokens", req.count);
    crate::run::memory::check_bytes(&what, bytes, "lower -n or --max-tokens", crate::run::memory::available())?;
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
            if let Some(c) = &req.cancel {
                c.check()?;
            }
            let mut cfg = req.sampling.clone();
            cfg.seed = cfg.seed.wrapping_add(i as u64);
            let cells = generate_grid_on(model, engine, h, w, &prompt_ids, &cfg, &[sp.bos, sp.eos, sp.unk])?;
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
    let request = GenerateRequest { prompts, stop, sampling: &req.sampling, banned, cancel: req.cancel.clone() };
    let generated = generate_on(model, engine, &request)?;
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
