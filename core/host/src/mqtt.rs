//! The MQTT publisher behind the `mqtt` capability: one `rumqttc`
//! [`AsyncClient`] whose event loop a tokio task drives (connecting,
//! reconnecting with back-off, keep-alive, QoS 1 acknowledgements).
//!
//! A QoS 1 publish is answered once the broker has acknowledged it (PUBACK),
//! at most `ack_timeout_ms` later; a QoS 0 publish once it is handed to the
//! client. While the broker is not connected, publishes answer `unavailable`
//! instead of queueing up, and a connection loss fails every QoS 1 publish
//! still waiting for its acknowledgement with `unavailable` (the message may
//! or may not have reached the broker: callers retry, so delivery is at least
//! once). The client uses a clean session: nothing unacknowledged is carried
//! into the next connection, so an `ok` always means the broker has it.
//!
//! How acknowledgements are matched: `rumqttc` gives a publish its packet id
//! only when the event loop sends it, and reports that as
//! `Outgoing::Publish(pkid)`, in the order publishes entered its request
//! channel. The publisher keeps the waiters in that same order (a mutex
//! covers "hand to the client" and "queue the waiter"), binds the front
//! waiter to the packet id when the event loop sends it, and answers it on
//! the matching PUBACK. On a connection loss the event loop's leftovers are
//! dropped under the same mutex, so no stale request can shift the order.
//!
//! [`CommandSubscriber`] is the inbound side: a second connection (persistent
//! session, manual acknowledgements) subscribed with QoS 1 to the command
//! topics of event-bridge plugins, acknowledging each message only after it
//! was handled.
//!
//! With a `status_topic`, the broker holds a retained last will `offline`
//! there, and the publisher publishes `online` (retained) on every connect,
//! so subscribers see whether the gateway is connected.
//!
//! Plain TCP or TLS (rustls: `ca_file` or the web PKI roots, an optional
//! client certificate); user name and password from the file or the
//! environment, all read up front by [`MqttConfig::preflight`].
//!
//! Should the event loop's sends ever stop matching the queued publishes (a
//! QoS 1 waiter sent with packet id 0, a send nobody queued), every waiter
//! fails and the connection is made anew, rather than an `ok` go to the
//! wrong message. A QoS 1 `ok` reaching the broker but not a subscriber is
//! the broker dropping to a slow subscriber (Mosquitto's per-client
//! `max_queued_messages`, default 1000; `$SYS/broker/publish/messages/dropped`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use rumqttc::{
    AsyncClient, ClientError, ConnectReturnCode, Event, EventLoop, LastWill, MqttOptions, Outgoing,
    Packet, Publish, QoS, Request, TlsConfiguration, Transport,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use crate::HostError;
use crate::providers::{MQTT_MAX_PAYLOAD_BYTES, MqttPublisher};
use crate::types::PluginError;

/// Longest pause between reconnection attempts.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(30);

/// Where and how the gateway connects to its MQTT broker.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Broker host name or IP address.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// MQTT client id (unique per broker).
    pub client_id: String,
    /// Keep-alive interval, seconds (1..=65535).
    pub keep_alive_secs: u64,
    /// User name, when the broker wants one.
    pub username: Option<String>,
    /// Name of the environment variable holding the user name (instead of `username`).
    pub username_env: Option<String>,
    /// Password (prefer `password_env`).
    #[serde(skip_serializing)]
    pub password: Option<String>,
    /// Name of the environment variable holding the password.
    pub password_env: Option<String>,
    /// Connect with TLS (rustls); the broker's certificate is checked against
    /// `ca_file`, or the public web PKI roots without one, for the name `host`.
    pub tls: bool,
    /// PEM file of the CA certificate(s) the broker's certificate chains to.
    pub ca_file: Option<PathBuf>,
    /// PEM file of the gateway's client certificate (chain), for brokers
    /// that authenticate clients by certificate; needs `client_key_file`.
    pub client_cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub client_key_file: Option<PathBuf>,
    /// The secret of each event-bridge plugin that takes commands, by plugin
    /// name: inbound commands must be signed with it (see [`crate::command_auth`]).
    pub command_secrets: BTreeMap<String, CommandSecret>,
    /// How far a signed command's timestamp may be from the gateway's clock,
    /// either way, seconds (1..=3600).
    pub command_window_secs: u64,
    /// Topic of the gateway's connection state: retained last will `offline`,
    /// retained `online` on every connect. `None`: no state topic.
    pub status_topic: Option<String>,
    /// Messages the client queues for the event loop before publishes wait.
    pub queue_capacity: usize,
    /// How long a QoS 1 publish waits for the broker's acknowledgement
    /// before it answers `unavailable`, milliseconds (1..=600000).
    pub ack_timeout_ms: u64,
    /// QoS 1 messages in flight (sent, not yet acknowledged), 1..=65535.
    pub inflight: u16,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            host: "127.0.0.1".into(),
            port: 1883,
            client_id: "lockgate".into(),
            keep_alive_secs: 30,
            username: None,
            username_env: None,
            password: None,
            password_env: None,
            tls: false,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            command_secrets: BTreeMap::new(),
            command_window_secs: 120,
            status_topic: None,
            queue_capacity: 64,
            ack_timeout_ms: 10_000,
            inflight: 100,
        }
    }
}

impl std::fmt::Debug for MqttConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("client_id", &self.client_id)
            .field("keep_alive_secs", &self.keep_alive_secs)
            .field("username", &self.username)
            .field("username_env", &self.username_env)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_env", &self.password_env)
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .field("client_cert_file", &self.client_cert_file)
            .field("client_key_file", &self.client_key_file)
            .field("command_secrets", &self.command_secrets)
            .field("command_window_secs", &self.command_window_secs)
            .field("status_topic", &self.status_topic)
            .field("queue_capacity", &self.queue_capacity)
            .field("ack_timeout_ms", &self.ack_timeout_ms)
            .field("inflight", &self.inflight)
            .finish()
    }
}

impl MqttConfig {
    /// Checks the values (not the files and environment variables, which
    /// [`MqttConfig::preflight`] reads at start).
    pub fn validate(&self) -> Result<(), HostError> {
        let bad = |m: String| Err(HostError::Config(format!("mqtt: {m}")));
        if self.host.trim().is_empty() {
            return bad("host must not be empty".into());
        }
        if self.port == 0 {
            return bad("port must be positive".into());
        }
        if self.client_id.is_empty() || self.client_id.starts_with(' ') {
            return bad("client_id must be non-empty and not start with a space".into());
        }
        if !(1..=65_535).contains(&self.keep_alive_secs) {
            return bad("keep_alive_secs must be 1..=65535".into());
        }
        if self.password.is_some() && self.password_env.is_some() {
            return bad("set password or password_env, not both".into());
        }
        if self.username.is_some() && self.username_env.is_some() {
            return bad("set username or username_env, not both".into());
        }
        if (self.password.is_some() || self.password_env.is_some())
            && self.username.is_none()
            && self.username_env.is_none()
        {
            return bad("a password needs a username (username or username_env)".into());
        }
        for (key, var) in [
            ("username_env", &self.username_env),
            ("password_env", &self.password_env),
        ] {
            if var
                .as_ref()
                .is_some_and(|v| v.is_empty() || v.contains('='))
            {
                return bad(format!("{key} must name an environment variable"));
            }
        }
        let files = [
            ("ca_file", &self.ca_file),
            ("client_cert_file", &self.client_cert_file),
            ("client_key_file", &self.client_key_file),
        ];
        if !self.tls
            && let Some((key, _)) = files.iter().find(|(_, f)| f.is_some())
        {
            return bad(format!("{key} is set but tls = false (set tls = true)"));
        }
        if self.client_cert_file.is_some() != self.client_key_file.is_some() {
            return bad("client_cert_file and client_key_file go together".into());
        }
        for (bridge, secret) in &self.command_secrets {
            crate::manifest::check_name(bridge)
                .map_err(|e| HostError::Config(format!("mqtt: command_secrets.{bridge}: {e}")))?;
            secret
                .validate()
                .map_err(|e| HostError::Config(format!("mqtt: command_secrets.{bridge}: {e}")))?;
        }
        if !(1..=3_600).contains(&self.command_window_secs) {
            return bad("command_window_secs must be 1..=3600".into());
        }
        if let Some(t) = &self.status_topic {
            crate::config::check_mqtt_topic(t)
                .map_err(|e| HostError::Config(format!("mqtt: status_topic `{t}`: {e}")))?;
        }
        if self.queue_capacity == 0 {
            return bad("queue_capacity must be at least 1".into());
        }
        if !(1..=600_000).contains(&self.ack_timeout_ms) {
            return bad("ack_timeout_ms must be 1..=600000".into());
        }
        if self.inflight == 0 {
            return bad("inflight must be at least 1".into());
        }
        Ok(())
    }

    /// Everything [`MqttConfig::validate`] checks, plus what is read at start:
    /// the TLS files (read and parsed), the environment variables named by
    /// `username_env`, `password_env` and each `command_secrets.*.secret_env`,
    /// and the secrets' length. The gateway calls it before it starts
    /// anything; each error names the key.
    pub fn preflight(&self) -> Result<(), HostError> {
        self.validate()?;
        if self.tls {
            self.tls_config()?;
        }
        self.username()?;
        self.password()?;
        for bridge in self.command_secrets.keys() {
            self.command_auth(bridge)?;
        }
        Ok(())
    }

    /// The rustls client configuration for `tls = true`: the roots of
    /// `ca_file` (or the web PKI), the client certificate if any.
    fn tls_config(&self) -> Result<rustls::ClientConfig, HostError> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let roots = match &self.ca_file {
            Some(ca) => crate::ldap::load_roots(ca)
                .map_err(|e| HostError::Config(format!("mqtt: ca_file: {e}")))?,
            None => rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.into(),
            },
        };
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| HostError::Config(format!("mqtt: TLS: {e}")))?
        .with_root_certificates(roots);
        match (&self.client_cert_file, &self.client_key_file) {
            (Some(cert), Some(key)) => {
                let certs = CertificateDer::pem_file_iter(cert)
                    .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| {
                        HostError::Config(format!(
                            "mqtt: client_cert_file `{}`: {e}",
                            cert.display()
                        ))
                    })?;
                if certs.is_empty() {
                    return Err(HostError::Config(format!(
                        "mqtt: client_cert_file `{}` holds no certificate",
                        cert.display()
                    )));
                }
                let private = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                    HostError::Config(format!("mqtt: client_key_file `{}`: {e}", key.display()))
                })?;
                builder.with_client_auth_cert(certs, private).map_err(|e| {
                    HostError::Config(format!(
                        "mqtt: client_cert_file / client_key_file do not form a usable pair: {e}"
                    ))
                })
            }
            _ => Ok(builder.with_no_client_auth()),
        }
    }

    /// Connection options shared by the publisher and the command subscriber.
    fn options(&self, client_id: &str) -> Result<MqttOptions, HostError> {
        let mut options = MqttOptions::new(client_id, &self.host, self.port);
        options.set_keep_alive(Duration::from_secs(self.keep_alive_secs));
        if let Some(user) = self.username()? {
            options.set_credentials(user, self.password()?.unwrap_or_default());
        }
        if self.tls {
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                Arc::new(self.tls_config()?),
            )));
        }
        Ok(options)
    }

    fn username(&self) -> Result<Option<String>, HostError> {
        match (&self.username, &self.username_env) {
            (Some(u), _) => Ok(Some(u.clone())),
            (None, Some(var)) => std::env::var(var).map(Some).map_err(|_| {
                HostError::Config(format!(
                    "mqtt: username_env `{var}` is not set (or not UTF-8)"
                ))
            }),
            (None, None) => Ok(None),
        }
    }

    /// The command verifier of `bridge`, or why there is none.
    pub fn command_auth(
        &self,
        bridge: &str,
    ) -> Result<crate::command_auth::CommandAuth, HostError> {
        let secret = self.command_secrets.get(bridge).ok_or_else(|| {
            HostError::Config(format!(
                "mqtt: the bridge `{bridge}` takes commands but has no secret (add [plugins.mqtt.command_secrets.{bridge}] with secret_env)"
            ))
        })?;
        let value = secret
            .value()
            .map_err(|e| HostError::Config(format!("mqtt: command_secrets.{bridge}: {e}")))?;
        crate::command_auth::CommandAuth::new(value.as_bytes(), self.command_window_secs)
            .map_err(|e| HostError::Config(format!("mqtt: command_secrets.{bridge}: {e}")))
    }

    fn password(&self) -> Result<Option<String>, HostError> {
        match (&self.password, &self.password_env) {
            (Some(p), _) => Ok(Some(p.clone())),
            (None, Some(var)) => std::env::var(var).map(Some).map_err(|_| {
                HostError::Config(format!(
                    "mqtt: password_env `{var}` is not set (or not UTF-8)"
                ))
            }),
            (None, None) => Ok(None),
        }
    }
}

/// Where a bridge's command secret comes from: `secret_env` (the name of
/// an environment variable, preferred) or `secret` (in the file).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommandSecret {
    /// The secret itself (at least 32 bytes).
    #[serde(skip_serializing)]
    pub secret: Option<String>,
    /// The environment variable holding it.
    pub secret_env: Option<String>,
}

impl std::fmt::Debug for CommandSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandSecret")
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("secret_env", &self.secret_env)
            .finish()
    }
}

impl CommandSecret {
    fn validate(&self) -> Result<(), String> {
        match (&self.secret, &self.secret_env) {
            (Some(_), Some(_)) => Err("set secret or secret_env, not both".into()),
            (None, None) => Err("set secret_env (or secret)".into()),
            (Some(s), None) if s.len() < crate::command_auth::MIN_SECRET_BYTES => Err(format!(
                "secret must be at least {} bytes",
                crate::command_auth::MIN_SECRET_BYTES
            )),
            (None, Some(v)) if v.is_empty() || v.contains('=') => {
                Err("secret_env must name an environment variable".into())
            }
            _ => Ok(()),
        }
    }

    /// The secret (read from the environment for `secret_env`).
    pub fn value(&self) -> Result<String, String> {
        match (&self.secret, &self.secret_env) {
            (Some(s), _) => Ok(s.clone()),
            (None, Some(var)) => std::env::var(var)
                .map_err(|_| format!("secret_env `{var}` is not set (or not UTF-8)")),
            (None, None) => Err("no secret configured".into()),
        }
    }
}

/// An [`MqttPublisher`] over one `rumqttc` client. Dropping it stops the
/// event loop (the broker then publishes the last will, if any).
pub struct RumqttPublisher {
    client: AsyncClient,
    connected: watch::Receiver<bool>,
    tracker: Arc<Mutex<Tracker>>,
    broker: String,
    status_topic: Option<String>,
    ack_timeout: Duration,
    task: tokio::task::JoinHandle<()>,
}

/// What a publish waits for: `Ok` on the broker's acknowledgement, `Err`
/// with the reason when the connection was lost first.
type AckSender = oneshot::Sender<Result<(), String>>;
/// The receiving end of an [`AckSender`].
type AckReceiver = oneshot::Receiver<Result<(), String>>;
/// Why [`RumqttPublisher::enqueue`] did not queue: `Ok(payload)` when the
/// client's queue was full (retry with the payload), `Err` otherwise.
type NotQueued = Result<Vec<u8>, PluginError>;

/// The publishes handed to the client, in order, and the QoS 1 ones the
/// broker has not acknowledged yet (see the module documentation).
#[derive(Default)]
struct Tracker {
    /// The broker connection is up (publishes are accepted).
    connected: bool,
    /// Publishes handed to the client that the event loop has not sent yet,
    /// oldest first.
    queued: VecDeque<Queued>,
    /// Sent QoS 1 publishes by packet id.
    inflight: HashMap<u16, AckSender>,
    /// The next `Outgoing::Publish` is the resend of a collided publish,
    /// whose waiter was already answered.
    skip_next: bool,
}

/// A publish handed to the client, as the event loop is expected to send it.
enum Queued {
    /// QoS 0: sent with packet id 0; nobody waits.
    AtMostOnce,
    /// QoS 1 that nobody waits for (the `online` / `offline` state).
    Untracked,
    /// QoS 1 with its waiter.
    Waited(AckSender),
}

impl Tracker {
    /// Fails every waiter (the connection is gone).
    fn fail_all(&mut self, reason: &str) {
        for q in self.queued.drain(..) {
            if let Queued::Waited(tx) = q {
                let _ = tx.send(Err(reason.to_owned()));
            }
        }
        for (_, tx) in self.inflight.drain() {
            let _ = tx.send(Err(reason.to_owned()));
        }
        self.skip_next = false;
    }
}

fn lock(tracker: &Mutex<Tracker>) -> MutexGuard<'_, Tracker> {
    tracker.lock().unwrap_or_else(|e| e.into_inner())
}

impl std::fmt::Debug for RumqttPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RumqttPublisher")
            .field("broker", &self.broker)
            .field("connected", &*self.connected.borrow())
            .finish_non_exhaustive()
    }
}

impl Drop for RumqttPublisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RumqttPublisher {
    /// Creates the client and spawns its event loop on the current tokio
    /// runtime (it must be called inside one). Connecting happens in the
    /// background; see [`RumqttPublisher::wait_connected`].
    pub fn start(config: &MqttConfig) -> Result<Self, HostError> {
        config.validate()?;
        let mut options = config.options(&config.client_id)?;
        // Room for the largest payload plus topic and header.
        let packet = MQTT_MAX_PAYLOAD_BYTES + 4 * 1024;
        options.set_max_packet_size(packet, packet);
        options.set_clean_session(true);
        options.set_inflight(config.inflight);
        if let Some(topic) = &config.status_topic {
            options.set_last_will(LastWill::new(topic, "offline", QoS::AtLeastOnce, true));
        }
        let (client, eventloop) = AsyncClient::new(options, config.queue_capacity);
        let (tx, connected) = watch::channel(false);
        let broker = format!("{}:{}", config.host, config.port);
        let handle = tokio::runtime::Handle::try_current().map_err(|_| {
            HostError::Config("mqtt: the publisher must start inside a tokio runtime".into())
        })?;
        let tracker = Arc::new(Mutex::new(Tracker::default()));
        let task = handle.spawn(drive(
            eventloop,
            client.clone(),
            tracker.clone(),
            config.status_topic.clone(),
            broker.clone(),
            tx,
        ));
        Ok(RumqttPublisher {
            client,
            connected,
            tracker,
            broker,
            status_topic: config.status_topic.clone(),
            ack_timeout: Duration::from_millis(config.ack_timeout_ms),
            task,
        })
    }

    /// True while the broker connection is up.
    pub fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// Waits until the broker connection is up, at most `timeout`; true when it is.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let mut rx = self.connected.clone();
        tokio::time::timeout(timeout, rx.wait_for(|c| *c))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Publishes `offline` to the status topic (if any) and disconnects
    /// cleanly; pending messages may be lost.
    pub async fn shutdown(&self) {
        if let Some(topic) = &self.status_topic {
            let mut t = lock(&self.tracker);
            if self
                .client
                .try_publish(topic, QoS::AtLeastOnce, true, "offline")
                .is_ok()
            {
                t.queued.push_back(Queued::Untracked);
            }
        }
        let _ = self.client.disconnect().await;
    }

    /// Hands one message to the client and queues its waiter, in one step
    /// under the tracker lock. `Ok(None)`: QoS 0, nothing to wait for.
    fn enqueue(
        &self,
        topic: &str,
        qos: QoS,
        retain: bool,
        payload: Vec<u8>,
    ) -> Result<Option<AckReceiver>, NotQueued> {
        let mut t = lock(&self.tracker);
        if !t.connected {
            return Err(Err(PluginError::Unavailable(format!(
                "the MQTT broker {} is not connected",
                self.broker
            ))));
        }
        match self.client.try_publish(topic, qos, retain, payload) {
            Ok(()) => {
                if qos == QoS::AtMostOnce {
                    t.queued.push_back(Queued::AtMostOnce);
                    Ok(None)
                } else {
                    let (tx, rx) = oneshot::channel();
                    t.queued.push_back(Queued::Waited(tx));
                    Ok(Some(rx))
                }
            }
            // The client's queue is full: the caller waits a little and retries.
            Err(ClientError::TryRequest(Request::Publish(p))) => Err(Ok(p.payload.to_vec())),
            Err(e) => Err(Err(PluginError::Unavailable(format!("mqtt client: {e}")))),
        }
    }
}

/// Drives the event loop: reports the connection state, publishes `online`
/// on connect, matches acknowledgements to waiting publishes, and backs off
/// between reconnection attempts.
async fn drive(
    mut eventloop: EventLoop,
    client: AsyncClient,
    tracker: Arc<Mutex<Tracker>>,
    status_topic: Option<String>,
    broker: String,
    connected: watch::Sender<bool>,
) {
    let mut failures: u32 = 0;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) if ack.code == ConnectReturnCode::Success => {
                failures = 0;
                tracing::info!(%broker, "mqtt connected");
                let mut t = lock(&tracker);
                t.connected = true;
                if let Some(topic) = &status_topic {
                    match client.try_publish(topic, QoS::AtLeastOnce, true, "online") {
                        Ok(()) => t.queued.push_back(Queued::Untracked),
                        Err(e) => {
                            tracing::warn!(%broker, error = %e, "mqtt: cannot publish the online state");
                        }
                    }
                }
                drop(t);
                connected.send_replace(true);
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                let mut t = lock(&tracker);
                let in_step = if t.skip_next {
                    t.skip_next = false;
                    pkid != 0
                } else {
                    match t.queued.pop_front() {
                        Some(Queued::Waited(tx)) if pkid != 0 => {
                            if let Some(old) = t.inflight.insert(pkid, tx) {
                                let _ = old.send(Err("packet id reused before its ack".into()));
                            }
                            true
                        }
                        Some(Queued::Untracked) => pkid != 0,
                        Some(Queued::AtMostOnce) => pkid == 0,
                        // A QoS 1 waiter sent as QoS 0, or a send nobody queued.
                        Some(Queued::Waited(_)) | None => false,
                    }
                };
                if !in_step {
                    resync(&mut eventloop, &mut t, &broker);
                    drop(t);
                    connected.send_replace(false);
                }
            }
            Ok(Event::Outgoing(Outgoing::AwaitAck(_))) => {
                // The broker acknowledged out of order and the next publish
                // collided with an unacknowledged packet id: rumqttc resends
                // it once that id is acknowledged (the next `Outgoing::Publish`,
                // skipped). Its waiter is told to retry (a duplicate at worst).
                let mut t = lock(&tracker);
                match t.queued.pop_front() {
                    Some(Queued::Waited(tx)) => {
                        let _ = tx.send(Err("packet id collision; retry".into()));
                        t.skip_next = true;
                    }
                    Some(Queued::Untracked) => t.skip_next = true,
                    Some(Queued::AtMostOnce) | None => {
                        resync(&mut eventloop, &mut t, &broker);
                        drop(t);
                        connected.send_replace(false);
                    }
                }
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                if let Some(tx) = lock(&tracker).inflight.remove(&ack.pkid) {
                    let _ = tx.send(Ok(()));
                }
            }
            Ok(_) => {}
            Err(e) => {
                {
                    // Drop what the event loop kept for a session resume
                    // (a clean session never resumes) and every waiter,
                    // atomically with refusing new publishes.
                    let mut t = lock(&tracker);
                    t.connected = false;
                    eventloop.clean();
                    eventloop.pending.clear();
                    eventloop.state.events.clear();
                    t.fail_all(&format!("the MQTT connection to {broker} was lost"));
                }
                connected.send_replace(false);
                failures = failures.saturating_add(1);
                if failures == 1 || failures.is_multiple_of(20) {
                    tracing::warn!(%broker, error = %e, failures, "mqtt connection failed; retrying");
                }
                let delay = Duration::from_millis(250)
                    .saturating_mul(1u32 << failures.min(8))
                    .min(MAX_RECONNECT_DELAY);
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// The event loop's sends no longer match the queued publishes (never seen;
/// a defence against a change in `rumqttc`): no waiter can be matched to its
/// acknowledgement any more, so every waiter fails and the connection is
/// dropped and made anew (clean session) rather than answer `ok` for the
/// wrong message.
fn resync(eventloop: &mut EventLoop, t: &mut Tracker, broker: &str) {
    tracing::error!(%broker, "mqtt: lost track of which publish is which; reconnecting");
    t.connected = false;
    eventloop.clean();
    eventloop.pending.clear();
    eventloop.state.events.clear();
    eventloop.network = None;
    t.fail_all("the MQTT publisher lost track of its acknowledgements; retry");
}

#[async_trait]
impl MqttPublisher for RumqttPublisher {
    async fn publish(
        &self,
        plugin: &str,
        topic: &str,
        payload: Vec<u8>,
        qos: u8,
        retain: bool,
    ) -> Result<(), PluginError> {
        let qos = match qos {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            other => {
                return Err(PluginError::Invalid(format!(
                    "mqtt qos must be 0 or 1, not {other}"
                )));
            }
        };
        tracing::debug!(plugin, topic, bytes = payload.len(), "mqtt publish");
        let deadline = tokio::time::Instant::now() + self.ack_timeout;
        let mut payload = payload;
        // Bounded: the client's queue is full at most until the deadline.
        let rx = loop {
            match self.enqueue(topic, qos, retain, payload) {
                Ok(rx) => break rx,
                Err(Err(e)) => return Err(e),
                Err(Ok(back)) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(PluginError::Unavailable(
                            "the MQTT client's queue stayed full".into(),
                        ));
                    }
                    payload = back;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        };
        let Some(rx) = rx else { return Ok(()) };
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(reason))) => Err(PluginError::Unavailable(reason)),
            Ok(Err(_)) => Err(PluginError::Unavailable(
                "the MQTT client stopped before the broker acknowledged".into(),
            )),
            Err(_) => Err(PluginError::Unavailable(format!(
                "the MQTT broker {} did not acknowledge within {} ms",
                self.broker,
                self.ack_timeout.as_millis()
            ))),
        }
    }
}

/// One message that arrived on a subscribed topic (see [`CommandSubscriber`]).
#[derive(Debug, Clone)]
pub struct InboundMessage {
    /// The topic it arrived on.
    pub topic: String,
    /// Its payload (at most the client's maximum packet size).
    pub payload: Vec<u8>,
    publish: Publish,
}

/// The inbound side of MQTT: one connection (client id
/// `<client_id><suffix>`, persistent session so QoS 1 messages sent while
/// the gateway is down are kept by the broker, manual acknowledgements)
/// subscribed with QoS 1 to `filters`. Messages arrive on the channel that
/// [`CommandSubscriber::start`] returns; acknowledge each with
/// [`CommandSubscriber::ack`] once handled, so a message whose handling was
/// cut off is delivered again. Dropping it stops the event loop.
pub struct CommandSubscriber {
    client: AsyncClient,
    connected: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for CommandSubscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandSubscriber")
            .field("connected", &*self.connected.borrow())
            .finish_non_exhaustive()
    }
}

impl Drop for CommandSubscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Largest inbound message the subscriber accepts, bytes (commands are far
/// smaller; the handler enforces its own limit).
pub const MQTT_MAX_INBOUND_BYTES: usize = 256 << 10;

impl CommandSubscriber {
    /// Connects (in the background) and subscribes to every filter (e.g.
    /// `lockgate/site-a/cmd/#`) on each connect. Must run inside a tokio runtime.
    pub fn start(
        config: &MqttConfig,
        client_suffix: &str,
        filters: Vec<String>,
    ) -> Result<(Self, mpsc::Receiver<InboundMessage>), HostError> {
        config.validate()?;
        if filters.is_empty() {
            return Err(HostError::Config(
                "mqtt: a command subscriber needs at least one topic filter".into(),
            ));
        }
        let client_id = format!("{}{client_suffix}", config.client_id);
        let mut options = config.options(&client_id)?;
        let packet = MQTT_MAX_INBOUND_BYTES + 4 * 1024;
        options.set_max_packet_size(packet, packet);
        options.set_clean_session(false);
        options.set_manual_acks(true);
        let (client, eventloop) = AsyncClient::new(options, config.queue_capacity);
        let (tx, rx) = mpsc::channel(config.queue_capacity);
        let (connected_tx, connected) = watch::channel(false);
        let handle = tokio::runtime::Handle::try_current().map_err(|_| {
            HostError::Config("mqtt: the subscriber must start inside a tokio runtime".into())
        })?;
        let broker = format!("{}:{}", config.host, config.port);
        let task = handle.spawn(drive_subscriber(
            eventloop,
            client.clone(),
            filters,
            broker,
            tx,
            connected_tx,
        ));
        Ok((
            CommandSubscriber {
                client,
                connected,
                task,
            },
            rx,
        ))
    }

    /// Waits until the connection is up and subscribed, at most `timeout`.
    pub async fn wait_subscribed(&self, timeout: Duration) -> bool {
        let mut rx = self.connected.clone();
        tokio::time::timeout(timeout, rx.wait_for(|c| *c))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Acknowledges a handled message (QoS 1), so the broker does not send it again.
    pub async fn ack(&self, message: &InboundMessage) {
        if let Err(e) = self.client.ack(&message.publish).await {
            tracing::warn!(topic = %message.topic, error = %e, "mqtt: cannot acknowledge");
        }
    }

    /// Publishes `payload` on `topic` (QoS 1, not retained), e.g. a command's
    /// answer; the host does this itself, outside any plugin grant.
    pub async fn reply(&self, topic: &str, payload: Vec<u8>) -> Result<(), PluginError> {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .map_err(|e| PluginError::Unavailable(format!("mqtt client: {e}")))
    }
}

async fn drive_subscriber(
    mut eventloop: EventLoop,
    client: AsyncClient,
    filters: Vec<String>,
    broker: String,
    messages: mpsc::Sender<InboundMessage>,
    connected: watch::Sender<bool>,
) {
    let mut failures: u32 = 0;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) if ack.code == ConnectReturnCode::Success => {
                failures = 0;
                tracing::info!(%broker, session = ack.session_present, "mqtt command subscriber connected");
                for filter in &filters {
                    if let Err(e) = client.try_subscribe(filter, QoS::AtLeastOnce) {
                        tracing::warn!(%broker, %filter, error = %e, "mqtt: cannot subscribe");
                    }
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                connected.send_replace(true);
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let message = InboundMessage {
                    topic: p.topic.clone(),
                    payload: p.payload.to_vec(),
                    publish: p,
                };
                // Backpressure: the event loop waits while the handler is busy.
                if messages.send(message).await.is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => {
                connected.send_replace(false);
                failures = failures.saturating_add(1);
                if failures == 1 || failures.is_multiple_of(20) {
                    tracing::warn!(%broker, error = %e, failures, "mqtt command subscriber connection failed; retrying");
                }
                let delay = Duration::from_millis(250)
                    .saturating_mul(1u32 << failures.min(8))
                    .min(MAX_RECONNECT_DELAY);
                tokio::time::sleep(delay).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validates_and_redacts() {
        let cfg: MqttConfig = toml::from_str(
            r#"
            host = "broker.example"
            username = "gw"
            password = "pw-not-in-logs-4711"
            status_topic = "lockgate/site-a/status"
            [command_secrets.event-bridge]
            secret = "cmd-secret-not-in-logs-0123456789abcdef"
            "#,
        )
        .unwrap();
        cfg.validate().unwrap();
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("pw-not-in-logs"), "{shown}");
        assert!(!shown.contains("cmd-secret-not-in-logs"), "{shown}");
        let serialized = toml::to_string(&cfg).unwrap();
        assert!(!serialized.contains("not-in-logs"), "{serialized}");
        assert_eq!(cfg.port, 1883);
        for bad in [
            "host = \"\"",
            "keep_alive_secs = 0",
            "password = \"x\"",
            "username = \"u\"\npassword = \"x\"\npassword_env = \"P\"",
            "status_topic = \"a/#\"",
            "ack_timeout_ms = 0",
            "inflight = 0",
            "ca_file = \"/etc/ca.pem\"",
            "tls = true\nclient_cert_file = \"/etc/c.pem\"",
            "username = \"u\"\nusername_env = \"U\"",
            "command_window_secs = 0",
            "[command_secrets.b]\nsecret = \"short\"",
            "[command_secrets.b]\nsecret = \"0123456789abcdef0123456789abcdef\"\nsecret_env = \"S\"",
            "[command_secrets.b]",
            "[command_secrets.\"Bad Name\"]\nsecret_env = \"S\"",
        ] {
            let cfg: MqttConfig = toml::from_str(bad).unwrap();
            assert!(cfg.validate().is_err(), "{bad}");
        }
        assert!(toml::from_str::<MqttConfig>("bogus = 1").is_err());
    }
}
