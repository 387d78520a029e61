//! A reconcile's first step: the stream's tickers, its stored assignment and the plan — reused
//! from the last reconcile when none of their inputs changed (`memo`), made afresh otherwise.

use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::runtime::events::EventType;
use quotestream_api::crd::STREAM_LABEL;
use quotestream_api::{QuoteStream, TickerSet};

use super::memo::{Inputs, Memo};
use super::{Context, Error, StreamApi, key, publish};
use crate::resources::meta::controlled_by;
use crate::resources::plan::{PlanError, StreamPlan};
use crate::resources::previous::{Previous, Skipped, read_previous};

/// What the plan was made from, and whether the shard ConfigMaps already hold it.
pub(super) struct Planned {
    pub tickers: Arc<TickerSet>,
    pub plan: Arc<StreamPlan>,
    /// The assignment read back from the shard ConfigMaps (None when reused: they hold the plan).
    pub previous: Option<Previous>,
    /// The ConfigMaps labelled with the stream: whole when planned afresh, metadata only when
    /// the plan was reused.
    pub config_maps: Vec<ConfigMap>,
    /// The plan was reused: every shard ConfigMap holds it, nothing to write.
    pub settled: bool,
    /// The tickersFrom ConfigMap's resourceVersion, for the memo this reconcile may leave.
    pub tickers_from: Option<String>,
    /// Whether the stored state had nothing to ignore (a plan is remembered only then).
    pub clean: bool,
}

/// Plans the stream, or says why it cannot be (a spec the operator cannot act on).
pub(super) async fn plan(
    stream: &StreamApi,
    qs: &QuoteStream,
    ctx: &Context,
) -> Result<Result<Planned, PlanError>, Error> {
    let key = key(qs);
    // Nothing remembered (a new stream, a restarted operator, the last plan failed): plan.
    if !ctx.memos.holds(&key) {
        return afresh(stream, qs, ctx).await;
    }
    // Metadata only: which versions the inputs are at (both reads at once: this is most of a
    // settled reconcile's time).
    let tickers_from = async {
        match &qs.spec.tickers_from {
            Some(from) => Ok(stream
                .config_maps
                .get_metadata_opt(&from.config_map_key_ref.name)
                .await?
                .and_then(|m| m.metadata.resource_version)),
            None => Ok::<_, kube::Error>(None),
        }
    };
    let labelled = stream.config_maps.list_metadata(&stream.selector);
    let (tickers_from, labelled) = tokio::try_join!(tickers_from, labelled)?;
    let labelled = labelled.items;
    let now = Inputs::now(
        qs,
        tickers_from.clone(),
        labelled.iter().map(|m| &m.metadata),
    );
    if let Some(memo) = ctx.memos.get(&key, &now) {
        tracing::debug!(stream = %key, "inputs unchanged: the last plan holds");
        return Ok(Ok(Planned {
            tickers: memo.tickers.clone(),
            plan: memo.plan.clone(),
            previous: None,
            config_maps: labelled
                .into_iter()
                .map(|m| ConfigMap {
                    metadata: m.metadata,
                    ..ConfigMap::default()
                })
                .collect(),
            settled: true,
            tickers_from,
            clean: true,
        }));
    }
    ctx.memos.forget(&key);
    afresh(stream, qs, ctx).await
}

/// Tickers (inline plus the tickersFrom ConfigMap), the stored assignment, then the plan.
async fn afresh(
    stream: &StreamApi,
    qs: &QuoteStream,
    ctx: &Context,
) -> Result<Result<Planned, PlanError>, Error> {
    let list = stream.ticker_list(qs).await?;
    let tickers_from = list.as_ref().and_then(|cm| cm.resource_version());
    let text = list.and_then(|cm| {
        let key = &qs.spec.tickers_from.as_ref()?.config_map_key_ref.key;
        cm.data?.remove(key)
    });
    let tickers = match qs.spec.ticker_set(text.as_deref()) {
        Ok(t) => t,
        Err(e) => return Ok(Err(PlanError::from(e))),
    };
    let config_maps = stream.config_maps.list(&stream.selector).await?.items;
    // Only the stream's own ConfigMaps are its stored state: a look-alike with its labels (made
    // by hand, another tool) must neither steer the assignment nor shadow a real shard.
    let uid = qs.metadata.uid.as_deref().unwrap_or_default();
    let (own_maps, strangers): (Vec<&ConfigMap>, Vec<&ConfigMap>) = config_maps
        .iter()
        .partition(|cm| controlled_by(&cm.metadata, uid));
    let (previous, mut skipped) = read_previous(&stream.name, own_maps);
    skipped.extend(strangers.iter().map(|cm| Skipped {
        config_map: cm.name_any(),
        reason: "the QuoteStream is not its controlling owner".to_owned(),
    }));
    for skipped in &skipped {
        let note = format!(
            "ConfigMap {} is labelled {STREAM_LABEL}={} but was ignored: {}",
            skipped.config_map, stream.name, skipped.reason
        );
        tracing::warn!(stream = %key(qs), config_map = %skipped.config_map, reason = %skipped.reason, "shard ConfigMap ignored");
        publish(
            ctx,
            &stream.reference,
            EventType::Warning,
            "IgnoredConfigMap",
            note,
        )
        .await;
    }
    let plan = match StreamPlan::new(
        qs,
        &tickers,
        previous.as_ref().map(|p| &p.assignment),
        &ctx.settings,
    ) {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };
    Ok(Ok(Planned {
        tickers: Arc::new(tickers),
        plan: Arc::new(plan),
        previous,
        config_maps,
        settled: false,
        tickers_from,
        clean: skipped.is_empty(),
    }))
}

/// After a reconcile that left every shard ConfigMap holding the plan (`shard_maps`, as the API
/// server returned or listed them): remember the plan for the next reconcile.
pub(super) fn remember(
    ctx: &Context,
    qs: &QuoteStream,
    planned: Planned,
    shard_maps: &[ConfigMap],
) {
    if planned.settled || !planned.clean {
        return;
    }
    let inputs = Inputs::after(
        qs,
        planned.tickers_from,
        &planned.plan,
        shard_maps.iter().map(|cm| &cm.metadata),
    );
    let memo = Memo {
        tickers: planned.tickers,
        plan: planned.plan,
    };
    ctx.memos.keep(&key(qs), inputs, Arc::new(memo));
}
