//! Private keys: generate ECDSA P-256 or RSA, write them as kubeadm does, read any of
//! SEC1, PKCS#1 and PKCS#8; plus the service account key pair (`sa.key`/`sa.pub`).

use components::config::KeyAlgorithm;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rsa::traits::PublicKeyParts;

use crate::PkiError;
use crate::der;

/// PEM label of a SEC1 EC key (client-go keyutil: ECPrivateKeyBlockType).
pub const PEM_EC_PRIVATE_KEY: &str = "EC PRIVATE KEY";
/// PEM label of a PKCS#1 RSA key (client-go keyutil: RSAPrivateKeyBlockType).
pub const PEM_RSA_PRIVATE_KEY: &str = "RSA PRIVATE KEY";
/// PEM label of a PKCS#8 key (client-go keyutil: PrivateKeyBlockType).
pub const PEM_PRIVATE_KEY: &str = "PRIVATE KEY";
/// PEM label of a PKIX public key (client-go keyutil: PublicKeyBlockType).
pub const PEM_PUBLIC_KEY: &str = "PUBLIC KEY";

/// A private key kubeboot can sign with, and its PEM in the format it was read or written.
///
/// New keys are written as kubeadm writes them (client-go `keyutil.MarshalPrivateKeyToPEM`):
/// ECDSA as SEC1 `EC PRIVATE KEY` with the curve named, RSA as PKCS#1 `RSA PRIVATE KEY`.
pub struct PrivateKey {
    pair: rcgen::KeyPair,
    pem: String,
    algorithm: KeyAlgorithm,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("PrivateKey")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl PrivateKey {
    /// Generates a new key (kubeadm: pkiutil.NewPrivateKey).
    ///
    /// # Errors
    /// [`PkiError::KeyGeneration`] if the system's random source or the library fails.
    pub fn generate(algorithm: KeyAlgorithm) -> Result<Self, PkiError> {
        let fail = |reason: String| PkiError::KeyGeneration {
            algorithm: algorithm.as_str(),
            reason,
        };
        match algorithm.rsa_bits() {
            None => {
                let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                    .map_err(|e| fail(e.to_string()))?;
                let sec1 = pkcs8_to_sec1(pair.serialized_der())
                    .ok_or_else(|| fail("unexpected PKCS#8 layout from ring".to_string()))?;
                Ok(Self {
                    pem: der::pem_encode(PEM_EC_PRIVATE_KEY, &sec1),
                    pair,
                    algorithm,
                })
            }
            Some(bits) => {
                let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, bits)
                    .map_err(|e| fail(e.to_string()))?;
                let pkcs1 = key.to_pkcs1_der().map_err(|e| fail(e.to_string()))?;
                let pkcs8 = key.to_pkcs8_der().map_err(|e| fail(e.to_string()))?;
                let pair =
                    rcgen::KeyPair::try_from(pkcs8.as_bytes()).map_err(|e| fail(e.to_string()))?;
                let pem = der::pem_encode(PEM_RSA_PRIVATE_KEY, pkcs1.as_bytes());
                Ok(Self {
                    pair,
                    pem,
                    algorithm,
                })
            }
        }
    }

    /// Reads a key in any format kubeadm reads (client-go keyutil.ParsePrivateKeyPEM): the
    /// first `EC PRIVATE KEY`, `RSA PRIVATE KEY` or `PRIVATE KEY` block; other blocks (such as
    /// `EC PARAMETERS`) are skipped. `what` names the key in errors (`key of "apiserver"`).
    ///
    /// # Errors
    /// [`PkiError::ParseKey`] for bad PEM, no key block, a curve other than P-256 or an RSA
    /// size other than 2048, 3072 or 4096 bits.
    pub fn from_pem(pem: &str, what: &str) -> Result<Self, PkiError> {
        let fail = |reason: String| PkiError::ParseKey {
            what: what.to_string(),
            reason,
        };
        let blocks = der::pem_blocks(pem).map_err(fail)?;
        let (label, der_bytes) = blocks
            .iter()
            .find(|(label, _)| {
                [PEM_EC_PRIVATE_KEY, PEM_RSA_PRIVATE_KEY, PEM_PRIVATE_KEY].contains(&label.as_str())
            })
            .ok_or_else(|| {
                fail("no EC PRIVATE KEY, RSA PRIVATE KEY or PRIVATE KEY block".into())
            })?;
        let (pkcs8, algorithm) = match label.as_str() {
            PEM_EC_PRIVATE_KEY => {
                let pkcs8 = sec1_to_pkcs8(der_bytes).map_err(|r| fail(r.to_string()))?;
                (pkcs8, KeyAlgorithm::EcdsaP256)
            }
            PEM_RSA_PRIVATE_KEY => {
                let key = rsa::RsaPrivateKey::from_pkcs1_der(der_bytes)
                    .map_err(|e| fail(format!("invalid PKCS#1 RSA key: {e}")))?;
                let algorithm = rsa_algorithm(&key).map_err(fail)?;
                let pkcs8 = key.to_pkcs8_der().map_err(|e| fail(e.to_string()))?;
                (pkcs8.as_bytes().to_vec(), algorithm)
            }
            _ => {
                let algorithm = pkcs8_algorithm(der_bytes).map_err(fail)?;
                (der_bytes.clone(), algorithm)
            }
        };
        let pair = rcgen::KeyPair::try_from(pkcs8).map_err(|e| fail(e.to_string()))?;
        Ok(Self {
            pair,
            pem: pem.to_string(),
            algorithm,
        })
    }

    /// The key as PEM: for generated keys kubeadm's format, for read keys the text read.
    pub fn to_pem(&self) -> &str {
        &self.pem
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// The public key as a PKIX `PUBLIC KEY` PEM (kubeadm: pkiutil.EncodePublicKeyPEM).
    pub fn public_key_pem(&self) -> String {
        der::pem_encode(
            PEM_PUBLIC_KEY,
            &rcgen::PublicKeyData::subject_public_key_info(&self.pair),
        )
    }

    /// The raw public key: the contents of the SubjectPublicKeyInfo bit string.
    pub(crate) fn public_key_raw(&self) -> &[u8] {
        self.pair.public_key_raw()
    }

    /// The rcgen signing key.
    pub(crate) fn key_pair(&self) -> &rcgen::KeyPair {
        &self.pair
    }
}

/// A private key and its public key, both PEM (kubeadm writes them to `sa.key`/`sa.pub`).
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPairPem {
    /// The private key, as kubeadm writes it.
    pub private_pem: String,
    /// The PKIX `PUBLIC KEY`.
    pub public_pem: String,
}

impl std::fmt::Debug for KeyPairPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPairPem")
            .field("public_pem", &self.public_pem)
            .finish_non_exhaustive()
    }
}

/// A new service account signing key pair (kubeadm: app/phases/certs/certs.go,
/// CreateServiceAccountKeyAndPublicKeyFiles). kubeadm 1.20 uses RSA unless the
/// `PublicKeysECDSA` feature gate is on; the API server accepts both.
///
/// # Errors
/// [`PkiError::KeyGeneration`].
pub fn sa_key_pair(algorithm: KeyAlgorithm) -> Result<KeyPairPem, PkiError> {
    let key = PrivateKey::generate(algorithm)?;
    Ok(KeyPairPem {
        public_pem: key.public_key_pem(),
        private_pem: key.pem,
    })
}

/// The PKIX public key PEM of a private key PEM, e.g. to restore a missing `sa.pub`.
///
/// # Errors
/// [`PkiError::ParseKey`].
pub fn public_key_pem(private_pem: &str) -> Result<String, PkiError> {
    Ok(PrivateKey::from_pem(private_pem, "service account key \"sa.key\"")?.public_key_pem())
}

/// The raw public key bits of a `PUBLIC KEY` PEM.
pub(crate) fn public_key_raw_from_pem(pem: &str, what: &str) -> Result<Vec<u8>, PkiError> {
    let fail = |reason: String| PkiError::ParsePublicKey {
        what: what.to_string(),
        reason,
    };
    let blocks = der::pem_blocks(pem).map_err(fail)?;
    let (_, spki) = blocks
        .iter()
        .find(|(label, _)| label == PEM_PUBLIC_KEY)
        .ok_or_else(|| fail("no PUBLIC KEY block".to_string()))?;
    use x509_parser::prelude::FromDer;
    let (_, info) =
        x509_parser::x509::SubjectPublicKeyInfo::from_der(spki).map_err(|e| fail(e.to_string()))?;
    Ok(info.subject_public_key.data.to_vec())
}

fn rsa_algorithm(key: &rsa::RsaPrivateKey) -> Result<KeyAlgorithm, String> {
    match key.size() * 8 {
        2048 => Ok(KeyAlgorithm::Rsa2048),
        3072 => Ok(KeyAlgorithm::Rsa3072),
        4096 => Ok(KeyAlgorithm::Rsa4096),
        bits => Err(format!(
            "RSA keys of {bits} bits are not supported; use 2048, 3072 or 4096"
        )),
    }
}

/// The algorithm of a PKCS#8 `PrivateKeyInfo`.
fn pkcs8_algorithm(pkcs8: &[u8]) -> Result<KeyAlgorithm, String> {
    let bad = || "invalid PKCS#8 structure".to_string();
    let (outer, _) = der::read(pkcs8).ok_or_else(bad)?;
    let fields = der::children(outer.content).ok_or_else(bad)?;
    let alg = fields.get(1).ok_or_else(bad)?;
    let alg_fields = der::children(alg.content).ok_or_else(bad)?;
    let oid = alg_fields.first().ok_or_else(bad)?.raw;
    if oid == der::OID_EC_PUBLIC_KEY {
        if alg_fields.get(1).map(|t| t.raw) != Some(der::OID_P256) {
            return Err("only the P-256 curve is supported for EC keys".to_string());
        }
        Ok(KeyAlgorithm::EcdsaP256)
    } else {
        let key = rsa::RsaPrivateKey::from_pkcs8_der(pkcs8)
            .map_err(|_| "not an ECDSA P-256 or RSA key".to_string())?;
        rsa_algorithm(&key)
    }
}

/// ring's PKCS#8 (EC key without the curve in the inner ECPrivateKey) -> SEC1 with the
/// curve named, as Go's x509.MarshalECPrivateKey writes it (Go's ParseECPrivateKey needs
/// the curve).
fn pkcs8_to_sec1(pkcs8: &[u8]) -> Option<Vec<u8>> {
    let (outer, _) = der::read(pkcs8)?;
    let fields = der::children(outer.content)?;
    let inner = fields.get(2).filter(|t| t.tag == der::OCTET_STRING)?;
    let (ec, _) = der::read(inner.content)?;
    let parts = der::children(ec.content)?;
    let mut content = Vec::new();
    for part in parts.iter().filter(|p| p.tag != der::CONTEXT_0) {
        content.extend_from_slice(part.raw);
        if part.tag == der::OCTET_STRING {
            content.extend(der::write(der::CONTEXT_0, der::OID_P256));
        }
    }
    Some(der::write(der::SEQUENCE, &content))
}

/// SEC1 `ECPrivateKey` -> PKCS#8 for ring; requires P-256 and the public key (which Go and
/// OpenSSL always write).
fn sec1_to_pkcs8(sec1: &[u8]) -> Result<Vec<u8>, &'static str> {
    let (ec, _) = der::read(sec1).ok_or("invalid SEC1 EC key")?;
    let parts = der::children(ec.content).ok_or("invalid SEC1 EC key")?;
    if let Some(params) = parts.iter().find(|p| p.tag == der::CONTEXT_0)
        && params.content != der::OID_P256
    {
        return Err("only the P-256 curve is supported for EC keys");
    }
    if !parts.iter().any(|p| p.tag == 0xa1) {
        return Err("the EC key does not contain its public key");
    }
    let mut inner = Vec::new();
    for part in parts.iter().filter(|p| p.tag != der::CONTEXT_0) {
        inner.extend_from_slice(part.raw);
    }
    let inner = der::write(der::SEQUENCE, &inner);
    let mut alg = der::OID_EC_PUBLIC_KEY.to_vec();
    alg.extend_from_slice(der::OID_P256);
    let mut content = der::write(der::INTEGER, &[0]);
    content.extend(der::write(der::SEQUENCE, &alg));
    content.extend(der::write(der::OCTET_STRING, &inner));
    Ok(der::write(der::SEQUENCE, &content))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made with `openssl ecparam -name prime256v1 -genkey` (SEC1 with an EC PARAMETERS block
    /// first, as OpenSSL writes it). A test fixture, never used for anything else.
    const OPENSSL_EC_KEY: &str = "-----BEGIN EC PARAMETERS-----
BggqhkjOPQMBBw==
-----END EC PARAMETERS-----
-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIPfQiU0+RS2HBP81LCW/m3dRhtVkVOCyCZV+X8ovRQYVoAoGCCqGSM49
AwEHoUQDQgAE7zVXkGYiGkIKqSVBTT+qXK1KAq2At3yh0O2WiO3BY5fFBWFzu66T
ncDVa0gEHQyM4I+3gmcka8fVLEILnCNp2w==
-----END EC PRIVATE KEY-----
";

    #[test]
    fn ecdsa_key_is_sec1_with_named_curve() {
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).expect("generates");
        assert!(key.to_pem().starts_with("-----BEGIN EC PRIVATE KEY-----\n"));
        let blocks = der::pem_blocks(key.to_pem()).expect("pem");
        let (ec, _) = der::read(&blocks[0].1).expect("der");
        let parts = der::children(ec.content).expect("children");
        let tags: Vec<u8> = parts.iter().map(|p| p.tag).collect();
        assert_eq!(tags, [der::INTEGER, der::OCTET_STRING, 0xa0, 0xa1]);
        assert_eq!(parts[2].content, der::OID_P256);
        let again = PrivateKey::from_pem(key.to_pem(), "key").expect("reads back");
        assert_eq!(again.public_key_raw(), key.public_key_raw());
        assert_eq!(again.algorithm(), KeyAlgorithm::EcdsaP256);
    }

    #[test]
    fn openssl_ec_key_with_parameters_block_parses() {
        let key = PrivateKey::from_pem(OPENSSL_EC_KEY, "key").expect("parses");
        assert_eq!(key.algorithm(), KeyAlgorithm::EcdsaP256);
        assert_eq!(key.public_key_raw().len(), 65);
    }

    #[test]
    fn pkcs8_ec_key_parses() {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("gen");
        let key = PrivateKey::from_pem(&pair.serialize_pem(), "key").expect("parses");
        assert_eq!(key.public_key_raw(), pair.public_key_raw());
    }

    #[test]
    fn rsa_key_is_pkcs1_and_reads_back_in_both_formats() {
        let key = PrivateKey::generate(KeyAlgorithm::Rsa2048).expect("generates");
        assert!(
            key.to_pem()
                .starts_with("-----BEGIN RSA PRIVATE KEY-----\n")
        );
        let again = PrivateKey::from_pem(key.to_pem(), "key").expect("reads back");
        assert_eq!(again.algorithm(), KeyAlgorithm::Rsa2048);
        assert_eq!(again.public_key_raw(), key.public_key_raw());
        let pkcs8 = der::pem_encode(PEM_PRIVATE_KEY, key.key_pair().serialized_der());
        let from8 = PrivateKey::from_pem(&pkcs8, "key").expect("pkcs8 reads");
        assert_eq!(from8.algorithm(), KeyAlgorithm::Rsa2048);
    }

    #[test]
    fn garbage_key_names_the_key() {
        let err = PrivateKey::from_pem("hello", "key of \"apiserver\"").expect_err("fails");
        let msg = err.to_string();
        assert!(msg.contains("key of \"apiserver\""), "{msg}");
        assert!(msg.contains("kubeboot reset"), "{msg}");
    }

    #[test]
    fn sa_key_pair_public_matches_private() {
        let pair = sa_key_pair(KeyAlgorithm::EcdsaP256).expect("generates");
        assert!(pair.public_pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert_eq!(
            public_key_pem(&pair.private_pem).expect("derives"),
            pair.public_pem
        );
    }
}
