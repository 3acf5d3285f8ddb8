//! What an upgrade can undo, and from which point it cannot, as `upgrade plan` states it and
//! `upgrade apply` / `upgrade node` will honour it. Pure: the statements follow from the etcd
//! cluster's size and the etcd step.
//!
//! kubeadm restores etcd's data only when etcd's own step fails, cannot undo a finished etcd
//! step when a later component fails, nor addons (kubernetes/kubeadm#420, #2468, #2927).
//! kubeboot's rules:
//!
//! - Manifests, kubelet configuration and addons are backed up before they change and put
//!   back when any later component does not become healthy: always undoable.
//! - etcd within a minor (same version or a patch release) keeps its data format: the old
//!   binary runs the member's current data, so a rollback swaps the manifest back and keeps
//!   the data, and nothing the member acknowledged is lost.
//! - etcd to a new minor in a cluster of several members: the members run mixed versions
//!   while etcd's cluster version stays at the old minor, and a member moved back keeps its
//!   data (replacing it with a backup would rewind its raft log under writes it acknowledged).
//!   The point of no return is the moment the last member runs the new minor: etcd then
//!   raises its cluster version and migrates the data, and an old member can no longer join.
//! - etcd to a new minor goes last on each node, after kube-apiserver, controller-manager and
//!   scheduler are healthy (the new API server runs on the old etcd, the pair kubeadm's
//!   `--etcd-upgrade=false` runs): every step before it is undone without touching etcd.
//! - etcd to a new minor on a single member: that member is "every member", so the point of
//!   no return comes as soon as the new etcd is healthy; `upgrade apply` takes a snapshot,
//!   stops etcd, copies its data, and if the new etcd does not become healthy puts the copy
//!   back: etcd acknowledged nothing in between.

use components::upgrade::EtcdStep;

/// The statements, one per line, for an upgrade whose local etcd has `members` members and
/// takes `step` (`None` inside: the etcd step is not allowed); `etcd` is `None` for an
/// external etcd, which an upgrade never touches.
pub fn semantics(etcd: Option<(usize, Option<EtcdStep>)>) -> Vec<String> {
    let mut out = vec![
        "static Pod manifests, the kubelet configuration and the addons are backed up under /etc/kubernetes/tmp/kubeboot-backup-* before they change and are put back when any component does not become healthy in time".to_string(),
    ];
    match etcd {
        None => out.push("etcd is external: the upgrade does not touch it".into()),
        Some((_, Some(EtcdStep::Unchanged) | Some(EtcdStep::Patch))) => out.push(
            "etcd stays within its minor: its data format does not change, so a rollback puts the old etcd manifest back and keeps the data; no write etcd acknowledged is lost".into(),
        ),
        Some((_, None)) => {
            out.push("etcd: the etcd step is not allowed as planned (see above)".into())
        }
        Some((1, Some(EtcdStep::Minor))) => {
            out.push("etcd (one member) moves to a new minor last, after the other control-plane components are healthy: its data is copied with etcd stopped, and if the new etcd does not become healthy the old manifest and data come back; etcd acknowledged no write in between".into());
            out.push("point of no return: once the new etcd is healthy it raises the cluster version and migrates the data; from then on a failing step (the kubelet, kube-proxy) is rolled back but etcd stays at the new minor (going back means restoring the upgrade's snapshot, which loses the writes made since)".into());
        }
        Some((n, Some(EtcdStep::Minor))) => {
            out.push(format!("etcd ({n} members) moves to a new minor one member at a time, last on each node: while any member still runs the old minor, the cluster version stays old and a member that fails is moved back with its own data (never a backup), so no write acknowledged to a client is lost"));
            out.push(format!("point of no return: when the last of the {n} members runs the new minor, etcd raises the cluster version and migrates the data; after that etcd is not rolled back (only a snapshot restore on every member could, losing the writes made since), while the Kubernetes components still are"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(lines: &[String]) -> String {
        lines.join("\n")
    }

    #[test]
    fn within_a_minor_everything_is_undoable() {
        for step in [EtcdStep::Unchanged, EtcdStep::Patch] {
            let s = joined(&semantics(Some((3, Some(step)))));
            assert!(!s.contains("point of no return"), "{s}");
            assert!(s.contains("keeps the data"), "{s}");
        }
    }

    #[test]
    fn a_multi_member_minor_step_has_its_point_of_no_return_at_the_last_member() {
        let s = joined(&semantics(Some((3, Some(EtcdStep::Minor)))));
        assert!(
            s.contains("when the last of the 3 members runs the new minor"),
            "{s}"
        );
        assert!(
            s.contains("no write acknowledged to a client is lost"),
            "{s}"
        );
        assert!(s.contains("never a backup"), "{s}");
    }

    #[test]
    fn a_single_member_minor_step_passes_it_when_the_new_etcd_is_healthy() {
        let s = joined(&semantics(Some((1, Some(EtcdStep::Minor)))));
        assert!(s.contains("once the new etcd is healthy"), "{s}");
        assert!(
            s.contains("data is copied with etcd stopped")
                && s.contains("moves to a new minor last"),
            "{s}"
        );
    }

    #[test]
    fn external_etcd_is_left_alone() {
        let s = joined(&semantics(None));
        assert!(s.contains("etcd is external"), "{s}");
    }
}
