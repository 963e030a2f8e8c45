//! ISO-8601 date-times for `group reset --to-datetime`, without a calendar crate.

/// Milliseconds since the epoch of `YYYY-MM-DD[THH:MM[:SS[.fff]]][Z|±HH:MM|±HHMM]`; no zone
/// means UTC. None if it does not parse.
pub fn parse_iso_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, rest) = s.split_at(s.find(['T', ' ']).unwrap_or(s.len()));
    let mut d = date.split('-');
    let (y, mo, da) = (d.next()?.parse::<i64>().ok()?, d.next()?.parse::<i64>().ok()?, d.next()?.parse::<i64>().ok()?);
    if d.next().is_some() || !(1..=12).contains(&mo) || !(1..=days_in_month(y, mo)).contains(&da) {
        return None;
    }
    let rest = rest.get(1..).unwrap_or("");
    let (time, offset_ms) = split_zone(rest)?;
    let mut ms = 0i64;
    if !time.is_empty() {
        let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
        let mut parts = hms.split(':');
        let h = parts.next()?.parse::<i64>().ok()?;
        let mi = parts.next()?.parse::<i64>().ok()?;
        let sec = parts.next().map_or(Some(0), |x| x.parse::<i64>().ok())?;
        if parts.next().is_some() || h > 23 || mi > 59 || sec > 60 || h < 0 || mi < 0 || sec < 0 {
            return None;
        }
        let frac_ms = if frac.is_empty() {
            0
        } else {
            if !frac.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            format!("{frac:0<3}")[..3].parse::<i64>().ok()?
        };
        ms = ((h * 60 + mi) * 60 + sec) * 1000 + frac_ms;
    }
    Some(days_from_civil(y, mo, da) * 86_400_000 + ms - offset_ms)
}

fn split_zone(t: &str) -> Option<(&str, i64)> {
    if let Some(t) = t.strip_suffix('Z') {
        return Some((t, 0));
    }
    match t.rfind(['+', '-']) {
        Some(at) => {
            let zone = t[at + 1..].replace(':', "");
            if zone.len() != 4 || !zone.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let minutes = zone[..2].parse::<i64>().ok()? * 60 + zone[2..].parse::<i64>().ok()?;
            let sign = if &t[at..at + 1] == "-" { -1 } else { 1 };
            Some((&t[..at], sign * minutes * 60_000))
        }
        None => Some((t, 0)),
    }
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_date_times() {
        assert_eq!(parse_iso_ms("1970-01-01"), Some(0));
        assert_eq!(parse_iso_ms("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(parse_iso_ms("2026-12-01T10:00:00"), Some(1_796_119_200_000));
        assert_eq!(parse_iso_ms("2026-12-01T11:00:00+01:00"), Some(1_796_119_200_000));
        assert_eq!(parse_iso_ms("2026-12-01T09:30:00-0030"), Some(1_796_119_200_000));
        assert_eq!(parse_iso_ms("2024-02-29T23:59"), Some(1_709_251_140_000));
        for bad in ["", "2026-13-01", "2023-02-29", "2026-12-01T25:00", "yesterday", "2026-12-01T10:00+1"] {
            assert_eq!(parse_iso_ms(bad), None, "{bad}");
        }
    }
}
