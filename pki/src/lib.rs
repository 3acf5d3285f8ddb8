//! kubeboot's public key infrastructure: the certificate authorities, certificates, keys,
//! kubeconfig files, CA public key pins, bootstrap tokens and the certificate key of a
//! kubeadm-compatible cluster, with the same fields kubeadm v1.20 writes, so kubeadm and
//! kubeboot nodes trust each other.
//!
//! This crate is pure: bytes in, bytes out. It never touches the filesystem, the network,
//! processes, the environment or the clock (`now` is a parameter); only key generation
//! reads the system's random source. Phases read files, call [`decide`], then [`issue()`], and
//! write the PEMs they get back.
//!
//! Modules:
//! - [`certs`]: the certificate table [`CERTS`] (kubeadm's certlist.go) and [`CertInputs`].
//! - [`mod@issue`]: issuing self-signed CAs and CA-signed certificates.
//! - [`key`]: private keys (ECDSA P-256, RSA), their PEM formats, the service account pair.
//! - [`verify`]: [`decide`] whether what is on the node can be reused.
//! - [`kubeconfig`]: the kubeconfig table [`KUBECONFIGS`], building and checking them.
//! - [`renew`]: re-issuing a certificate from its CA, keeping subject and SANs.
//! - [`pin`]: `sha256:` CA public key pins for discovery.
//! - [`certkey`]: the certificate key of `--upload-certs` and kubeadm's AES-GCM format of the
//!   `kubeadm-certs` Secret.
//! - [`token`]: bootstrap tokens, their usages, groups, TTL and Secret data.
//! - [`jws`]: detached JWS signatures of the `cluster-info` kubeconfig.
//! - [`info`]: expiry facts for `certs check-expiration`.
//! - [`expiry`]: what `certs check-expiration` lists and `certs renew` renews, and the report.
//! - [`error`]: the one error type, [`PkiError`], and [`SanKind`].
#![warn(missing_docs)]

pub mod certkey;
pub mod certs;
pub mod csr;
mod der;
pub mod error;
pub mod expiry;
pub mod info;
pub mod issue;
pub mod jws;
pub mod key;
pub mod kubeconfig;
pub mod pin;
pub mod renew;
pub mod token;
pub mod verify;

pub use certs::{
    AltNames, CERTS, CertInputs, CertSpec, CommonName, ExtKeyUsage, KUBEBOOT_AGENT_WEBHOOK_CERT,
    KeyUsage, SA_BASE_NAME, SanRule, Validity, alt_names, apiserver_service_ip, cert_spec,
    certs_for, parse_host_port,
};
pub use error::{PkiError, SanKind};
pub use info::{CertInfo, cert_info};
pub use issue::{Issued, Issuer, issue};
pub use key::{KeyPairPem, PrivateKey, public_key_pem, sa_key_pair};
pub use kubeconfig::{
    KUBECONFIGS, Kubeconfig, KubeconfigSpec, build_kubeconfig, decide_kubeconfig, kubeconfig_spec,
    local_server_url, server_url,
};
pub use pin::{CaPin, ca_cert_hash};
pub use token::{BootstrapToken, TokenSecret};
pub use verify::{Decision, check_sa_key, decide, decide_sa, is_signed_by};
