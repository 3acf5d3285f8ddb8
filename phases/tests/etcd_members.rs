//! `phases::etcd_members` against real etcd processes on loopback only (127.0.0.2x, free
//! ports, a temp directory each, TLS with kubeadm's etcd flags and certificates from `pki`):
//! a 1-member cluster; node2 joins as a learner (checked while it is one), is started with the
//! `--initial-cluster` the plan produced and promoted; node3's first join fails after the add
//! and a second run resumes its learner; a re-run on a voter changes nothing; node2,
//! reinstalled (same name and address, empty data directory) while its old member is dead,
//! replaces its stale member (3 voters, one dead: removing it leaves 2 healthy of 2, a
//! quorum); with node3 dead, node4's join is refused naming node3 and the membership stays
//! as it was. Every etcd started is killed when the test ends, passed or not.

use std::net::{IpAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use phases::etcd_members::{
    EtcdClient, EtcdJoinRefused, JoinTimeouts, Member, initial_cluster_flag, join_member,
};
use phases::out::Out;

/// A child process killed (and reaped) when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn etcd_bin() -> PathBuf {
    let bin = std::env::var_os("KUBEBOOT_BIN_DIR").map(|d| PathBuf::from(d).join("etcd"));
    match bin {
        Some(b) if b.is_file() => b,
        _ => panic!(
            "KUBEBOOT_BIN_DIR must hold etcd: run scripts/setup.sh, then `set -a; . /var/lib/kubeboot-dev/env; set +a`"
        ),
    }
}

fn free_port(addr: &str) -> u16 {
    TcpListener::bind((addr, 0))
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// One etcd node: its name, loopback address and ports.
#[derive(Clone)]
struct Node {
    name: String,
    addr: String,
    client_port: u16,
    peer_port: u16,
    metrics_port: u16,
}

impl Node {
    fn new(name: &str, last_octet: u8) -> Self {
        let addr = format!("127.0.0.{last_octet}");
        Self {
            name: name.into(),
            client_port: free_port(&addr),
            peer_port: free_port(&addr),
            metrics_port: free_port(&addr),
            addr,
        }
    }

    fn client_url(&self) -> String {
        format!("https://{}:{}", self.addr, self.client_port)
    }

    fn peer_url(&self) -> String {
        format!("https://{}:{}", self.addr, self.peer_port)
    }
}

/// The cluster's CA, the client credential, and every etcd started (killed on drop, before
/// the temp directory goes).
struct Cluster {
    running: Vec<(String, Running)>,
    ca: pki::Issuer,
    client_cert: pki::Issued,
    dir: tempfile::TempDir,
    installs: usize,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.running.clear();
    }
}

fn inputs(name: &str, addr: &str) -> pki::CertInputs {
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

fn issue(spec: &str, inputs: &pki::CertInputs, ca: Option<&pki::Issuer>) -> pki::Issued {
    let spec = pki::cert_spec(spec).expect("a known certificate");
    pki::issue(spec, inputs, ca, SystemTime::now()).expect("issued")
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

impl Cluster {
    fn new() -> Self {
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

    fn client(&self, endpoints: &[String]) -> EtcdClient {
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
    fn start(&mut self, node: &Node, initial_cluster: &str, existing: bool) {
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
            format!("--data-dir={}", file("data")),
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
    }

    /// Kills `name`'s etcd (the newest one) and waits until it answers no more.
    fn kill(&mut self, node: &Node, client: &EtcdClient) {
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
    fn logs(&self) -> String {
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
fn eventually(what: &str, secs: u64, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "{what}: not after {secs}s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn timeouts() -> JoinTimeouts {
    JoinTimeouts {
        healthy: Duration::from_secs(60),
        promote: Duration::from_secs(60),
    }
}

/// (name, is learner) of every member, sorted; unstarted members show as "".
fn shape(members: &[Member]) -> Vec<(String, bool)> {
    let mut v: Vec<(String, bool)> = members
        .iter()
        .map(|m| (m.name.clone(), m.is_learner))
        .collect();
    v.sort();
    v
}

fn voters(names: &[&str]) -> Vec<(String, bool)> {
    names.iter().map(|n| (n.to_string(), false)).collect()
}

/// The member list once it shows `want` (a member answers the list from its own state, which
/// may trail the leader's for a moment under load), or the last list seen after 10 s.
fn settled(client: &EtcdClient, want: &[(String, bool)]) -> Vec<Member> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let members = client.list().unwrap();
        if shape(&members) == want || std::time::Instant::now() >= deadline {
            return members;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

fn id_of(members: &[Member], name: &str) -> u64 {
    members
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("no member {name} in {members:?}"))
        .id
}

#[test]
#[ignore = "needs KUBEBOOT_BIN_DIR"]
fn etcd_members_learner_join_resume_stale_replacement_and_refusal() {
    let mut c = Cluster::new();
    let n1 = Node::new("node1", 21);
    let n2 = Node::new("node2", 22);
    let n3 = Node::new("node3", 23);
    let n4 = Node::new("node4", 24);
    // node2's endpoint first: refused while it is down, "not supported" while it is a
    // learner; the client goes on to node1.
    let client = c.client(&[n2.client_url(), n1.client_url()]);
    c.start(&n1, &format!("node1={}", n1.peer_url()), false);
    eventually("node1 healthy", 30, || client.healthy(&n1.client_url()));

    // node2 joins: added as a learner (seen from inside the start), started with the plan's
    // --initial-cluster, promoted.
    let out = Out::capture();
    let mut seen = None;
    let joined = join_member(
        &client,
        "node2",
        &n2.peer_url(),
        |ic| {
            let flag = initial_cluster_flag(ic);
            seen = Some((flag.clone(), shape(&client.list()?)));
            c.start(&n2, &flag, true);
            Ok(())
        },
        timeouts(),
        &out,
    );
    assert!(joined.is_ok(), "{joined:?}\n{}{}", out.captured(), c.logs());
    let (flag, during) = seen.expect("start called");
    // In etcd's member order (by ID), which etcd does not care about.
    let mut pairs: Vec<&str> = flag.split(',').collect();
    pairs.sort();
    assert_eq!(
        pairs,
        [
            format!("node1={}", n1.peer_url()),
            format!("node2={}", n2.peer_url())
        ]
    );
    assert_eq!(
        during,
        vec![(String::new(), true), ("node1".into(), false)],
        "node2 is an unstarted learner while it starts"
    );
    let said = out.captured();
    assert!(
        said.contains(
            "[etcd] Announced new etcd member joining to the existing etcd cluster as a learner"
        ),
        "{said}"
    );
    assert!(
        said.contains("[etcd] Promoted etcd member \"node2\""),
        "{said}"
    );
    assert_eq!(shape(&client.list().unwrap()), voters(&["node1", "node2"]));

    // node3's first join fails after the add (its manifest could not be written): its
    // learner stays, unstarted, and the error says a re-run continues.
    let out = Out::capture();
    let err = join_member(
        &client,
        "node3",
        &n3.peer_url(),
        |_| anyhow::bail!("disk full"),
        timeouts(),
        &out,
    )
    .expect_err("start failed");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("running the join again continues") && msg.contains("disk full"),
        "{msg}"
    );
    let members = client.list().unwrap();
    assert_eq!(
        shape(&members),
        vec![
            (String::new(), true),
            ("node1".into(), false),
            ("node2".into(), false)
        ]
    );
    let learner_id = members.iter().find(|m| m.is_learner).unwrap().id;
    // The re-run resumes that learner instead of adding another.
    let out = Out::capture();
    let joined = join_member(
        &client,
        "node3",
        &n3.peer_url(),
        |ic| {
            c.start(&n3, &initial_cluster_flag(ic), true);
            Ok(())
        },
        timeouts(),
        &out,
    );
    assert!(joined.is_ok(), "{joined:?}\n{}{}", out.captured(), c.logs());
    assert!(
        out.captured().contains(&format!(
            "Found this node's etcd member (id {learner_id:x})"
        )),
        "{}",
        out.captured()
    );
    let members = settled(&client, &voters(&["node1", "node2", "node3"]));
    assert_eq!(shape(&members), voters(&["node1", "node2", "node3"]));
    assert_eq!(id_of(&members, "node3"), learner_id);

    // A re-run on node2, a healthy voter: nothing changes.
    let out = Out::capture();
    let mut started = false;
    join_member(
        &client,
        "node2",
        &n2.peer_url(),
        |_| {
            started = true;
            Ok(())
        },
        timeouts(),
        &out,
    )
    .expect("re-run on a voter");
    assert!(started, "the manifest is written again (idempotently)");
    let said = out.captured();
    assert!(said.contains("already a voting etcd member"), "{said}");
    assert!(!said.contains("Waiting for the new etcd member"), "{said}");
    assert_eq!(client.list().unwrap(), members);

    // node2 is reinstalled: its etcd is gone, its member stale. 3 voters with one dead keep a
    // quorum of 2; removing the dead one leaves 2 healthy of 2 voters (quorum 2).
    let old_id = id_of(&members, "node2");
    c.kill(&n2, &client);
    let out = Out::capture();
    let joined = join_member(
        &client,
        "node2",
        &n2.peer_url(),
        |ic| {
            c.start(&n2, &initial_cluster_flag(ic), true);
            Ok(())
        },
        timeouts(),
        &out,
    );
    assert!(joined.is_ok(), "{joined:?}\n{}{}", out.captured(), c.logs());
    let said = out.captured();
    assert!(
        said.contains(&format!(
            "[etcd] Removed stale member \"node2\" (id {old_id:x}) at {}: unreachable, re-added as this node",
            n2.peer_url()
        )),
        "{said}"
    );
    let members = settled(&client, &voters(&["node1", "node2", "node3"]));
    assert_eq!(shape(&members), voters(&["node1", "node2", "node3"]));
    assert_ne!(id_of(&members, "node2"), old_id);

    // node3 dies; node4 may not join a degraded cluster: refused naming node3, nothing added.
    c.kill(&n3, &client);
    let out = Out::capture();
    let mut started = false;
    let err = join_member(
        &client,
        "node4",
        &n4.peer_url(),
        |_| {
            started = true;
            Ok(())
        },
        timeouts(),
        &out,
    )
    .expect_err("refused");
    assert!(!started);
    match err.downcast_ref::<EtcdJoinRefused>() {
        Some(EtcdJoinRefused::Unhealthy { members }) => {
            assert_eq!(members.len(), 1, "{members:?}");
            assert!(members[0].contains("\"node3\""), "{members:?}");
        }
        other => panic!("expected an unhealthy-members refusal, got {other:?}: {err:#}"),
    }
    assert_eq!(client.list().unwrap(), members);
}
