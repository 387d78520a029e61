//! Yahoo Finance's spelling of a ticker: share classes take a dash (`BRK-B`) where the
//! canonical ticker has a dot (`BRK.B`). Only the Yahoo sources (polling and streaming) use it.

use quotestream_api::Ticker;
use quotestream_api::ticker::TickerError;

/// The symbol as Yahoo Finance spells it (`BRK.B` → `BRK-B`).
pub fn to_yahoo(ticker: &Ticker) -> String {
    ticker.as_str().replace('.', "-")
}

/// The canonical ticker of a Yahoo Finance symbol (`BRK-B` → `BRK.B`; indices `^GSPC` and
/// crypto pairs `BTC-USD` are spelt the same in both).
pub fn from_yahoo(symbol: &str) -> Result<Ticker, TickerError> {
    match symbol.split_once('-') {
        Some((root, class)) if class.len() == 1 => Ticker::parse(&format!("{root}.{class}")),
        _ => Ticker::parse(symbol),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn share_classes_round_trip() {
        let t = Ticker::parse("BRK.B").unwrap();
        assert_eq!(to_yahoo(&t), "BRK-B");
        assert_eq!(from_yahoo("BRK-B").unwrap(), t);
        assert_eq!(to_yahoo(&Ticker::parse("MSFT").unwrap()), "MSFT");
    }

    #[test]
    fn indices_and_crypto_keep_their_yahoo_names() {
        for id in ["^GSPC", "BTC-USD", "ETH-USDT"] {
            let t = Ticker::parse(id).unwrap();
            assert_eq!(to_yahoo(&t), id);
            assert_eq!(from_yahoo(id).unwrap(), t);
        }
    }

    proptest! {
        #[test]
        fn every_ticker_maps_back(root in "[A-Z]{1,5}", class in proptest::option::of("[A-Z]")) {
            let s = match &class { Some(c) => format!("{root}.{c}"), None => root.clone() };
            let t = Ticker::parse(&s).unwrap();
            prop_assert_eq!(from_yahoo(&to_yahoo(&t)).unwrap(), t);
        }
    }
}
