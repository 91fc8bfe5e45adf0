//! Device buffers and their pool: a buffer dropped by one step's tape is handed to the next
//! step's ops instead of being freed and allocated again.
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

impl GpuDevice {
    /// A device buffer of at least `bytes` bytes from the pool, contents unspecified; `what`
    /// names it in the error when the device cannot hold it.
    pub(crate) fn alloc(&self, bytes: u64, what: &str) -> Result<DeviceBuffer> {
        let max = self.max_buffer_bytes();
        if bytes > max {
            return Err(Error::device(format!(
                "{what} needs a buffer of {bytes} bytes ({:.1} MiB); {} allows at most {max} bytes ({:.1} MiB) in one buffer",
                bytes as f64 / 1048576.0,
                self.info().describe(),
                max as f64 / 1048576.0
            )));
        }
        DeviceBuffer::take(self, bytes, what)
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
                pool(device).add_live(capacity);
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
