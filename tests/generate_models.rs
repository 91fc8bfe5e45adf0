//! `generate` (cached ring buffers) vs `generate_naive` (full recompute) on every sequence
//! family, seeds, stop tokens, prompts of different lengths, banned ids and pixelcnn grids.

use convlm::generate::{bench_generation, generate, generate_grid, generate_naive, GenerateRequest, SamplingConfig};
use convlm::models::{Model, ModelConfig};

const VOCAB: usize = 13;

fn model(json: &str, vocab: usize, seed: u64) -> Model {
    let cfg: ModelConfig = serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"));
    Model::new(&cfg, vocab, seed).unwrap_or_else(|e| panic!("{json}: {e}"))
}

fn families() -> Vec<(&'static str, Model)> {
    [
        ("mlp", r#"{"family":"mlp","block_size":3,"n_embd":6,"n_hidden":16,"activation":"tanh"}"#),
        ("causal-cnn", r#"{"family":"causal-cnn","n_embd":8,"channels":12,"kernel_size":3,"n_layers":2,"activation":"relu"}"#),
        ("dilated", r#"{"family":"dilated","n_embd":8,"channels":16,"kernel_size":2,"dilations":[1,2,4],"activation":"tanh"}"#),
        ("wavenet", r#"{"family":"wavenet","residual_channels":8,"dilation_channels":8,"skip_channels":12,"kernel_size":2,"n_layers":3,"n_stacks":2}"#),
        ("gated-cnn", r#"{"family":"gated-cnn","n_embd":8,"channels":8,"kernel_size":3,"n_blocks":2,"layers_per_block":2}"#),
        ("hierarchical", r#"{"family":"hierarchical","block_size":8,"n_embd":6,"n_hidden":16}"#),
        ("hyena", r#"{"family":"hyena","d_model":8,"n_layers":2,"max_len":64,"filter_width":8,"filter_inner":1}"#),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (name, json))| (name, model(json, VOCAB, 100 + i as u64)))
    .collect()
}

fn sampling(temperature: f32, max_tokens: usize, seed: u64) -> SamplingConfig {
    SamplingConfig { temperature, max_tokens, seed, ..SamplingConfig::default() }
}

fn request(prompts: Vec<Vec<u32>>, stop: Option<u32>, sampling: &SamplingConfig, banned: Vec<u32>) -> GenerateRequest<'_> {
    GenerateRequest { prompts, stop, sampling, banned, cancel: None }
}

#[test]
fn cached_equals_naive_token_for_token_on_every_family() {
    let prompts = vec![vec![1], vec![1, 4, 5, 6, 7, 8], vec![1, 2, 3]];
    let configs = [
        sampling(1.0, 40, 3),
        SamplingConfig { top_k: Some(4), ..sampling(0.8, 30, 4) },
        SamplingConfig { top_p: Some(0.9), ..sampling(1.3, 30, 5) },
        sampling(0.0, 25, 6),
    ];
    for (name, m) in families() {
        for c in &configs {
            let req = request(prompts.clone(), Some(2), c, vec![0]);
            let cached = generate(&m, &req).unwrap_or_else(|e| panic!("{name}: {e}"));
            let naive = generate_naive(&m, &req).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(cached, naive, "{name} with {c:?}");
            assert_eq!(cached.len(), 3);
            assert!(cached.iter().all(|s| s.len() <= c.max_tokens));
            assert!(cached.iter().flatten().all(|&t| t != 0 && t != 2 && (t as usize) < VOCAB), "{name}: banned or stop id in {cached:?}");
        }
    }
}

#[test]
fn same_seed_same_text_different_seed_different_text() {
    for (name, m) in families() {
        let (a, b, c) = (sampling(1.0, 40, 17), sampling(1.0, 40, 17), sampling(1.0, 40, 18));
        let prompts = vec![vec![1], vec![1, 3]];
        let ga = generate(&m, &request(prompts.clone(), None, &a, vec![])).expect("generates");
        let gb = generate(&m, &request(prompts.clone(), None, &b, vec![])).expect("generates");
        let gc = generate(&m, &request(prompts.clone(), None, &c, vec![])).expect("generates");
        assert_eq!(ga, gb, "{name}: same seed, different text");
        assert_ne!(ga, gc, "{name}: seeds 17 and 18 gave the same text");
        assert_eq!(ga.iter().map(Vec::len).collect::<Vec<_>>(), vec![40, 40], "{name}: no stop token, so max_tokens each");
        // Samples within one request differ too (independent streams).
        assert_ne!(ga[0], ga[1][..], "{name}");
    }
}

#[test]
fn a_sample_does_not_depend_on_the_other_samples_in_the_batch() {
    let (name, m) = families().swap_remove(2);
    let c = sampling(1.0, 30, 9);
    let prompts = vec![vec![1, 4, 4, 4, 4, 4, 4, 4], vec![1], vec![1, 9, 8]];
    let batched = generate(&m, &request(prompts.clone(), Some(2), &c, vec![])).expect("generates");
    // Sample i uses RNG stream i, so run each one alone at its index.
    for (i, p) in prompts.iter().enumerate() {
        let mut alone_prompts = vec![vec![1]; i + 1];
        alone_prompts[i] = p.clone();
        let alone = generate(&m, &request(alone_prompts, Some(2), &c, vec![])).expect("generates");
        assert_eq!(alone[i], batched[i], "{name}: sample {i} changed with the batch");
    }
}

#[test]
fn prompt_conditions_the_output_and_is_not_returned() {
    // Greedy: the output is a function of the prompt only.
    let m = model(r#"{"family":"causal-cnn","n_embd":8,"channels":12,"kernel_size":3,"n_layers":2,"activation":"relu"}"#, VOCAB, 5);
    let c = sampling(0.0, 12, 0);
    let prompts = vec![vec![1, 5, 6, 7], vec![1, 9], vec![1, 5, 6, 7]];
    let out = generate(&m, &request(prompts.clone(), None, &c, vec![])).expect("generates");
    assert_eq!(out[0], out[2], "same prompt, greedy: same continuation");
    assert!(out.iter().all(|s| s.len() == 12), "prompt tokens are not part of the output");
    // Continuing a prompt with its own greedy continuation gives the rest of it.
    let mut longer = prompts[0].clone();
    longer.extend_from_slice(&out[0][..4]);
    let rest = generate(&m, &request(vec![longer], None, &sampling(0.0, 8, 0), vec![])).expect("generates");
    assert_eq!(rest[0], out[0][4..]);
}

#[test]
fn stop_token_finishes_a_sequence_while_others_continue() {
    let m = model(r#"{"family":"dilated","n_embd":8,"channels":16,"kernel_size":2,"dilations":[1,2,4],"activation":"tanh"}"#, VOCAB, 1);
    // Only ids 3 (stop) and 4 may be sampled: every sequence is 4,4,4,... until it draws 3.
    let banned: Vec<u32> = (0..VOCAB as u32).filter(|&t| t != 3 && t != 4).collect();
    let c = SamplingConfig { temperature: 3.0, ..sampling(1.0, 60, 2) };
    let prompts = vec![vec![1]; 8];
    let out = generate(&m, &request(prompts.clone(), Some(3), &c, banned.clone())).expect("generates");
    assert!(out.iter().flatten().all(|&t| t == 4), "{out:?}");
    let lens: Vec<usize> = out.iter().map(Vec::len).collect();
    assert!(lens.iter().any(|&l| l < 60), "no sequence stopped: {lens:?}");
    assert!(lens.iter().any(|&l| l != lens[0]), "sequences should stop at different points: {lens:?}");
    assert_eq!(generate_naive(&m, &request(prompts, Some(3), &c, banned.clone())).expect("generates"), out);
    // When the stop token is the only one allowed, every sample is empty.
    let only_stop: Vec<u32> = (0..VOCAB as u32).filter(|&t| t != 3).collect();
    let out = generate(&m, &request(vec![vec![1], vec![1, 2]], Some(3), &sampling(1.0, 10, 0), only_stop)).expect("generates");
    assert_eq!(out, vec![Vec::<u32>::new(), Vec::new()]);
}

#[test]
fn max_tokens_zero_gives_empty_samples() {
    let (_, m) = families().swap_remove(1);
    let out = generate(&m, &request(vec![vec![1], vec![1, 2, 3]], None, &sampling(1.0, 0, 0), vec![])).expect("generates");
    assert_eq!(out, vec![Vec::<u32>::new(), Vec::new()]);
}

#[test]
fn bad_requests_are_errors_not_panics() {
    let (_, m) = families().swap_remove(1);
    let ok = sampling(1.0, 5, 0);
    let cases: Vec<(GenerateRequest, &str)> = vec![
        (request(vec![vec![]], None, &ok, vec![]), "prompt"),
        (request(vec![vec![1, VOCAB as u32]], None, &ok, vec![]), "prompt"),
        (request(vec![vec![1]], Some(VOCAB as u32 + 5), &ok, vec![]), "stop"),
        (request(vec![vec![1]], None, &ok, vec![99]), "banned"),
        (request(vec![vec![1]], None, &ok, (0..VOCAB as u32).collect()), "banned"),
    ];
    for (req, field) in &cases {
        for result in [generate(&m, req), generate_naive(&m, req)] {
            let err = result.expect_err("invalid request").to_string();
            assert!(err.contains(field), "`{err}` should name {field}");
        }
    }
    let bad = SamplingConfig { top_p: Some(2.0), ..ok.clone() };
    let err = generate(&m, &request(vec![vec![1]], None, &bad, vec![])).expect_err("bad top-p").to_string();
    assert!(err.contains("--top-p"), "{err}");
}

#[test]
fn a_model_with_a_context_limit_stops_when_its_context_is_full() {
    // Hyena reads at most max_len = 10 tokens: a sample ends with the token predicted from a
    // full context (11 tokens in all), whatever max_tokens asks; a longer prompt is refused.
    let m = model(r#"{"family":"hyena","d_model":8,"n_layers":1,"max_len":10,"filter_width":6}"#, VOCAB, 7);
    let c = sampling(1.0, 40, 1);
    let req = request(vec![vec![1], vec![1, 4, 5, 6], (0..10).collect()], None, &c, vec![]);
    let out = generate(&m, &req).expect("generates");
    assert_eq!(out.iter().map(Vec::len).collect::<Vec<_>>(), vec![10, 7, 1]);
    assert_eq!(generate_naive(&m, &req).expect("generates"), out);
    let long = request(vec![(0..11).collect()], None, &c, vec![]);
    for result in [generate(&m, &long), generate_naive(&m, &long)] {
        let err = result.expect_err("prompt longer than max_len").to_string();
        assert!(err.contains("prompt 0 has 11 tokens") && err.contains("at most 10"), "{err}");
    }
}

const PIXELCNN: &str = r#"{"family":"pixelcnn","n_embd":8,"channels":8,"kernel_size":3,"n_layers":2}"#;

#[test]
fn pixelcnn_grid_keeps_the_prompt_and_fills_every_cell() {
    let m = model(PIXELCNN, 6, 3);
    let prompt = [1, 2, 3, 4, 5, 0, 1];
    let c = sampling(1.0, 0, 4);
    let grid = generate_grid(&m, 5, 6, &prompt, &c, &[0]).expect("grid");
    assert_eq!(grid.len(), 30);
    assert_eq!(grid[..7], prompt);
    assert!(grid[7..].iter().all(|&t| t != 0 && t < 6), "{grid:?}");
    assert_eq!(generate_grid(&m, 5, 6, &prompt, &c, &[0]).expect("grid"), grid, "same seed, same grid");
    let other = generate_grid(&m, 5, 6, &prompt, &sampling(1.0, 0, 5), &[0]).expect("grid");
    assert_ne!(other, grid);
    assert_eq!(other[..7], prompt);
    // A full prompt is returned unchanged; an empty one samples everything.
    let full: Vec<u32> = (0..30).map(|i| i % 6).collect();
    assert_eq!(generate_grid(&m, 5, 6, &full, &c, &[]).expect("grid"), full);
    assert_eq!(generate_grid(&m, 3, 4, &[], &c, &[]).expect("grid").len(), 12);
}

#[test]
fn pixelcnn_greedy_cell_matches_a_forward_over_the_finished_grid() {
    // Greedy sampling is causal: re-running the forward over the final grid must give, at each
    // sampled cell, logits whose argmax is the sampled value.
    use convlm::generate::argmax;
    use convlm::tensor::Graph;
    let mut m = model(PIXELCNN, 5, 8);
    let grid = generate_grid(&m, 4, 4, &[1, 2], &sampling(0.0, 0, 0), &[]).expect("grid");
    let mut g = Graph::new(false);
    let logits = m.forward(&mut g, &grid, &[1, 4, 4]).expect("forward");
    let data = g.value(logits).data();
    for cell in 2..16 {
        assert_eq!(argmax(&data[cell * 5..(cell + 1) * 5]), grid[cell], "cell {cell}");
    }
}

#[test]
fn grid_and_sequence_paths_reject_the_other_kind_of_model() {
    let grid_model = model(PIXELCNN, 6, 3);
    let (_, seq_model) = families().swap_remove(0);
    let c = sampling(1.0, 5, 0);
    assert!(generate(&grid_model, &request(vec![vec![1]], None, &c, vec![])).is_err());
    assert!(generate_naive(&grid_model, &request(vec![vec![1]], None, &c, vec![])).is_err());
    assert!(generate_grid(&seq_model, 2, 2, &[], &c, &[]).is_err());
    let err = generate_grid(&grid_model, 2, 2, &[1, 1, 1, 1, 1], &c, &[]).expect_err("prompt too long").to_string();
    assert!(err.contains("prompt"), "{err}");
    assert!(generate_grid(&grid_model, 0, 3, &[], &c, &[]).is_err());
}

#[test]
fn bench_generation_reports_consistent_numbers() {
    let (_, m) = families().swap_remove(2);
    let b = bench_generation(&m, 50, 0).expect("bench");
    assert_eq!(b.tokens, 50);
    assert!(b.identical, "cached and naive disagree");
    assert!(b.cached_tokens_per_s.is_finite() && b.cached_tokens_per_s > 0.0);
    assert!(b.naive_tokens_per_s.is_finite() && b.naive_tokens_per_s > 0.0);
    assert!((b.ratio - b.cached_tokens_per_s / b.naive_tokens_per_s).abs() < 1e-9 * b.ratio);
    assert!(bench_generation(&m, 0, 0).is_err());
}
