//! The README's quick start, run as written against a fresh server: the steps a new user copies
//! must work. Only the binary's folder and the port differ.

use crate::support::{empty_dir, herald, serve};

#[tokio::test]
async fn the_readme_quick_start_sends_a_message() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let block = readme
        .split("<!-- quickstart:begin -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- quickstart:end -->").next())
        .expect("README has a quickstart block");
    let script = block
        .trim()
        .trim_start_matches("```sh")
        .trim_end_matches("```");

    let dir = empty_dir();
    let server = serve(herald(&dir)).await;
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_herald"))
        .parent()
        .unwrap();
    let script = script
        .replace(
            r#"export PATH="$PWD/target/release:$PATH""#,
            &format!("export PATH=\"{}:$PATH\"", bin_dir.display()),
        )
        .replace(
            "http://127.0.0.1:8080",
            &format!("http://{}", server.address),
        );

    let output = tokio::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(&dir)
        .output()
        .await
        .expect("bash runs (and curl must be installed: scripts/test installs it)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the quick start failed:\n{stdout}\n{stderr}"
    );
    assert!(!stdout.contains("\"errors\""), "{stdout}");
    assert!(stdout.contains(r#""approvedVersion":1"#), "{stdout}");
    assert!(
        stdout.contains(r#""requestId":"signup-42""#)
            && stdout.contains(r#""receiver":"+8613800138000""#),
        "{stdout}"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}
