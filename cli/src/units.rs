//! People write quantities in the kind's unit ("12.5" t), money in the
//! currency ("25.00" EUR) and durations as "1h"; the ledger keeps
//! thousandths, minor units and milliseconds. Conversions are exact: a
//! value with more decimals than the ledger keeps is refused, not rounded.

use anyhow::{Context, Result, bail};

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

/// "25%" or "33.33" (percent, up to 2 decimals) → basis points.
pub fn parse_percent_bp(text: &str) -> Result<u16> {
    let number = text.strip_suffix('%').unwrap_or(text);
    let bp = parse_decimal(number, 2, false)
        .with_context(|| format!("{text:?} is not a percentage like 10% or 33.33%"))?;
    match u16::try_from(bp) {
        Ok(bp) if bp <= 10_000 => Ok(bp),
        _ => bail!("{text:?}: a percentage is at most 100%"),
    }
}

/// This machine's clock, milliseconds since the Unix epoch (0 before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A point in time → milliseconds since the Unix epoch: `now`, `now+30s`
/// (any duration of [`parse_duration_ms`]), `2026-12-01`,
/// `2026-12-01T06:00:00Z` / `2026-12-01 06:00:00Z` (UTC), or `@MS`.
/// `now` is this machine's clock: the ledger itself reads only block time.
pub fn parse_time_ms(text: &str) -> Result<u64> {
    let now = || -> Result<u64> {
        Ok(std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis()
            .try_into()?)
    };
    if text == "now" {
        return now();
    }
    if let Some(offset) = text.strip_prefix("now+") {
        return now()?
            .checked_add(parse_duration_ms(offset)?)
            .with_context(|| format!("{text:?} is too far ahead"));
    }
    if let Some(ms) = text.strip_prefix('@') {
        return ms
            .parse()
            .with_context(|| format!("{text:?}: @ and milliseconds since 1970 expected"));
    }
    let bad = || {
        anyhow::anyhow!(
            "{text:?} is not a time: now, now+1h, 2026-12-01, 2026-12-01T06:00:00Z or @<ms> expected"
        )
    };
    let (date, time) = match text.split_once(['T', ' ']) {
        Some((date, time)) => (date, Some(time.strip_suffix('Z').ok_or_else(bad)?)),
        None => (text, None),
    };
    let numbers = |part: &str, sep: char, count: usize| -> Result<Vec<i64>> {
        let fields: Vec<&str> = part.split(sep).collect();
        if fields.len() != count || fields.iter().any(|f| f.is_empty() || f.len() > 4) {
            return Err(bad());
        }
        fields
            .iter()
            .map(|f| f.parse::<i64>().map_err(|_| bad()))
            .collect()
    };
    let ymd = numbers(date, '-', 3)?;
    let hms = match time {
        Some(time) => numbers(time, ':', 3)?,
        None => vec![0, 0, 0],
    };
    let (year, month, day) = (ymd[0], ymd[1], ymd[2]);
    if !(1970..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || !(0..24).contains(&hms[0])
        || !(0..60).contains(&hms[1])
        || !(0..60).contains(&hms[2])
    {
        return Err(bad());
    }
    // Days from civil (Howard Hinnant's algorithm), the inverse of
    // format_time_ms.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hms[0] * 3600 + hms[1] * 60 + hms[2];
    let ms = u64::try_from(secs).map_err(|_| bad())? * 1000;
    if format_time_ms(ms)[..10] != *date {
        bail!("{text:?}: no such day");
    }
    Ok(ms)
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
        assert_eq!(
            parse_time_ms("2024-02-29T23:59:59Z").unwrap(),
            1_709_251_199_000
        );
        assert_eq!(
            parse_time_ms("2024-02-29 23:59:59Z").unwrap(),
            1_709_251_199_000
        );
        assert_eq!(parse_time_ms("1970-01-01").unwrap(), 0);
        assert_eq!(parse_time_ms("@1234").unwrap(), 1234);
        assert!(parse_time_ms("2023-02-29").is_err());
        assert!(parse_time_ms("2024-13-01").is_err());
        assert!(parse_time_ms("2024-02-29T23:59:59").is_err());
        assert!(parse_time_ms("tomorrow").is_err());
        let now = parse_time_ms("now").unwrap();
        let later = parse_time_ms("now+1h").unwrap();
        assert!(later >= now + 3_600_000 && later < now + 3_700_000);
        assert_eq!(parse_percent_bp("10%").unwrap(), 1000);
        assert_eq!(parse_percent_bp("33.33").unwrap(), 3333);
        assert!(parse_percent_bp("100.01%").is_err());
        assert!(parse_percent_bp("-1%").is_err());
    }
}
