//! The `symbiont.v1.Query` service (proto/symbiont/v1/query.proto): reads
//! of the state after the node's last block. Each call checks its
//! arguments, then runs one closure on the node task (`ServiceHandle::read`)
//! that walks the state's records in key order from the page token and
//! stops after a page of answers or `MAX_SCAN` records, whichever comes
//! first, so a call costs the node task a bounded amount of work.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use symbiont_contracts::codec;
use symbiont_contracts::exec::{self, Params};
use symbiont_contracts::genesis::{Firm, ResourceKind};
use symbiont_contracts::hash::Hash;
use symbiont_contracts::keys::PublicKey;
use symbiont_contracts::kinds::{Account, GovAction};
use symbiont_contracts::settlement::Flag;
use symbiont_contracts::state::{
    self, AvoidedAccount, Contract, ContractStatus, DisputeStatus, JournalEntry, Key, KeyRecord,
    Licence, Listing, ListingStatus, PeriodRecord, Pool, PoolPeriod, PostingStatus, Proposal,
    ProposalStatus, Role, Side, State,
};
use symbiont_proto::v1 as pb;
use symbiont_proto::v1::query_server::Query;
use tonic::{Code, Request, Response, Status};

use super::{account_pb, hash_field, refusal, unavailable};
use crate::mempool;
use crate::service::ServiceHandle;

/// Items per page when the request says 0.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// The largest page a request may ask for.
pub const MAX_PAGE_SIZE: u32 = 1000;
/// Records one call reads at most (filters may skip many).
pub const MAX_SCAN: usize = 10_000;

pub struct QueryApi {
    pub node: ServiceHandle,
}

type Answer<T> = Result<Response<T>, Status>;

fn invalid(message: impl std::fmt::Display) -> Status {
    refusal(Code::InvalidArgument, "invalid_argument", message)
}

fn malformed(message: impl std::fmt::Display) -> Status {
    refusal(Code::InvalidArgument, "malformed", message)
}

fn not_found(message: impl std::fmt::Display) -> Status {
    refusal(Code::NotFound, "not_found", message)
}

fn page_size(size: u32) -> Result<usize, Status> {
    match size {
        0 => Ok(DEFAULT_PAGE_SIZE as usize),
        n if n > MAX_PAGE_SIZE => Err(invalid(format!(
            "page_size {n} is above the maximum of {MAX_PAGE_SIZE}"
        ))),
        n => Ok(n as usize),
    }
}

/// A page token is the last key of the previous page: it must be a key
/// under one of `prefixes`.
fn page_token(token: &[u8], prefixes: &[Vec<u8>]) -> Result<Option<Vec<u8>>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let is_key = codec::decode::<Key>(token).is_ok();
    if is_key && prefixes.iter().any(|p| token.starts_with(p)) {
        Ok(Some(token.to_vec()))
    } else {
        Err(malformed(
            "page_token is not a next_page_token of this call: pass it back unchanged",
        ))
    }
}

/// The arguments every paged call checks: its size and where it resumes.
struct Paging {
    size: usize,
    after: Option<Vec<u8>>,
}

impl Paging {
    fn new(size: u32, token: &[u8], prefixes: &[Vec<u8>]) -> Result<Paging, Status> {
        Ok(Paging {
            size: page_size(size)?,
            after: page_token(token, prefixes)?,
        })
    }
}

struct Page<T> {
    items: Vec<T>,
    next: Vec<u8>,
}

/// Walks the records under `prefixes` (ascending and adjacent) from after
/// the token, keeping what `pick` returns, until a page is full or
/// `MAX_SCAN` records were read. `next` is the last key read when more
/// records follow.
fn scan_page<T>(
    state: &State,
    prefixes: &[Vec<u8>],
    paging: &Paging,
    mut pick: impl FnMut(Key, &[u8]) -> Option<T>,
) -> Page<T> {
    let start = match &paging.after {
        Some(after) => Bound::Excluded(after.clone()),
        None => Bound::Included(prefixes[0].clone()),
    };
    let mut records = state
        .range(start)
        .take_while(|(key, _)| prefixes.iter().any(|p| key.starts_with(p)))
        .peekable();
    let mut items = Vec::new();
    let mut scanned = 0;
    while let Some((key, value)) = records.next() {
        scanned += 1;
        let decoded: Key =
            codec::decode(key).unwrap_or_else(|e| panic!("corrupt state key {key:?}: {e}"));
        if let Some(item) = pick(decoded, value) {
            items.push(item);
        }
        if items.len() >= paging.size || scanned >= MAX_SCAN {
            let next = if records.peek().is_some() {
                key.clone()
            } else {
                Vec::new()
            };
            return Page { items, next };
        }
    }
    Page {
        items,
        next: Vec::new(),
    }
}

fn value<T: serde::Serialize + serde::de::DeserializeOwned>(bytes: &[u8]) -> T {
    codec::decode(bytes).unwrap_or_else(|e| panic!("corrupt state record: {e}"))
}

fn prefix(key: &Key) -> Vec<u8> {
    state::variant_prefix(key)
}

/// The key bytes of `key` without its last `drop` bytes: the prefix of
/// every record sharing its leading fields.
fn leading(key: &Key, drop: usize) -> Vec<u8> {
    let bytes = key.bytes();
    bytes[..bytes.len() - drop].to_vec()
}

const NO_HASH: Hash = Hash([0; 32]);

fn height(state: &State) -> u64 {
    exec::meta(state).height
}

fn currency(state: &State) -> pb::Currency {
    let params: Params = state
        .get(&Key::Params)
        .expect("the state holds its params from genesis on");
    pb::Currency {
        code: params.currency.code,
        minor_units: params.currency.minor_units as u32,
    }
}

/// Unit symbols of resource kinds, looked up once per call.
#[derive(Default)]
struct Units(HashMap<String, String>);

impl Units {
    fn of(&mut self, state: &State, kind: &str) -> String {
        self.0
            .entry(kind.to_string())
            .or_insert_with(|| {
                state
                    .get::<ResourceKind>(&Key::Kind(kind.to_string()))
                    .map(|k| k.unit.symbol().to_string())
                    .unwrap_or_default()
            })
            .clone()
    }
}

/// Contracts looked up once per call.
#[derive(Default)]
struct Contracts(HashMap<Hash, Option<Contract>>);

impl Contracts {
    fn of(&mut self, state: &State, id: Hash) -> Option<&Contract> {
        self.0
            .entry(id)
            .or_insert_with(|| state.get(&Key::Contract(id)))
            .as_ref()
    }
}

fn account_arg(account: &pb::Account) -> Result<Account, Status> {
    use pb::account::Account as Holder;
    match &account.account {
        Some(Holder::Firm(firm)) if !firm.is_empty() => Ok(Account::Firm(firm.clone())),
        Some(Holder::Pool(pool)) => Ok(Account::Pool(hash_field(pool, "account.pool")?)),
        _ => Err(invalid("account: set a firm id or a pool id")),
    }
}

fn journal_pb(journal: &[JournalEntry]) -> Vec<pb::JournalEntry> {
    journal
        .iter()
        .map(|entry| pb::JournalEntry {
            account: Some(account_pb(&entry.account)),
            amount: entry.amount,
        })
        .collect()
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Admin => "admin",
        Role::Operator => "operator",
        Role::Meter => "meter",
    }
}

fn listing_pb(id: Hash, listing: Listing, now_ms: u64, unit: String) -> pb::Listing {
    let (status, accepted_by, closed_at_ms) = match &listing.status {
        ListingStatus::Open if listing.terms.valid_until_ms > now_ms => ("open", String::new(), 0),
        ListingStatus::Open => ("expired", String::new(), 0),
        ListingStatus::Accepted { by, at_ms } => ("accepted", by.clone(), *at_ms),
        ListingStatus::Withdrawn { at_ms } => ("withdrawn", String::new(), *at_ms),
    };
    let terms = listing.terms;
    pb::Listing {
        id: id.0.to_vec(),
        owner: listing.owner,
        side: match listing.side {
            Side::Offer => "offer",
            Side::Request => "request",
        }
        .into(),
        kind: terms.kind,
        unit,
        quantity_per_period: terms.quantity_per_period,
        price: terms.price,
        delivery_point: terms.delivery_point,
        quality: terms.quality.into_iter().collect(),
        period_ms: terms.period_ms,
        periods: terms.periods,
        valid_until_ms: terms.valid_until_ms,
        status: status.into(),
        accepted_by,
        closed_at_ms,
    }
}

fn contract_status(contract: &Contract) -> &'static str {
    match contract.status {
        ContractStatus::Proposed => "proposed",
        ContractStatus::Active { .. } => "active",
        ContractStatus::Terminated { .. } => "terminated",
        ContractStatus::Withdrawn { .. } => "withdrawn",
    }
}

fn contract_pb(id: Hash, contract: &Contract, unit: String) -> pb::Contract {
    let terms = &contract.terms;
    let s = &terms.settlement;
    let (signed_at_ms, terminated_at_ms) = match contract.status {
        ContractStatus::Proposed => (0, 0),
        ContractStatus::Active { signed_at_ms } => (signed_at_ms, 0),
        // The signing time is not kept once terminated.
        ContractStatus::Terminated { at_ms } => (0, at_ms),
        ContractStatus::Withdrawn { at_ms } => (0, at_ms),
    };
    pb::Contract {
        id: id.0.to_vec(),
        supplier: terms.supplier.clone(),
        consumer: terms.consumer.clone(),
        proposer: contract.proposer.clone(),
        kind: terms.kind.clone(),
        unit,
        delivery_point: terms.delivery_point.clone(),
        quality: terms.quality.clone().into_iter().collect(),
        settlement: Some(pb::SettlementTerms {
            price: s.price,
            committed: s.committed,
            tolerance_bp: s.tolerance_bp as u32,
            supply_penalty: s.supply_penalty,
            offtake_penalty: s.offtake_penalty,
            excess_price: s.excess_price,
            penalty_cap: s.penalty_cap,
            meter_tolerance: s.meter_tolerance,
        }),
        start_ms: terms.start_ms,
        period_ms: terms.period_ms,
        periods: terms.periods,
        billing_meter: terms.billing_meter.0.to_vec(),
        check_meter: terms.check_meter.map(|k| k.0.to_vec()).unwrap_or_default(),
        arbiter: terms.arbiter.clone().unwrap_or_default(),
        listing: terms.listing.map(|h| h.0.to_vec()).unwrap_or_default(),
        gain_pool: terms.gain_pool.map(|h| h.0.to_vec()).unwrap_or_default(),
        status: contract_status(contract).into(),
        signed_at_ms,
        terminated_at_ms,
        terminate_requests: contract.terminate_requests.clone(),
    }
}

/// The statement of a settled period; None when not settled.
fn statement_pb(
    id: Hash,
    period: u32,
    record: &PeriodRecord,
    contract: &Contract,
    unit: String,
) -> Option<pb::Statement> {
    let settled = record.settled.as_ref()?;
    let st = &settled.statement;
    Some(pb::Statement {
        contract: id.0.to_vec(),
        period,
        supplier: contract.terms.supplier.clone(),
        consumer: contract.terms.consumer.clone(),
        kind: contract.terms.kind.clone(),
        unit,
        settled_at_ms: settled.at_ms,
        availability: st.availability,
        delivered: st.delivered,
        check: st.check,
        lower: st.lower,
        upper: st.upper,
        base_units: st.base_units,
        excess_units: st.excess_units,
        energy_charge: st.energy_charge,
        supply_shortfall_units: st.supply_shortfall_units,
        supply_penalty: st.supply_penalty,
        offtake_shortfall_units: st.offtake_shortfall_units,
        offtake_penalty: st.offtake_penalty,
        statement_net: st.net,
        adjustment: settled.adjustment,
        net: settled.net,
        avoided_g: settled.avoided_g,
        flags: st
            .flags
            .iter()
            .map(|flag| {
                match flag {
                    Flag::MeterDiscrepancy => "meter_discrepancy",
                    Flag::CheckMeterMismatch => "check_meter_mismatch",
                }
                .to_string()
            })
            .collect(),
        journal: journal_pb(&settled.journal),
    })
}

fn period_pb(
    id: Hash,
    period: u32,
    record: &PeriodRecord,
    contract: &Contract,
    unit: String,
) -> pb::ContractPeriod {
    let mut out = pb::ContractPeriod {
        period,
        availability: record.availability,
        delivered: record.delivered,
        check: record.check,
        statement: statement_pb(id, period, record, contract, unit),
        adjustment_journal: journal_pb(&record.adjustment_journal),
        ..Default::default()
    };
    match &record.dispute {
        None => {}
        Some(DisputeStatus::Open { by, reason }) => {
            out.dispute = "open".into();
            out.dispute_by = by.clone();
            out.dispute_reason = reason.clone();
        }
        Some(DisputeStatus::Resolved { adjustment, at_ms }) => {
            out.dispute = "resolved".into();
            out.dispute_adjustment = *adjustment;
            out.dispute_resolved_at_ms = *at_ms;
        }
    }
    out
}

fn pool_pb(id: Hash, pool: &Pool) -> pb::Pool {
    pb::Pool {
        id: id.0.to_vec(),
        name: pool.name.clone(),
        operator: pool.operator.clone(),
        keys: pool
            .keys
            .iter()
            .map(|(member, bp)| pb::PoolKey {
                member: member.clone(),
                basis_points: *bp as u32,
            })
            .collect(),
        start_ms: pool.start_ms,
        period_ms: pool.period_ms,
        joined: pool.joined.iter().cloned().collect(),
        waiting: pool.waiting(),
        active: pool.is_active(),
    }
}

fn pool_period_pb(period: u32, record: PoolPeriod) -> pb::PoolPeriod {
    pb::PoolPeriod {
        period,
        gain_net: record.gain_net,
        split_done: record.split.is_some(),
        split: record
            .split
            .unwrap_or_default()
            .into_iter()
            .map(|(member, amount)| pb::PoolShare { member, amount })
            .collect(),
        postings: record
            .postings
            .into_iter()
            .map(|posting| {
                let counts = posting.status.counts();
                let (status, by, at_ms) = match posting.status {
                    PostingStatus::Open => ("open", String::new(), 0),
                    PostingStatus::Objected { by, at_ms } => ("objected", by, at_ms),
                    PostingStatus::Accepted { by, at_ms } => ("accepted", by, at_ms),
                    PostingStatus::Refused { by, at_ms } => ("refused", by, at_ms),
                };
                pb::PoolPosting {
                    id: posting.id.0.to_vec(),
                    member: posting.member,
                    amount: posting.amount,
                    status: status.into(),
                    by,
                    at_ms,
                    counts,
                }
            })
            .collect(),
    }
}

fn proposal_pb(id: Hash, proposal: Proposal, now_ms: u64) -> pb::Proposal {
    let (action_kind, subject) = match &proposal.action {
        GovAction::AddFirm(firm) => ("add_firm", firm.id.clone()),
        GovAction::RemoveFirm { id } => ("remove_firm", id.clone()),
        GovAction::AddNode(node) => ("add_node", node.id.clone()),
        GovAction::RemoveNode { id } => ("remove_node", id.clone()),
        GovAction::SetPower { node, .. } => ("set_power", node.clone()),
        GovAction::SetConsensus(_) => ("set_consensus", String::new()),
        GovAction::RegisterKind(kind) => ("register_kind", kind.id.clone()),
    };
    let (status, passed_at_ms) = match proposal.status {
        ProposalStatus::Open if proposal.expires_ms > now_ms => ("open", 0),
        ProposalStatus::Open => ("expired", 0),
        ProposalStatus::Passed { at_ms } => ("passed", at_ms),
    };
    pb::Proposal {
        id: id.0.to_vec(),
        proposer: proposal.proposer,
        action_kind: action_kind.into(),
        subject,
        action: codec::encode(&proposal.action),
        expires_ms: proposal.expires_ms,
        votes: proposal
            .votes
            .into_iter()
            .map(|(firm, approve)| pb::Vote { firm, approve })
            .collect(),
        status: status.into(),
        passed_at_ms,
    }
}

impl QueryApi {
    /// Runs `read` against the state of the node's last block.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&State) -> Result<T, Status> + Send + 'static,
    ) -> Answer<T> {
        let answer = self
            .node
            .read(move |replica| read(replica.chain().state()))
            .await
            .ok_or_else(unavailable)?;
        answer.map(Response::new)
    }
}

#[tonic::async_trait]
impl Query for QueryApi {
    async fn list_firms(
        &self,
        request: Request<pb::ListFirmsRequest>,
    ) -> Answer<pb::ListFirmsResponse> {
        let request = request.into_inner();
        let prefixes = vec![prefix(&Key::Firm(String::new()))];
        let paging = Paging::new(request.page_size, &request.page_token, &prefixes)?;
        self.read(move |state| {
            let page = scan_page(state, &prefixes, &paging, |_, bytes| {
                let firm: Firm = value(bytes);
                (request.firm.is_empty() || firm.id == request.firm).then_some(firm)
            });
            // Keys are few (a firm's staff and meters): one pass over them
            // all, grouped by firm, for the firms of this page.
            let mut keys: BTreeMap<String, Vec<pb::FirmKey>> = page
                .items
                .iter()
                .map(|firm| (firm.id.clone(), Vec::new()))
                .collect();
            let key_prefix = prefix(&Key::Key(PublicKey([0; 32])));
            for (key, record) in state.scan::<KeyRecord>(&key_prefix) {
                if let (Some(list), Ok(Key::Key(public))) =
                    (keys.get_mut(&record.firm), codec::decode::<Key>(&key))
                {
                    list.push(pb::FirmKey {
                        key: public.0.to_vec(),
                        role: role_name(record.role).into(),
                    });
                }
            }
            let firms = page
                .items
                .into_iter()
                .map(|firm| pb::Firm {
                    keys: keys.remove(&firm.id).unwrap_or_default(),
                    id: firm.id,
                    name: firm.name,
                    admin_key: firm.admin_key.0.to_vec(),
                    facilitator: firm.facilitator,
                })
                .collect();
            Ok(pb::ListFirmsResponse {
                height: height(state),
                firms,
                next_page_token: page.next,
            })
        })
        .await
    }

    async fn list_kinds(
        &self,
        request: Request<pb::ListKindsRequest>,
    ) -> Answer<pb::ListKindsResponse> {
        let request = request.into_inner();
        let prefixes = vec![prefix(&Key::Kind(String::new()))];
        let paging = Paging::new(request.page_size, &request.page_token, &prefixes)?;
        self.read(move |state| {
            let page = scan_page(state, &prefixes, &paging, |_, bytes| {
                let kind: ResourceKind = value(bytes);
                Some(pb::Kind {
                    id: kind.id,
                    name: kind.name,
                    unit: kind.unit.symbol().into(),
                    emission_factor_g: kind.emission_factor_g,
                    waste: kind.waste,
                    ewc_code: kind.ewc_code.unwrap_or_default(),
                    quality: kind.quality,
                })
            });
            Ok(pb::ListKindsResponse {
                height: height(state),
                kinds: page.items,
                next_page_token: page.next,
            })
        })
        .await
    }

    async fn list_licences(
        &self,
        request: Request<pb::ListLicencesRequest>,
    ) -> Answer<pb::ListLicencesResponse> {
        let request = request.into_inner();
        let prefixes = if request.firm.is_empty() {
            vec![prefix(&Key::Licence {
                firm: String::new(),
                ewc_code: String::new(),
            })]
        } else {
            // Without the empty ewc_code's length (8 bytes).
            vec![leading(
                &Key::Licence {
                    firm: request.firm.clone(),
                    ewc_code: String::new(),
                },
                8,
            )]
        };
        let paging = Paging::new(request.page_size, &request.page_token, &prefixes)?;
        self.read(move |state| {
            let now_ms = exec::meta(state).time_ms;
            let page = scan_page(state, &prefixes, &paging, |key, bytes| {
                let Key::Licence { firm, ewc_code } = key else {
                    return None;
                };
                let licence: Licence = value(bytes);
                Some(pb::Licence {
                    firm,
                    ewc_code,
                    expires_ms: licence.expires_ms,
                    valid: licence.expires_ms > now_ms,
                })
            });
            Ok(pb::ListLicencesResponse {
                height: height(state),
                licences: page.items,
                next_page_token: page.next,
            })
        })
        .await
    }

    async fn list_listings(
        &self,
        request: Request<pb::ListListingsRequest>,
    ) -> Answer<pb::ListListingsResponse> {
        let request = request.into_inner();
        let side = match request.side.as_str() {
            "" => None,
            "offer" => Some(Side::Offer),
            "request" => Some(Side::Request),
            other => {
                return Err(invalid(format!(
                    "side {other:?}: use \"offer\", \"request\" or nothing"
                )));
            }
        };
        let prefixes = vec![prefix(&Key::Listing(NO_HASH))];
        let paging = Paging::new(request.page_size, &request.page_token, &prefixes)?;
        self.read(move |state| {
            let now_ms = exec::meta(state).time_ms;
            let mut units = Units::default();
            let page = scan_page(state, &prefixes, &paging, |key, bytes| {
                let Key::Listing(id) = key else { return None };
                let listing: Listing = value(bytes);
                let terms = &listing.terms;
                let keep = side.is_none_or(|s| s == listing.side)
                    && (!request.open_only
                        || (listing.status == ListingStatus::Open
                            && terms.valid_until_ms > now_ms))
                    && (request.kind.is_empty() || terms.kind == request.kind)
                    && (request.firm.is_empty() || listing.owner == request.firm)
                    && request.min_price.is_none_or(|min| terms.price >= min)
                    && request.max_price.is_none_or(|max| terms.price <= max);
                if !keep {
                    return None;
                }
                let unit = units.of(state, &terms.kind);
                Some(listing_pb(id, listing, now_ms, unit))
            });
            Ok(pb::ListListingsResponse {
                height: height(state),
                currency: Some(currency(state)),
                listings: page.items,
                next_page_token: page.next,
            })
        })
        .await
    }

    async fn list_contracts(
        &self,
        request: Request<pb::ListContractsRequest>,
    ) -> Answer<pb::ListContractsResponse> {
        let request = request.into_inner();
        if !["", "proposed", "active", "terminated", "withdrawn"].contains(&request.status.as_str())
        {
            return Err(invalid(format!(
                "status {:?}: use \"proposed\", \"active\", \"terminated\" or nothing",
                request.status
            )));
        }
        let prefixes = vec![prefix(&Key::Contract(NO_HASH))];
        let paging = Paging::new(request.page_size, &request.page_token, &prefixes)?;
        self.read(move |state| {
            let mut units = Units::default();
            let page = scan_page(state, &prefixes, &paging, |key, bytes| {
                let Key::Contract(id) = key else { return None };
                let contract: Contract = value(bytes);
                let terms = &contract.terms;
                let keep = (request.firm.is_empty()
                    || terms.supplier == request.firm
                    || terms.consumer == request.firm
                    || terms.arbiter.as_deref() == Some(request.firm.as_str()))
                    && (request.status.is_empty() || contract_status(&contract) == request.status);
                if !keep {
                    return None;
                }
                let unit = units.of(state, &terms.kind);
                Some(contract_pb(id, &contract, unit))
            });
            Ok(pb::ListContractsResponse {
                height: height(state),
                currency: Some(currency(state)),
                contracts: page.items,
                next_page_token: page.next,
            })
        })
        .await
    }

    async fn get_contract(
        &self,
        request: Request<pb::GetContractRequest>,
    ) -> Answer<pb::GetContractResponse> {
        let request = request.into_inner();
        let id = hash_field(&request.id, "id")?;
        // Without the period index (4 bytes).
        let prefixes = vec![leading(
            &Key::Period {
                contract: id,
                period: 0,
            },
            4,
        )];
        let paging = Paging::new(request.page_size, &request.page_token, &prefixes)?;
        self.read(move |state| {
            let contract: Contract = state
                .get(&Key::Contract(id))
                .ok_or_else(|| not_found(format!("no contract {}", hex(&id))))?;
            let unit = Units::default().of(state, &contract.terms.kind);
            let page = scan_page(state, &prefixes, &paging, |key, bytes| {
                let Key::Period { period, .. } = key else {
                    return None;
                };
                let record: PeriodRecord = value(bytes);
                Some(period_pb(id, period, &record, &contract, unit.clone()))
            });
            Ok(pb::GetContractResponse {
                height: height(state),
                currency: Some(currency(state)),
                contract: Some(contract_pb(id, &contract, unit)),
                periods: page.items,
                next_page_token: page.next,
            })
        })
        .await
    }

    async fn list_statements(
        &self,
        request: Request<pb::ListStatementsRequest>,
    ) -> Answer<pb::ListStatementsResponse> {
        let request = request.into_inner();
        let contract = if request.contract.is_empty() {
            None
        } else {
            Some(hash_field(&request.contract, "contract")?)
        };
        let prefixes = vec![match contract {
            Some(contract) => leading(
                &Key::Period {
                    contract,
                    period: 0,
                },
                4,
            ),
            None => prefix(&Key::Period {
                contract: NO_HASH,
                period: 0,
            }),
        }];
        let paging = Paging::new(request.page_size, &request.page_token, &prefixes)?;
        self.read(move |state| {
            let mut units = Units::default();
            let mut contracts = Contracts::default();
            let page = scan_page(state, &prefixes, &paging, |key, bytes| {
                let Key::Period { contract, period } = key else {
                    return None;
                };
                let terms = &contracts.of(state, contract)?.terms;
                if !request.firm.is_empty()
                    && terms.supplier != request.firm
                    && terms.consumer != request.firm
                {
                    return None;
                }
                let record: PeriodRecord = value(bytes);
                record.settled.as_ref()?;
                let unit = units.of(state, &terms.kind);
                let found = contracts.of(state, contract)?;
                statement_pb(contract, period, &record, found, unit)
            });
            Ok(pb::ListStatementsResponse {
                height: height(state),
                currency: Some(currency(state)),
                statements: page.items,
                next_page_token: page.next,
            })
        })
        .await
    }

    async fn balances(
        &self,
        request: Request<pb::BalancesRequest>,
    ) -> Answer<pb::BalancesResponse> {
        let request = request.into_inner();
        let account = request.account.as_ref().map(account_arg).transpose()?;
        let nobody = Account::Firm(String::new());
        let prefixes = vec![
            prefix(&Key::Balance(nobody.clone())),
            prefix(&Key::Obligation {
                debtor: nobody.clone(),
                creditor: nobody,
            }),
        ];
        let paging = Paging::new(request.page_size, &request.page_token, &prefixes)?;
        enum Item {
            Balance(pb::Balance),
            Obligation(pb::Obligation),
        }
        self.read(move |state| {
            let page = scan_page(state, &prefixes, &paging, |key, bytes| match key {
                Key::Balance(holder) if account.as_ref().is_none_or(|a| *a == holder) => {
                    Some(Item::Balance(pb::Balance {
                        account: Some(account_pb(&holder)),
                        balance: value(bytes),
                    }))
                }
                Key::Obligation { debtor, creditor }
                    if account
                        .as_ref()
                        .is_none_or(|a| *a == debtor || *a == creditor) =>
                {
                    Some(Item::Obligation(pb::Obligation {
                        debtor: Some(account_pb(&debtor)),
                        creditor: Some(account_pb(&creditor)),
                        amount: value(bytes),
                    }))
                }
                _ => None,
            });
            let mut response = pb::BalancesResponse {
                height: height(state),
                currency: Some(currency(state)),
                next_page_token: page.next,
                ..Default::default()
            };
            for item in page.items {
                match item {
                    Item::Balance(b) => response.balances.push(b),
                    Item::Obligation(o) => response.obligations.push(o),
                }
            }
            Ok(response)
        })
        .await
    }

    async fn list_pools(
        &self,
        request: Request<pb::ListPoolsRequest>,
    ) -> Answer<pb::ListPoolsResponse> {
        let request = request.into_inner();
        let prefixes = vec![prefix(&Key::Pool(NO_HASH))];
        let paging = Paging::new(request.page_size, &request.page_token, &prefixes)?;
        self.read(move |state| {
            let page = scan_page(state, &prefixes, &paging, |key, bytes| {
                let Key::Pool(id) = key else { return None };
                let pool: Pool = value(bytes);
                let keep = request.firm.is_empty()
                    || pool.operator == request.firm
                    || pool.keys.contains_key(&request.firm);
                keep.then(|| pool_pb(id, &pool))
            });
            Ok(pb::ListPoolsResponse {
                height: height(state),
                pools: page.items,
                next_page_token: page.next,
            })
        })
        .await
    }

    async fn get_pool(&self, request: Request<pb::GetPoolRequest>) -> Answer<pb::GetPoolResponse> {
        let request = request.into_inner();
        let id = hash_field(&request.id, "id")?;
        let prefixes = vec![leading(
            &Key::PoolPeriod {
                pool: id,
                period: 0,
            },
            4,
        )];
        let paging = Paging::new(request.page_size, &request.page_token, &prefixes)?;
        self.read(move |state| {
            let pool: Pool = state
                .get(&Key::Pool(id))
                .ok_or_else(|| not_found(format!("no pool {}", hex(&id))))?;
            let page = scan_page(state, &prefixes, &paging, |key, bytes| {
                let Key::PoolPeriod { period, .. } = key else {
                    return None;
                };
                Some(pool_period_pb(period, value(bytes)))
            });
            Ok(pb::GetPoolResponse {
                height: height(state),
                currency: Some(currency(state)),
                pool: Some(pool_pb(id, &pool)),
                periods: page.items,
                next_page_token: page.next,
            })
        })
        .await
    }

    async fn list_proposals(
        &self,
        request: Request<pb::ListProposalsRequest>,
    ) -> Answer<pb::ListProposalsResponse> {
        let request = request.into_inner();
        let prefixes = vec![prefix(&Key::Proposal(NO_HASH))];
        let paging = Paging::new(request.page_size, &request.page_token, &prefixes)?;
        self.read(move |state| {
            let now_ms = exec::meta(state).time_ms;
            let page = scan_page(state, &prefixes, &paging, |key, bytes| {
                let Key::Proposal(id) = key else { return None };
                let proposal = proposal_pb(id, value(bytes), now_ms);
                (!request.open_only || proposal.status == "open").then_some(proposal)
            });
            Ok(pb::ListProposalsResponse {
                height: height(state),
                proposals: page.items,
                next_page_token: page.next,
            })
        })
        .await
    }

    async fn get_receipt(
        &self,
        request: Request<pb::GetReceiptRequest>,
    ) -> Answer<pb::GetReceiptResponse> {
        let id = hash_field(&request.into_inner().tx_id, "tx_id")?;
        self.read(move |state| {
            let receipt = exec::receipt(state, &id)
                .ok_or_else(|| not_found(format!("no committed transaction {}", hex(&id))))?;
            Ok(pb::GetReceiptResponse {
                height: height(state),
                block_height: receipt.height,
                index: receipt.index,
                error: receipt.error.unwrap_or_default(),
            })
        })
        .await
    }

    async fn get_signer(
        &self,
        request: Request<pb::GetSignerRequest>,
    ) -> Answer<pb::GetSignerResponse> {
        let key = PublicKey(hash_field(&request.into_inner().public_key, "public_key")?.0);
        let answer = self
            .node
            .read(move |replica| {
                let state = replica.chain().state();
                let (pending, next_free_nonce) = replica.mempool().signer_nonces(state, &key);
                let actor = exec::actor_of(state, &key).ok();
                pb::GetSignerResponse {
                    height: height(state),
                    authorized: actor.is_some(),
                    firm: actor.as_ref().map(|a| a.firm.clone()).unwrap_or_default(),
                    role: actor
                        .map(|a| role_name(a.role).to_string())
                        .unwrap_or_default(),
                    next_nonce: mempool::next_nonce(state, &key),
                    pending: u32::try_from(pending).unwrap_or(u32::MAX),
                    next_free_nonce,
                }
            })
            .await
            .ok_or_else(unavailable)?;
        Ok(Response::new(answer))
    }

    async fn avoided_co2(
        &self,
        request: Request<pb::AvoidedCo2Request>,
    ) -> Answer<pb::AvoidedCo2Response> {
        let request = request.into_inner();
        self.read(move |state| {
            let mut response = pb::AvoidedCo2Response {
                height: height(state),
                network_g: exec::avoided_grams(state, &AvoidedAccount::Network),
                ..Default::default()
            };
            // One record per firm that ever avoided anything.
            let avoided_prefix = prefix(&Key::Avoided(AvoidedAccount::Network));
            for (key, grams) in state.scan::<u64>(&avoided_prefix) {
                if let Ok(Key::Avoided(AvoidedAccount::Firm(firm))) = codec::decode::<Key>(&key)
                    && (request.firm.is_empty() || firm == request.firm)
                {
                    response.firms.push(pb::FirmAvoided { firm, grams });
                }
            }
            if request.by_kind {
                let mut contracts = Contracts::default();
                let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
                let period_prefix = prefix(&Key::Period {
                    contract: NO_HASH,
                    period: 0,
                });
                for (key, record) in state.scan::<PeriodRecord>(&period_prefix) {
                    let (Ok(Key::Period { contract, .. }), Some(settled)) =
                        (codec::decode::<Key>(&key), &record.settled)
                    else {
                        continue;
                    };
                    if let Some(contract) = contracts.of(state, contract) {
                        *kinds.entry(contract.terms.kind.clone()).or_default() += settled.avoided_g;
                    }
                }
                response.kinds = kinds
                    .into_iter()
                    .map(|(kind, grams)| pb::KindAvoided { kind, grams })
                    .collect();
            }
            Ok(response)
        })
        .await
    }
}

fn hex(hash: &Hash) -> String {
    hash.0.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Receipts of ids 0..n (id: the index in the first 4 bytes, big
    /// endian, so key order is index order).
    fn receipts(n: u32) -> State {
        let records = (0..n)
            .map(|i| {
                let mut id = [0; 32];
                id[..4].copy_from_slice(&i.to_be_bytes());
                (Key::Receipt(Hash(id)).bytes(), Vec::new())
            })
            .collect();
        State::from_records(records, NO_HASH)
    }

    fn index(key: &Key) -> u32 {
        let Key::Receipt(id) = key else { panic!() };
        u32::from_be_bytes(id.0[..4].try_into().unwrap())
    }

    fn pages(state: &State, size: usize, keep: impl Fn(u32) -> bool) -> Vec<Vec<u32>> {
        let prefixes = vec![prefix(&Key::Receipt(NO_HASH))];
        let mut paging = Paging { size, after: None };
        let mut out = Vec::new();
        loop {
            let page = scan_page(state, &prefixes, &paging, |key, _| {
                let i = index(&key);
                keep(i).then_some(i)
            });
            out.push(page.items);
            if page.next.is_empty() {
                return out;
            }
            // The token is one this call accepts.
            paging.after = page_token(&page.next, &prefixes).unwrap();
        }
    }

    #[test]
    fn pages_cover_every_record_once_in_order() {
        let state = receipts(7);
        assert_eq!(
            pages(&state, 3, |_| true),
            [vec![0, 1, 2], vec![3, 4, 5], vec![6]]
        );
        // A last page that is exactly full says there is no more.
        assert_eq!(pages(&state, 7, |_| true), [vec![0, 1, 2, 3, 4, 5, 6]]);
        assert_eq!(pages(&state, 2, |i| i % 3 == 0), [vec![0, 3], vec![6]]);
        assert_eq!(pages(&State::default(), 2, |_| true), [Vec::<u32>::new()]);
    }

    #[test]
    fn a_call_reads_at_most_max_scan_records() {
        let n = MAX_SCAN as u32 + 5;
        let state = receipts(n);
        // Only the last two match: the first call stops after MAX_SCAN
        // records with nothing found but a token to go on.
        assert_eq!(
            pages(&state, 100, |i| i >= n - 2),
            [vec![], vec![n - 2, n - 1]]
        );
    }

    #[test]
    fn page_arguments_are_checked() {
        assert_eq!(page_size(0).unwrap(), DEFAULT_PAGE_SIZE as usize);
        assert_eq!(page_size(MAX_PAGE_SIZE).unwrap(), MAX_PAGE_SIZE as usize);
        let too_big = page_size(MAX_PAGE_SIZE + 1).unwrap_err();
        assert_eq!(too_big.code(), Code::InvalidArgument);
        assert!(too_big.message().starts_with("invalid_argument: "));
        let prefixes = vec![prefix(&Key::Receipt(NO_HASH))];
        assert_eq!(page_token(&[], &prefixes).unwrap(), None);
        let receipt = Key::Receipt(Hash([3; 32])).bytes();
        assert_eq!(page_token(&receipt, &prefixes).unwrap(), Some(receipt));
        for bad in [
            Key::Firm("a".into()).bytes(),
            vec![0xff; 5],
            Key::Receipt(Hash([3; 32])).bytes()[..20].to_vec(),
        ] {
            let error = page_token(&bad, &prefixes).unwrap_err();
            assert_eq!(error.code(), Code::InvalidArgument);
            assert!(error.message().starts_with("malformed: "));
        }
    }
}
