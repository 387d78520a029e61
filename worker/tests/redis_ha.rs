//! The Redis sink against Redis beyond one server, all real `redis-server` processes: a
//! Sentinel set and a 3-master Cluster. A master is killed (SIGKILL) in the middle of the
//! stream; the sink follows the failover, counts what it lost, and publishing resumes. The
//! time from the kill to the first quote through the new master is measured and printed (the
//! numbers in docs/worker.md come from these runs).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod support;

use std::collections::BTreeSet;
use std::io::BufReader;
use std::net::TcpStream;
use std::ops::RangeInclusive;
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use quotestream_api::crd::RedisSink as RedisSpec;
use quotestream_testkit::{RedisClusterSet, RedisSentinelSet};
use quotestream_worker::quote::{Quote, RawQuote, validate};
use quotestream_worker::sinks::redis::RedisConfig;
use serde_json::{Value, json};
use support::redis_sink::RunningSink;

const CHANNEL: &str = "quotes.realtime";
/// Bound on every wait (forming, failover, resuming): a failure says what did not happen.
const WAIT: Duration = Duration::from_secs(30);
/// The stream's cadence: one quote per tick.
const TICK: Duration = Duration::from_millis(5);
const BASE_MS: i64 = 1_768_919_415_000;
/// The sink's queue: a few hundred quotes.
const QUEUE_BYTES: usize = 100_000;
/// The sink's drain deadline when its queue closes.
const DRAIN: Duration = Duration::from_secs(2);

/// Quote number `seq` (its volume carries the number, so a subscriber knows which it got).
fn quote(seq: u64) -> Quote {
    let ts = jiff::Timestamp::from_millisecond(BASE_MS + i64::try_from(seq).unwrap()).unwrap();
    validate(
        RawQuote {
            ticker: "AAPL".into(),
            timestamp: ts,
            price: 185.5,
            volume: seq as f64,
            bid: None,
            ask: None,
            open: None,
            high: None,
            low: None,
            source: "yfinance",
        },
        ts,
    )
    .unwrap()
}

/// The sink as the worker builds it from `spec.sinks.redis` = `spec`.
fn start(spec: Value) -> RunningSink {
    RunningSink::queued(0, QUEUE_BYTES).run(config(&spec), DRAIN)
}

/// Like [`start`], with quotes `queued` before the sink runs, so that a batch is its first
/// event.
async fn start_with_queued(spec: Value, queued: &[u64]) -> RunningSink {
    let sink = RunningSink::queued(0, QUEUE_BYTES);
    for seq in queued {
        sink.send(vec![quote(*seq)]).await;
    }
    sink.run(config(&spec), DRAIN)
}

fn config(spec: &Value) -> RedisConfig {
    let spec: RedisSpec = serde_json::from_value(spec.clone()).unwrap();
    RedisConfig::from_spec(
        &spec,
        &std::collections::HashMap::new(),
        "/quotestream/markets/sp500/shard-0".into(),
    )
    .unwrap()
}

/// A subscriber on the node at `port` (`SUBSCRIBE`, or `SSUBSCRIBE` for sharded Pub/Sub),
/// reading in a thread of its own: the quote numbers it receives, with when. It ends when the
/// node goes away.
fn subscribe(port: u16, command: &str) -> Receiver<(u64, Instant)> {
    let (tx, rx) = channel();
    let (reader, parser) = subscription(port, command).expect("the node takes the subscription");
    std::thread::spawn(move || {
        read_messages(reader, parser, &tx);
    });
    rx
}

/// Like [`subscribe`], subscribing again whenever the connection is closed (Sentinel closes
/// the promoted replica's client connections so that clients look for the new master), until
/// the node has refused connections for two seconds.
fn subscribe_again_and_again(port: u16, command: &'static str) -> Receiver<(u64, Instant)> {
    let (tx, rx) = channel();
    let (reader, parser) = subscription(port, command).expect("the node takes the subscription");
    std::thread::spawn(move || {
        if !read_messages(reader, parser, &tx) {
            return;
        }
        let mut refused_since = None;
        loop {
            match subscription(port, command) {
                Some((reader, parser)) => {
                    refused_since = None;
                    if !read_messages(reader, parser, &tx) {
                        return;
                    }
                }
                None => {
                    let since = *refused_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > Duration::from_secs(2) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    });
    rx
}

type Subscription = (BufReader<TcpStream>, redis::Parser);

/// Connects to the node at `port` and subscribes to `CHANNEL`; `None` when it refuses.
fn subscription(port: u16, command: &str) -> Option<Subscription> {
    let stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    let mut writer = stream.try_clone().ok()?;
    std::io::Write::write_all(
        &mut writer,
        &redis::cmd(command).arg(CHANNEL).get_packed_command(),
    )
    .ok()?;
    let mut reader = BufReader::new(stream);
    let mut parser = redis::Parser::new();
    // The confirmation comes first: once it is read the subscription is in place.
    let confirmation = parser.parse_value(&mut reader).ok()?;
    format!("{confirmation:?}")
        .contains("ubscribe")
        .then_some((reader, parser))
}

/// Forwards the quote numbers of the messages until the connection ends; false when the test
/// no longer listens.
fn read_messages(
    mut reader: BufReader<TcpStream>,
    mut parser: redis::Parser,
    tx: &std::sync::mpsc::Sender<(u64, Instant)>,
) -> bool {
    while let Ok(value) = parser.parse_value(&mut reader) {
        let redis::Value::Array(parts) = value else {
            continue;
        };
        let Some(redis::Value::BulkString(payload)) = parts.last() else {
            continue;
        };
        let Ok(message) = serde_json::from_slice::<Value>(payload) else {
            continue;
        };
        if let Some(seq) = message["volume"].as_f64()
            && tx.send((seq as u64, Instant::now())).is_err()
        {
            return false;
        }
    }
    true
}

/// What the subscribers received so far (quote numbers), and when the first one above `after`
/// arrived.
#[derive(Default)]
struct Received {
    seqs: BTreeSet<u64>,
    first_after: Option<Instant>,
}

impl Received {
    fn take(&mut self, subscribers: &[Receiver<(u64, Instant)>], after: Option<u64>) {
        for rx in subscribers {
            while let Ok((seq, at)) = rx.try_recv() {
                self.seqs.insert(seq);
                if after.is_some_and(|a| seq > a) && self.first_after.is_none_or(|f| at < f) {
                    self.first_after = Some(at);
                }
            }
        }
    }
}

/// Measured around one master kill.
struct Failover {
    /// From the SIGKILL to the first quote a subscriber received through the new master.
    resumed_after: Duration,
    /// From the SIGKILL until the topology named the new master (polled every ~50 ms).
    promoted_after: Duration,
    /// The quotes handed to the sink before the SIGKILL that no subscriber had heard yet: in
    /// flight when the master died (in the sink's queue, on the wire, or inside the master).
    in_flight_at_kill: RangeInclusive<u64>,
}

/// Streams quotes through `sink` while `kill` kills a master and `promoted` says when its
/// replacement is in place; checks the accounting and returns the timings.
async fn stream_through_a_failover(
    sink: &RunningSink,
    subscribers: &[Receiver<(u64, Instant)>],
    kill: impl FnOnce(),
    mut promoted: impl FnMut() -> bool,
) -> (Failover, u64, Received) {
    let mut received = Received::default();
    let mut tick = tokio::time::interval(TICK);
    let mut seq = 0;
    // Before the kill: the stream flows.
    let flowing = Instant::now();
    while received.seqs.len() < 50 {
        assert!(
            flowing.elapsed() < WAIT,
            "quotes never reached the subscribers before the failover (published {}, dropped {}, publish errors {})",
            sink.published(CHANNEL),
            sink.dropped(),
            sink.metrics
                .redis_publish_errors
                .with_label_values(&[CHANNEL])
                .get()
        );
        tick.tick().await;
        seq += 1;
        sink.send(vec![quote(seq)]).await;
        received.take(subscribers, None);
    }
    let before = seq;
    received.take(subscribers, None);
    let heard = received.seqs.last().copied().unwrap_or(0);
    kill();
    let killed = Instant::now();
    let mut promoted_at = None;
    let mut last_poll = Instant::now();
    while received.first_after.is_none() || promoted_at.is_none() {
        assert!(
            killed.elapsed() < WAIT,
            "no quote through a new master within {WAIT:?} of the kill (promoted: {promoted_at:?}, published {}, dropped {})",
            sink.published(CHANNEL),
            sink.dropped()
        );
        tick.tick().await;
        seq += 1;
        sink.send(vec![quote(seq)]).await;
        received.take(subscribers, Some(before));
        if promoted_at.is_none() && last_poll.elapsed() >= Duration::from_millis(50) {
            last_poll = Instant::now();
            if promoted() {
                promoted_at = Some(Instant::now());
            }
        }
    }
    // And it keeps flowing.
    let resumed = received.seqs.len();
    while received.seqs.len() < resumed + 50 {
        assert!(
            killed.elapsed() < WAIT * 2,
            "the stream did not keep flowing"
        );
        tick.tick().await;
        seq += 1;
        sink.send(vec![quote(seq)]).await;
        received.take(subscribers, Some(before));
    }
    let timings = Failover {
        resumed_after: received.first_after.unwrap() - killed,
        promoted_after: promoted_at.unwrap() - killed,
        in_flight_at_kill: heard + 1..=before,
    };
    (timings, seq, received)
}

/// Nothing lost silently: every quote sent was counted published or counted dropped, and the
/// quotes sent once the stream had resumed all arrived. With `every_published_heard: Some(in
/// flight at the kill)`, also each quote was received by a subscriber or counted as dropped —
/// except the few in flight at the SIGKILL: Pub/Sub is at-most-once, and a master that
/// confirms a PUBLISH and dies before it has written the message to its subscribers (or to
/// its replica) loses it with no client able to know. Not with Sentinel at all: a consumer
/// misses what is published between the promotion, which closes its connection, and its
/// subscribing again.
async fn assert_accounted(
    sink: RunningSink,
    subscribers: &[Receiver<(u64, Instant)>],
    sent: u64,
    mut received: Received,
    every_published_heard: Option<RangeInclusive<u64>>,
) -> u64 {
    let metrics = sink.metrics.clone();
    sink.stop(WAIT).await;
    let published = metrics.redis_publishes.with_label_values(&[CHANNEL]).get();
    let dropped = support::redis_sink::dropped(&metrics);
    assert_eq!(
        published + dropped,
        sent,
        "every quote is counted: {published} published + {dropped} dropped"
    );
    // The last confirmed quotes reach the subscribers within a moment of their confirmation.
    let last: Vec<u64> = (sent - 20..=sent).collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !last.iter().all(|s| received.seqs.contains(s)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        received.take(subscribers, None);
    }
    let missing_last: Vec<&u64> = last.iter().filter(|s| !received.seqs.contains(s)).collect();
    assert!(
        missing_last.is_empty(),
        "quotes sent after the stream resumed were not received: {missing_last:?}"
    );
    if let Some(in_flight_at_kill) = every_published_heard {
        let missing: Vec<u64> = (1..=sent)
            .filter(|s| !received.seqs.contains(s) && !in_flight_at_kill.contains(s))
            .collect();
        assert!(
            missing.len() as u64 <= dropped,
            "{} quotes never reached a subscriber but only {dropped} were counted dropped (published {published} of {sent}); first missing: {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
    }
    dropped
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_the_sink_follows_a_failover_after_the_master_is_killed() {
    let mut set = RedisSentinelSet::start().unwrap();
    let Some(master) = set.master_index() else {
        panic!("the Sentinels name no master of the set:\n{}", set.logs());
    };
    let replica = 1 - master;
    let replica_port = set.nodes[replica].port();
    // One subscriber on each node (PUBLISH is not replicated: only the master's hear it until
    // the failover, then the promoted replica's, subscribed again after Sentinel closed them).
    let subscribers = vec![
        subscribe(set.nodes[master].port(), "SUBSCRIBE"),
        subscribe_again_and_again(replica_port, "SUBSCRIBE"),
    ];
    let sink = start(json!({
        "sentinel": {"masterName": RedisSentinelSet::MASTER_NAME, "addresses": set.sentinel_addresses()},
    }));
    let probe = RedisSentinelProbe {
        sentinels: set.sentinel_addresses(),
    };
    let victim = &mut set.nodes[master];
    let (timings, sent, received) = stream_through_a_failover(
        &sink,
        &subscribers,
        || victim.stop(),
        || probe.master_port() == Some(replica_port),
    )
    .await;
    assert!(
        sink.metrics
            .redis_publish_errors
            .with_label_values(&[CHANNEL])
            .get()
            > 0,
        "publishing to a killed master fails and is counted"
    );
    let dropped = assert_accounted(sink, &subscribers, sent, received, None).await;
    assert!(
        dropped > 0,
        "the quotes sent while no master was up are counted lost"
    );
    eprintln!(
        "MEASURED sentinel failover (down-after {:?}): Sentinels named the new master {:?} after the SIGKILL; the first quote through it arrived {:?} after the SIGKILL; {dropped} of {sent} quotes counted lost",
        RedisSentinelSet::DOWN_AFTER,
        timings.promoted_after,
        timings.resumed_after
    );
    assert!(set.wait_master(replica_port, WAIT));
}

/// Asks the Sentinels which master they name (without borrowing the set the test kills in).
struct RedisSentinelProbe {
    sentinels: Vec<String>,
}

impl RedisSentinelProbe {
    fn master_port(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|addr| {
            let client = redis::Client::open(format!("redis://{addr}")).ok()?;
            let mut conn = client
                .get_connection_with_timeout(Duration::from_millis(500))
                .ok()?;
            let (_, port): (String, String) = redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(RedisSentinelSet::MASTER_NAME)
                .query(&mut conn)
                .ok()?;
            port.parse().ok()
        })
    }
}

/// Whether the node at `port` serves `CHANNEL`'s slot as a master, as the node at `asked`
/// sees it.
fn serves_channel(asked: u16, port: u16) -> bool {
    let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{asked}")) else {
        return false;
    };
    let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_millis(500)) else {
        return false;
    };
    let Ok(info): Result<String, _> = redis::cmd("CLUSTER").arg("INFO").query(&mut conn) else {
        return false;
    };
    if !info.contains("cluster_state:ok") {
        return false;
    }
    let Ok(slot): Result<i64, _> = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(CHANNEL)
        .query(&mut conn)
    else {
        return false;
    };
    let Ok(slots): Result<Vec<Vec<redis::Value>>, _> =
        redis::cmd("CLUSTER").arg("SLOTS").query(&mut conn)
    else {
        return false;
    };
    slots.iter().any(|range| {
        let int = |i: usize| {
            range
                .get(i)
                .and_then(|v| redis::from_redis_value::<i64>(v.clone()).ok())
        };
        let master_port = range
            .get(2)
            .and_then(|n| redis::from_redis_value::<Vec<redis::Value>>(n.clone()).ok())
            .and_then(|n| {
                n.get(1)
                    .and_then(|p| redis::from_redis_value::<u16>(p.clone()).ok())
            });
        matches!((int(0), int(1)), (Some(a), Some(b)) if (a..=b).contains(&slot))
            && master_port == Some(port)
    })
}

/// Kills the master of `CHANNEL`'s shard mid-stream; `sharded` publishes with SPUBLISH and
/// subscribes with SSUBSCRIBE on that shard, classic PUBLISH is heard on any node.
async fn cluster_failover(sharded: bool) {
    let mut cluster = RedisClusterSet::start().unwrap();
    let shard = cluster
        .shard_of(CHANNEL)
        .expect("a shard serves the channel");
    let (master, replica) = (shard[0], shard[1]);
    let replica_port = cluster.nodes[replica].port();
    // A node of another shard, alive throughout, to ask about the topology.
    let other = (0..cluster.nodes.len())
        .find(|i| !shard.contains(i))
        .unwrap();
    let other_port = cluster.nodes[other].port();
    let command = if sharded { "SSUBSCRIBE" } else { "SUBSCRIBE" };
    let mut subscribers = vec![
        subscribe(cluster.nodes[master].port(), command),
        subscribe(replica_port, command),
    ];
    if !sharded {
        // Classic Pub/Sub is broadcast over the cluster bus: a node of another shard hears it.
        subscribers.push(subscribe(other_port, command));
    }
    let sink = start(json!({
        "cluster": {"addresses": cluster.addresses()},
        "sharded": sharded,
    }));
    let victim = &mut cluster.nodes[master];
    let (timings, sent, received) = stream_through_a_failover(
        &sink,
        &subscribers,
        || victim.stop(),
        || serves_channel(other_port, replica_port),
    )
    .await;
    let in_flight = timings.in_flight_at_kill.clone();
    let dropped = assert_accounted(sink, &subscribers, sent, received, Some(in_flight)).await;
    eprintln!(
        "MEASURED cluster failover ({}, node timeout {:?}): the replica served the channel's slot {:?} after the SIGKILL; the first quote published after the SIGKILL arrived {:?} after it; {dropped} of {sent} quotes counted lost ({} in flight at the SIGKILL, which Pub/Sub may lose uncounted)",
        if sharded { "SPUBLISH" } else { "PUBLISH" },
        RedisClusterSet::NODE_TIMEOUT,
        timings.promoted_after,
        timings.resumed_after,
        timings.in_flight_at_kill.clone().count()
    );
    assert!(
        cluster.wait_ok(WAIT),
        "the cluster is ok again after the failover"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_publish_follows_a_failover_after_a_master_is_killed() {
    cluster_failover(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_sharded_spublish_follows_a_failover_after_the_shard_master_is_killed() {
    cluster_failover(true).await;
}

/// Sentinels that take the connection and never answer: the first batch's publish waits for
/// the discovery while the sink sends its first heartbeat. Both must end within the discovery
/// timeout, counted lost, and the sink keeps taking quotes (a lock held across the discovery
/// once deadlocked the sink here: nothing published, nothing counted, the queue overflowing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_that_never_answer_cost_counted_quotes_and_never_stall_the_sink() {
    // Bound and listening (the kernel completes the handshakes) but never accepting.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = silent.local_addr().unwrap().to_string();
    let sink = start_with_queued(
        json!({"sentinel": {"masterName": "quotes", "addresses": [address]}}),
        &[1],
    )
    .await;
    let deadline = Instant::now() + WAIT;
    while sink.dropped() < 1 {
        assert!(
            Instant::now() < deadline,
            "the first batch was neither published nor counted lost within {WAIT:?}: the sink is stuck"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sink.send(vec![quote(2)]).await;
    while sink.dropped() < 2 {
        assert!(
            Instant::now() < deadline,
            "a later quote was not counted lost within {WAIT:?}: the sink stopped taking quotes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(sink.published(CHANNEL), 0);
    sink.stop(WAIT).await;
    drop(silent);
}

/// Sentinels with their own `requirepass` (Bitnami's chart and most managed Sentinel sets):
/// the sink asks them with `sentinel.passwordSecretRef`'s password and publishes to the master
/// they name; without it they refuse, no master is found, and every quote is counted lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_with_a_password_are_asked_with_it() {
    const PASSWORD: &str = "sentinel-s3cr3t";
    let set = RedisSentinelSet::start_with_sentinel_password(Some(PASSWORD)).unwrap();
    let Some(master) = set.master_index() else {
        panic!("the Sentinels name no master of the set:\n{}", set.logs());
    };
    let subscribers = vec![subscribe(set.nodes[master].port(), "SUBSCRIBE")];
    let sentinel =
        json!({"masterName": RedisSentinelSet::MASTER_NAME, "addresses": set.sentinel_addresses()});

    // With the password: every quote reaches the master's subscriber.
    let mut with_password = sentinel.clone();
    with_password["passwordSecretRef"] = json!({"name": "sentinel-auth", "key": "password"});
    let spec: RedisSpec = serde_json::from_value(json!({ "sentinel": with_password })).unwrap();
    let env = std::collections::HashMap::from([(
        quotestream_api::contract::env::REDIS_SENTINEL_PASSWORD.to_owned(),
        PASSWORD.to_owned(),
    )]);
    let config =
        RedisConfig::from_spec(&spec, &env, "/quotestream/markets/sp500/shard-0".into()).unwrap();
    let sink = RunningSink::queued(0, QUEUE_BYTES).run(config, DRAIN);
    for seq in 1..=20 {
        sink.send(vec![quote(seq)]).await;
    }
    let mut received = Received::default();
    let deadline = Instant::now() + WAIT;
    while received.seqs.len() < 20 {
        assert!(
            Instant::now() < deadline,
            "with the Sentinels' password, {} of 20 quotes reached the master's subscriber within {WAIT:?} (published {}, dropped {})",
            received.seqs.len(),
            sink.published(CHANNEL),
            sink.dropped()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        received.take(&subscribers, None);
    }
    assert_eq!(sink.dropped(), 0);
    sink.stop(WAIT).await;

    // Without it: the Sentinels answer NOAUTH, and what is sent is counted lost, not published.
    let sink = start(json!({ "sentinel": sentinel }));
    for seq in 21..=25 {
        sink.send(vec![quote(seq)]).await;
    }
    let deadline = Instant::now() + WAIT;
    while sink.dropped() < 5 {
        assert!(
            Instant::now() < deadline,
            "without the Sentinels' password, {} of 5 quotes were counted lost within {WAIT:?} (published {})",
            sink.dropped(),
            sink.published(CHANNEL)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(sink.published(CHANNEL), 0);
    sink.stop(WAIT).await;
    received.take(&subscribers, None);
    assert!(
        received.seqs.iter().all(|s| *s <= 20),
        "nothing reached the master without the Sentinels' password: {:?}",
        received.seqs
    );
}
