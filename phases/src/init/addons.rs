//! `init phase addon`: CoreDNS and kube-proxy through the API server, as kubeadm 1.20 creates
//! them (kubeadm: app/cmd/phases/init/addons.go, app/phases/addons/{dns,proxy}), and, in
//! kubeboot's agent mode, kube-proxy on this node as a static pod the agent runs, with its
//! node-local configuration and kubeconfig in `/var/lib/kube-proxy`.

use anyhow::Context;
use components::catalogue::{self, Component};
use components::names;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Node;
use manifests::addons::{self, kube_proxy};
use pki::{Decision, Issuer};

use crate::cluster::Cluster;
use crate::init::control_plane::write_manifest;
use crate::init::data::InitData;
use crate::runner::Phase;
use crate::say;

/// kubeadm: getAddonPhaseFlags, the flags both addons take (kubeboot has no `--kubeconfig`
/// on `init`; the phases use admin.conf).
const COREDNS_FLAGS: &[&str] = &[
    "config",
    "kubernetes-version",
    "image-repository",
    "feature-gates",
    "service-dns-domain",
    "service-cidr",
    "dry-run",
];

/// kubeadm: getAddonPhaseFlags("kube-proxy"), plus `--node-name` (the static pod's
/// `--hostname-override`) and `--cert-dir` (the CA that signs its kubeconfig).
const KUBE_PROXY_FLAGS: &[&str] = &[
    "config",
    "kubernetes-version",
    "image-repository",
    "apiserver-advertise-address",
    "control-plane-endpoint",
    "apiserver-bind-port",
    "pod-network-cidr",
    "node-name",
    "cert-dir",
    "dry-run",
];

/// The `addon` phase and its sub-phases.
pub fn phase() -> Phase<InitData> {
    Phase::group(
        "addon",
        "Install required addons for passing Conformance tests",
        vec![
            Phase::new(
                "coredns",
                "Install the CoreDNS addon to a Kubernetes cluster",
                run_coredns,
            )
            .flags(COREDNS_FLAGS),
            Phase::new(
                "kube-proxy",
                "Install the kube-proxy addon to a Kubernetes cluster",
                run_kube_proxy,
            )
            .flags(KUBE_PROXY_FLAGS),
        ],
    )
}

/// The API client of the addon phases: admin.conf's, or the recorder in dry-run.
fn cluster(d: &InitData) -> anyhow::Result<Cluster> {
    if d.dry_run {
        return Ok(Cluster::recording(d.out.clone()));
    }
    Cluster::from_kubeconfig(&d.layout.kubeconfig(names::ADMIN_KUBECONFIG))
}

fn run_coredns(d: &mut InitData) -> anyhow::Result<()> {
    let cluster = cluster(d)?;
    coredns(d, &cluster)
}

fn run_kube_proxy(d: &mut InitData) -> anyhow::Result<()> {
    let cluster = cluster(d)?;
    kube_proxy(d, &cluster)
}

/// kubeadm: dns.EnsureDNSAddon with CoreDNS.
fn coredns(d: &InitData, cluster: &Cluster) -> anyhow::Result<()> {
    // Observe: a deployed CoreDNS keeps its replica count (kubeadm: deployedDNSReplicas).
    let deployed = cluster
        .get::<Deployment>(Some(names::KUBE_SYSTEM), names::COREDNS)?
        .and_then(|dep| dep.spec.replicas);

    // Decide.
    let addon = addons::coredns_addon(&d.cfg, deployed)?;

    // Act, in kubeadm's order. The ConfigMap is the user's to edit: kept if it exists.
    cluster.create_or_retain(&addon.config_map)?;
    cluster.create_or_update(&addon.cluster_role)?;
    cluster.create_or_update(&addon.cluster_role_binding)?;
    cluster.create_or_update(&addon.service_account)?;
    cluster.create_or_update(&addon.deployment)?;
    cluster.create_or_update(&addon.service)?;

    // Say.
    say!(d.out, "addons", "Applied essential addon: CoreDNS");
    let image = catalogue::image(
        Component::CoreDns,
        &image_repository(d),
        &d.cfg.cluster.kubernetes_version,
    );
    say!(
        d.out,
        "addons",
        "CoreDNS needs the image {image} on the node; its Pods stay Pending until it is there"
    );
    Ok(())
}

fn image_repository(d: &InitData) -> String {
    match d.cfg.cluster.image_repository.as_str() {
        "" => catalogue::default_image_repository(&d.cfg.cluster.kubernetes_version).to_string(),
        repo => repo.to_string(),
    }
}

/// kubeadm: proxy.EnsureProxyAddon, then kubeboot's agent mode: the static pod, its node-local
/// config and kubeconfig, and the node label that keeps the DaemonSet off this node.
fn kube_proxy(d: &InitData, cluster: &Cluster) -> anyhow::Result<()> {
    let spec = &pki::kubeconfig::KUBE_PROXY_KUBECONFIG;
    let kubeconfig_path = kube_proxy::node_kubeconfig_path(&d.layout);
    let config_path = kube_proxy::node_config_path(&d.layout);
    let shown = kubeconfig_path.display().to_string();

    // Observe.
    let (ca_crt, ca_key) = crate::shared::certs::cert_files(&d.cert_dir(), "ca");
    let ca_cert_pem = d.fs.read_string_if_exists(&ca_crt)?.with_context(|| {
        format!(
            "the CA certificate {:?} is missing; run \"kubeboot init phase certs ca\" first",
            ca_crt.display().to_string()
        )
    })?;
    let existing_kubeconfig = d.fs.read_string_if_exists(&kubeconfig_path)?;
    let node = cluster.get::<Node>(None, &d.cfg.node.name)?;

    // Decide.
    let addon = addons::kube_proxy_addon(&d.cfg)?;
    let node_config = addons::kube_proxy_config(&d.cfg)?
        .for_node(&d.layout)
        .to_yaml();
    let pod = addons::kube_proxy_pod(&d.cfg, &d.layout);
    let ep = d.cfg.local_api_endpoint;
    let server = spec.server_url(
        d.cfg.cluster.control_plane_endpoint.as_deref(),
        ep.advertise_address,
        ep.bind_port,
    )?;
    let kubeconfig_decision =
        pki::decide_kubeconfig(spec, existing_kubeconfig.as_deref(), &ca_cert_pem, &server)
            .with_context(|| format!("{shown:?}"))?;
    let needs_label = node.as_ref().is_some_and(|n| {
        n.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(names::LABEL_KUBE_PROXY_RUNNER))
            .map(String::as_str)
            != Some(names::KUBE_PROXY_RUNNER_AGENT)
    });

    // Act: the cluster's objects in kubeadm's order.
    cluster.create_or_update(&addon.service_account)?;
    cluster.create_or_update(&addon.config_map)?;
    cluster.create_or_update(&addon.daemon_set)?;
    cluster.create_or_update(&addon.cluster_role_binding)?;
    cluster.create_or_update(&addon.role)?;
    cluster.create_or_update(&addon.role_binding)?;

    // Act: this node's kube-proxy, files first so the agent finds them when the manifest lands.
    d.fs.create_dir(&d.layout.kube_proxy_dir(), 0o755)?;
    if d.fs.read_if_exists(&config_path)?.as_deref() != Some(node_config.as_bytes()) {
        d.fs.write_public(&config_path, node_config.as_bytes())?;
    }
    if kubeconfig_decision == Decision::Create {
        let ca_key_pem = d.fs.read_string_if_exists(&ca_key)?.with_context(|| {
            format!(
                "the CA key {:?} is missing; kubeboot needs it to sign kube-proxy's client certificate",
                ca_key.display().to_string()
            )
        })?;
        let ca = Issuer {
            cert_pem: ca_cert_pem,
            key_pem: ca_key_pem,
        };
        let kubeconfig = pki::build_kubeconfig(
            spec,
            &d.cfg.node.name,
            &d.cfg.cluster.cluster_name,
            &server,
            &ca,
            d.cfg.cluster.encryption_algorithm,
            d.now,
        )?;
        d.fs.write_private(&kubeconfig_path, kubeconfig.to_yaml().as_bytes())?;
    }
    write_manifest(d, names::KUBE_PROXY, &pod)?;
    if needs_label {
        let patch = serde_json::json!({"metadata": {"labels": {
            names::LABEL_KUBE_PROXY_RUNNER: names::KUBE_PROXY_RUNNER_AGENT
        }}});
        cluster.patch_node(&d.cfg.node.name, &patch)?;
    }

    // Say.
    say!(d.out, "addons", "Applied essential addon: kube-proxy");
    say!(
        d.out,
        "addons",
        "kube-proxy runs on this node as a static Pod under the kubeboot agent ({:?}); the DaemonSet skips nodes labelled {}={}",
        d.layout.manifest(names::KUBE_PROXY).display().to_string(),
        names::LABEL_KUBE_PROXY_RUNNER,
        names::KUBE_PROXY_RUNNER_AGENT
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_phases_are_kubeadms() {
        let p = phase();
        assert_eq!(p.short, "Install required addons for passing Conformance tests");
        let names: Vec<_> = p.children.iter().map(|c| c.name).collect();
        assert_eq!(names, ["coredns", "kube-proxy"]);
    }
}
