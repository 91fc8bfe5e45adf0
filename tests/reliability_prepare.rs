//! Never lose a corpus (docs/reliability.md, section 11), through the binary: `prepare`
//! claims and locks its folder, every reader checks a corpus's tokenizer against its
//! corpus.json, a FIFO is read to its end, `tokenizer train` never overwrites a file it was
//! not asked to, and Ctrl-C stops `prepare` and `tokenizer train` with exit code 130.
#![cfg(target_os = "linux")]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::cli::{fails, s, shared_arg, stderr, stdout, succeeds};
use common::process::{finish_within, send, spawn, wait_for_sigint_handler};
use common::runs::{base_run, snapshot, NAMES};

const DEADLINE: Duration = Duration::from_secs(120);

fn shakespeare() -> String {
    shared_arg("data/tinyshakespeare.txt")
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

/// A writer feeding a FIFO, connected before the binary under test opens it.
struct Feed {
    /// A read end the test holds (and never reads) so that the writer's open returns at once.
    keeper: std::fs::File,
    writer: std::thread::JoinHandle<bool>,
}

impl Feed {
    /// Writes `text` into the FIFO in pieces with pauses (a pipe that is empty for a moment is
    /// not at its end), or `text` over and over when `endless`. Returns once the writer's end is
    /// open: the binary started next always finds a writer, however slow the machine.
    fn start(fifo: &Path, text: Vec<u8>, endless: bool) -> Feed {
        use std::os::unix::fs::OpenOptionsExt;
        let keeper = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(fifo).unwrap();
        let (opened_tx, opened) = std::sync::mpsc::channel();
        let fifo = fifo.to_path_buf();
        let writer = std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
            opened_tx.send(()).unwrap();
            loop {
                for piece in text.chunks(20_000) {
                    if f.write_all(piece).is_err() {
                        return false;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                if !endless {
                    return true;
                }
            }
        });
        opened.recv().unwrap();
        Feed { keeper, writer }
    }

    /// Once the binary has exited: whether the writer wrote every byte. Closing the test's read
    /// end makes a writer that the binary left behind fail (EPIPE) instead of waiting.
    fn finish(self) -> bool {
        drop(self.keeper);
        self.writer.join().unwrap()
    }
}

/// The token count `corpus.json` records.
fn tokens(corpus: &Path) -> u64 {
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(corpus.join("corpus.json")).unwrap()).unwrap();
    meta["tokens"].as_u64().unwrap()
}

#[test]
fn a_prepare_into_a_folder_another_is_writing_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("corpus");
    // Another prepare holds the folder's lock (as a running one does).
    let held = convlm::io::try_lock_folder(&out).unwrap().expect("free");
    fails(1, &["prepare", "--data", NAMES, "--out", s(&out)], &[s(&out), "is in use: another convlm prepare is writing a corpus there"]);
    assert_eq!(snapshot(&out), [(".convlm.lock".to_string(), Vec::new())], "the refused prepare wrote into the folder");
    // ... and once it has files of its own there (not yet a corpus), it is still "in use",
    // not a folder of other files (what the race below once printed).
    std::fs::write(out.join("tokens.bin.partial"), b"x").unwrap();
    fails(1, &["prepare", "--data", NAMES, "--out", s(&out)], &[s(&out), "is in use: another convlm prepare is writing a corpus there"]);
    assert_eq!(snapshot(&out).len(), 2, "the refused prepare wrote into the folder");
    drop(held);
    std::fs::remove_file(out.join("tokens.bin.partial")).unwrap();
    // Two prepares of different texts started together: one writes the corpus, the other is
    // refused (in use, or the corpus is already there), and the corpus is whole.
    let both = dir.path().join("both");
    let names = spawn(&["prepare", "--data", NAMES, "--out", s(&both), "--dataset", "lines"]);
    let plays = spawn(&["prepare", "--data", &shakespeare(), "--out", s(&both), "--dataset", "lines"]);
    let (a, b) = (finish_within(names, DEADLINE, "prepare names"), finish_within(plays, DEADLINE, "prepare plays"));
    let winners: Vec<bool> = [&a, &b].iter().map(|o| o.status.success()).collect();
    assert_eq!(winners.iter().filter(|w| **w).count(), 1, "exactly one prepare writes:\n{}\n{}", stderr(&a), stderr(&b));
    let loser = if winners[0] { &b } else { &a };
    assert_eq!(loser.status.code(), Some(1));
    assert!(stderr(loser).contains("is in use") || stderr(loser).contains("already holds a prepared corpus"), "{}", stderr(loser));
    let want = if winners[0] { 32_033 } else { 32_777 };
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(both.join("corpus.json")).unwrap()).unwrap();
    assert_eq!(meta["documents"], want, "corpus.json is not the winner's");
    // The corpus is whole: training reads it.
    succeeds(&["train", "--data", s(&both), "--out", s(&dir.path().join("run")), "--steps", "2", "-q", "--set", "model.channels=8"]);
}

#[test]
fn a_corpus_whose_tokenizer_or_recorded_hash_changed_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    succeeds(&["prepare", "--data", NAMES, "--out", s(&good), "--dataset", "lines"]);
    let copy = |name: &str| -> PathBuf {
        let c = dir.path().join(name);
        std::fs::create_dir(&c).unwrap();
        for (f, bytes) in snapshot(&good) {
            std::fs::write(c.join(f), bytes).unwrap();
        }
        c
    };
    // Two letters of the vocabulary swapped: every id would mean another letter.
    let swapped = copy("swapped");
    let tok = swapped.join("tokenizer.json");
    let mut t: serde_json::Value = serde_json::from_slice(&std::fs::read(&tok).unwrap()).unwrap();
    t["vocab"].as_array_mut().unwrap().swap(10, 11);
    std::fs::write(&tok, serde_json::to_vec(&t).unwrap()).unwrap();
    // The hash corpus.json records, edited.
    let rehashed = copy("rehashed");
    let meta_path = rehashed.join("corpus.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    m["tokenizer_xxh3"] = "0123456789abcdef".into();
    std::fs::write(&meta_path, serde_json::to_vec(&m).unwrap()).unwrap();
    // tokens.bin one id short.
    let short = copy("short");
    let ids = short.join("tokens.bin");
    let bytes = std::fs::read(&ids).unwrap();
    std::fs::write(&ids, &bytes[..bytes.len() - 2]).unwrap();
    let changed = "is not the tokenizer this corpus was made with";
    let cases = [
        (&swapped, [swapped.join("tokenizer.json").display().to_string(), changed.to_string()]),
        (&rehashed, [rehashed.join("tokenizer.json").display().to_string(), changed.to_string()]),
        (&short, [ids.display().to_string(), "truncated or replaced".to_string()]),
    ];
    for (corpus, words) in &cases {
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        let run = dir.path().join(format!("run-{}", corpus.file_name().unwrap().to_str().unwrap()));
        fails(1, &["train", "--data", s(corpus), "--out", s(&run), "--steps", "2", "-q"], &words);
        assert!(!run.exists(), "a refused run wrote its folder");
        fails(1, &["eval", "--run", s(base_run()), "--data", s(corpus)], &words);
    }
    // A run trained on the corpus, whose tokenizer.json is then edited: --resume and eval
    // refuse it before step 1, and the run is left as it was.
    let run = dir.path().join("run");
    succeeds(&["train", "--data", s(&good), "--out", s(&run), "--steps", "2", "-q", "--set", "model.channels=8"]);
    let edited = good.join("tokenizer.json");
    std::fs::copy(&tok, &edited).unwrap();
    let before = snapshot(&run);
    let words = [s(&edited), changed];
    fails(1, &["train", "--resume", "--out", s(&run), "--steps", "4", "-q"], &words);
    fails(1, &["eval", "--run", s(&run)], &words);
    assert_eq!(snapshot(&run), before, "a refused resume changed the run");
}

#[test]
fn a_fifo_is_read_to_its_end_or_to_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read(shakespeare()).unwrap();
    let fifo = dir.path().join("pipe");
    mkfifo(&fifo);
    let feed = Feed::start(&fifo, text.clone(), false);
    let out = dir.path().join("corpus");
    let done = succeeds(&["prepare", "--data", s(&fifo), "--allow-special-files", "--out", s(&out)]);
    assert!(feed.finish(), "prepare stopped reading before the writer's end");
    assert_eq!(tokens(&out), text.len() as u64, "{}", stdout(&done));
    // Past --special-file-limit: a named error, no corpus. Each case has a FIFO of its own:
    // a pipe lives on (with what the last writer left in it) while any process holds it, and
    // a child another test is starting may hold a copy of this one's ends for a moment.
    let fifo = dir.path().join("capped-pipe");
    mkfifo(&fifo);
    let feed = Feed::start(&fifo, text.clone(), false);
    let capped = dir.path().join("capped");
    fails(
        1,
        &["prepare", "--data", s(&fifo), "--allow-special-files", "--special-file-limit", "100000", "--out", s(&capped)],
        &[s(&fifo), "more than data.special_file_limit = 100000 bytes"],
    );
    assert!(!feed.finish(), "the writer wrote more than the limit");
    assert!(!capped.join("corpus.json").exists());
    // Training from a FIFO: the cache's corpus and the run's fingerprint hold all of it.
    let fifo = dir.path().join("train-pipe");
    mkfifo(&fifo);
    let feed = Feed::start(&fifo, text.clone(), false);
    let run = dir.path().join("run");
    succeeds(&[
        "train",
        "--data",
        s(&fifo),
        "--out",
        s(&run),
        "--dataset",
        "stream",
        "--steps",
        "2",
        "-q",
        "--set",
        "data.allow_special_files=true",
        "--set",
        "model.channels=8",
    ]);
    assert!(feed.finish(), "train stopped reading before the writer's end");
    let marker: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("run.json")).unwrap()).unwrap();
    assert_eq!(marker["fingerprints"]["data"]["files"][0]["size"], text.len() as u64);
}

#[test]
fn tokenizer_train_never_overwrites_what_it_was_not_asked_to() {
    let dir = tempfile::tempdir().unwrap();
    let args = |out: &Path| -> Vec<String> { ["tokenizer", "train", "--data", NAMES, "--vocab-size", "300", "--out", s(out)].map(String::from).to_vec() };
    let mine = dir.path().join("tok.json");
    std::fs::write(&mine, "precious").unwrap();
    fails(1, &args(&mine), &[s(&mine), "already exists", "--force"]);
    assert_eq!(std::fs::read(&mine).unwrap(), b"precious");
    succeeds(&[args(&mine), vec!["--force".into()]].concat());
    assert!(convlm::data::Tokenizer::load(&mine).is_ok());
    // A run's or a corpus's tokenizer.json: never, not even with --force.
    let run = base_run();
    let before = snapshot(run);
    for out in [run.join("tokenizer.json"), run.join("other.json")] {
        fails(1, &[args(&out), vec!["--force".into()]].concat(), &["is inside a convlm run", "write elsewhere"]);
    }
    assert_eq!(snapshot(run), before);
    let corpus = dir.path().join("corpus");
    succeeds(&["prepare", "--data", NAMES, "--out", s(&corpus)]);
    fails(1, &[args(&corpus.join("tokenizer.json")), vec!["--force".into()]].concat(), &["is inside a prepared corpus"]);
    fails(1, &args(dir.path()), &["is a folder"]);
    // Absurd vocabulary sizes are errors, not allocation failures.
    for n in ["4294967296", "18446744073709551615"] {
        let out = dir.path().join(format!("t{n}.json"));
        fails(1, &["tokenizer", "train", "--data", NAMES, "--vocab-size", n, "--out", s(&out)], &["more than the 1048576 tokens"]);
        fails(1, &["prepare", "--data", NAMES, "--out", s(&dir.path().join(n)), "--tokenizer", "bpe", "--vocab-size", n], &["more than the 1048576 tokens"]);
        assert!(!out.exists() && !dir.path().join(n).exists(), "a refused command left files");
    }
}

/// Starts `args`, sends Ctrl-C once its handler is in place, and expects exit code 130 with
/// nothing on stdout; returns stderr.
fn interrupted(args: &[&str]) -> String {
    let mut child = spawn(args);
    wait_for_sigint_handler(&mut child, DEADLINE);
    send(&child, libc::SIGINT);
    let out = finish_within(child, DEADLINE, &format!("{args:?} after Ctrl-C"));
    assert_eq!(out.status.code(), Some(130), "{args:?}: {:?}\n{}", out.status, stderr(&out));
    assert!(stdout(&out).is_empty() && stderr(&out).contains("interrupted (Ctrl-C)") && !stderr(&out).contains("panicked"), "{}", stderr(&out));
    stderr(&out)
}

#[test]
fn ctrl_c_stops_prepare_and_tokenizer_train_with_130() {
    let dir = tempfile::tempdir().unwrap();
    // A FIFO whose writer never stops: prepare could never finish by itself.
    let fifo = dir.path().join("endless");
    mkfifo(&fifo);
    let endless = Feed::start(&fifo, b"to be, or not to be\n".repeat(1000), true);
    let out = dir.path().join("corpus");
    interrupted(&["prepare", "--data", s(&fifo), "--allow-special-files", "--out", s(&out)]);
    assert!(!endless.finish(), "the endless writer ended");
    assert!(!out.join("corpus.json").exists(), "an interrupted prepare finished a corpus");
    if out.exists() {
        // What it left is named as unfinished, never read as a corpus.
        fails(1, &["train", "--data", s(&out), "--out", s(&dir.path().join("r")), "-q"], &["did not finish"]);
    }
    // BPE on 22 MB: seconds of reading and training, stopped at once; no file written.
    let big = dir.path().join("big.txt");
    std::fs::write(&big, std::fs::read_to_string(shakespeare()).unwrap().repeat(20)).unwrap();
    let tok = dir.path().join("tok.json");
    let err = interrupted(&["tokenizer", "train", "--data", s(&big), "--vocab-size", "5000", "--out", s(&tok)]);
    assert!(err.contains("nothing was written"), "{err}");
    assert!(!tok.exists());
    let corpus = dir.path().join("bpe");
    interrupted(&["prepare", "--data", s(&big), "--tokenizer", "bpe", "--out", s(&corpus)]);
    assert!(!corpus.join("corpus.json").exists());
}
