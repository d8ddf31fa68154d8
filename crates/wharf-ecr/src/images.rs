//! Image operations: ListImages, DescribeImages, BatchGetImage, BatchDeleteImage,
//! PutImage and BatchCheckLayerAvailability, over the same rows `/v2/` reads and writes.

use crate::ops::Ctx;
use crate::EcrError;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use wharf_meta::{ImageRecord, MetaError, MetadataStore, NewManifest, Reference};
use wharf_oci::{Algorithm, Digest};

/// Default page size of ListImages and DescribeImages.
const DEFAULT_PAGE: usize = 100;

/// An `imageId` of an input: a digest, a tag, or both.
#[derive(Debug, Clone)]
struct ImageId {
    digest: Option<String>,
    tag: Option<String>,
}

impl ImageId {
    fn json(&self) -> Value {
        let mut m = Map::new();
        if let Some(d) = &self.digest {
            m.insert("imageDigest".into(), json!(d));
        }
        if let Some(t) = &self.tag {
            m.insert("imageTag".into(), json!(t));
        }
        Value::Object(m)
    }

    fn describe(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), Some(t)) => format!("imageDigest '{d}' with imageTag '{t}'"),
            (Some(d), None) => format!("imageDigest '{d}'"),
            (None, Some(t)) => format!("imageTag '{t}'"),
            (None, None) => "an empty imageId".into(),
        }
    }
}

fn image_ids(input: &Value) -> Vec<ImageId> {
    let Some(Value::Array(items)) = input.get("imageIds") else {
        return Vec::new();
    };
    items
        .iter()
        .map(|i| ImageId {
            digest: i
                .get("imageDigest")
                .and_then(Value::as_str)
                .map(str::to_string),
            tag: i
                .get("imageTag")
                .and_then(Value::as_str)
                .map(str::to_string),
        })
        .collect()
}

/// Why an image id resolves to nothing: (ECR failure code, reason).
type Failure = (&'static str, String);

/// Finds the image an id names in repository `name`.
async fn resolve(
    ctx: &Ctx<'_>,
    name: &str,
    id: &ImageId,
) -> Result<Result<ImageRecord, Failure>, EcrError> {
    let digest = match &id.digest {
        Some(d) => match Digest::parse(d) {
            Ok(d) => Some(d),
            Err(e) => {
                return Ok(Err((
                    "InvalidImageDigest",
                    format!("Invalid image digest {d:?}: {e}"),
                )))
            }
        },
        None => None,
    };
    let reference = match (&digest, &id.tag) {
        (Some(d), _) => Reference::Digest(d.clone()),
        (None, Some(t)) => Reference::Tag(t.clone()),
        (None, None) => {
            return Ok(Err((
                "MissingDigestAndTag",
                "Invalid request parameters: both tag and digest cannot be null".into(),
            )))
        }
    };
    let Some(img) = ctx.meta.get_image(name, &reference).await? else {
        return Ok(Err((
            "ImageNotFound",
            format!(
                "Requested image not found: no image with {} in repository '{name}' of registry '{}'",
                id.describe(),
                ctx.registry
            ),
        )));
    };
    if let (Some(_), Some(t)) = (&digest, &id.tag) {
        if !img.tags.iter().any(|x| x == t) {
            return Ok(Err((
                "ImageTagDoesNotMatchDigest",
                format!(
                    "Invalid request parameters: image tag '{t}' does not point to digest '{}' in repository '{name}'",
                    img.digest
                ),
            )));
        }
    }
    Ok(Ok(img))
}

/// The repository named in the input, which must exist.
async fn existing_repository(ctx: &Ctx<'_>) -> Result<String, EcrError> {
    let name = ctx.repository_name()?;
    if ctx.meta.get_repository(&name).await?.is_none() {
        return Err(ctx.missing(&name, &ctx.registry).await);
    }
    Ok(name)
}

fn max_results(ctx: &Ctx<'_>) -> Result<usize, EcrError> {
    match ctx.input.get("maxResults") {
        None | Some(Value::Null) => Ok(DEFAULT_PAGE),
        Some(v) => match v.as_u64() {
            Some(n) if (1..=1000).contains(&n) => Ok(n as usize),
            _ => Err(EcrError::invalid(format!(
                "maxResults must be between 1 and 1000, not {v}"
            ))),
        },
    }
}

/// `filter.tagStatus`: which images a listing keeps.
fn tag_filter(ctx: &Ctx<'_>) -> Result<fn(&ImageRecord) -> bool, EcrError> {
    let status = ctx
        .input
        .get("filter")
        .and_then(|f| f.get("tagStatus"))
        .and_then(Value::as_str)
        .unwrap_or("ANY");
    Ok(match status {
        "TAGGED" => |i: &ImageRecord| !i.tags.is_empty(),
        "UNTAGGED" => |i: &ImageRecord| i.tags.is_empty(),
        "ANY" => |_: &ImageRecord| true,
        other => {
            return Err(EcrError::invalid(format!(
                "filter.tagStatus must be TAGGED, UNTAGGED or ANY, not {other:?}"
            )))
        }
    })
}

/// One page of images passing the filter, and the token of the next page.
async fn page(ctx: &Ctx<'_>, name: &str) -> Result<(Vec<ImageRecord>, Option<String>), EcrError> {
    let max = max_results(ctx)?;
    let keep = tag_filter(ctx)?;
    let mut after = ctx.str("nextToken")?.map(str::to_string);
    let mut out = Vec::new();
    loop {
        let batch = ctx
            .meta
            .list_images(name, after.as_deref(), max + 1)
            .await?;
        let more = batch.len() > max;
        let scanned = batch.len().min(max);
        for (i, img) in batch.into_iter().take(max).enumerate() {
            after = Some(img.digest.to_string());
            if keep(&img) {
                out.push(img);
                if out.len() == max {
                    // Full: a next page exists if anything follows what was scanned.
                    let rest = i + 1 < scanned || more;
                    return Ok((out, if rest { after } else { None }));
                }
            }
        }
        if !more {
            return Ok((out, None));
        }
    }
}

fn epoch(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

fn detail(ctx: &Ctx<'_>, name: &str, img: &ImageRecord) -> Value {
    let mut v = json!({
        "registryId": ctx.registry,
        "repositoryName": name,
        "imageDigest": img.digest.to_string(),
        "imageSizeInBytes": img.size,
        "imagePushedAt": epoch(img.pushed_at),
        "imageManifestMediaType": img.media_type,
    });
    if !img.tags.is_empty() {
        v["imageTags"] = json!(img.tags);
    }
    if let Some(a) = &img.artifact_type {
        v["artifactMediaType"] = json!(a);
    }
    if let Some(t) = img.last_pulled_at {
        v["lastRecordedPullTime"] = json!(epoch(t));
    }
    v
}

pub(crate) async fn list_images(ctx: &Ctx<'_>) -> Result<Value, EcrError> {
    let name = existing_repository(ctx).await?;
    let (images, next) = page(ctx, &name).await?;
    let mut ids = Vec::new();
    for img in &images {
        if img.tags.is_empty() {
            ids.push(json!({ "imageDigest": img.digest.to_string() }));
        }
        for t in &img.tags {
            ids.push(json!({ "imageDigest": img.digest.to_string(), "imageTag": t }));
        }
    }
    let mut out = json!({ "imageIds": ids });
    if let Some(n) = next {
        out["nextToken"] = json!(n);
    }
    Ok(out)
}

pub(crate) async fn describe_images(ctx: &Ctx<'_>) -> Result<Value, EcrError> {
    let name = existing_repository(ctx).await?;
    let ids = image_ids(ctx.input);
    if ids.is_empty() {
        let (images, next) = page(ctx, &name).await?;
        let mut out = json!({
            "imageDetails": images.iter().map(|i| detail(ctx, &name, i)).collect::<Vec<_>>()
        });
        if let Some(n) = next {
            out["nextToken"] = json!(n);
        }
        return Ok(out);
    }
    if ctx.input.get("nextToken").is_some() || ctx.input.get("maxResults").is_some() {
        return Err(EcrError::invalid(
            "maxResults and nextToken cannot be used together with imageIds",
        ));
    }
    let mut details = Vec::new();
    for id in &ids {
        match resolve(ctx, &name, id).await? {
            Ok(img) => details.push(detail(ctx, &name, &img)),
            Err((_, reason)) => {
                return Err(EcrError::new(
                    400,
                    "ImageNotFoundException",
                    format!(
                        "The image with imageId {{{}}} does not exist within the repository with name '{name}' in the registry with id '{}': {reason}",
                        id.describe(),
                        ctx.registry
                    ),
                ))
            }
        }
    }
    Ok(json!({ "imageDetails": details }))
}

fn failure(id: &ImageId, (code, reason): Failure) -> Value {
    json!({ "imageId": id.json(), "failureCode": code, "failureReason": reason })
}

pub(crate) async fn batch_get_image(ctx: &Ctx<'_>) -> Result<Value, EcrError> {
    let name = existing_repository(ctx).await?;
    let accepted = ctx.strings("acceptedMediaTypes");
    let (mut images, mut failures) = (Vec::new(), Vec::new());
    let mut pulled = Vec::new();
    for id in image_ids(ctx.input) {
        let img = match resolve(ctx, &name, &id).await? {
            Ok(img) => img,
            Err(f) => {
                failures.push(failure(&id, f));
                continue;
            }
        };
        if let Some(acc) = &accepted {
            if !acc.iter().any(|m| m == &img.media_type) {
                failures.push(failure(
                    &id,
                    (
                        "UnsupportedImageType",
                        format!(
                            "the image is a {} manifest, which acceptedMediaTypes ({}) does not include",
                            img.media_type,
                            acc.join(", ")
                        ),
                    ),
                ));
                continue;
            }
        }
        let Some(m) = ctx
            .meta
            .get_manifest(&name, &Reference::Digest(img.digest.clone()))
            .await?
        else {
            failures.push(failure(
                &id,
                ("ImageNotFound", "Requested image not found".into()),
            ));
            continue;
        };
        let mut image_id = id.json();
        image_id["imageDigest"] = json!(img.digest.to_string());
        images.push(json!({
            "registryId": ctx.registry,
            "repositoryName": name,
            "imageId": image_id,
            "imageManifest": String::from_utf8_lossy(&m.body),
            "imageManifestMediaType": m.media_type,
        }));
        pulled.push((img.digest, wharf_meta::now_millis()));
    }
    if !pulled.is_empty() {
        ctx.meta.record_pulls(&name, &pulled).await?;
    }
    Ok(json!({ "images": images, "failures": failures }))
}

pub(crate) async fn batch_delete_image(ctx: &Ctx<'_>) -> Result<Value, EcrError> {
    let name = existing_repository(ctx).await?;
    let (mut deleted, mut failures) = (Vec::new(), Vec::new());
    for id in image_ids(ctx.input) {
        let img = match resolve(ctx, &name, &id).await? {
            Ok(img) => img,
            Err(f) => {
                failures.push(failure(&id, f));
                continue;
            }
        };
        let parents = ctx.meta.manifest_parents(&name, &img.digest).await?;
        match (&id.digest, &id.tag) {
            // By tag: the tag goes; the image goes with its last tag (as in ECR),
            // unless an index still lists it.
            (None, Some(tag)) => {
                ctx.meta.delete_tag(&name, tag).await?;
                if img.tags.len() <= 1 && parents.is_empty() {
                    ctx.meta.delete_manifest(&name, &img.digest).await?;
                }
                deleted.push(json!({ "imageDigest": img.digest.to_string(), "imageTag": tag }));
            }
            // An image an index lists stays while the index does (ECR's rule).
            _ if !parents.is_empty() => {
                let list: Vec<String> = parents.iter().map(ToString::to_string).collect();
                failures.push(failure(
                    &id,
                    (
                        "ImageReferencedByManifestList",
                        format!(
                            "Requested image referenced by manifest list: [{}]; delete the manifest list first",
                            list.join(", ")
                        ),
                    ),
                ));
            }
            // By digest: the image and all its tags.
            _ => {
                ctx.meta.delete_manifest(&name, &img.digest).await?;
                if img.tags.is_empty() {
                    deleted.push(json!({ "imageDigest": img.digest.to_string() }));
                }
                for t in &img.tags {
                    deleted.push(json!({ "imageDigest": img.digest.to_string(), "imageTag": t }));
                }
            }
        }
    }
    Ok(json!({ "imageIds": deleted, "failures": failures }))
}

pub(crate) async fn put_image(ctx: &Ctx<'_>) -> Result<Value, EcrError> {
    let name = existing_repository(ctx).await?;
    let manifest = ctx.required_str("imageManifest")?;
    let media_type = ctx.str("imageManifestMediaType")?;
    let tag = ctx.str("imageTag")?;
    if let Some(t) = tag {
        wharf_oci::names::validate_tag(t).map_err(|why| {
            EcrError::invalid(format!(
                "Invalid parameter at 'imageTag' failed to satisfy constraint: {why}"
            ))
        })?;
    }
    let body = Bytes::copy_from_slice(manifest.as_bytes());
    let parsed = wharf_oci::manifest::parse(&body, media_type).map_err(|e| {
        EcrError::invalid(format!(
            "Invalid parameter at 'ImageManifest' failed to satisfy constraint: 'Invalid JSON syntax' or content: {e}"
        ))
    })?;
    let digest = Algorithm::Sha256.digest(&body);
    if let Some(expected) = ctx.str("imageDigest")? {
        if expected != digest.to_string() {
            return Err(EcrError::new(
                400,
                "ImageDigestDoesNotMatchException",
                format!(
                    "The imageDigest {expected} does not match the digest of the manifest provided, {digest}"
                ),
            ));
        }
    }
    // Putting what is already there is refused, as ECR does.
    if let Some(existing) = ctx
        .meta
        .get_image(&name, &Reference::Digest(digest.clone()))
        .await?
    {
        let already = match tag {
            Some(t) => existing.tags.iter().any(|x| x == t),
            None => true,
        };
        if already {
            return Err(EcrError::new(
                400,
                "ImageAlreadyExistsException",
                format!(
                    "Image with digest '{digest}'{} already exists in the repository with name '{name}' in registry with id '{}'",
                    tag.map(|t| format!(" and tag '{t}'")).unwrap_or_default(),
                    ctx.registry
                ),
            ));
        }
    }
    let new = NewManifest::from_parsed(digest.clone(), body, &parsed);
    ctx.meta
        .put_manifest(&name, &new, tag)
        .await
        .map_err(|e| match e {
            MetaError::MissingBlob { digest: d, .. } => EcrError::new(
                400,
                "LayersNotFoundException",
                format!("Layer {d} referenced by the manifest is not in repository '{name}'; upload it first"),
            ),
            MetaError::MissingManifest { digest: d, .. } => EcrError::new(
                400,
                "ReferencedImagesNotFoundException",
                format!("Image {d} referenced by the manifest list is not in repository '{name}'; push it first"),
            ),
            other => ctx.meta_error(other, &name, &ctx.registry),
        })?;
    let mut image_id = json!({ "imageDigest": digest.to_string() });
    if let Some(t) = tag {
        image_id["imageTag"] = json!(t);
    }
    Ok(json!({
        "image": {
            "registryId": ctx.registry,
            "repositoryName": name,
            "imageId": image_id,
            "imageManifest": manifest,
            "imageManifestMediaType": parsed.media_type,
        }
    }))
}

pub(crate) async fn batch_check_layer_availability(ctx: &Ctx<'_>) -> Result<Value, EcrError> {
    let name = existing_repository(ctx).await?;
    let digests = ctx.strings("layerDigests").unwrap_or_default();
    let (mut layers, mut failures) = (Vec::new(), Vec::new());
    for d in digests {
        let parsed = match Digest::parse(&d) {
            Ok(p) => p,
            Err(e) => {
                failures.push(json!({ "layerDigest": d, "failureCode": "InvalidLayerDigest", "failureReason": format!("Invalid layer digest: {e}") }));
                continue;
            }
        };
        match ctx.meta.repository_blob(&name, &parsed).await? {
            Some(size) => layers.push(json!({
                "layerDigest": d,
                "layerAvailability": "AVAILABLE",
                "layerSize": size,
            })),
            None => failures.push(json!({
                "layerDigest": d,
                "failureCode": "MissingLayerDigest",
                "failureReason": format!("Could not find layer {d} in repository '{name}'"),
            })),
        }
    }
    Ok(json!({ "layers": layers, "failures": failures }))
}
