//! Health of static pods, as their manifests' probes define it: the targets, a bounded wait
//! with progress, and an explanation when it times out (the agent's view and the last log
//! lines of each unhealthy component).

use std::path::Path;
use std::time::{Duration, Instant};

use components::Layout;
use k8s_openapi::api::core::v1::{Container, HTTPGetAction, Pod};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// One health endpoint to poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The component (static pod base name: `kube-apiserver`).
    pub component: String,
    /// The URL to GET; healthy when it answers 200-399.
    pub url: String,
}

/// A component that never became healthy, with the last thing seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The component.
    pub component: String,
    /// The URL polled.
    pub url: String,
    /// The last error or status.
    pub last: String,
}

/// `4m0s`-style durations as kubeadm prints them.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

fn http_target(c: &Container) -> Option<HTTPGetAction> {
    [
        c.startup_probe.as_ref(),
        c.liveness_probe.as_ref(),
        c.readiness_probe.as_ref(),
    ]
    .into_iter()
    .flatten()
    .find_map(|p| p.http_get.clone())
}

fn port_number(c: &Container, port: &IntOrString) -> Option<i32> {
    match port {
        IntOrString::Int(n) => Some(*n),
        IntOrString::String(name) => c
            .ports
            .as_ref()?
            .iter()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port),
    }
}

/// The health URL of each pod's first container, from its startup, liveness or readiness
/// probe (in that order). Pods without an HTTP probe are left out.
pub fn targets(pods: &[(String, Pod)]) -> Vec<Target> {
    pods.iter()
        .filter_map(|(component, pod)| {
            let c = pod.spec.as_ref()?.containers.first()?;
            let get = http_target(c)?;
            let port = port_number(c, &get.port)?;
            let host = get
                .host
                .clone()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "127.0.0.1".into());
            let host = if host.contains(':') {
                format!("[{host}]")
            } else {
                host
            };
            let scheme = get
                .scheme
                .clone()
                .unwrap_or_else(|| "HTTP".into())
                .to_lowercase();
            let path = get.path.clone().unwrap_or_else(|| "/".into());
            Some(Target {
                component: component.clone(),
                url: format!("{scheme}://{host}:{port}{path}"),
            })
        })
        .collect()
}

/// GETs `url` once; `Ok` on 200-399. Certificates are not verified, as the kubelet's probes.
fn probe(client: &reqwest::blocking::Client, url: &str) -> Result<(), String> {
    match client.get(url).send() {
        Ok(r) if r.status().as_u16() < 400 => Ok(()),
        Ok(r) => Err(format!("HTTP {}", r.status())),
        Err(e) => Err(error_chain(&e)),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// A blocking HTTP client for health checks.
pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(2))
        .connect_timeout(Duration::from_secs(1))
        .build()
        .expect("a client with no custom roots always builds")
}

/// Polls every target until all are healthy or `timeout` passes, calling `progress` with the
/// pending components about every 5 seconds.
///
/// # Errors
/// The components still unhealthy at the deadline.
pub fn wait_all(
    targets: &[Target],
    timeout: Duration,
    mut progress: impl FnMut(&[String], Duration),
) -> Result<(), Vec<Failure>> {
    let client = client();
    let start = Instant::now();
    let mut last_report = start;
    let mut pending: Vec<Failure> = targets
        .iter()
        .map(|t| Failure {
            component: t.component.clone(),
            url: t.url.clone(),
            last: "not checked yet".into(),
        })
        .collect();
    loop {
        for f in pending.iter_mut() {
            match probe(&client, &f.url) {
                Ok(()) => f.last.clear(),
                Err(e) => f.last = e,
            }
        }
        pending.retain(|f| !f.last.is_empty());
        if pending.is_empty() {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            return Err(pending);
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            let names: Vec<String> = pending.iter().map(|f| f.component.clone()).collect();
            progress(&names, start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The last `n` lines of the newest CRI log of a static pod's container (`/var/log/pods/
/// kube-system_<pod>-<node>_<uid>/<container>/<restart>.log`), message text only.
pub fn last_log_lines(layout: &Layout, component: &str, n: usize) -> Vec<String> {
    let dir = layout.pod_logs_dir();
    let prefix = format!("{}_{component}", components::names::KUBE_SYSTEM);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return vec![];
    };
    let mut newest: Option<(std::time::SystemTime, std::path::PathBuf)> = None;
    for pod_dir in entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
    {
        let Ok(files) = std::fs::read_dir(pod_dir.path().join(component)) else {
            continue;
        };
        // `<restart>.log` only: its rotated files (`.log.1`, ...) are read through it.
        for f in files
            .flatten()
            .filter(|f| f.file_name().to_string_lossy().ends_with(".log"))
        {
            let Ok(m) = f.metadata().and_then(|m| m.modified()) else {
                continue;
            };
            if newest.as_ref().is_none_or(|(t, _)| m > *t) {
                newest = Some((m, f.path()));
            }
        }
    }
    let Some((_, path)) = newest else {
        return vec![];
    };
    tail_cri_log(&path, n)
}

pub(crate) fn tail_cri_log(path: &Path, n: usize) -> Vec<String> {
    agent::logs::tail_lines(path, n)
        .into_iter()
        .map(|l| l.splitn(4, ' ').nth(3).unwrap_or(&l).to_string())
        .collect()
}

/// The timeout message: each unhealthy component, its URL and last error, what the agent says
/// of it, and its last log lines.
pub fn explain_timeout(layout: &Layout, failures: &[Failure], timeout: Duration) -> String {
    let status = agent::status::query(&layout.agent_socket(), Duration::from_secs(2)).ok();
    let mut msg = format!(
        "the control plane did not become healthy within {}: {} not healthy",
        human(timeout),
        failures
            .iter()
            .map(|f| f.component.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    for f in failures {
        msg.push_str(&format!(
            "\n\n{}: GET {} failed: {}",
            f.component, f.url, f.last
        ));
        match &status {
            Some(s) => {
                for line in crate::agent_view::describe(s, &f.component) {
                    msg.push_str(&format!("\n  agent: {line}"));
                }
            }
            None => msg.push_str(&format!(
                "\n  agent: not reachable at {} (is it running? see {})",
                layout.agent_socket().display(),
                layout.agent_log_file().display()
            )),
        }
        let logs = last_log_lines(layout, &f.component, 10);
        if logs.is_empty() {
            msg.push_str("\n  no log lines yet");
        } else {
            msg.push_str("\n  last log lines:");
            for l in logs {
                msg.push_str(&format!("\n    {l}"));
            }
        }
    }
    msg.push_str("\n\nInspect the node with \"kubeboot agent status\"; fix the cause, then run \"kubeboot reset -f\" and init again.");
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, Probe};

    fn pod_with(get: HTTPGetAction) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    liveness_probe: Some(Probe {
                        http_get: Some(get),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn targets_come_from_probes() {
        let pods = vec![
            (
                "kube-apiserver".to_string(),
                pod_with(HTTPGetAction {
                    host: Some("10.0.0.2".into()),
                    path: Some("/livez".into()),
                    port: IntOrString::Int(6443),
                    scheme: Some("HTTPS".into()),
                    ..Default::default()
                }),
            ),
            (
                "etcd".to_string(),
                pod_with(HTTPGetAction {
                    path: Some("/health".into()),
                    port: IntOrString::Int(2381),
                    ..Default::default()
                }),
            ),
        ];
        assert_eq!(
            targets(&pods),
            vec![
                Target {
                    component: "kube-apiserver".into(),
                    url: "https://10.0.0.2:6443/livez".into()
                },
                Target {
                    component: "etcd".into(),
                    url: "http://127.0.0.1:2381/health".into()
                },
            ]
        );
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::from_secs(240)), "4m0s");
        assert_eq!(human(Duration::from_secs(5)), "5s");
    }

    #[test]
    fn tail_reads_cri_message_text() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::under(dir.path());
        let d = layout
            .pod_logs_dir()
            .join("kube-system_etcd-node1_abc/etcd");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("0.log"),
            "2026-01-01T00:00:00Z stderr F one\n2026-01-01T00:00:01Z stderr F two words\n",
        )
        .unwrap();
        assert_eq!(
            last_log_lines(&layout, "etcd", 1),
            vec!["two words".to_string()]
        );
        // Rotated: the newest lines start in the current file and go on in `0.log.1`.
        std::fs::rename(d.join("0.log"), d.join("0.log.1")).unwrap();
        std::fs::write(d.join("0.log"), "2026-01-01T00:00:02Z stderr F three\n").unwrap();
        assert_eq!(last_log_lines(&layout, "etcd", 2), ["two words", "three"]);
        assert_eq!(
            last_log_lines(&layout, "kube-apiserver", 5),
            Vec::<String>::new()
        );
    }

    #[test]
    fn wait_times_out_naming_the_component() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let t = vec![Target {
            component: "etcd".into(),
            url: format!("http://127.0.0.1:{port}/health"),
        }];
        let err = wait_all(&t, Duration::from_millis(300), |_, _| {}).unwrap_err();
        assert_eq!(err[0].component, "etcd");
        assert!(!err[0].last.is_empty());
    }
}
