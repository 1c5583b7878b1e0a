//! The architecture rules (RULES.md, issue 13), checked on the sources of `multiproc` and
//! `multiproc-nats` so that a change breaking one fails a test naming the offender:
//!
//! - `unsafe` only in `src/sys/` and `src/spawn/identity.rs`, and `allow(unsafe_code)` only
//!   on those two module declarations;
//! - no import cycle between files;
//! - no function over 100 lines, and at most 8 over 60.
//!
//! The reading is rough on purpose: comments and literals are blanked out, `use` trees and
//! `crate::`/`super::`/`self::` paths are resolved to the file of the module they name
//! (following `pub use` re-exports), and a function is measured from its `fn` line to the
//! line of its body's closing brace. This file starts no process, so it needs no
//! `test_init!`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};

/// Where `unsafe` may appear, as paths from the workspace root.
const UNSAFE_HOMES: [&str; 2] = ["src/sys/", "src/spawn/identity.rs"];

/// The only items an `allow(unsafe_code)` may sit on: (file, the item's last words).
const UNSAFE_ALLOWANCES: [(&str, &str); 2] = [("src/lib.rs", "mod sys"), ("src/spawn/mod.rs", "mod identity")];

/// Functions longer than this many lines are counted...
const LONG_FN: usize = 60;
/// ...and at most this many may be.
const MAX_LONG_FNS: usize = 8;
/// No function is longer than this.
const MAX_FN: usize = 100;

/// A function whose comment says it "reads as a table" (one long `match`) is exempt from
/// the length rules, as issue 13 allows.
const TABLE_MARKER: &str = "reads as a table";

/// One source file of a crate.
struct Source {
    /// From the workspace root, e.g. `src/pool/driver.rs`.
    rel: String,
    /// Which crate it belongs to (files of different crates never import each other here).
    krate: &'static str,
    /// Its module path in the crate, e.g. `["pool", "driver"]`.
    module: Vec<String>,
    /// Its text with comments, strings and characters blanked (newlines kept).
    code: String,
    /// Its text as written.
    raw: String,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// The module a file is, from its path under the crate's `src/`.
fn module_of(under_src: &Path) -> Vec<String> {
    let mut parts: Vec<String> = under_src.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().expect("a file name");
    let stem = last.strip_suffix(".rs").expect("a .rs file");
    if stem != "mod" && !(parts.is_empty() && (stem == "lib" || stem == "main")) {
        parts.push(stem.to_string());
    }
    parts
}

/// Every source file of both crates.
fn sources() -> Vec<Source> {
    let root = root();
    let mut out = Vec::new();
    for (krate, src) in [("multiproc", "src"), ("multiproc_nats", "multiproc-nats/src")] {
        let dir = root.join(src);
        let mut files = Vec::new();
        rust_files(&dir, &mut files);
        for path in files {
            let raw = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            let rel = path.strip_prefix(&root).expect("under the root").to_string_lossy().into_owned();
            let module = module_of(path.strip_prefix(&dir).expect("under src"));
            out.push(Source { rel, krate, module, code: strip(&raw), raw });
        }
    }
    assert!(out.len() > 20, "found only {} source files under {}", out.len(), root.display());
    out
}

// ---------------------------------------------------------------------------------------
// Reading code

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `src` with comments, string and character literals replaced by spaces (newlines and
/// the quotes of strings kept), so that words and braces in them are not read as code.
fn strip(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < c.len() {
        let at = |k: usize| c.get(k).copied();
        let prev_ident = i > 0 && is_ident(c[i - 1]);
        match c[i] {
            '/' if at(i + 1) == Some('/') => {
                while i < c.len() && c[i] != '\n' {
                    out.push(' ');
                    i += 1;
                }
            }
            '/' if at(i + 1) == Some('*') => {
                let mut depth = 0;
                while i < c.len() {
                    if c[i] == '/' && at(i + 1) == Some('*') {
                        depth += 1;
                        out.push_str("  ");
                        i += 2;
                    } else if c[i] == '*' && at(i + 1) == Some('/') {
                        depth -= 1;
                        out.push_str("  ");
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        blank(&mut out, c[i]);
                        i += 1;
                    }
                }
            }
            'r' | 'b' if !prev_ident && raw_string_at(&c, i).is_some() => {
                let end = raw_string_at(&c, i).expect("checked");
                while i < end {
                    blank(&mut out, c[i]);
                    i += 1;
                }
                out.pop();
                out.push('"');
            }
            '"' => {
                out.push('"');
                i += 1;
                while i < c.len() && c[i] != '"' {
                    if c[i] == '\\' {
                        blank(&mut out, c[i]);
                        i += 1;
                    }
                    if i < c.len() {
                        blank(&mut out, c[i]);
                        i += 1;
                    }
                }
                out.push('"');
                i += 1;
            }
            '\'' if at(i + 1) == Some('\\') => {
                // An escaped character: up to its closing quote.
                out.push(' ');
                i += 1;
                while i < c.len() && c[i] != '\'' {
                    if c[i] == '\\' {
                        out.push(' ');
                        i += 1;
                    }
                    if i < c.len() {
                        blank(&mut out, c[i]);
                        i += 1;
                    }
                }
                out.push(' ');
                i += 1;
            }
            '\'' if at(i + 2) == Some('\'') => {
                out.push_str("   ");
                i += 3;
            }
            ch => {
                // A lifetime's quote, or code.
                out.push(ch);
                i += 1;
            }
        }
    }
    out
}

/// If a raw string (`r"…"`, `r#"…"#`, `br"…"`) starts at `i`, the index just past it.
fn raw_string_at(c: &[char], i: usize) -> Option<usize> {
    let mut j = i;
    if c.get(j) == Some(&'b') {
        j += 1;
    }
    if c.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let mut hashes = 0;
    while c.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    if c.get(j) != Some(&'"') {
        return None;
    }
    j += 1;
    while j < c.len() {
        if c[j] == '"' && (1..=hashes).all(|k| c.get(j + k) == Some(&'#')) {
            return Some(j + 1 + hashes);
        }
        j += 1;
    }
    Some(c.len())
}

/// The 1-based line of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text[..at].matches('\n').count() + 1
}

/// Byte offsets of `word` in `code` standing as a whole word.
fn word_positions<'a>(code: &'a str, word: &'a str) -> impl Iterator<Item = usize> + 'a {
    code.match_indices(word).map(|(at, _)| at).filter(move |&at| {
        let before = code[..at].chars().next_back();
        let after = code[at + word.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

/// The offset of the brace closing the one at `open`.
fn matching_brace(code: &str, open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (k, ch) in code[open..].char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(open + k);
                }
            }
            _ => {}
        }
    }
    None
}

// ---------------------------------------------------------------------------------------
// Rule (a): where `unsafe` lives

/// Every `unsafe` outside its homes, and every `allow(unsafe_code)` on another item.
fn unsafe_offenders(sources: &[Source]) -> Vec<String> {
    let mut out = Vec::new();
    for s in sources {
        if !UNSAFE_HOMES.iter().any(|home| s.rel.starts_with(home)) {
            for at in word_positions(&s.code, "unsafe") {
                out.push(format!(
                    "{}:{}: `unsafe` outside src/sys/ and src/spawn/identity.rs",
                    s.rel,
                    line_of(&s.code, at)
                ));
            }
        }
        for at in word_positions(&s.code, "unsafe_code") {
            let before: String = s.code[..at].chars().rev().take(40).collect::<String>().chars().rev().collect();
            let squeezed: String = before.chars().filter(|c| !c.is_whitespace()).collect();
            if !squeezed.ends_with("allow(") {
                continue;
            }
            let item = item_after_attribute(&s.code, at);
            let allowed = UNSAFE_ALLOWANCES.iter().any(|(file, tail)| s.rel == *file && item.ends_with(tail));
            if !allowed {
                out.push(format!(
                    "{}:{}: `allow(unsafe_code)` on `{item}`; only `mod sys` and `mod identity` may have it",
                    s.rel,
                    line_of(&s.code, at)
                ));
            }
        }
    }
    for root in ["src/lib.rs", "multiproc-nats/src/lib.rs"] {
        let s = sources.iter().find(|s| s.rel == root).expect("a crate root");
        let squeezed: String = s.code.chars().filter(|c| !c.is_whitespace()).collect();
        if !squeezed.contains("#![deny(unsafe_code)]") {
            out.push(format!("{root}: the crate root lacks `#![deny(unsafe_code)]`"));
        }
    }
    out
}

/// The words of the item an attribute at `at` stands on (up to its `;` or `{`), with the
/// other attributes before it skipped; empty for an inner attribute (`#![…]`).
fn item_after_attribute(code: &str, at: usize) -> String {
    let start = code[..at].rfind('#').unwrap_or(at);
    if code[start..].starts_with("#!") {
        return String::new();
    }
    let mut rest = &code[at..];
    rest = &rest[rest.find(']').map_or(rest.len(), |k| k + 1)..];
    loop {
        rest = rest.trim_start();
        if !rest.starts_with("#[") {
            break;
        }
        rest = &rest[rest.find(']').map_or(rest.len(), |k| k + 1)..];
    }
    let end = rest.find([';', '{']).unwrap_or(rest.len());
    rest[..end].split_whitespace().collect::<Vec<_>>().join(" ")
}

// ---------------------------------------------------------------------------------------
// Rule (b): no import cycle between files

/// An inline module (`mod name { … }`) of a file: its name and the span of its body.
struct Inline {
    name: String,
    open: usize,
    close: usize,
}

fn inline_modules(code: &str) -> Vec<Inline> {
    let mut out = Vec::new();
    for at in word_positions(code, "mod") {
        let rest = &code[at + 3..];
        let name: String = rest.trim_start().chars().take_while(|&c| is_ident(c)).collect();
        if name.is_empty() {
            continue;
        }
        let after = rest.trim_start()[name.len()..].trim_start();
        if !after.starts_with('{') {
            continue;
        }
        let open = code.len() - after.len();
        if let Some(close) = matching_brace(code, open) {
            out.push(Inline { name, open, close });
        }
    }
    out
}

/// The module path at offset `at` of a file: its own, plus the inline modules around `at`.
fn module_at(file_module: &[String], inlines: &[Inline], at: usize) -> Vec<String> {
    let mut m = file_module.to_vec();
    // Outer modules open first, so sorted by `open` they nest in order.
    for i in inlines.iter().filter(|i| i.open < at && at < i.close) {
        m.push(i.name.clone());
    }
    m
}

/// One leaf of a `use` tree: its path, and the name it brings into scope (`None` for `*`).
#[derive(Debug, PartialEq)]
struct UseLeaf {
    path: Vec<String>,
    name: Option<String>,
}

/// The leaves of a `use` tree such as `crate::a::{b, c::{self, D as E}, f::*}`.
fn use_leaves(tree: &str) -> Vec<UseLeaf> {
    fn walk(tree: &str, prefix: &[String], out: &mut Vec<UseLeaf>) {
        let tree = tree.trim();
        if let Some(open) = tree.find('{') {
            let mut prefix = prefix.to_vec();
            prefix.extend(split_path(&tree[..open]));
            let close = tree.rfind('}').unwrap_or(tree.len());
            for part in split_top_level(&tree[open + 1..close]) {
                walk(part, &prefix, out);
            }
            return;
        }
        let (path, alias) = match tree.split_once(" as ") {
            Some((p, a)) => (p.trim(), Some(a.trim().to_string())),
            None => (tree, None),
        };
        let mut full = prefix.to_vec();
        let segs = split_path(path);
        if segs.is_empty() {
            return;
        }
        if segs == ["*"] || segs.last().is_some_and(|s| s == "*") {
            full.extend(segs.iter().filter(|s| *s != "*").cloned());
            out.push(UseLeaf { path: full, name: None });
            return;
        }
        if segs == ["self"] {
            let name = alias.or_else(|| full.last().cloned());
            out.push(UseLeaf { path: full, name });
            return;
        }
        full.extend(segs);
        let name = alias.or_else(|| full.last().cloned());
        out.push(UseLeaf { path: full, name });
    }
    let mut out = Vec::new();
    walk(tree, &[], &mut out);
    out
}

fn split_path(path: &str) -> Vec<String> {
    path.split("::").map(|s| s.trim().trim_start_matches('$').to_string()).filter(|s| !s.is_empty()).collect()
}

/// `a, b::{c, d}, e` split at its top-level commas.
fn split_top_level(list: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut from) = (0, 0);
    for (k, ch) in list.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&list[from..k]);
                from = k + 1;
            }
            _ => {}
        }
    }
    parts.push(&list[from..]);
    parts.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

/// A module's path, or a path written in code, as its segments.
type Segments = Vec<String>;

/// The modules of one crate, and what its `pub use`s re-export.
struct Crate {
    /// Module path → index of the file it is written in.
    modules: HashMap<Vec<String>, usize>,
    /// (module, name) → (the module the `pub use` is in, the path it names).
    reexports: HashMap<(Segments, String), (Segments, Segments)>,
}

impl Crate {
    fn is_child(&self, of: &[String], name: &str) -> bool {
        let mut m = of.to_vec();
        m.push(name.to_string());
        self.modules.contains_key(&m)
    }

    /// The file a path used in module `ctx` leads to, following re-exports; `None` for a
    /// path into another crate.
    fn resolve(&self, ctx: &[String], path: &[String], depth: usize) -> Option<usize> {
        let first = path.first()?;
        let (mut base, rest): (Vec<String>, &[String]) = match first.as_str() {
            "crate" => (Vec::new(), &path[1..]),
            "self" => (ctx.to_vec(), &path[1..]),
            "super" => {
                let mut base = ctx.to_vec();
                let supers = path.iter().take_while(|s| *s == "super").count();
                for _ in 0..supers {
                    base.pop();
                }
                (base, &path[supers..])
            }
            name if self.is_child(ctx, name) => (ctx.to_vec(), path),
            _ => return None,
        };
        let mut k = 0;
        while k < rest.len() && self.is_child(&base, &rest[k]) {
            base.push(rest[k].clone());
            k += 1;
        }
        if k < rest.len()
            && depth < 8
            && let Some((from, target)) = self.reexports.get(&(base.clone(), rest[k].clone()))
            && let Some(file) = self.resolve(from, target, depth + 1)
        {
            return Some(file);
        }
        self.modules.get(&base).copied()
    }
}

/// A `use` statement: where it is and whether it re-exports (`pub use`).
struct UseStmt {
    at: usize,
    end: usize,
    tree: String,
    public: bool,
}

fn use_statements(code: &str) -> Vec<UseStmt> {
    let mut out = Vec::new();
    for at in word_positions(code, "use") {
        let Some(len) = code[at..].find(';') else { continue };
        let tree = code[at + 3..at + len].to_string();
        let before = code[..at].trim_end();
        let public = before.ends_with("pub")
            || (before.ends_with(')') && before[before.len().saturating_sub(20)..].contains("pub("));
        out.push(UseStmt { at, end: at + len, tree, public });
    }
    out
}

/// Paths written outside `use` statements that start with `crate::`, `super::`, `self::`
/// or a child module's name: (offset, segments).
fn inline_paths(code: &str, uses: &[UseStmt]) -> Vec<(usize, Vec<String>)> {
    let mut out = Vec::new();
    let chars: Vec<(usize, char)> = code.char_indices().collect();
    for (n, &(at, ch)) in chars.iter().enumerate() {
        if !is_ident(ch) || ch.is_numeric() {
            continue;
        }
        let prev = if n > 0 { Some(chars[n - 1].1) } else { None };
        if prev.is_some_and(|p| is_ident(p) || p == ':' || p == '\'') {
            continue;
        }
        if uses.iter().any(|u| u.at <= at && at < u.end) {
            continue;
        }
        let path: String = code[at..].chars().take_while(|&c| is_ident(c) || c == ':').collect();
        if !path.contains("::") {
            continue;
        }
        out.push((at, split_path(&path)));
    }
    out
}

/// Import edges between files: (from, to) → the line of the first import.
fn import_edges(sources: &[Source]) -> BTreeMap<(usize, usize), usize> {
    let mut crates: HashMap<&str, Crate> = HashMap::new();
    // Test code may reach anywhere (a unit test's `use super::*`, the lib's test constructor).
    let codes: Vec<String> = sources.iter().map(|s| without_test_items(&s.code)).collect();
    let inlines: Vec<Vec<Inline>> = codes.iter().map(|c| inline_modules(c)).collect();
    let uses: Vec<Vec<UseStmt>> = codes.iter().map(|c| use_statements(c)).collect();
    for (i, s) in sources.iter().enumerate() {
        let c = crates.entry(s.krate).or_insert_with(|| Crate { modules: HashMap::new(), reexports: HashMap::new() });
        c.modules.insert(s.module.clone(), i);
        for inline in &inlines[i] {
            c.modules.insert(module_at(&s.module, &inlines[i], inline.open + 1), i);
        }
    }
    for (i, s) in sources.iter().enumerate() {
        let c = crates.get_mut(s.krate).expect("registered");
        for u in uses[i].iter().filter(|u| u.public) {
            let ctx = module_at(&s.module, &inlines[i], u.at);
            for leaf in use_leaves(&u.tree) {
                if let Some(name) = leaf.name {
                    c.reexports.insert((ctx.clone(), name), (ctx.clone(), leaf.path));
                }
            }
        }
    }
    let mut edges = BTreeMap::new();
    for (i, s) in sources.iter().enumerate() {
        let c = &crates[s.krate];
        let mut add = |at: usize, ctx: &[String], path: &[String]| {
            if let Some(to) = c.resolve(ctx, path, 0)
                && to != i
            {
                edges.entry((i, to)).or_insert_with(|| line_of(&codes[i], at));
            }
        };
        for u in uses[i].iter().filter(|u| !u.public) {
            let ctx = module_at(&s.module, &inlines[i], u.at);
            for leaf in use_leaves(&u.tree) {
                add(u.at, &ctx, &leaf.path);
            }
        }
        // A path may start with a name a `use` brought in (`use crate::sys;` … `sys::proc::f()`).
        let mut aliases: HashMap<String, (Segments, Segments)> = HashMap::new();
        for u in uses[i].iter().filter(|u| !u.public) {
            let ctx = module_at(&s.module, &inlines[i], u.at);
            for leaf in use_leaves(&u.tree) {
                if let Some(name) = leaf.name {
                    aliases.insert(name, (ctx.clone(), leaf.path));
                }
            }
        }
        for (at, path) in inline_paths(&codes[i], &uses[i]) {
            match aliases.get(&path[0]) {
                Some((ctx, to)) if !matches!(path[0].as_str(), "crate" | "self" | "super") => {
                    let full: Vec<String> = to.iter().chain(&path[1..]).cloned().collect();
                    add(at, ctx, &full);
                }
                _ => add(at, &module_at(&s.module, &inlines[i], at), &path),
            }
        }
    }
    edges
}

/// `code` with every `#[cfg(test)]` item blanked (newlines kept).
fn without_test_items(code: &str) -> String {
    const MARK: &str = "#[cfg(test)]";
    let mut out = code.to_string();
    for (at, _) in code.match_indices(MARK) {
        let mut end = at + MARK.len();
        let mut depth = 0i32;
        for (k, ch) in code[end..].char_indices() {
            match ch {
                '(' | '[' => depth += 1,
                ')' | ']' => depth -= 1,
                ';' if depth == 0 => {
                    end += k + 1;
                    break;
                }
                '{' if depth == 0 => {
                    end = matching_brace(code, end + k).map_or(code.len(), |close| close + 1);
                    break;
                }
                _ => {}
            }
        }
        let blanked: String = code[at..end].chars().map(|c| if c == '\n' { '\n' } else { ' ' }).collect();
        if blanked.len() == end - at {
            out.replace_range(at..end, &blanked);
        }
    }
    out
}

/// The strongly connected components of more than one node (Tarjan's algorithm).
fn cycles(nodes: usize, edges: &BTreeMap<(usize, usize), usize>) -> Vec<Vec<usize>> {
    struct State<'a> {
        next: &'a [Vec<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        counter: usize,
        found: Vec<Vec<usize>>,
    }
    fn visit(s: &mut State<'_>, v: usize) {
        s.index[v] = Some(s.counter);
        s.low[v] = s.counter;
        s.counter += 1;
        s.stack.push(v);
        s.on_stack[v] = true;
        let next = s.next;
        for &w in next[v].iter() {
            match s.index[w] {
                None => {
                    visit(s, w);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(iw) if s.on_stack[w] => s.low[v] = s.low[v].min(iw),
                Some(_) => {}
            }
        }
        if Some(s.low[v]) == s.index[v] {
            let mut component = Vec::new();
            loop {
                let w = s.stack.pop().expect("on the stack");
                s.on_stack[w] = false;
                component.push(w);
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut next = vec![Vec::new(); nodes];
    for &(a, b) in edges.keys() {
        next[a].push(b);
    }
    let mut s = State {
        next: &next,
        index: vec![None; nodes],
        low: vec![0; nodes],
        on_stack: vec![false; nodes],
        stack: Vec::new(),
        counter: 0,
        found: Vec::new(),
    };
    for v in 0..nodes {
        if s.index[v].is_none() {
            visit(&mut s, v);
        }
    }
    s.found
}

/// One shortest cycle through `start` inside `component`, as a list of nodes.
fn one_cycle(start: usize, component: &[usize], edges: &BTreeMap<(usize, usize), usize>) -> Vec<usize> {
    let inside: BTreeSet<usize> = component.iter().copied().collect();
    let mut came_from: HashMap<usize, usize> = HashMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for (&(_, w), _) in edges.range((v, 0)..=(v, usize::MAX)) {
            if !inside.contains(&w) {
                continue;
            }
            if w == start {
                let mut path = vec![v];
                while let Some(&p) = came_from.get(path.last().expect("non-empty")) {
                    path.push(p);
                }
                path.reverse();
                return path;
            }
            if w != start && !came_from.contains_key(&w) {
                came_from.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    vec![start]
}

/// Every file cycle, one line each: `a.rs:L -> b.rs:L -> a.rs`.
fn cycle_offenders(sources: &[Source]) -> Vec<String> {
    let edges = import_edges(sources);
    let mut out = Vec::new();
    for component in cycles(sources.len(), &edges) {
        let cycle = one_cycle(component[0], &component, &edges);
        let mut text = String::new();
        for (k, &v) in cycle.iter().enumerate() {
            let w = cycle[(k + 1) % cycle.len()];
            text.push_str(&format!("{}:{} -> ", sources[v].rel, edges[&(v, w)]));
        }
        text.push_str(&sources[cycle[0]].rel);
        let all: Vec<&str> = component.iter().map(|&v| sources[v].rel.as_str()).collect();
        out.push(format!("import cycle {text} (files in the knot: {})", all.join(", ")));
    }
    out
}

/// The layer of a file: its crate and its top-level module (`src/pool/driver.rs` is in
/// `multiproc::pool`); the crate root is in none.
fn layer_of(s: &Source) -> Option<String> {
    s.module.first().map(|m| format!("{}::{m}", s.krate))
}

/// Every cycle between layers (top-level modules), with one import for each step.
fn layer_offenders(sources: &[Source]) -> Vec<String> {
    let names: Vec<String> = sources.iter().filter_map(layer_of).collect::<BTreeSet<_>>().into_iter().collect();
    let index = |s: &Source| layer_of(s).map(|l| names.iter().position(|n| *n == l).expect("listed"));
    let mut edges: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    let mut witness: HashMap<(usize, usize), String> = HashMap::new();
    for (&(from, to), &line) in &import_edges(sources) {
        let (Some(a), Some(b)) = (index(&sources[from]), index(&sources[to])) else { continue };
        if a != b {
            edges.entry((a, b)).or_insert(line);
            witness.entry((a, b)).or_insert_with(|| format!("{}:{line} uses {}", sources[from].rel, sources[to].rel));
        }
    }
    let mut out = Vec::new();
    for component in cycles(names.len(), &edges) {
        let cycle = one_cycle(component[0], &component, &edges);
        let steps: Vec<String> = (0..cycle.len())
            .map(|k| {
                let (a, b) = (cycle[k], cycle[(k + 1) % cycle.len()]);
                format!("{} -> {} ({})", names[a], names[b], witness[&(a, b)])
            })
            .collect();
        out.push(format!("layer cycle: {}", steps.join("; ")));
    }
    out
}

// ---------------------------------------------------------------------------------------
// Rule (c): function lengths

/// A function with a body: where it is, its name, its length in lines.
#[derive(Debug)]
struct Function {
    file: String,
    line: usize,
    name: String,
    lines: usize,
    table: bool,
}

/// Every function with a body in `code`, measured from its `fn` line to its closing brace.
fn functions(file: &str, code: &str, raw: &str) -> Vec<Function> {
    let raw_lines: Vec<&str> = raw.lines().collect();
    let mut out = Vec::new();
    for at in word_positions(code, "fn") {
        let rest = code[at + 2..].trim_start();
        let name: String = rest.chars().take_while(|&c| is_ident(c)).collect();
        if name.is_empty() {
            continue;
        }
        let sig_from = code.len() - rest.len() + name.len();
        let mut depth = 0i32;
        let mut open = None;
        for (k, ch) in code[sig_from..].char_indices() {
            match ch {
                '(' | '[' => depth += 1,
                ')' | ']' => depth -= 1,
                '{' if depth == 0 => {
                    open = Some(sig_from + k);
                    break;
                }
                ';' if depth == 0 => break,
                _ => {}
            }
        }
        let Some(open) = open else { continue };
        let Some(close) = matching_brace(code, open) else { continue };
        let line = line_of(code, at);
        out.push(Function {
            file: file.to_string(),
            line,
            name,
            lines: line_of(code, close) - line + 1,
            table: says_table(&raw_lines, line),
        });
    }
    out
}

/// Whether the comments and attributes right above line `line` (1-based) carry the
/// table marker.
fn says_table(lines: &[&str], line: usize) -> bool {
    lines[..line - 1]
        .iter()
        .rev()
        .take_while(|l| {
            let t = l.trim_start();
            t.starts_with("//") || t.starts_with("#[")
        })
        .any(|l| l.contains(TABLE_MARKER))
}

/// The functions over 100 lines, and those over 60 beyond the eight allowed.
fn length_offenders(sources: &[Source]) -> (Vec<String>, Vec<Function>) {
    let mut long: Vec<Function> = sources
        .iter()
        .flat_map(|s| functions(&s.rel, &s.code, &s.raw))
        .filter(|f| f.lines > LONG_FN && !f.table)
        .collect();
    long.sort_by(|a, b| b.lines.cmp(&a.lines).then(a.file.cmp(&b.file)));
    let mut out = Vec::new();
    for f in long.iter().filter(|f| f.lines > MAX_FN) {
        out.push(format!("{}:{}: fn {} has {} lines (at most {MAX_FN})", f.file, f.line, f.name, f.lines));
    }
    if long.len() > MAX_LONG_FNS {
        let names: Vec<String> =
            long.iter().map(|f| format!("{}:{} fn {} ({} lines)", f.file, f.line, f.name, f.lines)).collect();
        out.push(format!(
            "{} functions over {LONG_FN} lines (at most {MAX_LONG_FNS}): {}",
            long.len(),
            names.join("; ")
        ));
    }
    (out, long)
}

fn assert_none(rule: &str, offenders: &[String]) {
    assert!(offenders.is_empty(), "{rule}: {} offender(s):\n  {}", offenders.len(), offenders.join("\n  "));
}

// ---------------------------------------------------------------------------------------
// The rules

#[test]
fn unsafe_lives_only_in_sys_and_identity() {
    assert_none("unsafe outside its homes", &unsafe_offenders(&sources()));
}

#[test]
fn no_import_cycle_between_files() {
    let sources = sources();
    let mut offenders = cycle_offenders(&sources);
    offenders.extend(layer_offenders(&sources));
    assert_none("import cycles between files and between top-level modules", &offenders);
}

#[test]
fn functions_are_short() {
    let (offenders, _) = length_offenders(&sources());
    assert_none("function lengths", &offenders);
}

// ---------------------------------------------------------------------------------------
// The reader itself, on small inputs: a rule that cannot fail proves nothing.

#[test]
fn strip_blanks_comments_and_literals_but_keeps_lines() {
    let src = "let a = \"unsafe {\"; // unsafe\n/* unsafe /* nested */ */ let b = '{';\nlet r = r#\"}\"#; fn f<'a>(x: &'a u8) {}\n";
    let code = strip(src);
    assert_eq!(code.lines().count(), src.lines().count());
    assert!(!code.contains("unsafe"), "{code}");
    assert_eq!(code.matches('{').count(), 1, "{code}");
    assert_eq!(code.matches('}').count(), 1, "{code}");
    assert!(code.contains("fn f<'a>(x: &'a u8) {}"), "{code}");
}

#[test]
fn unsafe_is_found_outside_its_homes_only() {
    let source = |rel: &str, raw: &str| Source {
        rel: rel.into(),
        krate: "multiproc",
        module: Vec::new(),
        code: strip(raw),
        raw: raw.into(),
    };
    let sources = vec![
        source("src/lib.rs", "#![deny(unsafe_code)]\n#[allow(unsafe_code)]\nmod sys;\n"),
        source("multiproc-nats/src/lib.rs", "#![deny(unsafe_code)]\n"),
        source("src/sys/mem.rs", "fn a() { unsafe { f() } }"),
        source("src/pool/x.rs", "// unsafe\nfn b() {\n    unsafe { f() }\n}\n"),
        source("src/wire/y.rs", "#[allow(unsafe_code)]\nfn c() {}\n"),
    ];
    let found = unsafe_offenders(&sources);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0].starts_with("src/pool/x.rs:3:"), "{found:#?}");
    assert!(found[1].starts_with("src/wire/y.rs:1:") && found[1].contains("fn c()"), "{found:#?}");
}

#[test]
fn use_trees_expand_to_their_leaves() {
    let leaves = use_leaves(" crate::a::{b, c::{self, D as E}, f::*}");
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        leaves,
        vec![
            UseLeaf { path: s(&["crate", "a", "b"]), name: Some("b".into()) },
            UseLeaf { path: s(&["crate", "a", "c"]), name: Some("c".into()) },
            UseLeaf { path: s(&["crate", "a", "c", "D"]), name: Some("E".into()) },
            UseLeaf { path: s(&["crate", "a", "f"]), name: None },
        ]
    );
}

#[test]
fn a_cycle_through_a_reexport_is_found_and_named() {
    let source = |rel: &str, module: &[&str], raw: &str| Source {
        rel: rel.into(),
        krate: "multiproc",
        module: module.iter().map(|m| m.to_string()).collect(),
        code: strip(raw),
        raw: raw.into(),
    };
    let sources = vec![
        source("src/lib.rs", &[], "mod a;\nmod b;\npub use b::Thing;\n"),
        source("src/a.rs", &["a"], "use crate::Thing;\npub struct Other;\n"),
        source("src/b.rs", &["b"], "pub struct Thing;\nfn f() -> crate::a::Other { todo!() }\n"),
    ];
    let found = cycle_offenders(&sources);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].contains("src/a.rs:1 -> src/b.rs:2 -> src/a.rs"), "{found:#?}");
    let acyclic = vec![
        source("src/lib.rs", &[], "mod a;\nmod b;\npub use b::Thing;\n"),
        source("src/a.rs", &["a"], "use crate::Thing;\nmod tests { use super::*; }\n"),
        source("src/b.rs", &["b"], "pub struct Thing;\n"),
    ];
    assert_eq!(cycle_offenders(&acyclic), Vec::<String>::new());
}

#[test]
fn functions_are_measured_from_fn_to_closing_brace() {
    let raw = "trait T { fn decl(&self); }\nfn short() {}\n// This match reads as a table.\nfn long(x: [u8; 2]) -> u8 {\n    if x[0] == 0 { 1 }\n    else { 2 }\n}\n";
    let found = functions("f.rs", &strip(raw), raw);
    let got: Vec<(&str, usize, usize, bool)> =
        found.iter().map(|f| (f.name.as_str(), f.line, f.lines, f.table)).collect();
    assert_eq!(got, vec![("short", 2, 1, false), ("long", 4, 4, true)]);
}

#[test]
fn test_items_are_left_out_of_the_graph() {
    let code = "use a::B;\n#[cfg(test)]\nuse c::D;\n#[cfg(test)]\nmod tests {\n    use super::*;\n}\nfn e() {}\n";
    let kept = without_test_items(code);
    assert_eq!(kept.lines().count(), code.lines().count());
    assert!(kept.contains("use a::B;") && kept.contains("fn e() {}"), "{kept}");
    assert!(!kept.contains("c::D") && !kept.contains("super"), "{kept}");
}

/// Prints the current figures (run with `--ignored --nocapture` to see them).
#[test]
#[ignore = "a report, not a rule"]
fn report() {
    let sources = sources();
    for line in cycle_offenders(&sources) {
        println!("{line}");
    }
    for line in layer_offenders(&sources) {
        println!("{line}");
    }
    let (_, long) = length_offenders(&sources);
    for f in &long {
        println!("{}:{}: fn {} {} lines", f.file, f.line, f.name, f.lines);
    }
    println!(
        "{} functions over {LONG_FN} lines, {} over {MAX_FN}",
        long.len(),
        long.iter().filter(|f| f.lines > MAX_FN).count()
    );
}
