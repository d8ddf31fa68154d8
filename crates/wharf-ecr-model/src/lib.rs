//! Amazon ECR control-plane API model (AWS JSON 1.1), generated at build time from
//! botocore's ECR service model (`model/ecr-2015-09-21.json`, see `model/NOTICE`).
//!
//! What is generated (by `build.rs`, into `$OUT_DIR/ecr_model.rs`):
//!
//! * one struct per `structure` shape (inputs `…Request`, outputs `…Response`, nested shapes and
//!   the error shapes), with the exact wire member names (`#[serde(rename = …)]`);
//! * one enum per `string` shape with an `enum` list, with an `Unknown(String)` fallback so that
//!   any value deserializes and serializes (responses never fail on new enum values);
//! * [`Operation`]: every operation, parsed from `X-Amz-Target`, with its input/output shape
//!   names and the error shapes it may return; [`OperationInput`] holds a parsed request body;
//! * [`error_status`] / [`ERROR_SHAPES`] for the modeled exceptions;
//! * the protocol metadata constants ([`TARGET_PREFIX`], [`JSON_VERSION`], …).
//!
//! # Required members
//!
//! **Every member of every structure is an `Option<T>`**, required or not. A missing required
//! member is therefore not a deserialization error: the server deserializes the body, then calls
//! `validate()` (or `missing_required()`), which reports
//! `Value null at 'repositoryName' failed to satisfy constraint: Member must not be null` just as
//! ECR does (in a `ValidationException`). Each struct has a `REQUIRED` constant listing the wire
//! names of its required members. When building responses, set the required members yourself.
//!
//! # Validation
//!
//! Each structure implements [`Validate`] and has an inherent `validate()`, which checks
//! recursively: required members, string/blob/list/map lengths (`min`/`max`), number ranges,
//! string `pattern`s (full-match, like Java's `Pattern.matches`, using the `regex` crate; a
//! pattern that `regex` cannot compile is skipped — see [`PATTERNS`]) and enum values (an
//! `Unknown` value is an error listing the allowed values). All problems are collected into one
//! [`ValidationError`] whose `Display` is ECR's
//! `N validation error(s) detected: …; …` message. Paths are dotted wire names, list elements are
//! `name.<1-based index>.member` as in Coral.
//!
//! Unknown JSON members are ignored (like most AWS services do), wrong JSON types fail
//! deserialization (`serde_json::Error`; answer `SerializationException`).

use std::fmt;

mod generated {
    #![allow(
        clippy::all,
        clippy::pedantic,
        rustdoc::all,
        non_camel_case_types,
        unused_variables,
        unused_mut
    )]
    include!(concat!(env!("OUT_DIR"), "/ecr_model.rs"));
}

pub use generated::*;

/// A structure (or enum) that can be checked against the model's constraints.
pub trait Validate {
    /// Appends one message per problem found, `path` being this value's dotted wire path
    /// (empty for the top-level input).
    fn validate_at(&self, path: &str, errors: &mut Vec<String>);
}

/// Runs [`Validate::validate_at`] from the top and turns the messages into a [`ValidationError`].
pub fn validate_root<T: Validate + ?Sized>(value: &T) -> Result<(), ValidationError> {
    let mut errors = Vec::new();
    value.validate_at("", &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ValidationError { errors })
    }
}

/// One or more constraint violations, formatted like ECR's `ValidationException` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// One message per violation, e.g.
    /// `Value null at 'repositoryName' failed to satisfy constraint: Member must not be null`.
    pub errors: Vec<String>,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        let plural = if n == 1 { "" } else { "s" };
        write!(
            f,
            "{n} validation error{plural} detected: {}",
            self.errors.join("; ")
        )
    }
}

impl std::error::Error for ValidationError {}

/// Joins a parent path and a member name (`a` + `b` = `a.b`; `""` + `b` = `b`).
#[doc(hidden)]
pub fn join_path(parent: &str, member: &str) -> String {
    if parent.is_empty() {
        member.to_owned()
    } else {
        format!("{parent}.{member}")
    }
}

/// Full-match test of `value` against a model pattern, compiling it once into `cell`.
/// Returns `true` (skips the check) if the pattern is not supported by the `regex` crate.
#[doc(hidden)]
pub fn pattern_matches(
    cell: &'static std::sync::OnceLock<Option<regex::Regex>>,
    pattern: &str,
    value: &str,
) -> bool {
    match cell.get_or_init(|| compile_pattern(pattern)) {
        Some(re) => re.is_match(value),
        None => true,
    }
}

/// Compiles a model pattern with full-match (Java `Pattern.matches`) semantics.
pub fn compile_pattern(pattern: &str) -> Option<regex::Regex> {
    regex::Regex::new(&format!("^(?:{pattern})$")).ok()
}

/// An AWS JSON 1.1 `timestamp`: seconds since the Unix epoch, sent as a JSON number
/// (fractions allowed). Whole values are serialized as integers.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Timestamp(pub f64);

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        Self::from_system_time(std::time::SystemTime::now())
    }

    /// Converts a `SystemTime` (times before the epoch become negative).
    pub fn from_system_time(t: std::time::SystemTime) -> Self {
        match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => Self(d.as_secs_f64()),
            Err(e) => Self(-e.duration().as_secs_f64()),
        }
    }

    /// Whole seconds since the epoch.
    pub fn from_unix_seconds(secs: i64) -> Self {
        Self(secs as f64)
    }

    /// Seconds since the epoch.
    pub fn as_secs_f64(&self) -> f64 {
        self.0
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        if v.fract() == 0.0 && v.abs() < 9.0e15 {
            s.serialize_i64(v as i64)
        } else {
            s.serialize_f64(v)
        }
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        f64::deserialize(d).map(Timestamp)
    }
}

/// An AWS JSON 1.1 `blob`: raw bytes, sent as a standard base64 string.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Blob(pub Vec<u8>);

impl serde::Serialize for Blob {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> serde::Deserialize<'de> for Blob {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use base64::Engine as _;
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map(Blob)
            .map_err(|e| serde::de::Error::custom(format!("invalid base64 blob: {e}")))
    }
}

/// A modeled error shape (a structure with `"exception": true`).
pub trait ModeledError: serde::Serialize {
    /// The error code, i.e. the shape name sent as `__type`.
    const CODE: &'static str;
    /// The HTTP status to answer with.
    const STATUS: u16;

    /// The AWS JSON 1.1 error body: the members plus `"__type": CODE`.
    fn to_json_body(&self) -> Vec<u8> {
        let mut v = serde_json::to_value(self)
            .unwrap_or_else(|_| serde_json::Value::Object(serde_json::Map::new()));
        if let serde_json::Value::Object(m) = &mut v {
            m.insert(
                "__type".to_owned(),
                serde_json::Value::String(Self::CODE.to_owned()),
            );
        }
        serde_json::to_vec(&v).unwrap_or_default()
    }
}
