//! `init phase control-plane`: the static pod manifests of kube-apiserver,
//! kube-controller-manager and kube-scheduler (kubeadm: app/cmd/phases/init/controlplane.go).

use components::pod_cidr::Allocation;
use k8s_openapi::api::core::v1::Pod;

use crate::init::data::InitData;
use crate::runner::Phase;
use crate::say;

const FLAGS: &[&str] = &[
    "cert-dir",
    "config",
    "kubernetes-version",
    "apiserver-advertise-address",
    "apiserver-bind-port",
    "service-cidr",
    "pod-network-cidr",
    "control-plane-endpoint",
    "image-repository",
    "feature-gates",
    "dry-run",
];

/// The `control-plane` phase and its per-component sub-phases.
pub fn phase() -> Phase<InitData> {
    let sub = |name: &'static str, short: &'static str| {
        Phase::new(name, short, move |d: &mut InitData| {
            write(d, component_of(name))
        })
        .flags(FLAGS)
    };
    Phase::group(
        "control-plane",
        "Generate all static Pod manifest files necessary to establish the control plane",
        vec![
            sub(
                "apiserver",
                "Generates the kube-apiserver static Pod manifest",
            ),
            sub(
                "controller-manager",
                "Generates the kube-controller-manager static Pod manifest",
            ),
            sub(
                "scheduler",
                "Generates the kube-scheduler static Pod manifest",
            ),
        ],
    )
    .flags(FLAGS)
}

fn component_of(phase: &str) -> &'static str {
    match phase {
        "apiserver" => components::names::KUBE_APISERVER,
        "controller-manager" => components::names::KUBE_CONTROLLER_MANAGER,
        _ => components::names::KUBE_SCHEDULER,
    }
}

/// The control-plane static pods (etcd included when local) this node runs, built purely from
/// the config.
pub fn pods(d: &InitData) -> Vec<(String, Pod)> {
    manifests::control_plane_pods(&d.cfg, &d.layout, &d.host_paths)
}

fn write(d: &mut InitData, component: &'static str) -> anyhow::Result<()> {
    let manifests_dir = d.layout.manifests_dir();
    if component == components::names::KUBE_APISERVER {
        say!(
            d.out,
            "control-plane",
            "Using manifest folder {:?}",
            manifests_dir.display().to_string()
        );
    }
    let pod = pods(d)
        .into_iter()
        .find(|(name, _)| name == component)
        .map(|(_, pod)| pod)
        .ok_or_else(|| {
            anyhow::anyhow!("no static pod for {component} in the component catalogue")
        })?;
    say!(
        d.out,
        "control-plane",
        "Creating static Pod manifest for {component:?}"
    );
    write_manifest(d, component, &pod)?;
    if component == components::names::KUBE_CONTROLLER_MANAGER
        && let Allocation::Kubeboot(_) = Allocation::of(&agent::node_ipam::container_command(&pod))
    {
        say!(
            d.out,
            "control-plane",
            "The controller-manager runs without its node IPAM controller: the kubeboot agents of the control-plane nodes give Nodes their podCIDRs, the range allocator's choice (controllerManager.extraArgs.controllers in the ClusterConfiguration records it)"
        );
    }
    Ok(())
}

/// Writes one static pod manifest (0600 like kubeadm, in a 0700 directory), leaving an
/// identical existing file untouched.
pub fn write_manifest(d: &InitData, component: &str, pod: &Pod) -> anyhow::Result<()> {
    write_manifest_in(d, &d.layout.manifests_dir(), component, pod)
}

/// [`write_manifest`] into `dir` (`<dir>/<component>.yaml`).
pub fn write_manifest_in(
    d: &crate::shared::node::NodeCtx,
    dir: &std::path::Path,
    component: &str,
    pod: &Pod,
) -> anyhow::Result<()> {
    let path = dir.join(format!("{component}.yaml"));
    let yaml = manifests::yaml::to_yaml(pod);
    crate::node_record::create_dir(&d.fs, &d.layout, dir, 0o700)?;
    if d.fs.read_if_exists(&path)?.as_deref() == Some(yaml.as_bytes()) {
        tracing::info!(path = %path.display(), "manifest unchanged");
        return Ok(());
    }
    crate::node_record::note_file(&d.fs, &d.layout, &path)?;
    d.fs.write_private(&path, yaml.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::data::tests::test_data;
    use components::config::{HostFacts, InitFlags, resolve_init};

    const NO_NODE_IPAM: &str = "[control-plane] The controller-manager runs without its node IPAM controller: the kubeboot agents of the control-plane nodes give Nodes their podCIDRs, the range allocator's choice (controllerManager.extraArgs.controllers in the ClusterConfiguration records it)\n";

    fn with_pod_network(d: &mut InitData) {
        let flags = InitFlags {
            apiserver_advertise_address: Some("10.123.0.2".into()),
            kubernetes_version: Some("v1.20.2".into()),
            node_name: Some("node1".into()),
            pod_network_cidr: Some("10.244.0.0/16".into()),
            ..Default::default()
        };
        d.cfg = resolve_init(&flags, &HostFacts::default()).expect("valid config");
    }

    #[test]
    fn says_when_the_kubeboot_agents_give_the_pod_cidrs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut d = test_data(dir.path());
        with_pod_network(&mut d);
        write(&mut d, components::names::KUBE_CONTROLLER_MANAGER).expect("writes");
        let out = d.out.captured();
        assert!(
            out.ends_with(&format!(
                "[control-plane] Creating static Pod manifest for \"kube-controller-manager\"\n{NO_NODE_IPAM}"
            )),
            "{out}"
        );
        let manifest = std::fs::read_to_string(
            dir.path()
                .join("etc/kubernetes/manifests/kube-controller-manager.yaml"),
        )
        .expect("manifest");
        assert!(
            manifest.contains("--controllers=*,bootstrapsigner,tokencleaner,-nodeipam"),
            "{manifest}"
        );
    }

    #[test]
    fn says_nothing_more_where_the_controller_manager_allocates_or_nobody_does() {
        // No pod network: nobody allocates.
        let dir = tempfile::tempdir().expect("tempdir");
        let mut d = test_data(dir.path());
        write(&mut d, components::names::KUBE_CONTROLLER_MANAGER).expect("writes");
        assert!(
            !d.out.captured().contains("node IPAM"),
            "{}",
            d.out.captured()
        );
        // The user's own controllers: the controller-manager allocates.
        let dir = tempfile::tempdir().expect("tempdir");
        let mut d = test_data(dir.path());
        with_pod_network(&mut d);
        d.cfg
            .cluster
            .controller_manager
            .extra_args
            .insert("controllers".into(), "*".into());
        write(&mut d, components::names::KUBE_CONTROLLER_MANAGER).expect("writes");
        assert!(
            !d.out.captured().contains("node IPAM"),
            "{}",
            d.out.captured()
        );
        // Other components never say it.
        let dir = tempfile::tempdir().expect("tempdir");
        let mut d = test_data(dir.path());
        with_pod_network(&mut d);
        write(&mut d, components::names::KUBE_SCHEDULER).expect("writes");
        assert!(
            !d.out.captured().contains("node IPAM"),
            "{}",
            d.out.captured()
        );
    }
}
