//! Generation for sequence families: cached ([`generate`]) and full-recompute
//! ([`generate_naive`]), driven by the same lockstep loop so they consume randomness in the
//! same order.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::sampling::sample_token;
use super::{Engine, GenerateRequest};
use crate::error::{Error, Result};
use crate::models::Model;
use crate::tensor::Graph;

/// Generates one sample per prompt with the incremental [`Model::step`], all samples batched.
///
/// At step `t` every sequence is fed its token `t` (from its prompt while the prompt lasts,
/// then its own last sampled token); a sequence samples once its prompt is exhausted, and is
/// finished when it samples `stop` or reaches `max_tokens` new tokens, while the others go on.
/// A model with a context limit ([`Model::max_len`], e.g. Hyena's) also finishes a sequence
/// once it holds max_len + 1 tokens: the last one was predicted from a full context, and no
/// position is left to feed it at. Returns the generated tokens only (no prompt, no stop
/// token).
pub fn generate(model: &Model, req: &GenerateRequest) -> Result<Vec<Vec<u32>>> {
    generate_on(model, Engine::Cpu, req)
}

/// [`generate`] on `engine`: the CPU engine, or a GPU holding the model's parameters (the
/// layers' histories then stay on the device; per token the ids go up and the logits come
/// back, and the sampling is the same code, so greedy decoding gives the CPU's tokens up to
/// logits that tie within rounding).
pub fn generate_on(model: &Model, engine: Engine<'_>, req: &GenerateRequest) -> Result<Vec<Vec<u32>>> {
    match engine {
        // On a pool worker a layer split over the pool keeps one half on this thread instead
        // of handing both halves to sleeping workers (the W1 head is split once per token).
        Engine::Cpu => crate::tensor::threads::on_pool(|| {
            let mut state = model.new_state(req.prompts.len());
            lockstep(model, req, &mut |ids| model.step(&mut state, ids))
        }),
        #[cfg(feature = "gpu")]
        Engine::Gpu(params) => {
            let mut state = model.new_device_state(req.prompts.len());
            lockstep(model, req, &mut |ids| model.step_on_device(params, &mut state, ids))
        }
    }
}

/// The cached generation loop over `step` (ids of every sequence → logits (B, V)).
fn lockstep(model: &Model, req: &GenerateRequest, step: &mut dyn FnMut(&[u32]) -> Result<crate::tensor::Tensor>) -> Result<Vec<Vec<u32>>> {
    let mut run = Lockstep::new(model, req)?;
    let vocab = model.vocab_size();
    let mut t = 0;
    while !run.all_done() {
        run.check_cancel()?;
        let ids = run.inputs(t);
        let logits = step(&ids)?;
        for (i, row) in logits.data().chunks(vocab).enumerate() {
            if run.wants_sample(i, t) {
                run.accept(i, row);
            }
        }
        t += 1;
    }
    Ok(run.into_outputs())
}

/// Generates the same samples as [`generate`] by running the full forward pass (eval mode) over
/// each sequence so far for every new token: O(T) work per token, O(T²) per sample. Used as the
/// reference and the baseline of [`super::bench_generation`].
pub fn generate_naive(model: &Model, req: &GenerateRequest) -> Result<Vec<Vec<u32>>> {
    let mut run = Lockstep::new(model, req)?;
    // `forward` takes `&mut` because training mode updates BatchNorm statistics; eval mode
    // leaves them alone, so a private copy keeps the caller's model untouched.
    let mut model = model.clone();
    let vocab = model.vocab_size();
    let mut t = 0;
    while !run.all_done() {
        run.check_cancel()?;
        for i in 0..run.seqs.len() {
            if !run.wants_sample(i, t) {
                continue;
            }
            let context = run.seqs[i].tokens[..=t].to_vec();
            let mut graph = Graph::new(false);
            let logits = model.forward(&mut graph, &context, &[1, t + 1])?;
            let data = graph.value(logits).data();
            let last = data.get(t * vocab..(t + 1) * vocab).ok_or_else(|| Error::shape("generate", "logits shorter than the sequence"))?;
            run.accept(i, last);
        }
        t += 1;
    }
    Ok(run.into_outputs())
}

/// One sample in progress.
struct Seq {
    /// Prompt followed by the tokens sampled so far.
    tokens: Vec<u32>,
    prompt_len: usize,
    done: bool,
    rng: ChaCha8Rng,
}

/// The shared bookkeeping of both generation paths.
struct Lockstep<'r, 'a> {
    req: &'r GenerateRequest<'a>,
    seqs: Vec<Seq>,
    banned: Vec<bool>,
    scratch: Vec<f32>,
    /// Most tokens a sequence may hold (prompt included): max_len + 1 for models with a
    /// context limit.
    limit: usize,
}

impl<'r, 'a> Lockstep<'r, 'a> {
    /// Validates the request against the model and sets up one RNG stream per sample.
    fn new(model: &Model, req: &'r GenerateRequest<'a>) -> Result<Self> {
        req.sampling.validate()?;
        if !model.can_step() {
            return Err(Error::config("model", format!("{} generates grids: use generate_grid", model.config().family())));
        }
        let vocab = model.vocab_size();
        let check = |what: &str, id: u32| {
            if id as usize >= vocab {
                Err(Error::config(what, format!("token id {id} is outside the vocabulary of {vocab}")))
            } else {
                Ok(())
            }
        };
        let mut banned = vec![false; vocab];
        for &id in &req.banned {
            check("banned", id)?;
            banned[id as usize] = true;
        }
        if banned.iter().all(|&b| b) {
            return Err(Error::config("banned", "every token of the vocabulary is banned"));
        }
        if let Some(stop) = req.stop {
            check("stop", stop)?;
        }
        let limit = model.max_len().map_or(usize::MAX, |m| m.saturating_add(1));
        let mut seqs = Vec::with_capacity(req.prompts.len());
        for (i, prompt) in req.prompts.iter().enumerate() {
            if prompt.is_empty() {
                return Err(Error::config("prompt", format!("prompt {i} is empty (put <bos> first)")));
            }
            if prompt.len() >= limit {
                let family = model.config().family();
                return Err(Error::config("prompt", format!("prompt {i} has {} tokens; {family} reads at most {} tokens", prompt.len(), limit - 1)));
            }
            for &id in prompt {
                check("prompt", id)?;
            }
            let mut rng = ChaCha8Rng::seed_from_u64(req.sampling.seed);
            rng.set_stream(i as u64);
            let done = req.sampling.max_tokens == 0;
            seqs.push(Seq { tokens: prompt.clone(), prompt_len: prompt.len(), done, rng });
        }
        Ok(Lockstep { req, seqs, banned, scratch: vec![0.0; vocab], limit })
    }

    /// `Err(Cancelled)` once the request's token is cancelled.
    fn check_cancel(&self) -> Result<()> {
        self.req.cancel.as_ref().map_or(Ok(()), |c| c.check())
    }

    fn all_done(&self) -> bool {
        self.seqs.iter().all(|s| s.done)
    }

    /// The token every sequence is fed at step `t` (finished sequences repeat their last one;
    /// their logits are ignored).
    fn inputs(&self, t: usize) -> Vec<u32> {
        self.seqs.iter().map(|s| s.tokens.get(t).or(s.tokens.last()).copied().unwrap_or(0)).collect()
    }

    /// Whether sequence `i` samples from the logits produced by feeding its token `t`: it is
    /// running, and token `t` is its last known token (the prompt is consumed).
    fn wants_sample(&self, i: usize, t: usize) -> bool {
        let s = &self.seqs[i];
        !s.done && t + 1 == s.tokens.len() && t + 1 >= s.prompt_len
    }

    /// Samples the next token of sequence `i` from `logits` and records it (or finishes).
    fn accept(&mut self, i: usize, logits: &[f32]) {
        self.scratch.copy_from_slice(logits);
        for (v, &b) in self.scratch.iter_mut().zip(&self.banned) {
            if b {
                *v = f32::NEG_INFINITY;
            }
        }
        let s = &mut self.seqs[i];
        let id = sample_token(&self.scratch, self.req.sampling, &mut s.rng);
        if Some(id) == self.req.stop {
            s.done = true;
            return;
        }
        s.tokens.push(id);
        if s.tokens.len() - s.prompt_len >= self.req.sampling.max_tokens || s.tokens.len() >= self.limit {
            s.done = true;
        }
    }

    fn into_outputs(self) -> Vec<Vec<u32>> {
        self.seqs.into_iter().map(|s| s.tokens[s.prompt_len..].to_vec()).collect()
    }
}
