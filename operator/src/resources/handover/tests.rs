use quotestream_api::crd::AssignmentStatus;
use quotestream_api::{QuoteStream, QuoteStreamStatus, TickerSet};

use super::*;
use crate::resources::configmap::config_map;
use crate::resources::fixtures::{sp500, stream};
use crate::resources::plan::OperatorSettings;
use crate::resources::previous::previous_assignment;

/// The stream as the operator sees it after writing `plan`'s status.
fn with_status(mut s: QuoteStream, plan: &StreamPlan) -> QuoteStream {
    s.status = Some(QuoteStreamStatus {
        assignment: Some(AssignmentStatus {
            epoch: plan.epoch,
            hash: plan.fingerprint.clone(),
        }),
        ..QuoteStreamStatus::default()
    });
    s
}

/// One reconcile's plan and hand-over, given the shard ConfigMaps as they are.
fn reconcile(
    s: &QuoteStream,
    tickers: &TickerSet,
    maps: &[k8s_openapi::api::core::v1::ConfigMap],
) -> (StreamPlan, Handover) {
    let previous = previous_assignment("sp500", maps);
    let plan = StreamPlan::new(
        s,
        tickers,
        previous.as_ref().map(|p| &p.assignment),
        &OperatorSettings::default(),
    )
    .unwrap();
    let handover = Handover::new(&plan, previous.as_ref());
    (plan, handover)
}

fn set(shards: &[u32]) -> BTreeSet<u32> {
    shards.iter().copied().collect()
}

#[test]
fn a_new_stream_writes_everything_at_once() {
    let (plan, h) = reconcile(&stream("sp500", 3), &sp500(), &[]);
    assert_eq!(h.first, set(&[0, 1, 2]));
    assert!(h.receivers.is_empty());
    assert!(
        h.may_release(|_| false),
        "nobody streams yet: nothing to wait for"
    );
    let maps: Vec<_> = plan.shards.iter().map(|s| config_map(&plan, s)).collect();
    let (_, again) = reconcile(&with_status(stream("sp500", 3), &plan), &sp500(), &maps);
    assert_eq!(
        again,
        Handover::default(),
        "a settled stream writes in any order"
    );
}

#[test]
fn a_scale_up_waits_for_the_new_shards_in_every_reconcile_until_they_are_ready() {
    let all = sp500();
    let (three, _) = reconcile(&stream("sp500", 3), &all, &[]);
    let mut maps: Vec<_> = three.shards.iter().map(|s| config_map(&three, s)).collect();
    let scaled = with_status(stream("sp500", 5), &three);

    let (five, h) = reconcile(&scaled, &all, &maps);
    assert_eq!(
        h.first,
        set(&[3, 4]),
        "the new shards get their lists first"
    );
    assert_eq!(h.receivers, set(&[3, 4]));
    assert!(
        !h.may_release(|s| s < 3),
        "the new shards are not ready yet"
    );

    // The first step is done: shards 3 and 4 are written, 0..2 still list everything. The next
    // reconcile (its own writes trigger it) plans the same and still waits.
    maps.extend(five.shards[3..].iter().map(|s| config_map(&five, s)));
    let (again, h) = reconcile(&with_status(stream("sp500", 5), &five), &all, &maps);
    assert_eq!(again.assignment, five.assignment, "the plan is stable");
    assert_eq!(h.receivers, set(&[3, 4]), "still handing over");
    assert!(!h.may_release(|s| s < 3));
    assert!(
        h.may_release(|_| true),
        "once they are ready the others let go"
    );

    let done: Vec<_> = five.shards.iter().map(|s| config_map(&five, s)).collect();
    let (_, h) = reconcile(&with_status(stream("sp500", 5), &five), &all, &done);
    assert_eq!(h, Handover::default(), "hand-over complete");
}

#[test]
fn a_scale_down_waits_for_the_remaining_shards_that_take_over() {
    let all = sp500();
    let (five, _) = reconcile(&stream("sp500", 5), &all, &[]);
    let maps: Vec<_> = five.shards.iter().map(|s| config_map(&five, s)).collect();
    let (two, h) = reconcile(&with_status(stream("sp500", 2), &five), &all, &maps);
    assert_eq!(two.shards.len(), 2);
    assert_eq!(h.first, set(&[0, 1]));
    assert_eq!(
        h.receivers,
        set(&[0, 1]),
        "they take over shards 2..4's tickers"
    );
    assert!(
        !h.may_release(|s| s != 1),
        "shard 1 is down: shards 2..4 keep streaming"
    );
    assert!(h.may_release(|_| true));
}
