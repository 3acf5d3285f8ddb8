//! CNI: kubeboot's default pod network (bridge + host-local + portmap, with loopback) as a
//! network configuration list built purely, the plugin binaries it needs, and the one
//! function that executes a plugin (CNI spec: env + stdin JSON in, result JSON out).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use components::names;
use serde_json::{Value, json};

/// The CNI spec version of kubeboot's configuration (supported by containerd 1.4+ and the
/// plugins 0.8+).
pub const CNI_VERSION: &str = "0.4.0";

/// The plugins kubeboot's bridge network runs (containerd runs `loopback` itself for every
/// pod sandbox).
pub const REQUIRED_PLUGINS: [&str; 4] = ["bridge", "host-local", "portmap", "loopback"];

/// `--pod-network`: who provides the pod network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PodNetwork {
    /// kubeboot writes a bridge CNI configuration for the node's podCIDR and keeps routes to
    /// the other nodes' podCIDRs (host-gw style).
    #[default]
    Bridge,
    /// The user installs a CNI network (flannel, calico, ...); kubeboot writes nothing.
    None,
}

impl PodNetwork {
    /// The flag's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PodNetwork::Bridge => "bridge",
            PodNetwork::None => "none",
        }
    }
}

impl FromStr for PodNetwork {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "bridge" => Ok(PodNetwork::Bridge),
            "none" => Ok(PodNetwork::None),
            other => anyhow::bail!(
                "--pod-network {other:?} is not supported: use \"bridge\" (kubeboot's bridge CNI network, the default) or \"none\" (install your own CNI network)"
            ),
        }
    }
}

/// The first of `dirs` that holds every plugin of [`REQUIRED_PLUGINS`], per `exists`.
///
/// # Errors
/// Names each missing plugin and the path it was looked for at, in the directory that has
/// the most of them.
pub fn plugin_dir(dirs: &[PathBuf], exists: impl Fn(&Path) -> bool) -> anyhow::Result<PathBuf> {
    let mut best: Option<(PathBuf, Vec<PathBuf>)> = None;
    for dir in dirs {
        let missing: Vec<PathBuf> = REQUIRED_PLUGINS
            .iter()
            .map(|p| dir.join(p))
            .filter(|p| !exists(p))
            .collect();
        if missing.is_empty() {
            return Ok(dir.clone());
        }
        if best.as_ref().is_none_or(|(_, m)| missing.len() < m.len()) {
            best = Some((dir.clone(), missing));
        }
    }
    let shown: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    match best {
        Some((_, missing)) => anyhow::bail!(
            "the CNI plugin{} {} of kubeboot's bridge pod network {} missing (looked in {}); install the CNI plugins (Debian: containernetworking-plugins) or pass --pod-network none",
            if missing.len() == 1 { "" } else { "s" },
            missing
                .iter()
                .map(|p| format!(
                    "{} ({})",
                    p.file_name().unwrap_or_default().to_string_lossy(),
                    p.display()
                ))
                .collect::<Vec<_>>()
                .join(", "),
            if missing.len() == 1 { "is" } else { "are" },
            shown.join(", ")
        ),
        None => anyhow::bail!("no CNI plugin directory to look in"),
    }
}

/// The CNI plugin directories kubeboot looks in, in order.
pub fn default_plugin_dirs() -> Vec<PathBuf> {
    names::CNI_BIN_DIRS.iter().map(PathBuf::from).collect()
}

/// kubeboot's bridge network for a node's podCIDR: a Linux bridge that is the pods' gateway,
/// host-local addresses from `pod_cidr`, masquerade for traffic leaving the pod network, and
/// hostPort mappings.
pub fn bridge_conflist(pod_cidr: &str) -> String {
    let conf = json!({
        "cniVersion": CNI_VERSION,
        "name": names::KUBEBOOT_CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": names::KUBEBOOT_CNI_BRIDGE,
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": pod_cidr }]],
                    "routes": [{ "dst": "0.0.0.0/0" }],
                },
            },
            {
                "type": "portmap",
                "capabilities": { "portMappings": true },
            },
        ],
    });
    let mut text = serde_json::to_string_pretty(&conf).expect("a JSON value always serializes");
    text.push('\n');
    text
}

/// The podCIDR a configuration list written by [`bridge_conflist`] is for.
pub fn conflist_pod_cidr(text: &str) -> Option<String> {
    let v: Value = serde_json::from_str(text).ok()?;
    v["plugins"][0]["ipam"]["ranges"][0][0]["subnet"]
        .as_str()
        .map(str::to_string)
}

/// One CNI plugin invocation (CNI spec: `CNI_*` variables, the network configuration on
/// stdin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniRequest {
    /// `ADD`, `DEL`, `CHECK` or `VERSION`.
    pub command: &'static str,
    /// The container (sandbox) ID.
    pub container_id: String,
    /// The network namespace path.
    pub netns: PathBuf,
    /// The interface name inside it.
    pub ifname: String,
    /// Where plugins (and their delegates, host-local) are found.
    pub plugin_dir: PathBuf,
    /// The network configuration of this one plugin (a list's entry with `name` and
    /// `cniVersion` filled in).
    pub config: Value,
}

impl CniRequest {
    /// The plugin's environment.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("CNI_COMMAND".into(), self.command.into()),
            ("CNI_CONTAINERID".into(), self.container_id.clone()),
            ("CNI_NETNS".into(), self.netns.display().to_string()),
            ("CNI_IFNAME".into(), self.ifname.clone()),
            ("CNI_PATH".into(), self.plugin_dir.display().to_string()),
        ]
    }

    /// The plugin binary.
    pub fn plugin(&self) -> PathBuf {
        self.plugin_dir
            .join(self.config["type"].as_str().unwrap_or_default())
    }
}

/// How long one plugin may run.
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Executes one CNI plugin and returns its result JSON.
///
/// # Errors
/// When the plugin cannot run, times out, or fails (its error JSON, `msg` and `details`, in
/// the message).
pub async fn exec(req: &CniRequest) -> anyhow::Result<Value> {
    use tokio::io::AsyncWriteExt;
    let plugin = req.plugin();
    let mut child = tokio::process::Command::new(&plugin)
        .env_clear()
        .envs(req.env())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("could not run the CNI plugin {}", plugin.display()))?;
    let stdin = serde_json::to_vec(&req.config).expect("a JSON value always serializes");
    if let Some(mut w) = child.stdin.take() {
        w.write_all(&stdin)
            .await
            .with_context(|| format!("could not write to the CNI plugin {}", plugin.display()))?;
    }
    let out = tokio::time::timeout(PLUGIN_TIMEOUT, child.wait_with_output())
        .await
        .with_context(|| {
            format!(
                "the CNI plugin {} did not finish within {PLUGIN_TIMEOUT:?}",
                plugin.display()
            )
        })?
        .with_context(|| format!("could not wait for the CNI plugin {}", plugin.display()))?;
    let result: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    if !out.status.success() {
        anyhow::bail!(
            "CNI {} with {} failed ({}): {} {}{}",
            req.command,
            plugin.display(),
            out.status,
            result["msg"].as_str().unwrap_or_default(),
            result["details"].as_str().unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_network_flag_values() {
        assert_eq!("bridge".parse::<PodNetwork>().unwrap(), PodNetwork::Bridge);
        assert_eq!("none".parse::<PodNetwork>().unwrap(), PodNetwork::None);
        let err = "flannel".parse::<PodNetwork>().unwrap_err().to_string();
        assert!(err.contains("\"flannel\" is not supported"), "{err}");
    }

    #[test]
    fn conflist_uses_the_pod_cidr() {
        let text = bridge_conflist("10.244.0.0/24");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["name"], "kubeboot");
        assert_eq!(v["plugins"][0]["type"], "bridge");
        assert_eq!(v["plugins"][0]["ipam"]["type"], "host-local");
        assert_eq!(v["plugins"][1]["type"], "portmap");
        assert_eq!(conflist_pod_cidr(&text).as_deref(), Some("10.244.0.0/24"));
    }

    #[test]
    fn missing_plugin_is_named_with_its_path() {
        let dirs = vec![PathBuf::from("/usr/lib/cni"), PathBuf::from("/opt/cni/bin")];
        let err = plugin_dir(&dirs, |p| !p.ends_with("portmap"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("portmap (/usr/lib/cni/portmap)"), "{err}");
        let found = plugin_dir(&dirs, |p| p.starts_with("/opt")).unwrap();
        assert_eq!(found, PathBuf::from("/opt/cni/bin"));
    }

    #[test]
    fn request_env_follows_the_spec() {
        let req = CniRequest {
            command: "ADD",
            container_id: "abc".into(),
            netns: "/run/netns/x".into(),
            ifname: "eth0".into(),
            plugin_dir: "/usr/lib/cni".into(),
            config: json!({"type": "bridge"}),
        };
        assert!(req.env().contains(&("CNI_COMMAND".into(), "ADD".into())));
        assert_eq!(req.plugin(), PathBuf::from("/usr/lib/cni/bridge"));
    }
}
