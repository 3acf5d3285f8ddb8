//! The agent's main loop, level-triggered: desired pods (the manifest directory) against
//! observed pods (one executor task per container). Also serves the status socket.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tracing::{Instrument, error, info, info_span, warn};

use crate::AgentConfig;
use crate::host::fs::Fs;
use crate::pod::executor::Executor;
use crate::pod::lifecycle::Event;
use crate::pod::spec::{ContainerSpec, DEFAULT_GRACE, RestartPolicy, StaticPod};
use crate::runtime::{Adopted, AnyRuntime, ProcessRuntime, Running};
use crate::state::StateDir;
use crate::status::{AgentStatus, ContainerStatus, ManifestErrorStatus, PodStatus};
use crate::watch::ManifestWatcher;

/// What the tasks share.
pub(crate) struct Shared {
    pub(crate) cfg: AgentConfig,
    pub(crate) runtime: AnyRuntime,
    pub(crate) board: Mutex<Board>,
    pub(crate) wake: Notify,
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

struct PodHandle {
    pod: Arc<StaticPod>,
    containers: Vec<(mpsc::UnboundedSender<Event>, JoinHandle<()>)>,
    terminating: bool,
}

/// Runs the agent until `shutdown` resolves. Pods keep running after it returns.
pub(crate) async fn run(
    cfg: AgentConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let fs = Fs::real();
    let state = StateDir::new(&cfg.state_dir);
    state.ensure()?;
    fs.create_dir(&cfg.run_dir, 0o755)?;
    fs.create_dir(&cfg.pod_log_dir, 0o755)?;
    let node_id = state.node_id()?;
    let socket = cfg.socket();
    let listener = bind_socket(&socket)?;
    let runtime = AnyRuntime::Process(ProcessRuntime::new(&cfg, state, node_id.clone()));
    info!(node_id = %node_id, manifests = %cfg.manifest_dir.display(), socket = %socket.display(), runtime = runtime.name(), "agent starting");
    let shared = Arc::new(Shared {
        cfg,
        runtime,
        board: Mutex::new(Board::default()),
        wake: Notify::new(),
        node_id,
    });

    let server = tokio::spawn(serve(listener, shared.clone()));
    let mirror = match (&shared.cfg.kubeconfig, &shared.cfg.node_name) {
        (Some(kubeconfig), Some(node)) => Some(tokio::spawn(
            crate::mirror::run(shared.clone(), kubeconfig.clone(), node.clone())
                .instrument(info_span!("mirror")),
        )),
        _ => None,
    };
    let network =
        shared.cfg.pod_network.clone().map(|n| {
            tokio::spawn(crate::node_network::run(n).instrument(info_span!("pod-network")))
        });
    let mut watcher = ManifestWatcher::new(&shared.cfg.manifest_dir, shared.cfg.node_name.clone());
    let mut observed: BTreeMap<String, PodHandle> = BTreeMap::new();

    let desired = watcher.scan();
    let adopted = shared.runtime.adopt(DEFAULT_GRACE);
    let mut by_pod: BTreeMap<String, Vec<Adopted>> = BTreeMap::new();
    for a in adopted {
        by_pod.entry(a.record.pod_uid.clone()).or_default().push(a);
    }
    for (uid, list) in by_pod {
        let pod = match desired.pods.get(&uid) {
            Some(p) => p.clone(),
            None => pod_from_records(&list),
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
    loop {
        let d = desired.take().unwrap_or_else(|| watcher.scan());
        reconcile(&shared, &mut observed, d);
        tokio::select! {
            () = &mut shutdown => break,
            () = watcher.changed() => {}
            () = shared.wake.notified() => {}
            () = tokio::time::sleep(shared.cfg.resync) => {}
        }
    }
    info!("agent stopping; pods keep running and will be adopted by the next agent");
    server.abort();
    if let Some(m) = mirror {
        m.abort();
    }
    if let Some(n) = network {
        n.abort();
    }
    for h in observed.values() {
        for (_, task) in &h.containers {
            task.abort();
        }
    }
    let _ = std::fs::remove_file(&socket);
    Ok(())
}

fn bind_socket(socket: &std::path::Path) -> anyhow::Result<tokio::net::UnixListener> {
    if std::os::unix::net::UnixStream::connect(socket).is_ok() {
        anyhow::bail!(
            "another agent is already serving {:?}; stop it first (kubeboot agent stop) or give this one another run directory",
            socket.display().to_string()
        );
    }
    match std::fs::remove_file(socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "could not remove the stale socket {:?}",
                    socket.display().to_string()
                )
            });
        }
    }
    tokio::net::UnixListener::bind(socket).with_context(|| {
        format!(
            "could not listen on the status socket {:?}",
            socket.display().to_string()
        )
    })
}

/// A pod known only from records (its manifest is gone): enough to stop it.
fn pod_from_records(list: &[Adopted]) -> StaticPod {
    let first = &list[0].record;
    StaticPod {
        uid: first.pod_uid.clone(),
        namespace: first.namespace.clone(),
        name: first.pod_name.clone(),
        manifest: first.manifest.clone(),
        host_network: true,
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

fn start_pod(
    shared: &Arc<Shared>,
    pod: Arc<StaticPod>,
    mut adopted: HashMap<String, (Running, u32)>,
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
            reason: pod.unsupported(),
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
    let containers = (0..pod.containers.len())
        .map(|i| {
            let name = pod.containers[i].name.clone();
            let (ex, tx) = Executor::new(shared.clone(), pod.clone(), i, adopted.remove(&name));
            let span = info_span!("pod", pod = %pod.full_name(), container = %name);
            (tx, tokio::spawn(ex.run().instrument(span)))
        })
        .collect();
    info!(pod = %pod.full_name(), uid = %pod.uid, manifest = %pod.manifest.display(), "pod added");
    PodHandle {
        pod,
        containers,
        terminating: false,
    }
}

fn reconcile(
    shared: &Arc<Shared>,
    observed: &mut BTreeMap<String, PodHandle>,
    desired: crate::watch::Desired,
) {
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
            for (tx, _) in &h.containers {
                let _ = tx.send(Event::Stop);
            }
        }
    }
    // Stopped pods: forget them.
    observed.retain(|uid, h| {
        let done = h.containers.iter().all(|(_, t)| t.is_finished());
        if done {
            info!(pod = %h.pod.full_name(), "pod stopped");
            shared.runtime.forget_pod(uid);
            if let Ok(mut board) = shared.board.lock() {
                board.pods.remove(uid);
            }
        }
        !done
    });
    // New pods: start them once an old pod of the same name is gone.
    for (uid, pod) in desired.pods {
        if observed.contains_key(&uid) {
            continue;
        }
        if observed
            .values()
            .any(|h| h.pod.full_name() == pod.full_name())
        {
            continue;
        }
        let h = start_pod(shared, Arc::new(pod), HashMap::new());
        observed.insert(uid, h);
    }
    if let Ok(mut board) = shared.board.lock() {
        board.manifest_errors = desired.errors;
    }
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
}
