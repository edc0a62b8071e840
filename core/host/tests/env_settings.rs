//! `*_env` plugin settings: `domain_env = "VAR"` in a plugin's `config` makes
//! the plugin see `domain` with the value of the environment variable `VAR`,
//! read by the host when it loads the plugin (start, reload, reconfigure). An
//! unset variable fails that plugin with an error naming the setting and the
//! variable (never a value); `domain` and `domain_env` together are refused by
//! validation. Tests cannot set variables (`unsafe` in edition 2024), so they
//! use one the test process already has.

mod common;

use common::{config, host, plugin_dir};
use lockgate_host::{HostError, PluginState};

/// A variable of this process with a plain name and a short non-empty value.
fn some_variable() -> (String, String) {
    let mut vars: Vec<(String, String)> = std::env::vars()
        .filter(|(name, value)| {
            !value.is_empty()
                && value.len() < 200
                && name
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        })
        .collect();
    vars.sort();
    vars.into_iter()
        .next()
        .expect("the test process has an environment variable")
}

/// A variable name nobody sets.
fn unset_variable() -> String {
    let name = format!("LOCKGATE_TEST_UNSET_{}", std::process::id());
    assert!(std::env::var_os(&name).is_none());
    name
}

fn template(domain_setting: &str) -> String {
    format!(
        r#"
[plugins.template]
grants = {{ log = true, config = true, clock = true, kv = true, gateway = ["upsert-employees"] }}
config = {{ {domain_setting}, persons = [{{ identifier = "E-1", surname = "Berg" }}] }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_sees_the_variable_under_the_setting_name() {
    let (var, value) = some_variable();
    let (host, _, gw) = host(
        config(&template(&format!("domain_env = \"{var}\""))),
        &plugin_dir(&["template"]),
    );
    let status = host.status_of("template").unwrap();
    assert_eq!(status.state, PluginState::Enabled, "{status:?}");
    assert!(
        !format!("{status:?}").contains(&value),
        "the status never shows the value"
    );
    host.sync("template", true, false).await.unwrap().unwrap();
    let upserts = gw.upserts.lock().unwrap().clone();
    assert_eq!(upserts.len(), 1);
    assert_eq!(upserts[0].1, value, "`domain` is the value of `{var}`");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unset_variable_fails_the_plugin_naming_the_setting() {
    let missing = unset_variable();
    let dir = plugin_dir(&["template", "noop"]);
    let grants = format!(
        "{}\n[plugins.noop.grants]\nlog = true\nkv = true\n",
        template(&format!("domain_env = \"{missing}\""))
    );
    let (host, _, gw) = host(config(&grants), &dir);
    match host.status_of("template").unwrap().state {
        PluginState::Failed { error, .. } => assert_eq!(
            error,
            format!(
                "plugins.template.config.domain_env: the environment variable `{missing}` is not set"
            )
        ),
        other => panic!("expected failed, got {other:?}"),
    }
    assert!(host.sync("template", true, false).await.is_err());
    assert!(gw.upserts.lock().unwrap().is_empty());
    // The other plugins load as usual.
    assert_eq!(host.status_of("noop").unwrap().state, PluginState::Enabled);
    // A reload reads the environment again: still unset, still failed.
    assert!(matches!(
        host.reload("template").unwrap().state,
        PluginState::Failed { .. }
    ));

    // Reconfigured (SIGHUP) to a variable that is set: resolved and enabled.
    let (var, value) = some_variable();
    let next = config(&format!(
        "{}\n[plugins.noop.grants]\nlog = true\nkv = true\n",
        template(&format!("domain_env = \"{var}\""))
    ));
    host.reconfigure(next, &[dir]).unwrap();
    assert_eq!(
        host.status_of("template").unwrap().state,
        PluginState::Enabled
    );
    host.sync("template", true, false).await.unwrap().unwrap();
    assert_eq!(gw.upserts.lock().unwrap()[0].1, value);
}

#[test]
fn a_setting_given_twice_or_malformed_is_a_configuration_error() {
    for (setting, expected) in [
        (
            "domain = \"Head office\", domain_env = \"X\"",
            "plugins.template.config.domain_env: set `domain` or `domain_env`, not both",
        ),
        (
            "domain_env = 7",
            "plugins.template.config.domain_env: must be the name of an environment variable",
        ),
    ] {
        let cfg = config(&template(setting));
        match cfg.validate() {
            Err(HostError::Config(m)) => assert!(m.starts_with(expected), "{m}"),
            other => panic!("{setting}: expected a configuration error, got {other:?}"),
        }
    }
}
