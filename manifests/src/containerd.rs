//! containerd as a static pod of kubeboot's agent, for nodes where containerd is installed
//! but not running, and the configuration kubeboot gives it (no kubeadm equivalent: kubeadm
//! expects a running CRI runtime).
//!
//! kubeboot never edits the user's `/etc/containerd/config.toml`: the containerd it runs
//! reads kubeboot's own file (`--config`), which sets what a Kubernetes node needs: the CRI
//! plugin's sandbox image, CNI directories, and `restrict_oom_score_adj` (root without
//! CAP_SYS_RESOURCE cannot lower an OOM score, and runc would fail every critical pod).

use std::collections::BTreeMap;
use std::path::Path;

use components::image::{CONTAINERD, containerd_image};
use components::{Layout, Version, names};
use k8s_openapi::api::core::v1::{Container, Pod, SecurityContext};

use crate::paths::text;
use crate::staticpod::component_pod;

/// What containerd's configuration depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerdSettings {
    /// The socket containerd serves (`/run/containerd/containerd.sock`).
    pub socket: String,
    /// The pod sandbox image (`k8s.gcr.io/pause:3.2`).
    pub sandbox_image: String,
    /// Where the CNI plugin binaries are (`/usr/lib/cni`).
    pub cni_bin_dir: String,
    /// The CNI configuration directory (`/etc/cni/net.d`).
    pub cni_conf_dir: String,
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// kubeboot's containerd configuration (version 2 schema, containerd 1.5 to 1.7).
pub fn containerd_config_toml(s: &ContainerdSettings) -> String {
    let cri = "plugins.\"io.containerd.grpc.v1.cri\"";
    format!(
        "# Written by kubeboot for the containerd it runs as a static pod; edits are lost on\n\
         # the next init. Your own /etc/containerd/config.toml is not read by this containerd.\n\
         version = 2\n\
         root = \"/var/lib/containerd\"\n\
         state = \"/run/containerd\"\n\
         \n\
         [grpc]\n\
         \x20 address = {socket}\n\
         \n\
         [{cri}]\n\
         \x20 sandbox_image = {sandbox}\n\
         \x20 # Root without CAP_SYS_RESOURCE cannot set a negative oom_score_adj.\n\
         \x20 restrict_oom_score_adj = true\n\
         \n\
         [{cri}.cni]\n\
         \x20 bin_dir = {bin}\n\
         \x20 conf_dir = {conf}\n\
         \n\
         [{cri}.containerd]\n\
         \x20 default_runtime_name = \"runc\"\n\
         \n\
         [{cri}.containerd.runtimes.runc]\n\
         \x20 runtime_type = \"io.containerd.runc.v2\"\n\
         \n\
         [plugins.\"io.containerd.internal.v1.opt\"]\n\
         \x20 path = \"/var/lib/containerd/opt\"\n",
        socket = toml_string(&s.socket),
        sandbox = toml_string(&s.sandbox_image),
        bin = toml_string(&s.cni_bin_dir),
        conf = toml_string(&s.cni_conf_dir),
    )
}

/// Where kubeboot keeps containerd's configuration: its own state directory, never
/// `/etc/containerd`.
pub fn containerd_config_path(layout: &Layout) -> std::path::PathBuf {
    layout.state_dir().join("containerd").join("config.toml")
}

/// containerd as a static pod: host network, privileged, `system-node-critical`, the image
/// of the installed `version` ([`containerd_image`]), reading `config`.
pub fn containerd_pod(version: &Version, config: &Path) -> Pod {
    let container = Container {
        name: CONTAINERD.to_string(),
        image: Some(containerd_image(version)),
        image_pull_policy: Some("IfNotPresent".to_string()),
        command: Some(vec![
            CONTAINERD.to_string(),
            format!("--config={}", text(config)),
        ]),
        security_context: Some(SecurityContext {
            privileged: Some(true),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };
    crate::kubelet::node_pod(component_pod(container, vec![], BTreeMap::new()))
}

/// The name of containerd's manifest in the manifest directory.
pub const CONTAINERD_MANIFEST: &str = CONTAINERD;

/// The CNI bin directory containerd is told about: the first of [`names::CNI_BIN_DIRS`] that
/// `exists` says is there, else the first.
pub fn cni_bin_dir(exists: impl Fn(&str) -> bool) -> &'static str {
    names::CNI_BIN_DIRS
        .iter()
        .copied()
        .find(|d| exists(d))
        .unwrap_or(names::CNI_BIN_DIRS[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_restricts_oom_score_and_names_cni_dirs() {
        let toml = containerd_config_toml(&ContainerdSettings {
            socket: "/run/containerd/containerd.sock".into(),
            sandbox_image: "k8s.gcr.io/pause:3.2".into(),
            cni_bin_dir: "/usr/lib/cni".into(),
            cni_conf_dir: "/etc/cni/net.d".into(),
        });
        assert!(toml.contains("restrict_oom_score_adj = true"), "{toml}");
        assert!(toml.contains("sandbox_image = \"k8s.gcr.io/pause:3.2\""));
        assert!(toml.contains("bin_dir = \"/usr/lib/cni\""));
        assert!(toml.contains("conf_dir = \"/etc/cni/net.d\""));
        assert!(toml.contains("address = \"/run/containerd/containerd.sock\""));
    }

    #[test]
    fn pod_runs_the_installed_containerd() {
        let pod = containerd_pod(
            &components::version::v(1, 6, 20),
            Path::new("/var/lib/kubeboot/containerd/config.toml"),
        );
        let c = &pod.spec.as_ref().unwrap().containers[0];
        assert_eq!(c.image.as_deref(), Some("kubeboot.local/containerd:1.6.20"));
        assert_eq!(
            c.command.as_ref().unwrap()[1],
            "--config=/var/lib/kubeboot/containerd/config.toml"
        );
        assert_eq!(pod.spec.as_ref().unwrap().host_network, Some(true));
    }

    #[test]
    fn cni_bin_dir_prefers_an_existing_one() {
        assert_eq!(cni_bin_dir(|d| d == "/opt/cni/bin"), "/opt/cni/bin");
        assert_eq!(cni_bin_dir(|_| false), "/usr/lib/cni");
    }
}
