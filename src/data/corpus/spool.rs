//! Special files (FIFOs, devices) as regular ones: read once, to their end or to
//! `SourceOptions::special_file_limit`, into a temporary file that every later pass reads.
//!
//! A corpus is read more than once (its fingerprint, the tokenizer's pass, the encoding pass),
//! but a FIFO hands its bytes out once: reading it again gave the second pass nothing (or what
//! the writer had left), and a read that found the pipe empty for a moment stopped there. The
//! copy is read to the end: a FIFO until its writer closes it (EOF), waiting while the writer
//! is silent (and stopping on Ctrl-C even then); a FIFO without a writer reads as empty
//! instead of blocking.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use crate::cancel::CancelToken;
use crate::{Error, Result};

/// Bytes copied at a time.
const CHUNK: usize = 1 << 20;

/// How long a read waits for a silent writer before Ctrl-C is looked at again.
const POLL_MS: i32 = 100;

/// Opens a special file for reading without blocking: a FIFO without a writer would block the
/// open itself. Its reads do not block either; [`read_waiting`] waits for them.
fn open_nonblocking(path: &Path) -> Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    options.open(path).map_err(|e| Error::io(path, e))
}

/// Opens a special file for reading without blocking on the open (see [`open_nonblocking`]),
/// then makes its reads block: a FIFO is read until its writer closes it, not until the pipe
/// is empty for a moment.
pub(super) fn open_special(path: &Path) -> Result<File> {
    let file = open_nonblocking(path)?;
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let fd = file.as_raw_fd();
        // SAFETY: fcntl on a descriptor this function owns (`file` lives until it returns or
        // is handed out); F_GETFL/F_SETFL only read and change its status flags.
        let cleared = unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) == 0
        };
        if !cleared {
            return Err(Error::io(path, std::io::Error::last_os_error()));
        }
    }
    Ok(file)
}

/// Reads from a file opened by [`open_nonblocking`]: `Ok(0)` only at its end (a FIFO: no
/// writer left, or none ever came), and while a writer is silent it waits, looking at
/// `cancel` every [`POLL_MS`] milliseconds, so Ctrl-C stops it even then.
fn read_waiting(file: &mut File, buf: &mut [u8], cancel: &CancelToken) -> std::io::Result<usize> {
    loop {
        if cancel.is_cancelled() {
            return Err(std::io::Error::from(std::io::ErrorKind::Interrupted));
        }
        match file.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => wait_readable(file)?,
            other => return other,
        }
    }
}

/// Waits up to [`POLL_MS`] for `file` to have something to read (or to reach its end).
#[cfg(target_os = "linux")]
fn wait_readable(file: &File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut fds = libc::pollfd { fd: file.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd for a descriptor `file` keeps open during the call.
    if unsafe { libc::poll(&mut fds, 1, POLL_MS) } < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

/// Elsewhere reads block (the file is not opened non-blocking): nothing to wait for.
#[cfg(not(target_os = "linux"))]
fn wait_readable(_file: &File) -> std::io::Result<()> {
    Ok(())
}

/// Copies the special file at `path` into a temporary file (its bytes exactly), stopping with
/// a named error past `limit` bytes or at a NUL byte (a device such as `/dev/zero` or
/// `/dev/urandom` is binary, not text: refused at its first block rather than after the
/// limit), and with [`Error::Cancelled`] when `cancel` is.
pub(super) fn spool(path: &Path, limit: u64, cancel: &CancelToken) -> Result<tempfile::TempPath> {
    let mut input = open_nonblocking(path)?;
    let temp = tempfile::Builder::new().prefix(".convlm-spool-").tempfile().map_err(|e| Error::io(path, e))?;
    let mut output = std::io::BufWriter::new(temp.as_file());
    let (mut buf, mut total) = (vec![0u8; CHUNK], 0u64);
    loop {
        let n = match read_waiting(&mut input, &mut buf, cancel) {
            Ok(0) => break,
            Ok(n) => n,
            Err(_) if cancel.is_cancelled() => return Err(Error::Cancelled),
            Err(e) => return Err(Error::io(path, e)),
        };
        total += n as u64;
        if total > limit {
            return Err(Error::bad_file(path, format!("is not a regular file and holds more than data.special_file_limit = {limit} bytes")));
        }
        if let Some(i) = buf[..n].iter().position(|&b| b == 0) {
            return Err(Error::bad_file(path, format!("contains a NUL byte at byte offset {}: a binary file, not text", total - n as u64 + i as u64)));
        }
        output.write_all(&buf[..n]).map_err(|e| Error::io(temp.path(), e))?;
    }
    output.flush().map_err(|e| Error::io(temp.path(), e))?;
    drop(output);
    Ok(temp.into_temp_path())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn ctrl_c_stops_the_wait_for_a_silent_writer() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // A writer that opens, writes one line and then neither writes nor closes.
        let keeper = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&fifo).unwrap()
        };
        let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        writer.write_all(b"a line\n").unwrap();
        drop(keeper);
        let cancel = CancelToken::new();
        let stopper = {
            let cancel = cancel.clone();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(300));
                cancel.cancel();
            })
        };
        assert!(matches!(spool(&fifo, 1 << 20, &cancel), Err(Error::Cancelled)));
        stopper.join().unwrap();
        drop(writer);
    }

    #[test]
    fn a_fifo_without_a_writer_reads_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let copy = spool(&fifo, 1 << 20, &CancelToken::new()).unwrap();
        assert_eq!(std::fs::metadata(&copy).unwrap().len(), 0);
    }
}
