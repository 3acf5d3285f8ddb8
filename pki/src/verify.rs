//! Deciding what to do with certificates and keys already on the node: reuse what fits,
//! create what is missing, and refuse (with the reason and the fix) anything else
//! (kubeadm: app/phases/certs/certs.go, writeCertificateFilesIfNotExist and friends).

use std::net::IpAddr;
use std::time::SystemTime;

use time::OffsetDateTime;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::certs::{CertInputs, CertSpec, alt_names};
use crate::error::SanKind;
use crate::key::{PrivateKey, public_key_raw_from_pem};
use crate::{PkiError, der};

/// What a phase should do about one certificate (or key pair).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// What is on the node fits: keep it (`Using existing "apiserver" certificate and key`).
    Reuse,
    /// Nothing is on the node: issue and write it.
    Create,
}

/// Decides whether the certificate `spec` on the node can be reused.
///
/// - nothing there: [`Decision::Create`];
/// - certificate and key that fit: [`Decision::Reuse`]; a CA the user put there before
///   `init` is used, as kubeadm does;
/// - anything else is an error naming what does not fit and the fix, never an overwrite:
///   key without certificate, certificate without key (also a CA without key: kubeadm's
///   external CA mode is not supported), a key of another certificate, expired or not yet
///   valid, a CA that is not one, a leaf not signed by `issuer_ca_cert_pem`, a leaf
///   missing a SAN the configuration asks for.
///
/// Leaves need `issuer_ca_cert_pem`, the CA on the node. Like kubeadm, only the SANs and the
/// signing CA are checked, not the subject or the usages.
///
/// # Errors
/// The [`PkiError`] variants named above, and parse errors.
pub fn decide(
    spec: &CertSpec,
    inputs: &CertInputs,
    existing_cert_pem: Option<&str>,
    existing_key_pem: Option<&str>,
    issuer_ca_cert_pem: Option<&str>,
    now: SystemTime,
) -> Result<Decision, PkiError> {
    let (cert_pem, key_pem) = match (existing_cert_pem, existing_key_pem) {
        (None, None) => return Ok(Decision::Create),
        (None, Some(_)) => return Err(PkiError::KeyWithoutCert { cert: spec.name }),
        (Some(_), None) if spec.is_ca() => return Err(PkiError::CaWithoutKey { cert: spec.name }),
        (Some(_), None) => return Err(PkiError::CertWithoutKey { cert: spec.name }),
        (Some(c), Some(k)) => (c, k),
    };
    let cert = parse_cert(cert_pem, &format!("certificate {:?}", spec.name))?;
    let key = PrivateKey::from_pem(key_pem, &format!("key of {:?}", spec.name))?;
    if key.public_key_raw() != cert.public_key_raw.as_slice() {
        return Err(PkiError::KeyMismatch { cert: spec.name });
    }
    check_period(spec.name, &cert, now)?;
    if spec.is_ca() {
        if !cert.is_ca {
            return Err(PkiError::NotCa { cert: spec.name });
        }
        return Ok(Decision::Reuse);
    }
    let ca_name = spec.ca.unwrap_or(spec.name);
    let ca_pem = issuer_ca_cert_pem.ok_or(PkiError::MissingIssuer {
        cert: spec.name,
        ca: ca_name,
    })?;
    let ca = parse_cert(ca_pem, &format!("CA certificate {ca_name:?}"))?;
    if !signed_by(&cert.der, &ca.der) {
        return Err(PkiError::WrongCa {
            cert: spec.name,
            ca: ca_name,
            issuer: cert.issuer.clone(),
        });
    }
    // kubeadm: validateCertificateWithConfig, cert.VerifyHostname for every DNS name and IP.
    let want = alt_names(spec, inputs)?;
    for dns in &want.dns_names {
        if !cert
            .dns_names
            .iter()
            .any(|pattern| hostname_matches(pattern, dns))
        {
            return Err(PkiError::MissingSan {
                cert: spec.name,
                kind: SanKind::Dns,
                value: dns.clone(),
                has: cert.dns_names.clone(),
            });
        }
    }
    for ip in &want.ips {
        if !cert.ips.contains(ip) {
            return Err(PkiError::MissingSan {
                cert: spec.name,
                kind: SanKind::Ip,
                value: ip.to_string(),
                has: cert.ips.iter().map(IpAddr::to_string).collect(),
            });
        }
    }
    Ok(Decision::Reuse)
}

/// Decides about the service account key pair: no `sa.key` means create; an `sa.key` that
/// parses is reused, as kubeadm does (CreateServiceAccountKeyAndPublicKeyFiles), provided an
/// existing `sa.pub` belongs to it. If `sa.pub` is missing, the caller writes
/// [`crate::public_key_pem`] of `sa.key`.
///
/// # Errors
/// [`PkiError::SaPublicWithoutKey`], [`PkiError::SaMismatch`], parse errors.
pub fn decide_sa(
    existing_key_pem: Option<&str>,
    existing_pub_pem: Option<&str>,
) -> Result<Decision, PkiError> {
    let Some(key_pem) = existing_key_pem else {
        return match existing_pub_pem {
            None => Ok(Decision::Create),
            Some(_) => Err(PkiError::SaPublicWithoutKey),
        };
    };
    check_sa_key(key_pem, existing_pub_pem)?;
    Ok(Decision::Reuse)
}

/// Checks an existing `sa.key` (and `sa.pub`, if present, against it) and returns the public
/// key PEM derived from `sa.key`, for the caller to write when `sa.pub` is missing.
///
/// # Errors
/// [`PkiError::ParseKey`], [`PkiError::ParsePublicKey`], [`PkiError::SaMismatch`].
pub fn check_sa_key(private_pem: &str, existing_pub_pem: Option<&str>) -> Result<String, PkiError> {
    let key = PrivateKey::from_pem(private_pem, "service account key \"sa.key\"")?;
    if let Some(pub_pem) = existing_pub_pem {
        let public = public_key_raw_from_pem(pub_pem, "service account public key \"sa.pub\"")?;
        if public != key.public_key_raw() {
            return Err(PkiError::SaMismatch);
        }
    }
    Ok(key.public_key_pem())
}

/// The fields of a certificate this crate looks at, owned.
#[derive(Debug, Clone)]
pub(crate) struct ParsedCert {
    pub der: Vec<u8>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub is_ca: bool,
    pub common_name: String,
    pub issuer: String,
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
    /// The SubjectPublicKeyInfo, DER.
    pub spki_der: Vec<u8>,
    /// The SubjectPublicKeyInfo's bit string contents.
    pub public_key_raw: Vec<u8>,
}

/// Parses the first `CERTIFICATE` block of `pem`; `what` names it in errors.
pub(crate) fn parse_cert(pem: &str, what: &str) -> Result<ParsedCert, PkiError> {
    let fail = |reason: String| PkiError::ParseCert {
        what: what.to_string(),
        reason,
    };
    let blocks = der::pem_blocks(pem).map_err(fail)?;
    let (_, der_bytes) = blocks
        .into_iter()
        .find(|(label, _)| label == "CERTIFICATE")
        .ok_or_else(|| fail("no CERTIFICATE block".to_string()))?;
    let (_, x) = X509Certificate::from_der(&der_bytes).map_err(|e| fail(e.to_string()))?;
    let time = |t: &x509_parser::time::ASN1Time| {
        OffsetDateTime::from_unix_timestamp(t.timestamp()).map_err(|e| fail(e.to_string()))
    };
    let mut dns_names = Vec::new();
    let mut ips = Vec::new();
    if let Some(san) = x
        .subject_alternative_name()
        .map_err(|e| fail(e.to_string()))?
    {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => dns_names.push(d.to_string()),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => ips.push(IpAddr::from(<[u8; 4]>::try_from(*b).expect("4 bytes"))),
                    16 => ips.push(IpAddr::from(<[u8; 16]>::try_from(*b).expect("16 bytes"))),
                    _ => return Err(fail("IP address SAN of bad length".to_string())),
                },
                _ => {}
            }
        }
    }
    let common_name = x
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_string();
    Ok(ParsedCert {
        not_before: time(&x.validity().not_before)?,
        not_after: time(&x.validity().not_after)?,
        is_ca: x.is_ca(),
        common_name,
        issuer: x.issuer().to_string(),
        dns_names,
        ips,
        spki_der: x.public_key().raw.to_vec(),
        public_key_raw: x.public_key().subject_public_key.data.to_vec(),
        der: der_bytes.clone(),
    })
}

/// Whether the certificate `cert_pem` carries a valid signature of the CA `ca_pem`'s key:
/// `join` asks it of the certificate an API server presented when TLS verification against
/// the discovered CA failed, to tell "another CA" from "right CA, wrong name".
///
/// # Errors
/// [`PkiError::ParseCert`] when either does not parse.
pub fn is_signed_by(cert_pem: &str, ca_pem: &str) -> Result<bool, PkiError> {
    let cert = parse_cert(cert_pem, "certificate")?;
    let ca = parse_cert(ca_pem, "CA certificate")?;
    Ok(signed_by(&cert.der, &ca.der))
}

/// Whether `cert_der` carries a valid signature of `ca_der`'s key.
fn signed_by(cert_der: &[u8], ca_der: &[u8]) -> bool {
    let (Ok((_, cert)), Ok((_, ca))) = (
        X509Certificate::from_der(cert_der),
        X509Certificate::from_der(ca_der),
    ) else {
        return false;
    };
    cert.verify_signature(Some(ca.public_key())).is_ok()
}

/// kubeadm only warns about the period (CheckCertificatePeriodValidity); a cert that is not
/// valid now would break the cluster, so kubeboot refuses it.
fn check_period(name: &'static str, cert: &ParsedCert, now: SystemTime) -> Result<(), PkiError> {
    let now = OffsetDateTime::from(now);
    let rfc3339 = |t: OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| t.to_string())
    };
    if now < cert.not_before {
        return Err(PkiError::NotYetValid {
            cert: name,
            not_before: rfc3339(cert.not_before),
        });
    }
    if now > cert.not_after {
        return Err(PkiError::Expired {
            cert: name,
            not_after: rfc3339(cert.not_after),
        });
    }
    Ok(())
}

/// Go's x509 hostname matching: case-insensitive, `*.` matches exactly one left label.
fn hostname_matches(pattern: &str, host: &str) -> bool {
    let (pattern, host) = (pattern.to_ascii_lowercase(), host.to_ascii_lowercase());
    if pattern == host {
        return true;
    }
    match (pattern.strip_prefix("*."), host.split_once('.')) {
        (Some(suffix), Some((label, rest))) => !label.is_empty() && rest == suffix,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::certs::cert_spec;
    use crate::certs::tests::inputs;
    use crate::issue::{Issuer, issue};

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn spec(name: &str) -> &'static CertSpec {
        cert_spec(name).expect("known")
    }

    fn ca() -> Issuer {
        issue(spec("ca"), &inputs(), None, now())
            .expect("ca")
            .into()
    }

    #[test]
    fn is_signed_by_tells_the_issuing_ca() {
        let other = ca();
        let ca = ca();
        let leaf = issue(spec("apiserver"), &inputs(), Some(&ca), now()).expect("leaf");
        assert!(is_signed_by(&leaf.cert_pem, &ca.cert_pem).expect("parses"));
        assert!(!is_signed_by(&leaf.cert_pem, &other.cert_pem).expect("parses"));
        assert!(is_signed_by("junk", &ca.cert_pem).is_err());
    }

    #[test]
    fn nothing_there_is_create() {
        let d = decide(spec("apiserver"), &inputs(), None, None, None, now()).expect("ok");
        assert_eq!(d, Decision::Create);
    }

    #[test]
    fn fitting_leaf_and_user_ca_are_reused() {
        let ca = ca();
        let d = decide(
            spec("ca"),
            &inputs(),
            Some(&ca.cert_pem),
            Some(&ca.key_pem),
            None,
            now(),
        );
        assert_eq!(d.expect("ok"), Decision::Reuse);
        let leaf = issue(spec("apiserver"), &inputs(), Some(&ca), now()).expect("leaf");
        let later = now() + Duration::from_secs(86_400);
        let d = decide(
            spec("apiserver"),
            &inputs(),
            Some(&leaf.cert_pem),
            Some(&leaf.key_pem),
            Some(&ca.cert_pem),
            later,
        );
        assert_eq!(d.expect("ok"), Decision::Reuse);
    }

    #[test]
    fn missing_ip_san_names_ip_and_what_it_has() {
        let ca = ca();
        let leaf = issue(spec("apiserver"), &inputs(), Some(&ca), now()).expect("leaf");
        let mut moved = inputs();
        moved.advertise_address = "10.0.0.2".parse().expect("ip");
        let err = decide(
            spec("apiserver"),
            &moved,
            Some(&leaf.cert_pem),
            Some(&leaf.key_pem),
            Some(&ca.cert_pem),
            now(),
        )
        .expect_err("missing SAN");
        assert_eq!(
            err.to_string(),
            "existing certificate \"apiserver\" is not valid for IP 10.0.0.2 (it has 10.96.0.1, \
             10.0.0.1); delete it or run \"kubeboot reset\""
        );
    }

    #[test]
    fn missing_dns_san_is_refused() {
        let ca = ca();
        let leaf = issue(spec("etcd-server"), &inputs(), Some(&ca), now()).expect("leaf");
        let mut i = inputs();
        i.etcd_server_sans = vec!["etcd.example.com".into()];
        let err = decide(
            spec("etcd-server"),
            &i,
            Some(&leaf.cert_pem),
            Some(&leaf.key_pem),
            Some(&ca.cert_pem),
            now(),
        )
        .expect_err("missing SAN");
        assert!(
            matches!(err, PkiError::MissingSan { kind: SanKind::Dns, ref value, .. } if value == "etcd.example.com")
        );
    }

    #[test]
    fn wildcard_san_covers_a_name() {
        assert!(hostname_matches("*.example.com", "api.example.com"));
        assert!(!hostname_matches("*.example.com", "a.b.example.com"));
        assert!(hostname_matches("Node1", "node1"));
    }

    #[test]
    fn other_ca_is_refused() {
        let (ca, other) = (ca(), ca());
        let leaf = issue(spec("apiserver"), &inputs(), Some(&other), now()).expect("leaf");
        let err = decide(
            spec("apiserver"),
            &inputs(),
            Some(&leaf.cert_pem),
            Some(&leaf.key_pem),
            Some(&ca.cert_pem),
            now(),
        )
        .expect_err("other CA");
        assert!(
            matches!(
                err,
                PkiError::WrongCa {
                    cert: "apiserver",
                    ca: "ca",
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("not signed by the \"ca\" CA (issuer \"CN=kubernetes\")"),
            "{err}"
        );
    }

    #[test]
    fn expired_and_not_yet_valid_are_refused() {
        let ca = ca();
        let leaf = issue(spec("front-proxy-client"), &inputs(), Some(&ca), now()).expect("leaf");
        let at = |t: SystemTime| {
            decide(
                spec("front-proxy-client"),
                &inputs(),
                Some(&leaf.cert_pem),
                Some(&leaf.key_pem),
                Some(&ca.cert_pem),
                t,
            )
        };
        let err = at(now() + Duration::from_secs(400 * 86_400)).expect_err("expired");
        assert!(matches!(err, PkiError::Expired { .. }), "{err}");
        assert!(
            err.to_string().contains("expired at 2024-11-13T22:13:20Z"),
            "{err}"
        );
        let err = at(now() - Duration::from_secs(60)).expect_err("not yet valid");
        assert!(matches!(err, PkiError::NotYetValid { .. }), "{err}");
    }

    #[test]
    fn key_of_another_cert_is_refused() {
        let ca = ca();
        let a = issue(
            spec("apiserver-kubelet-client"),
            &inputs(),
            Some(&ca),
            now(),
        )
        .expect("a");
        let b = issue(
            spec("apiserver-kubelet-client"),
            &inputs(),
            Some(&ca),
            now(),
        )
        .expect("b");
        let err = decide(
            spec("apiserver-kubelet-client"),
            &inputs(),
            Some(&a.cert_pem),
            Some(&b.key_pem),
            Some(&ca.cert_pem),
            now(),
        )
        .expect_err("mismatch");
        assert!(matches!(err, PkiError::KeyMismatch { .. }), "{err}");
    }

    #[test]
    fn half_present_pairs_are_refused() {
        let ca = ca();
        let e = decide(spec("ca"), &inputs(), Some(&ca.cert_pem), None, None, now())
            .expect_err("no key");
        assert!(
            e.to_string().contains("external CA mode is not supported"),
            "{e}"
        );
        let e = decide(
            spec("apiserver"),
            &inputs(),
            Some(&ca.cert_pem),
            None,
            None,
            now(),
        )
        .expect_err("no key");
        assert!(matches!(e, PkiError::CertWithoutKey { .. }));
        let e = decide(
            spec("apiserver"),
            &inputs(),
            None,
            Some(&ca.key_pem),
            None,
            now(),
        )
        .expect_err("no cert");
        assert!(matches!(e, PkiError::KeyWithoutCert { .. }));
    }

    #[test]
    fn leaf_in_place_of_a_ca_is_refused() {
        let ca = ca();
        let leaf = issue(spec("apiserver"), &inputs(), Some(&ca), now()).expect("leaf");
        let e = decide(
            spec("ca"),
            &inputs(),
            Some(&leaf.cert_pem),
            Some(&leaf.key_pem),
            None,
            now(),
        )
        .expect_err("not a CA");
        assert!(matches!(e, PkiError::NotCa { .. }));
    }

    #[test]
    fn sa_decisions() {
        let pair = crate::sa_key_pair(components::config::KeyAlgorithm::EcdsaP256).expect("sa");
        let other = crate::sa_key_pair(components::config::KeyAlgorithm::EcdsaP256).expect("sa");
        assert_eq!(decide_sa(None, None).expect("ok"), Decision::Create);
        assert_eq!(
            decide_sa(Some(&pair.private_pem), None).expect("ok"),
            Decision::Reuse
        );
        assert_eq!(
            decide_sa(Some(&pair.private_pem), Some(&pair.public_pem)).expect("ok"),
            Decision::Reuse
        );
        assert!(matches!(
            decide_sa(Some(&pair.private_pem), Some(&other.public_pem)),
            Err(PkiError::SaMismatch)
        ));
        assert!(matches!(
            decide_sa(None, Some(&pair.public_pem)),
            Err(PkiError::SaPublicWithoutKey)
        ));
    }
}
