//! Causality and receptive field of every family, measured by perturbation: with random
//! weights and random tokens, change one token and see which logits move.
//!
//! Sequence families: changing token p never changes a logit at a position < p (bit-exact)
//! nor anything in another sequence of the batch; it always changes the logits at p; and the
//! set of offsets s - p at which logits change is exactly the Minkowski sum of the taps
//! {0, d, …, (k-1)·d} of the causal convs along the network (so a dilated stack shows its
//! holes), whose maximum + 1 is `receptive_field()`.
//!
//! PixelCNN: changing cell (i, j) never changes logits at raster positions ≤ (i, j); on row i
//! it changes exactly the cells (i, j+1 ..= j + (k/2)·n_layers); and 1 + the largest number
//! of rows below i that it reaches is `receptive_field()` (rows of context, current included).

use std::collections::BTreeSet;
use std::path::Path;

use convlm::models::{CausalCnn, Dilated, GatedCnn, Hierarchical, Mlp, Model, ModelConfig, WaveNet};
use convlm::tensor::Graph;
use convlm::Tensor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const VOCAB: usize = 11;

fn config(json: &str) -> ModelConfig {
    ModelConfig::from_json(json, Path::new("<test>")).unwrap()
}

/// Logits of one forward as a flat vector (B, T, V) or (B, H, W, V).
fn logits(model: &mut Model, ids: &[u32], shape: &[usize], training: bool) -> Vec<f32> {
    let mut g = Graph::new(training);
    let out = model.forward(&mut g, ids, shape).unwrap();
    g.value(out).data().to_vec()
}

/// Random batchnorm running statistics and affine parameters, so eval-mode BN is no identity.
fn randomize_batchnorm(model: &mut Model, rng: &mut ChaCha8Rng) {
    let sd: Vec<(String, Tensor)> = model
        .state_dict()
        .into_iter()
        .map(|(name, t)| {
            let (lo, hi) = if name.ends_with("running_var") || (name.starts_with("norms.") && name.ends_with("weight")) {
                (0.5, 2.0)
            } else if name.ends_with("running_mean") || name.starts_with("norms.") {
                (-0.5, 0.5)
            } else {
                return (name, t);
            };
            let data = (0..t.numel()).map(|_| rng.gen_range(lo..hi)).collect();
            (name, Tensor::new(t.shape().to_vec(), data).unwrap())
        })
        .collect();
    model.load_state_dict(sd, Path::new("<random bn>")).unwrap();
}

/// (kernel, dilation) of the causal convs a signal can pass through, in order.
fn conv_taps(cfg: &ModelConfig) -> Vec<(usize, usize)> {
    if let Some(c) = cfg.settings::<Mlp>() {
        vec![(c.block_size, 1)]
    } else if let Some(c) = cfg.settings::<CausalCnn>() {
        vec![(c.kernel_size, 1); c.n_layers + 1]
    } else if let Some(c) = cfg.settings::<Dilated>() {
        c.dilations.iter().map(|&d| (c.kernel_size, d)).collect()
    } else if let Some(c) = cfg.settings::<Hierarchical>() {
        (0..c.block_size.trailing_zeros()).map(|i| (2, 1 << i)).collect()
    } else if let Some(c) = cfg.settings::<WaveNet>() {
        (0..c.n_stacks).flat_map(|_| (0..c.n_layers).map(|i| (c.kernel_size, 1 << i))).collect()
    } else if let Some(c) = cfg.settings::<GatedCnn>() {
        vec![(c.kernel_size, 1); c.n_blocks * c.layers_per_block]
    } else {
        unreachable!("{} has no causal conv taps", cfg.family())
    }
}

/// Offsets back in time that can influence a prediction: Σ a_i·d_i with 0 ≤ a_i < k_i.
fn expected_offsets(cfg: &ModelConfig) -> BTreeSet<usize> {
    let mut set = BTreeSet::from([0usize]);
    for (k, d) in conv_taps(cfg) {
        set = set.iter().flat_map(|&s| (0..k).map(move |a| s + a * d)).collect();
    }
    set
}

/// Perturbs every position of sequence 0 and checks causality; returns the offsets s - p at
/// which the logits changed.
fn measure_offsets(model: &mut Model, len: usize, training: bool, seed: u64) -> BTreeSet<usize> {
    let (batch, v) = (2, VOCAB);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let ids: Vec<u32> = (0..batch * len).map(|_| rng.gen_range(0..v as u32)).collect();
    let base = logits(model, &ids, &[batch, len], training);
    let mut offsets = BTreeSet::new();
    for p in 0..len {
        for _ in 0..2 {
            let mut x = ids.clone();
            x[p] = (x[p] + rng.gen_range(1..v as u32)) % v as u32; // a different token
            let out = logits(model, &x, &[batch, len], training);
            let row = |buf: &[f32], b: usize, s: usize| buf[(b * len + s) * v..(b * len + s + 1) * v].to_vec();
            for s in 0..len {
                let (before, after) = (row(&base, 0, s), row(&out, 0, s));
                if s < p {
                    assert_eq!(before, after, "token {p} changed the logits at earlier position {s}");
                } else if before != after {
                    offsets.insert(s - p);
                }
                assert_eq!(row(&base, 1, s), row(&out, 1, s), "token {p} of sequence 0 changed sequence 1 at {s}");
            }
            assert_ne!(row(&base, 0, p), row(&out, 0, p), "token {p} does not change its own position's logits");
        }
    }
    offsets
}

fn check_sequence_family(json: &str, training: bool) {
    let cfg = config(json);
    let mut model = Model::new(&cfg, VOCAB, 7).unwrap();
    randomize_batchnorm(&mut model, &mut ChaCha8Rng::seed_from_u64(3));
    let rf = model.receptive_field();
    let expected = expected_offsets(&cfg);
    assert_eq!(expected.iter().max().unwrap() + 1, rf, "{json}: receptive_field() disagrees with the architecture");
    let measured = measure_offsets(&mut model, rf + 5, training, 11);
    assert_eq!(measured, expected, "{json} (training={training}): offsets that influence a prediction");
    assert_eq!(measured.iter().max().unwrap() + 1, rf, "{json}: measured receptive field");
}

#[test]
fn mlp_is_causal_with_its_block_size_as_receptive_field() {
    for block in [1, 3, 5] {
        let json = format!(r#"{{"family":"mlp","block_size":{block},"n_embd":4,"n_hidden":12}}"#);
        check_sequence_family(&json, false);
        check_sequence_family(&json, true);
    }
}

#[test]
fn causal_cnn_is_causal() {
    for (k, n, act) in [(1, 2, "relu"), (2, 0, "relu"), (3, 1, "tanh"), (3, 3, "relu"), (5, 2, "gelu")] {
        let json = format!(r#"{{"family":"causal-cnn","n_embd":6,"channels":12,"kernel_size":{k},"n_layers":{n},"activation":"{act}"}}"#);
        check_sequence_family(&json, false);
        check_sequence_family(&json, true);
    }
}

#[test]
fn dilated_is_causal_and_shows_the_holes_of_its_dilations() {
    for (k, dil) in [(2, "[1,2,4,8]"), (3, "[1,3,16]"), (5, "[2,7]"), (1, "[1,4]"), (2, "[]")] {
        let json = format!(r#"{{"family":"dilated","n_embd":5,"channels":10,"kernel_size":{k},"dilations":{dil}}}"#);
        check_sequence_family(&json, false);
    }
    // k = 3 over dilations 1, 3, 16 reaches 0..=8, 16..=24 and 32..=40, nothing in between.
    let cfg = config(r#"{"family":"dilated","kernel_size":3,"dilations":[1,3,16]}"#);
    let want: BTreeSet<usize> = (0..=8).chain(16..=24).chain(32..=40).collect();
    assert_eq!(expected_offsets(&cfg), want);
}

#[test]
fn hierarchical_is_causal_in_eval_mode() {
    for block in [2, 4, 8, 16] {
        check_sequence_family(&format!(r#"{{"family":"hierarchical","block_size":{block},"n_embd":5,"n_hidden":10}}"#), false);
    }
    // Without BatchNorm nothing mixes positions, so training mode is causal too.
    let json = r#"{"family":"hierarchical","block_size":8,"n_embd":5,"n_hidden":10,"batchnorm":false}"#;
    check_sequence_family(json, false);
    check_sequence_family(json, true);
}

/// In training mode BatchNorm normalises with the statistics of the whole batch (every
/// sequence and position), so a later token leaks into earlier logits even for a batch of one
/// (PyTorch semantics: train-mode BN models must not be used to judge causality). The leak is
/// only through those statistics: training-mode logits equal the eval-mode logits of a model
/// whose running statistics are this batch's (biased) statistics.
#[test]
fn hierarchical_in_training_mode_leaks_only_through_batch_statistics() {
    let cfg = config(r#"{"family":"hierarchical","block_size":8,"n_embd":5,"n_hidden":10,"bn_momentum":1.0}"#);
    let mut model = Model::new(&cfg, VOCAB, 5).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let (batch, len) = (1, 12);
    let ids: Vec<u32> = (0..batch * len).map(|_| rng.gen_range(0..VOCAB as u32)).collect();
    let train = logits(&mut model, &ids, &[batch, len], true);

    let mut later = ids.clone();
    later[len - 1] = (later[len - 1] + 1) % VOCAB as u32;
    let leaked = logits(&mut model.clone(), &later, &[batch, len], true);
    assert_ne!(train[..VOCAB], leaked[..VOCAB], "train-mode BatchNorm should mix the last token into position 0");

    // momentum 1 left running_mean = batch mean, running_var = unbiased batch variance.
    let n = (batch * len) as f32;
    let sd = model
        .state_dict()
        .into_iter()
        .map(|(name, t)| {
            if !name.ends_with("running_var") {
                return (name, t);
            }
            let data = t.data().iter().map(|v| v * (n - 1.0) / n).collect();
            (name, Tensor::new(t.shape().to_vec(), data).unwrap())
        })
        .collect();
    model.load_state_dict(sd, Path::new("<batch stats>")).unwrap();
    let eval = logits(&mut model, &ids, &[batch, len], false);
    for (i, (a, b)) in train.iter().zip(&eval).enumerate() {
        assert!((a - b).abs() <= 1e-5 + 1e-5 * b.abs(), "logit {i}: training {a} vs eval-with-batch-stats {b}");
    }
}

#[test]
fn wavenet_is_causal() {
    for (k, layers, stacks) in [(2, 4, 1), (2, 3, 2), (3, 3, 1), (1, 2, 1)] {
        let json = format!(
            r#"{{"family":"wavenet","residual_channels":6,"dilation_channels":8,"skip_channels":16,"kernel_size":{k},"n_layers":{layers},"n_stacks":{stacks}}}"#
        );
        check_sequence_family(&json, false);
    }
}

#[test]
fn gated_cnn_is_causal() {
    for (k, e, blocks, per) in [(1, 6, 2, 1), (3, 6, 2, 2), (4, 8, 1, 3), (2, 8, 0, 2)] {
        let json = format!(r#"{{"family":"gated-cnn","n_embd":{e},"channels":8,"kernel_size":{k},"n_blocks":{blocks},"layers_per_block":{per}}}"#);
        check_sequence_family(&json, false);
        check_sequence_family(&json, true);
    }
}

/// Perturbs every cell of grid 0 and returns the (rows down, columns right) offsets of the
/// cells whose logits changed, after checking raster-order causality.
fn measure_grid(model: &mut Model, h: usize, w: usize, seed: u64) -> BTreeSet<(usize, isize)> {
    let (batch, v) = (2, VOCAB);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let ids: Vec<u32> = (0..batch * h * w).map(|_| rng.gen_range(0..v as u32)).collect();
    let base = logits(model, &ids, &[batch, h, w], false);
    let cell = |buf: &[f32], b: usize, r: usize, c: usize| buf[((b * h + r) * w + c) * v..((b * h + r) * w + c + 1) * v].to_vec();
    let mut seen = BTreeSet::new();
    for (i, j) in (0..h).flat_map(|i| (0..w).map(move |j| (i, j))) {
        let mut x = ids.clone();
        x[i * w + j] = (x[i * w + j] + rng.gen_range(1..v as u32)) % v as u32;
        let out = logits(model, &x, &[batch, h, w], false);
        for (r, c) in (0..h).flat_map(|r| (0..w).map(move |c| (r, c))) {
            let changed = cell(&base, 0, r, c) != cell(&out, 0, r, c);
            assert!(!changed || (r, c) > (i, j), "cell ({i}, {j}) changed the logits at ({r}, {c}), not after it in raster order");
            if changed {
                seen.insert((r - i, c as isize - j as isize));
            }
            assert_eq!(cell(&base, 1, r, c), cell(&out, 1, r, c), "grid 0 changed grid 1");
        }
    }
    seen
}

#[test]
fn pixelcnn_is_causal_in_raster_order_with_rows_of_context_as_receptive_field() {
    for (k, layers) in [(3, 1), (3, 3), (5, 2)] {
        let cfg = config(&format!(r#"{{"family":"pixelcnn","n_embd":4,"channels":10,"kernel_size":{k},"n_layers":{layers}}}"#));
        let mut model = Model::new(&cfg, VOCAB, 13).unwrap();
        let reach = (k / 2) * layers;
        let rf = model.receptive_field();
        assert_eq!(rf, 1 + reach);
        let (h, w) = (rf + 2, 2 * reach + 3);
        let seen = measure_grid(&mut model, h, w, 17);
        let rows = seen.iter().map(|&(dr, _)| dr).max().unwrap() + 1;
        assert_eq!(rows, rf, "k={k} layers={layers}: rows of context");
        let same_row: BTreeSet<isize> = seen.iter().filter(|&&(dr, _)| dr == 0).map(|&(_, dc)| dc).collect();
        assert_eq!(same_row, (1..=reach as isize).collect(), "k={k} layers={layers}: reach along the current row");
    }
}

#[test]
fn degenerate_pixelcnns_that_would_see_their_own_cell_or_nothing_are_rejected() {
    for json in [r#"{"family":"pixelcnn","n_layers":0}"#, r#"{"family":"pixelcnn","kernel_size":1}"#] {
        let err = Model::new(&config(json), VOCAB, 0).unwrap_err().to_string();
        assert!(err.contains("n_layers") || err.contains("kernel_size"), "{json}: {err}");
    }
}

/// Like [`measure_offsets`] for a model whose long convolutions run by FFT: an FFT's
/// rounding reaches every output (and its two-items-per-transform packing the neighbouring
/// sequence), so changes up to `roundoff` are allowed where nothing may depend on the token,
/// and only changes above it count as dependence.
fn measure_offsets_fft(model: &mut Model, len: usize, training: bool, seed: u64, roundoff: f32) -> BTreeSet<usize> {
    let (batch, v) = (2, VOCAB);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let ids: Vec<u32> = (0..batch * len).map(|_| rng.gen_range(0..v as u32)).collect();
    let base = logits(model, &ids, &[batch, len], training);
    let change = |a: &[f32], b: &[f32], item: usize, s: usize| {
        let r = (item * len + s) * v..(item * len + s + 1) * v;
        a[r.clone()].iter().zip(&b[r]).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max)
    };
    let mut offsets = BTreeSet::new();
    for p in 0..len {
        let mut x = ids.clone();
        x[p] = (x[p] + rng.gen_range(1..v as u32)) % v as u32;
        let out = logits(model, &x, &[batch, len], training);
        for s in 0..len {
            let moved = change(&base, &out, 0, s);
            if s < p {
                assert!(moved <= roundoff, "token {p} moved the logits at earlier position {s} by {moved}");
            } else if moved > roundoff {
                offsets.insert(s - p);
            }
            let other = change(&base, &out, 1, s);
            assert!(other <= roundoff, "token {p} of sequence 0 moved sequence 1 at {s} by {other}");
        }
    }
    offsets
}

/// Hyena: causal at every position, and every position depends on its whole prefix (the
/// long convolution spans the context): the offsets that influence a prediction are all of
/// 0..len, for len up to max_len (the receptive field), in both modes (LayerNorm, not
/// BatchNorm, so training mode is causal too). Below 128 steps the long convolution is a
/// direct sum, so causality is bit-exact; from 128 on it runs by FFT (140 here), checked
/// to rounding (a window decaying only to 0.3 keeps the farthest taps well above it).
#[test]
fn hyena_is_causal_and_sees_its_whole_prefix() {
    for (d, layers, max_len, len) in [(8, 2, 16, 16), (6, 1, 24, 11), (8, 2, 140, 140)] {
        let json =
            format!(r#"{{"family":"hyena","d_model":{d},"n_layers":{layers},"max_len":{max_len},"filter_width":8,"filter_inner":1,"decay_target":0.3}}"#);
        let mut model = Model::new(&config(&json), VOCAB, 21).unwrap();
        assert_eq!(model.receptive_field(), max_len);
        for training in [false, true] {
            let measured = if len < 128 { measure_offsets(&mut model, len, training, 23) } else { measure_offsets_fft(&mut model, len, training, 23, 1e-5) };
            assert_eq!(measured, (0..len).collect::<BTreeSet<usize>>(), "{json} (training={training}): offsets that influence a prediction");
        }
    }
}
