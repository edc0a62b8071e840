//! Architecture invariant: every change to a locking system goes through the application
//! layer (`lockgate-app`). Rust has no visibility for one sibling crate, so this test keeps
//! it: the API, the gateway binary (plugin gateway, background tasks, CLI) and the plugin
//! host never call the store's writes of locking-system data themselves.

use std::path::{Path, PathBuf};

/// The store's writes of locking-system data, which only `core/app` calls.
const STORE_WRITES: &[&str] = &[
    "create",
    "create_batch",
    "update",
    "update_many",
    "delete",
    "delete_person",
    "deactivate_person",
    "reactivate_person",
    "restore_person",
    "import_persons",
    "import_parsed",
    "hand_out_key",
    "hand_in_key",
    "report_key_lost",
    "report_key_found",
    "copy_key_configuration",
    "replace_key_with_clone",
    "remove_redundant_authorisations",
    "remove_key_side_authorisations",
    "apply_schedule_to_key_group",
    "confirm_re_edition",
    "update_settings",
    "reconcile",
    "reconcile_scope",
    "request_reprogramming",
    "request_audit_trail",
    "sync_directory",
    "transition_job",
    // Remote PDs: enrolment, certificates, deliveries, heartbeats, uploads.
    "create_pd_enrolment_code",
    "enrol_pd",
    "add_pd_certificate",
    "revoke_pd_certificates",
    "record_delivery",
    "mark_delivery_reported",
    "record_heartbeat",
    "mark_pd_offline",
    "record_audit_trail",
    "record_pd_log",
    "record_krl_delivery",
    "warn_pd_certificate_expiring",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("source directory") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Calls `<...>store.METHOD(`, `store.METHOD::<` or `Store::METHOD(` in `source`, with
/// whitespace and line breaks removed so a call split over lines is still seen.
fn store_writes(source: &str) -> Vec<String> {
    let flat: String = source.chars().filter(|c| !c.is_whitespace()).collect();
    let mut found = Vec::new();
    for m in STORE_WRITES {
        for receiver in ["store.", "Store::"] {
            for open in ["(", "::<"] {
                let needle = format!("{receiver}{m}{open}");
                if flat.contains(&needle) {
                    found.push(needle);
                }
            }
        }
    }
    found
}

#[test]
fn only_the_application_layer_writes_through_the_store() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for dir in ["core/api/src", "core/server/src", "core/host/src"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 20, "the source tree was not found");
    let mut offences = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("source");
        for call in store_writes(&text) {
            offences.push(format!("{}: {call}", f.display()));
        }
    }
    assert!(
        offences.is_empty(),
        "store writes outside core/app (call the application layer instead):\n{}",
        offences.join("\n")
    );
}

#[test]
fn the_scan_sees_calls_split_over_lines() {
    let src = "let s = state\n    .store\n    .hand_out_key(&sys, id)\n    .await?;";
    assert_eq!(store_writes(src), ["store.hand_out_key("]);
    assert!(store_writes("state.store.get(sys, id)").is_empty());
    assert_eq!(
        store_writes("Store::transition_job(&mut tx)"),
        ["Store::transition_job("]
    );
}
