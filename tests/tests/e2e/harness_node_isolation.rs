//! Scenario: the harness's nodes are isolated from the host and from the outside world, and
//! reach each other. Needs no kubeboot and no Kubernetes binaries.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use tests::{Node, require_root, step, wait_until};

#[test]
#[ignore = "needs root: creates network namespaces with scripts/node.sh"]
fn harness_node_isolation() -> Result<()> {
    step("running as root", require_root)?;
    let a = step("create node a", || Node::allocate("iso-a"))?;
    let b = step("create node b", || Node::allocate("iso-b"))?;

    step("each node has its own hostname", || {
        for n in [&a, &b] {
            let host = n.exec_ok(&["hostname"])?;
            ensure!(
                host.trim() == n.name(),
                "hostname in {} is {host:?}",
                n.name()
            );
            let hosts = n.read_file("/etc/hosts")?;
            ensure!(
                hosts.contains(&format!("{}\t{}", n.ip(), n.name())),
                "/etc/hosts of {} lacks its own entry:\n{hosts}",
                n.name()
            );
            let resolv = n.read_file("/etc/resolv.conf")?;
            ensure!(
                !resolv
                    .lines()
                    .any(|l| l.trim_start().starts_with("nameserver")),
                "resolv.conf of {} names a nameserver:\n{resolv}",
                n.name()
            );
        }
        Ok(())
    })?;

    step("each node has only lo and its own address", || {
        for n in [&a, &b] {
            let out = n.exec_ok(&["ip", "-4", "-o", "addr", "show"])?;
            let addrs: Vec<(String, String)> = out
                .lines()
                .map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    (f[1].to_string(), f[3].to_string())
                })
                .collect();
            let want = vec![
                ("lo".to_string(), "127.0.0.1/8".to_string()),
                ("eth0".to_string(), n.cidr().to_string()),
            ];
            ensure!(
                addrs == want,
                "addresses in {}: {addrs:?}, want {want:?}",
                n.name()
            );
        }
        Ok(())
    })?;

    step(
        "the directories kubeboot writes are private to each node",
        || {
            for dir in [
                "/etc/kubeboot",
                "/var/lib/kubeboot",
                "/var/lib/kubelet",
                "/etc/cni/net.d",
                "/etc/kubernetes",
            ] {
                let marker = format!("{dir}/harness-marker");
                a.sh_ok(&format!("mkdir -p {dir} && echo {} > {marker}", a.name()))?;
                ensure!(a.read_file(&marker)?.trim() == a.name());
                ensure!(
                    !b.path_exists(&marker)?,
                    "{marker} written in a is visible in b"
                );
                ensure!(
                    !Path::new(&marker).exists(),
                    "{marker} written in a is visible on the host"
                );
            }
            Ok(())
        },
    )?;

    step("node b reaches a TCP server on node a's address", || {
        let log = std::env::temp_dir().join(format!("{}-http.log", a.name()));
        let port = "8080";
        let mut server = a.spawn(
            &[
                "python3",
                "-m",
                "http.server",
                "--bind",
                &a.ip().to_string(),
                "--directory",
                "/etc/kubernetes",
                port,
            ],
            &log,
        )?;
        let listen = format!("{}:{port}", a.ip());
        let res = (|| {
            wait_until(
                "http server on node a",
                Duration::from_secs(30),
                Duration::from_millis(200),
                || Ok(a.exec_ok(&["ss", "-ltnH"])?.contains(&listen)),
            )?;
            let url = format!("http://{listen}/harness-marker");
            let body = b.exec_ok(&["curl", "-sS", "--max-time", "10", &url])?;
            ensure!(
                body.trim() == a.name(),
                "GET {url} from b returned {body:?}"
            );

            let pids = a.pids_named("python3")?;
            ensure!(
                pids.contains(&server.id()),
                "server pid {} not among a's python3 {pids:?}",
                server.id()
            );
            ensure!(
                b.pids_named("python3")?.is_empty(),
                "a's server is listed as b's process"
            );
            a.kill9(server.id())?;
            wait_until(
                "killed server to disappear",
                Duration::from_secs(10),
                Duration::from_millis(100),
                || Ok(a.pids_named("python3")?.is_empty()),
            )?;
            Ok(())
        })();
        let _ = server.kill();
        let _ = server.wait();
        let _ = std::fs::remove_file(&log);
        res
    })?;

    step("no route leaves the machine", || {
        let hub = {
            let routes = a.exec_ok(&["ip", "-4", "route", "show", "default"])?;
            let f: Vec<&str> = routes.split_whitespace().collect();
            ensure!(
                f.len() >= 5
                    && f[0] == "default"
                    && f[1] == "via"
                    && f[3] == "dev"
                    && f[4] == "eth0",
                "default route of a: {routes:?}"
            );
            f[2].to_string()
        };
        ensure!(
            hub.starts_with("10.124."),
            "hub address {hub} is not in the test range"
        );
        // Route lookup only: no packet is sent to an outside address.
        let get = a.exec_ok(&["ip", "-4", "route", "get", "8.8.8.8"])?;
        ensure!(
            get.contains(&format!("via {hub} dev eth0")),
            "8.8.8.8 does not resolve via the hub in a: {get}"
        );
        // The hub answers for itself and has nowhere to forward: a port on the hub is
        // refused, and an unused address in the hub's subnet does not answer at all.
        let probe = |addr: &str| -> Result<String> {
            let script = format!(
                "import socket\ns = socket.socket()\ns.settimeout(5)\n\
                 try:\n    s.connect(('{addr}', 9))\n    print('connected')\n\
                 except OSError as e:\n    print(type(e).__name__)\n"
            );
            Ok(b.exec_ok(&["python3", "-c", &script])?.trim().to_string())
        };
        let hub_port = probe(&hub)?;
        ensure!(
            hub_port == "ConnectionRefusedError",
            "connect to {hub}:9 from b: {hub_port}"
        );
        let unused = "10.124.255.250";
        let unused_res = probe(unused)?;
        ensure!(
            unused_res != "connected",
            "connect to unused {unused}:9 from b succeeded"
        );
        // The host's network namespace has none of the nodes' links.
        let host_links = std::process::Command::new("ip")
            .args(["-o", "link", "show"])
            .output()
            .context("ip link on the host")?;
        let host_links = String::from_utf8_lossy(&host_links.stdout);
        ensure!(
            !host_links.contains("kb-br0") && !host_links.contains("kbv"),
            "node links leaked into the host namespace:\n{host_links}"
        );
        Ok(())
    })?;

    step("destroy removes the node", || {
        let name = a.name().to_string();
        a.destroy()?;
        ensure!(
            !Path::new(&format!("/run/netns/{name}")).exists(),
            "netns {name} survived"
        );
        ensure!(
            !Path::new(&format!("/var/lib/kubeboot-nodes/{name}")).exists(),
            "state of {name} survived"
        );
        Ok(())
    })?;
    drop(b);
    Ok(())
}
