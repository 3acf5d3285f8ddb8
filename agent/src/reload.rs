//! Restarts exactly the containers whose files changed: a certificate, key or kubeconfig
//! under `/etc/kubernetes` (or kube-proxy's `/var/lib/kube-proxy`) that a container names on
//! its command line (`--tls-cert-file=/etc/kubernetes/pki/apiserver.crt`,
//! `--kubeconfig=...scheduler.conf`), or that a configuration file it names there names in
//! turn (kube-proxy's `--config=/var/lib/kube-proxy/config.conf` and its
//! `clientConnection.kubeconfig`), and whose content changed after the container started (`kubeboot certs renew`, the
//! agent's own renewal in [`crate::cert_renewal`]). kubeadm leaves that restart to the user
//! ("You must restart the kube-apiserver, ..."); the kubelet never does it for static pods.
//!
//! - Which files: every word of the command, args and literal env values, the value after
//!   `=` of a `--flag=value`, split on commas, that is a normalized absolute path inside a
//!   watched directory (`/etc/kubernetes`, `/var/lib/kube-proxy`) but not in the manifest
//!   directory (a manifest change is a new pod already), and a regular file when the container
//!   starts; and, one level deep, the paths inside the watched directories that such a file
//!   names when it is a configuration file (`.conf`, `.yaml`, `.yml`, `.json`). So the
//!   kubelet's self-rotated `/var/lib/kubelet/pki` never triggers anything, and a file that
//!   appears later (the kubelet writing its own `kubelet.conf` after TLS bootstrap) does not
//!   either.
//! - When: the baseline is the files' content just before each start ([`FileWatch::baseline`]).
//!   A container adopted after an agent restart takes the content it finds, but a file
//!   modified after the container started counts as changed ([`FileWatch::adopted`]): it was
//!   renewed while no agent watched.
//! - Cheaply: the supervisor calls [`FileWatch::check`] on every wake, at most once a second,
//!   and watches the directories of the files ([`FileWatch::watched_dirs`]) with inotify, so a
//!   write or rename there wakes it; its periodic pass (20 s while every watch is armed)
//!   catches what inotify cannot see, such as a change behind a symlink. A check is one `stat`
//!   per file, compared as (dev, inode, size, mtime) with what was seen; only when that changed
//!   is the file read and hashed (a touched file whose content is the same restarts nothing).
//! - Settled: a renewal writes the key and then the certificate, two renames; restarting
//!   between them would start the component with a new key and an old certificate. A change is
//!   acted on only when the stamps are the same in two checks in a row ([`SETTLE`] apart), so
//!   a set of files being rewritten is restarted once, after the last write.
//!
//! Observe ([`Stamp::of`]) → decide ([`decide`], pure) → act (the supervisor sends
//! [`crate::pod::lifecycle::Event::Restart`]) → say (the log, and the container's
//! `file_restarts` in `kubeboot agent status`).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};
use tracing::{debug, warn};

use crate::host::fs::Fs;
use crate::pod::spec::{ContainerSpec, StaticPod};

/// How long a changed file's stamp must stay the same before the container is restarted.
pub const SETTLE: Duration = Duration::from_secs(1);

/// The least time between two checks, however often the supervisor's loop wakes.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// A file larger than this is not a certificate, key or kubeconfig; it is not hashed (its
/// stamp alone decides).
const MAX_HASHED: u64 = 4 * 1024 * 1024;

/// A file modified this long after its container started counts as changed when an adopted
/// container's baseline is taken (process start times have a granularity of a clock tick).
const ADOPT_MARGIN: Duration = Duration::from_secs(2);

/// The files under `dirs` (but not under `exclude`) that a container names on its command
/// line or in its environment, sorted, each once. Pure.
pub fn container_files(spec: &ContainerSpec, dirs: &[PathBuf], exclude: &Path) -> Vec<PathBuf> {
    let words = spec
        .command
        .iter()
        .chain(&spec.args)
        .map(|w| match w.split_once('=') {
            Some((flag, value)) if flag.starts_with('-') => value,
            _ => w.as_str(),
        })
        .chain(spec.env.iter().map(|(_, v)| v.as_str()));
    let mut files: Vec<PathBuf> = words
        .flat_map(|w| w.split(','))
        .filter_map(|w| watched_path(w, dirs, exclude))
        .collect();
    files.sort();
    files.dedup();
    files
}

/// `word` as a path inside one of `dirs` (not one of them, not under `exclude`).
fn watched_path(word: &str, dirs: &[PathBuf], exclude: &Path) -> Option<PathBuf> {
    let p = Path::new(word.trim());
    let inside = components::layout::is_normalized_absolute(p)
        && dirs.iter().any(|d| p.starts_with(d) && p != d)
        && !p.starts_with(exclude);
    inside.then(|| p.to_path_buf())
}

/// Whether a file is a configuration file whose text may name further files.
fn is_config_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["conf", "yaml", "yml", "json"].contains(&e))
}

/// The paths inside `dirs` that a configuration file's text names (YAML or JSON values such
/// as `kubeconfig: /var/lib/kube-proxy/kubeconfig.conf`), sorted, each once. Pure.
pub fn paths_in_text(text: &str, dirs: &[PathBuf], exclude: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = text
        .split(|c: char| c.is_whitespace() || "\"',{}[]".contains(c))
        .filter_map(|w| watched_path(w, dirs, exclude))
        .collect();
    found.sort();
    found.dedup();
    found
}

/// The pods' containers that use any of `files` (as [`container_files`] finds them):
/// `(pod name, container name, the files it uses among them)`, in pod order. Pure.
pub fn users_of(
    pods: &[StaticPod],
    files: &[PathBuf],
    dir: &Path,
    exclude: &Path,
) -> Vec<(String, String, Vec<PathBuf>)> {
    let mut out = Vec::new();
    let dirs = [dir.to_path_buf()];
    for pod in pods {
        for c in &pod.containers {
            let used: Vec<PathBuf> = container_files(c, &dirs, exclude)
                .into_iter()
                .filter(|f| files.contains(f))
                .collect();
            if !used.is_empty() {
                out.push((pod.name.clone(), c.name.clone(), used));
            }
        }
    }
    out
}

/// What identifies a file's content cheaply: a rename, a write or a truncation changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Device.
    pub dev: u64,
    /// Inode (a file renamed into place is a new one).
    pub ino: u64,
    /// Size.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
}

impl Stamp {
    /// The stamp of a regular file, None when it is missing or not a regular file.
    pub fn of(path: &Path) -> Option<Stamp> {
        let m = std::fs::metadata(path).ok()?;
        m.is_file().then(|| Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        })
    }

    fn modified(&self) -> SystemTime {
        let ns = u64::try_from(self.mtime_ns.max(0)).unwrap_or(u64::MAX);
        SystemTime::UNIX_EPOCH + Duration::from_nanos(ns)
    }
}

/// One file of a container: as it was when the container started, and as last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    /// The file.
    pub path: PathBuf,
    /// Its content's hash when the container started.
    pub hash: [u8; 32],
    /// Its stamp when last found unchanged.
    pub stamp: Stamp,
    /// Known to have changed since the start (found so at adoption).
    pub changed: bool,
}

/// What to do about one container's files after a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every stamp is as recorded: nothing to do.
    Same,
    /// Stamps differ from the previous check's: wait for them to settle.
    Settling,
    /// Stamps differ from the recorded ones and are settled: hash the files at these indexes.
    Inspect(Vec<usize>),
}

/// The decision for one container: `current` are this check's stamps (None: missing),
/// `previous` the last check's when they differed from the recorded ones. Pure.
pub fn decide(
    files: &[Watched],
    previous: Option<&[Option<Stamp>]>,
    current: &[Option<Stamp>],
) -> Verdict {
    // A missing file is not a change to act on: starting without it would fail; it counts
    // once it is back.
    let differing: Vec<usize> = files
        .iter()
        .zip(current)
        .enumerate()
        .filter(|(_, (w, now))| w.changed || now.is_some_and(|s| s != w.stamp))
        .map(|(i, _)| i)
        .collect();
    if differing.is_empty() {
        return Verdict::Same;
    }
    if previous != Some(current) {
        return Verdict::Settling;
    }
    Verdict::Inspect(differing)
}

/// A container whose files changed: restart it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// Its pod's UID.
    pub uid: String,
    /// Its pod's name, for the log.
    pub pod: String,
    /// The container.
    pub container: String,
    /// The files whose content changed.
    pub changed: Vec<PathBuf>,
}

impl Due {
    /// `a, b changed`: the reason the container is restarted for.
    pub fn reason(&self) -> String {
        let files: Vec<String> = self
            .changed
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        format!("{} changed", files.join(", "))
    }
}

#[derive(Debug)]
struct Entry {
    pod: String,
    files: Vec<Watched>,
    /// The previous check's stamps, while they differ from the recorded ones.
    previous: Option<Vec<Option<Stamp>>>,
    /// A restart was asked for: nothing more until the next baseline.
    restarting: bool,
}

/// The files of every container the agent runs, checked for changes (see the module docs).
#[derive(Debug)]
pub(crate) struct FileWatch {
    /// The directories whose files count (`/etc/kubernetes`, `/var/lib/kube-proxy`); none
    /// watches nothing.
    dirs: Vec<PathBuf>,
    /// The manifest directory, never watched.
    exclude: PathBuf,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: BTreeMap<(String, String), Entry>,
    last_check: Option<Instant>,
}

fn read(path: &Path) -> Option<Vec<u8>> {
    match Fs::real().read_regular_if_exists(path, MAX_HASHED) {
        Ok(bytes) => bytes,
        Err(e) => {
            warn!(file = %path.display(), "cannot read a file a container uses: {e:#}");
            None
        }
    }
}

fn hash(path: &Path) -> Option<[u8; 32]> {
    read(path).map(|bytes| Sha256::digest(&bytes).into())
}

impl FileWatch {
    pub(crate) fn new(dirs: Vec<PathBuf>, exclude: PathBuf) -> Self {
        FileWatch {
            dirs,
            exclude,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock only means a task panicked while holding it; the map is whole.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The container's files as they are now (regular files only), `changed` when modified
    /// after `started_after`.
    fn observe(&self, spec: &ContainerSpec, started_after: Option<SystemTime>) -> Vec<Watched> {
        let named = container_files(spec, &self.dirs, &self.exclude);
        let mut out: Vec<Watched> = Vec::new();
        let watch = |path: PathBuf, out: &mut Vec<Watched>| -> Option<Vec<u8>> {
            if out.iter().any(|w| w.path == path) {
                return None;
            }
            let stamp = Stamp::of(&path)?;
            let bytes = read(&path)?;
            let changed = started_after.is_some_and(|t| stamp.modified() > t + ADOPT_MARGIN);
            out.push(Watched {
                path,
                hash: Sha256::digest(&bytes).into(),
                stamp,
                changed,
            });
            Some(bytes)
        };
        for path in named {
            let config = is_config_file(&path);
            let Some(bytes) = watch(path, &mut out) else {
                continue;
            };
            if !config {
                continue;
            }
            // One level deep: the files a configuration file names (kube-proxy's kubeconfig).
            let text = String::from_utf8_lossy(&bytes);
            for inner in paths_in_text(&text, &self.dirs, &self.exclude) {
                watch(inner, &mut out);
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out
    }

    fn record(&self, pod: &StaticPod, spec: &ContainerSpec, files: Vec<Watched>) {
        let key = (pod.uid.clone(), spec.name.clone());
        let mut inner = self.lock();
        if files.is_empty() {
            inner.entries.remove(&key);
            return;
        }
        debug!(pod = %pod.full_name(), container = %spec.name, files = files.len(), "watching the files the container uses");
        inner.entries.insert(
            key,
            Entry {
                pod: pod.full_name(),
                files,
                previous: None,
                restarting: false,
            },
        );
    }

    /// Just before the container starts: what its files hold now is what it runs with.
    pub(crate) fn baseline(&self, pod: &StaticPod, spec: &ContainerSpec) {
        let files = self.observe(spec, None);
        self.record(pod, spec, files);
    }

    /// A container found running (agent restart) that started at `started`: its files as
    /// they are now, those modified after it started marked changed.
    pub(crate) fn adopted(&self, pod: &StaticPod, spec: &ContainerSpec, started: SystemTime) {
        let files = self.observe(spec, Some(started));
        self.record(pod, spec, files);
    }

    /// The container is gone.
    pub(crate) fn forget(&self, uid: &str, container: &str) {
        self.lock()
            .entries
            .remove(&(uid.to_string(), container.to_string()));
    }

    /// The directories that hold the files watched now, sorted, each once: a change in one of
    /// them is the time to [`FileWatch::check`] (the supervisor watches them with inotify).
    pub(crate) fn watched_dirs(&self) -> Vec<PathBuf> {
        let inner = self.lock();
        let mut dirs: Vec<PathBuf> = inner
            .entries
            .values()
            .flat_map(|e| &e.files)
            .filter_map(|w| w.path.parent().map(Path::to_path_buf))
            .collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// Checks every container's files (at most once per [`MIN_INTERVAL`]); returns the
    /// containers to restart, and when to check again: a change is settling, or this call
    /// came too soon after the last check to make one (the change that woke the caller is
    /// looked at then).
    pub(crate) fn check(&self, now: Instant) -> (Vec<Due>, Option<Instant>) {
        let mut inner = self.lock();
        if inner.entries.is_empty() {
            return (Vec::new(), None);
        }
        if let Some(t) = inner
            .last_check
            .filter(|t| now.saturating_duration_since(*t) < MIN_INTERVAL)
        {
            return (Vec::new(), Some(t + MIN_INTERVAL));
        }
        inner.last_check = Some(now);
        let mut due = Vec::new();
        let mut again = None;
        for ((uid, container), e) in inner.entries.iter_mut() {
            if e.restarting {
                continue;
            }
            let current: Vec<Option<Stamp>> = e.files.iter().map(|w| Stamp::of(&w.path)).collect();
            match decide(&e.files, e.previous.as_deref(), &current) {
                Verdict::Same => e.previous = None,
                Verdict::Settling => {
                    e.previous = Some(current);
                    again = Some(now + SETTLE);
                }
                Verdict::Inspect(indexes) => {
                    e.previous = None;
                    let mut changed = Vec::new();
                    for i in indexes {
                        let (w, stamp) = (&mut e.files[i], current[i]);
                        let Some(stamp) = stamp else {
                            continue;
                        };
                        // Read after the stamp: a write in between shows as another change.
                        let Some(h) = hash(&w.path) else {
                            continue;
                        };
                        if w.changed || h != w.hash {
                            changed.push(w.path.clone());
                        }
                        w.stamp = stamp;
                    }
                    if !changed.is_empty() {
                        e.restarting = true;
                        due.push(Due {
                            uid: uid.clone(),
                            pod: e.pod.clone(),
                            container: container.clone(),
                            changed,
                        });
                    }
                }
            }
        }
        (due, again)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(args: &[&str], env: &[(&str, &str)]) -> ContainerSpec {
        ContainerSpec {
            name: "c".into(),
            image: "k8s.gcr.io/kube-apiserver:v1.20.2".into(),
            command: vec!["kube-apiserver".into()],
            args: args.iter().map(|a| a.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            working_dir: None,
            startup: None,
            liveness: None,
            readiness: None,
            config_error: None,
            hash: String::new(),
        }
    }

    const K: &str = "/etc/kubernetes";
    const M: &str = "/etc/kubernetes/manifests";

    /// A hostNetwork pod `name` of one container `c`.
    fn static_pod(uid: &str, name: &str, c: ContainerSpec) -> StaticPod {
        StaticPod {
            uid: uid.into(),
            namespace: "kube-system".into(),
            name: name.into(),
            manifest: PathBuf::from(format!("{M}/{name}.yaml")),
            host_network: true,
            restart_policy: crate::pod::spec::RestartPolicy::Always,
            grace: Duration::from_secs(30),
            containers: vec![c],
            warnings: vec![],
        }
    }

    #[test]
    fn files_are_the_paths_under_the_directory_on_the_command_line() {
        let s = spec(
            &[
                "--tls-cert-file=/etc/kubernetes/pki/apiserver.crt",
                "--tls-private-key-file=/etc/kubernetes/pki/apiserver.key",
                "--client-ca-file=/etc/kubernetes/pki/ca.crt",
                "--etcd-cafile=/etc/kubernetes/pki/etcd/ca.crt",
                "--service-account-key-file=/etc/kubernetes/pki/sa.pub,/etc/kubernetes/pki/sa2.pub",
                "--kubeconfig",
                "/etc/kubernetes/scheduler.conf",
                // Not watched: outside, the directory itself, the manifests, not normalized,
                // relative, the kubelet's own rotated certificates.
                "--cert-dir=/var/lib/kubelet/pki",
                "--config-dir=/etc/kubernetes",
                "--pod-manifest-path=/etc/kubernetes/manifests/x.yaml",
                "--x=/etc/kubernetes/../shadow",
                "--y=etc/kubernetes/pki/a.crt",
                "--secure-port=6443",
                // The same file twice is listed once.
                "--requestheader-client-ca-file=/etc/kubernetes/pki/ca.crt",
            ],
            &[("KUBECONFIG", "/etc/kubernetes/admin.conf")],
        );
        let files = container_files(&s, &[PathBuf::from(K)], Path::new(M));
        let want: Vec<PathBuf> = [
            "/etc/kubernetes/admin.conf",
            "/etc/kubernetes/pki/apiserver.crt",
            "/etc/kubernetes/pki/apiserver.key",
            "/etc/kubernetes/pki/ca.crt",
            "/etc/kubernetes/pki/etcd/ca.crt",
            "/etc/kubernetes/pki/sa.pub",
            "/etc/kubernetes/pki/sa2.pub",
            "/etc/kubernetes/scheduler.conf",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(files, want);
    }

    #[test]
    fn users_are_the_containers_naming_a_changed_file() {
        let pod = |name: &str, args: &[&str]| static_pod(name, name, spec(args, &[]));
        let pods = [
            pod(
                "kube-apiserver-n1",
                &[
                    "--tls-cert-file=/etc/kubernetes/pki/apiserver.crt",
                    "--client-ca-file=/etc/kubernetes/pki/ca.crt",
                ],
            ),
            pod(
                "kube-scheduler-n1",
                &["--kubeconfig=/etc/kubernetes/scheduler.conf"],
            ),
        ];
        let renewed = [
            PathBuf::from("/etc/kubernetes/pki/apiserver.crt"),
            PathBuf::from("/etc/kubernetes/pki/apiserver.key"),
        ];
        let users = users_of(&pods, &renewed, Path::new(K), Path::new(M));
        assert_eq!(
            users,
            [(
                "kube-apiserver-n1".to_string(),
                "c".to_string(),
                vec![PathBuf::from("/etc/kubernetes/pki/apiserver.crt")]
            )]
        );
        assert!(
            users_of(
                &pods,
                &[PathBuf::from("/etc/kubernetes/admin.conf")],
                Path::new(K),
                Path::new(M)
            )
            .is_empty()
        );
    }

    #[test]
    fn a_config_file_names_the_files_it_uses() {
        let dirs = [PathBuf::from(K), PathBuf::from("/var/lib/kube-proxy")];
        let conf = "apiVersion: kubeproxy.config.k8s.io/v1alpha1\n\
                    clientConnection:\n  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf\n\
                    other: \"/etc/kubernetes/pki/ca.crt\"\n\
                    outside: /var/lib/kubelet/pki/kubelet-client-current.pem\n\
                    manifest: /etc/kubernetes/manifests/etcd.yaml\n";
        assert_eq!(
            paths_in_text(conf, &dirs, Path::new(M)),
            [
                PathBuf::from("/etc/kubernetes/pki/ca.crt"),
                PathBuf::from("/var/lib/kube-proxy/kubeconfig.conf")
            ]
        );
        assert!(is_config_file(Path::new("/var/lib/kube-proxy/config.conf")));
        assert!(!is_config_file(Path::new("/etc/kubernetes/pki/ca.crt")));
    }

    /// kube-proxy names its configuration, which names its kubeconfig: a renewed kubeconfig
    /// restarts it.
    #[test]
    fn a_file_named_by_a_named_config_file_is_watched() {
        let d = tempfile::tempdir().unwrap();
        let kp = d.path().join("var/lib/kube-proxy");
        std::fs::create_dir_all(&kp).unwrap();
        let (conf, kubeconfig) = (kp.join("config.conf"), kp.join("kubeconfig.conf"));
        std::fs::write(
            &conf,
            format!(
                "clientConnection:\n  kubeconfig: {}\n",
                kubeconfig.display()
            ),
        )
        .unwrap();
        std::fs::write(&kubeconfig, "credential 1").unwrap();
        let watch = FileWatch::new(vec![kp.clone()], d.path().join("manifests"));
        let s = spec(&[&format!("--config={}", conf.display())], &[]);
        let pod = static_pod("u1", "kube-proxy-n1", s.clone());
        watch.baseline(&pod, &s);
        let tmp = kp.join(".kubeconfig.tmp");
        std::fs::write(&tmp, "credential 2").unwrap();
        std::fs::rename(&tmp, &kubeconfig).unwrap();
        let t0 = Instant::now();
        assert!(watch.check(t0 + MIN_INTERVAL).0.is_empty(), "settling");
        let (due, _) = watch.check(t0 + MIN_INTERVAL * 2);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].changed, [kubeconfig]);
    }

    /// The directories to watch: those of every file watched, the ones a configuration file
    /// names included, each once; none once the containers are gone.
    #[test]
    fn the_directories_of_the_watched_files_are_watched() {
        let d = tempfile::tempdir().unwrap();
        let (k, kp) = (
            d.path().join("etc/kubernetes"),
            d.path().join("var/lib/kube-proxy"),
        );
        std::fs::create_dir_all(k.join("pki/etcd")).unwrap();
        std::fs::create_dir_all(&kp).unwrap();
        let (conf, kubeconfig) = (kp.join("config.conf"), k.join("proxy.conf"));
        std::fs::write(&conf, format!("kubeconfig: {}\n", kubeconfig.display())).unwrap();
        for f in [&kubeconfig, &k.join("pki/a.crt"), &k.join("pki/etcd/b.crt")] {
            std::fs::write(f, "x").unwrap();
        }
        let watch = FileWatch::new(vec![k.clone(), kp.clone()], k.join("manifests"));
        assert!(watch.watched_dirs().is_empty());
        let a = spec(
            &[
                &format!("--cert={}", k.join("pki/a.crt").display()),
                &format!("--etcd-cert={}", k.join("pki/etcd/b.crt").display()),
            ],
            &[],
        );
        let b = spec(&[&format!("--config={}", conf.display())], &[]);
        let (pa, pb) = (
            static_pod("u1", "a-n1", a.clone()),
            static_pod("u2", "b-n1", b.clone()),
        );
        watch.baseline(&pa, &a);
        watch.baseline(&pb, &b);
        assert_eq!(
            watch.watched_dirs(),
            [k.clone(), k.join("pki"), k.join("pki/etcd"), kp]
        );
        watch.forget("u1", "c");
        watch.forget("u2", "c");
        assert!(watch.watched_dirs().is_empty());
    }

    fn stamp(ino: u64, mtime: i128) -> Stamp {
        Stamp {
            dev: 1,
            ino,
            size: 10,
            mtime_ns: mtime,
        }
    }

    fn watched(ino: u64) -> Watched {
        Watched {
            path: PathBuf::from(format!("/f{ino}")),
            hash: [0; 32],
            stamp: stamp(ino, 0),
            changed: false,
        }
    }

    #[test]
    fn a_change_is_inspected_once_it_settled() {
        let files = [watched(1), watched(2)];
        let same = [Some(stamp(1, 0)), Some(stamp(2, 0))];
        assert_eq!(decide(&files, None, &same), Verdict::Same);
        // The key was renamed into place, the certificate not yet.
        let key_only = [Some(stamp(9, 5)), Some(stamp(2, 0))];
        assert_eq!(decide(&files, None, &key_only), Verdict::Settling);
        let both = [Some(stamp(9, 5)), Some(stamp(8, 6))];
        assert_eq!(decide(&files, Some(&key_only), &both), Verdict::Settling);
        assert_eq!(
            decide(&files, Some(&both), &both),
            Verdict::Inspect(vec![0, 1])
        );
    }

    #[test]
    fn a_missing_file_is_no_change_and_an_adopted_change_is_one() {
        let files = [watched(1), watched(2)];
        let gone = [None, Some(stamp(2, 0))];
        assert_eq!(decide(&files, None, &gone), Verdict::Same);
        let mut adopted = [watched(1), watched(2)];
        adopted[1].changed = true;
        let same = [Some(stamp(1, 0)), Some(stamp(2, 0))];
        assert_eq!(decide(&adopted, None, &same), Verdict::Settling);
        assert_eq!(
            decide(&adopted, Some(&same), &same),
            Verdict::Inspect(vec![1])
        );
    }

    /// Real files: a rewrite with new content is due once settled; a rewrite with the same
    /// content (a touch, a copy of itself) is not.
    #[test]
    fn only_new_content_is_due() {
        let d = tempfile::tempdir().unwrap();
        let k = d.path().join("etc/kubernetes");
        std::fs::create_dir_all(k.join("pki")).unwrap();
        let crt = k.join("pki/apiserver.crt");
        let other = k.join("pki/ca.crt");
        std::fs::write(&crt, "one").unwrap();
        std::fs::write(&other, "ca").unwrap();
        let watch = FileWatch::new(vec![k.clone()], k.join("manifests"));
        let s = spec(
            &[
                &format!("--tls-cert-file={}", crt.display()),
                &format!("--client-ca-file={}", other.display()),
                &format!("--kubeconfig={}", k.join("absent.conf").display()),
            ],
            &[],
        );
        let pod = static_pod("u1", "kube-apiserver-n1", s.clone());
        watch.baseline(&pod, &s);
        let t = std::cell::Cell::new(Instant::now());
        let tick = || {
            t.set(t.get() + MIN_INTERVAL);
            watch.check(t.get())
        };
        assert_eq!(tick(), (vec![], None));
        // Same content, new inode: settles, is read, and is no change.
        let tmp = k.join("pki/.tmp");
        std::fs::write(&tmp, "one").unwrap();
        std::fs::rename(&tmp, &crt).unwrap();
        assert!(tick().0.is_empty());
        assert!(tick().0.is_empty());
        assert_eq!(tick(), (vec![], None));
        // New content: due after it settled, once.
        std::fs::write(&tmp, "two").unwrap();
        std::fs::rename(&tmp, &crt).unwrap();
        let (due, again) = tick();
        assert!(due.is_empty() && again.is_some());
        let (due, _) = tick();
        assert_eq!(
            due,
            [Due {
                uid: "u1".into(),
                pod: "kube-system/kube-apiserver-n1".into(),
                container: "c".into(),
                changed: vec![crt.clone()],
            }]
        );
        assert_eq!(due[0].reason(), format!("{} changed", crt.display()));
        assert!(tick().0.is_empty(), "asked once until the next start");
        // The restart takes a new baseline: nothing is due any more.
        watch.baseline(&pod, &s);
        assert!(tick().0.is_empty());
        assert!(tick().0.is_empty());
        // A check sooner than the interval does nothing but ask for the one that can be made.
        assert_eq!(watch.check(t.get()), (vec![], Some(t.get() + MIN_INTERVAL)));
        // Adopted: a file modified after the container started is due.
        let long_ago = SystemTime::now() - Duration::from_secs(3600);
        watch.adopted(&pod, &s, long_ago);
        assert!(tick().0.is_empty());
        assert_eq!(tick().0.len(), 1);
        watch.adopted(&pod, &s, SystemTime::now());
        watch.forget("u1", "c");
        assert!(tick().0.is_empty());
        assert!(tick().0.is_empty());
    }
}
