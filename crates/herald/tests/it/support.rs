//! Runs the `herald` binary and talks HTTP to it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use sqlx::Connection;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// A running `herald serve`, killed when dropped.
pub struct Server {
    pub child: Child,
    pub address: SocketAddr,
}

/// A fresh empty folder, as a new user's would be.
pub fn empty_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("herald-it-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn herald(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
    command
        .current_dir(dir)
        .env_remove("HERALD_DATABASE_URL")
        .env_remove("HERALD_CACHE_REDIS_URL")
        .env_remove("HERALD_CONFIG")
        .env_remove("HERALD_SECRET_KEY")
        .env_remove("HERALD_SECRET_KEY_PREVIOUS")
        .env_remove("HERALD_ROLE")
        .env("RUST_LOG", "info")
        .kill_on_drop(true);
    command
}

/// Starts `herald serve` on a free port and waits for it to say where it listens.
pub async fn serve(command: Command) -> Server {
    serve_with(command, &[]).await
}

/// [`serve`] with more arguments to `serve`, such as `--role api`.
pub async fn serve_with(mut command: Command, args: &[&str]) -> Server {
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let address = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.split("address=").nth(1) {
                return rest.split_whitespace().next().unwrap().parse().unwrap();
            }
        }
        panic!("herald exited before listening");
    })
    .await
    .expect("herald did not listen within 10 seconds");
    // Keep draining the log so the process never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Server { child, address }
}

/// [`serve`] with JSON logs (`log.format = "json"`), keeping every log line it writes.
pub async fn serve_logged(
    mut command: Command,
) -> (Server, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let kept = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let address = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            kept.lock().unwrap().push(line.clone());
            let json: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"));
            if let Some(address) = json["fields"]["address"].as_str() {
                return address.parse().unwrap();
            }
        }
        panic!("herald exited before listening");
    })
    .await
    .expect("herald did not listen within 10 seconds");
    let sink = std::sync::Arc::clone(&kept);
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            sink.lock().unwrap().push(line);
        }
    });
    (Server { child, address }, kept)
}

/// A plain HTTP/1.1 GET: status and body.
pub async fn get(address: SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

/// A fresh Postgres database; panics loudly when Postgres cannot be reached.
pub async fn postgres_database() -> String {
    let admin = std::env::var("HERALD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| {
            panic!("Postgres is not reachable ({e}); run scripts/test, which starts it")
        });
    let name = format!("herald_test_{}", uuid::Uuid::now_v7().simple());
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .await
        .unwrap();
    let slash = admin.rfind('/').unwrap();
    format!("{}/{name}", &admin[..slash])
}

/// Drops a database made by [`postgres_database`].
pub async fn drop_database(url: &str) {
    let (server, name) = url.rsplit_once('/').unwrap();
    let mut conn = sqlx::PgConnection::connect(&format!("{server}/postgres"))
        .await
        .unwrap();
    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .unwrap();
}

pub fn redis_url() -> String {
    std::env::var("HERALD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Sends SIGTERM to `child` and waits for it to exit, at most `within`; its exit status.
pub async fn terminate(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let pid = child.id().expect("the process is running").to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    tokio::time::timeout(within, child.wait())
        .await
        .unwrap_or_else(|_| panic!("no exit within {within:?} of SIGTERM"))
        .unwrap()
}
