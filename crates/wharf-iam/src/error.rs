//! Errors of the IAM and STS APIs: the query protocol's `<ErrorResponse>` with IAM's
//! codes and HTTP statuses.

use wharf_meta::{IamErrorKind, MetaError};

/// An error answered as `<ErrorResponse>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// `Error.Code`, e.g. `NoSuchEntity`.
    pub code: &'static str,
    /// `Error.Message`: what was wrong, naming the entity.
    pub message: String,
}

impl ApiError {
    /// An error with the given status and code.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 `ValidationError`.
    pub fn validation(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "ValidationError", message)
    }

    /// 400 `InvalidInput`.
    pub fn invalid_input(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "InvalidInput", message)
    }

    /// 400 `MalformedPolicyDocument`.
    pub fn malformed_policy(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "MalformedPolicyDocument", message)
    }

    /// 404 `NoSuchEntity`.
    pub fn no_such_entity(message: impl Into<String>) -> ApiError {
        ApiError::new(404, "NoSuchEntity", message)
    }

    /// 403 `AccessDenied`.
    pub fn access_denied(message: impl Into<String>) -> ApiError {
        ApiError::new(403, "AccessDenied", message)
    }

    /// 500 `ServiceFailure`.
    pub fn service_failure(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "ServiceFailure", message)
    }

    /// `Sender` for client errors, `Receiver` for server errors.
    pub fn fault(&self) -> &'static str {
        if self.status >= 500 {
            "Receiver"
        } else {
            "Sender"
        }
    }
}

impl From<MetaError> for ApiError {
    fn from(e: MetaError) -> ApiError {
        let message = e.to_string();
        match e.iam_kind() {
            Some(IamErrorKind::NoSuchEntity) => ApiError::no_such_entity(message),
            Some(IamErrorKind::EntityAlreadyExists) => {
                ApiError::new(409, "EntityAlreadyExists", message)
            }
            Some(IamErrorKind::DeleteConflict) => ApiError::new(409, "DeleteConflict", message),
            Some(IamErrorKind::LimitExceeded) => ApiError::new(409, "LimitExceeded", message),
            None => match e {
                // A generated id collided with an existing one: retrying helps.
                MetaError::AccessKeyExists(_) => {
                    ApiError::new(409, "ConcurrentModification", message)
                }
                _ => ApiError::service_failure(message),
            },
        }
    }
}
