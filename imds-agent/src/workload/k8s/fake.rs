//! A fake Kubernetes API server for tests: plain HTTP/1.1 on 127.0.0.1, speaking the real
//! wire format (bodies are k8s-openapi types serialized, watch streams are chunked
//! newline-delimited watch events), for just what the pod cache uses:
//!
//! - `GET /api/v1/pods?fieldSelector=spec.nodeName%3D<node>` — `PodList` with
//!   `metadata.resourceVersion`; with `watch=true`, a stream of `ADDED` / `MODIFIED` /
//!   `DELETED` events after `resourceVersion` (a `BOOKMARK` first if asked for), or an
//!   `ERROR` 410 event when that version was compacted away.
//! - `GET /apis/{apps,batch}/v1/namespaces/{ns}/{replicasets,jobs,deployments}/{name}` —
//!   the object, or its `PartialObjectMetadata` when the `Accept` header asks for that; a
//!   404 `Status` for unknown names.
//!
//! Every pod request must carry this node's field selector: one that does not is recorded
//! as a violation and refused (400), and [`FakeApi::assert_clean`] fails the test.
//!
//! The server can be stopped (listener closed, every open connection cut) and started again
//! on the same port, with or without losing its watch history (which forces a re-list).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, ObjectMeta, Status, WatchEvent};
use kube::{Resource, ResourceExt as _};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

type Body = BoxBody<Bytes, Infallible>;

const JSON: &str = "application/json";
const PARTIAL_METADATA: &str = "as=PartialObjectMetadata";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Default)]
struct State {
    node: String,
    /// The last resourceVersion handed out.
    rv: u64,
    /// Watches from a resourceVersion below this get 410 Gone.
    floor: u64,
    pods: BTreeMap<(String, String), Pod>,
    /// URL path → (object, its metadata), for ReplicaSets, Jobs and Deployments.
    objects: BTreeMap<String, (serde_json::Value, serde_json::Value)>,
    /// Watch events: resourceVersion, the pod's node, the encoded line.
    history: Vec<(u64, Option<String>, Bytes)>,
    watchers: Vec<(String, mpsc::UnboundedSender<Bytes>)>,
    requests: Vec<String>,
    violations: Vec<String>,
    /// When set, ReplicaSet and Job GETs fail with this status.
    owner_failure: Option<StatusCode>,
}

impl State {
    fn emit(&mut self, event: WatchEvent<Pod>, node: Option<String>) {
        let line = encode_line(&event);
        self.history.push((self.rv, node.clone(), line.clone()));
        self.watchers.retain(|(watched, tx)| {
            Some(watched) != node.as_ref() || tx.send(line.clone()).is_ok()
        });
    }

    fn bump(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }
}

fn encode_line<T: serde::Serialize>(value: &T) -> Bytes {
    let mut line =
        serde_json::to_vec(value).unwrap_or_else(|e| panic!("encoding a watch event: {e}"));
    line.push(b'\n');
    Bytes::from(line)
}

struct Running {
    accept: JoinHandle<()>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

/// The fake API server; see the module docs.
pub struct FakeApi {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    running: Option<Running>,
}

impl FakeApi {
    /// Starts a server for pods of `node` on a random loopback port.
    pub async fn start(node: &str) -> FakeApi {
        let state = Arc::new(Mutex::new(State {
            node: node.to_owned(),
            rv: 100,
            ..State::default()
        }));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("binding the fake API server: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("fake API server address: {e}"));
        let running = Some(serve(listener, state.clone()));
        FakeApi {
            addr,
            state,
            running,
        }
    }

    /// A client for this server: plain HTTP, no credentials.
    pub fn client(&self) -> kube::Client {
        let uri: hyper::Uri = format!("http://{}", self.addr)
            .parse()
            .unwrap_or_else(|e| panic!("fake API server URL: {e}"));
        kube::Client::try_from(kube::Config::new(uri))
            .unwrap_or_else(|e| panic!("kube client: {e}"))
    }

    /// Closes the listener and cuts every connection, watches included; returns once they
    /// are closed.
    pub async fn stop(&mut self) {
        for task in self.abort() {
            // Cancelled: the listener or socket has been dropped.
            let _ = task.await;
        }
    }

    fn abort(&mut self) -> Vec<JoinHandle<()>> {
        lock(&self.state).watchers.clear();
        let Some(running) = self.running.take() else {
            return Vec::new();
        };
        let mut tasks: Vec<JoinHandle<()>> = lock(&running.connections).drain(..).collect();
        tasks.push(running.accept);
        for task in &tasks {
            task.abort();
        }
        tasks
    }

    /// Listens again on the same port. With `compact`, the watch history is lost (as after
    /// an etcd compaction): resumed watches get 410 Gone and the client must re-list.
    pub async fn restart(&mut self, compact: bool) {
        self.stop().await;
        {
            let mut state = lock(&self.state);
            if compact {
                state.floor = state.rv;
                state.history.clear();
            }
        }
        let listener = TcpListener::bind(self.addr)
            .await
            .unwrap_or_else(|e| panic!("re-binding the fake API server on {}: {e}", self.addr));
        self.running = Some(serve(listener, self.state.clone()));
    }

    /// Adds a pod (its uid must be set) or replaces the pod of that namespace and name.
    pub fn put_pod(&self, mut pod: Pod) {
        let mut state = lock(&self.state);
        pod.metadata.resource_version = Some(state.bump());
        let key = (pod.namespace().unwrap_or_default(), pod.name_any());
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        let event = if state.pods.insert(key, pod.clone()).is_some() {
            WatchEvent::Modified(pod)
        } else {
            WatchEvent::Added(pod)
        };
        state.emit(event, node);
    }

    pub fn delete_pod(&self, namespace: &str, name: &str) {
        let mut state = lock(&self.state);
        let Some(mut pod) = state.pods.remove(&(namespace.to_owned(), name.to_owned())) else {
            panic!("deleting unknown pod {namespace}/{name}");
        };
        pod.metadata.resource_version = Some(state.bump());
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        state.emit(WatchEvent::Deleted(pod), node);
    }

    /// Adds a namespaced object the client may GET (ReplicaSet, Job, Deployment, ...).
    pub fn put_object<K>(&self, object: &K)
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + serde::Serialize,
    {
        let path = format!(
            "{}/{}",
            K::url_path(&(), object.meta().namespace.as_deref()),
            object.meta().name.as_deref().unwrap_or_default()
        );
        let full = serde_json::to_value(object).unwrap_or_else(|e| panic!("encoding {path}: {e}"));
        let meta =
            serde_json::to_value(object.meta()).unwrap_or_else(|e| panic!("encoding {path}: {e}"));
        lock(&self.state).objects.insert(path, (full, meta));
    }

    /// Makes every ReplicaSet and Job GET fail with `status` (`None` to stop).
    pub fn fail_owner_lookups(&self, status: Option<StatusCode>) {
        lock(&self.state).owner_failure = status;
    }

    /// Requests served so far, as `GET /path?query`.
    pub fn requests(&self) -> Vec<String> {
        lock(&self.state).requests.clone()
    }

    /// Fails the test if any pod request lacked this node's field selector.
    pub fn assert_clean(&self) {
        let state = lock(&self.state);
        assert!(
            state.violations.is_empty(),
            "pod requests without the node selector: {:?}",
            state.violations
        );
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.abort();
    }
}

fn serve(listener: TcpListener, state: Arc<Mutex<State>>) -> Running {
    let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::new(Mutex::new(Vec::new()));
    let tracked = connections.clone();
    let accept = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let state = state.clone();
            let service = service_fn(move |request: Request<Incoming>| {
                let response = handle(&state, &request);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = tokio::spawn(async move {
                // A cut connection is what the tests want; its error is of no interest.
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
            let mut tracked = lock(&tracked);
            tracked.retain(|c| !c.is_finished());
            tracked.push(connection);
        }
    });
    Running {
        accept,
        connections,
    }
}

fn handle(state: &Mutex<State>, request: &Request<Incoming>) -> Response<Body> {
    let mut state = lock(state);
    let path = request.uri().path().to_owned();
    let query = query_pairs(request.uri().query().unwrap_or_default());
    state
        .requests
        .push(format!("{} {}", request.method(), request.uri()));
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();

    if segments.contains(&"pods") {
        let wanted = format!("spec.nodeName={}", state.node);
        let selected = param("fieldSelector").is_some_and(|s| s.split(',').any(|r| r == wanted));
        if !selected {
            state.violations.push(request.uri().to_string());
            return status_response(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "fake: pod requests must select this node".into(),
            );
        }
        if segments != ["api", "v1", "pods"] {
            return status_response(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("fake: no route for {path}"),
            );
        }
        if matches!(param("watch"), Some("true" | "1")) {
            let from = param("resourceVersion").and_then(|v| v.parse::<u64>().ok());
            let bookmarks = param("allowWatchBookmarks") == Some("true");
            return watch_pods(&mut state, from, bookmarks);
        }
        let node = state.node.clone();
        let list = k8s_openapi::List::<Pod> {
            items: state
                .pods
                .values()
                .filter(|p| {
                    p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node.as_str())
                })
                .cloned()
                .collect(),
            metadata: ListMeta {
                resource_version: Some(state.rv.to_string()),
                ..ListMeta::default()
            },
        };
        return json_response(StatusCode::OK, &list);
    }

    let owner_lookup = segments.iter().any(|s| *s == "replicasets" || *s == "jobs");
    if let (true, Some(code)) = (owner_lookup, state.owner_failure) {
        let reason = code
            .canonical_reason()
            .unwrap_or("Failure")
            .replace(' ', "");
        return status_response(code, &reason, format!("fake: {path} fails"));
    }
    let partial = request
        .headers()
        .get(ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains(PARTIAL_METADATA));
    match state.objects.get(&path) {
        Some((_, meta)) if partial => json_response(
            StatusCode::OK,
            &serde_json::json!({
                "apiVersion": "meta.k8s.io/v1",
                "kind": "PartialObjectMetadata",
                "metadata": meta,
            }),
        ),
        Some((full, _)) => json_response(StatusCode::OK, full),
        None => {
            let name = segments.last().copied().unwrap_or_default();
            let resource = segments.iter().rev().nth(1).copied().unwrap_or_default();
            status_response(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("{resource} \"{name}\" not found"),
            )
        }
    }
}

fn watch_pods(state: &mut State, from: Option<u64>, bookmarks: bool) -> Response<Body> {
    let (tx, rx) = mpsc::unbounded_channel();
    match from {
        Some(from) if from < state.floor => {
            let gone = Status {
                code: Some(410),
                reason: Some("Expired".into()),
                status: Some("Failure".into()),
                message: Some(format!(
                    "too old resource version: {from} ({})",
                    state.floor
                )),
                ..Status::default()
            };
            // The stream ends after this event, as the API server's does.
            let _ = tx.send(encode_line(&WatchEvent::<Pod>::ErrorStatus(gone)));
        }
        from => {
            let from = from.filter(|v| *v != 0).unwrap_or(state.rv);
            for (rv, node, line) in &state.history {
                if *rv > from && node.as_ref() == Some(&state.node) {
                    let _ = tx.send(line.clone());
                }
            }
            if bookmarks {
                let marker = Pod {
                    metadata: ObjectMeta {
                        resource_version: Some(state.rv.to_string()),
                        ..ObjectMeta::default()
                    },
                    ..Pod::default()
                };
                let _ = tx.send(encode_line(
                    &serde_json::json!({ "type": "BOOKMARK", "object": marker }),
                ));
            }
            state.watchers.push((state.node.clone(), tx));
        }
    }
    let lines = futures::stream::unfold(rx, |mut rx| async move {
        let line = rx.recv().await?;
        Some((Ok::<_, Infallible>(Frame::data(line)), rx))
    });
    let mut response = Response::new(StreamBody::new(lines).boxed());
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(JSON));
    response
}

fn json_response<T: serde::Serialize>(code: StatusCode, body: &T) -> Response<Body> {
    let body = serde_json::to_vec(body).unwrap_or_else(|e| panic!("encoding a response: {e}"));
    let mut response = Response::new(Full::new(Bytes::from(body)).boxed());
    *response.status_mut() = code;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(JSON));
    response
}

fn status_response(code: StatusCode, reason: &str, message: String) -> Response<Body> {
    let status = Status {
        code: Some(i32::from(code.as_u16())),
        reason: Some(reason.to_owned()),
        status: Some("Failure".into()),
        message: Some(message),
        ..Status::default()
    };
    json_response(code, &status)
}

fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
