//! etcd on loopback for integration tests: real etcd processes (KUBEBOOT_BIN_DIR) on
//! 127.0.0.x with free ports, TLS with kubeadm's etcd flags and certificates from `pki`, a
//! temp directory each; every etcd started is killed when the [`Cluster`] is dropped.

use std::net::{IpAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use phases::etcd_members::EtcdClient;

/// A child process killed (and reaped) when dropped.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn etcd_bin() -> PathBuf {
    let bin = std::env::var_os("KUBEBOOT_BIN_DIR").map(|d| PathBuf::from(d).join("etcd"));
    match bin {
        Some(b) if b.is_file() => b,
        _ => panic!(
            "KUBEBOOT_BIN_DIR must hold etcd: run scripts/setup.sh, then `set -a; . /var/lib/kubeboot-dev/env; set +a`"
        ),
    }
}

pub fn free_port(addr: &str) -> u16 {
    TcpListener::bind((addr, 0))
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// One etcd node: its name, loopback address and ports.
#[derive(Clone)]
pub struct Node {
    pub name: String,
    pub addr: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub metrics_port: u16,
}

impl Node {
    pub fn new(name: &str, last_octet: u8) -> Self {
        let addr = format!("127.0.0.{last_octet}");
        Self {
            name: name.into(),
            client_port: free_port(&addr),
            peer_port: free_port(&addr),
            metrics_port: free_port(&addr),
            addr,
        }
    }

    pub fn client_url(&self) -> String {
        format!("https://{}:{}", self.addr, self.client_port)
    }

    pub fn peer_url(&self) -> String {
        format!("https://{}:{}", self.addr, self.peer_port)
    }
}

/// The cluster's CA, the client credential, and every etcd started (killed on drop, before
/// the temp directory goes).
pub struct Cluster {
    pub running: Vec<(String, Running)>,
    pub ca: pki::Issuer,
    pub client_cert: pki::Issued,
    pub dir: tempfile::TempDir,
    pub installs: usize,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.running.clear();
    }
}

pub fn inputs(name: &str, addr: &str) -> pki::CertInputs {
    pki::CertInputs {
        node_name: name.into(),
        advertise_address: addr.parse::<IpAddr>().expect("an IP"),
        service_subnet: "10.96.0.0/12".parse().expect("a CIDR"),
        dns_domain: "cluster.local".into(),
        control_plane_endpoint: None,
        apiserver_cert_sans: vec![],
        etcd_server_sans: vec![],
        etcd_peer_sans: vec![],
        algorithm: Default::default(),
        validity: Default::default(),
    }
}

pub fn issue(spec: &str, inputs: &pki::CertInputs, ca: Option<&pki::Issuer>) -> pki::Issued {
    let spec = pki::cert_spec(spec).expect("a known certificate");
    pki::issue(spec, inputs, ca, SystemTime::now()).expect("issued")
}

pub fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

impl Cluster {
    pub fn new() -> Self {
        let ca: pki::Issuer = issue("etcd-ca", &inputs("ca", "127.0.0.1"), None).into();
        let client_cert = issue(
            "apiserver-etcd-client",
            &inputs("c", "127.0.0.1"),
            Some(&ca),
        );
        Self {
            running: vec![],
            ca,
            client_cert,
            dir: tempfile::tempdir().expect("tempdir"),
            installs: 0,
        }
    }

    pub fn client(&self, endpoints: &[String]) -> EtcdClient {
        EtcdClient::new(
            endpoints,
            self.ca.cert_pem.as_bytes(),
            self.client_cert.cert_pem.as_bytes(),
            self.client_cert.key_pem.as_bytes(),
        )
        .expect("etcd client")
    }

    /// Installs `node` afresh (its own certificates, an empty data directory) and starts its
    /// etcd with kubeadm's flags (app/phases/etcd/local.go getEtcdCommand).
    pub fn start(&mut self, node: &Node, initial_cluster: &str, existing: bool) -> PathBuf {
        self.start_in(node, None, initial_cluster, existing)
    }

    /// [`Cluster::start`] with the data directory `data` (a restored one) instead of an
    /// empty one in the node's directory; returns the node's directory.
    pub fn start_in(
        &mut self,
        node: &Node,
        data: Option<&Path>,
        initial_cluster: &str,
        existing: bool,
    ) -> PathBuf {
        self.installs += 1;
        let dir = self
            .dir
            .path()
            .join(format!("{}-{}", node.name, self.installs));
        std::fs::create_dir_all(&dir).expect("node dir");
        let i = inputs(&node.name, &node.addr);
        let server = issue("etcd-server", &i, Some(&self.ca));
        let peer = issue("etcd-peer", &i, Some(&self.ca));
        let file = |n: &str| dir.join(n).display().to_string();
        write(&dir.join("ca.crt"), &self.ca.cert_pem);
        write(&dir.join("server.crt"), &server.cert_pem);
        write(&dir.join("server.key"), &server.key_pem);
        write(&dir.join("peer.crt"), &peer.cert_pem);
        write(&dir.join("peer.key"), &peer.key_pem);
        let mut args = vec![
            format!("--name={}", node.name),
            format!(
                "--data-dir={}",
                data.map_or_else(|| file("data"), |d| d.display().to_string())
            ),
            format!("--listen-client-urls={}", node.client_url()),
            format!("--advertise-client-urls={}", node.client_url()),
            format!("--listen-peer-urls={}", node.peer_url()),
            format!("--initial-advertise-peer-urls={}", node.peer_url()),
            format!("--cert-file={}", file("server.crt")),
            format!("--key-file={}", file("server.key")),
            format!("--trusted-ca-file={}", file("ca.crt")),
            "--client-cert-auth=true".into(),
            format!("--peer-cert-file={}", file("peer.crt")),
            format!("--peer-key-file={}", file("peer.key")),
            format!("--peer-trusted-ca-file={}", file("ca.crt")),
            "--peer-client-cert-auth=true".into(),
            "--snapshot-count=10000".into(),
            format!(
                "--listen-metrics-urls=http://{}:{}",
                node.addr, node.metrics_port
            ),
            format!("--initial-cluster={initial_cluster}"),
        ];
        if existing {
            args.push("--initial-cluster-state=existing".into());
        }
        let log = std::fs::File::create(dir.join("etcd.log")).expect("log file");
        let err = log.try_clone().expect("log file");
        let child = Command::new(etcd_bin())
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("starting etcd");
        self.running.push((node.name.clone(), Running(child)));
        dir
    }

    /// Kills `name`'s etcd (the newest one) and waits until it answers no more.
    pub fn kill(&mut self, node: &Node, client: &EtcdClient) {
        let i = self
            .running
            .iter()
            .rposition(|(n, _)| *n == node.name)
            .expect("a running etcd of that name");
        drop(self.running.remove(i));
        eventually(&format!("{} down", node.name), 10, || {
            !client.healthy(&node.client_url())
        });
    }

    /// The last lines of each etcd log, for a failure message.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        let mut dirs: Vec<_> = std::fs::read_dir(self.dir.path())
            .map(|r| r.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        dirs.sort();
        for d in dirs {
            let text = std::fs::read_to_string(d.join("etcd.log")).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            s.push_str(&format!("\n--- {}\n", d.display()));
            for l in &lines[lines.len().saturating_sub(8)..] {
                s.push_str(l);
                s.push('\n');
            }
        }
        s
    }
}

/// Polls `check` every 200 ms until it holds, at most `secs` seconds.
pub fn eventually(what: &str, secs: u64, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "{what}: not after {secs}s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
