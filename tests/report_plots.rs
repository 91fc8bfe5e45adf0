//! Reports: PCA of embedding tables, loss-curve and embedding SVGs, and the run-level
//! `plot_run` / `plot_embeddings` that write them into a run directory.

use convlm::data::{CharTokenizer, Normalization, Tokenizer, UnknownPolicy};
use convlm::models::Model;
use convlm::report::{embedding_pca, embeddings_svg, loss_curves_svg, pca2, MAX_LABELS};
use convlm::run::checkpoint::{METRICS_FILE, MODEL_FILE, PLOT_FILE};
use convlm::run::plots::{plot_embeddings, plot_run, EMBEDDINGS_PLOT_FILE};
use convlm::run::{RunConfig, RunDir};
use convlm::Tensor;
use serde_json::{json, Value};

/// Checks that `svg` is one well-formed `<svg>` element: every tag closed in order, no raw
/// `<` in text or attributes, and every `&` the start of an entity.
fn assert_well_formed(svg: &str) {
    let svg = svg.trim();
    assert!(svg.starts_with("<svg"), "does not start with <svg");
    assert!(svg.ends_with("</svg>"), "does not end with </svg>");
    let mut stack: Vec<&str> = Vec::new();
    let mut rest = svg;
    while let Some(open) = rest.find('<') {
        assert!(!rest[..open].contains('>'), "unescaped > in {:?}", &rest[..open]);
        check_entities(&rest[..open]);
        let close = rest[open..].find('>').expect("unclosed tag") + open;
        let tag = &rest[open + 1..close];
        assert!(!tag.contains('<'), "raw < inside tag {tag}");
        check_entities(tag);
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop(), Some(name.trim()), "mismatched </{name}>");
        } else if !tag.ends_with('/') {
            stack.push(tag.split_whitespace().next().expect("empty tag"));
        }
        rest = &rest[close + 1..];
        if stack.is_empty() {
            assert!(rest.trim().is_empty(), "content after the root element");
        }
    }
    assert!(stack.is_empty(), "unclosed elements {stack:?}");
}

fn check_entities(text: &str) {
    for (i, _) in text.match_indices('&') {
        let after = &text[i..];
        assert!(["&amp;", "&lt;", "&gt;", "&quot;", "&apos;", "&#"].iter().any(|e| after.starts_with(e)), "unescaped & in {text:?}");
    }
}

/// Keeps a copy of a plot for people to look at when REPORT_PLOTS_DIR is set.
fn keep(name: &str, svg: &str) {
    if let Some(dir) = std::env::var_os("REPORT_PLOTS_DIR") {
        std::fs::write(std::path::Path::new(&dir).join(name), svg).unwrap();
    }
}

/// A (100, 4) table: mean (5, -2, 1, 0) plus 3·a·u1 + b·u2 for every pair (a, b) of a 10 × 10
/// grid of [-1, 1]² (so a and b are exactly uncorrelated), with u1 = (1, 2, 3, 4)/√30 and
/// u2 = (4, -3, 2, -1)/√30 orthogonal; `flip` negates u1.
fn table_along_known_directions(flip: bool) -> (Tensor, [f64; 4], [f64; 4]) {
    let r = 30f64.sqrt();
    let u1 = [1.0 / r, 2.0 / r, 3.0 / r, 4.0 / r];
    let u2 = [4.0 / r, -3.0 / r, 2.0 / r, -1.0 / r];
    let mean = [5.0, -2.0, 1.0, 0.0];
    let s = if flip { -1.0 } else { 1.0 };
    let mut data = Vec::new();
    for i in 0..100 {
        let a = (i / 10) as f64 / 4.5 - 1.0;
        let b = (i % 10) as f64 / 4.5 - 1.0;
        for k in 0..4 {
            data.push((mean[k] + 3.0 * s * a * u1[k] + b * u2[k]) as f32);
        }
    }
    (Tensor::new(vec![100, 4], data).unwrap(), u1, u2)
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn report_pca_recovers_known_directions_with_fixed_signs() {
    let (table, u1, u2) = table_along_known_directions(false);
    let pca = pca2(&table).unwrap();
    // Largest coordinate positive: +u1 (its 4th) and +u2 (its 1st), exactly these signs.
    for (c, u) in pca.components.iter().zip([u1, u2]) {
        assert!((dot(c, &u) - 1.0).abs() < 1e-5, "component {c:?} is not {u:?}");
    }
    assert!(pca.variances[0] > pca.variances[1] && pca.variances[1] > 0.0);
    // The variances are those of the projected points, and add up to the total (rank 2).
    for k in 0..2 {
        let n = pca.points.len() as f64;
        let m = pca.points.iter().map(|p| p[k]).sum::<f64>() / n;
        let var = pca.points.iter().map(|p| (p[k] - m).powi(2)).sum::<f64>() / (n - 1.0);
        assert!(m.abs() < 1e-5 && (var - pca.variances[k]).abs() < 1e-5 * pca.variances[k]);
    }
    assert!((pca.variances[0] + pca.variances[1] - pca.total_variance).abs() < 1e-5 * pca.total_variance);
    assert_eq!(embedding_pca(&table).unwrap(), pca.points);
}

#[test]
fn report_pca_sign_convention_does_not_follow_the_data() {
    let (table, ..) = table_along_known_directions(false);
    let (flipped, ..) = table_along_known_directions(true);
    let (a, b) = (pca2(&table).unwrap(), pca2(&flipped).unwrap());
    for k in 0..2 {
        assert!(dot(&a.components[k], &b.components[k]) > 1.0 - 1e-6);
    }
    // The same data gives bit-identical results.
    assert_eq!(pca2(&table).unwrap(), a);
}

#[test]
fn report_pca_degenerate_and_invalid_tables() {
    let one = pca2(&Tensor::new(vec![1, 3], vec![1.0, 2.0, 3.0]).unwrap()).unwrap();
    assert_eq!(one.points, vec![[0.0, 0.0]]);
    let line = embedding_pca(&Tensor::new(vec![3, 1], vec![1.0, 2.0, 4.0]).unwrap()).unwrap();
    assert!(line.iter().all(|p| p[1] == 0.0) && line[2][0] > line[0][0]);
    assert!(embedding_pca(&Tensor::new(vec![6], vec![0.0; 6]).unwrap()).is_err());
    assert!(embedding_pca(&Tensor::new(vec![0, 4], vec![]).unwrap()).is_err());
    assert!(embedding_pca(&Tensor::new(vec![2, 1], vec![0.0, f32::NAN]).unwrap()).is_err());
}

fn train_records(n: u64) -> Vec<Value> {
    (1..=n).map(|s| json!({"step": s * 10, "loss": 3.3 * (-(s as f64) / 40.0).exp() + 1.2 + 0.1 * ((s * 7 % 11) as f64 / 11.0), "lr": 1e-3, "grad_norm": 1.0, "tokens_per_s": 5000.0})).collect()
}

#[test]
fn report_loss_curves_training_only() {
    let svg = loss_curves_svg(&train_records(50), "names <dilated> & co").unwrap();
    assert_well_formed(&svg);
    assert_eq!(svg.matches("<polyline").count(), 2, "raw and smoothed train loss");
    assert!(!svg.contains("<circle") && !svg.contains("validation"));
    assert!(svg.contains("names &lt;dilated&gt; &amp; co"));
    assert!(svg.contains(">step<") && svg.contains(">loss (nats)<"));
}

#[test]
fn report_loss_curves_with_validation() {
    let mut records = train_records(100);
    for s in 1..=5 {
        records.push(json!({"step": s * 200, "val_loss": 2.0 - 0.1 * s as f64}));
    }
    let svg = loss_curves_svg(&records, "run").unwrap();
    keep("loss.svg", &svg);
    assert_well_formed(&svg);
    assert_eq!(svg.matches("<polyline").count(), 3);
    // Five markers on the curve and one in the legend.
    assert_eq!(svg.matches("<circle").count(), 6);
    assert!(svg.contains("best 1.5000 at step 1000"));
    let only_val = loss_curves_svg(&records[100..], "run").unwrap();
    assert_eq!(only_val.matches("<polyline").count(), 1);
}

#[test]
fn report_embeddings_svg_escapes_labels_and_colours_specials() {
    let n = MAX_LABELS + 50;
    let points: Vec<[f64; 2]> = (0..n).map(|i| [(i as f64).cos() * i as f64, (i as f64).sin()]).collect();
    let mut labels: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
    labels[0] = "<pad>".into();
    labels[1] = "&".into();
    labels[2] = "\"'".into();
    let specials: Vec<bool> = (0..n).map(|i| i == 0).collect();
    let svg = embeddings_svg(&points, &labels, &specials, "emb").unwrap();
    keep("embeddings_many.svg", &svg);
    assert_well_formed(&svg);
    assert!(svg.contains(">&lt;pad&gt;</text>") && svg.contains(">&amp;</text>") && svg.contains(">&quot;&apos;</text>"));
    assert!(!svg.contains("<pad>"));
    assert!(svg.contains("special token"));
    assert_eq!(svg.matches("<circle").count(), n + 2, "a dot per point plus two legend swatches");
    assert!(svg.contains(&format!(">t{}</text>", MAX_LABELS - 1)) && !svg.contains(&format!(">t{MAX_LABELS}</text>")));
}

#[test]
fn report_plot_run_writes_loss_svg() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path());
    let mut text: String = train_records(30).iter().map(|r| format!("{r}\n")).collect();
    text.push_str("{\"step\": 300, \"val_loss\": 1.9}\n{\"step\": 31"); // torn last line
    std::fs::write(run.file(METRICS_FILE), text).unwrap();
    let plot = plot_run(&run).unwrap();
    assert!(plot.skipped.is_empty(), "a torn last line is no damage: {:?}", plot.skipped);
    let path = plot.path;
    assert_eq!(path, run.file(PLOT_FILE));
    let svg = std::fs::read_to_string(&path).unwrap();
    assert_well_formed(&svg);
    assert_eq!(svg.matches("<polyline").count(), 3);
}

#[test]
fn report_plot_run_without_records_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path());
    let err = plot_run(&run).unwrap_err().to_string();
    assert!(err.contains(METRICS_FILE) && err.contains("no training records yet"), "{err}");
    std::fs::write(run.file(METRICS_FILE), "").unwrap();
    let err = plot_run(&run).unwrap_err().to_string();
    assert!(err.contains(METRICS_FILE) && err.contains("no training records yet"), "{err}");
    assert!(!run.file(PLOT_FILE).exists());
}

#[test]
fn report_plot_embeddings_of_a_saved_model() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path());
    let config = RunConfig::default();
    let tokenizer = Tokenizer::Char(CharTokenizer::from_corpus("hello world & <tags>\n", Normalization::default(), UnknownPolicy::MapToUnk));
    let model = Model::new(&config.model, tokenizer.vocab_size(), config.seed).unwrap();
    run.save_setup(&config, &tokenizer).unwrap();
    assert!(plot_embeddings(&run).unwrap_err().to_string().contains(MODEL_FILE));
    run.save_weights(MODEL_FILE, &model, 0).unwrap();
    let path = plot_embeddings(&run).unwrap();
    assert_eq!(path, run.file(EMBEDDINGS_PLOT_FILE));
    let svg = std::fs::read_to_string(&path).unwrap();
    keep("embeddings.svg", &svg);
    assert_well_formed(&svg);
    assert!(svg.contains(">&lt;pad&gt;</text>") && svg.contains(">&amp;</text>") && svg.contains(">␣</text>") && svg.contains(">↵</text>"));
}
