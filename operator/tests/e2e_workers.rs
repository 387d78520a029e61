//! End to end (SPEC §8): pods cannot run here (no container runtime), so the worker processes
//! that the operator's shard Deployments describe run as local processes, started by a small
//! kubelet (`support/kubelet.rs`) from those Deployments' command, env (Secrets resolved) and
//! mounted ConfigMap, against a real kube-apiserver, Redis and PostgreSQL.
//!
//! One stream goes through its life: two shards stream every ticker to Redis and PostgreSQL
//! with credentials only in Secrets; a scale to three shards starts one worker, hands the
//! moving tickers over without restarting the others and without a ticker going quiet; a
//! change of the interval rolls every shard make-before-break; deleting the stream stops every
//! worker cleanly (exit 0), with everything published on Redis also in PostgreSQL.
//!
//! The worker binary is not a dependency of this crate (Cargo builds only this package's
//! binaries for its tests): `cargo test --workspace --all-targets` (`make test`) builds it with
//! the rest; to run this test alone, `cargo build -p quotestream-worker` first.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use quotestream_testkit::{ControlPlane, PostgresServer, RedisServer, free_port};
use serde_json::{Value, json};
use support::kubelet::{Kubelet, KubeletConfig, Pod, StopReason};
use support::tape::{Heard, Tape};

const STREAM: &str = "e2e";
const NS: &str = "default";
const TICKERS: [&str; 12] = [
    "AAPL", "MSFT", "NVDA", "GOOGL", "AMZN", "META", "BRK.B", "JPM", "V", "XOM", "UNH", "TSLA",
];
const REDIS_PASSWORD: &str = "e2e-redis-secret";
/// Bound of every wait for the system to reach a state (they usually take well under 5 s).
const WAIT: Duration = Duration::from_secs(30);
/// The longest a ticker may go unpublished while its owner changes (see `assert_no_gap`).
const HANDOVER_GAP: Duration = Duration::from_secs(3);
const CONFIG_HASH: &str = "quotes.opa.io/config-hash";

/// `target/<profile>/quotestream-worker`, next to this test binary's `deps/` directory.
fn worker_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|profile| profile.join("quotestream-worker"));
    match bin {
        Some(bin) if bin.is_file() => bin,
        _ => {
            panic!("build the worker first: cargo build -p quotestream-worker (looked for {bin:?})")
        }
    }
}

/// The operator as a process, with the admin identity; its log goes to `log`.
struct Operator {
    child: Child,
    log: PathBuf,
}

impl Operator {
    fn start(cp: &ControlPlane, log: PathBuf) -> Self {
        let port = free_port().unwrap();
        let out = File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_quotestream-operator"))
            .args(["run", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--worker-image", "registry.local/quotestream-worker:e2e"])
            .env("KUBECONFIG", cp.kubeconfig("admin"))
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1") // a log file, not a terminal
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .unwrap();
        Self { child, log }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Everything a failure message needs.
struct World<'a> {
    cp: &'a ControlPlane,
    kubelet: &'a Kubelet,
    tape: &'a Tape,
    operator: &'a Operator,
}

impl World<'_> {
    fn diagnose(&self) -> String {
        format!(
            "{}tape problems: {:?}\noperator log (tail):\n{}",
            self.kubelet.describe(),
            self.tape.problems(),
            self.operator.log_tail()
        )
    }

    /// Polls `check` every 50 ms until it returns Some, or fails naming `what`.
    fn eventually<T>(&self, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(v) = check() {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {WAIT:?} waiting for {what}\n{}",
                self.diagnose()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kubectl(&self, args: &[&str]) -> Value {
        self.kubectl_with_input(args, None)
    }

    fn kubectl_with_input(&self, args: &[&str], input: Option<&str>) -> Value {
        let out = self.cp.kubectl_with_input("admin", args, input).unwrap();
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    fn apply(&self, obj: &Value) {
        self.kubectl_with_input(
            &["apply", "--server-side", "-f", "-"],
            Some(&obj.to_string()),
        );
    }

    fn get(&self, what: &str) -> Value {
        self.kubectl(&["get", what, "-n", NS, "-o", "json"])
    }

    /// shard → tickers, from the shard ConfigMaps.
    fn assignment(&self) -> BTreeMap<u32, BTreeSet<String>> {
        let selector = format!("quotes.opa.io/stream={STREAM}");
        let list = self.kubectl(&["get", "configmaps", "-n", NS, "-l", &selector, "-o", "json"]);
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|cm| {
                let shard = cm["metadata"]["labels"]["quotes.opa.io/shard"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                let config: Value =
                    serde_json::from_str(cm["data"]["worker.json"].as_str().unwrap()).unwrap();
                let tickers = config["tickers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_str().unwrap().to_owned())
                    .collect();
                (shard, tickers)
            })
            .collect()
    }

    fn stream_status(&self) -> Value {
        self.get(&format!("qs/{STREAM}"))["status"].clone()
    }

    /// The stream reports `shards` ready shards and Ready=True.
    fn wait_ready(&self, shards: u64) {
        self.eventually(
            &format!("status: {shards} ready shards, Ready=True"),
            || {
                let status = self.stream_status();
                let ready = status["conditions"]
                    .as_array()?
                    .iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True");
                (ready && status["readyShards"] == shards).then_some(())
            },
        );
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
}

fn owners(assignment: &BTreeMap<u32, BTreeSet<String>>) -> BTreeMap<String, u32> {
    assignment
        .iter()
        .flat_map(|(shard, tickers)| tickers.iter().map(|t| (t.clone(), *shard)))
        .collect()
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
                "redis": {"urlSecretRef": {"name": "redis-auth", "key": "url"}, "format": "cloudevents"},
                "postgres": {"dsnSecretRef": {"name": "quotes-db", "key": "dsn"}}
            }
        }
    })
}

fn secret(name: &str, key: &str, value: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS},
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
    let worker = worker_binary();
    let redis = RedisServer::start_with_password(REDIS_PASSWORD).unwrap();
    let pg = PostgresServer::start().unwrap();
    let dsn = pg.create_database("quotes").unwrap();
    let cp = ControlPlane::start().unwrap();
    cp.install_crd(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/quotestream.yaml"))
        .unwrap();
    let tape = Tape::record(&redis.url(), "quotes.realtime").unwrap();
    let logs = tempfile::tempdir().unwrap();
    let operator = Operator::start(&cp, logs.path().join("operator.log"));
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

    // 1. Two shards: every ticker streams to Redis (from its owner) and lands in PostgreSQL.
    let t1 = Instant::now();
    world.apply(&stream(2));
    let two = world.wait_pods(2, "two ready workers");
    assert_eq!(
        two.keys().collect::<Vec<_>>(),
        [&format!("{STREAM}-shard-0"), &format!("{STREAM}-shard-1")]
    );
    let before = owners(&world.assignment());
    assert_eq!(before.len(), TICKERS.len());
    world.wait_owned_as(&before, 3, t1);
    world.eventually("a row for every ticker in quotes.real_time", || {
        let symbols: BTreeSet<String> = rows(&pg).into_iter().map(|(s, _)| s).collect();
        (symbols.len() == TICKERS.len()).then_some(())
    });
    world.wait_ready(2);
    assert_credentials_are_secret_refs(&world, &[REDIS_PASSWORD, &dsn]);
    let streaming = t1.elapsed();

    // 2. Scale to three shards: one new worker; the two running ones keep their process and
    //    hand over ⌊12/3⌋ = 4 tickers with no ticker going quiet.
    let t2 = Instant::now();
    world.kubectl(&["scale", &format!("qs/{STREAM}"), "-n", NS, "--replicas=3"]);
    let three = world.wait_pods(3, "a third ready worker");
    let after_assignment = world.eventually("three shard ConfigMaps", || {
        Some(world.assignment()).filter(|a| a.len() == 3)
    });
    let after = owners(&after_assignment);
    let moved: BTreeSet<&String> = after
        .iter()
        .filter(|(t, s)| before[*t] != **s)
        .map(|(t, _)| t)
        .collect();
    assert_eq!(moved.len(), 4, "{before:?} -> {after:?}");
    assert!(moved.iter().all(|t| after[*t] == 2), "{after:?}");
    let settled = world.wait_owned_as(&after, 3, three[&format!("{STREAM}-shard-2")].started);
    let running: BTreeMap<String, Pod> = kubelet
        .running()
        .into_iter()
        .map(|p| (p.deployment.clone(), p))
        .collect();
    assert_eq!(running.len(), 3, "{running:#?}");
    for (deployment, pod) in &two {
        let now = &running[deployment];
        assert_eq!(
            (&now.name, now.pid),
            (&pod.name, pod.pid),
            "{deployment} kept its process through the reshard"
        );
        assert!(
            now.config_updates > pod.config_updates,
            "{deployment} got its new ticker list through the mounted file"
        );
    }
    let reshard_gap = assert_no_gap(&world, "reshard", t2, settled);
    let overlap = handover_overlaps(&tape.heard(), &before, &after, t2);
    let third_ready = three[&format!("{STREAM}-shard-2")].ready_at.unwrap() - t2;
    world.wait_ready(3);
    let resharding = t2.elapsed();

    // 3. A change beyond the ticker lists changes every shard's configuration hash, so every
    //    shard rolls (the kubelet replaces a pod make-before-break, as the Deployments'
    //    RollingUpdate with maxSurge 1 and maxUnavailable 0 does); the old workers drain and
    //    exit 0, and no ticker goes quiet.
    let t3 = Instant::now();
    let hash_before = three[&format!("{STREAM}-shard-0")].annotations[CONFIG_HASH].clone();
    world.kubectl(&[
        "patch",
        &format!("qs/{STREAM}"),
        "-n",
        NS,
        "--type=merge",
        "-p",
        r#"{"spec":{"interval":"300ms"}}"#,
    ]);
    let rolled = world.eventually("three new ready workers", || {
        let running = world.kubelet.running();
        let fresh = running.len() == 3
            && running.iter().all(|p| {
                p.ready_at.is_some()
                    && p.annotations[CONFIG_HASH] != hash_before
                    && !three.values().any(|old| old.pid == p.pid)
            });
        fresh.then_some(running)
    });
    let rolled_at = rolled.iter().map(|p| p.started).max().unwrap();
    let settled = world.wait_owned_as(&after, 3, rolled_at);
    let pods = kubelet.pods();
    for old in three.values() {
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
    world.wait_ready(3);
    let rolling = t3.elapsed();

    // 4. Deleting the stream: the garbage collector deletes the Deployments, the kubelet stops
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
        6,
        "2 + 1 started by the reshard + 3 by the rollout: {all:#?}"
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
        "e2e timings: setup {setup:?}, two shards streaming {streaming:?}, reshard {resharding:?} \
         (third worker ready after {third_ready:?}; largest gap {reshard_gap:?}; old owner's last quote minus new owner's first, per moved ticker: {overlap:?}), \
         rollout {rolling:?} (largest gap {rollout_gap:?}), delete {deleting:?}; \
         SIGTERM to exit {drains:?}; \
         {} quotes heard, {} rows; total {:?}",
        heard.len(),
        stored.len(),
        t0.elapsed()
    );
}
