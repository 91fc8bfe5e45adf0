//! The crate's layers only look down, and no two files import each other
//! (docs/architecture.md, "Layers"). Reads the sources: every path outside comments and
//! strings that starts at `crate`, `super` or `self` (in `use` statements and inline alike)
//! must name a module of a lower layer or of its own, a file inside a room of a layer
//! (`data/tokenize`, `data/corpus`) may name only its own room and the rooms below it, and
//! no two files may name each other (a module's file and its own submodules' files excepted:
//! they are one namespace).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules by layer: a module may use only modules of a strictly lower layer.
const LAYERS: &[(&str, u32)] = &[
    ("error", 0),
    ("tensor", 1),
    ("io", 2),
    ("nn", 3),
    ("models", 4),
    ("data", 5),
    ("optim", 6),
    ("dist", 7),
    ("generate", 8),
    ("report", 8),
    ("run", 9),
    ("bench", 10),
];

/// Rooms inside a layer's module, by rank: a file in a room may use its own room and rooms
/// of a lower rank, never a higher one, and never the module's own file (`data/mod.rs` only
/// publishes the rooms; a path through it would hide which room a name comes from).
const ROOMS: &[(&str, &[(&str, u32)])] = &[("data", &[("tokenize", 0), ("corpus", 1)])];

/// Names the crate root re-exports, and the module each comes from.
const ROOT_REEXPORTS: &[(&str, &str)] = &[("Error", "error"), ("Result", "error"), ("Tensor", "tensor")];

fn layer(module: &str) -> Option<u32> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|&(_, l)| l)
}

/// One source file: where it is, its module path, its code.
struct Source {
    path: PathBuf,
    /// `src/data/corpus/store.rs` → [data, corpus, store]; `src/data/mod.rs` → [data].
    module: Vec<String>,
    code: String,
}

impl Source {
    fn new(path: &str, code: &str) -> Self {
        let rel = Path::new(path).strip_prefix("src").unwrap_or(Path::new(path));
        let mut module: Vec<String> = rel.iter().map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string()).collect();
        if module.last().is_some_and(|p| p == "mod" || p == "lib") {
            module.pop();
        }
        Source { path: path.into(), module, code: code.to_string() }
    }

    /// Whether this is a module's own file (`mod.rs`, `lib.rs`) rather than a leaf.
    fn is_module_file(&self) -> bool {
        self.path.ends_with("mod.rs") || self.path.ends_with("lib.rs")
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Every file under src/.
fn crate_sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.iter().map(|f| Source::new(&f.strip_prefix(root).unwrap().to_string_lossy(), &std::fs::read_to_string(f).unwrap())).collect()
}

/// The code as tokens: identifiers and keywords, `::`, `{`, `}`, `,`, `;` (everything else,
/// comments, strings and character literals dropped).
fn tokens(code: &str) -> Vec<&str> {
    let (b, mut out, mut i) = (code.as_bytes(), Vec::new(), 0);
    // `i` at a string's opening quote: the index after its closing one (and `hashes` `#`s).
    let skip_string = |mut i: usize, raw: bool, hashes: usize| {
        i += 1;
        while i < b.len() {
            if !raw && b[i] == b'\\' {
                i += 2;
            } else if b[i] == b'"' && b[i + 1..].iter().take(hashes).filter(|&&c| c == b'#').count() == hashes {
                return i + 1 + hashes;
            } else {
                i += 1;
            }
        }
        i
    };
    while i < b.len() {
        let c = b[i];
        if b[i..].starts_with(b"//") {
            i += b[i..].iter().position(|&c| c == b'\n').unwrap_or(b.len() - i);
        } else if b[i..].starts_with(b"/*") {
            i += b[i..].windows(2).position(|w| w == b"*/").map_or(b.len() - i, |e| e + 2);
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            let word = &code[start..i];
            let hashes = b[i..].iter().take_while(|&&c| c == b'#').count();
            if matches!(word, "r" | "br") && b.get(i + hashes) == Some(&b'"') {
                i = skip_string(i + hashes, true, hashes);
            } else if word != "b" || !matches!(b.get(i), Some(b'"' | b'\'')) {
                out.push(word);
            }
        } else if c == b'"' {
            i = skip_string(i, false, 0);
        } else if c == b'\'' {
            // A character literal ('x', '\n', '\u{1F600}') or a lifetime ('a).
            let rest = &code[i + 1..];
            let first = rest.chars().next().map_or(0, char::len_utf8);
            if let Some(escape) = rest.strip_prefix('\\') {
                i += 1 + escape.find('\'').map_or(rest.len(), |e| e + 2);
                if escape.starts_with('\'') {
                    i += 1;
                }
            } else if rest[first..].starts_with('\'') {
                i += 2 + first;
            } else {
                i += 1;
            }
        } else if b[i..].starts_with(b"::") {
            out.push("::");
            i += 2;
        } else {
            if matches!(c, b'{' | b'}' | b',' | b';') {
                out.push(&code[i..i + 1]);
            }
            i += 1;
        }
    }
    out
}

/// One path of a file, made absolute.
#[derive(Debug, PartialEq)]
struct Named {
    /// Module path from the crate root (`crate::data::Tokenizer` → [data, Tokenizer]).
    path: Vec<String>,
    /// Whether it is in a `pub use` (a re-export).
    reexport: bool,
}

/// Every path of `source` that starts at `crate`, `super` or `self`, made absolute: `use`
/// groups expanded, `super` counted from the inline module (`mod tests { … }`) it is in.
fn named_paths(source: &Source) -> Vec<Named> {
    let t = tokens(&source.code);
    let (mut out, mut depth, mut inline): (Vec<Named>, usize, Vec<(String, usize)>) = (Vec::new(), 0, Vec::new());
    let mut reexport = false;
    let mut i = 0;
    while i < t.len() {
        match t[i] {
            "{" => depth += 1,
            "}" => {
                depth = depth.saturating_sub(1);
                inline.retain(|&(_, d)| d <= depth);
            }
            ";" => reexport = false,
            "use" => reexport = t[..i].iter().rev().take(2).any(|&w| w == "pub"),
            "mod" if t.get(i + 2) == Some(&"{") => inline.push((t[i + 1].to_string(), depth + 1)),
            "crate" | "super" | "self" if t.get(i + 1) == Some(&"::") && (i == 0 || t[i - 1] != "::") => {
                let here: Vec<String> = source.module.iter().cloned().chain(inline.iter().map(|(m, _)| m.clone())).collect();
                let mut end = i;
                for tail in path_tree(&t, &mut end) {
                    let mut path = match tail[0].as_str() {
                        "crate" => Vec::new(),
                        // `super` is the parent of the module this code is in.
                        "super" => here[..here.len().saturating_sub(1)].to_vec(),
                        _ => here.clone(),
                    };
                    let mut rest = &tail[1..];
                    while rest.first().is_some_and(|p| p == "super") {
                        path.pop();
                        rest = &rest[1..];
                    }
                    path.extend(rest.iter().filter(|p| *p != "self").cloned());
                    out.push(Named { path, reexport });
                }
                i = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// The paths of the path or `use` tree starting at `t[*i]`; leaves `*i` after it.
fn path_tree(t: &[&str], i: &mut usize) -> Vec<Vec<String>> {
    let mut prefix = Vec::new();
    while *i < t.len() {
        let word = t[*i];
        if word == "{" {
            // A group: each item is a tree of its own under the prefix.
            *i += 1;
            let mut out = Vec::new();
            while *i < t.len() && t[*i] != "}" {
                if t[*i] == "," {
                    *i += 1;
                    continue;
                }
                let before = *i;
                out.extend(path_tree(t, i).into_iter().map(|tail| prefix.iter().cloned().chain(tail).collect()));
                // Skip what a path does not cover (`as name`, `*`).
                while *i < t.len() && !matches!(t[*i], "," | "}") {
                    *i += 1;
                }
                *i = (*i).max(before + 1);
            }
            *i += 1;
            return out;
        }
        if matches!(word, "::" | "}" | "," | ";") {
            break;
        }
        prefix.push(word.to_string());
        *i += 1;
        if t.get(*i) != Some(&"::") {
            break;
        }
        *i += 1;
    }
    vec![prefix]
}

/// Paths into a module of the same or a higher layer.
fn layer_violations(sources: &[Source]) -> Vec<String> {
    let mut bad = Vec::new();
    for s in sources {
        let Some(top) = s.module.first() else { continue };
        let Some(own) = layer(top) else {
            // The binary (main.rs, its allocator and its subcommands) sits above every layer.
            assert!(["main", "cli"].contains(&top.as_str()), "{} is in no layer: add it to LAYERS", s.path.display());
            continue;
        };
        for Named { path, .. } in named_paths(s) {
            let Some(name) = path.first() else { continue };
            let target = ROOT_REEXPORTS.iter().find(|(n, _)| n == name).map_or(name.as_str(), |(_, m)| m);
            match layer(target) {
                _ if target == top => {}
                Some(l) if l < own => {}
                _ => bad.push(format!("{}: crate::{} (layer of {top}: {own})", s.path.display(), path.join("::"))),
            }
        }
    }
    bad
}

/// Paths from a room of a layer into a higher room of it, or through its module file.
fn room_violations(sources: &[Source]) -> Vec<String> {
    let mut bad = Vec::new();
    for s in sources {
        let [top, room, ..] = s.module.as_slice() else { continue };
        let Some((_, rooms)) = ROOMS.iter().find(|(m, _)| m == top) else { continue };
        let rank = |r: &str| rooms.iter().find(|(n, _)| *n == r).map(|&(_, k)| k);
        let Some(own) = rank(room) else { continue };
        for Named { path, .. } in named_paths(s) {
            if path.first() != Some(top) {
                continue;
            }
            let shown = format!("{}: crate::{}", s.path.display(), path.join("::"));
            match path.get(1).and_then(|r| rank(r)) {
                Some(k) if k <= own => {}
                Some(_) => bad.push(format!("{shown} (room {room} may not use a room above it)")),
                None => bad.push(format!("{shown} (a room names the room a name comes from, not {top}'s module file)")),
            }
        }
    }
    bad
}

/// Pairs of files that name each other.
fn circles(sources: &[Source]) -> Vec<String> {
    let modules: BTreeMap<&[String], &Source> = sources.iter().map(|s| (s.module.as_slice(), s)).collect();
    // The file a path lands in: the longest prefix of it that is a module with a file.
    let file_of = |path: &[String]| (1..=path.len()).rev().find_map(|n| modules.get(&path[..n]).copied());
    let mut edges: BTreeSet<(&Path, &Path)> = BTreeSet::new();
    for s in sources {
        for Named { path, reexport } in named_paths(s) {
            let Some(target) = file_of(&path) else { continue };
            // A module file re-exporting its own children is how Rust modules publish them.
            let child = target.module.len() == s.module.len() + 1 && target.module.starts_with(&s.module);
            if target.path != s.path && !(s.is_module_file() && reexport && child) {
                edges.insert((&s.path, &target.path));
            }
        }
    }
    // A module and its own submodules share one namespace (the parent declares its children,
    // they use its types); a circle is two files where neither contains the other.
    let module = |p: &Path| &sources.iter().find(|s| s.path == p).unwrap().module;
    let nested = |a: &Path, b: &Path| module(a).starts_with(module(b)) || module(b).starts_with(module(a));
    edges.iter().filter(|&&(a, b)| a < b && !nested(a, b) && edges.contains(&(b, a))).map(|(a, b)| format!("{} <-> {}", a.display(), b.display())).collect()
}

#[test]
fn every_crate_path_names_a_lower_layer() {
    let bad = layer_violations(&crate_sources());
    assert!(bad.is_empty(), "imports that do not look down:\n{}", bad.join("\n"));
}

#[test]
fn rooms_only_look_down() {
    let bad = room_violations(&crate_sources());
    assert!(bad.is_empty(), "imports between rooms that do not look down:\n{}", bad.join("\n"));
}

#[test]
fn no_two_files_import_each_other() {
    let bad = circles(&crate_sources());
    assert!(bad.is_empty(), "files that import each other:\n{}", bad.join("\n"));
}

#[test]
fn the_checker_reads_paths_in_use_trees_inline_and_in_test_modules() {
    let s = Source::new(
        "src/data/corpus/x.rs",
        "pub use super::{documents::{self, TokenSink}, store::TokenStore as S};\n\
         // crate::nothing::here\n\
         fn f() { let s = \"crate::nor::here {\"; let c = '{'; super::reader::read(s, c); }\n\
         fn g<'a>(x: &'a str) -> &'a str { x }\n\
         #[cfg(test)]\nmod tests { use super::super::Normalization; use crate::Result; }\n\
         fn h() { self::g(\"\") }",
    );
    let paths: Vec<(String, bool)> = named_paths(&s).into_iter().map(|n| (n.path.join("::"), n.reexport)).collect();
    let want = [
        ("data::corpus::documents", true),
        ("data::corpus::documents::TokenSink", true),
        ("data::corpus::store::TokenStore", true),
        ("data::corpus::reader::read", false),
        ("data::corpus::Normalization", false),
        ("Result", false),
        ("data::corpus::x::g", false),
    ];
    assert_eq!(paths, want.map(|(p, r)| (p.to_string(), r)));
}

#[test]
fn the_checker_catches_upward_imports_and_circles() {
    let sources = [
        Source::new("src/data/mod.rs", "mod corpus; mod tokenize; pub use corpus::*;"),
        Source::new("src/data/tokenize/encode.rs", "use crate::data::corpus::DatasetKind; fn f() { super::super::corpus::store::ids_hash(&[]); }"),
        Source::new("src/data/tokenize/bpe.rs", "use crate::data::Tokenizer; use super::encode::Encoder;"),
        Source::new("src/data/corpus/store.rs", "use crate::data::tokenize::Encoder; use crate::run::Trainer;"),
        Source::new("src/data/corpus/reader.rs", "use super::source::SourceFile;"),
        Source::new("src/data/corpus/source.rs", "fn f() { super::reader::read_blocks(); }"),
    ];
    let rooms = room_violations(&sources);
    assert_eq!(rooms.len(), 3, "{rooms:#?}");
    assert!(rooms[0].contains("encode.rs: crate::data::corpus::DatasetKind (room tokenize may not use a room above it)"), "{rooms:#?}");
    assert!(rooms[1].contains("encode.rs: crate::data::corpus::store::ids_hash (room tokenize"), "{rooms:#?}");
    assert!(rooms[2].contains("bpe.rs: crate::data::Tokenizer (a room names the room"), "{rooms:#?}");
    let layers = layer_violations(&sources);
    assert_eq!(layers, ["src/data/corpus/store.rs: crate::run::Trainer (layer of data: 5)"]);
    assert_eq!(circles(&sources), ["src/data/corpus/reader.rs <-> src/data/corpus/source.rs"]);
}
