//! The manifest directory: what pods are desired. inotify only wakes the level-triggered
//! loop ([`DirWatch`], also on the CNI configuration directory, the directories of the files
//! containers use, the API load balancer's directory and the agent's own log).
//! A pass re-reads the directory (unchanged files are not re-parsed) unless the watch has been
//! armed throughout and saw no change since the last reading, which had no error: then the
//! pods read last are still what is desired, and the directory is read again only every
//! [`SAFETY_RESCAN`] (what inotify cannot see: a change behind a symlink).
//!
//! Only a directory that does not exist means "no pods". A directory that cannot be listed
//! (EMFILE, EIO, not a directory any more) or a manifest that cannot be read keeps what was
//! desired before, with the error in the status, until a later pass reads it again: a
//! passing failure must never stop the control plane. Manifests are read only when they are
//! regular files of at most [`MAX_MANIFEST_SIZE`] bytes, so a FIFO or a symlink to a device
//! is an error, never a hang.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use inotify::{Inotify, WatchDescriptor, WatchMask};
use tokio::io::unix::AsyncFd;
use tracing::{debug, warn};

use crate::host::fs::Fs;
use crate::pod::spec::{self, StaticPod};
use crate::status::ManifestErrorStatus;

/// The largest manifest read (the kubelet has no limit of its own; a static pod manifest is a
/// few KiB, and the API server refuses objects above about 1.5 MiB anyway).
pub const MAX_MANIFEST_SIZE: u64 = 1024 * 1024;

/// How often the manifest directory is read while inotify says nothing changed: the kubelet's
/// own period for its manifest directory (`fileCheckFrequency`, 20 s by default: kubelet
/// `pkg/kubelet/apis/config/v1beta1/defaults.go`), which it too reads beside inotify.
pub const SAFETY_RESCAN: Duration = Duration::from_secs(20);

/// The desired pods by UID, and the manifests that could not be read.
#[derive(Debug, Default, Clone)]
pub struct Desired {
    /// Pods by UID.
    pub pods: BTreeMap<String, StaticPod>,
    /// Unreadable manifests.
    pub errors: Vec<ManifestErrorStatus>,
}

/// Wakes a loop when something changes in one directory, or in one file, or in any of a set
/// of them (inotify: a write, a rename, a removal). A path may not exist yet:
/// [`DirWatch::ensure`] arms its watch once it does (and again on the new file once the
/// watched one was renamed or removed); the loop's periodic pass covers the time before.
pub struct DirWatch {
    what: &'static str,
    inotify: Option<AsyncFd<Inotify>>,
    /// The watched paths, each with its watch while armed.
    paths: Vec<(PathBuf, Option<WatchDescriptor>)>,
    /// Something may have changed since [`DirWatch::take_changes`] last said: an event was
    /// read, or a watch was (re-)armed after a time without one.
    changes: bool,
}

impl DirWatch {
    /// A watch on `dir`, named `what` in log messages.
    pub fn new(dir: &Path, what: &'static str) -> Self {
        Self::new_many(std::slice::from_ref(&dir.to_path_buf()), what)
    }

    /// One watch on each of `paths`, named `what` in log messages.
    pub fn new_many(paths: &[PathBuf], what: &'static str) -> Self {
        let inotify = match Inotify::init().and_then(crate::host::process::async_fd) {
            Ok(i) => Some(i),
            Err(e) => {
                warn!(
                    "inotify is unavailable, so changes in the {what} are only seen periodically: {e}"
                );
                None
            }
        };
        let mut w = DirWatch {
            what,
            inotify,
            paths: Vec::new(),
            changes: true,
        };
        w.set_paths(paths);
        w
    }

    /// Watches exactly `paths` from now on: the watches of paths no longer named are removed,
    /// new paths are armed.
    pub fn set_paths(&mut self, paths: &[PathBuf]) {
        let old = std::mem::take(&mut self.paths);
        for (path, wd) in old {
            if paths.contains(&path) {
                self.paths.push((path, wd));
            } else if let (Some(i), Some(wd)) = (&self.inotify, wd) {
                let _ = i.get_ref().watches().remove(wd);
            }
        }
        for p in paths {
            if !self.paths.iter().any(|(q, _)| q == p) {
                self.paths.push((p.clone(), None));
            }
        }
        self.ensure();
    }

    /// Arms each watch that is not (the path appeared, or was replaced).
    pub fn ensure(&mut self) {
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
        for (path, wd) in self.paths.iter_mut().filter(|(_, wd)| wd.is_none()) {
            match i.get_ref().watches().add(&*path, mask) {
                Ok(d) => {
                    *wd = Some(d);
                    // Whatever happened while nothing was watched was not seen.
                    self.changes = true;
                }
                Err(e) => {
                    debug!(path = %path.display(), "cannot watch the {} yet: {e}", self.what)
                }
            }
        }
    }

    /// Whether every watch is armed: any change would wake [`DirWatch::changed`].
    pub fn watching(&self) -> bool {
        self.inotify.is_some() && self.paths.iter().all(|(_, wd)| wd.is_some())
    }

    /// Whether anything may have changed since the last call: true unless the watches were
    /// armed throughout and no event came (events not read yet are read now, without waiting).
    pub fn take_changes(&mut self) -> bool {
        let mut seen = Vec::new();
        if let Some(afd) = &mut self.inotify {
            let mut buf = [0u8; 4096];
            // The descriptor is non-blocking: WouldBlock is "no event".
            loop {
                match afd.get_mut().read_events(&mut buf) {
                    Ok(events) => {
                        let before = seen.len();
                        seen.extend(events.map(|e| (Some(e.wd), e.mask)));
                        if seen.len() == before {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        warn!("reading inotify events failed: {e}");
                        seen.push((None, inotify::EventMask::Q_OVERFLOW));
                        break;
                    }
                }
            }
        }
        for (wd, mask) in seen {
            let _ = self.saw(wd, mask);
        }
        let changes = self.changes || !self.watching();
        self.changes = false;
        changes
    }

    /// Notes one event of watch `wd` (None: events were lost): a change, and the watch's end
    /// when its path went away. A moved path's watch is removed (it would follow the moved
    /// directory), and the end of a watch no longer kept (IN_IGNORED after a removal) is no
    /// change. After lost events every watch is armed again, as one's end may be among them
    /// (adding a watch that exists returns it). Whether the event counts as a change.
    fn saw(&mut self, wd: Option<WatchDescriptor>, mask: inotify::EventMask) -> bool {
        let lost = wd.is_none() || mask.contains(inotify::EventMask::Q_OVERFLOW);
        // Used only when not lost: `wd` is then Some, which only an armed watch equals.
        let kept = self.paths.iter().any(|(_, armed)| *armed == wd);
        if mask == inotify::EventMask::IGNORED && !kept && !lost {
            return false;
        }
        let gone = mask.intersects(
            inotify::EventMask::IGNORED
                | inotify::EventMask::DELETE_SELF
                | inotify::EventMask::MOVE_SELF,
        );
        let moved = mask.contains(inotify::EventMask::MOVE_SELF);
        for (_, armed) in &mut self.paths {
            if !(lost || (gone && *armed == wd)) {
                continue;
            }
            if let (Some(d), Some(i), true) = (armed.take(), &self.inotify, moved) {
                let _ = i.get_ref().watches().remove(d);
            }
        }
        self.changes = true;
        true
    }

    /// Waits for a change, or for `fallback` to pass, whichever comes first (the only wake
    /// without inotify or while nothing is watched).
    pub async fn changed_or_after(&mut self, fallback: std::time::Duration) {
        tokio::select! {
            () = self.changed() => {}
            () = tokio::time::sleep(fallback) => {}
        }
    }

    /// Waits for a change under a watched path (never returns without inotify).
    pub async fn changed(&mut self) {
        let mut buf = [0u8; 4096];
        loop {
            let Some(afd) = &mut self.inotify else {
                return std::future::pending().await;
            };
            let Ok(mut guard) = afd.readable_mut().await else {
                return std::future::pending().await;
            };
            match guard.get_inner_mut().read_events(&mut buf) {
                Ok(events) => {
                    let seen: Vec<_> = events.map(|e| (Some(e.wd), e.mask)).collect();
                    drop(guard);
                    let mut counted = false;
                    for (wd, mask) in seen {
                        counted |= self.saw(wd, mask);
                    }
                    if counted {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => guard.clear_ready(),
                Err(e) => {
                    warn!("reading inotify events failed: {e}");
                    let _ = self.saw(None, inotify::EventMask::Q_OVERFLOW);
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
    /// Lists the directory (the real one, or a test's).
    list: ListDir,
    /// The last reading without an error, and when it was made.
    last: Option<(Instant, Desired)>,
    /// [`SAFETY_RESCAN`] (tests shorten it).
    rescan_every: Duration,
}

/// Lists a directory: the names of its entries that are not directories.
pub type ListDir = Box<dyn Fn(&Path) -> std::io::Result<Vec<PathBuf>> + Send>;

/// The real listing: every entry that is not a directory (whether it is a regular file is
/// checked when it is opened).
fn list_dir(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            names.push(e.path());
        }
    }
    Ok(names)
}

impl ManifestWatcher {
    /// A watcher for `dir`; pods get `-<node_name>` appended when one is given.
    pub fn new(dir: &Path, node_name: Option<String>) -> Self {
        ManifestWatcher {
            dir: dir.to_path_buf(),
            node_name,
            watch: DirWatch::new(dir, "manifest directory"),
            cache: HashMap::new(),
            list: Box::new(list_dir),
            last: None,
            rescan_every: SAFETY_RESCAN,
        }
    }

    /// The same watcher listing the directory with `list` (tests inject failures).
    pub fn with_lister(dir: &Path, node_name: Option<String>, list: ListDir) -> Self {
        ManifestWatcher {
            list,
            ..Self::new(dir, node_name)
        }
    }

    /// Waits for a change in the directory (never returns without inotify).
    pub async fn changed(&mut self) {
        self.watch.changed().await;
    }

    /// Whether inotify watches the directory: a change would wake [`ManifestWatcher::changed`].
    pub fn watching(&self) -> bool {
        self.watch.watching()
    }

    /// What the directory holds: every `.yaml`, `.yml` and `.json` file that is not hidden.
    /// Read again unless inotify saw no change since the last reading (see the module docs).
    /// What cannot be listed or read keeps its previous result.
    pub fn scan(&mut self) -> Desired {
        self.watch.ensure();
        let changes = self.watch.take_changes();
        let now = Instant::now();
        match self.last.take() {
            Some((at, last))
                if !changes && now.saturating_duration_since(at) < self.rescan_every =>
            {
                let desired = last.clone();
                self.last = Some((at, last));
                return desired;
            }
            _ => {}
        }
        let desired = self.read();
        if desired.errors.is_empty() {
            self.last = Some((now, desired.clone()));
        }
        desired
    }

    /// Reads the directory.
    fn read(&mut self) -> Desired {
        let mut desired = Desired::default();
        let mut names: Vec<PathBuf> = match (self.list)(&self.dir) {
            Ok(names) => names
                .into_iter()
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(spec::is_manifest_file)
                })
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                warn!(dir = %self.dir.display(), "cannot list the manifest directory, keeping the pods it had: {e}");
                desired.errors.push(ManifestErrorStatus {
                    manifest: self.dir.display().to_string(),
                    message: format!(
                        "cannot list: {e}; the pods it had keep running until it can be read again"
                    ),
                });
                // The manifests read last time, as they were.
                let mut known: Vec<(&PathBuf, _)> = self.cache.iter().collect();
                known.sort_by(|a, b| a.0.cmp(b.0));
                let mut by_name = BTreeMap::new();
                for (path, (_, parsed)) in known {
                    add(&mut desired, &mut by_name, path, parsed);
                }
                return desired;
            }
        };
        names.sort();
        let fs = Fs::real();
        let mut cache = HashMap::new();
        let mut by_name: BTreeMap<String, PathBuf> = BTreeMap::new();
        for path in names {
            let bytes = match fs.read_regular_if_exists(&path, MAX_MANIFEST_SIZE) {
                Ok(Some(b)) => b,
                Ok(None) => continue,
                Err(e) => {
                    let kept = self.cache.remove(&path);
                    let note = if kept.as_ref().is_some_and(|(_, p)| p.is_ok()) {
                        "; its pod keeps running as it was read before"
                    } else {
                        ""
                    };
                    desired.errors.push(ManifestErrorStatus {
                        manifest: path.display().to_string(),
                        message: format!("{e:#}{note}"),
                    });
                    if let Some((old, Ok(pod))) = kept {
                        add(&mut desired, &mut by_name, &path, &Ok(pod.clone()));
                        cache.insert(path, (old, Ok(pod)));
                    }
                    continue;
                }
            };
            let parsed = match self.cache.remove(&path) {
                Some((old, parsed)) if old == bytes => parsed,
                _ => spec::parse_manifest(&path, &bytes, self.node_name.as_deref())
                    .map_err(|e| e.to_string()),
            };
            add(&mut desired, &mut by_name, &path, &parsed);
            cache.insert(path, (bytes, parsed));
        }
        self.cache = cache;
        desired
    }
}

/// Adds one manifest's result to `desired`; a second pod of the same name (`by_name`: the
/// names so far, by the manifest that defined them) is an error.
fn add(
    desired: &mut Desired,
    by_name: &mut BTreeMap<String, PathBuf>,
    path: &Path,
    parsed: &Result<StaticPod, String>,
) {
    match parsed {
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
                by_name.insert(pod.full_name(), path.to_path_buf());
                desired.pods.insert(pod.uid.clone(), pod.clone());
            }
        }
        Err(e) => desired.errors.push(ManifestErrorStatus {
            manifest: path.display().to_string(),
            message: e.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: default}\nspec:\n  hostNetwork: true\n  containers:\n  - {name: c, image: k8s.gcr.io/kube-scheduler:v1.20.2}\n";

    // A runtime only for the inotify registration.
    #[tokio::test]
    async fn a_listing_error_keeps_the_pods_and_a_missing_dir_empties_them() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("manifests");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("web.yaml"), POD).unwrap();
        let fail: Arc<Mutex<Option<i32>>> = Arc::default();
        let f = fail.clone();
        let mut w = ManifestWatcher::with_lister(
            &dir,
            None,
            Box::new(move |p| match *f.lock().unwrap() {
                Some(errno) => Err(std::io::Error::from_raw_os_error(errno)),
                None => list_dir(p),
            }),
        );
        // Errors injected into the listing, not seen by inotify: every pass reads.
        w.rescan_every = Duration::ZERO;
        let first = w.scan();
        assert_eq!(first.pods.len(), 1, "{:?}", first.errors);
        for errno in [libc::EMFILE, libc::EIO, libc::EACCES] {
            *fail.lock().unwrap() = Some(errno);
            let d = w.scan();
            assert_eq!(
                d.pods.keys().collect::<Vec<_>>(),
                first.pods.keys().collect::<Vec<_>>()
            );
            assert!(
                d.errors[0].message.contains("cannot list"),
                "{:?}",
                d.errors
            );
        }
        *fail.lock().unwrap() = None;
        assert_eq!(w.scan().pods.len(), 1);
        // A directory that became a file: not listable, the pods stay.
        std::fs::rename(&dir, d.path().join("moved")).unwrap();
        std::fs::write(&dir, "not a directory").unwrap();
        let kept = w.scan();
        assert_eq!(kept.pods.len(), 1);
        assert!(
            kept.errors[0].message.contains("cannot list"),
            "{:?}",
            kept.errors
        );
        // No directory at all: no pods wanted.
        std::fs::remove_file(&dir).unwrap();
        assert!(w.scan().pods.is_empty());
    }

    #[tokio::test]
    async fn an_unchanged_directory_is_read_again_only_after_a_change_or_the_safety_rescan() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().to_path_buf();
        std::fs::write(dir.join("web.yaml"), POD).unwrap();
        let listed = Arc::new(AtomicUsize::new(0));
        let l = listed.clone();
        let mut w = ManifestWatcher::with_lister(
            &dir,
            None,
            Box::new(move |p| {
                l.fetch_add(1, Ordering::SeqCst);
                list_dir(p)
            }),
        );
        let reads = || listed.load(Ordering::SeqCst);
        let images = |d: &Desired| -> Vec<String> {
            d.pods
                .values()
                .flat_map(|p| p.containers.iter().map(|c| c.image.clone()))
                .collect()
        };
        let first = w.scan();
        assert_eq!(first.pods.len(), 1);
        assert_eq!(reads(), 1);
        // Nothing changed: the pods read last, without reading.
        for _ in 0..3 {
            let again = w.scan();
            assert_eq!(again.pods, first.pods);
        }
        assert_eq!(reads(), 1);
        // A manifest rewritten in place, one added, one removed: each is read at the next pass.
        std::fs::write(dir.join("web.yaml"), POD.replace("v1.20.2", "v1.20.3")).unwrap();
        let edited = w.scan();
        assert_eq!(reads(), 2);
        assert_eq!(images(&edited), ["k8s.gcr.io/kube-scheduler:v1.20.3"]);
        std::fs::write(dir.join("db.yaml"), POD.replace("name: web", "name: db")).unwrap();
        assert_eq!(w.scan().pods.len(), 2);
        assert_eq!(reads(), 3);
        std::fs::remove_file(dir.join("db.yaml")).unwrap();
        assert_eq!(w.scan().pods.len(), 1);
        assert_eq!(reads(), 4);
        w.scan();
        assert_eq!(reads(), 4);
        // A manifest with an error: read at every pass, until it is mended.
        std::fs::write(dir.join("bad.yaml"), "kind: Pod\nspec: [").unwrap();
        assert_eq!(w.scan().errors.len(), 1);
        assert_eq!(w.scan().errors.len(), 1);
        assert_eq!(reads(), 6);
        std::fs::remove_file(dir.join("bad.yaml")).unwrap();
        assert!(w.scan().errors.is_empty());
        w.scan();
        assert_eq!(reads(), 7);
        // The safety rescan reads it though nothing was seen.
        w.rescan_every = Duration::ZERO;
        w.scan();
        assert_eq!(reads(), 8);
    }

    #[tokio::test]
    async fn a_file_watch_wakes_on_writes_only_and_follows_a_rotation() {
        use std::io::Write;
        use std::time::Duration;
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("agent.log");
        let append = |p: &Path, line: &str| {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(p)
                .unwrap();
            f.write_all(line.as_bytes()).unwrap();
        };
        // Not there yet: nothing is watched, only the fallback wakes.
        let mut w = DirWatch::new(&log, "log");
        let t = std::time::Instant::now();
        w.changed_or_after(Duration::from_millis(100)).await;
        assert!(t.elapsed() >= Duration::from_millis(100));
        append(&log, "first\n");
        w.ensure();
        // Idle: no wake.
        let idle = tokio::time::timeout(Duration::from_millis(300), w.changed()).await;
        assert!(idle.is_err(), "woken without a write");
        // A write wakes it.
        append(&log, "a line\n");
        tokio::time::timeout(Duration::from_secs(5), w.changed())
            .await
            .expect("woken by a write");
        // Rotated (renamed away, a new file in its place): the rename wakes it, and once armed
        // again a write to the new file does too.
        std::fs::rename(&log, d.path().join("agent.log.1")).unwrap();
        append(&log, "");
        tokio::time::timeout(Duration::from_secs(5), w.changed())
            .await
            .expect("woken by the rename");
        w.ensure();
        let idle = tokio::time::timeout(Duration::from_millis(300), w.changed()).await;
        assert!(idle.is_err(), "woken without a write");
        append(&log, "after the rotation\n");
        tokio::time::timeout(Duration::from_secs(5), w.changed())
            .await
            .expect("woken by a write to the new file");
    }

    #[tokio::test]
    async fn a_watch_on_several_directories_follows_its_set_and_each_directory() {
        use std::time::Duration;
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        std::fs::create_dir(&a).unwrap();
        async fn wakes(w: &mut DirWatch) -> bool {
            tokio::time::timeout(Duration::from_millis(300), w.changed())
                .await
                .is_ok()
        }
        let mut w = DirWatch::new_many(&[a.clone(), b.clone()], "dirs");
        assert!(!w.watching(), "b does not exist yet");
        std::fs::create_dir(&b).unwrap();
        w.ensure();
        assert!(w.watching());
        assert!(w.take_changes(), "armed after a time unwatched");
        assert!(!w.take_changes());
        std::fs::write(b.join("f"), "1").unwrap();
        assert!(wakes(&mut w).await, "a write in the second directory");
        w.take_changes();
        // Only a is named now: b's writes no longer wake it, a's still do.
        w.set_paths(std::slice::from_ref(&a));
        // The removed watch's own end (IN_IGNORED) is no change either.
        assert!(w.watching());
        std::fs::write(b.join("f"), "2").unwrap();
        assert!(!wakes(&mut w).await, "woken by a directory no longer named");
        std::fs::write(a.join("f"), "1").unwrap();
        assert!(wakes(&mut w).await);
        // A directory replaced: its watch ends, and is armed again on the new one.
        std::fs::remove_dir_all(&a).unwrap();
        assert!(wakes(&mut w).await);
        w.take_changes();
        assert!(!w.watching());
        std::fs::create_dir(&a).unwrap();
        w.ensure();
        assert!(w.watching());
        w.take_changes();
        std::fs::write(a.join("g"), "1").unwrap();
        assert!(wakes(&mut w).await, "a write in the new directory");
        w.take_changes();
        // A directory moved away: its watch is dropped, not carried along with it.
        let old = d.path().join("a.old");
        std::fs::rename(&a, &old).unwrap();
        assert!(wakes(&mut w).await, "the move");
        w.take_changes();
        assert!(!w.watching());
        std::fs::create_dir(&a).unwrap();
        w.ensure();
        w.take_changes();
        std::fs::write(old.join("h"), "1").unwrap();
        assert!(!wakes(&mut w).await, "woken by the moved-away directory");
        std::fs::write(a.join("h"), "1").unwrap();
        assert!(
            wakes(&mut w).await,
            "a write in the directory now at the path"
        );
    }

    #[tokio::test]
    async fn a_manifest_that_cannot_be_read_keeps_its_pod() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("web.yaml"), POD).unwrap();
        let mut w = ManifestWatcher::new(d.path(), None);
        assert_eq!(w.scan().pods.len(), 1);
        // Replaced by something that is not a regular file (as a read error would be).
        std::fs::remove_file(d.path().join("web.yaml")).unwrap();
        std::fs::create_dir(d.path().join("x")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", d.path().join("web.yaml")).unwrap();
        let kept = w.scan();
        assert_eq!(kept.pods.len(), 1);
        assert!(
            kept.errors[0].message.contains("not a regular file")
                && kept.errors[0].message.contains("keeps running"),
            "{:?}",
            kept.errors
        );
    }
}
