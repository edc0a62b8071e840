//! The real `lockgate serve` with `[server.tls]`: curl gets the API over TLS 1.3 and 1.2
//! (with the test CA, HSTS on the response), TLS 1.1 and plain HTTP get nothing; a key that
//! does not load stops the gateway with an error naming the key and the file.

#![cfg(unix)]

mod common;

use common::{Gateway, TempDir, free_port};

use std::{
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

fn config(dir: &Path, port: u16, cert: &Path, key: &Path) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:{port}"
shutdown_grace_seconds = 1

[server.tls]
cert_file = "{cert}"
key_file = "{key}"
hsts_max_age = "1d"

[database]
url = "sqlite://{db}"

[log]
format = "json"

[plugins]
enabled = false

[background]
enabled = false
"#,
        db = dir.join("lockgate.db").display(),
        cert = cert.display(),
        key = key.display(),
    )
}

/// `curl -i` with `args`; the exit status and the output.
fn curl(args: &[&str]) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-s", "-i", "--max-time", "10"])
        .args(args)
        .stderr(Stdio::null())
        .output()
        .expect("curl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn serve_answers_over_tls_only_with_hsts() {
    let dir = TempDir::new("lockgate-https");
    let files = lockgate_test_peers::TestCa::new().write_to(&dir.0);
    let port = free_port();
    let config_path = dir.0.join("lockgate.toml");
    std::fs::write(
        &config_path,
        config(&dir.0, port, &files.cert_pem, &files.key_pem),
    )
    .expect("config");
    let mut gw = Gateway::start("https", &dir.0, &config_path, port);
    let start = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = gw.child.try_wait().expect("wait") {
            panic!("exited ({status}):\n{}", gw.log_text());
        }
        assert!(start.elapsed() < Duration::from_secs(120), "not listening");
        std::thread::sleep(Duration::from_millis(100));
    }
    let url = format!("https://localhost:{port}/healthz");
    let resolve = format!("localhost:{port}:127.0.0.1");
    let ca = files.ca_pem.display().to_string();
    for version in ["--tlsv1.3", "--tlsv1.2"] {
        let max = if version == "--tlsv1.2" { "1.2" } else { "1.3" };
        let (ok, out) = curl(&[
            "--cacert",
            &ca,
            "--resolve",
            &resolve,
            version,
            "--tls-max",
            max,
            &url,
        ]);
        assert!(ok && out.starts_with("HTTP/1.1 200"), "{version}: {out}");
        assert!(
            out.to_ascii_lowercase()
                .contains("strict-transport-security: max-age=86400"),
            "{version}: HSTS: {out}"
        );
    }
    let (ok, out) = curl(&[
        "--cacert",
        &ca,
        "--resolve",
        &resolve,
        "--tlsv1.1",
        "--tls-max",
        "1.1",
        &url,
    ]);
    assert!(!ok && out.is_empty(), "TLS 1.1 is refused: {out}");
    let (ok, out) = curl(&[&format!("http://127.0.0.1:{port}/healthz")]);
    assert!(
        !ok && !out.contains("200"),
        "plain HTTP to the TLS port: {out}"
    );
    drop(gw);

    // A key that does not load: the gateway stops, naming the key and the file.
    std::fs::write(dir.0.join("bad-key.pem"), "not a key\n").expect("bad key");
    std::fs::write(
        &config_path,
        config(&dir.0, port, &files.cert_pem, &dir.0.join("bad-key.pem")),
    )
    .expect("config");
    let out = Command::new(env!("CARGO_BIN_EXE_lockgate"))
        .current_dir(&dir.0)
        .arg("--config")
        .arg(&config_path)
        .arg("serve")
        .env_remove("LOCKGATE__SERVER__LISTEN")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("server.tls.key_file") && stderr.contains("bad-key.pem"),
        "{stderr}"
    );
}
