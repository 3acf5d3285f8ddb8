//! `certs renew`: a new certificate with the subject, SANs and extended key usages of the
//! existing one, signed by the same CA, with a new key (kubeadm: app/phases/certs/renewal/
//! manager.go certToConfig and filerenewer.go, which call pkiutil.NewCertAndKey: kubeadm
//! 1.20 generates a new private key on every renewal, and so does kubeboot); and the same
//! client certificate fields for `kubeconfig user`.

use std::time::{Duration, SystemTime};

use components::config::KeyAlgorithm;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::certs::{AltNames, ExtKeyUsage, KeyUsage};
use crate::issue::{Issued, Issuer, Template, sign};
use crate::key::PrivateKey;
use crate::{PkiError, verify};

const LEAF_USAGES: &[KeyUsage] = &[KeyUsage::DigitalSignature, KeyUsage::KeyEncipherment];

/// Re-issues the certificate `existing_pem` (kubeadm's name `name`, for errors) from `ca`:
/// same CN, organizations, DNS and IP SANs and extended key usages, a new key of
/// `algorithm`, valid from the CA's NotBefore until `now + validity`.
///
/// # Errors
/// [`PkiError::ParseCert`] for an unreadable certificate, [`PkiError::WrongCa`] when `ca`
/// did not sign it (renewing it from another CA would change who trusts it), and signing
/// errors.
pub fn renew(
    existing_pem: &str,
    name: &'static str,
    ca: &Issuer,
    ca_name: &'static str,
    algorithm: KeyAlgorithm,
    validity: Duration,
    now: SystemTime,
) -> Result<Issued, PkiError> {
    let what = format!("certificate {name:?}");
    let parsed = verify::parse_cert(existing_pem, &what)?;
    if !verify::is_signed_by(existing_pem, &ca.cert_pem)? {
        return Err(PkiError::WrongCa {
            cert: name,
            ca: ca_name,
            issuer: parsed.issuer.clone(),
        });
    }
    let (_, x) = X509Certificate::from_der(&parsed.der).map_err(|e| PkiError::ParseCert {
        what: what.clone(),
        reason: e.to_string(),
    })?;
    let organizations: Vec<String> = x
        .subject()
        .iter_organization()
        .filter_map(|a| a.as_str().ok().map(str::to_string))
        .collect();
    let mut ext_key_usages = Vec::new();
    if let Ok(Some(eku)) = x.extended_key_usage() {
        if eku.value.server_auth {
            ext_key_usages.push(ExtKeyUsage::ServerAuth);
        }
        if eku.value.client_auth {
            ext_key_usages.push(ExtKeyUsage::ClientAuth);
        }
    }
    client_or_server(
        name,
        &parsed.common_name,
        &organizations,
        AltNames {
            dns_names: parsed.dns_names.clone(),
            ips: parsed.ips.clone(),
        },
        &ext_key_usages,
        ca,
        algorithm,
        validity,
        now,
    )
}

/// A leaf certificate with exactly these fields and a new key, signed by `ca` (the cluster
/// CA for `kubeconfig user`).
///
/// # Errors
/// [`PkiError::Sign`] for more than one organization (not supported yet) and signing
/// errors.
#[allow(clippy::too_many_arguments)]
pub fn client_or_server(
    name: &str,
    common_name: &str,
    organizations: &[String],
    alt_names: AltNames,
    ext_key_usages: &[ExtKeyUsage],
    ca: &Issuer,
    algorithm: KeyAlgorithm,
    validity: Duration,
    now: SystemTime,
) -> Result<Issued, PkiError> {
    if organizations.len() > 1 {
        // rcgen's DistinguishedName holds one value per attribute type.
        return Err(PkiError::Sign {
            cert: name.to_string(),
            reason: format!(
                "it has {} organizations ({}); kubeboot can issue at most one yet, give one --org",
                organizations.len(),
                organizations.join(", ")
            ),
        });
    }
    let orgs: Vec<&str> = organizations.iter().map(String::as_str).collect();
    let template = Template {
        name,
        common_name,
        organizations: &orgs,
        alt_names,
        key_usages: LEAF_USAGES,
        ext_key_usages,
        is_ca: false,
        validity,
    };
    let key = PrivateKey::generate(algorithm)?;
    let cert_pem = sign(&template, &key, Some((ca, "ca")), now)?;
    Ok(Issued {
        cert_pem,
        key_pem: key.to_pem().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::{cert_spec, tests::inputs};
    use crate::issue::issue;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    #[test]
    fn renewal_keeps_subject_sans_and_usages_with_a_new_key() {
        let mut i = inputs();
        i.apiserver_cert_sans = vec!["10.0.0.9".into(), "extra.example.com".into()];
        let ca: Issuer = issue(cert_spec("ca").expect("ca"), &i, None, now())
            .expect("ca")
            .into();
        for name in ["apiserver", "apiserver-kubelet-client"] {
            let spec = cert_spec(name).expect("spec");
            let old = issue(spec, &i, Some(&ca), now()).expect("old");
            let later = now() + Duration::from_secs(3600);
            let new = renew(
                &old.cert_pem,
                spec.name,
                &ca,
                "ca",
                KeyAlgorithm::EcdsaP256,
                Duration::from_secs(600),
                later,
            )
            .expect("renews");
            let (o, n) = (
                verify::parse_cert(&old.cert_pem, "o").expect("o"),
                verify::parse_cert(&new.cert_pem, "n").expect("n"),
            );
            assert_eq!(n.common_name, o.common_name, "{name}");
            assert_eq!(n.dns_names, o.dns_names, "{name}");
            assert_eq!(n.ips, o.ips, "{name}");
            assert_eq!(n.issuer, o.issuer, "{name}");
            assert_ne!(n.public_key_raw, o.public_key_raw, "{name}: a new key");
            assert_ne!(n.der, o.der);
            assert_eq!(
                (n.not_after - time::OffsetDateTime::from(later)).whole_seconds(),
                600
            );
            assert!(verify::is_signed_by(&new.cert_pem, &ca.cert_pem).expect("parses"));
            let key = PrivateKey::from_pem(&new.key_pem, "k").expect("key");
            assert_eq!(key.public_key_raw(), n.public_key_raw.as_slice());
            let x = |pem: &str| {
                let d = crate::der::pem_blocks(pem).expect("pem").remove(0).1;
                let (_, c) = X509Certificate::from_der(&d).expect("x509").to_owned();
                let orgs: Vec<String> = c
                    .subject()
                    .iter_organization()
                    .map(|a| a.as_str().expect("str").to_string())
                    .collect();
                let eku = c
                    .extended_key_usage()
                    .expect("eku")
                    .expect("present")
                    .value
                    .clone();
                (orgs, eku.server_auth, eku.client_auth)
            };
            assert_eq!(x(&new.cert_pem), x(&old.cert_pem), "{name}");
        }
    }

    #[test]
    fn renewal_refuses_a_certificate_of_another_ca() {
        let i = inputs();
        let ca: Issuer = issue(cert_spec("ca").expect("ca"), &i, None, now())
            .expect("ca")
            .into();
        let other: Issuer = issue(cert_spec("ca").expect("ca"), &i, None, now())
            .expect("ca")
            .into();
        let old = issue(cert_spec("apiserver").expect("s"), &i, Some(&other), now()).expect("old");
        let err = renew(
            &old.cert_pem,
            "apiserver",
            &ca,
            "ca",
            KeyAlgorithm::EcdsaP256,
            Duration::from_secs(600),
            now(),
        )
        .expect_err("another CA");
        assert!(err.to_string().contains("\"apiserver\""), "{err}");
    }
}
