//! ECR's layer API: InitiateLayerUpload, UploadLayerPart, CompleteLayerUpload and
//! GetDownloadUrlForLayer, on the same upload sessions and blobs as `/v2/`.

use crate::ops::Ctx;
use crate::EcrError;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Value};
use wharf_blob::BlobError;
use wharf_meta::{now_millis, MetadataStore, Upload};
use wharf_oci::Digest;

/// Part size suggested to clients: a part travels base64-encoded in a JSON body.
pub(crate) const PART_SIZE: u64 = 10 * 1024 * 1024;

fn blob_error(e: BlobError) -> EcrError {
    EcrError::server(e.to_string())
}

fn upload_not_found(ctx: &Ctx<'_>, name: &str, id: &str) -> EcrError {
    EcrError::new(
        400,
        "UploadNotFoundException",
        format!(
            "The upload with id '{id}' does not exist in the repository with name '{name}' in the registry with id '{}' (finished, cancelled or expired)",
            ctx.registry
        ),
    )
}

async fn repository(ctx: &Ctx<'_>) -> Result<String, EcrError> {
    Ok(repository_record(ctx).await?.name)
}

async fn repository_record(ctx: &Ctx<'_>) -> Result<wharf_meta::Repository, EcrError> {
    let name = ctx.repository_name()?;
    match ctx.meta.get_repository(&name).await? {
        Some(repo) => Ok(repo),
        None => Err(ctx.missing(&name, &ctx.registry).await),
    }
}

async fn session(ctx: &Ctx<'_>, name: &str) -> Result<String, EcrError> {
    let id = ctx.required_str("uploadId")?;
    match ctx.meta.get_upload(id).await? {
        Some(u) if u.repository == name => Ok(id.to_string()),
        _ => Err(upload_not_found(ctx, name, id)),
    }
}

pub(crate) async fn initiate_layer_upload(ctx: &Ctx<'_>) -> Result<Value, EcrError> {
    let repo = repository_record(ctx).await?;
    let id = uuid::Uuid::new_v4().to_string();
    let now = now_millis();
    ctx.meta
        .create_upload(&Upload {
            id: id.clone(),
            repository: repo.name.clone(),
            started_at: now,
            updated_at: now,
        })
        .await?;
    ctx.api
        .blobs()
        .start_upload_for_key(&id, repo.encryption_key())
        .await
        .map_err(blob_error)?;
    Ok(json!({ "uploadId": id, "partSize": PART_SIZE }))
}

pub(crate) async fn upload_layer_part(ctx: &Ctx<'_>) -> Result<Value, EcrError> {
    let name = repository(ctx).await?;
    let id = session(ctx, &name).await?;
    let first = ctx
        .input
        .get("partFirstByte")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let last = ctx
        .input
        .get("partLastByte")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let data = STANDARD
        .decode(ctx.required_str("layerPartBlob")?)
        .map_err(|e| EcrError::invalid(format!("layerPartBlob is not base64: {e}")))?;
    let part_error = |message: String| EcrError::new(400, "InvalidLayerPartException", message);
    if last < first || last - first + 1 != data.len() as u64 {
        return Err(part_error(format!(
            "partFirstByte {first} and partLastByte {last} describe {} bytes, but layerPartBlob holds {}",
            (last + 1).saturating_sub(first),
            data.len()
        )));
    }
    let size = ctx.api.blobs().upload_size(&id).await.map_err(blob_error)?;
    if first != size {
        return Err(part_error(format!(
            "the part starts at byte {first}, but upload {id} holds {size} bytes; send the part starting at byte {size}"
        )));
    }
    let stream: wharf_blob::ByteStream =
        Box::pin(futures::stream::once(async move { Ok(Bytes::from(data)) }));
    let total = ctx
        .api
        .blobs()
        .append_upload(&id, size, stream)
        .await
        .map_err(blob_error)?;
    ctx.meta.touch_upload(&id, now_millis()).await?;
    Ok(json!({
        "registryId": ctx.registry,
        "repositoryName": name,
        "uploadId": id,
        "lastByteReceived": total.saturating_sub(1),
    }))
}

pub(crate) async fn complete_layer_upload(ctx: &Ctx<'_>) -> Result<Value, EcrError> {
    let name = repository(ctx).await?;
    let id = session(ctx, &name).await?;
    let digests = ctx.strings("layerDigests").unwrap_or_default();
    let [given] = &digests[..] else {
        return Err(EcrError::invalid(format!(
            "layerDigests must name exactly one digest, not {}",
            digests.len()
        )));
    };
    let digest = Digest::parse(given).map_err(|e| {
        EcrError::new(
            400,
            "InvalidLayerException",
            format!("layer digest {given:?}: {e}"),
        )
    })?;
    if ctx.meta.repository_blob(&name, &digest).await?.is_some() {
        ctx.api
            .blobs()
            .abort_upload(&id)
            .await
            .map_err(blob_error)?;
        ctx.meta.delete_upload(&id).await?;
        return Err(EcrError::new(
            400,
            "LayerAlreadyExistsException",
            format!("The image layer {digest} already exists in the repository with name '{name}' in the registry with id '{}'", ctx.registry),
        ));
    }
    let committed = ctx.api.blobs().commit_upload(&id, &digest).await;
    ctx.meta.delete_upload(&id).await?;
    let size = match committed {
        Ok(size) => size,
        Err(BlobError::DigestMismatch { expected, computed }) => {
            return Err(EcrError::new(
                400,
                "InvalidLayerException",
                format!(
                "the uploaded bytes hash to {computed}, not to {expected}; the upload is discarded"
            ),
            ))
        }
        Err(e) => return Err(blob_error(e)),
    };
    ctx.meta.link_blob(&name, &digest, size).await?;
    Ok(json!({
        "registryId": ctx.registry,
        "repositoryName": name,
        "uploadId": id,
        "layerDigest": digest.to_string(),
    }))
}

pub(crate) async fn get_download_url_for_layer(ctx: &Ctx<'_>) -> Result<Value, EcrError> {
    let name = repository(ctx).await?;
    let given = ctx.required_str("layerDigest")?;
    let digest = Digest::parse(given)
        .map_err(|e| EcrError::invalid(format!("layerDigest {given:?} is not a digest: {e}")))?;
    if ctx.meta.repository_blob(&name, &digest).await?.is_none() {
        return Err(EcrError::new(
            400,
            "LayersNotFoundException",
            format!("The layer {digest} does not exist in the repository with name '{name}' in the registry with id '{}'", ctx.registry),
        ));
    }
    // The blob store's own presigned URL when it has them (S3 with redirects on), as
    // ECR answers; otherwise a URL of this registry that works without other
    // credentials: it carries a registry token of the caller, checked (and authorized)
    // on use.
    if let Some(url) = ctx
        .api
        .blobs()
        .download_url(&digest, std::time::Duration::from_secs(3600))
        .await
        .map_err(|e| EcrError::server(format!("making a download URL for {digest}: {e}")))?
    {
        return Ok(json!({ "downloadUrl": url, "layerDigest": digest.to_string() }));
    }
    let (token, _) = ctx.api.authority().issue_token(ctx.caller)?;
    Ok(json!({
        "downloadUrl": format!(
            "{}/v2/{name}/blobs/{digest}?{}={token}",
            ctx.api.config().proxy_endpoint_of(&ctx.registry),
            wharf_access::TOKEN_QUERY_PARAM
        ),
        "layerDigest": digest.to_string(),
    }))
}
