//! A test CA made at runtime: a CA certificate, a server certificate for `localhost` and
//! `127.0.0.1` and a client certificate, as PEM files.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, date_time_ymd,
};

/// A CA and one server certificate it signed (ECDSA P-256), in PEM.
#[derive(Debug, Clone)]
pub struct TestCa {
    /// The CA certificate: what clients trust.
    pub ca_pem: String,
    /// The server certificate, for `localhost` and `127.0.0.1`.
    pub server_cert_pem: String,
    /// The server certificate's private key (PKCS#8).
    pub server_key_pem: String,
    /// A client certificate (`CN=lockgate-client`, client authentication), for peers that
    /// authenticate clients by certificate (e.g. Mosquitto's `require_certificate`).
    pub client_cert_pem: String,
    /// The client certificate's private key (PKCS#8).
    pub client_key_pem: String,
}

/// Where [`TestCa::write_to`] put the PEM files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// `ca.pem`: the CA certificate, for clients (`LDAPTLS_CACERT`, rustls roots, …).
    pub ca_pem: PathBuf,
    /// `server.pem`: the server certificate.
    pub cert_pem: PathBuf,
    /// `server-key.pem`: the server's private key.
    pub key_pem: PathBuf,
    /// `client.pem`: the client certificate.
    pub client_cert_pem: PathBuf,
    /// `client-key.pem`: the client certificate's private key.
    pub client_key_pem: PathBuf,
}

impl TestCa {
    /// Makes a fresh CA and a server certificate for `localhost` and `127.0.0.1`.
    pub fn new() -> TestCa {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "lockgate test CA");
        ca_params
            .distinguished_name
            .push(DnType::OrganizationName, "lockgate tests");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca_params.not_before = date_time_ymd(2020, 1, 1);
        ca_params.not_after = date_time_ymd(2099, 12, 31);
        let ca_key = KeyPair::generate().expect("CA key");
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign the CA");
        let issuer = Issuer::new(ca_params, ca_key);

        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(2099, 12, 31);
        let key = KeyPair::generate().expect("server key");
        let cert = params
            .signed_by(&key, &issuer)
            .expect("sign the server certificate");

        let mut client = CertificateParams::new(Vec::<String>::new()).expect("client params");
        client
            .distinguished_name
            .push(DnType::CommonName, "lockgate-client");
        client.is_ca = IsCa::ExplicitNoCa;
        client.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        client.use_authority_key_identifier_extension = true;
        client.not_before = date_time_ymd(2020, 1, 1);
        client.not_after = date_time_ymd(2099, 12, 31);
        let client_key = KeyPair::generate().expect("client key");
        let client_cert = client
            .signed_by(&client_key, &issuer)
            .expect("sign the client certificate");

        TestCa {
            ca_pem: ca_cert.pem(),
            server_cert_pem: cert.pem(),
            server_key_pem: key.serialize_pem(),
            client_cert_pem: client_cert.pem(),
            client_key_pem: client_key.serialize_pem(),
        }
    }

    /// Writes `ca.pem`, `server.pem`, `server-key.pem`, `client.pem` and `client-key.pem`
    /// (keys mode 0600) into `dir`.
    pub fn write_to(&self, dir: &Path) -> TlsFiles {
        let files = TlsFiles {
            ca_pem: dir.join("ca.pem"),
            cert_pem: dir.join("server.pem"),
            key_pem: dir.join("server-key.pem"),
            client_cert_pem: dir.join("client.pem"),
            client_key_pem: dir.join("client-key.pem"),
        };
        std::fs::write(&files.ca_pem, &self.ca_pem).expect("write ca.pem");
        std::fs::write(&files.cert_pem, &self.server_cert_pem).expect("write server.pem");
        std::fs::write(&files.key_pem, &self.server_key_pem).expect("write server-key.pem");
        std::fs::write(&files.client_cert_pem, &self.client_cert_pem).expect("write client.pem");
        std::fs::write(&files.client_key_pem, &self.client_key_pem).expect("write client-key.pem");
        use std::os::unix::fs::PermissionsExt;
        for key in [&files.key_pem, &files.client_key_pem] {
            std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o600))
                .expect("chmod a key file");
        }
        files
    }
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}
