//! What the operator keeps per stream outside Kubernetes — the per-stream metric series and the
//! retry backoff — must go when the stream goes. A deleted stream is never reconciled again
//! (the controller's store no longer has it) and the operator uses no finalizers, so a watch on
//! the streams' metadata does it: a Delete event forgets the stream, and a relist (after the
//! watch reconnected) forgets every stream that is no longer listed. It also keeps
//! `quotestream_streams` current.

use std::collections::BTreeSet;

use futures_util::StreamExt;
use kube::api::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, ResourceExt};
use quotestream_api::QuoteStream;
use tokio_util::sync::CancellationToken;

use super::Context;

type Key = (String, String);

fn key(meta: &PartialObjectMeta<QuoteStream>) -> Key {
    (meta.namespace().unwrap_or_default(), meta.name_any())
}

/// Runs until `shutdown` is cancelled.
pub(super) async fn forget_deleted_streams(
    streams: Api<PartialObjectMeta<QuoteStream>>,
    ctx: &Context,
    shutdown: CancellationToken,
) {
    // An `Api<PartialObjectMeta<_>>` watches metadata only: no specs are transferred.
    let mut events = watcher::watcher(streams, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut existing: BTreeSet<Key> = BTreeSet::new();
    let mut relisted: BTreeSet<Key> = BTreeSet::new();
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            event = events.next() => event,
        };
        match event {
            None => return,
            // The backoff retries; the controller's own watch reports the same problem.
            Some(Err(e)) => tracing::debug!(error = %e, "stream metadata watch"),
            Some(Ok(Event::Apply(meta))) => {
                existing.insert(key(&meta));
            }
            Some(Ok(Event::Delete(meta))) => {
                let (namespace, name) = key(&meta);
                existing.remove(&(namespace.clone(), name.clone()));
                ctx.forget(&namespace, &name);
            }
            Some(Ok(Event::Init)) => relisted.clear(),
            Some(Ok(Event::InitApply(meta))) => {
                relisted.insert(key(&meta));
            }
            Some(Ok(Event::InitDone)) => {
                // Only what was seen to exist and is gone now: a stream created since the list
                // arrives as an Apply, and must not lose the series its reconcile just set.
                for (namespace, name) in existing.difference(&relisted) {
                    ctx.forget(namespace, name);
                }
                existing = std::mem::take(&mut relisted);
            }
        }
        ctx.metrics
            .streams
            .set(i64::try_from(existing.len()).unwrap_or(i64::MAX));
    }
}
