//! The decoded form parameters of one request, with the IAM/STS model's constraints
//! (lengths and patterns of botocore's `iam` and `sts` service models) checked as AWS
//! does, answering `ValidationError` in AWS's words.

use crate::error::ApiError;

/// Which characters a value may hold (the model's `pattern`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chars {
    /// Anything.
    Any,
    /// `[\w+=,.@-]` (user, role, policy and session names).
    Name,
    /// `[\w]` (access key ids).
    Word,
    /// `/` or `/…/` of `\u0021-\u007E` (user and role paths).
    Path,
    /// `/` followed by `\u0021-\u007F` (path prefixes of list calls).
    PathPrefix,
    /// `((/[A-Za-z0-9\.,\+@=_-]+)*)/` (policy paths and their prefixes).
    PolicyPath,
    /// `\u0009\u000A\u000D\u0020-\u00FF` (policy documents).
    Document,
    /// `\u0009\u000A\u000D\u0020-\u007E\u00A1-\u00FF` (role descriptions).
    Description,
    /// `\u0020-\u00FF` (markers).
    Marker,
    /// `[\p{L}\p{Z}\p{N}_.:/=+\-@]` (tag keys and values).
    TagText,
    /// `v[1-9][0-9]*(\.[A-Za-z0-9-]*)?` (policy version ids).
    VersionId,
}

impl Chars {
    fn pattern(self) -> &'static str {
        match self {
            Chars::Any => "",
            Chars::Name => r"[\w+=,.@-]+",
            Chars::Word => r"[\w]+",
            Chars::Path => r"(\u002F)|(\u002F[\u0021-\u007E]+\u002F)",
            Chars::PathPrefix => r"\u002F[\u0021-\u007F]*",
            Chars::PolicyPath => r"((/[A-Za-z0-9\.,\+@=_-]+)*)/",
            Chars::Document => r"[\u0009\u000A\u000D\u0020-\u00FF]+",
            Chars::Description => r"[\u0009\u000A\u000D\u0020-\u007E\u00A1-\u00FF]*",
            Chars::Marker => r"[\u0020-\u00FF]+",
            Chars::TagText => r"[\p{L}\p{Z}\p{N}_.:/=+\-@]+",
            Chars::VersionId => r"v[1-9][0-9]*(\.[A-Za-z0-9-]*)?",
        }
    }

    fn matches(self, s: &str) -> bool {
        let name = |c: char| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c);
        match self {
            Chars::Any => true,
            Chars::Name => s.chars().all(name),
            Chars::Word => s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            Chars::Path => {
                s == "/"
                    || (s.len() >= 3
                        && s.starts_with('/')
                        && s.ends_with('/')
                        && s.chars().all(|c| ('\u{21}'..='\u{7E}').contains(&c)))
            }
            Chars::PathPrefix => {
                s.starts_with('/') && s.chars().all(|c| ('\u{21}'..='\u{7F}').contains(&c))
            }
            Chars::PolicyPath => {
                s.ends_with('/')
                    && s[..s.len() - 1].split('/').skip(1).all(|seg| {
                        !seg.is_empty()
                            && seg
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || ".,+@=_-".contains(c))
                    })
                    && s.starts_with('/')
            }
            Chars::Document => s
                .chars()
                .all(|c| matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{FF}')),
            Chars::Description => s.chars().all(
                |c| matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{7E}' | '\u{A1}'..='\u{FF}'),
            ),
            Chars::Marker => s.chars().all(|c| ('\u{20}'..='\u{FF}').contains(&c)),
            Chars::TagText => s.chars().all(|c| {
                c.is_alphanumeric()
                    || (c.is_whitespace() && !c.is_control())
                    || "_.:/=+-@".contains(c)
            }),
            Chars::VersionId => {
                let (number, suffix) = match s.split_once('.') {
                    Some((n, rest)) => (n, Some(rest)),
                    None => (s, None),
                };
                let digits = number.strip_prefix('v').unwrap_or("");
                digits.starts_with(|c: char| ('1'..='9').contains(&c))
                    && digits.bytes().all(|b| b.is_ascii_digit())
                    && suffix
                        .is_none_or(|x| x.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
            }
        }
    }
}

/// A model constraint: length in characters and allowed characters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rule {
    pub min: usize,
    pub max: usize,
    pub chars: Chars,
    /// Whether the value may be echoed in messages (not for documents).
    pub echo: bool,
}

const fn rule(min: usize, max: usize, chars: Chars) -> Rule {
    Rule {
        min,
        max,
        chars,
        echo: true,
    }
}

/// `userNameType` (new names and attachment calls).
pub(crate) const USER_NAME: Rule = rule(1, 64, Chars::Name);
/// `existingUserNameType`.
pub(crate) const EXISTING_USER_NAME: Rule = rule(1, 128, Chars::Name);
/// `roleNameType`.
pub(crate) const ROLE_NAME: Rule = rule(1, 64, Chars::Name);
/// `policyNameType`.
pub(crate) const POLICY_NAME: Rule = rule(1, 128, Chars::Name);
/// `pathType`.
pub(crate) const PATH: Rule = rule(1, 512, Chars::Path);
/// `pathPrefixType`.
pub(crate) const PATH_PREFIX: Rule = rule(1, 512, Chars::PathPrefix);
/// `policyPathType`.
pub(crate) const POLICY_PATH: Rule = rule(1, 512, Chars::PolicyPath);
/// `policyDocumentType`.
pub(crate) const DOCUMENT: Rule = Rule {
    min: 1,
    max: 131_072,
    chars: Chars::Document,
    echo: false,
};
/// `roleDescriptionType`.
pub(crate) const ROLE_DESCRIPTION: Rule = rule(0, 1000, Chars::Description);
/// `policyDescriptionType`.
pub(crate) const POLICY_DESCRIPTION: Rule = rule(0, 1000, Chars::Any);
/// `arnType`.
pub(crate) const ARN: Rule = rule(20, 2048, Chars::Any);
/// `accessKeyIdType`.
pub(crate) const ACCESS_KEY_ID: Rule = rule(16, 128, Chars::Word);
/// `roleSessionNameType`.
pub(crate) const SESSION_NAME: Rule = rule(2, 64, Chars::Name);
/// `markerType` (320 characters in the model; Wharf accepts the longer markers it
/// issues for long ARNs).
pub(crate) const MARKER: Rule = rule(1, 4096, Chars::Marker);
/// `policyVersionIdType`.
pub(crate) const VERSION_ID: Rule = rule(2, 128, Chars::VersionId);
/// `tagKeyType`.
pub(crate) const TAG_KEY: Rule = rule(1, 128, Chars::TagText);
/// `tagValueType`.
pub(crate) const TAG_VALUE: Rule = rule(0, 256, Chars::TagText);

/// Most tags one request may carry.
const MAX_REQUEST_TAGS: usize = 50;

/// The request's parameters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Params<'a> {
    pairs: &'a [(String, String)],
}

/// `UserName` → `userName`, as AWS names members in validation messages.
fn member(name: &str) -> String {
    let mut c = name.chars();
    match c.next() {
        Some(first) => first.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

fn shown(value: &str) -> String {
    if value.chars().count() > 128 {
        format!("{}...", value.chars().take(128).collect::<String>())
    } else {
        value.to_string()
    }
}

/// Checks `value` of member `name` against `rule`.
pub(crate) fn check(name: &str, value: &str, rule: Rule) -> Result<(), ApiError> {
    let len = value.chars().count();
    let at = if rule.echo {
        format!("Value '{}' at '{}'", shown(value), member(name))
    } else {
        format!("Value at '{}'", member(name))
    };
    let why = if len < rule.min {
        format!(
            "Member must have length greater than or equal to {}",
            rule.min
        )
    } else if len > rule.max {
        format!("Member must have length less than or equal to {}", rule.max)
    } else if !rule.chars.matches(value) {
        format!(
            "Member must satisfy regular expression pattern: {}",
            rule.chars.pattern()
        )
    } else {
        return Ok(());
    };
    Err(ApiError::validation(format!(
        "1 validation error detected: {at} failed to satisfy constraint: {why}"
    )))
}

impl<'a> Params<'a> {
    pub(crate) fn new(pairs: &'a [(String, String)]) -> Params<'a> {
        Params { pairs }
    }

    /// The first value of `name`, unchecked.
    pub(crate) fn get(&self, name: &str) -> Option<&'a str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A required parameter.
    pub(crate) fn req(&self, name: &str, rule: Rule) -> Result<&'a str, ApiError> {
        self.opt(name, rule)?.ok_or_else(|| {
            ApiError::validation(format!(
                "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
                member(name)
            ))
        })
    }

    /// An optional parameter.
    pub(crate) fn opt(&self, name: &str, rule: Rule) -> Result<Option<&'a str>, ApiError> {
        match self.get(name) {
            Some(v) => check(name, v, rule).map(|_| Some(v)),
            None => Ok(None),
        }
    }

    /// An optional integer within `min..=max`.
    pub(crate) fn int(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        let n: i64 = v.trim().parse().map_err(|_| {
            ApiError::validation(format!(
                "1 validation error detected: Value '{}' at '{}' failed to satisfy constraint: Member must be an integer",
                shown(v),
                member(name)
            ))
        })?;
        let bound = if n < min {
            format!("greater than or equal to {min}")
        } else if n > max {
            format!("less than or equal to {max}")
        } else {
            return Ok(Some(n));
        };
        Err(ApiError::validation(format!(
            "1 validation error detected: Value '{n}' at '{}' failed to satisfy constraint: Member must have value {bound}",
            member(name)
        )))
    }

    /// An optional boolean (`true`/`false`).
    pub(crate) fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(v) => Err(ApiError::validation(format!(
                "1 validation error detected: Value '{}' at '{}' failed to satisfy constraint: Member must be true or false",
                shown(v),
                member(name)
            ))),
        }
    }

    /// An optional value out of `allowed`.
    pub(crate) fn choice(
        &self,
        name: &str,
        allowed: &[&'static str],
    ) -> Result<Option<&'static str>, ApiError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        allowed.iter().find(|a| **a == v).copied().map(Some).ok_or_else(|| {
            ApiError::validation(format!(
                "1 validation error detected: Value '{}' at '{}' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
                shown(v),
                member(name),
                allowed.join(", ")
            ))
        })
    }

    /// The members of list `name` (`Name.member.1`, `Name.member.2`, …), checked
    /// against `rule`.
    pub(crate) fn list(&self, name: &str, rule: Rule) -> Result<Vec<&'a str>, ApiError> {
        let mut out = Vec::new();
        for i in 1.. {
            match self.get(&format!("{name}.member.{i}")) {
                Some(v) => {
                    check(name, v, rule)?;
                    out.push(v);
                }
                None => break,
            }
        }
        Ok(out)
    }

    /// True when list `name` was given with at least one member.
    pub(crate) fn has_list(&self, name: &str) -> bool {
        let prefix = format!("{name}.member.");
        self.pairs.iter().any(|(k, _)| k.starts_with(&prefix))
    }

    /// The `Tags` list (`Tags.member.N.Key` / `.Value`), checked as IAM does.
    pub(crate) fn tags(&self, name: &str) -> Result<Vec<(String, String)>, ApiError> {
        let mut out: Vec<(String, String)> = Vec::new();
        for i in 1.. {
            let key = self.get(&format!("{name}.member.{i}.Key"));
            let value = self.get(&format!("{name}.member.{i}.Value"));
            let (key, value) = match (key, value) {
                (None, None) => break,
                (Some(k), v) => (k, v.unwrap_or("")),
                (None, Some(_)) => {
                    return Err(ApiError::validation(format!(
                        "1 validation error detected: Value null at '{}.{i}.member.key' failed to satisfy constraint: Member must not be null",
                        member(name)
                    )))
                }
            };
            check("TagKey", key, TAG_KEY)?;
            check("TagValue", value, TAG_VALUE)?;
            reject_reserved_key(key)?;
            if out.iter().any(|(k, _)| k == key) {
                return Err(ApiError::invalid_input(format!(
                    "Duplicate tag keys found: the tag key {key} is given twice. Please note that Tag keys are case sensitive."
                )));
            }
            out.push((key.to_string(), value.to_string()));
        }
        if out.len() > MAX_REQUEST_TAGS {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value at '{}' failed to satisfy constraint: Member must have length less than or equal to {MAX_REQUEST_TAGS}",
                member(name)
            )));
        }
        Ok(out)
    }

    /// Fails with `ValidationError` naming the first of `names` that was given.
    pub(crate) fn unsupported(&self, names: &[&str], what: &str) -> Result<(), ApiError> {
        for n in names {
            if self.get(n).is_some() || self.has_list(n) {
                return Err(ApiError::validation(format!(
                    "{n} is not supported by Wharf ({what}); repeat the request without it"
                )));
            }
        }
        Ok(())
    }
}

/// Tag keys starting with `aws:` are reserved for AWS.
pub(crate) fn reject_reserved_key(key: &str) -> Result<(), ApiError> {
    if key.len() >= 4 && key[..4].eq_ignore_ascii_case("aws:") {
        return Err(ApiError::invalid_input(format!(
            "The tag key {key} uses the prefix 'aws:', which is reserved for AWS use."
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn patterns() {
        assert!(Chars::Name.matches("a.b+c=d,e@f_g-h"));
        assert!(!Chars::Name.matches("a b"));
        assert!(!Chars::Name.matches("a/b"));
        assert!(Chars::Path.matches("/") && Chars::Path.matches("/a/b/"));
        assert!(
            !Chars::Path.matches("/a") && !Chars::Path.matches("a/") && !Chars::Path.matches("//")
        );
        assert!(Chars::PolicyPath.matches("/") && Chars::PolicyPath.matches("/ecr/ci/"));
        assert!(!Chars::PolicyPath.matches("/ecr//") && !Chars::PolicyPath.matches("/a b/"));
        assert!(Chars::TagText.matches("Cost Center: 42/é"));
        assert!(!Chars::TagText.matches("a*b"));
        assert!(Chars::Document.matches("{\n\t\"a\": \"é\"}"));
        assert!(!Chars::Document.matches("{\"a\": \"€\"}"));
        assert!(Chars::VersionId.matches("v1") && Chars::VersionId.matches("v12.ab-c"));
        assert!(
            !Chars::VersionId.matches("v0")
                && !Chars::VersionId.matches("1")
                && !Chars::VersionId.matches("v")
        );
    }

    #[test]
    fn messages_name_the_member_and_rule() {
        let pairs = p(&[("UserName", "bad name"), ("MaxItems", "0")]);
        let params = Params::new(&pairs);
        let e = params.req("UserName", USER_NAME).unwrap_err();
        assert_eq!(e.code, "ValidationError");
        assert!(
            e.message.contains("Value 'bad name' at 'userName'"),
            "{}",
            e.message
        );
        assert!(e.message.contains(r"[\w+=,.@-]+"), "{}", e.message);
        let e = params.req("RoleName", ROLE_NAME).unwrap_err();
        assert!(
            e.message.contains("Value null at 'roleName'"),
            "{}",
            e.message
        );
        let e = params.int("MaxItems", 1, 1000).unwrap_err();
        assert!(
            e.message.contains("greater than or equal to 1"),
            "{}",
            e.message
        );
    }

    #[test]
    fn tags_and_lists() {
        let pairs = p(&[
            ("Tags.member.1.Key", "team"),
            ("Tags.member.1.Value", "core"),
            ("Tags.member.2.Key", "empty"),
            ("TagKeys.member.1", "a"),
            ("TagKeys.member.2", "b"),
        ]);
        let params = Params::new(&pairs);
        assert_eq!(
            params.tags("Tags").unwrap(),
            vec![
                ("team".to_string(), "core".to_string()),
                ("empty".to_string(), String::new())
            ]
        );
        assert_eq!(params.list("TagKeys", TAG_KEY).unwrap(), ["a", "b"]);
        let dup = p(&[("Tags.member.1.Key", "a"), ("Tags.member.2.Key", "a")]);
        assert_eq!(
            Params::new(&dup).tags("Tags").unwrap_err().code,
            "InvalidInput"
        );
        let reserved = p(&[("Tags.member.1.Key", "AWS:x")]);
        assert_eq!(
            Params::new(&reserved).tags("Tags").unwrap_err().code,
            "InvalidInput"
        );
    }
}
