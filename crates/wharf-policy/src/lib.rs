//! The IAM policy language for Wharf.
//!
//! Parses and validates AWS IAM JSON policy documents ([`PolicyDocument::parse`]),
//! and evaluates requests against them with AWS's documented logic ([`evaluate`]),
//! explaining each [`Decision`] in words. Wharf uses it for identity-based policies
//! of users and roles, ECR repository and registry policies (resource-based), and
//! role trust policies (`sts:AssumeRole`, with the trust policy as the resource
//! policy and the role's ARN as the resource).
//!
//! ```
//! use wharf_policy::{evaluate, managed, PolicySource, PrincipalInfo, RequestContext};
//!
//! let read_only = managed::by_name("AmazonEC2ContainerRegistryReadOnly")
//!     .expect("shipped")
//!     .parse()
//!     .expect("valid");
//! let alice = PrincipalInfo::user("111122223333", "/", "alice");
//! let repo = "arn:aws:ecr:us-east-1:111122223333:repository/app";
//! let source = PolicySource::new("managed policy AmazonEC2ContainerRegistryReadOnly", &read_only);
//!
//! let pull = RequestContext::new(alice.clone(), "ecr:BatchGetImage", repo).with_standard_keys();
//! assert!(evaluate(&pull, std::slice::from_ref(&source), None, "111122223333").allowed);
//!
//! let push = RequestContext::new(alice, "ecr:PutImage", repo).with_standard_keys();
//! let decision = evaluate(&push, &[source], None, "111122223333");
//! assert!(!decision.allowed);
//! assert!(decision.to_string().starts_with("no identity-based policy of arn:aws:iam::111122223333:user/alice allows ecr:PutImage"));
//! ```

#![warn(missing_docs)]

mod condition;
mod context;
mod document;
mod error;
mod eval;
pub mod managed;
mod pattern;

pub use condition::{Condition, SetOperator};
pub use context::{PrincipalInfo, RequestContext};
pub use document::{
    ActionPattern, Effect, GrantScope, PolicyDocument, PolicyKind, Principal, PrincipalId,
    ResourcePattern, Statement, MAX_POLICY_CHARS, VERSION_2008, VERSION_2012,
};
pub use error::PolicyError;
pub use eval::{evaluate, Decision, Grant, PolicySource, Reason, ResourceGrant};
