//! One container's lifecycle: a pure transition function over a synthetic clock.
//!
//! ```text
//!                 Stop (pod removed)  ---------------------------------------------+
//!                                                                                  |
//!   [Waiting] --retry_at reached--> [Starting] --Started--> [Running] --Exited-->  |
//!      ^   ^                           |                     |  ^   |          |   |
//!      |   +--------StartFailed--------+      probe due: Probe  |   |          |   |
//!      |        (reason, backoff)                  (Probed)-----+   |          |   |
//!      |                                                            |          v   v
//!      |                                liveness/startup failed,   |     restart policy?
//!      |                                or Stop: SIGTERM           v       |       |
//!      |                                                      [Stopping]   |       no
//!      |                                          kill_at: SIGKILL |       |       |
//!      |                                                   Exited  |      yes      v
//!      +------- backoff delay (CrashLoopBackOff) <-----------------+-------+  [Terminated]
//! ```
//!
//! - Waiting: before the first start, after a failed start (binary missing, wrong version,
//!   unsupported manifest) or in CrashLoopBackOff; leaves at `retry_at`.
//! - Starting: the executor is starting the process; it answers Started or StartFailed.
//! - Running: probes are due on their own schedule; the startup probe gates the others
//!   (kubelet: prober/worker.go). A liveness or startup failure stops the container, and
//!   the restart policy decides what comes next, as for any exit.
//! - Stopping: SIGTERM was sent; SIGKILL at `kill_at` (the grace period).
//! - Terminated: not restarted (policy), or stopped because its pod was removed.
//! - Restart (a file the container uses changed, [`crate::reload`]): Running goes to Stopping
//!   as on a failed liveness probe, but its exit leads straight to Starting, with no backoff
//!   (the exit is the agent's doing, not a crash); SIGKILL follows after at most
//!   [`RESTART_GRACE`]. A container waiting to be retried is retried at once (the changed file
//!   may be what it lacked). Only under restartPolicy Always: a pod that must not be restarted
//!   is not.
//!
//! Events naming a `pid` are ignored unless they are about the current process, so a late
//! result from a previous run never touches the new one.

use std::time::{Duration, Instant};

use super::backoff::{Backoff, BackoffConfig};
use super::spec::{ProbeKind, ProbeTiming, RestartPolicy};

/// The most a container restarted for changed files gets between SIGTERM and SIGKILL. Its
/// pod's grace period protects work in flight when a pod goes away; a component restarted to
/// load new files has only its requests in flight, which take milliseconds, while every second
/// it is stopping is a second of outage: kube-apiserver 1.20 stops listening at SIGTERM, then
/// waits for its watch connections to go idle (http.Server.Shutdown, up to 60 s), which they
/// never do, so the kubelet's 30 s would be 30 s without an API (and the controller-manager's
/// and scheduler's leader election, which gives up after 10 s without the API, would exit too).
pub const RESTART_GRACE: Duration = Duration::from_secs(3);

/// How a process ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExitInfo {
    /// The exit code, when it exited.
    pub code: Option<i32>,
    /// The signal that killed it, when one did.
    pub signal: Option<i32>,
    /// Why, as kubectl shows it: Completed, Error, Unhealthy, ...
    pub reason: String,
    /// Details, if any.
    pub message: Option<String>,
}

impl ExitInfo {
    /// A clean exit (code 0).
    pub fn succeeded(&self) -> bool {
        self.code == Some(0)
    }

    /// From an exit code or a signal, with kubectl's reasons.
    pub fn from_status(code: Option<i32>, signal: Option<i32>) -> ExitInfo {
        let reason = if code == Some(0) {
            "Completed"
        } else {
            "Error"
        };
        ExitInfo {
            code,
            signal,
            reason: reason.into(),
            message: None,
        }
    }

    /// The code as the kubelet reports it: 128 + signal for a signalled process.
    pub fn exit_code(&self) -> Option<i32> {
        self.code.or(self.signal.map(|s| 128 + s))
    }
}

/// Where a container is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerState {
    /// Not running; starts at `retry_at` (`None`: never, e.g. its pod is going away).
    Waiting {
        /// Why it waits (ContainerCreating, CrashLoopBackOff, BinaryNotFound, ...).
        reason: String,
        /// Details for the user, naming the fix.
        message: String,
        /// When to try again.
        retry_at: Option<Instant>,
    },
    /// The executor is starting it.
    Starting,
    /// Its process runs.
    Running {
        /// The process (the shim, for the process runtime).
        pid: u32,
        /// When it started.
        started_at: Instant,
    },
    /// SIGTERM sent, waiting for the exit.
    Stopping {
        /// The process.
        pid: u32,
        /// When it started.
        started_at: Instant,
        /// When SIGKILL is due.
        kill_at: Instant,
        /// SIGKILL sent.
        killed: bool,
        /// Why it is stopped: a failed probe's message (restart per policy) or `None` (pod removed).
        unhealthy: Option<String>,
        /// Stopped to be started again at once, and why (files it uses changed).
        restart: Option<String>,
    },
    /// Done: not restarted.
    Terminated {
        /// How it ended (None when it never ran).
        exit: Option<ExitInfo>,
    },
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Time passed (a deadline from [`Container::next_deadline`] was reached).
    Tick,
    /// The executor started the process.
    Started {
        /// Its pid.
        pid: u32,
    },
    /// The executor could not start it.
    StartFailed {
        /// A CamelCase reason (BinaryNotFound, BinaryVersionMismatch, ...).
        reason: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The process exited.
    Exited {
        /// Which process.
        pid: u32,
        /// How.
        exit: ExitInfo,
    },
    /// A probe finished.
    Probed {
        /// For which process.
        pid: u32,
        /// Which probe.
        kind: ProbeKind,
        /// Success.
        ok: bool,
        /// Output or error, for the status.
        message: String,
    },
    /// The pod was removed (or replaced): stop for good.
    Stop,
    /// The pod was replaced by a changed manifest of a stateless node component (an upgrade
    /// of kube-apiserver, the controller-manager, the scheduler, kube-proxy, the kubelet):
    /// stop for good, SIGKILL after at most [`RESTART_GRACE`], since its replacement waits
    /// and every second of the old one stopping is a second without the component.
    Replace,
    /// Files the container uses changed ([`crate::reload`]): stop it gracefully and start it
    /// again at once.
    Restart {
        /// Why, for the status and the log (`/etc/kubernetes/pki/apiserver.crt changed`).
        reason: String,
    },
}

/// What the executor must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start the process; `restart_count` names its log file.
    Start {
        /// The restart count of the new run.
        restart_count: u32,
    },
    /// SIGTERM the process (and its container).
    Terminate {
        /// Which process.
        pid: u32,
    },
    /// SIGKILL everything of this container.
    Kill {
        /// Which process.
        pid: u32,
    },
    /// Run a probe against the process.
    Probe {
        /// Which process.
        pid: u32,
        /// Which probe.
        kind: ProbeKind,
    },
}

/// A probe's result as the kubelet keeps it (prober/results).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeResult {
    /// Not decided yet.
    Unknown,
    /// Passed (thresholds applied).
    Success,
    /// Failed (thresholds applied).
    Failure,
}

/// The last probe run, for the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastProbe {
    /// Passed.
    pub ok: bool,
    /// Output or error.
    pub message: String,
    /// When the result came.
    pub at: Instant,
}

/// One probe's schedule and counters (kubelet: prober/worker.go).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeTracker {
    /// Which probe.
    pub kind: ProbeKind,
    /// Its schedule.
    pub timing: ProbeTiming,
    /// When it runs next (`None` while the container does not run).
    pub next_at: Option<Instant>,
    /// A run is in flight.
    pub in_flight: bool,
    /// The result with thresholds applied.
    pub result: ProbeResult,
    /// The raw result of the current run of equal results, and its length.
    pub run: Option<(bool, u32)>,
    /// The last raw result.
    pub last: Option<LastProbe>,
}

impl ProbeTracker {
    /// A tracker for a probe of `kind`.
    pub fn new(kind: ProbeKind, timing: ProbeTiming) -> Self {
        let mut t = ProbeTracker {
            kind,
            timing,
            next_at: None,
            in_flight: false,
            result: ProbeResult::Unknown,
            run: None,
            last: None,
        };
        t.reset(None);
        t
    }

    /// Back to the initial result (kubelet: readiness starts failed, liveness succeeded,
    /// startup unknown), first run `initialDelaySeconds` after `started_at`.
    fn reset(&mut self, started_at: Option<Instant>) {
        self.result = match self.kind {
            ProbeKind::Readiness => ProbeResult::Failure,
            ProbeKind::Liveness => ProbeResult::Success,
            ProbeKind::Startup => ProbeResult::Unknown,
        };
        self.run = None;
        self.in_flight = false;
        self.next_at = started_at.map(|s| s + self.timing.initial_delay);
    }

    /// Records a raw result; returns the thresholded result when it changed.
    fn record(&mut self, ok: bool, message: String, now: Instant) -> Option<ProbeResult> {
        self.in_flight = false;
        self.last = Some(LastProbe {
            ok,
            message,
            at: now,
        });
        let len = match self.run {
            Some((prev, n)) if prev == ok => n.saturating_add(1),
            _ => 1,
        };
        self.run = Some((ok, len));
        let needed = if ok {
            self.timing.success_threshold
        } else {
            self.timing.failure_threshold
        };
        if len < needed {
            return None;
        }
        let new = if ok {
            ProbeResult::Success
        } else {
            ProbeResult::Failure
        };
        let changed = new != self.result;
        self.result = new;
        changed.then_some(new)
    }
}

/// A container: its settings, state and counters. Changed only by [`next`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// Its name.
    pub name: String,
    /// The pod's restartPolicy.
    pub policy: RestartPolicy,
    /// The pod's grace period.
    pub grace: Duration,
    /// Backoff parameters.
    pub backoff_config: BackoffConfig,
    /// Where it is.
    pub state: ContainerState,
    /// How many times it was restarted.
    pub restart_count: u32,
    /// It ran at least once (the next start is a restart).
    pub has_run: bool,
    /// Restart backoff.
    pub backoff: Backoff,
    /// How the previous run ended.
    pub last_exit: Option<ExitInfo>,
    /// The startup probe passed (or there is none) while running.
    pub started: bool,
    /// Ready (readiness passed, or there is no readiness probe) while running.
    pub ready: bool,
    /// The probes it has, startup first.
    pub probes: Vec<ProbeTracker>,
    /// Its pod was removed: once it stops, it is gone.
    pub removing: bool,
    /// How many of the restarts were for changed files ([`Event::Restart`]).
    pub file_restarts: u32,
    /// The latest such restart: why, and when.
    pub last_file_restart: Option<(String, Instant)>,
    /// The origin of the whole-second grid its probes run on after their first run
    /// ([`on_grid`]); the agent gives every container the same one. None: no grid.
    pub grid: Option<Instant>,
}

impl Container {
    /// A container that waits to be started at `now`.
    pub fn new(
        name: impl Into<String>,
        policy: RestartPolicy,
        grace: Duration,
        backoff_config: BackoffConfig,
        probes: Vec<(ProbeKind, ProbeTiming)>,
        now: Instant,
    ) -> Self {
        Container {
            name: name.into(),
            policy,
            grace,
            backoff_config,
            state: ContainerState::Waiting {
                reason: "ContainerCreating".into(),
                message: String::new(),
                retry_at: Some(now),
            },
            restart_count: 0,
            has_run: false,
            backoff: Backoff::default(),
            last_exit: None,
            started: false,
            ready: false,
            probes: probes
                .into_iter()
                .map(|(k, t)| ProbeTracker::new(k, t))
                .collect(),
            removing: false,
            file_restarts: 0,
            last_file_restart: None,
            grid: None,
        }
    }

    /// A container found running after an agent restart (adoption).
    pub fn adopted(
        mut self,
        pid: u32,
        started_at: Instant,
        restart_count: u32,
        now: Instant,
    ) -> Self {
        self.restart_count = restart_count;
        self.has_run = true;
        self.enter_running(pid, started_at.min(now));
        self
    }

    /// The probe tracker of one kind.
    pub fn probe(&self, kind: ProbeKind) -> Option<&ProbeTracker> {
        self.probes.iter().find(|p| p.kind == kind)
    }

    /// The process, while there is one.
    pub fn pid(&self) -> Option<u32> {
        match self.state {
            ContainerState::Running { pid, .. } | ContainerState::Stopping { pid, .. } => Some(pid),
            _ => None,
        }
    }

    /// Removed and stopped: the executor may forget it.
    pub fn is_gone(&self) -> bool {
        self.removing
            && matches!(
                self.state,
                ContainerState::Terminated { .. } | ContainerState::Waiting { .. }
            )
    }

    /// The earliest time a Tick is needed, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        match &self.state {
            ContainerState::Waiting { retry_at, .. } => *retry_at,
            ContainerState::Stopping {
                kill_at,
                killed: false,
                ..
            } => Some(*kill_at),
            ContainerState::Running { .. } => self
                .probes
                .iter()
                .filter(|p| self.probe_eligible(p))
                .filter_map(|p| p.next_at)
                .min(),
            _ => None,
        }
    }

    fn probe_eligible(&self, p: &ProbeTracker) -> bool {
        if p.in_flight {
            return false;
        }
        match p.kind {
            // The startup probe stops once it succeeded; the others wait for it.
            ProbeKind::Startup => !self.started,
            _ => self.started,
        }
    }

    fn enter_running(&mut self, pid: u32, started_at: Instant) {
        self.state = ContainerState::Running { pid, started_at };
        for p in &mut self.probes {
            p.reset(Some(started_at));
        }
        self.started = self.probe(ProbeKind::Startup).is_none();
        self.update_ready();
    }

    fn update_ready(&mut self) {
        let running = matches!(self.state, ContainerState::Running { .. });
        self.ready = running
            && self.started
            && self
                .probe(ProbeKind::Readiness)
                .is_none_or(|p| p.result == ProbeResult::Success);
    }

    fn not_running(&mut self) {
        self.started = false;
        self.ready = false;
        for p in &mut self.probes {
            p.reset(None);
        }
    }

    fn stop(
        &mut self,
        pid: u32,
        started_at: Instant,
        unhealthy: Option<String>,
        now: Instant,
    ) -> Vec<Action> {
        self.state = ContainerState::Stopping {
            pid,
            started_at,
            kill_at: now + self.grace,
            killed: false,
            unhealthy,
            restart: None,
        };
        self.ready = false;
        vec![Action::Terminate { pid }]
    }

    /// After an exit: restart per policy (with backoff) or terminate.
    fn after_exit(&mut self, exit: ExitInfo, now: Instant) -> Vec<Action> {
        self.not_running();
        self.last_exit = Some(exit.clone());
        let restart = !self.removing
            && match self.policy {
                RestartPolicy::Always => true,
                RestartPolicy::OnFailure => !exit.succeeded(),
                RestartPolicy::Never => false,
            };
        if !restart {
            self.state = ContainerState::Terminated { exit: Some(exit) };
            return Vec::new();
        }
        let (delay, backoff) = self.backoff.next_delay(&self.backoff_config, now);
        self.backoff = backoff;
        if delay.is_zero() {
            self.state = ContainerState::Starting;
            return vec![Action::Start {
                restart_count: self.restart_count + 1,
            }];
        }
        self.state = ContainerState::Waiting {
            reason: "CrashLoopBackOff".into(),
            message: format!(
                "back-off {} restarting failed container {}",
                human(delay),
                self.name
            ),
            retry_at: Some(now + delay),
        };
        Vec::new()
    }
}

/// `10s`, `2m40s`, `150ms`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s == 0 {
        return format!("{}ms", d.as_millis());
    }
    match (s / 60, s % 60) {
        (0, s) => format!("{s}s"),
        (m, 0) => format!("{m}m"),
        (m, s) => format!("{m}m{s}s"),
    }
}

/// When a probe due at `due` and run at `now` runs next: at a fixed rate, as the kubelet's
/// probe ticker, so a run that came late (the agent busy) does not move the ones after it; a
/// run more than a period late starts the rate again from `now`.
fn next_run(due: Option<Instant>, now: Instant, period: Duration) -> Instant {
    match due.map(|d| d + period) {
        Some(next) if next > now => next,
        _ => now + period,
    }
}

/// The probes' grid step: their periods are whole seconds.
pub const GRID: Duration = Duration::from_secs(1);

/// `t` put off to the next whole [`GRID`] step after `origin` (kept when on one, or before
/// `origin`). A probe's runs after its first are put on the grid: every probe of every
/// container then comes due on the same instants, and the agent wakes once for all those due
/// together instead of once each (on a control-plane node the API server's readiness probe
/// runs every second, five liveness probes every ten). A run is put off by less than a step,
/// once: on the grid, a whole-second period keeps it there. The first run after a start is
/// not put off.
pub fn on_grid(t: Instant, origin: Instant) -> Instant {
    let into = t.saturating_duration_since(origin).as_nanos() % GRID.as_nanos();
    if into == 0 || t < origin {
        return t;
    }
    // Below GRID's nanoseconds, so it fits.
    let rest = GRID - Duration::from_nanos(u64::try_from(into).unwrap_or(0));
    t.checked_add(rest).unwrap_or(t)
}

/// The transition function: the container after `event` at `now`, and what to do. Pure.
pub fn next(c: &Container, event: Event, now: Instant) -> (Container, Vec<Action>) {
    let mut c = c.clone();
    let actions = step(&mut c, event, now);
    (c, actions)
}

fn step(c: &mut Container, event: Event, now: Instant) -> Vec<Action> {
    use ContainerState as S;
    let event = match event {
        Event::Replace => {
            c.grace = c.grace.min(RESTART_GRACE);
            Event::Stop
        }
        e => e,
    };
    match (c.state.clone(), event) {
        // Removal.
        (S::Waiting { .. }, Event::Stop) => {
            c.removing = true;
            c.state = S::Terminated { exit: None };
            Vec::new()
        }
        (S::Starting, Event::Stop) | (S::Terminated { .. }, Event::Stop) => {
            c.removing = true;
            Vec::new()
        }
        (S::Running { pid, started_at }, Event::Stop) => {
            c.removing = true;
            c.stop(pid, started_at, None, now)
        }
        (S::Stopping { kill_at, .. }, Event::Stop) => {
            c.removing = true;
            if let S::Stopping { kill_at: k, .. } = &mut c.state {
                *k = kill_at.min(now + c.grace);
            }
            Vec::new()
        }

        // Starting.
        (
            S::Waiting {
                retry_at: Some(at), ..
            },
            Event::Tick,
        ) if now >= at => {
            c.state = S::Starting;
            vec![Action::Start {
                restart_count: if c.has_run { c.restart_count + 1 } else { 0 },
            }]
        }
        (S::Starting, Event::Started { pid }) => {
            if c.has_run {
                c.restart_count += 1;
            }
            c.has_run = true;
            c.enter_running(pid, now);
            if c.removing {
                c.stop(pid, now, None, now)
            } else {
                Vec::new()
            }
        }
        (S::Starting, Event::StartFailed { reason, message }) => {
            if c.removing {
                c.state = S::Terminated { exit: None };
                return Vec::new();
            }
            let (delay, backoff) = c.backoff.next_delay(&c.backoff_config, now);
            c.backoff = backoff;
            // Retry at once only the first time; never spin.
            let delay = delay.max(c.backoff_config.initial.min(Duration::from_secs(1)));
            c.state = S::Waiting {
                reason,
                message,
                retry_at: Some(now + delay),
            };
            Vec::new()
        }

        // Running.
        (S::Running { pid, .. }, Event::Exited { pid: p, exit }) if p == pid => {
            c.after_exit(exit, now)
        }
        (S::Running { pid, .. }, Event::Tick) => {
            let grid = c.grid;
            let mut actions = Vec::new();
            let due: Vec<ProbeKind> = c
                .probes
                .iter()
                .filter(|p| c.probe_eligible(p) && p.next_at.is_some_and(|t| t <= now))
                .map(|p| p.kind)
                .collect();
            for kind in due {
                if let Some(p) = c.probes.iter_mut().find(|p| p.kind == kind) {
                    p.in_flight = true;
                    let next = next_run(p.next_at, now, p.timing.period);
                    p.next_at = Some(grid.map_or(next, |origin| on_grid(next, origin)));
                    actions.push(Action::Probe { pid, kind });
                }
            }
            actions
        }
        (
            S::Running { pid, started_at },
            Event::Probed {
                pid: p,
                kind,
                ok,
                message,
            },
        ) if p == pid => {
            let Some(t) = c.probes.iter_mut().find(|t| t.kind == kind) else {
                return Vec::new();
            };
            let changed = t.record(ok, message.clone(), now);
            match (kind, changed) {
                (ProbeKind::Startup, Some(ProbeResult::Success)) => {
                    c.started = true;
                    for p in c.probes.iter_mut().filter(|p| p.kind != ProbeKind::Startup) {
                        p.next_at = Some(now.max(started_at + p.timing.initial_delay));
                    }
                    c.update_ready();
                    Vec::new()
                }
                (ProbeKind::Startup | ProbeKind::Liveness, Some(ProbeResult::Failure)) => {
                    let why = format!("{kind} probe failed: {message}");
                    c.stop(pid, started_at, Some(why), now)
                }
                _ => {
                    c.update_ready();
                    Vec::new()
                }
            }
        }

        // Stopping.
        (
            S::Stopping {
                pid,
                killed: false,
                kill_at,
                ..
            },
            Event::Tick,
        ) if now >= kill_at => {
            if let S::Stopping { killed, .. } = &mut c.state {
                *killed = true;
            }
            vec![Action::Kill { pid }]
        }
        (
            S::Stopping {
                pid,
                unhealthy,
                restart,
                ..
            },
            Event::Exited { pid: p, mut exit },
        ) if p == pid => {
            if let Some(why) = unhealthy {
                exit.reason = "Unhealthy".into();
                exit.message = Some(why);
            }
            match restart {
                Some(why) if !c.removing => {
                    c.not_running();
                    exit.message = Some(format!("restarted: {why}"));
                    c.last_exit = Some(exit);
                    c.state = S::Starting;
                    vec![Action::Start {
                        restart_count: c.restart_count + 1,
                    }]
                }
                _ => c.after_exit(exit, now),
            }
        }

        // Files it uses changed: restart it (restartPolicy Always only).
        (S::Running { pid, started_at }, Event::Restart { reason })
            if c.policy == RestartPolicy::Always =>
        {
            c.file_restarts += 1;
            c.last_file_restart = Some((reason.clone(), now));
            let actions = c.stop(pid, started_at, None, now);
            if let S::Stopping {
                restart, kill_at, ..
            } = &mut c.state
            {
                *restart = Some(reason);
                *kill_at = now + c.grace.min(RESTART_GRACE);
            }
            actions
        }
        (
            S::Waiting {
                reason: r,
                message,
                retry_at: Some(at),
            },
            Event::Restart { .. },
        ) if c.policy == RestartPolicy::Always && at > now => {
            c.state = S::Waiting {
                reason: r,
                message,
                retry_at: Some(now),
            };
            Vec::new()
        }

        // Anything else (stale pids, early ticks, probes while stopping) changes nothing.
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// A probe keeps its rate: a late run does not move the next one, and a run more than a
    /// period late starts the rate again from then.
    #[test]
    fn a_probe_runs_at_a_fixed_rate() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        assert_eq!(next_run(Some(t0), t0, s * 10), t0 + s * 10);
        let late = t0 + Duration::from_millis(700);
        assert_eq!(next_run(Some(t0), late, s * 10), t0 + s * 10);
        assert_eq!(next_run(Some(t0), late, s), t0 + s);
        let very_late = t0 + Duration::from_millis(2500);
        assert_eq!(next_run(Some(t0), very_late, s), very_late + s);
        assert_eq!(next_run(None, t0, s), t0 + s);
    }

    /// On the grid a time is put off to the next whole second after the origin, by less than
    /// a second, and kept when it is on one already.
    #[test]
    fn on_grid_puts_a_time_off_to_the_next_whole_second() {
        let o = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(on_grid(o + ms(10_100), o), o + secs(11));
        assert_eq!(on_grid(o + ms(10_999), o), o + secs(11));
        assert_eq!(on_grid(o + secs(11), o), o + secs(11));
        assert_eq!(on_grid(o, o), o);
        for t in [1, 999, 4_321, 3_600_001] {
            let g = on_grid(o + ms(t), o);
            assert!(g >= o + ms(t) && g < o + ms(t) + GRID, "{t}");
        }
    }

    /// On a grid, a probe's runs after its first come due on whole seconds from its origin,
    /// whatever its phase: a 1 s probe and a 10 s probe of two containers started at
    /// different times come due on the same instants. Without a grid each keeps its phase.
    #[test]
    fn probes_on_a_grid_come_due_together() {
        let origin = Instant::now();
        let ms = Duration::from_millis;
        let run = |kind: ProbeKind, period: u64, start: Duration, grid: Option<Instant>| {
            let mut s = Sim::new(RestartPolicy::Always, vec![(kind, timing(period, 3))]);
            s.c.grid = grid;
            s.now = origin + start;
            s.start(1);
            let mut due = Vec::new();
            for _ in 0..3 {
                // The first run at once (not put off), then when it comes due.
                let when = s.c.next_deadline().unwrap();
                s.now = s.now.max(when);
                assert_eq!(s.ev(Event::Tick), [Action::Probe { pid: 1, kind }]);
                due.push(s.now.duration_since(origin));
                s.ev(Event::Probed {
                    pid: 1,
                    kind,
                    ok: true,
                    message: String::new(),
                });
            }
            due
        };
        let ready = run(ProbeKind::Readiness, 1, ms(130), Some(origin));
        assert_eq!(ready, [ms(130), secs(2), secs(3)]);
        let live = run(ProbeKind::Liveness, 10, ms(4_770), Some(origin));
        assert_eq!(live, [ms(4_770), secs(15), secs(25)]);
        let alone = run(ProbeKind::Liveness, 10, ms(4_770), None);
        assert_eq!(alone, [ms(4_770), ms(14_770), ms(24_770)]);
    }

    fn timing(period: u64, failure: u32) -> ProbeTiming {
        ProbeTiming {
            initial_delay: Duration::ZERO,
            period: secs(period),
            timeout: secs(1),
            success_threshold: 1,
            failure_threshold: failure,
        }
    }

    struct Sim {
        c: Container,
        now: Instant,
    }

    impl Sim {
        fn new(policy: RestartPolicy, probes: Vec<(ProbeKind, ProbeTiming)>) -> Self {
            let now = Instant::now();
            Sim {
                c: Container::new("c", policy, secs(30), BackoffConfig::default(), probes, now),
                now,
            }
        }
        fn at(&mut self, t: Duration) -> &mut Self {
            self.now += t;
            self
        }
        fn ev(&mut self, e: Event) -> Vec<Action> {
            let (c, a) = next(&self.c, e, self.now);
            self.c = c;
            a
        }
        fn start(&mut self, pid: u32) {
            assert!(
                matches!(self.ev(Event::Tick)[..], [Action::Start { .. }]),
                "{:?}",
                self.c.state
            );
            assert!(self.ev(Event::Started { pid }).is_empty());
        }
        fn exit(&mut self, pid: u32, code: i32) -> Vec<Action> {
            self.ev(Event::Exited {
                pid,
                exit: ExitInfo::from_status(Some(code), None),
            })
        }
    }

    #[test]
    fn starts_at_once_and_runs() {
        let mut s = Sim::new(RestartPolicy::Always, vec![]);
        assert_eq!(s.c.next_deadline(), Some(s.now));
        assert_eq!(s.ev(Event::Tick), [Action::Start { restart_count: 0 }]);
        assert_eq!(s.c.state, ContainerState::Starting);
        s.ev(Event::Started { pid: 10 });
        assert!(matches!(s.c.state, ContainerState::Running { pid: 10, .. }));
        assert!(s.c.started && s.c.ready);
        assert_eq!(s.c.next_deadline(), None);
    }

    #[test]
    fn crash_loop_backs_off_10_20_40() {
        let mut s = Sim::new(RestartPolicy::Always, vec![]);
        s.start(1);
        // First crash: restart at once.
        assert_eq!(
            s.at(secs(1)).exit(1, 3),
            [Action::Start { restart_count: 1 }]
        );
        s.ev(Event::Started { pid: 2 });
        assert_eq!(s.c.restart_count, 1);
        for (pid, wait) in [(2, 10), (3, 20), (4, 40)] {
            assert!(s.at(secs(1)).exit(pid, 3).is_empty());
            let ContainerState::Waiting {
                reason,
                retry_at,
                message,
            } = s.c.state.clone()
            else {
                panic!("{:?}", s.c.state)
            };
            assert_eq!(reason, "CrashLoopBackOff");
            assert!(message.contains(&format!("back-off {wait}s")), "{message}");
            assert_eq!(retry_at, Some(s.now + secs(wait)));
            // Not before the deadline.
            assert!(
                s.at(secs(wait) - Duration::from_millis(1))
                    .ev(Event::Tick)
                    .is_empty()
            );
            assert!(!s.at(Duration::from_millis(1)).ev(Event::Tick).is_empty());
            s.ev(Event::Started { pid: pid + 1 });
        }
        assert_eq!(s.c.restart_count, 4);
        assert_eq!(s.c.last_exit.as_ref().and_then(|e| e.code), Some(3));
    }

    #[test]
    fn restart_policies() {
        let mut s = Sim::new(RestartPolicy::OnFailure, vec![]);
        s.start(1);
        assert_eq!(s.exit(1, 1), [Action::Start { restart_count: 1 }]);
        s.ev(Event::Started { pid: 2 });
        assert!(s.exit(2, 0).is_empty());
        assert!(
            matches!(&s.c.state, ContainerState::Terminated { exit: Some(e) } if e.reason == "Completed")
        );

        let mut s = Sim::new(RestartPolicy::Never, vec![]);
        s.start(1);
        assert!(s.exit(1, 2).is_empty());
        assert!(
            matches!(&s.c.state, ContainerState::Terminated { exit: Some(e) } if e.reason == "Error")
        );
        assert_eq!(s.c.next_deadline(), None);
    }

    #[test]
    fn stale_events_are_ignored() {
        let mut s = Sim::new(
            RestartPolicy::Always,
            vec![(ProbeKind::Liveness, timing(1, 1))],
        );
        s.start(5);
        let before = s.c.clone();
        assert!(s.exit(4, 1).is_empty());
        assert!(
            s.ev(Event::Probed {
                pid: 4,
                kind: ProbeKind::Liveness,
                ok: false,
                message: "x".into()
            })
            .is_empty()
        );
        assert_eq!(s.c, before);
    }

    #[test]
    fn removal_terms_then_kills_after_grace() {
        let mut s = Sim::new(RestartPolicy::Always, vec![]);
        s.start(7);
        assert_eq!(s.ev(Event::Stop), [Action::Terminate { pid: 7 }]);
        assert_eq!(s.c.next_deadline(), Some(s.now + secs(30)));
        assert!(s.at(secs(29)).ev(Event::Tick).is_empty());
        assert_eq!(s.at(secs(1)).ev(Event::Tick), [Action::Kill { pid: 7 }]);
        assert_eq!(s.c.next_deadline(), None);
        assert!(
            s.ev(Event::Exited {
                pid: 7,
                exit: ExitInfo::from_status(None, Some(9))
            })
            .is_empty()
        );
        assert!(s.c.is_gone());
        assert!(matches!(s.c.state, ContainerState::Terminated { .. }));
    }

    #[test]
    fn a_replaced_component_is_killed_after_the_restart_grace() {
        let mut s = Sim::new(RestartPolicy::Always, vec![]);
        s.start(7);
        assert_eq!(s.ev(Event::Replace), [Action::Terminate { pid: 7 }]);
        assert_eq!(s.c.next_deadline(), Some(s.now + RESTART_GRACE));
        assert_eq!(
            s.at(RESTART_GRACE).ev(Event::Tick),
            [Action::Kill { pid: 7 }]
        );
        assert!(s.c.removing);
    }

    #[test]
    fn removal_while_waiting_or_starting() {
        let mut s = Sim::new(RestartPolicy::Always, vec![]);
        s.ev(Event::Stop);
        assert!(s.c.is_gone());

        let mut s = Sim::new(RestartPolicy::Always, vec![]);
        s.ev(Event::Tick);
        s.ev(Event::Stop);
        assert!(!s.c.is_gone());
        assert_eq!(
            s.ev(Event::Started { pid: 3 }),
            [Action::Terminate { pid: 3 }]
        );
        s.ev(Event::Exited {
            pid: 3,
            exit: ExitInfo::from_status(Some(0), None),
        });
        assert!(s.c.is_gone());
    }

    #[test]
    fn liveness_failures_restart_after_the_threshold() {
        let mut s = Sim::new(
            RestartPolicy::Always,
            vec![(ProbeKind::Liveness, timing(10, 3))],
        );
        s.start(1);
        for i in 0..3 {
            assert_eq!(
                s.ev(Event::Tick),
                [Action::Probe {
                    pid: 1,
                    kind: ProbeKind::Liveness
                }]
            );
            assert!(s.ev(Event::Tick).is_empty(), "in flight: no second run");
            let a = s.ev(Event::Probed {
                pid: 1,
                kind: ProbeKind::Liveness,
                ok: false,
                message: "HTTP 500".into(),
            });
            if i < 2 {
                assert!(a.is_empty());
                assert_eq!(s.c.next_deadline(), Some(s.now + secs(10)));
                s.at(secs(10));
            } else {
                assert_eq!(a, [Action::Terminate { pid: 1 }]);
            }
        }
        let a = s.ev(Event::Exited {
            pid: 1,
            exit: ExitInfo::from_status(Some(0), None),
        });
        // Killed for liveness: a restart, reason Unhealthy, even with exit code 0.
        assert_eq!(a, [Action::Start { restart_count: 1 }]);
        let last = s.c.last_exit.clone().unwrap();
        assert_eq!(last.reason, "Unhealthy");
        assert!(
            last.message
                .unwrap()
                .contains("liveness probe failed: HTTP 500")
        );
    }

    #[test]
    fn a_success_resets_the_failure_run() {
        let mut s = Sim::new(
            RestartPolicy::Always,
            vec![(ProbeKind::Liveness, timing(1, 2))],
        );
        s.start(1);
        for ok in [false, true, false, true] {
            s.ev(Event::Tick);
            assert!(
                s.ev(Event::Probed {
                    pid: 1,
                    kind: ProbeKind::Liveness,
                    ok,
                    message: String::new()
                })
                .is_empty()
            );
            s.at(secs(1));
        }
        assert!(matches!(s.c.state, ContainerState::Running { .. }));
    }

    #[test]
    fn startup_probe_gates_liveness_and_readiness() {
        let mut s = Sim::new(
            RestartPolicy::Always,
            vec![
                (ProbeKind::Startup, timing(1, 5)),
                (ProbeKind::Liveness, timing(1, 1)),
                (ProbeKind::Readiness, timing(1, 1)),
            ],
        );
        s.start(1);
        assert!(!s.c.started && !s.c.ready);
        assert_eq!(
            s.ev(Event::Tick),
            [Action::Probe {
                pid: 1,
                kind: ProbeKind::Startup
            }]
        );
        s.ev(Event::Probed {
            pid: 1,
            kind: ProbeKind::Startup,
            ok: false,
            message: "refused".into(),
        });
        s.at(secs(1));
        assert_eq!(
            s.ev(Event::Tick),
            [Action::Probe {
                pid: 1,
                kind: ProbeKind::Startup
            }]
        );
        s.ev(Event::Probed {
            pid: 1,
            kind: ProbeKind::Startup,
            ok: true,
            message: String::new(),
        });
        assert!(s.c.started && !s.c.ready, "readiness starts as failed");
        let mut a = s.ev(Event::Tick);
        a.sort_by_key(|a| format!("{a:?}"));
        assert_eq!(
            a,
            [
                Action::Probe {
                    pid: 1,
                    kind: ProbeKind::Liveness
                },
                Action::Probe {
                    pid: 1,
                    kind: ProbeKind::Readiness
                }
            ]
        );
        s.ev(Event::Probed {
            pid: 1,
            kind: ProbeKind::Readiness,
            ok: true,
            message: String::new(),
        });
        assert!(s.c.ready);
        s.ev(Event::Probed {
            pid: 1,
            kind: ProbeKind::Readiness,
            ok: false,
            message: String::new(),
        });
        assert!(!s.c.ready);
        assert!(
            matches!(s.c.state, ContainerState::Running { .. }),
            "readiness never restarts"
        );
    }

    #[test]
    fn startup_failure_kills_the_container() {
        let mut s = Sim::new(
            RestartPolicy::Never,
            vec![(ProbeKind::Startup, timing(1, 1))],
        );
        s.start(1);
        s.ev(Event::Tick);
        assert_eq!(
            s.ev(Event::Probed {
                pid: 1,
                kind: ProbeKind::Startup,
                ok: false,
                message: "timeout".into()
            }),
            [Action::Terminate { pid: 1 }]
        );
        s.ev(Event::Exited {
            pid: 1,
            exit: ExitInfo::from_status(None, Some(15)),
        });
        assert!(
            matches!(&s.c.state, ContainerState::Terminated { exit: Some(e) } if e.reason == "Unhealthy")
        );
    }

    #[test]
    fn initial_delay_counts_from_the_start() {
        let mut t = timing(10, 3);
        t.initial_delay = secs(15);
        let mut s = Sim::new(RestartPolicy::Always, vec![(ProbeKind::Readiness, t)]);
        s.start(1);
        assert_eq!(s.c.next_deadline(), Some(s.now + secs(15)));
        assert!(s.at(secs(14)).ev(Event::Tick).is_empty());
        assert_eq!(s.at(secs(1)).ev(Event::Tick).len(), 1);
    }

    #[test]
    fn failed_starts_wait_and_keep_the_reason() {
        let mut s = Sim::new(RestartPolicy::Always, vec![]);
        s.ev(Event::Tick);
        s.ev(Event::StartFailed {
            reason: "BinaryNotFound".into(),
            message: "no kube-scheduler".into(),
        });
        let ContainerState::Waiting {
            reason, retry_at, ..
        } = s.c.state.clone()
        else {
            panic!()
        };
        assert_eq!(reason, "BinaryNotFound");
        assert_eq!(retry_at, Some(s.now + secs(1)));
        s.at(secs(1)).ev(Event::Tick);
        s.ev(Event::StartFailed {
            reason: "BinaryNotFound".into(),
            message: String::new(),
        });
        assert!(
            matches!(s.c.state, ContainerState::Waiting { retry_at: Some(t), .. } if t == s.now + secs(10))
        );
        assert_eq!(s.c.restart_count, 0);
        assert!(!s.c.has_run);
    }

    #[test]
    fn adopted_containers_keep_their_restart_count() {
        let now = Instant::now();
        let c = Container::new(
            "c",
            RestartPolicy::Always,
            secs(30),
            BackoffConfig::default(),
            vec![],
            now,
        )
        .adopted(42, now - secs(100), 3, now);
        assert_eq!(c.pid(), Some(42));
        assert_eq!(c.restart_count, 3);
        let (c, a) = next(
            &c,
            Event::Exited {
                pid: 42,
                exit: ExitInfo::from_status(Some(1), None),
            },
            now,
        );
        assert_eq!(a, [Action::Start { restart_count: 4 }]);
        assert_eq!(c.restart_count, 3);
    }

    fn restart(why: &str) -> Event {
        Event::Restart { reason: why.into() }
    }

    #[test]
    fn a_changed_file_restarts_gracefully_and_at_once() {
        let mut s = Sim::new(RestartPolicy::Always, vec![]);
        s.start(7);
        // A crash first, so the backoff is not at its start: the restart must not wait on it.
        assert!(matches!(s.exit(7, 1)[..], [Action::Start { .. }]));
        s.ev(Event::Started { pid: 8 });
        assert_eq!(s.c.restart_count, 1);
        assert_eq!(
            s.at(secs(5)).ev(restart("a.crt changed")),
            [Action::Terminate { pid: 8 }]
        );
        assert_eq!(s.c.file_restarts, 1);
        assert_eq!(
            s.c.last_file_restart,
            Some(("a.crt changed".to_string(), s.now))
        );
        // SIGTERM first, SIGKILL after the restart's own short grace.
        assert!(s.at(secs(2)).ev(Event::Tick).is_empty());
        assert_eq!(s.at(secs(1)).ev(Event::Tick), [Action::Kill { pid: 8 }]);
        // A second change while it stops changes nothing.
        assert!(s.ev(restart("b.crt changed")).is_empty());
        assert_eq!(s.c.file_restarts, 1);
        assert_eq!(
            s.ev(Event::Exited {
                pid: 8,
                exit: ExitInfo::from_status(None, Some(15)),
            }),
            [Action::Start { restart_count: 2 }],
            "started again at once, no backoff"
        );
        let exit = s.c.last_exit.clone().expect("the exit is kept");
        assert_eq!(exit.message.as_deref(), Some("restarted: a.crt changed"));
        s.ev(Event::Started { pid: 9 });
        assert_eq!(s.c.restart_count, 2);
        assert_eq!(s.c.pid(), Some(9));
    }

    #[test]
    fn a_changed_file_of_a_removed_or_not_restartable_container_restarts_nothing() {
        // Removed while it stops for a restart: gone, not started.
        let mut s = Sim::new(RestartPolicy::Always, vec![]);
        s.start(7);
        s.ev(restart("a.crt changed"));
        s.ev(Event::Stop);
        assert!(s.exit(7, 0).is_empty());
        assert!(s.c.is_gone());
        // restartPolicy Never: the change is ignored.
        let mut s = Sim::new(RestartPolicy::Never, vec![]);
        s.start(7);
        assert!(s.ev(restart("a.crt changed")).is_empty());
        assert_eq!(s.c.pid(), Some(7));
        assert_eq!(s.c.file_restarts, 0);
    }

    #[test]
    fn a_changed_file_ends_a_crash_loop_wait() {
        let mut s = Sim::new(RestartPolicy::Always, vec![]);
        s.start(7);
        s.exit(7, 1);
        s.ev(Event::Started { pid: 8 });
        s.exit(8, 1);
        assert!(
            matches!(&s.c.state, ContainerState::Waiting { retry_at: Some(t), .. } if *t > s.now),
            "{:?}",
            s.c.state
        );
        assert!(s.ev(restart("a.key changed")).is_empty());
        assert_eq!(s.c.next_deadline(), Some(s.now));
        assert!(matches!(s.ev(Event::Tick)[..], [Action::Start { .. }]));
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(secs(10)), "10s");
        assert_eq!(human(secs(160)), "2m40s");
        assert_eq!(human(secs(300)), "5m");
        assert_eq!(human(Duration::from_millis(150)), "150ms");
    }
}
