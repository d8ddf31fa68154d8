//! Random identifiers and secrets: entity ids (`AIDA…`), access key ids, secrets and
//! session tokens, from the operating system's CSPRNG.

/// Characters of ids (RFC 4648 base32: upper-case letters and 2–7, as AWS ids use).
const ID_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
/// Characters of secrets and tokens.
const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// `len` characters of `alphabet`, whose size must divide 256 (so the choice is
/// unbiased).
fn random_string(alphabet: &[u8], len: usize) -> String {
    let mut out = String::with_capacity(len);
    while out.len() < len {
        // UUIDv4 bytes come from the OS CSPRNG (getrandom); bytes 6 and 8 carry the
        // fixed version and variant bits and are skipped.
        for (i, b) in uuid::Uuid::new_v4().as_bytes().iter().enumerate() {
            if i != 6 && i != 8 && out.len() < len {
                out.push(char::from(alphabet[usize::from(*b) % alphabet.len()]));
            }
        }
    }
    out
}

/// `n` random bytes from the operating system's CSPRNG.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        for (i, b) in uuid::Uuid::new_v4().as_bytes().iter().enumerate() {
            if i != 6 && i != 8 && out.len() < n {
                out.push(*b);
            }
        }
    }
    out
}

/// `prefix` + 16 random id characters: `AIDA…` users, `AROA…` roles, `ANPA…`
/// policies, `AKIA…` access keys, `ASIA…` session keys.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", random_string(ID_ALPHABET, 16))
}

/// A 40-character secret access key.
pub fn new_secret() -> String {
    random_string(SECRET_ALPHABET, 40)
}

/// A session token: 256 random characters (about 1500 bits).
pub fn new_session_token() -> String {
    random_string(SECRET_ALPHABET, 256)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_and_uniqueness() {
        let id = new_id("AIDA");
        assert_eq!(id.len(), 20);
        assert!(id.starts_with("AIDA"));
        assert!(id.bytes().all(|b| ID_ALPHABET.contains(&b)));
        assert_ne!(new_id("AKIA"), new_id("AKIA"));
        let s = new_secret();
        assert_eq!(s.len(), 40);
        assert!(s.bytes().all(|b| SECRET_ALPHABET.contains(&b)));
        assert_eq!(new_session_token().len(), 256);
        assert_eq!(random_bytes(33).len(), 33);
        assert_ne!(random_bytes(16), random_bytes(16));
    }
}
