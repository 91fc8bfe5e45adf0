//! The GPU's buffer pool behind the memory layer's `BufferPool`, as the CPU's is: a zeros
//! take is zeros even from a buffer given back dirty, a stale one keeps what was there, a
//! buffer given back is handed out again (a hit) once the commands recorded before are
//! submitted, the report names the device and counts per use, release frees what is kept,
//! and a buffer past the device's limit is an error naming the device and the use.

#[cfg(feature = "gpu")]
mod on_gpu {
    use crate::common::gpu::{alone, available};
    use convlm::tensor::gpu::{GpuDevice, GpuTensor};
    use convlm::tensor::memory::{BufferPool, Fill, Usage};
    use convlm::tensor::Device;

    const LEN: usize = 3000;

    /// `LEN` values taken from `d`'s pool, read back.
    fn take_and_read(d: &GpuDevice, fill: Fill, usage: Usage) -> (GpuTensor, Vec<f32>) {
        let t = GpuTensor::from_buffer(d.take(LEN, fill, usage).unwrap(), &[LEN]).unwrap();
        let values = t.to_vec().unwrap();
        (t, values)
    }

    /// The pool's counters are the device's, which every test of the binary shares: the
    /// test runs [`alone`].
    #[test]
    fn the_gpu_pool_takes_gives_reports_and_releases_as_the_cpu_pool_does() {
        if !available(Device::Gpu) || !alone("pool::on_gpu::the_gpu_pool_takes_gives_reports_and_releases_as_the_cpu_pool_does") {
            return;
        }
        let d = GpuDevice::open(Device::Gpu).unwrap();
        let start = d.report();
        assert_eq!(start.device, d.info().describe());
        assert_eq!((start.budget_bytes, start.evicted_bytes), (u64::MAX, 0), "no budget, nothing evicted");

        // A new buffer, zeroed: a miss.
        let (t, values) = take_and_read(&d, Fill::Zeros, Usage::Scratch);
        assert!(values.iter().all(|&v| v == 0.0), "a zeros take is zeros");
        assert_eq!(d.report().scratch.misses, start.scratch.misses + 1);
        assert!(d.report().scratch.fresh_bytes >= start.scratch.fresh_bytes + 4 * LEN as u64);

        // Dirtied and given back: after a submission it is kept, and the next zeros take of
        // that size is the same buffer (a hit), cleared.
        t.write(&vec![7.0; LEN]).unwrap();
        assert_eq!(t.to_vec().unwrap()[0], 7.0);
        drop(t);
        d.flush();
        let kept = d.report();
        assert!(kept.kept_bytes >= 4 * LEN as u64 && kept.kept_buffers >= 1 && kept.kept_peak_bytes >= kept.kept_bytes, "{kept:?}");
        let (t, values) = take_and_read(&d, Fill::Zeros, Usage::Scratch);
        assert_eq!(d.report().scratch.hits, kept.scratch.hits + 1, "the kept buffer is taken again");
        assert!(values.iter().all(|&v| v == 0.0), "a zeros take clears a reused buffer");

        // A stale take keeps what the buffer held (counted as a tape buffer).
        t.write(&vec![5.0; LEN]).unwrap();
        assert_eq!(t.to_vec().unwrap()[LEN - 1], 5.0);
        drop(t);
        d.flush();
        let (_t, values) = take_and_read(&d, Fill::Stale, Usage::Tape);
        assert_eq!(d.report().tape.hits, kept.tape.hits + 1);
        assert!(values.iter().all(|&v| v == 5.0), "a stale take keeps the old values");

        // `give` is dropping: the buffer is kept again; `release` frees what is kept, and
        // the counters stay.
        let b = d.take(LEN, Fill::Stale, Usage::Tape).unwrap();
        d.give(b);
        d.flush();
        let before_release = d.report();
        assert!(before_release.kept_buffers >= 1);
        d.release();
        let released = d.report();
        assert_eq!((released.kept_bytes, released.kept_buffers), (0, 0), "{released:?}");
        assert_eq!((released.tape, released.scratch), (before_release.tape, before_release.scratch));

        // Past the largest buffer the device binds: an error naming the device and the use.
        let too_many = (d.max_buffer_bytes() / 4 + 1) as usize;
        let e = d.take(too_many, Fill::Stale, Usage::Scratch).unwrap_err().to_string();
        assert!(e.contains(&d.info().describe()) && e.contains("a kernel temporary") && e.contains("allows at most"), "{e}");
    }

    #[test]
    fn a_buffer_too_small_for_the_shape_is_refused() {
        if !available(Device::Gpu) {
            return;
        }
        let d = GpuDevice::open(Device::Gpu).unwrap();
        let e = GpuTensor::from_buffer(d.take(10, Fill::Stale, Usage::Scratch).unwrap(), &[3, 4]).unwrap_err().to_string();
        assert!(e.contains("[3, 4]") && e.contains("40 bytes"), "{e}");
        let ok = GpuTensor::from_buffer(d.take(12, Fill::Zeros, Usage::Scratch).unwrap(), &[3, 4]).unwrap();
        assert_eq!(ok.to_vec().unwrap(), vec![0.0; 12]);
    }
}
