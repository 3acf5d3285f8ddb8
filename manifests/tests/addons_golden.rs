//! Golden test: our addon objects against what the real kubeadm v1.20.2 would create for the
//! same configuration (`tests/golden/v1.20.2/addons/`, captured by `generate.sh` there from
//! `kubeadm init --dry-run`, one file per object in kubeadm's order).
//!
//! Objects are compared as YAML values, field by field; strings inside them (the Corefile,
//! kube-proxy's `config.conf` and `kubeconfig.conf`) are compared byte for byte, so the
//! ConfigMap hash kubeadm signs its kube-proxy ConfigMap with matches too.

use components::config::{ConfigSource, HostFacts, InitConfig, InitFlags, resolve_init};
use manifests::addons::{coredns_addon, kube_proxy_addon};
use serde::Serialize;
use yaml_serde::Value;

/// Differences from kubeadm we keep on purpose, as (object, field path, reason).
const DELIBERATE_DIFFERENCES: &[(&str, &str, &str)] = &[
    (
        "DaemonSet/kube-proxy",
        ".spec.template.spec.affinity",
        "kubeboot's agent runs kube-proxy as a static pod on its own nodes, which carry the \
         label node.kubeboot.io/kube-proxy=agent; a required node affinity keeps the DaemonSet \
         off them, while nodes joined by upstream kubeadm still get kube-proxy from it",
    ),
    (
        "Service/kube-dns",
        ".metadata.resourceVersion",
        "kubeadm puts resourceVersion \"0\" in its template so that its Update after a failed \
         Create validates; kubeboot's create_or_update takes the live object's resourceVersion",
    ),
];

/// One configuration kubeadm ran with and the objects it would have created.
struct Case {
    name: &'static str,
    config: &'static str,
    objects: &'static [&'static str],
}

macro_rules! golden {
    ($dir:literal, [$($file:literal),* $(,)?]) => {
        &[$(include_str!(concat!("golden/v1.20.2/addons/", $dir, "/", $file))),*]
    };
}

const CASES: &[Case] = &[
    Case {
        name: "config",
        config: include_str!("golden/v1.20.2/addons/config.yaml"),
        objects: golden!(
            "config",
            [
                "01-configmap-coredns.yaml",
                "02-clusterrole-system_coredns.yaml",
                "03-clusterrolebinding-system_coredns.yaml",
                "04-serviceaccount-coredns.yaml",
                "05-deployment-coredns.yaml",
                "06-service-kube-dns.yaml",
                "07-serviceaccount-kube-proxy.yaml",
                "08-configmap-kube-proxy.yaml",
                "09-daemonset-kube-proxy.yaml",
                "10-clusterrolebinding-kubeadm_node-proxier.yaml",
                "11-role-kube-proxy.yaml",
                "12-rolebinding-kube-proxy.yaml",
            ]
        ),
    },
    Case {
        name: "config-kube-proxy",
        config: include_str!("golden/v1.20.2/addons/config-kube-proxy.yaml"),
        objects: golden!(
            "config-kube-proxy",
            [
                "01-configmap-coredns.yaml",
                "02-clusterrole-system_coredns.yaml",
                "03-clusterrolebinding-system_coredns.yaml",
                "04-serviceaccount-coredns.yaml",
                "05-deployment-coredns.yaml",
                "06-service-kube-dns.yaml",
                "07-serviceaccount-kube-proxy.yaml",
                "08-configmap-kube-proxy.yaml",
                "09-daemonset-kube-proxy.yaml",
                "10-clusterrolebinding-kubeadm_node-proxier.yaml",
                "11-role-kube-proxy.yaml",
                "12-rolebinding-kube-proxy.yaml",
            ]
        ),
    },
];

/// The config file as `kubeboot init --config` reads it, on the node kubeadm ran on.
fn load(config: &str) -> InitConfig {
    let flags = InitFlags {
        config: Some(ConfigSource {
            path: "config.yaml".into(),
            content: config.into(),
        }),
        set_flags: vec!["config".into()],
        ..InitFlags::default()
    };
    let host = HostFacts {
        hostname: "node1".into(),
        default_address: Some("10.123.0.213".parse().expect("ip")),
        local_addresses: vec!["10.123.0.213".parse().expect("ip")],
        detected_version: Some("v1.20.2".parse().expect("version")),
    };
    resolve_init(&flags, &host).expect("the golden config is valid")
}

fn value<T: Serialize>(object: &T) -> Value {
    let json = serde_json::to_value(object).expect("k8s-openapi objects serialize");
    manifests::yaml::sorted(&json)
}

/// Ours, in kubeadm's creation order (dns.go createCoreDNSAddon, then proxy.go
/// EnsureProxyAddon).
fn ours(cfg: &InitConfig) -> Vec<Value> {
    let dns = coredns_addon(cfg, None).expect("CoreDNS builds");
    let proxy = kube_proxy_addon(cfg).expect("kube-proxy builds");
    vec![
        value(&dns.config_map),
        value(&dns.cluster_role),
        value(&dns.cluster_role_binding),
        value(&dns.service_account),
        value(&dns.deployment),
        value(&dns.service),
        value(&proxy.service_account),
        value(&proxy.config_map),
        value(&proxy.daemon_set),
        value(&proxy.cluster_role_binding),
        value(&proxy.role),
        value(&proxy.role_binding),
    ]
}

/// Fields Go's client writes for every object and the API server ignores on create: the zero
/// `creationTimestamp` (object and pod template) and the zero `status`.
fn normalize(mut v: Value) -> Value {
    if let Some(m) = v.as_mapping_mut() {
        m.remove("status");
        if let Some(meta) = m.get_mut("metadata").and_then(Value::as_mapping_mut) {
            meta.remove("creationTimestamp");
        }
        if let Some(meta) = m
            .get_mut("spec")
            .and_then(|s| s.get_mut("template"))
            .and_then(|t| t.get_mut("metadata"))
            .and_then(Value::as_mapping_mut)
        {
            meta.remove("creationTimestamp");
        }
    }
    v
}

fn object_name(v: &Value) -> String {
    format!(
        "{}/{}",
        v["kind"].as_str().unwrap_or("?"),
        v["metadata"]["name"].as_str().unwrap_or("?")
    )
}

fn diff(path: &str, want: &Value, got: &Value, out: &mut Vec<String>) {
    let key = |k: &Value| {
        k.as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("{k:?}"))
    };
    match (want, got) {
        (Value::Mapping(w), Value::Mapping(g)) => {
            for (k, wv) in w {
                match g.get(k) {
                    Some(gv) => diff(&format!("{path}.{}", key(k)), wv, gv, out),
                    None => out.push(format!(
                        "{path}.{}: missing (kubeadm: {})",
                        key(k),
                        short(wv)
                    )),
                }
            }
            for (k, gv) in g {
                if !w.contains_key(k) {
                    out.push(format!("{path}.{}: extra (ours: {})", key(k), short(gv)));
                }
            }
        }
        (Value::Sequence(w), Value::Sequence(g)) => {
            for i in 0..w.len().max(g.len()) {
                match (w.get(i), g.get(i)) {
                    (Some(wv), Some(gv)) => diff(&format!("{path}[{i}]"), wv, gv, out),
                    (Some(wv), None) => {
                        out.push(format!("{path}[{i}]: missing (kubeadm: {})", short(wv)))
                    }
                    (None, Some(gv)) => {
                        out.push(format!("{path}[{i}]: extra (ours: {})", short(gv)))
                    }
                    (None, None) => {}
                }
            }
        }
        (w, g) if w == g => {}
        (w, g) => out.push(format!(
            "{path}:\n--- kubeadm\n{}\n--- ours\n{}",
            long(w),
            long(g)
        )),
    }
}

fn short(v: &Value) -> String {
    yaml_serde::to_string(v)
        .unwrap_or_default()
        .trim_end()
        .replace('\n', " ")
}

fn long(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => short(other),
    }
}

fn is_deliberate(object: &str, line: &str) -> bool {
    DELIBERATE_DIFFERENCES
        .iter()
        .any(|(o, path, _)| *o == object && line.starts_with(path))
}

#[test]
fn addon_objects_match_kubeadm_field_by_field() {
    let mut report = Vec::new();
    for case in CASES {
        let cfg = load(case.config);
        let ours = ours(&cfg);
        assert_eq!(
            ours.len(),
            case.objects.len(),
            "{}: object count",
            case.name
        );
        for (golden, got) in case.objects.iter().zip(ours) {
            let want = normalize(yaml_serde::from_str(golden).expect("golden parses"));
            let got = normalize(got);
            let name = object_name(&want);
            assert_eq!(
                name,
                object_name(&got),
                "{}: objects out of kubeadm's order",
                case.name
            );
            let mut diffs = Vec::new();
            diff("", &want, &got, &mut diffs);
            report.extend(
                diffs
                    .into_iter()
                    .filter(|d| !is_deliberate(&name, d))
                    .map(|d| format!("{}: {name}: {d}", case.name)),
            );
        }
    }
    assert!(
        report.is_empty(),
        "differences from kubeadm v1.20.2:\n{}",
        report.join("\n")
    );
}

#[test]
fn deliberate_differences_are_real_and_explained() {
    let cfg = load(CASES[0].config);
    let ours = ours(&cfg);
    for (object, path, reason) in DELIBERATE_DIFFERENCES {
        assert!(!reason.trim().is_empty(), "{object} {path} needs a reason");
        let (golden, got) = CASES[0]
            .objects
            .iter()
            .zip(&ours)
            .find(|(_, got)| object_name(got) == *object)
            .unwrap_or_else(|| panic!("no object {object}"));
        let want = normalize(yaml_serde::from_str(golden).expect("golden parses"));
        let mut diffs = Vec::new();
        diff("", &want, &normalize(got.clone()), &mut diffs);
        assert!(
            diffs.iter().any(|d| d.starts_with(path)),
            "{object} {path} is listed as a difference but matches kubeadm"
        );
    }
}

#[test]
fn kubeadm_messages_are_the_ones_we_print() {
    let messages = include_str!("golden/v1.20.2/addons/config/messages.txt");
    assert_eq!(
        messages.lines().collect::<Vec<_>>(),
        [
            "[addons] Applied essential addon: CoreDNS",
            "[addons] Applied essential addon: kube-proxy"
        ]
    );
}
