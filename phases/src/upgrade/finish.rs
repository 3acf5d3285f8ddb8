//! The upgrade's last steps: the kubelet's configuration, kubeadm-config (`apply`) and the
//! addons once every API server runs the new version.

use anyhow::Context;
use components::{Version, catalogue, names};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::ConfigMap;

use super::apply::{Command, NodeFacts, Request, with_tag};
use super::diff;
use crate::out::Out;
use crate::say;

/// The kubelet's configuration from the cluster's ConfigMap for `target` (`apply` creates it
/// for a new minor from the current one, as kubeadm's upgrade does), written to
/// `/var/lib/kubelet/config.yaml` with this node's adjustments.
pub(super) fn kubelet_config(
    req: &Request,
    out: &Out,
    view: &super::observe::ClusterView,
    target: &Version,
    facts: &NodeFacts,
) -> anyhow::Result<()> {
    use manifests::cluster::kubelet_config::{
        kubelet_config_map, kubelet_config_map_name, kubelet_config_rbac,
    };
    let api = &view.api;
    let name = kubelet_config_map_name(target);
    let mut cm = api.get::<ConfigMap>(Some(names::KUBE_SYSTEM), &name)?;
    if cm.is_none() && req.command == Command::Apply {
        let current = kubelet_config_map_name(&view.cluster.kubernetes_version);
        let old = api
            .get::<ConfigMap>(Some(names::KUBE_SYSTEM), &current)?
            .with_context(|| {
                format!("the cluster has neither kube-system/{name} nor kube-system/{current}")
            })?;
        let yaml = old
            .data
            .as_ref()
            .and_then(|d| d.get("kubelet"))
            .cloned()
            .unwrap_or_default();
        say!(
            out,
            "kubelet",
            "Creating a ConfigMap {name:?} in namespace kube-system with the configuration for the kubelets in the cluster"
        );
        let fresh = kubelet_config_map(target, &yaml, false);
        api.create_or_update(&fresh)?;
        let (role, binding) = kubelet_config_rbac(target);
        api.create_or_update(&role)?;
        api.create_or_update(&binding)?;
        cm = Some(fresh);
    }
    let cm = cm.with_context(|| format!("the cluster has no kube-system/{name} ConfigMap: run \"kubeboot upgrade apply {target}\" on the first control-plane node first"))?;
    let yaml = cm
        .data
        .as_ref()
        .and_then(|d| d.get("kubelet"))
        .with_context(|| format!("kube-system/{name} has no \"kubelet\" key"))?;
    let node_yaml =
        manifests::kubelet::node_kubelet_configuration_from_cluster(yaml, facts.runner)?;
    let path = req
        .inputs
        .layout
        .kubelet_dir()
        .join(names::KUBELET_CONFIG_FILE);
    if req.inputs.fs.read_string_if_exists(&path)?.as_deref() != Some(node_yaml.as_str()) {
        say!(
            out,
            "kubelet-start",
            "Writing kubelet configuration to file {:?}",
            path.display().to_string()
        );
        req.inputs.fs.write_public(&path, node_yaml.as_bytes())?;
    }
    Ok(())
}

/// kubeadm-config with the new version (`upgrade apply`), as kubeadm's upload-config.
pub(super) fn upload_config(
    req: &Request,
    out: &Out,
    view: &super::observe::ClusterView,
    target: &Version,
    facts: &NodeFacts,
) -> anyhow::Result<()> {
    let layout = &req.inputs.layout;
    let api_path = layout.manifest(names::KUBE_APISERVER);
    let shown = api_path.display().to_string();
    let text = req
        .inputs
        .fs
        .read_string_if_exists(&api_path)?
        .with_context(|| format!("{shown:?} is missing"))?;
    let endpoint = diff::local_endpoint(&shown, &text)?;
    let mut cfg = diff::target_config(&view.cluster, endpoint, target);
    cfg.node.name = facts.name.clone();
    say!(
        out,
        "upload-config",
        "Storing the configuration used in ConfigMap {:?} in the {:?} Namespace",
        names::KUBEADM_CONFIG_CONFIGMAP,
        names::KUBE_SYSTEM
    );
    let existing = view
        .api
        .get::<ConfigMap>(Some(names::KUBE_SYSTEM), names::KUBEADM_CONFIG_CONFIGMAP)?;
    let cm = manifests::cluster::kubeadm_config_map(&cfg, existing.as_ref())?;
    view.api.create_or_update(&cm)?;
    Ok(())
}

/// The addons at `target` once every API server of ClusterStatus runs it (the last control
/// plane upgraded): kube-proxy's DaemonSet image; the DNS image follows the catalogue.
pub(super) fn addons(
    req: &Request,
    out: &Out,
    view: &super::observe::ClusterView,
    target: &Version,
) -> anyhow::Result<()> {
    let cert_dir = req.inputs.layout.node_path(&view.cluster.certificates_dir);
    let servers = super::observe::api_server_versions(view, &req.inputs.fs, &cert_dir);
    let behind: Vec<String> = servers
        .iter()
        .filter(|a| a.version.as_ref().ok() != Some(target))
        .map(|a| a.node.clone())
        .collect();
    if !behind.is_empty() {
        say!(
            out,
            "upgrade/addons",
            "Skipping the addons: the API servers of {} do not run {target} yet; the \"kubeboot upgrade node\" that upgrades the last of them applies them",
            behind.join(", ")
        );
        return Ok(());
    }
    let tag = catalogue::kubernetes_image_tag(target);
    if let Some(mut ds) = view
        .api
        .get::<DaemonSet>(Some(names::KUBE_SYSTEM), names::KUBE_PROXY)?
    {
        let mut changed = false;
        for c in ds
            .spec
            .template
            .spec
            .iter_mut()
            .flat_map(|s| s.containers.iter_mut())
        {
            if let Some(image) = &c.image
                && let Ok(r) = components::image::ImageRef::parse(image)
                && r.tag.as_deref() != Some(tag.as_str())
            {
                c.image = Some(with_tag(r, &tag));
                changed = true;
            }
        }
        if changed {
            ds.metadata.resource_version = None;
            view.api.create_or_update(&ds)?;
        }
        say!(out, "addons", "Applied essential addon: kube-proxy");
    }
    Ok(())
}
