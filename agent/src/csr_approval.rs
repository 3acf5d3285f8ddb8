//! Which CertificateSigningRequests the control-plane agents approve: a joining node's request
//! for its kube-proxy's client certificate, and nothing else ([`decide`], pure; the loop that
//! lists and approves is [`crate::csr_approver`]).
//!
//! # The request (the contract with `kubeboot join`)
//!
//! A node that joined by TLS bootstrap holds its own kubelet identity, user `system:node:<x>`
//! in group `system:nodes`. With it, it creates a certificates.k8s.io/v1
//! CertificateSigningRequest
//!
//! - named `kubeboot-kube-proxy-<x>`, optionally followed by `-<16 hex digits>`
//!   ([`names::KUBE_PROXY_CSR_PREFIX`], [`is_request_name_of`]);
//! - `signerName: kubernetes.io/kube-apiserver-client`;
//! - `usages: [digital signature, key encipherment, client auth]` (any subset that includes
//!   `client auth` is accepted: kube-controller-manager's signer for this signerName refuses
//!   every other usage, controller/certificates/signer/signer.go validAPIServerClientUsages);
//! - `request`: one PEM `CERTIFICATE REQUEST` whose signature verifies with its own public key,
//!   whose subject is exactly one attribute, `CN=system:kube-proxy` (no O, no OU, nothing
//!   else), and which carries no attributes at all (so no extension request, no SAN).
//!
//! The approval is the condition `Approved` (status True, reason
//! [`APPROVAL_REASON`]); kube-controller-manager then signs it with the cluster CA
//! (`--cluster-signing-cert-file`/`--cluster-signing-key-file`). Anything else is left alone:
//! never denied, since another approver may own it.
//!
//! # Why this is safe
//!
//! - **Who asks.** `spec.username` and `spec.groups` are not the requester's to choose: the
//!   API server overwrites them with the authenticated user on create (apiserver:
//!   registry/certificates/certificates/strategy.go PrepareForCreate), and they are immutable.
//!   `system:node:<x>` in `system:nodes` and `system:authenticated` means the request was made
//!   with node `<x>`'s own credential. A bootstrap token alone (`system:bootstrap:<id>`) is
//!   not enough, nor is any user or ServiceAccount.
//! - **For whom.** The name must be `kubeboot-kube-proxy-<x>` for that same `<x>`: a node
//!   cannot file a request in another node's name, and since nodes may create CSRs but not
//!   delete them (Node authorizer: bootstrappolicy NodeRules), each node has at most one such
//!   request at a time until kube-controller-manager's cleaner removes it (an hour after it was
//!   issued): no node can mint certificates in bulk.
//! - **What it gets.** The subject is exactly `CN=system:kube-proxy`: the user Kubernetes'
//!   default ClusterRoleBinding `system:node-proxier` binds to the ClusterRole of that name
//!   (read services, endpoints, endpointslices and nodes; write events), and no group beyond
//!   `system:authenticated`. That is what kubeadm gives every node's kube-proxy already (the
//!   `kube-proxy` ServiceAccount, bound to the same role by `kubeadm:node-proxier`, whose token
//!   any node running the DaemonSet's pod can read), and barely more than the node's own
//!   identity may read (services, nodes, endpoints by name). No organization means no group
//!   (`system:masters` above all, which the CertificateSubjectRestriction admission plugin
//!   would also refuse); no extension request means nothing the signer might copy. The
//!   signature check proves the requester holds the private key, so the certificate is usable
//!   only by whoever generated the key.
//! - **Only once.** A request that is already approved, denied or issued is never touched, and
//!   the approval is written with the resourceVersion that was inspected: a request changed in
//!   between (another control-plane agent approved it, an administrator denied it) makes the
//!   write fail instead of overriding that decision.
//!
//! Limits, stated: the certificate's CN is the same for every node (the default binding names
//! the user `system:kube-proxy`), so the API server's audit log tells nodes apart by source
//! address only; and a certificate lives for kube-controller-manager's
//! `--cluster-signing-duration` (a year) with no revocation, as kubeadm's kubelet client
//! certificates do. Neither gives more than the read rights above.
//!
//! Why the checks are here and not in RBAC: the agents may approve for the signer
//! `kubernetes.io/kube-apiserver-client`, which RBAC cannot narrow to one subject (see
//! `manifests::agent_rbac`), so this function is the only thing that keeps an agent from
//! approving any client certificate. That is acceptable because the agents' credential exists
//! only on control-plane nodes, whose root holds the CA key anyway.

use std::fmt;

use components::names;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use x509_parser::oid_registry::OID_X509_COMMON_NAME;
use x509_parser::prelude::{FromDer, X509CertificationRequest};

/// The reason of the agents' approval condition (kube-controller-manager's approver writes
/// `AutoApproved`).
pub const APPROVAL_REASON: &str = "KubebootKubeProxyApprove";

/// The only subject a request may carry: the user the default RBAC binds to
/// `system:node-proxier`.
const SUBJECT_CN: &str = names::KUBE_PROXY_USER;

/// The usages kube-controller-manager signs for `kubernetes.io/kube-apiserver-client`; a
/// request must ask for `client auth` and nothing outside these.
pub const KUBE_PROXY_USAGES: [&str; 3] = ["digital signature", "key encipherment", "client auth"];

/// What to do with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Approve: node `node`'s request for its kube-proxy's client certificate.
    Approve {
        /// The node that asked (`<x>` of `system:node:<x>`).
        node: String,
    },
    /// Not a request the agents approve; left alone (never denied).
    Ignore(Ignored),
}

/// Why a request is left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ignored {
    /// It is already approved, denied or issued (whoever did it).
    Decided(&'static str),
    /// Another signer.
    Signer(String),
    /// Its name does not start with `kubeboot-kube-proxy-`.
    NotKubeProxyName,
    /// Its requester is not a node.
    NotANode(String),
    /// Its requester lacks a group every node has.
    MissingGroup(&'static str),
    /// Its name is for another node than the one that asked.
    OtherNode {
        /// The request's name.
        name: String,
        /// The node that asked.
        node: String,
    },
    /// Usages outside the contract, or no `client auth`.
    Usages(Vec<String>),
    /// `spec.request` is not exactly one PEM certificate request that parses.
    Request(String),
    /// The request's signature does not verify with its own public key.
    Signature(String),
    /// A subject other than exactly `CN=system:kube-proxy`.
    Subject(String),
    /// The request carries attributes (an extension request: SANs or any extension).
    Attributes(Vec<String>),
}

impl fmt::Display for Ignored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ignored::Decided(how) => write!(f, "already {how}"),
            Ignored::Signer(s) => write!(
                f,
                "signer {s:?} is not {:?}",
                names::KUBE_APISERVER_CLIENT_SIGNER
            ),
            Ignored::NotKubeProxyName => write!(
                f,
                "the name does not start with {:?}",
                names::KUBE_PROXY_CSR_PREFIX
            ),
            Ignored::NotANode(u) => write!(f, "requested by {u:?}, not by a node"),
            Ignored::MissingGroup(g) => write!(f, "the requester is not in group {g:?}"),
            Ignored::OtherNode { name, node } => write!(
                f,
                "the name {name:?} is not the one of node {node:?}'s request ({:?})",
                request_name(node)
            ),
            Ignored::Usages(u) => write!(
                f,
                "usages {u:?} are not client auth with at most {KUBE_PROXY_USAGES:?}"
            ),
            Ignored::Request(e) => write!(f, "the request is not one PEM certificate request: {e}"),
            Ignored::Signature(e) => write!(
                f,
                "the request's signature does not verify with its own key: {e}"
            ),
            Ignored::Subject(s) => write!(f, "the subject {s:?} is not exactly CN={SUBJECT_CN}"),
            Ignored::Attributes(oids) => write!(
                f,
                "the request carries attributes {oids:?} (extensions, SANs); none are allowed"
            ),
        }
    }
}

/// The name of node `node`'s request: `kubeboot-kube-proxy-<node>`.
pub fn request_name(node: &str) -> String {
    format!("{}{node}", names::KUBE_PROXY_CSR_PREFIX)
}

/// Whether `name` is one of `node`'s request names: [`request_name`], optionally followed by
/// `-` and 16 hex digits (a digest of the request, so that a node joining again after a
/// reset never collides with its earlier request, which lives on for an hour).
pub fn is_request_name_of(name: &str, node: &str) -> bool {
    let Some(rest) = name.strip_prefix(&request_name(node)) else {
        return false;
    };
    rest.is_empty()
        || rest.strip_prefix('-').is_some_and(|d| {
            d.len() == 16
                && d.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

/// Whether the agents approve `csr` (see the module documentation for each rule and why).
/// Cheap checks come first, so that the many requests that are not ours (kubelets' own) never
/// get parsed.
pub fn decide(csr: &CertificateSigningRequest) -> Decision {
    match check(csr) {
        Ok(node) => Decision::Approve { node },
        Err(why) => Decision::Ignore(why),
    }
}

fn check(csr: &CertificateSigningRequest) -> Result<String, Ignored> {
    if let Some(how) = decided(csr) {
        return Err(Ignored::Decided(how));
    }
    let spec = &csr.spec;
    if spec.signer_name != names::KUBE_APISERVER_CLIENT_SIGNER {
        return Err(Ignored::Signer(spec.signer_name.clone()));
    }
    let name = csr.metadata.name.as_deref().unwrap_or_default();
    if !name.starts_with(names::KUBE_PROXY_CSR_PREFIX) {
        return Err(Ignored::NotKubeProxyName);
    }
    let user = spec.username.as_deref().unwrap_or_default();
    let node = match user.strip_prefix(names::NODES_USER_PREFIX) {
        Some(node) if !node.is_empty() => node,
        _ => return Err(Ignored::NotANode(user.to_string())),
    };
    let groups = spec.groups.as_deref().unwrap_or_default();
    for group in [names::NODES_GROUP, names::AUTHENTICATED_GROUP] {
        if !groups.iter().any(|g| g == group) {
            return Err(Ignored::MissingGroup(group));
        }
    }
    if !is_request_name_of(name, node) {
        return Err(Ignored::OtherNode {
            name: name.to_string(),
            node: node.to_string(),
        });
    }
    let usages = spec.usages.as_deref().unwrap_or_default();
    let allowed = usages
        .iter()
        .all(|u| KUBE_PROXY_USAGES.contains(&u.as_str()));
    if !allowed || !usages.iter().any(|u| u == "client auth") {
        return Err(Ignored::Usages(usages.to_vec()));
    }
    check_request(&spec.request.0)?;
    Ok(node.to_string())
}

/// Approved, denied or issued: someone has decided already.
fn decided(csr: &CertificateSigningRequest) -> Option<&'static str> {
    let status = csr.status.as_ref()?;
    for c in status.conditions.iter().flatten() {
        match c.type_.as_str() {
            "Approved" => return Some("approved"),
            "Denied" => return Some("denied"),
            "Failed" => return Some("failed"),
            _ => {}
        }
    }
    status
        .certificate
        .as_ref()
        .filter(|c| !c.0.is_empty())
        .map(|_| "issued")
}

/// The PEM request: exactly one `CERTIFICATE REQUEST` block, DER with nothing after it, a
/// signature that verifies, the one subject attribute, no attributes.
fn check_request(pem: &[u8]) -> Result<(), Ignored> {
    let blocks = x509_parser::pem::Pem::iter_from_buffer(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Ignored::Request(e.to_string()))?;
    let [block] = blocks.as_slice() else {
        return Err(Ignored::Request(format!(
            "{} PEM blocks, not one",
            blocks.len()
        )));
    };
    if block.label != "CERTIFICATE REQUEST" {
        return Err(Ignored::Request(format!(
            "a PEM block {:?}, not \"CERTIFICATE REQUEST\"",
            block.label
        )));
    }
    let (rest, csr) = X509CertificationRequest::from_der(&block.contents)
        .map_err(|e| Ignored::Request(e.to_string()))?;
    if !rest.is_empty() {
        return Err(Ignored::Request(format!(
            "{} bytes after the request",
            rest.len()
        )));
    }
    csr.verify_signature()
        .map_err(|e| Ignored::Signature(e.to_string()))?;
    let info = &csr.certification_request_info;
    let subject = &info.subject;
    let attributes: Vec<_> = subject.iter().flat_map(|rdn| rdn.iter()).collect();
    let exact = match attributes.as_slice() {
        [cn] => {
            *cn.attr_type() == OID_X509_COMMON_NAME && cn.as_str().is_ok_and(|v| v == SUBJECT_CN)
        }
        _ => false,
    };
    if !exact {
        return Err(Ignored::Subject(subject.to_string()));
    }
    if !info.attributes().is_empty() {
        return Err(Ignored::Attributes(
            info.attributes()
                .iter()
                .map(|a| a.oid.to_id_string())
                .collect(),
        ));
    }
    Ok(())
}

/// `csr` with the agents' approval condition added (for the `approval` subresource; its
/// resourceVersion stays, so the write fails if the request changed since it was decided).
/// `node` is the requesting node, `approver` this agent's node (for the audit trail).
pub fn approved(
    csr: &CertificateSigningRequest,
    node: &str,
    approver: &str,
) -> CertificateSigningRequest {
    let mut out = csr.clone();
    let status = out.status.get_or_insert_with(Default::default);
    status
        .conditions
        .get_or_insert_with(Vec::new)
        .push(CertificateSigningRequestCondition {
            type_: "Approved".to_string(),
            status: "True".to_string(),
            reason: Some(APPROVAL_REASON.to_string()),
            // Worded as kube-controller-manager's approver words its own
            // (controller/certificates/approver/sarapprove.go).
            message: Some(format!(
                "Auto approving kube-proxy client certificate of node {node} after the kubeboot agent's checks (agent on {approver})."
            )),
            last_transition_time: None,
            last_update_time: None,
        });
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use components::config::KeyAlgorithm;
    use k8s_openapi::ByteString;
    use k8s_openapi::api::certificates::v1::{
        CertificateSigningRequestSpec, CertificateSigningRequestStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    /// The request exactly as the joining node makes it (pki::csr::client_csr, the worker's
    /// own function).
    fn kube_proxy_pem() -> String {
        let key = pki::PrivateKey::generate(KeyAlgorithm::EcdsaP256).expect("key");
        pki::csr::client_csr(&key, "system:kube-proxy", &[]).expect("csr")
    }

    /// A request of `user` named `name` with the contract's signer, groups and usages.
    pub(crate) fn csr(name: &str, user: &str, pem: &str) -> CertificateSigningRequest {
        CertificateSigningRequest {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                resource_version: Some("41".to_string()),
                ..Default::default()
            },
            spec: CertificateSigningRequestSpec {
                signer_name: "kubernetes.io/kube-apiserver-client".to_string(),
                username: Some(user.to_string()),
                groups: Some(vec![
                    "system:nodes".to_string(),
                    "system:authenticated".to_string(),
                ]),
                usages: Some(
                    ["digital signature", "key encipherment", "client auth"]
                        .map(String::from)
                        .to_vec(),
                ),
                request: ByteString(pem.as_bytes().to_vec()),
                ..Default::default()
            },
            status: None,
        }
    }

    fn exact() -> CertificateSigningRequest {
        csr(
            "kubeboot-kube-proxy-node4",
            "system:node:node4",
            &kube_proxy_pem(),
        )
    }

    /// A request built with rcgen directly, for subjects and extensions the worker's function
    /// cannot make.
    fn rcgen_pem(edit: impl FnOnce(&mut rcgen::CertificateParams)) -> String {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "system:kube-proxy");
        edit(&mut params);
        params
            .serialize_request(&key)
            .expect("request")
            .pem()
            .expect("pem")
    }

    fn pem_of(der: &[u8]) -> String {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).expect("ascii"))
            .collect();
        format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
            lines.join("\n")
        )
    }

    fn der_of(pem: &str) -> Vec<u8> {
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("pem");
        block.contents
    }

    fn ignored(c: &CertificateSigningRequest) -> Ignored {
        match decide(c) {
            Decision::Ignore(why) => why,
            Decision::Approve { node } => panic!("approved for {node}: {c:?}"),
        }
    }

    #[test]
    fn the_exact_request_is_approved_for_its_node() {
        assert_eq!(
            decide(&exact()),
            Decision::Approve {
                node: "node4".to_string()
            }
        );
        // The usages may be fewer, as long as client auth is one of them.
        let mut c = exact();
        c.spec.usages = Some(vec!["client auth".to_string()]);
        assert!(matches!(decide(&c), Decision::Approve { .. }));
        // A node name with dots (a DNS subdomain) is a node name too.
        let c = csr(
            "kubeboot-kube-proxy-node4.example.org",
            "system:node:node4.example.org",
            &kube_proxy_pem(),
        );
        assert_eq!(
            decide(&c),
            Decision::Approve {
                node: "node4.example.org".to_string()
            }
        );
    }

    #[test]
    fn the_request_the_worker_makes_has_no_attributes() {
        // The contract's own request, checked field by field: one CN, no attributes.
        let der = der_of(&kube_proxy_pem());
        let (_, parsed) = X509CertificationRequest::from_der(&der).expect("parses");
        assert_eq!(
            parsed.certification_request_info.subject.to_string(),
            "CN=system:kube-proxy"
        );
        assert!(parsed.certification_request_info.attributes().is_empty());
    }

    #[test]
    fn another_signer_is_left_alone() {
        for signer in [
            "kubernetes.io/kube-apiserver-client-kubelet",
            "kubernetes.io/kubelet-serving",
            "kubernetes.io/legacy-unknown",
            "example.com/kube-apiserver-client",
            "",
        ] {
            let mut c = exact();
            c.spec.signer_name = signer.to_string();
            assert_eq!(ignored(&c), Ignored::Signer(signer.to_string()));
        }
    }

    #[test]
    fn a_requester_that_is_not_a_node_is_left_alone() {
        for user in [
            "system:bootstrap:abcdef",
            "system:serviceaccount:kube-system:kube-proxy",
            "kubernetes-admin",
            "system:node:",
            "system:nodes",
            "system:kube-proxy",
            "",
        ] {
            let c = csr("kubeboot-kube-proxy-node4", user, &kube_proxy_pem());
            assert_eq!(ignored(&c), Ignored::NotANode(user.to_string()), "{user}");
        }
        let mut c = exact();
        c.spec.username = None;
        assert_eq!(ignored(&c), Ignored::NotANode(String::new()));
    }

    #[test]
    fn request_names_carry_the_node_and_at_most_a_digest() {
        assert!(is_request_name_of("kubeboot-kube-proxy-n4", "n4"));
        assert!(is_request_name_of(
            "kubeboot-kube-proxy-n4-0123456789abcdef",
            "n4"
        ));
        assert!(!is_request_name_of(
            "kubeboot-kube-proxy-n4-0123456789abcdeg",
            "n4"
        ));
        assert!(!is_request_name_of("kubeboot-kube-proxy-n4-x", "n4"));
        assert!(!is_request_name_of(
            "kubeboot-kube-proxy-n4-0123456789abcdef",
            "n"
        ));
        assert!(!is_request_name_of("kubeboot-kube-proxy-n", "n4"));
    }

    #[test]
    fn a_request_named_for_another_node_is_left_alone() {
        for name in [
            "kubeboot-kube-proxy-node5",
            "kubeboot-kube-proxy-node4x",
            "kubeboot-kube-proxy-node",
            "kubeboot-kube-proxy-",
            "kubeboot-kube-proxy-node4.example.org",
        ] {
            let c = csr(name, "system:node:node4", &kube_proxy_pem());
            assert_eq!(
                ignored(&c),
                Ignored::OtherNode {
                    name: name.to_string(),
                    node: "node4".to_string()
                },
                "{name}"
            );
        }
        for name in [
            "csr-abcde",
            "node-csr-xyz",
            "kube-proxy-node4",
            "x-kubeboot-kube-proxy-node4",
        ] {
            let c = csr(name, "system:node:node4", &kube_proxy_pem());
            assert_eq!(ignored(&c), Ignored::NotKubeProxyName, "{name}");
        }
    }

    #[test]
    fn a_requester_missing_a_node_group_is_left_alone() {
        for (groups, missing) in [
            (vec!["system:authenticated"], "system:nodes"),
            (vec!["system:nodes"], "system:authenticated"),
            (
                vec!["system:masters", "system:authenticated"],
                "system:nodes",
            ),
            (vec![], "system:nodes"),
        ] {
            let mut c = exact();
            c.spec.groups = Some(groups.iter().map(|g| g.to_string()).collect());
            assert_eq!(ignored(&c), Ignored::MissingGroup(missing), "{groups:?}");
        }
        let mut c = exact();
        c.spec.groups = None;
        assert_eq!(ignored(&c), Ignored::MissingGroup("system:nodes"));
    }

    #[test]
    fn another_common_name_is_left_alone() {
        for cn in [
            "system:node:node4",
            "kubernetes-admin",
            "system:kube-proxy ",
            "System:kube-proxy",
        ] {
            let key = pki::PrivateKey::generate(KeyAlgorithm::EcdsaP256).expect("key");
            let pem = pki::csr::client_csr(&key, cn, &[]).expect("csr");
            let c = csr("kubeboot-kube-proxy-node4", "system:node:node4", &pem);
            assert!(matches!(ignored(&c), Ignored::Subject(_)), "{cn}");
        }
        // No subject at all.
        let pem = rcgen_pem(|p| p.distinguished_name = rcgen::DistinguishedName::new());
        let c = csr("kubeboot-kube-proxy-node4", "system:node:node4", &pem);
        assert_eq!(ignored(&c), Ignored::Subject(String::new()));
    }

    #[test]
    fn an_organization_or_any_other_subject_attribute_is_left_alone() {
        let key = pki::PrivateKey::generate(KeyAlgorithm::EcdsaP256).expect("key");
        for orgs in [&["system:masters"][..], &["system:nodes"], &[""]] {
            let pem = pki::csr::client_csr(&key, "system:kube-proxy", orgs).expect("csr");
            let c = csr("kubeboot-kube-proxy-node4", "system:node:node4", &pem);
            assert!(matches!(ignored(&c), Ignored::Subject(_)), "{orgs:?}");
        }
        for dn in [
            rcgen::DnType::OrganizationalUnitName,
            rcgen::DnType::CountryName,
            rcgen::DnType::LocalityName,
        ] {
            let pem = rcgen_pem(|p| p.distinguished_name.push(dn.clone(), "x"));
            let c = csr("kubeboot-kube-proxy-node4", "system:node:node4", &pem);
            assert!(matches!(ignored(&c), Ignored::Subject(_)), "{dn:?}");
        }
        // The CN is not the only thing that counts: a lone O is no CN.
        let pem = rcgen_pem(|p| {
            p.distinguished_name = rcgen::DistinguishedName::new();
            p.distinguished_name
                .push(rcgen::DnType::OrganizationName, "system:kube-proxy");
        });
        let c = csr("kubeboot-kube-proxy-node4", "system:node:node4", &pem);
        assert!(matches!(ignored(&c), Ignored::Subject(_)));
    }

    #[test]
    fn a_san_or_any_extension_request_is_left_alone() {
        type Edit = Box<dyn FnOnce(&mut rcgen::CertificateParams)>;
        let cases: Vec<Edit> = vec![
            Box::new(|p| {
                p.subject_alt_names = vec![rcgen::SanType::DnsName(
                    "kubernetes.default".try_into().expect("dns"),
                )]
            }),
            Box::new(|p| {
                p.subject_alt_names = vec![rcgen::SanType::IpAddress([10, 0, 0, 1].into())]
            }),
            Box::new(|p| {
                p.custom_extensions = vec![rcgen::CustomExtension::from_oid_content(
                    &[1, 3, 6, 1, 4, 1, 99999, 1],
                    vec![0x05, 0x00],
                )]
            }),
            Box::new(|p| p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained)),
        ];
        for (i, edit) in cases.into_iter().enumerate() {
            let pem = rcgen_pem(edit);
            let c = csr("kubeboot-kube-proxy-node4", "system:node:node4", &pem);
            assert!(
                matches!(ignored(&c), Ignored::Attributes(ref oids) if oids == &["1.2.840.113549.1.9.14"]),
                "case {i}: {:?}",
                ignored(&c)
            );
        }
    }

    #[test]
    fn a_signature_that_does_not_verify_is_left_alone() {
        // The last byte of the DER is the signature's: flipped, the request still parses.
        let mut der = der_of(&kube_proxy_pem());
        let last = der.len() - 1;
        der[last] ^= 0x01;
        let c = csr(
            "kubeboot-kube-proxy-node4",
            "system:node:node4",
            &pem_of(&der),
        );
        assert!(
            matches!(ignored(&c), Ignored::Signature(_)),
            "{:?}",
            ignored(&c)
        );
        // A subject changed after signing (a CN swapped in by hand) does not verify either.
        let good = der_of(
            &pki::csr::client_csr(
                &pki::PrivateKey::generate(KeyAlgorithm::EcdsaP256).expect("key"),
                "system:kube-proxz",
                &[],
            )
            .expect("csr"),
        );
        let at = good
            .windows(17)
            .position(|w| w == b"system:kube-proxz")
            .expect("cn in der");
        let mut forged = good.clone();
        forged[at + 16] = b'y';
        let c = csr(
            "kubeboot-kube-proxy-node4",
            "system:node:node4",
            &pem_of(&forged),
        );
        assert!(
            matches!(ignored(&c), Ignored::Signature(_)),
            "{:?}",
            ignored(&c)
        );
    }

    #[test]
    fn a_request_that_is_not_one_pem_csr_is_left_alone() {
        let pem = kube_proxy_pem();
        let der = der_of(&pem);
        let mut trailing = der.clone();
        trailing.push(0);
        let cases = [
            String::new(),
            "not pem".to_string(),
            pem.replace("CERTIFICATE REQUEST", "CERTIFICATE"),
            format!("{pem}{pem}"),
            pem_of(&trailing),
            pem_of(&der[..der.len() - 10]),
        ];
        for (i, request) in cases.iter().enumerate() {
            let c = csr("kubeboot-kube-proxy-node4", "system:node:node4", request);
            assert!(
                matches!(ignored(&c), Ignored::Request(_)),
                "case {i}: {:?}",
                ignored(&c)
            );
        }
    }

    #[test]
    fn usages_beyond_a_client_certificate_are_left_alone() {
        for usages in [
            vec!["digital signature", "key encipherment", "server auth"],
            vec![
                "digital signature",
                "key encipherment",
                "client auth",
                "server auth",
            ],
            vec!["client auth", "cert sign"],
            vec!["digital signature", "key encipherment"],
            vec![],
        ] {
            let mut c = exact();
            let usages: Vec<String> = usages.iter().map(|u| u.to_string()).collect();
            c.spec.usages = Some(usages.clone());
            assert_eq!(ignored(&c), Ignored::Usages(usages));
        }
    }

    #[test]
    fn a_request_already_decided_is_left_alone() {
        for (kind, how) in [
            ("Approved", "approved"),
            ("Denied", "denied"),
            ("Failed", "failed"),
        ] {
            let mut c = exact();
            c.status = Some(CertificateSigningRequestStatus {
                conditions: Some(vec![CertificateSigningRequestCondition {
                    type_: kind.to_string(),
                    status: "True".to_string(),
                    ..Default::default()
                }]),
                certificate: None,
            });
            assert_eq!(ignored(&c), Ignored::Decided(how));
        }
        let mut c = exact();
        c.status = Some(CertificateSigningRequestStatus {
            conditions: None,
            certificate: Some(ByteString(b"-----BEGIN CERTIFICATE-----".to_vec())),
        });
        assert_eq!(ignored(&c), Ignored::Decided("issued"));
        // An empty status is no decision.
        let mut c = exact();
        c.status = Some(CertificateSigningRequestStatus::default());
        assert!(matches!(decide(&c), Decision::Approve { .. }));
    }

    #[test]
    fn the_approval_adds_one_condition_and_keeps_the_resource_version() {
        let c = exact();
        let a = approved(&c, "node4", "node1");
        assert_eq!(a.metadata.resource_version.as_deref(), Some("41"));
        assert_eq!(a.spec, c.spec);
        let conditions = a.status.and_then(|s| s.conditions).expect("conditions");
        assert_eq!(conditions.len(), 1);
        let cond = &conditions[0];
        assert_eq!(cond.type_, "Approved");
        assert_eq!(cond.status, "True");
        assert_eq!(cond.reason.as_deref(), Some("KubebootKubeProxyApprove"));
        let message = cond.message.as_deref().expect("message");
        assert!(message.starts_with("Auto approving kube-proxy client certificate"));
        assert!(
            message.contains("node4") && message.contains("node1"),
            "{message}"
        );
        // Once approved, it is decided.
        let mut again = c.clone();
        again.status = Some(
            k8s_openapi::api::certificates::v1::CertificateSigningRequestStatus {
                conditions: Some(conditions),
                certificate: None,
            },
        );
        assert_eq!(ignored(&again), Ignored::Decided("approved"));
    }

    #[test]
    fn every_reason_reads_as_a_sentence() {
        let reasons = [
            Ignored::Decided("approved"),
            Ignored::Signer("x".into()),
            Ignored::NotKubeProxyName,
            Ignored::NotANode("u".into()),
            Ignored::MissingGroup("system:nodes"),
            Ignored::OtherNode {
                name: "kubeboot-kube-proxy-a".into(),
                node: "b".into(),
            },
            Ignored::Usages(vec![]),
            Ignored::Request("e".into()),
            Ignored::Signature("e".into()),
            Ignored::Subject("O=x".into()),
            Ignored::Attributes(vec!["1.2".into()]),
        ];
        for r in reasons {
            let s = r.to_string();
            assert!(!s.is_empty() && !s.ends_with('.'), "{s}");
        }
        assert_eq!(
            Ignored::OtherNode {
                name: "kubeboot-kube-proxy-a".into(),
                node: "b".into()
            }
            .to_string(),
            "the name \"kubeboot-kube-proxy-a\" is not the one of node \"b\"'s request (\"kubeboot-kube-proxy-b\")"
        );
    }
}
