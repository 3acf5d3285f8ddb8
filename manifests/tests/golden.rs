//! Golden test: our static pods against what the real kubeadm v1.20.2 wrote for the same
//! configuration (`tests/golden/v1.20.2/`, produced by `generate.sh` there from `config.yaml`).
//!
//! The comparison is on YAML values, field by field, and prints the path of every difference;
//! a second test checks the rendered text byte for byte, so key order and scalar styles match
//! kubeadm's files too.

mod common;

use components::Layout;
use manifests::HostPaths;
use yaml_serde::Value;

/// Differences from kubeadm we keep on purpose, as (component, field path, reason). Empty: on
/// this configuration kubeboot writes what kubeadm writes.
const DELIBERATE_DIFFERENCES: &[(&str, &str, &str)] = &[];

/// The golden files, as kubeadm wrote them.
const GOLDEN: &[(&str, &str)] = &[
    ("etcd", include_str!("golden/v1.20.2/etcd.yaml")),
    (
        "kube-apiserver",
        include_str!("golden/v1.20.2/kube-apiserver.yaml"),
    ),
    (
        "kube-controller-manager",
        include_str!("golden/v1.20.2/kube-controller-manager.yaml"),
    ),
    (
        "kube-scheduler",
        include_str!("golden/v1.20.2/kube-scheduler.yaml"),
    ),
];

/// The node kubeadm ran on: Debian, with these of kubeadm's extra CA directories (no /etc/pki).
fn golden_host() -> HostPaths {
    HostPaths::with_ca_dirs(&[
        "/etc/ca-certificates",
        "/usr/local/share/ca-certificates",
        "/usr/share/ca-certificates",
    ])
}

fn ours() -> Vec<(String, String)> {
    let cfg = common::golden_config();
    manifests::control_plane_pods(&cfg, &Layout::host(), &golden_host())
        .into_iter()
        .map(|(name, pod)| (name, manifests::yaml::to_yaml(&pod)))
        .collect()
}

/// Node-specific values that may differ between the machine kubeadm ran on and ours. With the
/// same config and host facts there are none today; kept as the one place to add them.
fn normalize(value: Value) -> Value {
    value
}

fn diff(path: &str, want: &Value, got: &Value, out: &mut Vec<String>) {
    match (want, got) {
        (Value::Mapping(w), Value::Mapping(g)) => {
            for (k, wv) in w {
                let key = k
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{k:?}"));
                match g.get(k) {
                    Some(gv) => diff(&format!("{path}.{key}"), wv, gv, out),
                    None => out.push(format!("{path}.{key}: missing (kubeadm: {})", short(wv))),
                }
            }
            for (k, gv) in g {
                if !w.contains_key(k) {
                    let key = k
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("{k:?}"));
                    out.push(format!("{path}.{key}: extra (ours: {})", short(gv)));
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
        (w, g) => out.push(format!("{path}: kubeadm {} / ours {}", short(w), short(g))),
    }
}

fn short(v: &Value) -> String {
    yaml_serde::to_string(v)
        .unwrap_or_default()
        .trim_end()
        .replace('\n', " ")
}

fn is_deliberate(component: &str, line: &str) -> bool {
    DELIBERATE_DIFFERENCES
        .iter()
        .any(|(c, path, _)| *c == component && line.starts_with(path))
}

#[test]
fn pods_match_kubeadm_field_by_field() {
    let ours = ours();
    let mut report = Vec::new();
    for (component, golden) in GOLDEN {
        let text = &ours
            .iter()
            .find(|(n, _)| n == component)
            .unwrap_or_else(|| panic!("no {component} pod"))
            .1;
        let want = normalize(yaml_serde::from_str(golden).expect("golden parses"));
        let got = normalize(yaml_serde::from_str(text).expect("ours parses"));
        let mut diffs = Vec::new();
        diff("", &want, &got, &mut diffs);
        report.extend(
            diffs
                .into_iter()
                .filter(|d| !is_deliberate(component, d))
                .map(|d| format!("{component}: {d}")),
        );
    }
    assert!(
        report.is_empty(),
        "differences from kubeadm v1.20.2:\n{}",
        report.join("\n")
    );
}

#[test]
fn rendered_yaml_is_byte_identical_to_kubeadms() {
    let ours = ours();
    for (component, golden) in GOLDEN {
        let text = &ours.iter().find(|(n, _)| n == component).unwrap().1;
        if text != golden {
            let first = text.lines().zip(golden.lines()).position(|(a, b)| a != b);
            panic!(
                "{component}: rendered YAML differs from kubeadm's (first differing line {first:?})\n--- kubeadm\n{golden}\n--- ours\n{text}"
            );
        }
    }
}

#[test]
fn golden_files_parse_as_pods_and_round_trip() {
    for (component, golden) in GOLDEN {
        let pod = manifests::yaml::from_yaml(golden).unwrap_or_else(|e| panic!("{component}: {e}"));
        assert_eq!(pod.metadata.name.as_deref(), Some(*component));
        assert_eq!(
            &manifests::yaml::to_yaml(&pod),
            golden,
            "{component} does not survive a round trip"
        );
    }
}

#[test]
fn deliberate_differences_have_reasons() {
    for (component, path, reason) in DELIBERATE_DIFFERENCES {
        assert!(
            !reason.trim().is_empty(),
            "{component} {path} needs a reason"
        );
    }
}

/// What `kubeboot init` with `config.yaml` gives the controller-manager beyond kubeadm's flags
/// (components::config::defaults::kubeboot_cluster_defaults, recorded in the uploaded
/// ClusterConfiguration's `controllerManager.extraArgs`): (flag, reason). Each must be there.
const INIT_CONTROLLER_MANAGER_FLAGS: &[(&str, &str)] = &[
    (
        "--controllers=*,bootstrapsigner,tokencleaner,-nodeipam",
        "in place of kubeadm's --controllers: kube-controller-manager v1.20's node IPAM waits \
         10 s before its first Node list and holds back every controller's start; the kubeboot \
         agents of the control-plane nodes give Nodes their podCIDRs instead",
    ),
    (
        "--kube-api-burst=200",
        "the default client limit (20 qps, burst 30) makes starting ~30 controllers take ~4 s",
    ),
    ("--kube-api-qps=100", "as above"),
];

/// `golden_config()` is what kubeadm read; `kubeboot init` reads the same file through its own
/// resolver, which adds kubeboot's controller-manager defaults and nothing else to the pods.
#[test]
fn init_adds_only_the_listed_controller_manager_flags() {
    use components::config::{ConfigSource, HostFacts, InitFlags, resolve_init};
    let flags = InitFlags {
        config: Some(ConfigSource {
            path: "config.yaml".into(),
            content: include_str!("golden/v1.20.2/config.yaml").into(),
        }),
        set_flags: vec!["config".into()],
        ..Default::default()
    };
    let host = HostFacts {
        hostname: "node1".into(),
        default_address: Some("10.123.0.2".parse().unwrap()),
        local_addresses: vec!["10.123.0.2".parse().unwrap()],
        detected_version: None,
    };
    let cfg = resolve_init(&flags, &host).expect("config.yaml resolves");
    for (name, pod) in manifests::control_plane_pods(&cfg, &Layout::host(), &golden_host()) {
        let (_, golden) = GOLDEN
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no golden {name}"));
        let mut want = manifests::yaml::from_yaml(golden).expect("golden parses");
        let mut got = pod;
        if name == "kube-controller-manager" {
            let (w, g) = (common::command(&want), common::command(&got));
            let added: Vec<&str> = g
                .iter()
                .filter(|a| !w.contains(a))
                .map(String::as_str)
                .collect();
            let removed: Vec<&str> = w
                .iter()
                .filter(|a| !g.contains(a))
                .map(String::as_str)
                .collect();
            let listed: Vec<&str> = INIT_CONTROLLER_MANAGER_FLAGS
                .iter()
                .map(|(f, reason)| {
                    assert!(!reason.trim().is_empty(), "{f} needs a reason");
                    *f
                })
                .collect();
            assert_eq!(added, listed, "flags added to kubeadm's");
            assert_eq!(removed, ["--controllers=*,bootstrapsigner,tokencleaner"]);
            for p in [&mut want, &mut got] {
                p.spec.as_mut().unwrap().containers[0].command = None;
            }
        }
        assert_eq!(
            manifests::yaml::to_yaml(&got),
            manifests::yaml::to_yaml(&want),
            "{name}"
        );
    }
}
