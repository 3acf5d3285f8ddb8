//! The health gate of one upgraded component: the new version must run and be healthy before
//! the upgrade goes on, and a component that crashes or never becomes healthy fails the step
//! quickly, with its exit code and last log lines, so the upgrade can roll back.
//!
//! "Runs the new version" is read where the runner publishes it: the agent's status (the pod
//! of the manifest file with the new image, started and ready) under the agent runner; the
//! component's health endpoint under either runner; and for the API server and etcd their
//! own `/version`, which says which binary answers (under the kubelet runner it is the only
//! sign that the kubelet replaced the pod; the controller-manager and scheduler are then
//! gated on their health endpoints once the kubelet's mirror pod shows the new image).
//!
//! [`judge`] is the pure decision over one observation; [`wait`] observes until it decides.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agent::status::{AgentStatus, ContainerStatus};
use components::Layout;

/// How many restarts of the new version's container count as a crash loop.
pub const CRASH_RESTARTS: u32 = 2;
/// How long a pod the agent cannot start (a missing or mismatched binary) may wait before the
/// step fails: long enough for the agent to notice a new `--bin-dir` file.
pub const HELD_BACK_GRACE: Duration = Duration::from_secs(20);

/// How long a component must stay healthy, without a break, to pass the gate: a component
/// that answers and then exits (say, a controller-manager that loses its lease) is caught.
pub const SOAK: Duration = Duration::from_secs(3);

/// What is waited for.
#[derive(Debug, Clone)]
pub struct Want {
    /// The component (`kube-apiserver`).
    pub component: String,
    /// Its manifest file.
    pub manifest: PathBuf,
    /// The image the new manifest names.
    pub image: String,
    /// Its health URL (from the manifest's probes), if any.
    pub health_url: Option<String>,
    /// A `/version`-style check: `(URL, the version string expected in its answer)`.
    pub version_url: Option<(String, String)>,
    /// Whether the agent runs this manifest (else the kubelet does).
    pub agent_runs_it: bool,
}

/// One observation of the component.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// The agent's container of the manifest, when the agent runs it and answered.
    pub container: Option<ContainerStatus>,
    /// Why the agent holds the pod back (BinaryNotFound ...), if it does.
    pub held_back: Option<String>,
    /// The health URL's result.
    pub health: Option<Result<(), String>>,
    /// The version URL's result: the version it reported, or why none.
    pub version: Option<Result<String, String>>,
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The new version runs and is healthy.
    Healthy,
    /// Not yet: what is still missing.
    Waiting(String),
    /// It will not become healthy: why, and the last exit code.
    Failed {
        /// Why.
        reason: String,
        /// The exit code of the container's last run, if it ran.
        exit_code: Option<i32>,
    },
}

/// Decides from one observation, `held_for` being how long the pod has been held back.
pub fn judge(want: &Want, seen: &Seen, held_for: Duration) -> Verdict {
    if want.agent_runs_it {
        if let Some(why) = &seen.held_back
            && held_for >= HELD_BACK_GRACE
        {
            return Verdict::Failed {
                reason: format!("the agent cannot start it: {why}"),
                exit_code: None,
            };
        }
        let Some(c) = &seen.container else {
            return Verdict::Waiting(format!("the agent does not run {} yet", want.image));
        };
        if c.image != want.image {
            return Verdict::Waiting(format!("the agent still runs {}", c.image));
        }
        if c.restart_count >= CRASH_RESTARTS && c.state != "running" {
            return Verdict::Failed {
                reason: format!(
                    "it keeps exiting ({} restarts{})",
                    c.restart_count,
                    c.last_exit_reason
                        .as_ref()
                        .map_or(String::new(), |r| format!(", last: {r}"))
                ),
                exit_code: c.last_exit_code,
            };
        }
        // With a health URL, its answer stands in for the agent's verdict: the probes check
        // the same endpoints, but a startup probe's initialDelaySeconds (10 s in kubeadm's
        // manifests) holds "ready" back long after the component answers. [`wait`] asks the
        // answer to hold for [`SOAK`].
        let probed_here = want.health_url.is_some();
        if c.state != "running" || (!probed_here && (!c.started || !c.ready)) {
            return Verdict::Waiting(format!(
                "{} is {}{}",
                c.image,
                c.state,
                if c.state == "running" {
                    " but not ready"
                } else {
                    ""
                }
            ));
        }
    }
    match &seen.health {
        Some(Err(e)) => return Verdict::Waiting(format!("health check: {e}")),
        None if want.health_url.is_some() => return Verdict::Waiting("not checked yet".into()),
        _ => {}
    }
    if let Some((_, expected)) = &want.version_url {
        match &seen.version {
            Some(Ok(v)) if v == expected => {}
            Some(Ok(v)) => return Verdict::Waiting(format!("it still reports version {v}")),
            Some(Err(e)) => return Verdict::Waiting(format!("version: {e}")),
            None => return Verdict::Waiting("version not checked yet".into()),
        }
    }
    Verdict::Healthy
}

/// Observes the component once.
fn observe(
    want: &Want,
    layout: &Layout,
    http: &reqwest::blocking::Client,
    version: &dyn Fn(&str) -> Result<String, String>,
) -> Seen {
    let mut seen = Seen::default();
    if want.agent_runs_it
        && let Ok(status) = agent::status::query(&layout.agent_socket(), Duration::from_secs(2))
    {
        (seen.container, seen.held_back) = of_manifest(&status, &want.manifest);
    }
    if let Some(url) = &want.health_url {
        seen.health = Some(match http.get(url).send() {
            Ok(r) if r.status().as_u16() < 400 => Ok(()),
            Ok(r) => Err(format!("HTTP {}", r.status())),
            Err(e) => Err(e.to_string()),
        });
    }
    if let Some((url, _)) = &want.version_url {
        seen.version = Some(version(url));
    }
    seen
}

/// The first container of the manifest's pod in the agent's status, and why the pod is held
/// back, if it is. A pod it replaces may still be terminating beside it: that one is not it.
pub fn of_manifest(
    status: &AgentStatus,
    manifest: &Path,
) -> (Option<ContainerStatus>, Option<String>) {
    let shown = manifest.display().to_string();
    match status
        .pods
        .iter()
        .find(|p| p.manifest == shown && p.phase != "Terminating")
    {
        None => (None, None),
        Some(p) => {
            let c = p.containers.first().cloned();
            let held = p.reason.clone().or_else(|| {
                c.as_ref().and_then(|c| match c.reason.as_deref() {
                    Some(r) if r.starts_with("Binary") || r.starts_with("Untrusted") => {
                        Some(format!("{r}: {}", c.message.clone().unwrap_or_default()))
                    }
                    _ => None,
                })
            });
            (c, held)
        }
    }
}

/// A component that did not become healthy.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The component.
    pub component: String,
    /// Why.
    pub reason: String,
    /// The exit code of its last run, if known.
    pub exit_code: Option<i32>,
    /// Its last log lines.
    pub log: Vec<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} did not become healthy: {}",
            self.component, self.reason
        )?;
        if let Some(code) = self.exit_code {
            write!(f, " (exit code {code})")?;
        }
        if !self.log.is_empty() {
            write!(f, "; its last log lines:")?;
            for l in &self.log {
                write!(f, "\n    {l}")?;
            }
        }
        Ok(())
    }
}

/// Observes every ~250 ms until [`judge`] decides or `timeout` passes, calling `progress`
/// with what is missing about every 10 seconds.
///
/// # Errors
/// The [`Failure`], with the component's last log lines.
pub fn wait(
    want: &Want,
    layout: &Layout,
    timeout: Duration,
    version: &dyn Fn(&str) -> Result<String, String>,
    mut progress: impl FnMut(&str, Duration),
) -> Result<(), Failure> {
    let http = crate::health::client();
    let start = Instant::now();
    let mut last_report = start;
    let mut held_since: Option<Instant> = None;
    let mut healthy_since: Option<Instant> = None;
    loop {
        let seen = observe(want, layout, &http, version);
        held_since = match (&seen.held_back, held_since) {
            (Some(_), None) => Some(Instant::now()),
            (Some(_), s) => s,
            (None, _) => None,
        };
        let held_for = held_since.map_or(Duration::ZERO, |s| s.elapsed());
        let verdict = judge(want, &seen, held_for);
        if verdict != Verdict::Healthy {
            healthy_since = None;
        }
        let (reason, exit_code) = match verdict {
            Verdict::Healthy => {
                let since = *healthy_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= SOAK {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(250));
                continue;
            }
            Verdict::Failed { reason, exit_code } => (reason, exit_code),
            Verdict::Waiting(what) if start.elapsed() >= timeout => (
                format!(
                    "not healthy within {} (last: {what})",
                    crate::health::human(timeout)
                ),
                seen.container.as_ref().and_then(|c| c.last_exit_code),
            ),
            Verdict::Waiting(what) => {
                if last_report.elapsed() >= Duration::from_secs(10) {
                    last_report = Instant::now();
                    progress(&what, start.elapsed());
                }
                std::thread::sleep(Duration::from_millis(250));
                continue;
            }
        };
        let log = seen
            .container
            .as_ref()
            .and_then(|c| c.log_file.as_ref())
            .map(|f| crate::health::tail_cri_log(Path::new(f), 10))
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| crate::health::last_log_lines(layout, &want.component, 10));
        return Err(Failure {
            component: want.component.clone(),
            reason,
            exit_code,
            log,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(agent: bool) -> Want {
        Want {
            component: "kube-apiserver".into(),
            manifest: "/etc/kubernetes/manifests/kube-apiserver.yaml".into(),
            image: "k8s.gcr.io/kube-apiserver:v1.20.3-test.0".into(),
            health_url: Some("https://127.0.0.1:6443/livez".into()),
            version_url: Some((
                "https://127.0.0.1:6443/version".into(),
                "v1.20.3-test.0".into(),
            )),
            agent_runs_it: agent,
        }
    }

    fn running(image: &str) -> ContainerStatus {
        ContainerStatus {
            image: image.into(),
            state: "running".into(),
            started: true,
            ready: true,
            ..Default::default()
        }
    }

    fn healthy_seen() -> Seen {
        Seen {
            container: Some(running("k8s.gcr.io/kube-apiserver:v1.20.3-test.0")),
            held_back: None,
            health: Some(Ok(())),
            version: Some(Ok("v1.20.3-test.0".into())),
        }
    }

    #[test]
    fn healthy_only_with_the_new_image_ready_health_and_version() {
        assert_eq!(
            judge(&want(true), &healthy_seen(), Duration::ZERO),
            Verdict::Healthy
        );
        // The old pod still answers: its health is fine, but it is not the new version.
        let mut old = healthy_seen();
        old.container = Some(running("k8s.gcr.io/kube-apiserver:v1.20.2"));
        assert!(
            matches!(judge(&want(true), &old, Duration::ZERO), Verdict::Waiting(w) if w.contains("still runs"))
        );
        let mut old_version = healthy_seen();
        old_version.version = Some(Ok("v1.20.2".into()));
        assert!(
            matches!(judge(&want(true), &old_version, Duration::ZERO), Verdict::Waiting(w) if w.contains("v1.20.2"))
        );
        // Not yet ready by the agent's probes (a startup probe's initial delay): the health
        // URL, which the gate checks itself, decides; without one, the agent's verdict does.
        let mut unready = healthy_seen();
        unready.container.as_mut().unwrap().ready = false;
        unready.container.as_mut().unwrap().started = false;
        assert_eq!(
            judge(&want(true), &unready, Duration::ZERO),
            Verdict::Healthy
        );
        let mut no_url = want(true);
        no_url.health_url = None;
        no_url.version_url = None;
        assert!(matches!(
            judge(&no_url, &unready, Duration::ZERO),
            Verdict::Waiting(w) if w.contains("not ready")
        ));
        let mut stopped = healthy_seen();
        stopped.container.as_mut().unwrap().state = "waiting".into();
        assert!(matches!(
            judge(&want(true), &stopped, Duration::ZERO),
            Verdict::Waiting(_)
        ));
        let mut sick = healthy_seen();
        sick.health = Some(Err("HTTP 500".into()));
        assert!(matches!(
            judge(&want(true), &sick, Duration::ZERO),
            Verdict::Waiting(_)
        ));
    }

    #[test]
    fn a_crash_loop_fails_at_once_with_the_exit_code() {
        let mut s = healthy_seen();
        let c = s.container.as_mut().unwrap();
        c.state = "waiting".into();
        c.restart_count = CRASH_RESTARTS;
        c.last_exit_code = Some(1);
        c.last_exit_reason = Some("Error".into());
        match judge(&want(true), &s, Duration::ZERO) {
            Verdict::Failed { reason, exit_code } => {
                assert_eq!(exit_code, Some(1));
                assert!(reason.contains("keeps exiting"), "{reason}");
            }
            v => panic!("{v:?}"),
        }
        // One restart is not yet a loop.
        s.container.as_mut().unwrap().restart_count = 1;
        assert!(matches!(
            judge(&want(true), &s, Duration::ZERO),
            Verdict::Waiting(_)
        ));
    }

    #[test]
    fn a_pod_the_agent_cannot_start_fails_after_the_grace() {
        let s = Seen {
            held_back: Some("BinaryNotFound: kube-apiserver not found".into()),
            ..Default::default()
        };
        assert!(matches!(
            judge(&want(true), &s, Duration::from_secs(1)),
            Verdict::Waiting(_)
        ));
        assert!(matches!(
            judge(&want(true), &s, HELD_BACK_GRACE),
            Verdict::Failed { reason, .. } if reason.contains("BinaryNotFound")
        ));
    }

    #[test]
    fn under_the_kubelet_health_and_version_decide() {
        let s = Seen {
            health: Some(Ok(())),
            version: Some(Ok("v1.20.3-test.0".into())),
            ..Default::default()
        };
        assert_eq!(judge(&want(false), &s, Duration::ZERO), Verdict::Healthy);
        let mut w = want(false);
        w.version_url = None;
        let no_health = Seen::default();
        assert!(matches!(
            judge(&w, &no_health, Duration::ZERO),
            Verdict::Waiting(_)
        ));
    }
}
