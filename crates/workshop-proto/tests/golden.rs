//! Golden files of the wire encoding: a change to a request, a reply, an error or the codec
//! shows up here (and in review) as a changed file. `UPDATE_GOLDEN=1 cargo test -p
//! workshop-proto --test golden` rewrites them after a deliberate change (then bump
//! `PROTOCOL_VERSION` if old clients cannot read the new form).
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use workshop_proto::api::{req, AwaitOutcome, NodeHello, Page, Request, WorkOptions};
use workshop_proto::node::{
    decode_frame, decode_request, encode_frame, encode_reply, encode_request, ReplyFrame,
};
use workshop_proto::{encode, ApiError};
use workshop_types::{AgentName, AgentOptions, AgentStatus, TurnError, TurnResult};

fn hex(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (i, chunk) in bytes.chunks(32).enumerate() {
        if i > 0 {
            out.push('\n');
        }
        for b in chunk {
            out.push_str(&format!("{b:02x}"));
        }
    }
    out.push('\n');
    out
}

fn check(name: &str, bytes: &[u8]) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.hex"));
    let now = hex(bytes);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &now).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "no golden file {}; run with UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    assert_eq!(
        now,
        want,
        "the wire encoding of {name} changed; if that is deliberate, rerun with UPDATE_GOLDEN=1 and bump PROTOCOL_VERSION when old peers cannot read it"
    );
}

fn name(s: &str) -> AgentName {
    AgentName::new(s).unwrap()
}

#[test]
fn requests_are_stable() {
    let cases: Vec<(&str, Request)> = vec![
        (
            "req_hello",
            req::Hello {
                client_version: "0.1.0".into(),
                protocol: 1,
            }
            .into(),
        ),
        (
            "req_create_agent",
            req::CreateAgent {
                name: "impl".into(),
                role: Some("You implement.".into()),
                options: AgentOptions {
                    model: Some("sonnet".into()),
                    max_cost_usd: Some(2.5),
                    ..Default::default()
                },
            }
            .into(),
        ),
        (
            "req_ask",
            req::Ask {
                name: "impl".into(),
                prompt: "write the parser".into(),
                origin: "ask".into(),
            }
            .into(),
        ),
        (
            "req_add_work",
            req::AddWork {
                id: "t1".into(),
                title: "Parser".into(),
                options: WorkOptions {
                    work_type: Some("code".into()),
                    priority: Some(2),
                    depends_on: vec!["t0".into()],
                    ..Default::default()
                },
            }
            .into(),
        ),
        ("req_status", req::Status {}.into()),
        ("req_stop_node", req::StopNode {}.into()),
        (
            "req_work_result_part",
            req::WorkResultPart {
                id: "t1".into(),
                index: 3,
            }
            .into(),
        ),
        (
            "req_board_backup",
            req::BoardBackup {
                dir: "/var/backups/board".into(),
            }
            .into(),
        ),
        (
            "req_complete_work",
            req::CompleteWork {
                id: "t1".into(),
                result: Some("done by hand".into()),
                by: Some(workshop_types::board::SettleBy::Token(42)),
            }
            .into(),
        ),
        (
            "req_fail_work",
            req::FailWork {
                id: "t1".into(),
                error: None,
                by: Some(workshop_types::board::SettleBy::Force),
            }
            .into(),
        ),
    ];
    for (n, r) in cases {
        let frame = encode_request(r.clone(), "0.1.0").unwrap();
        check(n, &frame.0);
        assert_eq!(decode_request(&frame).unwrap().request, r);
    }
}

#[test]
fn board_requests_are_stable() {
    use workshop_proto::board::{req as b, BoardRequest};
    use workshop_types::board::{NewItem, SettleBy, Status, WorkType};
    let cases: Vec<(&str, BoardRequest)> = vec![
        (
            "board_add",
            b::Add {
                item: NewItem::work("t1", "Parser", WorkType::Code, "write it", 2, ["t0"]),
            }
            .into(),
        ),
        (
            "board_claim_next",
            b::ClaimNext {
                work_type: Some(WorkType::Custom("lint".into())),
                holder: "n1/w1".into(),
                lease_ms: 30_000,
            }
            .into(),
        ),
        (
            "board_heartbeat",
            b::Heartbeat {
                id: "t1".into(),
                token: 7,
                lease_ms: 30_000,
            }
            .into(),
        ),
        (
            "board_complete",
            b::Complete {
                id: "t1".into(),
                token: 7,
                result: "done".into(),
            }
            .into(),
        ),
        (
            "board_fail",
            b::Fail {
                id: "t1".into(),
                token: 7,
                error: "tests fail".into(),
                retry: true,
            }
            .into(),
        ),
        (
            "board_list",
            b::List {
                status: Some(Status::Ready),
                work_type: None,
                claimed_by: Some("n1/w1".into()),
            }
            .into(),
        ),
        (
            "board_wait_ready",
            b::WaitReady {
                work_type: Some(WorkType::Review),
                wait_ms: 5_000,
            }
            .into(),
        ),
        (
            "board_complete_work",
            b::CompleteWork {
                id: "t1".into(),
                result: "done by hand".into(),
                by: Some(SettleBy::Token(42)),
            }
            .into(),
        ),
        (
            "board_fail_work",
            b::FailWork {
                id: "t1".into(),
                error: "failed by hand".into(),
                by: Some(SettleBy::Force),
            }
            .into(),
        ),
        (
            "board_await_settled",
            b::AwaitSettled {
                id: "t1".into(),
                wait_ms: 30_000,
            }
            .into(),
        ),
        ("board_remove", b::Remove { id: "t1".into() }.into()),
        (
            "board_put_result_part",
            b::PutResultPart {
                id: "t1".into(),
                token: 7,
                index: 2,
                text: "piece".into(),
            }
            .into(),
        ),
        (
            "board_complete_in_parts",
            b::CompleteInParts {
                id: "t1".into(),
                token: 7,
                preview: "first".into(),
                parts: 3,
                bytes: 150_000,
            }
            .into(),
        ),
        (
            "board_result_part",
            b::ResultPart {
                id: "t1".into(),
                index: 2,
            }
            .into(),
        ),
        (
            "board_backup",
            b::Backup {
                dir: "/var/backups/board".into(),
            }
            .into(),
        ),
    ];
    for (n, r) in cases {
        let frame = encode_frame(r.clone(), "0.1.0").unwrap();
        check(n, &frame.0);
        assert_eq!(decode_frame::<BoardRequest>(&frame).unwrap().request, r);
    }
    // Board errors a worker acts on are typed on the wire, with stable codes.
    let errors = [
        (
            "err_stale_token",
            ApiError::StaleToken {
                id: "t1".into(),
                presented: 7,
                current: Some(9),
                status: Status::Claimed,
            },
            "stale_token",
        ),
        (
            "err_no_such_item",
            ApiError::NoSuchItem("t9".into()),
            "no_such_item",
        ),
    ];
    for (n, e, code) in errors {
        assert_eq!(e.code(), code);
        let frame = encode_reply::<()>("x", &Err(e.clone()));
        check(n, &frame.0);
        let back: Result<(), ApiError> = workshop_proto::decode(&frame.0).unwrap();
        assert_eq!(back, Err(e));
    }
}

#[test]
fn replies_and_errors_are_stable() {
    let turn = TurnResult {
        text: "done".into(),
        cost_usd: 0.25,
        num_turns: 1,
        session_id: Some("s-1".into()),
        ..Default::default()
    };
    check(
        "reply_ask_ok",
        &encode_reply::<TurnResult>("Ask", &Ok(turn.clone())).0,
    );
    check(
        "reply_await",
        &encode(&Ok::<AwaitOutcome, ApiError>(AwaitOutcome {
            agent: name("impl"),
            was_idle: false,
            status: AgentStatus::Idle,
            last: Some(Err(TurnError::Interrupted)),
        }))
        .unwrap(),
    );
    check(
        "reply_page",
        &encode(&Ok::<Page<String>, ApiError>(Page {
            items: vec!["a".into(), "b".into()],
            truncated: 3,
        }))
        .unwrap(),
    );
    check(
        "reply_hello",
        &encode(&Ok::<NodeHello, ApiError>(NodeHello {
            name: "n1".into(),
            version: "0.1.0".into(),
            protocol: 1,
            pid: 42,
            data_dir: Some("/data".into()),
            addr: Some("127.0.0.1:4221".into()),
            started_at_ms: 1_700_000_000_000,
            agents: 2,
            workers: 1,
        }))
        .unwrap(),
    );
    let errors = [
        ("err_unknown_agent", ApiError::UnknownAgent("x".into())),
        (
            "err_queue_full",
            ApiError::QueueFull {
                agent: name("impl"),
                depth: 5,
            },
        ),
        (
            "err_budget",
            ApiError::BudgetExceeded("global budget of $1.00 spent".into()),
        ),
        (
            "err_version",
            ApiError::Version {
                client: "0.1.0".into(),
                client_protocol: 1,
                node: "0.2.0".into(),
                node_protocol: 2,
            },
        ),
        (
            "err_held",
            ApiError::Held {
                id: "t1".into(),
                status: workshop_types::board::Status::InProgress,
                holder: "dev".into(),
            },
        ),
    ];
    for (n, e) in errors {
        let frame = encode_reply::<()>("x", &Err(e.clone()));
        check(n, &frame.0);
        let back: Result<TurnResult, ApiError> = workshop_proto::decode(&frame.0).unwrap();
        assert_eq!(back, Err(e));
    }
}

#[test]
fn a_garbage_frame_is_an_error_not_a_panic() {
    use workshop_proto::node::RequestFrame;
    for bytes in [vec![], vec![1], vec![1, 0xff, 0xff, 0xff], vec![9, 1, 2, 3]] {
        let e = decode_request(&RequestFrame(bytes)).unwrap_err();
        assert_eq!(e.code(), "bad_request", "{e}");
    }
}

#[test]
fn an_oversized_reply_becomes_a_too_large_error() {
    let big = Page {
        items: vec!["x".repeat(1024 * 1024); 9],
        truncated: 0,
    };
    let frame: ReplyFrame = encode_reply("History", &Ok::<_, ApiError>(big));
    let back: Result<Page<String>, ApiError> = workshop_proto::decode(&frame.0).unwrap();
    match back {
        Err(ApiError::TooLarge { what, .. }) => assert!(what.contains("History"), "{what}"),
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[test]
fn an_oversized_request_is_refused_before_sending() {
    let r: Request = req::Ask {
        name: "a".into(),
        prompt: "x".repeat(9 * 1024 * 1024),
        origin: "ask".into(),
    }
    .into();
    match encode_request(r, "0.1.0") {
        Err(ApiError::TooLarge { what, limit, .. }) => {
            assert!(what.contains("Ask"));
            assert_eq!(limit, workshop_proto::node::MAX_FRAME_BYTES);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
}
