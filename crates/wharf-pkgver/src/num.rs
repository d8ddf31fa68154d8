//! Numeric comparison of digit strings of any length (no overflow).

use std::cmp::Ordering;

/// Compares two ASCII digit strings as unbounded non-negative integers.
pub(crate) fn cmp_digits(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Whether `s` is a non-empty run of ASCII digits.
pub(crate) fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())
}

/// Whether a digit string is zero.
pub(crate) fn is_zero(s: &str) -> bool {
    s.bytes().all(|c| c == b'0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_numbers() {
        assert_eq!(cmp_digits("0009", "10"), Ordering::Less);
        assert_eq!(cmp_digits("", "0"), Ordering::Equal);
        let big = "123456789012345678901234567890";
        let bigger = "123456789012345678901234567891";
        assert_eq!(cmp_digits(big, bigger), Ordering::Less);
        assert_eq!(cmp_digits(bigger, big), Ordering::Greater);
    }
}
