//! Device buffers and their pool: a buffer dropped by one step's tape is handed to the next
//! step's ops instead of being freed and allocated again.
//!
//! Capacities are rounded up to one of eight sizes per power of two (at most 12.5% unused),
//! so buffers of nearby sizes are interchangeable. A dropped buffer becomes reusable only
//! after the recorded commands have been submitted: a host write to it (an upload) is
//! ordered before the commands of the *next* submission, so it must not overtake commands
//! still waiting in the encoder that read the old contents.

use std::collections::HashMap;
use std::sync::MutexGuard;

use crate::error::Result;
use crate::tensor::gpu::runtime::GpuDevice;

/// Smallest buffer handed out, in bytes.
const MIN_BYTES: u64 = 256;

/// The pool's capacity for a request of `bytes` (never above `max` unless `bytes` is).
pub(crate) fn capacity(bytes: u64, max: u64) -> u64 {
    let b = bytes.max(MIN_BYTES);
    let step = (b.next_power_of_two() / 8).max(4);
    let rounded = b.div_ceil(step) * step;
    if rounded > max {
        b.div_ceil(4) * 4
    } else {
        rounded
    }
}

/// Free buffers by capacity, and those waiting for the next submission.
#[derive(Default)]
pub(crate) struct Pool {
    free: HashMap<u64, Vec<wgpu::Buffer>>,
    pending: Vec<(u64, wgpu::Buffer)>,
    /// Bytes held by free and pending buffers.
    cached: u64,
    /// Bytes of buffers in use.
    live: u64,
}

impl Pool {
    fn take(&mut self, capacity: u64) -> Option<wgpu::Buffer> {
        let b = self.free.get_mut(&capacity)?.pop()?;
        self.cached -= capacity;
        self.live += capacity;
        Some(b)
    }

    fn give_back(&mut self, capacity: u64, buffer: wgpu::Buffer) {
        self.live = self.live.saturating_sub(capacity);
        self.cached += capacity;
        self.pending.push((capacity, buffer));
    }

    /// Makes the buffers dropped before the last submission available.
    pub(crate) fn release_pending(&mut self) {
        for (capacity, b) in self.pending.drain(..) {
            self.free.entry(capacity).or_default().push(b);
        }
    }

    /// Frees every cached buffer (the device memory goes back to the driver).
    pub(crate) fn trim(&mut self) {
        let pending: u64 = self.pending.iter().map(|p| p.0).sum();
        self.free.clear();
        self.cached = pending;
    }

    /// (bytes in use, bytes cached).
    pub(crate) fn usage(&self) -> (u64, u64) {
        (self.live, self.cached)
    }
}

/// A device buffer on loan from its device's pool; dropping it gives it back.
pub struct DeviceBuffer {
    buffer: Option<wgpu::Buffer>,
    capacity: u64,
    /// The bytes asked for (at most `capacity`).
    bytes: u64,
    device: GpuDevice,
}

impl std::fmt::Debug for DeviceBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceBuffer({} of {} bytes)", self.bytes, self.capacity)
    }
}

impl DeviceBuffer {
    /// A buffer of at least `bytes` bytes (contents unspecified).
    pub(crate) fn take(device: &GpuDevice, bytes: u64, what: &str) -> Result<Self> {
        let capacity = capacity(bytes, device.max_buffer_bytes());
        let reused = pool(device).take(capacity);
        let buffer = match reused {
            Some(b) => b,
            None => {
                let b = device.create_buffer(capacity, what)?;
                pool(device).live += capacity;
                b
            }
        };
        Ok(DeviceBuffer { buffer: Some(buffer), capacity, bytes, device: device.clone() })
    }

    /// The wgpu buffer.
    pub(crate) fn raw(&self) -> &wgpu::Buffer {
        // Only `drop` takes it out.
        self.buffer.as_ref().unwrap_or_else(|| unreachable!("a DeviceBuffer holds its buffer until dropped"))
    }

    /// The device it lives on.
    pub fn device(&self) -> &GpuDevice {
        &self.device
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        if let Some(b) = self.buffer.take() {
            pool(&self.device).give_back(self.capacity, b);
        }
    }
}

fn pool(device: &GpuDevice) -> MutexGuard<'_, Pool> {
    device.inner.pool.lock().unwrap_or_else(|e| e.into_inner())
}

/// (bytes in use, bytes cached) of `device`'s pool.
pub fn pool_usage(device: &GpuDevice) -> (u64, u64) {
    pool(device).usage()
}

/// Frees the buffers `device`'s pool keeps for reuse.
pub fn trim_pool(device: &GpuDevice) {
    pool(device).trim()
}

#[cfg(test)]
mod tests {
    use super::capacity;

    #[test]
    fn capacities_waste_at_most_an_eighth_and_respect_the_limit() {
        assert_eq!(capacity(1, 1 << 30), 256);
        assert_eq!(capacity(256, 1 << 30), 256);
        assert_eq!(capacity(257, 1 << 30), 320);
        for bytes in [1000u64, 4096, 5000, 81_920_000, 123_456_789] {
            let c = capacity(bytes, 1 << 40);
            assert!(c >= bytes && (c - bytes) * 8 <= c && c.is_multiple_of(4), "{bytes} -> {c}");
        }
        assert_eq!(capacity(1000, 1000), 1000, "never rounded past the device's limit");
    }
}
