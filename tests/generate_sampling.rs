//! `sample_token` and `SamplingConfig`: greedy, temperature, top-k, top-p, validation.

use convlm::generate::{argmax, sample_token, SamplingConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn cfg(temperature: f32, top_k: Option<usize>, top_p: Option<f32>) -> SamplingConfig {
    SamplingConfig { temperature, top_k, top_p, ..SamplingConfig::default() }
}

/// Counts of each id over `n` draws.
fn histogram(logits: &[f32], c: &SamplingConfig, n: usize, seed: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut counts = vec![0; logits.len()];
    for _ in 0..n {
        counts[sample_token(logits, c, &mut rng) as usize] += 1;
    }
    counts
}

/// Pseudo-random logits in [-3, 3).
fn random_logits(n: usize, seed: u64) -> Vec<f32> {
    use rand::Rng;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.gen_range(-3.0..3.0)).collect()
}

#[test]
fn greedy_picks_the_argmax_and_lowest_index_on_ties() {
    let logits = [0.1, -2.0, 3.5, 0.0, 3.4, -1.0];
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for _ in 0..10 {
        assert_eq!(sample_token(&logits, &cfg(0.0, None, None), &mut rng), 2);
    }
    assert_eq!(argmax(&[1.0, 5.0, 5.0, 2.0]), 1);
    assert_eq!(sample_token(&[1.0, 5.0, 5.0, 2.0], &cfg(0.0, None, None), &mut rng), 1);
    // NaN is never the argmax; -inf loses to anything finite.
    assert_eq!(argmax(&[f32::NAN, f32::NEG_INFINITY, -7.0]), 2);
}

#[test]
fn greedy_draws_nothing_from_the_rng() {
    use rand::Rng;
    let (mut a, mut b) = (ChaCha8Rng::seed_from_u64(5), ChaCha8Rng::seed_from_u64(5));
    sample_token(&random_logits(30, 2), &cfg(0.0, Some(3), Some(0.5)), &mut a);
    assert_eq!(a.gen::<u64>(), b.gen::<u64>());
}

#[test]
fn temperature_to_zero_limit_equals_greedy() {
    for seed in 0..20 {
        // Distinct logits at least 0.01 apart: at T = 1e-4 the runner-up has weight < e^-100.
        let mut logits: Vec<f32> = (0..40).map(|i| i as f32 * 0.01).collect();
        let perm = random_logits(40, seed);
        let mut idx: Vec<usize> = (0..40).collect();
        idx.sort_by(|&a, &b| perm[a].total_cmp(&perm[b]));
        let shuffled: Vec<f32> = idx.iter().map(|&i| logits[i]).collect();
        logits = shuffled;
        let want = argmax(&logits);
        let counts = histogram(&logits, &cfg(1e-4, None, None), 200, seed);
        assert_eq!(counts[want as usize], 200, "seed {seed}");
    }
}

#[test]
fn top_k_one_equals_greedy() {
    for seed in 0..50 {
        let logits = random_logits(100, seed);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        assert_eq!(sample_token(&logits, &cfg(1.5, Some(1), None), &mut rng), argmax(&logits));
    }
}

#[test]
fn top_k_restricts_support_to_the_k_largest() {
    let logits = random_logits(50, 7);
    let mut order: Vec<usize> = (0..50).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    let top: Vec<usize> = order[..5].to_vec();
    let counts = histogram(&logits, &cfg(2.0, Some(5), None), 5000, 3);
    for (id, &n) in counts.iter().enumerate() {
        if top.contains(&id) {
            assert!(n > 0, "top-5 id {id} never sampled");
        } else {
            assert_eq!(n, 0, "id {id} is outside the top 5 but was sampled {n} times");
        }
    }
    // Without top-k the tail is reachable.
    let all = histogram(&logits, &cfg(2.0, None, None), 5000, 3);
    assert!(order[5..].iter().any(|&id| all[id] > 0));
}

#[test]
fn top_p_restricts_to_the_nucleus_and_renormalises() {
    // Probabilities 0.5, 0.3, 0.1, 0.06, 0.04 in a shuffled order.
    let probs = [0.06f32, 0.3, 0.04, 0.5, 0.1];
    let logits: Vec<f32> = probs.iter().map(|p| p.ln() + 2.0).collect();
    // p = 0.75: the nucleus is {0.5, 0.3} (0.5 alone is not enough).
    let n = 20000;
    let counts = histogram(&logits, &cfg(1.0, None, Some(0.75)), n, 11);
    assert_eq!(counts[0] + counts[2] + counts[4], 0, "{counts:?}");
    let share = counts[3] as f64 / n as f64;
    assert!((share - 0.5 / 0.8).abs() < 0.02, "renormalised share of the top token {share}");
    // p = 0.85: {0.5, 0.3, 0.1}.
    let counts = histogram(&logits, &cfg(1.0, None, Some(0.85)), n, 12);
    assert_eq!(counts[0] + counts[2], 0, "{counts:?}");
    assert!(counts[4] > 0);
    // p = 1: everything.
    let counts = histogram(&logits, &cfg(1.0, None, Some(1.0)), n, 13);
    assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
    // A tiny p keeps only the most likely token.
    let counts = histogram(&logits, &cfg(1.0, None, Some(1e-6)), 500, 14);
    assert_eq!(counts[3], 500);
}

#[test]
fn top_k_then_top_p() {
    let probs = [0.4f32, 0.3, 0.2, 0.1];
    let logits: Vec<f32> = probs.iter().map(|p| p.ln()).collect();
    // top-k 2 renormalises to {4/7, 3/7}; top-p 0.6 then needs both (4/7 < 0.6).
    let counts = histogram(&logits, &cfg(1.0, Some(2), Some(0.6)), 5000, 4);
    assert!(counts[0] > 0 && counts[1] > 0 && counts[2] == 0 && counts[3] == 0, "{counts:?}");
    // top-p 0.5 after top-k 2 keeps only id 0 (4/7 >= 0.5); top-p first would keep {0, 1}.
    let counts = histogram(&logits, &cfg(1.0, Some(2), Some(0.5)), 2000, 4);
    assert_eq!(counts[0], 2000, "{counts:?}");
}

#[test]
fn sampling_follows_the_softmax_with_temperature() {
    let logits = [0.0f32, 1.0, 2.0];
    let n = 30000;
    for t in [0.5f32, 1.0, 2.0] {
        let counts = histogram(&logits, &cfg(t, None, None), n, 21);
        let w: Vec<f64> = logits.iter().map(|&l| (l as f64 / t as f64).exp()).collect();
        let z: f64 = w.iter().sum();
        for i in 0..3 {
            let got = counts[i] as f64 / n as f64;
            assert!((got - w[i] / z).abs() < 0.015, "T={t} id {i}: {got} vs {}", w[i] / z);
        }
    }
}

#[test]
fn banned_minus_infinity_is_never_sampled() {
    let mut logits = random_logits(10, 9);
    for id in [0, 3, 7] {
        logits[id] = f32::NEG_INFINITY;
    }
    for c in [cfg(1.0, None, None), cfg(3.0, Some(8), None), cfg(1.0, None, Some(0.99)), cfg(0.0, None, None)] {
        let counts = histogram(&logits, &c, 3000, 5);
        assert_eq!(counts[0] + counts[3] + counts[7], 0, "{c:?}: {counts:?}");
    }
}

#[test]
fn invalid_configs_name_the_flag() {
    let bad = [
        (cfg(-0.5, None, None), "--temperature"),
        (cfg(f32::NAN, None, None), "--temperature"),
        (cfg(f32::INFINITY, None, None), "--temperature"),
        (cfg(1.0, Some(0), None), "--top-k"),
        (cfg(1.0, None, Some(0.0)), "--top-p"),
        (cfg(1.0, None, Some(1.5)), "--top-p"),
        (cfg(1.0, None, Some(f32::NAN)), "--top-p"),
        (cfg(1.0, None, Some(-0.2)), "--top-p"),
    ];
    for (c, flag) in bad {
        let err = c.validate().expect_err(&format!("{c:?} should be rejected")).to_string();
        assert!(err.contains(flag), "{c:?}: error `{err}` does not name {flag}");
    }
    for c in [cfg(0.0, None, None), cfg(0.7, Some(1), Some(1.0)), cfg(1.0, Some(40), Some(0.9)), SamplingConfig::default()] {
        c.validate().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    }
}

#[test]
fn config_serde_defaults_and_round_trip() {
    let d: SamplingConfig = serde_json::from_str("{}").expect("empty object");
    assert_eq!(d, SamplingConfig::default());
    assert_eq!((d.temperature, d.max_tokens, d.top_k, d.top_p), (1.0, 256, None, None));
    let c: SamplingConfig = serde_json::from_str(r#"{"temperature":0.8,"top_k":40,"top_p":0.9,"seed":7}"#).expect("parses");
    assert_eq!((c.top_k, c.top_p, c.seed, c.max_tokens), (Some(40), Some(0.9), 7, 256));
    let back: SamplingConfig = serde_json::from_str(&serde_json::to_string(&c).expect("serialises")).expect("parses back");
    assert_eq!(back, c);
    assert!(serde_json::from_str::<SamplingConfig>(r#"{"temprature":0.8}"#).is_err());
}
