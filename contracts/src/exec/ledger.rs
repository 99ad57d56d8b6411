//! Balances and obligations: the two-line journals every settlement and
//! split writes, and the payee's acknowledgement of a payment.

use super::pools::pool;
use super::{AppError, AppResult, Ctx};
use crate::kinds::Account;
use crate::numbers::Overflow;
use crate::state::{AvoidedAccount, JournalEntry, Key, State};

impl Ctx<'_> {
    pub(super) fn acknowledge_payment(
        &mut self,
        payer: &Account,
        payee: &Account,
        amount: i64,
    ) -> AppResult {
        let firm = self.require_trader()?;
        let acknowledger = match payee {
            Account::Firm(id) => id.clone(),
            Account::Pool(id) => pool(self.state, id)?.operator,
        };
        if firm != acknowledger {
            return Err(AppError::WrongParty(firm));
        }
        // Nobody acknowledges a payment to itself: not a firm paying into
        // the pool it operates, and no account paying itself.
        if payer == payee || *payer == Account::Firm(firm.clone()) {
            return Err(AppError::OwnPayment {
                payer: payer.clone(),
                payee: payee.clone(),
                firm,
            });
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
}

/// `debtor` owes `creditor` `amount` (>= 0): a two-line journal summing to zero.
pub(super) fn transfer(
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

pub(super) fn put_obligation(state: &mut State, key: Key, outstanding: i64) {
    assert!(outstanding >= 0, "an obligation is never negative");
    if outstanding == 0 {
        state.delete(&key);
    } else {
        state.put(&key, &outstanding);
    }
}

pub(super) fn add_balance(state: &mut State, account: &Account, amount: i64) -> AppResult {
    let key = Key::Balance(account.clone());
    let balance: i64 = state.get(&key).unwrap_or(0);
    let balance = balance
        .checked_add(amount)
        .ok_or(Overflow { what: "balance" })?;
    state.put(&key, &balance);
    Ok(())
}

pub(super) fn add_avoided(state: &mut State, account: AvoidedAccount, grams: u64) -> AppResult {
    let key = Key::Avoided(account);
    let total: u64 = state.get(&key).unwrap_or(0);
    let total = total.checked_add(grams).ok_or(Overflow {
        what: "avoided emissions",
    })?;
    state.put(&key, &total);
    Ok(())
}
