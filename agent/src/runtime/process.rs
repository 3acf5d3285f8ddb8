//! The process runtime: a container is the host binary its image names, run under the shim
//! (`kubeboot agent shim`). A hostNetwork pod's containers run in the host's network
//! namespace; those of any other pod in the pod's own, which the shim enters before it starts
//! the container (the namespace and its CNI network are [`crate::pod::network`]'s).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use components::Version;
use components::image::{self, ImageBinary};
use components::names::AGENT_MARKER_ENV;
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use tracing::{info, warn};

use super::{Adopted, Running, StartError};
use crate::AgentConfig;
use crate::host::fs::Fs;
use crate::host::process::{self, PidFd};
use crate::logs;
use crate::pod::lifecycle::ExitInfo;
use crate::pod::spec::{ContainerSpec, StaticPod};
use crate::state::{ContainerRecord, StateDir};

/// The PATH after the `--bin-dir`s when the manifest sets none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// How long `<binary> --version` may take.
const VERSION_TIMEOUT: Duration = Duration::from_secs(10);

/// A binary's `--version` result and the mtime it was taken at.
type CachedVersion = (SystemTime, Result<Version, String>);

/// Runs containers as host processes under the shim.
#[derive(Debug)]
pub struct ProcessRuntime {
    shim_exe: PathBuf,
    shim_args_prefix: Vec<String>,
    bin_dirs: Vec<PathBuf>,
    pod_log_dir: PathBuf,
    log_rotation: logs::LogRotation,
    state: StateDir,
    node_id: String,
    /// `--version` results by binary path, with the mtime they were taken at.
    versions: Mutex<HashMap<PathBuf, CachedVersion>>,
}

impl ProcessRuntime {
    /// A runtime for `cfg`, whose processes carry `node_id` in their marker.
    pub fn new(cfg: &AgentConfig, state: StateDir, node_id: String) -> Self {
        ProcessRuntime {
            shim_exe: cfg.shim_exe.clone(),
            shim_args_prefix: cfg.shim_args_prefix.clone(),
            bin_dirs: cfg.bin_dirs.clone(),
            pod_log_dir: cfg.pod_log_dir.clone(),
            log_rotation: cfg.log_rotation,
            state,
            node_id,
            versions: Mutex::new(HashMap::new()),
        }
    }

    /// The marker value of one container: `<node-id>/<pod-uid>/<container>`.
    pub fn marker(&self, uid: &str, container: &str) -> String {
        format!("{}/{uid}/{container}", self.node_id)
    }

    /// The container's environment: the manifest's env, PATH (the `--bin-dir`s first) unless
    /// the manifest sets it. Exec probes run with it too. Only a `--bin-dir` that passes
    /// [`crate::host::trust::check_dir`] now goes on it: the component runs as root whatever
    /// `iptables` or `mount` it finds there first (`kubeboot agent` refuses an untrusted
    /// one at startup; this holds for any other way the agent is configured, and for a
    /// directory changed since).
    pub fn container_env(&self, c: &ContainerSpec) -> Vec<(String, String)> {
        let mut env = c.env.clone();
        if !env.iter().any(|(k, _)| k == "PATH") {
            let mut path: Vec<String> = self
                .bin_dirs
                .iter()
                .filter(|d| crate::host::trust::check_dir(d).is_ok())
                .map(|d| d.display().to_string())
                .collect();
            path.push(DEFAULT_PATH.to_string());
            env.push(("PATH".into(), path.join(":")));
        }
        env
    }

    fn searched(&self) -> String {
        self.bin_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    async fn binary_version(&self, path: &Path) -> Result<Version, String> {
        let mtime = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .unwrap_or(UNIX_EPOCH);
        if let Ok(cache) = self.versions.lock()
            && let Some((t, v)) = cache.get(path)
            && *t == mtime
        {
            return v.clone();
        }
        let result = match process::run_with_timeout(
            path,
            &["--version".to_string()],
            None,
            None,
            Path::new("/"),
            VERSION_TIMEOUT,
        )
        .await
        {
            Ok(out) if out.timed_out => Err(format!(
                "\"{} --version\" did not finish within {VERSION_TIMEOUT:?}",
                path.display()
            )),
            Ok(out) => Version::find_in(&out.output).ok_or_else(|| {
                format!(
                    "\"{} --version\" printed no version: {:?}",
                    path.display(),
                    out.output.trim()
                )
            }),
            Err(e) => Err(format!(
                "could not run \"{} --version\": {e}",
                path.display()
            )),
        };
        if let Ok(mut cache) = self.versions.lock() {
            cache.insert(path.to_path_buf(), (mtime, result.clone()));
        }
        result
    }

    /// Resolves the container's binary and arguments, checking the binary's version.
    async fn resolve(&self, c: &ContainerSpec) -> Result<(PathBuf, Vec<String>), StartError> {
        if let Some(why) = &c.config_error {
            return Err(StartError::new("CreateContainerConfigError", why.clone()));
        }
        let ImageBinary { binary, policy } = match image::binary_for_image(&c.image) {
            Ok(Some(b)) => b,
            Ok(None) => {
                return Err(StartError::new(
                    "UnknownImage",
                    format!(
                        "image {:?} names no host binary: the process runtime runs only the kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy, kubelet, etcd and containerd images",
                        c.image
                    ),
                ));
            }
            Err(e) => return Err(StartError::new("InvalidImageName", e.to_string())),
        };
        let args = match c.command.split_first() {
            None => c.args.clone(),
            Some((first, rest)) => {
                let base = Path::new(first)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned());
                let ok = if first.contains('/') {
                    Path::new(first).is_absolute() && base.as_deref() == Some(binary)
                } else {
                    first == binary
                };
                if !ok {
                    return Err(StartError::new(
                        "CommandMismatch",
                        format!(
                            "command[0] {first:?} is not the {binary} binary that image {:?} names; the process runtime runs only {binary}",
                            c.image
                        ),
                    ));
                }
                rest.iter().chain(&c.args).cloned().collect()
            }
        };
        let path = self.versioned_binary(binary, &policy, &c.image).await?;
        Ok((path, args))
    }

    /// The first `<bin-dir>/<binary>` whose `--version` the image's policy accepts, the
    /// `--bin-dir`s in order: an upgrade adds the new version's directory before the old one,
    /// and either version's manifest then finds its own binary (a rollback needs no other
    /// change). Each candidate is trusted before `--version` runs it (it would run as root),
    /// and an untrusted one stops the search: a refused binary is never silently replaced by
    /// another.
    async fn versioned_binary(
        &self,
        binary: &str,
        policy: &components::image::VersionPolicy,
        image: &str,
    ) -> Result<PathBuf, StartError> {
        let wanted = policy.wanted();
        let mut seen = Vec::new();
        for dir in &self.bin_dirs {
            let found = process::find_binary(binary, std::slice::from_ref(dir))
                .map_err(|e| StartError::new("UntrustedBinary", e.to_string()))?;
            let Some(path) = found else { continue };
            match self.binary_version(&path).await {
                Ok(v) if policy.accepts(&v) => return Ok(path),
                Ok(v) => seen.push(format!("{} is {v}", path.display())),
                Err(e) => seen.push(e),
            }
        }
        if seen.is_empty() {
            return Err(StartError::new(
                "BinaryNotFound",
                format!(
                    "{binary} not found in {} (image {image:?} wants {binary} {wanted}); install it there or pass --bin-dir <directory with {binary} {wanted}>",
                    self.searched(),
                ),
            ));
        }
        Err(StartError::new(
            "BinaryVersionMismatch",
            format!(
                "image {image:?} wants {wanted}, but {}; put {binary} {wanted} in a directory and pass it with --bin-dir (searched: {})",
                seen.join(", "),
                self.searched()
            ),
        ))
    }

    /// Starts one container under a new shim and records it; in the network namespace
    /// `netns` when given (a pod without hostNetwork).
    pub async fn start(
        &self,
        pod: &StaticPod,
        c: &ContainerSpec,
        restart_count: u32,
        netns: Option<&Path>,
    ) -> Result<Running, StartError> {
        let (binary, args) = self.resolve(c).await?;
        // The shim is kubeboot itself (current_exe): replaced by a user, it would run as root.
        crate::host::trust::check_binary(&self.shim_exe)
            .map_err(|e| StartError::new("UntrustedBinary", format!("the shim: {e}")))?;
        self.stop_unsupervised(&pod.uid, &c.name, pod.grace).await;
        self.spawn(pod, c, restart_count, netns, &binary, &args)
            .map_err(|e| StartError::new("RunContainerError", format!("{e:#}")))
    }

    fn spawn(
        &self,
        pod: &StaticPod,
        c: &ContainerSpec,
        restart_count: u32,
        netns: Option<&Path>,
        binary: &Path,
        args: &[String],
    ) -> anyhow::Result<Running> {
        let fs = Fs::real();
        let workdir = PathBuf::from(c.working_dir.as_deref().unwrap_or("/"));
        if !workdir.is_dir() {
            // As runc does for a missing working directory.
            fs.ensure_dir(&workdir, 0o755)
                .context("could not create the working directory")?;
        }
        let pod_logs = logs::pod_log_dir(&self.pod_log_dir, &pod.namespace, &pod.name, &pod.uid);
        let log_file = logs::container_log_file(&pod_logs, &c.name, restart_count);
        fs.ensure_dir(&pod_logs.join(&c.name), 0o755)?;
        logs::remove_old_runs(&pod_logs.join(&c.name), restart_count);
        self.state.prepare(&pod.uid, &c.name)?;
        let marker = self.marker(&pod.uid, &c.name);
        let mut env = self.container_env(c);
        env.retain(|(k, _)| k != AGENT_MARKER_ENV);
        env.push((AGENT_MARKER_ENV.to_string(), marker.clone()));
        let exit_file = self.state.exit_path(&pod.uid, &c.name);
        let mut shim_args = self.shim_args_prefix.clone();
        shim_args.extend(
            crate::shim::ShimArgs {
                log: log_file.clone(),
                exit_file,
                workdir,
                netns: netns.map(Path::to_path_buf),
                rotation: self.log_rotation,
                binary: binary.to_path_buf(),
                args: args.to_vec(),
            }
            .to_args(),
        );
        let pid = process::spawn_detached_child(&self.shim_exe, &shim_args, &env, Path::new("/"))
            .with_context(|| {
            format!(
                "could not start the shim {:?}",
                self.shim_exe.display().to_string()
            )
        })?;
        let started_wall = SystemTime::now();
        // Our unreaped child: its PID cannot be reused before the pidfd pins it.
        let pidfd = PidFd::open(pid)
            .with_context(|| format!("could not open a pidfd for the shim (pid {pid})"))?;
        let stat =
            process::proc_stat(pid).with_context(|| format!("could not read /proc/{pid}/stat"))?;
        let exe =
            process::proc_exe(pid).with_context(|| format!("could not read /proc/{pid}/exe"))?;
        let record = ContainerRecord {
            pod_uid: pod.uid.clone(),
            namespace: pod.namespace.clone(),
            pod_name: pod.name.clone(),
            manifest: pod.manifest.clone(),
            container: c.name.clone(),
            container_hash: c.hash.clone(),
            pid,
            start_time: stat.start_time,
            exe,
            marker,
            restart_count,
            started_at_unix_ms: unix_ms(started_wall),
            grace_seconds: pod.grace.as_secs(),
            log_file: log_file.clone(),
        };
        if let Err(e) = self.state.write_record(&record) {
            // Without a record the process would be an orphan after an agent restart. The
            // shim first (a process with SIGKILL pending forks no more), then the container it
            // may have started already, which the shim's death does not reach.
            let _ = pidfd.send_signal(Signal::SIGKILL);
            let _ = pidfd.wait_exit_blocking(Duration::from_secs(2));
            let marker = &record.marker;
            process::signal_marked(AGENT_MARKER_ENV, |m| m == marker, Signal::SIGKILL);
            return Err(e.context("could not record the container"));
        }
        info!(pid, restart_count, binary = %binary.display(), "container started");
        Ok(Running {
            pid,
            pidfd: Arc::new(pidfd),
            log_file,
            started_wall,
        })
    }

    /// SIGTERM to the shim, which forwards it to the container's process group.
    pub fn terminate(&self, r: &Running) {
        if let Err(e) = r.pidfd.send_signal(Signal::SIGTERM)
            && e.raw_os_error() != Some(libc::ESRCH)
        {
            warn!(pid = r.pid, "could not send SIGTERM: {e}");
        }
    }

    /// SIGKILL to every process of the container (its marker) and to the shim.
    pub fn kill(&self, uid: &str, container: &str, r: &Running) {
        let marker = self.marker(uid, container);
        let n = process::signal_marked(AGENT_MARKER_ENV, |m| m == marker, Signal::SIGKILL);
        let _ = r.pidfd.send_signal(Signal::SIGKILL);
        warn!(
            pid = r.pid,
            processes = n,
            "grace period expired: killed the container"
        );
    }

    /// Waits for the shim to exit and reads how the container ended. A shim that ended
    /// without reporting it (killed) may have left the container running: it is stopped
    /// (SIGTERM, `grace`, SIGKILL) before this returns, so nothing runs unsupervised.
    pub async fn wait(&self, uid: &str, container: &str, r: &Running, grace: Duration) -> ExitInfo {
        let status = match process::wait_exit(r.pidfd.clone()).await {
            Ok(s) => s,
            Err(e) => {
                warn!(pid = r.pid, "could not wait for the shim: {e}");
                None
            }
        };
        match self.state.read_exit(uid, container) {
            Ok(Some(rec)) if rec.shim_pid == r.pid => {
                let mut exit = ExitInfo::from_status(rec.code, rec.signal);
                if let Some(err) = rec.error {
                    exit.reason = "ContainerCannotRun".into();
                    exit.message = Some(err);
                }
                exit
            }
            other => {
                if let Err(e) = other {
                    warn!("{e:#}");
                }
                self.stop_unsupervised(uid, container, grace).await;
                let signal = match status {
                    Some(WaitStatus::Signaled(_, s, _)) => Some(s as i32),
                    _ => None,
                };
                ExitInfo {
                    code: None,
                    signal,
                    reason: "Error".into(),
                    message: Some(format!(
                        "the shim (pid {}) ended without reporting the container's exit{}",
                        r.pid,
                        signal.map(|s| format!(" (signal {s})")).unwrap_or_default()
                    )),
                }
            }
        }
    }

    /// After an agent restart: the recorded containers that still run (PID, start time,
    /// executable and marker all match). Other records are dropped, and processes that carry
    /// this node's marker but belong to no adopted shim are stopped (SIGTERM now, SIGKILL
    /// after `orphan_grace`, in the background).
    pub fn adopt(&self, orphan_grace: Duration) -> Vec<Adopted> {
        let mut adopted = Vec::new();
        for (path, rec) in self.state.load_records() {
            let rec = match rec {
                Ok(r) => r,
                Err(e) => {
                    warn!("dropping an unreadable record: {e:#}");
                    let _ = self.state.remove_path(&path);
                    continue;
                }
            };
            match self.check_record(&rec) {
                Ok(pidfd) => {
                    info!(pod = %format!("{}/{}", rec.namespace, rec.pod_name), container = %rec.container, pid = rec.pid, "adopted a running container");
                    let running = Running {
                        pid: rec.pid,
                        pidfd: Arc::new(pidfd),
                        log_file: rec.log_file.clone(),
                        started_wall: UNIX_EPOCH + Duration::from_millis(rec.started_at_unix_ms),
                    };
                    adopted.push(Adopted {
                        record: rec,
                        running,
                    });
                }
                Err(why) => {
                    info!(pod = %format!("{}/{}", rec.namespace, rec.pod_name), container = %rec.container, pid = rec.pid, "not adopting: {why}");
                    let _ = self.state.remove_path(&path);
                }
            }
        }
        let shims: Vec<u32> = adopted.iter().map(|a| a.record.pid).collect();
        let prefix = format!("{}/", self.node_id);
        let orphans: Vec<process::Marked> =
            process::find_marked(AGENT_MARKER_ENV, |m| m.starts_with(&prefix))
                .into_iter()
                .filter(|m| !shims.contains(&m.pid) && !shims.contains(&m.stat.session))
                .collect();
        if !orphans.is_empty() {
            for m in &orphans {
                warn!(pid = m.pid, marker = %m.marker, "stopping an orphaned pod process (no record)");
            }
            tokio::spawn(async move { stop_processes(&orphans, orphan_grace).await });
        }
        adopted
    }

    fn check_record(&self, rec: &ContainerRecord) -> Result<PidFd, String> {
        if !rec.marker.starts_with(&format!("{}/", self.node_id)) {
            return Err("the record belongs to another node id".into());
        }
        let pidfd = PidFd::open(rec.pid).map_err(|e| format!("pid {} is gone: {e}", rec.pid))?;
        let stat = process::proc_stat(rec.pid).map_err(|e| format!("pid {}: {e}", rec.pid))?;
        if stat.start_time != rec.start_time || stat.state == 'Z' {
            return Err(format!(
                "pid {} is another process now (or a zombie)",
                rec.pid
            ));
        }
        let exe = process::proc_exe(rec.pid).map_err(|e| format!("pid {}: {e}", rec.pid))?;
        if exe != rec.exe {
            return Err(format!(
                "pid {} runs {}, not {}",
                rec.pid,
                exe.display(),
                rec.exe.display()
            ));
        }
        if process::proc_env_var(rec.pid, AGENT_MARKER_ENV).as_deref() != Some(rec.marker.as_str())
        {
            return Err(format!(
                "pid {} does not carry the marker {}",
                rec.pid, rec.marker
            ));
        }
        Ok(pidfd)
    }

    /// Stops every process that carries this container's marker: before a start, none of
    /// them has a shim of this agent (a shim that died, a record that could not be written or
    /// was lost), and starting beside them would run the container twice (two etcds on one
    /// data directory).
    async fn stop_unsupervised(&self, uid: &str, container: &str, grace: Duration) {
        let marker = self.marker(uid, container);
        let left = process::find_marked(AGENT_MARKER_ENV, |m| m == marker);
        if left.is_empty() {
            return;
        }
        let pids: Vec<u32> = left.iter().map(|m| m.pid).collect();
        warn!(
            ?pids,
            ?grace,
            "stopping processes of this container that no shim supervises"
        );
        stop_processes(&left, grace).await;
    }

    /// Forgets a container that is gone for good.
    pub fn forget(&self, uid: &str, container: &str) {
        if let Err(e) = self.state.remove_container(uid, container) {
            warn!("{e:#}");
        }
    }

    /// Forgets a pod whose containers are all gone.
    pub fn forget_pod(&self, uid: &str) {
        self.state.remove_pod_if_empty(uid);
    }
}

/// Stops `procs` (each with its process group when it leads one): SIGTERM, up to `grace`
/// for them to exit, then SIGKILL, and waits (bounded) until they are gone.
async fn stop_processes(procs: &[process::Marked], grace: Duration) {
    let gone = || {
        procs
            .iter()
            .all(|m| !process::is_alive(m.pid, m.stat.start_time))
    };
    let wait_gone = |bound: Duration| async move {
        let deadline = tokio::time::Instant::now() + bound;
        while tokio::time::Instant::now() < deadline {
            if gone() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        gone()
    };
    for m in procs {
        process::signal_one(m, Signal::SIGTERM);
    }
    if wait_gone(grace).await {
        return;
    }
    for m in procs {
        if process::is_alive(m.pid, m.stat.start_time) {
            process::signal_one(m, Signal::SIGKILL);
        }
    }
    if !wait_gone(Duration::from_secs(5)).await {
        warn!("processes survived SIGKILL (stuck in the kernel?)");
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    u64::try_from(t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(u64::MAX)
}
