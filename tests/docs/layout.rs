//! The layout in the architecture page names every entry at the top of
//! `src/`, and no file that is not there.

use std::collections::BTreeSet;
use std::path::Path;

use super::markdown::{code_spans, prose_lines, rows_under};
use super::{page, repo, LAYOUT_PAGE};

/// What the layout page misses of `src/`: top-level entries it does not
/// name, and files it names in a directory's row that are not there.
fn layout_problems(md: &str, src: &Path) -> Vec<String> {
    let named: BTreeSet<String> = prose_lines(md).into_iter().flat_map(code_spans).collect();
    let mut problems = Vec::new();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().to_string();
        let wanted = if entry.path().is_dir() {
            format!("src/{name}/")
        } else {
            format!("src/{name}")
        };
        if !named.contains(&wanted) {
            problems.push(format!("`{wanted}` is not in the layout"));
        }
    }
    for row in rows_under(md, "path") {
        let Some(dir) = row[0].strip_prefix('`').and_then(|s| s.strip_suffix("/`")) else {
            continue;
        };
        for file in row[1..].iter().flat_map(|c| code_spans(c)) {
            let is_file = file.ends_with(".rs")
                && file
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
            if is_file && !repo().join(dir).join(&file).exists() {
                problems.push(format!("`{dir}/{file}` is named but does not exist"));
            }
        }
    }
    problems.sort();
    problems
}

#[test]
fn the_layout_names_every_module_of_src() {
    let problems = layout_problems(&page(LAYOUT_PAGE), &repo().join("src"));
    assert!(
        problems.is_empty(),
        "{LAYOUT_PAGE}:\n{}",
        problems.join("\n")
    );
}

#[test]
fn a_module_taken_out_of_the_layout_is_caught() {
    let md = page(LAYOUT_PAGE);
    for row in ["| `src/rtt.rs` |", "| `src/upkeep/` |"] {
        let without: String = md
            .lines()
            .filter(|l| !l.starts_with(row))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_ne!(without, md, "no row {row}");
        let name = row.trim_start_matches("| `").trim_end_matches("` |");
        assert!(
            layout_problems(&without, &repo().join("src"))
                .contains(&format!("`{name}` is not in the layout")),
            "{name} taken out, yet not missed"
        );
    }
    let renamed = md.replacen("`sweep.rs`", "`swept.rs`", 1);
    assert!(layout_problems(&renamed, &repo().join("src"))
        .contains(&"`src/upkeep/swept.rs` is named but does not exist".to_string()));
}
