//! A small pool of database sessions ([`PgSession`]: connected, migrated, staging table and
//! statements prepared). Each request takes one for the length of its transaction; a broken
//! session is dropped and a new one opened on the next request. Opening is bounded by
//! `connect_timeout`, so a request while the database is down fails fast (503) instead of
//! hanging.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use quotestream_db::{PgSession, PostgresConfig, PostgresError, connect_and_migrate};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Longest wait to open a session while serving a request (the database may be down).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Sessions to one database.
#[derive(Debug)]
pub struct Pool {
    config: PostgresConfig,
    idle: Mutex<Vec<PgSession>>,
    permits: Arc<Semaphore>,
}

/// Why no session could be had.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("{0}")]
    Open(#[from] PostgresError),
    #[error("no database connection within {0:?}")]
    Timeout(Duration),
}

impl Pool {
    /// A pool of at most `size` sessions, starting with `first` (opened at startup).
    pub fn new(config: PostgresConfig, size: usize, first: PgSession) -> Self {
        Self {
            config,
            idle: Mutex::new(vec![first]),
            permits: Arc::new(Semaphore::new(size.max(1))),
        }
    }

    pub fn config(&self) -> &PostgresConfig {
        &self.config
    }

    /// A session, waiting for a free one when all are busy (bounded by `wait`).
    pub async fn get(self: &Arc<Self>, wait: Duration) -> Result<Pooled, PoolError> {
        let permit = tokio::time::timeout(wait, Arc::clone(&self.permits).acquire_owned())
            .await
            .map_err(|_| PoolError::Timeout(wait))?
            // The semaphore is never closed.
            .map_err(|_| PoolError::Timeout(wait))?;
        let reused = {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            let mut found = None;
            while let Some(s) = idle.pop() {
                if !s.is_closed() {
                    found = Some(s);
                    break;
                }
            }
            found
        };
        let session = match reused {
            Some(s) => s,
            None => tokio::time::timeout(CONNECT_TIMEOUT, connect_and_migrate(&self.config))
                .await
                .map_err(|_| PoolError::Timeout(CONNECT_TIMEOUT))??,
        };
        Ok(Pooled {
            session: Some(session),
            pool: Arc::clone(self),
            _permit: permit,
        })
    }

    /// Drops every idle session (after the database restarted, they are all dead).
    pub fn clear(&self) {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// A session on loan; it goes back to the pool when dropped, unless [`Pooled::discard`] was
/// called or its connection is closed.
#[derive(Debug)]
pub struct Pooled {
    session: Option<PgSession>,
    pool: Arc<Pool>,
    _permit: OwnedSemaphorePermit,
}

impl Pooled {
    pub fn session(&mut self) -> Option<&mut PgSession> {
        self.session.as_mut()
    }

    /// The session's state is unknown (an error other than a server error mid-transaction):
    /// close it instead of returning it.
    pub fn discard(&mut self) {
        self.session = None;
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(s) = self.session.take()
            && !s.is_closed()
        {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(s);
        }
    }
}
