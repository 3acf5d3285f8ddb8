//! Container runtimes, a closed set: `process` (host binaries under the shim) today, `cri`
//! (a CRI socket) later.

pub mod process;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::host::process::PidFd;
use crate::pod::lifecycle::ExitInfo;
use crate::pod::spec::{ContainerSpec, StaticPod};
use crate::state::ContainerRecord;

pub use self::process::ProcessRuntime;

/// Why a container could not be started: a CamelCase reason and a message naming the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartError {
    /// BinaryNotFound, BinaryVersionMismatch, CommandMismatch, ...
    pub reason: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl StartError {
    /// A start error.
    pub fn new(reason: &str, message: impl Into<String>) -> Self {
        StartError {
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// A running container as a runtime tracks it.
#[derive(Debug, Clone)]
pub struct Running {
    /// The process the agent watches (the shim).
    pub pid: u32,
    /// Its pidfd: signals go through it.
    pub pidfd: Arc<PidFd>,
    /// The CRI log file of this run.
    pub log_file: PathBuf,
    /// When it started.
    pub started_wall: SystemTime,
}

/// A container found running after an agent restart.
#[derive(Debug)]
pub struct Adopted {
    /// Its record.
    pub record: ContainerRecord,
    /// The process.
    pub running: Running,
}

/// The runtime the agent uses.
#[derive(Debug)]
pub enum AnyRuntime {
    /// Host processes under the shim.
    Process(ProcessRuntime),
}

impl AnyRuntime {
    /// The runtime's name in the status.
    pub fn name(&self) -> &'static str {
        match self {
            AnyRuntime::Process(_) => "process",
        }
    }

    /// Starts a container, in the pod's network namespace `netns` unless it is a hostNetwork
    /// pod.
    pub async fn start(
        &self,
        pod: &StaticPod,
        c: &ContainerSpec,
        restart_count: u32,
        netns: Option<&Path>,
    ) -> Result<Running, StartError> {
        match self {
            AnyRuntime::Process(r) => r.start(pod, c, restart_count, netns).await,
        }
    }

    /// Asks a container to stop (SIGTERM).
    pub fn terminate(&self, r: &Running) {
        match self {
            AnyRuntime::Process(p) => p.terminate(r),
        }
    }

    /// Kills a container (SIGKILL).
    pub fn kill(&self, uid: &str, container: &str, r: &Running) {
        match self {
            AnyRuntime::Process(p) => p.kill(uid, container, r),
        }
    }

    /// Waits for a container to end; what its supervisor left running is stopped within
    /// `grace` (then killed).
    pub async fn wait(&self, uid: &str, container: &str, r: &Running, grace: Duration) -> ExitInfo {
        match self {
            AnyRuntime::Process(p) => p.wait(uid, container, r, grace).await,
        }
    }

    /// The environment exec probes run with.
    pub fn container_env(&self, c: &ContainerSpec) -> Vec<(String, String)> {
        match self {
            AnyRuntime::Process(p) => p.container_env(c),
        }
    }

    /// Containers still running from before an agent restart.
    pub fn adopt(&self, orphan_grace: Duration) -> Vec<Adopted> {
        match self {
            AnyRuntime::Process(p) => p.adopt(orphan_grace),
        }
    }

    /// Drops what the runtime keeps about a container that is gone.
    pub fn forget(&self, uid: &str, container: &str) {
        match self {
            AnyRuntime::Process(p) => p.forget(uid, container),
        }
    }

    /// Drops what the runtime keeps about a pod that is gone.
    pub fn forget_pod(&self, uid: &str) {
        match self {
            AnyRuntime::Process(p) => p.forget_pod(uid),
        }
    }
}
