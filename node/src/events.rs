//! The events of a committed height, for the `Events` stream
//! (proto/symbiont/v1/stream.proto, docs/api.md "Streams").
//!
//! Derived data: [`derive`] is a pure function of the block, the results
//! of executing it and the state after it. The node computes a height's
//! events when it stores the block and writes them in the same storage
//! batch (`Storage::commit`, prefix `e`), so events of any past height are
//! read back, never recomputed. They are not part of any hash: two nodes
//! running the same build store the same events, but a later build may
//! derive more.
//!
//! Order within a height: first one event per piece of equivocation
//! evidence the block records (in block order), then for each transaction
//! in block order its `TxCommitted` or `TxFailed` event, followed, for an
//! applied transaction, by the event its kind produced (if any).

use serde::{Deserialize, Serialize};
use symbiont_contracts::codec::{self, CodecError};
use symbiont_contracts::exec::{self, AppError};
use symbiont_contracts::hash::Hash;
use symbiont_contracts::keys::PublicKey;
use symbiont_contracts::kinds::Account;
use symbiont_contracts::settlement::Statement;
use symbiont_contracts::state::{Contract, Key, KeyRecord, Pool, PoolPeriod, State};
use symbiont_contracts::tx::{SignedTx, TxKind};

use crate::block::{Block, block_evidence};

/// Every event of one height, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeightEvents {
    /// The block's time.
    pub time_ms: u64,
    /// In commit order: the index of an event is its place here.
    pub events: Vec<Event>,
}

impl HeightEvents {
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<HeightEvents, CodecError> {
        codec::decode(bytes)
    }
}

/// One event, with the firms it concerns (for the stream's firm filter;
/// empty: it concerns the whole network).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub firms: Vec<String>,
    pub kind: EventKind,
}

/// Which reading a `ReadingRecorded` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reading {
    Availability,
    Delivery,
    Check,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// A transaction of the block that was applied.
    TxCommitted(TxEvent),
    /// A transaction of the block that failed; `code` is its result code.
    TxFailed { tx: TxEvent, code: String },
    /// The second party countersigned: the contract is active.
    ContractSigned {
        contract: Hash,
        supplier: String,
        consumer: String,
    },
    /// A reading of a contract period was recorded.
    ReadingRecorded {
        contract: Hash,
        period: u32,
        reading: Reading,
        quantity: u64,
    },
    /// A contract period was settled.
    PeriodSettled {
        contract: Hash,
        period: u32,
        supplier: String,
        consumer: String,
        statement: Statement,
        adjustment: i64,
        net: i64,
        avoided_g: u64,
    },
    /// The payee acknowledged a payment.
    PaymentAcknowledged {
        payer: Account,
        payee: Account,
        amount: i64,
    },
    /// A pool period was split among the members.
    PoolSplit {
        pool: Hash,
        period: u32,
        parts: Vec<(String, i64)>,
    },
    /// Equivocation evidence recorded by the block.
    EvidenceRecorded {
        evidence: Hash,
        validator: PublicKey,
        height: u64,
        round: u32,
        /// 0 prevote, 1 precommit.
        step: u8,
    },
}

/// A transaction in a block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxEvent {
    pub tx_id: Hash,
    pub signer: PublicKey,
    /// Its place in the block.
    pub index: u32,
    /// The kind's name, snake case (`authorize_key`, `post_offer`, ...).
    pub kind: String,
}

/// The events of `block`, given the results of executing it (one per
/// transaction, in order, as `BlockOutcome::results`) and the state after
/// it.
pub fn derive(
    block: &Block,
    results: &[(Hash, Result<(), AppError>)],
    state: &State,
) -> HeightEvents {
    let mut events = Vec::new();
    for item in block_evidence(&block.evidence) {
        events.push(Event {
            firms: Vec::new(),
            kind: EventKind::EvidenceRecorded {
                evidence: item.hash,
                validator: item.validator,
                height: item.height,
                round: item.round,
                step: item.step,
            },
        });
    }
    for (index, tx) in block.txs.iter().enumerate() {
        let result = results.get(index).map(|(_, result)| result);
        let tx_event = TxEvent {
            tx_id: tx.id(),
            signer: tx.signer,
            index: index as u32,
            kind: kind_name(&tx.body.kind).to_string(),
        };
        let signer_firm: Vec<String> = state
            .get::<KeyRecord>(&Key::Key(tx.signer))
            .map(|record| vec![record.firm])
            .unwrap_or_default();
        match result {
            Some(Ok(())) => {
                events.push(Event {
                    firms: signer_firm,
                    kind: EventKind::TxCommitted(tx_event),
                });
                if let Some(event) = applied(tx, state) {
                    events.push(event);
                }
            }
            Some(Err(error)) => events.push(Event {
                firms: signer_firm,
                kind: EventKind::TxFailed {
                    tx: tx_event,
                    code: error.code().to_string(),
                },
            }),
            // Not executed: cannot happen for a committed block.
            None => {}
        }
    }
    HeightEvents {
        time_ms: block.header.time_ms,
        events,
    }
}

/// The event an applied transaction's kind produced, if any.
fn applied(tx: &SignedTx, state: &State) -> Option<Event> {
    let contract_parties = |contract: &Hash| -> Option<(String, String)> {
        let record: Contract = state.get(&Key::Contract(*contract))?;
        Some((record.terms.supplier, record.terms.consumer))
    };
    let parties_vec = |parties: &Option<(String, String)>| -> Vec<String> {
        parties
            .as_ref()
            .map(|(s, c)| sorted(vec![s.clone(), c.clone()]))
            .unwrap_or_default()
    };
    let reading = |contract: &Hash, period: u32, reading: Reading, quantity: u64| {
        let parties = contract_parties(contract);
        Some(Event {
            firms: parties_vec(&parties),
            kind: EventKind::ReadingRecorded {
                contract: *contract,
                period,
                reading,
                quantity,
            },
        })
    };
    match &tx.body.kind {
        TxKind::Countersign { contract } => {
            let (supplier, consumer) = contract_parties(contract)?;
            Some(Event {
                firms: sorted(vec![supplier.clone(), consumer.clone()]),
                kind: EventKind::ContractSigned {
                    contract: *contract,
                    supplier,
                    consumer,
                },
            })
        }
        TxKind::RecordAvailability {
            contract,
            period,
            quantity,
        } => reading(contract, *period, Reading::Availability, *quantity),
        TxKind::RecordDelivery {
            contract,
            period,
            quantity,
        } => reading(contract, *period, Reading::Delivery, *quantity),
        TxKind::RecordCheck {
            contract,
            period,
            quantity,
        } => reading(contract, *period, Reading::Check, *quantity),
        TxKind::SettlePeriod { contract, period } => {
            let (supplier, consumer) = contract_parties(contract)?;
            let settled = exec::period(state, contract, *period)?.settled?;
            Some(Event {
                firms: sorted(vec![supplier.clone(), consumer.clone()]),
                kind: EventKind::PeriodSettled {
                    contract: *contract,
                    period: *period,
                    supplier,
                    consumer,
                    statement: settled.statement,
                    adjustment: settled.adjustment,
                    net: settled.net,
                    avoided_g: settled.avoided_g,
                },
            })
        }
        TxKind::AcknowledgePayment {
            payer,
            payee,
            amount,
        } => {
            let mut firms = Vec::new();
            for account in [payer, payee] {
                match account {
                    Account::Firm(id) => firms.push(id.clone()),
                    Account::Pool(id) => firms.extend(pool_firms(state, id)),
                }
            }
            Some(Event {
                firms: sorted(firms),
                kind: EventKind::PaymentAcknowledged {
                    payer: payer.clone(),
                    payee: payee.clone(),
                    amount: *amount,
                },
            })
        }
        TxKind::SplitPool { pool, period } => {
            let record: PoolPeriod = state.get(&Key::PoolPeriod {
                pool: *pool,
                period: *period,
            })?;
            let parts = record.split?;
            Some(Event {
                firms: sorted(pool_firms(state, pool)),
                kind: EventKind::PoolSplit {
                    pool: *pool,
                    period: *period,
                    parts,
                },
            })
        }
        _ => None,
    }
}

/// A pool's operator and members.
fn pool_firms(state: &State, pool: &Hash) -> Vec<String> {
    match state.get::<Pool>(&Key::Pool(*pool)) {
        Some(pool) => std::iter::once(pool.operator)
            .chain(pool.keys.into_keys())
            .collect(),
        None => Vec::new(),
    }
}

fn sorted(mut firms: Vec<String>) -> Vec<String> {
    firms.sort();
    firms.dedup();
    firms
}

/// The snake-case name of a transaction kind.
pub fn kind_name(kind: &TxKind) -> &'static str {
    match kind {
        TxKind::AuthorizeKey { .. } => "authorize_key",
        TxKind::RevokeKey { .. } => "revoke_key",
        TxKind::Propose { .. } => "propose",
        TxKind::Vote { .. } => "vote",
        TxKind::RegisterKind { .. } => "register_kind",
        TxKind::GrantLicence { .. } => "grant_licence",
        TxKind::PostOffer { .. } => "post_offer",
        TxKind::PostRequest { .. } => "post_request",
        TxKind::Accept { .. } => "accept",
        TxKind::Withdraw { .. } => "withdraw",
        TxKind::ProposeContract { .. } => "propose_contract",
        TxKind::Countersign { .. } => "countersign",
        TxKind::Terminate { .. } => "terminate",
        TxKind::RecordAvailability { .. } => "record_availability",
        TxKind::RecordDelivery { .. } => "record_delivery",
        TxKind::RecordCheck { .. } => "record_check",
        TxKind::SettlePeriod { .. } => "settle_period",
        TxKind::AcknowledgePayment { .. } => "acknowledge_payment",
        TxKind::CreatePool { .. } => "create_pool",
        TxKind::PostPoolAmount { .. } => "post_pool_amount",
        TxKind::SplitPool { .. } => "split_pool",
        TxKind::OpenDispute { .. } => "open_dispute",
        TxKind::ResolveDispute { .. } => "resolve_dispute",
        TxKind::JoinPool { .. } => "join_pool",
        TxKind::ObjectPoolAmount { .. } => "object_pool_amount",
        TxKind::ResolvePoolObjection { .. } => "resolve_pool_objection",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::BlockDraft;
    use symbiont_contracts::exec::{BlockInfo, execute_block, genesis_state};
    use symbiont_contracts::genesis::Genesis;
    use symbiont_contracts::keys::Keypair;
    use symbiont_contracts::tx::{KeyRole, TxBody};

    const CHAIN: &str = "events-test";
    const T0: u64 = 1_700_000_000_000;

    fn key(i: u8) -> Keypair {
        Keypair::from_seed([i; 32])
    }

    fn state() -> State {
        let text = format!(
            r#"
chain_id = "{CHAIN}"
genesis_time_ms = {T0}
[currency]
code = "EUR"
minor_units = 2
[consensus]
timeout_propose_ms = 1000
timeout_prevote_ms = 500
timeout_precommit_ms = 500
timeout_delta_ms = 250
max_block_txs = 100
max_block_bytes = 1000000
max_clock_drift_ms = 1000
[[firms]]
id = "alpha"
name = "Alpha"
admin_key = "{}"
[[nodes]]
id = "n1"
firm = "alpha"
site = "Site"
key = "{}"
validator = true
power = 1
[[resource_kinds]]
id = "steam"
name = "Steam"
unit = "t"
emission_factor_g = 1000
"#,
            key(1).public(),
            key(10).public()
        );
        genesis_state(&Genesis::from_toml(&text).unwrap())
    }

    fn tx(signer: u8, nonce: u64, kind: TxKind) -> SignedTx {
        SignedTx::sign(
            TxBody {
                chain_id: CHAIN.into(),
                nonce,
                kind,
            },
            &key(signer),
        )
    }

    fn authorize(firm: &str, seed: u8) -> TxKind {
        TxKind::AuthorizeKey {
            firm: firm.into(),
            key: key(seed).public(),
            role: KeyRole::Meter,
        }
    }

    /// Executes `txs` as block 1 and derives its events.
    fn events_of(txs: Vec<SignedTx>) -> HeightEvents {
        let mut state = state();
        let info = BlockInfo {
            height: 1,
            time_ms: T0 + 1000,
        };
        let outcome = execute_block(&mut state, &info, &txs).unwrap();
        let block = BlockDraft {
            chain_id: CHAIN.into(),
            height: 1,
            time_ms: info.time_ms,
            previous_hash: Hash([0; 32]),
            proposer: key(10).public(),
            txs,
            evidence: vec![],
            last_commit: None,
        }
        .seal(outcome.app_hash);
        derive(&block, &outcome.results, &state)
    }

    #[test]
    fn applied_and_failed_transactions_in_block_order() {
        let txs = vec![
            tx(1, 1, authorize("alpha", 20)),
            // Another firm: wrong_firm, but the nonce is consumed.
            tx(1, 2, authorize("beta", 21)),
            // Nonce 2 again: bad_nonce, nothing written.
            tx(1, 2, authorize("alpha", 22)),
            // Not a member's key.
            tx(9, 1, authorize("alpha", 23)),
        ];
        let ids: Vec<Hash> = txs.iter().map(SignedTx::id).collect();
        let derived = events_of(txs);
        assert_eq!(derived.time_ms, T0 + 1000);
        let summary: Vec<(u32, Hash, Option<&str>, &Vec<String>)> = derived
            .events
            .iter()
            .map(|event| match &event.kind {
                EventKind::TxCommitted(tx) => (tx.index, tx.tx_id, None, &event.firms),
                EventKind::TxFailed { tx, code } => {
                    (tx.index, tx.tx_id, Some(code.as_str()), &event.firms)
                }
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        let alpha = vec!["alpha".to_string()];
        let none: Vec<String> = vec![];
        assert_eq!(
            summary,
            vec![
                (0, ids[0], None, &alpha),
                (1, ids[1], Some("wrong_firm"), &alpha),
                (2, ids[2], Some("bad_nonce"), &alpha),
                (3, ids[3], Some("unknown_signer"), &none),
            ]
        );
        for event in &derived.events {
            if let EventKind::TxCommitted(tx) | EventKind::TxFailed { tx, .. } = &event.kind {
                assert_eq!(tx.kind, "authorize_key");
            }
        }
    }

    #[test]
    fn an_applied_payment_acknowledgement_has_its_event() {
        // alpha acknowledges a payment from itself to itself: whatever the
        // rule says, a failure has no kind event and a success has one.
        let derived = events_of(vec![tx(
            1,
            1,
            TxKind::AcknowledgePayment {
                payer: Account::Firm("alpha".into()),
                payee: Account::Firm("alpha".into()),
                amount: 5,
            },
        )]);
        match &derived.events[..] {
            [
                Event {
                    kind: EventKind::TxFailed { .. },
                    ..
                },
            ] => {}
            [
                Event {
                    kind: EventKind::TxCommitted(_),
                    ..
                },
                Event {
                    kind: EventKind::PaymentAcknowledged { amount: 5, .. },
                    firms,
                },
            ] => assert_eq!(firms, &vec!["alpha".to_string()]),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn encoding_round_trips_and_is_deterministic() {
        let derived = events_of(vec![tx(1, 1, authorize("alpha", 20))]);
        let again = events_of(vec![tx(1, 1, authorize("alpha", 20))]);
        assert_eq!(derived.encode(), again.encode());
        assert_eq!(HeightEvents::decode(&derived.encode()).unwrap(), derived);
        assert!(HeightEvents::decode(&[0xff]).is_err());
    }
}
