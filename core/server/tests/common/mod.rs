//! Helpers of the real-binary tests: a `lockgate serve` process guard with its JSON log
//! and printed token, temporary directories, free ports.

#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_lockgate");

pub fn unique_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{}_{nanos}", std::process::id())
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("{prefix}-{}", unique_suffix()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `lockgate serve`: its JSON log lines (stderr) and the token it printed (stdout).
/// Drop kills it.
pub struct Gateway {
    pub name: &'static str,
    pub child: Child,
    pub port: u16,
    pub logs: Arc<Mutex<Vec<Value>>>,
    /// The token printed on first start, if any.
    pub token: Arc<Mutex<Option<String>>>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    pub fn start(name: &'static str, dir: &Path, config_path: &Path, port: u16) -> Gateway {
        let mut cmd = Command::new(BIN);
        for (k, _) in std::env::vars() {
            if k.starts_with("LOCKGATE") {
                cmd.env_remove(k);
            }
        }
        let mut child = cmd
            .current_dir(dir)
            .arg("--config")
            .arg(config_path)
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start lockgate serve");
        let token = Arc::new(Mutex::new(None));
        let stdout = child.stdout.take().expect("stdout");
        let t = token.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let line = line.trim();
                if line.starts_with("lgt_") {
                    *t.lock().expect("token") = Some(line.to_string());
                }
            }
        });
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let l = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let v = serde_json::from_str(&line).unwrap_or(Value::String(line));
                l.lock().expect("logs").push(v);
            }
        });
        Gateway {
            name,
            child,
            port,
            logs,
            token,
        }
    }

    /// The log lines whose message is `message`.
    pub fn logged(&self, message: &str) -> Vec<Value> {
        self.logs
            .lock()
            .expect("logs")
            .iter()
            .filter(|v| v["fields"]["message"] == message)
            .cloned()
            .collect()
    }

    pub fn log_text(&self) -> String {
        let logs = self.logs.lock().expect("logs");
        let start = logs.len().saturating_sub(40);
        logs[start..]
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until the HTTP port answers and the background worker started; its worker owner id.
    pub fn wait_ready(&mut self) -> String {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                panic!(
                    "{} exited during start ({status}):\n{}",
                    self.name,
                    self.log_text()
                );
            }
            let listening = TcpStream::connect(("127.0.0.1", self.port)).is_ok();
            let owner = self
                .logged("background worker started")
                .first()
                .and_then(|v| v["fields"]["owner"].as_str().map(str::to_string));
            if listening && let Some(owner) = owner {
                return owner;
            }
            assert!(
                start.elapsed() < Duration::from_secs(300),
                "{} not ready within 300 s:\n{}",
                self.name,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
