//! Plugin `email-notifier`: turns the core's notifications (outbox topics
//! `notify.*`) into email, per recipient language, sent through the gateway's
//! SMTP relay (`smtp` capability).
//!
//! Administrators' notifications go to `admin_recipients` (configuration);
//! person-directed ones (overdue reminders to key holders, recipients listed
//! in the payload) go to the person's address in the person's language, or
//! the system's messaging language, or `default_language`. Built-in texts
//! exist in English and German; `templates.<lang>.<topic>` in the
//! configuration replaces or adds them (`{field}` placeholders name payload
//! fields).
//!
//! One notification can mean several emails. Each one sent is recorded in
//! the plugin's key-value store under the notification id, so a redelivery
//! (the dispatcher delivers at least once) sends only the ones still missing.
//! Outcomes: a 4xx or unreachable relay is `retry-later`; a 5xx answer or a
//! malformed notification is `failed`; a connection lost after the data was
//! sent is `unknown` (never resent blindly).

use lockgate_plugin_sdk::notification_sink::{self, Notification, NotifyError};
use lockgate_plugin_sdk::plugin;
use lockgate_plugin_sdk::smtp::{self, Email, SendError};
use lockgate_plugin_sdk::{kv, log, settings};
use serde_json::Value;

/// Most emails one notification may turn into.
const MAX_LETTERS: usize = 1_000;
/// Most lines listed in one email (the count is always complete).
const MAX_LINES: usize = 200;

/// One email to send.
#[derive(Debug, Clone, PartialEq)]
struct Letter {
    to: Vec<String>,
    language: String,
    subject: String,
    text: String,
}

/// The primary language subtag, lower-cased (`de-CH` → `de`).
fn primary(lang: &str) -> String {
    lang.split(['-', '_'])
        .next()
        .unwrap_or("en")
        .to_ascii_lowercase()
}

/// A built-in text: (subject, body) with `{field}` placeholders.
fn builtin(lang: &str, name: &str) -> Option<(&'static str, &'static str)> {
    Some(match (lang, name) {
        ("de", "overdue.admin") => (
            "{count} überfällige Schlüssel in {system_name}",
            "In {system_name} sind {count} Schlüssel überfällig:\n\n{lines}\n",
        ),
        (_, "overdue.admin") => (
            "{count} overdue keys in {system_name}",
            "{count} keys are overdue in {system_name}:\n\n{lines}\n",
        ),
        ("de", "overdue.holder") => (
            "Ihr Schlüssel ist überfällig",
            "Guten Tag {name}\n\nBitte bringen Sie diese Schlüssel zurück oder lassen Sie sie erneuern:\n\n{lines}\n",
        ),
        (_, "overdue.holder") => (
            "Your key is overdue",
            "Hello {name},\n\nplease return or revalidate these keys:\n\n{lines}\n",
        ),
        ("de", "notify.licence_expiry") => (
            "Lizenz {number} von {system_name} läuft ab",
            "Die Lizenz {number} von {system_name} ist seit {soft_expiry} abgelaufen (Warnzeit). Ab {hard_expiry} ist das System gesperrt.\n",
        ),
        (_, "notify.licence_expiry") => (
            "Licence {number} of {system_name} is expiring",
            "Licence {number} of {system_name} passed its soft expiry on {soft_expiry}. From {hard_expiry} the system is locked.\n",
        ),
        ("de", "notify.licence_hard_expiry") => (
            "Lizenz {number} von {system_name} ist abgelaufen",
            "Die Lizenz {number} von {system_name} ist seit {hard_expiry} abgelaufen. Das System ist gesperrt.\n",
        ),
        (_, "notify.licence_hard_expiry") => (
            "Licence {number} of {system_name} has expired",
            "Licence {number} of {system_name} expired on {hard_expiry}. The system is locked.\n",
        ),
        ("de", "notify.job_failed") => (
            "Programmierauftrag für {target_name} fehlgeschlagen",
            "Der Auftrag {job_id} für {target_name} ist fehlgeschlagen: {reason}\n",
        ),
        (_, "notify.job_failed") => (
            "Programming job for {target_name} failed",
            "Job {job_id} for {target_name} failed: {reason}\n",
        ),
        ("de", "notify.job_assigned") => (
            "Aufträge für Ihren C-Schlüssel",
            "{count} Aufträge wurden Ihrem C-Schlüssel {c_key_name} zugewiesen.\n\n{lines}\n",
        ),
        (_, "notify.job_assigned") => (
            "Jobs assigned to your C-key",
            "{count} jobs were assigned to your C-key {c_key_name}.\n\n{lines}\n",
        ),
        ("de", "notify.capacity_exceeded") => (
            "Speicher von {target_name} reicht nicht",
            "Die Konfiguration von {target_name} ({marking}) übersteigt die Kapazität des Schlüssels; die Aktualisierung wird zurückgehalten.\n",
        ),
        (_, "notify.capacity_exceeded") => (
            "Capacity of {target_name} exceeded",
            "The configuration of {target_name} ({marking}) exceeds the key's capacity; its update is held back.\n",
        ),
        ("de", "notify.pd_offline") => (
            "Programmiergerät {marking} ist offline",
            "Das Programmiergerät {marking} von {system_name} hat {missed_heartbeats} Heartbeats verpasst und gilt seit {offline_since} als offline (zuletzt gesehen {last_seen}).\n",
        ),
        (_, "notify.pd_offline") => (
            "Programming device {marking} is offline",
            "The programming device {marking} of {system_name} missed {missed_heartbeats} heartbeats and is offline since {offline_since} (last seen {last_seen}).\n",
        ),
        ("de", "notify.pd_certificate_expiring") => (
            "Zertifikat von Programmiergerät {marking} läuft ab",
            "Das Zertifikat {serial} des Programmiergeräts {marking} von {system_name} läuft am {not_after} ab und wurde nicht erneuert. Das Gerät erneuert es über seine Verbindung; sonst muss es neu registriert werden.\n",
        ),
        (_, "notify.pd_certificate_expiring") => (
            "Certificate of programming device {marking} expires",
            "Certificate {serial} of the programming device {marking} of {system_name} expires on {not_after} and was not renewed. The device renews it over its connection; otherwise it must be enrolled again.\n",
        ),
        ("de", "notify.person_changed") => (
            "Personendaten geändert: {person_name}",
            "Die Daten von {person_name} in Ihrer Domäne {domain_name} wurden geändert.\n\n{lines}\n",
        ),
        (_, "notify.person_changed") => (
            "Person data changed: {person_name}",
            "The data of {person_name} in your domain {domain_name} changed.\n\n{lines}\n",
        ),
        ("de", "notify.remote_update_summary") => (
            "Ihr Schlüssel wurde aktualisiert",
            "Guten Tag {name}\n\nIhr Schlüssel {key_name} wurde aktualisiert:\n\n{lines}\n",
        ),
        (_, "notify.remote_update_summary") => (
            "Your key was updated",
            "Hello {name},\n\nyour key {key_name} was updated:\n\n{lines}\n",
        ),
        ("de", "notify.initial_pin") => (
            "PIN für Ihren Schlüssel",
            "Guten Tag {name}\n\nDie PIN für Ihren Schlüssel {key_name} lautet {pin}.\n",
        ),
        (_, "notify.initial_pin") => (
            "PIN for your key",
            "Hello {name},\n\nthe PIN for your key {key_name} is {pin}.\n",
        ),
        _ => return None,
    })
}

/// The text for `name` in `lang`: the configuration's template, else the
/// built-in one in that language, else the English one.
fn template(lang: &str, name: &str) -> Option<(String, String)> {
    let configured = settings::value("templates")
        .and_then(|t| t.get(lang)?.get(name).cloned())
        .and_then(|t| {
            Some((
                t.get("subject")?.as_str()?.to_owned(),
                t.get("text")?.as_str()?.to_owned(),
            ))
        });
    configured.or_else(|| {
        builtin(lang, name)
            .or_else(|| builtin("en", name))
            .map(|(s, t)| (s.to_owned(), t.to_owned()))
    })
}

/// Replaces `{field}` with the field's text: from `extra` first, then the
/// payload's top level. Unknown placeholders stay as they are.
fn render(text: &str, payload: &Value, extra: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close)
                if after[..close]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                let name = &after[..close];
                let value = extra
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.clone())
                    .or_else(|| payload.get(name).map(value_text));
                match value {
                    Some(v) => out.push_str(&v),
                    None => {
                        out.push('{');
                        out.push_str(name);
                        out.push('}');
                    }
                }
                rest = &after[close + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Subject lines are one line: CR/LF from data become spaces (the relay refuses them).
fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

fn letter(
    to: Vec<String>,
    language: &str,
    name: &str,
    payload: &Value,
    extra: &[(&str, String)],
) -> Result<Letter, NotifyError> {
    let lang = primary(language);
    let (subject, text) = template(&lang, name)
        .ok_or_else(|| NotifyError::Failed(format!("no template `{name}`")))?;
    Ok(Letter {
        to,
        language: lang,
        subject: one_line(&render(&subject, payload, extra)),
        text: render(&text, payload, extra),
    })
}

fn admin_recipients() -> Vec<String> {
    match settings::value("admin_recipients") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

fn default_language(payload: &Value) -> String {
    payload
        .get("messaging_language")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| match settings::value("default_language") {
            Some(Value::String(l)) => Some(l),
            _ => None,
        })
        .unwrap_or_else(|| "en".into())
}

/// The lines listing items (keys, jobs, changes), capped with a "… and N more".
fn lines(items: &[String], total: usize) -> String {
    let mut out: Vec<String> = items
        .iter()
        .take(MAX_LINES)
        .map(|l| format!("- {l}"))
        .collect();
    if total > out.len() {
        out.push(format!("… (+{})", total - out.len()));
    }
    out.join("\n")
}

/// The `recipients` of a person-directed notification: `[{email, language?, name?}]`.
fn listed_recipients(payload: &Value, default: &str) -> Vec<(String, String, String)> {
    payload
        .get("recipients")
        .and_then(Value::as_array)
        .map(|rs| {
            rs.iter()
                .filter_map(|r| {
                    let email = r.get("email")?.as_str()?.to_owned();
                    let lang = r
                        .get("language")
                        .and_then(Value::as_str)
                        .unwrap_or(default)
                        .to_owned();
                    let name = r
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned();
                    Some((email, lang, name))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The emails one notification turns into.
fn letters(topic: &str, payload: &Value) -> Result<Vec<Letter>, NotifyError> {
    let default = default_language(payload);
    let admins = admin_recipients();
    let mut out = Vec::new();
    let item_lines = |key: &str| -> (String, usize) {
        let items: Vec<String> = payload
            .get(key)
            .and_then(Value::as_array)
            .map(|a| a.iter().map(value_text).collect())
            .unwrap_or_default();
        let n = items.len();
        (lines(&items, n), n)
    };
    match topic {
        "notify.overdue_keys" => {
            let keys = payload
                .get("keys")
                .and_then(Value::as_array)
                .ok_or_else(|| NotifyError::Failed("payload without `keys`".into()))?;
            let describe = |k: &Value| {
                format!(
                    "{} ({}): {}",
                    value_text(k.get("name").unwrap_or(&Value::Null)),
                    value_text(k.get("marking").unwrap_or(&Value::Null)),
                    value_text(k.get("overdue_by").unwrap_or(&Value::Null)),
                )
            };
            if !admins.is_empty() {
                let all: Vec<String> = keys
                    .iter()
                    .map(|k| {
                        let holder = k
                            .get("holder")
                            .map(|h| {
                                format!(
                                    " — {} {}",
                                    value_text(h.get("first_name").unwrap_or(&Value::Null)),
                                    value_text(h.get("surname").unwrap_or(&Value::Null))
                                )
                            })
                            .unwrap_or_default();
                        format!("{}{holder}", describe(k))
                    })
                    .collect();
                let total = payload
                    .get("count")
                    .and_then(Value::as_u64)
                    .map_or(all.len(), |c| c as usize);
                out.push(letter(
                    admins.clone(),
                    &default,
                    "overdue.admin",
                    payload,
                    &[("lines", lines(&all, total))],
                )?);
            }
            // One reminder per holder with an address, listing that holder's keys.
            let mut holders: Vec<(String, String, String, Vec<String>)> = Vec::new();
            for k in keys {
                let Some(h) = k.get("holder").filter(|h| h.is_object()) else {
                    continue;
                };
                let Some(email) = h.get("email").and_then(Value::as_str) else {
                    continue;
                };
                let lang = h
                    .get("language")
                    .and_then(Value::as_str)
                    .unwrap_or(&default)
                    .to_owned();
                let name = format!(
                    "{} {}",
                    value_text(h.get("first_name").unwrap_or(&Value::Null)),
                    value_text(h.get("surname").unwrap_or(&Value::Null))
                );
                match holders.iter_mut().find(|(e, ..)| e == email) {
                    Some((.., ks)) => ks.push(describe(k)),
                    None => holders.push((email.to_owned(), lang, name, vec![describe(k)])),
                }
            }
            for (email, lang, name, ks) in holders {
                let n = ks.len();
                out.push(letter(
                    vec![email],
                    &lang,
                    "overdue.holder",
                    payload,
                    &[("name", name), ("lines", lines(&ks, n))],
                )?);
            }
        }
        "notify.licence_expiry"
        | "notify.licence_hard_expiry"
        | "notify.job_failed"
        | "notify.capacity_exceeded"
        | "notify.pd_offline"
        | "notify.pd_certificate_expiring" => {
            if !admins.is_empty() {
                out.push(letter(admins, &default, topic, payload, &[])?);
            }
        }
        "notify.job_assigned"
        | "notify.person_changed"
        | "notify.remote_update_summary"
        | "notify.initial_pin" => {
            let (list, count) = item_lines("lines");
            for (email, lang, name) in listed_recipients(payload, &default) {
                out.push(letter(
                    vec![email],
                    &lang,
                    topic,
                    payload,
                    &[
                        ("name", name),
                        ("lines", list.clone()),
                        ("count", count.to_string()),
                    ],
                )?);
            }
        }
        other => {
            return Err(NotifyError::Failed(format!(
                "unknown notification topic `{other}`"
            )));
        }
    }
    if out.len() > MAX_LETTERS {
        return Err(NotifyError::Failed(format!(
            "{} emails for one notification (at most {MAX_LETTERS})",
            out.len()
        )));
    }
    Ok(out)
}

/// kv key recording that email `n` of notification `id` was sent.
fn sent_key(id: &str, n: usize) -> String {
    format!("sent/{id}/{n}")
}

fn kv_error(e: lockgate_plugin_sdk::Error) -> NotifyError {
    NotifyError::RetryLater(format!("key-value store: {e:?}"))
}

struct Plugin;

impl plugin::Guest for Plugin {
    fn describe() -> plugin::PluginInfo {
        plugin::PluginInfo {
            name: "email-notifier".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Sends the core's notifications by email, per recipient language.".into(),
        }
    }
}

impl notification_sink::Guest for Plugin {
    fn notify(n: Notification) -> Result<(), NotifyError> {
        let payload: Value = serde_json::from_str(&n.payload)
            .map_err(|e| NotifyError::Failed(format!("payload is not JSON: {e}")))?;
        let letters = letters(&n.topic, &payload)?;
        if letters.is_empty() {
            log::info(&format!("{} ({}): nobody to notify", n.topic, n.id));
            return Ok(());
        }
        let mut sent = 0usize;
        for (i, l) in letters.iter().enumerate() {
            let key = sent_key(&n.id, i);
            if kv::get(&key).map_err(kv_error)?.is_some() {
                continue;
            }
            let email = Email {
                to: l.to.clone(),
                subject: l.subject.clone(),
                text: l.text.clone(),
                html: None,
                language: Some(l.language.clone()),
                message_id: format!("{}.{i}", n.id),
            };
            match smtp::send(&email) {
                Ok(()) => {
                    kv::set(&key, b"1").map_err(kv_error)?;
                    sent += 1;
                }
                Err(SendError::Transient(m)) => return Err(NotifyError::RetryLater(m)),
                Err(SendError::Unknown(m)) => return Err(NotifyError::Unknown(m)),
                Err(SendError::Permanent(m))
                | Err(SendError::Invalid(m))
                | Err(SendError::Denied(m)) => {
                    return Err(NotifyError::Failed(format!("email {i}: {m}")));
                }
            }
        }
        log::info(&format!(
            "{} ({}): {sent} of {} emails sent now",
            n.topic,
            n.id,
            letters.len()
        ));
        Ok(())
    }
}

lockgate_plugin_sdk::export_notifier!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_take_extra_values_then_payload_fields() {
        let payload = serde_json::json!({ "system_name": "Head office", "count": 3, "none": null });
        let text = render(
            "{count} keys in {system_name} for {name}{none} {unknown} {not closed",
            &payload,
            &[("name", "Anna".into())],
        );
        assert_eq!(text, "3 keys in Head office for Anna {unknown} {not closed");
    }

    #[test]
    fn languages_reduce_to_their_primary_subtag() {
        assert_eq!(primary("de-CH"), "de");
        assert_eq!(primary("EN_gb"), "en");
        assert_eq!(primary(""), "");
        assert!(builtin("de", "overdue.holder").is_some());
        // An unknown language falls back to English in `template`.
        assert!(builtin("fr", "overdue.holder").is_some_and(|(s, _)| s.starts_with("Your")));
    }

    #[test]
    fn the_pd_offline_letter_names_the_pd_and_its_silence() {
        let payload = serde_json::json!({
            "system_name": "Head office", "marking": "PD-0042", "missed_heartbeats": 3,
            "last_seen": "2026-12-04T10:00:00Z", "offline_since": "2026-12-04T10:46:00Z",
        });
        let expiring = serde_json::json!({
            "system_name": "Head office", "marking": "PD-0042", "serial": "0a1b",
            "not_after": "2027-01-01T00:00:00Z",
        });
        for lang in ["en", "de"] {
            let (_, text) = builtin(lang, "notify.pd_certificate_expiring").expect("template");
            let text = render(text, &expiring, &[]);
            for part in ["PD-0042", "0a1b", "2027-01-01T00:00:00Z"] {
                assert!(text.contains(part), "{lang}: {text}");
            }
            let (subject, text) = builtin(lang, "notify.pd_offline").expect("template");
            let (subject, text) = (render(subject, &payload, &[]), render(text, &payload, &[]));
            assert!(subject.contains("PD-0042"), "{subject}");
            for part in [
                "PD-0042",
                "Head office",
                "3",
                "2026-12-04T10:00:00Z",
                "2026-12-04T10:46:00Z",
            ] {
                assert!(text.contains(part), "{lang}: {text}");
            }
        }
    }

    #[test]
    fn subjects_are_one_line_and_lists_are_capped() {
        assert_eq!(one_line("a\r\nBcc: x"), "a  Bcc: x");
        let items: Vec<String> = (0..250).map(|i| format!("key {i}")).collect();
        let listed = lines(&items, 300);
        assert_eq!(listed.lines().count(), MAX_LINES + 1);
        assert!(listed.ends_with("… (+100)"), "{listed}");
    }
}
