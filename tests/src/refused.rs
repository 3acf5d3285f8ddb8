//! A command refused: exit code 1, stderr naming the problem and the fix, and the node left
//! as it was (shared by the scenarios that feed `init` bad input or untrusted binaries, and
//! `upgrade plan/diff/apply` bad input on a running cluster).

use anyhow::{Result, ensure};

use crate::node::Node;
use crate::run::CmdOutput;

/// What a node that `init` has not touched holds: nothing under these (the agent's pid file
/// and state included). Run it with [`Node::sh_ok`] before and after.
pub const NODE_STATE: &str =
    "find /etc/kubernetes /var/lib/etcd /var/lib/kubeboot /run/kubeboot -mindepth 1 2>/dev/null";

/// Fails unless `out` exited with 1 and its stderr holds every one of `wants`.
fn exited_1_naming(what: &str, out: &CmdOutput, wants: &[&str]) -> Result<()> {
    ensure!(
        out.code == Some(1),
        "{what}: exit code {:?}, want 1:\n{out}",
        out.code
    );
    for want in wants {
        ensure!(
            out.stderr.contains(want),
            "{what}: stderr lacks {want:?}:\n{out}"
        );
    }
    Ok(())
}

/// Fails unless `out` exited with 1, its stderr holds every one of `wants`, and
/// [`NODE_STATE`] on `node` is still `state_before`.
pub fn assert_refused(
    node: &Node,
    what: &str,
    out: &CmdOutput,
    wants: &[&str],
    state_before: &str,
) -> Result<()> {
    exited_1_naming(what, out, wants)?;
    let state = node.sh_ok(NODE_STATE)?;
    ensure!(
        state == state_before,
        "{what}: the node changed:\nbefore:\n{state_before}\nafter:\n{state}"
    );
    Ok(())
}

/// What a refused `upgrade plan`, `diff` or `apply` must leave as it was on a running
/// cluster: every file under /etc/kubernetes (manifests, the journal, backup directories),
/// the kubelet's configuration, the listing of /etc/kubernetes and /var/lib/kubeboot, the
/// agent's pid (not restarted), and the kubeadm-config ConfigMap.
pub fn upgrade_state(node: &Node) -> Result<String> {
    let files = node.sh_ok(
        "find /etc/kubernetes -type f | sort | xargs sha256sum; sha256sum /var/lib/kubelet/config.yaml; \
         find /etc/kubernetes /var/lib/kubeboot -maxdepth 2 | sort; echo agent pid $(cat /run/kubeboot/agent.pid)",
    )?;
    let cm = node.kubectl_json(&[
        "-n",
        "kube-system",
        "get",
        "cm",
        "kubeadm-config",
        "-o",
        "json",
    ])?;
    Ok(format!(
        "{files}\nkubeadm-config {}",
        cm["metadata"]["resourceVersion"]
    ))
}

/// Runs `kubeboot <args>` and checks that it failed with exit code 1, its stderr names each of
/// `wants`, and [`upgrade_state`] is still `before`.
pub fn assert_upgrade_refused(
    node: &Node,
    args: &[&str],
    wants: &[&str],
    before: &str,
) -> Result<()> {
    let out = node.kubeboot(args)?;
    exited_1_naming(&format!("{args:?}"), &out, wants)?;
    let after = upgrade_state(node)?;
    ensure!(
        after == before,
        "{args:?} changed the node:\nbefore:\n{before}\nafter:\n{after}"
    );
    Ok(())
}

/// Bin dirs for bad `--bin-dir` input, made in the node under /var/lib/kubeboot-dev (a
/// directory the trust check accepts): `<scratch>/empty`, and `<scratch>/mixed` with the
/// binaries of `next` but `bin`'s kube-scheduler. Returns `<scratch>`; remove it after.
pub fn scratch_bin_dirs(node: &Node, bin: &str, next: &str) -> Result<String> {
    let scratch = format!("/var/lib/kubeboot-dev/e2e-upgrade-{}", node.name());
    node.sh_ok(&format!(
        "rm -rf {scratch} && mkdir -p {scratch}/empty {scratch}/mixed && \
         for b in {next}/*; do ln -s \"$(readlink -f $b)\" {scratch}/mixed/; done && \
         ln -sfn \"$(readlink -f {bin}/kube-scheduler)\" {scratch}/mixed/kube-scheduler"
    ))?;
    Ok(scratch)
}
