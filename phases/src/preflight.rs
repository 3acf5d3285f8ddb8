//! Preflight machinery shared by `init`, `join` and `reset` (kubeadm: app/preflight/checks.go):
//! each check observes the host and returns findings named as kubeadm names them; reporting
//! honours `--ignore-preflight-errors`.

use std::net::{Ipv6Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use components::Layout;
use k8s_openapi::api::core::v1::Pod;

use crate::out::Out;

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// kubeadm's check name (`Port-6443`, `FileAvailable--etc-kubernetes-manifests-etcd.yaml`).
    pub name: String,
    /// Warnings (never fatal).
    pub warnings: Vec<String>,
    /// The error, fatal unless ignored.
    pub error: Option<String>,
}

/// One preflight check: a name and how to observe.
pub struct Check {
    /// kubeadm's name for it.
    pub name: String,
    observe: Box<dyn Fn() -> Outcome + Send + Sync>,
}

/// A check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// All good.
    Ok,
    /// Worth saying, not fatal.
    Warning(String),
    /// Fatal unless ignored.
    Error(String),
}

/// kubeadm's check-name form of a path: `/etc/kubernetes/manifests/etcd.yaml` ->
/// `-etc-kubernetes-manifests-etcd.yaml` (kubeadm: FileAvailableCheck.Name).
pub fn path_name(path: &Path) -> String {
    path.to_string_lossy().replace('/', "-")
}

impl Check {
    /// A check from a name and an observation.
    pub fn new(
        name: impl Into<String>,
        observe: impl Fn() -> Outcome + Send + Sync + 'static,
    ) -> Self {
        Check {
            name: name.into(),
            observe: Box::new(observe),
        }
    }

    /// This check, except that its error becomes a warning (`<error>; <why>`) when `excuse`
    /// holds: what it found is kubeboot's own, left by an interrupted run it resumes.
    pub fn excused_if(
        self,
        why: String,
        excuse: impl Fn() -> bool + Send + Sync + 'static,
    ) -> Self {
        let Check { name, observe } = self;
        Check::new(name, move || match observe() {
            Outcome::Error(e) if excuse() => Outcome::Warning(format!("{e}; {why}")),
            other => other,
        })
    }

    /// `IsPrivilegedUser`: kubeboot must run as root.
    pub fn privileged_user() -> Self {
        Check::new("IsPrivilegedUser", || match effective_uid() {
            Some(0) => Outcome::Ok,
            _ => Outcome::Error("user is not running as root".into()),
        })
    }

    /// `NumCPU`.
    pub fn num_cpu(min: usize) -> Self {
        Check::new("NumCPU", move || {
            let n = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1);
            if n < min {
                Outcome::Error(format!(
                    "the number of available CPUs {n} is less than the required {min}"
                ))
            } else {
                Outcome::Ok
            }
        })
    }

    /// `Mem`, in MB.
    pub fn mem(min_mb: u64) -> Self {
        Check::new("Mem", move || {
            let mut sys = sysinfo::System::new();
            sys.refresh_memory();
            let mb = sys.total_memory() / 1024 / 1024;
            if mb < min_mb {
                Outcome::Error(format!(
                    "the system RAM ({mb} MB) is less than the minimum {min_mb} MB"
                ))
            } else {
                Outcome::Ok
            }
        })
    }

    /// `Port-<port>`: nothing listens on the port (on any address).
    pub fn port(port: u16) -> Self {
        Check::new(format!("Port-{port}"), move || {
            let any6 = SocketAddr::from((Ipv6Addr::UNSPECIFIED, port));
            let any4 = SocketAddr::from(([0, 0, 0, 0], port));
            match TcpListener::bind(any6).or_else(|_| TcpListener::bind(any4)) {
                Ok(_) => Outcome::Ok,
                Err(_) => Outcome::Error(format!("Port {port} is in use")),
            }
        })
    }

    /// `FileAvailable-<path>`: the file must not exist yet.
    pub fn file_available(path: &Path, layout: &Layout) -> Self {
        let shown = node_view(path, layout);
        let path = path.to_path_buf();
        Check::new(format!("FileAvailable-{}", path_name(&shown)), move || {
            if path.exists() {
                Outcome::Error(format!("{} already exists", shown.display()))
            } else {
                Outcome::Ok
            }
        })
    }

    /// `DirAvailable-<path>`: the directory is missing or empty.
    pub fn dir_available(path: &Path, layout: &Layout) -> Self {
        let shown = node_view(path, layout);
        let path = path.to_path_buf();
        Check::new(format!("DirAvailable-{}", path_name(&shown)), move || {
            let empty = std::fs::read_dir(&path)
                .map(|mut e| e.next().is_none())
                .unwrap_or(true);
            if empty {
                Outcome::Ok
            } else {
                Outcome::Error(format!("{} is not empty", shown.display()))
            }
        })
    }

    /// `FileContent-<path>`: the file holds `want` (kubeadm: FileContentCheck).
    pub fn file_content(path: &Path, want: &'static str) -> Self {
        let path = path.to_path_buf();
        Check::new(format!("FileContent-{}", path_name(&path)), move || {
            match std::fs::read_to_string(&path) {
                Err(_) => Outcome::Error(format!("{} does not exist", path.display())),
                Ok(s) if s.trim() == want => Outcome::Ok,
                Ok(_) => {
                    Outcome::Error(format!("{} contents are not set to {want}", path.display()))
                }
            }
        })
    }

    /// `Swap` (kubeadm: SwapCheck): swap on is a warning here, since the agent does not need
    /// swap off; the kubelet does, and its own check will say so.
    pub fn swap() -> Self {
        Check::new("Swap", || match std::fs::read_to_string("/proc/swaps") {
            Ok(s) if s.lines().count() > 1 => Outcome::Warning(
                "running with swap on is not supported. Please disable swap".into(),
            ),
            _ => Outcome::Ok,
        })
    }

    /// `FileExisting-<exe>` (kubeadm: InPathCheck). The one `$PATH` finds must also be
    /// trusted: kubeboot and its components run it as root, so an untrusted one is an error
    /// even where a missing one is only a warning.
    pub fn in_path(exe: &'static str, mandatory: bool) -> Self {
        Check::new(format!("FileExisting-{exe}"), move || {
            match find_in_path(exe) {
                Ok(Some(_)) => Outcome::Ok,
                Err(untrusted) => Outcome::Error(untrusted.to_string()),
                Ok(None) if mandatory => Outcome::Error(format!("{exe} not found in system path")),
                Ok(None) => Outcome::Warning(format!("{exe} not found in system path")),
            }
        })
    }

    /// `BinDir-<path>`: a directory binaries are looked up in is trusted
    /// ([`agent::host::trust::check_dir`]) whatever it holds: it goes first on the `PATH` of
    /// every component, which runs as root whatever `iptables`, `mount` or `nsenter` it
    /// finds there. The agent refuses to start with one that is not.
    pub fn bin_dir(dir: &Path) -> Self {
        let dir = dir.to_path_buf();
        Check::new(format!("BinDir-{}", path_name(&dir)), move || {
            match agent::host::trust::check_dir(&dir) {
                Ok(()) => Outcome::Ok,
                Err(e) => Outcome::Error(e.to_string()),
            }
        })
    }

    /// `KubebootBinary`: the kubeboot executable, which the agent runs as (and which the
    /// shim of every container is), is trusted; checked before init changes anything, since
    /// starting the agent from it is refused late otherwise.
    pub fn kubeboot_binary(exe: &Path) -> Self {
        let exe = exe.to_path_buf();
        Check::new(
            "KubebootBinary",
            move || match agent::host::trust::check_binary(&exe) {
                Ok(()) => Outcome::Ok,
                Err(e) => Outcome::Error(e.to_string()),
            },
        )
    }
}

fn node_view(path: &Path, layout: &Layout) -> PathBuf {
    match path.strip_prefix(layout.root()) {
        Ok(rel) => Path::new("/").join(rel),
        Err(_) => path.to_path_buf(),
    }
}

fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Finds an executable on `$PATH` (the first hit, checked like every binary kubeboot runs).
///
/// # Errors
/// The first hit is not trusted (a relative `$PATH` entry included).
pub fn find_in_path(exe: &str) -> Result<Option<PathBuf>, agent::host::trust::Untrusted> {
    let Some(path) = std::env::var_os("PATH") else {
        return Ok(None);
    };
    find_in_search_path(exe, &path)
}

/// [`find_in_path`] with `$PATH`'s value given.
fn find_in_search_path(
    exe: &str,
    path: &std::ffi::OsStr,
) -> Result<Option<PathBuf>, agent::host::trust::Untrusted> {
    crate::host::find_binary(exe, &std::env::split_paths(path).collect::<Vec<_>>()).map_err(
        |mut e| {
            // Not a --bin-dir: say where the relative directory came from.
            if e.problem == agent::host::trust::Problem::Relative {
                e.problem = agent::host::trust::Problem::RelativePathEntry;
                e.offending = e.file.parent().map(Path::to_path_buf).unwrap_or_default();
            }
            e
        },
    )
}

/// kubeboot's own checks: every container of the given static pods has its host binary in
/// `bin_dirs`, runnable and of the version its image names (`ComponentBinary-<binary>`).
pub fn binary_checks(pods: &[(String, Pod)], bin_dirs: &[PathBuf]) -> Vec<Check> {
    let mut seen = Vec::new();
    let mut checks = Vec::new();
    for (_, pod) in pods {
        let containers = pod
            .spec
            .as_ref()
            .map(|s| s.containers.clone())
            .unwrap_or_default();
        for c in containers {
            let Some(image) = c.image.clone() else {
                continue;
            };
            let want = match components::image::binary_for_image(&image) {
                Ok(Some(want)) => want,
                Ok(None) => continue,
                Err(e) => {
                    let msg = e.to_string();
                    checks.push(Check::new(
                        format!("ComponentImage-{}", c.name),
                        move || Outcome::Error(msg.clone()),
                    ));
                    continue;
                }
            };
            if seen.contains(&want.binary) {
                continue;
            }
            seen.push(want.binary);
            let dirs = bin_dirs.to_vec();
            checks.push(Check::new(
                format!("ComponentBinary-{}", want.binary),
                move || match check_binary(&image, &want, &dirs) {
                    Ok(_) => Outcome::Ok,
                    Err(e) => Outcome::Error(e),
                },
            ));
        }
    }
    checks
}

/// Finds `want.binary` in `dirs`, checks that it is trusted ([`agent::host::trust`]: it will
/// run as root), runs `--version` and checks it against the image's version.
///
/// # Errors
/// A message naming the binary, what was found and the fix.
pub fn check_binary(
    image: &str,
    want: &components::image::ImageBinary,
    dirs: &[PathBuf],
) -> Result<PathBuf, String> {
    let shown: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    // Before `--version` runs it.
    let found = crate::host::find_binary(want.binary, dirs).map_err(|e| e.to_string())?;
    let Some(path) = found else {
        return Err(format!(
            "{} not found in {}; install it or pass --bin-dir <dir containing {}>",
            want.binary,
            shown.join(", "),
            want.binary
        ));
    };
    let out = run_with_timeout(&path, &["--version"], Duration::from_secs(10))
        .map_err(|e| format!("{} could not be run: {e}", path.display()))?;
    let found = components::Version::find_in(&out).ok_or_else(|| {
        format!(
            "{} --version printed no version: {:?}",
            path.display(),
            out.trim()
        )
    })?;
    if want.policy.accepts(&found) {
        Ok(path)
    } else {
        Err(format!(
            "{} is {found}, but the image {image} needs {}; put a binary of that version first in --bin-dir",
            path.display(),
            want.policy.wanted()
        ))
    }
}

/// Runs `path args`, collecting stdout and stderr, killing it after `timeout`.
pub(crate) fn run_with_timeout(
    path: &Path,
    args: &[&str],
    timeout: Duration,
) -> std::io::Result<String> {
    let mut child = Command::new(path)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if child.try_wait()?.is_some() {
            let out = child.wait_with_output()?;
            let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
            s.push_str(&String::from_utf8_lossy(&out.stderr));
            return Ok(s);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "timed out after 10s",
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs every check, in order.
pub fn run_checks(checks: &[Check]) -> Vec<Finding> {
    // Concurrently: the binaries' `--version` runs are most of preflight's time (about a
    // second of init on a busy two-core node when run one after another). Findings keep the
    // checks' order.
    std::thread::scope(|scope| {
        let running: Vec<_> = checks
            .iter()
            .map(|c| scope.spawn(|| (c.observe)()))
            .collect();
        checks
            .iter()
            .zip(running)
            .map(|(c, r)| {
                let outcome = r
                    .join()
                    .unwrap_or_else(|_| Outcome::Error(format!("the check {} panicked", c.name)));
                let (warnings, error) = match outcome {
                    Outcome::Ok => (vec![], None),
                    Outcome::Warning(w) => (vec![w], None),
                    Outcome::Error(e) => (vec![], Some(e)),
                };
                Finding {
                    name: c.name.clone(),
                    warnings,
                    error,
                }
            })
            .collect()
    })
}

/// True if `name` is ignored by `--ignore-preflight-errors` (case-insensitive, or `all`).
pub fn is_ignored(name: &str, ignore: &[String]) -> bool {
    ignore
        .iter()
        .any(|i| i.eq_ignore_ascii_case("all") || i.eq_ignore_ascii_case(name))
}

/// Prints warnings (and ignored errors, as warnings) and fails on the rest, as kubeadm does.
///
/// # Errors
/// Every error not ignored, one per line.
pub fn report(out: &Out, findings: &[Finding], ignore: &[String]) -> anyhow::Result<()> {
    let mut fatal = Vec::new();
    for f in findings {
        for w in &f.warnings {
            out.line(&format!("\t[WARNING {}]: {w}", f.name));
        }
        if let Some(e) = &f.error {
            if is_ignored(&f.name, ignore) {
                out.line(&format!("\t[WARNING {}]: {e}", f.name));
            } else {
                fatal.push(format!("\t[ERROR {}]: {e}", f.name));
            }
        }
    }
    if fatal.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "[preflight] Some fatal errors occurred:\n{}\n[preflight] If you know what you are doing, you can make a check non-fatal with `--ignore-preflight-errors=...`",
        fatal.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_excused_error_is_a_warning_and_other_outcomes_stay() {
        let failing = || Check::new("Port-6443", || Outcome::Error("Port 6443 is in use".into()));
        let why = "held by the interrupted init's own pods".to_string();
        let excused = failing().excused_if(why.clone(), || true);
        assert_eq!(
            (excused.observe)(),
            Outcome::Warning("Port 6443 is in use; held by the interrupted init's own pods".into())
        );
        assert_eq!(
            (failing().excused_if(why.clone(), || false).observe)(),
            Outcome::Error("Port 6443 is in use".into())
        );
        let ok = Check::new("Swap", || Outcome::Ok).excused_if(why, || panic!("not asked"));
        assert_eq!((ok.observe)(), Outcome::Ok);
    }

    #[test]
    fn a_relative_path_entry_is_named_as_one() {
        let cwd = std::env::current_dir().unwrap();
        let rel = format!("{}bin", "../".repeat(cwd.components().count() - 1));
        let e = find_in_search_path("sh", std::ffi::OsStr::new(&format!("{rel}:/usr/bin")))
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("found through the relative $PATH entry \"{rel}\""))
                && msg.contains("fix: remove that entry from $PATH or make it absolute")
                && !msg.contains("--bin-dir"),
            "{msg}"
        );
        assert_eq!(
            find_in_search_path("sh", std::ffi::OsStr::new("/usr/bin")).unwrap(),
            Some(PathBuf::from("/usr/bin/sh"))
        );
    }

    #[test]
    fn path_names_match_kubeadm() {
        assert_eq!(
            path_name(Path::new("/etc/kubernetes/manifests/kube-apiserver.yaml")),
            "-etc-kubernetes-manifests-kube-apiserver.yaml"
        );
        let c = Check::file_available(
            Path::new("/tmp/n/etc/kubernetes/manifests/etcd.yaml"),
            &Layout::under("/tmp/n"),
        );
        assert_eq!(c.name, "FileAvailable--etc-kubernetes-manifests-etcd.yaml");
    }

    #[test]
    fn port_in_use_is_an_error() {
        let l = TcpListener::bind(("0.0.0.0", 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        let f = run_checks(&[Check::port(port)]);
        assert_eq!(f[0].name, format!("Port-{port}"));
        assert_eq!(
            f[0].error.as_deref(),
            Some(format!("Port {port} is in use").as_str())
        );
    }

    #[test]
    fn dir_available_fails_only_when_not_empty() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::under(dir.path());
        let etcd = dir.path().join("var/lib/etcd");
        assert_eq!(
            run_checks(&[Check::dir_available(&etcd, &layout)])[0].error,
            None
        );
        std::fs::create_dir_all(etcd.join("member")).unwrap();
        let f = run_checks(&[Check::dir_available(&etcd, &layout)]);
        assert_eq!(f[0].name, "DirAvailable--var-lib-etcd");
        assert_eq!(f[0].error.as_deref(), Some("/var/lib/etcd is not empty"));
    }

    #[test]
    fn report_fails_on_errors_unless_ignored() {
        let findings = vec![
            Finding {
                name: "Port-6443".into(),
                warnings: vec![],
                error: Some("Port 6443 is in use".into()),
            },
            Finding {
                name: "Swap".into(),
                warnings: vec!["swap on".into()],
                error: None,
            },
        ];
        let out = Out::capture();
        let err = report(&out, &findings, &[]).unwrap_err().to_string();
        assert!(
            err.contains("\t[ERROR Port-6443]: Port 6443 is in use"),
            "{err}"
        );
        assert!(out.captured().contains("[WARNING Swap]: swap on"));
        let out = Out::capture();
        report(&out, &findings, &["port-6443".into()]).unwrap();
        assert!(
            out.captured()
                .contains("[WARNING Port-6443]: Port 6443 is in use")
        );
        report(&Out::capture(), &findings, &["all".into()]).unwrap();
    }
}
