//! The gateway's certificate authority for remote PDs: created on first start, its private
//! key sealed at rest with a key from the configuration or the environment, issuing client
//! certificates from a PD's certificate signing request and the PD listener's server
//! certificate.
//!
//! Architecture invariant: an issued certificate takes only the public key from the CSR.
//! Subject, names, validity, key usages and the CA flag are the gateway's; nothing a device
//! asks for in its request reaches the certificate.

use chrono::{DateTime, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use ring::aead;
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer, pem::PemObject};

use crate::{DevicesError, fingerprint};

/// Largest certificate signing request or uploaded certificate accepted, bytes of PEM.
pub const MAX_PEM_BYTES: usize = 16 << 10;

/// Version tag of a sealed value.
const SEALED_PREFIX: &str = "lgs1.";
/// Bound to every sealed value: a sealed CA key cannot be passed off as anything else.
const SEALED_AAD: &[u8] = b"lockgate pd ca key v1";

/// The 32-byte key that seals the CA's private key at rest (ChaCha20-Poly1305). It lives
/// outside the database (`[pds] ca_key_file` or `LOCKGATE_PD_CA_KEY`), so a database backup
/// alone cannot issue device certificates.
#[derive(Clone)]
pub struct SealingKey([u8; 32]);

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey(..)")
    }
}

impl SealingKey {
    /// Parses 64 hexadecimal digits or the base64 (standard or URL-safe) of 32 bytes;
    /// surrounding white space is ignored.
    pub fn parse(text: &str) -> Result<SealingKey, DevicesError> {
        use base64::Engine as _;
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).ok()
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text))
                .ok()
        };
        match bytes.and_then(|b| <[u8; 32]>::try_from(b).ok()) {
            Some(k) => Ok(SealingKey(k)),
            None => Err(DevicesError::Sealing(
                "the CA sealing key must be 32 bytes: 64 hexadecimal digits or base64".into(),
            )),
        }
    }

    /// A fresh random key (tests, `lockgate` set-up).
    pub fn generate() -> Result<SealingKey, DevicesError> {
        let mut k = [0u8; 32];
        getrandom::getrandom(&mut k)
            .map_err(|e| DevicesError::Sealing(format!("no randomness: {e}")))?;
        Ok(SealingKey(k))
    }

    /// The key as 64 hexadecimal digits (to write a key file).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    fn aead(&self) -> aead::LessSafeKey {
        let unbound = aead::UnboundKey::new(&aead::CHACHA20_POLY1305, &self.0)
            .expect("32 bytes is a ChaCha20-Poly1305 key");
        aead::LessSafeKey::new(unbound)
    }

    /// Seals `plain`: `lgs1.` and the base64url of a random nonce and the ciphertext.
    pub fn seal(&self, plain: &[u8]) -> Result<String, DevicesError> {
        use base64::Engine as _;
        let mut nonce = [0u8; aead::NONCE_LEN];
        getrandom::getrandom(&mut nonce)
            .map_err(|e| DevicesError::Sealing(format!("no randomness: {e}")))?;
        let mut buf = plain.to_vec();
        self.aead()
            .seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(SEALED_AAD),
                &mut buf,
            )
            .map_err(|_| DevicesError::Sealing("sealing failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(format!(
            "{SEALED_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out)
        ))
    }

    /// Opens what [`SealingKey::seal`] made; a wrong key or a changed value is an error.
    pub fn open(&self, sealed: &str) -> Result<Vec<u8>, DevicesError> {
        use base64::Engine as _;
        let wrong = || {
            DevicesError::Sealing(
                "the sealed CA key does not open with the configured sealing key (wrong key, or the stored value was changed)".into(),
            )
        };
        let body = sealed.strip_prefix(SEALED_PREFIX).ok_or_else(wrong)?;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| wrong())?;
        if raw.len() < aead::NONCE_LEN + aead::CHACHA20_POLY1305.tag_len() {
            return Err(wrong());
        }
        let (nonce, cipher) = raw.split_at(aead::NONCE_LEN);
        let nonce = aead::Nonce::try_assume_unique_for_key(nonce).map_err(|_| wrong())?;
        let mut buf = cipher.to_vec();
        let plain = self
            .aead()
            .open_in_place(nonce, aead::Aad::from(SEALED_AAD), &mut buf)
            .map_err(|_| wrong())?;
        Ok(plain.to_vec())
    }
}

/// The CA as stored: its certificate, its sealed private key and its sealed key revocation
/// list signing key (Ed25519 secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedCa {
    pub certificate_pem: String,
    pub sealed_key: String,
    pub sealed_krl_key: String,
}

/// Who a device certificate is issued to: the PD record it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSubject {
    pub system_id: i64,
    pub pd_id: i64,
    /// The PD's marking (in the common name, for people reading the certificate).
    pub marking: String,
}

impl DeviceSubject {
    /// The URI subject alternative name of the PD's certificates.
    pub fn uri(&self) -> String {
        format!("urn:lockgate:pd:{}:{}", self.system_id, self.pd_id)
    }
}

/// A certificate the CA issued, or one an administrator uploaded, as the gateway records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFacts {
    pub pem: String,
    pub der: Vec<u8>,
    /// Serial number, lower-case hexadecimal.
    pub serial: String,
    /// SHA-256 of the DER certificate, lower-case hexadecimal: how a connection is matched
    /// to its PD.
    pub fingerprint: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
}

/// The gateway's PD certificate authority, open (its key in memory).
pub struct CertificateAuthority {
    certificate: CertificateDer<'static>,
    certificate_pem: String,
    issuer: Issuer<'static, KeyPair>,
    krl_key: ed25519_dalek::SigningKey,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("fingerprint", &fingerprint(&self.certificate))
            .finish_non_exhaustive()
    }
}

fn offset(at: DateTime<Utc>) -> Result<time::OffsetDateTime, DevicesError> {
    time::OffsetDateTime::from_unix_timestamp(at.timestamp())
        .map_err(|e| DevicesError::Certificate(format!("time out of range: {e}")))
}

fn random_serial() -> Result<SerialNumber, DevicesError> {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b)
        .map_err(|e| DevicesError::Certificate(format!("no randomness: {e}")))?;
    // Positive and never starting with zero bytes (DER INTEGER, RFC 5280 §4.1.2.2).
    b[0] = (b[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&b))
}

fn rcgen_error(what: &str) -> impl Fn(rcgen::Error) -> DevicesError + '_ {
    move |e| DevicesError::Certificate(format!("{what}: {e}"))
}

/// A self-signed certificate naming a SAML service provider (ECDSA P-256, valid `days` from
/// `now`, common name `entity_id`): the "verification certificate" of a locking system's SSO
/// settings, published in its SP metadata. Its private key is not kept: nothing the gateway
/// sends is signed with it yet (docs/connectors/saml.md).
pub fn service_provider_certificate(
    entity_id: &str,
    now: DateTime<Utc>,
    days: i64,
) -> Result<String, DevicesError> {
    let key_pair = KeyPair::generate().map_err(rcgen_error("generating the SP key"))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        entity_id.chars().take(64).collect::<String>(),
    );
    dn.push(DnType::OrganizationName, "lockgate");
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.not_before = offset(now - chrono::Duration::minutes(5))?;
    params.not_after = offset(now + chrono::Duration::days(days))?;
    params.serial_number = Some(random_serial()?);
    let cert = params
        .self_signed(&key_pair)
        .map_err(rcgen_error("signing the SP certificate"))?;
    Ok(cert.pem())
}

impl CertificateAuthority {
    /// Creates a new CA (ECDSA P-256, valid 20 years from `now`) and its sealed form to store.
    pub fn create(
        now: DateTime<Utc>,
        name: &str,
        key: &SealingKey,
    ) -> Result<(CertificateAuthority, SealedCa), DevicesError> {
        let key_pair = KeyPair::generate().map_err(rcgen_error("generating the CA key"))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn.push(DnType::OrganizationName, "lockgate");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = offset(now - chrono::Duration::minutes(5))?;
        params.not_after = offset(now + chrono::Duration::days(20 * 365))?;
        params.serial_number = Some(random_serial()?);
        let cert = params
            .self_signed(&key_pair)
            .map_err(rcgen_error("signing the CA certificate"))?;
        let mut krl_secret = [0u8; 32];
        getrandom::getrandom(&mut krl_secret)
            .map_err(|e| DevicesError::Sealing(format!("no randomness: {e}")))?;
        let sealed = SealedCa {
            certificate_pem: cert.pem(),
            sealed_key: key.seal(key_pair.serialize_pem().as_bytes())?,
            sealed_krl_key: key.seal(&krl_secret)?,
        };
        let ca = CertificateAuthority {
            certificate: cert.der().clone(),
            certificate_pem: sealed.certificate_pem.clone(),
            issuer: Issuer::new(params, key_pair),
            krl_key: crate::krl::signing_key(&krl_secret),
        };
        Ok((ca, sealed))
    }

    /// Opens a stored CA with the sealing key; refuses a key that does not belong to the
    /// certificate.
    pub fn open(sealed: &SealedCa, key: &SealingKey) -> Result<CertificateAuthority, DevicesError> {
        let key_pem = String::from_utf8(key.open(&sealed.sealed_key)?)
            .map_err(|_| DevicesError::Sealing("the sealed CA key is not PEM".into()))?;
        let key_pair = KeyPair::from_pem(&key_pem).map_err(rcgen_error("the CA key"))?;
        let certificate = CertificateDer::from_pem_slice(sealed.certificate_pem.as_bytes())
            .map_err(|e| DevicesError::Certificate(format!("the CA certificate: {e}")))?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&certificate)
            .map_err(|e| DevicesError::Certificate(format!("the CA certificate: {e}")))?;
        if parsed.public_key().subject_public_key.data.as_ref() != key_pair.public_key_raw() {
            return Err(DevicesError::Sealing(
                "the sealed CA key does not belong to the CA certificate".into(),
            ));
        }
        let issuer = Issuer::from_ca_cert_der(&certificate, key_pair)
            .map_err(rcgen_error("the CA certificate"))?;
        let krl_secret: [u8; 32] = key
            .open(&sealed.sealed_krl_key)?
            .try_into()
            .map_err(|_| DevicesError::Sealing("the sealed KRL key is not 32 bytes".into()))?;
        Ok(CertificateAuthority {
            certificate,
            certificate_pem: sealed.certificate_pem.clone(),
            issuer,
            krl_key: crate::krl::signing_key(&krl_secret),
        })
    }

    /// The Ed25519 key that signs key revocation lists.
    pub fn krl_key(&self) -> &ed25519_dalek::SigningKey {
        &self.krl_key
    }

    /// Its public key, base64: PDs verify lists with it.
    pub fn krl_public_key(&self) -> String {
        crate::krl::public_key(&self.krl_key)
    }

    pub fn certificate_der(&self) -> &CertificateDer<'static> {
        &self.certificate
    }

    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// Issues a PD client certificate for `subject` from the PEM certificate signing request
    /// `csr_pem`, valid `days` days from `now`. The request's signature must verify (the
    /// device holds the key); only its public key is used.
    pub fn issue_device(
        &self,
        csr_pem: &str,
        subject: &DeviceSubject,
        now: DateTime<Utc>,
        days: u32,
    ) -> Result<CertificateFacts, DevicesError> {
        if csr_pem.len() > MAX_PEM_BYTES {
            return Err(DevicesError::Csr(format!(
                "larger than {MAX_PEM_BYTES} bytes"
            )));
        }
        let der = CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes()).map_err(|e| {
            DevicesError::Csr(format!(
                "not a PEM certificate signing request (-----BEGIN CERTIFICATE REQUEST-----): {e}"
            ))
        })?;
        let request = CertificateSigningRequestParams::from_der(&der).map_err(|e| {
            DevicesError::Csr(match e {
                rcgen::Error::InvalidCertificationRequestSignature => {
                    "its signature does not verify with its own public key".into()
                }
                rcgen::Error::UnsupportedExtension => "it requests an extension lockgate does not issue; send a request without extensions".into(),
                other => format!("cannot be read: {other}"),
            })
        })?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            format!(
                "PD {} ({}/{})",
                subject.marking, subject.system_id, subject.pd_id
            ),
        );
        dn.push(DnType::OrganizationName, "lockgate remote PD");
        params.distinguished_name = dn;
        params.subject_alt_names =
            vec![SanType::URI(subject.uri().try_into().map_err(
                |e: rcgen::Error| DevicesError::Certificate(format!("subject URI: {e}")),
            )?)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = offset(now - chrono::Duration::minutes(5))?;
        params.not_after = offset(now + chrono::Duration::days(i64::from(days.max(1))))?;
        params.serial_number = Some(random_serial()?);
        let signed = CertificateSigningRequestParams {
            params,
            public_key: request.public_key,
        }
        .signed_by(&self.issuer)
        .map_err(rcgen_error("signing the device certificate"))?;
        inspect_pem(&signed.pem())
    }

    /// Issues the PD listener's own server certificate for `names` (DNS names or IP
    /// addresses), with a fresh key: `(certificate DER, PKCS#8 key DER)`.
    pub fn issue_server(
        &self,
        names: &[String],
        now: DateTime<Utc>,
        days: u32,
    ) -> Result<(CertificateDer<'static>, Vec<u8>), DevicesError> {
        let key_pair = KeyPair::generate().map_err(rcgen_error("generating the listener key"))?;
        let mut params = CertificateParams::new(names.to_vec())
            .map_err(rcgen_error("the listener's server names"))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "lockgate PD listener");
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = offset(now - chrono::Duration::minutes(5))?;
        params.not_after = offset(now + chrono::Duration::days(i64::from(days.max(1))))?;
        params.serial_number = Some(random_serial()?);
        let cert = params
            .signed_by(&key_pair, &self.issuer)
            .map_err(rcgen_error("signing the listener certificate"))?;
        Ok((cert.der().clone(), key_pair.serialize_der()))
    }
}

/// Reads a PEM certificate (an uploaded one, or one just issued): its serial, fingerprint and
/// validity. One certificate only; at most [`MAX_PEM_BYTES`].
pub fn inspect_pem(pem: &str) -> Result<CertificateFacts, DevicesError> {
    if pem.len() > MAX_PEM_BYTES {
        return Err(DevicesError::Certificate(format!(
            "larger than {MAX_PEM_BYTES} bytes"
        )));
    }
    let mut certs = CertificateDer::pem_slice_iter(pem.as_bytes());
    let der = match (certs.next(), certs.next()) {
        (Some(Ok(der)), None) => der,
        (None, _) => {
            return Err(DevicesError::Certificate(
                "no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
            ));
        }
        (Some(Err(e)), _) => return Err(DevicesError::Certificate(format!("not PEM: {e}"))),
        (Some(Ok(_)), Some(_)) => {
            return Err(DevicesError::Certificate(
                "more than one certificate: send the PD's own certificate only".into(),
            ));
        }
    };
    let (rest, parsed) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| DevicesError::Certificate(format!("not an X.509 certificate: {e}")))?;
    if !rest.is_empty() {
        return Err(DevicesError::Certificate(
            "trailing bytes after the certificate".into(),
        ));
    }
    let time = |t: x509_parser::time::ASN1Time| {
        DateTime::<Utc>::from_timestamp(t.timestamp(), 0)
            .ok_or_else(|| DevicesError::Certificate("validity out of range".into()))
    };
    let validity = parsed.validity();
    Ok(CertificateFacts {
        pem: pem.trim().to_owned() + "\n",
        serial: hex::encode(parsed.raw_serial()),
        fingerprint: fingerprint(&der),
        not_before: time(validity.not_before)?,
        not_after: time(validity.not_after)?,
        der: der.to_vec(),
    })
}

/// Whether `cert_der` is a device (client) certificate signed by `issuer_der`: the signature
/// verifies with the issuer's key, the names chain, it is no CA and, when it says what it is
/// for, it is for client authentication.
pub fn is_client_certificate_of(cert_der: &[u8], issuer_der: &[u8]) -> Result<(), DevicesError> {
    let bad = |m: &str| Err(DevicesError::Certificate(m.to_owned()));
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| DevicesError::Certificate(format!("not an X.509 certificate: {e}")))?;
    let (_, issuer) = x509_parser::parse_x509_certificate(issuer_der)
        .map_err(|e| DevicesError::Certificate(format!("the issuer: {e}")))?;
    if cert.issuer() != issuer.subject() {
        return bad("it is not issued by a trusted PD certificate issuer");
    }
    if cert.verify_signature(Some(issuer.public_key())).is_err() {
        return bad("its signature does not verify with the trusted issuer's key");
    }
    if cert.is_ca() {
        return bad("it is a CA certificate, not a device certificate");
    }
    if let Ok(Some(eku)) = cert.extended_key_usage()
        && !eku.value.client_auth
        && !eku.value.any
    {
        return bad("it is not for client authentication (extended key usage)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr() -> (KeyPair, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["pd.example".into()]).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let csr = params.serialize_request(&key).unwrap();
        (key, csr.pem().unwrap())
    }

    fn subject() -> DeviceSubject {
        DeviceSubject {
            system_id: 3,
            pd_id: 42,
            marking: "PD-42".into(),
        }
    }

    #[test]
    fn sealing_round_trips_and_refuses_another_key_or_a_changed_value() {
        let k = SealingKey::generate().unwrap();
        let sealed = k.seal(b"secret").unwrap();
        assert!(!sealed.contains("secret"));
        assert_eq!(k.open(&sealed).unwrap(), b"secret");
        let other = SealingKey::generate().unwrap();
        assert!(other.open(&sealed).is_err());
        let mut changed = sealed.clone().into_bytes();
        let last = changed.len() - 2;
        changed[last] = if changed[last] == b'A' { b'B' } else { b'A' };
        assert!(k.open(std::str::from_utf8(&changed).unwrap()).is_err());
        assert!(SealingKey::parse(&k.to_hex()).is_ok());
        assert!(SealingKey::parse("short").is_err());
        assert!(format!("{k:?}").contains(".."));
    }

    #[test]
    fn the_ca_opens_only_with_its_key_and_issues_what_the_gateway_decides() {
        let key = SealingKey::generate().unwrap();
        let now = Utc::now();
        let (ca, sealed) = CertificateAuthority::create(now, "test CA", &key).unwrap();
        assert!(!sealed.sealed_key.contains("PRIVATE KEY"));
        let reopened = CertificateAuthority::open(&sealed, &key).unwrap();
        assert_eq!(reopened.certificate_der(), ca.certificate_der());
        assert!(CertificateAuthority::open(&sealed, &SealingKey::generate().unwrap()).is_err());
        // A CA certificate with another CA's key is refused.
        let (_, other) = CertificateAuthority::create(now, "other", &key).unwrap();
        let swapped = SealedCa {
            certificate_pem: sealed.certificate_pem.clone(),
            sealed_key: other.sealed_key,
            sealed_krl_key: sealed.sealed_krl_key.clone(),
        };
        assert_eq!(reopened.krl_public_key(), ca.krl_public_key());
        assert!(CertificateAuthority::open(&swapped, &key).is_err());

        // The CSR asks to be a CA for pd.example: the certificate is a client certificate
        // for the PD record, nothing else.
        let (_, request) = csr();
        let cert = reopened
            .issue_device(&request, &subject(), now, 30)
            .unwrap();
        is_client_certificate_of(&cert.der, ca.certificate_der()).unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert.der).unwrap();
        assert!(!parsed.is_ca());
        let san = parsed.subject_alternative_name().unwrap().unwrap();
        let names: Vec<String> = san
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(names, ["URI(urn:lockgate:pd:3:42)"]);
        assert!(
            (cert.not_after - now - chrono::Duration::days(30))
                .num_seconds()
                .abs()
                < 5
        );
        assert_eq!(cert.fingerprint.len(), 64);
        // Not issued by the other CA.
        let (ca2, _) = CertificateAuthority::create(now, "other", &key).unwrap();
        assert!(is_client_certificate_of(&cert.der, ca2.certificate_der()).is_err());
    }

    #[test]
    fn bad_requests_are_refused_with_the_reason() {
        let key = SealingKey::generate().unwrap();
        let (ca, _) = CertificateAuthority::create(Utc::now(), "CA", &key).unwrap();
        let now = Utc::now();
        let e = ca.issue_device("hello", &subject(), now, 30).unwrap_err();
        assert!(e.to_string().contains("PEM"), "{e}");
        let big = "A".repeat(MAX_PEM_BYTES + 1);
        assert!(ca.issue_device(&big, &subject(), now, 30).is_err());
        // A request whose signature does not match its key: flip a byte of the signature.
        let (_, request) = csr();
        let mut der = CertificateSigningRequestDer::from_pem_slice(request.as_bytes())
            .unwrap()
            .to_vec();
        let n = der.len() - 3;
        der[n] ^= 0x55;
        let tampered = pem_of("CERTIFICATE REQUEST", &der);
        let e = ca.issue_device(&tampered, &subject(), now, 30).unwrap_err();
        assert!(e.to_string().contains("signature"), "{e}");
    }

    fn pem_of(label: &str, der: &[u8]) -> String {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }

    #[test]
    fn inspect_reads_one_certificate() {
        let key = SealingKey::generate().unwrap();
        let (ca, _) = CertificateAuthority::create(Utc::now(), "CA", &key).unwrap();
        let facts = inspect_pem(ca.certificate_pem()).unwrap();
        assert_eq!(facts.fingerprint, fingerprint(ca.certificate_der()));
        let two = format!("{}{}", ca.certificate_pem(), ca.certificate_pem());
        assert!(inspect_pem(&two).is_err());
        assert!(inspect_pem("nothing").is_err());
        // A CA certificate is not a device certificate.
        assert!(is_client_certificate_of(ca.certificate_der(), ca.certificate_der()).is_err());
    }
}
