//! [`BoardClient`]: what a board worker holds. Typed async calls with the operations' names over
//! an `ActorRef<BoardMsg>`: the board actor in this process, or its stand-in for a board actor
//! on another node (found through pg, see `workshop_node::Client::board_client`). Both paths
//! encode requests and replies the same way. Every call has a timeout; a board that does not
//! answer is [`ApiError::Timeout`], one that is gone is [`ApiError::Disconnected`].

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::ActorRef;
use workshop_proto::api::{Call, Page};
use workshop_proto::board::{req, BackupInfo, BoardMsg, BoardRequest};
use workshop_proto::node::{decode_reply, encode_frame, ReplyFrame, RequestFrame};
use workshop_proto::ApiError;

use crate::item::{NewItem, SettleBy, Status, WorkItem, WorkType};
use crate::state::ListFilter;

/// How long a board call may take (a durable write waits for its group's sync).
pub const BOARD_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`BoardClient::backup`] waits for the copy (it reads and writes the whole board).
pub const BACKUP_TIMEOUT: Duration = Duration::from_secs(3600);
/// Added to a `wait_ready`'s own wait for the reply to come back.
const SLACK: Duration = Duration::from_secs(10);

const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Clone)]
pub struct BoardClient {
    board: ActorRef<BoardMsg>,
    target: Arc<str>,
    call_timeout: Duration,
    /// Keeps what the actor ref depends on (a remote connection) alive with the client.
    _keep: Option<Arc<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for BoardClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BoardClient({})", self.target)
    }
}

impl BoardClient {
    /// A client of the board actor `board`; `target` names it in errors ("the board at ...").
    pub fn new(board: ActorRef<BoardMsg>, target: impl Into<String>) -> Self {
        Self {
            board,
            target: Arc::from(target.into()),
            call_timeout: BOARD_CALL_TIMEOUT,
            _keep: None,
        }
    }

    /// A client of the board actor in this process.
    pub fn local(board: ActorRef<BoardMsg>) -> Self {
        Self::new(board, "the board in this process")
    }

    /// Keep `keep` (a remote connection) alive as long as any clone of this client lives.
    pub fn keeping(mut self, keep: Arc<dyn Any + Send + Sync>) -> Self {
        self._keep = Some(keep);
        self
    }

    /// Change the timeout of calls that do not wait (`wait_ready` uses its own wait).
    pub fn with_timeout(mut self, call: Duration) -> Self {
        self.call_timeout = call;
        self
    }

    /// The board actor (or its stand-in) this client calls.
    pub fn actor(&self) -> &ActorRef<BoardMsg> {
        &self.board
    }

    /// Send one request and decode its typed reply.
    pub async fn call<C: Call<Set = BoardRequest>>(
        &self,
        request: C,
    ) -> Result<C::Reply, ApiError> {
        self.call_within(request, self.call_timeout).await
    }

    async fn call_within<C: Call<Set = BoardRequest>>(
        &self,
        request: C,
        timeout: Duration,
    ) -> Result<C::Reply, ApiError> {
        let request: BoardRequest = request.into_set();
        let name = request.name();
        let frame = encode_frame(request, VERSION)?;
        match self
            .board
            .call(|port| BoardMsg::Call(frame, port), Some(timeout))
            .await
        {
            Ok(CallResult::Success(reply)) => decode_reply::<C>(&reply),
            Ok(CallResult::Timeout) => Err(ApiError::Timeout {
                what: format!("{name} to {}", self.target),
                ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            }),
            Ok(CallResult::SenderError) => Err(ApiError::Disconnected(format!(
                "{} dropped the {name} call (it stopped, or the connection broke); find the board again",
                self.target
            ))),
            Err(e) => Err(ApiError::Disconnected(format!(
                "{} is not reachable ({e}); is its node still running?",
                self.target
            ))),
        }
    }

    /// Send an already encoded frame (tests of malformed and foreign requests).
    #[doc(hidden)]
    pub async fn call_raw(&self, frame: RequestFrame) -> Result<ReplyFrame, ApiError> {
        match self
            .board
            .call(|port| BoardMsg::Call(frame, port), Some(self.call_timeout))
            .await
        {
            Ok(CallResult::Success(reply)) => Ok(reply),
            Ok(_) => Err(ApiError::Disconnected("no reply".into())),
            Err(e) => Err(ApiError::Disconnected(e.to_string())),
        }
    }

    /// Add an item: ready when it has no unmet dependencies.
    pub async fn add(&self, item: NewItem) -> Result<WorkItem, ApiError> {
        self.call(req::Add { item }).await
    }

    /// Claim the highest-priority, oldest claimable item (of `work_type`, if given).
    pub async fn claim_next(
        &self,
        work_type: Option<WorkType>,
        holder: &str,
        lease_ms: u64,
    ) -> Result<Option<WorkItem>, ApiError> {
        self.call(req::ClaimNext {
            work_type,
            holder: holder.into(),
            lease_ms,
        })
        .await
    }

    /// Claim one ready item by id.
    pub async fn claim(&self, id: &str, holder: &str, lease_ms: u64) -> Result<WorkItem, ApiError> {
        self.call(req::Claim {
            id: id.into(),
            holder: holder.into(),
            lease_ms,
        })
        .await
    }

    /// claimed -> in_progress.
    pub async fn start(&self, id: &str, token: u64) -> Result<WorkItem, ApiError> {
        self.call(req::Start {
            id: id.into(),
            token,
        })
        .await
    }

    /// Renew the lease to now + `lease_ms`; [`ApiError::StaleToken`] means the item is lost.
    pub async fn heartbeat(
        &self,
        id: &str,
        token: u64,
        lease_ms: u64,
    ) -> Result<WorkItem, ApiError> {
        self.call(req::Heartbeat {
            id: id.into(),
            token,
            lease_ms,
        })
        .await
    }

    /// Settle as done (the same call again answers the item and changes nothing).
    pub async fn complete(
        &self,
        id: &str,
        token: u64,
        result: impl Into<String>,
    ) -> Result<WorkItem, ApiError> {
        self.call(req::Complete {
            id: id.into(),
            token,
            result: result.into(),
        })
        .await
    }

    /// Settle as failed; with `retry` and attempts left it comes back after a backoff.
    pub async fn fail(
        &self,
        id: &str,
        token: u64,
        error: impl Into<String>,
        retry: bool,
    ) -> Result<WorkItem, ApiError> {
        self.call(req::Fail {
            id: id.into(),
            token,
            error: error.into(),
            retry,
        })
        .await
    }

    /// Hand a leased item back unfinished: ready again at once, no attempt counted.
    pub async fn release(
        &self,
        id: &str,
        token: u64,
        reason: impl Into<String>,
    ) -> Result<WorkItem, ApiError> {
        self.call(req::Release {
            id: id.into(),
            token,
            reason: reason.into(),
        })
        .await
    }

    /// Settle a claimed or in-progress item as done by hand: with its lease token, or by
    /// force (the console's `complete_work`).
    pub async fn complete_work(
        &self,
        id: &str,
        result: impl Into<String>,
        by: Option<SettleBy>,
    ) -> Result<WorkItem, ApiError> {
        self.call(req::CompleteWork {
            id: id.into(),
            result: result.into(),
            by,
        })
        .await
    }

    /// Settle a claimed or in-progress item as failed by hand, no retry: with its lease token,
    /// or by force (the console's `fail_work`).
    pub async fn fail_work(
        &self,
        id: &str,
        error: impl Into<String>,
        by: Option<SettleBy>,
    ) -> Result<WorkItem, ApiError> {
        self.call(req::FailWork {
            id: id.into(),
            error: error.into(),
            by,
        })
        .await
    }

    /// Remove an item nothing depends on.
    pub async fn remove(&self, id: &str) -> Result<WorkItem, ApiError> {
        self.call(req::Remove { id: id.into() }).await
    }

    /// The item as soon as it is settled (done, failed, blocked or cancelled), or as it stands
    /// after `wait`; None when there is no such item. A long poll, like `wait_ready`.
    pub async fn await_settled(
        &self,
        id: &str,
        wait: Duration,
    ) -> Result<Option<WorkItem>, ApiError> {
        let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        self.call_within(
            req::AwaitSettled {
                id: id.into(),
                wait_ms,
            },
            wait.saturating_add(SLACK),
        )
        .await
    }

    /// Store piece `index` of the lease holder's result (at most `RESULT_PART_BYTES` of text),
    /// for a result too large for one frame; the same index again replaces it.
    pub async fn put_result_part(
        &self,
        id: &str,
        token: u64,
        index: u32,
        text: impl Into<String>,
    ) -> Result<(), ApiError> {
        self.call(req::PutResultPart {
            id: id.into(),
            token,
            index,
            text: text.into(),
        })
        .await
    }

    /// Settle as done with the result stored as parts `0..parts` (`bytes` in all) by this
    /// token; the item keeps `preview` as its `result`. Idempotent for the settling token.
    pub async fn complete_in_parts(
        &self,
        id: &str,
        token: u64,
        preview: impl Into<String>,
        parts: u32,
        bytes: u64,
    ) -> Result<WorkItem, ApiError> {
        self.call(req::CompleteInParts {
            id: id.into(),
            token,
            preview: preview.into(),
            parts,
            bytes,
        })
        .await
    }

    /// Piece `index` of the result of an item completed in parts; None past its last part.
    pub async fn result_part(&self, id: &str, index: u32) -> Result<Option<String>, ApiError> {
        self.call(req::ResultPart {
            id: id.into(),
            index,
        })
        .await
    }

    /// The item's whole result: its `result`, or its parts put together (fetched one request
    /// at a time, so every frame stays small) when it was completed in parts. None when it has
    /// no result; [`ApiError::NoSuchItem`] when there is no such item.
    pub async fn full_result(&self, id: &str) -> Result<Option<String>, ApiError> {
        let item = self
            .get(id)
            .await?
            .ok_or_else(|| ApiError::NoSuchItem(id.to_string()))?;
        crate::parts::assemble(item, |index| self.result_part(id, index)).await
    }

    /// Back up the board into a new directory `dir` (absolute, on the board node's
    /// filesystem; it must not exist or be empty). Waits up to [`BACKUP_TIMEOUT`].
    pub async fn backup(&self, dir: &str) -> Result<BackupInfo, ApiError> {
        self.call_within(req::Backup { dir: dir.into() }, BACKUP_TIMEOUT)
            .await
    }

    pub async fn cancel(&self, id: &str) -> Result<WorkItem, ApiError> {
        self.call(req::Cancel { id: id.into() }).await
    }

    pub async fn get(&self, id: &str) -> Result<Option<WorkItem>, ApiError> {
        self.call(req::Get { id: id.into() }).await
    }

    /// Items matching `filter`, sorted by priority then age, cut to fit one frame.
    pub async fn list(&self, filter: ListFilter) -> Result<Page<WorkItem>, ApiError> {
        self.call(req::List {
            status: filter.status,
            work_type: filter.work_type,
            claimed_by: filter.claimed_by,
        })
        .await
    }

    pub async fn counts(&self) -> Result<BTreeMap<Status, u64>, ApiError> {
        self.call(req::Counts {}).await
    }

    /// The claimable ready items (of `work_type`, if given) as soon as there is one, or an
    /// empty list after `wait`: a long poll, so a remote worker is woken by the board instead
    /// of polling it.
    pub async fn wait_ready(
        &self,
        work_type: Option<WorkType>,
        wait: Duration,
    ) -> Result<Vec<WorkItem>, ApiError> {
        let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        self.call_within(
            req::WaitReady { work_type, wait_ms },
            wait.saturating_add(SLACK),
        )
        .await
    }
}
