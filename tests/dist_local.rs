//! Data-parallel training without MPI: ranks as threads of this process
//! (`dist::local_group`), each on a thread pool of its own. A step on the shards of a
//! global batch equals the step on the whole batch; every rank holds the same weights after
//! it; the bucketed sum is right whatever the bucket size; the agreements end every rank
//! together; and a whole run (train, evaluation, checkpoints, resume) on two ranks equals
//! the same run in one process, with rank 1 never touching the run folder.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use convlm::data::{Batch, IGNORE_INDEX};
use convlm::dist::{local_group, shard, GradReducer, Group, Replica, Wait};
use convlm::models::{Model, ModelConfig};
use convlm::nn::ParamStore;
use convlm::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use convlm::run::step::{train_step, train_step_in, StepOutcome, StepSettings};
use convlm::run::{resume, train, ResumeOptions, RunConfig, RunDir, TrainOptions, TrainSummary};
use convlm::tensor::Precision;
use convlm::{Error, Tensor};
use rand::{Rng, SeedableRng};

const LIMIT: Duration = Duration::from_secs(60);

/// Runs `f` on every rank of `groups`, each in its own thread with a one-thread pool (a
/// rank waiting for another must not hold a worker that rank needs), and returns the
/// results in rank order.
fn on_ranks<T: Send>(groups: Vec<Group>, f: impl Fn(Group) -> T + Sync) -> Vec<T> {
    std::thread::scope(|s| {
        let handles: Vec<_> = groups
            .into_iter()
            .map(|g| {
                let f = &f;
                s.spawn(move || rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("a pool").install(|| f(g)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a rank panicked")).collect()
    })
}

/// A small model of `family` over 20 tokens.
fn model(family: &str) -> Model {
    let json = match family {
        "causal-cnn" => serde_json::json!({"family": family, "n_embd": 12, "channels": 16, "kernel_size": 3, "n_layers": 3}),
        "dilated" => serde_json::json!({"family": family, "n_embd": 8, "channels": 16, "kernel_size": 2, "dilations": [1, 2, 4]}),
        "mlp" => serde_json::json!({"family": family, "block_size": 3, "n_embd": 6, "n_hidden": 24}),
        "gated-cnn" => serde_json::json!({"family": family, "n_embd": 8, "channels": 16, "kernel_size": 3, "n_blocks": 1, "layers_per_block": 2}),
        "wavenet" => serde_json::json!({"family": family, "residual_channels": 8, "dilation_channels": 8, "skip_channels": 8, "n_layers": 3, "n_stacks": 1}),
        other => serde_json::json!({"family": other}),
    };
    let config: ModelConfig = serde_json::from_value(json).expect("a model config");
    Model::new(&config, 20, 7).expect("a model")
}

/// A batch of `rows` random rows of 11 positions; some rows end early (ignored targets), so
/// shards count different numbers of targets.
fn batch(rows: usize, seed: u64) -> Batch {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let t = 11;
    let mut inputs = Vec::new();
    let mut targets = Vec::new();
    for r in 0..rows {
        let len = if r % 3 == 1 { 4 + r % 5 } else { t };
        for p in 0..t {
            inputs.push(if p < len { rng.gen_range(0..20) } else { 0 });
            targets.push(if p < len { rng.gen_range(0..20) } else { IGNORE_INDEX });
        }
    }
    Batch { inputs, targets, batch_size: rows, seq_len: t, grid: None }
}

fn values(m: &Model) -> Vec<f32> {
    m.params().params().iter().flat_map(|p| p.value.data().to_vec()).collect()
}

/// Losses and final weights of `steps` steps on the batches, in one process.
fn single(family: &str, opt: &OptimizerConfig, batches: &[Batch]) -> (Vec<f64>, Vec<f32>) {
    let mut m = model(family);
    let mut o = Optimizer::new(opt, m.params()).unwrap();
    let mut losses = Vec::new();
    for b in batches {
        match train_step(&mut m, &mut o, b, StepSettings { lr: opt.lr, clip_grad: Some(1.0), dropout_seed: 0, precision: Precision::Fp32 }).unwrap() {
            StepOutcome::Done(s) => losses.push(s.loss),
            d => panic!("{d:?}"),
        }
    }
    (losses, values(&m))
}

/// The same on `n` ranks, each on its shard, with buckets of `bucket_bytes`.
fn data_parallel(family: &str, opt: &OptimizerConfig, batches: &[Batch], n: usize, bucket_bytes: usize, overlap: bool) -> Vec<(Vec<f64>, Vec<f32>)> {
    on_ranks(local_group(n, LIMIT), |group| {
        let mut m = model(family);
        let mut o = Optimizer::new(opt, m.params()).unwrap();
        let mut reducer = GradReducer::new(m.params(), bucket_bytes, overlap);
        let mut losses = Vec::new();
        for b in batches {
            let mine = shard(b, group.rank(), group.size());
            let mut replica = Replica { group: &group, reducer: &mut reducer, global_targets: b.num_targets() };
            match train_step_in(
                &mut m,
                &mut o,
                &mine,
                StepSettings { lr: opt.lr, clip_grad: Some(1.0), dropout_seed: 0, precision: Precision::Fp32 },
                Some(&mut replica),
            )
            .unwrap()
            {
                StepOutcome::Done(s) => {
                    assert_eq!(s.tokens, b.num_targets(), "a step counts the global batch's targets");
                    losses.push(s.loss)
                }
                d => panic!("{d:?}"),
            }
        }
        (losses, values(&m))
    })
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn steps_on_shards_equal_steps_on_the_whole_batch_and_every_rank_holds_the_same_weights() {
    let sgd = OptimizerConfig { kind: OptimizerKind::Sgd, lr: 0.1, momentum: 0.9, ..OptimizerConfig::default() };
    let adamw = OptimizerConfig { lr: 3e-3, ..OptimizerConfig::default() };
    for family in ["dilated", "causal-cnn", "mlp", "gated-cnn", "wavenet"] {
        // 7 rows: shards of 4+3 and 3+2+2 rows, with different target counts.
        let batches: Vec<Batch> = (0..3).map(|s| batch(7, s)).collect();
        for (opt, weight_tol) in [(&sgd, 1e-5), (&adamw, 1e-4)] {
            let (losses, weights) = single(family, opt, &batches);
            for (n, bucket) in [(2, 4 << 20), (3, 256)] {
                let ranks = data_parallel(family, opt, &batches, n, bucket, true);
                for (r, (l, w)) in ranks.iter().enumerate() {
                    assert_eq!(w, &ranks[0].1, "{family}, {n} ranks: rank {r}'s weights differ from rank 0's");
                    assert_eq!(l, &ranks[0].0, "{family}, {n} ranks: rank {r} saw other losses");
                }
                for (step, (a, b)) in losses.iter().zip(&ranks[0].0).enumerate() {
                    assert!((a - b).abs() <= 1e-5 * a.abs(), "{family} {:?}, {n} ranks: loss of step {} is {b}, one process {a}", opt.kind, step + 1);
                }
                let diff = max_abs_diff(&weights, &ranks[0].1);
                assert!(diff <= weight_tol, "{family} {:?}, {n} ranks: weights differ from one process's by {diff}", opt.kind);
            }
        }
    }
}

#[test]
fn buckets_of_any_size_and_with_or_without_overlap_give_the_same_sums() {
    let sgd = OptimizerConfig { kind: OptimizerKind::Sgd, lr: 0.1, ..OptimizerConfig::default() };
    let batches: Vec<Batch> = (0..2).map(|s| batch(6, 10 + s)).collect();
    let want = data_parallel("causal-cnn", &sgd, &batches, 2, 4 << 20, false);
    for (bucket, overlap) in [(4, true), (100, true), (1000, false), (4096, true), (1 << 30, true)] {
        let got = data_parallel("causal-cnn", &sgd, &batches, 2, bucket, overlap);
        assert_eq!(got[0].1, want[0].1, "buckets of {bucket} bytes, overlap {overlap}");
    }
}

#[test]
fn the_reducer_sums_scaled_gradients_in_parameter_layout() {
    let sizes = [5usize, 1, 7, 3];
    let mut store = ParamStore::new();
    for (i, &n) in sizes.iter().enumerate() {
        store.add(format!("p{i}"), Tensor::zeros(vec![n]));
    }
    let grads = on_ranks(local_group(3, LIMIT), |group| {
        let mut store = store.clone();
        let mut reducer = GradReducer::new(&store, 12, true);
        assert_eq!(reducer.buckets(), 16usize.div_ceil(3));
        let r = group.rank() as f32;
        let grad = |k: usize| -> Vec<f32> { (0..sizes[k]).map(|i| r * 100.0 + (k * 10 + i) as f32).collect() };
        // Parameter 2 is on the tape twice; parameter 1 got no gradient; parameter 3 is
        // never reported. Reports come in an order of the rank's own.
        reducer.begin(0.5, [0, 2, 2, 1]).unwrap();
        let order: Vec<usize> = if group.rank() == 1 { vec![2, 0, 1, 2] } else { vec![1, 2, 2, 0] };
        for k in order {
            let g = grad(k);
            reducer.param_ready(&group, k, if k == 1 { None } else { Some(&g) }).unwrap();
        }
        reducer.finish(&group, &mut store).unwrap();
        store.params().iter().map(|p| p.grad.data().to_vec()).collect::<Vec<_>>()
    });
    for k in 0..sizes.len() {
        let want: Vec<f32> = (0..sizes[k])
            .map(|i| {
                let per_rank = |r: f32| r * 100.0 + (k * 10 + i) as f32;
                let times = match k {
                    2 => 2.0,
                    0 => 1.0,
                    _ => 0.0,
                };
                (0..3).map(|r| 0.5 * times * per_rank(r as f32)).sum::<f32>()
            })
            .collect();
        for g in &grads {
            assert_eq!(g[k], want, "parameter {k}");
        }
    }
}

#[test]
fn agreements_stop_every_rank_together_and_a_missing_rank_is_a_named_error() {
    let out = on_ranks(local_group(3, LIMIT), |g| {
        let failed = g.agree(if g.rank() == 1 { Err(Error::Data("rank 1's data".into())) } else { Ok(()) }, "a test", Wait::Step);
        let same = g.check_same(42, "a constant");
        let differ = g.check_same(g.rank() as u64, "the rank");
        let bytes = g.broadcast_bytes(g.is_root().then(|| vec![7u8; 100_000]), "a test").unwrap();
        let any = g.any(g.rank() == 2, "a test").unwrap();
        let mut clock = [g.rank() as u64 + 5, 9 - g.rank() as u64];
        g.from_root_u64(&mut clock, "a test").unwrap();
        assert_eq!(clock, [5, 9], "rank 0's values on rank {}", g.rank());
        let lowest = g.conclude(g.rank() >= 1, LIMIT).unwrap();
        (failed.map_err(|e| e.to_string()), same.is_ok(), differ.map_err(|e| e.to_string()), bytes.len(), any, lowest)
    });
    assert_eq!(out[1].0, Err("data: rank 1's data".into()));
    for (r, o) in out.iter().enumerate() {
        if r != 1 {
            assert_eq!(o.0, Err(Error::PeerFailed.to_string()));
        }
        assert!(o.1);
        let want = if r == 0 {
            "distributed training: the ranks disagree on the rank: every rank must see the same files and settings"
        } else {
            "another rank failed (it reports the error)"
        };
        assert_eq!(o.2, Err(want.into()));
        assert_eq!((o.3, o.4, o.5), (100_000, true, Some(1)));
    }
    // A rank that never comes: the wait ends, naming what it waited for.
    let groups = local_group(2, Duration::from_millis(200));
    let err = groups[0].sum_f64(&mut [1.0], "the loss").unwrap_err().to_string();
    assert!(err.contains("waited more than") && err.contains("the loss"), "{err}");
    // An interrupt ends a wait too.
    let groups = local_group(2, LIMIT);
    let flag = Arc::new(std::sync::atomic::AtomicBool::new(true));
    groups[0].set_interrupt(flag);
    let err = groups[0].any(true, "the check for Ctrl-C").unwrap_err().to_string();
    assert!(err.contains("interrupted") && err.contains("Ctrl-C"), "{err}");
}

fn names() -> std::path::PathBuf {
    common::shared("data/names.txt")
}

/// A quick run on names.txt.
fn config(steps: u64) -> RunConfig {
    let mut c = RunConfig::default();
    c.data.path = Some(names());
    c.train.steps = steps;
    c.train.batch_size = 9;
    c.train.eval_every = 10;
    c.train.eval_batches = 5;
    c.train.checkpoint_every = 5;
    c.train.samples = 0;
    c
}

/// `train` (or `resume` to `steps`) on each rank; rank `r > 0` gets the folder `others`
/// (which it must never touch).
fn run_on(n: usize, config: &RunConfig, dir: &Path, others: &Path, resume_to: Option<u64>) -> Vec<convlm::Result<TrainSummary>> {
    on_ranks(local_group(n, LIMIT), |group| {
        let run = RunDir::new(if group.is_root() { dir } else { others });
        let opts = TrainOptions { group, ..TrainOptions::default() };
        match resume_to {
            None => train(config, &run, &opts, &mut |_| {}),
            Some(steps) => resume(&run, &ResumeOptions { steps: Some(steps), ..ResumeOptions::default() }, &opts, &mut |_| {}),
        }
    })
}

fn records(dir: &Path, key: &str) -> Vec<f64> {
    convlm::run::metrics::read_records(&dir.join("metrics.jsonl")).unwrap().iter().filter_map(|r| r[key].as_f64()).collect()
}

fn weights(dir: &Path) -> Vec<f32> {
    convlm::io::load_safetensors(&dir.join("model.safetensors")).unwrap().0.into_iter().flat_map(|(_, t)| t.data().to_vec()).collect()
}

#[test]
fn a_run_on_two_ranks_equals_one_process_and_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let (one, two, resumed, nowhere) = (tmp.path().join("one"), tmp.path().join("two"), tmp.path().join("resumed"), tmp.path().join("nowhere"));
    let cfg = config(20);
    let single = run_on(1, &cfg, &one, &nowhere, None).remove(0).unwrap();
    for r in run_on(2, &cfg, &two, &nowhere, None) {
        let r = r.unwrap();
        assert_eq!((r.steps, r.best_val_loss.is_some()), (20, true));
        assert!((r.final_train_loss.unwrap() - single.final_train_loss.unwrap()).abs() < 1e-5 * single.final_train_loss.unwrap());
    }
    assert!(!nowhere.exists(), "rank 1 created its (unused) run folder");
    for key in ["loss", "val_loss"] {
        let (a, b) = (records(&one, key), records(&two, key));
        assert_eq!(a.len(), b.len(), "{key} records");
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() <= 1e-5 * x.abs(), "{key}: one process {x}, two ranks {y}");
        }
    }
    assert!(max_abs_diff(&weights(&one), &weights(&two)) <= 1e-5);
    // Stopped at step 10 and resumed to 20 on two ranks: the same run, to the bit.
    run_on(2, &config(10), &resumed, &nowhere, None).into_iter().for_each(|r| assert_eq!(r.unwrap().steps, 10));
    run_on(2, &cfg, &resumed, &nowhere, Some(20)).into_iter().for_each(|r| assert_eq!(r.unwrap().steps, 20));
    assert_eq!(records(&resumed, "loss"), records(&two, "loss"));
    assert_eq!(weights(&resumed), weights(&two));
    assert!(!nowhere.exists());
    // A folder that already holds a run: rank 0 says so, rank 1 stops with it.
    let outcomes = run_on(2, &cfg, &two, &nowhere, None);
    assert!(outcomes[0].as_ref().unwrap_err().to_string().contains("already holds a run"));
    assert!(matches!(outcomes[1], Err(Error::PeerFailed)));
    // A batch smaller than the ranks is refused on every rank.
    let mut tiny = config(5);
    tiny.train.batch_size = 1;
    for r in run_on(2, &tiny, &tmp.path().join("tiny"), &nowhere, None) {
        assert!(r.unwrap_err().to_string().contains("batch_size"));
    }
}
