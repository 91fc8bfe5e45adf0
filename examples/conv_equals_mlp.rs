//! Bengio's MLP *is* a causal convolution (the seed notebook's insight): train convlm's `mlp`
//! family (a causal conv of kernel block_size over embeddings) on names.txt with a
//! hand-written SGD loop, copy its weights into a plain dense MLP applied to explicit windows
//! of the 3 previous characters (makemore style), and check both give the same loss.
//!
//!     cargo run --release --example conv_equals_mlp

use convlm::models::{Model, ModelConfig};
use convlm::tensor::Graph;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const BLOCK: usize = 3; // context window
const E: usize = 10; // embedding width
const H: usize = 64; // hidden width
const V: usize = 27; // '.' + a..z

/// Characters to ids: '.' (name boundary) is 0, a..z are 1..=26.
fn encode(name: &str) -> anyhow::Result<Vec<u32>> {
    name.bytes()
        .map(|c| match c {
            b'a'..=b'z' => Ok((c - b'a' + 1) as u32),
            _ => anyhow::bail!("unexpected character {:?} in {name:?}", c as char),
        })
        .collect()
}

/// A batch of names as rows `x = ...name` and targets `-1 -1 name .`, padded (x 0, target -1)
/// to the longest row: position t sees x[t-2..=t], the makemore window, and predicts target t.
fn batch(names: &[Vec<u32>]) -> (Vec<u32>, Vec<i64>, [usize; 2]) {
    let len = names.iter().map(|n| n.len() + BLOCK).max().unwrap_or(BLOCK);
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for n in names {
        let row_x: Vec<u32> = std::iter::repeat_n(0, BLOCK).chain(n.iter().copied()).collect();
        let row_y: Vec<i64> = std::iter::repeat_n(-1, BLOCK - 1).chain(n.iter().map(|&c| c as i64)).chain([0]).collect();
        x.extend(row_x.iter().copied().chain(std::iter::repeat(0)).take(len)); // (B, T)
        y.extend(row_y.iter().copied().chain(std::iter::repeat(-1)).take(len)); // (B, T)
    }
    (x, y, [names.len(), len])
}

/// Mean cross entropy of the conv model (one eval-mode forward over the whole batch).
fn conv_loss(model: &mut Model, names: &[Vec<u32>]) -> anyhow::Result<f32> {
    let (x, y, shape) = batch(names);
    let mut g = Graph::new(false);
    let logits = model.forward(&mut g, &x, &shape)?; // (B, T, V)
    let loss = g.cross_entropy(logits, &y)?;
    Ok(g.value(loss).data()[0])
}

/// The same model as a dense MLP over explicit windows, in f64 with plain loops.
fn dense_loss(model: &Model, names: &[Vec<u32>]) -> anyhow::Result<f64> {
    let get = |name: &str| -> anyhow::Result<Vec<f64>> {
        let p = model.params().find(name).ok_or_else(|| anyhow::anyhow!("no parameter {name}"))?;
        Ok(p.value.data().iter().map(|&v| v as f64).collect())
    };
    let (emb, conv_w, conv_b, head_w, head_b) = (get("embedding.weight")?, get("hidden.weight")?, get("hidden.bias")?, get("head.weight")?, get("head.bias")?);
    // conv weight (H, E, BLOCK) -> dense W (H, BLOCK * E): W[h, j*E + e] = w[h, e, j].
    let mut w = vec![0.0f64; H * BLOCK * E];
    for h in 0..H {
        for e in 0..E {
            for j in 0..BLOCK {
                w[h * BLOCK * E + j * E + e] = conv_w[(h * E + e) * BLOCK + j];
            }
        }
    }
    let (mut total, mut count) = (0.0f64, 0usize);
    for name in names {
        let mut context = [0u32; BLOCK]; // oldest first, '.' padded
        for &target in name.iter().chain([0u32].iter()) {
            let input: Vec<f64> = context.iter().flat_map(|&c| emb[c as usize * E..(c as usize + 1) * E].iter().copied()).collect(); // (BLOCK*E,)
            let hidden: Vec<f64> = (0..H).map(|h| (conv_b[h] + (0..BLOCK * E).map(|i| w[h * BLOCK * E + i] * input[i]).sum::<f64>()).tanh()).collect(); // (H,)
            let logits: Vec<f64> = (0..V).map(|v| head_b[v] + (0..H).map(|h| head_w[v * H + h] * hidden[h]).sum::<f64>()).collect(); // (V,)
            let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = max + logits.iter().map(|l| (l - max).exp()).sum::<f64>().ln();
            total += lse - logits[target as usize];
            count += 1;
            context.rotate_left(1);
            context[BLOCK - 1] = target;
        }
    }
    Ok(total / count as f64)
}

fn main() -> anyhow::Result<()> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/names.txt");
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
    let mut names = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(encode).collect::<anyhow::Result<Vec<_>>>()?;
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    names.shuffle(&mut rng);
    let (train, held_out) = names.split_at(names.len() - 2000);
    println!("{} names: {} to train, {} held out", names.len(), train.len(), held_out.len());

    let config = ModelConfig::from_json(&format!(r#"{{"family":"mlp","block_size":{BLOCK},"n_embd":{E},"n_hidden":{H}}}"#), std::path::Path::new("<example>"))?;
    let mut model = Model::new(&config, V, 0)?;
    let (steps, batch_size) = (1500, 32);
    for step in 0..steps {
        let idx: Vec<Vec<u32>> = (0..batch_size).map(|_| train[rng.gen_range(0..train.len())].clone()).collect();
        let (x, y, shape) = batch(&idx);
        let mut g = Graph::new(true);
        let logits = model.forward(&mut g, &x, &shape)?;
        let loss = g.cross_entropy(logits, &y)?;
        g.backward(loss)?;
        model.params_mut().zero_grad();
        model.params_mut().accumulate_grads(&g);
        let lr = if step < steps * 2 / 3 { 0.1 } else { 0.01 };
        for p in model.params_mut().params_mut() {
            let grad = p.grad.data().to_vec();
            p.value.data_mut().iter_mut().zip(grad).for_each(|(w, g)| *w -= lr * g);
        }
        if step % 300 == 0 || step + 1 == steps {
            println!("step {step:5}  train loss {:.4}", g.value(loss).data()[0]);
        }
    }

    let conv = conv_loss(&mut model, held_out)?;
    let dense = dense_loss(&model, held_out)?;
    println!("held-out loss, causal conv (kernel {BLOCK}) over whole names: {conv:.7}");
    println!("held-out loss, dense MLP over explicit {BLOCK}-char windows:  {dense:.7}");
    println!("difference: {:.2e}", (conv as f64 - dense).abs());
    assert!((conv as f64 - dense).abs() < 1e-6, "the conv and the sliding-window MLP disagree");
    Ok(())
}
