//! The node's Prometheus metrics (OpenMetrics text) and the small HTTP
//! server that answers `GET /metrics`. docs/node.md lists every metric.
//!
//! The service task updates the metrics (plain atomics), the server only
//! reads them: nothing here feeds consensus, so wall-clock latencies are
//! fine.

use std::convert::Infallible;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets, linear_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::mempool::AdmitError;

/// The content type of `GET /metrics`.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The label of `symbiont_txs_rejected_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    /// `AdmitError::code`: a short stable snake_case name.
    pub reason: &'static str,
}

/// Every metric of the node, in one registry (prefix `symbiont`).
pub struct Metrics {
    registry: Registry,
    /// The last stored height.
    pub height: Gauge,
    /// The consensus round of the height being decided.
    pub round: Gauge,
    /// Peers connected now.
    pub peers: Gauge,
    /// Network events (gossip messages, sync requests) dropped because the
    /// node task was behind: its queue was full.
    pub p2p_dropped_events: Gauge,
    pub mempool_txs: Gauge,
    pub mempool_bytes: Gauge,
    /// Transactions admitted to the mempool (from clients and gossip).
    pub txs_admitted: Counter,
    /// Transactions refused, by `AdmitError::code`.
    pub txs_rejected: Family<RejectLabels, Counter>,
    /// Blocks stored.
    pub blocks_committed: Counter,
    /// Stored commits gossiped because a peer was behind.
    pub commits_gossiped: Counter,
    /// Seconds from starting a height to storing its block.
    pub block_commit_latency: Histogram,
    /// Rounds a height took: the decided round + 1.
    pub rounds_per_height: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut metrics = Metrics {
            registry: Registry::with_prefix("symbiont"),
            height: Gauge::default(),
            round: Gauge::default(),
            peers: Gauge::default(),
            p2p_dropped_events: Gauge::default(),
            mempool_txs: Gauge::default(),
            mempool_bytes: Gauge::default(),
            txs_admitted: Counter::default(),
            txs_rejected: Family::default(),
            blocks_committed: Counter::default(),
            commits_gossiped: Counter::default(),
            // 5 ms to about 41 s.
            block_commit_latency: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            // 1 to 10 rounds, then +Inf.
            rounds_per_height: Histogram::new(linear_buckets(1.0, 1.0, 10)),
        };
        let registry = &mut metrics.registry;
        registry.register("height", "The last stored height", metrics.height.clone());
        registry.register(
            "round",
            "The consensus round of the height being decided",
            metrics.round.clone(),
        );
        registry.register("peers", "Peers connected now", metrics.peers.clone());
        registry.register(
            "p2p_dropped_events",
            "Network events dropped because the node's queue was full (since start)",
            metrics.p2p_dropped_events.clone(),
        );
        registry.register(
            "mempool_txs",
            "Transactions waiting in the mempool",
            metrics.mempool_txs.clone(),
        );
        registry.register_with_unit(
            "mempool",
            "Bytes of the transactions waiting in the mempool",
            Unit::Bytes,
            metrics.mempool_bytes.clone(),
        );
        registry.register(
            "txs_admitted",
            "Transactions admitted to the mempool (clients and gossip)",
            metrics.txs_admitted.clone(),
        );
        registry.register(
            "txs_rejected",
            "Transactions refused by the mempool, by reason",
            metrics.txs_rejected.clone(),
        );
        registry.register(
            "blocks_committed",
            "Blocks stored",
            metrics.blocks_committed.clone(),
        );
        registry.register(
            "commits_gossiped",
            "Stored commits gossiped because a peer was behind (at most once a second per height)",
            metrics.commits_gossiped.clone(),
        );
        registry.register_with_unit(
            "block_commit_latency",
            "Time from starting a height to storing its block",
            Unit::Seconds,
            metrics.block_commit_latency.clone(),
        );
        registry.register(
            "rounds_per_height",
            "Rounds a height took to decide (the decided round + 1)",
            metrics.rounds_per_height.clone(),
        );
        metrics
    }

    /// A mempool admission's outcome.
    pub fn admitted<T>(&self, result: &Result<T, AdmitError>) {
        match result {
            Ok(_) => {
                self.txs_admitted.inc();
            }
            Err(error) => {
                self.txs_rejected
                    .get_or_create(&RejectLabels {
                        reason: error.code(),
                    })
                    .inc();
            }
        }
    }

    /// A block stored: its height, the round it was decided in, and the
    /// seconds since its height started.
    pub fn committed(&self, height: u64, round: u32, seconds: f64) {
        self.height.set(height as i64);
        self.blocks_committed.inc();
        self.block_commit_latency.observe(seconds);
        self.rounds_per_height.observe(f64::from(round) + 1.0);
    }

    /// OpenMetrics text, ending `# EOF`.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String does not fail");
        text
    }
}

/// Answers `GET /metrics` on `listener` (404 for any other path, 405 for
/// another method) until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors and the like: try again shortly.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let metrics = metrics.clone();
                async move { Ok::<_, Infallible>(respond(&request, &metrics)) }
            });
            // A client that goes away mid-request is its own business.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn respond(request: &Request<Incoming>, metrics: &Metrics) -> Response<String> {
    let (status, content_type, body) = match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => (StatusCode::OK, CONTENT_TYPE, metrics.encode()),
        (_, "/metrics") => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "GET only\n".to_string(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: try /metrics\n".to_string(),
        ),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use symbiont_contracts::hash::Hash;

    /// The line of `name` with these labels (no labels: the bare name).
    fn value(text: &str, series: &str) -> String {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .to_string()
    }

    #[test]
    fn encode_shows_every_metric_with_its_value() {
        let metrics = Metrics::new();
        let fresh = metrics.encode();
        assert!(fresh.ends_with("# EOF\n"), "{fresh}");
        assert_eq!(value(&fresh, "symbiont_height"), "0");
        assert_eq!(value(&fresh, "symbiont_txs_admitted_total"), "0");

        metrics.round.set(2);
        metrics.peers.set(3);
        metrics.mempool_txs.set(4);
        metrics.mempool_bytes.set(1234);
        metrics.admitted(&Ok::<_, AdmitError>(()));
        metrics.admitted(&Ok::<_, AdmitError>(()));
        let duplicate = Err::<(), _>(AdmitError::Duplicate(Hash::ZERO));
        metrics.admitted(&duplicate);
        metrics.admitted(&duplicate);
        metrics.admitted(&Err::<(), _>(AdmitError::Full { txs: 1, bytes: 2 }));
        metrics.committed(7, 0, 0.25);
        metrics.committed(8, 2, 1.5);

        let text = metrics.encode();
        assert_eq!(value(&text, "symbiont_height"), "8");
        assert_eq!(value(&text, "symbiont_round"), "2");
        assert_eq!(value(&text, "symbiont_peers"), "3");
        assert_eq!(value(&text, "symbiont_mempool_txs"), "4");
        assert_eq!(value(&text, "symbiont_mempool_bytes"), "1234");
        assert_eq!(value(&text, "symbiont_txs_admitted_total"), "2");
        assert_eq!(
            value(&text, "symbiont_txs_rejected_total{reason=\"duplicate\"}"),
            "2"
        );
        assert_eq!(
            value(
                &text,
                "symbiont_txs_rejected_total{reason=\"mempool_full\"}"
            ),
            "1"
        );
        assert_eq!(value(&text, "symbiont_blocks_committed_total"), "2");
        assert_eq!(
            value(&text, "symbiont_block_commit_latency_seconds_count"),
            "2"
        );
        assert_eq!(
            value(&text, "symbiont_block_commit_latency_seconds_sum"),
            "1.75"
        );
        // 0.25 s is above the 0.16 s bucket, in the 0.32 s one.
        assert_eq!(
            value(
                &text,
                "symbiont_block_commit_latency_seconds_bucket{le=\"0.16\"}"
            ),
            "0"
        );
        assert_eq!(
            value(
                &text,
                "symbiont_block_commit_latency_seconds_bucket{le=\"0.32\"}"
            ),
            "1"
        );
        assert_eq!(value(&text, "symbiont_rounds_per_height_count"), "2");
        assert_eq!(value(&text, "symbiont_rounds_per_height_sum"), "4.0");
        assert_eq!(
            value(&text, "symbiont_rounds_per_height_bucket{le=\"1.0\"}"),
            "1"
        );
        assert_eq!(
            value(&text, "symbiont_rounds_per_height_bucket{le=\"3.0\"}"),
            "2"
        );
        assert!(text.contains("# UNIT symbiont_block_commit_latency_seconds seconds"));
        assert!(text.contains("# TYPE symbiont_txs_rejected counter"));
    }
}
