//! Property tests (proptest) whose failures replay exactly: docs/reliability.md, "Replaying a
//! property-test failure".

use std::path::Path;

use proptest::test_runner::{Config, FileFailurePersistence};

/// A proptest configuration of `cases` cases for the test file `file` (its `file!()`).
///
/// Every failure is saved as a seed line in `proptest-regressions/<file>.txt` at the
/// repository root (`tests/x.rs` → `proptest-regressions/tests/x.txt`; the folder is
/// committed), and the seeds there are run first, before any new case. New cases come from
/// `PROPTEST_RNG_SEED` when it is set (`.ci/run` pins it and prints it), else from a random
/// seed.
pub fn config(file: &str, cases: u32) -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("proptest-regressions").join(file).with_extension("txt");
    // proptest takes the path as a `&'static str`: one small string per test, for the process.
    let path: &'static str = Box::leak(path.to_string_lossy().into_owned().into_boxed_str());
    Config { cases, failure_persistence: Some(Box::new(FileFailurePersistence::Direct(path))), ..Config::default() }
}
