//! The status this operator last wrote for each stream, for as long as the watch cache may not
//! show it yet.
//!
//! A reconcile compares the status it computes with the stored one and writes only a
//! difference. The stream it is given comes from the watch cache, which lags the API server: a
//! reconcile triggered by a Deployment event right after a status write may still see the
//! stream as it was before that write — or, after two quick writes, as the *first* write left
//! it. Comparing with that stale status would send the same status again (a redundant write,
//! and one more watch event for every client). So each write remembers which versions of the
//! stream it supersedes: the version it was based on, and the versions this operator's own
//! earlier writes produced. While the cache shows one of those, the written status is the
//! stored one; any other version (the write itself, or a later change by anyone) is read from
//! the cache as it is.

use std::collections::HashMap;
use std::sync::Mutex;

use quotestream_api::QuoteStreamStatus;

/// Versions remembered as superseded per stream: far more than the writes a reconcile burst
/// makes before the cache catches up.
const MAX_SUPERSEDED: usize = 32;

#[derive(Debug)]
struct Written {
    status: QuoteStreamStatus,
    /// The resourceVersion the write produced (None when the answer carried none).
    produced: Option<String>,
    /// Versions older than the write, oldest first.
    superseded: Vec<String>,
}

/// Per stream (`namespace/name`), the last status written and the versions it supersedes.
#[derive(Debug, Default)]
pub(super) struct OwnStatuses {
    streams: Mutex<HashMap<String, Written>>,
}

impl OwnStatuses {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Written>> {
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A status was written to the stream seen at `based_on`; the API server answered with
    /// version `produced`.
    pub fn remember(
        &self,
        key: &str,
        based_on: &str,
        produced: Option<String>,
        status: QuoteStreamStatus,
    ) {
        let mut streams = self.lock();
        let mut superseded = streams
            .remove(key)
            .map(|w| {
                let mut v = w.superseded;
                v.extend(w.produced);
                v
            })
            .unwrap_or_default();
        superseded.push(based_on.to_owned());
        superseded.dedup();
        if superseded.len() > MAX_SUPERSEDED {
            superseded.drain(..superseded.len() - MAX_SUPERSEDED);
        }
        streams.insert(
            key.to_owned(),
            Written {
                status,
                produced,
                superseded,
            },
        );
    }

    /// The status stored for a stream the cache shows at `version`: the one this operator wrote
    /// when that version predates the write, otherwise None (the cached status is current).
    pub fn stored(&self, key: &str, version: &str) -> Option<QuoteStreamStatus> {
        let mut streams = self.lock();
        let written = streams.get(key)?;
        if written.superseded.iter().any(|v| v == version) {
            return Some(written.status.clone());
        }
        if written.produced.as_deref() == Some(version) {
            // The cache has caught up with the write: nothing left to bridge.
            streams.remove(key);
        }
        None
    }

    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(ready: i32) -> QuoteStreamStatus {
        QuoteStreamStatus {
            ready_shards: ready,
            ..QuoteStreamStatus::default()
        }
    }

    #[test]
    fn the_cache_before_a_write_compares_with_the_written_status() {
        let own = OwnStatuses::default();
        own.remember("ns/s", "10", Some("11".into()), status(2));
        assert_eq!(own.stored("ns/s", "10"), Some(status(2)));
        // The cache caught up: its status is the written one.
        assert_eq!(own.stored("ns/s", "11"), None);
        assert_eq!(own.stored("ns/s", "10"), None, "forgotten once caught up");
    }

    #[test]
    fn a_cache_between_two_own_writes_compares_with_the_last() {
        // Two writes based on the same cached version: the cache may next show the first
        // write's version, whose status is already superseded.
        let own = OwnStatuses::default();
        own.remember("ns/s", "10", Some("11".into()), status(1));
        own.remember("ns/s", "10", Some("12".into()), status(2));
        assert_eq!(own.stored("ns/s", "10"), Some(status(2)));
        assert_eq!(own.stored("ns/s", "11"), Some(status(2)));
        assert_eq!(own.stored("ns/s", "12"), None);
    }

    #[test]
    fn a_change_by_someone_else_is_read_from_the_cache() {
        let own = OwnStatuses::default();
        own.remember("ns/s", "10", Some("11".into()), status(1));
        assert_eq!(own.stored("ns/s", "15"), None);
        assert_eq!(own.stored("ns/t", "10"), None, "another stream");
    }

    #[test]
    fn the_superseded_versions_are_bounded() {
        let own = OwnStatuses::default();
        for v in 0..100u32 {
            own.remember(
                "ns/s",
                &v.to_string(),
                Some((v + 1000).to_string()),
                status(1),
            );
        }
        assert_eq!(own.stored("ns/s", "0"), None, "the oldest are dropped");
        assert_eq!(own.stored("ns/s", "99"), Some(status(1)));
        assert_eq!(own.stored("ns/s", "1098"), Some(status(1)));
    }
}
