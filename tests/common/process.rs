//! Running the binary as a process the test watches: waiting with a generous deadline (a
//! hang fails the test, a slow machine does not), and sending it signals.

use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use super::cli::command;

/// Starts the binary with stdout and stderr captured.
pub fn spawn<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Child {
    spawn_with_cache(args, None)
}

/// [`spawn`] with its corpus cache in `cache` (for a test that prepares large text).
pub fn spawn_with_cache<S: AsRef<std::ffi::OsStr>>(args: &[S], cache: Option<&std::path::Path>) -> Child {
    let mut c = command();
    if let Some(dir) = cache {
        c.env("CONVLM_CACHE", dir);
    }
    c.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("convlm starts")
}

/// Waits for `child` to exit and returns its output; kills it and fails the test when it is
/// still running after `deadline` (`what` says what it was doing).
pub fn finish_within(mut child: Child, deadline: Duration, what: &str) -> Output {
    let start = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if start.elapsed() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!("{what}: still running after {deadline:?}, killed\nstderr: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("output")
}

/// Waits until the process catches SIGINT (a handler is installed: bit 2 of `SigCgt` in
/// /proc/PID/status), so that a SIGINT sent next reaches the handler rather than the default
/// action of a process still starting.
#[cfg(target_os = "linux")]
pub fn wait_for_sigint_handler(child: &mut Child, deadline: Duration) {
    let start = Instant::now();
    loop {
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
        let caught = status.lines().find_map(|l| l.strip_prefix("SigCgt:")).and_then(|v| u64::from_str_radix(v.trim(), 16).ok()).unwrap_or(0);
        if caught & (1 << (libc::SIGINT - 1)) != 0 {
            return;
        }
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("the process exited ({status}) before it installed its Ctrl-C handler");
        }
        assert!(start.elapsed() < deadline, "no Ctrl-C handler after {deadline:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sends `signal` to the process.
#[cfg(unix)]
pub fn send(child: &Child, signal: i32) {
    // SAFETY: kill(2) with the pid of our own child and a valid signal number.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0, "kill failed");
}
