//! Device buffers and their pool: a buffer dropped by one step's tape is handed to the next
//! step's ops instead of being freed and allocated again. A [`GpuDevice`] is the GPU's
//! [`BufferPool`], the sibling of the CPU's `HostPool`: the same take, give back, report
//! and release, over device buffers.
//!
//! Capacities are rounded as `free_list` says, so buffers of nearby sizes are
//! interchangeable. A dropped buffer becomes reusable only
//! after the recorded commands have been submitted: a host write to it (an upload) is
//! ordered before the commands of the *next* submission, so it must not overtake commands
//! still waiting in the encoder that read the old contents.

use std::sync::MutexGuard;

use crate::error::{Error, Result};
use crate::tensor::gpu::free_list::{capacity, Pool};
use crate::tensor::gpu::runtime::GpuDevice;
use crate::tensor::memory::{BufferPool, Fill, PoolReport, Usage};

/// Bytes of `numel` f32 values, checked; `what` names them in the error.
pub(crate) fn bytes_of(numel: usize, what: &str) -> Result<u64> {
    (numel as u64).checked_mul(4).ok_or_else(|| Error::device(format!("{what}: {numel} values do not fit a buffer")))
}

impl GpuDevice {
    /// A buffer of `len` f32 values for `usage` from the pool, its values as `fill` says;
    /// `what` names it in the error when the device cannot hold it.
    pub(crate) fn take_named(&self, len: usize, fill: Fill, usage: Usage, what: &str) -> Result<DeviceBuffer> {
        let bytes = bytes_of(len, what)?;
        let buf = self.alloc(bytes, what, usage)?;
        if fill == Fill::Zeros {
            self.clear(buf.raw(), bytes);
        }
        Ok(buf)
    }

    /// A device buffer of at least `bytes` bytes from the pool, contents unspecified; `what`
    /// names it in the error when the device cannot hold it.
    pub(crate) fn alloc(&self, bytes: u64, what: &str, usage: Usage) -> Result<DeviceBuffer> {
        let max = self.max_buffer_bytes();
        if bytes > max {
            return Err(Error::device(format!(
                "{what} needs a buffer of {bytes} bytes ({:.1} MiB); {} allows at most {max} bytes ({:.1} MiB) in one buffer",
                bytes as f64 / 1048576.0,
                self.info().describe(),
                max as f64 / 1048576.0
            )));
        }
        DeviceBuffer::take(self, bytes, what, usage)
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
    /// A buffer of at least `bytes` bytes for `usage` (contents unspecified).
    pub(crate) fn take(device: &GpuDevice, bytes: u64, what: &str, usage: Usage) -> Result<Self> {
        let capacity = capacity(bytes, device.max_buffer_bytes());
        let reused = pool(device).take(capacity, usage);
        let buffer = match reused {
            Some(b) => b,
            None => {
                let b = device.create_buffer(capacity, what)?;
                pool(device).add_new(capacity, usage);
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

    /// The bytes asked for (the buffer may hold more).
    pub fn bytes(&self) -> u64 {
        self.bytes
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

/// The device's pool: buffers of nearby sizes share a capacity (`free_list::capacity`), a
/// buffer given back is reusable once the commands recorded before it was given back are
/// submitted, and every buffer given back is kept until [`release`](BufferPool::release)
/// (no budget: a training step asks for the same buffers as the step before).
impl BufferPool for GpuDevice {
    type Buffer = DeviceBuffer;

    fn take(&self, len: usize, fill: Fill, usage: Usage) -> Result<DeviceBuffer> {
        let what = match usage {
            Usage::Tape => "a tape buffer",
            Usage::Scratch => "a kernel temporary",
        };
        self.take_named(len, fill, usage, what)
    }

    /// Gives `buf` back to the pool of the device it came from (as dropping it does).
    fn give(&self, buf: DeviceBuffer) {
        drop(buf);
    }

    fn report(&self) -> PoolReport {
        pool(self).report(self.info().describe())
    }

    /// Frees the free buffers (those given back since the last submission follow it).
    fn release(&self) {
        pool(self).trim()
    }
}
