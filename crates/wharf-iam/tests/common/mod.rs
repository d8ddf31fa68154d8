//! Harness of the API tests: a real [`SqliteStore`] in a temporary directory, a small
//! [`Guard`] that evaluates trust policies' `Principal.AWS` and a deny list, and
//! botocore (`botocore_parse.py`, one long-lived python3 process) reading every
//! response as the AWS CLI would, and serializing requests as it does.

#![allow(dead_code)]

use async_trait::async_trait;
use serde_json::Value;
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use wharf_auth::{Caller, Principal};
use wharf_iam::{Guard, IamApi, IamConfig};
use wharf_meta::{IamStore, MetadataStore, Role, SqliteStore};

pub const ACCOUNT: &str = "111122223333";
pub const OTHER_ACCOUNT: &str = "444455556666";

/// A guard for tests: allows everything except `(caller ARN, action)` pairs in
/// `denied`; a role may be assumed when its trust policy's `Principal.AWS` names the
/// caller's ARN or its account root (`arn:aws:iam::<account>:root`). Records every
/// check as `(action, resource)`.
#[derive(Default)]
pub struct TestGuard {
    pub denied: Mutex<HashSet<(String, String)>>,
    pub checks: Mutex<Vec<(String, String)>>,
}

impl TestGuard {
    pub fn deny(&self, caller: &Caller, action: &str) {
        self.denied
            .lock()
            .unwrap()
            .insert((caller.arn(), action.to_string()));
    }

    pub fn checks(&self) -> Vec<(String, String)> {
        self.checks.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.checks.lock().unwrap().clear();
    }
}

fn principals(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().flat_map(principals).collect(),
        _ => Vec::new(),
    }
}

#[async_trait]
impl Guard for TestGuard {
    async fn check(&self, caller: &Caller, action: &str, resource: &str) -> Result<(), String> {
        self.checks
            .lock()
            .unwrap()
            .push((action.to_string(), resource.to_string()));
        if self
            .denied
            .lock()
            .unwrap()
            .contains(&(caller.arn(), action.to_string()))
        {
            return Err(format!(
                "User: {} is not authorized to perform: {action} on resource: {resource} because no identity-based policy allows the {action} action",
                caller.arn()
            ));
        }
        Ok(())
    }

    async fn may_assume(&self, caller: &Caller, role: &Role) -> Result<(), String> {
        let trust: Value = serde_json::from_str(&role.assume_role_policy)
            .map_err(|e| format!("trust policy of {} is not JSON: {e}", role.role_name))?;
        let statements = match &trust["Statement"] {
            Value::Array(a) => a.clone(),
            other => vec![other.clone()],
        };
        let root = format!("arn:aws:iam::{}:root", caller.account_id);
        let named = statements.iter().any(|s| {
            s["Effect"] == "Allow"
                && principals(&s["Principal"]["AWS"])
                    .iter()
                    .any(|p| *p == caller.arn() || *p == root)
        });
        if named {
            Ok(())
        } else {
            Err(format!(
                "the trust policy of role {} does not name {}",
                role.role_name,
                caller.arn()
            ))
        }
    }
}

/// An API over a fresh store.
pub struct Env {
    pub _dir: tempfile::TempDir,
    pub store: Arc<SqliteStore>,
    pub guard: Arc<TestGuard>,
    pub api: IamApi,
}

pub async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("metadata.db")).unwrap());
    let guard = Arc::new(TestGuard::default());
    let api = IamApi::new(
        store.clone() as Arc<dyn IamStore>,
        store.clone() as Arc<dyn MetadataStore>,
        guard.clone(),
        IamConfig {
            region: "us-east-1".into(),
        },
    );
    Env {
        _dir: dir,
        store,
        guard,
        api,
    }
}

pub fn user(account: &str, name: &str) -> Caller {
    Caller {
        account_id: account.to_string(),
        principal: Principal::User {
            name: name.to_string(),
            path: "/".to_string(),
        },
        access_key_id: Some("AKIATESTTESTTESTTEST".to_string()),
        source_ip: None,
    }
}

pub fn admin() -> Caller {
    user(ACCOUNT, "admin")
}

pub fn assumed(account: &str, role: &str, session: &str) -> Caller {
    Caller {
        account_id: account.to_string(),
        principal: Principal::AssumedRole {
            role: role.to_string(),
            path: "/".to_string(),
            session: session.to_string(),
        },
        access_key_id: Some("ASIATESTTESTTESTTEST".to_string()),
        source_ip: None,
    }
}

struct Parser {
    _child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

fn parser() -> &'static Mutex<Parser> {
    static PARSER: OnceLock<Mutex<Parser>> = OnceLock::new();
    PARSER.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/botocore_parse.py");
        let mut child = Command::new("python3")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 with botocore is needed (pip install botocore)");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Mutex::new(Parser {
            _child: child,
            stdin,
            stdout,
        })
    })
}

/// What botocore made of a response.
#[derive(Debug)]
pub struct Parsed {
    pub status: u16,
    pub body: String,
    pub value: Value,
}

impl Parsed {
    /// `Error.Code` (panics on a success).
    #[track_caller]
    pub fn code(&self) -> &str {
        self.value["Error"]["Code"]
            .as_str()
            .unwrap_or_else(|| panic!("not an error: {}", self.body))
    }

    #[track_caller]
    pub fn message(&self) -> &str {
        self.value["Error"]["Message"].as_str().unwrap()
    }

    /// Asserts an error with `status`, `code` and a message naming each of `words`.
    #[track_caller]
    pub fn fails(&self, status: u16, code: &str, words: &[&str]) {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.code(), code, "{}", self.body);
        assert_eq!(
            self.value["Error"]["Type"],
            if status >= 500 { "Receiver" } else { "Sender" }
        );
        for w in words {
            assert!(
                self.message().contains(w),
                "message {:?} does not name {w:?}",
                self.message()
            );
        }
    }

    /// Asserts success.
    #[track_caller]
    pub fn ok(&self) -> &Value {
        assert_eq!(self.status, 200, "{}", self.body);
        &self.value
    }
}

pub async fn call(
    api: &IamApi,
    caller: &Caller,
    service: &str,
    action: &str,
    params: &[(&str, &str)],
) -> Parsed {
    let version = if service == "sts" {
        "2011-06-15"
    } else {
        "2010-05-08"
    };
    let mut form = vec![
        ("Action".to_string(), action.to_string()),
        ("Version".to_string(), version.to_string()),
    ];
    form.extend(params.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    send(api, caller, service, action, &form).await
}

/// Calls `operation` with the form body botocore's query serializer makes of
/// `params` (the request the AWS CLI sends).
pub async fn call_boto(
    api: &IamApi,
    caller: &Caller,
    service: &str,
    operation: &str,
    params: Value,
) -> Parsed {
    let out = talk(serde_json::json!({
        "serialize": true, "service": service, "operation": operation, "params": params
    }));
    assert_eq!(
        out["ok"], true,
        "botocore refuses to serialize {operation}: {}",
        out["error"]
    );
    let form: Vec<(String, String)> = out["form"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| {
            (
                kv[0].as_str().unwrap().to_string(),
                kv[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    send(api, caller, service, operation, &form).await
}

async fn send(
    api: &IamApi,
    caller: &Caller,
    service: &str,
    action: &str,
    form: &[(String, String)],
) -> Parsed {
    let resp = api.handle(caller, service, form).await;
    let status = resp.status().as_u16();
    assert_eq!(
        resp.headers()["content-type"],
        "text/xml",
        "{action}: content type"
    );
    let request_id = resp.headers()["x-amzn-requestid"]
        .to_str()
        .unwrap()
        .to_string();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let body = String::from_utf8(bytes.to_vec()).unwrap();
    let value = parse(service, action, status, &body);
    assert_eq!(
        value["ResponseMetadata"]["RequestId"], request_id,
        "{action}: the body's RequestId is the header's"
    );
    Parsed {
        status,
        body,
        value,
    }
}

/// botocore's reading of one response; panics when botocore cannot parse it.
pub fn parse(service: &str, operation: &str, status: u16, body: &str) -> Value {
    let out = talk(serde_json::json!({
        "service": service, "operation": operation, "status": status, "body": body
    }));
    assert_eq!(
        out["ok"], true,
        "botocore cannot parse the {operation} response: {}\n{body}",
        out["error"]
    );
    out["parsed"].clone()
}

/// One request to the python helper, its answer.
fn talk(req: Value) -> Value {
    let mut p = parser().lock().unwrap_or_else(|e| e.into_inner());
    writeln!(p.stdin, "{req}").unwrap();
    p.stdin.flush().unwrap();
    let mut line = String::new();
    p.stdout.read_line(&mut line).unwrap();
    serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("botocore_parse.py answered {line:?}: {e}"))
}

/// A string of a parsed response.
#[track_caller]
pub fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for k in path {
        cur = &cur[*k];
    }
    cur.as_str()
        .unwrap_or_else(|| panic!("{path:?} is not a string in {v}"))
}

/// `Names` of a list of structures under `list`, member `field`.
pub fn names(v: &Value, list: &str, field: &str) -> Vec<String> {
    v[list]
        .as_array()
        .unwrap_or_else(|| panic!("{list} is not a list in {v}"))
        .iter()
        .map(|m| m[field].as_str().unwrap().to_string())
        .collect()
}
