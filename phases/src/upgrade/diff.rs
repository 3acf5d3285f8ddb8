//! `upgrade diff`: the static Pod manifest changes an upgrade to a version would make, as
//! kubeadm 1.20 prints them (app/cmd/upgrade/diff.go: the cluster's configuration with the new
//! `kubernetesVersion`, the control-plane manifests built from it, a unified diff of each
//! against the file on disk with "new manifest" as the new side).
//!
//! Pure: the manifests on disk come in as text. The new kube-apiserver, kube-controller-manager
//! and kube-scheduler manifests come from the same builders `init` uses. kubeadm 1.20's diff
//! leaves etcd out; kubeboot's upgrade moves etcd too, so a local etcd's manifest is shown
//! with its image moved to the target etcd: an upgrade never changes etcd's membership flags,
//! so only the image line differs.

use components::config::{ApiEndpoint, Etcd, InitConfig, NodeRegistration};
use components::{Layout, Version, catalogue, names};
use k8s_openapi::api::core::v1::Pod;

/// A manifest on disk that the diff cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiffError {
    /// Not a Pod manifest.
    #[error(
        "{path} is not a static Pod manifest ({reason}); restore it from /etc/kubernetes/tmp or run \"kubeboot init phase control-plane\""
    )]
    Unreadable {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The kube-apiserver manifest does not say which endpoint it advertises.
    #[error(
        "{path} has no {annotation} annotation naming the API endpoint it advertises; it was not written by kubeadm or kubeboot"
    )]
    NoEndpoint {
        /// The file.
        path: String,
        /// The annotation kubeadm writes.
        annotation: &'static str,
    },
}

/// The node's API endpoint, from the kube-apiserver manifest's annotation (kubeadm writes
/// `kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint: <ip>:<port>`).
///
/// # Errors
/// [`DiffError`] when the manifest cannot be read or lacks the annotation.
pub fn local_endpoint(path: &str, apiserver_yaml: &str) -> Result<ApiEndpoint, DiffError> {
    let pod = parse(path, apiserver_yaml)?;
    let no = || DiffError::NoEndpoint {
        path: path.to_string(),
        annotation: names::ANNOTATION_APISERVER_ENDPOINT,
    };
    let value = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(names::ANNOTATION_APISERVER_ENDPOINT))
        .ok_or_else(no)?;
    let addr: std::net::SocketAddr = value.parse().map_err(|_| no())?;
    Ok(ApiEndpoint {
        advertise_address: addr.ip(),
        bind_port: addr.port(),
    })
}

fn parse(path: &str, yaml: &str) -> Result<Pod, DiffError> {
    manifests::yaml::from_yaml(yaml).map_err(|e| DiffError::Unreadable {
        path: path.to_string(),
        reason: e.to_string(),
    })
}

/// The configuration an upgrade to `target` builds manifests from: the cluster's, with the new
/// version and this node's endpoint (kubeadm: diff.go sets ClusterConfiguration.KubernetesVersion).
pub fn target_config(
    cluster: &components::config::ClusterConfig,
    endpoint: ApiEndpoint,
    target: &Version,
) -> InitConfig {
    let mut cluster = cluster.clone();
    cluster.kubernetes_version = target.clone();
    InitConfig {
        cluster,
        node: NodeRegistration {
            name: String::new(),
            cri_socket: None,
            taints: None,
            kubelet_extra_args: Default::default(),
            ignore_preflight_errors: vec![],
        },
        local_api_endpoint: endpoint,
        bootstrap_tokens: vec![],
        certificate_key: None,
        skip_phases: vec![],
        component_configs: vec![],
    }
}

/// The new manifests of kube-apiserver, kube-controller-manager and kube-scheduler, in
/// kubeadm's order.
pub fn control_plane_manifests(
    cfg: &InitConfig,
    layout: &Layout,
    host: &manifests::HostPaths,
) -> Vec<(&'static str, String)> {
    vec![
        (
            names::KUBE_APISERVER,
            manifests::yaml::to_yaml(&manifests::apiserver_pod(cfg, layout, host)),
        ),
        (
            names::KUBE_CONTROLLER_MANAGER,
            manifests::yaml::to_yaml(&manifests::controller_manager_pod(cfg, layout, host)),
        ),
        (
            names::KUBE_SCHEDULER,
            manifests::yaml::to_yaml(&manifests::scheduler_pod(cfg, layout, host)),
        ),
    ]
}

/// The etcd manifest on disk with its image moved to `image_tag` (the repository kept as
/// configured: `etcd.local.imageRepository`, else the cluster's).
///
/// # Errors
/// [`DiffError`] when the manifest cannot be read.
pub fn etcd_manifest(
    cfg: &InitConfig,
    path: &str,
    current_yaml: &str,
    image_tag: &str,
) -> Result<String, DiffError> {
    let mut pod = parse(path, current_yaml)?;
    let repo = match &cfg.cluster.etcd {
        Etcd::Local(l) => l.image_repository.clone().filter(|r| !r.is_empty()),
        _ => None,
    }
    .unwrap_or_else(|| {
        if cfg.cluster.image_repository.is_empty() {
            catalogue::default_image_repository(&cfg.cluster.kubernetes_version).to_string()
        } else {
            cfg.cluster.image_repository.clone()
        }
    });
    let image = catalogue::generic_image(&repo, names::ETCD, image_tag);
    if let Some(spec) = pod.spec.as_mut() {
        for c in &mut spec.containers {
            if c.name == names::ETCD {
                c.image = Some(image.clone());
            }
        }
    }
    Ok(manifests::yaml::to_yaml(&pod))
}

/// A unified diff of `old` (the file at `path`) against `new`, with `context` lines around each
/// change, headed `--- <path>` / `+++ new manifest` as kubeadm's; empty when they are equal.
pub fn unified(path: &str, old: &str, new: &str, context: usize) -> String {
    if old == new {
        return String::new();
    }
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(context)
        .header(path, "new manifest")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const APISERVER: &str = "\
apiVersion: v1
kind: Pod
metadata:
  annotations:
    kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint: 10.0.0.1:6443
  name: kube-apiserver
  namespace: kube-system
spec:
  containers:
  - image: k8s.gcr.io/kube-apiserver:v1.20.2
    name: kube-apiserver
";

    #[test]
    fn the_endpoint_comes_from_the_annotation() {
        let ep = local_endpoint("/m/kube-apiserver.yaml", APISERVER).expect("endpoint");
        assert_eq!(ep.advertise_address.to_string(), "10.0.0.1");
        assert_eq!(ep.bind_port, 6443);
        let none = local_endpoint(
            "/m/a.yaml",
            &APISERVER.replace(
                "kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint",
                "other",
            ),
        );
        assert!(matches!(none, Err(DiffError::NoEndpoint { .. })));
        let bad = local_endpoint("/m/a.yaml", "not: [a pod");
        assert!(matches!(bad, Err(DiffError::Unreadable { .. })), "{bad:?}");
    }

    #[test]
    fn unified_diff_is_kubeadms_shape() {
        let old = "a\nb\nc\nd\ne\n";
        let new = "a\nb\nC\nd\ne\n";
        assert_eq!(
            unified("/etc/kubernetes/manifests/x.yaml", old, new, 1),
            "--- /etc/kubernetes/manifests/x.yaml\n+++ new manifest\n@@ -2,3 +2,3 @@\n b\n-c\n+C\n d\n"
        );
        assert_eq!(unified("/x", old, old, 3), "");
    }

    #[test]
    fn the_new_control_plane_names_the_target_version() {
        let cfg = components::config::resolve_init(
            &components::config::InitFlags {
                kubernetes_version: Some("v1.20.2".into()),
                node_name: Some("node1".into()),
                apiserver_advertise_address: Some("10.0.0.1".into()),
                ..Default::default()
            },
            &components::config::HostFacts::default(),
        );
        let Ok(cfg) = cfg else {
            panic!("a default config resolves: {cfg:?}");
        };
        let layout = Layout::under("/");
        let host = manifests::HostPaths::detect(&layout, |_| false);
        let target: Version = "v1.20.3-test.0".parse().expect("version");
        let old = control_plane_manifests(&cfg, &layout, &host);
        let new_cfg = target_config(&cfg.cluster, cfg.local_api_endpoint, &target);
        let new = control_plane_manifests(&new_cfg, &layout, &host);
        for ((name, o), (_, n)) in old.iter().zip(&new) {
            let d = unified(name, o, n, 0);
            assert!(
                d.contains(&format!("-    image: k8s.gcr.io/{name}:v1.20.2")),
                "{d}"
            );
            assert!(
                d.contains(&format!("+    image: k8s.gcr.io/{name}:v1.20.3-test.0")),
                "{d}"
            );
        }
    }

    #[test]
    fn etcd_moves_only_its_image() {
        let etcd = "\
apiVersion: v1
kind: Pod
metadata:
  name: etcd
  namespace: kube-system
spec:
  containers:
  - command:
    - etcd
    - --name=node1
    image: k8s.gcr.io/etcd:3.4.13-0
    name: etcd
";
        let cfg = target_config(
            &components::config::cluster_from_kubeadm_config(
                "apiVersion: kubeadm.k8s.io/v1beta2\nkind: ClusterConfiguration\nkubernetesVersion: v1.20.2\n",
            )
            .expect("cluster config"),
            ApiEndpoint {
                advertise_address: [10, 0, 0, 1].into(),
                bind_port: 6443,
            },
            &"v1.20.3-test.0".parse().expect("version"),
        );
        let old = manifests::yaml::to_yaml(&parse("/e", etcd).expect("pod"));
        let new = etcd_manifest(&cfg, "/e", etcd, "3.5.16-0").expect("etcd");
        let d = unified("/e", &old, &new, 0);
        let changed: Vec<&str> = d
            .lines()
            .skip(2)
            .filter(|l| l.starts_with('-') || l.starts_with('+'))
            .collect();
        assert_eq!(
            changed,
            vec![
                "-    image: k8s.gcr.io/etcd:3.4.13-0",
                "+    image: k8s.gcr.io/etcd:3.5.16-0"
            ],
            "{d}"
        );
        assert!(d.starts_with("--- /e\n+++ new manifest\n@@ "), "{d}");
    }
}
