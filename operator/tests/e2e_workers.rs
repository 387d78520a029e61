//! End to end (SPEC §8): pods cannot run here (no container runtime), so the worker processes
//! that the operator's shard Deployments describe run as local processes, started by a small
//! kubelet (`support/kubelet.rs`) from those Deployments' command, env (Secrets resolved) and
//! mounted ConfigMap, against a real kube-apiserver, Redis and PostgreSQL.
//!
//! One stream goes through its life: three shards stream every ticker to Redis and PostgreSQL
//! with credentials only in Secrets; `kubectl scale` to five shards starts two workers and
//! `kubectl patch` of `spec.shards` down to two stops three, each time moving exactly the tickers
//! the shared assignment function moves (the minimum), never leaving a ticker unowned in the
//! shard ConfigMaps nor unpublished on Redis, without restarting the shards that stay, and
//! without a worker warning about a configuration it cannot apply; a change of the interval
//! rolls every shard make-before-break; deleting the stream stops every worker cleanly (exit 0),
//! with everything published on Redis also in PostgreSQL.
//!
//! The kubelet refreshes mounted ConfigMaps only every [`CONFIG_REFRESH`] (as a real kubelet's
//! periodic sync does, later still), so a shard that takes tickers over sees its new list well
//! after its Deployment is ready: the hand-over is acknowledged (the operator reads the list in
//! force from the workers' `/assignment`), and the workers' own logs show that no ticker is
//! ever owned by no worker (`ownership_gaps`), which the operator's
//! `quotestream_handover_gap_seconds` reports too.
//!
//! The worker binary is not a dependency of this crate (Cargo builds only this package's
//! binaries for its tests): `cargo test --workspace --all-targets` (`make test`) builds it with
//! the rest; to run this test alone, `cargo build -p quotestream-worker` first.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use quotestream_testkit::{ControlPlane, PostgresServer, RedisServer};
use serde_json::{Value, json};
use support::cluster::{
    CONFIG_HASH, assignment, control_plane_with_crd, eventually, kubectl, wait_stream_ready,
};
use support::kubelet::{Kubelet, KubeletConfig, Pod, StopReason};
use support::operator::Operator;
use support::reshard::{Lists, Reshard, owners};
use support::tape::{Heard, Tape};

const STREAM: &str = "e2e";
const NS: &str = "default";
const TICKERS: [&str; 12] = [
    "AAPL", "MSFT", "NVDA", "GOOGL", "AMZN", "META", "BRK.B", "JPM", "V", "XOM", "UNH", "TSLA",
];
const REDIS_PASSWORD: &str = "e2e-redis-secret";
/// Bound of every wait for the system to reach a state (they usually take well under 5 s).
const WAIT: Duration = Duration::from_secs(30);
/// How often the test kubelet refreshes mounted ConfigMaps (a real one: `syncFrequency`, 1 min).
const CONFIG_REFRESH: Duration = Duration::from_secs(1);
/// The longest a ticker may go unpublished while its owner changes (see `assert_no_gap`).
const HANDOVER_GAP: Duration = Duration::from_secs(3);
/// What a worker logs when `worker.json` changed in a way it cannot apply without a restart:
/// never on a reshard.
const CANNOT_APPLY: &str = "configuration changed beyond what a running worker applies";

/// Everything a failure message needs.
struct World<'a> {
    cp: &'a ControlPlane,
    kubelet: &'a Kubelet,
    tape: &'a Tape,
    operator: &'a Operator,
}

/// What a reshard left behind.
struct Resharded {
    lists: Lists,
    pods: BTreeMap<String, Pod>,
    /// The largest time a ticker went unpublished during the hand-over.
    gap: Duration,
    /// How many tickers changed owner.
    moved: usize,
    /// For each moved ticker: old owner's last quote minus new owner's first, in ms.
    overlap: BTreeMap<String, i128>,
    took: Duration,
}

impl World<'_> {
    fn diagnose(&self) -> String {
        format!(
            "{}tape problems: {:?}\noperator log (tail):\n{}",
            self.kubelet.describe(),
            self.tape.problems(),
            self.operator.log()
        )
    }

    /// Polls `check` until it returns Some, or fails naming `what` with the whole picture.
    fn eventually<T>(&self, what: &str, check: impl FnMut() -> Option<T>) -> T {
        eventually(what, WAIT, || self.diagnose(), check)
    }

    fn kubectl(&self, args: &[&str]) -> Value {
        kubectl(self.cp, args, None)
    }

    fn apply(&self, obj: &Value) {
        support::cluster::apply(self.cp, obj);
    }

    fn get(&self, what: &str) -> Value {
        self.kubectl(&["get", what, "-n", NS, "-o", "json"])
    }

    /// shard → tickers, from the shard ConfigMaps.
    fn assignment(&self) -> Lists {
        assignment(self.cp, NS, STREAM)
    }

    /// The stream reports `shards` ready shards and Ready=True.
    fn wait_ready(&self, shards: u64) {
        wait_stream_ready(self.cp, NS, STREAM, shards, || self.diagnose());
    }

    /// The running, ready pod of each shard Deployment, once there are exactly `shards`.
    fn wait_pods(&self, shards: usize, what: &str) -> BTreeMap<String, Pod> {
        self.eventually(what, || {
            let running = self.kubelet.running();
            let all_ready = running.iter().all(|p| p.ready_at.is_some());
            (running.len() == shards && all_ready).then(|| {
                running
                    .into_iter()
                    .map(|p| (p.deployment.clone(), p))
                    .collect()
            })
        })
    }

    /// Waits until every ticker's last `n` quotes came from its owner in `owners` (the old
    /// owner stopped, the new one streams), and returns when that was seen.
    fn wait_owned_as(&self, owners: &BTreeMap<String, u32>, n: usize, since: Instant) -> Instant {
        self.eventually("every ticker streamed by its owner only", || {
            let heard = self.tape.heard();
            owners
                .iter()
                .all(|(ticker, shard)| {
                    let last: Vec<&Heard> = heard
                        .iter()
                        .filter(|h| &h.ticker == ticker && h.at >= since)
                        .rev()
                        .take(n)
                        .collect();
                    last.len() == n && last.iter().all(|h| h.shard == *shard)
                })
                .then(Instant::now)
        })
    }

    /// Changes the shard count from `before.len()` to `to` with `command` and checks the
    /// reshard end to end: the shard ConfigMaps at every observed step (no ticker unowned) and
    /// at the end (exactly `rebalance`, the minimum moved); the shards that stay keep their
    /// process and read their new list from the mounted file; new shards start, removed ones
    /// drain and exit 0; no ticker goes quiet on Redis.
    fn reshard(
        &self,
        command: &[&str],
        before: &Lists,
        running: &BTreeMap<String, Pod>,
        to: usize,
    ) -> Resharded {
        let from = before.len();
        let what = format!("{command:?} ({from} -> {to} shards)");
        let plan = Reshard::plan(before, to);
        let t = Instant::now();
        self.kubectl(command);
        // status.handover, if a poll sees the hand-over waiting (it may be over between two).
        let mut waiting: Option<Value> = None;
        let lists = self.eventually(&format!("{what}: rebalance(before, tickers, {to})"), || {
            if waiting.is_none() {
                let status = &self.get(&format!("quotestream/{STREAM}"))["status"];
                waiting = status.get("handover").filter(|h| !h.is_null()).cloned();
            }
            let observed = self.assignment();
            if let Err(e) = plan.check(&observed) {
                panic!("{what}: {e}\n{}", self.diagnose());
            }
            (observed == plan.after).then_some(observed)
        });
        assert_eq!(
            plan.moved.len(),
            plan.minimum,
            "{what}: the minimum moved: {before:?} -> {lists:?}"
        );
        let pods = self.wait_pods(to, &format!("{what}: {to} ready workers"));
        let shard = |i: usize| format!("{STREAM}-shard-{i}");
        for i in 0..from.min(to) {
            let (was, now) = (&running[&shard(i)], &pods[&shard(i)]);
            assert_eq!(
                (&now.name, now.pid),
                (&was.name, was.pid),
                "{what}: {} kept its process",
                shard(i)
            );
        }
        let all = self.kubelet.pods();
        for i in to..from {
            let exit = all
                .iter()
                .find(|p| p.pid == running[&shard(i)].pid)
                .and_then(|p| p.exit.clone())
                .unwrap();
            assert_eq!(
                (exit.reason, exit.code, exit.killed),
                (StopReason::Deleted, Some(0), false),
                "{what}: {} drained and exited 0 on SIGTERM",
                shard(i)
            );
        }
        let started = (from..to).map(|i| pods[&shard(i)].started).max();
        let settled = self.wait_owned_as(&owners(&lists), 3, started.unwrap_or(t));
        // Streaming as `lists` says means that each shard that stays has read its new list.
        let now: BTreeMap<String, Pod> = self
            .kubelet
            .running()
            .into_iter()
            .map(|p| (p.deployment.clone(), p))
            .collect();
        for i in (0..from.min(to)).filter(|i| before[&(*i as u32)] != lists[&(*i as u32)]) {
            assert!(
                now[&shard(i)].config_updates > running[&shard(i)].config_updates,
                "{what}: {} got its new ticker list through the mounted file",
                shard(i)
            );
        }
        let gap = assert_no_gap(self, &what, t, settled);
        let overlap = handover_overlaps(&self.tape.heard(), &owners(before), &owners(&lists), t);
        self.wait_ready(to as u64);
        if let Some(h) = &waiting {
            assert!(
                h["movingTickers"].as_u64() > Some(0)
                    && h["receivers"].as_array().is_some_and(|r| !r.is_empty()),
                "{what}: a waiting hand-over names what moves and where: {h}"
            );
        }
        let status = &self.get(&format!("quotestream/{STREAM}"))["status"];
        assert!(
            status.get("handover").is_none_or(Value::is_null),
            "{what}: the hand-over is over, so status.handover is removed: {status}"
        );
        eprintln!(
            "{what}: status.handover while waiting: {}",
            waiting.map_or_else(|| "not polled in time".to_owned(), |h| h.to_string())
        );
        Resharded {
            moved: plan.moved.len(),
            lists,
            pods,
            gap,
            overlap,
            took: t.elapsed(),
        }
    }
}

/// Per ticker, how long no worker owned it between its first owner's start and `until`, from
/// the workers' logs: a worker owns its list from `worker running` (`list=`), gains and
/// releases tickers with `ticker list updated without restart` (`gained=`, `released=`), and
/// releases everything at `shutdown requested` (its source stops then). Each line is logged
/// after the change it reports is in force, and a gaining shard logs before it acknowledges.
fn ownership_gaps(kubelet: &Kubelet, until: jiff::Timestamp) -> BTreeMap<String, Duration> {
    // (time, ticker, +1 gained / -1 released)
    let mut changes: Vec<(jiff::Timestamp, String, i32)> = Vec::new();
    for pod in kubelet.pods() {
        let mut owned: BTreeSet<String> = BTreeSet::new();
        for line in kubelet.log(&pod.name).lines() {
            let Some(at) = line
                .split_whitespace()
                .next()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            else {
                continue;
            };
            let field = |name: &str| -> Vec<String> {
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix(name))
                    .map(|v| {
                        v.split(',')
                            .filter(|t| !t.is_empty())
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let (gained, released) = if line.contains("worker running") {
                (field("list="), Vec::new())
            } else if line.contains("ticker list updated without restart") {
                (field("gained="), field("released="))
            } else if line.contains("shutdown requested") {
                (Vec::new(), owned.iter().cloned().collect())
            } else {
                continue;
            };
            for t in gained {
                owned.insert(t.clone());
                changes.push((at, t, 1));
            }
            for t in released {
                owned.remove(&t);
                changes.push((at, t, -1));
            }
        }
    }
    // Gains before releases at the same instant: a hand-over logged in one microsecond is one.
    changes.sort_by(|a, b| (a.0, &a.1, -a.2).cmp(&(b.0, &b.1, -b.2)));
    let mut owners: BTreeMap<String, (i32, Option<jiff::Timestamp>)> = BTreeMap::new();
    let mut gaps: BTreeMap<String, Duration> = BTreeMap::new();
    for (at, ticker, delta) in changes {
        let (count, unowned_since) = owners.entry(ticker.clone()).or_insert((0, None));
        let gap = gaps.entry(ticker).or_default();
        if let Some(since) = unowned_since.take() {
            *gap += Duration::try_from(at.duration_since(since)).unwrap_or_default();
        }
        *count += delta;
        if *count == 0 {
            *unowned_since = Some(at);
        }
    }
    for (ticker, (_, unowned_since)) in owners {
        if let Some(since) = unowned_since {
            *gaps.entry(ticker).or_default() +=
                Duration::try_from(until.duration_since(since)).unwrap_or_default();
        }
    }
    gaps
}

/// The largest time between two consecutive quotes of a ticker heard between `from` and `to`
/// (the gap that spans `from` counts), per ticker.
fn largest_gaps(heard: &[Heard], from: Instant, to: Instant) -> BTreeMap<String, Duration> {
    let mut last: BTreeMap<&str, Instant> = BTreeMap::new();
    let mut gaps: BTreeMap<String, Duration> = BTreeMap::new();
    for h in heard.iter().filter(|h| h.at <= to) {
        if let Some(prev) = last.insert(&h.ticker, h.at)
            && h.at >= from
        {
            let gap = gaps.entry(h.ticker.clone()).or_default();
            *gap = (*gap).max(h.at - prev);
        }
    }
    gaps
}

/// While ownership moves (a reshard, a rollout), every ticker must keep being published: the
/// new owner streams it before (or right after) the old owner lets it go. The bound is not a
/// performance figure but a correctness one: a ticker that nobody owns goes quiet until
/// something else happens, far longer than this. What it allows for is the time the hand-over
/// legitimately takes here: the kubelet's sync (200 ms), the new worker's start (connecting to
/// Redis and PostgreSQL, its first tick), the old worker's reload (100 ms), one interval, and a
/// loaded 2-core machine's scheduling.
fn assert_no_gap(world: &World<'_>, what: &str, from: Instant, to: Instant) -> Duration {
    let gaps = largest_gaps(&world.tape.heard(), from, to);
    assert_eq!(
        gaps.len(),
        TICKERS.len(),
        "{what}: every ticker is heard during the hand-over: {gaps:?}"
    );
    let (ticker, worst) = gaps.iter().max_by_key(|(_, g)| **g).unwrap();
    assert!(
        *worst <= HANDOVER_GAP,
        "{what}: {ticker} went unpublished for {worst:?} (bound {HANDOVER_GAP:?}); gaps {gaps:?}\n{}",
        world.diagnose()
    );
    *worst
}

/// For each ticker that changed owner: its old owner's last quote minus its new owner's first,
/// in milliseconds. Positive: both published it for that long (allowed: the sinks are
/// idempotent); negative: nobody did.
fn handover_overlaps(
    heard: &[Heard],
    before: &BTreeMap<String, u32>,
    after: &BTreeMap<String, u32>,
    since: Instant,
) -> BTreeMap<String, i128> {
    let ms = |d: Duration| i128::try_from(d.as_millis()).unwrap();
    after
        .iter()
        .filter(|(t, s)| before[*t] != **s)
        .map(|(ticker, new)| {
            let of = |shard: u32| {
                heard
                    .iter()
                    .filter(move |h| h.at >= since && &h.ticker == ticker && h.shard == shard)
                    .map(|h| h.at)
            };
            let first_new = of(*new).min().unwrap();
            let last_old = of(before[ticker]).max().unwrap_or(since);
            let overlap = if last_old >= first_new {
                ms(last_old - first_new)
            } else {
                -ms(first_new - last_old)
            };
            (ticker.clone(), overlap)
        })
        .collect()
}

fn stream(shards: u32) -> Value {
    json!({
        "apiVersion": "quotes.opa.io/v1alpha1", "kind": "QuoteStream",
        "metadata": {"name": STREAM, "namespace": NS},
        "spec": {
            "tickers": TICKERS, "shards": shards, "interval": "200ms",
            "source": {"type": "synthetic"},
            "sinks": {
                // BRK.B is one of TICKERS: opt in to the extended ticker pattern on Redis
                // (contract 004 as written keeps share classes off by default).
                "redis": {"urlSecretRef": {"name": "redis-auth", "key": "url"}, "format": "cloudevents",
                          "allowShareClasses": true},
                "postgres": {"dsnSecretRef": {"name": "quotes-db", "key": "dsn"}}
            }
        }
    })
}

fn secret(name: &str, key: &str, value: &str) -> Value {
    // Labelled for streams: the operator's default Secret policy (docs/security.md).
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS,
           "labels": {"quotes.opa.io/stream-access": "true"}},
           "stringData": {key: value}})
}

/// The Deployment passes credentials only as references to the Secrets, never as values.
fn assert_credentials_are_secret_refs(world: &World<'_>, secrets: &[&str]) {
    let d = world.get(&format!("deployment/{STREAM}-shard-0"));
    let env = d["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap();
    let from_secret = |name: &str| {
        env.iter().find(|e| e["name"] == name).unwrap()["valueFrom"]["secretKeyRef"].clone()
    };
    assert_eq!(
        from_secret("REDIS_URL"),
        json!({"name": "redis-auth", "key": "url", "optional": false})
    );
    assert_eq!(
        from_secret("DATABASE_URL"),
        json!({"name": "quotes-db", "key": "dsn", "optional": false})
    );
    let cm = world.get(&format!("configmap/{STREAM}-shard-0"));
    for text in [d.to_string(), cm.to_string()] {
        for s in secrets {
            assert!(!text.contains(s), "a credential leaked into {text}");
        }
    }
}

/// `(ticker, quote time)` of every row, times as on the wire (milliseconds, UTC).
fn rows(pg: &PostgresServer) -> BTreeSet<(String, String)> {
    let out = pg
        .psql(
            "quotes",
            r#"SELECT symbol || ' ' || to_char("timestamp" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') FROM quotes.real_time"#,
        )
        .unwrap_or_default();
    out.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(s, t)| (s.to_owned(), t.to_owned()))
        .collect()
}

#[test]
fn shard_deployments_run_as_workers_that_reshard_roll_and_stop_cleanly() {
    let t0 = Instant::now();
    let worker = support::worker_binary();
    let redis = RedisServer::start_with_password(REDIS_PASSWORD).unwrap();
    let pg = PostgresServer::start().unwrap();
    let dsn = pg.create_database("quotes").unwrap();
    let cp = control_plane_with_crd();
    let tape = Tape::record(&redis.url(), "quotes.realtime").unwrap();
    let operator = Operator::admin_acknowledging(&cp);
    let kubelet = Kubelet::start(KubeletConfig {
        kubeconfig: cp.kubeconfig("admin"),
        namespace: NS.into(),
        selector: format!("quotes.opa.io/stream={STREAM}"),
        programs: BTreeMap::from([("quotestream-worker".to_owned(), worker)]),
        // Each pod's own port (the Deployment's 0.0.0.0:8080 is per network namespace), and a
        // reload period below the kubelet's sync so that a new ticker list applies at once.
        extra_args: |port| {
            [
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--reload-every",
                "100ms",
            ]
            .map(str::to_owned)
            .to_vec()
        },
        config_refresh: CONFIG_REFRESH,
    })
    .unwrap();
    let world = World {
        cp: &cp,
        kubelet: &kubelet,
        tape: &tape,
        operator: &operator,
    };
    world.apply(&secret("redis-auth", "url", &redis.url()));
    world.apply(&secret("quotes-db", "dsn", &dsn));
    let setup = t0.elapsed();

    // 1. Three shards: every ticker streams to Redis (from its owner) and lands in PostgreSQL.
    let t1 = Instant::now();
    world.apply(&stream(3));
    let three = world.wait_pods(3, "three ready workers");
    assert_eq!(
        three.keys().cloned().collect::<Vec<_>>(),
        (0..3)
            .map(|i| format!("{STREAM}-shard-{i}"))
            .collect::<Vec<_>>()
    );
    let lists = world.assignment();
    assert_eq!(owners(&lists).len(), TICKERS.len(), "{lists:?}");
    world.wait_owned_as(&owners(&lists), 3, t1);
    world.eventually("a row for every ticker in quotes.real_time", || {
        let symbols: BTreeSet<String> = rows(&pg).into_iter().map(|(s, _)| s).collect();
        (symbols.len() == TICKERS.len()).then_some(())
    });
    world.wait_ready(3);
    assert_credentials_are_secret_refs(&world, &[REDIS_PASSWORD, &dsn]);
    let streaming = t1.elapsed();

    // 2. `kubectl scale` to five shards (the scale subresource): two new workers; the three
    //    running ones hand over the tickers rebalance moves, keeping their process.
    let replicas = format!("qs/{STREAM}");
    let up = world.reshard(
        &["scale", &replicas, "-n", NS, "--replicas=5"],
        &lists,
        &three,
        5,
    );
    // 3. `kubectl patch` of spec.shards down to two: three workers drain and stop; the two
    //    that stay take their tickers over without a restart.
    let down = world.reshard(
        &[
            "patch",
            &replicas,
            "-n",
            NS,
            "--type=merge",
            "-p",
            r#"{"spec":{"shards":2}}"#,
        ],
        &up.lists,
        &up.pods,
        2,
    );
    let two = &down.pods;
    // The workers applied both reshards in full: nobody warned about a change it could not
    // apply (the shard count and the rate-limit share change on every reshard; an interval
    // change, below, is one it cannot apply and does warn about while its pod rolls).
    for p in &kubelet.pods() {
        let log = kubelet.log(&p.name);
        assert!(
            !log.contains(CANNOT_APPLY),
            "{} warned about a reshard:\n{log}",
            p.name
        );
    }
    let survivor = kubelet.log(&three[&format!("{STREAM}-shard-0")].name);
    assert!(
        survivor
            .matches("ticker list updated without restart")
            .count()
            >= 2,
        "shard 0 reloaded its list on both reshards:\n{survivor}"
    );

    // 4. A change beyond the ticker lists changes every shard's configuration hash, so every
    //    shard rolls (the kubelet replaces a pod make-before-break, as the Deployments'
    //    RollingUpdate with maxSurge 1 and maxUnavailable 0 does); the old workers drain and
    //    exit 0, and no ticker goes quiet.
    let t3 = Instant::now();
    let hash_before = two[&format!("{STREAM}-shard-0")].annotations[CONFIG_HASH].clone();
    world.kubectl(&[
        "patch",
        &format!("qs/{STREAM}"),
        "-n",
        NS,
        "--type=merge",
        "-p",
        r#"{"spec":{"interval":"300ms"}}"#,
    ]);
    let rolled = world.eventually("two new ready workers", || {
        let running = world.kubelet.running();
        let fresh = running.len() == 2
            && running.iter().all(|p| {
                p.ready_at.is_some()
                    && p.annotations[CONFIG_HASH] != hash_before
                    && !two.values().any(|old| old.pid == p.pid)
            });
        fresh.then_some(running)
    });
    let rolled_at = rolled.iter().map(|p| p.started).max().unwrap();
    let settled = world.wait_owned_as(&owners(&down.lists), 3, rolled_at);
    let pods = kubelet.pods();
    for old in two.values() {
        let exit = pods
            .iter()
            .find(|p| p.pid == old.pid)
            .and_then(|p| p.exit.clone())
            .unwrap();
        assert_eq!(
            (exit.reason, exit.code, exit.killed),
            (StopReason::Replaced, Some(0), false),
            "{} drained and exited 0 on SIGTERM",
            old.name
        );
    }
    let rollout_gap = assert_no_gap(&world, "rollout", t3, settled);
    world.wait_ready(2);
    let rolling = t3.elapsed();

    // Every ticker had an owner from the first worker's start until now, by the workers' own
    // account (their logs), and the operator measured no gap for any ticker it handed over.
    let ownership = ownership_gaps(&kubelet, jiff::Timestamp::now());
    assert!(
        ownership.values().all(Duration::is_zero),
        "a ticker was owned by no worker (workers' logs): {ownership:?}\n{}",
        world.diagnose()
    );
    assert_eq!(ownership.len(), TICKERS.len(), "{ownership:?}");
    let metrics = operator.metrics().unwrap_or_default();
    let series = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(-1.0)
    };
    let measured = series("quotestream_handover_gap_seconds_count");
    let at_zero = series("quotestream_handover_gap_seconds_bucket{le=\"0\"}");
    let gap_sum = series("quotestream_handover_gap_seconds_sum");
    assert!(
        measured >= (up.moved + down.moved) as f64 && at_zero == measured && gap_sum == 0.0,
        "the operator measured every handed-over ticker with a zero gap: count {measured}, le=0 {at_zero}, sum {gap_sum}\n{metrics}"
    );
    let acknowledged = series("quotestream_handover_tickers_total{result=\"acknowledged\"}");
    assert_eq!(acknowledged, measured, "no hand-over timed out:\n{metrics}");

    // 5. Deleting the stream: the garbage collector deletes the Deployments, the kubelet stops
    //    the workers, and each drains and exits 0.
    let t4 = Instant::now();
    world.kubectl(&["delete", &format!("qs/{STREAM}"), "-n", NS, "--wait=false"]);
    world.eventually("every worker stopped", || {
        kubelet.running().is_empty().then_some(())
    });
    world.eventually("shard objects garbage-collected", || {
        world.assignment().is_empty().then_some(())
    });
    let deleting = t4.elapsed();
    for p in &rolled {
        let exit = kubelet
            .pods()
            .into_iter()
            .find(|x| x.name == p.name)
            .and_then(|x| x.exit)
            .unwrap();
        assert_eq!(
            (exit.reason, exit.code, exit.killed),
            (StopReason::Deleted, Some(0), false),
            "{} drained and exited 0 on SIGTERM",
            p.name
        );
    }
    let all = kubelet.pods();
    let drains: Vec<Duration> = all
        .iter()
        .filter_map(|p| p.exit.as_ref()?.after_sigterm)
        .collect();
    assert_eq!(
        all.len(),
        7,
        "3 + 2 started by the scale-up + 2 by the rollout: {all:#?}"
    );
    assert!(
        all.iter().all(|p| p
            .exit
            .as_ref()
            .is_some_and(|e| e.reason != StopReason::Crashed)),
        "no worker crashed:\n{}",
        world.diagnose()
    );
    // PostgreSQL: each (symbol, timestamp) once, and every quote published on Redis is stored
    // (the workers drained their queues before exiting).
    let stored = rows(&pg);
    let counts = pg
        .psql(
            "quotes",
            r#"SELECT count(*) || ' ' || count(DISTINCT (symbol, "timestamp")) FROM quotes.real_time"#,
        )
        .unwrap();
    let (total, distinct) = counts.split_once(' ').unwrap();
    assert_eq!(total, distinct, "a (symbol, timestamp) stored twice");
    let heard = tape.heard();
    let missing: Vec<&Heard> = heard
        .iter()
        .filter(|h| !stored.contains(&(h.ticker.clone(), h.time.clone())))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} quotes published on Redis are not in PostgreSQL, e.g. {:?}",
        missing.len(),
        heard.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(tape.problems().is_empty(), "{:?}", tape.problems());
    assert!(
        kubelet.events().is_empty(),
        "the kubelet saw no failure: {:#?}",
        kubelet.events()
    );

    eprintln!(
        "e2e timings: setup {setup:?}, three shards streaming {streaming:?}; \
         operator's quotestream_handover_gap_seconds: {measured} tickers, sum {gap_sum} s; \
         3 -> 5 {:?} (largest gap {:?}; old owner's last quote minus new owner's first, per moved ticker, ms: {:?}); \
         5 -> 2 {:?} (largest gap {:?}; overlaps {:?}); \
         rollout {rolling:?} (largest gap {rollout_gap:?}), delete {deleting:?}; \
         SIGTERM to exit {drains:?}; {} quotes heard, {} rows; total {:?}",
        up.took,
        up.gap,
        up.overlap,
        down.took,
        down.gap,
        down.overlap,
        heard.len(),
        stored.len(),
        t0.elapsed()
    );
}
