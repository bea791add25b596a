//! Calendar dates (`YYYY-MM-DD`, proleptic Gregorian), as days since 1970-01-01.

use std::fmt;

/// A calendar date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(pub i64);

impl Date {
    /// Parses `YYYY-MM-DD` exactly (four-digit year, a real day of that month).
    pub fn parse(s: &str) -> Result<Date, crate::DateError> {
        let bad = || crate::DateError::Form(s.to_string());
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return Err(bad());
        }
        let num = |r: std::ops::Range<usize>| -> Result<u16, crate::DateError> {
            let t = s.get(r).ok_or_else(bad)?;
            if t.bytes().all(|c| c.is_ascii_digit()) {
                t.parse().map_err(|_| bad())
            } else {
                Err(bad())
            }
        };
        let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let month = u8::try_from(m)
            .ok()
            .and_then(|m| time::Month::try_from(m).ok())
            .ok_or_else(bad)?;
        let day = u8::try_from(d).ok().filter(|&d| d >= 1).ok_or_else(bad)?;
        let date = time::Date::from_calendar_date(i32::from(y), month, day)
            .map_err(|_| crate::DateError::NoSuchDay(s.to_string()))?;
        Ok(Date(
            i64::from(date.to_julian_day()) - UNIX_EPOCH_JULIAN_DAY,
        ))
    }

    /// The date of a POSIX time (UTC).
    pub fn from_unix(secs: i64) -> Date {
        Date(secs.div_euclid(86_400))
    }

    /// Year, month, day; `None` outside the years the calendar knows (about ±9999).
    pub fn ymd(self) -> Option<(i32, u8, u8)> {
        let julian = i32::try_from(self.0 + UNIX_EPOCH_JULIAN_DAY).ok()?;
        let d = time::Date::from_julian_day(julian).ok()?;
        Some((d.year(), d.month().into(), d.day()))
    }
}

/// The Julian day number of 1970-01-01.
const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ymd() {
            Some((y, m, d)) => write!(f, "{y:04}-{m:02}-{d:02}"),
            None => write!(f, "day {} since 1970-01-01", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Date;

    #[test]
    fn dates_round_trip_and_bad_ones_are_refused() {
        assert_eq!(Date::parse("1970-01-01"), Ok(Date(0)));
        assert_eq!(Date::parse("2023-12-31").unwrap().to_string(), "2023-12-31");
        assert_eq!(Date::parse("2024-02-29").unwrap().to_string(), "2024-02-29");
        // Years 0000 to 9999.
        for d in (-719_528..2_932_896).step_by(997) {
            assert_eq!(Date::parse(&Date(d).to_string()), Ok(Date(d)), "{d}");
        }
        for bad in [
            "2023-2-1",
            "2023-02-30",
            "2023-13-01",
            "2023-00-10",
            "23-12-31",
            "2023/12/31",
            "2023-12-31T00:00:00Z",
            "",
            "2023-1a-01",
            "+023-12-01",
        ] {
            assert!(Date::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Date::parse("2023-12-31").unwrap().0 - Date::parse("2023-01-28").unwrap().0,
            337
        );
    }
}
