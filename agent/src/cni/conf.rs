//! A node's CNI network configuration as libcni reads it, pure: which file of the
//! configuration directory a pod gets, the configuration each plugin of a list is given for
//! ADD (the previous plugin's result as `prevResult`) and DEL (reverse order, the ADD's
//! result), and a pod's addresses in a result (CNI spec 0.4.0, libcni `api.go`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// The file name extensions read as network configurations (libcni: `ConfFiles(dir,
/// [".conf", ".conflist", ".json"])`, as the kubelet and containerd call it).
pub const CONF_EXTENSIONS: [&str; 3] = ["conf", "conflist", "json"];

/// True for a file name read as a network configuration: one of [`CONF_EXTENSIONS`] and not
/// hidden (a dot-file is a half-written one, as for manifests).
pub fn is_conf_file(name: &str) -> bool {
    !name.starts_with('.')
        && Path::new(name)
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| CONF_EXTENSIONS.contains(&e))
}

/// A network configuration list (a `.conflist`, or a single `.conf` read as a list of one,
/// libcni `ConfListFromConf`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NetworkList {
    /// The file it was read from.
    pub file: PathBuf,
    /// `name`.
    pub name: String,
    /// `cniVersion`.
    pub cni_version: String,
    /// `plugins`, each an object with a `type`.
    pub plugins: Vec<Value>,
}

/// Why a pod cannot get a network yet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoNetwork {
    /// No configuration file at all (the directory may not exist).
    #[error("no CNI configuration in {dir}")]
    Empty {
        /// The configuration directory.
        dir: String,
    },
    /// Files, but none that reads as a network.
    #[error("no valid CNI configuration in {dir}: {}", problems.join("; "))]
    Invalid {
        /// The configuration directory.
        dir: String,
        /// `<file>: <what is wrong>`, one per file.
        problems: Vec<String>,
    },
}

impl NetworkList {
    /// Reads one configuration file: a list for `.conflist`, else a single plugin's network
    /// configuration (libcni `ConfListFromBytes`, `ConfFromBytes`).
    ///
    /// # Errors
    /// When the text is not JSON, or misses what libcni requires (a list's `name` and
    /// non-empty `plugins`, each plugin's `type`).
    pub fn parse(file: &Path, text: &str) -> Result<NetworkList, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let obj = v.as_object().ok_or("not a JSON object")?;
        let string = |key: &str| obj.get(key).and_then(Value::as_str).unwrap_or_default();
        let is_list = file.extension().is_some_and(|e| e == "conflist");
        let plugins = if is_list {
            let plugins = obj
                .get("plugins")
                .and_then(Value::as_array)
                .ok_or("no \"plugins\" list")?;
            if plugins.is_empty() {
                return Err("\"plugins\" is empty".into());
            }
            plugins.clone()
        } else {
            vec![v.clone()]
        };
        for (i, p) in plugins.iter().enumerate() {
            if p.get("type")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                return Err(if is_list {
                    format!("plugins[{i}] has no \"type\"")
                } else {
                    "no \"type\"".into()
                });
            }
        }
        if string("name").is_empty() {
            return Err("no \"name\"".into());
        }
        Ok(NetworkList {
            file: file.to_path_buf(),
            name: string("name").to_string(),
            cni_version: string("cniVersion").to_string(),
            plugins,
        })
    }

    /// The network every pod sandbox gets first, for its `lo` (containerd: go-cni's
    /// loopback network).
    pub fn loopback() -> NetworkList {
        NetworkList {
            file: PathBuf::new(),
            name: "cni-loopback".into(),
            cni_version: "0.3.1".into(),
            plugins: vec![serde_json::json!({ "type": "loopback" })],
        }
    }

    /// The `type` of plugin `i`.
    pub fn plugin_type(&self, i: usize) -> &str {
        self.plugins[i]["type"].as_str().unwrap_or_default()
    }

    /// What plugin `i` reads on stdin: its entry with the list's `name` and `cniVersion`,
    /// and `prev_result` as `prevResult` when given (libcni `buildOneConfig`).
    pub fn plugin_config(&self, i: usize, prev_result: Option<&Value>) -> Value {
        let mut conf: Map<String, Value> = self.plugins[i].as_object().cloned().unwrap_or_default();
        conf.insert("name".into(), Value::String(self.name.clone()));
        conf.insert("cniVersion".into(), Value::String(self.cni_version.clone()));
        conf.remove("prevResult");
        if let Some(prev) = prev_result {
            conf.insert("prevResult".into(), prev.clone());
        }
        Value::Object(conf)
    }

    /// The plugins' configurations for DEL, in the order they run: the list reversed, each
    /// with the ADD's result as `prevResult` from CNI 0.4.0 on (libcni `delNetworkList`).
    pub fn del_configs(&self, add_result: Option<&Value>) -> Vec<Value> {
        let prev = add_result.filter(|_| version_at_least(&self.cni_version, (0, 4, 0)));
        (0..self.plugins.len())
            .rev()
            .map(|i| self.plugin_config(i, prev))
            .collect()
    }
}

/// `version` ("0.4.0") is at least `min`; an empty or unreadable version is CNI's oldest.
fn version_at_least(version: &str, min: (u32, u32, u32)) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let v = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    v >= min
}

/// The network a pod gets from the files of `dir`: the first by file name that reads as a
/// network (libcni `ConfFiles` sorted, as the kubelet's and containerd's CNI loaders), with
/// `files` holding each candidate's name and text (or why it could not be read).
///
/// # Errors
/// [`NoNetwork::Empty`] without any candidate, [`NoNetwork::Invalid`] naming each file's
/// problem when none reads as a network.
pub fn choose(
    dir: &Path,
    mut files: Vec<(PathBuf, Result<String, String>)>,
) -> Result<NetworkList, NoNetwork> {
    files.retain(|(p, _)| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(is_conf_file)
    });
    files.sort_by(|a, b| a.0.file_name().cmp(&b.0.file_name()));
    let shown = dir.display().to_string();
    if files.is_empty() {
        return Err(NoNetwork::Empty { dir: shown });
    }
    let mut problems = Vec::new();
    for (path, text) in files {
        match text.and_then(|t| NetworkList::parse(&path, &t)) {
            Ok(list) => return Ok(list),
            Err(e) => problems.push(format!(
                "{}: {e}",
                path.file_name().unwrap_or_default().to_string_lossy()
            )),
        }
    }
    Err(NoNetwork::Invalid {
        dir: shown,
        problems,
    })
}

/// The pod's addresses in an ADD result, IPv4 first (containerd: selectPodIPs): those on
/// `ifname` inside the sandbox; when the result ties no address to an interface, all of them.
/// Reads 0.3.x/0.4.0/1.0 results (`ips`) and 0.1/0.2 ones (`ip4.ip`, `ip6.ip`).
pub fn result_ips(result: &Value, ifname: &str) -> Vec<IpAddr> {
    let address = |s: &str| s.split('/').next().and_then(|a| a.parse::<IpAddr>().ok());
    let mut ips: Vec<IpAddr> = match result["ips"].as_array() {
        Some(list) => {
            let interfaces = result["interfaces"].as_array();
            let on_pod_interface = |ip: &&Value| {
                ip["interface"]
                    .as_u64()
                    .and_then(|i| interfaces?.get(usize::try_from(i).ok()?))
                    .is_some_and(|iface| {
                        iface["name"] == ifname
                            && iface["sandbox"].as_str().is_some_and(|s| !s.is_empty())
                    })
            };
            let tied: Vec<&Value> = list.iter().filter(on_pod_interface).collect();
            let chosen = if tied.is_empty() && list.iter().all(|ip| ip["interface"].is_null()) {
                list.iter().collect()
            } else {
                tied
            };
            chosen
                .into_iter()
                .filter_map(|ip| address(ip["address"].as_str()?))
                .collect()
        }
        None => ["ip4", "ip6"]
            .iter()
            .filter_map(|k| address(result[*k]["ip"].as_str()?))
            .collect(),
    };
    ips.sort_by_key(|ip| ip.is_ipv6());
    ips
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CONFLIST: &str = r#"{
  "cniVersion": "0.4.0",
  "name": "podnet",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "ipam": {"type": "host-local"}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}"#;

    fn list() -> NetworkList {
        NetworkList::parse(Path::new("/etc/cni/net.d/10-podnet.conflist"), CONFLIST).unwrap()
    }

    fn files(entries: &[(&str, &str)]) -> Vec<(PathBuf, Result<String, String>)> {
        entries
            .iter()
            .map(|(n, t)| (PathBuf::from("/cni").join(n), Ok(t.to_string())))
            .collect()
    }

    #[test]
    fn the_first_valid_file_by_name_wins() {
        let single = r#"{"cniVersion": "0.3.1", "name": "single", "type": "ptp"}"#;
        let chosen = choose(
            Path::new("/cni"),
            files(&[
                ("20-b.conflist", CONFLIST),
                ("10-a.conf", single),
                ("05-broken.conflist", "{"),
                (".00-tmp.conflist", CONFLIST),
                ("00-readme.txt", "not a network"),
            ]),
        )
        .unwrap();
        assert_eq!(chosen.name, "single");
        assert_eq!(chosen.cni_version, "0.3.1");
        assert_eq!(
            chosen.plugins,
            vec![json!({"cniVersion": "0.3.1", "name": "single", "type": "ptp"})]
        );
        assert_eq!(chosen.file, PathBuf::from("/cni/10-a.conf"));
    }

    #[test]
    fn no_network_says_which_directory_and_why() {
        let none = choose(Path::new("/etc/cni/net.d"), Vec::new()).unwrap_err();
        assert_eq!(none.to_string(), "no CNI configuration in /etc/cni/net.d");
        let only_other = choose(Path::new("/cni"), files(&[("x.yaml", "a: b")])).unwrap_err();
        assert!(
            matches!(only_other, NoNetwork::Empty { .. }),
            "{only_other}"
        );
        let bad = choose(
            Path::new("/cni"),
            files(&[
                ("a.conflist", r#"{"name": "n", "plugins": []}"#),
                ("b.conf", r#"{"name": "n"}"#),
                ("c.conflist", r#"{"plugins": [{"type": "bridge"}]}"#),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            bad,
            "no valid CNI configuration in /cni: a.conflist: \"plugins\" is empty; b.conf: no \"type\"; c.conflist: no \"name\""
        );
    }

    #[test]
    fn add_chains_each_plugins_result_into_the_next() {
        let l = list();
        let first = l.plugin_config(0, None);
        assert_eq!(first["name"], "podnet");
        assert_eq!(first["cniVersion"], "0.4.0");
        assert_eq!(first["bridge"], "cni0");
        assert!(first.get("prevResult").is_none());
        let bridge_result =
            json!({"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "10.1.0.5/24"}]});
        let second = l.plugin_config(1, Some(&bridge_result));
        assert_eq!(second["type"], "portmap");
        assert_eq!(second["name"], "podnet");
        assert_eq!(second["prevResult"], bridge_result);
        assert_eq!(second["capabilities"]["portMappings"], true);
    }

    #[test]
    fn del_runs_in_reverse_with_the_add_result() {
        let l = list();
        let cached = json!({"cniVersion": "0.4.0", "ips": []});
        let del = l.del_configs(Some(&cached));
        let types: Vec<&str> = del.iter().map(|c| c["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["portmap", "bridge"]);
        assert!(
            del.iter()
                .all(|c| c["prevResult"] == cached && c["name"] == "podnet")
        );
        // Before 0.4.0 DEL got no prevResult (libcni).
        let mut old = l.clone();
        old.cni_version = "0.3.1".into();
        assert!(
            old.del_configs(Some(&cached))
                .iter()
                .all(|c| c.get("prevResult").is_none())
        );
        assert!(
            l.del_configs(None)
                .iter()
                .all(|c| c.get("prevResult").is_none())
        );
    }

    #[test]
    fn pod_ips_come_from_the_pod_interface() {
        // What the bridge plugin (0.4.0) returns: the bridge, the host veth, the pod's eth0.
        let result = json!({
            "cniVersion": "0.4.0",
            "interfaces": [
                {"name": "cni0", "mac": "aa:bb:cc:dd:ee:01"},
                {"name": "veth1234", "mac": "aa:bb:cc:dd:ee:02"},
                {"name": "eth0", "mac": "aa:bb:cc:dd:ee:03", "sandbox": "/run/netns/x"}
            ],
            "ips": [
                {"version": "6", "interface": 2, "address": "fd00::5/64"},
                {"version": "4", "interface": 2, "address": "10.199.0.5/24", "gateway": "10.199.0.1"},
                {"version": "4", "interface": 0, "address": "10.199.0.1/24"}
            ],
            "routes": [{"dst": "0.0.0.0/0"}]
        });
        let want: Vec<IpAddr> = vec!["10.199.0.5".parse().unwrap(), "fd00::5".parse().unwrap()];
        assert_eq!(result_ips(&result, "eth0"), want);
        assert!(result_ips(&result, "net1").is_empty());
        let untied = json!({"ips": [{"version": "4", "address": "10.1.0.7/16"}]});
        assert_eq!(
            result_ips(&untied, "eth0"),
            vec!["10.1.0.7".parse::<IpAddr>().unwrap()]
        );
        let old = json!({"ip4": {"ip": "10.2.0.3/24"}});
        assert_eq!(
            result_ips(&old, "eth0"),
            vec!["10.2.0.3".parse::<IpAddr>().unwrap()]
        );
        assert!(result_ips(&Value::Null, "eth0").is_empty());
    }

    #[test]
    fn conf_file_names() {
        assert!(
            is_conf_file("10-kubeboot.conflist")
                && is_conf_file("a.conf")
                && is_conf_file("b.json")
        );
        assert!(!is_conf_file(".10-kubeboot.conflist.abc.tmp") && !is_conf_file("x.conflist.bak"));
    }
}
