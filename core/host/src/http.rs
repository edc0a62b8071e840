//! Outbound HTTP for plugins (`wasi:http/outgoing-handler`), restricted to the
//! hosts of the plugin's `http` grant.
//!
//! Every request passes [`HttpPolicy`] in the `send_request` hook:
//!
//! 1. the scheme is `http` or `https`;
//! 2. the authority (`host[:port]`, no user info) matches a granted entry
//!    exactly (an entry without a port allows only the scheme's default port);
//! 3. the host is resolved once and every address must be public (not
//!    private, loopback, link-local, unique-local, unspecified, multicast,
//!    broadcast, shared, documentation or reserved; IPv4-mapped and other
//!    embedded IPv4 forms included) unless the grant sets `allow_private`;
//! 4. the connection goes to a vetted address (no second lookup, so DNS
//!    rebinding cannot redirect it), TLS verifies the certificate against the
//!    host name with the webpki roots;
//! 5. connect, first-byte and between-bytes timeouts are capped by the call's
//!    deadline, and the response body by `limits.http_response_bytes`.
//!
//! A refusal answers the guest with a `wasi:http` error code
//! (`HTTP-request-denied`, `destination-IP-prohibited`, ...) and logs the
//! reason with the plugin's name; it never traps.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::{Pin, pin};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::uri::Scheme;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::config::{HostEntry, HttpGrant};

type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;
type SendResult = Result<(http::Response<WasiBody>, IoFuture), Error>;

/// The outbound HTTP rules of one call: who asks, what is granted, until when
/// and how much may be read.
#[derive(Debug, Clone)]
pub(crate) struct HttpPolicy {
    plugin: Arc<str>,
    grant: HttpGrant,
    deadline: Instant,
    max_response_bytes: u64,
}

impl HttpPolicy {
    pub fn new(
        plugin: Arc<str>,
        grant: HttpGrant,
        deadline: Instant,
        max_response_bytes: u64,
    ) -> Self {
        HttpPolicy {
            plugin,
            grant,
            deadline,
            max_response_bytes,
        }
    }

    fn deny(&self, target: &str, error: Error, reason: &str) -> Error {
        tracing::warn!(plugin = %self.plugin, target, reason, "outbound HTTP request denied");
        error
    }

    /// Checks scheme and authority against the grant: the host and port to connect to.
    fn target(&self, uri: &http::Uri) -> Result<(String, u16, bool), Error> {
        let shown = uri.authority().map_or("", |a| a.as_str());
        let tls = match uri.scheme() {
            Some(s) if *s == Scheme::HTTPS => true,
            Some(s) if *s == Scheme::HTTP => false,
            other => {
                let scheme = other.map_or("none", |s| s.as_str());
                return Err(self.deny(
                    shown,
                    Error::HttpRequestDenied,
                    &format!("scheme `{scheme}` is not http or https"),
                ));
            }
        };
        let Some(authority) = uri.authority() else {
            return Err(self.deny(shown, Error::HttpRequestUriInvalid, "no host"));
        };
        if authority.as_str().contains('@') {
            return Err(self.deny(shown, Error::HttpRequestDenied, "user info in the URL"));
        }
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
            .to_ascii_lowercase();
        let host = host.strip_suffix('.').unwrap_or(&host).to_owned();
        let default_port = if tls { 443 } else { 80 };
        let port = authority.port_u16().unwrap_or(default_port);
        let granted = self.grant.hosts.iter().any(|entry| {
            HostEntry::parse(entry)
                .is_ok_and(|e| same_host(&e.host, &host) && e.port.unwrap_or(default_port) == port)
        });
        if !granted {
            return Err(self.deny(
                shown,
                Error::HttpRequestDenied,
                "host is not in the plugin's http grant",
            ));
        }
        Ok((host, port, tls))
    }

    /// Resolves the host once and refuses it when any address is not public
    /// (unless private addresses are granted).
    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Error> {
        let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => {
                match tokio::time::timeout_at(self.deadline, tokio::net::lookup_host((host, port)))
                    .await
                {
                    Err(_) => return Err(Error::DnsTimeout),
                    Ok(Err(e)) => {
                        tracing::debug!(plugin = %self.plugin, host, error = %e, "lookup failed");
                        return Err(Error::DnsError {
                            rcode: Some("address not available".into()),
                            info_code: None,
                        });
                    }
                    Ok(Ok(a)) => a.collect(),
                }
            }
        };
        if addrs.is_empty() {
            return Err(Error::DestinationNotFound);
        }
        if !self.grant.allow_private
            && let Some(bad) = addrs.iter().find(|a| !is_public(a.ip()))
        {
            return Err(self.deny(
                &format!("{host}:{port}"),
                Error::DestinationIpProhibited,
                &format!(
                    "resolves to the non-public address {} (grant allow_private to reach it)",
                    bad.ip()
                ),
            ));
        }
        Ok(addrs)
    }

    /// How long a phase may take: what the guest asked for, at most what is left of the call.
    fn budget(&self, asked: Option<Duration>) -> Duration {
        let left = self.deadline.saturating_duration_since(Instant::now());
        asked.map_or(left, |a| a.min(left))
    }

    async fn send(
        self,
        mut req: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> SendResult {
        let (host, port, tls) = self.target(req.uri())?;
        let addrs = self.resolve(&host, port).await?;
        let connect_timeout = self.budget(options.and_then(|o| o.connect_timeout));
        let first_byte_timeout = self.budget(options.and_then(|o| o.first_byte_timeout));
        let between_bytes = self.budget(options.and_then(|o| o.between_bytes_timeout));

        let connect = async {
            let mut last = None;
            for addr in &addrs {
                match TcpStream::connect(addr).await {
                    Ok(s) => return Ok(s),
                    Err(e) => last = Some(e),
                }
            }
            Err(Error::Connect(last.unwrap_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, "no address")
            })))
        };
        let tcp = tokio::time::timeout(connect_timeout, connect)
            .await
            .map_err(|_| Error::ConnectionTimeout)??;
        let io: Box<dyn Stream> = if tls {
            let name = match host.parse::<IpAddr>() {
                Ok(ip) => rustls::pki_types::ServerName::IpAddress(ip.into()),
                Err(_) => rustls::pki_types::ServerName::try_from(host.clone())
                    .map_err(|_| Error::HttpRequestUriInvalid)?,
            };
            let connector = tls_connector()?;
            let stream = tokio::time::timeout(connect_timeout, connector.connect(name, tcp))
                .await
                .map_err(|_| Error::ConnectionTimeout)?
                .map_err(Error::Tls)?;
            Box::new(stream)
        } else {
            Box::new(tcp)
        };
        let (mut sender, conn) = tokio::time::timeout(
            connect_timeout,
            hyper::client::conn::http1::Builder::new().handshake(TokioIo::new(io)),
        )
        .await
        .map_err(|_| Error::ConnectionTimeout)??;

        // Origin form on the wire: scheme and authority go only into `Host`.
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        *req.uri_mut() = http::Uri::builder()
            .path_and_query(path)
            .build()
            .map_err(|_| Error::HttpRequestUriInvalid)?;

        let deadline = self.deadline;
        let limit = self.max_response_bytes;
        let send = async move {
            let res = tokio::time::timeout(first_byte_timeout, sender.send_request(req))
                .await
                .map_err(|_| Error::ConnectionReadTimeout)??;
            if let Some(len) = res
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                && len > limit
            {
                return Err(Error::HttpResponseBodySize(Some(len)));
            }
            Ok(res.map(|incoming| {
                CappedBody {
                    incoming,
                    limit,
                    read: 0,
                    between_bytes,
                    idle: Box::pin(tokio::time::sleep(between_bytes)),
                    deadline: Box::pin(tokio::time::sleep_until(deadline)),
                }
                .boxed_unsync()
            }))
        };
        // Drive the connection while waiting for the response head.
        let mut send = pin!(send);
        let mut conn = Some(conn);
        let res = std::future::poll_fn(|cx| match send.as_mut().poll(cx) {
            Poll::Ready(r) => Poll::Ready(r),
            Poll::Pending => {
                let Some(c) = conn.as_mut() else {
                    return Poll::Pending;
                };
                let done = ready!(Pin::new(c).poll(cx));
                conn = None;
                match done {
                    Ok(()) => send.as_mut().poll(cx),
                    Err(e) => Poll::Ready(Err(Error::from(e))),
                }
            }
        })
        .await
        .inspect_err(|e| {
            tracing::debug!(plugin = %self.plugin, host, error = %e, "outbound HTTP request failed");
        })?;
        let io: IoFuture = Box::new(async move {
            let Some(conn) = conn else { return Ok(()) };
            match tokio::time::timeout_at(deadline, conn).await {
                Ok(r) => r.map_err(Error::from),
                Err(_) => Err(Error::HttpResponseTimeout),
            }
        });
        Ok((res, io))
    }
}

impl WasiHttpHooks for HttpPolicy {
    // Every scheme reaches `send_request`, which refuses (and logs) all but http(s).
    fn is_supported_scheme(&mut self, _: &Scheme) -> bool {
        true
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        drop(fut);
        Box::new(self.clone().send(request, options))
    }
}

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Stream for T {}

fn tls_connector() -> Result<tokio_rustls::TlsConnector, Error> {
    static CONFIG: OnceLock<Option<Arc<rustls::ClientConfig>>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
        .inspect_err(|e| tracing::error!(error = %e, "cannot configure TLS"))
        .ok()
    });
    config
        .clone()
        .map(tokio_rustls::TlsConnector::from)
        .ok_or(Error::ConfigurationError)
}

/// The response body, cut off at the size limit, the between-bytes timeout and the call deadline.
struct CappedBody {
    incoming: hyper::body::Incoming,
    limit: u64,
    read: u64,
    between_bytes: Duration,
    idle: Pin<Box<Sleep>>,
    deadline: Pin<Box<Sleep>>,
}

impl Body for CappedBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.incoming).poll_frame(cx) {
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Error::from(e)))),
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.read = this.read.saturating_add(data.len() as u64);
                    if this.read > this.limit {
                        return Poll::Ready(Some(Err(Error::HttpResponseBodySize(Some(
                            this.read,
                        )))));
                    }
                }
                let next = Instant::now() + this.between_bytes;
                this.idle.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                if this.deadline.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Err(Error::HttpResponseTimeout)));
                }
                ready!(this.idle.as_mut().poll(cx));
                Poll::Ready(Some(Err(Error::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}

fn same_host(entry: &str, host: &str) -> bool {
    match (entry.parse::<IpAddr>(), host.parse::<IpAddr>()) {
        (Ok(a), Ok(b)) => canonical(a) == canonical(b),
        (Err(_), Err(_)) => entry == host,
        _ => false,
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Whether an address is globally reachable (what a plugin may reach without `allow_private`).
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0 // "this network", unspecified
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 169 && b == 254)
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // documentation
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || (a == 192 && b == 168)
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // documentation
        || (a == 203 && b == 0 && c == 113) // documentation
        || a >= 224) // multicast, reserved, broadcast
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let embedded = |hi: usize| {
        let o = ip.octets();
        Ipv4Addr::new(o[hi], o[hi + 1], o[hi + 2], o[hi + 3])
    };
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    // IPv4-compatible (deprecated) ::a.b.c.d, NAT64 64:ff9b::/96 and 6to4 2002::/16 embed IPv4.
    if s[..6] == [0; 6] {
        return !ip.is_unspecified() && !ip.is_loopback() && is_public_v4(embedded(12));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_public_v4(embedded(12));
    }
    if s[0] == 0x2002 {
        return is_public_v4(embedded(2));
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x0100 && s[1..4] == [0, 0, 0]) // discard-only
        || (s[0] == 0x2001 && s[1] < 0x0200)) // Teredo, ORCHID, benchmarking, ...
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(hosts: &[&str]) -> HttpPolicy {
        HttpPolicy::new(
            "t".into(),
            HttpGrant {
                hosts: hosts.iter().map(|h| h.to_string()).collect(),
                allow_private: false,
            },
            Instant::now() + Duration::from_secs(1),
            1024,
        )
    }

    #[test]
    fn non_public_addresses_are_recognised() {
        for ip in [
            "0.0.0.0",
            "10.1.2.3",
            "127.0.0.1",
            "100.64.0.1",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip} is not public");
        }
        for ip in [
            "1.1.1.1",
            "93.184.216.34",
            "172.32.0.1",
            "::ffff:8.8.8.8",
            "2606:4700::1111",
            "2a00:1450:4001::1",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip} is public");
        }
    }

    #[test]
    fn authority_must_match_a_granted_entry() {
        let p = policy(&["api.example.com", "10.0.0.5:8443", "[::1]:8080"]);
        let ok = |u: &str| {
            let uri: http::Uri = u.parse().map_err(|_| Error::HttpRequestUriInvalid)?;
            p.target(&uri).map(|(h, port, _)| (h, port))
        };
        assert_eq!(
            ok("https://API.example.com/x").unwrap(),
            ("api.example.com".into(), 443)
        );
        assert_eq!(
            ok("http://api.example.com/").unwrap(),
            ("api.example.com".into(), 80)
        );
        assert!(ok("https://api.example.com:8443/").is_err());
        assert!(ok("https://10.0.0.5:8443/").is_ok());
        assert!(ok("https://10.0.0.5/").is_err());
        assert!(ok("http://[::1]:8080/").is_ok());
        assert!(ok("https://evil.example.com/").is_err());
        assert!(ok("https://api.example.com.evil.net/").is_err());
        assert!(ok("https://user@api.example.com/").is_err());
        assert!(ok("ftp://api.example.com/").is_err());
    }
}
