//! Facts about this host that defaulting and validation need (kubeadm: ChooseAPIServerBindAddress,
//! GetHostname): observed here, handed to the pure config code as `HostFacts`.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Context;

use components::config::HostFacts;

/// Whether this host looks like an Amazon EC2 instance: the files cadvisor reads for it
/// (cadvisor: utils/cloudinfo/aws/aws.go, IsActiveProvider) or the DMI system vendor
/// mention Amazon.
pub fn looks_like_ec2() -> bool {
    [
        "/sys/class/dmi/id/product_version",
        "/sys/class/dmi/id/bios_vendor",
        "/sys/class/dmi/id/sys_vendor",
        "/etc/os-release",
    ]
    .iter()
    .any(|p| std::fs::read_to_string(p).is_ok_and(|t| mentions_amazon(&t)))
}

fn mentions_amazon(text: &str) -> bool {
    text.to_ascii_lowercase().contains("amazon")
}

/// The default binary directories, searched after any `--bin-dir`.
pub fn default_bin_dirs() -> Vec<PathBuf> {
    vec![PathBuf::from("/usr/local/bin"), PathBuf::from("/usr/bin")]
}

/// The `--bin-dir`s as absolute, symlink-free paths, resolved once against the current
/// directory ([`agent::host::trust::canonical_dir`]): what the preflight checks is what the
/// agent, started elsewhere and later, runs.
///
/// # Errors
/// A `--bin-dir` cannot be resolved (a file or a symlink loop on the way, the current
/// directory unreadable).
pub fn canonical_bin_dirs(given: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    given
        .iter()
        .map(|d| {
            agent::host::trust::canonical_dir(d).with_context(|| {
                format!(
                    "could not resolve --bin-dir {:?}; pass an existing directory, as an absolute path",
                    d.display().to_string()
                )
            })
        })
        .collect()
}

/// The directories the agent looks its binaries up in and puts first on every component's
/// `PATH`: the `--bin-dir`s ([`canonical_bin_dirs`]), or the defaults, each checked
/// ([`agent::host::trust::check_dir`]) whatever it holds, since a component runs whatever
/// `iptables` or `mount` it finds there first.
///
/// # Errors
/// As [`canonical_bin_dirs`], or a directory is not trusted.
pub fn trusted_bin_dirs(given: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let dirs = if given.is_empty() {
        default_bin_dirs()
    } else {
        canonical_bin_dirs(given)?
    };
    for d in &dirs {
        agent::host::trust::check_dir(d)?;
    }
    Ok(dirs)
}

/// The directories binaries are looked up in: the `--bin-dir`s in order
/// ([`canonical_bin_dirs`]), then the defaults (so a `--bin-dir` holding the Kubernetes
/// binaries still finds the distribution's etcd and containerd), without repeats.
///
/// # Errors
/// As [`canonical_bin_dirs`].
pub fn bin_dirs(given: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for d in canonical_bin_dirs(given)?
        .into_iter()
        .chain(default_bin_dirs())
    {
        if !dirs.contains(&d) {
            dirs.push(d);
        }
    }
    Ok(dirs)
}

/// The host name, lower-cased as kubeadm's node name default.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
        .trim()
        .to_lowercase()
}

/// The interface of the IPv4 default route (`/proc/net/route`, destination 0).
fn default_route_interface() -> Option<String> {
    let routes = std::fs::read_to_string("/proc/net/route").ok()?;
    routes.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 7 && f[1] == "00000000" && f[7] == "00000000").then(|| f[0].to_string())
    })
}

/// Every address of every interface, with the interface name.
fn interface_addresses() -> Vec<(String, IpAddr)> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return vec![];
    };
    addrs
        .filter_map(|a| {
            let sa = a.address?;
            let ip = if let Some(v4) = sa.as_sockaddr_in() {
                IpAddr::V4(v4.ip())
            } else if let Some(v6) = sa.as_sockaddr_in6() {
                IpAddr::V6(v6.ip())
            } else {
                return None;
            };
            Some((a.interface_name, ip))
        })
        .collect()
}

pub use agent::host::process::find_binary;

/// The version of a binary found in `bin_dirs`, if it runs and prints one.
///
/// # Errors
/// The binary found is not trusted: it is not run, not even for `--version`.
pub fn binary_version(
    name: &str,
    bin_dirs: &[PathBuf],
) -> Result<Option<components::Version>, agent::host::trust::Untrusted> {
    let Some(path) = find_binary(name, bin_dirs)? else {
        return Ok(None);
    };
    let Ok(out) = std::process::Command::new(&path).arg("--version").output() else {
        return Ok(None);
    };
    Ok(components::Version::find_in(&String::from_utf8_lossy(
        &out.stdout,
    )))
}

/// Observes the host, without asking any binary for its version (join: the version is the
/// cluster's).
pub fn node_facts() -> HostFacts {
    HostFacts {
        detected_version: None,
        ..facts(&[])
    }
}

/// Observes the host.
pub fn facts(bin_dirs: &[PathBuf]) -> HostFacts {
    let addrs = interface_addresses();
    let default_if = default_route_interface();
    let default_address = default_if.as_ref().and_then(|ifname| {
        addrs
            .iter()
            .find(|(n, ip)| n == ifname && ip.is_ipv4())
            .map(|(_, ip)| *ip)
    });
    HostFacts {
        hostname: hostname(),
        default_address,
        local_addresses: addrs.into_iter().map(|(_, ip)| ip).collect(),
        // An untrusted kube-apiserver gives no version; the preflight names it.
        detected_version: binary_version(components::names::KUBE_APISERVER, bin_dirs)
            .ok()
            .flatten(),
    }
}

/// The host facts the manifests depend on (which CA directories exist: kubeadm mounts them).
pub fn host_paths(layout: &components::Layout) -> manifests::HostPaths {
    manifests::HostPaths::detect(layout, |p| p.exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amazon_in_any_case_means_ec2() {
        assert!(mentions_amazon("Amazon EC2\n"));
        assert!(mentions_amazon("4.11.amazon\n"));
        assert!(!mentions_amazon("QEMU\n"));
    }

    #[test]
    fn given_dirs_come_first_then_defaults_without_repeats() {
        let given = vec![PathBuf::from("/opt/k8s"), PathBuf::from("/usr/bin")];
        assert_eq!(
            bin_dirs(&given).unwrap(),
            vec![
                PathBuf::from("/opt/k8s"),
                PathBuf::from("/usr/bin"),
                PathBuf::from("/usr/local/bin")
            ]
        );
        assert_eq!(bin_dirs(&[]).unwrap(), default_bin_dirs());
    }

    #[test]
    fn relative_bin_dirs_become_absolute_and_symlink_free() {
        let cwd = std::env::current_dir().unwrap();
        let dirs = bin_dirs(&[PathBuf::from("./src/../src"), PathBuf::from("missing")]).unwrap();
        assert_eq!(dirs[0], cwd.join("src").canonicalize().unwrap());
        assert_eq!(dirs[1], cwd.join("missing"));
        assert!(dirs.iter().all(|d| d.is_absolute()), "{dirs:?}");
    }
}

/// The static pod runner this node was set up with, read from the kubelet's configuration
/// (`/var/lib/kubelet/config.yaml`): the kubelet when its `staticPodPath` is the manifest
/// directory, the agent otherwise; `None` before `kubelet-start` wrote the file. Starting
/// the agent with the other runner would run every control-plane pod twice.
pub fn node_static_pod_runner(layout: &components::Layout) -> Option<components::StaticPodRunner> {
    let path = layout
        .kubelet_dir()
        .join(components::names::KUBELET_CONFIG_FILE);
    let text = agent::host::fs::Fs::real()
        .read_string_if_exists(&path)
        .ok()??;
    Some(runner_of_kubelet_config(&text, layout))
}

/// The `--static-pod-runner` to use: the flag's, else the one this node was set up with
/// ([`node_static_pod_runner`]), else the default.
///
/// # Errors
/// The flag names no runner.
pub fn static_pod_runner(
    flag: Option<&str>,
    layout: &components::Layout,
) -> anyhow::Result<components::StaticPodRunner> {
    Ok(match flag {
        Some(v) => v.parse()?,
        None => node_static_pod_runner(layout).unwrap_or_default(),
    })
}

/// [`node_static_pod_runner`] of a KubeletConfiguration's text.
fn runner_of_kubelet_config(
    text: &str,
    layout: &components::Layout,
) -> components::StaticPodRunner {
    let doc: serde_json::Value = yaml_serde::from_str(text).unwrap_or_default();
    let path = doc["staticPodPath"].as_str().unwrap_or_default();
    if !path.is_empty() && layout.node_path(path) == layout.manifests_dir() {
        components::StaticPodRunner::Kubelet
    } else {
        components::StaticPodRunner::Agent
    }
}

#[cfg(test)]
mod runner_tests {
    use super::*;
    use components::StaticPodRunner;

    #[test]
    fn the_kubelet_config_tells_the_runner() {
        let l = components::Layout::host();
        let of = |t: &str| runner_of_kubelet_config(t, &l);
        assert_eq!(
            of("kind: KubeletConfiguration\nstaticPodPath: /etc/kubernetes/manifests\n"),
            StaticPodRunner::Kubelet
        );
        assert_eq!(
            of("kind: KubeletConfiguration\nstaticPodPath: \"\"\n"),
            StaticPodRunner::Agent
        );
        assert_eq!(
            of("kind: KubeletConfiguration\nstaticPodPath: /srv/other\n"),
            StaticPodRunner::Agent
        );
    }
}
