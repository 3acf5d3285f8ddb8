//! Scenario: after `kubeboot init` the cluster holds the objects kubeadm 1.20 creates
//! (compared with the real kubeadm's `init --dry-run` capture in
//! manifests/tests/golden/v1.20.2/init-dryrun-api-objects.txt: names, types, keys, rules,
//! subjects, roleRefs; kubeadm-config's `controllerManager` but for kubeboot's listed
//! extraArgs, which must be there); the bootstrap signer signs cluster-info with the init
//! token and kubeboot's JWS verifier accepts it; `token create|list|delete` work and agree
//! with the real `kubeadm token list`; an expired token is removed by the token cleaner; bad
//! token input fails and changes nothing.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use tests::{Node, bin_dir, require_root, step, wait_until};

const GOLDEN: &str =
    include_str!("../../../manifests/tests/golden/v1.20.2/init-dryrun-api-objects.txt");
const TOKEN: &str = "abcdef.0123456789abcdef";

/// What kubeboot's uploaded ClusterConfiguration holds in `controllerManager.extraArgs` beyond
/// kubeadm's, on purpose, for this scenario's config (a pod network, no extraArgs of its own):
/// (flag, value, reason). Each must be there with this value: every control plane that joins
/// later, kubeboot's or kubeadm's, runs the controller-manager it records.
const KUBEBOOT_CONTROLLER_MANAGER_ARGS: &[(&str, &str, &str)] = &[
    (
        "controllers",
        "*,bootstrapsigner,tokencleaner,-nodeipam",
        "kube-controller-manager v1.20's node IPAM waits 10 s before its first Node list and \
         holds back every controller's start; the kubeboot agents of the control-plane nodes \
         give Nodes their podCIDRs instead",
    ),
    (
        "kube-api-qps",
        "100",
        "the default client limit (20 qps, burst 30) makes starting ~30 controllers take ~4 s",
    ),
    ("kube-api-burst", "200", "as above"),
];

/// One object kubeadm creates: resource, namespace, name and the object (as JSON).
struct Expected {
    resource: String,
    namespace: Option<String>,
    name: String,
    object: Value,
}

fn expected_objects() -> Result<Vec<Expected>> {
    let mut out = Vec::new();
    let mut lines = GOLDEN.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(rest) = line.strip_prefix("[dryrun] Would perform action CREATE on resource \"")
        else {
            continue;
        };
        let resource = rest.split('"').next().context("resource")?.to_string();
        lines.next();
        let mut yaml = String::new();
        while let Some(l) = lines.peek().and_then(|l| l.strip_prefix('\t')) {
            yaml.push_str(l);
            yaml.push('\n');
            lines.next();
        }
        let object = yaml_to_json(&yaml)?;
        let name = object["metadata"]["name"]
            .as_str()
            .context("name")?
            .to_string();
        let namespace = object["metadata"]["namespace"].as_str().map(str::to_string);
        // kubeadm's namespace on cluster-scoped RBAC objects is dropped by the API server.
        let namespace = namespace.filter(|_| !resource.starts_with("cluster"));
        out.push(Expected {
            resource,
            namespace,
            name,
            object,
        });
    }
    ensure!(
        out.len() == 15,
        "the golden capture has {} objects",
        out.len()
    );
    Ok(out)
}

fn yaml_to_json(yaml: &str) -> Result<Value> {
    Ok(yaml_serde::from_str(yaml)?)
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

fn get(node: &Node, e: &Expected) -> Result<Value> {
    let mut args = vec!["get", e.resource.as_str(), e.name.as_str()];
    if let Some(ns) = &e.namespace {
        args.extend_from_slice(&["-n", ns.as_str()]);
    }
    node.kubectl_json(&args)
}

/// The API server defaults `apiGroup: rbac.authorization.k8s.io` on Group and User subjects
/// (kubeadm's capture shows them before defaulting).
fn undefault_subjects(v: &mut Value) {
    if let Some(subjects) = v["subjects"].as_array_mut() {
        for s in subjects {
            if s["apiGroup"] == "rbac.authorization.k8s.io"
                && (s["kind"] == "Group" || s["kind"] == "User")
            {
                s.as_object_mut().map(|m| m.remove("apiGroup"));
            }
        }
    }
}

/// The ClusterConfiguration of a kubeadm-config ConfigMap, as JSON.
fn cluster_configuration(cm: &Value) -> Result<Value> {
    yaml_to_json(
        cm["data"]["ClusterConfiguration"]
            .as_str()
            .context("no ClusterConfiguration")?,
    )
}

/// kubeadm-config's `controllerManager` is kubeadm's but for exactly
/// [`KUBEBOOT_CONTROLLER_MANAGER_ARGS`], each present.
fn compare_controller_manager(got: &Value, want: &Value) -> Result<()> {
    let (got, want) = (cluster_configuration(got)?, cluster_configuration(want)?);
    let mut cm = got["controllerManager"].clone();
    for (flag, value, reason) in KUBEBOOT_CONTROLLER_MANAGER_ARGS {
        ensure!(!reason.trim().is_empty(), "{flag} needs a reason");
        let args = cm["extraArgs"].as_object_mut();
        let found = args.and_then(|a| a.remove(*flag));
        ensure!(
            found.as_ref().and_then(Value::as_str) == Some(*value),
            "kubeadm-config: controllerManager.extraArgs.{flag} is {found:?}, kubeboot sets {value:?}:\n{}",
            got["controllerManager"]
        );
    }
    // kubeadm writes `controllerManager: {}`.
    if cm["extraArgs"].as_object().is_some_and(|a| a.is_empty()) {
        cm.as_object_mut().map(|m| m.remove("extraArgs"));
    }
    ensure!(
        cm == want["controllerManager"],
        "kubeadm-config: controllerManager differs beyond kubeboot's listed extraArgs:\n kubeadm:  {}\n kubeboot: {}",
        want["controllerManager"],
        got["controllerManager"]
    );
    Ok(())
}

fn compare(node: &Node, e: &Expected) -> Result<()> {
    let mut got = get(node, e).with_context(|| format!("{}/{} is missing", e.resource, e.name))?;
    undefault_subjects(&mut got);
    let want = &e.object;
    let what = format!("{}/{}", e.resource, e.name);
    ensure!(
        got["kind"] == want["kind"],
        "{what}: kind {} vs {}",
        got["kind"],
        want["kind"]
    );
    for field in ["type", "rules", "roleRef", "subjects"] {
        ensure!(
            got[field] == want[field],
            "{what}: {field} differs:\n kubeadm:  {}\n kubeboot: {}",
            want[field],
            got[field]
        );
    }
    let (mut gk, wk) = (keys(&got["data"]), keys(&want["data"]));
    // cluster-info's signature for each bootstrap token (`jws-kubeconfig-<token id>`) is the
    // controller-manager's bootstrapsigner's doing, on any live cluster; kubeadm's capture is
    // from before it runs. Only the known token's may be there.
    if e.name == "cluster-info" {
        gk.retain(|k| k != "jws-kubeconfig-abcdef");
    }
    // The expiry key comes and goes with the TTL; the init token has one like kubeadm's.
    ensure!(gk == wk, "{what}: data keys {gk:?}, kubeadm has {wk:?}");
    let (ga, mut wa) = (
        keys(&got["metadata"]["annotations"]),
        keys(&want["metadata"]["annotations"]),
    );
    // This scenario's config supplies KubeletConfiguration and KubeProxyConfiguration
    // documents (the node's cgroupRoot, conntrack); kubeadm signs only the component configs
    // it generated itself, so the golden's hash annotation does not apply to those two.
    if ["configmaps/kubelet-config-1.20", "configmaps/kube-proxy"].contains(&what.as_str()) {
        wa.remove("kubeadm.kubernetes.io/component-config.hash");
    }
    ensure!(
        wa.is_subset(&ga),
        "{what}: annotations {ga:?}, kubeadm has {wa:?}"
    );
    if what == "configmaps/kubeadm-config" {
        compare_controller_manager(&got, want)?;
    }
    Ok(())
}

fn token_ids(node: &Node) -> Result<Vec<String>> {
    let out = node.kubeboot_ok(&["token", "list"])?;
    Ok(out
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|t| t.split('.').next())
        .map(str::to_string)
        .collect())
}

fn ca_hash(node: &Node) -> Result<String> {
    let pem = node.read_file("/etc/kubernetes/pki/ca.crt")?;
    Ok(pki::ca_cert_hash(&pem)?)
}

#[test]
#[ignore = "needs KUBEBOOT_BIN_DIR"]
fn cluster_objects() -> Result<()> {
    step("running as root", require_root)?;
    let bin = step("real binaries present", bin_dir)?;
    let bin = bin.to_string_lossy().to_string();
    let expected = step(
        "kubeadm's objects from the golden capture",
        expected_objects,
    )?;
    let node = step("create node", || Node::allocate("cluster-objects"))?;

    let init_out = step("kubeboot init with a known token", || {
        let args = crate::init_single_node::init_args_for(&node, &bin, Some(TOKEN))?;
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        node.kubeboot_ok(&argv)
    })?;

    step(
        "init prints kubeadm's lines and a join command with the CA hash",
        || {
            for want in [
                "[upload-config] Storing the configuration used in ConfigMap \"kubeadm-config\" in the \"kube-system\" Namespace",
                "[bootstrap-token] Using token: abcdef.0123456789abcdef",
                "[bootstrap-token] Creating the \"cluster-info\" ConfigMap in the \"kube-public\" namespace",
            ] {
                ensure!(
                    init_out.contains(want),
                    "init output lacks {want:?}:\n{init_out}"
                );
            }
            let hash = ca_hash(&node)?;
            let want = format!("--token {TOKEN} \\\n    --discovery-token-ca-cert-hash {hash}");
            ensure!(
                init_out.contains(&want),
                "init output lacks {want:?}:\n{init_out}"
            );
            Ok(())
        },
    )?;

    step(
        "every object kubeadm 1.20 creates exists and matches",
        || {
            for e in &expected {
                compare(&node, e)?;
            }
            Ok(())
        },
    )?;

    step("kubeadm-config holds this node in ClusterStatus", || {
        let cm = node.kubectl_json(&["get", "cm", "kubeadm-config", "-n", "kube-system"])?;
        let status = cm["data"]["ClusterStatus"]
            .as_str()
            .context("ClusterStatus")?;
        ensure!(
            status.contains(&format!("advertiseAddress: {}", node.ip())),
            "ClusterStatus:\n{status}"
        );
        Ok(())
    })?;

    step(
        "the bootstrap signer signs cluster-info and the signature verifies",
        || {
            let mut sig = String::new();
            let mut content = String::new();
            wait_until(
                "jws-kubeconfig-abcdef in cluster-info",
                Duration::from_secs(90),
                Duration::from_secs(2),
                || {
                    let cm =
                        node.kubectl_json(&["get", "cm", "cluster-info", "-n", "kube-public"])?;
                    match cm["data"]["jws-kubeconfig-abcdef"].as_str() {
                        Some(s) => {
                            sig = s.to_string();
                            content = cm["data"]["kubeconfig"].as_str().unwrap_or_default().into();
                            Ok(true)
                        }
                        None => Ok(false),
                    }
                },
            )?;
            ensure!(
                pki::jws::detached_signature_is_valid(&sig, &content, "abcdef", "0123456789abcdef"),
                "the signature {sig:?} does not verify"
            );
            ensure!(
                !pki::jws::detached_signature_is_valid(
                    &sig,
                    &content,
                    "abcdef",
                    "0123456789abcdeg"
                ),
                "a wrong secret verifies"
            );
            Ok(())
        },
    )?;

    let joined = step("token create --print-join-command", || {
        let line = node.kubeboot_ok(&["token", "create", "--print-join-command"])?;
        let words: Vec<&str> = line.split_whitespace().collect();
        ensure!(
            words.len() == 7 && words[..2] == ["kubeboot", "join"],
            "unexpected join command {line:?}"
        );
        ensure!(
            words[2] == format!("{}:6443", node.ip()),
            "endpoint in {line:?}"
        );
        ensure!(words[3] == "--token" && words[5] == "--discovery-token-ca-cert-hash");
        ensure!(
            words[6] == ca_hash(&node)?,
            "hash in {line:?} is not the CA's"
        );
        Ok(words[4].to_string())
    })?;
    let new_id = joined.split('.').next().unwrap_or_default().to_string();

    step(
        "token list shows both tokens, as kubeadm token list does",
        || {
            let ids = token_ids(&node)?;
            ensure!(
                ids.contains(&"abcdef".to_string()) && ids.contains(&new_id),
                "{ids:?}"
            );
            let ours = node.kubeboot_ok(&["token", "list"])?;
            let kubeadm = format!("{bin}/kubeadm");
            let theirs = node.exec_ok(&[
                &kubeadm,
                "token",
                "list",
                "--kubeconfig",
                "/etc/kubernetes/admin.conf",
            ])?;
            let norm = |s: &str| -> Vec<Vec<String>> {
                let mut rows: Vec<Vec<String>> = s
                    .lines()
                    .map(|l| {
                        l.split_whitespace()
                            .enumerate()
                            .filter(|(i, _)| *i != 1) // the TTL ticks
                            .map(|(_, w)| w.to_string())
                            .collect()
                    })
                    .collect();
                rows.sort();
                rows
            };
            ensure!(
                norm(&ours) == norm(&theirs),
                "kubeboot:\n{ours}\nkubeadm:\n{theirs}"
            );
            let widths = |s: &str| s.lines().map(str::len).collect::<Vec<_>>();
            ensure!(
                widths(&ours).len() == widths(&theirs).len(),
                "kubeboot:\n{ours}\nkubeadm:\n{theirs}"
            );
            Ok(())
        },
    )?;

    step("token delete removes it", || {
        let out = node.kubeboot_ok(&["token", "delete", &new_id])?;
        ensure!(
            out.trim() == format!("bootstrap token {new_id:?} deleted"),
            "{out}"
        );
        ensure!(!token_ids(&node)?.contains(&new_id), "still listed");
        Ok(())
    })?;

    step(
        "bad token input fails with exit 1 and changes nothing",
        || {
            let before = token_ids(&node)?;
            for args in [
                vec!["token", "create", "abcdef.short"],
                vec!["token", "create", "--ttl", "soon"],
                vec!["token", "create", "--usages", "signing,bogus"],
                vec!["token", "create", "--groups", "system:nodes"],
                vec!["token", "create", TOKEN],
                vec!["token", "delete", "zzzzzz"],
                vec!["token", "delete", "abcdef", "NOPE"],
            ] {
                let out = node.kubeboot(&args)?;
                ensure!(
                    out.code == Some(1),
                    "{args:?} exited {:?}: {}",
                    out.code,
                    out.stderr
                );
                ensure!(!out.stderr.trim().is_empty(), "{args:?} said nothing");
            }
            ensure!(token_ids(&node)? == before, "the tokens changed");
            Ok(())
        },
    )?;

    step(
        "a token created with --ttl 1s is removed by the token cleaner",
        || {
            let t = node.kubeboot_ok(&["token", "create", "--ttl", "1s"])?;
            let id = t.trim().split('.').next().unwrap_or_default().to_string();
            wait_until(
                "the expired token to be deleted",
                Duration::from_secs(120),
                Duration::from_secs(2),
                || Ok(!token_ids(&node)?.contains(&id)),
            )
        },
    )?;

    step(
        "the control-plane Node is labelled and tainted, once a kubelet registered it",
        || {
            let name = node
            .kubectl_json(&["get", "cm", "kubeadm-config", "-n", "kube-system"])?["data"]
            ["ClusterStatus"]
            .as_str()
            .and_then(|s| s.lines().nth(1))
            .map(|l| l.trim().trim_end_matches(':').to_string())
            .context("node name")?;
            let got = node.kubectl(&["get", "node", &name, "-o", "json"])?;
            if !got.success() {
                ensure!(
                    init_out.contains("[mark-control-plane] WARNING: skipping"),
                    "no Node {name:?} and mark-control-plane did not say it skipped"
                );
                eprintln!("[note] no kubelet on this node yet: mark-control-plane skipped");
                return Ok(());
            }
            let n: Value = serde_json::from_str(&got.stdout)?;
            for label in [
                "node-role.kubernetes.io/master",
                "node-role.kubernetes.io/control-plane",
            ] {
                ensure!(
                    n["metadata"]["labels"][label] == "",
                    "label {label} missing"
                );
            }
            let taints = n["spec"]["taints"].as_array().cloned().unwrap_or_default();
            if !taints.iter().any(|t| {
                t["key"] == "node-role.kubernetes.io/master" && t["effect"] == "NoSchedule"
            }) {
                bail!("taint missing: {taints:?}");
            }
            Ok(())
        },
    )?;

    node.destroy()
}
