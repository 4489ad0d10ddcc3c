//! The node actor: answers every [`Request`] of `workshop-proto` by calling the node's API.
//! It is what a `Client` talks to, in-process or over ractor_cluster; it joins the pg group
//! `workshop.node` in the cluster's scope so remote clients find it.
//!
//! The actor never awaits an operation itself: each call runs in its own task and replies from
//! there, so a long `ask` never holds up a `status`.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::Notify;
use workshop_proto::api::{req, Call, NodeHello, Page, Request, PROTOCOL_VERSION};
use workshop_proto::node::{decode_request, encode_reply, NodeMsg, ReplyFrame, NODE_GROUP};
use workshop_proto::ApiError;

use crate::{WorkflowRun, Workshop};

/// Who this node is; `addr` is filled in once its cluster port listens.
pub struct Identity {
    pub name: String,
    pub pid: u32,
    pub data_dir: Option<String>,
    pub addr: RwLock<Option<String>>,
    pub started_at_ms: u64,
    /// Notified by a `StopNode` request; the process that runs the node stops it.
    pub stop: Notify,
}

impl Identity {
    pub fn new(name: String, data_dir: Option<String>) -> Arc<Self> {
        Arc::new(Self {
            name,
            pid: std::process::id(),
            data_dir,
            addr: RwLock::new(None),
            started_at_ms: workshop_types::now_ms(),
            stop: Notify::new(),
        })
    }
}

pub struct NodeActor;

pub struct NodeActorArgs {
    pub identity: Arc<Identity>,
    /// Where requests are answered in a cluster (see `cluster/route.rs`).
    pub router: Arc<crate::cluster::route::Ctx>,
    /// The pg scope of the cluster (tests use their own).
    pub scope: String,
}

pub struct NodeActorState {
    identity: Arc<Identity>,
    router: Arc<crate::cluster::route::Ctx>,
    /// Requests in flight; aborted when the node actor stops (a stopping node answers nothing
    /// more, and no task may keep the node's state alive after it).
    tasks: tokio::task::JoinSet<()>,
}

impl Actor for NodeActor {
    type Msg = NodeMsg;
    type State = NodeActorState;
    type Arguments = NodeActorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<NodeMsg>,
        args: NodeActorArgs,
    ) -> Result<NodeActorState, ActorProcessingErr> {
        ractor::pg::join_scoped(args.scope, NODE_GROUP.to_string(), vec![myself.get_cell()]);
        Ok(NodeActorState {
            identity: args.identity,
            router: args.router,
            tasks: tokio::task::JoinSet::new(),
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<NodeMsg>,
        state: &mut NodeActorState,
    ) -> Result<(), ActorProcessingErr> {
        state.tasks.abort_all();
        while state.tasks.join_next().await.is_some() {}
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<NodeMsg>,
        msg: NodeMsg,
        state: &mut NodeActorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            NodeMsg::Call(frame, reply) => {
                let env = match decode_request(&frame) {
                    Ok(env) => env,
                    Err(e) => {
                        tracing::warn!(error = %e, "undecodable request");
                        let _ = reply.send(encode_reply::<()>("a request", &Err(e)));
                        return Ok(());
                    }
                };
                if env.protocol != PROTOCOL_VERSION {
                    let e = ApiError::Version {
                        client: env.client_version.clone(),
                        client_protocol: env.protocol,
                        node: env!("CARGO_PKG_VERSION").to_string(),
                        node_protocol: PROTOCOL_VERSION,
                    };
                    let _ = reply.send(encode_reply::<()>("a request", &Err(e)));
                    return Ok(());
                }
                // Reap the tasks that have ended (their results are ()).
                while state.tasks.try_join_next().is_some() {}
                let router = state.router.clone();
                let id = state.identity.clone();
                let stop = matches!(env.request, Request::StopNode(_));
                state.tasks.spawn(async move {
                    let frame = router.route(env.request).await;
                    let _ = reply.send(frame);
                    if stop {
                        // After the reply: the caller learns the node accepted the stop.
                        id.stop.notify_one();
                    }
                });
            }
        }
        Ok(())
    }
}

/// Who the node is right now.
pub async fn hello(ws: &Workshop, id: &Identity) -> NodeHello {
    let workers = ws.worker_count() as u64;
    let addr = id.addr.read().clone();
    NodeHello {
        name: id.name.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        protocol: PROTOCOL_VERSION,
        pid: id.pid,
        data_dir: id.data_dir.clone(),
        addr,
        started_at_ms: id.started_at_ms,
        agents: ws.agents().len() as u64,
        workers,
    }
}

fn ms(t: Option<u64>) -> Option<Duration> {
    t.map(Duration::from_millis)
}

/// Answer one request, typed by its reply: `answer::<req::X>(result)`.
fn answer<C: Call>(what: &str, r: Result<C::Reply, ApiError>) -> ReplyFrame {
    encode_reply(what, &r)
}

fn json_text(v: serde_json::Value) -> String {
    v.to_string()
}

fn parse_json(key: &str, text: &str) -> Result<serde_json::Value, ApiError> {
    serde_json::from_str(text)
        .map_err(|e| ApiError::BadRequest(format!("the value for {key:?} is not JSON: {e}")))
}

/// Keep the items of a list (its last ones with `keep_last`) that fit in half a frame.
fn page<T: serde::Serialize>(items: Vec<T>, keep_last: bool) -> Page<T> {
    Page::fit(items, keep_last, workshop_proto::node::MAX_FRAME_BYTES / 2)
}

/// Run one request against the node's API and encode its reply.
pub async fn dispatch(ws: &Workshop, id: &Identity, request: Request) -> ReplyFrame {
    let what = request.name();
    use Request as R;
    match request {
        R::Hello(_) | R::NodeInfo(_) => answer::<req::Hello>(what, Ok(hello(ws, id).await)),
        R::Configure(r) => answer::<req::Configure>(
            what,
            ws.configure(r.context, r.options, r.max_cost_usd).await,
        ),
        R::Config(_) => answer::<req::Config>(what, Ok(ws.config())),
        R::DefineProfile(r) => {
            answer::<req::DefineProfile>(what, ws.profile(&r.name, r.role, r.options).await)
        }
        R::Profiles(_) => answer::<req::Profiles>(what, Ok(ws.profiles())),
        R::CreateAgent(r) => {
            answer::<req::CreateAgent>(what, ws.agent(&r.name, r.role, r.options).await)
        }
        R::FromProfile(r) => answer::<req::FromProfile>(
            what,
            ws.from_profile(&r.profile, &r.name, r.overrides).await,
        ),
        R::Agents(_) => answer::<req::Agents>(what, Ok(ws.agents())),
        R::Ask(r) => answer::<req::Ask>(what, ws.ask_from(&r.name, &r.prompt, &r.origin).await),
        R::Cast(r) => answer::<req::Cast>(what, ws.cast_from(&r.name, &r.prompt, &r.origin).await),
        R::Poll(r) => answer::<req::Poll>(what, ws.poll(&r.reference).await),
        R::AwaitAgent(r) => {
            answer::<req::AwaitAgent>(what, ws.await_agent(&r.name, ms(r.timeout_ms)).await)
        }
        R::AwaitAll(r) => answer::<req::AwaitAll>(what, Ok(ws.await_all(ms(r.timeout_ms)).await)),
        R::Pipe(r) => {
            answer::<req::Pipe>(what, ws.pipe(&r.from, &r.to, r.message.as_deref()).await)
        }
        R::Fan(r) => answer::<req::Fan>(what, Ok(ws.fan(&r.message, &r.agents).await)),
        R::Interrupt(r) => answer::<req::Interrupt>(what, ws.interrupt(&r.name)),
        R::Halt(r) => answer::<req::Halt>(what, ws.halt(&r.name)),
        R::Resume(r) => answer::<req::Resume>(what, ws.resume(&r.name)),
        R::Notify(r) => answer::<req::Notify>(what, ws.notify(&r.name, &r.event)),
        R::Reset(r) => answer::<req::Reset>(what, ws.reset(&r.name).await),
        R::Dismiss(r) => answer::<req::Dismiss>(what, ws.dismiss(&r.name).await),
        R::ResetAll(_) => {
            ws.reset_all().await;
            answer::<req::ResetAll>(what, Ok(()))
        }
        R::Status(_) => answer::<req::Status>(what, Ok(ws.status())),
        R::Info(r) => answer::<req::Info>(what, ws.info(&r.name).await),
        R::LastResult(r) => answer::<req::LastResult>(what, ws.result(&r.name).await),
        R::History(r) => answer::<req::History>(
            what,
            ws.history(&r.name, r.last.map(|n| n as usize))
                .await
                .map(|t| page(t, true)),
        ),
        R::Cost(r) => answer::<req::Cost>(what, ws.cost(&r.name)),
        R::Costs(_) => answer::<req::Costs>(what, Ok(ws.costs())),
        R::TotalCost(_) => answer::<req::TotalCost>(what, Ok(ws.total_cost())),
        R::Put(r) => {
            let put = async {
                let v = parse_json(&r.key, &r.json)?;
                ws.put(&r.key, v).await
            };
            answer::<req::Put>(what, put.await)
        }
        R::Get(r) => answer::<req::Get>(what, ws.get(&r.key).map(|v| v.map(json_text))),
        R::StoreAll(_) => answer::<req::StoreAll>(
            what,
            ws.store_all().map(|all| {
                page(
                    all.into_iter().map(|(k, v)| (k, json_text(v))).collect(),
                    false,
                )
            }),
        ),
        R::StoreDelete(r) => answer::<req::StoreDelete>(what, ws.store_delete(&r.key).await),
        R::Every(r) => {
            answer::<req::Every>(what, ws.every(&r.agent, &r.prompt, r.interval_ms).await)
        }
        R::CancelSchedule(r) => answer::<req::CancelSchedule>(what, ws.cancel(&r.agent).await),
        R::Schedules(_) => answer::<req::Schedules>(what, ws.schedules().await),
        R::Budget(_) => answer::<req::Budget>(what, Ok(ws.budget())),
        R::AgentBudget(r) => answer::<req::AgentBudget>(what, ws.agent_budget(&r.name)),
        R::ResetBudget(_) => answer::<req::ResetBudget>(what, ws.reset_budget().await),
        R::Events(r) => answer::<req::Events>(
            what,
            ws.events(r.last as usize, r.topic)
                .await
                .map(|events| page(events, true).items),
        ),
        R::EventsAfter(r) => answer::<req::EventsAfter>(
            what,
            ws.events_after(r.after_seq, r.topic, Duration::from_millis(r.wait_ms))
                .await,
        ),
        R::ClearEvents(_) => {
            ws.clear_events();
            answer::<req::ClearEvents>(what, Ok(()))
        }
        R::Emit(r) => {
            ws.emit(r.topic, r.line);
            answer::<req::Emit>(what, Ok(()))
        }
        R::AddWork(r) => answer::<req::AddWork>(what, ws.work(&r.id, &r.title, r.options).await),
        R::Board(r) => answer::<req::Board>(
            what,
            ws.board(r.status.map(|s| s.as_str()), r.work_type.as_deref())
                .await
                .map(|items| page(items, false)),
        ),
        R::GetWork(r) => answer::<req::GetWork>(what, ws.work_item(&r.id).await),
        R::BoardCounts(_) => answer::<req::BoardCounts>(what, ws.board_counts().await),
        R::ClaimWork(r) => {
            answer::<req::ClaimWork>(what, ws.claim_work_for(&r.id, &r.agent, r.lease_ms).await)
        }
        R::StartWork(r) => answer::<req::StartWork>(what, ws.start_work(&r.id).await),
        R::CompleteWork(r) => {
            answer::<req::CompleteWork>(what, ws.complete_work(&r.id, r.result, r.by).await)
        }
        R::FailWork(r) => answer::<req::FailWork>(what, ws.fail_work(&r.id, r.error, r.by).await),
        R::CancelWork(r) => answer::<req::CancelWork>(what, ws.cancel_work(&r.id).await),
        R::AwaitWork(r) => {
            answer::<req::AwaitWork>(what, ws.await_work(&r.id, ms(r.timeout_ms)).await)
        }
        R::WorkFromResult(r) => answer::<req::WorkFromResult>(
            what,
            ws.work_from_result(&r.agent, &r.id, r.options).await,
        ),
        R::BoardWorker(r) => answer::<req::BoardWorker>(
            what,
            ws.board_worker(&r.name, &r.work_type, r.options).await,
        ),
        R::Workers(_) => answer::<req::Workers>(what, ws.workers().await),
        R::DefineWorkflow(r) => answer::<req::DefineWorkflow>(what, ws.workflow(r.workflow).await),
        R::Workflows(_) => answer::<req::Workflows>(what, Ok(ws.workflows())),
        R::RunWorkflow(r) => answer::<req::RunWorkflow>(what, ws.run_workflow(&r.name).await),
        R::WorkflowStatus(r) => answer::<req::WorkflowStatus>(
            what,
            ws.workflow_status(&r.name)
                .await
                .map(|(status, stages)| WorkflowRun { status, stages }),
        ),
        R::AwaitWorkflow(r) => {
            answer::<req::AwaitWorkflow>(what, ws.await_workflow(&r.name, ms(r.timeout_ms)).await)
        }
        R::ResetWorkflow(r) => answer::<req::ResetWorkflow>(what, ws.reset_workflow(&r.name).await),
        R::WorkResultPart(r) => {
            answer::<req::WorkResultPart>(what, ws.work_result_part(&r.id, r.index).await)
        }
        R::BoardBackup(r) => answer::<req::BoardBackup>(what, ws.board_backup(&r.dir).await),
        // The stop is signalled once this reply is sent (see `handle`).
        R::StopNode(_) => answer::<req::StopNode>(what, Ok(())),
        // The cluster's requests are answered by the router (`cluster/route.rs`).
        R::Local(_)
        | R::Nodes(_)
        | R::ClusterStatus(_)
        | R::ClusterEvents(_)
        | R::ClusterEventsAfter(_)
        | R::PlaceAgent(_)
        | R::Leaving(_)
        | R::ClaimName(_)
        | R::ReleaseName(_)
        | R::NameTable(_)
        | R::Spend(_)
        | R::LedgerTotal(_) => answer::<req::Local>(
            what,
            Err(ApiError::Node(format!(
                "{what} is answered by the cluster router, not the node's API"
            ))),
        ),
    }
}
