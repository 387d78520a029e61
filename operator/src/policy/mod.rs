//! What a QuoteStream may make the operator do, as the cluster admin configured it: which
//! worker images it may run ([`images`]) and which hosts its source may reach — and so receive
//! the source's credentials ([`hosts`]). Each check is a plain function of the stream and the
//! policy; a stream that fails one is Degraded with a message naming the field and the fix,
//! and nothing is created or updated from it. The threat model: docs/security.md.

pub mod hosts;
pub mod images;

pub use hosts::{SourceHosts, SourceHostsError};
pub use images::{ImageAllowList, ImagePatternError};

/// The cluster admin's policy for QuoteStreams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Images `spec.worker.image` may name.
    pub images: ImageAllowList,
    /// Hosts each source type may reach.
    pub source_hosts: SourceHosts,
}

impl Policy {
    /// The defaults for an operator whose worker image is `worker_image`: that image's
    /// repository only; the vendors' official hosts plus loopback.
    pub fn defaults_for(worker_image: &str) -> Self {
        Self {
            images: ImageAllowList::repository_of(worker_image),
            source_hosts: SourceHosts::default(),
        }
    }
}
