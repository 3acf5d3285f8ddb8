//! The agent's persistent state under `/var/lib/kubeboot/agent`: the node id, one record per
//! running container (`pods/<uid>/<container>.json`), the exit files the shims write
//! (`pods/<uid>/<container>.exit`) and one record per pod network (`sandboxes/<uid>.json`).
//! Every file is written atomically through [`Fs`].

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::cni::RuntimeConf;
use crate::cni::conf::NetworkList;
use crate::host::fs::Fs;

/// What the agent remembers about a container process it started, to adopt it after a
/// restart. A record is trusted only when the PID, its /proc start time, its executable and
/// its marker all match.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ContainerRecord {
    /// The pod's UID (content hash).
    pub pod_uid: String,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod_name: String,
    /// The manifest the pod came from.
    pub manifest: PathBuf,
    /// The container's name.
    pub container: String,
    /// The container spec's hash.
    pub container_hash: String,
    /// The shim's PID.
    pub pid: u32,
    /// The shim's start time, /proc/<pid>/stat field 22 (clock ticks after boot).
    pub start_time: u64,
    /// The shim's executable as /proc/<pid>/exe showed it at start.
    pub exe: PathBuf,
    /// The marker value in the shim's environment: `<node-id>/<pod-uid>/<container>`.
    pub marker: String,
    /// The restart count of this run.
    pub restart_count: u32,
    /// Wall-clock start, milliseconds since the Unix epoch.
    pub started_at_unix_ms: u64,
    /// The pod's grace period in seconds.
    pub grace_seconds: u64,
    /// The container's log file.
    pub log_file: PathBuf,
}

/// What the agent did for a pod's own network (a pod without hostNetwork), written before
/// the network namespace is created and again once CNI ADD succeeded: an agent restart adopts
/// the network from it, and DEL runs with the same configuration, arguments and result.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SandboxRecord {
    /// The pod's UID (content hash).
    pub pod_uid: String,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod_name: String,
    /// What every plugin got: `CNI_CONTAINERID`, `CNI_NETNS` (the namespace file), `CNI_IFNAME`,
    /// `CNI_ARGS`, `CNI_PATH`.
    pub runtime: RuntimeConf,
    /// The network configuration ADD ran with.
    pub network: NetworkList,
    /// ADD's result (`prevResult` of DEL); `None` until ADD succeeded.
    pub result: Option<serde_json::Value>,
    /// The pod's addresses from the result.
    pub ips: Vec<IpAddr>,
}

/// What a shim writes when its container exits.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExitRecord {
    /// The shim's PID (tells this run's file from a stale one).
    pub shim_pid: u32,
    /// The container's PID, if it started.
    pub container_pid: Option<u32>,
    /// Exit code.
    pub code: Option<i32>,
    /// Killing signal.
    pub signal: Option<i32>,
    /// Why the container could not start, if it could not.
    pub error: Option<String>,
    /// When it finished (RFC 3339).
    pub finished_at: String,
}

/// The agent's state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
    fs: Fs,
}

impl StateDir {
    /// The state under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StateDir {
            root: root.into(),
            fs: Fs::real(),
        }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates the directory (0700) and its `pods` subdirectory.
    pub fn ensure(&self) -> anyhow::Result<()> {
        self.fs.ensure_dir(&self.root, 0o700)?;
        self.fs.ensure_dir(&self.pods_dir(), 0o700)
    }

    fn pods_dir(&self) -> PathBuf {
        self.root.join("pods")
    }

    /// `pods/<uid>`.
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.pods_dir().join(uid)
    }

    /// `pods/<uid>/<container>.json`.
    pub fn record_path(&self, uid: &str, container: &str) -> PathBuf {
        self.pod_dir(uid).join(format!("{container}.json"))
    }

    /// `pods/<uid>/<container>.exit`.
    pub fn exit_path(&self, uid: &str, container: &str) -> PathBuf {
        self.pod_dir(uid).join(format!("{container}.exit"))
    }

    /// The node id: random, created on first use and kept in `node-id`. Nodes that share a
    /// PID namespace tell their processes apart by it.
    pub fn node_id(&self) -> anyhow::Result<String> {
        let path = self.root.join("node-id");
        if let Some(text) = self.fs.read_string_if_exists(&path)? {
            let id = text.trim();
            if !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Ok(id.to_string());
            }
        }
        let id = format!("{:016x}", rand::random::<u64>());
        self.fs
            .write_file(&path, format!("{id}\n").as_bytes(), 0o644)?;
        Ok(id)
    }

    /// The node id if one was ever created.
    pub fn existing_node_id(&self) -> anyhow::Result<Option<String>> {
        Ok(self
            .fs
            .read_string_if_exists(&self.root.join("node-id"))?
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty()))
    }

    /// Prepares a pod's directory for a new run of `container`: creates it and removes a
    /// stale exit file.
    pub fn prepare(&self, uid: &str, container: &str) -> anyhow::Result<()> {
        self.fs.ensure_dir(&self.pod_dir(uid), 0o700)?;
        self.fs.remove_file(&self.exit_path(uid, container))?;
        Ok(())
    }

    /// Writes a container record atomically.
    pub fn write_record(&self, r: &ContainerRecord) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec_pretty(r).context("could not encode a container record")?;
        self.fs
            .write_file(&self.record_path(&r.pod_uid, &r.container), &bytes, 0o600)
    }

    /// Removes a container's record and exit file.
    pub fn remove_container(&self, uid: &str, container: &str) -> anyhow::Result<()> {
        self.fs.remove_file(&self.record_path(uid, container))?;
        self.fs.remove_file(&self.exit_path(uid, container))?;
        Ok(())
    }

    /// Removes a pod's directory if it is empty.
    pub fn remove_pod_if_empty(&self, uid: &str) {
        let _ = std::fs::remove_dir(self.pod_dir(uid));
    }

    /// Reads the exit file of `container`, if the shim wrote one.
    pub fn read_exit(&self, uid: &str, container: &str) -> anyhow::Result<Option<ExitRecord>> {
        self.read_json(&self.exit_path(uid, container), "exit file")
    }

    /// Reads a JSON file, `what` it is naming it in errors, if it exists.
    fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &Path,
        what: &str,
    ) -> anyhow::Result<Option<T>> {
        match self.fs.read_if_exists(path)? {
            None => Ok(None),
            Some(b) => serde_json::from_slice(&b).map(Some).with_context(|| {
                format!("could not read the {what} {:?}", path.display().to_string())
            }),
        }
    }

    /// Every record on disk; unreadable ones come back as errors naming their file.
    pub fn load_records(&self) -> Vec<(PathBuf, anyhow::Result<ContainerRecord>)> {
        let mut out = Vec::new();
        let Ok(pods) = std::fs::read_dir(self.pods_dir()) else {
            return out;
        };
        for pod in pods.flatten() {
            let Ok(files) = std::fs::read_dir(pod.path()) else {
                continue;
            };
            for f in files.flatten() {
                let path = f.path();
                if path.extension().is_none_or(|e| e != "json")
                    || f.file_name().to_string_lossy().starts_with('.')
                {
                    continue;
                }
                let rec = self
                    .fs
                    .read_if_exists(&path)
                    .and_then(|b| b.ok_or_else(|| anyhow::anyhow!("vanished")))
                    .and_then(|b| serde_json::from_slice(&b).map_err(anyhow::Error::from))
                    .with_context(|| {
                        format!(
                            "could not read the container record {:?}",
                            path.display().to_string()
                        )
                    });
                out.push((path, rec));
            }
        }
        out
    }

    fn sandboxes_dir(&self) -> PathBuf {
        self.root.join("sandboxes")
    }

    /// `sandboxes/<uid>.json`.
    pub fn sandbox_path(&self, uid: &str) -> PathBuf {
        self.sandboxes_dir().join(format!("{uid}.json"))
    }

    /// Writes a pod network record atomically.
    pub fn write_sandbox(&self, r: &SandboxRecord) -> anyhow::Result<()> {
        self.fs.ensure_dir(&self.sandboxes_dir(), 0o700)?;
        let bytes =
            serde_json::to_vec_pretty(r).context("could not encode a pod network record")?;
        self.fs
            .write_file(&self.sandbox_path(&r.pod_uid), &bytes, 0o600)
    }

    /// Reads a pod's network record, if there is one.
    pub fn read_sandbox(&self, uid: &str) -> anyhow::Result<Option<SandboxRecord>> {
        self.read_json(&self.sandbox_path(uid), "pod network record")
    }

    /// Removes a pod's network record.
    pub fn remove_sandbox(&self, uid: &str) -> anyhow::Result<()> {
        self.fs.remove_file(&self.sandbox_path(uid)).map(|_| ())
    }

    /// The pod UIDs that have a network record, sorted.
    pub fn sandbox_uids(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.sandboxes_dir()) else {
            return Vec::new();
        };
        let mut uids: Vec<String> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let uid = name.strip_suffix(".json")?;
                (!uid.starts_with('.')).then(|| uid.to_string())
            })
            .collect();
        uids.sort();
        uids
    }

    /// Removes a file by path (a record that did not match).
    pub fn remove_path(&self, path: &Path) -> anyhow::Result<()> {
        self.fs.remove_file(path).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_is_created_once_and_kept() {
        let d = tempfile::tempdir().unwrap();
        let s = StateDir::new(d.path().join("agent"));
        s.ensure().unwrap();
        assert_eq!(s.existing_node_id().unwrap(), None);
        let id = s.node_id().unwrap();
        assert_eq!(id.len(), 16);
        assert_eq!(s.node_id().unwrap(), id);
        assert_eq!(
            StateDir::new(d.path().join("agent"))
                .existing_node_id()
                .unwrap(),
            Some(id)
        );
    }

    #[test]
    fn records_round_trip_and_bad_ones_name_their_file() {
        let d = tempfile::tempdir().unwrap();
        let s = StateDir::new(d.path());
        s.ensure().unwrap();
        s.prepare("u1", "c").unwrap();
        let r = ContainerRecord {
            pod_uid: "u1".into(),
            namespace: "kube-system".into(),
            pod_name: "etcd".into(),
            manifest: "/m/etcd.yaml".into(),
            container: "c".into(),
            container_hash: "h".into(),
            pid: 1,
            start_time: 2,
            exe: "/bin/kubeboot".into(),
            marker: "n/u1/c".into(),
            restart_count: 0,
            started_at_unix_ms: 0,
            grace_seconds: 30,
            log_file: "/l".into(),
        };
        s.write_record(&r).unwrap();
        std::fs::write(s.pod_dir("u1").join("bad.json"), "{").unwrap();
        let mut loaded = s.load_records();
        loaded.sort_by(|a, b| a.0.cmp(&b.0));
        assert!(
            loaded[0]
                .1
                .as_ref()
                .unwrap_err()
                .to_string()
                .contains("bad.json")
        );
        assert_eq!(loaded[1].1.as_ref().unwrap(), &r);
        s.remove_container("u1", "c").unwrap();
        assert_eq!(s.load_records().len(), 1);
    }

    #[test]
    fn sandbox_records_round_trip_apart_from_container_records() {
        let d = tempfile::tempdir().unwrap();
        let s = StateDir::new(d.path());
        s.ensure().unwrap();
        assert!(s.sandbox_uids().is_empty());
        assert_eq!(s.read_sandbox("u1").unwrap(), None);
        let r = SandboxRecord {
            pod_uid: "u1".into(),
            namespace: "default".into(),
            pod_name: "web".into(),
            runtime: RuntimeConf {
                container_id: "kubeboot-n-u1".into(),
                netns: "/run/netns/kubeboot-n-u1".into(),
                ifname: "eth0".into(),
                args: vec![("K8S_POD_NAME".into(), "web".into())],
                plugin_dirs: vec!["/usr/lib/cni".into()],
            },
            network: NetworkList::loopback(),
            result: Some(serde_json::json!({"ips": []})),
            ips: vec!["10.1.0.2".parse().unwrap()],
        };
        s.write_sandbox(&r).unwrap();
        assert_eq!(s.sandbox_uids(), ["u1"]);
        assert_eq!(s.read_sandbox("u1").unwrap(), Some(r));
        assert!(s.load_records().is_empty(), "not a container record");
        s.remove_sandbox("u1").unwrap();
        assert!(s.sandbox_uids().is_empty());
    }
}
