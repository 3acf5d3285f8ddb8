//! `init` preflight checks (kubeadm: app/preflight/checks.go, RunInitNodeChecks), with
//! kubeadm's check names, plus kubeboot's own: each component binary present, runnable and of
//! the requested version.

use std::path::Path;

use crate::init::data::InitData;
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
    ])
}

fn run(d: &mut InitData) -> anyhow::Result<()> {
    say!(d.out, "preflight", "Running pre-flight checks");
    let checks = checks(d);
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
    say!(
        d.out,
        "preflight",
        "Component binaries found and of the right version; no images to pull"
    );
    Ok(())
}

fn checks(d: &InitData) -> Vec<Check> {
    let layout = &d.layout;
    let mut checks = vec![
        Check::privileged_user(),
        Check::num_cpu(2),
        Check::mem(1700),
    ];
    let bind_port = d.cfg.local_api_endpoint.bind_port;
    for port in [
        bind_port,
        components::names::KUBE_SCHEDULER_PORT,
        components::names::KUBE_CONTROLLER_MANAGER_PORT,
    ] {
        checks.push(Check::port(port));
    }
    for c in [
        components::names::KUBE_APISERVER,
        components::names::KUBE_CONTROLLER_MANAGER,
        components::names::KUBE_SCHEDULER,
        components::names::ETCD,
    ] {
        checks.push(Check::file_available(&layout.manifest(c), layout));
    }
    if let components::config::Etcd::Local(local) = &d.cfg.cluster.etcd {
        checks.push(Check::port(components::names::ETCD_CLIENT_PORT));
        checks.push(Check::port(components::names::ETCD_PEER_PORT));
        checks.push(Check::dir_available(
            &layout.node_path(&local.data_dir),
            layout,
        ));
    }
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
    let mut pods = crate::init::control_plane::pods(d);
    // kubeadm: CRICheck ("CRI"), then the node components the agent will run.
    match crate::init::kubelet_start::detect_cri(d) {
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
        checks.push(Check::new("CNIPlugins", || {
            match agent::cni::plugin_dir(&agent::cni::default_plugin_dirs(), |p| p.is_file()) {
                Ok(_) => preflight::Outcome::Ok,
                Err(e) => preflight::Outcome::Error(e.to_string()),
            }
        }));
    }
    checks.extend(preflight::binary_checks(&pods, &d.bin_dirs));
    checks
}
