//! SAML 2.0 Web Browser SSO, service-provider side: identity-provider metadata, the
//! authentication request (HTTP-Redirect binding), the SP's metadata, and the verification of
//! the identity provider's response (HTTP-POST binding). Pure functions over text and time: the
//! plugin's exports (`lib.rs`) feed them the host's settings, randomness and clock.
//!
//! The XML signature is verified by `xml-sec` (strict `SecureSaml` profile, pinned keys from the
//! imported metadata, the assertion that is read given as the expected signed target). Around
//! it, this module keeps the SAML rules the library leaves to the application: one assertion,
//! directly in the response; only exclusive canonicalisation without comments and the enveloped
//! transform; issuer, audience, recipient, destination, time windows; NameID as one text node.

use base64::Engine as _;
use xml_sec::api::Operation;
use xml_sec::policy::{PolicyCompileContext, PolicyCompiler, PolicyProfile};
use xml_sec::provider::RustCryptoProvider;
use xml_sec::xmldsig::{SignatureAlgorithm, VerificationKey, VerificationRequest};
use xml_sec::{XmlDomDocument, XmlDomNode, XmlSecurity};

/// SAML metadata namespace.
pub const MD: &str = "urn:oasis:names:tc:SAML:2.0:metadata";
/// SAML assertion namespace.
pub const SAML: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
/// SAML protocol namespace.
pub const SAMLP: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
/// XML signature namespace.
pub const DS: &str = "http://www.w3.org/2000/09/xmldsig#";
/// HTTP-Redirect binding.
pub const REDIRECT: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
/// HTTP-POST binding.
pub const POST: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";
const SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
const BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";

/// Largest identity-provider metadata document read (bytes).
pub const MAX_METADATA_BYTES: usize = 1024 * 1024;
/// Largest form body posted to the ACS (bytes).
pub const MAX_FORM_BYTES: usize = 512 * 1024;
/// Largest decoded SAML response (bytes).
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024;
/// Longest RelayState accepted back (SAML bindings §3.4.3 asks senders for at most 80 bytes).
pub const MAX_RELAY_STATE: usize = 1024;
/// Deepest element nesting read.
const MAX_DEPTH: usize = 64;
/// Most elements read in one document.
const MAX_ELEMENTS: usize = 10_000;
/// Most signing certificates taken from metadata.
const MAX_CERTIFICATES: usize = 8;

/// The only canonicalisation and transforms a signature may use (exclusive C14N *without*
/// comments, and the enveloped-signature transform). Anything else (`#WithComments`, inclusive
/// C14N, XPath, XSLT, base64) is refused before the library runs.
const ALLOWED_TRANSFORMS: [&str; 2] = [
    "http://www.w3.org/2001/10/xml-exc-c14n#",
    "http://www.w3.org/2000/09/xmldsig#enveloped-signature",
];

/// What goes wrong; each message names the element, attribute or rule.
pub type Result<T> = std::result::Result<T, String>;

/// The service provider of one call (one locking system).
#[derive(Debug, Clone)]
pub struct ServiceProvider<'a> {
    pub entity_id: &'a str,
    pub acs_url: &'a str,
    pub certificate_pem: &'a str,
    pub subject_attribute: Option<&'a str>,
    pub clock_skew_seconds: i64,
}

/// What identity-provider metadata says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdpMetadata {
    pub entity_id: String,
    /// SingleSignOnService with the HTTP-Redirect binding.
    pub sso_url: String,
    /// DER of the signing certificates (KeyDescriptor use="signing" or without `use`).
    pub certificates: Vec<Vec<u8>>,
    /// `validUntil`, seconds since the Unix epoch.
    pub valid_until: Option<i64>,
}

/// A response that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub subject: String,
    pub email: Option<String>,
    pub groups: Vec<String>,
    pub assertion_id: String,
    pub in_response_to: String,
    /// The earliest NotOnOrAfter of the conditions and the bearer confirmation (Unix seconds).
    pub not_on_or_after: i64,
    pub relay_state: Option<String>,
}

/// Refuses a document type declaration (and so entities) before any parser sees the text.
fn refuse_dtd(xml: &str, what: &str) -> Result<()> {
    if xml.contains("<!DOCTYPE") || xml.contains("<!ENTITY") {
        return Err(format!(
            "{what}: a document type declaration (DOCTYPE/ENTITY) is not allowed"
        ));
    }
    Ok(())
}

/// Depth and element-count bounds over a parsed document.
fn check_shape(doc: &XmlDomDocument<'_>, what: &str) -> Result<()> {
    let mut elements = 0usize;
    for node in doc.descendants().filter(|n| n.is_element()) {
        elements += 1;
        if elements > MAX_ELEMENTS {
            return Err(format!("{what}: more than {MAX_ELEMENTS} elements"));
        }
        if node.ancestors().count() > MAX_DEPTH {
            return Err(format!("{what}: elements nested deeper than {MAX_DEPTH}"));
        }
    }
    Ok(())
}

fn is(node: &XmlDomNode<'_, '_>, ns: &str, name: &str) -> bool {
    node.is_element() && node.tag_name().namespace() == Some(ns) && node.tag_name().name() == name
}

fn children<'a, 'i>(
    node: XmlDomNode<'a, 'i>,
    ns: &'a str,
    name: &'a str,
) -> impl Iterator<Item = XmlDomNode<'a, 'i>> + 'a {
    node.children().filter(move |c| is(c, ns, name))
}

fn child<'a, 'i>(
    node: XmlDomNode<'a, 'i>,
    ns: &'a str,
    name: &'a str,
) -> Option<XmlDomNode<'a, 'i>> {
    children(node, ns, name).next()
}

/// The one child named so; none or several is an error naming it.
fn only_child<'a, 'i>(
    node: XmlDomNode<'a, 'i>,
    ns: &'a str,
    name: &'a str,
    path: &str,
) -> Result<XmlDomNode<'a, 'i>> {
    let mut it = children(node, ns, name);
    let first = it
        .next()
        .ok_or_else(|| format!("{path}/{name} is missing"))?;
    if it.next().is_some() {
        return Err(format!("{path}/{name} appears more than once"));
    }
    Ok(first)
}

/// An element's text when it is exactly one text node (or empty): a comment or an element
/// inside (e.g. `<NameID>admin<!---->@evil</NameID>`, which readers split differently) is refused.
fn strict_text(node: XmlDomNode<'_, '_>, path: &str) -> Result<String> {
    let mut text = String::new();
    for c in node.children() {
        if c.is_text() {
            if !text.is_empty() {
                return Err(format!("{path} must be one text node"));
            }
            text = c.text().unwrap_or_default().to_string();
        } else {
            return Err(format!(
                "{path} may hold text only (a comment, processing instruction or element was found inside)"
            ));
        }
    }
    Ok(text.trim().to_string())
}

/// xs:dateTime as Unix seconds.
pub fn parse_instant(value: &str, path: &str) -> Result<i64> {
    chrono::DateTime::parse_from_rfc3339(value.trim())
        .map(|t| t.timestamp())
        .map_err(|e| format!("{path}: '{value}' is not an xs:dateTime in UTC ({e})"))
}

/// An xs:dateTime for `secs` (UTC, second precision).
pub fn format_instant(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn attr<'a>(node: XmlDomNode<'a, '_>, name: &str, path: &str) -> Result<&'a str> {
    node.attribute(name)
        .ok_or_else(|| format!("{path} has no {name} attribute"))
}

/// Reads and checks identity-provider metadata (an EntityDescriptor, or an EntitiesDescriptor
/// holding exactly one identity provider).
/// The metadata a login uses now: read, and refused once its `validUntil` has passed (it was
/// checked at import; an identity provider that stops renewing it must not stay trusted).
pub fn usable_metadata(xml: &str, now: i64) -> Result<IdpMetadata> {
    let m = read_metadata(xml)?;
    match m.valid_until {
        Some(until) if until <= now => Err(format!(
            "the identity provider's metadata expired (validUntil {until}); refresh or import it again"
        )),
        _ => Ok(m),
    }
}

pub fn read_metadata(xml: &str) -> Result<IdpMetadata> {
    if xml.len() > MAX_METADATA_BYTES {
        return Err(format!(
            "the metadata is {} bytes; at most {MAX_METADATA_BYTES} are read",
            xml.len()
        ));
    }
    refuse_dtd(xml, "metadata")?;
    let doc =
        XmlDomDocument::parse(xml).map_err(|e| format!("metadata is not well-formed XML: {e}"))?;
    check_shape(&doc, "metadata")?;
    let root = doc.root_element();
    let entity = if is(&root, MD, "EntityDescriptor") {
        root
    } else if is(&root, MD, "EntitiesDescriptor") {
        let with_idp: Vec<_> = children(root, MD, "EntityDescriptor")
            .filter(|e| child(*e, MD, "IDPSSODescriptor").is_some())
            .collect();
        match with_idp.as_slice() {
            [one] => *one,
            [] => return Err("metadata: no EntityDescriptor with an IDPSSODescriptor".into()),
            _ => {
                return Err(
                    "metadata: several identity providers; import the one this system uses".into(),
                );
            }
        }
    } else {
        return Err(format!(
            "metadata: the root element must be md:EntityDescriptor, not '{}'",
            root.tag_name().name()
        ));
    };
    let entity_id = attr(entity, "entityID", "EntityDescriptor")?.to_string();
    let idp = only_child(entity, MD, "IDPSSODescriptor", "EntityDescriptor")?;
    if !idp
        .attribute("protocolSupportEnumeration")
        .is_some_and(|p| p.split_whitespace().any(|p| p == SAMLP))
    {
        return Err(
            "IDPSSODescriptor does not support SAML 2.0 (protocolSupportEnumeration)".into(),
        );
    }
    let sso_url = children(idp, MD, "SingleSignOnService")
        .find(|s| s.attribute("Binding") == Some(REDIRECT))
        .and_then(|s| s.attribute("Location"))
        .ok_or("IDPSSODescriptor has no SingleSignOnService with the HTTP-Redirect binding")?
        .to_string();
    if !(sso_url.starts_with("https://") || sso_url.starts_with("http://")) {
        return Err(format!(
            "SingleSignOnService Location '{sso_url}' is not an http(s) URL"
        ));
    }
    let mut certificates = Vec::new();
    for kd in children(idp, MD, "KeyDescriptor") {
        if kd.attribute("use").is_some_and(|u| u != "signing") {
            continue;
        }
        let Some(info) = child(kd, DS, "KeyInfo") else {
            continue;
        };
        for data in children(info, DS, "X509Data") {
            for c in children(data, DS, "X509Certificate") {
                let b64: String = strict_text(c, "X509Certificate")?
                    .chars()
                    .filter(|c| !c.is_whitespace())
                    .collect();
                let der = base64::engine::general_purpose::STANDARD
                    .decode(b64.as_bytes())
                    .map_err(|e| format!("X509Certificate is not base64: {e}"))?;
                spki_of(&der)?;
                if certificates.len() == MAX_CERTIFICATES {
                    return Err(format!(
                        "metadata names more than {MAX_CERTIFICATES} signing certificates"
                    ));
                }
                certificates.push(der);
            }
        }
    }
    if certificates.is_empty() {
        return Err("IDPSSODescriptor names no signing certificate (KeyDescriptor/KeyInfo/X509Data/X509Certificate)".into());
    }
    let valid_until = match entity
        .attribute("validUntil")
        .or(root.attribute("validUntil"))
    {
        Some(v) => Some(parse_instant(v, "validUntil")?),
        None => None,
    };
    Ok(IdpMetadata {
        entity_id,
        sso_url,
        certificates,
        valid_until,
    })
}

/// The SubjectPublicKeyInfo (DER) of a certificate.
fn spki_of(der: &[u8]) -> Result<Vec<u8>> {
    use x509_cert::der::{Decode, Encode};
    let cert = x509_cert::Certificate::from_der(der)
        .map_err(|e| format!("X509Certificate is not a DER certificate: {e}"))?;
    cert.tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| format!("the certificate's public key cannot be encoded: {e}"))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The AuthnRequest XML (unsigned; sent over HTTP-Redirect).
pub fn authn_request(sp: &ServiceProvider<'_>, idp: &IdpMetadata, id: &str, now: i64) -> String {
    format!(
        concat!(
            r#"<samlp:AuthnRequest xmlns:samlp="{samlp}" xmlns:saml="{saml}" ID="{id}" Version="2.0" "#,
            r#"IssueInstant="{instant}" Destination="{dest}" AssertionConsumerServiceURL="{acs}" "#,
            r#"ProtocolBinding="{post}"><saml:Issuer>{issuer}</saml:Issuer>"#,
            r#"<samlp:NameIDPolicy AllowCreate="false"/></samlp:AuthnRequest>"#
        ),
        samlp = SAMLP,
        saml = SAML,
        id = escape(id),
        instant = format_instant(now),
        dest = escape(&idp.sso_url),
        acs = escape(sp.acs_url),
        post = POST,
        issuer = escape(sp.entity_id),
    )
}

/// Percent-encodes a query value (RFC 3986 unreserved characters kept).
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The browser's redirect to the identity provider: DEFLATE, base64, URL-encode (SAML
/// bindings §3.4.4.1), with the RelayState.
pub fn redirect_url(idp: &IdpMetadata, request_xml: &str, relay_state: &str) -> Result<String> {
    if relay_state.len() > MAX_RELAY_STATE {
        return Err(format!(
            "the relay state is longer than {MAX_RELAY_STATE} bytes"
        ));
    }
    let deflated = miniz_oxide::deflate::compress_to_vec(request_xml.as_bytes(), 6);
    let encoded = base64::engine::general_purpose::STANDARD.encode(deflated);
    let sep = if idp.sso_url.contains('?') { '&' } else { '?' };
    let mut url = format!("{}{sep}SAMLRequest={}", idp.sso_url, url_encode(&encoded));
    if !relay_state.is_empty() {
        url.push_str("&RelayState=");
        url.push_str(&url_encode(relay_state));
    }
    Ok(url)
}

/// The SP's metadata: entity id, ACS (HTTP-POST), signed assertions wanted, its certificate.
pub fn sp_metadata(sp: &ServiceProvider<'_>) -> Result<String> {
    let body: String = sp
        .certificate_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::trim)
        .collect();
    if body.is_empty() {
        return Err("the service provider has no certificate yet".into());
    }
    Ok(format!(
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?>"#,
            r#"<md:EntityDescriptor xmlns:md="{md}" xmlns:ds="{ds}" entityID="{entity}">"#,
            r#"<md:SPSSODescriptor AuthnRequestsSigned="false" WantAssertionsSigned="true" protocolSupportEnumeration="{samlp}">"#,
            r#"<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"#,
            r#"<md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified</md:NameIDFormat>"#,
            r#"<md:AssertionConsumerService Binding="{post}" Location="{acs}" index="0" isDefault="true"/>"#,
            r#"</md:SPSSODescriptor></md:EntityDescriptor>"#
        ),
        md = MD,
        ds = DS,
        samlp = SAMLP,
        entity = escape(sp.entity_id),
        cert = body,
        post = POST,
        acs = escape(sp.acs_url),
    ))
}

/// Decodes `application/x-www-form-urlencoded` (`+` is a space).
fn form_decode(s: &str) -> Result<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or("the form body has a malformed %-escape")?;
                out.push(hex);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| "the form body is not UTF-8".to_string())
}

/// `SAMLResponse` and `RelayState` of the ACS form post.
pub fn read_form(body: &[u8]) -> Result<(String, Option<String>)> {
    if body.len() > MAX_FORM_BYTES {
        return Err(format!(
            "the form body is larger than {MAX_FORM_BYTES} bytes"
        ));
    }
    let text = std::str::from_utf8(body).map_err(|_| "the form body is not UTF-8")?;
    let mut response = None;
    let mut relay = None;
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match form_decode(k)?.as_str() {
            "SAMLResponse" => &mut response,
            "RelayState" => &mut relay,
            _ => continue,
        };
        if slot.is_some() {
            return Err(format!("the form repeats {k}"));
        }
        *slot = Some(form_decode(v)?);
    }
    let response = response.ok_or("the form has no SAMLResponse")?;
    if let Some(r) = &relay
        && r.len() > MAX_RELAY_STATE
    {
        return Err(format!("RelayState is longer than {MAX_RELAY_STATE} bytes"));
    }
    let b64: String = response
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    if b64.len() > MAX_RESPONSE_BYTES / 3 * 4 + 4 {
        return Err(format!(
            "SAMLResponse decodes to more than {MAX_RESPONSE_BYTES} bytes"
        ));
    }
    let xml = base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .map_err(|e| format!("SAMLResponse is not base64: {e}"))?;
    // Responses come over HTTP-POST and are never inflated: a DEFLATE-compressed body is not
    // XML and is refused here, however far it would expand.
    let xml = String::from_utf8(xml).map_err(|_| {
        "SAMLResponse is not UTF-8 XML (responses are posted as base64 XML, never compressed)"
            .to_string()
    })?;
    Ok((xml, relay))
}

/// Structural facts read before the signature is checked.
struct Shape {
    assertion_id: String,
    algorithm: SignatureAlgorithm,
}

fn signature_algorithm(uri: &str) -> Result<SignatureAlgorithm> {
    Ok(match uri {
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256" => SignatureAlgorithm::RsaSha256,
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384" => SignatureAlgorithm::RsaSha384,
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512" => SignatureAlgorithm::RsaSha512,
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256" => SignatureAlgorithm::EcdsaSha256,
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384" => SignatureAlgorithm::EcdsaSha384,
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512" => SignatureAlgorithm::EcdsaSha512,
        other => {
            return Err(format!(
                "SignatureMethod '{other}' is not allowed (RSA or ECDSA with SHA-256/384/512)"
            ));
        }
    })
}

/// The one response element, its one assertion, the algorithms of every signature.
fn shape(doc: &XmlDomDocument<'_>) -> Result<Shape> {
    check_shape(doc, "SAMLResponse")?;
    let root = doc.root_element();
    if !is(&root, SAMLP, "Response") {
        return Err(format!(
            "the root element must be samlp:Response, not '{}'",
            root.tag_name().name()
        ));
    }
    if doc
        .descendants()
        .any(|n| is(&n, SAML, "EncryptedAssertion"))
    {
        return Err("encrypted assertions are not supported: configure the identity provider to sign, not encrypt".into());
    }
    let assertions: Vec<_> = doc
        .descendants()
        .filter(|n| is(n, SAML, "Assertion"))
        .collect();
    let assertion = match assertions.as_slice() {
        [one] => *one,
        [] => return Err("the response holds no Assertion".into()),
        _ => {
            return Err(format!(
                "the response holds {} Assertion elements; exactly one is accepted",
                assertions.len()
            ));
        }
    };
    if assertion.parent_element().map(|p| p.id()) != Some(root.id()) {
        return Err("the Assertion must be a direct child of the Response".into());
    }
    let assertion_id = attr(assertion, "ID", "Assertion")?.to_string();
    let mut algorithm = None;
    for sig in doc.descendants().filter(|n| is(n, DS, "Signature")) {
        let parent = sig.parent_element().map(|p| p.id());
        if parent != Some(root.id()) && parent != Some(assertion.id()) {
            return Err(
                "a Signature may only be a child of the Response or of the Assertion".into(),
            );
        }
        let info = only_child(sig, DS, "SignedInfo", "Signature")?;
        let c14n = only_child(info, DS, "CanonicalizationMethod", "SignedInfo")?;
        let method = only_child(info, DS, "SignatureMethod", "SignedInfo")?;
        let alg = signature_algorithm(attr(method, "Algorithm", "SignatureMethod")?)?;
        if algorithm.is_some_and(|a| a != alg) {
            return Err("the response's signatures use different signature methods".into());
        }
        algorithm = Some(alg);
        let transforms = sig
            .descendants()
            .filter(|n| is(n, DS, "Transform"))
            .chain(std::iter::once(c14n));
        for t in transforms {
            let uri = attr(t, "Algorithm", "Transform")?;
            if !ALLOWED_TRANSFORMS.contains(&uri)
                || (t.id() == c14n.id() && uri == ALLOWED_TRANSFORMS[1])
            {
                return Err(format!(
                    "transform or canonicalisation '{uri}' is not allowed (only exclusive C14N without comments and the enveloped-signature transform)"
                ));
            }
        }
        for digest in sig.descendants().filter(|n| is(n, DS, "DigestMethod")) {
            let uri = attr(digest, "Algorithm", "DigestMethod")?;
            if !matches!(
                uri,
                "http://www.w3.org/2001/04/xmlenc#sha256"
                    | "http://www.w3.org/2001/04/xmldsig-more#sha384"
                    | "http://www.w3.org/2001/04/xmlenc#sha512"
            ) {
                return Err(format!(
                    "DigestMethod '{uri}' is not allowed (SHA-256/384/512)"
                ));
            }
        }
    }
    let algorithm = algorithm
        .ok_or("the response is not signed (no Signature on the Response or the Assertion)")?;
    Ok(Shape {
        assertion_id,
        algorithm,
    })
}

/// Verifies a response posted to the ACS and reads who it names. `expected_issuer` comes from
/// the imported metadata; `now` is Unix seconds.
pub fn verify_response(
    sp: &ServiceProvider<'_>,
    idp: &IdpMetadata,
    xml: String,
    relay_state: Option<String>,
    now: i64,
) -> Result<Verified> {
    if xml.len() > MAX_RESPONSE_BYTES {
        return Err(format!(
            "SAMLResponse is larger than {MAX_RESPONSE_BYTES} bytes"
        ));
    }
    refuse_dtd(&xml, "SAMLResponse")?;
    let provider = RustCryptoProvider;
    let policies = PolicyCompiler::new(PolicyProfile::SecureSaml, &provider, None)
        .and_then(|c| {
            c.compile(&PolicyCompileContext {
                external_resources: false,
                target_evidence: true,
            })
        })
        .map_err(|e| format!("signature policy: {e}"))?;
    let security =
        XmlSecurity::new(&policies, &provider).map_err(|e| format!("signature policy: {e}"))?;
    let doc = security
        .parse_document(xml, Operation::Verify)
        .map_err(|e| format!("SAMLResponse is not acceptable XML: {e}"))?;
    let shape = doc.with_view(|v| shape(v.document()))?;
    // Architecture invariant: the element read below is the element whose signature was
    // verified: the one Assertion, found by its ID, which must name exactly one element.
    let target = doc
        .with_view(|v| v.node_for_id(&shape.assertion_id, &[]))
        .ok_or("the Assertion's ID is not unique in the response (duplicate ID)")?;
    let mut last_error = String::from("no configured certificate verified the signature");
    let mut accepted = false;
    for der in &idp.certificates {
        let key = VerificationKey {
            algorithm: shape.algorithm,
            public_key_bytes: spki_of(der)?,
            certificate_der: Some(der.clone()),
            name: None,
        };
        let request = VerificationRequest {
            expected_targets: &[target],
            ..Default::default()
        };
        let verifier = security
            .verifier()
            .map_err(|e| format!("signature policy: {e}"))?;
        match verifier.key(&key).verify(&doc, &request) {
            Ok(evidence) => match evidence.accepted(&doc) {
                Ok(true) => {
                    accepted = true;
                    break;
                }
                Ok(false) => {
                    last_error = "the signature does not verify with the identity provider's certificate, or does not cover the Assertion".into()
                }
                Err(e) => last_error = format!("the signature does not verify: {e}"),
            },
            Err(e) => last_error = format!("the signature does not verify: {e}"),
        }
    }
    if !accepted {
        return Err(last_error);
    }
    doc.with_view(|v| read_assertion(sp, idp, v.document(), &shape.assertion_id, relay_state, now))
}

/// Reads the verified response: status, destination, issuer, conditions, subject.
fn read_assertion(
    sp: &ServiceProvider<'_>,
    idp: &IdpMetadata,
    doc: &XmlDomDocument<'_>,
    assertion_id: &str,
    relay_state: Option<String>,
    now: i64,
) -> Result<Verified> {
    let skew = sp.clock_skew_seconds;
    let root = doc.root_element();
    if root.attribute("Version") != Some("2.0") {
        return Err(format!(
            "Response Version '{}' is not SAML 2.0",
            root.attribute("Version").unwrap_or_default()
        ));
    }
    let destination = attr(root, "Destination", "Response")?;
    if destination != sp.acs_url {
        return Err(format!(
            "Response Destination '{destination}' is not this system's ACS '{}'",
            sp.acs_url
        ));
    }
    let in_response_to = attr(root, "InResponseTo", "Response")
        .map_err(|_| {
            "Response has no InResponseTo: unsolicited (IdP-initiated) responses are not accepted"
                .to_string()
        })?
        .to_string();
    let status = only_child(root, SAMLP, "Status", "Response")?;
    let code = only_child(status, SAMLP, "StatusCode", "Response/Status")?;
    let value = attr(code, "Value", "StatusCode")?;
    if value != SUCCESS {
        return Err(format!(
            "the identity provider answered with status '{value}'"
        ));
    }
    if let Some(issuer) = child(root, SAML, "Issuer") {
        let issuer = strict_text(issuer, "Response/Issuer")?;
        if issuer != idp.entity_id {
            return Err(format!(
                "Response Issuer '{issuer}' is not the identity provider '{}'",
                idp.entity_id
            ));
        }
    }
    let assertion = only_child(root, SAML, "Assertion", "Response")?;
    if assertion.attribute("ID") != Some(assertion_id) {
        return Err("the Assertion read is not the one verified".into());
    }
    if assertion.attribute("Version") != Some("2.0") {
        return Err(format!(
            "Assertion Version '{}' is not SAML 2.0",
            assertion.attribute("Version").unwrap_or_default()
        ));
    }
    // Web browser SSO profile (SAML profiles §4.1.4.2): a bearer assertion says how the
    // subject authenticated; one without an AuthnStatement is no login.
    if child(assertion, SAML, "AuthnStatement").is_none() {
        return Err(
            "the Assertion has no AuthnStatement: it does not say the subject authenticated".into(),
        );
    }
    let issuer = strict_text(
        only_child(assertion, SAML, "Issuer", "Assertion")?,
        "Assertion/Issuer",
    )?;
    if issuer != idp.entity_id {
        return Err(format!(
            "Assertion Issuer '{issuer}' is not the identity provider '{}'",
            idp.entity_id
        ));
    }
    // Conditions: time window and audience.
    let conditions = only_child(assertion, SAML, "Conditions", "Assertion")?;
    // A condition not understood makes the assertion's validity indeterminate (SAML core
    // §2.5.1): refused. OneTimeUse is kept by the replay cache; ProxyRestriction limits what
    // this service provider would issue, and it issues nothing.
    for c in conditions.children().filter(|c| c.is_element()) {
        let known = ["AudienceRestriction", "OneTimeUse", "ProxyRestriction"]
            .iter()
            .any(|n| is(&c, SAML, n));
        if !known {
            return Err(format!(
                "Conditions holds a condition this service provider does not understand ({})",
                c.tag_name().name()
            ));
        }
    }
    let mut not_on_or_after = i64::MAX;
    if let Some(nb) = conditions.attribute("NotBefore")
        && parse_instant(nb, "Conditions NotBefore")? > now + skew
    {
        return Err(format!(
            "the assertion is not valid yet (Conditions NotBefore {nb})"
        ));
    }
    if let Some(na) = conditions.attribute("NotOnOrAfter") {
        let t = parse_instant(na, "Conditions NotOnOrAfter")?;
        if t + skew <= now {
            return Err(format!(
                "the assertion has expired (Conditions NotOnOrAfter {na})"
            ));
        }
        not_on_or_after = not_on_or_after.min(t);
    }
    let restrictions: Vec<_> = children(conditions, SAML, "AudienceRestriction").collect();
    if restrictions.is_empty() {
        return Err("Conditions has no AudienceRestriction".into());
    }
    for r in restrictions {
        let mut ours = false;
        for a in children(r, SAML, "Audience") {
            if strict_text(a, "Audience")? == sp.entity_id {
                ours = true;
            }
        }
        if !ours {
            return Err(format!(
                "the assertion's Audience is not this system ('{}')",
                sp.entity_id
            ));
        }
    }
    // Subject and its bearer confirmation.
    let subject = only_child(assertion, SAML, "Subject", "Assertion")?;
    let mut confirmed = false;
    for sc in children(subject, SAML, "SubjectConfirmation") {
        if sc.attribute("Method") != Some(BEARER) {
            continue;
        }
        let data = only_child(sc, SAML, "SubjectConfirmationData", "SubjectConfirmation")?;
        let recipient = attr(data, "Recipient", "SubjectConfirmationData")?;
        if recipient != sp.acs_url {
            return Err(format!(
                "SubjectConfirmationData Recipient '{recipient}' is not this system's ACS '{}'",
                sp.acs_url
            ));
        }
        let na = attr(data, "NotOnOrAfter", "SubjectConfirmationData")?;
        let t = parse_instant(na, "SubjectConfirmationData NotOnOrAfter")?;
        if t + skew <= now {
            return Err(format!(
                "the subject confirmation has expired (NotOnOrAfter {na})"
            ));
        }
        if let Some(nb) = data.attribute("NotBefore")
            && parse_instant(nb, "SubjectConfirmationData NotBefore")? > now + skew
        {
            return Err(format!(
                "the subject confirmation is not valid yet (NotBefore {nb})"
            ));
        }
        match data.attribute("InResponseTo") {
            Some(irt) if irt == in_response_to => {}
            Some(irt) => {
                return Err(format!(
                    "SubjectConfirmationData InResponseTo '{irt}' differs from the Response's '{in_response_to}'"
                ));
            }
            None => return Err("SubjectConfirmationData has no InResponseTo".into()),
        }
        not_on_or_after = not_on_or_after.min(t);
        confirmed = true;
    }
    if !confirmed {
        return Err("the Subject has no bearer SubjectConfirmation".into());
    }
    let name_id = match child(subject, SAML, "NameID") {
        Some(n) => Some(strict_text(n, "Subject/NameID")?),
        None => None,
    };
    let attributes = read_attributes(assertion)?;
    let subject = match sp.subject_attribute {
        Some(name) => match attributes
            .iter()
            .filter(|(n, _)| n == name)
            .collect::<Vec<_>>()
            .as_slice()
        {
            [(_, values)] if values.len() == 1 => values[0].clone(),
            [] => {
                return Err(format!(
                    "the assertion has no attribute '{name}' (the configured subject attribute)"
                ));
            }
            _ => {
                return Err(format!(
                    "the subject attribute '{name}' must have exactly one value"
                ));
            }
        },
        None => name_id.ok_or("the Subject has no NameID")?,
    };
    if subject.is_empty() {
        return Err("the subject is empty".into());
    }
    let first = |names: &[&str]| {
        attributes
            .iter()
            .find(|(n, _)| names.contains(&n.as_str()))
            .and_then(|(_, v)| v.first().cloned())
    };
    let email = first(&[
        "email",
        "mail",
        "emailAddress",
        "urn:oid:0.9.2342.19200300.100.1.3",
    ]);
    let groups = attributes
        .iter()
        .filter(|(n, _)| {
            matches!(
                n.as_str(),
                "groups" | "memberOf" | "role" | "urn:oid:1.3.6.1.4.1.5923.1.5.1.1"
            )
        })
        .flat_map(|(_, v)| v.iter().cloned())
        .take(256)
        .collect();
    Ok(Verified {
        subject,
        email,
        groups,
        assertion_id: assertion_id.to_string(),
        in_response_to,
        not_on_or_after,
        relay_state,
    })
}

/// The assertion's attributes: (Name, values), each value one text node.
fn read_attributes(assertion: XmlDomNode<'_, '_>) -> Result<Vec<(String, Vec<String>)>> {
    let mut out = Vec::new();
    for statement in children(assertion, SAML, "AttributeStatement") {
        for a in children(statement, SAML, "Attribute") {
            let name = attr(a, "Name", "Attribute")?.to_string();
            let mut values = Vec::new();
            for v in children(a, SAML, "AttributeValue") {
                values.push(strict_text(
                    v,
                    &format!("Attribute '{name}' AttributeValue"),
                )?);
            }
            out.push((name, values));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate (ECDSA P-256, `openssl req -x509`) as base64 DER.
    const CERT: &str = "MIIBezCCASGgAwIBAgIUb/GaGXAT4xjftpO4DpurG37/UfAwCgYIKoZIzj0EAwIwEzERMA8GA1UEAwwIaWRwLnRlc3QwHhcNMjYxMjA0MjMzNDM0WhcNMzYxMjAxMjMzNDM0WjATMREwDwYDVQQDDAhpZHAudGVzdDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABCx5sKaPHxvK4fTbC+dCivSymAPbp+bVty1I7cheyBSfUBd0C7Epl3ci/c4L4KeP8K7iJQIo09Pq9BiQUTNP4NijUzBRMB0GA1UdDgQWBBQvJkiKLi3V6Sy/I/4bNZyLZTkyGjAfBgNVHSMEGDAWgBQvJkiKLi3V6Sy/I/4bNZyLZTkyGjAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIQCCiEII6vrjLiNBex80eEE9/2IwEJbilWy3yWK+VNhBlgIgKbtfCEE04uTTHKasRCLl2xQgR0XkWkWoV88oRoz3RH0=";

    fn metadata(cert: &str, binding: &str) -> String {
        format!(
            r#"<md:EntityDescriptor xmlns:md="{MD}" xmlns:ds="{DS}" entityID="https://idp.test/m" validUntil="2030-01-01T00:00:00Z"><md:IDPSSODescriptor protocolSupportEnumeration="{SAMLP}"><md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor><md:SingleSignOnService Binding="{binding}" Location="https://idp.test/sso"/></md:IDPSSODescriptor></md:EntityDescriptor>"#
        )
    }

    fn sp() -> ServiceProvider<'static> {
        ServiceProvider {
            entity_id: "https://gw.test/sso/1/metadata",
            acs_url: "https://gw.test/sso/1/acs",
            certificate_pem: "-----BEGIN CERTIFICATE-----\nQUJD\n-----END CERTIFICATE-----\n",
            subject_attribute: None,
            clock_skew_seconds: 60,
        }
    }

    #[test]
    fn metadata_is_read_and_its_faults_named() {
        let m = read_metadata(&metadata(CERT, REDIRECT)).expect("metadata");
        assert_eq!(m.entity_id, "https://idp.test/m");
        assert_eq!(m.sso_url, "https://idp.test/sso");
        assert_eq!(m.certificates.len(), 1);
        assert_eq!(m.valid_until, Some(1_893_456_000));
        let xml = metadata(CERT, REDIRECT);
        assert!(usable_metadata(&xml, 1_893_455_999).is_ok());
        let expired = usable_metadata(&xml, 1_893_456_000).unwrap_err();
        assert!(expired.contains("expired"), "{expired}");
        let e = read_metadata(&metadata(CERT, POST)).unwrap_err();
        assert!(e.contains("HTTP-Redirect"), "{e}");
        let e = read_metadata(&metadata("bm90IGEgY2VydA==", REDIRECT)).unwrap_err();
        assert!(e.contains("not a DER certificate"), "{e}");
        let e = read_metadata(&format!(
            "<!DOCTYPE x [<!ENTITY e \"y\">]>{}",
            metadata(CERT, REDIRECT)
        ))
        .unwrap_err();
        assert!(e.contains("DOCTYPE"), "{e}");
        let e = read_metadata("<notmetadata/>").unwrap_err();
        assert!(e.contains("EntityDescriptor"), "{e}");
        let e = read_metadata(&"x".repeat(MAX_METADATA_BYTES + 1)).unwrap_err();
        assert!(e.contains("at most"), "{e}");
        let deep = format!("{}{}", "<a>".repeat(100), "</a>".repeat(100));
        assert!(read_metadata(&deep).is_err());
    }

    #[test]
    fn the_acs_form_is_bounded_and_never_inflated() {
        let xml = "<samlp:Response/>";
        let b64 = base64::engine::general_purpose::STANDARD.encode(xml);
        let (got, relay) =
            read_form(format!("SAMLResponse={}&RelayState=x%2By", url_encode(&b64)).as_bytes())
                .expect("form");
        assert_eq!(got, xml);
        assert_eq!(relay.as_deref(), Some("x+y"));
        assert!(
            read_form(b"RelayState=x")
                .unwrap_err()
                .contains("no SAMLResponse")
        );
        assert!(
            read_form(b"SAMLResponse=a&SAMLResponse=b")
                .unwrap_err()
                .contains("repeats")
        );
        let long = format!(
            "SAMLResponse={b64}&RelayState={}",
            "r".repeat(MAX_RELAY_STATE + 1)
        );
        assert!(
            read_form(long.as_bytes())
                .unwrap_err()
                .contains("RelayState")
        );
        let deflated = miniz_oxide::deflate::compress_to_vec(&vec![0u8; 1 << 20], 9);
        let bomb = base64::engine::general_purpose::STANDARD.encode(deflated);
        let e = read_form(format!("SAMLResponse={}", url_encode(&bomb)).as_bytes()).unwrap_err();
        assert!(e.contains("never compressed"), "{e}");
        assert!(read_form(&vec![b'a'; MAX_FORM_BYTES + 1]).is_err());
        assert!(read_form(b"SAMLResponse=%zz").is_err());
    }

    #[test]
    fn the_redirect_carries_the_deflated_request() {
        let idp = IdpMetadata {
            entity_id: "https://idp.test/m".into(),
            sso_url: "https://idp.test/sso?tenant=1".into(),
            certificates: vec![],
            valid_until: None,
        };
        let xml = authn_request(&sp(), &idp, "_abc", 1_800_000_000);
        assert!(
            xml.contains(r#"ID="_abc""#)
                && xml.contains(r#"Destination="https://idp.test/sso?tenant=1""#)
        );
        assert!(xml.contains("2027-01-15T08:00:00Z"), "{xml}");
        let url = redirect_url(&idp, &xml, "r/1").expect("url");
        assert!(
            url.starts_with("https://idp.test/sso?tenant=1&SAMLRequest="),
            "{url}"
        );
        assert!(url.ends_with("&RelayState=r%2F1"), "{url}");
        let q = url
            .split("SAMLRequest=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(form_decode(q).unwrap())
            .unwrap();
        let inflated = miniz_oxide::inflate::decompress_to_vec(&raw).expect("raw DEFLATE");
        assert_eq!(String::from_utf8(inflated).unwrap(), xml);
        assert!(redirect_url(&idp, &xml, &"r".repeat(MAX_RELAY_STATE + 1)).is_err());
    }

    #[test]
    fn sp_metadata_names_the_acs_and_certificate() {
        let m = sp_metadata(&sp()).expect("metadata");
        assert!(m.contains(r#"entityID="https://gw.test/sso/1/metadata""#));
        assert!(m.contains(r#"Location="https://gw.test/sso/1/acs""#));
        assert!(m.contains("<ds:X509Certificate>QUJD</ds:X509Certificate>"));
        let none = ServiceProvider {
            certificate_pem: "",
            ..sp()
        };
        assert!(sp_metadata(&none).is_err());
    }

    #[test]
    fn text_is_one_text_node() {
        let doc =
            XmlDomDocument::parse("<r><a>x</a><b>x<!---->y</b><c>x<d/>y</c><e/></r>").unwrap();
        let root = doc.root_element();
        let el = |n: &str| root.children().find(|c| c.tag_name().name() == n).unwrap();
        assert_eq!(strict_text(el("a"), "a").unwrap(), "x");
        assert!(strict_text(el("b"), "b").is_err());
        assert!(strict_text(el("c"), "c").is_err());
        assert_eq!(strict_text(el("e"), "e").unwrap(), "");
    }
}
