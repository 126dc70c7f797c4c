//! `herald serve` and `herald migrate` on both backends.

use std::time::{Duration, Instant};

use crate::support::{
    drop_database, empty_dir, get, herald, postgres_database, redis_url, serve, terminate,
};

#[tokio::test]
async fn serve_with_no_configuration_answers_health_in_an_empty_folder() {
    let dir = empty_dir();
    let started = Instant::now();
    let mut server = serve(herald(&dir)).await;
    let (status, body) = get(server.address, "/healthz").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, body) = get(server.address, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");
    assert_eq!(body["components"][0]["name"], "store");
    assert_eq!(body["components"][0]["backend"], "sqlite");
    assert_eq!(body["components"][1]["backend"], "in-process");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    // The embedded default made its database in the working folder.
    assert!(dir.join("herald.db").exists());

    // SIGTERM drains and exits cleanly.
    let status = terminate(&mut server.child, Duration::from_secs(10)).await;
    assert!(status.success(), "{status}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn serve_on_postgres_and_redis_reports_each_component() {
    let url = postgres_database().await;
    let dir = empty_dir();
    let mut command = herald(&dir);
    command
        .env("HERALD_DATABASE_URL", &url)
        .env("HERALD_CACHE_REDIS_URL", redis_url());
    let server = serve(command).await;
    let (status, body) = get(server.address, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["components"][0]["backend"], "postgres");
    assert_eq!(body["components"][0]["up"], true);
    assert_eq!(body["components"][1]["backend"], "redis");
    assert_eq!(body["components"][1]["up"], true);
    drop(server);

    // A cache that cannot be reached makes the server not ready, and says why.
    let mut command = herald(&dir);
    command
        .env("HERALD_DATABASE_URL", &url)
        .env("HERALD_CACHE_REDIS_URL", "redis://127.0.0.1:1");
    let server = serve(command).await;
    let (status, body) = get(server.address, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["components"][0]["up"], true);
    assert_eq!(body["components"][1]["up"], false);
    assert!(
        body["components"][1]["error"]
            .as_str()
            .unwrap()
            .contains("refused"),
        "{body}"
    );
    drop(server);
    drop_database(&url).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn migrate_applies_the_schema_and_is_repeatable() {
    let url = postgres_database().await;
    let dir = empty_dir();
    for _ in 0..2 {
        let output = herald(&dir)
            .args(["--database-url", &url, "migrate"])
            .output()
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.contains("migrations applied") && stdout.contains("postgres"),
            "{stdout}"
        );
        assert!(
            !stdout.contains("postgres:postgres@"),
            "the password is not printed: {stdout}"
        );
    }
    drop_database(&url).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn bad_configuration_fails_with_one_clear_line() {
    let dir = empty_dir();
    let output = herald(&dir)
        .args(["--database-url", "mysql://x", "migrate"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("herald: database.url must start with"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    std::fs::write(dir.join("bad.toml"), "[databse]\nurl = 1\n").unwrap();
    let output = herald(&dir)
        .args(["--config", "bad.toml", "migrate"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("databse"));
    let _ = std::fs::remove_dir_all(dir);
}
