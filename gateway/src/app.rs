//! Wiring: starts the broker (embedded mode), the store, the metrics sink,
//! the pipeline, MQTT ingest, Modbus polling and the HTTP API, and stops
//! them in order.
//!
//! Like mini-redis's `server::run`, [`start`] takes an already-bound HTTP
//! listener, so tests bind `127.0.0.1:0` and run many gateways side by side.

use crate::alarms::events::GatewayEvent;
use crate::alarms::pipeline::Pipeline;
use crate::api::{router, AppState};
use crate::config::{BrokerMode, Config};
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("embedded MQTT broker on {addr}: {source}")]
    Broker {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP listener: {0}")]
    Http(std::io::Error),
    #[error("[http.tls]: {0}")]
    HttpTls(crate::tls::TlsError),
    #[error("MQTT over TLS (mqtt.external_tls): {0}")]
    MqttTls(crate::tls::TlsError),
}

/// A running gateway.
pub struct Running {
    /// Where the HTTP API listens.
    pub http_addr: SocketAddr,
    /// Where `/metrics` listens on its own (`http.metrics_listen`), if set.
    pub metrics_addr: Option<SocketAddr>,
    /// Where the gate listens for MQTT over TLS (`[mqtt.tls]`), if set.
    pub mqtt_tls_addr: Option<SocketAddr>,
    pub metrics: Arc<Metrics>,
    pub store: Store,
    pub events: broadcast::Sender<GatewayEvent>,
    /// The configuration in force (file + registry).
    pub live: crate::live::Live,
    shutdown: CancellationToken,
    gate: Option<JoinHandle<()>>,
    live_task: JoinHandle<()>,
    ingest: JoinHandle<()>,
    modbus: Vec<JoinHandle<()>>,
    notify: Option<JoinHandle<()>>,
    pipeline: JoinHandle<()>,
    sink: Option<JoinHandle<()>>,
    http: JoinHandle<()>,
    metrics_listener: Option<JoinHandle<()>>,
    sessions: JoinHandle<()>,
    /// GB/T 26875.3 northbound: links down and duty checks (查岗) for the duty desk.
    pub gb26875_duty: Arc<crate::northbound::gb26875::duty::DutyDesk>,
    northbound: Vec<JoinHandle<()>>,
}

/// Starts every part of the gateway. `config_source` names where the
/// configuration came from, for the audit of rule changes (`config:FILE`).
pub async fn start(config: Config, http: TcpListener) -> Result<Running, StartError> {
    start_with_source(config, http, "config").await
}

/// [`start`], naming the configuration's source for the audit trail.
pub async fn start_with_source(
    config: Config,
    http: TcpListener,
    config_source: &str,
) -> Result<Running, StartError> {
    let config_source = config_source.to_string();
    let config = Arc::new(config);
    let shutdown = CancellationToken::new();
    let metrics = Arc::new(Metrics::default());
    sighup_never_stops(shutdown.clone());
    // Bound before anything starts, so that a taken address stops nothing.
    let metrics_listener = match config.http.metrics_listen {
        Some(addr) => Some(TcpListener::bind(addr).await.map_err(StartError::Http)?),
        None => None,
    };
    let metrics_addr = match &metrics_listener {
        Some(l) => Some(l.local_addr().map_err(StartError::Http)?),
        None => None,
    };

    // HTTPS: certificate and key read before anything starts; a broken
    // pair stops the start rather than serving the console in clear text.
    let https = match &config.http.tls {
        Some(files) => Some(crate::api::tls::load(files).map_err(StartError::HttpTls)?),
        None => None,
    };

    let store = Store::open(&config.database_url()).await?;
    // The URL may carry the database password: never into the log.
    tracing::info!(url = %crate::redact::url(&config.database_url()), "database ready");

    // The configuration in force: the file's plus registered nodes.
    let gateway_login = config
        .mqtt
        .username
        .clone()
        .zip(config.mqtt.password.clone());
    let live = crate::live::Live::load(config.clone(), store.clone(), gateway_login).await?;
    let live_task = tokio::spawn(live.clone().follow_store(shutdown.clone()));

    // Messages for the pipeline: from the gate (embedded broker), the
    // gateway's MQTT client, and Modbus polling.
    let (tx, rx) = mpsc::channel(10_000);

    // Embedded: rumqttd on a loopback port that only the gate and the
    // gateway's own client can log in to (a per-process secret), the gate
    // on the public broker port checking every node's credentials and topics.
    let mut client_mqtt = config.mqtt.clone();
    let mut gate = None;
    let mut mqtt_tls_addr = None;
    if config.mqtt.broker == BrokerMode::Embedded {
        let addr = config.mqtt.embedded_listen;
        let broker_err = |source| StartError::Broker { addr, source };
        let internal = std::net::TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .map_err(broker_err)?;
        let secret = crate::auth::credentials::new_password()
            .map_err(|e| broker_err(std::io::Error::other(e.to_string())))?;
        let login = ("gateway-internal".to_string(), secret);
        crate::ingest::broker::start(internal, Some(login.clone()))
            .await
            .map_err(broker_err)?;
        let gate_front = crate::ingest::gate::Gate::new(
            live.access(),
            crate::ingest::gate::Upstream {
                addr: internal,
                username: login.0.clone(),
                password: login.1.clone(),
                ingest: Some(tx.clone()),
            },
            config.mqtt.limits.clone(),
            metrics.clone(),
        );
        // Plain MQTT unless switched off (`mqtt.plain = false`), MQTT over
        // TLS with `[mqtt.tls]`: one gate, one set of caps, behind both.
        let plain = if config.mqtt.plain {
            Some(TcpListener::bind(addr).await.map_err(broker_err)?)
        } else {
            None
        };
        let tls = match &config.mqtt.tls {
            Some(t) => {
                let tls_err = |source| StartError::Broker {
                    addr: t.listen,
                    source,
                };
                let reloadable = crate::tls::server::Reloadable::load(
                    "mqtt",
                    t.files(),
                    Box::new(crate::ingest::gate::tls::server_config),
                )
                .map_err(|e| tls_err(std::io::Error::other(e.to_string())))?;
                let listener = TcpListener::bind(t.listen).await.map_err(tls_err)?;
                mqtt_tls_addr = Some(listener.local_addr().map_err(tls_err)?);
                tracing::info!(addr = %t.listen, client_certificates = t.client_ca_file.is_some(), "MQTT over TLS on the gate");
                Some((listener, reloadable))
            }
            None => None,
        };
        let gate_shutdown = shutdown.clone();
        gate = Some(tokio::spawn(async move {
            let plain = async {
                if let Some(l) = plain {
                    gate_front.run(l, None, gate_shutdown.clone()).await;
                }
            };
            let tls = async {
                if let Some((l, r)) = tls {
                    let watcher = r.clone().watch(gate_shutdown.clone());
                    gate_front.run(l, Some(r), gate_shutdown.clone()).await;
                    let _ = watcher.await;
                }
            };
            tokio::join!(plain, tls);
        }));
        client_mqtt.broker = BrokerMode::External;
        // The internal broker is plain, on loopback.
        client_mqtt.external_tls = false;
        client_mqtt.host = internal.ip().to_string();
        client_mqtt.port = internal.port();
        client_mqtt.username = Some(login.0);
        client_mqtt.password = Some(login.1);
        tracing::info!(%addr, "embedded MQTT broker started behind the credential and ACL gate");
    }

    // The sink outlives the pipeline so that the pipeline's last lines are
    // flushed: it has its own shutdown token, cancelled after the pipeline ends.
    let sink_shutdown = CancellationToken::new();
    let (sink, sink_task, spooled) = match &config.sink {
        Some(c) => {
            // Never fails: a broken spool is set aside, and without any the
            // sink runs degraded (its lines dropped and counted) rather than
            // keeping the gateway, and its alarms, down.
            let (s, t, spooled) = crate::sink::start_with_tls(
                c.clone(),
                &config.tls,
                &config.storage.data_dir,
                metrics.clone(),
                sink_shutdown.clone(),
            );
            if !s.is_unavailable() {
                tracing::info!(url = %crate::redact::url(&c.url), bucket = %c.bucket, "metrics sink on, spooled on disk");
            }
            (Some(s), Some(t), spooled)
        }
        None => {
            tracing::info!("metrics sink off (no [sink] in the configuration)");
            (None, None, Vec::new())
        }
    };

    let (events, _) = broadcast::channel(1024);
    let (commands, commands_rx) = mpsc::channel(64);
    // An external broker over TLS: the one rustls client configuration of
    // the gateway (ring, system store plus `[tls] extra_ca_file`).
    let mqtt_tls = match client_mqtt.external_tls {
        true => Some(Arc::new(
            crate::tls::client_config(&config.tls).map_err(StartError::MqttTls)?,
        )),
        false => None,
    };
    let mqtt = crate::ingest::mqtt::client_with_tls(&client_mqtt, mqtt_tls);
    // The pipeline writes alarms and tickets on connections of its own
    // ([`Store::reserved`]): API requests cannot starve it of them. On a
    // cluster (`[cluster]`), one pipeline per ingest partition this
    // replica's consumers are active on ([`crate::replica`]).
    let pipeline_task = match &config.cluster {
        None => {
            let mut pipeline = Pipeline::new(
                live.config(),
                store.reserved(),
                sink,
                metrics.clone(),
                events.clone(),
            )
            .with_commander(mqtt.0.clone())
            .with_selftest_window(u64::from(config.commissioning.selftest_window_secs) * 1000)
            .with_baseline_window(config.commissioning.baseline_hours)
            .with_live(live.subscribe());
            pipeline.mark_spooled(spooled);
            pipeline
                .start(crate::domain::time::now_ms(), &config_source)
                .await?;
            tokio::spawn(async move {
                pipeline.run(rx, commands_rx).await;
                sink_shutdown.cancel();
            })
        }
        Some(cluster) => {
            drop((rx, spooled));
            let changes = store
                .sync_rule_settings(
                    &config.rule_settings(),
                    &config_source,
                    crate::domain::time::now_ms(),
                )
                .await?;
            for c in &changes {
                tracing::info!(scope = %c.scope, old = ?c.old, new = ?c.new, "rule settings changed (audited)");
            }
            let partitions = crate::ingest::rabbitmq::PARTITIONS;
            let (deliveries_tx, deliveries) = mpsc::channel(10_000);
            let (release, releases) = mpsc::channel(16);
            let sites: Vec<String> = live.config().sites.iter().map(|s| s.id.clone()).collect();
            let settings = crate::ingest::partitions::Settings {
                url: cluster.amqp_url.clone(),
                replica: cluster.replica.clone(),
                prefetch: cluster.prefetch,
                partitions,
            };
            let consumers = tokio::spawn(crate::ingest::partitions::run(
                settings,
                sites,
                deliveries_tx,
                releases,
                shutdown.clone(),
            ));
            let parts = crate::replica::Parts {
                live: live.clone(),
                store: store.clone(),
                sink,
                metrics: metrics.clone(),
                events: events.clone(),
                commander: mqtt.0.clone(),
                replica: cluster.replica.clone(),
                amqp_user: cluster
                    .amqp_url
                    .parse::<lapin::uri::AMQPUri>()
                    .map(|u| u.authority.userinfo.username)
                    .unwrap_or_default(),
                partitions,
                selftest_window_ms: u64::from(config.commissioning.selftest_window_secs) * 1000,
                baseline_hours: config.commissioning.baseline_hours,
            };
            // Commands for sites another replica holds go to it.
            let (forward, forwards) = mpsc::channel(64);
            tokio::spawn(crate::replica::forward::run(
                cluster.amqp_url.clone(),
                cluster.replica.clone(),
                forwards,
                shutdown.clone(),
            ));
            tokio::spawn(async move {
                crate::replica::run(parts, deliveries, commands_rx, release, forward).await;
                let _ = consumers.await;
                sink_shutdown.cancel();
            })
        }
    };
    // Modbus devices feed the same channel as MQTT ingest. Their `boot` is
    // this process's start in seconds: it grows across gateway restarts.
    let boot = (crate::domain::time::now_ms() / 1000) as u32;
    let modbus = crate::ingest::modbus::start(&config, &tx, &metrics, &shutdown, boot);
    // The event stream: this gateway's events, and on a cluster the other
    // replicas' too.
    let stream = match &config.cluster {
        None => events.clone(),
        Some(cluster) => {
            let (stream, _) = broadcast::channel(1024);
            tokio::spawn(crate::replica::fanout::run(
                cluster.amqp_url.clone(),
                cluster.replica.clone(),
                events.clone(),
                stream.clone(),
                shutdown.clone(),
            ));
            stream
        }
    };
    // Alarm delivery; its first look at the standing alarms catches any
    // raised before it subscribed. GB/T 26875.3 northbound links
    // (消防远程监控中心); like the notifier, they follow committed events and
    // re-read the store. On a cluster both run once, on the leader, following
    // every replica's events (`replica::leader`).
    let gb26875_duty = crate::northbound::gb26875::duty::DutyDesk::new(store.clone());
    let (notify, northbound) = match &config.cluster {
        None => (
            crate::notify::start(
                config.clone(),
                store.clone(),
                events.subscribe(),
                shutdown.clone(),
            ),
            crate::northbound::gb26875::service::start(
                config.clone(),
                store.clone(),
                &events,
                &metrics.gb26875,
                gb26875_duty.clone(),
                shutdown.clone(),
            ),
        ),
        Some(_) => {
            tokio::spawn(crate::replica::leader::run(
                crate::replica::leader::Jobs {
                    config: config.clone(),
                    store: store.clone(),
                    metrics: metrics.clone(),
                    events: events.clone(),
                    stream: stream.clone(),
                    duty: gb26875_duty.clone(),
                },
                crate::replica::leader::EVERY,
                shutdown.clone(),
            ));
            (None, Vec::new())
        }
    };
    // The MQTT client subscribes to the nodes' topics behind an external
    // broker; behind the gate, and on a cluster (whose messages come from
    // the partitions), it only sends commands.
    let ingest = tokio::spawn(crate::ingest::mqtt::run(
        client_mqtt,
        config.mqtt.broker != BrokerMode::Embedded && config.cluster.is_none(),
        mqtt,
        tx,
        metrics.clone(),
        shutdown.clone(),
    ));

    let http_addr = http.local_addr().map_err(StartError::Http)?;
    let app = router(AppState {
        config: config.clone(),
        store: store.clone(),
        metrics: metrics.clone(),
        stream,
        events: events.clone(),
        commands,
        live: live.clone(),
    })
    // The duty desk's GB/T 26875.3 links and 查岗 (`northbound::gb26875::api`).
    .layer(axum::Extension(gb26875_duty.clone()));
    // Our own accept loop rather than `axum::serve`: connection caps (in
    // all and per address) and hyper's header-read timeout (`api::limits`).
    if let Some(https) = &https {
        // New certificate files (or SIGHUP) are taken for new connections.
        https.clone().watch(shutdown.clone());
        let _ = metrics.http_limits.https.set(https.clone());
    }
    let scheme = if https.is_some() { "https" } else { "http" };
    let http_task = tokio::spawn(crate::api::limits::serve_tls(
        http,
        app,
        crate::api::limits::Limits::from_config(&config.http),
        https,
        metrics.clone(),
        shutdown.clone(),
    ));
    tracing::info!(%http_addr, scheme, "HTTP API listening");
    // `/metrics` on a listener of its own (loopback, typically).
    let mut metrics_task = None;
    if let Some(listener) = metrics_listener {
        let app = crate::api::metrics_router(metrics.clone());
        let stop = shutdown.clone();
        metrics_task = Some(tokio::spawn(async move {
            let serve = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "metrics listener stopped");
            }
        }));
        tracing::info!(addr = ?metrics_addr, "/metrics listening on its own address");
    }
    // Expired sessions are deleted every 10 minutes (and at each login).
    let sessions_task = {
        let (store, stop) = (store.clone(), shutdown.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(600));
            loop {
                tokio::select! {
                    _ = every.tick() => {
                        if let Err(e) = store.prune_sessions(crate::domain::time::now_ms()).await {
                            tracing::warn!(error = %e, "expired sessions not pruned");
                        }
                    }
                    _ = stop.cancelled() => break,
                }
            }
        })
    };

    Ok(Running {
        http_addr,
        metrics_addr,
        mqtt_tls_addr,
        metrics_listener: metrics_task,
        metrics,
        store,
        events,
        live,
        shutdown,
        gate,
        live_task,
        ingest,
        modbus,
        notify,
        pipeline: pipeline_task,
        sink: sink_task,
        http: http_task,
        sessions: sessions_task,
        gb26875_duty,
        northbound,
    })
}

impl Running {
    /// Stops in order: ingest and Modbus polling (no new messages), pipeline
    /// (drains what it holds), sink (spool synced to disk, then as much
    /// delivered as a deadline allows; the rest waits in the spool), HTTP,
    /// database.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        let _ = self.ingest.await;
        for m in self.modbus {
            let _ = m.await;
        }
        let _ = self.pipeline.await;
        if let Some(n) = self.notify {
            let _ = tokio::time::timeout(Duration::from_secs(5), n).await;
        }
        for t in self.northbound {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        if let Some(s) = self.sink {
            let _ = tokio::time::timeout(Duration::from_secs(10), s).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.http).await;
        if let Some(m) = self.metrics_listener {
            let _ = tokio::time::timeout(Duration::from_secs(5), m).await;
        }
        if let Some(g) = self.gate {
            let _ = tokio::time::timeout(Duration::from_secs(5), g).await;
        }
        let _ = self.live_task.await;
        let _ = self.sessions.await;
        self.store.close().await;
        tracing::info!("gateway stopped");
    }

    /// A token that stops the gateway when cancelled (e.g. from a signal).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
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
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// `SIGHUP` means "reread the certificate files" (`systemctl reload`,
/// `kill -HUP`): each TLS listener's watcher does that. Without any TLS
/// listener the default action would end the process, so the gateway
/// always takes the signal itself and logs it.
fn sighup_never_stops(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::hangup()) {
            Ok(mut hup) => {
                tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            got = hup.recv() => {
                                if got.is_none() {
                                    return;
                                }
                                tracing::info!("SIGHUP: certificate files of the TLS listeners reread (nothing else is reloaded)");
                            }
                        }
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "cannot take SIGHUP; it would stop the gateway"),
        }
    }
    #[cfg(not(unix))]
    let _ = shutdown;
}
