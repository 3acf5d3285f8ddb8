//! A static pod manifest read into what the agent runs: identity (UID from the content, as
//! the kubelet's static pods), containers, probes with the API defaults applied. Pure.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sha2::{Digest, Sha256};

/// The kubelet's default terminationGracePeriodSeconds.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);

/// The largest terminationGracePeriodSeconds the agent accepts: the most a Go
/// `time.Duration` (the kubelet's) holds, about 292 years. A larger value is refused when the
/// manifest is read, so that `now + grace` (the SIGKILL deadline) always fits an `Instant`
/// and a pod can always be stopped.
pub const MAX_GRACE_SECONDS: i64 = 9_223_372_036;

/// [`MAX_GRACE_SECONDS`] as a duration.
pub const MAX_GRACE: Duration = Duration::from_secs(MAX_GRACE_SECONDS as u64);

/// A pod's restartPolicy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Restart on every exit (the default).
    Always,
    /// Restart when the exit code is not 0.
    OnFailure,
    /// Never restart.
    Never,
}

/// One static pod as the agent runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct StaticPod {
    /// Hash of the node name and the manifest's bytes: a changed manifest is a new pod.
    pub uid: String,
    /// metadata.namespace, `default` when empty (kubelet: config/common.go applyDefaults).
    pub namespace: String,
    /// metadata.name, plus `-<nodeName>` when the agent knows its node name.
    pub name: String,
    /// The manifest file.
    pub manifest: PathBuf,
    /// spec.hostNetwork; without it the pod gets a network namespace of its own
    /// ([`crate::pod::network`]).
    pub host_network: bool,
    /// spec.restartPolicy.
    pub restart_policy: RestartPolicy,
    /// spec.terminationGracePeriodSeconds (default 30s).
    pub grace: Duration,
    /// spec.containers.
    pub containers: Vec<ContainerSpec>,
    /// Things in the manifest the agent ignores, to be logged.
    pub warnings: Vec<String>,
}

impl StaticPod {
    /// `<namespace>/<name>`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// One container of a static pod.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSpec {
    /// name.
    pub name: String,
    /// image.
    pub image: String,
    /// command (may be empty: the image's binary is run with `args`).
    pub command: Vec<String>,
    /// args.
    pub args: Vec<String>,
    /// env entries with a literal value.
    pub env: Vec<(String, String)>,
    /// workingDir.
    pub working_dir: Option<String>,
    /// Probes, with named ports already resolved; shared with the probes in flight.
    pub startup: Option<Arc<ProbeSpec>>,
    /// livenessProbe.
    pub liveness: Option<Arc<ProbeSpec>>,
    /// readinessProbe.
    pub readiness: Option<Arc<ProbeSpec>>,
    /// Something in the container the agent cannot run (valueFrom, unknown port name, ...).
    pub config_error: Option<String>,
    /// Hash of the container's spec.
    pub hash: String,
}

impl ContainerSpec {
    /// The probe of one kind.
    pub fn probe(&self, kind: ProbeKind) -> Option<&Arc<ProbeSpec>> {
        match kind {
            ProbeKind::Startup => self.startup.as_ref(),
            ProbeKind::Liveness => self.liveness.as_ref(),
            ProbeKind::Readiness => self.readiness.as_ref(),
        }
    }
}

/// Which probe.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ProbeKind {
    /// startupProbe.
    Startup,
    /// livenessProbe.
    Liveness,
    /// readinessProbe.
    Readiness,
}

impl ProbeKind {
    /// All kinds, startup first.
    pub const ALL: [ProbeKind; 3] = [
        ProbeKind::Startup,
        ProbeKind::Liveness,
        ProbeKind::Readiness,
    ];

    /// This kind's place in [`ProbeKind::ALL`].
    pub fn index(self) -> usize {
        match self {
            ProbeKind::Startup => 0,
            ProbeKind::Liveness => 1,
            ProbeKind::Readiness => 2,
        }
    }
}

impl std::fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProbeKind::Startup => "startup",
            ProbeKind::Liveness => "liveness",
            ProbeKind::Readiness => "readiness",
        })
    }
}

/// A probe's schedule and thresholds (the API defaults applied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeTiming {
    /// initialDelaySeconds (0).
    pub initial_delay: Duration,
    /// periodSeconds (10).
    pub period: Duration,
    /// timeoutSeconds (1).
    pub timeout: Duration,
    /// successThreshold (1).
    pub success_threshold: u32,
    /// failureThreshold (3).
    pub failure_threshold: u32,
}

/// A probe: what to check and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    /// What to check.
    pub handler: ProbeHandler,
    /// When, and how many results count.
    pub timing: ProbeTiming,
}

/// How a probe checks the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeHandler {
    /// httpGet: success is a status in 200..400.
    Http {
        /// HTTPS without certificate verification, as the kubelet.
        https: bool,
        /// host; `None`: the pod's IP (127.0.0.1 for hostNetwork pods), see
        /// [`crate::probe::Target::host`].
        host: Option<String>,
        /// port, named ports resolved.
        port: u16,
        /// path, `/` when empty.
        path: String,
        /// httpHeaders.
        headers: Vec<(String, String)>,
    },
    /// tcpSocket: success is a connection.
    Tcp {
        /// host; `None` as for [`ProbeHandler::Http`].
        host: Option<String>,
        /// port.
        port: u16,
    },
    /// exec: success is exit code 0.
    Exec {
        /// command.
        command: Vec<String>,
    },
}

/// A manifest the agent cannot read as a pod.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not YAML/JSON of a Pod.
    #[error("{path:?} is not a valid pod manifest: {message}")]
    Parse {
        /// The manifest.
        path: String,
        /// The parser's message.
        message: String,
    },
    /// A Pod with something missing.
    #[error("{path:?}: {message}")]
    Invalid {
        /// The manifest.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// True for files the agent reads as manifests: not hidden, ending in .yaml, .yml or .json
/// (kubelet: config/file.go ignores dot-files).
pub fn is_manifest_file(name: &str) -> bool {
    !name.starts_with('.')
        && [".yaml", ".yml", ".json"]
            .iter()
            .any(|ext| name.ends_with(ext))
}

/// Hex of the first 16 bytes of SHA-256 over `parts`, each length-prefixed.
fn hash_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Reads a manifest file's bytes into a [`StaticPod`].
///
/// # Errors
/// [`ManifestError::Parse`] when the bytes are not a Pod, [`ManifestError::Invalid`] when
/// the Pod has no name or no containers, or a grace period that is negative or above
/// [`MAX_GRACE_SECONDS`].
pub fn parse_manifest(
    path: &Path,
    bytes: &[u8],
    node_name: Option<&str>,
) -> Result<StaticPod, ManifestError> {
    let shown = path.display().to_string();
    let pod: Pod = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_slice(bytes).map_err(|e| ManifestError::Parse {
            path: shown.clone(),
            message: e.to_string(),
        })?
    } else {
        yaml_serde::from_slice(bytes).map_err(|e| ManifestError::Parse {
            path: shown.clone(),
            message: e.to_string(),
        })?
    };
    let invalid = |message: String| ManifestError::Invalid {
        path: shown.clone(),
        message,
    };
    if pod.metadata.name.as_deref().unwrap_or_default().is_empty() {
        return Err(invalid("metadata.name is missing".into()));
    }
    let base_name = pod.metadata.name.clone().unwrap_or_default();
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".into());
    let name = match node_name {
        Some(node) if !node.is_empty() => format!("{base_name}-{node}"),
        _ => base_name,
    };
    let spec = pod.spec.ok_or_else(|| invalid("spec is missing".into()))?;
    if spec.containers.is_empty() {
        return Err(invalid("spec.containers is empty".into()));
    }
    let restart_policy = match spec.restart_policy.as_deref() {
        None | Some("") | Some("Always") => RestartPolicy::Always,
        Some("OnFailure") => RestartPolicy::OnFailure,
        Some("Never") => RestartPolicy::Never,
        Some(other) => {
            return Err(invalid(format!(
                "spec.restartPolicy: {other:?} is not one of Always, OnFailure, Never"
            )));
        }
    };
    let grace = match spec.termination_grace_period_seconds {
        None => DEFAULT_GRACE,
        Some(s) if s < 0 => {
            return Err(invalid(format!(
                "spec.terminationGracePeriodSeconds: {s} must be greater than or equal to 0 (0 stops the pod at once)"
            )));
        }
        Some(s) if s > MAX_GRACE_SECONDS => {
            return Err(invalid(format!(
                "spec.terminationGracePeriodSeconds: {s} is too large (max {MAX_GRACE_SECONDS}, about 292 years)"
            )));
        }
        Some(s) => Duration::from_secs(s.unsigned_abs()),
    };
    let mut warnings = Vec::new();
    if let Some(init) = spec.init_containers.as_ref().filter(|i| !i.is_empty()) {
        let names: Vec<&str> = init.iter().map(|c| c.name.as_str()).collect();
        warnings.push(format!(
            "spec.initContainers ({}) are ignored: the process runtime does not run init containers yet",
            names.join(", ")
        ));
    }
    let host_network = spec.host_network.unwrap_or(false);
    let mut seen = std::collections::BTreeSet::new();
    let mut containers = Vec::new();
    for (i, c) in spec.containers.iter().enumerate() {
        if c.name.is_empty() {
            return Err(invalid(format!("spec.containers[{i}].name is missing")));
        }
        if !seen.insert(c.name.clone()) {
            return Err(invalid(format!(
                "spec.containers[{i}].name: duplicate name {:?}",
                c.name
            )));
        }
        containers.push(container_spec(i, c));
    }
    let uid = hash_hex(&[node_name.unwrap_or_default().as_bytes(), bytes]);
    Ok(StaticPod {
        uid,
        namespace,
        name,
        manifest: path.to_path_buf(),
        host_network,
        restart_policy,
        grace,
        containers,
        warnings,
    })
}

fn container_spec(i: usize, c: &Container) -> ContainerSpec {
    let field = |f: &str| format!("spec.containers[{i}].{f}");
    let mut errors = Vec::new();
    let mut env = Vec::new();
    for (j, e) in c.env.iter().flatten().enumerate() {
        if e.value_from.is_some() {
            errors.push(format!(
                "{}: env {:?} uses valueFrom, which the process runtime does not support; give it a value",
                field(&format!("env[{j}]")),
                e.name
            ));
        } else {
            env.push((e.name.clone(), e.value.clone().unwrap_or_default()));
        }
    }
    if c.env_from.as_ref().is_some_and(|e| !e.is_empty()) {
        errors.push(format!(
            "{}: envFrom is not supported by the process runtime",
            field("envFrom")
        ));
    }
    let ports: Vec<(String, u16)> = c
        .ports
        .iter()
        .flatten()
        .filter_map(|p| Some((p.name.clone()?, u16::try_from(p.container_port).ok()?)))
        .collect();
    let mut probe = |name: &str, p: &Option<Probe>| -> Option<Arc<ProbeSpec>> {
        let p = p.as_ref()?;
        match probe_spec(p, &ports) {
            Ok(s) => Some(Arc::new(s)),
            Err(e) => {
                errors.push(format!("{}: {e}", field(name)));
                None
            }
        }
    };
    let startup = probe("startupProbe", &c.startup_probe);
    let liveness = probe("livenessProbe", &c.liveness_probe);
    let readiness = probe("readinessProbe", &c.readiness_probe);
    let image = c.image.clone().unwrap_or_default();
    if image.is_empty() {
        errors.push(format!("{} is missing", field("image")));
    }
    let json = serde_json::to_vec(c).unwrap_or_default();
    ContainerSpec {
        name: c.name.clone(),
        image,
        command: c.command.clone().unwrap_or_default(),
        args: c.args.clone().unwrap_or_default(),
        env,
        working_dir: c.working_dir.clone().filter(|w| !w.is_empty()),
        startup,
        liveness,
        readiness,
        config_error: (!errors.is_empty()).then(|| errors.join("; ")),
        hash: hash_hex(&[&json]),
    }
}

/// A probe's non-negative number field, as the API validates it (kubernetes:
/// pkg/apis/core/validation/validation.go validateProbe, ValidateNonnegativeField); 0 and
/// unset both mean the default.
fn non_negative(name: &str, v: Option<i32>, default: u32) -> Result<u32, String> {
    match v {
        None | Some(0) => Ok(default),
        Some(n) => {
            u32::try_from(n).map_err(|_| format!("{name}: {n} must be greater than or equal to 0"))
        }
    }
}

/// Seconds of a probe field, at least `min`. An `i32` of seconds (68 years at most) keeps
/// every `now + period` inside an `Instant`.
fn seconds(name: &str, v: Option<i32>, default: u32, min: u32) -> Result<Duration, String> {
    Ok(Duration::from_secs(u64::from(
        non_negative(name, v, default)?.max(min),
    )))
}

fn resolve_port(port: &IntOrString, ports: &[(String, u16)]) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("port {n} is out of range")),
        IntOrString::String(s) => match s.parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => ports
                .iter()
                .find(|(name, _)| name == s)
                .map(|(_, p)| *p)
                .ok_or_else(|| format!("port {s:?} is not a named port of the container")),
        },
    }
}

/// Reads one probe with the API defaults (kubernetes: pkg/apis/core/v1/defaults.go
/// SetDefaults_Probe, SetDefaults_HTTPGetAction).
///
/// # Errors
/// A negative number field, an unknown scheme, an unresolvable port, no handler.
pub fn probe_spec(p: &Probe, ports: &[(String, u16)]) -> Result<ProbeSpec, String> {
    let timing = ProbeTiming {
        initial_delay: seconds("initialDelaySeconds", p.initial_delay_seconds, 0, 0)?,
        period: seconds("periodSeconds", p.period_seconds, 10, 1)?,
        timeout: seconds("timeoutSeconds", p.timeout_seconds, 1, 1)?,
        success_threshold: non_negative("successThreshold", p.success_threshold, 1)?,
        failure_threshold: non_negative("failureThreshold", p.failure_threshold, 3)?,
    };
    let host = |h: &Option<String>| h.clone().filter(|h| !h.is_empty());
    let handler = if let Some(h) = &p.http_get {
        let https = match h.scheme.as_deref() {
            None | Some("") | Some("HTTP") => false,
            Some("HTTPS") => true,
            Some(other) => return Err(format!("httpGet.scheme {other:?} is not HTTP or HTTPS")),
        };
        let path = h
            .path
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/".into());
        let path = if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        };
        ProbeHandler::Http {
            https,
            host: host(&h.host),
            port: resolve_port(&h.port, ports).map_err(|e| format!("httpGet: {e}"))?,
            path,
            headers: h
                .http_headers
                .iter()
                .flatten()
                .map(|x| (x.name.clone(), x.value.clone()))
                .collect(),
        }
    } else if let Some(t) = &p.tcp_socket {
        ProbeHandler::Tcp {
            host: host(&t.host),
            port: resolve_port(&t.port, ports).map_err(|e| format!("tcpSocket: {e}"))?,
        }
    } else if let Some(e) = &p.exec {
        let command = e.command.clone().unwrap_or_default();
        if command.is_empty() {
            return Err("exec.command is empty".into());
        }
        ProbeHandler::Exec { command }
    } else if p.grpc.is_some() {
        return Err("grpc probes are not supported by the agent yet".into());
    } else {
        return Err("the probe has no handler (httpGet, tcpSocket or exec)".into());
    };
    Ok(ProbeSpec { handler, timing })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_kind_s_index_is_its_place_in_all() {
        for (i, k) in ProbeKind::ALL.into_iter().enumerate() {
            assert_eq!(k.index(), i, "{k:?}");
        }
    }

    const APISERVER: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: kube-apiserver
  namespace: kube-system
spec:
  hostNetwork: true
  containers:
  - name: kube-apiserver
    image: k8s.gcr.io/kube-apiserver:v1.20.2
    command: [kube-apiserver, --secure-port=6443]
    env:
    - {name: A, value: "1"}
    ports:
    - {name: probe-port, containerPort: 6443}
    livenessProbe:
      httpGet: {host: 10.0.0.1, path: /livez, port: probe-port, scheme: HTTPS}
      initialDelaySeconds: 10
      timeoutSeconds: 15
      failureThreshold: 8
    readinessProbe:
      tcpSocket: {port: 6443}
    startupProbe:
      exec: {command: [sh, -c, "true"]}
      periodSeconds: 1
"#;

    fn parse(text: &str, node: Option<&str>) -> StaticPod {
        parse_manifest(Path::new("/m/pod.yaml"), text.as_bytes(), node).unwrap()
    }

    #[test]
    fn reads_a_kubeadm_manifest_with_defaults() {
        let p = parse(APISERVER, Some("node1"));
        assert_eq!(
            (p.namespace.as_str(), p.name.as_str()),
            ("kube-system", "kube-apiserver-node1")
        );
        assert!(p.host_network);
        assert_eq!(p.restart_policy, RestartPolicy::Always);
        assert_eq!(p.grace, DEFAULT_GRACE);
        assert_eq!(p.uid.len(), 32);
        let c = &p.containers[0];
        assert_eq!(c.command, ["kube-apiserver", "--secure-port=6443"]);
        assert_eq!(c.env, [("A".to_string(), "1".to_string())]);
        assert_eq!(c.config_error, None);
        let l = c.liveness.as_ref().unwrap();
        assert_eq!(
            l.handler,
            ProbeHandler::Http {
                https: true,
                host: Some("10.0.0.1".into()),
                port: 6443,
                path: "/livez".into(),
                headers: vec![]
            }
        );
        assert_eq!(l.timing.initial_delay, Duration::from_secs(10));
        assert_eq!(l.timing.timeout, Duration::from_secs(15));
        assert_eq!(
            (l.timing.success_threshold, l.timing.failure_threshold),
            (1, 8)
        );
        let r = c.readiness.as_ref().unwrap();
        assert_eq!(
            r.handler,
            ProbeHandler::Tcp {
                host: None,
                port: 6443
            }
        );
        assert_eq!(r.timing.period, Duration::from_secs(10));
        assert_eq!(r.timing.timeout, Duration::from_secs(1));
        assert_eq!(r.timing.failure_threshold, 3);
        let s = c.startup.as_ref().unwrap();
        assert!(matches!(&s.handler, ProbeHandler::Exec { command } if command.len() == 3));
        assert_eq!(s.timing.period, Duration::from_secs(1));
    }

    #[test]
    fn name_gets_the_node_suffix_only_with_a_node_name() {
        assert_eq!(parse(APISERVER, None).name, "kube-apiserver");
    }

    #[test]
    fn uid_follows_content_and_node() {
        let a = parse(APISERVER, Some("n1")).uid;
        assert_eq!(a, parse(APISERVER, Some("n1")).uid);
        assert_ne!(a, parse(APISERVER, Some("n2")).uid);
        assert_ne!(
            a,
            parse(&APISERVER.replace("6443]", "6444]"), Some("n1")).uid
        );
    }

    #[test]
    fn unsupported_fields_become_clear_reasons() {
        let text = r#"
metadata: {name: x}
spec:
  restartPolicy: OnFailure
  terminationGracePeriodSeconds: 2
  initContainers: [{name: init, image: busybox}]
  containers:
  - name: c
    image: k8s.gcr.io/kube-scheduler:v1.20.2
    env: [{name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}]
    livenessProbe: {httpGet: {port: metrics}}
"#;
        let p = parse(text, None);
        assert_eq!(p.namespace, "default");
        assert_eq!(p.restart_policy, RestartPolicy::OnFailure);
        assert_eq!(p.grace, Duration::from_secs(2));
        assert!(!p.host_network, "hostNetwork defaults to false");
        assert!(p.warnings[0].contains("initContainers"), "{:?}", p.warnings);
        let err = p.containers[0].config_error.as_deref().unwrap();
        assert!(
            err.contains("valueFrom") && err.contains("\"metrics\" is not a named port"),
            "{err}"
        );
    }

    #[test]
    fn broken_manifests_are_errors_naming_the_file() {
        for text in [
            "a: [",
            "metadata: {name: x}\nspec: {containers: []}",
            "spec: {containers: [{name: c}]}",
        ] {
            let err = parse_manifest(Path::new("/m/bad.yaml"), text.as_bytes(), None).unwrap_err();
            assert!(err.to_string().contains("/m/bad.yaml"), "{err}");
        }
    }

    fn pod_with(spec_lines: &str, probe_lines: &str) -> Result<StaticPod, ManifestError> {
        let text = format!(
            "metadata: {{name: x}}\nspec:\n{spec_lines}  containers:\n  - name: c\n    image: k8s.gcr.io/pause:3.2\n    livenessProbe:\n      tcpSocket: {{port: 1}}\n{probe_lines}"
        );
        parse_manifest(Path::new("/m/x.yaml"), text.as_bytes(), None)
    }

    /// Issue 8: `terminationGracePeriodSeconds: 9223372036854775807` was read as is and the
    /// SIGKILL deadline `now + grace` panicked the executor, so the pod was never stopped.
    #[test]
    fn grace_periods_outside_what_can_be_waited_are_refused() {
        let e = pod_with("  terminationGracePeriodSeconds: 9223372036854775807\n", "")
            .expect_err("huge");
        assert_eq!(
            e.to_string(),
            "\"/m/x.yaml\": spec.terminationGracePeriodSeconds: 9223372036854775807 is too large (max 9223372036, about 292 years)"
        );
        let e = pod_with("  terminationGracePeriodSeconds: -1\n", "").expect_err("negative");
        assert!(
            e.to_string().contains(
                "spec.terminationGracePeriodSeconds: -1 must be greater than or equal to 0"
            ),
            "{e}"
        );
        let p = pod_with("  terminationGracePeriodSeconds: 9223372036\n", "").expect("the max");
        assert_eq!(p.grace, MAX_GRACE);
        let p = pod_with("  terminationGracePeriodSeconds: 0\n", "").expect("zero");
        assert_eq!(p.grace, Duration::ZERO);
    }

    #[test]
    fn negative_probe_numbers_are_container_errors() {
        for field in [
            "initialDelaySeconds",
            "periodSeconds",
            "timeoutSeconds",
            "successThreshold",
            "failureThreshold",
        ] {
            let p = pod_with("", &format!("      {field}: -2147483648\n")).expect(field);
            let c = &p.containers[0];
            assert_eq!(c.liveness, None, "{field}");
            assert_eq!(
                c.config_error.as_deref(),
                Some(
                    format!(
                        "spec.containers[0].livenessProbe: {field}: -2147483648 must be greater than or equal to 0"
                    )
                    .as_str()
                )
            );
        }
    }

    #[test]
    fn the_largest_probe_numbers_are_kept() {
        let all = "      initialDelaySeconds: 2147483647\n      periodSeconds: 2147483647\n      timeoutSeconds: 2147483647\n      successThreshold: 2147483647\n      failureThreshold: 2147483647\n";
        let p = pod_with("", all).expect("valid");
        let t = p.containers[0].liveness.as_ref().expect("probe").timing;
        let max = Duration::from_secs(2_147_483_647);
        assert_eq!((t.initial_delay, t.period, t.timeout), (max, max, max));
        assert_eq!(
            (t.success_threshold, t.failure_threshold),
            (i32::MAX as u32, i32::MAX as u32)
        );
        let zero = "      periodSeconds: 0\n      timeoutSeconds: 0\n      failureThreshold: 0\n";
        let t = pod_with("", zero).expect("defaults").containers[0]
            .liveness
            .as_ref()
            .expect("probe")
            .timing;
        assert_eq!(
            (t.period, t.timeout, t.failure_threshold),
            (Duration::from_secs(10), Duration::from_secs(1), 3)
        );
    }

    #[test]
    fn manifest_file_names() {
        assert!(
            is_manifest_file("etcd.yaml")
                && is_manifest_file("a.yml")
                && is_manifest_file("b.json")
        );
        assert!(
            !is_manifest_file(".etcd.yaml.1234.tmp")
                && !is_manifest_file(".x.yaml")
                && !is_manifest_file("x.bak")
        );
    }

    #[test]
    fn json_manifests_are_read() {
        let json = r#"{"metadata":{"name":"j"},"spec":{"hostNetwork":true,"containers":[{"name":"c","image":"k8s.gcr.io/etcd:3.4.13-0"}]}}"#;
        let p = parse_manifest(Path::new("/m/j.json"), json.as_bytes(), None).unwrap();
        assert_eq!(p.containers[0].image, "k8s.gcr.io/etcd:3.4.13-0");
    }
}
