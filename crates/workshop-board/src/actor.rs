//! [`BoardActor`]: the board on the wire. It owns a [`DurableBoard`] handle, joins the pg group
//! [`BOARD_GROUP`] in its cluster's scope (so board workers on other nodes find it) and answers
//! [`BoardRequest`]s carried in [`BoardMsg::Call`] frames.
//!
//! The actor only decodes: each request is polled once in place (a read answers there) and then
//! runs in its own task, which awaits the durable operation (group commit: the reply leaves
//! after the batch's flush + fdatasync) and replies from there, so a slow sync or a long
//! `wait_ready` never holds up the mailbox. A frame that
//! does not decode, or comes from another protocol version, gets an error reply; the actor
//! lives on.

use std::future::Future;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::{broadcast, watch};
use workshop_proto::api::{Call, Page};
use workshop_proto::board::{req, BackupInfo, BoardMsg, BoardRequest, BOARD_GROUP};
use workshop_proto::node::{check_protocol, decode_frame, encode_reply, ReplyFrame};
use workshop_proto::ApiError;

use crate::durable::DurableBoard;
use crate::item::{WorkItem, WorkType};
use crate::wire::{
    api_error, claimable, claimable_page, counts_u64, list_filter, ready_filter, REPLY_BUDGET,
};

const VERSION: &str = env!("CARGO_PKG_VERSION");

pub struct BoardActor;

pub struct BoardActorArgs {
    pub board: DurableBoard,
    /// The pg scope of the cluster (tests use their own).
    pub scope: String,
}

pub struct BoardActorState {
    board: DurableBoard,
    /// Set when the actor stops: pending `wait_ready`s end instead of outliving it.
    stopping: watch::Sender<bool>,
}

impl Actor for BoardActor {
    type Msg = BoardMsg;
    type State = BoardActorState;
    type Arguments = BoardActorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<BoardMsg>,
        args: BoardActorArgs,
    ) -> Result<BoardActorState, ActorProcessingErr> {
        ractor::pg::join_scoped(args.scope, BOARD_GROUP.to_string(), vec![myself.get_cell()]);
        Ok(BoardActorState {
            board: args.board,
            stopping: watch::channel(false).0,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<BoardMsg>,
        state: &mut BoardActorState,
    ) -> Result<(), ActorProcessingErr> {
        state.stopping.send_replace(true);
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<BoardMsg>,
        msg: BoardMsg,
        state: &mut BoardActorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            BoardMsg::Call(frame, reply) => {
                let env = match decode_frame::<BoardRequest>(&frame)
                    .and_then(|env| check_protocol(&env, VERSION).map(|()| env))
                {
                    Ok(env) => env,
                    Err(e) => {
                        tracing::warn!(error = %e, "board actor: refused a request");
                        let _ = reply.send(encode_reply::<()>("a board request", &Err(e)));
                        return Ok(());
                    }
                };
                let board = state.board.clone();
                let stopping = state.stopping.subscribe();
                let mut answer = Box::pin(async move {
                    let frame = dispatch(&board, env.request, stopping).await;
                    let _ = reply.send(frame);
                });
                // Poll once here: a read answers without a task spawn, and a durable operation
                // reaches the committer's queue before the spawn's scheduling delay. What is
                // left runs in its own task (polled again at once, under the task's waker).
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                if answer.as_mut().poll(&mut cx).is_pending() {
                    tokio::spawn(answer);
                }
            }
        }
        Ok(())
    }
}

/// Answer one request, typed by its reply: `answer::<req::X>(result)`.
fn answer<C: Call>(what: &str, r: Result<C::Reply, ApiError>) -> ReplyFrame {
    encode_reply(what, &r)
}

/// Run one board request and encode its reply.
pub async fn dispatch(
    board: &DurableBoard,
    request: BoardRequest,
    stopping: watch::Receiver<bool>,
) -> ReplyFrame {
    let what = request.name();
    use BoardRequest as R;
    match request {
        R::Add(r) => answer::<req::Add>(what, board.add(r.item).await.map_err(api_error)),
        R::ClaimNext(r) => answer::<req::ClaimNext>(
            what,
            board
                .claim_next(r.work_type, &r.holder, r.lease_ms)
                .await
                .map_err(api_error),
        ),
        R::Claim(r) => answer::<req::Claim>(
            what,
            board
                .claim(&r.id, &r.holder, r.lease_ms)
                .await
                .map_err(api_error),
        ),
        R::Start(r) => {
            answer::<req::Start>(what, board.start(&r.id, r.token).await.map_err(api_error))
        }
        R::Heartbeat(r) => answer::<req::Heartbeat>(
            what,
            board
                .heartbeat(&r.id, r.token, r.lease_ms)
                .await
                .map_err(api_error),
        ),
        R::Complete(r) => answer::<req::Complete>(
            what,
            board
                .complete(&r.id, r.token, r.result)
                .await
                .map_err(api_error),
        ),
        R::Fail(r) => answer::<req::Fail>(
            what,
            board
                .fail(&r.id, r.token, r.error, r.retry)
                .await
                .map_err(api_error),
        ),
        R::Release(r) => answer::<req::Release>(
            what,
            board
                .release(&r.id, r.token, &r.reason)
                .await
                .map_err(api_error),
        ),
        R::Cancel(r) => answer::<req::Cancel>(what, board.cancel(&r.id).await.map_err(api_error)),
        R::Get(r) => answer::<req::Get>(what, Ok(board.get_now(&r.id))),
        R::List(r) => answer::<req::List>(
            what,
            Ok(Page::fit(
                board.list_now(&list_filter(r.status, r.work_type, r.claimed_by)),
                false,
                REPLY_BUDGET,
            )),
        ),
        R::Counts(_) => answer::<req::Counts>(what, Ok(counts_u64(board.counts_now()))),
        R::WaitReady(r) => answer::<req::WaitReady>(
            what,
            wait_ready(
                board,
                r.work_type.as_ref(),
                Duration::from_millis(r.wait_ms),
                stopping,
            )
            .await,
        ),
        R::CompleteWork(r) => answer::<req::CompleteWork>(
            what,
            board
                .complete_work(&r.id, r.result, r.by)
                .await
                .map_err(api_error),
        ),
        R::FailWork(r) => answer::<req::FailWork>(
            what,
            board
                .fail_work(&r.id, r.error, r.by)
                .await
                .map_err(api_error),
        ),
        R::AwaitSettled(r) => answer::<req::AwaitSettled>(
            what,
            await_settled(board, &r.id, Duration::from_millis(r.wait_ms), stopping).await,
        ),
        R::Remove(r) => answer::<req::Remove>(what, board.remove(&r.id).await.map_err(api_error)),
        R::PutResultPart(r) => answer::<req::PutResultPart>(
            what,
            board
                .put_result_part(&r.id, r.token, r.index, r.text)
                .await
                .map_err(api_error),
        ),
        R::CompleteInParts(r) => answer::<req::CompleteInParts>(
            what,
            board
                .complete_in_parts(&r.id, r.token, r.preview, r.parts, r.bytes)
                .await
                .map_err(api_error),
        ),
        R::ResultPart(r) => answer::<req::ResultPart>(
            what,
            board.result_part(&r.id, r.index).await.map_err(api_error),
        ),
        R::Backup(r) => answer::<req::Backup>(
            what,
            board
                .backup(&r.dir)
                .await
                .map(|c| BackupInfo {
                    items: c.items,
                    parts: c.parts,
                })
                .map_err(api_error),
        ),
    }
}

/// The item as soon as it is settled (done, failed, blocked or cancelled), or as it stands
/// after `wait`; None when there is no such item. Subscribes to the board's settlements first,
/// then reads the durable replica, then waits: a settlement made durable after the read is
/// pushed to the subscription (pushes follow the replica update), so none is missed.
pub async fn await_settled(
    board: &DurableBoard,
    id: &str,
    wait: Duration,
    mut stopping: watch::Receiver<bool>,
) -> Result<Option<WorkItem>, ApiError> {
    let mut settled = board.subscribe_settled();
    let deadline = tokio::time::sleep(wait);
    tokio::pin!(deadline);
    loop {
        let Some(item) = board.get_now(id) else {
            return Ok(None);
        };
        if item.status.is_settled() {
            return Ok(Some(item));
        }
        loop {
            tokio::select! {
                r = settled.recv() => match r {
                    Ok(item) if item.id.as_str() == id => return Ok(Some(item)),
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => {
                        return Err(ApiError::Board(format!(
                            "the board shut down while waiting for work item `{id}` to settle"
                        )))
                    }
                },
                _ = &mut deadline => return Ok(board.get_now(id)),
                _ = stopping.wait_for(|s| *s) => {
                    return Err(ApiError::Disconnected(format!(
                        "the board actor stopped while waiting for work item `{id}` to settle \
                         (its node is stopping); find the board again"
                    )))
                }
            }
        }
    }
}

/// The claimable ready items of `work_type` as soon as there is one, or an empty list after
/// `wait`. Subscribes to the board's ready pushes first, then reads the durable replica, then
/// waits: an item made ready after the read is pushed to the subscription (pushes follow the
/// replica update), so no wake-up is missed; after a push (or a lag) it reads again, since
/// another worker may have claimed the item in between. An item still in its retry backoff
/// does not count; the board pushes it again when the backoff passes.
pub async fn wait_ready(
    board: &DurableBoard,
    work_type: Option<&WorkType>,
    wait: Duration,
    mut stopping: watch::Receiver<bool>,
) -> Result<Vec<WorkItem>, ApiError> {
    let mut pushed = board.subscribe_ready();
    let deadline = tokio::time::sleep(wait);
    tokio::pin!(deadline);
    loop {
        let ready = claimable_page(
            board.list_now(&ready_filter(work_type)),
            work_type,
            board.now_ms(),
        );
        if !ready.is_empty() {
            return Ok(ready);
        }
        loop {
            tokio::select! {
                r = pushed.recv() => match r {
                    Ok(item) if claimable(&item, work_type, board.now_ms()) => break,
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => {
                        return Err(ApiError::Board(
                            "the board shut down while waiting for ready items".into(),
                        ))
                    }
                },
                _ = &mut deadline => return Ok(Vec::new()),
                _ = stopping.wait_for(|s| *s) => {
                    return Err(ApiError::Disconnected(
                        "the board actor stopped while waiting for ready items (its node is \
                         stopping); find the board again"
                            .into(),
                    ))
                }
            }
        }
    }
}
