//! Named parameters, in PyTorch `named_parameters()` order, with their gradients, and the
//! buffers (BatchNorm running statistics) that complete a state_dict.

use crate::error::{Error, Result};
use crate::tensor::{Graph, Tensor, Var};

/// One named parameter: its value, its accumulated gradient and whether AdamW decays it.
#[derive(Clone, Debug)]
pub struct Param {
    /// PyTorch state_dict name, e.g. `convs.0.weight`.
    pub name: String,
    pub value: Tensor,
    /// Same shape as `value`; zeroed by [`ParamStore::zero_grad`].
    pub grad: Tensor,
    /// Weight decay applies (conv and linear weights with ndim ≥ 2, never embeddings, biases
    /// or norms; see reference/models.py `adamw_groups`).
    pub decay: bool,
}

impl Param {
    /// A parameter with a zero gradient; `decay` follows the reference rule from the name
    /// and rank.
    pub fn new(name: impl Into<String>, value: Tensor) -> Self {
        let name = name.into();
        let decay = value.ndim() >= 2 && !name.starts_with("embedding.");
        let grad = Tensor::zeros(value.shape().to_vec());
        Param { name, value, grad, decay }
    }
}

/// The ordered set of a model's parameters, and the names under which a parameter appears a
/// second time in a state_dict (tied weights).
#[derive(Clone, Debug, Default)]
pub struct ParamStore {
    params: Vec<Param>,
    /// (parameters registered before it, state_dict name, the parameter it repeats).
    aliases: Vec<(usize, String, ParamId)>,
}

/// Index of a parameter inside its [`ParamStore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ParamId(pub usize);

impl ParamStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a parameter and returns its id.
    pub fn add(&mut self, name: impl Into<String>, value: Tensor) -> ParamId {
        self.params.push(Param::new(name, value));
        ParamId(self.params.len() - 1)
    }

    /// Writes parameter `id` a second time, as `name`, in every state_dict (a tied weight,
    /// e.g. `head.weight` sharing `embedding.weight`, as PyTorch's `state_dict()` lists it), so
    /// a model without the tie loads it with `strict=True` and computes the same function.
    pub fn add_alias(&mut self, name: impl Into<String>, id: ParamId) {
        self.aliases.push((self.params.len(), name.into(), id));
    }

    /// All parameters in registration order.
    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// All parameters, mutable (for optimizers).
    pub fn params_mut(&mut self) -> &mut [Param] {
        &mut self.params
    }

    /// One parameter.
    pub fn get(&self, id: ParamId) -> &Param {
        &self.params[id.0]
    }

    /// One parameter, mutable.
    pub fn get_mut(&mut self, id: ParamId) -> &mut Param {
        &mut self.params[id.0]
    }

    /// Looks a parameter up by name.
    pub fn find(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }

    /// Total number of scalar parameters.
    pub fn numel(&self) -> usize {
        self.params.iter().map(|p| p.value.numel()).sum()
    }

    /// Sets every gradient to zero.
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.grad.data_mut().fill(0.0);
        }
    }

    /// Replaces parameter values from named tensors (a state_dict). Every parameter must be
    /// present with the same shape and no unknown names may appear; a tied weight's second
    /// name must be present too, equal to the parameter it repeats. `source` names the file in
    /// errors.
    pub fn load_named(&mut self, tensors: Vec<(String, Tensor)>, source: &std::path::Path) -> Result<()> {
        let mut seen = vec![false; self.params.len()];
        let mut repeats = Vec::new();
        for (name, t) in tensors {
            if self.aliases.iter().any(|(_, a, _)| *a == name) {
                repeats.push((name, t));
                continue;
            }
            let Some(i) = self.params.iter().position(|p| p.name == name) else {
                return Err(Error::bad_file(source, format!("unexpected tensor `{name}` (not a parameter of this model)")));
            };
            if t.shape() != self.params[i].value.shape() {
                return Err(Error::bad_file(
                    source,
                    format!("tensor `{name}` has shape {:?}, the model expects {:?}", t.shape(), self.params[i].value.shape()),
                ));
            }
            self.params[i].value = t;
            seen[i] = true;
        }
        if let Some(i) = seen.iter().position(|s| !s) {
            return Err(Error::bad_file(source, format!("missing tensor `{}`", self.params[i].name)));
        }
        for (_, alias, id) in &self.aliases {
            let Some((_, t)) = repeats.iter().find(|(a, _)| a == alias) else {
                return Err(Error::bad_file(source, format!("missing tensor `{alias}` (a copy of `{}`)", self.params[id.0].name)));
            };
            if t != &self.params[id.0].value {
                return Err(Error::bad_file(
                    source,
                    format!("tensor `{alias}` differs from `{}`, which this model ties it to (they must be equal)", self.params[id.0].name),
                ));
            }
        }
        Ok(())
    }

    /// Records parameter `id` on `graph` as a trainable leaf (its value is copied onto the
    /// tape); after the graph's backward, [`ParamStore::accumulate_grads`] collects its gradient.
    pub fn record(&self, graph: &mut Graph, id: ParamId) -> Var {
        graph.param(self.get(id).value.clone(), id.0)
    }

    /// Adds the gradient of every parameter that [`ParamStore::record`] put on `graph` into its
    /// `grad` (`+=`, like PyTorch), after `graph.backward(..)`.
    pub fn accumulate_grads(&mut self, graph: &Graph) {
        use rayon::prelude::*;
        // Values per parallel task: W1's 1.3M-value embedding took ~2 ms on one thread.
        const CHUNK: usize = 1 << 16;
        for &(v, key) in graph.params() {
            let (Some(g), Some(p)) = (graph.grad(v), self.params.get_mut(key)) else { continue };
            let dst = p.grad.data_mut();
            dst.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK)).for_each(|(d, s)| d.iter_mut().zip(s).for_each(|(a, b)| *a += b));
        }
    }

    /// The parameter values as named tensors (a state_dict), a tied weight under each of its
    /// names, in registration order.
    pub fn named_values(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(self.params.len() + self.aliases.len());
        let mut aliases = self.aliases.iter().peekable();
        for (i, p) in self.params.iter().enumerate() {
            while let Some((_, name, id)) = aliases.next_if(|(before, _, _)| *before == i) {
                out.push((name.clone(), self.params[id.0].value.clone()));
            }
            out.push((p.name.clone(), p.value.clone()));
        }
        out.extend(aliases.map(|(_, name, id)| (name.clone(), self.params[id.0].value.clone())));
        out
    }
}

/// Running statistics of every batchnorm layer (`running_mean`, `running_var`), by slot.
#[derive(Clone, Debug, Default)]
pub struct Buffers {
    /// (layer prefix, running_mean, running_var)
    pub entries: Vec<(String, Tensor, Tensor)>,
}

impl Buffers {
    /// Adds a batchnorm's statistics (mean 0, var 1) and returns its slot.
    pub fn add(&mut self, prefix: &str, channels: usize) -> usize {
        self.entries.push((prefix.to_string(), Tensor::zeros(vec![channels]), Tensor::full(vec![channels], 1.0)));
        self.entries.len() - 1
    }

    /// The buffers as named tensors (`{prefix}.running_mean`, `{prefix}.running_var`).
    pub fn named(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (p, m, v) in &self.entries {
            out.push((format!("{p}.running_mean"), m.clone()));
            out.push((format!("{p}.running_var"), v.clone()));
        }
        out
    }
}
