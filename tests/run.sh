#!/usr/bin/env bash
# The whole lockgate test suite, from a fresh clone. This is the README's test command;
# .ci/run calls it unchanged. Idempotent: it starts what the tests need when it is not running.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }

# 1. Toolchain: rust-toolchain.toml pins the compiler and the wasm32-wasip2 target; rustup installs them.
say "toolchain"
rustup show active-toolchain >/dev/null
# rustup adds a listed target only when it installs the toolchain itself: add it explicitly.
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
cargo --version

# 2. PostgreSQL on 127.0.0.1:5432 (the tests create and drop their own databases).
say "PostgreSQL"
pg_ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
if ! pg_ready; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    for v in /etc/postgresql/*; do
      pg_ctlcluster --skip-systemctl-redirect "$(basename "$v")" main start || true
    done
  fi
  for _ in $(seq 1 30); do pg_ready && break; sleep 1; done
fi
if ! pg_ready; then
  echo "PostgreSQL is not reachable on 127.0.0.1:5432 and could not be started." >&2
  echo "Start it, or point LOCKGATE_TEST_PG at a server (postgres://USER@HOST:PORT/postgres)." >&2
  exit 1
fi
echo "PostgreSQL is up"

# 2b. An MQTT broker on 127.0.0.1:1883 (Mosquitto) for the MQTT capability tests.
say "MQTT broker"
mqtt_ready() { (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; }
if ! mqtt_ready; then
  if ! command -v mosquitto >/dev/null && [ -x /usr/sbin/mosquitto ]; then PATH="$PATH:/usr/sbin"; fi
  if ! command -v mosquitto >/dev/null && command -v apt-get >/dev/null; then
    (apt-get install -y mosquitto >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y mosquitto >/dev/null 2>&1; }) || true
    PATH="$PATH:/usr/sbin"
  fi
  if command -v mosquitto >/dev/null; then
    mosquitto -d -p 1883 2>/dev/null || service mosquitto start >/dev/null 2>&1 || true
  fi
  for _ in $(seq 1 20); do mqtt_ready && break; sleep 0.5; done
fi
if ! mqtt_ready; then
  echo "No MQTT broker on 127.0.0.1:1883 and Mosquitto could not be started." >&2
  exit 1
fi
echo "MQTT broker is up"

# 3. Formatting and lints: warnings fail the build.
say "rustfmt"
cargo fmt --all -- --check
say "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
say "clippy (plugins workspace, wasm32-wasip2)"
(cd plugins && cargo fmt --all -- --check && cargo clippy --workspace --release --target wasm32-wasip2 --locked -- -D warnings)

# 4. Every test, on SQLite and on PostgreSQL.
say "tests"
cargo test --workspace --locked

say "all green"
