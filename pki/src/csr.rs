//! Certificate signing requests a node sends to the cluster (kubelet TLS bootstrap, its
//! kube-proxy's client certificate): PEM `CERTIFICATE REQUEST` for a key, a common name and
//! organizations, as client-go's `certutil.MakeCSR` builds them (no SANs, no extensions).

use crate::error::PkiError;
use crate::key::PrivateKey;

/// A PEM certificate request for `key` with subject `CN=<common_name>, O=<organizations>`.
///
/// # Errors
/// [`PkiError::Sign`] when the subject cannot be encoded or the request cannot be signed.
pub fn client_csr(
    key: &PrivateKey,
    common_name: &str,
    organizations: &[&str],
) -> Result<String, PkiError> {
    let fail = |reason: String| PkiError::Sign {
        cert: format!("certificate request for {common_name:?}"),
        reason,
    };
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name =
        crate::issue::subject(common_name, organizations).map_err(|e| fail(e.to_string()))?;
    let request = params
        .serialize_request(key.key_pair())
        .map_err(|e| fail(e.to_string()))?;
    request.pem().map_err(|e| fail(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use components::config::KeyAlgorithm;
    use x509_parser::prelude::*;

    #[test]
    fn the_request_names_the_node_and_is_signed_by_its_key() {
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let pem = client_csr(&key, "system:node:node4", &["system:nodes"]).unwrap();
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        assert_eq!(block.label, "CERTIFICATE REQUEST");
        let (_, csr) = X509CertificationRequest::from_der(&block.contents).unwrap();
        csr.verify_signature().expect("self-signed by the key");
        let subject = csr.certification_request_info.subject.to_string();
        assert_eq!(subject, "O=system:nodes, CN=system:node:node4");
        let public = key.public_key_pem();
        let (_, pub_block) = x509_parser::pem::parse_x509_pem(public.as_bytes()).unwrap();
        assert_eq!(
            csr.certification_request_info.subject_pki.raw,
            pub_block.contents.as_slice()
        );
    }
}
