//! Integer arithmetic of settlement: i128 intermediates, one rounding rule
//! (half to even), and overflow as a typed error.
//!
//! No floating point anywhere. Quantities are integer thousandths of a
//! resource kind's unit (`u64`), money is integer minor units of the
//! settlement currency (`i64`), and every product is formed in `i128` and
//! narrowed back with a check. Nothing here wraps or panics.

/// A result that does not fit its type. `what` names the quantity, for
/// error messages and receipts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("arithmetic overflow computing {what}")]
pub struct Overflow {
    pub what: &'static str,
}

/// `x / d` rounded half to even ("banker's rounding"), for `d > 0`.
///
/// Exact for every i128 `x`: the quotient is floored, then moved up by one
/// when the remainder is more than half of `d`, or exactly half and the
/// floored quotient is odd. `d <= 0` is a caller's bug and reported as an
/// overflow of `what` rather than a panic.
pub fn rhe(x: i128, d: i128, what: &'static str) -> Result<i128, Overflow> {
    if d <= 0 {
        return Err(Overflow { what });
    }
    let floor = x.div_euclid(d);
    let remainder = x.rem_euclid(d); // 0 <= remainder < d
    let above_half = remainder - (d - remainder); // sign of 2r - d, without overflow
    let round_up = above_half > 0 || (above_half == 0 && floor % 2 != 0);
    if round_up {
        floor.checked_add(1).ok_or(Overflow { what })
    } else {
        Ok(floor)
    }
}

/// `a * b` in i128, checked.
pub fn mul(a: i128, b: i128, what: &'static str) -> Result<i128, Overflow> {
    a.checked_mul(b).ok_or(Overflow { what })
}

/// `a + b` in i128, checked.
pub fn add(a: i128, b: i128, what: &'static str) -> Result<i128, Overflow> {
    a.checked_add(b).ok_or(Overflow { what })
}

/// `a - b` in i128, checked.
pub fn sub(a: i128, b: i128, what: &'static str) -> Result<i128, Overflow> {
    a.checked_sub(b).ok_or(Overflow { what })
}

/// Narrow to money (i64 minor units), checked.
pub fn to_money(x: i128, what: &'static str) -> Result<i64, Overflow> {
    i64::try_from(x).map_err(|_| Overflow { what })
}

/// Narrow to a quantity (u64 thousandths), checked: negative is an overflow too.
pub fn to_quantity(x: i128, what: &'static str) -> Result<u64, Overflow> {
    u64::try_from(x).map_err(|_| Overflow { what })
}

/// `quantity * rate / 1000`, half to even: money (or grams) for a quantity
/// in thousandths of a unit at a rate per whole unit.
pub fn per_unit(
    quantity_milli: u64,
    rate_per_unit: i128,
    what: &'static str,
) -> Result<i128, Overflow> {
    let product = mul(quantity_milli as i128, rate_per_unit, what)?;
    rhe(product, 1000, what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_to_even_at_exact_halves() {
        // 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -0.5 -> 0, -1.5 -> -2, -2.5 -> -2
        let cases = [
            (5, 0),
            (15, 2),
            (25, 2),
            (35, 4),
            (-5, 0),
            (-15, -2),
            (-25, -2),
        ];
        for (x, expected) in cases {
            assert_eq!(rhe(x, 10, "t").unwrap(), expected, "rhe({x}, 10)");
        }
    }

    #[test]
    fn other_remainders_round_to_nearest() {
        let cases = [
            (14, 1),
            (16, 2),
            (-14, -1),
            (-16, -2),
            (20, 2),
            (-20, -2),
            (1, 0),
            (9, 1),
        ];
        for (x, expected) in cases {
            assert_eq!(rhe(x, 10, "t").unwrap(), expected, "rhe({x}, 10)");
        }
    }

    #[test]
    fn extremes_do_not_panic() {
        assert_eq!(rhe(i128::MAX, 1, "t").unwrap(), i128::MAX);
        assert_eq!(rhe(i128::MIN, 1, "t").unwrap(), i128::MIN);
        assert_eq!(rhe(i128::MIN, i128::MAX, "t").unwrap(), -1);
        assert_eq!(rhe(i128::MAX, i128::MAX, "t").unwrap(), 1);
        assert_eq!(rhe(1, 0, "t"), Err(Overflow { what: "t" }));
        assert_eq!(mul(i128::MAX, 2, "m"), Err(Overflow { what: "m" }));
        assert_eq!(
            to_money(i64::MAX as i128 + 1, "n"),
            Err(Overflow { what: "n" })
        );
        assert_eq!(to_quantity(-1, "q"), Err(Overflow { what: "q" }));
    }
}
