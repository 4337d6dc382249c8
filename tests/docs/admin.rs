//! Every rpc of the Admin service, parsed from `proto/` at test time, has a
//! section with a grpcurl call in the admin API page.

use std::collections::BTreeMap;

use super::markdown::prose_lines;
use super::{common, page, repo, ADMIN_PAGE};

/// The rpcs of `service Admin` in the proto files under `proto/`.
fn admin_rpcs() -> Vec<String> {
    let mut files = Vec::new();
    let mut dirs = vec![repo().join("proto")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "proto") {
                files.push(path);
            }
        }
    }
    let rpcs: Vec<String> = files
        .iter()
        .flat_map(|f| service_rpcs(&common::read(f), "Admin"))
        .collect();
    assert!(!rpcs.is_empty(), "no `service Admin` in {files:?}");
    rpcs
}

/// The rpc names of service `name` in one proto file's text.
fn service_rpcs(proto: &str, name: &str) -> Vec<String> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in proto.lines() {
        let line = line.split("//").next().unwrap().trim();
        if !inside {
            inside = line
                .strip_prefix("service ")
                .map(|s| s.trim_end_matches('{').trim())
                == Some(name);
            continue;
        }
        if line.starts_with('}') {
            break;
        }
        if let Some(rest) = line.strip_prefix("rpc ") {
            let rpc: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.push(rpc);
        }
    }
    out
}

/// The page's method sections: `### Name` headings under `## Methods`, each
/// with the text up to the next heading.
fn method_sections(md: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut in_methods = false;
    let mut current: Option<String> = None;
    for line in prose_lines(md) {
        if let Some(h2) = line.strip_prefix("## ") {
            in_methods = h2.trim() == "Methods";
            current = None;
        } else if let Some(h3) = line.strip_prefix("### ").filter(|_| in_methods) {
            let name = h3.trim().trim_matches('`').to_string();
            out.insert(name.clone(), String::new());
            current = Some(name);
        } else if let Some(name) = &current {
            let text = out.get_mut(name).unwrap();
            text.push_str(line);
            text.push('\n');
        }
    }
    out
}

/// The rpcs the page has no section for, or whose section has no call.
fn rpcs_missing(md: &str, rpcs: &[String]) -> Vec<String> {
    let sections = method_sections(md);
    rpcs.iter()
        .filter_map(|rpc| match sections.get(rpc) {
            None => Some(format!("{rpc}: no `### {rpc}` section under `## Methods`")),
            Some(text) if !text.contains(&format!("dhtfs.admin.v1.Admin/{rpc}")) => {
                Some(format!("{rpc}: its section has no grpcurl call"))
            }
            Some(_) => None,
        })
        .collect()
}

#[test]
fn every_admin_method_is_in_the_admin_api_page() {
    let md = page(ADMIN_PAGE);
    let rpcs = admin_rpcs();
    let missing = rpcs_missing(&md, &rpcs);
    assert!(missing.is_empty(), "{ADMIN_PAGE}:\n{}", missing.join("\n"));
    let unknown: Vec<String> = method_sections(&md)
        .into_keys()
        .filter(|s| !rpcs.contains(s))
        .collect();
    assert!(
        unknown.is_empty(),
        "{ADMIN_PAGE} has sections for methods the service lacks: {unknown:?}"
    );
    println!("docs: {} admin methods documented", rpcs.len());
}

#[test]
fn an_admin_method_taken_out_of_its_page_is_caught() {
    let md = page(ADMIN_PAGE);
    let rpcs = admin_rpcs();
    for rpc in &rpcs {
        let heading = format!("### {rpc}\n");
        assert!(md.contains(&heading), "no heading for {rpc}");
        let without = md.replacen(&heading, "", 1);
        let missing = rpcs_missing(&without, &rpcs);
        assert!(
            missing.iter().any(|m| m.starts_with(&format!("{rpc}:"))),
            "{rpc} taken out, yet: {missing:?}"
        );
    }
    assert_eq!(
        service_rpcs("service Admin {\n  // c\n  rpc A(X) returns (Y);\n  rpc B (X) returns (stream Y);\n}\nservice Other {\n rpc C(X) returns (Y);\n}", "Admin"),
        ["A", "B"]
    );
}
