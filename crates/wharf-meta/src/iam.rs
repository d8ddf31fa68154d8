//! IAM principals and their policies: users, roles, inline and managed policies,
//! resource tags of users and roles, and the temporary credentials of role sessions.
//!
//! [`IamStore`] is the seam between the IAM/STS API (and the authorizer) and the
//! database. Every backend must pass [`crate::testsuite_iam::run_all`].
//!
//! Names follow IAM: user, role and policy names are unique within an account without
//! regard to case (`Alice` and `alice` are the same user) and are looked up the same
//! way; the stored spelling is the one given at creation. Policy documents are stored
//! as the text given. Identifiers (`AIDA…`, `AROA…`, `ANPA…`), ARNs and timestamps are
//! chosen by the caller, so a store never invents values a test cannot predict.

use crate::{AccessKey, MetaError, Millis};
use async_trait::async_trait;

/// At most this many access keys per user (IAM's quota).
pub const MAX_ACCESS_KEYS_PER_USER: usize = 2;
/// At most this many managed policies attached to one user or role (IAM's default quota).
pub const MAX_ATTACHED_POLICIES: usize = 10;
/// At most this many tags on one user, role or policy (IAM's quota).
pub const MAX_TAGS: usize = 50;
/// ARN prefix of the AWS managed policies (`arn:aws:iam::aws:policy/<name>`).
pub const AWS_MANAGED_POLICY_PREFIX: &str = "arn:aws:iam::aws:policy/";

/// Which IAM rule a [`MetaError::Iam`] reports; the API answers with the IAM error
/// code of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IamErrorKind {
    /// The user, role, policy, attachment or access key does not exist.
    NoSuchEntity,
    /// An entity of that name (compared without case) exists already.
    EntityAlreadyExists,
    /// The entity still has dependents (keys, policies, attachments).
    DeleteConflict,
    /// A quota ([`MAX_ACCESS_KEYS_PER_USER`], [`MAX_ATTACHED_POLICIES`], [`MAX_TAGS`]).
    LimitExceeded,
}

impl MetaError {
    /// [`IamErrorKind::NoSuchEntity`] with `message`.
    pub fn no_such_entity(message: impl Into<String>) -> MetaError {
        MetaError::Iam {
            kind: IamErrorKind::NoSuchEntity,
            message: message.into(),
        }
    }

    /// [`IamErrorKind::EntityAlreadyExists`] with `message`.
    pub fn entity_exists(message: impl Into<String>) -> MetaError {
        MetaError::Iam {
            kind: IamErrorKind::EntityAlreadyExists,
            message: message.into(),
        }
    }

    /// [`IamErrorKind::DeleteConflict`] with `message`.
    pub fn delete_conflict(message: impl Into<String>) -> MetaError {
        MetaError::Iam {
            kind: IamErrorKind::DeleteConflict,
            message: message.into(),
        }
    }

    /// [`IamErrorKind::LimitExceeded`] with `message`.
    pub fn limit_exceeded(message: impl Into<String>) -> MetaError {
        MetaError::Iam {
            kind: IamErrorKind::LimitExceeded,
            message: message.into(),
        }
    }

    /// The IAM rule this error reports, if it is one.
    pub fn iam_kind(&self) -> Option<IamErrorKind> {
        match self {
            MetaError::Iam { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}

/// An IAM user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// 12-digit account.
    pub account_id: String,
    /// Name, unique in the account without regard to case.
    pub user_name: String,
    /// Stable id, `AIDA` + 16 characters.
    pub user_id: String,
    /// IAM path, `/` or `/a/b/`.
    pub path: String,
    /// When it was created.
    pub created_at: Millis,
    /// Resource tags (key, value), sorted by key.
    pub tags: Vec<(String, String)>,
}

impl User {
    /// `arn:aws:iam::<account>:user<path><name>`.
    pub fn arn(&self) -> String {
        format!(
            "arn:aws:iam::{}:user{}{}",
            self.account_id, self.path, self.user_name
        )
    }
}

/// An IAM role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    /// 12-digit account.
    pub account_id: String,
    /// Name, unique in the account without regard to case.
    pub role_name: String,
    /// Stable id, `AROA` + 16 characters.
    pub role_id: String,
    /// IAM path, `/` or `/a/b/`.
    pub path: String,
    /// The trust policy (JSON text as given).
    pub assume_role_policy: String,
    /// Free text.
    pub description: Option<String>,
    /// Longest session AssumeRole may grant, in seconds (3600 unless set).
    pub max_session_duration: u32,
    /// When it was created.
    pub created_at: Millis,
    /// Resource tags (key, value), sorted by key.
    pub tags: Vec<(String, String)>,
}

impl Role {
    /// `arn:aws:iam::<account>:role<path><name>`.
    pub fn arn(&self) -> String {
        format!(
            "arn:aws:iam::{}:role{}{}",
            self.account_id, self.path, self.role_name
        )
    }
}

/// A user or role of an account, by name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PrincipalRef {
    /// The user of that name.
    User(String),
    /// The role of that name.
    Role(String),
}

impl PrincipalRef {
    /// The name.
    pub fn name(&self) -> &str {
        match self {
            PrincipalRef::User(n) | PrincipalRef::Role(n) => n,
        }
    }

    /// `user` or `role`.
    pub fn kind(&self) -> &'static str {
        match self {
            PrincipalRef::User(_) => "user",
            PrincipalRef::Role(_) => "role",
        }
    }
}

impl std::fmt::Display for PrincipalRef {
    /// `user alice` / `role deploy`, as error messages and policy labels say it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind(), self.name())
    }
}

/// A customer managed policy (one version: `default_version_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerPolicy {
    /// 12-digit account.
    pub account_id: String,
    /// Name, unique in the account without regard to case.
    pub policy_name: String,
    /// Stable id, `ANPA` + 16 characters.
    pub policy_id: String,
    /// IAM path, `/` or `/a/b/`.
    pub path: String,
    /// `arn:aws:iam::<account>:policy<path><name>`.
    pub arn: String,
    /// The document of the default version (JSON text as given).
    pub document: String,
    /// `v1`.
    pub default_version_id: String,
    /// Free text.
    pub description: Option<String>,
    /// Users and roles it is attached to (computed by the store; ignored on create).
    pub attachment_count: u32,
    /// When it was created.
    pub created_at: Millis,
    /// When its default version last changed.
    pub updated_at: Millis,
    /// Resource tags (key, value), sorted by key.
    pub tags: Vec<(String, String)>,
}

/// An inline policy embedded in a user or role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlinePolicy {
    /// Its name as stored.
    pub name: String,
    /// The document (JSON text as given).
    pub document: String,
}

/// An identity-based policy that applies to a principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityPolicy {
    /// Embedded in the user or role.
    Inline {
        /// Policy name.
        name: String,
        /// Document text.
        document: String,
    },
    /// Attached by ARN.
    Managed {
        /// Policy ARN.
        arn: String,
        /// The default version's document for customer managed policies; `None` for
        /// AWS managed ones (`arn:aws:iam::aws:policy/...`), which the caller resolves.
        document: Option<String>,
    },
}

/// Temporary credentials of a role session (from `sts:AssumeRole`).
#[derive(Clone, PartialEq, Eq)]
pub struct Session {
    /// `ASIA` + 16 characters.
    pub access_key_id: String,
    /// The secret (never logged: [`std::fmt::Debug`] redacts it).
    pub secret_access_key: String,
    /// The token the client sends as `X-Amz-Security-Token` (redacted like the secret).
    pub session_token: String,
    /// The role's account.
    pub account_id: String,
    /// The role's name.
    pub role_name: String,
    /// The role's path.
    pub role_path: String,
    /// `RoleSessionName`.
    pub session_name: String,
    /// When the credentials stop working.
    pub expires_at: Millis,
    /// When they were issued.
    pub created_at: Millis,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("session_token", &"<redacted>")
            .field("account_id", &self.account_id)
            .field("role_name", &self.role_name)
            .field("role_path", &self.role_path)
            .field("session_name", &self.session_name)
            .field("expires_at", &self.expires_at)
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// IAM principals, their policies and role sessions. All methods are transactional:
/// on error nothing changed.
///
/// Conventions every backend follows (the shared suite pins them): names are compared
/// without regard to ASCII case; `get_*` answer `None` for a missing entity, every
/// other call on a missing user, role, policy or attachment fails with
/// [`IamErrorKind::NoSuchEntity`] naming it; lists are sorted by name (without regard
/// to case) or by ARN; path prefixes match the start of the path.
#[async_trait]
pub trait IamStore: Send + Sync + 'static {
    /// Creates a user ([`IamErrorKind::EntityAlreadyExists`] if the name is taken).
    async fn create_user(&self, user: &User) -> Result<User, MetaError>;
    /// Looks a user up.
    async fn get_user(&self, account_id: &str, user_name: &str) -> Result<Option<User>, MetaError>;
    /// The users of an account whose path starts with `path_prefix`, sorted by name.
    async fn list_users(&self, account_id: &str, path_prefix: &str)
        -> Result<Vec<User>, MetaError>;
    /// Deletes a user and its tags; [`IamErrorKind::DeleteConflict`] while it has
    /// access keys, inline or attached policies.
    async fn delete_user(&self, account_id: &str, user_name: &str) -> Result<(), MetaError>;

    /// Adds or replaces tags of a user or role (at most [`MAX_TAGS`] in all).
    async fn tag_principal(
        &self,
        account_id: &str,
        principal: &PrincipalRef,
        tags: &[(String, String)],
    ) -> Result<(), MetaError>;
    /// Removes tags of a user or role by key (missing keys are ignored).
    async fn untag_principal(
        &self,
        account_id: &str,
        principal: &PrincipalRef,
        keys: &[String],
    ) -> Result<(), MetaError>;

    /// Stores a new access key for an existing user (`key.user_name`, stored with the
    /// user's own spelling): [`IamErrorKind::NoSuchEntity`] without the user,
    /// [`IamErrorKind::LimitExceeded`] beyond [`MAX_ACCESS_KEYS_PER_USER`].
    async fn create_user_access_key(&self, key: &AccessKey) -> Result<AccessKey, MetaError>;
    /// Activates or deactivates an access key of a user.
    async fn set_access_key_active(
        &self,
        account_id: &str,
        user_name: &str,
        access_key_id: &str,
        active: bool,
    ) -> Result<(), MetaError>;
    /// The access keys of a user, sorted by id ([`IamErrorKind::NoSuchEntity`]
    /// without the user).
    async fn list_user_access_keys(
        &self,
        account_id: &str,
        user_name: &str,
    ) -> Result<Vec<AccessKey>, MetaError>;
    /// Deletes an access key of a user ([`IamErrorKind::NoSuchEntity`] if the user
    /// has no such key).
    async fn delete_user_access_key(
        &self,
        account_id: &str,
        user_name: &str,
        access_key_id: &str,
    ) -> Result<(), MetaError>;

    /// Creates a role.
    async fn create_role(&self, role: &Role) -> Result<Role, MetaError>;
    /// Looks a role up.
    async fn get_role(&self, account_id: &str, role_name: &str) -> Result<Option<Role>, MetaError>;
    /// The roles of an account whose path starts with `path_prefix`, sorted by name.
    async fn list_roles(&self, account_id: &str, path_prefix: &str)
        -> Result<Vec<Role>, MetaError>;
    /// Deletes a role, its tags and its sessions; [`IamErrorKind::DeleteConflict`]
    /// while it has inline or attached policies.
    async fn delete_role(&self, account_id: &str, role_name: &str) -> Result<(), MetaError>;
    /// Replaces a role's trust policy.
    async fn update_assume_role_policy(
        &self,
        account_id: &str,
        role_name: &str,
        document: &str,
    ) -> Result<(), MetaError>;

    /// Creates or replaces an inline policy of a user or role.
    async fn put_principal_policy(
        &self,
        account_id: &str,
        principal: &PrincipalRef,
        policy_name: &str,
        document: &str,
    ) -> Result<(), MetaError>;
    /// An inline policy of a user or role.
    async fn get_principal_policy(
        &self,
        account_id: &str,
        principal: &PrincipalRef,
        policy_name: &str,
    ) -> Result<InlinePolicy, MetaError>;
    /// The names of a principal's inline policies, sorted.
    async fn list_principal_policies(
        &self,
        account_id: &str,
        principal: &PrincipalRef,
    ) -> Result<Vec<String>, MetaError>;
    /// Deletes an inline policy.
    async fn delete_principal_policy(
        &self,
        account_id: &str,
        principal: &PrincipalRef,
        policy_name: &str,
    ) -> Result<(), MetaError>;

    /// Attaches a managed policy: an existing customer policy of the account, or any
    /// `arn:aws:iam::aws:policy/...` (the caller decides which AWS policies exist).
    /// Attaching twice is not an error. At most [`MAX_ATTACHED_POLICIES`].
    async fn attach_principal_policy(
        &self,
        account_id: &str,
        principal: &PrincipalRef,
        policy_arn: &str,
    ) -> Result<(), MetaError>;
    /// Detaches a managed policy ([`IamErrorKind::NoSuchEntity`] if not attached).
    async fn detach_principal_policy(
        &self,
        account_id: &str,
        principal: &PrincipalRef,
        policy_arn: &str,
    ) -> Result<(), MetaError>;
    /// The ARNs of the managed policies attached to a principal, sorted.
    async fn list_attached_principal_policies(
        &self,
        account_id: &str,
        principal: &PrincipalRef,
    ) -> Result<Vec<String>, MetaError>;
    /// How many users and roles of `account_id` have `policy_arn` attached.
    async fn count_policy_attachments(
        &self,
        account_id: &str,
        policy_arn: &str,
    ) -> Result<u32, MetaError>;

    /// Creates a customer managed policy (name unique in the account).
    async fn create_policy(&self, policy: &CustomerPolicy) -> Result<CustomerPolicy, MetaError>;
    /// Looks a customer managed policy up by ARN.
    async fn get_policy(&self, policy_arn: &str) -> Result<Option<CustomerPolicy>, MetaError>;
    /// The customer managed policies of an account, sorted by name.
    async fn list_policies(&self, account_id: &str) -> Result<Vec<CustomerPolicy>, MetaError>;
    /// Deletes a customer managed policy and its tags; [`IamErrorKind::DeleteConflict`]
    /// while it is attached.
    async fn delete_policy(&self, policy_arn: &str) -> Result<(), MetaError>;

    /// Every identity-based policy that applies to the principal, inline (sorted by
    /// name) then attached (sorted by ARN), each with a label naming it and the
    /// principal, e.g. `inline policy 'push' of user alice`. Empty for a principal
    /// that does not exist.
    async fn identity_policies(
        &self,
        account_id: &str,
        principal: &PrincipalRef,
    ) -> Result<Vec<(String, IdentityPolicy)>, MetaError>;

    /// Stores the credentials of a new role session ([`MetaError::AccessKeyExists`]
    /// if the id is taken).
    async fn create_session(&self, session: &Session) -> Result<(), MetaError>;
    /// Looks session credentials up by access key id, expired or not (the caller
    /// compares `expires_at`, so it can say when they expired).
    async fn get_session(&self, access_key_id: &str) -> Result<Option<Session>, MetaError>;
    /// Forgets sessions with `expires_at <= now`; returns how many.
    async fn purge_expired_sessions(&self, now: Millis) -> Result<u64, MetaError>;
}
