//! What the cluster DNS knows, kept current from the API: Services and Endpoints of every
//! namespace into the server's [`Store`], the `coredns` ConfigMap's Corefile into its
//! [`Settings`], and the upstream resolvers from the pod's resolv.conf (read once, at start).
//!
//! Each kind is listed (in pages of [`PAGE`], each applied as it arrives, so the objects of a
//! whole list are never in memory at once) and then watched from the list's resourceVersion,
//! as client-go's reflector does (kube's `runtime` watcher would do the same, for more code in
//! the binary): a watch that ends is resumed from the last resourceVersion seen (bookmarks
//! included), one that fails with 410 Gone is followed by a new list at once, any other failure
//! by a new list after a backoff (1 s doubling to 30 s). A new list replaces the kind's
//! records: what disappeared meanwhile is removed. Once both the Services and the Endpoints
//! lists have been applied the server is ready ([`Server::mark_synced`]); it stays ready while
//! the watches recover, answering from what it has, as CoreDNS does.
//!
//! The ConfigMap is watched by field selector (`metadata.name=coredns`, the only way to narrow a
//! list or watch: RBAC's resourceNames cannot), parsed by [`corefile::parse`] and swapped in as
//! a whole; each warning (a plugin kubeboot's DNS does not honour) is logged once, at warn
//! level. A Corefile that does not parse keeps the previous settings; no ConfigMap means the
//! defaults: `forward . /etc/resolv.conf`, ttl 30, `pods insecure`.
//!
//! No upstream is ever this server itself: every candidate goes through
//! [`answer::without_loops`] with the `--cluster-dns-ip` addresses and the pod's own
//! addresses (its interfaces').

use std::collections::HashSet;
use std::fmt::Debug;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Service};
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, Resource};
use serde::de::DeserializeOwned;
use tracing::{debug, info, warn};

use super::answer::{self, Settings};
use super::corefile::{self, ForwardTarget, Parsed};
use super::serve::Server;
use super::store::Store;

/// Objects per list page: bounds the memory a list of thousands of Services takes at once.
pub const PAGE: u32 = 250;
/// The API server ends each watch after this long (client-go's reflector picks 5-10 min);
/// the watch is then resumed from the last resourceVersion.
const WATCH_SECONDS: u32 = 290;
/// A watch that delivers nothing at all for this long (not even a bookmark or its own end)
/// is given up: the connection is gone without a FIN.
const WATCH_SILENCE: Duration = Duration::from_secs(WATCH_SECONDS as u64 + 60);
/// One list page's time to arrive.
const LIST_TIMEOUT: Duration = Duration::from_secs(60);
/// Backoff after a failed list or watch.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// What the watches need besides the client and the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchConfig {
    /// `--cluster-domain`: a Corefile naming another is warned about.
    pub cluster_domain: String,
    /// `--corefile-configmap` (namespace, name); None watches no ConfigMap.
    pub corefile_configmap: Option<(String, String)>,
    /// `--resolv-conf`: a Corefile's `forward . <this path>` means the upstreams below.
    pub resolv_conf: PathBuf,
    /// The nameservers of `resolv_conf`, read at start.
    pub resolv_conf_upstreams: Vec<SocketAddr>,
    /// Addresses that are this server: never upstreams.
    pub own: Vec<IpAddr>,
}

/// A client from `kubeconfig`, or the pod's service account when None.
///
/// # Errors
/// When the kubeconfig cannot be read or used, or (None) the process is not in a pod.
pub async fn client(kubeconfig: Option<&Path>) -> anyhow::Result<Client> {
    let mut config = match kubeconfig {
        Some(path) => {
            let shown = path.display().to_string();
            let kc = Kubeconfig::read_from(path)
                .with_context(|| format!("could not read the kubeconfig {shown:?} (--kubeconfig)"))?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .with_context(|| format!("the kubeconfig {shown:?} is not usable"))?
        }
        None => Config::incluster().context(
            "no in-cluster configuration (KUBERNETES_SERVICE_HOST and the service account token); run inside a pod or pass --kubeconfig",
        )?,
    };
    config.connect_timeout = Some(Duration::from_secs(5));
    // Watches are long polls: their silence is bounded by WATCH_SILENCE, lists by LIST_TIMEOUT.
    config.read_timeout = None;
    config.write_timeout = Some(Duration::from_secs(15));
    Client::try_from(config).context("could not build the API client")
}

/// The nameservers of a resolv.conf, port 53, in order (glibc's `nameserver` lines; an
/// address glibc would not take either, like one with a zone, is skipped).
pub fn nameservers(resolv_conf: &str) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
                .and_then(|w| w.parse::<IpAddr>().ok())
                .map(|ip| SocketAddr::new(ip, 53))
        })
        .collect()
}

/// The nameservers of the resolv.conf at `path`.
///
/// # Errors
/// When the file cannot be read.
pub fn read_resolv_conf(path: &Path) -> anyhow::Result<Vec<SocketAddr>> {
    let fs = crate::host::fs::Fs::real();
    let text = fs.read_string_if_exists(path)?.with_context(|| {
        format!(
            "the resolv.conf {:?} does not exist; pass --resolv-conf with the file naming the upstream resolvers (an empty file: none)",
            path.display().to_string()
        )
    })?;
    Ok(nameservers(&text))
}

/// This server's own addresses: `cluster_dns_ips` and the addresses of every interface of its
/// network namespace (the pod's IPs).
pub fn own_addresses(cluster_dns_ips: &[IpAddr]) -> Vec<IpAddr> {
    let mut own = cluster_dns_ips.to_vec();
    match nix::ifaddrs::getifaddrs() {
        Ok(addrs) => own.extend(addrs.filter_map(|a| {
            let a = a.address?;
            a.as_sockaddr_in()
                .map(|v4| IpAddr::V4(v4.ip()))
                .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
        })),
        Err(e) => warn!(
            "could not list this pod's addresses ({e}); only --cluster-dns-ip is excluded from the upstreams"
        ),
    }
    own.sort();
    own.dedup();
    own
}

/// The settings without a Corefile: forward to the resolv.conf's nameservers.
pub fn default_settings(resolv_conf_upstreams: &[SocketAddr], own: &[IpAddr]) -> Settings {
    Settings {
        upstreams: answer::without_loops(resolv_conf_upstreams, own),
        ..Settings::default()
    }
}

/// The settings a parsed Corefile asks for; `resolve` turns a forward target into addresses.
pub fn settings_from(
    parsed: &Parsed,
    mut resolve: impl FnMut(&ForwardTarget) -> Vec<SocketAddr>,
    own: &[IpAddr],
) -> Settings {
    let mut targets = |ts: &[ForwardTarget]| {
        let all: Vec<SocketAddr> = ts.iter().flat_map(&mut resolve).collect();
        answer::without_loops(&all, own)
    };
    let defaults = Settings::default();
    Settings {
        ttl: parsed.settings_ttl.unwrap_or(defaults.ttl),
        pods_insecure: parsed.pods_insecure,
        upstreams: targets(&parsed.forward),
        stub_domains: parsed
            .stub_domains
            .iter()
            .map(|(zone, ts)| (zone.clone(), targets(ts)))
            .collect(),
    }
}

/// Starts the watches; they run until their tasks are aborted.
pub fn spawn(
    client: Client,
    server: Arc<Server>,
    cfg: WatchConfig,
) -> Vec<tokio::task::JoinHandle<()>> {
    let synced = Arc::new(Synced::default());
    let mut tasks = vec![
        tokio::spawn(mirror::<Service>(
            Api::all(client.clone()),
            server.clone(),
            synced.clone(),
        )),
        tokio::spawn(mirror::<Endpoints>(
            Api::all(client.clone()),
            server.clone(),
            synced,
        )),
    ];
    if let Some((namespace, name)) = cfg.corefile_configmap.clone() {
        let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
        let fields = format!("metadata.name={name}");
        let mut corefile = Corefile::new(server, cfg, name);
        tasks.push(tokio::spawn(async move {
            list_watch(api, Some(fields), "ConfigMap", move |change| {
                corefile.changed(change)
            })
            .await
        }));
    }
    tasks
}

/// Which of the two kinds have been listed once.
#[derive(Default)]
struct Synced {
    services: AtomicBool,
    endpoints: AtomicBool,
}

/// A kind the store mirrors.
trait Mirrored:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
    const KIND: &'static str;
    fn upsert(store: &mut Store, o: &Self);
    fn remove(store: &mut Store, namespace: &str, name: &str);
    fn listed(synced: &Synced) -> &AtomicBool;
}

impl Mirrored for Service {
    const KIND: &'static str = "Service";
    fn upsert(store: &mut Store, o: &Self) {
        store.upsert_service(o)
    }
    fn remove(store: &mut Store, namespace: &str, name: &str) {
        store.remove_service(namespace, name)
    }
    fn listed(synced: &Synced) -> &AtomicBool {
        &synced.services
    }
}

impl Mirrored for Endpoints {
    const KIND: &'static str = "Endpoints";
    fn upsert(store: &mut Store, o: &Self) {
        store.upsert_endpoints(o)
    }
    fn remove(store: &mut Store, namespace: &str, name: &str) {
        store.remove_endpoints(namespace, name)
    }
    fn listed(synced: &Synced) -> &AtomicBool {
        &synced.endpoints
    }
}

fn key<K: Resource>(o: &K) -> (String, String) {
    let m = o.meta();
    (
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
    )
}

/// Keeps the store's records of kind `K` equal to the API's.
async fn mirror<K: Mirrored>(api: Api<K>, server: Arc<Server>, synced: Arc<Synced>) {
    let mut known: HashSet<(String, String)> = HashSet::new();
    // What the list under way has shown so far.
    let mut fresh: HashSet<(String, String)> = HashSet::new();
    list_watch(api, None, K::KIND, move |change| match change {
        Change::ListStart => fresh.clear(),
        Change::Page(items) => {
            fresh.extend(items.iter().map(key));
            server.update_store(|store| {
                for o in &items {
                    K::upsert(store, o);
                }
            });
        }
        Change::ListEnd => {
            server.update_store(|store| {
                for (ns, name) in known.difference(&fresh) {
                    K::remove(store, ns, name);
                }
            });
            info!(kind = K::KIND, count = fresh.len(), "listed");
            known = std::mem::take(&mut fresh);
            K::listed(&synced).store(true, Ordering::SeqCst);
            if synced.services.load(Ordering::SeqCst) && synced.endpoints.load(Ordering::SeqCst) {
                server.mark_synced();
            }
        }
        Change::Applied(o) => {
            known.insert(key(&o));
            server.update_store(|store| K::upsert(store, &o));
        }
        Change::Deleted(o) => {
            let (ns, name) = key(&o);
            server.update_store(|store| K::remove(store, &ns, &name));
            known.remove(&(ns, name));
        }
    })
    .await
}

/// One step of a list+watch.
enum Change<K> {
    /// A list begins.
    ListStart,
    /// One page of it.
    Page(Vec<K>),
    /// The list is complete: what it did not show is gone.
    ListEnd,
    /// Added or modified.
    Applied(K),
    Deleted(K),
}

/// Lists and watches `api` forever, handing each change to `on`.
async fn list_watch<K>(
    api: Api<K>,
    fields: Option<String>,
    kind: &'static str,
    mut on: impl FnMut(Change<K>),
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let mut backoff = BACKOFF_FIRST;
    let mut last_error = String::new();
    loop {
        let rv = match list_all(&api, fields.as_deref(), &mut on).await {
            Ok(rv) => rv,
            Err(e) => {
                report(kind, "list", &e, &mut last_error, backoff);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        match watch_from(&api, fields.as_deref(), rv, &mut on).await {
            Ended::Gone => {
                debug!(kind, "watch expired (410 Gone); listing again");
                backoff = BACKOFF_FIRST;
            }
            Ended::Failed { error, delivered } => {
                if delivered {
                    backoff = BACKOFF_FIRST;
                }
                report(kind, "watch", &error, &mut last_error, backoff);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// Logs a failure at warn level when it differs from the last one, else at debug level.
fn report(kind: &str, what: &str, error: &str, last: &mut String, retry: Duration) {
    if error != last.as_str() {
        warn!("could not {what} {kind}s, retrying in {retry:?}: {error}");
        *last = error.to_string();
    } else {
        debug!("could not {what} {kind}s, retrying in {retry:?}: {error}");
    }
}

/// Every page of a list, handed to `on` as it arrives; the list's resourceVersion.
async fn list_all<K>(
    api: &Api<K>,
    fields: Option<&str>,
    on: &mut impl FnMut(Change<K>),
) -> Result<String, String>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    on(Change::ListStart);
    let mut token: Option<String> = None;
    // Bounded by the API server's continue tokens; a list of more than this many pages is
    // not a list this server can hold anyway.
    for _ in 0..10_000 {
        let mut lp = ListParams::default().limit(PAGE);
        if let Some(f) = fields {
            lp = lp.fields(f);
        }
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = tokio::time::timeout(LIST_TIMEOUT, api.list(&lp))
            .await
            .map_err(|_| format!("no answer in {LIST_TIMEOUT:?}"))?
            .map_err(|e| e.to_string())?;
        on(Change::Page(page.items));
        match page.metadata.continue_ {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => {
                on(Change::ListEnd);
                return Ok(page.metadata.resource_version.unwrap_or_default());
            }
        }
    }
    Err("the list did not end after 10000 pages".to_string())
}

/// Why a watch ended.
enum Ended {
    /// 410 Gone: the resourceVersion is too old; list again.
    Gone,
    /// Any other failure; `delivered`: events arrived before it.
    Failed { error: String, delivered: bool },
}

/// Watches from `rv`, resuming each time the API server ends the watch, until it fails.
async fn watch_from<K>(
    api: &Api<K>,
    fields: Option<&str>,
    mut rv: String,
    on: &mut impl FnMut(Change<K>),
) -> Ended
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let mut delivered = false;
    loop {
        let mut wp = WatchParams::default().timeout(WATCH_SECONDS);
        if let Some(f) = fields {
            wp = wp.fields(f);
        }
        let stream = match api.watch(&wp, &rv).await {
            Ok(s) => s,
            Err(kube::Error::Api(s)) if s.code == 410 => return Ended::Gone,
            Err(e) => {
                return Ended::Failed {
                    error: e.to_string(),
                    delivered,
                };
            }
        };
        let mut stream = std::pin::pin!(stream);
        loop {
            let event = match tokio::time::timeout(WATCH_SILENCE, stream.next()).await {
                Err(_) => {
                    return Ended::Failed {
                        error: format!("the watch was silent for {WATCH_SILENCE:?}"),
                        delivered,
                    };
                }
                // The API server ended the watch (its timeout): resume from `rv`.
                Ok(None) => break,
                Ok(Some(event)) => event,
            };
            match event {
                Ok(WatchEvent::Added(o)) | Ok(WatchEvent::Modified(o)) => {
                    if let Some(v) = &o.meta().resource_version {
                        rv.clone_from(v);
                    }
                    on(Change::Applied(o));
                }
                Ok(WatchEvent::Deleted(o)) => {
                    if let Some(v) = &o.meta().resource_version {
                        rv.clone_from(v);
                    }
                    on(Change::Deleted(o));
                }
                Ok(WatchEvent::Bookmark(b)) => rv = b.metadata.resource_version,
                Ok(WatchEvent::Error(s)) if s.code == 410 => return Ended::Gone,
                Ok(WatchEvent::Error(s)) => {
                    return Ended::Failed {
                        error: format!("{} ({})", s.message, s.code),
                        delivered,
                    };
                }
                Err(e) => {
                    return Ended::Failed {
                        error: e.to_string(),
                        delivered,
                    };
                }
            }
            delivered = true;
        }
    }
}

/// The Corefile's side: the ConfigMap's changes into the server's settings.
struct Corefile {
    server: Arc<Server>,
    cfg: WatchConfig,
    name: String,
    /// Warnings (and errors) already logged: each once.
    logged: HashSet<String>,
    /// The ConfigMap of the list under way, once a page showed it.
    listed: Option<ConfigMap>,
}

impl Corefile {
    fn new(server: Arc<Server>, cfg: WatchConfig, name: String) -> Self {
        Corefile {
            server,
            cfg,
            name,
            logged: HashSet::new(),
            listed: None,
        }
    }

    fn warn_once(&mut self, msg: String) {
        if !self.logged.contains(&msg) {
            warn!("{msg}");
            self.logged.insert(msg);
        }
    }

    fn changed(&mut self, change: Change<ConfigMap>) {
        let cm = match change {
            Change::ListStart => {
                self.listed = None;
                return;
            }
            Change::Page(items) => {
                let name = self.name.as_str();
                if let Some(c) = items
                    .into_iter()
                    .find(|c| c.metadata.name.as_deref() == Some(name))
                {
                    self.listed = Some(c);
                }
                return;
            }
            Change::ListEnd => self.listed.take(),
            Change::Applied(c) => Some(c),
            Change::Deleted(_) => None,
        };
        let settings = match cm.as_ref().map(|c| {
            c.data
                .as_ref()
                .and_then(|d| d.get("Corefile"))
                .map(String::as_str)
        }) {
            None => {
                info!(configmap = %self.name, "no Corefile ConfigMap: forwarding to the resolv.conf's nameservers");
                default_settings(&self.cfg.resolv_conf_upstreams, &self.cfg.own)
            }
            Some(None) => {
                self.warn_once(format!(
                    "the ConfigMap {:?} has no \"Corefile\" key; forwarding to the resolv.conf's nameservers",
                    self.name
                ));
                default_settings(&self.cfg.resolv_conf_upstreams, &self.cfg.own)
            }
            Some(Some(text)) => match corefile::parse(text) {
                Ok(parsed) => self.apply(&parsed),
                Err(e) => {
                    self.warn_once(format!(
                        "the Corefile of the ConfigMap {:?} is not valid, keeping the previous settings: {e}",
                        self.name
                    ));
                    return;
                }
            },
        };
        if *self.server.settings() != settings {
            info!(
                ttl = settings.ttl,
                upstreams = ?settings.upstreams,
                stub_domains = ?settings.stub_domains,
                "DNS settings changed"
            );
            self.server.set_settings(settings);
        }
    }

    fn apply(&mut self, parsed: &Parsed) -> Settings {
        for w in &parsed.warnings {
            self.warn_once(format!("Corefile: {w}"));
        }
        if let Some(domain) = &parsed.cluster_domain
            && domain.trim_end_matches('.') != self.cfg.cluster_domain.trim_end_matches('.')
        {
            self.warn_once(format!(
                "the Corefile's cluster domain {domain:?} is not --cluster-domain {:?}; serving {:?}",
                self.cfg.cluster_domain, self.cfg.cluster_domain
            ));
        }
        let cfg = self.cfg.clone();
        let mut unreadable = Vec::new();
        let settings = settings_from(
            parsed,
            |target| match target {
                ForwardTarget::Addr(a) => vec![*a],
                ForwardTarget::ResolvConf(path) if Path::new(path) == cfg.resolv_conf => {
                    cfg.resolv_conf_upstreams.clone()
                }
                ForwardTarget::ResolvConf(path) => match read_resolv_conf(Path::new(path)) {
                    Ok(v) => v,
                    Err(e) => {
                        unreadable.push(format!("Corefile: forward to {path:?}: {e:#}"));
                        Vec::new()
                    }
                },
            },
            &self.cfg.own,
        );
        for msg in unreadable {
            self.warn_once(msg);
        }
        settings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameservers_in_order_port_53_junk_skipped() {
        let text = "# generated\nsearch svc.cluster.local\nnameserver 10.0.0.2\n\
                    nameserver   fd00::53\nnameserver fe80::1%eth0\nnameserver\n\
                    ;nameserver 9.9.9.9\noptions ndots:5\nnameserver 10.0.0.3 # second\n";
        let got = nameservers(text);
        assert_eq!(
            got,
            vec![
                "10.0.0.2:53".parse().expect("addr"),
                "[fd00::53]:53".parse().expect("addr"),
                "10.0.0.3:53".parse().expect("addr"),
            ]
        );
        assert!(nameservers("").is_empty());
    }

    #[test]
    fn own_addresses_include_loopback_and_cluster_ips() {
        let own = own_addresses(&["10.96.0.10".parse().expect("ip")]);
        assert!(own.contains(&"10.96.0.10".parse().expect("ip")));
        assert!(own.contains(&"127.0.0.1".parse().expect("ip")), "{own:?}");
    }

    #[test]
    fn default_settings_drop_loops() {
        let own: Vec<IpAddr> = vec!["10.96.0.10".parse().expect("ip")];
        let s = default_settings(
            &[
                "10.96.0.10:53".parse().expect("addr"),
                "10.0.0.2:53".parse().expect("addr"),
            ],
            &own,
        );
        assert_eq!(s.upstreams, vec!["10.0.0.2:53".parse().expect("addr")]);
        assert_eq!(s.ttl, Settings::default().ttl);
    }

    #[test]
    fn corefile_settings_resolve_targets_and_drop_loops() {
        let parsed = corefile::parse(
            ".:53 {\n    errors\n    kubernetes cluster.local in-addr.arpa ip6.arpa {\n       pods insecure\n       ttl 7\n    }\n    forward . /etc/resolv.conf 10.96.0.10 10.0.0.9\n}\n",
        )
        .expect("parses");
        let own: Vec<IpAddr> = vec!["10.96.0.10".parse().expect("ip")];
        let s = settings_from(
            &parsed,
            |t| match t {
                ForwardTarget::Addr(a) => vec![*a],
                ForwardTarget::ResolvConf(_) => vec!["10.0.0.2:53".parse().expect("addr")],
            },
            &own,
        );
        assert_eq!(s.ttl, 7);
        assert!(s.pods_insecure);
        assert_eq!(
            s.upstreams,
            vec![
                "10.0.0.2:53".parse().expect("addr"),
                "10.0.0.9:53".parse().expect("addr"),
            ]
        );
    }

    /// The watches against a fake API server (a tower service under `kube::Client`, as the
    /// CSR approver's test): a paged list, watch events, 410 Gone and the list after it, the
    /// Corefile ConfigMap by field selector.
    mod fake_api {
        use std::future::Future;
        use std::pin::Pin;
        use std::sync::Mutex;
        use std::task::{Context as TaskContext, Poll};

        use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
        use hickory_proto::rr::{Name, RecordType};
        use kube::client::Body;

        use super::*;
        use crate::dns::answer::{Outcome, Transport};
        use crate::dns::serve::Limits;

        #[derive(Clone, Default)]
        struct FakeApi(Arc<Mutex<Vec<String>>>);

        fn svc(name: &str, ip: &str, rv: &str) -> serde_json::Value {
            serde_json::json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": "default", "resourceVersion": rv},
                "spec": {"clusterIP": ip, "ports": [{"port": 80}]}})
        }

        fn list(
            kind: &str,
            items: Vec<serde_json::Value>,
            rv: &str,
            cont: Option<&str>,
        ) -> Vec<u8> {
            let mut meta = serde_json::json!({"resourceVersion": rv});
            if let Some(c) = cont {
                meta["continue"] = c.into();
            }
            serde_json::to_vec(&serde_json::json!({"apiVersion": "v1", "kind": kind,
                "metadata": meta, "items": items}))
            .expect("json")
        }

        fn events(evs: &[(&str, serde_json::Value)]) -> Vec<u8> {
            let mut out = Vec::new();
            for (t, o) in evs {
                out.extend(
                    serde_json::to_vec(&serde_json::json!({"type": t, "object": o})).expect("json"),
                );
                out.push(b'\n');
            }
            out
        }

        impl FakeApi {
            /// The body for one request, None: never answer (a watch that stays open).
            fn answer(&self, uri: &http::Uri) -> Option<Vec<u8>> {
                let pq = uri
                    .path_and_query()
                    .map(|p| p.to_string())
                    .unwrap_or_default();
                let mut seen = self.0.lock().expect("lock");
                let before = seen.iter().filter(|r| **r == pq).count();
                seen.push(pq.clone());
                let path = uri.path();
                let q = uri.query().unwrap_or("");
                let watch = q.contains("watch=true");
                match path {
                    "/api/v1/services" if !watch && q.contains("continue=c1") => Some(list(
                        "ServiceList",
                        vec![svc("b", "10.96.0.22", "9")],
                        "10",
                        None,
                    )),
                    // The first list: two pages. After the 410: only c is left.
                    "/api/v1/services" if !watch => {
                        let lists = seen
                            .iter()
                            .filter(|r| {
                                r.starts_with("/api/v1/services?")
                                    && !r.contains("watch=true")
                                    && !r.contains("continue=")
                            })
                            .count();
                        Some(if lists == 1 {
                            list(
                                "ServiceList",
                                vec![svc("a", "10.96.0.21", "8")],
                                "10",
                                Some("c1"),
                            )
                        } else {
                            list(
                                "ServiceList",
                                vec![svc("c", "10.96.0.23", "11")],
                                "20",
                                None,
                            )
                        })
                    }
                    "/api/v1/services" if q.contains("resourceVersion=10") && before == 0 => {
                        Some(events(&[
                            ("ADDED", svc("c", "10.96.0.23", "11")),
                            ("DELETED", svc("a", "10.96.0.21", "12")),
                            (
                                "ERROR",
                                serde_json::json!({"kind": "Status", "apiVersion": "v1",
                            "status": "Failure", "reason": "Expired", "code": 410,
                            "message": "too old resource version"}),
                            ),
                        ]))
                    }
                    "/api/v1/endpoints" if !watch => {
                        Some(list("EndpointsList", vec![], "10", None))
                    }
                    "/api/v1/namespaces/kube-system/configmaps" if !watch => Some(list(
                        "ConfigMapList",
                        vec![
                            serde_json::json!({"metadata": {"name": "coredns", "namespace": "kube-system", "resourceVersion": "5"},
                            "data": {"Corefile": ".:53 {\n    forward . 10.0.0.9\n    cache 30\n}\n"}}),
                        ],
                        "10",
                        None,
                    )),
                    _ => None,
                }
            }
        }

        impl tower_service::Service<http::Request<Body>> for FakeApi {
            type Response = http::Response<Body>;
            type Error = std::convert::Infallible;
            type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

            fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
                Poll::Ready(Ok(()))
            }

            fn call(&mut self, req: http::Request<Body>) -> Self::Future {
                let body = self.answer(req.uri());
                Box::pin(async move {
                    let Some(body) = body else {
                        return std::future::pending().await;
                    };
                    let mut r = http::Response::new(Body::from(body));
                    r.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("application/json"),
                    );
                    Ok(r)
                })
            }
        }

        fn rcode(server: &Server, name: &str) -> ResponseCode {
            let mut m = Message::new();
            m.set_id(1)
                .set_message_type(MessageType::Query)
                .set_op_code(OpCode::Query);
            m.add_query(Query::query(
                Name::from_ascii(name).expect("name"),
                RecordType::A,
            ));
            match server.answer(&m.to_vec().expect("encode"), Transport::Udp) {
                Outcome::Reply(r) => Message::from_vec(&r).expect("reply").response_code(),
                other => panic!("{other:?}"),
            }
        }

        #[tokio::test]
        async fn lists_pages_applies_events_relists_after_gone_and_reads_the_corefile() {
            let fake = FakeApi::default();
            let client = Client::new(fake.clone(), "default");
            let server = Server::new(
                Store::new("cluster.local").expect("store"),
                Settings::default(),
                Limits::default(),
            );
            assert!(!server.is_synced());
            let cfg = WatchConfig {
                cluster_domain: "cluster.local".into(),
                corefile_configmap: Some(("kube-system".into(), "coredns".into())),
                resolv_conf: "/etc/resolv.conf".into(),
                resolv_conf_upstreams: vec![],
                own: vec![],
            };
            let tasks = spawn(client, server.clone(), cfg);
            // Bounded: 5 s of 10 ms steps.
            let mut settled = false;
            for _ in 0..500 {
                let relisted = fake
                    .0
                    .lock()
                    .expect("lock")
                    .iter()
                    .filter(|r| {
                        r.starts_with("/api/v1/services?")
                            && !r.contains("watch=true")
                            && !r.contains("continue=")
                    })
                    .count()
                    >= 2;
                if relisted
                    && server.is_synced()
                    && server.read_store(|s| s.service_count()) == 1
                    && !server.settings().upstreams.is_empty()
                {
                    settled = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let requests = fake.0.lock().expect("lock").clone();
            for t in tasks {
                t.abort();
            }
            assert!(settled, "requests: {requests:#?}");
            assert_eq!(
                rcode(&server, "c.default.svc.cluster.local."),
                ResponseCode::NoError
            );
            // a: deleted by an event; b: gone from the list after the 410.
            assert_eq!(
                rcode(&server, "a.default.svc.cluster.local."),
                ResponseCode::NXDomain
            );
            assert_eq!(
                rcode(&server, "b.default.svc.cluster.local."),
                ResponseCode::NXDomain
            );
            assert_eq!(
                server.settings().upstreams,
                vec!["10.0.0.9:53".parse().expect("addr")]
            );
            assert!(
                requests.iter().any(|r| r
                    .starts_with("/api/v1/namespaces/kube-system/configmaps?")
                    && r.contains("fieldSelector=metadata.name%3Dcoredns")),
                "{requests:#?}"
            );
            assert!(
                requests
                    .iter()
                    .any(|r| r.contains("limit=250") && r.contains("continue=c1")),
                "{requests:#?}"
            );
        }
    }
}
