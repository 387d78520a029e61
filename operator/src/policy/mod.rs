//! What a QuoteStream may make the operator do, as the cluster admin configured it: which
//! worker images it may run ([`images`]) and which hosts its source may reach — and so receive
//! the source's credentials ([`hosts`]), and which Secrets its workers may read ([`secrets`]). Each check is a plain function of the stream and the
//! policy; a stream that fails one is Degraded with a message naming the field and the fix,
//! and nothing is created or updated from it. The threat model: docs/security.md.

pub mod hosts;
pub mod images;
pub mod secrets;

pub use hosts::{SourceHosts, SourceHostsError};
pub use images::{ImageAllowList, ImagePatternError};
pub use secrets::{SecretLabelError, SecretPolicy, SecretReference, secret_references};

/// The cluster admin's policy for QuoteStreams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Images `spec.worker.image` may name.
    pub images: ImageAllowList,
    /// Hosts each source type may reach.
    pub source_hosts: SourceHosts,
    /// Secrets a stream may reference.
    pub secrets: SecretPolicy,
}

impl Policy {
    /// The defaults for an operator whose worker image is `worker_image`: that image's
    /// repository only; the vendors' official hosts plus loopback; Secrets labelled
    /// `quotes.opa.io/stream-access=true` only.
    pub fn defaults_for(worker_image: &str) -> Self {
        Self {
            images: ImageAllowList::repository_of(worker_image),
            source_hosts: SourceHosts::default(),
            secrets: SecretPolicy::default(),
        }
    }
}
