//! Property test: random operation sequences on the pure board keep every invariant, report
//! exactly the items they changed, change nothing when refused, and hand out strictly
//! increasing fencing tokens; a lease holder's `complete`/`fail` repeated with the token that
//! settled the item is answered with the item and changes nothing, the opposite outcome is
//! refused.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use workshop_board::{
    Board, BoardConfig, BoardError, ListFilter, NewItem, SettleBy, SettleKind, Status, WorkItem,
    WorkType,
};

const IDS: usize = 10;

fn id(i: usize) -> String {
    format!("it{i}")
}

#[derive(Debug, Clone)]
enum Op {
    Add {
        i: usize,
        deps: Vec<usize>,
        priority: u8,
        max_attempts: u32,
        code: bool,
    },
    Claim(usize),
    ClaimNext(Option<bool>),
    Start(usize, bool),
    Heartbeat(usize, bool),
    Complete(usize, bool),
    Fail(usize, bool, bool),
    /// By hand: 0 neither token nor force, 1 force, 2 the current token, 3 a wrong token.
    CompleteWork(usize, u8),
    FailWork(usize, u8),
    Cancel(usize),
    Remove(usize),
    Expire,
    Advance(u64),
    /// complete (true) or fail with the token recorded as the item's last settle.
    Resettle(usize, bool),
}

fn op() -> impl Strategy<Value = Op> {
    let i = 0..IDS;
    prop_oneof![
        4 => (i.clone(), proptest::collection::vec(0..IDS, 0..3), 0u8..=6, 0u32..4, any::<bool>())
            .prop_map(|(i, deps, priority, max_attempts, code)| Op::Add { i, deps, priority, max_attempts, code }),
        2 => i.clone().prop_map(Op::Claim),
        3 => proptest::option::of(any::<bool>()).prop_map(Op::ClaimNext),
        2 => (i.clone(), any::<bool>()).prop_map(|(i, t)| Op::Start(i, t)),
        1 => (i.clone(), any::<bool>()).prop_map(|(i, t)| Op::Heartbeat(i, t)),
        3 => (i.clone(), any::<bool>()).prop_map(|(i, t)| Op::Complete(i, t)),
        2 => (i.clone(), any::<bool>(), any::<bool>()).prop_map(|(i, t, r)| Op::Fail(i, t, r)),
        2 => (i.clone(), 0u8..4).prop_map(|(i, by)| Op::CompleteWork(i, by)),
        2 => (i.clone(), 0u8..4).prop_map(|(i, by)| Op::FailWork(i, by)),
        1 => i.clone().prop_map(Op::Cancel),
        1 => i.clone().prop_map(Op::Remove),
        1 => Just(Op::Expire),
        2 => (1u64..5_000).prop_map(Op::Advance),
        2 => (i.clone(), any::<bool>()).prop_map(|(i, c)| Op::Resettle(i, c)),
    ]
}

fn snapshot(b: &Board) -> BTreeMap<String, WorkItem> {
    b.items().map(|i| (i.id.to_string(), i.clone())).collect()
}

fn settle_by(b: &Board, i: usize, by: u8) -> Option<SettleBy> {
    match by {
        1 => Some(SettleBy::Force),
        2 => Some(SettleBy::Token(token_for(b, i, true))),
        3 => Some(SettleBy::Token(token_for(b, i, false))),
        _ => None,
    }
}

fn token_for(b: &Board, i: usize, good: bool) -> u64 {
    match (good, b.get(&id(i)).and_then(|x| x.token())) {
        (true, Some(t)) => t,
        (_, Some(t)) => t.wrapping_sub(1),
        (_, None) => b.last_token(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_keep_invariants(ops in proptest::collection::vec(op(), 1..120)) {
        let mut b = Board::with_config(BoardConfig { backoff_base_ms: 100, backoff_max_ms: 2_000, jitter_seed: 1 });
        let mut now = 1_000u64;
        let mut max_token = 0u64;
        for op in ops {
            let before = snapshot(&b);
            let tokens_before = b.last_token();
            let result: Result<Vec<workshop_board::Change>, String> = match op.clone() {
                Op::Add { i, deps, priority, max_attempts, code } => {
                    let t = if code { WorkType::Code } else { WorkType::custom() };
                    b.add(
                        NewItem::new(id(i), "t")
                            .depends_on(deps.into_iter().map(id))
                            .priority(priority)
                            .max_attempts(max_attempts)
                            .work_type(t),
                        now,
                    )
                    .map(|o| o.changes)
                    .map_err(|e| e.to_string())
                }
                Op::Claim(i) => b.claim(&id(i), "w", 1_000, now).map(|o| o.changes).map_err(|e| e.to_string()),
                Op::ClaimNext(t) => {
                    let t = t.map(|c| if c { WorkType::Code } else { WorkType::custom() });
                    b.claim_next(t.as_ref(), "w", 1_000, now).map(|o| o.changes).map_err(|e| e.to_string())
                }
                Op::Start(i, good) => {
                    let t = token_for(&b, i, good);
                    b.start(&id(i), t, now).map(|o| o.changes).map_err(|e| e.to_string())
                }
                Op::Heartbeat(i, good) => {
                    let t = token_for(&b, i, good);
                    b.heartbeat(&id(i), t, 1_000, now).map(|o| o.changes).map_err(|e| e.to_string())
                }
                Op::Complete(i, good) => {
                    let t = token_for(&b, i, good);
                    b.complete(&id(i), t, "r", now).map(|o| o.changes).map_err(|e| e.to_string())
                }
                Op::Fail(i, good, retry) => {
                    let t = token_for(&b, i, good);
                    b.fail(&id(i), t, "e", retry, now).map(|o| o.changes).map_err(|e| e.to_string())
                }
                Op::CompleteWork(i, by) | Op::FailWork(i, by) => {
                    let held = b.get(&id(i)).is_some_and(|x| x.lease.is_some());
                    let last_settle = b.get(&id(i)).and_then(|x| x.last_settle);
                    let settle = settle_by(&b, i, by);
                    let r = if matches!(op, Op::CompleteWork(..)) {
                        b.complete_work(&id(i), "r", settle, now)
                    } else {
                        b.fail_work(&id(i), "e", settle, now)
                    };
                    // Nobody settles a held item by hand without its token or force.
                    if held && settle.is_none() {
                        prop_assert!(matches!(r, Err(BoardError::Held { .. })), "{r:?}");
                    }
                    // A wrong token is refused as stale, unless it is the token that settled
                    // the item's previous attempt: then it is that settle repeated, answered
                    // with the item (same outcome) or refused as already settled, and nothing
                    // changes.
                    let repeat = matches!((settle, last_settle), (Some(SettleBy::Token(t)), Some(s)) if s.token == t);
                    if held && by == 3 && !repeat {
                        prop_assert!(matches!(r, Err(BoardError::StaleToken { .. })), "{r:?}");
                    }
                    if held && by == 3 && repeat {
                        let unchanged = match &r {
                            Ok(o) => o.changes.is_empty(),
                            Err(e) => matches!(e, BoardError::AlreadySettled { .. }),
                        };
                        prop_assert!(unchanged, "{r:?}");
                    }
                    r.map(|o| o.changes).map_err(|e| e.to_string())
                }
                Op::Cancel(i) => b.cancel(&id(i), now).map(|o| o.changes).map_err(|e| e.to_string()),
                Op::Remove(i) => b.remove(&id(i)).map(|o| o.changes).map_err(|e| e.to_string()),
                Op::Expire => Ok(b.expire_leases(now).changes),
                Op::Advance(ms) => { now += ms; Ok(Vec::new()) }
                Op::Resettle(i, complete) => {
                    let settle = b.get(&id(i)).and_then(|x| x.last_settle);
                    let t = settle.map_or(b.last_token(), |s| s.token);
                    let r = if complete {
                        b.complete(&id(i), t, "r2", now)
                    } else {
                        b.fail(&id(i), t, "e2", true, now)
                    };
                    let kind = if complete { SettleKind::Completed } else { SettleKind::Failed };
                    if let (Some(s), Some(item)) = (settle, b.get(&id(i))) {
                        if item.token() != Some(s.token) {
                            match &r {
                                Ok(o) => {
                                    prop_assert_eq!(s.kind, kind, "{:?}", op);
                                    prop_assert!(o.changes.is_empty(), "a repeat changed {:?}", o.changes);
                                    prop_assert_eq!(&o.value, item);
                                }
                                Err(e) => prop_assert_eq!(
                                    e,
                                    &BoardError::AlreadySettled { id: id(i), token: s.token, settled: s.kind, attempted: kind }
                                ),
                            }
                        }
                    }
                    r.map(|o| o.changes).map_err(|e| e.to_string())
                }
            };
            // a successful settle by the lease holder, repeated at once, is answered with the
            // item and changes nothing; the opposite outcome with that token is refused
            if let (Op::Complete(i, _) | Op::Fail(i, _, _), Ok(_)) = (&op, &result) {
                let item = b.get(&id(*i)).cloned().unwrap();
                let s = item.last_settle.unwrap();
                let again = match op { Op::Complete(..) => b.complete(&id(*i), s.token, "x", now), _ => b.fail(&id(*i), s.token, "x", false, now) }.unwrap();
                prop_assert!(again.changes.is_empty());
                prop_assert_eq!(&again.value, &item);
                let other = match op { Op::Complete(..) => b.fail(&id(*i), s.token, "x", true, now), _ => b.complete(&id(*i), s.token, "x", now) };
                let refused = matches!(other, Err(BoardError::AlreadySettled { .. }));
                prop_assert!(refused, "{:?}", other);
                prop_assert_eq!(b.get(&id(*i)), Some(&item));
            }
            let after = snapshot(&b);
            if let Err(e) = b.check_invariants() {
                return Err(TestCaseError::fail(format!("after {op:?}: {e}")));
            }
            // the next wake-up is the earliest backoff still to pass of a ready item
            let expect_wake = b.items().filter(|i| i.status == Status::Ready && i.not_before_ms > now).map(|i| i.not_before_ms).min();
            prop_assert_eq!(b.next_wake(now), expect_wake);
            // every item is in exactly one state
            let counts = b.counts();
            prop_assert_eq!(counts.values().sum::<usize>(), b.len());
            match result {
                Err(e) => {
                    prop_assert_eq!(&before, &after, "refused op {:?} ({}) changed the board", op, e);
                    prop_assert_eq!(tokens_before, b.last_token());
                }
                Ok(changes) => {
                    // the change list names every item that differs, with their final state
                    let mut last: BTreeMap<String, Option<WorkItem>> = BTreeMap::new();
                    for c in &changes {
                        last.insert(c.id.to_string(), c.item.clone());
                    }
                    let differing: BTreeSet<String> = before
                        .keys()
                        .chain(after.keys())
                        .filter(|k| before.get(*k) != after.get(*k))
                        .cloned()
                        .collect();
                    let reported: BTreeSet<String> = last.keys().cloned().collect();
                    // (a heartbeat that does not move the expiry reports an unchanged item)
                    prop_assert!(differing.is_subset(&reported), "op {:?}: changed {:?}, reported {:?}", op, differing, reported);
                    for (k, v) in &last {
                        prop_assert_eq!(v.as_ref(), after.get(k), "op {:?} item {}", op, k);
                    }
                    // tokens strictly increase
                    for c in &changes {
                        if c.kind == workshop_board::ChangeKind::Claimed {
                            let t = c.item.as_ref().and_then(|i| i.token()).unwrap();
                            prop_assert!(t > max_token, "token {} after {}", t, max_token);
                            max_token = t;
                        }
                    }
                }
            }
            prop_assert!(b.last_token() >= max_token);
            // claim_next never hands out an item whose dependency is not done (checked by the
            // invariants) and list() is sorted
            let listed = b.list(&ListFilter::default());
            prop_assert!(listed.windows(2).all(|w| (w[0].priority, w[0].created_at_ms, w[0].seq) <= (w[1].priority, w[1].created_at_ms, w[1].seq)));
            // the replica built from the change stream equals a rebuild from the items
            let rebuilt = Board::from_parts(*b.config(), b.items().cloned(), b.meta());
            prop_assert!(rebuilt.check_invariants().is_ok());
        }
        // liveness: completing everything claimable drains the board to terminal states
        while let Some(item) = b.claim_next(None, "drain", 1_000, u64::MAX / 2).unwrap().value {
            let t = item.token().unwrap();
            b.complete(item.id.as_str(), t, "r", now).unwrap();
        }
        for item in b.items() {
            prop_assert!(item.status != Status::Ready, "{} left ready", item.id);
            if matches!(item.status, Status::Blocked | Status::New) {
                prop_assert!(item.depends_on.iter().any(|d| b.get(d.as_str()).is_some_and(|x| x.status != Status::Done)));
            }
        }
        b.check_invariants().map_err(TestCaseError::fail)?;
    }
}

#[test]
fn replica_and_store_follow_the_change_stream() {
    // Deterministic long run: apply every change list to a replica and to a MemoryStore,
    // then compare both with the board.
    use workshop_board::store::BoardStore;
    let mut b = Board::new();
    let mut replica = Board::new();
    let store = workshop_board::MemoryStore::new();
    let mut now = 0;
    for round in 0..200usize {
        now += 10;
        let mut changes = Vec::new();
        let new = NewItem::new(format!("r{round}"), "x")
            .depends_on((round >= 3).then(|| format!("r{}", round - 3)));
        changes.extend(b.add(new, now).unwrap().changes);
        if let Some(item) = b.claim_next(None, "w", 50, now).unwrap().value {
            let t = item.token().unwrap();
            match round % 4 {
                0 => changes.extend(b.complete(item.id.as_str(), t, "ok", now).unwrap().changes),
                1 => changes.extend(b.fail(item.id.as_str(), t, "e", true, now).unwrap().changes),
                2 => {}
                _ => changes.extend(b.complete(item.id.as_str(), t, "ok", now).unwrap().changes),
            }
        }
        changes.extend(b.expire_leases(now).changes);
        replica.apply_changes(&changes);
        let entries: Vec<_> = changes.iter().map(|c| (&c.id, c.item.as_ref())).collect();
        store.write(&entries, b.meta()).unwrap();
    }
    b.check_invariants().unwrap();
    replica.check_invariants().unwrap();
    assert_eq!(snapshot(&replica), snapshot(&b));
    let loaded = store.load(BoardConfig::default()).unwrap();
    assert_eq!(snapshot(&loaded), snapshot(&b));
    assert_eq!(loaded.meta(), b.meta());
}
