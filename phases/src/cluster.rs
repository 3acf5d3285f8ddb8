//! The Kubernetes API as commands see it (kubeadm: util/apiclient): one async boundary, a
//! tokio current-thread runtime and a `kube::Client` behind blocking, kubeadm-named methods.
//!
//! [`Cluster::from_kubeconfig`] talks to a real API server with the credentials of one
//! kubeconfig file. [`Cluster::recording`] talks to nothing: its client runs over a tower
//! service that records every request, prints it as kubeadm's dry-run client does
//! (`[dryrun] Would perform action CREATE on resource "configmaps" in API group "core/v1"`)
//! and answers like an empty cluster (404 for gets, so creates happen; a placeholder for the
//! node, as kubeadm's dry-run getter does). `--dry-run` and the unit tests of API phases use
//! the same recorder.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Node;
use kube::Resource;
use kube::api::{DeleteParams, GetParams, ListParams, Patch, PatchParams, PostParams};
use kube::client::Body;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::out::Out;

/// How often a wait polls the API server (kubeadm: constants.APICallRetryInterval).
pub const API_CALL_RETRY_INTERVAL: Duration = Duration::from_millis(500);

/// A typed object kubeboot reads or writes: any k8s-openapi resource.
pub trait Object:
    Resource<DynamicType = ()> + Serialize + DeserializeOwned + Clone + Debug + Send + 'static
{
}

impl<K> Object for K where
    K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Clone + Debug + Send + 'static
{
}

/// One request the recording cluster saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// kubeadm's action name: `GET`, `LIST`, `CREATE`, `UPDATE`, `PATCH`, `DELETE`.
    pub verb: String,
    /// The plural resource (`configmaps`).
    pub resource: String,
    /// `core/v1`, `rbac.authorization.k8s.io/v1`, ...
    pub group_version: String,
    /// The namespace, for namespaced resources.
    pub namespace: Option<String>,
    /// The object name, when the request names one.
    pub name: Option<String>,
    /// The body sent (an object or a patch), as JSON.
    pub body: Option<serde_json::Value>,
}

/// What an eviction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Eviction {
    /// The pod is being deleted.
    Evicted,
    /// There was no such pod.
    Gone,
    /// Not now (a PodDisruptionBudget): why.
    Refused(String),
}

/// The Kubernetes API behind blocking calls.
pub struct Cluster {
    rt: tokio::runtime::Runtime,
    client: kube::Client,
    recorder: Option<Recorder>,
    /// Where the client came from, for messages.
    source: String,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("source", &self.source)
            .finish()
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("could not start the runtime of the Kubernetes API client")
}

fn is_status(err: &kube::Error, code: u16) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == code)
}

fn describe<K: Object>(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{} \"{ns}/{name}\"", K::kind(&())),
        None => format!("{} {name:?}", K::kind(&())),
    }
}

impl Cluster {
    /// A client with the credentials and server of the kubeconfig file at `path` (its current
    /// context), never from environment variables.
    ///
    /// # Errors
    /// The file cannot be read or does not describe a usable cluster.
    pub fn from_kubeconfig(path: &Path) -> anyhow::Result<Self> {
        let shown = path.display().to_string();
        let kubeconfig = Kubeconfig::read_from(path)
            .with_context(|| format!("could not load the kubeconfig file {shown:?}"))?;
        Self::from_parsed(kubeconfig, format!("the kubeconfig file {shown:?}"))
    }

    /// A client from kubeconfig YAML held in memory (join's TLS bootstrap credentials before
    /// any file exists); `source` names it in messages.
    ///
    /// # Errors
    /// The YAML does not describe a usable cluster.
    pub fn from_kubeconfig_yaml(yaml: &str, source: &str) -> anyhow::Result<Self> {
        let kubeconfig = Kubeconfig::from_yaml(yaml)
            .with_context(|| format!("could not parse the kubeconfig of {source}"))?;
        Self::from_parsed(kubeconfig, source.to_string())
    }

    fn from_parsed(kubeconfig: Kubeconfig, shown: String) -> anyhow::Result<Self> {
        let rt = runtime()?;
        let mut config = rt
            .block_on(kube::Config::from_custom_kubeconfig(
                kubeconfig,
                &KubeConfigOptions::default(),
            ))
            .with_context(|| format!("{shown} is not usable"))?;
        // Every call is bounded: an API server that accepts but cannot answer (its etcd gone)
        // must not hang a command; the waits retry.
        config.connect_timeout = Some(Duration::from_secs(10));
        config.read_timeout = Some(Duration::from_secs(30));
        config.write_timeout = Some(Duration::from_secs(30));
        let client = {
            // The client's request buffer is a task: it needs the runtime to exist.
            let _guard = rt.enter();
            kube::Client::try_from(config)
                .with_context(|| format!("could not build a client from {shown}"))?
        };
        Ok(Self {
            rt,
            client,
            recorder: None,
            source: shown,
        })
    }

    /// A cluster that changes nothing: it prints each request to `out` as kubeadm's dry-run
    /// does and answers like an empty cluster with a placeholder for every node.
    pub fn recording(out: Out) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime without I/O or timer drivers needs no OS resource");
        let recorder = Recorder {
            state: Arc::new(Mutex::new(RecorderState::default())),
            out,
        };
        let client = {
            let _guard = rt.enter();
            kube::Client::new(recorder.clone(), "default")
        };
        Self {
            rt,
            client,
            recorder: Some(recorder),
            source: "the dry-run recorder".into(),
        }
    }

    /// Seeds the recorder with objects its GETs and LISTs return (tests). No effect on a real
    /// cluster.
    pub fn with_objects(self, objects: impl IntoIterator<Item = serde_json::Value>) -> Self {
        if let Some(r) = &self.recorder
            && let Ok(mut s) = r.state.lock()
        {
            s.objects.extend(objects);
        }
        self
    }

    /// Every request the recorder saw, in order; empty for a real cluster.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.recorder
            .as_ref()
            .and_then(|r| r.state.lock().ok().map(|s| s.requests.clone()))
            .unwrap_or_default()
    }

    /// Whether this is the dry-run recorder.
    pub fn is_recording(&self) -> bool {
        self.recorder.is_some()
    }

    fn request<K: Object>(namespace: Option<&str>) -> kube::core::Request {
        kube::core::Request::new(K::url_path(&(), namespace))
    }

    fn block<T>(&self, f: impl Future<Output = T>) -> T {
        self.rt.block_on(f)
    }

    /// Creates `obj`, or replaces the object of that name (kubeadm: CreateOrUpdateConfigMap,
    /// CreateOrUpdateRole, ...).
    ///
    /// # Errors
    /// The API server refused the create (other than "already exists") or the update.
    pub fn create_or_update<K: Object>(&self, obj: &K) -> anyhow::Result<()> {
        let (ns, name) = (obj.meta().namespace.clone(), obj.meta().name.clone());
        let name = name.unwrap_or_default();
        let what = describe::<K>(ns.as_deref(), &name);
        let body = serde_json::to_vec(obj).with_context(|| format!("could not encode {what}"))?;
        let req = Self::request::<K>(ns.as_deref());
        let create = req
            .create(&PostParams::default(), body.clone())
            .with_context(|| format!("could not build the request to create {what}"))?;
        match self.block(self.client.request::<K>(create)) {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 409) => {
                let update = req
                    .replace(&name, &PostParams::default(), body)
                    .with_context(|| format!("could not build the request to update {what}"))?;
                self.block(self.client.request::<K>(update))
                    .map(|_| ())
                    .with_context(|| format!("unable to update {what}"))
            }
            Err(e) => Err(e).with_context(|| format!("unable to create {what}")),
        }
    }

    /// Reads the object `name`, applies `change` and writes it back with the resourceVersion
    /// it was read at, reading again on a conflict (kubeadm: apiclient.MutateConfigMap).
    ///
    /// # Errors
    /// The object does not exist, `change` fails, or the API refuses the write five times.
    pub fn mutate<K: Object>(
        &self,
        namespace: Option<&str>,
        name: &str,
        change: impl Fn(&mut K) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let what = describe::<K>(namespace, name);
        for _ in 0..5 {
            let mut obj = self
                .get::<K>(namespace, name)?
                .with_context(|| format!("{what} does not exist"))?;
            change(&mut obj)?;
            obj.meta_mut().managed_fields = None;
            let body =
                serde_json::to_vec(&obj).with_context(|| format!("could not encode {what}"))?;
            let update = Self::request::<K>(namespace)
                .replace(name, &PostParams::default(), body)
                .with_context(|| format!("could not build the request to update {what}"))?;
            match self.block(self.client.request::<K>(update)) {
                Ok(_) => return Ok(()),
                Err(e) if is_status(&e, 409) => continue,
                Err(e) => return Err(e).with_context(|| format!("unable to update {what}")),
            }
        }
        anyhow::bail!(
            "unable to update {what}: it kept changing while kubeboot wrote it (5 conflicts); run again"
        )
    }

    /// Creates `obj` unless an object of that name exists, which is kept as it is: for
    /// objects users edit (kubeadm: CreateOrRetainConfigMap). Returns whether it created.
    ///
    /// # Errors
    /// The API server refused the create for another reason.
    pub fn create_or_retain<K: Object>(&self, obj: &K) -> anyhow::Result<bool> {
        let (ns, name) = (obj.meta().namespace.clone(), obj.meta().name.clone());
        let what = describe::<K>(ns.as_deref(), name.as_deref().unwrap_or_default());
        let body = serde_json::to_vec(obj).with_context(|| format!("could not encode {what}"))?;
        let create = Self::request::<K>(ns.as_deref())
            .create(&PostParams::default(), body)
            .with_context(|| format!("could not build the request to create {what}"))?;
        match self.block(self.client.request::<K>(create)) {
            Ok(_) => Ok(true),
            Err(e) if is_status(&e, 409) => Ok(false),
            Err(e) => Err(e).with_context(|| format!("unable to create {what}")),
        }
    }

    /// The object `name`, or `None` if there is none.
    ///
    /// # Errors
    /// The API server could not be asked or refused.
    pub fn get<K: Object>(&self, namespace: Option<&str>, name: &str) -> anyhow::Result<Option<K>> {
        let what = describe::<K>(namespace, name);
        let get = Self::request::<K>(namespace)
            .get(name, &GetParams::default())
            .with_context(|| format!("could not build the request to get {what}"))?;
        match self.block(self.client.request::<K>(get)) {
            Ok(obj) => Ok(Some(obj)),
            Err(e) if is_status(&e, 404) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("unable to get {what}")),
        }
    }

    /// Every object of the kind in `namespace` (all namespaces for `None`) that matches the
    /// field selector (`type=bootstrap.kubernetes.io/token`), if one is given.
    ///
    /// # Errors
    /// The API server could not be asked or refused.
    pub fn list<K: Object>(
        &self,
        namespace: Option<&str>,
        field_selector: Option<&str>,
    ) -> anyhow::Result<Vec<K>> {
        let mut lp = ListParams::default();
        if let Some(fs) = field_selector {
            lp = lp.fields(fs);
        }
        let kind = K::plural(&()).to_string();
        let list = Self::request::<K>(namespace)
            .list(&lp)
            .with_context(|| format!("could not build the request to list {kind}"))?;
        self.block(self.client.request::<kube::core::ObjectList<K>>(list))
            .map(|l| l.items)
            .with_context(|| format!("unable to list {kind}"))
    }

    /// Deletes the object `name`. Returns false if there was none.
    ///
    /// # Errors
    /// The API server could not be asked or refused.
    pub fn delete<K: Object>(&self, namespace: Option<&str>, name: &str) -> anyhow::Result<bool> {
        let what = describe::<K>(namespace, name);
        let delete = Self::request::<K>(namespace)
            .delete(name, &DeleteParams::default())
            .with_context(|| format!("could not build the request to delete {what}"))?;
        match self.block(self.client.request_status::<serde_json::Value>(delete)) {
            Ok(_) => Ok(true),
            Err(e) if is_status(&e, 404) => Ok(false),
            Err(e) => Err(e).with_context(|| format!("unable to delete {what}")),
        }
    }

    /// Evicts the pod `namespace/name` through the Eviction API (PodDisruptionBudgets hold).
    ///
    /// # Errors
    /// The API server could not be asked or failed otherwise than refusing.
    pub fn evict(&self, namespace: &str, name: &str) -> anyhow::Result<Eviction> {
        let what = describe::<k8s_openapi::api::core::v1::Pod>(Some(namespace), name);
        let req = Self::request::<k8s_openapi::api::core::v1::Pod>(Some(namespace))
            .evict(name, &kube::api::EvictParams::default())
            .with_context(|| format!("could not build the request to evict {what}"))?;
        match self.block(self.client.request_status::<serde_json::Value>(req)) {
            Ok(_) => Ok(Eviction::Evicted),
            Err(e) if is_status(&e, 404) => Ok(Eviction::Gone),
            // 429: a PodDisruptionBudget does not allow it now.
            Err(kube::Error::Api(s)) if s.code == 429 || s.code == 500 => {
                Ok(Eviction::Refused(s.message))
            }
            Err(e) => Err(e).with_context(|| format!("unable to evict {what}")),
        }
    }

    /// Applies a strategic merge patch to the Node `name` (kubeadm: apiclient.PatchNode
    /// sends the two-way merge patch of its change).
    ///
    /// # Errors
    /// The API server could not be asked or refused.
    pub fn patch_node(&self, name: &str, patch: &serde_json::Value) -> anyhow::Result<Node> {
        let what = describe::<Node>(None, name);
        let req = Self::request::<Node>(None)
            .patch(name, &PatchParams::default(), &Patch::Strategic(patch))
            .with_context(|| format!("could not build the request to patch {what}"))?;
        self.block(self.client.request::<Node>(req))
            .with_context(|| format!("unable to patch {what}"))
    }

    /// Sends the certificate request `csr_pem` as the CertificateSigningRequest `name` for
    /// `signer` (kubeadm/kubelet: csr.RequestCertificate + WaitForCertificate) and waits up to
    /// `timeout` for the signed certificate, calling `progress(elapsed)` about every ten
    /// seconds. A request of that name that exists already is waited on when it carries the
    /// same request (a re-run), and is an error otherwise.
    ///
    /// # Errors
    /// The request was denied or failed, not signed in time, or the API refused it.
    pub fn request_certificate(
        &self,
        name: &str,
        signer: &str,
        csr_pem: &str,
        timeout: Duration,
        mut progress: impl FnMut(Duration),
    ) -> anyhow::Result<String> {
        use k8s_openapi::api::certificates::v1::{
            CertificateSigningRequest, CertificateSigningRequestSpec,
        };
        let request = k8s_openapi::ByteString(csr_pem.as_bytes().to_vec());
        let csr = CertificateSigningRequest {
            metadata: kube::api::ObjectMeta {
                name: Some(name.to_string()),
                ..Default::default()
            },
            spec: CertificateSigningRequestSpec {
                request: request.clone(),
                signer_name: signer.to_string(),
                usages: Some(
                    ["digital signature", "key encipherment", "client auth"]
                        .map(String::from)
                        .to_vec(),
                ),
                ..Default::default()
            },
            status: None,
        };
        if !self.create_or_retain(&csr)? {
            let existing = self.get::<CertificateSigningRequest>(None, name)?;
            anyhow::ensure!(
                existing.as_ref().is_some_and(|e| e.spec.request == request),
                "the CertificateSigningRequest {name:?} exists with another key; delete it (kubectl delete csr {name}) and run again"
            );
        }
        let start = Instant::now();
        let mut last_report = Duration::ZERO;
        loop {
            // A transient error (an API server restarting) is retried until the timeout.
            if let Ok(Some(found)) = self.get::<CertificateSigningRequest>(None, name) {
                let status = found.status.unwrap_or_default();
                if let Some(c) =
                    status.conditions.iter().flatten().find(|c| {
                        (c.type_ == "Denied" || c.type_ == "Failed") && c.status != "False"
                    })
                {
                    anyhow::bail!(
                        "the CertificateSigningRequest {name:?} was {} ({}: {})",
                        c.type_.to_lowercase(),
                        c.reason.as_deref().unwrap_or("no reason"),
                        c.message.as_deref().unwrap_or("no message")
                    );
                }
                if let Some(cert) = status.certificate.filter(|c| !c.0.is_empty()) {
                    return String::from_utf8(cert.0)
                        .with_context(|| format!("the certificate of {name:?} is not PEM text"));
                }
            }
            let elapsed = start.elapsed();
            anyhow::ensure!(
                elapsed < timeout,
                "the CertificateSigningRequest {name:?} (signer {signer}) was not approved and signed within {}; on a control-plane node, `kubectl get csr {name}` shows its state, and `kubectl certificate approve {name}` approves it",
                crate::health::human(timeout)
            );
            if elapsed - last_report >= Duration::from_secs(10) {
                last_report = elapsed;
                progress(elapsed);
            }
            std::thread::sleep(API_CALL_RETRY_INTERVAL);
        }
    }

    /// Waits until the Node `name` exists, polling every [`API_CALL_RETRY_INTERVAL`] for up to
    /// `timeout`, calling `progress(elapsed)` about every ten seconds.
    ///
    /// # Errors
    /// The node did not register within `timeout` (the last API error, if any, is the cause).
    pub fn wait_for_node(
        &self,
        name: &str,
        timeout: Duration,
        progress: impl FnMut(Duration),
    ) -> anyhow::Result<Node> {
        self.wait_for_node_every(name, timeout, API_CALL_RETRY_INTERVAL, progress)
    }

    /// [`Cluster::wait_for_node`], polling every `interval`.
    ///
    /// # Errors
    /// The node did not register within `timeout` (the last API error, if any, is the cause).
    pub fn wait_for_node_every(
        &self,
        name: &str,
        timeout: Duration,
        interval: Duration,
        mut progress: impl FnMut(Duration),
    ) -> anyhow::Result<Node> {
        let start = Instant::now();
        let mut last_report = Duration::ZERO;
        loop {
            let last_error = match self.get::<Node>(None, name) {
                Ok(Some(node)) => return Ok(node),
                Ok(None) => None,
                Err(e) => Some(e),
            };
            let elapsed = start.elapsed();
            if elapsed >= timeout {
                let err = anyhow::anyhow!(
                    "the Node {name:?} did not register with the API server ({}) within {}",
                    self.source,
                    crate::health::human(timeout)
                );
                return Err(match last_error {
                    Some(cause) => cause.context(err),
                    None => err,
                });
            }
            if elapsed - last_report >= Duration::from_secs(10) {
                last_report = elapsed;
                progress(elapsed);
            }
            std::thread::sleep(interval.min(timeout - elapsed));
        }
    }
}

/// The recorder's memory: what it was asked and the objects it serves.
#[derive(Default)]
struct RecorderState {
    requests: Vec<Recorded>,
    objects: Vec<serde_json::Value>,
}

/// The tower service under [`Cluster::recording`].
#[derive(Clone)]
struct Recorder {
    state: Arc<Mutex<RecorderState>>,
    out: Out,
}

/// A request path split as the API server routes it.
#[derive(Debug, PartialEq)]
struct Route {
    group_version: String,
    namespace: Option<String>,
    resource: String,
    name: Option<String>,
    subresource: Option<String>,
}

fn route(path: &str) -> Option<Route> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group_version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => (format!("core/{v}"), rest),
        ["apis", g, v, rest @ ..] => (format!("{g}/{v}"), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        _ => (None, rest),
    };
    let (resource, name, subresource) = match rest {
        [r] => (r.to_string(), None, None),
        [r, n] => (r.to_string(), Some(n.to_string()), None),
        [r, n, s] => (r.to_string(), Some(n.to_string()), Some(s.to_string())),
        _ => return None,
    };
    Some(Route {
        group_version,
        namespace,
        resource,
        name,
        subresource,
    })
}

/// The plural resource of an object, from its kind (the recorder's store is keyed like the
/// API server's paths).
fn plural_of(obj: &serde_json::Value) -> String {
    let kind = obj["kind"].as_str().unwrap_or_default().to_lowercase();
    if kind.ends_with('s') {
        format!("{kind}es")
    } else if let Some(stem) = kind.strip_suffix('y') {
        format!("{stem}ies")
    } else {
        format!("{kind}s")
    }
}

fn field<'a>(obj: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    path.split('.').try_fold(obj, |v, k| v.get(k))
}

fn matches_selector(obj: &serde_json::Value, selector: &str) -> bool {
    selector
        .split(',')
        .filter(|s| !s.is_empty())
        .all(|term| match term.split_once('=') {
            Some((k, v)) => field(obj, k).and_then(|x| x.as_str()) == Some(v),
            None => true,
        })
}

fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| {
            v.replace("%3D", "=")
                .replace("%2F", "/")
                .replace("%2C", ",")
                .replace("%3A", ":")
        })
    })
}

fn json_response(code: u16, value: &serde_json::Value) -> http::Response<Body> {
    let mut resp = http::Response::new(Body::from(
        serde_json::to_vec(value).expect("JSON values always serialize"),
    ));
    *resp.status_mut() = http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::OK);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

fn not_found(route: &Route) -> http::Response<Body> {
    let name = route.name.clone().unwrap_or_default();
    json_response(
        404,
        &serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("{} {name:?} not found", route.resource),
            "reason": "NotFound", "code": 404,
            "details": {"name": name, "kind": route.resource},
        }),
    )
}

/// What kubeadm's dry-run getter answers for a node: an empty Node of that name.
fn placeholder_node(name: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {},
    })
}

impl Recorder {
    fn say(&self, line: &str) {
        self.out.say("dryrun", line);
    }

    fn print(&self, rec: &Recorded) {
        self.say(&format!(
            "Would perform action {} on resource {:?} in API group {:?}",
            rec.verb, rec.resource, rec.group_version
        ));
        if let Some(name) = &rec.name {
            self.say(&format!("Resource name: {name:?}"));
        }
        match (rec.verb.as_str(), &rec.body) {
            ("CREATE" | "UPDATE", Some(body)) => {
                self.say("Attached object:");
                let yaml = yaml_serde::to_string(&manifests::yaml::sorted(body))
                    .expect("a YAML value always serializes");
                for line in yaml.lines() {
                    self.out.line(&format!("\t{line}"));
                }
            }
            ("PATCH", Some(body)) => {
                self.say("Attached patch:");
                self.out.line(&format!("\t{body}"));
            }
            _ => {}
        }
    }

    fn find(&self, route: &Route, name: &str) -> Option<serde_json::Value> {
        let state = self.state.lock().ok()?;
        state
            .objects
            .iter()
            .find(|o| {
                plural_of(o) == route.resource
                    && o["metadata"]["name"].as_str() == Some(name)
                    && o["metadata"]["namespace"].as_str() == route.namespace.as_deref()
            })
            .cloned()
    }

    fn answer(&self, parts: http::request::Parts, body: Vec<u8>) -> http::Response<Body> {
        let Some(route) = route(parts.uri.path()) else {
            return json_response(
                404,
                &serde_json::json!({"kind": "Status", "code": 404, "message": "no such path"}),
            );
        };
        let body: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
        let verb = match (&parts.method, &route.name) {
            (&http::Method::GET, Some(_)) => "GET",
            (&http::Method::GET, None) => "LIST",
            (&http::Method::POST, _) => "CREATE",
            (&http::Method::PUT, _) => "UPDATE",
            (&http::Method::PATCH, _) => "PATCH",
            (&http::Method::DELETE, _) => "DELETE",
            _ => "UNKNOWN",
        };
        let rec = Recorded {
            verb: verb.into(),
            resource: route.resource.clone(),
            group_version: route.group_version.clone(),
            namespace: route.namespace.clone(),
            name: route.name.clone(),
            body: body.clone(),
        };
        self.print(&rec);
        if let Ok(mut s) = self.state.lock() {
            s.requests.push(rec);
        }
        let name = route.name.clone().unwrap_or_default();
        let existing = || {
            self.find(&route, &name).or_else(|| {
                (route.resource == "nodes" && route.subresource.is_none())
                    .then(|| placeholder_node(&name))
            })
        };
        match verb {
            "GET" | "PATCH" => match existing() {
                Some(obj) => json_response(200, &obj),
                None => not_found(&route),
            },
            "LIST" => {
                let selector = query_param(parts.uri.query(), "fieldSelector");
                let items: Vec<serde_json::Value> = self
                    .state
                    .lock()
                    .map(|s| {
                        s.objects
                            .iter()
                            .filter(|o| {
                                plural_of(o) == route.resource
                                    && (route.namespace.is_none()
                                        || o["metadata"]["namespace"].as_str()
                                            == route.namespace.as_deref())
                                    && selector
                                        .as_deref()
                                        .is_none_or(|sel| matches_selector(o, sel))
                            })
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                json_response(
                    200,
                    &serde_json::json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items}),
                )
            }
            "CREATE" | "UPDATE" => json_response(201, &body.unwrap_or_default()),
            "DELETE" => match self.find(&route, &name) {
                Some(_) => json_response(
                    200,
                    &serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}}),
                ),
                None => not_found(&route),
            },
            _ => json_response(405, &serde_json::json!({"kind": "Status", "code": 405})),
        }
    }
}

impl tower_service::Service<http::Request<Body>> for Recorder {
    type Response = http::Response<Body>;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let bytes = body
                .collect_bytes()
                .await
                .map(|b| b.to_vec())
                .unwrap_or_default();
            Ok(this.answer(parts, bytes))
        })
    }
}

/// The decoded `data` of a Secret (k8s-openapi keeps it as bytes already).
pub fn secret_data(secret: &k8s_openapi::api::core::v1::Secret) -> BTreeMap<String, Vec<u8>> {
    secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};
    use k8s_openapi::api::rbac::v1::ClusterRole;

    use super::*;

    fn cm(ns: &str, name: &str) -> ConfigMap {
        ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                ..Default::default()
            },
            data: Some([("k".to_string(), "v".to_string())].into()),
            ..Default::default()
        }
    }

    #[test]
    fn routes_split_like_the_api_server() {
        assert_eq!(
            route("/api/v1/namespaces/kube-system/configmaps/kubeadm-config"),
            Some(Route {
                group_version: "core/v1".into(),
                namespace: Some("kube-system".into()),
                resource: "configmaps".into(),
                name: Some("kubeadm-config".into()),
                subresource: None,
            })
        );
        let r = route("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings").unwrap();
        assert_eq!(
            (r.group_version.as_str(), r.resource.as_str(), r.name),
            ("rbac.authorization.k8s.io/v1", "clusterrolebindings", None)
        );
        let r = route("/api/v1/namespaces").unwrap();
        assert_eq!((r.resource.as_str(), r.namespace), ("namespaces", None));
    }

    #[test]
    fn recording_prints_creates_as_kubeadm_dry_run() {
        let out = Out::capture();
        let c = Cluster::recording(out.clone());
        c.create_or_update(&cm("kube-system", "kubeadm-config"))
            .expect("recorded");
        assert_eq!(
            out.captured(),
            "[dryrun] Would perform action CREATE on resource \"configmaps\" in API group \"core/v1\"\n\
             [dryrun] Attached object:\n\
             \tapiVersion: v1\n\tdata:\n\t  k: v\n\tkind: ConfigMap\n\tmetadata:\n\t  name: kubeadm-config\n\t  namespace: kube-system\n"
        );
        let rec = c.recorded();
        assert_eq!(rec.len(), 1);
        assert_eq!(rec[0].namespace.as_deref(), Some("kube-system"));
    }

    #[test]
    fn recording_answers_404_for_gets_and_a_node_placeholder() {
        let c = Cluster::recording(Out::capture());
        assert!(
            c.get::<ConfigMap>(Some("kube-system"), "x")
                .unwrap()
                .is_none()
        );
        let node = c.get::<Node>(None, "n1").unwrap().expect("placeholder");
        assert_eq!(node.metadata.name.as_deref(), Some("n1"));
        let node = c
            .wait_for_node("n1", Duration::from_secs(1), |_| {})
            .expect("at once");
        assert_eq!(node.metadata.name.as_deref(), Some("n1"));
    }

    #[test]
    fn create_or_retain_keeps_an_existing_object() {
        let existing = serde_json::to_value(cm("kube-system", "coredns")).unwrap();
        let c = Cluster::recording(Out::capture()).with_objects([existing]);
        // The recorder creates whatever it is asked to; a real server's 409 is the other path,
        // covered by the e2e scenario.
        assert!(c.create_or_retain(&cm("kube-system", "other")).unwrap());
        let got: Option<ConfigMap> = c.get(Some("kube-system"), "coredns").unwrap();
        assert!(got.is_some());
    }

    #[test]
    fn list_filters_by_namespace_and_field_selector_and_delete_needs_the_object() {
        let token = serde_json::json!({"apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
            "metadata": {"name": "bootstrap-token-abcdef", "namespace": "kube-system"}});
        let other = serde_json::json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "x", "namespace": "kube-system"}});
        let c = Cluster::recording(Out::capture()).with_objects([token, other]);
        let all: Vec<Secret> = c.list(Some("kube-system"), None).unwrap();
        assert_eq!(all.len(), 2);
        let tokens: Vec<Secret> = c
            .list(
                Some("kube-system"),
                Some("type=bootstrap.kubernetes.io/token"),
            )
            .unwrap();
        assert_eq!(tokens.len(), 1);
        assert!(
            c.delete::<Secret>(Some("kube-system"), "bootstrap-token-abcdef")
                .unwrap()
        );
        assert!(
            !c.delete::<Secret>(Some("kube-system"), "bootstrap-token-zzzzzz")
                .unwrap()
        );
    }

    #[test]
    fn cluster_scoped_objects_have_no_namespace_in_their_path() {
        let c = Cluster::recording(Out::capture());
        let role = ClusterRole {
            metadata: kube::api::ObjectMeta {
                name: Some("kubeadm:get-nodes".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        c.create_or_update(&role).unwrap();
        let rec = &c.recorded()[0];
        assert_eq!(
            (
                rec.resource.as_str(),
                rec.namespace.as_deref(),
                rec.group_version.as_str()
            ),
            ("clusterroles", None, "rbac.authorization.k8s.io/v1")
        );
    }

    #[test]
    fn patches_are_printed_as_json() {
        let out = Out::capture();
        let c = Cluster::recording(out.clone());
        c.patch_node(
            "n1",
            &serde_json::json!({"metadata": {"labels": {"a": ""}}}),
        )
        .unwrap();
        assert!(
            out.captured().contains(
                "[dryrun] Resource name: \"n1\"\n[dryrun] Attached patch:\n\t{\"metadata\":{\"labels\":{\"a\":\"\"}}}\n"
            ),
            "{}",
            out.captured()
        );
    }

    #[test]
    fn from_kubeconfig_names_a_missing_file() {
        let e = Cluster::from_kubeconfig(Path::new("/nonexistent/admin.conf")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/admin.conf"), "{e}");
    }
}
