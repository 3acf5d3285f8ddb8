//! The control-plane steps of `reset` (kubeadm: app/cmd/phases/reset/removeetcdmember.go and
//! updateclusterstatus.go, 1.20): before this node's etcd and API server stop, its etcd member
//! leaves the cluster (so the remaining members keep their quorum and a rejoin starts clean)
//! and its API endpoint leaves kubeadm-config's ClusterStatus. Both only warn on failure, as
//! kubeadm's do: reset must still clean the node.

use std::path::PathBuf;

use anyhow::Context;
use components::names;

use crate::reset::ResetData;
use crate::say;

/// What this node's etcd manifest says about its member.
struct LocalMember {
    name: String,
    ca: PathBuf,
    cert_dir: PathBuf,
}

/// The member name and certificate paths of this node's etcd, from its static pod manifest.
fn local_member(d: &ResetData) -> anyhow::Result<Option<LocalMember>> {
    let path = d.layout.manifest(names::ETCD);
    let Some(text) = d.fs.read_string_if_exists(&path)? else {
        return Ok(None);
    };
    let pod = manifests::yaml::from_yaml(&text)
        .with_context(|| format!("could not read {:?}", path.display().to_string()))?;
    let command: Vec<String> = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.command.iter().flatten())
        .cloned()
        .collect();
    let flag = |name: &str| {
        command
            .iter()
            .find_map(|a| a.strip_prefix(&format!("--{name}=")).map(str::to_string))
    };
    let (Some(name), Some(ca)) = (flag("name"), flag("trusted-ca-file")) else {
        return Ok(None);
    };
    let ca = d.layout.node_path(&ca);
    let cert_dir = ca.parent().map(PathBuf::from).unwrap_or_default();
    Ok(Some(LocalMember { name, ca, cert_dir }))
}

/// kubeadm's `remove-etcd-member`: this node's member leaves the etcd cluster (not when it is
/// the last one: that would destroy the cluster's data, which reset leaves to the data
/// directory). cleanup-node calls it once nothing talks to this node's API server any more.
pub fn remove_etcd_member(d: &mut ResetData) -> anyhow::Result<()> {
    let Some(member) = local_member(d)? else {
        return Ok(());
    };
    if d.dry_run {
        say!(
            d.out,
            "dryrun",
            "Would remove the etcd member {:?} from the cluster",
            member.name
        );
        return Ok(());
    }
    if let Err(e) = remove(d, &member) {
        say!(
            d.out,
            "reset",
            "WARNING: could not remove the etcd member {:?}: {e:#}; remove it on a remaining control-plane node (etcdctl member remove), or a node joining with this name removes it",
            member.name
        );
    }
    Ok(())
}

fn remove(d: &ResetData, member: &LocalMember) -> anyhow::Result<()> {
    let read = |name: &str| -> anyhow::Result<Vec<u8>> {
        let path = member.cert_dir.join(name);
        d.fs.read_if_exists(&path)?
            .with_context(|| format!("{:?} is missing", path.display().to_string()))
    };
    let client = crate::etcd_members::EtcdClient::new(
        &[format!("https://127.0.0.1:{}", names::ETCD_CLIENT_PORT)],
        &d.fs
            .read_if_exists(&member.ca)?
            .with_context(|| format!("{:?} is missing", member.ca.display().to_string()))?,
        &read("healthcheck-client.crt")?,
        &read("healthcheck-client.key")?,
    )?;
    let members = client.list()?;
    let Some(me) = members.iter().find(|m| m.name == member.name) else {
        say!(
            d.out,
            "reset",
            "The etcd member {:?} is not in the cluster any more",
            member.name
        );
        return Ok(());
    };
    if members.len() == 1 {
        say!(
            d.out,
            "reset",
            "The etcd member {:?} is the cluster's only one: it stays, with its data",
            member.name
        );
        return Ok(());
    }
    client.remove(me.id)?;
    say!(
        d.out,
        "reset",
        "Removed the etcd member {} from the cluster",
        me.describe()
    );
    Ok(())
}

/// `update-cluster-status`: this node's entry leaves kubeadm-config's ClusterStatus.
pub fn update_cluster_status(d: &mut ResetData) -> anyhow::Result<()> {
    let admin = d.layout.kubeconfig(names::ADMIN_KUBECONFIG);
    let Some(member) = local_member(d)? else {
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
