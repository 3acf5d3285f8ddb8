//! The upgrade's backups before it changes anything: the files its steps change, the
//! certificate pairs they renew and the cluster objects, then the journal ([`super::journal`]).

use std::path::{Path, PathBuf};

use agent::host::fs::Fs;
use anyhow::Context;
use components::{Version, names};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::ConfigMap;

use super::agent_restart::bin_dirs_of;
use super::apply::{Command, NodeFacts, Request, Step};
use super::journal::{self, Journal};
use super::renewal::{certificates_of, renewed_files};
use crate::out::Out;
use crate::say;

/// A backup directory name for `now`: kubeboot-backup-2026-12-03-16-30-05.
pub fn backup_dir_name(now: std::time::SystemTime) -> String {
    let stamp = agent::logs::rfc3339(now);
    let stamp: String = stamp
        .chars()
        .take(19)
        .map(|c| if c.is_ascii_digit() { c } else { '-' })
        .collect();
    format!("kubeboot-backup-{stamp}")
}

/// A name for a new backup directory in `tmp` at `now`: [`backup_dir_name`], or, when a
/// directory of that name exists already, the same with the first free `-02` .. `-99` (a run
/// killed after its backup was complete but before its journal recorded it, then run again
/// within the same second, found its own name taken). The suffixes keep the names in time
/// order as strings.
fn free_backup_dir_name(fs: &Fs, tmp: &Path, now: std::time::SystemTime) -> anyhow::Result<String> {
    let base = backup_dir_name(now);
    std::iter::once(base.clone())
        .chain((2..=99).map(|n| format!("{base}-{n:02}")))
        .find(|name| !fs.exists(&tmp.join(name)))
        .with_context(|| {
            format!(
                "every backup directory name of this second ({:?} and 98 more) is taken; run the command again",
                tmp.join(&base).display().to_string()
            )
        })
}

/// Backs up every file the steps change, the certificate pairs they renew and the cluster
/// objects, then writes the journal. The backups go to a hidden `.<name>.partial` directory
/// renamed to its final name once complete: a run killed half-way leaves no backup directory
/// that looks whole, and the next run removes the partial one ([`super::resume`]).
pub(super) fn begin(
    req: &Request,
    out: &Out,
    view: &super::observe::ClusterView,
    steps: &[Step],
    facts: &NodeFacts,
    target: &Version,
) -> anyhow::Result<Journal> {
    let layout = &req.inputs.layout;
    let fs = &req.inputs.fs;
    let name = free_backup_dir_name(fs, &layout.tmp_dir(), req.inputs.now)?;
    let backup_dir = layout.tmp_dir().join(&name);
    let partial = layout.tmp_dir().join(super::resume::partial_name(&name));
    fs.ensure_dir(&layout.tmp_dir(), 0o700)?;
    super::resume::remove_partial_backups(fs, layout, out)?;
    fs.create_dir(&partial, 0o700).with_context(|| {
        format!(
            "could not create the backup directory {:?}",
            partial.display().to_string()
        )
    })?;
    // Written into `partial`, recorded under the final name.
    let backup = |file: String, bytes: &[u8]| -> anyhow::Result<PathBuf> {
        fs.write_private(&partial.join(&file), bytes)?;
        Ok(backup_dir.join(file))
    };
    let kubelet_config = layout.kubelet_dir().join(names::KUBELET_CONFIG_FILE);
    let mut paths: Vec<PathBuf> = steps.iter().map(|s| s.manifest.clone()).collect();
    paths.push(kubelet_config);
    let mut files = Vec::new();
    for (i, p) in paths.iter().enumerate() {
        let copy = match fs.read_if_exists(p)? {
            Some(bytes) => {
                let name = p
                    .file_name()
                    .map_or_else(|| format!("file-{i}"), |n| n.to_string_lossy().into_owned());
                Some(backup(format!("{i:02}-{name}"), &bytes)?)
            }
            None => None,
        };
        files.push((p.clone(), copy));
    }
    let mut key_pairs = Vec::new();
    if req.certificate_renewal && facts.control_plane {
        let names_: Vec<&str> = steps
            .iter()
            .flat_map(|s| certificates_of(s.component))
            .copied()
            .collect();
        for (i, (cert, key)) in renewed_files(req, view, &names_).into_iter().enumerate() {
            let Some(key) = key else { continue };
            let (Some(c), Some(k)) = (fs.read_if_exists(&cert)?, fs.read_if_exists(&key)?) else {
                continue;
            };
            let base = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
            let cert_copy = backup(
                format!("pki-{i:02}-{}", base(&cert).unwrap_or_default()),
                &c,
            )?;
            let key_copy = backup(format!("pki-{i:02}-{}", base(&key).unwrap_or_default()), &k)?;
            key_pairs.push(journal::KeyPair {
                cert,
                cert_copy,
                key,
                key_copy,
            });
        }
    }
    let mut objects = Vec::new();
    if req.command == Command::Apply {
        let mut save = |key: String, value: Option<serde_json::Value>| -> anyhow::Result<()> {
            let text = serde_json::to_string_pretty(&value.unwrap_or(serde_json::Value::Null))?;
            let file = backup(
                format!("object-{}.json", key.replace('/', "_")),
                text.as_bytes(),
            )?;
            objects.push((key, file));
            Ok(())
        };
        let api = &view.api;
        let cm = |name: &str| -> anyhow::Result<Option<serde_json::Value>> {
            Ok(api
                .get::<ConfigMap>(Some(names::KUBE_SYSTEM), name)?
                .map(serde_json::to_value)
                .transpose()?)
        };
        save(
            format!("ConfigMap/kube-system/{}", names::KUBEADM_CONFIG_CONFIGMAP),
            cm(names::KUBEADM_CONFIG_CONFIGMAP)?,
        )?;
        let kubelet_cm = manifests::cluster::kubelet_config::kubelet_config_map_name(target);
        save(
            format!("ConfigMap/kube-system/{kubelet_cm}"),
            cm(&kubelet_cm)?,
        )?;
        let ds = api
            .get::<DaemonSet>(Some(names::KUBE_SYSTEM), names::KUBE_PROXY)?
            .map(serde_json::to_value)
            .transpose()?;
        save(format!("DaemonSet/kube-system/{}", names::KUBE_PROXY), ds)?;
    }
    super::resume::commit_backup_dir(fs, &partial, &backup_dir)?;
    say!(
        out,
        "upgrade/staticpods",
        "Backed up the static Pod manifests and the kubelet configuration to {:?}",
        backup_dir.display().to_string()
    );
    let agent_args = facts.agent_args.as_deref().unwrap_or_default();
    let j = Journal {
        command: req.command.as_str().into(),
        target: target.to_string(),
        backup_dir,
        files,
        objects,
        etcd_data: None,
        etcd_committed: false,
        agent_bin_dirs: bin_dirs_of(agent_args),
        agent_args: agent_args.iter().skip(1).cloned().collect(),
        key_pairs,
        rolling_back: false,
    };
    journal::write(fs, layout, &j)?;
    Ok(j)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn backup_directories_are_named_by_utc_time() {
        let t = std::time::UNIX_EPOCH + Duration::from_secs(1_796_401_805);
        assert_eq!(backup_dir_name(t), "kubeboot-backup-2026-12-04-16-30-05");
    }

    #[test]
    fn a_backup_name_taken_in_the_same_second_gets_the_next_free_suffix() {
        let root = tempfile::tempdir().unwrap();
        let fs = Fs::under(root.path());
        let tmp = Path::new("/etc/kubernetes/tmp");
        let t = std::time::UNIX_EPOCH + Duration::from_secs(1_796_401_805);
        let base = "kubeboot-backup-2026-12-04-16-30-05";
        assert_eq!(free_backup_dir_name(&fs, tmp, t).unwrap(), base);
        std::fs::create_dir_all(fs.resolve(&tmp.join(base))).unwrap();
        assert_eq!(
            free_backup_dir_name(&fs, tmp, t).unwrap(),
            format!("{base}-02")
        );
        std::fs::create_dir_all(fs.resolve(&tmp.join(format!("{base}-02")))).unwrap();
        let third = free_backup_dir_name(&fs, tmp, t).unwrap();
        assert_eq!(third, format!("{base}-03"));
        // Newest last in string order, as own_backups sorts them.
        let mut names = vec![format!("{base}-02"), third.clone(), base.to_string()];
        names.sort();
        assert_eq!(names, [base.to_string(), format!("{base}-02"), third]);
    }
}
