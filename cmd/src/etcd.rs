//! `kubeboot etcd snapshot save|restore` (kubeadm has none; k3s `etcd-snapshot`, k0s
//! `backup`): a consistent snapshot of the local stacked etcd with a JSON sidecar, and its
//! restore on a control-plane node ([`phases::etcd_snapshot`] does the work).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::{Args, Subcommand};
use components::names;
use phases::out::Out;
use phases::say;

/// `kubeboot etcd`: commands for the cluster's local etcd.
#[derive(Args, Debug, Clone)]
pub struct EtcdArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: EtcdCommands,
}

/// `kubeboot etcd` subcommands.
#[derive(Subcommand, Debug, Clone)]
pub enum EtcdCommands {
    /// Save or restore snapshots of etcd
    #[command(subcommand)]
    Snapshot(SnapshotCommands),
}

/// `kubeboot etcd snapshot` subcommands.
#[derive(Subcommand, Debug, Clone)]
pub enum SnapshotCommands {
    /// Save a consistent snapshot of etcd to <file>, with a JSON sidecar <file>.json
    ///
    /// The snapshot holds every object of the cluster, Secrets included: it is written with
    /// mode 0600. The sidecar records the etcd version, cluster ID, members, revision, the
    /// Kubernetes version and the snapshot's SHA-256, which restore checks.
    Save(SaveArgs),
    /// Restore etcd on this control-plane node from a snapshot saved by "kubeboot etcd snapshot save"
    ///
    /// Stops this node's etcd (its manifest is moved to /etc/kubernetes/tmp), moves the old data
    /// into <data-dir>/pre-restore-<time>, rebuilds it from the snapshot with etcdctl, puts back
    /// the static Pod manifests the snapshot kept when it was taken under another Kubernetes
    /// version, starts etcd again and waits for etcd and the API server. With --data-dir, only
    /// rebuilds that directory (no running etcd may hold it).
    Restore(RestoreArgs),
}

/// `kubeboot etcd snapshot save`.
#[derive(Args, Debug, Clone)]
pub struct SaveArgs {
    /// Where to write the snapshot.
    pub file: PathBuf,
    /// The path where the certificates are stored: etcd/ca.crt and etcd/healthcheck-client.{crt,key} are used.
    #[arg(long, value_name = "string", default_value = "/etc/kubernetes/pki")]
    pub cert_dir: PathBuf,
    /// The etcd client URL to take the snapshot from; repeatable, the first healthy one is used.
    #[arg(long, value_name = "url")]
    pub endpoint: Vec<String>,
}

/// `kubeboot etcd snapshot restore`.
#[derive(Args, Debug, Clone)]
pub struct RestoreArgs {
    /// The snapshot (its sidecar <file>.json must sit beside it).
    pub file: PathBuf,
    /// Restore into this directory only, instead of this node's etcd data directory; no running etcd may hold it.
    #[arg(long, value_name = "dir")]
    pub data_dir: Option<PathBuf>,
    /// The member name to restore as. (default: this node's, from its etcd manifest)
    #[arg(long, value_name = "string")]
    pub name: Option<String>,
    /// The peer URL of the member restored. (default: this node's, from its etcd manifest)
    #[arg(long, value_name = "url")]
    pub initial_advertise_peer_urls: Option<String>,
    /// Directory holding etcdctl; repeatable, searched in order before /usr/local/bin and /usr/bin
    #[arg(long, value_name = "dir")]
    pub bin_dir: Vec<PathBuf>,
    /// How long to wait for etcd to stop and for etcd and the API server to become healthy.
    #[arg(long, value_name = "seconds", default_value_t = 180)]
    pub timeout: u64,
}

/// Runs `kubeboot etcd ...`.
pub fn run(args: EtcdArgs) -> anyhow::Result<()> {
    let out = Out::stdout();
    match args.command {
        EtcdCommands::Snapshot(SnapshotCommands::Save(a)) => save(&out, a),
        EtcdCommands::Snapshot(SnapshotCommands::Restore(a)) => restore(&out, a),
    }
}

fn save(out: &Out, a: SaveArgs) -> anyhow::Result<()> {
    let fs = agent::host::fs::Fs::real();
    let read = |name: &str| -> anyhow::Result<Vec<u8>> {
        let path = a.cert_dir.join("etcd").join(name);
        fs.read_if_exists(&path)?.with_context(|| {
            format!(
                "{:?} is missing: pass --cert-dir with the directory of the cluster's certificates",
                path.display().to_string()
            )
        })
    };
    let endpoints = if a.endpoint.is_empty() {
        vec![format!("https://127.0.0.1:{}", names::ETCD_CLIENT_PORT)]
    } else {
        a.endpoint.clone()
    };
    let client = phases::etcd_members::EtcdClient::new(
        &endpoints,
        &read("ca.crt")?,
        &read("healthcheck-client.crt")?,
        &read("healthcheck-client.key")?,
    )?;
    let info = phases::etcd_snapshot::save(
        &client,
        &fs,
        &a.file,
        SystemTime::now(),
        Some(&components::Layout::host()),
    )?;
    say!(
        out,
        "etcd",
        "Saved a snapshot of etcd {} (cluster {:x}, revision {}, {} bytes) to {:?}",
        info.etcd_version,
        u64::from_str_radix(&info.cluster_id, 16).unwrap_or_default(),
        info.revision,
        info.size,
        a.file.display().to_string()
    );
    say!(
        out,
        "etcd",
        "Wrote its sidecar {:?}: members {}, Kubernetes {}, SHA-256 {}",
        phases::etcd_snapshot::sidecar_path(&a.file)
            .display()
            .to_string(),
        info.members
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        info.kubernetes_version.as_deref().unwrap_or("unknown"),
        info.sha256
    );
    Ok(())
}

fn restore(out: &Out, a: RestoreArgs) -> anyhow::Result<()> {
    let layout = components::Layout::host();
    let fs = agent::host::fs::Fs::real();
    let bin_dirs = phases::host::bin_dirs(&a.bin_dir)?;
    phases::etcd_snapshot::restore(
        &phases::etcd_snapshot::RestoreNode {
            layout: &layout,
            fs: &fs,
            out,
            bin_dirs: &bin_dirs,
            data_dir: a.data_dir,
            name: a.name,
            peer_url: a.initial_advertise_peer_urls,
            timeout: Duration::from_secs(a.timeout),
            now: SystemTime::now(),
        },
        &a.file,
    )
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Commands};

    #[test]
    fn snapshot_commands_parse() {
        let parsed = Cli::try_parse_from([
            "kubeboot",
            "etcd",
            "snapshot",
            "save",
            "/backup/etcd.db",
            "--endpoint",
            "https://10.0.0.1:2379",
        ])
        .expect("parses");
        let Commands::Etcd(EtcdArgs {
            command: EtcdCommands::Snapshot(SnapshotCommands::Save(s)),
        }) = parsed.command
        else {
            panic!("not save");
        };
        assert_eq!(s.file, PathBuf::from("/backup/etcd.db"));
        assert_eq!(s.cert_dir, PathBuf::from("/etc/kubernetes/pki"));
        assert_eq!(s.endpoint, vec!["https://10.0.0.1:2379".to_string()]);
        assert!(Cli::try_parse_from(["kubeboot", "etcd", "snapshot", "save"]).is_err());
        assert!(
            Cli::try_parse_from(["kubeboot", "etcd", "snapshot", "restore", "/b/e.db"]).is_ok()
        );
    }
}
