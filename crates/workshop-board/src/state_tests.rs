//! Unit tests of every transition and every error of the pure board.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::item::{NewItem, Status, WorkType};

const LEASE: u64 = 30_000;

fn ok<T>(r: Result<Outcome<T>, BoardError>) -> Outcome<T> {
    match r {
        Ok(o) => o,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn add(b: &mut Board, id: &str, deps: &[&str]) -> WorkItem {
    ok(b.add(NewItem::new(id, id).depends_on(deps.iter().copied()), 100)).value
}

fn status(b: &Board, id: &str) -> Status {
    b.get(id).unwrap().status
}

fn claim(b: &mut Board, id: &str) -> u64 {
    ok(b.claim(id, "w1", LEASE, 200)).value.token().unwrap()
}

fn kinds(changes: &[Change]) -> Vec<(ChangeKind, String)> {
    changes.iter().map(|c| (c.kind, c.id.to_string())).collect()
}

#[test]
fn add_sets_ready_or_new_and_defaults() {
    let mut b = Board::new();
    let a = add(&mut b, "a", &[]);
    assert_eq!(a.status, Status::Ready);
    assert_eq!(a.priority, 3);
    assert_eq!(a.max_attempts, 3);
    assert_eq!(a.created_at_ms, 100);
    assert!(a.lease.is_none());
    let c = add(&mut b, "c", &["a"]);
    assert_eq!(c.status, Status::New);
    let out = ok(b.add(NewItem::new("d", "D").depends_on(["a", "a"]), 1));
    assert_eq!(out.value.depends_on.len(), 1, "duplicate deps are merged");
    assert_eq!(kinds(&out.changes), vec![(ChangeKind::Added, "d".into())]);
    b.check_invariants().unwrap();
}

#[test]
fn add_errors() {
    let mut b = Board::new();
    add(&mut b, "a", &[]);
    assert_eq!(
        b.add(NewItem::new("a", "again"), 1),
        Err(BoardError::DuplicateId { id: "a".into() })
    );
    assert!(matches!(
        b.add(NewItem::new("bad id", "x"), 1),
        Err(BoardError::InvalidId { .. })
    ));
    assert!(matches!(
        b.add(NewItem::new("", "x"), 1),
        Err(BoardError::InvalidId { .. })
    ));
    for p in [0u8, 6, 255] {
        assert_eq!(
            b.add(NewItem::new("p", "x").priority(p), 1),
            Err(BoardError::PriorityOutOfRange {
                id: "p".into(),
                priority: p
            })
        );
    }
    assert_eq!(
        b.add(NewItem::new("m", "x").max_attempts(0), 1),
        Err(BoardError::InvalidMaxAttempts { id: "m".into() })
    );
    assert_eq!(
        b.add(NewItem::new("x", "x").depends_on(["a", "zz"]), 1),
        Err(BoardError::MissingDependency {
            id: "x".into(),
            dep: "zz".into()
        })
    );
    assert!(matches!(
        b.add(NewItem::new("s", "x").depends_on(["s"]), 1),
        Err(BoardError::DependencyCycle { .. })
    ));
    assert_eq!(b.len(), 1, "refused adds change nothing");
    let msg = b
        .add(NewItem::new("x", "x").depends_on(["zz"]), 1)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("`x`") && msg.contains("`zz`") && msg.contains("add `zz` first"));
}

#[test]
fn cycle_through_a_dangling_link_is_refused() {
    // A store could hold `b` depending on a missing `a`; adding `a` depending on `b` would
    // close a cycle.
    let mut b = Board::new();
    add(&mut b, "x", &[]);
    let mut dangling = b.get("x").unwrap().clone();
    dangling.id = ItemId::new("b").unwrap();
    dangling.depends_on = vec![ItemId::new("a").unwrap()];
    dangling.status = Status::New;
    let mut b = Board::from_parts(BoardConfig::default(), [dangling], Meta::default());
    let err = b
        .add(NewItem::new("a", "a").depends_on(["b"]), 1)
        .unwrap_err();
    assert_eq!(
        err,
        BoardError::DependencyCycle {
            id: "a".into(),
            cycle: vec!["a".into(), "b".into(), "a".into()]
        }
    );
    assert!(err.to_string().contains("a -> b -> a"));
}

#[test]
fn add_under_failed_dependency_is_blocked() {
    let mut b = Board::new();
    add(&mut b, "a", &[]);
    let t = claim(&mut b, "a");
    ok(b.fail("a", t, "boom", false, 300));
    assert_eq!(add(&mut b, "b", &["a"]).status, Status::Blocked);
    assert_eq!(add(&mut b, "c", &["b"]).status, Status::Blocked);
    b.check_invariants().unwrap();
}

#[test]
fn claim_transitions_and_tokens() {
    let mut b = Board::new();
    add(&mut b, "a", &[]);
    add(&mut b, "b", &[]);
    add(&mut b, "c", &["a"]);
    let out = ok(b.claim("a", "w1", LEASE, 200));
    let a = out.value;
    assert_eq!(a.status, Status::Claimed);
    assert_eq!(a.claimed_by.as_deref(), Some("w1"));
    assert_eq!(a.claimed_at_ms, Some(200));
    let lease = a.lease.clone().unwrap();
    assert_eq!(lease.expires_at_ms, 200 + LEASE);
    assert_eq!(lease.holder, "w1");
    assert_eq!(lease.token, 1);
    assert_eq!(kinds(&out.changes), vec![(ChangeKind::Claimed, "a".into())]);
    assert_eq!(claim(&mut b, "b"), 2, "tokens are global and increasing");
    assert_eq!(b.last_token(), 2);
    assert_eq!(
        b.claim("a", "w2", LEASE, 1),
        Err(BoardError::InvalidTransition {
            id: "a".into(),
            from: Status::Claimed,
            to: Status::Claimed
        })
    );
    assert_eq!(
        b.claim("c", "w2", LEASE, 1),
        Err(BoardError::InvalidTransition {
            id: "c".into(),
            from: Status::New,
            to: Status::Claimed
        })
    );
    assert_eq!(
        b.claim("nope", "w2", LEASE, 1),
        Err(BoardError::NotFound { id: "nope".into() })
    );
    add(&mut b, "d", &[]);
    assert!(matches!(
        b.claim("d", "", LEASE, 1),
        Err(BoardError::InvalidLease { .. })
    ));
    assert!(matches!(
        b.claim("d", "w", 0, 1),
        Err(BoardError::InvalidLease { .. })
    ));
    let msg = b.claim("c", "w2", LEASE, 1).unwrap_err().to_string();
    assert!(msg.contains("new -> claimed") && msg.contains("only a ready item"));
    b.check_invariants().unwrap();
}

#[test]
fn claim_next_orders_by_priority_then_age_and_type() {
    let mut b = Board::new();
    ok(b.add(NewItem::new("low", "l").priority(5), 1));
    ok(b.add(NewItem::new("old", "o").priority(2), 2));
    ok(b.add(NewItem::new("new", "n").priority(2), 3));
    ok(b.add(NewItem::new("same-ms", "s").priority(2), 3));
    ok(b.add(
        NewItem::new("code", "c")
            .priority(1)
            .work_type(WorkType::Code),
        4,
    ));
    let next = |b: &mut Board, t: Option<&WorkType>| {
        ok(b.claim_next(t, "w", LEASE, 10))
            .value
            .map(|i| i.id.to_string())
    };
    assert_eq!(next(&mut b, Some(&WorkType::Docs)), None);
    assert_eq!(
        next(&mut b, Some(&WorkType::custom())).as_deref(),
        Some("old")
    );
    assert_eq!(next(&mut b, None).as_deref(), Some("code"));
    assert_eq!(next(&mut b, None).as_deref(), Some("new"));
    assert_eq!(next(&mut b, None).as_deref(), Some("same-ms"));
    assert_eq!(next(&mut b, None).as_deref(), Some("low"));
    let empty = ok(b.claim_next(None, "w", LEASE, 10));
    assert_eq!(empty.value, None);
    assert!(empty.changes.is_empty());
    assert!(matches!(
        b.claim_next(None, "", LEASE, 10),
        Err(BoardError::InvalidLease { .. })
    ));
    b.check_invariants().unwrap();
}

#[test]
fn start_heartbeat_and_stale_tokens() {
    let mut b = Board::new();
    add(&mut b, "a", &[]);
    assert_eq!(
        b.start("a", 1, 1),
        Err(BoardError::StaleToken {
            id: "a".into(),
            presented: 1,
            current: None,
            status: Status::Ready
        })
    );
    let t = claim(&mut b, "a");
    assert!(matches!(
        b.start("a", t + 1, 1),
        Err(BoardError::StaleToken {
            current: Some(_),
            ..
        })
    ));
    let out = ok(b.start("a", t, 250));
    assert_eq!(out.value.status, Status::InProgress);
    assert_eq!(out.value.started_at_ms, Some(250));
    assert_eq!(
        b.start("a", t, 1),
        Err(BoardError::InvalidTransition {
            id: "a".into(),
            from: Status::InProgress,
            to: Status::InProgress
        })
    );
    let hb = ok(b.heartbeat("a", t, 5_000, 1_000));
    assert_eq!(hb.value.lease.unwrap().expires_at_ms, 6_000);
    assert_eq!(
        kinds(&hb.changes),
        vec![(ChangeKind::Heartbeat, "a".into())]
    );
    assert_eq!(b.next_lease_expiry(), Some(6_000));
    assert!(matches!(
        b.heartbeat("a", t, 0, 1),
        Err(BoardError::InvalidLease { .. })
    ));
    assert!(matches!(
        b.heartbeat("a", 99, 10, 1),
        Err(BoardError::StaleToken { .. })
    ));
    assert_eq!(
        b.heartbeat("zz", t, 10, 1),
        Err(BoardError::NotFound { id: "zz".into() })
    );
    let msg = b.start("a", 99, 1).unwrap_err().to_string();
    assert!(msg.contains("stale fencing token 99") && msg.contains("stop working on it"));
    b.check_invariants().unwrap();
}

#[test]
fn complete_unblocks_dependents_when_all_deps_done() {
    let mut b = Board::new();
    add(&mut b, "a", &[]);
    add(&mut b, "b", &[]);
    add(&mut b, "c", &["a", "b"]);
    add(&mut b, "d", &["a"]);
    let ta = claim(&mut b, "a");
    let out = ok(b.complete("a", ta, "ok-a", 300));
    assert_eq!(out.value.status, Status::Done);
    assert_eq!(out.value.result.as_deref(), Some("ok-a"));
    assert_eq!(out.value.completed_at_ms, Some(300));
    assert!(out.value.lease.is_none());
    assert_eq!(
        kinds(&out.changes),
        vec![
            (ChangeKind::Completed, "a".into()),
            (ChangeKind::Ready, "d".into())
        ]
    );
    assert_eq!(status(&b, "c"), Status::New);
    let tb = claim(&mut b, "b");
    ok(b.start("b", tb, 301));
    let out = ok(b.complete("b", tb, "ok-b", 302));
    assert_eq!(
        kinds(&out.changes),
        vec![
            (ChangeKind::Completed, "b".into()),
            (ChangeKind::Ready, "c".into())
        ]
    );
    assert!(out.changes[1].ready_item().is_some());
    // the same holder repeating itself is answered with the item; any other token is stale
    assert!(ok(b.complete("b", tb, "again", 1)).changes.is_empty());
    assert!(matches!(
        b.complete("b", tb - 1, "again", 1),
        Err(BoardError::StaleToken {
            status: Status::Done,
            ..
        })
    ));
    b.check_invariants().unwrap();
}

#[test]
fn fail_with_retry_backs_off_then_dead_letters() {
    let cfg = BoardConfig {
        backoff_base_ms: 1_000,
        backoff_max_ms: 10_000,
        jitter_seed: 7,
    };
    let mut b = Board::with_config(cfg);
    add(&mut b, "a", &[]);
    add(&mut b, "dep", &["a"]);
    let t1 = claim(&mut b, "a");
    let out = ok(b.fail("a", t1, "flaky", true, 1_000));
    let a = out.value;
    assert_eq!(
        kinds(&out.changes),
        vec![(ChangeKind::Retrying, "a".into())]
    );
    assert_eq!(a.status, Status::Ready);
    assert_eq!(a.attempts, 1);
    assert_eq!(a.error.as_deref(), Some("flaky"));
    assert!(a.lease.is_none() && a.claimed_by.is_none());
    let delay = a.not_before_ms - 1_000;
    assert!((500..=1_000).contains(&delay), "delay {delay}");
    assert_eq!(delay, cfg.backoff_ms("a", 1), "deterministic jitter");
    // claim_next honours the backoff, claim does not
    assert_eq!(ok(b.claim_next(None, "w", LEASE, 1_000)).value, None);
    let got = ok(b.claim_next(None, "w", LEASE, a.not_before_ms))
        .value
        .unwrap();
    assert_eq!(got.id.as_str(), "a");
    let t2 = got.token().unwrap();
    assert!(t2 > t1);
    let a = ok(b.fail("a", t2, "flaky", true, 5_000)).value;
    assert_eq!(a.attempts, 2);
    let d2 = a.not_before_ms - 5_000;
    assert!((1_000..=2_000).contains(&d2), "second delay {d2}");
    let t3 = claim(&mut b, "a");
    let out = ok(b.fail("a", t3, "flaky", true, 9_000));
    assert_eq!(out.value.status, Status::Failed);
    assert_eq!(out.value.attempts, 3);
    let err = out.value.error.unwrap();
    assert!(
        err.contains("flaky") && err.contains("attempt 3 of 3") && err.contains("dead-lettered")
    );
    assert_eq!(
        kinds(&out.changes),
        vec![
            (ChangeKind::Failed, "a".into()),
            (ChangeKind::Blocked, "dep".into())
        ]
    );
    b.check_invariants().unwrap();
}

#[test]
fn backoff_is_capped_and_jittered() {
    let cfg = BoardConfig::default();
    for attempt in 1..60 {
        let d = cfg.backoff_ms("x", attempt);
        assert!(d <= cfg.backoff_max_ms);
        assert!(d >= cfg.backoff_base_ms / 2);
    }
    let spread: BTreeSet<u64> = (0..50)
        .map(|i| cfg.backoff_ms(&format!("i{i}"), 3))
        .collect();
    assert!(spread.len() > 10, "jitter spreads retries: {spread:?}");
}

#[test]
fn fail_without_retry_blocks_dependents_transitively() {
    let mut b = Board::new();
    add(&mut b, "a", &[]);
    add(&mut b, "b", &["a"]);
    add(&mut b, "c", &["b"]);
    add(&mut b, "d", &["c"]);
    add(&mut b, "other", &[]);
    let t = claim(&mut b, "a");
    let out = ok(b.fail("a", t, "broken", false, 10));
    assert_eq!(out.value.status, Status::Failed);
    assert_eq!(out.value.error.as_deref(), Some("broken"));
    assert_eq!(out.value.attempts, 1);
    assert_eq!(
        kinds(&out.changes),
        vec![
            (ChangeKind::Failed, "a".into()),
            (ChangeKind::Blocked, "b".into()),
            (ChangeKind::Blocked, "c".into()),
            (ChangeKind::Blocked, "d".into())
        ]
    );
    assert_eq!(status(&b, "other"), Status::Ready);
    // a repeat by the same holder changes nothing; another token is stale
    assert!(ok(b.fail("a", t, "again", false, 1)).changes.is_empty());
    assert!(matches!(
        b.fail("a", t + 1, "again", false, 1),
        Err(BoardError::StaleToken { .. })
    ));
    b.check_invariants().unwrap();
}

#[test]
fn cancel_from_every_state() {
    let mut b = Board::new();
    for id in ["n0", "r", "cl", "ip", "dn", "fl"] {
        add(&mut b, id, &[]);
    }
    add(&mut b, "n", &["n0"]);
    add(&mut b, "bl-parent", &[]);
    add(&mut b, "bl", &["bl-parent"]);
    let t = claim(&mut b, "cl");
    let _ = t;
    let t = claim(&mut b, "ip");
    ok(b.start("ip", t, 1));
    let t = claim(&mut b, "dn");
    ok(b.complete("dn", t, "r", 1));
    let t = claim(&mut b, "fl");
    ok(b.fail("fl", t, "e", false, 1));
    ok(b.cancel("bl-parent", 1));
    assert_eq!(status(&b, "bl"), Status::Blocked);
    for id in ["n", "r", "cl", "ip", "fl", "bl"] {
        let out = ok(b.cancel(id, 500));
        assert_eq!(out.value.status, Status::Cancelled, "{id}");
        assert!(out.value.lease.is_none());
        assert_eq!(out.value.completed_at_ms, Some(500));
    }
    assert_eq!(
        b.cancel("dn", 1),
        Err(BoardError::AlreadyDone { id: "dn".into() })
    );
    assert_eq!(
        b.cancel("r", 1),
        Err(BoardError::InvalidTransition {
            id: "r".into(),
            from: Status::Cancelled,
            to: Status::Cancelled
        })
    );
    assert_eq!(
        b.cancel("zz", 1),
        Err(BoardError::NotFound { id: "zz".into() })
    );
    b.check_invariants().unwrap();
}

#[test]
fn cancel_blocks_dependents_transitively() {
    let mut b = Board::new();
    add(&mut b, "a", &[]);
    add(&mut b, "b", &["a"]);
    add(&mut b, "x", &[]);
    add(&mut b, "c", &["b", "x"]);
    let out = ok(b.cancel("a", 1));
    assert_eq!(
        kinds(&out.changes),
        vec![
            (ChangeKind::Cancelled, "a".into()),
            (ChangeKind::Blocked, "b".into()),
            (ChangeKind::Blocked, "c".into())
        ]
    );
    b.check_invariants().unwrap();
}

#[test]
fn expire_leases_requeues_then_dead_letters() {
    let mut b = Board::new();
    ok(b.add(NewItem::new("a", "a").max_attempts(2), 0));
    add(&mut b, "dep", &["a"]);
    add(&mut b, "long", &[]);
    let t1 = ok(b.claim("a", "w1", 100, 0)).value.token().unwrap();
    ok(b.claim("long", "w9", 10_000, 0));
    let none = b.expire_leases(99);
    assert!(none.value.is_empty() && none.changes.is_empty());
    let out = b.expire_leases(100);
    assert_eq!(out.value, vec![ItemId::new("a").unwrap()]);
    assert_eq!(
        kinds(&out.changes),
        vec![(ChangeKind::LeaseExpired, "a".into())]
    );
    let a = b.get("a").unwrap();
    assert_eq!(a.status, Status::Ready);
    assert_eq!(a.attempts, 1);
    assert_eq!(a.lease_expiries, 1);
    assert!(a.lease.is_none() && a.claimed_by.is_none());
    // the old holder is fenced off
    assert!(matches!(
        b.complete("a", t1, "late", 101),
        Err(BoardError::StaleToken { .. })
    ));
    let t2 = ok(b.claim("a", "w2", 100, 200)).value.token().unwrap();
    assert!(t2 > t1);
    // a heartbeat keeps it alive past the old expiry
    ok(b.heartbeat("a", t2, 100, 250));
    assert!(b.expire_leases(300).value.is_empty());
    let out = b.expire_leases(350);
    assert_eq!(
        kinds(&out.changes),
        vec![
            (ChangeKind::DeadLettered, "a".into()),
            (ChangeKind::Blocked, "dep".into())
        ]
    );
    let a = b.get("a").unwrap();
    assert_eq!(a.status, Status::Failed);
    let err = a.error.clone().unwrap();
    assert!(
        err.contains("lease expired 2 times")
            && err.contains("dead-lettered")
            && err.contains("w2"),
        "{err}"
    );
    assert_eq!(status(&b, "long"), Status::Claimed);
    b.check_invariants().unwrap();
}

#[test]
fn admin_complete_and_fail_work() {
    let mut b = Board::new();
    add(&mut b, "a", &[]);
    add(&mut b, "b", &["a"]);
    add(&mut b, "c", &[]);
    add(&mut b, "d", &["c"]);
    assert_eq!(
        b.complete_work("a", "r", None, 1),
        Err(BoardError::InvalidTransition {
            id: "a".into(),
            from: Status::Ready,
            to: Status::Done
        })
    );
    assert_eq!(
        b.fail_work("a", "e", Some(SettleBy::Force), 1),
        Err(BoardError::InvalidTransition {
            id: "a".into(),
            from: Status::Ready,
            to: Status::Failed
        })
    );
    let ta = claim(&mut b, "a");
    // Held: neither token nor force is refused, naming the holder; nothing changes.
    let held = Err(BoardError::Held {
        id: "a".into(),
        status: Status::Claimed,
        holder: "w1".into(),
    });
    assert_eq!(b.complete_work("a", "r", None, 2), held);
    assert_eq!(b.fail_work("a", "e", None, 2), held);
    assert_eq!(status(&b, "a"), Status::Claimed);
    // A wrong token is a stale one.
    assert!(matches!(
        b.complete_work("a", "r", Some(SettleBy::Token(ta + 7)), 2),
        Err(BoardError::StaleToken { .. })
    ));
    // The claim's token settles it as its holder would (a repeat is answered, not refused).
    let out = ok(b.complete_work("a", "by hand", Some(SettleBy::Token(ta)), 2));
    assert_eq!(out.value.result.as_deref(), Some("by hand"));
    assert_eq!(status(&b, "b"), Status::Ready);
    let again = ok(b.complete_work("a", "by hand", Some(SettleBy::Token(ta)), 3));
    assert!(again.changes.is_empty());
    // Force takes it from any holder.
    claim(&mut b, "c");
    let out = ok(b.fail_work("c", "no", Some(SettleBy::Force), 3));
    assert_eq!(out.value.status, Status::Failed);
    assert_eq!(out.value.claimed_by.as_deref(), Some("w1"));
    assert_eq!(status(&b, "d"), Status::Blocked);
    assert_eq!(
        b.complete_work("zz", "r", None, 1),
        Err(BoardError::NotFound { id: "zz".into() })
    );
    assert_eq!(
        b.fail_work("zz", "r", Some(SettleBy::Token(1)), 1),
        Err(BoardError::NotFound { id: "zz".into() })
    );
    b.check_invariants().unwrap();
}

#[test]
fn settling_by_hand_with_the_previous_attempt_s_token_repeats_that_settle() {
    let mut b = Board::with_config(BoardConfig {
        backoff_base_ms: 0,
        backoff_max_ms: 0,
        jitter_seed: 1,
    });
    ok(b.add(NewItem::new("a", "a").max_attempts(2), 0));
    let t1 = claim(&mut b, "a");
    ok(b.fail("a", t1, "first", true, 300));
    let t2 = ok(b.claim("a", "w2", LEASE, 400)).value.token().unwrap();
    // The old token names the first attempt's failure: the same outcome is answered with the
    // item and changes nothing (the second holder keeps it), the other one is refused.
    let again = ok(b.fail_work("a", "e", Some(SettleBy::Token(t1)), 500));
    assert!(again.changes.is_empty());
    assert_eq!(again.value.token(), Some(t2));
    assert_eq!(again.value.claimed_by.as_deref(), Some("w2"));
    assert!(matches!(
        b.complete_work("a", "r", Some(SettleBy::Token(t1)), 500),
        Err(BoardError::AlreadySettled { .. })
    ));
    assert_eq!(status(&b, "a"), Status::Claimed);
    b.check_invariants().unwrap();
}

#[test]
fn list_filters_and_counts() {
    let mut b = Board::new();
    ok(b.add(
        NewItem::new("c1", "x")
            .work_type(WorkType::Code)
            .priority(4),
        5,
    ));
    ok(b.add(
        NewItem::new("c2", "x")
            .work_type(WorkType::Code)
            .priority(1),
        6,
    ));
    ok(b.add(NewItem::new("r1", "x").work_type(WorkType::Review), 1));
    ok(b.add(NewItem::new("n1", "x").depends_on(["r1"]), 2));
    ok(b.claim("c1", "alice", LEASE, 7));
    let ids = |v: Vec<&WorkItem>| v.iter().map(|i| i.id.to_string()).collect::<Vec<_>>();
    assert_eq!(
        ids(b.list(&ListFilter::default())),
        ["c2", "r1", "n1", "c1"]
    );
    assert_eq!(
        ids(b.list(&ListFilter::default().work_type(WorkType::Code))),
        ["c2", "c1"]
    );
    assert_eq!(
        ids(b.list(&ListFilter::default().status(Status::Ready))),
        ["c2", "r1"]
    );
    assert_eq!(
        ids(b.list(&ListFilter::default().claimed_by("alice"))),
        ["c1"]
    );
    assert!(b.list(&ListFilter::default().claimed_by("bob")).is_empty());
    let counts = b.counts();
    assert_eq!(counts.len(), 8);
    assert_eq!(counts[&Status::Ready], 2);
    assert_eq!(counts[&Status::Claimed], 1);
    assert_eq!(counts[&Status::New], 1);
    assert_eq!(counts[&Status::Done], 0);
}

#[test]
fn remove_items() {
    let mut b = Board::new();
    add(&mut b, "a", &[]);
    add(&mut b, "b", &["a"]);
    let t = claim(&mut b, "a");
    let _ = t;
    assert_eq!(
        b.remove("a"),
        Err(BoardError::HasDependents {
            id: "a".into(),
            dependents: vec!["b".into()]
        })
    );
    let out = ok(b.remove("b"));
    assert_eq!(out.changes[0].kind, ChangeKind::Removed);
    assert!(out.changes[0].item.is_none());
    ok(b.remove("a"));
    assert!(b.is_empty());
    assert_eq!(b.next_lease_expiry(), None);
    assert_eq!(b.remove("a"), Err(BoardError::NotFound { id: "a".into() }));
    // the id can be reused
    add(&mut b, "a", &[]);
    b.check_invariants().unwrap();
}

#[test]
fn replica_follows_changes_and_reload_keeps_counters() {
    let mut b = Board::new();
    let mut replica = Board::new();
    let mut all = Vec::new();
    all.extend(ok(b.add(NewItem::new("a", "a"), 1)).changes);
    all.extend(ok(b.add(NewItem::new("b", "b").depends_on(["a"]), 2)).changes);
    all.extend(ok(b.add(NewItem::new("z", "z"), 2)).changes);
    let t = ok(b.claim("a", "w", LEASE, 3)).value.token().unwrap();
    all.extend(ok(b.complete("a", t, "r", 4)).changes);
    all.extend(ok(b.remove("z")).changes);
    replica.apply_changes(&all);
    replica.check_invariants().unwrap();
    assert_eq!(
        replica.items().collect::<Vec<_>>(),
        b.items().collect::<Vec<_>>()
    );
    let reloaded = Board::from_parts(BoardConfig::default(), b.items().cloned(), b.meta());
    reloaded.check_invariants().unwrap();
    assert_eq!(reloaded.meta(), b.meta());
    // counters recovered from items even if meta was lost
    let mut c = Board::from_parts(BoardConfig::default(), b.items().cloned(), Meta::default());
    assert_eq!(c.meta().last_seq, 2);
    ok(c.add(NewItem::new("q", "q"), 5));
    assert_eq!(c.get("q").unwrap().seq, 3);
}

#[test]
fn complete_and_fail_are_idempotent_for_the_settling_token() {
    let cfg = BoardConfig {
        backoff_base_ms: 1_000,
        backoff_max_ms: 10_000,
        jitter_seed: 7,
    };
    let mut b = Board::with_config(cfg);
    add(&mut b, "a", &[]);
    add(&mut b, "r", &[]);
    add(&mut b, "dead", &[]);

    // complete, then complete again with the same token: the item, no change
    let t = claim(&mut b, "a");
    let done = ok(b.complete("a", t, "first", 300)).value;
    assert_eq!(
        done.last_settle,
        Some(Settle {
            token: t,
            kind: SettleKind::Completed
        })
    );
    let again = ok(b.complete("a", t, "second", 400));
    assert!(again.changes.is_empty(), "a repeat changes nothing");
    assert_eq!(again.value, done, "answered with the item as settled");
    assert_eq!(b.get("a").unwrap().result.as_deref(), Some("first"));
    // the opposite outcome with that token is refused, naming both
    let e = b.fail("a", t, "late", true, 500).unwrap_err();
    assert_eq!(
        e,
        BoardError::AlreadySettled {
            id: "a".into(),
            token: t,
            settled: SettleKind::Completed,
            attempted: SettleKind::Failed
        }
    );
    assert!(e
        .to_string()
        .contains("already completed with fencing token"));
    // another token is still stale
    assert!(matches!(
        b.complete("a", t + 100, "x", 1),
        Err(BoardError::StaleToken { .. })
    ));

    // fail with a retry left: back to ready with a backoff; the repeat is still recognised
    let tr = claim(&mut b, "r");
    let retrying = ok(b.fail("r", tr, "flaky", true, 1_000)).value;
    assert_eq!(retrying.status, Status::Ready);
    assert!(retrying.not_before_ms > 1_000);
    let again = ok(b.fail("r", tr, "flaky", true, 1_001));
    assert!(again.changes.is_empty());
    assert_eq!(again.value, retrying);
    assert_eq!(b.get("r").unwrap().attempts, 1, "no second attempt counted");
    assert!(matches!(
        b.complete("r", tr, "late", 1_002),
        Err(BoardError::AlreadySettled {
            settled: SettleKind::Failed,
            attempted: SettleKind::Completed,
            ..
        })
    ));
    // ... even after someone else claimed it: the answer is the current item
    let tr2 = ok(b.claim("r", "w2", LEASE, 1_003)).value.token().unwrap();
    let again = ok(b.fail("r", tr, "flaky", true, 1_004));
    assert!(again.changes.is_empty());
    assert_eq!(again.value.token(), Some(tr2));
    // and the new holder's own settle is not a repeat
    let out = ok(b.fail("r", tr2, "flaky", false, 1_005));
    assert_eq!(out.value.status, Status::Failed);
    assert_eq!(out.value.attempts, 2);

    // fail with no retries left (dead-lettered), repeated
    let td = claim(&mut b, "dead");
    let failed = ok(b.fail("dead", td, "boom", false, 2_000)).value;
    assert_eq!(failed.status, Status::Failed);
    let again = ok(b.fail("dead", td, "boom", true, 2_001));
    assert!(again.changes.is_empty());
    assert_eq!(again.value, failed);

    // a forced settle by hand records no holder's settle
    add(&mut b, "h", &[]);
    let th = claim(&mut b, "h");
    ok(b.complete_work("h", "by hand", Some(SettleBy::Force), 3_000));
    assert_eq!(b.get("h").unwrap().last_settle, None);
    assert!(matches!(
        b.complete("h", th, "mine", 3_001),
        Err(BoardError::StaleToken { .. })
    ));
    b.check_invariants().unwrap();
}

#[test]
fn settle_repeat_rule() {
    let mut b = Board::new();
    add(&mut b, "a", &[]);
    let t = claim(&mut b, "a");
    let leased = b.get("a").unwrap().clone();
    // the current lease's token is never a repeat
    assert_eq!(
        settle_repeat(&leased, t, SettleKind::Completed),
        SettleRepeat::No
    );
    let done = ok(b.complete("a", t, "r", 1)).value;
    assert_eq!(
        settle_repeat(&done, t, SettleKind::Completed),
        SettleRepeat::Same
    );
    assert_eq!(
        settle_repeat(&done, t, SettleKind::Failed),
        SettleRepeat::Opposite(SettleKind::Completed)
    );
    assert_eq!(
        settle_repeat(&done, t + 1, SettleKind::Completed),
        SettleRepeat::No
    );
}

#[test]
fn next_wake_is_the_earliest_pending_backoff() {
    let cfg = BoardConfig {
        backoff_base_ms: 1_000,
        backoff_max_ms: 10_000,
        jitter_seed: 7,
    };
    let mut b = Board::with_config(cfg);
    add(&mut b, "a", &[]);
    add(&mut b, "b", &[]);
    add(&mut b, "c", &[]);
    assert_eq!(b.next_wake(0), None, "plain ready items wait for nothing");
    let ta = claim(&mut b, "a");
    let tb = claim(&mut b, "b");
    let a = ok(b.fail("a", ta, "x", true, 1_000)).value;
    let b_item = ok(b.fail("b", tb, "x", true, 1_200)).value;
    let (na, nb) = (a.not_before_ms, b_item.not_before_ms);
    let (first, second) = if na <= nb { (na, nb) } else { (nb, na) };
    assert_eq!(b.next_wake(1_200), Some(first));
    assert_eq!(b.next_wake(first), (second != first).then_some(second));
    assert_eq!(b.next_wake(second), None);
    // what passes between two clock readings, earliest first
    assert!(b.backoffs_passed(1_200, first - 1).is_empty());
    let passed: Vec<_> = b
        .backoffs_passed(1_200, second)
        .iter()
        .map(|i| i.not_before_ms)
        .collect();
    assert_eq!(passed, vec![first, second]);
    assert!(b.backoffs_passed(second, u64::MAX).is_empty());
    assert!(b.backoffs_passed(u64::MAX, u64::MAX).is_empty());
    assert_eq!(b.next_wake(u64::MAX), None);
    // claimed or cancelled items wait for nothing
    ok(b.claim("a", "w", LEASE, 1_300));
    ok(b.cancel("b", 1_300));
    assert_eq!(b.next_wake(0), None);
    assert!(b.backoffs_passed(0, u64::MAX).is_empty());
    b.check_invariants().unwrap();
}

#[test]
fn release_hands_the_item_back_without_counting_an_attempt() {
    let mut b = Board::new();
    add(&mut b, "a", &[]);
    let t = claim(&mut b, "a");
    ok(b.start("a", t, 300));
    let out = ok(b.release("a", t, "node stopping"));
    assert_eq!(
        kinds(&out.changes),
        vec![(ChangeKind::Released, "a".into())]
    );
    let a = b.get("a").unwrap();
    assert_eq!(a.status, Status::Ready);
    assert_eq!(a.attempts, 0);
    assert!(a.lease.is_none() && a.claimed_by.is_none());
    assert!(a.error.as_deref().unwrap().contains("node stopping"));
    // The token is retired: neither it nor a second release settles anything.
    assert!(matches!(
        b.complete("a", t, "late", 400),
        Err(BoardError::StaleToken { .. })
    ));
    assert!(matches!(
        b.release("a", t, "again"),
        Err(BoardError::StaleToken { .. })
    ));
    // Ready again for anyone.
    let t2 = claim(&mut b, "a");
    assert!(t2 > t);
    b.check_invariants().unwrap();
}
