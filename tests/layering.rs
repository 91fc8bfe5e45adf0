//! The crate's layers only look down, and no two files import each other
//! (docs/architecture.md, "Layers"). Reads the sources: every `crate::…` path outside comments
//! must name a module of a lower layer, and `use` statements must not form a two-file circle
//! (a module's file and its own submodules' files excepted: they are one namespace).

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

/// Names the crate root re-exports, and the module each comes from.
const ROOT_REEXPORTS: &[(&str, &str)] = &[("Error", "error"), ("Result", "error"), ("Tensor", "tensor")];

fn layer(module: &str) -> Option<u32> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|&(_, l)| l)
}

fn src() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/src"))
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

/// The source without comments (doc links may point anywhere).
fn code(text: &str) -> String {
    text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// The module path of a file: `src/data/bpe.rs` → [data, bpe]; `src/data/mod.rs` → [data].
fn module_of(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src()).unwrap();
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string()).collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// Expands a `use` tree (`a::{b, c::{d, e}}`) into full paths.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else { return vec![tree.split(" as ").next().unwrap().trim().to_string()] };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap()];
    let (mut items, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[start..]);
    items.into_iter().filter(|s| !s.trim().is_empty()).flat_map(|s| expand(s).into_iter().map(move |p| format!("{prefix}{p}"))).collect()
}

/// The `use` statements of a file as (is a `pub use` re-export, full path).
fn uses(code: &str) -> Vec<(bool, String)> {
    let mut out = Vec::new();
    for stmt in code.split(';') {
        let s = stmt.trim();
        let Some(at) = s.find("use ") else { continue };
        let (head, tree) = s.split_at(at);
        if !(head.trim().is_empty() || head.trim().starts_with("pub") || head.trim().ends_with('}') || head.contains('\n')) {
            continue;
        }
        let reexport = head.trim_end().ends_with("pub") || head.contains("pub(");
        out.extend(expand(&tree[4..]).into_iter().map(|p| (reexport, p)));
    }
    out
}

#[test]
fn every_crate_path_names_a_lower_layer() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut bad = Vec::new();
    for f in &files {
        let module = module_of(f);
        let Some(top) = module.first() else { continue };
        let Some(own) = layer(top) else {
            // The binary (main.rs and its subcommands) sits above every layer.
            assert!(["main", "cli"].contains(&top.as_str()), "{} is in no layer: add it to LAYERS", f.display());
            continue;
        };
        let text = code(&std::fs::read_to_string(f).unwrap());
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + 7..];
            // `crate::{Error, Result}` names several; `crate::io::x` one.
            let names: Vec<String> = match rest.strip_prefix('{') {
                Some(group) => expand(&format!("{{{}}}", &group[..group.find('}').unwrap_or(group.len())])),
                None => vec![rest.to_string()],
            };
            for name in names {
                let name: String = name.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                let target = ROOT_REEXPORTS.iter().find(|(n, _)| *n == name).map_or(name.as_str(), |(_, m)| m);
                if target == top {
                    continue;
                }
                match layer(target) {
                    Some(l) if l < own => {}
                    _ => bad.push(format!("{}: crate::{name} (layer of {top}: {own})", f.display())),
                }
            }
        }
    }
    assert!(bad.is_empty(), "imports that do not look down:\n{}", bad.join("\n"));
}

#[test]
fn no_two_files_import_each_other() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let modules: BTreeMap<Vec<String>, PathBuf> = files.iter().map(|f| (module_of(f), f.clone())).collect();
    // The file a path lands in: the longest prefix of it that is a module with a file.
    let file_of = |path: &[String]| (1..=path.len()).rev().find_map(|n| modules.get(&path[..n]).cloned());
    let mut edges: BTreeSet<(PathBuf, PathBuf)> = BTreeSet::new();
    for f in &files {
        let here = module_of(f);
        let is_module_file = f.ends_with("mod.rs") || f.ends_with("lib.rs");
        for (reexport, path) in uses(&code(&std::fs::read_to_string(f).unwrap())) {
            let parts: Vec<String> = path.split("::").map(|s| s.trim().to_string()).collect();
            let mut base = match parts.first().map(String::as_str) {
                Some("crate") => Vec::new(),
                // `super` is the parent of this file's module (a leaf file's folder module).
                Some("super") => here[..here.len().saturating_sub(1)].to_vec(),
                Some("self") => here.clone(),
                _ => continue, // another crate
            };
            let mut rest = &parts[1..];
            while rest.first().is_some_and(|p| p == "super") {
                base.pop();
                rest = &rest[1..];
            }
            base.extend(rest.iter().cloned());
            let Some(target) = file_of(&base) else { continue };
            // A module file re-exporting its own children is how Rust modules publish them.
            let child_of_here = module_of(&target).len() == here.len() + 1 && module_of(&target).starts_with(&here);
            if &target == f || (is_module_file && reexport && child_of_here) {
                continue;
            }
            edges.insert((f.clone(), target));
        }
    }
    // A module and its own submodules share one namespace (the parent declares its children,
    // they use its types); a circle is two files where neither contains the other.
    let nested = |a: &Path, b: &Path| {
        let (ma, mb) = (module_of(a), module_of(b));
        ma.starts_with(&mb) || mb.starts_with(&ma)
    };
    let circles: Vec<String> = edges
        .iter()
        .filter(|(a, b)| a < b && !nested(a, b) && edges.contains(&(b.clone(), a.clone())))
        .map(|(a, b)| format!("{} <-> {}", a.display(), b.display()))
        .collect();
    assert!(circles.is_empty(), "files that import each other:\n{}", circles.join("\n"));
}

#[test]
fn the_checker_reads_grouped_uses() {
    assert_eq!(expand("super::{normalize::Normalization, SpecialTokens}"), ["super::normalize::Normalization", "super::SpecialTokens"]);
    assert_eq!(
        uses("pub use bpe::{A, B as C};\nuse crate::x::y;"),
        [(true, "bpe::A".to_string()), (true, "bpe::B".to_string()), (false, "crate::x::y".to_string())]
    );
}
