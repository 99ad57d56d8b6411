//! Why a transaction failed: [`AppError`] and its stable codes.

use crate::hash::Hash;
use crate::keys::PublicKey;
use crate::kinds::Account;
use crate::numbers::Overflow;
use crate::pool::PoolError;
use crate::settlement::SettlementError;
use crate::tx::TxError;

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
    #[error(
        "total voting power would be {total}, more than {max}: consensus counts 3 x the total in a u64"
    )]
    TotalPowerTooLarge { total: u128, max: u64 },
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
    #[error(
        "period {period} misses its {missing:?} reading(s): it can be settled once every reading is in, or once metering closes at {closed_ms} ms"
    )]
    ReadingsMissing {
        period: u32,
        missing: Vec<&'static str>,
        closed_ms: u64,
    },
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
    #[error("pool {pool} is not active: {waiting:?} have not joined it")]
    PoolNotActive { pool: Hash, waiting: Vec<String> },
    #[error("firm {0:?} has already joined the pool")]
    AlreadyJoined(String),
    #[error("pool period {period} holds {limit} postings, the most it may")]
    PoolPostingsFull { period: u32, limit: usize },
    #[error("pool period {period} has no posting {posting}")]
    UnknownPosting { posting: Hash, period: u32 },
    #[error("a member cannot object to its own posting {0}")]
    OwnPosting(Hash),
    #[error("posting {0} has already been objected to")]
    AlreadyObjected(Hash),
    #[error("posting {0} has no objection to resolve")]
    NoObjection(Hash),
    #[error(
        "firm {firm:?} cannot acknowledge a payment by {payer:?} to {payee:?}: nobody acknowledges a payment to itself"
    )]
    OwnPayment {
        payer: Account,
        payee: Account,
        firm: String,
    },
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
            E::TotalPowerTooLarge { .. } => "total_power_too_large",
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
            E::ReadingsMissing { .. } => "readings_missing",
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
            E::PoolNotActive { .. } => "pool_not_active",
            E::AlreadyJoined(_) => "already_joined",
            E::PoolPostingsFull { .. } => "pool_postings_full",
            E::UnknownPosting { .. } => "unknown_posting",
            E::OwnPosting(_) => "own_posting",
            E::AlreadyObjected(_) => "already_objected",
            E::NoObjection(_) => "no_objection",
            E::OwnPayment { .. } => "own_payment",
            E::Pool(error) => error.code(),
            E::Settlement(SettlementError::InvalidTerm { .. }) => "invalid_term",
            E::Settlement(SettlementError::Overflow(_)) => "overflow",
            E::Overflow(_) => "overflow",
            E::Invalid { .. } => "invalid_field",
        }
    }
}

pub(super) type AppResult<T = ()> = Result<T, AppError>;
