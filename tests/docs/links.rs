//! Every relative link in the README and the book leads to a file and
//! heading that exist, every page is linked from the index, every source
//! path named exists, and no code span crosses a line.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::markdown::{code_spans, headings, link_targets, prose_lines, slug};
use super::{common, page, repo};

/// README.md and every page under docs/.
fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![repo().join("README.md")];
    let mut dirs = vec![repo().join("docs")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The relative links of `md` (a file at `file`) that lead nowhere: no such
/// file, or no such heading in it.
fn broken_links(file: &Path, md: &str) -> Vec<String> {
    let mut broken = Vec::new();
    for target in link_targets(md) {
        if target.contains("://") || target.starts_with("mailto:") {
            continue;
        }
        let (path, anchor) = match target.split_once('#') {
            Some((p, a)) => (p, Some(a)),
            None => (target.as_str(), None),
        };
        let resolved = if path.is_empty() {
            file.to_path_buf()
        } else {
            file.parent().unwrap().join(path)
        };
        if !resolved.exists() {
            broken.push(format!("{target}: no such file"));
            continue;
        }
        if let Some(anchor) = anchor {
            let text = if path.is_empty() {
                md.to_string()
            } else {
                std::fs::read_to_string(&resolved).unwrap_or_default()
            };
            if !headings(&text).iter().any(|(_, h)| slug(h) == anchor) {
                broken.push(format!("{target}: no heading #{anchor}"));
            }
        }
    }
    broken
}

/// The code spans of `md` that name a path in the repository.
fn repo_paths(md: &str) -> Vec<String> {
    const ROOTS: [&str; 8] = [
        "src/",
        "tests/",
        "deploy/",
        "benches/",
        "examples/",
        "proto/",
        "migrations/",
        "docs/",
    ];
    prose_lines(md)
        .into_iter()
        .flat_map(code_spans)
        .filter(|s| ROOTS.iter().any(|r| s.starts_with(r)))
        .filter(|s| !s.contains(['<', '*', ' ']) && !s.contains("NNNN"))
        .collect()
}

#[test]
fn every_link_and_path_in_the_docs_leads_somewhere() {
    let mut problems = Vec::new();
    let files = markdown_files();
    for file in &files {
        let md = common::read(file);
        let name = file.strip_prefix(repo()).unwrap().display().to_string();
        // The checks read code spans line by line: none may cross a line.
        for line in prose_lines(&md) {
            if line.matches('`').count() % 2 == 1 {
                problems.push(format!("{name}: a code span crosses the line {line:?}"));
            }
        }
        for b in broken_links(file, &md) {
            problems.push(format!("{name}: link {b}"));
        }
        for p in repo_paths(&md) {
            if !repo().join(&p).exists() {
                problems.push(format!("{name}: `{p}` does not exist"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Every page of the book is reachable from its index.
    let index = page("docs/README.md");
    let linked: BTreeSet<PathBuf> = link_targets(&index)
        .iter()
        .map(|t| repo().join("docs").join(t.split('#').next().unwrap()))
        .collect();
    for file in files.iter().filter(|f| f.starts_with(repo().join("docs"))) {
        assert!(
            linked.contains(file) || file.ends_with("docs/README.md"),
            "docs/README.md does not link to {}",
            file.display()
        );
    }
    println!("docs: {} pages, links and paths checked", files.len());
}

#[test]
fn a_broken_link_or_a_missing_heading_is_caught() {
    let file = repo().join("docs/README.md");
    let md = "[ok](operators/running.md#the-port-rule) [gone](operators/nope.md) \
              [bad anchor](operators/running.md#no-such-part) [web](https://example.com) \
              `[not](a link)`\n\n## Here\n[self](#here) [self bad](#there)\n";
    let broken = broken_links(&file, md);
    assert_eq!(
        broken,
        [
            "operators/nope.md: no such file",
            "operators/running.md#no-such-part: no heading #no-such-part",
            "#there: no heading #there",
        ]
    );
    assert_eq!(
        slug("Serving others: a reverse proxy"),
        "serving-others-a-reverse-proxy"
    );
    assert_eq!(slug("`GetStats` and more"), "getstats-and-more");
}
