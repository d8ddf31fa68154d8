//! Policy documents: parsing and validation of the JSON policy language.

use serde_json::{Map, Value};

use crate::condition::Condition;
use crate::context::{Keys, PrincipalInfo};
use crate::error::PolicyError;
use crate::pattern::{arn_tokens, glob, wildcard_tokens, Template, Tok};

/// The largest policy AWS accepts, in characters not counting white space.
pub const MAX_POLICY_CHARS: usize = 10_240;

/// Raw input larger than this is rejected before it is parsed, white space or not.
const MAX_RAW_BYTES: usize = 1 << 20;

/// The current policy language version (policy variables enabled).
pub const VERSION_2012: &str = "2012-10-17";
/// The original policy language version (no policy variables); also what a
/// document without `Version` means.
pub const VERSION_2008: &str = "2008-10-17";

/// Where a policy is attached, which decides the elements it may and must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// An identity-based policy of a user or role (inline or managed): no
    /// `Principal`, and every statement needs `Resource` or `NotResource`.
    Identity,
    /// A resource-based policy (ECR repository or registry policy): every statement
    /// names a `Principal` or `NotPrincipal`; `Resource` may be omitted, and then the
    /// statement covers the resource the policy is attached to.
    Resource,
    /// A role trust policy: every statement names a `Principal`; no `NotPrincipal`,
    /// `Resource` or `NotResource`.
    Trust,
}

impl PolicyKind {
    fn describe(self) -> &'static str {
        match self {
            PolicyKind::Identity => "an identity-based policy",
            PolicyKind::Resource => "a resource-based policy",
            PolicyKind::Trust => "a role trust policy",
        }
    }
}

/// `Allow` or `Deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// The statement grants.
    Allow,
    /// The statement denies, overriding any allow.
    Deny,
}

/// One entry of `Action` or `NotAction`: `*` or `service:action`, with `*` and `?`
/// wildcards, matched case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionPattern {
    text: String,
    toks: Vec<Tok>,
}

impl ActionPattern {
    fn parse(text: &str, at: &str) -> Result<ActionPattern, String> {
        let valid = text == "*"
            || text.split_once(':').is_some_and(|(service, action)| {
                !service.is_empty()
                    && !action.is_empty()
                    && service
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && action.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'*' | b'?' | b'-' | b'_')
                    })
            });
        if !valid {
            return Err(format!(
                "{at} \"{text}\" must be \"*\" or \"service:action\" (such as \"ecr:BatchGetImage\" or \"ecr:Describe*\")"
            ));
        }
        Ok(ActionPattern {
            text: text.to_string(),
            toks: wildcard_tokens(&text.to_lowercase()),
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `action` (any case) matches.
    pub fn matches(&self, action: &str) -> bool {
        glob(&self.toks, &action.to_lowercase())
    }
}

/// One entry of `Resource` or `NotResource`: `*` or an ARN with `*`/`?` wildcards
/// (kept within ARN fields) and, in 2012-10-17 documents, policy variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePattern {
    text: String,
    template: Template,
}

impl ResourcePattern {
    fn parse(text: &str, at: &str, variables: bool) -> Result<ResourcePattern, String> {
        let arn_like =
            text.starts_with("arn:") && (text.splitn(6, ':').count() == 6 || text.ends_with('*'));
        if text != "*" && !arn_like {
            return Err(format!(
                "{at} \"{text}\" must be \"*\" or an ARN (\"arn:partition:service:region:account:resource\")"
            ));
        }
        let template = Template::parse(text, variables).map_err(|e| format!("{at}: {e}"))?;
        Ok(ResourcePattern {
            text: text.to_string(),
            template,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern uses policy variables (only in 2012-10-17 documents).
    pub fn has_variables(&self) -> bool {
        self.template.has_variables()
    }

    /// Whether the resource ARN matches, with policy variables taken from `keys`; a
    /// variable that cannot be resolved matches nothing.
    pub(crate) fn matches(&self, resource: &str, keys: &Keys<'_>) -> bool {
        self.template
            .resolve_tokens(keys)
            .is_ok_and(|toks| glob(&arn_tokens(toks), resource))
    }
}

/// One principal named in `Principal` or `NotPrincipal`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalId {
    /// `{"AWS": "*"}`: every principal, anonymous callers included.
    AnyAws,
    /// `{"AWS": "123456789012"}` or `{"AWS": "arn:aws:iam::123456789012:root"}`: the
    /// account, which delegates to the account's own IAM policies.
    Account {
        /// The 12-digit account ID.
        account: String,
    },
    /// `{"AWS": ARN}` of an IAM user, a role (matching every session of it), an
    /// assumed-role session or a federated user.
    Arn(String),
    /// `{"Service": ...}`: an AWS service; never matches a user or role.
    Service(String),
    /// `{"Federated": ...}`: a web identity or SAML provider; never matches a user or role.
    Federated(String),
    /// `{"CanonicalUser": ...}`: never matches a user or role.
    CanonicalUser(String),
}

/// The value of `Principal` or `NotPrincipal`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// `"*"`: everyone, anonymous callers included.
    Any,
    /// `{"AWS": ..., "Service": ..., ...}`.
    Ids(Vec<PrincipalId>),
}

/// How a resource-based statement's principal matched the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantScope {
    /// The caller by name (user ARN, role ARN, session ARN) or everyone (`*`): a
    /// same-account allow needs nothing more.
    Caller,
    /// The caller's account (account ID or `:root`): delegates to the account's
    /// identity-based policies, which must allow too.
    Account,
}

impl Principal {
    /// How the caller matches, if it does (for `Principal`).
    pub(crate) fn matches(&self, p: &PrincipalInfo) -> Option<GrantScope> {
        let ids = match self {
            Principal::Any => return Some(GrantScope::Caller),
            Principal::Ids(ids) => ids,
        };
        let mut best = None;
        for id in ids {
            match id {
                PrincipalId::AnyAws => return Some(GrantScope::Caller),
                PrincipalId::Arn(a) if !p.anonymous && names_caller(a, p) => {
                    return Some(GrantScope::Caller)
                }
                PrincipalId::Account { account } if !p.anonymous && *account == p.account => {
                    best = Some(GrantScope::Account)
                }
                _ => {}
            }
        }
        best
    }

    /// Whether the caller is excepted (for `NotPrincipal`). AWS checks the caller's
    /// account and then the caller itself, so both must be listed: the account, and
    /// the user, the role or the session (an account root needs only the account).
    pub(crate) fn exempts(&self, p: &PrincipalInfo) -> bool {
        let ids = match self {
            Principal::Any => return true,
            Principal::Ids(ids) => ids,
        };
        if ids.contains(&PrincipalId::AnyAws) {
            return true;
        }
        if p.anonymous {
            return false;
        }
        let account_listed = ids
            .iter()
            .any(|id| matches!(id, PrincipalId::Account { account } if *account == p.account));
        if !account_listed {
            return false;
        }
        p.principal_type() == "Account"
            || ids
                .iter()
                .any(|id| matches!(id, PrincipalId::Arn(a) if names_caller(a, p)))
    }
}

fn names_caller(arn: &str, p: &PrincipalInfo) -> bool {
    arn == p.arn || p.role_arn.as_deref() == Some(arn)
}

/// One statement of a policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// `Sid`, if given (an empty `Sid` counts as none).
    pub sid: Option<String>,
    /// `Effect`.
    pub effect: Effect,
    /// `Principal` (resource-based and trust policies).
    pub principal: Option<Principal>,
    /// `NotPrincipal` (resource-based policies, with `Deny`).
    pub not_principal: Option<Principal>,
    /// `Action` (exactly one of `action` / `not_action` is set).
    pub action: Option<Vec<ActionPattern>>,
    /// `NotAction`.
    pub not_action: Option<Vec<ActionPattern>>,
    /// `Resource` (neither this nor `not_resource`: the attached resource).
    pub resource: Option<Vec<ResourcePattern>>,
    /// `NotResource`.
    pub not_resource: Option<Vec<ResourcePattern>>,
    /// `Condition`: every entry must hold.
    pub condition: Vec<Condition>,
}

impl Statement {
    /// Whether the statement covers `action` (Action / NotAction).
    pub fn covers_action(&self, action: &str) -> bool {
        match (&self.action, &self.not_action) {
            (Some(list), _) => list.iter().any(|a| a.matches(action)),
            (None, Some(list)) => !list.iter().any(|a| a.matches(action)),
            (None, None) => false,
        }
    }

    /// Whether the statement covers `resource` (Resource / NotResource; neither
    /// means the resource the policy is attached to).
    pub(crate) fn covers_resource(&self, resource: &str, keys: &Keys<'_>) -> bool {
        match (&self.resource, &self.not_resource) {
            (Some(list), _) => list.iter().any(|r| r.matches(resource, keys)),
            (None, Some(list)) => !list.iter().any(|r| r.matches(resource, keys)),
            (None, None) => true,
        }
    }

    /// Whether every condition holds.
    pub(crate) fn conditions_hold(&self, keys: &Keys<'_>) -> bool {
        self.condition.iter().all(|c| c.matches(keys))
    }

    /// How the statement's `Principal`/`NotPrincipal` matches the caller. `None`
    /// when it does not, or when the statement names no principal at all.
    pub(crate) fn principal_scope(&self, p: &PrincipalInfo) -> Option<GrantScope> {
        match (&self.principal, &self.not_principal) {
            (Some(pr), _) => pr.matches(p),
            (None, Some(np)) => (!np.exempts(p)).then_some(GrantScope::Caller),
            (None, None) => None,
        }
    }

    /// `statement "Sid" (Statement[i])`, or `Statement[i]` without a Sid.
    pub(crate) fn describe(sid: Option<&str>, index: usize) -> String {
        match sid {
            Some(s) => format!("statement \"{s}\" (Statement[{index}])"),
            None => format!("Statement[{index}]"),
        }
    }
}

/// A parsed and validated policy document.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyDocument {
    version: &'static str,
    id: Option<String>,
    kind: PolicyKind,
    statements: Vec<Statement>,
}

impl PolicyDocument {
    /// Parses and validates a policy of the given kind. Errors say where and why,
    /// e.g. `Statement[1].Effect must be "Allow" or "Deny", not "allow"`.
    pub fn parse(text: &str, kind: PolicyKind) -> Result<PolicyDocument, PolicyError> {
        parse_document(text, kind).map_err(PolicyError::new)
    }

    /// The statements, in document order (`Statement[i]` is `statements()[i]`).
    pub fn statements(&self) -> &[Statement] {
        &self.statements
    }

    /// The effective language version: `2012-10-17`, or `2008-10-17` (also when the
    /// document has no `Version`).
    pub fn version(&self) -> &str {
        self.version
    }

    /// `Id`, if given.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The kind the document was validated as.
    pub fn kind(&self) -> PolicyKind {
        self.kind
    }
}

const TOP_LEVEL: &[&str] = &["Version", "Id", "Statement"];
const STATEMENT_ELEMENTS: &[&str] = &[
    "Sid",
    "Effect",
    "Principal",
    "NotPrincipal",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Condition",
];

fn unknown_element(name: &str, known: &[&str]) -> String {
    match known.iter().find(|k| k.eq_ignore_ascii_case(name)) {
        Some(k) => format!("\"{name}\" (element names are case-sensitive: \"{k}\")"),
        None => format!("\"{name}\""),
    }
}

fn parse_document(text: &str, kind: PolicyKind) -> Result<PolicyDocument, String> {
    if text.len() > MAX_RAW_BYTES {
        return Err(format!(
            "policy document is {} bytes; the limit is {MAX_POLICY_CHARS} characters",
            text.len()
        ));
    }
    let size = text.chars().filter(|c| !c.is_whitespace()).count();
    if size > MAX_POLICY_CHARS {
        return Err(format!(
            "policy document is {size} characters (not counting white space); the limit is {MAX_POLICY_CHARS}"
        ));
    }
    let value: Value = serde_json::from_str(text)
        .map_err(|e| format!("policy document is not valid JSON: {e}"))?;
    let Value::Object(top) = value else {
        return Err("policy document must be a JSON object".to_string());
    };
    if let Some(k) = top.keys().find(|k| !TOP_LEVEL.contains(&k.as_str())) {
        return Err(format!(
            "unknown top-level element {} (expected Version, Id and Statement)",
            unknown_element(k, TOP_LEVEL)
        ));
    }
    let version = match top.get("Version") {
        None => VERSION_2008,
        Some(Value::String(v)) if v == VERSION_2012 => VERSION_2012,
        Some(Value::String(v)) if v == VERSION_2008 => VERSION_2008,
        Some(other) => {
            return Err(format!(
                "Version must be \"{VERSION_2012}\" or \"{VERSION_2008}\", not {other}"
            ))
        }
    };
    let id = match top.get("Id") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err("Id must be a string".to_string()),
    };
    let raw_statements: Vec<&Map<String, Value>> = match top.get("Statement") {
        None => return Err("policy document must have a Statement".to_string()),
        Some(Value::Object(s)) => vec![s],
        Some(Value::Array(list)) => {
            if list.is_empty() {
                return Err("Statement must not be an empty list".to_string());
            }
            list.iter()
                .enumerate()
                .map(|(i, s)| {
                    s.as_object()
                        .ok_or_else(|| format!("Statement[{i}] must be an object"))
                })
                .collect::<Result<_, _>>()?
        }
        Some(_) => return Err("Statement must be an object or a list of objects".to_string()),
    };
    let variables = version == VERSION_2012;
    let mut statements = Vec::with_capacity(raw_statements.len());
    for (i, raw) in raw_statements.into_iter().enumerate() {
        let st = parse_statement(i, raw, kind, variables)?;
        if let Some(sid) = &st.sid {
            if let Some(j) = statements
                .iter()
                .position(|s: &Statement| s.sid.as_deref() == Some(sid.as_str()))
            {
                return Err(format!(
                    "Statement[{i}].Sid \"{sid}\" is already used by Statement[{j}]; Sids must be unique within a policy"
                ));
            }
        }
        statements.push(st);
    }
    Ok(PolicyDocument {
        version,
        id,
        kind,
        statements,
    })
}

/// A string or a non-empty list of strings.
fn string_list(v: &Value, at: &str) -> Result<Vec<(String, String)>, String> {
    match v {
        Value::String(s) => Ok(vec![(at.to_string(), s.clone())]),
        Value::Array(items) if items.is_empty() => Err(format!("{at} must not be an empty list")),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok((format!("{at}[{i}]"), s.clone())),
                _ => Err(format!("{at}[{i}] must be a string")),
            })
            .collect(),
        _ => Err(format!("{at} must be a string or a list of strings")),
    }
}

fn parse_statement(
    i: usize,
    raw: &Map<String, Value>,
    kind: PolicyKind,
    variables: bool,
) -> Result<Statement, String> {
    let at = format!("Statement[{i}]");
    if let Some(k) = raw
        .keys()
        .find(|k| !STATEMENT_ELEMENTS.contains(&k.as_str()))
    {
        return Err(format!(
            "{at} has unknown element {}",
            unknown_element(k, STATEMENT_ELEMENTS)
        ));
    }

    let sid = match raw.get("Sid") {
        None => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => {
            if kind != PolicyKind::Resource && !s.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(format!(
                    "{at}.Sid \"{s}\" may contain only letters and digits in {}",
                    kind.describe()
                ));
            }
            Some(s.clone())
        }
        Some(_) => return Err(format!("{at}.Sid must be a string")),
    };

    let effect = match raw.get("Effect") {
        None => return Err(format!("{at} must have an Effect (\"Allow\" or \"Deny\")")),
        Some(Value::String(s)) if s == "Allow" => Effect::Allow,
        Some(Value::String(s)) if s == "Deny" => Effect::Deny,
        Some(other) => {
            return Err(format!(
                "{at}.Effect must be \"Allow\" or \"Deny\", not {other}"
            ))
        }
    };

    let principal = raw
        .get("Principal")
        .map(|v| parse_principal(v, &format!("{at}.Principal")))
        .transpose()?;
    let not_principal = raw
        .get("NotPrincipal")
        .map(|v| parse_principal(v, &format!("{at}.NotPrincipal")))
        .transpose()?;
    match kind {
        PolicyKind::Identity => {
            for name in ["Principal", "NotPrincipal"] {
                if raw.contains_key(name) {
                    return Err(format!(
                        "{at}.{name} is not allowed in an identity-based policy (it applies to the identity it is attached to)"
                    ));
                }
            }
        }
        PolicyKind::Resource | PolicyKind::Trust => {
            if principal.is_some() && not_principal.is_some() {
                return Err(format!(
                    "{at} must not have both Principal and NotPrincipal"
                ));
            }
            if kind == PolicyKind::Trust && not_principal.is_some() {
                return Err(format!(
                    "{at}.NotPrincipal is not allowed in a role trust policy"
                ));
            }
            if principal.is_none() && not_principal.is_none() {
                return Err(format!(
                    "{at} must have a {} in {}",
                    if kind == PolicyKind::Trust {
                        "Principal"
                    } else {
                        "Principal or a NotPrincipal"
                    },
                    kind.describe()
                ));
            }
            if not_principal.is_some() && effect == Effect::Allow {
                return Err(format!(
                    "{at}.NotPrincipal can only be used with \"Effect\": \"Deny\""
                ));
            }
        }
    }

    let actions = |name: &str| -> Result<Option<Vec<ActionPattern>>, String> {
        raw.get(name)
            .map(|v| {
                string_list(v, &format!("{at}.{name}"))?
                    .iter()
                    .map(|(where_, s)| ActionPattern::parse(s, where_))
                    .collect()
            })
            .transpose()
    };
    let action = actions("Action")?;
    let not_action = actions("NotAction")?;
    match (&action, &not_action) {
        (Some(_), Some(_)) => return Err(format!("{at} must not have both Action and NotAction")),
        (None, None) => return Err(format!("{at} must have an Action or a NotAction")),
        _ => {}
    }

    let resources = |name: &str| -> Result<Option<Vec<ResourcePattern>>, String> {
        raw.get(name)
            .map(|v| {
                string_list(v, &format!("{at}.{name}"))?
                    .iter()
                    .map(|(where_, s)| ResourcePattern::parse(s, where_, variables))
                    .collect()
            })
            .transpose()
    };
    let resource = resources("Resource")?;
    let not_resource = resources("NotResource")?;
    match (kind, &resource, &not_resource) {
        (_, Some(_), Some(_)) => {
            return Err(format!("{at} must not have both Resource and NotResource"))
        }
        (PolicyKind::Identity, None, None) => {
            return Err(format!("{at} must have a Resource or a NotResource"))
        }
        (PolicyKind::Trust, Some(_), _) | (PolicyKind::Trust, _, Some(_)) => {
            let name = if resource.is_some() {
                "Resource"
            } else {
                "NotResource"
            };
            return Err(format!(
                "{at}.{name} is not allowed in a role trust policy (the resource is the role)"
            ));
        }
        _ => {}
    }

    let condition = match raw.get("Condition") {
        None => Vec::new(),
        Some(v) => parse_condition(v, &format!("{at}.Condition"), variables)?,
    };

    Ok(Statement {
        sid,
        effect,
        principal,
        not_principal,
        action,
        not_action,
        resource,
        not_resource,
        condition,
    })
}

fn parse_principal(v: &Value, at: &str) -> Result<Principal, String> {
    let shape = || {
        format!("{at} must be \"*\" or an object such as {{\"AWS\": \"arn:aws:iam::123456789012:root\"}}")
    };
    let map = match v {
        Value::String(s) if s == "*" => return Ok(Principal::Any),
        Value::Object(m) if !m.is_empty() => m,
        _ => return Err(shape()),
    };
    let mut ids = Vec::new();
    for (kind, values) in map {
        let here = format!("{at}.{kind}");
        let list = string_list(values, &here)?;
        for (where_, value) in list {
            let id = match kind.as_str() {
                "AWS" => parse_aws_principal(&value, &where_)?,
                "Service" | "Federated" | "CanonicalUser" => {
                    if value.is_empty() {
                        return Err(format!("{where_} must not be empty"));
                    }
                    match kind.as_str() {
                        "Service" => PrincipalId::Service(value),
                        "Federated" => PrincipalId::Federated(value),
                        _ => PrincipalId::CanonicalUser(value),
                    }
                }
                other => {
                    return Err(format!(
                        "{at} has unknown principal type \"{other}\" (expected AWS, Service, Federated or CanonicalUser)"
                    ))
                }
            };
            ids.push(id);
        }
    }
    Ok(Principal::Ids(ids))
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

fn parse_aws_principal(value: &str, at: &str) -> Result<PrincipalId, String> {
    if value == "*" {
        return Ok(PrincipalId::AnyAws);
    }
    if value.contains('*') || value.contains('?') {
        return Err(format!(
            "{at} \"{value}\": a principal cannot use wildcards except \"*\" for everyone (use a condition on aws:PrincipalArn instead)"
        ));
    }
    if is_account_id(value) {
        return Ok(PrincipalId::Account {
            account: value.to_string(),
        });
    }
    let invalid = || {
        format!(
            "{at} \"{value}\" is not \"*\", a 12-digit account ID, or the ARN of an account root, IAM user, role or role session"
        )
    };
    let parts: Vec<&str> = value.splitn(6, ':').collect();
    let [arn, partition, service, region, account, resource] = parts.as_slice() else {
        return Err(invalid());
    };
    if *arn != "arn" || partition.is_empty() || !region.is_empty() || !is_account_id(account) {
        return Err(invalid());
    }
    let named = |prefix: &str, min_parts: usize| {
        resource
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.split('/').filter(|p| !p.is_empty()).count() >= min_parts)
    };
    match *service {
        "iam" if *resource == "root" => Ok(PrincipalId::Account {
            account: account.to_string(),
        }),
        "iam" if named("user/", 1) || named("role/", 1) => Ok(PrincipalId::Arn(value.to_string())),
        "iam" if resource.starts_with("group/") => Err(format!(
            "{at} \"{value}\": an IAM group cannot be a principal"
        )),
        "sts" if named("assumed-role/", 2) || named("federated-user/", 1) => {
            Ok(PrincipalId::Arn(value.to_string()))
        }
        _ => Err(invalid()),
    }
}

fn parse_condition(v: &Value, at: &str, variables: bool) -> Result<Vec<Condition>, String> {
    let Value::Object(ops) = v else {
        return Err(format!(
            "{at} must be an object of condition operators, such as {{\"StringEquals\": {{\"aws:username\": \"alice\"}}}}"
        ));
    };
    let mut out = Vec::new();
    for (op, block) in ops {
        let Value::Object(block) = block else {
            return Err(format!(
                "{at}.{op} must be an object of condition keys to values"
            ));
        };
        if block.is_empty() {
            return Err(format!("{at}.{op} must name at least one condition key"));
        }
        for (key, values) in block {
            let here = format!("{at}.{op}[\"{key}\"]");
            let values = condition_values(values, &here)?;
            let c = Condition::new(op, key, values, variables).map_err(|e| {
                if e.starts_with("unknown condition operator")
                    || e.starts_with("condition operator")
                {
                    format!("{at}: {e}")
                } else {
                    format!("{here}: {e}")
                }
            })?;
            out.push(c);
        }
    }
    Ok(out)
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn condition_values(v: &Value, at: &str) -> Result<Vec<String>, String> {
    let bad = || format!("{at} must be a string, number or boolean, or a list of them");
    match v {
        Value::Array(items) => items.iter().map(|i| scalar(i).ok_or_else(bad)).collect(),
        other => Ok(vec![scalar(other).ok_or_else(bad)?]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str, kind: PolicyKind) -> String {
        match PolicyDocument::parse(text, kind) {
            Ok(_) => panic!("expected an error for {text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn action_patterns() {
        let a = ActionPattern::parse("ecr:Describe*", "A").expect("valid");
        assert!(a.matches("ecr:DescribeImages"));
        assert!(a.matches("ECR:describerepositories"));
        assert!(!a.matches("ecr:ListImages"));
        assert!(!a.matches("ecr-public:DescribeImages"));
        let q = ActionPattern::parse("ecr:?etAuthorizationToken", "A").expect("valid");
        assert!(q.matches("ecr:GetAuthorizationToken"));
        assert!(ActionPattern::parse("*", "A")
            .expect("valid")
            .matches("sts:AssumeRole"));
        for bad in ["ecr", "ecr:", ":Get", "ec*:Get", "ecr:Get Image", ""] {
            assert!(ActionPattern::parse(bad, "A").is_err(), "{bad}");
        }
    }

    #[test]
    fn aws_principals() {
        let ok = |s: &str| parse_aws_principal(s, "P").expect(s);
        assert_eq!(ok("*"), PrincipalId::AnyAws);
        assert_eq!(
            ok("111122223333"),
            PrincipalId::Account {
                account: "111122223333".into()
            }
        );
        assert_eq!(
            ok("arn:aws:iam::111122223333:root"),
            PrincipalId::Account {
                account: "111122223333".into()
            }
        );
        assert!(matches!(
            ok("arn:aws:iam::111122223333:user/ci/alice"),
            PrincipalId::Arn(_)
        ));
        assert!(matches!(
            ok("arn:aws:iam::111122223333:role/builder"),
            PrincipalId::Arn(_)
        ));
        assert!(matches!(
            ok("arn:aws:sts::111122223333:assumed-role/builder/s1"),
            PrincipalId::Arn(_)
        ));
        for bad in [
            "arn:aws:iam::111122223333:user/*",
            "11112222333",
            "arn:aws:iam::111122223333:group/devs",
            "arn:aws:iam:us-east-1:111122223333:user/a",
            "arn:aws:sts::111122223333:assumed-role/onlyrole",
            "alice",
        ] {
            assert!(parse_aws_principal(bad, "P").is_err(), "{bad}");
        }
    }

    #[test]
    fn version_and_statement_forms() {
        let d = PolicyDocument::parse(
            r#"{"Statement":{"Effect":"Allow","Action":"ecr:*","Resource":"*"}}"#,
            PolicyKind::Identity,
        )
        .expect("valid");
        assert_eq!(d.version(), VERSION_2008);
        assert_eq!(d.statements().len(), 1);
        let d = PolicyDocument::parse(
            r#"{"Version":"2012-10-17","Id":"x","Statement":[{"Sid":"","Effect":"Deny","NotAction":["iam:*"],"NotResource":"arn:aws:iam::*:*"}]}"#,
            PolicyKind::Identity,
        )
        .expect("valid");
        assert_eq!(d.version(), VERSION_2012);
        assert_eq!(d.id(), Some("x"));
        assert_eq!(d.statements()[0].sid, None);
        assert_eq!(d.statements()[0].effect, Effect::Deny);
        assert!(err(
            r#"{"Version":"2012-10-18","Statement":[]}"#,
            PolicyKind::Identity
        )
        .contains("Version must be \"2012-10-17\" or \"2008-10-17\", not \"2012-10-18\""));
    }

    #[test]
    fn condition_shapes() {
        let base = |cond: &str| {
            format!(
                r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"ecr:*","Resource":"*","Condition":{cond}}}]}}"#
            )
        };
        let d = PolicyDocument::parse(
            &base(r#"{"NumericLessThan":{"s3:max-keys":10},"Bool":{"aws:SecureTransport":true},"StringEquals":{"aws:TagKeys":["a","b"]}}"#),
            PolicyKind::Identity,
        )
        .expect("valid");
        let conds = &d.statements()[0].condition;
        assert_eq!(conds.len(), 3);
        let n = conds
            .iter()
            .find(|c| c.operator() == "NumericLessThan")
            .expect("present");
        assert_eq!(n.values(), ["10"]);
        assert_eq!(n.key(), "s3:max-keys");
        assert!(err(
            &base(r#"{"StringEquals":{"aws:x":{"a":1}}}"#),
            PolicyKind::Identity
        )
        .contains(
            "Statement[0].Condition.StringEquals[\"aws:x\"] must be a string, number or boolean"
        ));
        assert!(err(&base(r#"{"StringEquals":"x"}"#), PolicyKind::Identity)
            .contains("Statement[0].Condition.StringEquals must be an object"));
        assert!(err(&base(r#"["x"]"#), PolicyKind::Identity)
            .contains("Statement[0].Condition must be an object"));
    }
}
