//! The rollback itself: every backed-up file put back in reverse order, etcd's data from its
//! copy, the cluster objects, and the old components waited for ([`super::rollback`] states
//! what can be undone).

use std::path::Path;

use agent::host::fs::Fs;
use anyhow::Context;
use components::{Layout, StaticPodRunner, names};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::ConfigMap;

use super::agent_restart::restart_agent_with;
use super::apply::{NodeFacts, Request, first_image};
use super::etcd_data::restore_etcd_data;
use super::gate::{self, Want};
use super::journal::{self, Journal};
use super::wants::{version_checker, want_for};
use crate::cluster::Cluster;
use crate::out::Out;
use crate::say;

/// Rolls the node back to the journal's backups and waits for the old components; removes
/// the journal when done.
pub(super) fn rollback(
    req: &Request,
    out: &Out,
    j: &Journal,
    facts: &NodeFacts,
    why: &str,
) -> anyhow::Result<()> {
    let fs = &req.inputs.fs;
    let layout = &req.inputs.layout;
    let mut j = j.clone();
    j.rolling_back = true;
    journal::write(fs, layout, &j)?;
    say!(
        out,
        "upgrade/rollback",
        "Rolling back the upgrade to {} ({why} failed) from {:?}",
        j.target,
        j.backup_dir.display().to_string()
    );
    let mut wants = Vec::new();
    let result = (|| -> anyhow::Result<()> {
        for (path, copy) in j.files.iter().rev() {
            match copy {
                Some(_)
                    if j.etcd_committed && path.file_stem().is_some_and(|s| s == names::ETCD) =>
                {
                    say!(
                        out,
                        "upgrade/rollback",
                        "etcd stays at its new version: it passed the point of no return (its data is migrated; only \"kubeboot etcd snapshot restore\" of the snapshot in {:?} could go back, losing the writes made since)",
                        j.backup_dir.display().to_string()
                    );
                }
                Some(copy) => {
                    let old = fs.read_if_exists(copy)?.with_context(|| {
                        format!("the backup {:?} is missing", copy.display().to_string())
                    })?;
                    if let Some((data_dir, data_copy)) = &j.etcd_data
                        && path.file_stem().is_some_and(|s| s == names::ETCD)
                        && fs.read_if_exists(path)?.as_deref() != Some(old.as_slice())
                    {
                        restore_etcd_data(req, out, &j, path, data_dir, data_copy)?;
                    }
                    if fs.read_if_exists(path)?.as_deref() != Some(old.as_slice()) {
                        put_back(fs, layout, path, &old)?;
                        say!(
                            out,
                            "upgrade/rollback",
                            "Restored {:?}",
                            path.display().to_string()
                        );
                    }
                    if let Some(w) =
                        rollback_want(path, &String::from_utf8_lossy(&old), facts, layout)
                    {
                        wants.push(w);
                    }
                }
                None => {
                    if fs.remove_file(path)? {
                        say!(
                            out,
                            "upgrade/rollback",
                            "Removed {:?}",
                            path.display().to_string()
                        );
                    }
                }
            }
        }
        // The agent back on its own --bin-dirs (the old binaries are found there anyway).
        if !j.agent_bin_dirs.is_empty() {
            restart_agent_with(req, out, &j.agent_bin_dirs)?;
        }
        // The old components, etcd and the API server first (the order they were restored).
        let version = version_checker(req, facts);
        for w in &wants {
            gate::wait(w, layout, req.timeout, &version, |what, elapsed| {
                say!(
                    out,
                    "upgrade/rollback",
                    "Still waiting for {} after {}: {what}",
                    w.component,
                    crate::health::human(elapsed)
                );
            })
            .map_err(|f| anyhow::anyhow!("{f}"))?;
            say!(
                out,
                "upgrade/rollback",
                "{} is healthy at its previous version",
                w.component
            );
        }
        if !j.objects.is_empty() {
            let api = Cluster::from_kubeconfig(&req.inputs.kubeconfig)?;
            for (key, file) in &j.objects {
                restore_object(&api, key, file, fs)?;
            }
            say!(
                out,
                "upgrade/rollback",
                "Restored the cluster objects the upgrade changed"
            );
        }
        Ok(())
    })();
    match result {
        Ok(()) => {
            journal::remove(fs, layout)?;
            say!(out, "upgrade/rollback", "The node is back at its previous version");
            Ok(())
        }
        Err(e) => Err(e.context(format!(
            "the rollback did not finish; the journal {:?} and the backups in {:?} stay: run the same command again to finish it",
            journal::path(layout).display().to_string(),
            j.backup_dir.display().to_string()
        ))),
    }
}

/// Writes a backed-up file back where it was: static Pod manifests 0600 as init writes
/// them, the kubelet's configuration 0644.
pub(super) fn put_back(fs: &Fs, layout: &Layout, path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let manifest = path
        .parent()
        .is_some_and(|d| d == layout.manifests_dir() || d == layout.agent_manifests_dir());
    if manifest {
        fs.write_private(path, bytes)
    } else {
        fs.write_public(path, bytes)
    }
}

pub(super) fn rollback_want(
    path: &Path,
    yaml: &str,
    facts: &NodeFacts,
    layout: &Layout,
) -> Option<Want> {
    let dir = path.parent()?;
    if dir != layout.manifests_dir() && dir != layout.agent_manifests_dir() {
        return None;
    }
    let component = path.file_stem()?.to_string_lossy().into_owned();
    let agent = facts.runner == StaticPodRunner::Agent || dir == layout.agent_manifests_dir();
    let image = first_image(yaml)?;
    Some(want_for(&component, path, yaml, &image, agent, facts))
}

pub(super) fn restore_object(api: &Cluster, key: &str, file: &Path, fs: &Fs) -> anyhow::Result<()> {
    let text = fs
        .read_string_if_exists(file)?
        .with_context(|| format!("the backup {:?} is missing", file.display().to_string()))?;
    let mut value: serde_json::Value = serde_json::from_str(&text)?;
    let mut parts = key.splitn(3, '/');
    let (kind, ns, name) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    if value.is_null() {
        match kind {
            "ConfigMap" => api.delete::<ConfigMap>(Some(ns), name)?,
            "DaemonSet" => api.delete::<DaemonSet>(Some(ns), name)?,
            _ => false,
        };
        return Ok(());
    }
    if let Some(meta) = value
        .get_mut("metadata")
        .and_then(serde_json::Value::as_object_mut)
    {
        for k in [
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "managedFields",
            "generation",
        ] {
            meta.remove(k);
        }
    }
    if let Some(o) = value.as_object_mut() {
        o.remove("status");
    }
    match kind {
        "ConfigMap" => api.create_or_update(&serde_json::from_value::<ConfigMap>(value)?),
        "DaemonSet" => api.create_or_update(&serde_json::from_value::<DaemonSet>(value)?),
        other => anyhow::bail!(
            "the backup holds an object of kind {other}, which kubeboot does not restore"
        ),
    }
}
