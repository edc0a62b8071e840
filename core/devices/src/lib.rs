//! lockgate's remote-device identity and transport: the gateway's PD certificate authority
//! ([`ca`]), how a verified certificate names its device ([`fingerprint`]), the signed key
//! revocation list PDs enforce ([`krl`]), and the frame transport of the PD listener
//! ([`transport`]). No database and no listener here: the
//! store keeps certificates, the server runs the mutual-TLS listener.

pub mod ca;
pub mod krl;
pub mod transport;

use sha2::{Digest, Sha256};

/// Why a device operation failed. One error type at this crate's boundary.
#[derive(Debug, thiserror::Error)]
pub enum DevicesError {
    /// The CA sealing key is malformed, or does not open the stored CA key.
    #[error("PD CA key: {0}")]
    Sealing(String),
    /// A certificate signing request is unusable.
    #[error("certificate signing request: {0}")]
    Csr(String),
    /// A certificate could not be issued, read or trusted.
    #[error("certificate: {0}")]
    Certificate(String),
}

/// The SHA-256 fingerprint of a DER certificate, lower-case hexadecimal: the key by which a
/// connection's verified client certificate is matched to its PD record.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}
