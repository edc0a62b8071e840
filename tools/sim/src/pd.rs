//! One simulated PD's connection: mutual TLS to the PD listener with the certificate the PD
//! got at enrolment, `HELLO` first, then one request and its answers at a time.

use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, pem::PemObject,
};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::wire::{self, Generation, Message, kind};

/// Largest frame the simulator reads.
pub const MAX_FRAME: usize = 1 << 20;

/// What a PD needs to connect: its certificate and key, and the CA the listener's
/// certificate chains to.
#[derive(Clone)]
pub struct Identity {
    pub certificate_pem: String,
    pub key_der: Vec<u8>,
    pub ca_pem: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").finish_non_exhaustive()
    }
}

/// A key pair and the certificate signing request a PD enrols with.
pub fn new_csr(name: &str) -> anyhow::Result<(Vec<u8>, String)> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let csr = params.serialize_request(&key)?.pem()?;
    Ok((key.serialize_der(), csr))
}

/// The TLS client configuration of a PD.
pub fn tls_config(id: &Identity) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(id.ca_pem.as_bytes()).context("the CA certificate")?)?;
    let chain = vec![
        CertificateDer::from_pem_slice(id.certificate_pem.as_bytes())
            .context("the PD certificate")?,
    ];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(id.key_der.clone()));
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)?;
    Ok(Arc::new(config))
}

/// The gateway refused a request with an `ERROR` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Refusal {}

/// A connected PD.
#[derive(Debug)]
pub struct PdConnection {
    stream: TlsStream<TcpStream>,
    pub generation: Generation,
    pub version: u8,
    next_id: u32,
}

impl PdConnection {
    /// [`PdConnection::connect`], tried `attempts` times with a growing pause (a PD retries:
    /// a listener learns of a certificate enrolled a moment ago at its next refresh).
    pub async fn connect_with_retry(
        addr: &str,
        server_name: &str,
        tls: Arc<rustls::ClientConfig>,
        generation: Generation,
        attempts: u32,
    ) -> anyhow::Result<Self> {
        let mut last = None;
        for attempt in 0..attempts.max(1) {
            match Self::connect(addr, server_name, tls.clone(), generation).await {
                Ok(c) => return Ok(c),
                Err(e) if e.downcast_ref::<Refusal>().is_some() => return Err(e),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(std::time::Duration::from_millis(
                100 * u64::from(attempt + 1),
            ))
            .await;
        }
        Err(last.unwrap_or_else(|| anyhow!("no attempt")))
    }

    /// Connects (TLS with the PD's certificate) and says `HELLO` with the generation's
    /// versions; the answer's version is used from then on.
    pub async fn connect(
        addr: &str,
        server_name: &str,
        tls: Arc<rustls::ClientConfig>,
        generation: Generation,
    ) -> anyhow::Result<Self> {
        let tcp = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(server_name.to_owned())?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .context("TLS handshake")?;
        let mut pd = PdConnection {
            stream,
            generation,
            version: generation.versions()[0],
            next_id: 1,
        };
        let answer = pd
            .request(kind::HELLO, json!({"versions": generation.versions()}), 1)
            .await?;
        let v = answer[0].body["version"]
            .as_u64()
            .and_then(|v| u8::try_from(v).ok())
            .ok_or_else(|| anyhow!("WELCOME without a version"))?;
        if !generation.versions().contains(&v) {
            bail!("the gateway chose version {v}, which this PD does not speak");
        }
        pd.version = v;
        Ok(pd)
    }

    /// The message of a request, with the next message id.
    pub fn message(&mut self, kind: u8, body: Value) -> Message {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        Message {
            magic: self.generation.magic(),
            version: self.version,
            kind,
            id,
            body,
        }
    }

    /// Sends a request and reads `answers` answers, each carrying the request's id. An
    /// `ERROR` answer is a [`Refusal`].
    pub async fn request(
        &mut self,
        kind: u8,
        body: Value,
        answers: usize,
    ) -> anyhow::Result<Vec<Message>> {
        let m = self.message(kind, body);
        self.send(&m).await?;
        let mut out = Vec::with_capacity(answers);
        while out.len() < answers {
            let a = self.receive().await?;
            if a.id != m.id {
                bail!("an answer to message {} arrived for {}", a.id, m.id);
            }
            if a.kind == kind::ERROR {
                return Err(Refusal {
                    code: a.body["code"].as_str().unwrap_or("").to_owned(),
                    message: a.body["message"].as_str().unwrap_or("").to_owned(),
                }
                .into());
            }
            out.push(a);
        }
        Ok(out)
    }

    /// Sends a message as it is.
    pub async fn send(&mut self, m: &Message) -> anyhow::Result<()> {
        wire::write_frame(&mut self.stream, &m.encode()).await?;
        Ok(())
    }

    /// Sends raw frame bytes.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        wire::write_frame(&mut self.stream, bytes).await?;
        Ok(())
    }

    /// Sends the first `cut` bytes of a message's frame and drops the connection.
    pub async fn drop_mid_frame(mut self, m: &Message, cut: usize) {
        let _ = wire::write_partial_frame(&mut self.stream, &m.encode(), cut).await;
    }

    /// Reads one message; the connection's end is an error.
    pub async fn receive(&mut self) -> anyhow::Result<Message> {
        let bytes = wire::read_frame(&mut self.stream, MAX_FRAME)
            .await?
            .ok_or_else(|| anyhow!("the gateway closed the connection"))?;
        let m = Message::decode(&bytes)?;
        if m.magic != self.generation.magic() {
            bail!("an answer with another generation's magic");
        }
        Ok(m)
    }

    /// `HEARTBEAT`: the `SETTINGS` body.
    pub async fn heartbeat(
        &mut self,
        firmware: &str,
        bootloader: Option<&str>,
    ) -> anyhow::Result<Value> {
        let mut body = json!({"firmware": firmware});
        if let Some(b) = bootloader {
            body["bootloader"] = json!(b);
        }
        Ok(self.request(kind::HEARTBEAT, body, 1).await?.remove(0).body)
    }

    /// `KEY_INSERTED` for one key: its deliverable jobs.
    pub async fn key_inserted(&mut self, key_id: u64) -> anyhow::Result<Vec<Value>> {
        let a = self
            .request(kind::KEY_INSERTED, json!({"key_id": key_id}), 1)
            .await?;
        Ok(jobs_of(&a[0]))
    }

    /// `KEY_INSERTED` for several keys at once (generation 2, version 2): jobs per key.
    pub async fn keys_inserted(
        &mut self,
        key_ids: &[u64],
    ) -> anyhow::Result<Vec<(u64, Vec<Value>)>> {
        let a = self
            .request(
                kind::KEY_INSERTED,
                json!({"key_ids": key_ids}),
                key_ids.len(),
            )
            .await?;
        Ok(a.iter()
            .map(|m| (m.body["key_id"].as_u64().unwrap_or(0), jobs_of(m)))
            .collect())
    }

    /// `CKEY_INSERTED`: the cylinder jobs loaded on the C-key.
    pub async fn c_key_inserted(&mut self, c_key_id: u64) -> anyhow::Result<Vec<Value>> {
        let a = self
            .request(kind::CKEY_INSERTED, json!({"c_key_id": c_key_id}), 1)
            .await?;
        Ok(jobs_of(&a[0]))
    }

    /// `JOB_REPORT` `done` for a cylinder job a C-key executed, with the cylinder's audit
    /// trail it read there (`(key id, ms, opened)`).
    pub async fn report_cylinder_done(
        &mut self,
        job_id: u64,
        program_hash: &str,
        report_key: &str,
        trail: &[(u64, i64, bool)],
    ) -> anyhow::Result<String> {
        let trail: Vec<Value> = trail
            .iter()
            .map(|(k, at, opened)| json!({"key_id": k, "at": at, "opened": opened}))
            .collect();
        self.report(
            json!({"job_id": job_id, "outcome": "done", "program_hash": program_hash,
                           "report_key": report_key, "cylinder_audit_trail": trail}),
        )
        .await
    }

    /// `JOB_REPORT` `done`: `applied` or `already_applied`.
    pub async fn report_done(
        &mut self,
        job_id: u64,
        program_hash: &str,
        report_key: &str,
    ) -> anyhow::Result<String> {
        self.report(json!({"job_id": job_id, "outcome": "done", "program_hash": program_hash, "report_key": report_key}))
            .await
    }

    /// `JOB_REPORT` `failed`.
    pub async fn report_failed(
        &mut self,
        job_id: u64,
        reason: &str,
        report_key: &str,
    ) -> anyhow::Result<String> {
        self.report(json!({"job_id": job_id, "outcome": "failed", "reason": reason, "report_key": report_key}))
            .await
    }

    async fn report(&mut self, body: Value) -> anyhow::Result<String> {
        let a = self.request(kind::JOB_REPORT, body, 1).await?;
        Ok(a[0].body["taken"].as_str().unwrap_or("").to_owned())
    }

    /// `AUDIT_TRAIL`: how many records were new.
    pub async fn audit_trail(
        &mut self,
        key_id: u64,
        entries: &[(u64, i64, bool)],
    ) -> anyhow::Result<u64> {
        let entries: Vec<Value> = entries
            .iter()
            .map(|(c, at, opened)| json!({"cylinder_id": c, "at": at, "opened": opened}))
            .collect();
        let a = self
            .request(
                kind::AUDIT_TRAIL,
                json!({"key_id": key_id, "entries": entries}),
                1,
            )
            .await?;
        Ok(a[0].body["new"].as_u64().unwrap_or(0))
    }

    /// `LOG`.
    pub async fn log(&mut self, lines: &[&str]) -> anyhow::Result<()> {
        self.request(kind::LOG, json!({"lines": lines}), 1).await?;
        Ok(())
    }

    /// `RENEW` with a new key: the renewed identity (the new key and certificate, the CA).
    pub async fn renew(&mut self, name: &str) -> anyhow::Result<Identity> {
        let (key_der, csr_pem) = new_csr(name)?;
        let a = self
            .request(kind::RENEW, json!({"csr_pem": csr_pem}), 1)
            .await?;
        let field = |k: &str| {
            a[0].body[k]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("CERTIFICATE has no `{k}`"))
        };
        Ok(Identity {
            certificate_pem: field("certificate_pem")?,
            key_der,
            ca_pem: field("ca_pem")?,
        })
    }

    /// `KRL_REQUEST`: the signed list (`{"list": "...", "signature": "..."}`).
    pub async fn krl(&mut self) -> anyhow::Result<Value> {
        Ok(self
            .request(kind::KRL_REQUEST, json!({}), 1)
            .await?
            .remove(0)
            .body["krl"]
            .clone())
    }
}

fn jobs_of(m: &Message) -> Vec<Value> {
    m.body["jobs"].as_array().cloned().unwrap_or_default()
}

/// Verifies a signed key revocation list (`list`: the list's JSON, base64; `signature`:
/// Ed25519 over those bytes, base64) with the gateway's public key (base64) and returns the
/// list.
pub fn verify_krl(signed: &Value, public_key_b64: &str) -> anyhow::Result<Value> {
    use base64::Engine as _;
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};
    let b64 = base64::engine::general_purpose::STANDARD;
    let list = b64.decode(
        signed["list"]
            .as_str()
            .ok_or_else(|| anyhow!("no `list`"))?,
    )?;
    let sig = b64.decode(
        signed["signature"]
            .as_str()
            .ok_or_else(|| anyhow!("no `signature`"))?,
    )?;
    let key: [u8; 32] = b64
        .decode(public_key_b64)?
        .try_into()
        .map_err(|_| anyhow!("the public key is not 32 bytes"))?;
    VerifyingKey::from_bytes(&key)?
        .verify(&list, &Signature::from_slice(&sig)?)
        .context("the list's signature does not verify")?;
    Ok(serde_json::from_slice(&list)?)
}
