//! safetensors files of f32 tensors (the format `safetensors.torch.load_file` reads), with a
//! checksum in their metadata.
//!
//! safetensors has no checksum of its own: a flipped bit or random bytes in tensor data load as
//! other numbers. Every file convlm writes records `checksum` = `xxh3:<16 hex digits>` in its
//! `__metadata__` (string metadata, which PyTorch's loaders ignore): XXH3-64 over every tensor's
//! name, shape and data and every other metadata entry. A file whose checksum disagrees is an
//! error naming it; a file without one (older convlm, PyTorch) loads as before.

use super::atomic::atomic_write;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use xxhash_rust::xxh3::Xxh3;

/// The contents of a tensor file: named tensors in file order, and the string metadata
/// (without the checksum, which the reader has checked).
pub type TensorFile = (Vec<(String, Tensor)>, HashMap<String, String>);

/// Largest header the safetensors format allows.
const MAX_HEADER: u64 = 100_000_000;

/// The metadata entry holding a file's checksum.
pub const CHECKSUM_KEY: &str = "checksum";
/// How a checksum value starts (the algorithm).
const CHECKSUM_PREFIX: &str = "xxh3:";

/// Writes named f32 tensors (little-endian, dtype `F32`) and optional string metadata
/// (`__metadata__`) to a safetensors file, atomically, with the file's checksum added to the
/// metadata. Tensors are stored in the given order; names must be unique and not
/// `__metadata__`, and no metadata key may be `checksum`.
pub fn save_safetensors(path: &Path, tensors: &[(String, Tensor)], metadata: Option<HashMap<String, String>>) -> Result<()> {
    let bytes = encode(path, tensors, metadata)?;
    atomic_write(path, &bytes)
}

/// The checksum of a file's contents: every tensor's name, shape and little-endian data in
/// name order (file order may tie for empty tensors), then the metadata entries (but the
/// checksum) in key order; each piece is length-prefixed so that no two contents hash the
/// same bytes.
fn checksum<'a>(tensors: impl Iterator<Item = (&'a str, &'a [usize], &'a [u8])>, metadata: &BTreeMap<&str, &str>) -> String {
    let mut h = Xxh3::new();
    let mut piece = |bytes: &[u8]| {
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    let by_name: BTreeMap<&str, (&[usize], &[u8])> = tensors.map(|(n, shape, data)| (n, (shape, data))).collect();
    for (name, (shape, data)) in by_name {
        piece(name.as_bytes());
        piece(&shape.iter().flat_map(|&d| (d as u64).to_le_bytes()).collect::<Vec<u8>>());
        piece(data);
    }
    for (k, v) in metadata.iter().filter(|(k, _)| **k != CHECKSUM_KEY) {
        piece(k.as_bytes());
        piece(v.as_bytes());
    }
    format!("{CHECKSUM_PREFIX}{:016x}", h.digest())
}

/// The file contents: 8-byte header length, JSON header padded with spaces to a multiple
/// of 8 bytes, then the tensor data back to back.
fn encode(path: &Path, tensors: &[(String, Tensor)], metadata: Option<HashMap<String, String>>) -> Result<Vec<u8>> {
    let json = |v: serde_json::Result<String>| v.map_err(|e| Error::bad_file(path, format!("cannot encode header: {e}")));
    let mut meta: BTreeMap<String, String> = metadata.unwrap_or_default().into_iter().collect();
    if meta.contains_key(CHECKSUM_KEY) {
        return Err(Error::bad_file(path, format!("cannot save metadata key `{CHECKSUM_KEY}`: reserved for the file's checksum")));
    }
    let data: Vec<Vec<u8>> = tensors.iter().map(|(_, t)| t.data().iter().flat_map(|v| v.to_le_bytes()).collect()).collect();
    let sum = {
        let borrowed: BTreeMap<&str, &str> = meta.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        checksum(tensors.iter().zip(&data).map(|((n, t), d)| (n.as_str(), t.shape(), d.as_slice())), &borrowed)
    };
    meta.insert(CHECKSUM_KEY.to_string(), sum);
    let mut header = String::from("{");
    header.push_str(&format!("\"__metadata__\":{}", json(serde_json::to_string(&meta))?));
    let mut seen = HashSet::new();
    let mut offset = 0usize;
    for (name, t) in tensors {
        if name == "__metadata__" || !seen.insert(name.as_str()) {
            return Err(Error::bad_file(path, format!("cannot save tensor name `{name}`: reserved or repeated")));
        }
        let end = offset + t.numel() * 4;
        if header.len() > 1 {
            header.push(',');
        }
        header.push_str(&format!(
            "{}:{{\"dtype\":\"F32\",\"shape\":{},\"data_offsets\":[{offset},{end}]}}",
            json(serde_json::to_string(name))?,
            json(serde_json::to_string(t.shape()))?
        ));
        offset = end;
    }
    header.push('}');
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut out = Vec::with_capacity(8 + header.len() + offset);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for d in &data {
        out.extend_from_slice(d);
    }
    Ok(out)
}

/// Reads a safetensors file of f32 tensors: the tensors in file (data offset) order and
/// the `__metadata__` strings (empty when absent).
///
/// Never panics on bad input: a missing or unreadable file is an [`Error::Io`] naming it;
/// a truncated, corrupted or non-safetensors file, a dtype other than F32, or a shape that
/// disagrees with the data size is an [`Error::BadFile`] naming the file and the problem.
pub fn load_safetensors(path: &Path) -> Result<TensorFile> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_safetensors(&bytes, path)
}

/// Reads the contents of a safetensors file read elsewhere (as [`load_safetensors`] does;
/// `path` names it in errors).
pub fn decode_safetensors(bytes: &[u8], path: &Path) -> Result<TensorFile> {
    decode(bytes).map_err(|msg| Error::bad_file(path, msg))
}

/// Parses file contents; the error is the message to report.
fn decode(bytes: &[u8]) -> std::result::Result<TensorFile, String> {
    precheck(bytes)?;
    let (n, meta) = SafeTensors::read_metadata(bytes).map_err(|e| format!("not a valid safetensors file: {e}"))?;
    let data = bytes.get(8 + n..).ok_or("header extends past the end of the file")?;
    let mut out = Vec::new();
    let mut raws = Vec::new();
    for name in meta.offset_keys() {
        let info = meta.info(&name).ok_or_else(|| format!("tensor `{name}` listed but not described"))?;
        if info.dtype != Dtype::F32 {
            return Err(format!("tensor `{name}` has dtype {:?}; convlm reads only F32", info.dtype));
        }
        let (start, end) = info.data_offsets;
        let raw = data.get(start..end).ok_or_else(|| format!("tensor `{name}` data lies outside the file"))?;
        let numel = info.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if numel.and_then(|n| n.checked_mul(4)) != Some(raw.len()) {
            return Err(format!("tensor `{name}` has shape {:?} but {} bytes of data", info.shape, raw.len()));
        }
        let values = raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let t = Tensor::new(info.shape.clone(), values).map_err(|e| format!("tensor `{name}`: {e}"))?;
        raws.push(raw);
        out.push((name, t));
    }
    let mut metadata = meta.metadata().clone().unwrap_or_default();
    if let Some(recorded) = metadata.remove(CHECKSUM_KEY) {
        let borrowed: BTreeMap<&str, &str> = metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let actual = checksum(out.iter().zip(&raws).map(|((n, t), raw)| (n.as_str(), t.shape(), *raw)), &borrowed);
        if recorded != actual {
            return Err(format!(
                "checksum mismatch (recorded {recorded}, contents {actual}): the file's tensors or metadata changed after convlm wrote it; it is damaged"
            ));
        }
    }
    Ok((out, metadata))
}

/// Checks the framing (header length, data offsets within the file) before the
/// safetensors crate parses the header, giving clearer messages for truncated files and
/// keeping absurd offsets away from its arithmetic.
fn precheck(bytes: &[u8]) -> std::result::Result<(), String> {
    let Some(len_bytes) = bytes.get(..8) else {
        return Err(format!("file is {} bytes long, too short for a safetensors header", bytes.len()));
    };
    let mut arr = [0u8; 8];
    arr.copy_from_slice(len_bytes);
    let n = u64::from_le_bytes(arr);
    if n > MAX_HEADER {
        return Err(format!("header length {n} is implausibly large; not a safetensors file"));
    }
    let rest = (bytes.len() - 8) as u64;
    if n > rest {
        return Err(format!("header length {n} exceeds the {rest} bytes after it; the file is truncated"));
    }
    let header = &bytes[8..8 + n as usize];
    let data_len = rest - n;
    // If the header is not a JSON object the crate reports why below.
    if let Ok(map) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(header) {
        for (name, entry) in map.iter().filter(|(k, _)| k.as_str() != "__metadata__") {
            let offsets = entry.get("data_offsets").and_then(|o| o.as_array());
            for o in offsets.into_iter().flatten().filter_map(|o| o.as_u64()) {
                if o > data_len {
                    return Err(format!(
                        "tensor `{name}` data ends at byte {o} but the file holds only {data_len} data bytes; \
                         the file is truncated"
                    ));
                }
            }
        }
    }
    Ok(())
}
