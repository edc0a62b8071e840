//! The `lockgate` binary end to end: configuration checks, `init`, `migrate`, employee
//! import and export, and `token`, each on its own temporary SQLite database.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

const BIN: &str = env!("CARGO_BIN_EXE_lockgate");

const HEADER: &str = "Identifier,Title,First name,Last name,Domain,Email,Phone,Organisation,Department,Street,Postcode,Language,Region,Job,City,State,Country,Company address,Location,Mobile phone,GMD text";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A temporary directory with a config file pointing at a SQLite database inside it;
/// removed when dropped.
struct Sandbox {
    dir: PathBuf,
    config: PathBuf,
}

impl Sandbox {
    fn new(tag: &str) -> Sandbox {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "lockgate-cli-{}-{}-{tag}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let config = dir.join("lockgate.toml");
        let s = Sandbox { dir, config };
        std::fs::write(
            &s.config,
            format!(
                "[database]\nurl = \"sqlite://{}\"\n\n[bootstrap]\nenabled = false\n",
                s.db().display()
            ),
        )
        .expect("write config");
        s
    }

    fn db(&self) -> PathBuf {
        self.dir.join("lockgate.db")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn write(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, content).expect("write file");
        p
    }

    /// A command for the binary with no inherited LOCKGATE settings, run inside the sandbox.
    fn command(&self) -> Command {
        let mut c = Command::new(BIN);
        for (k, _) in std::env::vars() {
            if k.starts_with("LOCKGATE") {
                c.env_remove(k);
            }
        }
        c.current_dir(&self.dir);
        c
    }

    /// Run with this sandbox's config file.
    fn run(&self, args: &[&str]) -> Run {
        let mut c = self.command();
        c.arg("--config").arg(&self.config).args(args);
        Run::from(c.output().expect("run lockgate"))
    }

    /// `init` a system; returns (token, system id, master C-key id, default domain id).
    fn init(&self, name: &str) -> (String, i64, i64, i64) {
        let r = self
            .run(&["init", "--name", name, "--time-zone", "Europe/Berlin"])
            .ok();
        let token = tokens(&r.stdout);
        assert_eq!(token.len(), 1, "{r:?}");
        let ids = r
            .stdout
            .lines()
            .find(|l| l.starts_with("system id "))
            .unwrap_or_else(|| panic!("no id line: {r:?}"));
        // "system id 1, master C-key id 9, default domain id 2"
        let nums: Vec<i64> = ids
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().expect("number"))
            .collect();
        assert_eq!(nums.len(), 3, "{ids}");
        (token[0].clone(), nums[0], nums[1], nums[2])
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
    fn fails(self) -> Run {
        assert!(!self.success, "command should have failed: {self:?}");
        self
    }
}

/// Every `lgt_` token in a text.
fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || c == '"' || c == '\'')
        .filter(|w| w.starts_with("lgt_"))
        .map(str::to_string)
        .collect()
}

fn csv_file(rows: &[&str]) -> String {
    let mut s = String::from(HEADER);
    for r in rows {
        s.push('\n');
        s.push_str(r);
    }
    s.push('\n');
    s
}

/// A 21-column row: identifier, first name, last name, email; the rest empty.
fn person_row(identifier: &str, first: &str, last: &str, email: &str) -> String {
    format!("{identifier},,{first},{last},,{email}{}", ",".repeat(15))
}

fn data_lines(csv: &str) -> Vec<&str> {
    csv.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .collect()
}

fn assert_path_mentioned(text: &str, path: &Path) {
    assert!(
        text.contains(&path.display().to_string()),
        "'{}' not named in: {text}",
        path.display()
    );
}

#[test]
fn check_config_names_file_line_and_unknown_key() {
    let s = Sandbox::new("checkcfg");
    let good = s.run(&["check-config"]).ok();
    assert!(good.stdout.contains("configuration is valid"), "{good:?}");
    assert!(
        good.stdout.contains(&s.db().display().to_string()),
        "{good:?}"
    );

    let bad = s.write(
        "bad.toml",
        format!(
            "[database]\nurl = \"sqlite://{}\"\nmax_conections = 4\n",
            s.db().display()
        ),
    );
    let r = Run::from(
        s.command()
            .arg("--config")
            .arg(&bad)
            .arg("check-config")
            .output()
            .expect("run"),
    )
    .fails();
    assert_path_mentioned(&r.stderr, &bad);
    assert!(r.stderr.contains(":3:"), "line 3 not named: {r:?}");
    assert!(r.stderr.contains("max_conections"), "key not named: {r:?}");
    assert!(!r.stdout.contains("configuration is valid"), "{r:?}");

    // An unknown section is refused as well.
    let bad2 = s.write(
        "bad2.toml",
        "[server]\nlisten = \"127.0.0.1:8080\"\n\n[databse]\nurl = \"x\"\n",
    );
    let r = Run::from(
        s.command()
            .arg("--config")
            .arg(&bad2)
            .arg("check-config")
            .output()
            .expect("run"),
    )
    .fails();
    assert_path_mentioned(&r.stderr, &bad2);
    assert!(
        r.stderr.contains(":4:") && r.stderr.contains("databse"),
        "{r:?}"
    );

    // A missing file is named.
    let missing = s.path("nope.toml");
    let r = Run::from(
        s.command()
            .arg("--config")
            .arg(&missing)
            .arg("check-config")
            .output()
            .expect("run"),
    )
    .fails();
    assert_path_mentioned(&r.stderr, &missing);
}

#[test]
fn check_config_needs_the_pd_ca_sealing_key_when_the_pd_listener_is_on() {
    let s = Sandbox::new("pdkey");
    let run = |key: Option<&str>| {
        let mut c = s.command();
        c.env("LOCKGATE__PDS__ENABLED", "true")
            .env_remove("LOCKGATE_PD_CA_KEY");
        if let Some(k) = key {
            c.env("LOCKGATE_PD_CA_KEY", k);
        }
        Run::from(
            c.arg("--config")
                .arg(&s.config)
                .arg("check-config")
                .output()
                .expect("run"),
        )
    };
    let r = run(None).fails();
    assert!(
        r.stderr.contains("pds.ca_key_file") && r.stderr.contains("LOCKGATE_PD_CA_KEY"),
        "{r:?}"
    );
    let r = run(Some("too short")).fails();
    assert!(r.stderr.contains("32 bytes"), "{r:?}");
    assert!(
        !r.stderr.contains("too short"),
        "the key's text is echoed: {r:?}"
    );
    run(Some(&"ab".repeat(32))).ok();
}

#[test]
fn check_config_applies_environment_and_redacts_passwords() {
    let s = Sandbox::new("envcfg");
    let r = Run::from(
        s.command()
            .env(
                "LOCKGATE__DATABASE__URL",
                "postgres://lockgate:s3cret@db.example:5432/lockgate",
            )
            .arg("--config")
            .arg(&s.config)
            .arg("check-config")
            .output()
            .expect("run"),
    )
    .ok();
    assert!(
        r.stdout
            .contains("postgres://lockgate:***@db.example:5432/lockgate"),
        "{r:?}"
    );
    assert!(
        !r.stdout.contains("s3cret") && !r.stderr.contains("s3cret"),
        "{r:?}"
    );

    let r = Run::from(
        s.command()
            .env("LOCKGATE__DATABASE__MAX_CONNECTIONS", "lots")
            .arg("--config")
            .arg(&s.config)
            .arg("check-config")
            .output()
            .expect("run"),
    )
    .fails();
    assert!(
        r.stderr.contains("LOCKGATE__DATABASE__MAX_CONNECTIONS"),
        "{r:?}"
    );
    // The database URL can come from the environment alone (no config file).
    let url = format!("sqlite://{}", s.path("env.db").display());
    let r = Run::from(
        s.command()
            .env("LOCKGATE__DATABASE__URL", &url)
            .arg("check-config")
            .output()
            .expect("run"),
    )
    .ok();
    assert!(r.stdout.contains(&url), "{r:?}");
}

#[test]
fn init_prints_a_token_exactly_once() {
    let s = Sandbox::new("init");
    let r = s
        .run(&[
            "init",
            "--name",
            "Head office",
            "--time-zone",
            "Europe/Berlin",
        ])
        .ok();
    let found = tokens(&r.stdout);
    assert_eq!(found.len(), 1, "one token expected: {r:?}");
    let token = &found[0];
    assert_eq!(token.len(), "lgt_".len() + 64, "{token}");
    assert!(
        token["lgt_".len()..].chars().all(|c| c.is_ascii_hexdigit()),
        "{token}"
    );
    assert_eq!(r.stdout.matches("lgt_").count(), 1, "{r:?}");
    assert!(!r.stderr.contains("lgt_"), "token leaked to stderr: {r:?}");
    assert!(r.stdout.contains("Head office"), "{r:?}");
    assert!(s.db().exists(), "database file not created");

    // A second system of the same name is refused, without a token.
    let r = s
        .run(&[
            "init",
            "--name",
            "Head office",
            "--time-zone",
            "Europe/Berlin",
        ])
        .fails();
    assert!(tokens(&r.stdout).is_empty(), "{r:?}");
    assert!(tokens(&r.stderr).is_empty(), "{r:?}");

    // The database is migrated; migrating again is a no-op.
    let r = s.run(&["migrate"]).ok();
    assert!(r.stdout.contains("up to date"), "{r:?}");
    s.run(&["migrate"]).ok();
}

#[test]
fn init_refuses_an_unknown_time_zone() {
    let s = Sandbox::new("badtz");
    let r = s
        .run(&["init", "--name", "Site", "--time-zone", "Mars/Olympus_Mons"])
        .fails();
    assert!(
        r.stderr.contains("Mars/Olympus_Mons"),
        "time zone not named: {r:?}"
    );
    assert!(
        tokens(&r.stdout).is_empty() && tokens(&r.stderr).is_empty(),
        "{r:?}"
    );
    // Nothing was created.
    let r = s.run(&["export", "employees"]).fails();
    assert!(r.stderr.contains("no locking system"), "{r:?}");
    // A valid time zone then works.
    s.init("Site");
}

#[test]
fn import_dry_run_writes_nothing_then_imports() {
    let s = Sandbox::new("import");
    s.init("Import site");
    let file = s.write(
        "staff.csv",
        csv_file(&[
            &person_row("E1", "Anna", "Berg", "anna@example.com"),
            &person_row("E2", "Ben", "Ode", "ben(at)example.com"),
            &person_row("E3", "Clara", "Schmidt", ""),
        ]),
    );
    let f = file.to_str().expect("utf-8 path");

    let r = s.run(&["import", "employees", f, "--dry-run"]).ok();
    assert!(
        r.stdout.contains(
            "dry run: 2 valid rows: 2 created, 0 updated, 0 unchanged; 0 skipped, 1 invalid"
        ),
        "{r:?}"
    );
    assert!(r.stderr.contains("line 3: email:"), "{r:?}");
    let export = s.run(&["export", "employees"]).ok();
    assert!(
        data_lines(&export.stdout).is_empty(),
        "dry run wrote persons: {export:?}"
    );

    let r = s.run(&["import", "employees", f]).ok();
    assert!(!r.stdout.contains("dry run"), "{r:?}");
    assert!(
        r.stdout
            .contains("2 valid rows: 2 created, 0 updated, 0 unchanged; 0 skipped, 1 invalid"),
        "{r:?}"
    );
    let export = s.run(&["export", "employees"]).ok();
    let rows = data_lines(&export.stdout);
    assert_eq!(rows.len(), 2, "{export:?}");
    assert!(
        rows.iter()
            .any(|l| l.starts_with("E1,,Anna,Berg,Default,anna@example.com")),
        "{rows:?}"
    );
    assert!(
        rows.iter().any(|l| l.starts_with("E3,,Clara,Schmidt,")),
        "{rows:?}"
    );

    let r = s.run(&["import", "employees", f]).ok();
    assert!(
        r.stdout
            .contains("2 valid rows: 0 created, 0 updated, 2 unchanged; 0 skipped, 1 invalid"),
        "{r:?}"
    );
    // With the system chosen explicitly.
    s.run(&["import", "employees", f, "--dry-run", "--system", "1"])
        .ok();
}

#[test]
fn import_refuses_bad_files() {
    let s = Sandbox::new("badimport");
    s.init("Site");
    let missing = s.path("missing.csv");
    let r = s
        .run(&["import", "employees", missing.to_str().expect("path")])
        .fails();
    assert_path_mentioned(&r.stderr, &missing);

    let bad_header = s.write(
        "header.csv",
        format!(
            "{}\n{}\n",
            HEADER.replace("Last name", "Surname"),
            person_row("E1", "Anna", "Berg", "")
        ),
    );
    let r = s
        .run(&["import", "employees", bad_header.to_str().expect("path")])
        .fails();
    assert!(
        r.stderr.contains("Surname") && r.stderr.contains("Last name"),
        "{r:?}"
    );
    let export = s.run(&["export", "employees"]).ok();
    assert!(data_lines(&export.stdout).is_empty(), "{export:?}");
}

#[test]
fn export_writes_the_csv_file() {
    let s = Sandbox::new("export");
    s.init("Export site");
    let file = s.write(
        "staff.csv",
        csv_file(&[
            &person_row("E1", "Anna", "Berg", "anna@example.com"),
            &person_row("E2", "\"Ben; Jr.\"", "Ode", ""),
        ]),
    );
    s.run(&["import", "employees", file.to_str().expect("path")])
        .ok();

    let out = s.path("out.csv");
    let r = s
        .run(&[
            "export",
            "employees",
            "--output",
            out.to_str().expect("path"),
        ])
        .ok();
    assert!(r.stderr.contains("2 employees written"), "{r:?}");
    assert!(!r.stdout.contains("Anna"), "CSV went to stdout: {r:?}");
    let text = std::fs::read_to_string(&out).expect("output written");
    assert_eq!(
        text.lines().next().expect("header"),
        format!("{HEADER},Tags")
    );
    let rows = data_lines(&text);
    assert_eq!(rows.len(), 2, "{text}");
    assert!(
        rows.iter()
            .any(|l| l.starts_with("E1,,Anna,Berg,Default,anna@example.com,")),
        "{text}"
    );
    assert!(
        rows.iter().any(|l| l.starts_with("E2,,Ben; Jr.,Ode,")),
        "{text}"
    );

    let semi = s.path("semi.csv");
    s.run(&[
        "export",
        "employees",
        "-o",
        semi.to_str().expect("path"),
        "--delimiter",
        "semicolon",
    ])
    .ok();
    let text = std::fs::read_to_string(&semi).expect("output written");
    assert_eq!(
        text.lines().next().expect("header"),
        format!("{};Tags", HEADER.replace(',', ";"))
    );
    assert!(text.contains("E2;;\"Ben; Jr.\";Ode;"), "{text}");

    // The export imports back unchanged.
    let r = s
        .run(&["import", "employees", semi.to_str().expect("path")])
        .ok();
    assert!(
        r.stdout.contains("0 created, 0 updated, 2 unchanged"),
        "{r:?}"
    );

    // An unwritable output path is named.
    let bad = s.path("no/such/dir/out.csv");
    let r = s
        .run(&[
            "export",
            "employees",
            "--output",
            bad.to_str().expect("path"),
        ])
        .fails();
    assert_path_mentioned(&r.stderr, &bad);
}

#[test]
fn token_issues_a_new_token_for_a_c_key() {
    let s = Sandbox::new("token");
    let (init_token, _, master, _) = s.init("Token site");
    let r = s
        .run(&["token", "--c-key", &master.to_string(), "--name", "ci"])
        .ok();
    let found = tokens(&r.stdout);
    assert_eq!(found.len(), 1, "{r:?}");
    assert_ne!(found[0], init_token);
    assert_eq!(found[0].len(), "lgt_".len() + 64);
    assert!(r.stdout.contains(&format!("C-key {master}")), "{r:?}");
    assert!(!r.stderr.contains("lgt_"), "{r:?}");
    // Another call gives another token.
    let again = tokens(
        &s.run(&["token", "--c-key", &master.to_string(), "--name", "ci"])
            .ok()
            .stdout,
    );
    assert_eq!(again.len(), 1);
    assert_ne!(again[0], found[0]);

    // An id that names no object at all is refused.
    let r = s
        .run(&["token", "--c-key", "999999", "--name", "x"])
        .fails();
    assert!(tokens(&r.stdout).is_empty(), "{r:?}");
    // An empty name is refused.
    s.run(&["token", "--c-key", &master.to_string(), "--name", ""])
        .fails();
}

#[test]
fn token_refuses_ids_that_are_not_c_keys() {
    let s = Sandbox::new("tokenkind");
    let (_, _, _, domain) = s.init("Token kind site");
    // The default domain exists but is not a C-key: no token may be bound to it.
    let r = s
        .run(&["token", "--c-key", &domain.to_string(), "--name", "x"])
        .fails();
    assert!(tokens(&r.stdout).is_empty(), "{r:?}");
}
