//! The PD listener: a separate TLS port (TLS 1.2/1.3, `tls`) that requires a client
//! certificate issued by the gateway's PD CA (or a configured trusted issuer) and recorded,
//! unrevoked, for a PD. Each connection is its own task with handshake, idle and frame
//! time-outs and a frame-size limit, and at most `max_connections` are served at once, so a
//! slow or malicious device holds only its own connection. Frames go to a [`FrameHandler`]
//! (the device-protocol plugin of the PD's generation) with the identity of the PD the
//! verified certificate belongs to.
//!
//! Architecture invariant: a device's identity comes from its verified certificate, looked
//! up by fingerprint in the store for every connection, never from anything it sends.

use std::{
    collections::HashSet,
    net::SocketAddr,
    sync::{Arc, RwLock},
    time::Duration,
};

use anyhow::Context;
use async_trait::async_trait;
use lockgate_app::PdAuthority;
use lockgate_devices::transport::{FrameLimits, read_frame, write_frame};
use lockgate_model::remote_pd::{RemotePd, RemotePdType};
use lockgate_store::Store;
use rustls::{
    DigitallySignedStruct, DistinguishedName, SignatureScheme,
    client::danger::HandshakeSignatureValid,
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime},
    server::{
        WebPkiClientVerifier,
        danger::{ClientCertVerified, ClientCertVerifier},
    },
};

/// The PD a connection speaks for, from its verified certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub system_id: i64,
    pub pd_id: i64,
    pub certificate_id: i64,
    /// SHA-256 of the client certificate.
    pub fingerprint: String,
    /// The PD's marking (its name when it has none), as stored.
    pub marking: String,
    /// The PD's generation, as stored: it picks the device-protocol plugin.
    pub generation: RemotePdType,
}

/// What a [`FrameHandler`] answers to one frame.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrameReply {
    /// Frames to send, in order.
    pub frames: Vec<Vec<u8>>,
    /// Close the connection after sending them.
    pub close: bool,
}

/// What the listener does with a device's frames: the answer, or why the connection is
/// closed at once. `session` is the connection's state between frames (empty at the
/// start), which the handler may change.
#[async_trait]
pub trait FrameHandler: Send + Sync + 'static {
    async fn handle(
        &self,
        device: &Device,
        session: &mut Vec<u8>,
        frame: Vec<u8>,
    ) -> Result<FrameReply, String>;
}

/// The fingerprints of the unrevoked PD certificates, as the handshake sees them: refreshed
/// from the store every few seconds, and soon after a handshake presented a certificate the
/// set does not hold (a PD enrolled since: its retry succeeds). The store stays the
/// authority: every connection is looked up again after the handshake.
#[derive(Debug, Default)]
pub struct TrustedDevices {
    fingerprints: RwLock<HashSet<String>>,
    /// Woken by a handshake with an unknown certificate.
    missed: tokio::sync::Notify,
}

impl TrustedDevices {
    pub fn contains(&self, fingerprint: &str) -> bool {
        let known = self
            .fingerprints
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(fingerprint);
        if !known {
            self.missed.notify_one();
        }
        known
    }

    /// Reads the unrevoked fingerprints again.
    pub async fn refresh(&self, store: &Store) -> Result<(), lockgate_store::StoreError> {
        let set: HashSet<String> = store
            .active_device_fingerprints()
            .await?
            .into_iter()
            .collect();
        *self.fingerprints.write().unwrap_or_else(|p| p.into_inner()) = set;
        Ok(())
    }
}

/// Checks a client certificate: chain to a trusted issuer, validity, client-authentication
/// use (webpki), then that it is an unrevoked PD certificate. Anything else fails the
/// handshake.
#[derive(Debug)]
struct DeviceVerifier {
    chain: Arc<dyn ClientCertVerifier>,
    trusted: Arc<TrustedDevices>,
}

impl ClientCertVerifier for DeviceVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.chain.root_hint_subjects()
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.chain
            .verify_client_cert(end_entity, intermediates, now)?;
        if !self
            .trusted
            .contains(&lockgate_devices::fingerprint(end_entity))
        {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Revoked,
            ));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}

/// Shortest time between two reads of the unrevoked certificates.
const MIN_REFRESH: Duration = Duration::from_millis(200);

/// How the PD listener runs.
#[derive(Debug, Clone)]
pub struct PdListenerOptions {
    pub server_names: Vec<String>,
    pub handshake_timeout: Duration,
    pub limits: FrameLimits,
    pub max_connections: usize,
    /// How often the handshake's view of unrevoked certificates is refreshed.
    pub refresh_every: Duration,
}

impl PdListenerOptions {
    pub fn from_config(cfg: &crate::config::PdsConfig) -> Self {
        PdListenerOptions {
            server_names: cfg.server_names.clone(),
            handshake_timeout: cfg.handshake_timeout.0,
            limits: FrameLimits {
                max_frame_bytes: cfg.max_frame_bytes,
                idle: cfg.idle_timeout.0,
                frame: cfg.frame_timeout.0,
            },
            max_connections: cfg.max_connections,
            refresh_every: Duration::from_secs(2),
        }
    }
}

/// The TLS configuration of the PD listener: a server certificate for `server_names` issued
/// by the gateway's CA now (valid 397 days; issued again at every start), and client
/// certificates checked by [`DeviceVerifier`] against the CA and the trusted issuers.
pub fn tls_config(
    authority: &PdAuthority,
    server_names: &[String],
    trusted: Arc<TrustedDevices>,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for issuer in authority.issuers() {
        roots
            .add(issuer)
            .context("a PD certificate issuer is not a usable CA certificate")?;
    }
    let chain =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), crate::tls::provider())
            .build()
            .context("building the PD client-certificate verifier")?;
    let verifier = Arc::new(DeviceVerifier { chain, trusted });
    let (cert, key) = authority
        .ca
        .issue_server(server_names, chrono::Utc::now(), 397)
        .context("issuing the PD listener's certificate")?;
    let chain = vec![cert, authority.ca.certificate_der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key));
    crate::tls::server_config_with(chain, key, Some(verifier), &[])
        .map_err(|e| anyhow::anyhow!("the PD listener's TLS configuration: {e}"))
}

/// Opens the gateway's PD CA: the stored one, or a new one created and stored on first
/// start (by whichever replica gets there first).
pub async fn open_authority(
    store: &Store,
    cfg: &crate::config::PdsConfig,
    key: &lockgate_devices::ca::SealingKey,
) -> anyhow::Result<PdAuthority> {
    use lockgate_devices::ca::{CertificateAuthority, SealedCa};
    let sealed = match store.pd_ca().await? {
        Some((certificate_pem, sealed_key, sealed_krl_key)) => SealedCa {
            certificate_pem,
            sealed_key,
            sealed_krl_key,
        },
        None => {
            let (_, fresh) =
                CertificateAuthority::create(chrono::Utc::now(), "lockgate PD CA", key)?;
            let (certificate_pem, sealed_key, sealed_krl_key) = store
                .init_pd_ca(
                    &fresh.certificate_pem,
                    &fresh.sealed_key,
                    &fresh.sealed_krl_key,
                )
                .await?;
            tracing::info!("created the gateway's PD certificate authority");
            SealedCa {
                certificate_pem,
                sealed_key,
                sealed_krl_key,
            }
        }
    };
    let ca = CertificateAuthority::open(&sealed, key).context("opening the PD CA")?;
    let mut trusted_issuers = Vec::new();
    for (i, path) in cfg.trusted_issuer_files.iter().enumerate() {
        let file = crate::tls::PemFile::new(format!("pds.trusted_issuer_files[{i}]"), path);
        trusted_issuers.extend(crate::tls::load_certificates(&file)?);
    }
    Ok(PdAuthority {
        ca,
        trusted_issuers,
        certificate_days: cfg.certificate_days,
        krl_validity: chrono::Duration::hours(i64::from(cfg.krl_validity_hours)),
        renew_before: chrono::Duration::days(i64::from(cfg.renew_before_days)),
    })
}

/// Serves PD connections on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    options: PdListenerOptions,
    store: Store,
    trusted: Arc<TrustedDevices>,
    handler: Arc<dyn FrameHandler>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let slots = Arc::new(tokio::sync::Semaphore::new(options.max_connections));
    let refresher = {
        let (store, trusted, every) = (store.clone(), trusted.clone(), options.refresh_every);
        tokio::spawn(async move {
            loop {
                if let Err(e) = trusted.refresh(&store).await {
                    tracing::warn!(error = %e, "PD listener: cannot read the PD certificates");
                }
                // At most one read per `MIN_REFRESH`, however many unknown certificates
                // knock: a flood of strangers costs one query per interval.
                tokio::time::sleep(MIN_REFRESH.min(every)).await;
                tokio::select! {
                    _ = tokio::time::sleep(every.saturating_sub(MIN_REFRESH)) => {}
                    _ = trusted.missed.notified() => {}
                }
            }
        })
    };
    tokio::pin!(shutdown);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "PD listener: accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (acceptor, store, handler, options) = (
            acceptor.clone(),
            store.clone(),
            handler.clone(),
            options.clone(),
        );
        connections.spawn(async move {
            connection(tcp, peer, acceptor, options, store, handler).await;
            drop(permit);
        });
        while connections.try_join_next().is_some() {}
    }
    refresher.abort();
    connections.abort_all();
}

async fn connection(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
    options: PdListenerOptions,
    store: Store,
    handler: Arc<dyn FrameHandler>,
) {
    let _ = tcp.set_nodelay(true);
    let mut stream =
        match tokio::time::timeout(options.handshake_timeout, acceptor.accept(tcp)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::info!(%peer, error = %e, "PD listener: handshake refused");
                return;
            }
            Err(_) => {
                tracing::info!(%peer, "PD listener: handshake timed out");
                return;
            }
        };
    let Some(fingerprint) = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| lockgate_devices::fingerprint(c))
    else {
        return;
    };
    // The store is the authority: a certificate revoked (or a PD deleted) since the last
    // refresh is refused here, before any frame.
    let record = match store.device_by_fingerprint(&fingerprint).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            tracing::info!(%peer, "PD listener: the certificate is revoked or its PD deleted");
            return;
        }
        Err(e) => {
            tracing::warn!(%peer, error = %e, "PD listener: cannot look the device up");
            return;
        }
    };
    let pd: lockgate_store::Stored<RemotePd> = match store
        .get(
            record.system_id,
            lockgate_model::ObjectKind::RemotePd,
            record.pd_id,
            &lockgate_store::Scope::all(),
        )
        .await
    {
        Ok(pd) => pd,
        Err(e) => {
            tracing::info!(%peer, error = %e, "PD listener: the certificate's PD cannot be read");
            return;
        }
    };
    let device = Device {
        system_id: record.system_id,
        pd_id: record.pd_id,
        certificate_id: record.certificate_id,
        fingerprint,
        marking: if pd.body.marking.is_empty() {
            pd.body.name.clone()
        } else {
            pd.body.marking.clone()
        },
        generation: pd.body.pd_type,
    };
    let mut session = Vec::new();
    tracing::debug!(%peer, system_id = device.system_id, pd_id = device.pd_id, "PD connected");
    loop {
        let frame = match read_frame(&mut stream, &options.limits).await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                tracing::info!(%peer, pd_id = device.pd_id, error = %e, "PD connection closed");
                break;
            }
        };
        let reply = match handler.handle(&device, &mut session, frame).await {
            Ok(a) => a,
            Err(reason) => {
                tracing::info!(%peer, pd_id = device.pd_id, %reason, "PD connection closed by its protocol handler");
                break;
            }
        };
        for answer in &reply.frames {
            if let Err(e) = write_frame(&mut stream, answer, &options.limits).await {
                tracing::info!(%peer, pd_id = device.pd_id, error = %e, "PD connection closed while answering");
                return;
            }
        }
        if reply.close {
            break;
        }
    }
    use tokio::io::AsyncWriteExt as _;
    let _ = tokio::time::timeout(options.limits.frame, stream.shutdown()).await;
}

/// The handler of a gateway without device-protocol plugins for the PD's generation: every
/// connection is closed at its first frame, with the reason logged.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProtocol;

#[async_trait]
impl FrameHandler for NoProtocol {
    async fn handle(&self, _: &Device, _: &mut Vec<u8>, _: Vec<u8>) -> Result<FrameReply, String> {
        Err("no device-protocol plugin serves this PD's generation".into())
    }
}

/// The device-protocol plugin of each PD generation (`[pds.protocols]`). At most
/// `concurrency` frames are in plugin calls at once (the others wait their turn, within the
/// frame time-out), so a burst of PDs never exhausts the plugin host's instance pool, which
/// the other plugins share.
#[derive(Debug, Clone)]
pub struct PluginFrames {
    host: lockgate_host::PluginHost,
    protocols: crate::config::PdProtocols,
    slots: Arc<tokio::sync::Semaphore>,
    wait: Duration,
}

impl PluginFrames {
    /// Frames of every PD go to `host`'s plugin for the PD's generation; `concurrency`
    /// calls at once, a frame waiting at most `wait` for its turn.
    pub fn new(
        host: lockgate_host::PluginHost,
        protocols: crate::config::PdProtocols,
        concurrency: usize,
        wait: Duration,
    ) -> Self {
        PluginFrames {
            host,
            protocols,
            slots: Arc::new(tokio::sync::Semaphore::new(concurrency.max(1))),
            wait,
        }
    }
}

#[async_trait]
impl FrameHandler for PluginFrames {
    /// Architecture invariant: the plugin's `device` operations are bound to the PD of
    /// this connection (`DeviceBinding` from the verified certificate), never to anything
    /// in the frame.
    async fn handle(
        &self,
        device: &Device,
        session: &mut Vec<u8>,
        frame: Vec<u8>,
    ) -> Result<FrameReply, String> {
        let _turn = tokio::time::timeout(self.wait, self.slots.acquire())
            .await
            .map_err(|_| "no plugin slot within the frame time-out".to_owned())?
            .map_err(|_| "the PD listener is stopping".to_owned())?;
        let plugin = self.protocols.plugin_for(device.generation);
        let binding = lockgate_host::DeviceBinding {
            system_id: device.system_id,
            pd_id: device.pd_id,
            certificate_id: device.certificate_id,
        };
        let record = lockgate_host::types::Device {
            pd_id: device.pd_id.unsigned_abs(),
            marking: device.marking.clone(),
            generation: device.generation.as_str().replace('_', "-"),
        };
        // The host's instance pool is shared with the other plugins: when it is full for a
        // moment, try again shortly rather than drop the PD.
        let mut attempt = 0;
        let answer = loop {
            match self
                .host
                .handle_frame(
                    plugin,
                    binding,
                    record.clone(),
                    session.clone(),
                    frame.clone(),
                )
                .await
            {
                Err(lockgate_host::HostError::Busy(_)) if attempt < 5 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
                }
                other => break other,
            }
        };
        match answer {
            Ok(Ok(answer)) => {
                *session = answer.session;
                Ok(FrameReply {
                    frames: answer.frames,
                    close: answer.close,
                })
            }
            Ok(Err(e)) => Err(format!("plugin `{plugin}` refused the frame: {e:?}")),
            Err(e) => Err(e.to_string()),
        }
    }
}
