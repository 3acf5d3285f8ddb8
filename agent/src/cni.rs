//! CNI: kubeboot's default pod network (bridge + host-local + portmap, with loopback) as a
//! network configuration list built purely, the plugin binaries it needs, the one function
//! that executes a plugin (CNI spec: env + stdin JSON in, result JSON out), and ADD/DEL of a
//! whole configuration list on top of it ([`conf`] reads the lists).

pub mod conf;

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

/// What a runtime passes to every plugin of one sandbox's network, for ADD and DEL alike
/// (libcni `RuntimeConf`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RuntimeConf {
    /// `CNI_CONTAINERID`: the sandbox's stable id.
    pub container_id: String,
    /// `CNI_NETNS`: the network namespace path.
    pub netns: PathBuf,
    /// `CNI_IFNAME`: the interface inside it.
    pub ifname: String,
    /// `CNI_ARGS`, `K=V` pairs (the kubelet's and containerd's `K8S_POD_*`).
    pub args: Vec<(String, String)>,
    /// Where plugins (and their delegates, host-local) are found, in order: `CNI_PATH`.
    pub plugin_dirs: Vec<PathBuf>,
}

impl RuntimeConf {
    /// The same sandbox for another interface (the loopback network's `lo`).
    pub fn with_ifname(&self, ifname: &str) -> RuntimeConf {
        RuntimeConf {
            ifname: ifname.to_string(),
            ..self.clone()
        }
    }
}

/// One CNI plugin invocation (CNI spec: `CNI_*` variables, the network configuration on
/// stdin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniRequest<'a> {
    /// `ADD`, `DEL`, `CHECK` or `VERSION`.
    pub command: &'static str,
    /// The sandbox.
    pub runtime: &'a RuntimeConf,
    /// The network configuration of this one plugin (a list's entry with `name` and
    /// `cniVersion` filled in, see [`conf::NetworkList::plugin_config`]).
    pub config: Value,
}

impl CniRequest<'_> {
    /// The `CNI_*` variables.
    pub fn env(&self) -> Vec<(String, String)> {
        let rt = self.runtime;
        let args: Vec<String> = rt.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let path: Vec<String> = rt
            .plugin_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        vec![
            ("CNI_COMMAND".into(), self.command.into()),
            ("CNI_CONTAINERID".into(), rt.container_id.clone()),
            ("CNI_NETNS".into(), rt.netns.display().to_string()),
            ("CNI_IFNAME".into(), rt.ifname.clone()),
            ("CNI_ARGS".into(), args.join(";")),
            ("CNI_PATH".into(), path.join(":")),
        ]
    }

    /// The plugin's `type`.
    pub fn plugin_type(&self) -> &str {
        self.config["type"].as_str().unwrap_or_default()
    }

    /// The plugin binary: the first of the plugin directories that has it, per `exists`.
    pub fn plugin(&self, exists: impl Fn(&Path) -> bool) -> Option<PathBuf> {
        let name = self.plugin_type();
        if name.is_empty() || name.contains('/') {
            return None;
        }
        self.runtime
            .plugin_dirs
            .iter()
            .map(|d| d.join(name))
            .find(|p| exists(p))
    }
}

/// How long one plugin may run.
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Executes one CNI plugin and returns its result JSON (`null` when it printed none). The
/// plugin inherits the agent's environment, as from libcni: plugins run `iptables` and the
/// like through `PATH`.
///
/// # Errors
/// When the plugin is not found, is not trusted ([`crate::host::trust`]), cannot run, times
/// out, or fails (its error JSON, `msg` and `details`, in the message).
pub async fn exec(req: &CniRequest<'_>) -> anyhow::Result<Value> {
    use tokio::io::AsyncWriteExt;
    let Some(plugin) = req.plugin(Path::is_file) else {
        let dirs: Vec<String> = req
            .runtime
            .plugin_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        anyhow::bail!(
            "the CNI plugin {:?} is not in {}; install it there (Debian: containernetworking-plugins)",
            req.plugin_type(),
            dirs.join(", ")
        );
    };
    // It runs as root: only a file no one else can replace.
    crate::host::trust::check_binary(&plugin)?;
    let mut child = tokio::process::Command::new(&plugin)
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
        let stderr = String::from_utf8_lossy(&out.stderr);
        let said: Vec<&str> = [
            result["msg"].as_str().unwrap_or_default(),
            result["details"].as_str().unwrap_or_default(),
            stderr.trim(),
        ]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
        anyhow::bail!(
            "CNI {} with {} failed ({}): {}",
            req.command,
            plugin.display(),
            out.status,
            said.join(" ")
        );
    }
    Ok(result)
}

/// ADD of a network list: its plugins in order, each given the previous one's result as
/// `prevResult` (libcni `AddNetworkList`). Returns the last plugin's result.
///
/// # Errors
/// The first plugin that fails, named with the network and its file; the plugins before it
/// are not undone (the caller runs [`del_list`], which every plugin must tolerate).
pub async fn add_list(list: &conf::NetworkList, rt: &RuntimeConf) -> anyhow::Result<Value> {
    let mut prev: Option<Value> = None;
    for i in 0..list.plugins.len() {
        let req = CniRequest {
            command: "ADD",
            runtime: rt,
            config: list.plugin_config(i, prev.as_ref()),
        };
        let result = exec(&req).await.with_context(|| plugin_context(list, i))?;
        if !result.is_null() {
            prev = Some(result);
        }
    }
    Ok(prev.unwrap_or(Value::Null))
}

/// DEL of a network list: its plugins in reverse order, each given `add_result` (libcni
/// `DelNetworkList` with the cached result).
///
/// # Errors
/// The first plugin that fails; the ones after it are not run (DEL is retried as a whole).
pub async fn del_list(
    list: &conf::NetworkList,
    rt: &RuntimeConf,
    add_result: Option<&Value>,
) -> anyhow::Result<()> {
    let n = list.plugins.len();
    for (k, config) in list.del_configs(add_result).into_iter().enumerate() {
        let req = CniRequest {
            command: "DEL",
            runtime: rt,
            config,
        };
        exec(&req)
            .await
            .with_context(|| plugin_context(list, n - 1 - k))?;
    }
    Ok(())
}

fn plugin_context(list: &conf::NetworkList, i: usize) -> String {
    let file = if list.file.as_os_str().is_empty() {
        String::new()
    } else {
        format!(" ({})", list.file.display())
    };
    format!(
        "network {:?}{file}, plugin {i} ({})",
        list.name,
        list.plugin_type(i)
    )
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
        let rt = RuntimeConf {
            container_id: "abc".into(),
            netns: "/run/netns/x".into(),
            ifname: "eth0".into(),
            args: vec![
                ("IgnoreUnknown".into(), "1".into()),
                ("K8S_POD_NAME".into(), "p".into()),
            ],
            plugin_dirs: vec!["/usr/lib/cni".into(), "/opt/cni/bin".into()],
        };
        let req = CniRequest {
            command: "ADD",
            runtime: &rt,
            config: json!({"type": "bridge"}),
        };
        let env = req.env();
        for want in [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_NETNS", "/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=p"),
            ("CNI_PATH", "/usr/lib/cni:/opt/cni/bin"),
        ] {
            assert!(
                env.contains(&(want.0.to_string(), want.1.to_string())),
                "{want:?} in {env:?}"
            );
        }
        assert_eq!(
            req.plugin(|p| p.starts_with("/opt")),
            Some(PathBuf::from("/opt/cni/bin/bridge"))
        );
        assert_eq!(req.plugin(|_| false), None);
        let lo = rt.with_ifname("lo");
        assert_eq!(
            (lo.ifname.as_str(), &lo.container_id),
            ("lo", &rt.container_id)
        );
    }
}
