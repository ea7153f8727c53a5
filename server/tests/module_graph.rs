//! The server's modules import one another without a cycle: a use case never reaches back
//! into what composes it (`state`, `routes`), and no two use cases lean on each other in
//! a circle. The edges are every `crate::…` path in a module's source outside its unit
//! tests, resolved to the longest module it names (the rule of `shared/tools/structure.py`,
//! so both agree).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut m: Module = rel
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    if matches!(m.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        m.pop();
    }
    m
}

/// The paths written after each `crate::`, a `{…}` group split into its names.
fn crate_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (at, _) in text.match_indices("crate::") {
        if text[..at]
            .chars()
            .last()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            continue;
        }
        let rest = &text[at + "crate::".len()..];
        if rest.starts_with('{') {
            let end = rest.find(';').unwrap_or(rest.len());
            out.extend(
                rest[..end]
                    .split(|c: char| c == '{' || c == '}' || c == ',' || c.is_whitespace())
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            );
        } else {
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            out.push(rest[..end].to_owned());
        }
    }
    out
}

fn edges(src: &Path) -> BTreeMap<Module, BTreeSet<Module>> {
    let mut files = Vec::new();
    sources(src, &mut files);
    let modules: BTreeMap<Module, PathBuf> = files
        .iter()
        .map(|f| (module_of(src, f), f.clone()))
        .collect();
    let mut graph = BTreeMap::new();
    for (m, file) in &modules {
        let text = std::fs::read_to_string(file).unwrap();
        let text = match text.find("#[cfg(test)]\nmod tests {") {
            Some(at) => &text[..at],
            None => &text[..],
        };
        let mut to = BTreeSet::new();
        for path in crate_paths(text) {
            let mut p: Module = path
                .split("::")
                .filter(|s| !s.is_empty() && *s != "self")
                .map(str::to_owned)
                .collect();
            while !p.is_empty() && !modules.contains_key(&p) {
                p.pop();
            }
            if !p.is_empty() && &p != m {
                to.insert(p);
            }
        }
        graph.insert(m.clone(), to);
    }
    graph
}

/// A cycle through `start`, if any (depth-first search).
fn cycle_from(graph: &BTreeMap<Module, BTreeSet<Module>>, start: &Module) -> Option<Vec<Module>> {
    fn walk(
        graph: &BTreeMap<Module, BTreeSet<Module>>,
        at: &Module,
        start: &Module,
        path: &mut Vec<Module>,
        seen: &mut BTreeSet<Module>,
    ) -> bool {
        for next in graph.get(at).into_iter().flatten() {
            if next == start {
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, next, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.clone()];
    walk(graph, start, start, &mut path, &mut BTreeSet::new()).then_some(path)
}

#[test]
fn the_server_has_no_module_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = edges(&src);
    assert!(
        graph.len() > 40,
        "the walk found the modules ({})",
        graph.len()
    );
    assert!(
        graph[&vec!["routes".to_owned()]].contains(&vec!["state".to_owned()]),
        "the walk found the edges"
    );
    for m in graph.keys() {
        if let Some(cycle) = cycle_from(&graph, m) {
            let names: Vec<String> = cycle.iter().map(|m| m.join("::")).collect();
            panic!("module cycle: {} -> {}", names.join(" -> "), names[0]);
        }
    }
}

#[test]
fn a_cycle_is_seen() {
    let m = |s: &str| vec![s.to_owned()];
    let graph = BTreeMap::from([
        (m("a"), BTreeSet::from([m("b")])),
        (m("b"), BTreeSet::from([m("a")])),
        (m("c"), BTreeSet::from([m("a")])),
    ]);
    assert_eq!(cycle_from(&graph, &m("a")), Some(vec![m("a"), m("b")]));
    assert_eq!(cycle_from(&graph, &m("c")), None);
    assert_eq!(
        crate_paths("use crate::{db::Attempt, error::AppError};\nx(crate::audit::Audit::new())"),
        ["db::Attempt", "error::AppError", "audit::Audit::new"]
    );
}

/// Staff reach an attempt only as an `AssignedAttempt` (built by `Attempts::for_staff`);
/// the two readers that name an attempt without a staff member are each called from the
/// one place whose caller holds a stronger credential: the integration API (the platform's
/// token) and the CLI (the operator on the server).
#[test]
fn only_the_platform_and_the_operator_read_an_attempt_without_a_staff_member() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let allowed = [
        (".outcome_for_platform(", "routes/integration.rs"),
        (".report_for_operator(", "cli.rs"),
        ("AssignedAttempt {", "attempts.rs"),
    ];
    for (call, home) in allowed {
        let callers: Vec<String> = files
            .iter()
            .filter(|f| std::fs::read_to_string(f).unwrap().contains(call))
            .map(|f| f.strip_prefix(&src).unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(callers, vec![home.to_string()], "{call}");
    }
}
