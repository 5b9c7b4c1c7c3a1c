//! Prometheus metrics (issue 15), served as text on `metricsListen`, a listener of
//! its own so an operator exposes them to the scraper and not with the API.
//!
//! One registry per server (not the process-global one), so two servers in one
//! process (the tests) count apart. Request metrics are labelled by the matched
//! route, never the raw path: a bounded label set whatever clients send.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::state::SharedState;

/// The label of requests no route matched (404s, scanners).
pub const UNMATCHED: &str = "unmatched";

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    rate_limited: IntCounterVec,
    records_pushed: IntCounter,
    records_pulled: IntCounter,
    hash_queue: IntGauge,
    live_streams: IntGauge,
    connections: IntGauge,
    lookups_waiting: IntGauge,
    lookups_shared: IntCounter,
    wal_restarts: IntCounter,
}

impl Metrics {
    /// Fails only on an invalid or duplicate metric name, which these fixed ones
    /// are not (the server tests start one per server).
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new_custom(Some("guestpass".into()), None)?;
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time from request head to response head, by route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["route"],
        )?;
        let rate_limited = IntCounterVec::new(
            Opts::new(
                "rate_limited_total",
                "Requests refused with 429 by a rate limit or throttle, by route",
            ),
            &["route"],
        )?;
        let records_pushed = IntCounter::new(
            "records_pushed_total",
            "Record changes accepted by sync/push",
        )?;
        let records_pulled =
            IntCounter::new("records_pulled_total", "Record changes sent by sync/pull")?;
        let hash_queue = IntGauge::new(
            "password_hash_queue",
            "Password hashes waiting or running (passwordHashQueue is the cap)",
        )?;
        let live_streams = IntGauge::new("live_streams", "Open sync/events streams")?;
        let connections = IntGauge::new("http_connections", "Open HTTP connections")?;
        let lookups_waiting = IntGauge::new(
            "session_lookups_waiting",
            "Session lookups queued to share the next query (PostgreSQL)",
        )?;
        let lookups_shared = IntCounter::new(
            "session_lookups_shared_total",
            "Session lookups answered by a query shared with others (PostgreSQL)",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(rate_limited.clone()))?;
        registry.register(Box::new(records_pushed.clone()))?;
        registry.register(Box::new(records_pulled.clone()))?;
        registry.register(Box::new(hash_queue.clone()))?;
        registry.register(Box::new(live_streams.clone()))?;
        registry.register(Box::new(connections.clone()))?;
        registry.register(Box::new(lookups_waiting.clone()))?;
        let wal_restarts = IntCounter::new(
            "sqlite_wal_restarts_total",
            "Times the SQLite WAL was written from its start again, sign-ins paused (sqliteWalRestartKib)",
        )?;
        registry.register(Box::new(lookups_shared.clone()))?;
        registry.register(Box::new(wal_restarts.clone()))?;
        Ok(Self {
            registry,
            requests,
            latency,
            rate_limited,
            records_pushed,
            records_pulled,
            hash_queue,
            live_streams,
            connections,
            lookups_waiting,
            lookups_shared,
            wal_restarts,
        })
    }

    pub fn records_pushed(&self, n: u64) {
        self.records_pushed.inc_by(n);
    }

    pub fn records_pulled(&self, n: u64) {
        self.records_pulled.inc_by(n);
    }

    /// Held for as long as a connection is open.
    pub fn connection(&self) -> ConnectionGuard {
        self.connections.inc();
        ConnectionGuard(self.connections.clone())
    }

    fn observe(&self, route: &str, method: &str, status: u16, secs: f64) {
        self.requests
            .with_label_values(&[route, method, &status.to_string()])
            .inc();
        self.latency.with_label_values(&[route]).observe(secs);
        if status == 429 {
            self.rate_limited.with_label_values(&[route]).inc();
        }
    }

    /// The text exposition format, with the gauges read from `state` now.
    pub fn render(&self, state: &SharedState) -> String {
        self.hash_queue
            .set(i64::try_from(state.hash_queue.in_use()).unwrap_or(i64::MAX));
        self.live_streams
            .set(i64::try_from(state.live.subscribers()).unwrap_or(i64::MAX));
        let (waiting, shared) = state.db.lookup_stats();
        self.lookups_waiting
            .set(i64::try_from(waiting).unwrap_or(i64::MAX));
        catch_up(&self.lookups_shared, shared);
        catch_up(&self.wal_restarts, state.db.wal_restarts());
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "metrics could not be encoded");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// The store counts, and `counter` catches up with its `total` at each scrape.
fn catch_up(counter: &IntCounter, total: u64) {
    counter.inc_by(total.saturating_sub(counter.get()));
}

pub struct ConnectionGuard(IntGauge);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Counts and times every request, labelled by its matched route. A layer outside
/// the router sees no `MatchedPath` yet for nested routes, so this runs as a route
/// layer (matched requests) and [`count_unmatched`] covers the fallback.
pub async fn track(State(state): State<SharedState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED.to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let res = next.run(req).await;
    state.metrics.observe(
        &route,
        &method,
        res.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    res
}

/// For the router's fallbacks (no route, wrong method).
pub fn count_unmatched(state: &SharedState, method: &str, status: u16) {
    state.metrics.observe(UNMATCHED, method, status, 0.0);
}

/// `GET /metrics` on the metrics listener.
pub async fn serve_metrics(State(state): State<SharedState>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(&state),
    )
        .into_response()
}
