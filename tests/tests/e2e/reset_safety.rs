//! Scenario: `kubeboot reset -f` deletes what kubeboot created and nothing else, on a node
//! set up with the inputs that used to make reset empty whole system directories: an API
//! server `client-ca-file` under `/etc`, a volume still mounted (stacked) below
//! `/var/lib/kubelet`, and someone else's etcd data in `/var/lib/etcd`, with kubeboot's own
//! etcd elsewhere. Paths that name `/` are refused by validation before init writes anything.
//! What kubeboot's components made goes too: kube-proxy's service chains (`kube-proxy
//! --cleanup`), kubeboot's bridge and the veths on it (someone else's veth stays).
//!
//! A test node's `/` and `/etc` are the machine's own. Before anything dangerous, the node's
//! `/etc` becomes a private copy inside its mount namespace (its own `/var/lib/etcd` and
//! `/var/lib/kubelet` are private already, see `scripts/node.sh`); the scenario checks that
//! each is private (a mount the host does not have, and a probe file the host does not see)
//! and stops if one is not.

use std::path::Path;

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use tests::{Node, bin_dir, require_root, step, wait_until};

/// How many of kube-proxy's service chains (`KUBE-SERVICES`, `KUBE-SVC-*`, `KUBE-SEP-*`,
/// `KUBE-NODEPORTS`, `KUBE-POSTROUTING`) are in the node's nat table: what
/// `kube-proxy --cleanup` removes. (Its canary chain and the kubelet's `KUBE-MARK-*` chains
/// are left by `--cleanup` itself.)
fn kube_chains(node: &Node) -> Result<usize> {
    let rules = node.sh_ok("iptables -t nat -S")?;
    Ok(rules
        .lines()
        .filter(|l| {
            [
                "-N KUBE-SERVICES",
                "-N KUBE-SVC-",
                "-N KUBE-SEP-",
                "-N KUBE-NODEPORTS",
                "-N KUBE-POSTROUTING",
            ]
            .iter()
            .any(|c| l.starts_with(c))
        })
        .count())
}

/// The kubeboot-owned trees left out of the comparison of `/etc` before init and after reset.
const ETC_LISTING: &str = "find /etc -path /etc/kubernetes -prune -o -path /etc/kubeboot -prune \
     -o -path /etc/cni -prune -o -path /etc/containerd -prune -o -print | sort";

/// The mount id of the mount at exactly `path` in the node's mount namespace (the last one
/// listed: the top of a stack).
fn node_mount_id(node: &Node, path: &str) -> Result<Option<String>> {
    let out = node.sh_ok(&format!(
        "awk -v p='{path}' '$5 == p {{ id = $1 }} END {{ print id }}' /proc/self/mountinfo"
    ))?;
    Ok(Some(out.trim().to_string()).filter(|s| !s.is_empty()))
}

/// Fails unless `dir` is private to the node: a mount the host's mount namespace does not
/// have, and a probe file written inside that the host does not see.
fn verify_private(node: &Node, dir: &str) -> Result<()> {
    let id = node_mount_id(node, dir)?
        .with_context(|| format!("{dir} is not a mount point inside node {}", node.name()))?;
    let host = std::fs::read_to_string("/proc/self/mountinfo").context("host mountinfo")?;
    ensure!(
        !host
            .lines()
            .any(|l| l.split(' ').next() == Some(id.as_str())),
        "mount {id} at {dir} is the host's too: {dir} is not private to the node; stopping before reset"
    );
    let probe = format!("{dir}/.kb-e2e-probe-{}", node.name());
    node.sh_ok(&format!("touch '{probe}'"))?;
    let seen = Path::new(&probe).exists();
    if seen {
        let _ = std::fs::remove_file(&probe);
        bail!(
            "the host sees {probe} written inside the node: {dir} is not private; stopping before reset"
        );
    }
    node.sh_ok(&format!("rm -f '{probe}'"))?;
    Ok(())
}

/// Host directories the node mounts over (`/tmp/kb-e2e-<what>-<node>`): empty on the host,
/// the tmpfs or bind mounts live only in the node's mount namespace.
fn scratch(node: &Node, what: &str) -> String {
    format!("/tmp/kb-e2e-{what}-{}", node.name())
}

/// The node's `/etc` becomes a tmpfs copy of itself, the node's own mounts below `/etc`
/// (`/etc/kubernetes`, `/etc/hosts`, ...) bound again onto the copy.
fn make_etc_private(node: &Node) -> Result<()> {
    let copy = scratch(node, "etc");
    node.sh_ok(&format!(
        "set -e; mkdir -p '{copy}'; mount -t tmpfs -o size=256m kb-e2e-etc '{copy}'; \
         cp -a /etc/. '{copy}/'; \
         for m in $(awk '$5 ~ \"^/etc/\" {{ print $5 }}' /proc/self/mountinfo); do \
           mount --bind \"$m\" \"{copy}${{m#/etc}}\"; done; \
         mount --rbind '{copy}' /etc"
    ))?;
    Ok(())
}

fn config(node: &Node) -> String {
    format!(
        "apiVersion: kubeadm.k8s.io/v1beta2\n\
         kind: ClusterConfiguration\n\
         networking:\n  podSubnet: 10.244.0.0/16\n\
         apiServer:\n  extraArgs:\n    client-ca-file: /etc/client-ca.pem\n\
         etcd:\n  local:\n    dataDir: /var/lib/etcd/kubeboot\n\
         ---\n\
         apiVersion: kubelet.config.k8s.io/v1beta1\n\
         kind: KubeletConfiguration\n\
         cgroupRoot: {}\n\
         evictionHard:\n  imagefs.available: 1%\n  nodefs.available: 1%\n  nodefs.inodesFree: 1%\n\
         ---\n\
         apiVersion: kubeproxy.config.k8s.io/v1alpha1\n\
         kind: KubeProxyConfiguration\n\
         conntrack:\n  maxPerCore: 0\n",
        node.cgroup_root()
    )
}

const VOLUME_AT: &str = "/var/lib/kubelet/pods/kb-e2e/volumes/kubernetes.io~csi/pv/mount";
const CONFIG: &str = "/var/lib/kubeboot/e2e-reset.yaml";

#[test]
#[ignore = "needs KUBEBOOT_BIN_DIR"]
fn reset_safety() -> Result<()> {
    step("running as root", require_root)?;
    let bin = step("real binaries present", bin_dir)?;
    let bin = bin.to_string_lossy().to_string();
    let node = step("create node", || Node::allocate("reset-safety"))?;
    let volume = scratch(&node, "vol");
    let _ = std::fs::remove_dir_all(&volume);

    step(
        "the node's /etc, /var/lib/etcd and /var/lib/kubelet are private",
        || {
            make_etc_private(&node)?;
            for dir in ["/etc", "/var/lib/etcd", "/var/lib/kubelet"] {
                verify_private(&node, dir)?;
            }
            Ok(())
        },
    )?;

    step(
        "init refuses paths that name the root, before writing anything",
        || {
            let before =
                node.sh_ok("find /etc/kubernetes /var/lib/etcd /var/lib/kubeboot -mindepth 1")?;
            node.write_file(
                "/var/lib/kubeboot/e2e-bad.yaml",
                "apiVersion: kubeadm.k8s.io/v1beta2\nkind: ClusterConfiguration\n\
             apiServer:\n  extraArgs:\n    client-ca-file: /ca.pem\n\
             etcd:\n  local:\n    extraArgs:\n      data-dir: \".\"\n",
            )?;
            let out = node.kubeboot(&[
                "init",
                "--config",
                "/var/lib/kubeboot/e2e-bad.yaml",
                "--bin-dir",
                &bin,
            ])?;
            ensure!(out.code == Some(1), "exit code {:?}:\n{out}", out.code);
            for want in [
                "apiServer.extraArgs.client-ca-file: \"/ca.pem\" must not be directly in the root directory",
                "etcd.local.extraArgs.data-dir: \".\" must be an absolute path",
            ] {
                ensure!(out.stderr.contains(want), "stderr lacks {want:?}:\n{out}");
            }
            node.sh_ok("rm /var/lib/kubeboot/e2e-bad.yaml")?;
            let after =
                node.sh_ok("find /etc/kubernetes /var/lib/etcd /var/lib/kubeboot -mindepth 1")?;
            ensure!(
                before == after,
                "the refused init changed the node:\n{before}\n--\n{after}"
            );
            Ok(())
        },
    )?;

    let etc_before = step("someone else's data in /etc and /var/lib/etcd", || {
        node.sh_ok(
            "echo keep >/etc/kb-e2e-sentinel && mkdir -p /var/lib/etcd/member/snap && \
             echo keep >/var/lib/etcd/member/snap/db",
        )?;
        // The API server's client CA at /etc/client-ca.pem: the cluster CA, made first.
        node.kubeboot_ok(&[
            "init",
            "phase",
            "certs",
            "ca",
            "--kubernetes-version",
            "v1.20.2",
        ])?;
        node.sh_ok("cp /etc/kubernetes/pki/ca.crt /etc/client-ca.pem")?;
        node.sh_ok(ETC_LISTING)
    })?;

    step(
        "kubeboot init with client-ca-file under /etc and etcd in /var/lib/etcd/kubeboot",
        || {
            node.write_file(CONFIG, &config(&node))?;
            let out = node.kubeboot_ok(&["init", "--config", CONFIG, "--bin-dir", &bin])?;
            ensure!(
                out.contains("Your Kubernetes control-plane has initialized successfully!"),
                "init output:\n{out}"
            );
            let manifest = node.read_file("/etc/kubernetes/manifests/kube-apiserver.yaml")?;
            ensure!(
                manifest.contains("--client-ca-file=/etc/client-ca.pem"),
                "{manifest}"
            );
            ensure!(
                node.path_exists("/var/lib/etcd/kubeboot/member")?,
                "etcd has no data in /var/lib/etcd/kubeboot"
            );
            Ok(())
        },
    )?;

    step("a volume mounted (stacked) below /var/lib/kubelet", || {
        std::fs::create_dir_all(&volume)?;
        std::fs::write(Path::new(&volume).join("sentinel"), "keep")?;
        node.sh_ok(&format!(
            "set -e; mkdir -p '{VOLUME_AT}'; mount --bind '{volume}' '{VOLUME_AT}'; \
             mount -t tmpfs kb-e2e-top '{VOLUME_AT}'"
        ))?;
        Ok(())
    })?;

    step(
        "kube-proxy's rules are in the node's network namespace",
        || {
            wait_until(
                "kube-proxy's KUBE- chains in the nat table",
                Duration::from_secs(60),
                Duration::from_millis(500),
                || Ok(kube_chains(&node)? > 0),
            )
        },
    )?;

    step(
        "a veth on kubeboot's bridge, and someone else's veth",
        || {
            node.sh_ok(
                "set -e; ip link show kbr0 >/dev/null 2>&1 || ip link add kbr0 type bridge; \
             ip link add kbe2e0 type veth peer name kbe2e1; ip link set kbe2e0 master kbr0; \
             ip link add kbuser0 type veth peer name kbuser1",
            )
            .map(|_| ())
        },
    )?;

    step("reset -f deletes kubeboot's files and nothing else", || {
        let out = node.kubeboot_ok(&["reset", "-f"])?;
        eprintln!("{out}");
        ensure!(
            out.contains("volumes below the kubelet directory"),
            "reset output:\n{out}"
        );
        let etc_after = node.sh_ok(ETC_LISTING)?;
        ensure!(
            etc_before == etc_after,
            "/etc changed:\nbefore:\n{etc_before}\nafter:\n{etc_after}"
        );
        ensure!(
            node.read_file("/etc/kb-e2e-sentinel")?.trim() == "keep",
            "/etc sentinel"
        );
        ensure!(
            node.path_exists("/etc/client-ca.pem")?,
            "the user's client CA was deleted"
        );
        ensure!(
            node.read_file("/var/lib/etcd/member/snap/db")?.trim() == "keep",
            "someone else's etcd data was deleted"
        );
        ensure!(
            std::fs::read_to_string(Path::new(&volume).join("sentinel"))? == "keep",
            "the mounted volume's data was deleted"
        );
        let mounted =
            node.sh_ok("awk '$5 ~ \"^/var/lib/kubelet/\" { print $5 }' /proc/self/mountinfo")?;
        ensure!(
            mounted.trim().is_empty(),
            "still mounted below /var/lib/kubelet:\n{mounted}"
        );
        // kubeboot created /var/lib/etcd/kubeboot: it goes, /var/lib/etcd stays.
        ensure!(
            !node.path_exists("/var/lib/etcd/kubeboot")?,
            "kubeboot's etcd data directory is left"
        );
        let left = node.sh_ok(
            "find /etc/kubernetes /var/lib/kubeboot /var/lib/kube-proxy \
             /var/lib/kubelet /run/kubeboot /etc/cni/net.d -mindepth 1 -type f ! -name e2e-reset.yaml",
        )?;
        ensure!(
            left.trim().is_empty(),
            "kubeboot's files left after reset:\n{left}"
        );
        let procs = node.processes_starting_with(&[
            "etcd",
            "kube-apiserver",
            "kube-controller",
            "kube-scheduler",
            "kubelet",
            "kube-proxy",
            "kubeboot",
        ])?;
        ensure!(procs.is_empty(), "processes left after reset: {procs:?}");
        let links = node.sh_ok("ip -o link show")?;
        for gone in ["kbr0", "kbe2e0", "kbe2e1"] {
            ensure!(
                !links.contains(&format!(": {gone}")),
                "{gone} is left:\n{links}"
            );
        }
        ensure!(
            links.contains(": kbuser0"),
            "someone else's veth was deleted:\n{links}"
        );
        ensure!(
            kube_chains(&node)? == 0,
            "kube-proxy's rules are left:\n{}",
            node.sh_ok("iptables -t nat -S")?
        );
        Ok(())
    })?;

    step("init's preflight passes again", || {
        node.kubeboot_ok(&[
            "init",
            "phase",
            "preflight",
            "--config",
            CONFIG,
            "--bin-dir",
            &bin,
        ])
        .map(|_| ())
    })?;

    step(
        "reset -f without a record or an etcd manifest leaves /var/lib/etcd",
        || {
            let out = node.kubeboot_ok(&["reset", "-f"])?;
            ensure!(
                out.contains("[reset] No etcd config found. Assuming external etcd"),
                "{out}"
            );
            ensure!(
                node.read_file("/var/lib/etcd/member/snap/db")?.trim() == "keep",
                "someone else's etcd data was deleted"
            );
            Ok(())
        },
    )?;

    let etc_copy = scratch(&node, "etc");
    node.destroy()?;
    // Empty on the host: the mounts over them lived in the node's namespace only.
    let _ = std::fs::remove_dir(etc_copy);
    std::fs::remove_dir_all(&volume)?;
    Ok(())
}
