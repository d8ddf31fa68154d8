//! [`IamStore`] on [`SqliteStore`]: the `iam_*` tables of schema version 6 and the
//! `access_keys` table of the metadata store.
//!
//! Names are `COLLATE NOCASE` columns, so equality, uniqueness and ordering ignore
//! ASCII case (IAM names are ASCII). Rows that refer to a user or role (tags, inline
//! policies, attachments, access keys) store the principal's own spelling.

use crate::iam::{
    CustomerPolicy, IamStore, IdentityPolicy, InlinePolicy, PrincipalRef, Role, Session, User,
    AWS_MANAGED_POLICY_PREFIX, MAX_ACCESS_KEYS_PER_USER, MAX_ATTACHED_POLICIES, MAX_TAGS,
};
use crate::sqlite::Context;
use crate::{AccessKey, MetaError, Millis, SqliteStore};
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;

type Tags = Vec<(String, String)>;

/// The stored spelling of a user's or role's name, if it exists.
fn principal_name(
    conn: &Connection,
    account: &str,
    p: &PrincipalRef,
) -> Result<Option<String>, MetaError> {
    let sql = match p {
        PrincipalRef::User(_) => {
            "SELECT user_name FROM iam_users WHERE account_id = ?1 AND user_name = ?2"
        }
        PrincipalRef::Role(_) => {
            "SELECT role_name FROM iam_roles WHERE account_id = ?1 AND role_name = ?2"
        }
    };
    conn.prepare_cached(sql)
        .and_then(|mut st| st.query_row([account, p.name()], |r| r.get(0)).optional())
        .ctx(&format!("looking up {p} in account {account}"))
}

/// IAM's message for a missing user or role, with the account.
fn not_found(account: &str, p: &PrincipalRef) -> MetaError {
    MetaError::no_such_entity(format!(
        "The {} with name {} cannot be found in account {account}.",
        p.kind(),
        p.name()
    ))
}

/// The stored name of the principal, or [`IamErrorKind::NoSuchEntity`].
///
/// [`IamErrorKind::NoSuchEntity`]: crate::IamErrorKind::NoSuchEntity
fn require_principal(
    conn: &Connection,
    account: &str,
    p: &PrincipalRef,
) -> Result<String, MetaError> {
    principal_name(conn, account, p)?.ok_or_else(|| not_found(account, p))
}

/// The tags of one entity, sorted by key.
fn tags_of(conn: &Connection, account: &str, kind: &str, name: &str) -> Result<Tags, MetaError> {
    conn.prepare_cached(
        "SELECT key, value FROM iam_tags
         WHERE account_id = ?1 AND kind = ?2 AND name = ?3 ORDER BY key",
    )
    .and_then(|mut st| {
        st.query_map([account, kind, name], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect()
    })
    .ctx(&format!("reading the tags of {kind} {name}"))
}

/// The tags of every entity of a kind in an account, by lower-cased name.
fn tags_of_kind(
    conn: &Connection,
    account: &str,
    kind: &str,
) -> Result<HashMap<String, Tags>, MetaError> {
    let rows: Vec<(String, String, String)> = conn
        .prepare_cached(
            "SELECT name, key, value FROM iam_tags
             WHERE account_id = ?1 AND kind = ?2 ORDER BY name, key",
        )
        .and_then(|mut st| {
            st.query_map([account, kind], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })
        .ctx(&format!(
            "reading the tags of the {kind}s of account {account}"
        ))?;
    let mut out: HashMap<String, Tags> = HashMap::new();
    for (name, key, value) in rows {
        out.entry(name.to_ascii_lowercase())
            .or_default()
            .push((key, value));
    }
    Ok(out)
}

/// Adds or replaces tags, keeping at most [`MAX_TAGS`].
fn put_tags(
    conn: &Connection,
    account: &str,
    kind: &str,
    name: &str,
    tags: &[(String, String)],
) -> Result<(), MetaError> {
    for (key, value) in tags {
        conn.prepare_cached(
            "INSERT INTO iam_tags (account_id, kind, name, key, value) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (account_id, kind, name, key) DO UPDATE SET value = excluded.value",
        )
        .and_then(|mut st| st.execute(params![account, kind, name, key, value]))
        .ctx(&format!("tagging {kind} {name}"))?;
    }
    let count: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM iam_tags WHERE account_id = ?1 AND kind = ?2 AND name = ?3",
        )
        .and_then(|mut st| st.query_row([account, kind, name], |r| r.get(0)))
        .ctx(&format!("counting the tags of {kind} {name}"))?;
    if count > MAX_TAGS as i64 {
        return Err(MetaError::limit_exceeded(format!(
            "The {kind} {name} in account {account} would have {count} tags; at most {MAX_TAGS} are allowed."
        )));
    }
    Ok(())
}

fn delete_tags(conn: &Connection, account: &str, kind: &str, name: &str) -> Result<(), MetaError> {
    conn.prepare_cached("DELETE FROM iam_tags WHERE account_id = ?1 AND kind = ?2 AND name = ?3")
        .and_then(|mut st| st.execute([account, kind, name]))
        .ctx(&format!("deleting the tags of {kind} {name}"))?;
    Ok(())
}

fn count(conn: &Connection, sql: &str, args: &[&str], what: &str) -> Result<i64, MetaError> {
    conn.prepare_cached(sql)
        .and_then(|mut st| st.query_row(rusqlite::params_from_iter(args), |r| r.get(0)))
        .ctx(what)
}

/// Counts what still hangs on a principal: (inline policies, attached policies).
fn dependents(conn: &Connection, account: &str, p: &PrincipalRef) -> Result<(i64, i64), MetaError> {
    let args = [account, p.kind(), p.name()];
    let inline = count(
        conn,
        "SELECT count(*) FROM iam_inline_policies
         WHERE account_id = ?1 AND kind = ?2 AND principal_name = ?3",
        &args,
        &format!("counting the inline policies of {p}"),
    )?;
    let attached = count(
        conn,
        "SELECT count(*) FROM iam_attachments
         WHERE account_id = ?1 AND kind = ?2 AND principal_name = ?3",
        &args,
        &format!("counting the policies attached to {p}"),
    )?;
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
const KEY_COLUMNS: &str = "SELECT access_key_id, secret_access_key, account_id, user_name,
    active, created_at FROM access_keys";

fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        account_id: r.get(0)?,
        user_name: r.get(1)?,
        user_id: r.get(2)?,
        path: r.get(3)?,
        created_at: r.get(4)?,
        tags: Vec::new(),
    })
}

fn role_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Role> {
    Ok(Role {
        account_id: r.get(0)?,
        role_name: r.get(1)?,
        role_id: r.get(2)?,
        path: r.get(3)?,
        assume_role_policy: r.get(4)?,
        description: r.get(5)?,
        max_session_duration: r.get(6)?,
        created_at: r.get(7)?,
        tags: Vec::new(),
    })
}

fn policy_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CustomerPolicy> {
    Ok(CustomerPolicy {
        account_id: r.get(0)?,
        policy_name: r.get(1)?,
        policy_id: r.get(2)?,
        path: r.get(3)?,
        arn: r.get(4)?,
        document: r.get(5)?,
        default_version_id: r.get(6)?,
        description: r.get(7)?,
        created_at: r.get(8)?,
        updated_at: r.get(9)?,
        attachment_count: r.get(10)?,
        tags: Vec::new(),
    })
}

fn session_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Session> {
    Ok(Session {
        access_key_id: r.get(0)?,
        secret_access_key: r.get(1)?,
        session_token: r.get(2)?,
        account_id: r.get(3)?,
        role_name: r.get(4)?,
        role_path: r.get(5)?,
        session_name: r.get(6)?,
        expires_at: r.get(7)?,
        created_at: r.get(8)?,
    })
}

fn key_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AccessKey> {
    Ok(AccessKey {
        access_key_id: r.get(0)?,
        secret_access_key: r.get(1)?,
        account_id: r.get(2)?,
        user_name: r.get(3)?,
        active: r.get(4)?,
        created_at: r.get(5)?,
    })
}

fn get_user_tx(conn: &Connection, account: &str, name: &str) -> Result<Option<User>, MetaError> {
    let user = conn
        .prepare_cached(&format!(
            "{USER_COLUMNS} WHERE account_id = ?1 AND user_name = ?2"
        ))
        .and_then(|mut st| st.query_row([account, name], user_row).optional())
        .ctx(&format!("reading user {name} of account {account}"))?;
    user.map(|mut u| {
        u.tags = tags_of(conn, account, "user", &u.user_name)?;
        Ok(u)
    })
    .transpose()
}

fn get_role_tx(conn: &Connection, account: &str, name: &str) -> Result<Option<Role>, MetaError> {
    let role = conn
        .prepare_cached(&format!(
            "{ROLE_COLUMNS} WHERE account_id = ?1 AND role_name = ?2"
        ))
        .and_then(|mut st| st.query_row([account, name], role_row).optional())
        .ctx(&format!("reading role {name} of account {account}"))?;
    role.map(|mut r| {
        r.tags = tags_of(conn, account, "role", &r.role_name)?;
        Ok(r)
    })
    .transpose()
}

fn get_policy_tx(conn: &Connection, arn: &str) -> Result<Option<CustomerPolicy>, MetaError> {
    let policy = conn
        .prepare_cached(&format!("{POLICY_COLUMNS} WHERE p.arn = ?1"))
        .and_then(|mut st| st.query_row([arn], policy_row).optional())
        .ctx(&format!("reading policy {arn}"))?;
    policy
        .map(|mut p| {
            p.tags = tags_of(conn, &p.account_id, "policy", &p.policy_name)?;
            Ok(p)
        })
        .transpose()
}

/// True when `path` starts with `prefix` (byte-wise).
fn under(path: &str, prefix: &str) -> bool {
    path.as_bytes().starts_with(prefix.as_bytes())
}

fn name_taken(kind: &str, name: &str, account: &str) -> MetaError {
    MetaError::entity_exists(format!(
        "A {kind} with name {name} already exists in account {account} (names are compared without regard to case)."
    ))
}

#[async_trait]
impl IamStore for SqliteStore {
    async fn create_user(&self, user: &User) -> Result<User, MetaError> {
        let user = user.clone();
        self.write(move |tx| {
            let p = PrincipalRef::User(user.user_name.clone());
            if let Some(existing) = principal_name(tx, &user.account_id, &p)? {
                return Err(name_taken("user", &existing, &user.account_id));
            }
            tx.prepare_cached(
                "INSERT INTO iam_users (account_id, user_name, user_id, path, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    user.account_id,
                    user.user_name,
                    user.user_id,
                    user.path,
                    user.created_at
                ])
            })
            .ctx(&format!("creating user {}", user.user_name))?;
            put_tags(tx, &user.account_id, "user", &user.user_name, &user.tags)?;
            get_user_tx(tx, &user.account_id, &user.user_name)?
                .ok_or_else(|| MetaError::Backend(format!("user {} vanished", user.user_name)))
        })
        .await
    }

    async fn get_user(&self, account_id: &str, user_name: &str) -> Result<Option<User>, MetaError> {
        let (account, name) = (account_id.to_string(), user_name.to_string());
        self.read(move |conn| get_user_tx(conn, &account, &name))
            .await
    }

    async fn list_users(
        &self,
        account_id: &str,
        path_prefix: &str,
    ) -> Result<Vec<User>, MetaError> {
        let (account, prefix) = (account_id.to_string(), path_prefix.to_string());
        self.read(move |conn| {
            let users: Vec<User> = conn
                .prepare_cached(&format!(
                    "{USER_COLUMNS} WHERE account_id = ?1 ORDER BY user_name"
                ))
                .and_then(|mut st| st.query_map([&account], user_row)?.collect())
                .ctx(&format!("listing the users of account {account}"))?;
            let mut tags = tags_of_kind(conn, &account, "user")?;
            Ok(users
                .into_iter()
                .filter(|u| under(&u.path, &prefix))
                .map(|mut u| {
                    u.tags = tags
                        .remove(&u.user_name.to_ascii_lowercase())
                        .unwrap_or_default();
                    u
                })
                .collect())
        })
        .await
    }

    async fn delete_user(&self, account_id: &str, user_name: &str) -> Result<(), MetaError> {
        let account = account_id.to_string();
        let p = PrincipalRef::User(user_name.to_string());
        self.write(move |tx| {
            let name = require_principal(tx, &account, &p)?;
            let keys = count(
                tx,
                "SELECT count(*) FROM access_keys
                 WHERE account_id = ?1 AND user_name = ?2 COLLATE NOCASE",
                &[&account, &name],
                &format!("counting the access keys of user {name}"),
            )?;
            let (inline, attached) = dependents(tx, &account, &p)?;
            if keys + inline + attached > 0 {
                return Err(MetaError::delete_conflict(format!(
                    "Cannot delete user {name} of account {account}: it still has {keys} access key(s), \
                     {inline} inline policy(ies) and {attached} attached policy(ies); delete or detach them first."
                )));
            }
            delete_tags(tx, &account, "user", &name)?;
            tx.prepare_cached("DELETE FROM iam_users WHERE account_id = ?1 AND user_name = ?2")
                .and_then(|mut st| st.execute([&account, &name]))
                .ctx(&format!("deleting user {name}"))?;
            Ok(())
        })
        .await
    }

    async fn tag_principal(
        &self,
        account_id: &str,
        principal: &PrincipalRef,
        tags: &[(String, String)],
    ) -> Result<(), MetaError> {
        let (account, p, tags) = (account_id.to_string(), principal.clone(), tags.to_vec());
        self.write(move |tx| {
            let name = require_principal(tx, &account, &p)?;
            put_tags(tx, &account, p.kind(), &name, &tags)
        })
        .await
    }

    async fn untag_principal(
        &self,
        account_id: &str,
        principal: &PrincipalRef,
        keys: &[String],
    ) -> Result<(), MetaError> {
        let (account, p, keys) = (account_id.to_string(), principal.clone(), keys.to_vec());
        self.write(move |tx| {
            let name = require_principal(tx, &account, &p)?;
            for key in &keys {
                tx.prepare_cached(
                    "DELETE FROM iam_tags
                     WHERE account_id = ?1 AND kind = ?2 AND name = ?3 AND key = ?4",
                )
                .and_then(|mut st| st.execute([account.as_str(), p.kind(), &name, key]))
                .ctx(&format!("untagging {p}"))?;
            }
            Ok(())
        })
        .await
    }

    async fn create_user_access_key(&self, key: &AccessKey) -> Result<AccessKey, MetaError> {
        let mut key = key.clone();
        self.write(move |tx| {
            let p = PrincipalRef::User(key.user_name.clone());
            key.user_name = require_principal(tx, &key.account_id, &p)?;
            let taken = count(
                tx,
                "SELECT count(*) FROM access_keys WHERE access_key_id = ?1",
                &[&key.access_key_id],
                "checking access keys",
            )?;
            if taken > 0 {
                return Err(MetaError::AccessKeyExists(key.access_key_id.clone()));
            }
            let held = count(
                tx,
                "SELECT count(*) FROM access_keys
                 WHERE account_id = ?1 AND user_name = ?2 COLLATE NOCASE",
                &[&key.account_id, &key.user_name],
                &format!("counting the access keys of user {}", key.user_name),
            )?;
            if held >= MAX_ACCESS_KEYS_PER_USER as i64 {
                return Err(MetaError::limit_exceeded(format!(
                    "Cannot exceed quota for AccessKeysPerUser: user {} of account {} already has {held} access keys \
                     (at most {MAX_ACCESS_KEYS_PER_USER}); delete one first.",
                    key.user_name, key.account_id
                )));
            }
            crate::sqlite::insert_access_key(tx, &key)?;
            Ok(key)
        })
        .await
    }

    async fn set_access_key_active(
        &self,
        account_id: &str,
        user_name: &str,
        access_key_id: &str,
        active: bool,
    ) -> Result<(), MetaError> {
        let (account, id) = (account_id.to_string(), access_key_id.to_string());
        let p = PrincipalRef::User(user_name.to_string());
        self.write(move |tx| {
            let name = require_principal(tx, &account, &p)?;
            let n = tx
                .prepare_cached(
                    "UPDATE access_keys SET active = ?4
                     WHERE access_key_id = ?1 AND account_id = ?2 AND user_name = ?3 COLLATE NOCASE",
                )
                .and_then(|mut st| st.execute(params![id, account, name, active]))
                .ctx(&format!("updating access key {id}"))?;
            if n == 0 {
                return Err(key_not_found(&id, &name, &account));
            }
            Ok(())
        })
        .await
    }

    async fn list_user_access_keys(
        &self,
        account_id: &str,
        user_name: &str,
    ) -> Result<Vec<AccessKey>, MetaError> {
        let account = account_id.to_string();
        let p = PrincipalRef::User(user_name.to_string());
        self.read(move |conn| {
            let name = require_principal(conn, &account, &p)?;
            conn.prepare_cached(&format!(
                "{KEY_COLUMNS} WHERE account_id = ?1 AND user_name = ?2 COLLATE NOCASE
                 ORDER BY access_key_id"
            ))
            .and_then(|mut st| st.query_map([&account, &name], key_row)?.collect())
            .ctx(&format!("listing the access keys of user {name}"))
        })
        .await
    }

    async fn delete_user_access_key(
        &self,
        account_id: &str,
        user_name: &str,
        access_key_id: &str,
    ) -> Result<(), MetaError> {
        let (account, id) = (account_id.to_string(), access_key_id.to_string());
        let p = PrincipalRef::User(user_name.to_string());
        self.write(move |tx| {
            let name = require_principal(tx, &account, &p)?;
            let n = tx
                .prepare_cached(
                    "DELETE FROM access_keys
                     WHERE access_key_id = ?1 AND account_id = ?2 AND user_name = ?3 COLLATE NOCASE",
                )
                .and_then(|mut st| st.execute([&id, &account, &name]))
                .ctx(&format!("deleting access key {id}"))?;
            if n == 0 {
                return Err(key_not_found(&id, &name, &account));
            }
            Ok(())
        })
        .await
    }

    async fn create_role(&self, role: &Role) -> Result<Role, MetaError> {
        let role = role.clone();
        self.write(move |tx| {
            let p = PrincipalRef::Role(role.role_name.clone());
            if let Some(existing) = principal_name(tx, &role.account_id, &p)? {
                return Err(name_taken("role", &existing, &role.account_id));
            }
            tx.prepare_cached(
                "INSERT INTO iam_roles (account_id, role_name, role_id, path, assume_role_policy,
                                        description, max_session_duration, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    role.account_id,
                    role.role_name,
                    role.role_id,
                    role.path,
                    role.assume_role_policy,
                    role.description,
                    role.max_session_duration,
                    role.created_at
                ])
            })
            .ctx(&format!("creating role {}", role.role_name))?;
            put_tags(tx, &role.account_id, "role", &role.role_name, &role.tags)?;
            get_role_tx(tx, &role.account_id, &role.role_name)?
                .ok_or_else(|| MetaError::Backend(format!("role {} vanished", role.role_name)))
        })
        .await
    }

    async fn get_role(&self, account_id: &str, role_name: &str) -> Result<Option<Role>, MetaError> {
        let (account, name) = (account_id.to_string(), role_name.to_string());
        self.read(move |conn| get_role_tx(conn, &account, &name))
            .await
    }

    async fn list_roles(
        &self,
        account_id: &str,
        path_prefix: &str,
    ) -> Result<Vec<Role>, MetaError> {
        let (account, prefix) = (account_id.to_string(), path_prefix.to_string());
        self.read(move |conn| {
            let roles: Vec<Role> = conn
                .prepare_cached(&format!(
                    "{ROLE_COLUMNS} WHERE account_id = ?1 ORDER BY role_name"
                ))
                .and_then(|mut st| st.query_map([&account], role_row)?.collect())
                .ctx(&format!("listing the roles of account {account}"))?;
            let mut tags = tags_of_kind(conn, &account, "role")?;
            Ok(roles
                .into_iter()
                .filter(|r| under(&r.path, &prefix))
                .map(|mut r| {
                    r.tags = tags
                        .remove(&r.role_name.to_ascii_lowercase())
                        .unwrap_or_default();
                    r
                })
                .collect())
        })
        .await
    }

    async fn delete_role(&self, account_id: &str, role_name: &str) -> Result<(), MetaError> {
        let account = account_id.to_string();
        let p = PrincipalRef::Role(role_name.to_string());
        self.write(move |tx| {
            let name = require_principal(tx, &account, &p)?;
            let (inline, attached) = dependents(tx, &account, &p)?;
            if inline + attached > 0 {
                return Err(MetaError::delete_conflict(format!(
                    "Cannot delete role {name} of account {account}: it still has {inline} inline policy(ies) \
                     and {attached} attached policy(ies); delete or detach them first."
                )));
            }
            delete_tags(tx, &account, "role", &name)?;
            tx.prepare_cached("DELETE FROM iam_sessions WHERE account_id = ?1 AND role_name = ?2")
                .and_then(|mut st| st.execute([&account, &name]))
                .ctx(&format!("ending the sessions of role {name}"))?;
            tx.prepare_cached("DELETE FROM iam_roles WHERE account_id = ?1 AND role_name = ?2")
                .and_then(|mut st| st.execute([&account, &name]))
                .ctx(&format!("deleting role {name}"))?;
            Ok(())
        })
        .await
    }

    async fn update_assume_role_policy(
        &self,
        account_id: &str,
        role_name: &str,
        document: &str,
    ) -> Result<(), MetaError> {
        let (account, document) = (account_id.to_string(), document.to_string());
        let p = PrincipalRef::Role(role_name.to_string());
        self.write(move |tx| {
            let name = require_principal(tx, &account, &p)?;
            tx.prepare_cached(
                "UPDATE iam_roles SET assume_role_policy = ?3
                 WHERE account_id = ?1 AND role_name = ?2",
            )
            .and_then(|mut st| st.execute([&account, &name, &document]))
            .ctx(&format!("updating the trust policy of role {name}"))?;
            Ok(())
        })
        .await
    }

    async fn put_principal_policy(
        &self,
        account_id: &str,
        principal: &PrincipalRef,
        policy_name: &str,
        document: &str,
    ) -> Result<(), MetaError> {
        let (account, p) = (account_id.to_string(), principal.clone());
        let (policy, document) = (policy_name.to_string(), document.to_string());
        self.write(move |tx| {
            let name = require_principal(tx, &account, &p)?;
            tx.prepare_cached(
                "INSERT INTO iam_inline_policies (account_id, kind, principal_name, policy_name, document)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (account_id, kind, principal_name, policy_name)
                 DO UPDATE SET document = excluded.document",
            )
            .and_then(|mut st| st.execute([account.as_str(), p.kind(), &name, &policy, &document]))
            .ctx(&format!("storing inline policy {policy} of {p}"))?;
            Ok(())
        })
        .await
    }

    async fn get_principal_policy(
        &self,
        account_id: &str,
        principal: &PrincipalRef,
        policy_name: &str,
    ) -> Result<InlinePolicy, MetaError> {
        let (account, p, policy) = (
            account_id.to_string(),
            principal.clone(),
            policy_name.to_string(),
        );
        self.read(move |conn| {
            let name = require_principal(conn, &account, &p)?;
            conn.prepare_cached(
                "SELECT policy_name, document FROM iam_inline_policies
                 WHERE account_id = ?1 AND kind = ?2 AND principal_name = ?3 AND policy_name = ?4",
            )
            .and_then(|mut st| {
                st.query_row([account.as_str(), p.kind(), &name, &policy], |r| {
                    Ok(InlinePolicy {
                        name: r.get(0)?,
                        document: r.get(1)?,
                    })
                })
                .optional()
            })
            .ctx(&format!("reading inline policy {policy} of {p}"))?
            .ok_or_else(|| inline_not_found(&policy, p.kind(), &name, &account))
        })
        .await
    }

    async fn list_principal_policies(
        &self,
        account_id: &str,
        principal: &PrincipalRef,
    ) -> Result<Vec<String>, MetaError> {
        let (account, p) = (account_id.to_string(), principal.clone());
        self.read(move |conn| {
            let name = require_principal(conn, &account, &p)?;
            conn.prepare_cached(
                "SELECT policy_name FROM iam_inline_policies
                 WHERE account_id = ?1 AND kind = ?2 AND principal_name = ?3 ORDER BY policy_name",
            )
            .and_then(|mut st| {
                st.query_map([account.as_str(), p.kind(), &name], |r| r.get(0))?
                    .collect()
            })
            .ctx(&format!("listing the inline policies of {p}"))
        })
        .await
    }

    async fn delete_principal_policy(
        &self,
        account_id: &str,
        principal: &PrincipalRef,
        policy_name: &str,
    ) -> Result<(), MetaError> {
        let (account, p, policy) = (
            account_id.to_string(),
            principal.clone(),
            policy_name.to_string(),
        );
        self.write(move |tx| {
            let name = require_principal(tx, &account, &p)?;
            let n = tx
                .prepare_cached(
                    "DELETE FROM iam_inline_policies
                     WHERE account_id = ?1 AND kind = ?2 AND principal_name = ?3 AND policy_name = ?4",
                )
                .and_then(|mut st| st.execute([account.as_str(), p.kind(), &name, &policy]))
                .ctx(&format!("deleting inline policy {policy} of {p}"))?;
            if n == 0 {
                return Err(inline_not_found(&policy, p.kind(), &name, &account));
            }
            Ok(())
        })
        .await
    }

    async fn attach_principal_policy(
        &self,
        account_id: &str,
        principal: &PrincipalRef,
        policy_arn: &str,
    ) -> Result<(), MetaError> {
        let (account, p, arn) = (
            account_id.to_string(),
            principal.clone(),
            policy_arn.to_string(),
        );
        self.write(move |tx| {
            let name = require_principal(tx, &account, &p)?;
            if !arn.starts_with(AWS_MANAGED_POLICY_PREFIX) {
                let owner: Option<String> = tx
                    .prepare_cached("SELECT account_id FROM iam_policies WHERE arn = ?1")
                    .and_then(|mut st| st.query_row([&arn], |r| r.get(0)).optional())
                    .ctx(&format!("looking up policy {arn}"))?;
                if owner.as_deref() != Some(account.as_str()) {
                    return Err(policy_not_found(&arn, &account));
                }
            }
            let args = [account.as_str(), p.kind(), &name, &arn];
            let already = count(
                tx,
                "SELECT count(*) FROM iam_attachments
                 WHERE account_id = ?1 AND kind = ?2 AND principal_name = ?3 AND policy_arn = ?4",
                &args,
                &format!("checking the policies attached to {p}"),
            )?;
            if already > 0 {
                return Ok(());
            }
            let (_, attached) = dependents(tx, &account, &p)?;
            if attached >= MAX_ATTACHED_POLICIES as i64 {
                return Err(MetaError::limit_exceeded(format!(
                    "Cannot exceed quota for PoliciesPerUserOrRole: {} {name} of account {account} already has \
                     {attached} managed policies attached (at most {MAX_ATTACHED_POLICIES}).",
                    p.kind()
                )));
            }
            tx.prepare_cached(
                "INSERT INTO iam_attachments (account_id, kind, principal_name, policy_arn, attached_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut st| {
                st.execute(params![account, p.kind(), name, arn, crate::now_millis()])
            })
            .ctx(&format!("attaching policy {arn} to {p}"))?;
            Ok(())
        })
        .await
    }

    async fn detach_principal_policy(
        &self,
        account_id: &str,
        principal: &PrincipalRef,
        policy_arn: &str,
    ) -> Result<(), MetaError> {
        let (account, p, arn) = (
            account_id.to_string(),
            principal.clone(),
            policy_arn.to_string(),
        );
        self.write(move |tx| {
            let name = require_principal(tx, &account, &p)?;
            let n = tx
                .prepare_cached(
                    "DELETE FROM iam_attachments
                     WHERE account_id = ?1 AND kind = ?2 AND principal_name = ?3 AND policy_arn = ?4",
                )
                .and_then(|mut st| st.execute([account.as_str(), p.kind(), &name, &arn]))
                .ctx(&format!("detaching policy {arn} from {p}"))?;
            if n == 0 {
                return Err(MetaError::no_such_entity(format!(
                    "Policy {arn} is not attached to {} {name} of account {account}.",
                    p.kind()
                )));
            }
            Ok(())
        })
        .await
    }

    async fn list_attached_principal_policies(
        &self,
        account_id: &str,
        principal: &PrincipalRef,
    ) -> Result<Vec<String>, MetaError> {
        let (account, p) = (account_id.to_string(), principal.clone());
        self.read(move |conn| {
            let name = require_principal(conn, &account, &p)?;
            conn.prepare_cached(
                "SELECT policy_arn FROM iam_attachments
                 WHERE account_id = ?1 AND kind = ?2 AND principal_name = ?3 ORDER BY policy_arn",
            )
            .and_then(|mut st| {
                st.query_map([account.as_str(), p.kind(), &name], |r| r.get(0))?
                    .collect()
            })
            .ctx(&format!("listing the policies attached to {p}"))
        })
        .await
    }

    async fn count_policy_attachments(
        &self,
        account_id: &str,
        policy_arn: &str,
    ) -> Result<u32, MetaError> {
        let (account, arn) = (account_id.to_string(), policy_arn.to_string());
        self.read(move |conn| {
            let n = count(
                conn,
                "SELECT count(*) FROM iam_attachments WHERE policy_arn = ?1 AND account_id = ?2",
                &[&arn, &account],
                &format!("counting the attachments of policy {arn}"),
            )?;
            Ok(u32::try_from(n).unwrap_or(u32::MAX))
        })
        .await
    }

    async fn create_policy(&self, policy: &CustomerPolicy) -> Result<CustomerPolicy, MetaError> {
        let policy = policy.clone();
        self.write(move |tx| {
            let existing: Option<String> = tx
                .prepare_cached(
                    "SELECT arn FROM iam_policies
                     WHERE (account_id = ?1 AND policy_name = ?2) OR arn = ?3",
                )
                .and_then(|mut st| {
                    st.query_row(
                        [&policy.account_id, &policy.policy_name, &policy.arn],
                        |r| r.get(0),
                    )
                    .optional()
                })
                .ctx(&format!("looking up policy {}", policy.policy_name))?;
            if let Some(arn) = existing {
                return Err(MetaError::entity_exists(format!(
                    "A policy called {} already exists in account {} ({arn}); policy names are compared without regard to case.",
                    policy.policy_name, policy.account_id
                )));
            }
            tx.prepare_cached(
                "INSERT INTO iam_policies (account_id, policy_name, policy_id, path, arn, document,
                                           default_version_id, description, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    policy.account_id,
                    policy.policy_name,
                    policy.policy_id,
                    policy.path,
                    policy.arn,
                    policy.document,
                    policy.default_version_id,
                    policy.description,
                    policy.created_at,
                    policy.updated_at
                ])
            })
            .ctx(&format!("creating policy {}", policy.arn))?;
            put_tags(
                tx,
                &policy.account_id,
                "policy",
                &policy.policy_name,
                &policy.tags,
            )?;
            get_policy_tx(tx, &policy.arn)?
                .ok_or_else(|| MetaError::Backend(format!("policy {} vanished", policy.arn)))
        })
        .await
    }

    async fn get_policy(&self, policy_arn: &str) -> Result<Option<CustomerPolicy>, MetaError> {
        let arn = policy_arn.to_string();
        self.read(move |conn| get_policy_tx(conn, &arn)).await
    }

    async fn list_policies(&self, account_id: &str) -> Result<Vec<CustomerPolicy>, MetaError> {
        let account = account_id.to_string();
        self.read(move |conn| {
            let policies: Vec<CustomerPolicy> = conn
                .prepare_cached(&format!(
                    "{POLICY_COLUMNS} WHERE p.account_id = ?1 ORDER BY p.policy_name"
                ))
                .and_then(|mut st| st.query_map([&account], policy_row)?.collect())
                .ctx(&format!("listing the policies of account {account}"))?;
            let mut tags = tags_of_kind(conn, &account, "policy")?;
            Ok(policies
                .into_iter()
                .map(|mut p| {
                    p.tags = tags
                        .remove(&p.policy_name.to_ascii_lowercase())
                        .unwrap_or_default();
                    p
                })
                .collect())
        })
        .await
    }

    async fn delete_policy(&self, policy_arn: &str) -> Result<(), MetaError> {
        let arn = policy_arn.to_string();
        self.write(move |tx| {
            let row: Option<(String, String)> = tx
                .prepare_cached("SELECT account_id, policy_name FROM iam_policies WHERE arn = ?1")
                .and_then(|mut st| st.query_row([&arn], |r| Ok((r.get(0)?, r.get(1)?))).optional())
                .ctx(&format!("looking up policy {arn}"))?;
            let Some((account, name)) = row else {
                return Err(MetaError::no_such_entity(format!(
                    "Policy {arn} does not exist or is not attachable."
                )));
            };
            let attached = count(
                tx,
                "SELECT count(*) FROM iam_attachments WHERE policy_arn = ?1 AND account_id = ?2",
                &[&arn, &account],
                &format!("counting the attachments of policy {arn}"),
            )?;
            if attached > 0 {
                return Err(MetaError::delete_conflict(format!(
                    "Cannot delete policy {arn}: it is attached to {attached} user(s) or role(s); detach it first."
                )));
            }
            delete_tags(tx, &account, "policy", &name)?;
            tx.prepare_cached("DELETE FROM iam_policies WHERE arn = ?1")
                .and_then(|mut st| st.execute([&arn]))
                .ctx(&format!("deleting policy {arn}"))?;
            Ok(())
        })
        .await
    }

    async fn identity_policies(
        &self,
        account_id: &str,
        principal: &PrincipalRef,
    ) -> Result<Vec<(String, IdentityPolicy)>, MetaError> {
        let (account, p) = (account_id.to_string(), principal.clone());
        self.read(move |conn| {
            let Some(name) = principal_name(conn, &account, &p)? else {
                return Ok(Vec::new());
            };
            let who = format!("{} {name}", p.kind());
            let inline: Vec<(String, String)> = conn
                .prepare_cached(
                    "SELECT policy_name, document FROM iam_inline_policies
                     WHERE account_id = ?1 AND kind = ?2 AND principal_name = ?3
                     ORDER BY policy_name",
                )
                .and_then(|mut st| {
                    st.query_map([account.as_str(), p.kind(), &name], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })?
                    .collect()
                })
                .ctx(&format!("reading the inline policies of {who}"))?;
            let attached: Vec<(String, Option<String>)> = conn
                .prepare_cached(
                    "SELECT a.policy_arn, p.document FROM iam_attachments a
                     LEFT JOIN iam_policies p ON p.arn = a.policy_arn AND p.account_id = a.account_id
                     WHERE a.account_id = ?1 AND a.kind = ?2 AND a.principal_name = ?3
                     ORDER BY a.policy_arn",
                )
                .and_then(|mut st| {
                    st.query_map([account.as_str(), p.kind(), &name], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })?
                    .collect()
                })
                .ctx(&format!("reading the policies attached to {who}"))?;
            let mut out = Vec::with_capacity(inline.len() + attached.len());
            for (policy, document) in inline {
                out.push((
                    format!("inline policy '{policy}' of {who}"),
                    IdentityPolicy::Inline {
                        name: policy,
                        document,
                    },
                ));
            }
            for (arn, document) in attached {
                out.push((
                    format!("managed policy {arn} attached to {who}"),
                    IdentityPolicy::Managed { arn, document },
                ));
            }
            Ok(out)
        })
        .await
    }

    async fn create_session(&self, session: &Session) -> Result<(), MetaError> {
        let s = session.clone();
        self.write(move |tx| {
            let taken = count(
                tx,
                "SELECT (SELECT count(*) FROM iam_sessions WHERE access_key_id = ?1)
                      + (SELECT count(*) FROM access_keys WHERE access_key_id = ?1)",
                &[&s.access_key_id],
                "checking session ids",
            )?;
            if taken > 0 {
                return Err(MetaError::AccessKeyExists(s.access_key_id.clone()));
            }
            tx.prepare_cached(
                "INSERT INTO iam_sessions (access_key_id, secret_access_key, session_token,
                     account_id, role_name, role_path, session_name, expires_at, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    s.access_key_id,
                    s.secret_access_key,
                    s.session_token,
                    s.account_id,
                    s.role_name,
                    s.role_path,
                    s.session_name,
                    s.expires_at,
                    s.created_at
                ])
            })
            .ctx(&format!(
                "storing session {} of role {}",
                s.session_name, s.role_name
            ))?;
            Ok(())
        })
        .await
    }

    async fn get_session(&self, access_key_id: &str) -> Result<Option<Session>, MetaError> {
        let id = access_key_id.to_string();
        self.read(move |conn| {
            conn.prepare_cached(&format!("{SESSION_COLUMNS} WHERE access_key_id = ?1"))
                .and_then(|mut st| st.query_row([&id], session_row).optional())
                .ctx(&format!("reading session {id}"))
        })
        .await
    }

    async fn purge_expired_sessions(&self, now: Millis) -> Result<u64, MetaError> {
        self.write(move |tx| {
            tx.prepare_cached("DELETE FROM iam_sessions WHERE expires_at <= ?1")
                .and_then(|mut st| st.execute([now]))
                .map(|n| n as u64)
                .ctx("purging expired sessions")
        })
        .await
    }
}

fn key_not_found(id: &str, user: &str, account: &str) -> MetaError {
    MetaError::no_such_entity(format!(
        "The Access Key with id {id} cannot be found for user {user} of account {account}."
    ))
}

fn inline_not_found(policy: &str, kind: &str, name: &str, account: &str) -> MetaError {
    MetaError::no_such_entity(format!(
        "The {kind} policy with name {policy} cannot be found for {kind} {name} of account {account}."
    ))
}

fn policy_not_found(arn: &str, account: &str) -> MetaError {
    MetaError::no_such_entity(format!(
        "Policy {arn} does not exist or is not attachable in account {account}."
    ))
}
