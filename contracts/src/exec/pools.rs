//! Pools: shared infrastructure whose members split each period's net
//! income by their sharing keys.

use std::collections::BTreeMap;

use super::ledger::transfer;
use super::{AppError, AppResult, Ctx, check_text, firm, window};
use crate::hash::Hash;
use crate::kinds::Account;
use crate::numbers::Overflow;
use crate::pool;
use crate::state::{Key, Pool, PoolPeriod, State};

impl Ctx<'_> {
    /// Add `net` to the pool period that contains the block time: it is
    /// under way, so not yet split.
    pub(super) fn add_to_pool_now(&mut self, id: &Hash, net: i64) -> AppResult {
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

    // --- pools -------------------------------------------------------

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

    pub(super) fn member_of(&self, id: &Hash) -> AppResult<(Pool, String)> {
        let firm = self.require_trader()?;
        let pool = pool(self.state, id)?;
        if !pool.keys.contains_key(&firm) {
            return Err(AppError::NotMember(firm));
        }
        Ok((pool, firm))
    }

    pub(super) fn post_pool_amount(&mut self, id: &Hash, period: u32, amount: i64) -> AppResult {
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

    pub(super) fn split_pool(&mut self, id: &Hash, period: u32) -> AppResult {
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
}

pub(super) fn pool(state: &State, id: &Hash) -> AppResult<Pool> {
    state.get(&Key::Pool(*id)).ok_or(AppError::UnknownPool(*id))
}
