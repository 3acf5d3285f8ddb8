//! `kubeboot etcd snapshot save|restore` (k3s `etcd-snapshot`, k0s `backup`; kubeadm has
//! none), and [`save`], which the upgrade calls before etcd changes.
//!
//! **save** asks etcd for a consistent snapshot through its own API: the gRPC
//! Maintenance.Snapshot stream, which etcd 3.4's JSON gateway serves at
//! `POST /v3/maintenance/snapshot` as newline-delimited JSON chunks (checked against the real
//! etcd 3.4.23). The bytes are bbolt's database followed by its SHA-256 (etcd
//! v3rpc/maintenance.go Snapshot); kubeboot checks that trailer while streaming, writes the
//! file atomically with mode 0600 (it holds every Secret of the cluster), and writes a JSON
//! sidecar `<file>.json` ([`SnapshotInfo`]): etcd version, cluster ID, members, revision, the
//! Kubernetes version (kubeadm-config's ClusterConfiguration, read from etcd itself) and the
//! file's SHA-256.
//!
//! **restore** rebuilds a data directory from a snapshot. etcd 3.4 has one implementation of
//! that, `etcdctl snapshot restore` (it rewrites the membership in the bbolt file and writes a
//! new WAL and raft snapshot), so kubeboot runs the trusted `etcdctl` found in the binary
//! directories, never its own copy. The order, each step leaving the node as it was on failure:
//!
//! ```text
//!   verify sha256 (sidecar) ─▶ move etcd.yaml and kube-apiserver.yaml out ─▶ wait: etcd stopped
//!      │ mismatch: refuse,        (the API server's cache must not outlive      │ timeout:
//!      ▼ nothing changed           the data it was filled from)                 ▼ manifests back
//!   etcdctl restore into <dir>/restoring-<stamp> ─▶ <dir>'s old entries → <dir>/pre-restore-<stamp>
//!      (failure: removed; manifests back)          ─▶ restored member → <dir>/member
//!                                                  ─▶ [the manifests of the snapshot's version]
//!                                                  ─▶ manifests back ─▶ wait etcd, API server
//! ```
//!
//! Everything moves inside the data directory, which may be a mount point of its own. The old
//! data is never deleted, only moved aside. When the snapshot was taken under another
//! Kubernetes version than this node runs, this node's static Pod manifests of the snapshot's
//! version go back too ([`version_plan`]): those the snapshot kept, on the node that saved it;
//! on another member, those its newest upgrade backup of that version kept (the upgrade that
//! moved the node on set them aside). So the API server that reads the data is of the data's
//! version. A single-member cluster comes
//! back with this node as its only member and a new cluster ID. In a multi-member cluster every
//! member must be restored from the same snapshot with the same `--initial-cluster` and token
//! (the token is derived from the snapshot's SHA-256, so each node computes the same cluster
//! ID): kubeboot restores this node and prints the exact command for each other one; etcd
//! answers once a quorum of them is restored.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use agent::host::fs::Fs;
use anyhow::Context;
use components::{Layout, names};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::etcd_members::{EtcdClient, Member};
use crate::out::Out;
use crate::say;

/// The etcd key of kubeadm's ClusterConfiguration ConfigMap (the API server's storage path).
const KUBEADM_CONFIG_KEY: &[u8] = b"/registry/configmaps/kube-system/kubeadm-config";
/// etcd appends the SHA-256 of the database to the snapshot stream.
const TRAILER: usize = 32;
/// The Debian package that ships `etcdctl`.
const ETCDCTL_PACKAGE: &str = "etcd-client";

/// The components whose static Pod images carry the cluster's Kubernetes version: what a
/// snapshot keeps of the node it was saved on, so that restoring it brings back the version it
/// was taken under (etcd's own manifest stays: its data directory is what is restored, and a
/// newer etcd reads an older one's snapshot).
pub const VERSIONED: [&str; 5] = [
    names::KUBE_APISERVER,
    names::KUBE_CONTROLLER_MANAGER,
    names::KUBE_SCHEDULER,
    names::KUBELET,
    names::KUBE_PROXY,
];

/// One member, as the sidecar records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotMember {
    /// The member ID, in hex as etcdctl prints it.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its peer URLs.
    pub peer_urls: Vec<String>,
    /// Its client URLs.
    pub client_urls: Vec<String>,
    /// A learner.
    #[serde(default)]
    pub is_learner: bool,
}

impl From<&Member> for SnapshotMember {
    fn from(m: &Member) -> Self {
        Self {
            id: format!("{:x}", m.id),
            name: m.name.clone(),
            peer_urls: m.peer_urls.clone(),
            client_urls: m.client_urls.clone(),
            is_learner: m.is_learner,
        }
    }
}

/// What the sidecar `<file>.json` says about a snapshot; its field names are an interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotInfo {
    /// When it was taken (RFC 3339, UTC).
    pub taken_at: String,
    /// The endpoint it was streamed from.
    pub endpoint: String,
    /// The etcd server version.
    pub etcd_version: String,
    /// The cluster ID, in hex.
    pub cluster_id: String,
    /// The store's revision just before the snapshot began (the snapshot holds at least it).
    pub revision: u64,
    /// The members at the time.
    pub members: Vec<SnapshotMember>,
    /// The cluster's Kubernetes version (kubeadm-config's ClusterConfiguration), when found.
    pub kubernetes_version: Option<String>,
    /// The etcd member of the control-plane node it was saved on (with [`save`]'s layout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved_on: Option<String>,
    /// That node's static Pod manifests of the versioned components ([`VERSIONED`]), file
    /// name to text: a restore on that node under another Kubernetes version puts them back.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub manifests: BTreeMap<String, String>,
    /// The snapshot file's size in bytes.
    pub size: u64,
    /// The SHA-256 of the whole snapshot file, in hex.
    pub sha256: String,
}

/// The file name of a component's static Pod manifest.
fn manifest_file(component: &str) -> String {
    format!("{component}.yaml")
}

/// Static Pod manifests of the versioned components ([`VERSIONED`]): file name
/// (`kube-apiserver.yaml`) to text.
pub type Manifests = BTreeMap<String, String>;

/// One of this node's upgrade backups (`/etc/kubernetes/tmp/kubeboot-backup-*`): the manifests
/// of the versioned components it kept, as they were before that upgrade changed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    /// The backup directory, as the node sees it.
    pub dir: PathBuf,
    /// What it kept.
    pub manifests: Manifests,
}

/// What a restore on a control-plane node does about the Kubernetes version: etcd's data and
/// the API server that reads it must be of one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionPlan {
    /// The snapshot was taken under the version this node runs (or either is unknown).
    Keep,
    /// Taken under `from` while this node runs `to`: this node's manifests of `from` go back
    /// with the data.
    PutBack {
        /// The snapshot's version.
        from: String,
        /// This node's.
        to: String,
        /// The manifests that go back.
        manifests: Manifests,
        /// What kept them, for the output: the snapshot, or one of this node's upgrade backups.
        source: String,
    },
}

/// The Kubernetes version a kube-apiserver manifest runs (its image's tag). Pure.
pub fn manifest_version(text: &str) -> Option<String> {
    let pod: k8s_openapi::api::core::v1::Pod = manifests::yaml::from_yaml(text).ok()?;
    pod.spec
        .and_then(|s| s.containers.into_iter().next())
        .and_then(|c| c.image)
        .and_then(|i| components::image::ImageRef::parse(&i).ok())
        .and_then(|i| i.tag)
}

/// The versions a restore of `info` on a node whose API server runs `running` must reconcile:
/// `(snapshot's, node's)` when both are known and differ. Pure.
pub fn versions_apart<'a>(
    info: &'a SnapshotInfo,
    running: Option<&'a str>,
) -> Option<(&'a str, &'a str)> {
    match (info.kubernetes_version.as_deref(), running) {
        (Some(from), Some(to)) if from != to => Some((from, to)),
        _ => None,
    }
}

/// Whether `manifests` run Kubernetes `version` (their kube-apiserver manifest's image tag).
fn runs_version(manifests: &Manifests, version: &str) -> bool {
    manifests
        .get(&manifest_file(names::KUBE_APISERVER))
        .and_then(|t| manifest_version(t))
        .as_deref()
        == Some(version)
}

/// Decides the [`VersionPlan`] of restoring `info` on the node whose etcd member is `member`,
/// whose API server runs `running` and whose upgrade backups in `backup_dir` are `backups`
/// (newest first). The manifests go back from the snapshot when it was saved on this node
/// and kept manifests of its version, else from the newest backup whose API server runs the
/// snapshot's version: on another member of the cluster (or when `upgrade node` took the
/// snapshot before it moved this node on), the upgrade that moved this node on kept them.
/// Pure.
///
/// # Errors
/// The versions differ and neither the snapshot nor a backup keeps this node's manifests of
/// the snapshot's version: the message names both versions, where kubeboot looked and the
/// way out.
pub fn version_plan(
    info: &SnapshotInfo,
    snapshot: &Path,
    running: Option<&str>,
    member: &str,
    backup_dir: &Path,
    backups: &[Backup],
) -> Result<VersionPlan, String> {
    let Some((from, to)) = versions_apart(info, running) else {
        return Ok(VersionPlan::Keep);
    };
    let put_back = |manifests: &Manifests, source: String| VersionPlan::PutBack {
        from: from.to_string(),
        to: to.to_string(),
        manifests: manifests.clone(),
        source,
    };
    let saved_here = info.saved_on.as_deref() == Some(member);
    if saved_here && runs_version(&info.manifests, from) {
        return Ok(put_back(&info.manifests, "the snapshot kept".into()));
    }
    if let Some(b) = backups.iter().find(|b| runs_version(&b.manifests, from)) {
        return Ok(put_back(
            &b.manifests,
            format!(
                "this node's upgrade backup {:?} kept",
                b.dir.display().to_string()
            ),
        ));
    }
    let sidecar = match info.saved_on.as_deref() {
        Some(m) if m != member => format!(
            "the snapshot was saved on the node of etcd member {m:?} and keeps only that node's manifests"
        ),
        _ if info.manifests.is_empty() => {
            "the snapshot's sidecar keeps no static Pod manifests".to_string()
        }
        _ => format!("the manifests the snapshot's sidecar keeps are not of {from}"),
    };
    Err(format!(
        "the snapshot {:?} was taken under Kubernetes {from}, and this node's control plane runs {to}; etcd's data and the API server that reads it must be of one version. This node's manifests of {from} were not found: {sidecar}, and none of this node's upgrade backups ({}/kubeboot-backup-*) holds a kube-apiserver manifest of {from}. Nothing was changed. Put this node's control plane at {from} first (its static Pod manifests' images at {from}, with the binaries of {from} in the agent's --bin-dir), then restore again",
        snapshot.display().to_string(),
        backup_dir.display()
    ))
}

/// This node's upgrade backups ([`Backup`]), newest first (their names are UTC time stamps
/// of one width); those that kept no manifest of a versioned component are left out, and so
/// are the hidden partial ones a killed upgrade left ([`crate::upgrade::resume`]).
///
/// A backup directory or file that cannot be read is passed over with a warning.
///
/// # Errors
/// The directory of the backups exists but cannot be listed.
pub fn own_backups(fs: &Fs, layout: &Layout) -> anyhow::Result<Vec<Backup>> {
    let tmp = layout.tmp_dir();
    let list = |dir: &Path| -> anyhow::Result<Option<Vec<(String, bool)>>> {
        let what = || {
            format!(
                "could not list {:?}, where upgrades keep their backups",
                dir.display().to_string()
            )
        };
        let entries = match std::fs::read_dir(fs.resolve(dir)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(what),
        };
        let mut out = Vec::new();
        for e in entries {
            let e = e.with_context(what)?;
            let is_dir = e.file_type().with_context(what)?.is_dir();
            if let Ok(name) = e.file_name().into_string() {
                out.push((name, is_dir));
            }
        }
        Ok(Some(out))
    };
    let mut dirs: Vec<String> = list(&tmp)?
        .unwrap_or_default()
        .into_iter()
        .filter(|(n, is_dir)| *is_dir && n.starts_with("kubeboot-backup-"))
        .map(|(n, _)| n)
        .collect();
    dirs.sort_unstable_by(|a, b| b.cmp(a));
    let wanted: Vec<String> = VERSIONED.iter().map(|c| manifest_file(c)).collect();
    let mut out = Vec::new();
    for name in dirs {
        let dir = tmp.join(&name);
        let mut manifests = Manifests::new();
        // A backup that cannot be read is passed over (an older one may do), not fatal.
        let files = match list(&dir) {
            Ok(files) => files.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(
                    "passing over the upgrade backup {:?}: {e:#}",
                    dir.display().to_string()
                );
                continue;
            }
        };
        for (file, is_dir) in files {
            if is_dir {
                continue;
            }
            // The upgrade's copies are `<NN>-<file name>` (upgrade::backup::begin).
            let Some((n, kept)) = file.split_once('-') else {
                continue;
            };
            if n.len() != 2
                || !n.bytes().all(|b| b.is_ascii_digit())
                || !wanted.iter().any(|w| w == kept)
            {
                continue;
            }
            match fs.read_string_if_exists(&dir.join(&file)) {
                Ok(Some(text)) => {
                    manifests.insert(kept.to_string(), text);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(
                    "passing over {:?} of the upgrade backup {:?}: {e:#}",
                    file,
                    dir.display().to_string()
                ),
            }
        }
        if !manifests.is_empty() {
            out.push(Backup { dir, manifests });
        }
    }
    Ok(out)
}

/// The Kubernetes version this node's API server manifest runs (its image's tag).
fn running_version(r: &RestoreNode) -> anyhow::Result<Option<String>> {
    Ok(r.fs
        .read_string_if_exists(&r.layout.manifest(names::KUBE_APISERVER))?
        .and_then(|t| manifest_version(&t)))
}

/// Puts back `manifests` (kept by `source`), each current one set aside in `parked_dir`
/// (where the restore `parked` those it stopped).
fn put_back_versioned(
    r: &RestoreNode,
    manifests: &Manifests,
    source: &str,
    (parked_dir, parked): (&Path, &[PathBuf]),
    from: &str,
) -> anyhow::Result<Vec<PathBuf>> {
    let mut put = Vec::new();
    let mut written = Vec::new();
    for c in VERSIONED {
        let file = manifest_file(c);
        let Some(text) = manifests.get(&file) else {
            continue;
        };
        // Only a static Pod this node runs goes back: its manifest is there, or parked by the
        // restore (under the kubelet runner, the kubelet's own manifest is the agent's,
        // elsewhere, and stays).
        let path = r.layout.manifest(c);
        match r.fs.read_if_exists(&path)? {
            Some(current) => r.fs.write_file(
                &parked_dir.join(format!("current-{file}")),
                &current,
                agent::host::fs::MODE_PRIVATE,
            )?,
            None if parked.contains(&path) => {}
            None => continue,
        }
        r.fs.write_file(&path, text.as_bytes(), agent::host::fs::MODE_PRIVATE)?;
        put.push(file);
        written.push(path);
    }
    say!(
        r.out,
        "etcd",
        "Put back the static Pod manifests of Kubernetes {from} that {source} ({}); this node's previous ones are in {:?}",
        put.join(", "),
        parked_dir.display().to_string()
    );
    Ok(written)
}

/// The sidecar of `file`: `<file>.json`.
pub fn sidecar_path(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(".json");
    PathBuf::from(s)
}

/// Hashes a snapshot as it streams: the SHA-256 of everything, and whether the last 32 bytes
/// are the SHA-256 of the bytes before them (etcd's integrity trailer). Pure.
#[derive(Default)]
pub struct SnapshotDigest {
    whole: Sha256,
    db: Sha256,
    tail: Vec<u8>,
    size: u64,
}

/// [`SnapshotDigest::finish`]'s result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digested {
    /// The SHA-256 of all bytes, in hex.
    pub sha256: String,
    /// How many bytes.
    pub size: u64,
    /// etcd's trailer matches the database before it.
    pub intact: bool,
}

impl SnapshotDigest {
    /// Feeds the next bytes.
    pub fn update(&mut self, chunk: &[u8]) {
        self.whole.update(chunk);
        self.size += chunk.len() as u64;
        self.tail.extend_from_slice(chunk);
        if self.tail.len() > TRAILER {
            let n = self.tail.len() - TRAILER;
            self.db.update(&self.tail[..n]);
            self.tail.drain(..n);
        }
    }

    /// The digests of everything fed.
    pub fn finish(self) -> Digested {
        let db = self.db.finalize();
        Digested {
            sha256: hex::encode(self.whole.finalize()),
            size: self.size,
            intact: self.size > TRAILER as u64 && db.as_slice() == self.tail.as_slice(),
        }
    }
}

/// The `kubernetesVersion` of kubeadm's ClusterConfiguration inside the kubeadm-config
/// ConfigMap as the API server stores it in etcd (protobuf, whose strings are the YAML text
/// verbatim; ClusterStatus has no such field). Pure.
pub fn kubernetes_version_in(stored: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(stored);
    text.lines().find_map(|l| {
        let v = l.trim_start().strip_prefix("kubernetesVersion:")?.trim();
        let v = v.trim_matches(|c| c == '"' || c == '\'');
        let ok = !v.is_empty()
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'));
        ok.then(|| v.to_string())
    })
}

/// Takes a consistent snapshot from the first of `client`'s endpoints that is healthy,
/// writes it atomically to `file` (mode 0600; the directory must exist) with its sidecar, and
/// returns what the sidecar says. With the `node`'s layout (a control-plane node with a local
/// etcd), the sidecar also keeps its member name and the manifests of [`VERSIONED`]. The
/// upgrade calls this before etcd changes.
///
/// # Errors
/// No healthy endpoint, etcd refused or broke the stream, the stream failed etcd's integrity
/// check, or a file could not be written; `file` is then as it was.
pub fn save(
    client: &EtcdClient,
    fs: &Fs,
    file: &Path,
    now: SystemTime,
    node: Option<&Layout>,
) -> anyhow::Result<SnapshotInfo> {
    let shown = file.display().to_string();
    let mut why = Vec::new();
    let endpoint = client
        .endpoints()
        .iter()
        .find(|e| match client.health(e) {
            Ok(()) => true,
            Err(w) => {
                why.push(format!("{e}: {w}"));
                false
            }
        })
        .cloned()
        .with_context(|| {
            format!(
                "no healthy etcd endpoint to take a snapshot from ({}); start etcd, or pass --endpoint with a healthy member's client URL",
                why.join("; ")
            )
        })?;
    let one = EtcdClient::with_endpoint(client, &endpoint);
    let status = one.status()?;
    let members = one.list()?;
    let kubernetes_version = one
        .get(KUBEADM_CONFIG_KEY)?
        .as_deref()
        .and_then(kubernetes_version_in);
    let mut saved_on = None;
    let mut manifests = BTreeMap::new();
    if let Some(layout) = node
        && let Some(local) = crate::etcd_local::read(fs, layout)?
    {
        saved_on = Some(local.name);
        for c in VERSIONED {
            let path = layout.manifest(c);
            if let Some(text) = fs.read_string_if_exists(&path)? {
                manifests.insert(manifest_file(c), text);
            }
        }
    }

    let mut digest = SnapshotDigest::default();
    fs.write_streamed(file, agent::host::fs::MODE_PRIVATE, |f| {
        let mut sink = Hashing {
            file: f,
            digest: &mut digest,
        };
        one.snapshot(&endpoint, &mut sink)?;
        Ok(())
    })
    .with_context(|| format!("could not save the etcd snapshot {shown:?}"))?;
    let digested = digest.finish();
    if !digested.intact {
        // Written already (atomically); a broken stream must not look like a snapshot.
        let _ = fs.remove_file(file);
        anyhow::bail!(
            "the snapshot etcd at {endpoint} sent fails etcd's own integrity check (its last 32 bytes are not the SHA-256 of the database): the stream was cut; take the snapshot again"
        );
    }
    let info = SnapshotInfo {
        taken_at: rfc3339(now),
        endpoint,
        etcd_version: status.version,
        cluster_id: format!("{:x}", status.header.cluster_id),
        revision: status.header.revision,
        members: members.iter().map(SnapshotMember::from).collect(),
        kubernetes_version,
        saved_on,
        manifests,
        size: digested.size,
        sha256: digested.sha256,
    };
    let json = serde_json::to_vec_pretty(&info).expect("SnapshotInfo serializes");
    fs.write_private(&sidecar_path(file), &json)?;
    Ok(info)
}

/// Writes to the file and hashes what it wrote.
struct Hashing<'a> {
    file: &'a mut File,
    digest: &'a mut SnapshotDigest,
}

impl Write for Hashing<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.digest.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Reads the sidecar of `file` and checks the file against it (size, SHA-256, etcd's
/// trailer). Nothing is changed.
///
/// # Errors
/// No or an unreadable sidecar, or a snapshot that does not match it.
pub fn verify(file: &Path) -> anyhow::Result<SnapshotInfo> {
    let shown = file.display().to_string();
    let sidecar = sidecar_path(file);
    let text = std::fs::read(&sidecar).with_context(|| {
        format!(
            "could not read the snapshot's sidecar {:?}: kubeboot checks the snapshot against the SHA-256 it records; keep it beside the snapshot (a snapshot saved by etcdctl has none: restore that one with etcdctl)",
            sidecar.display().to_string()
        )
    })?;
    let info: SnapshotInfo = serde_json::from_slice(&text).with_context(|| {
        format!(
            "{:?} is not a kubeboot snapshot sidecar",
            sidecar.display().to_string()
        )
    })?;
    let mut f = File::open(file).with_context(|| format!("could not open {shown:?}"))?;
    let mut digest = SnapshotDigest::default();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("could not read {shown:?}"))?;
        if n == 0 {
            break;
        }
        digest.update(&buf[..n]);
    }
    let got = digest.finish();
    anyhow::ensure!(
        got.sha256 == info.sha256 && got.size == info.size,
        "the snapshot {shown:?} does not match its sidecar: SHA-256 {} ({} bytes), the sidecar says {} ({} bytes); the file is corrupt or not the one saved: use another copy",
        got.sha256,
        got.size,
        info.sha256,
        info.size
    );
    anyhow::ensure!(
        got.intact,
        "the snapshot {shown:?} fails etcd's integrity check (its last 32 bytes are not the SHA-256 of the database): use another copy"
    );
    Ok(info)
}

/// Where a restore rebuilds the data directory, and as which member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestorePlan {
    /// The member name this node restores as.
    pub name: String,
    /// Its peer URL.
    pub peer_url: String,
    /// `--initial-cluster`: `name=peerURL` of every member restored.
    pub initial_cluster: Vec<(String, String)>,
    /// `--initial-cluster-token`, the same for every member of one restore.
    pub token: String,
    /// The other members, each to be restored on its own node from the same snapshot.
    pub others: Vec<(String, String)>,
}

impl RestorePlan {
    /// The `--initial-cluster` value.
    pub fn initial_cluster_flag(&self) -> String {
        self.initial_cluster
            .iter()
            .map(|(n, u)| format!("{n}={u}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Decides how this node (`name`, `peer_url`) restores a snapshot taken of `info.members`.
/// One voting member: this node alone, whatever its name was. Several: every voter, each
/// under its name and first peer URL, this node among them (learners are left out: they
/// join again). The token comes from the snapshot's SHA-256, so every node of one restore
/// computes the same cluster ID. Pure.
///
/// # Errors
/// Several members and this node is none of them.
pub fn plan_restore(
    info: &SnapshotInfo,
    name: &str,
    peer_url: &str,
) -> Result<RestorePlan, String> {
    let token = format!(
        "kubeboot-restore-{}",
        &info.sha256[..info.sha256.len().min(16)]
    );
    let voters: Vec<(String, String)> = info
        .members
        .iter()
        .filter(|m| !m.is_learner)
        .filter_map(|m| Some((m.name.clone(), m.peer_urls.first()?.clone())))
        .collect();
    if voters.len() <= 1 {
        return Ok(RestorePlan {
            name: name.into(),
            peer_url: peer_url.into(),
            initial_cluster: vec![(name.into(), peer_url.into())],
            token,
            others: vec![],
        });
    }
    if !voters.iter().any(|(n, _)| n == name) {
        return Err(format!(
            "the snapshot was taken of a {}-member etcd cluster ({}) and this node's member {name:?} is not one of them: restore it on those nodes, every one from this same snapshot",
            voters.len(),
            voters
                .iter()
                .map(|(n, u)| format!("{n}={u}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let initial_cluster: Vec<(String, String)> = voters
        .iter()
        .map(|(n, u)| {
            if n == name {
                (n.clone(), peer_url.to_string())
            } else {
                (n.clone(), u.clone())
            }
        })
        .collect();
    let others = initial_cluster
        .iter()
        .filter(|(n, _)| n != name)
        .cloned()
        .collect();
    Ok(RestorePlan {
        name: name.into(),
        peer_url: peer_url.into(),
        initial_cluster,
        token,
        others,
    })
}

/// Whether a running etcd holds `data_dir`: bbolt keeps an exclusive `flock` on
/// `member/snap/db` while it has the database open (bbolt bolt_unix.go flock).
///
/// # Errors
/// The database file exists but cannot be opened.
pub fn data_dir_in_use(data_dir: &Path) -> anyhow::Result<bool> {
    let db = data_dir.join("member").join("snap").join("db");
    let f = match File::open(&db) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => {
            return Err(e)
                .with_context(|| format!("could not open {:?}", db.display().to_string()));
        }
    };
    match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockSharedNonblock) {
        Ok(_unlocked_on_drop) => Ok(false),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(true),
        Err((_, e)) => Err(anyhow::anyhow!(
            "could not check whether {:?} is in use: {e}",
            db.display().to_string()
        )),
    }
}

/// Rebuilds `data_dir` from `snapshot` with `etcdctl snapshot restore` as `plan` says: into
/// `<data_dir>/restoring-<stamp>` first, then whatever `data_dir` held is moved into
/// `<data_dir>/pre-restore-<stamp>` and the restored `member` directory takes its place.
/// Everything happens inside `data_dir`, never by renaming it: it is often a mount point of
/// its own (a dedicated disk), which cannot be renamed, and a sibling may sit on another file
/// system. etcd only reads `member` (it warns about the other entries). Returns where the old
/// contents went. Refuses a data directory a running etcd holds.
///
/// # Errors
/// The directory is in use, `etcdctl` failed (the restored copy is removed, the old data
/// untouched), or a rename failed (the old data is moved back).
pub fn restore_data_dir(
    etcdctl: &Path,
    snapshot: &Path,
    data_dir: &Path,
    plan: &RestorePlan,
    stamp: &str,
) -> anyhow::Result<Option<PathBuf>> {
    use std::os::unix::fs::PermissionsExt;
    let shown = data_dir.display().to_string();
    anyhow::ensure!(
        !data_dir_in_use(data_dir)?,
        "the etcd data directory {shown:?} is in use by a running etcd (its database is locked): stop that etcd first (on a kubeboot node, \"kubeboot etcd snapshot restore\" without --data-dir stops it through its manifest)"
    );
    let fresh = data_dir.join(format!("restoring-{stamp}"));
    let aside = data_dir.join(format!("pre-restore-{stamp}"));
    anyhow::ensure!(
        !fresh.exists() && !aside.exists(),
        "{:?} or {:?} exists already: a restore at this second ran before; try again",
        fresh.display().to_string(),
        aside.display().to_string()
    );
    std::fs::create_dir_all(data_dir)
        .and_then(|()| std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700)))
        .with_context(|| format!("could not create {shown:?} with mode 0700"))?;
    let out = run_bounded(
        Command::new(etcdctl)
            .env("ETCDCTL_API", "3")
            .arg("snapshot")
            .arg("restore")
            .arg(snapshot)
            .arg(format!("--data-dir={}", fresh.display()))
            .arg(format!("--name={}", plan.name))
            .arg(format!("--initial-cluster={}", plan.initial_cluster_flag()))
            .arg(format!("--initial-cluster-token={}", plan.token))
            .arg(format!("--initial-advertise-peer-urls={}", plan.peer_url)),
        Duration::from_secs(600),
    );
    let failed = match out {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "{} snapshot restore exited with {}: {}",
            etcdctl.display(),
            o.status,
            last_lines(&String::from_utf8_lossy(&o.stderr), 5)
        )),
        Err(e) => Some(format!("{e:#}")),
    };
    if let Some(why) = failed {
        let _ = std::fs::remove_dir_all(&fresh);
        anyhow::bail!("could not restore the snapshot into {shown:?}: {why}");
    }
    let old: Vec<std::ffi::OsString> = std::fs::read_dir(data_dir)
        .with_context(|| format!("could not list {shown:?}"))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<Vec<_>>>()
        .with_context(|| format!("could not list {shown:?}"))?
        .into_iter()
        .filter(|n| Path::new(n) != Path::new(&format!("restoring-{stamp}")))
        .collect();
    let moved = if old.is_empty() {
        None
    } else {
        std::fs::create_dir(&aside)
            .with_context(|| format!("could not create {:?}", aside.display().to_string()))?;
        Some(aside.clone())
    };
    let swap = || -> std::io::Result<()> {
        for n in &old {
            std::fs::rename(data_dir.join(n), aside.join(n))?;
        }
        std::fs::rename(fresh.join("member"), data_dir.join("member"))
    };
    if let Err(e) = swap() {
        // Back as it was: whatever was moved aside returns.
        for n in &old {
            let _ = std::fs::rename(aside.join(n), data_dir.join(n));
        }
        let _ = std::fs::remove_dir(&aside);
        let _ = std::fs::remove_dir_all(&fresh);
        return Err(e).with_context(|| {
            format!("could not move the restored member into {shown:?}; its old contents are back")
        });
    }
    std::fs::remove_dir_all(&fresh)
        .with_context(|| format!("could not remove {:?}", fresh.display().to_string()))?;
    File::open(data_dir).and_then(|d| d.sync_all()).ok();
    Ok(moved)
}

/// Runs `cmd` to completion with its output captured, killing it after `timeout`.
fn run_bounded(cmd: &mut Command, timeout: Duration) -> anyhow::Result<std::process::Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not run {:?}", cmd.get_program()))?;
    let deadline = Instant::now() + timeout;
    // Drained on threads: a full pipe must not stall the child.
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let o = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let e = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v);
        v
    });
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!(
                "{:?} did not finish within {}",
                cmd.get_program(),
                crate::health::human(timeout)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Ok(std::process::Output {
        status,
        stdout: o.join().unwrap_or_default(),
        stderr: e.join().unwrap_or_default(),
    })
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// The trusted `etcdctl` from `bin_dirs`.
///
/// # Errors
/// None there (naming the package), or the one found is not trusted.
pub fn find_etcdctl(bin_dirs: &[PathBuf]) -> anyhow::Result<PathBuf> {
    crate::host::find_binary("etcdctl", bin_dirs)?.with_context(|| {
        format!(
            "no etcdctl in {}: etcd 3.4 can only be restored by \"etcdctl snapshot restore\"; install it (Debian: apt-get install {ETCDCTL_PACKAGE}) or pass --bin-dir with a directory that holds it",
            bin_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// What `kubeboot etcd snapshot restore` works with.
pub struct RestoreNode<'a> {
    /// Node paths.
    pub layout: &'a Layout,
    /// File access (the manifest moves).
    pub fs: &'a Fs,
    /// User output.
    pub out: &'a Out,
    /// Where binaries are looked up.
    pub bin_dirs: &'a [PathBuf],
    /// `--data-dir`: restore into this directory only (no etcd manifest is touched).
    pub data_dir: Option<PathBuf>,
    /// `--name`, with `--data-dir`.
    pub name: Option<String>,
    /// `--initial-advertise-peer-urls`, with `--data-dir`.
    pub peer_url: Option<String>,
    /// How long to wait for etcd to stop, and for etcd and the API server to be healthy.
    pub timeout: Duration,
    /// The time stamp of the directories set aside.
    pub now: SystemTime,
}

/// `kubeboot etcd snapshot restore`: verifies the snapshot, then either rebuilds the
/// `--data-dir` given (which no running etcd may hold), or, on a control-plane node, stops its
/// etcd by moving the manifest out (as kubeadm's upgrade does), rebuilds its data directory,
/// puts the manifest back and waits for etcd and the API server.
///
/// # Errors
/// Any refusal or failure; each says what is left where.
pub fn restore(r: &RestoreNode, snapshot: &Path) -> anyhow::Result<()> {
    let out = r.out;
    // Observe and verify, before anything changes.
    let info = verify(snapshot)?;
    say!(
        out,
        "etcd",
        "Verified the snapshot {:?} (SHA-256 {}, revision {}, etcd {}, Kubernetes {})",
        snapshot.display().to_string(),
        info.sha256,
        info.revision,
        info.etcd_version,
        info.kubernetes_version.as_deref().unwrap_or("unknown")
    );
    let local = if r.data_dir.is_some() {
        None
    } else {
        Some(crate::etcd_local::read(r.fs, r.layout)?.with_context(|| {
            format!(
                "no etcd manifest {:?}: this is not a control-plane node with a local etcd; to restore into a directory, pass --data-dir, --name and --initial-advertise-peer-urls",
                r.layout.manifest(names::ETCD).display().to_string()
            )
        })?)
    };
    let (data_dir, name, peer_url) = match &local {
        Some(l) => (
            l.data_dir.clone(),
            r.name.clone().unwrap_or_else(|| l.name.clone()),
            r.peer_url
                .clone()
                .or_else(|| l.peer_url.clone())
                .with_context(|| {
                    format!(
                        "{:?} has no --initial-advertise-peer-urls: pass --initial-advertise-peer-urls",
                        l.manifest.display().to_string()
                    )
                })?,
        ),
        None => (
            r.data_dir.clone().expect("checked above"),
            r.name.clone().context("--data-dir needs --name: the member name to restore as")?,
            r.peer_url.clone().context(
                "--data-dir needs --initial-advertise-peer-urls: the peer URL of the member restored",
            )?,
        ),
    };
    // Decide.
    let plan = plan_restore(&info, &name, &peer_url).map_err(anyhow::Error::msg)?;
    let version = match &local {
        Some(l) => {
            let running = running_version(r)?;
            // Only a restore across versions looks at the upgrade backups.
            let backups = match versions_apart(&info, running.as_deref()) {
                Some(_) => own_backups(r.fs, r.layout)?,
                None => Vec::new(),
            };
            version_plan(
                &info,
                snapshot,
                running.as_deref(),
                &l.name,
                &r.layout.tmp_dir(),
                &backups,
            )
            .map_err(anyhow::Error::msg)?
        }
        None => VersionPlan::Keep,
    };
    let etcdctl = find_etcdctl(r.bin_dirs)?;
    let stamp = time::OffsetDateTime::from(r.now)
        .format(&time::macros::format_description!(
            "[year]-[month]-[day]-[hour]-[minute]-[second]"
        ))
        .unwrap_or_default();

    // Act.
    let Some(local) = local else {
        let aside = restore_data_dir(&etcdctl, snapshot, &data_dir, &plan, &stamp)?;
        say_restored(out, &data_dir, aside.as_deref(), &plan);
        say_others(out, snapshot, &plan);
        return Ok(());
    };
    // etcd stops, and so does the API server: its watch cache holds revisions the restored
    // data never had, so it must start again on the restored data (etcd's recovery guide:
    // stop every API server, restore, start them).
    let parked_dir = r
        .layout
        .tmp_dir()
        .join(format!("kubeboot-etcd-restore-{stamp}"));
    let mut parked: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    let etcd_text =
        r.fs.read_if_exists(&local.manifest)?
            .context("the etcd manifest vanished")?;
    parked.push((local.manifest.clone(), etcd_text));
    let apiserver = r.layout.manifest(names::KUBE_APISERVER);
    if let Some(text) = r.fs.read_if_exists(&apiserver)? {
        parked.push((apiserver, text));
    }
    r.fs.create_dir(&r.layout.tmp_dir(), 0o700)?;
    r.fs.create_dir(&parked_dir, 0o700)?;
    for (path, text) in &parked {
        let name = path
            .file_name()
            .context("a manifest path has a file name")?;
        r.fs.write_file(&parked_dir.join(name), text, agent::host::fs::MODE_PRIVATE)?;
    }
    for (path, _) in &parked {
        r.fs.remove_file(path)?;
    }
    say!(
        out,
        "etcd",
        "Moved the manifests of etcd{} to {:?} to stop them",
        if parked.len() > 1 {
            " and the API server (whose cache must not outlive the data it was filled from)"
        } else {
            ""
        },
        parked_dir.display().to_string()
    );
    // Puts back the parked manifests, but not one the snapshot's version replaced.
    let put_back = |written: &[PathBuf]| -> anyhow::Result<()> {
        for (path, text) in parked.iter().filter(|(p, _)| !written.contains(p)) {
            r.fs.write_file(path, text, agent::host::fs::MODE_PRIVATE)
                .with_context(|| {
                    format!(
                        "could not put back {:?}: copy it from {:?}",
                        path.display().to_string(),
                        parked_dir.display().to_string()
                    )
                })?;
        }
        say!(out, "etcd", "Put the manifests back");
        Ok(())
    };
    let result = (|| {
        let start = Instant::now();
        while data_dir_in_use(&r.fs.resolve(&data_dir))? {
            anyhow::ensure!(
                start.elapsed() < r.timeout,
                "etcd did not stop within {} after its manifest was moved out (its data directory {:?} is still locked): check \"kubeboot agent status\"",
                crate::health::human(r.timeout),
                data_dir.display().to_string()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        restore_data_dir(&etcdctl, snapshot, &r.fs.resolve(&data_dir), &plan, &stamp)
    })();
    let aside = match result {
        Ok(aside) => aside,
        Err(e) => {
            return match put_back(&[]) {
                Ok(()) => Err(e.context(
                    "the data directory is as it was and etcd and the API server run again",
                )),
                Err(e2) => Err(e.context(format!("and {e2:#}"))),
            };
        }
    };
    say_restored(out, &data_dir, aside.as_deref(), &plan);
    let versioned = match &version {
        VersionPlan::PutBack {
            from,
            to,
            manifests,
            source,
        } => {
            say!(
                out,
                "etcd",
                "The snapshot was taken under Kubernetes {from}; this node's control plane runs {to}"
            );
            let stopped: Vec<PathBuf> = parked.iter().map(|(p, _)| p.clone()).collect();
            put_back_versioned(r, manifests, source, (&parked_dir, &stopped), from)
        }
        VersionPlan::Keep => Ok(Vec::new()),
    };
    put_back(versioned.as_deref().unwrap_or_default())?;
    versioned.context("the data is restored and etcd runs, but the static Pod manifests of the snapshot's Kubernetes version could not all be put back")?;
    if !plan.others.is_empty() {
        say_others(out, snapshot, &plan);
        say!(
            out,
            "etcd",
            "etcd on this node answers once a quorum of the restored members runs: not waiting for it"
        );
        return Ok(());
    }
    wait_healthy(r)?;
    Ok(())
}

fn say_restored(out: &Out, data_dir: &Path, aside: Option<&Path>, plan: &RestorePlan) {
    say!(
        out,
        "etcd",
        "Restored {:?} from the snapshot as member {:?} of --initial-cluster {}",
        data_dir.display().to_string(),
        plan.name,
        plan.initial_cluster_flag()
    );
    if let Some(a) = aside {
        say!(
            out,
            "etcd",
            "The old data is kept at {:?}",
            a.display().to_string()
        );
    }
}

fn say_others(out: &Out, snapshot: &Path, plan: &RestorePlan) {
    if plan.others.is_empty() {
        return;
    }
    say!(
        out,
        "etcd",
        "Every member must be restored from this same snapshot: copy {:?} and {:?} to each other control-plane node and run there:",
        snapshot.display().to_string(),
        sidecar_path(snapshot).display().to_string()
    );
    for (name, url) in &plan.others {
        out.line(&format!(
            "\t{name}$ kubeboot etcd snapshot restore {} --name {name} --initial-advertise-peer-urls {url}",
            snapshot.display()
        ));
    }
}

/// Waits for the etcd and kube-apiserver static pods of this node to pass their probes.
fn wait_healthy(r: &RestoreNode) -> anyhow::Result<()> {
    let mut pods = Vec::new();
    for c in [names::ETCD, names::KUBE_APISERVER] {
        let path = r.layout.manifest(c);
        if let Some(text) = r.fs.read_string_if_exists(&path)? {
            let pod = manifests::yaml::from_yaml(&text)
                .with_context(|| format!("could not read {:?}", path.display().to_string()))?;
            pods.push((c.to_string(), pod));
        }
    }
    let targets = crate::health::targets(&pods);
    say!(
        r.out,
        "etcd",
        "Waiting for etcd and the API server to be healthy. This can take up to {}",
        crate::health::human(r.timeout)
    );
    let start = Instant::now();
    crate::health::wait_all(&targets, r.timeout, |pending, waited| {
        say!(
            r.out,
            "etcd",
            "Still waiting for {} ({})",
            pending.join(", "),
            crate::health::human(waited)
        )
    })
    .map_err(|failures| {
        anyhow::anyhow!(
            "{}",
            crate::health::explain_timeout(r.layout, &failures, r.timeout)
        )
    })?;
    say!(
        r.out,
        "etcd",
        "etcd and the API server are healthy after {:.1} seconds",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot_bytes(db: &[u8]) -> Vec<u8> {
        let mut v = db.to_vec();
        v.extend_from_slice(&Sha256::digest(db));
        v
    }

    #[test]
    fn the_digest_checks_etcds_trailer_whatever_the_chunking() {
        let bytes = snapshot_bytes(&[7u8; 1000]);
        for chunk in [1, 5, 31, 32, 33, 100, 5000] {
            let mut d = SnapshotDigest::default();
            for c in bytes.chunks(chunk) {
                d.update(c);
            }
            let got = d.finish();
            assert!(got.intact, "chunk {chunk}");
            assert_eq!(got.size, 1032);
            assert_eq!(got.sha256, hex::encode(Sha256::digest(&bytes)));
        }
        let mut cut = SnapshotDigest::default();
        cut.update(&bytes[..bytes.len() - 1]);
        assert!(!cut.finish().intact);
        let mut flipped = bytes.clone();
        flipped[10] ^= 1;
        let mut d = SnapshotDigest::default();
        d.update(&flipped);
        assert!(!d.finish().intact);
        assert!(!SnapshotDigest::default().finish().intact);
    }

    #[test]
    fn the_kubernetes_version_is_read_from_the_stored_configmap() {
        let stored = b"k8s\0\n\x0f\n\x02v1\x12\tConfigMap\x12\x8a\x05\n\x0ekubeadm-config\x1a\x8c\x03\n\x14ClusterConfiguration\x12\xf3\x02apiServer:\n  timeoutForControlPlane: 4m0s\napiVersion: kubeadm.k8s.io/v1beta2\nkubernetesVersion: v1.20.2\nnetworking:\n";
        assert_eq!(kubernetes_version_in(stored).as_deref(), Some("v1.20.2"));
        assert_eq!(
            kubernetes_version_in(b"kubernetesVersion: \"v1.20.3-test.0\"\n").as_deref(),
            Some("v1.20.3-test.0")
        );
        assert_eq!(kubernetes_version_in(b"apiEndpoints: {}\n"), None);
        assert_eq!(kubernetes_version_in(b"kubernetesVersion: $(evil)\n"), None);
    }

    fn info(members: &[(&str, &str, bool)]) -> SnapshotInfo {
        SnapshotInfo {
            taken_at: String::new(),
            endpoint: String::new(),
            etcd_version: "3.4.23".into(),
            cluster_id: "1".into(),
            revision: 5,
            members: members
                .iter()
                .enumerate()
                .map(|(i, (n, u, learner))| SnapshotMember {
                    id: format!("{i:x}"),
                    name: n.to_string(),
                    peer_urls: vec![u.to_string()],
                    client_urls: vec![],
                    is_learner: *learner,
                })
                .collect(),
            kubernetes_version: None,
            saved_on: None,
            manifests: BTreeMap::new(),
            size: 0,
            sha256: "0123456789abcdef0123".into(),
        }
    }

    #[test]
    fn a_single_member_restores_as_this_node_alone() {
        let p = plan_restore(
            &info(&[("old", "https://10.0.0.9:2380", false)]),
            "node1",
            "https://10.0.0.1:2380",
        )
        .unwrap();
        assert_eq!(p.initial_cluster_flag(), "node1=https://10.0.0.1:2380");
        assert!(p.others.is_empty());
        assert_eq!(p.token, "kubeboot-restore-0123456789abcdef");
    }

    #[test]
    fn several_members_restore_together_and_learners_rejoin() {
        let i = info(&[
            ("node1", "https://10.0.0.1:2380", false),
            ("node2", "https://10.0.0.2:2380", false),
            ("node3", "https://10.0.0.3:2380", true),
        ]);
        let p = plan_restore(&i, "node2", "https://10.0.0.2:2380").unwrap();
        assert_eq!(
            p.initial_cluster_flag(),
            "node1=https://10.0.0.1:2380,node2=https://10.0.0.2:2380"
        );
        assert_eq!(
            p.others,
            vec![("node1".to_string(), "https://10.0.0.1:2380".to_string())]
        );
        // The same on every node: the same cluster ID.
        let p1 = plan_restore(&i, "node1", "https://10.0.0.1:2380").unwrap();
        assert_eq!(p1.initial_cluster_flag(), p.initial_cluster_flag());
        assert_eq!(p1.token, p.token);
        let err = plan_restore(&i, "node9", "https://10.0.0.9:2380").unwrap_err();
        assert!(err.contains("\"node9\" is not one of them"), "{err}");
    }

    /// A kube-apiserver manifest of `version`.
    fn apiserver_of(version: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\nspec:\n  containers:\n  - name: kube-apiserver\n    image: k8s.gcr.io/kube-apiserver:{version}\n"
        )
    }

    #[test]
    fn a_snapshot_of_another_version_brings_back_the_manifests_it_kept() {
        let snap = Path::new("/b/etcd.db");
        let mut i = info(&[("node1", "https://10.0.0.1:2380", false)]);
        // Unknown versions, or the same: the manifests stay.
        assert_eq!(
            version_plan(&i, snap, Some("v1.20.2"), "node1", Path::new("/t"), &[]),
            Ok(VersionPlan::Keep)
        );
        i.kubernetes_version = Some("v1.20.2".into());
        assert_eq!(
            version_plan(&i, snap, None, "node1", Path::new("/t"), &[]),
            Ok(VersionPlan::Keep)
        );
        assert_eq!(
            version_plan(&i, snap, Some("v1.20.2"), "node1", Path::new("/t"), &[]),
            Ok(VersionPlan::Keep)
        );
        // Another version and no manifests kept: refused, naming both versions and the ways out.
        let err = version_plan(
            &i,
            snap,
            Some("v1.20.3-test.0"),
            "node1",
            Path::new("/t"),
            &[],
        )
        .unwrap_err();
        for want in [
            "\"/b/etcd.db\" was taken under Kubernetes v1.20.2",
            "runs v1.20.3-test.0",
            "the snapshot's sidecar keeps no static Pod manifests",
            "none of this node's upgrade backups (/t/kubeboot-backup-*)",
            "Nothing was changed",
            "Put this node's control plane at v1.20.2 first",
            "the binaries of v1.20.2 in the agent's --bin-dir",
        ] {
            assert!(err.contains(want), "{want:?} not in {err}");
        }
        // Kept on this node: they go back.
        i.saved_on = Some("node1".into());
        i.manifests
            .insert("kube-apiserver.yaml".into(), apiserver_of("v1.20.2"));
        assert_eq!(
            version_plan(
                &i,
                snap,
                Some("v1.20.3-test.0"),
                "node1",
                Path::new("/t"),
                &[]
            ),
            Ok(VersionPlan::PutBack {
                from: "v1.20.2".into(),
                to: "v1.20.3-test.0".into(),
                manifests: i.manifests.clone(),
                source: "the snapshot kept".into(),
            })
        );
        // Kept on this node, but not of the snapshot's version (`upgrade node` saves its
        // snapshot after kubeadm-config moved on, before the node did): refused without a
        // backup of that version.
        let mut moved_on = i.clone();
        moved_on.kubernetes_version = Some("v1.20.3-test.0".into());
        let err = version_plan(
            &moved_on,
            snap,
            Some("v1.20.2"),
            "node1",
            Path::new("/t"),
            &[],
        )
        .unwrap_err();
        assert!(
            err.contains("the manifests the snapshot's sidecar keeps are not of v1.20.3-test.0"),
            "{err}"
        );
        // Kept on another node, and this one has no backup of that version: refused.
        let err = version_plan(
            &i,
            snap,
            Some("v1.20.3-test.0"),
            "node2",
            Path::new("/t"),
            &[],
        )
        .unwrap_err();
        assert!(
            err.contains("saved on the node of etcd member \"node1\""),
            "{err}"
        );
    }

    #[test]
    fn another_member_puts_back_its_newest_upgrade_backup_of_the_snapshots_version() {
        let snap = Path::new("/b/etcd.db");
        let mut i = info(&[
            ("node1", "https://10.0.0.1:2380", false),
            ("node2", "https://10.0.0.2:2380", false),
        ]);
        i.kubernetes_version = Some("v1.20.2".into());
        i.saved_on = Some("node1".into());
        i.manifests
            .insert("kube-apiserver.yaml".into(), apiserver_of("v1.20.2"));
        let backup = |dir: &str, version: &str, scheduler: &str| Backup {
            dir: PathBuf::from(dir),
            manifests: [
                ("kube-apiserver.yaml".to_string(), apiserver_of(version)),
                ("kube-scheduler.yaml".to_string(), scheduler.to_string()),
            ]
            .into(),
        };
        // Newest first: a later upgrade's backup (of another version) is passed over, and of
        // two of the snapshot's version the newest wins.
        let backups = [
            backup("/t/kubeboot-backup-3", "v1.20.3-test.0", "third"),
            backup("/t/kubeboot-backup-2", "v1.20.2", "second"),
            backup("/t/kubeboot-backup-1", "v1.20.2", "first"),
        ];
        assert_eq!(
            version_plan(
                &i,
                snap,
                Some("v1.20.3-test.0"),
                "node2",
                Path::new("/t"),
                &backups
            ),
            Ok(VersionPlan::PutBack {
                from: "v1.20.2".into(),
                to: "v1.20.3-test.0".into(),
                manifests: backups[1].manifests.clone(),
                source: "this node's upgrade backup \"/t/kubeboot-backup-2\" kept".into(),
            })
        );
        // On the node that saved it, the snapshot's own manifests come first.
        assert!(matches!(
            version_plan(&i, snap, Some("v1.20.3-test.0"), "node1", Path::new("/t"), &backups),
            Ok(VersionPlan::PutBack { source, .. }) if source == "the snapshot kept"
        ));
        // No backup of the snapshot's version (nor one whose API server manifest is unreadable):
        // refused, and the message says where kubeboot looked.
        let mut unreadable = backup("/t/kubeboot-backup-4", "v1.20.2", "x");
        unreadable
            .manifests
            .insert("kube-apiserver.yaml".into(), "{not yaml".into());
        let err = version_plan(
            &i,
            snap,
            Some("v1.20.3-test.0"),
            "node2",
            Path::new("/t"),
            &[unreadable, backups[0].clone()],
        )
        .unwrap_err();
        for want in [
            "saved on the node of etcd member \"node1\"",
            "none of this node's upgrade backups",
            "holds a kube-apiserver manifest of v1.20.2",
            "Nothing was changed",
        ] {
            assert!(err.contains(want), "{want:?} not in {err}");
        }
    }

    #[test]
    fn own_backups_lists_the_upgrade_copies_of_versioned_manifests_newest_first() {
        let root = tempfile::tempdir().unwrap();
        let fs = Fs::under(root.path());
        let layout = Layout::host();
        let tmp = fs.resolve(&layout.tmp_dir());
        let put = |dir: &str, file: &str, text: &str| {
            std::fs::create_dir_all(tmp.join(dir)).unwrap();
            std::fs::write(tmp.join(dir).join(file), text).unwrap();
        };
        // None yet (not even the directory).
        assert!(own_backups(&fs, &layout).unwrap().is_empty());
        put(
            "kubeboot-backup-2026-12-01-10-00-00",
            "01-kube-apiserver.yaml",
            "old",
        );
        put(
            "kubeboot-backup-2026-12-01-10-00-00",
            "04-kubelet.yaml",
            "old kubelet",
        );
        // Not versioned manifests, or not the upgrade's copies: left out.
        put(
            "kubeboot-backup-2026-12-01-10-00-00",
            "05-config.yaml",
            "kubelet config",
        );
        put(
            "kubeboot-backup-2026-12-01-10-00-00",
            "etcd-snapshot.db",
            "db",
        );
        put(
            "kubeboot-backup-2026-12-01-10-00-00",
            "x1-kube-scheduler.yaml",
            "no",
        );
        put(
            "kubeboot-backup-2026-12-02-10-00-00",
            "01-kube-apiserver.yaml",
            "new",
        );
        // Entries that cannot be read as a manifest are passed over, not fatal: a directory,
        // and a file that is not UTF-8 text.
        std::fs::create_dir_all(
            tmp.join("kubeboot-backup-2026-12-02-10-00-00/02-kube-controller-manager.yaml"),
        )
        .unwrap();
        std::fs::write(
            tmp.join("kubeboot-backup-2026-12-02-10-00-00/03-kube-scheduler.yaml"),
            [0xff, 0xfe, 0x00],
        )
        .unwrap();
        // A partial backup a killed upgrade left, a backup of nothing versioned, another name.
        put(
            ".kubeboot-backup-2026-12-03-10-00-00.partial",
            "01-kube-apiserver.yaml",
            "p",
        );
        put(
            "kubeboot-backup-2026-12-04-10-00-00",
            "00-etcd.yaml",
            "etcd",
        );
        put(
            "kubeboot-etcd-restore-2026-12-05-10-00-00",
            "01-kube-apiserver.yaml",
            "r",
        );
        let got = own_backups(&fs, &layout).unwrap();
        let dir = |n: &str| layout.tmp_dir().join(n);
        assert_eq!(
            got,
            vec![
                Backup {
                    dir: dir("kubeboot-backup-2026-12-02-10-00-00"),
                    manifests: [("kube-apiserver.yaml".to_string(), "new".to_string())].into(),
                },
                Backup {
                    dir: dir("kubeboot-backup-2026-12-01-10-00-00"),
                    manifests: [
                        ("kube-apiserver.yaml".to_string(), "old".to_string()),
                        ("kubelet.yaml".to_string(), "old kubelet".to_string()),
                    ]
                    .into(),
                },
            ]
        );
    }

    #[test]
    fn the_sidecar_sits_beside_the_snapshot() {
        assert_eq!(
            sidecar_path(Path::new("/backup/etcd.db")),
            Path::new("/backup/etcd.db.json")
        );
    }
}
