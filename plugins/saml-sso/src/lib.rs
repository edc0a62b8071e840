//! `saml-sso`: SAML 2.0 single sign-on for administrators (world `sso`). The host keeps each
//! locking system's settings, the requests awaiting an answer, the replay cache and the
//! sessions; this plugin speaks the protocol (`saml`): it reads identity-provider metadata,
//! writes the SP's metadata and the authentication request, and verifies the response.

pub mod saml;

use lockgate_plugin_sdk::{Error, clock, http_types, identity_provider, plugin};

struct SamlSso;

impl plugin::Guest for SamlSso {
    fn describe() -> plugin::PluginInfo {
        plugin::PluginInfo {
            name: "saml-sso".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "SAML 2.0 single sign-on for administrators (service provider)".into(),
        }
    }
}

fn sp_of(sp: &identity_provider::ServiceProvider) -> saml::ServiceProvider<'_> {
    saml::ServiceProvider {
        entity_id: &sp.entity_id,
        acs_url: &sp.acs_url,
        certificate_pem: &sp.certificate,
        subject_attribute: sp.subject_attribute.as_deref(),
        clock_skew_seconds: i64::from(sp.clock_skew_seconds),
    }
}

fn now_seconds() -> i64 {
    clock::now().div_euclid(1000)
}

/// A request ID: `_` and 128 random bits in hex (an xs:ID must not start with a digit).
fn new_request_id() -> String {
    let bytes = random_bytes();
    let mut id = String::from("_");
    for b in bytes {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

#[cfg(target_arch = "wasm32")]
fn random_bytes() -> Vec<u8> {
    wasip2::random::random::get_random_bytes(16)
}

#[cfg(not(target_arch = "wasm32"))]
fn random_bytes() -> Vec<u8> {
    unreachable!("request ids are only made inside the component")
}

impl identity_provider::Guest for SamlSso {
    fn read_metadata(xml: String) -> Result<identity_provider::IdpSummary, Error> {
        let m = saml::read_metadata(&xml).map_err(Error::invalid)?;
        Ok(identity_provider::IdpSummary {
            entity_id: m.entity_id,
            sso_url: m.sso_url,
            signing_certificates: m.certificates.len() as u32,
            valid_until: m.valid_until,
        })
    }

    fn fetch_metadata(url: String) -> Result<String, Error> {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(Error::invalid(format!(
                "the metadata URL '{url}' is not an http(s) URL"
            )));
        }
        let response = lockgate_plugin_sdk::http::Request::get(&url)
            .header(
                "accept",
                "application/samlmetadata+xml, application/xml, text/xml",
            )
            .timeout(std::time::Duration::from_secs(20))
            .send()?
            .error_for_status()?;
        if response.body.len() > saml::MAX_METADATA_BYTES {
            return Err(Error::invalid(format!(
                "the metadata at '{url}' is larger than {} bytes",
                saml::MAX_METADATA_BYTES
            )));
        }
        Ok(response.text()?.to_string())
    }

    fn sp_metadata(sp: identity_provider::ServiceProvider) -> Result<String, Error> {
        saml::sp_metadata(&sp_of(&sp)).map_err(Error::invalid)
    }

    fn begin_login(
        sp: identity_provider::ServiceProvider,
        relay_state: String,
    ) -> Result<identity_provider::LoginRequest, Error> {
        let idp = saml::usable_metadata(&sp.idp_metadata, now_seconds()).map_err(Error::invalid)?;
        let id = new_request_id();
        let xml = saml::authn_request(&sp_of(&sp), &idp, &id, now_seconds());
        let redirect_url = saml::redirect_url(&idp, &xml, &relay_state).map_err(Error::invalid)?;
        Ok(identity_provider::LoginRequest { id, redirect_url })
    }

    fn complete_login(
        sp: identity_provider::ServiceProvider,
        callback: http_types::Request,
    ) -> Result<identity_provider::Identity, Error> {
        if !callback.method.eq_ignore_ascii_case("POST") {
            return Err(Error::invalid(
                "the response must be posted (HTTP-POST binding); other bindings are not accepted",
            ));
        }
        let idp = saml::usable_metadata(&sp.idp_metadata, now_seconds()).map_err(Error::invalid)?;
        let (xml, relay_state) = saml::read_form(&callback.body).map_err(Error::invalid)?;
        let v = saml::verify_response(&sp_of(&sp), &idp, xml, relay_state, now_seconds())
            .map_err(Error::invalid)?;
        Ok(identity_provider::Identity {
            subject: v.subject,
            email: v.email,
            groups: v.groups,
            assertion_id: v.assertion_id,
            in_response_to: v.in_response_to,
            not_on_or_after: v.not_on_or_after,
            relay_state: v.relay_state,
        })
    }
}

lockgate_plugin_sdk::export_sso!(SamlSso);
