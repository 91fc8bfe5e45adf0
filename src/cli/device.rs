//! `convlm devices` (the GPU adapters), `convlm selftest` (every GPU kernel against the CPU
//! engine), and the start-up line every command prints when it opens a GPU.

use anyhow::{bail, Result};
use clap::Args;

use convlm::tensor::Device;

/// Parses `--device`.
pub fn device_arg(s: &str) -> Result<Device, String> {
    Device::parse(s).map_err(|e| e.to_string())
}

#[derive(Args)]
pub struct SelftestArgs {
    /// The GPU to check: gpu (the best adapter) or gpu:N (`convlm devices` lists them).
    #[arg(long, default_value = "gpu", value_parser = device_arg)]
    device: Device,
}

/// Lists the adapters wgpu finds: index, name, backend, kind, driver.
pub fn cmd_devices() -> Result<()> {
    #[cfg(feature = "gpu")]
    {
        let adapters = convlm::tensor::gpu::list_adapters();
        println!("cpu     the CPU engine (default)");
        if adapters.is_empty() {
            println!("(no GPU adapter found: install a Vulkan driver, e.g. `apt-get install mesa-vulkan-drivers libvulkan1`, or your GPU vendor's)");
        }
        for a in adapters {
            let driver = if a.driver.is_empty() { String::new() } else { format!("  [{}]", a.driver) };
            println!("gpu:{:<3} {}  {}  {}{driver}", a.index, a.name, a.backend, a.kind.name());
        }
        Ok(())
    }
    #[cfg(not(feature = "gpu"))]
    {
        println!("cpu     the CPU engine (default)");
        println!("(this build has no GPU support: rebuild with `--features gpu`)");
        Ok(())
    }
}

/// Opens the GPU `device` names (None for the CPU), printing which adapter it is on stderr
/// and warning when it only emulates a GPU on the CPU.
#[cfg(feature = "gpu")]
pub fn open(device: Device) -> Result<Option<convlm::tensor::gpu::GpuDevice>> {
    if device.is_cpu() {
        return Ok(None);
    }
    let d = convlm::tensor::gpu::GpuDevice::open(device)?;
    eprintln!("device: {} {}", device, d.info().describe());
    if d.is_software() {
        eprintln!("warning: {} is a software device that emulates a GPU on the CPU: expect it to be slower than `--device cpu`", d.info().name);
    }
    Ok(Some(d))
}

/// In a build without GPU support, an error for anything but `--device cpu`.
#[cfg(not(feature = "gpu"))]
pub fn require_cpu(device: Device) -> Result<()> {
    if !device.is_cpu() {
        bail!("--device {device}: this build has no GPU support (built without the `gpu` feature)");
    }
    Ok(())
}

/// Runs the self-check and prints its table; fails on any mismatch.
pub fn cmd_selftest(args: SelftestArgs) -> Result<()> {
    if args.device.is_cpu() {
        bail!("selftest compares a GPU with the CPU engine: give --device gpu or gpu:N");
    }
    #[cfg(feature = "gpu")]
    {
        let Some(device) = open(args.device)? else { return Ok(()) };
        let started = std::time::Instant::now();
        let checks = convlm::bench::selftest::run(&device)?;
        print!("{}", convlm::bench::selftest::table(&checks));
        let bad = checks.iter().filter(|c| !c.ok()).count();
        println!("{} checks in {:.1} s on {}", checks.len(), started.elapsed().as_secs_f64(), device.info().describe());
        if bad > 0 {
            bail!("{bad} of {} checks disagree with the CPU engine beyond their tolerance", checks.len());
        }
        println!("every GPU kernel agrees with the CPU engine");
        Ok(())
    }
    #[cfg(not(feature = "gpu"))]
    bail!("this build has no GPU support: rebuild with `--features gpu`")
}
