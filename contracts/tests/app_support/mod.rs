//! A small park on a test chain, to drive block execution in tests.
#![allow(dead_code)]

use std::collections::BTreeMap;

use symbiont_contracts::codec;
use symbiont_contracts::exec::{self, AppError, BlockInfo, BlockOutcome};
use symbiont_contracts::genesis::{
    ConsensusParams, Currency, Firm, Genesis, Node, ResourceKind, Unit,
};
use symbiont_contracts::hash::Hash;
use symbiont_contracts::keys::{Keypair, PublicKey};
use symbiont_contracts::settlement::SettlementTerms;
use symbiont_contracts::state::{Key, State};
use symbiont_contracts::tx::{ContractTerms, KeyRole, SignedTx, TxBody, TxKind};

pub const CHAIN: &str = "test-park";
pub const GENESIS_MS: u64 = 1_700_000_000_000;
pub const HOUR: u64 = 3_600_000;
pub const DAY: u64 = 24 * HOUR;

/// Deterministic keys by name: "power" (the power station's admin),
/// "power-op", "pharma-meter", ...
pub fn keypair(name: &str) -> Keypair {
    Keypair::from_seed(*blake3::hash(name.as_bytes()).as_bytes())
}

pub fn public(name: &str) -> PublicKey {
    keypair(name).public()
}

/// Firms: power (steam and fly ash supplier), pharma (steam consumer),
/// plaster (fly ash and gypsum taker), city, and the facilitator "hub".
pub fn genesis() -> Genesis {
    let firm = |id: &str, facilitator| Firm {
        id: id.into(),
        name: format!("{id} firm"),
        admin_key: public(id),
        facilitator,
    };
    let node = |id: &str, firm: &str, power| Node {
        id: id.into(),
        firm: firm.into(),
        site: format!("{id} site"),
        key: public(&format!("{id}-node")),
        validator: power > 0,
        power,
    };
    Genesis {
        chain_id: CHAIN.into(),
        genesis_time_ms: GENESIS_MS,
        currency: Currency {
            code: "DKK".into(),
            minor_units: 2,
        },
        consensus: ConsensusParams {
            timeout_propose_ms: 1000,
            timeout_prevote_ms: 500,
            timeout_precommit_ms: 500,
            timeout_delta_ms: 100,
            max_block_txs: 1000,
            max_block_bytes: 4 * 1024 * 1024,
            max_clock_drift_ms: 2000,
        },
        firms: vec![
            firm("city", false),
            firm("hub", true),
            firm("pharma", false),
            firm("plaster", false),
            firm("power", false),
        ],
        nodes: vec![
            node("n-power", "power", 1),
            node("n-pharma", "pharma", 1),
            node("n-plaster", "plaster", 1),
            node("n-city", "city", 1),
        ],
        resource_kinds: vec![
            ResourceKind {
                id: "steam".into(),
                name: "Process steam".into(),
                unit: Unit::GigaJoule,
                emission_factor_g: 56_000,
                waste: false,
                ewc_code: None,
                quality: vec!["temperature_c".into(), "pressure_bar".into()],
            },
            ResourceKind {
                id: "fly-ash".into(),
                name: "Fly ash".into(),
                unit: Unit::Tonne,
                emission_factor_g: 800_000,
                waste: true,
                ewc_code: Some("10 01 02".into()),
                quality: vec![],
            },
        ],
    }
}

#[derive(Clone)]
pub struct Park {
    pub state: State,
    pub height: u64,
    pub time_ms: u64,
}

impl Default for Park {
    fn default() -> Self {
        Park::new()
    }
}

impl Park {
    pub fn new() -> Park {
        Park {
            state: exec::genesis_state(&genesis()),
            height: 0,
            time_ms: GENESIS_MS,
        }
    }

    pub fn nonce_of(&self, signer: &PublicKey) -> u64 {
        self.state.get(&Key::Nonce(*signer)).unwrap_or(0)
    }

    /// A signed transaction with the signer's next nonce, `ahead` of the
    /// state (for several transactions of one signer in one block).
    pub fn tx_ahead(&self, signer: &str, kind: TxKind, ahead: u64) -> SignedTx {
        let keypair = keypair(signer);
        let nonce = self.nonce_of(&keypair.public()) + 1 + ahead;
        SignedTx::sign(
            TxBody {
                chain_id: CHAIN.into(),
                nonce,
                kind,
            },
            &keypair,
        )
    }

    pub fn tx(&self, signer: &str, kind: TxKind) -> SignedTx {
        self.tx_ahead(signer, kind, 0)
    }

    /// Execute a block of `txs` one second after the previous one.
    pub fn block(&mut self, txs: &[SignedTx]) -> BlockOutcome {
        self.block_at(self.time_ms + 1000, txs)
    }

    pub fn block_at(&mut self, time_ms: u64, txs: &[SignedTx]) -> BlockOutcome {
        let info = BlockInfo {
            height: self.height + 1,
            time_ms,
        };
        let outcome = exec::execute_block(&mut self.state, &info, txs).expect("block executes");
        self.height += 1;
        self.time_ms = time_ms;
        outcome
    }

    /// One transaction in its own block; its result and its tx id.
    pub fn run(&mut self, signer: &str, kind: TxKind) -> (Hash, Result<(), AppError>) {
        let tx = self.tx(signer, kind);
        let mut outcome = self.block(&[tx]);
        outcome.results.remove(0)
    }

    pub fn ok(&mut self, signer: &str, kind: TxKind) -> Hash {
        let (id, result) = self.run(signer, kind.clone());
        if let Err(error) = result {
            panic!("{signer} {kind:?} failed: {error}");
        }
        id
    }

    /// Move block time forward to `time_ms` with an empty block.
    pub fn advance_to(&mut self, time_ms: u64) {
        assert!(time_ms > self.time_ms);
        self.block_at(time_ms, &[]);
    }

    /// The records that transactions change: all but meta, nonces and receipts.
    pub fn snapshot(&self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        self.state
            .records()
            .iter()
            .filter(|(key, _)| {
                !matches!(
                    codec::decode::<Key>(key).expect("state keys decode"),
                    Key::Meta | Key::Nonce(_) | Key::Receipt(_)
                )
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Run a transaction that must fail with `expected`, and check that it
    /// changed nothing but the signer's nonce and its own receipt.
    pub fn rejected(&mut self, signer: &str, kind: TxKind, expected: AppError) {
        let before = self.snapshot();
        let signer_key = public(signer);
        let nonce_before = self.nonce_of(&signer_key);
        let (id, result) = self.run(signer, kind.clone());
        assert_eq!(result, Err(expected.clone()), "{signer} {kind:?}");
        assert!(
            self.snapshot() == before,
            "a failed transaction changed the state: {kind:?}"
        );
        // Checks before the nonce (envelope, unknown signer) write
        // nothing; past them the nonce is consumed and a receipt kept.
        let consumed = !matches!(expected, AppError::UnknownSigner(_) | AppError::Tx(_));
        assert_eq!(self.nonce_of(&signer_key), nonce_before + consumed as u64);
        let receipt = exec::receipt(&self.state, &id);
        if consumed {
            assert_eq!(
                receipt.expect("a receipt").error.as_deref(),
                Some(expected.code())
            );
        } else {
            assert_eq!(receipt, None);
        }
    }

    /// Like [`Park::rejected`], but the expected failure is given by its
    /// receipt code only (for tests that name no error variant).
    pub fn rejected_code(&mut self, signer: &str, kind: TxKind, code: &str) {
        let before = self.snapshot();
        let signer_key = public(signer);
        let nonce_before = self.nonce_of(&signer_key);
        let (id, result) = self.run(signer, kind.clone());
        let error = result.expect_err(&format!("{signer} {kind:?} must fail with {code}"));
        assert_eq!(error.code(), code, "{signer} {kind:?}: {error}");
        assert!(
            self.snapshot() == before,
            "a failed transaction changed the state: {kind:?}"
        );
        assert_eq!(self.nonce_of(&signer_key), nonce_before + 1);
        let receipt = exec::receipt(&self.state, &id).expect("a receipt");
        assert_eq!(receipt.error.as_deref(), Some(code));
    }

    /// Authorize the operator and meter keys the scenarios use:
    /// "<firm>-op" and "<firm>-meter", "<firm>-check".
    pub fn with_staff(mut self) -> Park {
        for firm in ["power", "pharma", "plaster", "city", "hub"] {
            for (suffix, role) in [
                ("op", KeyRole::Operator),
                ("meter", KeyRole::Meter),
                ("check", KeyRole::Meter),
            ] {
                self.ok(
                    firm,
                    TxKind::AuthorizeKey {
                        firm: firm.into(),
                        key: public(&format!("{firm}-{suffix}")),
                        role,
                    },
                );
            }
        }
        self
    }
}

/// The steam contract of docs/settlement.md between power and pharma,
/// hourly periods from `start_ms`, metered by pharma's meters, arbiter hub.
pub fn steam_terms(start_ms: u64) -> ContractTerms {
    ContractTerms {
        supplier: "power".into(),
        consumer: "pharma".into(),
        kind: "steam".into(),
        delivery_point: "Pharma gate 3".into(),
        quality: BTreeMap::from([("temperature_c".into(), 180)]),
        settlement: SettlementTerms {
            price: 9_000,
            committed: 100_000,
            tolerance_bp: 1_000,
            supply_penalty: 3_000,
            offtake_penalty: 2_000,
            excess_price: None,
            penalty_cap: None,
            meter_tolerance: Some(500),
        },
        start_ms,
        period_ms: HOUR,
        periods: 24,
        billing_meter: public("pharma-meter"),
        check_meter: Some(public("power-check")),
        arbiter: Some("hub".into()),
        listing: None,
        gain_pool: None,
    }
}

/// Propose (by power) and countersign (by pharma) a contract.
pub fn signed_contract(park: &mut Park, terms: ContractTerms) -> Hash {
    let id = park.ok(
        "power-op",
        TxKind::ProposeContract {
            terms: terms.clone(),
        },
    );
    let other = if terms.supplier == "power" {
        format!("{}-op", terms.consumer)
    } else {
        format!("{}-op", terms.supplier)
    };
    park.ok(&other, TxKind::Countersign { contract: id });
    id
}
