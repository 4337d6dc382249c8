//! Every flag of `dhtfs node`, `put`, `get` and `devnet`, read from the built
//! binary's `--help`, is named in the running page.

use std::collections::BTreeSet;
use std::process::Command;

use super::markdown::{code_spans, prose_lines};
use super::page;

/// The long flags a `--help` text lists (`--help` and `--version` aside).
fn long_flags(help: &str) -> Vec<String> {
    help.lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let l = l
                .strip_prefix("-")
                .filter(|r| !r.starts_with('-'))
                .map_or(l, |r| r.split_once(", ").map_or(l, |(_, long)| long));
            let flag = l.split([' ', '=']).next()?;
            (flag.starts_with("--") && flag.len() > 2).then(|| flag.to_string())
        })
        .filter(|f| f != "--help" && f != "--version")
        .collect()
}

/// The flags no code span of the page starts with.
fn flags_missing(md: &str, flags: &[String]) -> Vec<String> {
    let named: BTreeSet<String> = prose_lines(md)
        .into_iter()
        .flat_map(code_spans)
        .filter_map(|s| s.split_whitespace().next().map(str::to_string))
        .collect();
    flags
        .iter()
        .filter(|f| !named.contains(*f))
        .cloned()
        .collect()
}

/// Every long flag of `dhtfs SUBCOMMAND --help`, from the built binary.
fn subcommand_flags(subcommand: &str) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_dhtfs"))
        .args([subcommand, "--help"])
        .output()
        .expect("dhtfs runs");
    assert!(out.status.success(), "dhtfs {subcommand} --help failed");
    let flags = long_flags(&String::from_utf8_lossy(&out.stdout));
    assert!(!flags.is_empty(), "no flags in dhtfs {subcommand} --help");
    flags
}

#[test]
fn every_flag_is_in_the_running_page() {
    let md = page("docs/operators/running.md");
    let mut missing = Vec::new();
    for sub in ["node", "put", "get", "devnet"] {
        for flag in flags_missing(&md, &subcommand_flags(sub)) {
            missing.push(format!("dhtfs {sub} {flag}"));
        }
    }
    assert!(
        missing.is_empty(),
        "docs/operators/running.md does not name: {missing:?}"
    );
}

#[test]
fn a_flag_taken_out_of_the_running_page_is_caught() {
    let md = page("docs/operators/running.md");
    let flags = subcommand_flags("node");
    for flag in &flags {
        let without: String = md
            .lines()
            .filter(|l| {
                !code_spans(l)
                    .iter()
                    .any(|s| s.split_whitespace().next() == Some(flag.as_str()))
            })
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(
            flags_missing(&without, &flags).contains(flag),
            "{flag} taken out, yet not missed"
        );
    }
    assert_eq!(
        long_flags("Options:\n      --config <FILE>  x\n  -o, --out <OUT>  y\n  -q, --quiet\n  -h, --help  z\n  -V, --version\n"),
        ["--config", "--out", "--quiet"]
    );
}
