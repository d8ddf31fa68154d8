//! The error a policy document is rejected with.

/// Why a policy document was rejected: where in the document, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PolicyError {
    message: String,
}

impl PolicyError {
    pub(crate) fn new(message: String) -> PolicyError {
        PolicyError { message }
    }

    /// The message, e.g. `Statement[1].Effect must be "Allow" or "Deny", not "allow"`.
    pub fn message(&self) -> &str {
        &self.message
    }
}
