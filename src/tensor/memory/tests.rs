use std::alloc::{GlobalAlloc, Layout};

use super::*;

/// A pool with a budget of its own, so that other tests running at the same time neither
/// take its buffers nor fill its budget.
fn pool_with(limit: usize) -> (HostPool, &'static Budget) {
    let budget: &'static Budget = Box::leak(Box::new(Budget::new(limit)));
    (HostPool::new(budget), budget)
}

fn filled(len: usize, value: f32) -> Vec<f32> {
    vec![value; len]
}

#[test]
fn take_finds_the_best_fit_within_a_quarter_and_keeps_stale_values() {
    let (pool, _) = pool_with(1 << 30);
    pool.give(filled(4000, 1.0));
    pool.give(filled(5000, 2.0));
    pool.give(filled(9000, 3.0));
    // 4100 values: 5000 is the smallest that holds them and at most a quarter larger.
    let v = pool.take_vec(4100, Fill::Stale, Usage::Tape);
    assert_eq!(v.len(), 4100);
    assert!(v.iter().all(|&x| x == 2.0), "a stale take keeps the old values");
    // 3990 values fit 4000 (the 9000 one is more than a quarter larger than asked).
    let w = pool.take_vec(3990, Fill::Zeros, Usage::Scratch);
    assert!(w.len() == 3990 && w.iter().all(|&x| x == 0.0), "a zeros take is zeroed");
    // 6000 values: 9000 is more than a quarter larger, so a new buffer.
    let fresh = pool.take_vec(6000, Fill::Zeros, Usage::Tape);
    assert!(fresh.len() == 6000 && fresh.iter().all(|&x| x == 0.0));
    let r = pool.report();
    assert_eq!((r.tape.hits, r.tape.misses, r.scratch.hits, r.scratch.misses), (1, 1, 1, 0));
    assert_eq!(r.tape.fresh_bytes, 6000 * 4);
    assert_eq!((r.kept_buffers, r.kept_bytes), (1, 9000 * 4));
    assert_eq!(r.kept_peak_bytes, (4000 + 5000 + 9000) * 4);
    assert_eq!(r.device, "cpu");
}

#[test]
fn the_most_recently_given_back_of_equal_buffers_is_taken_and_lengths_grow_within_the_capacity() {
    let (pool, _) = pool_with(1 << 30);
    let mut old = Vec::with_capacity(2048);
    old.resize(1500, 1.0); // capacity 2048, 1500 values
    pool.give(old);
    let mut new = Vec::with_capacity(2048);
    new.resize(1500, 2.0);
    let new_at = new.as_ptr() as usize;
    pool.give(new);
    let v = pool.take_vec(2000, Fill::Stale, Usage::Tape);
    assert_eq!(v.as_ptr() as usize, new_at, "the most recent of two equal buffers");
    assert_eq!(v.len(), 2000);
    assert!(v[..1500].iter().all(|&x| x == 2.0), "the old values stay");
    assert!(v[1500..].iter().all(|&x| x == 0.0 || x.is_nan()), "the values added within the capacity are zeros, or NaN in debug builds");
}

#[test]
fn the_trait_take_is_take_vec_and_never_fails_on_the_cpu() {
    let (pool, _) = pool_with(1 << 30);
    pool.give(filled(3000, 4.0));
    let stale = BufferPool::take(&pool, 3000, Fill::Stale, Usage::Scratch).unwrap();
    assert!(stale.len() == 3000 && stale.iter().all(|&x| x == 4.0), "the kept buffer, as take_vec gives it");
    let zeros = BufferPool::take(&pool, 5000, Fill::Zeros, Usage::Tape).unwrap();
    assert!(zeros.len() == 5000 && zeros.iter().all(|&x| x == 0.0));
    let r = pool.report();
    assert_eq!((r.scratch.hits, r.tape.misses), (1, 1));
}

#[test]
fn small_buffers_are_neither_kept_nor_counted() {
    let (pool, _) = pool_with(1 << 30);
    pool.give(filled(host::MIN_KEPT - 1, 1.0));
    let v = pool.take_vec(host::MIN_KEPT - 1, Fill::Zeros, Usage::Tape);
    assert!(v.iter().all(|&x| x == 0.0));
    let r = pool.report();
    assert_eq!((r.kept_buffers, r.tape.hits, r.tape.misses), (0, 0, 0));
}

#[test]
fn beyond_the_budget_the_least_recently_given_back_buffers_are_freed_first() {
    let len = 2000;
    let (pool, budget) = pool_with(3 * len * 4); // room for three
    for value in 1..=4 {
        pool.give(filled(len, value as f32));
    }
    let r = pool.report();
    assert_eq!((r.kept_buffers, r.kept_bytes, r.evicted_bytes), (3, 3 * len as u64 * 4, len as u64 * 4));
    let mut left: Vec<f32> = (0..3).map(|_| pool.take_vec(len, Fill::Stale, Usage::Tape)[0]).collect();
    left.sort_by(f32::total_cmp);
    assert_eq!(left, [2.0, 3.0, 4.0], "the first buffer given back left first");
    // A buffer larger than the whole budget is not kept; a smaller budget evicts at once.
    pool.give(filled(4 * len, 9.0));
    assert_eq!(pool.report().kept_buffers, 0);
    pool.give(filled(len, 1.0));
    pool.give(filled(len, 2.0));
    budget.set_limit(len * 4);
    pool.trim();
    let r = pool.report();
    assert_eq!((r.kept_buffers, r.budget_bytes), (1, len as u64 * 4));
    assert_eq!(pool.take_vec(len, Fill::Stale, Usage::Tape)[0], 2.0);
}

#[test]
fn the_budget_is_shared_with_what_other_stores_keep() {
    let len = 2000;
    let (pool, budget) = pool_with(3 * len * 4);
    assert!(budget.try_keep(2 * len * 4), "another store (the allocator's blocks) keeps two buffers' worth");
    pool.give(filled(len, 1.0));
    pool.give(filled(len, 2.0)); // no room: the pool evicts its own older buffer
    assert_eq!((pool.report().kept_buffers, budget.kept()), (1, 3 * len * 4));
    assert!(!budget.try_keep(1), "the budget is full");
    budget.unkeep(2 * len * 4);
    pool.give(filled(len, 3.0));
    assert_eq!((pool.report().kept_buffers, budget.kept(), budget.peak()), (2, 2 * len * 4, 3 * len * 4));
    assert_eq!(pool.take_vec(len, Fill::Stale, Usage::Tape)[0], 3.0);
    assert_eq!(budget.kept(), len * 4, "a taken buffer leaves the budget");
}

/// The global allocator's blocks, called directly (the test binary's own allocator is the
/// system's): a freed large block is kept and handed out again for the same layout, not
/// while the pool frees what it evicted, and not below 128 KiB.
#[test]
fn the_allocator_keeps_large_blocks_for_the_same_layout() {
    let alloc = CachingAlloc;
    let layout = Layout::from_size_align(384 << 10, 64).unwrap(); // a size no other test uses
    system::cache_blocks();
    // SAFETY: non-zero layouts; every block is freed once, with its layout, by the allocator
    // that gave it.
    unsafe {
        let a = alloc.alloc(layout);
        assert!(!a.is_null());
        a.write_bytes(7, layout.size());
        let before = system::report();
        alloc.dealloc(a, layout);
        assert_eq!(system::report().kept_blocks, before.kept_blocks + 1);
        let b = alloc.alloc_zeroed(layout);
        assert_eq!(b, a, "the kept block comes back");
        assert!(std::slice::from_raw_parts(b, layout.size()).iter().all(|&x| x == 0), "zeroed");
        assert!(system::report().hits > before.hits);
        system::bypassing(|| alloc.dealloc(b, layout));
        let c = alloc.alloc(layout);
        assert_eq!(system::report().kept_blocks, before.kept_blocks, "a block freed while bypassing is not kept");
        alloc.dealloc(c, layout);
        system::release();
        let small = Layout::from_size_align(1024, 8).unwrap();
        let d = alloc.alloc(small);
        alloc.dealloc(d, small);
        assert_eq!(system::report().kept_blocks, 0, "small blocks and released ones are not kept");
    }
}

#[test]
fn release_frees_every_kept_buffer_and_keeps_the_counters() {
    let (pool, _) = pool_with(1 << 30);
    pool.give(filled(5000, 1.0));
    let _ = pool.take_vec(5000, Fill::Stale, Usage::Scratch);
    pool.give(filled(5000, 1.0));
    pool.release();
    let r = pool.report();
    assert_eq!((r.kept_buffers, r.kept_bytes, r.scratch.hits), (0, 0, 1));
    assert_eq!(r.kept_peak_bytes, 5000 * 4);
}

#[test]
fn scratch_goes_back_to_the_process_pool_when_dropped() {
    let len = 3 * host::MIN_KEPT + 17; // a length no other test uses
    let at = {
        let mut s = Scratch::new(len);
        s.fill(5.0);
        s.as_ptr() as usize
    };
    let again = Scratch::new(len);
    // Another test may have taken it in between; when it is ours, its values stayed.
    if again.as_ptr() as usize == at {
        assert!(again.iter().all(|&x| x == 5.0));
    }
    assert!(Scratch::zeroed(len).iter().all(|&x| x == 0.0));
}

/// Every op that takes a stale buffer overwrites it, whether the buffer is a tape value, a
/// gradient, a kernel's scratch or FFT spectra: one forward and backward fills the process's
/// pool with buffers of the lengths they use, every kept buffer is then set to NaN, and a
/// second run, which takes them back, gives the loss and every gradient bit for bit.
#[test]
fn ops_overwrite_every_stale_buffer_they_take_from_the_pool() {
    use crate::tensor::{Activation, Conv1dSpec, Graph, Padding, Tensor};
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let (b, t, c, v) = (2, 128, 136, 50); // B·T·C = 34,816: above the parallel fill; T = 128: FFT
    let inputs = [
        Tensor::randn(vec![b, t, c], 1.0, &mut rng),
        Tensor::randn(vec![2 * c, c], 0.1, &mut rng),
        Tensor::randn(vec![2 * c], 0.1, &mut rng),
        Tensor::randn(vec![c, 1, 3], 0.5, &mut rng),
        Tensor::randn(vec![c, t], 0.1, &mut rng),
        Tensor::randn(vec![c], 1.0, &mut rng),
        Tensor::randn(vec![v, 2 * c], 1.0, &mut rng),
        Tensor::randn(vec![c, c, 3], 0.05, &mut rng),
        Tensor::randn(vec![v, c, 2], 0.1, &mut rng),
    ];
    let ids: Vec<u32> = (0..b * t).map(|i| (i * 7 % v) as u32).collect();
    let targets: Vec<i64> = (0..b * t).map(|i| (i * 11 % v) as i64).collect();
    let (running_mean, running_var) = (vec![0.0; c], vec![1.0; c]);
    let run = || {
        let mut g = Graph::new(true);
        let x: Vec<_> = inputs.iter().map(|x| g.leaf(x.clone())).collect();
        let emb = g.embedding(x[6], &ids, &[b, t]).unwrap(); // (B, T, 2C)
        let h = g.linear(x[0], x[1], Some(x[2])).unwrap(); // (B, T, 2C)
        let h = g.add(h, emb).unwrap();
        let h = g.activation(h, Activation::Gelu);
        let (h0, h1) = (g.slice(h, 2, 0, c).unwrap(), g.slice(h, 2, c, 2 * c).unwrap());
        let h = g.mul(h0, h1).unwrap(); // (B, T, C)
        let depthwise = Conv1dSpec { in_channels: c, out_channels: c, kernel_size: 3, stride: 1, padding: Padding::causal(3, 1), dilation: 1, groups: c };
        let h = g.conv1d(h, x[3], None, &depthwise).unwrap();
        let h = g.layernorm(h, x[5], x[5], 1e-5).unwrap();
        let kt = g.transpose_last2(x[4]).unwrap();
        let k = g.transpose_last2(kt).unwrap();
        let h = g.long_conv(h, k, x[5]).unwrap(); // FFT: spectra from the pool
        let h = g.activation(h, Activation::Tanh);
        let (h, _) = g.batchnorm(h, x[5], x[5], 1e-5, (&running_mean, &running_var)).unwrap();
        let dense = Conv1dSpec { in_channels: c, out_channels: c, kernel_size: 3, stride: 1, padding: Padding::causal(3, 2), dilation: 2, groups: 1 };
        let h = g.conv1d(h, x[7], Some(x[5]), &dense).unwrap(); // packed weights and columns: scratch
        let h = g.dropout(h, 0.25, &mut rand_chacha::ChaCha8Rng::seed_from_u64(9)).unwrap();
        let weights: Vec<f32> = (0..b * t * c).map(|i| ((i % 13) as f32 - 6.0) * 0.1).collect();
        let side = g.weighted_sum(h, &weights).unwrap();
        let head = Conv1dSpec { in_channels: c, out_channels: v, kernel_size: 2, stride: 1, padding: Padding::causal(2, 1), dilation: 1, groups: 1 };
        let ce = g.conv1d_cross_entropy(h, x[8], None, &head, &targets).unwrap(); // logits: scratch
        let loss = g.add(ce, side).unwrap();
        g.backward(loss).unwrap();
        let mut out = vec![g.value(loss).data().to_vec()];
        out.extend(x.iter().map(|&x| g.grad(x).map(<[f32]>::to_vec).unwrap_or_default()));
        out
    };
    let clean = run();
    assert!(clean.iter().flatten().all(|x| x.is_finite()), "the clean run is finite");
    let before = report().pool;
    host_pool().poison(f32::NAN);
    let dirty = run();
    let after = report().pool;
    assert!(after.tape.hits > before.tape.hits, "the second run took tape buffers from the pool");
    assert!(after.scratch.hits > before.scratch.hits, "the second run took scratch buffers from the pool");
    for (i, (a, b)) in clean.iter().zip(&dirty).enumerate() {
        assert!(a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()), "output {i} differs on stale buffers");
    }
}
