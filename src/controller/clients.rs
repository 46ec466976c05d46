//! The operator's two Kubernetes clients. Watches hold a response open for minutes with long
//! silences, so their client's read deadline, [`WATCH_DEADLINE`], lies beyond the longest
//! silence a live watch has (the API server ends one after 290 s, and kube's watcher gives up
//! on it 5 s later); it bounds the watchers' LIST pages and watch set-ups, which have no
//! deadline of their own (a half-open connection would hang that watcher for good). Every
//! other call (gets, patches, status writes, events, the Lease) goes through a client whose
//! response must start within [`REQUEST_DEADLINE`] of the request, so a stalled API server
//! fails a call instead of holding a reconcile, the start-up checks or a shutdown.

use std::time::Duration;

use http::{HeaderMap, Method, Request, Uri};
use kube::client::{Body, ClientBuilder};
use kube::{Client, Config};
use tower::util::MapRequestLayer;

/// How long a request may wait for its response.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(30);
/// How long a watch client's read may wait: beyond a live watch's longest silence.
pub const WATCH_DEADLINE: Duration = Duration::from_secs(330);
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
    /// Both clients from `config`, with their read deadlines. Their User-Agent
    /// names the operator: the API server takes a write's field manager from it (else every
    /// status and finalizer the operator writes shows as `unknown` in managedFields), and
    /// audit logs show it.
    pub fn from_config(mut config: Config, deadlines: Deadlines) -> Result<Self, kube::Error> {
        config.connect_timeout = Some(CONNECT_DEADLINE);
        config.headers.push((
            http::header::USER_AGENT,
            http::HeaderValue::from_static(concat!(
                "librechat-operator/",
                env!("CARGO_PKG_VERSION")
            )),
        ));
        // Counted from the request, not from when its pooled connection went idle.
        config.reset_reader_on_write = true;
        config.read_timeout = Some(deadlines.watch);
        let watch = counted(config.clone())?;
        config.read_timeout = Some(deadlines.request);
        // No silent retries of throttled or unavailable answers (kube's default layer backs
        // off for minutes): the deadline is per call, and a failed call is retried by the
        // reconcile's own backoff, or dropped (an event).
        config.default_retry = false;
        let request = counted(config)?;
        Ok(Clients { watch, request })
    }

    /// Both clients from the kubeconfig or the in-cluster service account.
    pub async fn infer() -> Result<Self, kube::Error> {
        let config = Config::infer().await.map_err(kube::Error::InferConfig)?;
        Self::from_config(config, Deadlines::default())
    }
}

/// A client that counts each request it sends by verb and resource (the metric
/// `librechat_operator_api_requests_total`): what the operator costs the API server shows
/// per kind, apart from every other client's requests.
fn counted(config: Config) -> Result<Client, kube::Error> {
    let builder = ClientBuilder::try_from(config)?;
    Ok(builder.with_layer(&MapRequestLayer::new(count)).build())
}

fn count(request: Request<Body>) -> Request<Body> {
    let (verb, resource) = classify(request.method(), request.uri(), request.headers());
    crate::metrics::global().api_request(verb, &resource);
    request
}

/// A request's verb, as the API server's own metrics name it, and its resource
/// (`librechatusers/status`), from its method and path.
fn classify(method: &Method, uri: &Uri, headers: &HeaderMap) -> (&'static str, String) {
    let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let rest = match segments.first() {
        Some(&"api") => segments.get(2..),
        Some(&"apis") => segments.get(3..),
        _ => None,
    };
    let Some(mut rest) = rest.filter(|r| !r.is_empty() && !r[0].is_empty()) else {
        return ("other", "none".into());
    };
    // A namespaced path, unless it names a namespace itself.
    if rest[0] == "namespaces" && rest.len() > 2 {
        rest = &rest[2..];
    }
    let named = rest.len() > 1;
    let resource = match rest.get(2) {
        Some(subresource) => format!("{}/{subresource}", rest[0]),
        None => rest[0].to_string(),
    };
    let watching = uri
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
    let applying = headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/apply-patch"));
    let verb = match *method {
        Method::GET if named => "get",
        Method::GET if watching => "watch",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH if applying => "apply",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "other",
    };
    (verb, resource)
}

/// The clients' read deadlines.
#[derive(Clone, Copy, Debug)]
pub struct Deadlines {
    pub request: Duration,
    pub watch: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            request: REQUEST_DEADLINE,
            watch: WATCH_DEADLINE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Namespace;

    /// The fault: an API server that accepts connections and never answers (a half-open
    /// connection reads the same).
    async fn stalled_api_server() -> (http::Uri, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                open.push(socket);
            }
        });
        (format!("http://{address}").parse().unwrap(), held)
    }

    #[tokio::test]
    async fn a_request_to_a_stalled_api_server_fails_at_its_deadline() {
        let (url, held) = stalled_api_server().await;
        let deadlines = Deadlines {
            request: Duration::from_millis(500),
            watch: WATCH_DEADLINE,
        };
        let clients = Clients::from_config(Config::new(url), deadlines).unwrap();
        let namespaces: kube::Api<Namespace> = kube::Api::all(clients.request);
        let asked = tokio::time::timeout(Duration::from_secs(10), namespaces.get_opt("chat")).await;
        let answer = asked.expect("the request must end at its own deadline, not hang");
        assert!(answer.is_err(), "a stalled API server gives an error");
        held.abort();
    }

    /// A watcher's LIST has no deadline of its own: the watch client's read deadline ends it,
    /// and the watcher reports the failure (and retries) instead of hanging for good.
    #[tokio::test]
    async fn a_watchers_list_from_a_stalled_api_server_fails_at_the_watch_deadline() {
        use futures::StreamExt;
        let (url, held) = stalled_api_server().await;
        let deadlines = Deadlines {
            request: REQUEST_DEADLINE,
            watch: Duration::from_millis(500),
        };
        let clients = Clients::from_config(Config::new(url), deadlines).unwrap();
        let namespaces: kube::Api<Namespace> = kube::Api::all(clients.watch);
        let events = kube::runtime::watcher(namespaces, kube::runtime::watcher::Config::default());
        let failure = events.filter_map(|event| async move { event.err() });
        let first = tokio::time::timeout(Duration::from_secs(10), Box::pin(failure).next())
            .await
            .expect("the watcher's LIST must end at the watch deadline, not hang");
        assert!(
            matches!(
                first,
                Some(kube::runtime::watcher::Error::InitialListFailed(_))
            ),
            "the stalled LIST is reported as such: {first:?}"
        );
        held.abort();
    }

    #[test]
    fn requests_are_counted_by_the_verb_and_resource_they_act_on() {
        let plain = HeaderMap::new();
        let mut applied = HeaderMap::new();
        applied.insert(
            http::header::CONTENT_TYPE,
            "application/apply-patch+yaml".parse().unwrap(),
        );
        let cases = [
            (Method::GET, "/apis/librechat.ai/v1alpha1/librechatusers?limit=500", &plain, "list", "librechatusers"),
            (Method::GET, "/apis/librechat.ai/v1alpha1/namespaces/a/librechatusers?watch=true&timeoutSeconds=290", &plain, "watch", "librechatusers"),
            (Method::GET, "/api/v1/namespaces/a/secrets/pw", &plain, "get", "secrets"),
            (Method::PATCH, "/apis/librechat.ai/v1alpha1/namespaces/a/userinvites/i/status", &plain, "patch", "userinvites/status"),
            (Method::PATCH, "/api/v1/namespaces/a/secrets/i-invite?fieldManager=x", &applied, "apply", "secrets"),
            (Method::POST, "/apis/events.k8s.io/v1/namespaces/a/events", &plain, "create", "events"),
            (Method::PUT, "/apis/coordination.k8s.io/v1/namespaces/a/leases/l", &plain, "update", "leases"),
            (Method::DELETE, "/api/v1/namespaces/a/secrets/pw", &plain, "delete", "secrets"),
            (Method::GET, "/api/v1/namespaces/a", &plain, "get", "namespaces"),
            (Method::GET, "/version", &plain, "other", "none"),
        ];
        for (method, path, headers, verb, resource) in cases {
            let uri: Uri = path.parse().unwrap();
            assert_eq!(
                classify(&method, &uri, headers),
                (verb, resource.to_string()),
                "{method} {path}"
            );
        }
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
        let deadlines = Deadlines {
            request: Duration::from_secs(5),
            watch: WATCH_DEADLINE,
        };
        let clients = Clients::from_config(Config::new(url), deadlines).unwrap();
        let namespaces: kube::Api<Namespace> = kube::Api::all(clients.request);
        let answer = tokio::time::timeout(Duration::from_secs(3), namespaces.get_opt("chat"))
            .await
            .expect("a throttled request must fail at once, not be retried for seconds");
        assert!(answer.is_err(), "a throttled request gives an error");
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 1);
        throttling.abort();
    }
}
