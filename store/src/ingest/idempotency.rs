//! `Idempotency-Key`: the answer to a stored batch is remembered under its key for a while, so
//! a client that lost the answer and sends the batch again gets the same answer without the
//! database being asked. Storage is idempotent without it (ON CONFLICT on (symbol, timestamp):
//! a replay inserts nothing and changes no rollup); the key saves the work and tells a replay
//! apart. A key sent again with a different body is refused (422): keys must name one batch.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an answer is remembered.
pub const TTL: Duration = Duration::from_secs(600);
/// Most keys remembered (oldest forgotten first); ~100 bytes each.
pub const CAPACITY: usize = 50_000;
/// Longest key accepted.
pub const MAX_KEY_LEN: usize = 255;

/// What a stored batch was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub accepted: u64,
    pub inserted: u64,
}

/// What the cache knows about a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    New,
    Same(Stored),
    OtherBody,
}

#[derive(Debug)]
struct Entry {
    body: u64,
    stored: Stored,
    at: Instant,
}

/// The remembered answers.
#[derive(Debug, Default)]
pub struct IdempotencyCache {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    order: VecDeque<(Instant, String)>,
}

impl IdempotencyCache {
    /// What is known of `key` for a body hashing to `body`.
    pub fn check(&self, key: &str, body: u64, now: Instant) -> Seen {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match inner.entries.get(key) {
            Some(e) if now.duration_since(e.at) < TTL => {
                if e.body == body {
                    Seen::Same(e.stored)
                } else {
                    Seen::OtherBody
                }
            }
            _ => Seen::New,
        }
    }

    /// Remembers the answer to a stored batch.
    pub fn remember(&self, key: &str, body: u64, stored: Stored, now: Instant) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((at, _)) = inner.order.front() {
            if inner.order.len() < CAPACITY && now.duration_since(*at) < TTL {
                break;
            }
            if let Some((at, old)) = inner.order.pop_front() {
                // Only the entry this queue slot was made for (a key stored again is newer).
                if inner.entries.get(&old).is_some_and(|e| e.at == at) {
                    inner.entries.remove(&old);
                }
            }
        }
        inner.entries.insert(
            key.to_owned(),
            Entry {
                body,
                stored,
                at: now,
            },
        );
        inner.order.push_back((now, key.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_names_one_body_until_it_expires() {
        let c = IdempotencyCache::default();
        let t = Instant::now();
        let s = Stored {
            accepted: 3,
            inserted: 2,
        };
        assert_eq!(c.check("k", 1, t), Seen::New);
        c.remember("k", 1, s, t);
        assert_eq!(c.check("k", 1, t), Seen::Same(s));
        assert_eq!(c.check("k", 2, t), Seen::OtherBody);
        assert_eq!(c.check("k", 1, t + TTL), Seen::New);
    }

    #[test]
    fn the_cache_is_bounded() {
        let c = IdempotencyCache::default();
        let t = Instant::now();
        let s = Stored {
            accepted: 1,
            inserted: 1,
        };
        for i in 0..CAPACITY + 10 {
            c.remember(&i.to_string(), 0, s, t);
        }
        let inner = c.inner.lock().unwrap_or_else(|p| p.into_inner());
        assert!(inner.entries.len() <= CAPACITY);
        assert!(!inner.entries.contains_key("0"));
    }
}
