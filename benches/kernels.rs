//! Criterion benches of the hot kernels of the benchmark workloads, so regressions show:
//! conv1d forward/backward (whole, and each gradient on its own) at W1 and W2 shapes, and the fused log-softmax + cross-entropy
//! forward+backward at W1's (4096, 5000) logits.
//!
//!     cargo bench --bench kernels [-- filter]      (threads: CONVLM_THREADS, default all)
use convlm::tensor::kernels::conv1d::{conv1d_backward, conv1d_forward, Conv1dSpec, Padding};
use convlm::tensor::kernels::conv1d_loss::conv1d_cross_entropy;
use convlm::tensor::{threads, Graph, Tensor};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn rand_vec(n: usize, rng: &mut impl Rng) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

/// `padding` None: causal (output as long as the input); Some(p): symmetric p.
#[allow(clippy::too_many_arguments)]
fn conv_case(c: &mut Criterion, name: &str, batch: usize, len: usize, c_in: usize, c_out: usize, k: usize, dilation: usize, padding: Option<usize>) {
    threads::init_threads(None);
    let spec = Conv1dSpec {
        in_channels: c_in,
        out_channels: c_out,
        kernel_size: k,
        stride: 1,
        padding: padding.map_or(Padding::causal(k, dilation), Padding::Symmetric),
        dilation,
        groups: 1,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let x = rand_vec(batch * len * c_in, &mut rng);
    let w = rand_vec(c_out * c_in * k, &mut rng);
    let b = rand_vec(c_out, &mut rng);
    let t_out = spec.output_len(len).unwrap();
    let go = rand_vec(batch * t_out * c_out, &mut rng);
    let mut out = vec![0.0; batch * t_out * c_out];
    let (mut gx, mut gw, mut gb) = (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; c_out]);
    let flop = 2 * batch * t_out * c_in * c_out * k;
    let mut g = c.benchmark_group(name);
    g.sample_size(10);
    g.throughput(Throughput::Elements(flop as u64));
    g.bench_function("forward", |bench| bench.iter(|| conv1d_forward(&spec, &x, batch, len, &w, Some(&b), &mut out).unwrap()));
    g.throughput(Throughput::Elements(2 * flop as u64));
    g.bench_function("backward", |bench| bench.iter(|| conv1d_backward(&spec, &x, batch, len, &w, &go, Some(&mut gx), Some(&mut gw), Some(&mut gb)).unwrap()));
    // Each half of the backward on its own (the input gradient and the weight + bias
    // gradients are separate GEMMs with different shapes).
    g.throughput(Throughput::Elements(flop as u64));
    g.bench_function("backward_input", |bench| bench.iter(|| conv1d_backward(&spec, &x, batch, len, &w, &go, Some(&mut gx), None, None).unwrap()));
    g.bench_function("backward_weight", |bench| bench.iter(|| conv1d_backward(&spec, &x, batch, len, &w, &go, None, Some(&mut gw), Some(&mut gb)).unwrap()));
    g.finish();
}

fn convs(c: &mut Criterion) {
    conv_case(c, "conv1d_w1_first_16x258_256to128_k3_unpadded", 16, 258, 256, 128, 3, 1, Some(0));
    conv_case(c, "conv1d_w1_hidden_16x256_128to128_k3", 16, 256, 128, 128, 3, 1, None);
    conv_case(c, "conv1d_w1_head_16x256_128to5000_k3", 16, 256, 128, 5000, 3, 1, None);
    conv_case(c, "conv1d_w2_32x24_128to128_k2_d4", 32, 24, 128, 128, 2, 4, None);
    conv_case(c, "conv1d_w2_head_32x24_128to28_k1", 32, 24, 128, 28, 1, 1, None);
}

fn cross_entropy(c: &mut Criterion) {
    threads::init_threads(None);
    let (rows, v) = (4096, 5000);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let logits = Tensor::new(vec![rows, v], rand_vec(rows * v, &mut rng)).unwrap();
    let targets: Vec<i64> = (0..rows).map(|_| rng.gen_range(0..v as i64)).collect();
    let mut g = c.benchmark_group("cross_entropy_4096x5000");
    g.sample_size(10);
    g.throughput(Throughput::Elements((rows * v) as u64));
    g.bench_function("forward_backward", |bench| {
        bench.iter_batched(
            || logits.clone(),
            |l| {
                let mut graph = Graph::new(true);
                let x = graph.leaf(l);
                let loss = graph.cross_entropy(x, &targets).unwrap();
                graph.backward(loss).unwrap();
                graph.grad(x).map(|g| g[0])
            },
            criterion::BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// W1's output conv and loss fused (`conv1d_cross_entropy`): forward with the loss
/// epilogue, then the weight, input and bias gradients.
fn fused_head(c: &mut Criterion) {
    threads::init_threads(None);
    let (batch, len, c_in, v, k) = (16, 256, 128, 5000, 3);
    let spec = Conv1dSpec { in_channels: c_in, out_channels: v, kernel_size: k, stride: 1, padding: Padding::causal(k, 1), dilation: 1, groups: 1 };
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let x = rand_vec(batch * len * c_in, &mut rng);
    let w: Vec<f32> = rand_vec(v * c_in * k, &mut rng).iter().map(|v| v * 0.05).collect();
    let b = rand_vec(v, &mut rng);
    let targets: Vec<i64> = (0..batch * len).map(|_| rng.gen_range(0..v as i64)).collect();
    let (mut gx, mut gw, mut gb) = (vec![0.0f32; x.len()], vec![0.0f32; w.len()], vec![0.0f32; v]);
    let mut g = c.benchmark_group("conv1d_cross_entropy_w1_head_16x256_128to5000_k3");
    g.sample_size(10);
    g.throughput(Throughput::Elements((batch * len * v) as u64)); // logits
    g.bench_function("forward", |bench| bench.iter(|| conv1d_cross_entropy(&spec, &x, batch, len, &w, Some(&b), &targets, false).unwrap().loss));
    g.bench_function("forward_backward", |bench| {
        bench.iter(|| {
            let head = conv1d_cross_entropy(&spec, &x, batch, len, &w, Some(&b), &targets, true).unwrap();
            head.grad.map(|grad| grad.backward(&w, 1.0, Some(&mut gx), Some(&mut gw), Some(&mut gb)))
        })
    });
    g.finish();
}

criterion_group!(benches, convs, cross_entropy, fused_head);
criterion_main!(benches);
