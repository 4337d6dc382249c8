//! The docs stay true: every setting of `Config` is in the configuration
//! reference with its default, every Admin rpc in the admin API page, every
//! metric family real nodes export in the metrics page, every flag in the
//! running page and every alert in the monitoring page; the README's tour
//! runs as written against a real devnet, with the real curl and grpcurl;
//! every relative link and every source path named leads somewhere.
//!
//! Each check is a plain function of a page's text; the tests named
//! `..._is_caught` take entries out of the real page one at a time and show
//! the check naming each, so none of them can pass on a page that lost one.

mod common;

#[path = "docs/admin.rs"]
mod admin;
#[path = "docs/alerts.rs"]
mod alerts;
#[path = "docs/flags.rs"]
mod flags;
#[path = "docs/layout.rs"]
mod layout;
#[path = "docs/links.rs"]
mod links;
#[path = "docs/markdown.rs"]
mod markdown;
#[path = "docs/metrics.rs"]
mod metrics;
#[path = "docs/settings.rs"]
mod settings;
#[path = "docs/tour.rs"]
mod tour;

use std::path::Path;

const CONFIG_PAGE: &str = "docs/operators/configuration.md";
const ADMIN_PAGE: &str = "docs/operators/admin-api.md";
const METRICS_PAGE: &str = "docs/operators/metrics.md";
const LAYOUT_PAGE: &str = "docs/internals/architecture.md";
/// The line the README gives for a second node beside a default one.
const JOIN_COMMAND: &str =
    "cargo run --release -- node --listen 0.0.0.0:7410 --data-dir ./node2 --bootstrap 127.0.0.1:7400";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A file of the repository, by its path from the root.
fn page(rel: &str) -> String {
    common::read(&repo().join(rel))
}
