//! model.safetensors must load into reference/models.py with `load_state_dict(strict=True)`:
//! the saved names and shapes equal the PyTorch parameters of every golden file (plus the
//! BatchNorm running statistics, which PyTorch also expects).

mod common;

use common::{model_config, named, read_json, shared};
use convlm::io::load_safetensors;
use convlm::models::{Model, FAMILIES};
use convlm::run::checkpoint::{RunDir, MODEL_FILE};

#[test]
fn saved_weights_have_pytorch_names_and_shapes() {
    let dir = tempfile::tempdir().unwrap();
    for family in FAMILIES {
        let doc = read_json(&shared(&format!("golden/models/{family}.json")));
        let (config, vocab) = model_config(&doc);
        let model = Model::new(&config, vocab, 0).unwrap();
        let run = RunDir::new(dir.path().join(family));
        run.create().unwrap();
        run.save_weights(MODEL_FILE, &model, 0).unwrap();
        let (tensors, meta) = load_safetensors(&run.file(MODEL_FILE)).unwrap();
        assert_eq!(meta.get("family").map(String::as_str), Some(family));

        let mut want: Vec<(String, Vec<usize>)> = named(&doc["params"]).into_iter().map(|(n, t)| (n, t.shape().to_vec())).collect();
        if let Some(b) = doc.get("final_buffers") {
            want.extend(named(b).into_iter().filter(|(n, _)| !n.ends_with("num_batches_tracked")).map(|(n, t)| (n, t.shape().to_vec())));
        }
        let mut got: Vec<(String, Vec<usize>)> = tensors.into_iter().map(|(n, t)| (n, t.shape().to_vec())).collect();
        want.sort();
        got.sort();
        assert_eq!(got, want, "{family}: saved state_dict differs from PyTorch's");
    }
}
