//! Range reads: every range around record boundaries, chunked input, the stream
//! adapter, and missing or excess ciphertext.

mod common;

use bytes::Bytes;
use common::*;
use futures::executor::block_on;
use futures::StreamExt;
use std::io;
use wharf_crypt::{
    ciphertext_range, decrypt_stream, encrypt_all, ByteStream, CryptError, Decryptor, RECORD_LEN,
};

/// Offsets at and around every segment boundary of a blob of `len` bytes.
fn points(len: usize) -> Vec<u64> {
    let mut p = vec![0, 1, len.saturating_sub(1), len];
    let mut b = S;
    while b <= len + 1 {
        p.extend([b - 1, b, b + 1]);
        b += S;
    }
    p.retain(|&x| x <= len);
    p.sort();
    p.dedup();
    p.into_iter().map(|x| x as u64).collect()
}

#[test]
fn every_range_around_boundaries() {
    let key = data_key();
    let mut rng = Rng::new(10);
    for len in [0, 1, S - 1, S, S + 1, 2 * S, 3 * S + 100] {
        let data = rng.bytes(len);
        let ct = encrypt_all(&key, &data).unwrap();
        let pts = points(len);
        for (i, &a) in pts.iter().enumerate() {
            for &b in &pts[i..] {
                let dec = Decryptor::new(&key, a..b, len as u64).unwrap();
                let range = dec.ciphertext_range();
                assert_eq!(range, ciphertext_range(a..b, len as u64).unwrap());
                // Whole records only.
                assert_eq!(range.start % RECORD_LEN as u64, 0);
                let end_in_record = range.end % RECORD_LEN as u64;
                assert!(range.end == ct.len() as u64 || end_in_record == 0);
                let slice = &ct[range.start as usize..range.end as usize];
                let shared = rng.next_u64() & 1 == 1;
                let got = feed(&mut rng, dec, slice, 1, 40_000, shared).unwrap();
                assert!(
                    got == data[a as usize..b as usize],
                    "range {a}..{b} of {len}"
                );
            }
        }
    }
}

#[test]
fn ranges_fetch_only_the_records_they_need() {
    let len = 10 * S as u64 + 3;
    assert_eq!(ciphertext_range(0..1, len).unwrap(), 0..RECORD_LEN as u64);
    let r = ciphertext_range(5 * S as u64 + 10..5 * S as u64 + 20, len).unwrap();
    assert_eq!(r, 5 * RECORD_LEN as u64..6 * RECORD_LEN as u64);
    let r = ciphertext_range(S as u64 - 1..2 * S as u64 + 1, len).unwrap();
    assert_eq!(r, 0..3 * RECORD_LEN as u64);
    assert!(matches!(
        ciphertext_range(0..len + 1, len),
        Err(CryptError::RangeOutsideBlob { .. })
    ));
    assert!(Decryptor::new(&data_key(), 3..len + 5, len).is_err());
}

fn chunked_stream(rng: &mut Rng, bytes: &[u8], lo: usize, hi: usize) -> ByteStream {
    let chunks: Vec<io::Result<Bytes>> = rng
        .split(bytes, lo, hi)
        .into_iter()
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(futures::stream::iter(chunks))
}

fn collect(stream: ByteStream) -> io::Result<Vec<u8>> {
    block_on(async {
        let mut stream = stream;
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    })
}

#[test]
fn stream_adapter_yields_the_range() {
    let key = data_key();
    let mut rng = Rng::new(11);
    let len = 4 * S + 999;
    let data = rng.bytes(len);
    let ct = encrypt_all(&key, &data).unwrap();
    for (a, b) in [
        (0, len),
        (0, 0),
        (S - 1, S + 1),
        (3 * S, len),
        (17, 3 * S + 5),
        (len, len),
    ] {
        let dec = Decryptor::new(&key, a as u64..b as u64, len as u64).unwrap();
        let r = dec.ciphertext_range();
        let input = chunked_stream(&mut rng, &ct[r.start as usize..r.end as usize], 1, 9000);
        let got = collect(decrypt_stream(dec, input)).unwrap();
        assert!(got == data[a..b], "{a}..{b}");
    }
    // Large chunks, each holding many records (opened in place).
    let dec = Decryptor::new(&key, 0..len as u64, len as u64).unwrap();
    let input = chunked_stream(&mut rng, &ct, 200_000, 300_000);
    assert!(collect(decrypt_stream(dec, input)).unwrap() == data);
}

#[test]
fn stream_adapter_reports_missing_and_excess_bytes() {
    let key = data_key();
    let mut rng = Rng::new(12);
    let len = 2 * S + 10;
    let data = rng.bytes(len);
    let ct = encrypt_all(&key, &data).unwrap();

    // The ciphertext stream ends early: the plaintext before the gap is returned,
    // then an UnexpectedEof error saying how much was missing.
    let dec = Decryptor::new(&key, 0..len as u64, len as u64).unwrap();
    let mut stream = decrypt_stream(
        dec,
        chunked_stream(&mut rng, &ct[..ct.len() - 5], 1000, 5000),
    );
    let mut got = Vec::new();
    let err = block_on(async {
        loop {
            match stream.next().await {
                Some(Ok(c)) => got.extend_from_slice(&c),
                Some(Err(e)) => break e,
                None => panic!("a short ciphertext must fail"),
            }
        }
    });
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    assert!(err.to_string().contains("ended after"), "{err}");
    assert_eq!(got, &data[..2 * S]);
    assert!(block_on(stream.next()).is_none(), "nothing after the error");

    // More bytes than the range: InvalidData.
    let dec = Decryptor::new(&key, 0..S as u64, len as u64).unwrap();
    let r = dec.ciphertext_range();
    let err = collect(decrypt_stream(
        dec,
        chunked_stream(
            &mut rng,
            &ct[r.start as usize..r.end as usize + 1],
            100,
            100_000,
        ),
    ))
    .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(err.to_string().contains("more than"), "{err}");

    // Errors of the underlying stream pass through.
    let dec = Decryptor::new(&key, 0..len as u64, len as u64).unwrap();
    let failing: ByteStream = Box::pin(futures::stream::iter(vec![
        Ok(Bytes::copy_from_slice(&ct[..100])),
        Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "backend went away",
        )),
    ]));
    let err = collect(decrypt_stream(dec, failing)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
}

#[test]
fn push_and_finish_check_lengths() {
    let key = data_key();
    let ct = encrypt_all(&key, &[5u8; 100]).unwrap();
    let mut dec = Decryptor::new(&key, 0..100, 100).unwrap();
    dec.push(Bytes::copy_from_slice(&ct[..50])).unwrap();
    assert!(
        dec.next_plaintext().unwrap().is_none(),
        "needs the whole record"
    );
    assert!(matches!(
        dec.finish(),
        Err(CryptError::ShortCiphertext {
            expected: 128,
            received: 50,
            ..
        })
    ));
    dec.push(Bytes::new()).unwrap();
    dec.push(Bytes::copy_from_slice(&ct[50..])).unwrap();
    assert_eq!(dec.next_plaintext().unwrap().unwrap(), vec![5u8; 100]);
    assert!(dec.next_plaintext().unwrap().is_none());
    assert!(dec.is_done());
    dec.finish().unwrap();
    assert!(matches!(
        dec.push(Bytes::from_static(b"x")),
        Err(CryptError::ExcessCiphertext { expected: 128, .. })
    ));
}
