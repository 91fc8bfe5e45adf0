//! GPU tests: the adapter they run on, or why they are skipped, and `device_test!`, which
//! writes one test body once for every device (as candle's `test_device!` does).

use convlm::tensor::Device;

/// Why the GPU tests cannot run here, if they cannot.
pub fn skip_reason() -> Option<String> {
    #[cfg(not(feature = "gpu"))]
    return Some("convlm was built without the `gpu` feature".into());
    #[cfg(feature = "gpu")]
    match convlm::tensor::gpu::GpuDevice::open(Device::Gpu) {
        Ok(_) => None,
        Err(e) => Some(e.to_string()),
    }
}

/// Whether the test may run on `device`: the CPU always; a GPU when one opens. A missing
/// GPU prints `skipped: <reason>` and the test passes, unless `CONVLM_REQUIRE_GPU=1` (set by
/// `.ci/run`, which installs Mesa's lavapipe) makes it a failure.
pub fn available(device: Device) -> bool {
    if device.is_cpu() {
        return true;
    }
    match skip_reason() {
        None => true,
        Some(reason) => {
            assert!(std::env::var("CONVLM_REQUIRE_GPU").as_deref() != Ok("1"), "CONVLM_REQUIRE_GPU=1 but {reason}");
            println!("skipped: {reason}");
            false
        }
    }
}

/// `device_test!(name, |device| body)`: a module `name` with a test per device (`cpu`,
/// `gpu`) running `body` with `device: Device`; the GPU one is skipped without an adapter.
#[macro_export]
macro_rules! device_test {
    ($name:ident, |$device:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            fn run($device: convlm::tensor::Device) $body
            #[test]
            fn cpu() {
                run(convlm::tensor::Device::Cpu)
            }
            #[test]
            fn gpu() {
                if $crate::common::gpu::available(convlm::tensor::Device::Gpu) {
                    run(convlm::tensor::Device::Gpu)
                }
            }
        }
    };
}

/// Set in a test's own process by [`alone`].
const ALONE: &str = "CONVLM_TEST_GPU_ALONE";

/// Whether this process is the one the test `name` (its path in the test binary) runs alone
/// in: a test that reads the device's counters needs it, since the other tests of the binary
/// share the device. In the first process this runs `name` alone in a child process, asserts
/// that it passed, and returns false (the caller then returns).
#[allow(dead_code)]
pub fn alone(name: &str) -> bool {
    if std::env::var_os(ALONE).is_some() {
        return true;
    }
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe).args(["--exact", name, "--test-threads=1", "--nocapture"]).env(ALONE, "1").output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("1 passed"), "the process running {name} alone failed:\n{text}");
    false
}
