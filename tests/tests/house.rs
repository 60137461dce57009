//! The house's rules (DESIGN.md, Layout), read off the code:
//! - no module circles: in every crate of the workspace, a file's `crate::…` and
//!   `super::…` paths are its arrows to other files of that crate; no file may reach
//!   itself through them;
//! - no file past 700 lines and no function past 100 (a sign that something wants its
//!   own place).
//!
//! Test modules (`#[cfg(test)]` and `tests.rs`) are left out: a test may use what it
//! tests, and tests may be long. The crates' dependency rules are checked on cargo's own
//! graph by `scripts/rules`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).to_path_buf()
}

/// Every crate's `src` folder.
fn crate_sources() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for top in ["shared", "functions"] {
        for e in std::fs::read_dir(root().join(top)).unwrap().flatten() {
            out.push(e.path().join("src"));
        }
    }
    for one in ["worker", "cli", "devstack", "tests"] {
        out.push(root().join(one).join("src"));
    }
    out.retain(|p| p.is_dir());
    out
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n != "bin") {
                rs_files(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs") && p.file_name().is_some_and(|n| n != "tests.rs") {
            out.push(p);
        }
    }
}

/// The module path of a file (`flows::remote` for `src/flows/remote.rs`).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|c| c.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    parts
}

/// The code of a file without its test modules and comments.
fn code_without_tests(text: &str) -> String {
    let code = match text.find("#[cfg(test)]\nmod tests {") {
        Some(at) => &text[..at],
        None => text,
    };
    code.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths after `crate::` / `super::` in the code (each as its segments).
fn paths_in(code: &str, anchor: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for part in code.split(anchor).skip(1) {
        let mut segs = Vec::new();
        let mut rest = part;
        loop {
            let seg: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if seg.is_empty() {
                break;
            }
            rest = &rest[seg.len()..];
            segs.push(seg);
            match rest.strip_prefix("::") {
                Some(r) => rest = r,
                None => break,
            }
        }
        out.push(segs);
    }
    out
}

/// The arrows between one crate's files.
fn arrows(src: &Path) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let mut files = Vec::new();
    rs_files(src, &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(src, f)).collect();
    // the longest module path that is a file and a prefix of `path`
    let resolve = |path: &[String]| -> Option<Vec<String>> {
        (1..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|m| modules.contains(m))
    };
    let mut graph = BTreeMap::new();
    for f in &files {
        let me = module_of(src, f);
        let code = code_without_tests(&std::fs::read_to_string(f).unwrap());
        let mut to = BTreeSet::new();
        for p in paths_in(&code, "crate::") {
            to.extend(resolve(&p));
        }
        let parent: Vec<String> = me[..me.len().saturating_sub(1)].to_vec();
        let is_folder_module = f.file_name().is_some_and(|n| n == "mod.rs");
        let base = if is_folder_module {
            me[..me.len().saturating_sub(1)].to_vec()
        } else {
            parent
        };
        for p in paths_in(&code, "super::") {
            let full: Vec<String> = base.iter().cloned().chain(p).collect();
            to.extend(resolve(&full).or_else(|| Some(base.clone())));
        }
        to.remove(&me);
        to.remove(&Vec::new()); // the crate root only declares modules
        graph.insert(me, to);
    }
    graph
}

/// A circle through `start`, if there is one.
fn circle_from(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>, start: &Vec<String>) -> Option<Vec<Vec<String>>> {
    let mut stack = vec![(start.clone(), vec![start.clone()])];
    let mut seen = BTreeSet::new();
    while let Some((at, path)) = stack.pop() {
        for next in graph.get(&at).into_iter().flatten() {
            if next == start {
                return Some(path.clone());
            }
            if seen.insert(next.clone()) {
                let mut p = path.clone();
                p.push(next.clone());
                stack.push((next.clone(), p));
            }
        }
    }
    None
}

#[test]
fn no_crate_has_a_module_circle() {
    let mut circles = Vec::new();
    let mut files = 0;
    for src in crate_sources() {
        let graph = arrows(&src);
        files += graph.len();
        for m in graph.keys() {
            if let Some(c) = circle_from(&graph, m) {
                let names: Vec<String> = c.iter().map(|m| m.join("::")).collect();
                circles.push(format!("{}: {}", src.display(), names.join(" -> ")));
                break;
            }
        }
    }
    assert!(files > 60, "read the crates' files ({files})");
    assert!(circles.is_empty(), "module circles:\n{}", circles.join("\n"));
}

#[test]
fn the_circle_finder_finds_a_circle() {
    let g: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = [
        (vec!["a".to_string()], BTreeSet::from([vec!["b".to_string()]])),
        (vec!["b".to_string()], BTreeSet::from([vec!["a".to_string()]])),
    ]
    .into_iter()
    .collect();
    assert!(circle_from(&g, &vec!["a".to_string()]).is_some());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("lib.rs"), "mod job;\nmod routing;\n").unwrap();
    std::fs::write(dir.path().join("job.rs"), "use crate::routing::Decision;\n").unwrap();
    std::fs::write(dir.path().join("routing.rs"), "fn f(j: &crate::job::Job) {}\n").unwrap();
    let graph = arrows(dir.path());
    assert!(circle_from(&graph, &vec!["job".to_string()]).is_some(), "{graph:?}");
}

/// Every Rust file of the crates, binaries included, but no test file.
fn product_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                if name != "tests" {
                    walk(&p, out);
                }
            } else if name.ends_with(".rs") && name != "tests.rs" && !name.ends_with("_tests.rs") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    for src in crate_sources() {
        walk(&src, &mut out);
    }
    out
}

fn is_test_item(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        let path = a.path();
        path.is_ident("test")
            || path.segments.last().is_some_and(|s| s.ident == "test")
            || (path.is_ident("cfg")
                && a.meta
                    .require_list()
                    .is_ok_and(|l| l.tokens.to_string().contains("test")))
    })
}

/// Functions longer than `max` lines, as (lines, name).
#[derive(Default)]
struct LongFunctions {
    max: usize,
    found: Vec<(usize, String)>,
}

impl LongFunctions {
    fn measure(&mut self, name: &syn::Ident, span: proc_macro2::Span) {
        let lines = span.end().line - span.start().line + 1;
        if lines > self.max {
            self.found.push((lines, format!("{name} (line {})", span.start().line)));
        }
    }
}

impl<'ast> syn::visit::Visit<'ast> for LongFunctions {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if !is_test_item(&m.attrs) {
            syn::visit::visit_item_mod(self, m);
        }
    }
    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        if !is_test_item(&f.attrs) {
            self.measure(&f.sig.ident, syn::spanned::Spanned::span(f));
            syn::visit::visit_item_fn(self, f);
        }
    }
    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        if !is_test_item(&f.attrs) {
            self.measure(&f.sig.ident, syn::spanned::Spanned::span(f));
            syn::visit::visit_impl_item_fn(self, f);
        }
    }
}

#[test]
fn no_file_over_700_lines_and_no_function_over_100_outside_tests() {
    let files = product_files();
    assert!(files.len() > 80, "read the crates' files ({})", files.len());
    let mut over = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let code = match text.find("#[cfg(test)]\nmod tests {") {
            Some(at) => &text[..at],
            None => &text[..],
        };
        let lines = code.lines().count();
        if lines > 700 {
            over.push(format!("{}: {lines} lines", f.display()));
        }
        let parsed = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let mut long = LongFunctions {
            max: 100,
            ..Default::default()
        };
        syn::visit::Visit::visit_file(&mut long, &parsed);
        for (n, name) in long.found {
            over.push(format!("{}: fn {name} is {n} lines", f.display()));
        }
    }
    assert!(over.is_empty(), "too big:\n{}", over.join("\n"));
}

#[test]
fn the_size_check_sees_a_long_function_and_not_a_test() {
    let body = "    let x = 1;\n".repeat(120);
    let text = format!("fn long() {{\n{body}}}\n#[test]\nfn long_test() {{\n{body}}}\n");
    let mut long = LongFunctions {
        max: 100,
        ..Default::default()
    };
    syn::visit::Visit::visit_file(&mut long, &syn::parse_file(&text).unwrap());
    assert_eq!(long.found.len(), 1, "{:?}", long.found);
    assert_eq!(long.found[0].0, 122);
}
