//! `Timestamp`: the one time type of the ledger. It is stored as ISO-8601 UTC text with
//! milliseconds and a `Z` (DESIGN §2), so Rust, `sqlite3` and text comparison all agree.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::sqlite::{Sqlite, SqliteArgumentsBuffer, SqliteTypeInfo, SqliteValueRef};

/// The exact text shape of every stored timestamp: `2026-11-23T08:00:00.000Z`.
pub const FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.3fZ";

/// A UTC instant with millisecond precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    /// The current time, truncated to milliseconds.
    pub fn now() -> Self {
        Self::from(Utc::now())
    }

    /// Parses the stored text shape (and, leniently, any RFC 3339 time).
    pub fn parse(text: &str) -> Result<Self, chrono::ParseError> {
        DateTime::parse_from_rfc3339(text).map(|t| Self::from(t.with_timezone(&Utc)))
    }

    pub fn as_datetime(&self) -> DateTime<Utc> {
        self.0
    }

    /// `self + duration`, saturating far in the future instead of overflowing.
    pub fn plus(self, duration: Duration) -> Self {
        chrono::Duration::from_std(duration)
            .ok()
            .and_then(|d| self.0.checked_add_signed(d))
            .map(Self::from)
            .unwrap_or(Self::MAX)
    }

    /// `self - duration`, saturating at the distant past.
    pub fn minus(self, duration: Duration) -> Self {
        chrono::Duration::from_std(duration)
            .ok()
            .and_then(|d| self.0.checked_sub_signed(d))
            .map(Self::from)
            .unwrap_or(Self::MIN)
    }

    /// How long from `earlier` to `self`; zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        (self.0 - earlier.0).to_std().unwrap_or(Duration::ZERO)
    }

    /// Year 0001: before anything stored.
    pub const MIN: Timestamp = Timestamp(DateTime::<Utc>::MIN_UTC);
    /// Year 9999: after anything stored (and still four-digit, so text order holds).
    pub const MAX: Timestamp = Timestamp(
        DateTime::<Utc>::from_timestamp(253_402_300_799, 999_000_000).expect("valid constant"),
    );
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(t: DateTime<Utc>) -> Self {
        Self(t.trunc_subsecs(3))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Clamp to four-digit years so the text always sorts correctly.
        let t = self.0.clamp(Timestamp::ZERO_YEAR_ONE, Timestamp::MAX.0);
        write!(f, "{}", t.format(FORMAT))
    }
}

impl Timestamp {
    const ZERO_YEAR_ONE: DateTime<Utc> = match DateTime::<Utc>::from_timestamp(-62_135_596_800, 0) {
        Some(t) => t,
        None => panic!("valid constant"),
    };
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl sqlx::Type<Sqlite> for Timestamp {
    fn type_info() -> SqliteTypeInfo {
        <String as sqlx::Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <String as sqlx::Type<Sqlite>>::compatible(ty)
    }
}

impl<'q> sqlx::Encode<'q, Sqlite> for Timestamp {
    fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
        <String as sqlx::Encode<'q, Sqlite>>::encode(self.to_string(), buf)
    }
}

impl<'r> sqlx::Decode<'r, Sqlite> for Timestamp {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&str as sqlx::Decode<'r, Sqlite>>::decode(value)?;
        Ok(Timestamp::parse(text).map_err(|e| format!("bad timestamp {text:?}: {e}"))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_milliseconds_and_z() {
        let t = Timestamp::parse("2026-11-23T08:00:00.123456+00:00").unwrap();
        assert_eq!(t.to_string(), "2026-11-23T08:00:00.123Z");
        assert_eq!(Timestamp::parse(&t.to_string()).unwrap(), t);
    }

    #[test]
    fn text_order_matches_time_order() {
        let a = Timestamp::parse("2026-11-23T08:00:00.999Z").unwrap();
        let b = a.plus(Duration::from_millis(1));
        assert!(a < b);
        assert!(a.to_string() < b.to_string());
        assert!(b.to_string() < Timestamp::MAX.to_string());
        assert!(Timestamp::MIN.to_string() < a.to_string());
        assert_eq!(Timestamp::MAX.to_string(), "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn arithmetic_saturates() {
        let t = Timestamp::now();
        assert_eq!(t.plus(Duration::from_secs(u64::MAX)), Timestamp::MAX);
        assert_eq!(t.minus(Duration::from_secs(u64::MAX)), Timestamp::MIN);
        assert_eq!(t.since(t.plus(Duration::from_secs(5))), Duration::ZERO);
        assert_eq!(
            t.plus(Duration::from_secs(5)).since(t),
            Duration::from_secs(5)
        );
    }
}
