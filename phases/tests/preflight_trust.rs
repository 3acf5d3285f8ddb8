//! The preflight refuses component binaries that someone other than root could replace
//! (`ComponentBinary-<name>`), before it runs them, with the fix; like any check, only
//! `--ignore-preflight-errors` makes that a warning. A `--bin-dir` others can write is refused
//! whatever it holds (`BinDir-<path>`; the agent refuses to start with it). Real files in a directory of the build's
//! own temp directory (not /tmp, which everyone can write); the owner cases need root, as CI
//! runs them.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use phases::out::Out;
use phases::preflight::{self, Finding};

const NOBODY: u32 = 65534;

fn apiserver_pod() -> Vec<(String, Pod)> {
    let pod = Pod {
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "kube-apiserver".into(),
                image: Some("k8s.gcr.io/kube-apiserver:v1.20.2".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    vec![("kube-apiserver".into(), pod)]
}

/// A `--bin-dir` with a kube-apiserver stand-in that records every run in `ran`.
struct BinDir {
    tmp: tempfile::TempDir,
    exe: PathBuf,
    ran: PathBuf,
}

fn bin_dir() -> BinDir {
    let tmp = tempfile::Builder::new()
        .prefix("preflight-trust")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // As the checks name it: the target directory may be reached through a symlink.
    let real = tmp.path().canonicalize().unwrap();
    let ran = real.join("ran");
    let exe = real.join("kube-apiserver");
    std::fs::write(
        &exe,
        format!(
            "#!/bin/sh\necho \"$@\" >> {}\necho 'Kubernetes v1.20.2'\n",
            ran.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    BinDir { tmp, exe, ran }
}

fn findings(dir: &Path) -> Vec<Finding> {
    preflight::run_checks(&preflight::binary_checks(
        &apiserver_pod(),
        // Canonical, as `phases::host::bin_dirs` makes every --bin-dir.
        &[dir.canonicalize().unwrap()],
    ))
}

#[test]
fn trusted_binary_passes() {
    let b = bin_dir();
    let f = findings(b.tmp.path());
    assert_eq!(f[0].name, "ComponentBinary-kube-apiserver");
    assert_eq!(
        f[0].error, None,
        "the build's temp directory must be trusted for these tests to mean anything"
    );
    assert!(b.ran.exists(), "--version was asked");
}

#[test]
#[ignore = "needs root"]
fn binary_owned_by_another_user_is_a_preflight_error_with_the_fix() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "binary_owned_by_another_user_is_a_preflight_error_with_the_fix needs root to chown; run it as root, as CI does"
    );
    let b = bin_dir();
    std::os::unix::fs::chown(&b.exe, Some(NOBODY), Some(NOBODY)).unwrap();
    let f = findings(b.tmp.path());
    assert_eq!(f[0].name, "ComponentBinary-kube-apiserver");
    let e = f[0].error.clone().expect("an error");
    let exe = b.exe.display();
    for want in [
        format!("refusing to run \"{exe}\" as root"),
        "owned by uid 65534 (mode 0755)".to_string(),
        format!("chown root:root {exe} && chmod go-w {exe}"),
    ] {
        assert!(e.contains(&want), "{e}");
    }
    assert!(!b.ran.exists(), "the untrusted binary was run");

    let out = Out::capture();
    let err = preflight::report(&out, &f, &[]).unwrap_err().to_string();
    assert!(
        err.contains(&format!("\t[ERROR ComponentBinary-kube-apiserver]: {e}")),
        "{err}"
    );
    // Ignorable like any other check, by its name.
    let out = Out::capture();
    preflight::report(&out, &f, &["ComponentBinary-kube-apiserver".into()]).unwrap();
    assert!(
        out.captured()
            .contains("[WARNING ComponentBinary-kube-apiserver]: refusing to run"),
        "{}",
        out.captured()
    );
}

#[test]
fn group_writable_bin_dir_is_a_preflight_error() {
    let b = bin_dir();
    std::fs::set_permissions(b.tmp.path(), std::fs::Permissions::from_mode(0o775)).unwrap();
    let e = findings(b.tmp.path())[0].error.clone().expect("an error");
    let dir = b.tmp.path().canonicalize().unwrap();
    let dir = dir.display();
    assert!(
        e.contains(&format!(
            "\"{dir}\", on the way to it, is writable by group or others (owner uid"
        )) && e.contains("mode 0775)"),
        "{e}"
    );
    assert!(e.contains(&format!("chmod go-w {dir}")), "{e}");
    assert!(!b.ran.exists(), "the untrusted binary was run");
}

/// An empty `--bin-dir` anyone can write: nothing in it is run by the preflight, but every
/// component would find `iptables` or `mount` there first on its PATH.
fn writable_empty_dir() -> tempfile::TempDir {
    let tmp = tempfile::Builder::new()
        .prefix("preflight-bindir")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    tmp
}

#[test]
fn a_bin_dir_others_can_write_is_a_preflight_error_even_when_empty() {
    let bad = writable_empty_dir();
    let dir = bad.path().canonicalize().unwrap();
    let f = preflight::run_checks(&[preflight::Check::bin_dir(&dir)]);
    let name = format!("BinDir-{}", preflight::path_name(&dir));
    assert_eq!(f[0].name, name);
    let e = f[0].error.clone().expect("an error");
    let dir = dir.display();
    for want in [
        format!("refusing --bin-dir \"{dir}\""),
        "it is writable by group or others (owner uid".to_string(),
        format!("chmod go-w {dir}"),
    ] {
        assert!(e.contains(&want), "{e}");
    }
    // Ignorable like any other check, by its name.
    let out = Out::capture();
    assert!(preflight::report(&out, &f, &[]).is_err());
    let out = Out::capture();
    preflight::report(&out, &f, std::slice::from_ref(&name)).unwrap();
    assert!(
        out.captured()
            .contains(&format!("[WARNING {name}]: refusing --bin-dir")),
        "{}",
        out.captured()
    );
    // The trusted one passes.
    let good = bin_dir();
    let f = preflight::run_checks(&[preflight::Check::bin_dir(good.tmp.path())]);
    assert_eq!(f[0].error, None);
}

#[test]
fn the_agent_refuses_an_untrusted_bin_dir_whatever_it_holds() {
    let bad = writable_empty_dir();
    let e = phases::host::trusted_bin_dirs(&[bad.path().to_path_buf()])
        .unwrap_err()
        .to_string();
    let dir = bad.path().canonicalize().unwrap();
    assert!(
        e.starts_with(&format!(
            "refusing --bin-dir \"{0}\", which goes first on the PATH of every component kubeboot runs as root: it is writable",
            dir.display()
        )),
        "{e}"
    );
    let good = bin_dir();
    assert_eq!(
        phases::host::trusted_bin_dirs(&[good.tmp.path().to_path_buf()]).unwrap(),
        vec![good.tmp.path().canonicalize().unwrap()]
    );
    assert_eq!(
        phases::host::trusted_bin_dirs(&[]).unwrap(),
        phases::host::default_bin_dirs()
    );
}
