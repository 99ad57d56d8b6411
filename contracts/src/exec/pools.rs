//! Pools: shared infrastructure whose members split each period's net
//! income by their sharing keys.
//!
//! The life of a pool:
//!
//! - **Create**: any trader names the members and their keys. The pool
//!   binds nobody yet, except the creator's own firm when the creator
//!   signed with that firm's admin key and the firm is a member.
//! - **Join**: each member firm's admin key joins (as a contract binds only
//!   after countersigning). Once every member has joined the pool is
//!   **active**: only then may members post amounts, split periods, and
//!   may a contract pay its settlements into it (`gain_pool`).
//! - **Post**: a member posts income it collected (positive) or a cost it
//!   paid (negative) in a period. A posting moves no money yet.
//! - **Object**: until the period is split, any other member may object to
//!   a posting; a facilitator may resolve the objection, accepting the
//!   amount or refusing it.
//! - **Split**: after the period ends, any member splits it. Postings not
//!   under objection (open, or accepted by a facilitator) move money now:
//!   the member owes the pool the income, the pool owes the member the
//!   cost. The period's net N (those postings plus the gain-sharing
//!   settlements already paid into the pool in the period) is split by the
//!   keys, and the pool owes each member its part (a member owes the pool
//!   its part of a net cost). The parts add up to N, so the pool's balance
//!   for the period returns to zero; every movement is a two-line journal,
//!   so balances still sum to zero.

use std::collections::{BTreeMap, BTreeSet};

use super::ledger::transfer;
use super::{AppError, AppResult, Ctx, check_text, firm, window};
use crate::hash::Hash;
use crate::kinds::Account;
use crate::numbers::Overflow;
use crate::pool::{self, MAX_POOL_POSTINGS};
use crate::state::{Key, Pool, PoolPeriod, PoolPosting, PostingStatus, Role, State};

impl Ctx<'_> {
    pub(super) fn create_pool(
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
        // The creator's admin key consents for its firm, as a join would;
        // an operator key does not bind its firm to a pool.
        let mut joined = BTreeSet::new();
        if self.actor.role == Role::Admin && keys.contains_key(&operator) {
            joined.insert(operator.clone());
        }
        let pool = Pool {
            name: name.to_string(),
            operator,
            keys: keys.clone(),
            start_ms,
            period_ms,
            joined,
        };
        self.state.put(&Key::Pool(self.tx_id), &pool);
        Ok(())
    }

    pub(super) fn join_pool(&mut self, id: &Hash) -> AppResult {
        if self.actor.role != Role::Admin {
            return Err(AppError::Unauthorized { need: "admin key" });
        }
        let firm = self.actor.firm.clone();
        let mut pool = pool(self.state, id)?;
        if !pool.keys.contains_key(&firm) {
            return Err(AppError::NotMember(firm));
        }
        if !pool.joined.insert(firm.clone()) {
            return Err(AppError::AlreadyJoined(firm));
        }
        self.state.put(&Key::Pool(*id), &pool);
        Ok(())
    }

    /// A trader of a member firm: (the pool, the firm).
    fn member_of(&self, id: &Hash) -> AppResult<(Pool, String)> {
        let firm = self.require_trader()?;
        let pool = pool(self.state, id)?;
        if !pool.keys.contains_key(&firm) {
            return Err(AppError::NotMember(firm));
        }
        Ok((pool, firm))
    }

    /// A trader of a member firm of an active pool.
    fn active_member_of(&self, id: &Hash) -> AppResult<(Pool, String)> {
        let (pool, firm) = self.member_of(id)?;
        require_active(id, &pool)?;
        Ok((pool, firm))
    }

    pub(super) fn post_pool_amount(&mut self, id: &Hash, period: u32, amount: i64) -> AppResult {
        let (pool, member) = self.active_member_of(id)?;
        // -2^63 has no negation: the split could not move it.
        if amount == 0 || amount == i64::MIN {
            return Err(AppError::Invalid {
                field: "amount",
                rule: "must not be 0 or -2^63",
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
        let mut record = unsplit_period(self.state, &key, period)?;
        if record.postings.len() >= MAX_POOL_POSTINGS {
            return Err(AppError::PoolPostingsFull {
                period,
                limit: MAX_POOL_POSTINGS,
            });
        }
        record.postings.push(PoolPosting {
            id: self.tx_id,
            member,
            amount,
            status: PostingStatus::Open,
        });
        check_net_bounds(&record)?;
        self.state.put(&key, &record);
        Ok(())
    }

    pub(super) fn object_pool_amount(
        &mut self,
        id: &Hash,
        period: u32,
        posting: &Hash,
    ) -> AppResult {
        let (_, firm) = self.active_member_of(id)?;
        let key = Key::PoolPeriod { pool: *id, period };
        let mut record = unsplit_period(self.state, &key, period)?;
        let entry = posting_mut(&mut record, period, posting)?;
        if entry.member == firm {
            return Err(AppError::OwnPosting(*posting));
        }
        if entry.status != PostingStatus::Open {
            return Err(AppError::AlreadyObjected(*posting));
        }
        entry.status = PostingStatus::Objected {
            by: firm,
            at_ms: self.now_ms,
        };
        self.state.put(&key, &record);
        Ok(())
    }

    pub(super) fn resolve_pool_objection(
        &mut self,
        id: &Hash,
        period: u32,
        posting: &Hash,
        accept: bool,
    ) -> AppResult {
        self.require_facilitator(Role::Operator)?;
        let by = self.actor.firm.clone();
        pool(self.state, id)?;
        let key = Key::PoolPeriod { pool: *id, period };
        let mut record = unsplit_period(self.state, &key, period)?;
        let entry = posting_mut(&mut record, period, posting)?;
        if !matches!(entry.status, PostingStatus::Objected { .. }) {
            return Err(AppError::NoObjection(*posting));
        }
        let at_ms = self.now_ms;
        entry.status = if accept {
            PostingStatus::Accepted { by, at_ms }
        } else {
            PostingStatus::Refused { by, at_ms }
        };
        self.state.put(&key, &record);
        Ok(())
    }

    pub(super) fn split_pool(&mut self, id: &Hash, period: u32) -> AppResult {
        let (pool, _) = self.active_member_of(id)?;
        let (_, end) = window(pool.start_ms, pool.period_ms, period)?;
        if self.now_ms < end {
            return Err(AppError::PeriodNotOver {
                period,
                end_ms: end,
            });
        }
        let key = Key::PoolPeriod { pool: *id, period };
        let mut record = unsplit_period(self.state, &key, period)?;
        let pool_account = Account::Pool(*id);
        let mut net = record.gain_net;
        for posting in record.postings.iter().filter(|p| p.status.counts()) {
            net = net
                .checked_add(posting.amount)
                .ok_or(Overflow { what: "pool net" })?;
            // Income the member collected it owes the pool; a cost it paid
            // the pool owes it.
            let member = Account::Firm(posting.member.clone());
            move_money(self.state, &member, &pool_account, posting.amount)?;
        }
        let parts = pool::split(net, &pool.keys)?;
        for (member, part) in &parts {
            let member = Account::Firm(member.clone());
            move_money(self.state, &pool_account, &member, *part)?;
        }
        record.split = Some(parts);
        self.state.put(&key, &record);
        Ok(())
    }

    /// A gain-sharing settlement: add `net` to the pool period that
    /// contains the block time (it is under way, so not yet split). The
    /// money itself moves with the settlement's journal.
    pub(super) fn add_to_pool_now(&mut self, id: &Hash, net: i64) -> AppResult {
        let pool = pool(self.state, id)?;
        require_active(id, &pool)?;
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
        record.gain_net = record
            .gain_net
            .checked_add(net)
            .ok_or(Overflow { what: "pool net" })?;
        check_net_bounds(&record)?;
        self.state.put(&key, &record);
        Ok(())
    }
}

pub(super) fn pool(state: &State, id: &Hash) -> AppResult<Pool> {
    state.get(&Key::Pool(*id)).ok_or(AppError::UnknownPool(*id))
}

/// A pool binds its members, and money flows through it, only once every
/// member has joined.
pub(super) fn require_active(id: &Hash, pool: &Pool) -> AppResult {
    let waiting = pool.waiting();
    if !waiting.is_empty() {
        return Err(AppError::PoolNotActive { pool: *id, waiting });
    }
    Ok(())
}

/// The record of a pool period that is not split yet.
fn unsplit_period(state: &State, key: &Key, period: u32) -> AppResult<PoolPeriod> {
    let record: PoolPeriod = state.get(key).unwrap_or_default();
    if record.split.is_some() {
        return Err(AppError::PoolPeriodSplit { period });
    }
    Ok(record)
}

fn posting_mut<'r>(
    record: &'r mut PoolPeriod,
    period: u32,
    posting: &Hash,
) -> AppResult<&'r mut PoolPosting> {
    record
        .postings
        .iter_mut()
        .find(|p| p.id == *posting)
        .ok_or(AppError::UnknownPosting {
            posting: *posting,
            period,
        })
}

/// Whichever postings end up in the split, the net must fit in i64: the
/// gain-sharing net plus all negative postings, and plus all positive
/// ones, bound every subset. Checked whenever the period grows, so the
/// split itself never overflows.
fn check_net_bounds(record: &PoolPeriod) -> AppResult {
    let (mut low, mut high) = (record.gain_net as i128, record.gain_net as i128);
    for posting in &record.postings {
        if posting.amount < 0 {
            low += posting.amount as i128;
        } else {
            high += posting.amount as i128;
        }
    }
    // Above i64::MIN too, so every amount and part can be negated.
    if low <= i64::MIN as i128 || i64::try_from(high).is_err() {
        return Err(Overflow { what: "pool net" }.into());
    }
    Ok(())
}

/// `from` owes `to` `amount`; a negative amount is owed the other way.
fn move_money(state: &mut State, from: &Account, to: &Account, amount: i64) -> AppResult {
    if amount >= 0 {
        transfer(state, from, to, amount)?;
    } else {
        let amount = amount.checked_neg().ok_or(Overflow {
            what: "pool amount",
        })?;
        transfer(state, to, from, amount)?;
    }
    Ok(())
}
