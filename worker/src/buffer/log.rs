//! The disk buffer's append-only log: numbered records in segment files, acknowledged in order,
//! space reclaimed a whole segment at a time once every record in it is acknowledged.
//!
//! On disk (one directory per sink):
//! - `seg-<first seq, 20 digits>.log`: frames `[len u32][crc32 u32][seq u64][payload]`
//!   (little endian), `len` the payload's bytes, the CRC over `seq` and the payload. Sequence
//!   numbers start at 1 and only grow, across segments and restarts.
//! - `ack`: the highest acknowledged sequence number and its CRC, replaced atomically (written
//!   beside, then renamed) on every acknowledgement.
//!
//! Crash model: the worker writes frames with plain `write` (no fsync on the hot path), so
//! whatever the process wrote survives `kill -9`, an OOM kill or a panic (the kernel holds it);
//! a frame cut short by a crash mid-write — a torn tail — or damaged on disk is detected when
//! the log is opened (length beyond the segment, CRC mismatch, sequence going backwards), counted,
//! and cut off; the records before it are kept. Nothing here panics on what it reads.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Bytes of a frame's header: length, CRC, sequence number.
pub const HEADER: u64 = 16;
const SEGMENT_PREFIX: &str = "seg-";
const SEGMENT_SUFFIX: &str = ".log";
const ACK_FILE: &str = "ack";
const ACK_TMP: &str = "ack.tmp";
/// Smallest and largest segment: a buffer holds about eight, so at most an eighth of its bound
/// is acknowledged data waiting for its segment to be reclaimed.
const MIN_SEGMENT: u64 = 64 * 1024;
const MAX_SEGMENT: u64 = 128 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "the record of {bytes} bytes does not fit: the buffer holds {used} of {max} bytes (maxSize)"
    )]
    Full { bytes: u64, used: u64, max: u64 },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What opening an existing log found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Records written by an earlier process and not acknowledged: they are read again first.
    pub unacked_records: u64,
    /// Damaged or torn regions cut off (each may have held one or more records).
    pub corrupt_regions: u64,
    /// Bytes cut off with them.
    pub corrupt_bytes: u64,
}

/// One read from the log.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    Record {
        seq: u64,
        payload: Vec<u8>,
    },
    /// A frame that fails its checks while reading (damage after the log was opened): the rest
    /// of its segment is skipped.
    Corrupt {
        bytes: u64,
    },
}

#[derive(Debug)]
struct Segment {
    first_seq: u64,
    path: PathBuf,
    /// Bytes of complete frames (what readers may read).
    len: u64,
}

#[derive(Debug)]
struct ReadCursor {
    /// Index into `segments` (adjusted as segments before it are removed).
    segment: usize,
    offset: u64,
    file: Option<BufReader<File>>,
}

/// The log of one sink's disk buffer. Not thread-safe by itself: the buffer keeps it behind a
/// lock.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    segments: VecDeque<Segment>,
    writer: File,
    next_seq: u64,
    acked: u64,
    /// Sum of the segments' lengths.
    bytes: u64,
    read: ReadCursor,
}

impl Log {
    /// Opens (or creates) the log in `dir`, bounded to `max_bytes` on disk.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<(Self, OpenReport), LogError> {
        fs::create_dir_all(dir).map_err(io_at(dir))?;
        let acked = read_ack(dir);
        let mut report = OpenReport::default();
        let mut segments = VecDeque::new();
        let mut last_seq = 0;
        for (first_seq, path) in list_segments(dir)? {
            let scan = scan_segment(&path, last_seq)?;
            if scan.corrupt_bytes > 0 {
                report.corrupt_regions += 1;
                report.corrupt_bytes += scan.corrupt_bytes;
                tracing::warn!(segment = %path.display(), valid_bytes = scan.valid_len, cut_bytes = scan.corrupt_bytes, "disk buffer: a torn or damaged tail was cut off (counted in streamer_buffer_corrupt_records_total)");
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io_at(&path))?;
                file.set_len(scan.valid_len).map_err(io_at(&path))?;
            }
            if let Some(seq) = scan.last_seq {
                last_seq = seq;
            }
            report.unacked_records += scan.seqs_above(acked);
            segments.push_back(Segment {
                first_seq: scan.first_seq.unwrap_or(first_seq),
                path,
                len: scan.valid_len,
            });
        }
        let next_seq = last_seq.max(acked) + 1;
        // Appends always go to a fresh segment: no write lands after a tail that was cut.
        let (writer, active) = create_segment(dir, next_seq)?;
        if let Some(pos) = segments.iter().position(|s| s.path == active.path) {
            // An empty segment left by an earlier process under the same name: the same file.
            segments.remove(pos);
        }
        segments.push_back(active);
        let bytes = segments.iter().map(|s| s.len).sum();
        let mut log = Self {
            dir: dir.to_owned(),
            max_bytes,
            segment_bytes: (max_bytes / 8).clamp(MIN_SEGMENT, MAX_SEGMENT),
            segments,
            writer,
            next_seq,
            acked,
            bytes,
            read: ReadCursor {
                segment: 0,
                offset: 0,
                file: None,
            },
        };
        log.reclaim()?;
        Ok((log, report))
    }

    /// Bytes on disk (segments; the ack file is not counted).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Highest acknowledged sequence number (0: none yet).
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// The sequence number the next append gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Whether every record written is acknowledged.
    pub fn is_empty(&self) -> bool {
        self.acked + 1 >= self.next_seq
    }

    /// Appends a record; returns its sequence number. [`LogError::Full`] when it would take the
    /// log over its bound while unacknowledged records hold the space (a record larger than
    /// the whole bound is admitted into an empty log, so none can wait forever).
    pub fn append(&mut self, payload: &[u8]) -> Result<u64, LogError> {
        let frame_len = HEADER + payload.len() as u64;
        if self.bytes + frame_len > self.max_bytes {
            // Acknowledged data in the active segment holds the space: start a new one so it
            // can go.
            if self.active_fully_acked() && self.active().len > 0 {
                self.roll()?;
            }
            if self.bytes + frame_len > self.max_bytes && !self.is_empty() {
                return Err(LogError::Full {
                    bytes: frame_len,
                    used: self.bytes,
                    max: self.max_bytes,
                });
            }
        } else if self.active().len + frame_len > self.segment_bytes && self.active().len > 0 {
            self.roll()?;
        }
        let seq = self.next_seq;
        let frame = encode_frame(seq, payload);
        let active_len = self.active().len;
        if let Err(e) = self.writer.write_all(&frame) {
            // A partial frame (disk full mid-write) must not stay where readers would see it.
            let path = self.active().path.clone();
            let _ = self.writer.set_len(active_len);
            let _ = self.writer.seek(SeekFrom::Start(active_len));
            return Err(LogError::Io { path, source: e });
        }
        if let Some(active) = self.segments.back_mut() {
            active.len += frame_len;
        }
        self.bytes += frame_len;
        self.next_seq += 1;
        Ok(seq)
    }

    /// The next record not yet read in this process (records acknowledged by an earlier
    /// process are skipped); `None` when the reader has caught up with the writer.
    pub fn read_next(&mut self) -> Result<Option<ReadOutcome>, LogError> {
        loop {
            let Some(segment) = self.segments.get(self.read.segment) else {
                return Ok(None);
            };
            if self.read.offset >= segment.len {
                if self.read.segment + 1 >= self.segments.len() {
                    return Ok(None);
                }
                self.read = ReadCursor {
                    segment: self.read.segment + 1,
                    offset: 0,
                    file: None,
                };
                continue;
            }
            let path = segment.path.clone();
            let available = segment.len - self.read.offset;
            if self.read.file.is_none() {
                let mut file = File::open(&path).map_err(io_at(&path))?;
                file.seek(SeekFrom::Start(self.read.offset))
                    .map_err(io_at(&path))?;
                self.read.file = Some(BufReader::new(file));
            }
            let Some(file) = self.read.file.as_mut() else {
                continue;
            };
            match read_frame(file, available) {
                Ok(Frame::Valid { seq, payload }) => {
                    self.read.offset += HEADER + payload.len() as u64;
                    if seq <= self.acked {
                        continue;
                    }
                    return Ok(Some(ReadOutcome::Record { seq, payload }));
                }
                Ok(Frame::Invalid) => {
                    self.read.offset = segment.len;
                    self.read.file = None;
                    return Ok(Some(ReadOutcome::Corrupt { bytes: available }));
                }
                Err(e) => {
                    self.read.file = None;
                    return Err(LogError::Io { path, source: e });
                }
            }
        }
    }

    /// Acknowledges every record up to `seq` (the sink confirmed them): recorded in the ack
    /// file, and segments holding only acknowledged records are deleted.
    pub fn ack(&mut self, seq: u64) -> Result<(), LogError> {
        if seq <= self.acked {
            return Ok(());
        }
        self.acked = seq.min(self.next_seq.saturating_sub(1));
        write_ack(&self.dir, self.acked)?;
        self.reclaim()
    }

    fn active(&self) -> &Segment {
        // `segments` always ends with the active segment (created in `open`, replaced in `roll`).
        &self.segments[self.segments.len() - 1]
    }

    fn active_fully_acked(&self) -> bool {
        self.is_empty()
    }

    /// Starts a new active segment.
    fn roll(&mut self) -> Result<(), LogError> {
        let (writer, segment) = create_segment(&self.dir, self.next_seq)?;
        self.writer = writer;
        self.segments.push_back(segment);
        self.reclaim()
    }

    /// Deletes closed segments whose records are all acknowledged.
    fn reclaim(&mut self) -> Result<(), LogError> {
        while self.segments.len() > 1 {
            let next_first = self.segments[1].first_seq;
            // Records of the oldest segment all come before the next segment's first.
            if next_first.saturating_sub(1) > self.acked {
                break;
            }
            let Some(old) = self.segments.pop_front() else {
                break;
            };
            match fs::remove_file(&old.path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    self.segments.push_front(old);
                    return Err(LogError::Io {
                        path: self.segments[0].path.clone(),
                        source: e,
                    });
                }
            }
            self.bytes -= old.len;
            if self.read.segment > 0 {
                self.read.segment -= 1;
            } else {
                // The reader was in the removed segment: everything in it was acknowledged,
                // so it goes on at the start of the next.
                self.read = ReadCursor {
                    segment: 0,
                    offset: 0,
                    file: None,
                };
            }
        }
        Ok(())
    }
}

fn encode_frame(seq: u64, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(HEADER as usize + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&checksum(seq, payload).to_le_bytes());
    frame.extend_from_slice(&seq.to_le_bytes());
    frame.extend_from_slice(payload);
    frame
}

fn checksum(seq: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(payload);
    h.finalize()
}

enum Frame {
    Valid {
        seq: u64,
        payload: Vec<u8>,
    },
    /// Cut short, too long for what is left, or failing its CRC.
    Invalid,
}

/// Reads one frame from `r`, which has `available` bytes left in its segment.
fn read_frame(r: &mut impl Read, available: u64) -> io::Result<Frame> {
    if available < HEADER {
        return Ok(Frame::Invalid);
    }
    let mut header = [0u8; HEADER as usize];
    if let Err(e) = r.read_exact(&mut header) {
        return if e.kind() == io::ErrorKind::UnexpectedEof {
            Ok(Frame::Invalid)
        } else {
            Err(e)
        };
    }
    let [l0, l1, l2, l3, c0, c1, c2, c3, s @ ..] = header;
    let len = u64::from(u32::from_le_bytes([l0, l1, l2, l3]));
    let crc = u32::from_le_bytes([c0, c1, c2, c3]);
    let seq = u64::from_le_bytes(s);
    if len > available - HEADER {
        return Ok(Frame::Invalid);
    }
    let mut payload = vec![0u8; len as usize];
    if let Err(e) = r.read_exact(&mut payload) {
        return if e.kind() == io::ErrorKind::UnexpectedEof {
            Ok(Frame::Invalid)
        } else {
            Err(e)
        };
    }
    if checksum(seq, &payload) != crc || seq == 0 {
        return Ok(Frame::Invalid);
    }
    Ok(Frame::Valid { seq, payload })
}

/// What a segment holds, found by reading it whole.
#[derive(Debug, Default)]
struct Scan {
    first_seq: Option<u64>,
    last_seq: Option<u64>,
    seqs: Vec<u64>,
    valid_len: u64,
    corrupt_bytes: u64,
}

impl Scan {
    fn seqs_above(&self, acked: u64) -> u64 {
        self.seqs.iter().filter(|&&s| s > acked).count() as u64
    }
}

/// Reads every frame of a segment; stops at the first invalid one (or one whose sequence
/// number does not follow `after`: a segment mixed up with another is damage too).
fn scan_segment(path: &Path, mut after: u64) -> Result<Scan, LogError> {
    let file = File::open(path).map_err(io_at(path))?;
    let size = file.metadata().map_err(io_at(path))?.len();
    let mut r = BufReader::new(file);
    let mut scan = Scan::default();
    while scan.valid_len < size {
        match read_frame(&mut r, size - scan.valid_len).map_err(io_at(path))? {
            Frame::Valid { seq, payload } if seq > after => {
                scan.first_seq.get_or_insert(seq);
                scan.last_seq = Some(seq);
                scan.seqs.push(seq);
                scan.valid_len += HEADER + payload.len() as u64;
                after = seq;
            }
            _ => {
                scan.corrupt_bytes = size - scan.valid_len;
                break;
            }
        }
    }
    Ok(scan)
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{SEGMENT_PREFIX}{first_seq:020}{SEGMENT_SUFFIX}"))
}

/// The segment files of `dir`, oldest first. Other files are left alone.
fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, LogError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_at(dir))? {
        let entry = entry.map_err(io_at(dir))?;
        let name = entry.file_name();
        let Some(first) = name
            .to_str()
            .and_then(|n| n.strip_prefix(SEGMENT_PREFIX))
            .and_then(|n| n.strip_suffix(SEGMENT_SUFFIX))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        found.push((first, entry.path()));
    }
    found.sort();
    Ok(found)
}

fn create_segment(dir: &Path, first_seq: u64) -> Result<(File, Segment), LogError> {
    let path = segment_path(dir, first_seq);
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .map_err(io_at(&path))?;
    Ok((
        file,
        Segment {
            first_seq,
            path,
            len: 0,
        },
    ))
}

/// The acknowledged sequence number in `dir`; 0 when there is none or it is damaged (then
/// every record is read again: the durable sinks are idempotent, so replaying is safe and
/// losing is not).
fn read_ack(dir: &Path) -> u64 {
    let path = dir.join(ACK_FILE);
    let Ok(bytes) = fs::read(&path) else {
        return 0;
    };
    match <[u8; 12]>::try_from(bytes.as_slice()) {
        Ok([s0, s1, s2, s3, s4, s5, s6, s7, c0, c1, c2, c3]) => {
            let seq = [s0, s1, s2, s3, s4, s5, s6, s7];
            if crc32fast::hash(&seq) == u32::from_le_bytes([c0, c1, c2, c3]) {
                return u64::from_le_bytes(seq);
            }
            tracing::warn!(path = %path.display(), "disk buffer: the ack file is damaged; every record is replayed (the sinks are idempotent)");
            0
        }
        Err(_) => {
            tracing::warn!(path = %path.display(), "disk buffer: the ack file is damaged; every record is replayed (the sinks are idempotent)");
            0
        }
    }
}

fn write_ack(dir: &Path, seq: u64) -> Result<(), LogError> {
    let tmp = dir.join(ACK_TMP);
    let mut bytes = seq.to_le_bytes().to_vec();
    bytes.extend_from_slice(&crc32fast::hash(&seq.to_le_bytes()).to_le_bytes());
    fs::write(&tmp, &bytes).map_err(io_at(&tmp))?;
    let path = dir.join(ACK_FILE);
    fs::rename(&tmp, &path).map_err(io_at(&path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn records(log: &mut Log) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(r) = log.read_next().unwrap() {
            match r {
                ReadOutcome::Record { seq, payload } => out.push((seq, payload)),
                ReadOutcome::Corrupt { bytes } => panic!("unexpected corruption of {bytes} bytes"),
            }
        }
        out
    }

    fn payload(i: u64) -> Vec<u8> {
        format!("record {i}")
            .repeat((i % 7 + 1) as usize)
            .into_bytes()
    }

    #[test]
    fn appended_records_are_read_in_order_and_replayed_until_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, report) = Log::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(report, OpenReport::default());
        for i in 1..=5 {
            assert_eq!(log.append(&payload(i)).unwrap(), i);
        }
        let read = records(&mut log);
        assert_eq!(read.len(), 5);
        assert_eq!(read[2], (3, payload(3)));
        log.ack(2).unwrap();
        drop(log);

        let (mut log, report) = Log::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(
            report.unacked_records, 3,
            "records 3..=5 were not acknowledged"
        );
        let again = records(&mut log);
        assert_eq!(
            again,
            read[2..].to_vec(),
            "replayed, acknowledged ones skipped"
        );
        assert_eq!(log.append(b"new").unwrap(), 6, "numbers keep growing");
        log.ack(6).unwrap();
        assert!(log.is_empty());
    }

    #[test]
    fn a_torn_tail_is_counted_and_cut_and_the_records_before_it_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(dir.path(), 1 << 20).unwrap();
        for i in 1..=3 {
            log.append(&payload(i)).unwrap();
        }
        let path = log.active().path.clone();
        drop(log);
        // A crash in the middle of writing record 4: its header and half its payload.
        let frame = encode_frame(4, &payload(4));
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&frame[..frame.len() / 2]).unwrap();
        drop(f);

        let (mut log, report) = Log::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(report.corrupt_regions, 1);
        assert_eq!(report.corrupt_bytes, (frame.len() / 2) as u64);
        assert_eq!(report.unacked_records, 3);
        let read = records(&mut log);
        assert_eq!(read.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(
            log.append(b"after").unwrap(),
            4,
            "the torn record's number is reused"
        );
    }

    #[test]
    fn a_flipped_byte_fails_the_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(dir.path(), 1 << 20).unwrap();
        for i in 1..=4 {
            log.append(&payload(i)).unwrap();
        }
        let path = log.active().path.clone();
        drop(log);
        let mut bytes = fs::read(&path).unwrap();
        let second = HEADER as usize + payload(1).len();
        bytes[second + HEADER as usize + 1] ^= 0x40;
        fs::write(&path, &bytes).unwrap();

        let (mut log, report) = Log::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(report.corrupt_regions, 1);
        assert_eq!(records(&mut log), vec![(1, payload(1))]);
    }

    #[test]
    fn garbage_in_the_directory_never_panics() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(segment_path(dir.path(), 1), [0xff; 40]).unwrap();
        fs::write(segment_path(dir.path(), 7), [0u8; 3]).unwrap();
        fs::write(dir.path().join(ACK_FILE), b"nonsense").unwrap();
        fs::write(dir.path().join("notes.txt"), b"left alone").unwrap();
        let (mut log, report) = Log::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(report.corrupt_regions, 2);
        assert!(records(&mut log).is_empty());
        assert_eq!(log.append(b"x").unwrap(), 1);
        assert!(dir.path().join("notes.txt").exists());
    }

    #[test]
    fn the_bound_holds_until_acknowledgements_free_whole_segments() {
        let dir = tempfile::tempdir().unwrap();
        let max = 256 * 1024;
        let (mut log, _) = Log::open(dir.path(), max).unwrap();
        let record = vec![7u8; 1000];
        let mut n = 0;
        loop {
            match log.append(&record) {
                Ok(_) => n += 1,
                Err(LogError::Full { used, .. }) => {
                    assert!(used <= max);
                    break;
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert!(log.bytes() <= max);
        assert!(n >= 250, "about max / record fit: {n}");
        // Reading is not acknowledging: still full.
        while log.read_next().unwrap().is_some() {}
        assert!(matches!(log.append(&record), Err(LogError::Full { .. })));
        log.ack(n / 2).unwrap();
        assert!(log.bytes() < max / 2 + 2 * MIN_SEGMENT, "half reclaimed");
        assert!(log.append(&record).is_ok());
        log.ack(log.next_seq() - 1).unwrap();
        // Fully acknowledged: an oversized record is still admitted (into an empty log).
        assert!(log.append(&vec![0u8; (max + 10) as usize]).is_ok());
        assert!(matches!(log.append(&record), Err(LogError::Full { .. })));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Append(usize),
        Read,
        /// Acknowledge this many of the records read and not yet acknowledged.
        Ack(usize),
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0usize..3000).prop_map(Op::Append),
            3 => Just(Op::Read),
            2 => (0usize..6).prop_map(Op::Ack),
            1 => Just(Op::Reopen),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Against a model (a list of unacknowledged records): every record appended and not
        /// acknowledged is read exactly once per process, in order, across reopenings; the
        /// bound on disk holds; acknowledgements come back in order.
        #[test]
        fn the_log_behaves_like_an_ordered_queue(ops in proptest::collection::vec(op(), 1..120)) {
            let dir = tempfile::tempdir().unwrap();
            let max = 80 * 1024;
            let (mut log, _) = Log::open(dir.path(), max).unwrap();
            // (seq, payload) appended and not acknowledged, in order.
            let mut model: VecDeque<(u64, Vec<u8>)> = VecDeque::new();
            // How many records at the front of `model` were read in this process.
            let mut read = 0usize;
            for op in ops {
                match op {
                    Op::Append(len) => {
                        let data = vec![(len % 251) as u8; len];
                        match log.append(&data) {
                            Ok(seq) => model.push_back((seq, data)),
                            Err(LogError::Full { .. }) => prop_assert!(!model.is_empty()),
                            Err(e) => return Err(TestCaseError::fail(e.to_string())),
                        }
                    }
                    Op::Read => match log.read_next().unwrap() {
                        Some(ReadOutcome::Record { seq, payload }) => {
                            prop_assert_eq!(Some(&(seq, payload)), model.get(read));
                            read += 1;
                        }
                        Some(ReadOutcome::Corrupt { bytes }) => {
                            return Err(TestCaseError::fail(format!("corrupt {bytes}")));
                        }
                        None => prop_assert_eq!(read, model.len()),
                    },
                    Op::Ack(k) => {
                        let k = k.min(read);
                        if k > 0 {
                            let seq = model[k - 1].0;
                            log.ack(seq).unwrap();
                            model.drain(..k);
                            read -= k;
                        }
                    }
                    Op::Reopen => {
                        drop(log);
                        let (reopened, report) = Log::open(dir.path(), max).unwrap();
                        log = reopened;
                        prop_assert_eq!(report.corrupt_regions, 0);
                        prop_assert_eq!(report.unacked_records, model.len() as u64);
                        read = 0;
                    }
                }
                let largest = model.iter().map(|r| r.1.len() as u64 + HEADER).max().unwrap_or(0);
                prop_assert!(log.bytes() <= max.max(largest), "{} > {}", log.bytes(), max);
            }
        }
    }
}
