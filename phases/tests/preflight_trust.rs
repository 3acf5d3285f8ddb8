//! The preflight refuses component binaries that someone other than root could replace
//! (`ComponentBinary-<name>`), before it runs them, with the fix; like any check, only
//! `--ignore-preflight-errors` makes that a warning. Real files in a directory of the build's
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
    let ran = tmp.path().join("ran");
    let exe = tmp.path().join("kube-apiserver");
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
        &[dir.to_path_buf()],
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
fn binary_owned_by_another_user_is_a_preflight_error_with_the_fix() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "SKIPPED binary_owned_by_another_user_is_a_preflight_error_with_the_fix: needs root to chown; CI runs it as root"
        );
        return;
    }
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
    let dir = b.tmp.path().display();
    assert!(
        e.contains(&format!(
            "\"{dir}\", on the way to it, is writable by group or others (owner uid"
        )) && e.contains("mode 0775)"),
        "{e}"
    );
    assert!(e.contains(&format!("chmod go-w {dir}")), "{e}");
    assert!(!b.ran.exists(), "the untrusted binary was run");
}
