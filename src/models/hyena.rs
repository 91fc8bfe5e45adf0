//! Poli et al. (2023), "Hyena Hierarchy": pre-norm residual blocks whose mixer is an order-2
//! Hyena operator (gated long causal convolution with an implicit filter), then a GELU MLP.

use serde::{Deserialize, Serialize};

use super::{is_false, is_zero, require_positive, require_probability, Family};
use crate::error::{Error, Result};
use crate::nn::{Backend, CausalConv1d, Embedding, Head, LayerNorm, Linear, LongConv, LongConvSpec, ModelBuilder};
use crate::tensor::Activation;

/// LayerNorm epsilon of the reference (`nn.LayerNorm` default).
const LN_EPS: f32 = 1e-5;
/// Kernel of the depthwise short conv in front of the long one.
const SHORT_KERNEL: usize = 3;
/// Initial standard deviation of an embedding table that is also the head's weight (GPT-2's).
const TIED_EMBEDDING_STD: f32 = 0.02;

/// Configuration of the `hyena` family (reference/models.py `HyenaLM`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HyenaConfig {
    /// Width of the residual stream.
    pub d_model: usize,
    /// Hyena blocks.
    pub n_layers: usize,
    /// Longest context; every long filter has this many taps.
    pub max_len: usize,
    /// Hidden width of each block's MLP, in multiples of d_model.
    pub mlp_ratio: usize,
    /// Positional features of the filter network: 1 + 2·bands (odd, ≥ 3).
    pub filter_emb_dim: usize,
    /// Width of the filter network.
    pub filter_width: usize,
    /// Hidden layers of the filter network after its first.
    pub filter_inner: usize,
    /// Initial frequency of the filter network's sin activations.
    pub filter_freq: f32,
    /// Decay of the fastest channel's window.
    pub decay_fast: f32,
    /// Decay of the slowest channel's window.
    pub decay_slow: f32,
    /// Window value the decays are defined by.
    pub decay_target: f32,
    /// Dropout probability while training (0: none), on the embeddings and on each mixer and MLP output.
    #[serde(skip_serializing_if = "is_zero")]
    pub dropout: f32,
    /// The head's weight is the embedding table (Press & Wolf, 2017): V·d fewer parameters to
    /// fit, which pays where the data is small. The table then starts N(0, 0.02²); the
    /// state_dict still lists `head.weight` (a copy), so it loads into `HyenaLM` unchanged.
    #[serde(skip_serializing_if = "is_false")]
    pub tie_embeddings: bool,
}

impl Default for HyenaConfig {
    fn default() -> Self {
        HyenaConfig {
            d_model: 128,
            n_layers: 4,
            max_len: 256,
            mlp_ratio: 4,
            filter_emb_dim: 3,
            filter_width: 64,
            filter_inner: 2,
            filter_freq: 1.0,
            decay_fast: 0.3,
            decay_slow: 1.5,
            decay_target: 1e-2,
            dropout: 0.0,
            tie_embeddings: false,
        }
    }
}

impl HyenaConfig {
    /// The setting of this config that a [`LongConvSpec`] field comes from.
    fn filter_setting(spec_field: &str) -> &str {
        match spec_field {
            "channels" => "d_model",
            "emb_dim" => "filter_emb_dim",
            "width" => "filter_width",
            "n_inner" => "filter_inner",
            "freq" => "filter_freq",
            other => other,
        }
    }

    /// The filter of one block's mixer.
    fn filter_spec(&self) -> LongConvSpec {
        LongConvSpec {
            channels: self.d_model,
            max_len: self.max_len,
            emb_dim: self.filter_emb_dim,
            width: self.filter_width,
            n_inner: self.filter_inner,
            freq: self.filter_freq,
            decay_fast: self.decay_fast,
            decay_slow: self.decay_slow,
            decay_target: self.decay_target,
        }
    }
}

/// `HyenaOperator`: in_proj to 3·d, depthwise short conv, split (x0, x1, v),
/// v ← long_conv(v·x1), out_proj(v·x0).
#[derive(Clone, Debug)]
struct Mixer {
    in_proj: Linear,
    short_conv: CausalConv1d,
    filter: LongConv,
    out_proj: Linear,
}

/// `HyenaBlock`: x + mixer(ln1(x)), then x + fc2(gelu(fc1(ln2(x)))).
#[derive(Clone, Debug)]
struct Block {
    ln1: LayerNorm,
    mixer: Mixer,
    ln2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

/// Embedding → Hyena blocks → LayerNorm → head.
#[derive(Clone, Debug)]
pub struct Hyena {
    cfg: HyenaConfig,
    embedding: Embedding,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    head: Linear,
}

impl Family for Hyena {
    const NAME: &'static str = "hyena";
    const ABOUT: &'static str = "Poli et al. (2023): gated long convolutions with implicit filters over the whole context";
    type Config = HyenaConfig;

    fn validate(c: &HyenaConfig) -> Result<()> {
        require_probability("dropout", c.dropout)?;
        require_positive(&[
            ("d_model", c.d_model),
            ("n_layers", c.n_layers),
            ("max_len", c.max_len),
            ("mlp_ratio", c.mlp_ratio),
            ("filter_width", c.filter_width),
        ])?;
        // The filter's own checks, its errors naming this config's settings.
        c.filter_spec().validate().map_err(|e| match e {
            Error::Config { field, msg } => Error::config(HyenaConfig::filter_setting(&field), msg),
            e => e,
        })
    }

    /// Registers the parameters in `HyenaLM.named_parameters()` order.
    fn build(cfg: &HyenaConfig, vocab_size: usize, b: &mut ModelBuilder) -> Result<Self> {
        let d = cfg.d_model;
        let hidden = cfg.mlp_ratio.checked_mul(d).ok_or_else(|| Error::config("mlp_ratio", "mlp_ratio × d_model overflows"))?;
        let embedding = match cfg.tie_embeddings {
            true => Embedding::with_std(b, "embedding", vocab_size, d, TIED_EMBEDDING_STD)?,
            false => Embedding::new(b, "embedding", vocab_size, d)?,
        };
        let blocks = (0..cfg.n_layers)
            .map(|i| {
                let p = format!("blocks.{i}");
                let ln1 = LayerNorm::new(b, &format!("{p}.ln1"), d, LN_EPS)?;
                let mixer = Mixer {
                    in_proj: Linear::new(b, &format!("{p}.mixer.in_proj"), d, 3 * d)?,
                    short_conv: CausalConv1d::depthwise(b, &format!("{p}.mixer.short_conv"), 3 * d, SHORT_KERNEL)?,
                    filter: LongConv::new(b, &format!("{p}.mixer.filter"), cfg.filter_spec())?,
                    out_proj: Linear::new(b, &format!("{p}.mixer.out_proj"), d, d)?,
                };
                let ln2 = LayerNorm::new(b, &format!("{p}.ln2"), d, LN_EPS)?;
                let fc1 = Linear::new(b, &format!("{p}.fc1"), d, hidden)?;
                let fc2 = Linear::new(b, &format!("{p}.fc2"), hidden, d)?;
                Ok(Block { ln1, mixer, ln2, fc1, fc2 })
            })
            .collect::<Result<_>>()?;
        let ln_f = LayerNorm::new(b, "ln_f", d, LN_EPS)?;
        let head = match cfg.tie_embeddings {
            true => Linear::tied_to(b, "head", &embedding)?,
            false => Linear::new(b, "head", d, vocab_size)?,
        };
        Ok(Hyena { cfg: cfg.clone(), embedding, blocks, ln_f, head })
    }

    fn body<B: Backend>(&self, b: &mut B, ids: &[u32]) -> Result<B::Value> {
        let d = self.cfg.d_model;
        let h = b.embedding(&self.embedding, ids)?; // (B, T, d)
        let mut h = b.dropout(&h, self.cfg.dropout)?;
        for block in &self.blocks {
            let m = &block.mixer;
            let x = b.layernorm(&block.ln1, &h)?; // (B, T, d)
            let x = b.linear(&m.in_proj, &x)?; // (B, T, 3d)
            let x = b.causal_conv(&m.short_conv, &x)?; // (B, T, 3d): channels x0 | x1 | v
            let v = b.mul_channels(&x, 2 * d, &x, d, d)?; // (B, T, d): v·x1
            let v = b.long_conv(&m.filter, &v)?; // (B, T, d)
            let y = b.mul_channels(&v, 0, &x, 0, d)?; // (B, T, d): v·x0
            let y = b.linear(&m.out_proj, &y)?; // (B, T, d)
            let y = b.dropout(&y, self.cfg.dropout)?;
            h = b.add(&h, &y)?;
            let x = b.layernorm(&block.ln2, &h)?;
            let x = b.mlp(&block.fc1, Activation::Gelu, &block.fc2, &x)?; // (B, T, hidden) → (B, T, d)
            let x = b.dropout(&x, self.cfg.dropout)?;
            h = b.add(&h, &x)?;
        }
        b.layernorm(&self.ln_f, &h) // (B, T, d)
    }

    fn head(&self) -> Head<'_> {
        Head::Linear(&self.head) // (B, T, V)
    }

    /// Every position sees its whole prefix, up to max_len tokens.
    fn receptive_field(&self) -> usize {
        self.cfg.max_len
    }

    fn max_len(&self) -> Option<usize> {
        Some(self.cfg.max_len)
    }
}

#[cfg(test)]
mod tests {
    use crate::models::{Model, ModelConfig};
    use crate::nn::{Cost, LayerKind};
    use std::path::Path;

    fn config(json: &str) -> ModelConfig {
        ModelConfig::from_json(json, Path::new("<test>")).unwrap()
    }

    #[test]
    fn w4_has_the_benchmark_parameter_count_and_one_long_conv_row_per_block() {
        // bench/WORKLOADS.md W4: V=256, d_model 128, 4 layers, max_len 1024.
        let plan = Model::plan(&config(r#"{"family":"hyena","max_len":1024}"#), 256).unwrap();
        assert_eq!(plan.params, 933_120);
        assert_eq!(plan.layers.iter().map(|l| l.params).sum::<usize>(), 933_120);
        let filters: Vec<_> = plan.layers.iter().filter(|l| l.kind == LayerKind::LongConv).collect();
        assert_eq!(filters.len(), 4);
        assert_eq!(filters[0].name, "blocks.0.mixer.filter");
        // freq 64 + bias 128 + mlp (3·64 + 64) + 2·(64·64 + 64) + out 128·64
        assert_eq!(filters[0].params, 64 + 128 + 256 + 2 * 4160 + 8192);
        assert_eq!(filters[0].cost, Cost::LongConv { channels: 128, per_length: 3 * 64 + 2 * 64 * 64 + 64 * 128 });
        let kinds: Vec<LayerKind> = plan.layers.iter().take(9).map(|l| l.kind).collect();
        use LayerKind::*;
        assert_eq!(kinds, [Embedding, LayerNorm, Linear, DepthwiseConv1d { kernel: 3 }, LongConv, Linear, LayerNorm, Linear, Linear]);
    }

    #[test]
    fn parameters_follow_the_reference_named_parameters_order() {
        let m = Model::new(&config(r#"{"family":"hyena","d_model":4,"n_layers":1,"max_len":8,"filter_width":3,"filter_inner":1}"#), 5, 0).unwrap();
        let names: Vec<&str> = m.params().params().iter().map(|p| p.name.as_str()).collect();
        let block = [
            "ln1.weight",
            "ln1.bias",
            "mixer.in_proj.weight",
            "mixer.in_proj.bias",
            "mixer.short_conv.weight",
            "mixer.short_conv.bias",
            "mixer.filter.freq",
            "mixer.filter.bias",
            "mixer.filter.mlp.0.weight",
            "mixer.filter.mlp.0.bias",
            "mixer.filter.mlp.1.weight",
            "mixer.filter.mlp.1.bias",
            "mixer.filter.out.weight",
            "mixer.out_proj.weight",
            "mixer.out_proj.bias",
            "ln2.weight",
            "ln2.bias",
            "fc1.weight",
            "fc1.bias",
            "fc2.weight",
            "fc2.bias",
        ];
        let mut want = vec!["embedding.weight".to_string()];
        want.extend(block.iter().map(|n| format!("blocks.0.{n}")));
        want.extend(["ln_f.weight", "ln_f.bias", "head.weight", "head.bias"].map(String::from));
        assert_eq!(names, want);
        let freq = m.params().find("blocks.0.mixer.filter.freq").unwrap();
        assert!(freq.value.data().iter().all(|&v| v == 1.0) && !freq.decay, "freq = full(filter_freq), no weight decay (1-D)");
        assert!(m.params().find("blocks.0.mixer.filter.out.weight").unwrap().decay);
        assert_eq!(m.params().find("blocks.0.mixer.short_conv.weight").unwrap().value.shape(), [12, 1, 3]);
    }

    const TINY: &str = r#""family":"hyena","d_model":4,"n_layers":1,"max_len":8,"filter_width":3,"filter_inner":1"#;

    /// The loss over a fixed batch and every parameter's gradient, by name.
    fn loss_and_grads(m: &mut Model) -> (f32, Vec<(String, Vec<f32>)>) {
        let ids: Vec<u32> = vec![1, 4, 0, 2, 3, 3, 2, 4, 0, 1];
        let targets: Vec<i64> = vec![4, 0, 2, 3, 3, 2, 4, 0, 1, 2];
        let mut g = crate::tensor::Graph::new(true);
        let loss = m.loss(&mut g, &ids, &[2, 5], &targets, 0).unwrap();
        g.backward(loss).unwrap();
        m.params_mut().zero_grad();
        m.params_mut().accumulate_grads(&g);
        let grads = m.params().params().iter().map(|p| (p.name.clone(), p.grad.data().to_vec())).collect();
        (g.value(loss).data()[0], grads)
    }

    #[test]
    fn a_tied_head_shares_the_embedding_and_its_state_dict_loads_untied() {
        let tied_cfg = config(&format!(r#"{{{TINY},"tie_embeddings":true}}"#));
        let untied_cfg = config(&format!("{{{TINY}}}"));
        assert_eq!(Model::plan(&untied_cfg, 5).unwrap().params - Model::plan(&tied_cfg, 5).unwrap().params, 5 * 4);
        let mut tied = Model::new(&tied_cfg, 5, 0).unwrap();
        assert!(tied.params().find("head.weight").is_none(), "one table, not two");
        let emb = tied.params().find("embedding.weight").unwrap().value.clone();
        let std = (emb.data().iter().map(|v| v * v).sum::<f32>() / 20.0).sqrt();
        assert!(std < 0.05, "a tied table starts small (std {std})");

        // The state_dict is the untied model's: same names in the same order, head.weight a copy.
        let sd = tied.state_dict();
        let mut untied = Model::new(&untied_cfg, 5, 0).unwrap();
        let names = |sd: &[(String, crate::tensor::Tensor)]| sd.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(names(&sd), names(&untied.state_dict()));
        assert_eq!(sd.iter().find(|(n, _)| n == "head.weight").unwrap().1, emb);
        untied.load_state_dict(sd.clone(), Path::new("tied.safetensors")).unwrap();
        tied.load_state_dict(sd.clone(), Path::new("tied.safetensors")).unwrap();

        // Same function; the table's gradient is the sum of its two uses' gradients.
        let (loss_tied, grads_tied) = loss_and_grads(&mut tied);
        let (loss_untied, grads_untied) = loss_and_grads(&mut untied);
        assert!((loss_tied - loss_untied).abs() < 1e-6, "{loss_tied} vs {loss_untied}");
        let grad = |g: &[(String, Vec<f32>)], n: &str| g.iter().find(|(name, _)| name == n).unwrap().1.clone();
        let want: Vec<f32> = grad(&grads_untied, "embedding.weight").iter().zip(grad(&grads_untied, "head.weight")).map(|(a, b)| a + b).collect();
        let got = grad(&grads_tied, "embedding.weight");
        assert!(got.iter().any(|v| v.abs() > 1e-4));
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() < 1e-5, "{got:?} vs {want:?}");
        }
        for (name, g) in &grads_tied {
            assert_eq!(name != "embedding.weight", *g == grad(&grads_untied, name), "{name}");
        }
    }

    #[test]
    fn a_tied_state_dict_must_carry_equal_copies() {
        let mut tied = Model::new(&config(&format!(r#"{{{TINY},"tie_embeddings":true}}"#)), 5, 0).unwrap();
        let sd = tied.state_dict();
        let mut changed = sd.clone();
        changed.iter_mut().find(|(n, _)| n == "head.weight").unwrap().1.data_mut()[3] += 1.0;
        let err = tied.load_state_dict(changed, Path::new("x.safetensors")).unwrap_err().to_string();
        assert!(err.contains("x.safetensors") && err.contains("`head.weight`") && err.contains("`embedding.weight`"), "{err}");
        let without: Vec<_> = sd.into_iter().filter(|(n, _)| n != "head.weight").collect();
        let err = tied.load_state_dict(without, Path::new("x.safetensors")).unwrap_err().to_string();
        assert!(err.contains("missing tensor `head.weight`"), "{err}");
    }

    #[test]
    fn bad_configs_name_their_field() {
        for (json, field) in [
            (r#"{"family":"hyena","d_model":0}"#, "d_model"),
            (r#"{"family":"hyena","n_layers":0}"#, "n_layers"),
            (r#"{"family":"hyena","max_len":0}"#, "max_len"),
            (r#"{"family":"hyena","mlp_ratio":0}"#, "mlp_ratio"),
            (r#"{"family":"hyena","filter_width":0}"#, "filter_width"),
            (r#"{"family":"hyena","filter_emb_dim":4}"#, "filter_emb_dim"),
            (r#"{"family":"hyena","filter_emb_dim":1}"#, "filter_emb_dim"),
            (r#"{"family":"hyena","decay_fast":0.0}"#, "decay_fast"),
            (r#"{"family":"hyena","decay_slow":-1.5}"#, "decay_slow"),
            (r#"{"family":"hyena","decay_target":0.0}"#, "decay_target"),
        ] {
            let err = match ModelConfig::from_json(json, Path::new("<test>")) {
                Ok(cfg) => Model::new(&cfg, 5, 0).unwrap_err().to_string(),
                Err(e) => e.to_string(),
            };
            assert!(err.contains(field), "{json}: {err}");
        }
    }
}
