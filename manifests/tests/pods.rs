//! The pods built through the public API: flags, extra args, version differences, volumes and
//! layout mapping. Configurations are built directly (see `common`), never loaded.

mod common;

use common::{command, config_at, flag, golden_config};
use components::Layout;
use components::config::{Etcd, ExternalEtcd, HostPathMount, LocalEtcd};
use k8s_openapi::api::core::v1::Pod;
use manifests::{EtcdIsExternal, EtcdMember, HostPaths};

fn host() -> HostPaths {
    HostPaths::with_ca_dirs(&["/etc/ca-certificates", "/usr/share/ca-certificates"])
}

fn pods(cfg: &components::config::InitConfig) -> Vec<(String, Pod)> {
    manifests::control_plane_pods(cfg, &Layout::host(), &host())
}

fn pod<'a>(pods: &'a [(String, Pod)], name: &str) -> &'a Pod {
    &pods
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no {name}"))
        .1
}

fn image(p: &Pod) -> String {
    p.spec.as_ref().unwrap().containers[0]
        .image
        .clone()
        .unwrap()
}

fn volume_names(p: &Pod) -> Vec<String> {
    p.spec
        .as_ref()
        .unwrap()
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.clone())
        .collect()
}

#[test]
fn init_writes_four_pods_in_kubeadm_order() {
    let names: Vec<String> = pods(&golden_config()).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "etcd"
        ]
    );
}

#[test]
fn flags_are_sorted_and_unique() {
    for (name, p) in pods(&golden_config()) {
        let cmd = command(&p);
        assert_eq!(cmd[0], name);
        let keys: Vec<&str> = cmd[1..]
            .iter()
            .map(|a| a.split_once('=').unwrap().0)
            .collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(keys, sorted, "{name}: flags not sorted or duplicated");
    }
}

#[test]
fn apiserver_has_kubeadm_1_20_flags() {
    let cmd = command(pod(&pods(&golden_config()), "kube-apiserver"));
    let expect = [
        ("advertise-address", "10.123.0.2"),
        ("allow-privileged", "true"),
        ("authorization-mode", "Node,RBAC"),
        ("client-ca-file", "/etc/kubernetes/pki/ca.crt"),
        ("enable-bootstrap-token-auth", "true"),
        ("etcd-servers", "https://127.0.0.1:2379"),
        ("insecure-port", "0"),
        ("secure-port", "6443"),
        (
            "service-account-issuer",
            "https://kubernetes.default.svc.cluster.local",
        ),
        ("service-account-key-file", "/etc/kubernetes/pki/sa.pub"),
        (
            "service-account-signing-key-file",
            "/etc/kubernetes/pki/sa.key",
        ),
        ("service-cluster-ip-range", "10.96.0.0/12"),
    ];
    for (name, value) in expect {
        assert_eq!(flag(&cmd, name), Some(value), "--{name}");
    }
}

#[test]
fn extra_args_override_defaults_in_place() {
    let mut cfg = golden_config();
    cfg.cluster
        .controller_manager
        .extra_args
        .insert("bind-address".into(), "0.0.0.0".into());
    cfg.cluster
        .controller_manager
        .extra_args
        .insert("v".into(), "2".into());
    cfg.cluster
        .api_server
        .component
        .extra_args
        .insert("authorization-mode".into(), "RBAC,Bogus".into());
    let all = pods(&cfg);
    let api = command(pod(&all, "kube-apiserver"));
    assert_eq!(
        flag(&api, "enable-admission-plugins"),
        Some("NodeRestriction,LimitRanger")
    );
    assert_eq!(
        api.iter()
            .filter(|a| a.starts_with("--enable-admission-plugins="))
            .count(),
        1
    );
    assert_eq!(flag(&api, "authorization-mode"), Some("RBAC"));
    let kcm_pod = pod(&all, "kube-controller-manager");
    let kcm = command(kcm_pod);
    assert_eq!(flag(&kcm, "bind-address"), Some("0.0.0.0"));
    assert_eq!(
        kcm.iter()
            .filter(|a| a.starts_with("--bind-address="))
            .count(),
        1
    );
    assert_eq!(flag(&kcm, "v"), Some("2"));
    // An unspecified bind address cannot be probed: the kubelet then uses the pod IP.
    let probe = kcm_pod.spec.as_ref().unwrap().containers[0]
        .liveness_probe
        .clone()
        .unwrap();
    assert_eq!(probe.http_get.unwrap().host, None);
}

#[test]
fn no_pod_subnet_means_no_node_cidr_allocation() {
    let mut cfg = golden_config();
    cfg.cluster.networking.pod_subnet = None;
    let kcm = command(pod(&pods(&cfg), "kube-controller-manager"));
    for name in [
        "allocate-node-cidrs",
        "cluster-cidr",
        "service-cluster-ip-range",
        "node-cidr-mask-size",
    ] {
        assert_eq!(flag(&kcm, name), None, "--{name}");
    }
    let with = command(pod(&pods(&golden_config()), "kube-controller-manager"));
    assert_eq!(flag(&with, "allocate-node-cidrs"), Some("true"));
    assert_eq!(flag(&with, "cluster-cidr"), Some("10.244.0.0/16"));
    // kubeadm 1.20 leaves the mask size to the controller manager's default (/24 for IPv4).
    assert_eq!(flag(&with, "node-cidr-mask-size"), None);
}

#[test]
fn versions_differ_by_table() {
    let cases = [
        // version, registry, insecure-port, port=0, etcd tag prefix, etcd liveness path, ephemeral-storage
        (
            "v1.20.2",
            "k8s.gcr.io",
            true,
            true,
            "3.4.13-0",
            "/health",
            true,
        ),
        (
            "v1.25.3",
            "registry.k8s.io",
            false,
            false,
            "3.5.",
            "/health?exclude=NOSPACE&serializable=true",
            false,
        ),
        (
            "v1.33.1",
            "registry.k8s.io",
            false,
            false,
            "3.5.",
            "/health?exclude=NOSPACE&serializable=true",
            false,
        ),
    ];
    for (version, registry, insecure, port0, etcd_tag, etcd_live, ephemeral) in cases {
        let cfg = config_at(version);
        let all = pods(&cfg);
        let api = pod(&all, "kube-apiserver");
        assert_eq!(image(api), format!("{registry}/kube-apiserver:{version}"));
        assert_eq!(
            flag(&command(api), "insecure-port").is_some(),
            insecure,
            "{version} insecure-port"
        );
        for c in ["kube-controller-manager", "kube-scheduler"] {
            assert_eq!(
                flag(&command(pod(&all, c)), "port") == Some("0"),
                port0,
                "{version} {c} --port"
            );
            assert!(image(pod(&all, c)).starts_with(&format!("{registry}/{c}:")));
        }
        let etcd = pod(&all, "etcd");
        assert!(
            image(etcd).starts_with(&format!("{registry}/etcd:{etcd_tag}")),
            "{version}: {}",
            image(etcd)
        );
        let container = &etcd.spec.as_ref().unwrap().containers[0];
        let live = container
            .liveness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(live.path.as_deref(), Some(etcd_live), "{version}");
        let requests = container
            .resources
            .as_ref()
            .unwrap()
            .requests
            .as_ref()
            .unwrap();
        assert_eq!(
            requests.contains_key("ephemeral-storage"),
            ephemeral,
            "{version}"
        );
    }
}

#[test]
fn ipv6_dual_stack_gate_is_forwarded_only_where_kubeadm_did() {
    let mut cfg = golden_config();
    cfg.cluster
        .feature_gates
        .insert("IPv6DualStack".into(), true);
    for (name, p) in pods(&cfg) {
        let expected = (name != "etcd").then_some("IPv6DualStack=true");
        assert_eq!(flag(&command(&p), "feature-gates"), expected, "{name}");
    }
    let mut newer = config_at("v1.25.0");
    newer
        .cluster
        .feature_gates
        .insert("IPv6DualStack".into(), true);
    for (name, p) in pods(&newer) {
        assert_eq!(flag(&command(&p), "feature-gates"), None, "{name}");
    }
}

#[test]
fn etc_pki_only_when_the_host_has_it() {
    let cfg = golden_config();
    let without = manifests::control_plane_pods(&cfg, &Layout::host(), &HostPaths::default());
    assert_eq!(
        volume_names(pod(&without, "kube-apiserver")),
        ["ca-certs", "k8s-certs"]
    );
    let with = manifests::control_plane_pods(
        &cfg,
        &Layout::host(),
        &HostPaths::with_ca_dirs(&["/etc/pki"]),
    );
    for c in ["kube-apiserver", "kube-controller-manager"] {
        assert!(
            volume_names(pod(&with, c)).contains(&"etc-pki".to_string()),
            "{c}"
        );
    }
    assert!(!volume_names(pod(&with, "kube-scheduler")).contains(&"etc-pki".to_string()));
}

#[test]
fn host_paths_detect_asks_about_mapped_paths() {
    let layout = Layout::under("/tmp/x");
    let host = HostPaths::detect(&layout, |p| p == std::path::Path::new("/tmp/x/etc/pki"));
    assert!(host.has_ca_dir("/etc/pki"));
    assert!(!host.has_ca_dir("/usr/share/ca-certificates"));
}

#[test]
fn extra_volumes_are_added_and_override_by_name() {
    let mut cfg = golden_config();
    cfg.cluster.api_server.component.extra_volumes = vec![
        HostPathMount {
            name: "audit".into(),
            host_path: "/etc/kubernetes/audit".into(),
            mount_path: "/etc/kubernetes/audit".into(),
            read_only: true,
            path_type: "DirectoryOrCreate".into(),
        },
        HostPathMount {
            name: "ca-certs".into(),
            host_path: "/opt/certs".into(),
            mount_path: "/etc/ssl/certs".into(),
            read_only: true,
            path_type: String::new(),
        },
    ];
    let all = pods(&cfg);
    let api = pod(&all, "kube-apiserver");
    assert!(volume_names(api).contains(&"audit".to_string()));
    let spec = api.spec.as_ref().unwrap();
    let ca = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "ca-certs")
        .unwrap();
    let hp = ca.host_path.as_ref().unwrap();
    assert_eq!(
        (hp.path.as_str(), hp.type_.as_deref()),
        ("/opt/certs", None)
    );
    let mounts = spec.containers[0].volume_mounts.as_ref().unwrap();
    assert_eq!(mounts.iter().filter(|m| m.name == "ca-certs").count(), 1);
}

/// Every absolute path a pod mentions: flag values (comma-separated too) and volumes.
fn paths_in(p: &Pod) -> Vec<String> {
    let spec = p.spec.as_ref().unwrap();
    let mut out = Vec::new();
    for arg in command(p).iter().skip(1) {
        let value = arg.split_once('=').map(|(_, v)| v).unwrap_or("");
        out.extend(
            value
                .split(',')
                .filter(|v| v.starts_with('/'))
                .map(str::to_string),
        );
    }
    for v in spec.volumes.iter().flatten() {
        out.push(v.host_path.as_ref().unwrap().path.clone());
    }
    for m in spec.containers[0].volume_mounts.iter().flatten() {
        out.push(m.mount_path.clone());
    }
    out
}

#[test]
fn rooted_layout_maps_every_path() {
    let mut cfg = golden_config();
    cfg.cluster.certificates_dir = "/srv/pki".into();
    cfg.cluster.etcd = Etcd::Local(LocalEtcd {
        data_dir: "/data/etcd".into(),
        ..LocalEtcd::default()
    });
    let layout = Layout::under("/tmp/x");
    let all = manifests::control_plane_pods(&cfg, &layout, &HostPaths::with_ca_dirs(&["/etc/pki"]));
    for (name, p) in &all {
        let paths = paths_in(p);
        assert!(!paths.is_empty(), "{name}");
        for path in paths {
            assert!(
                path.starts_with("/tmp/x/"),
                "{name}: {path} is outside the layout"
            );
        }
    }
    let api = command(pod(&all, "kube-apiserver"));
    assert_eq!(flag(&api, "client-ca-file"), Some("/tmp/x/srv/pki/ca.crt"));
    let etcd = command(pod(&all, "etcd"));
    assert_eq!(flag(&etcd, "data-dir"), Some("/tmp/x/data/etcd"));
    assert_eq!(
        flag(&etcd, "trusted-ca-file"),
        Some("/tmp/x/srv/pki/etcd/ca.crt")
    );
    let kcm = command(pod(&all, "kube-controller-manager"));
    assert_eq!(
        flag(&kcm, "kubeconfig"),
        Some("/tmp/x/etc/kubernetes/controller-manager.conf")
    );
}

#[test]
fn host_layout_uses_plain_kubeadm_paths() {
    let all = pods(&golden_config());
    for (name, p) in &all {
        for path in paths_in(p) {
            assert!(
                ["/etc/", "/var/lib/etcd", "/usr/"]
                    .iter()
                    .any(|prefix| path.starts_with(prefix)),
                "{name}: {path}"
            );
        }
    }
}

#[test]
fn external_etcd_has_no_pod_and_apiserver_uses_its_files() {
    let mut cfg = golden_config();
    cfg.cluster.etcd = Etcd::External(ExternalEtcd {
        endpoints: vec![
            "https://10.0.0.5:2379".into(),
            "https://10.0.0.6:2379".into(),
        ],
        ca_file: "/etc/etcd/pki/ca.crt".into(),
        cert_file: "/etc/etcd/pki/client.crt".into(),
        key_file: "/etc/etcd/pki/client.key".into(),
    });
    assert_eq!(
        manifests::etcd_pod(&cfg, &Layout::host()),
        Err(EtcdIsExternal)
    );
    let all = pods(&cfg);
    assert_eq!(all.len(), 3);
    let api = pod(&all, "kube-apiserver");
    let cmd = command(api);
    assert_eq!(
        flag(&cmd, "etcd-servers"),
        Some("https://10.0.0.5:2379,https://10.0.0.6:2379")
    );
    assert_eq!(flag(&cmd, "etcd-cafile"), Some("/etc/etcd/pki/ca.crt"));
    assert_eq!(flag(&cmd, "etcd-keyfile"), Some("/etc/etcd/pki/client.key"));
    assert!(volume_names(api).contains(&"etcd-certs-0".to_string()));
}

#[test]
fn external_ca_blanks_cluster_signing_files() {
    let cfg = golden_config();
    let host = HostPaths {
        external_ca: true,
        ..HostPaths::default()
    };
    let kcm = command(&manifests::controller_manager_pod(
        &cfg,
        &Layout::host(),
        &host,
    ));
    assert_eq!(flag(&kcm, "cluster-signing-cert-file"), Some(""));
    assert_eq!(flag(&kcm, "cluster-signing-key-file"), Some(""));
}

#[test]
fn ipv6_advertise_address_uses_ipv6_loopback_and_brackets() {
    let mut cfg = golden_config();
    cfg.local_api_endpoint.advertise_address = "fd00::2".parse().unwrap();
    let all = pods(&cfg);
    let etcd = pod(&all, "etcd");
    let cmd = command(etcd);
    assert_eq!(
        flag(&cmd, "listen-client-urls"),
        Some("https://[::1]:2379,https://[fd00::2]:2379")
    );
    assert_eq!(flag(&cmd, "listen-metrics-urls"), Some("http://[::1]:2381"));
    let annotations = etcd.metadata.annotations.as_ref().unwrap();
    assert_eq!(
        annotations["kubeadm.kubernetes.io/etcd.advertise-client-urls"],
        "https://[fd00::2]:2379"
    );
    let api = pod(&all, "kube-apiserver");
    let annotations = api.metadata.annotations.as_ref().unwrap();
    assert_eq!(
        annotations["kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint"],
        "[fd00::2]:6443"
    );
    assert_eq!(
        flag(&command(api), "etcd-servers"),
        Some("https://[::1]:2379")
    );
}

#[test]
fn etcd_metrics_extra_arg_moves_the_probe() {
    let mut cfg = golden_config();
    let mut local = LocalEtcd {
        data_dir: "/var/lib/etcd".into(),
        ..LocalEtcd::default()
    };
    local.extra_args.insert(
        "listen-metrics-urls".into(),
        "https://10.123.0.2:12381,http://127.0.0.1:2381".into(),
    );
    local.image_tag = Some("3.4.23-0".into());
    cfg.cluster.etcd = Etcd::Local(local);
    let etcd = manifests::etcd_pod(&cfg, &Layout::host()).unwrap();
    let container = &etcd.spec.as_ref().unwrap().containers[0];
    let get = container
        .startup_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(get.host.as_deref(), Some("10.123.0.2"));
    assert_eq!(get.scheme.as_deref(), Some("HTTPS"));
    assert_eq!(
        get.port,
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(12381)
    );
    assert_eq!(container.image.as_deref(), Some("k8s.gcr.io/etcd:3.4.23-0"));
}

#[test]
fn joining_etcd_member_lists_the_existing_cluster() {
    let cfg = golden_config();
    let members = [
        EtcdMember {
            name: "node0".into(),
            peer_url: "https://10.123.0.1:2380".into(),
        },
        EtcdMember {
            name: "node1".into(),
            peer_url: "https://10.123.0.2:2380".into(),
        },
    ];
    let etcd = manifests::etcd_pod_with_members(&cfg, &Layout::host(), &members).unwrap();
    let cmd = command(&etcd);
    assert_eq!(
        flag(&cmd, "initial-cluster"),
        Some("node0=https://10.123.0.1:2380,node1=https://10.123.0.2:2380")
    );
    assert_eq!(flag(&cmd, "initial-cluster-state"), Some("existing"));
}

#[test]
fn startup_probe_follows_the_control_plane_timeout() {
    let mut cfg = golden_config();
    cfg.cluster.api_server.timeout_for_control_plane_secs = 300;
    for (name, p) in pods(&cfg) {
        let startup = p.spec.as_ref().unwrap().containers[0]
            .startup_probe
            .clone()
            .unwrap();
        assert_eq!(startup.failure_threshold, Some(30), "{name}");
    }
}

#[test]
fn our_yaml_round_trips() {
    for (name, p) in pods(&config_at("v1.33.1")) {
        let text = manifests::yaml::to_yaml(&p);
        assert_eq!(manifests::yaml::from_yaml(&text).unwrap(), p, "{name}");
    }
}
