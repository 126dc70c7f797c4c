//! `herald bench` runs end to end as a user runs it, and prints the JSON the README quotes.
//! The numbers of a debug build on a busy test machine mean nothing; what is checked is that
//! every line was measured.

use serde_json::Value;

use crate::support::{empty_dir, herald};

async fn bench(backend: &str) -> Value {
    let dir = empty_dir();
    let output = herald(&dir)
        .args([
            "bench",
            "--backend",
            backend,
            "--duration",
            "1",
            "--concurrency",
            "4",
            "--store-size",
            "500",
            "--batch-size",
            "100",
        ])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"))
}

#[track_caller]
fn positive(report: &Value, path: &str) {
    let value = report
        .pointer(path)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{path} missing in {report:#}"));
    assert!(value > 0.0, "{path} = {value} in {report:#}");
}

fn every_line_measured(report: &Value) {
    for path in [
        "/send/per_sec",
        "/send/p50_ms",
        "/send/p99_ms",
        "/batch_send/messages_per_sec",
        "/dispatch/per_sec",
        "/projections/per_sec",
        "/message/p50_ms",
        "/message/p99_ms",
        "/message/one_client/p50_ms",
        "/message/one_client/p99_ms",
        "/replay/per_sec",
        "/ceiling/rows_per_sec",
        "/ceiling/batch_send_fraction",
        "/rss_mb/api_idle",
        "/rss_mb/api_peak",
    ] {
        positive(report, path);
    }
    assert_eq!(report["send"]["errors"], 0, "{report:#}");
    assert_eq!(report["batch_send"]["errors"], 0, "{report:#}");
    assert_eq!(report["message"]["errors"], 0, "{report:#}");
    // The api role accepts and does not dispatch: the whole store waits for the dispatch role.
    let stored = report["message"]["store_size"].as_u64().unwrap();
    assert!(stored >= 500, "{report:#}");
    assert!(
        report["dispatch"]["backlog_at_start"].as_u64().unwrap() >= 500,
        "{report:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_measures_every_line_on_sqlite() {
    let report = bench("sqlite").await;
    assert_eq!(report["backend"], "sqlite");
    assert_eq!(report["cache"], "in-process");
    every_line_measured(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_measures_every_line_on_postgres_with_redis() {
    let report = bench("postgres").await;
    assert_eq!(report["backend"], "postgres");
    assert_eq!(report["cache"], "redis");
    every_line_measured(&report);
}
