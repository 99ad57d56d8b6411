//! The market: offers (supply) and requests (demand), taken by another
//! firm or withdrawn by their owner.

use std::collections::BTreeMap;

use super::{AppError, AppResult, Ctx, MAX_QUALITY_FIELDS, check_schedule, check_text, kind};
use crate::genesis::ResourceKind;
use crate::hash::Hash;
use crate::kinds::ListingTerms;
use crate::state::{Key, Listing, ListingStatus, Side};

impl Ctx<'_> {
    pub(super) fn post_listing(&mut self, side: Side, terms: &ListingTerms) -> AppResult {
        let owner = self.require_trading_firm()?;
        let kind = kind(self.state, &terms.kind)?;
        check_quality(&kind, &terms.quality)?;
        check_text("delivery_point", &terms.delivery_point)?;
        check_schedule(terms.period_ms, terms.periods)?;
        if terms.quantity_per_period == 0 {
            return Err(AppError::Invalid {
                field: "quantity_per_period",
                rule: "must be above 0",
            });
        }
        if terms.valid_until_ms <= self.now_ms {
            return Err(AppError::Invalid {
                field: "valid_until_ms",
                rule: "must be after the block time",
            });
        }
        let listing = Listing {
            owner,
            side,
            terms: terms.clone(),
            status: ListingStatus::Open,
        };
        self.state.put(&Key::Listing(self.tx_id), &listing);
        Ok(())
    }

    pub(super) fn open_listing(&self, id: &Hash) -> AppResult<Listing> {
        let listing: Listing = self
            .state
            .get(&Key::Listing(*id))
            .ok_or(AppError::UnknownListing(*id))?;
        if listing.status != ListingStatus::Open {
            return Err(AppError::ListingClosed(*id));
        }
        Ok(listing)
    }

    pub(super) fn accept(&mut self, id: &Hash) -> AppResult {
        let firm = self.require_trading_firm()?;
        let mut listing = self.open_listing(id)?;
        if self.now_ms >= listing.terms.valid_until_ms {
            return Err(AppError::ListingExpired(*id));
        }
        if listing.owner == firm {
            return Err(AppError::OwnListing);
        }
        listing.status = ListingStatus::Accepted {
            by: firm,
            at_ms: self.now_ms,
        };
        self.state.put(&Key::Listing(*id), &listing);
        Ok(())
    }

    pub(super) fn withdraw(&mut self, id: &Hash) -> AppResult {
        let firm = self.require_trader()?;
        let mut listing = self.open_listing(id)?;
        if listing.owner != firm {
            return Err(AppError::NotOwner);
        }
        listing.status = ListingStatus::Withdrawn { at_ms: self.now_ms };
        self.state.put(&Key::Listing(*id), &listing);
        Ok(())
    }
}

pub(super) fn check_quality(kind: &ResourceKind, quality: &BTreeMap<String, i64>) -> AppResult {
    if quality.len() > MAX_QUALITY_FIELDS || quality.keys().any(|name| !kind.quality.contains(name))
    {
        return Err(AppError::Invalid {
            field: "quality",
            rule: "only the resource kind's quality fields, at most 16",
        });
    }
    Ok(())
}
