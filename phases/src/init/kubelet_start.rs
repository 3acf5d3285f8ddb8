//! `init phase kubelet-start` (kubeadm: app/cmd/phases/init/kubelet.go): writes the kubelet's
//! environment file and configuration, the kubelet's static pod, plus containerd's when
//! containerd is installed but no CRI socket is up yet, and starts the agent that runs them
//! (to the manifest directory under `--static-pod-runner agent`, to
//! `/etc/kubeboot/manifests` under `--static-pod-runner kubelet`, where the kubelet runs the
//! manifest directory itself). Then the image archives of `/var/lib/kubeboot/images` go into
//! containerd, and under the kubelet runner every control-plane image must be there before
//! the control plane's manifests are written.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use components::{StaticPodRunner, names};

use components::config::InitConfig;

use crate::init::data::InitData;
use crate::runner::Phase;
use crate::say;
use crate::shared::node::NodeCtx;

/// The `kubelet-start` phase.
pub fn phase() -> Phase<InitData> {
    Phase::new(
        "kubelet-start",
        "Write kubelet settings and (re)start the kubelet",
        run,
    )
    .flags(&[
        "config",
        "cri-socket",
        "node-name",
        "bin-dir",
        "pod-network",
        "static-pod-runner",
        "dry-run",
    ])
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
pub fn cri_socket_path(cfg: &InitConfig) -> String {
    let given = cfg
        .node
        .cri_socket
        .clone()
        .unwrap_or_else(|| names::CONTAINERD_SOCKET.to_string());
    manifests::kubelet::cri_endpoint(&given).1
}

/// The kubelet's static pod for this host: [`manifests::kubelet::kubelet_pod`], with the EC2
/// metadata lookups off where the host is not on EC2 (they hold the kubelet's start 5 s).
pub fn kubelet_pod(
    cfg: &InitConfig,
    layout: &components::Layout,
    cri_socket: &str,
    hostname: &str,
) -> k8s_openapi::api::core::v1::Pod {
    let mut pod = manifests::kubelet::kubelet_pod(cfg, layout, cri_socket, hostname);
    if !crate::host::looks_like_ec2() {
        manifests::kubelet::without_ec2_metadata(&mut pod);
    }
    pod
}

/// Observes the node: a live CRI socket, else an installed containerd.
///
/// # Errors
/// Neither: names the socket, the directories searched, and the fixes.
pub fn detect_cri(d: &NodeCtx, cfg: &InitConfig) -> anyhow::Result<CriRuntime> {
    let socket = cri_socket_path(cfg);
    let node_socket = d.layout.node_path(&socket);
    if is_socket(&node_socket) {
        return Ok(CriRuntime::Running { socket });
    }
    let default_socket = socket == names::CONTAINERD_SOCKET;
    match crate::host::binary_version(components::image::CONTAINERD, &d.bin_dirs)? {
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
    let cri = detect_cri(d, &d.cfg)?;
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
    let record = crate::node_record::NodeRecord {
        kubelet_dirs: [crate::node_record::node_view(&d.layout, &kubelet_dir)?].into(),
        ..Default::default()
    };
    crate::node_record::update(&d.fs, &d.layout, record)?;
    crate::node_record::create_dir(&d.fs, &d.layout, &kubelet_dir, 0o700)?;
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
        manifests::kubelet::node_kubelet_configuration_yaml(&d.cfg, d.static_pod_runner).as_bytes(),
    )
    .context("could not write the kubelet configuration")?;

    if let CriRuntime::StartContainerd { socket, version } = &cri {
        write_containerd(d, &d.cfg, socket, version)?;
    }
    seed_client_store(d)?;
    let pod = kubelet_pod(&d.cfg, &d.layout, cri.socket(), &hostname);
    let dir = d.agent_manifests_dir();
    crate::init::control_plane::write_manifest_in(d, &dir, names::KUBELET, &pod)?;
    say!(d.out, "kubelet-start", "Starting the kubelet");
    say!(
        d.out,
        "kubelet-start",
        "The kubeboot agent runs the kubelet as a static Pod ({:?}), with CRI endpoint {endpoint}",
        dir.join(format!("{}.yaml", names::KUBELET))
            .display()
            .to_string()
    );
    if d.static_pod_runner == StaticPodRunner::Kubelet {
        say!(
            d.out,
            "kubelet-start",
            "The kubelet runs the control plane's static Pods from {:?} (--static-pod-runner kubelet)",
            d.layout.manifests_dir().display().to_string()
        );
    }
    crate::init::agent_start::ensure_running(d, "kubelet-start")?;
    let control_plane_images = match d.static_pod_runner {
        StaticPodRunner::Kubelet => crate::init::control_plane::pods(d)
            .iter()
            .flat_map(|(_, pod)| pod_images(pod))
            .collect(),
        StaticPodRunner::Agent => Vec::new(),
    };
    load_images(d, &d.cfg, &cri, &control_plane_images).map(drop)
}

/// Seeds the kubelet's client certificate store (`/var/lib/kubelet/pki`) with the certificate
/// and key `kubelet.conf` holds, when the store has no current certificate yet. That is the
/// state a kubeadm node reaches after kubelet-finalize, without its detour: the kubelet
/// (rotateCertificates: true) with an empty store puts that certificate there itself and at
/// once asks the API for another (client-go's certificate manager rotates a bootstrap
/// certificate right away). The controller-manager signs it some seconds after its start, and
/// the kubelet then drops every connection to the API server to use the new one
/// ("certificate rotation detected, shutting down client connections"): its watches and its
/// pods' status updates start over just while the first workloads start. With the store
/// seeded it rotates at 70-90 % of the certificate's lifetime, as it would from then on
/// anyway. A kubelet.conf without an embedded certificate and key is left alone.
///
/// # Errors
/// kubelet.conf cannot be read, or the store cannot be written.
fn seed_client_store(d: &InitData) -> anyhow::Result<()> {
    use base64::Engine as _;
    let current = d
        .layout
        .kubelet_dir()
        .join(crate::shared::kubelet_store::KUBELET_CLIENT_CURRENT);
    if std::fs::symlink_metadata(&current).is_ok() {
        return Ok(());
    }
    let conf = d.layout.kubeconfig(names::KUBELET_KUBECONFIG);
    let Some(yaml) = d.fs.read_string_if_exists(&conf)? else {
        return Ok(());
    };
    let Ok(kc) = pki::Kubeconfig::from_yaml(&yaml) else {
        return Ok(());
    };
    let key = kc
        .current_user()
        .and_then(|u| u.user.client_key_data.as_deref())
        .and_then(|k| {
            base64::engine::general_purpose::STANDARD
                .decode(k.trim())
                .ok()
        })
        .and_then(|k| String::from_utf8(k).ok());
    let (Ok(cert), Some(key)) = (kc.client_certificate_pem(), key) else {
        return Ok(());
    };
    let path = crate::shared::kubelet_store::write_client_store(d, &cert, &key)?;
    tracing::debug!(path = %path.display(), "seeded the kubelet's client certificate store");
    Ok(())
}

/// Imports the image archives of `/var/lib/kubeboot/images` into containerd, with the
/// kubeboot-dns image built from this kubeboot executable first when containerd lacks it,
/// and, under the kubelet runner, requires every image of `static_pod_images` (the control
/// plane's) and the pause image. Returns whether containerd holds the kubeboot-dns image
/// (the node gets [`names::LABEL_DNS_IMAGE`] then).
///
/// # Errors
/// An archive cannot be built or imported, or under the kubelet runner an image is missing.
pub fn load_images(
    d: &NodeCtx,
    cfg: &InitConfig,
    cri: &CriRuntime,
    static_pod_images: &[String],
) -> anyhow::Result<bool> {
    let archive_dir = d.layout.image_archives_dir();
    let dns_image = manifests::addons::cluster_dns::image(env!("CARGO_PKG_VERSION"));
    let dns_archive = archive_dir.join(crate::dns_image::ARCHIVE_NAME);
    let kubelet_runs = d.static_pod_runner == StaticPodRunner::Kubelet;
    if d.dry_run {
        let archives = crate::images::archives(&archive_dir)?;
        say!(
            d.out,
            "dryrun",
            "Would build the image {dns_image} from {:?} into {:?} unless containerd has it, and import {} image archive(s) from {:?} into containerd",
            d.exe.display().to_string(),
            dns_archive.display().to_string(),
            archives.len(),
            archive_dir.display().to_string()
        );
        return Ok(false);
    }
    let socket = cri.socket().to_string();
    let is_containerd =
        matches!(cri, CriRuntime::StartContainerd { .. }) || socket.contains("containerd");
    if !is_containerd {
        say!(
            d.out,
            "kubelet-start",
            "[WARNING] {socket:?} is not containerd: kubeboot neither imports {:?} nor checks the images; the runtime must have them (kubeboot's DNS runs on nodes whose containerd has {dns_image})",
            archive_dir.display().to_string()
        );
        return Ok(false);
    }
    let node_socket = d.layout.node_path(&socket).display().to_string();
    let ctr = crate::images::Ctr::find(&d.bin_dirs, &node_socket)?;
    let out = d.out.clone();
    ctr.wait_ready(Duration::from_secs(60), |elapsed| {
        say!(
            out,
            "kubelet-start",
            "Waiting for containerd to answer on {socket:?} ({} elapsed)",
            crate::health::human(elapsed)
        );
    })?;
    let mut present = ctr.images()?;
    let dns_wanted = [dns_image.clone()];
    let build_dns = !crate::images::missing(&dns_wanted, &present).is_empty();
    if build_dns {
        let archived = match d.fs.exists(&dns_archive) {
            true => crate::images::archive_images(&dns_archive).unwrap_or_default(),
            false => vec![],
        };
        if !archived.contains(&dns_image) {
            say!(
                d.out,
                "kubelet-start",
                "Building the image {dns_image} for kubeboot's DNS from {:?} into {:?}",
                d.exe.display().to_string(),
                dns_archive.display().to_string()
            );
            if !d.fs.exists(&archive_dir) {
                d.fs.create_dir(&archive_dir, 0o755)?;
            }
            crate::dns_image::write_archive(&d.fs, &d.exe, &dns_archive, &dns_image)
                .context("could not build the kubeboot-dns image")?;
        }
    }
    let archives = crate::images::archives(&archive_dir)?;
    for archive in &archives {
        let names = crate::images::archive_images(archive)?;
        if !names.is_empty() && crate::images::missing(&names, &present).is_empty() {
            tracing::info!(archive = %archive.display(), "images present already");
            continue;
        }
        say!(
            d.out,
            "kubelet-start",
            "Importing images from {:?}{}",
            archive.display().to_string(),
            if names.is_empty() {
                String::new()
            } else {
                format!(" ({})", names.join(", "))
            }
        );
        ctr.import(archive).with_context(|| {
            format!(
                "could not import the image archive {:?}; remove it or replace it with a docker-archive or OCI archive",
                archive.display().to_string()
            )
        })?;
        present = ctr.images()?;
    }
    // The kubeboot-dns archive is only the vehicle of the import: once containerd holds the
    // image it goes, so that the node keeps no 10-300 MB copy of the executable and reset
    // finds nothing of it (a re-run finds the image in containerd and builds nothing).
    if d.fs.exists(&dns_archive) && crate::images::missing(&dns_wanted, &present).is_empty() {
        d.fs.remove_file(&dns_archive)?;
    }
    if kubelet_runs {
        let mut wanted = static_pod_images.to_vec();
        wanted.push(manifests::kubelet::pause_image(cfg));
        let missing = crate::images::missing(&wanted, &present);
        anyhow::ensure!(
            missing.is_empty(),
            "the kubelet runs the control plane from images, and containerd lacks {}; there is no registry to pull from: put their archives (docker save / OCI, e.g. from scripts/build-images.sh --control-plane) into {:?} and run init again, or use --static-pod-runner agent, which runs the host binaries",
            missing
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            archive_dir.display().to_string()
        );
        say!(
            d.out,
            "kubelet-start",
            "The control plane's images are present in containerd: {}",
            wanted.join(", ")
        );
    }
    Ok(crate::images::missing(&dns_wanted, &present).is_empty())
}

/// The images of a pod's containers.
fn pod_images(pod: &k8s_openapi::api::core::v1::Pod) -> Vec<String> {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .filter_map(|c| c.image.clone())
        .collect()
}

/// Writes containerd's configuration and static pod, for a node where no CRI runtime runs.
///
/// # Errors
/// A file cannot be written.
pub fn write_containerd(
    d: &NodeCtx,
    cfg: &InitConfig,
    socket: &str,
    version: &components::Version,
) -> anyhow::Result<()> {
    let config = manifests::containerd::containerd_config_path(&d.layout);
    let user_config = d.layout.node_path(names::CONTAINERD_CONFIG);
    let cni_bin = manifests::containerd::cni_bin_dir(|p| d.layout.node_path(p).is_dir());
    let toml =
        manifests::containerd::containerd_config_toml(&manifests::containerd::ContainerdSettings {
            socket: socket.to_string(),
            sandbox_image: manifests::kubelet::pause_image(cfg),
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
    crate::node_record::create_dir(&d.fs, &d.layout, &dir, 0o755)?;
    crate::node_record::note_file(&d.fs, &d.layout, &config)?;
    d.fs.write_public(&config, toml.as_bytes())
        .context("could not write containerd's configuration")?;
    let pod = manifests::containerd::containerd_pod(version, &config);
    let dir = d.agent_manifests_dir();
    crate::init::control_plane::write_manifest_in(d, &dir, components::image::CONTAINERD, &pod)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::data::tests::test_data;

    #[test]
    fn the_kubelets_certificate_store_is_seeded_with_kubelet_conf_s_own_pair_once() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mut d = test_data(dir.path());
        // No kubelet.conf: nothing to seed from.
        seed_client_store(&d).unwrap();
        let current = d
            .layout
            .kubelet_dir()
            .join(crate::shared::kubelet_store::KUBELET_CLIENT_CURRENT);
        assert!(std::fs::symlink_metadata(&current).is_err());

        crate::init::run(&mut d, &["certs".into(), "kubeconfig".into()]).unwrap();
        seed_client_store(&d).unwrap();
        let target = std::fs::read_link(&current).expect("a symlink");
        assert!(
            target.to_string_lossy().starts_with("kubelet-client-") && target.is_relative(),
            "{target:?}"
        );
        let pem = std::fs::read_to_string(&current).unwrap();
        let mode = std::fs::metadata(&current).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "a private key");
        let yaml = std::fs::read_to_string(d.layout.kubeconfig(names::KUBELET_KUBECONFIG)).unwrap();
        let cert = pki::Kubeconfig::from_yaml(&yaml)
            .unwrap()
            .client_certificate_pem()
            .unwrap();
        assert!(pem.starts_with(cert.trim_end()), "{pem}");
        assert!(pem.contains("PRIVATE KEY-----"), "{pem}");
        let info = pki::cert_info(&pem).unwrap();
        assert_eq!(info.common_name, format!("system:node:{}", d.cfg.node.name));

        // A store that has a current certificate (the kubelet's own, rotated) is left alone.
        let before = std::fs::read_dir(current.parent().unwrap())
            .unwrap()
            .count();
        seed_client_store(&d).unwrap();
        assert_eq!(
            std::fs::read_dir(current.parent().unwrap())
                .unwrap()
                .count(),
            before
        );
        assert_eq!(std::fs::read_link(&current).unwrap(), target);
    }

    #[test]
    fn no_socket_and_no_containerd_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let d = test_data(dir.path());
        let err = format!("{:#}", detect_cri(&d, &d.cfg).unwrap_err());
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
            detect_cri(&d, &d.cfg).unwrap(),
            CriRuntime::Running {
                socket: "/run/crio/crio.sock".into()
            }
        );
    }
}
