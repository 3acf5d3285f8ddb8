//! `--static-pod-runner`: who runs the static pods of `/etc/kubernetes/manifests` on a node.

use std::fmt;
use std::str::FromStr;

/// Who runs the control plane's static pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StaticPodRunner {
    /// kubeboot's agent runs every static pod from the host binaries (the kubelet and
    /// containerd included); the kubelet's own `staticPodPath` stays empty.
    #[default]
    Agent,
    /// The kubelet runs `/etc/kubernetes/manifests` through CRI from images, exactly as with
    /// kubeadm; the agent runs only the kubelet and containerd, from
    /// `/etc/kubeboot/manifests`.
    Kubelet,
}

impl StaticPodRunner {
    /// The flag's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            StaticPodRunner::Agent => "agent",
            StaticPodRunner::Kubelet => "kubelet",
        }
    }

    /// The kubelet's `staticPodPath` on this node: empty under the agent (it alone owns the
    /// manifest directory), kubeadm's `/etc/kubernetes/manifests` under the kubelet.
    pub fn kubelet_static_pod_path(self) -> String {
        match self {
            StaticPodRunner::Agent => String::new(),
            StaticPodRunner::Kubelet => format!(
                "{}/{}",
                crate::names::KUBERNETES_DIR,
                crate::names::MANIFESTS_SUBDIR
            ),
        }
    }
}

impl fmt::Display for StaticPodRunner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown `--static-pod-runner` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "--static-pod-runner {0:?} is not supported: use \"agent\" (kubeboot's agent runs the control plane from the host binaries, the default) or \"kubelet\" (the kubelet runs it through CRI from images, as with kubeadm)"
)]
pub struct UnknownRunner(pub String);

impl FromStr for StaticPodRunner {
    type Err = UnknownRunner;

    fn from_str(s: &str) -> Result<Self, UnknownRunner> {
        match s {
            "agent" => Ok(StaticPodRunner::Agent),
            "kubelet" => Ok(StaticPodRunner::Kubelet),
            other => Err(UnknownRunner(other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_runners_and_names_the_choices_otherwise() {
        for r in [StaticPodRunner::Agent, StaticPodRunner::Kubelet] {
            assert_eq!(r.as_str().parse::<StaticPodRunner>(), Ok(r));
        }
        let err = "kubeadm"
            .parse::<StaticPodRunner>()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"kubeadm\" is not supported")
                && err.contains("\"agent\"")
                && err.contains("\"kubelet\""),
            "{err}"
        );
    }

    #[test]
    fn only_the_kubelet_runner_gives_the_kubelet_a_static_pod_path() {
        assert_eq!(StaticPodRunner::Agent.kubelet_static_pod_path(), "");
        assert_eq!(
            StaticPodRunner::Kubelet.kubelet_static_pod_path(),
            "/etc/kubernetes/manifests"
        );
    }
}
