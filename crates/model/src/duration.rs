//! Human durations in configuration: `250ms`, `5s`, `2m`, `1h`, `365d`, or a combination such as
//! `1m30s`.

use std::time::Duration;

/// Parse a duration; the error says what is accepted.
pub fn parse(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?}: expected a duration such as 250ms, 5s, 2m, 1h or 365d");
    let s = s.trim();
    if s.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let d = match &rest[..unit] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            "d" => Duration::from_secs(n * 86_400),
            _ => return Err(bad()),
        };
        total += d;
        rest = &rest[unit..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_sums() {
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("1m30s").unwrap(), Duration::from_secs(90));
        assert!(parse("5").is_err());
        assert_eq!(parse("365d").unwrap(), Duration::from_secs(31_536_000));
        assert!(parse("5w").is_err());
        assert!(parse("").is_err());
    }
}
