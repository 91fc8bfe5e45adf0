//! Every family's golden file (../shared/golden/models: PyTorch logits, loss, every gradient,
//! five AdamW steps, BatchNorm buffers and eval logits) on every device: the same test body
//! runs on the CPU engine and on a GPU (`device_test!`), within the tolerances the golden
//! files state for an f32 implementation (atol 1e-4, rtol 1e-3). Without a GPU adapter the
//! GPU half prints `skipped: <reason>` (a failure under `CONVLM_REQUIRE_GPU=1`).

use crate::common::{assert_close, ints, model_config, named, read_json, shared, tensor};
use crate::device_test;
use convlm::models::Model;
use convlm::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use convlm::tensor::{Device, Graph};
use serde_json::Value;

const ATOL: f64 = 1e-4;
const RTOL: f64 = 1e-3;

/// What a pass gives: the logits, the loss and the gradients by parameter name.
type Pass = (Vec<f32>, f32, Vec<(String, Vec<f32>)>);

/// A model and, on a GPU, its parameters there.
struct On {
    model: Model,
    #[cfg(feature = "gpu")]
    gpu: Option<convlm::nn::device::DeviceParams>,
}

impl On {
    fn new(model: Model, device: Device) -> Self {
        #[cfg(feature = "gpu")]
        {
            let gpu = (!device.is_cpu()).then(|| {
                let d = convlm::tensor::gpu::GpuDevice::open(device).unwrap();
                convlm::nn::device::DeviceParams::upload(&d, model.params(), model.buffers()).unwrap()
            });
            On { model, gpu }
        }
        #[cfg(not(feature = "gpu"))]
        {
            assert!(device.is_cpu());
            On { model }
        }
    }

    /// Forward (training or eval mode), then, when `targets` are given, the cross-entropy of
    /// the logits and its backward: (logits, loss, gradients by parameter name).
    fn pass(&mut self, training: bool, ids: &[u32], shape: &[usize], targets: Option<&[i64]>) -> Pass {
        #[cfg(feature = "gpu")]
        if let Some(params) = &self.gpu {
            let mut g = convlm::tensor::gpu::GpuGraph::new(params.device(), training);
            let logits = self.model.forward_on_device(&mut g, params, ids, shape).unwrap();
            let values = g.value(logits).to_vec().unwrap();
            let Some(targets) = targets else { return (values, 0.0, Vec::new()) };
            let loss = g.cross_entropy(logits, targets).unwrap();
            let loss_value = g.value(loss).to_vec().unwrap()[0];
            g.backward(loss).unwrap();
            drop(g);
            let mut store = self.model.params().clone();
            params.download_grads(&mut store).unwrap();
            let grads = store.params().iter().map(|p| (p.name.clone(), p.grad.data().to_vec())).collect();
            return (values, loss_value, grads);
        }
        self.model.params_mut().zero_grad();
        let mut g = Graph::new(training);
        let logits = self.model.forward(&mut g, ids, shape).unwrap();
        let values = g.value(logits).data().to_vec();
        let Some(targets) = targets else { return (values, 0.0, Vec::new()) };
        let loss = g.cross_entropy(logits, targets).unwrap();
        let loss_value = g.value(loss).data()[0];
        g.backward(loss).unwrap();
        self.model.params_mut().accumulate_grads(&g);
        let grads = self.model.params().params().iter().map(|p| (p.name.clone(), p.grad.data().to_vec())).collect();
        (values, loss_value, grads)
    }

    /// `steps` AdamW updates, each after a training pass: the loss before each.
    fn adamw(&mut self, cfg: &OptimizerConfig, steps: usize, ids: &[u32], shape: &[usize], targets: &[i64]) -> Vec<f32> {
        let mut opt = Optimizer::new(cfg, self.model.params()).unwrap();
        #[cfg(feature = "gpu")]
        if let Some(params) = &self.gpu {
            use convlm::optim::device::{DeviceOptimizer, StepStatus};
            let mut dev_opt = DeviceOptimizer::upload(&opt, self.model.params(), params).unwrap();
            let status = StepStatus::new(params).unwrap();
            let mut losses = Vec::new();
            for _ in 0..steps {
                let mut g = convlm::tensor::gpu::GpuGraph::new(params.device(), true);
                let logits = self.model.forward_on_device(&mut g, params, ids, shape).unwrap();
                let loss = g.cross_entropy(logits, targets).unwrap();
                g.backward(loss).unwrap();
                status.begin(g.value(loss)).unwrap();
                drop(g);
                status.grad_norm(params, None).unwrap();
                dev_opt.step(params, cfg.lr, &status).unwrap();
                let report = status.read().unwrap();
                assert!(!report.skipped && report.bad_param.is_none(), "{report:?}");
                losses.push(report.loss);
            }
            let (store, buffers) = self.model.state_mut();
            params.download(store, buffers).unwrap();
            return losses;
        }
        let mut losses = Vec::new();
        for _ in 0..steps {
            let (_, loss, _) = self.pass(true, ids, shape, Some(targets));
            opt.step(self.model.params_mut(), cfg.lr);
            losses.push(loss);
        }
        losses
    }
}

fn golden(family: &str, device: Device) {
    let path = shared(&format!("golden/models/{family}.json"));
    let doc = read_json(&path);
    let (config, vocab) = model_config(&doc);
    let mut model = Model::new(&config, vocab, 0).expect("model builds");
    model.params_mut().load_named(named(&doc["params"]), &path).expect("golden params load");
    let (shape, x) = ints(&doc["x"]);
    let ids: Vec<u32> = x.iter().map(|&v| v as u32).collect();
    let (_, targets) = ints(&doc["targets"]);
    let mut on = On::new(model, device);
    let (logits, loss, grads) = on.pass(true, &ids, &shape, Some(&targets));
    let tag = format!("{family} on {device}");
    assert_close(&format!("{tag}: logits"), &logits, tensor(&doc["logits"]).data(), ATOL, RTOL);
    assert_close(&format!("{tag}: loss"), &[loss], &[doc["loss"].as_f64().unwrap() as f32], ATOL, RTOL);
    for (name, want) in named(&doc["grads"]) {
        let got = &grads.iter().find(|(n, _)| *n == name).unwrap_or_else(|| panic!("{tag}: no gradient of {name}")).1;
        assert_close(&format!("{tag}: grad {name}"), got, want.data(), ATOL, RTOL);
    }
    // The five AdamW steps continue from this model (its BatchNorm statistics already moved
    // once, as in PyTorch).
    adamw(&tag, &doc, &mut on, &ids, &shape, &targets);
}

fn adamw(tag: &str, doc: &Value, on: &mut On, ids: &[u32], shape: &[usize], targets: &[i64]) {
    let a = &doc["adamw"];
    let betas = a["betas"].as_array().unwrap();
    let cfg = OptimizerConfig {
        kind: OptimizerKind::AdamW,
        lr: a["lr"].as_f64().unwrap() as f32,
        momentum: 0.0,
        betas: (betas[0].as_f64().unwrap() as f32, betas[1].as_f64().unwrap() as f32),
        eps: a["eps"].as_f64().unwrap() as f32,
        weight_decay: a["weight_decay"].as_f64().unwrap() as f32,
        ema_decay: 0.0,
    };
    let want: Vec<f32> = doc["losses"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    let losses = on.adamw(&cfg, want.len(), ids, shape, targets);
    for (step, (got, want)) in losses.iter().zip(&want).enumerate() {
        assert_close(&format!("{tag}: loss before AdamW step {step}"), &[*got], &[*want], 1e-3, 1e-3);
    }
    for (name, want) in named(&doc["final_params"]) {
        let p = on.model.params().find(&name).unwrap();
        assert_close(&format!("{tag}: final {name}"), p.value.data(), want.data(), ATOL, RTOL);
    }
    if let Some(buffers) = doc.get("final_buffers") {
        let mine = on.model.buffers().named();
        for (name, want) in named(buffers).iter().filter(|(n, _)| !n.ends_with("num_batches_tracked")) {
            let (_, got) = mine.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("{tag}: no buffer {name}"));
            assert_close(&format!("{tag}: buffer {name}"), got.data(), want.data(), ATOL, RTOL);
        }
        let (logits, _, _) = on.pass(false, ids, shape, None);
        assert_close(&format!("{tag}: eval logits"), &logits, tensor(&doc["eval_logits"]).data(), ATOL, RTOL);
    }
}

device_test!(mlp, |device| { golden("mlp", device) });
device_test!(causal_cnn, |device| { golden("causal-cnn", device) });
device_test!(dilated, |device| { golden("dilated", device) });
device_test!(hierarchical, |device| { golden("hierarchical", device) });
device_test!(wavenet, |device| { golden("wavenet", device) });
device_test!(gated_cnn, |device| { golden("gated-cnn", device) });
device_test!(pixelcnn, |device| { golden("pixelcnn", device) });
device_test!(hyena, |device| { golden("hyena", device) });

/// The fused head (`Model::loss_on_device`, as a GPU training step runs it) against the golden
/// loss and every golden gradient.
#[cfg(feature = "gpu")]
#[test]
fn the_fused_head_on_the_gpu_matches_every_golden_family() {
    if !crate::common::gpu::available(Device::Gpu) {
        return;
    }
    let d = convlm::tensor::gpu::GpuDevice::open(Device::Gpu).unwrap();
    for family in convlm::models::FAMILIES {
        let path = shared(&format!("golden/models/{family}.json"));
        let doc = read_json(&path);
        let (config, vocab) = model_config(&doc);
        let mut model = Model::new(&config, vocab, 0).unwrap();
        model.params_mut().load_named(named(&doc["params"]), &path).unwrap();
        let params = convlm::nn::device::DeviceParams::upload(&d, model.params(), model.buffers()).unwrap();
        let (shape, x) = ints(&doc["x"]);
        let ids: Vec<u32> = x.iter().map(|&v| v as u32).collect();
        let (_, targets) = ints(&doc["targets"]);
        let mut g = convlm::tensor::gpu::GpuGraph::new(&d, true);
        let loss = model.loss_on_device(&mut g, &params, &ids, &shape, &targets, 0).unwrap();
        assert_close(&format!("{family}: fused loss on the gpu"), &g.value(loss).to_vec().unwrap(), &[doc["loss"].as_f64().unwrap() as f32], ATOL, RTOL);
        g.backward(loss).unwrap();
        drop(g);
        params.download_grads(model.params_mut()).unwrap();
        for (name, want) in named(&doc["grads"]) {
            let p = model.params().find(&name).unwrap();
            assert_close(&format!("{family}: fused grad {name} on the gpu"), p.grad.data(), want.data(), ATOL, RTOL);
        }
    }
}
