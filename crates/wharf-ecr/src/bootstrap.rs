//! The first administrator: on first start an account gets an access key, printed once.

use wharf_meta::{now_millis, AccessKey, MetaError, MetadataStore};

/// A new access key id (`AKIA` + 16 characters) and secret (40 characters).
pub fn new_key_pair() -> (String, String) {
    (
        wharf_auth::ids::new_id("AKIA"),
        wharf_auth::ids::new_secret(),
    )
}

/// What [`ensure_admin`] did.
#[derive(Debug)]
pub enum Bootstrap {
    /// The account had keys already; nothing was created.
    Existing,
    /// A key was created; show it once.
    Created(AccessKey),
}

/// Makes sure `account_id` has an administrator key: `given` (id, secret) from the
/// configuration if set, else a generated one when the account has no key yet.
pub async fn ensure_admin(
    meta: &dyn MetadataStore,
    account_id: &str,
    given: Option<(String, String)>,
) -> Result<Bootstrap, MetaError> {
    if let Some((id, secret)) = given {
        // Replicas started together with the same configured key race to create it:
        // whoever loses finds it made and checks it like any existing key.
        for _ in 0..2 {
            match meta.get_access_key(&id).await? {
                Some(k) if k.secret_access_key == secret && k.account_id == account_id => {
                    return Ok(Bootstrap::Existing)
                }
                Some(_) => {
                    return Err(MetaError::InvalidSetting(format!(
                        "configured admin access key {id} exists with another secret or account"
                    )))
                }
                None => {
                    let key = admin_key(account_id, id.clone(), secret.clone());
                    match meta.create_access_key(&key).await {
                        Ok(()) => return Ok(Bootstrap::Existing),
                        Err(MetaError::AccessKeyExists(_)) => continue,
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        return Err(MetaError::Backend(format!(
            "admin access key {id} was reported to exist but cannot be read"
        )));
    }
    if !meta.list_access_keys(account_id).await?.is_empty() {
        return Ok(Bootstrap::Existing);
    }
    let (id, secret) = new_key_pair();
    let key = admin_key(account_id, id, secret);
    meta.create_access_key(&key).await?;
    Ok(Bootstrap::Created(key))
}

fn admin_key(account_id: &str, id: String, secret: String) -> AccessKey {
    AccessKey {
        access_key_id: id,
        secret_access_key: secret,
        account_id: account_id.to_string(),
        user_name: "admin".to_string(),
        active: true,
        created_at: now_millis(),
    }
}
