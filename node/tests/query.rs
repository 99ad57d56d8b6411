//! The Query service over gRPC, against four in-process validators: firms
//! authorize keys, post offers and requests, accept and withdraw, sign a
//! contract, record readings and settle a period, create and join a pool,
//! propose and vote; then every query is asked over gRPC and its answer
//! checked exactly, with filters, paging across pages and the refusals
//! (INVALID_ARGUMENT, NOT_FOUND).

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::TcpListener;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::key;
use symbiont_contracts::genesis::{ResourceKind, Unit};
use symbiont_contracts::hash::Hash;
use symbiont_contracts::keys::Keypair;
use symbiont_contracts::kinds::{ContractTerms, GovAction, ListingTerms};
use symbiont_contracts::settlement::SettlementTerms;
use symbiont_contracts::tx::{KeyRole, SignedTx, TxBody, TxKind};
use symbiont_node::p2p::{Multiaddr, peer_id_of};
use symbiont_node::service::{ServiceConfig, ServiceHandle, TxStatus, start};
use symbiont_proto::v1 as pb;
use symbiont_proto::v1::query_client::QueryClient;
use tonic::Code;
use tonic::transport::Channel;

const CHAIN: &str = "query-test";
const MINUTE: u64 = 60_000;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn address(port: u16) -> Multiaddr {
    format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Four validators (firms a-d, admins of seeds 1-4, nodes of seeds 11-14),
/// node 0 serving gRPC on a port the OS picks.
async fn four_nodes(dirs: &[tempfile::TempDir]) -> Vec<ServiceHandle> {
    let genesis = support::four_validators(CHAIN, now_ms() - 1000, 500, 200, 100);
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let mut handles = Vec::new();
    for i in 0..4 {
        let peers = (0..4)
            .filter(|j| *j != i)
            .map(|j| (peer_id_of(&key(11 + j as u8).public()), address(ports[j])))
            .collect();
        let config = ServiceConfig {
            genesis: genesis.clone(),
            keypair: Keypair::from_seed([11 + i as u8; 32]),
            data_dir: dirs[i].path().to_path_buf(),
            listen: address(ports[i]),
            grpc: (i == 0).then(|| "127.0.0.1:0".parse().unwrap()),
            peers,
            metrics_address: None,
        };
        handles.push(start(config).await.unwrap().0);
    }
    handles
}

/// Signs transactions with each seed's next nonce.
#[derive(Default)]
struct Signer {
    nonces: HashMap<u8, u64>,
}

impl Signer {
    fn tx(&mut self, seed: u8, kind: TxKind) -> SignedTx {
        let nonce = self.nonces.entry(seed).or_insert(0);
        *nonce += 1;
        SignedTx::sign(
            TxBody {
                chain_id: CHAIN.into(),
                nonce: *nonce,
                kind,
            },
            &key(seed),
        )
    }
}

/// Submits `txs` to `node` and waits until each is committed and applied.
async fn commit(node: &ServiceHandle, txs: &[SignedTx]) -> Vec<Hash> {
    let mut ids = Vec::new();
    for tx in txs {
        ids.push(node.submit(tx.clone()).await.unwrap().unwrap());
    }
    for (tx, id) in txs.iter().zip(&ids) {
        loop {
            match node.tx(*id).await.unwrap() {
                TxStatus::Committed(receipt) => {
                    assert_eq!(receipt.error, None, "{:?}", tx.body.kind);
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
    ids
}

fn listing(price: i64, now: u64) -> ListingTerms {
    ListingTerms {
        kind: "steam".into(),
        quantity_per_period: 10_000,
        price,
        delivery_point: "Gate 1".into(),
        quality: BTreeMap::new(),
        period_ms: MINUTE,
        periods: 10,
        valid_until_ms: now + 3_600_000,
    }
}

/// A contract of two periods of a minute from `start_ms`, metered by the
/// meter key of seed `meter`.
fn contract(supplier: &str, consumer: &str, start_ms: u64, meter: u8) -> ContractTerms {
    ContractTerms {
        supplier: supplier.into(),
        consumer: consumer.into(),
        kind: "steam".into(),
        delivery_point: "Gate 2".into(),
        quality: BTreeMap::new(),
        settlement: SettlementTerms {
            price: 9_000,
            committed: 100_000,
            tolerance_bp: 1_000,
            supply_penalty: 3_000,
            offtake_penalty: 2_000,
            excess_price: None,
            penalty_cap: None,
            meter_tolerance: None,
        },
        start_ms,
        period_ms: MINUTE,
        periods: 2,
        billing_meter: key(meter).public(),
        check_meter: None,
        arbiter: None,
        listing: None,
        gain_pool: None,
    }
}

fn code_of(status: &tonic::Status) -> (Code, String) {
    let trailer = status
        .metadata()
        .get("symbiont-code")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    assert!(
        status.message().starts_with(&format!("{trailer}: ")),
        "{status:?}"
    );
    (status.code(), trailer)
}

fn firm(name: &str) -> Option<pb::Account> {
    Some(pb::Account {
        account: Some(pb::account::Account::Firm(name.into())),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_answer_the_state_exactly() {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes = four_nodes(&dirs).await;
    let run = async {
        let node = &nodes[0];
        let grpc = node.grpc_address.expect("node 0 serves gRPC");
        assert_ne!(grpc.port(), 0, "the bound port is reported");
        let channel = Channel::from_shared(format!("http://{grpc}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let health = tonic_health::pb::health_client::HealthClient::new(channel.clone())
            .check(tonic_health::pb::HealthCheckRequest {
                service: "symbiont.v1.Query".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            health.status(),
            tonic_health::pb::health_check_response::ServingStatus::Serving
        );
        let mut q = QueryClient::new(channel);
        let mut s = Signer::default();
        let now = now_ms();
        // Period 0 of the contract is over; its metering closes in a minute.
        let start_ms = now - MINUTE;
        let kind = ResourceKind {
            id: "heat".into(),
            name: "Heat".into(),
            unit: Unit::GigaJoule,
            emission_factor_g: 50,
            waste: false,
            ewc_code: None,
            quality: vec![],
        };

        // Keys first: the contracts name b's and c's meters.
        commit(
            node,
            &[
                s.tx(
                    1,
                    TxKind::AuthorizeKey {
                        firm: "a".into(),
                        key: key(51).public(),
                        role: KeyRole::Operator,
                    },
                ),
                s.tx(
                    2,
                    TxKind::AuthorizeKey {
                        firm: "b".into(),
                        key: key(52).public(),
                        role: KeyRole::Meter,
                    },
                ),
                s.tx(
                    3,
                    TxKind::AuthorizeKey {
                        firm: "c".into(),
                        key: key(53).public(),
                        role: KeyRole::Meter,
                    },
                ),
            ],
        )
        .await;
        // Listings, a contract, a pool, a proposal.
        let phase1 = [
            s.tx(
                1,
                TxKind::PostOffer {
                    listing: listing(1000, now),
                },
            ),
            s.tx(
                1,
                TxKind::PostOffer {
                    listing: listing(2000, now),
                },
            ),
            s.tx(
                1,
                TxKind::PostOffer {
                    listing: listing(3000, now),
                },
            ),
            s.tx(
                3,
                TxKind::PostRequest {
                    listing: listing(1500, now),
                },
            ),
            s.tx(
                3,
                TxKind::PostRequest {
                    listing: listing(2500, now),
                },
            ),
            s.tx(
                1,
                TxKind::ProposeContract {
                    terms: contract("a", "b", start_ms, 52),
                },
            ),
            s.tx(
                1,
                TxKind::CreatePool {
                    name: "PV field".into(),
                    keys: BTreeMap::from([("a".into(), 6000), ("b".into(), 4000)]),
                    start_ms: now,
                    period_ms: MINUTE,
                },
            ),
            s.tx(
                4,
                TxKind::Propose {
                    action: GovAction::RegisterKind(kind.clone()),
                    expires_ms: now + 3_600_000,
                },
            ),
        ];
        let ids = commit(node, &phase1).await;
        let [
            offer1,
            offer2,
            offer3,
            req1,
            req2,
            contract_ab,
            pool,
            proposal,
        ] = ids[..].try_into().unwrap();

        // Take one offer, withdraw another, countersign, join, vote, and a
        // second contract left proposed.
        let phase2 = [
            s.tx(2, TxKind::Accept { listing: offer1 }),
            s.tx(1, TxKind::Withdraw { listing: offer2 }),
            s.tx(
                2,
                TxKind::Countersign {
                    contract: contract_ab,
                },
            ),
            s.tx(2, TxKind::JoinPool { pool }),
            s.tx(
                3,
                TxKind::Vote {
                    proposal,
                    approve: false,
                },
            ),
            s.tx(
                51,
                TxKind::ProposeContract {
                    terms: contract("a", "c", start_ms, 53),
                },
            ),
        ];
        let ids2 = commit(node, &phase2).await;
        let contract_ac = ids2[5];

        // Readings of period 0, then its settlement.
        commit(
            node,
            &[
                s.tx(
                    51,
                    TxKind::RecordAvailability {
                        contract: contract_ab,
                        period: 0,
                        quantity: 100_000,
                    },
                ),
                s.tx(
                    51,
                    TxKind::RecordAvailability {
                        contract: contract_ab,
                        period: 1,
                        quantity: 80_000,
                    },
                ),
                s.tx(
                    52,
                    TxKind::RecordDelivery {
                        contract: contract_ab,
                        period: 0,
                        quantity: 95_000,
                    },
                ),
            ],
        )
        .await;
        let settle = commit(
            node,
            &[s.tx(
                51,
                TxKind::SettlePeriod {
                    contract: contract_ab,
                    period: 0,
                },
            )],
        )
        .await[0];

        // --- firms and keys, two pages of 3 + 1 ---
        let page1 = q
            .list_firms(pb::ListFirmsRequest {
                page_size: 3,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page1.height >= 4);
        assert_eq!(
            page1
                .firms
                .iter()
                .map(|f| f.id.as_str())
                .collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        assert!(!page1.next_page_token.is_empty());
        let a = &page1.firms[0];
        assert_eq!(a.name, "Firm a");
        assert_eq!(a.admin_key, key(1).public().0.to_vec());
        let mut a_keys: Vec<(Vec<u8>, &str)> = a
            .keys
            .iter()
            .map(|k| (k.key.clone(), k.role.as_str()))
            .collect();
        a_keys.sort();
        let mut expected = vec![
            (key(1).public().0.to_vec(), "admin"),
            (key(51).public().0.to_vec(), "operator"),
        ];
        expected.sort();
        assert_eq!(a_keys, expected);
        assert_eq!(page1.firms[1].keys.len(), 2, "b: admin and meter");
        let page2 = q
            .list_firms(pb::ListFirmsRequest {
                page_size: 3,
                page_token: page1.next_page_token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page2.firms.len(), 1);
        assert_eq!(page2.firms[0].id, "d");
        assert!(page2.next_page_token.is_empty());
        let only_c = q
            .list_firms(pb::ListFirmsRequest {
                firm: "c".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(only_c.firms.len(), 1);
        assert_eq!(only_c.firms[0].id, "c");

        // --- kinds ---
        let kinds = q
            .list_kinds(pb::ListKindsRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(kinds.kinds.len(), 1);
        assert_eq!(kinds.kinds[0].id, "steam");
        assert_eq!(kinds.kinds[0].unit, "t");
        assert_eq!(kinds.kinds[0].emission_factor_g, 1000);

        // --- licences: none granted ---
        let licences = q
            .list_licences(pb::ListLicencesRequest {
                firm: "a".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(licences.licences.is_empty());
        assert!(licences.next_page_token.is_empty());

        // --- listings ---
        let all = q
            .list_listings(pb::ListListingsRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(all.currency.as_ref().unwrap().code, "EUR");
        assert_eq!(all.currency.as_ref().unwrap().minor_units, 2);
        let by_id: HashMap<Vec<u8>, &pb::Listing> =
            all.listings.iter().map(|l| (l.id.clone(), l)).collect();
        assert_eq!(by_id.len(), 5);
        let l1 = by_id[&offer1.0.to_vec()];
        assert_eq!(
            (
                l1.owner.as_str(),
                l1.side.as_str(),
                l1.status.as_str(),
                l1.accepted_by.as_str(),
                l1.price,
                l1.unit.as_str(),
                l1.quantity_per_period
            ),
            ("a", "offer", "accepted", "b", 1000, "t", 10_000)
        );
        assert!(l1.closed_at_ms > 0);
        assert_eq!(by_id[&offer2.0.to_vec()].status, "withdrawn");
        assert_eq!(by_id[&offer3.0.to_vec()].status, "open");
        assert_eq!(by_id[&req1.0.to_vec()].side, "request");
        let ids_of = |r: &pb::ListListingsResponse| -> BTreeSet<Vec<u8>> {
            r.listings.iter().map(|l| l.id.clone()).collect()
        };
        let set = |hashes: &[Hash]| -> BTreeSet<Vec<u8>> {
            hashes.iter().map(|h| h.0.to_vec()).collect()
        };
        let open = q
            .list_listings(pb::ListListingsRequest {
                open_only: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(ids_of(&open), set(&[offer3, req1, req2]));
        let offers = q
            .list_listings(pb::ListListingsRequest {
                side: "offer".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(ids_of(&offers), set(&[offer1, offer2, offer3]));
        let priced = q
            .list_listings(pb::ListListingsRequest {
                min_price: Some(1500),
                max_price: Some(2500),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(ids_of(&priced), set(&[offer2, req1, req2]));
        let of_c = q
            .list_listings(pb::ListListingsRequest {
                firm: "c".into(),
                open_only: true,
                side: "request".into(),
                kind: "steam".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(ids_of(&of_c), set(&[req1, req2]));
        let none = q
            .list_listings(pb::ListListingsRequest {
                kind: "heat".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(none.listings.is_empty());
        // Pages of 2: 2 + 2 + 1, in key order, no duplicates, no gaps.
        let mut token = Vec::new();
        let mut paged = Vec::new();
        let mut pages = 0;
        loop {
            let page = q
                .list_listings(pb::ListListingsRequest {
                    page_size: 2,
                    page_token: token,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            pages += 1;
            assert!(page.listings.len() <= 2);
            paged.extend(page.listings.iter().map(|l| l.id.clone()));
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        assert_eq!(pages, 3);
        assert_eq!(
            paged,
            all.listings
                .iter()
                .map(|l| l.id.clone())
                .collect::<Vec<_>>()
        );

        // --- contracts ---
        let contracts = q
            .list_contracts(pb::ListContractsRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(contracts.contracts.len(), 2);
        let of_c = q
            .list_contracts(pb::ListContractsRequest {
                firm: "c".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(of_c.contracts.len(), 1);
        let ac = &of_c.contracts[0];
        assert_eq!(ac.id, contract_ac.0.to_vec());
        assert_eq!(
            (ac.status.as_str(), ac.proposer.as_str(), ac.signed_at_ms),
            ("proposed", "a", 0)
        );
        let active = q
            .list_contracts(pb::ListContractsRequest {
                status: "active".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(active.contracts.len(), 1);
        let ab = &active.contracts[0];
        assert_eq!(ab.id, contract_ab.0.to_vec());
        assert_eq!(
            (ab.supplier.as_str(), ab.consumer.as_str(), ab.unit.as_str()),
            ("a", "b", "t")
        );
        assert!(ab.signed_at_ms > 0);
        assert_eq!(ab.billing_meter, key(52).public().0.to_vec());
        assert!(ab.check_meter.is_empty() && ab.arbiter.is_empty());
        let terms = ab.settlement.as_ref().unwrap();
        assert_eq!(
            (terms.price, terms.committed, terms.tolerance_bp),
            (9_000, 100_000, 1_000)
        );
        assert_eq!(terms.excess_price, None);
        let got = q
            .get_contract(pb::GetContractRequest {
                id: contract_ab.0.to_vec(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got.contract.as_ref().unwrap(), ab);
        assert_eq!(got.periods.len(), 2);
        assert!(got.next_page_token.is_empty());
        // Period 1 is running: its availability, no statement yet.
        let p1 = &got.periods[1];
        assert_eq!(
            (
                p1.period,
                p1.availability,
                p1.delivered,
                p1.statement.is_none()
            ),
            (1, Some(80_000), None, true)
        );
        // One period a page: the same two, then no token.
        let first = q
            .get_contract(pb::GetContractRequest {
                id: contract_ab.0.to_vec(),
                page_size: 1,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(first.periods, got.periods[..1]);
        let second = q
            .get_contract(pb::GetContractRequest {
                id: contract_ab.0.to_vec(),
                page_size: 1,
                page_token: first.next_page_token,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(second.periods, got.periods[1..]);
        assert!(second.next_page_token.is_empty());
        let p0 = &got.periods[0];
        assert_eq!(
            (p0.period, p0.availability, p0.delivered, p0.check),
            (0, Some(100_000), Some(95_000), None)
        );
        assert_eq!(p0.dispute, "");
        // 95 t at 90.00 EUR/t, inside the band: no penalties.
        let statement = p0.statement.as_ref().expect("settled");
        assert_eq!(
            (
                statement.lower,
                statement.upper,
                statement.base_units,
                statement.energy_charge,
                statement.supply_penalty,
                statement.offtake_penalty,
                statement.net,
                statement.avoided_g
            ),
            (90_000, 110_000, 95_000, 855_000, 0, 0, 855_000, 95_000)
        );
        assert_eq!(statement.journal.len(), 2);
        // Readings of a period not settled would show without a statement;
        // a proposed contract has no periods.
        let got_ac = q
            .get_contract(pb::GetContractRequest {
                id: contract_ac.0.to_vec(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(got_ac.periods.is_empty());

        // --- statements ---
        let of_b = q
            .list_statements(pb::ListStatementsRequest {
                firm: "b".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(of_b.statements, vec![statement.clone()]);
        assert_eq!(of_b.statements[0].unit, "t");
        let by_contract = q
            .list_statements(pb::ListStatementsRequest {
                contract: contract_ab.0.to_vec(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(by_contract.statements, of_b.statements);
        let of_c = q
            .list_statements(pb::ListStatementsRequest {
                firm: "c".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(of_c.statements.is_empty());

        // --- balances and obligations ---
        let all = q
            .balances(pb::BalancesRequest::default())
            .await
            .unwrap()
            .into_inner();
        let balances: Vec<(Option<pb::Account>, i64)> = all
            .balances
            .iter()
            .map(|b| (b.account.clone(), b.balance))
            .collect();
        assert_eq!(balances, [(firm("a"), 855_000), (firm("b"), -855_000)]);
        assert_eq!(all.obligations.len(), 1);
        let o = &all.obligations[0];
        assert_eq!(
            (o.debtor.clone(), o.creditor.clone(), o.amount),
            (firm("b"), firm("a"), 855_000)
        );
        assert_eq!(all.currency.as_ref().unwrap().code, "EUR");
        // One per page: balances first, then the obligation.
        let p1 = q
            .balances(pb::BalancesRequest {
                page_size: 2,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((p1.balances.len(), p1.obligations.len()), (2, 0));
        let p2 = q
            .balances(pb::BalancesRequest {
                page_size: 2,
                page_token: p1.next_page_token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((p2.balances.len(), p2.obligations.len()), (0, 1));
        assert!(p2.next_page_token.is_empty());
        let of_a = q
            .balances(pb::BalancesRequest {
                account: firm("a"),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((of_a.balances.len(), of_a.obligations.len()), (1, 1));
        assert_eq!(of_a.balances[0].balance, 855_000);
        let of_d = q
            .balances(pb::BalancesRequest {
                account: firm("d"),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(of_d.balances.is_empty() && of_d.obligations.is_empty());

        // --- pools ---
        let pools = q
            .list_pools(pb::ListPoolsRequest {
                firm: "b".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(pools.pools.len(), 1);
        let p = &pools.pools[0];
        assert_eq!(
            (p.id.clone(), p.name.as_str(), p.operator.as_str(), p.active),
            (pool.0.to_vec(), "PV field", "a", true)
        );
        assert_eq!(
            p.keys
                .iter()
                .map(|k| (k.member.as_str(), k.basis_points))
                .collect::<Vec<_>>(),
            [("a", 6000), ("b", 4000)]
        );
        assert_eq!(p.joined, ["a", "b"]);
        assert!(p.waiting.is_empty());
        let none = q
            .list_pools(pb::ListPoolsRequest {
                firm: "c".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(none.pools.is_empty());
        let got = q
            .get_pool(pb::GetPoolRequest {
                id: pool.0.to_vec(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got.pool.as_ref(), Some(p));
        assert!(got.periods.is_empty());

        // --- proposals ---
        let proposals = q
            .list_proposals(pb::ListProposalsRequest {
                open_only: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(proposals.proposals.len(), 1);
        let prop = &proposals.proposals[0];
        assert_eq!(
            (
                prop.id.clone(),
                prop.proposer.as_str(),
                prop.action_kind.as_str(),
                prop.subject.as_str(),
                prop.status.as_str()
            ),
            (proposal.0.to_vec(), "d", "register_kind", "heat", "open")
        );
        assert_eq!(
            prop.votes
                .iter()
                .map(|v| (v.firm.as_str(), v.approve))
                .collect::<Vec<_>>(),
            [("c", false), ("d", true)]
        );
        assert_eq!(
            prop.action,
            symbiont_contracts::codec::encode(&GovAction::RegisterKind(kind))
        );

        // --- receipts ---
        let receipt = q
            .get_receipt(pb::GetReceiptRequest {
                tx_id: settle.0.to_vec(),
            })
            .await
            .unwrap()
            .into_inner();
        let TxStatus::Committed(expected) = node.tx(settle).await.unwrap() else {
            panic!("settled")
        };
        assert_eq!(
            (receipt.block_height, receipt.index, receipt.error.as_str()),
            (expected.height, expected.index, "")
        );
        assert!(receipt.height >= receipt.block_height);

        // --- avoided CO2: 95 t of steam at 1 kg/t, to both parties ---
        let avoided = q
            .avoided_co2(pb::AvoidedCo2Request {
                by_kind: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(avoided.network_g, 95_000);
        assert_eq!(
            avoided
                .firms
                .iter()
                .map(|f| (f.firm.as_str(), f.grams))
                .collect::<Vec<_>>(),
            [("a", 95_000), ("b", 95_000)]
        );
        assert_eq!(
            avoided
                .kinds
                .iter()
                .map(|k| (k.kind.as_str(), k.grams))
                .collect::<Vec<_>>(),
            [("steam", 95_000)]
        );
        let of_b = q
            .avoided_co2(pb::AvoidedCo2Request {
                firm: "b".into(),
                by_kind: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(of_b.firms.len(), 1);
        assert!(of_b.kinds.is_empty());

        // --- refusals ---
        let unknown = Hash([7; 32]).0.to_vec();
        let e = q
            .get_contract(pb::GetContractRequest {
                id: unknown.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(code_of(&e), (Code::NotFound, "not_found".into()));
        let e = q
            .get_pool(pb::GetPoolRequest {
                id: unknown.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(code_of(&e), (Code::NotFound, "not_found".into()));
        let e = q
            .get_receipt(pb::GetReceiptRequest { tx_id: unknown })
            .await
            .unwrap_err();
        assert_eq!(code_of(&e), (Code::NotFound, "not_found".into()));
        let e = q
            .get_receipt(pb::GetReceiptRequest { tx_id: vec![1; 31] })
            .await
            .unwrap_err();
        assert_eq!(code_of(&e), (Code::InvalidArgument, "malformed".into()));
        let e = q
            .list_statements(pb::ListStatementsRequest {
                contract: vec![1; 33],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(code_of(&e), (Code::InvalidArgument, "malformed".into()));
        let e = q
            .list_kinds(pb::ListKindsRequest {
                page_size: 1001,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(
            code_of(&e),
            (Code::InvalidArgument, "invalid_argument".into())
        );
        // A token of another call, and bytes that are no token at all.
        let e = q
            .list_kinds(pb::ListKindsRequest {
                page_size: 1,
                page_token: page1.next_page_token.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(code_of(&e), (Code::InvalidArgument, "malformed".into()));
        let e = q
            .list_firms(pb::ListFirmsRequest {
                page_token: vec![0xff; 5],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(code_of(&e), (Code::InvalidArgument, "malformed".into()));
        let e = q
            .list_listings(pb::ListListingsRequest {
                side: "both".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(
            code_of(&e),
            (Code::InvalidArgument, "invalid_argument".into())
        );
        let e = q
            .balances(pb::BalancesRequest {
                account: Some(pb::Account { account: None }),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(
            code_of(&e),
            (Code::InvalidArgument, "invalid_argument".into())
        );
        // GetSigner: standing and nonces, the mempool counted.
        let signer = |key: &[u8]| pb::GetSignerRequest {
            public_key: key.to_vec(),
        };
        let admin_a = q
            .get_signer(signer(&key(1).public().0))
            .await
            .unwrap()
            .into_inner();
        let used = s.nonces[&1];
        assert!(admin_a.authorized);
        assert_eq!(
            (admin_a.firm.as_str(), admin_a.role.as_str()),
            ("a", "admin")
        );
        assert_eq!(
            (admin_a.next_nonce, admin_a.pending, admin_a.next_free_nonce),
            (used + 1, 0, used + 1)
        );
        // A transaction behind a gap waits: it is counted, and the gap is
        // the free nonce.
        let ahead = SignedTx::sign(
            TxBody {
                chain_id: CHAIN.into(),
                nonce: used + 2,
                kind: TxKind::Withdraw {
                    listing: Hash([0; 32]),
                },
            },
            &key(1),
        );
        node.submit(ahead).await.unwrap().unwrap();
        let admin_a = q
            .get_signer(signer(&key(1).public().0))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (admin_a.next_nonce, admin_a.pending, admin_a.next_free_nonce),
            (used + 1, 1, used + 1)
        );
        let meter_b = q
            .get_signer(signer(&key(52).public().0))
            .await
            .unwrap()
            .into_inner();
        assert!(meter_b.authorized);
        assert_eq!(
            (meter_b.firm.as_str(), meter_b.role.as_str()),
            ("b", "meter")
        );
        let stranger = q
            .get_signer(signer(&key(99).public().0))
            .await
            .unwrap()
            .into_inner();
        assert!(!stranger.authorized);
        assert_eq!((stranger.firm.as_str(), stranger.role.as_str()), ("", ""));
        assert_eq!((stranger.next_nonce, stranger.next_free_nonce), (1, 1));
        let e = q.get_signer(signer(&[7; 31])).await.unwrap_err();
        assert_eq!(code_of(&e), (Code::InvalidArgument, "malformed".into()));
        let _ = (req1, req2);
    };
    tokio::time::timeout(Duration::from_secs(50), run)
        .await
        .expect("the scenario runs within 50 s");
    for node in &nodes {
        node.stop().await;
    }
}
