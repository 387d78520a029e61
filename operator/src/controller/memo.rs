//! The last plan of each stream, with what it was made of.
//!
//! Planning a stream of 100 000 tickers (parse the list, read the previous assignment back from
//! the shard ConfigMaps, rebalance, write every shard's `worker.json`) costs a few hundred
//! milliseconds of CPU, and most reconciles change none of its inputs: a Deployment turned
//! ready, a pod restarted, the periodic resync. Planning is a pure function of those inputs, so
//! a reconcile that finds them as the last one left them reads their metadata only (no ticker
//! list, no `worker.json` is transferred) and reuses the plan (docs/operator.md#scale).
//!
//! The inputs are named by resourceVersion: any change of the spec (generation), of the
//! tickersFrom ConfigMap, of the stored assignment or of any ConfigMap labelled with the stream
//! (a hand edit, one deleted, a look-alike added) makes a reconcile plan from scratch again.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use quotestream_api::{QuoteStream, TickerSet};

use crate::resources::plan::StreamPlan;

/// What a stream's plan is a function of, as resourceVersions (and the operator's settings,
/// fixed for the life of the process).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Inputs {
    uid: String,
    generation: Option<i64>,
    /// The tickersFrom ConfigMap's resourceVersion (None: the stream names none).
    tickers_from: Option<String>,
    /// `status.assignment` (hash, epoch): the plan's epoch follows it.
    assignment: Option<(String, i64)>,
    /// Every ConfigMap labelled with the stream: name → resourceVersion.
    config_maps: BTreeMap<String, String>,
}

impl Inputs {
    /// The inputs as the API server shows them now. `tickers_from` is the tickersFrom
    /// ConfigMap's version, `config_maps` the metadata of the ConfigMaps with the stream's label.
    pub(super) fn now<'a>(
        qs: &QuoteStream,
        tickers_from: Option<String>,
        config_maps: impl IntoIterator<Item = &'a ObjectMeta>,
    ) -> Self {
        Self {
            uid: qs.metadata.uid.clone().unwrap_or_default(),
            generation: qs.metadata.generation,
            tickers_from,
            assignment: qs
                .status
                .as_ref()
                .and_then(|s| s.assignment.as_ref())
                .map(|a| (a.hash.clone(), a.epoch)),
            config_maps: versions(config_maps),
        }
    }

    /// The inputs the next reconcile will find once this one's writes are seen: the stored
    /// assignment is the plan's (the status write records it) and the shard ConfigMaps are at
    /// the versions the API server gave them (`shard_maps`, written or found unchanged).
    pub(super) fn after<'a>(
        qs: &QuoteStream,
        tickers_from: Option<String>,
        plan: &StreamPlan,
        shard_maps: impl IntoIterator<Item = &'a ObjectMeta>,
    ) -> Self {
        Self {
            assignment: Some((plan.fingerprint.clone(), plan.epoch)),
            ..Self::now(qs, tickers_from, shard_maps)
        }
    }
}

fn versions<'a>(metas: impl IntoIterator<Item = &'a ObjectMeta>) -> BTreeMap<String, String> {
    metas
        .into_iter()
        .map(|m| {
            (
                m.name.clone().unwrap_or_default(),
                m.resource_version.clone().unwrap_or_default(),
            )
        })
        .collect()
}

/// A plan and the ticker set it was made from, valid while the inputs are unchanged.
#[derive(Debug)]
pub(super) struct Memo {
    pub tickers: Arc<TickerSet>,
    pub plan: Arc<StreamPlan>,
}

/// Per stream (`namespace/name`), the last settled plan.
#[derive(Debug, Default)]
pub(super) struct Memos(Mutex<HashMap<String, (Inputs, Arc<Memo>)>>);

impl Memos {
    /// The stream's plan, if it was made from exactly `inputs`.
    pub(super) fn get(&self, key: &str, inputs: &Inputs) -> Option<Arc<Memo>> {
        let memos = self.0.lock().ok()?;
        let (made_from, memo) = memos.get(key)?;
        (made_from == inputs).then(|| memo.clone())
    }

    /// Whether a plan of the stream is remembered (worth reading its inputs' versions).
    pub(super) fn holds(&self, key: &str) -> bool {
        self.0.lock().is_ok_and(|memos| memos.contains_key(key))
    }

    /// Remembers a settled plan: every shard ConfigMap holds it and nothing else carries the
    /// stream's label.
    pub(super) fn keep(&self, key: &str, inputs: Inputs, memo: Arc<Memo>) {
        if let Ok(mut memos) = self.0.lock() {
            memos.insert(key.to_owned(), (inputs, memo));
        }
    }

    /// Forgets the stream's plan: it was deleted, or a reconcile could not settle it.
    pub(super) fn forget(&self, key: &str) {
        if let Ok(mut memos) = self.0.lock() {
            memos.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::fixtures::{plan, stream, tickers};

    fn meta(name: &str, version: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            resource_version: Some(version.into()),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn the_inputs_a_settled_plan_leaves_are_the_ones_the_next_reconcile_finds() {
        let mut qs = stream("sp500", 2);
        let p = plan(&qs, &tickers(&["AAPL", "MSFT", "NVDA"]));
        let maps = [meta("sp500-shard-0", "11"), meta("sp500-shard-1", "12")];
        let left = Inputs::after(&qs, Some("7".into()), &p, &maps);
        // Before the status write is seen the stored assignment differs: plan again.
        assert_ne!(Inputs::now(&qs, Some("7".into()), &maps), left);
        let status = qs.status.get_or_insert_default();
        status.assignment = Some(quotestream_api::crd::AssignmentStatus {
            hash: p.fingerprint.clone(),
            epoch: p.epoch,
        });
        assert_eq!(Inputs::now(&qs, Some("7".into()), &maps), left);
    }

    #[test]
    fn any_changed_version_is_a_miss() {
        let qs = stream("sp500", 2);
        let p = Arc::new(plan(&qs, &tickers(&["AAPL", "MSFT"])));
        let memos = Memos::default();
        let maps = [meta("sp500-shard-0", "11"), meta("sp500-shard-1", "12")];
        let inputs = Inputs::now(&qs, Some("7".into()), &maps);
        let memo = Arc::new(Memo {
            tickers: Arc::new(tickers(&["AAPL", "MSFT"])),
            plan: p,
        });
        assert!(!memos.holds("markets/sp500"));
        memos.keep("markets/sp500", inputs.clone(), memo);
        assert!(memos.holds("markets/sp500"));
        assert!(memos.get("markets/sp500", &inputs).is_some());

        let edited = [meta("sp500-shard-0", "11"), meta("sp500-shard-1", "13")];
        let added = [
            meta("sp500-shard-0", "11"),
            meta("sp500-shard-1", "12"),
            meta("look-alike", "5"),
        ];
        let mut respecced = qs.clone();
        respecced.metadata.generation = Some(2);
        for (what, other) in [
            (
                "a ConfigMap edited",
                Inputs::now(&qs, Some("7".into()), &edited),
            ),
            (
                "a ConfigMap added",
                Inputs::now(&qs, Some("7".into()), &added),
            ),
            (
                "the ticker list edited",
                Inputs::now(&qs, Some("8".into()), &maps),
            ),
            (
                "the spec changed",
                Inputs::now(&respecced, Some("7".into()), &maps),
            ),
        ] {
            assert!(memos.get("markets/sp500", &other).is_none(), "{what}");
        }
        memos.forget("markets/sp500");
        assert!(memos.get("markets/sp500", &inputs).is_none(), "forgotten");
    }
}
