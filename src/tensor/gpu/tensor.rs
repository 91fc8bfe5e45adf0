//! [`GpuTensor`]: f32 values in device memory with a shape, and [`GpuIndex`]: u32 values
//! (token ids, index arrays) that the host computed and sent up.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::tensor::gpu::pool::{bytes_of, DeviceBuffer};
use crate::tensor::gpu::runtime::GpuDevice;
use crate::tensor::memory::{Fill, Usage};
use crate::tensor::Tensor;

/// A row-major f32 tensor on a GPU. Cloning shares the buffer (a view, not a copy).
#[derive(Clone, Debug)]
pub struct GpuTensor {
    buf: Arc<DeviceBuffer>,
    shape: Vec<usize>,
}

impl GpuTensor {
    /// A tensor of `shape` whose values are unspecified (for a kernel that writes all of them);
    /// `what` names it if the device cannot hold it.
    pub fn empty(device: &GpuDevice, shape: &[usize], what: &str) -> Result<Self> {
        Self::taken(device, shape, Fill::Stale, what)
    }

    /// A tensor of zeros.
    pub fn zeros(device: &GpuDevice, shape: &[usize], what: &str) -> Result<Self> {
        Self::taken(device, shape, Fill::Zeros, what)
    }

    /// A tensor of `shape` over `buf`, a buffer from its device's pool
    /// ([`BufferPool::take`](crate::tensor::memory::BufferPool::take)) that must hold its
    /// values.
    pub fn from_buffer(buf: DeviceBuffer, shape: &[usize]) -> Result<Self> {
        let numel = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        match numel.and_then(|n| (n as u64).checked_mul(4)) {
            Some(bytes) if bytes <= buf.bytes() => Ok(GpuTensor { buf: Arc::new(buf), shape: shape.to_vec() }),
            _ => Err(Error::shape("from_buffer", format!("shape {shape:?} does not fit a buffer of {} bytes", buf.bytes()))),
        }
    }

    /// A tensor of `shape` in a buffer from the device's pool, its values as `fill` says.
    fn taken(device: &GpuDevice, shape: &[usize], fill: Fill, what: &str) -> Result<Self> {
        let numel = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| Error::device(format!("{what}: shape {shape:?} is too large")))?;
        let buf = device.take_named(numel, fill, Usage::Tape, what)?;
        Ok(GpuTensor { buf: Arc::new(buf), shape: shape.to_vec() })
    }

    /// `shape` filled with `data` from the host.
    pub fn from_slice(device: &GpuDevice, shape: &[usize], data: &[f32]) -> Result<Self> {
        let t = Self::empty(device, shape, "an upload")?;
        if t.numel() != data.len() {
            return Err(Error::shape("upload", format!("{} values for shape {shape:?}", data.len())));
        }
        device.write_fresh(t.raw(), 0, bytemuck::cast_slice(data));
        Ok(t)
    }

    /// A host tensor's values on `device`.
    pub fn upload(device: &GpuDevice, t: &Tensor) -> Result<Self> {
        Self::from_slice(device, t.shape(), t.data())
    }

    /// Overwrites the values with `data` from the host (as many values as the tensor has).
    pub fn write(&self, data: &[f32]) -> Result<()> {
        if data.len() != self.numel() {
            return Err(Error::shape("upload", format!("{} values for shape {:?}", data.len(), self.shape)));
        }
        self.device().write(self.raw(), 0, bytemuck::cast_slice(data));
        Ok(())
    }

    /// The values, copied back to the host (waits for the device).
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        let bytes = self.device().read(self.raw(), 0, self.bytes())?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// The values as a host tensor.
    pub fn to_tensor(&self) -> Result<Tensor> {
        Tensor::new(self.shape.clone(), self.to_vec()?)
    }

    /// The same buffer under another shape with as many values.
    pub fn reshape(&self, shape: &[usize]) -> Result<Self> {
        if shape.iter().product::<usize>() != self.numel() {
            return Err(Error::shape("reshape", format!("{:?} cannot be viewed as {shape:?}", self.shape)));
        }
        Ok(GpuTensor { buf: self.buf.clone(), shape: shape.to_vec() })
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Bytes of the values.
    pub fn bytes(&self) -> u64 {
        self.numel() as u64 * 4
    }

    pub fn device(&self) -> &GpuDevice {
        self.buf.device()
    }

    pub(crate) fn raw(&self) -> &wgpu::Buffer {
        self.buf.raw()
    }

    /// Whether two tensors share one buffer.
    pub fn same_buffer(&self, other: &GpuTensor) -> bool {
        Arc::ptr_eq(&self.buf, &other.buf)
    }
}

/// u32 values on a GPU (token ids, targets as i32 bits, permutations).
#[derive(Clone, Debug)]
pub struct GpuIndex {
    buf: Arc<DeviceBuffer>,
    len: usize,
}

impl GpuIndex {
    /// `data` sent to `device`.
    pub fn upload(device: &GpuDevice, data: &[u32]) -> Result<Self> {
        let buf = device.alloc(bytes_of(data.len(), "an index upload")?, "an index upload", Usage::Tape)?;
        device.write_fresh(buf.raw(), 0, bytemuck::cast_slice(data));
        Ok(GpuIndex { buf: Arc::new(buf), len: data.len() })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn raw(&self) -> &wgpu::Buffer {
        self.buf.raw()
    }
}
