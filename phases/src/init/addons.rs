//! `init phase addon`: CoreDNS and kube-proxy through the API server, as kubeadm 1.20 creates
//! them (kubeadm: app/cmd/phases/init/addons.go, app/phases/addons/{dns,proxy}), and, in
//! kubeboot's agent mode (under `--static-pod-runner kubelet` the DaemonSet runs it, as with
//! kubeadm), kube-proxy on this node as a static pod the agent runs, with its
//! node-local configuration and kubeconfig in `/var/lib/kube-proxy`.

use anyhow::Context;
use components::catalogue::{self, Component};
use components::names;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Service};
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
    "static-pod-runner",
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

fn run_coredns(d: &mut InitData) -> anyhow::Result<()> {
    d.cluster()?;
    let d: &InitData = d;
    coredns(d, d.api.as_ref().expect("created by InitData::cluster"))
}

fn run_kube_proxy(d: &mut InitData) -> anyhow::Result<()> {
    d.cluster()?;
    let d: &InitData = d;
    kube_proxy(d, d.api.as_ref().expect("created by InitData::cluster"))
}

/// Who serves the cluster's DNS: decided once, at init, and kept on re-runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DnsServer {
    /// kubeadm's CoreDNS, its image being in containerd.
    CoreDns,
    /// kubeboot's DNS (`kube-system/kubeboot-dns`); kubeadm's CoreDNS Deployment has 0 replicas.
    Kubeboot,
}

/// Why [`choose_dns`] chose as it did, in words for `init`'s output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DnsReason {
    /// The cluster has the kubeboot-dns Deployment, or CoreDNS's Deployment says it stands aside.
    KeptKubeboot,
    /// The cluster has CoreDNS's Deployment, serving.
    KeptCoreDns,
    /// containerd holds the CoreDNS image.
    ImagePresent,
    /// containerd lacks the CoreDNS image.
    ImageMissing,
    /// containerd was not asked (dry-run) or could not answer.
    ImageUnknown,
}

/// The pure decision: an existing choice is kept (the kubeboot-dns Deployment, or CoreDNS's
/// Deployment with or without [`names::ANNOTATION_DNS_SERVED_BY`]); a fresh cluster gets
/// CoreDNS when containerd holds its image (`coredns_image`: `None` when unknown), else
/// kubeboot's DNS.
fn choose_dns(
    kubeboot_dns: Option<&Deployment>,
    coredns: Option<&Deployment>,
    coredns_image: Option<bool>,
) -> (DnsServer, DnsReason) {
    if kubeboot_dns.is_some() {
        return (DnsServer::Kubeboot, DnsReason::KeptKubeboot);
    }
    if let Some(dep) = coredns {
        let aside = dep
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(names::ANNOTATION_DNS_SERVED_BY));
        return match aside {
            true => (DnsServer::Kubeboot, DnsReason::KeptKubeboot),
            false => (DnsServer::CoreDns, DnsReason::KeptCoreDns),
        };
    }
    match coredns_image {
        Some(true) => (DnsServer::CoreDns, DnsReason::ImagePresent),
        Some(false) => (DnsServer::Kubeboot, DnsReason::ImageMissing),
        None => (DnsServer::Kubeboot, DnsReason::ImageUnknown),
    }
}

/// The images in this node's containerd, `None` under dry-run or when containerd cannot be
/// asked (then said why).
fn containerd_images(d: &InitData) -> Option<std::collections::BTreeSet<String>> {
    if d.dry_run {
        return None;
    }
    let socket = crate::init::kubelet_start::cri_socket_path(&d.cfg);
    let node_socket = d.layout.node_path(&socket).display().to_string();
    let listed = crate::images::Ctr::find(&d.bin_dirs, &node_socket).and_then(|ctr| ctr.images());
    match listed {
        Ok(images) => Some(images),
        Err(e) => {
            say!(
                d.out,
                "addons",
                "[WARNING] could not list the images of the CRI runtime at {socket:?}: {e:#}"
            );
            None
        }
    }
}

/// kubeadm: dns.EnsureDNSAddon with CoreDNS; where containerd lacks the CoreDNS image,
/// kubeboot's DNS serves the cluster and CoreDNS's Deployment stands aside (replicas 0).
fn coredns(d: &InitData, cluster: &Cluster) -> anyhow::Result<()> {
    let version = env!("CARGO_PKG_VERSION");
    let coredns_image = catalogue::image(
        Component::CoreDns,
        &image_repository(d),
        &d.cfg.cluster.kubernetes_version,
    );
    let dns_image = addons::cluster_dns::image(version);

    // Observe: a deployed CoreDNS keeps its replica count (kubeadm: deployedDNSReplicas); a
    // deployed DNS keeps its server.
    let deployed_coredns = cluster.get::<Deployment>(Some(names::KUBE_SYSTEM), names::COREDNS)?;
    let deployed_ours = cluster.get::<Deployment>(Some(names::KUBE_SYSTEM), names::KUBEBOOT_DNS)?;
    let existing_service = cluster.get::<Service>(Some(names::KUBE_SYSTEM), names::KUBE_DNS)?;
    let images = match (&deployed_ours, &deployed_coredns) {
        (None, None) => containerd_images(d),
        _ => None, // decided already: containerd is not asked
    };
    let node = cluster.get::<Node>(None, &d.cfg.node.name)?;

    // Decide.
    let has = |image: &String| {
        images
            .as_ref()
            .map(|present| crate::images::missing(std::slice::from_ref(image), present).is_empty())
    };
    let (server, reason) = choose_dns(
        deployed_ours.as_ref(),
        deployed_coredns.as_ref(),
        has(&coredns_image),
    );
    let deployed = deployed_coredns.and_then(|dep| dep.spec.replicas);
    let mut addon = addons::coredns_addon(&d.cfg, deployed)?;
    let ours = match server {
        DnsServer::CoreDns => None,
        DnsServer::Kubeboot => {
            addon.deployment = addons::coredns_standing_aside(addon.deployment);
            let dns_ip = addons::dns_service_ip(&d.cfg)?;
            Some(addons::kubeboot_dns_addon(&d.cfg, version, dns_ip)?)
        }
    };
    let label_value = addons::cluster_dns::image_label_value(version);
    let needs_label = has(&dns_image) == Some(true)
        && node.as_ref().is_some_and(|n| {
            n.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(names::LABEL_DNS_IMAGE))
                != Some(&label_value)
        });
    let service_differs = match &existing_service {
        None => true,
        Some(live) => service_differences(&addon.service, live).is_some(),
    };

    // Act, in kubeadm's order. The ConfigMap is the user's to edit: kept if it exists.
    cluster.create_or_retain(&addon.config_map)?;
    cluster.create_or_update(&addon.cluster_role)?;
    cluster.create_or_update(&addon.cluster_role_binding)?;
    cluster.create_or_update(&addon.service_account)?;
    cluster.create_or_update(&addon.deployment)?;
    if service_differs {
        // kubeadm (createDNSService) tolerates "IP already allocated" on the create and then
        // updates; the facade's create_or_update replaces only after "already exists", which
        // the API server never answers for a Service whose clusterIP is taken, so a kube-dns
        // Service that already has kubeadm's fields is left as it is.
        cluster.create_or_update(&addon.service).with_context(|| {
            match existing_service
                .as_ref()
                .and_then(|live| service_differences(&addon.service, live))
            {
                Some(what) => format!(
                    "the existing Service kube-system/kube-dns differs from kubeadm's in {what}"
                ),
                None => "the DNS Service".to_string(),
            }
        })?;
    }
    if let Some(ours) = &ours {
        cluster.create_or_update(&ours.service_account)?;
        cluster.create_or_update(&ours.cluster_role)?;
        cluster.create_or_update(&ours.cluster_role_binding)?;
        cluster.create_or_update(&ours.role)?;
        cluster.create_or_update(&ours.role_binding)?;
        cluster.create_or_update(&ours.deployment)?;
    }
    if needs_label {
        let patch = serde_json::json!({"metadata": {"labels": {
            names::LABEL_DNS_IMAGE: label_value
        }}});
        cluster.patch_node(&d.cfg.node.name, &patch)?;
    }

    // Say.
    say!(d.out, "addons", "Applied essential addon: CoreDNS");
    if d.dry_run && reason == DnsReason::ImageUnknown {
        say!(
            d.out,
            "dryrun",
            "Would look for the image {coredns_image} in containerd; this dry run assumes it is absent"
        );
    }
    match server {
        DnsServer::CoreDns => say!(
            d.out,
            "addons",
            "CoreDNS serves the cluster's DNS ({})",
            match reason {
                DnsReason::ImagePresent => format!("its image {coredns_image} is in containerd"),
                _ => "as chosen when the cluster was initialized".to_string(),
            }
        ),
        DnsServer::Kubeboot => {
            say!(d.out, "addons", "Applied essential addon: kubeboot-dns");
            say!(
                d.out,
                "addons",
                "kubeboot's DNS serves the cluster ({}): the Deployment {}/{} of the image {dns_image}, which each kubeboot node builds from its own executable; CoreDNS's Deployment stays with 0 replicas",
                match reason {
                    DnsReason::ImageMissing => format!("containerd has no image {coredns_image}"),
                    DnsReason::ImageUnknown =>
                        format!("the image {coredns_image} is not known to be in containerd"),
                    _ => "as chosen when the cluster was initialized".to_string(),
                },
                names::KUBE_SYSTEM,
                names::KUBEBOOT_DNS
            );
        }
    }
    Ok(())
}

/// The first field kubeadm's template sets in which `live` differs from `want`, if any.
fn service_differences(want: &Service, live: &Service) -> Option<&'static str> {
    let (w, l) = (want.spec.as_ref(), live.spec.as_ref());
    if w.and_then(|s| s.cluster_ip.as_ref()) != l.and_then(|s| s.cluster_ip.as_ref()) {
        return Some("spec.clusterIP");
    }
    if w.and_then(|s| s.ports.as_ref()) != l.and_then(|s| s.ports.as_ref()) {
        return Some("spec.ports");
    }
    if w.and_then(|s| s.selector.as_ref()) != l.and_then(|s| s.selector.as_ref()) {
        return Some("spec.selector");
    }
    if want.metadata.labels != live.metadata.labels {
        return Some("metadata.labels");
    }
    if want.metadata.annotations != live.metadata.annotations {
        return Some("metadata.annotations");
    }
    None
}

fn image_repository(d: &InitData) -> String {
    match d.cfg.cluster.image_repository.as_str() {
        "" => catalogue::default_image_repository(&d.cfg.cluster.kubernetes_version).to_string(),
        repo => repo.to_string(),
    }
}

/// kubeadm: proxy.EnsureProxyAddon and, in kubeboot's agent mode, first the node label that
/// keeps the DaemonSet off this node (before the DaemonSet exists), then the static pod with
/// its node-local config and kubeconfig.
fn kube_proxy(d: &InitData, cluster: &Cluster) -> anyhow::Result<()> {
    let spec = &pki::kubeconfig::KUBE_PROXY_KUBECONFIG;
    let kubeconfig_path = kube_proxy::node_kubeconfig_path(&d.layout);
    let config_path = kube_proxy::node_config_path(&d.layout);
    let shown = kubeconfig_path.display().to_string();

    // Observe.
    let (_, ca_key) = crate::shared::certs::cert_files(&d.cert_dir(), "ca");
    let ca_cert_pem = crate::shared::certs::read_ca_cert(&d.fs, &d.cert_dir())?;
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

    // Act: kube-proxy's rules on this node are kubeboot's doing from here on (reset runs
    // kube-proxy --cleanup).
    crate::node_record::update(
        &d.fs,
        &d.layout,
        crate::node_record::NodeRecord {
            kube_proxy: true,
            ..Default::default()
        },
    )?;
    let agent_runs_it = d.static_pod_runner == components::StaticPodRunner::Agent;
    if agent_runs_it && needs_label {
        // Before the DaemonSet exists: a controller-manager already running would otherwise
        // make a kube-proxy Pod for this node and delete it a moment later, when the label
        // comes, costing this node's kubelet a sandbox during its start.
        let patch = serde_json::json!({"metadata": {"labels": {
            names::LABEL_KUBE_PROXY_RUNNER: names::KUBE_PROXY_RUNNER_AGENT
        }}});
        cluster.patch_node(&d.cfg.node.name, &patch)?;
    }
    // The cluster's objects, in kubeadm's order.
    cluster.create_or_update(&addon.service_account)?;
    cluster.create_or_update(&addon.config_map)?;
    cluster.create_or_update(&addon.daemon_set)?;
    cluster.create_or_update(&addon.cluster_role_binding)?;
    cluster.create_or_update(&addon.role)?;
    cluster.create_or_update(&addon.role_binding)?;
    if !agent_runs_it {
        say!(d.out, "addons", "Applied essential addon: kube-proxy");
        say!(
            d.out,
            "addons",
            "kube-proxy runs on this node as a Pod of kubeadm's DaemonSet (the kubelet runs the static Pods here)"
        );
        return Ok(());
    }

    // Act: this node's kube-proxy, files first so the agent finds them when the manifest lands.
    crate::node_record::create_dir(&d.fs, &d.layout, &d.layout.kube_proxy_dir(), 0o755)?;
    if d.fs.read_if_exists(&config_path)?.as_deref() != Some(node_config.as_bytes()) {
        crate::node_record::note_file(&d.fs, &d.layout, &config_path)?;
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
            d.cfg.cluster.certificate_validity,
            d.now,
        )?;
        crate::node_record::note_file(&d.fs, &d.layout, &kubeconfig_path)?;
        d.fs.write_private(&kubeconfig_path, kubeconfig.to_yaml().as_bytes())?;
    }
    write_manifest(d, names::KUBE_PROXY, &pod)?;

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
    use crate::init::data::tests::test_data;
    use crate::out::Out;

    fn recorded_objects(cluster: &Cluster) -> Vec<String> {
        cluster
            .recorded()
            .into_iter()
            .map(|r| format!("{} {} {}", r.verb, r.resource, r.name.unwrap_or_default()))
            .collect()
    }

    #[test]
    fn kube_proxy_applies_kubeadms_objects_and_writes_the_node_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut d = test_data(dir.path());
        d.cfg.cluster.networking.pod_subnet = Some("10.244.0.0/16".parse().expect("cidr"));
        crate::init::run(&mut d, &["certs".to_string()]).expect("certs");
        let cluster = Cluster::recording(Out::capture());
        kube_proxy(&d, &cluster).expect("kube-proxy");
        // The label first: the DaemonSet never has this node to make a Pod for.
        assert_eq!(
            writes(&cluster),
            [
                "PATCH nodes node1",
                "CREATE serviceaccounts ",
                "CREATE configmaps ",
                "CREATE daemonsets ",
                "CREATE clusterrolebindings ",
                "CREATE roles ",
                "CREATE rolebindings ",
            ]
        );
        let patch = cluster
            .recorded()
            .into_iter()
            .find(|r| r.verb == "PATCH")
            .and_then(|r| r.body)
            .expect("patch body");
        assert_eq!(
            patch["metadata"]["labels"]["node.kubeboot.io/kube-proxy"],
            "agent"
        );
        let root = dir.path();
        let conf = std::fs::read_to_string(root.join("var/lib/kube-proxy/config.conf"))
            .expect("config.conf");
        assert!(
            conf.contains(&format!(
                "kubeconfig: {}/var/lib/kube-proxy/kubeconfig.conf",
                root.display()
            )),
            "{conf}"
        );
        let kubeconfig = std::fs::read_to_string(root.join("var/lib/kube-proxy/kubeconfig.conf"))
            .expect("kubeconfig.conf");
        assert!(
            kubeconfig.contains("system:kube-proxy@kubernetes"),
            "{kubeconfig}"
        );
        let pod = std::fs::read_to_string(root.join("etc/kubernetes/manifests/kube-proxy.yaml"))
            .expect("manifest");
        assert!(pod.contains("--hostname-override=node1"), "{pod}");
        assert!(
            d.out
                .captured()
                .contains("[addons] Applied essential addon: kube-proxy\n")
        );

        // Again, on a Node that has the label: same files, the kubeconfig reused, not
        // re-signed, no second patch.
        let labelled = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "node1", "labels": {"node.kubeboot.io/kube-proxy": "agent"}},
        });
        let cluster = Cluster::recording(Out::capture()).with_objects([labelled]);
        kube_proxy(&d, &cluster).expect("again");
        let again = std::fs::read_to_string(root.join("var/lib/kube-proxy/kubeconfig.conf"))
            .expect("kubeconfig.conf");
        assert_eq!(again, kubeconfig);
        let w = writes(&cluster);
        assert!(!w.iter().any(|r| r.starts_with("PATCH")), "{w:?}");
        assert!(w.contains(&"CREATE daemonsets ".to_string()), "{w:?}");
    }

    /// Under the kubelet runner the DaemonSet runs kube-proxy here too: no label, no files.
    #[test]
    fn under_the_kubelet_runner_kube_proxy_is_the_daemon_sets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut d = test_data(dir.path());
        d.node.static_pod_runner = components::StaticPodRunner::Kubelet;
        crate::init::run(&mut d, &["certs".to_string()]).expect("certs");
        let cluster = Cluster::recording(Out::capture());
        kube_proxy(&d, &cluster).expect("kube-proxy");
        let w = writes(&cluster);
        assert!(!w.iter().any(|r| r.starts_with("PATCH")), "{w:?}");
        assert!(w.contains(&"CREATE daemonsets ".to_string()), "{w:?}");
        assert!(
            !dir.path()
                .join("etc/kubernetes/manifests/kube-proxy.yaml")
                .exists()
        );
    }

    #[test]
    fn an_existing_kube_dns_service_with_kubeadms_fields_is_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = test_data(dir.path());
        let mut live = addons::coredns_addon(&d.cfg, None).expect("builds").service;
        live.metadata.resource_version = Some("42".into());
        live.spec.as_mut().expect("spec").type_ = Some("ClusterIP".into());
        let cluster = Cluster::recording(Out::capture())
            .with_objects([serde_json::to_value(&live).expect("json")]);
        coredns(&d, &cluster).expect("coredns");
        assert!(
            !recorded_objects(&cluster)
                .iter()
                .any(|r| r.starts_with("CREATE services") || r.starts_with("UPDATE services")),
            "{:?}",
            recorded_objects(&cluster)
        );
    }

    fn writes(cluster: &Cluster) -> Vec<String> {
        recorded_objects(cluster)
            .into_iter()
            .filter(|r| !r.starts_with("GET"))
            .collect()
    }

    /// Without the CoreDNS image (containerd not reachable here), kubeadm's CoreDNS objects
    /// are created in kubeadm's order, its Deployment with 0 replicas, then kubeboot's DNS.
    #[test]
    fn without_the_coredns_image_kubeboot_dns_serves_and_coredns_stands_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = test_data(dir.path());
        let cluster = Cluster::recording(Out::capture());
        coredns(&d, &cluster).expect("coredns");
        assert_eq!(
            writes(&cluster),
            [
                "CREATE configmaps ",
                "CREATE clusterroles ",
                "CREATE clusterrolebindings ",
                "CREATE serviceaccounts ",
                "CREATE deployments ",
                "CREATE services ",
                "CREATE serviceaccounts ",
                "CREATE clusterroles ",
                "CREATE clusterrolebindings ",
                "CREATE roles ",
                "CREATE rolebindings ",
                "CREATE deployments ",
            ]
        );
        let deployments: Vec<serde_json::Value> = cluster
            .recorded()
            .into_iter()
            .filter(|r| r.verb == "CREATE" && r.resource == "deployments")
            .filter_map(|r| r.body)
            .collect();
        assert_eq!(deployments[0]["metadata"]["name"], "coredns");
        assert_eq!(deployments[0]["spec"]["replicas"], 0);
        assert_eq!(
            deployments[0]["metadata"]["annotations"]["kubeboot.io/dns-served-by"],
            "kube-system/kubeboot-dns"
        );
        assert_eq!(deployments[1]["metadata"]["name"], "kubeboot-dns");
        assert_eq!(
            deployments[1]["spec"]["template"]["spec"]["containers"][0]["command"][5],
            "10.96.0.10"
        );
        let out = d.out.captured();
        assert!(
            out.contains("[addons] Applied essential addon: CoreDNS\n")
                && out.contains("[addons] Applied essential addon: kubeboot-dns\n")
                && out.contains("[addons] kubeboot's DNS serves the cluster (the image k8s.gcr.io/coredns:1.7.0 is not known to be in containerd)"),
            "{out}"
        );
    }

    /// The choice is made once: a cluster with kubeadm's serving CoreDNS Deployment keeps it
    /// and gets no kubeboot-dns objects; one with kubeboot-dns keeps kubeboot's DNS.
    #[test]
    fn a_rerun_keeps_the_choice() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = test_data(dir.path());
        let kubeadms = addons::coredns_addon(&d.cfg, Some(3)).expect("builds");
        let cluster = Cluster::recording(Out::capture())
            .with_objects([serde_json::to_value(&kubeadms.deployment).expect("json")]);
        coredns(&d, &cluster).expect("coredns");
        let w = writes(&cluster);
        assert!(
            !w.iter()
                .any(|r| r.contains("roles ") && !r.contains("cluster")),
            "{w:?}"
        );
        assert_eq!(
            w.iter().filter(|r| r.contains("deployments")).count(),
            1,
            "{w:?}"
        );
        let body = cluster
            .recorded()
            .into_iter()
            .find(|r| r.resource == "deployments" && r.verb != "GET")
            .and_then(|r| r.body)
            .expect("deployment written");
        assert_eq!(
            body["spec"]["replicas"], 3,
            "kubeadm keeps deployed replicas"
        );
        assert!(d.out.captured().contains(
            "[addons] CoreDNS serves the cluster's DNS (as chosen when the cluster was initialized)"
        ));

        let d = test_data(dir.path());
        let ip = "10.96.0.10".parse().expect("ip");
        let ours = addons::kubeboot_dns_addon(&d.cfg, "0.1.0", ip).expect("builds");
        let cluster = Cluster::recording(Out::capture())
            .with_objects([serde_json::to_value(&ours.deployment).expect("json")]);
        coredns(&d, &cluster).expect("coredns");
        assert!(writes(&cluster).iter().any(|r| r.contains("roles ")));
    }

    /// Under `--dry-run` containerd is not asked: the decision says what it assumed.
    #[test]
    fn dry_run_decides_without_containerd_and_says_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut d = test_data(dir.path());
        d.node.dry_run = true;
        coredns(&d, &Cluster::recording(Out::capture())).expect("coredns");
        let out = d.out.captured();
        assert!(
            out.contains("[dryrun] Would look for the image k8s.gcr.io/coredns:1.7.0 in containerd; this dry run assumes it is absent")
                && out.contains("[addons] kubeboot's DNS serves the cluster"),
            "{out}"
        );
        assert!(!out.contains("[WARNING]"), "{out}");
    }

    #[test]
    fn choose_dns_decides_once() {
        let aside = addons::coredns_standing_aside(Deployment::default());
        let serving = Deployment::default();
        let ours = Deployment::default();
        use DnsReason::*;
        use DnsServer::*;
        for (kb, cd, image, want) in [
            (None, None, Some(true), (CoreDns, ImagePresent)),
            (None, None, Some(false), (Kubeboot, ImageMissing)),
            (None, None, None, (Kubeboot, ImageUnknown)),
            (None, Some(&serving), Some(false), (CoreDns, KeptCoreDns)),
            (None, Some(&aside), Some(true), (Kubeboot, KeptKubeboot)),
            (
                Some(&ours),
                Some(&serving),
                Some(true),
                (Kubeboot, KeptKubeboot),
            ),
        ] {
            assert_eq!(choose_dns(kb, cd, image), want, "{kb:?} {cd:?} {image:?}");
        }
    }

    #[test]
    fn sub_phases_are_kubeadms() {
        let p = phase();
        assert_eq!(
            p.short,
            "Install required addons for passing Conformance tests"
        );
        let names: Vec<_> = p.children.iter().map(|c| c.name).collect();
        assert_eq!(names, ["coredns", "kube-proxy"]);
    }
}
