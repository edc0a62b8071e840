//! Plugin manifests: the TOML file shipped beside each component
//! (`NAME.toml` next to `NAME.wasm`) with the plugin's name, version, world,
//! requested capabilities and the licence feature it needs.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Capabilities;

/// The connector world a plugin implements (`lockgate:connector@0.1.0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum World {
    /// Directory synchronisation.
    DirectorySync,
    /// Single sign-on.
    Sso,
    /// A web service mounted by the host.
    WebService,
    /// Notifications.
    Notifier,
    /// Licences, firmware, extension files, certificates.
    ContentSource,
    /// One programming-device generation.
    DeviceProtocol,
    /// Core events to another system.
    EventBridge,
}

impl World {
    /// The world's WIT name.
    pub fn name(self) -> &'static str {
        match self {
            World::DirectorySync => "directory-sync",
            World::Sso => "sso",
            World::WebService => "web-service",
            World::Notifier => "notifier",
            World::ContentSource => "content-source",
            World::DeviceProtocol => "device-protocol",
            World::EventBridge => "event-bridge",
        }
    }

    /// The kind-specific interface the world exports (besides `plugin`).
    pub fn export_interface(self) -> &'static str {
        match self {
            World::DirectorySync => "lockgate:connector/directory-source@0.1.0",
            World::Sso => "lockgate:connector/identity-provider@0.1.0",
            World::WebService => "lockgate:connector/http-handler@0.1.0",
            World::Notifier => "lockgate:connector/notification-sink@0.1.0",
            World::ContentSource => "lockgate:connector/content-provider@0.1.0",
            World::DeviceProtocol => "lockgate:connector/device-handler@0.1.0",
            World::EventBridge => "lockgate:connector/event-sink@0.1.0",
        }
    }
}

/// A plugin manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Manifest {
    /// Plugin name: lowercase letters, digits and `-`, 1–64 characters.
    pub name: String,
    /// Plugin version (semver).
    pub version: String,
    /// The world the component implements.
    pub world: World,
    /// One line for administrators.
    #[serde(default)]
    pub description: String,
    /// Licence feature the gateway must hold to enable the plugin.
    #[serde(default)]
    pub licence_feature: Option<String>,
    /// Component file, relative to the manifest (default `NAME.wasm`).
    #[serde(default)]
    pub component: Option<PathBuf>,
    /// What the plugin asks for (grants come from the configuration).
    #[serde(default)]
    pub capabilities: Capabilities,
}

impl Manifest {
    /// Parses and checks a manifest.
    pub fn parse(text: &str) -> Result<Manifest, String> {
        let m: Manifest = toml::from_str(text).map_err(|e| e.to_string())?;
        check_name(&m.name)?;
        if m.version.is_empty() || m.version.len() > 64 {
            return Err("version must be 1-64 characters".into());
        }
        for op in &m.capabilities.gateway {
            if !crate::GATEWAY_OPERATIONS.contains(&op.as_str()) {
                return Err(format!("capabilities.gateway: unknown operation `{op}`"));
            }
        }
        m.capabilities
            .http
            .validate()
            .map_err(|e| format!("capabilities.http: {e}"))?;
        m.capabilities
            .mqtt
            .validate()
            .map_err(|e| format!("capabilities.mqtt: {e}"))?;
        Ok(m)
    }

    /// The component file for a manifest read from `manifest_path`.
    pub fn component_path(&self, manifest_path: &Path) -> PathBuf {
        let dir = manifest_path.parent().unwrap_or(Path::new("."));
        match &self.component {
            Some(p) => dir.join(p),
            None => dir.join(format!("{}.wasm", self.name)),
        }
    }
}

/// Checks a plugin name.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid plugin name `{name}`: use a-z, 0-9 and `-`, 1-64 characters"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_manifest() {
        let m = Manifest::parse(
            r#"
            name = "ldap"
            version = "1.2.0"
            world = "directory-sync"
            licence-feature = "connector.directory"
            [capabilities]
            log = true
            gateway = ["upsert-employees"]
            "#,
        )
        .unwrap();
        assert_eq!(m.world, World::DirectorySync);
        assert_eq!(m.licence_feature.as_deref(), Some("connector.directory"));
        assert_eq!(
            m.component_path(Path::new("/p/ldap.toml")),
            Path::new("/p/ldap.wasm")
        );
    }

    #[test]
    fn refuses_bad_manifests() {
        for (text, why) in [
            (
                "name = \"X\"\nversion = \"1\"\nworld = \"sso\"",
                "invalid plugin name",
            ),
            (
                "name = \"x\"\nversion = \"1\"\nworld = \"telepathy\"",
                "unknown variant",
            ),
            (
                "name = \"x\"\nversion = \"1\"\nworld = \"sso\"\nsurprise = 1",
                "unknown field",
            ),
            (
                "name = \"x\"\nversion = \"1\"\nworld = \"sso\"\n[capabilities]\ngateway = [\"rm\"]",
                "unknown operation",
            ),
        ] {
            let err = Manifest::parse(text).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
    }
}
