//! TLS configuration shared by the gateway's listeners: the HTTPS API listener and the PD
//! listener (mutual TLS, `pd_listener`). rustls on the ring provider (the one the LDAP and SMTP
//! clients use), TLS 1.2 and 1.3 only, certificate chain and private key from PEM files;
//! errors name the configuration key and the file.

use std::{path::PathBuf, sync::Arc};

use rustls::{ServerConfig, server::danger::ClientCertVerifier};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

/// The protocol versions every listener accepts: TLS 1.3 and 1.2, nothing older.
pub static PROTOCOL_VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// A PEM file named by a configuration key (`server.tls.cert_file`), for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemFile {
    /// The configuration key that names the file.
    pub key: String,
    pub path: PathBuf,
}

impl PemFile {
    pub fn new(key: impl Into<String>, path: impl Into<PathBuf>) -> PemFile {
        PemFile {
            key: key.into(),
            path: path.into(),
        }
    }
}

/// Why a listener's TLS configuration could not be built; names the key and the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("`{key}` ({path}): {message}")]
    File {
        key: String,
        path: String,
        message: String,
    },
    #[error("`{cert_key}` and `{key_key}`: {message}")]
    Pair {
        cert_key: String,
        key_key: String,
        message: String,
    },
}

fn file_error(file: &PemFile, message: impl Into<String>) -> TlsError {
    TlsError::File {
        key: file.key.clone(),
        path: file.path.display().to_string(),
        message: message.into(),
    }
}

fn read_pem(file: &PemFile) -> Result<Vec<u8>, TlsError> {
    std::fs::read(&file.path).map_err(|e| file_error(file, format!("cannot read: {e}")))
}

/// The certificate chain of a PEM file (leaf first), at least one certificate.
pub fn load_certificates(file: &PemFile) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_pem(file)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(file, format!("not a PEM certificate chain: {e}")))?;
    if certs.is_empty() {
        return Err(file_error(
            file,
            "holds no certificate (expected -----BEGIN CERTIFICATE-----)",
        ));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_private_key(file: &PemFile) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_pem(file)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        file_error(
            file,
            format!("holds no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}"),
        )
    })
}

/// The crypto provider of every listener.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server configuration from a certificate chain and its private key: TLS 1.2 and 1.3,
/// the given ALPN protocols, and client certificates checked by `client_verifier` when
/// given (mutual TLS, for the PD listener), not asked for otherwise.
pub fn server_config(
    cert: &PemFile,
    key: &PemFile,
    client_verifier: Option<Arc<dyn ClientCertVerifier>>,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = load_certificates(cert)?;
    let private = load_private_key(key)?;
    server_config_with(chain, private, client_verifier, alpn).map_err(|message| TlsError::Pair {
        cert_key: cert.key.clone(),
        key_key: key.key.clone(),
        message,
    })
}

/// [`server_config`] from a certificate chain and key in memory (the PD listener's, issued
/// by the gateway's CA at start-up); the error says what does not fit.
pub fn server_config_with(
    chain: Vec<CertificateDer<'static>>,
    private: PrivateKeyDer<'static>,
    client_verifier: Option<Arc<dyn ClientCertVerifier>>,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, String> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map_err(|e| format!("TLS versions: {e}"))?;
    let builder = match client_verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, private)
        .map_err(|e| format!("the key does not fit the certificate: {e}"))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    #[test]
    fn errors_name_the_key_and_the_file() {
        let dir = std::env::temp_dir().join(format!("lockgate-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let ca = lockgate_test_peers::TestCa::new();
        let cert = write(&dir, "cert.pem", &ca.server_cert_pem);
        let key = write(&dir, "key.pem", &ca.server_key_pem);
        let garbage = write(&dir, "garbage.pem", "hello\n");
        let other_key = write(
            &dir,
            "other-key.pem",
            &lockgate_test_peers::TestCa::new().server_key_pem,
        );
        let c = |p: &Path| PemFile::new("server.tls.cert_file", p);
        let k = |p: &Path| PemFile::new("server.tls.key_file", p);
        server_config(&c(&cert), &k(&key), None, &[b"http/1.1"]).expect("a good pair");
        let missing = dir.join("missing.pem");
        for (e, want) in [
            (
                server_config(&c(&missing), &k(&key), None, &[]).unwrap_err(),
                vec!["server.tls.cert_file", "missing.pem", "cannot read"],
            ),
            (
                server_config(&c(&garbage), &k(&key), None, &[]).unwrap_err(),
                vec!["server.tls.cert_file", "garbage.pem", "no certificate"],
            ),
            (
                server_config(&c(&cert), &k(&garbage), None, &[]).unwrap_err(),
                vec!["server.tls.key_file", "garbage.pem", "private key"],
            ),
            (
                server_config(&c(&cert), &k(&other_key), None, &[]).unwrap_err(),
                vec![
                    "server.tls.cert_file",
                    "server.tls.key_file",
                    "does not fit",
                ],
            ),
        ] {
            let e = e.to_string();
            for w in want {
                assert!(e.contains(w), "{e} lacks {w}");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
