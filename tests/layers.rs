//! The module graph runs one way: this test reads every `crate::` and
//! `super::` path under `src/` (test modules left out), builds the graph of
//! file modules, and fails on any cycle and on any import that goes against
//! the layer table in `ARCHITECTURE.md` (between the `layers:start` and
//! `layers:end` markers), the one place the layers are written down.
//!
//! A module may import modules of its own layer or of lower layers, and no
//! import may close a cycle. A module that is in no row fails the test with
//! the table to add it to.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::Path,
};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// File modules, by path (`oauth::token`), with their source, test modules
/// and comments removed.
fn modules() -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    collect(&Path::new(ROOT).join("src"), &mut Vec::new(), &mut found);
    found
}

fn collect(dir: &Path, prefix: &mut Vec<String>, found: &mut BTreeMap<String, String>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .expect("read src")
        .map(|entry| entry.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            prefix.push(name);
            collect(&path, prefix, found);
            prefix.pop();
            continue;
        }
        if path.extension().is_none_or(|ext| ext != "rs") {
            continue;
        }
        let mut segments = prefix.clone();
        if !matches!(name.as_str(), "mod" | "lib" | "main") {
            segments.push(name);
        }
        if segments.is_empty() {
            continue; // lib.rs and main.rs are the crate roots, above everything.
        }
        let source = fs::read_to_string(&path).expect("read module");
        found.insert(segments.join("::"), without_tests_and_comments(&source));
    }
}

fn without_tests_and_comments(source: &str) -> String {
    let mut kept = String::new();
    let mut lines = source.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]")
            && lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("mod "))
        {
            break; // the test module is the file's last item, by convention.
        }
        let code = match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        };
        kept.push_str(code);
        kept.push('\n');
    }
    kept
}

/// Every path a module names: `use` trees expanded, inline paths as written.
fn paths_in(source: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let bytes = source.as_bytes();
    let mut at = 0;
    while at < source.len() {
        let rest = &source[at..];
        let starts_word = at == 0 || !is_ident(bytes[at - 1] as char);
        if starts_word && (rest.starts_with("crate::") || rest.starts_with("super::")) {
            let statement_start = source[..at].trim_end();
            let in_use = statement_start.ends_with("use");
            if in_use {
                let end = rest.find(';').unwrap_or(rest.len());
                expand_use_tree("", &rest[..end], &mut paths);
                at += end;
            } else {
                let end = rest
                    .find(|c: char| !(is_ident(c) || c == ':'))
                    .unwrap_or(rest.len());
                paths.push(rest[..end].trim_end_matches(':').to_owned());
                at += end;
            }
        } else {
            at += rest.chars().next().map_or(1, char::len_utf8);
        }
    }
    paths
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn expand_use_tree(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    match tree.find('{') {
        None => {
            // `a::b as c` names `a::b`.
            let path = tree.split_whitespace().next().unwrap_or_default();
            out.push(format!("{prefix}{path}").trim_end_matches("::").to_owned());
        }
        Some(open) => {
            let head: String = format!("{prefix}{}", &tree[..open])
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            let inner = &tree[open + 1..tree.rfind('}').expect("closing brace")];
            let mut depth = 0;
            let mut start = 0;
            for (index, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        expand_use_tree(&head, &inner[start..index], out);
                        start = index + 1;
                    }
                    _ => {}
                }
            }
            if !inner[start..].trim().is_empty() {
                expand_use_tree(&head, &inner[start..], out);
            }
        }
    }
}

/// The file module a path lands in: the longest known module prefix.
fn resolve(from: &str, path: &str, known: &BTreeMap<String, String>) -> Option<String> {
    let mut segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let mut base: Vec<&str> = from.split("::").collect();
    match segments.first() {
        Some(&"crate") => base.clear(),
        Some(&"super") => {
            // `super` of `oauth::token` is `oauth`, whether the file is
            // `oauth/token.rs` or, for a parent, `oauth/mod.rs` (`crate`).
            base.pop();
        }
        _ => return None,
    }
    segments.remove(0);
    while segments.first() == Some(&"super") {
        base.pop();
        segments.remove(0);
    }
    let mut full: Vec<&str> = base;
    full.extend(segments);
    (1..=full.len())
        .rev()
        .map(|len| full[..len].join("::"))
        .find(|candidate| known.contains_key(candidate))
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let known = modules();
    known
        .iter()
        .map(|(module, source)| {
            let targets = paths_in(source)
                .iter()
                .filter_map(|path| resolve(module, path, &known))
                .filter(|target| target != module)
                .collect();
            (module.clone(), targets)
        })
        .collect()
}

/// The layer table: rows of `| n | name | modules |`, `a::*` covering `a`
/// and everything under it.
fn layers() -> Vec<(usize, String, Vec<String>)> {
    let doc = fs::read_to_string(Path::new(ROOT).join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let start = doc
        .find("<!-- layers:start -->")
        .expect("layers:start marker");
    let end = doc.find("<!-- layers:end -->").expect("layers:end marker");
    doc[start..end]
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.trim().trim_matches('|').split('|').collect();
            let rank = cells.first()?.trim().parse::<usize>().ok()?;
            let modules = cells
                .get(2)?
                .split(',')
                .map(|m| m.trim().trim_matches('`').to_owned())
                .filter(|m| !m.is_empty())
                .collect();
            Some((rank, cells[1].trim().to_owned(), modules))
        })
        .collect()
}

fn layer_of(module: &str, table: &[(usize, String, Vec<String>)]) -> Option<usize> {
    // The most specific pattern wins, so `oauth::*` can sit below `oauth::cli`.
    table
        .iter()
        .flat_map(|(rank, _, patterns)| patterns.iter().map(move |p| (rank, p)))
        .filter_map(|(rank, pattern)| {
            let matched = match pattern.strip_suffix("::*") {
                Some(parent) => module == parent || module.starts_with(&format!("{parent}::")),
                None => module == pattern,
            };
            matched.then_some((pattern.trim_end_matches("::*").len(), *rank, pattern))
        })
        .max_by_key(|(specificity, _, pattern)| (*specificity, !pattern.ends_with('*')))
        .map(|(_, rank, _)| rank)
}

fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Tarjan's strongly connected components; any with two or more members
    // is a cycle.
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(state: &mut State<'a>, node: &'a str) {
        let next = state.index.len();
        state.index.insert(node, next);
        state.low.insert(node, next);
        state.stack.push(node);
        state.on_stack.insert(node);
        for target in state.graph.get(node).into_iter().flatten() {
            let target = target.as_str();
            if !state.index.contains_key(target) {
                visit(state, target);
                let low = state.low[target].min(state.low[node]);
                state.low.insert(node, low);
            } else if state.on_stack.contains(target) {
                let low = state.index[target].min(state.low[node]);
                state.low.insert(node, low);
            }
        }
        if state.low[node] == state.index[node] {
            let mut component = Vec::new();
            while let Some(member) = state.stack.pop() {
                state.on_stack.remove(member);
                component.push(member.to_owned());
                if member == node {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                state.found.push(component);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !state.index.contains_key(node.as_str()) {
            visit(&mut state, node);
        }
    }
    state.found
}

#[test]
fn the_module_graph_has_no_cycle() {
    let found = cycles(&graph());
    assert!(
        found.is_empty(),
        "modules that import each other, directly or around a loop \
         (move what both need into a lower module):\n{}",
        found
            .iter()
            .map(|cycle| format!("  {}", cycle.join(" ↔ ")))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn every_import_goes_down_the_layer_table() {
    let table = layers();
    assert!(
        table.len() >= 4,
        "ARCHITECTURE.md's layer table did not parse"
    );
    let mut problems = Vec::new();
    for (module, targets) in graph() {
        let Some(own) = layer_of(&module, &table) else {
            problems.push(format!(
                "`{module}` is in no layer: add it to a row of the layer table \
                 in ARCHITECTURE.md (between `layers:start` and `layers:end`)"
            ));
            continue;
        };
        for target in targets {
            match layer_of(&target, &table) {
                Some(theirs) if theirs > own => problems.push(format!(
                    "`{module}` (layer {own}) imports `{target}` (layer {theirs}): \
                     a module may import only its own layer and those below"
                )),
                _ => {}
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_reader_sees_every_kind_of_import() {
    let source = "use crate::{a::b, c::{d, e as f}};\nuse super::g;\nfn x() { crate::h::i(); }\n";
    assert_eq!(
        paths_in(source),
        [
            "crate::a::b",
            "crate::c::d",
            "crate::c::e",
            "super::g",
            "crate::h::i"
        ]
    );
    let known: BTreeMap<String, String> = ["oauth", "oauth::token", "store"]
        .into_iter()
        .map(|m| (m.to_owned(), String::new()))
        .collect();
    assert_eq!(
        resolve("oauth::authorize", "super::token::redeem", &known).as_deref(),
        Some("oauth::token")
    );
    assert_eq!(
        resolve("oauth::authorize", "crate::store::Store", &known).as_deref(),
        Some("store")
    );
    let graph: BTreeMap<String, BTreeSet<String>> = [("a", "b"), ("b", "c"), ("c", "a")]
        .into_iter()
        .map(|(from, to)| (from.to_owned(), BTreeSet::from([to.to_owned()])))
        .collect();
    assert_eq!(cycles(&graph), [["a", "b", "c"]]);
}

#[test]
fn the_table_places_modules_by_their_most_specific_row() {
    let table = layers();
    assert_eq!(layer_of("oauth", &table), Some(2));
    assert_eq!(layer_of("oauth::authorize", &table), Some(4));
    assert_eq!(layer_of("oauth::cli", &table), Some(5));
    // The gateway's modules have their row before they exist.
    assert_eq!(layer_of("gateway", &table), Some(4));
    assert_eq!(layer_of("gateway::forward", &table), Some(4));
    assert_eq!(layer_of("not_yet_placed", &table), None);
}
