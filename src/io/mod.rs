//! File I/O shared by every run-level module: atomic writes, safetensors tensor files,
//! JSON files and folder locks. Every write goes through [`atomic_write`].

mod atomic;
mod json;
mod lock;
mod tensor_file;

pub use atomic::atomic_write;
pub use json::{read_json, write_json};
pub use lock::{is_locked, try_lock_folder, FolderLock, LOCK_FILE};
pub use tensor_file::{decode_safetensors, load_safetensors, save_safetensors, TensorFile, CHECKSUM_KEY};
