//! Reading corpora: files, folders, the built-in word list, and every kind of bad input.

use std::fs;
use std::path::Path;

use convlm::data::{builtin_corpus, read_corpus};
use convlm::Error;

const NAMES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/names.txt");

fn err_text(path: &Path) -> String {
    read_corpus(path).unwrap_err().to_string()
}

#[test]
fn names_file_reads_as_is() {
    let text = read_corpus(Path::new(NAMES)).unwrap();
    assert_eq!(text.lines().count(), 32_033);
    assert!(text.starts_with("emma\nolivia\n"));
}

#[test]
fn crlf_becomes_lf_and_bom_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crlf.txt");
    fs::write(&path, b"\xEF\xBB\xBFanna\r\nbob\r\n\r\ncarl").unwrap();
    assert_eq!(read_corpus(&path).unwrap(), "anna\nbob\n\ncarl");
}

#[test]
fn folder_files_are_joined_in_name_order_recursively() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("b.txt"), "second\n").unwrap();
    fs::write(dir.path().join("a.txt"), "first, no newline").unwrap();
    fs::write(dir.path().join("c.txt"), "").unwrap();
    fs::write(dir.path().join(".hidden"), b"\xFF\xFE binary").unwrap();
    fs::create_dir(dir.path().join("sub")).unwrap();
    fs::write(dir.path().join("sub").join("z.txt"), "nested").unwrap();
    fs::create_dir(dir.path().join(".git")).unwrap();
    fs::write(dir.path().join(".git").join("x.txt"), "hidden folder").unwrap();
    assert_eq!(read_corpus(dir.path()).unwrap(), "first, no newline\nsecond\nnested\n");
}

#[test]
fn empty_inputs_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.txt");
    fs::write(&empty, "").unwrap();
    let err = err_text(&empty);
    assert!(err.contains("empty.txt: ") && err.contains("empty"), "{err}");
    let blank = dir.path().join("blank.txt");
    fs::write(&blank, " \n\r\n\t\n").unwrap();
    assert!(err_text(&blank).contains("empty"));

    let folder = dir.path().join("folder");
    fs::create_dir(&folder).unwrap();
    assert!(err_text(&folder).contains("has no regular files"));
    fs::write(folder.join("a.txt"), "\n").unwrap();
    let err = err_text(&folder);
    assert!(err.contains("all 1 files of the corpus folder are empty"), "{err}");

    let missing = dir.path().join("missing.txt");
    assert!(matches!(read_corpus(&missing), Err(Error::Io { .. })));
    assert!(err_text(&missing).contains("missing.txt"));
}

#[test]
fn binary_and_non_utf8_files_name_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let latin1 = dir.path().join("latin1.txt");
    fs::write(&latin1, b"caf\xE9 au lait").unwrap();
    let err = err_text(&latin1);
    assert!(err.contains("latin1.txt: not valid UTF-8 at byte offset 3"), "{err}");

    let binary = dir.path().join("model.bin");
    fs::write(&binary, b"PK\x03\x04\x00\x00abc").unwrap();
    let err = err_text(&binary);
    assert!(err.contains("model.bin: contains a NUL byte at byte offset 4"), "{err}");

    // Inside a folder the bad file is named, not the folder.
    let folder = dir.path().join("reviews");
    fs::create_dir(&folder).unwrap();
    fs::write(folder.join("1.txt"), "good review\n").unwrap();
    fs::write(folder.join("2.txt"), b"bad \xC3\x28 review").unwrap();
    let err = err_text(&folder);
    assert!(err.contains("2.txt: not valid UTF-8 at byte offset 4"), "{err}");
    assert!(matches!(read_corpus(&folder), Err(Error::BadFile { .. })));
}

#[test]
fn builtin_corpus_is_an_english_word_list() {
    let text = builtin_corpus();
    let words: Vec<&str> = text.lines().collect();
    // random_word 0.5.3 ships 178,187 lowercase English words of at most 15 letters.
    assert!(words.len() > 100_000, "{} words", words.len());
    assert!(text.ends_with('\n'));
    assert!(words.iter().all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase())));
    for common in ["house", "water", "letter"] {
        assert!(words.contains(&common), "{common} missing");
    }
}
