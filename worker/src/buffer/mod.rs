//! The optional disk buffer of a durable sink (storage, PostgreSQL), after Vector's disk
//! buffers: quotes a sink has not confirmed survive a crash of the worker (`kill -9`, an OOM
//! kill, a panic) and are delivered when it starts again.
//!
//! ```text
//! pipeline ─► queue ─► writer ─► log on disk ─► reader ─► queue ─► sink
//!                        (append)       ▲                         │
//!                                       └──── ack (confirmed) ────┘
//! ```
//!
//! The writer appends each batch the pipeline hands over as one record of the [`log`]; the
//! reader reads records back in order and feeds the sink; the sink confirms batches
//! ([`Acks::confirm`]) once the destination stored them (or refused them for good, counted),
//! and only then is a record acknowledged and its space reclaimed. On start the records not
//! acknowledged by the previous process are read first (`streamer_buffer_replayed_quotes_total`).
//! A torn or damaged record is counted (`streamer_buffer_corrupt_records_total`) and skipped.
//!
//! Bounded in bytes (`maxSize`). When it is full, `whenFull` decides: `block` (the default)
//! holds the pipeline back, exactly as a full memory queue in front of a durable sink does, so
//! nothing accepted is ever dropped; `drop_newest` drops the batch that does not fit and counts
//! it in `streamer_sink_dropped_quotes_total{reason="buffer_full"}`, for streams where fresh
//! quotes on Redis matter more than completeness in storage.

pub mod codec;
pub mod log;
mod metrics;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use quotestream_api::crd::{BufferType, SinkBuffer, WhenFull};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use self::log::{Log, LogError, OpenReport, ReadOutcome};
pub use self::metrics::BufferMetrics;
use crate::metrics::{DropReason, Metrics};
use crate::queue::{self, FullPolicy, QueueReceiver, QueueSender};
use crate::sinks::SinkError;

/// Smallest `maxSize` a disk buffer takes (`crate::bounds::BUFFER_MAX_SIZE`).
pub const MIN_MAX_SIZE: u64 = quotestream_api::crd::MIN_BUFFER_MAX_SIZE_BYTES;
/// Pause before retrying a disk that failed a read or write (the error is logged each time).
const IO_RETRY: Duration = Duration::from_secs(1);

/// A disk buffer's settings, resolved from `sinks.<sink>.buffer` and the buffer directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskBufferConfig {
    /// This sink's directory (`<buffer dir>/<sink>`).
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub when_full: WhenFull,
}

impl DiskBufferConfig {
    /// The disk buffer `spec` asks for, in `<root>/<sink>`; `None` for a memory buffer (or
    /// none). Errors name the field (`buffer.maxSize`) and say what to write.
    pub fn from_spec(
        spec: Option<&SinkBuffer>,
        sink: &str,
        root: &Path,
    ) -> Result<Option<Self>, String> {
        let Some(spec) = spec else { return Ok(None) };
        if spec.kind != BufferType::Disk {
            if spec.max_size.is_some() || spec.when_full.is_some() {
                return Err("buffer.maxSize and buffer.whenFull apply to a disk buffer: set buffer.type: disk, or remove them".into());
            }
            return Ok(None);
        }
        let max_bytes = match &spec.max_size {
            None => quotestream_api::crd::DEFAULT_BUFFER_MAX_SIZE_BYTES,
            Some(text) => crate::bounds::BUFFER_MAX_SIZE
                .parse(text)
                .map_err(|e| format!("buffer.maxSize: {e}"))?,
        };
        Ok(Some(Self {
            dir: root.join(sink),
            max_bytes,
            when_full: spec.when_full.unwrap_or_default(),
        }))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the disk buffer of sink {sink} in {dir}: {source}")]
pub struct OpenError {
    sink: &'static str,
    dir: String,
    source: LogError,
}

/// The state shared by the writer, the reader and the sink's acknowledgements.
#[derive(Debug)]
struct State {
    log: Log,
    /// Records handed to the sink (true) or skipped as undecodable (false), oldest first, not
    /// yet acknowledged.
    in_flight: VecDeque<(u64, bool)>,
}

#[derive(Debug)]
struct Shared {
    sink: &'static str,
    state: Mutex<State>,
    /// Records up to this number were written by an earlier process (read back: replayed).
    replay_until: u64,
    /// Wakes the writer when acknowledgements free space.
    room: Notify,
    /// Wakes the reader when a record is appended.
    data: Notify,
    metrics: BufferMetrics,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update under this lock leaves the log consistent before it can panic (file
        // errors are values), so a poisoned lock is safe to keep using.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn report_bytes(&self, log: &Log) {
        self.metrics.bytes(self.sink).set(log.bytes() as i64);
    }
}

/// An opened disk buffer, ready to run in front of its sink ([`DiskBuffer::run`]).
#[derive(Debug)]
pub struct DiskBuffer {
    shared: Arc<Shared>,
    when_full: WhenFull,
}

impl DiskBuffer {
    /// Opens the log (replaying nothing yet: that happens once the sink runs), counting what
    /// an earlier process left: corrupt regions now, replayed quotes as they are read back.
    pub fn open(
        config: &DiskBufferConfig,
        sink: &'static str,
        metrics: &Metrics,
    ) -> Result<Self, OpenError> {
        let (log, report) =
            Log::open(&config.dir, config.max_bytes).map_err(|source| OpenError {
                sink,
                dir: config.dir.display().to_string(),
                source,
            })?;
        let metrics = metrics.buffer.clone();
        metrics.corrupt(sink).inc_by(report.corrupt_regions);
        if report.unacked_records > 0 || report.corrupt_regions > 0 {
            tracing::info!(sink, dir = %config.dir.display(), records = report.unacked_records, corrupt_regions = report.corrupt_regions, corrupt_bytes = report.corrupt_bytes, "disk buffer: records of an earlier run are delivered first");
        }
        let shared = Shared {
            sink,
            replay_until: log.next_seq() - 1,
            state: Mutex::new(State {
                log,
                in_flight: VecDeque::new(),
            }),
            room: Notify::new(),
            data: Notify::new(),
            metrics,
        };
        shared.report_bytes(&shared.lock().log);
        Ok(Self {
            shared: Arc::new(shared),
            when_full: config.when_full,
        })
    }

    /// Runs `sink` behind the buffer: `input` is the sink's queue from the pipeline; the sink
    /// reads from a queue of `budget` bytes the buffer fills from disk, and confirms
    /// through its context's [`Acks`]. Returns when the sink returns, once what the pipeline
    /// still hands over is on disk (the pipeline closes `input` by its drain deadline).
    pub async fn run<F, Fut>(
        self,
        input: QueueReceiver,
        budget: usize,
        mut ctx: crate::sinks::SinkContext,
        sink: F,
    ) -> Result<(), SinkError>
    where
        F: FnOnce(QueueReceiver, crate::sinks::SinkContext) -> Fut,
        Fut: Future<Output = Result<(), SinkError>>,
    {
        let name = self.shared.sink;
        // The read-back queue is not the pipeline's: its depth is the buffer's business, so
        // its gauges are not registered (the pipeline-side queue keeps the sink's label).
        let gauge = |what: &str| {
            prometheus::IntGauge::new(format!("buffer_read_{what}"), "read-back queue")
                .map_err(|e| config_error(name, e))
        };
        let gauges = queue::QueueGauges {
            quotes: gauge("quotes")?,
            bytes: gauge("bytes")?,
            dropped: prometheus::IntCounter::new("buffer_read_evicted", "never used by Block")
                .map_err(|e| config_error(name, e))?,
            // A batch read back but left in this queue when the sink stopped: its record is
            // not on the unread list any more, so the queue counts it.
            left_over: ctx.metrics.dropped(name, DropReason::Shutdown),
        };
        let (to_sink, from_buffer) = queue::channel(budget, FullPolicy::Block, gauges);
        let written = CancellationToken::new();
        let sink_gone = CancellationToken::new();
        let writer = tokio::spawn(write_all(
            self.shared.clone(),
            input,
            self.when_full,
            ctx.metrics.clone(),
            written.clone(),
            sink_gone.clone(),
        ));
        let reader = tokio::spawn(read_all(
            self.shared.clone(),
            ctx.metrics.clone(),
            to_sink,
            written,
            sink_gone.clone(),
        ));
        ctx.acks = Acks(Some(self.shared.clone()));
        let metrics = ctx.metrics.clone();
        let result = sink(from_buffer, ctx).await;
        sink_gone.cancel();
        let _ = reader.await;
        if let Err(e) = writer.await {
            tracing::error!(sink = name, error = %e, "disk buffer writer failed");
        }
        let (left, earlier) = unread_quotes(&self.shared);
        // Those of an earlier process were never handed over by this one's pipeline.
        metrics
            .quotes_accepted
            .with_label_values(&[name])
            .inc_by(earlier);
        if left > 0 {
            // This process will not deliver them: counted like any quote a sink gives up at
            // shutdown. They stay on disk, so a restarted container delivers them after all.
            metrics.dropped(name, DropReason::Shutdown).inc_by(left);
            tracing::warn!(
                sink = name,
                quotes = left,
                "disk buffer: quotes still buffered when the sink stopped; counted as dropped (reason=\"shutdown\") — kept on disk, so delivered if this container restarts, gone if the pod is deleted"
            );
        }
        result
    }
}

fn config_error(sink: &'static str, e: prometheus::Error) -> SinkError {
    SinkError::Config {
        sink,
        reason: format!("disk buffer metrics: {e}"),
    }
}

/// How a sink confirms the batches it took from its queue: once they are stored (or refused
/// for good and counted), in the order it took them. Without a disk buffer it does nothing.
#[derive(Debug, Clone, Default)]
pub struct Acks(Option<Arc<Shared>>);

impl Acks {
    /// For a sink without a disk buffer.
    pub fn none() -> Self {
        Self(None)
    }

    /// The next `batches` batches the sink took are done with: their records are acknowledged
    /// and their space reclaimed.
    pub fn confirm(&self, batches: usize) {
        let Some(shared) = &self.0 else { return };
        let mut st = shared.lock();
        let mut left = batches;
        let mut through = None;
        while let Some(&(seq, handed)) = st.in_flight.front() {
            if handed {
                if left == 0 {
                    break;
                }
                left -= 1;
            }
            through = Some(seq);
            st.in_flight.pop_front();
        }
        if left > 0 {
            tracing::error!(
                sink = shared.sink,
                batches,
                unknown = left,
                "disk buffer: the sink confirmed more batches than it was given; ignored"
            );
        }
        let Some(seq) = through else { return };
        if let Err(e) = st.log.ack(seq) {
            // The records stay on disk and are delivered again after a restart (the sinks are
            // idempotent): a duplicate, never a loss.
            tracing::error!(sink = shared.sink, error = %e, "disk buffer: could not record an acknowledgement");
        }
        shared.report_bytes(&st.log);
        drop(st);
        shared.room.notify_one();
    }
}

/// Appends every batch of `input` to the log until the pipeline closes it.
async fn write_all(
    shared: Arc<Shared>,
    mut input: QueueReceiver,
    when_full: WhenFull,
    metrics: Metrics,
    written: CancellationToken,
    sink_gone: CancellationToken,
) {
    let sink = shared.sink;
    let mut full_logged = false;
    while let Some(batch) = input.recv().await {
        let record = codec::encode(&batch);
        let quotes = batch.len() as u64;
        loop {
            let room = shared.room.notified();
            let appended = {
                let mut st = shared.lock();
                let r = st.log.append(&record);
                shared.report_bytes(&st.log);
                r
            };
            let wait = match appended {
                Ok(_) => {
                    shared.metrics.written(sink).inc_by(quotes);
                    shared.data.notify_one();
                    full_logged = false;
                    break;
                }
                Err(LogError::Full { used, max, .. }) => {
                    if when_full == WhenFull::DropNewest {
                        metrics.dropped(sink, DropReason::BufferFull).inc_by(quotes);
                        if !full_logged {
                            full_logged = true;
                            tracing::warn!(
                                sink,
                                used,
                                max,
                                "disk buffer full; whenFull: drop_newest drops new batches until the sink catches up (counted in streamer_sink_dropped_quotes_total{{reason=\"buffer_full\"}})"
                            );
                        }
                        break;
                    }
                    if !full_logged {
                        full_logged = true;
                        tracing::warn!(
                            sink,
                            used,
                            max,
                            "disk buffer full; whenFull: block holds the pipeline back until the sink confirms more"
                        );
                    }
                    None
                }
                Err(e) => {
                    tracing::error!(sink, error = %e, retry_in = ?IO_RETRY, "disk buffer: could not write a batch; it is kept and retried");
                    Some(IO_RETRY)
                }
            };
            if sink_gone.is_cancelled() {
                // Nobody will make room any more: what does not fit now is lost, and counted.
                metrics.dropped(sink, DropReason::Shutdown).inc_by(quotes);
                tracing::error!(
                    sink,
                    quotes,
                    "disk buffer: the sink stopped and the buffer cannot take this batch; dropped (counted)"
                );
                break;
            }
            let pause = async {
                match wait {
                    Some(d) => tokio::time::sleep(d).await,
                    None => room.await,
                }
            };
            tokio::select! {
                () = pause => {}
                () = sink_gone.cancelled() => {}
            }
        }
    }
    written.cancel();
    shared.data.notify_one();
}

/// Quotes in the records the reader has not reached (what is left when the sink stops), and
/// how many of them an earlier process wrote.
fn unread_quotes(shared: &Shared) -> (u64, u64) {
    let mut st = shared.lock();
    let (mut quotes, mut earlier) = (0u64, 0u64);
    while let Ok(Some(outcome)) = st.log.read_next() {
        if let ReadOutcome::Record { seq, payload } = outcome {
            let n = codec::count(&payload) as u64;
            quotes += n;
            if seq <= shared.replay_until {
                earlier += n;
            }
        }
    }
    (quotes, earlier)
}

/// What the reader found next (decided under the lock, acted on outside it).
enum Step {
    Deliver {
        batch: crate::sinks::Batch,
        replayed: bool,
    },
    Undecodable(codec::DecodeError),
    Corrupt(u64),
    CaughtUp,
    Failed(LogError),
}

/// Feeds the sink from the log, oldest record first, until the writer is done and everything
/// is read, or the sink stops.
async fn read_all(
    shared: Arc<Shared>,
    metrics: Metrics,
    to_sink: QueueSender,
    written: CancellationToken,
    sink_gone: CancellationToken,
) {
    let sink = shared.sink;
    loop {
        let data = shared.data.notified();
        // Looked at before reading: if the writer was done then, this read sees its last record.
        let done = written.is_cancelled();
        let step = next_step(&shared);
        match step {
            Step::Deliver { batch, replayed } => {
                if replayed {
                    // The pipeline of this process never handed these to the sink: the
                    // buffer does, so they count as accepted (accepted = published + dropped).
                    let n = batch.len() as u64;
                    shared.metrics.replayed(sink).inc_by(n);
                    metrics.quotes_accepted.with_label_values(&[sink]).inc_by(n);
                }
                tokio::select! {
                    () = to_sink.send(batch) => {}
                    () = sink_gone.cancelled() => return,
                }
            }
            Step::Undecodable(e) => {
                shared.metrics.corrupt(sink).inc();
                tracing::warn!(sink, error = %e, "disk buffer: a record does not decode; skipped (counted in streamer_buffer_corrupt_records_total)");
            }
            Step::Corrupt(bytes) => {
                shared.metrics.corrupt(sink).inc();
                tracing::warn!(
                    sink,
                    bytes,
                    "disk buffer: a damaged record; the rest of its segment is skipped (counted in streamer_buffer_corrupt_records_total)"
                );
            }
            Step::CaughtUp if done => return,
            Step::CaughtUp => {
                tokio::select! {
                    () = data => {}
                    () = written.cancelled() => {}
                    () = sink_gone.cancelled() => return,
                }
            }
            Step::Failed(e) => {
                tracing::error!(sink, error = %e, retry_in = ?IO_RETRY, "disk buffer: could not read; retrying");
                tokio::select! {
                    () = tokio::time::sleep(IO_RETRY) => {}
                    () = sink_gone.cancelled() => return,
                }
            }
        }
    }
}

/// Reads the next record and notes it as in flight (handed to the sink, or skipped).
fn next_step(shared: &Shared) -> Step {
    let mut st = shared.lock();
    let (seq, payload) = match st.log.read_next() {
        Ok(Some(ReadOutcome::Record { seq, payload })) => (seq, payload),
        Ok(Some(ReadOutcome::Corrupt { bytes })) => return Step::Corrupt(bytes),
        Ok(None) => return Step::CaughtUp,
        Err(e) => return Step::Failed(e),
    };
    match codec::decode(&payload) {
        Ok(batch) => {
            st.in_flight.push_back((seq, true));
            Step::Deliver {
                batch,
                replayed: seq <= shared.replay_until,
            }
        }
        Err(e) => {
            if st.in_flight.is_empty() {
                // Nothing before it waits for the sink: acknowledged now.
                if let Err(e) = st.log.ack(seq) {
                    tracing::error!(sink = shared.sink, error = %e, "disk buffer: could not record an acknowledgement");
                }
                shared.report_bytes(&st.log);
            } else {
                st.in_flight.push_back((seq, false));
            }
            Step::Undecodable(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::tests::batch;
    use crate::sinks::SinkContext;

    const SENT_BATCHES: usize = 400;
    const PER_BATCH: usize = 100;

    fn context(metrics: &Metrics) -> SinkContext {
        SinkContext {
            metrics: metrics.clone(),
            drain_deadline: Duration::from_secs(1),
            shutdown: CancellationToken::new(),
            acks: Acks::none(),
            status: Default::default(),
        }
    }

    /// A buffer of 1 MiB in front of a sink that confirms nothing, fed more than fits.
    async fn overfill(
        when_full: WhenFull,
    ) -> (
        Metrics,
        QueueSender,
        CancellationToken,
        tokio::task::JoinHandle<Result<(), SinkError>>,
        tempfile::TempDir,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::new("test", 0).unwrap();
        let config = DiskBufferConfig {
            dir: dir.path().join("postgres"),
            max_bytes: MIN_MAX_SIZE,
            when_full,
        };
        let buffer = DiskBuffer::open(&config, "postgres", &metrics).unwrap();
        let (tx, rx) = queue::for_sink(&metrics, "postgres", 1 << 30, FullPolicy::Block);
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(
            buffer.run(rx, 10, context(&metrics), move |rx, _| async move {
                stopped.cancelled().await;
                drop(rx);
                Ok(())
            }),
        );
        for _ in 0..SENT_BATCHES {
            tx.send(batch(PER_BATCH)).await;
        }
        (metrics, tx, stop, task, dir)
    }

    fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !check() {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn block_holds_the_pipeline_back_and_drops_nothing() {
        let (metrics, tx, stop, task, _dir) = overfill(WhenFull::Block).await;
        let written = metrics.buffer.written("postgres");
        let sent = (SENT_BATCHES * PER_BATCH) as u64;
        // Blocked: the writer holds one batch, the rest waits in the pipeline's queue.
        tokio::task::block_in_place(|| {
            wait_for("the writer to block", || {
                written.get() > 0 && written.get() + tx.len() as u64 + PER_BATCH as u64 == sent
            })
        });
        assert!(written.get() < sent, "not everything fits in 1 MiB");
        assert!(metrics.buffer.bytes("postgres").get() as u64 <= MIN_MAX_SIZE);
        assert_eq!(metrics.dropped("postgres", DropReason::BufferFull).get(), 0);
        stop.cancel();
        drop(tx);
        task.await.unwrap().unwrap();
        // The sink stopped: the batches that could not be buffered, and those on disk that it
        // never read, are counted.
        let shutdown = metrics.dropped("postgres", DropReason::Shutdown).get();
        assert!(shutdown >= sent - written.get(), "{shutdown}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn drop_newest_counts_what_does_not_fit() {
        let (metrics, tx, stop, task, _dir) = overfill(WhenFull::DropNewest).await;
        let written = metrics.buffer.written("postgres");
        let dropped = metrics.dropped("postgres", DropReason::BufferFull);
        let sent = (SENT_BATCHES * PER_BATCH) as u64;
        tokio::task::block_in_place(|| {
            wait_for("every batch written or dropped", || {
                written.get() + dropped.get() == sent
            })
        });
        assert!(dropped.get() > 0 && written.get() > 0);
        assert!(metrics.buffer.bytes("postgres").get() as u64 <= MIN_MAX_SIZE);
        stop.cancel();
        drop(tx);
        task.await.unwrap().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn confirmed_batches_are_not_replayed_and_the_rest_are() {
        let dir = tempfile::tempdir().unwrap();
        let config = DiskBufferConfig {
            dir: dir.path().to_owned(),
            max_bytes: 64 << 20,
            when_full: WhenFull::Block,
        };
        // First run: 10 batches; the sink confirms the first 4, then stops.
        let metrics = Metrics::new("test", 0).unwrap();
        let buffer = DiskBuffer::open(&config, "storage", &metrics).unwrap();
        let (tx, rx) = queue::for_sink(&metrics, "storage", 1 << 20, FullPolicy::Block);
        let sent: Vec<_> = (0..10).map(|_| batch(7)).collect();
        for b in &sent {
            tx.send(b.clone()).await;
        }
        let got = tokio::spawn(
            buffer.run(rx, 1000, context(&metrics), |mut rx, ctx| async move {
                for _ in 0..4 {
                    rx.recv().await;
                }
                ctx.acks.confirm(4);
                Ok(())
            }),
        );
        drop(tx);
        got.await.unwrap().unwrap();

        // Second run: batches 5..10 come back, in order, counted as replayed.
        let metrics = Metrics::new("test", 0).unwrap();
        let buffer = DiskBuffer::open(&config, "storage", &metrics).unwrap();
        let (tx, rx) = queue::for_sink(&metrics, "storage", 1 << 20, FullPolicy::Block);
        drop(tx);
        let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
        buffer
            .run(rx, 1000, context(&metrics), |mut rx, ctx| async move {
                let mut n = 0;
                while let Some(b) = rx.recv().await {
                    let _ = seen_tx.send(b);
                    n += 1;
                }
                ctx.acks.confirm(n);
                Ok(())
            })
            .await
            .unwrap();
        let mut replayed = Vec::new();
        while let Ok(b) = seen.try_recv() {
            replayed.push(b);
        }
        assert_eq!(replayed, sent[4..].to_vec());
        assert_eq!(metrics.buffer.replayed("storage").get(), 6 * 7);
        assert_eq!(
            metrics.buffer.bytes("storage").get(),
            0,
            "all acknowledged, reclaimed"
        );
    }
}
