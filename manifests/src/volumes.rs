//! The control plane's hostPath volumes and mounts (kubeadm: phases/controlplane/volumes.go).

use std::collections::BTreeMap;

use components::Layout;
use components::catalogue::{self, Component};
use components::config::{Etcd, ExternalEtcd, HostPathMount, InitConfig};
use k8s_openapi::api::core::v1::{Volume, VolumeMount};

use crate::HostPaths;
use crate::paths::NodePaths;
use crate::staticpod::{host_path_volume, volume_mount};

/// kubeadm: constants.KubeCertificatesVolumeName.
pub const K8S_CERTS: &str = "k8s-certs";
/// kubeadm: caCertsVolumeName.
pub const CA_CERTS: &str = "ca-certs";
/// kubeadm: constants.KubeConfigVolumeName.
pub const KUBECONFIG: &str = "kubeconfig";
/// kubeadm: flexvolumeDirVolumeName.
pub const FLEXVOLUME_DIR: &str = "flexvolume-dir";
/// hostPath type `DirectoryOrCreate`.
pub const DIRECTORY_OR_CREATE: &str = "DirectoryOrCreate";
/// hostPath type `FileOrCreate`.
pub const FILE_OR_CREATE: &str = "FileOrCreate";

/// Volumes and mounts per component, unique by name; a later mount of the same name replaces
/// an earlier one, so user extraVolumes override defaults (kubeadm: controlPlaneHostPathMounts).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostPathMounts {
    volumes: BTreeMap<Component, BTreeMap<String, Volume>>,
    mounts: BTreeMap<Component, BTreeMap<String, VolumeMount>>,
}

impl HostPathMounts {
    /// Adds a hostPath volume and its mount (kubeadm: NewHostPathMount).
    pub fn add(
        &mut self,
        component: Component,
        name: &str,
        host_path: &str,
        container_path: &str,
        read_only: bool,
        path_type: &str,
    ) {
        self.volumes.entry(component).or_default().insert(
            name.to_string(),
            host_path_volume(name, host_path, path_type),
        );
        self.mounts.entry(component).or_default().insert(
            name.to_string(),
            volume_mount(name, container_path, read_only),
        );
    }

    /// A component's volumes, sorted by name.
    pub fn volumes(&self, component: Component) -> Vec<Volume> {
        self.volumes
            .get(&component)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// A component's volume mounts, sorted by name (kubeadm: VolumeMountMapToSlice).
    pub fn volume_mounts(&self, component: Component) -> Vec<VolumeMount> {
        self.mounts
            .get(&component)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }
}

/// The hostPath volumes of kube-apiserver, kube-controller-manager and kube-scheduler
/// (kubeadm: getHostPathVolumesForTheControlPlane). Node paths are mapped through `layout`;
/// a user's extraVolume keeps its container path as written (the user's own flags refer to
/// it) while its host path is mapped.
pub fn control_plane_mounts(cfg: &InitConfig, layout: &Layout, host: &HostPaths) -> HostPathMounts {
    let paths = NodePaths::new(cfg, layout);
    let mut m = HostPathMounts::default();
    let (api, kcm, sched) = (
        Component::KubeApiServer,
        Component::KubeControllerManager,
        Component::KubeScheduler,
    );
    let cert_dir = paths.cert_dir();
    let ca_certs = paths.node(catalogue::CA_CERTS_DIR);

    m.add(
        api,
        K8S_CERTS,
        &cert_dir,
        &cert_dir,
        true,
        DIRECTORY_OR_CREATE,
    );
    m.add(
        api,
        CA_CERTS,
        &ca_certs,
        &ca_certs,
        true,
        DIRECTORY_OR_CREATE,
    );
    if let Etcd::External(external) = &cfg.cluster.etcd {
        for dir in external_etcd_cert_dirs(external, cfg, &paths)
            .iter()
            .enumerate()
        {
            let (i, dir) = dir;
            m.add(
                api,
                &format!("etcd-certs-{i}"),
                dir,
                dir,
                true,
                DIRECTORY_OR_CREATE,
            );
        }
    }

    m.add(
        kcm,
        K8S_CERTS,
        &cert_dir,
        &cert_dir,
        true,
        DIRECTORY_OR_CREATE,
    );
    m.add(
        kcm,
        CA_CERTS,
        &ca_certs,
        &ca_certs,
        true,
        DIRECTORY_OR_CREATE,
    );
    let kcm_kubeconfig = paths.kubeconfig(kcm);
    m.add(
        kcm,
        KUBECONFIG,
        &kcm_kubeconfig,
        &kcm_kubeconfig,
        true,
        FILE_OR_CREATE,
    );
    // Not read-only: third-party storage plugins talk to their backends over sockets there.
    let flexvolume = match cfg
        .cluster
        .controller_manager
        .extra_args
        .get("flex-volume-plugin-dir")
    {
        Some(dir) => paths.node(dir),
        None => paths.node(catalogue::DEFAULT_FLEXVOLUME_DIR),
    };
    m.add(
        kcm,
        FLEXVOLUME_DIR,
        &flexvolume,
        &flexvolume,
        false,
        DIRECTORY_OR_CREATE,
    );

    let sched_kubeconfig = paths.kubeconfig(sched);
    m.add(
        sched,
        KUBECONFIG,
        &sched_kubeconfig,
        &sched_kubeconfig,
        true,
        FILE_OR_CREATE,
    );

    for dir in catalogue::CA_CERTS_EXTRA_DIRS
        .iter()
        .filter(|d| host.has_ca_dir(d))
    {
        let name = dir.replace('/', "-")[1..].to_string();
        let path = paths.node(dir);
        m.add(api, &name, &path, &path, true, DIRECTORY_OR_CREATE);
        m.add(kcm, &name, &path, &path, true, DIRECTORY_OR_CREATE);
    }

    add_extra(
        &mut m,
        api,
        &cfg.cluster.api_server.component.extra_volumes,
        &paths,
    );
    add_extra(
        &mut m,
        kcm,
        &cfg.cluster.controller_manager.extra_volumes,
        &paths,
    );
    add_extra(&mut m, sched, &cfg.cluster.scheduler.extra_volumes, &paths);
    m
}

/// kubeadm: AddExtraHostPathMounts.
fn add_extra(
    m: &mut HostPathMounts,
    component: Component,
    extra: &[HostPathMount],
    paths: &NodePaths<'_>,
) {
    for v in extra {
        m.add(
            component,
            &v.name,
            &paths.node(&v.host_path),
            &v.mount_path,
            v.read_only,
            &v.path_type,
        );
    }
}

/// The directories holding an external etcd's client files that are not already mounted
/// (kubeadm: getEtcdCertVolumes), mapped through the layout, sorted.
fn external_etcd_cert_dirs(
    external: &ExternalEtcd,
    cfg: &InitConfig,
    paths: &NodePaths<'_>,
) -> Vec<String> {
    let k8s_cert_dir = match cfg.cluster.certificates_dir.as_str() {
        "" => components::names::DEFAULT_CERTIFICATES_DIR,
        d => d,
    };
    let mut dirs: Vec<String> = Vec::new();
    for file in [&external.ca_file, &external.cert_file, &external.key_file] {
        let dir = match file.rsplit_once('/') {
            Some(("", _)) => "/".to_string(),
            Some((dir, _)) => dir.to_string(),
            None => continue, // filepath.Dir of a bare name or "" is ".", which kubeadm skips.
        };
        let covered = catalogue::CA_CERTS_EXTRA_DIRS
            .iter()
            .any(|p| dir.starts_with(p))
            || dir.starts_with(catalogue::CA_CERTS_DIR)
            || dir.starts_with(k8s_cert_dir);
        if covered {
            continue;
        }
        if dirs.iter().any(|existing| {
            dir.starts_with(existing.as_str()) && !existing.starts_with(dir.as_str())
        }) {
            continue;
        }
        dirs.retain(|existing| !existing.starts_with(dir.as_str()));
        dirs.push(dir);
    }
    dirs.sort();
    dirs.dedup();
    dirs.iter().map(|d| paths.node(d)).collect()
}
