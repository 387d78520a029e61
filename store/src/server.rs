//! Startup (configuration, migrations — the process exits non-zero with the reason when the
//! database is unreachable or refuses them), the routes, and the drain on SIGTERM: /ready
//! turns 503, the listener stops accepting, in-flight requests finish (bounded by
//! `--drain-timeout`), then the process exits 0.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef};
use quotestream_api::batch;
use quotestream_db::{PgSession, PostgresConfig, connect_and_migrate, describe, partitions};
use tokio_util::sync::CancellationToken;

use crate::cli::{DbArgs, ServeArgs};
use crate::health::{self, Health};
use crate::ingest::{self, Ingest};
use crate::metrics::{self, Metrics};
use crate::openapi::{self, ApiDoc};
use crate::page;
use crate::pool::Pool;
use crate::query::{self, ApiToken, QueryApi, Reader};
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// `application_name` of the store's connections.
const APPLICATION_NAME: &str = "quotestream-store";
/// `application_name` of the rollup merger's session (its own line in `pg_stat_activity`).
pub const MERGER_APPLICATION_NAME: &str = "quotestream-store rollup merger";

fn config(db: &DbArgs) -> anyhow::Result<PostgresConfig> {
    let config = PostgresConfig::new(db.database_url.clone(), &db.table)
        .map_err(|e| anyhow::anyhow!("{}", for_store(&e.to_string())))?;
    let mut config = config.with_application_name(APPLICATION_NAME);
    config.rollups = true;
    Ok(config)
}

/// The shared configuration errors speak of the worker's CRD fields; the store's come from
/// `--database-url`/`DATABASE_URL` and `--table`.
fn for_store(message: &str) -> String {
    message
        .replace(
            "the Deployment sets it from spec.sinks.postgres.dsnSecretRef; check that the Secret and key exist and hold a connection string",
            "set it (or --database-url) to a connection string",
        )
        .replace("in the Secret of spec.sinks.postgres.dsnSecretRef", "in DATABASE_URL")
        .replace("spec.sinks.postgres.table", "--table")
}

/// `quotestream-store migrate`.
pub async fn migrate_only(db: DbArgs) -> anyhow::Result<()> {
    let config = config(&db)?;
    let session = connect_and_migrate(&config)
        .await
        .context("applying the migrations")?;
    tracing::info!(table = %config.table, report = ?session.migrations(), "migrations applied");
    Ok(())
}

/// Everything the handlers need; each takes its part (`State<Arc<Ingest>>`, …) by [`FromRef`].
#[derive(Debug, Clone)]
pub struct AppState {
    pub ingest: Arc<Ingest>,
    pub health: Arc<Health>,
    pub query: Arc<QueryApi>,
}

impl FromRef<AppState> for Arc<Ingest> {
    fn from_ref(s: &AppState) -> Self {
        Arc::clone(&s.ingest)
    }
}

impl FromRef<AppState> for Arc<Health> {
    fn from_ref(s: &AppState) -> Self {
        Arc::clone(&s.health)
    }
}

impl FromRef<AppState> for Arc<QueryApi> {
    fn from_ref(s: &AppState) -> Self {
        Arc::clone(&s.query)
    }
}

impl FromRef<AppState> for Metrics {
    fn from_ref(s: &AppState) -> Self {
        s.ingest.metrics.clone()
    }
}

/// Every route the store serves, each registered with its OpenAPI operation
/// ([`crate::openapi`]): the one list of routes.
pub fn api(max_body_bytes: usize) -> OpenApiRouter<AppState> {
    let ingest = OpenApiRouter::new()
        .routes(routes!(ingest::post_batch))
        // The handler enforces `max_body_bytes` itself (and drains before answering 413).
        .layer(DefaultBodyLimit::max(max_body_bytes.max(1)));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(ingest)
        .routes(routes!(health::get_health))
        .routes(routes!(health::get_ready))
        .routes(routes!(metrics::get_metrics))
        .routes(routes!(openapi::get_openapi))
        .routes(routes!(page::get_index))
        .routes(routes!(page::get_app))
        .routes(routes!(query::get_symbols))
        .routes(routes!(query::get_latest))
        .routes(routes!(query::get_quotes))
        .routes(routes!(query::get_count))
        .routes(routes!(query::get_bars))
        .routes(routes!(query::get_multi_bars))
}

/// The routes, for `state`.
pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    let (router, _) = api(max_body_bytes).split_for_parts();
    router.with_state(state)
}

/// How often the partitions are maintained (next month's made, expired ones dropped).
const MAINTENANCE_EVERY: Duration = Duration::from_secs(3600);

/// Runs [`partitions::maintain`] now and every [`MAINTENANCE_EVERY`] until `stop`; failures
/// are logged and retried at the next round (writes do not depend on it: rows without a
/// partition go to the default one).
async fn maintain_partitions(pool: Arc<Pool>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(MAINTENANCE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        let table = pool.config().table.clone();
        let done = match pool.get(Duration::from_secs(30)).await {
            Ok(mut pooled) => match pooled.session() {
                Some(s) => partitions::maintain(s.client(), &table, jiff::Timestamp::now())
                    .await
                    .map_err(|e| describe(&e)),
                None => Err("no session".into()),
            },
            Err(e) => Err(e.to_string()),
        };
        match done {
            Ok(m) if m != partitions::Maintenance::default() => {
                tracing::info!(created = ?m.created, dropped = ?m.dropped, expired_default_rows = m.expired_default_rows, "partition maintenance");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "partition maintenance failed; retried in an hour")
            }
        }
    }
}

/// Folds the rollup queue into the rollups on a session of its own (outside the pool, so it
/// never takes a request's connection) until `stop`, then once more until the queue is empty
/// (bounded by `drain`). Failures are logged and retried; queued rows wait, nothing is lost.
///
/// `every` (`--rollup-interval`) is the least time from one merge's start to the next: how far
/// the rollups may lag the inserts. Under load the merger does not run back to back: each
/// merge then folds what `every` of batches queued, so every bar, hour, day and latest quote
/// it touches is upserted once per interval instead of once per few batches (the upserts, not
/// the partials, are most of the merger's CPU, and it shares the cores with ingest).
async fn merge_rollups(
    config: PostgresConfig,
    metrics: Metrics,
    stop: CancellationToken,
    drain: Duration,
    every: Duration,
) {
    let mut session: Option<PgSession> = None;
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        if deadline.is_none() && stop.is_cancelled() {
            deadline = Some(tokio::time::Instant::now() + drain);
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            tracing::warn!(
                "the rollup queue was not empty at the drain deadline; the next start merges the rest"
            );
            return;
        }
        let s = match &mut session {
            Some(s) if !s.is_closed() => s,
            slot => match connect_and_migrate(&config).await {
                Ok(s) => slot.insert(s),
                Err(e) => {
                    metrics.db_errors.with_label_values(&["rollup"]).inc();
                    tracing::warn!(error = %e, "rollup merger: no database session; retrying");
                    *slot = None;
                    if deadline.is_some() {
                        return;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        () = stop.cancelled() => {}
                    }
                    continue;
                }
            },
        };
        let started = tokio::time::Instant::now();
        match s.merge_rollups().await {
            Ok(0) if deadline.is_some() => return,
            Ok(n) => {
                metrics.rollup_rows.inc_by(n);
                // While draining, the queue is emptied at once.
                if deadline.is_none() {
                    tokio::select! {
                        () = tokio::time::sleep_until(started + every) => {}
                        () = stop.cancelled() => {}
                    }
                }
            }
            Err(e) => {
                // Its own kind: a failing merge leaves ingest untouched (the batches are still
                // stored), and alerts tell the two apart (docs/alerts.md).
                metrics.db_errors.with_label_values(&["rollup"]).inc();
                tracing::warn!(error = %describe(&e), "rollup merge failed; retrying");
                if e.as_db_error().is_none() {
                    session = None;
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = stop.cancelled() => {}
                }
            }
        }
    }
}

/// `quotestream-store serve`.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = config(&args.db)?;
    let api_token = args
        .api_token
        .as_deref()
        .map(ApiToken::new)
        .transpose()
        .map_err(|e| anyhow::anyhow!(e))?;
    let first = connect_and_migrate(&config)
        .await
        .context("starting: the database must be reachable and accept the migrations")?;
    tracing::info!(
        server = %config.server(),
        table = %config.table,
        migrations = ?first.migrations(),
        "database ready"
    );
    let metrics = Metrics::new().context("registering the metrics")?;
    let shutdown = quotestream_runtime::shutdown_on_signal("draining in-flight requests");
    let merger = tokio::spawn(merge_rollups(
        config
            .clone()
            .with_application_name(MERGER_APPLICATION_NAME),
        metrics.clone(),
        shutdown.clone(),
        args.drain_timeout,
        args.rollup_interval,
    ));
    let pool = Arc::new(Pool::new(config, args.connections, first));
    let ingest = Arc::new(Ingest {
        pool: Arc::clone(&pool),
        queue: ingest::group::Queue::default(),
        metrics: metrics.clone(),
        cache: ingest::idempotency::IdempotencyCache::default(),
        retry_after: args.retry_after_secs,
        max_body_bytes: args.max_body_bytes,
    });
    let health = Arc::new(Health {
        ingest: Arc::clone(&ingest),
        shutdown: shutdown.clone(),
    });
    let query = Arc::new(QueryApi {
        reader: Reader::new(pool.config(), args.read_connections, args.retry_after_secs)?,
        token: api_token,
    });
    let query_auth = if query.token.is_some() {
        "required"
    } else {
        "off"
    };
    let app = router(
        AppState {
            ingest,
            health,
            query,
        },
        args.max_body_bytes,
    );
    // The listener stops when `stop` fires, a moment after `shutdown`: /ready answers 503 in
    // between, and requests already accepted finish.
    let stop = CancellationToken::new();
    let (bound, server) = quotestream_runtime::serve(args.listen, app, stop.clone())
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    tokio::spawn(metrics.track_rate(Duration::from_secs(5), stop.clone()));
    tokio::spawn(maintain_partitions(Arc::clone(&pool), stop.clone()));
    tracing::info!(
        listen = %bound,
        read_api_token = query_auth,
        "quotestream-store serving POST {}, the read API under /v1, the page at /",
        batch::PATH
    );
    shutdown.cancelled().await;
    stop.cancel();
    match tokio::time::timeout(args.drain_timeout, server).await {
        Ok(_) => tracing::info!("drained in-flight requests"),
        Err(_) => tracing::warn!(
            timeout = ?args.drain_timeout,
            "in-flight requests did not finish within the drain timeout; stopping anyway"
        ),
    }
    // The merger empties the queue (bounded by the drain timeout) after the last request.
    let _ = merger.await;
    tracing::info!("stopped");
    Ok(())
}
