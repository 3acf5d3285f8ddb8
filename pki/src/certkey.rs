//! The certificate key of `init --upload-certs` and `join --control-plane --certificate-key`:
//! 32 random bytes written as 64 hex digits, and the AES-256-GCM format the `kubeadm-certs`
//! Secret holds its entries in (kubeadm: phases/copycerts/copycerts.go CreateCertificateKey,
//! util/crypto/crypto.go EncryptBytes/DecryptBytes).
//!
//! kubeadm's sealed format, which kubeboot writes and reads byte for byte:
//!
//! ```text
//!   | nonce (12 random bytes) | ciphertext (as long as the plaintext) | GCM tag (16 bytes) |
//! ```
//!
//! (Go's `gcm.Seal(nonce, nonce, data, nil)`: the standard 96-bit nonce and 128-bit tag, no
//! additional data.) The key is a secret: no message or `Debug` output here ever repeats it.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;

use crate::PkiError;

/// The key's size in bytes (kubeadm: constants.CertificateKeySize).
pub const KEY_LEN: usize = 32;
/// The GCM nonce kubeadm puts in front of each entry (Go's `gcm.NonceSize()`).
pub const NONCE_LEN: usize = 12;
/// The GCM tag at the end of each entry (Go's `gcm.Overhead()`).
pub const TAG_LEN: usize = 16;

/// A new random certificate key: 32 bytes from the system's random source as 64 lower-case
/// hex digits (kubeadm: copycerts.CreateCertificateKey).
pub fn generate() -> String {
    let mut key = [0u8; KEY_LEN];
    rand::rngs::OsRng.fill_bytes(&mut key);
    hex::encode(key)
}

/// Parses a certificate key as the user gives it (`--certificate-key`): 64 hex digits,
/// either case (Go's `hex.DecodeString` accepts both).
///
/// kubeadm also takes 32 or 48 digits (AES-128 or AES-192 keys), which it never generates;
/// kubeboot takes only the 32-byte keys that `certs certificate-key` and `init` make.
///
/// # Errors
/// [`PkiError::InvalidCertificateKey`] for a wrong length or a non-hex character; the
/// message never repeats the key.
pub fn parse(value: &str) -> Result<[u8; KEY_LEN], PkiError> {
    let fail = |reason: String| PkiError::InvalidCertificateKey { reason };
    let chars = value.chars().count();
    if chars != 2 * KEY_LEN {
        return Err(fail(format!(
            "it has {chars} characters, not {}",
            2 * KEY_LEN
        )));
    }
    if let Some(pos) = value.chars().position(|c| !c.is_ascii_hexdigit()) {
        return Err(fail(format!(
            "character {} is not a hexadecimal digit",
            pos + 1
        )));
    }
    let mut key = [0u8; KEY_LEN];
    hex::decode_to_slice(value, &mut key).map_err(|e| fail(e.to_string()))?;
    Ok(key)
}

/// Encrypts `plaintext` with `key` in kubeadm's format, under a fresh random nonce
/// (kubeadm: crypto.EncryptBytes).
pub fn encrypt(key: &[u8; KEY_LEN], plaintext: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    seal(key, &nonce, plaintext)
}

/// `nonce || AES-256-GCM(key, nonce, plaintext)`: [`encrypt`] with the nonce given, so a
/// known-answer test can reproduce kubeadm's bytes.
fn seal(key: &[u8; KEY_LEN], nonce: &[u8; NONCE_LEN], plaintext: &[u8]) -> Vec<u8> {
    let cipher = Aes256Gcm::new(key.into());
    let sealed = cipher
        .encrypt(Nonce::from_slice(nonce), plaintext)
        // aes-gcm fails to encrypt only past GCM's limit of 2^36 - 32 bytes per message;
        // certificates and keys are a few kilobytes.
        .expect("a certificate or key is far below AES-GCM's 64 GiB message limit");
    let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
    out.extend_from_slice(nonce);
    out.extend_from_slice(&sealed);
    out
}

/// Decrypts one entry of kubeadm's format (kubeadm: crypto.DecryptBytes).
///
/// # Errors
/// - [`PkiError::SealedTooShort`]: fewer bytes than a nonce and a tag (a truncated entry).
/// - [`PkiError::CertificateKeyMismatch`]: the tag does not verify, which is a wrong key
///   (or data changed after it was sealed: GCM cannot tell the two apart).
pub fn decrypt(key: &[u8; KEY_LEN], data: &[u8]) -> Result<Vec<u8>, PkiError> {
    if data.len() < NONCE_LEN + TAG_LEN {
        return Err(PkiError::SealedTooShort { len: data.len() });
    }
    let (nonce, sealed) = data.split_at(NONCE_LEN);
    Aes256Gcm::new(key.into())
        .decrypt(Nonce::from_slice(nonce), sealed)
        .map_err(|_| PkiError::CertificateKeyMismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made by kubeadm v1.20.2's own `EncryptBytes` (util/crypto/crypto.go, in a throwaway Go
    /// program): key, plaintext and the sealed bytes, hex.
    const KAT_KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const KAT_PLAINTEXT: &str = "2d2d2d2d2d424547494e2043455254494649434154452d2d2d2d2d0a6b756265626f6f7420636572746b6579206b6e6f776e20616e737765720a2d2d2d2d2d454e442043455254494649434154452d2d2d2d2d0a";
    const KAT_SEALED: &str = "978501eaab132a987af2f013d86ab3138bf97ff4162e008a36cb438858f380dcb772cdaf75936610fb17cfb387a5cae4287e0fb05e979fd4d9aa8f211ba4ee8c33ff1feb38633d2630e4e53654ada40b5ec27df34cca2257758e10450d9dfbd81b781bd8360802f2be3db661f1298d78";

    fn kat() -> ([u8; KEY_LEN], Vec<u8>, Vec<u8>) {
        (
            parse(KAT_KEY).expect("valid key"),
            hex::decode(KAT_PLAINTEXT).expect("hex"),
            hex::decode(KAT_SEALED).expect("hex"),
        )
    }

    #[test]
    fn decrypts_what_kubeadm_encrypted() {
        let (key, plaintext, sealed) = kat();
        assert_eq!(decrypt(&key, &sealed).expect("kubeadm's bytes"), plaintext);
    }

    #[test]
    fn seals_byte_for_byte_as_kubeadm_under_the_same_nonce() {
        let (key, plaintext, sealed) = kat();
        let nonce: [u8; NONCE_LEN] = sealed[..NONCE_LEN].try_into().expect("12 bytes");
        assert_eq!(seal(&key, &nonce, &plaintext), sealed);
    }

    #[test]
    fn round_trip_with_a_fresh_nonce_each_time() {
        let key = parse(&generate()).expect("generated keys parse");
        let a = encrypt(&key, b"ca.key");
        let b = encrypt(&key, b"ca.key");
        assert_ne!(a, b, "a fresh nonce per entry");
        assert_eq!(a.len(), NONCE_LEN + 6 + TAG_LEN);
        assert_eq!(decrypt(&key, &a).expect("same key"), b"ca.key");
        assert_eq!(decrypt(&key, &b).expect("same key"), b"ca.key");
        assert_eq!(
            decrypt(&key, &encrypt(&key, b"")).expect("empty"),
            b"".to_vec()
        );
    }

    #[test]
    fn a_wrong_key_is_its_own_error_naming_the_fix() {
        let (_, _, sealed) = kat();
        let other = parse(&generate()).expect("valid");
        let e = decrypt(&other, &sealed).expect_err("wrong key");
        assert!(matches!(e, PkiError::CertificateKeyMismatch), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("check --certificate-key"), "{msg}");
        assert!(
            msg.contains("kubeboot init phase upload-certs --upload-certs"),
            "{msg}"
        );
    }

    #[test]
    fn truncated_or_changed_data_is_refused() {
        let (key, _, sealed) = kat();
        for len in [0, NONCE_LEN - 1, NONCE_LEN, NONCE_LEN + TAG_LEN - 1] {
            let e = decrypt(&key, &sealed[..len]).expect_err("too short");
            assert!(
                matches!(e, PkiError::SealedTooShort { len: l } if l == len),
                "{e:?}"
            );
        }
        let e = decrypt(&key, &sealed[..sealed.len() - 1]).expect_err("tag cut");
        assert!(matches!(e, PkiError::CertificateKeyMismatch), "{e:?}");
        let mut flipped = sealed.clone();
        flipped[NONCE_LEN] ^= 1;
        assert!(decrypt(&key, &flipped).is_err());
    }

    #[test]
    fn generated_keys_are_64_lower_case_hex_digits() {
        let k = generate();
        assert_eq!(k.len(), 64);
        assert!(
            k.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert_ne!(generate(), k);
    }

    #[test]
    fn parse_takes_either_case_and_names_what_is_wrong_without_the_key() {
        assert_eq!(
            parse(&KAT_KEY.to_uppercase()).expect("upper case"),
            parse(KAT_KEY).expect("lower case")
        );
        let short = &KAT_KEY[..62];
        let e = parse(short).expect_err("short").to_string();
        assert!(e.contains("it has 62 characters, not 64"), "{e}");
        assert!(!e.contains(short), "the key is never repeated: {e}");
        assert!(e.contains("kubeboot certs certificate-key"), "{e}");
        let bad = format!("{}g{}", &KAT_KEY[..10], &KAT_KEY[11..]);
        let e = parse(&bad).expect_err("not hex").to_string();
        assert!(e.contains("character 11 is not a hexadecimal digit"), "{e}");
        assert!(!e.contains(&bad), "{e}");
        let e = parse("é".repeat(64).as_str())
            .expect_err("not ASCII")
            .to_string();
        assert!(e.contains("character 1 is not"), "{e}");
    }
}
