//! `init phase upload-config`: the kubeadm ClusterConfiguration and the kubelet's
//! configuration as ConfigMaps in kube-system, with the Roles that let nodes and bootstrap
//! tokens read them (kubeadm: app/cmd/phases/init/uploadconfig.go,
//! phases/uploadconfig/uploadconfig.go, phases/kubelet/config.go).

use anyhow::Context;
use components::names;
use k8s_openapi::api::core::v1::ConfigMap;
use manifests::cluster;

use crate::init::data::InitData;
use crate::runner::Phase;
use crate::say;

const FLAGS: &[&str] = &["config", "kubeconfig", "dry-run"];

/// The `upload-config` phase with its `kubeadm` and `kubelet` sub-phases.
pub fn phase() -> Phase<InitData> {
    Phase::group(
        "upload-config",
        "Upload the kubeadm and kubelet configuration to a ConfigMap",
        vec![
            Phase::new(
                "kubeadm",
                "Upload the kubeadm ClusterConfiguration to a ConfigMap",
                run_kubeadm,
            )
            .flags(FLAGS),
            Phase::new(
                "kubelet",
                "Upload the kubelet component config to a ConfigMap",
                run_kubelet,
            )
            .flags(FLAGS),
        ],
    )
}

fn run_kubeadm(d: &mut InitData) -> anyhow::Result<()> {
    let cfg = d.cfg.clone();
    let out = d.out.clone();
    say!(
        out,
        "upload-config",
        "Storing the configuration used in ConfigMap {:?} in the {:?} Namespace",
        names::KUBEADM_CONFIG_CONFIGMAP,
        names::KUBE_SYSTEM
    );
    let c = d.cluster()?;
    // kubeadm: CreateOrMutateConfigMap: create; if it exists, add this node's endpoint to
    // the ClusterStatus already there.
    let fresh = cluster::kubeadm_config_map(&cfg, None)?;
    if !c
        .create_or_retain(&fresh)
        .context("error uploading the kubeadm ClusterConfiguration")?
    {
        let existing: Option<ConfigMap> =
            c.get(Some(names::KUBE_SYSTEM), names::KUBEADM_CONFIG_CONFIGMAP)?;
        let merged = cluster::kubeadm_config_map(&cfg, existing.as_ref())?;
        c.create_or_update(&merged)
            .context("error uploading the kubeadm ClusterConfiguration")?;
    }
    let (role, binding) = cluster::nodes_kubeadm_config_rbac();
    c.create_or_update(&role)?;
    c.create_or_update(&binding)?;
    Ok(())
}

fn run_kubelet(d: &mut InitData) -> anyhow::Result<()> {
    let cfg = d.cfg.clone();
    let out = d.out.clone();
    let version = &cfg.cluster.kubernetes_version;
    say!(
        out,
        "kubelet",
        "Creating a ConfigMap {:?} in namespace {} with the configuration for the kubelets in the cluster",
        cluster::kubelet_config_map_name(version),
        names::KUBE_SYSTEM
    );
    let kubelet_yaml = manifests::kubelet::kubelet_configuration_yaml(&cfg);
    let user_supplied = manifests::kubelet::user_kubelet_configuration(&cfg).is_some();
    let c = d.cluster()?;
    c.create_or_update(&cluster::kubelet_config_map(
        version,
        &kubelet_yaml,
        user_supplied,
    ))
    .context("error creating kubelet configuration ConfigMap")?;
    let (role, binding) = cluster::kubelet_config_rbac(version);
    c.create_or_update(&role)
        .and_then(|()| c.create_or_update(&binding))
        .context("error creating kubelet configuration configmap RBAC rules")?;
    Ok(())
}
