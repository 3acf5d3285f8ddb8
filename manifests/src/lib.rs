//! Typed static pod manifests for the control plane, built from the kubeadm configuration and
//! the [`components::catalogue`], as kubeadm v1.20 writes them and as later minors differ.
//!
//! This crate is pure: it builds `k8s_openapi` objects and renders YAML, and never touches the
//! filesystem, the network, processes, the environment or the clock. Facts about the node that
//! kubeadm reads from disk while building manifests (which CA directories exist, whether the
//! CA key is present) come in as [`HostPaths`]. Every path in a manifest comes from the
//! [`components::Layout`], so a layout rooted in a temporary directory yields pods that point
//! only inside it; on the host layout the paths are kubeadm's.
//!
//! Modules:
//! - [`args`]: flag maps rendered as sorted `--key=value` (kubeadm: BuildArgumentListFromMap).
//! - [`staticpod`]: small builders mirroring kubeadm's `util/staticpod` (`component_pod`,
//!   `host_path_volume`, `http_probe`, the liveness/readiness/startup probes).
//! - [`volumes`]: the control plane's hostPath volumes (kubeadm: controlplane/volumes.go).
//! - [`control_plane`]: kube-apiserver, kube-controller-manager and kube-scheduler pods
//!   (kubeadm: controlplane/manifests.go).
//! - [`etcd`]: the local etcd pod (kubeadm: etcd/local.go).
//! - [`cluster`]: the API objects `init` creates: kubeadm-config, kubelet-config, bootstrap
//!   tokens, cluster-info and their RBAC (kubeadm: phases/uploadconfig, bootstraptoken).
//! - [`agent_rbac`]: the ClusterRole and RoleBinding that let the node agents publish their
//!   static pods to the API.
//! - [`containerd`]: containerd as an agent static pod and kubeboot's configuration for it.
//! - [`kubelet`]: the kubelet's KubeletConfiguration, `kubeadm-flags.env` and its static pod
//!   in agent mode (kubeadm: componentconfigs/kubelet.go, phases/kubelet/flags.go).
//! - [`pod_cidr`]: the podCIDRs the controller-manager's range allocator gives a new Node.
//! - [`yaml`]: the one place pods become YAML and back, keys sorted as kubeadm's output.
//! - [`addons`]: the CoreDNS and kube-proxy objects kubeadm creates through the API
//!   (kubeadm: phases/addons), and the kube-proxy static pod of kubeboot's agent mode.
#![warn(missing_docs)]

pub mod addons;
pub mod agent_rbac;
pub mod args;
pub mod cluster;
pub mod containerd;
pub mod control_plane;
pub mod etcd;
pub mod kubelet;
pub mod staticpod;
pub mod volumes;
pub mod yaml;

mod host;
mod paths;

use components::Layout;
use components::config::{Etcd, InitConfig};
use k8s_openapi::api::core::v1::Pod;

/// The range allocator's podCIDR choice lives with the components' catalogue (the agent uses it
/// too); kept here under its old path.
pub use components::pod_cidr;
pub use control_plane::{apiserver_pod, controller_manager_pod, scheduler_pod};
pub use etcd::{EtcdIsExternal, EtcdMember, etcd_pod, etcd_pod_with_members};
pub use host::HostPaths;

/// Every control-plane static pod of an `init` node, named by component, in kubeadm's init
/// order: kube-apiserver, kube-controller-manager, kube-scheduler, then etcd when it is local
/// (kubeadm: phases control-plane/all, then etcd/local).
pub fn control_plane_pods(
    cfg: &InitConfig,
    layout: &Layout,
    host: &HostPaths,
) -> Vec<(String, Pod)> {
    let mut pods = vec![
        (
            components::names::KUBE_APISERVER.to_string(),
            apiserver_pod(cfg, layout, host),
        ),
        (
            components::names::KUBE_CONTROLLER_MANAGER.to_string(),
            controller_manager_pod(cfg, layout, host),
        ),
        (
            components::names::KUBE_SCHEDULER.to_string(),
            scheduler_pod(cfg, layout, host),
        ),
    ];
    if let Etcd::Local(_) = cfg.cluster.etcd {
        let pod = etcd_pod(cfg, layout).expect("etcd is local, checked above");
        pods.push((components::names::ETCD.to_string(), pod));
    }
    pods
}
