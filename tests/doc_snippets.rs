//! Every snippet in the README and in `docs/` runs as written.
//!
//! The running itself is `cargo test --doc`: `src/lib.rs` includes each Markdown file as the
//! documentation of a `#[cfg(doctest)]` item, so rustdoc compiles every Rust block and runs
//! it (`rust,no_run` blocks, servers that loop forever, are compiled only). This test keeps
//! that honest: no Markdown file is left out of the doc tests, every code block says what it
//! is (a `rust` block is run, anything else — `sh`, `text`, `gdscript` — is not Rust), no
//! Rust block is skipped with `ignore`, and the documents cite no Markdown file the
//! repository does not have.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every Markdown file under docs/, as paths relative to the crate root.
fn documents() -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    let mut files = vec![root().join("README.md")];
    walk(&root().join("docs"), &mut files);
    let mut names: Vec<String> = files.iter().map(|p| relative(p)).collect::<Vec<_>>();
    names.sort();
    names
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap()
        .to_string_lossy()
        .replace('\\', "/")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(root().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A fenced code block: where it starts (1-based line) and its info string.
struct Block {
    line: usize,
    info: String,
}

/// The fenced code blocks of a CommonMark document (``` or ~~~, indented at most 3 spaces).
fn blocks(text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<(char, usize)> = None;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start_matches(' ');
        if line.len() - trimmed.len() > 3 {
            continue;
        }
        let Some(fence_char) = trimmed.chars().next().filter(|c| *c == '`' || *c == '~') else {
            continue;
        };
        let fence_len = trimmed.chars().take_while(|c| *c == fence_char).count();
        if fence_len < 3 {
            continue;
        }
        let rest = trimmed[fence_len..].trim();
        match open {
            None => {
                open = Some((fence_char, fence_len));
                blocks.push(Block {
                    line: index + 1,
                    info: rest.to_string(),
                });
            }
            Some((c, len)) if c == fence_char && fence_len >= len && rest.is_empty() => {
                open = None;
            }
            Some(_) => {}
        }
    }
    assert!(open.is_none(), "a code block is never closed");
    blocks
}

/// Whether rustdoc treats a block with this info string as Rust (its `LangString` rules:
/// an empty string, or only Rust words and doc-test attributes).
fn rustdoc_sees_rust(info: &str) -> bool {
    info.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .all(|token| {
            matches!(
                token,
                "rust"
                    | "ignore"
                    | "no_run"
                    | "should_panic"
                    | "compile_fail"
                    | "test_harness"
                    | "standalone_crate"
            ) || token.starts_with("ignore-")
                || token.starts_with("edition")
                || (token.starts_with('E') && token[1..].chars().all(|c| c.is_ascii_digit()))
        })
}

fn tokens(info: &str) -> Vec<&str> {
    info.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .collect()
}

/// The crate-root-relative paths that some file under src/ pulls in with `include_str!`.
fn included_documents() -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for piece in text.split("include_str!(\"").skip(1) {
                    let target = &piece[..piece.find('"').unwrap()];
                    let joined = path.parent().unwrap().join(target);
                    if let Ok(full) = joined.canonicalize() {
                        out.push(relative(&full));
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(&root().join("src").canonicalize().unwrap(), &mut out);
    out
}

#[test]
fn every_document_with_rust_in_it_runs_as_a_doc_test() {
    let included = included_documents();
    let mut missing = Vec::new();
    for name in documents() {
        let has_rust = blocks(&read(&name))
            .iter()
            .any(|b| rustdoc_sees_rust(&b.info));
        // The README and the top-level docs always: a Rust block added later is then run
        // without anyone remembering to list the file.
        let top_level = name == "README.md" || name.matches('/').count() == 1;
        if (has_rust || top_level) && !included.contains(&name) {
            missing.push(name);
        }
    }
    assert!(
        missing.is_empty(),
        "these Markdown files are not doc tests; add them to the `doc_snippets` module at \
         the end of src/lib.rs: {missing:?}"
    );
}

#[test]
fn every_code_block_says_what_it_is_and_rust_blocks_are_not_skipped() {
    let mut problems = Vec::new();
    for name in documents() {
        for block in blocks(&read(&name)) {
            let at = format!("{name}:{}", block.line);
            if block.info.is_empty() {
                problems.push(format!(
                    "{at}: a block without a language (rustdoc runs it as Rust): write \
                     ```rust, or ```sh / ```text / ```gdscript for what is not Rust"
                ));
            } else if rustdoc_sees_rust(&block.info) {
                let tokens = tokens(&block.info);
                if !tokens.contains(&"rust") {
                    problems.push(format!("{at}: say ```rust,{}", block.info));
                }
                if tokens.iter().any(|t| t.starts_with("ignore")) {
                    problems.push(format!(
                        "{at}: `ignore` skips the block; it must compile (`no_run` for a \
                         program that does not end)"
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The text outside fenced code blocks.
fn prose(text: &str) -> String {
    let mut fenced = false;
    let mut out = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The contents of the inline code spans: a run of backticks up to the next run of the
/// same length.
fn code_spans(text: &str) -> Vec<&str> {
    let mut spans = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('`') {
        let run = rest[start..].chars().take_while(|c| *c == '`').count();
        let after = &rest[start + run..];
        let mut search = 0;
        let mut end = None;
        while let Some(found) = after[search..].find('`') {
            let at = search + found;
            let len = after[at..].chars().take_while(|c| *c == '`').count();
            if len == run {
                end = Some(at);
                break;
            }
            search = at + len;
        }
        match end {
            Some(at) => {
                spans.push(after[..at].trim());
                rest = &after[at + run..];
            }
            None => rest = after,
        }
    }
    spans
}

#[test]
fn documents_cite_only_markdown_files_the_repository_has() {
    let mut problems = Vec::new();
    for name in documents() {
        let text = read(&name);
        let dir = root().join(&name).parent().unwrap().to_path_buf();
        // `NAME.md` in code spans, and [text](NAME.md#anchor) links.
        let prose = prose(&text);
        let links = prose
            .split("](")
            .skip(1)
            .map(|rest| rest.split([')', '#']).next().unwrap_or(""));
        for cited in code_spans(&prose).into_iter().chain(links) {
            // A path, not a pattern (`*.md`), a placeholder or a web address.
            let plain = !cited.contains(['*', '<', ' ', '{']) && !cited.contains("://");
            let markdown_file = cited
                .strip_suffix(".md")
                .is_some_and(|stem| !stem.is_empty() && !stem.ends_with('/'));
            if !plain || !markdown_file {
                continue;
            }
            let inside = |path: PathBuf| {
                path.canonicalize()
                    .is_ok_and(|p| p.is_file() && p.starts_with(root().canonicalize().unwrap()))
            };
            if !inside(dir.join(cited)) && !inside(root().join(cited)) {
                problems.push(format!(
                    "{name}: cites {cited}, which is not in the repository"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The README's first block is the contract people copy first: the echo server, then the
/// whole test suite.
#[test]
fn the_readme_starts_with_its_two_commands() {
    let readme = read("README.md");
    let first = blocks(&readme).into_iter().next().expect("a code block");
    assert_eq!(first.info, "sh");
    let body: Vec<&str> = readme
        .lines()
        .skip(first.line)
        .take_while(|l| !l.starts_with("```"))
        .collect();
    assert_eq!(
        body,
        [
            "cargo run --release --example echo_server",
            "bash tests/run.sh"
        ]
    );
}
