//! [`PgTime`]: a `jiff::Timestamp` as PostgreSQL's binary `timestamptz` (microseconds since
//! 2000-01-01 UTC), converted with one subtraction. postgres-types' own conversion goes
//! through a rounded `jiff::Span` each way, which was ~5% of the store process's CPU (every
//! quote's timestamp in the COPY, every partial's three in the rollup queue and the merger;
//! docs/performance.md). Same values: a timestamp with a sub-microsecond part (never one of
//! ours: quotes are truncated to the millisecond) is handed to postgres-types' conversion.

use std::error::Error;

use bytes::{BufMut, BytesMut};
use jiff::Timestamp;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, WrongType};

/// 2000-01-01T00:00:00Z in microseconds since the Unix epoch.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PgTime(pub Timestamp);

impl ToSql for PgTime {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        if self.0.subsec_nanosecond() % 1_000 != 0 {
            return self.0.to_sql(ty, out);
        }
        let micros = self
            .0
            .as_microsecond()
            .checked_sub(PG_EPOCH_MICROS)
            .ok_or("value too large to transmit")?;
        out.put_i64(micros);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMPTZ
    }

    fn to_sql_checked(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        if !<Self as ToSql>::accepts(ty) {
            return Err(Box::new(WrongType::new::<Self>(ty.clone())));
        }
        self.to_sql(ty, out)
    }
}

impl<'a> FromSql<'a> for PgTime {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        let bytes: [u8; 8] = raw
            .try_into()
            .map_err(|_| "invalid message length: timestamptz is 8 bytes")?;
        let micros = i64::from_be_bytes(bytes)
            .checked_add(PG_EPOCH_MICROS)
            .ok_or("value too large to decode")?;
        Ok(Self(Timestamp::from_microsecond(micros)?))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMPTZ
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The bytes postgres-types writes for `t`, and ours.
    fn both(t: Timestamp) -> (BytesMut, BytesMut) {
        let (mut theirs, mut ours) = (BytesMut::new(), BytesMut::new());
        t.to_sql(&Type::TIMESTAMPTZ, &mut theirs).unwrap();
        PgTime(t)
            .to_sql_checked(&Type::TIMESTAMPTZ, &mut ours)
            .unwrap();
        (theirs, ours)
    }

    #[test]
    fn the_same_bytes_as_postgres_types_both_ways() {
        for t in [
            "2026-01-20T14:30:15.123Z",
            "2000-01-01T00:00:00Z",
            "1999-12-31T23:59:59.999999Z",
            "1970-01-01T00:00:00Z",
            "1969-07-20T20:17:40.5Z",
            "2262-04-11T23:47:16.854775Z",
            "2026-01-20T14:30:15.123456789Z",
        ] {
            let t: Timestamp = t.parse().unwrap();
            let (theirs, ours) = both(t);
            assert_eq!(theirs, ours, "{t}");
            let back = PgTime::from_sql(&Type::TIMESTAMPTZ, &ours).unwrap().0;
            let expected = Timestamp::from_sql(&Type::TIMESTAMPTZ, &theirs).unwrap();
            assert_eq!(back, expected, "{t}");
        }
        assert!(
            PgTime(Timestamp::UNIX_EPOCH)
                .to_sql_checked(&Type::TIMESTAMP, &mut BytesMut::new())
                .is_err(),
            "timestamptz only"
        );
    }
}
