//! What the agent's integration tests share: a node in a temp directory whose agent runs on a
//! thread of the test, a test binary named like a component (`kube-scheduler`, a shell
//! script) in a temp `--bin-dir`, the shim from the `kubeboot-shim` test binary, every wait
//! bounded by a deadline. The `--bin-dir` is not under /tmp: the agent runs only binaries
//! whose directories no other user can write ([`agent::host::trust`]), so it lives in the
//! build's own temp directory (`CARGO_TARGET_TMPDIR`).
#![allow(dead_code, reason = "each test binary uses a part of the helpers")]

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use agent::status::{AgentStatus, ContainerStatus, PodStatus};
use agent::{AgentConfig, BackoffConfig};
use components::Layout;
use components::names::AGENT_MARKER_ENV;

pub const WAIT: Duration = Duration::from_secs(30);

/// The component stand-in: `--version` prints the version, the first argument picks a mode.
const SCRIPT: &str = r#"#!/bin/sh
if [ "$1" = "--version" ]; then echo "Kubernetes @VERSION@"; exit 0; fi
mode="$1"; shift
case "$mode" in
  sleep) echo "started $* A=$A in $(pwd)"; exec sleep 1000 ;;
  exit3) echo "out line"; echo "err line" >&2; exit 3 ;;
  spam) i=0; while [ $i -lt "$1" ]; do echo "spam line $i ......................"; i=$((i+1)); done; exec sleep 1000 ;;
  ignore-term) trap 'echo got TERM' TERM; echo ignoring; while :; do sleep 0.2; done ;;
  http) exec @PYTHON@ -m http.server --bind 127.0.0.1 "$1" ;;
  serve) ip -4 -o addr show dev eth0; exec @PYTHON@ -m http.server --bind 0.0.0.0 "$1" ;;
  *) echo "unknown mode $mode" >&2; exit 2 ;;
esac
"#;

pub fn python() -> String {
    let out = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 is needed for the httpGet probe test");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

pub struct Node {
    pub tmp: tempfile::TempDir,
    /// The `--bin-dir`, in a directory only its owner can write.
    pub bin: tempfile::TempDir,
    pub layout: Layout,
    pub cfg: AgentConfig,
    /// The network namespace the agent's thread runs in (the host's when `None`): the CNI
    /// plugins it runs and the probes it sends start there.
    pub agent_netns: Option<PathBuf>,
    agent: Option<(mpsc::Sender<()>, JoinHandle<anyhow::Result<()>>)>,
}

impl Node {
    pub fn new(version: &str) -> Node {
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout::under(tmp.path());
        let bin_tmp = trusted_tempdir();
        let bin = bin_tmp.path().to_path_buf();
        std::fs::create_dir_all(layout.manifests_dir()).unwrap();
        let script = SCRIPT
            .replace("@VERSION@", version)
            .replace("@PYTHON@", &python());
        write_exec(&bin.join("kube-scheduler"), &script);
        let mut cfg = AgentConfig::from_layout(&layout, vec![bin]);
        cfg.shim_exe = PathBuf::from(env!("CARGO_BIN_EXE_kubeboot-shim"));
        cfg.shim_args_prefix = vec![];
        cfg.backoff = BackoffConfig::with_initial(Duration::from_millis(300));
        cfg.resync = Duration::from_secs(1);
        cfg.watched_resync = Duration::from_secs(1);
        cfg.node_name = Some("n1".into());
        Node {
            tmp,
            bin: bin_tmp,
            layout,
            cfg,
            agent_netns: None,
            agent: None,
        }
    }

    pub fn start_agent(&mut self) {
        assert!(self.agent.is_none());
        let (tx, rx) = mpsc::channel::<()>();
        let cfg = self.cfg.clone();
        let netns = self.agent_netns.clone();
        let handle = std::thread::spawn(move || {
            if let Some(ns) = netns {
                agent::host::netns::enter(&ns)?;
            }
            let (atx, arx) = tokio::sync::oneshot::channel::<()>();
            std::thread::spawn(move || {
                let _ = rx.recv();
                let _ = atx.send(());
            });
            agent::run_until(cfg, async move {
                let _ = arx.await;
            })
        });
        self.agent = Some((tx, handle));
        wait_until("the status socket answers", || {
            agent::query(&self.cfg.socket(), Duration::from_secs(2)).ok()
        });
    }

    pub fn stop_agent(&mut self) {
        let (tx, handle) = self.agent.take().expect("agent running");
        tx.send(()).unwrap();
        handle.join().expect("agent thread").expect("agent result");
    }

    pub fn manifest(&self, name: &str) -> PathBuf {
        self.layout.manifests_dir().join(format!("{name}.yaml"))
    }

    pub fn write_manifest(&self, name: &str, body: &str) {
        // Atomically, as the phases do: a dot-file renamed into place.
        let tmp = self.layout.manifests_dir().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, body).unwrap();
        std::fs::rename(&tmp, self.manifest(name)).unwrap();
    }

    pub fn status(&self) -> AgentStatus {
        agent::query(&self.cfg.socket(), Duration::from_secs(5)).expect("status")
    }

    pub fn wait_pod<T>(&self, what: &str, f: impl Fn(&PodStatus) -> Option<T>) -> T {
        let mut last = None;
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Ok(st) = agent::query(&self.cfg.socket(), Duration::from_secs(5)) {
                if let Some(t) = st.pods.iter().find_map(&f) {
                    return t;
                }
                last = Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "timed out waiting for {what}; last status:\n{}",
            last.map(|s| s.render_text()).unwrap_or_default()
        );
    }

    pub fn wait_container(
        &self,
        what: &str,
        f: impl Fn(&ContainerStatus) -> bool,
    ) -> ContainerStatus {
        self.wait_pod(what, |p| p.containers.iter().find(|c| f(c)).cloned())
    }

    /// Waits for the container to be held back (waiting) with `reason`, checks that the
    /// status text shows the reason and that nothing of the node runs; returns the message.
    pub fn wait_held_back(&self, reason: &str) -> String {
        let c = self.wait_container(reason, |c| c.reason.as_deref() == Some(reason));
        assert_eq!(c.state, "waiting");
        let text = self.status().render_text();
        assert!(text.contains(reason), "{text}");
        assert!(self.marked().is_empty());
        c.message.expect("a held-back container says why")
    }

    pub fn node_id(&self) -> String {
        std::fs::read_to_string(self.cfg.state_dir.join("node-id"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// Live processes carrying this node's marker.
    pub fn marked(&self) -> Vec<agent::host::process::Marked> {
        let prefix = format!("{}/", self.node_id());
        agent::host::process::find_marked(AGENT_MARKER_ENV, |m| m.starts_with(&prefix))
    }

    /// The container process (not the shim) of a running container.
    pub fn container_pid(&self, shim: u32) -> u32 {
        wait_until("the container process", || {
            self.marked()
                .into_iter()
                .find(|m| m.stat.session == shim && m.pid != shim)
                .map(|m| m.pid)
        })
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some((tx, handle)) = self.agent.take() {
            let _ = tx.send(());
            let _ = handle.join();
        }
        let _ = agent::stop_all_pods(&self.layout, Duration::from_secs(2));
    }
}

/// A new directory (mode 0755) under the build's temp directory, checked to be one the agent
/// trusts binaries in; a build directory that is not (a group-writable checkout) fails here,
/// naming the directory to fix, rather than in every test.
pub fn trusted_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("bin")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let probe = dir.path().join(".probe");
    write_exec(&probe, "#!/bin/sh\n");
    if let Err(e) = agent::host::trust::check_binary(&probe) {
        panic!("the test --bin-dir would not be trusted: {e}");
    }
    std::fs::remove_file(&probe).unwrap();
    dir
}

pub fn write_exec(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

pub fn wait_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Some(t) = f() {
            return t;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {WAIT:?} waiting for {what}");
}

pub fn pod(name: &str, mode_args: &str, extra_spec: &str, extra_container: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: kube-system
spec:
  hostNetwork: true
{extra_spec}  containers:
  - name: main
    image: k8s.gcr.io/kube-scheduler:v1.20.2
    command: [kube-scheduler, {mode_args}]
    env:
    - {{name: A, value: "hello"}}
{extra_container}"#
    )
}

pub fn alive(pid: u32) -> bool {
    agent::host::process::proc_stat(pid).is_ok_and(|s| s.state != 'Z')
}

pub fn kill9(pid: u32) {
    let m = agent::host::process::PidFd::open(pid).unwrap();
    m.send_signal(nix::sys::signal::Signal::SIGKILL).unwrap();
}

/// The agent as a process of its own (`kubeboot-test-agent`), on `root`'s layout.
pub fn test_agent() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kubeboot-test-agent"))
}

/// The arguments of [`test_agent`] for a node: its root and its `--bin-dir`.
pub fn test_agent_args(n: &Node) -> Vec<String> {
    vec![
        n.tmp.path().display().to_string(),
        "--bin-dir".into(),
        n.bin.path().display().to_string(),
    ]
}

/// Stops the node's agent process (if any) when dropped, so a failed test leaves none.
pub struct StopAgent<'a>(pub &'a Layout);

impl Drop for StopAgent<'_> {
    fn drop(&mut self) {
        let _ = agent::stop(self.0, Duration::from_secs(5));
    }
}

/// The inputs of a test cluster's certificates: node1 at 10.0.0.1 (never a loopback address,
/// so a test server on loopback is verified by name or by CA alone), keys of `algorithm`.
pub fn cert_inputs(algorithm: components::config::KeyAlgorithm) -> pki::CertInputs {
    pki::CertInputs {
        node_name: "node1".into(),
        advertise_address: "10.0.0.1".parse().expect("ip"),
        service_subnet: "10.96.0.0/12".parse().expect("cidr"),
        dns_domain: "cluster.local".into(),
        control_plane_endpoint: None,
        apiserver_cert_sans: vec![],
        etcd_server_sans: vec![],
        etcd_peer_sans: vec![],
        algorithm,
        validity: pki::Validity::default(),
    }
}
