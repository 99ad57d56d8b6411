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

use std::collections::BTreeMap;

use crate::genesis::{ConsensusParams, Firm, Genesis, Node, ResourceKind, check_ewc_code};
use crate::hash::Hash;
use crate::keys::PublicKey;
use crate::kinds::{Account, ContractTerms, GovAction, ListingTerms};
use crate::numbers::Overflow;
use crate::pool::{self, PoolError};
use crate::settlement::{self, Readings, SettlementError};
use crate::state::{
    self, AvoidedAccount, Contract, ContractStatus, DisputeStatus, JournalEntry, Key, KeyRecord,
    Licence, Listing, ListingStatus, Meta, PeriodRecord, Pool, PoolPeriod, Proposal,
    ProposalStatus, Receipt, Role, Settled, Side, State, WriteSet,
};
use crate::tx::{KeyRole, MAX_TX_BYTES, SignedTx, TxError, TxKind};

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
}

/// Why a transaction failed. [`AppError::code`] is the stable code kept
/// in its receipt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Tx(#[from] TxError),
    #[error("transaction {0} is already on the ledger")]
    AlreadyIncluded(Hash),
    #[error("signer {0} is not an authorized key of a member firm")]
    UnknownSigner(PublicKey),
    #[error("the signer's role may not do this: needs {need}")]
    Unauthorized { need: &'static str },
    #[error("the signer acts for firm {signer_firm:?}, not {firm:?}")]
    WrongFirm { signer_firm: String, firm: String },
    #[error("unknown firm {0:?}")]
    UnknownFirm(String),
    #[error("firm {0:?} already exists")]
    FirmExists(String),
    #[error("firm {0:?} is a facilitator and trades nothing")]
    FacilitatorTrades(String),
    #[error("only a facilitator may do this")]
    NotFacilitator,
    #[error("key {0} is already in use")]
    KeyInUse(PublicKey),
    #[error("key {0} is not a usable ed25519 public key")]
    InvalidKey(PublicKey),
    #[error("key {0} is not a key of this firm")]
    UnknownKey(PublicKey),
    #[error("a firm's admin key cannot be revoked")]
    CannotRevokeAdmin,
    #[error("unknown node {0:?}")]
    UnknownNode(String),
    #[error("node {0:?} already exists")]
    NodeExists(String),
    #[error("unknown resource kind {0:?}")]
    UnknownKind(String),
    #[error("resource kind {0:?} already exists")]
    KindExists(String),
    #[error("unknown proposal {0}")]
    UnknownProposal(Hash),
    #[error("proposal {0} is no longer open")]
    ProposalClosed(Hash),
    #[error("proposal {0} has expired")]
    ProposalExpired(Hash),
    #[error("firm {0:?} has already voted")]
    AlreadyVoted(String),
    #[error("unknown listing {0}")]
    UnknownListing(Hash),
    #[error("listing {0} is not open")]
    ListingClosed(Hash),
    #[error("listing {0} has expired")]
    ListingExpired(Hash),
    #[error("a firm cannot accept its own listing")]
    OwnListing,
    #[error("only the owner may do this")]
    NotOwner,
    #[error("unknown contract {0}")]
    UnknownContract(Hash),
    #[error("firm {0:?} is not the party that may do this")]
    WrongParty(String),
    #[error("contract {0} is not waiting for a countersignature")]
    NotProposed(Hash),
    #[error("contract {0} is not in force")]
    ContractNotActive(Hash),
    #[error("firm {firm:?} has already asked to terminate")]
    AlreadyRequested { firm: String },
    #[error("firm {firm:?} holds no licence to take waste {ewc_code:?}")]
    LicenceMissing { firm: String, ewc_code: String },
    #[error("firm {firm:?}'s licence to take waste {ewc_code:?} expired at {expires_ms} ms")]
    LicenceExpired {
        firm: String,
        ewc_code: String,
        expires_ms: u64,
    },
    #[error("period {period} is out of range: there are {periods}")]
    PeriodOutOfRange { period: u32, periods: u32 },
    #[error("period {period} starts at {start_ms} ms")]
    PeriodNotStarted { period: u32, start_ms: u64 },
    #[error("period {period} ends at {end_ms} ms")]
    PeriodNotOver { period: u32, end_ms: u64 },
    #[error("metering of period {period} closed at {closed_ms} ms")]
    MeteringClosed { period: u32, closed_ms: u64 },
    #[error("period {period} starts after the contract was terminated")]
    PeriodVoid { period: u32 },
    #[error("the {what} of period {period} is already recorded")]
    AlreadyRecorded { what: &'static str, period: u32 },
    #[error("period {period} is already settled")]
    PeriodAlreadySettled { period: u32 },
    #[error("the signer is not the contract's {which} meter key")]
    NotMeter { which: &'static str },
    #[error("contract names no arbiter")]
    NoArbiter,
    #[error("only the contract's arbiter may do this")]
    NotArbiter,
    #[error("period {period} is under an open dispute")]
    DisputeOpen { period: u32 },
    #[error("period {period} already has a dispute")]
    DisputeExists { period: u32 },
    #[error("period {period} has no open dispute")]
    NoDispute { period: u32 },
    #[error("{payer:?} owes {payee:?} {outstanding}, less than {amount}")]
    ExceedsObligation {
        payer: Account,
        payee: Account,
        outstanding: i64,
        amount: i64,
    },
    #[error("unknown pool {0}")]
    UnknownPool(Hash),
    #[error("firm {0:?} is not a member of the pool")]
    NotMember(String),
    #[error("pool period {period} is already split")]
    PoolPeriodSplit { period: u32 },
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error(transparent)]
    Settlement(#[from] SettlementError),
    #[error(transparent)]
    Overflow(#[from] Overflow),
    #[error("{field} is invalid: {rule}")]
    Invalid {
        field: &'static str,
        rule: &'static str,
    },
}

impl AppError {
    /// A stable code for receipts, logs and the gRPC API.
    pub fn code(&self) -> &'static str {
        use AppError as E;
        match self {
            E::Tx(error) => error.code(),
            E::AlreadyIncluded(_) => "already_included",
            E::UnknownSigner(_) => "unknown_signer",
            E::Unauthorized { .. } => "unauthorized",
            E::WrongFirm { .. } => "wrong_firm",
            E::UnknownFirm(_) => "unknown_firm",
            E::FirmExists(_) => "firm_exists",
            E::FacilitatorTrades(_) => "facilitator_trades",
            E::NotFacilitator => "not_facilitator",
            E::KeyInUse(_) => "key_in_use",
            E::InvalidKey(_) => "invalid_key",
            E::UnknownKey(_) => "unknown_key",
            E::CannotRevokeAdmin => "cannot_revoke_admin",
            E::UnknownNode(_) => "unknown_node",
            E::NodeExists(_) => "node_exists",
            E::UnknownKind(_) => "unknown_kind",
            E::KindExists(_) => "kind_exists",
            E::UnknownProposal(_) => "unknown_proposal",
            E::ProposalClosed(_) => "proposal_closed",
            E::ProposalExpired(_) => "proposal_expired",
            E::AlreadyVoted(_) => "already_voted",
            E::UnknownListing(_) => "unknown_listing",
            E::ListingClosed(_) => "listing_closed",
            E::ListingExpired(_) => "listing_expired",
            E::OwnListing => "own_listing",
            E::NotOwner => "not_owner",
            E::UnknownContract(_) => "unknown_contract",
            E::WrongParty(_) => "wrong_party",
            E::NotProposed(_) => "not_proposed",
            E::ContractNotActive(_) => "contract_not_active",
            E::AlreadyRequested { .. } => "already_requested",
            E::LicenceMissing { .. } => "licence_missing",
            E::LicenceExpired { .. } => "licence_expired",
            E::PeriodOutOfRange { .. } => "period_out_of_range",
            E::PeriodNotStarted { .. } => "period_not_started",
            E::PeriodNotOver { .. } => "period_not_over",
            E::MeteringClosed { .. } => "metering_closed",
            E::PeriodVoid { .. } => "period_void",
            E::AlreadyRecorded { .. } => "already_recorded",
            E::PeriodAlreadySettled { .. } => "period_already_settled",
            E::NotMeter { .. } => "not_meter",
            E::NoArbiter => "no_arbiter",
            E::NotArbiter => "not_arbiter",
            E::DisputeOpen { .. } => "dispute_open",
            E::DisputeExists { .. } => "dispute_exists",
            E::NoDispute { .. } => "no_dispute",
            E::ExceedsObligation { .. } => "exceeds_obligation",
            E::UnknownPool(_) => "unknown_pool",
            E::NotMember(_) => "not_member",
            E::PoolPeriodSplit { .. } => "pool_period_split",
            E::Pool(error) => error.code(),
            E::Settlement(SettlementError::InvalidTerm { .. }) => "invalid_term",
            E::Settlement(SettlementError::Overflow(_)) => "overflow",
            E::Overflow(_) => "overflow",
            E::Invalid { .. } => "invalid_field",
        }
    }
}

type AppResult<T = ()> = Result<T, AppError>;

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

fn put_firm(state: &mut State, firm: &Firm) {
    state.put(&Key::Firm(firm.id.clone()), firm);
    state.put(
        &Key::Key(firm.admin_key),
        &KeyRecord {
            firm: firm.id.clone(),
            role: Role::Admin,
        },
    );
}

pub fn meta(state: &State) -> Meta {
    state
        .get(&Key::Meta)
        .expect("the state holds its meta record from genesis on")
}

/// Apply a block's transactions in order.
pub fn execute_block(
    state: &mut State,
    block: &BlockInfo,
    txs: &[SignedTx],
) -> Result<BlockOutcome, BlockError> {
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
    let mut results = Vec::with_capacity(txs.len());
    for (index, tx) in txs.iter().enumerate() {
        let result = execute_tx(state, &meta.chain_id, block, index as u32, tx);
        results.push((tx.id(), result));
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

/// One transaction. Envelope failures (signature, chain, size), an unknown
/// signer, a bad nonce and a repeat of an included transaction write
/// nothing at all: the block's results report them. Past those checks the
/// signer's nonce is consumed and a receipt records the outcome, and a
/// transaction whose kind fails changes nothing else.
fn execute_tx(
    state: &mut State,
    chain_id: &str,
    block: &BlockInfo,
    index: u32,
    tx: &SignedTx,
) -> AppResult {
    let id = tx.id();
    if state.contains(&Key::Receipt(id)) {
        return Err(AppError::AlreadyIncluded(id));
    }
    tx.verify(chain_id)?;
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

/// The signer's key record, if it is a key of a current member firm.
fn actor_of(state: &State, signer: &PublicKey) -> AppResult<KeyRecord> {
    let record: KeyRecord = state
        .get(&Key::Key(*signer))
        .ok_or(AppError::UnknownSigner(*signer))?;
    if !state.contains(&Key::Firm(record.firm.clone())) {
        return Err(AppError::UnknownSigner(*signer));
    }
    Ok(record)
}

struct Ctx<'a> {
    state: &'a mut State,
    now_ms: u64,
    tx_id: Hash,
    signer: PublicKey,
    actor: KeyRecord,
}

impl Ctx<'_> {
    fn apply(&mut self, kind: &TxKind) -> AppResult {
        match kind {
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
            TxKind::PostOffer { listing } => self.post_listing(Side::Offer, listing),
            TxKind::PostRequest { listing } => self.post_listing(Side::Request, listing),
            TxKind::Accept { listing } => self.accept(listing),
            TxKind::Withdraw { listing } => self.withdraw(listing),
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
            TxKind::AcknowledgePayment {
                payer,
                payee,
                amount,
            } => self.acknowledge_payment(payer, payee, *amount),
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

    // --- membership --------------------------------------------------

    fn authorize_key(&mut self, firm_id: &str, key: &PublicKey, role: KeyRole) -> AppResult {
        self.require_admin_of(firm_id)?;
        key.validate().map_err(|_| AppError::InvalidKey(*key))?;
        if key_in_use(self.state, key) {
            return Err(AppError::KeyInUse(*key));
        }
        let role = match role {
            KeyRole::Operator => Role::Operator,
            KeyRole::Meter => Role::Meter,
        };
        self.state.put(
            &Key::Key(*key),
            &KeyRecord {
                firm: firm_id.to_string(),
                role,
            },
        );
        Ok(())
    }

    fn revoke_key(&mut self, firm_id: &str, key: &PublicKey) -> AppResult {
        self.require_admin_of(firm_id)?;
        let record: KeyRecord = self
            .state
            .get(&Key::Key(*key))
            .filter(|record: &KeyRecord| record.firm == firm_id)
            .ok_or(AppError::UnknownKey(*key))?;
        if record.role == Role::Admin {
            return Err(AppError::CannotRevokeAdmin);
        }
        // The nonce record stays: a re-authorized key continues its sequence.
        self.state.delete(&Key::Key(*key));
        Ok(())
    }

    // --- governance --------------------------------------------------

    fn propose(&mut self, action: &GovAction, expires_ms: u64) -> AppResult {
        let firm = self.actor.firm.clone();
        self.require_admin_of(&firm)?;
        if expires_ms <= self.now_ms {
            return Err(AppError::Invalid {
                field: "expires_ms",
                rule: "must be after the block time",
            });
        }
        let proposal = Proposal {
            proposer: firm.clone(),
            action: action.clone(),
            expires_ms,
            votes: BTreeMap::from([(firm, true)]),
            status: ProposalStatus::Open,
        };
        self.tally(self.tx_id, proposal)
    }

    fn vote(&mut self, id: &Hash, approve: bool) -> AppResult {
        let firm = self.actor.firm.clone();
        self.require_admin_of(&firm)?;
        let mut proposal: Proposal = self
            .state
            .get(&Key::Proposal(*id))
            .ok_or(AppError::UnknownProposal(*id))?;
        if proposal.status != ProposalStatus::Open {
            return Err(AppError::ProposalClosed(*id));
        }
        if self.now_ms >= proposal.expires_ms {
            return Err(AppError::ProposalExpired(*id));
        }
        if proposal.votes.insert(firm.clone(), approve).is_some() {
            return Err(AppError::AlreadyVoted(firm));
        }
        self.tally(*id, proposal)
    }

    /// Store the proposal; if firms holding more than 2/3 of the votes (one
    /// per current member firm) approve, apply its action now.
    fn tally(&mut self, id: Hash, mut proposal: Proposal) -> AppResult {
        let firms = firm_ids(self.state);
        let yes = proposal
            .votes
            .iter()
            .filter(|(firm, approve)| **approve && firms.contains(firm))
            .count();
        if 3 * yes > 2 * firms.len() {
            apply_action(self.state, &proposal.action)?;
            proposal.status = ProposalStatus::Passed { at_ms: self.now_ms };
        }
        self.state.put(&Key::Proposal(id), &proposal);
        Ok(())
    }

    // --- registry ----------------------------------------------------

    fn grant_licence(&mut self, firm_id: &str, ewc_code: &str, expires_ms: u64) -> AppResult {
        self.require_facilitator(Role::Operator)?;
        firm(self.state, firm_id)?;
        check_ewc_code(ewc_code).map_err(|_| AppError::Invalid {
            field: "ewc_code",
            rule: "three pairs of digits separated by spaces, e.g. \"10 01 05\"",
        })?;
        if expires_ms <= self.now_ms {
            return Err(AppError::Invalid {
                field: "expires_ms",
                rule: "must be after the block time",
            });
        }
        self.state.put(
            &Key::Licence {
                firm: firm_id.to_string(),
                ewc_code: ewc_code.to_string(),
            },
            &Licence { expires_ms },
        );
        Ok(())
    }

    /// A firm taking a waste stream needs an unexpired licence for its EWC code.
    fn check_licence(&self, kind: &ResourceKind, taker: &str) -> AppResult {
        let Some(ewc_code) = kind.ewc_code.as_ref().filter(|_| kind.waste) else {
            return Ok(());
        };
        let licence: Licence = self
            .state
            .get(&Key::Licence {
                firm: taker.to_string(),
                ewc_code: ewc_code.clone(),
            })
            .ok_or_else(|| AppError::LicenceMissing {
                firm: taker.to_string(),
                ewc_code: ewc_code.clone(),
            })?;
        if self.now_ms >= licence.expires_ms {
            return Err(AppError::LicenceExpired {
                firm: taker.to_string(),
                ewc_code: ewc_code.clone(),
                expires_ms: licence.expires_ms,
            });
        }
        Ok(())
    }

    // --- market ------------------------------------------------------

    fn post_listing(&mut self, side: Side, terms: &ListingTerms) -> AppResult {
        let owner = self.require_trading_firm()?;
        let kind = kind(self.state, &terms.kind)?;
        check_quality(&kind, &terms.quality)?;
        check_text("delivery_point", &terms.delivery_point)?;
        check_schedule(terms.period_ms, terms.periods)?;
        if terms.quantity_per_period == 0 {
            return Err(AppError::Invalid {
                field: "quantity_per_period",
                rule: "must be above 0",
            });
        }
        if terms.valid_until_ms <= self.now_ms {
            return Err(AppError::Invalid {
                field: "valid_until_ms",
                rule: "must be after the block time",
            });
        }
        let listing = Listing {
            owner,
            side,
            terms: terms.clone(),
            status: ListingStatus::Open,
        };
        self.state.put(&Key::Listing(self.tx_id), &listing);
        Ok(())
    }

    fn open_listing(&self, id: &Hash) -> AppResult<Listing> {
        let listing: Listing = self
            .state
            .get(&Key::Listing(*id))
            .ok_or(AppError::UnknownListing(*id))?;
        if listing.status != ListingStatus::Open {
            return Err(AppError::ListingClosed(*id));
        }
        Ok(listing)
    }

    fn accept(&mut self, id: &Hash) -> AppResult {
        let firm = self.require_trading_firm()?;
        let mut listing = self.open_listing(id)?;
        if self.now_ms >= listing.terms.valid_until_ms {
            return Err(AppError::ListingExpired(*id));
        }
        if listing.owner == firm {
            return Err(AppError::OwnListing);
        }
        listing.status = ListingStatus::Accepted {
            by: firm,
            at_ms: self.now_ms,
        };
        self.state.put(&Key::Listing(*id), &listing);
        Ok(())
    }

    fn withdraw(&mut self, id: &Hash) -> AppResult {
        let firm = self.require_trader()?;
        let mut listing = self.open_listing(id)?;
        if listing.owner != firm {
            return Err(AppError::NotOwner);
        }
        listing.status = ListingStatus::Withdrawn { at_ms: self.now_ms };
        self.state.put(&Key::Listing(*id), &listing);
        Ok(())
    }

    // --- contracts ---------------------------------------------------

    fn propose_contract(&mut self, terms: &ContractTerms) -> AppResult {
        let proposer = self.require_trading_firm()?;
        if proposer != terms.supplier && proposer != terms.consumer {
            return Err(AppError::WrongParty(proposer));
        }
        let kind = self.check_contract_terms(terms)?;
        if proposer == terms.consumer {
            self.check_licence(&kind, &terms.consumer)?;
        }
        let contract = Contract {
            terms: terms.clone(),
            proposer,
            status: ContractStatus::Proposed,
            terminate_requests: Vec::new(),
        };
        self.state.put(&Key::Contract(self.tx_id), &contract);
        Ok(())
    }

    fn check_contract_terms(&self, terms: &ContractTerms) -> AppResult<ResourceKind> {
        if terms.supplier == terms.consumer {
            return Err(AppError::Invalid {
                field: "consumer",
                rule: "must differ from the supplier",
            });
        }
        for party in [&terms.supplier, &terms.consumer] {
            if firm(self.state, party)?.facilitator {
                return Err(AppError::FacilitatorTrades(party.clone()));
            }
        }
        let kind = kind(self.state, &terms.kind)?;
        check_quality(&kind, &terms.quality)?;
        check_text("delivery_point", &terms.delivery_point)?;
        terms.settlement.validate()?;
        check_schedule(terms.period_ms, terms.periods)?;
        // The whole schedule must be representable in u64 milliseconds.
        (terms.period_ms as u128 * terms.periods as u128 + terms.start_ms as u128)
            .try_into()
            .map(|_: u64| ())
            .map_err(|_| Overflow {
                what: "contract end",
            })?;
        let meter_of_party = |key: &PublicKey| {
            self.state
                .get::<KeyRecord>(&Key::Key(*key))
                .is_some_and(|r| {
                    r.role == Role::Meter && (r.firm == terms.supplier || r.firm == terms.consumer)
                })
        };
        if !meter_of_party(&terms.billing_meter) {
            return Err(AppError::Invalid {
                field: "billing_meter",
                rule: "must be a meter key of the supplier or the consumer",
            });
        }
        if let Some(check) = &terms.check_meter
            && (*check == terms.billing_meter || !meter_of_party(check))
        {
            return Err(AppError::Invalid {
                field: "check_meter",
                rule: "must be another meter key of the supplier or the consumer",
            });
        }
        if let Some(arbiter) = &terms.arbiter {
            firm(self.state, arbiter)?;
            if *arbiter == terms.supplier || *arbiter == terms.consumer {
                return Err(AppError::Invalid {
                    field: "arbiter",
                    rule: "must not be a party",
                });
            }
        }
        if let Some(id) = &terms.listing {
            self.check_listing_matches(id, terms)?;
        }
        if let Some(id) = &terms.gain_pool
            && !pool(self.state, id)?.keys.contains_key(&terms.supplier)
        {
            return Err(AppError::NotMember(terms.supplier.clone()));
        }
        Ok(kind)
    }

    fn check_listing_matches(&self, id: &Hash, terms: &ContractTerms) -> AppResult {
        let listing: Listing = self
            .state
            .get(&Key::Listing(*id))
            .ok_or(AppError::UnknownListing(*id))?;
        let ListingStatus::Accepted { by, .. } = &listing.status else {
            return Err(AppError::Invalid {
                field: "listing",
                rule: "must be an accepted listing",
            });
        };
        let (supplier, consumer) = match listing.side {
            Side::Offer => (&listing.owner, by),
            Side::Request => (by, &listing.owner),
        };
        if *supplier != terms.supplier
            || *consumer != terms.consumer
            || listing.terms.kind != terms.kind
        {
            return Err(AppError::Invalid {
                field: "listing",
                rule: "parties and kind must match the accepted listing",
            });
        }
        Ok(())
    }

    fn contract(&self, id: &Hash) -> AppResult<Contract> {
        self.state
            .get(&Key::Contract(*id))
            .ok_or(AppError::UnknownContract(*id))
    }

    fn countersign(&mut self, id: &Hash) -> AppResult {
        let firm = self.require_trading_firm()?;
        let mut contract = self.contract(id)?;
        if contract.status != ContractStatus::Proposed {
            return Err(AppError::NotProposed(*id));
        }
        let terms = &contract.terms;
        let other = if contract.proposer == terms.supplier {
            &terms.consumer
        } else {
            &terms.supplier
        };
        if firm != *other {
            return Err(AppError::WrongParty(firm));
        }
        // Re-check what may have changed since the proposal.
        let kind = self.check_contract_terms(terms)?;
        self.check_licence(&kind, &terms.consumer)?;
        contract.status = ContractStatus::Active {
            signed_at_ms: self.now_ms,
        };
        self.state.put(&Key::Contract(*id), &contract);
        Ok(())
    }

    fn terminate(&mut self, id: &Hash) -> AppResult {
        let firm = self.require_trader()?;
        let mut contract = self.contract(id)?;
        let terms = &contract.terms;
        let is_party = firm == terms.supplier || firm == terms.consumer;
        let is_arbiter = terms.arbiter.as_deref() == Some(firm.as_str());
        match contract.status {
            ContractStatus::Terminated { .. } => return Err(AppError::ContractNotActive(*id)),
            // A proposal is withdrawn by either party.
            ContractStatus::Proposed if is_party => {
                contract.status = ContractStatus::Terminated { at_ms: self.now_ms };
            }
            ContractStatus::Proposed => return Err(AppError::WrongParty(firm)),
            ContractStatus::Active { .. } if is_arbiter => {
                contract.status = ContractStatus::Terminated { at_ms: self.now_ms };
            }
            ContractStatus::Active { .. } if is_party => {
                if contract.terminate_requests.contains(&firm) {
                    return Err(AppError::AlreadyRequested { firm });
                }
                contract.terminate_requests.push(firm);
                contract.terminate_requests.sort();
                if contract.terminate_requests.len() == 2 {
                    contract.status = ContractStatus::Terminated { at_ms: self.now_ms };
                }
            }
            ContractStatus::Active { .. } => return Err(AppError::WrongParty(firm)),
        }
        self.state.put(&Key::Contract(*id), &contract);
        Ok(())
    }

    // --- metering and settlement ---------------------------------------

    /// A period of a contract in force: (start, end) in ms.
    fn period_window(&self, id: &Hash, contract: &Contract, period: u32) -> AppResult<(u64, u64)> {
        let terms = &contract.terms;
        if period >= terms.periods {
            return Err(AppError::PeriodOutOfRange {
                period,
                periods: terms.periods,
            });
        }
        let (start, end) = window(terms.start_ms, terms.period_ms, period)?;
        match contract.status {
            ContractStatus::Proposed => Err(AppError::ContractNotActive(*id)),
            ContractStatus::Terminated { at_ms } if start >= at_ms => {
                Err(AppError::PeriodVoid { period })
            }
            _ => Ok((start, end)),
        }
    }

    fn record(&mut self, id: &Hash, period: u32, quantity: u64, reading: Reading) -> AppResult {
        let contract = self.contract(id)?;
        self.check_reader(&contract, reading)?;
        let (start, end) = self.period_window(id, &contract, period)?;
        if self.now_ms < start {
            return Err(AppError::PeriodNotStarted {
                period,
                start_ms: start,
            });
        }
        // Readings close one period length after the period's end.
        let closed_ms = end.saturating_add(contract.terms.period_ms);
        if self.now_ms >= closed_ms {
            return Err(AppError::MeteringClosed { period, closed_ms });
        }
        let key = Key::Period {
            contract: *id,
            period,
        };
        let mut record: PeriodRecord = self.state.get(&key).unwrap_or_default();
        if record.settled.is_some() {
            return Err(AppError::PeriodAlreadySettled { period });
        }
        let slot = match reading {
            Reading::Availability => &mut record.availability,
            Reading::Delivery => &mut record.delivered,
            Reading::Check => &mut record.check,
        };
        if slot.is_some() {
            return Err(AppError::AlreadyRecorded {
                what: reading.name(),
                period,
            });
        }
        *slot = Some(quantity);
        self.state.put(&key, &record);
        Ok(())
    }

    fn check_reader(&self, contract: &Contract, reading: Reading) -> AppResult {
        let terms = &contract.terms;
        match reading {
            Reading::Availability => {
                let firm = self.require_trader()?;
                if firm != terms.supplier {
                    return Err(AppError::WrongParty(firm));
                }
                Ok(())
            }
            Reading::Delivery | Reading::Check => {
                let expected = match reading {
                    Reading::Delivery => Some(terms.billing_meter),
                    _ => terms.check_meter,
                };
                if self.actor.role != Role::Meter || expected != Some(self.signer) {
                    return Err(AppError::NotMeter {
                        which: reading.name(),
                    });
                }
                Ok(())
            }
        }
    }

    fn settle_period(&mut self, id: &Hash, period: u32) -> AppResult {
        let firm = self.require_trader()?;
        let contract = self.contract(id)?;
        let terms = &contract.terms;
        if firm != terms.supplier && firm != terms.consumer {
            return Err(AppError::WrongParty(firm));
        }
        let (_, end) = self.period_window(id, &contract, period)?;
        if self.now_ms < end {
            return Err(AppError::PeriodNotOver {
                period,
                end_ms: end,
            });
        }
        let key = Key::Period {
            contract: *id,
            period,
        };
        let mut record: PeriodRecord = self.state.get(&key).unwrap_or_default();
        if record.settled.is_some() {
            return Err(AppError::PeriodAlreadySettled { period });
        }
        let adjustment = match &record.dispute {
            Some(DisputeStatus::Open { .. }) => return Err(AppError::DisputeOpen { period }),
            Some(DisputeStatus::Resolved { adjustment, .. }) => *adjustment,
            None => 0,
        };
        let readings = Readings {
            availability: record.availability.unwrap_or(0),
            delivered: record.delivered.unwrap_or(0),
            check: record.check,
        };
        let statement = settlement::settle(&terms.settlement, &readings)?;
        let net = statement
            .net
            .checked_add(adjustment)
            .ok_or(Overflow { what: "net" })?;
        let journal = self.owe(terms, net)?;
        let factor = kind(self.state, &terms.kind)?.emission_factor_g;
        let avoided_g = settlement::avoided_grams(readings.delivered, factor)?;
        for account in [
            AvoidedAccount::Firm(terms.supplier.clone()),
            AvoidedAccount::Firm(terms.consumer.clone()),
            AvoidedAccount::Network,
        ] {
            add_avoided(self.state, account, avoided_g)?;
        }
        record.settled = Some(Settled {
            at_ms: self.now_ms,
            statement,
            adjustment,
            net,
            avoided_g,
            journal,
        });
        self.state.put(&key, &record);
        Ok(())
    }

    /// `consumer` owes `supplier` `net` (negative: the other way round).
    /// The consumer owes the supplier (or the supplier's gain-sharing pool)
    /// `net`; negative: the other way round.
    fn owe(&mut self, terms: &ContractTerms, net: i64) -> AppResult<Vec<JournalEntry>> {
        let consumer = Account::Firm(terms.consumer.clone());
        let supplier = match &terms.gain_pool {
            Some(pool) => {
                self.add_to_pool_now(pool, net)?;
                Account::Pool(*pool)
            }
            None => Account::Firm(terms.supplier.clone()),
        };
        if net >= 0 {
            transfer(self.state, &consumer, &supplier, net)
        } else {
            let amount = net.checked_neg().ok_or(Overflow { what: "net" })?;
            transfer(self.state, &supplier, &consumer, amount)
        }
    }

    /// Add `net` to the pool period that contains the block time: it is
    /// under way, so not yet split.
    fn add_to_pool_now(&mut self, id: &Hash, net: i64) -> AppResult {
        let pool = pool(self.state, id)?;
        if self.now_ms < pool.start_ms {
            return Err(AppError::PeriodNotStarted {
                period: 0,
                start_ms: pool.start_ms,
            });
        }
        let index = (self.now_ms - pool.start_ms) / pool.period_ms;
        let period = u32::try_from(index).map_err(|_| Overflow {
            what: "pool period",
        })?;
        let key = Key::PoolPeriod { pool: *id, period };
        let mut record: PoolPeriod = self.state.get(&key).unwrap_or_default();
        assert!(
            record.split.is_none(),
            "a pool period under way is not split"
        );
        record.net = record
            .net
            .checked_add(net)
            .ok_or(Overflow { what: "pool net" })?;
        self.state.put(&key, &record);
        Ok(())
    }

    fn acknowledge_payment(&mut self, payer: &Account, payee: &Account, amount: i64) -> AppResult {
        let firm = self.require_trader()?;
        let acknowledger = match payee {
            Account::Firm(id) => id.clone(),
            Account::Pool(id) => pool(self.state, id)?.operator,
        };
        if firm != acknowledger {
            return Err(AppError::WrongParty(firm));
        }
        if amount <= 0 {
            return Err(AppError::Invalid {
                field: "amount",
                rule: "must be above 0",
            });
        }
        let key = Key::Obligation {
            debtor: payer.clone(),
            creditor: payee.clone(),
        };
        let outstanding: i64 = self.state.get(&key).unwrap_or(0);
        if amount > outstanding {
            return Err(AppError::ExceedsObligation {
                payer: payer.clone(),
                payee: payee.clone(),
                outstanding,
                amount,
            });
        }
        add_balance(self.state, payer, amount)?;
        add_balance(self.state, payee, -amount)?;
        put_obligation(self.state, key, outstanding - amount);
        Ok(())
    }

    // --- pools -------------------------------------------------------

    fn create_pool(
        &mut self,
        name: &str,
        keys: &BTreeMap<String, u16>,
        start_ms: u64,
        period_ms: u64,
    ) -> AppResult {
        let operator = self.require_trader()?;
        check_text("name", name)?;
        pool::validate_keys(keys)?;
        for member in keys.keys() {
            firm(self.state, member)?;
        }
        if period_ms == 0 {
            return Err(AppError::Invalid {
                field: "period_ms",
                rule: "must be above 0",
            });
        }
        let pool = Pool {
            name: name.to_string(),
            operator,
            keys: keys.clone(),
            start_ms,
            period_ms,
        };
        self.state.put(&Key::Pool(self.tx_id), &pool);
        Ok(())
    }

    fn member_of(&self, id: &Hash) -> AppResult<(Pool, String)> {
        let firm = self.require_trader()?;
        let pool = pool(self.state, id)?;
        if !pool.keys.contains_key(&firm) {
            return Err(AppError::NotMember(firm));
        }
        Ok((pool, firm))
    }

    fn post_pool_amount(&mut self, id: &Hash, period: u32, amount: i64) -> AppResult {
        let (pool, member) = self.member_of(id)?;
        if amount == 0 {
            return Err(AppError::Invalid {
                field: "amount",
                rule: "must not be 0",
            });
        }
        let (start, _) = window(pool.start_ms, pool.period_ms, period)?;
        if self.now_ms < start {
            return Err(AppError::PeriodNotStarted {
                period,
                start_ms: start,
            });
        }
        let key = Key::PoolPeriod { pool: *id, period };
        let mut record: PoolPeriod = self.state.get(&key).unwrap_or_default();
        if record.split.is_some() {
            return Err(AppError::PoolPeriodSplit { period });
        }
        record.net = record
            .net
            .checked_add(amount)
            .ok_or(Overflow { what: "pool net" })?;
        // Income the member collected it owes the pool; a cost it paid the
        // pool owes it.
        let member = Account::Firm(member);
        let pool_account = Account::Pool(*id);
        if amount > 0 {
            transfer(self.state, &member, &pool_account, amount)?;
        } else {
            let cost = amount.checked_neg().ok_or(Overflow { what: "pool cost" })?;
            transfer(self.state, &pool_account, &member, cost)?;
        }
        self.state.put(&key, &record);
        Ok(())
    }

    fn split_pool(&mut self, id: &Hash, period: u32) -> AppResult {
        let (pool, _) = self.member_of(id)?;
        let (_, end) = window(pool.start_ms, pool.period_ms, period)?;
        if self.now_ms < end {
            return Err(AppError::PeriodNotOver {
                period,
                end_ms: end,
            });
        }
        let key = Key::PoolPeriod { pool: *id, period };
        let mut record: PoolPeriod = self.state.get(&key).unwrap_or_default();
        if record.split.is_some() {
            return Err(AppError::PoolPeriodSplit { period });
        }
        let parts = pool::split(record.net, &pool.keys)?;
        let pool_account = Account::Pool(*id);
        for (member, part) in &parts {
            let member = Account::Firm(member.clone());
            if *part > 0 {
                transfer(self.state, &pool_account, &member, *part)?;
            } else if *part < 0 {
                let share = part.checked_neg().ok_or(Overflow { what: "pool part" })?;
                transfer(self.state, &member, &pool_account, share)?;
            }
        }
        record.split = Some(parts);
        self.state.put(&key, &record);
        Ok(())
    }

    // --- disputes ----------------------------------------------------

    fn open_dispute(&mut self, id: &Hash, period: u32, reason: &str) -> AppResult {
        let firm = self.require_trader()?;
        let contract = self.contract(id)?;
        if firm != contract.terms.supplier && firm != contract.terms.consumer {
            return Err(AppError::WrongParty(firm));
        }
        if contract.terms.arbiter.is_none() {
            return Err(AppError::NoArbiter);
        }
        check_text("reason", reason)?;
        let (start, _) = self.period_window(id, &contract, period)?;
        if self.now_ms < start {
            return Err(AppError::PeriodNotStarted {
                period,
                start_ms: start,
            });
        }
        let key = Key::Period {
            contract: *id,
            period,
        };
        let mut record: PeriodRecord = self.state.get(&key).unwrap_or_default();
        if record.dispute.is_some() {
            return Err(AppError::DisputeExists { period });
        }
        record.dispute = Some(DisputeStatus::Open {
            by: firm,
            reason: reason.to_string(),
        });
        self.state.put(&key, &record);
        Ok(())
    }

    fn resolve_dispute(&mut self, id: &Hash, period: u32, adjustment: i64) -> AppResult {
        let firm = self.require_trader()?;
        let contract = self.contract(id)?;
        if contract.terms.arbiter.as_deref() != Some(firm.as_str()) {
            return Err(AppError::NotArbiter);
        }
        let key = Key::Period {
            contract: *id,
            period,
        };
        let mut record: PeriodRecord = self.state.get(&key).unwrap_or_default();
        if !matches!(record.dispute, Some(DisputeStatus::Open { .. })) {
            return Err(AppError::NoDispute { period });
        }
        if record.settled.is_some() {
            // Settled already: the adjustment is journaled now.
            record.adjustment_journal = self.owe(&contract.terms, adjustment)?;
        }
        record.dispute = Some(DisputeStatus::Resolved {
            adjustment,
            at_ms: self.now_ms,
        });
        self.state.put(&key, &record);
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    Availability,
    Delivery,
    Check,
}

impl Reading {
    fn name(self) -> &'static str {
        match self {
            Reading::Availability => "availability",
            Reading::Delivery => "billing",
            Reading::Check => "check",
        }
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

/// `debtor` owes `creditor` `amount` (>= 0): a two-line journal summing to zero.
fn transfer(
    state: &mut State,
    debtor: &Account,
    creditor: &Account,
    amount: i64,
) -> AppResult<Vec<JournalEntry>> {
    assert!(amount >= 0, "a transfer moves a non-negative amount");
    if amount == 0 {
        return Ok(Vec::new());
    }
    add_balance(state, debtor, -amount)?;
    add_balance(state, creditor, amount)?;
    let key = Key::Obligation {
        debtor: debtor.clone(),
        creditor: creditor.clone(),
    };
    let outstanding: i64 = state.get(&key).unwrap_or(0);
    let outstanding = outstanding
        .checked_add(amount)
        .ok_or(Overflow { what: "obligation" })?;
    put_obligation(state, key, outstanding);
    Ok(vec![
        JournalEntry {
            account: debtor.clone(),
            amount: -amount,
        },
        JournalEntry {
            account: creditor.clone(),
            amount,
        },
    ])
}

fn put_obligation(state: &mut State, key: Key, outstanding: i64) {
    assert!(outstanding >= 0, "an obligation is never negative");
    if outstanding == 0 {
        state.delete(&key);
    } else {
        state.put(&key, &outstanding);
    }
}

fn add_balance(state: &mut State, account: &Account, amount: i64) -> AppResult {
    let key = Key::Balance(account.clone());
    let balance: i64 = state.get(&key).unwrap_or(0);
    let balance = balance
        .checked_add(amount)
        .ok_or(Overflow { what: "balance" })?;
    state.put(&key, &balance);
    Ok(())
}

fn add_avoided(state: &mut State, account: AvoidedAccount, grams: u64) -> AppResult {
    let key = Key::Avoided(account);
    let total: u64 = state.get(&key).unwrap_or(0);
    let total = total.checked_add(grams).ok_or(Overflow {
        what: "avoided emissions",
    })?;
    state.put(&key, &total);
    Ok(())
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

fn pool(state: &State, id: &Hash) -> AppResult<Pool> {
    state.get(&Key::Pool(*id)).ok_or(AppError::UnknownPool(*id))
}

fn firm_ids(state: &State) -> Vec<String> {
    let prefix = state::variant_prefix(&Key::Firm(String::new()));
    state
        .scan::<Firm>(&prefix)
        .into_iter()
        .map(|(_, firm)| firm.id)
        .collect()
}

fn nodes(state: &State) -> Vec<Node> {
    let prefix = state::variant_prefix(&Key::Node(String::new()));
    state
        .scan::<Node>(&prefix)
        .into_iter()
        .map(|(_, node)| node)
        .collect()
}

/// One key, one use: a firm's admin, operator or meter key, or a node key.
fn key_in_use(state: &State, key: &PublicKey) -> bool {
    state.contains(&Key::Key(*key)) || nodes(state).iter().any(|n| n.key == *key)
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

fn check_quality(kind: &ResourceKind, quality: &BTreeMap<String, i64>) -> AppResult {
    if quality.len() > MAX_QUALITY_FIELDS || quality.keys().any(|name| !kind.quality.contains(name))
    {
        return Err(AppError::Invalid {
            field: "quality",
            rule: "only the resource kind's quality fields, at most 16",
        });
    }
    Ok(())
}

fn register_kind(state: &mut State, kind: &ResourceKind) -> AppResult {
    check_id("kind id", &kind.id)?;
    check_text("kind name", &kind.name)?;
    if state.contains(&Key::Kind(kind.id.clone())) {
        return Err(AppError::KindExists(kind.id.clone()));
    }
    match &kind.ewc_code {
        Some(code) => check_ewc_code(code).map_err(|_| AppError::Invalid {
            field: "ewc_code",
            rule: "three pairs of digits separated by spaces",
        })?,
        None if kind.waste => {
            return Err(AppError::Invalid {
                field: "ewc_code",
                rule: "a waste needs an EWC code",
            });
        }
        None => {}
    }
    if kind.quality.len() > MAX_QUALITY_FIELDS {
        return Err(AppError::Invalid {
            field: "quality",
            rule: "at most 16 quality fields",
        });
    }
    state.put(&Key::Kind(kind.id.clone()), kind);
    Ok(())
}

/// Apply a governance action that has passed.
fn apply_action(state: &mut State, action: &GovAction) -> AppResult {
    match action {
        GovAction::AddFirm(firm) => {
            check_id("firm id", &firm.id)?;
            check_text("firm name", &firm.name)?;
            if state.contains(&Key::Firm(firm.id.clone())) {
                return Err(AppError::FirmExists(firm.id.clone()));
            }
            firm.admin_key
                .validate()
                .map_err(|_| AppError::InvalidKey(firm.admin_key))?;
            if key_in_use(state, &firm.admin_key) {
                return Err(AppError::KeyInUse(firm.admin_key));
            }
            put_firm(state, firm);
        }
        GovAction::RemoveFirm { id } => {
            self::firm(state, id)?;
            if firm_ids(state).len() == 1 {
                return Err(AppError::Invalid {
                    field: "firm",
                    rule: "the last firm cannot be removed",
                });
            }
            let remaining: Vec<Node> = nodes(state).into_iter().filter(|n| n.firm != *id).collect();
            if !remaining.iter().any(|n| n.validator) {
                return Err(AppError::Invalid {
                    field: "firm",
                    rule: "at least one validator must remain",
                });
            }
            state.delete(&Key::Firm(id.clone()));
            // Its keys go (so they do not come back if the id is reused;
            // their nonces stay), and so do its nodes.
            let prefix = state::variant_prefix(&Key::Key(PublicKey([0; 32])));
            for (key, record) in state.scan::<KeyRecord>(&prefix) {
                if record.firm == *id {
                    let key: Key = crate::codec::decode(&key).expect("state keys decode");
                    state.delete(&key);
                }
            }
            for node in nodes(state).into_iter().filter(|n| n.firm == *id) {
                state.delete(&Key::Node(node.id));
            }
        }
        GovAction::AddNode(node) => {
            check_id("node id", &node.id)?;
            check_text("node site", &node.site)?;
            self::firm(state, &node.firm)?;
            if state.contains(&Key::Node(node.id.clone())) {
                return Err(AppError::NodeExists(node.id.clone()));
            }
            node.key
                .validate()
                .map_err(|_| AppError::InvalidKey(node.key))?;
            if key_in_use(state, &node.key) {
                return Err(AppError::KeyInUse(node.key));
            }
            if node.validator != (node.power > 0) {
                return Err(AppError::Invalid {
                    field: "power",
                    rule: "a validator has power above 0, other nodes 0",
                });
            }
            state.put(&Key::Node(node.id.clone()), node);
        }
        GovAction::RemoveNode { id } => {
            let mut all = nodes(state);
            all.retain(|n| n.id != *id);
            if !state.contains(&Key::Node(id.clone())) {
                return Err(AppError::UnknownNode(id.clone()));
            }
            if !all.iter().any(|n| n.validator) {
                return Err(AppError::Invalid {
                    field: "node",
                    rule: "at least one validator must remain",
                });
            }
            state.delete(&Key::Node(id.clone()));
        }
        GovAction::SetPower { node, power } => {
            let mut all = nodes(state);
            let target = all
                .iter_mut()
                .find(|n| n.id == *node)
                .ok_or_else(|| AppError::UnknownNode(node.clone()))?;
            target.power = *power;
            target.validator = *power > 0;
            let updated = target.clone();
            if !all.iter().any(|n| n.validator) {
                return Err(AppError::Invalid {
                    field: "power",
                    rule: "at least one validator must remain",
                });
            }
            all.iter()
                .try_fold(0u64, |sum, n| sum.checked_add(n.power))
                .ok_or(Overflow {
                    what: "total voting power",
                })?;
            state.put(&Key::Node(node.clone()), &updated);
        }
        GovAction::SetConsensus(params) => {
            let positive = params.timeout_propose_ms > 0
                && params.timeout_prevote_ms > 0
                && params.timeout_precommit_ms > 0
                && params.max_block_txs > 0
                && params.max_clock_drift_ms > 0
                && params.max_block_bytes as usize >= MAX_TX_BYTES;
            if !positive {
                return Err(AppError::Invalid {
                    field: "consensus",
                    rule: "timeouts, block size and drift above 0; blocks hold a largest transaction",
                });
            }
            let mut current: Params = state.get(&Key::Params).expect("params from genesis");
            current.consensus = params.clone();
            state.put(&Key::Params, &current);
        }
        GovAction::RegisterKind(kind) => register_kind(state, kind)?,
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
