//! `crds/quotestream.yaml` is generated from the Rust types; this fails when it is stale.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

#[test]
fn checked_in_crd_matches_the_rust_types() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/quotestream.yaml");
    let checked_in = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {path}: {e}; run `make crd`"));
    let generated = quotestream_api::crd::crd_yaml().expect("CRD serialises");
    assert!(
        checked_in == generated,
        "crds/quotestream.yaml is stale: run `make crd` and commit the result"
    );
}
