//! Encryption and decryption round trips: many lengths, random chunking on both sides,
//! and staged uploads resumed at every kind of boundary.

mod common;

use common::*;
use wharf_crypt::{
    ciphertext_len, decrypt_all, encrypt_all, plaintext_len, record_count, staged_layout,
    Decryptor, Encryptor, RECORD_LEN,
};

const LENGTHS: &[usize] = &[
    0,
    1,
    2,
    S - 1,
    S,
    S + 1,
    2 * S - 1,
    2 * S,
    2 * S + 1,
    3 * S + 12_345,
    5 * 1024 * 1024 + 7,
];

#[test]
fn round_trips_with_random_chunking() {
    let key = data_key();
    let mut rng = Rng::new(1);
    for &len in LENGTHS {
        let data = rng.bytes(len);
        let mut splits: Vec<Vec<&[u8]>> = vec![
            vec![&data[..]],
            rng.split(&data, 1, 3 * S),
            rng.split(&data, S - 3, S + 3),
            rng.split(&data, 100_000, 1_000_000),
        ];
        if len <= 3 * S {
            splits.push(rng.split(&data, 1, 17));
        }
        for pieces in splits {
            let ct = encrypt_pieces(&key, &pieces);
            assert_eq!(
                ct.len() as u64,
                ciphertext_len(len as u64).unwrap(),
                "len {len}"
            );
            assert_eq!(plaintext_len(ct.len() as u64).unwrap(), len as u64);
            assert_eq!(
                record_count(ct.len() as u64).unwrap(),
                (len as u64).div_ceil(S as u64).max(1)
            );
            assert_eq!(decrypt_all(&key, &ct).unwrap(), data, "len {len}");
            for (lo, hi, shared) in [
                (1, 3000, true),
                (1, 3 * RECORD_LEN, false),
                (RECORD_LEN, RECORD_LEN, true),
            ] {
                let dec = Decryptor::new(&key, 0..len as u64, len as u64).unwrap();
                assert_eq!(dec.ciphertext_range(), 0..ct.len() as u64);
                let got = feed(&mut rng, dec, &ct, lo, hi, shared).unwrap();
                assert!(
                    got == data,
                    "len {len}, chunks {lo}..={hi}, shared {shared}"
                );
            }
        }
    }
}

#[test]
fn one_shot_helpers_agree_with_streaming() {
    let key = data_key();
    let mut rng = Rng::new(2);
    for &len in LENGTHS {
        let data = rng.bytes(len);
        let ct = encrypt_all(&key, &data).unwrap();
        assert_eq!(ct.len() as u64, ciphertext_len(len as u64).unwrap());
        assert_eq!(decrypt_all(&key, &ct).unwrap(), data);
    }
}

#[test]
fn encryption_is_randomized() {
    let key = data_key();
    let data = vec![7u8; 3 * S];
    let a = encrypt_all(&key, &data).unwrap();
    let b = encrypt_all(&key, &data).unwrap();
    assert_eq!(a.len(), b.len());
    for i in 0..3 {
        let r = i * RECORD_LEN;
        assert_ne!(a[r..r + 12], b[r..r + 12], "fresh nonce per record");
        assert_ne!(a[r + 12..r + 60], b[r + 12..r + 60]);
    }
    // The ciphertext does not contain the plaintext.
    assert!(!a.windows(64).any(|w| w == &data[..64]));
}

/// Plaintext lengths at which an upload is cut into appends.
fn boundaries(len: usize) -> Vec<usize> {
    let mut cuts = vec![
        0,
        1,
        S - 1,
        S,
        S + 1,
        2 * S - 1,
        2 * S,
        2 * S + 1,
        3 * S,
        len - 1,
        len,
    ];
    cuts.retain(|&c| c <= len);
    cuts.sort();
    cuts.dedup();
    cuts
}

/// What a blob store would do at the end of an append: the encryptor's records, then
/// its provisional record; the encryptor is dropped (another process continues).
fn stage(staged: &mut Vec<u8>, mut enc: Encryptor, data: &[u8]) {
    for rec in enc.update(data).unwrap() {
        staged.extend_from_slice(&rec);
    }
    staged.extend_from_slice(&enc.seal_pending().unwrap());
}

/// What a blob store does at the start of an append (or the commit): find and remove
/// the provisional record, resume from it.
fn unstage(key: &wharf_crypt::DataKey, staged: &mut Vec<u8>, expect_plain: usize) -> Encryptor {
    let layout = staged_layout(staged.len() as u64).unwrap();
    assert_eq!(layout.plaintext_len, expect_plain as u64);
    let prov = staged[layout.provisional.start as usize..].to_vec();
    let enc = Encryptor::resume(key, layout.segments_done, &prov).unwrap();
    assert_eq!(enc.plaintext_len(), expect_plain as u64);
    assert_eq!(enc.segments_done(), layout.segments_done);
    staged.truncate(layout.provisional.start as usize);
    enc
}

#[test]
fn staged_uploads_resume_at_every_boundary() {
    let key = data_key();
    let mut rng = Rng::new(3);
    for len in [3 * S + 100, 3 * S] {
        let data = rng.bytes(len);
        let cuts = boundaries(len);
        for (i, &a) in cuts.iter().enumerate() {
            for &b in &cuts[i..] {
                // Appends [0, a), [a, b), [b, len), each in a new "process".
                let mut staged = Vec::new();
                stage(&mut staged, Encryptor::new(&key).unwrap(), &data[..a]);
                // A staged upload reads back whole as what was staged.
                let dec = Decryptor::staged(&key, staged.len() as u64).unwrap();
                assert_eq!(
                    feed(&mut rng, dec, &staged, 1, 5000, false).unwrap(),
                    &data[..a]
                );

                let enc = unstage(&key, &mut staged, a);
                stage(&mut staged, enc, &data[a..b]);
                let enc = unstage(&key, &mut staged, b);
                stage(&mut staged, enc, &data[b..]);
                let dec = Decryptor::staged(&key, staged.len() as u64).unwrap();
                assert!(feed(&mut rng, dec, &staged, 1, 70_000, true).unwrap() == data);

                // Commit: resume once more and finish.
                let enc = unstage(&key, &mut staged, len);
                staged.extend_from_slice(&enc.finish().unwrap());
                assert_eq!(staged.len() as u64, ciphertext_len(len as u64).unwrap());
                assert!(
                    decrypt_all(&key, &staged).unwrap() == data,
                    "cuts {a} {b} of {len}"
                );
            }
        }
    }
}

#[test]
fn sealing_without_resuming_and_empty_uploads() {
    let key = data_key();
    // Seal, keep going in the same process, seal again: the later provisional record
    // supersedes the earlier one.
    let data = Rng::new(4).bytes(2 * S + 5);
    let mut enc = Encryptor::new(&key).unwrap();
    let mut staged = Vec::new();
    for rec in enc.update(&data[..S + 1]).unwrap() {
        staged.extend_from_slice(&rec);
    }
    let first = enc.seal_pending().unwrap();
    let second = enc.seal_pending().unwrap();
    assert_ne!(first, second, "fresh nonce per seal");
    for rec in enc.update(&data[S + 1..]).unwrap() {
        staged.extend_from_slice(&rec);
    }
    staged.extend_from_slice(&enc.finish().unwrap());
    assert_eq!(decrypt_all(&key, &staged).unwrap(), data);

    // An empty upload: sealed as an empty provisional record, committed as the empty
    // blob's single final record.
    let mut staged = Vec::new();
    stage(&mut staged, Encryptor::new(&key).unwrap(), &[]);
    assert_eq!(staged.len(), 28);
    let enc = unstage(&key, &mut staged, 0);
    staged.extend_from_slice(&enc.finish().unwrap());
    assert_eq!(staged.len(), 28);
    assert_eq!(decrypt_all(&key, &staged).unwrap(), b"");

    // Never sealed at all: staged length 0 resumes as a new upload.
    let layout = staged_layout(0).unwrap();
    let enc = Encryptor::resume(&key, layout.segments_done, &[]).unwrap();
    assert_eq!(enc.plaintext_len(), 0);
    let dec = Decryptor::staged(&key, 0).unwrap();
    assert!(dec.is_done());
}
