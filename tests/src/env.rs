//! Where the harness finds its inputs: the repository, the Kubernetes binaries, the kubeboot
//! binary under test.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};

/// The command that prepares a machine; every "missing input" error names it.
pub const SETUP_HINT: &str = "run scripts/setup.sh, then `set -a; . /var/lib/kubeboot-dev/env; set +a` (scripts/test.sh does both)";

/// The binaries an end-to-end scenario may start inside a node.
pub const NODE_BINS: &[&str] = &[
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "kubectl",
    "kubeadm",
    "etcd",
];

/// The workspace root (this crate lives in `<root>/tests`).
pub fn repo_root() -> PathBuf {
    // Read at run time (cargo and nextest set it), not baked in at compile time: a test
    // binary that cargo reuses from another checkout sharing the target directory must read
    // this checkout's files.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(
            || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")),
            std::path::PathBuf::from,
        )
        .parent()
        .expect("tests crate has a parent directory")
        .to_path_buf()
}

/// `scripts/node.sh`, the one implementation of test nodes.
pub fn node_script() -> PathBuf {
    repo_root().join("scripts/node.sh")
}

/// Fails unless the test runs as root (namespaces and mounts need it).
pub fn require_root() -> Result<()> {
    let out = std::process::Command::new("id")
        .arg("-u")
        .output()
        .context("running `id -u`")?;
    if String::from_utf8_lossy(&out.stdout).trim() != "0" {
        bail!("end-to-end tests need root (network namespaces, mounts); {SETUP_HINT}");
    }
    Ok(())
}

/// `KUBEBOOT_BIN_DIR`, checked to hold every binary in [`NODE_BINS`].
pub fn bin_dir() -> Result<PathBuf> {
    require_bins(NODE_BINS)
}

/// `KUBEBOOT_BIN_DIR`, checked to hold the named binaries. Never passes silently: an unset
/// variable or a missing binary is an error naming the setup command.
pub fn require_bins(names: &[&str]) -> Result<PathBuf> {
    let Some(dir) = std::env::var_os("KUBEBOOT_BIN_DIR") else {
        bail!("KUBEBOOT_BIN_DIR is not set; {SETUP_HINT}");
    };
    let dir = PathBuf::from(dir);
    let missing = missing_in(&dir, names);
    if !missing.is_empty() {
        bail!(
            "KUBEBOOT_BIN_DIR={} lacks {}; {SETUP_HINT}",
            dir.display(),
            missing.join(", ")
        );
    }
    Ok(dir)
}

/// The upgrade target directories of scripts/setup.sh: `KUBEBOOT_BIN_DIR_NEXT` (the TEST
/// BUILD v1.20.3-test.0 of every Kubernetes component, plus etcd 3.4) and
/// `KUBEBOOT_ETCD_NEXT` (etcd 3.5.16 from Debian trixie). `None` when
/// `KUBEBOOT_BIN_DIR_NEXT` is unset: the caller skips its upgrade steps and says so. A set
/// variable whose directory lacks a binary is an error naming the setup command.
pub fn next_bin_dirs() -> Result<Option<(PathBuf, PathBuf)>> {
    let Some(next) = std::env::var_os("KUBEBOOT_BIN_DIR_NEXT") else {
        return Ok(None);
    };
    let Some(etcd) = std::env::var_os("KUBEBOOT_ETCD_NEXT") else {
        bail!("KUBEBOOT_BIN_DIR_NEXT is set but KUBEBOOT_ETCD_NEXT is not; {SETUP_HINT}");
    };
    let (next, etcd) = (PathBuf::from(next), PathBuf::from(etcd));
    for (dir, names) in [(&next, NODE_BINS), (&etcd, &["etcd"][..])] {
        let missing = missing_in(dir, names);
        if !missing.is_empty() {
            bail!(
                "{} lacks {} (the upgrade targets); {SETUP_HINT}",
                dir.display(),
                missing.join(", ")
            );
        }
    }
    Ok(Some((next, etcd)))
}

/// The kubeboot binary under test.
///
/// 1. `KUBEBOOT_EXE`, if set (e.g. `/usr/local/bin/kubeboot` from scripts/setup.sh).
/// 2. Otherwise `kubeboot` in this test's own profile directory: the test executable is
///    `<target>/<profile>/deps/e2e-<hash>`, so the workspace build of the same profile is
///    `<target>/<profile>/kubeboot`. This follows `CARGO_TARGET_DIR`, `--profile` and
///    nextest alike, without needing the variable at run time. (`CARGO_BIN_EXE_kubeboot`
///    only exists for the `kubeboot` package's own tests.)
///
/// Cargo does not build another package's binary for this crate's tests, so
/// `cargo build -p kubeboot` must run first (scripts/test.sh does). A binary older than any
/// workspace source file is refused as stale rather than silently tested.
pub fn kubeboot_exe() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("KUBEBOOT_EXE") {
        let p = PathBuf::from(p);
        if !is_executable(&p) {
            bail!("KUBEBOOT_EXE={} is not an executable file", p.display());
        }
        return Ok(p);
    }
    let exe = std::env::current_exe().context("locating the test executable")?;
    let mut profile_dir = exe
        .parent()
        .context("test executable has no parent directory")?;
    if profile_dir.file_name().is_some_and(|n| n == "deps") {
        profile_dir = profile_dir
            .parent()
            .context("deps/ has no parent directory")?;
    }
    let p = profile_dir.join("kubeboot");
    if !is_executable(&p) {
        bail!(
            "{} does not exist: build it first with `cargo build -p kubeboot` (same profile and \
             target dir as the tests), or set KUBEBOOT_EXE",
            p.display()
        );
    }
    let built = mtime(&p)?;
    if let Some((src, newest)) = newest_source()?
        && newest > built
    {
        bail!(
            "{} is older than {}: rebuild with `cargo build -p kubeboot`, or set KUBEBOOT_EXE",
            p.display(),
            src.display()
        );
    }
    Ok(p)
}

/// The `names` that are not executable files in `dir`.
fn missing_in<'a>(dir: &Path, names: &[&'a str]) -> Vec<&'a str> {
    names
        .iter()
        .copied()
        .filter(|n| !is_executable(&dir.join(n)))
        .collect()
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn mtime(p: &Path) -> Result<SystemTime> {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .with_context(|| format!("reading the modification time of {}", p.display()))
}

/// The most recently modified `*.rs` / `Cargo.toml` of the crates the binary is built from.
fn newest_source() -> Result<Option<(PathBuf, SystemTime)>> {
    let root = repo_root();
    let mut newest: Option<(PathBuf, SystemTime)> = None;
    let mut stack: Vec<PathBuf> = ["cmd", "phases", "components", "pki", "manifests", "agent"]
        .iter()
        .map(|c| root.join(c))
        .collect();
    stack.push(root.join("Cargo.toml"));
    stack.push(root.join("Cargo.lock"));
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            if p.file_name().is_some_and(|n| n == "tests" || n == "target") {
                continue;
            }
            for entry in
                std::fs::read_dir(&p).with_context(|| format!("listing {}", p.display()))?
            {
                stack.push(entry?.path());
            }
        } else if p.extension().is_some_and(|e| e == "rs")
            || p.file_name()
                .is_some_and(|n| n == "Cargo.toml" || n == "Cargo.lock")
        {
            let t = meta.modified()?;
            if newest.as_ref().is_none_or(|(_, n)| t > *n) {
                newest = Some((p, t));
            }
        }
    }
    Ok(newest)
}
