//! Building the router and running it: `launch` binds the configured address,
//! `launch_with_listener` takes a bound listener (tests bind port 0).
//!
//! Connections are served by hyper directly rather than `axum::serve`, which has
//! no header read timeout: without one a client that sends half a request head
//! (slowloris) holds its connection forever.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Router};
use guestpass_proto::{routes, ErrorCode};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::ServiceExt;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::crypto::{digest, new_token};
use crate::db::{Db, DbError};
use crate::error::Failure;
use crate::extract::{BodyLimit, ReadTimeout, BODY_LIMIT};
use crate::live::Live;
use crate::mail::{MailError, Mailer};
use crate::state::{AppState, SharedState};
use crate::writer::Writer;
use crate::{
    account_care, admin, auth, better_auth_compat, cleanup, email_verification, link_social, live,
    merge, ops, password_reset, records, social_nonce, social_sign_in, store, upgrade,
};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("database: {0}")]
    Database(#[from] DbError),
    #[error("email: {0}")]
    Mail(#[from] MailError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// A running server. Dropping it does not stop it; call [`ServerHandle::shutdown`].
pub struct ServerHandle {
    addr: SocketAddr,
    state: SharedState,
    shutdown: Option<oneshot::Sender<()>>,
    serve: JoinHandle<std::io::Result<()>>,
    cleanup: Option<JoinHandle<()>>,
    /// The periodic prune of old tombstones (record sync).
    records_prune: Option<JoinHandle<()>>,
    /// PostgreSQL: this instance's LISTEN for pushes on other instances.
    listener: Option<JoinHandle<()>>,
    /// `metricsListen`: where `GET /metrics` answers, and its task.
    metrics: Option<(SocketAddr, JoinHandle<()>)>,
}

impl ServerHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The metrics listener's address, when `metricsListen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(addr, _)| *addr)
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn database(&self) -> Db {
        self.state.db.clone()
    }

    /// Runs one cleanup pass now, exactly as the periodic task does.
    pub async fn run_cleanup(&self) -> Result<cleanup::CleanupReport, DbError> {
        match self.state.config.auth_methods.anonymous.max_age_secs() {
            Some(max_age) => {
                cleanup::run_once(&self.state.db, self.state.clock.as_ref(), max_age).await
            }
            None => Ok(cleanup::CleanupReport::default()),
        }
    }

    /// Runs one prune of old tombstones now, exactly as the periodic task does;
    /// returns the changes deleted.
    pub async fn prune_records(&self) -> Result<u64, DbError> {
        records_prune_once(&self.state).await
    }

    /// Open `sync/events` streams on this instance.
    pub fn live_subscribers(&self) -> usize {
        self.state.live.subscribers()
    }

    fn stop_tasks(&mut self) {
        // Open event streams would hold the graceful shutdown forever.
        self.state.live.close();
        for task in [
            self.cleanup.take(),
            self.records_prune.take(),
            self.listener.take(),
            self.metrics.take().map(|(_, task)| task),
        ]
        .into_iter()
        .flatten()
        {
            task.abort();
        }
    }

    /// Stops accepting, finishes in-flight requests (ending event streams),
    /// stops the periodic tasks.
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.stop_tasks();
        match (&mut self.serve).await {
            Ok(result) => Ok(result?),
            Err(_) => Ok(()),
        }
    }

    /// Waits until the server stops (it only stops on shutdown or an I/O error).
    pub async fn wait(mut self) -> Result<(), ServerError> {
        let result = (&mut self.serve).await;
        self.stop_tasks();
        match result {
            Ok(r) => Ok(r?),
            Err(_) => Ok(()),
        }
    }
}

/// Binds `config.listen` and serves.
pub async fn launch(config: Config) -> Result<ServerHandle, ServerError> {
    let addr = config.listen;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    launch_with_listener(config, listener).await
}

pub async fn launch_with_listener(
    config: Config,
    listener: TcpListener,
) -> Result<ServerHandle, ServerError> {
    launch_with_clock(config, listener, Arc::new(SystemClock)).await
}

/// As [`launch_with_listener`], with time from `clock` (tests move it by hand).
pub async fn launch_with_clock(
    config: Config,
    listener: TcpListener,
    clock: Arc<dyn Clock>,
) -> Result<ServerHandle, ServerError> {
    // Checked before the database is touched: a typo fails fast (the same rules as
    // `guestpass-server check-config`).
    config
        .validate(listener.local_addr()?)
        .map_err(|e| ServerError::Config(e.to_string()))?;
    let cors = cors_layer(&config.trusted_origins)?;
    let state = Arc::new(build_state(config, clock).await?);
    // Listening before the first request is served, so no push is missed.
    let pg_listener = state.db.records().listen(state.live.clone()).await?;
    if pg_listener.is_some() {
        state.live.listen_via_database();
    }
    let addr = listener.local_addr()?;
    let mut app = router(state.clone());
    if let Some(cors) = cors {
        app = app.layer(cors);
    }
    let (tx, rx) = oneshot::channel::<()>();
    let head_timeout = state.config.request_read_timeout();
    let metrics = match state.config.metrics_listen {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Bind { addr, source })?;
            let bound = listener.local_addr()?;
            tracing::info!(%bound, "metrics on http://{bound}/metrics");
            Some((bound, crate::ops::spawn_metrics(listener, state.clone())))
        }
        None => None,
    };
    let serve = tokio::spawn(serve(listener, app, head_timeout, rx, state.clone()));
    let anon = &state.config.auth_methods.anonymous;
    let cleanup = (state.config.cleanup_interval_secs > 0).then(|| {
        cleanup::spawn(
            state.db.clone(),
            state.clock.clone(),
            anon.max_age_secs(),
            Duration::from_secs(state.config.cleanup_interval_secs),
        )
    });
    let records_prune = (state.config.cleanup_interval_secs > 0
        && state.config.records.tombstone_retention_days > 0)
        .then(|| {
            spawn_records_prune(
                state.clone(),
                Duration::from_secs(state.config.cleanup_interval_secs),
            )
        });
    tracing::info!(
        %addr,
        database = state.db.kind(),
        anonymous = anon.enabled(),
        max_age_secs = ?anon.max_age_secs(),
        rate_limit_per_minute = state.config.rate_limit.anonymous_per_minute,
        admin_api = state.admin_key_digest.is_some(),
        "guestpass-server listening on http://{addr}"
    );
    Ok(ServerHandle {
        addr,
        state,
        shutdown: Some(tx),
        serve,
        cleanup,
        records_prune,
        listener: pg_listener,
        metrics,
    })
}

/// Deletes the logs of records deleted longer than `tombstoneRetentionDays` ago.
async fn records_prune_once(state: &AppState) -> Result<u64, DbError> {
    records::prune_tombstones(
        &state.db,
        state.clock.as_ref(),
        state.config.records.tombstone_retention_days,
    )
    .await
}

fn spawn_records_prune(state: SharedState, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match records_prune_once(&state).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(changes = n, "pruned the logs of old tombstones"),
                Err(e) => tracing::warn!(error = %e, "tombstone prune failed; retrying later"),
            }
        }
    })
}

/// Accepts until `stop` fires, then lets in-flight requests finish.
async fn serve(
    listener: TcpListener,
    app: Router,
    head_timeout: Duration,
    stop: oneshot::Receiver<()>,
    state: SharedState,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(head_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin or die.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let service =
            app.clone()
                .map_request(move |mut req: axum::http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    req
                });
        let conn = http.serve_connection(
            TokioIo::new(stream),
            hyper_util::service::TowerToHyperService::new(service),
        );
        let conn = graceful.watch(conn);
        let open = state.metrics.connection();
        tokio::spawn(async move {
            let _open = open;
            if let Err(e) = conn.await {
                // Timeouts and clients hanging up: routine, not worth more.
                tracing::debug!(error = %e, "connection ended");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// CORS for the configured browser origins only; `None` (no CORS headers at all,
/// browsers refuse cross-origin calls) when there are none.
pub(crate) fn cors_layer(origins: &[String]) -> Result<Option<CorsLayer>, ServerError> {
    if origins.is_empty() {
        return Ok(None);
    }
    let mut allowed = Vec::with_capacity(origins.len());
    for origin in origins {
        let parsed = url::Url::parse(origin).ok().filter(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.host().is_some()
                && u.path() == "/"
                && u.query().is_none()
                && u.fragment().is_none()
                && u.username().is_empty()
        });
        let shown = parsed.map(|u| u.origin().ascii_serialization());
        let value = shown
            .filter(|o| *o == origin.trim_end_matches('/'))
            .and_then(|o| HeaderValue::from_str(&o).ok())
            .ok_or_else(|| {
                ServerError::Config(format!(
                    "trustedOrigins: {origin:?} is not an origin like https://app.example.com"
                ))
            })?;
        allowed.push(value);
    }
    Ok(Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(allowed))
            .allow_methods([Method::GET, Method::POST])
            // Bearer tokens, not cookies: no credentials mode; and never the admin key.
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .expose_headers([HeaderName::from_static(routes::SET_AUTH_TOKEN)])
            .max_age(Duration::from_secs(600)),
    ))
}

/// Connects the database (running migrations) and resolves secrets.
pub async fn build_state(config: Config, clock: Arc<dyn Clock>) -> Result<AppState, ServerError> {
    let options = config.store_options();
    let db_timeout = options.timeout;
    let db = store::connect(config.database_url.expose(), options).await?;
    db.set_email_claim_lapse(config.email_claim_lapse_ms());
    let writer = Writer::spawn(db.clone(), db_timeout);
    let secret = match &config.secret {
        Some(s) => s.expose().as_bytes().to_vec(),
        None => {
            // Kept in the database so every instance on it agrees; never printed.
            let secret = db.secret_or_init(&new_token(), clock.now_ms()).await?;
            tracing::warn!(
                "no secret configured: using the one generated and stored in the database"
            );
            secret.into_bytes()
        }
    };
    let client_addr =
        crate::client_addr::ClientAddr::from_config(&config).map_err(ServerError::Config)?;
    let hash_queue = crate::hashing::HashQueue::new(config.password_hash_queue);
    let admin_key_digest = config.admin_api_key.as_ref().map(|k| digest(k.expose()));
    if admin_key_digest.is_none() {
        tracing::warn!(
            "no adminApiKey configured: the admin HTTP API is closed (the admin CLI still works)"
        );
    }
    let mailer = match &config.smtp_url {
        Some(url) => Some(Mailer::new(
            url.expose(),
            &config.email_from,
            &config.app_name,
        )?),
        None => None,
    };
    // A valid hash of a random password, checked when the email is unknown so that
    // a sign-in takes as long for a missing account as for a wrong password.
    let decoy_hash = crate::hashing::hash_password(new_token())
        .await
        .unwrap_or_default();
    Ok(AppState {
        config,
        db,
        writer,
        clock,
        secret,
        admin_key_digest,
        mailer,
        oidc: crate::oidc::OidcVerifier::new(),
        decoy_hash,
        live: Arc::new(Live::default()),
        client_addr,
        hash_queue,
        metrics: crate::metrics::Metrics::new()
            .map_err(|e| ServerError::Config(format!("metrics: {e}")))?,
    })
}

pub fn router(state: SharedState) -> Router {
    let api = Router::new()
        .route(routes::SIGN_IN_ANONYMOUS, post(auth::sign_in_anonymous))
        .route(routes::GET_SESSION, get(auth::get_session))
        .route(routes::UPGRADE, post(upgrade::upgrade))
        .route(routes::UPGRADE_SOCIAL, post(upgrade::upgrade_social))
        .route(
            routes::SIGN_IN_EMAIL,
            post(better_auth_compat::sign_in_email),
        )
        .route(
            routes::SIGN_UP_EMAIL,
            post(better_auth_compat::sign_up_email),
        )
        .route(routes::SIGN_IN_SOCIAL, post(social_sign_in::sign_in_social))
        .route(routes::LINK_SOCIAL, post(link_social::link_social))
        .route(routes::SOCIAL_NONCE, post(social_nonce::social_nonce))
        .route(routes::PROVIDERS, get(crate::providers::providers))
        .route(routes::MERGE, post(merge::merge))
        .route(
            routes::RECOVERY_KEY,
            post(crate::recovery::set_recovery_key),
        )
        .route(
            routes::SIGN_IN_RECOVERY,
            post(crate::recovery::sign_in_recovery),
        )
        // Account care (issue 13). The two pages a mailed link opens answer GET
        // (a page or `{valid}`, changing nothing) and POST (the change).
        .route(
            routes::VERIFY_EMAIL,
            get(email_verification::verify_email_page).post(email_verification::verify_email),
        )
        .route(
            routes::SEND_VERIFICATION_EMAIL,
            post(email_verification::send_verification_email),
        )
        .route(
            routes::REQUEST_PASSWORD_RESET,
            post(password_reset::request_password_reset),
        )
        .route(
            routes::RESET_PASSWORD,
            get(password_reset::reset_password_page).post(password_reset::reset_password),
        )
        .route(routes::CHANGE_PASSWORD, post(account_care::change_password))
        .route(routes::DELETE_USER, post(account_care::delete_user))
        .route(routes::EXPORT, get(account_care::export))
        .route(routes::SIGN_OUT, post(auth::sign_out))
        .route(
            routes::DELETE_ANONYMOUS_USER,
            post(auth::delete_anonymous_user),
        )
        .route(routes::ADMIN_LIST_USERS, get(admin::list_users))
        .route(routes::ADMIN_REMOVE_USER, post(admin::remove_user))
        .route(routes::ADMIN_AUDIT_LOG, get(admin::audit_log))
        .route(
            routes::SYNC_PUSH,
            // A push is larger than any other body: its own limit, this route only.
            post(records::push)
                .layer::<_, std::convert::Infallible>(DefaultBodyLimit::max(
                    records::PUSH_BODY_LIMIT,
                ))
                .layer::<_, std::convert::Infallible>(axum::Extension(BodyLimit(
                    records::PUSH_BODY_LIMIT,
                ))),
        )
        .route(routes::SYNC_PULL, get(records::pull))
        .route(routes::SYNC_EVENTS, get(live::events))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::track,
        ));
    Router::new()
        .route(ops::HEALTHZ, get(ops::healthz))
        .route(ops::READYZ, get(ops::readyz))
        .route(ops::HEALTH, get(ops::health))
        // Before `nest`: a route layer covers the routes added so far only.
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::track,
        ))
        .nest(routes::BASE, api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::Extension(ReadTimeout(
            state.config.request_read_timeout(),
        )))
        .layer(CatchPanicLayer::custom(panic_response))
        // Its events land in request_id's span (id, method, path), so no span here.
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|_: &axum::http::Request<_>| tracing::Span::none()),
        )
        .layer(middleware::from_fn(crate::request_id::assign))
        .with_state(state)
}

async fn not_found(State(state): State<SharedState>, method: Method) -> Failure {
    let failure = Failure::new(ErrorCode::NotFound);
    crate::metrics::count_unmatched(&state, method.as_str(), failure.status.as_u16());
    failure
}

async fn method_not_allowed(State(state): State<SharedState>, method: Method) -> Failure {
    let failure =
        Failure::new(ErrorCode::MethodNotAllowed).with_status(StatusCode::METHOD_NOT_ALLOWED);
    crate::metrics::count_unmatched(&state, method.as_str(), failure.status.as_u16());
    failure
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    Failure::internal().into_response()
}
