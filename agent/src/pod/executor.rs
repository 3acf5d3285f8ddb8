//! The executor of one container: feeds events into [`lifecycle::next`] and performs the
//! actions it returns (start, signal, probe) through the runtime. One task per container.

use std::collections::VecDeque;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::future::{Fuse, FutureExt};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::lifecycle::{self, Action, Container, ContainerState, Event};
use super::network::PodNet;
use super::spec::{ContainerSpec, MAX_GRACE, ProbeKind, StaticPod};
use crate::logs;
use crate::runtime::Running;
use crate::status::{ContainerStatus, ProbeStatus};
use crate::supervisor::Shared;

/// One container's task.
pub(crate) struct Executor {
    shared: Arc<Shared>,
    pod: Arc<StaticPod>,
    spec: ContainerSpec,
    index: usize,
    /// The pod's own network (pods without hostNetwork).
    net: Option<Arc<PodNet>>,
    c: Container,
    running: Option<Running>,
    /// The probes' connections of the running process; each started process gets its own.
    prober: crate::probe::Prober,
    /// Probes asked for by the last event, started by [`Executor::run`].
    to_probe: Vec<(u32, ProbeKind)>,
    tx: mpsc::UnboundedSender<Event>,
    rx: mpsc::UnboundedReceiver<Event>,
}

impl Executor {
    /// A task for container `index` of `pod`, adopted if `running` is given, in the pod's
    /// own network `net` unless it is a hostNetwork pod.
    pub(crate) fn new(
        shared: Arc<Shared>,
        pod: Arc<StaticPod>,
        index: usize,
        adopted: Option<(Running, u32)>,
        net: Option<Arc<PodNet>>,
    ) -> (Self, mpsc::UnboundedSender<Event>) {
        let spec = pod.containers[index].clone();
        let now = Instant::now();
        let probes = super::spec::ProbeKind::ALL
            .into_iter()
            .filter_map(|k| spec.probe(k).map(|p| (k, p.timing)))
            .collect();
        let mut c = Container::new(
            &spec.name,
            pod.restart_policy,
            stop_grace(pod.grace),
            shared.cfg.backoff,
            probes,
            now,
        );
        c.grid = Some(grid_origin());
        let (tx, rx) = mpsc::unbounded_channel();
        let mut running = None;
        if let Some((r, restart_count)) = adopted {
            let age = SystemTime::now()
                .duration_since(r.started_wall)
                .unwrap_or_default();
            let started_at = now.checked_sub(age).unwrap_or(now);
            c = c.adopted(r.pid, started_at, restart_count, now);
            shared.files.adopted(&pod, &spec, r.started_wall);
            running = Some(r);
        }
        let ex = Executor {
            shared,
            pod,
            spec,
            index,
            net,
            c,
            running,
            prober: crate::probe::Prober::default(),
            to_probe: Vec::new(),
            tx: tx.clone(),
            rx,
        };
        (ex, tx)
    }

    /// Runs until the container is gone (its pod removed and the process stopped).
    ///
    /// The probes in flight, one per kind, are polled here, beside the container's events:
    /// a task spawned per probe cost an allocation the size of an HTTP request's state, and a
    /// wake of this task to hand the result over, every time. A probe started for a kind
    /// replaces one still in flight, which can only be a previous process's, whose result
    /// would be ignored.
    pub(crate) async fn run(mut self) {
        if let Some(r) = self.running.clone() {
            self.watch_exit(r);
        }
        let mut timer = crate::host::timer::for_loop("container");
        let mut probes = ProbeKind::ALL.map(|_| None);
        loop {
            self.publish();
            if self.c.is_gone() {
                self.shared.runtime.forget(&self.pod.uid, &self.spec.name);
                self.shared.files.forget(&self.pod.uid, &self.spec.name);
                break;
            }
            let deadline = self.c.next_deadline();
            // In ProbeKind::ALL's order.
            let [startup, liveness, readiness] = &mut probes;
            let event = tokio::select! {
                ev = self.rx.recv() => match ev {
                    Some(ev) => ev,
                    None => break,
                },
                () = sleep_until(&mut timer, deadline) => Event::Tick,
                ev = in_flight(startup) => ev,
                ev = in_flight(liveness) => ev,
                ev = in_flight(readiness) => ev,
            };
            self.handle(event).await;
            for (pid, kind) in std::mem::take(&mut self.to_probe) {
                let Some(probe) = self.probe(pid, kind) else {
                    continue;
                };
                let slot = &mut probes[kind.index()];
                match slot {
                    // The same allocation, reused: the future is replaced in place.
                    Some(running) => running.set(probe.fuse()),
                    None => *slot = Some(Box::pin(probe.fuse())),
                }
            }
        }
        self.shared.wake.notify_one();
    }

    async fn handle(&mut self, event: Event) {
        let mut queue = VecDeque::from([event]);
        while let Some(ev) = queue.pop_front() {
            let (c, actions) = lifecycle::next(&self.c, ev, Instant::now());
            self.c = c;
            for a in actions {
                if let Some(ev) = self.perform(a).await {
                    queue.push_back(ev);
                }
            }
        }
    }

    async fn perform(&mut self, action: Action) -> Option<Event> {
        let rt = &self.shared.runtime;
        match action {
            Action::Start { restart_count } => {
                // What its files hold now is what this run uses (crate::reload); the
                // supervisor then watches their directories.
                self.shared.files.baseline(&self.pod, &self.spec);
                self.shared.wake.notify_one();
                let netns = self.net.as_ref().map(|n| n.netns.as_path());
                match rt.start(&self.pod, &self.spec, restart_count, netns).await {
                    Ok(r) => {
                        let pid = r.pid;
                        // A new process: its probes get connections and TLS sessions of
                        // their own.
                        self.prober = crate::probe::Prober::default();
                        self.running = Some(r.clone());
                        self.watch_exit(r);
                        Some(Event::Started { pid })
                    }
                    Err(e) => {
                        warn!(reason = %e.reason, "cannot start the container: {}", e.message);
                        Some(Event::StartFailed {
                            reason: e.reason,
                            message: e.message,
                        })
                    }
                }
            }
            Action::Terminate { pid } => {
                if let Some(r) = self.running.as_ref().filter(|r| r.pid == pid) {
                    info!(pid, grace = ?self.c.grace, "stopping the container (SIGTERM)");
                    rt.terminate(r);
                }
                None
            }
            Action::Kill { pid } => {
                if let Some(r) = self.running.as_ref().filter(|r| r.pid == pid) {
                    rt.kill(&self.pod.uid, &self.spec.name, r);
                }
                None
            }
            Action::Probe { pid, kind } => {
                self.to_probe.push((pid, kind));
                None
            }
        }
    }

    /// A probe of `kind` of process `pid`, owning what it needs; None when the container has
    /// no such probe.
    fn probe(&self, pid: u32, kind: ProbeKind) -> Option<impl Future<Output = Event> + use<>> {
        let spec = self.spec.probe(kind).cloned()?;
        let target = crate::probe::Target::for_probe(
            &spec,
            self.net.as_ref().and_then(|n| n.ips.first().copied()),
            self.net.as_ref().map(|n| n.netns.clone()),
            PathBuf::from(self.spec.working_dir.as_deref().unwrap_or("/")),
            || self.shared.runtime.container_env(&self.spec),
        );
        let prober = self.prober.clone();
        Some(async move {
            let o = crate::probe::run(&spec, kind, &target, &prober).await;
            Event::Probed {
                pid,
                kind,
                ok: o.ok,
                message: o.message,
            }
        })
    }

    fn watch_exit(&self, r: Running) {
        let shared = self.shared.clone();
        let (uid, name) = (self.pod.uid.clone(), self.spec.name.clone());
        let grace = self.pod.grace;
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let exit = shared.runtime.wait(&uid, &name, &r, grace).await;
            if exit.succeeded() {
                info!(pid = r.pid, "container exited with code 0");
            } else {
                warn!(pid = r.pid, code = ?exit.code, signal = ?exit.signal, "container exited: {}", exit.message.as_deref().unwrap_or(&exit.reason));
            }
            let _ = tx.send(Event::Exited { pid: r.pid, exit });
        });
    }

    fn publish(&self) {
        let status = self.status();
        if let Ok(mut board) = self.shared.board.lock()
            && let Some(p) = board.pods.get_mut(&self.pod.uid)
            && let Some(slot) = p.status.containers.get_mut(self.index)
        {
            *slot = status;
        }
    }

    fn status(&self) -> ContainerStatus {
        let now = Instant::now();
        let wall_now = SystemTime::now();
        let wall = |t: Instant| {
            wall_now
                .checked_sub(now.saturating_duration_since(t))
                .unwrap_or(wall_now)
        };
        let (state, reason, message) = match &self.c.state {
            ContainerState::Waiting {
                reason, message, ..
            } => ("waiting", Some(reason.clone()), Some(message.clone())),
            ContainerState::Starting => ("waiting", Some("ContainerCreating".to_string()), None),
            ContainerState::Running { .. } => ("running", None, None),
            ContainerState::Stopping { unhealthy, .. } => (
                "running",
                Some("Terminating".to_string()),
                unhealthy.clone(),
            ),
            ContainerState::Terminated { exit } => (
                "terminated",
                Some(
                    exit.as_ref()
                        .map_or_else(|| "Removed".to_string(), |e| e.reason.clone()),
                ),
                exit.as_ref().and_then(|e| e.message.clone()),
            ),
        };
        let running = self.c.pid().and(self.running.as_ref());
        let started_wall = running.map(|r| r.started_wall);
        ContainerStatus {
            name: self.spec.name.clone(),
            image: self.spec.image.clone(),
            state: state.into(),
            reason,
            message: message.filter(|m| !m.is_empty()),
            pid: self.c.pid(),
            restart_count: self.c.restart_count,
            ready: self.c.ready,
            started: self.c.started,
            last_exit_code: self.c.last_exit.as_ref().and_then(|e| e.exit_code()),
            last_exit_reason: self.c.last_exit.as_ref().map(|e| e.reason.clone()),
            last_exit_message: self.c.last_exit.as_ref().and_then(|e| e.message.clone()),
            started_at: started_wall.map(logs::rfc3339),
            started_at_unix: started_wall
                .map(|t| t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()),
            log_file: running.map(|r| r.log_file.display().to_string()),
            file_restarts: self.c.file_restarts,
            last_file_restart: self
                .c
                .last_file_restart
                .as_ref()
                .map(|(why, at)| format!("{}: {why}", logs::rfc3339(wall(*at)))),
            probes: self
                .c
                .probes
                .iter()
                .map(|p| ProbeStatus {
                    kind: p.kind,
                    result: p.result,
                    last_ok: p.last.as_ref().map(|l| l.ok),
                    last_message: p.last.as_ref().map(|l| l.message.clone()),
                    last_at: p.last.as_ref().map(|l| logs::rfc3339(wall(l.at))),
                })
                .collect(),
        }
    }
}

/// The grace period the lifecycle uses, at most [`MAX_GRACE`]. Manifests above it are
/// refused when read, but a pod known only from its records (manifest gone) carries whatever
/// grace a record holds, and `now + grace` must never overflow, or the pod could not be
/// stopped.
fn stop_grace(grace: Duration) -> Duration {
    grace.min(MAX_GRACE)
}

/// The result of the probe in `slot`; pending while there is none in flight.
async fn in_flight<F: Future>(slot: &mut Option<Pin<Box<Fuse<F>>>>) -> F::Output {
    match slot {
        // A finished Fuse stays pending.
        Some(probe) => probe.await,
        None => std::future::pending().await,
    }
}

/// Waits until `deadline` (None: a day, then the loop looks again).
async fn sleep_until(timer: &mut Option<crate::host::timer::Timer>, deadline: Option<Instant>) {
    let deadline = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600 * 24));
    crate::host::timer::sleep_until_on(timer, deadline, "container").await;
}

/// The origin of the probes' grid ([`lifecycle::on_grid`]), one for every container of this
/// agent.
fn grid_origin() -> Instant {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::backoff::BackoffConfig;
    use crate::pod::spec::RestartPolicy;

    /// Issue 8: a grace of `i64::MAX` seconds (from `terminationGracePeriodSeconds:
    /// 9223372036854775807`, or a record written before manifests were checked) made
    /// `now + grace` panic when the pod was stopped, so it never was. Clamped, the stop
    /// goes on: SIGTERM now, SIGKILL at a deadline that exists.
    #[test]
    fn a_huge_grace_still_stops_the_container() {
        let now = Instant::now();
        let huge = Duration::from_secs(i64::MAX.unsigned_abs());
        let c = Container::new(
            "c",
            RestartPolicy::Always,
            stop_grace(huge),
            BackoffConfig::default(),
            vec![],
            now,
        );
        let (c, actions) = lifecycle::next(&c, Event::Tick, now);
        assert!(matches!(actions[..], [Action::Start { .. }]), "{actions:?}");
        let (c, _) = lifecycle::next(&c, Event::Started { pid: 7 }, now);
        let (c, actions) = lifecycle::next(&c, Event::Stop, now);
        assert_eq!(actions, [Action::Terminate { pid: 7 }]);
        assert_eq!(c.next_deadline(), Some(now + MAX_GRACE));
        let (c, actions) = lifecycle::next(&c, Event::Stop, now);
        assert!(actions.is_empty(), "{actions:?}");
        assert!(matches!(c.state, ContainerState::Stopping { .. }));
    }

    /// The executor sleeps until that deadline: its timerfd (the timer's own tests) and
    /// tokio both accept one 292 years away.
    #[tokio::test]
    async fn the_executor_sleeps_until_a_far_deadline() {
        let far = Instant::now() + MAX_GRACE;
        let r = tokio::time::timeout(Duration::from_millis(20), sleep_until(&mut None, Some(far)))
            .await;
        assert!(r.is_err(), "a 292-year sleep ended");
        let mut timer = crate::host::timer::for_loop("test");
        assert!(timer.is_some());
        let r = tokio::time::timeout(
            Duration::from_millis(20),
            sleep_until(&mut timer, Some(far)),
        )
        .await;
        assert!(r.is_err(), "a 292-year sleep ended");
        assert!(timer.is_some(), "the timerfd refused a 292-year deadline");
    }
}
