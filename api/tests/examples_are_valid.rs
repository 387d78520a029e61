//! The manifests in examples/ parse as QuoteStreams and resolve to valid ticker sets.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use quotestream_api::QuoteStream;

fn example(name: &str) -> String {
    let path = format!("{}/../examples/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn sp500_example_streams_all_503_symbols() {
    let qs: QuoteStream = serde_yaml::from_str(&example("sp500.yaml")).unwrap();
    let tickers = qs.spec.ticker_set(None).unwrap();
    assert_eq!(tickers.len(), 503);
    assert_eq!(qs.spec.shard_count(&tickers).unwrap().get(), 4);
    assert!(tickers.iter().any(|t| t.as_str() == "BRK.B"));
}

#[test]
fn minimal_example_is_valid() {
    let qs: QuoteStream = serde_yaml::from_str(&example("minimal.yaml")).unwrap();
    assert_eq!(qs.spec.ticker_set(None).unwrap().len(), 3);
    assert_eq!(qs.spec.interval().unwrap().as_secs(), 1);
}

#[test]
fn configmap_example_resolves_its_list() {
    let text = example("tickers-configmap.yaml");
    let mut docs = text.split("\n---\n");
    let cm: serde_yaml::Value = serde_yaml::from_str(docs.next().unwrap()).unwrap();
    let qs: QuoteStream = serde_yaml::from_str(docs.next().unwrap()).unwrap();
    let list = cm["data"]["tickers"].as_str().unwrap();
    let tickers = qs.spec.ticker_set(Some(list)).unwrap();
    assert_eq!(tickers.len(), 12);
}

#[test]
fn store_example_posts_to_the_chart_service() {
    let qs: QuoteStream = serde_yaml::from_str(&example("with-store.yaml")).unwrap();
    assert_eq!(qs.spec.ticker_set(None).unwrap().len(), 6);
    let storage = qs.spec.sinks.storage.as_ref().unwrap();
    assert_eq!(
        storage.url,
        "http://quotestream-store.quotestream-system:8080"
    );
    assert_eq!(storage.batch_size, 1000);
}
