//! Instruments beyond US stocks: one canonical id per instrument, and each vendor's spelling.
//!
//! | kind | canonical id | Yahoo | Polygon (Massive) | Alpaca |
//! |---|---|---|---|---|
//! | stock | `AAPL`, `BRK.B` ([`Ticker`]) | `AAPL`, `BRK-B` | `AAPL`, `BRK.B` | `AAPL`, `BRK.B` |
//! | index | `^GSPC` | `^GSPC` | `I:SPX` | — (Alpaca has no index data) |
//! | crypto | `BTC-USD` | `BTC-USD` | `X:BTCUSD` | `BTC/USD` |
//!
//! The canonical id is what is stored in the `symbol` column and asked for in `/v1/bars`; it
//! takes Yahoo's spelling for indices and crypto (the most widely known one) because those
//! spellings are safe in a URL path and cannot be mistaken for a stock: an index starts with
//! `^`, a crypto pair is `BASE-QUOTE` with a quote currency of three or more letters (a stock's
//! share class is one letter after a dot). Indices whose name differs between vendors (the
//! S&P 500 is `^GSPC` at Yahoo and `I:SPX` at Polygon) are mapped by [`INDEX_NAMES`]; any
//! other index keeps its name (`^DJI` ↔ `I:DJI`). The contracts' strict ticker pattern
//! `^[A-Z]{1,5}$` carries only plain stocks ([`Instrument::is_contract_symbol`]).

use std::fmt;

use crate::ticker::{Ticker, TickerError};

/// A market-data vendor with its own symbol spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Vendor {
    Yahoo,
    Alpaca,
    Polygon,
}

impl Vendor {
    pub const ALL: [Vendor; 3] = [Vendor::Yahoo, Vendor::Alpaca, Vendor::Polygon];

    /// The name used on the command line and in `spec.source.type`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Yahoo => "yahoo",
            Self::Alpaca => "alpaca",
            Self::Polygon => "polygon",
        }
    }
}

impl fmt::Display for Vendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What kind of instrument an id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AssetClass {
    Stock,
    Index,
    Crypto,
}

/// Quote currencies a crypto pair may have. A closed list because Polygon writes pairs without
/// a separator (`X:BTCUSD`): the quote currency is found as a known suffix. No entry is a
/// suffix of another, so the split is unique.
pub const QUOTE_CURRENCIES: [&str; 10] = [
    "USD", "USDT", "USDC", "EUR", "GBP", "JPY", "CAD", "AUD", "BTC", "ETH",
];

/// Indices whose names differ between Yahoo (the canonical spelling) and Polygon.
pub const INDEX_NAMES: [(&str, &str); 2] = [("GSPC", "SPX"), ("IXIC", "COMP")];

/// A validated instrument in canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Instrument(Kind);

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    Stock(Ticker),
    /// The name after `^` (Yahoo's).
    Index(String),
    Crypto {
        base: String,
        quote: String,
    },
}

/// Why a symbol is not a canonical instrument id, or has no spelling at a vendor. Every
/// variant names the input and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstrumentError {
    #[error(transparent)]
    Ticker(#[from] TickerError),
    #[error(
        "index {0:?} does not match ^[A-Z][A-Z0-9]{{0,9}}: write a caret and the index name, e.g. ^GSPC, ^DJI"
    )]
    Index(String),
    #[error(
        "crypto pair {0:?} is not BASE-QUOTE with a 2-10 letter/digit base and a quote currency of {quotes}: write e.g. BTC-USD",
        quotes = QUOTE_CURRENCIES.join(", ")
    )]
    Crypto(String),
    #[error("{given:?} is {vendor}'s spelling; write the canonical id {canonical:?}")]
    VendorSpelling {
        given: String,
        vendor: Vendor,
        canonical: String,
    },
    #[error("{given:?} is Polygon's name of the index {canonical}; write {canonical:?}")]
    PolygonIndexName { given: String, canonical: String },
    #[error(
        "{instrument} is an index, and {vendor} has no index data; use --source yahoo or polygon for it"
    )]
    NotAtVendor { instrument: String, vendor: Vendor },
    #[error("{vendor} symbol {given:?} is not one quotestream can map: {why}")]
    UnknownVendorSymbol {
        vendor: Vendor,
        given: String,
        why: String,
    },
}

impl Instrument {
    /// Parses a canonical id (`AAPL`, `BRK.B`, `^GSPC`, `BTC-USD`). A vendor's spelling of a
    /// known instrument (`I:SPX`, `X:BTCUSD`, `BTC/USD`, `BRK-B`) is refused with the canonical
    /// id to write instead.
    pub fn parse(id: &str) -> Result<Self, InstrumentError> {
        if let Some(name) = id.strip_prefix('^') {
            if !is_index_name(name) {
                return Err(InstrumentError::Index(id.to_owned()));
            }
            if let Some((yahoo, _)) = INDEX_NAMES.iter().find(|(_, polygon)| *polygon == name) {
                return Err(InstrumentError::PolygonIndexName {
                    given: id.to_owned(),
                    canonical: format!("^{yahoo}"),
                });
            }
            return Ok(Self(Kind::Index(name.to_owned())));
        }
        if let Some((base, quote)) = id.split_once('-')
            && quote.len() >= 3
        {
            return crypto(base, quote).ok_or_else(|| InstrumentError::Crypto(id.to_owned()));
        }
        for vendor in [Vendor::Polygon, Vendor::Alpaca] {
            if let Ok(i) = Self::from_vendor(vendor, id)
                && i.class() != AssetClass::Stock
            {
                return Err(InstrumentError::VendorSpelling {
                    given: id.to_owned(),
                    vendor,
                    canonical: i.to_string(),
                });
            }
        }
        Ok(Self(Kind::Stock(Ticker::parse(id)?)))
    }

    /// The instrument a vendor's symbol names (`I:SPX` at Polygon is `^GSPC`).
    pub fn from_vendor(vendor: Vendor, symbol: &str) -> Result<Self, InstrumentError> {
        let unknown = |why: &str| InstrumentError::UnknownVendorSymbol {
            vendor,
            given: symbol.to_owned(),
            why: why.to_owned(),
        };
        match vendor {
            Vendor::Yahoo => {
                if symbol.starts_with('^')
                    || symbol.split_once('-').is_some_and(|(_, q)| q.len() >= 3)
                {
                    return Self::parse(symbol);
                }
                let dotted = match symbol.split_once('-') {
                    Some((root, class)) => format!("{root}.{class}"),
                    None => symbol.to_owned(),
                };
                Ok(Self(Kind::Stock(Ticker::parse(&dotted)?)))
            }
            Vendor::Polygon => {
                if let Some(name) = symbol.strip_prefix("I:") {
                    if !is_index_name(name) {
                        return Err(unknown("an index name is 1-10 letters or digits"));
                    }
                    let yahoo = INDEX_NAMES
                        .iter()
                        .find(|(_, polygon)| *polygon == name)
                        .map_or(name, |(yahoo, _)| *yahoo);
                    return Ok(Self(Kind::Index(yahoo.to_owned())));
                }
                if let Some(pair) = symbol.strip_prefix("X:") {
                    return QUOTE_CURRENCIES
                        .iter()
                        .filter_map(|q| pair.strip_suffix(q).map(|base| (base, *q)))
                        .find_map(|(base, quote)| crypto(base, quote))
                        .ok_or_else(|| unknown("a crypto pair is X:<base><quote currency>"));
                }
                Ok(Self(Kind::Stock(Ticker::parse(symbol)?)))
            }
            Vendor::Alpaca => {
                if let Some((base, quote)) = symbol.split_once('/') {
                    return crypto(base, quote)
                        .ok_or_else(|| unknown("a crypto pair is BASE/QUOTE, e.g. BTC/USD"));
                }
                Ok(Self(Kind::Stock(Ticker::parse(symbol)?)))
            }
        }
    }

    /// The symbol `vendor` knows this instrument by; an error when it has none.
    pub fn vendor_symbol(&self, vendor: Vendor) -> Result<String, InstrumentError> {
        Ok(match (&self.0, vendor) {
            (Kind::Stock(t), Vendor::Yahoo) => t.as_str().replace('.', "-"),
            (Kind::Stock(t), _) => t.as_str().to_owned(),
            (Kind::Index(name), Vendor::Yahoo) => format!("^{name}"),
            (Kind::Index(name), Vendor::Polygon) => {
                let polygon = INDEX_NAMES
                    .iter()
                    .find(|(yahoo, _)| yahoo == name)
                    .map_or(name.as_str(), |(_, polygon)| *polygon);
                format!("I:{polygon}")
            }
            (Kind::Index(_), Vendor::Alpaca) => {
                return Err(InstrumentError::NotAtVendor {
                    instrument: self.to_string(),
                    vendor,
                });
            }
            (Kind::Crypto { base, quote }, Vendor::Yahoo) => format!("{base}-{quote}"),
            (Kind::Crypto { base, quote }, Vendor::Polygon) => format!("X:{base}{quote}"),
            (Kind::Crypto { base, quote }, Vendor::Alpaca) => format!("{base}/{quote}"),
        })
    }

    pub fn class(&self) -> AssetClass {
        match self.0 {
            Kind::Stock(_) => AssetClass::Stock,
            Kind::Index(_) => AssetClass::Index,
            Kind::Crypto { .. } => AssetClass::Crypto,
        }
    }

    /// The stock ticker, when this is a stock.
    pub fn ticker(&self) -> Option<&Ticker> {
        match &self.0 {
            Kind::Stock(t) => Some(t),
            _ => None,
        }
    }

    /// True when the id fits the contracts' strict pattern `^[A-Z]{1,5}$` (a plain stock):
    /// only those are published on Redis `quotes.realtime` (contract 004) and POSTed in a
    /// batch (contract 001).
    pub fn is_contract_symbol(&self) -> bool {
        self.ticker().is_some_and(Ticker::is_contract_symbol)
    }

    /// Trades around the clock (crypto): no sessions, no holidays.
    pub fn trades_24_7(&self) -> bool {
        self.class() == AssetClass::Crypto
    }
}

impl fmt::Display for Instrument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::Stock(t) => f.write_str(t.as_str()),
            Kind::Index(name) => write!(f, "^{name}"),
            Kind::Crypto { base, quote } => write!(f, "{base}-{quote}"),
        }
    }
}

impl From<Ticker> for Instrument {
    fn from(t: Ticker) -> Self {
        Self(Kind::Stock(t))
    }
}

/// The pattern of a canonical id, for documentation and schemas.
pub const INSTRUMENT_PATTERN: &str = r"^([A-Z]{1,5}(\.[A-Z])?|\^[A-Z][A-Z0-9]{0,9}|[A-Z0-9]{2,10}-(USD|USDT|USDC|EUR|GBP|JPY|CAD|AUD|BTC|ETH))$";

fn is_index_name(name: &str) -> bool {
    (1..=10).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_uppercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

fn crypto(base: &str, quote: &str) -> Option<Instrument> {
    let base_ok = (2..=10).contains(&base.len())
        && base
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    (base_ok && QUOTE_CURRENCIES.contains(&quote)).then(|| {
        Instrument(Kind::Crypto {
            base: base.to_owned(),
            quote: quote.to_owned(),
        })
    })
}

/// Parses a comma-separated list of canonical ids (`AAPL,^GSPC,BTC-USD`): blanks around items
/// are trimmed, duplicates and empty lists refused, the first bad item named by its position.
pub fn parse_list(list: &str) -> Result<Vec<Instrument>, String> {
    let mut out: Vec<Instrument> = Vec::new();
    for (i, item) in list.split(',').map(str::trim).enumerate() {
        if item.is_empty() {
            continue;
        }
        let instrument = Instrument::parse(item).map_err(|e| format!("item {}: {e}", i + 1))?;
        if out.contains(&instrument) {
            return Err(format!(
                "item {}: {instrument} is listed twice; remove one",
                i + 1
            ));
        }
        out.push(instrument);
    }
    if out.is_empty() {
        return Err("no instrument given; write e.g. AAPL,^GSPC,BTC-USD".to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn i(s: &str) -> Instrument {
        Instrument::parse(s).unwrap()
    }

    #[test]
    fn the_table_of_spellings_holds() {
        let rows = [
            ("AAPL", "AAPL", Some("AAPL"), "AAPL"),
            ("BRK.B", "BRK-B", Some("BRK.B"), "BRK.B"),
            ("^GSPC", "^GSPC", None, "I:SPX"),
            ("^IXIC", "^IXIC", None, "I:COMP"),
            ("^DJI", "^DJI", None, "I:DJI"),
            ("BTC-USD", "BTC-USD", Some("BTC/USD"), "X:BTCUSD"),
            ("ETH-USDT", "ETH-USDT", Some("ETH/USDT"), "X:ETHUSDT"),
        ];
        for (id, yahoo, alpaca, polygon) in rows {
            let inst = i(id);
            assert_eq!(inst.to_string(), id);
            assert_eq!(inst.vendor_symbol(Vendor::Yahoo).unwrap(), yahoo);
            assert_eq!(inst.vendor_symbol(Vendor::Alpaca).ok().as_deref(), alpaca);
            assert_eq!(inst.vendor_symbol(Vendor::Polygon).unwrap(), polygon);
            assert_eq!(Instrument::from_vendor(Vendor::Polygon, polygon), Ok(inst));
        }
        assert_eq!(i("^GSPC").class(), AssetClass::Index);
        assert_eq!(i("BTC-USD").class(), AssetClass::Crypto);
        assert!(i("BTC-USD").trades_24_7());
    }

    #[test]
    fn only_plain_stocks_are_contract_symbols() {
        assert!(i("AAPL").is_contract_symbol());
        for id in ["BRK.B", "^GSPC", "BTC-USD"] {
            assert!(!i(id).is_contract_symbol(), "{id}");
        }
    }

    #[test]
    fn errors_name_the_canonical_spelling() {
        let e = Instrument::parse("X:BTCUSD").unwrap_err().to_string();
        assert!(e.contains("\"BTC-USD\"") && e.contains("polygon"), "{e}");
        let e = Instrument::parse("BTC/USD").unwrap_err().to_string();
        assert!(e.contains("\"BTC-USD\"") && e.contains("alpaca"), "{e}");
        let e = Instrument::parse("I:SPX").unwrap_err().to_string();
        assert!(e.contains("\"^GSPC\""), "{e}");
        let e = Instrument::parse("^SPX").unwrap_err().to_string();
        assert!(e.contains("\"^GSPC\""), "{e}");
        let e = Instrument::parse("BRK-B").unwrap_err().to_string();
        assert!(e.contains("\"BRK.B\""), "{e}");
        assert!(matches!(
            Instrument::parse("BTC-XYZ"),
            Err(InstrumentError::Crypto(_))
        ));
        assert!(matches!(
            Instrument::parse("^gspc"),
            Err(InstrumentError::Index(_))
        ));
        let e = i("^GSPC").vendor_symbol(Vendor::Alpaca).unwrap_err();
        assert!(e.to_string().contains("no index data"), "{e}");
    }

    #[test]
    fn lists_name_the_bad_item() {
        let list = parse_list("AAPL, ^GSPC ,BTC-USD").unwrap();
        assert_eq!(list.len(), 3);
        assert!(parse_list("AAPL,aapl").unwrap_err().starts_with("item 2:"));
        assert!(parse_list("AAPL,AAPL").unwrap_err().contains("twice"));
        assert!(parse_list(" , ").is_err());
    }

    fn any_instrument() -> impl Strategy<Value = Instrument> {
        prop_oneof![
            ("[A-Z]{1,5}", proptest::option::of("[A-Z]")).prop_map(|(root, class)| {
                let s = match class {
                    Some(c) => format!("{root}.{c}"),
                    None => root,
                };
                Instrument::from(Ticker::parse(&s).unwrap())
            }),
            "[A-Z][A-Z0-9]{0,9}".prop_filter_map("Polygon's names are not canonical", |n| {
                Instrument::parse(&format!("^{n}")).ok()
            }),
            (
                "[A-Z0-9]{2,10}",
                proptest::sample::select(QUOTE_CURRENCIES.to_vec())
            )
                .prop_map(|(b, q)| crypto(&b, q).unwrap()),
        ]
    }

    proptest! {
        #[test]
        fn every_vendor_spelling_maps_back(inst in any_instrument()) {
            prop_assert_eq!(Instrument::parse(&inst.to_string()), Ok(inst.clone()));
            for vendor in Vendor::ALL {
                if let Ok(symbol) = inst.vendor_symbol(vendor) {
                    prop_assert_eq!(Instrument::from_vendor(vendor, &symbol), Ok(inst.clone()));
                } else {
                    prop_assert!(vendor == Vendor::Alpaca && inst.class() == AssetClass::Index);
                }
            }
        }

        #[test]
        fn parse_never_accepts_what_the_pattern_refuses(s in "[A-Za-z0-9.^:/\\-]{0,12}") {
            if let Ok(inst) = Instrument::parse(&s) {
                prop_assert_eq!(inst.to_string(), s.clone());
                let stock = s.bytes().all(|b| b.is_ascii_uppercase() || b == b'.');
                prop_assert!(stock || s.starts_with('^') || s.contains('-'), "{}", s);
            }
        }
    }
}
