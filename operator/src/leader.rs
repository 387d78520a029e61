//! Leader election that steps down by itself. kube-lease-manager campaigns for the Lease and
//! renews it, but while the API server cannot be reached it keeps reporting "leader": its
//! renewals fail and it retries, and nothing tells the holder that its lease is running out
//! while another replica may already be taking it over. So a replica leads only while a check
//! of its own (a GET of the Lease every [`CHECK_EVERY`], each request bounded) has confirmed a
//! renewal by this replica whose lease has not nearly run out: [`STEP_DOWN_MARGIN`] before
//! `renewTime + leaseDurationSeconds` it stops, whether or not the API server answers. The lease
//! manager goes on campaigning, so the replica leads again once a renewal is confirmed (the API
//! server is back and nobody took the Lease) or waits as a standby (somebody did).

use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::resources::meta::FIELD_MANAGER;

/// How long a Lease lasts after its last renewal (what other replicas wait before taking it).
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// The lease manager renews this long before expiry, i.e. 8 s after the last renewal: a failed
/// renewal leaves it 4 s of retries before [`STEP_DOWN_MARGIN`].
const RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(7);
/// A leader stops this long before its lease would expire, for the controller to stop
/// ([`crate::run`] aborts it after 1 s) and for clock skew between replicas.
pub const STEP_DOWN_MARGIN: Duration = Duration::from_secs(3);
/// How often a replica reads the Lease to confirm its renewals.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);
/// Longest wait for one Lease request (renewal or check): an API server that accepts the
/// connection and never answers must not hold up the renewals (the default client has no
/// read timeout).
pub const LEASE_REQUEST_TIMEOUT: Duration = Duration::from_secs(4);

/// This replica's hold on the Lease, as last confirmed by reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// `renewTime` of the Lease (written by this replica, with its clock).
    pub renewed: SystemTime,
    /// `renewTime + leaseDurationSeconds`: when other replicas may take it.
    pub expires: SystemTime,
}

impl Held {
    /// The last moment this replica may act on the lease.
    pub fn act_until(&self) -> SystemTime {
        self.expires
            .checked_sub(STEP_DOWN_MARGIN)
            .unwrap_or(self.renewed)
    }
}

/// `identity`'s hold on `lease`, if it is the holder with a renewal time and a duration.
pub fn held_by(lease: &Lease, identity: &str) -> Option<Held> {
    let spec = lease.spec.as_ref()?;
    if spec.holder_identity.as_deref() != Some(identity) {
        return None;
    }
    let renewed: SystemTime = spec.renew_time.as_ref()?.0.into();
    let seconds = u64::try_from(spec.lease_duration_seconds?).ok()?;
    let expires = renewed.checked_add(Duration::from_secs(seconds))?;
    Some(Held { renewed, expires })
}

/// Why a leader stopped leading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepDown {
    /// SIGTERM/SIGINT: not a step-down, the process stops.
    Shutdown,
    /// The lease manager saw another holder.
    Lost,
    /// No renewal confirmed in time: the last confirmed one (if any) is about to run out.
    NotRenewed { last: Option<Held> },
}

impl StepDown {
    /// The `reason` label of `quotestream_leader_step_downs_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Shutdown => "shutdown",
            Self::Lost => "lease_lost",
            Self::NotRenewed { .. } => "not_renewed",
        }
    }
}

/// The lease manager (campaigns, renews, releases) and the check that confirms renewals.
#[derive(Debug)]
pub struct Elector {
    /// The lease manager's view: true while it believes it holds the Lease.
    manager_says_leader: watch::Receiver<bool>,
    /// The check's view: this replica's hold on the Lease as last read.
    held: watch::Receiver<Option<Held>>,
    lease_task: JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
    check_stop: CancellationToken,
    check_task: JoinHandle<()>,
}

impl Elector {
    /// Starts campaigning for Lease `name` in `namespace` as `identity`. `client` should have a
    /// read timeout ([`LEASE_REQUEST_TIMEOUT`]): it makes only short requests.
    pub async fn start(
        client: Client,
        name: &str,
        namespace: &str,
        identity: &str,
    ) -> anyhow::Result<Self> {
        let manager = LeaseManagerBuilder::new(client.clone(), name)
            .with_namespace(namespace)
            .with_identity(identity)
            .with_duration(LEASE_DURATION.as_secs())
            .with_grace(RENEW_BEFORE_EXPIRY.as_secs())
            .with_field_manager(FIELD_MANAGER)
            .build()
            .await
            .context("setting up leader election")?;
        let (manager_says_leader, lease_task) = manager.watch().await;
        let (tx, held) = watch::channel(None);
        let check_stop = CancellationToken::new();
        let check_task = tokio::spawn(check_lease(
            Api::namespaced(client, namespace),
            name.to_owned(),
            identity.to_owned(),
            tx,
            check_stop.clone(),
        ));
        Ok(Self {
            manager_says_leader,
            held,
            lease_task,
            check_stop,
            check_task,
        })
    }

    /// Waits until this replica may lead: the lease manager holds the Lease and a check has
    /// confirmed a renewal that has not nearly run out. False on shutdown.
    pub async fn wait_to_lead(&mut self, shutdown: &CancellationToken) -> anyhow::Result<bool> {
        loop {
            let manager = *self.manager_says_leader.borrow_and_update();
            let held = *self.held.borrow_and_update();
            if manager && held.is_some_and(|h| h.act_until() > SystemTime::now()) {
                return Ok(true);
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(false),
                changed = self.manager_says_leader.changed() => changed.context("leader election stopped")?,
                changed = self.held.changed() => changed.context("the lease check stopped")?,
            }
        }
    }

    /// While leading: returns when this replica must stop, and why.
    pub async fn wait_to_step_down(&mut self, shutdown: &CancellationToken) -> StepDown {
        loop {
            if !*self.manager_says_leader.borrow_and_update() {
                return StepDown::Lost;
            }
            let held = *self.held.borrow_and_update();
            let left = held.and_then(|h| h.act_until().duration_since(SystemTime::now()).ok());
            let Some(left) = left.filter(|l| !l.is_zero()) else {
                return StepDown::NotRenewed { last: held };
            };
            tokio::select! {
                _ = shutdown.cancelled() => return StepDown::Shutdown,
                changed = self.manager_says_leader.changed() => {
                    if changed.is_err() {
                        return StepDown::Lost;
                    }
                }
                changed = self.held.changed() => {
                    if changed.is_err() {
                        return StepDown::NotRenewed { last: held };
                    }
                }
                _ = tokio::time::sleep(left) => {}
            }
        }
    }

    /// Stops campaigning: dropping the last receiver makes the lease manager release the Lease
    /// (holder cleared) if it holds it, so the next replica takes it without waiting for it to
    /// expire. Bounded: an unreachable API server must not hold up the exit (the Lease then
    /// expires).
    pub async fn release(self) {
        self.check_stop.cancel();
        drop(self.manager_says_leader);
        let _ = self.check_task.await;
        match tokio::time::timeout(Duration::from_secs(5), self.lease_task).await {
            Ok(Ok(Ok(_))) => tracing::info!("leader lease released"),
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "leader lease not released"),
            Ok(Err(e)) => tracing::warn!(error = %e, "leader lease task failed"),
            Err(_) => tracing::warn!("leader lease not released within 5s: it expires instead"),
        }
    }
}

/// Reads the Lease every [`CHECK_EVERY`] and publishes this replica's hold on it. A failed or
/// unanswered read publishes nothing new: the last confirmed hold runs out by itself.
async fn check_lease(
    api: Api<Lease>,
    name: String,
    identity: String,
    tx: watch::Sender<Option<Held>>,
    stop: CancellationToken,
) {
    loop {
        match tokio::time::timeout(LEASE_REQUEST_TIMEOUT, api.get_opt(&name)).await {
            Ok(Ok(lease)) => {
                let held = lease.as_ref().and_then(|l| held_by(l, &identity));
                tx.send_if_modified(|old| std::mem::replace(old, held) != held);
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "reading the leader lease failed"),
            Err(_) => tracing::debug!(
                seconds = LEASE_REQUEST_TIMEOUT.as_secs(),
                "reading the leader lease: no answer"
            ),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(CHECK_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    fn lease(holder: Option<&str>, renewed: Option<jiff::Timestamp>, secs: Option<i32>) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_owned),
                renew_time: renewed.map(MicroTime),
                lease_duration_seconds: secs,
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        }
    }

    #[test]
    fn only_the_holder_with_a_renewal_and_a_duration_holds_the_lease() {
        let t = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let held = held_by(&lease(Some("a"), Some(t), Some(15)), "a").unwrap();
        assert_eq!(held.renewed, SystemTime::from(t));
        assert_eq!(held.expires, SystemTime::from(t) + Duration::from_secs(15));
        assert_eq!(
            held.act_until(),
            SystemTime::from(t) + Duration::from_secs(15) - STEP_DOWN_MARGIN
        );
        assert_eq!(held_by(&lease(Some("b"), Some(t), Some(15)), "a"), None);
        assert_eq!(held_by(&lease(None, Some(t), Some(15)), "a"), None);
        assert_eq!(held_by(&lease(Some("a"), None, Some(15)), "a"), None);
        assert_eq!(held_by(&lease(Some("a"), Some(t), None), "a"), None);
        assert_eq!(held_by(&lease(Some("a"), Some(t), Some(-1)), "a"), None);
        assert_eq!(held_by(&Lease::default(), "a"), None);
    }

    #[test]
    fn the_leader_stops_before_the_lease_expires_and_after_a_renewal_is_due() {
        // A renewal is attempted RENEW_BEFORE_EXPIRY before expiry; stepping down comes later,
        // leaving time for retries, and still before the lease expires.
        assert!(STEP_DOWN_MARGIN < RENEW_BEFORE_EXPIRY);
        assert!(CHECK_EVERY < RENEW_BEFORE_EXPIRY - STEP_DOWN_MARGIN);
        assert!(LEASE_REQUEST_TIMEOUT < LEASE_DURATION - RENEW_BEFORE_EXPIRY);
    }
}
