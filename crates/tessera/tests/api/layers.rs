//! The server's modules depend on each other in one direction only, read from the `crate::`
//! paths in `src/`: shared machinery imports no capability; a capability's store and rules
//! never import a routes module (each capability's `routes` is its HTTP face, one layer above
//! every store, and only `app` merges it); and the graph of top-level modules, each
//! capability's routes counted apart, has no cycle. Edges into `state` do not count: `AppState`
//! is the one composition point (axum's shared state), which every route module names and
//! which names every service it holds; `state` imports no router.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Modules every other module may name without that being a dependency the check follows.
const COMPOSITION_POINTS: &[&str] = &["state"];

/// The name of a capability's HTTP face: its `routes` module, one layer above every
/// capability's store and rules.
const ROUTES: &str = "routes";

/// Shared machinery: modules that import no capability (only each other, and the state).
const FOUNDATION: &[&str] = &[
    "bus",
    "clock",
    "config",
    "db",
    "digest",
    "health",
    "http",
    "jobs",
    "master",
    "passwords",
    "permissions",
    "telemetry",
    "text",
];

/// The entry point, the only module that may import a capability's routes (to merge them).
const ENTRY_POINTS: &[&str] = &["app"];

/// The top-level module graph: module → the modules its files name through `crate::`.
type Graph = BTreeMap<String, BTreeSet<String>>;

fn source_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source directory") {
        let path = entry.expect("readable entry").path();
        if path.is_dir() {
            source_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The node a file belongs to: its top-level module (`src/auth/login.rs` → `auth`,
/// `src/text.rs` → `text`), or that module's HTTP face when the file is its `routes` module
/// (`src/users/routes.rs`, `src/auth/routes/login.rs` → `users::routes`, `auth::routes`);
/// `None` for the crate root files.
fn node_of(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).expect("under src");
    let mut parts = relative
        .components()
        .map(|c| c.as_os_str().to_str().unwrap_or(""));
    let first = parts.next()?;
    let module = first.strip_suffix(".rs").unwrap_or(first);
    if matches!(module, "lib" | "main") {
        return None;
    }
    match parts.next() {
        Some("routes.rs" | "routes") => Some(format!("{module}::{ROUTES}")),
        _ => Some(module.to_owned()),
    }
}

/// Source text without comments, so prose naming `crate::x` is not an import.
fn without_comments(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn ident(text: &str) -> &str {
    let end = text.find(|c: char| !is_ident(c)).unwrap_or(text.len());
    &text[..end]
}

/// The items of a `{…}` group whose opening brace was just consumed, split at its top-level
/// commas.
fn group_items(text: &str) -> Vec<&str> {
    let mut depth = 0;
    let mut start = 0;
    let mut items = Vec::new();
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&text[start..i]);
                return items;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&text[start..]);
    items
}

/// The first two segments of the path starting at `text` (`b::c` of `crate::b::c::D`), and
/// of each member of a nested group (`b::{c, d}`).
fn heads(text: &str, found: &mut BTreeSet<(String, String)>) {
    let text = text.trim_start();
    let first = ident(text);
    if first.is_empty() {
        return;
    }
    let rest = &text[first.len()..];
    match rest.strip_prefix("::") {
        Some(inner) if inner.starts_with('{') => {
            for item in group_items(&inner[1..]) {
                found.insert((first.to_owned(), ident(item.trim_start()).to_owned()));
            }
        }
        Some(inner) => {
            found.insert((first.to_owned(), ident(inner).to_owned()));
        }
        None => {
            found.insert((first.to_owned(), String::new()));
        }
    }
}

/// The paths named after `crate::` in `code`, as their first two segments, including every
/// member of a grouped import (`use crate::{a, b::c};`).
fn named_paths(code: &str) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let preceded_by_ident = rest[..at].chars().next_back().is_some_and(is_ident);
        rest = &rest[at + "crate::".len()..];
        if preceded_by_ident {
            continue;
        }
        match rest.strip_prefix('{') {
            Some(group) => group_items(group)
                .into_iter()
                .for_each(|item| heads(item, &mut found)),
            None => heads(rest, &mut found),
        }
    }
    found
}

/// The graph of `src/`'s nodes (see [`node_of`]). Names that are not modules (items
/// re-exported at the crate root, such as `crate::AppState`) map to the module that defines
/// them through the root's `pub use` lines.
fn module_graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    source_files(src, &mut files);
    let nodes: BTreeSet<String> = files.iter().filter_map(|f| node_of(src, f)).collect();
    let roots = crate_root_reexports(src);
    let mut graph = Graph::new();
    for file in &files {
        let Some(node) = node_of(src, file) else {
            continue;
        };
        let code = without_comments(&std::fs::read_to_string(file).expect("readable source"));
        let edges = graph.entry(node.clone()).or_default();
        for (first, second) in named_paths(&code) {
            let module = roots.get(&first).cloned().unwrap_or(first);
            let routes = format!("{module}::{ROUTES}");
            let target = if second == ROUTES && nodes.contains(&routes) {
                routes
            } else {
                module
            };
            if target != node && nodes.contains(&target) {
                edges.insert(target);
            }
        }
    }
    graph
}

/// `pub use module::{Item, …};` lines of `lib.rs`: item → module.
fn crate_root_reexports(src: &Path) -> BTreeMap<String, String> {
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("readable lib.rs");
    let mut roots = BTreeMap::new();
    for line in lib.lines() {
        let Some(path) = line.trim().strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, items)) = path.trim_end_matches(';').split_once("::") else {
            continue;
        };
        for item in items.trim_matches(|c| c == '{' || c == '}').split(',') {
            let item = item.trim();
            if !item.is_empty() {
                roots.insert(item.to_owned(), module.to_owned());
            }
        }
    }
    roots
}

/// One cycle of `graph`, as the path of modules that closes it, if there is any.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &str,
        graph: &Graph,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let start = path.iter().position(|n| n == node).expect("on the path");
                let mut cycle = path[start..].to_vec();
                cycle.push(node.to_owned());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(node.to_owned(), Mark::Open);
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, marks, path) {
                return Some(cycle);
            }
        }
        path.pop();
        marks.insert(node.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut marks, &mut Vec::new()))
}

fn without_composition_points(mut graph: Graph) -> Graph {
    for edges in graph.values_mut() {
        edges.retain(|to| !COMPOSITION_POINTS.contains(&to.as_str()));
    }
    graph
}

fn render(graph: &Graph) -> String {
    graph
        .iter()
        .map(|(from, to)| {
            format!(
                "  {from} -> {}",
                to.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn top_level_modules_import_each_other_without_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = without_composition_points(module_graph(&src));
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "the top-level modules of crates/tessera/src form a cycle: {}\n\
             (move the shared piece down a layer, or the caller up; see docs/architecture.md)\n\
             the whole graph:\n{}",
            cycle.join(" -> "),
            render(&graph)
        );
    }
}

fn edges_where(graph: &Graph, wrong: impl Fn(&str, &str) -> bool) -> Vec<String> {
    graph
        .iter()
        .flat_map(|(from, to)| to.iter().map(move |to| (from, to)))
        .filter(|(from, to)| wrong(from, to))
        .map(|(from, to)| format!("{from} -> {to}"))
        .collect()
}

#[test]
fn shared_machinery_imports_no_capability() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = without_composition_points(module_graph(&src));
    let wrong = edges_where(&graph, |from, to| {
        FOUNDATION.contains(&from) && !FOUNDATION.contains(&to)
    });
    assert!(
        wrong.is_empty(),
        "shared machinery imports a capability: {wrong:?}"
    );
}

#[test]
fn only_the_entry_points_import_a_capabilitys_routes() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = without_composition_points(module_graph(&src));
    let wrong = edges_where(&graph, |from, to| {
        to.ends_with(&format!("::{ROUTES}")) && !ENTRY_POINTS.contains(&from)
    });
    assert!(
        wrong.is_empty(),
        "routes imported by another module than the router: {wrong:?}"
    );
}

#[test]
fn the_module_graph_reader_sees_grouped_and_nested_imports() {
    let code = "use crate::{a, b::{c, d}, e::f as g};\nlet x = crate::h::i();\n\
                // use crate::commented;\nlet y = mycrate::j;";
    let names = named_paths(&without_comments(code));
    let expected: BTreeSet<(String, String)> =
        [("a", ""), ("b", "c"), ("b", "d"), ("e", "f"), ("h", "i")]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .into();
    assert_eq!(names, expected);
}

#[test]
fn a_cycle_is_found_and_named() {
    let graph: Graph = [("a", "b"), ("b", "c"), ("c", "a"), ("d", "a")]
        .into_iter()
        .fold(Graph::new(), |mut g, (from, to)| {
            g.entry(from.into()).or_default().insert(to.into());
            g.entry(to.into()).or_default();
            g
        });
    let cycle = find_cycle(&graph).expect("a cycle");
    assert_eq!(cycle.first(), cycle.last());
    assert_eq!(cycle.len(), 4);
    let acyclic: Graph = graph
        .into_iter()
        .map(|(from, to)| (from.clone(), if from == "c" { BTreeSet::new() } else { to }))
        .collect();
    assert_eq!(find_cycle(&acyclic), None);
}
