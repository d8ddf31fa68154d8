//! AWS's policy evaluation logic for one request, with the decision explained.

use std::fmt;

use crate::context::{Keys, RequestContext};
use crate::document::{Effect, GrantScope, PolicyDocument, PolicyKind, Statement};

/// A policy taking part in a decision, with the words that name it in explanations.
#[derive(Debug, Clone)]
pub struct PolicySource<'a> {
    /// How the policy is named, e.g. `inline policy 'ci-push' of user alice`,
    /// `managed policy arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly`
    /// or `repository policy of team/app`.
    pub label: String,
    /// The policy.
    pub document: &'a PolicyDocument,
}

impl<'a> PolicySource<'a> {
    /// A labelled policy.
    pub fn new(label: impl Into<String>, document: &'a PolicyDocument) -> PolicySource<'a> {
        PolicySource {
            label: label.into(),
            document,
        }
    }
}

/// A statement that allowed (part of) a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The label of the policy holding the statement.
    pub source: String,
    /// The statement's Sid, if any.
    pub sid: Option<String>,
    /// The statement's index in the policy (`Statement[i]`).
    pub statement: usize,
}

impl Grant {
    fn describe(&self) -> String {
        format!(
            "{} of {}",
            Statement::describe(self.sid.as_deref(), self.statement),
            self.source
        )
    }
}

/// A resource-based policy statement that allowed the request, and how its
/// principal matched the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceGrant {
    /// The statement.
    pub grant: Grant,
    /// Whether it names the caller (or everyone) or only the caller's account.
    pub scope: GrantScope,
}

/// Why a request was allowed or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// A statement with `"Effect": "Deny"` matched; nothing can override it.
    ExplicitDeny {
        /// The label of the policy.
        source: String,
        /// The statement's Sid, if any.
        sid: Option<String>,
        /// The statement's index.
        statement: usize,
    },
    /// A statement allowed the request (for cross-account requests, the resource
    /// policy's statement; [`Decision::also`] names the identity-policy statement).
    Allowed {
        /// The label of the policy.
        source: String,
        /// The statement's Sid, if any.
        sid: Option<String>,
        /// The statement's index.
        statement: usize,
    },
    /// No explicit deny, but what allowed (if anything) was not enough: an implicit deny.
    NotAllowed {
        /// The caller was anonymous (only a resource policy allowing `*` admits it).
        anonymous: bool,
        /// The caller's account differs from the resource's.
        cross_account: bool,
        /// The caller's account ("" when anonymous).
        principal_account: String,
        /// The resource's account.
        resource_account: String,
        /// How many identity-based policies were evaluated.
        identity_policies: usize,
        /// The identity-policy statement that allowed, if one did (not enough on its
        /// own for cross-account requests, or against a trust policy).
        identity_grant: Option<Grant>,
        /// The label of the resource-based policy, if the resource has one.
        resource_policy: Option<String>,
        /// The resource policy is a role trust policy, which must allow the caller
        /// (or its account) whatever the identity-based policies say.
        trust_policy: bool,
        /// The resource-policy statement that allowed, if one did (not enough on
        /// its own when it names only the caller's account, or for cross-account requests).
        resource_grant: Option<ResourceGrant>,
    },
}

/// The outcome of [`evaluate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request is allowed.
    pub allowed: bool,
    /// Why.
    pub reason: Reason,
    /// The caller's ARN, or `anonymous`.
    pub principal: String,
    /// The action evaluated.
    pub action: String,
    /// The resource evaluated.
    pub resource: String,
    /// For an allowed cross-account request: the identity-policy statement in the
    /// caller's account that also allowed it (cross-account access needs both).
    pub also: Option<Grant>,
}

/// Evaluates one request the way AWS does.
///
/// `identity` are the caller's identity-based policies (inline and managed, ignored
/// for anonymous callers); `resource` is the resource-based policy of the resource
/// (repository or registry policy, or a role's trust policy for `sts:AssumeRole`),
/// if it has one; `resource_account` owns the resource.
///
/// Any matching `Deny` wins. Otherwise a same-account request is allowed when an
/// identity-based policy allows it, or when the resource policy allows it to the
/// caller by name (user, role or session ARN) or to `*`; a grant to the account
/// itself (`123456789012` or `:root`) only delegates to the identity-based
/// policies. A cross-account request needs both the resource policy (any matching
/// principal) and an identity-based policy to allow it. An anonymous request needs
/// a resource-policy statement whose principal is `*`. A role trust policy (a
/// document parsed as [`PolicyKind::Trust`]) must allow the caller or its account
/// even in-account: identity-based policies alone never let anyone assume a role.
///
/// Condition keys are read from `ctx.keys` only: call
/// [`RequestContext::with_standard_keys`] first for `aws:username` and friends.
pub fn evaluate(
    ctx: &RequestContext,
    identity: &[PolicySource<'_>],
    resource: Option<&PolicySource<'_>>,
    resource_account: &str,
) -> Decision {
    let keys = Keys::new(&ctx.keys);
    let trust_policy = resource.is_some_and(|r| r.document.kind() == PolicyKind::Trust);
    let p = &ctx.principal;
    let anonymous = p.anonymous;
    let cross_account = !anonymous && p.account != resource_account;
    let identity: &[PolicySource<'_>] = if anonymous { &[] } else { identity };

    let applies = |st: &Statement| {
        st.covers_action(&ctx.action)
            && st.covers_resource(&ctx.resource, &keys)
            && st.conditions_hold(&keys)
    };
    // Identity policies name no principal; should a resource-style document be
    // passed as one, its principals still have to match.
    let identity_applies = |st: &Statement| {
        let principal_ok = (st.principal.is_none() && st.not_principal.is_none())
            || st.principal_scope(p).is_some();
        principal_ok && applies(st)
    };
    let resource_scope = |st: &Statement| st.principal_scope(p).filter(|_| applies(st));

    let decision = |allowed: bool, reason: Reason, also: Option<Grant>| Decision {
        allowed,
        reason,
        principal: if anonymous {
            "anonymous".to_string()
        } else {
            p.display_name()
        },
        action: ctx.action.clone(),
        resource: ctx.resource.clone(),
        also,
    };
    let grant = |source: &str, st: &Statement, i: usize| Grant {
        source: source.to_string(),
        sid: st.sid.clone(),
        statement: i,
    };

    // 1. An explicit deny anywhere ends evaluation.
    let deny = identity
        .iter()
        .find_map(|src| {
            src.document
                .statements()
                .iter()
                .enumerate()
                .find(|(_, st)| st.effect == Effect::Deny && identity_applies(st))
                .map(|(i, st)| grant(&src.label, st, i))
        })
        .or_else(|| {
            resource.and_then(|src| {
                src.document
                    .statements()
                    .iter()
                    .enumerate()
                    .find(|(_, st)| st.effect == Effect::Deny && resource_scope(st).is_some())
                    .map(|(i, st)| grant(&src.label, st, i))
            })
        });
    if let Some(g) = deny {
        return decision(
            false,
            Reason::ExplicitDeny {
                source: g.source,
                sid: g.sid,
                statement: g.statement,
            },
            None,
        );
    }

    // 2. What allows.
    let identity_grant = identity.iter().find_map(|src| {
        src.document
            .statements()
            .iter()
            .enumerate()
            .find(|(_, st)| st.effect == Effect::Allow && identity_applies(st))
            .map(|(i, st)| grant(&src.label, st, i))
    });
    let resource_grant = resource.and_then(|src| {
        let mut account_grant = None;
        for (i, st) in src.document.statements().iter().enumerate() {
            if st.effect != Effect::Allow {
                continue;
            }
            match resource_scope(st) {
                Some(GrantScope::Caller) => {
                    return Some(ResourceGrant {
                        grant: grant(&src.label, st, i),
                        scope: GrantScope::Caller,
                    })
                }
                Some(GrantScope::Account) if account_grant.is_none() => {
                    account_grant = Some(ResourceGrant {
                        grant: grant(&src.label, st, i),
                        scope: GrantScope::Account,
                    })
                }
                _ => {}
            }
        }
        account_grant
    });

    // 3. Combine them.
    let allowed_by = |g: Grant| Reason::Allowed {
        source: g.source,
        sid: g.sid,
        statement: g.statement,
    };
    if anonymous {
        if let Some(rg) = &resource_grant {
            return decision(true, allowed_by(rg.grant.clone()), None);
        }
    } else if !cross_account {
        // A role trust policy must trust the caller or its account even in-account.
        let trusted = !trust_policy || resource_grant.is_some();
        if let Some(g) = identity_grant.as_ref().filter(|_| trusted) {
            return decision(true, allowed_by(g.clone()), None);
        }
        if let Some(rg) = resource_grant
            .as_ref()
            .filter(|rg| rg.scope == GrantScope::Caller)
        {
            return decision(true, allowed_by(rg.grant.clone()), None);
        }
    } else if let (Some(g), Some(rg)) = (&identity_grant, &resource_grant) {
        return decision(true, allowed_by(rg.grant.clone()), Some(g.clone()));
    }

    decision(
        false,
        Reason::NotAllowed {
            anonymous,
            cross_account,
            principal_account: if anonymous {
                String::new()
            } else {
                p.account.clone()
            },
            resource_account: resource_account.to_string(),
            identity_policies: identity.len(),
            identity_grant,
            resource_policy: resource.map(|r| r.label.clone()),
            trust_policy,
            resource_grant,
        },
        None,
    )
}

impl Decision {
    /// The explanation as a sentence (same as `to_string()`).
    pub fn explain(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (action, resource, who) = (&self.action, &self.resource, &self.principal);
        match &self.reason {
            Reason::ExplicitDeny {
                source,
                sid,
                statement,
            } => write!(
                f,
                "denied by {} of {source}, which explicitly denies {action} on {resource}",
                Statement::describe(sid.as_deref(), *statement)
            ),
            Reason::Allowed {
                source,
                sid,
                statement,
            } => {
                write!(
                    f,
                    "allowed by {} of {source}, which allows {action} on {resource}",
                    Statement::describe(sid.as_deref(), *statement)
                )?;
                if let Some(also) = &self.also {
                    write!(
                        f,
                        " to {who}, together with {} in the caller's account (cross-account access needs both)",
                        also.describe()
                    )?;
                }
                Ok(())
            }
            Reason::NotAllowed {
                anonymous,
                cross_account,
                principal_account,
                resource_account,
                identity_policies,
                identity_grant,
                resource_policy,
                trust_policy,
                resource_grant,
            } => {
                let no_resource_grant = match resource_policy {
                    Some(label) => format!("the {label} does not grant it"),
                    None => "no resource-based policy grants it".to_string(),
                };
                let identity_none = if *identity_policies == 0 {
                    format!("{who} has no identity-based policy that allows {action} on {resource} (it has none)")
                } else {
                    format!("no identity-based policy of {who} allows {action} on {resource}")
                };
                if *anonymous {
                    return match resource_policy {
                        Some(label) => write!(
                            f,
                            "the {label} does not allow {action} on {resource} to anonymous callers (only a grant to Principal \"*\" admits them)"
                        ),
                        None => write!(
                            f,
                            "anonymous access to {action} on {resource} needs a resource-based policy that allows it to Principal \"*\", and there is none"
                        ),
                    };
                }
                let grantee = |rg: &ResourceGrant| match rg.scope {
                    GrantScope::Account => format!("account {principal_account}"),
                    GrantScope::Caller => who.clone(),
                };
                if !cross_account {
                    if let (true, Some(g), None) = (*trust_policy, identity_grant, resource_grant) {
                        return write!(
                            f,
                            "{} allows {action} on {resource}, but {no_resource_grant} to {who}, and a role can only be assumed by principals its trust policy allows (directly or through their account)",
                            g.describe()
                        );
                    }
                    return match resource_grant {
                        Some(rg) => write!(
                            f,
                            "{} allows {action} on {resource} only to account {principal_account} as a whole, which delegates to IAM, but no identity-based policy of {who} allows it",
                            rg.grant.describe()
                        ),
                        None => write!(f, "{identity_none}, and {no_resource_grant}"),
                    };
                }
                match (identity_grant, resource_grant) {
                    (None, Some(rg)) => write!(
                        f,
                        "{} allows {action} on {resource} to {}, but no identity-based policy of {who} in account {principal_account} allows it (cross-account access needs both)",
                        rg.grant.describe(),
                        grantee(rg)
                    ),
                    (Some(g), None) => write!(
                        f,
                        "{} allows {action} on {resource}, but the resource belongs to account {resource_account} and {no_resource_grant} to {who} (cross-account access needs both)",
                        g.describe()
                    ),
                    _ => write!(
                        f,
                        "{identity_none}, and {no_resource_grant} (cross-account access from account {principal_account} to account {resource_account} needs both)"
                    ),
                }
            }
        }
    }
}
