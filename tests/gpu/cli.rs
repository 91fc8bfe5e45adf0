//! The GPU through the binary: `devices`, `selftest`, training that matches the CPU run,
//! runs that resume on the other device and continue as a run there would, exact resume on
//! the GPU, greedy samples equal to the CPU's, a bench's report of the device's buffer pool,
//! and the named errors (no adapter, an index
//! past the adapters, a bad `--device`). Without an adapter the GPU tests print
//! `skipped: <reason>` (a failure under `CONVLM_REQUIRE_GPU=1`); the error tests run anyway.

use std::path::Path;

use crate::common::cli::{command, fails, shared_arg, stderr, stdout, succeeds, train_args};
use crate::common::gpu::available;
use convlm::tensor::Device;

/// A small dilated CNN on names.txt: quick on a software adapter too.
const SMALL: &str = "--batch-size 16 --warmup 5 --eval-every 20 --threads 2";
/// The model of most runs here.
const DILATED: &str = "--model dilated --set model.channels=32 --set model.n_embd=16";

fn names() -> std::path::PathBuf {
    crate::common::shared("data/names.txt")
}

/// The values of `key` in a run's metrics.jsonl, in order.
fn logged(run: &Path, key: &str) -> Vec<f64> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    text.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).filter_map(|v| v.get(key).and_then(|l| l.as_f64())).collect()
}

/// The training losses of a run, step by step.
fn losses(run: &Path) -> Vec<f64> {
    logged(run, "loss")
}

/// The validation losses of a run.
fn val_losses(run: &Path) -> Vec<f64> {
    logged(run, "val_loss")
}

fn train(out: &Path, extra: &str) -> std::process::Output {
    succeeds(&train_args(&names(), out, &format!("{SMALL} {DILATED} {extra}")))
}

/// Asserts that steps `from..to` (1-based) of two runs have losses within `tol`.
fn close(a: &[f64], b: &[f64], from: usize, to: usize, tol: f64, what: &str) {
    assert!(a.len() >= to && b.len() >= to, "{what}: {} and {} steps logged", a.len(), b.len());
    for i in from - 1..to {
        assert!((a[i] - b[i]).abs() <= tol, "{what}: step {} loss {} vs {}", i + 1, a[i], b[i]);
    }
}

#[test]
fn a_tied_hyena_trains_on_the_gpu_as_on_the_cpu() {
    if !available(Device::Gpu) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cpu, gpu) = (dir.path().join("cpu"), dir.path().join("gpu"));
    let model = "--model hyena --set model.d_model=16 --set model.n_layers=1 --set model.max_len=32 --set model.filter_width=8 --set model.tie_embeddings=true";
    for (out, device) in [(&cpu, "cpu"), (&gpu, "gpu")] {
        succeeds(&train_args(&names(), out, &format!("{SMALL} {model} --steps 20 --device {device}")));
    }
    close(&losses(&gpu), &losses(&cpu), 1, 20, 1e-3, "tied hyena, gpu vs cpu");
    // One table trained through both uses, written under both names.
    let bytes = std::fs::read(gpu.join("model.safetensors")).unwrap();
    let t = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (emb, head) = (t.tensor("embedding.weight").unwrap(), t.tensor("head.weight").unwrap());
    assert_eq!(emb.data(), head.data());
}

#[test]
fn devices_lists_the_cpu_and_the_adapters() {
    if !available(Device::Gpu) {
        return;
    }
    let out = succeeds(&["devices"]);
    let text = stdout(&out);
    assert!(text.starts_with("cpu "), "{text}");
    assert!(text.lines().any(|l| l.starts_with("gpu:0 ") && (l.contains("Vulkan") || l.contains("Metal") || l.contains("Dx12"))), "{text}");
}

#[test]
fn selftest_compares_every_kernel_and_passes() {
    if !available(Device::Gpu) {
        return;
    }
    let out = succeeds(&["selftest", "--device", "gpu"]);
    let text = stdout(&out);
    assert!(text.contains("every GPU kernel agrees with the CPU engine"), "{text}");
    for row in ["conv_transpose1d", "masked_conv2d", "long_conv", "adamw: parameters after 3 steps", "hyena: every gradient"] {
        assert!(text.lines().any(|l| l.starts_with(row) && l.ends_with("ok")), "no passing row {row}:\n{text}");
    }
    assert!(stderr(&out).contains("device: gpu "), "the adapter is named at start");
}

#[test]
fn fifty_gpu_steps_match_the_cpu_run() {
    if !available(Device::Gpu) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cpu, gpu) = (dir.path().join("cpu"), dir.path().join("gpu"));
    train(&cpu, "--steps 50");
    let out = train(&gpu, "--steps 50 --device gpu");
    let err = stderr(&out);
    assert!(err.contains("device: ") && (err.contains("Vulkan") || err.contains("Metal") || err.contains("Dx12")), "{err}");
    close(&losses(&gpu), &losses(&cpu), 1, 50, 1e-3, "gpu vs cpu");
    // The run folder is the same as a CPU run's: config.json records the device, the
    // checkpoint has the same tensors.
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(gpu.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["train"]["device"], "gpu", "{config}");
    let cpu_ckpt = std::fs::read(cpu.join("model.safetensors")).unwrap();
    let gpu_ckpt = std::fs::read(gpu.join("model.safetensors")).unwrap();
    let names = |b: &[u8]| {
        let t = safetensors::SafeTensors::deserialize(b).unwrap();
        let mut n: Vec<(String, Vec<usize>)> = t.tensors().into_iter().map(|(n, v)| (n, v.shape().to_vec())).collect();
        n.sort();
        n
    };
    assert_eq!(names(&cpu_ckpt), names(&gpu_ckpt));
}

#[test]
fn runs_resume_on_the_other_device_and_exactly_on_the_gpu() {
    if !available(Device::Gpu) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    train(&p("cpu"), "--steps 40");
    train(&p("gpu"), "--steps 40 --device gpu");
    // GPU → CPU: steps 21..40 on the CPU continue as the CPU run does.
    train(&p("g2c"), "--steps 20 --device gpu");
    let out = succeeds(&["train", "--resume", "--out", p("g2c").to_str().unwrap(), "--steps", "40", "--device", "cpu", "-q"]);
    assert!(!stderr(&out).contains("device: "), "the resumed part runs on the CPU");
    close(&losses(&p("g2c")), &losses(&p("cpu")), 21, 40, 1e-3, "gpu then cpu vs cpu");
    // CPU → GPU.
    train(&p("c2g"), "--steps 20");
    let out = succeeds(&["train", "--resume", "--out", p("c2g").to_str().unwrap(), "--steps", "40", "--device", "gpu", "-q"]);
    assert!(stderr(&out).contains("device: "), "the resumed part runs on the GPU");
    close(&losses(&p("c2g")), &losses(&p("cpu")), 21, 40, 1e-3, "cpu then gpu vs cpu");
    // GPU → GPU (the run's own device, from config.json): exactly the uninterrupted run.
    train(&p("g2g"), "--steps 20 --device gpu");
    succeeds(&["train", "--resume", "--out", p("g2g").to_str().unwrap(), "--steps", "40", "-q"]);
    assert_eq!(losses(&p("g2g")), losses(&p("gpu")), "an exact resume on the GPU");
}

#[test]
fn greedy_samples_on_the_gpu_are_the_cpus() {
    if !available(Device::Gpu) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (name, extra) in [
        ("dilated", "--steps 20 --device gpu --model dilated --set model.channels=32 --set model.n_embd=16"),
        ("hyena", "--steps 10 --device gpu --model hyena --set model.d_model=16 --set model.n_layers=2 --set model.max_len=24 --set model.filter_width=8"),
    ] {
        let run = dir.path().join(name);
        let args: Vec<String> = train_args(&names(), &run, &format!("{SMALL} {extra}"));
        succeeds(&args);
        let sample =
            |device: &str| stdout(&succeeds(&["sample", "--run", run.to_str().unwrap(), "-n", "4", "--temperature", "0", "--seed", "3", "--device", device]));
        let (cpu, gpu) = (sample("cpu"), sample("gpu"));
        assert_eq!(cpu, gpu, "{name}: greedy samples");
        assert!(cpu.lines().filter(|l| !l.trim().is_empty()).count() == 4, "{cpu}");
        let eval = |device: &str| stdout(&succeeds(&["eval", "--run", run.to_str().unwrap(), "--device", device]));
        let (a, b) = (eval("cpu"), eval("gpu"));
        let loss = |s: &str| s.split("loss ").nth(1).and_then(|t| t.split(' ').next()).and_then(|v| v.parse::<f64>().ok()).unwrap();
        assert!((loss(&a) - loss(&b)).abs() <= 1e-3, "{name}: eval {a} vs {b}");
    }
}

#[test]
fn no_adapter_says_what_to_install() {
    let dir = tempfile::tempdir().unwrap();
    // wgpu's own WGPU_BACKEND: a backend this machine has no adapter for.
    let backend = if cfg!(target_os = "windows") { "metal" } else { "dx12" };
    let args = train_args(&names(), &dir.path().join("run"), &format!("{SMALL} {DILATED} --steps 2 --device gpu"));
    let out = command().args(&args).env("WGPU_BACKEND", backend).output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    if cfg!(feature = "gpu") {
        assert!(
            err.contains("no GPU adapter found") && err.contains("mesa-vulkan-drivers libvulkan1") && err.contains(&format!("WGPU_BACKEND={backend}")),
            "{err}"
        );
        let listed = command().arg("devices").env("WGPU_BACKEND", backend).output().unwrap();
        assert!(stdout(&listed).contains("no GPU adapter found"), "{}", stdout(&listed));
    } else {
        assert!(err.contains("no GPU support"), "{err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_device_past_the_adapters_or_not_a_device_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    fails(2, &["train", "--device", "tpu", "--steps", "1"], &["tpu", "cpu, gpu or gpu:N"]);
    fails(2, &["bench", "--workload", "w2", "--device", "gpu:x"], &["gpu:x"]);
    if !available(Device::Gpu) {
        return;
    }
    let args = train_args(&names(), &run, &format!("{SMALL} {DILATED} --steps 2 --device gpu:99"));
    fails(1, &args, &["gpu:99 does not exist", "gpu:0 "]);
    assert!(!run.join("model.safetensors").exists());
    let _ = shared_arg;
}

#[test]
fn a_gpu_bench_reports_the_device_pool_beside_the_cpu_one() {
    if !available(Device::Gpu) {
        return;
    }
    let bench = |steps: &str| -> serde_json::Value {
        let out = succeeds(&["bench", "--workload", "w2", "--steps", steps, "--warmup", "1", "--device", "gpu"]);
        serde_json::from_str(stdout(&out).lines().last().unwrap()).unwrap()
    };
    let (two, four) = (bench("2"), bench("4"));
    let (pool, pool4) = (&two["device_memory"], &four["device_memory"]);
    assert_eq!(pool["device"], two["device"], "the pool names the adapter the steps ran on: {two}");
    assert_eq!(two["memory"]["pool"]["device"], "cpu", "beside the CPU's own: {two}");
    assert!(pool["kept_bytes"].as_u64().unwrap() > 0 && pool["budget_bytes"].as_u64() == Some(u64::MAX), "{pool}");
    // The first step makes every buffer; each later step takes the same number, all from
    // the pool: two more steps, twice the hits and no new buffer.
    let counts = |p: &serde_json::Value| (p["tape"]["hits"].as_u64().unwrap(), p["tape"]["misses"].as_u64().unwrap());
    let ((hits, misses), (hits4, misses4)) = (counts(pool), counts(pool4));
    assert!(hits > 0 && misses > 0, "{pool}");
    assert_eq!((hits4, misses4), (2 * hits, misses), "{pool} then {pool4}");
    // A CPU bench has no device pool.
    let cpu = succeeds(&["bench", "--workload", "w2", "--steps", "1", "--warmup", "0"]);
    assert!(!stdout(&cpu).contains("device_memory"), "{}", stdout(&cpu));
}

/// The last good checkpoint of a run: (step, parameter values by name).
fn checkpoint(run: &Path) -> (u64, Vec<(String, Vec<f32>)>) {
    let dir = convlm::run::RunDir::new(run);
    let config = dir.load_config().unwrap();
    let tok = dir.load_tokenizer().unwrap();
    let mut model = convlm::models::Model::new(&config.model, tok.vocab_size(), config.seed).unwrap();
    let mut opt = convlm::optim::Optimizer::new(&config.optimizer, model.params()).unwrap();
    let state = dir.load_checkpoint(&mut model, &mut opt, &config, &tok).unwrap();
    (state.step, model.params().params().iter().map(|p| (p.name.clone(), p.value.data().to_vec())).collect())
}

#[test]
fn a_gpu_run_that_diverges_names_the_step_and_keeps_the_last_good_state() {
    if !available(Device::Gpu) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A non-finite loss: the update is skipped on the device, the model is the last good state.
    let run = dir.path().join("loss");
    let base = "--batch-size 16 --eval-every 20 --threads 2 --warmup 0";
    let args = train_args(&names(), &run, &format!("{base} {DILATED} --steps 30 --device gpu --optimizer sgd --lr 1e30 --clip-grad 0"));
    let err = fails(1, &args, &["training diverged at step ", "is not finite", "the last good checkpoint"]);
    let step: u64 = err.split("training diverged at step ").nth(1).and_then(|r| r.split(':').next()).and_then(|s| s.parse().ok()).unwrap();
    let (saved, params) = checkpoint(&run);
    assert_eq!(saved, step - 1, "{err}");
    assert!(params.iter().all(|(_, v)| v.iter().all(|x| x.is_finite())));
    let mut resume = args.clone();
    resume.insert(1, "--resume".into());
    fails(1, &resume, &[&format!("training diverged at step {step}:")]);

    // An update that overflows in place: the last good state is rebuilt by replaying the
    // steps since the last checkpoint on the device, and equals a run stopped there.
    let overflow = |run: &Path, steps: u64| {
        train_args(&names(), run, &format!("{base} {DILATED} --steps {steps} --device gpu --checkpoint-every 5 --optimizer sgd --lr 10 --clip-grad 0 --schedule step --set schedule.step_size=12 --set schedule.gamma=1e38"))
    };
    let run = dir.path().join("overflow");
    fails(1, &overflow(&run, 40), &["training diverged at step 13: parameter ", "after the update is not finite", "the last good checkpoint (step 12)"]);
    let clean = dir.path().join("clean");
    succeeds(&overflow(&clean, 12));
    assert_eq!(checkpoint(&run), checkpoint(&clean), "the replayed state is the uninterrupted run's after step 12");
}

#[test]
fn bf16_on_a_gpu_is_refused_before_anything_is_written() {
    // Checked before any adapter is opened: runs without one too.
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let args = train_args(&names(), &run, &format!("{SMALL} {DILATED} --steps 5 --device gpu --precision bf16"));
    fails(1, &args, &["gpu: --precision bf16 runs on the CPU only", "--precision fp32, or --device cpu"]);
    assert!(!run.join("model.safetensors").exists() && !run.join("config.json").exists(), "nothing is written");
}

#[test]
fn a_run_with_a_weight_average_on_the_gpu_is_the_cpu_run_and_resumes_exactly() {
    if !available(Device::Gpu) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    train(&p("cpu"), "--steps 40 --ema-decay 0.9");
    train(&p("gpu"), "--steps 40 --ema-decay 0.9 --device gpu");
    close(&losses(&p("gpu")), &losses(&p("cpu")), 1, 40, 1e-3, "averaged run, gpu vs cpu");
    // The evaluations (steps 20 and 40) score the average on both devices, and both export it.
    let (vg, vc) = (val_losses(&p("gpu")), val_losses(&p("cpu")));
    assert_eq!(vg.len(), 2, "{vg:?}");
    close(&vg, &vc, 1, 2, 1e-3, "validation of the average, gpu vs cpu");
    let (_, cpu_avg) = checkpoint_named(&p("cpu"), "ema.");
    let (_, gpu_avg) = checkpoint_named(&p("gpu"), "ema.");
    assert!(!cpu_avg.is_empty());
    for ((name, c), (_, g)) in cpu_avg.iter().zip(&gpu_avg) {
        let worst = c.iter().zip(g).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst <= 1e-3, "{name}: the averages differ by {worst}");
    }
    let exported = std::fs::read(p("gpu").join("model.safetensors")).unwrap();
    let t = safetensors::SafeTensors::deserialize(&exported).unwrap();
    for (name, g) in &gpu_avg {
        let bytes = t.tensor(name).unwrap();
        let values: Vec<f32> = bytes.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        assert_eq!(&values, g, "model.safetensors holds the average of {name}");
    }
    // Stopped at step 20 and resumed on the GPU: exactly the uninterrupted run.
    train(&p("g2g"), "--steps 20 --ema-decay 0.9 --device gpu");
    succeeds(&["train", "--resume", "--out", p("g2g").to_str().unwrap(), "--steps", "40", "-q"]);
    assert_eq!(losses(&p("g2g")), losses(&p("gpu")));
    assert_eq!(val_losses(&p("g2g")), vg);
    assert_eq!(std::fs::read(p("g2g").join("model.safetensors")).unwrap(), exported);
}

/// The optimizer state in a run's checkpoint whose names start with `prefix` (the prefix cut
/// off), sorted.
fn checkpoint_named(run: &Path, prefix: &str) -> (u64, Vec<(String, Vec<f32>)>) {
    let dir = convlm::run::RunDir::new(run);
    let config = dir.load_config().unwrap();
    let tok = dir.load_tokenizer().unwrap();
    let mut model = convlm::models::Model::new(&config.model, tok.vocab_size(), config.seed).unwrap();
    let mut opt = convlm::optim::Optimizer::new(&config.optimizer, model.params()).unwrap();
    let state = dir.load_checkpoint(&mut model, &mut opt, &config, &tok).unwrap();
    let mut out: Vec<_> = opt.state_tensors().into_iter().filter_map(|(n, t)| Some((n.strip_prefix(prefix)?.to_string(), t.data().to_vec()))).collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    (state.step, out)
}
