//! Value types shared by many objects: ids, tags, external links, custom fields.

use serde::{Deserialize, Serialize};

use crate::validation::ValidationErrors;

/// Database identifier of an object; unique across all kinds and systems.
pub type ObjectId = i64;

/// Free-text tags on an object (case-insensitively unique, 1–50 characters each).
pub type Tags = Vec<String>;

/// Most tags one object may carry.
pub const MAX_TAGS: usize = 50;

/// Validate a tag list in place-independent form.
pub fn validate_tags(errors: &mut ValidationErrors, tags: &[String]) {
    if tags.len() > MAX_TAGS {
        errors.push(
            "tags",
            format!("at most {MAX_TAGS} tags, got {}", tags.len()),
        );
    }
    let mut seen = std::collections::HashSet::new();
    for (i, t) in tags.iter().enumerate() {
        errors.text(&format!("tags[{i}]"), t, 1, 50);
        if !seen.insert(t.trim().to_lowercase()) {
            errors.push(format!("tags[{i}]"), format!("duplicate tag '{t}'"));
        }
    }
}

/// A named link to an outside system (e.g. an HR record or a floor plan).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ExternalLink {
    /// Display name, 1–100 characters.
    pub name: String,
    /// Absolute URL with a scheme (`https://...`), or a path relative to the
    /// system's link root URL when one is configured.
    pub url: String,
}

/// Most external links one object may carry.
pub const MAX_LINKS: usize = 20;

/// Validate external links; relative URLs are only allowed when the system has a link root URL.
pub fn validate_links(errors: &mut ValidationErrors, links: &[ExternalLink], has_root: bool) {
    if links.len() > MAX_LINKS {
        errors.push(
            "links",
            format!("at most {MAX_LINKS} links, got {}", links.len()),
        );
    }
    for (i, l) in links.iter().enumerate() {
        errors.text(&format!("links[{i}].name"), &l.name, 1, 100);
        if l.url.len() > 2000 {
            errors.push(format!("links[{i}].url"), "must be at most 2000 characters");
            continue;
        }
        match url::Url::parse(&l.url) {
            Ok(u)
                if matches!(
                    u.scheme(),
                    "http" | "https" | "mailto" | "tel" | "ftp" | "sftp"
                ) => {}
            Ok(u) => errors.push(
                format!("links[{i}].url"),
                format!(
                    "scheme '{}' is not allowed (http, https, mailto, tel, ftp, sftp)",
                    u.scheme()
                ),
            ),
            Err(url::ParseError::RelativeUrlWithoutBase) if has_root => {}
            Err(url::ParseError::RelativeUrlWithoutBase) => errors.push(
                format!("links[{i}].url"),
                "must be an absolute URL with a scheme (no link root URL is configured)",
            ),
            Err(e) => errors.push(format!("links[{i}].url"), format!("is not a URL: {e}")),
        }
    }
}

/// Normalise a tag list: trimmed, original spelling kept, order kept.
pub fn normalise_tags(tags: &mut [String]) {
    for t in tags.iter_mut() {
        *t = t.trim().to_string();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_need_scheme_unless_root() {
        let rel = vec![ExternalLink {
            name: "plan".into(),
            url: "floor/3".into(),
        }];
        let mut e = ValidationErrors::new();
        validate_links(&mut e, &rel, false);
        assert_eq!(e.errors[0].field, "links[0].url");
        let mut e = ValidationErrors::new();
        validate_links(&mut e, &rel, true);
        assert!(e.is_empty());
        let js = vec![ExternalLink {
            name: "x".into(),
            url: "javascript:alert(1)".into(),
        }];
        let mut e = ValidationErrors::new();
        validate_links(&mut e, &js, true);
        assert!(e.errors[0].message.contains("javascript"));
    }

    #[test]
    fn tags_unique_case_insensitive() {
        let mut e = ValidationErrors::new();
        validate_tags(&mut e, &["Night".into(), "night".into()]);
        assert_eq!(e.errors.len(), 1);
        assert_eq!(e.errors[0].field, "tags[1]");
    }
}
