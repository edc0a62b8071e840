//! Wiring for `serve`: tracing, database, first-start bootstrap, plugin host, background
//! runtime (worker, periodic tasks, outbox dispatcher), PD certificate authority and PD
//! listener, HTTP listener, graceful shutdown.

use std::{future::Future, sync::Arc, time::Duration};

use anyhow::Context;
use lockgate_api::{ApiConfig, AppState};
use lockgate_model::system::FixedSettings;
use lockgate_store::{ConnectOptions, Store};

use crate::config::{Config, LogFormat};

/// Install the global tracing subscriber as the config says.
pub fn init_tracing(cfg: &Config) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(&cfg.log.level).unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match cfg.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Connect to the configured database (and migrate when configured).
pub async fn open_store(cfg: &Config, migrate: bool) -> anyhow::Result<Store> {
    let mut opts = ConnectOptions::new(&cfg.database.url);
    opts.max_connections = cfg.database.max_connections;
    opts.acquire_timeout = Duration::from_secs(cfg.database.acquire_timeout_seconds);
    let store = Store::connect(&opts)
        .await
        .with_context(|| format!("connecting to {}", cfg.redacted_database_url()))?;
    if migrate {
        store.migrate().await.context("applying migrations")?;
    }
    Ok(store)
}

/// Fixed settings of the bootstrap system.
pub fn bootstrap_settings(cfg: &Config) -> FixedSettings {
    FixedSettings {
        remote: cfg.bootstrap.remote,
        cylinder_groups: cfg.bootstrap.cylinder_groups,
        base_time_zone: cfg.bootstrap.base_time_zone.clone(),
        audit_trail_approvals: cfg.bootstrap.audit_trail_approvals,
    }
}

/// Print a freshly issued token once, on the terminal and never into the log.
pub fn print_token_once(system: &str, token: &str) {
    println!("Locking system '{system}' created.");
    println!("Super-administrator API token (shown once, store it now):");
    println!();
    println!("    {token}");
    println!();
}

/// Run the gateway until SIGINT/SIGTERM; SIGHUP reloads the configuration's `[plugins]`
/// section from `config_path` (the other sections need a restart).
pub async fn serve(cfg: Config, config_path: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    init_tracing(&cfg);
    tracing::info!(database = %cfg.redacted_database_url(), listen = %cfg.server.listen, "starting lockgate");
    // The certificate and key are read before anything else starts: a bad file stops here.
    let options = cfg.server.listener_options()?;
    // Up front: the MQTT TLS files, credentials and command secrets, before anything starts.
    if cfg.plugins.enabled
        && let Some(mqtt) = &cfg.plugins.mqtt
    {
        mqtt.preflight().context("checking [plugins.mqtt]")?;
    }
    // The PD CA's sealing key, up front: a missing or malformed key stops here.
    let pd_key = if cfg.pds.enabled {
        Some(cfg.pds.sealing_key(|k| std::env::var(k).ok())?)
    } else {
        None
    };
    let store = open_store(&cfg, cfg.database.migrate_on_start).await?;
    if cfg.bootstrap.enabled && store.systems().await?.is_empty() {
        let b = store
            .init_system(&cfg.bootstrap.system_name, bootstrap_settings(&cfg))
            .await
            .context("creating the first locking system")?;
        tracing::info!(system_id = b.system.id, "created the first locking system");
        print_token_once(&b.system.name, &b.token);
    }
    // Licence start-up check: a hard-expired licence locks the system (docs/licences.md).
    let licence = cfg.licence.api()?;
    lockgate_api::licence::check_at_startup(&store, &licence, chrono::Utc::now())
        .await
        .context("refusing to start")?;
    // The queue plugins use to ask for background work (e.g. a directory sync on demand).
    let queue = lockgate_jobs::Queue::new(
        store.clone(),
        crate::background::queue_config(&cfg.background),
    )
    .context("opening the background queue")?;
    let pd_authority = match &pd_key {
        Some(key) => Some(Arc::new(
            crate::pd_listener::open_authority(&store, &cfg.pds, key)
                .await
                .context("opening the PD certificate authority")?,
        )),
        None => None,
    };
    let plugins = crate::plugins::start(
        &cfg.plugins,
        &store,
        &licence,
        Some(queue),
        pd_authority.clone(),
    )
    .await?;
    // `notify.*` outbox messages go to the notifier plugin when one is configured, else to
    // the log (metadata only).
    let deliver: Arc<dyn lockgate_jobs::Deliver> = match (&cfg.background.notifier, &plugins) {
        (Some(notifier), Some(host)) => Arc::new(crate::background::PluginDeliver {
            host: host.clone(),
            notifier: notifier.clone(),
        }),
        (Some(notifier), None) => {
            anyhow::bail!(
                "[background] notifier = \"{notifier}\" needs the plugin host ([plugins] enabled = true)"
            )
        }
        (None, _) => Arc::new(crate::background::LogDeliver),
    };
    let background = crate::background::start(
        &cfg.background,
        Duration::from_secs(cfg.server.shutdown_grace_seconds),
        &store,
        licence.clone(),
        deliver,
        plugins.clone(),
        chrono::Duration::days(i64::from(cfg.pds.renew_before_days)),
    )
    .context("starting the background runtime")?;
    let mut app_layer = lockgate_app::App::new(store.clone());
    if let Some(authority) = &pd_authority {
        app_layer = app_layer.with_pd_authority(authority.clone());
    }
    let mut state = AppState::with_app(
        app_layer,
        ApiConfig {
            max_body_bytes: cfg.server.max_body_bytes,
            licence,
            max_token_lifetime: chrono::Duration::days(cfg.access.max_token_lifetime_days.into()),
            operator_system_id: cfg.access.operator_system_id,
            request_timeout: cfg.server.request_timeout.0,
            hsts_max_age: cfg.server.tls.as_ref().map(|t| t.hsts_max_age.0),
            sso: cfg.sso.api(),
            scim: cfg.scim.api(),
            web_services: cfg.web_services.api(),
        },
    );
    // The event relay hands new events to the event-bridge plugins; the command listener
    // takes MQTT commands for them (docs/connectors/mqtt.md).
    let mut bridge_tasks = Vec::new();
    if let Some(host) = &plugins {
        let bridges: Vec<String> = host
            .status()
            .plugins
            .iter()
            .filter(|p| {
                p.world == Some(lockgate_host::World::EventBridge)
                    && p.state == lockgate_host::PluginState::Enabled
            })
            .map(|p| p.name.clone())
            .collect();
        if !bridges.is_empty() {
            bridge_tasks.push(crate::event_relay::spawn(
                store.clone(),
                host.clone(),
                crate::event_relay::RelayConfig {
                    bridges: bridges.clone(),
                    ..Default::default()
                },
            ));
            if let Some(mqtt) = &cfg.plugins.mqtt
                && let Some(commands) =
                    crate::event_relay::spawn_commands(host.clone(), mqtt, bridges)
                        .context("starting the MQTT command listener")?
            {
                bridge_tasks.push(commands);
            }
        }
    }
    let frames: Arc<dyn crate::pd_listener::FrameHandler> = match &plugins {
        Some(host) => Arc::new(crate::pd_listener::PluginFrames::new(
            host.clone(),
            cfg.pds.protocols.clone(),
            cfg.pds.max_concurrent_frames,
            cfg.pds.frame_timeout.0,
        )),
        None => Arc::new(crate::pd_listener::NoProtocol),
    };
    if let Some(host) = plugins {
        #[cfg(unix)]
        tokio::spawn(reload_on_hangup(host.clone(), config_path));
        #[cfg(not(unix))]
        let _ = config_path;
        if let Some(name) = &cfg.sso.plugin {
            state = state.with_sso(Arc::new(crate::plugins::HostSso {
                host: host.clone(),
                plugin: name.clone(),
            }));
        }
        if !cfg.web_services.mounts.is_empty() {
            state =
                state.with_web_services(Arc::new(crate::plugins::HostWebServices(host.clone())));
        }
        state = state.with_plugins(Arc::new(crate::plugins::HostAdmin(host)));
    }
    // The PD listener (mutual TLS): its own port, its own connection slots.
    if let Some(authority) = &pd_authority {
        use crate::pd_listener as pd;
        let trusted = Arc::new(pd::TrustedDevices::default());
        trusted
            .refresh(&store)
            .await
            .context("reading the PD certificates")?;
        let tls = pd::tls_config(authority, &cfg.pds.server_names, trusted.clone())?;
        let listener = tokio::net::TcpListener::bind(&cfg.pds.listen)
            .await
            .with_context(|| format!("binding the PD listener to {}", cfg.pds.listen))?;
        tracing::info!(addr = %listener.local_addr()?, "PD listener: mutual TLS");
        bridge_tasks.push(tokio::spawn(pd::serve(
            listener,
            tls,
            pd::PdListenerOptions::from_config(&cfg.pds),
            store.clone(),
            trusted,
            frames,
            std::future::pending(),
        )));
    }
    let app = lockgate_api::router(state);
    let listener = tokio::net::TcpListener::bind(&cfg.server.listen)
        .await
        .with_context(|| format!("binding {}", cfg.server.listen))?;
    tracing::info!(
        addr = %listener.local_addr()?,
        tls = options.tls.is_some(),
        "listening; API document at /api/v1/openapi.json"
    );
    // The signal stops the background runtime while HTTP drains.
    let stopper = background.as_ref().map(crate::background::Running::stopper);
    let served = serve_http(listener, app, options, async move {
        shutdown_signal().await;
        if let Some(s) = stopper {
            let _ = s.send(true);
        }
    })
    .await
    .context("serving HTTP");
    if let Some(b) = background {
        b.stop().await;
    }
    for task in bridge_tasks {
        task.abort();
    }
    served?;
    tokio::time::timeout(
        Duration::from_secs(cfg.server.shutdown_grace_seconds),
        store.close(),
    )
    .await
    .ok();
    tracing::info!("stopped");
    Ok(())
}

/// On every SIGHUP: read the configuration again and apply its `[plugins]` section to the
/// running host. A file that does not load or
/// validate changes nothing; the error is logged.
#[cfg(unix)]
async fn reload_on_hangup(
    host: lockgate_host::PluginHost,
    config_path: Option<std::path::PathBuf>,
) {
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    else {
        tracing::warn!("cannot listen for SIGHUP: configuration reload is off");
        return;
    };
    while hangups.recv().await.is_some() {
        tracing::info!(path = ?config_path, "SIGHUP: reloading the plugin configuration");
        match crate::plugins::reconfigure(&host, config_path.as_deref()).await {
            Ok(kept) if kept.is_empty() => tracing::info!("plugin configuration reloaded"),
            Ok(kept) => tracing::warn!(
                needs_restart = ?kept,
                "plugin configuration reloaded; some settings need a restart"
            ),
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "configuration reload failed; nothing changed")
            }
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

/// How the HTTP listener serves connections (`[server]`, `[server.tls]`).
#[derive(Clone)]
pub struct HttpOptions {
    /// TLS configuration and handshake timeout; none: plain HTTP.
    pub tls: Option<(Arc<rustls::ServerConfig>, Duration)>,
    /// Reading a request head; also closes idle keep-alive connections.
    pub header_read_timeout: Duration,
    /// Largest request head in bytes (hyper's read buffer; larger heads get 431).
    pub max_header_bytes: usize,
    /// Most header fields per request (more get 431).
    pub max_headers: usize,
    /// Connections served at once; the rest wait in the listen backlog.
    pub max_connections: usize,
    /// How long open connections may finish after the shutdown signal.
    pub shutdown_grace: Duration,
}

impl std::fmt::Debug for HttpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpOptions")
            .field("tls", &self.tls.as_ref().map(|(_, t)| t))
            .field("header_read_timeout", &self.header_read_timeout)
            .field("max_header_bytes", &self.max_header_bytes)
            .field("max_headers", &self.max_headers)
            .field("max_connections", &self.max_connections)
            .field("shutdown_grace", &self.shutdown_grace)
            .finish()
    }
}

impl Default for HttpOptions {
    /// Plain HTTP with the `[server]` defaults.
    fn default() -> Self {
        let d = crate::config::ServerConfig::default();
        Self {
            tls: None,
            header_read_timeout: d.header_read_timeout.0,
            max_header_bytes: d.max_header_bytes,
            max_headers: d.max_headers,
            max_connections: d.max_connections,
            shutdown_grace: Duration::from_secs(d.shutdown_grace_seconds),
        }
    }
}

/// Serve `app` on `listener` until `shutdown` completes, then let open connections finish
/// for `shutdown_grace`. HTTP/1.1, over TLS when configured. A client that does not
/// complete the TLS handshake or a request head in time is dropped; at most
/// `max_connections` are served at once (the listener stops accepting until one ends).
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    options: HttpOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .max_buf_size(options.max_header_bytes.max(8192))
        .max_headers(options.max_headers);
    let http = Arc::new(http);
    let tls = options
        .tls
        .clone()
        .map(|(config, timeout)| (tokio_rustls::TlsAcceptor::from(config), timeout));
    let slots = Arc::new(tokio::sync::Semaphore::new(options.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(s) => s,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        // How the connection reached the gateway, for every request on it (a password in a
        // request body is taken only over TLS or from a loopback peer).
        let transport = lockgate_api::web_services::Transport {
            tls: tls.is_some(),
            peer,
        };
        let service =
            hyper_util::service::TowerToHyperService::new(tower::ServiceExt::map_request(
                app.clone(),
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(transport);
                    req
                },
            ));
        let http = http.clone();
        let watcher = graceful.watcher();
        match &tls {
            None => {
                tokio::spawn(async move {
                    let conn = http.serve_connection(hyper_util::rt::TokioIo::new(tcp), service);
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    drop(slot);
                });
            }
            Some((acceptor, timeout)) => {
                let (acceptor, timeout) = (acceptor.clone(), *timeout);
                tokio::spawn(async move {
                    let stream = match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!("TLS handshake timed out");
                            return;
                        }
                    };
                    let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    drop(slot);
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(options.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("open connections did not finish within the shutdown grace time");
    }
    Ok(())
}
