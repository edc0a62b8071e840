//! The plugin's configuration section: `endpoint`, the URL the WSDL's `soap:address` names,
//! checked on every call (https, or http to a loopback host only).

use serde::Deserialize;

/// `[plugins.instances.NAME.config]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The service's public URL, e.g. `https://lockgate.example/ws/hr`.
    pub endpoint: String,
}

impl Settings {
    /// The settings once `endpoint` passed [`check_endpoint`].
    pub fn checked(self) -> Result<Settings, String> {
        check_endpoint(&self.endpoint)?;
        Ok(self)
    }
}

/// An endpoint URL: `https://host[:port][/path]`, or `http://` to `localhost`, `127.x.y.z` or
/// `[::1]`; no user information, query, fragment, spaces or quotes.
pub fn check_endpoint(url: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("config `endpoint` ('{url}') {why}"));
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return bad("must start with https:// (or http:// for a loopback host)");
    };
    if url
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '<' | '>' | '\\'))
    {
        return bad("contains spaces, control characters, quotes or angle brackets");
    }
    if url.contains(['?', '#']) {
        return bad("must not have a query or a fragment");
    }
    let authority = rest.split('/').next().unwrap_or("");
    if authority.contains('@') {
        return bad("must not carry user information");
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, p)) => (
                format!("[{h}]"),
                p.strip_prefix(':')
                    .map(str::to_string)
                    .or_else(|| (!p.is_empty()).then(|| p.to_string())),
            ),
            None => return bad("has an unclosed IPv6 address"),
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p.to_string())),
            None => (authority.to_string(), None),
        }
    };
    if host.is_empty() || host == "[]" {
        return bad("has no host");
    }
    if let Some(p) = port
        && !(p.chars().all(|c| c.is_ascii_digit()) && p.parse::<u16>().is_ok_and(|n| n > 0))
    {
        return bad("has an invalid port");
    }
    if !https && !is_loopback(&host) {
        return bad("uses http:// for a host that is not loopback; use https://");
    }
    Ok(())
}

fn is_loopback(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    if host == "localhost" || host == "[::1]" {
        return true;
    }
    let parts: Vec<&str> = host.split('.').collect();
    parts.len() == 4
        && parts[0] == "127"
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.parse::<u8>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_https_or_loopback_http() {
        for ok in [
            "https://lockgate.example/ws/hr",
            "https://lockgate.example:8443/ws/hr",
            "https://[2001:db8::1]:443/ws/hr",
            "http://127.0.0.1:8080/ws/hr",
            "http://localhost/ws/hr",
            "http://[::1]:9000/ws/hr",
        ] {
            assert_eq!(check_endpoint(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("http://lockgate.example/ws/hr", "not loopback"),
            ("http://127.0.0.1.example/ws/hr", "not loopback"),
            ("ftp://x/ws/hr", "must start with https://"),
            ("https://x/ws/hr?wsdl", "query"),
            ("https://user@x/ws/hr", "user information"),
            ("https://x:0/ws", "invalid port"),
            ("https://x:99999/ws", "invalid port"),
            ("https:///ws", "no host"),
            ("https://x/a\"b", "quotes"),
            ("https://[::1/ws", "unclosed"),
        ] {
            let e = check_endpoint(bad).unwrap_err();
            assert!(e.contains(why) && e.contains("endpoint"), "{bad}: {e}");
        }
    }
}
