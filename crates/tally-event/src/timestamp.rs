//! Timestamps: RFC 3339 in, `YYYY-MM-DDTHH:MM:SS.mmmZ` out.
//!
//! Times travel inside the crate as Unix milliseconds (`i64`), already truncated, because that
//! is all a record can hold; comparing or formatting them then needs no calendar library.

use std::fmt;

use serde::de::{self, Deserializer, Unexpected, Visitor};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// 1970-01-01T00:00:00.000Z in Unix milliseconds: the earliest time a record can hold.
pub(crate) const MIN_MS: i64 = 0;
/// 9999-12-31T23:59:59.999Z in Unix milliseconds: the latest time a record can hold, so the
/// year always has four digits.
pub(crate) const MAX_MS: i64 = 253_402_300_799_999;

/// Parses an RFC 3339 date-time; the zone offset (`Z` or `±hh:mm`) is mandatory.
pub(crate) fn parse_rfc3339(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// Unix milliseconds of `t`, rounded toward the past. Rounding toward the past (rather than to
/// nearest) keeps an event's stored time from ever moving to a later second, minute or day
/// than the client wrote.
pub(crate) fn unix_ms(t: OffsetDateTime) -> i64 {
    let ms = t.unix_timestamp_nanos().div_euclid(1_000_000);
    // `time` cannot represent anything near the i64 limits; clamping only avoids a lossy cast.
    ms.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// Whether `ms` is within the years a record can hold.
pub(crate) fn in_range(ms: i64) -> bool {
    (MIN_MS..=MAX_MS).contains(&ms)
}

/// Appends `"YYYY-MM-DDTHH:MM:SS.mmmZ"` (quotes included) for `ms`, which must be
/// [`in_range`].
pub(crate) fn write_quoted(out: &mut Vec<u8>, ms: i64) {
    debug_assert!(in_range(ms), "timestamp {ms} out of range");
    let days = ms.div_euclid(86_400_000);
    let ms_of_day = ms.rem_euclid(86_400_000) as u32;
    let (year, month, day) = civil_from_days(days);
    let (hour, minute) = (ms_of_day / 3_600_000, ms_of_day / 60_000 % 60);
    let (second, milli) = (ms_of_day / 1000 % 60, ms_of_day % 1000);

    let mut buf = *b"\"0000-00-00T00:00:00.000Z\"";
    put_digits(&mut buf[1..5], year.rem_euclid(10_000) as u32);
    put_digits(&mut buf[6..8], month);
    put_digits(&mut buf[9..11], day);
    put_digits(&mut buf[12..14], hour);
    put_digits(&mut buf[15..17], minute);
    put_digits(&mut buf[18..20], second);
    put_digits(&mut buf[21..24], milli);
    out.extend_from_slice(&buf);
}

/// Writes `value` as decimal digits filling `dst`, zero-padded on the left.
fn put_digits(dst: &mut [u8], mut value: u32) {
    for d in dst.iter_mut().rev() {
        *d = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Proleptic Gregorian (year, month, day) of a count of days since 1970-01-01.
///
/// Howard Hinnant's `civil_from_days`
/// (<https://howardhinnant.github.io/date_algorithms.html#civil_from_days>): branch-free
/// arithmetic on 400-year eras, much cheaper than building a `time::Date` per record.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of era, 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1st, 0..=365
    let mp = (5 * doy + 2) / 153; // month from March, 0..=11
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Serde `deserialize_with` for timestamps in stored records: any RFC 3339 date-time within the
/// storable years, converted to UTC with full precision (so that re-encoding reveals a record
/// that was not written in canonical form).
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
    d.deserialize_str(TimestampVisitor)
}

struct TimestampVisitor;

impl Visitor<'_> for TimestampVisitor {
    type Value = OffsetDateTime;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an RFC 3339 timestamp between 1970-01-01 and 9999-12-31")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<OffsetDateTime, E> {
        parse_rfc3339(s)
            .filter(|t| in_range(unix_ms(*t)))
            .and_then(|t| OffsetDateTime::from_unix_timestamp_nanos(t.unix_timestamp_nanos()).ok())
            .ok_or_else(|| E::invalid_value(Unexpected::Str(s), &self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    fn format(ms: i64) -> String {
        let mut out = Vec::new();
        write_quoted(&mut out, ms);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn formats_bounds_and_leap_days() {
        assert_eq!(format(MIN_MS), "\"1970-01-01T00:00:00.000Z\"");
        assert_eq!(format(MAX_MS), "\"9999-12-31T23:59:59.999Z\"");
        let leap = unix_ms(datetime!(2024-02-29 23:59:59.999 UTC));
        assert_eq!(format(leap), "\"2024-02-29T23:59:59.999Z\"");
        let century = unix_ms(datetime!(2100-03-01 00:00:00 UTC));
        assert_eq!(format(century), "\"2100-03-01T00:00:00.000Z\"");
    }

    #[test]
    fn truncates_toward_the_past() {
        let t = parse_rfc3339("2024-05-01T12:00:00.1239999+02:00").unwrap();
        assert_eq!(format(unix_ms(t)), "\"2024-05-01T10:00:00.123Z\"");
    }

    proptest! {
        // The hand-written calendar arithmetic must agree with the `time` crate everywhere.
        #[test]
        fn agrees_with_time_crate(ms in MIN_MS..=MAX_MS) {
            let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap();
            let expected = format!(
                "\"{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z\"",
                t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute(), t.second(),
                t.millisecond()
            );
            prop_assert_eq!(format(ms), expected);
        }
    }
}
