//! The real curl, run from async tests: raw, or one response read back
//! with its status, headers and body.

use std::process::{Command, Output};

use super::require_tool;

pub const CURL_INSTALL: &str = "apt-get install curl";

/// Runs the real curl with `args` (never waiting more than a minute).
pub async fn curl(args: Vec<String>) -> Output {
    let bin = require_tool("curl", CURL_INSTALL);
    tokio::task::spawn_blocking(move || {
        Command::new(bin)
            .args(["-sS", "--max-time", "60"])
            .args(&args)
            .output()
            .expect("curl runs")
    })
    .await
    .unwrap()
}

/// One response as curl saw it: status, headers (lower-cased names), body.
pub struct Got {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub curl_exit: Option<i32>,
}

impl Got {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// GETs `url` with curl and `extra` arguments.
pub async fn fetch(url: &str, extra: &[&str]) -> Got {
    let tmp = tempfile::tempdir().unwrap();
    let (head, body) = (tmp.path().join("head"), tmp.path().join("body"));
    let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    args.extend([
        "-D".into(),
        head.to_str().unwrap().into(),
        "-o".into(),
        body.to_str().unwrap().into(),
        url.into(),
    ]);
    let out = curl(args).await;
    let text = std::fs::read_to_string(&head).unwrap_or_default();
    let mut lines = text.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Got {
        status,
        headers,
        body: std::fs::read(&body).unwrap_or_default(),
        curl_exit: out.status.code(),
    }
}
