//! The HTTP and SOAP 1.1 layer: `GET ?wsdl` answers the WSDL; `POST` reads the envelope
//! (SOAP 1.1 only, the WS-Security header understood and skipped, any other header block
//! with `mustUnderstand="1"` refused), dispatches the one body element to its operation and
//! writes the response or a SOAP 1.1 fault (HTTP 500, SOAP 1.1 §6.2).

use crate::ops::{self, Employees, Operation, TNS};
use crate::settings::Settings;
use crate::wsdl;
use crate::xml::{self, Element, Limits, XmlErrorKind, escape_attr, escape_text};

pub const SOAP11_ENV: &str = "http://schemas.xmlsoap.org/soap/envelope/";
pub const SOAP12_ENV: &str = "http://www.w3.org/2003/05/soap-envelope";
/// WS-Security 1.0 (`wsse:Security`); the host has read and checked it before the plugin.
pub const WSSE: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
const ACTOR_NEXT: &str = "http://schemas.xmlsoap.org/soap/actor/next";

/// Rows listed in a fault's `faultstring` (the detail lists all).
const ROWS_IN_MESSAGE: usize = 10;

/// An HTTP request as the host hands it over.
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'a> {
    pub method: &'a str,
    /// Below the mount point, with the query string.
    pub path: &'a str,
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

impl HttpRequest<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The answer, and one log line that carries no header content and no personal data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub log: String,
}

/// SOAP 1.1 fault codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultCode {
    VersionMismatch,
    MustUnderstand,
    Client,
    Server,
}

impl FaultCode {
    fn qname(self) -> &'static str {
        match self {
            FaultCode::VersionMismatch => "soap:VersionMismatch",
            FaultCode::MustUnderstand => "soap:MustUnderstand",
            FaultCode::Client => "soap:Client",
            FaultCode::Server => "soap:Server",
        }
    }
}

/// One invalid employee of a batch: position (0-based), identifier as sent, the XML element
/// name of the field and the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub index: usize,
    pub identifier: String,
    pub field: String,
    pub rule: String,
}

/// The structured `detail` of a fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detail {
    /// `<lg:Error kind=".." element=".." line=".." column=".."/>`.
    Error {
        kind: &'static str,
        element: Option<String>,
        line: Option<usize>,
        column: Option<usize>,
    },
    /// `<lg:InvalidEmployees><lg:Row index identifier field rule/>...</lg:InvalidEmployees>`.
    InvalidEmployees(Vec<RowError>),
}

impl Detail {
    pub fn error(kind: &'static str, element: Option<String>) -> Detail {
        Detail::Error {
            kind,
            element,
            line: None,
            column: None,
        }
    }
}

/// A SOAP 1.1 fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub code: FaultCode,
    pub message: String,
    /// Never set for header faults (SOAP 1.1 §4.4: `detail` is about the body).
    pub detail: Option<Detail>,
}

impl Fault {
    pub fn client(message: impl Into<String>, detail: Detail) -> Fault {
        Fault {
            code: FaultCode::Client,
            message: message.into(),
            detail: Some(detail),
        }
    }

    pub fn server(message: impl Into<String>, detail: Detail) -> Fault {
        Fault {
            code: FaultCode::Server,
            message: message.into(),
            detail: Some(detail),
        }
    }

    /// The fault of an all-or-nothing batch with invalid rows: every row in the detail, the
    /// first ones in the message too.
    pub fn invalid_rows(rows: Vec<RowError>) -> Fault {
        let mut employees: Vec<usize> = rows.iter().map(|r| r.index).collect();
        employees.dedup();
        let mut message = format!(
            "UpsertEmployees wrote nothing: {} invalid field{} in {} employee{}: ",
            rows.len(),
            if rows.len() == 1 { "" } else { "s" },
            employees.len(),
            if employees.len() == 1 { "" } else { "s" },
        );
        let shown: Vec<String> = rows
            .iter()
            .take(ROWS_IN_MESSAGE)
            .map(|r| {
                format!(
                    "employee[{}] (identifier '{}') {}: {}",
                    r.index, r.identifier, r.field, r.rule
                )
            })
            .collect();
        message.push_str(&shown.join("; "));
        if rows.len() > ROWS_IN_MESSAGE {
            message.push_str(&format!(
                "; and {} more (see the fault detail)",
                rows.len() - ROWS_IN_MESSAGE
            ));
        }
        Fault {
            code: FaultCode::Client,
            message,
            detail: Some(Detail::InvalidEmployees(rows)),
        }
    }

    fn from_xml(e: xml::XmlError) -> Fault {
        Fault {
            code: FaultCode::Client,
            message: e.message,
            detail: Some(Detail::Error {
                kind: match e.kind {
                    XmlErrorKind::Malformed => "malformed",
                    XmlErrorKind::Doctype => "doctype",
                    XmlErrorKind::Limit => "limit",
                },
                element: e.element,
                line: e.line,
                column: e.column,
            }),
        }
    }

    /// The fault envelope.
    pub fn to_xml(&self) -> String {
        let mut out = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<soap:Envelope xmlns:soap=\"{SOAP11_ENV}\"><soap:Body><soap:Fault><faultcode>{}</faultcode><faultstring xml:lang=\"en\">{}</faultstring>",
            self.code.qname(),
            escape_text(&self.message)
        );
        match &self.detail {
            None => {}
            Some(Detail::Error {
                kind,
                element,
                line,
                column,
            }) => {
                out.push_str(&format!(
                    "<detail><lg:Error xmlns:lg=\"{TNS}\" kind=\"{}\"",
                    escape_attr(kind)
                ));
                if let Some(e) = element {
                    out.push_str(&format!(" element=\"{}\"", escape_attr(e)));
                }
                if let Some(l) = line {
                    out.push_str(&format!(" line=\"{l}\""));
                }
                if let Some(c) = column {
                    out.push_str(&format!(" column=\"{c}\""));
                }
                out.push_str("/></detail>");
            }
            Some(Detail::InvalidEmployees(rows)) => {
                out.push_str(&format!("<detail><lg:InvalidEmployees xmlns:lg=\"{TNS}\">"));
                for r in rows {
                    out.push_str(&format!(
                        "<lg:Row index=\"{}\" identifier=\"{}\" field=\"{}\" rule=\"{}\"/>",
                        r.index,
                        escape_attr(&r.identifier),
                        escape_attr(&r.field),
                        escape_attr(&r.rule)
                    ));
                }
                out.push_str("</lg:InvalidEmployees></detail>");
            }
        }
        out.push_str("</soap:Fault></soap:Body></soap:Envelope>\n");
        out
    }

    /// A log line: the code and the kind, never the message (it may quote personal data).
    fn log_summary(&self) -> String {
        let kind = match &self.detail {
            None => "header".to_string(),
            Some(Detail::Error { kind, .. }) => (*kind).to_string(),
            Some(Detail::InvalidEmployees(rows)) => format!("{} invalid fields", rows.len()),
        };
        format!("{} fault ({kind})", self.code.qname())
    }
}

fn xml_response(status: u16, body: String, log: String) -> Handled {
    Handled {
        status,
        headers: vec![("content-type".into(), "text/xml; charset=utf-8".into())],
        body: body.into_bytes(),
        log,
    }
}

fn plain(status: u16, text: &str, extra: Option<(&str, &str)>) -> Handled {
    let mut headers = vec![(
        "content-type".to_string(),
        "text/plain; charset=utf-8".to_string(),
    )];
    if let Some((k, v)) = extra {
        headers.push((k.to_string(), v.to_string()));
    }
    Handled {
        status,
        headers,
        body: format!("{text}\n").into_bytes(),
        log: format!("HTTP {status}"),
    }
}

fn fault_response(op: Option<Operation>, fault: &Fault) -> Handled {
    let op = op.map_or("request", Operation::name);
    xml_response(
        500,
        fault.to_xml(),
        format!("{op}: {}", fault.log_summary()),
    )
}

/// Handles one request. `settings` is the plugin's configuration as read and validated for
/// this call; an invalid one answers every request with a server error naming the problem.
pub fn handle(
    req: &HttpRequest<'_>,
    settings: &Result<Settings, String>,
    backend: &dyn Employees,
) -> Handled {
    let (path, query) = req.path.split_once('?').unwrap_or((req.path, ""));
    if !(path.is_empty() || path == "/") {
        return plain(
            404,
            "Not found: the HR web service is at the mount point itself (WSDL at ?wsdl).",
            None,
        );
    }
    let method = req.method.to_ascii_uppercase();
    match method.as_str() {
        "GET" => {
            let wants_wsdl = query.split('&').any(|kv| {
                kv.split('=')
                    .next()
                    .is_some_and(|k| k.eq_ignore_ascii_case("wsdl"))
            });
            if !wants_wsdl {
                return plain(
                    404,
                    "Not found: GET serves the WSDL at ?wsdl; operations are POSTed as SOAP 1.1.",
                    None,
                );
            }
            match settings {
                Ok(s) => xml_response(200, wsdl::wsdl(&s.endpoint), "GET ?wsdl".into()),
                Err(e) => plain(
                    500,
                    &format!("The HR web service is not configured correctly: {e}"),
                    None,
                ),
            }
        }
        "POST" => {
            if let Err(e) = settings {
                return fault_response(
                    None,
                    &Fault::server(
                        format!("the HR web service is not configured correctly: {e}"),
                        Detail::error("configuration", None),
                    ),
                );
            }
            match post(req) {
                Err((op, fault)) => fault_response(op, &fault),
                Ok((op, request)) => match ops::call(op, &request, backend) {
                    Ok(body) => xml_response(
                        200,
                        format!(
                            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<soap:Envelope xmlns:soap=\"{SOAP11_ENV}\"><soap:Body>{body}</soap:Body></soap:Envelope>\n"
                        ),
                        format!("{}: ok", op.name()),
                    ),
                    Err(fault) => fault_response(Some(op), &fault),
                },
            }
        }
        _ => plain(
            405,
            "Method not allowed: GET ?wsdl for the WSDL, POST for SOAP 1.1 requests.",
            Some(("allow", "GET, POST")),
        ),
    }
}

type Posted = Result<(Operation, Element), (Option<Operation>, Fault)>;

/// Reads a POSTed envelope: the operation and its request element, or the fault.
fn post(req: &HttpRequest<'_>) -> Posted {
    let fault = |f: Fault| (None, f);
    let content_type = req
        .header("content-type")
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if content_type == "application/soap+xml" {
        return Err(fault(version_mismatch(
            "SOAP 1.2 (application/soap+xml) is not supported; send a SOAP 1.1 envelope as text/xml",
        )));
    }
    if content_type != "text/xml" {
        return Err(fault(Fault::client(
            format!(
                "the Content-Type must be text/xml (SOAP 1.1), not `{}`",
                if content_type.is_empty() {
                    "(none)"
                } else {
                    &content_type
                }
            ),
            Detail::error("contentType", None),
        )));
    }
    let envelope = xml::parse(req.body, &Limits::REQUEST).map_err(|e| fault(Fault::from_xml(e)))?;
    if envelope.name != "Envelope" {
        return Err(fault(Fault::client(
            format!(
                "the request is not a SOAP envelope: its root element is `{}`",
                envelope.display_name(SOAP11_ENV)
            ),
            Detail::error("envelope", Some(envelope.name.clone())),
        )));
    }
    if envelope.ns.as_deref() != Some(SOAP11_ENV) {
        let what = if envelope.ns.as_deref() == Some(SOAP12_ENV) {
            "a SOAP 1.2 envelope".to_string()
        } else {
            format!(
                "an envelope in the namespace `{}`",
                envelope.ns.as_deref().unwrap_or("(none)")
            )
        };
        return Err(fault(version_mismatch(&format!(
            "{what} is not supported; this service speaks SOAP 1.1 ({SOAP11_ENV})"
        ))));
    }
    let mut header = None;
    let mut body = None;
    for (i, child) in envelope.children.iter().enumerate() {
        if child.is(SOAP11_ENV, "Header") && i == 0 {
            header = Some(child);
        } else if child.is(SOAP11_ENV, "Body") && body.is_none() && i <= 1 {
            body = Some(child);
        } else if body.is_none() {
            return Err(fault(Fault::client(
                format!(
                    "unexpected `{}` in the envelope (line {}): a SOAP 1.1 envelope holds an optional Header, then the Body",
                    child.display_name(SOAP11_ENV),
                    child.line
                ),
                Detail::error("envelope", Some(child.name.clone())),
            )));
        }
        // Elements after the Body are allowed by SOAP 1.1 §4.3 and ignored.
    }
    if let Some(header) = header {
        check_header(header).map_err(fault)?;
    }
    let Some(body) = body else {
        return Err(fault(Fault::client(
            "the envelope has no Body",
            Detail::error("envelope", Some("Body".into())),
        )));
    };
    let request = match body.children.as_slice() {
        [one] => one,
        [] => {
            return Err(fault(Fault::client(
                "the Body is empty; it must hold one operation element",
                Detail::error("envelope", Some("Body".into())),
            )));
        }
        [_, second, ..] => {
            return Err(fault(Fault::client(
                format!(
                    "the Body holds more than one element (the second is `{}`, line {}); send one operation per request",
                    second.display_name(TNS),
                    second.line
                ),
                Detail::error("envelope", Some(second.name.clone())),
            )));
        }
    };
    let op = (request.ns.as_deref() == Some(TNS))
        .then(|| Operation::from_name(&request.name))
        .flatten()
        .ok_or_else(|| {
            fault(Fault::client(
                format!(
                    "unknown operation `{}`; this service offers {} in the namespace {TNS}",
                    request.display_name(TNS),
                    Operation::ALL
                        .iter()
                        .map(|o| o.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Detail::error("unknownOperation", Some(request.name.clone())),
            ))
        })?;
    if let Some(action) = req.header("soapaction") {
        let action = action.trim().trim_matches('"');
        if !action.is_empty() && action != op.action() {
            return Err((
                Some(op),
                Fault::client(
                    format!(
                        "the SOAPAction `{action}` does not match the operation {} (expected `{}` or empty)",
                        op.name(),
                        op.action()
                    ),
                    Detail::error("soapAction", None),
                ),
            ));
        }
    }
    let request = request.clone();
    Ok((op, request))
}

fn version_mismatch(message: &str) -> Fault {
    Fault {
        code: FaultCode::VersionMismatch,
        message: message.to_string(),
        detail: None,
    }
}

/// The header blocks: WS-Security is understood (the host checked it); any other block for
/// this node (no actor, or the `next` actor) with `mustUnderstand="1"` is a fault.
fn check_header(header: &Element) -> Result<(), Fault> {
    for block in &header.children {
        if block.ns.as_deref() == Some(WSSE) && block.name == "Security" {
            continue;
        }
        let actor = block.attribute(Some(SOAP11_ENV), "actor");
        if actor.is_some_and(|a| a != ACTOR_NEXT) {
            continue;
        }
        let must = block
            .attribute(Some(SOAP11_ENV), "mustUnderstand")
            .map(str::trim);
        if matches!(must, Some("1" | "true")) {
            return Err(Fault {
                code: FaultCode::MustUnderstand,
                message: format!(
                    "the header block `{}` must be understood but this service does not understand it (it understands only wsse:Security)",
                    match block.ns.as_deref() {
                        Some(ns) => format!("{{{ns}}}{}", block.name),
                        None => block.name.clone(),
                    }
                ),
                detail: None,
            });
        }
    }
    Ok(())
}
