//! A test node: network + mount + UTS namespaces made by `scripts/node.sh`.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::env::{self, kubeboot_exe, node_script, require_root};
use crate::run::{CmdOutput, run_bounded};
use crate::wait::failing;

/// Default bound for one command inside a node (`kubeboot init` included).
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(300);
/// Bound for `node.sh create` / `destroy`.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);
/// Where [`Node::allocate`] keeps one lock file per address slot.
const SLOT_DIR: &str = "/run/kubeboot-e2e/slots";
const SLOTS: u32 = 2000;
/// The admin kubeconfig inside a node after `kubeboot init`.
pub const ADMIN_CONF: &str = "/etc/kubernetes/admin.conf";

/// One test node. Dropping it destroys the node (all its processes, mounts, state); if the
/// test is failing (panic, or a failed [`crate::step`]) it first prints
/// [`Node::diagnostics`]. Set `KUBEBOOT_E2E_KEEP=1` to keep nodes for a post-mortem.
#[derive(Debug)]
pub struct Node {
    name: String,
    cidr: String,
    ip: Ipv4Addr,
    destroyed: bool,
    /// Held for the node's lifetime by [`Node::allocate`]; released (also when the test
    /// process dies) when dropped, after the node is destroyed.
    _slot: Option<File>,
}

/// A process running inside a node (in its network or mount namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeProcess {
    pub pid: u32,
    /// `/proc/<pid>/comm`: the executable name, at most 15 bytes.
    pub comm: String,
    /// `/proc/<pid>/cmdline`, arguments joined by spaces.
    pub cmdline: String,
}

impl Node {
    /// Creates node `name` with address `cidr_addr` (e.g. `"10.123.0.11/24"`; the hub takes
    /// the first address of the subnet). The caller keeps names and addresses unique; tests
    /// running in parallel should use [`Node::allocate`].
    pub fn create(name: &str, cidr_addr: &str) -> Result<Node> {
        Self::create_with_slot(name, cidr_addr, None)
    }

    /// Creates a node with a name and address unique on this machine, even across test
    /// processes running in parallel: `<label>-<slot>` at `10.124.<slot/250>.<slot%250+2>/16`
    /// (hub 10.124.0.1). A slot is owned through a lock on
    /// `/run/kubeboot-e2e/slots/<slot>.lock`; a node left at a free slot by a killed test
    /// run is destroyed first. Use the test's name as the label (`"init-single-cp"`).
    pub fn allocate(label: &str) -> Result<Node> {
        require_root()?;
        std::fs::create_dir_all(SLOT_DIR).with_context(|| format!("creating {SLOT_DIR}"))?;
        let label = sanitize(label);
        for slot in 0..SLOTS {
            let path = Path::new(SLOT_DIR).join(format!("{slot}.lock"));
            let file = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => continue,
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("locking {}", path.display()));
                }
            }
            let ip = Ipv4Addr::new(10, 124, (slot / 250) as u8, (slot % 250 + 2) as u8);
            remove_stale_node_at(ip)?;
            let name = format!("{label}-{slot}");
            return Self::create_with_slot(&name, &format!("{ip}/16"), Some(file));
        }
        bail!("all {SLOTS} node slots in {SLOT_DIR} are taken")
    }

    fn create_with_slot(name: &str, cidr_addr: &str, slot: Option<File>) -> Result<Node> {
        require_root()?;
        let ip: Ipv4Addr = cidr_addr
            .split('/')
            .next()
            .unwrap_or_default()
            .parse()
            .with_context(|| format!("node address {cidr_addr:?} is not IPv4/prefix"))?;
        let mut cmd = Command::new(node_script());
        cmd.args(["create", name, cidr_addr]);
        run_bounded(cmd, SCRIPT_TIMEOUT)?
            .ok()
            .with_context(|| format!("creating node {name} ({cidr_addr})"))?;
        eprintln!("[harness] node {name} at {cidr_addr}");
        Ok(Node {
            name: name.to_string(),
            cidr: cidr_addr.to_string(),
            ip,
            destroyed: false,
            _slot: slot,
        })
    }

    /// Node (and host) name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The node's address.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// The node's address with prefix, as given to `node.sh create`.
    pub fn cidr(&self) -> &str {
        &self.cidr
    }

    /// Runs `argv` inside the node, bounded by [`EXEC_TIMEOUT`]. A non-zero exit is not an
    /// error here (see [`Node::exec_ok`]); failing to run or timing out is.
    pub fn exec(&self, argv: &[&str]) -> Result<CmdOutput> {
        self.exec_timeout(argv, EXEC_TIMEOUT)
    }

    /// [`Node::exec`] with an explicit bound.
    pub fn exec_timeout(&self, argv: &[&str], timeout: Duration) -> Result<CmdOutput> {
        if argv.is_empty() {
            bail!("empty command for node {}", self.name);
        }
        eprintln!("[{}] $ {}", self.name, argv.join(" "));
        let mut cmd = Command::new(node_script());
        cmd.args(["exec", &self.name, "--"]).args(argv);
        let mut out = run_bounded(cmd, timeout)
            .with_context(|| format!("running `{}` in node {}", argv.join(" "), self.name))?;
        out.cmd = format!("[{}] {}", self.name, argv.join(" "));
        Ok(out)
    }

    /// Runs `argv` inside the node and returns its stdout; a non-zero exit is an error that
    /// shows both output streams.
    pub fn exec_ok(&self, argv: &[&str]) -> Result<String> {
        self.exec(argv)?.ok()
    }

    /// Runs a shell command line (`sh -c`) inside the node.
    pub fn sh(&self, script: &str) -> Result<CmdOutput> {
        self.exec(&["sh", "-c", script])
    }

    /// [`Node::sh`], stdout on success, error otherwise.
    pub fn sh_ok(&self, script: &str) -> Result<String> {
        self.sh(script)?.ok()
    }

    /// Runs the kubeboot binary under test ([`env::kubeboot_exe`]) inside the node.
    pub fn kubeboot(&self, args: &[&str]) -> Result<CmdOutput> {
        let exe = kubeboot_exe()?;
        let exe = exe.to_string_lossy();
        let argv: Vec<&str> = std::iter::once(exe.as_ref())
            .chain(args.iter().copied())
            .collect();
        self.exec(&argv)
    }

    /// [`Node::kubeboot`], stdout on success, error otherwise.
    pub fn kubeboot_ok(&self, args: &[&str]) -> Result<String> {
        self.kubeboot(args)?.ok()
    }

    /// `kubectl --kubeconfig /etc/kubernetes/admin.conf <args>` inside the node, with the
    /// v1.20.2 kubectl from `KUBEBOOT_BIN_DIR` (never the host's /usr/bin/kubectl) and a
    /// 20 s request timeout.
    pub fn kubectl(&self, args: &[&str]) -> Result<CmdOutput> {
        self.kubectl_as(ADMIN_CONF, args)
    }

    /// [`Node::kubectl`] with the credentials of another kubeconfig in the node.
    pub fn kubectl_as(&self, kubeconfig: &str, args: &[&str]) -> Result<CmdOutput> {
        let kubectl = env::require_bins(&["kubectl"])?.join("kubectl");
        let kubectl = kubectl.to_string_lossy();
        let mut argv = vec![
            kubectl.as_ref(),
            "--kubeconfig",
            kubeconfig,
            "--request-timeout=20s",
        ];
        argv.extend_from_slice(args);
        self.exec(&argv)
    }

    /// [`Node::kubectl`], stdout on success, error otherwise.
    pub fn kubectl_ok(&self, args: &[&str]) -> Result<String> {
        self.kubectl(args)?.ok()
    }

    /// `kubectl ... -o json` parsed.
    pub fn kubectl_json(&self, args: &[&str]) -> Result<serde_json::Value> {
        let mut argv = args.to_vec();
        argv.extend_from_slice(&["-o", "json"]);
        let out = self.kubectl_ok(&argv)?;
        serde_json::from_str(&out)
            .with_context(|| format!("parsing `kubectl {}` output", argv.join(" ")))
    }

    /// `kubeboot agent status -o json` inside the node, parsed.
    pub fn agent_status_json(&self) -> Result<serde_json::Value> {
        let out = self.kubeboot_ok(&["agent", "status", "-o", "json"])?;
        serde_json::from_str(&out)
            .with_context(|| format!("`kubeboot agent status -o json` printed no JSON:\n{out}"))
    }

    /// The kubelet `cgroupRoot` the harness gives this node (`scripts/node.sh` creates it in
    /// every cgroup hierarchy and kills what runs in it on destroy): nodes share the
    /// machine's cgroup tree, and two kubelets must never manage one `kubepods` hierarchy.
    pub fn cgroup_root(&self) -> String {
        format!("/kubeboot-{}", self.name)
    }

    /// Writes an init `--config` into the node (`/var/lib/kubeboot/e2e-init.yaml`, which
    /// `reset` keeps): a ClusterConfiguration with `pod_subnet`; a KubeletConfiguration with
    /// this node's [`Node::cgroup_root`] and hard eviction thresholds of 1% (the nodes share
    /// the machine's disk, whose free share may be below the kubelet's default 10%/15%, which
    /// taints the node with disk-pressure); a KubeProxyConfiguration with
    /// `conntrack.maxPerCore: 0` (a node's network namespace may not set the global
    /// `nf_conntrack_max`). Returns the path as the node sees it.
    pub fn write_init_config(&self, pod_subnet: &str) -> Result<String> {
        self.write_init_config_with_token(pod_subnet, None)
    }

    /// [`Node::write_init_config`], plus an InitConfiguration whose one bootstrap token is
    /// `token`, when given (`--token` cannot be mixed with `--config`), described as kubeadm
    /// describes the token of `kubeadm init --token`.
    pub fn write_init_config_with_token(
        &self,
        pod_subnet: &str,
        token: Option<&str>,
    ) -> Result<String> {
        self.write_init_config_full(pod_subnet, token, None)
    }

    /// [`Node::write_init_config`] with `controlPlaneEndpoint: <endpoint>` (a cluster that
    /// control-plane nodes may join).
    pub fn write_ha_init_config(&self, pod_subnet: &str, endpoint: &str) -> Result<String> {
        self.write_init_config_full(pod_subnet, None, Some(endpoint))
    }

    fn write_init_config_full(
        &self,
        pod_subnet: &str,
        token: Option<&str>,
        endpoint: Option<&str>,
    ) -> Result<String> {
        const PATH: &str = "/var/lib/kubeboot/e2e-init.yaml";
        let init_doc = token
            .map(|t| {
                format!(
                    "apiVersion: kubeadm.k8s.io/v1beta2\nkind: InitConfiguration\nbootstrapTokens:\n- token: {t}\n  description: \"The default bootstrap token generated by 'kubeadm init'.\"\n---\n"
                )
            })
            .unwrap_or_default();
        let yaml = format!(
            "{init_doc}apiVersion: kubeadm.k8s.io/v1beta2\n\
             kind: ClusterConfiguration\n\
             {}networking:\n  podSubnet: {pod_subnet}\n\
             ---\n\
             apiVersion: kubelet.config.k8s.io/v1beta1\n\
             kind: KubeletConfiguration\n\
             cgroupRoot: {}\n\
             evictionHard:\n  imagefs.available: 1%\n  nodefs.available: 1%\n  nodefs.inodesFree: 1%\n\
             ---\n\
             apiVersion: kubeproxy.config.k8s.io/v1alpha1\n\
             kind: KubeProxyConfiguration\n\
             conntrack:\n  maxPerCore: 0\n",
            endpoint
                .map(|e| format!("controlPlaneEndpoint: {e}\n"))
                .unwrap_or_default(),
            self.cgroup_root()
        );
        self.write_file(PATH, &yaml)?;
        Ok(PATH.to_string())
    }

    /// Writes a join `--config` into the node (`/var/lib/kubeboot-e2e/join.yaml`, outside what
    /// `reset` touches): a JoinConfiguration for `endpoint` with `token` and the CA pin
    /// `ca_hash`, and this node's own [`Node::cgroup_root`] as a kubelet flag (the cluster's
    /// kubelet configuration names the first node's). With `certificate_key`, a
    /// control-plane join advertising this node's address. Returns the path as the node sees
    /// it.
    pub fn write_join_config(
        &self,
        endpoint: &str,
        token: &str,
        ca_hash: &str,
        certificate_key: Option<&str>,
    ) -> Result<String> {
        const PATH: &str = "/var/lib/kubeboot/e2e-join.yaml";
        let control_plane = certificate_key
            .map(|k| {
                format!(
                    "controlPlane:\n  certificateKey: {k}\n  localAPIEndpoint:\n    advertiseAddress: {}\n    bindPort: 6443\n",
                    self.ip
                )
            })
            .unwrap_or_default();
        let yaml = format!(
            "apiVersion: kubeadm.k8s.io/v1beta2\n\
             kind: JoinConfiguration\n\
             discovery:\n  bootstrapToken:\n    apiServerEndpoint: {endpoint}\n    token: {token}\n    caCertHashes:\n    - {ca_hash}\n\
             nodeRegistration:\n  name: {}\n  kubeletExtraArgs:\n    cgroup-root: {}\n\
             {control_plane}",
            self.name,
            self.cgroup_root()
        );
        self.write_file(PATH, &yaml)?;
        Ok(PATH.to_string())
    }

    /// Writes `text` to `path` inside the node, creating its directory.
    pub fn write_file(&self, path: &str, text: &str) -> Result<()> {
        self.exec_ok(&[
            "sh",
            "-c",
            "mkdir -p \"$(dirname \"$2\")\" && printf '%s' \"$1\" >\"$2\"",
            "sh",
            text,
            path,
        ])?;
        Ok(())
    }

    /// Reads a file as the node sees it (its private /etc/kubernetes etc.).
    pub fn read_file(&self, path: &str) -> Result<String> {
        self.exec_ok(&["cat", path])
    }

    /// Whether a path exists inside the node.
    pub fn path_exists(&self, path: &str) -> Result<bool> {
        Ok(self.exec(&["test", "-e", path])?.success())
    }

    /// Starts `argv` inside the node in the background (its own session, stdin from
    /// /dev/null, stdout+stderr appended to `log` on the host's filesystem). The process
    /// dies with the node at the latest; the caller should `wait()` the child after killing
    /// it.
    pub fn spawn(&self, argv: &[&str], log: &Path) -> Result<Child> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let err = out.try_clone()?;
        eprintln!(
            "[{}] $ {} &  (log: {})",
            self.name,
            argv.join(" "),
            log.display()
        );
        Command::new(node_script())
            .args(["exec", &self.name, "--", "setsid"])
            .args(argv)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting `{}` in node {}", argv.join(" "), self.name))
    }

    /// Every process in the node's network or mount namespace (the agent, host-network pods
    /// and what they start). Processes of a CRI container live in namespaces of their own
    /// and are not listed.
    pub fn processes(&self) -> Result<Vec<NodeProcess>> {
        let net = ns_id("net", &PathBuf::from(format!("/run/netns/{}", self.name)))?;
        let mnt = ns_id(
            "mnt",
            &PathBuf::from(format!("/run/kubeboot-nodes/{}/mnt", self.name)),
        )?;
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").context("listing /proc")? {
            let entry = entry?;
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let dir = entry.path();
            let in_node = ["net", "mnt"].iter().any(|t| {
                std::fs::read_link(dir.join("ns").join(t))
                    .map(|l| l.to_string_lossy() == net || l.to_string_lossy() == mnt)
                    .unwrap_or(false)
            });
            if !in_node {
                continue;
            }
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline)
                .split('\0')
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            found.push(NodeProcess {
                pid,
                comm: comm.trim_end().to_string(),
                cmdline,
            });
        }
        found.sort_by_key(|p| p.pid);
        Ok(found)
    }

    /// `<pid> <cmdline>` of the node's processes whose executable name (`comm`) starts with
    /// one of `prefixes` (what a reset must have stopped).
    pub fn processes_starting_with(&self, prefixes: &[&str]) -> Result<Vec<String>> {
        Ok(self
            .processes()?
            .into_iter()
            .filter(|p| prefixes.iter().any(|c| p.comm.starts_with(c)))
            .map(|p| format!("{} {}", p.pid, p.cmdline))
            .collect())
    }

    /// PIDs of the node's processes whose executable name (`comm`) is `comm`
    /// (e.g. `"kube-apiserver"`, truncated by the kernel to 15 bytes: `"kube-controller"`).
    pub fn pids_named(&self, comm: &str) -> Result<Vec<u32>> {
        let comm: String = comm.chars().take(15).collect();
        Ok(self
            .processes()?
            .into_iter()
            .filter(|p| p.comm == comm)
            .map(|p| p.pid)
            .collect())
    }

    /// Sends SIGKILL to `pid`, which must be one of this node's processes.
    pub fn kill9(&self, pid: u32) -> Result<()> {
        if !self.processes()?.iter().any(|p| p.pid == pid) {
            bail!("pid {pid} is not a process of node {}", self.name);
        }
        eprintln!("[{}] kill -9 {pid}", self.name);
        let mut cmd = Command::new("kill");
        cmd.args(["-KILL", &pid.to_string()]);
        run_bounded(cmd, Duration::from_secs(10))?.ok()?;
        Ok(())
    }

    /// `kill -9` of the node's agent (the pid its own pid file names), waiting until it is
    /// gone. Returns its pid.
    pub fn kill9_agent(&self) -> Result<u32> {
        let pid: u32 = self
            .read_file("/run/kubeboot/agent.pid")?
            .split_whitespace()
            .next()
            .context("empty pid file")?
            .parse()?;
        self.kill9(pid)?;
        crate::wait::wait_until(
            "the agent gone",
            Duration::from_secs(10),
            Duration::from_millis(100),
            || Ok(!Path::new(&format!("/proc/{pid}")).exists()),
        )?;
        Ok(pid)
    }

    /// What to look at when a scenario fails: `kubeboot agent status`, the node's
    /// processes, the last lines of every container log under /var/log/kubeboot/pods and /var/log/pods, and of
    /// /var/log/kubeboot/agent.log.
    pub fn diagnostics(&self) -> String {
        let mut report = format!(
            "######## diagnostics of node {} ({})\n",
            self.name, self.cidr
        );
        match kubeboot_exe() {
            Ok(exe) => {
                let exe = exe.to_string_lossy();
                report += &self.capture(&format!("timeout 20 '{exe}' agent status 2>&1"));
            }
            Err(e) => report += &format!("(no kubeboot agent status: {e:#})\n"),
        }
        match self.processes() {
            Ok(ps) => {
                report += "### processes\n";
                for p in ps {
                    report += &format!("{:>7} {}\n", p.pid, truncate(&p.cmdline, 200));
                }
            }
            Err(e) => report += &format!("(no process list: {e:#})\n"),
        }
        report += &self.capture(
            "for f in $(find /var/log/kubeboot/pods /var/log/pods -type f -name '*.log' 2>/dev/null | sort); do \
               echo \"### $f (last 40 lines)\"; tail -n 40 \"$f\"; done; \
             echo '### /var/log/kubeboot/agent.log (last 80 lines)'; \
             tail -n 80 /var/log/kubeboot/agent.log 2>&1",
        );
        report
    }

    fn capture(&self, script: &str) -> String {
        match self.exec_timeout(&["sh", "-c", script], Duration::from_secs(60)) {
            Ok(out) => format!("{}{}", out.stdout, out.stderr),
            Err(e) => format!("({e:#})\n"),
        }
    }

    /// Destroys the node now (instead of at drop), reporting errors.
    pub fn destroy(mut self) -> Result<()> {
        self.destroy_inner()
    }

    fn destroy_inner(&mut self) -> Result<()> {
        if self.destroyed {
            return Ok(());
        }
        self.destroyed = true;
        let mut cmd = Command::new(node_script());
        cmd.args(["destroy", &self.name]);
        run_bounded(cmd, SCRIPT_TIMEOUT)?
            .ok()
            .with_context(|| format!("destroying node {}", self.name))?;
        Ok(())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.destroyed {
            return;
        }
        if failing() {
            eprintln!("{}", self.diagnostics());
        }
        if std::env::var_os("KUBEBOOT_E2E_KEEP").is_some() {
            eprintln!(
                "[harness] KUBEBOOT_E2E_KEEP: keeping node {}; enter: scripts/node.sh shell {0}; \
                 remove: scripts/node.sh destroy {0}",
                self.name
            );
            self.destroyed = true;
            return;
        }
        if let Err(e) = self.destroy_inner() {
            eprintln!("[harness] {e:#}");
        }
    }
}

/// `"<type>:[<inode>]"`, the `/proc/<pid>/ns/<type>` link text of the namespace in `file`.
fn ns_id(kind: &str, file: &Path) -> Result<String> {
    let ino = std::fs::metadata(file)
        .with_context(|| format!("namespace file {}", file.display()))?
        .ino();
    Ok(format!("{kind}:[{ino}]"))
}

/// Destroys whatever node still holds `ip` (left by a killed test run whose slot lock died
/// with it).
fn remove_stale_node_at(ip: Ipv4Addr) -> Result<()> {
    let Ok(entries) = std::fs::read_dir("/var/lib/kubeboot-nodes") else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let addr = std::fs::read_to_string(entry.path().join("address")).unwrap_or_default();
        if addr.trim().split('/').next() == Some(&ip.to_string()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            eprintln!("[harness] destroying stale node {name} at {ip}");
            let mut cmd = Command::new(node_script());
            cmd.args(["destroy", &name]);
            run_bounded(cmd, SCRIPT_TIMEOUT)?.ok()?;
        }
    }
    Ok(())
}

/// A node-name prefix from a test label: lowercase letters, digits and single dashes,
/// at most 30 characters.
fn sanitize(label: &str) -> String {
    let mut out = String::new();
    for c in label.chars().map(|c| c.to_ascii_lowercase()) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
        if out.len() >= 30 {
            break;
        }
    }
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() {
        "node".to_string()
    } else {
        out
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    format!("{}...", s.chars().take(max).collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::sanitize;

    #[test]
    fn sanitize_keeps_dns_label_characters() {
        assert_eq!(sanitize("init_single_node::cp"), "init-single-node-cp");
        assert_eq!(sanitize("Join Worker"), "join-worker");
        assert_eq!(sanitize("___"), "node");
        assert_eq!(sanitize(&"x".repeat(50)).len(), 30);
        assert_eq!(sanitize("a-"), "a");
    }
}
