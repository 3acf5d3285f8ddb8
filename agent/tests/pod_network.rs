//! Pods without hostNetwork: a network namespace of their own, wired by the node's CNI
//! network (the Debian plugins: bridge with host-local addresses, then bandwidth, a chained
//! plugin that fails without the bridge's result as `prevResult`). Needs root and the
//! plugins; each test says why it skips otherwise.
//!
//! Nothing here touches the machine's own network: each test's agent runs on a thread inside
//! a network namespace the test creates ([`TestNet`]), so the bridge, the host side of the
//! veths and every address live there, in a private subnet with no route anywhere else. The
//! test contacts only the pod's address, from inside that namespace.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agent::host::netns;
use agent::status::PodStatus;
use common::{Node, alive, pod, wait_until};

const PLUGIN_DIR: &str = "/usr/lib/cni";

/// Why this machine cannot run these tests, if it cannot.
fn skip_reason() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root (network namespaces, CNI plugins)".into());
    }
    ["bridge", "host-local", "loopback", "bandwidth"]
        .iter()
        .map(|p| Path::new(PLUGIN_DIR).join(p))
        .find(|p| !p.is_file())
        .map(|p| {
            format!(
                "needs the CNI plugin {} (Debian: containernetworking-plugins)",
                p.display()
            )
        })
}

/// The network namespace a test's agent runs in. Dropping it removes the namespace, and
/// with it the bridge and whatever else the plugins left there.
struct TestNet {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestNet {
    fn new() -> TestNet {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent-net");
        netns::create(&path).unwrap();
        TestNet { path, _dir: dir }
    }

    /// Runs `f` on a thread inside the namespace (the commands it starts run there too).
    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                netns::enter(&self.path).expect("enter the test's network namespace");
                f()
            })
            .join()
            .expect("the thread in the test's network namespace")
        })
    }

    /// `ip -o link show type veth` inside the namespace.
    fn veths(&self) -> String {
        self.run(|| {
            let out = std::process::Command::new("ip")
                .args(["-o", "link", "show", "type", "veth"])
                .output()
                .expect("ip");
            assert!(out.status.success(), "{out:?}");
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        let _ = netns::remove(&self.path);
    }
}

/// The test's network namespace and a node whose agent runs in it (the node first, so that it
/// is dropped first); `None`, saying why, where this machine cannot run the test.
fn net_and_node() -> Option<(Node, TestNet)> {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return None;
    }
    let net = TestNet::new();
    let mut n = Node::new("v1.20.2");
    n.agent_netns = Some(net.path.clone());
    n.cfg.cni_plugin_dirs = vec![PathBuf::from(PLUGIN_DIR)];
    Some((n, net))
}

/// A bridge network `name` on `10.199.<subnet>.0/24` whose bridge is the pods' gateway; no
/// masquerade and no default route.
fn conflist(n: &Node, name: &str, subnet: u8) -> String {
    serde_json::json!({
        "cniVersion": "0.4.0",
        "name": name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": format!("{name}br"),
                "isGateway": true,
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": format!("10.199.{subnet}.0/24") }]],
                    "dataDir": ipam_dir(n),
                },
            },
            { "type": "bandwidth" },
        ],
    })
    .to_string()
}

fn ipam_dir(n: &Node) -> PathBuf {
    n.tmp.path().join("ipam")
}

/// Writes the CNI configuration as a network operator would: a dot-file renamed into place.
fn write_conflist(n: &Node, text: &str) {
    let dir = &n.cfg.cni_conf_dir;
    std::fs::create_dir_all(dir).unwrap();
    let tmp = dir.join(".10-test.conflist.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join("10-test.conflist")).unwrap();
}

/// host-local's leases of network `name`: one file per address.
fn leases(n: &Node, name: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(ipam_dir(n).join(name)) else {
        return Vec::new();
    };
    let mut v: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|f| f.parse::<IpAddr>().is_ok())
        .collect();
    v.sort();
    v
}

/// The pod runs `serve 8080` (prints eth0's address, then HTTP on 0.0.0.0:8080). Ready only
/// once an httpGet without a host reaches it (the pod's IP) and an exec probe finds eth0
/// (it runs in the pod's namespace).
fn web_pod() -> String {
    let probes = r#"    readinessProbe:
      httpGet: {path: /, port: 8080}
      periodSeconds: 1
    startupProbe:
      exec: {command: [ip, -o, addr, show, dev, eth0]}
      periodSeconds: 1
"#;
    pod(
        "web",
        "serve, \"8080\"",
        "  terminationGracePeriodSeconds: 2\n",
        probes,
    )
    .replace("hostNetwork: true", "hostNetwork: false")
}

fn wait_ready(n: &Node, what: &str) -> PodStatus {
    n.wait_pod(what, |p| {
        (p.containers[0].ready && p.containers[0].started).then(|| p.clone())
    })
}

fn inode(path: impl AsRef<Path>) -> u64 {
    std::fs::metadata(path).unwrap().ino()
}

/// One HTTP/1.0 GET, bounded by timeouts.
fn http_get(ip: IpAddr, port: u16) -> String {
    let timeout = Duration::from_secs(5);
    let mut s = TcpStream::connect_timeout(&SocketAddr::new(ip, port), timeout)
        .unwrap_or_else(|e| panic!("connect to the pod at {ip}:{port}: {e}"));
    s.set_read_timeout(Some(timeout)).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn sandbox_records(n: &Node) -> usize {
    std::fs::read_dir(n.cfg.state_dir.join("sandboxes")).map_or(0, |d| d.count())
}

#[test]
fn pod_gets_its_own_network_namespace_through_cni() {
    let Some((mut n, net)) = net_and_node() else {
        return;
    };
    write_conflist(&n, &conflist(&n, "kbt1", 1));
    n.start_agent();
    n.write_manifest("web", &web_pod());
    let p = wait_ready(&n, "the pod to be ready");

    // Its address comes from the network, and the status says so.
    assert!(!p.host_network);
    assert_eq!(p.pod_ips.len(), 1, "{p:?}");
    let ip: IpAddr = p.pod_ips[0].parse().unwrap();
    assert!(ip.to_string().starts_with("10.199.1."), "{ip}");
    let text = n.status().render_text();
    assert!(text.contains(&ip.to_string()), "{text}");
    assert_eq!(leases(&n, "kbt1"), [ip.to_string()]);

    // The container runs in the pod's namespace: neither the test's nor the agent's.
    let netns_file = PathBuf::from(p.netns.clone().unwrap());
    assert!(netns_file.starts_with(&n.cfg.netns_dir), "{netns_file:?}");
    let shim = p.containers[0].pid.unwrap();
    let child = n.container_pid(shim);
    let pod_ns = inode(&netns_file);
    assert_eq!(inode(format!("/proc/{child}/ns/net")), pod_ns);
    assert_ne!(pod_ns, inode("/proc/self/ns/net"));
    assert_ne!(pod_ns, inode(&net.path));

    // Its eth0 has the address; it answers from the bridge's side.
    let log = PathBuf::from(p.containers[0].log_file.clone().unwrap());
    let printed = wait_until("the container's address in its log", || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|t| t.contains(" inet "))
    });
    assert!(printed.contains(&format!("inet {ip}/24")), "{printed}");
    let reply = net.run(|| http_get(ip, 8080));
    assert!(reply.starts_with("HTTP/1.0 200"), "{reply}");
    assert!(net.veths().contains("master kbt1br"), "{}", net.veths());

    // An agent restart adopts the pod and its network: no second ADD (host-local would
    // have leased the next address).
    n.stop_agent();
    assert!(alive(child));
    n.start_agent();
    let again = wait_ready(&n, "the adopted pod to be ready");
    assert_eq!(again.containers[0].pid, Some(shim));
    assert_eq!(again.pod_ips, p.pod_ips);
    assert_eq!(inode(&netns_file), pod_ns);
    assert_eq!(leases(&n, "kbt1"), [ip.to_string()]);

    // Removed: the container stops, then DEL releases the address and the veth, and the
    // namespace goes.
    std::fs::remove_file(n.manifest("web")).unwrap();
    wait_until("the pod and its network to be gone", || {
        (n.status().pods.is_empty() && !netns_file.exists() && leases(&n, "kbt1").is_empty())
            .then_some(())
    });
    assert!(!alive(child) && !alive(shim));
    assert_eq!(net.veths(), "");
    assert_eq!(sandbox_records(&n), 0);
}

#[test]
fn pod_waits_for_a_cni_configuration_and_reset_removes_its_network() {
    let Some((mut n, net)) = net_and_node() else {
        return;
    };
    n.start_agent();
    n.write_manifest("web", &web_pod());

    // No configuration yet: a reason that names the directory, no process, no restarts.
    let c = n.wait_container("NetworkNotReady", |c| {
        c.reason.as_deref() == Some("NetworkNotReady")
    });
    let dir = n.cfg.cni_conf_dir.display().to_string();
    let m = c.message.unwrap_or_default();
    assert!(
        m.starts_with(&format!("no CNI configuration in {dir}")),
        "{m}"
    );
    assert_eq!((c.state.as_str(), c.restart_count), ("waiting", 0));
    let text = n.status().render_text();
    assert!(
        text.contains("NetworkNotReady: no CNI configuration in"),
        "{text}"
    );
    assert!(n.marked().is_empty());
    assert_eq!(sandbox_records(&n), 0);

    // The configuration appears: the pod starts.
    write_conflist(&n, &conflist(&n, "kbt2", 2));
    let p = wait_ready(&n, "the pod to start once the configuration is there");
    assert!(p.pod_ips[0].starts_with("10.199.2."), "{p:?}");
    assert_eq!(p.containers[0].restart_count, 0);
    let netns_file = PathBuf::from(p.netns.clone().unwrap());
    assert_eq!(leases(&n, "kbt2"), [p.pod_ips[0].clone()]);

    // kubeboot reset: the agent stopped, every pod process and every pod network goes.
    n.stop_agent();
    let layout = n.layout.clone();
    let stopped = net
        .run(|| agent::stop_all_pods(&layout, Duration::from_secs(2)))
        .unwrap();
    assert!(stopped >= 2, "the shim and the container: {stopped}");
    assert!(n.marked().is_empty());
    assert!(!netns_file.exists());
    assert!(leases(&n, "kbt2").is_empty());
    assert_eq!(net.veths(), "");
    assert_eq!(sandbox_records(&n), 0);
}
