//! The vendor-host allow-lists, one per source type: the hosts a stream's source URL may name.
//! The list itself (patterns, defaults, the URL check) is shared with the worker, which
//! enforces it again: [`quotestream_api::source_hosts`].

use quotestream_api::crd::SourceType;
use quotestream_api::source_hosts::{HostAllowList, HostListError};

/// The admin's lists; a source type without one gets its vendor default.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourceHosts {
    configured: Vec<(SourceType, HostAllowList)>,
}

/// A `TYPE=PATTERN,…` entry that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SourceHostsError {
    #[error("{0:?} is not TYPE=PATTERN[,PATTERN…] (e.g. polygon=socket.massive.com,loopback)")]
    Shape(String),
    #[error("{0:?} is not a source type: write yahoo, yahoo-stream, alpaca or polygon")]
    Type(String),
    #[error("{kind}: {source}")]
    Pattern {
        kind: &'static str,
        #[source]
        source: HostListError,
    },
    #[error(
        "{0}: the list is empty; write the hosts the source may reach, or drop the entry for the vendor default"
    )]
    Empty(&'static str),
}

impl SourceHosts {
    /// Parses `TYPE=PATTERN,…` entries (a later entry for the same type replaces an earlier).
    pub fn parse(entries: &[String]) -> Result<Self, SourceHostsError> {
        let mut configured: Vec<(SourceType, HostAllowList)> = Vec::new();
        for entry in entries {
            let (kind, patterns) = entry
                .split_once('=')
                .ok_or_else(|| SourceHostsError::Shape(entry.clone()))?;
            let kind: SourceType =
                serde_json::from_value(serde_json::Value::String(kind.trim().to_owned()))
                    .map_err(|_| SourceHostsError::Type(kind.trim().to_owned()))?;
            let list =
                HostAllowList::parse(patterns).map_err(|source| SourceHostsError::Pattern {
                    kind: kind.name(),
                    source,
                })?;
            if list.is_empty() {
                return Err(SourceHostsError::Empty(kind.name()));
            }
            configured.retain(|(k, _)| *k != kind);
            configured.push((kind, list));
        }
        Ok(Self { configured })
    }

    /// The hosts a source of `kind` may reach.
    pub fn for_type(&self, kind: SourceType) -> HostAllowList {
        self.configured
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or_else(|| HostAllowList::default_for(kind), |(_, l)| l.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(entries: &[&str]) -> Result<SourceHosts, SourceHostsError> {
        SourceHosts::parse(&entries.iter().map(|e| (*e).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn an_entry_replaces_the_default_of_its_type_only() {
        let hosts = parse(&["polygon=proxy.corp.example, loopback"]).unwrap();
        let polygon = hosts.for_type(SourceType::Polygon);
        assert!(polygon.check("wss://proxy.corp.example/stocks").is_ok());
        assert!(polygon.check("wss://socket.massive.com/stocks").is_err());
        let alpaca = hosts.for_type(SourceType::Alpaca);
        assert_eq!(alpaca, HostAllowList::default_for(SourceType::Alpaca));
        let later = parse(&["yahoo=a.example", "yahoo=b.example"]).unwrap();
        assert!(
            later
                .for_type(SourceType::Yahoo)
                .check("https://a.example")
                .is_err()
        );
    }

    #[test]
    fn bad_entries_name_what_to_fix() {
        let e = parse(&["polygon"]).unwrap_err().to_string();
        assert!(e.contains("TYPE=PATTERN"), "{e}");
        let e = parse(&["iex=x.example"]).unwrap_err().to_string();
        assert!(e.contains("\"iex\" is not a source type"), "{e}");
        let e = parse(&["alpaca=wss://x/"]).unwrap_err().to_string();
        assert!(e.starts_with("alpaca:") && e.contains("wss://x/"), "{e}");
        let e = parse(&["alpaca= , "]).unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
    }
}
