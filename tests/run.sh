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

# 2c. Test peers of the LDAP, email and SSO connectors (crate tests/peers): OpenLDAP's slapd and
# ldap-utils, Python's aiosmtpd, and the SAML identity provider's xmlsec1 and Python packages. The tests start private instances on free loopback ports
# themselves; only the programs are installed here, no system service is started.
say "LDAP, SMTP and SAML test peers"
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else echo "not root and no sudo: cannot run $*" >&2; return 1; fi
}
missing_debs=()
for p in slapd ldap-utils xmlsec1; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing_debs+=("$p")
done
if [ ${#missing_debs[@]} -gt 0 ]; then
  echo "installing ${missing_debs[*]}"
  # slapd's postinst would configure and start a system slapd on port 389. Skip its default
  # database and keep invoke-rc.d from starting services (policy-rc.d exit 101) while installing.
  policy_created=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    as_root sh -c 'printf "#!/bin/sh\nexit 101\n" >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d'
    policy_created=1
    trap 'as_root rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  echo "slapd slapd/no_configuration boolean true" | as_root debconf-set-selections
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing_debs[@]}" >/dev/null
  if [ -n "$policy_created" ]; then as_root rm -f /usr/sbin/policy-rc.d; trap - EXIT; fi
  # Should a system slapd have started anyway (another policy), stop it and keep it off.
  if pidof slapd >/dev/null 2>&1; then
    as_root systemctl disable --now slapd >/dev/null 2>&1 || as_root service slapd stop >/dev/null 2>&1 || true
    as_root update-rc.d slapd disable >/dev/null 2>&1 || true
  fi
fi
if ! python3 -c 'import aiosmtpd' 2>/dev/null; then
  echo "installing aiosmtpd"
  if ! PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet 'aiosmtpd==1.4.6'; then
    # Debian's own python3 has no pip or refuses it (PEP 668): take Debian's package instead.
    echo "pip failed: installing Debian's python3-aiosmtpd"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      python3-aiosmtpd >/dev/null
  fi
fi
# The SAML peers (tests/peers/saml): pysaml2's identity provider (it signs with the xmlsec1
# program, installed above) and signxml for the attack corpus, pinned.
if ! python3 -c 'import saml2, signxml, lxml' 2>/dev/null; then
  echo "installing the SAML test peers' Python packages"
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet -r tests/peers/saml/requirements.txt
fi
# The SCIM conformance checker (tests/peers/scim): scim2-tester and its CLI, pinned.
if ! python3 -c 'import scim2_tester, scim2_cli' 2>/dev/null; then
  echo "installing the SCIM conformance checker (scim2-tester)"
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet -r tests/peers/scim/requirements.txt
fi
python3 -c 'import importlib.metadata as m; print("scim2-tester", m.version("scim2-tester"), "scim2-cli", m.version("scim2-cli"))'
# The HR web service's SOAP client (tests/peers/hr/soap_client.py): zeep, pinned.
if ! python3 -c 'import zeep' 2>/dev/null; then
  echo "installing the HR SOAP client (zeep)"
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet -r tests/peers/hr/requirements.txt
fi
python3 -c 'import importlib.metadata as m; print("zeep", m.version("zeep"))'
/usr/sbin/slapd -VV 2>&1 | head -n 1
xmlsec1 --version
python3 -c 'import importlib.metadata as m; print("pysaml2", m.version("pysaml2"), "signxml", m.version("signxml"))'
python3 -c 'import aiosmtpd; print("aiosmtpd", aiosmtpd.__version__)'

# 3. Formatting and lints: warnings fail the build.
say "rustfmt"
cargo fmt --all -- --check
say "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
say "clippy (plugins workspace, wasm32-wasip2)"
(cd plugins && cargo fmt --all -- --check && cargo clippy --workspace --release --target wasm32-wasip2 --locked -- -D warnings)

say "unit tests of the plugins' pure logic (host target)"
# The SDK's escaping and the connectors' mapping and rendering are plain Rust: they run on
# the host target too (the generated host imports are never called by these tests).
host_target=$(rustc -vV | sed -n 's/^host: //p')
(cd plugins && cargo test --locked --target "$host_target" \
    -p lockgate-plugin-sdk -p lockgate-plugin-directory-sync -p lockgate-plugin-email-notifier \
    -p lockgate-plugin-hr-soap \
    -p lockgate-plugin-template-webhook -p lockgate-pd-protocol -p lockgate-plugin-saml-sso)
(cd plugins && cargo test --locked --target "$host_target" -p lockgate-plugin-hr-pull)

# 4. Every test, on SQLite and on PostgreSQL.
say "tests"
cargo test --workspace --locked

say "all green"
