//! Records every quote published on a Redis channel in CloudEvents format: when it was heard,
//! its ticker and quote time, and which worker published it (the envelope's `source`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

/// One message heard.
#[derive(Debug, Clone)]
pub struct Heard {
    pub at: Instant,
    pub ticker: String,
    /// The quote's time as on the wire (ISO 8601, milliseconds, `Z`).
    pub time: String,
    /// The shard index from the producer `/quotestream/<ns>/<stream>/shard-<i>`.
    pub shard: u32,
}

#[derive(Debug, Default)]
struct Recording {
    heard: Vec<Heard>,
    problems: Vec<String>,
}

/// A running recorder; dropping it unsubscribes.
#[derive(Debug)]
pub struct Tape {
    recording: Arc<Mutex<Recording>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn lock(r: &Mutex<Recording>) -> MutexGuard<'_, Recording> {
    r.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Tape {
    /// Subscribes to `channel` before returning, so nothing published afterwards is missed.
    pub fn record(url: &str, channel: &str) -> redis::RedisResult<Self> {
        let client = redis::Client::open(url)?;
        let mut connection = client.get_connection()?;
        // Short reads so that the thread notices the stop flag.
        connection.set_read_timeout(Some(Duration::from_millis(100)))?;
        let recording = Arc::new(Mutex::new(Recording::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (subscribed_tx, subscribed_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("tape".into())
            .spawn({
                let (recording, stop, channel) =
                    (recording.clone(), stop.clone(), channel.to_owned());
                move || {
                    let mut pubsub = connection.as_pubsub();
                    let subscribed = pubsub.subscribe(&channel);
                    let ok = subscribed.is_ok();
                    let _ = subscribed_tx.send(subscribed);
                    if ok {
                        listen(&mut pubsub, &recording, &stop);
                    }
                }
            })
            .map_err(|e| redis::RedisError::from(std::io::Error::other(e)))?;
        subscribed_rx
            .recv()
            .map_err(|e| redis::RedisError::from(std::io::Error::other(e)))??;
        Ok(Self {
            recording,
            stop,
            thread: Some(thread),
        })
    }

    /// Everything heard so far, in arrival order.
    pub fn heard(&self) -> Vec<Heard> {
        lock(&self.recording).heard.clone()
    }

    /// Messages that were not CloudEvents quotes, and connection errors.
    pub fn problems(&self) -> Vec<String> {
        lock(&self.recording).problems.clone()
    }
}

impl Drop for Tape {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn listen(pubsub: &mut redis::PubSub<'_>, recording: &Mutex<Recording>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match pubsub.get_message() {
            Ok(msg) => {
                let at = Instant::now();
                let parsed = parse(msg.get_payload_bytes(), at);
                let mut r = lock(recording);
                match parsed {
                    Ok(heard) => r.heard.push(heard),
                    Err(problem) => r.problems.push(problem),
                }
            }
            Err(e) if e.is_timeout() => {}
            Err(e) => {
                lock(recording)
                    .problems
                    .push(format!("subscription lost: {e}"));
                return;
            }
        }
    }
}

fn parse(payload: &[u8], at: Instant) -> Result<Heard, String> {
    let text = String::from_utf8_lossy(payload);
    let v: Value = serde_json::from_slice(payload).map_err(|e| format!("{e}: {text}"))?;
    let field = |v: &Value, name: &str| {
        v[name]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("no {name}: {text}"))
    };
    let producer = field(&v, "source")?;
    let shard = producer
        .rsplit_once("/shard-")
        .and_then(|(_, i)| i.parse().ok())
        .ok_or_else(|| format!("source {producer:?} names no shard"))?;
    Ok(Heard {
        at,
        ticker: field(&v["data"], "ticker")?,
        time: field(&v["data"], "timestamp")?,
        shard,
    })
}
