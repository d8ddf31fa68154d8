//! Registry tokens: what `GetAuthorizationToken` hands out and `/v2/` accepts as the
//! password of user `AWS`.
//!
//! A token names the access key it was issued to and when it expires, and carries an
//! HMAC-SHA256 over both under a server secret kept in the metadata database (so every
//! replica accepts every token). It grants nothing by itself: each request made with
//! it is authorized as the key's principal at that moment, so a deleted key or a
//! changed policy takes effect at once. Tokens use base64url and `.` only, never `:`,
//! which the AWS CLI and `docker login` split on.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Format version of tokens this build issues.
const VERSION: &str = "w1";

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token of this registry (garbled, or signed with another secret).
    #[error("the password is not a registry token issued by this Wharf (run aws ecr get-login-password again)")]
    Invalid,
    /// Past its expiry.
    #[error("the registry token expired at {0} (run aws ecr get-login-password again)")]
    Expired(String),
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims {
    /// The access key it was issued to.
    pub access_key_id: String,
    /// Expiry, seconds since the epoch.
    pub expires_at: i64,
}

/// Issues and checks tokens with one secret.
#[derive(Clone)]
pub struct TokenKey {
    secret: Vec<u8>,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

impl TokenKey {
    /// A key over `secret` (at least 32 random bytes).
    pub fn new(secret: Vec<u8>) -> TokenKey {
        TokenKey { secret }
    }

    fn mac(&self, payload: &str) -> Hmac<Sha256> {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(payload.as_bytes());
        mac
    }

    /// A token for `access_key_id` valid until `expires_at` (epoch seconds).
    pub fn issue(&self, access_key_id: &str, expires_at: i64) -> String {
        let payload = format!("{VERSION}.{access_key_id}.{expires_at}");
        let tag = self.mac(&payload).finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload.as_bytes()),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// Checks a token's signature and expiry at `now` (epoch seconds).
    pub fn verify(&self, token: &str, now: i64) -> Result<TokenClaims, TokenError> {
        let (payload_b64, tag_b64) = token.split_once('.').ok_or(TokenError::Invalid)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload_b64)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or(TokenError::Invalid)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag_b64)
            .map_err(|_| TokenError::Invalid)?;
        // Constant-time comparison of the tag.
        self.mac(&payload)
            .verify_slice(&tag)
            .map_err(|_| TokenError::Invalid)?;
        let mut parts = payload.split('.');
        let (Some(VERSION), Some(key), Some(exp), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Invalid);
        };
        let expires_at: i64 = exp.parse().map_err(|_| TokenError::Invalid)?;
        if now >= expires_at {
            let when = time::OffsetDateTime::from_unix_timestamp(expires_at)
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_else(|| expires_at.to_string());
            return Err(TokenError::Expired(when));
        }
        Ok(TokenClaims {
            access_key_id: key.to_string(),
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_verify_expire_tamper() {
        let key = TokenKey::new(vec![7; 32]);
        let t = key.issue("AKIAEXAMPLE", 1_000);
        assert!(!t.contains(':'));
        assert_eq!(
            key.verify(&t, 999),
            Ok(TokenClaims {
                access_key_id: "AKIAEXAMPLE".into(),
                expires_at: 1_000
            })
        );
        assert!(matches!(key.verify(&t, 1_000), Err(TokenError::Expired(_))));
        let other = TokenKey::new(vec![8; 32]);
        assert_eq!(other.verify(&t, 1), Err(TokenError::Invalid));
        // Change the expiry in the payload: the tag no longer matches.
        let (_, tag) = t.split_once('.').unwrap();
        let forged = format!(
            "{}.{tag}",
            URL_SAFE_NO_PAD.encode("w1.AKIAEXAMPLE.99999999999")
        );
        assert_eq!(key.verify(&forged, 1), Err(TokenError::Invalid));
        assert_eq!(key.verify("garbage", 1), Err(TokenError::Invalid));
        assert_eq!(key.verify("a.b.c", 1), Err(TokenError::Invalid));
    }
}
