//! RFC 3339 timestamps (UTC, `Z` or a numeric offset) and durations such as `24h`, without a
//! date-time dependency: nospy only needs to compare instants.

/// Seconds since the Unix epoch of an RFC 3339 date-time (`2026-11-28T12:00:00Z`, fractional
/// seconds and `+hh:mm` offsets accepted), or of a bare date (`2026-11-28`, midnight UTC).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        (!t.is_empty() && t.bytes().all(|c| c.is_ascii_digit()))
            .then(|| t.parse().ok())
            .flatten()
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    if b.len() == 10 {
        return Some(days * 86_400);
    }
    if b.len() < 20
        || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        rest = &frac[n..];
    }
    // The offset is read as bytes: text from the network may hold any character here, and no
    // byte offset into it may be taken for a character boundary.
    let offset = match rest.as_bytes() {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let digit = |c: u8| c.is_ascii_digit().then(|| i64::from(c - b'0'));
            let oh = digit(*h1)? * 10 + digit(*h2)?;
            let om = digit(*m1)? * 10 + digit(*m2)?;
            if oh > 23 || om > 59 {
                return None;
            }
            let v = oh * 3600 + om * 60;
            if *sign == b'-' {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    Some(days * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

/// `2026-11-28T12:00:00Z` for seconds since the epoch.
pub fn format_rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
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

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// Days in month `m` (1 to 12) of year `y`.
pub fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date (year, month, day) of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
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
        for t in [0, 1_795_867_200, 951_782_400, -86_400] {
            assert_eq!(parse_rfc3339(&format_rfc3339(t)), Some(t));
        }
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
