//! GET /health: the seed's checks as JSON (database, timescaledb, hypertable — here the kind of
//! table: hypertable, partitioned or plain — and migrations current); 200 when the store can
//! take batches, 503 otherwise. GET /ready: 200 until shutdown begins (see [`get_ready`]).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use quotestream_db::{Rollups, SchemaStatus, describe, schema_status};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::ingest::Ingest;

/// Longest a health check waits for the database.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What /health and /ready need.
#[derive(Debug)]
pub struct Health {
    pub ingest: Arc<Ingest>,
    pub shutdown: CancellationToken,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Report {
    /// `healthy` or `unhealthy`.
    pub status: &'static str,
    pub checks: Checks,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Checks {
    pub database: Check,
    pub timescaledb: Check,
    pub hypertable: Check,
    pub migrations: Check,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Check {
    pub ok: bool,
    pub detail: String,
}

impl Check {
    fn new(ok: bool, detail: impl Into<String>) -> Self {
        Self {
            ok,
            detail: detail.into(),
        }
    }
}

async fn status(health: &Health) -> Result<SchemaStatus, String> {
    let pool = &health.ingest.pool;
    let mut pooled = pool.get(CHECK_TIMEOUT).await.map_err(|e| e.to_string())?;
    let table = pool.config().table.clone();
    let Some(session) = pooled.session() else {
        return Err("no session".into());
    };
    let extra: &[i32] = match session.migrations().rollups {
        Some(Rollups::ContinuousAggregates) => &[11, 12, 13, 30],
        Some(Rollups::Tables) => &[10, 12, 13, 30],
        None => &[],
    };
    match tokio::time::timeout(
        CHECK_TIMEOUT,
        schema_status(session.client(), &table, extra),
    )
    .await
    {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => {
            if e.as_db_error().is_none() {
                pooled.discard();
            }
            Err(describe(&e))
        }
        Err(_) => {
            pooled.discard();
            Err(format!("no answer within {CHECK_TIMEOUT:?}"))
        }
    }
}

/// The report for a status (or the error reaching the database).
pub fn report(status: &Result<SchemaStatus, String>) -> Report {
    let checks = match status {
        Err(e) => Checks {
            database: Check::new(false, e.clone()),
            timescaledb: Check::new(false, "unknown: the database is unreachable"),
            hypertable: Check::new(false, "unknown: the database is unreachable"),
            migrations: Check::new(false, "unknown: the database is unreachable"),
        },
        Ok(s) => Checks {
            database: Check::new(true, "connected"),
            // Optional: the plain-PostgreSQL path is complete without it.
            timescaledb: Check::new(
                true,
                match (&s.timescale_version, s.timescale_available) {
                    (Some(v), _) => format!("installed (version {v})"),
                    (None, true) => "available but not installed".to_owned(),
                    (None, false) => {
                        "not available on this server: plain PostgreSQL (partitions and rollup tables)".to_owned()
                    }
                },
            ),
            hypertable: Check::new(
                s.kind != quotestream_db::TableKind::Missing,
                s.kind.as_str(),
            ),
            migrations: Check::new(
                s.current(),
                if s.current() {
                    format!("current (applied {:?})", s.applied)
                } else {
                    format!("pending {:?} (applied {:?})", s.pending, s.applied)
                },
            ),
        },
    };
    let ok = checks.database.ok && checks.hypertable.ok && checks.migrations.ok;
    Report {
        status: if ok { "healthy" } else { "unhealthy" },
        checks,
    }
}

/// The seed's health checks.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses(
        (status = 200, description = "The store can take batches", body = Report),
        (status = 503, description = "It cannot; the checks say why", body = Report)))]
pub async fn get_health(State(health): State<Arc<Health>>) -> (StatusCode, Json<Report>) {
    let r = report(&status(&health).await);
    let code = if r.status == "healthy" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(r))
}

#[utoipa::path(get, path = "/ready", tag = "operations",
    responses(
        (status = 200, description = "Serving (from the end of startup until SIGTERM)", content_type = "text/plain", body = String),
        (status = 503, description = "Shutting down", content_type = "text/plain", body = String)))]
/// Ready from the end of startup (migrations applied) until shutdown begins. Deliberately not
/// tied to the database: while it is down the store must stay in the Service to answer 503 +
/// Retry-After, which the worker's breaker and retries act on.
pub async fn get_ready(State(health): State<Arc<Health>>) -> (StatusCode, &'static str) {
    if health.shutdown.is_cancelled() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down: draining in-flight requests\n",
        )
    } else {
        (StatusCode::OK, "ready\n")
    }
}
