//! A batch of validated quotes as the bytes of one disk-buffer record, and back.
//!
//! Layout (little endian): `[version u8][count u32]`, then per quote `[ticker len u8][ticker]
//! [seconds i64][nanoseconds i32][price f64][volume u64][present u8][bid|ask|open|high|low f64
//! for each bit of present][source len u8][source]`. Binary rather than JSON: a record is
//! written and read once per quote on the hot path, and the float values come back bit for bit.
//! A record read back is checked as it is decoded (ticker, timestamp, source): what fails is
//! an error, never a panic.

use bytes::{Buf, BufMut};
use jiff::Timestamp;
use quotestream_api::Ticker;

use crate::quote::Quote;
use crate::sinks::Batch;

const VERSION: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("record version {0} is not one this worker reads ({VERSION})")]
    Version(u8),
    #[error("record ends inside a quote")]
    Short,
    #[error("ticker: {0}")]
    Ticker(String),
    #[error("timestamp: {0}")]
    Timestamp(String),
    #[error("source: {0}")]
    Source(String),
    #[error("{0} bytes after the last quote")]
    Trailing(usize),
}

/// The record of `batch`.
pub fn encode(batch: &[Quote]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + batch.len() * 64);
    out.put_u8(VERSION);
    out.put_u32_le(batch.len() as u32);
    for q in batch {
        put_str(&mut out, q.ticker.as_str());
        out.put_i64_le(q.timestamp.as_second());
        out.put_i32_le(q.timestamp.subsec_nanosecond());
        out.put_f64_le(q.price);
        out.put_u64_le(q.volume);
        let optional = [q.bid, q.ask, q.open, q.high, q.low];
        let present = optional
            .iter()
            .enumerate()
            .fold(0u8, |bits, (i, v)| bits | (u8::from(v.is_some()) << i));
        out.put_u8(present);
        for v in optional.into_iter().flatten() {
            out.put_f64_le(v);
        }
        put_str(&mut out, q.source);
    }
    out
}

/// Quotes in a record, without decoding them (0 for a record too short to say).
pub fn count(record: &[u8]) -> usize {
    match record {
        [VERSION, a, b, c, d, ..] => u32::from_le_bytes([*a, *b, *c, *d]) as usize,
        _ => 0,
    }
}

/// The batch of a record.
pub fn decode(mut record: &[u8]) -> Result<Batch, DecodeError> {
    let r = &mut record;
    let version = r.try_get_u8().map_err(|_| DecodeError::Short)?;
    if version != VERSION {
        return Err(DecodeError::Version(version));
    }
    let n = r.try_get_u32_le().map_err(|_| DecodeError::Short)? as usize;
    // Each quote takes at least 39 bytes: a count beyond that is damage, not an allocation.
    let mut quotes = Vec::with_capacity(n.min(r.remaining() / 39));
    for _ in 0..n {
        quotes.push(decode_quote(r)?);
    }
    if r.has_remaining() {
        return Err(DecodeError::Trailing(r.remaining()));
    }
    Ok(quotes.into())
}

fn decode_quote(r: &mut &[u8]) -> Result<Quote, DecodeError> {
    let short = |_| DecodeError::Short;
    let ticker = get_str(r)?;
    let ticker = Ticker::parse(ticker).map_err(|e| DecodeError::Ticker(e.to_string()))?;
    let seconds = r.try_get_i64_le().map_err(short)?;
    let nanos = r.try_get_i32_le().map_err(short)?;
    let timestamp =
        Timestamp::new(seconds, nanos).map_err(|e| DecodeError::Timestamp(e.to_string()))?;
    let price = r.try_get_f64_le().map_err(short)?;
    let volume = r.try_get_u64_le().map_err(short)?;
    let present = r.try_get_u8().map_err(short)?;
    let mut optional = [None; 5];
    for (i, slot) in optional.iter_mut().enumerate() {
        if present & (1 << i) != 0 {
            *slot = Some(r.try_get_f64_le().map_err(short)?);
        }
    }
    let [bid, ask, open, high, low] = optional;
    let source = get_str(r)?;
    let source = quotestream_api::batch::check_source(source).map_err(DecodeError::Source)?;
    Ok(Quote {
        ticker,
        timestamp,
        price,
        volume,
        bid,
        ask,
        open,
        high,
        low,
        source,
    })
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Tickers (≤ 7 bytes) and source names are short by construction; a longer one would be
    // cut at a char boundary rather than corrupt the record.
    let mut end = s.len().min(usize::from(u8::MAX));
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.put_u8(end as u8);
    out.put_slice(&s.as_bytes()[..end]);
}

fn get_str<'a>(r: &mut &'a [u8]) -> Result<&'a str, DecodeError> {
    let len = usize::from(r.try_get_u8().map_err(|_| DecodeError::Short)?);
    if r.len() < len {
        return Err(DecodeError::Short);
    }
    let (s, rest) = r.split_at(len);
    *r = rest;
    std::str::from_utf8(s).map_err(|_| DecodeError::Short)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn quote() -> impl Strategy<Value = Quote> {
        let source = prop_oneof![
            Just("yfinance"),
            Just("alpaca"),
            Just("polygon"),
            Just("synthetic")
        ];
        let opt = || proptest::option::of(0.0001f64..1e6);
        (
            "[A-Z]{1,5}(\\.[A-Z])?",
            -2_000_000_000i64..4_000_000_000,
            0i32..1_000_000_000,
            0.0001f64..1e6,
            any::<u64>(),
            (opt(), opt(), opt(), opt(), opt()),
            source,
        )
            .prop_map(
                |(t, s, ns, price, volume, (bid, ask, open, high, low), source)| Quote {
                    ticker: Ticker::parse(&t).unwrap(),
                    timestamp: Timestamp::new(s, ns).unwrap(),
                    price,
                    volume,
                    bid,
                    ask,
                    open,
                    high,
                    low,
                    source,
                },
            )
    }

    proptest! {
        #[test]
        fn a_batch_comes_back_as_it_went(batch in proptest::collection::vec(quote(), 0..40)) {
            let record = encode(&batch);
            prop_assert_eq!(count(&record), batch.len());
            let back = decode(&record).unwrap();
            prop_assert_eq!(&back[..], &batch[..]);
        }

        /// Whatever the bytes, decoding answers (a batch or an error) and never panics.
        #[test]
        fn any_bytes_decode_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes);
            let _ = count(&bytes);
        }

        #[test]
        fn a_cut_record_is_an_error(batch in proptest::collection::vec(quote(), 1..5), cut in 1usize..50) {
            let record = encode(&batch);
            let cut = cut.min(record.len());
            prop_assert!(decode(&record[..record.len() - cut]).is_err());
        }
    }
}
