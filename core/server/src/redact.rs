//! Redaction for logs and error messages: URLs lose their password (user-info) and the
//! values of secret query parameters (`?password=`, `sslpassword`, `token`, …).

/// Query parameters whose values are secrets (compared case-insensitively).
const SECRET_PARAMS: &[&str] = &[
    "password",
    "passwd",
    "pass",
    "pwd",
    "sslpassword",
    "secret",
    "token",
    "access_token",
    "api_key",
    "apikey",
    "auth",
    "authorization",
];

const MASK: &str = "***";

fn secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_PARAMS.contains(&name.as_str()) || name.ends_with("password") || name.ends_with("token")
}

/// `url` with its password and the values of secret query parameters replaced by `***`.
/// A URL that does not parse keeps only its scheme and what lies between the user-info and
/// the query (`scheme://***@host/path?***`): nothing after `?` and nothing before `@`.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if !parsed.cannot_be_a_base() => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some(MASK));
            }
            if parsed.query().is_some() {
                let pairs: Vec<(String, String)> = parsed
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if secret_param(&k) {
                            MASK.to_owned()
                        } else {
                            v.into_owned()
                        };
                        (k.into_owned(), v)
                    })
                    .collect();
                parsed.query_pairs_mut().clear().extend_pairs(pairs);
            }
            parsed.to_string()
        }
        _ => fallback(url),
    }
}

/// For text that is not a URL `url` can rebuild: keep the scheme and the host part only.
fn fallback(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (format!("{s}://"), r),
        None => match url.split_once(':') {
            Some((s, r)) => (format!("{s}:"), r),
            None => (String::new(), url),
        },
    };
    let (before_query, query) = match rest.split_once('?') {
        Some((b, _)) => (b, "?***"),
        None => (rest, ""),
    };
    let after_at = match before_query.rsplit_once('@') {
        Some((_, host)) => format!("***@{host}"),
        None => before_query.to_owned(),
    };
    format!("{scheme}{after_at}{query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_user_info_and_query_are_masked() {
        for (raw, want) in [
            (
                "postgres://u:secret@h:5432/db",
                "postgres://u:***@h:5432/db",
            ),
            ("sqlite://x.db", "sqlite://x.db"),
            (
                "sqlite://lockgate.db?mode=rwc",
                "sqlite://lockgate.db?mode=rwc",
            ),
            (
                "postgres://u@h/db?sslmode=require&password=hunter2",
                "postgres://u@h/db?sslmode=require&password=***",
            ),
            (
                "postgresql://u:p%40ss@h/db?PassWord=x&sslpassword=y&application_name=gw",
                "postgresql://u:***@h/db?PassWord=***&sslpassword=***&application_name=gw",
            ),
            (
                "https://h/hook?token=abc&x=1",
                "https://h/hook?token=***&x=1",
            ),
        ] {
            assert_eq!(redact_url(raw), want, "{raw}");
        }
    }

    #[test]
    fn unparsable_urls_keep_neither_user_info_nor_query() {
        let out = redact_url("postgres://u:se cret@[bad/db?password=hunter2");
        assert!(
            !out.contains("se cret") && !out.contains("hunter2"),
            "{out}"
        );
        assert!(out.starts_with("postgres://"), "{out}");
        let out = redact_url("not a url at all password=hunter2?password=x");
        assert!(!out.contains("=x"), "{out}");
    }
}
