//! `convlm prepare`: tokenize a corpus once into a folder that training maps.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Args;

use super::output::print;
use super::parse::serde_name;
use convlm::data::{
    claim_corpus_folder, corpus_state, is_empty_folder, prepare, CorpusState, DatasetKind, LineRules, Normalization, PrepareOptions, Source, SourceOptions,
    Tokenizer, TokenizerSpec, UnknownPolicy,
};
use convlm::io::LOCK_FILE;
use convlm::tensor::threads::{init_threads, oversubscription_warning};

#[derive(Args)]
pub struct PrepareArgs {
    /// The text: a file, or a folder of files read recursively
    #[arg(long)]
    data: PathBuf,
    /// The corpus folder to write (tokens.bin, docs.bin, tokenizer.json, corpus.json)
    #[arg(long)]
    out: PathBuf,
    /// char, bpe (trained on the data), or a tokenizer.json file
    #[arg(long, default_value = "char")]
    tokenizer: String,
    /// Vocabulary size of a BPE tokenizer trained here
    #[arg(long, default_value_t = 5000)]
    vocab_size: usize,
    /// How the text becomes examples: lines, stream or grid
    #[arg(long, default_value = "stream", value_parser = serde_name::<DatasetKind>)]
    dataset: DatasetKind,
    /// Normalize to NFKC before tokenizing (a tokenizer made here)
    #[arg(long)]
    nfkc: bool,
    /// Lowercase before tokenizing (a tokenizer made here)
    #[arg(long)]
    lowercase: bool,
    /// Drop punctuation before tokenizing (a tokenizer made here)
    #[arg(long)]
    no_punctuation: bool,
    /// Line data: keep only the first of lines with the same tokens
    #[arg(long)]
    dedupe: bool,
    /// Line data: the longest line allowed, in tokens (a longer one is an error naming it)
    #[arg(long, default_value_t = 1000)]
    max_line_len: usize,
    /// Read FIFOs and devices too, up to --special-file-limit bytes each
    #[arg(long)]
    allow_special_files: bool,
    /// Most bytes read from one FIFO or device
    #[arg(long, default_value_t = 1 << 30)]
    special_file_limit: u64,
    /// Replace the corpus already in --out
    #[arg(long)]
    force: bool,
    /// Worker threads, at most the number of cores [default: CONVLM_THREADS or every core]
    #[arg(long)]
    threads: Option<usize>,
}

pub fn cmd_prepare(a: PrepareArgs, cancel: convlm::CancelToken) -> Result<()> {
    if let Some(warning) = oversubscription_warning(a.threads) {
        eprintln!("warning: {warning}");
    }
    init_threads(a.threads);
    let tokenizer = match a.tokenizer.as_str() {
        "char" => TokenizerSpec::Char,
        "bpe" => TokenizerSpec::Bpe { vocab_size: a.vocab_size },
        file => TokenizerSpec::Given(Tokenizer::load(std::path::Path::new(file))?),
    };
    let opts = PrepareOptions {
        kind: a.dataset,
        tokenizer,
        normalization: Normalization { nfkc: a.nfkc, lowercase: a.lowercase, keep_punctuation: !a.no_punctuation },
        unknown: UnknownPolicy::MapToUnk,
        rules: LineRules { dedupe: a.dedupe, max_line_len: a.max_line_len },
        source: SourceOptions { allow_special_files: a.allow_special_files, special_file_limit: a.special_file_limit, cancel: cancel.clone() },
    };
    // The folder is claimed and locked for the whole prepare: a second prepare into it is
    // refused at once instead of mixing its files with this one's.
    let created = !a.out.exists();
    let lock = claim_corpus_folder(&a.out, a.force)?;
    let result = prepare_into(&a, &opts);
    if result.is_err() && created && is_empty_folder(&a.out) {
        // Nothing was written but the lock: leave no folder behind.
        let _ = std::fs::remove_file(a.out.join(LOCK_FILE));
        let _ = std::fs::remove_dir(&a.out);
    }
    drop(lock);
    match result {
        Err(e) if matches!(e.downcast_ref::<convlm::Error>(), Some(convlm::Error::Cancelled)) && corpus_state(&a.out) == CorpusState::Unfinished => Err(e
            .context(format!(
                "{} holds an unfinished corpus (no corpus.json: nothing reads it as a corpus); run the same prepare again to finish it",
                a.out.display()
            ))),
        other => other,
    }
}

/// Prepares the corpus into the claimed `--out` and says what was made.
fn prepare_into(a: &PrepareArgs, opts: &PrepareOptions) -> Result<()> {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:32} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let meta = prepare(&Source::Path(&a.data), opts, &a.out, |p| {
        bar.set_length(p.total_bytes);
        bar.set_position(p.bytes);
        let per_s = p.tokens as f64 / started.elapsed().as_secs_f64().max(1e-9);
        bar.set_message(match p.phase {
            "encoding" => format!("encoding: {:.1}M tokens/s", per_s / 1e6),
            phase => phase.to_string(),
        });
    });
    bar.finish_and_clear();
    let meta = meta?;
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let bytes: u64 = meta.source.files.iter().map(|f| f.size).sum();
    let docs = if meta.documents > 0 { format!(" in {} lines", meta.documents) } else { String::new() };
    print(format!(
        "prepared {} tokens{docs} (u{} ids, vocabulary {}) from {} file(s), {:.1} MB in {secs:.1} s ({:.1} MB/s, {:.2}M tokens/s) into {}\nnext: convlm train --data {}   (a run trains on it as {} data)\n",
        meta.tokens,
        meta.dtype.bytes() * 8,
        meta.vocab_size,
        meta.source.files.len(),
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / secs,
        meta.tokens as f64 / 1e6 / secs,
        a.out.display(),
        a.out.display(),
        meta.kind.name()
    ))
}
