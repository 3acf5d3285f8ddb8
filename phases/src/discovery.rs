//! `join`'s discovery: how a joining node learns, before it trusts anything, which API server
//! to talk to and which CA to trust (kubeadm: app/discovery/discovery.go,
//! DiscoverValidatedKubeConfig).
//!
//! Token discovery (kubeadm: app/discovery/token/token.go):
//!
//! ```text
//!   GET https://<endpoint>/.../kube-public/configmaps/cluster-info   (server not verified)
//!     -> jws-kubeconfig-<token id> present?      no: retry until the timeout, then NoSignature
//!     -> JWS over `kubeconfig` valid with token?  no: BadSignature
//!     -> the kubeconfig's CA matches a pin?       no: CaPinMismatch (unless unsafe skip)
//!   GET the same URL again, TLS verified with that CA
//!     -> handshake refused: look at the certificate the server presents:
//!        not signed by the CA: ServerCertFromAnotherCa; signed: ServerCertInvalid
//!     -> same kubeconfig bytes as the signed one? no: ClusterInfoChanged
//! ```
//!
//! File discovery (kubeadm: app/discovery/file/file.go and https/https.go): a kubeconfig from
//! a path, or from an `https://` URL fetched with the system's roots (as Go's default
//! transport does); then cluster-info is read over TLS verified with that kubeconfig's CA, and
//! the server and CA it names replace the file's.
//!
//! Differences from kubeadm, on purpose: every failure is a [`DiscoveryError`] naming the
//! fix; a handshake refused on the CA-verified read is explained from the certificate the
//! server presents (another CA, or a name it lacks) and not retried; the discovery file's
//! credentials are never sent (the validating read is anonymous), so a 401 counts as the 403
//! kubeadm accepts; no HTTP proxy is used for bootstrap traffic.
//!
//! The calls are synchronous and bounded by the discovery timeout. Progress lines, in
//! kubeadm's `[discovery] ...` words, go to the caller's `progress` (kubeadm logs them at -v1).
//! Nothing here ever formats the token secret: errors name the token ID only.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use components::names;
use reqwest::blocking::Client;
use reqwest::{Certificate, Url};
use serde::Deserialize;

use crate::health::human;

/// kubeadm: constants.DiscoveryRetryInterval.
const RETRY_INTERVAL: Duration = Duration::from_secs(5);
/// bootstrapapi.KubeConfigKey, the key of cluster-info holding the kubeconfig.
const KUBECONFIG_KEY: &str = "kubeconfig";
/// Where Go's crypto/x509 looks for the system's roots on Linux (root_linux.go certFiles),
/// after `$SSL_CERT_FILE`.
const SYSTEM_ROOT_FILES: [&str; 6] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Token discovery: `kubeboot join <endpoint> --token ... --discovery-token-ca-cert-hash ...`.
#[derive(Debug, Clone)]
pub struct TokenDiscovery {
    /// The API server endpoint as the user typed it: `host:port` (`[::1]:6443` for IPv6).
    pub endpoint: String,
    /// The bootstrap token whose signature cluster-info must carry (`--discovery-token`,
    /// else `--token`). Its `Debug` hides the secret.
    pub token: pki::BootstrapToken,
    /// `--discovery-token-ca-cert-hash` values: the CA is accepted if any matches.
    pub ca_cert_hashes: Vec<String>,
    /// `--discovery-token-unsafe-skip-ca-verification`: allows an empty `ca_cert_hashes`
    /// (the signed CA is then taken unchecked); pins that are given are still checked.
    pub unsafe_skip_ca_verification: bool,
    /// `discovery.timeout` of the JoinConfiguration (kubeadm's default: 5m0s).
    pub timeout: Duration,
}

/// How the joining node finds the cluster.
#[derive(Debug, Clone)]
pub enum Discovery {
    /// A bootstrap token and CA pins.
    Token(TokenDiscovery),
    /// `--discovery-file`: a kubeconfig path, or an `https://` URL serving one.
    File {
        /// The path or URL.
        path_or_url: String,
        /// `discovery.timeout`.
        timeout: Duration,
    },
}

/// What discovery established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    /// The cluster CA (PEM), trusted: pinned, signed with the token, or from the user's file.
    pub ca_pem: String,
    /// The API server URL the cluster's kubeconfig names (cluster-info's `server`), which
    /// bootstrap-kubelet.conf should use.
    pub server: String,
    /// The URL discovery talked to: `https://<endpoint>` for token discovery, the file's
    /// server for file discovery.
    pub endpoint_url: String,
    /// Token discovery: cluster-info's kubeconfig, byte for byte as signed. File discovery:
    /// the user's file as read (its credentials, if any, are the caller's to use; `server`
    /// and `ca_pem` above are already refreshed from cluster-info when it was readable).
    pub kubeconfig_yaml: String,
}

/// Why discovery failed; each message names the fix. `discover` returns it inside its
/// `anyhow::Error` (`err.downcast_ref::<DiscoveryError>()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoveryError {
    /// The discovery settings themselves are wrong; nothing was contacted.
    InvalidSettings {
        /// What is wrong.
        problem: String,
        /// What to do.
        fix: String,
    },
    /// No answer (connection refused, timed out, TLS failures) until the timeout.
    Unreachable {
        /// The URL tried.
        url: String,
        /// The discovery timeout.
        timeout: Duration,
        /// The last error seen.
        last_error: String,
    },
    /// The server answered, but with an HTTP error status, until the timeout.
    Refused {
        /// The URL tried.
        url: String,
        /// The discovery timeout.
        timeout: Duration,
        /// The last HTTP status.
        status: u16,
        /// The API server's message, if it sent one.
        message: String,
    },
    /// cluster-info carries no signature for the token ID until the timeout.
    NoSignature {
        /// The URL read.
        url: String,
        /// The token ID (never the secret).
        token_id: String,
        /// The discovery timeout.
        timeout: Duration,
    },
    /// The signature for the token ID does not verify with the token secret.
    BadSignature {
        /// The URL read.
        url: String,
        /// The token ID.
        token_id: String,
    },
    /// The CA in cluster-info matches none of the pins.
    CaPinMismatch {
        /// The URL read.
        url: String,
        /// The hashes of the CA certificates found (`sha256:...`).
        found: Vec<String>,
        /// The pins given.
        pins: Vec<String>,
    },
    /// The server's certificate was not issued by the CA that cluster-info (or the discovery
    /// file) names.
    ServerCertFromAnotherCa {
        /// The URL read.
        url: String,
        /// The subject of the certificate the server presented.
        presented: String,
        /// The hash of the CA it should have been signed by.
        ca_hash: String,
    },
    /// The server's certificate is from the right CA but does not verify for this address
    /// (wrong name, expired).
    ServerCertInvalid {
        /// The URL read.
        url: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The CA-verified read of cluster-info gave another kubeconfig than the signed one.
    ClusterInfoChanged {
        /// The URL read.
        url: String,
    },
    /// cluster-info is not what kubeadm writes.
    Malformed {
        /// The URL read.
        url: String,
        /// What is wrong.
        problem: String,
    },
    /// The `--discovery-file` cannot be used.
    DiscoveryFile {
        /// Its path or URL.
        location: String,
        /// What is wrong.
        problem: String,
        /// What to do.
        fix: String,
    },
}

const NEW_TOKEN: &str = "on a control-plane node, `kubeboot token create --print-join-command` \
     creates a new token and prints the join command to use";

impl fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidSettings { problem, fix } => write!(f, "{problem}; {fix}"),
            Self::Unreachable {
                url,
                timeout,
                last_error,
            } => write!(
                f,
                "could not reach the API server at {url} within the discovery timeout of {}: \
                 {last_error}. Check that the address and port are the control-plane \
                 endpoint's, that no firewall between this node and it blocks the port, and \
                 that kube-apiserver runs there",
                human(*timeout)
            ),
            Self::Refused {
                url,
                timeout,
                status,
                message,
            } => {
                let message = if message.is_empty() {
                    String::new()
                } else {
                    format!(": {message}")
                };
                let fix = match status {
                    401 | 403 => {
                        "the cluster does not let anonymous clients read kube-public/cluster-info \
                         (kube-apiserver's --anonymous-auth, or the \
                         kubeadm:bootstrap-signer-clusterinfo Role and RoleBinding are missing); \
                         recreate them on a control-plane node with `kubeboot init phase \
                         bootstrap-token`, or join with --discovery-file"
                    }
                    404 => {
                        "the cluster has no kube-public/cluster-info ConfigMap; create it on a \
                         control-plane node with `kubeboot init phase bootstrap-token`"
                    }
                    _ => "check the API server's log on the control-plane node",
                };
                write!(
                    f,
                    "the API server at {url} refused to give kube-public/cluster-info (HTTP \
                     {status}{message}) until the discovery timeout of {}: {fix}",
                    human(*timeout)
                )
            }
            Self::NoSignature {
                url,
                token_id,
                timeout,
            } => write!(
                f,
                "the cluster has no signature for token ID \"{token_id}\" in the cluster-info \
                 ConfigMap at {url} (waited {}): the token is wrong or has expired, and the \
                 cluster cannot tell which; {NEW_TOKEN}",
                human(*timeout)
            ),
            Self::BadSignature { url, token_id } => write!(
                f,
                "failed to verify the JWS signature of the cluster-info ConfigMap at {url} with \
                 token ID \"{token_id}\": the token's secret is wrong, so this API server \
                 cannot be trusted; check the token you typed (`kubeboot token list` on a \
                 control-plane node shows the token IDs), or {NEW_TOKEN}",
            ),
            Self::CaPinMismatch { url, found, pins } => write!(
                f,
                "the cluster CA found in the cluster-info ConfigMap at {url} has the public key \
                 hash {} which matches none of the --discovery-token-ca-cert-hash values given \
                 ({}); check the hash (on a control-plane node, `kubeboot token create \
                 --print-join-command` prints the right one) and that {url} is the cluster you \
                 mean to join",
                found.join(", "),
                pins.join(", ")
            ),
            Self::ServerCertFromAnotherCa {
                url,
                presented,
                ca_hash,
            } => write!(
                f,
                "the API server at {url} presents a certificate ({presented}) that the cluster \
                 CA ({ca_hash}) did not issue: something else answers at this address (a proxy \
                 or load balancer that terminates TLS, another cluster) or the API server's \
                 certificate comes from another CA; join through the cluster's own API server \
                 address (or a TCP pass-through load balancer), or reissue the API server's \
                 certificate from the cluster CA (`kubeboot init phase certs apiserver` on the \
                 control-plane node)"
            ),
            Self::ServerCertInvalid { url, problem } => write!(
                f,
                "the API server at {url} presents a certificate from the cluster CA that does \
                 not verify: {problem}"
            ),
            Self::ClusterInfoChanged { url } => write!(
                f,
                "the second kubeconfig from the cluster-info ConfigMap at {url} (read with \
                 verified TLS) was different from the first (signed) one: cluster-info changed \
                 during the join, or something between this node and the API server alters \
                 traffic; run the join again"
            ),
            Self::Malformed { url, problem } => write!(
                f,
                "the cluster-info ConfigMap at {url} is malformed: {problem}; recreate it on a \
                 control-plane node with `kubeboot init phase bootstrap-token`"
            ),
            Self::DiscoveryFile {
                location,
                problem,
                fix,
            } => write!(f, "discovery file {location}: {problem}; {fix}"),
        }
    }
}

impl std::error::Error for DiscoveryError {}

/// Finds and validates the cluster as `d` says, calling `progress` with each
/// `[discovery] ...` line.
///
/// # Errors
/// A [`DiscoveryError`] naming the problem and the fix.
pub fn discover(d: &Discovery, mut progress: impl FnMut(&str)) -> anyhow::Result<Discovered> {
    let found = match d {
        Discovery::Token(t) => token_discovery(t, &mut progress),
        Discovery::File {
            path_or_url,
            timeout,
        } => file_discovery(path_or_url, *timeout, &mut progress),
    };
    found.map_err(anyhow::Error::new)
}

// ---------------------------------------------------------------------------------------
// Token discovery

fn token_discovery(
    t: &TokenDiscovery,
    progress: &mut dyn FnMut(&str),
) -> Result<Discovered, DiscoveryError> {
    let pins = parse_pins(&t.ca_cert_hashes, t.unsafe_skip_ca_verification)?;
    let base = endpoint_url(&t.endpoint)?;
    let url = cluster_info_url(&base);
    let token_id = t.token.id();
    let signature_key = pki::jws::signature_key(token_id);

    progress(&format!(
        "[discovery] Created cluster-info discovery client, requesting info from \"{}\"",
        t.endpoint
    ));
    let insecure = client_builder()
        .danger_accept_invalid_certs(true)
        .build()
        .map_err(|e| client_error(&url, &e))?;
    let data = poll_cluster_info(&insecure, &url, t.timeout, progress, |data| {
        if data.contains_key(&signature_key) {
            Ok(())
        } else {
            // The bootstrap signer patches the signature in a moment after the token is
            // created: kubeadm waits for it (token.go, getClusterInfo).
            Err(format!(
                "[discovery] The cluster-info ConfigMap does not yet contain a JWS signature for token ID \
                 \"{token_id}\", will try again"
            ))
        }
    })
    .map_err(|failure| failure.into_error(&url, t.timeout, token_id))?;

    // kubeadm: token.go, validateClusterInfoToken.
    let kubeconfig = data
        .get(KUBECONFIG_KEY)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| DiscoveryError::Malformed {
            url: server_of(&url),
            problem: format!(
                "there is no \"{KUBECONFIG_KEY}\" key: this API server isn't set up for token \
                 bootstrapping"
            ),
        })?;
    let signature = data.get(&signature_key).map(String::as_str).unwrap_or("");
    if !pki::jws::detached_signature_is_valid(signature, kubeconfig, token_id, t.token.secret()) {
        return Err(DiscoveryError::BadSignature {
            url: server_of(&url),
            token_id: token_id.to_string(),
        });
    }
    let cluster = single_cluster(kubeconfig).map_err(|problem| DiscoveryError::Malformed {
        url: server_of(&url),
        problem,
    })?;
    let ca_pem = cluster_ca_pem(&cluster).map_err(|problem| DiscoveryError::Malformed {
        url: server_of(&url),
        problem,
    })?;
    let found = ca_hashes(&ca_pem).map_err(|problem| DiscoveryError::Malformed {
        url: server_of(&url),
        problem,
    })?;
    let discovered = |ca_pem: String| Discovered {
        ca_pem,
        server: cluster.server.clone(),
        endpoint_url: base.as_str().trim_end_matches('/').to_string(),
        kubeconfig_yaml: kubeconfig.clone(),
    };

    // kubeadm: "If no TLS root CA pinning was specified, we're done".
    if pins.is_empty() {
        progress(&format!(
            "[discovery] Cluster info signature and contents are valid and no TLS pinning was \
             specified, will use API Server \"{}\"",
            t.endpoint
        ));
        return Ok(discovered(ca_pem));
    }
    // kubeadm: token.go, validateClusterCA (pubkeypin.Set.CheckAny over every CA cert).
    if !found
        .iter()
        .any(|(_, pem)| pins.iter().any(|pin| pin.matches(pem).unwrap_or(false)))
    {
        return Err(DiscoveryError::CaPinMismatch {
            url: server_of(&url),
            found: found.into_iter().map(|(hash, _)| hash).collect(),
            pins: pins.iter().map(ToString::to_string).collect(),
        });
    }

    progress(&format!(
        "[discovery] Requesting info from \"{}\" again to validate TLS against the pinned public key",
        t.endpoint
    ));
    let secure = verified_client(&url, &ca_pem)?;
    let ca_hash = found.first().map(|(h, _)| h.clone()).unwrap_or_default();
    let data = poll_verified(&secure, &url, &ca_pem, &ca_hash, t.timeout, progress)
        .map_err(|failure| failure.into_error(&url, t.timeout, token_id))?;
    if data.get(KUBECONFIG_KEY) != Some(kubeconfig) {
        return Err(DiscoveryError::ClusterInfoChanged {
            url: server_of(&url),
        });
    }
    progress(&format!(
        "[discovery] Cluster info signature and contents are valid and TLS certificate validates \
         against pinned roots, will use API Server \"{}\"",
        t.endpoint
    ));
    Ok(discovered(ca_pem))
}

/// The pins, parsed; kubeadm's validation (ValidateDiscoveryBootstrapToken) asks for at
/// least one unless the CA check is skipped on purpose.
fn parse_pins(hashes: &[String], unsafe_skip: bool) -> Result<Vec<pki::CaPin>, DiscoveryError> {
    let pins = hashes
        .iter()
        .map(|h| pki::CaPin::parse(h))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| DiscoveryError::InvalidSettings {
            problem: format!("invalid --discovery-token-ca-cert-hash: {e}"),
            fix: "give the hash as `kubeboot init` or `kubeboot token create \
                  --print-join-command` prints it (sha256:<64 hex digits>)"
                .into(),
        })?;
    if pins.is_empty() && !unsafe_skip {
        return Err(DiscoveryError::InvalidSettings {
            problem: "token discovery needs the CA's public key hash to trust the API server"
                .into(),
            fix: "pass --discovery-token-ca-cert-hash sha256:... (`kubeboot token create \
                  --print-join-command` on a control-plane node prints it), or accept an \
                  unverified CA with --discovery-token-unsafe-skip-ca-verification"
                .into(),
        });
    }
    // As kubeadm (validation.go, token.go): the flag only lifts the need for a pin; pins
    // that are given are still checked.
    Ok(pins)
}

/// `https://<endpoint>`, checked to be a `host:port`.
fn endpoint_url(endpoint: &str) -> Result<Url, DiscoveryError> {
    let invalid = |why: &str| DiscoveryError::InvalidSettings {
        problem: format!("invalid API server endpoint \"{endpoint}\": {why}"),
        fix: "give it as host:port, e.g. 10.0.0.1:6443 or [fd00::1]:6443".into(),
    };
    if endpoint.contains("://") || endpoint.contains('/') {
        return Err(invalid("it must not contain a scheme or a path"));
    }
    let url = Url::parse(&format!("https://{endpoint}")).map_err(|e| invalid(&e.to_string()))?;
    if url.port().is_none() && !endpoint.ends_with(":443") {
        return Err(invalid("the port is missing"));
    }
    Ok(url)
}

// ---------------------------------------------------------------------------------------
// File discovery

fn file_discovery(
    location: &str,
    timeout: Duration,
    progress: &mut dyn FnMut(&str),
) -> Result<Discovered, DiscoveryError> {
    // kubeadm: discovery.go, isHTTPSURL.
    let url = Url::parse(location).ok().filter(|u| u.scheme() == "https");
    let (text, base_dir) = match &url {
        Some(url) => (fetch_discovery_url(url, timeout)?, None),
        None => (read_discovery_file(location)?, Path::new(location).parent()),
    };
    let file_error = |problem: String, fix: &str| DiscoveryError::DiscoveryFile {
        location: location.to_string(),
        problem,
        fix: fix.to_string(),
    };
    let config: RawKubeconfig = yaml_serde::from_str(&text).map_err(|e| {
        file_error(
            format!("not a kubeconfig: {e}"),
            "give a kubeconfig file such as the `kubeconfig` of kube-public/cluster-info",
        )
    })?;
    // kubeadm: file.go, ValidateConfigInfo.
    let mut cluster = config.current_cluster().map_err(|p| {
        file_error(
            p,
            "name the cluster in an unnamed cluster entry or through current-context",
        )
    })?;
    if !cluster.server.starts_with("https://") {
        return Err(file_error(
            format!(
                "the cluster's server \"{}\" is not an https:// URL",
                cluster.server
            ),
            "set the cluster's server to the API server's https:// URL",
        ));
    }
    embed_ca_file(&mut cluster, base_dir).map_err(|p| {
        file_error(
            p,
            "make certificate-authority name a readable file, or embed the CA as \
             certificate-authority-data",
        )
    })?;
    let ca_pem = match &cluster.certificate_authority_data {
        Some(_) => Some(cluster_ca_pem(&cluster).map_err(|p| {
            file_error(
                p,
                "set certificate-authority-data to the base64 of the CA's PEM",
            )
        })?),
        None => None,
    };
    let base = cluster.server.trim_end_matches('/').to_string();
    let cm_url = cluster_info_url(&base);

    progress(
        "[discovery] Using an unauthenticated request to validate the TLS connection to the \
         discovery file's server",
    );
    progress(&format!(
        "[discovery] Created cluster-info discovery client, requesting info from \"{}\"",
        cluster.server
    ));
    let client = match &ca_pem {
        Some(pem) => verified_client(&cm_url, pem)?,
        None => {
            let roots = system_roots().map_err(|p| {
                file_error(
                    p,
                    "embed the cluster CA in the file (certificate-authority-data)",
                )
            })?;
            roots
                .into_iter()
                .fold(client_builder(), |b, c| b.add_root_certificate(c))
                .build()
                .map_err(|e| client_error(&cm_url, &e))?
        }
    };
    let ca_for_diagnosis = ca_pem.clone().unwrap_or_default();
    let ca_hash = ca_hashes(&ca_for_diagnosis)
        .ok()
        .and_then(|h| h.into_iter().next())
        .map(|(h, _)| h)
        .unwrap_or_default();
    let read = poll_verified(
        &client,
        &cm_url,
        &ca_for_diagnosis,
        &ca_hash,
        timeout,
        progress,
    );
    let data = match read {
        Ok(data) => Some(data),
        // kubeadm: a refused anonymous read means the admin keeps cluster-info private; the
        // TLS connection was verified, so proceed with the file. kubeboot sends no
        // credentials here, so 401 (anonymous auth off) counts the same.
        Err(Failure::Status { status, .. }) if status == 401 || status == 403 => {
            progress(
                "[discovery] Could not access the cluster-info ConfigMap for refreshing the \
                 cluster-info information, but the TLS cert is valid so proceeding...",
            );
            None
        }
        Err(failure) => return Err(failure.into_error(&cm_url, timeout, "")),
    };
    let ca_pem = ca_pem.unwrap_or_default();
    let mut found = Discovered {
        ca_pem,
        server: cluster.server.clone(),
        endpoint_url: base,
        kubeconfig_yaml: text,
    };
    // kubeadm: file.go, tryParseClusterInfoFromConfigMap; a broken cluster-info is not fatal
    // since the file's own CA verified the server.
    if let Some(data) = data {
        let refreshed = data
            .get(KUBECONFIG_KEY)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| format!("no {KUBECONFIG_KEY} key in ConfigMap"))
            .and_then(|k| single_cluster(k))
            .and_then(|c| Ok((cluster_ca_pem(&c)?, c.server)));
        match refreshed {
            Ok((ca, server)) => {
                found.ca_pem = ca;
                found.server = server;
                progress(
                    "[discovery] Synced Server and CertificateAuthorityData from the \
                     cluster-info ConfigMap",
                );
            }
            Err(e) => progress(&format!(
                "[discovery] The cluster-info ConfigMap isn't set up properly ({e}), but the \
                 TLS cert is valid so proceeding..."
            )),
        }
    }
    if found.ca_pem.is_empty() {
        return Err(file_error(
            "the cluster has no CA, and cluster-info gave none".into(),
            "embed the cluster CA in the file (certificate-authority-data)",
        ));
    }
    Ok(found)
}

/// kubeadm: https/https.go, one GET with Go's default transport, so the system's roots verify
/// the server; no retry.
fn fetch_discovery_url(url: &Url, timeout: Duration) -> Result<String, DiscoveryError> {
    let fail = |problem: String, fix: &str| DiscoveryError::DiscoveryFile {
        location: url.to_string(),
        problem,
        fix: fix.to_string(),
    };
    let roots = system_roots().map_err(|p| {
        fail(
            p,
            "install the system's CA bundle (ca-certificates) or download the file and pass \
             its path",
        )
    })?;
    let client = roots
        .into_iter()
        .fold(client_builder(), |b, c| b.add_root_certificate(c))
        .timeout(timeout)
        .build()
        .map_err(|e| fail(chain(&e), "report this bug"))?;
    let response = client.get(url.clone()).send().map_err(|e| {
        fail(
            format!("could not fetch it: {}", chain(&e.without_url())),
            "check the URL, and that its server's certificate is trusted by this system's CA \
             bundle",
        )
    })?;
    let status = response.status();
    if !status.is_success() {
        return Err(fail(
            format!("the server answered HTTP {status}"),
            "check the URL",
        ));
    }
    response
        .text()
        .map_err(|e| fail(format!("could not read it: {}", chain(&e)), "try again"))
}

fn read_discovery_file(path: &str) -> Result<String, DiscoveryError> {
    let fail = |problem: String| DiscoveryError::DiscoveryFile {
        location: path.to_string(),
        problem,
        fix: "give the path of a readable kubeconfig file, or an https:// URL".into(),
    };
    match agent::host::fs::Fs::real().read_string_if_exists(Path::new(path)) {
        Ok(Some(text)) => Ok(text),
        Ok(None) => Err(fail("no such file".into())),
        Err(e) => Err(fail(format!("{e:#}"))),
    }
}

/// kubeconfigutil.EnsureCertificateAuthorityIsEmbedded; a relative path is relative to the
/// kubeconfig file, as clientcmd.LoadFromFile resolves it.
fn embed_ca_file(cluster: &mut RawCluster, base_dir: Option<&Path>) -> Result<(), String> {
    let Some(file) = cluster
        .certificate_authority
        .as_deref()
        .filter(|f| !f.is_empty())
    else {
        return Ok(());
    };
    if cluster.certificate_authority_data.is_some() {
        return Ok(());
    }
    let path = match base_dir {
        Some(dir) if Path::new(file).is_relative() => dir.join(file),
        _ => PathBuf::from(file),
    };
    let pem = agent::host::fs::Fs::real()
        .read_string_if_exists(&path)
        .map_err(|e| format!("{e:#}"))?
        .ok_or_else(|| format!("certificate-authority {} does not exist", path.display()))?;
    cluster.certificate_authority_data =
        Some(base64::engine::general_purpose::STANDARD.encode(pem));
    Ok(())
}

/// The system's roots, where Go's crypto/x509 reads them (reqwest here is built without a
/// root store of its own).
fn system_roots() -> Result<Vec<Certificate>, String> {
    let env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    let candidates = env
        .into_iter()
        .chain(SYSTEM_ROOT_FILES.iter().map(PathBuf::from));
    for path in candidates {
        let Ok(Some(bytes)) = agent::host::fs::Fs::real().read_if_exists(&path) else {
            continue;
        };
        if let Ok(certs) = Certificate::from_pem_bundle(&bytes)
            && !certs.is_empty()
        {
            return Ok(certs);
        }
    }
    Err(format!(
        "no system CA bundle found (looked at $SSL_CERT_FILE and {})",
        SYSTEM_ROOT_FILES.join(", ")
    ))
}

// ---------------------------------------------------------------------------------------
// Reading cluster-info

/// Why one read of cluster-info failed, kept until the timeout decides.
#[derive(Debug)]
enum Failure {
    /// No HTTP answer.
    Transport(String),
    /// An HTTP error status.
    Status { status: u16, message: String },
    /// The answer lacks the token's signature (token discovery only).
    NoSignature,
    /// Retrying cannot help.
    Fatal(DiscoveryError),
}

impl Failure {
    fn into_error(self, url: &str, timeout: Duration, token_id: &str) -> DiscoveryError {
        match self {
            Self::Transport(last_error) => DiscoveryError::Unreachable {
                url: server_of(url),
                timeout,
                last_error,
            },
            Self::Status { status, message } => DiscoveryError::Refused {
                url: server_of(url),
                timeout,
                status,
                message,
            },
            Self::NoSignature => DiscoveryError::NoSignature {
                url: server_of(url),
                token_id: token_id.to_string(),
                timeout,
            },
            Self::Fatal(e) => e,
        }
    }

    /// The `will try again` line, in kubeadm's words.
    fn retry_line(&self) -> String {
        let why = match self {
            Self::Transport(e) => e.clone(),
            Self::Status { status, message } => format!("HTTP {status} {message}"),
            Self::NoSignature | Self::Fatal(_) => String::new(),
        };
        format!("[discovery] Failed to request cluster-info, will try again: {why}")
    }
}

/// GETs cluster-info until `accept` takes its data or `timeout` passes (kubeadm: token.go
/// getClusterInfo, file.go wait.Poll), every [`RETRY_INTERVAL`]; the first try is at once.
fn poll_cluster_info(
    client: &Client,
    url: &str,
    timeout: Duration,
    progress: &mut dyn FnMut(&str),
    mut accept: impl FnMut(&BTreeMap<String, String>) -> Result<(), String>,
) -> Result<BTreeMap<String, String>, Failure> {
    poll(timeout, progress, |remaining| {
        let data = get_cluster_info(client, url, remaining)?;
        match accept(&data) {
            Ok(()) => Ok(data),
            Err(line) => Err((Failure::NoSignature, Some(line))),
        }
    })
}

/// Reads cluster-info over the CA-verified `client`; when a read fails, looks at the
/// certificate the server presents to tell a server of another CA from a network failure.
fn poll_verified(
    client: &Client,
    url: &str,
    ca_pem: &str,
    ca_hash: &str,
    timeout: Duration,
    progress: &mut dyn FnMut(&str),
) -> Result<BTreeMap<String, String>, Failure> {
    poll(timeout, progress, |remaining| {
        match get_cluster_info(client, url, remaining) {
            Err((Failure::Transport(e), _)) if !ca_pem.is_empty() => {
                match diagnose_server_cert(url, ca_pem, ca_hash, remaining) {
                    Some(fatal) => Err((Failure::Fatal(fatal), None)),
                    None => Err((Failure::Transport(e), None)),
                }
            }
            other => other,
        }
    })
}

/// The retry loop: `attempt` gets the time left (its request timeout); an error carries the
/// failure and, optionally, its own progress line.
fn poll<T>(
    timeout: Duration,
    progress: &mut dyn FnMut(&str),
    mut attempt: impl FnMut(Duration) -> Result<T, (Failure, Option<String>)>,
) -> Result<T, Failure> {
    let deadline = Instant::now() + timeout;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match attempt(remaining.max(Duration::from_millis(100))) {
            Ok(v) => return Ok(v),
            Err((Failure::Fatal(e), _)) => return Err(Failure::Fatal(e)),
            Err((failure, line)) => {
                let remaining = deadline.saturating_duration_since(Instant::now());
                if remaining.is_zero() {
                    return Err(failure);
                }
                progress(&line.unwrap_or_else(|| failure.retry_line()));
                std::thread::sleep(RETRY_INTERVAL.min(remaining));
                if Instant::now() >= deadline {
                    return Err(failure);
                }
            }
        }
    }
}

/// One GET of cluster-info: its data, or why not.
fn get_cluster_info(
    client: &Client,
    url: &str,
    timeout: Duration,
) -> Result<BTreeMap<String, String>, (Failure, Option<String>)> {
    let response = client
        .get(url)
        .header("Accept", "application/json")
        .timeout(timeout)
        .send()
        .map_err(|e| (Failure::Transport(chain(&e.without_url())), None))?;
    let status = response.status().as_u16();
    let body = response
        .bytes()
        .map_err(|e| (Failure::Transport(chain(&e.without_url())), None))?;
    if !(200..300).contains(&status) {
        // A metav1.Status, when the API server sent one.
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("message")?.as_str().map(str::to_string))
            .unwrap_or_default();
        return Err((Failure::Status { status, message }, None));
    }
    let cm: ConfigMapData = serde_json::from_slice(&body).map_err(|e| {
        (
            Failure::Fatal(DiscoveryError::Malformed {
                url: server_of(url),
                problem: format!("the answer is not a ConfigMap: {e}"),
            }),
            None,
        )
    })?;
    if cm.kind.as_deref() != Some("ConfigMap") {
        return Err((
            Failure::Fatal(DiscoveryError::Malformed {
                url: server_of(url),
                problem: format!(
                    "the answer is a {} object, not a ConfigMap",
                    cm.kind.as_deref().unwrap_or("kind-less")
                ),
            }),
            None,
        ));
    }
    Ok(cm.data.unwrap_or_default())
}

/// The CA-verified read failed; if the server answers when not verified, its certificate is
/// the reason: say which CA issued it, or what else is wrong with it. `None` when the server
/// does not answer at all (a network failure, retried).
fn diagnose_server_cert(
    url: &str,
    ca_pem: &str,
    ca_hash: &str,
    timeout: Duration,
) -> Option<DiscoveryError> {
    let client = client_builder()
        .danger_accept_invalid_certs(true)
        .tls_info(true)
        .build()
        .ok()?;
    let response = client.get(url).timeout(timeout).send().ok()?;
    let der = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()?
        .peer_certificate()?
        .to_vec();
    let pem = pem_certificate(&der);
    let info = pki::cert_info(&pem).ok();
    let presented = info
        .as_ref()
        .map(|i| format!("CN \"{}\"", i.common_name))
        .unwrap_or_else(|| "unparsable".to_string());
    let signed = split_certs(ca_pem)
        .iter()
        .any(|ca| pki::is_signed_by(&pem, ca).unwrap_or(false));
    if !signed {
        return Some(DiscoveryError::ServerCertFromAnotherCa {
            url: server_of(url),
            presented,
            ca_hash: ca_hash.to_string(),
        });
    }
    let info = info?;
    let parsed = Url::parse(url).ok()?;
    let host = parsed
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']');
    let names: Vec<String> = info
        .dns_names
        .iter()
        .cloned()
        .chain(info.ips.iter().map(ToString::to_string))
        .collect();
    // Wildcards left aside: kubeadm never issues them for the API server.
    let named = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => info.ips.contains(&ip),
        Err(_) => info.dns_names.iter().any(|n| n.eq_ignore_ascii_case(host)),
    };
    let now = SystemTime::now();
    let problem = if !named {
        format!(
            "it is not valid for \"{host}\" (its names: {}); join through one of those \
             addresses, or add \"{host}\" to the API server certificate's SANs \
             (ClusterConfiguration apiServer.certSANs) and reissue it (`kubeboot init phase certs \
             apiserver` after moving the old apiserver.crt and apiserver.key aside)",
            names.join(", ")
        )
    } else if now > info.not_after || now < info.not_before {
        "it is expired or not yet valid; check both machines' clocks, and reissue it on the \
         control-plane node (move apiserver.crt and apiserver.key out of the PKI directory, \
         then `kubeboot init phase certs apiserver`)"
            .to_string()
    } else {
        "check the API server's certificate chain".to_string()
    };
    Some(DiscoveryError::ServerCertInvalid {
        url: server_of(url),
        problem,
    })
}

/// A ConfigMap as far as discovery reads it.
#[derive(Deserialize)]
struct ConfigMapData {
    kind: Option<String>,
    data: Option<BTreeMap<String, String>>,
}

// ---------------------------------------------------------------------------------------
// Kubeconfigs, read leniently (cluster-info has `contexts: null`, `users: null`)

#[derive(Deserialize)]
struct RawKubeconfig {
    #[serde(default)]
    clusters: Option<Vec<RawNamedCluster>>,
    #[serde(default)]
    contexts: Option<Vec<RawNamedContext>>,
    #[serde(default, rename = "current-context")]
    current_context: Option<String>,
}

#[derive(Deserialize)]
struct RawNamedCluster {
    #[serde(default)]
    name: Option<String>,
    cluster: RawCluster,
}

#[derive(Debug, Deserialize, Clone)]
struct RawCluster {
    #[serde(default)]
    server: String,
    #[serde(default, rename = "certificate-authority-data")]
    certificate_authority_data: Option<String>,
    #[serde(default, rename = "certificate-authority")]
    certificate_authority: Option<String>,
}

#[derive(Deserialize)]
struct RawNamedContext {
    name: String,
    context: RawContext,
}

#[derive(Deserialize)]
struct RawContext {
    #[serde(default)]
    cluster: String,
}

impl RawKubeconfig {
    /// kubeconfigutil.GetClusterFromKubeConfig: the unnamed cluster, else current-context's.
    fn current_cluster(&self) -> Result<RawCluster, String> {
        let clusters = self.clusters.as_deref().unwrap_or_default();
        if clusters.is_empty() {
            return Err("the kubeconfig must have at least one cluster defined".into());
        }
        if let Some(c) = clusters
            .iter()
            .find(|c| c.name.as_deref().unwrap_or("").is_empty())
        {
            return Ok(c.cluster.clone());
        }
        let current = self.current_context.as_deref().unwrap_or("");
        let context = self
            .contexts
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|c| c.name == current)
            .ok_or_else(|| {
                "the kubeconfig must have an unnamed cluster or a current-context that names \
                 one"
                .to_string()
            })?;
        clusters
            .iter()
            .find(|c| c.name.as_deref() == Some(context.context.cluster.as_str()))
            .map(|c| c.cluster.clone())
            .ok_or_else(|| {
                format!(
                    "current-context \"{current}\" names cluster \"{}\", which is not defined",
                    context.context.cluster
                )
            })
    }
}

/// cluster-info's kubeconfig, which must hold exactly one cluster (kubeadm: token.go).
fn single_cluster(kubeconfig: &str) -> Result<RawCluster, String> {
    let config: RawKubeconfig = yaml_serde::from_str(kubeconfig)
        .map_err(|e| format!("couldn't parse the kubeconfig file: {e}"))?;
    match config.clusters.as_deref().unwrap_or_default() {
        [one] => Ok(one.cluster.clone()),
        many => Err(format!(
            "expected the kubeconfig file to have a single cluster, but it had {}",
            many.len()
        )),
    }
}

/// The cluster's CA as PEM text.
fn cluster_ca_pem(cluster: &RawCluster) -> Result<String, String> {
    let data = cluster
        .certificate_authority_data
        .as_deref()
        .filter(|d| !d.trim().is_empty())
        .ok_or("the kubeconfig's cluster has no certificate-authority-data")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| format!("the certificate-authority-data is not base64: {e}"))?;
    String::from_utf8(bytes).map_err(|_| "the certificate-authority-data is not PEM".into())
}

/// The `sha256:` hash and PEM of each certificate in a CA bundle; an error when none parses.
fn ca_hashes(ca_pem: &str) -> Result<Vec<(String, String)>, String> {
    let certs = split_certs(ca_pem);
    if certs.is_empty() {
        return Err("the cluster CA holds no PEM certificate".into());
    }
    certs
        .into_iter()
        .map(|pem| {
            pki::ca_cert_hash(&pem)
                .map(|h| (h, pem))
                .map_err(|e| format!("failed to parse the cluster CA: {e}"))
        })
        .collect()
}

/// Each `CERTIFICATE` block of a bundle, as its own PEM text.
fn split_certs(bundle: &str) -> Vec<String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    bundle
        .split(BEGIN)
        .skip(1)
        .filter_map(|rest| {
            let body = &rest[..rest.find(END)?];
            Some(format!("{BEGIN}{body}{END}\n"))
        })
        .collect()
}

fn pem_certificate(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

// ---------------------------------------------------------------------------------------
// HTTP

/// The API server's URL, for messages: cluster-info's URL without its path.
fn server_of(cluster_info_url: &str) -> String {
    match cluster_info_url.find("/api/") {
        Some(i) => cluster_info_url[..i].to_string(),
        None => cluster_info_url.to_string(),
    }
}

fn cluster_info_url(base: &impl fmt::Display) -> String {
    format!(
        "{}/api/v1/namespaces/{}/configmaps/{}",
        base.to_string().trim_end_matches('/'),
        names::KUBE_PUBLIC,
        names::CLUSTER_INFO_CONFIGMAP
    )
}

/// Shared settings: no redirects (an API server never sends one), no proxy (the joining node
/// talks to its API server directly; `HTTPS_PROXY` must not see bootstrap traffic).
fn client_builder() -> reqwest::blocking::ClientBuilder {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .https_only(true)
        .timeout(None)
}

/// A client that trusts only the cluster CA `ca_pem`.
fn verified_client(url: &str, ca_pem: &str) -> Result<Client, DiscoveryError> {
    let roots =
        Certificate::from_pem_bundle(ca_pem.as_bytes()).map_err(|e| DiscoveryError::Malformed {
            url: server_of(url),
            problem: format!("the cluster CA does not load: {}", chain(&e)),
        })?;
    roots
        .into_iter()
        .fold(client_builder().tls_built_in_root_certs(false), |b, c| {
            b.add_root_certificate(c)
        })
        .build()
        .map_err(|e| client_error(url, &e))
}

fn client_error(url: &str, e: &reqwest::Error) -> DiscoveryError {
    DiscoveryError::InvalidSettings {
        problem: format!("cannot build an HTTPS client for {url}: {}", chain(e)),
        fix: "report this bug".into(),
    }
}

/// An error with its causes, `a: b: c`.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_must_be_host_and_port() {
        assert_eq!(
            endpoint_url("10.0.0.1:6443").expect("ok").as_str(),
            "https://10.0.0.1:6443/"
        );
        assert!(endpoint_url("[fd00::1]:6443").is_ok());
        for bad in [
            "https://10.0.0.1:6443",
            "10.0.0.1",
            "10.0.0.1:6443/x",
            "a b:1",
        ] {
            let e = endpoint_url(bad).expect_err(bad).to_string();
            assert!(e.contains("host:port"), "{bad}: {e}");
        }
    }

    #[test]
    fn pins_are_required_unless_skipped() {
        let e = parse_pins(&[], false).expect_err("no pins").to_string();
        assert!(e.contains("--discovery-token-ca-cert-hash"), "{e}");
        assert!(
            e.contains("--discovery-token-unsafe-skip-ca-verification"),
            "{e}"
        );
        assert!(parse_pins(&[], true).expect("skip").is_empty());
        let e = parse_pins(&["md5:00".into()], false).expect_err("bad pin");
        assert!(e.to_string().contains("only sha256"), "{e}");
        let pin = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(
            parse_pins(std::slice::from_ref(&pin), false)
                .expect("ok")
                .len(),
            1
        );
        assert_eq!(parse_pins(&[pin], true).expect("still checked").len(), 1);
    }

    #[test]
    fn cluster_info_kubeconfig_with_null_lists_parses() {
        let yaml = manifests::cluster::cluster_info_kubeconfig("Zm9v", "https://10.0.0.1:6443");
        let c = single_cluster(&yaml).expect("parses");
        assert_eq!(c.server, "https://10.0.0.1:6443");
        assert_eq!(cluster_ca_pem(&c).expect("ca"), "foo");
        let two =
            "clusters:\n- {name: a, cluster: {server: x}}\n- {name: b, cluster: {server: y}}\n";
        assert!(single_cluster(two).expect_err("two").contains("had 2"));
    }

    #[test]
    fn current_cluster_follows_kubeadm() {
        let named = "clusters:\n- {name: a, cluster: {server: https://a}}\n- {name: b, cluster: {server: https://b}}\n\
                     contexts:\n- {name: ctx, context: {cluster: b, user: u}}\ncurrent-context: ctx\n";
        let k: RawKubeconfig = yaml_serde::from_str(named).expect("yaml");
        assert_eq!(k.current_cluster().expect("b").server, "https://b");
        let dangling =
            "clusters:\n- {name: a, cluster: {server: https://a}}\ncurrent-context: none\n";
        let k: RawKubeconfig = yaml_serde::from_str(dangling).expect("yaml");
        assert!(k.current_cluster().is_err());
        let empty: RawKubeconfig = yaml_serde::from_str("kind: Config\n").expect("yaml");
        assert!(
            empty
                .current_cluster()
                .expect_err("none")
                .contains("at least one cluster")
        );
    }

    #[test]
    fn split_certs_finds_each_block() {
        let bundle = "junk\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n\
                      -----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n";
        let certs = split_certs(bundle);
        assert_eq!(certs.len(), 2);
        assert!(certs[1].contains("BBBB") && !certs[1].contains("AAAA"));
        assert!(split_certs("nothing").is_empty());
    }
}
