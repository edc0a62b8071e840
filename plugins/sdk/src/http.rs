//! Outbound HTTP through `wasi:http/outgoing-handler`, without the plumbing:
//! a request with method, headers and body; a response with status, headers
//! and body; failures as the host's [`Error`].
//!
//! ```ignore
//! use lockgate_plugin_sdk::http::Request;
//!
//! let response = Request::post("https://hooks.example.com/lockgate")
//!     .header("authorization", &format!("Bearer {token}"))
//!     .json(&serde_json::json!({ "kind": "key.lost" }))?
//!     .send()?
//!     .error_for_status()?;
//! ```
//!
//! The gateway must grant the host (`grants.http`, docs/plugins.md):
//! otherwise `send` fails with `error::denied` (`HTTP-request-denied`, or
//! `destination-IP-prohibited` for a private address without
//! `allow_private`). Network failures and timeouts are `error::unavailable`
//! (retrying later may help); a request the host cannot send as it is
//! (a bad URL, method or header) is `error::invalid`.

use std::time::Duration;

use wasip2::http::types::ErrorCode;

use crate::Error;

/// Bytes written to the request body per call (the `wasi:io` stream accepts
/// at most 4096 at once with `blocking-write-and-flush`).
const WRITE_CHUNK: usize = 4096;
/// Bytes read from the response body per call.
const READ_CHUNK: u64 = 64 * 1024;

/// An HTTP request to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, ... (case-sensitive, as sent).
    pub method: String,
    /// `http://` or `https://` URL: host, optional port, path and query.
    pub url: String,
    /// Header names and values, sent in this order.
    pub headers: Vec<(String, String)>,
    /// The body (empty: none).
    pub body: Vec<u8>,
    /// Connect, first-byte and between-bytes timeout; the host caps it by
    /// the call's deadline.
    pub timeout: Option<Duration>,
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names (lower case) and values (lossy UTF-8), in the order received.
    pub headers: Vec<(String, String)>,
    /// The whole body.
    pub body: Vec<u8>,
}

impl Request {
    /// A request with `method` (`GET`, `POST`, ...) to `url`.
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Self {
        Request {
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: None,
        }
    }

    /// `GET url`.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new("GET", url)
    }

    /// `POST url`.
    pub fn post(url: impl Into<String>) -> Self {
        Self::new("POST", url)
    }

    /// `PUT url`.
    pub fn put(url: impl Into<String>) -> Self {
        Self::new("PUT", url)
    }

    /// `DELETE url`.
    pub fn delete(url: impl Into<String>) -> Self {
        Self::new("DELETE", url)
    }

    /// Adds a header (repeat it for several values).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets a JSON body and `content-type: application/json` (unless set).
    pub fn json<T: serde::Serialize + ?Sized>(mut self, value: &T) -> Result<Self, Error> {
        self.body =
            serde_json::to_vec(value).map_err(|e| Error::invalid(format!("request body: {e}")))?;
        if self.header_value("content-type").is_none() {
            self.headers
                .push(("content-type".into(), "application/json".into()));
        }
        Ok(self)
    }

    /// Sets the connect, first-byte and between-bytes timeouts.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    fn header_value(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The headers as sent: the caller's, plus `content-length` when there
    /// is a body or the method usually carries one (so the server sees a
    /// length rather than a chunked body).
    fn wire_headers(&self) -> Result<Vec<(String, Vec<u8>)>, Error> {
        let mut out = Vec::with_capacity(self.headers.len() + 1);
        for (name, value) in &self.headers {
            check_header(name, value)?;
            out.push((name.to_ascii_lowercase(), value.as_bytes().to_vec()));
        }
        let carries_body =
            !self.body.is_empty() || matches!(self.method.as_str(), "POST" | "PUT" | "PATCH");
        if carries_body && self.header_value("content-length").is_none() {
            out.push((
                "content-length".into(),
                self.body.len().to_string().into_bytes(),
            ));
        }
        Ok(out)
    }

    /// Sends the request and reads the whole response. Any status is `Ok`;
    /// see [`Response::error_for_status`].
    pub fn send(self) -> Result<Response, Error> {
        let target = Target::parse(&self.url)?;
        let method = method(&self.method)?;
        let headers = self.wire_headers()?;
        wire::send(&self, &target, &method, &headers)
    }
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> Result<&str, Error> {
        std::str::from_utf8(&self.body)
            .map_err(|_| Error::invalid(format!("status {}: body is not UTF-8", self.status)))
    }

    /// The body as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::invalid(format!(
                "status {}: body is not the JSON expected: {e}",
                self.status
            ))
        })
    }

    /// `Ok(self)` for a 2xx status, otherwise the error the status means:
    /// 408, 425, 429 and 5xx `unavailable` (retry later), 401 and 403
    /// `denied`, 404 and 410 `not-found`, other 4xx `invalid`, anything else
    /// `other`. The message has the status and the start of the body.
    pub fn error_for_status(self) -> Result<Self, Error> {
        if self.is_success() {
            return Ok(self);
        }
        let mut message = format!("HTTP status {}", self.status);
        let snippet = String::from_utf8_lossy(&self.body[..self.body.len().min(200)]);
        let snippet = snippet.trim();
        if !snippet.is_empty() {
            message.push_str(": ");
            message.push_str(snippet);
        }
        Err(match self.status {
            408 | 425 | 429 | 500..=599 => Error::Unavailable(message),
            401 | 403 => Error::Denied(message),
            404 | 410 => Error::NotFound(message),
            400..=499 => Error::Invalid(message),
            _ => Error::Other(message),
        })
    }
}

/// The first value of `name` in `headers` (case-insensitive).
fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Refuses what cannot be a header: an empty name or one with characters
/// outside the RFC 9110 token set, a value with CR, LF or NUL.
fn check_header(name: &str, value: &str) -> Result<(), Error> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return Err(Error::invalid(format!("header name `{name}` is not valid")));
    }
    if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        return Err(Error::invalid(format!(
            "header `{name}`: the value contains CR, LF or NUL"
        )));
    }
    Ok(())
}

/// Scheme, authority and path of a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    https: bool,
    authority: String,
    path_with_query: String,
}

impl Target {
    /// Splits an `http://` or `https://` URL; the fragment is dropped, an
    /// empty path becomes `/`. User info is refused (the host would refuse it).
    fn parse(url: &str) -> Result<Target, Error> {
        let bad = |why: &str| Error::invalid(format!("URL `{url}`: {why}"));
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let https = match scheme.to_ascii_lowercase().as_str() {
            "http" => false,
            "https" => true,
            _ => return Err(bad("the scheme must be http or https")),
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        if authority.is_empty() {
            return Err(bad("no host"));
        }
        if authority.contains('@') {
            return Err(bad("user info is not allowed"));
        }
        if authority
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
            || path
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(bad("contains whitespace or control characters"));
        }
        let path_with_query = match path {
            "" => "/".to_owned(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_owned(),
        };
        Ok(Target {
            https,
            authority: authority.to_owned(),
            path_with_query,
        })
    }
}

/// The `wasi:http` method for a method name.
fn method(name: &str) -> Result<wasip2::http::types::Method, Error> {
    use wasip2::http::types::Method;
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    Ok(match name {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "CONNECT" => Method::Connect,
        "OPTIONS" => Method::Options,
        "TRACE" => Method::Trace,
        "PATCH" => Method::Patch,
        other if !other.is_empty() && other.bytes().all(token) => Method::Other(other.to_owned()),
        other => return Err(Error::invalid(format!("method `{other}` is not valid"))),
    })
}

/// The plugin error for a `wasi:http` error code: the host's refusals are
/// `denied`, network and remote failures `unavailable`, a request that cannot
/// be sent as it is `invalid`, anything else `other`. The message names the
/// code (`HTTP-request-denied`, ...).
pub fn error_from_code(code: &ErrorCode) -> Error {
    let debug = format!("{code:?}");
    let message = debug
        .strip_prefix("ErrorCode::")
        .unwrap_or(&debug)
        .to_owned();
    match code {
        ErrorCode::HttpRequestDenied | ErrorCode::DestinationIpProhibited => Error::Denied(message),
        ErrorCode::DnsTimeout
        | ErrorCode::DnsError(_)
        | ErrorCode::DestinationNotFound
        | ErrorCode::DestinationUnavailable
        | ErrorCode::DestinationIpUnroutable
        | ErrorCode::ConnectionRefused
        | ErrorCode::ConnectionTerminated
        | ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::ConnectionWriteTimeout
        | ErrorCode::ConnectionLimitReached
        | ErrorCode::TlsProtocolError
        | ErrorCode::TlsCertificateError
        | ErrorCode::TlsAlertReceived(_)
        | ErrorCode::HttpResponseIncomplete
        | ErrorCode::HttpResponseTimeout
        | ErrorCode::HttpProtocolError => Error::Unavailable(message),
        ErrorCode::HttpRequestLengthRequired
        | ErrorCode::HttpRequestBodySize(_)
        | ErrorCode::HttpRequestMethodInvalid
        | ErrorCode::HttpRequestUriInvalid
        | ErrorCode::HttpRequestUriTooLong
        | ErrorCode::HttpRequestHeaderSectionSize(_)
        | ErrorCode::HttpRequestHeaderSize(_)
        | ErrorCode::HttpRequestTrailerSectionSize(_)
        | ErrorCode::HttpRequestTrailerSize(_) => Error::Invalid(message),
        _ => Error::Other(message),
    }
}

/// The calls into `wasi:http` (they work only inside the gateway).
mod wire {
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{
        Fields, HeaderError, IncomingBody, Method, OutgoingBody, OutgoingRequest, RequestOptions,
        Scheme,
    };
    use wasip2::io::streams::StreamError;

    use super::{READ_CHUNK, Request, Response, Target, WRITE_CHUNK, error_from_code};
    use crate::Error;

    fn stream_error(e: StreamError, what: &str) -> Error {
        match e {
            StreamError::Closed => Error::Unavailable(format!("{what}: stream closed")),
            StreamError::LastOperationFailed(e) => match wasip2::http::types::http_error_code(&e) {
                Some(code) => error_from_code(&code),
                None => Error::Unavailable(format!("{what}: {}", e.to_debug_string())),
            },
        }
    }

    pub(super) fn send(
        request: &Request,
        target: &Target,
        method: &Method,
        headers: &[(String, Vec<u8>)],
    ) -> Result<Response, Error> {
        let fields = Fields::from_list(headers).map_err(|e| {
            Error::invalid(match e {
                HeaderError::Forbidden => {
                    "a header the host does not allow (e.g. host, connection, transfer-encoding)"
                        .to_owned()
                }
                e => format!("headers: {e:?}"),
            })
        })?;
        let outgoing = OutgoingRequest::new(fields);
        let bad = |what: &str| Error::invalid(format!("request {what} refused"));
        outgoing.set_method(method).map_err(|()| bad("method"))?;
        let scheme = if target.https {
            Scheme::Https
        } else {
            Scheme::Http
        };
        outgoing
            .set_scheme(Some(&scheme))
            .map_err(|()| bad("scheme"))?;
        outgoing
            .set_authority(Some(&target.authority))
            .map_err(|()| bad("authority"))?;
        outgoing
            .set_path_with_query(Some(&target.path_with_query))
            .map_err(|()| bad("path"))?;
        let options = match request.timeout {
            None => None,
            Some(t) => {
                let options = RequestOptions::new();
                let ns = u64::try_from(t.as_nanos()).unwrap_or(u64::MAX);
                // The host may refuse a timeout it does not support: keep its own then.
                let _ = options.set_connect_timeout(Some(ns));
                let _ = options.set_first_byte_timeout(Some(ns));
                let _ = options.set_between_bytes_timeout(Some(ns));
                Some(options)
            }
        };
        let body = outgoing.body().map_err(|()| bad("body"))?;
        let pending =
            outgoing_handler::handle(outgoing, options).map_err(|c| error_from_code(&c))?;

        // Stream the body after handing the request over (a large body
        // would otherwise fill the pipe before anyone reads it).
        let written = write_body(body, &request.body);

        pending.subscribe().block();
        let response = match pending.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(code))) => return Err(error_from_code(&code)),
            Some(Err(())) => return Err(Error::other("HTTP response taken twice")),
            None => return Err(Error::other("HTTP response not ready")),
        };
        written?;
        let status = response.status();
        let headers = response
            .headers()
            .entries()
            .into_iter()
            .map(|(name, value)| (name, String::from_utf8_lossy(&value).into_owned()))
            .collect();
        let incoming = response
            .consume()
            .map_err(|()| Error::other("HTTP response body taken twice"))?;
        let mut body = Vec::new();
        {
            let stream = incoming
                .stream()
                .map_err(|()| Error::other("HTTP response body stream taken twice"))?;
            loop {
                match stream.blocking_read(READ_CHUNK) {
                    Ok(chunk) => body.extend_from_slice(&chunk),
                    Err(StreamError::Closed) => break,
                    Err(e) => return Err(stream_error(e, "reading the response body")),
                }
            }
        }
        let _trailers = IncomingBody::finish(incoming);
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    fn write_body(body: OutgoingBody, bytes: &[u8]) -> Result<(), Error> {
        {
            let stream = body
                .write()
                .map_err(|()| Error::other("HTTP request body stream taken twice"))?;
            for chunk in bytes.chunks(WRITE_CHUNK) {
                stream
                    .blocking_write_and_flush(chunk)
                    .map_err(|e| stream_error(e, "writing the request body"))?;
            }
        }
        OutgoingBody::finish(body, None).map_err(|c| error_from_code(&c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_scheme_authority_and_path() {
        let t = Target::parse("https://hooks.example.com:8443/a/b?x=1#frag").unwrap();
        assert!(t.https);
        assert_eq!(t.authority, "hooks.example.com:8443");
        assert_eq!(t.path_with_query, "/a/b?x=1");
        let t = Target::parse("HTTP://127.0.0.1:9000").unwrap();
        assert!(!t.https);
        assert_eq!(t.authority, "127.0.0.1:9000");
        assert_eq!(t.path_with_query, "/");
        assert_eq!(
            Target::parse("http://[::1]:80?q").unwrap().path_with_query,
            "/?q"
        );
        for bad in [
            "hooks.example.com/x",
            "ftp://h/x",
            "http:///x",
            "http://user:pw@h/x",
            "http://h/a b",
        ] {
            assert!(
                matches!(Target::parse(bad), Err(Error::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn methods_and_headers_are_checked() {
        assert!(matches!(
            method("POST"),
            Ok(wasip2::http::types::Method::Post)
        ));
        assert!(matches!(
            method("PROPFIND"),
            Ok(wasip2::http::types::Method::Other(m)) if m == "PROPFIND"
        ));
        assert!(method("GET /").is_err());
        assert!(method("").is_err());
        assert!(check_header("x-token", "a b").is_ok());
        assert!(check_header("x token", "a").is_err());
        assert!(check_header("", "a").is_err());
        assert!(check_header("x-a", "a\r\nx-b: c").is_err());
    }

    #[test]
    fn a_body_gets_a_content_length_and_json_a_content_type() {
        let r = Request::post("http://h/x")
            .header("X-Token", "t")
            .json(&serde_json::json!({"a": 1}))
            .unwrap();
        assert_eq!(r.body, br#"{"a":1}"#);
        let wire = r.wire_headers().unwrap();
        assert_eq!(
            wire,
            [
                ("x-token".to_owned(), b"t".to_vec()),
                ("content-type".to_owned(), b"application/json".to_vec()),
                ("content-length".to_owned(), b"7".to_vec()),
            ]
        );
        // An empty POST still says so; a GET without body sends no length.
        let empty = Request::post("http://h/x").wire_headers().unwrap();
        assert_eq!(empty, [("content-length".to_owned(), b"0".to_vec())]);
        assert!(
            Request::get("http://h/x")
                .wire_headers()
                .unwrap()
                .is_empty()
        );
        // The caller's own type and length are kept.
        let own = Request::put("http://h/x")
            .header("Content-Type", "text/plain")
            .header("Content-Length", "2")
            .body("hi")
            .json(&1)
            .unwrap();
        assert_eq!(own.wire_headers().unwrap().len(), 2);
        assert!(
            Request::get("http://h/x")
                .header("bad name", "v")
                .wire_headers()
                .is_err()
        );
    }

    fn response(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn statuses_map_to_errors() {
        assert!(response(204, "").error_for_status().is_ok());
        let kind = |status| match response(status, " nope ").error_for_status() {
            Err(Error::Unavailable(m)) => ("unavailable", m),
            Err(Error::Denied(m)) => ("denied", m),
            Err(Error::NotFound(m)) => ("not-found", m),
            Err(Error::Invalid(m)) => ("invalid", m),
            Err(Error::Other(m)) => ("other", m),
            Ok(_) => ("ok", String::new()),
        };
        assert_eq!(kind(503), ("unavailable", "HTTP status 503: nope".into()));
        assert_eq!(kind(429).0, "unavailable");
        assert_eq!(kind(408).0, "unavailable");
        assert_eq!(kind(401).0, "denied");
        assert_eq!(kind(404).0, "not-found");
        assert_eq!(kind(422).0, "invalid");
        assert_eq!(kind(302).0, "other");
    }

    #[test]
    fn responses_read_as_text_json_and_headers() {
        let r = response(200, r#"{"ok":true}"#);
        assert_eq!(r.header("Content-Type"), Some("application/json"));
        assert_eq!(r.text().unwrap(), r#"{"ok":true}"#);
        let v: serde_json::Value = r.json().unwrap();
        assert_eq!(v["ok"], true);
        assert!(response(200, "x").json::<serde_json::Value>().is_err());
    }

    #[test]
    fn error_codes_map_to_plugin_errors() {
        assert!(matches!(
            error_from_code(&ErrorCode::HttpRequestDenied),
            Error::Denied(m) if m == "HttpRequestDenied"
        ));
        assert!(matches!(
            error_from_code(&ErrorCode::DestinationIpProhibited),
            Error::Denied(_)
        ));
        assert!(matches!(
            error_from_code(&ErrorCode::ConnectionRefused),
            Error::Unavailable(_)
        ));
        assert!(matches!(
            error_from_code(&ErrorCode::HttpResponseTimeout),
            Error::Unavailable(_)
        ));
        assert!(matches!(
            error_from_code(&ErrorCode::HttpRequestUriInvalid),
            Error::Invalid(_)
        ));
        assert!(matches!(
            error_from_code(&ErrorCode::HttpResponseBodySize(Some(1))),
            Error::Other(_)
        ));
    }
}
