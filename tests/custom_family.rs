//! A family defined outside the library — this file and one `register` line — works
//! everywhere a built-in family does: configs by name, building, the fused training loss,
//! cached generation and summaries.

use std::path::Path;
use std::sync::Once;

use convlm::error::Result;
use convlm::models::summary::{summary, LayerKind};
use convlm::models::{family, register, Family, Model, ModelConfig};
use convlm::nn::{Backend, Embedding, Head, Linear, ModelBuilder};
use convlm::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use convlm::tensor::{Activation, Graph};
use serde::{Deserialize, Serialize};

/// A bigram model with a hidden layer: embedding → tanh → linear head.
#[derive(Debug)]
struct Bigram {
    embedding: Embedding,
    head: Linear,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct BigramConfig {
    n_embd: usize,
}

impl Family for Bigram {
    const NAME: &'static str = "toy-bigram";
    const ABOUT: &'static str = "a test's bigram model";
    type Config = BigramConfig;

    fn validate(c: &BigramConfig) -> Result<()> {
        if c.n_embd == 0 {
            return Err(convlm::Error::config("n_embd", "must be at least 1"));
        }
        Ok(())
    }

    fn build(c: &BigramConfig, vocab_size: usize, b: &mut ModelBuilder) -> Result<Self> {
        Ok(Bigram { embedding: Embedding::new(b, "embedding", vocab_size, c.n_embd)?, head: Linear::new(b, "head", c.n_embd, vocab_size)? })
    }

    fn body<B: Backend>(&self, b: &mut B, ids: &[u32]) -> Result<B::Value> {
        let h = b.embedding(&self.embedding, ids)?; // (B, T, E)
        b.activation(&h, Activation::Tanh)
    }

    fn head(&self) -> Head<'_> {
        Head::Linear(&self.head)
    }

    fn receptive_field(&self) -> usize {
        1
    }
}

fn registered() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| register(family::<Bigram>()).expect("the name is free"));
}

fn config() -> ModelConfig {
    registered();
    ModelConfig::from_json(r#"{"family": "toy-bigram", "n_embd": 6}"#, Path::new("<test>")).unwrap()
}

#[test]
fn configs_name_it_and_check_its_fields() {
    let c = config();
    assert_eq!(c.family(), "toy-bigram");
    assert_eq!(c.settings::<Bigram>(), Some(BigramConfig { n_embd: 6 }));
    assert!(convlm::models::names().contains(&"toy-bigram"));
    let err = ModelConfig::from_json(r#"{"family": "toy-bigram", "width": 6}"#, Path::new("c.json")).unwrap_err().to_string();
    assert!(err.contains("c.json") && err.contains("width"), "{err}");
    let err = Model::new(&ModelConfig::default_for("toy-bigram").unwrap(), 5, 0).unwrap_err().to_string();
    assert_eq!(err, "invalid n_embd: must be at least 1");
    let err = register(family::<Bigram>()).unwrap_err().to_string();
    assert!(err.contains("already registered"), "{err}");
}

#[test]
fn it_builds_trains_steps_and_summarises() {
    let mut model = Model::new(&config(), 5, 0).unwrap();
    let names: Vec<&str> = model.params().params().iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["embedding.weight", "head.weight", "head.bias"]);

    // The fused loss trains it: the bigram 0→1→2→3→4→0 becomes near certain.
    let ids: Vec<u32> = (0..20).map(|i| i % 5).collect();
    let targets: Vec<i64> = ids.iter().map(|&i| ((i + 1) % 5) as i64).collect();
    let cfg = OptimizerConfig { kind: OptimizerKind::Adam, lr: 0.1, ..OptimizerConfig::default() };
    let mut opt = Optimizer::new(&cfg, model.params()).unwrap();
    let mut losses = Vec::new();
    for _ in 0..60 {
        model.params_mut().zero_grad();
        let mut g = Graph::new(true);
        let loss = model.loss(&mut g, &ids, &[2, 10], &targets, 0).unwrap();
        losses.push(g.value(loss).data()[0]);
        g.backward(loss).unwrap();
        model.params_mut().accumulate_grads(&g);
        opt.step(model.params_mut(), cfg.lr);
    }
    assert!(losses[0] > 1.0 && *losses.last().unwrap() < 0.05, "{losses:?}");

    // Cached steps equal the forward at every position.
    let mut g = Graph::new(false);
    let logits = model.forward(&mut g, &ids[..10], &[1, 10]).unwrap();
    let mut state = model.new_state(1);
    for (t, &id) in ids[..10].iter().enumerate() {
        let step = model.step(&mut state, &[id]).unwrap();
        for (a, b) in step.data().iter().zip(&g.value(logits).data()[t * 5..(t + 1) * 5]) {
            assert!((a - b).abs() < 1e-5, "position {t}: {a} vs {b}");
        }
    }

    let s = summary(&model, 2, 7).unwrap();
    let kinds: Vec<LayerKind> = s.rows.iter().map(|r| r.kind).collect();
    assert_eq!(kinds, [LayerKind::Embedding, LayerKind::Linear]);
    assert_eq!(s.total_params, 5 * 6 + 6 * 5 + 5);
    assert_eq!(s.rows[1].mult_adds, 6 * 5 * 14);
}
