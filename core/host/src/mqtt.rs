//! The MQTT publisher behind the `mqtt` capability: one `rumqttc`
//! [`AsyncClient`] whose event loop a tokio task drives (connecting,
//! reconnecting with back-off, keep-alive, QoS 1 acknowledgements).
//!
//! A publish is answered once the message is handed to the client (queued
//! for the event loop); the broker's QoS 1 acknowledgement arrives
//! asynchronously and is not reported to the plugin. While the broker is not
//! connected, publishes answer `unavailable` instead of queueing up.
//!
//! With a `status_topic`, the broker holds a retained last will `offline`
//! there, and the publisher publishes `online` (retained) on every connect,
//! so subscribers see whether the gateway is connected.
//!
//! Plain TCP only for now (no TLS).

use std::time::Duration;

use async_trait::async_trait;
use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, EventLoop, LastWill, MqttOptions, Packet, QoS,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

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
    /// Password (prefer `password_env`).
    #[serde(skip_serializing)]
    pub password: Option<String>,
    /// Name of the environment variable holding the password.
    pub password_env: Option<String>,
    /// Topic of the gateway's connection state: retained last will `offline`,
    /// retained `online` on every connect. `None`: no state topic.
    pub status_topic: Option<String>,
    /// Messages the client queues for the event loop before publishes wait.
    pub queue_capacity: usize,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            host: "127.0.0.1".into(),
            port: 1883,
            client_id: "lockgate".into(),
            keep_alive_secs: 30,
            username: None,
            password: None,
            password_env: None,
            status_topic: None,
            queue_capacity: 64,
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
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_env", &self.password_env)
            .field("status_topic", &self.status_topic)
            .field("queue_capacity", &self.queue_capacity)
            .finish()
    }
}

impl MqttConfig {
    /// Checks the values (not the password variable, which is read at start).
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
        if (self.password.is_some() || self.password_env.is_some()) && self.username.is_none() {
            return bad("a password needs a username".into());
        }
        if let Some(t) = &self.status_topic {
            crate::config::check_mqtt_topic(t)
                .map_err(|e| HostError::Config(format!("mqtt: status_topic `{t}`: {e}")))?;
        }
        if self.queue_capacity == 0 {
            return bad("queue_capacity must be at least 1".into());
        }
        Ok(())
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

/// An [`MqttPublisher`] over one `rumqttc` client. Dropping it stops the
/// event loop (the broker then publishes the last will, if any).
pub struct RumqttPublisher {
    client: AsyncClient,
    connected: watch::Receiver<bool>,
    broker: String,
    status_topic: Option<String>,
    task: tokio::task::JoinHandle<()>,
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
        let mut options = MqttOptions::new(&config.client_id, &config.host, config.port);
        options.set_keep_alive(Duration::from_secs(config.keep_alive_secs));
        // Room for the largest payload plus topic and header.
        let packet = MQTT_MAX_PAYLOAD_BYTES + 4 * 1024;
        options.set_max_packet_size(packet, packet);
        if let Some(user) = &config.username {
            options.set_credentials(user, config.password()?.unwrap_or_default());
        }
        if let Some(topic) = &config.status_topic {
            options.set_last_will(LastWill::new(topic, "offline", QoS::AtLeastOnce, true));
        }
        let (client, eventloop) = AsyncClient::new(options, config.queue_capacity);
        let (tx, connected) = watch::channel(false);
        let broker = format!("{}:{}", config.host, config.port);
        let handle = tokio::runtime::Handle::try_current().map_err(|_| {
            HostError::Config("mqtt: the publisher must start inside a tokio runtime".into())
        })?;
        let task = handle.spawn(drive(
            eventloop,
            client.clone(),
            config.status_topic.clone(),
            broker.clone(),
            tx,
        ));
        Ok(RumqttPublisher {
            client,
            connected,
            broker,
            status_topic: config.status_topic.clone(),
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
            let _ = self
                .client
                .publish(topic, QoS::AtLeastOnce, true, "offline")
                .await;
        }
        let _ = self.client.disconnect().await;
    }
}

/// Drives the event loop: reports the connection state, publishes `online`
/// on connect, and backs off between reconnection attempts.
async fn drive(
    mut eventloop: EventLoop,
    client: AsyncClient,
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
                if let Some(topic) = &status_topic
                    && let Err(e) = client.try_publish(topic, QoS::AtLeastOnce, true, "online")
                {
                    tracing::warn!(%broker, error = %e, "mqtt: cannot publish the online state");
                }
                connected.send_replace(true);
            }
            Ok(_) => {}
            Err(e) => {
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
        if !self.is_connected() {
            return Err(PluginError::Unavailable(format!(
                "the MQTT broker {} is not connected",
                self.broker
            )));
        }
        tracing::debug!(plugin, topic, bytes = payload.len(), "mqtt publish");
        self.client
            .publish(topic, qos, retain, payload)
            .await
            .map_err(|e| PluginError::Unavailable(format!("mqtt client: {e}")))
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
            password = "secret"
            status_topic = "lockgate/site-a/status"
            "#,
        )
        .unwrap();
        cfg.validate().unwrap();
        assert!(!format!("{cfg:?}").contains("secret"));
        assert_eq!(cfg.port, 1883);
        for bad in [
            "host = \"\"",
            "keep_alive_secs = 0",
            "password = \"x\"",
            "username = \"u\"\npassword = \"x\"\npassword_env = \"P\"",
            "status_topic = \"a/#\"",
        ] {
            let cfg: MqttConfig = toml::from_str(bad).unwrap();
            assert!(cfg.validate().is_err(), "{bad}");
        }
        assert!(toml::from_str::<MqttConfig>("bogus = 1").is_err());
    }
}
