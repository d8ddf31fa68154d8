//! Naming rules for repositories (ECR's) and tags (OCI's).

/// Checks a repository name against ECR's rules: 2–256 characters, lowercase
/// components of `[a-z0-9]` separated by single `.`, `_`, `-` (or `__`), joined by `/`.
/// Returns why the name is refused.
pub fn validate_repository(name: &str) -> Result<(), String> {
    if name.len() < 2 || name.len() > 256 {
        return Err(format!(
            "repository name {name:?} must be 2 to 256 characters long (it is {})",
            name.len()
        ));
    }
    for component in name.split('/') {
        if component.is_empty() {
            return Err(format!(
                "repository name {name:?} has an empty path component"
            ));
        }
        let bytes = component.as_bytes();
        let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
            return Err(format!(
                "repository name {name:?}: component {component:?} must start and end with a lowercase letter or digit"
            ));
        }
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if alnum(b) {
                i += 1;
                continue;
            }
            // Separators: ".", "_", "__", or one or more "-".
            let start = i;
            while i < bytes.len() && !alnum(bytes[i]) {
                i += 1;
            }
            let sep = &component[start..i];
            let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
            if !ok {
                return Err(format!(
                    "repository name {name:?}: {sep:?} is not allowed; use lowercase letters, digits and single '.', '_', '-' separators"
                ));
            }
        }
    }
    Ok(())
}

/// Checks a tag against the OCI rule `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn validate_tag(tag: &str) -> Result<(), String> {
    let bytes = tag.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tag {tag:?} is invalid: up to 128 characters of letters, digits, '_', '.', '-', not starting with '.' or '-'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories() {
        for ok in ["ab", "my-app", "team/app", "a.b_c/d__e", "x/y/z-1", "a--b"] {
            assert!(validate_repository(ok).is_ok(), "{ok}");
        }
        for bad in [
            "a",
            "Upper",
            "a//b",
            "/ab",
            "ab/",
            "-ab",
            "a..b",
            "a_-b",
            &"a".repeat(257),
        ] {
            assert!(validate_repository(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tags() {
        assert!(validate_tag("latest").is_ok());
        assert!(validate_tag("_x.1-2").is_ok());
        assert!(validate_tag(".x").is_err());
        assert!(validate_tag("").is_err());
        assert!(validate_tag(&"a".repeat(129)).is_err());
    }
}
