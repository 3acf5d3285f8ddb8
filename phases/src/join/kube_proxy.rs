//! `join phase kube-proxy` (kubeboot's own; kubeadm nodes get kube-proxy from its DaemonSet):
//! under the agent runner, this node's kube-proxy as a static pod of the agent, with the
//! cluster's configuration (the `kube-proxy` ConfigMap) and a credential of its own.
//!
//! The credential: a key made on this node and a certificate for `system:kube-proxy` (bound
//! to `system:node-proxier` by Kubernetes' default ClusterRoleBinding, so it carries exactly
//! kube-proxy's rights), requested with this node's own kubelet identity as the
//! CertificateSigningRequest `kubeboot-kube-proxy-<node>-<digest>`. Nothing in Kubernetes
//! 1.20 approves such a request; the kubeboot agents of the control-plane nodes do, after
//! checking that a node asks, for itself, exactly this subject and nothing else
//! (`agent::csr_approval`). The key never leaves the node.
//!
//! Under the kubelet runner the node is a kubeadm node: kube-proxy comes from the DaemonSet.

use std::time::Duration;

use anyhow::Context;
use components::names;

use crate::join::data::JoinData;
use crate::runner::Phase;
use crate::say;

/// How long the control-plane agents may take to approve the request and
/// kube-controller-manager to sign it.
const APPROVAL_TIMEOUT: Duration = Duration::from_secs(120);

/// The `kube-proxy` phase.
pub fn phase() -> Phase<JoinData> {
    Phase::new(
        "kube-proxy",
        "Run kube-proxy on this node as a static Pod of the kubeboot agent",
        run,
    )
    .flags(&["config", "node-name", "static-pod-runner", "dry-run"])
}

fn run(d: &mut JoinData) -> anyhow::Result<()> {
    if d.static_pod_runner == components::StaticPodRunner::Kubelet {
        say!(
            d.out,
            "kube-proxy",
            "kube-proxy runs on this node as a Pod of the cluster's DaemonSet (the kubelet runs the static Pods here)"
        );
        return Ok(());
    }
    let cfg = d.init_cfg()?.clone();
    let found = d.discovered()?.clone();
    let node = d.node.clone();
    let layout = &node.layout;
    let kubeconfig_path = manifests::addons::kube_proxy::node_kubeconfig_path(layout);
    let config_path = manifests::addons::kube_proxy::node_config_path(layout);

    // Observe: the cluster's kube-proxy configuration (kubeadm's Role `kube-proxy` lets
    // bootstrap tokens read it).
    let cm = d
        .bootstrap_api()?
        .get::<k8s_openapi::api::core::v1::ConfigMap>(
            Some(names::KUBE_SYSTEM),
            names::KUBE_PROXY_CONFIGMAP,
        )?
        .context("the cluster has no kube-system/kube-proxy ConfigMap: its kube-proxy addon was not applied (init phase addon kube-proxy)")?;
    let conf = cm
        .data
        .as_ref()
        .and_then(|m| m.get(names::KUBE_PROXY_CONFIG_KEY))
        .context("kube-system/kube-proxy has no config.conf")?;
    let node_config = manifests::addons::kube_proxy::KubeProxyConfig::from_cluster_yaml(conf)
        .context("kube-system/kube-proxy's config.conf is not usable")?
        .for_node(layout)
        .to_yaml();
    let pod = manifests::addons::kube_proxy::kube_proxy_pod(&cfg, layout);
    let existing = node.fs.read_string_if_exists(&kubeconfig_path)?;

    // Act: files first, so the agent finds them when the manifest lands.
    crate::node_record::update(
        &node.fs,
        layout,
        crate::node_record::NodeRecord {
            kube_proxy: true,
            ..Default::default()
        },
    )?;
    crate::node_record::create_dir(&node.fs, layout, &layout.kube_proxy_dir(), 0o755)?;
    crate::node_record::note_file(&node.fs, layout, &config_path)?;
    node.fs.write_public(&config_path, node_config.as_bytes())?;
    if existing.is_none() {
        let server = found.endpoint_url.clone();
        let kubeconfig = if d.is_control_plane() {
            local_credential(d, &cfg, &server)?
        } else {
            requested_credential(d, &cfg.node.name, &server, &found.ca_pem)?
        }
        .map(crate::join::through_balancer);
        if let Some(kubeconfig) = kubeconfig {
            crate::node_record::note_file(&node.fs, layout, &kubeconfig_path)?;
            node.fs
                .write_private(&kubeconfig_path, kubeconfig.to_yaml().as_bytes())
                .context("could not write kube-proxy's kubeconfig")?;
        }
    }
    crate::init::control_plane::write_manifest_in(
        &node,
        &layout.manifests_dir(),
        names::KUBE_PROXY,
        &pod,
    )?;
    say!(
        node.out,
        "kube-proxy",
        "kube-proxy runs on this node as a static Pod under the kubeboot agent ({:?}); the DaemonSet skips nodes labelled {}={}",
        layout.manifest(names::KUBE_PROXY).display().to_string(),
        names::LABEL_KUBE_PROXY_RUNNER,
        names::KUBE_PROXY_RUNNER_AGENT
    );
    Ok(())
}

/// A control-plane node holds the CA key (downloaded or copied): it signs kube-proxy's
/// certificate itself, as init does.
fn local_credential(
    d: &JoinData,
    cfg: &components::config::InitConfig,
    server: &str,
) -> anyhow::Result<Option<pki::Kubeconfig>> {
    let cert_dir = d.layout.node_path(&cfg.cluster.certificates_dir);
    let (_, ca_key) = crate::shared::certs::cert_files(&cert_dir, "ca");
    let ca = pki::Issuer {
        cert_pem: crate::shared::certs::read_ca_cert(&d.fs, &cert_dir)?,
        key_pem: d.fs.read_string_if_exists(&ca_key)?.with_context(|| {
            format!(
                "the CA key {:?} is missing; a control-plane node signs kube-proxy's client certificate with it",
                ca_key.display().to_string()
            )
        })?,
    };
    Ok(Some(pki::build_kubeconfig(
        &pki::kubeconfig::KUBE_PROXY_KUBECONFIG,
        &cfg.node.name,
        &cfg.cluster.cluster_name,
        server,
        &ca,
        cfg.cluster.encryption_algorithm,
        cfg.cluster.certificate_validity,
        d.now,
    )?))
}

/// A worker asks the cluster for kube-proxy's certificate with its own kubelet identity.
fn requested_credential(
    d: &mut JoinData,
    node_name: &str,
    server: &str,
    ca_pem: &str,
) -> anyhow::Result<Option<pki::Kubeconfig>> {
    let user = names::KUBE_PROXY_USER;
    if d.dry_run {
        say!(
            d.out,
            "dryrun",
            "Would request a client certificate for {user:?} and write kube-proxy's kubeconfig"
        );
        return Ok(None);
    }
    let key = pki::PrivateKey::generate(components::config::KeyAlgorithm::EcdsaP256)?;
    let csr = pki::csr::client_csr(&key, user, &[])?;
    let name = format!(
        "{}-{}",
        agent::csr_approval::request_name(node_name),
        crate::join::kubelet_start::short_digest(&csr)
    );
    say!(
        d.out,
        "kube-proxy",
        "Requesting a client certificate for {user:?} ({name:?}); the control-plane nodes' kubeboot agents approve it"
    );
    let out = d.out.clone();
    let cert = d.cluster()?.request_certificate(
        &name,
        names::KUBE_APISERVER_CLIENT_SIGNER,
        &csr,
        APPROVAL_TIMEOUT,
        |elapsed| {
            say!(
                out,
                "kube-proxy",
                "Waiting for {name:?} to be approved and signed ({} elapsed)",
                crate::health::human(elapsed)
            );
        },
    ).context("kube-proxy's certificate was not issued; a cluster whose control-plane nodes do not run the kubeboot agent (a kubeadm-made one) approves nothing: join with --static-pod-runner kubelet there, so that kube-proxy comes from the cluster's DaemonSet")?;
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    Ok(Some(pki::kubeconfig::basic_kubeconfig(
        "kubernetes",
        server,
        ca_pem,
        user,
        pki::kubeconfig::User {
            client_certificate_data: Some(b64(&cert)),
            client_key_data: Some(b64(key.to_pem())),
            ..Default::default()
        },
    )))
}
