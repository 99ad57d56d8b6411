//! Disputes on a contract period, opened by a party and resolved by the
//! contract's arbiter.

use super::{AppError, AppResult, Ctx, check_text};
use crate::hash::Hash;
use crate::state::{DisputeStatus, Key, PeriodRecord};

impl Ctx<'_> {
    pub(super) fn open_dispute(&mut self, id: &Hash, period: u32, reason: &str) -> AppResult {
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

    pub(super) fn resolve_dispute(&mut self, id: &Hash, period: u32, adjustment: i64) -> AppResult {
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
