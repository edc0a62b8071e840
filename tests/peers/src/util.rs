//! Small helpers shared by the peers: free ports, program lookup, polling, stopping processes.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A loopback TCP port that was free a moment ago (the OS picked it; the listener is closed).
pub fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .expect("bind a free loopback port")
        .port()
}

/// The full path of `name`: `/usr/sbin`, `/usr/bin`, then `PATH` (slapd's tools live in
/// `/usr/sbin`, which a non-root `PATH` often lacks).
pub(crate) fn program(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = [PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")]
        .into_iter()
        .chain(std::env::split_paths(&path));
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "`{name}` not found in /usr/sbin, /usr/bin or PATH: run tests/run.sh once (it installs the test peers)"
    )
}

/// Polls `check` every few milliseconds until it yields a value or `timeout` passes.
pub(crate) fn poll<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(2);
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(25));
    }
}

/// Asks `child` to stop with SIGTERM, waits up to `grace`, then kills it.
pub(crate) fn terminate(child: &mut Child, grace: Duration) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let sent = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .is_ok_and(|s| s.success());
    if sent && poll(grace, || child.try_wait().ok().flatten()).is_some() {
        return;
    }
    let _ = child.kill();
    let _ = child.wait();
}
