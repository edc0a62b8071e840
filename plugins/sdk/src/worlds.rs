//! The export side of every `lockgate:connector@0.1.0` world, generated once
//! here with `wit-bindgen`'s public export macros; plugins use the
//! `export_<world>!` macros of the crate root and the re-exported traits.
//!
//! Every world exports `plugin` plus one kind-specific interface. One crate
//! cannot hold the bindings of several worlds that share an export
//! (`wit-bindgen` names each interface's export macro after the interface,
//! and `#[macro_export]` puts it at the crate root), so the worlds are cut
//! into parts: `plugin` alone, and one world per kind exporting only its
//! interface. An `export_<world>!` invocation expands both parts; each part
//! embeds its component-type section, and `wit-component` unions them, so the
//! component exports exactly `plugin` and the kind's interface. The imports
//! are the host's (`crate::host`); a component imports only what it calls.

/// `plugin`, exported by every world.
pub mod plugin {
    wit_bindgen::generate!({
        inline: "package lockgate:sdk; world plugin { export lockgate:connector/plugin@0.1.0; }",
        path: ["../../wit/host", "../../wit/connector"],
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "lockgate_plugin_sdk::worlds::plugin",
    });
}

/// `directory-source` (world `directory-sync`).
pub mod directory_sync {
    wit_bindgen::generate!({
        inline: "package lockgate:sdk; world directory-sync { export lockgate:connector/directory-source@0.1.0; }",
        path: ["../../wit/host", "../../wit/connector"],
        with: {
            "lockgate:host/types@0.1.0": crate::host::types,
            "lockgate:host/gateway@0.1.0": crate::host::gateway,
        },
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "lockgate_plugin_sdk::worlds::directory_sync",
    });
}

/// `identity-provider` (world `sso`); owns the `http-types` records.
pub mod sso {
    wit_bindgen::generate!({
        inline: "package lockgate:sdk; world sso { export lockgate:connector/identity-provider@0.1.0; }",
        path: ["../../wit/host", "../../wit/connector"],
        with: {
            "lockgate:host/types@0.1.0": crate::host::types,
            "lockgate:connector/http-types@0.1.0": generate,
        },
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "lockgate_plugin_sdk::worlds::sso",
    });
}

/// `http-handler` (world `web-service`).
pub mod web_service {
    wit_bindgen::generate!({
        inline: "package lockgate:sdk; world web-service { export lockgate:connector/http-handler@0.1.0; }",
        path: ["../../wit/host", "../../wit/connector"],
        with: {
            "lockgate:connector/http-types@0.1.0": crate::worlds::sso::lockgate::connector::http_types,
        },
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "lockgate_plugin_sdk::worlds::web_service",
    });
}

/// `notification-sink` (world `notifier`).
pub mod notifier {
    wit_bindgen::generate!({
        inline: "package lockgate:sdk; world notifier { export lockgate:connector/notification-sink@0.1.0; }",
        path: ["../../wit/host", "../../wit/connector"],
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "lockgate_plugin_sdk::worlds::notifier",
    });
}

/// `content-provider` (world `content-source`).
pub mod content_source {
    wit_bindgen::generate!({
        inline: "package lockgate:sdk; world content-source { export lockgate:connector/content-provider@0.1.0; }",
        path: ["../../wit/host", "../../wit/connector"],
        with: {
            "lockgate:host/types@0.1.0": crate::host::types,
        },
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "lockgate_plugin_sdk::worlds::content_source",
    });
}

/// `device-handler` (world `device-protocol`).
pub mod device_protocol {
    wit_bindgen::generate!({
        inline: "package lockgate:sdk; world device-protocol { export lockgate:connector/device-handler@0.1.0; }",
        path: ["../../wit/host", "../../wit/connector"],
        with: {
            "lockgate:host/types@0.1.0": crate::host::types,
        },
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "lockgate_plugin_sdk::worlds::device_protocol",
    });
}

/// `event-sink` (world `event-bridge`).
pub mod event_bridge {
    wit_bindgen::generate!({
        inline: "package lockgate:sdk; world event-bridge { export lockgate:connector/event-sink@0.1.0; }",
        path: ["../../wit/host", "../../wit/connector"],
        with: {
            "lockgate:host/types@0.1.0": crate::host::types,
        },
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "lockgate_plugin_sdk::worlds::event_bridge",
    });
}
