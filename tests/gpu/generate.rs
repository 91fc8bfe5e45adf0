//! Cached generation on a GPU against the CPU engine, for every family of the registry at a
//! tiny size: each position's logits within 1e-4 of the CPU's step, greedy samples token for
//! token the CPU's, and PixelCNN's grid filled with the same cells. Skipped (printing why)
//! without an adapter, a failure then under `CONVLM_REQUIRE_GPU=1`.

#[cfg(feature = "gpu")]
mod on_gpu {
    use crate::common::gpu::available;
    use convlm::generate::{generate, generate_grid, generate_grid_on, generate_on, Engine, GenerateRequest, SamplingConfig};
    use convlm::models::{Model, ModelConfig};
    use convlm::nn::device::DeviceParams;
    use convlm::tensor::gpu::GpuDevice;
    use convlm::tensor::Device;

    const SEQUENCE_FAMILIES: [&str; 7] = [
        r#"{"family":"mlp","block_size":3,"n_embd":5,"n_hidden":16}"#,
        r#"{"family":"causal-cnn","n_embd":6,"channels":8,"kernel_size":3,"n_layers":3}"#,
        r#"{"family":"dilated","n_embd":6,"channels":8,"kernel_size":2,"dilations":[1,2,4]}"#,
        r#"{"family":"hierarchical","block_size":8,"n_embd":6,"n_hidden":12,"batchnorm":true}"#,
        r#"{"family":"wavenet","residual_channels":8,"dilation_channels":6,"skip_channels":10,"kernel_size":2,"n_layers":3,"n_stacks":2}"#,
        r#"{"family":"gated-cnn","n_embd":6,"channels":8,"kernel_size":3,"n_blocks":2,"layers_per_block":2}"#,
        r#"{"family":"hyena","d_model":8,"n_layers":2,"max_len":16,"mlp_ratio":2,"filter_emb_dim":5,"filter_width":6,"filter_inner":1}"#,
    ];

    fn model(json: &str, vocab: usize) -> Model {
        Model::new(&ModelConfig::from_json(json, std::path::Path::new("<test>")).unwrap(), vocab, 7).unwrap()
    }

    #[test]
    fn every_sequence_family_steps_and_samples_as_on_the_cpu() {
        if !available(Device::Gpu) {
            return;
        }
        let d = GpuDevice::open(Device::Gpu).unwrap();
        for json in SEQUENCE_FAMILIES {
            let m = model(json, 11);
            let params = DeviceParams::upload(&d, m.params(), m.buffers()).unwrap();
            let family = m.config().family();
            // Every position's logits, three sequences at once.
            let (mut cpu, mut gpu) = (m.new_state(3), m.new_device_state(3));
            for t in 0..12u32 {
                let ids = [t % 11, (3 * t + 1) % 11, (5 * t + 2) % 11];
                let a = m.step(&mut cpu, &ids).unwrap();
                let b = m.step_on_device(&params, &mut gpu, &ids).unwrap();
                let scale = a.data().iter().fold(0.0f32, |s, v| s.max(v.abs()));
                let worst = a.data().iter().zip(b.data()).fold(0.0f32, |w, (x, y)| w.max((x - y).abs()));
                assert!(worst <= 1e-4 * scale.max(1.0), "{family} position {t}: {worst}");
            }
            // Greedy samples from prompts of different lengths.
            let sampling = SamplingConfig { temperature: 0.0, max_tokens: 10, seed: 1, ..SamplingConfig::default() };
            let req = GenerateRequest { prompts: vec![vec![1], vec![2, 5, 7], vec![3, 3]], stop: Some(0), sampling: &sampling, banned: vec![10], cancel: None };
            assert_eq!(generate_on(&m, Engine::Gpu(&params), &req).unwrap(), generate(&m, &req).unwrap(), "{family}: greedy samples");
            // And with temperature: the same logits up to rounding draw the same tokens.
            let sampling = SamplingConfig { temperature: 1.0, max_tokens: 10, seed: 4, ..SamplingConfig::default() };
            let req = GenerateRequest { prompts: vec![vec![1]; 3], stop: None, sampling: &sampling, banned: vec![], cancel: None };
            assert_eq!(generate_on(&m, Engine::Gpu(&params), &req).unwrap(), generate(&m, &req).unwrap(), "{family}: sampled");
        }
    }

    #[test]
    fn pixelcnn_fills_the_grid_with_the_cpus_cells() {
        if !available(Device::Gpu) {
            return;
        }
        let d = GpuDevice::open(Device::Gpu).unwrap();
        let m = model(r#"{"family":"pixelcnn","n_embd":4,"channels":6,"kernel_size":3,"n_layers":2}"#, 7);
        let params = DeviceParams::upload(&d, m.params(), m.buffers()).unwrap();
        let cfg = SamplingConfig { temperature: 0.0, seed: 2, ..SamplingConfig::default() };
        let cpu = generate_grid(&m, 3, 4, &[5, 1], &cfg, &[0]).unwrap();
        let gpu = generate_grid_on(&m, Engine::Gpu(&params), 3, 4, &[5, 1], &cfg, &[0]).unwrap();
        assert_eq!(gpu, cpu);
        assert_eq!(&gpu[..2], &[5, 1]);
    }

    #[test]
    fn a_step_past_max_len_is_refused_on_the_gpu_too() {
        if !available(Device::Gpu) {
            return;
        }
        let d = GpuDevice::open(Device::Gpu).unwrap();
        let m = model(SEQUENCE_FAMILIES[6], 11);
        let params = DeviceParams::upload(&d, m.params(), m.buffers()).unwrap();
        let mut s = m.new_device_state(1);
        for t in 0..16 {
            m.step_on_device(&params, &mut s, &[t % 11]).unwrap();
        }
        let err = m.step_on_device(&params, &mut s, &[1]).unwrap_err().to_string();
        assert!(err.contains("at most 16 tokens"), "{err}");
    }
}
