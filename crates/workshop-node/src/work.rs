//! The work board through the Workshop API, with AgentWorkshop's names: `work`, `board`,
//! `work_item`, `claim_work`, `start_work`, `complete_work`, `fail_work`, `cancel_work`,
//! `work_from_result`. Every change is published on the `work` topic (of this node: the one
//! that made it). Every operation goes through the node's board client (`board_link.rs`), so
//! it works the same on the board node and on any other.

use std::collections::BTreeMap;
use std::time::Duration;

use workshop_board::item::{NewItem, SettleBy, Status, WorkItem, WorkType};
use workshop_board::state::ListFilter;
use workshop_proto::board::BackupInfo;
use workshop_types::Topic;

use crate::{ApiError, Workshop};

/// Lease of a claim made by hand from the console (a worker renews its own by heartbeat).
pub const MANUAL_LEASE_MS: u64 = 30 * 60 * 1000;
/// The leases a claim (by hand or by a board worker) may ask for: 1 s to 24 h.
pub const LEASE_BOUNDS_MS: std::ops::RangeInclusive<u64> = 1_000..=24 * 60 * 60 * 1000;

/// `ms` if it is a lease a claim may ask for; else an error naming `option` and the bounds.
pub fn check_lease(option: &str, ms: u64) -> Result<u64, ApiError> {
    if LEASE_BOUNDS_MS.contains(&ms) {
        Ok(ms)
    } else {
        Err(ApiError::Node(format!(
            "{option} {ms} is out of bounds: a lease lasts from {} ms (1 s) to {} ms (24 h)",
            LEASE_BOUNDS_MS.start(),
            LEASE_BOUNDS_MS.end()
        )))
    }
}

/// The longest one `AwaitSettled` long poll of `await_work` waits; a longer wait is several.
pub const AWAIT_POLL: Duration = Duration::from_secs(30);

pub use workshop_proto::api::WorkOptions;

pub fn parse_type(t: &str) -> Result<WorkType, ApiError> {
    t.trim_start_matches(':').parse().map_err(ApiError::Board)
}

pub fn parse_status(s: &str) -> Result<Status, ApiError> {
    s.trim_start_matches(':').parse().map_err(ApiError::Board)
}

impl Workshop {
    fn work_event(&self, kind: &str, id: &str, line: String) {
        self.emit_about(Topic::Work, kind, id, line);
    }

    /// Add a work item: `ready` when it has no unmet dependencies, else `new`.
    pub async fn work(&self, id: &str, title: &str, o: WorkOptions) -> Result<WorkItem, ApiError> {
        let mut item = NewItem::new(id.trim_start_matches(':'), title)
            .spec(o.spec.unwrap_or_default())
            .priority(o.priority.unwrap_or(3))
            .depends_on(
                o.depends_on
                    .iter()
                    .map(|d| d.trim_start_matches(':').to_string()),
            );
        if let Some(t) = &o.work_type {
            item = item.work_type(parse_type(t)?);
        }
        if let Some(m) = o.max_attempts {
            item = item.max_attempts(m);
        }
        for (k, v) in o.metadata {
            item = item.meta(k, v);
        }
        let added = self.board_client()?.add(item).await?;
        self.work_event(
            "added",
            added.id.as_str(),
            format!(
                "[work] {} added ({}, {})",
                added.id, added.work_type, added.status
            ),
        );
        Ok(added)
    }

    /// The board, filtered, sorted by priority then age.
    pub async fn board(
        &self,
        status: Option<&str>,
        work_type: Option<&str>,
    ) -> Result<Vec<WorkItem>, ApiError> {
        let filter = ListFilter {
            status: status.map(parse_status).transpose()?,
            work_type: work_type.map(parse_type).transpose()?,
            claimed_by: None,
        };
        Ok(self.board_client()?.list(filter).await?.items)
    }

    pub async fn work_item(&self, id: &str) -> Result<Option<WorkItem>, ApiError> {
        self.board_client()?.get(id.trim_start_matches(':')).await
    }

    /// The whole result of a work item: its `result`, or, when it was completed in parts (a
    /// result too large for one frame), its parts put together. None when it has no result.
    pub async fn work_result(&self, id: &str) -> Result<Option<String>, ApiError> {
        self.board_client()?
            .full_result(id.trim_start_matches(':'))
            .await
    }

    /// Piece `index` of the result of a work item completed in parts; None past its last
    /// part (or when its result is not in parts).
    pub async fn work_result_part(&self, id: &str, index: u32) -> Result<Option<String>, ApiError> {
        self.board_client()?
            .result_part(id.trim_start_matches(':'), index)
            .await
    }

    /// Backs up the cluster's board into `dir` on the board node's filesystem (absolute; new
    /// or empty).
    pub async fn board_backup(&self, dir: &str) -> Result<BackupInfo, ApiError> {
        if !std::path::Path::new(dir).is_absolute() {
            return Err(ApiError::BadRequest(format!(
                "the backup directory `{dir}` is not an absolute path; name it absolutely (it \
                 is a path on the board node's filesystem)"
            )));
        }
        self.board_client()?.backup(dir).await
    }

    pub async fn board_counts(&self) -> Result<BTreeMap<Status, u64>, ApiError> {
        self.board_client()?.counts().await
    }

    async fn existing(&self, id: &str) -> Result<WorkItem, ApiError> {
        self.work_item(id)
            .await?
            .ok_or_else(|| ApiError::NoSuchItem(id.trim_start_matches(':').to_string()))
    }

    pub async fn claim_work(&self, id: &str, agent: &str) -> Result<WorkItem, ApiError> {
        self.claim_work_for(id, agent, None).await
    }

    /// Claim by hand under a lease of `lease_ms` ([`MANUAL_LEASE_MS`] when None), within
    /// [`LEASE_BOUNDS_MS`].
    pub async fn claim_work_for(
        &self,
        id: &str,
        agent: &str,
        lease_ms: Option<u64>,
    ) -> Result<WorkItem, ApiError> {
        let lease = check_lease("lease_ms", lease_ms.unwrap_or(MANUAL_LEASE_MS))?;
        let id = id.trim_start_matches(':');
        let item = self
            .board_client()?
            .claim(id, agent.trim_start_matches(':'), lease)
            .await?;
        self.work_event("claimed", id, format!("[work] {id} claimed by {agent}"));
        Ok(item)
    }

    /// Console form: uses the item's current lease token.
    pub async fn start_work(&self, id: &str) -> Result<WorkItem, ApiError> {
        let item = self.existing(id).await?;
        let token = item.token().ok_or_else(|| {
            ApiError::Board(format!(
                "{} is {}, not claimed: claim_work(\"{}\", agent) first",
                item.id, item.status, item.id
            ))
        })?;
        let item = self.board_client()?.start(item.id.as_str(), token).await?;
        self.work_event(
            "started",
            item.id.as_str(),
            format!("[work] {} started", item.id),
        );
        Ok(item)
    }

    /// Settle by hand as done: `by` is the lease token the claim answered or force; a forced
    /// settle is logged with the holder it took the item from (a board worker holding it loses
    /// it at its next heartbeat and interrupts its turn).
    pub async fn complete_work(
        &self,
        id: &str,
        result: Option<String>,
        by: Option<SettleBy>,
    ) -> Result<WorkItem, ApiError> {
        let id = id.trim_start_matches(':');
        let item = self
            .board_client()?
            .complete_work(id, result.unwrap_or_default(), by)
            .await?;
        self.work_event("completed", id, format!("[work] {id} completed"));
        self.forced_event(&item, by, "completed");
        self.after_item_settled(&item).await;
        Ok(item)
    }

    /// Settle by hand as failed (no retry), as [`Workshop::complete_work`].
    pub async fn fail_work(
        &self,
        id: &str,
        error: Option<String>,
        by: Option<SettleBy>,
    ) -> Result<WorkItem, ApiError> {
        let id = id.trim_start_matches(':');
        let error = error.unwrap_or_else(|| "failed by hand".into());
        let item = self
            .board_client()?
            .fail_work(id, error.clone(), by)
            .await?;
        self.work_event("failed", id, format!("[work] {id} failed: {error}"));
        self.forced_event(&item, by, "failed");
        self.after_item_settled(&item).await;
        Ok(item)
    }

    /// A forced settle is logged with the holder it took the item from (the settled item still
    /// names its last claimant).
    fn forced_event(&self, item: &WorkItem, by: Option<SettleBy>, how: &str) {
        if by != Some(SettleBy::Force) {
            return;
        }
        let id = item.id.as_str();
        if let Some(holder) = &item.claimed_by {
            tracing::warn!(item = id, holder = %holder, "{how} by force");
            self.work_event(
                "forced",
                id,
                format!(
                    "[work] {id} {how} by force, taken from {holder} (a board worker holding it \
                     loses it at its next heartbeat)"
                ),
            );
        }
    }

    pub async fn cancel_work(&self, id: &str) -> Result<WorkItem, ApiError> {
        let id = id.trim_start_matches(':');
        let item = self.board_client()?.cancel(id).await?;
        self.work_event("cancelled", id, format!("[work] {id} cancelled"));
        self.after_item_settled(&item).await;
        Ok(item)
    }

    /// Wait until an item is settled (done, failed, blocked or cancelled), wherever it runs:
    /// long polls of the board (`AwaitSettled`), at most [`AWAIT_POLL`] each.
    pub async fn await_work(
        &self,
        id: &str,
        timeout: Option<Duration>,
    ) -> Result<WorkItem, ApiError> {
        let id = id.trim_start_matches(':');
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let still_open = |t: Duration| {
            ApiError::Board(format!(
                "{id} still open after {} ms; await_work(\"{id}\") again to keep waiting",
                t.as_millis()
            ))
        };
        loop {
            let wait = match deadline {
                None => AWAIT_POLL,
                Some(d) => d
                    .saturating_duration_since(tokio::time::Instant::now())
                    .min(AWAIT_POLL),
            };
            let board = self.board_client()?;
            let poll = board.await_settled(id, wait);
            let item = match deadline {
                None => poll.await?,
                // The board answers after `wait` at the latest; this bounds one that does not.
                Some(d) => tokio::time::timeout_at(d + Duration::from_secs(1), poll)
                    .await
                    .map_err(|_| still_open(timeout.unwrap_or_default()))??,
            }
            .ok_or_else(|| ApiError::NoSuchItem(id.to_string()))?;
            if item.status.is_settled() {
                return Ok(item);
            }
            if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                return Err(still_open(timeout.unwrap_or_default()));
            }
        }
    }

    /// A work item whose spec is the agent's last result.
    pub async fn work_from_result(
        &self,
        agent: &str,
        id: &str,
        mut o: WorkOptions,
    ) -> Result<WorkItem, ApiError> {
        let name = workshop_types::AgentName::new(agent)?;
        let result = self
            .result(name.as_str())
            .await?
            .ok_or_else(|| ApiError::NoResult(name.clone()))?;
        o.spec = Some(result.text);
        let title = o
            .title
            .take()
            .unwrap_or_else(|| format!("From {name} result"));
        self.work(id, &title, o).await
    }
}
