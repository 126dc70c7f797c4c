//! `herald tenant` and `herald apikey`, run as an operator runs them, on a SQLite file.

use std::path::Path;
use std::process::Output;

use commands::keys::{self, Scope};

use crate::support::{empty_dir, herald};

async fn run(dir: &Path, args: &[&str]) -> Output {
    herald(dir).args(args).output().await.unwrap()
}

#[track_caller]
fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// The one line a failed command prints, which must name `expected`.
#[track_caller]
fn one_line_error(output: &Output, expected: &str) {
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("herald: ") && stderr.contains(expected),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
}

#[tokio::test]
async fn an_operator_creates_a_tenant_and_a_key_that_authenticates() {
    let dir = empty_dir();
    let output = run(&dir, &["tenant", "create", "acme"]).await;
    assert_eq!(stdout(&output), "tenant acme created\n");

    let output = run(
        &dir,
        &[
            "apikey",
            "create",
            "--tenant",
            "acme",
            "--scopes",
            "send,read",
        ],
    )
    .await;
    let printed = stdout(&output);
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), 1, "{printed}");
    let key = lines[0];
    assert!(key.starts_with("hk_"), "{key}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("will not be shown again"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let url = format!("sqlite://{}", dir.join("herald.db").display());
    let store = store::Store::connect(&url).await.unwrap();
    let caller = keys::authenticate(&store, key).await.unwrap();
    assert_eq!(caller.tenant.as_str(), "acme");
    assert!(caller.allows(Scope::Send) && caller.allows(Scope::Read));
    assert!(!caller.allows(Scope::Recall));

    let output = run(&dir, &["apikey", "revoke", &caller.key_id]).await;
    assert!(stdout(&output).contains("revoked"));
    let revoked = keys::authenticate(&store, key).await.unwrap_err();
    assert_eq!(revoked.code(), "REVOKED_KEY");
    if let store::Store::Sqlite(s) = &store {
        s.close().await;
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn mistakes_fail_with_one_clear_line() {
    let dir = empty_dir();
    let output = run(
        &dir,
        &["apikey", "create", "--tenant", "nobody", "--scopes", "send"],
    )
    .await;
    one_line_error(&output, "tenant nobody does not exist");

    let output = run(&dir, &["tenant", "create", "acme"]).await;
    stdout(&output);
    one_line_error(
        &run(&dir, &["tenant", "create", "acme"]).await,
        "tenant acme already exists",
    );
    one_line_error(
        &run(&dir, &["tenant", "create", "Not A Tenant"]).await,
        "tenant id",
    );
    one_line_error(
        &run(
            &dir,
            &[
                "apikey",
                "create",
                "--tenant",
                "acme",
                "--scopes",
                "send,write",
            ],
        )
        .await,
        "unknown scope \"write\"",
    );
    one_line_error(
        &run(&dir, &["apikey", "revoke", "nosuchkey"]).await,
        "does not exist",
    );
    let _ = std::fs::remove_dir_all(dir);
}
