//! Membership and governance: keys a firm's admin authorizes, proposals
//! and votes of the member firms and the actions they apply, and the
//! registry a facilitator keeps (resource kinds, waste licences).

use std::collections::BTreeMap;

use super::{AppError, AppResult, Ctx, MAX_QUALITY_FIELDS, Params, check_id, check_text, firm};
use crate::genesis::{Firm, MAX_TOTAL_VOTING_POWER, Node, ResourceKind, check_ewc_code};
use crate::hash::Hash;
use crate::keys::PublicKey;
use crate::kinds::GovAction;
use crate::state::{self, Key, KeyRecord, Licence, Proposal, ProposalStatus, Role, State};
use crate::tx::KeyRole;

impl Ctx<'_> {
    pub(super) fn authorize_key(
        &mut self,
        firm_id: &str,
        key: &PublicKey,
        role: KeyRole,
    ) -> AppResult {
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

    pub(super) fn revoke_key(&mut self, firm_id: &str, key: &PublicKey) -> AppResult {
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

    pub(super) fn propose(&mut self, action: &GovAction, expires_ms: u64) -> AppResult {
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

    pub(super) fn vote(&mut self, id: &Hash, approve: bool) -> AppResult {
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
    pub(super) fn tally(&mut self, id: Hash, mut proposal: Proposal) -> AppResult {
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

    pub(super) fn grant_licence(
        &mut self,
        firm_id: &str,
        ewc_code: &str,
        expires_ms: u64,
    ) -> AppResult {
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
    pub(super) fn check_licence(&self, kind: &ResourceKind, taker: &str) -> AppResult {
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
}

pub(super) fn put_firm(state: &mut State, firm: &Firm) {
    state.put(&Key::Firm(firm.id.clone()), firm);
    state.put(
        &Key::Key(firm.admin_key),
        &KeyRecord {
            firm: firm.id.clone(),
            role: Role::Admin,
        },
    );
}

pub(super) fn firm_ids(state: &State) -> Vec<String> {
    let prefix = state::variant_prefix(&Key::Firm(String::new()));
    state
        .scan::<Firm>(&prefix)
        .into_iter()
        .map(|(_, firm)| firm.id)
        .collect()
}

pub(super) fn nodes(state: &State) -> Vec<Node> {
    let prefix = state::variant_prefix(&Key::Node(String::new()));
    state
        .scan::<Node>(&prefix)
        .into_iter()
        .map(|(_, node)| node)
        .collect()
}

/// One key, one use: a firm's admin, operator or meter key, or a node key.
pub(super) fn key_in_use(state: &State, key: &PublicKey) -> bool {
    state.contains(&Key::Key(*key)) || nodes(state).iter().any(|n| n.key == *key)
}

pub(super) fn register_kind(state: &mut State, kind: &ResourceKind) -> AppResult {
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
    // The names genesis accepts: ids, each once (a listing's quality map
    // is keyed by them).
    let mut names = std::collections::BTreeSet::new();
    for name in &kind.quality {
        check_id("quality", name)?;
        if !names.insert(name) {
            return Err(AppError::Invalid {
                field: "quality",
                rule: "each quality field name at most once",
            });
        }
    }
    state.put(&Key::Kind(kind.id.clone()), kind);
    Ok(())
}

/// Consensus counts votes as 3 x power, so the total power of the nodes
/// may not exceed [`MAX_TOTAL_VOTING_POWER`] (u64::MAX / 3), the bound
/// genesis holds too.
fn check_total_power(nodes: &[Node]) -> AppResult {
    let total: u128 = nodes.iter().map(|n| n.power as u128).sum();
    if total > MAX_TOTAL_VOTING_POWER as u128 {
        return Err(AppError::TotalPowerTooLarge {
            total,
            max: MAX_TOTAL_VOTING_POWER,
        });
    }
    Ok(())
}

/// Apply a governance action that has passed.
pub(super) fn apply_action(state: &mut State, action: &GovAction) -> AppResult {
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
            let mut all = nodes(state);
            all.push(node.clone());
            check_total_power(&all)?;
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
            check_total_power(&all)?;
            state.put(&Key::Node(node.clone()), &updated);
        }
        GovAction::SetConsensus(params) => {
            if params.check().is_err() {
                return Err(AppError::Invalid {
                    field: "consensus",
                    rule: CONSENSUS_RULE,
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

/// Why a `SetConsensus` is refused: the genesis rules
/// (`ConsensusParams::check`).
pub const CONSENSUS_RULE: &str = "timeouts, max_block_txs and the clock drift above 0; \
     max_block_bytes from one largest transaction up to 8 MiB (the genesis rules)";
