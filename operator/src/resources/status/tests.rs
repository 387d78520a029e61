use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentSpec, DeploymentStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use quotestream_api::crd::SpecError;

use super::*;
use crate::resources::fixtures::{plan, stream, tickers};

fn at(secs: i64) -> Time {
    Time(Timestamp::from_second(secs).unwrap())
}

fn cond<'a>(s: &'a QuoteStreamStatus, type_: &str) -> &'a Condition {
    s.conditions.iter().find(|c| c.type_ == type_).unwrap()
}

fn ready(n: usize, of: usize) -> Vec<ShardObservation> {
    (0..of)
        .map(|i| ShardObservation {
            ready: i < n,
            rolled_out: i < n,
            stalled: false,
        })
        .collect()
}

#[test]
fn starting_then_ready_keeps_transition_times_conventional() {
    let mut s = stream("sp500", 2);
    let p = plan(&s, &tickers(&["AAPL", "MSFT", "NVDA"]));

    let first = planned_status(&s, &p, &[], &at(100));
    assert_eq!(first.observed_generation, Some(3));
    assert_eq!(
        first.selector.as_deref(),
        Some("quotes.opa.io/stream=sp500")
    );
    assert_eq!((first.ready_shards, first.tickers), (0, Some(3)));
    assert_eq!(first.shards.len(), 2);
    assert_eq!(first.shards[1].deployment, "sp500-shard-1");
    assert_eq!(first.shards.iter().map(|x| x.tickers).sum::<i32>(), 3);
    let a = first.assignment.as_ref().unwrap();
    assert_eq!((a.epoch, a.hash.as_str()), (1, p.fingerprint.as_str()));
    let r = cond(&first, READY);
    assert_eq!(
        (r.status.as_str(), r.reason.as_str()),
        ("False", SHARDS_STARTING)
    );
    assert_eq!(r.message, "0 of 2 shards ready");
    assert_eq!(r.observed_generation, Some(3));
    assert_eq!(cond(&first, PROGRESSING).status, "True");
    assert_eq!(cond(&first, DEGRADED).status, "False");

    s.status = Some(first);
    let half = planned_status(&s, &p, &ready(1, 2), &at(200));
    assert_eq!(half.ready_shards, 1);
    assert_eq!(
        cond(&half, READY).last_transition_time,
        at(100),
        "still False"
    );
    assert_eq!(cond(&half, READY).message, "1 of 2 shards ready");

    s.status = Some(half);
    let done = planned_status(&s, &p, &ready(2, 2), &at(300));
    assert_eq!(done.ready_shards, 2);
    let r = cond(&done, READY);
    assert_eq!(
        (r.status.as_str(), r.reason.as_str()),
        ("True", SHARDS_READY)
    );
    assert_eq!(r.last_transition_time, at(300));
    let pr = cond(&done, PROGRESSING);
    assert_eq!(
        (pr.status.as_str(), pr.reason.as_str()),
        ("False", SHARDS_READY)
    );
    assert_eq!(cond(&done, DEGRADED).last_transition_time, at(100));
}

#[test]
fn a_rollout_in_progress_is_ready_but_progressing() {
    let s = stream("s", 1);
    let p = plan(&s, &tickers(&["AAPL"]));
    let obs = [ShardObservation {
        ready: true,
        rolled_out: false,
        stalled: false,
    }];
    let st = planned_status(&s, &p, &obs, &at(1));
    assert_eq!(cond(&st, READY).status, "True");
    let pr = cond(&st, PROGRESSING);
    assert_eq!(
        (pr.status.as_str(), pr.reason.as_str()),
        ("True", SHARDS_ROLLING_OUT)
    );
}

#[test]
fn a_stalled_shard_degrades_the_stream_and_names_it() {
    let s = stream("s", 2);
    let p = plan(&s, &tickers(&["AAPL", "MSFT"]));
    let mut obs = ready(1, 2);
    obs[1].stalled = true;
    let st = planned_status(&s, &p, &obs, &at(1));
    let d = cond(&st, DEGRADED);
    assert_eq!(
        (d.status.as_str(), d.reason.as_str()),
        ("True", SHARDS_STALLED)
    );
    assert!(
        d.message.starts_with("s-shard-1 did not become ready"),
        "{}",
        d.message
    );
    assert_eq!(cond(&st, PROGRESSING).status, "False");
}

#[test]
fn a_plan_error_keeps_the_last_assignment_and_shows_its_reason() {
    let mut s = stream("s", 2);
    let p = plan(&s, &tickers(&["AAPL", "MSFT"]));
    s.status = Some(planned_status(&s, &p, &ready(2, 2), &at(1)));
    s.metadata.generation = Some(4);

    let err = PlanError::from(SpecError::ConfigMapListMissing {
        name: "sp500".into(),
        key: "tickers".into(),
    });
    let st = failed_status(&s, &err, &ready(2, 2), &at(2));
    assert_eq!(st.observed_generation, Some(4));
    assert_eq!(st.ready_shards, 2);
    assert_eq!(st.assignment, s.status.as_ref().unwrap().assignment);
    for type_ in [READY, PROGRESSING] {
        let c = cond(&st, type_);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "MissingConfigMap")
        );
        assert_eq!(c.observed_generation, Some(4));
    }
    let d = cond(&st, DEGRADED);
    assert_eq!(
        (d.status.as_str(), d.reason.as_str()),
        ("True", "MissingConfigMap")
    );
    assert_eq!(d.message, err.to_string());
    assert_eq!(d.last_transition_time, at(2));

    let list = PlanError::from(SpecError::NoTickers);
    let st = failed_status(&s, &list, &[], &at(3));
    assert_eq!(cond(&st, READY).reason, "TickerListInvalid");
    assert_eq!(st.ready_shards, 0);
}

#[test]
fn observes_deployment_readiness_and_rollout() {
    assert_eq!(observe(None), ShardObservation::default());
    let mut d = Deployment {
        spec: DeploymentSpec {
            replicas: Some(1),
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    };
    d.metadata.generation = Some(2);
    d.status = Some(DeploymentStatus {
        observed_generation: Some(2),
        replicas: Some(2),
        updated_replicas: Some(1),
        ready_replicas: Some(2),
        available_replicas: Some(2),
        ..DeploymentStatus::default()
    });
    let o = observe(Some(&d));
    assert!(
        o.ready && !o.rolled_out,
        "an old pod is still running: {o:?}"
    );

    d.status = Some(DeploymentStatus {
        observed_generation: Some(2),
        replicas: Some(1),
        updated_replicas: Some(1),
        ready_replicas: Some(1),
        available_replicas: Some(1),
        ..DeploymentStatus::default()
    });
    assert!(observe(Some(&d)).rolled_out);
    d.metadata.generation = Some(3);
    assert!(
        !observe(Some(&d)).rolled_out,
        "the controller has not seen the new spec"
    );

    d.status = Some(DeploymentStatus {
        conditions: Some(vec![DeploymentCondition {
            type_: Some("Progressing".into()),
            status: Some("False".into()),
            reason: Some("ProgressDeadlineExceeded".into()),
            ..DeploymentCondition::default()
        }]),
        ..DeploymentStatus::default()
    });
    let o = observe(Some(&d));
    assert!(o.stalled && !o.ready);
}

#[test]
fn a_scheduled_stream_shows_the_market_and_the_next_bound() {
    let mut s = stream("nyse", 1);
    let p = plan(&s, &tickers(&["AAPL", "MSFT"]));
    let without = planned_status(&s, &p, &ready(1, 1), &at(100));
    assert_eq!(without.market, None, "no schedule, no market status");

    s.spec.schedule = Some(quotestream_api::crd::Schedule::nyse_regular());
    let time = |t: &str| Time(t.parse::<Timestamp>().unwrap());
    // Sunday 2026-12-06: closed, Monday's open next.
    let sunday = planned_status(&s, &p, &ready(1, 1), &time("2026-12-06T15:00:00Z"));
    let market = sunday.market.unwrap();
    assert_eq!((market.state.as_str(), market.streaming), ("Closed", false));
    assert_eq!(market.next_open.as_deref(), Some("2026-12-07T14:30:00Z"));
    assert_eq!(market.next_close, None);
    // Monday in the session.
    let monday = planned_status(&s, &p, &ready(1, 1), &time("2026-12-07T15:00:00Z"));
    let market = monday.market.unwrap();
    assert_eq!((market.state.as_str(), market.streaming), ("Open", true));
    assert_eq!(market.next_close.as_deref(), Some("2026-12-07T21:00:00Z"));
    // Pre-market: the exchange's session, though this stream does not stream it.
    let early = planned_status(&s, &p, &ready(1, 1), &time("2026-12-07T12:00:00Z"));
    let market = early.market.unwrap();
    assert_eq!(
        (market.state.as_str(), market.streaming),
        ("PreMarket", false)
    );
    // A spec error keeps the market current too.
    let failed = failed_status(
        &s,
        &PlanError::from(SpecError::NoTickers),
        &[],
        &time("2026-12-07T15:00:00Z"),
    );
    assert_eq!(failed.market.unwrap().state, "Open");
}
