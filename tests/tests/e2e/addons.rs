//! Scenario: `kubeboot init` applies kubeadm's addons. kube-proxy runs on the node as a static
//! pod under the agent (with `conntrack.maxPerCore: 0` from the user's KubeProxyConfiguration,
//! since a network namespace cannot set the global `nf_conntrack_max`) and keeps running; it
//! programs iptables for the API server's and a new Service's ClusterIP; the addon objects
//! exist with kubeadm's names and types; CoreDNS's Deployment exists with 0 replicas (its image
//! is not on the node) and kubeboot's DNS (`kube-system/kubeboot-dns`, of the image init builds
//! from the kubeboot executable) serves the cluster: from inside a pod of a locally built image
//! (glibc's `getent` through the pod's search path, busybox's `nslookup` for SRV and CNAME),
//! Service names short and full, a headless Service's pods, an SRV name, an ExternalName, a pod
//! name and an outside name answered by a fake upstream (dnsmasq on an address of the node's
//! network namespace, named in the node's own resolv.conf) resolve, and a new Service resolves
//! within a bounded wait; with the `forward` block taken out of the `coredns` ConfigMap's
//! Corefile no upstream is left and an outside name gets SERVFAIL while cluster names still
//! resolve, and once the Corefile is restored the outside name resolves again; re-running the
//! addon phase changes nothing.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use tests::cluster::{build_images, offer_image_archives};
use tests::{Node, bin_dir, require_root, step, wait_until};

/// The fake upstream resolver's address, on the loopback link of the node's network namespace.
const UPSTREAM_IP: &str = "10.53.53.53";
/// The outside name the fake upstream answers, and its address (TEST-NET-1).
const OUTSIDE_NAME: &str = "outside.kb-e2e.example";
const OUTSIDE_IP: &str = "192.0.2.77";
/// The test pod's image (scripts/build-images.sh): busybox + glibc's getent.
const DNSUTILS_IMAGE: &str = "kubeboot.local/dnsutils:1";

/// The workloads the DNS checks resolve: a headless Service over two web pods (named port
/// `http`), an ExternalName Service, and the test pod. All tolerate the control-plane taint.
fn dns_workloads_yaml() -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata:
  name: kb-dns-headless
  namespace: default
spec:
  clusterIP: None
  selector:
    app: kb-dns-web
  ports:
  - name: http
    port: 80
    protocol: TCP
---
apiVersion: v1
kind: Service
metadata:
  name: kb-dns-ext
  namespace: default
spec:
  type: ExternalName
  externalName: {OUTSIDE_NAME}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: kb-dns-web
  namespace: default
spec:
  replicas: 2
  selector:
    matchLabels:
      app: kb-dns-web
  template:
    metadata:
      labels:
        app: kb-dns-web
    spec:
      tolerations:
      - key: node-role.kubernetes.io/master
        effect: NoSchedule
      containers:
      - name: web
        image: kubeboot.local/web:1
        imagePullPolicy: Never
        ports:
        - name: http
          containerPort: 80
---
apiVersion: v1
kind: Pod
metadata:
  name: kb-dnsutils
  namespace: default
spec:
  tolerations:
  - key: node-role.kubernetes.io/master
    effect: NoSchedule
  terminationGracePeriodSeconds: 1
  containers:
  - name: dnsutils
    image: {DNSUTILS_IMAGE}
    imagePullPolicy: Never
"
    )
}

/// The Ready pods of `selector` in `namespace` and their IPs.
fn ready_pod_ips(node: &Node, namespace: &str, selector: &str) -> Result<Vec<String>> {
    let pods = node.kubectl_json(&["get", "pods", "-n", namespace, "-l", selector])?;
    Ok(pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| {
            p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
        .filter_map(|p| p["status"]["podIP"].as_str().map(str::to_string))
        .collect())
}

/// Runs `argv` in the test pod (`kubectl exec`); its output, or why it failed.
fn in_pod(node: &Node, argv: &[&str]) -> Result<tests::CmdOutput> {
    let mut args = vec!["exec", "kb-dnsutils", "--"];
    args.extend_from_slice(argv);
    node.kubectl(&args)
}

/// `getent ahostsv4 <name>` in the test pod: the addresses glibc resolves, through the pod's
/// resolv.conf (search path, ndots). Empty when the name does not resolve.
fn getent(node: &Node, name: &str) -> Result<Vec<String>> {
    let out = in_pod(node, &["getent", "ahostsv4", name])?;
    let mut ips: Vec<String> = out
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    ips.sort();
    ips.dedup();
    Ok(ips)
}

/// `busybox nslookup -type=A <name>` in the test pod (a query for the name as given, no search
/// path): its output says the response code of a failure (`** server can't find <name>:
/// SERVFAIL`).
fn nslookup_a(node: &Node, name: &str) -> Result<tests::CmdOutput> {
    in_pod(node, &["busybox", "nslookup", "-type=A", name])
}

/// `corefile` without its `forward` directives (each with its `{ ... }` block of options, as
/// kubeadm writes `forward . /etc/resolv.conf {`): a Corefile that leaves kubeboot's DNS no
/// upstream resolver. An error when there is no `forward` to take out.
fn without_forward(corefile: &str) -> Result<String> {
    let mut out = String::new();
    let mut depth = 0usize;
    let mut removed = 0;
    for line in corefile.lines() {
        let t = line.trim();
        if depth > 0 {
            depth += t.matches('{').count();
            depth -= t.matches('}').count().min(depth);
            continue;
        }
        if t.split_whitespace().next() == Some("forward") {
            removed += 1;
            depth = t
                .matches('{')
                .count()
                .saturating_sub(t.matches('}').count());
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    ensure!(
        removed > 0,
        "the Corefile has no forward directive:\n{corefile}"
    );
    Ok(out)
}

/// Replaces the Corefile of the `kube-system/coredns` ConfigMap with `corefile` (`kubectl
/// replace` of the object as read, so a concurrent change fails instead of being lost).
fn set_corefile(node: &Node, scratch: &std::path::Path, corefile: &str) -> Result<()> {
    let mut cm = node.kubectl_json(&["get", "configmap", "coredns", "-n", "kube-system"])?;
    cm["data"]["Corefile"] = Value::String(corefile.to_string());
    let file = scratch.join("coredns-configmap.json");
    std::fs::write(&file, serde_json::to_vec(&cm)?)?;
    node.kubectl_ok(&["replace", "-f", &file.to_string_lossy()])?;
    Ok(())
}

const MAX_PER_CORE_ZERO: &str = "conntrack:\n  maxPerCore: 0\n";

/// kubeadm's configuration for `node`, with the user's KubeProxyConfiguration and, as
/// [`Node::write_init_config`] has it, this node's kubelet cgroup root and 1% hard eviction
/// thresholds (the nodes share the machine's disk: its free share may be below the kubelet's
/// default, which taints the node with disk-pressure and keeps pods off it).
fn config(node: &Node) -> String {
    format!(
        "apiVersion: kubeadm.k8s.io/v1beta2
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: {ip}
  bindPort: 6443
nodeRegistration:
  name: {name}
---
apiVersion: kubeadm.k8s.io/v1beta2
kind: ClusterConfiguration
kubernetesVersion: v1.20.2
networking:
  podSubnet: 10.244.0.0/16
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupRoot: {cgroup_root}
evictionHard:
  imagefs.available: 1%
  nodefs.available: 1%
  nodefs.inodesFree: 1%
---
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
{MAX_PER_CORE_ZERO}",
        ip = node.ip(),
        name = node.name(),
        cgroup_root = node.cgroup_root()
    )
}

/// A Service without a selector and its Endpoints (the node's own address): kube-proxy gives
/// it NAT rules without any pod running.
fn service_yaml(node: &Node) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata:
  name: kb-e2e-addons
  namespace: default
spec:
  ports:
  - port: 80
    protocol: TCP
    targetPort: 8080
---
apiVersion: v1
kind: Endpoints
metadata:
  name: kb-e2e-addons
  namespace: default
subsets:
- addresses:
  - ip: {ip}
  ports:
  - port: 8080
    protocol: TCP
",
        ip = node.ip()
    )
}

/// The agent's kube-proxy container, from `agent status -o json`.
fn kube_proxy_container(node: &Node) -> Result<Option<Value>> {
    let status = node.agent_status_json()?;
    let pods = status["pods"].as_array().cloned().unwrap_or_default();
    Ok(pods
        .iter()
        .find(|p| {
            p["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("kube-proxy"))
        })
        .and_then(|p| p["containers"].get(0).cloned()))
}

fn nat_rules(node: &Node) -> Result<String> {
    node.exec_ok(&["iptables-save", "-t", "nat"])
}

#[test]
#[ignore = "needs KUBEBOOT_BIN_DIR"]
fn addons() -> Result<()> {
    step("running as root", require_root)?;
    let bin = step("real binaries present", bin_dir)?;
    let bin = bin.to_string_lossy().to_string();
    let node = step("create node", || Node::allocate("addons"))?;
    let scratch = tempfile::tempdir().context("scratch directory")?;
    let config_file = scratch.path().join("kubeadm.yaml");
    let service_file = scratch.path().join("service.yaml");
    std::fs::write(&config_file, config(&node))?;
    std::fs::write(&service_file, service_yaml(&node))?;
    let config_file = config_file.to_string_lossy().to_string();

    let images = step("images built from local files", || build_images(false))?;
    step("the image archives are offered to init", || {
        offer_image_archives(&node, &images)
    })?;
    step(
        "a fake upstream resolver inside the node, named in its resolv.conf",
        || {
            // On the node's loopback link (this kernel has no dummy links): a local address
            // of the node's network namespace, which pods reach through the node's bridge.
            node.exec_ok(&[
                "ip",
                "addr",
                "add",
                &format!("{UPSTREAM_IP}/32"),
                "dev",
                "lo",
            ])?;
            // dnsmasq daemonizes inside the node's namespaces; destroying the node ends it.
            node.exec_ok(&[
                "dnsmasq",
                &format!("--listen-address={UPSTREAM_IP}"),
                "--bind-interfaces",
                "--no-resolv",
                "--no-hosts",
                "--user=root",
                &format!("--pid-file=/run/kb-e2e-dnsmasq-{}.pid", node.name()),
                &format!("--address=/{OUTSIDE_NAME}/{OUTSIDE_IP}"),
            ])?;
            node.write_file("/etc/resolv.conf", &format!("nameserver {UPSTREAM_IP}\n"))?;
            Ok(())
        },
    )?;

    let init_started = Instant::now();
    let out = step(
        "kubeboot init --config with a KubeProxyConfiguration",
        || {
            let out = node.kubeboot_ok(&[
                "init",
                "--config",
                &config_file,
                "--bin-dir",
                &bin,
                "--bin-dir",
                "/usr/bin",
            ])?;
            for want in [
                "[kubelet-start] Building the image kubeboot.local/kubeboot-dns:",
                "[addons] Applied essential addon: CoreDNS",
                "[addons] Applied essential addon: kubeboot-dns",
                "[addons] kubeboot's DNS serves the cluster (containerd has no image k8s.gcr.io/coredns:1.7.0)",
                "[addons] Applied essential addon: kube-proxy",
                "Your Kubernetes control-plane has initialized successfully!",
            ] {
                ensure!(out.contains(want), "init output lacks {want:?}:\n{out}");
            }
            Ok(out)
        },
    )?;
    let coredns_line = out.find("Applied essential addon: CoreDNS");
    let proxy_line = out.find("Applied essential addon: kube-proxy");
    ensure!(
        coredns_line < proxy_line,
        "kubeadm applies CoreDNS first:\n{out}"
    );

    step(
        "node-local kube-proxy files and static pod manifest",
        || {
            let conf = node.read_file("/var/lib/kube-proxy/config.conf")?;
            ensure!(conf.contains(MAX_PER_CORE_ZERO), "config.conf:\n{conf}");
            ensure!(
                conf.contains("kubeconfig: /var/lib/kube-proxy/kubeconfig.conf"),
                "config.conf:\n{conf}"
            );
            ensure!(
                conf.contains("clusterCIDR: 10.244.0.0/16"),
                "config.conf:\n{conf}"
            );
            let kubeconfig = node.read_file("/var/lib/kube-proxy/kubeconfig.conf")?;
            ensure!(
                kubeconfig.contains("current-context: system:kube-proxy@kubernetes"),
                "kubeconfig.conf:\n{kubeconfig}"
            );
            let mode =
                node.exec_ok(&["stat", "-c", "%a", "/var/lib/kube-proxy/kubeconfig.conf"])?;
            ensure!(mode.trim() == "600", "kubeconfig.conf mode {mode}");
            let manifest = node.read_file("/etc/kubernetes/manifests/kube-proxy.yaml")?;
            ensure!(
                manifest.contains(&format!("--hostname-override={}", node.name())),
                "kube-proxy.yaml:\n{manifest}"
            );
            Ok(())
        },
    )?;

    step("the agent runs kube-proxy", || {
        wait_until(
            "kube-proxy running",
            Duration::from_secs(60),
            Duration::from_secs(1),
            || Ok(kube_proxy_container(&node)?.is_some_and(|c| c["state"] == "running")),
        )
    })?;

    step(
        "kube-proxy programs KUBE-SERVICES for the API server's ClusterIP",
        || {
            wait_until(
                "KUBE-SERVICES has the kubernetes Service",
                Duration::from_secs(60),
                Duration::from_secs(1),
                || {
                    let out = node.exec(&["iptables", "-t", "nat", "-L", "KUBE-SERVICES", "-n"])?;
                    Ok(out.success() && out.stdout.contains("10.96.0.1 "))
                },
            )
        },
    )?;

    step("a new Service's ClusterIP gets its iptables rules", || {
        let service_file = service_file.to_string_lossy().to_string();
        node.kubectl_ok(&["apply", "-f", &service_file])?;
        let svc = node.kubectl_json(&["get", "service", "kb-e2e-addons", "-n", "default"])?;
        let ip = svc["spec"]["clusterIP"]
            .as_str()
            .context("the Service has no clusterIP")?
            .to_string();
        let dnat = format!("--to-destination {}:8080", node.ip());
        wait_until(
            &format!("NAT rules for {ip}"),
            Duration::from_secs(60),
            Duration::from_secs(1),
            || {
                let rules = nat_rules(&node)?;
                Ok(rules.contains(&format!("-d {ip}/32"))
                    && rules.contains("default/kb-e2e-addons")
                    && rules.contains(&dnat))
            },
        )
    })?;

    step(
        "the addon objects exist with kubeadm's names and types",
        || {
            let namespaced = node.kubectl_ok(&[
                "get",
                "-n",
                "kube-system",
                "configmap/coredns",
                "configmap/kube-proxy",
                "serviceaccount/coredns",
                "serviceaccount/kube-proxy",
                "deployment.apps/coredns",
                "service/kube-dns",
                "daemonset.apps/kube-proxy",
                "role.rbac.authorization.k8s.io/kube-proxy",
                "rolebinding.rbac.authorization.k8s.io/kube-proxy",
                "-o",
                "name",
            ])?;
            ensure!(namespaced.lines().count() == 9, "{namespaced}");
            let cluster = node.kubectl_ok(&[
                "get",
                "clusterrole/system:coredns",
                "clusterrolebinding/system:coredns",
                "clusterrolebinding/kubeadm:node-proxier",
                "-o",
                "name",
            ])?;
            ensure!(cluster.lines().count() == 3, "{cluster}");
            let dns = node.kubectl_json(&["get", "-n", "kube-system", "service", "kube-dns"])?;
            ensure!(dns["spec"]["clusterIP"] == "10.96.0.10", "kube-dns: {dns}");
            let proxier =
                node.kubectl_json(&["get", "clusterrolebinding", "kubeadm:node-proxier"])?;
            ensure!(
                proxier["roleRef"]["name"] == "system:node-proxier",
                "kubeadm:node-proxier: {proxier}"
            );
            let cm = node.kubectl_json(&["get", "-n", "kube-system", "configmap", "kube-proxy"])?;
            let conf = cm["data"]["config.conf"].as_str().unwrap_or_default();
            ensure!(
                conf.contains("maxPerCore: 0"),
                "ConfigMap config.conf:\n{conf}"
            );
            let ds = node.kubectl_json(&["get", "-n", "kube-system", "daemonset", "kube-proxy"])?;
            let expr = &ds["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
                ["nodeSelectorTerms"][0]["matchExpressions"][0];
            ensure!(
                expr["key"] == "node.kubeboot.io/kube-proxy" && expr["operator"] == "NotIn",
                "DaemonSet affinity: {expr}"
            );
            let coredns =
                node.kubectl_json(&["get", "-n", "kube-system", "deployment", "coredns"])?;
            ensure!(
                coredns["spec"]["template"]["spec"]["containers"][0]["image"]
                    == "k8s.gcr.io/coredns:1.7.0"
                    && coredns["spec"]["replicas"] == 0
                    && coredns["metadata"]["annotations"]["kubeboot.io/dns-served-by"]
                        == "kube-system/kubeboot-dns",
                "coredns: {coredns}"
            );
            let ours = node.kubectl_ok(&[
                "get",
                "-n",
                "kube-system",
                "deployment.apps/kubeboot-dns",
                "serviceaccount/kubeboot-dns",
                "role.rbac.authorization.k8s.io/kubeboot:dns",
                "rolebinding.rbac.authorization.k8s.io/kubeboot:dns",
                "clusterrole.rbac.authorization.k8s.io/kubeboot:dns",
                "clusterrolebinding.rbac.authorization.k8s.io/kubeboot:dns",
                "-o",
                "name",
            ])?;
            ensure!(ours.lines().count() == 6, "{ours}");
            let n = node.kubectl_json(&["get", "node", node.name()])?;
            ensure!(
                n["metadata"]["labels"]["kubeboot.io/dns-image"].is_string(),
                "the node lacks the kubeboot.io/dns-image label: {}",
                n["metadata"]["labels"]
            );
            Ok(())
        },
    )?;

    step(
        "the kubeboot-dns pods become Ready and kube-dns has their endpoints",
        || {
            let mut ips = Vec::new();
            wait_until(
                "2 kubeboot-dns pods Ready",
                Duration::from_secs(180),
                Duration::from_secs(1),
                || {
                    ips =
                        ready_pod_ips(&node, "kube-system", "app.kubernetes.io/name=kubeboot-dns")?;
                    Ok(ips.len() == 2)
                },
            )?;
            eprintln!(
                "[addons] kubeboot-dns Ready {:.1} s after init started",
                init_started.elapsed().as_secs_f64()
            );
            ips.sort();
            wait_until(
                "kube-dns endpoints are the kubeboot-dns pods",
                Duration::from_secs(30),
                Duration::from_secs(1),
                || {
                    let ep =
                        node.kubectl_json(&["get", "endpoints", "-n", "kube-system", "kube-dns"])?;
                    let mut got: Vec<String> = ep["subsets"][0]["addresses"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|a| a["ip"].as_str().map(str::to_string))
                        .collect();
                    got.sort();
                    Ok(got == ips)
                },
            )
        },
    )?;

    let scratch_workloads = scratch.path().join("dns-workloads.yaml");
    std::fs::write(&scratch_workloads, dns_workloads_yaml())?;
    let (web_ips, pod_ip) = step("the DNS test workloads run", || {
        node.kubectl_ok(&["apply", "-f", &scratch_workloads.to_string_lossy()])?;
        let mut web = Vec::new();
        wait_until(
            "2 web pods and the dnsutils pod Ready",
            Duration::from_secs(180),
            Duration::from_secs(1),
            || {
                web = ready_pod_ips(&node, "default", "app=kb-dns-web")?;
                let pod = node.kubectl_json(&["get", "pod", "kb-dnsutils"])?;
                Ok(web.len() == 2 && pod["status"]["phase"] == "Running")
            },
        )?;
        web.sort();
        let pod = node.kubectl_json(&["get", "pod", "kb-dnsutils"])?;
        let ip = pod["status"]["podIP"]
            .as_str()
            .context("the dnsutils pod has no IP")?
            .to_string();
        Ok((web, ip))
    })?;

    step(
        "a Service's short and full names resolve (getent, search path)",
        || {
            let svc = node.kubectl_json(&["get", "service", "kb-e2e-addons", "-n", "default"])?;
            let ip = svc["spec"]["clusterIP"].as_str().context("no clusterIP")?;
            for name in [
                "kb-e2e-addons",
                "kb-e2e-addons.default",
                "kb-e2e-addons.default.svc.cluster.local",
            ] {
                let got = getent(&node, name)?;
                ensure!(got == [ip], "getent ahostsv4 {name}: {got:?}, want [{ip}]");
            }
            let resolv = in_pod(&node, &["cat", "/etc/resolv.conf"])?.ok()?;
            ensure!(
                resolv.contains("nameserver 10.96.0.10")
                    && resolv.contains(
                        "search default.svc.cluster.local svc.cluster.local cluster.local"
                    ),
                "the pod's resolv.conf:\n{resolv}"
            );
            Ok(())
        },
    )?;

    step("a headless Service resolves to both pods", || {
        let got = getent(&node, "kb-dns-headless")?;
        ensure!(got == web_ips, "kb-dns-headless: {got:?}, want {web_ips:?}");
        Ok(())
    })?;

    step("an SRV name (named port) resolves", || {
        let out = in_pod(
            &node,
            &[
                "busybox",
                "nslookup",
                "-type=SRV",
                "_http._tcp.kb-dns-headless.default.svc.cluster.local",
            ],
        )?;
        ensure!(
            out.stdout.contains(" 80 ")
                && out
                    .stdout
                    .contains("kb-dns-headless.default.svc.cluster.local"),
            "SRV answer:\n{out}"
        );
        Ok(())
    })?;

    step("an ExternalName Service is a CNAME to its name", || {
        let out = in_pod(
            &node,
            &[
                "busybox",
                "nslookup",
                "-type=CNAME",
                "kb-dns-ext.default.svc.cluster.local",
            ],
        )?;
        ensure!(
            out.stdout
                .contains(&format!("canonical name = {OUTSIDE_NAME}")),
            "CNAME answer:\n{out}"
        );
        Ok(())
    })?;

    step("a pod name resolves to its address", || {
        let name = format!("{}.default.pod.cluster.local", pod_ip.replace('.', "-"));
        let got = getent(&node, &name)?;
        ensure!(got == [pod_ip.clone()], "{name}: {got:?}");
        Ok(())
    })?;

    step(
        "an outside name is answered by the node's upstream resolver",
        || {
            let got = getent(&node, OUTSIDE_NAME)?;
            ensure!(
                got == [OUTSIDE_IP],
                "{OUTSIDE_NAME}: {got:?}, want [{OUTSIDE_IP}]"
            );
            Ok(())
        },
    )?;

    step(
        "with no upstream in the Corefile, an outside name gets SERVFAIL; restored, it resolves",
        || {
            let cm = node.kubectl_json(&["get", "configmap", "coredns", "-n", "kube-system"])?;
            let original = cm["data"]["Corefile"]
                .as_str()
                .context("the coredns ConfigMap has no Corefile")?
                .to_string();
            set_corefile(&node, scratch.path(), &without_forward(&original)?)?;
            let servfail = format!("can't find {OUTSIDE_NAME}: SERVFAIL");
            let mut last = None;
            wait_until(
                &format!("SERVFAIL for {OUTSIDE_NAME} with no upstream"),
                Duration::from_secs(60),
                Duration::from_secs(1),
                || {
                    let out = nslookup_a(&node, OUTSIDE_NAME)?;
                    let done = out.stdout.contains(&servfail) || out.stderr.contains(&servfail);
                    last = Some(out);
                    Ok(done)
                },
            )
            .with_context(|| {
                format!(
                    "the last answer: {}",
                    last.as_ref().map_or_else(String::new, ToString::to_string)
                )
            })?;
            // glibc gets no address either, and cluster names are still answered.
            let got = getent(&node, OUTSIDE_NAME)?;
            ensure!(got.is_empty(), "{OUTSIDE_NAME} with no upstream: {got:?}");
            let svc = node.kubectl_json(&["get", "service", "kb-e2e-addons", "-n", "default"])?;
            let ip = svc["spec"]["clusterIP"].as_str().context("no clusterIP")?;
            let got = getent(&node, "kb-e2e-addons")?;
            ensure!(
                got == [ip],
                "kb-e2e-addons with no upstream: {got:?}, want [{ip}]"
            );

            set_corefile(&node, scratch.path(), &original)?;
            wait_until(
                &format!("{OUTSIDE_NAME} resolves again once the Corefile is restored"),
                Duration::from_secs(60),
                Duration::from_secs(1),
                || Ok(getent(&node, OUTSIDE_NAME)? == [OUTSIDE_IP]),
            )?;
            let out = nslookup_a(&node, OUTSIDE_NAME)?;
            ensure!(
                out.success() && out.stdout.contains(OUTSIDE_IP),
                "nslookup after the restore: {out}"
            );
            Ok(())
        },
    )?;

    step("a new Service resolves within a bounded wait", || {
        node.kubectl_ok(&[
            "create",
            "service",
            "clusterip",
            "kb-dns-new",
            "--tcp=80:80",
        ])?;
        let created = Instant::now();
        let svc = node.kubectl_json(&["get", "service", "kb-dns-new", "-n", "default"])?;
        let ip = svc["spec"]["clusterIP"]
            .as_str()
            .context("no clusterIP")?
            .to_string();
        wait_until(
            "kb-dns-new resolves",
            Duration::from_secs(30),
            Duration::from_millis(200),
            || Ok(getent(&node, "kb-dns-new")? == [ip.clone()]),
        )?;
        eprintln!(
            "[addons] a new Service resolved {:.2} s after its creation (kubectl exec included)",
            created.elapsed().as_secs_f64()
        );
        Ok(())
    })?;

    step(
        "re-running the addon phase is a no-op for kube-proxy",
        || {
            let before = kube_proxy_container(&node)?.context("no kube-proxy")?;
            let out =
                node.kubeboot_ok(&["init", "phase", "addon", "all", "--config", &config_file])?;
            ensure!(
                out.contains("[addons] Applied essential addon: kube-proxy")
                    && out.contains("[addons] Applied essential addon: CoreDNS")
                    && out.contains("[addons] kubeboot's DNS serves the cluster (as chosen when the cluster was initialized)"),
                "{out}"
            );
            std::thread::sleep(Duration::from_secs(5));
            let after = kube_proxy_container(&node)?.context("no kube-proxy")?;
            ensure!(
                after["state"] == "running"
                    && after["pid"] == before["pid"]
                    && after["restart_count"] == before["restart_count"],
                "kube-proxy changed: before {before}, after {after}"
            );
            Ok(())
        },
    )?;

    step("kube-proxy keeps running", || {
        let c = kube_proxy_container(&node)?.context("no kube-proxy")?;
        ensure!(
            c["state"] == "running" && c["restart_count"] == 0,
            "kube-proxy: {c}"
        );
        Ok(())
    })?;

    step("destroy node", || node.destroy())?;
    Ok(())
}

#[test]
fn without_forward_takes_out_kubeadms_forward_block_and_nothing_else() -> Result<()> {
    let kubeadm = ".:53 {\n    errors\n    health {\n       lameduck 5s\n    }\n    \
                   forward . /etc/resolv.conf {\n       max_concurrent 1000\n    }\n    \
                   cache 30\n}\n";
    assert_eq!(
        without_forward(kubeadm)?,
        ".:53 {\n    errors\n    health {\n       lameduck 5s\n    }\n    cache 30\n}\n"
    );
    assert_eq!(
        without_forward(".:53 {\n    forward . 10.0.0.1\n    loop\n}\n")?,
        ".:53 {\n    loop\n}\n"
    );
    assert!(without_forward(".:53 {\n    errors\n}\n").is_err());
    Ok(())
}
