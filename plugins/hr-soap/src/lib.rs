//! `hr-soap`: the inbound HR web service (world `web-service`), SOAP 1.1 with a WSDL 1.1
//! contract (document/literal, wrapped) served at `?wsdl`. HR systems create and update
//! employees in all-or-nothing batches, deactivate, delete and read them by identifier, and
//! follow the changes. The host authenticates every request (API token header or WS-Security
//! UsernameToken) before `handle` and binds the `employees` operations to that client; this
//! plugin speaks the protocol: `xml` (bounded parsing), `soap` (envelope, headers, faults),
//! `ops` (the operations and the field mapping), `wsdl`, `settings`.

pub mod ops;
pub mod settings;
pub mod soap;
pub mod wsdl;
pub mod xml;

#[cfg(test)]
mod tests;

use lockgate_plugin_sdk::employees::{ChangePage, Employee, UpsertError, UpsertOutcome};
use lockgate_plugin_sdk::{Error, Person, employees, http_handler, http_types, plugin};

struct HrSoap;

impl plugin::Guest for HrSoap {
    fn describe() -> plugin::PluginInfo {
        plugin::PluginInfo {
            name: "hr-soap".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Inbound HR web service (SOAP 1.1, WSDL at ?wsdl) for employees".into(),
        }
    }
}

/// The host's `lockgate:host/employees` interface.
struct HostEmployees;

impl ops::Employees for HostEmployees {
    fn upsert(
        &self,
        domain: Option<String>,
        persons: Vec<Person>,
    ) -> Result<UpsertOutcome, UpsertError> {
        employees::upsert(domain.as_deref(), &persons)
    }
    fn get(&self, identifier: &str) -> Result<Employee, Error> {
        employees::get(identifier)
    }
    fn deactivate(&self, identifier: &str) -> Result<Employee, Error> {
        employees::deactivate(identifier)
    }
    fn delete(&self, identifier: &str) -> Result<Option<Employee>, Error> {
        employees::delete(identifier)
    }
    fn list_changes(&self, since: &str, limit: u32) -> Result<ChangePage, Error> {
        employees::list_changes(since, limit)
    }
}

fn read_settings() -> Result<settings::Settings, String> {
    lockgate_plugin_sdk::settings::<settings::Settings>()
        .map_err(|e| match e {
            Error::Invalid(m)
            | Error::NotFound(m)
            | Error::Denied(m)
            | Error::Unavailable(m)
            | Error::Other(m) => m,
        })?
        .checked()
}

impl http_handler::Guest for HrSoap {
    fn handle(request: http_types::Request) -> http_types::Response {
        let settings = read_settings();
        let handled = soap::handle(
            &soap::HttpRequest {
                method: &request.method,
                path: &request.path,
                headers: &request.headers,
                body: &request.body,
            },
            &settings,
            &HostEmployees,
        );
        // Operation and outcome only: never header contents or personal data.
        lockgate_plugin_sdk::log::info(&handled.log);
        http_types::Response {
            status: handled.status,
            headers: handled.headers,
            body: handled.body,
        }
    }
}

lockgate_plugin_sdk::export_web_service!(HrSoap);
