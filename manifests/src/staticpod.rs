//! Small builders mirroring kubeadm's `util/staticpod/utils.go`.

use std::collections::BTreeMap;

use components::catalogue::{self, Component, ProbeKind, Scheme};
use components::names;
use k8s_openapi::api::core::v1::{
    Container, HTTPGetAction, HostPathVolumeSource, Pod, PodSpec, Probe, ResourceRequirements,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// A control-plane static pod around one container (kubeadm: staticpod.ComponentPod): named
/// after the container, in `kube-system`, labelled `component` and `tier: control-plane`,
/// host network, priority class `system-node-critical`, volumes sorted by name.
pub fn component_pod(
    container: Container,
    mut volumes: Vec<Volume>,
    annotations: BTreeMap<String, String>,
) -> Pod {
    volumes.sort_by(|a, b| a.name.cmp(&b.name));
    let labels = BTreeMap::from([
        (names::LABEL_COMPONENT.to_string(), container.name.clone()),
        (
            names::LABEL_TIER.to_string(),
            names::TIER_CONTROL_PLANE.to_string(),
        ),
    ]);
    Pod {
        metadata: ObjectMeta {
            name: Some(container.name.clone()),
            namespace: Some(names::KUBE_SYSTEM.to_string()),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![container],
            priority_class_name: Some(names::PRIORITY_CLASS_NODE_CRITICAL.to_string()),
            host_network: Some(true),
            volumes: (!volumes.is_empty()).then_some(volumes),
            ..PodSpec::default()
        }),
        status: None,
    }
}

/// A hostPath volume (kubeadm: staticpod.NewVolume). An empty `path_type` means none.
pub fn host_path_volume(name: &str, path: &str, path_type: &str) -> Volume {
    Volume {
        name: name.to_string(),
        host_path: Some(HostPathVolumeSource {
            path: path.to_string(),
            type_: (!path_type.is_empty()).then(|| path_type.to_string()),
        }),
        ..Volume::default()
    }
}

/// A volume mount (kubeadm: staticpod.NewVolumeMount); `readOnly: false` is left out, as Go's
/// `omitempty` does.
pub fn volume_mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_string(),
        mount_path: path.to_string(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

/// Probe timings: initial delay, timeout, failure threshold, period (seconds and counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeTiming {
    /// initialDelaySeconds.
    pub initial_delay_seconds: i32,
    /// timeoutSeconds.
    pub timeout_seconds: i32,
    /// failureThreshold.
    pub failure_threshold: i32,
    /// periodSeconds.
    pub period_seconds: i32,
}

/// kubeadm's liveness timing: skip one period, 15s timeout, 8 failures, every 10s.
pub const LIVENESS: ProbeTiming = ProbeTiming {
    initial_delay_seconds: 10,
    timeout_seconds: 15,
    failure_threshold: 8,
    period_seconds: 10,
};

/// kubeadm's readiness timing: no delay, 15s timeout, 3 failures, every second.
pub const READINESS: ProbeTiming = ProbeTiming {
    initial_delay_seconds: 0,
    timeout_seconds: 15,
    failure_threshold: 3,
    period_seconds: 1,
};

/// kubeadm's startup timing: enough failures every 10s to cover the control-plane timeout
/// (`timeoutForControlPlane`, 0 meaning kubeadm's default of 4 minutes).
pub fn startup_timing(timeout_for_control_plane_secs: u64) -> ProbeTiming {
    let period = catalogue::STARTUP_PROBE_PERIOD_SECS;
    let timeout = match timeout_for_control_plane_secs {
        0 => catalogue::DEFAULT_CONTROL_PLANE_TIMEOUT_SECS,
        secs => secs,
    };
    let failures = i32::try_from(timeout.div_ceil(period)).unwrap_or(i32::MAX);
    let period = i32::try_from(period).expect("the startup period fits an i32");
    ProbeTiming {
        initial_delay_seconds: period,
        timeout_seconds: 15,
        failure_threshold: failures,
        period_seconds: period,
    }
}

/// An HTTP GET probe (kubeadm: createHTTPProbe). An empty host is left out (the kubelet then
/// probes the pod IP); zero values are left out, as Go's `omitempty` does.
pub fn http_probe(host: &str, path: &str, port: u16, scheme: Scheme, timing: ProbeTiming) -> Probe {
    let nonzero = |n: i32| (n != 0).then_some(n);
    Probe {
        http_get: Some(HTTPGetAction {
            host: (!host.is_empty()).then(|| host.to_string()),
            path: Some(path.to_string()),
            port: IntOrString::Int(i32::from(port)),
            scheme: Some(scheme.as_str().to_string()),
            ..HTTPGetAction::default()
        }),
        initial_delay_seconds: nonzero(timing.initial_delay_seconds),
        timeout_seconds: nonzero(timing.timeout_seconds),
        failure_threshold: nonzero(timing.failure_threshold),
        period_seconds: nonzero(timing.period_seconds),
        ..Probe::default()
    }
}

/// Where a component's probes go: host, port and scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeTarget {
    /// Host ("" for the pod IP).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Scheme.
    pub scheme: Scheme,
}

/// The liveness, readiness and startup probes the catalogue lists for `component` at
/// `version`, all aimed at `target`.
pub fn component_probes(
    component: Component,
    version: &components::Version,
    target: &ProbeTarget,
    timeout_for_control_plane_secs: u64,
) -> (Option<Probe>, Option<Probe>, Option<Probe>) {
    let probe = |kind, timing| {
        catalogue::probe_path(component, kind, version)
            .map(|path| http_probe(&target.host, path, target.port, target.scheme, timing))
    };
    (
        probe(ProbeKind::Liveness, LIVENESS),
        probe(ProbeKind::Readiness, READINESS),
        probe(
            ProbeKind::Startup,
            startup_timing(timeout_for_control_plane_secs),
        ),
    )
}

/// A probe address from a bind address: the unspecified addresses cannot be probed, so they
/// become "" and the kubelet uses the pod IP (kubeadm: getProbeAddress).
pub fn probe_address(addr: &str) -> String {
    match addr {
        "0.0.0.0" | "::" => String::new(),
        other => other.to_string(),
    }
}

/// Resource requests from `(resource, quantity)` pairs (kubeadm: staticpod.ComponentResources).
pub fn component_resources<'a>(
    requests: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> ResourceRequirements {
    let requests: BTreeMap<String, Quantity> = requests
        .into_iter()
        .map(|(r, q)| (r.to_string(), Quantity(q.to_string())))
        .collect();
    ResourceRequirements {
        requests: Some(requests),
        ..ResourceRequirements::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_threshold_covers_the_timeout() {
        assert_eq!(startup_timing(240).failure_threshold, 24);
        assert_eq!(startup_timing(0).failure_threshold, 24);
        assert_eq!(startup_timing(241).failure_threshold, 25);
        assert_eq!(startup_timing(5).failure_threshold, 1);
    }

    #[test]
    fn readiness_leaves_zero_delay_out() {
        let p = http_probe("127.0.0.1", "/readyz", 6443, Scheme::Https, READINESS);
        assert_eq!(p.initial_delay_seconds, None);
        assert_eq!(p.period_seconds, Some(1));
    }

    #[test]
    fn unspecified_bind_addresses_probe_the_pod_ip() {
        assert_eq!(probe_address("0.0.0.0"), "");
        assert_eq!(probe_address("::"), "");
        assert_eq!(probe_address("10.0.0.1"), "10.0.0.1");
        let p = http_probe("", "/healthz", 10257, Scheme::Https, LIVENESS);
        assert_eq!(p.http_get.unwrap().host, None);
    }

    #[test]
    fn component_pod_sorts_volumes_and_labels() {
        let c = Container {
            name: "kube-scheduler".into(),
            ..Container::default()
        };
        let pod = component_pod(
            c,
            vec![
                host_path_volume("b", "/b", ""),
                host_path_volume("a", "/a", "FileOrCreate"),
            ],
            BTreeMap::new(),
        );
        let spec = pod.spec.unwrap();
        let names: Vec<_> = spec
            .volumes
            .unwrap()
            .iter()
            .map(|v| v.name.clone())
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(pod.metadata.labels.unwrap()["component"], "kube-scheduler");
        assert_eq!(pod.metadata.annotations, None);
    }
}
