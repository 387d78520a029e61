//! The checks of a spec that need more than the API server can see (the ConfigMap list) and the
//! resolution of a spec into what the operator acts on: the ticker set and the shard count.

use std::num::NonZeroUsize;
use std::time::Duration;

use super::{ConfigMapKeyRef, QuoteStreamSpec};
use crate::duration::{self, DurationError};
use crate::instrument::AssetClass;
use crate::ticker::{Ticker, TickerListError, TickerSet};

/// Why a spec cannot be acted on. Each message names the field and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("spec.tickers: {0}")]
    InlineTickers(#[source] TickerListError),
    #[error("ConfigMap {name} key {key} (spec.tickersFrom): {source}")]
    ConfigMapTickers {
        name: String,
        key: String,
        #[source]
        source: TickerListError,
    },
    #[error(
        "spec.tickersFrom names ConfigMap {name} key {key}, but its contents were not provided"
    )]
    ConfigMapListMissing { name: String, key: String },
    #[error(
        "ticker {ticker} is listed both in spec.tickers and in ConfigMap {name} key {key}; remove it from one of them"
    )]
    Overlap {
        ticker: Ticker,
        name: String,
        key: String,
    },
    #[error("spec.tickers or spec.tickersFrom must list at least one ticker")]
    NoTickers,
    #[error(
        "ticker {ticker} is {what}, which spec.source.type {vendor} does not stream (it reads the vendor's stock feed only): use source yahoo or yahoo-stream for indices and crypto, or remove {ticker}"
    )]
    UnsupportedInstrument {
        ticker: Ticker,
        what: &'static str,
        vendor: &'static str,
    },
    #[error(
        "spec.shards ({shards}) must be between 1 and the number of tickers ({tickers}): lower spec.shards or add tickers"
    )]
    Shards { shards: i32, tickers: usize },
    #[error("spec.interval: {0}")]
    Interval(#[source] DurationError),
}

impl QuoteStreamSpec {
    /// All tickers of the stream: the inline list plus `config_map_list`, the text of the
    /// `tickersFrom` ConfigMap key (required when `tickersFrom` is set).
    pub fn ticker_set(&self, config_map_list: Option<&str>) -> Result<TickerSet, SpecError> {
        let inline = match &self.tickers {
            Some(list) if !list.is_empty() => {
                Some(TickerSet::from_symbols(list).map_err(SpecError::InlineTickers)?)
            }
            _ => None,
        };
        let from_map = match &self.tickers_from {
            Some(from) => {
                let ConfigMapKeyRef { name, key } = &from.config_map_key_ref;
                let text = config_map_list.ok_or_else(|| SpecError::ConfigMapListMissing {
                    name: name.clone(),
                    key: key.clone(),
                })?;
                let set =
                    TickerSet::parse_list(text).map_err(|source| SpecError::ConfigMapTickers {
                        name: name.clone(),
                        key: key.clone(),
                        source,
                    })?;
                Some((set, name, key))
            }
            None => None,
        };
        let set = match (inline, from_map) {
            (Some(a), Some((b, name, key))) => {
                a.union_disjoint(b).map_err(|ticker| SpecError::Overlap {
                    ticker,
                    name: name.clone(),
                    key: key.clone(),
                })
            }
            (Some(a), None) => Ok(a),
            (None, Some((b, _, _))) => Ok(b),
            (None, None) => Err(SpecError::NoTickers),
        }?;
        let source = self.source.kind;
        if let Some(t) = set.iter().find(|t| !source.streams(t.class())) {
            return Err(SpecError::UnsupportedInstrument {
                ticker: t.clone(),
                what: match t.class() {
                    AssetClass::Index => "an index",
                    _ => "a crypto pair",
                },
                vendor: source.name(),
            });
        }
        Ok(set)
    }

    /// The shard count: with `spec.autoscale` from the ticker count ([`super::Autoscale`]),
    /// otherwise `spec.shards`, checked against the number of tickers.
    pub fn shard_count(&self, tickers: &TickerSet) -> Result<NonZeroUsize, SpecError> {
        if let Some(autoscale) = &self.autoscale {
            return NonZeroUsize::new(autoscale.shards_for(tickers.len(), self.shards))
                .ok_or(SpecError::NoTickers);
        }
        usize::try_from(self.shards)
            .ok()
            .filter(|&n| n <= tickers.len())
            .and_then(NonZeroUsize::new)
            .ok_or(SpecError::Shards {
                shards: self.shards,
                tickers: tickers.len(),
            })
    }

    /// The polling interval.
    pub fn interval(&self) -> Result<Duration, SpecError> {
        duration::parse(&self.interval).map_err(SpecError::Interval)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Sinks, Source, SourceType, TickersFrom};
    use super::*;

    fn spec(tickers: Option<&[&str]>, from: bool, shards: i32) -> QuoteStreamSpec {
        QuoteStreamSpec {
            tickers: tickers.map(|t| t.iter().map(|s| s.to_string()).collect()),
            tickers_from: from.then(|| TickersFrom {
                config_map_key_ref: ConfigMapKeyRef {
                    name: "sp500".into(),
                    key: "tickers".into(),
                },
            }),
            interval: "5s".into(),
            shards,
            source: Source::of(SourceType::Synthetic),
            sinks: Sinks::default(),
            worker: None,
            history: None,
            schedule: None,
            autoscale: None,
        }
    }

    #[test]
    fn indices_and_crypto_need_a_source_that_streams_them() {
        let mut s = spec(Some(&["AAPL", "^GSPC", "BTC-USD"]), false, 1);
        for kind in [
            SourceType::Yahoo,
            SourceType::YahooStream,
            SourceType::Synthetic,
            SourceType::Replay,
        ] {
            s.source = Source::of(kind);
            assert_eq!(s.ticker_set(None).unwrap().len(), 3, "{kind:?}");
        }
        s.source = Source::of(SourceType::Alpaca);
        let e = s.ticker_set(None).unwrap_err().to_string();
        assert!(
            e.contains("BTC-USD is a crypto pair") && e.contains("alpaca") && e.contains("yahoo"),
            "{e}"
        );
        // The ConfigMap list is held to the same rule.
        let mut s = spec(None, true, 1);
        s.source = Source::of(SourceType::Polygon);
        let e = s.ticker_set(Some("MSFT\n^GSPC\n")).unwrap_err().to_string();
        assert!(
            e.contains("^GSPC is an index") && e.contains("polygon"),
            "{e}"
        );
        assert_eq!(s.ticker_set(Some("MSFT\nBRK.B\n")).unwrap().len(), 2);
    }

    #[test]
    fn merges_inline_and_config_map_lists() {
        let s = spec(Some(&["AAPL"]), true, 2);
        let set = s.ticker_set(Some("MSFT\nNVDA")).unwrap();
        assert_eq!(set.len(), 3);
        assert_eq!(s.shard_count(&set).unwrap().get(), 2);
    }

    #[test]
    fn errors_name_the_field_and_the_fix() {
        let s = spec(Some(&["AAPL"]), true, 1);
        let err = s.ticker_set(Some("MSFT\nAAPL")).unwrap_err().to_string();
        assert_eq!(
            err,
            "ticker AAPL is listed both in spec.tickers and in ConfigMap sp500 key tickers; remove it from one of them"
        );
        let err = s.ticker_set(Some("MSFT\nms ft")).unwrap_err().to_string();
        assert!(
            err.starts_with("ConfigMap sp500 key tickers (spec.tickersFrom): line 2:"),
            "{err}"
        );
        let err = s.ticker_set(None).unwrap_err();
        assert!(matches!(err, SpecError::ConfigMapListMissing { .. }));

        let s = spec(Some(&["AAPL", "MSFT"]), false, 3);
        let set = s.ticker_set(None).unwrap();
        assert_eq!(
            s.shard_count(&set).unwrap_err().to_string(),
            "spec.shards (3) must be between 1 and the number of tickers (2): lower spec.shards or add tickers"
        );
        let s = spec(Some(&["AAPL", "AAPL"]), false, 1);
        assert_eq!(
            s.ticker_set(None).unwrap_err().to_string(),
            "spec.tickers: item [1]: ticker AAPL is listed twice (first at item [0]); remove one of them"
        );
    }
}
