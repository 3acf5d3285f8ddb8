//! The agent's status: one serde struct ([`AgentStatus`], its field names are a public
//! interface), served on a unix socket (`/run/kubeboot/agent.sock`) as line-delimited JSON,
//! read with [`query`] and shown by `kubeboot agent status` as text ([`AgentStatus::render_text`])
//! or JSON.
//!
//! Protocol: the client sends one line `{"request":"status"}`; the agent answers one line,
//! either an [`AgentStatus`] or `{"error":"..."}`. The socket is 0600 and the agent answers
//! only root and its own user (SO_PEERCRED), whatever the socket's mode became.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::pod::lifecycle::ProbeResult;
use crate::pod::spec::ProbeKind;

/// Everything the agent runs, as it saw it when asked.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// This node's id (the marker prefix of its processes).
    pub node_id: String,
    /// The node name pods are suffixed with, if any.
    pub node_name: Option<String>,
    /// The agent's PID.
    pub agent_pid: u32,
    /// The runtime (`process`).
    pub runtime: String,
    /// When the status was taken (RFC 3339).
    pub time: String,
    /// The same, in seconds since the Unix epoch.
    pub time_unix: u64,
    /// The manifest directory.
    pub manifest_dir: String,
    /// Pods, by namespace and name.
    pub pods: Vec<PodStatus>,
    /// Manifests the agent could not read.
    pub manifest_errors: Vec<ManifestErrorStatus>,
    /// The agent's certificate renewal, when it renews the node's certificates.
    #[serde(default)]
    pub certificates: Option<crate::cert_renewal::CertRenewalStatus>,
}

/// A manifest the agent could not read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestErrorStatus {
    /// The file.
    pub manifest: String,
    /// Why.
    pub message: String,
}

/// One pod.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PodStatus {
    /// Namespace.
    pub namespace: String,
    /// Name (with the node suffix).
    pub name: String,
    /// UID (hash of the manifest).
    pub uid: String,
    /// The manifest file.
    pub manifest: String,
    /// Pending, Running, Succeeded, Failed (kubelet: getPhase), or Terminating.
    pub phase: String,
    /// Why the pod cannot run, if it cannot.
    pub reason: Option<String>,
    /// spec.hostNetwork: the pod uses the node's network.
    #[serde(default)]
    pub host_network: bool,
    /// The pod's own addresses, IPv4 first (pods without hostNetwork, once their network is
    /// set up).
    #[serde(default)]
    pub pod_ips: Vec<String>,
    /// The pod's network namespace file, once set up.
    #[serde(default)]
    pub netns: Option<String>,
    /// Things the agent ignored in the manifest.
    pub warnings: Vec<String>,
    /// Containers, in manifest order.
    pub containers: Vec<ContainerStatus>,
}

/// One container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerStatus {
    /// Name.
    pub name: String,
    /// Image.
    pub image: String,
    /// `waiting`, `running` or `terminated`.
    pub state: String,
    /// CrashLoopBackOff, BinaryNotFound, Completed, Error, Terminating, ...
    pub reason: Option<String>,
    /// Details, naming the fix.
    pub message: Option<String>,
    /// The process the agent watches (the shim), while running.
    pub pid: Option<u32>,
    /// Restarts.
    pub restart_count: u32,
    /// Ready.
    pub ready: bool,
    /// Startup probe passed (or none).
    pub started: bool,
    /// Exit code of the previous run (128 + signal when killed).
    pub last_exit_code: Option<i32>,
    /// Reason of the previous run's end (Completed, Error, Unhealthy).
    pub last_exit_reason: Option<String>,
    /// Details of the previous run's end.
    pub last_exit_message: Option<String>,
    /// When the current run started (RFC 3339).
    pub started_at: Option<String>,
    /// The same, in seconds since the Unix epoch.
    pub started_at_unix: Option<u64>,
    /// The current run's CRI log file.
    pub log_file: Option<String>,
    /// How many of the restarts were the agent's because files the container uses changed
    /// (a renewed certificate, [`crate::reload`]), since this agent started.
    #[serde(default)]
    pub file_restarts: u32,
    /// The latest of those: when (RFC 3339) and which files (`<time>: <files> changed`).
    #[serde(default)]
    pub last_file_restart: Option<String>,
    /// The container's probes.
    pub probes: Vec<ProbeStatus>,
}

/// One probe's latest results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeStatus {
    /// startup, liveness, readiness.
    pub kind: ProbeKind,
    /// The result with thresholds applied.
    pub result: ProbeResult,
    /// The last raw result.
    pub last_ok: Option<bool>,
    /// Its message.
    pub last_message: Option<String>,
    /// When (RFC 3339).
    pub last_at: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Request {
    request: String,
}

#[derive(Serialize, Deserialize)]
struct ErrorReply {
    error: String,
}

/// Asks the agent listening on `socket` for its status.
///
/// # Errors
/// When nothing listens (the agent is not running), the agent does not answer within
/// `timeout`, or the answer is not a status.
pub fn query(socket: &Path, timeout: Duration) -> anyhow::Result<AgentStatus> {
    let shown = socket.display().to_string();
    let mut s = UnixStream::connect(socket)
        .with_context(|| format!("could not connect to the agent's status socket {shown:?}; is \"kubeboot agent\" running?"))?;
    s.set_read_timeout(Some(timeout))
        .context("could not set a timeout")?;
    s.set_write_timeout(Some(timeout))
        .context("could not set a timeout")?;
    let mut req = serde_json::to_vec(&Request {
        request: "status".into(),
    })
    .context("could not encode the request")?;
    req.push(b'\n');
    s.write_all(&req)
        .with_context(|| format!("could not send a request to {shown:?}"))?;
    let mut line = String::new();
    BufReader::new(s)
        .read_line(&mut line)
        .with_context(|| format!("the agent at {shown:?} did not answer within {timeout:?}"))?;
    if let Ok(e) = serde_json::from_str::<ErrorReply>(&line) {
        anyhow::bail!("the agent at {shown:?} answered with an error: {}", e.error);
    }
    serde_json::from_str(&line)
        .with_context(|| format!("the agent at {shown:?} sent an unreadable status"))
}

/// The answer to one request line.
pub(crate) fn answer(line: &str, status: impl FnOnce() -> AgentStatus) -> Vec<u8> {
    let mut out = match serde_json::from_str::<Request>(line) {
        Ok(r) if r.request == "status" => serde_json::to_vec(&status()),
        Ok(r) => serde_json::to_vec(&ErrorReply {
            error: format!("unknown request {:?}; try \"status\"", r.request),
        }),
        Err(e) => serde_json::to_vec(&ErrorReply {
            error: format!("unreadable request: {e}"),
        }),
    }
    .unwrap_or_default();
    out.push(b'\n');
    out
}

/// The answer to a peer that may not read the status.
pub(crate) fn refusal(who: &str) -> Vec<u8> {
    let mut out = serde_json::to_vec(&ErrorReply {
        error: format!(
            "permission denied: {who} may not read the agent's status; only root and the agent's own user may (run it with sudo)"
        ),
    })
    .unwrap_or_default();
    out.push(b'\n');
    out
}

fn age(seconds: u64) -> String {
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

impl PodStatus {
    /// The IP column: `host` for hostNetwork pods, else the pod's addresses or `-`.
    pub fn ip_column(&self) -> String {
        if self.host_network {
            "host".into()
        } else if self.pod_ips.is_empty() {
            "-".into()
        } else {
            self.pod_ips.join(",")
        }
    }

    /// kubectl's STATUS column: the first waiting or terminated container's reason, else
    /// the phase.
    pub fn display_status(&self) -> String {
        if self.phase == "Terminating" {
            return self.phase.clone();
        }
        if let Some(r) = &self.reason {
            return r.clone();
        }
        self.containers
            .iter()
            .find(|c| c.state != "running" && c.reason.is_some())
            .and_then(|c| c.reason.clone())
            .unwrap_or_else(|| self.phase.clone())
    }
}

impl AgentStatus {
    /// A kubectl-like table (NAMESPACE NAME READY STATUS RESTARTS AGE IP PID; IP is `host` for
    /// hostNetwork pods), then one line per container that is not running well, with its
    /// reason and message.
    pub fn render_text(&self) -> String {
        let header = [
            "NAMESPACE",
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "PID",
        ]
        .map(String::from);
        let mut rows = vec![header.to_vec()];
        for p in &self.pods {
            let ready = p.containers.iter().filter(|c| c.ready).count();
            let restarts: u32 = p.containers.iter().map(|c| c.restart_count).sum();
            let started = p.containers.iter().filter_map(|c| c.started_at_unix).min();
            let pids: Vec<String> = p
                .containers
                .iter()
                .filter_map(|c| c.pid)
                .map(|p| p.to_string())
                .collect();
            rows.push(vec![
                p.namespace.clone(),
                p.name.clone(),
                format!("{ready}/{}", p.containers.len()),
                p.display_status(),
                restarts.to_string(),
                started.map_or("-".into(), |s| age(self.time_unix.saturating_sub(s))),
                p.ip_column(),
                if pids.is_empty() {
                    "-".into()
                } else {
                    pids.join(",")
                },
            ]);
        }
        let widths: Vec<usize> = (0..header.len())
            .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        if self.pods.is_empty() {
            out.push_str(&format!("No static pods in {}\n", self.manifest_dir));
        } else {
            for r in &rows {
                let line: Vec<String> = r
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect();
                out.push_str(line.join("   ").trim_end());
                out.push('\n');
            }
        }
        let mut notes = Vec::new();
        for p in &self.pods {
            if let Some(r) = &p.reason {
                notes.push(format!("{}/{}: {r}", p.namespace, p.name));
            }
            for c in &p.containers {
                if let Some(last) = &c.last_file_restart {
                    notes.push(format!(
                        "{}/{} {}: restarted by the agent {} time(s) because files it uses changed; the last at {last}",
                        p.namespace, p.name, c.name, c.file_restarts
                    ));
                }
                let unwell = c.state != "running" || !c.ready;
                if !unwell {
                    continue;
                }
                let mut what = c.reason.clone().unwrap_or_else(|| c.state.clone());
                if let Some(m) = c.message.as_deref().filter(|m| !m.is_empty()) {
                    what = format!("{what}: {m}");
                }
                if c.state == "running" && !c.ready {
                    let failing: Vec<String> = c
                        .probes
                        .iter()
                        .filter(|p| p.result != ProbeResult::Success)
                        .map(|p| {
                            format!(
                                "{} probe {}",
                                p.kind,
                                p.last_message.as_deref().unwrap_or("not run yet")
                            )
                        })
                        .collect();
                    what = format!(
                        "not ready: {}",
                        if failing.is_empty() {
                            "starting".into()
                        } else {
                            failing.join("; ")
                        }
                    );
                }
                if let (Some(code), Some(r)) = (c.last_exit_code, &c.last_exit_reason) {
                    what.push_str(&format!(" (last exit: {r}, code {code}"));
                    if let Some(m) = &c.last_exit_message {
                        what.push_str(&format!(", {m}"));
                    }
                    what.push(')');
                }
                notes.push(format!("{}/{} {}: {what}", p.namespace, p.name, c.name));
            }
        }
        for e in &self.manifest_errors {
            notes.push(format!("{}: {}", e.manifest, e.message));
        }
        if !notes.is_empty() {
            out.push('\n');
            for n in notes {
                out.push_str(&n);
                out.push('\n');
            }
        }
        if let Some(c) = &self.certificates {
            out.push('\n');
            out.push_str(&c.render_text());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> AgentStatus {
        AgentStatus {
            node_id: "abc".into(),
            time_unix: 1000,
            manifest_dir: "/etc/kubernetes/manifests".into(),
            pods: vec![
                PodStatus {
                    namespace: "kube-system".into(),
                    name: "etcd-n1".into(),
                    phase: "Running".into(),
                    host_network: true,
                    containers: vec![ContainerStatus {
                        name: "etcd".into(),
                        state: "running".into(),
                        ready: true,
                        pid: Some(42),
                        started_at_unix: Some(700),
                        restart_count: 1,
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                PodStatus {
                    namespace: "kube-system".into(),
                    name: "kube-apiserver-n1".into(),
                    phase: "Pending".into(),
                    containers: vec![ContainerStatus {
                        name: "kube-apiserver".into(),
                        state: "waiting".into(),
                        reason: Some("BinaryVersionMismatch".into()),
                        message: Some("/usr/bin/kube-apiserver is v1.20.1, want v1.20.2".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn text_is_a_table_then_reasons() {
        let text = sample().render_text();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("NAMESPACE") && lines[0].ends_with("PID"),
            "{text}"
        );
        assert!(
            lines[1].contains("etcd-n1")
                && lines[1].contains("1/1")
                && lines[1].contains("Running")
                && lines[1].contains("5m")
        );
        assert!(lines[1].ends_with("host   42"), "{text}");
        assert!(lines[2].contains("0/1") && lines[2].contains("BinaryVersionMismatch"));
        assert!(text.contains("kube-system/kube-apiserver-n1 kube-apiserver: BinaryVersionMismatch: /usr/bin/kube-apiserver is v1.20.1"), "{text}");
        assert!(!text.contains("etcd-n1 etcd:"), "{text}");
    }

    #[test]
    fn restarts_for_changed_files_are_said() {
        let mut st = sample();
        let c = &mut st.pods[0].containers[0];
        c.file_restarts = 2;
        c.last_file_restart =
            Some("2026-01-01T00:00:00Z: /etc/kubernetes/pki/etcd/server.crt changed".into());
        let text = st.render_text();
        assert!(text.contains("kube-system/etcd-n1 etcd: restarted by the agent 2 time(s) because files it uses changed; the last at 2026-01-01T00:00:00Z: /etc/kubernetes/pki/etcd/server.crt changed"), "{text}");
        let v = serde_json::to_value(&st).unwrap();
        assert_eq!(v["pods"][0]["containers"][0]["file_restarts"], 2);
        // A status from an agent without the fields still reads.
        let mut old = serde_json::to_value(sample()).unwrap();
        let obj = old["pods"][0]["containers"][0].as_object_mut().unwrap();
        obj.remove("file_restarts");
        obj.remove("last_file_restart");
        let back: AgentStatus = serde_json::from_value(old).unwrap();
        assert_eq!(back.pods[0].containers[0].file_restarts, 0);
    }

    #[test]
    fn pod_ips_and_network_waits_are_shown() {
        let mut st = sample();
        st.pods = vec![
            PodStatus {
                namespace: "default".into(),
                name: "web-n1".into(),
                phase: "Running".into(),
                pod_ips: vec!["10.199.0.5".into()],
                netns: Some("/run/netns/kubeboot-abc-u1".into()),
                containers: vec![ContainerStatus {
                    name: "web".into(),
                    state: "running".into(),
                    ready: true,
                    pid: Some(7),
                    ..Default::default()
                }],
                ..Default::default()
            },
            PodStatus {
                namespace: "default".into(),
                name: "wait-n1".into(),
                phase: "Pending".into(),
                containers: vec![ContainerStatus {
                    name: "c".into(),
                    state: "waiting".into(),
                    reason: Some(crate::pod::network::NETWORK_NOT_READY.into()),
                    message: Some(crate::pod::network::not_ready_message(
                        &crate::cni::conf::NoNetwork::Empty {
                            dir: "/etc/cni/net.d".into(),
                        },
                    )),
                    ..Default::default()
                }],
                ..Default::default()
            },
        ];
        let text = st.render_text();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("   IP   "), "{text}");
        assert!(
            lines[1].contains("10.199.0.5") && lines[1].ends_with(" 7"),
            "{text}"
        );
        assert!(
            lines[2].contains("NetworkNotReady") && lines[2].contains("   -   "),
            "{text}"
        );
        assert!(
            text.contains(
                "default/wait-n1 c: NetworkNotReady: no CNI configuration in /etc/cni/net.d; the pod starts once"
            ),
            "{text}"
        );
        let v = serde_json::to_value(&st).unwrap();
        assert_eq!(v["pods"][0]["pod_ips"], serde_json::json!(["10.199.0.5"]));
        assert_eq!(v["pods"][0]["host_network"], false);
        assert_eq!(v["pods"][0]["netns"], "/run/netns/kubeboot-abc-u1");
    }

    #[test]
    fn json_field_names_are_stable() {
        let v = serde_json::to_value(sample()).unwrap();
        let c = &v["pods"][0]["containers"][0];
        for f in [
            "name",
            "state",
            "reason",
            "message",
            "pid",
            "restart_count",
            "ready",
            "started",
            "last_exit_code",
            "started_at",
            "probes",
        ] {
            assert!(c.get(f).is_some(), "missing {f}");
        }
        for f in ["namespace", "name", "uid", "phase", "containers"] {
            assert!(v["pods"][0].get(f).is_some(), "missing {f}");
        }
        let back: AgentStatus = serde_json::from_value(v).unwrap();
        assert_eq!(back, sample());
    }

    #[test]
    fn answers_requests() {
        let ok = answer(r#"{"request":"status"}"#, sample);
        assert!(serde_json::from_slice::<AgentStatus>(&ok).is_ok());
        let bad = String::from_utf8(answer("nope", sample)).unwrap();
        assert!(bad.contains("error"), "{bad}");
    }
}
