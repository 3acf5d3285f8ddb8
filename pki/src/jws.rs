//! Detached-payload JWS signatures of the `cluster-info` kubeconfig (k8s.io/cluster-bootstrap:
//! token/jws/jws.go): HS256 keyed by a bootstrap token's secret, the protected header
//! `{"alg":"HS256","kid":"<token id>"}`, and the payload left out (`header..signature`).
//!
//! The bootstrap signer controller writes one `jws-kubeconfig-<token id>` key per signing
//! token into `kube-public/cluster-info`; `join` verifies it with the token it was given
//! before trusting the CA in that kubeconfig.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The prefix of the cluster-info key holding a token's signature
/// (bootstrapapi.JWSSignatureKeyPrefix).
pub const JWS_SIGNATURE_KEY_PREFIX: &str = "jws-kubeconfig-";

/// The cluster-info key holding the signature made with token `token_id`.
pub fn signature_key(token_id: &str) -> String {
    format!("{JWS_SIGNATURE_KEY_PREFIX}{token_id}")
}

/// The protected header go-jose writes for an HS256 signer with an extra `kid` header: its
/// JSON keys in go-jose's (sorted) order.
fn protected_header(token_id: &str) -> String {
    let header = serde_json_header(token_id);
    URL_SAFE_NO_PAD.encode(header.as_bytes())
}

/// `{"alg":"HS256","kid":"<id>"}`, with the id escaped as JSON would. Token IDs are
/// `[a-z0-9]{6}`, but the function is total.
fn serde_json_header(token_id: &str) -> String {
    let mut kid = String::with_capacity(token_id.len());
    for c in token_id.chars() {
        match c {
            '"' => kid.push_str("\\\""),
            '\\' => kid.push_str("\\\\"),
            c if (c as u32) < 0x20 => kid.push_str(&format!("\\u{:04x}", c as u32)),
            // go's encoding/json escapes these for HTML safety.
            '<' => kid.push_str("\\u003c"),
            '>' => kid.push_str("\\u003e"),
            '&' => kid.push_str("\\u0026"),
            c => kid.push(c),
        }
    }
    format!("{{\"alg\":\"HS256\",\"kid\":\"{kid}\"}}")
}

/// The detached JWS of `content` signed with the token (jws.ComputeDetachedSignature):
/// `<protected header>..<signature>`, both base64url without padding.
pub fn compute_detached_signature(content: &str, token_id: &str, token_secret: &str) -> String {
    let header = protected_header(token_id);
    let signing_input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(content.as_bytes()));
    let mut mac = Hmac::<Sha256>::new_from_slice(token_secret.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(signing_input.as_bytes());
    let sig = mac.finalize().into_bytes();
    format!("{header}..{}", URL_SAFE_NO_PAD.encode(sig))
}

/// Whether `detached` is the signature of `content` by the token
/// (jws.DetachedTokenIsValid). The MAC comparison takes constant time.
pub fn detached_signature_is_valid(
    detached: &str,
    content: &str,
    token_id: &str,
    token_secret: &str,
) -> bool {
    let Some((header, sig)) = detached.split_once("..") else {
        return false;
    };
    if header != protected_header(token_id) {
        return false;
    }
    let Ok(sig) = URL_SAFE_NO_PAD.decode(sig) else {
        return false;
    };
    let signing_input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(content.as_bytes()));
    let mut mac = Hmac::<Sha256>::new_from_slice(token_secret.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(signing_input.as_bytes());
    mac.verify_slice(&sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // k8s.io/cluster-bootstrap token/jws/jws_test.go.
    const CONTENT: &str = "Hello from the other side. I must have called a thousand times.";
    const SECRET: &str = "my voice is my passcode";
    const ID: &str = "joshua";

    #[test]
    fn compute_matches_cluster_bootstrap_vectors() {
        assert_eq!(
            compute_detached_signature(CONTENT, ID, SECRET),
            "eyJhbGciOiJIUzI1NiIsImtpZCI6Impvc2h1YSJ9..VShe2taLd-YTrmWuRkcL_8QTNDHYxQIEBsAYYiIj1_8"
        );
        assert_eq!(
            compute_detached_signature("", ID, SECRET),
            "eyJhbGciOiJIUzI1NiIsImtpZCI6Impvc2h1YSJ9..7Ui1ALizW4jXphVUB7xUqC9vLYLL9RZeOFfVLoB7Tgk"
        );
        assert_eq!(
            compute_detached_signature(CONTENT, ID, ""),
            "eyJhbGciOiJIUzI1NiIsImtpZCI6Impvc2h1YSJ9..UfkqvDGiIFxrMnFseDj9LYJOLNrvjW8aHhF71mvvAs8"
        );
    }

    #[test]
    fn verify_accepts_the_vector_and_refuses_changes() {
        let sig =
            "eyJhbGciOiJIUzI1NiIsImtpZCI6Impvc2h1YSJ9..VShe2taLd-YTrmWuRkcL_8QTNDHYxQIEBsAYYiIj1_8";
        assert!(detached_signature_is_valid(sig, CONTENT, ID, SECRET));
        assert!(!detached_signature_is_valid(
            &format!("{sig}foo"),
            CONTENT,
            ID,
            SECRET
        ));
        assert!(!detached_signature_is_valid(sig, "other", ID, SECRET));
        assert!(!detached_signature_is_valid(sig, CONTENT, "joshuA", SECRET));
        assert!(!detached_signature_is_valid(sig, CONTENT, ID, "wrong"));
        assert!(!detached_signature_is_valid("garbage", CONTENT, ID, SECRET));
    }

    #[test]
    fn signature_key_is_cluster_bootstraps() {
        assert_eq!(signature_key("abcdef"), "jws-kubeconfig-abcdef");
    }
}
