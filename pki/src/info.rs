//! What `certs check-expiration` shows about a certificate.

use std::net::IpAddr;
use std::time::SystemTime;

use crate::PkiError;
use crate::verify::parse_cert;

/// The facts of a certificate for expiry reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// NotAfter.
    pub not_after: SystemTime,
    /// NotBefore.
    pub not_before: SystemTime,
    /// Whether it is a CA.
    pub is_ca: bool,
    /// The subject CN.
    pub common_name: String,
    /// DNS name SANs.
    pub dns_names: Vec<String>,
    /// IP SANs.
    pub ips: Vec<IpAddr>,
}

/// Reads a certificate's expiry facts.
///
/// # Errors
/// [`PkiError::ParseCert`].
pub fn cert_info(cert_pem: &str) -> Result<CertInfo, PkiError> {
    let c = parse_cert(cert_pem, "certificate")?;
    Ok(CertInfo {
        not_after: c.not_after.into(),
        not_before: c.not_before.into(),
        is_ca: c.is_ca,
        common_name: c.common_name,
        dns_names: c.dns_names,
        ips: c.ips,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::certs::{cert_spec, tests::inputs};
    use crate::issue::issue;

    #[test]
    fn reports_expiry_and_names() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let ca = issue(cert_spec("ca").expect("ca"), &inputs(), None, now).expect("ca");
        let info = cert_info(&ca.cert_pem).expect("info");
        assert!(info.is_ca);
        assert_eq!(info.common_name, "kubernetes");
        assert_eq!(info.not_after, now + Duration::from_secs(3650 * 86_400));
        let leaf = issue(
            cert_spec("apiserver").expect("s"),
            &inputs(),
            Some(&ca.into()),
            now,
        )
        .expect("leaf");
        let info = cert_info(&leaf.cert_pem).expect("info");
        assert!(!info.is_ca);
        assert!(info.dns_names.contains(&"kubernetes.default".to_string()));
        assert_eq!(info.not_after, now + Duration::from_secs(365 * 86_400));
    }
}
