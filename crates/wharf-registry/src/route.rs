//! Parsing `/v2/...` paths into routes. Repository names contain `/`, so routes are
//! recognised from the end of the path.

use crate::error::{ApiError, ApiResult, Code};
use axum::http::StatusCode;
use wharf_oci::names;

/// A `/v2/` endpoint with its path parameters (names validated).
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags { name: String },
    /// `/v2/<name>/manifests/<reference>`
    Manifest { name: String, reference: String },
    /// `/v2/<name>/blobs/<digest>`
    Blob { name: String, digest: String },
    /// `/v2/<name>/blobs/uploads/`
    UploadStart { name: String },
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload { name: String, id: String },
    /// `/v2/<name>/referrers/<digest>`
    Referrers { name: String, digest: String },
}

impl Route {
    /// The endpoint, for error messages.
    pub fn describe(&self) -> String {
        match self {
            Route::Base => "/v2/".into(),
            Route::Catalog => "/v2/_catalog".into(),
            Route::Tags { name } => format!("/v2/{name}/tags/list"),
            Route::Manifest { name, .. } => format!("/v2/{name}/manifests/<reference>"),
            Route::Blob { name, .. } => format!("/v2/{name}/blobs/<digest>"),
            Route::UploadStart { name } => format!("/v2/{name}/blobs/uploads/"),
            Route::Upload { name, .. } => format!("/v2/{name}/blobs/uploads/<id>"),
            Route::Referrers { name, .. } => format!("/v2/{name}/referrers/<digest>"),
        }
    }
}

fn not_found(path: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        Code::Unsupported,
        format!("{path} is not an endpoint of the OCI distribution API"),
    )
}

/// Parses a request path.
pub fn parse(path: &str) -> ApiResult<Route> {
    let rest = match path.strip_prefix("/v2") {
        Some(r) => r.strip_prefix('/').unwrap_or(r),
        None => return Err(not_found(path)),
    };
    if rest.is_empty() {
        return Ok(Route::Base);
    }
    if rest == "_catalog" {
        return Ok(Route::Catalog);
    }
    let segs: Vec<&str> = rest.split('/').collect();
    let n = segs.len();
    let name_of = |k: usize| -> ApiResult<String> {
        if k == 0 {
            return Err(not_found(path));
        }
        let name = segs[..k].join("/");
        names::validate_repository(&name)
            .map_err(|why| ApiError::new(StatusCode::BAD_REQUEST, Code::NameInvalid, why))?;
        Ok(name)
    };
    if n >= 3 && segs[n - 2] == "tags" && segs[n - 1] == "list" {
        return Ok(Route::Tags {
            name: name_of(n - 2)?,
        });
    }
    if n >= 3 && segs[n - 2] == "uploads" && segs[n - 3] == "blobs" {
        let name = name_of(n - 3)?;
        let id = segs[n - 1];
        return Ok(if id.is_empty() {
            Route::UploadStart { name }
        } else {
            Route::Upload {
                name,
                id: id.to_string(),
            }
        });
    }
    if n >= 3 && segs[n - 1] == "uploads" && segs[n - 2] == "blobs" {
        return Ok(Route::UploadStart {
            name: name_of(n - 2)?,
        });
    }
    if n >= 3 && !segs[n - 1].is_empty() {
        let last = segs[n - 1].to_string();
        match segs[n - 2] {
            "manifests" => {
                return Ok(Route::Manifest {
                    name: name_of(n - 2)?,
                    reference: last,
                })
            }
            "blobs" => {
                return Ok(Route::Blob {
                    name: name_of(n - 2)?,
                    digest: last,
                })
            }
            "referrers" => {
                return Ok(Route::Referrers {
                    name: name_of(n - 2)?,
                    digest: last,
                })
            }
            _ => {}
        }
    }
    Err(not_found(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(parse("/v2/").unwrap(), Route::Base);
        assert_eq!(parse("/v2").unwrap(), Route::Base);
        assert_eq!(parse("/v2/_catalog").unwrap(), Route::Catalog);
        assert_eq!(
            parse("/v2/a/b/tags/list").unwrap(),
            Route::Tags { name: "a/b".into() }
        );
        assert_eq!(
            parse("/v2/team/blobs/manifests/latest").unwrap(),
            Route::Manifest {
                name: "team/blobs".into(),
                reference: "latest".into()
            }
        );
        assert_eq!(
            parse("/v2/ab/blobs/uploads/").unwrap(),
            Route::UploadStart { name: "ab".into() }
        );
        assert_eq!(
            parse("/v2/ab/blobs/uploads/xyz").unwrap(),
            Route::Upload {
                name: "ab".into(),
                id: "xyz".into()
            }
        );
        assert_eq!(
            parse("/v2/ab/blobs/sha256:00").unwrap(),
            Route::Blob {
                name: "ab".into(),
                digest: "sha256:00".into()
            }
        );
        assert!(parse("/v2/UPPER/tags/list").is_err());
        assert!(parse("/v2/ab/nothing").is_err());
    }
}
