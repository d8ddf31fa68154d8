//! Accounts as namespaces: [`Namespaced`] shows one account's repositories through the
//! [`MetadataStore`] interface.
//!
//! A repository of account `A` named `team/app` is stored as `A/team/app`. Backends
//! know nothing of accounts; the wrapper adds the prefix to every name going in and
//! strips it from every name coming out (records, lists, error messages), so the
//! registry and ECR layers work with the names their clients use. Account ids are 12
//! digits, which no other prefix collides with.

use crate::{
    AccessKey, ImageRecord, ManifestRecord, MetaError, MetadataStore, Millis, NewManifest,
    PutOutcome, Reference, Referrer, Repository, RepositorySettings, TagPolicy, Upload,
};
use async_trait::async_trait;
use std::sync::Arc;
use wharf_oci::Digest;

/// The repositories of one account, over a shared store.
#[derive(Clone)]
pub struct Namespaced {
    inner: Arc<dyn MetadataStore>,
    prefix: String,
}

impl std::fmt::Debug for Namespaced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespaced")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// The stored name of repository `name` of `account`.
pub fn qualified_name(account: &str, name: &str) -> String {
    format!("{account}/{name}")
}

impl Namespaced {
    /// Account `account`'s view of `inner`.
    pub fn new(inner: Arc<dyn MetadataStore>, account: &str) -> Namespaced {
        Namespaced {
            inner,
            prefix: format!("{account}/"),
        }
    }

    /// The account id.
    pub fn account(&self) -> &str {
        self.prefix.trim_end_matches('/')
    }

    fn q(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn strip<'a>(&self, name: &'a str) -> &'a str {
        name.strip_prefix(self.prefix.as_str()).unwrap_or(name)
    }

    fn repo(&self, mut r: Repository) -> Repository {
        r.name = self.strip(&r.name).to_string();
        r
    }

    fn err(&self, e: MetaError) -> MetaError {
        let s = |n: String| self.strip(&n).to_string();
        match e {
            MetaError::RepositoryNotFound(n) => MetaError::RepositoryNotFound(s(n)),
            MetaError::RepositoryExists(n) => MetaError::RepositoryExists(s(n)),
            MetaError::RepositoryNotEmpty { name, manifests } => MetaError::RepositoryNotEmpty {
                name: s(name),
                manifests,
            },
            MetaError::TagImmutable {
                repository,
                tag,
                current,
                why,
            } => MetaError::TagImmutable {
                repository: s(repository),
                tag,
                current,
                why,
            },
            MetaError::MissingBlob { repository, digest } => MetaError::MissingBlob {
                repository: s(repository),
                digest,
            },
            MetaError::MissingManifest { repository, digest } => MetaError::MissingManifest {
                repository: s(repository),
                digest,
            },
            other => other,
        }
    }
}

#[async_trait]
impl MetadataStore for Namespaced {
    async fn create_repository(&self, name: &str) -> Result<Repository, MetaError> {
        let r = self.inner.create_repository(&self.q(name)).await;
        r.map(|r| self.repo(r)).map_err(|e| self.err(e))
    }

    async fn ensure_repository(&self, name: &str) -> Result<Repository, MetaError> {
        let r = self.inner.ensure_repository(&self.q(name)).await;
        r.map(|r| self.repo(r)).map_err(|e| self.err(e))
    }

    async fn create_repository_with(
        &self,
        name: &str,
        settings: &RepositorySettings,
    ) -> Result<Repository, MetaError> {
        let r = self
            .inner
            .create_repository_with(&self.q(name), settings)
            .await;
        r.map(|r| self.repo(r)).map_err(|e| self.err(e))
    }

    async fn set_scan_on_push(&self, name: &str, scan: bool) -> Result<Repository, MetaError> {
        let r = self.inner.set_scan_on_push(&self.q(name), scan).await;
        r.map(|r| self.repo(r)).map_err(|e| self.err(e))
    }

    async fn set_tag_policy(
        &self,
        name: &str,
        policy: &TagPolicy,
    ) -> Result<Repository, MetaError> {
        let r = self.inner.set_tag_policy(&self.q(name), policy).await;
        r.map(|r| self.repo(r)).map_err(|e| self.err(e))
    }

    async fn get_repository(&self, name: &str) -> Result<Option<Repository>, MetaError> {
        let r = self.inner.get_repository(&self.q(name)).await;
        r.map(|r| r.map(|r| self.repo(r))).map_err(|e| self.err(e))
    }

    async fn list_repositories(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Repository>, MetaError> {
        // The account's names are contiguous in byte order: every one starts with
        // the prefix, and the prefix itself sorts before all of them.
        let start = match after {
            Some(a) => self.q(a),
            None => self.prefix.clone(),
        };
        let page = self
            .inner
            .list_repositories(Some(&start), limit)
            .await
            .map_err(|e| self.err(e))?;
        Ok(page
            .into_iter()
            .take_while(|r| r.name.starts_with(self.prefix.as_str()))
            .map(|r| self.repo(r))
            .collect())
    }

    async fn delete_repository(&self, name: &str, force: bool) -> Result<(), MetaError> {
        let r = self.inner.delete_repository(&self.q(name), force).await;
        r.map_err(|e| self.err(e))
    }

    async fn set_repository_policy(
        &self,
        name: &str,
        policy: Option<&str>,
    ) -> Result<Repository, MetaError> {
        let r = self
            .inner
            .set_repository_policy(&self.q(name), policy)
            .await;
        r.map(|r| self.repo(r)).map_err(|e| self.err(e))
    }

    async fn repository_tags(&self, name: &str) -> Result<Vec<(String, String)>, MetaError> {
        let r = self.inner.repository_tags(&self.q(name)).await;
        r.map_err(|e| self.err(e))
    }

    async fn tag_repository(&self, name: &str, tags: &[(String, String)]) -> Result<(), MetaError> {
        let r = self.inner.tag_repository(&self.q(name), tags).await;
        r.map_err(|e| self.err(e))
    }

    async fn untag_repository(&self, name: &str, keys: &[String]) -> Result<(), MetaError> {
        let r = self.inner.untag_repository(&self.q(name), keys).await;
        r.map_err(|e| self.err(e))
    }

    async fn registry_policy(&self, account_id: &str) -> Result<Option<String>, MetaError> {
        self.inner.registry_policy(account_id).await
    }

    async fn set_registry_policy(
        &self,
        account_id: &str,
        policy: Option<&str>,
    ) -> Result<(), MetaError> {
        self.inner.set_registry_policy(account_id, policy).await
    }

    async fn server_secret(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>, MetaError> {
        self.inner.server_secret(name, candidate).await
    }

    async fn list_images(
        &self,
        repository: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ImageRecord>, MetaError> {
        let r = self
            .inner
            .list_images(&self.q(repository), after, limit)
            .await;
        r.map_err(|e| self.err(e))
    }

    async fn get_image(
        &self,
        repository: &str,
        reference: &Reference,
    ) -> Result<Option<ImageRecord>, MetaError> {
        let r = self.inner.get_image(&self.q(repository), reference).await;
        r.map_err(|e| self.err(e))
    }

    async fn manifest_parents(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<Vec<Digest>, MetaError> {
        let r = self
            .inner
            .manifest_parents(&self.q(repository), digest)
            .await;
        r.map_err(|e| self.err(e))
    }

    async fn record_pulls(
        &self,
        repository: &str,
        pulls: &[(Digest, Millis)],
    ) -> Result<(), MetaError> {
        let r = self.inner.record_pulls(&self.q(repository), pulls).await;
        r.map_err(|e| self.err(e))
    }

    async fn link_blob(
        &self,
        repository: &str,
        digest: &Digest,
        size: u64,
    ) -> Result<(), MetaError> {
        let r = self
            .inner
            .link_blob(&self.q(repository), digest, size)
            .await;
        r.map_err(|e| self.err(e))
    }

    async fn mount_blob(
        &self,
        from: &str,
        to: &str,
        digest: &Digest,
    ) -> Result<Option<u64>, MetaError> {
        let r = self
            .inner
            .mount_blob(&self.q(from), &self.q(to), digest)
            .await;
        r.map_err(|e| self.err(e))
    }

    async fn repository_blob(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<Option<u64>, MetaError> {
        let r = self
            .inner
            .repository_blob(&self.q(repository), digest)
            .await;
        r.map_err(|e| self.err(e))
    }

    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, MetaError> {
        self.inner.blob_size(digest).await
    }

    async fn list_blobs(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<Digest>, MetaError> {
        self.inner.list_blobs(after, limit).await
    }

    async fn unlink_blob(&self, repository: &str, digest: &Digest) -> Result<bool, MetaError> {
        let r = self.inner.unlink_blob(&self.q(repository), digest).await;
        r.map_err(|e| self.err(e))
    }

    async fn create_upload(&self, upload: &Upload) -> Result<(), MetaError> {
        let mut u = upload.clone();
        u.repository = self.q(&u.repository);
        self.inner.create_upload(&u).await.map_err(|e| self.err(e))
    }

    async fn get_upload(&self, id: &str) -> Result<Option<Upload>, MetaError> {
        // Another account's upload is invisible here.
        Ok(self.inner.get_upload(id).await?.and_then(|mut u| {
            let name = u.repository.strip_prefix(self.prefix.as_str())?.to_string();
            u.repository = name;
            Some(u)
        }))
    }

    async fn touch_upload(&self, id: &str, at: Millis) -> Result<(), MetaError> {
        self.inner.touch_upload(id, at).await
    }

    async fn delete_upload(&self, id: &str) -> Result<bool, MetaError> {
        self.inner.delete_upload(id).await
    }

    async fn stale_uploads(&self, before: Millis) -> Result<Vec<Upload>, MetaError> {
        Ok(self
            .inner
            .stale_uploads(before)
            .await?
            .into_iter()
            .filter_map(|mut u| {
                let name = u.repository.strip_prefix(self.prefix.as_str())?.to_string();
                u.repository = name;
                Some(u)
            })
            .collect())
    }

    async fn create_access_key(&self, key: &AccessKey) -> Result<(), MetaError> {
        self.inner.create_access_key(key).await
    }

    async fn get_access_key(&self, access_key_id: &str) -> Result<Option<AccessKey>, MetaError> {
        self.inner.get_access_key(access_key_id).await
    }

    async fn list_access_keys(&self, account_id: &str) -> Result<Vec<AccessKey>, MetaError> {
        self.inner.list_access_keys(account_id).await
    }

    async fn delete_access_key(&self, access_key_id: &str) -> Result<bool, MetaError> {
        self.inner.delete_access_key(access_key_id).await
    }

    async fn put_manifest(
        &self,
        repository: &str,
        manifest: &NewManifest,
        tag: Option<&str>,
    ) -> Result<PutOutcome, MetaError> {
        let r = self
            .inner
            .put_manifest(&self.q(repository), manifest, tag)
            .await;
        r.map_err(|e| self.err(e))
    }

    async fn get_manifest(
        &self,
        repository: &str,
        reference: &Reference,
    ) -> Result<Option<ManifestRecord>, MetaError> {
        let r = self
            .inner
            .get_manifest(&self.q(repository), reference)
            .await;
        r.map_err(|e| self.err(e))
    }

    async fn delete_manifest(&self, repository: &str, digest: &Digest) -> Result<bool, MetaError> {
        let r = self
            .inner
            .delete_manifest(&self.q(repository), digest)
            .await;
        r.map_err(|e| self.err(e))
    }

    async fn delete_tag(&self, repository: &str, tag: &str) -> Result<bool, MetaError> {
        let r = self.inner.delete_tag(&self.q(repository), tag).await;
        r.map_err(|e| self.err(e))
    }

    async fn list_tags(
        &self,
        repository: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, MetaError> {
        let r = self
            .inner
            .list_tags(&self.q(repository), after, limit)
            .await;
        r.map_err(|e| self.err(e))
    }

    async fn referrers(
        &self,
        repository: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>, MetaError> {
        let r = self
            .inner
            .referrers(&self.q(repository), subject, artifact_type)
            .await;
        r.map_err(|e| self.err(e))
    }
}
