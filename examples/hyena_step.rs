//! Times one W4 training step (bench/WORKLOADS.md "hyena-long"): the `hyena` family built
//! through the registry at V = 256, d_model 128, 4 layers, max_len 1024, on a batch of 4 ×
//! 1024 random tokens shifted right by one (start token 0), targets the tokens themselves;
//! one step = `Model::loss` (head fused with the loss) + backward + Adam (lr 1e-3).
//!
//!     cargo run --release --example hyena_step -- [steps] [warmup] [threads]
//!
//! Prints the median and minimum step time and the first and last loss. Runs with the
//! `convlm` binary's allocator (`src/big_alloc.rs`), as `convlm train` and `convlm bench` do:
//! with the system allocator alone, every step page-faults its activations back in.

use std::time::Instant;

use convlm::models::{Model, ModelConfig};
use convlm::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use convlm::tensor::threads::{init_threads, on_pool, with_workers_awake};
use convlm::tensor::Graph;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[path = "../src/big_alloc.rs"]
mod big_alloc;

#[global_allocator]
static GLOBAL: big_alloc::CachingAlloc = big_alloc::CachingAlloc;

const W4: &str = r#"{"family":"hyena","d_model":128,"n_layers":4,"max_len":1024,"mlp_ratio":4,
    "filter_emb_dim":3,"filter_width":64,"filter_inner":2}"#;
const VOCAB: usize = 256;
const BATCH: usize = 4;
const LEN: usize = 1024;

fn arg(i: usize, default: usize) -> anyhow::Result<usize> {
    Ok(match std::env::args().nth(i) {
        Some(s) => s.parse()?,
        None => default,
    })
}

fn main() -> anyhow::Result<()> {
    big_alloc::keep_freed_memory();
    big_alloc::cache_large_blocks();
    let (steps, warmup, threads) = (arg(1, 10)?.max(1), arg(2, 2)?, arg(3, 2)?);
    let threads = init_threads(Some(threads));
    let config: ModelConfig = serde_json::from_str(W4)?;
    let mut model = Model::new(&config, VOCAB, 0)?;
    anyhow::ensure!(model.params().numel() == 933_120, "W4 has 933,120 parameters, got {}", model.params().numel());

    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let tokens: Vec<u32> = (0..BATCH * LEN).map(|_| rng.gen_range(0..VOCAB as u32)).collect(); // (B, T)
    let ids: Vec<u32> = tokens.chunks(LEN).flat_map(|row| std::iter::once(0).chain(row[..LEN - 1].iter().copied())).collect();
    let targets: Vec<i64> = tokens.iter().map(|&t| t as i64).collect();
    let cfg = OptimizerConfig { kind: OptimizerKind::Adam, lr: 1e-3, weight_decay: 0.0, ..OptimizerConfig::default() };
    let mut opt = Optimizer::new(&cfg, model.params())?;

    let (times, losses) = on_pool(|| -> anyhow::Result<(Vec<f64>, Vec<f32>)> {
        let (mut times, mut losses) = (Vec::new(), Vec::new());
        for i in 0..warmup + steps {
            let t0 = Instant::now();
            let loss = with_workers_awake(|| -> anyhow::Result<f32> {
                model.params_mut().zero_grad();
                let mut g = Graph::new(true);
                let loss = model.loss(&mut g, &ids, &[BATCH, LEN], &targets)?;
                g.backward(loss)?;
                model.params_mut().accumulate_grads(&g);
                opt.step(model.params_mut(), cfg.lr);
                Ok(g.value(loss).data()[0])
            })?;
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            eprintln!("{} {i:3}: loss {loss:.4}  {ms:8.1} ms", if i < warmup { "warm-up" } else { "step   " });
            if i >= warmup {
                times.push(ms);
                losses.push(loss);
            }
        }
        Ok((times, losses))
    })?;
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 { sorted[n / 2] } else { 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]) };
    println!("W4 hyena: {median:.1} ms/step median, {:.1} min, over {n} steps ({threads} threads); loss {:.4} -> {:.4}", sorted[0], losses[0], losses[n - 1]);
    Ok(())
}
