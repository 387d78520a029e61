//! Ticker symbols: parsing, the share-class mapping, and ticker lists.
//!
//! The data contracts (Redis `quotes.realtime`, POST /quotes/batch INV-002) say a ticker matches
//! `^[A-Z]{1,5}$`. The S&P 500 also holds share classes (`BRK.B`, `BF.B`) that do not. quotestream
//! accepts them in one canonical form, the dotted one used by the exchanges' consolidated tape
//! and by the S&P list itself: `ROOT.CLASS`, `^[A-Z]{1,5}(\.[A-Z])?$`. Each vendor gets its own
//! spelling at the edge, in the worker (Yahoo's `BRK-B`), and [`Ticker::is_contract_symbol`]
//! tells a sink whose contract only admits the plain pattern that it must not send this one.
//! See docs/tickers.md for the full mapping.

use std::collections::BTreeSet;
use std::fmt;

/// The pattern every ticker in a QuoteStream matches: a stock (the contract pattern plus an
/// optional one-letter share class), an index (`^GSPC`) or a crypto pair (`BTC-USD`) — the
/// canonical instrument ids of [`crate::instrument`]. It is also put into the CRD's OpenAPI
/// schema.
pub const TICKER_PATTERN: &str = crate::instrument::INSTRUMENT_PATTERN;

/// Longest ticker: a crypto pair of a 10-character base and a 4-letter quote currency.
pub const TICKER_MAX_LEN: usize = 15;

/// Why a symbol is not a valid ticker. Every variant names the offending input and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TickerError {
    #[error("ticker is empty; write a symbol such as AAPL")]
    Empty,
    #[error("ticker {0:?} has lower-case letters; tickers are upper case (write {1:?})")]
    LowerCase(String, String),
    #[error(
        "ticker {0:?} writes its share class with {1:?}; quotestream writes share classes with a dot (write {2:?})"
    )]
    ShareClassSeparator(String, char, String),
    #[error(
        "ticker {0:?} does not match {TICKER_PATTERN}: a stock of 1-5 letters A-Z, optionally a dot and one class letter (AAPL, BRK.B), an index (^GSPC) or a crypto pair (BTC-USD)"
    )]
    Pattern(String),
    /// An index or crypto id that is not canonical (a vendor's spelling, an unknown quote
    /// currency): the instrument's own message, which says what to write.
    #[error("ticker {0:?}: {1}")]
    Instrument(String, String),
}

/// A validated ticker symbol in canonical form: a stock (`AAPL`, `BRK.B`), an index (`^GSPC`)
/// or a crypto pair (`BTC-USD`), as [`crate::instrument::Instrument`] spells them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticker(String);

impl Ticker {
    /// Parses a symbol, rejecting anything that is not canonical with an error that says how
    /// to write it instead. Surrounding whitespace is not accepted here (lists trim it).
    pub fn parse(symbol: &str) -> Result<Self, TickerError> {
        if symbol.is_empty() {
            return Err(TickerError::Empty);
        }
        if is_canonical(symbol) {
            return Ok(Self(symbol.to_owned()));
        }
        if looks_like_index_or_crypto(symbol) {
            return match crate::instrument::Instrument::parse(symbol) {
                Ok(_) => Ok(Self(symbol.to_owned())),
                Err(e) => Err(TickerError::Instrument(symbol.to_owned(), e.to_string())),
            };
        }
        let upper = symbol.to_ascii_uppercase();
        if upper != symbol && is_canonical(&upper) {
            return Err(TickerError::LowerCase(symbol.to_owned(), upper));
        }
        for sep in ['-', '/', '_', ' '] {
            let dotted = upper.replacen(sep, ".", 1);
            if dotted != upper && is_canonical(&dotted) {
                return Err(TickerError::ShareClassSeparator(
                    symbol.to_owned(),
                    sep,
                    dotted,
                ));
            }
        }
        Err(TickerError::Pattern(symbol.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The share class letter, if the ticker has one (`B` for `BRK.B`).
    pub fn share_class(&self) -> Option<&str> {
        self.0.split_once('.').map(|(_, class)| class)
    }

    /// True when the ticker matches the contracts' strict pattern `^[A-Z]{1,5}$`: a plain
    /// stock, not a share class, an index or a crypto pair.
    pub fn is_contract_symbol(&self) -> bool {
        self.0.bytes().all(|b| b.is_ascii_uppercase())
    }

    /// What kind of instrument the ticker names.
    pub fn class(&self) -> crate::instrument::AssetClass {
        use crate::instrument::AssetClass;
        if self.0.starts_with('^') {
            AssetClass::Index
        } else if self.0.contains('-') {
            AssetClass::Crypto
        } else {
            AssetClass::Stock
        }
    }
}

impl fmt::Display for Ticker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Ticker {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// An index (`^…`) or a crypto pair (`BASE-QUOTE` with a quote of 3 or more characters; a
/// one-letter part after a dash is a share class written Yahoo's way, refused with the fix).
fn looks_like_index_or_crypto(s: &str) -> bool {
    s.starts_with('^') || s.split_once('-').is_some_and(|(_, quote)| quote.len() >= 3)
}

fn is_canonical(s: &str) -> bool {
    let (root, class) = match s.split_once('.') {
        Some((root, class)) => (root, Some(class)),
        None => (s, None),
    };
    let letters = |part: &str| part.bytes().all(|b| b.is_ascii_uppercase());
    (1..=5).contains(&root.len())
        && letters(root)
        && class.is_none_or(|c| c.len() == 1 && letters(c))
}

/// Where an entry sits in a ticker list: a line of a text list, or an item of a YAML list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// 1-based line of a text list.
    Line(usize),
    /// 0-based index of a list (as in `spec.tickers[3]`).
    Item(usize),
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Line(n) => write!(f, "line {n}"),
            Self::Item(i) => write!(f, "item [{i}]"),
        }
    }
}

/// A problem with one entry of a ticker list, located by its position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TickerListError {
    #[error("{at}: {source}")]
    Invalid {
        at: Position,
        #[source]
        source: TickerError,
    },
    #[error("{at}: ticker {ticker} is listed twice (first at {first}); remove one of them")]
    Duplicate {
        at: Position,
        first: Position,
        ticker: Ticker,
    },
    #[error("the ticker list is empty; add at least one symbol (one per line or comma separated)")]
    Empty,
}

/// A non-empty set of distinct tickers, kept sorted (the order of the input never matters to
/// the shard assignment).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TickerSet(Vec<Ticker>);

impl TickerSet {
    /// Builds a set from symbols, rejecting duplicates: a list that names a ticker twice is
    /// almost always a mistake (a merge of two lists), so it is an error, not merged silently.
    pub fn from_symbols<S: AsRef<str>>(
        symbols: impl IntoIterator<Item = S>,
    ) -> Result<Self, TickerListError> {
        Self::from_located(
            symbols
                .into_iter()
                .enumerate()
                .map(|(i, s)| (Position::Item(i), s)),
        )
    }

    /// Parses a list as stored in a ConfigMap: one symbol per line or comma separated, blank
    /// lines and `#` comments ignored. Errors carry the line number.
    pub fn parse_list(text: &str) -> Result<Self, TickerListError> {
        let entries = text.lines().enumerate().flat_map(|(i, line)| {
            let content = line.split('#').next().unwrap_or_default();
            content
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(move |s| (Position::Line(i + 1), s))
        });
        Self::from_located(entries)
    }

    /// The set of `entries`, or the error of the first entry that is invalid or names a ticker
    /// an earlier entry named, in the order given.
    ///
    /// Sorted once rather than inserted one by one into a map: a list of 100 000 tickers is
    /// resolved on every plan of the stream.
    fn from_located<S: AsRef<str>>(
        entries: impl IntoIterator<Item = (Position, S)>,
    ) -> Result<Self, TickerListError> {
        // (ticker, index in the input, position); stops at the first invalid entry, as no
        // entry after it can be the first error.
        let mut parsed: Vec<(Ticker, usize, Position)> = Vec::new();
        let mut invalid = None;
        for (index, (at, symbol)) in entries.into_iter().enumerate() {
            match Ticker::parse(symbol.as_ref()) {
                Ok(ticker) => parsed.push((ticker, index, at)),
                Err(source) => {
                    invalid = Some((index, TickerListError::Invalid { at, source }));
                    break;
                }
            }
        }
        // By ticker, then input order: a repeat follows its first occurrence.
        parsed.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        let duplicate = parsed
            .windows(2)
            .filter(|w| w[0].0 == w[1].0)
            .min_by_key(|w| w[1].1)
            .map(|w| {
                // The earliest occurrence of this ticker is the first of its run.
                let first = parsed
                    .partition_point(|p| p.0 < w[1].0)
                    .min(parsed.len() - 1);
                (
                    w[1].1,
                    TickerListError::Duplicate {
                        at: w[1].2,
                        first: parsed[first].2,
                        ticker: w[1].0.clone(),
                    },
                )
            });
        let first_error = match (invalid, duplicate) {
            (Some(a), Some(b)) => Some(if a.0 < b.0 { a.1 } else { b.1 }),
            (a, b) => a.or(b).map(|(_, e)| e),
        };
        if let Some(error) = first_error {
            return Err(error);
        }
        if parsed.is_empty() {
            return Err(TickerListError::Empty);
        }
        Ok(Self(parsed.into_iter().map(|(t, _, _)| t).collect()))
    }

    /// Joins several sets (inline tickers and a ConfigMap list); a ticker in both is a duplicate.
    pub fn union_disjoint(self, other: TickerSet) -> Result<Self, Ticker> {
        let mut all: BTreeSet<Ticker> = self.0.into_iter().collect();
        for t in other.0 {
            if let Some(dup) = all.replace(t) {
                return Err(dup);
            }
        }
        Ok(Self(all.into_iter().collect()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Ticker> {
        self.0.iter()
    }

    pub fn as_slice(&self) -> &[Ticker] {
        &self.0
    }

    pub fn contains(&self, ticker: &Ticker) -> bool {
        self.0.binary_search(ticker).is_ok()
    }
}

impl<'a> IntoIterator for &'a TickerSet {
    type Item = &'a Ticker;
    type IntoIter = std::slice::Iter<'a, Ticker>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl FromIterator<Ticker> for TickerSet {
    /// Collects distinct tickers; duplicates collapse (use [`TickerSet::from_symbols`] for
    /// user input, where a duplicate is an error).
    fn from_iter<I: IntoIterator<Item = Ticker>>(iter: I) -> Self {
        let set: BTreeSet<Ticker> = iter.into_iter().collect();
        Self(set.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_plain_and_share_class_symbols() {
        for s in ["A", "AAPL", "GOOGL", "BRK.B", "BF.B"] {
            assert_eq!(Ticker::parse(s).map(|t| t.to_string()), Ok(s.to_owned()));
        }
    }

    #[test]
    fn errors_say_how_to_fix_the_symbol() {
        assert_eq!(
            Ticker::parse("aapl"),
            Err(TickerError::LowerCase("aapl".into(), "AAPL".into()))
        );
        let err = Ticker::parse("BRK-B").unwrap_err().to_string();
        assert!(err.contains("\"BRK.B\""), "{err}");
        assert!(matches!(
            Ticker::parse("TOOLONG"),
            Err(TickerError::Pattern(_))
        ));
        assert!(matches!(
            Ticker::parse("BRK.BB"),
            Err(TickerError::Pattern(_))
        ));
        assert!(matches!(Ticker::parse(".B"), Err(TickerError::Pattern(_))));
        assert_eq!(Ticker::parse(""), Err(TickerError::Empty));
    }

    #[test]
    fn share_classes_are_not_contract_symbols() {
        let t = Ticker::parse("BRK.B").unwrap();
        assert!(!t.is_contract_symbol());
        assert!(Ticker::parse("MSFT").unwrap().is_contract_symbol());
    }

    #[test]
    fn indices_and_crypto_pairs_are_tickers_but_not_contract_symbols() {
        use crate::instrument::AssetClass;
        for s in ["^GSPC", "^DJI", "BTC-USD", "ETH-USDT"] {
            let t = Ticker::parse(s).unwrap();
            assert_eq!(t.as_str(), s);
            assert!(!t.is_contract_symbol(), "{s}");
        }
        assert_eq!(Ticker::parse("^GSPC").unwrap().class(), AssetClass::Index);
        assert_eq!(
            Ticker::parse("BTC-USD").unwrap().class(),
            AssetClass::Crypto
        );
        assert_eq!(Ticker::parse("BRK.B").unwrap().class(), AssetClass::Stock);
        // A vendor's name of an index is refused with the canonical id to write; an unknown
        // quote currency and a share class written with a dash say what is wrong.
        let e = Ticker::parse("^SPX").unwrap_err().to_string();
        assert!(e.contains("^GSPC"), "{e}");
        let e = Ticker::parse("BTC-XYZ").unwrap_err().to_string();
        assert!(e.contains("BTC-XYZ"), "{e}");
        assert!(matches!(
            Ticker::parse("BRK-B"),
            Err(TickerError::ShareClassSeparator(..))
        ));
        assert!(matches!(
            Ticker::parse("X:BTCUSD"),
            Err(TickerError::Pattern(_))
        ));
    }

    #[test]
    fn list_parsing_accepts_lines_commas_and_comments() {
        let set = TickerSet::parse_list("AAPL, MSFT\n# tech\n\nGOOGL # alphabet\n").unwrap();
        let names: Vec<_> = set.iter().map(Ticker::as_str).collect();
        assert_eq!(names, ["AAPL", "GOOGL", "MSFT"]);
    }

    #[test]
    fn list_errors_name_the_line() {
        let err = TickerSet::parse_list("AAPL\nMSFT\nAAPL\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 3: ticker AAPL is listed twice (first at line 1); remove one of them"
        );
        let err = TickerSet::parse_list("AAPL\nms ft\n").unwrap_err();
        assert!(err.to_string().starts_with("line 2: "), "{err}");
        assert_eq!(
            TickerSet::parse_list("# nothing\n"),
            Err(TickerListError::Empty)
        );
    }

    #[test]
    fn union_rejects_overlap() {
        let a = TickerSet::from_symbols(["AAPL", "MSFT"]).unwrap();
        let b = TickerSet::from_symbols(["MSFT"]).unwrap();
        assert_eq!(a.union_disjoint(b).unwrap_err().as_str(), "MSFT");
    }

    proptest! {
        #[test]
        fn canonical_pattern_is_exactly_the_documented_regex(s in "[A-Za-z.\\-]{0,8}|[A-Z]{2,4}-(USD|EUR|XYZ|usd)") {
            let re_match = {
                let (root, class) = match s.split_once('.') {
                    Some((r, c)) => (r, Some(c)),
                    None => (s.as_str(), None),
                };
                let stock = (1..=5).contains(&root.len()) && root.chars().all(|c| c.is_ascii_uppercase())
                    && class.is_none_or(|c| c.len() == 1 && c.chars().all(|c| c.is_ascii_uppercase()));
                // The crypto branch of INSTRUMENT_PATTERN (no `^` or digits in this alphabet).
                let crypto = s.split_once('-').is_some_and(|(base, quote)| {
                    (2..=10).contains(&base.len())
                        && base.chars().all(|c| c.is_ascii_uppercase())
                        && ["USD", "USDT", "USDC", "EUR", "GBP", "JPY", "CAD", "AUD", "BTC", "ETH"].contains(&quote)
                });
                stock || crypto
            };
            prop_assert_eq!(Ticker::parse(&s).is_ok(), re_match);
        }

        /// The sort-based resolution gives what inserting the entries one by one into a map
        /// gives: the same set, or the same first error (invalid or repeated, in input order).
        #[test]
        fn a_list_resolves_as_entry_by_entry_insertion_would(
            symbols in proptest::collection::vec("[A-C]{1,2}|a|", 0..40)
        ) {
            let by_insertion = || -> Result<Vec<Ticker>, TickerListError> {
                let mut seen = std::collections::BTreeMap::new();
                for (i, symbol) in symbols.iter().enumerate() {
                    let at = Position::Item(i);
                    let ticker = Ticker::parse(symbol)
                        .map_err(|source| TickerListError::Invalid { at, source })?;
                    if let Some(&first) = seen.get(&ticker) {
                        return Err(TickerListError::Duplicate { at, first, ticker });
                    }
                    seen.insert(ticker, at);
                }
                if seen.is_empty() {
                    return Err(TickerListError::Empty);
                }
                Ok(seen.into_keys().collect())
            };
            let sorted = TickerSet::from_symbols(&symbols).map(|s| s.0);
            prop_assert_eq!(sorted, by_insertion());
        }
    }
}
