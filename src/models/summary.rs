//! A torchinfo-style summary of a [`Model`]: one row per layer with its type, output shape,
//! parameter count and multiply-adds, then the totals and the receptive field.
//!
//! The rows are the layers the family's constructors registered with the
//! [`ModelBuilder`](crate::nn::ModelBuilder), in registration (PyTorch) order; each layer
//! states its own type and cost ([`LayerInfo`]), so nothing is guessed from weight shapes.
//! Every layer maps each input position to one output position (causal/same padding, stride
//! 1), so its output shape is the input shape plus its output channels. As in torchinfo,
//! masked convs count their full weight; a long convolution counts its direct-form sum.

use std::fmt;

use crate::error::{Error, Result};
use crate::models::Model;
pub use crate::nn::LayerKind;
use crate::tensor::Graph;

/// One layer of a [`Summary`].
#[derive(Clone, Debug, PartialEq)]
pub struct SummaryRow {
    /// The layer's state_dict prefix, e.g. `blocks.0.filter`.
    pub name: String,
    /// Its type.
    pub kind: LayerKind,
    /// Output shape for the summarised input: (B, T, C), or (B, H, W, C) for grids.
    pub output_shape: Vec<usize>,
    /// Number of scalar parameters it owns (a tied weight counts where it was made).
    pub params: usize,
    /// The parameter whose values it shares (a tied weight), e.g. `embedding.weight`.
    pub shares: Option<String>,
    /// Multiply-adds of one forward over the whole input: weight size × positions.
    pub mult_adds: u64,
}

/// A model summary for one input shape; `Display` prints it as an aligned table.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// The layers in parameter registration (PyTorch) order.
    pub rows: Vec<SummaryRow>,
    /// Token ids summarised: (B, T), or (B, H, W) for grids.
    pub input_shape: Vec<usize>,
    /// Shape of the logits a forward returned for that input.
    pub output_shape: Vec<usize>,
    /// Every parameter (BatchNorm running statistics are buffers and not counted).
    pub total_params: usize,
    /// Parameters an optimizer updates (all of them: convlm freezes nothing).
    pub trainable_params: usize,
    /// Σ of the rows' multiply-adds.
    pub total_mult_adds: u64,
    /// [`Model::receptive_field`]: tokens for sequences, rows of context for grids.
    pub receptive_field: usize,
}

/// Summarises `model` for a batch of `batch` sequences of `len` tokens (for grid families,
/// `batch` square grids of `len` × `len` cells). Runs one eval-mode forward on zeros to check
/// that the model accepts that input; errors if it does not.
pub fn summary(model: &Model, batch: usize, len: usize) -> Result<Summary> {
    let shape = if model.config().is_grid() { vec![batch, len, len] } else { vec![batch, len] };
    summary_for_shape(model, &shape)
}

/// Like [`summary`] for explicit token-id `shape`s ((B, T), or (B, H, W) for grids).
pub fn summary_for_shape(model: &Model, shape: &[usize]) -> Result<Summary> {
    if shape.contains(&0) {
        return Err(Error::shape("summary", format!("input shape {shape:?} has an empty dimension")));
    }
    let ids = vec![0u32; shape.iter().product()];
    let mut graph = Graph::new(false); // eval mode: BatchNorm running statistics stay as they are
    let logits = model.clone().forward(&mut graph, &ids, shape)?;
    let output_shape = graph.shape(logits).to_vec();
    // A sequence is (B, T); a grid (B, H, W) counts its H·W cells as one sequence.
    let (batch, len) = (shape[0] as u64, shape[1..].iter().map(|&d| d as u64).product::<u64>());
    let rows: Vec<SummaryRow> = model
        .layers()
        .iter()
        .map(|layer| {
            let mut output_shape = shape.to_vec();
            output_shape.push(layer.out_channels);
            SummaryRow {
                name: layer.name.clone(),
                kind: layer.kind,
                output_shape,
                params: layer.params,
                shares: layer.shares.clone(),
                mult_adds: layer.mult_adds(batch, len),
            }
        })
        .collect();
    let total_params = model.params().numel();
    Ok(Summary {
        total_mult_adds: rows.iter().map(|r| r.mult_adds).sum(),
        rows,
        input_shape: shape.to_vec(),
        output_shape,
        total_params,
        trainable_params: total_params,
        receptive_field: model.receptive_field(),
    })
}

/// `1234567` → `"1,234,567"`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `[16, 256, 128]`.
fn shape_text(shape: &[usize]) -> String {
    format!("{shape:?}")
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header = ["Layer", "Type", "Output shape", "Params", "Mult-adds"];
        let cells: Vec<[String; 5]> = self
            .rows
            .iter()
            .map(|r| {
                let kind = match &r.shares {
                    Some(param) => format!("{} (weight = {param})", r.kind),
                    None => r.kind.to_string(),
                };
                [r.name.clone(), kind, shape_text(&r.output_shape), thousands(r.params as u64), thousands(r.mult_adds)]
            })
            .collect();
        let mut widths = header.map(str::len);
        for row in &cells {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let total_width = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
        let line = |f: &mut fmt::Formatter<'_>, row: [&str; 5]| {
            // Text columns left-aligned, numbers right-aligned.
            writeln!(
                f,
                "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {:>w4$}",
                row[0],
                row[1],
                row[2],
                row[3],
                row[4],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
                w3 = widths[3],
                w4 = widths[4]
            )
        };
        writeln!(f, "Input {} -> logits {}", shape_text(&self.input_shape), shape_text(&self.output_shape))?;
        line(f, header)?;
        writeln!(f, "{}", "-".repeat(total_width))?;
        for row in &cells {
            line(f, [&row[0], &row[1], &row[2], &row[3], &row[4]])?;
        }
        writeln!(f, "{}", "=".repeat(total_width))?;
        writeln!(f, "Total params: {}", thousands(self.total_params as u64))?;
        writeln!(f, "Trainable params: {}", thousands(self.trainable_params as u64))?;
        writeln!(f, "Total mult-adds: {} ({:.2} M)", thousands(self.total_mult_adds), self.total_mult_adds as f64 / 1e6)?;
        let unit = if self.input_shape.len() == 3 { "rows" } else { "tokens" };
        writeln!(f, "Receptive field: {} {unit}", self.receptive_field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::ModelConfig;
    use std::path::Path;

    fn model(json: &str, vocab: usize) -> Model {
        Model::new(&ModelConfig::from_json(json, Path::new("<test>")).unwrap(), vocab, 0).unwrap()
    }

    #[test]
    fn w1_causal_cnn_has_the_benchmark_parameter_count() {
        // bench/WORKLOADS.md W1: V=5000, E=256, C=128, K=3, conv0 + 5 hidden + head.
        let m = model(r#"{"family":"causal-cnn","n_embd":256,"channels":128,"kernel_size":3,"n_layers":6,"activation":"relu"}"#, 5000);
        let s = summary(&m, 2, 5).unwrap();
        assert_eq!(s.total_params, 3_549_832);
        assert_eq!(s.trainable_params, 3_549_832);
        assert_eq!(s.rows.iter().map(|r| r.params).sum::<usize>(), 3_549_832);
        let names: Vec<&str> = s.rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["embedding", "convs.0", "convs.1", "convs.2", "convs.3", "convs.4", "convs.5", "head"]);
        assert_eq!(s.rows[1].params, 256 * 3 * 128 + 128);
        assert_eq!(s.rows[7].kind, LayerKind::Conv1d { kernel: 3 });
        assert_eq!(s.rows[7].output_shape, [2, 5, 5000]);
        assert_eq!(s.output_shape, [2, 5, 5000]);
        assert_eq!(s.receptive_field, 15);
    }

    #[test]
    fn golden_configs_count_the_golden_parameters() {
        for family in crate::models::FAMILIES {
            let path = format!("{}/../shared/golden/models/{family}.json", env!("CARGO_MANIFEST_DIR"));
            let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let mut cfg = doc["config"].clone();
            let vocab = cfg.as_object_mut().unwrap().remove("vocab_size").unwrap().as_u64().unwrap() as usize;
            cfg["family"] = doc["family"].clone();
            let m = Model::new(&serde_json::from_value(cfg).unwrap(), vocab, 0).unwrap();
            let want: usize = doc["params"]
                .as_object()
                .unwrap()
                .values()
                .map(|t| t["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).product::<usize>())
                .sum();
            let s = summary(&m, 2, 6).unwrap();
            assert_eq!(s.total_params, want, "{family}");
            assert_eq!(s.rows.iter().map(|r| r.params).sum::<usize>(), want, "{family}: rows");
            assert_eq!(s.rows.last().unwrap().output_shape, s.output_shape, "{family}: head shape");
        }
    }

    #[test]
    fn mult_adds_of_a_small_conv_by_hand() {
        // E=4 → C=3 (k=2) → head C=3 → V=5 (k=2), over B=2, T=7: 14 positions.
        let m = model(r#"{"family":"causal-cnn","n_embd":4,"channels":3,"kernel_size":2,"n_layers":1}"#, 5);
        let s = summary(&m, 2, 7).unwrap();
        let kinds: Vec<LayerKind> = s.rows.iter().map(|r| r.kind).collect();
        assert_eq!(kinds, [LayerKind::Embedding, LayerKind::Conv1d { kernel: 2 }, LayerKind::Conv1d { kernel: 2 }]);
        assert_eq!(s.rows[0].mult_adds, 0);
        assert_eq!(s.rows[1].mult_adds, 3 * 4 * 2 * 14); // 336
        assert_eq!(s.rows[1].output_shape, [2, 7, 3]);
        assert_eq!(s.rows[2].mult_adds, 5 * 3 * 2 * 14); // 420
        assert_eq!(s.total_mult_adds, 756);
    }

    #[test]
    fn every_layer_type_is_recognised() {
        let h = summary(&model(r#"{"family":"hierarchical","block_size":4,"n_embd":3,"n_hidden":5}"#, 7), 1, 4).unwrap();
        let kinds: Vec<LayerKind> = h.rows.iter().map(|r| r.kind).collect();
        use LayerKind::*;
        assert_eq!(kinds, [Embedding, Conv1d { kernel: 2 }, Conv1d { kernel: 2 }, BatchNorm1d, BatchNorm1d, Linear]);
        assert_eq!(h.rows[3].mult_adds, 5 * 4);
        let p = summary(&model(r#"{"family":"pixelcnn","n_embd":3,"channels":4,"kernel_size":3,"n_layers":2}"#, 7), 2, 5).unwrap();
        assert_eq!(p.input_shape, [2, 5, 5]);
        assert_eq!(p.rows[1].kind, MaskedConv2d { kernel: 3 });
        assert_eq!(p.rows[1].output_shape, [2, 5, 5, 4]);
        assert_eq!(p.rows[1].mult_adds, 4 * 3 * 9 * 50);
        assert_eq!(p.output_shape, [2, 5, 5, 7]);
        let w = summary(&model(r#"{"family":"wavenet","residual_channels":4,"dilation_channels":3,"skip_channels":5,"n_layers":2}"#, 7), 1, 3).unwrap();
        let names: Vec<&str> = w.rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "embedding",
                "blocks.0.filter",
                "blocks.0.gate",
                "blocks.0.residual",
                "blocks.0.skip",
                "blocks.1.filter",
                "blocks.1.gate",
                "blocks.1.skip",
                "post",
                "head"
            ]
        );
    }

    #[test]
    fn a_tied_head_says_which_weight_it_shares_and_counts_only_its_bias() {
        let json = r#"{"family":"hyena","d_model":8,"n_layers":1,"max_len":16,"filter_width":4,"tie_embeddings":true}"#;
        let tied = summary(&model(json, 11), 2, 5).unwrap();
        let untied = summary(&model(&json.replace("true", "false"), 11), 2, 5).unwrap();
        let head = tied.rows.last().unwrap();
        assert_eq!((head.name.as_str(), head.shares.as_deref(), head.params), ("head", Some("embedding.weight"), 11));
        assert!(tied.rows[..tied.rows.len() - 1].iter().all(|r| r.shares.is_none()), "{tied:?}");
        assert_eq!(untied.rows.last().unwrap().shares, None);
        assert_eq!(untied.total_params - tied.total_params, 11 * 8, "the shared table is counted once");
        assert_eq!(head.mult_adds, untied.rows.last().unwrap().mult_adds, "a tied head still multiplies");
        let text = tied.to_string();
        assert!(text.lines().any(|l| l.starts_with("head") && l.contains("Linear (weight = embedding.weight)")), "{text}");
    }

    #[test]
    fn display_is_an_aligned_table_with_totals() {
        let s = summary(&model(r#"{"family":"mlp"}"#, 27), 32, 3).unwrap();
        let text = s.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].starts_with("Layer") && lines[1].contains("Mult-adds"), "{text}");
        let table: Vec<&str> = lines[1..].iter().take_while(|l| !l.starts_with('=')).copied().collect();
        let width = table[0].chars().count();
        assert!(table.iter().all(|l| l.chars().count() == width), "ragged table:\n{text}");
        assert!(text.contains("hidden  ") && text.contains("Conv1d(k=3)") && text.contains("[32, 3, 64]"), "{text}");
        assert!(text.contains(&format!("Total params: {}", thousands(s.total_params as u64))), "{text}");
        assert!(text.contains("Receptive field: 3 tokens"), "{text}");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
    }

    #[test]
    fn empty_inputs_are_rejected() {
        assert!(summary(&model(r#"{"family":"mlp"}"#, 27), 0, 3).is_err());
    }
}
