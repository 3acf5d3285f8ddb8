//! `join phase kubelet-start` (kubeadm: app/cmd/phases/join/kubelet.go): the cluster's CA on
//! disk, the kubelet's configuration from the cluster's `kubelet-config-<minor>` ConfigMap,
//! its flags file, the TLS bootstrap, then the kubelet (and containerd where no CRI runtime
//! runs) as static pods of the agent, and the wait for the Node to register.
//!
//! kubeadm writes `bootstrap-kubelet.conf` and lets the kubelet do the TLS bootstrap once it
//! runs. kubeboot does the same requests itself before the kubelet starts (a key made on this
//! node, a CertificateSigningRequest for `system:node:<name>` sent with the bootstrap token,
//! auto-approved by the RBAC init created, signed by kube-controller-manager) and writes
//! `kubelet.conf` pointing at `/var/lib/kubelet/pki/kubelet-client-current.pem`, a symlink to
//! a time-stamped file, as the kubelet's certificate store keeps them and later rotates them
//! (`rotateCertificates: true`). The
//! kubelet then starts with valid credentials, and `kubelet.conf` names the API server the
//! way this node reaches it.

use std::time::Duration;

use anyhow::Context;
use components::config::InitConfig;
use components::names;
use components::pod_cidr::{self, Allocation};
use k8s_openapi::api::core::v1::Node;

use crate::join::data::JoinData;
use crate::runner::Phase;
use crate::say;

/// How long the kubelet's client certificate may take to be approved and signed (kubeadm:
/// the kubelet's TLS bootstrap timeout, kubeadmconstants.TLSBootstrapTimeout).
const TLS_BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(240);
/// How long the Node may take to register once the kubelet runs (kubeadm's wait is part of
/// the same 4-minute TLS bootstrap budget).
const NODE_REGISTRATION_TIMEOUT: Duration = Duration::from_secs(240);
/// How long `join` waits for the Node's podCIDR where the kubeboot agents give them: they give
/// it once the kubelet made its CSINode, at most 5 s after they saw the Node
/// (`agent::node_ipam`), so this is long only when no agent gives any.
const POD_CIDR_WAIT: Duration = Duration::from_secs(30);
/// How often the Node is read meanwhile.
const POD_CIDR_POLL: Duration = Duration::from_millis(250);
/// The signer of kubelet client certificates (certificates.k8s.io).
pub const KUBELET_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";

/// The `kubelet-start` phase.
pub fn phase() -> Phase<JoinData> {
    Phase::new(
        "kubelet-start",
        "Write kubelet settings, certificates and (re)start the kubelet",
        run,
    )
    .flags(&[
        "config",
        "cri-socket",
        "node-name",
        "discovery-file",
        "discovery-token",
        "discovery-token-ca-cert-hash",
        "discovery-token-unsafe-skip-ca-verification",
        "tls-bootstrap-token",
        "token",
        "bin-dir",
        "pod-network",
        "static-pod-runner",
        "dry-run",
    ])
}

fn run(d: &mut JoinData) -> anyhow::Result<()> {
    let cfg = d.init_cfg()?.clone();
    let found = d.discovered()?.clone();
    let node = d.node.clone();
    let layout = &node.layout;
    let kubelet_dir = layout.kubelet_dir();
    let env_file = kubelet_dir.join(names::KUBELET_ENV_FILE);
    let config_file = kubelet_dir.join(names::KUBELET_CONFIG_FILE);
    let kubelet_conf = layout.kubeconfig(names::KUBELET_KUBECONFIG);

    // Observe: the CRI runtime, the cluster's kubelet configuration.
    let cri = crate::init::kubelet_start::detect_cri(&node, &cfg)?;
    let (endpoint, _) = manifests::kubelet::cri_endpoint(cri.socket());
    let hostname = crate::host::hostname();
    let cm_name = manifests::cluster::kubelet_config::kubelet_config_map_name(
        &cfg.cluster.kubernetes_version,
    );
    let kubelet_cm = d
        .bootstrap_api()?
        .get::<k8s_openapi::api::core::v1::ConfigMap>(Some(names::KUBE_SYSTEM), &cm_name)?
        .with_context(|| {
            format!(
                "the cluster has no kube-system/{cm_name} ConfigMap, which holds the kubelet configuration of version {}; the cluster's version and this node's kubelet must match a kubelet-config ConfigMap that init uploaded",
                cfg.cluster.kubernetes_version
            )
        })?;
    let cluster_kubelet = kubelet_cm
        .data
        .as_ref()
        .and_then(|m| m.get("kubelet"))
        .with_context(|| format!("kube-system/{cm_name} has no \"kubelet\" key"))?;
    let kubelet_yaml = manifests::kubelet::node_kubelet_configuration_from_cluster(
        cluster_kubelet,
        node.static_pod_runner,
    )
    .with_context(|| format!("the kubelet configuration in kube-system/{cm_name} is not usable"))?;

    let ca_path = layout.node_path(&d.cfg.ca_cert_path);
    let existing_ca = node.fs.read_string_if_exists(&ca_path)?;
    anyhow::ensure!(
        existing_ca
            .as_deref()
            .is_none_or(|ca| ca.trim() == found.ca_pem.trim()),
        "{:?} holds another CA than the cluster's: this node belongs to another cluster; run \"kubeboot reset -f\" first",
        ca_path.display().to_string()
    );

    // Act: the CA (kept when it is the cluster's already: a control-plane node downloaded
    // it), the kubelet's files.
    if existing_ca.is_none() {
        if let Some(dir) = ca_path.parent() {
            crate::node_record::create_dir(&node.fs, layout, dir, 0o755)?;
        }
        crate::node_record::note_file(&node.fs, layout, &ca_path)?;
        node.fs
            .write_public(&ca_path, found.ca_pem.as_bytes())
            .context("could not write the cluster's CA certificate")?;
    }

    let record = crate::node_record::NodeRecord {
        kubelet_dirs: [crate::node_record::node_view(layout, &kubelet_dir)?].into(),
        ..Default::default()
    };
    crate::node_record::update(&node.fs, layout, record)?;
    crate::node_record::create_dir(&node.fs, layout, &kubelet_dir, 0o700)?;
    say!(
        node.out,
        "kubelet-start",
        "Writing kubelet configuration to file {:?}",
        config_file.display().to_string()
    );
    node.fs
        .write_public(&config_file, kubelet_yaml.as_bytes())
        .context("could not write the kubelet configuration")?;
    let flags = manifests::kubelet::kubeadm_flags(
        &cfg,
        &endpoint,
        &manifests::kubelet::pause_image(&cfg),
        &hostname,
    );
    say!(
        node.out,
        "kubelet-start",
        "Writing kubelet environment file with flags to file {:?}",
        env_file.display().to_string()
    );
    node.fs
        .write_public(
            &env_file,
            manifests::kubelet::kubeadm_flags_env(&flags).as_bytes(),
        )
        .context("could not write the kubelet environment file")?;

    tls_bootstrap(d, &cfg, &kubelet_conf)?;

    if let crate::init::kubelet_start::CriRuntime::StartContainerd { socket, version } = &cri {
        crate::init::kubelet_start::write_containerd(&node, &cfg, socket, version)?;
    }
    let pod = crate::init::kubelet_start::kubelet_pod(&cfg, layout, cri.socket(), &hostname);
    let dir = node.agent_manifests_dir();
    crate::init::control_plane::write_manifest_in(&node, &dir, names::KUBELET, &pod)?;
    say!(node.out, "kubelet-start", "Starting the kubelet");
    if d.is_control_plane() {
        // The agent serves the admission webhook this node's API server calls.
        let mut view = crate::join::control_plane::init_view(d, true)?;
        crate::shared::certs::agent_webhook_cert(&mut view)?;
    }
    crate::init::agent_start::start_agent(&node, &cfg.node.name, "kubelet-start")?;
    let dns_image = crate::init::kubelet_start::load_images(&node, &cfg, &cri, &[])?;

    if node.dry_run {
        return Ok(());
    }
    say!(
        node.out,
        "kubelet-start",
        "Waiting for the kubelet to register the Node {:?}...",
        cfg.node.name
    );
    let out = node.out.clone();
    let name = cfg.node.name.clone();
    let api = d.cluster()?;
    api.wait_for_node(&name, NODE_REGISTRATION_TIMEOUT, |elapsed| {
        say!(
            out,
            "kubelet-start",
            "Still waiting for the Node {name:?} to register ({} elapsed)",
            crate::health::human(elapsed)
        );
    })?;
    // kubeadm: patchnode.AnnotateCRISocket; and kubeboot's DNS may run here once this
    // node's containerd holds its image (the node's own credential may set this label).
    let mut patch = serde_json::json!({"metadata": {"annotations": {
        names::ANNOTATION_CRI_SOCKET: cri.socket()
    }}});
    if dns_image {
        patch["metadata"]["labels"] = serde_json::json!({
            names::LABEL_DNS_IMAGE:
                manifests::addons::cluster_dns::image_label_value(env!("CARGO_PKG_VERSION"))
        });
    }
    api.patch_node(&name, &patch)?;
    let command = manifests::control_plane::controller_manager_command(
        &cfg,
        layout,
        &manifests::HostPaths::default(),
    );
    if matches!(Allocation::of(&command), Allocation::Kubeboot(_)) {
        wait_for_pod_cidr(api, &node.out, &name, POD_CIDR_WAIT)?;
    }
    Ok(())
}

/// Where the kubeboot agents give podCIDRs (the cluster's controller-manager runs without its
/// node IPAM controller), waits for this Node's, and says plainly when none came: without it
/// no pod of this node gets a network, and only a control-plane node's kubeboot agent gives it.
/// A warning, not a failure: the node has joined, and gets its podCIDR as soon as such an
/// agent runs.
fn wait_for_pod_cidr(
    api: &crate::cluster::Cluster,
    out: &crate::out::Out,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    say!(
        out,
        "kubelet-start",
        "Waiting for a control-plane node's kubeboot agent to give the Node {name:?} its podCIDR (at most {})",
        crate::health::human(timeout)
    );
    let start = std::time::Instant::now();
    loop {
        let last_error = match api.get::<Node>(None, name) {
            Ok(node) => {
                let cidrs = node
                    .map(|n| agent::node_network::pod_cidrs(&n))
                    .filter(|c| !c.is_empty());
                if let Some(cidrs) = cidrs {
                    say!(
                        out,
                        "kubelet-start",
                        "The Node {name:?} got the podCIDR {} after {}",
                        cidrs.join(","),
                        crate::health::human(start.elapsed())
                    );
                    return Ok(());
                }
                None
            }
            // A passing API error does not undo the join: looked at again until the end.
            Err(e) => Some(format!("{e:#}")),
        };
        if start.elapsed() >= timeout {
            let last = last_error
                .map(|e| format!(" (the last read of the Node failed: {e})"))
                .unwrap_or_default();
            say!(
                out,
                "kubelet-start",
                "[WARNING] the Node {name:?} has no podCIDR after {}{last}, so its pods get no network: this cluster's controller-manager runs without its node IPAM controller (\"-{}\" in controllerManager.extraArgs.controllers of the ClusterConfiguration) and the kubeboot agents of the control-plane nodes give podCIDRs instead; check that a kubeboot control-plane node runs its agent (\"kubeboot agent status\"; its log says why), or give the controller-manager its node IPAM back (remove \"-{}\" from that list in the kubeadm-config ConfigMap, \"kubeboot upgrade apply\" on each control-plane node, then restart every controller-manager)",
                crate::health::human(timeout),
                pod_cidr::NODE_IPAM_CONTROLLER,
                pod_cidr::NODE_IPAM_CONTROLLER
            );
            return Ok(());
        }
        std::thread::sleep(POD_CIDR_POLL);
    }
}

/// The node's client certificate for `system:node:<name>` and `kubelet.conf` (kept when it
/// exists with this cluster's CA: a re-run).
fn tls_bootstrap(
    d: &mut JoinData,
    cfg: &InitConfig,
    kubelet_conf: &std::path::Path,
) -> anyhow::Result<()> {
    let found = d.discovered()?.clone();
    let node = d.node.clone();
    let ca_path = node.layout.node_path(&d.cfg.ca_cert_path);
    crate::join::write_api_lb(&node, &found, &ca_path)?;
    if let Some(existing) = node.fs.read_string_if_exists(kubelet_conf)? {
        match pki::kubeconfig::Kubeconfig::from_yaml(&existing) {
            Ok(kc)
                if kc.current_cluster().is_some_and(|c| {
                    c.cluster.certificate_authority_data.as_deref() == Some(&b64(&found.ca_pem))
                }) =>
            {
                say!(
                    node.out,
                    "kubelet-start",
                    "Using the existing kubeconfig {:?} of this node",
                    kubelet_conf.display().to_string()
                );
                return Ok(());
            }
            _ => anyhow::bail!(
                "{:?} exists and is not this cluster's: this node belongs to another cluster; run \"kubeboot reset -f\" first",
                kubelet_conf.display().to_string()
            ),
        }
    }
    let user = format!("system:node:{}", cfg.node.name);
    let pem_path = node
        .layout
        .kubelet_dir()
        .join(crate::shared::kubelet_store::KUBELET_CLIENT_CURRENT);
    if node.dry_run {
        say!(
            node.out,
            "dryrun",
            "Would request a client certificate for {user:?} and write {:?} and {:?}",
            pem_path.display().to_string(),
            kubelet_conf.display().to_string()
        );
        return Ok(());
    }
    say!(
        node.out,
        "kubelet-start",
        "Requesting a client certificate for {user:?} (TLS bootstrap)"
    );
    let key = pki::PrivateKey::generate(components::config::KeyAlgorithm::EcdsaP256)?;
    let csr = pki::csr::client_csr(&key, &user, &["system:nodes"])?;
    // kubelet: "node-csr-" + a digest of the request's content; one name per key.
    let csr_name = format!("node-csr-{}", short_digest(&csr));
    let out = node.out.clone();
    let cert = d.bootstrap_api()?.request_certificate(
        &csr_name,
        KUBELET_CLIENT_SIGNER,
        &csr,
        TLS_BOOTSTRAP_TIMEOUT,
        |elapsed| {
            say!(
                out,
                "kubelet-start",
                "Waiting for the certificate request {csr_name:?} to be approved and signed ({} elapsed)",
                crate::health::human(elapsed)
            );
        },
    )?;
    crate::shared::kubelet_store::write_client_store(&node, &cert, key.to_pem())?;
    let kubeconfig = crate::join::through_balancer(pki::kubeconfig::cert_file_kubeconfig(
        "default-cluster",
        &found.endpoint_url,
        &found.ca_pem,
        "default-auth",
        &pem_path_in_node(&node, &pem_path),
    ));
    crate::node_record::note_file(&node.fs, &node.layout, kubelet_conf)?;
    node.fs
        .write_private(kubelet_conf, kubeconfig.to_yaml().as_bytes())
        .context("could not write the kubelet's kubeconfig")?;
    say!(
        node.out,
        "kubelet-start",
        "The certificate request was approved; wrote {:?}",
        kubelet_conf.display().to_string()
    );
    Ok(())
}

/// A path as the node sees it (the layout may be rooted elsewhere in tests).
fn pem_path_in_node(node: &crate::shared::node::NodeCtx, path: &std::path::Path) -> String {
    crate::node_record::node_view(&node.layout, path)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| path.display().to_string())
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Eight bytes of the SHA-256 of `text`, hex: a stable, short name suffix.
pub fn short_digest(text: &str) -> String {
    pki::pin::sha256_hex(text.as_bytes())[..16].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_says_where_its_pod_cidr_came_from_or_warns_that_none_came() {
        let node = |spec: serde_json::Value| {
            serde_json::json!({"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": "w1"}, "spec": spec})
        };
        let out = crate::out::Out::capture();
        let api = crate::cluster::Cluster::recording(out.clone()).with_objects([node(
            serde_json::json!({"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]}),
        )]);
        wait_for_pod_cidr(&api, &out, "w1", Duration::from_secs(5)).expect("wait");
        assert!(
            out.captured()
                .contains("[kubelet-start] The Node \"w1\" got the podCIDR 10.244.1.0/24 after "),
            "{}",
            out.captured()
        );

        let out = crate::out::Out::capture();
        let api = crate::cluster::Cluster::recording(out.clone())
            .with_objects([node(serde_json::json!({}))]);
        wait_for_pod_cidr(&api, &out, "w1", Duration::ZERO).expect("a warning, not a failure");
        let said = out.captured();
        assert!(
            said.contains("[WARNING] the Node \"w1\" has no podCIDR")
                && said.contains("kubeboot agent status")
                && said.contains("\"-nodeipam\""),
            "{said}"
        );
    }
}
