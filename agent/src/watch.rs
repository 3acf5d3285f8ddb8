//! The manifest directory: what pods are desired. inotify only wakes the level-triggered
//! loop ([`DirWatch`], also on the CNI configuration directory); every pass re-reads the
//! directory (unchanged files are not re-parsed).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use inotify::{Inotify, WatchMask};
use tokio::io::unix::AsyncFd;
use tracing::{debug, warn};

use crate::host::fs::Fs;
use crate::pod::spec::{self, StaticPod};
use crate::status::ManifestErrorStatus;

/// The desired pods by UID, and the manifests that could not be read.
#[derive(Debug, Default)]
pub struct Desired {
    /// Pods by UID.
    pub pods: BTreeMap<String, StaticPod>,
    /// Unreadable manifests.
    pub errors: Vec<ManifestErrorStatus>,
}

/// Wakes a loop when something changes in one directory (inotify). The directory may not
/// exist yet: [`DirWatch::ensure`] arms the watch once it does; the loop's periodic pass
/// covers the time before.
pub struct DirWatch {
    dir: PathBuf,
    what: &'static str,
    inotify: Option<AsyncFd<Inotify>>,
    watching: bool,
}

impl DirWatch {
    /// A watch on `dir`, named `what` in log messages.
    pub fn new(dir: &Path, what: &'static str) -> Self {
        let inotify = match Inotify::init().and_then(crate::host::process::async_fd) {
            Ok(i) => Some(i),
            Err(e) => {
                warn!("inotify is unavailable, the {what} is only re-read periodically: {e}");
                None
            }
        };
        let mut w = DirWatch {
            dir: dir.to_path_buf(),
            what,
            inotify,
            watching: false,
        };
        w.ensure();
        w
    }

    /// Arms the watch if it is not (the directory appeared, or was replaced).
    pub fn ensure(&mut self) {
        if self.watching {
            return;
        }
        let Some(i) = &self.inotify else { return };
        let mask = WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::MODIFY
            | WatchMask::CLOSE_WRITE
            | WatchMask::MOVED_TO
            | WatchMask::MOVED_FROM
            | WatchMask::ATTRIB
            | WatchMask::DELETE_SELF
            | WatchMask::MOVE_SELF;
        match i.get_ref().watches().add(&self.dir, mask) {
            Ok(_) => self.watching = true,
            Err(e) => {
                debug!(dir = %self.dir.display(), "cannot watch the {} yet: {e}", self.what)
            }
        }
    }

    /// Waits for a change in the directory (never returns without inotify).
    pub async fn changed(&mut self) {
        let Some(afd) = &mut self.inotify else {
            return std::future::pending().await;
        };
        let mut buf = [0u8; 4096];
        loop {
            let Ok(mut guard) = afd.readable_mut().await else {
                return std::future::pending().await;
            };
            match guard.get_inner_mut().read_events(&mut buf) {
                Ok(events) => {
                    let mut any = false;
                    for e in events {
                        if e.mask.intersects(
                            inotify::EventMask::IGNORED
                                | inotify::EventMask::DELETE_SELF
                                | inotify::EventMask::MOVE_SELF,
                        ) {
                            self.watching = false;
                        }
                        any = true;
                    }
                    if any {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => guard.clear_ready(),
                Err(e) => {
                    warn!("reading inotify events failed: {e}");
                    return;
                }
            }
        }
    }
}

/// Watches and reads the manifest directory.
pub struct ManifestWatcher {
    dir: PathBuf,
    node_name: Option<String>,
    watch: DirWatch,
    cache: HashMap<PathBuf, (Vec<u8>, Result<StaticPod, String>)>,
}

impl ManifestWatcher {
    /// A watcher for `dir`; pods get `-<node_name>` appended when one is given.
    pub fn new(dir: &Path, node_name: Option<String>) -> Self {
        ManifestWatcher {
            dir: dir.to_path_buf(),
            node_name,
            watch: DirWatch::new(dir, "manifest directory"),
            cache: HashMap::new(),
        }
    }

    /// Waits for a change in the directory (never returns without inotify).
    pub async fn changed(&mut self) {
        self.watch.changed().await;
    }

    /// Reads the directory: every `.yaml`, `.yml` and `.json` file that is not hidden.
    pub fn scan(&mut self) -> Desired {
        self.watch.ensure();
        let mut desired = Desired::default();
        let mut names: Vec<PathBuf> = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file() || t.is_symlink()))
                .filter(|e| e.file_name().to_str().is_some_and(spec::is_manifest_file))
                .map(|e| e.path())
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                desired.errors.push(ManifestErrorStatus {
                    manifest: self.dir.display().to_string(),
                    message: format!("cannot list: {e}"),
                });
                Vec::new()
            }
        };
        names.sort();
        let fs = Fs::real();
        let mut cache = HashMap::new();
        let mut by_name: BTreeMap<String, PathBuf> = BTreeMap::new();
        for path in names {
            let bytes = match fs.read_if_exists(&path) {
                Ok(Some(b)) => b,
                Ok(None) => continue,
                Err(e) => {
                    desired.errors.push(ManifestErrorStatus {
                        manifest: path.display().to_string(),
                        message: format!("{e:#}"),
                    });
                    continue;
                }
            };
            let parsed = match self.cache.remove(&path) {
                Some((old, parsed)) if old == bytes => parsed,
                _ => spec::parse_manifest(&path, &bytes, self.node_name.as_deref())
                    .map_err(|e| e.to_string()),
            };
            match &parsed {
                Ok(pod) => {
                    if let Some(first) = by_name.get(&pod.full_name()) {
                        desired.errors.push(ManifestErrorStatus {
                            manifest: path.display().to_string(),
                            message: format!(
                                "pod {} is already defined by {}; this manifest is ignored",
                                pod.full_name(),
                                first.display()
                            ),
                        });
                    } else {
                        by_name.insert(pod.full_name(), path.clone());
                        desired.pods.insert(pod.uid.clone(), pod.clone());
                    }
                }
                Err(e) => desired.errors.push(ManifestErrorStatus {
                    manifest: path.display().to_string(),
                    message: e.clone(),
                }),
            }
            cache.insert(path, (bytes, parsed));
        }
        self.cache = cache;
        desired
    }
}
