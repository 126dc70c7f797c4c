//! The contract both implementations keep: dedup windows, frequency caps, token buckets and
//! pauses, decided atomically under concurrency, with time moved by the caller.

use std::time::Duration;

use cache::{
    BreakerPolicy, Cache, CacheError, DedupMark, DedupOutcome, FrequencyOutcome, FrequencyUse,
    PolicyCache, Screen, TokenOutcome,
};

use crate::support::{at, both_caches, concurrently, fresh_owner, ms};

both_caches!(
    dedup_marks_the_first_and_reports_duplicates_until_the_window_ends,
    a_released_dedup_key_can_be_marked_again,
    the_owner_of_a_dedup_mark_is_first_again,
    concurrent_dedup_on_one_key_has_one_first,
    frequency_allows_up_to_the_limit_then_refuses_until_the_period_ends,
    concurrent_frequency_allows_exactly_the_limit,
    an_owner_is_counted_once_per_period,
    a_token_bucket_bursts_then_waits_and_refills_over_time,
    retry_after_is_rounded_up_for_fractional_rates,
    concurrent_takes_at_one_instant_get_exactly_the_burst,
    a_pause_holds_until_it_ends_and_is_never_shortened,
    invalid_arguments_are_refused,
    ping_answers,
    screen_checks_the_dedup_mark_then_the_frequency_cap,
);

const WINDOW: Duration = Duration::from_secs(300);

async fn dedup_marks_the_first_and_reports_duplicates_until_the_window_ends(cache: Cache) {
    let dedup = |key: &'static str, t: i64| {
        let cache = cache.clone();
        async move {
            cache
                .dedup(key, &fresh_owner(), WINDOW, at(t))
                .await
                .unwrap()
        }
    };
    let duplicate_of = |t: i64| DedupOutcome::Duplicate {
        first_seen_ms: ms(t),
    };

    assert_eq!(dedup("r1:t1:hash", 0).await, DedupOutcome::First);
    assert_eq!(dedup("r1:t1:hash", 1_000).await, duplicate_of(0));
    assert_eq!(
        dedup("r2:t1:hash", 1_000).await,
        DedupOutcome::First,
        "another key"
    );
    // A duplicate does not extend the window: it still ends 300 s after the first.
    assert_eq!(dedup("r1:t1:hash", 299_999).await, duplicate_of(0));
    assert_eq!(dedup("r1:t1:hash", 300_000).await, DedupOutcome::First);
    assert_eq!(dedup("r1:t1:hash", 300_001).await, duplicate_of(300_000));
}

/// A message redelivered after its worker died asks again with its own id: it is not its own duplicate.
async fn the_owner_of_a_dedup_mark_is_first_again(cache: Cache) {
    let first = cache.dedup("k", "message-1", WINDOW, at(0)).await.unwrap();
    assert_eq!(first, DedupOutcome::First);
    assert_eq!(
        cache.dedup("k", "message-1", WINDOW, at(10)).await.unwrap(),
        DedupOutcome::First
    );
    assert_eq!(
        cache.dedup("k", "message-2", WINDOW, at(20)).await.unwrap(),
        DedupOutcome::Duplicate {
            first_seen_ms: ms(0)
        }
    );
    // The owner asking again does not extend the window.
    assert_eq!(
        cache
            .dedup("k", "message-3", WINDOW, at(300_000))
            .await
            .unwrap(),
        DedupOutcome::First
    );
}

async fn a_released_dedup_key_can_be_marked_again(cache: Cache) {
    let now = at(0);
    assert_eq!(
        cache.dedup("k", &fresh_owner(), WINDOW, now).await.unwrap(),
        DedupOutcome::First
    );
    cache.release_dedup("k").await.unwrap();
    assert_eq!(
        cache.dedup("k", &fresh_owner(), WINDOW, now).await.unwrap(),
        DedupOutcome::First
    );
    assert!(matches!(
        cache.dedup("k", &fresh_owner(), WINDOW, now).await.unwrap(),
        DedupOutcome::Duplicate { .. }
    ));
    cache.release_dedup("never-marked").await.unwrap();
}

async fn concurrent_dedup_on_one_key_has_one_first(cache: Cache) {
    let outcomes = concurrently(50, |i| {
        let cache = cache.clone();
        async move {
            cache
                .dedup("hot", &fresh_owner(), WINDOW, at(i as i64))
                .await
                .unwrap()
        }
    })
    .await;
    let firsts = outcomes
        .iter()
        .filter(|o| **o == DedupOutcome::First)
        .count();
    assert_eq!(firsts, 1, "{outcomes:?}");
}

async fn frequency_allows_up_to_the_limit_then_refuses_until_the_period_ends(cache: Cache) {
    let day_end = ms(3_600_000);
    let use_once = |t: i64, end: i64| {
        let cache = cache.clone();
        async move {
            cache
                .frequency("r1:sms", &fresh_owner(), 3, end, at(t))
                .await
                .unwrap()
        }
    };
    for count in 1..=3 {
        assert_eq!(
            use_once(count as i64, day_end).await,
            FrequencyOutcome::Allowed { count }
        );
    }
    // Refused calls count nothing.
    for t in [10, 20] {
        assert_eq!(
            use_once(t, day_end).await,
            FrequencyOutcome::Exceeded { count: 3 }
        );
    }
    assert_eq!(
        cache
            .frequency("r2:sms", &fresh_owner(), 3, day_end, at(30))
            .await
            .unwrap(),
        FrequencyOutcome::Allowed { count: 1 },
        "another key"
    );
    assert_eq!(
        use_once(3_599_999, day_end).await,
        FrequencyOutcome::Exceeded { count: 3 }
    );
    // At the period's end a new period starts, with its own end.
    let next_end = ms(2 * 3_600_000);
    assert_eq!(
        use_once(3_600_000, next_end).await,
        FrequencyOutcome::Allowed { count: 1 }
    );
    assert_eq!(
        use_once(3_600_001, next_end).await,
        FrequencyOutcome::Allowed { count: 2 }
    );
    // A limit of zero allows nothing.
    assert_eq!(
        cache
            .frequency("r3:sms", &fresh_owner(), 0, day_end, at(0))
            .await
            .unwrap(),
        FrequencyOutcome::Exceeded { count: 0 }
    );
}

async fn concurrent_frequency_allows_exactly_the_limit(cache: Cache) {
    let outcomes = concurrently(200, |_| {
        let cache = cache.clone();
        async move {
            cache
                .frequency("r1:sms", &fresh_owner(), 10, ms(60_000), at(0))
                .await
                .unwrap()
        }
    })
    .await;
    let mut allowed: Vec<u32> = outcomes
        .iter()
        .filter_map(|o| match o {
            FrequencyOutcome::Allowed { count } => Some(*count),
            FrequencyOutcome::Exceeded { count } => {
                assert_eq!(*count, 10);
                None
            }
        })
        .collect();
    allowed.sort();
    assert_eq!(allowed, (1..=10).collect::<Vec<u32>>());
}

async fn a_token_bucket_bursts_then_waits_and_refills_over_time(cache: Cache) {
    let take = |t: i64| {
        let cache = cache.clone();
        async move { cache.take_token("acct-1", 2.0, 5, at(t)).await.unwrap() }
    };
    let wait = |retry_after_ms| TokenOutcome::Wait { retry_after_ms };
    // A new bucket starts full.
    for _ in 0..5 {
        assert_eq!(take(0).await, TokenOutcome::Taken);
    }
    assert_eq!(take(0).await, wait(500));
    assert_eq!(take(250).await, wait(250), "half a token came in 250 ms");
    assert_eq!(take(500).await, TokenOutcome::Taken);
    assert_eq!(take(500).await, wait(500));
    // A worker whose clock is behind gets no refill and moves nothing back.
    assert_eq!(take(300).await, wait(500));
    assert_eq!(take(1_000).await, TokenOutcome::Taken);
    // A long pause refills up to the burst, no more.
    for _ in 0..5 {
        assert_eq!(take(60_000).await, TokenOutcome::Taken);
    }
    assert_eq!(take(60_000).await, wait(500));
    assert_eq!(
        cache.take_token("acct-2", 2.0, 5, at(0)).await.unwrap(),
        TokenOutcome::Taken,
        "another bucket"
    );
}

async fn retry_after_is_rounded_up_for_fractional_rates(cache: Cache) {
    let take = |t: i64| {
        let cache = cache.clone();
        async move { cache.take_token("slow", 0.3, 1, at(t)).await.unwrap() }
    };
    assert_eq!(take(0).await, TokenOutcome::Taken);
    // 1 / 0.3 s is 3333.3 ms.
    assert_eq!(
        take(0).await,
        TokenOutcome::Wait {
            retry_after_ms: 3334
        }
    );
    assert_eq!(take(3_333).await, TokenOutcome::Wait { retry_after_ms: 1 });
    assert_eq!(take(3_334).await, TokenOutcome::Taken);
}

async fn concurrent_takes_at_one_instant_get_exactly_the_burst(cache: Cache) {
    let outcomes = concurrently(100, |_| {
        let cache = cache.clone();
        async move { cache.take_token("shared", 0.001, 20, at(0)).await.unwrap() }
    })
    .await;
    let taken = outcomes
        .iter()
        .filter(|o| **o == TokenOutcome::Taken)
        .count();
    assert_eq!(taken, 20, "{outcomes:?}");
    // At a thousandth of a token per second, the next token is 1000 s away.
    for outcome in outcomes.iter().filter(|o| **o != TokenOutcome::Taken) {
        assert_eq!(
            *outcome,
            TokenOutcome::Wait {
                retry_after_ms: 1_000_000
            }
        );
    }
}

async fn a_pause_holds_until_it_ends_and_is_never_shortened(cache: Cache) {
    assert_eq!(cache.paused_until("acct-1", at(0)).await.unwrap(), None);
    cache.pause("acct-1", ms(60_000), at(0)).await.unwrap();
    assert_eq!(
        cache.paused_until("acct-1", at(1)).await.unwrap(),
        Some(ms(60_000))
    );
    assert_eq!(cache.paused_until("acct-2", at(1)).await.unwrap(), None);

    // A shorter Retry-After from another worker does not shorten the pause; a longer one
    // extends it.
    cache.pause("acct-1", ms(10_000), at(2)).await.unwrap();
    assert_eq!(
        cache.paused_until("acct-1", at(3)).await.unwrap(),
        Some(ms(60_000))
    );
    cache.pause("acct-1", ms(120_000), at(4)).await.unwrap();
    assert_eq!(
        cache.paused_until("acct-1", at(119_999)).await.unwrap(),
        Some(ms(120_000))
    );
    assert_eq!(
        cache.paused_until("acct-1", at(120_000)).await.unwrap(),
        None
    );

    // A pause that has already ended does nothing.
    cache.pause("acct-3", ms(5), at(10)).await.unwrap();
    assert_eq!(cache.paused_until("acct-3", at(0)).await.unwrap(), None);

    // A supplier asking for forever gets ten years.
    cache.pause("acct-4", i64::MAX, at(0)).await.unwrap();
    let ten_years = 10 * 366 * 24 * 3600 * 1000;
    assert_eq!(
        cache.paused_until("acct-4", at(0)).await.unwrap(),
        Some(ms(ten_years))
    );
}

async fn invalid_arguments_are_refused(cache: Cache) {
    #[track_caller]
    fn check<T: std::fmt::Debug>(result: Result<T, CacheError>, says: &str) {
        match result {
            Err(CacheError::InvalidArgument(reason)) => {
                assert!(reason.contains(says), "{reason:?} does not say {says:?}")
            }
            other => panic!("expected an invalid argument about {says:?}, got {other:?}"),
        }
    }
    let now = at(0);
    check(
        cache.dedup("k", &fresh_owner(), Duration::ZERO, now).await,
        "dedup window",
    );
    check(
        cache
            .dedup("k", &fresh_owner(), Duration::from_secs(u64::MAX), now)
            .await,
        "dedup window",
    );
    check(cache.frequency("k", "o", 1, ms(0), now).await, "after now");
    check(cache.take_token("b", 0.0, 1, now).await, "rate");
    check(cache.take_token("b", f64::NAN, 1, now).await, "rate");
    check(cache.take_token("b", f64::INFINITY, 1, now).await, "rate");
    check(cache.take_token("b", 1.0, 0, now).await, "burst");
    let policy = BreakerPolicy::default();
    for (bad, says) in [
        (
            BreakerPolicy {
                failure_ratio: 0.0,
                ..policy
            },
            "ratio",
        ),
        (
            BreakerPolicy {
                failure_ratio: f64::NAN,
                ..policy
            },
            "ratio",
        ),
        (
            BreakerPolicy {
                window_ms: 0,
                ..policy
            },
            "window",
        ),
        (
            BreakerPolicy {
                open_ms: 0,
                ..policy
            },
            "open time",
        ),
        (
            BreakerPolicy {
                half_open_probes: 0,
                ..policy
            },
            "probe",
        ),
    ] {
        check(cache.record_result("a", false, now, bad).await, says);
    }
}

async fn ping_answers(cache: Cache) {
    cache.ping().await.unwrap();
}

/// A message that comes back (deferred, rate limited, redelivered) is not counted again.
async fn an_owner_is_counted_once_per_period(cache: Cache) {
    let end = ms(3_600_000);
    let count = |owner: &'static str, t: i64| {
        let cache = cache.clone();
        async move {
            cache
                .frequency("r9:sms", owner, 2, end, at(t))
                .await
                .unwrap()
        }
    };
    assert_eq!(count("m1", 0).await, FrequencyOutcome::Allowed { count: 1 });
    assert_eq!(
        count("m1", 10).await,
        FrequencyOutcome::Allowed { count: 1 }
    );
    assert_eq!(
        count("m2", 20).await,
        FrequencyOutcome::Allowed { count: 2 }
    );
    assert_eq!(
        count("m3", 30).await,
        FrequencyOutcome::Exceeded { count: 2 }
    );
    // Those counted are still allowed at the limit.
    assert_eq!(
        count("m1", 40).await,
        FrequencyOutcome::Allowed { count: 2 }
    );
    // A new period forgets who was counted.
    let next = ms(7_200_000);
    assert_eq!(
        cache
            .frequency("r9:sms", "m3", 2, next, at(3_600_000))
            .await
            .unwrap(),
        FrequencyOutcome::Allowed { count: 1 }
    );
    assert_eq!(
        cache
            .frequency("r9:sms", "m1", 2, next, at(3_600_001))
            .await
            .unwrap(),
        FrequencyOutcome::Allowed { count: 2 }
    );
}

async fn screen_checks_the_dedup_mark_then_the_frequency_cap(cache: Cache) {
    let day_end = ms(3_600_000);
    let screen = |key: &'static str, owner: &'static str, t: i64| {
        let cache = cache.clone();
        async move {
            cache
                .screen(
                    Some(DedupMark {
                        key,
                        owner,
                        window: WINDOW,
                    }),
                    Some(FrequencyUse {
                        key: "r1:sms",
                        owner,
                        limit: 2,
                        period_end_ms: day_end,
                    }),
                    at(t),
                )
                .await
                .unwrap()
        }
    };
    assert_eq!(cache.screen(None, None, at(0)).await.unwrap(), Screen::Pass);
    assert_eq!(screen("hello", "m1", 0).await, Screen::Pass);
    // The same owner again (a redelivered message): its mark and its count are its own.
    assert_eq!(screen("hello", "m1", 1).await, Screen::Pass);
    // A duplicate is not counted: the cap still has room for m3.
    assert_eq!(
        screen("hello", "m2", 2).await,
        Screen::Duplicate {
            first_seen_ms: ms(0)
        }
    );
    assert_eq!(screen("bye", "m3", 3).await, Screen::Pass);
    // The cap is reached; a message stopped by it sets its dedup mark all the same, as the two
    // checks made one after the other do.
    assert_eq!(
        screen("again", "m4", 4).await,
        Screen::Exceeded { count: 2 }
    );
    assert_eq!(
        cache.dedup("again", "m5", WINDOW, at(5)).await.unwrap(),
        DedupOutcome::Duplicate {
            first_seen_ms: ms(4)
        }
    );
    assert_eq!(
        cache
            .frequency("r1:sms", "m6", 2, day_end, at(6))
            .await
            .unwrap(),
        FrequencyOutcome::Exceeded { count: 2 }
    );
    // Bad arguments are refused, as by the checks alone.
    assert!(matches!(
        cache
            .screen(
                None,
                Some(FrequencyUse {
                    key: "r1:sms",
                    owner: "m7",
                    limit: 2,
                    period_end_ms: ms(0),
                }),
                at(10),
            )
            .await,
        Err(CacheError::InvalidArgument(_))
    ));
}
