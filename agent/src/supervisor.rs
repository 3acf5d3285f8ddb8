//! The agent's main loop, level-triggered: desired pods (the manifest directory) against
//! observed pods (one executor task per container), and the networks of pods without
//! hostNetwork: set up before their containers start (once a CNI configuration exists), torn
//! down once the pod is gone (every network record whose pod is neither running nor desired).
//! Also serves the status socket (0600, to root and the agent's own user only), after taking
//! the node's agent lock ([`crate::instance`]), and rotates the agent's own log.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tracing::{Instrument, error, info, info_span, warn};

use crate::AgentConfig;
use crate::cni::conf::NetworkList;
use crate::host::fs::Fs;
use crate::instance::Instance;
use crate::pod::backoff::Backoff;
use crate::pod::executor::Executor;
use crate::pod::lifecycle::Event;
use crate::pod::network::{self, Networks, PodNet};
use crate::pod::spec::{ContainerSpec, DEFAULT_GRACE, RestartPolicy, StaticPod};
use crate::runtime::{Adopted, AnyRuntime, ProcessRuntime, Running};
use crate::state::StateDir;
use crate::status::{AgentStatus, ContainerStatus, ManifestErrorStatus, PodStatus};
use crate::watch::{DirWatch, ManifestWatcher};

/// What the tasks share.
pub(crate) struct Shared {
    pub(crate) cfg: AgentConfig,
    pub(crate) runtime: AnyRuntime,
    pub(crate) networks: Networks,
    pub(crate) board: Mutex<Board>,
    pub(crate) wake: Notify,
    /// The files each container uses, for restarts when they change ([`crate::reload`]).
    pub(crate) files: crate::reload::FileWatch,
    /// The certificate renewal loop's state, for the status ([`crate::cert_renewal`]).
    cert_renewal: Arc<Mutex<Option<crate::cert_renewal::CertRenewalStatus>>>,
    node_id: String,
}

/// The status board the executors write and the socket reads.
#[derive(Default)]
pub(crate) struct Board {
    pub(crate) pods: BTreeMap<String, BoardPod>,
    manifest_errors: Vec<ManifestErrorStatus>,
}

/// One pod on the board; its phase is computed when the status is taken.
pub(crate) struct BoardPod {
    pub(crate) status: PodStatus,
    policy: RestartPolicy,
    terminating: bool,
}

type ContainerTask = (mpsc::UnboundedSender<Event>, JoinHandle<()>);

struct PodHandle {
    pod: Arc<StaticPod>,
    /// Empty until the pod's network is ready.
    containers: Vec<ContainerTask>,
    terminating: bool,
    /// Stopping because a pod of the same name replaces it ([`Event::Replace`]): its
    /// successor may start as soon as it stops listening ([`hand_over`]).
    replaced: bool,
    network: Sandbox,
}

/// A pod's own network as the loop drives it (pods without hostNetwork).
enum Sandbox {
    /// A hostNetwork pod, or its network is set up: the containers have their executors.
    Ready,
    /// Waiting for a CNI configuration, or for `retry_at` after a failed setup.
    Waiting {
        retry_at: Option<Instant>,
        backoff: Backoff,
    },
    /// The setup (namespace, CNI ADD) is under way.
    SettingUp {
        task: JoinHandle<anyhow::Result<PodNet>>,
        backoff: Backoff,
    },
}

/// Teardowns of the networks of pods that are gone: those under way, and when to retry the
/// ones that failed.
#[derive(Default)]
struct Teardowns {
    running: BTreeMap<String, JoinHandle<anyhow::Result<()>>>,
    retry_at: BTreeMap<String, Instant>,
}

/// Wakes the loop when dropped: a network task that ends, or is aborted, brings the next
/// pass at once.
struct WakeOnDrop(Arc<Shared>);

impl Drop for WakeOnDrop {
    fn drop(&mut self) {
        self.0.wake.notify_one();
    }
}

/// Runs the agent until `shutdown` resolves. Pods keep running after it returns.
pub(crate) async fn run(
    cfg: AgentConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let fs = Fs::real();
    let state = StateDir::new(&cfg.state_dir);
    state.ensure()?;
    fs.ensure_dir(&cfg.run_dir, 0o755)?;
    // Held until this function returns: no second agent runs on this node meanwhile.
    let instance = Instance::acquire(&cfg.state_dir, &cfg.pid_file())?;
    fs.ensure_dir(&cfg.pod_log_dir, 0o755)?;
    let node_id = state.node_id()?;
    let socket = cfg.socket();
    let listener = bind_socket(&cfg.run_dir, &socket)?;
    let networks = Networks::new(&cfg, state.clone(), node_id.clone());
    let runtime = AnyRuntime::Process(ProcessRuntime::new(&cfg, state, node_id.clone()));
    info!(node_id = %node_id, pid = instance.process().pid, manifests = %cfg.manifest_dir.display(), socket = %socket.display(), runtime = runtime.name(), "agent starting");
    let files =
        crate::reload::FileWatch::new(cfg.credentials_dirs.clone(), cfg.manifest_dir.clone());
    let shared = Arc::new(Shared {
        cfg,
        runtime,
        networks,
        board: Mutex::new(Board::default()),
        wake: Notify::new(),
        files,
        cert_renewal: Arc::new(Mutex::new(None)),
        node_id,
    });

    let server = tokio::spawn(serve(listener, shared.clone()));
    let own_log = shared
        .cfg
        .agent_log_file
        .clone()
        .map(|log| tokio::spawn(rotate_own_log(log, shared.cfg.log_rotation)));
    // What start-up touched leaves the resident set once the node settled.
    let pages = tokio::spawn(crate::host::process::release_own_file_pages_every(
        RELEASE_PAGES_FIRST,
        RELEASE_PAGES_PERIOD,
    ));
    // One API client for both tasks (crate::mirror::AgentClient).
    let api_client = match (&shared.cfg.kubeconfig, &shared.cfg.node_name) {
        (Some(kubeconfig), Some(node)) => Some((
            crate::mirror::AgentClient::new(kubeconfig.clone()),
            node.clone(),
        )),
        _ => None,
    };
    let mirror = api_client.as_ref().map(|(client, node)| {
        tokio::spawn(
            crate::mirror::run(shared.clone(), client.share(), node.clone())
                .instrument(info_span!("mirror")),
        )
    });
    // Where the agent's kubeconfig exists (control-plane nodes), joining nodes get their
    // kube-proxy credential approved (crate::csr_approval).
    // There too, Nodes get their podCIDRs where the controller-manager leaves them to the
    // agents (crate::node_ipam).
    let node_ipam = api_client.as_ref().map(|(client, node)| {
        let manifest = shared.cfg.controller_manager_manifest.clone();
        tokio::spawn(
            crate::node_ipam::run(client.share(), node.clone(), manifest)
                .instrument(info_span!("node-ipam")),
        )
    });
    let csr_approver = api_client.map(|(client, node)| {
        tokio::spawn(crate::csr_approver::run(client, node).instrument(info_span!("csr-approver")))
    });
    let _webhook = shared
        .cfg
        .webhook
        .clone()
        .map(|w| tokio::spawn(crate::webhook::run(w).instrument(info_span!("webhook"))));
    let network =
        shared.cfg.pod_network.clone().map(|n| {
            tokio::spawn(crate::node_network::run(n).instrument(info_span!("pod-network")))
        });
    let api_lb = shared
        .cfg
        .api_lb
        .clone()
        .map(|l| tokio::spawn(crate::apilb::run(l).instrument(info_span!("api-lb"))));
    let cert_renewal = shared.cfg.cert_renewer.clone().map(|r| {
        tokio::spawn(
            crate::cert_renewal::run(r, shared.cfg.node_name.clone(), shared.cert_renewal.clone())
                .instrument(info_span!("cert-renewal")),
        )
    });
    let mut watcher = ManifestWatcher::new(&shared.cfg.manifest_dir, shared.cfg.node_name.clone());
    let mut cni_watch = DirWatch::new(&shared.cfg.cni_conf_dir, "CNI configuration directory");
    // The directories of the files the containers use: a renewed certificate wakes the
    // restart check (crate::reload) at once.
    let mut files_watch = DirWatch::new_many(&[], "containers' credential directories");
    let mut observed: BTreeMap<String, PodHandle> = BTreeMap::new();
    let mut teardowns = Teardowns::default();

    let desired = watcher.scan();
    let adopted = shared.runtime.adopt(DEFAULT_GRACE);
    let mut by_pod: BTreeMap<String, Vec<Adopted>> = BTreeMap::new();
    for a in adopted {
        by_pod.entry(a.record.pod_uid.clone()).or_default().push(a);
    }
    let recorded = shared.networks.recorded();
    for (uid, list) in by_pod {
        let pod = match desired.pods.get(&uid) {
            Some(p) => p.clone(),
            None => pod_from_records(&list, !recorded.contains(&uid)),
        };
        let adopted = list
            .into_iter()
            .map(|a| {
                (
                    a.record.container.clone(),
                    (a.running, a.record.restart_count),
                )
            })
            .collect();
        observed.insert(uid, start_pod(&shared, Arc::new(pod), adopted));
    }

    tokio::pin!(shutdown);
    let mut desired = Some(desired);
    let mut timer = crate::host::timer::for_loop("supervisor");
    loop {
        let d = desired.take().unwrap_or_else(|| watcher.scan());
        cni_watch.ensure();
        let next = reconcile(&shared, &mut observed, &mut teardowns, d).await;
        // Events up to now are read (what they were about is stat-ed next) and the watches
        // they ended are armed again, before the check: a change after this wakes the loop.
        files_watch.set_paths(&shared.files.watched_dirs());
        let _ = files_watch.take_changes();
        files_watch.ensure();
        let next = earliest(next, restart_changed(&shared, &observed));
        // The CNI configuration directory matters only while a pod waits for it (it often
        // does not exist on a node without a pod network).
        let cni_needed = observed
            .values()
            .any(|h| matches!(h.network, Sandbox::Waiting { .. }));
        let watched =
            watcher.watching() && (cni_watch.watching() || !cni_needed) && files_watch.watching();
        let resync = if watched {
            shared.cfg.watched_resync
        } else {
            shared.cfg.resync
        };
        let wait = next.map_or(resync, |t| {
            t.saturating_duration_since(Instant::now()).min(resync)
        });
        tokio::select! {
            () = &mut shutdown => break,
            () = watcher.changed() => {}
            () = cni_watch.changed() => {}
            () = files_watch.changed() => {}
            () = shared.wake.notified() => {}
            () = crate::host::timer::sleep_until_on(&mut timer, Instant::now() + wait, "supervisor") => {}
        }
    }
    info!("agent stopping; pods keep running and will be adopted by the next agent");
    server.abort();
    if let Some(l) = own_log {
        l.abort();
    }
    pages.abort();
    if let Some(m) = mirror {
        m.abort();
    }
    if let Some(a) = csr_approver {
        a.abort();
    }
    if let Some(a) = node_ipam {
        a.abort();
    }
    if let Some(n) = network {
        n.abort();
    }
    if let Some(l) = api_lb {
        l.abort();
    }
    if let Some(c) = cert_renewal {
        c.abort();
    }
    for h in observed.values() {
        for (_, task) in &h.containers {
            task.abort();
        }
        // A setup cut short is torn down by the next agent, from its record.
        if let Sandbox::SettingUp { task, .. } = &h.network {
            task.abort();
        }
    }
    for task in teardowns.running.values() {
        task.abort();
    }
    let _ = std::fs::remove_file(&socket);
    drop(instance);
    Ok(())
}

/// When the agent first gives back the pages of its executable it does not run any more
/// (start-up, adoption: [`crate::host::process::release_own_file_pages`]), and how often
/// after that.
const RELEASE_PAGES_FIRST: Duration = Duration::from_secs(60);
const RELEASE_PAGES_PERIOD: Duration = Duration::from_secs(600);

/// The shortest time between two looks at the size of the agent's own log.
const OWN_LOG_CHECK: Duration = Duration::from_secs(1);
/// How often it is looked at when no write can be seen (no inotify, the file gone).
const OWN_LOG_FALLBACK: Duration = Duration::from_secs(60);

/// Rotates the agent's own log ([`crate::logs::rotate_own_output`]) whenever it outgrows
/// the limit: looked at after writes to it (inotify), at most once a second, so an idle
/// agent does not wake for it.
async fn rotate_own_log(log: std::path::PathBuf, rotation: crate::logs::LogRotation) {
    let mut writes = crate::watch::DirWatch::new(&log, "agent's log");
    let mut failed = false;
    loop {
        writes.ensure();
        match crate::logs::rotate_own_output(&log, rotation) {
            Ok(true) => info!(log = %log.display(), "rotated the agent's log"),
            Ok(false) => {}
            // Said once: the same failure every second would fill the log it is about.
            Err(e) if !failed => {
                failed = true;
                warn!(log = %log.display(), "could not rotate the agent's log: {e}");
            }
            Err(_) => {}
        }
        tokio::time::sleep(OWN_LOG_CHECK).await;
        writes.changed_or_after(OWN_LOG_FALLBACK).await;
    }
}

/// Listens on the status socket, 0600 from its first moment whatever the umask: it is bound
/// in a fresh 0700 directory, chmod-ed there, and renamed into place. The caller holds the
/// node's agent lock, so a socket already there is a dead agent's and is replaced.
fn bind_socket(
    run_dir: &std::path::Path,
    socket: &std::path::Path,
) -> anyhow::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let shown = socket.display().to_string();
    let private = run_dir.join(format!(".sock-{:016x}", rand::random::<u64>()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .with_context(|| format!("could not create {}", private.display()))?;
    let bound = (|| {
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700))?;
        let tmp = private.join("s");
        let listener = std::os::unix::net::UnixListener::bind(&tmp)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&tmp, socket)?;
        listener.set_nonblocking(true)?;
        tokio::net::UnixListener::from_std(listener)
    })();
    let _ = std::fs::remove_dir(&private);
    bound.with_context(|| format!("could not listen on the status socket {shown:?}"))
}

/// Who may read the status: root and the agent's own user (the status names every
/// process, binary and error of the node's control plane).
fn peer_allowed(peer_uid: u32, own_uid: u32) -> bool {
    peer_uid == 0 || peer_uid == own_uid
}

/// A pod known only from records (its manifest is gone): enough to stop it.
fn pod_from_records(list: &[Adopted], host_network: bool) -> StaticPod {
    let first = &list[0].record;
    StaticPod {
        uid: first.pod_uid.clone(),
        namespace: first.namespace.clone(),
        name: first.pod_name.clone(),
        manifest: first.manifest.clone(),
        host_network,
        restart_policy: RestartPolicy::Never,
        grace: Duration::from_secs(first.grace_seconds),
        containers: list
            .iter()
            .map(|a| ContainerSpec {
                name: a.record.container.clone(),
                image: String::new(),
                command: Vec::new(),
                args: Vec::new(),
                env: Vec::new(),
                working_dir: None,
                startup: None,
                liveness: None,
                readiness: None,
                config_error: Some("the manifest was removed".into()),
                hash: a.record.container_hash.clone(),
            })
            .collect(),
        warnings: Vec::new(),
    }
}

/// Puts a pod on the board and starts its containers, or, for a pod without hostNetwork,
/// adopts its network from before an agent restart or leaves it waiting for one.
fn start_pod(
    shared: &Arc<Shared>,
    pod: Arc<StaticPod>,
    adopted: HashMap<String, (Running, u32)>,
) -> PodHandle {
    for w in &pod.warnings {
        warn!(pod = %pod.full_name(), "{w}");
    }
    if let Ok(mut board) = shared.board.lock() {
        let status = PodStatus {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            uid: pod.uid.clone(),
            manifest: pod.manifest.display().to_string(),
            phase: "Pending".into(),
            reason: None,
            host_network: pod.host_network,
            pod_ips: Vec::new(),
            netns: None,
            warnings: pod.warnings.clone(),
            containers: pod
                .containers
                .iter()
                .map(|c| ContainerStatus {
                    name: c.name.clone(),
                    image: c.image.clone(),
                    state: "waiting".into(),
                    ..Default::default()
                })
                .collect(),
        };
        board.pods.insert(
            pod.uid.clone(),
            BoardPod {
                status,
                policy: pod.restart_policy,
                terminating: false,
            },
        );
    }
    info!(pod = %pod.full_name(), uid = %pod.uid, manifest = %pod.manifest.display(), "pod added");
    let mut h = PodHandle {
        pod,
        containers: Vec::new(),
        terminating: false,
        replaced: false,
        network: Sandbox::Ready,
    };
    if h.pod.host_network {
        start_containers(shared, &mut h, adopted, None);
    } else if let Some(net) = shared.networks.adopt(&h.pod.uid) {
        info!(pod = %h.pod.full_name(), netns = %net.netns.display(), "adopted the pod's network");
        start_containers(shared, &mut h, adopted, Some(net));
    } else if !adopted.is_empty() {
        warn!(pod = %h.pod.full_name(), "the pod's containers run, but its network record is missing or its namespace is gone: they keep running, and restarts fail until the pod is replaced");
        let net = PodNet {
            netns: shared.networks.netns_path(&h.pod.uid),
            ips: Vec::new(),
        };
        start_containers(shared, &mut h, adopted, Some(net));
    } else {
        h.network = Sandbox::Waiting {
            retry_at: None,
            backoff: Backoff::default(),
        };
    }
    h
}

/// Starts the executors of a pod's containers, in its own network `net` unless it is a
/// hostNetwork pod.
fn start_containers(
    shared: &Arc<Shared>,
    h: &mut PodHandle,
    mut adopted: HashMap<String, (Running, u32)>,
    net: Option<PodNet>,
) {
    let net = net.map(Arc::new);
    if let Some(n) = &net
        && let Ok(mut board) = shared.board.lock()
        && let Some(p) = board.pods.get_mut(&h.pod.uid)
    {
        p.status.pod_ips = n.ips.iter().map(ToString::to_string).collect();
        p.status.netns = Some(n.netns.display().to_string());
    }
    let pod = &h.pod;
    h.containers = (0..pod.containers.len())
        .map(|i| {
            let name = pod.containers[i].name.clone();
            let (ex, tx) = Executor::new(
                shared.clone(),
                pod.clone(),
                i,
                adopted.remove(&name),
                net.clone(),
            );
            let span = info_span!("pod", pod = %pod.full_name(), container = %name);
            (tx, tokio::spawn(ex.run().instrument(span)))
        })
        .collect();
    h.network = Sandbox::Ready;
}

/// Shows every container of a pod as waiting for `reason`; true when that is news.
fn set_waiting(shared: &Shared, uid: &str, reason: &str, message: &str) -> bool {
    let Ok(mut board) = shared.board.lock() else {
        return false;
    };
    let Some(p) = board.pods.get_mut(uid) else {
        return false;
    };
    let mut changed = false;
    for c in &mut p.status.containers {
        changed |= c.reason.as_deref() != Some(reason);
        c.state = "waiting".into();
        c.reason = Some(reason.to_string());
        c.message = Some(message.to_string()).filter(|m| !m.is_empty());
    }
    changed
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// One pass; returns when the next one is due at the latest (a retry), if ever.
async fn reconcile(
    shared: &Arc<Shared>,
    observed: &mut BTreeMap<String, PodHandle>,
    teardowns: &mut Teardowns,
    desired: crate::watch::Desired,
) -> Option<Instant> {
    let now = Instant::now();
    // Removed or replaced pods: stop them.
    for (uid, h) in observed.iter_mut() {
        if !h.terminating && !desired.pods.contains_key(uid) {
            info!(pod = %h.pod.full_name(), uid = %uid, "pod removed; stopping it");
            h.terminating = true;
            if let Ok(mut board) = shared.board.lock()
                && let Some(p) = board.pods.get_mut(uid)
            {
                p.terminating = true;
            }
            h.replaced = replaced_quickly(&h.pod, &desired);
            let event = if h.replaced {
                Event::Replace
            } else {
                Event::Stop
            };
            for (tx, _) in &h.containers {
                let _ = tx.send(event.clone());
            }
            if let Sandbox::SettingUp { task, .. } = &h.network {
                task.abort();
            }
        }
    }
    // Stopped pods: forget them (their network goes with the sweep below).
    observed.retain(|uid, h| {
        let setting_up =
            matches!(&h.network, Sandbox::SettingUp { task, .. } if !task.is_finished());
        let done =
            h.terminating && !setting_up && h.containers.iter().all(|(_, t)| t.is_finished());
        if done {
            info!(pod = %h.pod.full_name(), "pod stopped");
            shared.runtime.forget_pod(uid);
            if let Ok(mut board) = shared.board.lock() {
                board.pods.remove(uid);
            }
        }
        !done
    });
    // New pods: start them once an old pod of the same name (or, for a replaced one, its
    // listening sockets) and their own network's teardown from before are gone.
    let mut next = None;
    let desired_uids: BTreeSet<String> = desired.pods.keys().cloned().collect();
    for (uid, pod) in desired.pods {
        if observed.contains_key(&uid) || teardowns.running.contains_key(&uid) {
            continue;
        }
        let mut waiting = false;
        for old in observed
            .values()
            .filter(|h| h.pod.full_name() == pod.full_name())
        {
            if !(old.replaced && hand_over(&old.pod).await) {
                waiting = true;
                if old.replaced {
                    next = earliest(next, Some(now + HAND_OVER_POLL));
                }
            }
        }
        if waiting {
            continue;
        }
        let h = start_pod(shared, Arc::new(pod), HashMap::new());
        observed.insert(uid, h);
    }
    // The networks pods wait for.
    for h in observed.values_mut().filter(|h| !h.terminating) {
        next = earliest(next, drive_network(shared, h, now).await);
    }
    next = earliest(
        next,
        sweep(shared, observed, &desired_uids, teardowns, now).await,
    );
    if let Ok(mut board) = shared.board.lock() {
        board.manifest_errors = desired.errors;
    }
    next
}

/// Whether `old`, gone from the desired pods, is replaced by a pod of the same name whose
/// containers all run stateless node components ([`Event::Replace`]): etcd, containerd and
/// any other pod get their full grace period, as from the kubelet.
fn replaced_quickly(old: &StaticPod, desired: &crate::watch::Desired) -> bool {
    const STATELESS: [&str; 5] = [
        components::names::KUBE_APISERVER,
        components::names::KUBE_CONTROLLER_MANAGER,
        components::names::KUBE_SCHEDULER,
        components::names::KUBE_PROXY,
        components::names::KUBELET,
    ];
    desired
        .pods
        .values()
        .any(|p| p.full_name() == old.full_name())
        && !old.containers.is_empty()
        && old.containers.iter().all(|c| {
            matches!(components::image::binary_for_image(&c.image), Ok(Some(b)) if STATELESS.contains(&b.binary))
        })
}

/// How often a replacement checks whether the pod it replaces still listens.
const HAND_OVER_POLL: Duration = Duration::from_millis(100);

/// Whether a replaced hostNetwork pod has stopped listening on every port its httpGet and
/// tcpSocket probes check (connections refused), so its successor can bind them while the old
/// processes finish: kube-apiserver closes its listener at SIGTERM but lives on until its
/// watch connections end or the grace period runs out, and the new one needs seconds before
/// it binds. Overlapping the two shortens the API's gap during an upgrade by that grace.
/// A pod without such probes, or with its own network, waits until it is gone.
async fn hand_over(old: &StaticPod) -> bool {
    use crate::pod::spec::{ProbeHandler, ProbeKind};
    if !old.host_network {
        return false;
    }
    let mut ports = BTreeSet::new();
    for c in &old.containers {
        for kind in ProbeKind::ALL {
            if let Some(ProbeHandler::Http { host, port, .. } | ProbeHandler::Tcp { host, port }) =
                c.probe(kind).map(|p| &p.handler)
            {
                ports.insert((host.clone().unwrap_or_else(|| "127.0.0.1".into()), *port));
            }
        }
    }
    if ports.is_empty() {
        return false;
    }
    for (host, port) in ports {
        let connect = tokio::net::TcpStream::connect((host.as_str(), port));
        match tokio::time::timeout(Duration::from_millis(200), connect).await {
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
            _ => return false,
        }
    }
    true
}

/// Moves a pod's network on: looks for a CNI configuration and starts the setup, or takes
/// the setup's result (starting the containers, or scheduling a retry with backoff).
async fn drive_network(shared: &Arc<Shared>, h: &mut PodHandle, now: Instant) -> Option<Instant> {
    match &mut h.network {
        Sandbox::Ready => None,
        Sandbox::SettingUp { task, backoff } => {
            if !task.is_finished() {
                return None;
            }
            let backoff = *backoff;
            let result = task
                .await
                .unwrap_or_else(|e| Err(anyhow::anyhow!("the setup task ended: {e}")));
            match result {
                Ok(net) => {
                    start_containers(shared, h, HashMap::new(), Some(net));
                    None
                }
                Err(e) => {
                    let (delay, backoff) = backoff.next_delay(&shared.cfg.backoff, now);
                    warn!(pod = %h.pod.full_name(), "could not set up the pod network (next try in {delay:?}): {e:#}");
                    set_waiting(shared, &h.pod.uid, network::SETUP_FAILED, &format!("{e:#}"));
                    h.network = Sandbox::Waiting {
                        retry_at: Some(now + delay),
                        backoff,
                    };
                    Some(now + delay)
                }
            }
        }
        Sandbox::Waiting { retry_at, backoff } => {
            if let Some(at) = *retry_at
                && at > now
            {
                return Some(at);
            }
            let backoff = *backoff;
            match shared.networks.config() {
                Err(why) => {
                    *retry_at = None;
                    let message = network::not_ready_message(&why);
                    if set_waiting(shared, &h.pod.uid, network::NETWORK_NOT_READY, &message) {
                        info!(pod = %h.pod.full_name(), "waiting for the pod network: {why}");
                    }
                    None
                }
                Ok(list) => {
                    let message = format!(
                        "setting up the pod network {:?} ({})",
                        list.name,
                        list.file.display()
                    );
                    set_waiting(shared, &h.pod.uid, "ContainerCreating", &message);
                    let span = info_span!("pod", pod = %h.pod.full_name());
                    let task = tokio::spawn(
                        setup_network(shared.clone(), h.pod.clone(), list).instrument(span),
                    );
                    h.network = Sandbox::SettingUp { task, backoff };
                    None
                }
            }
        }
    }
}

async fn setup_network(
    shared: Arc<Shared>,
    pod: Arc<StaticPod>,
    list: NetworkList,
) -> anyhow::Result<PodNet> {
    let _wake = WakeOnDrop(shared.clone());
    shared.networks.setup(&pod, list).await
}

/// Tears down the network of every pod that has a record but is neither observed nor
/// desired (removed or replaced, its containers stopped; or left by an earlier agent). A
/// failed teardown is logged and retried after the resync period.
async fn sweep(
    shared: &Arc<Shared>,
    observed: &BTreeMap<String, PodHandle>,
    desired: &BTreeSet<String>,
    t: &mut Teardowns,
    now: Instant,
) -> Option<Instant> {
    let finished: Vec<String> = t
        .running
        .iter()
        .filter(|(_, task)| task.is_finished())
        .map(|(uid, _)| uid.clone())
        .collect();
    for uid in finished {
        let task = t.running.remove(&uid).expect("listed above");
        let result = task
            .await
            .unwrap_or_else(|e| Err(anyhow::anyhow!("the teardown task ended: {e}")));
        if let Err(e) = result {
            let resync = shared.cfg.resync;
            warn!(uid = %uid, "could not remove the network of a pod that is gone (next try in {resync:?}): {e:#}");
            t.retry_at.insert(uid, now + resync);
        }
    }
    let recorded = shared.networks.recorded();
    t.retry_at.retain(|uid, _| recorded.contains(uid));
    for uid in recorded {
        let busy = observed.contains_key(&uid)
            || desired.contains(&uid)
            || t.running.contains_key(&uid)
            || t.retry_at.get(&uid).is_some_and(|at| *at > now);
        if busy {
            continue;
        }
        t.retry_at.remove(&uid);
        let s = shared.clone();
        let id = uid.clone();
        let task = tokio::spawn(
            async move {
                let _wake = WakeOnDrop(s.clone());
                s.networks.teardown(&id).await
            }
            .instrument(info_span!("pod-network", uid = %uid)),
        );
        t.running.insert(uid, task);
    }
    t.retry_at.values().min().copied()
}

/// Restarts the containers whose files changed ([`crate::reload`]); returns when to check
/// again while a change settles.
fn restart_changed(shared: &Shared, observed: &BTreeMap<String, PodHandle>) -> Option<Instant> {
    let (due, again) = shared.files.check(Instant::now());
    for d in due {
        let Some(h) = observed.get(&d.uid).filter(|h| !h.terminating) else {
            continue;
        };
        let index = h.pod.containers.iter().position(|c| c.name == d.container);
        if let Some((tx, _)) = index.and_then(|i| h.containers.get(i)) {
            info!(pod = %d.pod, container = %d.container, "restarting the container: {}", d.reason());
            let _ = tx.send(Event::Restart { reason: d.reason() });
        }
    }
    again
}

/// The pod phase (kubelet: kubelet_pods.go getPhase).
fn phase(policy: RestartPolicy, containers: &[ContainerStatus]) -> String {
    let (mut waiting, mut running, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for c in containers {
        match c.state.as_str() {
            "running" => running += 1,
            "terminated" => {
                stopped += 1;
                if c.last_exit_code == Some(0) {
                    succeeded += 1;
                }
            }
            _ if c.last_exit_reason.is_some() => stopped += 1,
            _ => waiting += 1,
        }
    }
    let p = if waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped > 0 {
        match policy {
            RestartPolicy::Always => "Running",
            _ if stopped == succeeded => "Succeeded",
            RestartPolicy::Never => "Failed",
            RestartPolicy::OnFailure => "Running",
        }
    } else {
        "Pending"
    };
    p.to_string()
}

pub(crate) fn snapshot(shared: &Shared) -> AgentStatus {
    let now = SystemTime::now();
    let board = shared.board.lock();
    let (mut pods, errors) = match &board {
        Ok(b) => (
            b.pods
                .values()
                .map(|p| {
                    let mut s = p.status.clone();
                    s.phase = if p.terminating {
                        "Terminating".into()
                    } else {
                        phase(p.policy, &s.containers)
                    };
                    s
                })
                .collect::<Vec<_>>(),
            b.manifest_errors.clone(),
        ),
        Err(_) => (Vec::new(), Vec::new()),
    };
    pods.sort_by(|a, b| (&a.namespace, &a.name, &a.uid).cmp(&(&b.namespace, &b.name, &b.uid)));
    AgentStatus {
        node_id: shared.node_id.clone(),
        node_name: shared.cfg.node_name.clone(),
        agent_pid: std::process::id(),
        runtime: shared.runtime.name().into(),
        time: crate::logs::rfc3339(now),
        time_unix: now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs(),
        manifest_dir: shared.cfg.manifest_dir.display().to_string(),
        pods,
        manifest_errors: errors,
        certificates: shared
            .cert_renewal
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default(),
    }
}

async fn serve(listener: tokio::net::UnixListener, shared: Arc<Shared>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                error!("status socket: accept failed: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let own = nix::unistd::geteuid().as_raw();
        match stream.peer_cred() {
            Ok(c) if peer_allowed(c.uid(), own) => {}
            refused => {
                let who = refused.map_or_else(
                    |e| format!("a peer whose credentials are unknown ({e})"),
                    |c| format!("uid {}", c.uid()),
                );
                warn!("status socket: refused {who}");
                let reply = crate::status::refusal(&who);
                // The request is read (bounded) and answered with the refusal, so the
                // client sees why rather than a broken pipe.
                tokio::spawn(async move {
                    let (r, mut w) = stream.into_split();
                    let mut lines =
                        tokio::io::BufReader::new(tokio::io::AsyncReadExt::take(r, 64 * 1024))
                            .lines();
                    let _ = tokio::time::timeout(Duration::from_secs(5), async {
                        let _ = lines.next_line().await;
                        w.write_all(&reply).await
                    })
                    .await;
                });
                continue;
            }
        }
        let shared = shared.clone();
        tokio::spawn(async move {
            let (r, mut w) = stream.into_split();
            let mut lines =
                tokio::io::BufReader::new(tokio::io::AsyncReadExt::take(r, 64 * 1024)).lines();
            while let Ok(Ok(Some(line))) =
                tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await
            {
                let reply = crate::status::answer(&line, || snapshot(&shared));
                if w.write_all(&reply).await.is_err() {
                    break;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(state: &str, last_exit: Option<(i32, &str)>) -> ContainerStatus {
        ContainerStatus {
            state: state.into(),
            last_exit_code: last_exit.map(|e| e.0),
            last_exit_reason: last_exit.map(|e| e.1.to_string()),
            ..Default::default()
        }
    }

    #[test]
    fn only_root_and_the_agents_user_may_ask() {
        assert!(peer_allowed(0, 1000));
        assert!(peer_allowed(1000, 1000));
        assert!(!peer_allowed(65534, 0));
        assert!(!peer_allowed(65534, 1000));
    }

    #[test]
    fn phase_follows_the_kubelet() {
        use RestartPolicy::*;
        assert_eq!(phase(Always, &[c("waiting", None)]), "Pending");
        assert_eq!(
            phase(Always, &[c("running", None), c("waiting", None)]),
            "Pending"
        );
        assert_eq!(phase(Always, &[c("running", None)]), "Running");
        // CrashLoopBackOff: waiting after a run counts as stopped.
        assert_eq!(
            phase(Always, &[c("waiting", Some((1, "Error")))]),
            "Running"
        );
        assert_eq!(
            phase(Never, &[c("terminated", Some((0, "Completed")))]),
            "Succeeded"
        );
        assert_eq!(
            phase(Never, &[c("terminated", Some((2, "Error")))]),
            "Failed"
        );
        assert_eq!(
            phase(OnFailure, &[c("terminated", Some((0, "Completed")))]),
            "Succeeded"
        );
    }

    fn pod(host_network: bool, probe: &str) -> StaticPod {
        let yaml = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: kube-apiserver, namespace: kube-system}}\nspec:\n  hostNetwork: {host_network}\n  containers:\n  - name: kube-apiserver\n    image: k8s.gcr.io/kube-apiserver:v1.20.2\n{probe}"
        );
        crate::pod::spec::parse_manifest(std::path::Path::new("/m/a.yaml"), yaml.as_bytes(), None)
            .expect("a valid manifest")
    }

    #[tokio::test]
    async fn a_successor_starts_once_the_replaced_pod_stops_listening() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().expect("bound").port();
        let http = format!(
            "    readinessProbe: {{httpGet: {{host: 127.0.0.1, port: {port}, path: /readyz, scheme: HTTPS}}}}\n"
        );
        let tcp = format!("    livenessProbe: {{tcpSocket: {{port: {port}}}}}\n");
        // Still listening: the successor waits.
        assert!(!hand_over(&pod(true, &http)).await);
        assert!(!hand_over(&pod(true, &tcp)).await);
        drop(listener);
        // Its port refuses connections: the successor may bind it.
        assert!(hand_over(&pod(true, &http)).await);
        assert!(hand_over(&pod(true, &tcp)).await);
        // Nothing to tell from (no probe port), or the pod's own network: wait until it is gone.
        assert!(!hand_over(&pod(true, "")).await);
        assert!(!hand_over(&pod(false, &tcp)).await);
    }
}
