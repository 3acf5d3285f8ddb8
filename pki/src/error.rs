//! The one error type of the crate: every variant carries the values and names the fix.

use std::fmt;

/// Which kind of subject alternative name an error talks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SanKind {
    /// A DNS name SAN.
    Dns,
    /// An IP address SAN.
    Ip,
}

impl fmt::Display for SanKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SanKind::Dns => "DNS name",
            SanKind::Ip => "IP",
        })
    }
}

/// The fix for a stale file on a node, appended to the messages of [`PkiError`].
const FIX: &str = "delete it or run \"kubeboot reset\"";

/// Everything that can go wrong in this crate. Messages are lowercase, name the object by
/// kubeadm's name (`"apiserver"`, `admin.conf`) and the fix; the caller adds the path.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A configured SAN is neither an IP address nor a DNS-1123 (wildcard) subdomain.
    #[error("{field}: {value:?} is neither an IP address nor a valid DNS name; fix or remove it")]
    InvalidSan {
        /// The configuration field (`apiServer.certSANs`, `etcd.local.serverCertSANs`, ...).
        field: &'static str,
        /// The value as written.
        value: String,
    },
    /// `controlPlaneEndpoint` is not `host`, `host:port` or `[ipv6]:port`.
    #[error("controlPlaneEndpoint: {value:?} is not a valid host or host:port ({reason})")]
    InvalidControlPlaneEndpoint {
        /// The value as written.
        value: String,
        /// Why it does not parse.
        reason: &'static str,
    },
    /// The service subnet has no first address for the `kubernetes` service.
    #[error(
        "networking.serviceSubnet: {value:?} is too small to hold the API server's service IP; use a larger subnet"
    )]
    ServiceSubnetTooSmall {
        /// The subnet.
        value: String,
    },
    /// Generating a private key failed.
    #[error("could not generate a {algorithm} private key: {reason}")]
    KeyGeneration {
        /// `ECDSA-P256`, `RSA-2048`, ...
        algorithm: &'static str,
        /// The library's message.
        reason: String,
    },
    /// Signing a certificate failed.
    #[error("could not sign the {cert:?} certificate: {reason}")]
    Sign {
        /// The certificate's kubeadm name.
        cert: String,
        /// The library's message.
        reason: String,
    },
    /// A certificate PEM does not parse.
    #[error("the {what} is not a valid PEM-encoded X.509 certificate ({reason}); {FIX}")]
    ParseCert {
        /// What it is (`certificate "apiserver"`).
        what: String,
        /// The parser's message.
        reason: String,
    },
    /// A private key PEM does not parse or is of an unsupported kind.
    #[error("the {what} is not a usable private key ({reason}); {FIX}")]
    ParseKey {
        /// What it is (`key of "apiserver"`).
        what: String,
        /// The parser's message.
        reason: String,
    },
    /// A public key PEM does not parse.
    #[error("the {what} is not a valid PEM-encoded public key ({reason}); {FIX}")]
    ParsePublicKey {
        /// What it is (`service account public key "sa.pub"`).
        what: String,
        /// The parser's message.
        reason: String,
    },
    /// A leaf certificate was requested without its CA.
    #[error(
        "certificate {cert:?} must be signed by CA {ca:?}, but no CA was given; create the {ca:?} CA first"
    )]
    MissingIssuer {
        /// The certificate's kubeadm name.
        cert: &'static str,
        /// The CA's kubeadm name.
        ca: &'static str,
    },
    /// A CA was passed for a self-signed certificate.
    #[error("certificate {cert:?} is a self-signed CA and takes no issuer")]
    UnexpectedIssuer {
        /// The certificate's kubeadm name.
        cert: &'static str,
    },
    /// A key exists without its certificate.
    #[error(
        "found the key of {cert:?} but not its certificate; delete the key or put the certificate beside it"
    )]
    KeyWithoutCert {
        /// The certificate's kubeadm name.
        cert: &'static str,
    },
    /// A leaf certificate exists without its key.
    #[error("found certificate {cert:?} but not its key; {FIX}")]
    CertWithoutKey {
        /// The certificate's kubeadm name.
        cert: &'static str,
    },
    /// A CA certificate exists without its key (kubeadm's external CA mode).
    #[error(
        "found CA certificate {cert:?} but not its key: external CA mode is not supported by kubeboot; put the CA key beside it or delete the certificate"
    )]
    CaWithoutKey {
        /// The CA's kubeadm name.
        cert: &'static str,
    },
    /// A certificate that must be a CA is not one.
    #[error("existing certificate {cert:?} is not a CA (no basic constraints CA:TRUE); {FIX}")]
    NotCa {
        /// The certificate's kubeadm name.
        cert: &'static str,
    },
    /// The certificate has expired.
    #[error(
        "existing certificate {cert:?} expired at {not_after}; renew it with \"kubeboot certs renew\", {FIX}"
    )]
    Expired {
        /// The certificate's kubeadm name.
        cert: &'static str,
        /// Its NotAfter, RFC 3339.
        not_after: String,
    },
    /// The certificate is not valid yet (or the clock is wrong).
    #[error(
        "existing certificate {cert:?} is not valid before {not_before}; check the node's clock, or {FIX}"
    )]
    NotYetValid {
        /// The certificate's kubeadm name.
        cert: &'static str,
        /// Its NotBefore, RFC 3339.
        not_before: String,
    },
    /// The key beside a certificate belongs to another certificate.
    #[error(
        "the key of existing certificate {cert:?} does not match the certificate's public key; {FIX}"
    )]
    KeyMismatch {
        /// The certificate's kubeadm name.
        cert: &'static str,
    },
    /// The certificate was signed by a different CA than the one on the node.
    #[error(
        "existing certificate {cert:?} is not signed by the {ca:?} CA (issuer {issuer:?}); {FIX}"
    )]
    WrongCa {
        /// The certificate's kubeadm name.
        cert: &'static str,
        /// The expected CA's kubeadm name.
        ca: &'static str,
        /// The certificate's issuer DN as written in it.
        issuer: String,
    },
    /// The certificate lacks a SAN the configuration requires.
    #[error("existing certificate {cert:?} is not valid for {kind} {value} (it has {}); {FIX}", if has.is_empty() { "none".to_string() } else { has.join(", ") })]
    MissingSan {
        /// The certificate's kubeadm name.
        cert: &'static str,
        /// DNS name or IP.
        kind: SanKind,
        /// The missing value.
        value: String,
        /// The SANs of that kind the certificate has.
        has: Vec<String>,
    },
    /// `sa.pub` exists without `sa.key`.
    #[error(
        "found the service account public key \"sa.pub\" but not the private key \"sa.key\"; delete sa.pub or put sa.key beside it"
    )]
    SaPublicWithoutKey,
    /// `sa.pub` does not belong to `sa.key`.
    #[error(
        "the service account public key \"sa.pub\" does not match the private key \"sa.key\"; delete sa.pub to derive it from sa.key again"
    )]
    SaMismatch,
    /// A kubeconfig file does not parse.
    #[error("the existing kubeconfig {file} is not valid ({reason}); {FIX}")]
    KubeconfigParse {
        /// Its file name (`admin.conf`), or `kubeconfig`.
        file: String,
        /// Why.
        reason: String,
    },
    /// A kubeconfig lacks the context, cluster or user it names.
    #[error("the existing kubeconfig {file} has no {what}; {FIX}")]
    KubeconfigIncomplete {
        /// Its file name.
        file: &'static str,
        /// What is missing (`current-context`, `cluster "kubernetes"`).
        what: String,
    },
    /// A kubeconfig trusts another CA.
    #[error("a kubeconfig file {file} exists already but has got the wrong CA cert; {FIX}")]
    KubeconfigWrongCa {
        /// Its file name.
        file: &'static str,
    },
    /// A kubeconfig points at another API server.
    #[error(
        "a kubeconfig file {file} exists already but points at {actual} instead of {expected}; {FIX}"
    )]
    KubeconfigWrongServer {
        /// Its file name.
        file: &'static str,
        /// The URL we would write.
        expected: String,
        /// The URL in the file.
        actual: String,
    },
    /// A CA public key pin is malformed.
    #[error(
        "{value:?} is not a valid CA certificate hash ({reason}); use the format \"sha256:<64 hex digits>\" printed by \"kubeboot init\" or \"kubeboot token create --print-join-command\""
    )]
    InvalidPin {
        /// The value as given.
        value: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A bootstrap token is malformed. The value is not repeated: it may hold a secret.
    #[error(
        "the bootstrap token does not match the format [a-z0-9]{{6}}.[a-z0-9]{{16}} ({reason}); use \"kubeboot token generate\" to make one"
    )]
    InvalidToken {
        /// What is wrong, without the secret.
        reason: &'static str,
    },
    /// Bootstrap token usages that are not `signing` or `authentication`.
    #[error(
        "invalid bootstrap token usage string: {invalid}, valid usage options: signing,authentication"
    )]
    InvalidTokenUsage {
        /// The unknown usages, sorted, comma-separated.
        invalid: String,
    },
    /// An extra group of a bootstrap token outside `system:bootstrappers:`.
    #[error(
        "bootstrap group {group:?} is invalid (must match \\Asystem:bootstrappers:[a-z0-9:-]{{0,255}}[a-z0-9]\\z)"
    )]
    InvalidBootstrapGroup {
        /// The group as given.
        group: String,
    },
    /// A token time to live that is not a duration, or one too large to be an expiry date.
    #[error(
        "invalid token TTL {value:?}: it {reason}; use a duration such as 1s, 2m or 3h, or 0 for a token that never expires"
    )]
    InvalidTtl {
        /// The value as given.
        value: String,
        /// What is wrong with it.
        reason: components::config::duration::DurationError,
    },
    /// `now + ttl` is past the last date an RFC 3339 `expiration` can hold (year 9999).
    #[error(
        "a token TTL of {ttl_secs}s from now ends after the year 9999; use a shorter TTL, or 0 for a token that never expires"
    )]
    TtlOutOfRange {
        /// The TTL in whole seconds.
        ttl_secs: u64,
    },
    /// A `--certificate-key` that is not 64 hex digits. The value is not repeated: it is a
    /// secret.
    #[error(
        "the certificate key must be 64 hexadecimal digits (32 bytes), but {reason}; use the key printed by \"kubeboot init --upload-certs\" or \"kubeboot init phase upload-certs --upload-certs\", or make one with \"kubeboot certs certificate-key\""
    )]
    InvalidCertificateKey {
        /// What is wrong, without the key.
        reason: String,
    },
    /// An encrypted `kubeadm-certs` entry too short to hold a nonce and a tag.
    #[error(
        "the encrypted data is {len} bytes, too short for AES-GCM's 12-byte nonce and 16-byte tag (truncated); upload the certificates again with `kubeboot init phase upload-certs --upload-certs`, which prints a new key"
    )]
    SealedTooShort {
        /// Its length.
        len: usize,
    },
    /// The certificate key does not open an encrypted `kubeadm-certs` entry.
    #[error(
        "the certificate key does not decrypt the uploaded certificates (a wrong key, or data changed since the upload): check --certificate-key, or upload the certificates again with `kubeboot init phase upload-certs --upload-certs`, which prints a new key"
    )]
    CertificateKeyMismatch,
    /// A Secret in kube-system of the bootstrap token type that is not a valid token.
    #[error("{name:?} is not a valid bootstrap token Secret: {reason}")]
    InvalidTokenSecret {
        /// The Secret's name.
        name: String,
        /// What is wrong.
        reason: String,
    },
}
