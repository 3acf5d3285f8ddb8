//! Kubeadm config inputs for the property tests: seeds (real configs) to mutate, and a
//! generator of plausible InitConfiguration + ClusterConfiguration files with extreme values
//! where users and typos put them. Shared by `#[path]` with the pki and phases property
//! tests; the phases one builds what init builds from every config the resolver accepts.
//!
//! Strategies pick from lists and derive text from numbers rather than from regexes: proptest's
//! regex and per-character strategies cost milliseconds a value in a debug build, and each
//! property runs 10,000 cases.

#![allow(dead_code)] // each test crate uses part of it

use components::config::{ApiVersion, ConfigSource, HostFacts, InitConfig, InitFlags};
use components::config::{JoinConfig, JoinFlags, join_defaults_yaml, resolve_join};
use components::config::{init_defaults_yaml, resolve_init};
use components::version::v;
use proptest::prelude::*;

use super::mutate;

/// The node the configs are resolved for; its addresses include the seeds' advertise
/// addresses, so valid seeds stay valid.
pub fn host() -> HostFacts {
    let ip = |s: &str| s.parse().expect("address");
    HostFacts {
        hostname: "node1".into(),
        default_address: Some(ip("10.0.0.1")),
        local_addresses: ["10.0.0.1", "1.2.3.4", "10.123.0.2", "fd00::1"]
            .into_iter()
            .map(ip)
            .collect(),
        detected_version: Some(v(1, 20, 2)),
    }
}

/// `content` through `kubeboot init --config`'s resolver.
pub fn resolve_file(content: &str) -> Option<InitConfig> {
    let flags = InitFlags {
        config: Some(ConfigSource {
            path: "kubeadm.yaml".into(),
            content: content.to_string(),
        }),
        ..InitFlags::default()
    };
    resolve_init(&flags, &host()).ok()
}

/// `content` through `kubeboot join --config`'s resolver.
pub fn resolve_join_file(content: &str) -> Option<JoinConfig> {
    let flags = JoinFlags {
        config: Some(ConfigSource {
            path: "join.yaml".into(),
            content: content.to_string(),
        }),
        set_flags: vec!["config".into()],
        ..JoinFlags::default()
    };
    resolve_join(&flags, &host()).ok()
}

/// Real join configs: `config print join-defaults` in both API versions and a control-plane
/// join with file discovery.
pub fn join_seeds() -> Vec<Vec<u8>> {
    vec![
        join_defaults_yaml(ApiVersion::V1beta2).into_bytes(),
        join_defaults_yaml(ApiVersion::V1beta3).into_bytes(),
        b"apiVersion: kubeadm.k8s.io/v1beta3\nkind: JoinConfiguration\ncaCertPath: /etc/kubernetes/pki/ca.crt\n\
          discovery:\n  file:\n    kubeConfigPath: https://10.0.0.1/cluster-info.yaml\n  tlsBootstrapToken: abcdef.0123456789abcdef\n  timeout: 90s\n\
          nodeRegistration:\n  name: node2\n  taints: []\n  ignorePreflightErrors: [Swap]\n\
          controlPlane:\n  localAPIEndpoint:\n    advertiseAddress: 10.0.0.1\n    bindPort: 6443\n\
          \x20 certificateKey: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\nskipPhases: [preflight]\n"
            .to_vec(),
    ]
}

const COMPONENT_CONFIGS: &str = "---\napiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: cgroupfs\nevictionHard: {memory.available: 100Mi}\n---\napiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: iptables\nconntrack: {maxPerCore: 0}\n";

/// Real configs: the kubeadm golden test's, `config print init-defaults` in both API
/// versions, the golden one with component configs, and a JoinConfiguration.
pub fn seeds() -> Vec<Vec<u8>> {
    // Read at run time (cargo and nextest set it), not baked in at compile time: a test
    // binary that cargo reuses from another checkout sharing the target directory must read
    // this checkout's files.
    let golden = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(
            || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")),
            std::path::PathBuf::from,
        )
        .join("../manifests/tests/golden/v1.20.2/config.yaml");
    let golden = std::fs::read_to_string(golden).expect("the golden kubeadm config");
    vec![
        format!("{golden}{COMPONENT_CONFIGS}").into_bytes(),
        golden.into_bytes(),
        init_defaults_yaml(&v(1, 20, 2), ApiVersion::V1beta2).into_bytes(),
        init_defaults_yaml(&v(1, 30, 1), ApiVersion::V1beta3).into_bytes(),
        b"apiVersion: kubeadm.k8s.io/v1beta2\nkind: JoinConfiguration\ndiscovery:\n  bootstrapToken:\n    apiServerEndpoint: 10.0.0.1:6443\n    token: abcdef.0123456789abcdef\n    caCertHashes: [sha256:00]\n  timeout: 5m0s\n".to_vec(),
    ]
}

/// A YAML double-quoted scalar holding exactly `s`.
pub fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            c if (c as u32) <= 0xffff => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

const DURATIONS: &[&str] = &[
    "24h0m0s",
    "0",
    "4m0s",
    "1s",
    "500ms",
    "1h30m",
    "100000000h",
    "2562047h47m16.854775807s",
    "2562047h47m16.854775808s",
    "9223372036854775807ns",
    "9223372036854775808ns",
    "-1h",
    "-0s",
    "1d",
    "10",
    "",
    ".s",
    " 1h",
    "0.0000000000000000000000001h",
];

const NUMBERS: &[&str] = &[
    "",
    ".",
    ".5",
    "1.",
    "0",
    "00000000000000000000001",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551616",
    "0.00000000000000000000000000001",
    "9223372036.854775807",
];

const UNITS: &[&str] = &[
    "h", "m", "s", "ms", "us", "\u{b5}s", "\u{3bc}s", "ns", "d", "", "H", "sec",
];

/// Go-duration-like text from `c`: valid ones, extremes, near misses, composed numbers and
/// units, and arbitrary text.
pub fn duration(c: &mut mutate::Choices<'_>) -> String {
    match c.below(10) {
        0..=2 => c.pick(DURATIONS).to_string(),
        3..=8 => {
            let mut s = c.mostly(&[""], &["+", "-"]).to_string();
            for _ in 0..=c.below(4) {
                let number = match c.below(4) {
                    0 => c.below(100_000).to_string(),
                    1 => c.u64().to_string(),
                    2 => format!("{}.{}", c.next(), c.u64()),
                    _ => c.pick(NUMBERS).to_string(),
                };
                s.push_str(&number);
                s.push_str(c.pick(UNITS));
            }
            s
        }
        _ => c.text(30),
    }
}

/// [`duration`] as a strategy.
pub fn duration_text() -> impl Strategy<Value = String> {
    mutate::from_choices(24, duration)
}

fn scalar(c: &mut mutate::Choices<'_>) -> String {
    match c.below(10) {
        0..=3 => c
            .pick(&[
                "true",
                "x",
                "/etc/kubernetes/x.conf",
                "0",
                "10s",
                "a=b,c=d",
                "\"\"",
            ])
            .to_string(),
        4 | 5 => quoted(c.pick(mutate::TOKENS)),
        6 => c.pick(mutate::TOKENS).to_string(),
        7 => (c.u64() as i64).to_string(),
        8 => format!("{:e}", f64::from_bits(c.u64())),
        _ => quoted(&c.text(40)),
    }
}

fn ipv4(c: &mut mutate::Choices<'_>) -> String {
    std::net::Ipv4Addr::from(c.next()).to_string()
}

fn cidr(c: &mut mutate::Choices<'_>) -> String {
    match c.below(8) {
        0..=3 => c
            .pick(&[
                "10.244.0.0/16",
                "10.96.0.0/12",
                "192.168.0.0/24",
                "fd00:10:244::/56",
                "10.244.0.0/16,fd00:10:244::/56",
            ])
            .to_string(),
        4 | 5 => c
            .pick(&[
                "0.0.0.0/0",
                "10.0.0.0/32",
                "10.0.0.0/33",
                "10.96.0.0/28",
                "fd00::/8",
                "fd00::/127",
                "fd00::/128",
                "::/0",
                "10.244.0.0/16,10.245.0.0/16,fd00::/48",
                "10.244.0.0/16,",
                "10.244.0.0",
            ])
            .to_string(),
        6 => format!("{}/{}", ipv4(c), c.below(40)),
        _ => {
            let a = (u128::from(c.u64()) << 64) | u128::from(c.u64());
            format!("{}/{}", std::net::Ipv6Addr::from(a), c.below(140))
        }
    }
}

fn version(c: &mut mutate::Choices<'_>) -> String {
    match c.below(6) {
        0..=3 => c
            .pick(&["v1.20.2", "v1.20.0", "v1.25.3", "v1.33.99"])
            .to_string(),
        4 => c
            .pick(&[
                "v1.19.0",
                "v1.34.0",
                "1.25.0-rc.1",
                "v1.20",
                "",
                "v1.20.2+build",
                "v1.20.2-",
                "v4294967295.4294967295.4294967295",
                "v1.4294967296.0",
                "latest",
                "stable-1",
            ])
            .to_string(),
        _ => format!("v{}.{}.{}", c.next(), c.next(), c.next()),
    }
}

/// A token from a number: valid in form whatever the number.
pub fn token_from(n: u64) -> String {
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut s = String::new();
    let mut x = n;
    for i in 0..22u64 {
        if i == 6 {
            s.push('.');
        }
        s.push(char::from(alphabet[(x % 36) as usize]));
        x = x / 36 + i * 7;
    }
    s
}

fn token(c: &mut mutate::Choices<'_>) -> String {
    match c.below(6) {
        0..=3 => token_from(c.u64()),
        4 => c
            .pick(&[
                "abcdef.0123",
                "ABCDEF.0123456789abcdef",
                "abcdef0123456789abcdef",
                "abcdef.0123456789abcdef.x",
                "",
                ".",
            ])
            .to_string(),
        _ => c.text(30),
    }
}

fn group(c: &mut mutate::Choices<'_>) -> String {
    match c.below(6) {
        0..=3 => c
            .pick(&[
                "system:bootstrappers:kubeadm:default-node-token",
                "system:bootstrappers:worker",
                "system:bootstrappers",
            ])
            .to_string(),
        4 => c
            .pick(&[
                "system:bootstrappers:",
                "system:bootstrappers:x-",
                "system:nodes",
                "",
            ])
            .to_string(),
        _ => c.text(300),
    }
}

fn option<T>(
    c: &mut mutate::Choices<'_>,
    percent: u32,
    f: impl FnOnce(&mut mutate::Choices<'_>) -> T,
) -> Option<T> {
    if c.chance(percent) { Some(f(c)) } else { None }
}

/// A kubeadm InitConfiguration + ClusterConfiguration from `c`: plausible fields, extreme
/// values where users and typos put them. Most fields are valid or absent most of the time,
/// so a fair share passes validation and reaches what comes after it.
pub fn config(c: &mut mutate::Choices<'_>) -> String {
    let api = format!("kubeadm.k8s.io/{}", c.pick(&["v1beta2", "v1beta3"]));
    let mut y = format!("apiVersion: {api}\nkind: InitConfiguration\n");
    let tokens = c.below(3);
    if tokens > 0 {
        y.push_str("bootstrapTokens:\n");
    }
    for _ in 0..tokens {
        y.push_str("- description: fuzz\n");
        if let Some(t) = option(c, 30, token) {
            y.push_str(&format!("  token: {}\n", quoted(&t)));
        }
        if let Some(t) = option(c, 70, duration) {
            y.push_str(&format!("  ttl: {}\n", quoted(&t)));
        }
        let usages = c.mostly(
            &["signing, authentication", "authentication", "signing"],
            &["", "signing, bogus"],
        );
        y.push_str(&format!("  usages: [{usages}]\n"));
        if let Some(g) = option(c, 30, group) {
            y.push_str(&format!("  groups: [{}]\n", quoted(&g)));
        }
    }
    y.push_str("localAPIEndpoint:\n");
    if let Some(a) = option(c, 50, |c| match c.below(6) {
        0..=3 => c
            .pick(&["10.0.0.1", "1.2.3.4", "0.0.0.0", "fd00::1", "::"])
            .to_string(),
        4 => ipv4(c),
        _ => scalar(c),
    }) {
        y.push_str(&format!("  advertiseAddress: {a}\n"));
    }
    if let Some(p) = option(c, 50, |c| match c.below(7) {
        0..=3 => c.pick(&["6443", "443", "65535"]).to_string(),
        4 => (c.u64() as i64).to_string(),
        5 => c.below(70_000).to_string(),
        _ => scalar(c),
    }) {
        y.push_str(&format!("  bindPort: {p}\n"));
    }
    if let Some(n) = option(c, 50, |c| match c.below(6) {
        0..=3 => c.pick(&["node1", "Node-1", "cp.example.test"]).to_string(),
        4 => c
            .pick(&["", "Bad Name", "-x", "a..b", "node_1"])
            .to_string(),
        _ => c.text(300),
    }) {
        y.push_str(&format!("nodeRegistration:\n  name: {}\n", quoted(&n)));
    }
    if let Some(k) = option(c, 20, |c| {
        if c.below(3) < 2 {
            format!("{:016x}", c.u64()).repeat(4)
        } else {
            c.pick(&["", "0123", "zz", "00"]).to_string()
        }
    }) {
        y.push_str(&format!("certificateKey: {}\n", quoted(&k)));
    }
    y.push_str(&format!(
        "---\napiVersion: {api}\nkind: ClusterConfiguration\n"
    ));
    if let Some(v) = option(c, 50, version) {
        y.push_str(&format!("kubernetesVersion: {}\n", quoted(&v)));
    }
    y.push_str("networking:\n");
    if let Some(p) = option(c, 50, cidr) {
        y.push_str(&format!("  podSubnet: {}\n", quoted(&p)));
    }
    if let Some(s) = option(c, 50, cidr) {
        y.push_str(&format!("  serviceSubnet: {}\n", quoted(&s)));
    }
    y.push_str("apiServer:\n");
    if let Some(t) = option(c, 50, duration) {
        y.push_str(&format!("  timeoutForControlPlane: {}\n", quoted(&t)));
    }
    let extra = c.below(3);
    if extra > 0 {
        y.push_str("  extraArgs:\n");
    }
    for i in 0..extra {
        let key = c.pick(&[
            "authorization-mode",
            "service-node-port-range",
            "profiling",
            "v",
            "bind-address",
            "x",
        ]);
        y.push_str(&format!("    {key}{i}: {}\n", scalar(c)));
    }
    if let Some(e) = option(c, 30, |c| match c.below(7) {
        0..=3 => c
            .pick(&[
                "10.0.0.1:6443",
                "cp.example.test",
                "[fd00::1]:6443",
                "lb:443",
            ])
            .to_string(),
        4 => c
            .pick(&[
                "lb:0",
                "lb:65536",
                "lb:99999999999999999999",
                "[::1",
                ":6443",
                "a b",
            ])
            .to_string(),
        5 => format!("{}:{}", ipv4(c), c.u64()),
        _ => scalar(c),
    }) {
        y.push_str(&format!("controlPlaneEndpoint: {e}\n"));
    }
    if let Some(d) = option(c, 30, |c| match c.below(6) {
        0..=3 => c.pick(&["/etc/kubernetes/pki", "/srv/pki"]).to_string(),
        4 => c.pick(&["pki", "/", "\"\"", ".."]).to_string(),
        _ => scalar(c),
    }) {
        y.push_str(&format!("certificatesDir: {d}\n"));
    }
    if api.ends_with("v1beta3")
        && let Some(a) = option(c, 30, |c| {
            c.pick(&["ECDSA-P256", "RSA-2048", "RSA-4096", "RSA-1024"])
        })
    {
        y.push_str(&format!("encryptionAlgorithm: {a}\n"));
    }
    y
}

/// [`config`] as a strategy.
pub fn generated_config() -> impl Strategy<Value = String> {
    mutate::from_choices(160, config)
}
