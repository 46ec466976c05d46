//! The operator's two Kubernetes clients. Watches hold a response open for minutes with long
//! silences (kube's watcher has its own idle deadline), so their client has no read deadline;
//! every other call (gets, patches, status writes, events, the Lease) goes through a client
//! whose response must start within [`REQUEST_DEADLINE`] of the request, so a stalled API
//! server fails a call instead of holding a reconcile, the start-up checks or a shutdown.

use std::time::Duration;

use kube::{Client, Config};

/// How long a request may wait for its response.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(30);
/// How long a connection to the API server may take.
const CONNECT_DEADLINE: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Clients {
    /// For watches only.
    pub watch: Client,
    /// For everything else.
    pub request: Client,
}

impl Clients {
    /// Both clients from `config`, the requests' with `request_deadline`. Their User-Agent
    /// names the operator: the API server takes a write's field manager from it (else every
    /// status and finalizer the operator writes shows as `unknown` in managedFields), and
    /// audit logs show it.
    pub fn from_config(
        mut config: Config,
        request_deadline: Duration,
    ) -> Result<Self, kube::Error> {
        config.connect_timeout = Some(CONNECT_DEADLINE);
        config.headers.push((
            http::header::USER_AGENT,
            http::HeaderValue::from_static(concat!(
                "librechat-operator/",
                env!("CARGO_PKG_VERSION")
            )),
        ));
        let watch = Client::try_from(config.clone())?;
        config.read_timeout = Some(request_deadline);
        // No silent retries of throttled or unavailable answers (kube's default layer backs
        // off for minutes): the deadline is per call, and a failed call is retried by the
        // reconcile's own backoff, or dropped (an event).
        config.default_retry = false;
        // Counted from the request, not from when its pooled connection went idle.
        config.reset_reader_on_write = true;
        let request = Client::try_from(config)?;
        Ok(Clients { watch, request })
    }

    /// Both clients from the kubeconfig or the in-cluster service account.
    pub async fn infer() -> Result<Self, kube::Error> {
        let config = Config::infer().await.map_err(kube::Error::InferConfig)?;
        Self::from_config(config, REQUEST_DEADLINE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Namespace;

    /// The fault: an API server that accepts the connection and never answers.
    #[tokio::test]
    async fn a_request_to_a_stalled_api_server_fails_at_its_deadline() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                open.push(socket);
            }
        });
        let url = format!("http://{address}").parse().unwrap();
        let clients = Clients::from_config(Config::new(url), Duration::from_millis(500)).unwrap();
        let namespaces: kube::Api<Namespace> = kube::Api::all(clients.request);
        let asked = tokio::time::timeout(Duration::from_secs(10), namespaces.get_opt("chat")).await;
        let answer = asked.expect("the request must end at its own deadline, not hang");
        assert!(answer.is_err(), "a stalled API server gives an error");
        held.abort();
    }

    /// The fault: an API server that throttles every request. The call fails at once, for
    /// the caller's own backoff, rather than retrying for minutes inside one request.
    #[tokio::test]
    async fn a_throttled_request_is_not_retried_behind_the_callers_back() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = asked.clone();
        let throttling = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let counted = counted.clone();
                tokio::spawn(async move {
                    let mut buffer = [0u8; 4096];
                    while let Ok(n) = socket.read(&mut buffer).await {
                        if n == 0 {
                            return;
                        }
                        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let answer = "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
                        if socket.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let url = format!("http://{address}").parse().unwrap();
        let clients = Clients::from_config(Config::new(url), Duration::from_secs(5)).unwrap();
        let namespaces: kube::Api<Namespace> = kube::Api::all(clients.request);
        let answer = tokio::time::timeout(Duration::from_secs(3), namespaces.get_opt("chat"))
            .await
            .expect("a throttled request must fail at once, not be retried for seconds");
        assert!(answer.is_err(), "a throttled request gives an error");
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 1);
        throttling.abort();
    }
}
