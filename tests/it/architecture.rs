//! The layers of `src/` point one way: a module may use modules of lower
//! layers only (see docs/ARCHITECTURE.md). This reads every source file and
//! fails on any `crate::…` path that points sideways or up.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Lowest first. Modules of one layer do not use each other.
const LAYERS: &[&[&str]] = &[
    &["errors"],
    &["config"],
    &["events"],
    &[
        "backoff",
        "cluster",
        "crypto",
        "metrics",
        "paths",
        "telemetry",
    ],
    &["hostaway"],
    &["store"],
    &["directory", "sync"],
    &["context"],
    &["actors"],
    &["lifecycle"],
    &["http"],
    &["app", "cli"],
];

/// Items of the crate root usable from anywhere (plain functions).
const ROOT_ITEMS: &[&str] = &["install_tls_provider"];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src readable").flatten() {
        let path = entry.path();
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`None` for lib.rs, main.rs, bin/).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.trim_end_matches(".rs");
    (!matches!(name, "lib" | "main" | "bin")).then(|| name.to_string())
}

/// Every top-level module named by a `crate::` path, braces included
/// (`use crate::{a, b::c}` names `a` and `b`).
fn referenced_modules(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let code: String = text
        .lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut item = String::new();
            let mut at_start = true;
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 1 => {
                        at_start = true;
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 {
                    break;
                }
                if depth == 1 && at_start {
                    if c.is_alphanumeric() || c == '_' {
                        item.push(c);
                    } else if !item.is_empty() {
                        out.insert(std::mem::take(&mut item));
                        at_start = false;
                    }
                }
            }
            if !item.is_empty() {
                out.insert(item);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.insert(name);
        }
    }
    out
}

#[test]
fn module_edges_point_down_the_layers() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    for line in lib.lines().filter(|l| l.starts_with("pub mod ")) {
        let module = line.trim_start_matches("pub mod ").trim_end_matches(';');
        assert!(
            layer_of(module).is_some(),
            "module `{module}` has no layer in tests/it/architecture.rs"
        );
    }
    let mut files = Vec::new();
    source_files(&src, &mut files);
    let mut violations = Vec::new();
    let mut edges = 0;
    for file in &files {
        let Some(from) = module_of(&src, file) else {
            continue;
        };
        let from_layer = layer_of(&from).unwrap_or_else(|| panic!("{from} has no layer"));
        let text = std::fs::read_to_string(file).expect("source readable");
        for to in referenced_modules(&text) {
            if to == from || ROOT_ITEMS.contains(&to.as_str()) {
                continue;
            }
            edges += 1;
            match layer_of(&to) {
                Some(to_layer) if to_layer < from_layer => {}
                _ => violations.push(format!(
                    "{} uses crate::{to} ({from} is layer {from_layer}, {to} is {:?})",
                    file.strip_prefix(&root).unwrap_or(file).display(),
                    layer_of(&to)
                )),
            }
        }
    }
    assert!(edges > 20, "the scan found only {edges} edges");
    assert!(
        violations.is_empty(),
        "edges against the layers:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_scan_sees_grouped_and_nested_paths() {
    let text = "use crate::{store::{self, inbox}, metrics::Metrics};\n\
                fn f() { crate::sync::run(); }\n// crate::http is a comment";
    let found: Vec<String> = referenced_modules(text).into_iter().collect();
    assert_eq!(found, ["metrics", "store", "sync"]);
}
