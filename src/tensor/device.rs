//! [`Device`]: where a model trains, evaluates and generates — the CPU engine (the default
//! and the reference) or a GPU adapter through wgpu (`tensor::gpu`, feature `gpu`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// What `--device` (config `train.device`) asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Device {
    /// The CPU engine.
    #[default]
    Cpu,
    /// The best GPU adapter: the first discrete one, else integrated, else a software device.
    Gpu,
    /// Adapter `N` of `convlm devices`' list.
    GpuIndex(usize),
}

impl Device {
    /// Whether this is the CPU engine.
    pub fn is_cpu(&self) -> bool {
        *self == Device::Cpu
    }

    /// Parses `cpu`, `gpu` or `gpu:N`; errors name the flag and what it takes.
    pub fn parse(text: &str) -> Result<Self> {
        let t = text.trim();
        match t {
            "cpu" => Ok(Device::Cpu),
            "gpu" => Ok(Device::Gpu),
            _ => {
                let index = t.strip_prefix("gpu:").and_then(|n| n.parse::<usize>().ok());
                index.map(Device::GpuIndex).ok_or_else(|| Error::config("device", format!("`{text}` is not cpu, gpu or gpu:N (N from `convlm devices`)")))
            }
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Gpu => f.write_str("gpu"),
            Device::GpuIndex(n) => write!(f, "gpu:{n}"),
        }
    }
}

impl FromStr for Device {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Device::parse(s)
    }
}

impl Serialize for Device {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Device {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Device::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_every_form() {
        for (text, want) in [("cpu", Device::Cpu), ("gpu", Device::Gpu), ("gpu:0", Device::GpuIndex(0)), (" gpu:12 ", Device::GpuIndex(12))] {
            let d = Device::parse(text).unwrap();
            assert_eq!(d, want);
            assert_eq!(Device::parse(&d.to_string()).unwrap(), d);
        }
        for bad in ["", "cuda", "gpu:", "gpu:-1", "gpu:x", "GPU"] {
            let err = Device::parse(bad).unwrap_err().to_string();
            assert!(err.contains("device") && err.contains("gpu:N"), "{bad}: {err}");
        }
        let json = serde_json::to_string(&Device::GpuIndex(2)).unwrap();
        assert_eq!(json, "\"gpu:2\"");
        assert_eq!(serde_json::from_str::<Device>(&json).unwrap(), Device::GpuIndex(2));
        assert!(serde_json::from_str::<Device>("\"tpu\"").is_err());
    }
}
