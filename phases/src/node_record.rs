//! The node record, `/var/lib/kubeboot/node-record.json`: what `init` created on this node,
//! written as it goes so that `reset` deletes exactly that and nothing else (STYLE.md: act
//! only on what kubeboot recorded that it created, never on free text in a manifest).
//!
//! Every entry is written *before* the thing it names is made (write-ahead): a run killed
//! between the two leaves an entry for something absent, which reset tolerates, never
//! something present that nobody recorded. A re-run of init merges into the record (union),
//! so what an earlier run made is still known. Paths are stored as the node sees them
//! (`/etc/kubernetes/pki`), whatever the layout's root.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use agent::host::fs::Fs;
use anyhow::Context;
use components::{Layout, names};
use serde::{Deserialize, Serialize};

/// What kubeboot created on this node.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct NodeRecord {
    /// Directories kubeboot created (they did not exist before); reset removes them once
    /// they are empty.
    pub created_dirs: BTreeSet<PathBuf>,
    /// Files kubeboot wrote (manifests, kubeconfigs, configurations).
    pub files: BTreeSet<PathBuf>,
    /// The certificate directories kubeboot used; reset removes only the PKI files it knows
    /// there ([`pki_files`]).
    pub cert_dirs: BTreeSet<PathBuf>,
    /// Data directories of a local etcd kubeboot ran.
    pub etcd_data_dirs: BTreeSet<PathBuf>,
    /// The kubelet directories of the kubelet kubeboot ran (everything in them is the
    /// kubelet's).
    pub kubelet_dirs: BTreeSet<PathBuf>,
    /// kubeboot's own CNI bridges (`--pod-network bridge`).
    pub cni_bridges: BTreeSet<String>,
    /// kubeboot ran kube-proxy here: its rules are cleaned by `kube-proxy --cleanup`.
    pub kube_proxy: bool,
    /// The `--bin-dir`s init ran with (where reset finds kube-proxy).
    pub bin_dirs: Vec<PathBuf>,
}

impl NodeRecord {
    /// Merges `other` into `self` (a re-run of init adds to what an earlier run made).
    pub fn merge(&mut self, other: NodeRecord) {
        self.created_dirs.extend(other.created_dirs);
        self.files.extend(other.files);
        self.cert_dirs.extend(other.cert_dirs);
        self.etcd_data_dirs.extend(other.etcd_data_dirs);
        self.kubelet_dirs.extend(other.kubelet_dirs);
        self.cni_bridges.extend(other.cni_bridges);
        self.kube_proxy |= other.kube_proxy;
        for d in other.bin_dirs {
            if !self.bin_dirs.contains(&d) {
                self.bin_dirs.push(d);
            }
        }
    }

    /// What a node set up before the record existed is taken to hold: kubeboot's files at
    /// the default layout's paths only, the kubelet directory, kubeboot's bridge, and etcd's
    /// default data directory only when there is an etcd manifest (without one, etcd is
    /// someone else's: kubeadm's "Assuming external etcd").
    pub fn default_layout(etcd_manifest: bool) -> NodeRecord {
        let n = |p: &str| PathBuf::from(p);
        let kubernetes = Path::new(names::KUBERNETES_DIR);
        let manifests = kubernetes.join(names::MANIFESTS_SUBDIR);
        let agent_manifests = Path::new(names::KUBEBOOT_AGENT_MANIFESTS_DIR);
        let mut files: BTreeSet<PathBuf> = [
            names::ADMIN_KUBECONFIG,
            names::KUBELET_KUBECONFIG,
            names::KUBELET_BOOTSTRAP_KUBECONFIG,
            names::CONTROLLER_MANAGER_KUBECONFIG,
            names::SCHEDULER_KUBECONFIG,
            names::KUBEBOOT_AGENT_KUBECONFIG,
        ]
        .iter()
        .map(|f| kubernetes.join(f))
        .collect();
        for component in [
            names::ETCD,
            names::KUBE_APISERVER,
            names::KUBE_CONTROLLER_MANAGER,
            names::KUBE_SCHEDULER,
            names::KUBELET,
            names::KUBE_PROXY,
            components::image::CONTAINERD,
        ] {
            files.insert(manifests.join(format!("{component}.yaml")));
            files.insert(agent_manifests.join(format!("{component}.yaml")));
        }
        let kube_proxy = Path::new(names::KUBE_PROXY_DIR);
        files.insert(kube_proxy.join(names::KUBE_PROXY_CONFIG_KEY));
        files.insert(kube_proxy.join(names::KUBE_PROXY_KUBECONFIG_KEY));
        files.insert(n(names::KUBEBOOT_CONTAINERD_CONFIG));
        files.insert(n("/etc/systemd/system/kubeboot-agent.service"));
        NodeRecord {
            files,
            cert_dirs: [n(names::DEFAULT_CERTIFICATES_DIR)].into(),
            etcd_data_dirs: if etcd_manifest {
                [n(names::DEFAULT_ETCD_DATA_DIR)].into()
            } else {
                BTreeSet::new()
            },
            kubelet_dirs: [n(names::KUBELET_RUN_DIR)].into(),
            cni_bridges: [names::KUBEBOOT_CNI_BRIDGE.to_string()].into(),
            ..Default::default()
        }
    }

    /// Every path in the record, for the check that each is a normalized absolute path.
    fn paths(&self) -> impl Iterator<Item = &PathBuf> {
        self.created_dirs
            .iter()
            .chain(&self.files)
            .chain(&self.cert_dirs)
            .chain(&self.etcd_data_dirs)
            .chain(&self.kubelet_dirs)
            .chain(&self.bin_dirs)
    }
}

/// The PKI files kubeboot knows in a certificate directory, relative to it: every
/// certificate and key of `pki::CERTS` (`ca.crt`, `etcd/ca.key`, ...) and the service-account
/// key pair. Nothing else in the directory is kubeboot's.
pub fn pki_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = pki::CERTS
        .iter()
        .flat_map(|c| {
            [
                format!("{}.crt", c.base_name),
                format!("{}.key", c.base_name),
            ]
        })
        .chain([
            format!("{}.key", pki::SA_BASE_NAME),
            format!("{}.pub", pki::SA_BASE_NAME),
        ])
        .map(PathBuf::from)
        .collect();
    files.sort();
    files.dedup();
    files
}

/// Reads the record; `None` on a node set up before it existed.
///
/// # Errors
/// A record that cannot be read or parsed, or that names a path that is not absolute and
/// normalized: the message names the file and the fix.
pub fn read(fs: &Fs, layout: &Layout) -> anyhow::Result<Option<NodeRecord>> {
    let path = layout.node_record();
    let shown = path.display().to_string();
    let Some(text) = fs.read_string_if_exists(&path)? else {
        return Ok(None);
    };
    let record: NodeRecord = serde_json::from_str(&text).with_context(|| {
        format!("the node record {shown:?} is not valid; restore it, or remove it so that reset cleans kubeboot's default paths only")
    })?;
    if let Some(bad) = record
        .paths()
        .find(|p| !components::layout::is_normalized_absolute(p))
    {
        anyhow::bail!(
            "the node record {shown:?} names {:?}, which is not an absolute, normalized path; fix or remove the entry",
            bad.display().to_string()
        );
    }
    Ok(Some(record))
}

/// Merges `add` into the record on disk (written atomically, 0600, in a 0700 directory).
///
/// # Errors
/// The record cannot be read or written.
pub fn update(fs: &Fs, layout: &Layout, add: NodeRecord) -> anyhow::Result<()> {
    let mut record = read(fs, layout)?.unwrap_or_default();
    let before = record.clone();
    record.merge(add);
    if record == before && fs.exists(&layout.node_record()) {
        return Ok(());
    }
    let dir = layout.state_dir();
    if !fs.exists(&dir) {
        fs.create_dir(&dir, 0o700)?;
    }
    let mut text = serde_json::to_string_pretty(&record).context("serializing the node record")?;
    text.push('\n');
    fs.write_private(&layout.node_record(), text.as_bytes())
        .context("could not write the node record")
}

/// How the node sees `path`, a path of `layout`.
///
/// # Errors
/// A path outside the layout's root or not normalized: kubeboot would not know how to find
/// it again on reset.
pub fn node_view(layout: &Layout, path: &Path) -> anyhow::Result<PathBuf> {
    layout.to_node(path).with_context(|| {
        format!(
            "{:?} is not an absolute, normalized path under {:?}",
            path.display().to_string(),
            layout.root().display().to_string()
        )
    })
}

/// Records the file `path` (a path of `layout`), before it is written.
///
/// # Errors
/// See [`update`] and [`node_view`].
pub fn note_file(fs: &Fs, layout: &Layout, path: &Path) -> anyhow::Result<()> {
    let file = node_view(layout, path)?;
    update(
        fs,
        layout,
        NodeRecord {
            files: [file].into(),
            ..Default::default()
        },
    )
}

/// [`Fs::create_dir`], recording first every directory on the way that does not exist yet:
/// those are kubeboot's to remove on reset.
///
/// # Errors
/// See [`update`]; or the directory cannot be created.
pub fn create_dir(fs: &Fs, layout: &Layout, path: &Path, mode: u32) -> anyhow::Result<()> {
    let mut missing = BTreeSet::new();
    let mut p = Some(path);
    while let Some(dir) = p.filter(|d| !fs.exists(d) && d.starts_with(layout.root())) {
        let node = node_view(layout, dir)?;
        // A system directory (`/var/lib` on a bare test root) is never kubeboot's to remove.
        if components::layout::protected_reason(&node).is_none() {
            missing.insert(node);
        }
        p = dir.parent();
    }
    if !missing.is_empty() {
        update(
            fs,
            layout,
            NodeRecord {
                created_dirs: missing,
                ..Default::default()
            },
        )?;
    }
    fs.create_dir(path, mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_merge_and_paths_are_node_paths() {
        let root = tempfile::tempdir().unwrap();
        let layout = Layout::under(root.path());
        let fs = Fs::real();
        create_dir(&fs, &layout, &layout.manifests_dir(), 0o700).unwrap();
        note_file(&fs, &layout, &layout.manifest("etcd")).unwrap();
        update(
            &fs,
            &layout,
            NodeRecord {
                cert_dirs: ["/srv/pki".into()].into(),
                bin_dirs: vec!["/opt/bin".into()],
                ..Default::default()
            },
        )
        .unwrap();
        update(
            &fs,
            &layout,
            NodeRecord {
                bin_dirs: vec!["/opt/bin".into(), "/usr/bin".into()],
                ..Default::default()
            },
        )
        .unwrap();
        let r = read(&fs, &layout).unwrap().unwrap();
        assert_eq!(
            r.created_dirs,
            [
                PathBuf::from("/etc/kubernetes"),
                "/etc/kubernetes/manifests".into()
            ]
            .into()
        );
        assert_eq!(
            r.files,
            [PathBuf::from("/etc/kubernetes/manifests/etcd.yaml")].into()
        );
        assert_eq!(r.cert_dirs, [PathBuf::from("/srv/pki")].into());
        assert_eq!(
            r.bin_dirs,
            vec![PathBuf::from("/opt/bin"), "/usr/bin".into()]
        );
        // An existing directory is not kubeboot's.
        std::fs::create_dir_all(root.path().join("var/lib")).unwrap();
        create_dir(&fs, &layout, &layout.kubelet_dir(), 0o700).unwrap();
        let r = read(&fs, &layout).unwrap().unwrap();
        assert!(r.created_dirs.contains(Path::new("/var/lib/kubelet")));
        assert!(!r.created_dirs.contains(Path::new("/var/lib")));
    }

    #[test]
    fn a_record_naming_a_relative_path_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let layout = Layout::under(root.path());
        std::fs::create_dir_all(layout.state_dir()).unwrap();
        std::fs::write(layout.node_record(), r#"{"etcdDataDirs": ["."]}"#).unwrap();
        let err = format!("{:#}", read(&Fs::real(), &layout).unwrap_err());
        assert!(
            err.contains("names \".\", which is not an absolute, normalized path"),
            "{err}"
        );
        std::fs::write(layout.node_record(), "{").unwrap();
        let err = format!("{:#}", read(&Fs::real(), &layout).unwrap_err());
        assert!(
            err.contains("is not valid; restore it, or remove it"),
            "{err}"
        );
    }

    #[test]
    fn pki_files_are_kubeadms_names() {
        let f = pki_files();
        for want in [
            "ca.crt",
            "ca.key",
            "apiserver.crt",
            "etcd/ca.key",
            "front-proxy-client.crt",
            "sa.key",
            "sa.pub",
        ] {
            assert!(
                f.contains(&PathBuf::from(want)),
                "{want} missing from {f:?}"
            );
        }
    }
}
