//! Bootstrap tokens `[a-z0-9]{6}.[a-z0-9]{16}` (kubeadm: apis/bootstraptoken; client-go
//! tools/bootstrap/token/util).

use rand::Rng;

use crate::PkiError;

const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const ID_LEN: usize = 6;
const SECRET_LEN: usize = 16;

/// A bootstrap token. `Display` prints `id.secret`; `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapToken {
    id: String,
    secret: String,
}

impl BootstrapToken {
    /// A new random token (bootstraputil.GenerateBootstrapToken).
    pub fn generate() -> Self {
        let mut rng = rand::rngs::OsRng;
        let mut pick = |n: usize| -> String {
            (0..n)
                .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
                .collect()
        };
        let id = pick(ID_LEN);
        let secret = pick(SECRET_LEN);
        Self { id, secret }
    }

    /// Parses `id.secret`.
    ///
    /// # Errors
    /// [`PkiError::InvalidToken`], which never repeats the secret.
    pub fn parse(value: &str) -> Result<Self, PkiError> {
        let fail = |reason| PkiError::InvalidToken { reason };
        let (id, secret) = value.split_once('.').ok_or_else(|| fail("missing '.'"))?;
        let valid = |s: &str, n: usize| {
            s.len() == n
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        };
        if !valid(id, ID_LEN) {
            return Err(fail("the token ID must be 6 characters of [a-z0-9]"));
        }
        if !valid(secret, SECRET_LEN) {
            return Err(fail("the token secret must be 16 characters of [a-z0-9]"));
        }
        Ok(Self {
            id: id.to_string(),
            secret: secret.to_string(),
        })
    }

    /// The public part, named in the Secret `bootstrap-token-<id>`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The secret part.
    pub fn secret(&self) -> &str {
        &self.secret
    }
}

impl std::fmt::Display for BootstrapToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.id, self.secret)
    }
}

impl std::fmt::Debug for BootstrapToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BootstrapToken({}.<redacted>)", self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse() {
        let t = BootstrapToken::generate();
        let again = BootstrapToken::parse(&t.to_string()).expect("valid");
        assert_eq!(again, t);
        assert_eq!(t.id().len(), 6);
        assert_eq!(t.secret().len(), 16);
        assert!(!format!("{t:?}").contains(t.secret()));
    }

    #[test]
    fn split_and_errors() {
        let t = BootstrapToken::parse("abcdef.0123456789abcdef").expect("valid");
        assert_eq!((t.id(), t.secret()), ("abcdef", "0123456789abcdef"));
        let e = BootstrapToken::parse("ABCDEF.0123456789abcdef").expect_err("upper");
        assert!(e.to_string().contains("token ID"), "{e}");
        let e = BootstrapToken::parse("abcdef.secretsecret").expect_err("short");
        assert!(!e.to_string().contains("secretsecret"), "{e}");
        assert!(BootstrapToken::parse("abcdef0123456789abcdef").is_err());
    }
}
