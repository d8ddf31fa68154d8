//! Altered ciphertext is refused with an error that says what is wrong.

mod common;

use common::*;
use wharf_crypt::{
    decrypt_all, encrypt_all, plaintext_len, staged_layout, CryptError, Decryptor, Encryptor,
    RecordKind, RECORD_LEN,
};

const R: usize = RECORD_LEN;

/// A blob of four records: three full, one of 100 bytes.
fn blob() -> (wharf_crypt::DataKey, Vec<u8>, Vec<u8>) {
    let key = data_key();
    let data = Rng::new(20).bytes(3 * S + 100);
    let ct = encrypt_all(&key, &data).unwrap();
    assert_eq!(ct.len(), 3 * R + 128);
    (key, data, ct)
}

fn full_read(key: &wharf_crypt::DataKey, ct: &[u8]) -> Result<Vec<u8>, CryptError> {
    let len = plaintext_len(ct.len() as u64)?;
    let dec = Decryptor::new(key, 0..len, len)?;
    feed(&mut Rng::new(21), dec, ct, 1, 50_000, false)
}

#[test]
fn flipped_bits_anywhere_in_a_record() {
    let (key, _, ct) = blob();
    // In the nonce, the ciphertext and the tag of records 0, 1 and the last.
    for (index, offset) in [
        (0, 0),
        (0, 11),
        (0, 12),
        (1, 5000),
        (1, R - 1),
        (3, 12),
        (3, 127),
    ] {
        let mut bad = ct.clone();
        bad[index * R + offset] ^= 0x01;
        for result in [decrypt_all(&key, &bad), full_read(&key, &bad)] {
            match result {
                Err(CryptError::RecordAuth { index: i, blob_id }) => {
                    assert_eq!(i, index as u64);
                    assert_eq!(blob_id, key.blob_id());
                }
                other => panic!("bit at record {index} offset {offset}: {other:?}"),
            }
        }
        // A range read that does not touch the record is unaffected.
        if index != 0 {
            let dec = Decryptor::new(&key, 0..10, 3 * S as u64 + 100).unwrap();
            feed(&mut Rng::new(1), dec, &bad[..R], 1, R, false).unwrap();
        }
    }
    let msg = decrypt_all(&key, &{
        let mut b = ct.clone();
        b[R + 20] ^= 4;
        b
    })
    .unwrap_err()
    .to_string();
    assert!(
        msg.contains("record 1") && msg.contains("authentication failed"),
        "{msg}"
    );
}

#[test]
fn swapped_records() {
    let (key, _, ct) = blob();
    let mut bad = ct.clone();
    let (a, b) = bad.split_at_mut(R);
    a.swap_with_slice(&mut b[..R]);
    assert!(matches!(
        decrypt_all(&key, &bad),
        Err(CryptError::RecordAuth { index: 0, .. })
    ));
    // Reading only record 1's range from the swapped blob fails too (record 0's
    // bytes now sit there).
    let dec = Decryptor::new(&key, S as u64..S as u64 + 1, 3 * S as u64 + 100).unwrap();
    let err = feed(&mut Rng::new(1), dec, &bad[R..2 * R], 1, R, true).unwrap_err();
    assert!(
        matches!(err, CryptError::RecordAuth { index: 1, .. }),
        "{err:?}"
    );
}

#[test]
fn truncated_last_record() {
    let (key, _, ct) = blob();
    // Cut inside the last record: it no longer authenticates at its new length.
    for cut in [1, 5, 72] {
        let bad = &ct[..ct.len() - cut];
        assert!(
            matches!(
                decrypt_all(&key, bad),
                Err(CryptError::RecordAuth { index: 3, .. })
            ),
            "cut {cut}"
        );
    }
    // Cut so far that the remainder is not even a record.
    let bad = &ct[..3 * R + 10];
    let err = decrypt_all(&key, bad).unwrap_err();
    assert!(
        matches!(err, CryptError::CiphertextLength { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("impossible"), "{err}");
}

#[test]
fn dropped_last_record() {
    let (key, _, ct) = blob();
    for keep in [3, 2, 1] {
        let bad = &ct[..keep * R];
        match decrypt_all(&key, bad) {
            Err(CryptError::Truncated { index, .. }) => assert_eq!(index, keep as u64 - 1),
            other => panic!("keeping {keep} records: {other:?}"),
        }
        let err = full_read(&key, bad).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }
}

#[test]
fn extended_blob() {
    let (key, _, ct) = blob();
    // The final record repeated after itself.
    let mut bad = ct.clone();
    bad.extend_from_slice(&ct[3 * R..]);
    assert!(decrypt_all(&key, &bad).is_err());
    // A blob of exactly two full segments, then one more record encrypted for index 2
    // by a continuation of the same upload: record 1 is final but no longer last.
    let data = Rng::new(22).bytes(3 * S);
    let mut enc = Encryptor::new(&key).unwrap();
    let mut first = Vec::new();
    for r in enc.update(&data[..2 * S]).unwrap() {
        first.extend_from_slice(&r);
    }
    let prov = enc.seal_pending().unwrap();
    first.extend_from_slice(&enc.finish().unwrap());
    assert_eq!(decrypt_all(&key, &first).unwrap(), &data[..2 * S]);
    let mut cont = Encryptor::resume(&key, 1, &prov).unwrap();
    let mut tail = Vec::new();
    for r in cont.update(&data[2 * S..]).unwrap() {
        tail.extend_from_slice(&r);
    }
    tail.extend_from_slice(&cont.finish().unwrap());
    assert_eq!(
        tail.len(),
        2 * R,
        "an intermediate record 1 and a final record 2"
    );
    let mut spliced = first.clone();
    spliced.extend_from_slice(&tail[R..]);
    assert!(matches!(
        decrypt_all(&key, &spliced),
        Err(CryptError::RecordAuth { index: 1, .. })
    ));
}

#[test]
fn record_from_another_blob() {
    let (key, data, ct) = blob();
    // The same plaintext encrypted as another blob (own blob id and data key).
    let other_key = data_key();
    assert_ne!(other_key.blob_id(), key.blob_id());
    let other = encrypt_all(&other_key, &data).unwrap();
    let mut bad = ct.clone();
    bad[R..2 * R].copy_from_slice(&other[R..2 * R]);
    assert!(matches!(
        decrypt_all(&key, &bad),
        Err(CryptError::RecordAuth { index: 1, .. })
    ));
    // The whole other blob under this blob's key.
    assert!(matches!(
        decrypt_all(&key, &other),
        Err(CryptError::RecordAuth { index: 0, .. })
    ));
}

#[test]
fn provisional_record_presented_as_final() {
    let key = data_key();
    let data = Rng::new(23).bytes(S + 50);
    let mut enc = Encryptor::new(&key).unwrap();
    let mut staged = Vec::new();
    for r in enc.update(&data).unwrap() {
        staged.extend_from_slice(&r);
    }
    staged.extend_from_slice(&enc.seal_pending().unwrap());
    // A staged upload read as a committed blob (its length is valid for both).
    let err = decrypt_all(&key, &staged).unwrap_err();
    match &err {
        CryptError::WrongRecordKind {
            index: 1,
            expected: RecordKind::Final,
            found: RecordKind::Provisional,
            ..
        } => {}
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string()
            .contains("expected a final record, found a provisional record"),
        "{err}"
    );
    // The staged reader accepts it; the committed blob is refused by the staged reader.
    let dec = Decryptor::staged(&key, staged.len() as u64).unwrap();
    assert_eq!(
        feed(&mut Rng::new(1), dec, &staged, 1, R, false).unwrap(),
        data
    );
    let committed = encrypt_all(&key, &data).unwrap();
    let dec = Decryptor::staged(&key, committed.len() as u64).unwrap();
    let err = feed(&mut Rng::new(1), dec, &committed, 1, R, false).unwrap_err();
    assert!(
        matches!(
            err,
            CryptError::WrongRecordKind {
                expected: RecordKind::Provisional,
                found: RecordKind::Final,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn resume_refuses_bad_provisional_records() {
    let key = data_key();
    let data = Rng::new(24).bytes(2 * S + 10);
    let mut enc = Encryptor::new(&key).unwrap();
    let mut staged = Vec::new();
    for r in enc.update(&data).unwrap() {
        staged.extend_from_slice(&r);
    }
    let prov = enc.seal_pending().unwrap();
    staged.extend_from_slice(&prov);
    let layout = staged_layout(staged.len() as u64).unwrap();
    assert_eq!(layout.segments_done, 2);
    Encryptor::resume(&key, 2, &prov).unwrap();

    // Wrong index.
    assert!(matches!(
        Encryptor::resume(&key, 1, &prov),
        Err(CryptError::RecordAuth { index: 1, .. })
    ));
    // Altered.
    let mut bad = prov.clone();
    bad[15] ^= 0x80;
    assert!(matches!(
        Encryptor::resume(&key, 2, &bad),
        Err(CryptError::RecordAuth { index: 2, .. })
    ));
    // Another blob's provisional record.
    let other = data_key();
    let mut other_enc = Encryptor::new(&other).unwrap();
    other_enc.update(&data).unwrap();
    let other_prov = other_enc.seal_pending().unwrap();
    assert!(Encryptor::resume(&key, 2, &other_prov).is_err());
    // A final record where a provisional one belongs.
    let fin = enc.finish().unwrap();
    assert!(matches!(
        Encryptor::resume(&key, 2, &fin),
        Err(CryptError::WrongRecordKind {
            expected: RecordKind::Provisional,
            found: RecordKind::Final,
            ..
        })
    ));
    // Missing, or of an impossible size.
    let err = Encryptor::resume(&key, 2, &[]).err().unwrap();
    assert!(err.to_string().contains("no provisional record"), "{err}");
    assert!(matches!(
        Encryptor::resume(&key, 2, &[0u8; 20]),
        Err(CryptError::Provisional { .. })
    ));
    assert!(matches!(
        Encryptor::resume(&key, 2, &vec![0u8; R + 1]),
        Err(CryptError::Provisional { .. })
    ));
}

#[test]
fn wrong_data_key() {
    let (_, _, ct) = blob();
    let err = decrypt_all(&data_key(), &ct).unwrap_err();
    assert!(matches!(err, CryptError::RecordAuth { index: 0, .. }));
}
