//! Envelopes: wrapping, serialization, unknown keys, rotation, sharing.

mod common;

use base64::Engine;
use common::*;
use wharf_crypt::{
    decrypt_all, encrypt_all, CryptError, EncryptionConfig, Envelope, Keyring, SEGMENT,
};

fn only(id: &str, fill: u8) -> Keyring {
    Keyring::parse(&key_line(id, fill), "test keys").unwrap()
}

#[test]
fn wrap_unwrap_and_serialize() {
    let ring = keyring();
    let env = Envelope::new(&ring, &["default"]).unwrap();
    assert_eq!(env.key_ids(), vec!["default"]);
    assert_eq!(env.segment_size(), SEGMENT);
    let key = env.data_key(&ring).unwrap();
    assert_eq!(key.blob_id(), env.blob_id());

    let bytes = env.to_bytes();
    assert_eq!(&bytes[..5], b"WHEV\x01");
    assert!(bytes.len() < 120, "compact: {} bytes", bytes.len());
    let parsed = Envelope::from_bytes(&bytes).unwrap();
    assert_eq!(parsed, env);
    assert_eq!(parsed.to_bytes(), bytes);

    // The data key from the parsed envelope opens what the first one encrypted.
    let data = Rng::new(30).bytes(S + 3);
    let ct = encrypt_all(&key, &data).unwrap();
    assert_eq!(
        decrypt_all(&parsed.data_key(&ring).unwrap(), &ct).unwrap(),
        data
    );

    // Each envelope has its own blob id and data key.
    let other = Envelope::new(&ring, &["default"]).unwrap();
    assert_ne!(other.blob_id(), env.blob_id());
    assert!(decrypt_all(&other.data_key(&ring).unwrap(), &ct).is_err());

    // Two wraps; duplicates in the list collapse.
    let two = Envelope::new(&ring, &["default", "alias/team-a", "default"]).unwrap();
    assert_eq!(two.key_ids(), vec!["default", "alias/team-a"]);
    assert_eq!(Envelope::from_bytes(&two.to_bytes()).unwrap(), two);
}

#[test]
fn new_envelope_needs_known_keys() {
    let ring = keyring();
    assert!(matches!(
        Envelope::new(&ring, &[]),
        Err(CryptError::Envelope(_))
    ));
    let err = Envelope::new(&ring, &["alias/nope"]).unwrap_err();
    assert!(matches!(err, CryptError::UnknownKey { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("alias/nope") && msg.contains("alias/team-a"),
        "{msg}"
    );
}

#[test]
fn unknown_master_key_names_the_keys_needed() {
    let ring = keyring();
    let env = Envelope::new(&ring, &["alias/team-a"]).unwrap();
    let fp = ring
        .keys()
        .into_iter()
        .find(|k| k.id == "alias/team-a")
        .unwrap()
        .fingerprint;
    let elsewhere = only("alias/team-b", 9);
    let err = env.data_key(&elsewhere).unwrap_err();
    match &err {
        CryptError::NoKeyForEnvelope {
            blob_id,
            needed,
            available,
        } => {
            assert_eq!(*blob_id, env.blob_id());
            assert_eq!(needed, &vec![format!("alias/team-a (version {fp})")]);
            assert_eq!(available.len(), 1);
            assert!(available[0].starts_with("alias/team-b (version "));
        }
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("alias/team-a") && msg.contains(&fp.to_string()),
        "{msg}"
    );
    // Same id, other material (another version): still not openable, and said so.
    let err = env.data_key(&only("alias/team-a", 3)).unwrap_err();
    assert!(
        matches!(err, CryptError::NoKeyForEnvelope { .. }),
        "{err:?}"
    );
}

#[test]
fn rotation_rewraps_then_old_version_can_go() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    let v1 = Keyring::generate_file(&path).unwrap();
    let mut env = Envelope::new(&v1, &[v1.current_id()]).unwrap();
    let data = Rng::new(31).bytes(2 * S + 1);
    let ct = encrypt_all(&env.data_key(&v1).unwrap(), &data).unwrap();
    let before = env.to_bytes();

    let v2 = Keyring::rotate_file(&path).unwrap();
    assert_eq!(v2.current_id(), v1.current_id(), "rotation keeps the id");
    // Old envelopes still open; they are not current any more.
    env.data_key(&v2).unwrap();
    assert!(!env.is_current(&v2));
    assert!(env.rotate(&v2).unwrap(), "rewrapped");
    assert!(env.is_current(&v2));
    assert!(!env.rotate(&v2).unwrap(), "nothing left to do");
    assert_eq!(
        env.blob_id(),
        Envelope::from_bytes(&before).unwrap().blob_id()
    );

    // The operator removes the old version's line.
    let text = std::fs::read_to_string(&path).unwrap();
    let old_line = v2.keys().into_iter().find(|k| !k.current).unwrap().line;
    let kept: Vec<&str> = text
        .lines()
        .enumerate()
        .filter(|(i, _)| i + 1 != old_line)
        .map(|(_, l)| l)
        .collect();
    std::fs::write(&path, kept.join("\n")).unwrap();
    let v3 = Keyring::load(&path).unwrap();
    assert_eq!(v3.keys().len(), 1);

    // The rewrapped envelope opens the unchanged ciphertext; the old one does not.
    let stored = Envelope::from_bytes(&env.to_bytes()).unwrap();
    assert_eq!(
        decrypt_all(&stored.data_key(&v3).unwrap(), &ct).unwrap(),
        data
    );
    let err = Envelope::from_bytes(&before)
        .unwrap()
        .data_key(&v3)
        .unwrap_err();
    let old_fp = v1.keys()[0].fingerprint.to_string();
    assert!(
        matches!(err, CryptError::NoKeyForEnvelope { .. }) && err.to_string().contains(&old_fp),
        "{err}"
    );
}

#[test]
fn rewrap_moves_to_other_keys() {
    let ring = keyring();
    let mut env = Envelope::new(&ring, &["default"]).unwrap();
    let key = env.data_key(&ring).unwrap();
    env.rewrap(&ring, &["alias/team-a"]).unwrap();
    assert_eq!(env.key_ids(), vec!["alias/team-a"]);
    let same = env.data_key(&only("alias/team-a", 2)).unwrap();
    let ct = encrypt_all(&key, b"hello").unwrap();
    assert_eq!(decrypt_all(&same, &ct).unwrap(), b"hello");
    assert!(env.data_key(&only("default", 1)).is_err());
    // Rewrap with a keyring that cannot open the envelope fails and changes nothing.
    let copy = env.clone();
    assert!(env.rewrap(&only("default", 1), &["default"]).is_err());
    assert_eq!(env, copy);
}

#[test]
fn shared_blob_gets_a_second_wrap_of_the_same_data_key() {
    let ring = keyring();
    let mut env = Envelope::new(&ring, &["default"]).unwrap();
    let key = env.data_key(&ring).unwrap();
    let data = Rng::new(32).bytes(3 * S);
    let ct = encrypt_all(&key, &data).unwrap();

    assert!(env.add_wrap(&ring, "alias/team-a").unwrap());
    assert!(
        !env.add_wrap(&ring, "alias/team-a").unwrap(),
        "already there"
    );
    assert_eq!(env.key_ids(), vec!["default", "alias/team-a"]);
    let env = Envelope::from_bytes(&env.to_bytes()).unwrap();

    // Each key alone opens the same bytes.
    let team_a = only("alias/team-a", 2);
    let default = only("default", 1);
    assert_eq!(
        decrypt_all(&env.data_key(&team_a).unwrap(), &ct).unwrap(),
        data
    );
    assert_eq!(
        decrypt_all(&env.data_key(&default).unwrap(), &ct).unwrap(),
        data
    );

    // Removing one key leaves the blob readable through the other only.
    let mut env = env;
    assert!(env.remove_wrap("alias/team-a").unwrap());
    assert!(!env.remove_wrap("alias/team-a").unwrap());
    assert!(env.data_key(&team_a).is_err());
    env.data_key(&default).unwrap();
    // The last wrap is not removed (that would be shredding by accident).
    let err = env.remove_wrap("default").unwrap_err();
    assert!(err.to_string().contains("only key"), "{err}");

    // add_wrap needs a key that opens the envelope, and a known target key.
    let mut env2 = Envelope::new(&ring, &["default"]).unwrap();
    assert!(matches!(
        env2.add_wrap(&team_a, "alias/team-a"),
        Err(CryptError::NoKeyForEnvelope { .. })
    ));
    assert!(matches!(
        env2.add_wrap(&ring, "alias/zzz"),
        Err(CryptError::UnknownKey { .. })
    ));
}

#[test]
fn add_wrap_replaces_an_older_version_of_the_same_key() {
    let old = Keyring::parse(&key_line("alias/team-a", 2), "old").unwrap();
    let mut env = Envelope::new(&old, &["alias/team-a"]).unwrap();
    let rotated = Keyring::parse(
        &(key_line("alias/team-a", 7) + &key_line("alias/team-a", 2)),
        "rotated",
    )
    .unwrap();
    assert!(env.add_wrap(&rotated, "alias/team-a").unwrap());
    assert_eq!(env.key_ids(), vec!["alias/team-a"]);
    assert!(env.is_current(&rotated));
    env.data_key(&only("alias/team-a", 7)).unwrap();
}

#[test]
fn tampered_envelopes_are_refused() {
    let ring = keyring();
    let env = Envelope::new(&ring, &["default"]).unwrap();
    let bytes = env.to_bytes();

    // Every truncation and every trailing byte.
    for n in 0..bytes.len() {
        assert!(
            matches!(
                Envelope::from_bytes(&bytes[..n]),
                Err(CryptError::Envelope(_))
            ),
            "truncated to {n}"
        );
    }
    let mut long = bytes.clone();
    long.push(0);
    assert!(Envelope::from_bytes(&long)
        .unwrap_err()
        .to_string()
        .contains("unexpected bytes"));

    let patch = |at: usize, v: u8| {
        let mut b = bytes.clone();
        b[at] = v;
        b
    };
    assert!(Envelope::from_bytes(&patch(0, b'X'))
        .unwrap_err()
        .to_string()
        .contains("magic"));
    assert!(Envelope::from_bytes(&patch(4, 2))
        .unwrap_err()
        .to_string()
        .contains("version 2"));
    assert!(Envelope::from_bytes(&patch(7, 0x80))
        .unwrap_err()
        .to_string()
        .contains("segment size"));
    assert!(Envelope::from_bytes(&patch(25, 0)).is_err(), "no wraps");

    // Blob id altered: parses, but the wrap no longer authenticates.
    let err = Envelope::from_bytes(&patch(9, bytes[9] ^ 1))
        .unwrap()
        .data_key(&ring)
        .unwrap_err();
    assert!(matches!(err, CryptError::UnwrapFailed { .. }), "{err:?}");
    assert!(err.to_string().contains("'default'"), "{err}");
    // Wrapped key altered.
    let last = bytes.len() - 1;
    let err = Envelope::from_bytes(&patch(last, bytes[last] ^ 1))
        .unwrap()
        .data_key(&ring)
        .unwrap_err();
    assert!(matches!(err, CryptError::UnwrapFailed { .. }), "{err:?}");

    // A wrap moved to another envelope does not open there.
    let other = Envelope::new(&ring, &["default"]).unwrap().to_bytes();
    let mut spliced = other.clone();
    spliced[26..].copy_from_slice(&bytes[26..]);
    assert!(Envelope::from_bytes(&spliced)
        .unwrap()
        .data_key(&ring)
        .is_err());
}

#[test]
fn secrets_do_not_show() {
    let ring = keyring();
    let env = Envelope::new(&ring, &["default", "alias/team-a"]).unwrap();
    let key = env.data_key(&ring).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode([1u8; 32]);
    for shown in [format!("{ring:?}"), format!("{env:?}"), format!("{key:?}")] {
        assert!(!shown.contains(&b64), "{shown}");
        assert!(!shown.contains("0101010101"), "{shown}");
    }
    assert!(format!("{key:?}").contains("redacted"));
}

#[test]
fn auxiliary_data_is_bound_to_blob_and_context() {
    let key = data_key();
    let sealed = key.seal_aux("sha256-pending", b"partial block").unwrap();
    assert_eq!(
        &key.open_aux("sha256-pending", &sealed).unwrap()[..],
        b"partial block"
    );
    assert!(matches!(
        key.open_aux("other", &sealed),
        Err(CryptError::AuxAuth { .. })
    ));
    assert!(data_key().open_aux("sha256-pending", &sealed).is_err());
    assert!(key.open_aux("sha256-pending", &sealed[..10]).is_err());
}

#[test]
fn ecr_encryption_configuration() {
    let ring = keyring();
    let aes = EncryptionConfig::from_ecr("AES256", None).unwrap();
    assert_eq!(aes, EncryptionConfig::default());
    assert_eq!(ring.key_for(&aes).unwrap(), "default");
    let kms = EncryptionConfig::from_ecr("KMS", Some("alias/team-a")).unwrap();
    assert_eq!(ring.key_for(&kms).unwrap(), "alias/team-a");
    let kms_default = EncryptionConfig::from_ecr("KMS", None).unwrap();
    assert_eq!(ring.key_for(&kms_default).unwrap(), "default");
    let missing = EncryptionConfig::from_ecr("KMS", Some("arn:aws:kms:us-east-1:1:key/x")).unwrap();
    assert!(matches!(
        ring.key_for(&missing),
        Err(CryptError::UnknownKey { .. })
    ));
    assert!(EncryptionConfig::from_ecr("AES256", Some("k")).is_err());
    assert!(EncryptionConfig::from_ecr("DES", None).is_err());
    assert!(EncryptionConfig::from_ecr("KMS", Some("bad id")).is_err());
}
