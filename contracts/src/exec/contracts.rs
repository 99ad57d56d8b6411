//! Contracts between a supplier and a consumer: proposal, countersignature
//! and termination; the readings of each period (availability, delivery,
//! check) and the settlement of a period.

use super::ledger::{add_avoided, transfer};
use super::market::check_quality;
use super::pools::{pool, require_active};
use super::{AppError, AppResult, Ctx, check_schedule, check_text, firm, kind, window};
use crate::genesis::ResourceKind;
use crate::hash::Hash;
use crate::keys::PublicKey;
use crate::kinds::{Account, ContractTerms};
use crate::numbers::Overflow;
use crate::settlement::{self, Readings};
use crate::state::{
    AvoidedAccount, Contract, ContractStatus, DisputeStatus, JournalEntry, Key, KeyRecord, Listing,
    ListingStatus, PeriodRecord, Role, Settled, Side,
};

impl Ctx<'_> {
    pub(super) fn propose_contract(&mut self, terms: &ContractTerms) -> AppResult {
        let proposer = self.require_trading_firm()?;
        if proposer != terms.supplier && proposer != terms.consumer {
            return Err(AppError::WrongParty(proposer));
        }
        let kind = self.check_contract_terms(terms)?;
        if proposer == terms.consumer {
            self.check_licence(&kind, &terms.consumer)?;
        }
        let contract = Contract {
            terms: terms.clone(),
            proposer,
            status: ContractStatus::Proposed,
            terminate_requests: Vec::new(),
        };
        self.state.put(&Key::Contract(self.tx_id), &contract);
        Ok(())
    }

    pub(super) fn check_contract_terms(&self, terms: &ContractTerms) -> AppResult<ResourceKind> {
        if terms.supplier == terms.consumer {
            return Err(AppError::Invalid {
                field: "consumer",
                rule: "must differ from the supplier",
            });
        }
        for party in [&terms.supplier, &terms.consumer] {
            if firm(self.state, party)?.facilitator {
                return Err(AppError::FacilitatorTrades(party.clone()));
            }
        }
        let kind = kind(self.state, &terms.kind)?;
        check_quality(&kind, &terms.quality)?;
        check_text("delivery_point", &terms.delivery_point)?;
        terms.settlement.validate()?;
        check_schedule(terms.period_ms, terms.periods)?;
        // The whole schedule must be representable in u64 milliseconds.
        (terms.period_ms as u128 * terms.periods as u128 + terms.start_ms as u128)
            .try_into()
            .map(|_: u64| ())
            .map_err(|_| Overflow {
                what: "contract end",
            })?;
        let meter_of_party = |key: &PublicKey| {
            self.state
                .get::<KeyRecord>(&Key::Key(*key))
                .is_some_and(|r| {
                    r.role == Role::Meter && (r.firm == terms.supplier || r.firm == terms.consumer)
                })
        };
        if !meter_of_party(&terms.billing_meter) {
            return Err(AppError::Invalid {
                field: "billing_meter",
                rule: "must be a meter key of the supplier or the consumer",
            });
        }
        if let Some(check) = &terms.check_meter
            && (*check == terms.billing_meter || !meter_of_party(check))
        {
            return Err(AppError::Invalid {
                field: "check_meter",
                rule: "must be another meter key of the supplier or the consumer",
            });
        }
        if let Some(arbiter) = &terms.arbiter {
            firm(self.state, arbiter)?;
            if *arbiter == terms.supplier || *arbiter == terms.consumer {
                return Err(AppError::Invalid {
                    field: "arbiter",
                    rule: "must not be a party",
                });
            }
        }
        if let Some(id) = &terms.listing {
            self.check_listing_matches(id, terms)?;
        }
        if let Some(id) = &terms.gain_pool {
            let pool = pool(self.state, id)?;
            if !pool.keys.contains_key(&terms.supplier) {
                return Err(AppError::NotMember(terms.supplier.clone()));
            }
            // Money flows into a pool only once it binds all its members.
            require_active(id, &pool)?;
        }
        Ok(kind)
    }

    pub(super) fn check_listing_matches(&self, id: &Hash, terms: &ContractTerms) -> AppResult {
        let listing: Listing = self
            .state
            .get(&Key::Listing(*id))
            .ok_or(AppError::UnknownListing(*id))?;
        let ListingStatus::Accepted { by, .. } = &listing.status else {
            return Err(AppError::Invalid {
                field: "listing",
                rule: "must be an accepted listing",
            });
        };
        let (supplier, consumer) = match listing.side {
            Side::Offer => (&listing.owner, by),
            Side::Request => (by, &listing.owner),
        };
        if *supplier != terms.supplier
            || *consumer != terms.consumer
            || listing.terms.kind != terms.kind
        {
            return Err(AppError::Invalid {
                field: "listing",
                rule: "parties and kind must match the accepted listing",
            });
        }
        Ok(())
    }

    pub(super) fn contract(&self, id: &Hash) -> AppResult<Contract> {
        self.state
            .get(&Key::Contract(*id))
            .ok_or(AppError::UnknownContract(*id))
    }

    pub(super) fn countersign(&mut self, id: &Hash) -> AppResult {
        let firm = self.require_trading_firm()?;
        let mut contract = self.contract(id)?;
        if contract.status != ContractStatus::Proposed {
            return Err(AppError::NotProposed(*id));
        }
        let terms = &contract.terms;
        let other = if contract.proposer == terms.supplier {
            &terms.consumer
        } else {
            &terms.supplier
        };
        if firm != *other {
            return Err(AppError::WrongParty(firm));
        }
        // Re-check what may have changed since the proposal.
        let kind = self.check_contract_terms(terms)?;
        self.check_licence(&kind, &terms.consumer)?;
        contract.status = ContractStatus::Active {
            signed_at_ms: self.now_ms,
        };
        self.state.put(&Key::Contract(*id), &contract);
        Ok(())
    }

    pub(super) fn terminate(&mut self, id: &Hash) -> AppResult {
        let firm = self.require_trader()?;
        let mut contract = self.contract(id)?;
        let terms = &contract.terms;
        let is_party = firm == terms.supplier || firm == terms.consumer;
        let is_arbiter = terms.arbiter.as_deref() == Some(firm.as_str());
        match contract.status {
            ContractStatus::Terminated { .. } | ContractStatus::Withdrawn { .. } => {
                return Err(AppError::ContractNotActive(*id));
            }
            // A proposal is withdrawn by either party.
            ContractStatus::Proposed if is_party => {
                contract.status = ContractStatus::Withdrawn { at_ms: self.now_ms };
            }
            ContractStatus::Proposed => return Err(AppError::WrongParty(firm)),
            ContractStatus::Active { .. } if is_arbiter => {
                contract.status = ContractStatus::Terminated { at_ms: self.now_ms };
            }
            ContractStatus::Active { .. } if is_party => {
                if contract.terminate_requests.contains(&firm) {
                    return Err(AppError::AlreadyRequested { firm });
                }
                contract.terminate_requests.push(firm);
                contract.terminate_requests.sort();
                if contract.terminate_requests.len() == 2 {
                    contract.status = ContractStatus::Terminated { at_ms: self.now_ms };
                }
            }
            ContractStatus::Active { .. } => return Err(AppError::WrongParty(firm)),
        }
        self.state.put(&Key::Contract(*id), &contract);
        Ok(())
    }

    // --- metering and settlement ---------------------------------------

    /// A period of a contract in force: (start, end) in ms.
    pub(super) fn period_window(
        &self,
        id: &Hash,
        contract: &Contract,
        period: u32,
    ) -> AppResult<(u64, u64)> {
        let terms = &contract.terms;
        if period >= terms.periods {
            return Err(AppError::PeriodOutOfRange {
                period,
                periods: terms.periods,
            });
        }
        let (start, end) = window(terms.start_ms, terms.period_ms, period)?;
        match contract.status {
            // Never countersigned: it binds nobody.
            ContractStatus::Proposed | ContractStatus::Withdrawn { .. } => {
                Err(AppError::ContractNotActive(*id))
            }
            ContractStatus::Terminated { at_ms } if start >= at_ms => {
                Err(AppError::PeriodVoid { period })
            }
            _ => Ok((start, end)),
        }
    }

    pub(super) fn record(
        &mut self,
        id: &Hash,
        period: u32,
        quantity: u64,
        reading: Reading,
    ) -> AppResult {
        let contract = self.contract(id)?;
        self.check_reader(&contract, reading)?;
        let (start, end) = self.period_window(id, &contract, period)?;
        if self.now_ms < start {
            return Err(AppError::PeriodNotStarted {
                period,
                start_ms: start,
            });
        }
        let closed_ms = metering_closes_ms(&contract.terms, end);
        if self.now_ms >= closed_ms {
            return Err(AppError::MeteringClosed { period, closed_ms });
        }
        let (key, mut record) = self.unsettled_period(id, period)?;
        let slot = match reading {
            Reading::Availability => &mut record.availability,
            Reading::Delivery => &mut record.delivered,
            Reading::Check => &mut record.check,
        };
        if slot.is_some() {
            return Err(AppError::AlreadyRecorded {
                what: reading.name(),
                period,
            });
        }
        *slot = Some(quantity);
        self.state.put(&key, &record);
        Ok(())
    }

    pub(super) fn check_reader(&self, contract: &Contract, reading: Reading) -> AppResult {
        let terms = &contract.terms;
        match reading {
            Reading::Availability => {
                let firm = self.require_trader()?;
                if firm != terms.supplier {
                    return Err(AppError::WrongParty(firm));
                }
                Ok(())
            }
            Reading::Delivery | Reading::Check => {
                let expected = match reading {
                    Reading::Delivery => Some(terms.billing_meter),
                    _ => terms.check_meter,
                };
                if self.actor.role != Role::Meter || expected != Some(self.signer) {
                    return Err(AppError::NotMeter {
                        which: reading.name(),
                    });
                }
                Ok(())
            }
        }
    }

    /// A period's record (empty if none yet) and its key; a settled
    /// period takes no more readings and no second settlement.
    fn unsettled_period(&self, id: &Hash, period: u32) -> AppResult<(Key, PeriodRecord)> {
        let key = Key::Period {
            contract: *id,
            period,
        };
        let record: PeriodRecord = self.state.get(&key).unwrap_or_default();
        if record.settled.is_some() {
            return Err(AppError::PeriodAlreadySettled { period });
        }
        Ok((key, record))
    }

    pub(super) fn settle_period(&mut self, id: &Hash, period: u32) -> AppResult {
        let firm = self.require_trader()?;
        let contract = self.contract(id)?;
        let terms = &contract.terms;
        if firm != terms.supplier && firm != terms.consumer {
            return Err(AppError::WrongParty(firm));
        }
        let (_, end) = self.period_window(id, &contract, period)?;
        if self.now_ms < end {
            return Err(AppError::PeriodNotOver {
                period,
                end_ms: end,
            });
        }
        let (key, mut record) = self.unsettled_period(id, period)?;
        let adjustment = match &record.dispute {
            Some(DisputeStatus::Open { .. }) => return Err(AppError::DisputeOpen { period }),
            Some(DisputeStatus::Resolved { adjustment, .. }) => *adjustment,
            None => 0,
        };
        // No party settles away the other party's reading: before metering
        // closes, every expected reading must be in.
        let closed_ms = metering_closes_ms(terms, end);
        let missing = missing_readings(terms, &record);
        if self.now_ms < closed_ms && !missing.is_empty() {
            return Err(AppError::ReadingsMissing {
                period,
                missing,
                closed_ms,
            });
        }
        let readings = Readings {
            availability: record.availability.unwrap_or(0),
            delivered: record.delivered.unwrap_or(0),
            check: record.check,
        };
        let statement = settlement::settle(&terms.settlement, &readings)?;
        let net = statement
            .net
            .checked_add(adjustment)
            .ok_or(Overflow { what: "net" })?;
        let journal = self.owe(terms, net)?;
        let factor = kind(self.state, &terms.kind)?.emission_factor_g;
        let avoided_g = settlement::avoided_grams(readings.delivered, factor)?;
        for account in [
            AvoidedAccount::Firm(terms.supplier.clone()),
            AvoidedAccount::Firm(terms.consumer.clone()),
            AvoidedAccount::Network,
        ] {
            add_avoided(self.state, account, avoided_g)?;
        }
        record.settled = Some(Settled {
            at_ms: self.now_ms,
            statement,
            adjustment,
            net,
            avoided_g,
            journal,
        });
        self.state.put(&key, &record);
        Ok(())
    }

    /// The consumer owes the supplier (or the supplier's gain-sharing pool)
    /// `net`; negative: the other way round.
    pub(super) fn owe(&mut self, terms: &ContractTerms, net: i64) -> AppResult<Vec<JournalEntry>> {
        let consumer = Account::Firm(terms.consumer.clone());
        let supplier = match &terms.gain_pool {
            Some(pool) => {
                self.add_to_pool_now(pool, net)?;
                Account::Pool(*pool)
            }
            None => Account::Firm(terms.supplier.clone()),
        };
        if net >= 0 {
            transfer(self.state, &consumer, &supplier, net)
        } else {
            let amount = net.checked_neg().ok_or(Overflow { what: "net" })?;
            transfer(self.state, &supplier, &consumer, amount)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reading {
    Availability,
    Delivery,
    Check,
}

impl Reading {
    fn name(self) -> &'static str {
        match self {
            Reading::Availability => "availability",
            Reading::Delivery => "billing",
            Reading::Check => "check",
        }
    }
}

/// Readings of a period are accepted until one period length after its
/// end; from then on it may be settled with whatever readings are in.
fn metering_closes_ms(terms: &ContractTerms, end_ms: u64) -> u64 {
    end_ms.saturating_add(terms.period_ms)
}

/// The readings a period expects that are not in yet: availability,
/// billing, and check where the contract names a check meter.
fn missing_readings(terms: &ContractTerms, record: &PeriodRecord) -> Vec<&'static str> {
    let expected = [
        (Reading::Availability, record.availability.is_some()),
        (Reading::Delivery, record.delivered.is_some()),
        (
            Reading::Check,
            terms.check_meter.is_none() || record.check.is_some(),
        ),
    ];
    expected
        .into_iter()
        .filter(|(_, present)| !present)
        .map(|(reading, _)| reading.name())
        .collect()
}
