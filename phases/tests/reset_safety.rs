//! `reset` on a node rooted in a temporary directory, with the inputs that used to make it
//! delete what was not kubeboot's: a `client-ca-file` under `/etc` or in `/`, an etcd
//! `data-dir` of `.`, no etcd manifest next to someone else's `/var/lib/etcd`, unknown files
//! in the certificate directory, volumes still mounted below the kubelet directory (stacked,
//! behind a symlink), a record naming `/`, and a reset interrupted half-way. Each case is
//! dangerous only inside its temporary root.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use agent::host::fs::Fs;
use components::Layout;
use phases::node_record::{self, NodeRecord};
use phases::out::Out;
use phases::reset::{ResetData, plan};

const FILE_PHASES: &[&str] = &["certs", "kubeconfig", "etcd", "control-plane"];

fn init_files(d: &mut phases::init::InitData) {
    let only: Vec<String> = FILE_PHASES.iter().map(|s| s.to_string()).collect();
    phases::init::run(d, &only).expect("init phases run");
}

fn reset_data(root: &Path) -> ResetData {
    ResetData {
        layout: Layout::under(root),
        fs: Fs::real(),
        out: Out::capture(),
        dry_run: false,
        cert_dir: None,
        grace: Duration::from_secs(1),
        leave: Default::default(),
        state: Default::default(),
    }
}

/// Runs reset on the node rooted at `root`; its output, or the error with the output.
fn reset(root: &Path) -> Result<String, String> {
    let mut d = reset_data(root);
    match phases::reset::run(&mut d, &[]) {
        Ok(()) => Ok(d.out.captured()),
        Err(e) => Err(format!("{e:#}\n{}", d.out.captured())),
    }
}

fn sentinel(path: &Path) -> PathBuf {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, b"not kubeboot's").unwrap();
    path.to_path_buf()
}

fn assert_exist(paths: &[PathBuf]) {
    for p in paths {
        assert!(p.exists(), "{} was deleted", p.display());
    }
}

/// Every regular file below `dir`.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                found.push(e.path());
            }
        }
    }
    found.sort();
    found
}

#[test]
fn client_ca_file_under_etc_leaves_etc_alone() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let keep = [
        sentinel(&r.join("etc/passwd")),
        sentinel(&r.join("etc/client-ca.pem")),
    ];
    let mut d = common::data(r);
    d.cfg
        .cluster
        .api_server
        .component
        .extra_args
        .insert("client-ca-file".into(), "/etc/client-ca.pem".into());
    init_files(&mut d);
    let manifest =
        std::fs::read_to_string(r.join("etc/kubernetes/manifests/kube-apiserver.yaml")).unwrap();
    assert!(
        manifest.contains("--client-ca-file=/etc/client-ca.pem"),
        "{manifest}"
    );

    let out = reset(r).unwrap();
    assert_exist(&keep);
    let left = files_below(&r.join("etc/kubernetes"));
    assert!(left.is_empty(), "kubeboot's files left: {left:?}\n{out}");
    assert!(!r.join("var/lib/kubeboot/node-record.json").exists());
    // The directories init created are gone too; /etc, which it did not create, stays.
    assert!(!r.join("etc/kubernetes").exists(), "{out}");
    assert!(r.join("etc").is_dir());
    // Init works again after the reset.
    init_files(&mut common::data(r));
    assert!(r.join("etc/kubernetes/pki/ca.crt").exists());
}

#[test]
fn hand_written_manifests_naming_the_root_do_not_empty_it() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let keep = [
        sentinel(&r.join("ca.pem")),
        sentinel(&r.join("home/user/file")),
        sentinel(&r.join("member/x")),
    ];
    let manifests = r.join("etc/kubernetes/manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(
        manifests.join("kube-apiserver.yaml"),
        "spec:\n  containers:\n  - command:\n    - kube-apiserver\n    - --client-ca-file=/ca.pem\n",
    )
    .unwrap();
    std::fs::write(
        manifests.join("etcd.yaml"),
        "spec:\n  containers:\n  - command:\n    - etcd\n    - --data-dir=.\n",
    )
    .unwrap();
    let out = reset(r).unwrap();
    assert_exist(&keep);
    // The manifests are kubeboot's (default layout of a node without a record).
    assert!(!manifests.join("etcd.yaml").exists(), "{out}");
    assert!(out.contains("No node record"), "{out}");
}

#[test]
fn validation_refuses_the_root_paths_before_init_writes_anything() {
    let host = components::config::HostFacts {
        hostname: "node1".into(),
        default_address: None,
        local_addresses: vec![],
        detected_version: None,
    };
    let text = String::from(
        "apiVersion: kubeadm.k8s.io/v1beta2\nkind: ClusterConfiguration\nkubernetesVersion: v1.20.2\n\
         apiServer:\n  extraArgs:\n    client-ca-file: /ca.pem\n\
         etcd:\n  local:\n    extraArgs:\n      data-dir: \".\"\n",
    );
    let flags = components::config::InitFlags {
        apiserver_advertise_address: Some("10.123.0.2".into()),
        config: Some(components::config::ConfigSource {
            path: "/root/kubeboot.yaml".into(),
            content: text,
        }),
        ..Default::default()
    };
    let err = components::config::resolve_init(&flags, &host)
        .unwrap_err()
        .to_string();
    for want in [
        "apiServer.extraArgs.client-ca-file: \"/ca.pem\" must not be directly in the root directory",
        "etcd.local.extraArgs.data-dir: \".\" must be an absolute path",
    ] {
        assert!(err.contains(want), "{want:?} not in {err}");
    }
}

#[test]
fn no_etcd_manifest_and_no_record_leaves_var_lib_etcd_alone() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let keep = [sentinel(&r.join("var/lib/etcd/member/snap/db"))];
    let out = reset(r).unwrap();
    assert_exist(&keep);
    assert!(
        out.contains("[reset] No etcd config found. Assuming external etcd"),
        "{out}"
    );
}

#[test]
fn an_etcd_kubeboot_ran_is_cleared_and_a_foreign_dir_without_member_is_not() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let mut d = common::data(r);
    init_files(&mut d);
    sentinel(&r.join("var/lib/etcd/member/snap/db"));
    reset(r).unwrap();
    assert!(!r.join("var/lib/etcd/member").exists());

    // Recorded, but not etcd's data (no member/): left.
    let mut d = common::data(r);
    init_files(&mut d);
    let keep = [sentinel(&r.join("var/lib/etcd/backup.tar"))];
    let out = reset(r).unwrap();
    assert_exist(&keep);
    assert!(out.contains("it holds no member/ directory"), "{out}");
}

#[test]
fn unknown_files_in_the_cert_dir_survive() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let mut d = common::data(r);
    init_files(&mut d);
    let pki = r.join("etc/kubernetes/pki");
    let keep = [
        sentinel(&pki.join("user-ca.pem")),
        sentinel(&pki.join("etcd/notes.txt")),
    ];
    reset(r).unwrap();
    assert_exist(&keep);
    let left = files_below(&pki);
    assert_eq!(left.len(), 2, "{left:?}");
}

#[test]
fn a_record_naming_the_root_or_a_system_dir_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let layout = Layout::under(r);
    let keep = [
        sentinel(&r.join("member/x")),
        sentinel(&r.join("etc/passwd")),
    ];
    node_record::update(
        &Fs::real(),
        &layout,
        NodeRecord {
            etcd_data_dirs: ["/".into()].into(),
            ..Default::default()
        },
    )
    .unwrap();
    let err = reset(r).unwrap_err();
    assert!(err.contains("refusing to delete the contents of"), "{err}");
    assert_exist(&keep);
    // The record stays, so that nothing is forgotten once it is fixed.
    assert!(layout.node_record().exists());

    std::fs::remove_file(layout.node_record()).unwrap();
    node_record::update(
        &Fs::real(),
        &layout,
        NodeRecord {
            kubelet_dirs: ["/etc".into()].into(),
            ..Default::default()
        },
    )
    .unwrap();
    let err = reset(r).unwrap_err();
    assert!(err.contains("refusing to"), "{err}");
    assert_exist(&keep);
}

/// Mounts with the test, unmounts (lazily) at the end whatever reset left.
struct Mounts(Vec<PathBuf>);

impl Mounts {
    /// `None` when not root: mounts need it.
    fn new() -> Option<Mounts> {
        if nix::unistd::geteuid().is_root() {
            Some(Mounts(Vec::new()))
        } else {
            eprintln!("not root: skipping the mount cases");
            None
        }
    }

    fn bind(&mut self, source: &Path, target: &Path) {
        std::fs::create_dir_all(target).unwrap();
        nix::mount::mount(
            Some(source),
            target,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .expect("bind mount");
        self.0.push(target.to_path_buf());
    }

    fn tmpfs(&mut self, target: &Path) {
        std::fs::create_dir_all(target).unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            target,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .expect("tmpfs mount");
        self.0.push(target.to_path_buf());
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        for m in self.0.iter().rev() {
            while nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH).is_ok() {}
        }
    }
}

fn mounted_below(dir: &Path) -> Vec<PathBuf> {
    agent::host::fs::read_mount_points()
        .unwrap()
        .into_iter()
        .filter(|m| m.starts_with(dir))
        .collect()
}

#[test]
fn stacked_mounts_below_the_kubelet_dir_are_unmounted_and_their_data_survives() {
    let Some(mut mounts) = Mounts::new() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let volume = tempfile::tempdir().unwrap();
    let r = root.path().canonicalize().unwrap();
    let keep = [sentinel(&volume.path().join("data"))];
    let kubelet = r.join("var/lib/kubelet");
    let at = kubelet.join("pods/u1/volumes/kubernetes.io~csi/pv1/mount");
    // The volume, with a tmpfs stacked over it: unmounting once is not enough.
    mounts.bind(volume.path(), &at);
    mounts.tmpfs(&at);
    sentinel(&kubelet.join("pods/u1/etc-hosts"));
    let out = reset(&r).unwrap();
    assert!(
        mounted_below(&kubelet).is_empty(),
        "{:?}",
        mounted_below(&kubelet)
    );
    assert_exist(&keep);
    assert!(files_below(&kubelet).is_empty());
    assert!(
        out.contains("Unmounted 2 volumes below the kubelet directory"),
        "{out}"
    );
}

#[test]
fn a_symlinked_kubelet_dir_is_resolved_before_unmounting() {
    let Some(mut mounts) = Mounts::new() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let volume = tempfile::tempdir().unwrap();
    let r = root.path().canonicalize().unwrap();
    let keep = [sentinel(&volume.path().join("data"))];
    let real = r.join("data/kubelet");
    std::fs::create_dir_all(&real).unwrap();
    std::fs::create_dir_all(r.join("var/lib")).unwrap();
    std::os::unix::fs::symlink(&real, r.join("var/lib/kubelet")).unwrap();
    mounts.bind(volume.path(), &real.join("pods/u1/volumes/v"));
    reset(&r).unwrap();
    assert!(mounted_below(&real).is_empty());
    assert_exist(&keep);
    assert!(files_below(&real).is_empty());

    // A kubelet directory that leads to a system directory is refused before any unmount.
    let etc = [sentinel(&r.join("etc/passwd"))];
    std::fs::remove_file(r.join("var/lib/kubelet")).unwrap();
    std::os::unix::fs::symlink(r.join("etc"), r.join("var/lib/kubelet")).unwrap();
    let err = reset(&r).unwrap_err();
    assert!(err.contains("refusing to"), "{err}");
    assert_exist(&etc);
}

#[test]
fn a_mount_that_cannot_go_is_skipped_reported_and_the_record_kept() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let layout = Layout::under(r);
    let Some(mut mounts) = Mounts::new() else {
        return;
    };
    let volume = tempfile::tempdir().unwrap();
    let keep = [sentinel(&volume.path().join("data"))];
    // A mount below a directory reset clears but does not unmount (the agent's state).
    mounts.bind(volume.path(), &layout.agent_state_dir().join("pods/x"));
    node_record::update(&Fs::real(), &layout, NodeRecord::default()).unwrap();
    let err = reset(r).unwrap_err();
    assert!(err.contains("mount point(s) still mounted"), "{err}");
    assert_exist(&keep);
    assert!(layout.node_record().exists());
}

#[test]
fn a_reset_interrupted_half_way_finishes_when_run_again() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let layout = Layout::under(r);
    let mut d = common::data(r);
    init_files(&mut d);
    sentinel(&r.join("var/lib/etcd/member/snap/db"));
    let fs = Fs::real();
    let obs = plan::Observed {
        record: node_record::read(&fs, &layout).unwrap(),
        etcd_with_member: ["/var/lib/etcd".into()].into(),
        ..Default::default()
    };
    let steps = plan::plan(&layout, &obs).steps;
    // Killed after half the deletions: the record is still there, some files too.
    phases::reset::execute(&fs, &layout, &steps[..steps.len() / 2]).unwrap();
    assert!(layout.node_record().exists());
    assert!(!files_below(&r.join("etc/kubernetes")).is_empty());
    reset(r).unwrap();
    assert!(files_below(&r.join("etc/kubernetes")).is_empty());
    assert!(!r.join("var/lib/etcd/member").exists());
    assert!(!layout.node_record().exists());
    // And once more on a clean node.
    reset(r).unwrap();
}

#[test]
fn dry_run_lists_what_would_go_and_deletes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let mut d = common::data(r);
    init_files(&mut d);
    let before = files_below(r);
    let mut data = reset_data(r);
    data.dry_run = true;
    phases::reset::run(&mut data, &[]).unwrap();
    let out = data.out.captured();
    assert_eq!(before, files_below(r));
    for want in [
        "etc/kubernetes/pki/ca.key",
        "etc/kubernetes/admin.conf",
        "node-record.json",
    ] {
        assert!(out.contains(want), "{want} not listed:\n{out}");
    }
}

#[test]
fn a_re_run_of_init_merges_into_the_record_and_reset_cleans_both() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    init_files(&mut common::data(r));
    let mut again = common::data(r);
    again.cfg.cluster.certificates_dir = "/srv/kubernetes/pki".into();
    phases::init::run(&mut again, &["certs".to_string()]).unwrap();
    let record = node_record::read(&Fs::real(), &Layout::under(r))
        .unwrap()
        .unwrap();
    assert_eq!(
        record.cert_dirs,
        [
            PathBuf::from("/etc/kubernetes/pki"),
            "/srv/kubernetes/pki".into()
        ]
        .into()
    );
    assert!(r.join("srv/kubernetes/pki/ca.key").exists());
    reset(r).unwrap();
    assert!(files_below(&r.join("etc/kubernetes")).is_empty());
    assert!(
        !r.join("srv/kubernetes").exists(),
        "the directories init created stay"
    );
}
