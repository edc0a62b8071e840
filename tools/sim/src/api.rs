//! The gateway's REST API as the simulator uses it (plain HTTP: run the simulator on the
//! gateway's host or through a tunnel; the gateway serves plain HTTP on loopback only).

use anyhow::{Context, anyhow, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use serde_json::{Value, json};

use crate::pd::Identity;
use crate::wire::Generation;

/// A client of `…/api/v1` with one bearer token.
#[derive(Debug, Clone)]
pub struct Api {
    base: String,
    token: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// An answer that is not 2xx: its status and problem document.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: u16,
    pub body: Value,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}: {}", self.status, self.body)
    }
}

impl std::error::Error for ApiError {}

impl Api {
    /// `base` is the API root, e.g. `http://127.0.0.1:8080/api/v1`.
    pub fn new(base: &str, token: &str) -> Self {
        Api {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            client: Client::builder(hyper_util::rt::TokioExecutor::new()).build_http(),
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        token: bool,
    ) -> anyhow::Result<Value> {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if token {
            req = req.header("authorization", format!("Bearer {}", self.token));
        }
        let bytes = match body {
            Some(b) => {
                req = req.header(
                    "content-type",
                    if method == "PATCH" {
                        "application/merge-patch+json"
                    } else {
                        "application/json"
                    },
                );
                Bytes::from(b.to_string())
            }
            None => Bytes::new(),
        };
        let resp = self
            .client
            .request(req.body(Full::new(bytes))?)
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        let body: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap_or_else(|_| json!(String::from_utf8_lossy(&body)))
        };
        if !(200..300).contains(&status) {
            return Err(ApiError { status, body }.into());
        }
        Ok(body)
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call("GET", path, None, true).await
    }

    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call("POST", path, Some(body), true).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call("PATCH", path, Some(body), true).await
    }

    /// The `id` of a created object.
    pub async fn create(&self, path: &str, body: Value) -> anyhow::Result<u64> {
        let v = self.post(path, body).await?;
        v["id"]
            .as_u64()
            .ok_or_else(|| anyhow!("POST {path}: no id in {v}"))
    }

    /// Creates a remote PD of `generation`; its id.
    pub async fn create_pd(&self, name: &str, generation: Generation) -> anyhow::Result<u64> {
        self.create(
            "/remote-pds",
            json!({"name": name, "marking": name, "type": generation.api_type()}),
        )
        .await
    }

    /// Enrols PD `pd_id`: a one-time code, then the code with a new key's CSR (without a
    /// token, as a PD does).
    pub async fn enrol(&self, pd_id: u64, name: &str) -> anyhow::Result<Identity> {
        let code = self
            .post(&format!("/remote-pds/{pd_id}/enrolment-code"), json!({}))
            .await?;
        let code = code["code"]
            .as_str()
            .ok_or_else(|| anyhow!("no code"))?
            .to_owned();
        let (key_der, csr_pem) = crate::pd::new_csr(name)?;
        let issued = self
            .call(
                "POST",
                "/pd-enrolment",
                Some(json!({"code": code, "csr_pem": csr_pem})),
                false,
            )
            .await?;
        let field = |k: &str| {
            issued[k]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("the enrolment answer has no `{k}`"))
        };
        Ok(Identity {
            certificate_pem: field("certificate_pem")?,
            key_der,
            ca_pem: field("ca_pem")?,
        })
    }

    /// The public key PDs verify the key revocation list with.
    pub async fn krl_public_key(&self) -> anyhow::Result<String> {
        let v = self.get("/pd-ca").await?;
        v["krl_public_key"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("GET /pd-ca has no krl_public_key"))
    }

    /// Whether key `key` opens cylinder `cylinder` now by the gateway's engine (the
    /// actual state: what the hardware confirmed).
    pub async fn can_open(&self, key: u64, cylinder: u64) -> anyhow::Result<bool> {
        let v = self
            .get(&format!("/keys/{key}/can-open?cylinder={cylinder}"))
            .await?;
        v["opens"]
            .as_bool()
            .ok_or_else(|| anyhow!("can-open without `opens`: {v}"))
    }

    /// Up to 1 000 open jobs (`GET /jobs?open=true`).
    pub async fn open_jobs(&self) -> anyhow::Result<Vec<Value>> {
        let page = self.get("/jobs?open=true&limit=1000").await?;
        match page["items"].as_array() {
            Some(items) => Ok(items.clone()),
            None => bail!("GET /jobs: no items in {page}"),
        }
    }
}
