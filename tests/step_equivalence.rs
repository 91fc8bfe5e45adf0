//! Incremental generation equals the full forward: for random weights and random prompts,
//! feeding a batch of sequences one token at a time through `Model::step` gives, at every
//! position, the eval-mode logits of `Model::forward` on the whole sequences.
//!
//! Tolerance: |step - forward| <= 1e-5 + 1e-5 · |forward| for every logit (the two paths sum
//! the same products in different orders in f32). Sequences run for twice the receptive field
//! plus a few positions, so every ring buffer wraps around more than once.

use std::path::Path;

use convlm::models::{Model, ModelConfig};
use convlm::tensor::Graph;
use convlm::Tensor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const VOCAB: usize = 17;
const BATCH: usize = 3;
const ATOL: f32 = 1e-5;
const RTOL: f32 = 1e-5;

fn config(json: &str) -> ModelConfig {
    ModelConfig::from_json(json, Path::new("<test>")).unwrap()
}

/// Checks step ≡ forward for the model described by `json` (weights drawn from `seed`).
fn check(json: &str, seed: u64) {
    let mut model = Model::new(&config(json), VOCAB, seed).unwrap();
    check_model(json, &mut model, seed);
}

fn check_model(what: &str, model: &mut Model, seed: u64) {
    let len = 2 * model.receptive_field() + 3;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    let ids: Vec<u32> = (0..BATCH * len).map(|_| rng.gen_range(0..VOCAB as u32)).collect(); // (B, T)
    let mut g = Graph::new(false);
    let full = model.forward(&mut g, &ids, &[BATCH, len]).unwrap();
    let full = g.value(full).data().to_vec(); // (B, T, V)

    let mut state = model.new_state(BATCH);
    for t in 0..len {
        let column: Vec<u32> = (0..BATCH).map(|b| ids[b * len + t]).collect();
        let out = model.step(&mut state, &column).unwrap(); // (B, V)
        assert_eq!(out.shape(), &[BATCH, VOCAB]);
        for b in 0..BATCH {
            let want = &full[(b * len + t) * VOCAB..(b * len + t + 1) * VOCAB];
            let got = &out.data()[b * VOCAB..(b + 1) * VOCAB];
            for (v, (g, w)) in got.iter().zip(want).enumerate() {
                assert!((g - w).abs() <= ATOL + RTOL * w.abs(), "{what}: sequence {b}, position {t}, logit {v}: step gives {g}, forward {w}");
            }
        }
    }
    assert_eq!(state.position, len);
}

#[test]
fn mlp_step_matches_forward() {
    for block in 1..=5 {
        check(&format!(r#"{{"family":"mlp","block_size":{block},"n_embd":6,"n_hidden":20}}"#), block as u64);
    }
}

#[test]
fn causal_cnn_step_matches_forward() {
    for k in 1..=5 {
        for (n, act) in [(0, "relu"), (3, "relu"), (2, "gelu")] {
            let json = format!(r#"{{"family":"causal-cnn","n_embd":8,"channels":12,"kernel_size":{k},"n_layers":{n},"activation":"{act}"}}"#);
            check(&json, k as u64);
        }
    }
}

#[test]
fn dilated_step_matches_forward() {
    for k in 1..=5 {
        for dil in ["[1,3,16]", "[1,2,4,8,16]", "[16]"] {
            let json = format!(r#"{{"family":"dilated","n_embd":6,"channels":10,"kernel_size":{k},"dilations":{dil}}}"#);
            check(&json, 10 + k as u64);
        }
    }
}

/// Sets BatchNorm affine parameters to random values and moves the running statistics away
/// from (0, 1) with training-mode forwards on random data.
fn nontrivial_batchnorm(model: &mut Model, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let sd: Vec<(String, Tensor)> = model
        .state_dict()
        .into_iter()
        .map(|(name, t)| {
            if !name.starts_with("norms.") || name.contains("running") {
                return (name, t);
            }
            let (lo, hi) = if name.ends_with("weight") { (0.5, 1.5) } else { (-0.5, 0.5) };
            let data = (0..t.numel()).map(|_| rng.gen_range(lo..hi)).collect();
            (name, Tensor::new(t.shape().to_vec(), data).unwrap())
        })
        .collect();
    model.load_state_dict(sd, Path::new("<random bn>")).unwrap();
    for _ in 0..3 {
        let ids: Vec<u32> = (0..4 * 20).map(|_| rng.gen_range(0..VOCAB as u32)).collect();
        model.forward(&mut Graph::new(true), &ids, &[4, 20]).unwrap();
    }
    for (name, t) in model.buffers().named() {
        let trivial = if name.ends_with("running_mean") { 0.0 } else { 1.0 };
        assert!(t.data().iter().any(|&v| (v - trivial).abs() > 1e-3), "{name} stayed at its initial value");
    }
}

#[test]
fn hierarchical_step_matches_eval_forward_with_running_statistics() {
    for block in [2, 4, 8, 16, 32] {
        for bn in [true, false] {
            let json = format!(r#"{{"family":"hierarchical","block_size":{block},"n_embd":6,"n_hidden":12,"batchnorm":{bn},"bn_momentum":0.5}}"#);
            let mut model = Model::new(&config(&json), VOCAB, block as u64).unwrap();
            if bn {
                nontrivial_batchnorm(&mut model, block as u64);
            }
            check_model(&json, &mut model, block as u64);
        }
    }
}

#[test]
fn wavenet_step_matches_forward() {
    for k in 1..=5 {
        // n_layers 5: dilations 1, 2, 4, 8, 16.
        let json =
            format!(r#"{{"family":"wavenet","residual_channels":8,"dilation_channels":6,"skip_channels":12,"kernel_size":{k},"n_layers":5,"n_stacks":1}}"#);
        check(&json, 20 + k as u64);
    }
    let json = r#"{"family":"wavenet","residual_channels":8,"dilation_channels":6,"skip_channels":12,"kernel_size":3,"n_layers":3,"n_stacks":2}"#;
    check(json, 30);
}

#[test]
fn gated_cnn_step_matches_forward() {
    for k in 1..=5 {
        for (e, blocks, per) in [(8, 2, 2), (5, 1, 3)] {
            let json = format!(r#"{{"family":"gated-cnn","n_embd":{e},"channels":8,"kernel_size":{k},"n_blocks":{blocks},"layers_per_block":{per}}}"#);
            check(&json, 40 + k as u64);
        }
    }
}

#[test]
fn two_states_of_one_model_are_independent() {
    let model = Model::new(&config(r#"{"family":"dilated","n_embd":4,"channels":6,"kernel_size":3,"dilations":[1,2]}"#), VOCAB, 1).unwrap();
    let (mut a, mut b) = (model.new_state(1), model.new_state(1));
    let first = model.step(&mut a, &[3]).unwrap();
    model.step(&mut a, &[5]).unwrap();
    assert_eq!(model.step(&mut b, &[3]).unwrap(), first, "a fresh state starts from empty history");
}

#[test]
fn step_rejects_bad_input_clearly() {
    let model = Model::new(&config(r#"{"family":"mlp"}"#), VOCAB, 0).unwrap();
    let mut state = model.new_state(2);
    let err = model.step(&mut state, &[1]).unwrap_err().to_string();
    assert!(err.contains("1 ids for a batch of 2"), "{err}");
    let err = model.step(&mut state, &[1, VOCAB as u32]).unwrap_err().to_string();
    assert!(err.contains("outside the vocabulary"), "{err}");
    assert_eq!(state.position, 0, "a failed step must not advance the state");
}

#[test]
fn pixelcnn_has_no_step() {
    let model = Model::new(&config(r#"{"family":"pixelcnn","n_embd":4,"channels":6,"kernel_size":3,"n_layers":2}"#), VOCAB, 0).unwrap();
    assert!(!model.can_step());
    let mut state = model.new_state(1);
    let err = model.step(&mut state, &[0]).unwrap_err().to_string();
    assert!(err.contains("pixelcnn") && err.contains("no incremental step"), "{err}");
}

/// Hyena: step ≡ forward at every position up to max_len, the whole sequence at once and a
/// shorter one (whose forward generates its filter for fewer taps); max_len 150 takes the
/// forward's FFT path (kernels::long_conv::FFT_MIN_LEN = 128), the others its direct sum.
fn check_hyena(json: &str, seed: u64) {
    let mut model = Model::new(&config(json), VOCAB, seed).unwrap();
    let max_len = model.max_len().expect("hyena has a context limit");
    assert_eq!(model.receptive_field(), max_len);
    for len in [max_len, max_len / 2 + 1] {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ len as u64);
        let ids: Vec<u32> = (0..BATCH * len).map(|_| rng.gen_range(0..VOCAB as u32)).collect(); // (B, T)
        let mut g = Graph::new(false);
        let full = model.forward(&mut g, &ids, &[BATCH, len]).unwrap();
        let full = g.value(full).data().to_vec(); // (B, T, V)
        let mut state = model.new_state(BATCH);
        let mut worst = 0.0f32;
        for t in 0..len {
            let column: Vec<u32> = (0..BATCH).map(|b| ids[b * len + t]).collect();
            let out = model.step(&mut state, &column).unwrap(); // (B, V)
            for b in 0..BATCH {
                let want = &full[(b * len + t) * VOCAB..(b * len + t + 1) * VOCAB];
                for (v, (g, w)) in out.data()[b * VOCAB..(b + 1) * VOCAB].iter().zip(want).enumerate() {
                    worst = worst.max((g - w).abs());
                    assert!((g - w).abs() <= ATOL + RTOL * w.abs(), "{json}: sequence {b}, position {t}, logit {v}: step gives {g}, forward {w}");
                }
            }
        }
        eprintln!("{json} len {len}: worst |step - forward| {worst:.2e}");
        if len == max_len {
            let err = model.step(&mut state, &[0; BATCH]).unwrap_err().to_string();
            assert!(err.contains(&format!("at most {max_len} tokens")), "{err}");
            assert_eq!(state.position, max_len, "a refused step must not advance the state");
        }
    }
    let ids = vec![0u32; max_len + 1];
    let err = model.forward(&mut Graph::new(false), &ids, &[1, max_len + 1]).unwrap_err().to_string();
    assert!(err.contains(&format!("at most {max_len} tokens")), "{err}");
}

#[test]
fn hyena_step_matches_forward_up_to_max_len() {
    // The golden file's configuration, the reference defaults at a small width, and a
    // context long enough for the forward's FFT.
    check_hyena(r#"{"family":"hyena","d_model":8,"n_layers":2,"max_len":16,"mlp_ratio":2,"filter_emb_dim":5,"filter_width":6,"filter_inner":1}"#, 50);
    check_hyena(r#"{"family":"hyena","d_model":12,"n_layers":3,"max_len":40,"filter_width":16,"filter_inner":0,"filter_freq":2.5}"#, 51);
    check_hyena(r#"{"family":"hyena","d_model":16,"n_layers":2,"max_len":150,"filter_width":8}"#, 52);
}

#[test]
fn hyena_step_after_a_refused_id_continues_where_it_was() {
    let json = r#"{"family":"hyena","d_model":8,"n_layers":2,"max_len":12,"filter_width":6}"#;
    let model = Model::new(&config(json), VOCAB, 3).unwrap();
    let (mut a, mut b) = (model.new_state(1), model.new_state(1));
    for &id in &[3u32, 5, 7] {
        model.step(&mut a, &[id]).unwrap();
    }
    model.step(&mut b, &[3]).unwrap();
    model.step(&mut b, &[5]).unwrap();
    assert!(model.step(&mut b, &[VOCAB as u32]).is_err(), "an id outside the vocabulary is refused");
    model.step(&mut b, &[7]).unwrap();
    assert_eq!(model.step(&mut a, &[1]).unwrap(), model.step(&mut b, &[1]).unwrap());
}
