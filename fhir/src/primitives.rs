//! FHIR primitive types: their lexical forms (https://hl7.org/fhir/R4/datatypes.html), checked
//! by hand rather than with regular expressions, and conversions of the date/time types to
//! `time` values.
//!
//! Each `is_valid_*` function follows the regex the R4 StructureDefinition gives for the type;
//! where that regex under-specifies (day 31 in February, a 32-bit range for integers), the
//! prose of the datatypes page decides.

use time::{Date, Duration, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// A date, dateTime or instant split into its parts; absent parts were not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DateTimeParts {
    year: i32,
    month: Option<u8>,
    day: Option<u8>,
    time: Option<TimeParts>,
    /// Offset from UTC in seconds, if a zone was written (`Z` is 0).
    offset: Option<i32>,
}

/// The time of day of a [`DateTimeParts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TimeParts {
    hour: u8,
    minute: u8,
    /// None only in the lenient (search) form `hh:mm`.
    second: Option<u8>,
    nanosecond: u32,
    /// How many fraction digits were written (0 when none).
    fraction_digits: usize,
}

/// A cursor over ASCII input.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a str) -> Self {
        Cursor {
            bytes: s.as_bytes(),
            pos: 0,
        }
    }

    fn at_end(&self) -> bool {
        self.pos == self.bytes.len()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Exactly `n` ASCII digits as a number.
    fn digits(&mut self, n: usize) -> Option<u32> {
        let slice = self.bytes.get(self.pos..self.pos + n)?;
        if !slice.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.pos += n;
        Some(
            slice
                .iter()
                .fold(0, |acc, d| acc * 10 + u32::from(d - b'0')),
        )
    }

    /// Two digits within `0..=max`.
    fn two_digits_max(&mut self, max: u32) -> Option<u8> {
        self.digits(2).filter(|v| *v <= max).map(|v| v as u8)
    }
}

fn is_leap_year(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `ss(.f+)?` after `hh:mm:`, returning (second, nanosecond, fraction digits).
fn seconds(c: &mut Cursor) -> Option<(u8, u32, usize)> {
    // 60 is allowed for leap seconds, as in the R4 regex.
    let second = c.two_digits_max(60)?;
    let mut nanosecond = 0u32;
    let mut digits = 0usize;
    if c.eat(b'.') {
        while let Some(d) = c.peek().filter(u8::is_ascii_digit) {
            if digits < 9 {
                nanosecond = nanosecond * 10 + u32::from(d - b'0');
            }
            digits += 1;
            c.pos += 1;
        }
        if digits == 0 {
            return None;
        }
        for _ in digits..9 {
            nanosecond *= 10;
        }
    }
    Some((second, nanosecond, digits))
}

/// `Z` or `(+|-)hh:mm` with hh:mm up to 14:00, in seconds.
fn zone(c: &mut Cursor) -> Option<i32> {
    if c.eat(b'Z') {
        return Some(0);
    }
    let sign = if c.eat(b'+') {
        1
    } else if c.eat(b'-') {
        -1
    } else {
        return None;
    };
    let hours = c.two_digits_max(14)?;
    if !c.eat(b':') {
        return None;
    }
    let minutes = c.two_digits_max(59)?;
    if hours == 14 && minutes != 0 {
        return None;
    }
    Some(sign * (i32::from(hours) * 3600 + i32::from(minutes) * 60))
}

/// Parse a date, dateTime or instant. Strict parsing follows R4 dateTime (a time needs seconds
/// and a zone); lenient parsing also takes `hh:mm` and a missing zone, as search values do.
fn parse_parts(s: &str, lenient: bool) -> Option<DateTimeParts> {
    let mut c = Cursor::new(s);
    let year = c.digits(4)? as i32;
    // The R4 regex has no year 0000.
    if year == 0 {
        return None;
    }
    let mut parts = DateTimeParts {
        year,
        month: None,
        day: None,
        time: None,
        offset: None,
    };
    if c.at_end() {
        return Some(parts);
    }
    if !c.eat(b'-') {
        return None;
    }
    let month = c.two_digits_max(12).filter(|m| *m >= 1)?;
    parts.month = Some(month);
    if c.at_end() {
        return Some(parts);
    }
    if !c.eat(b'-') {
        return None;
    }
    let day = c
        .two_digits_max(u32::from(days_in_month(year, month)))
        .filter(|d| *d >= 1)?;
    parts.day = Some(day);
    if c.at_end() {
        return Some(parts);
    }
    if !c.eat(b'T') {
        return None;
    }
    let hour = c.two_digits_max(23)?;
    if !c.eat(b':') {
        return None;
    }
    let minute = c.two_digits_max(59)?;
    let mut time = TimeParts {
        hour,
        minute,
        second: None,
        nanosecond: 0,
        fraction_digits: 0,
    };
    if c.eat(b':') {
        let (second, nanosecond, digits) = seconds(&mut c)?;
        time.second = Some(second);
        time.nanosecond = nanosecond;
        time.fraction_digits = digits;
    } else if !lenient {
        return None;
    }
    parts.time = Some(time);
    if c.at_end() {
        return lenient.then_some(parts);
    }
    parts.offset = Some(zone(&mut c)?);
    c.at_end().then_some(parts)
}

/// Whether `s` is a FHIR `date`: `YYYY`, `YYYY-MM` or `YYYY-MM-DD`, with a real month and day.
pub fn is_valid_date(s: &str) -> bool {
    parse_parts(s, false).is_some_and(|p| p.time.is_none())
}

/// Whether `s` is a FHIR `dateTime`: a date form, or a full date with `Thh:mm:ss(.f+)` and a
/// mandatory zone.
pub fn is_valid_date_time(s: &str) -> bool {
    parse_parts(s, false).is_some()
}

/// Whether `s` is a FHIR `instant`: a full date-time with seconds and a zone.
pub fn is_valid_instant(s: &str) -> bool {
    parse_parts(s, false).is_some_and(|p| p.time.is_some())
}

/// Whether `s` is a FHIR `time`: `hh:mm:ss(.f+)?`.
pub fn is_valid_time(s: &str) -> bool {
    let mut c = Cursor::new(s);
    c.two_digits_max(23).is_some()
        && c.eat(b':')
        && c.two_digits_max(59).is_some()
        && c.eat(b':')
        && seconds(&mut c).is_some()
        && c.at_end()
}

/// Whether `s` is a FHIR `id`: 1 to 64 of `A-Z a-z 0-9 - .`.
pub fn is_valid_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Whether `s` is a FHIR `code`: `[^\s]+(\s[^\s]+)*`, i.e. no leading, trailing or repeated
/// whitespace.
pub fn is_valid_code(s: &str) -> bool {
    let mut previous_space = true; // so that leading whitespace fails
    for ch in s.chars() {
        let space = ch.is_whitespace();
        if space && previous_space {
            return false;
        }
        previous_space = space;
    }
    !previous_space
}

/// Whether `s` is a FHIR `uri`, `url` or `canonical`: no whitespace (`\S*`; emptiness is
/// ruled out by the JSON rules).
pub fn is_valid_uri(s: &str) -> bool {
    !s.chars().any(char::is_whitespace)
}

/// Whether `s` is a FHIR `oid`: `urn:oid:[0-2](\.(0|[1-9][0-9]*))+`.
pub fn is_valid_oid(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("urn:oid:") else {
        return false;
    };
    let mut arcs = rest.split('.');
    let first_ok = matches!(arcs.next(), Some("0" | "1" | "2"));
    let mut count = 0;
    let rest_ok = arcs.all(|arc| {
        count += 1;
        !arc.is_empty()
            && arc.bytes().all(|b| b.is_ascii_digit())
            && (arc == "0" || !arc.starts_with('0'))
    });
    first_ok && rest_ok && count >= 1
}

/// Whether `s` is a FHIR `uuid`: `urn:uuid:` and a lowercase 8-4-4-4-12 hex UUID, as the R4
/// regex has it.
pub fn is_valid_uuid(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("urn:uuid:") else {
        return false;
    };
    let groups: Vec<&str> = rest.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// Whether `s` is valid `base64Binary`: standard base64 with padding, whitespace allowed
/// anywhere (as in the R4 regex).
pub fn is_valid_base64(s: &str) -> bool {
    let mut count = 0usize;
    let mut padding = 0usize;
    for b in s.bytes() {
        if b.is_ascii_whitespace() {
            continue;
        }
        if b == b'=' {
            padding += 1;
        } else if padding > 0 || !(b.is_ascii_alphanumeric() || b == b'+' || b == b'/') {
            // Data after padding, or a character outside the alphabet.
            return false;
        }
        count += 1;
    }
    count % 4 == 0 && padding <= 2
}

/// Whether a JSON number literal is a FHIR `decimal`:
/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
pub fn is_valid_decimal(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    let start = i;
    let n = digits(&mut i);
    if n == 0 || (n > 1 && b[start] == b'0') {
        return false;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// A JSON number literal as a FHIR `integer` (`-?([0]|([1-9][0-9]*))`, 32-bit signed).
pub fn parse_integer(s: &str) -> Option<i32> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

/// A FHIR instant as a point in time. None unless `s` is a valid `instant`.
pub fn parse_instant(s: &str) -> Option<OffsetDateTime> {
    let parts = parse_parts(s, false)?;
    parts.time?;
    Some(start_of(&parts)?.0)
}

/// An instant in the form this server writes: UTC with exactly three fraction digits,
/// e.g. `2026-11-23T13:40:00.123Z`.
pub fn format_instant(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// The half-open range `[start, end)` a FHIR date, dateTime or instant denotes at its
/// precision: `2020` is the whole year, `2020-03-01T10:00:00.5Z` a tenth of a second.
///
/// For search values this also takes `hh:mm` (minute precision) and a missing zone. Values
/// without a zone — dates, and date-times written without one — are taken as UTC: the server
/// has no other time zone to assume, and a fixed choice keeps `_since` and date search
/// repeatable. None for anything else, or a range reaching past year 9999.
pub fn parse_date_time_range(s: &str) -> Option<(OffsetDateTime, OffsetDateTime)> {
    let parts = parse_parts(s, true)?;
    let (start, date) = start_of(&parts)?;
    let offset = start.offset();
    let midnight = |d: Date| PrimitiveDateTime::new(d, Time::MIDNIGHT).assume_offset(offset);
    let end = match (parts.month, parts.day, parts.time) {
        (None, _, _) => midnight(Date::from_calendar_date(parts.year + 1, Month::January, 1).ok()?),
        (Some(_), None, _) => {
            let next = if date.month() == Month::December {
                Date::from_calendar_date(date.year() + 1, Month::January, 1)
            } else {
                Date::from_calendar_date(date.year(), date.month().next(), 1)
            };
            midnight(next.ok()?)
        }
        (Some(_), Some(_), None) => midnight(date.next_day()?),
        (_, _, Some(t)) => {
            let width = match (t.second, t.fraction_digits) {
                (None, _) => Duration::MINUTE,
                (Some(_), 0) => Duration::SECOND,
                (Some(_), n) if n < 9 => Duration::nanoseconds(10i64.pow(9 - n as u32)),
                _ => Duration::NANOSECOND,
            };
            start.checked_add(width)?
        }
    };
    Some((start, end))
}

/// The first moment `parts` denotes, and its calendar date.
fn start_of(parts: &DateTimeParts) -> Option<(OffsetDateTime, Date)> {
    let month = Month::try_from(parts.month.unwrap_or(1)).ok()?;
    let date = Date::from_calendar_date(parts.year, month, parts.day.unwrap_or(1)).ok()?;
    let offset = UtcOffset::from_whole_seconds(parts.offset.unwrap_or(0)).ok()?;
    let (time, leap) = match parts.time {
        None => (Time::MIDNIGHT, false),
        Some(t) => {
            let second = t.second.unwrap_or(0);
            // A leap second (:60) is taken as the first moment of the next minute.
            let time = Time::from_hms_nano(t.hour, t.minute, second.min(59), t.nanosecond).ok()?;
            (time, second == 60)
        }
    };
    let mut start = PrimitiveDateTime::new(date, time).assume_offset(offset);
    if leap {
        start = start.checked_add(Duration::SECOND)?;
    }
    Some((start, date))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn dates() {
        for ok in ["2020", "2020-02", "2020-02-29", "2000-02-29", "0001-01-01"] {
            assert!(is_valid_date(ok), "{ok}");
        }
        for bad in [
            "",
            "0000",
            "20",
            "2020-13",
            "2020-00",
            "2020-13-01",
            "2021-02-29",
            "1900-02-29",
            "2020-04-31",
            "2020-1-01",
            "2020-01-01T00:00:00Z",
            "2020-01-01 ",
            "2020/01/01",
        ] {
            assert!(!is_valid_date(bad), "{bad}");
        }
    }

    #[test]
    fn date_times_and_instants() {
        for ok in [
            "2020",
            "2020-01",
            "2020-01-02",
            "2020-01-02T03:04:05Z",
            "2020-01-02T03:04:05.123456789123+14:00",
            "2020-01-02T23:59:60-13:59",
        ] {
            assert!(is_valid_date_time(ok), "{ok}");
        }
        for bad in [
            "2020-01-02T03:04Z",
            "2020-01-02T03:04:05",
            "2020-01-02T24:00:00Z",
            "2020-01-02T03:04:05.Z",
            "2020-01-02T03:04:05+14:30",
            "2020-01-02T03:04:05+1400",
            "2020-01-02T03:04:05z",
            "2020-01-02t03:04:05Z",
        ] {
            assert!(!is_valid_date_time(bad), "{bad}");
        }
        assert!(is_valid_instant("2015-02-07T13:28:17.239+02:00"));
        assert!(!is_valid_instant("2015-02-07"));
        assert!(!is_valid_instant("2015-02-07T13:28:17"));
    }

    #[test]
    fn times() {
        assert!(is_valid_time("00:00:00"));
        assert!(is_valid_time("23:59:59.999"));
        assert!(!is_valid_time("24:00:00"));
        assert!(!is_valid_time("12:00"));
        assert!(!is_valid_time("12:00:00Z"));
    }

    #[test]
    fn string_based_primitives() {
        assert!(is_valid_id("a-B.9"));
        assert!(is_valid_id(&"a".repeat(64)));
        assert!(!is_valid_id(&"a".repeat(65)));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id("a_b"));
        assert!(!is_valid_id("a b"));

        assert!(is_valid_code("final"));
        assert!(is_valid_code("two words"));
        assert!(!is_valid_code(" final"));
        assert!(!is_valid_code("final "));
        assert!(!is_valid_code("two  spaces"));
        assert!(!is_valid_code(""));

        assert!(is_valid_uri("http://example.org/a?b=c"));
        assert!(!is_valid_uri("http://example.org/a b"));

        assert!(is_valid_oid("urn:oid:1.2.840.113619"));
        assert!(!is_valid_oid("urn:oid:3.1"));
        assert!(!is_valid_oid("urn:oid:1"));
        assert!(!is_valid_oid("urn:oid:1.02"));
        assert!(!is_valid_oid("1.2.3"));

        assert!(is_valid_uuid(
            "urn:uuid:c757873d-ec9a-4326-a141-556f43239520"
        ));
        assert!(!is_valid_uuid("c757873d-ec9a-4326-a141-556f43239520"));
        assert!(!is_valid_uuid(
            "urn:uuid:C757873D-EC9A-4326-A141-556F43239520"
        ));
        assert!(!is_valid_uuid(
            "urn:uuid:c757873d-ec9a-4326-a141-556f4323952"
        ));

        assert!(is_valid_base64("SGVsbG8="));
        assert!(is_valid_base64("SGVs\nbG8h"));
        assert!(is_valid_base64("a+/="));
        assert!(!is_valid_base64("SGVsbG8"));
        assert!(!is_valid_base64("SGV*bG8="));
        assert!(!is_valid_base64("SG=sbG8="));
    }

    #[test]
    fn numbers() {
        for ok in [
            "0",
            "-0",
            "185.50",
            "1e10",
            "-1.5E-3",
            "0.1000000000000000055511151231257827",
        ] {
            assert!(is_valid_decimal(ok), "{ok}");
        }
        for bad in ["", "01", "1.", ".5", "+1", "1e", "NaN"] {
            assert!(!is_valid_decimal(bad), "{bad}");
        }
        assert_eq!(parse_integer("2147483647"), Some(i32::MAX));
        assert_eq!(parse_integer("-2147483648"), Some(i32::MIN));
        assert_eq!(parse_integer("2147483648"), None);
        assert_eq!(parse_integer("1.0"), None);
        assert_eq!(parse_integer("1e2"), None);
    }

    #[test]
    fn instants_round_trip_in_utc_with_milliseconds() {
        let t = parse_instant("2026-11-23T15:40:00.1234+02:00").unwrap();
        assert_eq!(t, datetime!(2026-11-23 13:40:00.1234 UTC));
        assert_eq!(format_instant(t), "2026-11-23T13:40:00.123Z");
        assert_eq!(
            format_instant(datetime!(2026-01-02 03:04:05 UTC)),
            "2026-01-02T03:04:05.000Z"
        );
        assert!(parse_instant("2026-11-23").is_none());
        assert!(parse_instant("2026-11-23T13:40:00").is_none());
        assert_eq!(
            parse_instant("2016-12-31T23:59:60Z"),
            Some(datetime!(2017-01-01 00:00:00 UTC))
        );
    }

    #[test]
    fn ranges_follow_precision() {
        let r = |s| parse_date_time_range(s).unwrap();
        assert_eq!(
            r("2020"),
            (
                datetime!(2020-01-01 0:00 UTC),
                datetime!(2021-01-01 0:00 UTC)
            )
        );
        assert_eq!(
            r("2020-12"),
            (
                datetime!(2020-12-01 0:00 UTC),
                datetime!(2021-01-01 0:00 UTC)
            )
        );
        assert_eq!(
            r("2020-02-28"),
            (
                datetime!(2020-02-28 0:00 UTC),
                datetime!(2020-02-29 0:00 UTC)
            )
        );
        assert_eq!(
            r("2020-02-28T10:30"),
            (
                datetime!(2020-02-28 10:30 UTC),
                datetime!(2020-02-28 10:31 UTC)
            )
        );
        assert_eq!(
            r("2020-02-28T10:30:05+01:00"),
            (
                datetime!(2020-02-28 10:30:05 +1),
                datetime!(2020-02-28 10:30:06 +1)
            )
        );
        assert_eq!(
            r("2020-02-28T10:30:05.12Z"),
            (
                datetime!(2020-02-28 10:30:05.12 UTC),
                datetime!(2020-02-28 10:30:05.13 UTC)
            )
        );
        assert!(parse_date_time_range("2020-02-30").is_none());
        assert!(parse_date_time_range("yesterday").is_none());
    }
}
