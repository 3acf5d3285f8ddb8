//! Scenario: bad input to `kubeboot init` gets a clear error on stderr, a non-zero exit code,
//! and leaves the node as it was.

use anyhow::{Result, ensure};
use tests::{CmdOutput, NODE_STATE, Node, assert_refused, bin_dir, require_root, step};

fn write_config(node: &Node, name: &str, yaml: &str) -> Result<String> {
    let path = format!("/tmp/kb-e2e-{}-{name}.yaml", node.name());
    node.sh_ok(&format!("cat > {path} <<'EOF'\n{yaml}\nEOF"))?;
    Ok(path)
}

#[test]
#[ignore = "needs KUBEBOOT_BIN_DIR"]
fn init_bad_input() -> Result<()> {
    step("running as root", require_root)?;
    let bin = step("real binaries present", bin_dir)?;
    let bin = bin.to_string_lossy().to_string();
    let node = step("create node", || Node::allocate("init-bad"))?;
    let ip = node.ip().to_string();
    let empty = node.sh_ok(NODE_STATE)?;
    let base = ["init", "--bin-dir", bin.as_str(), "--bin-dir", "/usr/bin"];
    let init = |extra: &[&str]| -> Result<CmdOutput> {
        let mut argv: Vec<&str> = base.to_vec();
        argv.extend_from_slice(extra);
        node.kubeboot(&argv)
    };

    step(
        "typo in a config field names the field and the line",
        || {
            let cfg = write_config(
                &node,
                "typo",
                &format!(
                    "apiVersion: kubeadm.k8s.io/v1beta2\nkind: InitConfiguration\nlocalAPIEndpoint:\n  advertiseAddress: {ip}\n---\napiVersion: kubeadm.k8s.io/v1beta2\nkind: ClusterConfiguration\nnetworking:\n  podSubnett: 10.244.0.0/16\n"
                ),
            )?;
            assert_refused(
                &node,
                "typo",
                &init(&["--config", &cfg])?,
                &["podSubnett", "line 9"],
                &empty,
            )
        },
    )?;

    step("wrong apiVersion and wrong kind", || {
        let cfg = write_config(
            &node,
            "apiversion",
            "apiVersion: kubeadm.k8s.io/v1alpha9\nkind: InitConfiguration\n",
        )?;
        assert_refused(
            &node,
            "apiVersion",
            &init(&["--config", &cfg])?,
            &["kubeadm.k8s.io/v1alpha9"],
            &empty,
        )?;
        let cfg = write_config(
            &node,
            "kind",
            "apiVersion: kubeadm.k8s.io/v1beta2\nkind: InitConfig\n",
        )?;
        assert_refused(
            &node,
            "kind",
            &init(&["--config", &cfg])?,
            &["InitConfig", "InitConfiguration"],
            &empty,
        )
    })?;

    step("--config mixed with flags kubeadm refuses", || {
        let cfg = write_config(
            &node,
            "mix",
            "apiVersion: kubeadm.k8s.io/v1beta2\nkind: InitConfiguration\n",
        )?;
        let out = init(&["--config", &cfg, "--pod-network-cidr", "10.244.0.0/16"])?;
        assert_refused(
            &node,
            "mix",
            &out,
            &["can not mix '--config' with arguments [pod-network-cidr]"],
            &empty,
        )
    })?;

    step("bad and overlapping CIDRs", || {
        assert_refused(
            &node,
            "bad cidr",
            &init(&["--pod-network-cidr", "10.244.0.0/33"])?,
            &["10.244.0.0/33"],
            &empty,
        )?;
        let out = init(&["--pod-network-cidr", "10.96.0.0/16"])?;
        assert_refused(&node, "overlap", &out, &["10.96.0.0/16", "overlap"], &empty)
    })?;

    step("advertise address not on this node", || {
        let out = init(&["--apiserver-advertise-address", "10.9.9.9"])?;
        assert_refused(&node, "advertise", &out, &["10.9.9.9", &ip], &empty)
    })?;

    step("unparsable and unsupported Kubernetes versions", || {
        assert_refused(
            &node,
            "unparsable",
            &init(&["--kubernetes-version", "v1.x"])?,
            &["v1.x"],
            &empty,
        )?;
        assert_refused(
            &node,
            "too old",
            &init(&["--kubernetes-version", "v1.12.0"])?,
            &["v1.12.0"],
            &empty,
        )
    })?;

    step("missing and wrong-version component binaries", || {
        let out = node.kubeboot(&[
            "init",
            "--bin-dir",
            "/nonexistent-kb",
            "--kubernetes-version",
            "v1.20.2",
        ])?;
        assert_refused(
            &node,
            "missing binary",
            &out,
            &[
                "[ERROR ComponentBinary-kube-apiserver]",
                "/nonexistent-kb",
                "--bin-dir",
            ],
            &empty,
        )?;
        let out = init(&["--kubernetes-version", "v1.20.3"])?;
        assert_refused(
            &node,
            "wrong version",
            &out,
            &[
                "[ERROR ComponentBinary-kube-apiserver]",
                "v1.20.2",
                "v1.20.3",
            ],
            &empty,
        )
    })?;

    step("ports 6443 and 2379 already in use", || {
        let log = std::env::temp_dir().join(format!("kb-e2e-{}-listen.log", node.name()));
        let mut child = node.spawn(
            &["python3", "-c", "import socket,time\nfor p in (6443, 2379):\n s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', p)); s.listen(); globals()[f's{p}']=s\ntime.sleep(120)"],
            &log,
        )?;
        let result = tests::wait_until(
            "ports bound",
            std::time::Duration::from_secs(10),
            std::time::Duration::from_millis(100),
            || Ok(node.sh("ss -ltn | grep -q ':2379 '")?.success()),
        )
        .and_then(|_| {
            let out = init(&[])?;
            assert_refused(
                &node,
                "ports",
                &out,
                &[
                    "[ERROR Port-6443]: Port 6443 is in use",
                    "[ERROR Port-2379]: Port 2379 is in use",
                ],
                &empty,
            )
        });
        for pid in node.pids_named("python3")? {
            node.kill9(pid)?;
        }
        let _ = child.wait();
        result
    })?;

    step("a --cri-socket nothing serves", || {
        let out = init(&["--cri-socket", "unix:///run/nope/cri.sock"])?;
        assert_refused(
            &node,
            "cri-socket",
            &out,
            &[
                "[ERROR CRI]",
                "the CRI socket \"/run/nope/cri.sock\" does not exist",
                "--cri-socket",
            ],
            &empty,
        )
    })?;

    step("an unknown --pod-network", || {
        let out = init(&["--pod-network", "flannel"])?;
        assert_refused(
            &node,
            "pod-network",
            &out,
            &[
                "--pod-network \"flannel\" is not supported",
                "\"bridge\"",
                "\"none\"",
            ],
            &empty,
        )
    })?;

    step("a CNI plugin binary missing", || {
        // Only this node's mount namespace sees the plugin directories without `portmap`.
        let hide = "for d in /usr/lib/cni /opt/cni/bin; do [ -e $d/portmap ] && mount --bind /dev/null $d/portmap; done; true";
        node.sh_ok(hide)?;
        let out = init(&[]);
        node.sh_ok(
            "for d in /usr/lib/cni /opt/cni/bin; do umount $d/portmap 2>/dev/null; done; true",
        )?;
        let out = out?;
        assert_refused(
            &node,
            "CNI plugin",
            &out,
            &["[ERROR CNIPlugins]", "portmap", "--pod-network none"],
            &empty,
        )
    })?;

    step("unknown phase in --skip-phases", || {
        let out = init(&["--skip-phases", "certs/nope"])?;
        assert_refused(
            &node,
            "skip-phases",
            &out,
            &["invalid phase name: certs/nope"],
            &empty,
        )
    })?;

    step(
        "existing certificate with wrong SANs or from another CA is refused, not replaced",
        || {
            // A PKI made for another address: init must refuse the apiserver certificate.
            node.kubeboot_ok(&[
                "init",
                "phase",
                "certs",
                "all",
                "--apiserver-advertise-address",
                "10.9.9.9",
                "--kubernetes-version",
                "v1.20.2",
            ])?;
            let crt_before = node.read_file("/etc/kubernetes/pki/apiserver.crt")?;
            let state_before = node.sh_ok(NODE_STATE)?;
            let out = init(&[])?;
            interrupted_marker_left(&node)?;
            assert_refused(
                &node,
                "wrong SANs",
                &out,
                &[
                    "error execution phase certs/apiserver",
                    "is not valid for IP",
                    &ip,
                    "kubeboot reset",
                ],
                &state_before,
            )?;
            ensure!(
                node.read_file("/etc/kubernetes/pki/apiserver.crt")? == crt_before,
                "apiserver.crt was replaced"
            );
            // Another CA in place of the one that signed apiserver.crt.
            let other = format!("/tmp/kb-e2e-{}-other", node.name());
            node.kubeboot_ok(&[
                "init",
                "phase",
                "certs",
                "ca",
                "--cert-dir",
                &other,
                "--kubernetes-version",
                "v1.20.2",
            ])?;
            node.sh_ok(&format!("cp {other}/ca.crt {other}/ca.key /etc/kubernetes/pki/ && rm -rf {other} && rm /etc/kubernetes/pki/apiserver.*"))?;
            node.kubeboot_ok(&[
                "init",
                "phase",
                "certs",
                "apiserver",
                "--kubernetes-version",
                "v1.20.2",
            ])?;
            node.kubeboot_ok(&[
                "init",
                "phase",
                "certs",
                "ca",
                "--cert-dir",
                &other,
                "--kubernetes-version",
                "v1.20.2",
            ])?;
            node.sh_ok(&format!(
                "cp {other}/ca.crt {other}/ca.key /etc/kubernetes/pki/ && rm -rf {other}"
            ))?;
            let state_before = node.sh_ok(NODE_STATE)?;
            let out = init(&[])?;
            interrupted_marker_left(&node)?;
            assert_refused(
                &node,
                "other CA",
                &out,
                &["error execution phase certs/apiserver", "apiserver"],
                &state_before,
            )?;
            node.kubeboot_ok(&["reset", "-f"])?;
            Ok(())
        },
    )?;

    node.destroy()
}

/// An init that failed after its preflight leaves only its "in progress" marker, so that the
/// same command run again resumes (phases/src/init/resume.rs); the marker is checked, then
/// removed so that the rest of the node can be compared with its state before.
fn interrupted_marker_left(node: &Node) -> Result<()> {
    let marker = "/var/lib/kubeboot/init-in-progress";
    ensure!(
        node.path_exists(marker)?,
        "{marker} is missing after an init that failed past its preflight"
    );
    node.sh_ok(&format!("rm {marker}"))?;
    Ok(())
}
