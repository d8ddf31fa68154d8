//! Wildcard patterns and policy variables.
//!
//! A policy string (a `Resource`, or a condition value of a string or ARN operator)
//! is compiled once into a [`Template`]: literal text whose `*` and `?` are wildcards,
//! interleaved with policy variables (`${aws:username}`, `${aws:PrincipalTag/team,
//! 'none'}`) and escapes (`${*}`, `${?}`, `${$}`). At evaluation time the template is
//! resolved against the request's context keys into either a plain string (exact
//! operators) or a token list for wildcard matching, in which substituted text is
//! always literal.

use crate::context::Keys;

/// One element of a wildcard pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    /// A literal character.
    Ch(char),
    /// `*`: any run of characters (`colon`: may include `:`).
    Star { colon: bool },
    /// `?`: exactly one character (`colon`: may be `:`).
    One { colon: bool },
}

/// Matches `text` against `toks` in full. Dynamic programming over the text, so
/// wildcards with restricted alphabets (ARN segments) are matched exactly and the
/// cost is bounded by `toks.len() * text.len()`.
pub(crate) fn glob(toks: &[Tok], text: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    let n = text.len();
    let mut cur = vec![false; n + 1];
    cur[0] = true;
    for tok in toks {
        let mut next = vec![false; n + 1];
        match tok {
            Tok::Ch(c) => {
                for j in 0..n {
                    if cur[j] && text[j] == *c {
                        next[j + 1] = true;
                    }
                }
            }
            Tok::One { colon } => {
                for j in 0..n {
                    if cur[j] && (*colon || text[j] != ':') {
                        next[j + 1] = true;
                    }
                }
            }
            Tok::Star { colon } => {
                for j in 0..=n {
                    next[j] = cur[j] || (j > 0 && next[j - 1] && (*colon || text[j - 1] != ':'));
                }
            }
        }
        if !next.iter().any(|b| *b) {
            return false;
        }
        cur = next;
    }
    cur[n]
}

/// Tokens for a plain wildcard string (`*` and `?` are wildcards, nothing else is
/// special, wildcards cross every character).
pub(crate) fn wildcard_tokens(s: &str) -> Vec<Tok> {
    s.chars()
        .map(|c| match c {
            '*' => Tok::Star { colon: true },
            '?' => Tok::One { colon: true },
            c => Tok::Ch(c),
        })
        .collect()
}

/// Restricts wildcards to AWS's ARN rules: an ARN has six colon-separated fields
/// (`arn:partition:service:region:account:resource`); a wildcard in one of the first
/// five fields stays inside that field, except a `*` that ends its field, which AWS
/// lets expand across colons. Wildcards in the resource field (the sixth, which may
/// itself contain colons) match anything.
pub(crate) fn arn_tokens(mut toks: Vec<Tok>) -> Vec<Tok> {
    let mut field = 0usize;
    for i in 0..toks.len() {
        let ends_field = matches!(toks.get(i + 1), None | Some(Tok::Ch(':')));
        match &mut toks[i] {
            Tok::Ch(':') => field += 1,
            Tok::Ch(_) => {}
            Tok::Star { colon } => *colon = field >= 5 || ends_field,
            Tok::One { colon } => *colon = field >= 5,
        }
    }
    toks
}

/// A piece of a compiled policy string.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// Text as written; `*` and `?` in it are wildcards.
    Text(String),
    /// A literal character from an escape (`${*}`, `${?}`, `${$}`).
    Escaped(char),
    /// A policy variable: the context key (lower-cased) and its optional default.
    Var {
        key: String,
        default: Option<String>,
    },
}

/// A policy string compiled for evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    pieces: Vec<Piece>,
}

/// Why a template could not be resolved for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unresolved {
    /// The variable's key as written (lower-cased).
    pub key: String,
}

impl Template {
    /// Compiles `s`. With `variables` false (policy `Version` 2008-10-17) nothing but
    /// `*` and `?` is special. Errors describe a malformed variable.
    pub(crate) fn parse(s: &str, variables: bool) -> Result<Template, String> {
        if !variables {
            return Ok(Template {
                pieces: vec![Piece::Text(s.to_string())],
            });
        }
        let mut pieces = Vec::new();
        let mut text = String::new();
        let chars: Vec<char> = s.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            if chars[i] == '$' && chars.get(i + 1) == Some(&'{') {
                let (piece, next) = parse_variable(&chars, i + 2)?;
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(piece);
                i = next;
            } else {
                text.push(chars[i]);
                i += 1;
            }
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Template { pieces })
    }

    /// Whether the template uses any policy variable.
    pub(crate) fn has_variables(&self) -> bool {
        self.pieces.iter().any(|p| matches!(p, Piece::Var { .. }))
    }

    /// The template as one literal string (for exact operators): wildcards are
    /// plain characters, variables are substituted.
    pub(crate) fn resolve_text(&self, keys: &Keys<'_>) -> Result<String, Unresolved> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Escaped(c) => out.push(*c),
                Piece::Var { key, default } => out.push_str(&lookup_var(keys, key, default)?),
            }
        }
        Ok(out)
    }

    /// The template as wildcard tokens: `*`/`?` written in the policy are wildcards,
    /// escaped and substituted characters are literal.
    pub(crate) fn resolve_tokens(&self, keys: &Keys<'_>) -> Result<Vec<Tok>, Unresolved> {
        let mut out = Vec::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.extend(wildcard_tokens(t)),
                Piece::Escaped(c) => out.push(Tok::Ch(*c)),
                Piece::Var { key, default } => {
                    out.extend(lookup_var(keys, key, default)?.chars().map(Tok::Ch))
                }
            }
        }
        Ok(out)
    }
}

/// A variable resolves only to a single-valued key; otherwise to its default.
fn lookup_var(keys: &Keys<'_>, key: &str, default: &Option<String>) -> Result<String, Unresolved> {
    match keys.get(key) {
        Some([one]) => Ok(one.clone()),
        _ => default.clone().ok_or_else(|| Unresolved {
            key: key.to_string(),
        }),
    }
}

/// Parses the inside of `${...}` starting just after the brace; returns the piece and
/// the index after the closing `}`.
fn parse_variable(chars: &[char], start: usize) -> Result<(Piece, usize), String> {
    let shown = |end: usize| -> String {
        chars[start.saturating_sub(2)..end.min(chars.len())]
            .iter()
            .collect()
    };
    let mut i = start;
    let mut name = String::new();
    while i < chars.len() && chars[i] != '}' && chars[i] != ',' {
        name.push(chars[i]);
        i += 1;
    }
    if i >= chars.len() {
        return Err(format!("unterminated policy variable \"{}\"", shown(i)));
    }
    let name = name.trim().to_string();
    let mut default = None;
    if chars[i] == ',' {
        i += 1;
        while i < chars.len() && chars[i] == ' ' {
            i += 1;
        }
        if chars.get(i) != Some(&'\'') {
            return Err(format!(
                "policy variable \"{}\" must give its default in single quotes, like ${{key, 'default'}}",
                shown(i + 1)
            ));
        }
        i += 1;
        let mut value = String::new();
        loop {
            match chars.get(i) {
                None => {
                    return Err(format!(
                        "unterminated default value in policy variable \"{}\"",
                        shown(i)
                    ))
                }
                Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                    value.push('\'');
                    i += 2;
                }
                Some('\'') => {
                    i += 1;
                    break;
                }
                Some(c) => {
                    value.push(*c);
                    i += 1;
                }
            }
        }
        while i < chars.len() && chars[i] == ' ' {
            i += 1;
        }
        if chars.get(i) != Some(&'}') {
            return Err(format!("unterminated policy variable \"{}\"", shown(i + 1)));
        }
        default = Some(value);
    }
    let end = i + 1;
    let piece = match name.as_str() {
        "*" | "?" | "$" if default.is_none() => {
            let c = name.chars().next().unwrap_or('$');
            Piece::Escaped(c)
        }
        "" => return Err(format!("empty policy variable \"{}\"", shown(end))),
        _ if name.contains(char::is_whitespace) || name.contains('{') || name.contains('$') => {
            return Err(format!("malformed policy variable \"{}\"", shown(end)))
        }
        _ => Piece::Var {
            key: name.to_ascii_lowercase(),
            default,
        },
    };
    Ok((piece, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn keys(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn glob_basics() {
        let t = wildcard_tokens("a*c?e");
        assert!(glob(&t, "abcde"));
        assert!(glob(&t, "acxe"));
        assert!(glob(&t, "abbbbcde"));
        assert!(!glob(&t, "ace"));
        assert!(!glob(&t, "abcdef"));
        assert!(glob(&wildcard_tokens("*"), ""));
        assert!(glob(&wildcard_tokens(""), ""));
        assert!(!glob(&wildcard_tokens(""), "x"));
        assert!(!glob(&wildcard_tokens("?"), ""));
        assert!(glob(&wildcard_tokens("**a**"), "bab"));
    }

    #[test]
    fn arn_wildcards_stay_in_their_field() {
        let p = |s: &str| arn_tokens(wildcard_tokens(s));
        // Mid-field `*` does not cross a colon.
        assert!(glob(
            &p("arn:aws:ecr:us-*-1:1:repository/a"),
            "arn:aws:ecr:us-east-1:1:repository/a"
        ));
        assert!(!glob(
            &p("arn:aws:ecr:us-*1:1:repository/a"),
            "arn:aws:ecr:us-east:x1:1:repository/a"
        ));
        // `?` never crosses a colon before the resource field.
        assert!(!glob(
            &p("arn:aws:ecr?us-east-1:1:repository/a"),
            "arn:aws:ecr:us-east-1:1:repository/a"
        ));
        // A `*` that ends its field expands across colons, as AWS documents.
        assert!(glob(
            &p("arn:aws:ecr:*"),
            "arn:aws:ecr:us-east-1:1:repository/a"
        ));
        assert!(glob(&p("*"), "arn:aws:ecr:us-east-1:1:repository/a"));
        // The resource field matches anything, colons included.
        assert!(glob(
            &p("arn:aws:ecr:r:1:repo*x"),
            "arn:aws:ecr:r:1:repo:sub/x"
        ));
        assert!(glob(&p("arn:aws:ecr:r:1:repo?x"), "arn:aws:ecr:r:1:repo:x"));
    }

    #[test]
    fn variables_resolve_and_escape() {
        let k = keys(&[("aws:username", &["alice"]), ("aws:tagkeys", &["a", "b"])]);
        let keys = Keys::new(&k);
        let t = Template::parse("home/${aws:username}/*", true).expect("parses");
        assert!(t.has_variables());
        assert_eq!(t.resolve_text(&keys).expect("resolves"), "home/alice/*");
        let toks = t.resolve_tokens(&keys).expect("resolves");
        assert!(glob(&toks, "home/alice/x"));
        assert!(!glob(&toks, "home/bob/x"));

        // Escapes are literal characters even in wildcard position.
        let t = Template::parse("a${*}b${?}${$}", true).expect("parses");
        assert_eq!(t.resolve_text(&keys).expect("resolves"), "a*b?$");
        let toks = t.resolve_tokens(&keys).expect("resolves");
        assert!(glob(&toks, "a*b?$"));
        assert!(!glob(&toks, "axb?$"));

        // Multi-valued and missing keys do not resolve; defaults apply.
        let t = Template::parse("${aws:TagKeys}", true).expect("parses");
        assert_eq!(
            t.resolve_text(&keys),
            Err(Unresolved {
                key: "aws:tagkeys".into()
            })
        );
        let t = Template::parse("${aws:PrincipalTag/team, 'it''s none'}", true).expect("parses");
        assert_eq!(t.resolve_text(&keys).expect("default"), "it's none");

        // Version 2008: nothing is a variable.
        let t = Template::parse("${aws:username}", false).expect("parses");
        assert!(!t.has_variables());
        assert_eq!(t.resolve_text(&keys).expect("literal"), "${aws:username}");
    }

    #[test]
    fn malformed_variables_are_errors() {
        for bad in ["${aws:username", "${}", "${a, b}", "${a, 'b}", "${a b}"] {
            assert!(
                Template::parse(bad, true).is_err(),
                "{bad} should be rejected"
            );
        }
        assert!(Template::parse("cost $5 {x}", true).is_ok());
    }
}
