//! CA public key pins for `--discovery-token-ca-cert-hash` (kubeadm: app/util/pubkeypin).

use sha2::{Digest, Sha256};

use crate::PkiError;
use crate::verify::parse_cert;

/// The only pin format kubeadm supports (pubkeypin: formatSHA256).
pub const PIN_PREFIX: &str = "sha256:";

/// `sha256:<hex>` over the DER SubjectPublicKeyInfo of the certificate (kubeadm:
/// pubkeypin.Hash), as `kubeadm init` prints for `--discovery-token-ca-cert-hash`.
///
/// # Errors
/// [`PkiError::ParseCert`].
pub fn ca_cert_hash(cert_pem: &str) -> Result<String, PkiError> {
    let cert = parse_cert(cert_pem, "CA certificate")?;
    Ok(format!(
        "{PIN_PREFIX}{}",
        hex::encode(Sha256::digest(&cert.spki_der))
    ))
}

/// The SHA-256 of `bytes`, lower-case hex (names derived from content, such as a
/// certificate request's).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A parsed `sha256:<64 hex digits>` pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaPin {
    digest: [u8; 32],
}

impl CaPin {
    /// Parses a pin (kubeadm: pubkeypin.Set.Allow); hex is accepted in either case.
    ///
    /// # Errors
    /// [`PkiError::InvalidPin`] naming what is wrong.
    pub fn parse(value: &str) -> Result<Self, PkiError> {
        let fail = |reason| PkiError::InvalidPin {
            value: value.to_string(),
            reason,
        };
        let Some((kind, hex_digest)) = value.split_once(':') else {
            return Err(fail("missing \"sha256:\" prefix"));
        };
        if kind != "sha256" {
            return Err(fail("unsupported hash type, only sha256 is supported"));
        }
        if hex_digest.len() != 64 {
            return Err(fail("a SHA-256 hash has 64 hex digits"));
        }
        let bytes = hex::decode(hex_digest).map_err(|_| fail("not hexadecimal"))?;
        let digest =
            <[u8; 32]>::try_from(bytes).map_err(|_| fail("a SHA-256 hash has 32 bytes"))?;
        Ok(Self { digest })
    }

    /// Whether `cert_pem`'s public key is the pinned one (kubeadm: pubkeypin.Set.CheckAny).
    ///
    /// # Errors
    /// [`PkiError::ParseCert`].
    pub fn matches(&self, cert_pem: &str) -> Result<bool, PkiError> {
        let cert = parse_cert(cert_pem, "CA certificate")?;
        Ok(Sha256::digest(&cert.spki_der).as_slice() == self.digest)
    }
}

impl std::fmt::Display for CaPin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{PIN_PREFIX}{}", hex::encode(self.digest))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::certs::{cert_spec, tests::inputs};
    use crate::issue::issue;

    #[test]
    fn hash_round_trips_through_parse() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let ca = issue(cert_spec("ca").expect("ca"), &inputs(), None, now).expect("ca");
        let other = issue(cert_spec("ca").expect("ca"), &inputs(), None, now).expect("ca");
        let hash = ca_cert_hash(&ca.cert_pem).expect("hash");
        assert!(
            hash.starts_with("sha256:") && hash.len() == 7 + 64,
            "{hash}"
        );
        let pin =
            CaPin::parse(&hash.to_uppercase().replacen("SHA256", "sha256", 1)).expect("parses");
        assert_eq!(pin.to_string(), hash);
        assert!(pin.matches(&ca.cert_pem).expect("ok"));
        assert!(!pin.matches(&other.cert_pem).expect("ok"));
    }

    #[test]
    fn bad_pins_say_why() {
        let e = CaPin::parse("abc").expect_err("bad");
        assert!(e.to_string().contains("missing \"sha256:\" prefix"), "{e}");
        let e = CaPin::parse("md5:00").expect_err("bad");
        assert!(e.to_string().contains("only sha256"), "{e}");
        assert!(CaPin::parse("sha256:zz").is_err());
    }
}
