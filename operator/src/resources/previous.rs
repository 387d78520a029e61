//! The previous assignment, read back from the shard ConfigMaps the operator wrote: the per-shard
//! ticker lists are the stored state that `rebalance` evolves (docs/sharding.md).

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::ConfigMap;
use quotestream_api::sharding::Assignment;
use quotestream_api::worker_config::WORKER_CONFIG_KEY;
use quotestream_api::{Ticker, WorkerConfig};

use super::meta::{SHARD_INDEX_LIMIT, shard_index};

/// What the shard ConfigMaps say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Previous {
    /// One list per shard up to the highest index found; a missing or unreadable shard is an
    /// empty list, which `rebalance` refills from the pool.
    pub assignment: Assignment,
    /// The highest epoch any shard was written with.
    pub epoch: i64,
    /// What each readable shard ConfigMap lists, as written: during a hand-over a moving ticker
    /// is listed by its old and its new owner (see [`super::handover`]).
    pub listed: BTreeMap<u32, Vec<Ticker>>,
    /// ConfigMaps that could not be used, with the reason (worth a warning event).
    pub skipped: Vec<Skipped>,
}

/// A shard ConfigMap left out of the previous assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub config_map: String,
    pub reason: String,
}

/// Rebuilds the previous assignment of `stream` from its shard ConfigMaps (e.g. listed with the
/// `quotes.opa.io/stream=<stream>` selector). `None` when none is usable: the stream is new, or
/// its stored state is gone, and the plan starts from `balanced_split`.
///
/// A ticker on two shards is normal after an interrupted hand-over (the new owner is written
/// before the old one lets go): the shard written at the higher epoch keeps it, the lower index
/// on a tie, so the result is the same wherever it is computed.
pub fn previous_assignment(stream: &str, config_maps: &[ConfigMap]) -> Option<Previous> {
    read_previous(stream, config_maps).0
}

/// [`previous_assignment`], and the ConfigMaps left out of it even when none was usable (a
/// hand-made ConfigMap with the stream's label is worth a warning naming it).
pub fn read_previous<'a>(
    stream: &str,
    config_maps: impl IntoIterator<Item = &'a ConfigMap>,
) -> (Option<Previous>, Vec<Skipped>) {
    let mut skipped = Vec::new();
    let mut shards: BTreeMap<u32, (i64, Vec<Ticker>)> = BTreeMap::new();
    for cm in config_maps {
        let name = cm.metadata.name.clone().unwrap_or_default();
        match read(stream, cm) {
            Ok((index, _)) if shards.contains_key(&index) => skipped.push(Skipped {
                config_map: name,
                reason: format!("another ConfigMap is labelled shard {index}"),
            }),
            Ok((index, entry)) => {
                shards.insert(index, entry);
            }
            Err(reason) => skipped.push(Skipped {
                config_map: name,
                reason,
            }),
        }
    }
    let Some(count) = shards
        .keys()
        .next_back()
        .and_then(|last| usize::try_from(*last).ok())
    else {
        return (None, skipped);
    };
    let count = count + 1;
    let epoch = shards.values().map(|(e, _)| *e).max().unwrap_or(0);

    // Owner of each ticker: highest epoch, then lowest index (BTreeMap iterates by index).
    let mut owner: HashMap<&Ticker, (i64, u32)> = HashMap::new();
    for (&index, (epoch, list)) in &shards {
        for t in list {
            let best = owner.entry(t).or_insert((*epoch, index));
            if *epoch > best.0 {
                *best = (*epoch, index);
            }
        }
    }
    let mut lists = vec![Vec::new(); count];
    for (&index, (_, list)) in &shards {
        let own = list
            .iter()
            .filter(|t| owner.get(t).map(|o| o.1) == Some(index));
        lists[index as usize] = own.cloned().collect();
    }
    // Every ticker has exactly one owner now, so `from_shards` cannot find a double.
    let Ok(assignment) = Assignment::from_shards(lists) else {
        return (None, skipped);
    };
    let listed = shards
        .into_iter()
        .map(|(index, (_, list))| (index, list))
        .collect();
    let previous = Previous {
        assignment,
        epoch,
        listed,
        skipped: skipped.clone(),
    };
    (Some(previous), skipped)
}

/// The shard index, epoch and tickers of one ConfigMap, or why it cannot be used.
fn read(stream: &str, cm: &ConfigMap) -> Result<(u32, (i64, Vec<Ticker>)), String> {
    let index = shard_index(&cm.metadata).ok_or_else(|| {
        format!("its quotes.opa.io/shard label is not a shard index below {SHARD_INDEX_LIMIT}")
    })?;
    let json = cm
        .data
        .as_ref()
        .and_then(|d| d.get(WORKER_CONFIG_KEY))
        .ok_or_else(|| format!("no {WORKER_CONFIG_KEY} key"))?;
    let config: WorkerConfig = serde_json::from_str(json)
        .map_err(|e| format!("{WORKER_CONFIG_KEY} is not a worker configuration: {e}"))?;
    if config.stream != stream || config.shard != index {
        return Err(format!(
            "{WORKER_CONFIG_KEY} is for stream {} shard {}, not {stream} shard {index}",
            config.stream, config.shard
        ));
    }
    let tickers = config
        .tickers
        .iter()
        .map(|s| Ticker::parse(s).map_err(|e| format!("{WORKER_CONFIG_KEY} tickers: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((index, (config.epoch, tickers)))
}

#[cfg(test)]
mod tests;
