//! Throughput of encryption and decryption over 256 MiB (ignored by default; run with
//! `cargo test --release -p wharf-crypt --test throughput -- --ignored --nocapture`).

mod common;

use bytes::Bytes;
use common::*;
use std::time::Instant;
use wharf_crypt::{Decryptor, Encryptor};

const TOTAL: usize = 256 * 1024 * 1024;

fn rate(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / 1e6
}

#[test]
#[ignore = "benchmark: run in release with --ignored --nocapture"]
fn throughput() {
    let key = data_key();
    let data = Rng::new(40).bytes(TOTAL);

    for round in 0..3 {
        // Baseline: the AEAD alone, sealing 64 KiB buffers in place.
        let raw = ring::aead::LessSafeKey::new(
            ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &[9u8; 32]).unwrap(),
        );
        let mut buf = vec![0u8; S];
        let start = Instant::now();
        for (i, chunk) in data.chunks(S).enumerate() {
            buf.copy_from_slice(chunk);
            let mut nonce = [0u8; 12];
            nonce[..8].copy_from_slice(&(i as u64).to_be_bytes());
            let _tag = raw
                .seal_in_place_separate_tag(
                    ring::aead::Nonce::assume_unique_for_key(nonce),
                    ring::aead::Aad::empty(),
                    &mut buf,
                )
                .unwrap();
        }
        let raw_secs = start.elapsed().as_secs_f64();

        // Encrypt: plaintext arrives in 1 MiB chunks (a request body); each record is
        // written out and dropped, as a store does.
        let start = Instant::now();
        let mut enc = Encryptor::new(&key).unwrap();
        let mut written = 0;
        for chunk in data.chunks(1 << 20) {
            for record in enc.update(chunk).unwrap() {
                written += record.len();
            }
        }
        written += enc.finish().unwrap().len();
        let enc_secs = start.elapsed().as_secs_f64();
        assert_eq!(
            written as u64,
            wharf_crypt::ciphertext_len(TOTAL as u64).unwrap()
        );

        let mut enc = Encryptor::new(&key).unwrap();
        let mut records: Vec<Bytes> = Vec::with_capacity(TOTAL / S + 1);
        for chunk in data.chunks(1 << 20) {
            records.extend(enc.update(chunk).unwrap());
        }
        records.push(Bytes::from(enc.finish().unwrap()));

        // The ciphertext as a store would read it: 1 MiB chunks of its own.
        let mut ct =
            Vec::with_capacity(wharf_crypt::ciphertext_len(TOTAL as u64).unwrap() as usize);
        for r in &records {
            ct.extend_from_slice(r);
        }
        drop(records);
        let owned: Vec<Bytes> = ct.chunks(1 << 20).map(Bytes::copy_from_slice).collect();
        let shared = Bytes::from(ct);

        // Decrypt from chunks the decryptor owns (opened in place).
        let start = Instant::now();
        let mut dec = Decryptor::new(&key, 0..TOTAL as u64, TOTAL as u64).unwrap();
        let mut n = 0;
        for chunk in owned {
            dec.push(chunk).unwrap();
            while let Some(p) = dec.next_plaintext().unwrap() {
                n += p.len();
            }
        }
        dec.finish().unwrap();
        let dec_secs = start.elapsed().as_secs_f64();
        assert_eq!(n, TOTAL);

        // Decrypt from 16 KiB slices of a shared buffer (gathered into one record buffer).
        let start = Instant::now();
        let mut dec = Decryptor::new(&key, 0..TOTAL as u64, TOTAL as u64).unwrap();
        let mut n = 0;
        let mut at = 0;
        while at < shared.len() {
            let end = (at + 16 * 1024).min(shared.len());
            dec.push(shared.slice(at..end)).unwrap();
            at = end;
            while let Some(p) = dec.next_plaintext().unwrap() {
                n += p.len();
            }
        }
        dec.finish().unwrap();
        let gather_secs = start.elapsed().as_secs_f64();
        assert_eq!(n, TOTAL);

        println!(
            "round {round}: AES-256-GCM alone {:.0} MB/s; encrypt {:.0} MB/s, decrypt (owned \
             1 MiB chunks) {:.0} MB/s, decrypt (shared 16 KiB chunks) {:.0} MB/s",
            rate(TOTAL, raw_secs),
            rate(TOTAL, enc_secs),
            rate(TOTAL, dec_secs),
            rate(TOTAL, gather_secs)
        );
    }
}
