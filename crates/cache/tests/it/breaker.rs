//! The circuit breaker's contract: it opens on the failure ratio over a rolling window, stays
//! open for its time, lets a bounded number of probes through, then closes or opens again.

use std::time::Duration;

use cache::{
    Admission, BreakerPolicy, BreakerState, Cache, DedupMark, PolicyCache, Screen, TokenBucket,
    TokenOutcome,
};

use crate::support::{at, both_caches, concurrently, ms};

both_caches!(
    a_new_breaker_is_closed,
    the_breaker_opens_when_failures_reach_the_ratio,
    calls_below_min_calls_or_outside_the_window_never_open_it,
    an_open_breaker_stays_open_and_ignores_late_results,
    half_open_lets_the_probes_through_and_a_success_closes_it,
    a_failed_probe_opens_it_again,
    a_result_after_the_open_period_decides_without_a_probe,
    probes_that_never_report_are_replaced_after_a_round,
    concurrent_callers_get_exactly_the_probes,
    breakers_are_per_account,
    a_late_clock_and_a_new_window_are_counted_alike,
    admit_checks_the_pause_then_a_token_then_the_breaker,
    the_first_account_is_asked_only_for_a_message_that_passes,
    successes_reported_together_count_as_many,
);

/// Ten buckets of one second; open for 30 s; two probes.
const POLICY: BreakerPolicy = BreakerPolicy {
    window_ms: 10_000,
    min_calls: 4,
    failure_ratio: 0.5,
    open_ms: 30_000,
    half_open_probes: 2,
};

async fn record(cache: &Cache, account: &str, success: bool, t: i64) -> BreakerState {
    cache
        .record_result(account, success, at(t), POLICY)
        .await
        .unwrap()
}

async fn state(cache: &Cache, account: &str, t: i64) -> BreakerState {
    cache.breaker_state(account, at(t)).await.unwrap()
}

/// Opens `account`'s breaker at `t` with four failures; it is open until `t + 30 s`.
async fn trip(cache: &Cache, account: &str, t: i64) {
    for _ in 0..3 {
        assert_eq!(record(cache, account, false, t).await, BreakerState::Closed);
    }
    assert_eq!(
        record(cache, account, false, t).await,
        BreakerState::Open {
            until_ms: ms(t + 30_000)
        }
    );
}

async fn a_new_breaker_is_closed(cache: Cache) {
    assert_eq!(state(&cache, "acct", 0).await, BreakerState::Closed);
    assert_eq!(record(&cache, "acct", true, 0).await, BreakerState::Closed);
    assert_eq!(state(&cache, "acct", 0).await, BreakerState::Closed);
}

async fn the_breaker_opens_when_failures_reach_the_ratio(cache: Cache) {
    for t in 0..3 {
        assert_eq!(record(&cache, "acct", true, t).await, BreakerState::Closed);
    }
    for t in 3..5 {
        assert_eq!(record(&cache, "acct", false, t).await, BreakerState::Closed);
    }
    // Two failures in five calls is below half.
    assert_eq!(state(&cache, "acct", 5).await, BreakerState::Closed);
    // Three in six is half: the breaker opens.
    let open = BreakerState::Open {
        until_ms: ms(6 + 30_000),
    };
    assert_eq!(record(&cache, "acct", false, 6).await, open);
    assert_eq!(state(&cache, "acct", 7).await, open);
}

async fn calls_below_min_calls_or_outside_the_window_never_open_it(cache: Cache) {
    // Three failures are fewer than the four calls needed.
    for t in 0..3 {
        assert_eq!(record(&cache, "acct", false, t).await, BreakerState::Closed);
    }
    // Ten seconds later they have left the window: one more failure is one call of one.
    assert_eq!(
        record(&cache, "acct", false, 10_000).await,
        BreakerState::Closed
    );
    // Calls 9 s apart share the window: these four failures open it.
    for t in [11_000, 12_000] {
        assert_eq!(record(&cache, "acct", false, t).await, BreakerState::Closed);
    }
    assert!(matches!(
        record(&cache, "acct", false, 19_999).await,
        BreakerState::Open { .. }
    ));
}

async fn an_open_breaker_stays_open_and_ignores_late_results(cache: Cache) {
    trip(&cache, "acct", 0).await;
    let open = BreakerState::Open {
        until_ms: ms(30_000),
    };
    assert_eq!(state(&cache, "acct", 29_999).await, open);
    // Calls made before it opened report now: they change nothing.
    assert_eq!(record(&cache, "acct", true, 100).await, open);
    assert_eq!(record(&cache, "acct", false, 29_999).await, open);
    assert_eq!(state(&cache, "acct", 29_999).await, open);
}

async fn half_open_lets_the_probes_through_and_a_success_closes_it(cache: Cache) {
    trip(&cache, "acct", 0).await;
    assert_eq!(state(&cache, "acct", 30_000).await, BreakerState::HalfOpen);
    assert_eq!(state(&cache, "acct", 30_001).await, BreakerState::HalfOpen);
    // Both probes are out: others wait for them, at most one open period.
    let waiting = BreakerState::Open {
        until_ms: ms(60_000),
    };
    assert_eq!(state(&cache, "acct", 30_002).await, waiting);
    assert_eq!(state(&cache, "acct", 30_003).await, waiting);

    assert_eq!(
        record(&cache, "acct", true, 30_500).await,
        BreakerState::Closed
    );
    assert_eq!(state(&cache, "acct", 30_501).await, BreakerState::Closed);
    // Closing starts a fresh window: the failures that opened it are forgotten.
    for t in 30_502..30_505 {
        assert_eq!(record(&cache, "acct", false, t).await, BreakerState::Closed);
    }
}

async fn a_failed_probe_opens_it_again(cache: Cache) {
    trip(&cache, "acct", 0).await;
    assert_eq!(state(&cache, "acct", 30_000).await, BreakerState::HalfOpen);
    let reopened = BreakerState::Open {
        until_ms: ms(70_000),
    };
    assert_eq!(record(&cache, "acct", false, 40_000).await, reopened);
    assert_eq!(state(&cache, "acct", 40_001).await, reopened);
    // The other probe's success arrives late: the breaker is open again, so it is ignored.
    assert_eq!(record(&cache, "acct", true, 40_002).await, reopened);
    // The new open period ends with probes as before.
    assert_eq!(state(&cache, "acct", 70_000).await, BreakerState::HalfOpen);
    assert_eq!(
        record(&cache, "acct", true, 70_001).await,
        BreakerState::Closed
    );
}

async fn a_result_after_the_open_period_decides_without_a_probe(cache: Cache) {
    trip(&cache, "a", 0).await;
    trip(&cache, "b", 0).await;
    assert_eq!(
        record(&cache, "a", false, 30_000).await,
        BreakerState::Open {
            until_ms: ms(60_000)
        }
    );
    assert_eq!(
        record(&cache, "b", true, 30_000).await,
        BreakerState::Closed
    );
    assert_eq!(state(&cache, "b", 30_001).await, BreakerState::Closed);
}

async fn probes_that_never_report_are_replaced_after_a_round(cache: Cache) {
    trip(&cache, "acct", 0).await;
    assert_eq!(state(&cache, "acct", 30_000).await, BreakerState::HalfOpen);
    assert_eq!(state(&cache, "acct", 31_000).await, BreakerState::HalfOpen);
    assert_eq!(
        state(&cache, "acct", 59_999).await,
        BreakerState::Open {
            until_ms: ms(60_000)
        }
    );
    // Their workers died mid-call: a new round of probes starts.
    assert_eq!(state(&cache, "acct", 60_000).await, BreakerState::HalfOpen);
    assert_eq!(state(&cache, "acct", 60_001).await, BreakerState::HalfOpen);
    assert_eq!(
        state(&cache, "acct", 60_002).await,
        BreakerState::Open {
            until_ms: ms(90_000)
        }
    );
}

async fn concurrent_callers_get_exactly_the_probes(cache: Cache) {
    trip(&cache, "acct", 0).await;
    let answers = concurrently(40, |_| {
        let cache = cache.clone();
        async move { cache.breaker_state("acct", at(30_000)).await.unwrap() }
    })
    .await;
    let probes = answers
        .iter()
        .filter(|s| **s == BreakerState::HalfOpen)
        .count();
    assert_eq!(probes, 2, "{answers:?}");
    assert!(answers.iter().all(|s| *s == BreakerState::HalfOpen
        || *s
            == BreakerState::Open {
                until_ms: ms(60_000)
            }));
}

async fn breakers_are_per_account(cache: Cache) {
    trip(&cache, "a", 0).await;
    assert_eq!(state(&cache, "b", 1).await, BreakerState::Closed);
    assert_eq!(record(&cache, "b", false, 1).await, BreakerState::Closed);
    assert!(matches!(
        state(&cache, "a", 1).await,
        BreakerState::Open { .. }
    ));
}

async fn a_late_clock_and_a_new_window_are_counted_alike(cache: Cache) {
    // Two failures at 5 s, then two from a worker whose clock is a second behind: they count
    // into the window as it stands, and four failures of four open the breaker.
    for t in [5_000, 5_000] {
        assert_eq!(record(&cache, "acct", false, t).await, BreakerState::Closed);
    }
    assert_eq!(
        record(&cache, "acct", false, 4_000).await,
        BreakerState::Closed
    );
    assert!(matches!(
        record(&cache, "acct", false, 4_500).await,
        BreakerState::Open { .. }
    ));

    // A policy with another window starts counting over: three failures under it are not
    // enough, though the old window held two more.
    let wide = BreakerPolicy {
        window_ms: 20_000,
        ..POLICY
    };
    for _ in 0..2 {
        assert_eq!(
            cache
                .record_result("other", false, at(0), POLICY)
                .await
                .unwrap(),
            BreakerState::Closed
        );
    }
    for t in [100, 200, 300] {
        assert_eq!(
            cache
                .record_result("other", false, at(t), wide)
                .await
                .unwrap(),
            BreakerState::Closed
        );
    }
    assert!(matches!(
        cache
            .record_result("other", false, at(400), wide)
            .await
            .unwrap(),
        BreakerState::Open { .. }
    ));
}

async fn admit_checks_the_pause_then_a_token_then_the_breaker(cache: Cache) {
    let bucket = TokenBucket {
        name: "account:acct",
        rate_per_sec: 1.0,
        burst: 1,
    };
    let admit = |t: i64, bucket: Option<TokenBucket<'static>>| {
        let cache = cache.clone();
        async move { cache.admit("acct", bucket, at(t)).await.unwrap() }
    };
    // Nothing stands in the way: go, and without a rate limit no token is taken.
    assert_eq!(admit(0, None).await, Admission::Go { probe: false });

    // Paused: the answer, and the bucket keeps its one token.
    cache.pause("acct", ms(5_000), at(0)).await.unwrap();
    assert_eq!(
        admit(0, Some(bucket)).await,
        Admission::Paused {
            until_ms: ms(5_000)
        }
    );
    // After the pause: the token is taken, then the bucket is empty for a second.
    assert_eq!(
        admit(5_000, Some(bucket)).await,
        Admission::Go { probe: false }
    );
    assert_eq!(
        admit(5_000, Some(bucket)).await,
        Admission::NoToken {
            retry_after_ms: 1_000
        }
    );

    // An open breaker: the answer; a token taken on the way is spent, as by the steps alone.
    trip(&cache, "acct", 10_000).await;
    assert_eq!(
        admit(11_000, Some(bucket)).await,
        Admission::Open {
            until_ms: ms(40_000)
        }
    );
    // Out of tokens: the breaker is not asked, so no probe is handed out and wasted.
    assert_eq!(
        admit(40_000, Some(bucket)).await,
        Admission::Go { probe: true }
    );
    assert_eq!(
        admit(40_000, Some(bucket)).await,
        Admission::NoToken {
            retry_after_ms: 1_000
        }
    );
    assert_eq!(admit(40_000, None).await, Admission::Go { probe: true });
    assert_eq!(
        admit(40_000, None).await,
        Admission::Open {
            until_ms: ms(70_000)
        }
    );
    assert_eq!(
        cache
            .take_token("account:acct", 1.0, 1, at(41_000))
            .await
            .unwrap(),
        TokenOutcome::Taken
    );
}

async fn the_first_account_is_asked_only_for_a_message_that_passes(cache: Cache) {
    let bucket = TokenBucket {
        name: "account:first",
        rate_per_sec: 1.0,
        burst: 1,
    };
    let ask = |key: &'static str, owner: &'static str, account: Option<&'static str>, t: i64| {
        let cache = cache.clone();
        async move {
            cache
                .screen_and_admit(
                    Some(DedupMark {
                        key,
                        owner,
                        window: Duration::from_secs(60),
                    }),
                    None,
                    account.map(|account| (account, Some(bucket))),
                    at(t),
                )
                .await
                .unwrap()
        }
    };
    assert_eq!(
        ask("hello", "m1", Some("first"), 0).await,
        (Screen::Pass, Some(Admission::Go { probe: false }))
    );
    // A duplicate: the account is not asked, so it spends no token.
    assert_eq!(
        ask("hello", "m2", Some("first"), 1_000).await,
        (
            Screen::Duplicate {
                first_seen_ms: ms(0)
            },
            None
        )
    );
    assert_eq!(
        cache
            .take_token("account:first", 1.0, 1, at(1_000))
            .await
            .unwrap(),
        TokenOutcome::Taken
    );
    // A message that passes hears the account's answer, whatever it is.
    assert_eq!(
        ask("other", "m3", Some("first"), 1_000).await,
        (
            Screen::Pass,
            Some(Admission::NoToken {
                retry_after_ms: 1_000
            })
        )
    );
    cache.pause("first", ms(9_000), at(2_000)).await.unwrap();
    assert_eq!(
        ask("third", "m4", Some("first"), 2_000).await,
        (
            Screen::Pass,
            Some(Admission::Paused {
                until_ms: ms(9_000)
            })
        )
    );
    // No account to ask: the screen alone, which still sets the mark.
    assert_eq!(ask("fourth", "m5", None, 2_000).await, (Screen::Pass, None));
    assert_eq!(
        ask("fourth", "m6", None, 2_001).await,
        (
            Screen::Duplicate {
                first_seen_ms: ms(2_000)
            },
            None
        )
    );
    // The same steps as screen then admit: an open breaker is the answer.
    trip(&cache, "second", 10_000).await;
    assert_eq!(
        ask("fifth", "m7", Some("second"), 11_000).await,
        (
            Screen::Pass,
            Some(Admission::Open {
                until_ms: ms(40_000)
            })
        )
    );
}

/// `record_successes(n)` is `n` successes: the breaker below counts them in its ratio, and
/// one that is half open closes.
async fn successes_reported_together_count_as_many(cache: Cache) {
    let together = |account: &'static str, n: u32, t: i64| {
        let cache = cache.clone();
        async move {
            cache
                .record_successes(account, n, at(t), POLICY)
                .await
                .unwrap()
        }
    };
    assert_eq!(together("acct", 0, 0).await, BreakerState::Closed);
    assert_eq!(together("acct", 3, 0).await, BreakerState::Closed);
    // Three failures in six calls: half, so it opens; without the three successes, three calls
    // would be below `min_calls`, and four failures alone would open it at the fourth.
    assert_eq!(record(&cache, "acct", false, 1).await, BreakerState::Closed);
    assert_eq!(record(&cache, "acct", false, 2).await, BreakerState::Closed);
    let open = BreakerState::Open {
        until_ms: ms(3 + 30_000),
    };
    assert_eq!(record(&cache, "acct", false, 3).await, open);
    // Past the open period, successes reported together close it like one.
    assert_eq!(state(&cache, "acct", 30_003).await, BreakerState::HalfOpen);
    assert_eq!(together("acct", 2, 30_004).await, BreakerState::Closed);
    assert_eq!(state(&cache, "acct", 30_005).await, BreakerState::Closed);

    // Four successes then four failures: four of eight is half, so the eighth call opens it.
    assert_eq!(together("other", 4, 0).await, BreakerState::Closed);
    for t in 1..4 {
        assert_eq!(
            record(&cache, "other", false, t).await,
            BreakerState::Closed
        );
    }
    assert_eq!(
        record(&cache, "other", false, 4).await,
        BreakerState::Open {
            until_ms: ms(4 + 30_000)
        }
    );
}
