//! SAML ACS benchmark (docs/connectors/saml.md): `LOCKGATE_BENCH_LOGINS` SSO logins (default
//! 300) posted to the ACS of the real API with the bundled `saml-sso` plugin on SQLite, each a
//! response signed by signxml (`tests/peers/saml/corpus.py --logins`) answering its own awaited
//! request: plugin verification, then the store's transaction (request used up, assertion id
//! recorded, session opened).
//!
//! Prints verified logins per second and p50/p99 latency, against the floor measured in the
//! same run: the bare signature verification of the same documents with `xml-sec` alone
//! (parse, find the assertion, verify with the IdP key; native code, no plugin, no SAML rules,
//! no database).
//!
//! Run: `cargo bench -p lockgate-tests --bench saml_acs`.

mod common;

use std::process::Command;
use std::time::Instant;

use axum::{
    body::Body,
    http::{Method, Request, header},
};
use base64::Engine as _;
use lockgate_tests::sso::{
    enrol_sso, form_encode, post_acs, saml_peers, start_login_as_test_browser,
};
use lockgate_tests::{Db, SSO_PUBLIC_URL, TestApp};
use serde_json::json;

/// The bare library: parse, find the one assertion by its ID, verify with the IdP's key.
fn bare_verify(xml: String, spki: &[u8], cert: &[u8]) -> bool {
    use xml_sec::api::Operation;
    use xml_sec::policy::{PolicyCompileContext, PolicyCompiler, PolicyProfile};
    use xml_sec::provider::RustCryptoProvider;
    use xml_sec::xmldsig::{SignatureAlgorithm, VerificationKey, VerificationRequest};
    let provider = RustCryptoProvider;
    let policies = PolicyCompiler::new(PolicyProfile::SecureSaml, &provider, None)
        .and_then(|c| {
            c.compile(&PolicyCompileContext {
                external_resources: false,
                target_evidence: true,
            })
        })
        .expect("policy");
    let security = xml_sec::XmlSecurity::new(&policies, &provider).expect("security");
    let doc = security
        .parse_document(xml, Operation::Verify)
        .expect("parse");
    let id = doc.with_view(|v| {
        v.document()
            .descendants()
            .find(|n| n.is_element() && n.tag_name().name() == "Assertion")
            .and_then(|n| n.attribute("ID"))
            .map(str::to_string)
    });
    let target = doc
        .with_view(|v| v.node_for_id(&id.expect("assertion ID"), &[]))
        .expect("target");
    let key = VerificationKey {
        algorithm: SignatureAlgorithm::RsaSha256,
        public_key_bytes: spki.to_vec(),
        certificate_der: Some(cert.to_vec()),
        name: None,
    };
    let request = VerificationRequest {
        expected_targets: &[target],
        ..Default::default()
    };
    let verifier = security.verifier().expect("verifier");
    verifier
        .key(&key)
        .verify(&doc, &request)
        .ok()
        .and_then(|e| e.accepted(&doc).ok())
        .unwrap_or(false)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let logins: usize = std::env::var("LOCKGATE_BENCH_LOGINS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let peers = saml_peers();
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, cert) = (dir.path().join("idp.key"), dir.path().join("idp.crt"));
    let made = Command::new("python3")
        .arg("-c")
        .arg("import sys; sys.path.insert(0, sys.argv[1]); import corpus; corpus.generate_key_pair(sys.argv[2], sys.argv[3], 'bench IdP')")
        .arg(&peers)
        .arg(&key)
        .arg(&cert)
        .status()
        .expect("python3");
    assert!(made.success(), "generating the IdP key");
    let pem = std::fs::read_to_string(&cert).expect("cert");
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(&b64)
        .expect("DER");
    let spki = {
        use x509_cert::der::{Decode, Encode};
        x509_cert::Certificate::from_der(&der)
            .expect("certificate")
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .expect("SPKI")
    };

    let app = TestApp::new(Db::Sqlite).await.with_sso("idp.bench:443");
    let sys = app.system_id;
    let idp_entity = "https://idp.bench/metadata";
    let metadata = format!(
        r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{idp_entity}"><md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{b64}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor><md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.bench/sso"/></md:IDPSSODescriptor></md:EntityDescriptor>"#
    );
    app.post("/api/v1/sso/certificate", json!({}))
        .await
        .expect(201);
    let req = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/sso/idp-metadata")
        .header(header::AUTHORIZATION, format!("Bearer {}", app.token))
        .header(header::CONTENT_TYPE, "application/samlmetadata+xml")
        .body(Body::from(metadata))
        .expect("request");
    app.send(req).await.expect(200);
    app.call(
        Method::PUT,
        "/api/v1/sso/settings",
        Some(&app.token),
        Some(json!({ "enabled": true })),
    )
    .await
    .expect(200);
    enrol_sso(
        &app,
        app.master_c_key_id,
        "alice@example.com",
        "_enrol",
        "_enrolment",
    )
    .await;

    // The logins awaited, and one signed response for each.
    let started = Instant::now();
    for _ in 0..logins {
        start_login_as_test_browser(&app, "").await.expect(303);
    }
    let begin = started.elapsed();
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT request_id FROM sso_requests WHERE system_id = $1 AND purpose = 'login'",
    )
    .bind(sys)
    .fetch_all(app.store.pool())
    .await
    .expect("requests");
    let ids_file = dir.path().join("ids.txt");
    std::fs::write(&ids_file, ids.join("\n")).expect("ids");
    let out = Command::new("python3")
        .arg(peers.join("corpus.py"))
        .arg("--key")
        .arg(&key)
        .arg("--cert")
        .arg(&cert)
        .arg("--attacker-key")
        .arg(dir.path().join("attacker.key"))
        .arg("--attacker-cert")
        .arg(dir.path().join("attacker.crt"))
        .args([
            "--idp-entity-id",
            idp_entity,
            "--sp-entity-id",
            &format!("{SSO_PUBLIC_URL}/sso/{sys}/metadata"),
            "--acs",
            &format!("{SSO_PUBLIC_URL}/sso/{sys}/acs"),
            "--request-id",
            "_unused",
            "--other-request-id",
            "_unused2",
            "--now",
            &chrono::Utc::now().timestamp().to_string(),
            "--logins",
        ])
        .arg(&ids_file)
        .output()
        .expect("corpus.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let responses: Vec<String> = serde_json::from_slice(&out.stdout).expect("responses");
    assert_eq!(responses.len(), logins);
    println!(
        "saml acs benchmark: {logins} logins; {} login starts (AuthnRequest + redirect) took {:.2} s",
        logins,
        begin.as_secs_f64()
    );

    // Floor: the library alone, same documents.
    let docs: Vec<String> = responses
        .iter()
        .map(|r| {
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(r)
                    .expect("base64"),
            )
            .expect("UTF-8")
        })
        .collect();
    let mut bare = Vec::with_capacity(logins);
    let started = Instant::now();
    for d in &docs {
        let t = Instant::now();
        assert!(
            bare_verify(d.clone(), &spki, &der),
            "the library refused a valid response"
        );
        bare.push(t.elapsed());
    }
    let floor = common::rate_report(
        "floor: xml-sec verify alone (native)",
        bare,
        started.elapsed(),
    );

    // The ACS: plugin verification + one store transaction + session.
    let mut acs = Vec::with_capacity(logins);
    let started = Instant::now();
    for r in &responses {
        let body = format!("SAMLResponse={}", form_encode(r));
        let t = Instant::now();
        let resp = post_acs(&app, &body).await;
        acs.push(t.elapsed());
        assert_eq!(resp.status, 303, "{:?}", resp.body);
    }
    let rate = common::rate_report(
        "ACS: verified logins through the gateway",
        acs,
        started.elapsed(),
    );
    println!(
        "ratio: the ACS verifies {:.2}× as many logins per second as the bare library (the library alone is {:.1}× faster)",
        rate / floor,
        floor / rate
    );
}
