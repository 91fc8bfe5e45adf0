//! W3 "strided+grouped", an **engine-level** workload: its strided, grouped and transposed
//! convolutions are used by no model family, so it is built here directly from `Graph` ops
//! (`../shared/bench/WORKLOADS.md`) to time them forward and backward. Its step is the
//! same sequence as [`crate::run::step::train_step`]'s: zero_grad, forward to the loss,
//! backward, Adam update, with the workers kept awake.

use rand::Rng;

use crate::error::Result;
use crate::nn::{ParamId, ParamStore};
use crate::optim::Optimizer;
use crate::tensor::{threads, Conv1dSpec, ConvTranspose1dSpec, Graph, Padding, Precision, Tensor, Var};

/// Vocabulary, embedding width, batch and length of W3.
pub const W3_DIMS: (usize, usize, usize, usize) = (64, 64, 16, 128);

/// The ops W3 records, on the CPU tape or a GPU tape, so its forward is written once.
trait Tape {
    /// Parameter `id` recorded as a trainable leaf.
    fn param(&mut self, id: ParamId) -> Result<Var>;
    fn embedding(&mut self, w: Var, ids: &[u32], shape: &[usize]) -> Result<Var>;
    fn conv1d(&mut self, x: Var, w: Var, b: Option<Var>, spec: &Conv1dSpec) -> Result<Var>;
    fn conv_transpose1d(&mut self, x: Var, w: Var, b: Option<Var>, spec: &ConvTranspose1dSpec) -> Result<Var>;
    fn relu(&mut self, x: Var) -> Result<Var>;
    fn conv1d_cross_entropy(&mut self, x: Var, w: Var, b: Option<Var>, spec: &Conv1dSpec, targets: &[i64]) -> Result<Var>;
    fn cross_entropy(&mut self, logits: Var, targets: &[i64]) -> Result<Var>;
}

/// The CPU tape over a parameter store.
struct CpuTape<'a> {
    g: &'a mut Graph,
    store: &'a ParamStore,
}

impl Tape for CpuTape<'_> {
    fn param(&mut self, id: ParamId) -> Result<Var> {
        Ok(self.store.record(self.g, id))
    }
    fn embedding(&mut self, w: Var, ids: &[u32], shape: &[usize]) -> Result<Var> {
        self.g.embedding(w, ids, shape)
    }
    fn conv1d(&mut self, x: Var, w: Var, b: Option<Var>, spec: &Conv1dSpec) -> Result<Var> {
        self.g.conv1d(x, w, b, spec)
    }
    fn conv_transpose1d(&mut self, x: Var, w: Var, b: Option<Var>, spec: &ConvTranspose1dSpec) -> Result<Var> {
        self.g.conv_transpose1d(x, w, b, spec)
    }
    fn relu(&mut self, x: Var) -> Result<Var> {
        Ok(self.g.relu(x))
    }
    fn conv1d_cross_entropy(&mut self, x: Var, w: Var, b: Option<Var>, spec: &Conv1dSpec, targets: &[i64]) -> Result<Var> {
        self.g.conv1d_cross_entropy(x, w, b, spec, targets)
    }
    fn cross_entropy(&mut self, logits: Var, targets: &[i64]) -> Result<Var> {
        self.g.cross_entropy(logits, targets)
    }
}

/// A GPU tape over the parameters on the device (their gradients written in place).
#[cfg(feature = "gpu")]
struct GpuTape<'a> {
    g: &'a mut crate::tensor::gpu::GpuGraph,
    params: &'a crate::nn::device::DeviceParams,
}

#[cfg(feature = "gpu")]
impl Tape for GpuTape<'_> {
    fn param(&mut self, id: ParamId) -> Result<Var> {
        self.g.param(self.params.value(id).clone(), Some(self.params.grad(id).clone()), id.0)
    }
    fn embedding(&mut self, w: Var, ids: &[u32], shape: &[usize]) -> Result<Var> {
        self.g.embedding(w, ids, shape)
    }
    fn conv1d(&mut self, x: Var, w: Var, b: Option<Var>, spec: &Conv1dSpec) -> Result<Var> {
        self.g.conv1d(x, w, b, spec)
    }
    fn conv_transpose1d(&mut self, x: Var, w: Var, b: Option<Var>, spec: &ConvTranspose1dSpec) -> Result<Var> {
        self.g.conv_transpose1d(x, w, b, spec)
    }
    fn relu(&mut self, x: Var) -> Result<Var> {
        self.g.activation(x, crate::tensor::Activation::Relu)
    }
    fn conv1d_cross_entropy(&mut self, x: Var, w: Var, b: Option<Var>, spec: &Conv1dSpec, targets: &[i64]) -> Result<Var> {
        self.g.conv1d_cross_entropy(x, w, b, spec, targets)
    }
    fn cross_entropy(&mut self, logits: Var, targets: &[i64]) -> Result<Var> {
        self.g.cross_entropy(logits, targets)
    }
}

/// A conv layer's parameters and spec.
struct Conv {
    w: ParamId,
    b: ParamId,
    spec: Spec,
}

enum Spec {
    Conv(Conv1dSpec),
    Transpose(ConvTranspose1dSpec),
}

impl Conv {
    /// Registers `{name}.weight`/`{name}.bias` with PyTorch's default U(±1/sqrt(fan_in))
    /// (fan_in = weight.size(1) · kernel for Conv1d and ConvTranspose1d alike).
    fn new(store: &mut ParamStore, name: &str, spec: Spec, rng: &mut impl Rng) -> Self {
        let (w_shape, out_ch) = match &spec {
            Spec::Conv(s) => (s.weight_shape(), s.out_channels),
            Spec::Transpose(s) => (s.weight_shape(), s.out_channels),
        };
        let bound = 1.0 / ((w_shape[1] * w_shape[2]) as f32).sqrt();
        let w = store.add(format!("{name}.weight"), Tensor::uniform(w_shape.to_vec(), bound, rng));
        let b = store.add(format!("{name}.bias"), Tensor::uniform(vec![out_ch], bound, rng));
        Conv { w, b, spec }
    }

    fn forward(&self, t: &mut impl Tape, x: Var) -> Result<Var> {
        let (w, b) = (t.param(self.w)?, t.param(self.b)?);
        match &self.spec {
            Spec::Conv(s) => t.conv1d(x, w, Some(b), s),
            Spec::Transpose(s) => t.conv_transpose1d(x, w, Some(b), s),
        }
    }

    /// The layer as the output layer fused with the loss against `targets`.
    fn loss(&self, t: &mut impl Tape, x: Var, targets: &[i64]) -> Result<Var> {
        match &self.spec {
            Spec::Conv(s) => {
                let (w, b) = (t.param(self.w)?, t.param(self.b)?);
                t.conv1d_cross_entropy(x, w, Some(b), s, targets)
            }
            Spec::Transpose(_) => {
                let logits = self.forward(t, x)?;
                t.cross_entropy(logits, targets)
            }
        }
    }
}

fn conv(c_in: usize, c_out: usize, k: usize, stride: usize, padding: Padding, dilation: usize, groups: usize) -> Spec {
    Spec::Conv(Conv1dSpec { in_channels: c_in, out_channels: c_out, kernel_size: k, stride, padding, dilation, groups })
}

/// The W3 model: embedding, a strided grouped conv, a dilated grouped conv, a transposed
/// conv back to the input length, a 1×1 output conv fused with the loss.
pub struct W3Model {
    store: ParamStore,
    embedding: ParamId,
    conv1: Conv,
    conv2: Conv,
    deconv: Conv,
    conv_out: Conv,
}

impl W3Model {
    /// Builds W3 with parameters drawn from `rng` (72,064 parameters).
    pub fn new(rng: &mut impl Rng) -> Self {
        let (v, e, ..) = W3_DIMS;
        let mut store = ParamStore::new();
        let embedding = store.add("embedding.weight", Tensor::randn(vec![v, e], 1.0, rng));
        let conv1 = Conv::new(&mut store, "conv1", conv(e, 128, 3, 2, Padding::Symmetric(1), 1, 4), rng);
        let conv2 = Conv::new(&mut store, "conv2", conv(128, 128, 3, 1, Padding::Symmetric(2), 2, 2), rng);
        let deconv =
            ConvTranspose1dSpec { in_channels: 128, out_channels: 64, kernel_size: 4, stride: 2, padding: 1, output_padding: 0, dilation: 1, groups: 1 };
        let deconv = Conv::new(&mut store, "deconv", Spec::Transpose(deconv), rng);
        let conv_out = Conv::new(&mut store, "conv_out", conv(64, v, 1, 1, Padding::Symmetric(0), 1, 1), rng);
        W3Model { store, embedding, conv1, conv2, deconv, conv_out }
    }

    /// The parameters.
    pub fn store(&self) -> &ParamStore {
        &self.store
    }

    /// Mean cross-entropy of predicting `tokens` (B, L) from themselves (W3 is not causal).
    fn loss(&self, t: &mut impl Tape, tokens: &[u32], targets: &[i64]) -> Result<Var> {
        let (_, _, batch, len) = W3_DIMS;
        let table = t.param(self.embedding)?;
        let h = t.embedding(table, tokens, &[batch, len])?; // (B, L, E)
        let h = self.conv1.forward(t, h)?; // (B, L/2, 128)
        let h = t.relu(h)?;
        let h = self.conv2.forward(t, h)?; // (B, L/2, 128)
        let h = t.relu(h)?;
        let h = self.deconv.forward(t, h)?; // (B, L, 64)
        self.conv_out.loss(t, h, targets) // (B·L, V) fused into the mean loss
    }

    /// One step on the fixed batch `tokens`: zero_grad, loss, backward, update, with the
    /// products in `precision`. Returns the loss before the update.
    pub fn step(&mut self, optimizer: &mut Optimizer, tokens: &[u32], targets: &[i64], precision: Precision) -> Result<f64> {
        let lr = optimizer.config().lr;
        threads::with_workers_awake(|| {
            self.store.zero_grad();
            let mut g = Graph::new(true);
            g.set_precision(precision)?;
            let loss = self.loss(&mut CpuTape { g: &mut g, store: &self.store }, tokens, targets)?;
            g.backward(loss)?;
            self.store.accumulate_grads(&g);
            optimizer.step(&mut self.store, lr);
            Ok(g.value(loss).data()[0] as f64)
        })
    }

    /// One step on a GPU (`device` holds this model's parameters and Adam state there): the
    /// same sequence, the update on the device. Returns the loss before the update.
    #[cfg(feature = "gpu")]
    pub fn step_on_device(&self, device: &mut W3Device, tokens: &[u32], targets: &[i64]) -> Result<f64> {
        let mut g = crate::tensor::gpu::GpuGraph::new(device.params.device(), true);
        let loss = self.loss(&mut GpuTape { g: &mut g, params: &device.params }, tokens, targets)?;
        g.backward(loss)?;
        device.status.begin(g.value(loss))?;
        drop(g);
        device.status.grad_norm(&device.params, None)?;
        device.optimizer.step(&device.params, device.lr, &device.status)?;
        let report = device.status.read()?;
        if report.skipped || report.bad_param.is_some() {
            return Err(crate::error::Error::NonFinite { step: device.optimizer.steps_taken(), what: "the W3 loss or an update".into() });
        }
        Ok(report.loss as f64)
    }
}

/// W3's parameters, Adam state and step status on a GPU.
#[cfg(feature = "gpu")]
pub struct W3Device {
    params: crate::nn::device::DeviceParams,
    optimizer: crate::optim::device::DeviceOptimizer,
    status: crate::optim::device::StepStatus,
    lr: f32,
}

#[cfg(feature = "gpu")]
impl W3Device {
    /// `model`'s parameters and `optimizer`'s state copied to `device`.
    pub fn new(device: &crate::tensor::gpu::GpuDevice, model: &W3Model, optimizer: &Optimizer) -> Result<Self> {
        let params = crate::nn::device::DeviceParams::upload(device, model.store(), &crate::nn::Buffers::default())?;
        let opt = crate::optim::device::DeviceOptimizer::upload(optimizer, model.store(), &params)?;
        let status = crate::optim::device::StepStatus::new(&params)?;
        Ok(W3Device { params, optimizer: opt, status, lr: optimizer.config().lr })
    }

    /// The device.
    pub fn device(&self) -> &crate::tensor::gpu::GpuDevice {
        self.params.device()
    }
}
