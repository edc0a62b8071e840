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
    resolver: Resolver,
}

/// A test's lookup: host and port to the addresses it answers this time.
#[cfg(test)]
type ScriptedLookup = Arc<dyn Fn(&str, u16) -> Vec<SocketAddr> + Send + Sync>;

/// How host names become addresses: the system resolver, or (in unit tests) a scripted one
/// that answers differently on each lookup, as a rebinding DNS server would.
#[derive(Clone)]
enum Resolver {
    System,
    #[cfg(test)]
    Scripted {
        lookup: ScriptedLookup,
        /// Addresses the test treats as public (stand-ins for public servers on loopback).
        public: Vec<IpAddr>,
    },
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Resolver::System => f.write_str("System"),
            #[cfg(test)]
            Resolver::Scripted { public, .. } => write!(f, "Scripted({public:?})"),
        }
    }
}

impl Resolver {
    fn is_public(&self, ip: IpAddr) -> bool {
        match self {
            Resolver::System => is_public(ip),
            #[cfg(test)]
            Resolver::Scripted { public, .. } => public.contains(&ip) || is_public(ip),
        }
    }
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
            resolver: Resolver::System,
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
        if host.parse::<IpAddr>().is_err() && !is_dns_name(&host) {
            return Err(self.deny(
                shown,
                Error::HttpRequestDenied,
                "host is neither an IP address nor a DNS name (numeric, hex or octal IPv4 spellings are refused)",
            ));
        }
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
            Err(_) => self.lookup(host, port).await?,
        };
        if addrs.is_empty() {
            return Err(Error::DestinationNotFound);
        }
        if !self.grant.allow_private
            && let Some(bad) = addrs.iter().find(|a| !self.resolver.is_public(a.ip()))
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

    /// One lookup of a host name, within the call's deadline.
    async fn lookup(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Error> {
        match &self.resolver {
            Resolver::System => {
                match tokio::time::timeout_at(self.deadline, tokio::net::lookup_host((host, port)))
                    .await
                {
                    Err(_) => Err(Error::DnsTimeout),
                    Ok(Err(e)) => {
                        tracing::debug!(plugin = %self.plugin, host, error = %e, "lookup failed");
                        Err(Error::DnsError {
                            rcode: Some("address not available".into()),
                            info_code: None,
                        })
                    }
                    Ok(Ok(a)) => Ok(a.collect()),
                }
            }
            #[cfg(test)]
            Resolver::Scripted { lookup, .. } => Ok(lookup(host, port)),
        }
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
///
/// IPv4: every address outside [`NON_PUBLIC_V4`]. IPv6: only global unicast (`2000::/3`,
/// RFC 4291 §2.4) outside [`NON_PUBLIC_V6`], plus the forms that embed an IPv4 address and are
/// judged by it: IPv4-mapped `::ffff:a.b.c.d` (RFC 4291 §2.5.5.2), NAT64 well-known prefix
/// `64:ff9b::/96` (RFC 6052) and 6to4 `2002::/16` (RFC 3056). Everything else outside
/// `2000::/3` is refused: unspecified, loopback, IPv4-compatible `::a.b.c.d` (deprecated),
/// IPv4-translated `::ffff:0:a.b.c.d` (RFC 6145), NAT64 local-use `64:ff9b:1::/48`
/// (RFC 8215), discard `100::/64` (RFC 6666), SRv6 SIDs `5f00::/16` (RFC 9602), unique-local,
/// link-local, site-local and multicast. Stricter than the IANA registries where they mark a
/// few anycast services inside a refused block as global: refusing one costs nothing.
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

/// IPv4 blocks that are not globally reachable: network, prefix length, reference
/// (IANA IPv4 Special-Purpose Address Registry, RFC 6890 and its updates).
const NON_PUBLIC_V4: &[(Ipv4Addr, u8, &str)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8, "this network, RFC 791"),
    (Ipv4Addr::new(10, 0, 0, 0), 8, "private, RFC 1918"),
    (
        Ipv4Addr::new(100, 64, 0, 0),
        10,
        "shared address space, RFC 6598",
    ),
    (Ipv4Addr::new(127, 0, 0, 0), 8, "loopback, RFC 1122"),
    (Ipv4Addr::new(169, 254, 0, 0), 16, "link-local, RFC 3927"),
    (Ipv4Addr::new(172, 16, 0, 0), 12, "private, RFC 1918"),
    (
        Ipv4Addr::new(192, 0, 0, 0),
        24,
        "IETF protocol assignments, RFC 6890",
    ),
    (
        Ipv4Addr::new(192, 0, 2, 0),
        24,
        "documentation TEST-NET-1, RFC 5737",
    ),
    (
        Ipv4Addr::new(192, 88, 99, 0),
        24,
        "6to4 relay anycast, RFC 7526",
    ),
    (Ipv4Addr::new(192, 168, 0, 0), 16, "private, RFC 1918"),
    (Ipv4Addr::new(198, 18, 0, 0), 15, "benchmarking, RFC 2544"),
    (
        Ipv4Addr::new(198, 51, 100, 0),
        24,
        "documentation TEST-NET-2, RFC 5737",
    ),
    (
        Ipv4Addr::new(203, 0, 113, 0),
        24,
        "documentation TEST-NET-3, RFC 5737",
    ),
    (Ipv4Addr::new(224, 0, 0, 0), 4, "multicast, RFC 5771"),
    (
        Ipv4Addr::new(240, 0, 0, 0),
        4,
        "reserved, RFC 1112 (and broadcast, RFC 919)",
    ),
];

/// IPv6 blocks inside global unicast `2000::/3` that are not globally reachable (IANA IPv6
/// Special-Purpose Address Registry). `2002::/16` (6to4) is judged by its embedded address.
const NON_PUBLIC_V6: &[(Ipv6Addr, u8, &str)] = &[
    (
        Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0),
        23,
        "IETF protocol assignments (Teredo 2001::/32, ORCHID, benchmarking), RFC 2928",
    ),
    (
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
        32,
        "documentation, RFC 3849",
    ),
    (
        Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0),
        20,
        "documentation, RFC 9637",
    ),
];

fn in_v4(ip: Ipv4Addr, net: Ipv4Addr, len: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, len: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    u128::from(ip) & mask == u128::from(net) & mask
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    !NON_PUBLIC_V4
        .iter()
        .any(|&(net, len, _)| in_v4(ip, net, len))
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let o = ip.octets();
    let embedded = |at: usize| Ipv4Addr::new(o[at], o[at + 1], o[at + 2], o[at + 3]);
    // IPv4-mapped ::ffff:a.b.c.d: the IPv4 address itself.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    // NAT64 well-known prefix 64:ff9b::/96 (RFC 6052): the translator reaches the IPv4 address.
    if in_v6(ip, Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96) {
        return is_public_v4(embedded(12));
    }
    // 6to4 2002:a.b.c.d::/48 (RFC 3056): the relay reaches the IPv4 address.
    if in_v6(ip, Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16) {
        return is_public_v4(embedded(2));
    }
    in_v6(ip, Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3)
        && !NON_PUBLIC_V6
            .iter()
            .any(|&(net, len, _)| in_v6(ip, net, len))
}

/// Whether a host that is not an IP literal is a plain DNS name: labels of letters, digits and
/// hyphens (1–63 bytes, at most 253 in all) whose last label is not numeric. A last label of
/// digits or `0x…` is a legacy IPv4 spelling (`2130706433`, `0x7f.1`, `0177.0.0.1`) that a
/// resolver may turn into an address; it is refused rather than guessed at.
fn is_dns_name(host: &str) -> bool {
    let labels: Vec<&str> = host.split('.').collect();
    let label_ok = |l: &&str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let last = labels.last().copied().unwrap_or("");
    let numeric = last.bytes().all(|b| b.is_ascii_digit())
        || last
            .strip_prefix("0x")
            .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
    host.len() <= 253 && labels.iter().all(label_ok) && !numeric
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
            "192.0.0.170",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            // IPv4-translated (RFC 6145), even of a public address.
            "::ffff:0:127.0.0.1",
            "::ffff:0:8.8.8.8",
            // IPv4-compatible (deprecated).
            "::127.0.0.1",
            "::8.8.8.8",
            // NAT64 well-known prefix with a private address, and the local-use prefix.
            "64:ff9b::a00:1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::808:808",
            "64:ff9b:1:ffff::1",
            "2002:7f00:1::",
            "2002:a00:1::1",
            "2002:c0a8:101::1",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:db8::1",
            "3fff::1",
            "100::1",
            "5f00::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "ff0e::1",
            "4000::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip} is not public");
        }
        for ip in [
            "1.1.1.1",
            "93.184.216.34",
            "172.32.0.1",
            "100.128.0.1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2606:4700::1111",
            "2a00:1450:4001::1",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip} is public");
        }
    }

    #[test]
    fn legacy_ipv4_spellings_are_not_host_names() {
        for host in [
            "2130706433",
            "0x7f.1",
            "0177.0.0.1",
            "127.1",
            "1.0x7f",
            "a..b",
            "-a.b",
            "",
        ] {
            assert!(!is_dns_name(host), "{host} is refused");
        }
        for host in ["api.example.com", "localhost", "a-b.c0", "x1.example"] {
            assert!(is_dns_name(host), "{host} is a DNS name");
        }
        let p = policy(&["2130706433", "0x7f.1:80"]);
        for u in ["http://2130706433/", "http://0x7f.1/"] {
            let uri: http::Uri = u.parse().unwrap();
            assert!(
                matches!(p.target(&uri), Err(Error::HttpRequestDenied)),
                "{u} is denied even when granted"
            );
        }
    }

    /// A one-shot HTTP server on `ip`: answers every request with `head` (and an empty body),
    /// counting the requests.
    async fn server(ip: &str, head: String) -> (SocketAddr, Arc<std::sync::atomic::AtomicU32>) {
        use std::sync::atomic::{AtomicU32, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicU32::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                counter.fetch_add(1, Ordering::SeqCst);
                let reply = format!("{head}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                let _ = conn.write_all(reply.as_bytes()).await;
                let _ = conn.shutdown().await;
            }
        });
        (addr, hits)
    }

    /// A policy whose lookups answer `answers` in turn (the last one repeated) and that treats
    /// `public` as public; it counts the lookups.
    fn scripted(
        hosts: &[String],
        answers: Vec<Vec<SocketAddr>>,
        public: Vec<IpAddr>,
    ) -> (HttpPolicy, Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let lookups = Arc::new(AtomicUsize::new(0));
        let counter = lookups.clone();
        let mut p = policy(&hosts.iter().map(String::as_str).collect::<Vec<_>>());
        p.deadline = Instant::now() + Duration::from_secs(5);
        p.resolver = Resolver::Scripted {
            lookup: Arc::new(move |_, _| {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                answers[n.min(answers.len() - 1)].clone()
            }),
            public,
        };
        (p, lookups)
    }

    /// `GET url` through the policy: the status and the `Location` header.
    async fn get(p: &HttpPolicy, url: &str) -> Result<(u16, Option<String>), Error> {
        let req = http::Request::get(url)
            .body(
                http_body_util::Empty::<Bytes>::new()
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            )
            .unwrap();
        let (res, _) = p.clone().send(req, None).await?;
        let location = res
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok((res.status().as_u16(), location))
    }

    #[tokio::test]
    async fn a_rebinding_name_connects_to_the_address_it_was_checked_as() {
        use std::sync::atomic::Ordering;
        // 127.0.0.2 stands in for a public server; 127.0.0.1 is the private target.
        let (public, public_hits) = server("127.0.0.2", "HTTP/1.1 200 OK".into()).await;
        let (private, private_hits) = server("127.0.0.1", "HTTP/1.1 200 OK".into()).await;
        let host = format!("rebind.example:{}", public.port());
        let (p, lookups) = scripted(
            std::slice::from_ref(&host),
            vec![vec![public], vec![private]],
            vec![public.ip()],
        );
        // First lookup public, and the connection goes to that very address: the name is not
        // looked up again between the check and the connect.
        let (status, _) = get(&p, &format!("http://{host}/")).await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(lookups.load(Ordering::SeqCst), 1, "one lookup per request");
        assert_eq!(public_hits.load(Ordering::SeqCst), 1);
        // The next lookup rebinds to the private address: refused before any connection.
        let r = get(&p, &format!("http://{host}/")).await;
        assert!(matches!(r, Err(Error::DestinationIpProhibited)), "{r:?}");
        assert_eq!(lookups.load(Ordering::SeqCst), 2);
        assert_eq!(
            private_hits.load(Ordering::SeqCst),
            0,
            "nothing reached the private server"
        );
    }

    #[tokio::test]
    async fn a_name_with_any_private_address_is_refused() {
        use std::sync::atomic::Ordering;
        let (public, public_hits) = server("127.0.0.2", "HTTP/1.1 200 OK".into()).await;
        let (private, private_hits) = server("127.0.0.1", "HTTP/1.1 200 OK".into()).await;
        let host = format!("mixed.example:{}", public.port());
        for answer in [vec![public, private], vec![private, public], vec![]] {
            let (p, _) = scripted(
                std::slice::from_ref(&host),
                vec![answer.clone()],
                vec![public.ip()],
            );
            let r = get(&p, &format!("http://{host}/")).await;
            assert!(
                matches!(
                    r,
                    Err(Error::DestinationIpProhibited | Error::DestinationNotFound)
                ),
                "{answer:?}: {r:?}"
            );
        }
        assert_eq!(public_hits.load(Ordering::SeqCst), 0);
        assert_eq!(private_hits.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn redirects_are_not_followed_and_a_followed_one_is_checked_again() {
        use std::sync::atomic::Ordering;
        let (private, private_hits) = server("127.0.0.1", "HTTP/1.1 200 OK".into()).await;
        let location = format!("http://{private}/latest/meta-data/");
        let (public, public_hits) = server(
            "127.0.0.2",
            format!("HTTP/1.1 302 Found\r\nLocation: {location}"),
        )
        .await;
        // Both granted: the redirect target is refused for its address, not for the grant.
        let (p, _) = scripted(
            &[public.to_string(), private.to_string()],
            vec![vec![]],
            vec![public.ip()],
        );
        let (status, to) = get(&p, &format!("http://{public}/")).await.unwrap();
        // The 302 reaches the guest as such: the host never follows a redirect itself.
        assert_eq!((status, to.as_deref()), (302, Some(location.as_str())));
        assert_eq!(public_hits.load(Ordering::SeqCst), 1);
        // A guest that follows it sends a new request, which passes the same guard.
        let r = get(&p, &location).await;
        assert!(matches!(r, Err(Error::DestinationIpProhibited)), "{r:?}");
        assert_eq!(
            private_hits.load(Ordering::SeqCst),
            0,
            "nothing reached the private server"
        );
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
