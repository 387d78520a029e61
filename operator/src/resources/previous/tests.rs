use std::collections::BTreeMap;

use super::*;
use crate::resources::configmap::config_map;
use crate::resources::fixtures::{plan, sp500, stream};

fn rewrite(cm: &mut ConfigMap, edit: impl FnOnce(&mut WorkerConfig)) {
    let data = cm.data.as_mut().unwrap();
    let mut config: WorkerConfig = serde_json::from_str(&data[WORKER_CONFIG_KEY]).unwrap();
    edit(&mut config);
    data.insert(
        WORKER_CONFIG_KEY.into(),
        serde_json::to_string(&config).unwrap(),
    );
}

#[test]
fn reads_back_exactly_what_the_plan_wrote() {
    let p = plan(&stream("sp500", 4), &sp500());
    let cms: Vec<ConfigMap> = p.shards.iter().map(|s| config_map(&p, s)).collect();
    let prev = previous_assignment("sp500", &cms).unwrap();
    assert_eq!(prev.assignment, p.assignment);
    assert_eq!(prev.epoch, 1);
    assert!(prev.skipped.is_empty());
    assert_eq!(previous_assignment("sp500", &[]), None);
}

#[test]
fn tolerates_missing_and_broken_config_maps() {
    let p = plan(&stream("sp500", 4), &sp500());
    let mut cms: Vec<ConfigMap> = p.shards.iter().map(|s| config_map(&p, s)).collect();
    cms.remove(1);
    cms[1].data = Some(BTreeMap::from([(WORKER_CONFIG_KEY.into(), "{".into())]));
    let prev = previous_assignment("sp500", &cms).unwrap();
    assert_eq!(prev.assignment.shard_count(), 4);
    assert_eq!(prev.assignment.shards()[1], []);
    assert_eq!(
        prev.assignment.shards()[2],
        [],
        "unreadable: treated as missing"
    );
    assert_eq!(prev.assignment.shards()[3], p.assignment.shards()[3]);
    assert_eq!(prev.skipped.len(), 1);
    assert_eq!(prev.skipped[0].config_map, "sp500-shard-2");
    assert!(
        prev.skipped[0]
            .reason
            .contains("not a worker configuration")
    );

    let other = previous_assignment("nasdaq", &cms[..1]);
    assert_eq!(other, None, "another stream's ConfigMap is not ours");
}

#[test]
fn a_ticker_on_two_shards_stays_with_the_newer_one() {
    let p = plan(&stream("sp500", 2), &sp500());
    let mut cms: Vec<ConfigMap> = p.shards.iter().map(|s| config_map(&p, s)).collect();
    let moved = p.assignment.shards()[0][0].to_string();
    // An interrupted hand-over: shard 1 was written at epoch 2 with the ticker, shard 0 still
    // holds it at epoch 1.
    rewrite(&mut cms[1], |c| {
        c.tickers.push(moved.clone());
        c.tickers.sort();
        c.epoch = 2;
    });
    let prev = previous_assignment("sp500", &cms).unwrap();
    let owners = prev.assignment.owners();
    assert_eq!(owners[&Ticker::parse(&moved).unwrap()], 1);
    assert_eq!(prev.assignment.ticker_count(), 503);
    assert_eq!(prev.epoch, 2);

    // Same epoch: the lower index keeps it.
    rewrite(&mut cms[0], |c| c.epoch = 2);
    let prev = previous_assignment("sp500", &cms).unwrap();
    assert_eq!(prev.assignment.owners()[&Ticker::parse(&moved).unwrap()], 0);
}
