//! The control-plane steps of `reset` (kubeadm: app/cmd/phases/reset/removeetcdmember.go and
//! updateclusterstatus.go, 1.20): before this node's etcd and API server stop, its etcd member
//! leaves the cluster (so the remaining members keep their quorum and a rejoin starts clean)
//! and its API endpoint leaves kubeadm-config's ClusterStatus. Both only warn when the cluster
//! cannot be reached, as kubeadm's do: reset must still clean the node. What is refused is
//! decided in preflight ([`decide_etcd_leave`]): a member the others need for quorum.

use components::names;

use crate::etcd_local::LocalEtcd;
use crate::reset::ResetData;
use crate::reset::leave::{self, EtcdLeave};
use crate::say;

/// Observes this node's etcd member and the health of every member, and decides with
/// [`leave::etcd_leave`] whether it may leave. `None` when this node runs no etcd, or when
/// its etcd cannot be asked (said as a warning: the removal is then left to the user, as
/// kubeadm's reset does when it fails).
///
/// # Errors
/// The member is needed for the cluster's quorum and `--force-remove-last-etcd-member` was
/// not given.
pub fn decide_etcd_leave(d: &ResetData) -> anyhow::Result<Option<EtcdLeave>> {
    let Some(local) = local_etcd(d) else {
        return Ok(None);
    };
    let observed = (|| {
        let client = local.client(&d.fs)?;
        let members = client.list()?;
        let health: Vec<(u64, Result<(), String>)> = members
            .iter()
            .map(|m| (m.id, client.member_health(m)))
            .collect();
        Ok::<_, anyhow::Error>((members, health))
    })();
    let (members, health) = match observed {
        Ok(o) => o,
        Err(e) => {
            say!(
                d.out,
                "reset",
                "[WARNING] could not ask this node's etcd about its member {:?} ({e:#}): it cannot be removed; remove it on a remaining control-plane node (etcdctl member remove), or a node joining with this name removes it",
                local.name
            );
            return Ok(None);
        }
    };
    Ok(Some(leave::etcd_leave(
        &members,
        &health,
        &local.name,
        d.leave.force_remove_last_etcd_member,
    )?))
}

/// kubeadm's `remove-etcd-member`: this node's member leaves the etcd cluster, as preflight
/// decided (or, run alone, as decided here). The node leaves the API first
/// ([`crate::reset::leave_api`]): once the member is gone this node's API server hangs.
pub fn remove_etcd_member(d: &mut ResetData) -> anyhow::Result<()> {
    let Some(local) = local_etcd(d) else {
        return Ok(());
    };
    let decision = match d.state.etcd_leave.clone() {
        Some(decided) => Some(decided),
        None => decide_etcd_leave(d)?,
    };
    match decision {
        None => Ok(()),
        Some(EtcdLeave::NotMember) => {
            say!(
                d.out,
                "reset",
                "The etcd member {:?} is not in the cluster any more",
                local.name
            );
            Ok(())
        }
        Some(EtcdLeave::OnlyMember { member }) => {
            say!(
                d.out,
                "reset",
                "The etcd member {member} is the cluster's only one: it stays, with its data"
            );
            Ok(())
        }
        Some(EtcdLeave::KeepForced { member, .. }) => {
            say!(
                d.out,
                "reset",
                "[WARNING] the etcd member {member} is needed for the cluster's quorum and {} was given: it is not removed (the remaining members cannot commit its removal) and this node's etcd data is deleted; once the others are back, remove it there with \"etcdctl member remove\"",
                leave::FORCE_LAST_MEMBER_FLAG
            );
            Ok(())
        }
        Some(EtcdLeave::Remove { id, member }) => {
            crate::reset::leave_api(d)?;
            if d.dry_run {
                say!(
                    d.out,
                    "dryrun",
                    "Would remove the etcd member {member} from the cluster"
                );
                return Ok(());
            }
            if let Err(e) = remove(d, &local, id) {
                say!(
                    d.out,
                    "reset",
                    "WARNING: could not remove the etcd member {member}: {e:#}; remove it on a remaining control-plane node (etcdctl member remove), or a node joining with this name removes it"
                );
                return Ok(());
            }
            say!(
                d.out,
                "reset",
                "Removed the etcd member {member} from the cluster"
            );
            Ok(())
        }
    }
}

/// Asks another member to remove this one: a member asked to remove itself stops at once,
/// and etcd 3.5 then answers "server stopped" (503) although the removal went through. When
/// every other member is out of reach, this member is asked after all, and a failure is
/// checked against the membership another member lists.
fn remove(d: &ResetData, local: &LocalEtcd, id: u64) -> anyhow::Result<()> {
    let client = local.client(&d.fs)?;
    let others: Vec<String> = client
        .list()?
        .into_iter()
        .filter(|m| m.id != id)
        .filter_map(|m| m.client_urls.first().cloned())
        .collect();
    for url in &others {
        let other = client.with_endpoint(url);
        if other.healthy(url) {
            match other.remove(id) {
                Ok(_) => return Ok(()),
                // It may have gone through before the answer was lost: the membership says.
                Err(e) if other.list().is_ok_and(|ms| ms.iter().all(|m| m.id != id)) => {
                    tracing::info!("the removal answered {e:#}, but the member is gone");
                    return Ok(());
                }
                Err(_) => continue,
            }
        }
    }
    match client.remove(id) {
        Ok(_) => Ok(()),
        Err(e) => {
            let gone = others.iter().any(|url| {
                client
                    .with_endpoint(url)
                    .list()
                    .is_ok_and(|ms| ms.iter().all(|m| m.id != id))
            });
            if gone { Ok(()) } else { Err(e) }
        }
    }
}

/// `update-cluster-status`: this node's entry leaves kubeadm-config's ClusterStatus.
pub fn update_cluster_status(d: &mut ResetData) -> anyhow::Result<()> {
    let admin = d
        .leave
        .kubeconfig
        .clone()
        .unwrap_or_else(|| d.layout.kubeconfig(names::ADMIN_KUBECONFIG));
    let Some(member) = local_etcd(d) else {
        return Ok(());
    };
    if !d.fs.exists(&admin) {
        return Ok(());
    }
    if d.dry_run {
        say!(
            d.out,
            "dryrun",
            "Would remove {:?} from the ClusterStatus of kube-system/kubeadm-config",
            member.name
        );
        return Ok(());
    }
    let result = crate::cluster::Cluster::from_kubeconfig(&d.fs.resolve(&admin)).and_then(|api| {
        api.mutate::<k8s_openapi::api::core::v1::ConfigMap>(
            Some(names::KUBE_SYSTEM),
            names::KUBEADM_CONFIG_CONFIGMAP,
            |cm| {
                let data = cm.data.get_or_insert_with(Default::default);
                if let Some(status) = components::config::cluster_status_without_endpoint(
                    data.get(names::CLUSTER_STATUS_KEY).map(String::as_str),
                    &member.name,
                )? {
                    data.insert(names::CLUSTER_STATUS_KEY.to_string(), status);
                }
                Ok(())
            },
        )
    });
    match result {
        Ok(()) => say!(
            d.out,
            "reset",
            "Removed {:?} from the ClusterStatus of kube-system/kubeadm-config",
            member.name
        ),
        Err(e) => say!(
            d.out,
            "reset",
            "WARNING: could not remove {:?} from the ClusterStatus of kube-system/kubeadm-config: {e:#}",
            member.name
        ),
    }
    Ok(())
}

/// This node's etcd member from its manifest; `None` when there is none, and, with a warning,
/// when the manifest cannot be read as kubeboot's or kubeadm's (a hand-written one): reset
/// never stops on it, as kubeadm's reset goes on when it cannot find the member. Cleanup
/// still removes the manifest; the member, if any, is then left to the user.
fn local_etcd(d: &ResetData) -> Option<crate::etcd_local::LocalEtcd> {
    match crate::etcd_local::read(&d.fs, &d.layout) {
        Ok(local) => local,
        Err(e) => {
            say!(
                d.out,
                "reset",
                "[WARNING] {e:#}: this node's etcd member is left as it is; remove it on a remaining control-plane node (etcdctl member remove) if it has one"
            );
            None
        }
    }
}
