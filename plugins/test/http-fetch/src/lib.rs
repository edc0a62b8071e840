//! Test plugin `http-fetch`: `publish(event)` sends `GET` to the URL in the
//! event's payload through `wasi:http/outgoing-handler` and reads the body;
//! `ok` on status 200, `error::other("status N")` on another status,
//! `error::denied(CODE)` when the host refuses the request and
//! `error::other(CODE)` for other `wasi:http` errors.

use lockgate_plugin_sdk::{Error, Event};
use lockgate_plugin_sdk::{event_sink, plugin};
use wasip2::http::outgoing_handler;
use wasip2::http::types::{ErrorCode, Fields, IncomingBody, Method, OutgoingRequest, Scheme};
use wasip2::io::streams::StreamError;

struct Plugin;

impl plugin::Guest for Plugin {
    fn describe() -> plugin::PluginInfo {
        plugin::PluginInfo {
            name: "http-fetch".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Fetches the URL in the event payload through wasi:http.".into(),
        }
    }
}

impl event_sink::Guest for Plugin {
    fn publish(event: Event) -> Result<(), Error> {
        let (status, bytes) = fetch(event.payload.trim())?;
        lockgate_plugin_sdk::log::info(&format!("status {status}, {bytes} bytes"));
        if status == 200 {
            Ok(())
        } else {
            Err(Error::Other(format!("status {status}")))
        }
    }

    fn handle_command(_command: event_sink::Command) -> Result<String, Error> {
        Err(Error::invalid("no commands"))
    }
}

/// Maps a `wasi:http` error code to the plugin error.
fn code(e: ErrorCode) -> Error {
    match e {
        ErrorCode::HttpRequestDenied | ErrorCode::DestinationIpProhibited => {
            Error::Denied(format!("{e:?}"))
        }
        e => Error::Other(format!("{e:?}")),
    }
}

/// `GET url`: the status and the body's length.
fn fetch(url: &str) -> Result<(u16, usize), Error> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| Error::Invalid(format!("not a URL: `{url}`")))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let scheme = match scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => Scheme::Other(other.to_owned()),
    };
    let bad = |what: &str| Error::Invalid(format!("rejected {what}"));
    let request = OutgoingRequest::new(Fields::new());
    request
        .set_method(&Method::Get)
        .map_err(|()| bad("method"))?;
    request
        .set_scheme(Some(&scheme))
        .map_err(|()| bad("scheme"))?;
    request
        .set_authority(Some(authority))
        .map_err(|()| bad("authority"))?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| bad("path"))?;

    let pending = outgoing_handler::handle(request, None).map_err(code)?;
    pending.subscribe().block();
    let response = pending
        .get()
        .ok_or_else(|| Error::Other("response not ready".into()))?
        .map_err(|()| Error::Other("response taken twice".into()))?
        .map_err(code)?;
    let status = response.status();
    let body = response
        .consume()
        .map_err(|()| Error::Other("no body".into()))?;
    let mut bytes = 0;
    {
        let stream = body
            .stream()
            .map_err(|()| Error::Other("no body stream".into()))?;
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => bytes += chunk.len(),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    let detail = wasip2::http::types::http_error_code(&e)
                        .map_or_else(|| e.to_debug_string(), |c| format!("{c:?}"));
                    return Err(Error::Other(detail));
                }
            }
        }
    }
    let _trailers = IncomingBody::finish(body);
    drop(response);
    Ok((status, bytes))
}

lockgate_plugin_sdk::export_event_bridge!(Plugin);
