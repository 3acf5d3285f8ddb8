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
    (
        "discovery-token-unsafe-skip-ca-verification",
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
            // A missing TLS token is the missing discovery token, already reported.
            if d.token.is_some() || d.tls_bootstrap_token.is_some() {
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
