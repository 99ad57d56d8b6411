//! Genesis: the network's founding document, a TOML file.
//!
//! It names the chain, the settlement currency, the firms with their admin
//! keys, the nodes (site, validator flag, voting power), the resource kinds
//! with unit and emission factor, and the consensus parameters. Its hash is
//! blake3 over the canonical encoding of the parsed document, so two files
//! that differ only in comments or layout have the same genesis hash.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::hash::Hash;
use crate::keys::PublicKey;
use crate::tx::MAX_TX_BYTES;

/// The largest total voting power of the validators. Consensus compares
/// `3 * power` with `2 * total` in u64-sized arithmetic, so 3 x total must
/// fit in u64: one bound, checked by genesis, by governance (add node, set
/// power) and by the consensus validator set.
pub const MAX_TOTAL_VOTING_POWER: u64 = u64::MAX / 3;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    /// 1 to 64 lowercase ASCII letters, digits, `-` and `_`, starting with a
    /// letter or digit; signed into every transaction.
    pub chain_id: String,
    /// Time of the chain's start, milliseconds since the Unix epoch (UTC).
    /// The first block's time must be later.
    pub genesis_time_ms: u64,
    pub currency: Currency,
    pub consensus: ConsensusParams,
    pub firms: Vec<Firm>,
    pub nodes: Vec<Node>,
    pub resource_kinds: Vec<ResourceKind>,
}

/// The one settlement currency. Money is an integer count of minor units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Currency {
    /// ISO 4217 code, e.g. "DKK".
    pub code: String,
    /// Decimal places of the minor unit (2 for cents, øre).
    pub minor_units: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsensusParams {
    pub timeout_propose_ms: u64,
    pub timeout_prevote_ms: u64,
    pub timeout_precommit_ms: u64,
    /// Added to each timeout per round of the same height.
    pub timeout_delta_ms: u64,
    pub max_block_txs: u32,
    pub max_block_bytes: u32,
    /// How far a proposed block time may be ahead of a voter's clock.
    pub max_clock_drift_ms: u64,
}

/// The largest `max_block_bytes` a network may set: a block with its
/// certificate must fit one gossip message and one sync response, which
/// the nodes bound in advance.
pub const MAX_BLOCK_BYTES: u32 = 8 << 20;

impl ConsensusParams {
    /// The rules of genesis and of governance's `SetConsensus`: timeouts,
    /// `max_block_txs` and the clock drift above zero; `max_block_bytes`
    /// holds one largest transaction and is at most `MAX_BLOCK_BYTES`.
    pub fn check(&self) -> Result<(), GenesisError> {
        let positive = [
            ("timeout_propose_ms", self.timeout_propose_ms),
            ("timeout_prevote_ms", self.timeout_prevote_ms),
            ("timeout_precommit_ms", self.timeout_precommit_ms),
            ("timeout_delta_ms", self.timeout_delta_ms),
            ("max_block_txs", u64::from(self.max_block_txs)),
            ("max_clock_drift_ms", self.max_clock_drift_ms),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(GenesisError::BadParameter {
                    name,
                    rule: "must be above 0".into(),
                });
            }
        }
        if (self.max_block_bytes as usize) < MAX_TX_BYTES {
            return Err(GenesisError::BadParameter {
                name: "max_block_bytes",
                rule: format!("must hold at least one largest transaction ({MAX_TX_BYTES} bytes)"),
            });
        }
        if self.max_block_bytes > MAX_BLOCK_BYTES {
            return Err(GenesisError::BadParameter {
                name: "max_block_bytes",
                rule: format!("must be at most {MAX_BLOCK_BYTES} bytes"),
            });
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Firm {
    pub id: String,
    pub name: String,
    /// Authorizes the firm's operator and meter keys and votes in governance.
    pub admin_key: PublicKey,
    /// A neutral industrial-symbiosis facilitator: registers resource kinds
    /// and may be named arbiter; trades nothing itself.
    #[serde(default)]
    pub facilitator: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub id: String,
    /// The firm that runs the node.
    pub firm: String,
    pub site: String,
    /// The node's key, also its libp2p identity.
    pub key: PublicKey,
    #[serde(default)]
    pub validator: bool,
    /// Voting power: at least 1 for a validator, 0 (or absent) otherwise.
    #[serde(default)]
    pub power: u64,
}

/// The unit a resource kind is measured in. Quantities on the ledger are
/// integer thousandths of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Unit {
    #[serde(rename = "kWh")]
    KiloWattHour,
    #[serde(rename = "MWh")]
    MegaWattHour,
    #[serde(rename = "GJ")]
    GigaJoule,
    #[serde(rename = "t")]
    Tonne,
    #[serde(rename = "m3")]
    CubicMetre,
}

impl Unit {
    pub fn symbol(self) -> &'static str {
        match self {
            Unit::KiloWattHour => "kWh",
            Unit::MegaWattHour => "MWh",
            Unit::GigaJoule => "GJ",
            Unit::Tonne => "t",
            Unit::CubicMetre => "m3",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceKind {
    pub id: String,
    pub name: String,
    pub unit: Unit,
    /// Grams CO2e avoided per unit, from displacing the virgin resource.
    pub emission_factor_g: u64,
    /// A waste (needs an EWC code, and a licence to take it) or a by-product.
    #[serde(default)]
    pub waste: bool,
    /// European Waste Catalogue code, "NN NN NN" (an asterisk marks hazardous).
    #[serde(default)]
    pub ewc_code: Option<String>,
    /// Names of the quality fields offers and contracts state, e.g. "temperature_c".
    #[serde(default)]
    pub quality: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenesisError {
    #[error("genesis is not valid TOML for Symbiont: {0}")]
    Parse(String),
    #[error("{what} {value:?} is invalid: {rule}")]
    InvalidField {
        what: &'static str,
        value: String,
        rule: String,
    },
    #[error("duplicate {what} id {id:?}")]
    DuplicateId { what: &'static str, id: String },
    #[error("key {key} is used twice: by {first} and by {second}")]
    DuplicateKey {
        key: PublicKey,
        first: String,
        second: String,
    },
    #[error("{owner} has an unusable public key {key}")]
    BadKey { owner: String, key: PublicKey },
    #[error("node {node:?} belongs to unknown firm {firm:?}")]
    UnknownFirm { node: String, firm: String },
    #[error("validator node {node:?} has zero voting power")]
    ZeroPower { node: String },
    #[error("node {node:?} is not a validator but has voting power {power}")]
    PowerWithoutValidator { node: String, power: u64 },
    #[error(
        "total voting power of the validators is {total}, above the maximum of \
         {MAX_TOTAL_VOTING_POWER} (u64::MAX / 3: consensus needs 3 x total to fit in a u64)"
    )]
    TotalPowerTooLarge { total: u128 },
    #[error("no validator: at least one node needs `validator = true`")]
    NoValidators,
    #[error("no {what}: genesis needs at least one")]
    Empty { what: &'static str },
    #[error("resource kind {kind:?} is a waste but has no `ewc_code`")]
    WasteWithoutCode { kind: String },
    #[error("consensus parameter {name} is invalid: {rule}")]
    BadParameter { name: &'static str, rule: String },
}

impl Genesis {
    /// Parse and validate a genesis TOML document.
    pub fn from_toml(text: &str) -> Result<Genesis, GenesisError> {
        let genesis: Genesis =
            toml::from_str(text).map_err(|e| GenesisError::Parse(e.to_string()))?;
        genesis.validate()?;
        Ok(genesis)
    }

    pub fn hash(&self) -> Hash {
        codec::hash(self)
    }

    pub fn validators(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|node| node.validator)
    }

    /// The validators' total voting power; at most
    /// [`MAX_TOTAL_VOTING_POWER`] once validated.
    pub fn total_power(&self) -> u64 {
        self.validators().map(|node| node.power).sum()
    }

    pub fn validate(&self) -> Result<(), GenesisError> {
        check_text_id("chain_id", &self.chain_id, 64)?;
        self.validate_currency()?;
        self.validate_consensus()?;
        self.validate_firms()?;
        self.validate_nodes()?;
        self.validate_kinds()?;
        self.validate_unique_keys()
    }

    fn validate_currency(&self) -> Result<(), GenesisError> {
        let code = &self.currency.code;
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(GenesisError::InvalidField {
                what: "currency code",
                value: code.clone(),
                rule: "must be three uppercase ASCII letters A-Z (ISO 4217)".into(),
            });
        }
        if self.currency.minor_units > 4 {
            return Err(GenesisError::InvalidField {
                what: "currency minor_units",
                value: self.currency.minor_units.to_string(),
                rule: "must be at most 4 (decimal places)".into(),
            });
        }
        Ok(())
    }

    fn validate_consensus(&self) -> Result<(), GenesisError> {
        self.consensus.check()
    }

    fn validate_firms(&self) -> Result<(), GenesisError> {
        if self.firms.is_empty() {
            return Err(GenesisError::Empty { what: "firm" });
        }
        check_unique_ids("firm", self.firms.iter().map(|firm| firm.id.as_str()))?;
        for firm in &self.firms {
            check_text_id("firm id", &firm.id, 32)?;
            check_name("firm name", &firm.name)?;
        }
        Ok(())
    }

    fn validate_nodes(&self) -> Result<(), GenesisError> {
        check_unique_ids("node", self.nodes.iter().map(|node| node.id.as_str()))?;
        // u128 cannot overflow: it would take 2^64 nodes.
        let mut total: u128 = 0;
        for node in &self.nodes {
            check_text_id("node id", &node.id, 32)?;
            check_name("node site", &node.site)?;
            if !self.firms.iter().any(|firm| firm.id == node.firm) {
                return Err(GenesisError::UnknownFirm {
                    node: node.id.clone(),
                    firm: node.firm.clone(),
                });
            }
            match (node.validator, node.power) {
                (true, 0) => {
                    return Err(GenesisError::ZeroPower {
                        node: node.id.clone(),
                    });
                }
                (false, power) if power > 0 => {
                    return Err(GenesisError::PowerWithoutValidator {
                        node: node.id.clone(),
                        power,
                    });
                }
                _ => {}
            }
            total += u128::from(node.power);
        }
        if total == 0 {
            return Err(GenesisError::NoValidators);
        }
        if total > u128::from(MAX_TOTAL_VOTING_POWER) {
            return Err(GenesisError::TotalPowerTooLarge { total });
        }
        Ok(())
    }

    fn validate_kinds(&self) -> Result<(), GenesisError> {
        let kinds = self.resource_kinds.iter().map(|kind| kind.id.as_str());
        check_unique_ids("resource kind", kinds)?;
        for kind in &self.resource_kinds {
            check_text_id("resource kind id", &kind.id, 32)?;
            check_name("resource kind name", &kind.name)?;
            match &kind.ewc_code {
                Some(code) => check_ewc_code(code)?,
                None if kind.waste => {
                    return Err(GenesisError::WasteWithoutCode {
                        kind: kind.id.clone(),
                    });
                }
                None => {}
            }
            check_unique_ids("quality field", kind.quality.iter().map(String::as_str))?;
            for field in &kind.quality {
                check_text_id("quality field", field, 32)?;
            }
        }
        Ok(())
    }

    fn validate_unique_keys(&self) -> Result<(), GenesisError> {
        let owners = self
            .firms
            .iter()
            .map(|firm| (firm.admin_key, format!("firm {:?} (admin key)", firm.id)))
            .chain(
                self.nodes
                    .iter()
                    .map(|node| (node.key, format!("node {:?}", node.id))),
            );
        let mut seen: BTreeMap<PublicKey, String> = BTreeMap::new();
        for (key, owner) in owners {
            if key.validate().is_err() {
                return Err(GenesisError::BadKey { owner, key });
            }
            if let Some(first) = seen.get(&key) {
                return Err(GenesisError::DuplicateKey {
                    key,
                    first: first.clone(),
                    second: owner,
                });
            }
            seen.insert(key, owner);
        }
        Ok(())
    }
}

/// The first id that appears twice is an error.
fn check_unique_ids<'a>(
    what: &'static str,
    ids: impl Iterator<Item = &'a str>,
) -> Result<(), GenesisError> {
    let mut seen = std::collections::BTreeSet::new();
    for id in ids {
        if !seen.insert(id) {
            return Err(GenesisError::DuplicateId {
                what,
                id: id.to_string(),
            });
        }
    }
    Ok(())
}

/// Ids: 1 to `max_len` bytes of lowercase ASCII letters, digits, `-` and
/// `_`, starting with a letter or digit.
fn check_text_id(what: &'static str, value: &str, max_len: usize) -> Result<(), GenesisError> {
    let ok = !value.is_empty()
        && value.len() <= max_len
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && value.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(GenesisError::InvalidField {
            what,
            value: value.to_string(),
            rule: format!(
                "must be 1 to {max_len} characters, each a lowercase ASCII letter a-z, \
                 a digit 0-9, '-' or '_', the first a letter or digit"
            ),
        })
    }
}

/// The longest name or site, in bytes of UTF-8.
pub const MAX_NAME_BYTES: usize = 128;

/// Names and sites: at least one character that is not whitespace (so a
/// name is never blank on a statement), at most [`MAX_NAME_BYTES`] bytes,
/// no control characters. "Whitespace" and "control" are Unicode's
/// `White_Space` property and general category `Cc`, as `char::is_whitespace`
/// and `char::is_control` define them.
fn check_name(what: &'static str, value: &str) -> Result<(), GenesisError> {
    let blank = value.chars().all(char::is_whitespace);
    if blank || value.len() > MAX_NAME_BYTES || value.chars().any(char::is_control) {
        return Err(GenesisError::InvalidField {
            what,
            value: value.to_string(),
            rule: format!(
                "must contain a non-whitespace character, be at most {MAX_NAME_BYTES} bytes, \
                 and contain no control characters"
            ),
        });
    }
    Ok(())
}

/// EWC codes: three pairs of digits separated by spaces, "19 08 05",
/// with an optional `*` for hazardous waste.
pub fn check_ewc_code(code: &str) -> Result<(), GenesisError> {
    let digits = code.strip_suffix('*').unwrap_or(code);
    let bytes = digits.as_bytes();
    let ok = bytes.len() == 8
        && bytes.iter().enumerate().all(|(i, b)| {
            if i == 2 || i == 5 {
                *b == b' '
            } else {
                b.is_ascii_digit()
            }
        });
    if ok {
        Ok(())
    } else {
        Err(GenesisError::InvalidField {
            what: "EWC code",
            value: code.to_string(),
            rule:
                "must be three pairs of digits 0-9 separated by single spaces, e.g. \"10 01 05\", \
                   optionally followed directly by '*' (hazardous)"
                    .into(),
        })
    }
}
