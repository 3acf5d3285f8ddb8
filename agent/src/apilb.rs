//! The node-local API load balancer: an HA API endpoint with no external load balancer
//! (kubeadm leaves one to the user, kubernetes/kubeadm#2059; k3s and rke2 agents run a
//! client-side balancer on 127.0.0.1:6444 for the same job).
//!
//! While `/etc/kubeboot/api-lb.json` ([`ApiLbConfig`]) exists, the agent listens on its
//! loopback address (never anywhere else) and forwards each TCP connection to one of the API
//! servers: the node's own one first when it has one and it is healthy, else the one the last
//! connection reached, else the next in the list ([`plan::connect_order`]); a server that
//! refuses the connection is passed over within the same accept. The balancer never
//! terminates TLS: clients verify the API server themselves, with kubeconfigs whose server is
//! `https://127.0.0.1:6444` and whose `tls-server-name` is `kubernetes`
//! (`pki::Kubeconfig::through_local_balancer`), a DNS SAN every kubeadm and kubeboot API
//! server certificate has, so no certificate needs the loopback address and a kubeadm-made
//! API server works behind it unchanged.
//!
//! Health: a check is a TLS connection verified against `caFile` for the name `kubernetes` and
//! a `GET /readyz` (anonymous requests may read it: the `system:public-info-viewer` binding);
//! 200 is healthy, and so are 401 and 403 (a server of this cluster, proven by its certificate,
//! whose anonymous access is turned off). Without the CA file a TCP connection counts. Every
//! server is checked every 10 s in the background, at once whenever a forwarded connection
//! could not reach a server (the usual first sign of one going away: its clients reconnect),
//! and every 2 s while a server fails checks but is not yet down; so an idle node costs a
//! few TLS handshakes a minute, and a server that dies is down within a second or two of its
//! clients noticing. A server that goes down has its connections cut, so its clients reconnect
//! to another at once instead of waiting for their own timeouts. Changes are logged once
//! (`api-lb: backend 10.0.0.1:6443 is down`), never per connection.
//!
//! The list of servers follows the cluster: every 10 s the `default/kubernetes` Endpoints
//! (the API servers' own addresses, kept by the API servers) are read through the balancer
//! with the kubelet's credentials: the `system:node` rules let a node `get` endpoints
//! (plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go, NodeRules, evaluated by the
//! Node authorizer for every resource it does not subdivide). [`plan::merge`] makes the new
//! list, which is written back to the file, so a restarted agent knows every API server even
//! when the one it first joined through is dead. The file is read again when it changes: its
//! directory is watched (inotify), so a node without a balancer does not wake for it.

pub mod config;
pub mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use components::names::{self, API_SERVER_TLS_NAME};
use k8s_openapi::api::core::v1::Endpoints;
use kube::api::Api;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, info, warn};

pub use config::{ApiLbConfig, ApiLbConfigError};
pub use plan::{Backend, Health};

use crate::host::fs::Fs;

/// Connections forwarded at once; more wait in the listen queue.
const MAX_CONNECTIONS: usize = 1024;
/// The largest configuration or CA file read.
const MAX_FILE: u64 = 1024 * 1024;
/// The health check's request: `Connection: close`, so the answer ends the exchange.
const READYZ_REQUEST: &[u8] =
    b"GET /readyz HTTP/1.1\r\nHost: kubernetes\r\nUser-Agent: kubeboot-api-lb\r\nAccept: */*\r\nConnection: close\r\n\r\n";

/// How often things happen; the defaults are the production values, tests shorten them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Between two health checks of a backend in the background (a failed connection brings
    /// one at once).
    pub health_period: Duration,
    /// Between two health checks while a backend fails them but is not down yet.
    pub recheck_period: Duration,
    /// The longest health check.
    pub check_timeout: Duration,
    /// The longest wait for a backend to accept a forwarded connection.
    pub connect_timeout: Duration,
    /// Between two reads of the `kubernetes` Endpoints.
    pub refresh_period: Duration,
    /// Between two looks at the configuration file when its directory cannot be watched.
    pub reload_period: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            health_period: Duration::from_secs(10),
            recheck_period: Duration::from_secs(2),
            check_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(3),
            refresh_period: Duration::from_secs(10),
            reload_period: Duration::from_secs(2),
        }
    }
}

/// What the agent's balancer task needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiLbSettings {
    /// `/etc/kubeboot/api-lb.json`: the balancer runs while it exists.
    pub config_file: PathBuf,
    /// The kubelet's kubeconfig (`/etc/kubernetes/kubelet.conf`), whose credentials read the
    /// Endpoints; None never learns servers beyond the file's.
    pub kubeconfig: Option<PathBuf>,
    /// How often things happen.
    pub timing: Timing,
}

impl ApiLbSettings {
    /// The node's balancer: its file from the layout, the kubelet's credentials.
    pub fn for_layout(layout: &components::Layout) -> Self {
        ApiLbSettings {
            config_file: layout.api_lb_config(),
            kubeconfig: Some(layout.kubeconfig(components::names::KUBELET_KUBECONFIG)),
            timing: Timing::default(),
        }
    }
}

/// The balancer's state, shared by its tasks.
struct State {
    backends: Vec<Backend>,
    /// The backend the last forwarded connection reached.
    sticky: Option<String>,
    /// How health checks connect: TLS verified against the CA, or None for plain TCP.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Per backend: a send, or dropping the sender, ends the connections forwarded to it.
    cuts: BTreeMap<String, watch::Sender<()>>,
    /// The last connection found no backend (said once until one answers again).
    failing: bool,
}

struct Shared {
    state: Mutex<State>,
    timing: Timing,
    local_ips: Vec<IpAddr>,
    /// Brings a round of health checks at once (a forwarded connection failed).
    recheck: Notify,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent at every unlock: a panic elsewhere does not spoil it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_servers(&self, servers: &[String]) {
        let mut s = self.state();
        s.backends = plan::rebuild(&s.backends, servers, &self.local_ips);
        // A removed backend's sender is dropped, which ends its connections.
        s.cuts.retain(|addr, _| servers.contains(addr));
        for addr in servers {
            s.cuts
                .entry(addr.clone())
                .or_insert_with(|| watch::channel(()).0);
        }
        if s.sticky.as_ref().is_some_and(|a| !servers.contains(a)) {
            s.sticky = None;
        }
        // A new backend is judged at once.
        if s.backends.iter().any(|b| b.health == Health::Unknown) {
            self.recheck.notify_one();
        }
    }

    /// Records a check's result, says a change of health, and cuts the connections of a
    /// backend that went down.
    fn record(&self, addr: &str, result: Result<(), String>) {
        let mut s = self.state();
        let Some(i) = s.backends.iter().position(|b| b.addr == addr) else {
            return;
        };
        let before = s.backends[i].health;
        let after = s.backends[i].checked(result.is_ok());
        let health = after.health;
        s.backends[i] = after;
        if health == before {
            return;
        }
        match (health, result) {
            (Health::Up, _) => info!("api-lb: backend {addr} is up"),
            (Health::Down, Err(why)) => {
                info!("api-lb: backend {addr} is down: {why}");
                if let Some(cut) = s.cuts.get(addr) {
                    cut.send_replace(());
                }
            }
            _ => {}
        }
    }
}

/// A running balancer: listening, forwarding, checking. Dropping it stops it and ends the
/// connections it forwards.
pub struct Balancer {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Balancer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Balancer {
    /// Checks `cfg`, reads its CA, listens on its loopback address and starts forwarding
    /// and checking. `local_ips` are the node's addresses (its own API server is preferred).
    ///
    /// # Errors
    /// A configuration [`ApiLbConfig::validate`] refuses (a non-loopback address among them),
    /// an unreadable CA file, an address that cannot be listened on.
    pub async fn start(
        cfg: &ApiLbConfig,
        timing: Timing,
        local_ips: Vec<IpAddr>,
    ) -> anyhow::Result<Balancer> {
        cfg.validate()?;
        let tls = health_tls(cfg.ca_file.as_deref())?;
        let listener = TcpListener::bind(cfg.listen).await.with_context(|| {
            format!(
                "could not listen on {} for the API load balancer (is another one running?)",
                cfg.listen
            )
        })?;
        let local_addr = listener
            .local_addr()
            .context("the API load balancer's listener has no address")?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                backends: Vec::new(),
                sticky: None,
                tls,
                cuts: BTreeMap::new(),
                failing: false,
            }),
            timing,
            local_ips,
            recheck: Notify::new(),
        });
        shared.set_servers(&cfg.servers);
        let tasks = vec![
            tokio::spawn(accept(listener, shared.clone())),
            tokio::spawn(health_loop(Arc::downgrade(&shared))),
        ];
        Ok(Balancer {
            shared,
            local_addr,
            tasks,
        })
    }

    /// Where it listens (the configured address, with the port the system chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Replaces the servers; those it knows keep their health.
    pub fn set_servers(&self, servers: &[String]) {
        self.shared.set_servers(servers);
    }

    /// Reads the CA the health checks verify with again (None or a missing file: TCP checks).
    ///
    /// # Errors
    /// An unreadable or empty CA file; the previous CA stays in use then.
    pub fn set_ca(&self, ca_file: Option<&Path>) -> anyhow::Result<()> {
        let tls = health_tls(ca_file)?;
        self.shared.state().tls = tls;
        Ok(())
    }

    /// The backends and what the checks know of them.
    pub fn backends(&self) -> Vec<Backend> {
        self.shared.state().backends.clone()
    }

    fn servers(&self) -> Vec<String> {
        self.backends().into_iter().map(|b| b.addr).collect()
    }

    fn answered(&self) -> BTreeSet<String> {
        self.backends()
            .into_iter()
            .filter(|b| b.answered)
            .map(|b| b.addr)
            .collect()
    }
}

/// The health checks' TLS settings: the CA of `ca_file` as the only root, HTTP/1.1. None
/// when there is no CA file (TCP checks).
fn health_tls(ca_file: Option<&Path>) -> anyhow::Result<Option<Arc<rustls::ClientConfig>>> {
    let Some(path) = ca_file else {
        return Ok(None);
    };
    let shown = path.display().to_string();
    let Some(pem) = Fs::real().read_regular_if_exists(path, MAX_FILE)? else {
        return Ok(None);
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.with_context(|| format!("the CA file {shown:?} is not PEM"))?;
        roots
            .add(cert)
            .with_context(|| format!("the CA file {shown:?} holds an unusable certificate"))?;
    }
    anyhow::ensure!(
        !roots.is_empty(),
        "the CA file {shown:?} holds no certificate; fix \"caFile\" in the API load balancer's configuration"
    );
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("no TLS protocol version")?
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(tls)))
}

/// Accepts connections until the task is aborted; each is forwarded by a task of its own.
async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((inbound, _)) => {
                // A weak reference: a stopped balancer's state goes, and with it the cut
                // senders, which ends the connections it forwarded.
                tokio::spawn(forward(inbound, Arc::downgrade(&shared), permit));
            }
            Err(e) => {
                debug!("api-lb: could not accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Forwards one connection to the first backend of [`plan::connect_order`] that accepts it.
async fn forward(
    mut inbound: TcpStream,
    shared: Weak<Shared>,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    let Some((order, connect_timeout)) = shared.upgrade().map(|sh| {
        let s = sh.state();
        let order: Vec<String> = plan::connect_order(&s.backends, s.sticky.as_deref())
            .into_iter()
            .map(str::to_string)
            .collect();
        (order, sh.timing.connect_timeout)
    }) else {
        return;
    };
    for addr in &order {
        let Ok(Ok(mut outbound)) =
            tokio::time::timeout(connect_timeout, TcpStream::connect(addr.as_str())).await
        else {
            // The first sign of a server going away: the checks judge it now.
            if let Some(sh) = shared.upgrade() {
                sh.recheck.notify_one();
            }
            continue;
        };
        let Some(mut cut) = shared.upgrade().and_then(|sh| {
            let mut s = sh.state();
            if s.failing {
                info!("api-lb: connections reach the API server {addr} again");
                s.failing = false;
            }
            s.sticky = Some(addr.clone());
            s.cuts.get(addr).map(watch::Sender::subscribe)
        }) else {
            return;
        };
        let _ = inbound.set_nodelay(true);
        let _ = outbound.set_nodelay(true);
        tokio::select! {
            r = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {
                if let Err(e) = r {
                    debug!("api-lb: a connection to {addr} ended: {e}");
                }
            }
            _ = cut.changed() => debug!("api-lb: cut a connection to {addr}"),
        }
        return;
    }
    if let Some(sh) = shared.upgrade() {
        let mut s = sh.state();
        if !s.failing {
            s.failing = true;
            warn!(
                "api-lb: no API server accepted a connection (tried {}); clients are refused until one does",
                if order.is_empty() {
                    "none".to_string()
                } else {
                    order.join(", ")
                }
            );
        }
    }
}

/// Checks every backend, all at once: every `health_period`, every `recheck_period` while one
/// fails checks but is not down yet, and at once when a connection failed; until the balancer
/// is gone.
async fn health_loop(shared: Weak<Shared>) {
    loop {
        let Some((addrs, tls, timing)) = shared.upgrade().map(|sh| {
            let s = sh.state();
            let addrs: Vec<String> = s.backends.iter().map(|b| b.addr.clone()).collect();
            (addrs, s.tls.clone(), sh.timing)
        }) else {
            return;
        };
        let mut checks = JoinSet::new();
        for addr in addrs {
            let tls = tls.clone();
            checks.spawn(async move {
                let result = check(&addr, tls, timing.check_timeout).await;
                (addr, result)
            });
        }
        while let Some(done) = checks.join_next().await {
            if let (Ok((addr, result)), Some(sh)) = (done, shared.upgrade()) {
                sh.record(&addr, result);
            }
        }
        let Some(sh) = shared.upgrade() else {
            return;
        };
        let period = if plan::needs_recheck(&sh.state().backends) {
            timing.recheck_period
        } else {
            timing.health_period
        };
        // Holds the state while it waits: the task is aborted with the balancer, and this
        // reference goes with it.
        let recheck = async move { sh.recheck.notified().await };
        tokio::select! {
            () = tokio::time::sleep(period) => {}
            () = recheck => {}
        }
    }
}

/// One health check: TLS for `kubernetes` and `GET /readyz` with `tls`, a TCP connection
/// without it.
async fn check(
    addr: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
) -> Result<(), String> {
    let attempt = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let Some(tls) = tls else {
            return Ok(());
        };
        let name = ServerName::try_from(API_SERVER_TLS_NAME)
            .expect("API_SERVER_TLS_NAME is a valid DNS name");
        let mut stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        stream
            .write_all(READYZ_REQUEST)
            .await
            .map_err(|e| e.to_string())?;
        let mut head = Vec::new();
        let mut buf = [0u8; 256];
        while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 1024 {
            let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        match plan::status_code(&head) {
            Some(code) if plan::readyz_healthy(code) => Ok(()),
            Some(code) => Err(format!("/readyz answered {code}")),
            None => Err("/readyz gave no HTTP answer".to_string()),
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

/// The node's own addresses, so that its own API server is preferred.
fn local_ips() -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    addrs
        .filter_map(|a| a.address)
        .filter_map(|a| {
            a.as_sockaddr_in()
                .map(|s| IpAddr::V4(s.ip()))
                .or_else(|| a.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())))
        })
        .collect()
}

/// A client with the credentials of `kubeconfig` that reaches the API through the balancer
/// at `listen`, verifying the server as `kubernetes`, whatever server the file names.
async fn client_through(kubeconfig: &Path, listen: SocketAddr) -> anyhow::Result<kube::Client> {
    let mut config = crate::node_network::config_from(kubeconfig).await?;
    config.cluster_url = format!("https://{listen}")
        .parse()
        .context("the balancer's address is not a URL")?;
    config.tls_server_name = Some(API_SERVER_TLS_NAME.to_string());
    kube::Client::try_from(config).with_context(|| {
        format!(
            "could not build a client from {:?}",
            kubeconfig.display().to_string()
        )
    })
}

/// The running balancer and the configuration it runs with.
struct Running {
    balancer: Balancer,
    config: ApiLbConfig,
    client: Option<kube::Client>,
    last_refresh: Option<Instant>,
}

/// The agent's balancer task: the configuration file, the balancer it asks for, and the
/// Endpoints that keep its list current.
struct Runner {
    settings: ApiLbSettings,
    running: Option<Running>,
    /// The files' stamps when last read.
    seen: Option<Stamp>,
    /// The last problem of reading the file, and of reading the Endpoints: each is said
    /// once, until it is solved.
    reload_said: Option<String>,
    refresh_said: Option<String>,
}

/// Modification time and length of the configuration file and of its CA file.
type Stamp = (Option<(SystemTime, u64)>, Option<(SystemTime, u64)>);

fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
}

/// Runs the balancer while its configuration file exists, until the task is dropped. Wakes
/// when the file's directory changes (inotify), to read the Endpoints while the balancer
/// runs, and every `reload_period` only while the directory cannot be watched (it does not
/// exist yet, or no inotify).
pub async fn run(settings: ApiLbSettings) {
    let timing = settings.timing;
    let dir = settings
        .config_file
        .parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
    let mut changes = crate::watch::DirWatch::new(&dir, "API load balancer's directory");
    let mut r = Runner {
        settings,
        running: None,
        seen: None,
        reload_said: None,
        refresh_said: None,
    };
    loop {
        changes.ensure();
        r.tick().await;
        let wait = match (&r.running, changes.watching()) {
            (_, false) => timing.reload_period,
            // The Endpoints are read, and the CA file looked at, this often.
            (Some(_), true) => timing.refresh_period,
            (None, true) => IDLE_RELOAD,
        };
        changes.changed_or_after(wait).await;
    }
}

/// How often the configuration file is looked at while it does not exist and its directory is
/// watched: only a safety net, for a change inotify did not report.
const IDLE_RELOAD: Duration = Duration::from_secs(300);

impl Runner {
    fn stamp(&self) -> Stamp {
        let ca = self
            .running
            .as_ref()
            .and_then(|r| r.config.ca_file.as_deref())
            .and_then(file_stamp);
        (file_stamp(&self.settings.config_file), ca)
    }

    async fn tick(&mut self) {
        let stamp = self.stamp();
        if self.seen.as_ref() != Some(&stamp) {
            let result = self.reload().await;
            // After a failure it is tried again next time: the port may be free by then.
            self.seen = result.is_ok().then(|| self.stamp());
            say_once(&mut self.reload_said, result);
        }
        if let Some(result) = self.refresh().await {
            say_once(&mut self.refresh_said, result);
        }
    }

    /// Reads the file again: starts, changes or stops the balancer.
    async fn reload(&mut self) -> anyhow::Result<()> {
        let file = &self.settings.config_file;
        let shown = file.display().to_string();
        let Some(bytes) = Fs::real().read_regular_if_exists(file, MAX_FILE)? else {
            if self.running.take().is_some() {
                info!("api-lb: {shown} is gone; the API load balancer stopped");
            }
            return Ok(());
        };
        let text = String::from_utf8(bytes).with_context(|| format!("{shown:?} is not UTF-8"))?;
        let cfg = ApiLbConfig::from_json(&text).with_context(|| {
            format!(
                "{shown:?}{}",
                if self.running.is_some() {
                    " changed but is refused; the balancer keeps its previous settings"
                } else {
                    " is refused; the API load balancer does not run"
                }
            )
        })?;
        if let Some(r) = self
            .running
            .as_mut()
            .filter(|r| r.config.listen == cfg.listen)
        {
            r.balancer.set_servers(&cfg.servers);
            r.balancer.set_ca(cfg.ca_file.as_deref())?;
            if r.config != cfg {
                info!(
                    "api-lb: {shown} changed; the API servers are {}",
                    cfg.servers.join(", ")
                );
            }
            r.config = cfg;
            return Ok(());
        }
        // Stopped first: the new one may want the same port.
        self.running = None;
        let balancer = Balancer::start(&cfg, self.settings.timing, local_ips()).await?;
        info!(
            "api-lb: listening on {} for the API servers {}",
            balancer.local_addr(),
            cfg.servers.join(", ")
        );
        self.running = Some(Running {
            balancer,
            config: cfg,
            client: None,
            last_refresh: None,
        });
        Ok(())
    }

    /// Reads the `kubernetes` Endpoints through the balancer when it is time (None when it
    /// is not), updates its servers ([`plan::merge`]) and writes them back to the file.
    async fn refresh(&mut self) -> Option<anyhow::Result<()>> {
        let period = self.settings.timing.refresh_period;
        let (Some(r), Some(kubeconfig)) = (self.running.as_mut(), &self.settings.kubeconfig) else {
            return None;
        };
        if r.last_refresh.is_some_and(|t| t.elapsed() < period) || !kubeconfig.exists() {
            return None;
        }
        r.last_refresh = Some(Instant::now());
        Some(self.refresh_now().await)
    }

    async fn refresh_now(&mut self) -> anyhow::Result<()> {
        let (Some(r), Some(kubeconfig)) = (self.running.as_mut(), &self.settings.kubeconfig) else {
            return Ok(());
        };
        if r.client.is_none() {
            r.client = Some(client_through(kubeconfig, r.balancer.local_addr()).await?);
        }
        let client = r.client.clone().expect("built above");
        let endpoints: Api<Endpoints> = Api::namespaced(client, names::DEFAULT_NAMESPACE);
        let ep = match endpoints.get_opt(names::KUBERNETES_SERVICE).await {
            Ok(ep) => ep,
            Err(e) => {
                // Built again next time: a renewed client certificate is read then.
                r.client = None;
                return Err(anyhow::Error::new(e).context(
                    "could not read the Endpoints default/kubernetes through the balancer; \
                     the API servers stay as they are",
                ));
            }
        };
        let learned = ep.map(|e| plan::endpoints_servers(&e)).unwrap_or_default();
        let current = r.balancer.servers();
        let next = plan::merge(&current, &r.balancer.answered(), &learned);
        if next != current {
            info!("api-lb: the API servers are now {}", next.join(", "));
            r.balancer.set_servers(&next);
        }
        if next != r.config.servers {
            let cfg = ApiLbConfig {
                servers: next,
                ..r.config.clone()
            };
            Fs::real()
                .write_public(&self.settings.config_file, cfg.to_json().as_bytes())
                .context("could not record the API servers")?;
            r.config = cfg;
            self.seen = Some(self.stamp());
        }
        Ok(())
    }
}

/// Says a failure once, until `result` is a success again.
fn say_once(said: &mut Option<String>, result: anyhow::Result<()>) {
    match result {
        Ok(()) => *said = None,
        Err(e) => {
            let msg = format!("{e:#}");
            if said.as_ref() != Some(&msg) {
                warn!("api-lb: {msg}");
                *said = Some(msg);
            }
        }
    }
}
