//! Just enough Markdown for the docs checks: prose lines (outside fenced
//! blocks), fenced blocks by info string, code spans, tables, headings and
//! their GitHub anchors, link targets. Code spans never cross a line in our
//! pages (`links.rs` checks it), so lines are read one at a time.

/// The lines of `md` outside fenced code blocks.
pub fn prose_lines(md: &str) -> Vec<&str> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in md.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push(line);
        }
    }
    out
}

/// The bodies of the fenced blocks whose info string is exactly `info`.
pub fn fenced_blocks(md: &str, info: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<(bool, Vec<&str>)> = None;
    for line in md.lines() {
        let trimmed = line.trim();
        match &mut current {
            None => {
                if let Some(rest) = trimmed.strip_prefix("```") {
                    current = Some((rest.trim() == info, Vec::new()));
                }
            }
            Some((wanted, body)) => {
                if trimmed == "```" {
                    if *wanted {
                        blocks.push(body.join("\n"));
                    }
                    current = None;
                } else {
                    body.push(line);
                }
            }
        }
    }
    blocks
}

/// The code spans (`like this`) of one line.
pub fn code_spans(line: &str) -> Vec<String> {
    line.split('`')
        .skip(1)
        .step_by(2)
        .map(|s| s.replace("\\|", "|"))
        .collect()
}

/// A table: its header cells and its rows' cells (separator row left out).
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// The cells of a table line: split on `|` but not on `\|`.
pub fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|');
    let inner = inner.strip_suffix('|').unwrap_or(inner);
    let mut out = vec![String::new()];
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                out.last_mut().unwrap().push_str("\\|");
                chars.next();
            }
            '|' => out.push(String::new()),
            c => out.last_mut().unwrap().push(c),
        }
    }
    out.into_iter().map(|c| c.trim().to_string()).collect()
}

/// Every table of `md` outside code blocks.
pub fn tables(md: &str) -> Vec<Table> {
    let mut out = Vec::new();
    let mut lines: Vec<&str> = Vec::new();
    let mut flush = |lines: &mut Vec<&str>| {
        if lines.len() >= 2 {
            out.push(Table {
                header: cells(lines[0]),
                rows: lines[2..].iter().map(|l| cells(l)).collect(),
            });
        }
        lines.clear();
    };
    for line in prose_lines(md) {
        if line.trim_start().starts_with('|') {
            lines.push(line);
        } else {
            flush(&mut lines);
        }
    }
    flush(&mut lines);
    out
}

/// The rows of the tables whose first header cell is `first`.
pub fn rows_under(md: &str, first: &str) -> Vec<Vec<String>> {
    tables(md)
        .into_iter()
        .filter(|t| t.header.first().map(String::as_str) == Some(first))
        .flat_map(|t| t.rows)
        .collect()
}

/// The ATX headings of `md` (outside code blocks): (level, text).
pub fn headings(md: &str) -> Vec<(usize, String)> {
    prose_lines(md)
        .into_iter()
        .filter_map(|l| {
            let level = l.chars().take_while(|&c| c == '#').count();
            let text = l.get(level..)?.strip_prefix(' ')?;
            (level > 0).then(|| (level, text.trim().to_string()))
        })
        .collect()
}

/// GitHub's anchor for a heading.
pub fn slug(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The targets of the inline links `[text](target)` of `md`, outside code.
pub fn link_targets(md: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in prose_lines(md) {
        // Code spans may hold brackets that are not links.
        let prose: String = line.split('`').step_by(2).collect::<Vec<_>>().join("");
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].to_string());
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn fenced_blocks_are_found_by_their_exact_info_string() {
    let md = "```sh tour\necho a\n```\n\n```sh tour-devnet\nrun\n```\n```sh\nx\n```\n";
    assert_eq!(fenced_blocks(md, "sh tour"), ["echo a"]);
    assert_eq!(fenced_blocks(md, "sh tour-devnet"), ["run"]);
    assert!(fenced_blocks(&md.replace("sh tour\n", "sh\n"), "sh tour").is_empty());
}
