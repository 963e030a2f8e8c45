//! Parsing of human quantities: byte sizes (`1KiB`, `200MB`), byte rates (`1GB/s`) and durations
//! (`10s`, `500ms`, `2m`). Decimal prefixes are powers of 1000 (as in the seeds' "MB/s"), binary
//! prefixes (`KiB`, `MiB`, `GiB`) powers of 1024.

use crate::error::{Error, Result};
use std::time::Duration;

fn quantity_error(input: &str, reason: &'static str) -> Error {
    Error::Quantity {
        input: input.to_owned(),
        reason,
    }
}

/// Splits `"12.5MB"` into `(12.5, "MB")`.
fn split_number(input: &str) -> Result<(f64, &str)> {
    let s = input.trim();
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(s.len());
    if end == 0 {
        return Err(quantity_error(input, "expected a number first"));
    }
    let number: f64 = s[..end]
        .replace('_', "")
        .parse()
        .map_err(|_| quantity_error(input, "not a number"))?;
    if !number.is_finite() || number < 0.0 {
        return Err(quantity_error(input, "must be a finite, non-negative number"));
    }
    Ok((number, s[end..].trim()))
}

fn size_multiplier(unit: &str) -> Option<f64> {
    let m = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0_f64.powi(4),
        _ => return None,
    };
    Some(m)
}

/// Parses a byte size such as `1024`, `1KiB`, `1.5MB`.
pub fn parse_bytes(input: &str) -> Result<u64> {
    let (number, unit) = split_number(input)?;
    let multiplier = size_multiplier(unit).ok_or_else(|| quantity_error(input, "unknown size unit"))?;
    Ok((number * multiplier).round() as u64)
}

/// Parses a byte rate such as `1GB/s`, `200 MB/s`, `1GiB/s` into bytes per second.
/// A bare size (`1GB`) is read as per second too.
pub fn parse_byte_rate(input: &str) -> Result<f64> {
    let trimmed = input.trim();
    let size_part = trimmed
        .strip_suffix("/s")
        .or_else(|| trimmed.strip_suffix("ps"))
        .unwrap_or(trimmed);
    let (number, unit) = split_number(size_part)?;
    let multiplier = size_multiplier(unit).ok_or_else(|| quantity_error(input, "unknown rate unit"))?;
    Ok(number * multiplier)
}

/// Parses a duration such as `10s`, `500ms`, `2m`, `1h`; a bare number is seconds.
pub fn parse_duration(input: &str) -> Result<Duration> {
    let (number, unit) = split_number(input)?;
    let seconds = match unit.to_ascii_lowercase().as_str() {
        "" | "s" | "sec" => number,
        "ms" => number / 1e3,
        "us" => number / 1e6,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(quantity_error(input, "unknown duration unit")),
    };
    Ok(Duration::from_secs_f64(seconds))
}

/// Formats bytes per second as decimal MB/s with one decimal.
pub fn format_mb_per_s(bytes_per_s: f64) -> String {
    format!("{:.1} MB/s", bytes_per_s / crate::constants::BYTES_PER_MB)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_parse_sizes_decimal_and_binary() {
        assert_eq!(parse_bytes("1024").unwrap(), 1024);
        assert_eq!(parse_bytes("1KiB").unwrap(), 1024);
        assert_eq!(parse_bytes("1kb").unwrap(), 1000);
        assert_eq!(parse_bytes("1.5MB").unwrap(), 1_500_000);
        assert_eq!(parse_bytes("2 GiB").unwrap(), 2 * 1024 * 1024 * 1024);
        assert!(parse_bytes("12 parsecs").is_err());
        assert!(parse_bytes("KB").is_err());
    }

    #[test]
    fn units_parse_rates() {
        assert_eq!(parse_byte_rate("1GB/s").unwrap(), 1e9);
        assert_eq!(parse_byte_rate("200 MB/s").unwrap(), 2e8);
        assert_eq!(parse_byte_rate("200MBps").unwrap(), 2e8);
        assert_eq!(parse_byte_rate("1GiB/s").unwrap(), 1024.0 * 1024.0 * 1024.0);
        assert!(parse_byte_rate("fast").is_err());
    }

    #[test]
    fn units_parse_durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("3 fortnights").is_err());
    }
}
