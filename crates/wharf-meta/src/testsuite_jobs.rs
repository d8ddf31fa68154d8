//! The test suite every [`JobStore`] backend must pass (DESIGN.md §5, §6).
//!
//! Run [`run_all`] on a fresh, empty store. Failures panic with a message naming the
//! step. Besides the trait's documentation, the suite pins: claims go by `run_at`, then
//! id; a lease that ended is free to any claimant, and its former holder can no longer
//! complete, extend or retry the job.

use crate::jobs::JobStore;
use crate::Millis;
use std::collections::HashSet;

const T0: Millis = 1_700_000_000_000;

/// Runs every part of the suite on `store`, which should be empty.
pub async fn run_all<S: JobStore>(store: &S) {
    queue_order_and_dedupe(store).await;
    leases_of_jobs(store).await;
    retries(store).await;
    named_leases(store).await;
    concurrent_claims(store).await;
}

/// Jobs come out by `run_at`, then id; a pending (kind, key) is not queued twice.
pub async fn queue_order_and_dedupe<S: JobStore>(s: &S) {
    assert!(s
        .enqueue_job("q1", "b", "{\"n\":2}", T0 + 10)
        .await
        .unwrap());
    assert!(s.enqueue_job("q1", "a", "{\"n\":1}", T0).await.unwrap());
    assert!(s.enqueue_job("q1", "c", "{}", T0 + 10).await.unwrap());
    assert!(
        !s.enqueue_job("q1", "a", "{\"n\":9}", T0).await.unwrap(),
        "duplicate key queued twice"
    );
    assert!(
        s.enqueue_job("q2", "a", "{}", T0).await.unwrap(),
        "keys are per kind"
    );
    assert!(s
        .enqueue_job("q1", "future", "{}", T0 + 1_000_000)
        .await
        .unwrap());
    let listed = s.list_jobs("q1").await.unwrap();
    assert_eq!(listed.len(), 4, "list_jobs q1: {listed:?}");
    assert!(
        listed.windows(2).all(|w| w[0].id < w[1].id),
        "list_jobs by id"
    );

    let first = s
        .claim_job(&["q1"], "w1", T0 + 20, 1000)
        .await
        .unwrap()
        .expect("a due job");
    assert_eq!(
        (first.key.as_str(), first.payload.as_str(), first.attempts),
        ("a", "{\"n\":1}", 1)
    );
    assert_eq!(first.kind, "q1");
    assert_eq!(first.last_error, None);
    let second = s
        .claim_job(&["q1"], "w2", T0 + 20, 1000)
        .await
        .unwrap()
        .expect("b");
    let third = s
        .claim_job(&["q1"], "w3", T0 + 20, 1000)
        .await
        .unwrap()
        .expect("c");
    assert_eq!(
        (second.key.as_str(), third.key.as_str()),
        ("b", "c"),
        "run_at, then id"
    );
    assert_eq!(
        s.claim_job(&["q1"], "w4", T0 + 20, 1000).await.unwrap(),
        None,
        "the rest is not due"
    );
    // While claimed, the key is still queued: no duplicate.
    assert!(!s.enqueue_job("q1", "a", "{}", T0).await.unwrap());
    assert!(s.complete_job(first.id, "w1").await.unwrap());
    assert!(
        !s.complete_job(first.id, "w1").await.unwrap(),
        "completing twice"
    );
    // Once done, the same work may be queued again.
    assert!(s.enqueue_job("q1", "a", "{}", T0).await.unwrap());
    // Several kinds at once; q2's job is due.
    let other = s
        .claim_job(&["q2", "q3"], "w5", T0 + 20, 1000)
        .await
        .unwrap()
        .expect("q2 job");
    assert_eq!((other.kind.as_str(), other.key.as_str()), ("q2", "a"));
    assert_eq!(
        s.claim_job(&["nothing"], "w5", T0 + 20, 1000)
            .await
            .unwrap(),
        None
    );
    assert_eq!(s.claim_job(&[], "w5", T0 + 20, 1000).await.unwrap(), None);
    for (j, holder) in [(second, "w2"), (third, "w3"), (other, "w5")] {
        assert!(
            !s.complete_job(j.id, "w0").await.unwrap(),
            "wrong holder completed a job"
        );
        assert!(
            s.complete_job(j.id, holder).await.unwrap(),
            "{holder} completes {}",
            j.key
        );
    }
}

/// A lease holds off other claimants until it ends; then the job goes to the next
/// claimant and the former holder lost it.
pub async fn leases_of_jobs<S: JobStore>(s: &S) {
    assert!(s.enqueue_job("lease", "x", "{}", T0).await.unwrap());
    let j = s
        .claim_job(&["lease"], "w1", T0, 100)
        .await
        .unwrap()
        .expect("claim");
    assert_eq!(
        s.claim_job(&["lease"], "w2", T0 + 50, 100).await.unwrap(),
        None,
        "leased job claimed twice"
    );
    assert!(
        s.extend_job(j.id, "w1", T0 + 90, 100).await.unwrap(),
        "holder extends"
    );
    assert!(
        !s.extend_job(j.id, "w2", T0 + 90, 100).await.unwrap(),
        "other extends"
    );
    assert_eq!(
        s.claim_job(&["lease"], "w2", T0 + 150, 100).await.unwrap(),
        None,
        "extended lease lasts to T0+190"
    );
    let again = s
        .claim_job(&["lease"], "w2", T0 + 191, 100)
        .await
        .unwrap()
        .expect("lease ended: claimable");
    assert_eq!(
        (again.id, again.attempts),
        (j.id, 2),
        "the same job, second attempt"
    );
    assert!(
        !s.complete_job(j.id, "w1").await.unwrap(),
        "the former holder cannot complete it"
    );
    assert!(
        !s.extend_job(j.id, "w1", T0 + 192, 100).await.unwrap(),
        "nor extend it"
    );
    assert!(
        !s.extend_job(j.id, "w2", T0 + 400, 100).await.unwrap(),
        "an ended lease cannot be extended"
    );
    assert!(
        s.complete_job(j.id, "w2").await.unwrap(),
        "a holder whose lease ended but was not taken over still completes"
    );
    assert!(s.list_jobs("lease").await.unwrap().is_empty());
}

/// A failed attempt goes back in the queue at a later time with its error.
pub async fn retries<S: JobStore>(s: &S) {
    assert!(s.enqueue_job("retry", "r", "{\"p\":1}", T0).await.unwrap());
    let j = s
        .claim_job(&["retry"], "w1", T0, 1000)
        .await
        .unwrap()
        .expect("claim");
    assert!(
        !s.retry_job(j.id, "w2", T0 + 500, "nope").await.unwrap(),
        "non-holder retried"
    );
    assert!(s
        .retry_job(j.id, "w1", T0 + 500, "upstream refused: 503")
        .await
        .unwrap());
    assert!(
        !s.complete_job(j.id, "w1").await.unwrap(),
        "released by the retry"
    );
    assert_eq!(
        s.claim_job(&["retry"], "w1", T0 + 499, 1000).await.unwrap(),
        None,
        "not before run_at"
    );
    let k = s
        .claim_job(&["retry"], "w3", T0 + 500, 1000)
        .await
        .unwrap()
        .expect("claim after run_at");
    assert_eq!(k.id, j.id);
    assert_eq!(k.attempts, 2);
    assert_eq!(k.payload, "{\"p\":1}");
    assert_eq!(k.last_error.as_deref(), Some("upstream refused: 503"));
    let listed = s.list_jobs("retry").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].attempts, 2);
    assert!(s.complete_job(k.id, "w3").await.unwrap());
}

/// Named leases: one holder at a time, renewals, expiry, release.
pub async fn named_leases<S: JobStore>(s: &S) {
    assert!(s.acquire_lease("gc", "r1", T0, 1000).await.unwrap());
    assert!(
        !s.acquire_lease("gc", "r2", T0 + 10, 1000).await.unwrap(),
        "held by r1"
    );
    assert!(
        s.acquire_lease("gc", "r1", T0 + 900, 1000).await.unwrap(),
        "renewal"
    );
    assert!(
        !s.acquire_lease("gc", "r2", T0 + 1500, 1000).await.unwrap(),
        "renewed to T0+1900"
    );
    assert!(
        s.acquire_lease("gc", "r2", T0 + 1901, 1000).await.unwrap(),
        "ended: free"
    );
    assert!(
        !s.acquire_lease("gc", "r1", T0 + 1902, 1000).await.unwrap(),
        "r1 lost it"
    );
    s.release_lease("gc", "r1").await.unwrap();
    assert!(
        !s.acquire_lease("gc", "r3", T0 + 1903, 1000).await.unwrap(),
        "release by a non-holder is ignored"
    );
    s.release_lease("gc", "r2").await.unwrap();
    assert!(
        s.acquire_lease("gc", "r3", T0 + 1904, 1000).await.unwrap(),
        "released: free"
    );
    assert!(
        s.acquire_lease("other", "r1", T0, 1000).await.unwrap(),
        "leases are per name"
    );
    s.release_lease("never-taken", "r1").await.unwrap();
}

/// Many concurrent claimants: every job goes to exactly one.
pub async fn concurrent_claims<S: JobStore>(s: &S) {
    const JOBS: usize = 40;
    for i in 0..JOBS {
        assert!(s
            .enqueue_job("race", &format!("k{i:02}"), "{}", T0)
            .await
            .unwrap());
    }
    let workers = (0..8).map(|w| async move {
        let holder = format!("w{w}");
        let mut got = Vec::new();
        while let Some(j) = s
            .claim_job(&["race"], &holder, T0 + 1, 60_000)
            .await
            .unwrap()
        {
            got.push(j.key.clone());
            assert!(
                s.complete_job(j.id, &holder).await.unwrap(),
                "{holder} lost {}",
                j.key
            );
        }
        got
    });
    let all: Vec<String> = futures::future::join_all(workers)
        .await
        .into_iter()
        .flatten()
        .collect();
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(
        all.len(),
        JOBS,
        "claimed {} times for {JOBS} jobs",
        all.len()
    );
    assert_eq!(unique.len(), JOBS, "a job was claimed twice");
    assert!(s.list_jobs("race").await.unwrap().is_empty());
}
