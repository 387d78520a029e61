use std::collections::BTreeMap;

use jiff::Timestamp;
use jiff::civil::{Date, date};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStatus, Pod, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use quotestream_api::TickerSet;
use quotestream_api::crd::{
    HistorySource, HistorySpec, HistoryStatus, IntradayHistory, IntradayInterval, WorkerTemplate,
};

use super::job::{self, JobInfo, JobPlan, JobState};
use super::outcome::{outcome, termination_message};
use super::plan::{Running, assess, progress, wanted};
use super::record::{Failure, MAX_FAILURE_GROUPS, Record, SeriesKey};
use crate::resources::fixtures::stream;
use crate::resources::meta::MAX_LABEL_VALUE;

fn history(daily: Option<&str>, intraday: Option<(IntradayInterval, &str)>) -> HistorySpec {
    HistorySpec {
        source: HistorySource::Yahoo,
        daily: daily.map(str::to_owned),
        intraday: intraday.map(|(interval, depth)| IntradayHistory {
            interval,
            depth: depth.to_owned(),
        }),
        base_url: None,
        alpaca: None,
        polygon: None,
        batch_size: 2,
        parallelism: 2,
        requests_per_hour: None,
        resources: None,
    }
}

fn tickers(list: &[&str]) -> TickerSet {
    TickerSet::from_symbols(list).unwrap()
}

const TODAY: Date = date(2026, 12, 6);

fn now() -> Timestamp {
    "2026-12-06T13:00:00Z".parse().unwrap()
}

fn daily() -> SeriesKey {
    SeriesKey::new("1d", HistorySource::Yahoo)
}

#[test]
fn depths_become_the_first_day_wanted() {
    let h = history(Some("2y"), Some((IntradayInterval::M1, "7d")));
    let s = wanted(&h, TODAY).unwrap();
    assert_eq!(s.len(), 2);
    assert_eq!(
        (s[0].key.interval.as_str(), s[0].from),
        ("1d", date(2024, 12, 6))
    );
    assert_eq!(
        (s[1].key.interval.as_str(), s[1].from),
        ("1m", date(2026, 11, 29))
    );
    let mut bad = h.clone();
    bad.daily = Some("2 years".into());
    assert!(
        wanted(&bad, TODAY)
            .unwrap_err()
            .to_string()
            .starts_with("spec.history.daily \"2 years\" is not a depth")
    );
}

#[test]
fn a_new_stream_backfills_every_ticker_in_batches_within_its_parallelism() {
    let h = history(Some("2y"), None);
    let series = wanted(&h, TODAY).unwrap();
    let all = tickers(&["AAPL", "MSFT", "NVDA", "TSLA", "AMZN"]);
    let a = assess(&h, &series, &all, &Record::default(), &[], 1, now());
    assert_eq!((a.done, a.pending, a.running, a.failed), (0, 5, 0, 0));
    // batchSize 2, parallelism 2: two Jobs now, in ticker order; the fifth waits for a slot.
    let batches: Vec<Vec<String>> = a.start.iter().map(|b| b.tickers.clone()).collect();
    assert_eq!(batches, [vec!["AAPL", "AMZN"], vec!["MSFT", "NVDA"]]);
    assert_eq!(progress(&a, 5), "0/5 done, 5 queued");
}

#[test]
fn adding_one_ticker_backfills_only_that_ticker() {
    let h = history(Some("2y"), Some((IntradayInterval::M5, "30d")));
    let series = wanted(&h, TODAY).unwrap();
    let mut record = Record::default();
    for s in &series {
        for t in ["AAPL", "MSFT"] {
            record.complete(&s.key, t, s.from);
        }
    }
    let grown = tickers(&["AAPL", "MSFT", "NVDA"]);
    let a = assess(&h, &series, &grown, &record, &[], 1, now());
    assert_eq!((a.done, a.pending), (2, 1));
    let started: Vec<(String, Vec<String>)> = a
        .start
        .iter()
        .map(|b| (b.series.key.interval.clone(), b.tickers.clone()))
        .collect();
    assert_eq!(
        started,
        [
            ("1d".to_owned(), vec!["NVDA".to_owned()]),
            ("5m".to_owned(), vec!["NVDA".to_owned()])
        ]
    );
}

#[test]
fn history_done_yesterday_is_still_done_today_and_a_deeper_spec_runs_again() {
    let h = history(Some("2y"), None);
    let yesterday = wanted(&h, date(2026, 12, 5)).unwrap();
    let mut record = Record::default();
    record.complete(&yesterday[0].key, "AAPL", yesterday[0].from);
    let list = tickers(&["AAPL"]);
    let today = wanted(&h, TODAY).unwrap();
    let a = assess(&h, &today, &list, &record, &[], 1, now());
    assert_eq!((a.done, a.start.len()), (1, 0));
    // A shallower depth is covered by what is there.
    let shallower = history(Some("1y"), None);
    let s = wanted(&shallower, TODAY).unwrap();
    assert_eq!(
        assess(&shallower, &s, &list, &record, &[], 1, now()).done,
        1
    );
    // A deeper one is not: the ticker runs again, from the new first day.
    let deeper = history(Some("5y"), None);
    let s = wanted(&deeper, TODAY).unwrap();
    let a = assess(&deeper, &s, &list, &record, &[], 1, now());
    assert_eq!(a.done, 0);
    assert_eq!(a.start[0].series.from, date(2021, 12, 7));
    assert_eq!(a.start[0].tickers, ["AAPL"]);
    // So does another vendor's.
    let mut polygon = h.clone();
    polygon.source = HistorySource::Polygon;
    let s = wanted(&polygon, TODAY).unwrap();
    assert_eq!(
        assess(&polygon, &s, &list, &record, &[], 1, now())
            .start
            .len(),
        1
    );
}

#[test]
fn running_tickers_are_not_started_twice_and_occupy_a_slot() {
    let h = history(Some("2y"), None);
    let series = wanted(&h, TODAY).unwrap();
    let list = tickers(&["AAPL", "MSFT", "NVDA", "TSLA"]);
    let running = [Running {
        name: "s-history-1".into(),
        key: daily(),
        tickers: vec!["AAPL".into(), "MSFT".into()],
    }];
    let a = assess(&h, &series, &list, &Record::default(), &running, 1, now());
    assert_eq!((a.pending, a.running), (4, 2));
    assert_eq!(a.start.len(), 1, "parallelism 2, one running");
    assert_eq!(a.start[0].tickers, ["NVDA", "TSLA"]);
    assert_eq!(progress(&a, 4), "0/4 done, 2 running, 2 queued");
}

#[test]
fn a_failed_ticker_waits_an_hour_unless_the_spec_changes() {
    let h = history(Some("2y"), None);
    let series = wanted(&h, TODAY).unwrap();
    let list = tickers(&["AAPL", "ZZZZ"]);
    let mut record = Record::default();
    record.complete(&series[0].key, "AAPL", series[0].from);
    let failed_at: Timestamp = "2026-12-06T12:30:00Z".parse().unwrap();
    record.fail(
        &series[0].key,
        "ZZZZ",
        Failure {
            from: series[0].from,
            reason: "ZZZZ: no data (HTTP 404)".into(),
            at: failed_at,
            job: "s-history-2".into(),
            generation: 1,
        },
    );
    let a = assess(&h, &series, &list, &record, &[], 1, now());
    assert_eq!((a.done, a.failed, a.pending, a.start.len()), (1, 1, 0, 0));
    assert_eq!(a.next_retry, Some("2026-12-06T13:30:00Z".parse().unwrap()));
    assert_eq!(progress(&a, 2), "1/2 done, 1 failed");
    // An hour after the failure it is due again.
    let later: Timestamp = "2026-12-06T13:30:00Z".parse().unwrap();
    assert_eq!(
        assess(&h, &series, &list, &record, &[], 1, later)
            .start
            .len(),
        1
    );
    // A new generation of the spec (a fixed baseUrl, say) retries at once.
    assert_eq!(
        assess(&h, &series, &list, &record, &[], 2, now())
            .start
            .len(),
        1
    );
    // A success afterwards ends the failure.
    record.complete(&series[0].key, "ZZZZ", series[0].from);
    assert_eq!(assess(&h, &series, &list, &record, &[], 1, now()).done, 2);
}

#[test]
fn the_record_round_trips_through_the_status_grouped_and_forgets_removed_tickers() {
    let mut record = Record::default();
    let key = daily();
    record.complete(&key, "MSFT", date(2024, 12, 6));
    record.complete(&key, "AAPL", date(2024, 12, 6));
    record.complete(&key, "NVDA", date(2024, 12, 7));
    // The earlier first day of two stays.
    record.complete(&key, "NVDA", date(2024, 12, 8));
    let failure = Failure {
        from: date(2024, 12, 6),
        reason: "HTTP 404".into(),
        at: now(),
        job: "j".into(),
        generation: 3,
    };
    record.fail(&key, "ZZZZ", failure.clone());
    record.fail(&key, "YYYY", failure);
    let (completed, failures) = record.to_lists();
    assert_eq!(completed.len(), 2);
    assert_eq!(completed[0].from, "2024-12-06");
    assert_eq!(completed[0].tickers, ["AAPL", "MSFT"]);
    assert_eq!(completed[1].tickers, ["NVDA"]);
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].tickers, ["YYYY", "ZZZZ"]);
    assert_eq!(failures[0].generation, 3);

    let status = HistoryStatus {
        completed,
        failures,
        ..HistoryStatus::default()
    };
    let mut back = Record::from_status(Some(&status));
    assert_eq!(back, record);
    back.retain(&tickers(&["AAPL", "ZZZZ"]), std::slice::from_ref(&key));
    let (completed, failures) = back.to_lists();
    assert_eq!(completed[0].tickers, ["AAPL"]);
    assert_eq!(failures[0].tickers, ["ZZZZ"]);
    back.retain(
        &tickers(&["AAPL"]),
        &[SeriesKey::new("1m", HistorySource::Yahoo)],
    );
    assert_eq!(
        back,
        Record::default(),
        "a series no longer asked for is forgotten"
    );
}

#[test]
fn failures_stay_bounded_in_the_status() {
    let mut record = Record::default();
    for i in 0..200 {
        record.fail(
            &daily(),
            &format!("T{i:03}"),
            Failure {
                from: date(2024, 12, 6),
                reason: format!("reason {i}"),
                at: now(),
                job: "j".into(),
                generation: 1,
            },
        );
    }
    let (_, failures) = record.to_lists();
    assert_eq!(failures.len(), MAX_FAILURE_GROUPS);
    let merged = failures.last().unwrap();
    assert_eq!(merged.tickers.len(), 200 - (MAX_FAILURE_GROUPS - 1));
    assert!(
        merged.reason.starts_with("151 more tickers failed"),
        "{}",
        merged.reason
    );
    // Every ticker is still recorded as failed (none is retried early).
    let back = Record::from_status(Some(&HistoryStatus {
        failures,
        ..HistoryStatus::default()
    }));
    assert!((0..200).all(|i| back.failure(&daily(), &format!("T{i:03}")).is_some()));
}

fn info(state: JobState, list: &[&str]) -> JobInfo {
    JobInfo {
        name: "s-history-0badcafe".into(),
        key: daily(),
        from: date(2024, 12, 6),
        tickers: list.iter().map(|t| (*t).to_owned()).collect(),
        generation: 1,
        state,
        condition: (state == JobState::Failed)
            .then(|| "BackoffLimitExceeded: Job has reached the specified backoff limit".into()),
        recorded: false,
    }
}

#[test]
fn a_failed_job_fails_the_tickers_its_message_names_with_their_line() {
    let j = info(
        JobState::Failed,
        &["AAPL", "BRK.B", "^GSPC", "BTC-USD", "AAPLX"],
    );
    // The backfill's own output (worker/src/main.rs): a line per ticker, then the list.
    let message = "AAPL: done; 503 bars stored (503 new, 0 changed, 0 unchanged); 0 null bars (gaps)\n\
        ^GSPC: FAILED (yahoo answered 404 Not Found); 0 bars stored\n\
        AAPLX: FAILED (no data between 2024-12-06 and 2026-12-06.); 0 bars stored\n\
        backfill: 5 tickers, 3 done, 2 failed, in 4.1s (0 waits for the request budget)\n\
        error: backfill failed for 2 of 5 tickers (a rerun resumes where this one stopped):\n  \
        ^GSPC: yahoo answered 404 Not Found\n  \
        AAPLX: no data between 2024-12-06 and 2026-12-06.";
    let o = outcome(&j, Some(message));
    assert_eq!(
        o.done,
        ["AAPL", "BRK.B", "BTC-USD"],
        "the list is complete: the others are done"
    );
    assert_eq!(
        o.failed,
        BTreeMap::from([
            (
                "AAPLX".to_owned(),
                "AAPLX: no data between 2024-12-06 and 2026-12-06.".to_owned()
            ),
            (
                "^GSPC".to_owned(),
                "^GSPC: yahoo answered 404 Not Found".to_owned()
            ),
        ])
    );
}

#[test]
fn without_the_complete_list_each_line_counts_and_done_lines_are_done() {
    let j = info(JobState::Failed, &["AAPL", "MSFT", "NVDA"]);
    // The list's head was lost: the per-ticker lines decide, the last one wins.
    let message = "AAPL: done; 10 bars stored\nMSFT: FAILED (HTTP 500); 0 bars stored\n  MSFT: HTTP 500 after 6 retries";
    let o = outcome(&j, Some(message));
    assert_eq!(o.done, ["AAPL", "NVDA"]);
    assert_eq!(o.failed["MSFT"], "MSFT: HTTP 500 after 6 retries");
    // The list says 2 but holds 1: incomplete, so the lines decide.
    let message = "error: backfill failed for 2 of 3 tickers (a rerun resumes where this one stopped):\n  MSFT: HTTP 500";
    let o = outcome(&j, Some(message));
    assert_eq!(o.done, ["AAPL", "NVDA"]);
    assert_eq!(o.failed.len(), 1);
    // Only done lines, yet the Job failed: the unnamed one failed.
    let o = outcome(
        &j,
        Some("AAPL: done; 1 bars stored\nMSFT: done; 1 bars stored"),
    );
    assert_eq!(o.done, ["AAPL", "MSFT"]);
    assert!(
        o.failed["NVDA"].starts_with("BackoffLimitExceeded"),
        "{:?}",
        o.failed
    );
}

#[test]
fn a_failure_naming_no_ticker_fails_them_all() {
    let j = info(JobState::Failed, &["AAPL", "MSFT"]);
    let o = outcome(&j, Some("error: DATABASE_URL: connection refused"));
    assert!(o.done.is_empty());
    assert_eq!(
        o.failed["AAPL"],
        "BackoffLimitExceeded: Job has reached the specified backoff limit; error: DATABASE_URL: connection refused"
    );
    let o = outcome(&j, None);
    assert!(
        o.failed["MSFT"].contains("no termination message: kubectl logs job/s-history-0badcafe")
    );
    let done = outcome(&info(JobState::Complete, &["AAPL", "MSFT"]), None);
    assert_eq!((done.done.len(), done.failed.len()), (2, 0));
}

#[test]
fn a_message_that_may_be_cut_fails_the_unnamed_tickers_too() {
    let j = info(JobState::Failed, &["AAPL", "MSFT"]);
    let mut message: String = (0..90).map(|i| format!("  X{i}: HTTP 500\n")).collect();
    message.push_str("  MSFT: HTTP 404");
    let o = outcome(&j, Some(&message));
    assert_eq!(o.failed["MSFT"], "MSFT: HTTP 404");
    assert!(
        o.failed.contains_key("AAPL"),
        "AAPL may have been named in a lost line"
    );
}

#[test]
fn the_termination_message_is_the_latest_failed_pods() {
    let pod = |created: &str, message: Option<&str>, exit_code: i32| Pod {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            creation_timestamp: Some(Time(created.parse().unwrap())),
            ..Default::default()
        },
        status: Some(PodStatus {
            container_statuses: Some(vec![ContainerStatus {
                name: "backfill".into(),
                state: Some(ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code,
                        message: message.map(str::to_owned),
                        reason: Some("Error".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let pods = [
        pod("2026-12-06T10:00:00Z", Some("first attempt"), 1),
        pod("2026-12-06T10:05:00Z", Some("second attempt"), 1),
        pod("2026-12-06T10:09:00Z", Some("ok"), 0),
    ];
    assert_eq!(
        termination_message(&pods).as_deref(),
        Some("second attempt")
    );
    assert_eq!(
        termination_message(&[pod("2026-12-06T10:00:00Z", None, 137)]).as_deref(),
        Some("Error")
    );
    assert_eq!(termination_message(&[]), None);
}

fn job_for(tickers: &[String], table: Option<&str>) -> Job {
    let s = stream("sp500", 1);
    let owner = k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
        api_version: "quotes.opa.io/v1alpha1".into(),
        kind: "QuoteStream".into(),
        name: "sp500".into(),
        uid: s.metadata.uid.clone().unwrap(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let key = daily();
    let worker = WorkerTemplate::default();
    job::job(&JobPlan {
        name: job::job_name("sp500", &key, tickers, "1"),
        namespace: "markets",
        stream: "sp500",
        owner: &owner,
        key: &key,
        from: date(2024, 12, 6),
        to: TODAY,
        tickers,
        generation: 4,
        image: "ghcr.io/quotestream/quotestream-worker:0.1.0",
        worker: &worker,
        resources: None,
        table,
        base_url: Some("http://127.0.0.1:9000"),
        env: Vec::new(),
    })
}

#[test]
fn the_job_runs_the_backfill_command_owned_by_the_stream_under_restricted_security() {
    let tickers = vec!["AAPL".to_owned(), "^GSPC".to_owned(), "BTC-USD".to_owned()];
    let j = job_for(&tickers, None);
    let spec = j.spec.as_ref().unwrap();
    assert_eq!(spec.backoff_limit, Some(job::BACKOFF_LIMIT));
    assert_eq!(spec.ttl_seconds_after_finished, Some(86_400));
    assert_eq!(spec.active_deadline_seconds, Some(6 * 3600));
    let owner = &j.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("QuoteStream", Some(true))
    );
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert_eq!(pod.enable_service_links, Some(false));
    assert_eq!(owner.block_owner_deletion, Some(true));
    let psc = pod.security_context.as_ref().unwrap();
    assert_eq!(
        (psc.run_as_non_root, psc.run_as_user),
        (Some(true), Some(65532))
    );
    let c = &pod.containers[0];
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(
        sc.capabilities.as_ref().unwrap().drop.as_deref(),
        Some(&["ALL".to_owned()][..])
    );
    assert_eq!(
        sc.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
        Some("RuntimeDefault")
    );
    assert_eq!(
        c.termination_message_policy.as_deref(),
        Some("FallbackToLogsOnError")
    );
    let limits = c.resources.as_ref().unwrap().limits.as_ref().unwrap();
    assert_eq!(limits["memory"].0, "512Mi");
    assert_eq!(
        c.command.as_ref().unwrap().join(" "),
        "quotestream-worker backfill --tickers AAPL,^GSPC,BTC-USD --from 2024-12-06 --to 2026-12-06 --interval 1d --source yahoo --base-url http://127.0.0.1:9000"
    );
    // The PostgreSQL sink's own table, when it has one.
    let other = job_for(&tickers, Some("market.quotes"));
    let command = other.spec.unwrap().template.spec.unwrap().containers[0]
        .command
        .clone()
        .unwrap();
    assert_eq!(command[command.len() - 2..], ["--table", "market.quotes"]);
    // Read back as the operator wrote it.
    let back = job::read(&j).unwrap();
    assert_eq!(back.tickers, tickers);
    assert_eq!(
        (back.from, back.generation, back.state),
        (date(2024, 12, 6), 4, JobState::Running)
    );
    // Pods are no shard workers: no shard label.
    let labels = spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .as_ref()
        .unwrap();
    assert!(!labels.contains_key("quotes.opa.io/shard"));
    assert_eq!(labels["quotes.opa.io/history"], "1d");
}

#[test]
fn a_finished_job_reads_back_with_its_condition() {
    let mut j = job_for(&["AAPL".to_owned()], None);
    let condition = |type_: &str, reason: &str| JobCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some("Job has reached the specified backoff limit".into()),
        ..Default::default()
    };
    j.status = Some(JobStatus {
        conditions: Some(vec![condition("Failed", "BackoffLimitExceeded")]),
        ..Default::default()
    });
    let back = job::read(&j).unwrap();
    assert_eq!(back.state, JobState::Failed);
    assert_eq!(
        back.condition.as_deref(),
        Some("BackoffLimitExceeded: Job has reached the specified backoff limit")
    );
    j.status = Some(JobStatus {
        conditions: Some(vec![condition("Complete", "CompletionsReached")]),
        ..Default::default()
    });
    assert_eq!(job::read(&j).unwrap().state, JobState::Complete);
    // A Job without the operator's annotations is not one of its backfills.
    j.metadata.annotations = None;
    assert!(job::read(&j).is_none());
}

#[test]
fn job_names_fit_a_label_and_differ_per_attempt() {
    let long = "a".repeat(63);
    let t = ["AAPL".to_owned()];
    let name = job::job_name(&long, &daily(), &t, "1");
    assert_eq!(name.len(), MAX_LABEL_VALUE);
    assert!(name.ends_with(&name[name.len() - 8..]) && name.contains("-history-"));
    assert_ne!(name, job::job_name(&long, &daily(), &t, "2"));
    let dashed = job::job_name(&format!("{}-x", "b".repeat(45)), &daily(), &t, "1");
    assert!(!dashed.contains("--"), "{dashed}");
}

#[test]
fn the_jobs_of_a_stream_share_its_request_budget() {
    let mut h = history(Some("2y"), None);
    h.parallelism = 4;
    assert_eq!(
        super::per_job_budget(&h),
        500.0,
        "yahoo's 2000 an hour over 4 Jobs"
    );
    h.source = HistorySource::Polygon;
    assert_eq!(super::per_job_budget(&h), 75.0);
    h.requests_per_hour = Some(2);
    assert_eq!(super::per_job_budget(&h), 1.0, "never below 1 an hour");
}

#[test]
fn yahoo_intraday_asks_two_days_less_than_its_limit_at_most() {
    let h = history(None, Some((IntradayInterval::M1, "30d")));
    let s = wanted(&h, TODAY).unwrap();
    assert_eq!(s[0].from, date(2026, 11, 8), "28 days back");
    let mut alpaca = h.clone();
    alpaca.source = HistorySource::Alpaca;
    assert_eq!(wanted(&alpaca, TODAY).unwrap()[0].from, date(2026, 11, 6));
}
