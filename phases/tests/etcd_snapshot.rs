//! `phases::etcd_snapshot` against a real etcd on loopback (127.0.0.35, free ports, TLS, a
//! temp directory): keys are put, a snapshot saved (0600, with its sidecar), more keys put;
//! a corrupt copy (one byte flipped) is refused and nothing is created; a restore into the
//! data directory the running etcd holds is refused and that etcd keeps running untouched;
//! the snapshot restored into a new data directory starts an etcd that holds exactly the
//! first keys. The keys are written and read with the real `etcdctl`, not kubeboot's client.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use common::etcd::{Cluster, Node, eventually};
use phases::etcd_snapshot::{self, RestoreNode};
use phases::out::Out;

/// etcdctl against `endpoint` with the test's client certificate.
struct Ctl {
    exe: PathBuf,
    endpoint: String,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Ctl {
    fn new(c: &Cluster, dir: &Path, endpoint: &str, bin_dirs: &[PathBuf]) -> Self {
        let write = |n: &str, t: &str| {
            let p = dir.join(n);
            std::fs::write(&p, t).expect("writing a client file");
            p
        };
        Self {
            exe: etcd_snapshot::find_etcdctl(bin_dirs).expect(
                "etcdctl (Debian: apt-get install etcd-client; scripts/setup.sh installs it)",
            ),
            endpoint: endpoint.to_string(),
            ca: write("client-ca.crt", &c.ca.cert_pem),
            cert: write("client.crt", &c.client_cert.cert_pem),
            key: write("client.key", &c.client_cert.key_pem),
        }
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new(&self.exe)
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint))
            .arg(format!("--cacert={}", self.ca.display()))
            .arg(format!("--cert={}", self.cert.display()))
            .arg(format!("--key={}", self.key.display()))
            .args(args)
            .output()
            .expect("running etcdctl");
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn put(&self, k: &str, v: &str) {
        self.run(&["put", k, v]);
    }

    /// Every key and value, in key order.
    fn all(&self) -> Vec<String> {
        self.run(&["get", "", "--prefix"])
            .lines()
            .map(str::to_string)
            .collect()
    }
}

fn bin_dirs() -> Vec<PathBuf> {
    let dir = std::env::var_os("KUBEBOOT_BIN_DIR").map(PathBuf::from);
    phases::host::bin_dirs(&dir.into_iter().collect::<Vec<_>>()).expect("bin dirs")
}

#[test]
#[ignore = "needs KUBEBOOT_BIN_DIR"]
fn etcd_snapshot_save_then_restore_brings_back_exactly_the_saved_keys() {
    let mut c = Cluster::new();
    let n1 = Node::new("node1", 35);
    let node_dir = c.start(&n1, &format!("node1={}", n1.peer_url()), false);
    let running_data = node_dir.join("data");
    let client = c.client(&[n1.client_url()]);
    eventually("node1 healthy", 30, || client.healthy(&n1.client_url()));
    let work = tempfile::tempdir().expect("tempdir");
    let bins = bin_dirs();
    let ctl = Ctl::new(&c, work.path(), &n1.client_url(), &bins);
    ctl.put("/registry/first/a", "1");
    ctl.put("/registry/first/b", "2");
    // What the API server stores for kubeadm-config holds the YAML verbatim.
    ctl.put(
        "/registry/configmaps/kube-system/kubeadm-config",
        "k8s\u{1}ClusterConfiguration\napiVersion: kubeadm.k8s.io/v1beta2\nkubernetesVersion: v1.20.2\n",
    );
    let first = ctl.all();

    // Save.
    let file = work.path().join("snap.db");
    let info = etcd_snapshot::save(
        &client,
        &agent::host::fs::Fs::real(),
        &file,
        SystemTime::now(),
        None,
    )
    .unwrap_or_else(|e| panic!("save: {e:#}{}", c.logs()));
    let meta = std::fs::metadata(&file).expect("the snapshot");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.len(), info.size);
    assert_eq!(info.etcd_version, "3.4.23");
    assert_eq!(info.kubernetes_version.as_deref(), Some("v1.20.2"));
    assert_eq!(info.members.len(), 1);
    assert_eq!(info.members[0].name, "node1");
    assert!(info.revision >= 4, "{info:?}");
    let sidecar: etcd_snapshot::SnapshotInfo = serde_json::from_slice(
        &std::fs::read(etcd_snapshot::sidecar_path(&file)).expect("the sidecar"),
    )
    .expect("sidecar JSON");
    assert_eq!(sidecar, info);
    assert_eq!(etcd_snapshot::verify(&file).expect("verifies"), info);

    // More writes after the snapshot: they must not come back.
    ctl.put("/registry/later/c", "3");
    ctl.put("/registry/first/a", "changed");

    let out = Out::capture();
    let layout = components::Layout::under(work.path().join("root"));
    let fs = agent::host::fs::Fs::real();
    let node = |data_dir: &Path| RestoreNode {
        layout: &layout,
        fs: &fs,
        out: &out,
        bin_dirs: &bins,
        data_dir: Some(data_dir.to_path_buf()),
        name: Some("node1".into()),
        peer_url: Some(format!("https://127.0.0.36:{}", n1.peer_port)),
        timeout: Duration::from_secs(30),
        now: SystemTime::now(),
    };

    // A corrupt copy: refused before anything is created.
    let bad = work.path().join("bad.db");
    let mut bytes = std::fs::read(&file).expect("read");
    bytes[100] ^= 0xff;
    std::fs::write(&bad, &bytes).expect("write");
    std::fs::copy(
        etcd_snapshot::sidecar_path(&file),
        etcd_snapshot::sidecar_path(&bad),
    )
    .expect("copy sidecar");
    let target = work.path().join("restored");
    let err = etcd_snapshot::restore(&node(&target), &bad).expect_err("a corrupt snapshot");
    assert!(
        format!("{err:#}").contains("does not match its sidecar"),
        "{err:#}"
    );
    assert!(!target.exists());

    // The data directory of the running etcd: refused, that etcd untouched.
    let err = etcd_snapshot::restore(&node(&running_data), &file).expect_err("in use");
    assert!(
        format!("{err:#}").contains("is in use by a running etcd"),
        "{err:#}"
    );
    let siblings: Vec<String> = std::fs::read_dir(&node_dir)
        .expect("node dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("data."))
        .collect();
    assert!(siblings.is_empty(), "{siblings:?}");
    assert!(client.healthy(&n1.client_url()));

    // A real restore into a new directory (one that exists is set aside, never deleted).
    std::fs::create_dir_all(&target).expect("an old target");
    std::fs::write(target.join("old-marker"), "x").expect("marker");
    etcd_snapshot::restore(&node(&target), &file)
        .unwrap_or_else(|e| panic!("restore: {e:#}\n{}", out.captured()));
    // Inside the directory (it may be a mount point): the old contents aside, the new member.
    let entries: Vec<String> = std::fs::read_dir(&target)
        .expect("restored")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let aside: Vec<&String> = entries
        .iter()
        .filter(|n| n.starts_with("pre-restore-"))
        .collect();
    assert_eq!(aside.len(), 1, "{entries:?}");
    assert_eq!(
        entries.len(),
        2,
        "only member and the old contents: {entries:?}"
    );
    assert!(target.join(aside[0]).join("old-marker").exists());
    assert!(target.join("member/snap/db").exists());
    assert_eq!(
        std::fs::metadata(&target)
            .expect("restored")
            .permissions()
            .mode()
            & 0o777,
        0o700
    );

    // Started from the restored directory, etcd holds exactly the keys saved.
    let n2 = Node {
        name: "node1".into(),
        addr: "127.0.0.36".into(),
        client_port: Node::new("x", 36).client_port,
        peer_port: n1.peer_port,
        metrics_port: Node::new("x", 36).metrics_port,
    };
    c.start_in(
        &n2,
        Some(&target),
        &format!("node1={}", n2.peer_url()),
        false,
    );
    let client2 = c.client(&[n2.client_url()]);
    eventually("restored etcd healthy", 30, || {
        client2.healthy(&n2.client_url())
    });
    let ctl2 = Ctl::new(&c, work.path(), &n2.client_url(), &bins);
    assert_eq!(ctl2.all(), first);
    let status = client2.status().expect("status");
    assert_ne!(
        format!("{:x}", status.header.cluster_id),
        info.cluster_id,
        "a restored cluster gets a new cluster ID"
    );
}
