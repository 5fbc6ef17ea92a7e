//! The workspace's layering rule, checked on every test run: in every crate under
//! `crates/` (walked, so crates added later are covered), no import cycle among the
//! top-level modules (`src/x.rs` or `src/x/` is one module), and none among the sibling
//! files of one module folder. A parent re-exporting its children does not count;
//! `#[cfg(test)]` code is left out. The same rules as the project's first checker,
//! a Python script the project does not depend on at run time.
//!
//! Imports are read as text (`crate::a::B`, `super::b`, `use crate::{a, b::C}`), not
//! through rustc: a full name resolution is not needed to see which file names which.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use regex::Regex;

/// A module path inside a crate: `[]` is the crate root, `["cache", "core"]` is
/// `src/cache/core.rs`.
type ModPath = Vec<String>;

/// Who imports whom, with the names that tie them (for the failure message).
type Edges = BTreeMap<ModPath, BTreeMap<ModPath, BTreeSet<String>>>;

/// The module path of a source file under `src`.
fn mod_path(src: &Path, file: &Path) -> ModPath {
    let rel = file.strip_prefix(src).expect("file under src");
    let mut parts: ModPath = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without its tests (everything from the first `#[cfg(test)]`).
fn without_tests(text: &str) -> &str {
    text.find("#[cfg(test)]").map_or(text, |i| &text[..i])
}

/// The import graph of the crate whose sources are in `src`.
fn crate_graph(src: &Path) -> (BTreeSet<ModPath>, Edges) {
    let single = Regex::new(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)").unwrap();
    let group =
        Regex::new(r"\buse\s+(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^;]*)\}").unwrap();
    let sep = Regex::new(r"[,\s]+").unwrap();
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeMap<ModPath, PathBuf> = files
        .iter()
        .map(|f| (mod_path(src, f), f.clone()))
        .collect();
    let known: BTreeSet<ModPath> = modules.keys().cloned().collect();
    let mut edges = Edges::new();
    let split = |s: &str| -> Vec<String> {
        s.split("::")
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect()
    };
    for (cur, file) in &modules {
        let text = std::fs::read_to_string(file).unwrap();
        let text = without_tests(&text);
        let mut refs: Vec<(bool, ModPath)> = Vec::new();
        for c in group.captures_iter(text) {
            let is_crate = &c[1] == "crate";
            let head = split(&c[2]);
            for item in sep.split(&c[3]) {
                let item = item
                    .split("::")
                    .next()
                    .unwrap_or("")
                    .trim_matches(|ch| ch == '{' || ch == '}' || ch == ' ');
                if item == "self" {
                    refs.push((is_crate, head.clone()));
                } else if item.starts_with(|ch: char| ch.is_ascii_alphabetic() || ch == '_') {
                    let mut p = head.clone();
                    p.push(item.to_string());
                    refs.push((is_crate, p));
                }
            }
        }
        for c in single.captures_iter(text) {
            refs.push((&c[1] == "crate", split(&c[2])));
        }
        for (is_crate, parts) in refs {
            // `super` of src/m/x.rs and of src/m/mod.rs's children alike is the
            // module path minus its last element.
            let mut full: ModPath = if is_crate {
                Vec::new()
            } else {
                cur[..cur.len().saturating_sub(1)].to_vec()
            };
            let last = parts.last().cloned().unwrap_or_default();
            full.extend(parts);
            let target = (1..=full.len())
                .rev()
                .map(|n| full[..n].to_vec())
                .find(|p| known.contains(p));
            if let Some(t) = target
                && &t != cur
            {
                edges
                    .entry(cur.clone())
                    .or_default()
                    .entry(t)
                    .or_default()
                    .insert(last);
            }
        }
    }
    (known, edges)
}

/// The strongly connected components with more than one node.
fn cycles(nodes: &BTreeSet<ModPath>, edges: &Edges) -> Vec<Vec<ModPath>> {
    let reach = |from: &ModPath| -> BTreeSet<ModPath> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(n) = stack.pop() {
            for t in edges.get(&n).into_iter().flat_map(|m| m.keys()) {
                if seen.insert(t.clone()) {
                    stack.push(t.clone());
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&ModPath, BTreeSet<ModPath>> =
        nodes.iter().map(|n| (n, reach(n))).collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for n in nodes {
        if done.contains(n) {
            continue;
        }
        let comp: Vec<ModPath> = nodes
            .iter()
            .filter(|m| *m == n || (reachable[n].contains(*m) && reachable[*m].contains(n)))
            .cloned()
            .collect();
        done.extend(comp.iter().cloned());
        if comp.len() > 1 {
            out.push(comp);
        }
    }
    out
}

fn name(m: &[String]) -> String {
    if m.is_empty() {
        "crate".into()
    } else {
        m.join("::")
    }
}

/// Every cycle in the crate at `src`, described with the imports that tie it.
fn layer_violations(crate_name: &str, src: &Path) -> Vec<String> {
    let (modules, edges) = crate_graph(src);
    let mut found = Vec::new();
    // Top level: each module collapses to its first path element.
    let mut top = Edges::new();
    let mut sib = Edges::new();
    for (a, targets) in &edges {
        for (b, names) in targets {
            if !a.is_empty() && !b.is_empty() && a[0] != b[0] {
                let entry = top
                    .entry(a[..1].to_vec())
                    .or_default()
                    .entry(b[..1].to_vec())
                    .or_default();
                entry.extend(
                    names
                        .iter()
                        .map(|n| format!("{} -> {}::{n}", name(a), name(b))),
                );
            }
            if a.len() > 1 && a.len() == b.len() && a[..a.len() - 1] == b[..b.len() - 1] {
                sib.entry(a.clone())
                    .or_default()
                    .entry(b.clone())
                    .or_default()
                    .extend(names.iter().cloned());
            }
        }
    }
    let top_nodes: BTreeSet<ModPath> = modules
        .iter()
        .filter(|m| !m.is_empty())
        .map(|m| m[..1].to_vec())
        .collect();
    for comp in cycles(&top_nodes, &top) {
        let mut msg = format!(
            "{crate_name}: cycle among top-level modules: {}",
            comp.iter().map(|c| name(c)).collect::<Vec<_>>().join(", ")
        );
        for a in &comp {
            for b in &comp {
                for e in top.get(a).and_then(|t| t.get(b)).into_iter().flatten() {
                    msg.push_str(&format!("\n    {e}"));
                }
            }
        }
        found.push(msg);
    }
    let sib_nodes: BTreeSet<ModPath> = modules.iter().filter(|m| m.len() > 1).cloned().collect();
    for comp in cycles(&sib_nodes, &sib) {
        let mut msg = format!(
            "{crate_name}: cycle among files of {}/: {}",
            name(&comp[0][..comp[0].len() - 1]),
            comp.iter().map(|c| name(c)).collect::<Vec<_>>().join(", ")
        );
        for a in &comp {
            for b in &comp {
                if let Some(names) = sib.get(a).and_then(|t| t.get(b)) {
                    let names: Vec<_> = names.iter().cloned().collect();
                    msg.push_str(&format!(
                        "\n    {} -> {}: {}",
                        name(a),
                        name(b),
                        names.join(", ")
                    ));
                }
            }
        }
        found.push(msg);
    }
    found
}

#[test]
fn no_import_cycles_in_any_crate() {
    let crates_dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crates/ above this crate");
    let mut checked = Vec::new();
    let mut found = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(crates_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    for dir in dirs {
        let src = dir.join("src");
        if !src.is_dir() {
            continue;
        }
        let crate_name = dir.file_name().unwrap().to_string_lossy().into_owned();
        found.extend(layer_violations(&crate_name, &src));
        checked.push(crate_name);
    }
    assert!(
        checked.iter().any(|c| c == "httpsd"),
        "the walk of {} found no httpsd: {checked:?}",
        crates_dir.display()
    );
    assert!(
        found.is_empty(),
        "import cycles (a module may only import modules below it; see docs/architecture.md):\n{}",
        found.join("\n")
    );
}

/// The checker itself finds each kind of cycle, so a green run means something.
#[test]
fn the_checker_sees_cycles() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let write = |rel: &str, text: &str| {
        let p = src.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write("lib.rs", "pub mod a;\npub mod b;\npub mod c;\npub mod d;\n");
    write("a.rs", "use crate::b::Thing;\n");
    write("b.rs", "pub fn f() { crate::a::g() }\n");
    write(
        "c.rs",
        "use crate::{a, d::X};\n#[cfg(test)]\nmod t { use crate::c::Y; }\n",
    );
    write("d/mod.rs", "pub mod x;\npub mod y;\npub use x::X;\n");
    write("d/x.rs", "use super::y::Y;\n");
    write("d/y.rs", "use super::{x::X, super::c};\n");
    let found = layer_violations("demo", &src);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(
        found[0].starts_with("demo: cycle among top-level modules: a, b"),
        "{}",
        found[0]
    );
    assert!(found[0].contains("a -> b::Thing"), "{}", found[0]);
    assert!(
        found[1].starts_with("demo: cycle among files of d/: d::x, d::y"),
        "{}",
        found[1]
    );
    // Test code and a parent's re-exports are not cycles: remove the real ones.
    write("b.rs", "pub fn f() {}\n");
    write("d/y.rs", "pub struct Y;\n");
    assert_eq!(layer_violations("demo", &src), Vec::<String>::new());
}
