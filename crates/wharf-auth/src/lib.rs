//! Authentication of requests to Wharf's AWS-compatible APIs.
//!
//! [`sigv4`] verifies AWS Signature Version 4 (header and query-string forms) exactly
//! as AWS SDKs and the AWS CLI compute it; [`principal`] names who a request was
//! authenticated as. Looking up the secret for an access key and deciding what the
//! caller may do belong to the IAM layer above.

pub mod ids;
pub mod principal;
pub mod sigv4;

pub use principal::{Caller, Principal};
