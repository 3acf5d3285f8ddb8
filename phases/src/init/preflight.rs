//! `init` preflight checks (kubeadm: app/preflight/checks.go, RunInitNodeChecks), with
//! kubeadm's check names, plus kubeboot's own: each component binary present, runnable and of
//! the requested version.

use std::path::Path;

use crate::init::data::InitData;
use crate::init::resume::Interrupted;
use crate::preflight::{self, Check};
use crate::say;

/// The `preflight` phase.
pub fn phase() -> crate::runner::Phase<InitData> {
    crate::runner::Phase::new("preflight", "Run pre-flight checks", run).flags(&[
        "config",
        "kubernetes-version",
        "ignore-preflight-errors",
        "dry-run",
        "bin-dir",
        "node-name",
        "static-pod-runner",
    ])
}

fn run(d: &mut InitData) -> anyhow::Result<()> {
    say!(d.out, "preflight", "Running pre-flight checks");
    let resume = crate::init::resume::observe(&d.layout)?;
    if resume.is_some() {
        say!(
            d.out,
            "preflight",
            "An earlier init of this node was interrupted ({:?} is there): resuming it, what it made is reused",
            crate::init::resume::marker(&d.layout).display().to_string()
        );
    }
    let checks = checks(d, resume.as_ref());
    let findings = preflight::run_checks(&checks);
    if let Err(e) = preflight::report(&d.out, &findings, &d.ignore_preflight_errors) {
        let initialized = findings.iter().any(|f| {
            f.error.is_some()
                && f.name
                    .starts_with("FileAvailable--etc-kubernetes-manifests")
        });
        if initialized {
            anyhow::bail!(
                "{e}\n[preflight] This node already has a control plane from an earlier init; run \"kubeboot reset -f\" to start over"
            );
        }
        return Err(e);
    }
    d.resumed = resume;
    crate::init::resume::begin(d)?;
    match d.static_pod_runner {
        components::StaticPodRunner::Agent => say!(
            d.out,
            "preflight",
            "Component binaries found and of the right version; no images to pull"
        ),
        components::StaticPodRunner::Kubelet => say!(
            d.out,
            "preflight",
            "The kubelet runs the control plane from images: kubelet-start imports the archives of {:?} and checks them",
            d.layout.image_archives_dir().display().to_string()
        ),
    }
    Ok(())
}

fn checks(d: &InitData, resume: Option<&Interrupted>) -> Vec<Check> {
    let layout = &d.layout;
    // What an interrupted init of this node left is no error for the init that resumes it.
    let own_port = |port: u16| {
        let check = Check::port(port);
        match resume.cloned() {
            None => check,
            Some(r) => check.excused_if(
                "held by a Pod of the kubeboot agent the interrupted init started".into(),
                move || r.holds_port(port),
            ),
        }
    };
    let own_path = |check: Check, path: &Path| match resume.cloned() {
        None => check,
        Some(r) => {
            let path = path.to_path_buf();
            let layout = layout.clone();
            check.excused_if("left by the interrupted init".into(), move || {
                r.made(&layout, &path)
            })
        }
    };
    let mut checks = vec![
        Check::privileged_user(),
        Check::num_cpu(2),
        Check::mem(1700),
        Check::kubeboot_binary(&d.exe),
    ];
    checks.extend(control_plane_checks_with(d, &own_port, &own_path));
    checks.push(Check::file_content(
        Path::new("/proc/sys/net/ipv4/ip_forward"),
        "1",
    ));
    checks.push(Check::swap());
    for (exe, mandatory) in [
        ("ip", true),
        ("mount", true),
        ("nsenter", true),
        ("iptables", false),
        ("conntrack", false),
    ] {
        checks.push(Check::in_path(exe, mandatory));
    }
    // Under the kubelet runner the control plane comes from images, not host binaries.
    let mut pods = match d.static_pod_runner {
        components::StaticPodRunner::Agent => crate::init::control_plane::pods(d),
        components::StaticPodRunner::Kubelet => Vec::new(),
    };
    // kubeadm: CRICheck ("CRI"), then the node components the agent will run.
    match crate::init::kubelet_start::detect_cri(d, &d.cfg) {
        Ok(cri) => {
            let hostname = crate::host::hostname();
            pods.push((
                components::names::KUBELET.to_string(),
                manifests::kubelet::kubelet_pod(&d.cfg, layout, cri.socket(), &hostname),
            ));
            checks.push(Check::new("CRI", || preflight::Outcome::Ok));
        }
        Err(e) => {
            let msg = format!("{e:#}");
            checks.push(Check::new("CRI", move || {
                preflight::Outcome::Error(msg.clone())
            }));
        }
    }
    if d.pod_network == agent::cni::PodNetwork::Bridge {
        checks.push(cni_plugins_check());
    }
    // Before the binaries in them: a directory others can write is refused even empty.
    checks.extend(d.bin_dirs.iter().map(|dir| Check::bin_dir(dir)));
    checks.extend(preflight::binary_checks(&pods, &d.bin_dirs));
    checks
}

/// The checks of a node that will host a control plane (kubeadm: RunInitNodeChecks with
/// isSecondaryControlPlane): its ports, manifests and etcd data directory free.
pub fn control_plane_checks(d: &InitData) -> Vec<Check> {
    control_plane_checks_with(d, &|port| Check::port(port), &|check, _| check)
}

fn control_plane_checks_with(
    d: &InitData,
    own_port: &dyn Fn(u16) -> Check,
    own_path: &dyn Fn(Check, &Path) -> Check,
) -> Vec<Check> {
    let layout = &d.layout;
    let mut checks = Vec::new();
    let bind_port = d.cfg.local_api_endpoint.bind_port;
    for port in [
        bind_port,
        components::names::KUBE_SCHEDULER_PORT,
        components::names::KUBE_CONTROLLER_MANAGER_PORT,
    ] {
        checks.push(own_port(port));
    }
    for c in [
        components::names::KUBE_APISERVER,
        components::names::KUBE_CONTROLLER_MANAGER,
        components::names::KUBE_SCHEDULER,
        components::names::ETCD,
    ] {
        let manifest = layout.manifest(c);
        checks.push(own_path(
            Check::file_available(&manifest, layout),
            &manifest,
        ));
    }
    if let components::config::Etcd::Local(local) = &d.cfg.cluster.etcd {
        checks.push(own_port(components::names::ETCD_CLIENT_PORT));
        checks.push(own_port(components::names::ETCD_PEER_PORT));
        let data_dir = layout.node_path(&local.data_dir);
        checks.push(own_path(Check::dir_available(&data_dir, layout), &data_dir));
    }
    checks
}

/// `CNIPlugins`: the plugins kubeboot's bridge network runs, present and trusted (the agent
/// runs them as root for every pod network).
pub fn cni_plugins_check() -> Check {
    Check::new("CNIPlugins", || {
        match agent::cni::plugin_dir(&agent::cni::default_plugin_dirs(), |p| p.is_file()) {
            Ok(dir) => agent::cni::REQUIRED_PLUGINS
                .iter()
                .find_map(|p| agent::host::trust::check_binary(&dir.join(p)).err())
                .map_or(preflight::Outcome::Ok, |e| {
                    preflight::Outcome::Error(e.to_string())
                }),
            Err(e) => preflight::Outcome::Error(e.to_string()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::data::tests::test_data;

    fn binary_checks_of(d: &InitData) -> Vec<String> {
        checks(d, None)
            .into_iter()
            .map(|c| c.name)
            .filter(|n| n.starts_with("ComponentBinary-"))
            .collect()
    }

    #[test]
    fn every_bin_dir_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = test_data(dir.path());
        d.bin_dirs = vec![
            std::path::PathBuf::from("/opt/k8s/bin"),
            std::path::PathBuf::from("/usr/bin"),
        ];
        let names: Vec<String> = checks(&d, None).into_iter().map(|c| c.name).collect();
        for want in ["BinDir--opt-k8s-bin", "BinDir--usr-bin"] {
            assert!(names.iter().any(|n| n == want), "{names:?}");
        }
    }

    #[test]
    fn control_plane_binaries_are_needed_only_when_the_agent_runs_the_control_plane() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = test_data(dir.path());
        let agent = binary_checks_of(&d);
        for b in [
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "etcd",
        ] {
            assert!(agent.contains(&format!("ComponentBinary-{b}")), "{agent:?}");
        }
        d.static_pod_runner = components::StaticPodRunner::Kubelet;
        let kubelet = binary_checks_of(&d);
        assert!(
            !kubelet
                .iter()
                .any(|n| n.contains("kube-apiserver") || n.contains("etcd")),
            "{kubelet:?}"
        );
    }
}
