//! The web console at `/console`, driven in headless Chromium against a running Herald: a
//! webhook message is found by id with its timeline, today's rates show its channel and
//! account with the ratio and the chart, the receiver lists its messages, the reconciliation
//! view counts it, and a bad key shows the API's error. A screenshot is saved for a look.
//!
//! Chromium is `$HERALD_CHROMIUM` or `chromium` on the PATH (`scripts/test` installs it); when
//! it is missing the test fails, it never skips.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::app::{TestApp, spawn, webhook_account};
use crate::dispatch::{SECRET, receiver, send, template, wait_for};

/// The Chromium to drive: `$HERALD_CHROMIUM`, or `chromium` found on the PATH.
fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("HERALD_CHROMIUM").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "HERALD_CHROMIUM names {}, which is not a file",
            path.display()
        );
        return path;
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("chromium"))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "headless Chromium is needed for the console test and was not found: install the \
                 `chromium` package (scripts/test does) or set HERALD_CHROMIUM to its binary"
            )
        })
}

/// Runs headless Chromium on `url` with a profile of its own and `args`; returns its stdout.
async fn headless(url: &str, args: &[&str]) -> String {
    let profile = crate::support::empty_dir();
    let mut command = tokio::process::Command::new(chromium());
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            "--virtual-time-budget=12000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(90), command.output())
        .await
        .expect("Chromium finished within 90 s")
        .expect("Chromium runs");
    let _ = std::fs::remove_dir_all(profile);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "Chromium failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The page as Chromium leaves it after its scripts ran (12 s of virtual time: three polls).
async fn dump_dom(url: &str) -> String {
    let dom = headless(url, &["--dump-dom"]).await;
    assert!(dom.contains("<h1>Herald console</h1>"), "{dom}");
    dom
}

/// A value for the URL fragment, percent-encoded.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The markup from `marker` to the end of the element it opens with `close`.
fn element<'a>(dom: &'a str, marker: &str, close: &str) -> &'a str {
    let start = dom
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in the page:\n{dom}"));
    let rest = &dom[start..];
    let end = rest
        .find(close)
        .unwrap_or_else(|| panic!("{marker} is not closed:\n{dom}"));
    &rest[..end + close.len()]
}

/// A raw GET; returns the status line, the headers (lower-cased names) and the body.
async fn get(app: &TestApp, path: &str) -> (String, Vec<(String, String)>, String) {
    let mut stream = tokio::net::TcpStream::connect(app.address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap().to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map_or("", |(_, v)| v.as_str())
}

/// Waits until the API answers with the message dispatched and the statistics and reconciliation
/// caught up, so the page sees what the test asserts.
async fn wait_for_projections(app: &TestApp, key: &str, id: &str) {
    let query = "query($id: ID!) { message(id: $id) { message { status } } \
                 projections { name caughtUp } }";
    for _ in 0..200 {
        let (_, answer) = app.gql(Some(key), query, json!({ "id": id })).await;
        assert!(answer["errors"].is_null(), "{answer}");
        let dispatched = answer["data"]["message"]["message"]["status"] == "DISPATCHED";
        let caught_up = answer["data"]["projections"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["caughtUp"] == true);
        if dispatched && caught_up {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the projections never caught up with message {id}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_finds_a_message_shows_rates_and_reconciles_in_chromium() {
    let app = spawn("sqlite", |c| {
        c.dispatch.retry_base_ms = 100;
        c.accounts = vec![webhook_account(SECRET, "")];
    })
    .await;

    // The files, with their types and a policy that allows this server only.
    for (path, kind) in [
        ("/console", "text/html"),
        ("/console/app.js", "text/javascript"),
        ("/console/app.css", "text/css"),
    ] {
        let (status, headers, body) = get(&app, path).await;
        assert!(status.starts_with("HTTP/1.1 200"), "{path}: {status}");
        assert!(
            header(&headers, "content-type").starts_with(kind),
            "{path}: {headers:?}"
        );
        let policy = header(&headers, "content-security-policy");
        assert!(policy.starts_with("default-src 'self'"), "{path}: {policy}");
        assert!(
            !policy.contains("unsafe") && !policy.contains("http"),
            "{policy}"
        );
        assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
        assert!(!body.is_empty());
    }
    let (_, _, page) = get(&app, "/console").await;
    assert!(
        !page.contains("http://") && !page.contains("https://") && !page.contains("<script>"),
        "the page loads nothing external and runs no inline script"
    );

    // One webhook message, dispatched to a local receiver.
    let (hooks, _calls) = receiver().await;
    let (template_id, key) = template(&app, "WEBHOOK").await;
    let to = format!("{hooks}/ok");
    let stream = send(&app, &key, &template_id, &to).await;
    wait_for(&app, &stream, "MessageDispatched").await;
    let id = stream.strip_prefix("message-").unwrap().to_owned();
    wait_for_projections(&app, &key, &id).await;
    let console = format!("http://{}/console", app.address);
    let key_param = encode(&key);

    // By id: the timeline, today's rates with the chart, and the reconciliation asked for.
    let dom = dump_dom(&format!("{console}#key={key_param}&find={id}&recon=hooks")).await;
    assert!(
        dom.contains(r#"<div id="error" role="alert" hidden="">"#),
        "no error is shown:\n{dom}"
    );
    let message = element(&dom, r#"<div id="message""#, "</ol>");
    assert!(!message.contains("hidden"), "{message}");
    assert!(message.contains(&format!(r#"<code id="message-id">{id}</code>"#)));
    assert!(message.contains(r#"<dd data-field="status">DISPATCHED</dd>"#));
    assert!(message.contains(r#"<dd data-field="account">hooks</dd>"#));
    let timeline = element(message, r#"<ol id="timeline">"#, "</ol>");
    let accepted = timeline
        .find(r#"data-kind="ACCEPTED""#)
        .unwrap_or_else(|| panic!("{timeline}"));
    let dispatched = timeline
        .find(r#"data-kind="DISPATCHED""#)
        .unwrap_or_else(|| panic!("{timeline}"));
    assert!(accepted < dispatched, "oldest first: {timeline}");

    let rates = element(&dom, r#"<table id="rates-table""#, "</table>");
    let channel = element(
        rates,
        r#"<tr data-channel="WEBHOOK" data-account="*""#,
        "</tr>",
    );
    assert!(
        channel.contains(r#"<td data-field="accepted">1</td>"#),
        "{channel}"
    );
    assert!(
        channel.contains(r#"<td data-field="dispatched">1</td>"#),
        "{channel}"
    );
    let account = element(
        rates,
        r#"<tr data-channel="WEBHOOK" data-account="hooks""#,
        "</tr>",
    );
    for cell in [
        r#"<td data-field="account">hooks</td>"#,
        r#"<td data-field="dispatched">1</td>"#,
        r#"<td data-field="failed">0</td>"#,
        r#"<td data-field="successRatio">100.0 %</td>"#,
        r#"<td data-field="dispatchedRate">0.0</td>"#,
        r#"data-ratio="1.0000""#,
    ] {
        assert!(account.contains(cell), "{cell} in {account}");
    }
    let chart = element(&dom, r#"<svg id="rate-chart""#, "</svg>");
    assert!(
        chart.contains(r#"<polyline class="series series-0" data-series="WEBHOOK" points=""#),
        "{chart}"
    );
    assert!(chart.contains("<circle"), "polled more than once: {chart}");

    let reconciliation = element(&dom, r#"<table id="recon-result""#, "</table>");
    assert!(!reconciliation.contains("hidden"), "{reconciliation}");
    for row in [
        r#"<tr data-field="account"><th scope="row">Account</th><td>hooks</td></tr>"#,
        r#"<tr data-field="dispatched"><th scope="row">Dispatched</th><td>1</td></tr>"#,
        r#"<tr data-field="pending"><th scope="row">Pending receipts</th><td>1</td></tr>"#,
    ] {
        assert!(reconciliation.contains(row), "{row} in {reconciliation}");
    }

    // By receiver: its messages, each opening its timeline.
    let dom = dump_dom(&format!("{console}#key={key_param}&find={}", encode(&to))).await;
    let list = element(&dom, r#"<div id="receiver""#, "</table>");
    assert!(!list.starts_with(r#"<div id="receiver" hidden"#), "{list}");
    assert!(list.contains(&format!(r#"<span id="receiver-name">{to}</span>"#)));
    assert!(
        list.contains(&format!(r#"<tr data-id="{id}" data-status="DISPATCHED">"#)),
        "{list}"
    );
    assert!(list.contains(&format!(
        r#"<button type="button" data-id="{id}">{id}</button>"#
    )));
    assert!(
        dom.contains(r#"<div id="message" hidden="">"#),
        "no timeline yet"
    );

    // A key the API refuses: its error is shown, and nothing else is.
    let dom = dump_dom(&format!("{console}#key=hk_not_a_key&find={id}")).await;
    let error = element(&dom, r#"<div id="error""#, "</div>");
    assert!(!error.contains("hidden"), "{error}");
    assert!(
        error.contains("the API key is not valid (UNAUTHENTICATED / BAD_API_KEY)"),
        "{error}"
    );
    assert!(dom.contains(r#"<div id="message" hidden="">"#), "{dom}");

    // A screenshot of the whole console, for a look.
    let screenshot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console.png");
    let _ = std::fs::remove_file(&screenshot);
    headless(
        &format!("{console}#key={key_param}&find={id}&recon=hooks"),
        &[
            &format!("--screenshot={}", screenshot.display()),
            "--window-size=1280,1600",
        ],
    )
    .await;
    let size = std::fs::metadata(&screenshot)
        .unwrap_or_else(|e| panic!("no screenshot at {}: {e}", screenshot.display()))
        .len();
    assert!(size > 20 * 1024, "the screenshot is only {size} bytes");
    app.finish().await;
}
