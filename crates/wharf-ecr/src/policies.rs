//! Repository and registry policies, DescribeRegistry, and resource tags.

use crate::ops::Ctx;
use crate::EcrError;
use serde_json::{json, Value};
use wharf_meta::{MetaError, MetadataStore, MAX_RESOURCE_TAGS};
use wharf_policy::{PolicyDocument, PolicyKind};

/// `(account, repository name)` of `arn:aws:ecr:<region>:<account>:repository/<name>`.
pub(crate) fn parse_repository_arn<'a>(
    arn: &'a str,
    region: &str,
) -> Result<(&'a str, &'a str), EcrError> {
    let bad = |why: String| {
        EcrError::invalid(format!(
            "Invalid parameter at 'resourceArn' failed to satisfy constraint: {arn:?} {why}"
        ))
    };
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, partition, service, arn_region, account, resource] = parts[..] else {
        return Err(bad(
            "is not an ARN (arn:aws:ecr:<region>:<account>:repository/<name>)".into(),
        ));
    };
    if prefix != "arn" || partition != "aws" || service != "ecr" {
        return Err(bad("is not an ECR ARN".into()));
    }
    if arn_region != region {
        return Err(bad(format!(
            "names region {arn_region:?}, but this registry serves {region:?}"
        )));
    }
    let Some(name) = resource.strip_prefix("repository/") else {
        return Err(bad("does not name a repository".into()));
    };
    Ok((account, name))
}

/// The `tags` member (`[{Key, Value}]`) of an input, checked as ECR does.
pub(crate) fn input_tags(v: Option<&Value>) -> Result<Vec<(String, String)>, EcrError> {
    let mut out = Vec::new();
    let Some(Value::Array(items)) = v else {
        return Ok(out);
    };
    for item in items {
        let key = item.get("Key").and_then(Value::as_str).unwrap_or("");
        let value = item.get("Value").and_then(Value::as_str).unwrap_or("");
        if key.is_empty() || key.len() > 128 || key.starts_with("aws:") {
            return Err(EcrError::new(
                400,
                "InvalidTagParameterException",
                format!("tag key {key:?} must be 1-128 characters and may not start with 'aws:'"),
            ));
        }
        if value.len() > 256 {
            return Err(EcrError::new(
                400,
                "InvalidTagParameterException",
                format!("the value of tag {key:?} is longer than 256 characters"),
            ));
        }
        out.push((key.to_string(), value.to_string()));
    }
    Ok(out)
}

/// A tagging error in ECR's words.
pub(crate) fn tag_error(e: MetaError) -> EcrError {
    match e {
        MetaError::InvalidSetting(m) => EcrError::new(
            400,
            "TooManyTagsException",
            format!("{m} (ECR allows {MAX_RESOURCE_TAGS} tags per repository)"),
        ),
        other => other.into(),
    }
}

fn policy_text<'a>(ctx: &'a Ctx<'_>) -> Result<&'a str, EcrError> {
    ctx.required_str("policyText")
}

/// Validates a policy as ECR does on write, with the reason in the message.
fn validate(text: &str, what: &str) -> Result<(), EcrError> {
    PolicyDocument::parse(text, PolicyKind::Resource)
        .map(|_| ())
        .map_err(|e| {
            EcrError::invalid(format!(
                "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Invalid {what} policy provided': {e}"
            ))
        })
}

fn repo_policy_not_found(ctx: &Ctx<'_>, name: &str) -> EcrError {
    EcrError::new(
        400,
        "RepositoryPolicyNotFoundException",
        format!(
            "Repository policy does not exist for the repository with name '{name}' in the registry with id '{}'",
            ctx.registry
        ),
    )
}

pub(crate) async fn set_repository_policy(ctx: &Ctx<'_>) -> Result<Value, EcrError> {
    let name = ctx.repository_name()?;
    let text = policy_text(ctx)?;
    validate(text, "repository")?;
    let repo = ctx
        .meta
        .set_repository_policy(&name, Some(text))
        .await
        .map_err(|e| ctx.meta_error(e, &name, &ctx.registry))?;
    Ok(json!({
        "registryId": ctx.registry,
        "repositoryName": repo.name,
        "policyText": repo.policy,
    }))
}

pub(crate) async fn get_repository_policy(ctx: &Ctx<'_>) -> Result<Value, EcrError> {
    let name = ctx.repository_name()?;
    let Some(repo) = ctx.meta.get_repository(&name).await? else {
        return Err(ctx.missing(&name, &ctx.registry).await);
    };
    let Some(text) = repo.policy else {
        return Err(repo_policy_not_found(ctx, &name));
    };
    Ok(json!({ "registryId": ctx.registry, "repositoryName": name, "policyText": text }))
}

pub(crate) async fn delete_repository_policy(ctx: &Ctx<'_>) -> Result<Value, EcrError> {
    let name = ctx.repository_name()?;
    let Some(repo) = ctx.meta.get_repository(&name).await? else {
        return Err(ctx.missing(&name, &ctx.registry).await);
    };
    let Some(text) = repo.policy else {
        return Err(repo_policy_not_found(ctx, &name));
    };
    ctx.meta
        .set_repository_policy(&name, None)
        .await
        .map_err(|e| ctx.meta_error(e, &name, &ctx.registry))?;
    Ok(json!({ "registryId": ctx.registry, "repositoryName": name, "policyText": text }))
}

fn registry_policy_not_found(ctx: &Ctx<'_>) -> EcrError {
    EcrError::new(
        400,
        "RegistryPolicyNotFoundException",
        format!(
            "Registry policy does not exist in the registry with id '{}'",
            ctx.registry
        ),
    )
}

pub(crate) async fn put_registry_policy(ctx: &Ctx<'_>) -> Result<Value, EcrError> {
    let text = policy_text(ctx)?;
    validate(text, "registry")?;
    ctx.meta
        .set_registry_policy(&ctx.registry, Some(text))
        .await?;
    Ok(json!({ "registryId": ctx.registry, "policyText": text }))
}

pub(crate) async fn get_registry_policy(ctx: &Ctx<'_>) -> Result<Value, EcrError> {
    match ctx.meta.registry_policy(&ctx.registry).await? {
        Some(text) => Ok(json!({ "registryId": ctx.registry, "policyText": text })),
        None => Err(registry_policy_not_found(ctx)),
    }
}

pub(crate) async fn delete_registry_policy(ctx: &Ctx<'_>) -> Result<Value, EcrError> {
    let Some(text) = ctx.meta.registry_policy(&ctx.registry).await? else {
        return Err(registry_policy_not_found(ctx));
    };
    ctx.meta.set_registry_policy(&ctx.registry, None).await?;
    Ok(json!({ "registryId": ctx.registry, "policyText": text }))
}

pub(crate) async fn describe_registry(ctx: &Ctx<'_>) -> Result<Value, EcrError> {
    Ok(json!({
        "registryId": ctx.registry,
        "replicationConfiguration": { "rules": [] },
    }))
}

/// The repository a tagging call's `resourceArn` names, which must exist.
async fn tagged_repository(ctx: &Ctx<'_>) -> Result<String, EcrError> {
    let arn = ctx.required_str("resourceArn")?;
    let (_, name) = parse_repository_arn(arn, &ctx.api.config().region)?;
    if ctx.meta.get_repository(name).await?.is_none() {
        return Err(ctx.missing(name, &ctx.registry).await);
    }
    Ok(name.to_string())
}

pub(crate) async fn tag_resource(ctx: &Ctx<'_>) -> Result<Value, EcrError> {
    let name = tagged_repository(ctx).await?;
    let tags = input_tags(ctx.input.get("tags"))?;
    ctx.meta
        .tag_repository(&name, &tags)
        .await
        .map_err(tag_error)?;
    Ok(json!({}))
}

pub(crate) async fn untag_resource(ctx: &Ctx<'_>) -> Result<Value, EcrError> {
    let name = tagged_repository(ctx).await?;
    let keys = ctx.strings("tagKeys").unwrap_or_default();
    ctx.meta.untag_repository(&name, &keys).await?;
    Ok(json!({}))
}

pub(crate) async fn list_tags_for_resource(ctx: &Ctx<'_>) -> Result<Value, EcrError> {
    let name = tagged_repository(ctx).await?;
    let tags: Vec<Value> = ctx
        .meta
        .repository_tags(&name)
        .await?
        .into_iter()
        .map(|(k, v)| json!({ "Key": k, "Value": v }))
        .collect();
    Ok(json!({ "tags": tags }))
}
