//! RFC 3339 timestamps and durations such as `24h`. The calendar is the `time` crate's; nospy
//! only needs instants (seconds since the Unix epoch) to compare.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Seconds since the Unix epoch of an RFC 3339 date-time (`2026-11-28T12:00:00Z`, fractional
/// seconds and `+hh:mm` offsets accepted, a fraction dropped), or of a bare date (`2026-11-28`,
/// midnight UTC). Anything else, including a date that does not exist, is `None`.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let t = if s.len() == 10 {
        OffsetDateTime::parse(&format!("{s}T00:00:00Z"), &Rfc3339)
    } else {
        OffsetDateTime::parse(s, &Rfc3339)
    };
    t.ok().map(OffsetDateTime::unix_timestamp)
}

/// `2026-11-28T12:00:00Z` for seconds since the epoch. Outside years 0000 to 9999, which RFC
/// 3339 cannot write (a hostile cosignature can carry any 64-bit time), the seconds themselves
/// prefixed with `@`: a display, never an instant that parses.
pub fn format_rfc3339(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .filter(|t| (0..=9999).contains(&t.year()))
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("@{secs}"))
}

/// A duration such as `90s`, `15m`, `24h`, `7d`, or a sum such as `1h30m`, in seconds.
pub fn parse_duration(s: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut num = String::new();
    let mut any = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return None,
        };
        let n: u64 = num.parse().ok()?;
        total = total.checked_add(n.checked_mul(unit)?)?;
        num.clear();
        any = true;
    }
    (num.is_empty() && any).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_and_refuses_nonsense() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2026-11-28T12:00:00Z"), Some(1_795_867_200));
        assert_eq!(
            parse_rfc3339("2026-11-28T13:00:00+01:00"),
            Some(1_795_867_200)
        );
        assert_eq!(
            parse_rfc3339("2026-11-28T12:00:00.123Z"),
            Some(1_795_867_200)
        );
        assert_eq!(parse_rfc3339("2024-02-29"), Some(1_709_164_800));
        for bad in [
            "2023-02-29",
            "2026-13-01",
            "2026-11-28T25:00:00Z",
            "2026-11-28T12:00:00",
            "yesterday",
            "2026-11-28T12:00:00.Z",
            "",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        for t in [0, 1_795_867_200, 951_782_400, -86_400, 253_402_300_799] {
            assert_eq!(parse_rfc3339(&format_rfc3339(t)), Some(t));
        }
        // Beyond year 9999 (a cosignature's time is any 64-bit number): written, not parsed.
        assert_eq!(format_rfc3339(i64::MAX), format!("@{}", i64::MAX));
        assert_eq!(parse_rfc3339(&format_rfc3339(253_402_300_800)), None);
        assert_eq!(parse_duration("24h"), Some(86_400));
        assert_eq!(parse_duration("1h30m"), Some(5_400));
        for bad in ["", "h", "10", "3x", "-1h"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn rfc3339_multibyte_offset_is_refused_not_a_panic() {
        // Regression (issue 13, defect 1): a character of several bytes where the offset's
        // colon or digits stand used to panic on a slice inside it.
        for bad in [
            "2026-11-28T12:00:00+0\u{e9}0",
            "2026-11-28T12:00:00+0\u{e9}00",
            "2026-11-28T12:00:00-\u{e9}\u{e9}0",
            "2026-11-28T12:00:00+\u{e9}:00",
            "2026-11-28T12:00:00+00:\u{e9}",
            "2026-11-28T12:00:00\u{20ac}\u{20ac}",
            "2026-11-28T12:00:00.1\u{e9}Z",
            "2026-11-28T1\u{e9}00:00Z",
            "\u{e9}026-11-28",
            "2026-11-2\u{e9}",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
        // Every cut of a valid time with a multibyte character spliced in is refused or parsed,
        // never a panic.
        let good = "2026-11-28T13:00:00.5+01:00";
        for i in 0..=good.len() {
            for c in ['\u{e9}', '\u{20ac}', '\u{1f600}'] {
                let mut t = good.to_string();
                t.insert(i, c);
                let _ = parse_rfc3339(&t);
                let _ = parse_rfc3339(&t[..i + c.len_utf8()]);
            }
        }
    }
}
