//! safetensors round trip, compatibility with the reference reader, and a loader that never
//! panics and always names the file and the problem.

mod common;

use convlm::io::{load_safetensors, save_safetensors};
use convlm::{Error, Tensor};
use proptest::prelude::*;
use std::collections::HashMap;
use std::path::Path;

fn sample() -> Vec<(String, Tensor)> {
    vec![
        ("z.last".into(), Tensor::new([2, 3], vec![1.0, -2.5, 3.25, f32::MAX, f32::MIN_POSITIVE, -0.0]).unwrap()),
        ("a.first".into(), Tensor::new([5], vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e-40, 7.0]).unwrap()),
        ("scalar".into(), Tensor::new(Vec::<usize>::new(), vec![42.0]).unwrap()),
        ("empty".into(), Tensor::new([0, 4], vec![]).unwrap()),
        ("convs.0.weight".into(), Tensor::new([2, 1, 2], vec![0.1, 0.2, 0.3, 0.4]).unwrap()),
    ]
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.data().iter().map(|v| v.to_bits()).collect()
}

fn saved(dir: &Path) -> (std::path::PathBuf, Vec<u8>) {
    let path = dir.join("model.safetensors");
    let meta = HashMap::from([("format".to_string(), "pt".to_string()), ("step".to_string(), "12".to_string())]);
    save_safetensors(&path, &sample(), Some(meta)).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    (path, bytes)
}

/// Loads `bytes` from a file and requires a BadFile error naming the file.
fn expect_bad(dir: &Path, bytes: &[u8]) -> String {
    let path = dir.join("bad.safetensors");
    std::fs::write(&path, bytes).unwrap();
    match load_safetensors(&path) {
        Err(e @ Error::BadFile { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("bad.safetensors"), "{msg}");
            msg
        }
        other => panic!("expected BadFile, got {:?}", other.map(|(t, _)| t.len())),
    }
}

#[test]
fn round_trip_keeps_order_shapes_values_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = saved(dir.path());
    let (tensors, meta) = load_safetensors(&path).unwrap();
    let want = sample();
    assert_eq!(tensors.len(), want.len());
    for ((n, t), (wn, wt)) in tensors.iter().zip(&want) {
        assert_eq!(n, wn);
        assert_eq!(t.shape(), wt.shape(), "{n}");
        assert_eq!(bits(t), bits(wt), "{n}");
    }
    assert_eq!(meta.len(), 2);
    assert_eq!(meta["format"], "pt");
    assert_eq!(meta["step"], "12");

    save_safetensors(&path, &want[..1], None).unwrap();
    let (tensors, meta) = load_safetensors(&path).unwrap();
    assert_eq!(tensors.len(), 1);
    assert!(meta.is_empty());
}

#[test]
fn written_file_is_standard_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = saved(dir.path());
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert_eq!((8 + n) % 8, 0, "data starts 8-byte aligned, as the Python writer does");
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor("z.last").unwrap();
    assert_eq!(t.dtype(), safetensors::Dtype::F32);
    assert_eq!(t.shape(), &[2, 3]);
    assert_eq!(&t.data()[..4], &1.0f32.to_le_bytes());
    assert_eq!(st.len(), 5);
}

/// A file written by the reference writer (as Python's `save_file` does: sorted by name)
/// loads, in its data order.
#[test]
fn reads_files_from_the_reference_writer() {
    let dir = tempfile::tempdir().unwrap();
    let raw: Vec<(String, Vec<usize>, Vec<u8>)> =
        sample().into_iter().map(|(n, t)| (n, t.shape().to_vec(), t.data().iter().flat_map(|v| v.to_le_bytes()).collect())).collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> =
        raw.iter().map(|(n, s, d)| (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d).unwrap())).collect();
    let bytes = safetensors::serialize(views, None).unwrap();
    let path = dir.path().join("py.safetensors");
    std::fs::write(&path, bytes).unwrap();
    let (tensors, _) = load_safetensors(&path).unwrap();
    let mut names: Vec<_> = tensors.iter().map(|(n, _)| n.clone()).collect();
    names.sort();
    assert_eq!(names, ["a.first", "convs.0.weight", "empty", "scalar", "z.last"]);
    let w = &tensors.iter().find(|(n, _)| n == "convs.0.weight").unwrap().1;
    assert_eq!(w.data(), &[0.1, 0.2, 0.3, 0.4]);
}

#[test]
fn missing_file_is_an_io_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.safetensors");
    match load_safetensors(&path) {
        Err(e @ Error::Io { .. }) => assert!(e.to_string().contains("nope.safetensors"), "{e}"),
        other => panic!("expected Io, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn truncated_files_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = saved(dir.path());
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    for cut in [0, 1, 7, 8, 9, 8 + n / 2, 8 + n - 1, 8 + n, 8 + n + 3, bytes.len() - 4, bytes.len() - 1] {
        let msg = expect_bad(dir.path(), &bytes[..cut]);
        assert!(!msg.is_empty(), "cut at {cut}");
    }
    assert!(expect_bad(dir.path(), &bytes[..bytes.len() - 4]).contains("truncated"));
    // Extra trailing bytes are also an error.
    let mut longer = bytes.clone();
    longer.extend_from_slice(&[0; 4]);
    expect_bad(dir.path(), &longer);
}

#[test]
fn corrupted_header_bytes_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = saved(dir.path());
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let path = dir.path().join("flip.safetensors");
    let mut errors = 0;
    for i in 0..8 + n {
        for mask in [0x01u8, 0x80, 0xFF] {
            let mut b = bytes.clone();
            b[i] ^= mask;
            std::fs::write(&path, &b).unwrap();
            match load_safetensors(&path) {
                Ok(_) => {}
                Err(Error::BadFile { path: p, msg }) => {
                    assert_eq!(p, path);
                    assert!(!msg.is_empty());
                    errors += 1;
                }
                Err(e) => panic!("unexpected error kind: {e}"),
            }
        }
    }
    assert!(errors > 8 * 3, "most corruptions are detected");
    // Corrupting the length prefix specifically is always detected.
    for i in 0..8 {
        let mut b = bytes.clone();
        b[i] ^= 0x10;
        expect_bad(dir.path(), &b);
    }
}

fn header_file(header: &str, data_len: usize) -> Vec<u8> {
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(header.as_bytes());
    b.extend(std::iter::repeat_n(0u8, data_len));
    b
}

#[test]
fn wrong_dtype_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let msg = expect_bad(dir.path(), &header_file(r#"{"w":{"dtype":"F64","shape":[2],"data_offsets":[0,16]}}"#, 16));
    assert!(msg.contains("F64") && msg.contains("`w`"), "{msg}");
    let msg = expect_bad(dir.path(), &header_file(r#"{"i":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}"#, 8));
    assert!(msg.contains("I64"), "{msg}");
}

#[test]
fn shape_and_data_size_must_agree() {
    let dir = tempfile::tempdir().unwrap();
    expect_bad(dir.path(), &header_file(r#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, 8));
    expect_bad(dir.path(), &header_file(r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, 12));
    expect_bad(dir.path(), &header_file(r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#, 12));
    expect_bad(dir.path(), &header_file(r#"{"w":{"dtype":"F32","shape":[4611686018427387904,8],"data_offsets":[0,8]}}"#, 8));
    expect_bad(dir.path(), &header_file(r#"[1,2,3]"#, 0));
    expect_bad(dir.path(), &header_file(r#"{"w":{"dtype":"F32"}}"#, 0));
    expect_bad(dir.path(), &header_file(r#"{"__metadata__":{"a":1}}"#, 0));
}

#[test]
fn offsets_near_usize_max_are_rejected() {
    // Eight contiguous tensors whose offsets sum to just under 2^64: must be an error, not an
    // arithmetic overflow.
    let dir = tempfile::tempdir().unwrap();
    let size: u64 = (1 << 61) - 1;
    let entries: Vec<String> =
        (0..8).map(|i| format!(r#""t{i}":{{"dtype":"U8","shape":[{size}],"data_offsets":[{},{}]}}"#, i * size, (i + 1) * size)).collect();
    expect_bad(dir.path(), &header_file(&format!("{{{}}}", entries.join(",")), 0));
}

#[test]
fn duplicate_or_reserved_names_are_refused_on_save() {
    let dir = tempfile::tempdir().unwrap();
    let t = Tensor::zeros([1]);
    let path = dir.path().join("x.safetensors");
    assert!(save_safetensors(&path, &[("a".into(), t.clone()), ("a".into(), t.clone())], None).is_err());
    assert!(save_safetensors(&path, &[("__metadata__".into(), t)], None).is_err());
    assert!(!path.exists());
}

proptest! {
    #![proptest_config(common::property::config(file!(), 256))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.safetensors");
        std::fs::write(&path, &bytes).unwrap();
        let _ = load_safetensors(&path);
    }

    #[test]
    fn random_headers_never_panic(body in "\\{[\"a-zF0-9:,\\[\\]{}_ ]{0,120}\\}", data in 0usize..64, lie in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.safetensors");
        let mut b = header_file(&body, data);
        if lie {
            b[0] = b[0].wrapping_add(3);
        }
        std::fs::write(&path, &b).unwrap();
        let _ = load_safetensors(&path);
    }

    #[test]
    fn random_tensors_round_trip(shape in proptest::collection::vec(0usize..5, 0..4), seed in any::<u32>()) {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|i| f32::from_bits(seed.wrapping_mul(2654435761).wrapping_add(i as u32 * 40503))).collect();
        let t = Tensor::new(shape.clone(), data).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.safetensors");
        save_safetensors(&path, &[("t".into(), t.clone())], None).unwrap();
        let (back, _) = load_safetensors(&path).unwrap();
        prop_assert_eq!(back[0].1.shape(), &shape[..]);
        prop_assert_eq!(bits(&back[0].1), bits(&t));
    }
}
