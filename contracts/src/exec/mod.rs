//! Block execution: the meaning of every transaction kind.
//!
//! [`genesis_state`] builds the state of height 0 from a genesis;
//! [`execute_block`] applies a block's transactions in order. Each
//! transaction is checked (strict signature, known signer, nonce); one that
//! fails these checks writes nothing and is reported in the block's
//! results. One that passes them consumes its nonce and leaves a receipt;
//! if its kind then fails, the receipt holds the error code and nothing
//! else changes (the consumed nonce means the failed transaction can never
//! be replayed into a later block where it would succeed). The block's
//! writes, in canonical key order, go into the app hash:
//! blake3(previous app hash, writes).
//!
//! Times are block times in milliseconds; no clock is read here.
//!
//! This file holds the block loop, the dispatcher from [`TxKind`] to the
//! rule that gives it its meaning, who may act, and the small checks the
//! domains share. The rules themselves live by domain:
//!
//! - `membership`: keys, governance proposals and votes, the registry of
//!   resource kinds and licences
//! - `market`: offers, requests, acceptance, withdrawal
//! - `contracts`: contracts, metering and settlement of periods
//! - `ledger`: balances, obligations and payment acknowledgements
//! - `pools`: pools, their members, postings, objections and splits
//! - `disputes`: disputes on contract periods
//! - `error`: [`AppError`] and its stable codes

mod contracts;
mod disputes;
mod error;
mod ledger;
mod market;
mod membership;
pub use membership::CONSENSUS_RULE;
mod pools;

use crate::genesis::{ConsensusParams, Firm, Genesis, Node, ResourceKind};
use crate::hash::Hash;
use crate::keys::PublicKey;
use crate::kinds::Account;
use crate::numbers::Overflow;
use crate::state::{
    self, AvoidedAccount, EvidenceRecord, Key, KeyRecord, Meta, PeriodRecord, Receipt, Role, Side,
    State, WriteSet,
};
use crate::tx::{SignedTx, TxError, TxKind};

use contracts::Reading;
pub use error::AppError;
use error::AppResult;
use membership::{nodes, put_firm, register_kind};

/// Longest free text (names, delivery points, reasons), in bytes.
pub const MAX_TEXT_BYTES: usize = 256;
/// Most quality fields on a listing or contract.
pub const MAX_QUALITY_FIELDS: usize = 16;
/// Most periods in one contract.
pub const MAX_PERIODS: u32 = 100_000;

/// The block being executed, as consensus decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockInfo {
    pub height: u64,
    pub time_ms: u64,
}

/// The result of executing a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockOutcome {
    /// One per transaction, in order: its id and its result.
    pub results: Vec<(Hash, Result<(), AppError>)>,
    /// The block's state writes in canonical key order.
    pub writes: WriteSet,
    pub app_hash: Hash,
}

/// A block that cannot be executed at all: a bug or fault in the host, not
/// a transaction's fault. Nothing is changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error("block height {got}, expected {expected}")]
    WrongHeight { expected: u64, got: u64 },
    #[error("block time {got} ms is not after the previous block's {previous} ms")]
    TimeNotAfter { previous: u64, got: u64 },
    #[error("evidence {0} is recorded already (or twice in the block)")]
    EvidenceAlreadyRecorded(Hash),
}

/// Consensus parameters and currency, as the state holds them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Params {
    pub currency: crate::genesis::Currency,
    pub consensus: ConsensusParams,
}

/// The state at height 0, with its app hash =
/// blake3(genesis hash, the genesis writes).
pub fn genesis_state(genesis: &Genesis) -> State {
    let mut state = State::default();
    state.begin();
    state.put(
        &Key::Meta,
        &Meta {
            chain_id: genesis.chain_id.clone(),
            genesis_hash: genesis.hash(),
            height: 0,
            time_ms: genesis.genesis_time_ms,
        },
    );
    state.put(
        &Key::Params,
        &Params {
            currency: genesis.currency.clone(),
            consensus: genesis.consensus.clone(),
        },
    );
    for firm in &genesis.firms {
        put_firm(&mut state, firm);
    }
    for node in &genesis.nodes {
        state.put(&Key::Node(node.id.clone()), node);
    }
    for kind in &genesis.resource_kinds {
        state.put(&Key::Kind(kind.id.clone()), kind);
    }
    state.commit();
    let writes = state.take_writes();
    state.set_app_hash(state::app_hash(&genesis.hash(), &writes));
    state
}

pub fn meta(state: &State) -> Meta {
    state
        .get(&Key::Meta)
        .expect("the state holds its meta record from genesis on")
}

/// Apply a block's transactions in order, checking each one's envelope and
/// signature (`SignedTx::verify`) on the way.
pub fn execute_block(
    state: &mut State,
    block: &BlockInfo,
    txs: &[SignedTx],
) -> Result<BlockOutcome, BlockError> {
    let chain_id = meta(state).chain_id;
    let checks: Vec<Result<(), TxError>> = txs.iter().map(|tx| tx.verify(&chain_id)).collect();
    execute_block_checked(state, block, txs, &checks, &[])
}

/// A piece of equivocation evidence a block records: the hash of its
/// canonical encoding (the consensus layer's `DuplicateVoteEvidence`,
/// verified by it) and what it names (`recorded_at` is set here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockEvidence {
    pub hash: Hash,
    pub validator: PublicKey,
    pub height: u64,
    pub round: u32,
    pub step: u8,
}

/// Apply a block's transactions in order, given the result of
/// `SignedTx::verify` for each (in order): the host verified them already
/// (a node verifies each signature once, at admission or in parallel before
/// executing). The results must be exactly what `verify` gives, strict
/// verification included; with them this is `execute_block`. `evidence`
/// is recorded first (`Key::Evidence`), in the block's writes: evidence
/// recorded before, or twice in the block, makes the block invalid.
pub fn execute_block_checked(
    state: &mut State,
    block: &BlockInfo,
    txs: &[SignedTx],
    checks: &[Result<(), TxError>],
    evidence: &[BlockEvidence],
) -> Result<BlockOutcome, BlockError> {
    let ids: Vec<Hash> = txs.iter().map(SignedTx::id).collect();
    execute_block_with_ids(state, block, txs, &ids, checks, evidence)
}

/// `execute_block_checked` given each transaction's id (`SignedTx::id`),
/// computed beforehand (the auditor hashes them in parallel, ahead of
/// the sequential execution). The ids must be exactly the transactions'.
pub fn execute_block_with_ids(
    state: &mut State,
    block: &BlockInfo,
    txs: &[SignedTx],
    ids: &[Hash],
    checks: &[Result<(), TxError>],
    evidence: &[BlockEvidence],
) -> Result<BlockOutcome, BlockError> {
    assert_eq!(txs.len(), checks.len(), "one check per transaction");
    assert_eq!(txs.len(), ids.len(), "one id per transaction");
    let mut meta = meta(state);
    let expected = meta.height + 1;
    if block.height != expected {
        return Err(BlockError::WrongHeight {
            expected,
            got: block.height,
        });
    }
    if block.time_ms <= meta.time_ms {
        return Err(BlockError::TimeNotAfter {
            previous: meta.time_ms,
            got: block.time_ms,
        });
    }
    check_evidence(state, evidence)?;
    state.begin();
    for item in evidence {
        let record = EvidenceRecord {
            validator: item.validator,
            height: item.height,
            round: item.round,
            step: item.step,
            recorded_at: block.height,
        };
        state.put(&Key::Evidence(item.hash), &record);
    }
    state.commit();
    let mut results = Vec::with_capacity(txs.len());
    for (index, ((tx, check), id)) in txs.iter().zip(checks).zip(ids).enumerate() {
        let result = execute_tx(state, check, block, index as u32, tx, *id);
        results.push((*id, result));
    }
    meta.height = block.height;
    meta.time_ms = block.time_ms;
    state.begin();
    state.put(&Key::Meta, &meta);
    state.commit();
    let writes = state.take_writes();
    let app_hash = state::app_hash(&state.app_hash(), &writes);
    state.set_app_hash(app_hash);
    Ok(BlockOutcome {
        results,
        writes,
        app_hash,
    })
}

/// Each piece of evidence is new to the ledger and to the block.
fn check_evidence(state: &State, evidence: &[BlockEvidence]) -> Result<(), BlockError> {
    let mut seen = std::collections::BTreeSet::new();
    for item in evidence {
        if state.contains(&Key::Evidence(item.hash)) || !seen.insert(item.hash) {
            return Err(BlockError::EvidenceAlreadyRecorded(item.hash));
        }
    }
    Ok(())
}

/// One transaction. Envelope failures (signature, chain, size), an unknown
/// signer, a bad nonce and a repeat of an included transaction write
/// nothing at all: the block's results report them. Past those checks the
/// signer's nonce is consumed and a receipt records the outcome, and a
/// transaction whose kind fails changes nothing else.
fn execute_tx(
    state: &mut State,
    check: &Result<(), TxError>,
    block: &BlockInfo,
    index: u32,
    tx: &SignedTx,
    id: Hash,
) -> AppResult {
    if state.contains(&Key::Receipt(id)) {
        return Err(AppError::AlreadyIncluded(id));
    }
    check.clone()?;
    let actor = actor_of(state, &tx.signer)?;
    let last_nonce: Option<u64> = state.get(&Key::Nonce(tx.signer));
    tx.check_nonce(last_nonce)?;

    state.begin();
    let mut ctx = Ctx {
        state,
        now_ms: block.time_ms,
        tx_id: id,
        signer: tx.signer,
        actor,
    };
    let result = ctx.apply(&tx.body.kind);
    if result.is_ok() {
        ctx.state.commit();
    } else {
        ctx.state.abort();
    }

    state.begin();
    state.put(&Key::Nonce(tx.signer), &tx.body.nonce);
    state.put(
        &Key::Receipt(id),
        &Receipt {
            height: block.height,
            index,
            error: result.as_ref().err().map(|e| e.code().to_string()),
        },
    );
    state.commit();
    result
}

/// The signer's key record, if it is a key of a current member firm (the
/// node's mempool admits only such signers, by this same rule).
pub fn actor_of(state: &State, signer: &PublicKey) -> Result<KeyRecord, AppError> {
    let record: KeyRecord = state
        .get(&Key::Key(*signer))
        .ok_or(AppError::UnknownSigner(*signer))?;
    if !state.contains(&Key::Firm(record.firm.clone())) {
        return Err(AppError::UnknownSigner(*signer));
    }
    Ok(record)
}

/// One transaction's view of the state: who signs, and when.
struct Ctx<'a> {
    state: &'a mut State,
    now_ms: u64,
    tx_id: Hash,
    signer: PublicKey,
    actor: KeyRecord,
}

impl Ctx<'_> {
    /// The meaning of each kind; the rules live in the file named above
    /// each group.
    fn apply(&mut self, kind: &TxKind) -> AppResult {
        match kind {
            // membership.rs
            TxKind::AuthorizeKey { firm, key, role } => self.authorize_key(firm, key, *role),
            TxKind::RevokeKey { firm, key } => self.revoke_key(firm, key),
            TxKind::Propose { action, expires_ms } => self.propose(action, *expires_ms),
            TxKind::Vote { proposal, approve } => self.vote(proposal, *approve),
            TxKind::RegisterKind { kind } => {
                self.require_facilitator(Role::Admin)?;
                register_kind(self.state, kind)
            }
            TxKind::GrantLicence {
                firm,
                ewc_code,
                expires_ms,
            } => self.grant_licence(firm, ewc_code, *expires_ms),
            // market.rs
            TxKind::PostOffer { listing } => self.post_listing(Side::Offer, listing),
            TxKind::PostRequest { listing } => self.post_listing(Side::Request, listing),
            TxKind::Accept { listing } => self.accept(listing),
            TxKind::Withdraw { listing } => self.withdraw(listing),
            // contracts.rs
            TxKind::ProposeContract { terms } => self.propose_contract(terms),
            TxKind::Countersign { contract } => self.countersign(contract),
            TxKind::Terminate { contract } => self.terminate(contract),
            TxKind::RecordAvailability {
                contract,
                period,
                quantity,
            } => self.record(contract, *period, *quantity, Reading::Availability),
            TxKind::RecordDelivery {
                contract,
                period,
                quantity,
            } => self.record(contract, *period, *quantity, Reading::Delivery),
            TxKind::RecordCheck {
                contract,
                period,
                quantity,
            } => self.record(contract, *period, *quantity, Reading::Check),
            TxKind::SettlePeriod { contract, period } => self.settle_period(contract, *period),
            // ledger.rs
            TxKind::AcknowledgePayment {
                payer,
                payee,
                amount,
            } => self.acknowledge_payment(payer, payee, *amount),
            // pools.rs
            TxKind::CreatePool {
                name,
                keys,
                start_ms,
                period_ms,
            } => self.create_pool(name, keys, *start_ms, *period_ms),
            TxKind::PostPoolAmount {
                pool,
                period,
                amount,
            } => self.post_pool_amount(pool, *period, *amount),
            TxKind::SplitPool { pool, period } => self.split_pool(pool, *period),
            TxKind::JoinPool { pool } => self.join_pool(pool),
            TxKind::ObjectPoolAmount {
                pool,
                period,
                posting,
            } => self.object_pool_amount(pool, *period, posting),
            TxKind::ResolvePoolObjection {
                pool,
                period,
                posting,
                accept,
            } => self.resolve_pool_objection(pool, *period, posting, *accept),
            // disputes.rs
            TxKind::OpenDispute {
                contract,
                period,
                reason,
            } => self.open_dispute(contract, *period, reason),
            TxKind::ResolveDispute {
                contract,
                period,
                adjustment,
            } => self.resolve_dispute(contract, *period, *adjustment),
        }
    }

    // --- who may act -------------------------------------------------

    fn require_admin_of(&self, firm: &str) -> AppResult {
        if self.actor.role != Role::Admin {
            return Err(AppError::Unauthorized { need: "admin key" });
        }
        self.require_firm(firm)
    }

    fn require_firm(&self, firm: &str) -> AppResult {
        if self.actor.firm != firm {
            return Err(AppError::WrongFirm {
                signer_firm: self.actor.firm.clone(),
                firm: firm.to_string(),
            });
        }
        Ok(())
    }

    /// An admin or operator key: the keys that trade and sign for a firm.
    fn require_trader(&self) -> AppResult<String> {
        match self.actor.role {
            Role::Admin | Role::Operator => Ok(self.actor.firm.clone()),
            Role::Meter => Err(AppError::Unauthorized {
                need: "admin or operator key",
            }),
        }
    }

    fn require_facilitator(&self, least: Role) -> AppResult {
        if least == Role::Admin && self.actor.role != Role::Admin {
            return Err(AppError::Unauthorized { need: "admin key" });
        }
        self.require_trader()?;
        let firm = firm(self.state, &self.actor.firm)?;
        if !firm.facilitator {
            return Err(AppError::NotFacilitator);
        }
        Ok(())
    }

    /// A trader of a firm that is not a facilitator.
    fn require_trading_firm(&self) -> AppResult<String> {
        let id = self.require_trader()?;
        if firm(self.state, &id)?.facilitator {
            return Err(AppError::FacilitatorTrades(id));
        }
        Ok(id)
    }
}

// --- leaves: pure work on the state ----------------------------------

/// (start, end) of period `period` of a schedule, checked.
fn window(start_ms: u64, period_ms: u64, period: u32) -> AppResult<(u64, u64)> {
    let overflow = Overflow {
        what: "period start",
    };
    let start = (period as u64)
        .checked_mul(period_ms)
        .and_then(|offset| offset.checked_add(start_ms))
        .ok_or(overflow)?;
    let end = start.checked_add(period_ms).ok_or(overflow)?;
    Ok((start, end))
}

fn firm(state: &State, id: &str) -> AppResult<Firm> {
    state
        .get(&Key::Firm(id.to_string()))
        .ok_or_else(|| AppError::UnknownFirm(id.to_string()))
}

fn kind(state: &State, id: &str) -> AppResult<ResourceKind> {
    state
        .get(&Key::Kind(id.to_string()))
        .ok_or_else(|| AppError::UnknownKind(id.to_string()))
}

/// Ids as genesis has them: 1 to 32 lowercase letters, digits, '-' or
/// '_', starting with a letter or digit.
fn check_id(field: &'static str, id: &str) -> AppResult {
    let ok = !id.is_empty()
        && id.len() <= 32
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && id.as_bytes()[0].is_ascii_alphanumeric();
    if !ok {
        return Err(AppError::Invalid {
            field,
            rule: "1 to 32 lowercase letters, digits, '-' or '_', starting with a letter or digit",
        });
    }
    Ok(())
}

fn check_text(field: &'static str, text: &str) -> AppResult {
    if text.trim().is_empty() || text.len() > MAX_TEXT_BYTES || text.chars().any(char::is_control) {
        return Err(AppError::Invalid {
            field,
            rule: "1 to 256 bytes of text without control characters",
        });
    }
    Ok(())
}

fn check_schedule(period_ms: u64, periods: u32) -> AppResult {
    if period_ms == 0 || periods == 0 || periods > MAX_PERIODS {
        return Err(AppError::Invalid {
            field: "schedule",
            rule: "period_ms above 0 and 1 to 100000 periods",
        });
    }
    Ok(())
}

// --- read accessors for the node, the CLI and the auditor ---------------

/// Every account's balance, in key order. They sum to zero.
pub fn balances(state: &State) -> Vec<(Account, i64)> {
    let prefix = state::variant_prefix(&Key::Balance(Account::Firm(String::new())));
    state
        .scan::<i64>(&prefix)
        .into_iter()
        .map(|(key, balance)| match crate::codec::decode::<Key>(&key) {
            Ok(Key::Balance(account)) => (account, balance),
            other => panic!("balance prefix holds {other:?}"),
        })
        .collect()
}

pub fn balance(state: &State, account: &Account) -> i64 {
    state.get(&Key::Balance(account.clone())).unwrap_or(0)
}

pub fn obligation(state: &State, debtor: &Account, creditor: &Account) -> i64 {
    state
        .get(&Key::Obligation {
            debtor: debtor.clone(),
            creditor: creditor.clone(),
        })
        .unwrap_or(0)
}

pub fn avoided_grams(state: &State, account: &AvoidedAccount) -> u64 {
    state.get(&Key::Avoided(account.clone())).unwrap_or(0)
}

pub fn period(state: &State, contract: &Hash, period: u32) -> Option<PeriodRecord> {
    state.get(&Key::Period {
        contract: *contract,
        period,
    })
}

pub fn receipt(state: &State, tx: &Hash) -> Option<Receipt> {
    state.get(&Key::Receipt(*tx))
}

/// The current nodes; validators are those with `validator = true`.
pub fn current_nodes(state: &State) -> Vec<Node> {
    nodes(state)
}
