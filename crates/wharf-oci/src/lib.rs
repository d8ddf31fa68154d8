//! OCI formats shared by every Wharf crate: content digests and hashing, media types,
//! manifest parsing (the references a manifest makes), and repository/tag naming rules.

pub mod digest;
pub mod manifest;
pub mod media_types;
pub mod names;
pub mod resumable;

pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use manifest::{Descriptor, ManifestError, ManifestKind, ParsedManifest};
pub use resumable::{ResumableHasher, SavedHash};
