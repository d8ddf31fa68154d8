//! Manifest parsing: what kind of manifest a body is, and what it references.
//!
//! Wharf stores manifest bytes exactly as pushed; parsing only extracts the edges
//! (config, layers, child manifests, subject) that the metadata store records.

use crate::digest::{Digest, DigestError};
use crate::media_types as mt;
use serde_json::{Map, Value};

/// Whether a manifest is a single image/artifact or an index of manifests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// OCI image manifest or Docker schema 2 manifest (config + layers).
    Image,
    /// OCI image index or Docker manifest list (child manifests).
    Index,
}

/// A content descriptor inside a manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Descriptor {
    /// `mediaType` of the referenced content.
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its declared size in bytes.
    pub size: u64,
    /// `artifactType`, if any.
    pub artifact_type: Option<String>,
    /// `annotations`, if any.
    pub annotations: Option<Map<String, Value>>,
    /// `urls` (non-distributable content), if any.
    pub urls: Vec<String>,
    /// `platform`, if any (indexes), kept as JSON.
    pub platform: Option<Value>,
}

/// The parts of a manifest the registry needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedManifest {
    /// The media type the manifest is served with.
    pub media_type: String,
    /// Image or index.
    pub kind: ManifestKind,
    /// Config descriptor (images).
    pub config: Option<Descriptor>,
    /// Layer descriptors (images).
    pub layers: Vec<Descriptor>,
    /// Child manifests (indexes).
    pub manifests: Vec<Descriptor>,
    /// The `subject` this manifest refers to (artifacts, signatures, SBOMs).
    pub subject: Option<Descriptor>,
    /// The artifact type as the referrers API reports it: `artifactType`, or for an
    /// image manifest without one, the config's media type.
    pub artifact_type: Option<String>,
    /// Top-level annotations.
    pub annotations: Option<Map<String, Value>>,
}

impl ParsedManifest {
    /// Blobs this manifest requires the repository to hold (config and distributable
    /// layers). Non-distributable layers are fetched by clients from their `urls`.
    pub fn required_blobs(&self) -> impl Iterator<Item = &Descriptor> {
        self.config.iter().chain(
            self.layers
                .iter()
                .filter(|d| !mt::is_non_distributable(&d.media_type) || d.urls.is_empty()),
        )
    }
}

/// Why a manifest body is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Not JSON, or not a JSON object.
    #[error("manifest is not a valid JSON object: {0}")]
    NotJson(String),
    /// Docker schema 1 is obsolete.
    #[error("Docker schema 1 manifests are not supported; push with a current client (Docker schema 2 or OCI)")]
    Schema1,
    /// A media type Wharf does not store as a manifest.
    #[error("unsupported manifest media type {0:?} (supported: OCI image manifest and index, Docker schema 2 manifest and manifest list)")]
    UnsupportedMediaType(String),
    /// Body `mediaType` disagrees with the request's Content-Type.
    #[error("manifest mediaType {body:?} does not match the Content-Type header {header:?}")]
    MediaTypeMismatch {
        /// From the body.
        body: String,
        /// From the header.
        header: String,
    },
    /// Structural problem (missing field, wrong type, bad schemaVersion).
    #[error("{0}")]
    Invalid(String),
    /// A descriptor's digest is malformed.
    #[error("descriptor at {path}: {source}")]
    BadDigest {
        /// JSON path of the descriptor.
        path: String,
        /// The digest problem.
        source: DigestError,
    },
}

fn is_generic(ct: &str) -> bool {
    ct.is_empty() || ct == "application/json" || ct == "application/octet-stream"
}

/// Strips parameters (`; charset=...`) and whitespace from a Content-Type value.
pub fn bare_media_type(ct: &str) -> &str {
    ct.split(';').next().unwrap_or("").trim()
}

/// Parses a manifest body pushed with the given Content-Type (if any).
pub fn parse(body: &[u8], content_type: Option<&str>) -> Result<ParsedManifest, ManifestError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ManifestError::NotJson(e.to_string()))?;
    let obj = value
        .as_object()
        .ok_or_else(|| ManifestError::NotJson("top level is not an object".into()))?;
    let header = content_type.map(bare_media_type).unwrap_or("");
    let body_type = match obj.get("mediaType") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(ManifestError::Invalid("mediaType must be a string".into())),
    };
    if header == mt::DOCKER_SCHEMA1 || header == mt::DOCKER_SCHEMA1_SIGNED {
        return Err(ManifestError::Schema1);
    }
    if let Some(Value::Number(n)) = obj.get("schemaVersion") {
        if n.as_u64() == Some(1) {
            return Err(ManifestError::Schema1);
        }
    }
    let media_type = match (body_type, header) {
        (Some(b), h) if !is_generic(h) && b != h => {
            return Err(ManifestError::MediaTypeMismatch {
                body: b.to_string(),
                header: h.to_string(),
            })
        }
        (Some(b), _) => b.to_string(),
        (None, h) if !is_generic(h) => h.to_string(),
        (None, _) => {
            if obj.contains_key("manifests") {
                mt::OCI_INDEX.to_string()
            } else {
                mt::OCI_MANIFEST.to_string()
            }
        }
    };
    if media_type == mt::DOCKER_SCHEMA1 || media_type == mt::DOCKER_SCHEMA1_SIGNED {
        return Err(ManifestError::Schema1);
    }
    if !mt::MANIFEST_TYPES.contains(&media_type.as_str()) {
        return Err(ManifestError::UnsupportedMediaType(media_type));
    }
    match obj.get("schemaVersion") {
        Some(Value::Number(n)) if n.as_u64() == Some(2) => {}
        _ => return Err(ManifestError::Invalid("schemaVersion must be 2".into())),
    }
    let kind = if mt::is_index(&media_type) {
        ManifestKind::Index
    } else {
        ManifestKind::Image
    };
    let subject = match obj.get("subject") {
        None | Some(Value::Null) => None,
        Some(v) => Some(descriptor(v, "subject")?),
    };
    let annotations = annotations_of(obj, "annotations")?;
    let declared_artifact = match obj.get("artifactType") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(ManifestError::Invalid(
                "artifactType must be a string".into(),
            ))
        }
    };
    let mut parsed = ParsedManifest {
        media_type,
        kind,
        config: None,
        layers: Vec::new(),
        manifests: Vec::new(),
        subject,
        artifact_type: declared_artifact,
        annotations,
    };
    match kind {
        ManifestKind::Image => {
            let config = obj
                .get("config")
                .ok_or_else(|| ManifestError::Invalid("image manifest has no config".into()))?;
            let config = descriptor(config, "config")?;
            if parsed.artifact_type.is_none() {
                parsed.artifact_type = Some(config.media_type.clone());
            }
            parsed.config = Some(config);
            parsed.layers =
                descriptor_list(obj, "layers", parsed.media_type == mt::DOCKER_MANIFEST)?;
        }
        ManifestKind::Index => {
            parsed.manifests = descriptor_list(obj, "manifests", true)?;
        }
    }
    Ok(parsed)
}

fn descriptor_list(
    obj: &Map<String, Value>,
    field: &str,
    required: bool,
) -> Result<Vec<Descriptor>, ManifestError> {
    match obj.get(field) {
        None | Some(Value::Null) if !required => Ok(Vec::new()),
        None | Some(Value::Null) => Err(ManifestError::Invalid(format!("{field} is missing"))),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| descriptor(v, &format!("{field}[{i}]")))
            .collect(),
        Some(_) => Err(ManifestError::Invalid(format!("{field} must be an array"))),
    }
}

fn annotations_of(
    obj: &Map<String, Value>,
    field: &str,
) -> Result<Option<Map<String, Value>>, ManifestError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => {
            if m.values().any(|v| !v.is_string()) {
                return Err(ManifestError::Invalid(format!(
                    "{field} values must be strings"
                )));
            }
            Ok(Some(m.clone()))
        }
        Some(_) => Err(ManifestError::Invalid(format!("{field} must be an object"))),
    }
}

fn descriptor(v: &Value, path: &str) -> Result<Descriptor, ManifestError> {
    let obj = v
        .as_object()
        .ok_or_else(|| ManifestError::Invalid(format!("{path} must be an object")))?;
    let media_type = match obj.get("mediaType") {
        Some(Value::String(s)) => s.clone(),
        _ => {
            return Err(ManifestError::Invalid(format!(
                "{path}.mediaType is missing or not a string"
            )))
        }
    };
    let digest = match obj.get("digest") {
        Some(Value::String(s)) => Digest::parse(s).map_err(|source| ManifestError::BadDigest {
            path: path.to_string(),
            source,
        })?,
        _ => {
            return Err(ManifestError::Invalid(format!(
                "{path}.digest is missing or not a string"
            )))
        }
    };
    let size = match obj.get("size") {
        Some(Value::Number(n)) => n.as_u64().ok_or_else(|| {
            ManifestError::Invalid(format!("{path}.size must be a non-negative integer"))
        })?,
        _ => {
            return Err(ManifestError::Invalid(format!(
                "{path}.size is missing or not a number"
            )))
        }
    };
    let artifact_type = match obj.get("artifactType") {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    let urls = match obj.get("urls") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|u| u.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    };
    Ok(Descriptor {
        media_type,
        digest,
        size,
        artifact_type,
        annotations: annotations_of(obj, "annotations")?,
        urls,
        platform: obj.get("platform").cloned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn image_and_artifact() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.example+json","digest":"{D1}","size":0}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{D1}","size":0}}],"subject":{{"mediaType":"{}","digest":"{D1}","size":2}},"annotations":{{"a":"b"}}}}"#,
            mt::OCI_MANIFEST,
            mt::OCI_MANIFEST
        );
        let m = parse(body.as_bytes(), Some(mt::OCI_MANIFEST)).unwrap();
        assert_eq!(m.kind, ManifestKind::Image);
        assert_eq!(
            m.artifact_type.as_deref(),
            Some("application/vnd.example+json")
        );
        assert_eq!(m.required_blobs().count(), 2);
        assert!(m.subject.is_some());
        assert!(matches!(
            parse(body.as_bytes(), Some(mt::DOCKER_MANIFEST)),
            Err(ManifestError::MediaTypeMismatch { .. })
        ));
    }

    #[test]
    fn index_and_errors() {
        let body = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{D1}","size":5,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#,
            mt::OCI_MANIFEST
        );
        let m = parse(body.as_bytes(), Some(mt::OCI_INDEX)).unwrap();
        assert_eq!(m.kind, ManifestKind::Index);
        assert_eq!(m.manifests.len(), 1);
        assert!(matches!(
            parse(b"nope", None),
            Err(ManifestError::NotJson(_))
        ));
        assert!(matches!(
            parse(br#"{"schemaVersion":1,"name":"x"}"#, None),
            Err(ManifestError::Schema1)
        ));
        let bad = r#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:zz","size":1},"layers":[]}"#;
        assert!(matches!(
            parse(bad.as_bytes(), None),
            Err(ManifestError::BadDigest { .. })
        ));
    }
}
