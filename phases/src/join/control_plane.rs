//! The control-plane part of `join --control-plane` (kubeadm: app/cmd/phases/join/
//! controlplaneprepare.go, checketcd.go, controlplanejoin.go).
//!
//! kubeadm builds a joining control-plane node from init's own code, over the cluster's
//! configuration with this node's registration and endpoint (joinData.InitCfg). kubeboot
//! does the same: [`init_view`] is init's run data for that configuration, and these phases
//! run init's certs, kubeconfig, control-plane and mark-control-plane phases on it.
//!
//! One difference: the kubeconfigs of a joined control-plane node (admin.conf,
//! controller-manager.conf, scheduler.conf, the agent's) name this node's own API server,
//! not `controlPlaneEndpoint`. kubeadm expects the endpoint to be a load balancer; kubeboot
//! is meant to work without one, where the endpoint is the first node's address, and then
//! admin.conf on any surviving control-plane node must keep working when the first node
//! is gone. The API server certificates still carry the endpoint in their SANs.

use anyhow::Context;
use components::config::Etcd;
use components::names;

use crate::init::InitData;
use crate::join::data::JoinData;
use crate::runner::Phase;
use crate::say;

const FLAGS: &[&str] = &[
    "config",
    "control-plane",
    "certificate-key",
    "apiserver-advertise-address",
    "apiserver-bind-port",
    "node-name",
    "discovery-file",
    "discovery-token",
    "discovery-token-ca-cert-hash",
    "discovery-token-unsafe-skip-ca-verification",
    "tls-bootstrap-token",
    "token",
    "bin-dir",
    "dry-run",
];

/// The files a control-plane node needs from the cluster before it can issue its own
/// certificates: the shared CAs and the service-account key pair (kubeadm:
/// copycerts.GetCertsWithoutEtcd plus the etcd CA).
fn shared_files(local_etcd: bool) -> Vec<&'static str> {
    let mut files = vec![
        "ca.crt",
        "ca.key",
        "sa.key",
        "sa.pub",
        "front-proxy-ca.crt",
        "front-proxy-ca.key",
    ];
    if local_etcd {
        files.extend(["etcd/ca.crt", "etcd/ca.key"]);
    }
    files
}

/// Init's run data for this node: the cluster's configuration with this node's registration
/// and endpoint; with `own_server`, the kubeconfigs it writes name this node's API server.
///
/// # Errors
/// The cluster's configuration cannot be read.
pub fn init_view(d: &mut JoinData, own_server: bool) -> anyhow::Result<InitData> {
    let mut cfg = d.init_cfg()?.clone();
    if own_server {
        cfg.cluster.control_plane_endpoint = None;
    }
    Ok(InitData {
        node: d.node.clone(),
        host_paths: crate::host::host_paths(&d.layout),
        cfg,
        api: None,
        skip_token_print: true,
        skip_certificate_key_print: true,
        upload_certs: false,
        resumed: None,
    })
}

/// Runs init's phases `paths` on [`init_view`].
fn run_init_phases(d: &mut JoinData, own_server: bool, paths: &[&str]) -> anyhow::Result<()> {
    let mut view = init_view(d, own_server)?;
    let tree = crate::init::phases();
    let only: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
    let planned = crate::runner::plan(&tree, &only, &[])?;
    for path in &planned {
        let phase = crate::runner::find(&tree, path)
            .with_context(|| format!("init has no phase {path:?}"))?;
        if let Some(run) = &phase.run {
            run(&mut view)?;
        }
    }
    Ok(())
}

fn is_cp(d: &JoinData) -> bool {
    d.is_control_plane()
}

/// The `control-plane-prepare` phase group.
pub fn prepare_phase() -> Phase<JoinData> {
    Phase::group(
        "control-plane-prepare",
        "Prepare the machine for serving a control plane",
        vec![
            Phase::new(
                "download-certs",
                "[EXPERIMENTAL] Download certificates shared among control-plane nodes from the kubeadm-certs Secret",
                download_certs,
            )
            .flags(FLAGS)
            .when(is_cp),
            Phase::new(
                "certs",
                "Generate the certificates for the new control plane components",
                |d: &mut JoinData| {
                    require_shared_files(d)?;
                    run_init_phases(d, false, &["certs"])
                },
            )
            .flags(FLAGS)
            .when(is_cp),
            Phase::new(
                "kubeconfig",
                "Generate the kubeconfig for the new control plane components",
                |d: &mut JoinData| {
                    run_init_phases(
                        d,
                        true,
                        &[
                            "kubeconfig/admin",
                            "kubeconfig/controller-manager",
                            "kubeconfig/scheduler",
                            "kubeconfig/agent",
                        ],
                    )
                },
            )
            .flags(FLAGS)
            .when(is_cp),
            Phase::new(
                "control-plane",
                "Generate the manifests for the new control plane components",
                |d: &mut JoinData| run_init_phases(d, true, &["control-plane"]),
            )
            .flags(FLAGS)
            .when(is_cp),
        ],
    )
}

fn download_certs(d: &mut JoinData) -> anyhow::Result<()> {
    let Some(key) = d
        .cfg
        .control_plane
        .as_ref()
        .and_then(|c| c.certificate_key.clone())
    else {
        say!(
            d.out,
            "download-certs",
            "Skipping: no certificate key was given (--certificate-key); the shared certificates must be on this node already"
        );
        return Ok(());
    };
    let cfg = d.init_cfg()?.clone();
    let cert_dir = d.layout.node_path(&cfg.cluster.certificates_dir);
    let node = d.node.clone();
    crate::shared::download_certs::announce(&node.out);
    let api = d.bootstrap_api()?;
    crate::shared::download_certs::download(api, &key, &node.layout, &cert_dir, &node.fs)?;
    Ok(())
}

/// Without a certificate key the shared CAs and keys must be on disk: init's certs phase
/// would otherwise make new CAs, and this node would not be of this cluster.
fn require_shared_files(d: &mut JoinData) -> anyhow::Result<()> {
    let cfg = d.init_cfg()?.clone();
    let cert_dir = d.layout.node_path(&cfg.cluster.certificates_dir);
    let missing: Vec<String> = shared_files(matches!(cfg.cluster.etcd, Etcd::Local(_)))
        .into_iter()
        .map(|f| cert_dir.join(f))
        .filter(|p| !d.fs.exists(p))
        .map(|p| p.display().to_string())
        .collect();
    anyhow::ensure!(
        missing.is_empty(),
        "a control-plane node needs the cluster's shared certificates and keys, and {} missing: join with --certificate-key <key> (\"kubeboot init phase upload-certs --upload-certs\" on a control-plane node uploads them and prints a key), or copy them from a control-plane node",
        if missing.len() == 1 {
            format!("{} is", missing[0])
        } else {
            format!("{} are", missing.join(", "))
        }
    );
    Ok(())
}

/// The etcd client URLs of the cluster's control-plane nodes (kubeadm-config's ClusterStatus,
/// as kubeadm 1.20 reads them).
fn etcd_endpoints(d: &mut JoinData) -> anyhow::Result<Vec<String>> {
    let api = d.bootstrap_api()?;
    let cm = api
        .get::<k8s_openapi::api::core::v1::ConfigMap>(
            Some(names::KUBE_SYSTEM),
            names::KUBEADM_CONFIG_CONFIGMAP,
        )?
        .context("the cluster has no kube-system/kubeadm-config ConfigMap")?;
    let status = cm
        .data
        .as_ref()
        .and_then(|m| m.get(names::CLUSTER_STATUS_KEY))
        .context("kube-system/kubeadm-config has no ClusterStatus: the cluster lists no control-plane node to join etcd through")?;
    let endpoints = components::config::kubeadm_config::cluster_status_endpoints(status)
        .context("kube-system/kubeadm-config's ClusterStatus is not usable")?;
    let me = d.init_cfg()?.node.name.clone();
    Ok(endpoints
        .iter()
        .filter(|(name, _)| **name != me)
        .map(|(_, ep)| match ep.advertise_address {
            std::net::IpAddr::V6(a) => format!("https://[{a}]:{}", names::ETCD_CLIENT_PORT),
            a => format!("https://{a}:{}", names::ETCD_CLIENT_PORT),
        })
        .collect())
}

/// An etcd client with this node's apiserver-etcd-client certificate.
fn etcd_client(d: &mut JoinData) -> anyhow::Result<crate::etcd_members::EtcdClient> {
    let endpoints = etcd_endpoints(d)?;
    let cfg = d.init_cfg()?.clone();
    let cert_dir = d.layout.node_path(&cfg.cluster.certificates_dir);
    let read = |name: &str| -> anyhow::Result<Vec<u8>> {
        let path = cert_dir.join(name);
        d.fs.read_if_exists(&path)?
            .with_context(|| format!("{:?} is missing", path.display().to_string()))
    };
    crate::etcd_members::EtcdClient::new(
        &endpoints,
        &read("etcd/ca.crt")?,
        &read("apiserver-etcd-client.crt")?,
        &read("apiserver-etcd-client.key")?,
    )
}

/// The `check-etcd` phase.
pub fn check_etcd_phase() -> Phase<JoinData> {
    Phase::new(
        "check-etcd",
        "Check that the local etcd cluster is healthy",
        check_etcd,
    )
    .flags(FLAGS)
    .when(is_cp)
    // kubeadm hides it too (phases/join/checketcd.go).
    .hidden()
}

fn check_etcd(d: &mut JoinData) -> anyhow::Result<()> {
    if !matches!(d.init_cfg()?.cluster.etcd, Etcd::Local(_)) {
        return Ok(());
    }
    if d.dry_run {
        say!(d.out, "dryrun", "Would check the etcd cluster's health");
        return Ok(());
    }
    let cfg = d.init_cfg()?.clone();
    let my_peer_url = manifests::etcd::peer_url(&cfg);
    let client = etcd_client(d)?;
    let members = client.list()?;
    // This node's own member (left by a reinstalled node of the same name) is no blocker:
    // the etcd phase removes it first when that keeps the quorum.
    let mine = |m: &crate::etcd_members::Member| {
        m.name == cfg.node.name || m.peer_urls.contains(&my_peer_url)
    };
    let unhealthy: Vec<String> = members
        .iter()
        .filter(|m| !m.is_learner && !mine(m) && client.member_health(m).is_err())
        .map(|m| m.describe())
        .collect();
    anyhow::ensure!(
        unhealthy.is_empty(),
        "etcd cluster is not healthy: {}; a new member is only added to a healthy cluster, so that the join cannot cost it its quorum: bring the members back, or remove dead ones (the same node name joining again removes its own stale member)",
        unhealthy.join(", ")
    );
    say!(
        d.out,
        "check-etcd",
        "The etcd cluster is healthy ({} voting members)",
        members.iter().filter(|m| !m.is_learner).count()
    );
    Ok(())
}

/// The `control-plane-join` phase group.
pub fn join_phase() -> Phase<JoinData> {
    Phase::group(
        "control-plane-join",
        "Join a machine as a control plane instance",
        vec![
            Phase::new(
                "etcd",
                "Add a new local etcd member",
                etcd_join,
            )
            .flags(FLAGS)
            .when(is_cp),
            Phase::new(
                "update-status",
                "Register the new control-plane node into the ClusterStatus maintained in the kubeadm-config ConfigMap",
                update_status,
            )
            .flags(FLAGS)
            .when(is_cp),
            Phase::new(
                "mark-control-plane",
                "Mark a node as a control-plane",
                |d: &mut JoinData| run_init_phases(d, true, &["mark-control-plane"]),
            )
            .flags(FLAGS)
            .when(is_cp),
        ],
    )
}

fn etcd_join(d: &mut JoinData) -> anyhow::Result<()> {
    let cfg = d.init_cfg()?.clone();
    let Etcd::Local(local) = &cfg.cluster.etcd else {
        say!(
            d.out,
            "etcd",
            "External etcd mode: Skipping the creation of a manifest for local etcd"
        );
        return Ok(());
    };
    let node = d.node.clone();
    let data_dir = node.layout.node_path(&local.data_dir);
    let used = local.extra_args.get("data-dir").unwrap_or(&local.data_dir);
    let used = crate::node_record::node_view(&node.layout, &node.layout.node_path(used))?;
    crate::node_record::update(
        &node.fs,
        &node.layout,
        crate::node_record::NodeRecord {
            etcd_data_dirs: [used].into(),
            ..Default::default()
        },
    )?;
    crate::node_record::create_dir(&node.fs, &node.layout, &data_dir, 0o700)?;
    if node.dry_run {
        say!(
            node.out,
            "dryrun",
            "Would add this node's etcd member to the cluster and write its manifest"
        );
        return Ok(());
    }
    let client = etcd_client(d)?;
    let peer_url = manifests::etcd::peer_url(&cfg);
    say!(
        node.out,
        "etcd",
        "Announced new etcd member joining to the existing etcd cluster"
    );
    crate::etcd_members::join_member(
        &client,
        &cfg.node.name,
        &peer_url,
        |members| {
            let pod = manifests::etcd::etcd_pod_with_members(&cfg, &node.layout, members)
                .context("no local etcd in the cluster's configuration")?;
            say!(
                node.out,
                "etcd",
                "Creating static Pod manifest for {:?}",
                names::ETCD
            );
            crate::init::control_plane::write_manifest_in(
                &node,
                &node.layout.manifests_dir(),
                names::ETCD,
                &pod,
            )
        },
        crate::etcd_members::JoinTimeouts::default(),
        &node.out,
    )
}

/// How long this node's own API server may take to answer once its etcd member runs.
const LOCAL_API_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(180);

fn update_status(d: &mut JoinData) -> anyhow::Result<()> {
    let cfg = d.init_cfg()?.clone();
    let out = d.out.clone();
    let api = d.admin_cluster()?;
    let api = &api;
    // admin.conf names this node's own API server, which starts once its etcd member runs.
    let start = std::time::Instant::now();
    let mut last_report = std::time::Duration::ZERO;
    let cm = loop {
        match api.get::<k8s_openapi::api::core::v1::ConfigMap>(
            Some(names::KUBE_SYSTEM),
            names::KUBEADM_CONFIG_CONFIGMAP,
        ) {
            Ok(found) => {
                break found.context("the cluster has no kube-system/kubeadm-config ConfigMap")?;
            }
            Err(e) if start.elapsed() >= LOCAL_API_TIMEOUT => {
                return Err(e.context(format!(
                    "this node's API server did not answer within {}; \"kubeboot agent status\" shows its state and its log",
                    crate::health::human(LOCAL_API_TIMEOUT)
                )));
            }
            Err(_) => {
                if start.elapsed() - last_report >= std::time::Duration::from_secs(10) {
                    last_report = start.elapsed();
                    say!(
                        out,
                        "control-plane-join",
                        "Waiting for this node's API server to answer ({} elapsed)",
                        crate::health::human(start.elapsed())
                    );
                }
                std::thread::sleep(crate::cluster::API_CALL_RETRY_INTERVAL);
            }
        }
    };
    let _ = cm;
    // kubeadm: apiclient.MutateConfigMap, a read-modify-write that another control-plane
    // node joining at the same time cannot undo (a conflict reads again).
    api.mutate::<k8s_openapi::api::core::v1::ConfigMap>(
        Some(names::KUBE_SYSTEM),
        names::KUBEADM_CONFIG_CONFIGMAP,
        |cm| {
            let data = cm.data.get_or_insert_with(Default::default);
            let status = components::config::cluster_status_with_endpoint(
                data.get(names::CLUSTER_STATUS_KEY).map(String::as_str),
                &cfg.node.name,
                &cfg.local_api_endpoint,
            )?;
            data.insert(names::CLUSTER_STATUS_KEY.to_string(), status);
            Ok(())
        },
    )?;
    say!(
        d.out,
        "upload-config",
        "Storing the configuration used in ConfigMap {:?} in the {:?} Namespace",
        names::KUBEADM_CONFIG_CONFIGMAP,
        names::KUBE_SYSTEM
    );
    Ok(())
}
