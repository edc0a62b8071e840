//! Field-level validation errors and the checks shared by every domain type.

use serde::Serialize;

/// One thing wrong with one field of an input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldError {
    /// JSON-pointer-like path of the offending field, e.g. `surname` or `links[2].url`.
    pub field: String,
    /// What is wrong, in words an administrator understands.
    pub message: String,
}

/// All field errors found in one input; empty means valid.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("invalid input: {}", .errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "))]
pub struct ValidationErrors {
    pub errors: Vec<FieldError>,
}

impl ValidationErrors {
    pub fn new() -> Self {
        Self::default()
    }

    /// A single-field error.
    pub fn single(field: impl Into<String>, message: impl Into<String>) -> Self {
        let mut e = Self::new();
        e.push(field, message);
        e
    }

    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// Append the errors of a nested value, prefixing their field paths.
    pub fn extend_prefixed(&mut self, prefix: &str, other: ValidationErrors) {
        for e in other.errors {
            self.push(format!("{prefix}.{}", e.field), e.message);
        }
    }

    /// `Ok(())` when nothing was recorded, the collected errors otherwise.
    pub fn into_result(self) -> Result<(), ValidationErrors> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }

    /// Check a mandatory text length in characters (after trimming).
    pub fn text(&mut self, field: &str, value: &str, min: usize, max: usize) {
        let n = value.trim().chars().count();
        if n < min || n > max {
            if min > 0 && n == 0 {
                self.push(field, format!("is required (1–{max} characters)"));
            } else {
                self.push(field, format!("must be {min}–{max} characters, got {n}"));
            }
        } else if value.chars().any(|c| c.is_control()) {
            self.push(field, "must not contain control characters");
        }
    }

    /// Check an optional text: absent is fine, present must be 1..=max characters.
    pub fn opt_text(&mut self, field: &str, value: &Option<String>, max: usize) {
        if let Some(v) = value {
            self.text(field, v, 1, max);
        }
    }

    /// Check an optional email address.
    pub fn opt_email(&mut self, field: &str, value: &Option<String>) {
        if let Some(v) = value
            && let Err(m) = check_email(v)
        {
            self.push(field, m);
        }
    }
}

/// Validate an email address: one `@`, a non-empty local part, a dotted domain
/// of letters, digits and hyphens, no whitespace or control characters, at most
/// 254 characters (RFC 5321 path limit).
pub fn check_email(value: &str) -> Result<(), String> {
    if value.len() > 254 {
        return Err("email must be at most 254 characters".into());
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("email must not contain spaces or control characters".into());
    }
    let Some((local, domain)) = value.split_once('@') else {
        return Err(format!("'{value}' is not an email address (no @)"));
    };
    if local.is_empty() || local.len() > 64 || domain.contains('@') {
        return Err(format!("'{value}' is not an email address"));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_alphanumeric() || c == '-')
    };
    if labels.len() < 2 || !labels.iter().all(label_ok) {
        return Err(format!("'{value}' has no valid domain after @"));
    }
    Ok(())
}

/// Validate a MAC address written as six hex pairs separated by `:` or `-`.
pub fn check_mac(value: &str) -> Result<(), String> {
    let parts: Vec<&str> = value.split([':', '-']).collect();
    if parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
    {
        Ok(())
    } else {
        Err(format!(
            "'{value}' is not a MAC address like 00:1A:2B:3C:4D:5E"
        ))
    }
}

/// Manual §8.1.9–§8.1.11: factory features (sequence lock, delay lock, online open) come
/// with a key or cylinder when it is created or imported, and are never changed afterwards.
pub fn factory_unchanged<F: PartialEq>(new: &F, previous: &F) -> Result<(), ValidationErrors> {
    if new == previous {
        Ok(())
    } else {
        Err(ValidationErrors::single(
            "factory",
            "factory features are set in the factory and cannot be changed",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        for ok in ["a@b.de", "first.last+tag@mail.example.com", "ü@bücher.de"] {
            assert!(check_email(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a",
            "a@",
            "@b.de",
            "a@b",
            "a b@c.de",
            "a@b..de",
            "a@-b.de",
            "a@b.de\r\n",
            "a@@b.de",
        ] {
            assert!(check_email(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn text_lengths() {
        let mut e = ValidationErrors::new();
        e.text("first_name", "", 1, 49);
        e.text("surname", &"x".repeat(50), 1, 49);
        e.text("ok", "Anna", 1, 49);
        e.text("ctl", "a\u{0}b", 1, 49);
        let fields: Vec<_> = e.errors.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["first_name", "surname", "ctl"]);
    }

    #[test]
    fn macs() {
        assert!(check_mac("00:1a:2B:3c:4d:5e").is_ok());
        assert!(check_mac("00-1a-2B-3c-4d-5e").is_ok());
        assert!(check_mac("001a2B3c4d5e").is_err());
        assert!(check_mac("00:1a:2B:3c:4d").is_err());
    }
}
