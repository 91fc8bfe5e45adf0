//! Criterion benches of the long causal convolution (the Hyena family's): direct summation
//! against FFT, forward and backward (all three gradients), at B = 4, C = 128 (W4's batch and
//! width) and T = 64 … 4096 (128 and 192 to place the crossover). They set
//! `long_conv::FFT_MIN_LEN`. Each call runs on a worker of the pool (`threads::on_pool`), as
//! the training step's ops do: from the main thread every parallel op would also pay for
//! handing all of its pieces to the pool and waking up again.
//!
//!     CONVLM_THREADS=2 cargo bench --bench long_conv [-- filter]
use convlm::tensor::kernels::long_conv::{long_conv_backward_with, long_conv_forward_with, LongConvMethod, LongConvShape};
use convlm::tensor::threads;
use criterion::{criterion_group, criterion_main, Criterion};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn rand_vec(n: usize, rng: &mut impl Rng) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

fn long_conv_case(c: &mut Criterion, batch: usize, len: usize, channels: usize) {
    threads::init_threads(None);
    let shape = LongConvShape::new(batch, len, channels, len);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let u = rand_vec(batch * len * channels, &mut rng);
    let k = rand_vec(channels * len, &mut rng);
    let d = rand_vec(channels, &mut rng);
    let gy = rand_vec(u.len(), &mut rng);
    let mut out = vec![0.0; u.len()];
    let (mut gu, mut gk, mut gd) = (vec![0.0; u.len()], vec![0.0; k.len()], vec![0.0; channels]);
    let mut g = c.benchmark_group(format!("long_conv_{batch}x{len}x{channels}"));
    g.sample_size(10);
    for (name, method) in [("direct", LongConvMethod::Direct), ("fft", LongConvMethod::Fft)] {
        g.bench_function(format!("{name}_forward"), |bench| bench.iter(|| long_conv_forward_with(method, &shape, &u, &k, &d, &mut out).unwrap()));
        g.bench_function(format!("{name}_backward"), |bench| {
            bench.iter(|| long_conv_backward_with(method, &shape, &u, &k, &d, &gy, Some(&mut gu), Some(&mut gk), Some(&mut gd)).unwrap())
        });
    }
    g.finish();
}

fn long_convs(c: &mut Criterion) {
    for len in [64, 128, 192, 256, 1024, 4096] {
        long_conv_case(c, 4, len, 128);
    }
}

criterion_group!(benches, long_convs);
criterion_main!(benches);
