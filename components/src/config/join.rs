//! `kubeboot join`'s configuration: the one pure function that merges the join flags with
//! `--config` into a defaulted, validated [`JoinConfig`] (kubeadm: cmd/join.go
//! `newJoinData`, util/config/joinconfiguration.go `LoadOrDefaultJoinConfiguration`,
//! validation.go `ValidateJoinConfiguration`, `ValidateDiscovery`).
//!
//! Deliberately stricter than kubeadm 1.20, each case an error that names the fix where
//! kubeadm warns or silently drops what the user typed: an unknown field in the
//! JoinConfiguration (as for init); other documents in a join config; a positional endpoint
//! next to `--config`; control-plane flags without `--control-plane`; token discovery flags
//! without an endpoint; malformed CA pins, certificate keys and a zero discovery timeout
//! (kubeadm finds those out in the middle of the join).

use super::defaults::default_join;
use super::duration::parse_go_duration;
use super::flags::{ConfigError, HostFacts, JoinFlags, name_flags, refuse_mixed_arguments};
use super::load::{DiscoverySpec, JoinControlPlaneSpec, JoinSpec, load_for_join};
use super::validate::{
    FieldError, check_certificate_key, check_endpoint, check_node_file, check_node_registration,
    is_bootstrap_token, merge_ignore_preflight_errors, parse_host_port,
};
use super::{JoinConfig, JoinControlPlaneConfig, JoinDiscovery};

/// The name of the positional `<host:port>` argument in messages (kubeadm's usage line:
/// `join [api-server-endpoint]`).
pub const ENDPOINT_ARGUMENT: &str = "api-server-endpoint";

/// Config field paths and the flags that set them, so an error names what the user typed.
/// For a field two flags can set, the more specific flag comes first.
const JOIN_FLAG_FIELDS: &[(&str, &str)] = &[
    (
        "apiserver-advertise-address",
        "controlPlane.localAPIEndpoint.advertiseAddress",
    ),
    (
        "apiserver-bind-port",
        "controlPlane.localAPIEndpoint.bindPort",
    ),
    ("certificate-key", "controlPlane.certificateKey"),
    ("node-name", "nodeRegistration.name"),
    ("cri-socket", "nodeRegistration.criSocket"),
    ("discovery-token", "discovery.bootstrapToken.token"),
    ("token", "discovery.bootstrapToken.token"),
    (
        "discovery-token-ca-cert-hash",
        "discovery.bootstrapToken.caCertHashes",
    ),
    ("discovery-file", "discovery.file.kubeConfigPath"),
    ("tls-bootstrap-token", "discovery.tlsBootstrapToken"),
    ("token", "discovery.tlsBootstrapToken"),
    ("experimental-patches", "patches"),
];

const TOKEN_FORMAT: &str = "is not a valid bootstrap token: expected [a-z0-9]{6}.[a-z0-9]{16}";

/// `--discovery-token-ca-cert-hash` values, each entry possibly a comma-separated list (a
/// pflag string slice).
fn split_list(values: &[String]) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect()
}

/// The JoinConfiguration the flags describe (kubeadm: newJoinData, before defaulting).
fn from_flags(flags: &JoinFlags, errs: &mut Vec<FieldError>) -> JoinSpec {
    let mut j = JoinSpec::default();
    let hashes = split_list(&flags.discovery_token_ca_cert_hash);
    let d = &mut j.discovery;
    // `--token` stands in for both tokens where they are not given on their own.
    d.tls_bootstrap_token = flags
        .tls_bootstrap_token
        .clone()
        .or_else(|| flags.token.clone());
    d.file = flags.discovery_file.clone();
    match &flags.endpoint {
        Some(endpoint) => {
            d.api_server_endpoint = Some(endpoint.clone());
            d.token = flags
                .discovery_token
                .clone()
                .or_else(|| flags.token.clone());
            d.ca_cert_hashes = hashes;
            d.unsafe_skip_ca_verification = flags.discovery_token_unsafe_skip_ca_verification;
        }
        None => {
            // kubeadm drops token discovery without an endpoint, and these flags with it.
            let given: Vec<&str> = [
                ("discovery-token", flags.discovery_token.is_some()),
                ("discovery-token-ca-cert-hash", !hashes.is_empty()),
                (
                    "discovery-token-unsafe-skip-ca-verification",
                    flags.discovery_token_unsafe_skip_ca_verification,
                ),
            ]
            .into_iter()
            .filter_map(|(name, set)| set.then_some(name))
            .collect();
            if !given.is_empty() {
                errs.push(FieldError::other(
                    ENDPOINT_ARGUMENT,
                    format!(
                        "is missing: --{} only work with token discovery, which needs the API server's address: kubeboot join <host:port> ...",
                        given.join(", --")
                    ),
                ));
            }
        }
    }
    let control_plane_flags: Vec<&str> = [
        (
            "apiserver-advertise-address",
            flags.apiserver_advertise_address.is_some(),
        ),
        ("apiserver-bind-port", flags.apiserver_bind_port.is_some()),
        ("certificate-key", flags.certificate_key.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect();
    if flags.control_plane {
        let mut cp = JoinControlPlaneSpec {
            certificate_key: flags.certificate_key.clone(),
            ..Default::default()
        };
        cp.local_api_endpoint.advertise_address = flags.apiserver_advertise_address.clone();
        cp.local_api_endpoint.bind_port = flags.apiserver_bind_port.map(i64::from);
        j.control_plane = Some(cp);
    } else if !control_plane_flags.is_empty() {
        // kubeadm only warns and joins a worker; the user meant one or the other.
        errs.push(FieldError::other(
            "--control-plane",
            format!(
                "is required with --{}: add --control-plane to join as a control-plane node, or leave those flags out to join a worker",
                control_plane_flags.join(", --")
            ),
        ));
    }
    j
}

/// Merges the flags with the `--config` file (if any), applies kubeadm's defaults and
/// validates the result, as `kubeadm join` does before its first phase.
///
/// With `--config` (a file holding one JoinConfiguration, v1beta2 or v1beta3), only the
/// flags kubeadm allows ([`super::flags::ALLOWED_WITH_CONFIG`], `skip-*`) may be set;
/// `--node-name` and `--cri-socket` then override the file, `--ignore-preflight-errors` adds
/// to its list, `--skip-phases` replaces v1beta3's `skipPhases` and
/// `--experimental-patches` its `patches.directory`.
///
/// # Errors
///
/// [`ConfigError::MixedArguments`], [`ConfigError::Load`] for a file that does not parse,
/// has an unknown field or holds another kind of document, and [`ConfigError::Invalid`]
/// with every invalid field, named as the user wrote it (a flag's name when a flag set it).
pub fn resolve_join(flags: &JoinFlags, host: &HostFacts) -> Result<JoinConfig, ConfigError> {
    let mut errs = Vec::new();
    let mut spec = match &flags.config {
        Some(src) => {
            refuse_mixed_arguments(&flags.set_flags)?;
            let spec = load_for_join(&src.content).map_err(|source| ConfigError::Load {
                path: src.path.clone(),
                source,
            })?;
            if let Some(endpoint) = &flags.endpoint {
                // kubeadm ignores it and joins whatever the file says.
                errs.push(FieldError::invalid(
                    ENDPOINT_ARGUMENT,
                    endpoint,
                    "cannot be given with --config: set discovery.bootstrapToken.apiServerEndpoint in the JoinConfiguration instead",
                ));
            }
            spec
        }
        None => from_flags(flags, &mut errs),
    };

    // Flags that win over the file (kubeadm: cmd/join.go newJoinData).
    if let Some(name) = &flags.node_name {
        spec.node_registration.name = Some(name.clone());
    }
    if let Some(sock) = &flags.cri_socket {
        spec.node_registration.cri_socket = Some(sock.clone());
    }
    if !flags.skip_phases.is_empty() {
        spec.skip_phases = flags.skip_phases.clone();
    }
    if let Some(dir) = &flags.experimental_patches {
        spec.patches_directory = Some(dir.clone());
    }
    // The file's list is checked (and `all` refused) here, once, with the flag's.
    let file_ignore = std::mem::take(&mut spec.node_registration.ignore_preflight_errors);
    let ignore = merge_ignore_preflight_errors(&flags.ignore_preflight_errors, &file_ignore)
        .unwrap_or_else(|e| {
            errs.extend(e);
            Vec::new()
        });

    default_join(&mut spec, host);
    match validate_join(&spec, host) {
        Ok(mut cfg) if errs.is_empty() => {
            cfg.node.ignore_preflight_errors = ignore;
            return Ok(cfg);
        }
        Ok(_) => {}
        Err(more) => errs.extend(more),
    }
    if flags.config.is_none() && flags.endpoint.is_some() {
        for e in &mut errs {
            if e.field == "discovery.bootstrapToken.apiServerEndpoint" {
                e.field = ENDPOINT_ARGUMENT.to_string();
            }
        }
    }
    name_flags(&mut errs, JOIN_FLAG_FIELDS, &flags.set_flags);
    Err(ConfigError::Invalid(errs))
}

/// A CA public key pin, `sha256:<64 hex>` (kubeadm: util/pubkeypin `Set.Allow`), in the
/// lower-case form pins are compared in; `None` if it is not one.
pub fn normalize_ca_cert_hash(hash: &str) -> Option<String> {
    let (format, value) = hash.trim().split_once(':')?;
    let ok = format.eq_ignore_ascii_case("sha256")
        && value.len() == 64
        && value.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then(|| format!("sha256:{}", value.to_ascii_lowercase()))
}

fn check_token(field: &str, token: Option<&str>, errs: &mut Vec<FieldError>) -> String {
    match token {
        // The token is a secret: the message names the field, never the value.
        Some(t) if !is_bootstrap_token(t) => errs.push(FieldError::other(field, TOKEN_FORMAT)),
        Some(_) => {}
        None => errs.push(FieldError::other(
            field,
            "is required: pass --token (or --discovery-token and --tls-bootstrap-token)",
        )),
    }
    token.unwrap_or_default().to_string()
}

/// Is token discovery asked for? The version-independent form is flat, so any of its
/// fields being set means the file (or the flags) had a `bootstrapToken`.
fn wants_token_discovery(d: &DiscoverySpec) -> bool {
    d.token.is_some()
        || d.api_server_endpoint.is_some()
        || !d.ca_cert_hashes.is_empty()
        || d.unsafe_skip_ca_verification
}

fn check_discovery(d: &DiscoverySpec, errs: &mut Vec<FieldError>) -> Option<JoinDiscovery> {
    const TLS: &str = "discovery.tlsBootstrapToken";
    match (wants_token_discovery(d), &d.file) {
        (false, None) => {
            errs.push(FieldError::other(
                "discovery",
                "bootstrapToken or file must be set: give the API server's address and a token \
                 (kubeboot join <host:port> --token <token> --discovery-token-ca-cert-hash sha256:<hash>) \
                 or --discovery-file",
            ));
            None
        }
        (true, Some(_)) => {
            errs.push(FieldError::other(
                "discovery",
                "bootstrapToken and file cannot both be set: use token discovery or file discovery",
            ));
            None
        }
        (true, None) => {
            const EP: &str = "discovery.bootstrapToken.apiServerEndpoint";
            const HASHES: &str = "discovery.bootstrapToken.caCertHashes";
            let endpoint = d.api_server_endpoint.clone().unwrap_or_default();
            if d.api_server_endpoint.is_none() {
                errs.push(FieldError::other(
                    EP,
                    "is required: the host:port of an API server of the cluster",
                ));
            } else if !matches!(parse_host_port(&endpoint), Some((_, Some(_)))) {
                errs.push(FieldError::invalid(
                    EP,
                    &endpoint,
                    "is not valid: expected host:port, an IP address or DNS name and a port between 1 and 65535 (e.g. 10.0.0.1:6443)",
                ));
            }
            let token = check_token("discovery.bootstrapToken.token", d.token.as_deref(), errs);
            if d.ca_cert_hashes.is_empty() && !d.unsafe_skip_ca_verification {
                errs.push(FieldError::other(
                    HASHES,
                    "is empty: token discovery without a CA pin trusts whichever server answers; \
                     pass --discovery-token-ca-cert-hash sha256:<hash> (printed by \"kubeboot init\" and \
                     \"kubeboot token create --print-join-command\"), or \
                     --discovery-token-unsafe-skip-ca-verification to accept any CA",
                ));
            }
            let mut hashes = Vec::new();
            for h in &d.ca_cert_hashes {
                match normalize_ca_cert_hash(h) {
                    Some(n) => hashes.push(n),
                    None => errs.push(FieldError::invalid(
                        HASHES,
                        h,
                        "is not a CA public key hash: expected sha256:<64 hexadecimal characters>",
                    )),
                }
            }
            // A missing TLS token is the missing discovery token, and one equal to it has
            // its faults: both are reported already.
            if d.tls_bootstrap_token.is_some() && d.tls_bootstrap_token != d.token {
                check_token(TLS, d.tls_bootstrap_token.as_deref(), errs);
            }
            Some(JoinDiscovery::Token {
                api_server_endpoint: endpoint,
                token,
                ca_cert_hashes: hashes,
                unsafe_skip_ca_verification: d.unsafe_skip_ca_verification,
            })
        }
        (false, Some(file)) => {
            if file.trim().is_empty() {
                errs.push(FieldError::other(
                    "discovery.file.kubeConfigPath",
                    "is required: a kubeconfig file or an https:// URL",
                ));
            } else if let Some((scheme, _)) = file.split_once("://")
                && scheme != "https"
            {
                errs.push(FieldError::invalid(
                    "discovery.file.kubeConfigPath",
                    file,
                    "is not valid: if a URL is used, the scheme must be https",
                ));
            }
            // Optional here: without it the discovery file's own credentials are used.
            if d.tls_bootstrap_token.is_some() {
                check_token(TLS, d.tls_bootstrap_token.as_deref(), errs);
            }
            Some(JoinDiscovery::File {
                path_or_url: file.clone(),
            })
        }
    }
}

/// Validates a defaulted JoinConfiguration against the host and converts it to the
/// internal form. `node.ignore_preflight_errors` holds the file's list lower-cased (the
/// caller merges in the flag's).
///
/// # Errors
///
/// Every invalid field, one [`FieldError`] each.
pub fn validate_join(j: &JoinSpec, host: &HostFacts) -> Result<JoinConfig, Vec<FieldError>> {
    let mut errs = Vec::new();
    let node = check_node_registration(&j.node_registration, &mut errs);
    let discovery = check_discovery(&j.discovery, &mut errs);

    let timeout_text = j.discovery.timeout.as_deref().unwrap_or("5m0s");
    let timeout = match parse_go_duration(timeout_text) {
        Ok(d) if d.is_zero() => {
            errs.push(FieldError::invalid(
                "discovery.timeout",
                timeout_text,
                "must be longer than 0, or discovery gives up at once (kubeadm's default is 5m0s)",
            ));
            None
        }
        Ok(d) => Some(d),
        Err(e) => {
            errs.push(FieldError::invalid(
                "discovery.timeout",
                timeout_text,
                e.to_string(),
            ));
            None
        }
    };

    let ca_cert_path = j.ca_cert_path.clone().unwrap_or_default();
    let bad_ca_path = if !ca_cert_path.ends_with(".crt") {
        Some("must be an absolute path to a .crt file".to_string())
    } else {
        check_node_file(std::path::Path::new(&ca_cert_path))
    };
    if let Some(reason) = bad_ca_path {
        errs.push(FieldError::invalid("caCertPath", &ca_cert_path, reason));
    }

    let control_plane = j.control_plane.as_ref().map(|cp| {
        if let Some(key) = &cp.certificate_key {
            check_certificate_key("controlPlane.certificateKey", key, &mut errs);
        }
        let endpoint = check_endpoint(
            "controlPlane.localAPIEndpoint",
            &cp.local_api_endpoint,
            host,
            &mut errs,
        );
        (endpoint, cp.certificate_key.clone())
    });
    if j.patches_directory.is_some() {
        errs.push(FieldError::other(
            "patches",
            "is not supported by kubeboot yet",
        ));
    }

    let (Some(discovery), Some(timeout)) = (discovery, timeout) else {
        return Err(errs);
    };
    let control_plane = match control_plane {
        None => None,
        Some((Some(local_api_endpoint), certificate_key)) => Some(JoinControlPlaneConfig {
            local_api_endpoint,
            certificate_key,
        }),
        Some((None, _)) => return Err(errs),
    };
    if !errs.is_empty() {
        return Err(errs);
    }
    Ok(JoinConfig {
        node,
        ca_cert_path,
        discovery,
        tls_bootstrap_token: j.discovery.tls_bootstrap_token.clone().unwrap_or_default(),
        discovery_timeout: timeout,
        control_plane,
        skip_phases: j.skip_phases.clone(),
        patches_directory: None,
        api_version: j.api_version,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::flags::ConfigSource;
    use crate::config::load::{ApiVersion, LoadError};
    use crate::config::{ApiEndpoint, Taint};
    use crate::version::v;

    const TOKEN: &str = "abcdef.0123456789abcdef";
    const HASH: &str = "sha256:0d5e3a6b0b2b1c4b6f1e7c8a9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a";

    fn host() -> HostFacts {
        HostFacts {
            hostname: "Worker-1".into(),
            default_address: Some("10.0.0.2".parse().unwrap()),
            local_addresses: vec!["10.0.0.2".parse().unwrap(), "10.0.1.2".parse().unwrap()],
            detected_version: Some(v(1, 20, 2)),
        }
    }

    /// `kubeboot join 10.0.0.1:6443 --token T --discovery-token-ca-cert-hash H`, plus `set`.
    fn worker() -> JoinFlags {
        JoinFlags {
            endpoint: Some("10.0.0.1:6443".into()),
            token: Some(TOKEN.into()),
            discovery_token_ca_cert_hash: vec![HASH.into()],
            set_flags: vec!["token".into(), "discovery-token-ca-cert-hash".into()],
            ..Default::default()
        }
    }

    fn with_config(content: &str, set: &[&str]) -> JoinFlags {
        let mut set_flags = vec!["config".to_string()];
        set_flags.extend(set.iter().map(|s| s.to_string()));
        JoinFlags {
            config: Some(ConfigSource {
                path: "/tmp/join.yaml".into(),
                content: content.into(),
            }),
            set_flags,
            ..Default::default()
        }
    }

    fn errors(flags: &JoinFlags) -> Vec<String> {
        match resolve_join(flags, &host()) {
            Err(ConfigError::Invalid(list)) => list.iter().map(ToString::to_string).collect(),
            other => panic!("expected field errors, got {other:?}"),
        }
    }

    fn one_error(flags: &JoinFlags) -> String {
        let e = errors(flags);
        assert_eq!(e.len(), 1, "{e:#?}");
        e[0].clone()
    }

    #[test]
    fn worker_from_flags_gets_kubeadm_defaults() {
        let cfg = resolve_join(&worker(), &host()).unwrap();
        assert_eq!(
            cfg.discovery,
            JoinDiscovery::Token {
                api_server_endpoint: "10.0.0.1:6443".into(),
                token: TOKEN.into(),
                ca_cert_hashes: vec![HASH.into()],
                unsafe_skip_ca_verification: false,
            }
        );
        assert_eq!(cfg.tls_bootstrap_token, TOKEN);
        assert_eq!(cfg.discovery_timeout, Duration::from_secs(300));
        assert_eq!(cfg.ca_cert_path, "/etc/kubernetes/pki/ca.crt");
        assert_eq!(cfg.node.name, "worker-1");
        assert_eq!(cfg.node.taints, Some(vec![]), "a worker gets no taint");
        assert_eq!(cfg.node.cri_socket, None);
        assert_eq!(cfg.control_plane, None);
        assert_eq!(cfg.api_version, ApiVersion::V1beta2);
        assert!(cfg.skip_phases.is_empty() && cfg.patches_directory.is_none());
    }

    #[test]
    fn control_plane_join_gets_host_address_port_and_default_taint() {
        let mut flags = worker();
        flags.control_plane = true;
        flags.certificate_key = Some("AB".repeat(32));
        let cfg = resolve_join(&flags, &host()).unwrap();
        assert_eq!(
            cfg.control_plane,
            Some(JoinControlPlaneConfig {
                local_api_endpoint: ApiEndpoint {
                    advertise_address: "10.0.0.2".parse().unwrap(),
                    bind_port: 6443,
                },
                certificate_key: Some("AB".repeat(32)),
            })
        );
        // None: kubeadm's control-plane taint for the cluster's version (as for init).
        assert_eq!(cfg.node.taints, None);

        flags.apiserver_advertise_address = Some("10.0.1.2".into());
        flags.apiserver_bind_port = Some(8443);
        flags.certificate_key = None;
        let cp = resolve_join(&flags, &host())
            .unwrap()
            .control_plane
            .unwrap();
        assert_eq!(
            cp.local_api_endpoint.advertise_address.to_string(),
            "10.0.1.2"
        );
        assert_eq!(cp.local_api_endpoint.bind_port, 8443);
        assert_eq!(cp.certificate_key, None);
    }

    #[test]
    fn specific_tokens_beat_token_and_hash_lists_split() {
        let mut flags = worker();
        flags.discovery_token = Some("aaaaaa.aaaaaaaaaaaaaaaa".into());
        flags.tls_bootstrap_token = Some("bbbbbb.bbbbbbbbbbbbbbbb".into());
        let other = format!("SHA256:{}", "AB".repeat(32));
        flags.discovery_token_ca_cert_hash = vec![format!("{HASH}, {other}")];
        let cfg = resolve_join(&flags, &host()).unwrap();
        let JoinDiscovery::Token {
            token,
            ca_cert_hashes,
            ..
        } = &cfg.discovery
        else {
            panic!("{cfg:?}")
        };
        assert_eq!(token, "aaaaaa.aaaaaaaaaaaaaaaa");
        assert_eq!(cfg.tls_bootstrap_token, "bbbbbb.bbbbbbbbbbbbbbbb");
        assert_eq!(
            ca_cert_hashes,
            &vec![HASH.to_string(), format!("sha256:{}", "ab".repeat(32))]
        );
    }

    #[test]
    fn unsafe_skip_needs_no_hash() {
        let flags = JoinFlags {
            endpoint: Some("cp.example.test:6443".into()),
            token: Some(TOKEN.into()),
            discovery_token_unsafe_skip_ca_verification: true,
            ..Default::default()
        };
        let cfg = resolve_join(&flags, &host()).unwrap();
        assert!(matches!(
            cfg.discovery,
            JoinDiscovery::Token {
                unsafe_skip_ca_verification: true,
                ref ca_cert_hashes,
                ..
            } if ca_cert_hashes.is_empty()
        ));
    }

    #[test]
    fn file_discovery_with_and_without_token() {
        let flags = JoinFlags {
            discovery_file: Some("file:///etc/kubernetes/discovery.conf".into()),
            ..Default::default()
        };
        let cfg = resolve_join(&flags, &host()).unwrap();
        assert_eq!(
            cfg.discovery,
            JoinDiscovery::File {
                path_or_url: "/etc/kubernetes/discovery.conf".into()
            }
        );
        assert_eq!(
            cfg.tls_bootstrap_token, "",
            "the file's credentials are used"
        );
        let flags = JoinFlags {
            discovery_file: Some("https://example.test/cluster-info.yaml".into()),
            token: Some(TOKEN.into()),
            ..Default::default()
        };
        let cfg = resolve_join(&flags, &host()).unwrap();
        assert_eq!(cfg.tls_bootstrap_token, TOKEN);
        assert!(
            matches!(cfg.discovery, JoinDiscovery::File { ref path_or_url } if path_or_url.starts_with("https://"))
        );
    }

    const V1BETA2: &str = "\
apiVersion: kubeadm.k8s.io/v1beta2
kind: JoinConfiguration
discovery:
  bootstrapToken:
    apiServerEndpoint: 10.0.0.1:6443
    token: abcdef.0123456789abcdef
    caCertHashes:
    - sha256:0d5e3a6b0b2b1c4b6f1e7c8a9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a
  timeout: 2m
nodeRegistration:
  name: from-file
  kubeletExtraArgs:
    cgroup-root: /node2
  ignorePreflightErrors: [Swap]
  taints:
  - key: dedicated
    value: infra
    effect: NoSchedule
controlPlane:
  localAPIEndpoint:
    advertiseAddress: 10.0.1.2
  certificateKey: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
";

    #[test]
    fn v1beta2_file() {
        let cfg = resolve_join(&with_config(V1BETA2, &[]), &host()).unwrap();
        assert_eq!(cfg.api_version, ApiVersion::V1beta2);
        assert_eq!(cfg.node.name, "from-file");
        assert_eq!(cfg.node.kubelet_extra_args["cgroup-root"], "/node2");
        assert_eq!(cfg.node.ignore_preflight_errors, vec!["swap"]);
        assert_eq!(
            cfg.node.taints,
            Some(vec![Taint {
                key: "dedicated".into(),
                value: Some("infra".into()),
                effect: "NoSchedule".into(),
            }])
        );
        assert_eq!(cfg.discovery_timeout, Duration::from_secs(120));
        assert_eq!(cfg.tls_bootstrap_token, TOKEN);
        let cp = cfg.control_plane.unwrap();
        assert_eq!(
            cp.local_api_endpoint.advertise_address.to_string(),
            "10.0.1.2"
        );
        assert_eq!(cp.local_api_endpoint.bind_port, 6443);
    }

    #[test]
    fn v1beta3_file_and_the_flags_that_win_over_it() {
        let content = "\
apiVersion: kubeadm.k8s.io/v1beta3
kind: JoinConfiguration
caCertPath: /etc/kubernetes/pki/cluster-ca.crt
discovery:
  file:
    kubeConfigPath: /etc/kubernetes/discovery.conf
  tlsBootstrapToken: abcdef.0123456789abcdef
nodeRegistration:
  imagePullPolicy: Never
  ignorePreflightErrors: [Swap]
skipPhases: [preflight]
";
        let cfg = resolve_join(&with_config(content, &[]), &host()).unwrap();
        assert_eq!(cfg.api_version, ApiVersion::V1beta3);
        assert_eq!(cfg.skip_phases, vec!["preflight"]);
        assert_eq!(cfg.ca_cert_path, "/etc/kubernetes/pki/cluster-ca.crt");
        assert_eq!(cfg.node.name, "worker-1");
        assert_eq!(cfg.tls_bootstrap_token, TOKEN);

        let mut flags = with_config(
            content,
            &[
                "node-name",
                "cri-socket",
                "ignore-preflight-errors",
                "skip-phases",
                "dry-run",
                "v",
            ],
        );
        flags.node_name = Some("Override".into());
        flags.cri_socket = Some("unix:///run/containerd/containerd.sock".into());
        flags.ignore_preflight_errors = vec!["NumCPU".into()];
        flags.skip_phases = vec!["kubelet-start".into()];
        let cfg = resolve_join(&flags, &host()).unwrap();
        assert_eq!(cfg.node.name, "override");
        assert_eq!(
            cfg.node.cri_socket.as_deref(),
            Some("unix:///run/containerd/containerd.sock")
        );
        assert_eq!(cfg.node.ignore_preflight_errors, vec!["numcpu", "swap"]);
        assert_eq!(cfg.skip_phases, vec!["kubelet-start"]);
    }

    #[test]
    fn config_mixed_with_other_flags_is_kubeadms_error() {
        let flags = with_config(
            V1BETA2,
            &[
                "token",
                "discovery-token-ca-cert-hash",
                "node-name",
                "control-plane",
            ],
        );
        let e = resolve_join(&flags, &host()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "can not mix '--config' with arguments [control-plane discovery-token-ca-cert-hash token]"
        );
    }

    #[test]
    fn endpoint_argument_with_config_is_refused() {
        let mut flags = with_config(V1BETA2, &[]);
        flags.endpoint = Some("10.0.0.9:6443".into());
        assert_eq!(
            one_error(&flags),
            "api-server-endpoint: \"10.0.0.9:6443\" cannot be given with --config: set discovery.bootstrapToken.apiServerEndpoint in the JoinConfiguration instead"
        );
    }

    #[test]
    fn typo_in_join_file_names_field_document_and_line() {
        let content = "apiVersion: kubeadm.k8s.io/v1beta2\nkind: JoinConfiguration\ndiscovery:\n  bootstrapToken:\n    apiServerEndpoint: 10.0.0.1:6443\n    tokn: abcdef.0123456789abcdef\n";
        let e = resolve_join(&with_config(content, &[]), &host()).unwrap_err();
        assert_eq!(e.to_string(), "invalid config file \"/tmp/join.yaml\"");
        let source = std::error::Error::source(&e).unwrap().to_string();
        assert!(
            source.starts_with("document 1 (JoinConfiguration), line 6: ")
                && source.contains("unknown field `tokn`"),
            "{source}"
        );
    }

    #[test]
    fn join_file_holds_only_a_join_configuration() {
        let load_error = |content: &str| match resolve_join(&with_config(content, &[]), &host()) {
            Err(ConfigError::Load { source, .. }) => source,
            other => panic!("{other:?}"),
        };
        let cluster = "apiVersion: kubeadm.k8s.io/v1beta2\nkind: ClusterConfiguration\n";
        assert_eq!(load_error(cluster), LoadError::NoJoin);
        assert_eq!(
            load_error(&format!("{V1BETA2}---\n{cluster}")),
            LoadError::NotForJoin {
                kind: "ClusterConfiguration".into()
            }
        );
        let init = "apiVersion: kubeadm.k8s.io/v1beta2\nkind: InitConfiguration\n";
        let e = load_error(&format!("{init}---\n{V1BETA2}"));
        assert!(
            e.to_string().starts_with(
                "the InitConfiguration document has no effect on join: a joining node takes the cluster's settings from the ConfigMap \"kubeadm-config\""
            ),
            "{e}"
        );
        let kubelet = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n";
        assert_eq!(
            load_error(&format!("{V1BETA2}---\n{kubelet}")),
            LoadError::NotForJoin {
                kind: "KubeletConfiguration".into()
            }
        );
    }

    #[test]
    fn table_of_single_errors() {
        type Edit = fn(&mut JoinFlags);
        let cases: &[(&str, Edit, &str)] = &[
            (
                "no_discovery",
                |f| {
                    f.endpoint = None;
                    f.discovery_token_ca_cert_hash.clear();
                },
                "discovery: bootstrapToken or file must be set",
            ),
            (
                "token_and_file",
                |f| f.discovery_file = Some("/etc/d.conf".into()),
                "discovery: bootstrapToken and file cannot both be set",
            ),
            (
                "bad_token_is_not_echoed",
                |f| f.token = Some("abcdef.0123456789ABCDEF".into()),
                "--token: is not a valid bootstrap token: expected [a-z0-9]{6}.[a-z0-9]{16}",
            ),
            (
                "no_token",
                |f| {
                    f.token = None;
                    f.set_flags.retain(|s| s != "token");
                },
                "discovery.bootstrapToken.token: is required: pass --token",
            ),
            (
                "no_hash",
                |f| f.discovery_token_ca_cert_hash.clear(),
                "--discovery-token-ca-cert-hash: is empty: token discovery without a CA pin",
            ),
            (
                "hash_format",
                |f| f.discovery_token_ca_cert_hash = vec!["sha1:abcd".into()],
                "--discovery-token-ca-cert-hash: \"sha1:abcd\" is not a CA public key hash: expected sha256:<64 hexadecimal characters>",
            ),
            (
                "short_hash",
                |f| f.discovery_token_ca_cert_hash = vec![format!("sha256:{}", "a".repeat(63))],
                "is not a CA public key hash",
            ),
            (
                "endpoint_without_port",
                |f| f.endpoint = Some("10.0.0.1".into()),
                "api-server-endpoint: \"10.0.0.1\" is not valid: expected host:port",
            ),
            (
                "endpoint_bad_host",
                |f| f.endpoint = Some("bad_host!:6443".into()),
                "api-server-endpoint: \"bad_host!:6443\" is not valid",
            ),
            (
                "hash_without_endpoint",
                |f| {
                    f.endpoint = None;
                    f.discovery_file = Some("/etc/d.conf".into());
                },
                "api-server-endpoint: is missing: --discovery-token-ca-cert-hash only work with token discovery",
            ),
            (
                "control_plane_flags_without_control_plane",
                |f| f.certificate_key = Some("ab".repeat(32)),
                "--control-plane: is required with --certificate-key: add --control-plane",
            ),
            (
                "bad_certificate_key_is_not_echoed",
                |f| {
                    f.control_plane = true;
                    f.certificate_key = Some("secretish".into());
                    f.set_flags.push("certificate-key".into());
                },
                "--certificate-key: is not valid: expected 64 hexadecimal characters (32 bytes), got 9 characters",
            ),
            (
                "advertise_address_not_ip",
                |f| {
                    f.control_plane = true;
                    f.apiserver_advertise_address = Some("node2".into());
                    f.set_flags.push("apiserver-advertise-address".into());
                },
                "--apiserver-advertise-address: \"node2\" is not a valid IP address",
            ),
            (
                "advertise_address_not_unicast",
                |f| {
                    f.control_plane = true;
                    f.apiserver_advertise_address = Some("224.0.0.1".into());
                },
                "controlPlane.localAPIEndpoint.advertiseAddress: \"224.0.0.1\" cannot be the API server's address",
            ),
            (
                "advertise_address_link_local",
                |f| {
                    f.control_plane = true;
                    f.apiserver_advertise_address = Some("fe80::1".into());
                },
                "cannot be the API server's address",
            ),
            (
                "advertise_address_not_on_node",
                |f| {
                    f.control_plane = true;
                    f.apiserver_advertise_address = Some("10.9.9.9".into());
                },
                "\"10.9.9.9\" is not an address of this node (it has 10.0.0.2, 10.0.1.2)",
            ),
            (
                "bind_port_zero",
                |f| {
                    f.control_plane = true;
                    f.apiserver_bind_port = Some(0);
                    f.set_flags.push("apiserver-bind-port".into());
                },
                "--apiserver-bind-port: \"0\" is not a valid port",
            ),
            (
                "node_name",
                |f| {
                    f.node_name = Some("node_2".into());
                    f.set_flags.push("node-name".into());
                },
                "--node-name: \"node_2\" must be a valid DNS-1123 subdomain",
            ),
            (
                "cri_socket",
                |f| f.cri_socket = Some("containerd.sock".into()),
                "nodeRegistration.criSocket: \"containerd.sock\" must be an absolute path",
            ),
            (
                "http_discovery_url",
                |f| {
                    f.endpoint = None;
                    f.discovery_token_ca_cert_hash.clear();
                    f.discovery_file = Some("http://example.test/c.yaml".into());
                },
                "discovery.file.kubeConfigPath: \"http://example.test/c.yaml\" is not valid: if a URL is used, the scheme must be https",
            ),
            (
                "patches",
                |f| {
                    f.experimental_patches = Some("/etc/patches".into());
                    f.set_flags.push("experimental-patches".into());
                },
                "--experimental-patches: is not supported by kubeboot yet",
            ),
            (
                "all_with_others",
                |f| f.ignore_preflight_errors = vec!["all,Swap".into()],
                "give 'all' alone",
            ),
        ];
        for (name, edit, want) in cases {
            let mut flags = worker();
            edit(&mut flags);
            let got = errors(&flags);
            assert_eq!(got.len(), 1, "{name}: {got:#?}");
            assert!(
                got[0].starts_with(want) || got[0].contains(want),
                "{name}: {:?} does not contain {want:?}",
                got[0]
            );
        }
    }

    #[test]
    fn table_of_file_only_errors() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "relative_ca_path",
                "caCertPath: ca.crt\n",
                "caCertPath: \"ca.crt\" must be an absolute path",
            ),
            (
                "ca_path_not_crt",
                "caCertPath: /etc/kubernetes/pki/ca.pem\n",
                "caCertPath: \"/etc/kubernetes/pki/ca.pem\" must be an absolute path to a .crt file",
            ),
            (
                "bad_timeout",
                "discovery:\n  timeout: 5 minutes\n",
                "discovery.timeout: \"5 minutes\"",
            ),
            (
                "zero_timeout",
                "discovery:\n  timeout: 0s\n",
                "discovery.timeout: \"0s\" must be longer than 0",
            ),
            (
                "bad_tls_token",
                "discovery:\n  tlsBootstrapToken: nope\n",
                "discovery.tlsBootstrapToken: is not a valid bootstrap token",
            ),
            (
                "all_in_file",
                "nodeRegistration:\n  ignorePreflightErrors: [all]\n",
                "cannot be used in a configuration file",
            ),
            (
                "bad_pull_policy",
                "nodeRegistration:\n  imagePullPolicy: Sometimes\n",
                "nodeRegistration.imagePullPolicy",
            ),
        ];
        let base = "apiVersion: kubeadm.k8s.io/v1beta3\nkind: JoinConfiguration\n";
        let discovery = "  bootstrapToken:\n    apiServerEndpoint: 10.0.0.1:6443\n    token: abcdef.0123456789abcdef\n    unsafeSkipCAVerification: true\n";
        for (name, extra, want) in cases {
            // Every case is token discovery; a case's own `discovery:` block is completed.
            let rest = extra.strip_prefix("discovery:\n").unwrap_or(extra);
            let body = format!("{base}discovery:\n{discovery}{rest}");
            let got = errors(&with_config(&body, &[]));
            assert_eq!(got.len(), 1, "{name}: {got:#?}");
            assert!(got[0].contains(want), "{name}: {:?} lacks {want:?}", got[0]);
        }
    }

    #[test]
    fn every_error_at_once_one_line_each() {
        let flags = JoinFlags {
            endpoint: Some("10.0.0.1".into()),
            token: Some("short".into()),
            discovery_token_ca_cert_hash: vec!["md5:00".into()],
            control_plane: true,
            certificate_key: Some("00".into()),
            apiserver_bind_port: Some(0),
            node_name: Some("Bad Name".into()),
            ..Default::default()
        };
        let e = resolve_join(&flags, &host()).unwrap_err();
        let ConfigError::Invalid(list) = &e else {
            panic!("{e:?}")
        };
        // endpoint, token (once: it is both tokens), hash, certificate key, port, node name.
        assert_eq!(list.len(), 6, "{list:#?}");
        assert_eq!(e.to_string().lines().count(), 6);
    }

    #[test]
    fn debug_output_hides_tokens_and_certificate_key() {
        let mut flags = worker();
        flags.control_plane = true;
        flags.certificate_key = Some("c0ffee".repeat(10) + "c0ff");
        flags.tls_bootstrap_token = Some("tlstok.0123456789abcdef".into());
        let cfg = resolve_join(&flags, &host()).unwrap();
        for text in [format!("{cfg:?}"), format!("{flags:?}")] {
            assert!(!text.contains("0123456789abcdef"), "{text}");
            assert!(!text.contains("c0ffee"), "{text}");
            assert!(text.contains("<redacted>"), "{text}");
        }
    }
}
