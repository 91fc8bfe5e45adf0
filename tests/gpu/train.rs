//! What a training step on a GPU moves between host and device: the batch's token ids go up,
//! the step's status words come back (loss, gradient norm, clip coefficient, skip flag, first
//! parameter that became non-finite; 8 words with padding), whatever the model's size; the
//! weights stay on the device until the host asks for them.

#[cfg(feature = "gpu")]
mod on_gpu {
    use crate::common::gpu::{alone, available};
    use convlm::data::Batch;
    use convlm::models::{Model, ModelConfig};
    use convlm::optim::{Optimizer, OptimizerConfig, OptimizerKind};
    use convlm::run::device::DeviceRun;
    use convlm::run::step::{StepOutcome, StepSettings};
    use convlm::tensor::gpu::{GpuDevice, Traffic};
    use convlm::tensor::Device;

    const VOCAB: usize = 11;
    const T: usize = 16;

    /// The traffic of a model's second training step (the first one's allocations aside) on
    /// a batch of `rows` rows, and the model's parameter count.
    fn second_step(d: &GpuDevice, channels: usize, rows: usize) -> (Traffic, usize) {
        let json = format!(r#"{{"family":"dilated","n_embd":6,"channels":{channels},"kernel_size":2,"dilations":[1,2,4]}}"#);
        let mut model = Model::new(&ModelConfig::from_json(&json, std::path::Path::new("<test>")).unwrap(), VOCAB, 7).unwrap();
        let config = OptimizerConfig { kind: OptimizerKind::AdamW, lr: 1e-3, ..OptimizerConfig::default() };
        let mut opt = Optimizer::new(&config, model.params()).unwrap();
        let mut run = DeviceRun::new(d, &model, &opt).unwrap();
        let batch = Batch {
            inputs: (0..rows * T).map(|i| (i * 7 % VOCAB) as u32).collect(),  // (B, T)
            targets: (0..rows * T).map(|i| (i * 5 % VOCAB) as i64).collect(), // (B, T)
            batch_size: rows,
            seq_len: T,
            grid: None,
        };
        let settings = StepSettings { lr: 1e-3, clip_grad: Some(1.0), dropout_seed: 0, precision: convlm::tensor::Precision::Fp32 };
        assert!(matches!(run.step(&mut model, &mut opt, &batch, settings).unwrap(), StepOutcome::Done(_)));
        let before = run.traffic();
        assert!(matches!(run.step(&mut model, &mut opt, &batch, settings).unwrap(), StepOutcome::Done(_)));
        (run.traffic().since(&before), model.params().params().iter().map(|p| p.value.data().len()).sum())
    }

    /// The device's counters are the process's, so the test runs [`alone`].
    #[test]
    fn a_step_moves_the_token_ids_up_and_the_status_words_down_whatever_the_model_size() {
        if !available(Device::Gpu) {
            return;
        }
        if !alone("train::on_gpu::a_step_moves_the_token_ids_up_and_the_status_words_down_whatever_the_model_size") {
            return;
        }
        let d = GpuDevice::open(Device::Gpu).unwrap();
        let (small, small_params) = second_step(&d, 8, 4);
        let (large, large_params) = second_step(&d, 96, 4);
        assert!(large_params > 20 * small_params, "{small_params} vs {large_params} parameters");
        assert_eq!(small.down, 8 * 4, "the 8 status words come back, nothing else: {small:?}");
        assert_eq!((large.up, large.down), (small.up, small.down), "the bytes moved do not grow with the model");
        // Up: the inputs and targets, the embedding gradient's index arrays and the status
        // words' reset, each at most one 4-byte word per token plus one per vocabulary entry.
        let tokens = (4 * T) as u64;
        assert!(small.up >= 2 * 4 * tokens && small.up <= 4 * (4 * tokens + VOCAB as u64 + 1), "{small:?}");
        assert!(small.up < (small_params as u64) * 4, "less than the weights: {small:?}");
        // Twice the rows: twice the token-sized arrays.
        let (double, _) = second_step(&d, 8, 8);
        assert_eq!(double.down, small.down);
        assert!(double.up > small.up && double.up <= 2 * small.up, "{small:?} then {double:?}");
    }
}
