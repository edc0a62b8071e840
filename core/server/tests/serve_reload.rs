//! `lockgate serve` end to end: it starts with its bundled plugins, answers
//! `GET /api/v1/plugins`, applies a changed `[plugins]` section on SIGHUP without a
//! restart, keeps running when the changed file is invalid, and stops on SIGTERM.

#![cfg(unix)]

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

const BIN: &str = env!("CARGO_BIN_EXE_lockgate");

struct Gateway {
    child: Child,
    dir: PathBuf,
    port: u16,
    token: String,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn config(db: &std::path::Path, port: u16, template_enabled: bool) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:{port}"

[database]
url = "sqlite://{db}"

[plugins.instances.template]
enabled = {template_enabled}
grants = {{ log = true, config = true, clock = true, kv = true, gateway = ["upsert-employees"] }}
"#,
        db = db.display()
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn start() -> Gateway {
    let dir = std::env::temp_dir().join(format!(
        "lockgate-serve-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let port = free_port();
    std::fs::write(
        dir.join("lockgate.toml"),
        config(&dir.join("lockgate.db"), port, false),
    )
    .expect("config");
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("LOCKGATE") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .current_dir(&dir)
        .arg("--config")
        .arg(dir.join("lockgate.toml"))
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start lockgate serve");
    // The first start prints the super-administrator token once.
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let t = line.trim();
            if t.starts_with("lgt_") {
                let _ = tx.send(t.to_string());
            }
        }
    });
    let token = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("a token printed on first start");
    let gw = Gateway {
        child,
        dir,
        port,
        token,
    };
    wait_until(&gw, |_| true);
    gw
}

/// GET a path with the token; (status, body).
fn get(gw: &Gateway, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\r\n",
        gw.token
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

fn template_state(gw: &Gateway) -> Option<String> {
    let (status, body) = get(gw, "/api/v1/plugins")?;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["items"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == "template")
        .map(|p| p["state"].to_string())
}

/// Poll until `ok` holds for the template plugin's state (up to 180 s: a debug build
/// compiles every bundled plugin at start and at every reload).
fn wait_until(gw: &Gateway, ok: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        if let Some(state) = template_state(gw)
            && ok(&state)
        {
            return state;
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "the template plugin did not reach the expected state"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn hangup(gw: &Gateway) {
    let status = Command::new("kill")
        .args(["-HUP", &gw.child.id().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(status.success());
}

#[test]
fn sighup_applies_the_plugin_configuration_without_a_restart() {
    let mut gw = start();
    let pid = gw.child.id();
    let state = wait_until(&gw, |_| true);
    assert!(
        state.contains("disabled"),
        "disabled by the configuration: {state}"
    );

    // Enabled in the file, then SIGHUP: the running gateway enables it.
    let db = gw.dir.join("lockgate.db");
    std::fs::write(gw.dir.join("lockgate.toml"), config(&db, gw.port, true)).expect("config");
    hangup(&gw);
    let state = wait_until(&gw, |s| s.contains("enabled"));
    assert!(!state.contains("disabled"), "{state}");

    // An invalid file changes nothing and the gateway keeps serving.
    std::fs::write(
        gw.dir.join("lockgate.toml"),
        "[plugins]\nallocator = \"bogus\"\n",
    )
    .expect("config");
    hangup(&gw);
    std::thread::sleep(Duration::from_millis(500));
    let state = wait_until(&gw, |_| true);
    assert!(
        state.contains("enabled") && !state.contains("disabled"),
        "{state}"
    );
    assert_eq!(gw.child.id(), pid, "same process");

    // SIGTERM stops it.
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let start = Instant::now();
    loop {
        if gw.child.try_wait().expect("wait").is_some() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
}
