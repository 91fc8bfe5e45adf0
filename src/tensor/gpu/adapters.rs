//! The GPU adapters wgpu finds on this machine, and which one `--device` picks.

use crate::error::{Error, Result};
use crate::tensor::Device;

/// What kind of device an adapter is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdapterKind {
    Discrete,
    Integrated,
    Virtual,
    /// A software device emulating a GPU on the CPU (Mesa's lavapipe, SwiftShader, WARP).
    Software,
    Other,
}

impl AdapterKind {
    fn of(t: wgpu::DeviceType) -> Self {
        match t {
            wgpu::DeviceType::DiscreteGpu => AdapterKind::Discrete,
            wgpu::DeviceType::IntegratedGpu => AdapterKind::Integrated,
            wgpu::DeviceType::VirtualGpu => AdapterKind::Virtual,
            wgpu::DeviceType::Cpu => AdapterKind::Software,
            wgpu::DeviceType::Other => AdapterKind::Other,
        }
    }

    /// The word `convlm devices` prints.
    pub fn name(self) -> &'static str {
        match self {
            AdapterKind::Discrete => "discrete",
            AdapterKind::Integrated => "integrated",
            AdapterKind::Virtual => "virtual",
            AdapterKind::Software => "software (CPU emulation)",
            AdapterKind::Other => "other",
        }
    }

    /// Rank when `--device gpu` picks: lower is preferred.
    fn preference(self) -> u8 {
        match self {
            AdapterKind::Discrete => 0,
            AdapterKind::Integrated => 1,
            AdapterKind::Virtual => 2,
            AdapterKind::Other => 3,
            AdapterKind::Software => 4,
        }
    }
}

/// One adapter as `convlm devices` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdapterInfo {
    /// Its number in the list (`--device gpu:N`).
    pub index: usize,
    pub name: String,
    /// Vulkan, Metal, DX12.
    pub backend: String,
    pub kind: AdapterKind,
    /// Driver name and version, where the driver says.
    pub driver: String,
}

impl AdapterInfo {
    fn new(index: usize, info: &wgpu::AdapterInfo) -> Self {
        let driver = [info.driver.as_str(), info.driver_info.as_str()].iter().filter(|s| !s.is_empty()).copied().collect::<Vec<_>>().join(" ");
        AdapterInfo { index, name: info.name.clone(), backend: format!("{:?}", info.backend), kind: AdapterKind::of(info.device_type), driver }
    }

    /// `name (backend, kind)`, as start-up lines and errors print it.
    pub fn describe(&self) -> String {
        format!("{} ({}, {})", self.name, self.backend, self.kind.name())
    }
}

/// The backends wgpu may use: those of `WGPU_BACKEND` (wgpu's own variable, e.g. `vulkan`)
/// when set, else Vulkan, Metal and DX12.
pub(crate) fn backends() -> wgpu::Backends {
    wgpu::Backends::from_env().unwrap_or(wgpu::Backends::PRIMARY)
}

/// A wgpu instance over [`backends`].
pub(crate) fn instance() -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends();
    desc.flags = wgpu::InstanceFlags::empty().with_env();
    wgpu::Instance::new(desc)
}

/// The adapters of `instance` in a stable order (as wgpu enumerates them), with their
/// summaries.
pub(crate) fn enumerate(instance: &wgpu::Instance) -> Vec<(wgpu::Adapter, AdapterInfo)> {
    let adapters = pollster::block_on(instance.enumerate_adapters(backends()));
    adapters
        .into_iter()
        .filter(|a| a.get_info().backend != wgpu::Backend::Noop)
        .enumerate()
        .map(|(i, a)| {
            let info = AdapterInfo::new(i, &a.get_info());
            (a, info)
        })
        .collect()
}

/// Every adapter this machine offers, for `convlm devices`.
pub fn list_adapters() -> Vec<AdapterInfo> {
    enumerate(&instance()).into_iter().map(|(_, info)| info).collect()
}

/// The error for a machine where wgpu finds no adapter: what to install.
pub(crate) fn no_adapter() -> Error {
    let forced = std::env::var("WGPU_BACKEND").ok().filter(|v| !v.trim().is_empty());
    let looked = match &forced {
        Some(v) => format!("the backends WGPU_BACKEND={v} names"),
        None => "Vulkan, Metal and DX12".to_string(),
    };
    Error::device(format!(
        "no GPU adapter found (looked for {looked}). Install a Vulkan driver — on Debian or Ubuntu `apt-get install mesa-vulkan-drivers libvulkan1` \
         (Mesa's drivers, with lavapipe, a CPU emulation) — or your GPU vendor's driver; `convlm devices` lists what is found"
    ))
}

/// The index in `adapters` that `device` picks: `gpu:N` that adapter, `gpu` the first
/// discrete one, else integrated, else a software device.
pub(crate) fn choose(adapters: &[AdapterInfo], device: Device) -> Result<usize> {
    if adapters.is_empty() {
        return Err(no_adapter());
    }
    match device {
        Device::Cpu => Err(Error::device("the CPU is not a GPU adapter")),
        Device::GpuIndex(n) if n < adapters.len() => Ok(n),
        Device::GpuIndex(n) => {
            let listed: Vec<String> = adapters.iter().map(|a| format!("gpu:{} {}", a.index, a.describe())).collect();
            Err(Error::device(format!("gpu:{n} does not exist: this machine has {} adapter(s): {}", adapters.len(), listed.join("; "))))
        }
        Device::Gpu => Ok(adapters.iter().min_by_key(|a| (a.kind.preference(), a.index)).map_or(0, |a| a.index)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adapter(index: usize, kind: AdapterKind) -> AdapterInfo {
        AdapterInfo { index, name: format!("a{index}"), backend: "Vulkan".into(), kind, driver: String::new() }
    }

    #[test]
    fn gpu_prefers_discrete_then_integrated_then_software() {
        let list =
            [adapter(0, AdapterKind::Software), adapter(1, AdapterKind::Integrated), adapter(2, AdapterKind::Discrete), adapter(3, AdapterKind::Discrete)];
        assert_eq!(choose(&list, Device::Gpu).unwrap(), 2);
        assert_eq!(choose(&list[..2], Device::Gpu).unwrap(), 1);
        assert_eq!(choose(&list[..1], Device::Gpu).unwrap(), 0);
        assert_eq!(choose(&list, Device::GpuIndex(3)).unwrap(), 3);
    }

    #[test]
    fn errors_name_the_index_and_what_to_install() {
        let list = [adapter(0, AdapterKind::Software)];
        let err = choose(&list, Device::GpuIndex(4)).unwrap_err().to_string();
        assert!(err.contains("gpu:4 does not exist") && err.contains("1 adapter(s): gpu:0 a0 (Vulkan, software"), "{err}");
        let err = choose(&[], Device::Gpu).unwrap_err().to_string();
        assert!(err.contains("no GPU adapter found") && err.contains("mesa-vulkan-drivers libvulkan1"), "{err}");
    }
}
