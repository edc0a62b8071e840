//! `lockgate licence keygen | sign | install` end to end, the `[licence]` configuration check,
//! and `serve` refusing to start on a hard-expired licence; on a temporary SQLite database.

use std::{
    path::PathBuf,
    process::{Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

const BIN: &str = env!("CARGO_BIN_EXE_lockgate");

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A temporary directory with a database path; removed when dropped.
struct Sandbox {
    dir: PathBuf,
}

impl Sandbox {
    fn new(tag: &str) -> Sandbox {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "lockgate-licence-cli-{}-{}-{tag}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Sandbox { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Write the config file, trusting `trusted` keys.
    fn config(&self, trusted: &[&str]) -> PathBuf {
        let keys: Vec<String> = trusted.iter().map(|k| format!("\"{k}\"")).collect();
        let p = self.path("lockgate.toml");
        std::fs::write(
            &p,
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\n\n[database]\nurl = \"sqlite://{}\"\n\n[bootstrap]\nenabled = false\n\n[licence]\ntrusted_keys = [{}]\n",
                self.path("lockgate.db").display(),
                keys.join(", ")
            ),
        )
        .expect("write config");
        p
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        for (k, _) in std::env::vars() {
            if k.starts_with("LOCKGATE") {
                c.env_remove(k);
            }
        }
        c.current_dir(&self.dir)
            .arg("--config")
            .arg(self.path("lockgate.toml"))
            .args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().expect("run lockgate"))
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).expect("write");
        p
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[derive(Debug)]
struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            success: o.status.success(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    #[track_caller]
    fn ok(self) -> Run {
        assert!(self.success, "command failed: {self:?}");
        self
    }

    #[track_caller]
    fn fails(self, needle: &str) -> Run {
        assert!(!self.success, "command should have failed: {self:?}");
        assert!(self.stderr.contains(needle), "{needle:?} not in {self:?}");
        self
    }
}

/// The first output line that is not a comment.
fn first_entry(text: &str) -> String {
    text.lines()
        .find(|l| !l.starts_with('#') && !l.trim().is_empty())
        .expect("an entry")
        .trim()
        .to_owned()
}

#[test]
fn keygen_sign_install_and_locked_start() {
    let s = Sandbox::new("flow");
    s.config(&[]);

    // keygen: public entry on stdout, private key into a new 0600 file.
    let key_file = s.path("ops.key");
    let r = s
        .run(&[
            "licence",
            "keygen",
            "--key-id",
            "ops-1",
            "--out",
            key_file.to_str().unwrap(),
        ])
        .ok();
    let public = first_entry(&r.stdout);
    assert!(public.starts_with("ops-1:"), "{r:?}");
    assert_eq!(public.len(), "ops-1:".len() + 43, "{public}");
    let private = std::fs::read_to_string(&key_file).expect("key file");
    assert!(private.starts_with("ops-1:"), "{private}");
    assert_ne!(first_entry(&private), public);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Never overwrites a key file; without --out both keys are printed.
    s.run(&["licence", "keygen", "--out", key_file.to_str().unwrap()])
        .fails("creating");
    let both = s.run(&["licence", "keygen"]).ok();
    assert_eq!(
        both.stdout
            .lines()
            .filter(|l| l.starts_with("local:"))
            .count(),
        2,
        "{both:?}"
    );
    s.run(&["licence", "keygen", "--key-id", "bad id"])
        .fails("--key-id");

    // The config must trust the key; a broken entry is named.
    s.config(&[&public, "backup:AAAA"]);
    s.run(&["check-config"]).fails("licence.trusted_keys");
    s.config(&[&public]);
    s.run(&["check-config"]).ok();
    s.run(&["init", "--name", "North campus"]).ok();

    let sign = |number: &str, extra: &[&str]| {
        let mut args = vec![
            "licence",
            "sign",
            "--key-file",
            key_file.to_str().unwrap(),
            "--system-name",
            "North campus",
            "--number",
            number,
            "--features",
            "remote,domains,access_profiles",
        ];
        args.extend_from_slice(extra);
        s.run(&args)
    };
    let signed = sign("2", &["--hard-expiry", "2099-01-01T00:00:00Z"]).ok();
    let v: serde_json::Value = serde_json::from_str(&signed.stdout).expect("licence file");
    assert_eq!(v["key_id"], "ops-1");
    let file = s.write("n2.licence", &signed.stdout);
    let r = s.run(&["licence", "install", file.to_str().unwrap()]).ok();
    assert!(r.stdout.contains("licence number 2 installed"), "{r:?}");
    assert!(r.stdout.contains("access_profiles"), "{r:?}");
    s.run(&["licence", "install", file.to_str().unwrap()])
        .fails("only a higher number installs");

    // Bad input to sign is named.
    sign("3", &["--soft-expiry", "soon"]).fails("soft_expiry");
    sign(
        "3",
        &[
            "--soft-expiry",
            "2099-02-01T00:00:00Z",
            "--hard-expiry",
            "2099-01-01T00:00:00Z",
        ],
    )
    .fails("soft_expiry");
    let mut args = vec![
        "licence",
        "sign",
        "--key-file",
        key_file.to_str().unwrap(),
        "--system-name",
        "North campus",
        "--number",
        "3",
        "--features",
        "remote,teleport",
    ];
    s.run(&args).fails("teleport");
    // A file for another system is refused.
    args[5] = "South campus";
    args[9] = "remote";
    let south = s.write("south.licence", &s.run(&args).ok().stdout);
    s.run(&["licence", "install", south.to_str().unwrap()])
        .fails("South campus");

    // A licence past its hard expiry installs, and then `serve` refuses to start.
    let expired = sign(
        "3",
        &[
            "--issued-at",
            "2020-01-01T00:00:00Z",
            "--soft-expiry",
            "2020-06-01T00:00:00Z",
            "--hard-expiry",
            "2021-01-01T00:00:00Z",
        ],
    )
    .ok();
    let expired = s.write("n3.licence", &expired.stdout);
    s.run(&["licence", "install", expired.to_str().unwrap()])
        .ok();
    let mut child = s
        .command(&["serve"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("serve kept running with a hard-expired licence");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = Run::from(child.wait_with_output().expect("output"));
    let r = r.fails("refusing to start");
    assert!(r.stderr.contains("hard expiry"), "{r:?}");
    assert!(r.stderr.contains("North campus"), "{r:?}");
}
