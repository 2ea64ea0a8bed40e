//! Human durations used in config and policy files: `24h`, `30m`, `90s`,
//! `1h30m`, `7d`. Every number carries a unit; a bare number is an error.

use std::time::Duration;

/// Why a duration did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("invalid duration `{0}`: expected a number with a unit (d, h, m, s), e.g. `24h`, `1h30m`, `90s`")]
    Invalid(String),
    #[error("duration `{0}` is too large")]
    TooLarge(String),
    #[error("duration must be greater than zero")]
    Zero,
}

/// Parse a positive duration such as `1h30m`.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let invalid = || DurationError::Invalid(s.to_string());
    let t = s.trim();
    if t.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid());
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| DurationError::TooLarge(s.to_string()))?;
        rest = &rest[digits..];
        let unit = match rest.as_bytes().first() {
            Some(b'd') => 86_400,
            Some(b'h') => 3_600,
            Some(b'm') => 60,
            Some(b's') => 1,
            _ => return Err(invalid()),
        };
        rest = &rest[1..];
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| DurationError::TooLarge(s.to_string()))?;
    }
    if total == 0 {
        return Err(DurationError::Zero);
    }
    Ok(Duration::from_secs(total))
}

/// Format whole seconds in hours, minutes and seconds: `1h30m`, `24h`,
/// `90s` → `1m30s`.
pub fn format_duration(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, name) in [(3_600, 'h'), (60, 'm'), (1, 's')] {
        if secs >= unit {
            out.push_str(&(secs / unit).to_string());
            out.push(name);
            secs %= unit;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_combinations() {
        let cases = [
            ("24h", 86_400),
            ("8h", 28_800),
            ("30m", 1_800),
            ("90s", 90),
            ("1h30m", 5_400),
            ("2d", 172_800),
        ];
        for (text, secs) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_bare_numbers_and_unknown_units() {
        for text in ["3600", "", "h", "1x", "1.5h", "-1h", "1h 30m"] {
            assert_eq!(
                parse_duration(text),
                Err(DurationError::Invalid(text.to_string())),
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_zero_and_overflow() {
        assert_eq!(parse_duration("0s"), Err(DurationError::Zero));
        assert!(matches!(
            parse_duration("99999999999999999999d"),
            Err(DurationError::TooLarge(_))
        ));
    }

    #[test]
    fn formats_back_to_compact_form() {
        assert_eq!(format_duration(Duration::from_secs(5_400)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(86_400)), "24h");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
    }
}
