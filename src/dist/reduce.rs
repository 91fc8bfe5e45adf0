//! Summing gradients over the ranks in buckets ([`GradReducer`]).
//!
//! The gradients are laid end to end in reverse parameter order — the order in which the
//! backward pass finishes them — and cut into buckets of [`BUCKET_BYTES`]. As each
//! parameter's gradient becomes final ([`GradReducer::param_ready`], called from the
//! backward pass) it is scaled into its bucket's send buffer; a bucket whose every value has
//! arrived starts its sum over the ranks at once, while backward goes on. Buckets start in
//! bucket order on every rank (collectives must be called in the same order everywhere),
//! and [`GradReducer::finish`] waits for them and writes the sums into the parameters'
//! gradients.

use std::time::{Duration, Instant};

use super::comm::Pending;
use super::group::Group;
use crate::error::{Error, Result};
use crate::nn::ParamStore;

/// Size of a bucket: large enough that per-message costs vanish, small enough that the
/// first buckets start while backward still has most of its work ahead.
pub const BUCKET_BYTES: usize = 4 << 20;

/// Where a parameter's gradient lies in the buckets.
#[derive(Clone, Copy, Debug)]
struct Segment {
    /// Offset in the end-to-end layout.
    offset: usize,
    len: usize,
}

/// A bucket: its buffers while idle, or its sum in flight.
enum Bucket {
    Idle {
        send: Vec<f32>,
        recv: Vec<f32>,
    },
    InFlight(Box<dyn Pending>),
    /// Only while a transport error is being returned.
    Lost,
}

/// What the reduction of the last step cost.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ReduceStats {
    /// Bytes each rank contributed (the gradients, as f32).
    pub bytes: usize,
    /// Time spent in [`GradReducer::finish`] waiting for sums still in flight after the
    /// backward pass: the communication backward did not hide.
    pub wait: Duration,
}

/// Sums gradients over the ranks of a [`Group`], bucket by bucket (see the module docs).
pub struct GradReducer {
    segments: Vec<Segment>,
    total: usize,
    bucket_len: usize,
    buckets: Vec<Bucket>,
    /// Values of each bucket not yet final this step.
    missing: Vec<usize>,
    /// Per parameter, the reports still expected this step (a parameter recorded twice on
    /// the tape is reported twice; the second adds to the first), whether its values are
    /// in the buckets, and whether they are final.
    expected: Vec<usize>,
    written: Vec<bool>,
    counted: Vec<bool>,
    next_start: usize,
    scale: f32,
    overlap: bool,
    stats: ReduceStats,
}

impl GradReducer {
    /// A reducer for the parameters of `params`, in buckets of `bucket_bytes`; with `overlap`
    /// false no sum starts before [`GradReducer::finish`] (to measure the sums alone).
    pub fn new(params: &ParamStore, bucket_bytes: usize, overlap: bool) -> Self {
        let sizes: Vec<usize> = params.params().iter().map(|p| p.value.numel()).collect();
        let mut segments = vec![Segment { offset: 0, len: 0 }; sizes.len()];
        let mut total = 0;
        for (i, &len) in sizes.iter().enumerate().rev() {
            segments[i] = Segment { offset: total, len };
            total += len;
        }
        let bucket_len = (bucket_bytes / 4).max(1);
        let buckets: Vec<Bucket> = (0..total.div_ceil(bucket_len))
            .map(|b| {
                let len = bucket_len.min(total - b * bucket_len);
                Bucket::Idle { send: vec![0.0; len], recv: vec![0.0; len] }
            })
            .collect();
        let n = segments.len();
        GradReducer {
            segments,
            total,
            bucket_len,
            missing: vec![0; buckets.len()],
            buckets,
            expected: vec![0; n],
            written: vec![false; n],
            counted: vec![false; n],
            next_start: 0,
            scale: 1.0,
            overlap,
            stats: ReduceStats { bytes: total * 4, wait: Duration::ZERO },
        }
    }

    /// Number of buckets.
    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }

    /// What the last step's reduction cost.
    pub fn stats(&self) -> ReduceStats {
        self.stats
    }

    /// Starts a step: each gradient will be multiplied by `scale` before the sum, and each
    /// key in `reports` is a parameter's entry on the tape (one report each).
    pub fn begin(&mut self, scale: f32, reports: impl IntoIterator<Item = usize>) -> Result<()> {
        if self.buckets.iter().any(|b| !matches!(b, Bucket::Idle { .. })) {
            return Err(Error::distributed("a gradient reduction began before the last one finished"));
        }
        self.scale = scale;
        self.expected.fill(0);
        for key in reports {
            if let Some(e) = self.expected.get_mut(key) {
                *e += 1;
            }
        }
        self.written.fill(false);
        self.counted.fill(false);
        for (b, m) in self.missing.iter_mut().enumerate() {
            *m = self.bucket_len.min(self.total - b * self.bucket_len);
        }
        self.next_start = 0;
        Ok(())
    }

    /// Takes the gradient of parameter `key` (`None`: it got none, a zero gradient), and
    /// starts every bucket that is now complete.
    pub fn param_ready(&mut self, group: &Group, key: usize, grad: Option<&[f32]>) -> Result<()> {
        let Some(&seg) = self.segments.get(key) else { return Ok(()) };
        if grad.is_some_and(|g| g.len() != seg.len) {
            return Err(Error::shape("gradient all-reduce", format!("parameter {key} has {} values, its gradient {}", seg.len, grad.map_or(0, <[f32]>::len))));
        }
        self.write(seg, grad, !self.written[key])?;
        self.written[key] = true;
        self.expected[key] = self.expected[key].saturating_sub(1);
        if self.expected[key] == 0 && !self.counted[key] {
            self.count_done(key);
            if self.overlap {
                self.start_complete(group)?;
            }
        }
        self.progress()
    }

    /// Scales `grad` into the buckets (writing on the first report, adding after).
    fn write(&mut self, seg: Segment, grad: Option<&[f32]>, first: bool) -> Result<()> {
        let scale = self.scale;
        let mut done = 0;
        while done < seg.len {
            let at = seg.offset + done;
            let (b, within) = (at / self.bucket_len, at % self.bucket_len);
            let Bucket::Idle { send, .. } = &mut self.buckets[b] else {
                return Err(Error::distributed("a gradient arrived after its bucket's all-reduce started"));
            };
            let n = (send.len() - within).min(seg.len - done);
            let dst = &mut send[within..within + n];
            match (grad, first) {
                (Some(g), true) => dst.iter_mut().zip(&g[done..done + n]).for_each(|(d, s)| *d = s * scale),
                (Some(g), false) => dst.iter_mut().zip(&g[done..done + n]).for_each(|(d, s)| *d += s * scale),
                (None, true) => dst.fill(0.0),
                (None, false) => {}
            }
            done += n;
        }
        Ok(())
    }

    /// Marks parameter `key`'s values as final.
    fn count_done(&mut self, key: usize) {
        let seg = self.segments[key];
        self.counted[key] = true;
        let mut done = 0;
        while done < seg.len {
            let at = seg.offset + done;
            let b = at / self.bucket_len;
            let n = ((b + 1) * self.bucket_len - at).min(seg.len - done);
            self.missing[b] -= n;
            done += n;
        }
    }

    /// Starts, in bucket order, every bucket with nothing missing.
    fn start_complete(&mut self, group: &Group) -> Result<()> {
        while self.next_start < self.buckets.len() && self.missing[self.next_start] == 0 {
            let b = self.next_start;
            let Bucket::Idle { send, recv } = std::mem::replace(&mut self.buckets[b], Bucket::Lost) else {
                return Err(Error::distributed("a gradient bucket started twice"));
            };
            let what = format!("the gradient all-reduce (bucket {} of {})", b + 1, self.buckets.len());
            self.buckets[b] = Bucket::InFlight(group.start_sum_f32(send, recv, &what)?);
            self.next_start += 1;
        }
        Ok(())
    }

    /// Lets the transport advance the oldest sum in flight.
    fn progress(&mut self) -> Result<()> {
        if let Some(Bucket::InFlight(p)) = self.buckets.iter_mut().find(|b| matches!(b, Bucket::InFlight(_))) {
            p.test()?;
        }
        Ok(())
    }

    /// Ends the step: a parameter never reported counts as a zero gradient, every bucket not
    /// yet started starts, and the sums are written into `params`' gradients (replacing
    /// them).
    pub fn finish(&mut self, group: &Group, params: &mut ParamStore) -> Result<()> {
        if params.params().len() != self.segments.len() {
            return Err(Error::shape("gradient all-reduce", format!("{} parameters, the reducer was made for {}", params.params().len(), self.segments.len())));
        }
        for key in 0..self.segments.len() {
            if !self.written[key] {
                self.write(self.segments[key], None, true)?;
                self.written[key] = true;
            }
            if !self.counted[key] {
                self.count_done(key);
            }
        }
        self.start_complete(group)?;
        let started = Instant::now();
        for b in 0..self.buckets.len() {
            if let Bucket::InFlight(p) = std::mem::replace(&mut self.buckets[b], Bucket::Lost) {
                let (send, recv) = p.wait()?;
                self.buckets[b] = Bucket::Idle { send, recv };
            }
        }
        self.stats.wait = started.elapsed();
        for (seg, p) in self.segments.iter().zip(params.params_mut()) {
            let dst = p.grad.data_mut();
            let mut done = 0;
            while done < seg.len {
                let at = seg.offset + done;
                let (b, within) = (at / self.bucket_len, at % self.bucket_len);
                let Bucket::Idle { recv, .. } = &self.buckets[b] else {
                    return Err(Error::distributed("a gradient bucket was lost to a failed all-reduce"));
                };
                let n = (recv.len() - within).min(seg.len - done);
                dst[done..done + n].copy_from_slice(&recv[within..within + n]);
                done += n;
            }
        }
        Ok(())
    }
}
