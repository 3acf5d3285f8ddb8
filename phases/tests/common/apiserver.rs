//! etcd and the v1.20.2 kube-apiserver on loopback for integration tests, serving with the
//! certificates of a temporary layout; both are killed when the value is dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::rbac::v1::ClusterRole;
use phases::cluster::Cluster;

/// A child process killed (and reaped) when dropped.
pub struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// etcd and kube-apiserver, running.
pub struct ApiServer {
    _etcd: Running,
    _apiserver: Running,
    /// `https://127.0.0.1:<port>`.
    pub server: String,
    /// The API server's log file.
    pub log: PathBuf,
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// `KUBEBOOT_BIN_DIR`, holding etcd and kube-apiserver (a missing one fails the test and
/// names the setup).
pub fn bin_dir() -> PathBuf {
    let dir = std::env::var_os("KUBEBOOT_BIN_DIR").map(PathBuf::from);
    match dir {
        Some(d) if d.join("kube-apiserver").is_file() && d.join("etcd").is_file() => d,
        _ => panic!(
            "KUBEBOOT_BIN_DIR must hold etcd and kube-apiserver: run scripts/setup.sh, then `set -a; . /var/lib/kubeboot-dev/env; set +a`"
        ),
    }
}

fn spawn(bin: &Path, args: &[String], log: &Path) -> Running {
    let out = std::fs::File::create(log).expect("log file");
    let err = out.try_clone().expect("log file");
    Running(
        Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display())),
    )
}

/// Points a kubeconfig at `server` (the files name the advertise address, which is not
/// this machine's).
pub fn repoint(path: &Path, server: &str) {
    let yaml = std::fs::read_to_string(path).expect("kubeconfig");
    let mut kc = pki::Kubeconfig::from_yaml(&yaml).expect("a kubeconfig");
    kc.clusters[0].cluster.server = server.to_string();
    std::fs::write(path, kc.to_yaml()).expect("write kubeconfig");
}

impl ApiServer {
    /// Starts etcd (data in `dir`) and kube-apiserver serving with the certificates in `pki`
    /// (its certificate must be valid for 127.0.0.1), without waiting.
    pub fn start(bin: &Path, dir: &Path, pki: &Path) -> Self {
        let (client, peer, secure) = (free_port(), free_port(), free_port());
        let etcd_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let etcd_args: Vec<String> = vec![
            "--name=t".into(),
            format!("--data-dir={}", dir.join("etcd").display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=t={peer_url}"),
        ];
        let etcd = spawn(&bin.join("etcd"), &etcd_args, &dir.join("etcd.log"));
        let file = |name: &str| pki.join(name).display().to_string();
        let apiserver_args: Vec<String> = vec![
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={secure}"),
            "--insecure-port=0".into(),
            format!("--client-ca-file={}", file("ca.crt")),
            format!("--tls-cert-file={}", file("apiserver.crt")),
            format!("--tls-private-key-file={}", file("apiserver.key")),
            format!("--service-account-key-file={}", file("sa.pub")),
            format!("--service-account-signing-key-file={}", file("sa.key")),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            "--service-cluster-ip-range=10.96.0.0/12".into(),
            "--authorization-mode=Node,RBAC".into(),
            format!("--cert-dir={}", dir.join("apiserver").display()),
        ];
        let log = dir.join("apiserver.log");
        let apiserver = spawn(&bin.join("kube-apiserver"), &apiserver_args, &log);
        ApiServer {
            _etcd: etcd,
            _apiserver: apiserver,
            server: format!("https://127.0.0.1:{secure}"),
            log,
        }
    }

    /// Waits (at most 90 s) until the server is up with its bootstrap RBAC, the ClusterRole
    /// cluster-admin (RBAC's post-start hook), asking with the credentials of `kubeconfig`.
    pub fn wait_ready(&self, kubeconfig: &Path) {
        let start = Instant::now();
        loop {
            let ready = Cluster::from_kubeconfig(kubeconfig)
                .and_then(|c| c.get::<ClusterRole>(None, "cluster-admin"))
                .is_ok_and(|r| r.is_some());
            if ready {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "kube-apiserver not ready after 90s:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}
