use quotestream_api::crd::{AssignmentStatus, HandoverStatus};
use quotestream_api::{QuoteStream, QuoteStreamStatus, TickerSet};

use std::time::Duration;

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

#[test]
fn a_ready_receiver_that_has_not_acknowledged_keeps_the_old_owners() {
    let all = sp500();
    let (five, _) = reconcile(&stream("sp500", 5), &all, &[]);
    let maps: Vec<_> = five.shards.iter().map(|s| config_map(&five, s)).collect();
    let (_, h) = reconcile(&with_status(stream("sp500", 2), &five), &all, &maps);
    let wait = Duration::from_secs(1);
    let timeout = Duration::from_secs(300);
    assert_eq!(
        h.decide(|_| true, |s| s != 1, wait, timeout),
        Release::Wait {
            not_ready: vec![],
            unacknowledged: vec![1]
        },
        "ready but still streaming its old list (kubelet has not refreshed its volume)"
    );
    assert_eq!(
        h.decide(|s| s != 0, |_| true, timeout * 2, timeout),
        Release::Wait {
            not_ready: vec![0],
            unacknowledged: vec![]
        },
        "never released to a shard that is not ready, however long it takes"
    );
    assert_eq!(
        h.decide(|_| true, |_| true, wait, timeout),
        Release::Acknowledged
    );
    assert_eq!(
        h.decide(|_| true, |s| s != 1, timeout, timeout),
        Release::TimedOut {
            unacknowledged: vec![1]
        },
        "an unreachable acknowledgement cannot hang a reshard"
    );
    assert_eq!(
        h.moving_tickers(),
        five.shards[2..]
            .iter()
            .map(|s| s.config.tickers.len())
            .sum::<usize>(),
        "shards 2..4's tickers are listed twice until the release"
    );
    assert_eq!(
        Handover::default().decide(|_| false, |_| false, wait, timeout),
        Release::Acknowledged,
        "nothing moves: nothing to wait for"
    );
}

#[test]
fn a_waiting_hand_over_is_in_the_status_until_the_release() {
    let all = sp500();
    let (five, _) = reconcile(&stream("sp500", 5), &all, &[]);
    let maps: Vec<_> = five.shards.iter().map(|s| config_map(&five, s)).collect();
    let (_, h) = reconcile(&with_status(stream("sp500", 2), &five), &all, &maps);
    let began: jiff::Timestamp = "2026-12-07T14:30:00.250Z".parse().unwrap();
    let timeout = Duration::from_secs(300);
    let wait = Release::Wait {
        not_ready: vec![0],
        unacknowledged: vec![0, 1],
    };
    let status = h.status(&wait, Some(began), timeout).unwrap();
    assert_eq!(
        status,
        HandoverStatus {
            moving_tickers: i32::try_from(h.moving_tickers()).unwrap(),
            receivers: vec![0, 1],
            not_ready: vec![0],
            // Shard 0 is listed once, as not ready.
            unacknowledged: vec![1],
            since: Some("2026-12-07T14:30:00Z".into()),
            release_by: Some("2026-12-07T14:35:00Z".into()),
        }
    );
    assert!(status.moving_tickers > 0);
    assert_eq!(
        h.status(&wait, Some(began), Duration::ZERO)
            .unwrap()
            .release_by,
        None,
        "acknowledgement off: released on readiness, no deadline"
    );
    assert_eq!(h.status(&Release::Acknowledged, Some(began), timeout), None);
    let timed_out = Release::TimedOut {
        unacknowledged: vec![1],
    };
    assert_eq!(h.status(&timed_out, Some(began), timeout), None);
    assert_eq!(
        Handover::default().status(&wait, Some(began), timeout),
        None,
        "nothing moves: no hand-over"
    );
}

mod two_phases {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::ConfigMap;
    use proptest::prelude::*;

    use super::*;

    /// ticker → the shards whose ConfigMap lists it.
    fn owners(maps: &[ConfigMap]) -> BTreeMap<String, BTreeSet<u32>> {
        let mut owners: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
        for (shard, list) in previous_assignment("sp500", maps).unwrap().listed {
            for t in list {
                owners
                    .entry(t.as_str().to_owned())
                    .or_default()
                    .insert(shard);
            }
        }
        owners
    }

    /// The shard ConfigMaps after the reconcile's first phase: the `first` shards rewritten,
    /// every other shard (removed ones included) as it was.
    fn phase_one(before: &[ConfigMap], plan: &StreamPlan, h: &Handover) -> Vec<ConfigMap> {
        let index = |cm: &ConfigMap| crate::resources::meta::shard_index(&cm.metadata);
        let mut maps: Vec<ConfigMap> = before
            .iter()
            .filter(|cm| index(cm).is_none_or(|i| !h.first.contains(&i)))
            .cloned()
            .collect();
        maps.extend(
            plan.shards
                .iter()
                .filter(|s| h.first.contains(&s.index))
                .map(|s| config_map(plan, s)),
        );
        maps
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Any reshard (and list edit) of a settled stream, written in two phases: while the
        /// receivers have not acknowledged, every ticker of the new set is listed — its old
        /// owner and its new one both list a moving ticker — and the state is stable (the next
        /// reconcile plans and waits the same); the release leaves exactly the plan.
        #[test]
        fn no_ticker_is_ever_listed_by_nobody(
            from in 1i32..12,
            to in 1i32..12,
            keep in 40usize..=60,
            add in 0usize..20,
        ) {
            let pool: Vec<_> = sp500().iter().map(|t| t.as_str().to_owned()).collect();
            let symbols = |r: std::ops::Range<usize>| {
                let v: Vec<&str> = pool[r].iter().map(String::as_str).collect();
                crate::resources::fixtures::tickers(&v)
            };
            let before_set = symbols(0..60);
            let after_set = symbols(60 - keep..60 + add);
            let (settled, _) = reconcile(&stream("sp500", from), &before_set, &[]);
            let before: Vec<_> = settled.shards.iter().map(|s| config_map(&settled, s)).collect();
            let old_owner: BTreeMap<String, u32> = owners(&before)
                .into_iter()
                .map(|(t, s)| (t, *s.first().unwrap()))
                .collect();

            let resharded = with_status(stream("sp500", to), &settled);
            let (plan, h) = reconcile(&resharded, &after_set, &before);
            let during = phase_one(&before, &plan, &h);
            let listed = owners(&during);
            for (i, shard) in plan.shards.iter().enumerate() {
                for t in &shard.config.tickers {
                    let owners = &listed[t];
                    prop_assert!(owners.contains(&(i as u32)), "{t}: its new owner {i} lists it");
                    if let Some(old) = old_owner.get(t) && *old != i as u32 {
                        prop_assert!(owners.contains(old), "{t}: its old owner {old} still lists it");
                        prop_assert!(h.receivers.contains(&(i as u32)), "{t}: shard {i} must acknowledge it");
                    }
                }
            }
            let (again, h2) = reconcile(&with_status(stream("sp500", to), &plan), &after_set, &during);
            prop_assert_eq!(&again.assignment, &plan.assignment, "the plan is stable while waiting");
            prop_assert_eq!(&h2.receivers, &h.receivers, "and so is the set of receivers");

            let after: Vec<_> = plan.shards.iter().map(|s| config_map(&plan, s)).collect();
            let (_, done) = reconcile(&with_status(stream("sp500", to), &plan), &after_set, &after);
            prop_assert_eq!(done, Handover::default(), "after the release nothing moves");
            prop_assert!(owners(&after).values().all(|s| s.len() == 1));
        }
    }
}
