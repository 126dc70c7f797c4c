//! Tidy checks that keep the crate's shape: no IO dependencies, module headers, small files, no skipped tests.
//! They read the sources, so a violation fails `cargo test` rather than a review.

use std::fs;
use std::path::{Path, PathBuf};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

#[test]
fn the_domain_depends_on_no_io_crate() {
    let manifest = fs::read_to_string(crate_dir().join("Cargo.toml")).unwrap();
    for line in manifest.lines().map(str::trim) {
        for banned in ["tokio", "sqlx", "reqwest", "redis", "axum", "async-graphql"] {
            assert!(
                !line.starts_with(banned),
                "crates/domain must not depend on {banned}: {line}"
            );
        }
    }
}

#[test]
fn every_module_opens_with_a_doc_comment_and_stays_small() {
    for file in rust_files(&crate_dir().join("src"))
        .into_iter()
        .chain(rust_files(&crate_dir().join("tests")))
    {
        let text = fs::read_to_string(&file).unwrap();
        assert!(
            text.starts_with("//!"),
            "{} must open with a //! comment",
            file.display()
        );
        if file.starts_with(crate_dir().join("src")) {
            let lines = text.lines().count();
            assert!(
                lines <= 500,
                "{} has {lines} lines; split it along a natural seam",
                file.display()
            );
        }
    }
}

#[test]
fn no_test_is_skipped_or_expected_to_panic() {
    let banned = [concat!("#[", "ignore"), concat!("#[", "should_panic")];
    for file in rust_files(&crate_dir().join("src"))
        .into_iter()
        .chain(rust_files(&crate_dir().join("tests")))
    {
        let text = fs::read_to_string(&file).unwrap();
        for pattern in banned {
            assert!(
                !text.contains(pattern),
                "{} contains {pattern}",
                file.display()
            );
        }
    }
}
