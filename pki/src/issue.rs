//! Issuing certificates: self-signed CAs and CA-signed leaves, with kubeadm's fields
//! (kubeadm: app/util/pkiutil/pki_helpers.go; client-go util/cert/cert.go).

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue, IsCa, KeyIdMethod,
    SanType, SerialNumber,
};
use time::OffsetDateTime;

use crate::certs::{AltNames, CertInputs, CertSpec, ExtKeyUsage, KeyUsage, alt_names};
use crate::key::PrivateKey;
use crate::{PkiError, der, verify};

/// A CA that signs certificates: its certificate and key, PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct Issuer {
    /// The CA certificate.
    pub cert_pem: String,
    /// The CA private key.
    pub key_pem: String,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// A new certificate and its new private key, PEM, ready to be written as `<base>.crt`
/// (0644) and `<base>.key` (0600).
#[derive(Clone, PartialEq, Eq)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// The private key, in the format kubeadm writes (see [`PrivateKey`]).
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

impl From<Issued> for Issuer {
    fn from(issued: Issued) -> Self {
        Issuer {
            cert_pem: issued.cert_pem,
            key_pem: issued.key_pem,
        }
    }
}

/// Issues the certificate `spec` for `inputs` with a new key of `inputs.algorithm`.
///
/// A CA spec is self-signed and valid from `now` for `inputs.validity.ca` (client-go
/// cert.NewSelfSignedCACert: 10 years). A leaf is signed by `issuer`, valid from the CA's
/// NotBefore (as kubeadm's pkiutil.NewSignedCert) until `now` + `inputs.validity.leaf`.
///
/// # Errors
/// [`PkiError::MissingIssuer`] / [`PkiError::UnexpectedIssuer`] when `issuer` does not fit
/// the spec, SAN errors from [`alt_names`], CA parse errors, and
/// [`PkiError::KeyGeneration`] / [`PkiError::Sign`].
pub fn issue(
    spec: &CertSpec,
    inputs: &CertInputs,
    issuer: Option<&Issuer>,
    now: SystemTime,
) -> Result<Issued, PkiError> {
    match (spec.ca, issuer) {
        (Some(ca), None) => {
            return Err(PkiError::MissingIssuer {
                cert: spec.name,
                ca,
            });
        }
        (None, Some(_)) => return Err(PkiError::UnexpectedIssuer { cert: spec.name }),
        _ => {}
    }
    let template = Template {
        name: spec.name,
        common_name: spec.common_name(inputs),
        organizations: spec.organizations,
        alt_names: alt_names(spec, inputs)?,
        key_usages: spec.key_usages,
        ext_key_usages: spec.ext_key_usages,
        is_ca: spec.is_ca(),
        validity: inputs.validity.for_spec(spec),
    };
    let key = PrivateKey::generate(inputs.algorithm)?;
    let ca_name = spec.ca.unwrap_or(spec.name);
    let cert_pem = sign(&template, &key, issuer.map(|i| (i, ca_name)), now)?;
    Ok(Issued {
        cert_pem,
        key_pem: key.to_pem().to_string(),
    })
}

/// What a certificate says, independent of where the values come from (a [`CertSpec`] or a
/// kubeconfig's client certificate).
pub(crate) struct Template<'a> {
    /// kubeadm's name of the certificate, for errors.
    pub name: &'a str,
    pub common_name: &'a str,
    pub organizations: &'a [&'a str],
    pub alt_names: AltNames,
    pub key_usages: &'a [KeyUsage],
    pub ext_key_usages: &'a [ExtKeyUsage],
    pub is_ca: bool,
    /// From issuance (`now`), not from NotBefore.
    pub validity: Duration,
}

/// Signs `template` for `key`, self-signed when `issuer` is `None`; returns the cert PEM.
/// `issuer` carries the CA and its kubeadm name.
pub(crate) fn sign(
    template: &Template<'_>,
    key: &PrivateKey,
    issuer: Option<(&Issuer, &str)>,
    now: SystemTime,
) -> Result<String, PkiError> {
    let fail = |reason: String| PkiError::Sign {
        cert: template.name.to_string(),
        reason,
    };
    let now = OffsetDateTime::from(now);
    let mut params = CertificateParams::default();
    params.distinguished_name =
        subject(template.common_name, template.organizations).map_err(|e| fail(e.to_string()))?;
    params.serial_number = Some(random_serial());
    params.not_after = now + template.validity;
    params.key_usages = template
        .key_usages
        .iter()
        .map(|u| match u {
            KeyUsage::DigitalSignature => rcgen::KeyUsagePurpose::DigitalSignature,
            KeyUsage::KeyEncipherment => rcgen::KeyUsagePurpose::KeyEncipherment,
            KeyUsage::CertSign => rcgen::KeyUsagePurpose::KeyCertSign,
        })
        .collect();
    params.extended_key_usages = template
        .ext_key_usages
        .iter()
        .map(|u| match u {
            ExtKeyUsage::ServerAuth => rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            ExtKeyUsage::ClientAuth => rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        })
        .collect();
    // Go's x509 writes DNS names before IPs (marshalSANs); so do we.
    for dns in &template.alt_names.dns_names {
        let name = dns
            .clone()
            .try_into()
            .map_err(|e: rcgen::Error| fail(e.to_string()))?;
        params.subject_alt_names.push(SanType::DnsName(name));
    }
    params.subject_alt_names.extend(
        template
            .alt_names
            .ips
            .iter()
            .map(|ip| SanType::IpAddress(*ip)),
    );
    if template.is_ca {
        // client-go cert.NewSelfSignedCACert: CA:TRUE, no path length; Go adds a subject
        // key identifier to CAs.
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_identifier_method = KeyIdMethod::Sha256;
    } else {
        // Go's x509 writes the CA's key identifier into leaves (authorityKeyIdentifier).
        params.is_ca = IsCa::NoCa;
        params.use_authority_key_identifier_extension = true;
    }
    let cert = match issuer {
        None => {
            params.not_before = now;
            params
                .self_signed(key.key_pair())
                .map_err(|e| fail(e.to_string()))?
        }
        Some((issuer, ca_name)) => {
            let ca_cert =
                verify::parse_cert(&issuer.cert_pem, &format!("CA certificate {ca_name:?}"))?;
            let ca_key = PrivateKey::from_pem(&issuer.key_pem, &format!("key of CA {ca_name:?}"))?;
            // kubeadm: pkiutil.NewSignedCert, `NotBefore: caCert.NotBefore`.
            params.not_before = ca_cert.not_before;
            let rc_issuer = rcgen::Issuer::from_ca_cert_pem(&issuer.cert_pem, ca_key.key_pair())
                .map_err(|e| fail(format!("CA {ca_name:?}: {e}")))?;
            params
                .signed_by(key.key_pair(), &rc_issuer)
                .map_err(|e| fail(e.to_string()))?
        }
    };
    Ok(der::pem_encode("CERTIFICATE", cert.der()))
}

/// Subject with O before CN, as Go's pkix.Name.ToRDNSequence orders them, each value a
/// PrintableString when it fits, else UTF8String (Go's asn1 string choice). Chains are built
/// by comparing names byte for byte, so this matters for kubeadm-made certificates.
pub(crate) fn subject(cn: &str, organizations: &[&str]) -> Result<DistinguishedName, rcgen::Error> {
    let value = |s: &str| -> Result<DnValue, rcgen::Error> {
        Ok(if is_printable(s) {
            DnValue::PrintableString(s.try_into()?)
        } else {
            DnValue::Utf8String(s.to_string())
        })
    };
    let mut dn = DistinguishedName::new();
    // rcgen's DistinguishedName holds one value per type; every kubeadm certificate has at
    // most one organization.
    if let Some(org) = organizations.first() {
        dn.push(DnType::OrganizationName, value(org)?);
    }
    dn.push(DnType::CommonName, value(cn)?);
    Ok(dn)
}

/// Go's encoding/asn1 isPrintable (without the parse-only `*` and `&`).
fn is_printable(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b" '()+,-./:=?".contains(&b))
}

/// A positive 63-bit serial (kubeadm: `rand.Int(rand.Reader, MaxInt64)`).
fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 8] = rand::random();
    bytes[0] = (bytes[0] & 0x7f).max(1);
    SerialNumber::from_slice(&bytes)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use components::config::KeyAlgorithm;
    use x509_parser::prelude::{FromDer, X509Certificate};

    use super::*;
    use crate::certs::{CERTS, cert_spec, tests::inputs};

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn der_of(pem: &str) -> Vec<u8> {
        der::pem_blocks(pem).expect("pem").remove(0).1
    }

    /// Issues every spec (CAs first), kubeboot's own after kubeadm's, and checks each field
    /// against the table.
    fn check_all(algorithm: KeyAlgorithm) {
        let mut i = inputs();
        i.algorithm = algorithm;
        i.control_plane_endpoint = Some("lb.example.com:6443".into());
        let mut cas: Vec<(&str, Issuer)> = Vec::new();
        for spec in CERTS
            .iter()
            .chain([&crate::certs::KUBEBOOT_AGENT_WEBHOOK_CERT])
        {
            let issuer = spec
                .ca
                .map(|ca| &cas.iter().find(|(n, _)| *n == ca).expect("CA first").1);
            // Leaves are issued a minute after their CA: NotBefore must still be the CA's.
            let at = if spec.is_ca() {
                now()
            } else {
                now() + Duration::from_secs(60)
            };
            let issued = issue(spec, &i, issuer, at).expect("issues");
            let d = der_of(&issued.cert_pem);
            let (_, c) = X509Certificate::from_der(&d).expect("parses");
            let strs = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue>| -> Vec<String> {
                it.map(|a| a.as_str().expect("string").to_string()).collect()
            };
            assert_eq!(
                strs(&mut c.subject().iter_common_name()),
                [spec.common_name(&i)],
                "{}",
                spec.name
            );
            assert_eq!(
                strs(&mut c.subject().iter_organization()),
                spec.organizations,
                "{}",
                spec.name
            );
            let issuer_cn = spec
                .ca_spec()
                .map_or(spec.common_name(&i), |ca| ca.common_name(&i));
            assert_eq!(
                strs(&mut c.issuer().iter_common_name()),
                [issuer_cn],
                "{}",
                spec.name
            );
            assert_eq!(c.is_ca(), spec.is_ca(), "{}", spec.name);
            let ku = c.key_usage().expect("ku").expect("present");
            assert!(ku.critical);
            assert!(
                ku.value.digital_signature() && ku.value.key_encipherment(),
                "{}",
                spec.name
            );
            assert_eq!(ku.value.key_cert_sign(), spec.is_ca(), "{}", spec.name);
            let eku = c.extended_key_usage().expect("eku");
            match eku {
                None => assert!(spec.ext_key_usages.is_empty(), "{}", spec.name),
                Some(e) => {
                    assert_eq!(
                        e.value.server_auth,
                        spec.ext_key_usages
                            .contains(&crate::ExtKeyUsage::ServerAuth)
                    );
                    assert_eq!(
                        e.value.client_auth,
                        spec.ext_key_usages
                            .contains(&crate::ExtKeyUsage::ClientAuth)
                    );
                }
            }
            let parsed = verify::parse_cert(&issued.cert_pem, "c").expect("parses");
            let want = alt_names(spec, &i).expect("sans");
            assert_eq!(parsed.dns_names, want.dns_names, "{}", spec.name);
            assert_eq!(parsed.ips, want.ips, "{}", spec.name);
            let nb = OffsetDateTime::from(now());
            assert_eq!(parsed.not_before, nb, "{}", spec.name);
            let valid = parsed.not_after - OffsetDateTime::from(at);
            assert_eq!(
                valid.whole_seconds(),
                i.validity.for_spec(spec).as_secs() as i64,
                "{}",
                spec.name
            );
            let key = PrivateKey::from_pem(&issued.key_pem, "k").expect("key parses");
            assert_eq!(key.algorithm(), algorithm);
            assert_eq!(key.public_key_raw(), parsed.public_key_raw.as_slice());
            if let Some(ca) = issuer {
                let ca_der = der_of(&ca.cert_pem);
                let (_, ca_cert) = X509Certificate::from_der(&ca_der).expect("ca");
                c.verify_signature(Some(ca_cert.public_key()))
                    .expect("signed by its CA");
                assert_eq!(
                    c.issuer().as_raw(),
                    ca_cert.subject().as_raw(),
                    "issuer DN bytes"
                );
            } else {
                c.verify_signature(None).expect("self-signed");
            }
            if spec.is_ca() {
                cas.push((spec.name, issued.into()));
            }
        }
    }

    #[test]
    fn every_spec_ecdsa() {
        check_all(KeyAlgorithm::EcdsaP256);
    }

    #[test]
    fn rsa_ca_signs_rsa_leaf() {
        let mut i = inputs();
        i.algorithm = KeyAlgorithm::Rsa2048;
        let ca: Issuer = issue(cert_spec("ca").expect("ca"), &i, None, now())
            .expect("ca")
            .into();
        assert!(ca.key_pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        let leaf = issue(
            cert_spec("apiserver-kubelet-client").expect("s"),
            &i,
            Some(&ca),
            now(),
        )
        .expect("leaf");
        let d = der_of(&leaf.cert_pem);
        let (_, c) = X509Certificate::from_der(&d).expect("parses");
        assert_eq!(
            c.signature_algorithm.algorithm.to_id_string(),
            "1.2.840.113549.1.1.11"
        );
        let ca_der = der_of(&ca.cert_pem);
        let (_, ca_cert) = X509Certificate::from_der(&ca_der).expect("ca");
        c.verify_signature(Some(ca_cert.public_key()))
            .expect("signed");
    }

    #[test]
    fn subject_strings_follow_go() {
        assert!(is_printable("system:masters"));
        assert!(!is_printable("ü"));
        assert!(!is_printable("a*b"));
    }

    #[test]
    fn issuer_must_fit_the_spec() {
        let ca: Issuer = issue(cert_spec("ca").expect("ca"), &inputs(), None, now())
            .expect("ca")
            .into();
        let e =
            issue(cert_spec("apiserver").expect("s"), &inputs(), None, now()).expect_err("no CA");
        assert_eq!(
            e.to_string(),
            "certificate \"apiserver\" must be signed by CA \"ca\", but no CA was given; create the \"ca\" CA first"
        );
        assert!(issue(cert_spec("ca").expect("s"), &inputs(), Some(&ca), now()).is_err());
    }
}
