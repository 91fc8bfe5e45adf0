//! [`DeviceParams`]: a model's parameters, their gradients and the BatchNorm running
//! statistics, resident on a GPU for a whole run; they cross to the host only when asked
//! (checkpoints, evaluations, samples).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::nn::long_conv::LongConv;
use crate::nn::{Buffers, ParamId, ParamStore};
use crate::tensor::gpu::{GpuDevice, GpuTensor};

/// Parameters (values and gradients) and buffers of one model on a device, in the store's
/// order.
pub struct DeviceParams {
    device: GpuDevice,
    values: Vec<GpuTensor>,
    grads: Vec<GpuTensor>,
    /// (running_mean, running_var) by BatchNorm slot.
    running: Vec<(GpuTensor, GpuTensor)>,
    /// Hyena filters' fixed inputs (z, window) by (layer slot, length): computed on the host
    /// once, then kept on the device.
    constants: Mutex<HashMap<(usize, usize), (GpuTensor, GpuTensor)>>,
}

impl std::fmt::Debug for DeviceParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceParams({} tensors on {:?})", self.values.len(), self.device)
    }
}

impl DeviceParams {
    /// Copies `store`'s values and `buffers` to `device`, with zero gradients.
    pub fn upload(device: &GpuDevice, store: &ParamStore, buffers: &Buffers) -> Result<Self> {
        let mut values = Vec::with_capacity(store.params().len());
        let mut grads = Vec::with_capacity(store.params().len());
        for p in store.params() {
            values.push(GpuTensor::upload(device, &p.value)?);
            grads.push(GpuTensor::zeros(device, p.value.shape(), &format!("the gradient of {}", p.name))?);
        }
        let running = buffers.entries.iter().map(|(_, m, v)| Ok((GpuTensor::upload(device, m)?, GpuTensor::upload(device, v)?))).collect::<Result<_>>()?;
        Ok(DeviceParams { device: device.clone(), values, grads, running, constants: Mutex::default() })
    }

    /// Overwrites the device values with `store`'s and `buffers`' (same model).
    pub fn load(&self, store: &ParamStore, buffers: &Buffers) -> Result<()> {
        self.check_layout(store, buffers)?;
        for (dst, p) in self.values.iter().zip(store.params()) {
            dst.write(p.value.data())?;
        }
        for ((m, v), (_, hm, hv)) in self.running.iter().zip(&buffers.entries) {
            m.write(hm.data())?;
            v.write(hv.data())?;
        }
        Ok(())
    }

    /// Copies the device values and running statistics back into `store` and `buffers`.
    pub fn download(&self, store: &mut ParamStore, buffers: &mut Buffers) -> Result<()> {
        self.check_layout(store, buffers)?;
        for (src, p) in self.values.iter().zip(store.params_mut()) {
            p.value = src.to_tensor()?;
        }
        for ((m, v), (_, hm, hv)) in self.running.iter().zip(buffers.entries.iter_mut()) {
            *hm = m.to_tensor()?;
            *hv = v.to_tensor()?;
        }
        Ok(())
    }

    /// Copies the device gradients into `store`'s `grad`s.
    pub fn download_grads(&self, store: &mut ParamStore) -> Result<()> {
        for (src, p) in self.grads.iter().zip(store.params_mut()) {
            p.grad = src.to_tensor()?;
        }
        Ok(())
    }

    fn check_layout(&self, store: &ParamStore, buffers: &Buffers) -> Result<()> {
        let same = store.params().len() == self.values.len()
            && store.params().iter().zip(&self.values).all(|(p, v)| p.value.shape() == v.shape())
            && buffers.entries.len() == self.running.len();
        if !same {
            return Err(Error::device("the parameters on the device belong to another model"));
        }
        Ok(())
    }

    pub fn device(&self) -> &GpuDevice {
        &self.device
    }

    /// Parameter `id`'s value.
    pub fn value(&self, id: ParamId) -> &GpuTensor {
        &self.values[id.0]
    }

    /// Parameter `id`'s gradient buffer.
    pub fn grad(&self, id: ParamId) -> &GpuTensor {
        &self.grads[id.0]
    }

    /// Every value and gradient, in store order.
    pub fn values_and_grads(&self) -> impl Iterator<Item = (&GpuTensor, &GpuTensor)> {
        self.values.iter().zip(&self.grads)
    }

    /// Exchanges the value buffers with `others` (one per parameter, same shapes: an
    /// optimizer's moving averages), handle for handle; nothing is copied.
    pub fn swap_values(&mut self, others: &mut [GpuTensor]) {
        debug_assert!(others.len() == self.values.len() && others.iter().zip(&self.values).all(|(o, v)| o.shape() == v.shape()));
        for (v, o) in self.values.iter_mut().zip(others) {
            std::mem::swap(v, o);
        }
    }

    /// Number of parameter tensors.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// BatchNorm slot `slot`'s (running_mean, running_var).
    pub fn running(&self, slot: usize) -> Result<&(GpuTensor, GpuTensor)> {
        self.running.get(slot).ok_or_else(|| Error::device(format!("no BatchNorm statistics in slot {slot}")))
    }

    /// The fixed inputs (z (len, emb_dim), window (len, C)) of `layer`'s filter on the device.
    pub(crate) fn filter_constants(&self, layer: &LongConv, len: usize) -> Result<(GpuTensor, GpuTensor)> {
        let mut cache = self.constants.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = cache.get(&(layer.slot, len)) {
            return Ok(c.clone());
        }
        let (z, window) = layer.filter_inputs(len)?;
        let (e, c) = (layer.spec.emb_dim, layer.spec.channels);
        let pair = (GpuTensor::from_slice(&self.device, &[len, e], &z)?, GpuTensor::from_slice(&self.device, &[len, c], &window)?);
        cache.insert((layer.slot, len), pair.clone());
        Ok(pair)
    }
}
