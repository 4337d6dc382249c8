// The admin API's proto is compiled here once it exists (proto/); for now the
// build only records the commit it was built from, for logs and --version.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
}
