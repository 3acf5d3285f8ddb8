//! The local (stacked) etcd static pod (kubeadm: phases/etcd/local.go, GetEtcdPodSpec).

use std::collections::BTreeMap;

use components::Layout;
use components::catalogue::{self, Component, ProbePort, Scheme};
use components::config::{Etcd, InitConfig, LocalEtcd};
use components::names;
use k8s_openapi::api::core::v1::{Container, Pod};

use crate::args::{self, Args, insert_all};
use crate::control_plane::{image_repository, join_host_port, loopback};
use crate::paths::NodePaths;
use crate::staticpod::{
    self, ProbeTarget, component_pod, component_resources, host_path_volume, volume_mount,
};
use crate::volumes::DIRECTORY_OR_CREATE;

/// kubeadm: etcdVolumeName.
pub const ETCD_DATA: &str = "etcd-data";
/// kubeadm: certsVolumeName.
pub const ETCD_CERTS: &str = "etcd-certs";

/// The cluster uses an external etcd, so there is no etcd static pod to build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("etcd static pod manifest cannot be generated for cluster using external etcd")]
pub struct EtcdIsExternal;

/// A member of an existing etcd cluster, for a joining control-plane node's `initial-cluster`
/// (kubeadm: etcdutil.Member).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdMember {
    /// The member name (the node name).
    pub name: String,
    /// Its peer URL, `https://<ip>:2380`.
    pub peer_url: String,
}

/// The etcd static pod of the first control-plane node: a one-member `initial-cluster`.
///
/// # Errors
/// [`EtcdIsExternal`] when the configuration uses an external etcd.
pub fn etcd_pod(cfg: &InitConfig, layout: &Layout) -> Result<Pod, EtcdIsExternal> {
    etcd_pod_with_members(cfg, layout, &[])
}

/// The etcd static pod of a node joining an etcd cluster whose members, this node included,
/// are `initial_cluster` (`initial-cluster-state=existing`); an empty list is [`etcd_pod`].
///
/// # Errors
/// [`EtcdIsExternal`] when the configuration uses an external etcd.
pub fn etcd_pod_with_members(
    cfg: &InitConfig,
    layout: &Layout,
    initial_cluster: &[EtcdMember],
) -> Result<Pod, EtcdIsExternal> {
    let Etcd::Local(local) = &cfg.cluster.etcd else {
        return Err(EtcdIsExternal);
    };
    let version = &cfg.cluster.kubernetes_version;
    let paths = NodePaths::new(cfg, layout);
    let data_dir = paths.etcd_data_dir(cfg);
    let certs_dir = paths.cert("etcd");
    let target = etcd_probe_target(cfg, local);
    let (liveness, readiness, startup) = staticpod::component_probes(
        Component::Etcd,
        version,
        &target,
        cfg.cluster.api_server.timeout_for_control_plane_secs,
    );
    let container = Container {
        name: names::ETCD.to_string(),
        command: Some(etcd_command(cfg, layout, initial_cluster)?),
        image: Some(etcd_image(cfg, local)),
        image_pull_policy: Some("IfNotPresent".to_string()),
        // Read-write: etcd keeps its data there.
        volume_mounts: Some(vec![
            volume_mount(ETCD_DATA, &data_dir, false),
            volume_mount(ETCD_CERTS, &certs_dir, false),
        ]),
        resources: Some(component_resources(catalogue::resource_requests(
            Component::Etcd,
            version,
        ))),
        liveness_probe: liveness,
        readiness_probe: readiness,
        startup_probe: startup,
        ..Container::default()
    };
    let volumes = vec![
        host_path_volume(ETCD_DATA, &data_dir, DIRECTORY_OR_CREATE),
        host_path_volume(ETCD_CERTS, &certs_dir, DIRECTORY_OR_CREATE),
    ];
    let annotations = BTreeMap::from([(
        names::ANNOTATION_ETCD_CLIENT_URLS.to_string(),
        client_url(cfg),
    )]);
    Ok(component_pod(container, volumes, annotations))
}

/// etcd's image: the local etcd's repository and tag overrides, else the cluster's repository
/// and the catalogue's tag (kubeadm: images.GetEtcdImage).
fn etcd_image(cfg: &InitConfig, local: &LocalEtcd) -> String {
    let repo = local
        .image_repository
        .clone()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| image_repository(cfg));
    match local.image_tag.as_deref().filter(|t| !t.is_empty()) {
        Some(tag) => catalogue::generic_image(&repo, names::ETCD, tag),
        None => catalogue::image(Component::Etcd, &repo, &cfg.cluster.kubernetes_version),
    }
}

/// `https://<advertise>:2379` (kubeadm: etcdutil.GetClientURL).
pub fn client_url(cfg: &InitConfig) -> String {
    format!(
        "https://{}",
        join_host_port(
            &cfg.local_api_endpoint.advertise_address.to_string(),
            names::ETCD_CLIENT_PORT
        )
    )
}

/// `https://<advertise>:2380` (kubeadm: etcdutil.GetPeerURL).
pub fn peer_url(cfg: &InitConfig) -> String {
    format!(
        "https://{}",
        join_host_port(
            &cfg.local_api_endpoint.advertise_address.to_string(),
            names::ETCD_PEER_PORT
        )
    )
}

/// etcd's default flags before the local etcd's extraArgs (kubeadm: getEtcdCommand).
///
/// # Errors
/// [`EtcdIsExternal`] when the configuration uses an external etcd.
pub fn etcd_default_args(
    cfg: &InitConfig,
    layout: &Layout,
    initial_cluster: &[EtcdMember],
) -> Result<Args, EtcdIsExternal> {
    if !matches!(cfg.cluster.etcd, Etcd::Local(_)) {
        return Err(EtcdIsExternal);
    }
    let paths = NodePaths::new(cfg, layout);
    let version = &cfg.cluster.kubernetes_version;
    let node = cfg.node.name.as_str();
    let lo = loopback(cfg);
    let mut a = Args::new();
    insert_all(&mut a, catalogue::flags(Component::Etcd, version));
    for f in catalogue::cert_flags(Component::Etcd, true) {
        a.insert(f.name.to_string(), paths.cert(f.file));
    }
    a.insert("name".into(), node.to_string());
    a.insert(
        "listen-client-urls".into(),
        format!(
            "https://{},{}",
            join_host_port(lo, names::ETCD_CLIENT_PORT),
            client_url(cfg)
        ),
    );
    a.insert("advertise-client-urls".into(), client_url(cfg));
    a.insert("listen-peer-urls".into(), peer_url(cfg));
    a.insert("initial-advertise-peer-urls".into(), peer_url(cfg));
    a.insert("data-dir".into(), paths.etcd_data_dir(cfg));
    a.insert(
        "listen-metrics-urls".into(),
        format!("http://{}", join_host_port(lo, names::ETCD_METRICS_PORT)),
    );
    if initial_cluster.is_empty() {
        a.insert(
            "initial-cluster".into(),
            format!("{node}={}", peer_url(cfg)),
        );
    } else {
        let members: Vec<String> = initial_cluster
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect();
        a.insert("initial-cluster".into(), members.join(","));
        a.insert("initial-cluster-state".into(), "existing".into());
    }
    Ok(a)
}

/// etcd's command.
///
/// # Errors
/// [`EtcdIsExternal`] when the configuration uses an external etcd.
pub fn etcd_command(
    cfg: &InitConfig,
    layout: &Layout,
    initial_cluster: &[EtcdMember],
) -> Result<Vec<String>, EtcdIsExternal> {
    let Etcd::Local(local) = &cfg.cluster.etcd else {
        return Err(EtcdIsExternal);
    };
    Ok(args::command(
        names::ETCD,
        &etcd_default_args(cfg, layout, initial_cluster)?,
        &local.extra_args,
    ))
}

/// Where the kubelet probes etcd: the first `listen-metrics-urls` extraArg if the user set
/// one, else `http://<loopback>:2381` (kubeadm: staticpod.GetEtcdProbeEndpoint).
fn etcd_probe_target(cfg: &InitConfig, local: &LocalEtcd) -> ProbeTarget {
    let health = catalogue::ports(Component::Etcd)
        .expect("etcd has ports")
        .health;
    let default_port = match health.port {
        ProbePort::Fixed(p) => p,
        ProbePort::ApiServerBindPort => cfg.local_api_endpoint.bind_port,
    };
    let fallback = ProbeTarget {
        host: loopback(cfg).to_string(),
        port: default_port,
        scheme: health.scheme,
    };
    let Some(urls) = local.extra_args.get("listen-metrics-urls") else {
        return fallback;
    };
    let first = urls.split(',').next().unwrap_or("");
    let Some((scheme, rest)) = first.split_once("://") else {
        return fallback;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let (host, port) = split_authority(authority);
    ProbeTarget {
        host: if host.is_empty() {
            fallback.host
        } else {
            host.to_string()
        },
        port: port.and_then(|p| p.parse().ok()).unwrap_or(default_port),
        scheme: if scheme == "https" {
            Scheme::Https
        } else {
            Scheme::Http
        },
    }
}

/// Splits `host[:port]` / `[v6][:port]` as Go's url.Hostname and url.Port do.
fn split_authority(authority: &str) -> (&str, Option<&str>) {
    if let Some(rest) = authority.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((host, tail)) => (host, tail.strip_prefix(':')),
            None => (rest, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_authorities_like_go() {
        assert_eq!(
            split_authority("127.0.0.1:2381"),
            ("127.0.0.1", Some("2381"))
        );
        assert_eq!(split_authority("[::1]:2381"), ("::1", Some("2381")));
        assert_eq!(split_authority("localhost"), ("localhost", None));
    }
}
