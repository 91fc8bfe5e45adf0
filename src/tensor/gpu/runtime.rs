//! [`GpuDevice`]: one opened adapter — its queue, compiled kernels, buffer pool, the command
//! recorder every op appends its dispatches to, and the count of bytes that cross the bus.
//!
//! Ops never wait for the GPU: they record dispatches into one command encoder, which is
//! submitted every [`FLUSH_EVERY`] dispatches and whenever the host reads a value back. Each
//! dispatch's few parameters (sizes, strides, flags) go into a 256-byte slot of a uniform
//! arena that is uploaded once per submission.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use crate::error::{Error, Result};
use crate::tensor::gpu::adapters::{self, AdapterInfo, AdapterKind};
use crate::tensor::gpu::free_list::Pool;
use crate::tensor::gpu::shaders::{Access, Kernel, Shader};
use crate::tensor::Device;

/// Dispatches recorded before the encoder is submitted without being asked: the device
/// starts on the first kernels of a step while the host records the rest.
const FLUSH_EVERY: usize = 64;
/// Bytes of one dispatch's parameter slot (at least the device's uniform offset alignment).
const SLOT: u64 = 256;
/// Slots per uniform arena chunk.
const SLOTS_PER_CHUNK: u64 = 256;

/// Bytes moved between host and device since the device was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Host → device: token ids, index arrays, weights.
    pub up: u64,
    /// Device → host: scalars, weights, logits.
    pub down: u64,
    /// Kernel parameters (sizes, strides, step scalars) uploaded with the dispatches.
    pub params: u64,
    /// Kernels launched.
    pub dispatches: u64,
    /// Command buffers submitted.
    pub submits: u64,
}

impl Traffic {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Traffic) -> Traffic {
        Traffic {
            up: self.up - earlier.up,
            down: self.down - earlier.down,
            params: self.params - earlier.params,
            dispatches: self.dispatches - earlier.dispatches,
            submits: self.submits - earlier.submits,
        }
    }
}

#[derive(Default)]
struct Counters {
    up: AtomicU64,
    down: AtomicU64,
    params: AtomicU64,
    dispatches: AtomicU64,
    submits: AtomicU64,
}

/// Launches and seconds by kernel (module, entry).
type Profile = HashMap<(&'static str, &'static str), (u64, f64)>;

/// A compiled kernel with the layout of its bindings.
struct Pipeline {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

/// A compiled WGSL module with the bind group layout its signature gives.
#[derive(Clone)]
struct Module {
    module: wgpu::ShaderModule,
    layout: wgpu::BindGroupLayout,
    pipeline_layout: wgpu::PipelineLayout,
}

impl Module {
    fn new(dev: &wgpu::Device, shader: &'static Shader) -> Self {
        let module = dev.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(shader.name),
            source: wgpu::ShaderSource::Wgsl(std::borrow::Cow::Owned(shader.source())),
        });
        let mut entries = vec![wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: false,
                min_binding_size: std::num::NonZeroU64::new(SLOT),
            },
            count: None,
        }];
        for (i, access) in shader.bindings.iter().enumerate() {
            entries.push(wgpu::BindGroupLayoutEntry {
                binding: i as u32 + 1,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage { read_only: *access == Access::Read },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            });
        }
        let layout = dev.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(shader.name), entries: &entries });
        let pipeline_layout =
            dev.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor { label: Some(shader.name), bind_group_layouts: &[Some(&layout)], immediate_size: 0 });
        Module { module, layout, pipeline_layout }
    }
}

/// One chunk of the uniform arena: a device buffer and the bytes it receives at the next
/// submission.
struct ArenaChunk {
    buffer: wgpu::Buffer,
    host: Vec<u8>,
}

/// The open command encoder, its compute pass, and the parameter slots used since the last
/// submission.
#[derive(Default)]
struct Recorder {
    encoder: Option<wgpu::CommandEncoder>,
    pass: Option<wgpu::ComputePass<'static>>,
    chunks: Vec<ArenaChunk>,
    /// Slots used so far in this submission, over all chunks.
    slots_used: u64,
    dispatches: usize,
}

pub(crate) struct Inner {
    pub(crate) device: wgpu::Device,
    queue: wgpu::Queue,
    info: AdapterInfo,
    limits: wgpu::Limits,
    modules: Mutex<HashMap<&'static str, Module>>,
    pipelines: Mutex<HashMap<(&'static str, &'static str), Arc<Pipeline>>>,
    recorder: Mutex<Recorder>,
    pub(crate) pool: Mutex<Pool>,
    /// Errors wgpu reported outside an error scope (validation, device loss), oldest first.
    errors: Arc<Mutex<Vec<String>>>,
    counters: Counters,
    /// Bound where a kernel's optional input is absent.
    dummy: wgpu::Buffer,
    /// With `CONVLM_GPU_PROFILE=1`: every dispatch waits for the device, and its wall time is
    /// added here by kernel (count, seconds).
    profile: Option<Mutex<Profile>>,
}

/// An opened GPU adapter. Cheap to clone (shared); every op on one device records into the
/// same command stream, in order.
#[derive(Clone)]
pub struct GpuDevice {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for GpuDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuDevice({})", self.inner.info.describe())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Devices opened by this process, by adapter index: a device is opened once and shared.
fn opened() -> &'static Mutex<Vec<(usize, GpuDevice)>> {
    static OPENED: OnceLock<Mutex<Vec<(usize, GpuDevice)>>> = OnceLock::new();
    OPENED.get_or_init(|| Mutex::new(Vec::new()))
}

impl GpuDevice {
    /// Opens the adapter `device` picks (`gpu`: the first discrete one, else integrated, else
    /// a software device; `gpu:N`: number N of [`adapters::list_adapters`]). Errors say what
    /// to install when there is none, and list the adapters when N is past them.
    pub fn open(device: Device) -> Result<GpuDevice> {
        let instance = adapters::instance();
        let mut found = adapters::enumerate(&instance);
        let infos: Vec<AdapterInfo> = found.iter().map(|(_, i)| i.clone()).collect();
        let index = adapters::choose(&infos, device)?;
        let mut cache = lock(opened());
        if let Some((_, d)) = cache.iter().find(|(i, _)| *i == index) {
            return Ok(d.clone());
        }
        let (adapter, info) = found.swap_remove(index);
        let opened = Self::create(&adapter, info)?;
        cache.push((index, opened.clone()));
        Ok(opened)
    }

    fn create(adapter: &wgpu::Adapter, info: AdapterInfo) -> Result<GpuDevice> {
        let limits = adapter.limits();
        let desc = wgpu::DeviceDescriptor {
            label: Some("convlm"),
            required_features: wgpu::Features::empty(),
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc))
            .map_err(|e| Error::device(format!("{}: the driver refused to open the device: {e}", info.describe())))?;
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| lock(&sink).push(e.to_string())));
        let sink = errors.clone();
        device.set_device_lost_callback(move |reason, msg| lock(&sink).push(format!("the device was lost ({reason:?}): {msg}")));
        let dummy =
            device.create_buffer(&wgpu::BufferDescriptor { label: Some("dummy"), size: 256, usage: wgpu::BufferUsages::STORAGE, mapped_at_creation: false });
        let inner = Inner {
            device,
            queue,
            info,
            limits,
            modules: Mutex::default(),
            pipelines: Mutex::default(),
            recorder: Mutex::default(),
            pool: Mutex::new(Pool::default()),
            errors,
            counters: Counters::default(),
            dummy,
            profile: std::env::var("CONVLM_GPU_PROFILE").is_ok_and(|v| v == "1").then(Mutex::default),
        };
        Ok(GpuDevice { inner: Arc::new(inner) })
    }

    /// The adapter's name, backend and kind.
    pub fn info(&self) -> &AdapterInfo {
        &self.inner.info
    }

    /// Whether the adapter emulates a GPU on the CPU (then expect it to be slower than the
    /// CPU engine).
    pub fn is_software(&self) -> bool {
        self.inner.info.kind == AdapterKind::Software
    }

    /// The largest buffer one kernel can bind, in bytes.
    pub fn max_buffer_bytes(&self) -> u64 {
        let l = &self.inner.limits;
        l.max_buffer_size.min(l.max_storage_buffer_binding_size)
    }

    /// The most workgroups in one dimension of a dispatch.
    pub(crate) fn max_groups(&self) -> u32 {
        self.inner.limits.max_compute_workgroups_per_dimension
    }

    /// Bytes moved and kernels launched since the device was opened.
    pub fn traffic(&self) -> Traffic {
        let c = &self.inner.counters;
        Traffic {
            up: c.up.load(Ordering::Relaxed),
            down: c.down.load(Ordering::Relaxed),
            params: c.params.load(Ordering::Relaxed),
            dispatches: c.dispatches.load(Ordering::Relaxed),
            submits: c.submits.load(Ordering::Relaxed),
        }
    }

    /// With `CONVLM_GPU_PROFILE=1`, the kernels by total wall time: (module::entry, launches,
    /// seconds), longest first; empty otherwise.
    pub fn profile(&self) -> Vec<(String, u64, f64)> {
        let Some(profile) = &self.inner.profile else { return Vec::new() };
        let mut rows: Vec<(String, u64, f64)> = lock(profile).iter().map(|((m, e), &(n, t))| (format!("{m}::{e}"), n, t)).collect();
        rows.sort_by(|a, b| b.2.total_cmp(&a.2));
        rows
    }

    /// Creates a wgpu buffer of exactly `capacity` bytes (for the pool), turning an
    /// out-of-memory report into an error naming the size.
    pub(crate) fn create_buffer(&self, capacity: u64, what: &str) -> Result<wgpu::Buffer> {
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
        let scope = self.inner.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let buffer = self.inner.device.create_buffer(&wgpu::BufferDescriptor { label: None, size: capacity, usage, mapped_at_creation: false });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::device(format!("{}: out of memory allocating {capacity} bytes for {what}: {e}", self.inner.info.describe())));
        }
        Ok(buffer)
    }

    /// Writes `bytes` into `buffer` at `offset`, after every command recorded so far (those
    /// are submitted first: wgpu applies a write before the commands of the submission it
    /// joins).
    pub(crate) fn write(&self, buffer: &wgpu::Buffer, offset: u64, bytes: &[u8]) {
        {
            let mut rec = lock(&self.inner.recorder);
            if rec.encoder.is_some() {
                self.submit(&mut rec);
            }
        }
        self.write_fresh(buffer, offset, bytes);
    }

    /// Writes `bytes` into a buffer no recorded command uses yet (one just taken from the
    /// pool: a buffer is reusable only after the commands that used it were submitted), so
    /// nothing needs to be submitted first.
    pub(crate) fn write_fresh(&self, buffer: &wgpu::Buffer, offset: u64, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.inner.queue.write_buffer(buffer, offset, bytes);
        self.inner.counters.up.fetch_add(bytes.len() as u64, Ordering::Relaxed);
    }

    /// Records a fill of `bytes` bytes of `buffer` with zeros.
    pub(crate) fn clear(&self, buffer: &wgpu::Buffer, bytes: u64) {
        let bytes = bytes.div_ceil(4) * 4;
        if bytes == 0 {
            return;
        }
        let mut rec = lock(&self.inner.recorder);
        rec.pass = None;
        self.encoder(&mut rec).clear_buffer(buffer, 0, Some(bytes));
    }

    /// Records a copy of `bytes` bytes between two buffers.
    pub(crate) fn copy(&self, src: &wgpu::Buffer, src_offset: u64, dst: &wgpu::Buffer, dst_offset: u64, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let mut rec = lock(&self.inner.recorder);
        rec.pass = None;
        self.encoder(&mut rec).copy_buffer_to_buffer(src, src_offset, dst, dst_offset, bytes);
    }

    fn encoder<'a>(&self, rec: &'a mut Recorder) -> &'a mut wgpu::CommandEncoder {
        rec.encoder.get_or_insert_with(|| self.inner.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("convlm") }))
    }

    /// The compiled pipeline of `kernel` (its module compiled on first use).
    fn pipeline(&self, kernel: Kernel) -> Result<Arc<Pipeline>> {
        let key = (kernel.shader.name, kernel.entry);
        if let Some(p) = lock(&self.inner.pipelines).get(&key) {
            return Ok(p.clone());
        }
        let dev = &self.inner.device;
        let scope = dev.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = lock(&self.inner.modules).entry(kernel.shader.name).or_insert_with(|| Module::new(dev, kernel.shader)).clone();
        let pipeline = dev.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(kernel.entry),
            layout: Some(&module.pipeline_layout),
            module: &module.module,
            entry_point: Some(kernel.entry),
            compilation_options: wgpu::PipelineCompilationOptions::default(),
            cache: None,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::device(format!("{}: kernel {}::{} did not compile: {e}", self.inner.info.describe(), kernel.shader.name, kernel.entry)));
        }
        let p = Arc::new(Pipeline { pipeline, layout: module.layout.clone() });
        lock(&self.inner.pipelines).insert(key, p.clone());
        Ok(p)
    }

    /// Records one launch of `kernel` over `groups` workgroups, with `params` (u32 words,
    /// f32 as bits) at binding 0 and `buffers` at bindings 1, 2, … (`None`: the kernel does
    /// not read that input this time; a placeholder is bound).
    pub(crate) fn dispatch(&self, kernel: Kernel, params: &[u32], buffers: &[Option<&wgpu::Buffer>], groups: [u32; 3]) -> Result<()> {
        if buffers.len() != kernel.shader.bindings.len() {
            return Err(Error::device(format!("kernel {}: {} buffers for {} bindings", kernel.entry, buffers.len(), kernel.shader.bindings.len())));
        }
        if groups.contains(&0) {
            return Ok(());
        }
        if params.len() * 4 > SLOT as usize {
            return Err(Error::device(format!("kernel {}: {} parameter words do not fit a slot", kernel.entry, params.len())));
        }
        let max = self.max_groups();
        if groups.iter().any(|&g| g > max) {
            return Err(Error::device(format!("kernel {}: {groups:?} workgroups exceed the device's {max} per dimension", kernel.entry)));
        }
        let pipeline = self.pipeline(kernel)?;
        let mut rec = lock(&self.inner.recorder);
        let (chunk, offset) = self.slot(&mut rec);
        let host = &mut rec.chunks[chunk].host;
        let start = offset as usize;
        if host.len() < start + SLOT as usize {
            host.resize(start + SLOT as usize, 0);
        }
        for (i, w) in params.iter().enumerate() {
            host[start + 4 * i..start + 4 * i + 4].copy_from_slice(&w.to_le_bytes());
        }
        let group = {
            let mut entries = Vec::with_capacity(buffers.len() + 1);
            entries.push(wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &rec.chunks[chunk].buffer,
                    offset,
                    size: std::num::NonZeroU64::new(SLOT),
                }),
            });
            for (i, b) in buffers.iter().enumerate() {
                entries.push(wgpu::BindGroupEntry { binding: i as u32 + 1, resource: b.unwrap_or(&self.inner.dummy).as_entire_binding() });
            }
            self.inner.device.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: &pipeline.layout, entries: &entries })
        };
        if rec.pass.is_none() {
            let pass = self.encoder(&mut rec).begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: None }).forget_lifetime();
            rec.pass = Some(pass);
        }
        if let Some(pass) = rec.pass.as_mut() {
            pass.set_pipeline(&pipeline.pipeline);
            pass.set_bind_group(0, &group, &[]);
            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        }
        rec.dispatches += 1;
        self.inner.counters.dispatches.fetch_add(1, Ordering::Relaxed);
        self.inner.counters.params.fetch_add(4 * params.len() as u64, Ordering::Relaxed);
        if let Some(profile) = &self.inner.profile {
            let started = std::time::Instant::now();
            self.submit(&mut rec);
            let _ = self.inner.device.poll(wgpu::PollType::wait_indefinitely());
            let mut table = lock(profile);
            let entry = table.entry((kernel.shader.name, kernel.entry)).or_default();
            entry.0 += 1;
            entry.1 += started.elapsed().as_secs_f64();
        } else if rec.dispatches >= FLUSH_EVERY {
            self.submit(&mut rec);
        }
        Ok(())
    }

    /// The next free parameter slot: (chunk, byte offset in it).
    fn slot(&self, rec: &mut Recorder) -> (usize, u64) {
        let chunk = (rec.slots_used / SLOTS_PER_CHUNK) as usize;
        if chunk == rec.chunks.len() {
            let buffer = self.inner.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("params"),
                size: SLOT * SLOTS_PER_CHUNK,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            rec.chunks.push(ArenaChunk { buffer, host: Vec::new() });
        }
        let offset = (rec.slots_used % SLOTS_PER_CHUNK) * SLOT;
        rec.slots_used += 1;
        (chunk, offset)
    }

    /// Ends the pass and submits what was recorded, parameter slots first.
    fn submit(&self, rec: &mut Recorder) {
        rec.pass = None;
        if let Some(encoder) = rec.encoder.take() {
            for chunk in &rec.chunks {
                if !chunk.host.is_empty() {
                    self.inner.queue.write_buffer(&chunk.buffer, 0, &chunk.host);
                }
            }
            self.inner.queue.submit([encoder.finish()]);
            self.inner.counters.submits.fetch_add(1, Ordering::Relaxed);
        }
        for chunk in &mut rec.chunks {
            chunk.host.clear();
        }
        rec.slots_used = 0;
        rec.dispatches = 0;
        // Buffers dropped while commands that use them were being recorded are free now:
        // later writes to them are ordered after those commands.
        lock(&self.inner.pool).release_pending();
    }

    /// Submits everything recorded so far (without waiting for it).
    pub fn flush(&self) {
        let mut rec = lock(&self.inner.recorder);
        self.submit(&mut rec);
    }

    /// Waits until the device has run everything recorded so far; errors with the first
    /// problem wgpu reported since the last check.
    pub fn synchronize(&self) -> Result<()> {
        self.flush();
        self.inner.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::device(format!("{}: {e}", self.inner.info.describe())))?;
        self.check()
    }

    /// The first error wgpu reported outside a scope since the last check, as a device error.
    pub fn check(&self) -> Result<()> {
        let mut errors = lock(&self.inner.errors);
        if errors.is_empty() {
            return Ok(());
        }
        let first = errors.remove(0);
        errors.clear();
        Err(Error::device(format!("{}: {first}", self.inner.info.describe())))
    }

    /// Copies `bytes` bytes at `offset` of `buffer` back to the host (submits and waits).
    pub(crate) fn read(&self, buffer: &wgpu::Buffer, offset: u64, bytes: u64) -> Result<Vec<u8>> {
        let padded = bytes.div_ceil(4) * 4;
        if padded == 0 {
            return Ok(Vec::new());
        }
        let staging = self.inner.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: padded,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.copy(buffer, offset, &staging, 0, padded);
        self.flush();
        let (tx, rx) = std::sync::mpsc::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.inner.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::device(format!("{}: {e}", self.inner.info.describe())))?;
        self.check()?;
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Error::device(format!("{}: reading back {bytes} bytes failed: {e}", self.inner.info.describe()))),
            Err(_) => return Err(Error::device(format!("{}: reading back {bytes} bytes never finished", self.inner.info.describe()))),
        }
        let data = {
            let view = staging.slice(..).get_mapped_range().map_err(|e| Error::device(format!("{}: {e}", self.inner.info.describe())))?;
            view[..bytes as usize].to_vec()
        };
        staging.unmap();
        self.inner.counters.down.fetch_add(bytes, Ordering::Relaxed);
        Ok(data)
    }

    /// The 1-D workgroup grid covering `n` items in groups of `per_group`: (x, y, 1) with
    /// x·y ≥ the groups needed (kernels compute `wid.x + wid.y·nwg.x` and check bounds).
    pub(crate) fn grid(&self, n: usize, per_group: usize) -> [u32; 3] {
        let groups = n.div_ceil(per_group.max(1)) as u64;
        let max = self.max_groups() as u64;
        if groups <= max {
            [groups as u32, 1, 1]
        } else {
            [max as u32, groups.div_ceil(max) as u32, 1]
        }
    }
}
