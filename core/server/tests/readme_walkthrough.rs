//! The README's "First steps with curl" walk-through, exactly as written, against a real
//! `lockgate serve` on a fresh SQLite database: the shell block is taken from README.md, its
//! token line and address are pointed at the test gateway, and bash runs it from the
//! repository root (it uploads `tests/fixtures/employees.csv`). Every curl fails on an HTTP
//! error status and the script stops at the first failing command, so a step that is not
//! valid on a fresh gateway (a literal id, a stale request body) fails the test.

#![cfg(unix)]

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{Gateway, TempDir, free_port};

/// The heading of the walk-through in README.md.
const HEADING: &str = "## First steps with curl";
/// The token line the README starts with, and the address it uses.
const TOKEN_LINE: &str = "export TOKEN=lgt_...";
const README_ADDRESS: &str = "http://127.0.0.1:8080";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The first ```sh block after [`HEADING`].
fn walkthrough(readme: &str) -> String {
    let section = readme
        .split_once(HEADING)
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("README.md has no `{HEADING}` section"));
    let (_, block) = section
        .split_once("\n```sh\n")
        .expect("a ```sh block in the walk-through section");
    let (block, _) = block
        .split_once("\n```")
        .expect("the walk-through block is closed");
    block.to_string()
}

/// The block pointed at the test gateway; each replacement must happen exactly once, so a
/// README that no longer has the line or the address fails here rather than silently
/// running against something else.
fn pointed_at(block: &str, token: &str, port: u16) -> String {
    let token_lines = block
        .lines()
        .filter(|l| l.trim_start().starts_with(TOKEN_LINE))
        .count();
    assert_eq!(token_lines, 1, "one `{TOKEN_LINE}` line in:\n{block}");
    assert_eq!(
        block.matches(README_ADDRESS).count(),
        1,
        "one `{README_ADDRESS}` (the API variable) in:\n{block}"
    );
    block
        .replace(TOKEN_LINE, &format!("export TOKEN={token}"))
        .replace(README_ADDRESS, &format!("http://127.0.0.1:{port}"))
}

/// Run before the walk-through: strict bash, and curl failing on HTTP errors (with the
/// problem document shown) and on a hung connection.
const PRELUDE: &str = r#"set -euo pipefail
shopt -s inherit_errexit
if command curl --help all 2>/dev/null | grep -q -- '--fail-with-body'; then
  LOCKGATE_TEST_FAIL=--fail-with-body
else
  LOCKGATE_TEST_FAIL=--fail
fi
curl() {
  echo "+ curl $*" >&2
  command curl "$LOCKGATE_TEST_FAIL" --max-time 60 "$@"
  echo
}
"#;

#[test]
fn readme_walkthrough_runs_on_a_fresh_gateway() {
    let root = repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let block = walkthrough(&readme);

    let dir = TempDir::new("lockgate-readme");
    let port = free_port();
    let config_path = dir.0.join("lockgate.toml");
    std::fs::write(
        &config_path,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n\n\
             [database]\nurl = \"sqlite://{db}\"\n\n\
             [log]\nlevel = \"info\"\nformat = \"json\"\n",
            db = dir.0.join("lockgate.db").display()
        ),
    )
    .expect("config");
    let mut gw = Gateway::start("readme", &dir.0, &config_path, port);
    gw.wait_ready();
    let started = Instant::now();
    let token = loop {
        if let Some(t) = gw.token.lock().expect("token").clone() {
            break t;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no token printed"
        );
        std::thread::sleep(Duration::from_millis(50));
    };

    let script = format!("{PRELUDE}\n{}\n", pointed_at(&block, &token, port));
    let mut cmd = Command::new("bash");
    for (k, _) in std::env::vars() {
        if k.starts_with("LOCKGATE") {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .current_dir(&root)
        .arg("-c")
        .arg(&script)
        .stdin(Stdio::null())
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the README walk-through failed ({}):\n--- stderr (commands, errors)\n{stderr}\n--- stdout (answers)\n{stdout}\n--- gateway log\n{}",
        out.status,
        gw.log_text()
    );
    // The walk-through ends by issuing a token for the new administrator.
    assert!(
        stdout.contains("\"token\":\"lgt_"),
        "no token in the last answer:\n{stdout}"
    );
}

#[test]
fn the_walkthrough_is_found_and_pointed_at_the_gateway() {
    let readme = "# x\n\n## First steps with curl\n\ntext\n\n```sh\nexport TOKEN=lgt_...   # note\nAPI=http://127.0.0.1:8080/api/v1\ncurl -s $API/me\n```\n\n```sh\nother\n```\n";
    let block = walkthrough(readme);
    assert_eq!(
        block,
        "export TOKEN=lgt_...   # note\nAPI=http://127.0.0.1:8080/api/v1\ncurl -s $API/me"
    );
    assert_eq!(
        pointed_at(&block, "lgt_abc", 4242),
        "export TOKEN=lgt_abc   # note\nAPI=http://127.0.0.1:4242/api/v1\ncurl -s $API/me"
    );
}
