//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several replicas exactly
//! one reconciles. A replica that cannot renew its Lease in time stops, rather than risk two
//! writers; the Deployment restarts it as a standby.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::Client;
use tokio::sync::watch;
use tokio::time::Instant;

#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    pub duration: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("leader election on Lease {namespace}/{name} failed: {source}. Check the operator's RBAC for coordination.k8s.io leases (get, create, update)")]
    Api {
        namespace: String,
        name: String,
        source: kube::Error,
    },
}

/// Leadership held: renewed in the background; `lost()` resolves if it slips away.
pub struct Leadership {
    lost: watch::Receiver<bool>,
    renewer: tokio::task::JoinHandle<()>,
    api: Api<Lease>,
    config: LeaseConfig,
}

fn now() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

impl LeaseConfig {
    fn api(&self, client: &Client) -> Api<Lease> {
        Api::namespaced(client.clone(), &self.namespace)
    }
    fn error(&self, source: kube::Error) -> LeaderError {
        LeaderError::Api {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            source,
        }
    }
}

/// What this replica last saw of another holder's Lease, and when (by its own clock), so that
/// expiry is judged by how long the record stood still here, not by comparing another
/// machine's timestamps with ours (clock skew would shorten or stretch the lease).
#[derive(Default)]
struct Observed {
    record: Option<(String, Option<jiff::Timestamp>)>,
    since: Option<tokio::time::Instant>,
}

/// Whether `lease` is free for `identity` to take now.
fn takeable(lease: &Lease, identity: &str, observed: &mut Observed) -> bool {
    let Some(spec) = &lease.spec else { return true };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder.is_empty() || holder == identity {
        return true;
    }
    let record = (holder, spec.renew_time.as_ref().map(|t| t.0));
    let now = tokio::time::Instant::now();
    if observed.record.as_ref() != Some(&record) {
        observed.record = Some(record);
        observed.since = Some(now);
        return false;
    }
    let duration =
        Duration::from_secs(u64::try_from(spec.lease_duration_seconds.unwrap_or(15)).unwrap_or(15));
    observed
        .since
        .is_some_and(|since| now.duration_since(since) > duration)
}

/// One attempt to take or renew the Lease. `Ok(true)`: we hold it now.
async fn try_hold(
    api: &Api<Lease>,
    config: &LeaseConfig,
    observed: &mut Observed,
) -> Result<bool, kube::Error> {
    let seconds = config.duration.as_secs().max(1) as i32;
    match api.get_opt(&config.name).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(config.name.clone()),
                    namespace: Some(config.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(config.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(now()),
                    renew_time: Some(now()),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
        Some(mut lease) => {
            if !takeable(&lease, &config.identity, observed) {
                return Ok(false);
            }
            let spec = lease.spec.get_or_insert_with(Default::default);
            if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
                spec.holder_identity = Some(config.identity.clone());
                spec.acquire_time = Some(now());
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
            spec.lease_duration_seconds = Some(seconds);
            spec.renew_time = Some(now());
            // The resourceVersion in `lease` makes this a compare-and-swap: of two replicas
            // taking an expired Lease at once, one gets 409 Conflict.
            match api
                .replace(&config.name, &PostParams::default(), &lease)
                .await
            {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
    }
}

/// Waits until this replica leads. Returns only when it does, or with an API error.
pub async fn acquire(client: &Client, config: LeaseConfig) -> Result<Leadership, LeaderError> {
    let api = config.api(client);
    let retry = (config.duration / 5).max(Duration::from_millis(500));
    // No API call may outlast a third of the lease, so a hung request cannot let it lapse unseen.
    let attempt_timeout = (config.duration / 3).max(Duration::from_millis(500));
    let mut observed = Observed::default();
    // When the request that took the Lease was sent: the renewal deadline counts from there.
    let acquired = loop {
        let sent = tokio::time::Instant::now();
        match tokio::time::timeout(attempt_timeout, try_hold(&api, &config, &mut observed)).await {
            Ok(Ok(true)) => break sent,
            Ok(Ok(false)) => {}
            Ok(Err(kube::Error::Api(e))) if e.code == 403 => {
                return Err(config.error(kube::Error::Api(e)))
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "leader election: could not read the Lease; retrying")
            }
            Err(_) => {
                tracing::warn!("leader election: the API server did not answer in time; retrying")
            }
        }
        tokio::time::sleep(retry).await;
    };
    tracing::info!(lease = %config.name, identity = %config.identity, "became the leader");
    let (tx, lost) = watch::channel(false);
    let renew_api = api.clone();
    let renew_config = config.clone();
    let renewer = tokio::spawn(async move {
        renew_until_lost(&renew_api, &renew_config, acquired).await;
        let _ = tx.send(true);
    });
    Ok(Leadership {
        lost,
        renewer,
        api,
        config,
    })
}

/// Renews the Lease until it cannot be sure to hold it: another replica holds it, or no
/// renewal succeeded within the renew deadline (client-go's: two thirds of the lease),
/// counted from when the last successful renewal was sent. Every attempt ends by that
/// deadline, so leadership is given up by it even while the API server hangs: a standby
/// takes the Lease only once a whole lease has passed since that renewal.
async fn renew_until_lost(api: &Api<Lease>, config: &LeaseConfig, acquired: Instant) {
    let every = (config.duration / 3).max(Duration::from_millis(500));
    let retry = (config.duration / 5).max(Duration::from_millis(500));
    let deadline = config.duration * 2 / 3;
    let mut last_renewed = acquired;
    let mut next = acquired + every;
    let mut observed = Observed::default();
    loop {
        let lapse = last_renewed + deadline;
        tokio::time::sleep_until(next.min(lapse)).await;
        if Instant::now() >= lapse {
            tracing::error!(
                "leader election: no renewal within the renew deadline; giving up leadership"
            );
            return;
        }
        let sent = Instant::now();
        match tokio::time::timeout_at(lapse, try_hold(api, config, &mut observed)).await {
            Ok(Ok(true)) => {
                last_renewed = sent;
                next = sent + every;
            }
            Ok(Ok(false)) => {
                tracing::error!("leader election: another replica holds the Lease now");
                return;
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "leader election: renewing the Lease failed");
                next = Instant::now() + retry;
            }
            Err(_) => tracing::warn!("leader election: renewing the Lease timed out"),
        }
    }
}

impl Leadership {
    /// Resolves when leadership is lost.
    pub async fn lost(&mut self) {
        while !*self.lost.borrow() {
            if self.lost.changed().await.is_err() {
                return;
            }
        }
    }

    /// Gives the Lease up so that a standby takes over at once instead of waiting it out.
    pub async fn release(self) {
        self.renewer.abort();
        // Within a third of the lease: a shutdown must end before the pod's grace period does,
        // and a Lease left held is only waited out by the standby.
        let deadline = (self.config.duration / 3).max(Duration::from_secs(1));
        if tokio::time::timeout(deadline, self.give_up())
            .await
            .is_err()
        {
            tracing::warn!("releasing the Lease timed out; a standby takes over when it expires");
        }
    }

    async fn give_up(&self) {
        if let Ok(Some(mut lease)) = self.api.get_opt(&self.config.name).await {
            if let Some(spec) = lease
                .spec
                .as_mut()
                .filter(|s| s.holder_identity.as_deref() == Some(self.config.identity.as_str()))
            {
                spec.holder_identity = None;
                spec.renew_time = None;
                match self
                    .api
                    .replace(&self.config.name, &PostParams::default(), &lease)
                    .await
                {
                    Ok(_) => tracing::info!("released the Lease"),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not release the Lease; a standby takes over when it expires")
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, renewed_secs_ago: i64) -> Lease {
        let renew =
            jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() - renewed_secs_ago)
                .unwrap();
        Lease {
            metadata: Default::default(),
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_string),
                lease_duration_seconds: Some(15),
                renew_time: Some(MicroTime(renew)),
                ..Default::default()
            }),
        }
    }

    /// The API server accepts the renewal and never answers: leadership is given up at the
    /// renew deadline counted from the last renewal sent, not a whole attempt later.
    #[tokio::test(start_paused = true)]
    async fn a_hung_api_server_ends_leadership_at_the_renew_deadline() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let url: http::Uri = format!("http://127.0.0.1:{port}").parse().unwrap();
        let client = Client::try_from(kube::Config::new(url)).unwrap();
        let config = LeaseConfig {
            name: "lease".into(),
            namespace: "ns".into(),
            identity: "me".into(),
            duration: Duration::from_secs(15),
        };
        let api = config.api(&client);
        let acquired = Instant::now();
        renew_until_lost(&api, &config, acquired).await;
        let held_for = acquired.elapsed();
        assert!(
            held_for >= Duration::from_secs(10)
                && held_for <= Duration::from_secs(10) + Duration::from_millis(50),
            "led for {held_for:?} after the last renewal was sent"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_is_taken_only_when_free_ours_or_stood_still_for_its_duration() {
        let mut observed = Observed::default();
        assert!(takeable(&lease(None, 0), "me", &mut observed));
        assert!(takeable(&lease(Some("me"), 0), "me", &mut observed));
        // Another holder: first sight starts the clock, even if its timestamp looks old.
        let theirs = lease(Some("other"), 600);
        assert!(!takeable(&theirs, "me", &mut observed));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(!takeable(&theirs, "me", &mut observed));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(takeable(&theirs, "me", &mut observed));
        // A renewal restarts the clock.
        let renewed = lease(Some("other"), 0);
        assert!(!takeable(&renewed, "me", &mut observed));
    }
}
