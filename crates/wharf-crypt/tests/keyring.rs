//! Key files: parsing, errors with line numbers, generation and rotation on disk.

mod common;

use base64::Engine;
use common::key_line;
use std::os::unix::fs::PermissionsExt;
use wharf_crypt::{CryptError, Envelope, Keyring, DEFAULT_KEY_ID};

fn b64(fill: u8, len: usize) -> String {
    base64::engine::general_purpose::STANDARD.encode(vec![fill; len])
}

fn parse_err(text: &str) -> (usize, Option<String>, String) {
    match Keyring::parse(text, "/etc/wharf/keys") {
        Err(e @ CryptError::KeyFile { .. }) => {
            let msg = e.to_string();
            let CryptError::KeyFile { line, key_id, .. } = e else {
                unreachable!()
            };
            assert!(msg.starts_with("key file /etc/wharf/keys"), "{msg}");
            if line > 0 {
                assert!(
                    msg.starts_with(&format!("key file /etc/wharf/keys, line {line}")),
                    "{msg}"
                );
            }
            (line, key_id, msg)
        }
        other => panic!("expected a key file error, got {other:?}"),
    }
}

#[test]
fn parses_keys_comments_and_versions() {
    let text = format!(
        "# Wharf keys\n\n{}   # the current one\n{}\n  # indented comment\n{}{}",
        key_line("default", 1).trim_end(),
        key_line("alias/team-a", 2).trim_end(),
        key_line("default", 3),
        key_line("arn:aws:kms:eu-west-1:123456789012:key/abcd", 4).trim_end(),
    );
    let ring = Keyring::parse(&text, "t").unwrap();
    assert_eq!(ring.current_id(), "default");
    assert!(ring.has("alias/team-a") && ring.has("arn:aws:kms:eu-west-1:123456789012:key/abcd"));
    assert!(!ring.has("alias/team-b"));
    assert_eq!(
        ring.ids(),
        vec![
            "default",
            "alias/team-a",
            "arn:aws:kms:eu-west-1:123456789012:key/abcd"
        ]
    );
    let keys = ring.keys();
    assert_eq!(keys.len(), 4);
    assert_eq!(
        (keys[0].id, keys[0].line, keys[0].current, keys[0].default),
        ("default", 3, true, true)
    );
    assert_eq!(
        (keys[1].id, keys[1].line, keys[1].current, keys[1].default),
        ("alias/team-a", 4, true, false)
    );
    assert_eq!(
        (keys[2].id, keys[2].line, keys[2].current),
        ("default", 6, false)
    );
    assert_ne!(keys[0].fingerprint, keys[2].fingerprint);
    // New wraps use the first version of an id.
    let env = Envelope::new(&ring, &["default"]).unwrap();
    assert_eq!(env.wraps()[0].fingerprint, keys[0].fingerprint);
}

#[test]
fn bad_base64_names_line_and_key_but_not_the_text() {
    let text = format!("{}bad-key !!!notbase64###\n", key_line("default", 1));
    let (line, id, msg) = parse_err(&text);
    assert_eq!((line, id.as_deref()), (2, Some("bad-key")));
    assert!(
        msg.contains("not valid base64") && msg.contains("'bad-key'"),
        "{msg}"
    );
    assert!(!msg.contains("notbase64"), "{msg}");
}

#[test]
fn wrong_length() {
    let text = format!("# keys\n{}short {}\n", key_line("default", 1), b64(7, 16));
    let (line, id, msg) = parse_err(&text);
    assert_eq!((line, id.as_deref()), (3, Some("short")));
    assert!(
        msg.contains("decodes to 16 bytes") && msg.contains("32"),
        "{msg}"
    );
    assert!(!msg.contains(&b64(7, 16)), "{msg}");
    let (line, _, _) = parse_err(&format!("long {}\n", b64(7, 33)));
    assert_eq!(line, 1);
}

#[test]
fn duplicate_keys() {
    // The same material twice, under one id or two.
    for second in ["default", "alias/other"] {
        let text = format!(
            "{}\n{}{}",
            key_line("default", 1),
            key_line("x", 2),
            key_line(second, 1)
        );
        let (line, id, msg) = parse_err(&text);
        assert_eq!((line, id.as_deref()), (4, Some(second)));
        assert!(
            msg.contains("already on line 1") && msg.contains("'default'"),
            "{msg}"
        );
    }
}

#[test]
fn malformed_lines() {
    let (line, _, msg) = parse_err(&format!("{}lonely-id\n", key_line("a", 1)));
    assert_eq!(line, 2);
    assert!(msg.contains("key is missing"), "{msg}");
    let (line, _, msg) = parse_err(&format!("a {} extra\n", b64(1, 32)));
    assert_eq!(line, 1);
    assert!(msg.contains("more fields"), "{msg}");
    let (line, _, msg) = parse_err(&format!("\n\n\u{7}bell {}\n", b64(1, 32)));
    assert_eq!(line, 3);
    assert!(msg.contains("invalid key id"), "{msg}");
    let (line, _, msg) = parse_err("# nothing here\n\n");
    assert_eq!(line, 0);
    assert!(msg.contains("no key"), "{msg}");
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn generate_file_creates_a_private_file_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    let ring = Keyring::generate_file(&path).unwrap();
    assert_eq!(ring.current_id(), DEFAULT_KEY_ID);
    assert_eq!(mode(&path), 0o600);
    let loaded = Keyring::load(&path).unwrap();
    assert_eq!(loaded.keys(), ring.keys());
    // Another generation does not overwrite it.
    let err = Keyring::generate_file(&path).unwrap_err();
    assert!(matches!(err, CryptError::KeyFileIo { .. }), "{err:?}");
    assert_eq!(Keyring::load(&path).unwrap().keys(), ring.keys());
    // No temporary files are left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("keys")]);
    // Two generated files have different keys.
    let other = Keyring::generate_file(&dir.path().join("keys2")).unwrap();
    assert_ne!(other.keys()[0].fingerprint, ring.keys()[0].fingerprint);
}

#[test]
fn rotate_file_prepends_a_new_current_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    let text = format!(
        "# header comment\n{}{}# trailing comment",
        key_line("default", 1),
        key_line("alias/team-a", 2)
    );
    std::fs::write(&path, &text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let before = Keyring::load(&path).unwrap();

    let after = Keyring::rotate_file(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
    let keys = after.keys();
    assert_eq!(keys.len(), 3);
    assert_eq!(
        (keys[0].id, keys[0].current, keys[0].line),
        ("default", true, 2)
    );
    assert_eq!(
        (keys[1].id, keys[1].current, keys[1].line),
        ("default", false, 3)
    );
    assert_eq!(keys[1].fingerprint, before.keys()[0].fingerprint);
    assert_eq!((keys[2].id, keys[2].current), ("alias/team-a", true));
    let new_text = std::fs::read_to_string(&path).unwrap();
    assert!(new_text.starts_with("# header comment\ndefault "));
    assert!(new_text.ends_with(&format!(
        "{}# trailing comment",
        key_line("alias/team-a", 2)
    )));
    assert!(!dir.path().join("keys.lock").exists());
    assert_eq!(Keyring::load(&path).unwrap().keys(), keys);

    // A named key: the new version goes right before its current one.
    let after = Keyring::rotate_key_file(&path, "alias/team-a").unwrap();
    let keys = after.keys();
    assert_eq!(keys.len(), 4);
    let team: Vec<_> = keys.iter().filter(|k| k.id == "alias/team-a").collect();
    assert_eq!(team.len(), 2);
    assert!(team[0].current && !team[1].current);
    assert_eq!(team[1].line, team[0].line + 1);
    assert_eq!(after.current_id(), "default");
    let err = Keyring::rotate_key_file(&path, "alias/none").unwrap_err();
    assert!(matches!(err, CryptError::UnknownKey { .. }), "{err:?}");

    // Adding a named key appends it; adding an existing one is refused.
    let after = Keyring::add_key_file(&path, "alias/team-b").unwrap();
    assert!(after.has("alias/team-b"));
    assert_eq!(after.keys().last().unwrap().id, "alias/team-b");
    let err = Keyring::add_key_file(&path, "alias/team-b").unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    assert!(Keyring::add_key_file(&path, "bad id").is_err());
    assert!(std::fs::read_to_string(&path)
        .unwrap()
        .contains("# trailing comment\nalias/team-b "));
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn rotation_is_refused_while_another_holds_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    Keyring::generate_file(&path).unwrap();
    std::fs::write(dir.path().join("keys.lock"), "").unwrap();
    let err = Keyring::rotate_file(&path).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("keys.lock") && msg.contains("remove it"),
        "{msg}"
    );
    assert_eq!(Keyring::load(&path).unwrap().keys().len(), 1);
    std::fs::remove_file(dir.path().join("keys.lock")).unwrap();
    Keyring::rotate_file(&path).unwrap();
}

#[test]
fn rotation_of_a_broken_file_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    let text = format!("{}oops\n", key_line("default", 1));
    std::fs::write(&path, &text).unwrap();
    let err = Keyring::rotate_file(&path).unwrap_err();
    assert!(
        matches!(err, CryptError::KeyFile { line: 2, .. }),
        "{err:?}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    let err = Keyring::load(&dir.path().join("missing")).unwrap_err();
    assert!(
        err.to_string().contains("missing") && err.to_string().contains("reading"),
        "{err}"
    );
}
