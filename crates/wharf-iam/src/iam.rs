//! The IAM actions: users, access keys, roles, inline and managed policies, tags.

use crate::error::ApiError;
use crate::params::{
    Params, Rule, ACCESS_KEY_ID, ARN, DOCUMENT, EXISTING_USER_NAME, MARKER, PATH, PATH_PREFIX,
    POLICY_DESCRIPTION, POLICY_NAME, POLICY_PATH, ROLE_DESCRIPTION, ROLE_NAME, TAG_KEY, USER_NAME,
};
use crate::xml::Xml;
use crate::{validate_document, DocumentKind, IamApi, AWS_MANAGED_POLICIES};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use wharf_auth::ids::{new_id, new_secret};
use wharf_auth::{Caller, Principal};
use wharf_meta::iam::AWS_MANAGED_POLICY_PREFIX;
use wharf_meta::{now_millis, AccessKey, CustomerPolicy, Millis, PrincipalRef, Role, User};

/// The IAM actions Wharf serves.
pub(crate) const ACTIONS: &[&str] = &[
    "CreateUser",
    "GetUser",
    "ListUsers",
    "DeleteUser",
    "TagUser",
    "UntagUser",
    "ListUserTags",
    "CreateAccessKey",
    "ListAccessKeys",
    "UpdateAccessKey",
    "DeleteAccessKey",
    "PutUserPolicy",
    "GetUserPolicy",
    "ListUserPolicies",
    "DeleteUserPolicy",
    "AttachUserPolicy",
    "DetachUserPolicy",
    "ListAttachedUserPolicies",
    "CreateRole",
    "GetRole",
    "ListRoles",
    "DeleteRole",
    "UpdateAssumeRolePolicy",
    "TagRole",
    "UntagRole",
    "ListRoleTags",
    "PutRolePolicy",
    "GetRolePolicy",
    "ListRolePolicies",
    "DeleteRolePolicy",
    "AttachRolePolicy",
    "DetachRolePolicy",
    "ListAttachedRolePolicies",
    "CreatePolicy",
    "GetPolicy",
    "GetPolicyVersion",
    "ListPolicies",
    "DeletePolicy",
];

/// IAM's default page size.
const DEFAULT_MAX_ITEMS: i64 = 100;
/// The only version of a customer managed policy.
const DEFAULT_VERSION: &str = "v1";
/// The creation time Wharf reports for the AWS managed policies it ships.
const AWS_MANAGED_CREATED: Millis = 1_420_070_400_000;
/// What IAM percent-encodes in policy documents of responses: all but unreserved.
const DOCUMENT_ESCAPES: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

type Reply = Result<Option<String>, ApiError>;

/// Runs IAM action `action` (one of [`ACTIONS`]).
pub(crate) async fn run(
    api: &IamApi,
    caller: &Caller,
    p: Params<'_>,
    action: &'static str,
) -> Reply {
    let op = Op {
        api,
        caller,
        p,
        account: &caller.account_id,
        action,
    };
    match action {
        "CreateUser" => op.create_user().await,
        "GetUser" => op.get_user().await,
        "ListUsers" => op.list_users().await,
        "DeleteUser" => op.delete_user().await,
        "TagUser" => op.tag(Kind::User).await,
        "UntagUser" => op.untag(Kind::User).await,
        "ListUserTags" => op.list_tags(Kind::User).await,
        "CreateAccessKey" => op.create_access_key().await,
        "ListAccessKeys" => op.list_access_keys().await,
        "UpdateAccessKey" => op.update_access_key().await,
        "DeleteAccessKey" => op.delete_access_key().await,
        "PutUserPolicy" => op.put_inline(Kind::User).await,
        "GetUserPolicy" => op.get_inline(Kind::User).await,
        "ListUserPolicies" => op.list_inline(Kind::User).await,
        "DeleteUserPolicy" => op.delete_inline(Kind::User).await,
        "AttachUserPolicy" => op.attach(Kind::User).await,
        "DetachUserPolicy" => op.detach(Kind::User).await,
        "ListAttachedUserPolicies" => op.list_attached(Kind::User).await,
        "CreateRole" => op.create_role().await,
        "GetRole" => op.get_role().await,
        "ListRoles" => op.list_roles().await,
        "DeleteRole" => op.delete_role().await,
        "UpdateAssumeRolePolicy" => op.update_assume_role_policy().await,
        "TagRole" => op.tag(Kind::Role).await,
        "UntagRole" => op.untag(Kind::Role).await,
        "ListRoleTags" => op.list_tags(Kind::Role).await,
        "PutRolePolicy" => op.put_inline(Kind::Role).await,
        "GetRolePolicy" => op.get_inline(Kind::Role).await,
        "ListRolePolicies" => op.list_inline(Kind::Role).await,
        "DeleteRolePolicy" => op.delete_inline(Kind::Role).await,
        "AttachRolePolicy" => op.attach(Kind::Role).await,
        "DetachRolePolicy" => op.detach(Kind::Role).await,
        "ListAttachedRolePolicies" => op.list_attached(Kind::Role).await,
        "CreatePolicy" => op.create_policy().await,
        "GetPolicy" => op.get_policy().await,
        "GetPolicyVersion" => op.get_policy_version().await,
        "ListPolicies" => op.list_policies().await,
        "DeletePolicy" => op.delete_policy().await,
        other => Err(ApiError::service_failure(format!(
            "the IAM action {other} is listed but has no implementation"
        ))),
    }
}

/// Users or roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    User,
    Role,
}

impl Kind {
    /// The request member naming the entity.
    fn param(self) -> &'static str {
        match self {
            Kind::User => "UserName",
            Kind::Role => "RoleName",
        }
    }

    /// The constraint of that member (`existingUserNameType` / `roleNameType`).
    fn rule(self) -> Rule {
        match self {
            Kind::User => EXISTING_USER_NAME,
            Kind::Role => ROLE_NAME,
        }
    }
}

/// A user or role found by name.
enum Entity {
    User(User),
    Role(Role),
}

impl Entity {
    fn name(&self) -> &str {
        match self {
            Entity::User(u) => &u.user_name,
            Entity::Role(r) => &r.role_name,
        }
    }

    fn tags(&self) -> &[(String, String)] {
        match self {
            Entity::User(u) => &u.tags,
            Entity::Role(r) => &r.tags,
        }
    }

    fn principal(&self) -> PrincipalRef {
        match self {
            Entity::User(u) => PrincipalRef::User(u.user_name.clone()),
            Entity::Role(r) => PrincipalRef::Role(r.role_name.clone()),
        }
    }
}

/// A policy ARN taken apart: `arn:aws:iam::<account>:policy<path><name>`.
struct PolicyArn<'a> {
    account: &'a str,
    path: &'a str,
    name: &'a str,
}

fn parse_policy_arn(arn: &str) -> Option<PolicyArn<'_>> {
    let rest = arn.strip_prefix("arn:aws:iam::")?;
    let (account, resource) = rest.split_once(':')?;
    let account_ok =
        account == "aws" || (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()));
    let full = resource.strip_prefix("policy")?;
    let cut = full.rfind('/')? + 1;
    let (path, name) = full.split_at(cut);
    let name_ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c));
    let path_ok = crate::params::check("Path", path, POLICY_PATH).is_ok();
    (account_ok && name_ok && path_ok).then_some(PolicyArn {
        account,
        path,
        name,
    })
}

/// The name in an attached policy's ARN.
fn policy_name_of(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// The path in an attached policy's ARN.
fn policy_path_of(arn: &str) -> &str {
    parse_policy_arn(arn).map(|p| p.path).unwrap_or("/")
}

fn encode_document(doc: &str) -> String {
    utf8_percent_encode(doc, DOCUMENT_ESCAPES).to_string()
}

/// A stable id for an AWS managed policy: `ANPA` + 16 base32 characters of two
/// FNV-1a hashes of its name.
fn managed_policy_id(name: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let fnv = |salt: u8| {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.bytes().chain([salt]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h
    };
    let (a, b) = (fnv(1), fnv(2));
    let mut id = String::from("ANPA");
    for i in 0..16 {
        let word = if i < 8 { a } else { b };
        let idx = ((word >> ((i % 8) * 5)) & 31) as usize;
        id.push(char::from(ALPHABET[idx]));
    }
    id
}

fn key_status(active: bool) -> &'static str {
    if active {
        "Active"
    } else {
        "Inactive"
    }
}

fn user_xml(x: &mut Xml, u: &User, with_tags: bool) {
    x.text("Path", &u.path)
        .text("UserName", &u.user_name)
        .text("UserId", &u.user_id)
        .text("Arn", &u.arn())
        .time("CreateDate", u.created_at);
    if with_tags && !u.tags.is_empty() {
        x.tags(&u.tags);
    }
}

fn role_xml(x: &mut Xml, r: &Role, with_tags: bool) {
    x.text("Path", &r.path)
        .text("RoleName", &r.role_name)
        .text("RoleId", &r.role_id)
        .text("Arn", &r.arn())
        .time("CreateDate", r.created_at)
        .text(
            "AssumeRolePolicyDocument",
            &encode_document(&r.assume_role_policy),
        )
        .opt("Description", r.description.as_deref())
        .text("MaxSessionDuration", &r.max_session_duration.to_string());
    if with_tags && !r.tags.is_empty() {
        x.tags(&r.tags);
    }
}

fn policy_xml(x: &mut Xml, p: &CustomerPolicy, detailed: bool) {
    x.text("PolicyName", &p.policy_name)
        .text("PolicyId", &p.policy_id)
        .text("Arn", &p.arn)
        .text("Path", &p.path)
        .text("DefaultVersionId", &p.default_version_id)
        .text("AttachmentCount", &p.attachment_count.to_string())
        .text("PermissionsBoundaryUsageCount", "0")
        .text("IsAttachable", "true");
    if detailed {
        x.opt("Description", p.description.as_deref());
    }
    x.time("CreateDate", p.created_at)
        .time("UpdateDate", p.updated_at);
    if detailed && !p.tags.is_empty() {
        x.tags(&p.tags);
    }
}

fn encode_marker(key: &str) -> String {
    URL_SAFE_NO_PAD.encode(key.as_bytes())
}

fn decode_marker(marker: &str) -> Result<String, ApiError> {
    URL_SAFE_NO_PAD
        .decode(marker.as_bytes())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            ApiError::validation(format!(
                "Invalid Marker {marker:?}: pass the Marker a previous response of the same list call returned"
            ))
        })
}

/// One IAM request being answered.
struct Op<'a> {
    api: &'a IamApi,
    caller: &'a Caller,
    p: Params<'a>,
    account: &'a str,
    action: &'static str,
}

impl Op<'_> {
    /// Authorizes this action on `resource`.
    async fn authorize(&self, resource: &str) -> Result<(), ApiError> {
        self.authorize_as(self.action, resource).await
    }

    /// Authorizes IAM action `action` on `resource`.
    async fn authorize_as(&self, action: &str, resource: &str) -> Result<(), ApiError> {
        self.api
            .authorize(self.caller, &format!("iam:{action}"), resource)
            .await
    }

    fn arn(&self, noun: &str, path: &str, name: &str) -> String {
        format!("arn:aws:iam::{}:{noun}{path}{name}", self.account)
    }

    /// The user a request names, or for a user caller without `UserName`, the caller.
    fn user_name_or_caller(&self) -> Result<String, ApiError> {
        if let Some(n) = self.p.opt("UserName", EXISTING_USER_NAME)? {
            return Ok(n.to_string());
        }
        match &self.caller.principal {
            Principal::User { name, .. } => Ok(name.clone()),
            _ => Err(ApiError::validation(format!(
                "Must specify userName when calling {} with non-User credentials ({} is a role session)",
                self.action,
                self.caller.arn()
            ))),
        }
    }

    /// Finds user `name`, authorizing this action on its ARN before saying whether it
    /// exists (an unauthorized caller learns nothing).
    async fn target_user(&self, name: &str) -> Result<User, ApiError> {
        let found = self.api.store.get_user(self.account, name).await?;
        let arn = match &found {
            Some(u) => u.arn(),
            None => self.arn("user", "/", name),
        };
        self.authorize(&arn).await?;
        found.ok_or_else(|| {
            ApiError::no_such_entity(format!(
                "The user with name {name} cannot be found in account {}.",
                self.account
            ))
        })
    }

    /// Like [`Op::target_user`] for roles.
    async fn target_role(&self, name: &str) -> Result<Role, ApiError> {
        let found = self.api.store.get_role(self.account, name).await?;
        let arn = match &found {
            Some(r) => r.arn(),
            None => self.arn("role", "/", name),
        };
        self.authorize(&arn).await?;
        found.ok_or_else(|| {
            ApiError::no_such_entity(format!(
                "The role with name {name} cannot be found in account {}.",
                self.account
            ))
        })
    }

    /// The user or role named by `UserName` / `RoleName` (validated with `rule`).
    async fn target(&self, kind: Kind, rule: Rule) -> Result<Entity, ApiError> {
        let name = self.p.req(kind.param(), rule)?;
        Ok(match kind {
            Kind::User => Entity::User(self.target_user(name).await?),
            Kind::Role => Entity::Role(self.target_role(name).await?),
        })
    }

    /// One page of `items` (sorted by `key`) after the request's `Marker`, at most
    /// `MaxItems`; with the marker of the next page if there is one.
    fn page<T>(
        &self,
        mut items: Vec<T>,
        key: impl Fn(&T) -> String,
    ) -> Result<(Vec<T>, Option<String>), ApiError> {
        let max = self
            .p
            .int("MaxItems", 1, 1000)?
            .unwrap_or(DEFAULT_MAX_ITEMS);
        let max = usize::try_from(max).unwrap_or(1000);
        let after = self
            .p
            .opt("Marker", MARKER)?
            .map(decode_marker)
            .transpose()?;
        items.sort_by_cached_key(|t| key(t));
        let mut rest: Vec<T> = items
            .into_iter()
            .filter(|t| after.as_ref().is_none_or(|a| key(t) > *a))
            .collect();
        if rest.len() > max {
            rest.truncate(max);
            let next = rest.last().map(|t| encode_marker(&key(t)));
            Ok((rest, next))
        } else {
            Ok((rest, None))
        }
    }

    /// A policy ARN the caller may use: valid, and AWS managed or of its own account.
    fn policy_in_reach<'b>(&self, arn: &'b str) -> Result<PolicyArn<'b>, ApiError> {
        let parsed = parse_policy_arn(arn).ok_or_else(|| {
            ApiError::invalid_input(format!(
                "ARN {arn} is not valid: a policy ARN is arn:aws:iam::<account>:policy/<path/><name>"
            ))
        })?;
        if parsed.account != "aws" && parsed.account != self.account {
            return Err(ApiError::access_denied(format!(
                "User: {} is not authorized to perform: iam:{} on resource: {arn}: the policy belongs to account {}, and callers manage the IAM entities of their own account ({}) only",
                self.caller.arn(),
                self.action,
                parsed.account,
                self.account
            )));
        }
        Ok(parsed)
    }

    /// Checks that an AWS managed policy ARN names one Wharf provides.
    fn known_managed(&self, arn: &str, parsed: &PolicyArn<'_>) -> Result<(), ApiError> {
        if parsed.path == "/" && AWS_MANAGED_POLICIES.contains(&parsed.name) {
            Ok(())
        } else {
            Err(ApiError::no_such_entity(format!(
                "Policy {arn} does not exist or is not attachable. Wharf provides these AWS managed policies: {}",
                AWS_MANAGED_POLICIES.join(", ")
            )))
        }
    }

    /// A customer managed policy of the caller's account.
    async fn customer_policy(&self, arn: &str) -> Result<CustomerPolicy, ApiError> {
        self.api.store.get_policy(arn).await?.ok_or_else(|| {
            ApiError::no_such_entity(format!(
                "Policy {arn} does not exist or is not attachable (account {}).",
                self.account
            ))
        })
    }

    /// Wharf's record of an AWS managed policy, with this account's attachment count.
    async fn managed_record(&self, name: &str) -> Result<CustomerPolicy, ApiError> {
        let arn = format!("{AWS_MANAGED_POLICY_PREFIX}{name}");
        let attachment_count = self
            .api
            .store
            .count_policy_attachments(self.account, &arn)
            .await?;
        Ok(CustomerPolicy {
            account_id: "aws".to_string(),
            policy_name: name.to_string(),
            policy_id: managed_policy_id(name),
            path: "/".to_string(),
            arn,
            document: String::new(),
            default_version_id: DEFAULT_VERSION.to_string(),
            description: None,
            attachment_count,
            created_at: AWS_MANAGED_CREATED,
            updated_at: AWS_MANAGED_CREATED,
            tags: Vec::new(),
        })
    }

    fn document(&self, name: &str, kind: DocumentKind) -> Result<&str, ApiError> {
        let doc = self.p.req(name, DOCUMENT)?;
        validate_document(kind, doc).map_err(ApiError::malformed_policy)?;
        Ok(doc)
    }

    // Users.

    async fn create_user(&self) -> Reply {
        let name = self.p.req("UserName", USER_NAME)?;
        let path = self.p.opt("Path", PATH)?.unwrap_or("/");
        self.p
            .unsupported(&["PermissionsBoundary"], "permissions boundaries")?;
        let tags = self.p.tags("Tags")?;
        let arn = self.arn("user", path, name);
        self.authorize(&arn).await?;
        if !tags.is_empty() {
            self.authorize_as("TagUser", &arn).await?;
        }
        let user = User {
            account_id: self.account.to_string(),
            user_name: name.to_string(),
            user_id: new_id("AIDA"),
            path: path.to_string(),
            created_at: now_millis(),
            tags,
        };
        let created = self.api.store.create_user(&user).await?;
        let mut x = Xml::new();
        x.elem("User", |x| user_xml(x, &created, true));
        Ok(Some(x.finish()))
    }

    async fn get_user(&self) -> Reply {
        let name = self.user_name_or_caller()?;
        let user = self.target_user(&name).await?;
        let mut x = Xml::new();
        x.elem("User", |x| user_xml(x, &user, true));
        Ok(Some(x.finish()))
    }

    async fn list_users(&self) -> Reply {
        let prefix = self.p.opt("PathPrefix", PATH_PREFIX)?.unwrap_or("/");
        self.authorize("*").await?;
        let users = self.api.store.list_users(self.account, prefix).await?;
        let (users, next) = self.page(users, |u| u.user_name.to_ascii_lowercase())?;
        let mut x = Xml::new();
        x.list("Users", &users, |x, u| user_xml(x, u, false))
            .page(next.as_deref());
        Ok(Some(x.finish()))
    }

    async fn delete_user(&self) -> Reply {
        let name = self.p.req("UserName", EXISTING_USER_NAME)?;
        let user = self.target_user(name).await?;
        self.api
            .store
            .delete_user(self.account, &user.user_name)
            .await?;
        Ok(None)
    }

    // Tags.

    async fn tag(&self, kind: Kind) -> Reply {
        let entity = self.target(kind, kind.rule()).await?;
        let tags = self.p.tags("Tags")?;
        if tags.is_empty() {
            return Err(ApiError::validation(
                "1 validation error detected: Value null at 'tags' failed to satisfy constraint: Member must not be null",
            ));
        }
        self.api
            .store
            .tag_principal(self.account, &entity.principal(), &tags)
            .await?;
        Ok(None)
    }

    async fn untag(&self, kind: Kind) -> Reply {
        let entity = self.target(kind, kind.rule()).await?;
        let keys: Vec<String> = self
            .p
            .list("TagKeys", TAG_KEY)?
            .into_iter()
            .map(str::to_string)
            .collect();
        if keys.is_empty() {
            return Err(ApiError::validation(
                "1 validation error detected: Value null at 'tagKeys' failed to satisfy constraint: Member must not be null",
            ));
        }
        self.api
            .store
            .untag_principal(self.account, &entity.principal(), &keys)
            .await?;
        Ok(None)
    }

    async fn list_tags(&self, kind: Kind) -> Reply {
        let entity = self.target(kind, kind.rule()).await?;
        let (tags, next) = self.page(entity.tags().to_vec(), |(k, _)| k.clone())?;
        let mut x = Xml::new();
        x.tags(&tags).page(next.as_deref());
        Ok(Some(x.finish()))
    }

    // Access keys.

    async fn create_access_key(&self) -> Reply {
        let name = self.user_name_or_caller()?;
        let user = self.target_user(&name).await?;
        let key = AccessKey {
            access_key_id: new_id("AKIA"),
            secret_access_key: new_secret(),
            account_id: self.account.to_string(),
            user_name: user.user_name.clone(),
            active: true,
            created_at: now_millis(),
        };
        let key = self.api.store.create_user_access_key(&key).await?;
        let mut x = Xml::new();
        x.elem("AccessKey", |x| {
            x.text("UserName", &key.user_name)
                .text("AccessKeyId", &key.access_key_id)
                .text("Status", key_status(key.active))
                .text("SecretAccessKey", &key.secret_access_key)
                .time("CreateDate", key.created_at);
        });
        Ok(Some(x.finish()))
    }

    async fn list_access_keys(&self) -> Reply {
        let name = self.user_name_or_caller()?;
        let user = self.target_user(&name).await?;
        let keys = self
            .api
            .store
            .list_user_access_keys(self.account, &user.user_name)
            .await?;
        let (keys, next) = self.page(keys, |k| k.access_key_id.clone())?;
        let mut x = Xml::new();
        x.list("AccessKeyMetadata", &keys, |x, k| {
            x.text("UserName", &k.user_name)
                .text("AccessKeyId", &k.access_key_id)
                .text("Status", key_status(k.active))
                .time("CreateDate", k.created_at);
        })
        .page(next.as_deref());
        Ok(Some(x.finish()))
    }

    /// Explains a missing key better when it exists under another user of the
    /// account.
    async fn key_error(&self, e: wharf_meta::MetaError, id: &str, user: &str) -> ApiError {
        if e.iam_kind() == Some(wharf_meta::IamErrorKind::NoSuchEntity) {
            if let Ok(Some(k)) = self.api.keys.get_access_key(id).await {
                if k.account_id == self.account && !k.user_name.eq_ignore_ascii_case(user) {
                    return ApiError::no_such_entity(format!(
                        "The Access Key with id {id} cannot be found for user {user}: it belongs to user {} of account {}.",
                        k.user_name, self.account
                    ));
                }
            }
        }
        e.into()
    }

    async fn update_access_key(&self) -> Reply {
        let name = self.user_name_or_caller()?;
        let id = self.p.req("AccessKeyId", ACCESS_KEY_ID)?;
        let status = self
            .p
            .choice("Status", &["Active", "Inactive", "Expired"])?
            .ok_or_else(|| {
                ApiError::validation(
                    "1 validation error detected: Value null at 'status' failed to satisfy constraint: Member must not be null",
                )
            })?;
        let active = match status {
            "Active" => true,
            "Inactive" => false,
            _ => {
                return Err(ApiError::validation(
                    "An access key's Status can be set to Active or Inactive, not Expired",
                ))
            }
        };
        let user = self.target_user(&name).await?;
        if let Err(e) = self
            .api
            .store
            .set_access_key_active(self.account, &user.user_name, id, active)
            .await
        {
            return Err(self.key_error(e, id, &user.user_name).await);
        }
        Ok(None)
    }

    async fn delete_access_key(&self) -> Reply {
        let name = self.user_name_or_caller()?;
        let id = self.p.req("AccessKeyId", ACCESS_KEY_ID)?;
        let user = self.target_user(&name).await?;
        if let Err(e) = self
            .api
            .store
            .delete_user_access_key(self.account, &user.user_name, id)
            .await
        {
            return Err(self.key_error(e, id, &user.user_name).await);
        }
        Ok(None)
    }

    // Inline policies.

    async fn put_inline(&self, kind: Kind) -> Reply {
        let policy = self.p.req("PolicyName", POLICY_NAME)?;
        self.p.req("PolicyDocument", DOCUMENT)?;
        let entity = self.target(kind, kind.rule()).await?;
        let doc = self.document("PolicyDocument", DocumentKind::Identity)?;
        self.api
            .store
            .put_principal_policy(self.account, &entity.principal(), policy, doc)
            .await?;
        Ok(None)
    }

    async fn get_inline(&self, kind: Kind) -> Reply {
        let policy = self.p.req("PolicyName", POLICY_NAME)?;
        let entity = self.target(kind, kind.rule()).await?;
        let found = self
            .api
            .store
            .get_principal_policy(self.account, &entity.principal(), policy)
            .await?;
        let mut x = Xml::new();
        x.text(kind.param(), entity.name())
            .text("PolicyName", &found.name)
            .text("PolicyDocument", &encode_document(&found.document));
        Ok(Some(x.finish()))
    }

    async fn list_inline(&self, kind: Kind) -> Reply {
        let entity = self.target(kind, kind.rule()).await?;
        let names = self
            .api
            .store
            .list_principal_policies(self.account, &entity.principal())
            .await?;
        let (names, next) = self.page(names, |n| n.to_ascii_lowercase())?;
        let mut x = Xml::new();
        x.strings("PolicyNames", &names).page(next.as_deref());
        Ok(Some(x.finish()))
    }

    async fn delete_inline(&self, kind: Kind) -> Reply {
        let policy = self.p.req("PolicyName", POLICY_NAME)?;
        let entity = self.target(kind, kind.rule()).await?;
        self.api
            .store
            .delete_principal_policy(self.account, &entity.principal(), policy)
            .await?;
        Ok(None)
    }

    // Attached managed policies.

    /// `userNameType` (64) for user attachment calls, `roleNameType` for roles.
    fn attach_rule(kind: Kind) -> Rule {
        match kind {
            Kind::User => USER_NAME,
            Kind::Role => ROLE_NAME,
        }
    }

    async fn attach(&self, kind: Kind) -> Reply {
        let arn = self.p.req("PolicyArn", ARN)?;
        let entity = self.target(kind, Self::attach_rule(kind)).await?;
        let parsed = self.policy_in_reach(arn)?;
        if parsed.account == "aws" {
            self.known_managed(arn, &parsed)?;
        }
        self.api
            .store
            .attach_principal_policy(self.account, &entity.principal(), arn)
            .await?;
        Ok(None)
    }

    async fn detach(&self, kind: Kind) -> Reply {
        let arn = self.p.req("PolicyArn", ARN)?;
        let entity = self.target(kind, Self::attach_rule(kind)).await?;
        self.policy_in_reach(arn)?;
        self.api
            .store
            .detach_principal_policy(self.account, &entity.principal(), arn)
            .await?;
        Ok(None)
    }

    async fn list_attached(&self, kind: Kind) -> Reply {
        let prefix = self.p.opt("PathPrefix", POLICY_PATH)?.unwrap_or("/");
        let entity = self.target(kind, Self::attach_rule(kind)).await?;
        let arns: Vec<String> = self
            .api
            .store
            .list_attached_principal_policies(self.account, &entity.principal())
            .await?
            .into_iter()
            .filter(|a| policy_path_of(a).starts_with(prefix))
            .collect();
        let (arns, next) = self.page(arns, |a| a.clone())?;
        let mut x = Xml::new();
        x.list("AttachedPolicies", &arns, |x, a| {
            x.text("PolicyName", policy_name_of(a)).text("PolicyArn", a);
        })
        .page(next.as_deref());
        Ok(Some(x.finish()))
    }

    // Roles.

    async fn create_role(&self) -> Reply {
        let name = self.p.req("RoleName", ROLE_NAME)?;
        let path = self.p.opt("Path", PATH)?.unwrap_or("/");
        self.p.req("AssumeRolePolicyDocument", DOCUMENT)?;
        let description = self.p.opt("Description", ROLE_DESCRIPTION)?;
        let max = self
            .p
            .int("MaxSessionDuration", 3600, 43200)?
            .unwrap_or(3600);
        self.p
            .unsupported(&["PermissionsBoundary"], "permissions boundaries")?;
        let tags = self.p.tags("Tags")?;
        let arn = self.arn("role", path, name);
        self.authorize(&arn).await?;
        if !tags.is_empty() {
            self.authorize_as("TagRole", &arn).await?;
        }
        let trust = self.document("AssumeRolePolicyDocument", DocumentKind::Trust)?;
        let role = Role {
            account_id: self.account.to_string(),
            role_name: name.to_string(),
            role_id: new_id("AROA"),
            path: path.to_string(),
            assume_role_policy: trust.to_string(),
            description: description.map(str::to_string),
            max_session_duration: u32::try_from(max).unwrap_or(3600),
            created_at: now_millis(),
            tags,
        };
        let created = self.api.store.create_role(&role).await?;
        let mut x = Xml::new();
        x.elem("Role", |x| role_xml(x, &created, true));
        Ok(Some(x.finish()))
    }

    async fn get_role(&self) -> Reply {
        let name = self.p.req("RoleName", ROLE_NAME)?;
        let role = self.target_role(name).await?;
        let mut x = Xml::new();
        x.elem("Role", |x| role_xml(x, &role, true));
        Ok(Some(x.finish()))
    }

    async fn list_roles(&self) -> Reply {
        let prefix = self.p.opt("PathPrefix", PATH_PREFIX)?.unwrap_or("/");
        self.authorize("*").await?;
        let roles = self.api.store.list_roles(self.account, prefix).await?;
        let (roles, next) = self.page(roles, |r| r.role_name.to_ascii_lowercase())?;
        let mut x = Xml::new();
        x.list("Roles", &roles, |x, r| role_xml(x, r, false))
            .page(next.as_deref());
        Ok(Some(x.finish()))
    }

    async fn delete_role(&self) -> Reply {
        let name = self.p.req("RoleName", ROLE_NAME)?;
        let role = self.target_role(name).await?;
        self.api
            .store
            .delete_role(self.account, &role.role_name)
            .await?;
        Ok(None)
    }

    async fn update_assume_role_policy(&self) -> Reply {
        let name = self.p.req("RoleName", ROLE_NAME)?;
        self.p.req("PolicyDocument", DOCUMENT)?;
        let role = self.target_role(name).await?;
        let doc = self.document("PolicyDocument", DocumentKind::Trust)?;
        self.api
            .store
            .update_assume_role_policy(self.account, &role.role_name, doc)
            .await?;
        Ok(None)
    }

    // Customer managed policies.

    async fn create_policy(&self) -> Reply {
        let name = self.p.req("PolicyName", POLICY_NAME)?;
        let path = self.p.opt("Path", POLICY_PATH)?.unwrap_or("/");
        self.p.req("PolicyDocument", DOCUMENT)?;
        let description = self.p.opt("Description", POLICY_DESCRIPTION)?;
        let tags = self.p.tags("Tags")?;
        let arn = self.arn("policy", path, name);
        self.authorize(&arn).await?;
        if !tags.is_empty() {
            self.authorize_as("TagPolicy", &arn).await?;
        }
        let doc = self.document("PolicyDocument", DocumentKind::Identity)?;
        let now = now_millis();
        let policy = CustomerPolicy {
            account_id: self.account.to_string(),
            policy_name: name.to_string(),
            policy_id: new_id("ANPA"),
            path: path.to_string(),
            arn,
            document: doc.to_string(),
            default_version_id: DEFAULT_VERSION.to_string(),
            description: description.map(str::to_string),
            attachment_count: 0,
            created_at: now,
            updated_at: now,
            tags,
        };
        let created = self.api.store.create_policy(&policy).await?;
        let mut x = Xml::new();
        x.elem("Policy", |x| policy_xml(x, &created, true));
        Ok(Some(x.finish()))
    }

    /// The policy a `PolicyArn` names (authorized), AWS managed or the account's own.
    async fn named_policy(&self) -> Result<CustomerPolicy, ApiError> {
        let arn = self.p.req("PolicyArn", ARN)?;
        let parsed = self.policy_in_reach(arn)?;
        self.authorize(arn).await?;
        if parsed.account == "aws" {
            self.known_managed(arn, &parsed)?;
            self.managed_record(parsed.name).await
        } else {
            self.customer_policy(arn).await
        }
    }

    async fn get_policy(&self) -> Reply {
        let policy = self.named_policy().await?;
        let mut x = Xml::new();
        x.elem("Policy", |x| policy_xml(x, &policy, true));
        Ok(Some(x.finish()))
    }

    async fn get_policy_version(&self) -> Reply {
        let version = self.p.req("VersionId", crate::params::VERSION_ID)?;
        let policy = self.named_policy().await?;
        if version != policy.default_version_id {
            return Err(ApiError::no_such_entity(format!(
                "Policy {} version {version} does not exist; its only version is {}.",
                policy.arn, policy.default_version_id
            )));
        }
        let document = if policy.account_id == "aws" {
            self.api
                .managed_documents
                .as_ref()
                .and_then(|docs| docs(&policy.arn))
                .ok_or_else(|| {
                    ApiError::no_such_entity(format!(
                        "The document of the AWS managed policy {} is not available on this Wharf server.",
                        policy.arn
                    ))
                })?
        } else {
            policy.document.clone()
        };
        let mut x = Xml::new();
        x.elem("PolicyVersion", |x| {
            x.text("Document", &encode_document(&document))
                .text("VersionId", &policy.default_version_id)
                .text("IsDefaultVersion", "true")
                .time("CreateDate", policy.updated_at);
        });
        Ok(Some(x.finish()))
    }

    async fn list_policies(&self) -> Reply {
        let scope = self
            .p
            .choice("Scope", &["All", "AWS", "Local"])?
            .unwrap_or("All");
        let only_attached = self.p.bool("OnlyAttached")?.unwrap_or(false);
        let prefix = self.p.opt("PathPrefix", POLICY_PATH)?.unwrap_or("/");
        let usage = self.p.choice(
            "PolicyUsageFilter",
            &["PermissionsPolicy", "PermissionsBoundary"],
        )?;
        self.authorize("*").await?;
        let mut policies = Vec::new();
        // Wharf has no permissions boundaries, so no policy is used as one.
        if usage != Some("PermissionsBoundary") {
            if scope != "Local" {
                for name in AWS_MANAGED_POLICIES {
                    policies.push(self.managed_record(name).await?);
                }
            }
            if scope != "AWS" {
                policies.extend(self.api.store.list_policies(self.account).await?);
            }
        }
        policies
            .retain(|p| p.path.starts_with(prefix) && (!only_attached || p.attachment_count > 0));
        let (policies, next) = self.page(policies, |p| p.arn.clone())?;
        let mut x = Xml::new();
        x.list("Policies", &policies, |x, p| policy_xml(x, p, false))
            .page(next.as_deref());
        Ok(Some(x.finish()))
    }

    async fn delete_policy(&self) -> Reply {
        let arn = self.p.req("PolicyArn", ARN)?;
        let parsed = self.policy_in_reach(arn)?;
        self.authorize(arn).await?;
        if parsed.account == "aws" {
            return Err(ApiError::invalid_input(format!(
                "{arn} is an AWS managed policy; only customer managed policies can be deleted."
            )));
        }
        self.api.store.delete_policy(arn).await?;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_arns() {
        let p = parse_policy_arn("arn:aws:iam::123456789012:policy/team/ci/push").unwrap();
        assert_eq!(
            (p.account, p.path, p.name),
            ("123456789012", "/team/ci/", "push")
        );
        let p = parse_policy_arn("arn:aws:iam::aws:policy/AdministratorAccess").unwrap();
        assert_eq!(
            (p.account, p.path, p.name),
            ("aws", "/", "AdministratorAccess")
        );
        for bad in [
            "arn:aws:iam::123:policy/x",
            "arn:aws:iam::123456789012:role/x",
            "arn:aws:iam::123456789012:policy/",
            "arn:aws:iam::123456789012:policy//x",
            "arn:aws:s3:::bucket",
            "policy/x",
        ] {
            assert!(parse_policy_arn(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn documents_are_percent_encoded_like_iam() {
        assert_eq!(
            encode_document(r#"{"a": "b/c~d"}"#),
            "%7B%22a%22%3A%20%22b%2Fc~d%22%7D"
        );
    }

    #[test]
    fn managed_ids_are_stable_and_distinct() {
        let a = managed_policy_id("AdministratorAccess");
        assert_eq!(a, managed_policy_id("AdministratorAccess"));
        assert_eq!(a.len(), 20);
        assert!(a.starts_with("ANPA"));
        let all: std::collections::HashSet<String> = AWS_MANAGED_POLICIES
            .iter()
            .map(|n| managed_policy_id(n))
            .collect();
        assert_eq!(all.len(), AWS_MANAGED_POLICIES.len());
    }

    #[test]
    fn markers_round_trip() {
        let m = encode_marker("arn:aws:iam::aws:policy/X");
        assert_eq!(decode_marker(&m).unwrap(), "arn:aws:iam::aws:policy/X");
        assert!(decode_marker("not base64!").is_err());
    }
}
