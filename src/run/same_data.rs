//! Every rank of a data-parallel run must train on the data rank 0 trains on. Each host may
//! hold its own copy (a prepared corpus copied to each machine, or its own corpus cache), so
//! before the first step every rank lists what it opened — each data file, the tokenizer,
//! the token ids — and compares the list with rank 0's: a rank whose copy differs stops the
//! run with an error naming its host and the file.

use std::path::Path;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

use crate::data::{CORPUS_META, CORPUS_TOKENIZER, TOKENS_FILE};
use crate::dist::{host_name, Group, Wait};
use crate::error::{Error, Result};
use crate::run::config::DataConfig;
use crate::run::prepare::RunData;

/// Token ids hashed whole up to this many; a longer corpus is hashed in [`SAMPLES`] windows
/// of this size spread over it (its length is compared in any case), so that a rank does not
/// read gigabytes before its first step.
const SAMPLE_IDS: usize = 1 << 16;
const SAMPLES: usize = 64;

/// One file a rank holds, and what it holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Held {
    file: String,
    digest: String,
}

/// What a rank holds, and where it runs.
#[derive(Debug, Serialize, Deserialize)]
struct Holdings {
    host: String,
    files: Vec<Held>,
}

/// The files of `data` (opened for `cfg`) as this rank sees them, in the same order on every
/// rank.
fn holdings(cfg: &DataConfig, data: &RunData) -> Result<Holdings> {
    let dir = &data.corpus_dir;
    let shown = |p: &Path| p.display().to_string();
    let mut files = Vec::new();
    if cfg.path.as_deref() == Some(dir.as_path()) {
        // A prepared corpus: its corpus.json records the text it was made from.
        let meta = data.fingerprint.files.iter().find(|f| f.name == CORPUS_META);
        let digest = meta.map_or_else(|| "none".to_string(), |f| format!("{} bytes, xxh3 {}", f.size, f.xxh3));
        files.push(Held { file: shown(&dir.join(CORPUS_META)), digest });
    } else {
        for f in &data.fingerprint.files {
            let file = match &cfg.path {
                Some(p) if f.name.is_empty() => shown(p),
                Some(p) => shown(&p.join(&f.name)),
                None => f.name.clone(),
            };
            files.push(Held { file, digest: format!("{} bytes, xxh3 {}", f.size, f.xxh3) });
        }
    }
    let tokenizer = xxhash_rust::xxh3::xxh3_64(data.tokenizer.to_json()?.as_bytes());
    files.push(Held { file: shown(&dir.join(CORPUS_TOKENIZER)), digest: format!("xxh3 {tokenizer:016x}") });
    files.push(Held { file: shown(&dir.join(TOKENS_FILE)), digest: tokens_digest(data) });
    Ok(Holdings { host: host_name(), files })
}

/// The corpus's token count and a hash of its ids (all of them, or evenly spread windows).
fn tokens_digest(data: &RunData) -> String {
    let store = &data.store;
    let len = store.len();
    let mut h = Xxh3::new();
    let mut ids = Vec::new();
    let windows: Vec<std::ops::Range<usize>> = if len <= SAMPLE_IDS * SAMPLES {
        (0..len).step_by(SAMPLE_IDS).map(|s| s..(s + SAMPLE_IDS).min(len)).collect()
    } else {
        let stride = (len - SAMPLE_IDS) / (SAMPLES - 1);
        (0..SAMPLES).map(|i| i * stride..i * stride + SAMPLE_IDS).collect()
    };
    for w in windows {
        ids.clear();
        store.read_into(w, &mut ids);
        ids.iter().for_each(|id| h.update(&id.to_le_bytes()));
    }
    let whole = if len <= SAMPLE_IDS * SAMPLES { "" } else { "sampled " };
    format!("{len} tokens, {whole}xxh3 {:016x}", h.digest())
}

/// How this rank's `mine` differs from rank 0's `root`, if it does.
fn difference(root: &Holdings, mine: &Holdings, rank: usize, size: usize) -> Option<String> {
    let here = format!("rank {rank} of {size} on host `{}`", mine.host);
    let there = format!("rank 0 on host `{}`", root.host);
    let copy = "every host must hold the same data at the same path: copy rank 0's";
    for (i, theirs) in root.files.iter().enumerate() {
        match mine.files.get(i) {
            Some(m) if m == theirs => {}
            Some(m) if m.file == theirs.file => {
                return Some(format!("{here} holds another `{}` than {there} (here {}; there {}): {copy}", m.file, m.digest, theirs.digest))
            }
            Some(m) => return Some(format!("{here} reads `{}` where {there} reads `{}`: {copy}", m.file, theirs.file)),
            None => return Some(format!("{here} lacks `{}`, which {there} reads: {copy}", theirs.file)),
        }
    }
    mine.files.get(root.files.len()).map(|extra| format!("{here} reads `{}`, which {there} does not: {copy}", extra.file))
}

/// Errors unless every rank opened the same data as rank 0: each rank whose copy differs
/// says which file on which host; the others stop with it (call it right after the data
/// opened, before anything is trained or written).
pub(super) fn check_same_data(group: &Group, cfg: &DataConfig, data: &RunData) -> Result<()> {
    if !group.is_distributed() {
        return Ok(());
    }
    let mine = group.agree(holdings(cfg, data), "fingerprinting the data", Wait::Step)?;
    let sent = if group.is_root() { Some(serde_json::to_vec(&mine).map_err(|e| Error::distributed(format!("rank 0's data fingerprint: {e}")))?) } else { None };
    let bytes = group.broadcast_bytes(sent, "sending rank 0's data fingerprint")?;
    let compared = if group.is_root() {
        Ok(())
    } else {
        match serde_json::from_slice::<Holdings>(&bytes) {
            Err(e) => Err(Error::distributed(format!("rank 0's data fingerprint: {e}"))),
            Ok(root) => match difference(&root, &mine, group.rank(), group.size()) {
                Some(msg) => Err(Error::distributed(msg)),
                None => Ok(()),
            },
        }
    };
    group.agree(compared, "comparing the data with rank 0's", Wait::Step)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holding(host: &str, files: &[(&str, &str)]) -> Holdings {
        Holdings { host: host.into(), files: files.iter().map(|(f, d)| Held { file: f.to_string(), digest: d.to_string() }).collect() }
    }

    #[test]
    fn a_differing_file_is_named_with_both_hosts_and_digests() {
        let root = holding("node1", &[("/c/corpus.json", "10 bytes, xxh3 aa"), ("/c/tokenizer.json", "xxh3 bb"), ("/c/tokens.bin", "5 tokens, xxh3 cc")]);
        let same = holding("node2", &[("/c/corpus.json", "10 bytes, xxh3 aa"), ("/c/tokenizer.json", "xxh3 bb"), ("/c/tokens.bin", "5 tokens, xxh3 cc")]);
        assert_eq!(difference(&root, &same, 1, 2), None);
        let other = holding("node2", &[("/c/corpus.json", "10 bytes, xxh3 aa"), ("/c/tokenizer.json", "xxh3 b0"), ("/c/tokens.bin", "5 tokens, xxh3 cc")]);
        let msg = difference(&root, &other, 1, 2).unwrap();
        assert!(
            msg.starts_with("rank 1 of 2 on host `node2` holds another `/c/tokenizer.json` than rank 0 on host `node1` (here xxh3 b0; there xxh3 bb)"),
            "{msg}"
        );
    }

    #[test]
    fn missing_extra_and_other_files_are_named() {
        let root = holding("a", &[("/d/x.txt", "1"), ("/d/y.txt", "2")]);
        let fewer = holding("b", &[("/d/x.txt", "1")]);
        assert!(difference(&root, &fewer, 3, 4).unwrap().contains("lacks `/d/y.txt`, which rank 0 on host `a` reads"));
        let more = holding("b", &[("/d/x.txt", "1"), ("/d/y.txt", "2"), ("/d/z.txt", "3")]);
        assert!(difference(&root, &more, 1, 2).unwrap().contains("reads `/d/z.txt`, which rank 0 on host `a` does not"));
        let renamed = holding("b", &[("/d/x.txt", "1"), ("/d/w.txt", "2")]);
        assert!(difference(&root, &renamed, 1, 2).unwrap().contains("reads `/d/w.txt` where rank 0 on host `a` reads `/d/y.txt`"));
    }
}
