//! [`IamStore`] on [`PgStore`]: the `iam_*` tables and the `access_keys` table shared
//! with the metadata store.
//!
//! Names are stored as given and matched through `lower(name)` (ASCII folding on the
//! `COLLATE "C"` columns, the lowered side computed here with
//! [`str::to_ascii_lowercase`]), which the unique indexes also use. Rows that refer to
//! a user or role (tags, inline policies, attachments, access keys) store the
//! principal's own spelling. Every change that hangs on a user or role locks its row
//! first (`FOR UPDATE`), so quotas and deletion conflicts are checked against a state
//! no other transaction can change before this one commits.

use crate::meta::{
    access_key, claim_access_key_id, insert_access_key, lock_key_id, ACCESS_KEY_COLUMNS,
};
use crate::{exec, get, one, row, rows, transaction, Failure, PgStore, R};
use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use std::collections::HashMap;
use tokio_postgres::Row;
use wharf_meta::iam::{
    AWS_MANAGED_POLICY_PREFIX, MAX_ACCESS_KEYS_PER_USER, MAX_ATTACHED_POLICIES, MAX_TAGS,
};
use wharf_meta::{
    AccessKey, CustomerPolicy, IamStore, IdentityPolicy, InlinePolicy, MetaError, Millis,
    PrincipalRef, Role, Session, User,
};

type Tags = Vec<(String, String)>;

/// The key names are matched by: ASCII letters folded, as `lower()` does on the
/// `COLLATE "C"` columns.
fn fold(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// The stored spelling of a user's or role's name, if it exists; with `lock`, its row
/// stays locked (`FOR UPDATE`) until the transaction ends.
async fn principal_name<C: GenericClient>(
    c: &C,
    account: &str,
    p: &PrincipalRef,
    lock: bool,
) -> R<Option<String>> {
    let sql = match (p, lock) {
        (PrincipalRef::User(_), false) => {
            "SELECT user_name FROM iam_users WHERE account_id = $1 AND lower(user_name) = $2"
        }
        (PrincipalRef::User(_), true) => {
            "SELECT user_name FROM iam_users WHERE account_id = $1 AND lower(user_name) = $2
             FOR UPDATE"
        }
        (PrincipalRef::Role(_), false) => {
            "SELECT role_name FROM iam_roles WHERE account_id = $1 AND lower(role_name) = $2"
        }
        (PrincipalRef::Role(_), true) => {
            "SELECT role_name FROM iam_roles WHERE account_id = $1 AND lower(role_name) = $2
             FOR UPDATE"
        }
    };
    let found = row(
        c,
        sql,
        &[&account, &fold(p.name())],
        &format!("looking up {p} in account {account}"),
    )
    .await?;
    found.map(|r| get(&r, 0)).transpose()
}

/// IAM's message for a missing user or role, with the account.
fn not_found(account: &str, p: &PrincipalRef) -> Failure {
    MetaError::no_such_entity(format!(
        "The {} with name {} cannot be found in account {account}.",
        p.kind(),
        p.name()
    ))
    .into()
}

/// The stored name of the principal (locked with `lock`), or
/// [`IamErrorKind::NoSuchEntity`](wharf_meta::IamErrorKind::NoSuchEntity).
async fn require_principal<C: GenericClient>(
    c: &C,
    account: &str,
    p: &PrincipalRef,
    lock: bool,
) -> R<String> {
    principal_name(c, account, p, lock)
        .await?
        .ok_or_else(|| not_found(account, p))
}

/// The tags of one entity, sorted by key.
async fn tags_of<C: GenericClient>(c: &C, account: &str, kind: &str, name: &str) -> R<Tags> {
    let found = rows(
        c,
        "SELECT key, value FROM iam_tags
         WHERE account_id = $1 AND kind = $2 AND lower(name) = $3 ORDER BY key",
        &[&account, &kind, &fold(name)],
        &format!("reading the tags of {kind} {name}"),
    )
    .await?;
    found.iter().map(|r| Ok((get(r, 0)?, get(r, 1)?))).collect()
}

/// The tags of every entity of a kind in an account, by lower-cased name.
async fn tags_of_kind<C: GenericClient>(
    c: &C,
    account: &str,
    kind: &str,
) -> R<HashMap<String, Tags>> {
    let found = rows(
        c,
        "SELECT name, key, value FROM iam_tags
         WHERE account_id = $1 AND kind = $2 ORDER BY lower(name), key",
        &[&account, &kind],
        &format!("reading the tags of the {kind}s of account {account}"),
    )
    .await?;
    let mut out: HashMap<String, Tags> = HashMap::new();
    for r in &found {
        let name: &str = get(r, 0)?;
        out.entry(fold(name))
            .or_default()
            .push((get(r, 1)?, get(r, 2)?));
    }
    Ok(out)
}

/// Adds or replaces tags (the last value given for a key wins), keeping at most
/// [`MAX_TAGS`].
async fn put_tags<C: GenericClient>(
    c: &C,
    account: &str,
    kind: &str,
    name: &str,
    tags: &[(String, String)],
) -> R<()> {
    let mut keys: Vec<&str> = Vec::with_capacity(tags.len());
    let mut values: Vec<&str> = Vec::with_capacity(tags.len());
    for (k, v) in tags {
        match keys.iter().position(|x| *x == k.as_str()) {
            Some(i) => values[i] = v,
            None => {
                keys.push(k);
                values.push(v);
            }
        }
    }
    if !keys.is_empty() {
        exec(
            c,
            "INSERT INTO iam_tags (account_id, kind, name, key, value)
             SELECT $1, $2, $3, k, v FROM unnest($4::text[], $5::text[]) AS t(k, v)
             ON CONFLICT (account_id, kind, lower(name), key) DO UPDATE SET value = excluded.value",
            &[&account, &kind, &name, &keys, &values],
            &format!("tagging {kind} {name}"),
        )
        .await?;
    }
    let count = count(
        c,
        "SELECT count(*) FROM iam_tags WHERE account_id = $1 AND kind = $2 AND lower(name) = $3",
        &[&account, &kind, &fold(name)],
        &format!("counting the tags of {kind} {name}"),
    )
    .await?;
    if count > MAX_TAGS as i64 {
        return Err(MetaError::limit_exceeded(format!(
            "The {kind} {name} in account {account} would have {count} tags; at most {MAX_TAGS} are allowed."
        ))
        .into());
    }
    Ok(())
}

async fn delete_tags<C: GenericClient>(c: &C, account: &str, kind: &str, name: &str) -> R<()> {
    exec(
        c,
        "DELETE FROM iam_tags WHERE account_id = $1 AND kind = $2 AND lower(name) = $3",
        &[&account, &kind, &fold(name)],
        &format!("deleting the tags of {kind} {name}"),
    )
    .await?;
    Ok(())
}

/// The one `count(*)` of `sql`.
async fn count<C: GenericClient>(
    c: &C,
    sql: &str,
    params: crate::Params<'_>,
    what: &str,
) -> R<i64> {
    let r = one(c, sql, params, what).await?;
    get(&r, 0)
}

/// Counts what still hangs on a principal: (inline policies, attached policies).
async fn dependents<C: GenericClient>(c: &C, account: &str, p: &PrincipalRef) -> R<(i64, i64)> {
    let name = fold(p.name());
    let inline = count(
        c,
        "SELECT count(*) FROM iam_inline_policies
         WHERE account_id = $1 AND kind = $2 AND lower(principal_name) = $3",
        &[&account, &p.kind(), &name],
        &format!("counting the inline policies of {p}"),
    )
    .await?;
    let attached = count(
        c,
        "SELECT count(*) FROM iam_attachments
         WHERE account_id = $1 AND kind = $2 AND lower(principal_name) = $3",
        &[&account, &p.kind(), &name],
        &format!("counting the policies attached to {p}"),
    )
    .await?;
    Ok((inline, attached))
}

const USER_COLUMNS: &str = "SELECT account_id, user_name, user_id, path, created_at FROM iam_users";
const ROLE_COLUMNS: &str = "SELECT account_id, role_name, role_id, path, assume_role_policy,
    description, max_session_duration, created_at FROM iam_roles";
/// Policy columns with the attachment count (same account) last.
const POLICY_COLUMNS: &str = "SELECT p.account_id, p.policy_name, p.policy_id, p.path, p.arn,
    p.document, p.default_version_id, p.description, p.created_at, p.updated_at,
    (SELECT count(*) FROM iam_attachments a
     WHERE a.policy_arn = p.arn AND a.account_id = p.account_id)
    FROM iam_policies p";
const SESSION_COLUMNS: &str = "SELECT access_key_id, secret_access_key, session_token,
    account_id, role_name, role_path, session_name, expires_at, created_at FROM iam_sessions";

fn user_row(r: &Row) -> R<User> {
    Ok(User {
        account_id: get(r, 0)?,
        user_name: get(r, 1)?,
        user_id: get(r, 2)?,
        path: get(r, 3)?,
        created_at: get(r, 4)?,
        tags: Vec::new(),
    })
}

fn role_row(r: &Row) -> R<Role> {
    let role_name: String = get(r, 1)?;
    let duration: i64 = get(r, 6)?;
    let max_session_duration = u32::try_from(duration).map_err(|_| {
        MetaError::Backend(format!(
            "stored max session duration {duration} of role {role_name} is out of range"
        ))
    })?;
    Ok(Role {
        account_id: get(r, 0)?,
        role_id: get(r, 2)?,
        path: get(r, 3)?,
        assume_role_policy: get(r, 4)?,
        description: get(r, 5)?,
        max_session_duration,
        created_at: get(r, 7)?,
        tags: Vec::new(),
        role_name,
    })
}

fn policy_row(r: &Row) -> R<CustomerPolicy> {
    let attached: i64 = get(r, 10)?;
    Ok(CustomerPolicy {
        account_id: get(r, 0)?,
        policy_name: get(r, 1)?,
        policy_id: get(r, 2)?,
        path: get(r, 3)?,
        arn: get(r, 4)?,
        document: get(r, 5)?,
        default_version_id: get(r, 6)?,
        description: get(r, 7)?,
        created_at: get(r, 8)?,
        updated_at: get(r, 9)?,
        attachment_count: u32::try_from(attached).unwrap_or(u32::MAX),
        tags: Vec::new(),
    })
}

fn session_row(r: &Row) -> R<Session> {
    Ok(Session {
        access_key_id: get(r, 0)?,
        secret_access_key: get(r, 1)?,
        session_token: get(r, 2)?,
        account_id: get(r, 3)?,
        role_name: get(r, 4)?,
        role_path: get(r, 5)?,
        session_name: get(r, 6)?,
        expires_at: get(r, 7)?,
        created_at: get(r, 8)?,
    })
}

async fn get_user_tx<C: GenericClient>(c: &C, account: &str, name: &str) -> R<Option<User>> {
    let found = row(
        c,
        &format!("{USER_COLUMNS} WHERE account_id = $1 AND lower(user_name) = $2"),
        &[&account, &fold(name)],
        &format!("reading user {name} of account {account}"),
    )
    .await?;
    let Some(found) = found else {
        return Ok(None);
    };
    let mut user = user_row(&found)?;
    user.tags = tags_of(c, account, "user", &user.user_name).await?;
    Ok(Some(user))
}

async fn get_role_tx<C: GenericClient>(c: &C, account: &str, name: &str) -> R<Option<Role>> {
    let found = row(
        c,
        &format!("{ROLE_COLUMNS} WHERE account_id = $1 AND lower(role_name) = $2"),
        &[&account, &fold(name)],
        &format!("reading role {name} of account {account}"),
    )
    .await?;
    let Some(found) = found else {
        return Ok(None);
    };
    let mut role = role_row(&found)?;
    role.tags = tags_of(c, account, "role", &role.role_name).await?;
    Ok(Some(role))
}

async fn get_policy_tx<C: GenericClient>(c: &C, arn: &str) -> R<Option<CustomerPolicy>> {
    let found = row(
        c,
        &format!("{POLICY_COLUMNS} WHERE p.arn = $1"),
        &[&arn],
        &format!("reading policy {arn}"),
    )
    .await?;
    let Some(found) = found else {
        return Ok(None);
    };
    let mut policy = policy_row(&found)?;
    policy.tags = tags_of(c, &policy.account_id, "policy", &policy.policy_name).await?;
    Ok(Some(policy))
}

/// True when `path` starts with `prefix` (byte-wise).
fn under(path: &str, prefix: &str) -> bool {
    path.as_bytes().starts_with(prefix.as_bytes())
}

fn name_taken(kind: &str, name: &str, account: &str) -> Failure {
    MetaError::entity_exists(format!(
        "A {kind} with name {name} already exists in account {account} (names are compared without regard to case)."
    ))
    .into()
}

fn key_not_found(id: &str, user: &str, account: &str) -> Failure {
    MetaError::no_such_entity(format!(
        "The Access Key with id {id} cannot be found for user {user} of account {account}."
    ))
    .into()
}

fn inline_not_found(policy: &str, kind: &str, name: &str, account: &str) -> Failure {
    MetaError::no_such_entity(format!(
        "The {kind} policy with name {policy} cannot be found for {kind} {name} of account {account}."
    ))
    .into()
}

fn policy_not_found(arn: &str, account: &str) -> Failure {
    MetaError::no_such_entity(format!(
        "Policy {arn} does not exist or is not attachable in account {account}."
    ))
    .into()
}

/// How often an insert that lost its name to a row deleted before we could read it is
/// tried again.
const NAME_RACE_ATTEMPTS: usize = 3;

async fn create_user_tx<C: GenericClient>(c: &C, user: &User) -> R<User> {
    let p = PrincipalRef::User(user.user_name.clone());
    for _ in 0..NAME_RACE_ATTEMPTS {
        let inserted = exec(
            c,
            "INSERT INTO iam_users (user_id, account_id, user_name, path, created_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (account_id, lower(user_name)) DO NOTHING",
            &[
                &user.user_id,
                &user.account_id,
                &user.user_name,
                &user.path,
                &user.created_at,
            ],
            &format!("creating user {}", user.user_name),
        )
        .await?;
        if inserted > 0 {
            put_tags(c, &user.account_id, "user", &user.user_name, &user.tags).await?;
            return get_user_tx(c, &user.account_id, &user.user_name)
                .await?
                .ok_or_else(|| {
                    MetaError::Backend(format!("user {} vanished", user.user_name)).into()
                });
        }
        if let Some(existing) = principal_name(c, &user.account_id, &p, false).await? {
            return Err(name_taken("user", &existing, &user.account_id));
        }
    }
    Err(name_taken("user", &user.user_name, &user.account_id))
}

async fn create_role_tx<C: GenericClient>(c: &C, role: &Role) -> R<Role> {
    let p = PrincipalRef::Role(role.role_name.clone());
    let duration = i64::from(role.max_session_duration);
    for _ in 0..NAME_RACE_ATTEMPTS {
        let inserted = exec(
            c,
            "INSERT INTO iam_roles (role_id, account_id, role_name, path, assume_role_policy,
                                    description, max_session_duration, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (account_id, lower(role_name)) DO NOTHING",
            &[
                &role.role_id,
                &role.account_id,
                &role.role_name,
                &role.path,
                &role.assume_role_policy,
                &role.description,
                &duration,
                &role.created_at,
            ],
            &format!("creating role {}", role.role_name),
        )
        .await?;
        if inserted > 0 {
            put_tags(c, &role.account_id, "role", &role.role_name, &role.tags).await?;
            return get_role_tx(c, &role.account_id, &role.role_name)
                .await?
                .ok_or_else(|| {
                    MetaError::Backend(format!("role {} vanished", role.role_name)).into()
                });
        }
        if let Some(existing) = principal_name(c, &role.account_id, &p, false).await? {
            return Err(name_taken("role", &existing, &role.account_id));
        }
    }
    Err(name_taken("role", &role.role_name, &role.account_id))
}

async fn create_policy_tx<C: GenericClient>(c: &C, policy: &CustomerPolicy) -> R<CustomerPolicy> {
    for _ in 0..NAME_RACE_ATTEMPTS {
        // Any unique key taken (name, ARN or id) inserts nothing.
        let inserted = exec(
            c,
            "INSERT INTO iam_policies (policy_id, account_id, policy_name, path, arn, document,
                                       default_version_id, description, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT DO NOTHING",
            &[
                &policy.policy_id,
                &policy.account_id,
                &policy.policy_name,
                &policy.path,
                &policy.arn,
                &policy.document,
                &policy.default_version_id,
                &policy.description,
                &policy.created_at,
                &policy.updated_at,
            ],
            &format!("creating policy {}", policy.arn),
        )
        .await?;
        if inserted > 0 {
            put_tags(
                c,
                &policy.account_id,
                "policy",
                &policy.policy_name,
                &policy.tags,
            )
            .await?;
            return get_policy_tx(c, &policy.arn).await?.ok_or_else(|| {
                MetaError::Backend(format!("policy {} vanished", policy.arn)).into()
            });
        }
        let existing = row(
            c,
            "SELECT arn FROM iam_policies
             WHERE (account_id = $1 AND lower(policy_name) = $2) OR arn = $3 LIMIT 1",
            &[&policy.account_id, &fold(&policy.policy_name), &policy.arn],
            &format!("looking up policy {}", policy.policy_name),
        )
        .await?;
        if let Some(existing) = existing {
            let arn: String = get(&existing, 0)?;
            return Err(MetaError::entity_exists(format!(
                "A policy called {} already exists in account {} ({arn}); policy names are compared without regard to case.",
                policy.policy_name, policy.account_id
            ))
            .into());
        }
        let id_taken = count(
            c,
            "SELECT count(*) FROM iam_policies WHERE policy_id = $1",
            &[&policy.policy_id],
            &format!("looking up policy id {}", policy.policy_id),
        )
        .await?;
        if id_taken > 0 {
            return Err(MetaError::Backend(format!(
                "creating policy {}: policy id {} is already used",
                policy.arn, policy.policy_id
            ))
            .into());
        }
    }
    Err(MetaError::Backend(format!(
        "creating policy {}: its name kept being taken and freed concurrently; try again",
        policy.arn
    ))
    .into())
}

#[async_trait]
impl IamStore for PgStore {
    async fn create_user(&self, user: &User) -> Result<User, MetaError> {
        let what = format!("creating user {}", user.user_name);
        transaction!(self, &what, |tx| create_user_tx(&tx, user))
    }

    async fn get_user(&self, account_id: &str, user_name: &str) -> Result<Option<User>, MetaError> {
        let c = self.client().await?;
        Ok(get_user_tx(&c, account_id, user_name).await?)
    }

    async fn list_users(
        &self,
        account_id: &str,
        path_prefix: &str,
    ) -> Result<Vec<User>, MetaError> {
        let c = self.client().await?;
        let found = rows(
            &c,
            &format!("{USER_COLUMNS} WHERE account_id = $1 ORDER BY lower(user_name)"),
            &[&account_id],
            &format!("listing the users of account {account_id}"),
        )
        .await?;
        let mut tags = tags_of_kind(&c, account_id, "user").await?;
        let mut out = Vec::with_capacity(found.len());
        for r in &found {
            let mut u = user_row(r)?;
            if under(&u.path, path_prefix) {
                u.tags = tags.remove(&fold(&u.user_name)).unwrap_or_default();
                out.push(u);
            }
        }
        Ok(out)
    }

    async fn delete_user(&self, account_id: &str, user_name: &str) -> Result<(), MetaError> {
        let p = PrincipalRef::User(user_name.to_string());
        let what = format!("deleting user {user_name} of account {account_id}");
        transaction!(self, &what, |tx| async {
            let name = require_principal(&tx, account_id, &p, true).await?;
            let keys = count(
                &tx,
                "SELECT count(*) FROM access_keys
                 WHERE account_id = $1 AND lower(user_name) = $2",
                &[&account_id, &fold(&name)],
                &format!("counting the access keys of user {name}"),
            )
            .await?;
            let (inline, attached) = dependents(&tx, account_id, &p).await?;
            if keys + inline + attached > 0 {
                return Err(Failure::from(MetaError::delete_conflict(format!(
                    "Cannot delete user {name} of account {account_id}: it still has {keys} access key(s), \
                     {inline} inline policy(ies) and {attached} attached policy(ies); delete or detach them first."
                ))));
            }
            delete_tags(&tx, account_id, "user", &name).await?;
            exec(
                &tx,
                "DELETE FROM iam_users WHERE account_id = $1 AND lower(user_name) = $2",
                &[&account_id, &fold(&name)],
                &format!("deleting user {name}"),
            )
            .await?;
            Ok(())
        })
    }

    async fn tag_principal(
        &self,
        account_id: &str,
        principal: &PrincipalRef,
        tags: &[(String, String)],
    ) -> Result<(), MetaError> {
        let what = format!("tagging {principal} of account {account_id}");
        transaction!(self, &what, |tx| async {
            let name = require_principal(&tx, account_id, principal, true).await?;
            put_tags(&tx, account_id, principal.kind(), &name, tags).await
        })
    }

    async fn untag_principal(
        &self,
        account_id: &str,
        principal: &PrincipalRef,
        keys: &[String],
    ) -> Result<(), MetaError> {
        let what = format!("untagging {principal} of account {account_id}");
        transaction!(self, &what, |tx| async {
            let name = require_principal(&tx, account_id, principal, true).await?;
            exec(
                &tx,
                "DELETE FROM iam_tags
                 WHERE account_id = $1 AND kind = $2 AND lower(name) = $3 AND key = ANY($4)",
                &[&account_id, &principal.kind(), &fold(&name), &keys],
                &format!("untagging {principal}"),
            )
            .await?;
            Ok(())
        })
    }

    async fn create_user_access_key(&self, key: &AccessKey) -> Result<AccessKey, MetaError> {
        let what = format!("creating access key {}", key.access_key_id);
        transaction!(self, &what, |tx| async {
            let p = PrincipalRef::User(key.user_name.clone());
            // The user's row lock serializes key creation: the quota holds.
            let user_name = require_principal(&tx, &key.account_id, &p, true).await?;
            claim_access_key_id(&tx, &key.access_key_id).await?;
            let held = count(
                &tx,
                "SELECT count(*) FROM access_keys
                 WHERE account_id = $1 AND lower(user_name) = $2",
                &[&key.account_id, &fold(&user_name)],
                &format!("counting the access keys of user {user_name}"),
            )
            .await?;
            if held >= MAX_ACCESS_KEYS_PER_USER as i64 {
                return Err(Failure::from(MetaError::limit_exceeded(format!(
                    "Cannot exceed quota for AccessKeysPerUser: user {user_name} of account {} already has {held} access keys \
                     (at most {MAX_ACCESS_KEYS_PER_USER}); delete one first.",
                    key.account_id
                ))));
            }
            let key = AccessKey {
                user_name,
                ..key.clone()
            };
            insert_access_key(&tx, &key).await?;
            Ok(key)
        })
    }

    async fn set_access_key_active(
        &self,
        account_id: &str,
        user_name: &str,
        access_key_id: &str,
        active: bool,
    ) -> Result<(), MetaError> {
        let p = PrincipalRef::User(user_name.to_string());
        let what = format!("updating access key {access_key_id}");
        transaction!(self, &what, |tx| async {
            let name = require_principal(&tx, account_id, &p, false).await?;
            let n = exec(
                &tx,
                "UPDATE access_keys SET active = $4
                 WHERE access_key_id = $1 AND account_id = $2 AND lower(user_name) = $3",
                &[&access_key_id, &account_id, &fold(&name), &active],
                &what,
            )
            .await?;
            if n == 0 {
                return Err(key_not_found(access_key_id, &name, account_id));
            }
            Ok(())
        })
    }

    async fn list_user_access_keys(
        &self,
        account_id: &str,
        user_name: &str,
    ) -> Result<Vec<AccessKey>, MetaError> {
        let c = self.client().await?;
        let p = PrincipalRef::User(user_name.to_string());
        let name = require_principal(&c, account_id, &p, false).await?;
        let found = rows(
            &c,
            &format!(
                "{ACCESS_KEY_COLUMNS} WHERE account_id = $1 AND lower(user_name) = $2
                 ORDER BY access_key_id"
            ),
            &[&account_id, &fold(&name)],
            &format!("listing the access keys of user {name}"),
        )
        .await?;
        Ok(found.iter().map(access_key).collect::<R<_>>()?)
    }

    async fn delete_user_access_key(
        &self,
        account_id: &str,
        user_name: &str,
        access_key_id: &str,
    ) -> Result<(), MetaError> {
        let p = PrincipalRef::User(user_name.to_string());
        let what = format!("deleting access key {access_key_id}");
        transaction!(self, &what, |tx| async {
            let name = require_principal(&tx, account_id, &p, true).await?;
            let n = exec(
                &tx,
                "DELETE FROM access_keys
                 WHERE access_key_id = $1 AND account_id = $2 AND lower(user_name) = $3",
                &[&access_key_id, &account_id, &fold(&name)],
                &what,
            )
            .await?;
            if n == 0 {
                return Err(key_not_found(access_key_id, &name, account_id));
            }
            Ok(())
        })
    }

    async fn create_role(&self, role: &Role) -> Result<Role, MetaError> {
        let what = format!("creating role {}", role.role_name);
        transaction!(self, &what, |tx| create_role_tx(&tx, role))
    }

    async fn get_role(&self, account_id: &str, role_name: &str) -> Result<Option<Role>, MetaError> {
        let c = self.client().await?;
        Ok(get_role_tx(&c, account_id, role_name).await?)
    }

    async fn list_roles(
        &self,
        account_id: &str,
        path_prefix: &str,
    ) -> Result<Vec<Role>, MetaError> {
        let c = self.client().await?;
        let found = rows(
            &c,
            &format!("{ROLE_COLUMNS} WHERE account_id = $1 ORDER BY lower(role_name)"),
            &[&account_id],
            &format!("listing the roles of account {account_id}"),
        )
        .await?;
        let mut tags = tags_of_kind(&c, account_id, "role").await?;
        let mut out = Vec::with_capacity(found.len());
        for r in &found {
            let mut role = role_row(r)?;
            if under(&role.path, path_prefix) {
                role.tags = tags.remove(&fold(&role.role_name)).unwrap_or_default();
                out.push(role);
            }
        }
        Ok(out)
    }

    async fn delete_role(&self, account_id: &str, role_name: &str) -> Result<(), MetaError> {
        let p = PrincipalRef::Role(role_name.to_string());
        let what = format!("deleting role {role_name} of account {account_id}");
        transaction!(self, &what, |tx| async {
            let name = require_principal(&tx, account_id, &p, true).await?;
            let (inline, attached) = dependents(&tx, account_id, &p).await?;
            if inline + attached > 0 {
                return Err(Failure::from(MetaError::delete_conflict(format!(
                    "Cannot delete role {name} of account {account_id}: it still has {inline} inline policy(ies) \
                     and {attached} attached policy(ies); delete or detach them first."
                ))));
            }
            delete_tags(&tx, account_id, "role", &name).await?;
            exec(
                &tx,
                "DELETE FROM iam_sessions WHERE account_id = $1 AND lower(role_name) = $2",
                &[&account_id, &fold(&name)],
                &format!("ending the sessions of role {name}"),
            )
            .await?;
            exec(
                &tx,
                "DELETE FROM iam_roles WHERE account_id = $1 AND lower(role_name) = $2",
                &[&account_id, &fold(&name)],
                &format!("deleting role {name}"),
            )
            .await?;
            Ok(())
        })
    }

    async fn update_assume_role_policy(
        &self,
        account_id: &str,
        role_name: &str,
        document: &str,
    ) -> Result<(), MetaError> {
        let p = PrincipalRef::Role(role_name.to_string());
        let what = format!("updating the trust policy of role {role_name}");
        transaction!(self, &what, |tx| async {
            let name = require_principal(&tx, account_id, &p, true).await?;
            exec(
                &tx,
                "UPDATE iam_roles SET assume_role_policy = $3
                 WHERE account_id = $1 AND lower(role_name) = $2",
                &[&account_id, &fold(&name), &document],
                &format!("updating the trust policy of role {name}"),
            )
            .await?;
            Ok(())
        })
    }

    async fn put_principal_policy(
        &self,
        account_id: &str,
        principal: &PrincipalRef,
        policy_name: &str,
        document: &str,
    ) -> Result<(), MetaError> {
        let what = format!("storing inline policy {policy_name} of {principal}");
        transaction!(self, &what, |tx| async {
            let name = require_principal(&tx, account_id, principal, true).await?;
            exec(
                &tx,
                "INSERT INTO iam_inline_policies
                     (account_id, kind, principal_name, policy_name, document)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (account_id, kind, lower(principal_name), lower(policy_name))
                 DO UPDATE SET document = excluded.document",
                &[
                    &account_id,
                    &principal.kind(),
                    &name,
                    &policy_name,
                    &document,
                ],
                &what,
            )
            .await?;
            Ok(())
        })
    }

    async fn get_principal_policy(
        &self,
        account_id: &str,
        principal: &PrincipalRef,
        policy_name: &str,
    ) -> Result<InlinePolicy, MetaError> {
        let c = self.client().await?;
        let name = require_principal(&c, account_id, principal, false).await?;
        let found = row(
            &c,
            "SELECT policy_name, document FROM iam_inline_policies
             WHERE account_id = $1 AND kind = $2 AND lower(principal_name) = $3
               AND lower(policy_name) = $4",
            &[
                &account_id,
                &principal.kind(),
                &fold(&name),
                &fold(policy_name),
            ],
            &format!("reading inline policy {policy_name} of {principal}"),
        )
        .await?;
        let Some(found) = found else {
            return Err(inline_not_found(policy_name, principal.kind(), &name, account_id).into());
        };
        Ok(InlinePolicy {
            name: get(&found, 0)?,
            document: get(&found, 1)?,
        })
    }

    async fn list_principal_policies(
        &self,
        account_id: &str,
        principal: &PrincipalRef,
    ) -> Result<Vec<String>, MetaError> {
        let c = self.client().await?;
        let name = require_principal(&c, account_id, principal, false).await?;
        let found = rows(
            &c,
            "SELECT policy_name FROM iam_inline_policies
             WHERE account_id = $1 AND kind = $2 AND lower(principal_name) = $3
             ORDER BY lower(policy_name)",
            &[&account_id, &principal.kind(), &fold(&name)],
            &format!("listing the inline policies of {principal}"),
        )
        .await?;
        Ok(found.iter().map(|r| get(r, 0)).collect::<R<_>>()?)
    }

    async fn delete_principal_policy(
        &self,
        account_id: &str,
        principal: &PrincipalRef,
        policy_name: &str,
    ) -> Result<(), MetaError> {
        let what = format!("deleting inline policy {policy_name} of {principal}");
        transaction!(self, &what, |tx| async {
            let name = require_principal(&tx, account_id, principal, true).await?;
            let n = exec(
                &tx,
                "DELETE FROM iam_inline_policies
                 WHERE account_id = $1 AND kind = $2 AND lower(principal_name) = $3
                   AND lower(policy_name) = $4",
                &[
                    &account_id,
                    &principal.kind(),
                    &fold(&name),
                    &fold(policy_name),
                ],
                &what,
            )
            .await?;
            if n == 0 {
                return Err(inline_not_found(
                    policy_name,
                    principal.kind(),
                    &name,
                    account_id,
                ));
            }
            Ok(())
        })
    }

    async fn attach_principal_policy(
        &self,
        account_id: &str,
        principal: &PrincipalRef,
        policy_arn: &str,
    ) -> Result<(), MetaError> {
        let what = format!("attaching policy {policy_arn} to {principal}");
        transaction!(self, &what, |tx| async {
            let name = require_principal(&tx, account_id, principal, true).await?;
            if !policy_arn.starts_with(AWS_MANAGED_POLICY_PREFIX) {
                // FOR SHARE: the policy cannot be deleted before this attachment is in.
                let owner = row(
                    &tx,
                    "SELECT account_id FROM iam_policies WHERE arn = $1 FOR SHARE",
                    &[&policy_arn],
                    &format!("looking up policy {policy_arn}"),
                )
                .await?;
                let owner: Option<String> = owner.map(|r| get(&r, 0)).transpose()?;
                if owner.as_deref() != Some(account_id) {
                    return Err(policy_not_found(policy_arn, account_id));
                }
            }
            let already = count(
                &tx,
                "SELECT count(*) FROM iam_attachments
                 WHERE account_id = $1 AND kind = $2 AND lower(principal_name) = $3
                   AND policy_arn = $4",
                &[&account_id, &principal.kind(), &fold(&name), &policy_arn],
                &format!("checking the policies attached to {principal}"),
            )
            .await?;
            if already > 0 {
                return Ok(());
            }
            let (_, attached) = dependents(&tx, account_id, principal).await?;
            if attached >= MAX_ATTACHED_POLICIES as i64 {
                return Err(Failure::from(MetaError::limit_exceeded(format!(
                    "Cannot exceed quota for PoliciesPerUserOrRole: {} {name} of account {account_id} already has \
                     {attached} managed policies attached (at most {MAX_ATTACHED_POLICIES}).",
                    principal.kind()
                ))));
            }
            exec(
                &tx,
                "INSERT INTO iam_attachments
                     (account_id, kind, principal_name, policy_arn, attached_at)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &account_id,
                    &principal.kind(),
                    &name,
                    &policy_arn,
                    &wharf_meta::now_millis(),
                ],
                &what,
            )
            .await?;
            Ok(())
        })
    }

    async fn detach_principal_policy(
        &self,
        account_id: &str,
        principal: &PrincipalRef,
        policy_arn: &str,
    ) -> Result<(), MetaError> {
        let what = format!("detaching policy {policy_arn} from {principal}");
        transaction!(self, &what, |tx| async {
            let name = require_principal(&tx, account_id, principal, true).await?;
            let n = exec(
                &tx,
                "DELETE FROM iam_attachments
                 WHERE account_id = $1 AND kind = $2 AND lower(principal_name) = $3
                   AND policy_arn = $4",
                &[&account_id, &principal.kind(), &fold(&name), &policy_arn],
                &what,
            )
            .await?;
            if n == 0 {
                return Err(Failure::from(MetaError::no_such_entity(format!(
                    "Policy {policy_arn} is not attached to {} {name} of account {account_id}.",
                    principal.kind()
                ))));
            }
            Ok(())
        })
    }

    async fn list_attached_principal_policies(
        &self,
        account_id: &str,
        principal: &PrincipalRef,
    ) -> Result<Vec<String>, MetaError> {
        let c = self.client().await?;
        let name = require_principal(&c, account_id, principal, false).await?;
        let found = rows(
            &c,
            "SELECT policy_arn FROM iam_attachments
             WHERE account_id = $1 AND kind = $2 AND lower(principal_name) = $3
             ORDER BY policy_arn",
            &[&account_id, &principal.kind(), &fold(&name)],
            &format!("listing the policies attached to {principal}"),
        )
        .await?;
        Ok(found.iter().map(|r| get(r, 0)).collect::<R<_>>()?)
    }

    async fn count_policy_attachments(
        &self,
        account_id: &str,
        policy_arn: &str,
    ) -> Result<u32, MetaError> {
        let c = self.client().await?;
        let n = count(
            &c,
            "SELECT count(*) FROM iam_attachments WHERE policy_arn = $1 AND account_id = $2",
            &[&policy_arn, &account_id],
            &format!("counting the attachments of policy {policy_arn}"),
        )
        .await?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    async fn create_policy(&self, policy: &CustomerPolicy) -> Result<CustomerPolicy, MetaError> {
        let what = format!("creating policy {}", policy.arn);
        transaction!(self, &what, |tx| create_policy_tx(&tx, policy))
    }

    async fn get_policy(&self, policy_arn: &str) -> Result<Option<CustomerPolicy>, MetaError> {
        let c = self.client().await?;
        Ok(get_policy_tx(&c, policy_arn).await?)
    }

    async fn list_policies(&self, account_id: &str) -> Result<Vec<CustomerPolicy>, MetaError> {
        let c = self.client().await?;
        let found = rows(
            &c,
            &format!("{POLICY_COLUMNS} WHERE p.account_id = $1 ORDER BY lower(p.policy_name)"),
            &[&account_id],
            &format!("listing the policies of account {account_id}"),
        )
        .await?;
        let mut tags = tags_of_kind(&c, account_id, "policy").await?;
        let mut out = Vec::with_capacity(found.len());
        for r in &found {
            let mut p = policy_row(r)?;
            p.tags = tags.remove(&fold(&p.policy_name)).unwrap_or_default();
            out.push(p);
        }
        Ok(out)
    }

    async fn delete_policy(&self, policy_arn: &str) -> Result<(), MetaError> {
        let what = format!("deleting policy {policy_arn}");
        transaction!(self, &what, |tx| async {
            // FOR UPDATE: attachments being made (FOR SHARE) finish first.
            let found = row(
                &tx,
                "SELECT account_id, policy_name FROM iam_policies WHERE arn = $1 FOR UPDATE",
                &[&policy_arn],
                &format!("looking up policy {policy_arn}"),
            )
            .await?;
            let Some(found) = found else {
                return Err(Failure::from(MetaError::no_such_entity(format!(
                    "Policy {policy_arn} does not exist or is not attachable."
                ))));
            };
            let account: String = get(&found, 0)?;
            let name: String = get(&found, 1)?;
            let attached = count(
                &tx,
                "SELECT count(*) FROM iam_attachments WHERE policy_arn = $1 AND account_id = $2",
                &[&policy_arn, &account],
                &format!("counting the attachments of policy {policy_arn}"),
            )
            .await?;
            if attached > 0 {
                return Err(Failure::from(MetaError::delete_conflict(format!(
                    "Cannot delete policy {policy_arn}: it is attached to {attached} user(s) or role(s); detach it first."
                ))));
            }
            delete_tags(&tx, &account, "policy", &name).await?;
            exec(
                &tx,
                "DELETE FROM iam_policies WHERE arn = $1",
                &[&policy_arn],
                &what,
            )
            .await?;
            Ok(())
        })
    }

    async fn identity_policies(
        &self,
        account_id: &str,
        principal: &PrincipalRef,
    ) -> Result<Vec<(String, IdentityPolicy)>, MetaError> {
        let c = self.client().await?;
        let Some(name) = principal_name(&c, account_id, principal, false).await? else {
            return Ok(Vec::new());
        };
        let who = format!("{} {name}", principal.kind());
        let folded = fold(&name);
        let inline = rows(
            &c,
            "SELECT policy_name, document FROM iam_inline_policies
             WHERE account_id = $1 AND kind = $2 AND lower(principal_name) = $3
             ORDER BY lower(policy_name)",
            &[&account_id, &principal.kind(), &folded],
            &format!("reading the inline policies of {who}"),
        )
        .await?;
        let attached = rows(
            &c,
            "SELECT a.policy_arn, p.document FROM iam_attachments a
             LEFT JOIN iam_policies p ON p.arn = a.policy_arn AND p.account_id = a.account_id
             WHERE a.account_id = $1 AND a.kind = $2 AND lower(a.principal_name) = $3
             ORDER BY a.policy_arn",
            &[&account_id, &principal.kind(), &folded],
            &format!("reading the policies attached to {who}"),
        )
        .await?;
        let mut out = Vec::with_capacity(inline.len() + attached.len());
        for r in &inline {
            let policy: String = get(r, 0)?;
            out.push((
                format!("inline policy '{policy}' of {who}"),
                IdentityPolicy::Inline {
                    name: policy,
                    document: get(r, 1)?,
                },
            ));
        }
        for r in &attached {
            let arn: String = get(r, 0)?;
            out.push((
                format!("managed policy {arn} attached to {who}"),
                IdentityPolicy::Managed {
                    arn,
                    document: get(r, 1)?,
                },
            ));
        }
        Ok(out)
    }

    async fn create_session(&self, session: &Session) -> Result<(), MetaError> {
        let s = session;
        let what = format!("storing session {} of role {}", s.session_name, s.role_name);
        transaction!(self, &what, |tx| async {
            lock_key_id(&tx, &s.access_key_id).await?;
            let taken = count(
                &tx,
                "SELECT (SELECT count(*) FROM iam_sessions WHERE access_key_id = $1)
                      + (SELECT count(*) FROM access_keys WHERE access_key_id = $1)",
                &[&s.access_key_id],
                "checking session ids",
            )
            .await?;
            if taken > 0 {
                return Err(Failure::from(MetaError::AccessKeyExists(
                    s.access_key_id.clone(),
                )));
            }
            exec(
                &tx,
                "INSERT INTO iam_sessions (access_key_id, secret_access_key, session_token,
                     account_id, role_name, role_path, session_name, expires_at, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    &s.access_key_id,
                    &s.secret_access_key,
                    &s.session_token,
                    &s.account_id,
                    &s.role_name,
                    &s.role_path,
                    &s.session_name,
                    &s.expires_at,
                    &s.created_at,
                ],
                &what,
            )
            .await?;
            Ok(())
        })
    }

    async fn get_session(&self, access_key_id: &str) -> Result<Option<Session>, MetaError> {
        let c = self.client().await?;
        let found = row(
            &c,
            &format!("{SESSION_COLUMNS} WHERE access_key_id = $1"),
            &[&access_key_id],
            &format!("reading session {access_key_id}"),
        )
        .await?;
        Ok(found.as_ref().map(session_row).transpose()?)
    }

    async fn purge_expired_sessions(&self, now: Millis) -> Result<u64, MetaError> {
        let c = self.client().await?;
        Ok(exec(
            &c,
            "DELETE FROM iam_sessions WHERE expires_at <= $1",
            &[&now],
            "purging expired sessions",
        )
        .await?)
    }
}
