//! `init phase kubelet-start` (kubeadm: app/cmd/phases/init/kubelet.go): writes the kubelet's
//! environment file and configuration, and (kubeboot's agent mode) the kubelet's static pod,
//! plus containerd's when containerd is installed but no CRI socket is up yet. The agent
//! started by `agent-start` runs them.

use std::path::{Path, PathBuf};

use anyhow::Context;
use components::names;

use crate::init::data::InitData;
use crate::runner::Phase;
use crate::say;

/// The `kubelet-start` phase.
pub fn phase() -> Phase<InitData> {
    Phase::new(
        "kubelet-start",
        "Write kubelet settings and (re)start the kubelet",
        run,
    )
    .flags(&["config", "cri-socket", "node-name", "bin-dir", "dry-run"])
}

/// Where the kubelet's CRI runtime comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CriRuntime {
    /// A runtime already serves the socket.
    Running {
        /// The socket path, as the node sees it.
        socket: String,
    },
    /// containerd is installed (in the `--bin-dir`s): kubeboot runs it as a static pod.
    StartContainerd {
        /// The socket path containerd will serve.
        socket: String,
        /// The installed containerd's version.
        version: components::Version,
    },
}

impl CriRuntime {
    /// The socket path.
    pub fn socket(&self) -> &str {
        match self {
            CriRuntime::Running { socket } | CriRuntime::StartContainerd { socket, .. } => socket,
        }
    }
}

/// The CRI socket path this node uses: `--cri-socket` / `nodeRegistration.criSocket`, else
/// containerd's.
pub fn cri_socket_path(d: &InitData) -> String {
    let given = d
        .cfg
        .node
        .cri_socket
        .clone()
        .unwrap_or_else(|| names::CONTAINERD_SOCKET.to_string());
    manifests::kubelet::cri_endpoint(&given).1
}

/// Observes the node: a live CRI socket, else an installed containerd.
///
/// # Errors
/// Neither: names the socket, the directories searched, and the fixes.
pub fn detect_cri(d: &InitData) -> anyhow::Result<CriRuntime> {
    let socket = cri_socket_path(d);
    let node_socket = d.layout.node_path(&socket);
    if is_socket(&node_socket) {
        return Ok(CriRuntime::Running { socket });
    }
    let default_socket = socket == names::CONTAINERD_SOCKET;
    match crate::host::binary_version(components::image::CONTAINERD, &d.bin_dirs) {
        Some(version) if default_socket => Ok(CriRuntime::StartContainerd { socket, version }),
        found => {
            let searched: Vec<String> =
                d.bin_dirs.iter().map(|p| p.display().to_string()).collect();
            anyhow::bail!(
                "container runtime is not running: the CRI socket {socket:?} does not exist{}; start your CRI runtime, {}, or pass --cri-socket <socket of a running CRI runtime>",
                if found.is_some() {
                    " (kubeboot starts containerd itself only for its default socket)".to_string()
                } else {
                    format!(
                        " and containerd is not installed (looked in {})",
                        searched.join(", ")
                    )
                },
                "install containerd (Debian: containerd) so that kubeboot runs it"
            )
        }
    }
}

fn is_socket(p: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket())
}

fn run(d: &mut InitData) -> anyhow::Result<()> {
    let kubelet_dir = d.layout.kubelet_dir();
    let env_file = kubelet_dir.join(names::KUBELET_ENV_FILE);
    let config_file = kubelet_dir.join(names::KUBELET_CONFIG_FILE);
    let cri = detect_cri(d)?;
    let (endpoint, _) = manifests::kubelet::cri_endpoint(cri.socket());
    let hostname = crate::host::hostname();

    say!(
        d.out,
        "kubelet-start",
        "Writing kubelet environment file with flags to file {:?}",
        env_file.display().to_string()
    );
    let flags = manifests::kubelet::kubeadm_flags(
        &d.cfg,
        &endpoint,
        &manifests::kubelet::pause_image(&d.cfg),
        &hostname,
    );
    d.fs.create_dir(&kubelet_dir, 0o700)?;
    d.fs.write_public(
        &env_file,
        manifests::kubelet::kubeadm_flags_env(&flags).as_bytes(),
    )
    .context("could not write the kubelet environment file")?;

    say!(
        d.out,
        "kubelet-start",
        "Writing kubelet configuration to file {:?}",
        config_file.display().to_string()
    );
    d.fs.write_public(
        &config_file,
        manifests::kubelet::kubelet_configuration_yaml(&d.cfg).as_bytes(),
    )
    .context("could not write the kubelet configuration")?;

    if let CriRuntime::StartContainerd { socket, version } = &cri {
        write_containerd(d, socket, version)?;
    }
    let pod = manifests::kubelet::kubelet_pod(&d.cfg, &d.layout, cri.socket(), &hostname);
    crate::init::control_plane::write_manifest(d, names::KUBELET, &pod)?;
    say!(d.out, "kubelet-start", "Starting the kubelet");
    say!(
        d.out,
        "kubelet-start",
        "The kubeboot agent runs the kubelet as a static Pod ({:?}), with CRI endpoint {endpoint}",
        d.layout.manifest(names::KUBELET).display().to_string()
    );
    Ok(())
}

fn write_containerd(
    d: &mut InitData,
    socket: &str,
    version: &components::Version,
) -> anyhow::Result<()> {
    let config = manifests::containerd::containerd_config_path(&d.layout);
    let user_config = d.layout.node_path(names::CONTAINERD_CONFIG);
    let cni_bin = manifests::containerd::cni_bin_dir(|p| d.layout.node_path(p).is_dir());
    let toml =
        manifests::containerd::containerd_config_toml(&manifests::containerd::ContainerdSettings {
            socket: socket.to_string(),
            sandbox_image: manifests::kubelet::pause_image(&d.cfg),
            cni_bin_dir: cni_bin.to_string(),
            cni_conf_dir: names::CNI_CONF_DIR.to_string(),
        });
    say!(
        d.out,
        "kubelet-start",
        "No CRI runtime serves {socket:?}: running the installed containerd {version} as a static Pod, with its configuration in {:?}",
        config.display().to_string()
    );
    if user_config.exists() {
        say!(
            d.out,
            "kubelet-start",
            "Leaving {:?} untouched: the containerd kubeboot runs reads only its own configuration",
            names::CONTAINERD_CONFIG
        );
    }
    let dir: PathBuf = config
        .parent()
        .map(Path::to_path_buf)
        .context("containerd's configuration path has a directory")?;
    d.fs.create_dir(&dir, 0o755)?;
    d.fs.write_public(&config, toml.as_bytes())
        .context("could not write containerd's configuration")?;
    let pod = manifests::containerd::containerd_pod(version, &config);
    crate::init::control_plane::write_manifest(d, components::image::CONTAINERD, &pod)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::data::tests::test_data;

    #[test]
    fn no_socket_and_no_containerd_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let d = test_data(dir.path());
        let err = format!("{:#}", detect_cri(&d).unwrap_err());
        assert!(
            err.contains("the CRI socket \"/run/containerd/containerd.sock\" does not exist")
                && err.contains("containerd is not installed"),
            "{err}"
        );
    }

    #[test]
    fn a_live_socket_is_used_as_is() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = test_data(dir.path());
        d.cfg.node.cri_socket = Some("unix:///run/crio/crio.sock".into());
        let path = d.layout.node_path("/run/crio/crio.sock");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert_eq!(
            detect_cri(&d).unwrap(),
            CriRuntime::Running {
                socket: "/run/crio/crio.sock".into()
            }
        );
    }
}
