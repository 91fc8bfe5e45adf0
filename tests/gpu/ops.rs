//! The GPU engine against the CPU engine, op by op (`convlm::bench::selftest`: every op's
//! forward values and input gradients, both GEMM kernels, the optimizers, the gradient norm,
//! one step of every family), and the GPU's named errors: an adapter index past the list, an
//! allocation larger than the device allows, an op without a GPU kernel, a wrong shape.
//! Without an adapter each test prints `skipped: <reason>` (a failure under
//! `CONVLM_REQUIRE_GPU=1`).

#[cfg(feature = "gpu")]
mod on_gpu {
    use crate::common::gpu::available;
    use convlm::tensor::gpu::{GpuDevice, GpuGraph, GpuTensor};
    use convlm::tensor::{Device, Tensor};

    fn device() -> Option<GpuDevice> {
        available(Device::Gpu).then(|| GpuDevice::open(Device::Gpu).unwrap())
    }

    #[test]
    fn every_kernel_agrees_with_the_cpu_engine() {
        let Some(d) = device() else { return };
        let checks = convlm::bench::selftest::run(&d).unwrap();
        println!("{}", convlm::bench::selftest::table(&checks));
        let bad: Vec<_> = checks.iter().filter(|c| !c.ok()).collect();
        assert!(bad.is_empty(), "{} checks disagree: {bad:#?}", bad.len());
        // Every op group and every family is in the table, forward and backward.
        for case in [
            "linear",
            "embedding",
            "conv1d depthwise",
            "conv_transpose1d",
            "masked_conv2d",
            "cross_entropy",
            "layernorm",
            "batchnorm train",
            "gelu",
            "glu",
            "long_conv",
            "dropout",
            "adamw",
            "hyena: every gradient",
            "pixelcnn: AdamW step",
        ] {
            assert!(checks.iter().any(|c| c.case.starts_with(case)), "no check of {case}");
        }
        assert!(checks.iter().filter(|c| c.pass == "backward").count() >= 30);
    }

    #[test]
    fn an_adapter_past_the_list_is_named_with_the_list() {
        if device().is_none() {
            return;
        }
        let err = GpuDevice::open(Device::GpuIndex(99)).unwrap_err().to_string();
        assert!(err.contains("gpu:99 does not exist") && err.contains("gpu:0 "), "{err}");
    }

    #[test]
    fn an_allocation_past_the_device_limit_names_its_size() {
        let Some(d) = device() else { return };
        let too_many = (d.max_buffer_bytes() / 4 + 1) as usize;
        let err = GpuTensor::empty(&d, &[too_many], "the test tensor").unwrap_err().to_string();
        let bytes = too_many as u64 * 4;
        assert!(err.contains("the test tensor") && err.contains(&format!("{bytes} bytes")) && err.contains("at most"), "{err}");
        // An op whose output would pass the limit fails the same way, naming what it makes:
        // a 4 MiB embedding row looked up enough times.
        let width = 1usize << 20;
        let n = (d.max_buffer_bytes() / (4 * width as u64) + 1) as usize;
        let mut g = GpuGraph::new(&d, true);
        let table = g.leaf(GpuTensor::zeros(&d, &[1, width], "table").unwrap());
        let err = g.embedding(table, &vec![0u32; n], &[n]).unwrap_err().to_string();
        assert!(err.starts_with("device: embeddings needs a buffer of") && err.contains("at most"), "{err}");
        // The device still works afterwards.
        let t = GpuTensor::from_slice(&d, &[3], &[1.0, 2.0, 3.0]).unwrap();
        assert_eq!(t.to_vec().unwrap(), [1.0, 2.0, 3.0]);
    }

    #[test]
    fn an_op_without_a_gpu_kernel_is_an_error_naming_it() {
        let Some(d) = device() else { return };
        let mut g = GpuGraph::new(&d, true);
        let x = g.leaf(GpuTensor::zeros(&d, &[2, 3], "x").unwrap());
        for (op, err) in [("concat", g.concat(&[x, x], 0)), ("pad", g.pad(x, 1, 1, 0)), ("transpose_last2", g.transpose_last2(x))] {
            let err = err.unwrap_err().to_string();
            assert!(err.contains(&format!("`{op}` has no GPU kernel")) && err.contains("--device cpu"), "{err}");
        }
    }

    #[test]
    fn wrong_shapes_are_errors_naming_the_op() {
        let Some(d) = device() else { return };
        let mut g = GpuGraph::new(&d, true);
        let x = g.leaf(GpuTensor::zeros(&d, &[2, 3], "x").unwrap());
        let y = g.leaf(GpuTensor::zeros(&d, &[3, 2], "y").unwrap());
        assert!(g.add(x, y).unwrap_err().to_string().starts_with("add: shapes"));
        assert!(g.linear(x, y, None).unwrap_err().to_string().starts_with("linear:"));
        let err = g.embedding(y, &[0, 5], &[2]).unwrap_err().to_string();
        assert!(err.contains("token id 5 is outside the vocabulary of 3"), "{err}");
        let err = g.cross_entropy(x, &[0, 9]).unwrap_err().to_string();
        assert!(err.contains("target 9 is outside the vocabulary of 3"), "{err}");
    }

    #[test]
    fn sums_scales_and_views_match_the_cpu_tape() {
        let Some(d) = device() else { return };
        let data: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 2.0).collect();
        let weights: Vec<f32> = (0..12).map(|i| (i % 5) as f32 - 1.5).collect();
        let mut g = GpuGraph::new(&d, true);
        let x = g.leaf(GpuTensor::from_slice(&d, &[3, 4], &data).unwrap());
        let r = g.reshape(x, &[4, 3]).unwrap();
        let s = g.scale(r, 2.5).unwrap();
        let w = g.weighted_sum(s, &weights).unwrap();
        let t = g.sum(x).unwrap();
        let both = g.add(w, t).unwrap();
        g.backward(both).unwrap();
        let mut c = convlm::tensor::Graph::new(true);
        let cx = c.leaf(Tensor::new(vec![3, 4], data.clone()).unwrap());
        let cr = c.reshape(cx, &[4, 3]).unwrap();
        let cs = c.scale(cr, 2.5);
        let cw = c.weighted_sum(cs, &weights).unwrap();
        let ct = c.sum(cx);
        let cb = c.add(cw, ct).unwrap();
        c.backward(cb).unwrap();
        assert_eq!(g.value(both).to_vec().unwrap(), c.value(cb).data());
        assert_eq!(g.grad(x).unwrap().to_vec().unwrap(), c.grad(cx).unwrap());
    }
}

#[cfg(not(feature = "gpu"))]
#[test]
fn skipped_without_the_gpu_feature() {
    assert!(!crate::common::gpu::available(convlm::tensor::Device::Gpu));
}
