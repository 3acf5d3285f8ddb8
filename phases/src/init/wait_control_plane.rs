//! `init phase wait-control-plane`: waits until etcd, the API server, the controller manager
//! and the scheduler answer their health endpoints (kubeadm: app/cmd/phases/init/
//! waitcontrolplane.go). The endpoints are the manifests' own probes, so the wait checks
//! exactly what the agent checks. On timeout it names each unhealthy component with what the
//! agent knows of it and its last log lines.

use std::time::{Duration, Instant};

use crate::health::{self, Target};
use crate::init::data::InitData;
use crate::runner::Phase;
use crate::say;

/// The `wait-control-plane` phase.
pub fn phase() -> Phase<InitData> {
    Phase::new(
        "wait-control-plane",
        "Wait for the control plane to start",
        run,
    )
    .hidden()
}

fn run(d: &mut InitData) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(
        d.cfg
            .cluster
            .api_server
            .timeout_for_control_plane_secs
            .max(1),
    );
    let dir = d.layout.manifests_dir();
    if d.dry_run {
        say!(
            d.out,
            "dryrun",
            "Would wait for the control plane to become healthy (up to {})",
            health::human(timeout)
        );
        return Ok(());
    }
    say!(
        d.out,
        "wait-control-plane",
        "Waiting for the {} to boot up the control plane as static Pods from directory {:?}. This can take up to {}",
        match d.static_pod_runner {
            components::StaticPodRunner::Agent => "kubeboot agent",
            components::StaticPodRunner::Kubelet => "kubelet",
        },
        dir.display().to_string(),
        health::human(timeout)
    );
    let pods = crate::init::control_plane::pods(d);
    let targets: Vec<Target> = health::targets(&pods);
    let start = Instant::now();
    let result = health::wait_all(&targets, timeout, |pending, elapsed| {
        say!(
            d.out,
            "wait-control-plane",
            "Still waiting for {} ({} elapsed)",
            pending.join(", "),
            health::human(elapsed)
        );
    });
    match result {
        Ok(()) => {
            say!(
                d.out,
                "apiclient",
                "All control plane components are healthy after {:.6} seconds",
                start.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Err(failures) => {
            let mut text = health::explain_timeout(&d.layout, &failures, timeout);
            if d.static_pod_runner == components::StaticPodRunner::Kubelet {
                text.push_str(
                    "\nThe kubelet runs the control plane here: see its log with 'kubeboot agent status' (the kubelet Pod's log file), and the containers with 'ctr -n k8s.io containers list' or 'crictl ps -a'",
                );
            }
            Err(anyhow::anyhow!(text))
        }
    }
}
