//! The gRPC API (`symbiont.v1.Node`, proto/symbiont/v1/node.proto; the
//! state queries of `symbiont.v1.Query` in [`query`]; the
//! `symbiont.v1.Stream` streams in [`stream`]), the standard
//! `grpc.health.v1` service and server reflection. Each call is
//! answered by the node task through its `ServiceHandle`; this module only
//! translates between protobuf and the node's types, and maps every
//! refusal to a gRPC status whose message starts with a stable code (also
//! in the `symbiont-code` trailer).

use std::net::TcpListener;

use symbiont_contracts::hash::Hash;
use symbiont_contracts::tx::{SignedTx, TxError};
use symbiont_proto::v1 as pb;
use symbiont_proto::v1::node_server::{Node, NodeServer};
use tokio::sync::oneshot;
use tonic::{Code, Request, Response, Status};

use crate::mempool::AdmitError;

pub mod query;

use crate::service::{ServiceHandle, TxStatus};
use crate::storage::StorageReader;

pub mod stream;

use query::QueryApi;
use stream::StreamApi;
use symbiont_proto::v1::query_server::QueryServer;
use symbiont_proto::v1::stream_server::StreamServer;

/// Requests above this are refused before decoding (a transaction is at
/// most 64 KiB).
pub const MAX_REQUEST_BYTES: usize = 1 << 20;

/// A running gRPC server.
pub struct RpcServer {
    stop: oneshot::Sender<()>,
    /// Tells the stream producers to end; closed once they all have.
    streams_stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RpcServer {
    /// Stops accepting calls, ends open streams (`UNAVAILABLE`) and waits
    /// (briefly) for open calls and the stream producers, which hold
    /// storage readers.
    pub async fn stop(self) {
        let wait = std::time::Duration::from_secs(2);
        let _ = self.streams_stop.send(true);
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(wait, self.task).await;
        let _ = tokio::time::timeout(wait, self.streams_stop.closed()).await;
    }
}

/// Serves the API on `listener` (already bound, so an address in use was
/// refused before the node started) until stopped; the streams read
/// storage through `reader`; `genesis` is the canonical encoding of the
/// node's genesis (`GetGenesis`).
pub fn spawn(
    listener: TcpListener,
    node: ServiceHandle,
    reader: StorageReader,
    genesis: Vec<u8>,
) -> Result<RpcServer, String> {
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("listener: {e}"))?;
    let listener =
        tokio::net::TcpListener::from_std(listener).map_err(|e| format!("listener: {e}"))?;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(symbiont_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| format!("reflection: {e}"))?;
    let (health_reporter, health) = tonic_health::server::health_reporter();
    let (streams_stop, streams_stopped) = tokio::sync::watch::channel(false);
    let streams = StreamServer::new(StreamApi {
        reader,
        height: node.height.clone(),
        stop: streams_stopped,
        slow_after: stream::SLOW_CLIENT_TIMEOUT,
    })
    .max_decoding_message_size(MAX_REQUEST_BYTES);
    let queries = QueryServer::new(QueryApi { node: node.clone() })
        .max_decoding_message_size(MAX_REQUEST_BYTES);
    let api = NodeServer::new(Api { node, genesis }).max_decoding_message_size(MAX_REQUEST_BYTES);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        health_reporter.set_serving::<NodeServer<Api>>().await;
        health_reporter
            .set_serving::<StreamServer<StreamApi>>()
            .await;
        health_reporter.set_serving::<QueryServer<QueryApi>>().await;
        // Without TCP_NODELAY a small response waits for the client's
        // delayed ACK: 40 ms a call.
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let result = tonic::transport::Server::builder()
            .add_service(health)
            .add_service(reflection)
            .add_service(api)
            .add_service(streams)
            .add_service(queries)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            })
            .await;
        if let Err(error) = result {
            eprintln!("gRPC server stopped: {error}");
        }
    });
    Ok(RpcServer {
        stop,
        streams_stop,
        task,
    })
}

struct Api {
    node: ServiceHandle,
    /// The canonical genesis bytes.
    genesis: Vec<u8>,
}

pub(crate) fn unavailable() -> Status {
    Status::unavailable("the node is shutting down")
}

/// A refusal: the code first in the message and in the trailer.
pub(crate) fn refusal(code: Code, symbiont_code: &str, message: impl std::fmt::Display) -> Status {
    let mut metadata = tonic::metadata::MetadataMap::new();
    if let Ok(value) = symbiont_code.parse() {
        metadata.insert("symbiont-code", value);
    }
    Status::with_metadata(code, format!("{symbiont_code}: {message}"), metadata)
}

/// The gRPC code for each reason a transaction is refused.
pub fn admit_error_status(error: &AdmitError) -> Status {
    let code = match error {
        AdmitError::Tx(TxError::BadNonce { .. } | TxError::NonceExhausted { .. }) => {
            Code::FailedPrecondition
        }
        AdmitError::Tx(_) => Code::InvalidArgument,
        AdmitError::Duplicate(_) | AdmitError::AlreadyCommitted(_) => Code::AlreadyExists,
        AdmitError::UnknownSigner(_) => Code::PermissionDenied,
        AdmitError::NonceTooLow { .. }
        | AdmitError::NonceTooFarAhead { .. }
        | AdmitError::NonceTaken { .. } => Code::FailedPrecondition,
        AdmitError::SignerFull { .. } | AdmitError::Full { .. } => Code::ResourceExhausted,
    };
    refusal(code, error.code(), error)
}

/// A ledger account (a firm or a pool) as the API gives it.
pub(crate) fn account_pb(account: &symbiont_contracts::kinds::Account) -> pb::Account {
    use symbiont_contracts::kinds::Account;
    let holder = match account {
        Account::Firm(id) => pb::account::Account::Firm(id.clone()),
        Account::Pool(id) => pb::account::Account::Pool(id.0.to_vec()),
    };
    pb::Account {
        account: Some(holder),
    }
}

pub(crate) fn hash_field(bytes: &[u8], what: &str) -> Result<Hash, Status> {
    let array: [u8; 32] = bytes.try_into().map_err(|_| {
        refusal(
            Code::InvalidArgument,
            "malformed",
            format!("{what} must be 32 bytes, got {}", bytes.len()),
        )
    })?;
    Ok(Hash(array))
}

#[tonic::async_trait]
impl Node for Api {
    async fn submit_tx(
        &self,
        request: Request<pb::SubmitTxRequest>,
    ) -> Result<Response<pb::SubmitTxResponse>, Status> {
        let bytes = request.into_inner().tx;
        let tx =
            SignedTx::from_bytes(&bytes).map_err(|e| admit_error_status(&AdmitError::Tx(e)))?;
        match self.node.submit(tx).await {
            None => Err(unavailable()),
            Some(Err(error)) => Err(admit_error_status(&error)),
            Some(Ok(id)) => Ok(Response::new(pb::SubmitTxResponse {
                tx_id: id.0.to_vec(),
            })),
        }
    }

    async fn get_tx(
        &self,
        request: Request<pb::GetTxRequest>,
    ) -> Result<Response<pb::GetTxResponse>, Status> {
        let id = hash_field(&request.into_inner().tx_id, "tx_id")?;
        let status = self.node.tx(id).await.ok_or_else(unavailable)?;
        let mut response = pb::GetTxResponse::default();
        match status {
            TxStatus::Unknown => response.set_state(pb::TxState::Unknown),
            TxStatus::Pending => response.set_state(pb::TxState::Pending),
            TxStatus::Committed(receipt) => {
                response.set_state(pb::TxState::Committed);
                response.height = receipt.height;
                response.index = receipt.index;
                response.error = receipt.error.unwrap_or_default();
            }
        }
        Ok(Response::new(response))
    }

    async fn get_genesis(
        &self,
        _request: Request<pb::GetGenesisRequest>,
    ) -> Result<Response<pb::GetGenesisResponse>, Status> {
        Ok(Response::new(pb::GetGenesisResponse {
            genesis_hash: blake3::hash(&self.genesis).as_bytes().to_vec(),
            genesis: self.genesis.clone(),
        }))
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let s = self.node.status().await.ok_or_else(unavailable)?;
        Ok(Response::new(pb::StatusResponse {
            chain_id: s.chain_id,
            genesis_hash: s.genesis_hash.0.to_vec(),
            node_key: s.node_key.0.to_vec(),
            is_validator: s.is_validator,
            height: s.height,
            block_hash: s.block_hash.0.to_vec(),
            app_hash: s.app_hash.0.to_vec(),
            last_block_time_ms: s.last_block_time_ms,
            ms_since_last_commit: s.ms_since_last_commit,
            consensus_height: s.consensus_height,
            round: s.round,
            step: s.step.to_string(),
            peers: s.peers as u32,
            mempool_txs: s.mempool_txs as u64,
            mempool_bytes: s.mempool_bytes as u64,
            validators: s
                .validators
                .into_iter()
                .map(|v| pb::ValidatorStatus {
                    key: v.key.0.to_vec(),
                    power: v.power,
                    prevoted: v.prevoted,
                    precommitted: v.precommitted,
                    highest_round: v.highest_round,
                })
                .collect(),
            stall_reason: s.stall_reason.unwrap_or_default(),
        }))
    }
}
