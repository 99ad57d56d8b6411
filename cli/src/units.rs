//! People write quantities in the kind's unit ("12.5" t), money in the
//! currency ("25.00" EUR) and durations as "1h"; the ledger keeps
//! thousandths, minor units and milliseconds. Conversions are exact: a
//! value with more decimals than the ledger keeps is refused, not rounded.

use anyhow::{Result, bail};

/// "12.5" with `decimals` = 3 → 12500. A leading '-' when `signed`.
pub fn parse_decimal(text: &str, decimals: u32, signed: bool) -> Result<i128> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) if signed => (true, rest),
        Some(_) => bail!("{text:?}: a negative value is not allowed here"),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let is_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !is_digits(whole) || !is_digits(fraction) || whole.len() > 20 {
        bail!("{text:?} is not a number like 12.5");
    }
    if fraction.len() > decimals as usize {
        bail!("{text:?} has more than {decimals} decimals");
    }
    let scale = 10i128.pow(decimals);
    let mut value = whole.parse::<i128>()? * scale;
    if !fraction.is_empty() {
        value += fraction.parse::<i128>()? * 10i128.pow(decimals - fraction.len() as u32);
    }
    Ok(if negative { -value } else { value })
}

/// A quantity in the kind's unit → thousandths.
pub fn parse_quantity(text: &str) -> Result<u64> {
    let value = parse_decimal(text, 3, false)?;
    u64::try_from(value).map_err(|_| anyhow::anyhow!("{text:?} is too large"))
}

/// An amount of the currency → minor units (negative allowed: a gate fee).
pub fn parse_money(text: &str, minor_units: u32) -> Result<i64> {
    let value = parse_decimal(text, minor_units, true)?;
    i64::try_from(value).map_err(|_| anyhow::anyhow!("{text:?} is too large"))
}

/// `value` / 10^decimals with exactly `decimals` decimals.
pub fn format_decimal(value: i128, decimals: u32) -> String {
    let scale = 10i128.pow(decimals);
    let sign = if value < 0 { "-" } else { "" };
    let abs = value.unsigned_abs();
    let (whole, fraction) = (abs / scale as u128, abs % scale as u128);
    if decimals == 0 {
        format!("{sign}{whole}")
    } else {
        format!(
            "{sign}{whole}.{fraction:0width$}",
            width = decimals as usize
        )
    }
}

/// Thousandths → "12.5 t" (trailing zeros of the fraction dropped).
pub fn format_quantity(thousandths: u64, unit: &str) -> String {
    let text = format_decimal(i128::from(thousandths), 3);
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text} {unit}")
}

/// Minor units → "25.00 EUR".
pub fn format_money(minor: i64, code: &str, minor_units: u32) -> String {
    format!("{} {code}", format_decimal(i128::from(minor), minor_units))
}

/// "90s", "15m", "1h", "7d", "500ms" → milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<u64> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let factor = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => bail!("{text:?} is not a duration like 15m, 1h or 7d (units ms, s, m, h, d)"),
    };
    let number: u64 = number
        .parse()
        .map_err(|_| anyhow::anyhow!("{text:?} is not a duration like 15m, 1h or 7d"))?;
    match number.checked_mul(factor) {
        Some(0) => bail!("{text:?}: a duration must be positive"),
        Some(ms) => Ok(ms),
        None => bail!("{text:?} is too long"),
    }
}

/// Milliseconds → "1h", "90m", "1500ms": the largest unit that divides it.
pub fn format_duration_ms(ms: u64) -> String {
    for (unit, factor) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms > 0 && ms.is_multiple_of(factor) {
            return format!("{}{unit}", ms / factor);
        }
    }
    format!("{ms}ms")
}

/// Milliseconds since the Unix epoch → "2026-11-26 16:39:41Z" (UTC).
pub fn format_time_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_and_money_convert_exactly() {
        assert_eq!(parse_quantity("12.5").unwrap(), 12_500);
        assert_eq!(parse_quantity("3").unwrap(), 3_000);
        assert_eq!(parse_quantity("0.001").unwrap(), 1);
        assert!(parse_quantity("0.0001").is_err());
        assert!(parse_quantity("-1").is_err());
        assert!(parse_quantity("1e3").is_err());
        assert!(parse_quantity(".5").is_err());
        assert_eq!(parse_money("25.00", 2).unwrap(), 2_500);
        assert_eq!(parse_money("-4.5", 2).unwrap(), -450);
        assert!(parse_money("1.234", 2).is_err());
        assert_eq!(format_quantity(12_500, "t"), "12.5 t");
        assert_eq!(format_quantity(3_000, "MWh"), "3 MWh");
        assert_eq!(format_money(2_500, "EUR", 2), "25.00 EUR");
        assert_eq!(format_money(-450, "EUR", 2), "-4.50 EUR");
        assert_eq!(format_money(7, "JPY", 0), "7 JPY");
    }

    #[test]
    fn durations_and_times() {
        assert_eq!(parse_duration_ms("1h").unwrap(), 3_600_000);
        assert_eq!(parse_duration_ms("7d").unwrap(), 604_800_000);
        assert_eq!(parse_duration_ms("250ms").unwrap(), 250);
        assert!(parse_duration_ms("1").is_err());
        assert!(parse_duration_ms("0h").is_err());
        assert!(parse_duration_ms("h").is_err());
        assert_eq!(format_duration_ms(3_600_000), "1h");
        assert_eq!(format_duration_ms(5_400_000), "90m");
        assert_eq!(format_duration_ms(1_500), "1500ms");
        assert_eq!(format_time_ms(0), "1970-01-01 00:00:00Z");
        assert_eq!(format_time_ms(1_709_251_199_000), "2024-02-29 23:59:59Z");
    }
}
