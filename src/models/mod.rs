//! Layer 3: the model families of reference/models.py behind one [`Model`] type.
//!
//! [`ModelConfig`] selects the family by name (`"family": "wavenet"` in JSON/TOML); the rest
//! of the program only sees [`Model`]: `forward` over a batch, incremental `step`,
//! `receptive_field`, named parameters and buffers.

mod causal_cnn;
mod dilated;
mod gated_cnn;
mod hierarchical;
mod mlp;
mod pixelcnn;
pub mod summary;
mod wavenet;

pub use causal_cnn::{CausalCnn, CausalCnnConfig};
pub use dilated::{Dilated, DilatedConfig};
pub use gated_cnn::{GatedCnn, GatedCnnConfig};
pub use hierarchical::{Hierarchical, HierarchicalConfig};
pub use mlp::{Mlp, MlpConfig};
pub use pixelcnn::{PixelCnn, PixelCnnConfig};
pub use wavenet::{WaveNet, WaveNetConfig};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::nn::{Backend, Buffers, GraphBackend, ParamStore, StepBackend, StepState};
use crate::tensor::{Graph, Tensor, Var};

/// The family names, in the order of reference/models.py.
pub const FAMILIES: [&str; 7] = ["mlp", "causal-cnn", "dilated", "hierarchical", "wavenet", "gated-cnn", "pixelcnn"];

/// A model family and its hyper-parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "kebab-case")]
pub enum ModelConfig {
    Mlp(MlpConfig),
    CausalCnn(CausalCnnConfig),
    Dilated(DilatedConfig),
    Hierarchical(HierarchicalConfig),
    #[serde(rename = "wavenet")]
    WaveNet(WaveNetConfig),
    GatedCnn(GatedCnnConfig),
    #[serde(rename = "pixelcnn")]
    PixelCnn(PixelCnnConfig),
}

impl ModelConfig {
    /// The default configuration of a family given by name (`mlp`, `causal-cnn`, …).
    pub fn default_for(family: &str) -> Result<Self> {
        Ok(match family {
            "mlp" => ModelConfig::Mlp(MlpConfig::default()),
            "causal-cnn" => ModelConfig::CausalCnn(CausalCnnConfig::default()),
            "dilated" => ModelConfig::Dilated(DilatedConfig::default()),
            "hierarchical" => ModelConfig::Hierarchical(HierarchicalConfig::default()),
            "wavenet" => ModelConfig::WaveNet(WaveNetConfig::default()),
            "gated-cnn" => ModelConfig::GatedCnn(GatedCnnConfig::default()),
            "pixelcnn" => ModelConfig::PixelCnn(PixelCnnConfig::default()),
            other => return Err(Error::config("model", format!("unknown family `{other}` (expected one of {})", FAMILIES.join(", ")))),
        })
    }

    /// The family name.
    pub fn family(&self) -> &'static str {
        match self {
            ModelConfig::Mlp(_) => "mlp",
            ModelConfig::CausalCnn(_) => "causal-cnn",
            ModelConfig::Dilated(_) => "dilated",
            ModelConfig::Hierarchical(_) => "hierarchical",
            ModelConfig::WaveNet(_) => "wavenet",
            ModelConfig::GatedCnn(_) => "gated-cnn",
            ModelConfig::PixelCnn(_) => "pixelcnn",
        }
    }

    /// Whether the family works on 2-D token grids (B, H, W) rather than sequences.
    pub fn is_grid(&self) -> bool {
        matches!(self, ModelConfig::PixelCnn(_))
    }

    /// Parses a config from JSON text of the form `{"family": "...", ...}`; `source` names
    /// the file in errors.
    pub fn from_json(text: &str, source: &std::path::Path) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::bad_file(source, format!("model config: {e}")))
    }
}

/// The network of one family.
#[derive(Clone, Debug)]
enum Net {
    Mlp(Mlp),
    CausalCnn(CausalCnn),
    Dilated(Dilated),
    Hierarchical(Hierarchical),
    WaveNet(WaveNet),
    GatedCnn(GatedCnn),
    PixelCnn(PixelCnn),
}

impl Net {
    /// The forward of a sequence family on any backend (the tape or one cached step);
    /// pixelcnn, which only runs on the tape over grids, is an error here.
    fn forward_sequence<B: Backend>(&self, b: &mut B, ids: &[u32]) -> Result<B::Value> {
        match self {
            Net::Mlp(m) => m.forward(b, ids),
            Net::CausalCnn(m) => m.forward(b, ids),
            Net::Dilated(m) => m.forward(b, ids),
            Net::Hierarchical(m) => m.forward(b, ids),
            Net::WaveNet(m) => m.forward(b, ids),
            Net::GatedCnn(m) => m.forward(b, ids),
            Net::PixelCnn(_) => Err(Error::shape("step", "pixelcnn has no incremental step; generation recomputes the grid")),
        }
    }
}

/// A language model of any family with its parameters and buffers.
#[derive(Clone, Debug)]
pub struct Model {
    config: ModelConfig,
    vocab_size: usize,
    net: Net,
    params: ParamStore,
    buffers: Buffers,
    slots: usize,
}

impl Model {
    /// A freshly initialised model (PyTorch default inits) drawn from `seed`.
    pub fn new(config: &ModelConfig, vocab_size: usize, seed: u64) -> Result<Self> {
        if vocab_size < 2 {
            return Err(Error::config("vocab_size", format!("{vocab_size} is too small")));
        }
        validate_sizes(config)?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (mut params, mut buffers, mut slots) = (ParamStore::new(), Buffers::default(), 0usize);
        let (p, b, s, r) = (&mut params, &mut buffers, &mut slots, &mut rng);
        let net = match config {
            ModelConfig::Mlp(c) => Net::Mlp(Mlp::new(c, vocab_size, p, b, s, r)),
            ModelConfig::CausalCnn(c) => Net::CausalCnn(CausalCnn::new(c, vocab_size, p, b, s, r)),
            ModelConfig::Dilated(c) => Net::Dilated(Dilated::new(c, vocab_size, p, b, s, r)),
            ModelConfig::Hierarchical(c) => Net::Hierarchical(Hierarchical::new(c, vocab_size, p, b, s, r)?),
            ModelConfig::WaveNet(c) => Net::WaveNet(WaveNet::new(c, vocab_size, p, b, s, r)),
            ModelConfig::GatedCnn(c) => Net::GatedCnn(GatedCnn::new(c, vocab_size, p, b, s, r)),
            ModelConfig::PixelCnn(c) => Net::PixelCnn(PixelCnn::new(c, vocab_size, p, r)?),
        };
        Ok(Model { config: config.clone(), vocab_size, net, params, buffers, slots })
    }

    /// The configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Vocabulary size (rows of the embedding, width of the logits).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Named parameters in PyTorch order.
    pub fn params(&self) -> &ParamStore {
        &self.params
    }

    /// Named parameters, mutable (optimizers, loading).
    pub fn params_mut(&mut self) -> &mut ParamStore {
        &mut self.params
    }

    /// BatchNorm running statistics.
    pub fn buffers(&self) -> &Buffers {
        &self.buffers
    }

    /// Parameters then buffers, as PyTorch's `state_dict()` names them.
    pub fn state_dict(&self) -> Vec<(String, Tensor)> {
        let mut out = self.params.named_values();
        out.extend(self.buffers.named());
        out
    }

    /// Loads a state_dict: every parameter and buffer must be present with its shape.
    pub fn load_state_dict(&mut self, tensors: Vec<(String, Tensor)>, source: &std::path::Path) -> Result<()> {
        let (mut params, mut bufs) = (Vec::new(), Vec::new());
        for (name, t) in tensors {
            if name.ends_with(".running_mean") || name.ends_with(".running_var") {
                bufs.push((name, t));
            } else if !name.ends_with(".num_batches_tracked") {
                params.push((name, t));
            }
        }
        self.params.load_named(params, source)?;
        for (prefix, mean, var) in &mut self.buffers.entries {
            for (suffix, dst) in [("running_mean", mean), ("running_var", var)] {
                let name = format!("{prefix}.{suffix}");
                let t =
                    bufs.iter().find(|(n, _)| *n == name).map(|(_, t)| t.clone()).ok_or_else(|| Error::bad_file(source, format!("missing tensor `{name}`")))?;
                if t.shape() != dst.shape() {
                    return Err(Error::bad_file(source, format!("tensor `{name}` has shape {:?}, expected {:?}", t.shape(), dst.shape())));
                }
                *dst = t;
            }
        }
        Ok(())
    }

    /// Tokens (positions) each prediction can see, for sequence families; rows of context
    /// for pixelcnn.
    pub fn receptive_field(&self) -> usize {
        match &self.net {
            Net::Mlp(m) => m.receptive_field(),
            Net::CausalCnn(m) => m.receptive_field(),
            Net::Dilated(m) => m.receptive_field(),
            Net::Hierarchical(m) => m.receptive_field(),
            Net::WaveNet(m) => m.receptive_field(),
            Net::GatedCnn(m) => m.receptive_field(),
            Net::PixelCnn(m) => m.receptive_field(),
        }
    }

    /// Records the forward pass of token ids of `shape` ((B, T), or (B, H, W) for pixelcnn)
    /// on `graph` and returns the logits ((B, T, V), or (B, H, W, V) for grids). In training mode
    /// BatchNorm running statistics are updated (PyTorch semantics).
    pub fn forward(&mut self, graph: &mut Graph, ids: &[u32], shape: &[usize]) -> Result<Var> {
        let want_rank = if self.config.is_grid() { 3 } else { 2 };
        if shape.len() != want_rank {
            return Err(Error::shape("model", format!("{} expects token ids of rank {want_rank}, got shape {shape:?}", self.config.family())));
        }
        let mut b = GraphBackend::new(graph, &self.params, &self.buffers, shape);
        let logits = match &self.net {
            Net::PixelCnn(m) => m.forward(&mut b, ids)?,
            net => net.forward_sequence(&mut b, ids)?,
        };
        let stats = std::mem::take(&mut b.batch_stats);
        for (slot, momentum, s) in stats {
            let (_, mean, var) = &mut self.buffers.entries[slot];
            for (r, v) in mean.data_mut().iter_mut().zip(&s.mean) {
                *r = (1.0 - momentum) * *r + momentum * v;
            }
            for (r, v) in var.data_mut().iter_mut().zip(&s.var_unbiased) {
                *r = (1.0 - momentum) * *r + momentum * v;
            }
        }
        Ok(logits)
    }

    /// Fresh generation state for `batch` sequences.
    pub fn new_state(&self, batch: usize) -> StepState {
        StepState::new(batch, self.slots)
    }

    /// Feeds one token per sequence and returns the next-token logits (B, V), computed
    /// incrementally from the ring buffers in `state` (eval-mode maths).
    pub fn step(&self, state: &mut StepState, ids: &[u32]) -> Result<Tensor> {
        let mut b = StepBackend::new(&self.params, &self.buffers, state);
        let logits = self.net.forward_sequence(&mut b, ids)?;
        state.position += 1;
        let batch = state.batch();
        logits.reshape(vec![batch, self.vocab_size])
    }

    /// Whether [`Model::step`] is available.
    pub fn can_step(&self) -> bool {
        !self.config.is_grid()
    }
}

/// Rejects zero sizes that would make an empty or ill-formed network.
fn validate_sizes(config: &ModelConfig) -> Result<()> {
    let checks: Vec<(&str, usize)> = match config {
        ModelConfig::Mlp(c) => vec![("block_size", c.block_size), ("n_embd", c.n_embd), ("n_hidden", c.n_hidden)],
        ModelConfig::CausalCnn(c) => vec![("n_embd", c.n_embd), ("channels", c.channels), ("kernel_size", c.kernel_size)],
        ModelConfig::Dilated(c) => {
            let mut v = vec![("n_embd", c.n_embd), ("channels", c.channels), ("kernel_size", c.kernel_size)];
            v.extend(c.dilations.iter().map(|&d| ("dilations", d)));
            v
        }
        ModelConfig::Hierarchical(c) => vec![("n_embd", c.n_embd), ("n_hidden", c.n_hidden), ("block_size", c.block_size)],
        ModelConfig::WaveNet(c) => vec![
            ("residual_channels", c.residual_channels),
            ("dilation_channels", c.dilation_channels),
            ("skip_channels", c.skip_channels),
            ("kernel_size", c.kernel_size),
            ("n_layers", c.n_layers),
            ("n_stacks", c.n_stacks),
        ],
        ModelConfig::GatedCnn(c) => vec![("n_embd", c.n_embd), ("channels", c.channels), ("kernel_size", c.kernel_size)],
        ModelConfig::PixelCnn(c) => vec![("n_embd", c.n_embd), ("channels", c.channels), ("kernel_size", c.kernel_size)],
    };
    for (field, v) in checks {
        if v == 0 {
            return Err(Error::config(field, "must be at least 1"));
        }
    }
    Ok(())
}
