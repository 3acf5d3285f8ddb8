//! This node's local etcd, as its static pod manifest describes it (the member name, data
//! directory, peer URL and certificates), and a client for it with the healthcheck client
//! certificate: what `reset` and `etcd snapshot` ask before they touch the member.

use std::path::{Path, PathBuf};

use agent::host::fs::Fs;
use anyhow::Context;
use components::{Layout, names};

use crate::etcd_members::EtcdClient;

/// The flags of an etcd command line that say who the member is (pure: from the manifest's
/// command).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdFlags {
    /// `--name`.
    pub name: String,
    /// `--data-dir`.
    pub data_dir: String,
    /// `--initial-advertise-peer-urls`, the first one.
    pub peer_url: Option<String>,
    /// `--trusted-ca-file`.
    pub ca: String,
}

impl EtcdFlags {
    /// Reads the flags of an etcd command line (`--flag=value` form, as kubeadm writes
    /// them); `None` without `--name`, `--data-dir` or `--trusted-ca-file`.
    pub fn parse(command: &[String]) -> Option<Self> {
        let flag = |name: &str| {
            command
                .iter()
                .find_map(|a| a.strip_prefix(&format!("--{name}=")).map(str::to_string))
        };
        Some(Self {
            name: flag("name")?,
            data_dir: flag("data-dir")?,
            peer_url: flag("initial-advertise-peer-urls")
                .and_then(|v| v.split(',').next().map(str::to_string)),
            ca: flag("trusted-ca-file")?,
        })
    }
}

/// This node's etcd member, with paths of the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalEtcd {
    /// The etcd static pod manifest.
    pub manifest: PathBuf,
    /// The member name.
    pub name: String,
    /// The data directory (a path of the layout).
    pub data_dir: PathBuf,
    /// The peer URL it advertises.
    pub peer_url: Option<String>,
    /// The etcd CA certificate.
    pub ca: PathBuf,
    /// The directory of the etcd certificates (the CA's).
    pub cert_dir: PathBuf,
}

/// Reads this node's etcd manifest; `None` when there is none (a worker, an external etcd).
///
/// # Errors
/// The manifest cannot be read or parsed, or its command lacks the member's flags.
pub fn read(fs: &Fs, layout: &Layout) -> anyhow::Result<Option<LocalEtcd>> {
    let path = layout.manifest(names::ETCD);
    let Some(text) = fs.read_string_if_exists(&path)? else {
        return Ok(None);
    };
    from_manifest(&path, &text, layout).map(Some)
}

/// The member an etcd manifest's text describes (`path` is where it was read: the manifest,
/// or an upgrade's backup of it).
///
/// # Errors
/// The text is not a Pod, or its command lacks the member's flags.
pub fn from_manifest(path: &Path, text: &str, layout: &Layout) -> anyhow::Result<LocalEtcd> {
    let shown = path.display().to_string();
    let pod =
        manifests::yaml::from_yaml(text).with_context(|| format!("could not read {shown:?}"))?;
    let command: Vec<String> = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.command.iter().flatten())
        .cloned()
        .collect();
    let flags = EtcdFlags::parse(&command).with_context(|| {
        format!("{shown:?} has no etcd command with --name, --data-dir and --trusted-ca-file")
    })?;
    let ca = layout.node_path(&flags.ca);
    let cert_dir = ca.parent().map(PathBuf::from).unwrap_or_default();
    Ok(LocalEtcd {
        manifest: path.to_path_buf(),
        name: flags.name,
        data_dir: layout.node_path(&flags.data_dir),
        peer_url: flags.peer_url,
        ca,
        cert_dir,
    })
}

impl LocalEtcd {
    /// A client of the local member (`https://127.0.0.1:2379`) with the healthcheck client
    /// certificate, as kubeadm's etcd probe uses.
    ///
    /// # Errors
    /// A certificate or key is missing or invalid.
    pub fn client(&self, fs: &Fs) -> anyhow::Result<EtcdClient> {
        let read = |path: &Path| -> anyhow::Result<Vec<u8>> {
            fs.read_if_exists(path)?
                .with_context(|| format!("{:?} is missing", path.display().to_string()))
        };
        EtcdClient::new(
            &[format!("https://127.0.0.1:{}", names::ETCD_CLIENT_PORT)],
            &read(&self.ca)?,
            &read(&self.cert_dir.join("healthcheck-client.crt"))?,
            &read(&self.cert_dir.join("healthcheck-client.key"))?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_come_from_kubeadms_command_line() {
        let cmd: Vec<String> = [
            "etcd",
            "--name=node1",
            "--data-dir=/var/lib/etcd",
            "--initial-advertise-peer-urls=https://10.0.0.1:2380",
            "--trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            EtcdFlags::parse(&cmd),
            Some(EtcdFlags {
                name: "node1".into(),
                data_dir: "/var/lib/etcd".into(),
                peer_url: Some("https://10.0.0.1:2380".into()),
                ca: "/etc/kubernetes/pki/etcd/ca.crt".into(),
            })
        );
        assert_eq!(EtcdFlags::parse(&cmd[..2]), None);
    }
}
