//! The ECR operations implemented so far, over JSON values shaped as botocore's ECR
//! model describes them.

use crate::{Caller, EcrApi, EcrError};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Map, Value};
use wharf_meta::MetadataStore;
use wharf_meta::{Repository, RepositorySettings, TagMutability, TagPolicy};

/// Runs `operation` for `caller`.
pub async fn call(
    api: &EcrApi,
    caller: &Caller,
    operation: &str,
    input: &Value,
) -> Result<Value, EcrError> {
    // The registry addressed: the caller's own unless `registryId` names another
    // account's, which that account's policies must then open to the caller.
    let mut registry = match input.get("registryId").and_then(Value::as_str) {
        Some(id) => id.to_string(),
        None => caller.account_id.clone(),
    };
    let mut repository = input.get("repositoryName").and_then(Value::as_str);
    // The tagging operations name the repository by its ARN.
    if let Some(arn) = input.get("resourceArn").and_then(Value::as_str) {
        let (account, name) = crate::policies::parse_repository_arn(arn, &api.config().region)?;
        registry = account.to_string();
        repository = Some(name);
    }
    api.authority()
        .authorize_request(
            caller,
            &format!("ecr:{operation}"),
            &registry,
            repository,
            &request_keys(input),
        )
        .await?;
    let ctx = Ctx {
        api,
        caller,
        input,
        meta: api.registry(&registry),
        registry,
    };
    match operation {
        "GetAuthorizationToken" => get_authorization_token(&ctx).await,
        "ListImages" => crate::images::list_images(&ctx).await,
        "InitiateLayerUpload" => crate::layers::initiate_layer_upload(&ctx).await,
        "UploadLayerPart" => crate::layers::upload_layer_part(&ctx).await,
        "CompleteLayerUpload" => crate::layers::complete_layer_upload(&ctx).await,
        "GetDownloadUrlForLayer" => crate::layers::get_download_url_for_layer(&ctx).await,
        "DescribeImages" => crate::images::describe_images(&ctx).await,
        "BatchGetImage" => crate::images::batch_get_image(&ctx).await,
        "BatchDeleteImage" => crate::images::batch_delete_image(&ctx).await,
        "PutImage" => crate::images::put_image(&ctx).await,
        "BatchCheckLayerAvailability" => crate::images::batch_check_layer_availability(&ctx).await,
        "SetRepositoryPolicy" => crate::policies::set_repository_policy(&ctx).await,
        "GetRepositoryPolicy" => crate::policies::get_repository_policy(&ctx).await,
        "DeleteRepositoryPolicy" => crate::policies::delete_repository_policy(&ctx).await,
        "PutRegistryPolicy" => crate::policies::put_registry_policy(&ctx).await,
        "GetRegistryPolicy" => crate::policies::get_registry_policy(&ctx).await,
        "DeleteRegistryPolicy" => crate::policies::delete_registry_policy(&ctx).await,
        "DescribeRegistry" => crate::policies::describe_registry(&ctx).await,
        "TagResource" => crate::policies::tag_resource(&ctx).await,
        "UntagResource" => crate::policies::untag_resource(&ctx).await,
        "ListTagsForResource" => crate::policies::list_tags_for_resource(&ctx).await,
        "CreateRepository" => create_repository(&ctx).await,
        "DescribeRepositories" => describe_repositories(&ctx).await,
        "DeleteRepository" => delete_repository(&ctx).await,
        "PutImageTagMutability" => put_image_tag_mutability(&ctx).await,
        "PutImageScanningConfiguration" => put_image_scanning_configuration(&ctx).await,
        other => Err(EcrError::new(
            400,
            "UnsupportedOperationException",
            format!("ECR operation {other} is not implemented by this Wharf version yet"),
        )),
    }
}

pub(crate) struct Ctx<'a> {
    pub(crate) api: &'a EcrApi,
    pub(crate) caller: &'a Caller,
    pub(crate) input: &'a Value,
    /// The account whose registry is addressed.
    pub(crate) registry: String,
    /// That registry's repositories.
    pub(crate) meta: wharf_meta::Namespaced,
}

impl Ctx<'_> {
    pub(crate) fn str(&self, member: &str) -> Result<Option<&str>, EcrError> {
        match self.input.get(member) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(EcrError::new(
                400,
                "SerializationException",
                format!("{member} must be a string"),
            )),
        }
    }

    /// The strings of list member `member` (the model has checked their type), or
    /// `None` when it is absent.
    pub(crate) fn strings(&self, member: &str) -> Option<Vec<String>> {
        match self.input.get(member) {
            Some(Value::Array(a)) => Some(
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect(),
            ),
            _ => None,
        }
    }

    pub(crate) fn required_str(&self, member: &str) -> Result<&str, EcrError> {
        self.str(member)?.ok_or_else(|| {
            EcrError::new(
                400,
                "ValidationException",
                format!("1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"),
            )
        })
    }

    /// The registry (account) addressed.
    pub(crate) fn registry_id(&self) -> Result<String, EcrError> {
        Ok(self.registry.clone())
    }

    pub(crate) fn repository_name(&self) -> Result<String, EcrError> {
        let name = self.required_str("repositoryName")?;
        wharf_oci::names::validate_repository(name).map_err(|why| {
            EcrError::invalid(format!(
                "Invalid parameter at 'repositoryName' failed to satisfy constraint: {why}"
            ))
        })?;
        Ok(name.to_string())
    }

    pub(crate) fn not_found(&self, name: &str, registry: &str) -> EcrError {
        EcrError::new(
            400,
            "RepositoryNotFoundException",
            format!(
                "The repository with name '{name}' does not exist in the registry with id '{registry}' (region {})",
                self.api.config().region
            ),
        )
    }

    /// [`Ctx::not_found`] with the registry's repositories whose names are close to
    /// `name`, if any ("did you mean ...?").
    pub(crate) async fn missing(&self, name: &str, registry: &str) -> EcrError {
        let mut err = self.not_found(name, registry);
        let mut close = Vec::new();
        let mut after: Option<String> = None;
        // Looks at the first 10,000 names: enough for a hint, bounded for huge registries.
        for _ in 0..10 {
            let Ok(page) = self.meta.list_repositories(after.as_deref(), 1000).await else {
                break;
            };
            close.extend(
                page.iter()
                    .filter(|r| similar(&r.name, name))
                    .map(|r| format!("'{}'", r.name)),
            );
            match page.last() {
                Some(last) if page.len() == 1000 => after = Some(last.name.clone()),
                _ => break,
            }
        }
        if !close.is_empty() {
            close.truncate(3);
            err.message = format!("{}; did you mean {}?", err.message, close.join(" or "));
        }
        err
    }

    /// A metadata error about repository `name`, in ECR's words.
    pub(crate) fn meta_error(
        &self,
        e: wharf_meta::MetaError,
        name: &str,
        registry: &str,
    ) -> EcrError {
        match e {
            wharf_meta::MetaError::RepositoryNotFound(_) => self.not_found(name, registry),
            wharf_meta::MetaError::RepositoryExists(_) => EcrError::new(
                400,
                "RepositoryAlreadyExistsException",
                format!(
                    "The repository with name '{name}' already exists in the registry with id '{registry}'"
                ),
            ),
            wharf_meta::MetaError::RepositoryNotEmpty { manifests, .. } => EcrError::new(
                400,
                "RepositoryNotEmptyException",
                format!(
                    "The repository with name '{name}' in registry with id '{registry}' cannot be deleted because it still contains {manifests} image(s); delete them or use --force"
                ),
            ),
            other => other.into(),
        }
    }

    pub(crate) fn repository_json(&self, r: &Repository, registry: &str) -> Value {
        let region = &self.api.config().region;
        let mut v = json!({
            "repositoryArn": format!("arn:aws:ecr:{region}:{registry}:repository/{}", r.name),
            "registryId": registry,
            "repositoryName": r.name,
            "repositoryUri": format!("{}/{}", self.api.config().registry_host_of(registry), r.name),
            "createdAt": r.created_at as f64 / 1000.0,
            "imageTagMutability": r.tag_policy.mutability.as_str(),
            "imageScanningConfiguration": { "scanOnPush": r.scan_on_push },
            "encryptionConfiguration": { "encryptionType": r.encryption_type },
        });
        if let Some(k) = &r.kms_key {
            v["encryptionConfiguration"]["kmsKey"] = json!(k);
        }
        if !r.tag_policy.exclusion_filters.is_empty() {
            v["imageTagMutabilityExclusionFilters"] = filters_json(&r.tag_policy);
        }
        v
    }
}

fn filters_json(p: &TagPolicy) -> Value {
    Value::Array(
        p.exclusion_filters
            .iter()
            .map(|f| json!({ "filterType": "WILDCARD", "filter": f }))
            .collect(),
    )
}

/// `imageTagMutability` + `imageTagMutabilityExclusionFilters` of the input.
fn tag_policy(input: &Value, required: bool) -> Result<Option<TagPolicy>, EcrError> {
    let mutability = match input.get("imageTagMutability") {
        None | Some(Value::Null) if !required => return Ok(None),
        None | Some(Value::Null) => {
            return Err(EcrError::new(
                400,
                "ValidationException",
                "1 validation error detected: Value null at 'imageTagMutability' failed to satisfy constraint: Member must not be null",
            ))
        }
        Some(Value::String(s)) => TagMutability::parse(s).ok_or_else(|| {
            EcrError::new(
                400,
                "ValidationException",
                format!("1 validation error detected: Value '{s}' at 'imageTagMutability' failed to satisfy constraint: Member must satisfy enum value set: [MUTABLE, IMMUTABLE, IMMUTABLE_WITH_EXCLUSION, MUTABLE_WITH_EXCLUSION]"),
            )
        })?,
        Some(_) => return Err(EcrError::invalid("imageTagMutability must be a string")),
    };
    let mut exclusion_filters = Vec::new();
    if let Some(Value::Array(items)) = input.get("imageTagMutabilityExclusionFilters") {
        for item in items {
            let filter_type = item.get("filterType").and_then(Value::as_str);
            if filter_type != Some("WILDCARD") {
                return Err(EcrError::invalid(format!(
                    "imageTagMutabilityExclusionFilters: filterType must be WILDCARD, not {filter_type:?}"
                )));
            }
            match item.get("filter").and_then(Value::as_str) {
                Some(f) => exclusion_filters.push(f.to_string()),
                None => {
                    return Err(EcrError::invalid(
                        "imageTagMutabilityExclusionFilters: each filter needs a 'filter' string",
                    ))
                }
            }
        }
    }
    let policy = TagPolicy {
        mutability,
        exclusion_filters,
    };
    policy.validate().map_err(EcrError::invalid)?;
    Ok(Some(policy))
}

/// A repository's `kmsKey` must be a master key of the registry's key file: its blobs
/// are encrypted under it.
fn check_kms_key(ctx: &Ctx<'_>, name: &str, key: &str) -> Result<(), EcrError> {
    let refuse = |why: String| {
        EcrError::new(
            400,
            "KmsException",
            format!("repository '{name}' cannot use kmsKey '{key}': {why}"),
        )
    };
    match &ctx.api.config().encryption_keys {
        None => Err(refuse(
            "encryption at rest is not enabled on this registry (start wharf serve with \
             --encryption-key-file FILE, and add the key with `wharf keys add KEY --key-file FILE`)"
                .to_string(),
        )),
        Some(keys) if !keys.iter().any(|k| k == key) => Err(refuse(format!(
            "it is not a key of the registry's key file (it holds: {}); add it with \
             `wharf keys add '{key}' --key-file FILE` on every replica, then restart them",
            keys.join(", ")
        ))),
        Some(_) => Ok(()),
    }
}

async fn create_repository(ctx: &Ctx<'_>) -> Result<Value, EcrError> {
    let registry = ctx.registry_id()?;
    let name = ctx.repository_name()?;
    let tags = crate::policies::input_tags(ctx.input.get("tags"))?;
    let mut settings = RepositorySettings::default();
    if let Some(p) = tag_policy(ctx.input, false)? {
        settings.tag_policy = p;
    }
    if let Some(scan) = ctx.input.get("imageScanningConfiguration") {
        settings.scan_on_push = scan
            .get("scanOnPush")
            .and_then(Value::as_bool)
            .unwrap_or(false);
    }
    if let Some(enc) = ctx.input.get("encryptionConfiguration") {
        let t = enc
            .get("encryptionType")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !["AES256", "KMS", "KMS_DSSE"].contains(&t) {
            return Err(EcrError::new(
                400,
                "ValidationException",
                format!("1 validation error detected: Value '{t}' at 'encryptionConfiguration.encryptionType' failed to satisfy constraint: Member must satisfy enum value set: [AES256, KMS, KMS_DSSE]"),
            ));
        }
        let kms = enc
            .get("kmsKey")
            .and_then(Value::as_str)
            .map(str::to_string);
        if t == "AES256" && kms.is_some() {
            return Err(EcrError::invalid(
                "encryptionConfiguration.kmsKey can only be given with encryptionType KMS or KMS_DSSE",
            ));
        }
        if let Some(key) = &kms {
            check_kms_key(ctx, &name, key)?;
        }
        settings.encryption_type = t.to_string();
        settings.kms_key = kms;
    }
    let repo = ctx
        .meta
        .create_repository_with(&name, &settings)
        .await
        .map_err(|e| ctx.meta_error(e, &name, &registry))?;
    if !tags.is_empty() {
        if let Err(e) = ctx.meta.tag_repository(&name, &tags).await {
            // Tags are part of the creation: undo it.
            let _ = ctx.meta.delete_repository(&name, true).await;
            return Err(crate::policies::tag_error(e));
        }
    }
    Ok(json!({ "repository": ctx.repository_json(&repo, &registry) }))
}

async fn describe_repositories(ctx: &Ctx<'_>) -> Result<Value, EcrError> {
    let registry = ctx.registry_id()?;
    let names: Vec<String> = match ctx.input.get("repositoryNames") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| EcrError::invalid("repositoryNames must be strings"))?,
        _ => Vec::new(),
    };
    let max = match ctx.input.get("maxResults") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=1000).contains(&n) => Some(n as usize),
            _ => {
                return Err(EcrError::invalid(format!(
                    "maxResults must be between 1 and 1000, not {v}"
                )))
            }
        },
    };
    let token = ctx.str("nextToken")?;
    let mut out = Map::new();
    if !names.is_empty() {
        if max.is_some() || token.is_some() {
            return Err(EcrError::invalid(
                "maxResults and nextToken cannot be used together with repositoryNames",
            ));
        }
        let mut repos = Vec::new();
        for n in &names {
            match ctx.meta.get_repository(n).await? {
                Some(r) => repos.push(ctx.repository_json(&r, &registry)),
                None => return Err(ctx.missing(n, &registry).await),
            }
        }
        out.insert("repositories".into(), Value::Array(repos));
        return Ok(Value::Object(out));
    }
    let limit = max.unwrap_or(1000);
    let mut page = ctx.meta.list_repositories(token, limit + 1).await?;
    let more = page.len() > limit;
    page.truncate(limit);
    if more {
        if let Some(last) = page.last() {
            out.insert("nextToken".into(), json!(last.name));
        }
    }
    out.insert(
        "repositories".into(),
        Value::Array(
            page.iter()
                .map(|r| ctx.repository_json(r, &registry))
                .collect(),
        ),
    );
    Ok(Value::Object(out))
}

async fn delete_repository(ctx: &Ctx<'_>) -> Result<Value, EcrError> {
    let registry = ctx.registry_id()?;
    let name = ctx.repository_name()?;
    let force = ctx
        .input
        .get("force")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let Some(repo) = ctx.meta.get_repository(&name).await? else {
        return Err(ctx.missing(&name, &registry).await);
    };
    ctx.meta
        .delete_repository(&name, force)
        .await
        .map_err(|e| ctx.meta_error(e, &name, &registry))?;
    Ok(json!({ "repository": ctx.repository_json(&repo, &registry) }))
}

async fn put_image_tag_mutability(ctx: &Ctx<'_>) -> Result<Value, EcrError> {
    let registry = ctx.registry_id()?;
    let name = ctx.repository_name()?;
    let policy = tag_policy(ctx.input, true)?.unwrap_or_default();
    let repo = ctx
        .meta
        .set_tag_policy(&name, &policy)
        .await
        .map_err(|e| ctx.meta_error(e, &name, &registry))?;
    let mut out = json!({
        "registryId": registry,
        "repositoryName": repo.name,
        "imageTagMutability": repo.tag_policy.mutability.as_str(),
    });
    if !repo.tag_policy.exclusion_filters.is_empty() {
        out["imageTagMutabilityExclusionFilters"] = filters_json(&repo.tag_policy);
    }
    Ok(out)
}

async fn put_image_scanning_configuration(ctx: &Ctx<'_>) -> Result<Value, EcrError> {
    let registry = ctx.registry_id()?;
    let name = ctx.repository_name()?;
    let scan = ctx
        .input
        .get("imageScanningConfiguration")
        .and_then(|c| c.get("scanOnPush"))
        .and_then(Value::as_bool)
        .ok_or_else(|| {
            EcrError::new(
                400,
                "ValidationException",
                "1 validation error detected: Value null at 'imageScanningConfiguration' failed to satisfy constraint: Member must not be null",
            )
        })?;
    let repo = ctx
        .meta
        .set_scan_on_push(&name, scan)
        .await
        .map_err(|e| ctx.meta_error(e, &name, &registry))?;
    Ok(json!({
        "registryId": registry,
        "repositoryName": repo.name,
        "imageScanningConfiguration": { "scanOnPush": repo.scan_on_push },
    }))
}

async fn get_authorization_token(ctx: &Ctx<'_>) -> Result<Value, EcrError> {
    let (token, expires_at) = ctx.api.authority().issue_token(ctx.caller)?;
    let encoded = STANDARD.encode(format!("AWS:{token}"));
    let registries = ctx
        .strings("registryIds")
        .filter(|ids| !ids.is_empty())
        .unwrap_or_else(|| vec![ctx.registry.clone()]);
    let data: Vec<Value> = registries
        .iter()
        .map(|account| {
            json!({
                "authorizationToken": encoded,
                "expiresAt": expires_at,
                "proxyEndpoint": ctx.api.config().proxy_endpoint_of(account),
            })
        })
        .collect();
    Ok(json!({ "authorizationData": data }))
}

/// Condition keys of the request: `aws:RequestTag/<key>` and `aws:TagKeys` of the
/// tags it sets (`tags`) or removes (`tagKeys`).
fn request_keys(input: &Value) -> Vec<(String, Vec<String>)> {
    let mut keys = Vec::new();
    let mut tag_keys = Vec::new();
    if let Some(Value::Array(tags)) = input.get("tags") {
        for t in tags {
            if let (Some(k), Some(v)) = (
                t.get("Key").and_then(Value::as_str),
                t.get("Value").and_then(Value::as_str),
            ) {
                keys.push((format!("aws:RequestTag/{k}"), vec![v.to_string()]));
                tag_keys.push(k.to_string());
            }
        }
    }
    if let Some(Value::Array(ks)) = input.get("tagKeys") {
        tag_keys.extend(ks.iter().filter_map(Value::as_str).map(str::to_string));
    }
    if !tag_keys.is_empty() {
        keys.push(("aws:TagKeys".to_string(), tag_keys));
    }
    keys
}

/// Names a user may have meant: the same last path segment, or at most a couple of
/// typos apart.
fn similar(candidate: &str, wanted: &str) -> bool {
    if candidate == wanted {
        return false;
    }
    let last = |s: &str| s.rsplit('/').next().unwrap_or(s).to_string();
    last(candidate) == last(wanted) || edit_distance(candidate, wanted) <= (wanted.len() / 6).max(1)
}

/// Levenshtein distance over bytes.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_names() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert!(similar("team/api", "team/apj"));
        assert!(similar("prod/web", "web"));
        assert!(!similar("team/api", "team/api"));
        assert!(!similar("backend", "frontend-service"));
    }
}
