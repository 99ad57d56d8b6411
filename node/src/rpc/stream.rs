//! The `symbiont.v1.Stream` service (proto/symbiont/v1/stream.proto):
//! committed blocks and the events of each height, from any height on.
//!
//! Each call spawns a producer task that reads storage through a
//! [`StorageReader`] (never through the node task), height by height from
//! the requested one up to the tip, then follows the node's `height` watch
//! channel. A height's messages are all queued before the next height's,
//! so a client that resumes from the last height it saw + 1 misses nothing
//! and sees nothing twice.
//!
//! Bounds: each stream has a channel of [`STREAM_BUFFER`] messages (plus
//! one slot kept free for the final status). A producer that cannot queue a
//! message for [`SLOW_CLIENT_TIMEOUT`] (the client does not read, and
//! HTTP/2 flow control and the channel are full) ends the stream with
//! `RESOURCE_EXHAUSTED`. A producer stops when the client goes away, when
//! the node stops (the height channel closes) and when the server is told
//! to stop (the `stop` watch): then the stream ends with `UNAVAILABLE`.

use std::time::Duration;

use symbiont_contracts::codec;
use symbiont_proto::v1 as pb;
use symbiont_proto::v1::stream_server::Stream;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::block::{Block, Certificate};
use crate::events::{Event, EventKind, HeightEvents, Reading, TxEvent};
use crate::storage::StorageReader;

/// Messages queued per stream.
pub const STREAM_BUFFER: usize = 64;
/// A client that takes none of its messages for this long is cut off.
pub const SLOW_CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

pub type Sink<T> = mpsc::Sender<Result<T, Status>>;

/// The service: a storage reader, the node's height, and the stop signal.
pub struct StreamApi {
    pub reader: StorageReader,
    pub height: watch::Receiver<u64>,
    pub stop: watch::Receiver<bool>,
    pub slow_after: Duration,
}

/// A channel for one stream: [`STREAM_BUFFER`] messages and the slot kept
/// for the final status.
pub fn channel<T>() -> (Sink<T>, mpsc::Receiver<Result<T, Status>>) {
    mpsc::channel(STREAM_BUFFER + 1)
}

fn storage_status(error: crate::storage::StorageError) -> Status {
    Status::internal(format!("storage: {error}"))
}

fn stopping() -> Status {
    Status::unavailable("the node is shutting down")
}

/// Why a producer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The client went away.
    ClientGone,
    /// The client did not read: it got `RESOURCE_EXHAUSTED`.
    SlowClient,
    /// The node or the server stops: the client got `UNAVAILABLE`.
    Stopped,
    /// Loading a height failed: the client got that status.
    Failed,
}

/// Queues one message, waiting at most `slow_after` for room. Keeps one
/// slot of the channel free, so the final status always fits.
async fn send<T>(sink: &Sink<T>, item: T, slow_after: Duration) -> Result<(), Ended> {
    match tokio::time::timeout(slow_after, sink.reserve_many(2)).await {
        Ok(Ok(mut permits)) => {
            if let Some(permit) = permits.next() {
                permit.send(Ok(item));
            }
            Ok(())
        }
        Ok(Err(_)) => Err(Ended::ClientGone),
        Err(_) => {
            let _ = sink.try_send(Err(Status::resource_exhausted(format!(
                "slow_client: the client read nothing for {} s; resume from the last height \
                 received in full + 1",
                slow_after.as_secs_f64()
            ))));
            Err(Ended::SlowClient)
        }
    }
}

/// The producer of a stream: `load(h)` gives the messages of height `h`
/// (it is called only for stored heights), sent in order from `from` (0
/// means 1) to the tip, then for each new height as `height` announces it.
pub async fn follow<T, L>(
    from: u64,
    mut height: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
    sink: Sink<T>,
    slow_after: Duration,
    mut load: L,
) -> Ended
where
    L: FnMut(u64) -> Result<Vec<T>, Status>,
{
    let mut next = from.max(1);
    loop {
        if *stop.borrow_and_update() {
            let _ = sink.try_send(Err(stopping()));
            return Ended::Stopped;
        }
        let tip = *height.borrow_and_update();
        while next <= tip {
            let items = match load(next) {
                Ok(items) => items,
                Err(status) => {
                    let _ = sink.try_send(Err(status));
                    return Ended::Failed;
                }
            };
            for item in items {
                let sent = tokio::select! {
                    sent = send(&sink, item, slow_after) => sent,
                    _ = stop.wait_for(|stopping| *stopping) => Err(Ended::Stopped),
                };
                if let Err(ended) = sent {
                    if ended == Ended::Stopped {
                        let _ = sink.try_send(Err(stopping()));
                    }
                    return ended;
                }
            }
            next += 1;
        }
        tokio::select! {
            changed = height.changed() => {
                if changed.is_err() {
                    let _ = sink.try_send(Err(stopping()));
                    return Ended::Stopped;
                }
            }
            changed = stop.changed() => {
                // The server is gone: stop too.
                if changed.is_err() {
                    let _ = sink.try_send(Err(stopping()));
                    return Ended::Stopped;
                }
            }
            _ = sink.closed() => return Ended::ClientGone,
        }
    }
}

/// The `StreamedBlock` of a stored height.
pub fn load_block(reader: &StorageReader, height: u64) -> Result<Vec<pb::StreamedBlock>, Status> {
    let (Some(block_bytes), Some(certificate_bytes)) = (
        reader.block(height).map_err(storage_status)?,
        reader.certificate(height).map_err(storage_status)?,
    ) else {
        return Err(Status::internal(format!(
            "storage: block {height} is announced but not stored"
        )));
    };
    let block: Block = codec::decode(&block_bytes)
        .map_err(|e| Status::internal(format!("storage: block {height}: {e}")))?;
    let certificate: Certificate = codec::decode(&certificate_bytes)
        .map_err(|e| Status::internal(format!("storage: certificate {height}: {e}")))?;
    let results = match reader.events(height).map_err(storage_status)? {
        Some(bytes) => Some(
            HeightEvents::decode(&bytes)
                .map_err(|e| Status::internal(format!("storage: events {height}: {e}")))?,
        ),
        None => None,
    }
    .map(|events| tx_results(&events));
    Ok(vec![pb::StreamedBlock {
        results_missing: results.is_none() && !block.txs.is_empty(),
        results: results.unwrap_or_default(),
        height,
        block_hash: block.hash().0.to_vec(),
        time_ms: block.header.time_ms,
        proposer: block.header.proposer.0.to_vec(),
        tx_count: block.txs.len() as u32,
        app_hash: block.header.app_hash.0.to_vec(),
        round: certificate.round,
        block: block_bytes,
        certificate: certificate_bytes,
    }])
}

/// The stored result of each transaction of a height, in block order: ""
/// when it was applied, else its result code.
fn tx_results(events: &HeightEvents) -> Vec<String> {
    events
        .events
        .iter()
        .filter_map(|event| match &event.kind {
            EventKind::TxCommitted(_) => Some(String::new()),
            EventKind::TxFailed { code, .. } => Some(code.clone()),
            _ => None,
        })
        .collect()
}

/// The `LedgerEvent`s of a stored height, those concerning `firm` only
/// when one is given.
pub fn load_events(
    reader: &StorageReader,
    height: u64,
    firm: Option<&str>,
) -> Result<Vec<pb::LedgerEvent>, Status> {
    let Some(bytes) = reader.events(height).map_err(storage_status)? else {
        return Err(Status::failed_precondition(format!(
            "events_missing: the events of height {height} were not recorded (the data dir was \
             written by a build before events were stored): resume from a later height"
        )));
    };
    let stored = HeightEvents::decode(&bytes)
        .map_err(|e| Status::internal(format!("storage: events {height}: {e}")))?;
    Ok(stored
        .events
        .into_iter()
        .enumerate()
        .filter(|(_, event)| concerns(event, firm))
        .map(|(index, event)| ledger_event(height, index as u32, stored.time_ms, event))
        .collect())
}

/// Whether `event` passes the firm filter: it names the firm, or it
/// concerns the whole network.
fn concerns(event: &Event, firm: Option<&str>) -> bool {
    match firm {
        None => true,
        Some(firm) => event.firms.is_empty() || event.firms.iter().any(|f| f == firm),
    }
}

fn tx_message(tx: TxEvent, code: String) -> pb::EventTx {
    pb::EventTx {
        tx_id: tx.tx_id.0.to_vec(),
        signer: tx.signer.0.to_vec(),
        index: tx.index,
        kind: tx.kind,
        code,
    }
}

/// The protobuf message of a stored event.
pub fn ledger_event(height: u64, index: u32, time_ms: u64, event: Event) -> pb::LedgerEvent {
    use pb::ledger_event::Event as E;
    let message = match event.kind {
        EventKind::TxCommitted(tx) => E::TxCommitted(tx_message(tx, String::new())),
        EventKind::TxFailed { tx, code } => E::TxFailed(tx_message(tx, code)),
        EventKind::ContractSigned {
            contract,
            supplier,
            consumer,
        } => E::ContractSigned(pb::ContractSigned {
            contract: contract.0.to_vec(),
            supplier,
            consumer,
        }),
        EventKind::ReadingRecorded {
            contract,
            period,
            reading,
            quantity,
        } => E::ReadingRecorded(pb::ReadingRecorded {
            contract: contract.0.to_vec(),
            period,
            reading: match reading {
                Reading::Availability => pb::ReadingKind::Availability,
                Reading::Delivery => pb::ReadingKind::Delivery,
                Reading::Check => pb::ReadingKind::Check,
            } as i32,
            quantity,
        }),
        EventKind::PeriodSettled {
            contract,
            period,
            supplier,
            consumer,
            statement,
            adjustment,
            net,
            avoided_g,
        } => E::PeriodSettled(pb::PeriodSettled {
            contract: contract.0.to_vec(),
            period,
            supplier,
            consumer,
            statement: Some(pb::SettlementStatement {
                availability: statement.availability,
                delivered: statement.delivered,
                check: statement.check,
                lower: statement.lower,
                upper: statement.upper,
                base_units: statement.base_units,
                excess_units: statement.excess_units,
                energy_charge: statement.energy_charge,
                supply_shortfall_units: statement.supply_shortfall_units,
                supply_penalty: statement.supply_penalty,
                offtake_shortfall_units: statement.offtake_shortfall_units,
                offtake_penalty: statement.offtake_penalty,
                net: statement.net,
                flags: statement
                    .flags
                    .iter()
                    .map(|flag| {
                        use symbiont_contracts::settlement::Flag;
                        match flag {
                            Flag::MeterDiscrepancy => "meter_discrepancy",
                            Flag::CheckMeterMismatch => "check_meter_mismatch",
                        }
                        .to_string()
                    })
                    .collect(),
            }),
            adjustment,
            net,
            avoided_g,
        }),
        EventKind::PaymentAcknowledged {
            payer,
            payee,
            amount,
        } => E::PaymentAcknowledged(pb::PaymentAcknowledged {
            payer: Some(super::account_pb(&payer)),
            payee: Some(super::account_pb(&payee)),
            amount,
        }),
        EventKind::PoolSplit {
            pool,
            period,
            parts,
        } => E::PoolSplit(pb::PoolSplit {
            pool: pool.0.to_vec(),
            period,
            parts: parts
                .into_iter()
                .map(|(firm, amount)| pb::PoolPart { firm, amount })
                .collect(),
        }),
        EventKind::EvidenceRecorded {
            evidence,
            validator,
            height,
            round,
            step,
        } => E::EvidenceRecorded(pb::EvidenceRecorded {
            evidence: evidence.0.to_vec(),
            validator: validator.0.to_vec(),
            height,
            round,
            step: u32::from(step),
        }),
    };
    pb::LedgerEvent {
        height,
        index,
        time_ms,
        firms: event.firms,
        event: Some(message),
    }
}

#[tonic::async_trait]
impl Stream for StreamApi {
    type BlocksStream = ReceiverStream<Result<pb::StreamedBlock, Status>>;
    type EventsStream = ReceiverStream<Result<pb::LedgerEvent, Status>>;

    async fn blocks(
        &self,
        request: Request<pb::StreamBlocksRequest>,
    ) -> Result<Response<Self::BlocksStream>, Status> {
        let from = request.into_inner().from_height;
        let (sink, source) = channel();
        let reader = self.reader.clone();
        tokio::spawn(follow(
            from,
            self.height.clone(),
            self.stop.clone(),
            sink,
            self.slow_after,
            move |height| load_block(&reader, height),
        ));
        Ok(Response::new(ReceiverStream::new(source)))
    }

    async fn events(
        &self,
        request: Request<pb::StreamEventsRequest>,
    ) -> Result<Response<Self::EventsStream>, Status> {
        let request = request.into_inner();
        let (sink, source) = channel();
        let reader = self.reader.clone();
        let firm = request.firm;
        tokio::spawn(follow(
            request.from_height,
            self.height.clone(),
            self.stop.clone(),
            sink,
            self.slow_after,
            move |height| load_events(&reader, height, firm.as_deref()),
        ));
        Ok(Response::new(ReceiverStream::new(source)))
    }
}
