//! The console's functions: AgentWorkshop's names bound to the `Workshop` API for rhai.
//! Functions that block (ask, await, pipe) run on the node's runtime; in an interactive console
//! Ctrl-C cancels the wait without killing the console (the agent keeps working).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rhai::{Array, Dynamic, Engine, EvalAltResult, Map};
use tokio::runtime::Handle;
use workshop_node::{ApiError, Client};
use workshop_types::numbers;
use workshop_types::{AgentName, AgentOptions, OptionError, Topic, TurnResult};

use super::print;

type R<T> = Result<T, Box<EvalAltResult>>;

/// Every function the console offers, for completion and `help()`.
pub const FUNCTIONS: &[(&str, &str)] = &[
    ("configure", "configure(#{context: \"...\", model: \"sonnet\", max_cost_usd: 5.0, ...}) — global defaults for new agents"),
    ("agent", "agent(name[, role][, #{opts}]) — start or replace an agent"),
    ("agents", "agents() — agent names, sorted"),
    ("profile", "profile(name, role[, #{opts}]) — define a reusable template"),
    ("profiles", "profiles() — list profiles"),
    ("from_profile", "from_profile(profile, name[, #{overrides}]) — create an agent from a profile"),
    ("ask", "ask(name, prompt) — send and wait; prints the result, returns the name"),
    ("cast", "cast(name, prompt) — send in the background; returns a request ref"),
    ("poll", "poll(ref) — pending / completed / failed / not found"),
    ("await", "await(name[, timeout_ms]) — wait for an agent to finish"),
    ("await_all", "await_all([timeout_ms]) — wait for every busy agent"),
    ("pipe", "pipe(from, to[, message]) — wait for from, send its result to to"),
    ("fan", "fan(message, [names]) — cast to each agent"),
    ("interrupt", "interrupt(name) — kill the turn in flight; the queue keeps draining"),
    ("halt", "halt(name) — freeze the agent's queue"),
    ("resume", "resume(name) — thaw the queue"),
    ("notify", "notify(name, event) — deliver an event to the agent's behaviour"),
    ("reset", "reset(name) — fresh session, same config, zero cost"),
    ("dismiss", "dismiss(name) — remove an agent (graceful, then killed after 3 s)"),
    ("reset_all", "reset_all() — dismiss every agent and clear the config"),
    ("status", "status() — the agents table (every node's, in a cluster)"),
    ("nodes", "nodes() — the nodes of the cluster: address, up/down, agents, workers"),
    ("info", "info(name) — details of one agent"),
    ("result", "result(name[, \"full\"]) — last response text, or the full result map"),
    ("history", "history(name[, last]) — the conversation"),
    ("cost", "cost([name]) — itemised costs, or one agent's"),
    ("total_cost", "total_cost() — sum over all agents"),
    ("put", "put(key, value) — put a value in the shared store"),
    ("get", "get(key[, default]) — read the shared store"),
    ("store", "store() — print every entry of the shared store"),
    ("store_keys", "store_keys() — the store's keys"),
    ("store_delete", "store_delete(key) — remove a key"),
    ("every", "every(name, prompt, interval_ms) — run a prompt on a schedule (skipped while busy)"),
    ("schedules", "schedules() — list schedules"),
    ("cancel", "cancel(name) — cancel an agent's schedule"),
    ("budget", "budget([name]) — global or per-agent budget: limit and spent"),
    ("reset_budget", "reset_budget() — clear every limit; spending counts from zero"),
    ("work", "work(id, title[, #{type:, spec:, priority:, depends_on:}]) — add a work item"),
    ("board", "board([#{status:, type:}]) — show the work board"),
    ("work_item", "work_item(id) — one item as a map (says when its result is in parts)"),
    ("work_result", "work_result(id) — an item's whole result, put together from its parts when it was too large for one message"),
    ("claim_work", "claim_work(id, agent[, #{lease: ms}]) — claim a ready item (lease 30 min by default)"),
    ("start_work", "start_work(id) — mark a claimed item in progress"),
    ("complete_work", "complete_work(id[, result[, #{token: N} | #{force: true}]]) — mark done; unblocks dependents (an item this console claimed needs no token)"),
    ("fail_work", "fail_work(id[, error[, #{token: N} | #{force: true}]]) — mark failed; blocks dependents"),
    ("cancel_work", "cancel_work(id) — cancel an item"),
    ("await_work", "await_work(id[, timeout_ms]) — wait until an item is done, failed, blocked or cancelled"),
    ("work_from_result", "work_from_result(agent, id[, #{type:, title:}]) — an item from an agent's last result"),
    ("board_worker", "board_worker(name, type[, #{profile:, interval:, worktree:}]) — an agent that claims and runs items"),
    ("workers", "workers() — board workers and what they do"),
    ("workflow", "workflow(name, [#{stage:, agent:, title:, from:, type:, priority:}, ...]) — define stages"),
    ("run_workflow", "run_workflow(name) — expand a workflow into board items"),
    ("workflow_status", "workflow_status(name) — each stage and its item"),
    ("workflows", "workflows() — defined workflows"),
    ("await_workflow", "await_workflow(name[, timeout_ms]) — wait until the run completes or fails"),
    ("reset_workflow", "reset_workflow(name) — remove a run's items, back to defined"),
    ("events", "events([last][, topic]) — recent events"),
    ("watch", "watch() — print live events"),
    ("unwatch", "unwatch() — stop printing live events"),
    ("clear_events", "clear_events() — empty the event log"),
    ("load", "load([path]) — run a setup file (default .workshop.rhai)"),
    ("help", "help() — this list"),
];

#[derive(Clone)]
pub struct Ctx {
    pub ws: Client,
    pub rt: Handle,
    /// Ctrl-C cancels blocking calls instead of ending the process.
    pub interactive: bool,
    watcher: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
    /// The lease tokens of the claims this console made (`claim_work`): its own
    /// `complete_work`/`fail_work` of those items settle as their holder.
    pub(crate) claims: Arc<Mutex<HashMap<String, u64>>>,
}

impl Ctx {
    pub fn new(ws: Client, rt: Handle, interactive: bool) -> Self {
        Self {
            ws,
            rt,
            interactive,
            watcher: Arc::new(Mutex::new(None)),
            claims: Arc::default(),
        }
    }

    pub(crate) fn block<T>(&self, fut: impl Future<Output = Result<T, ApiError>>) -> R<T> {
        let out = if self.interactive {
            self.rt.block_on(async {
                tokio::select! {
                    r = fut => Some(r),
                    _ = tokio::signal::ctrl_c() => None,
                }
            })
        } else {
            Some(self.rt.block_on(fut))
        };
        match out {
            None => Err(
                "cancelled with Ctrl-C (the agent keeps working; interrupt(name) stops its turn)"
                    .into(),
            ),
            Some(r) => r.map_err(err),
        }
    }

    pub fn stop_watch(&self) {
        if let Some(h) = self.watcher.lock().take() {
            h.abort();
        }
    }
}

fn err(e: ApiError) -> Box<EvalAltResult> {
    e.to_string().into()
}

fn invalid(e: OptionError) -> Box<EvalAltResult> {
    match e {
        OptionError::Invalid(m) => m.into(),
        other => other.to_string().into(),
    }
}

/// A count or duration argument under the numbers rule (`workshop_types::numbers`): a whole
/// number, `min` or more, or refused naming the function and its argument.
pub(crate) fn whole_arg(what: &str, v: i64, min: u64) -> R<u64> {
    numbers::whole(what, v, min, None).map_err(invalid)
}

/// A timeout argument in milliseconds: 0 (look once, do not wait) or more.
pub(crate) fn timeout_arg(what: &str, ms: i64) -> R<Duration> {
    whole_arg(what, ms, 0).map(Duration::from_millis)
}

/// `events(last)`: at least 1.
fn last_arg(n: i64) -> R<usize> {
    let n = whole_arg("events(last): last", n, 1)?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

/// The numbers rule for a map of agent options, before decoding: a negative or fractional
/// count, or a non-finite or negative amount, is refused naming its option (decoding would
/// only say which type it expected).
fn check_numbers(map: &Map) -> R<()> {
    for (name, min, max) in AgentOptions::WHOLE {
        if let Some(v) = map.get(*name) {
            match v.as_int() {
                Ok(i) => {
                    numbers::whole(name, i, *min, *max).map_err(invalid)?;
                }
                Err(t) => {
                    return Err(format!(
                        "{name} must be {}, got {v} ({t})",
                        numbers::whole_range(*min, *max)
                    )
                    .into())
                }
            }
        }
    }
    for name in AgentOptions::AMOUNTS {
        if let Some(v) = map.get(*name) {
            amount_of(name, v)?;
        }
    }
    Ok(())
}

/// An amount given as an integer or a float, under the numbers rule.
fn amount_of(what: &str, v: &Dynamic) -> R<f64> {
    let f = match (v.as_float(), v.as_int()) {
        (Ok(f), _) => f,
        (_, Ok(i)) => i as f64,
        _ => {
            return Err(format!(
                "{what} must be a finite number, 0 or more, got {v} ({})",
                v.type_name()
            )
            .into())
        }
    };
    numbers::amount(what, f).map_err(invalid)
}

/// JSON holds no NaN or infinity: refuse them (anywhere in a value) instead of storing null.
fn finite_value(what: &str, v: &Dynamic) -> R<()> {
    if let Ok(f) = v.as_float() {
        if !f.is_finite() {
            return Err(
                format!("{what} holds {f}, which JSON cannot store; use a finite number").into(),
            );
        }
    } else if v.is_array() {
        for (i, x) in v.clone().cast::<Array>().iter().enumerate() {
            finite_value(&format!("{what}[{i}]"), x)?;
        }
    } else if v.is_map() {
        for (k, x) in v.clone().cast::<Map>().iter() {
            finite_value(&format!("{what}.{k}"), x)?;
        }
    }
    Ok(())
}

/// Rhai map -> agent options, with serde's precise messages for unknown keys and bad values.
pub fn options(map: Map) -> R<AgentOptions> {
    check_numbers(&map)?;
    let opts: AgentOptions = rhai::serde::from_dynamic(&Dynamic::from_map(map)).map_err(|e| {
        Box::<EvalAltResult>::from(format!(
            "invalid options: {e} (known options: {})",
            AgentOptions::NAMES.join(", ")
        ))
    })?;
    opts.validate().map_err(|e| err(e.into()))?;
    Ok(opts)
}

fn result_map(r: &TurnResult) -> R<Dynamic> {
    rhai::serde::to_dynamic(r)
}

fn print_turn(agent: &AgentName, r: &TurnResult) {
    print!("{}", print::turn(agent, r));
}

pub fn register(engine: &mut Engine, ctx: &Ctx) {
    let c = ctx.clone();
    engine.register_fn("configure", move |mut map: Map| -> R<()> {
        let context = map.remove("context").map(|d| d.to_string());
        let budget = match map.remove("max_cost_usd") {
            None => None,
            Some(d) => Some(amount_of("max_cost_usd", &d)?),
        };
        let opts = options(map)?;
        c.block(c.ws.configure(context, opts, budget))
    });

    for arity in 0..4 {
        let c = ctx.clone();
        match arity {
            0 => engine.register_fn("agent", move |name: &str| -> R<String> {
                Ok(c.block(c.ws.agent(name, None, AgentOptions::default()))?
                    .to_string())
            }),
            1 => engine.register_fn("agent", move |name: &str, role: &str| -> R<String> {
                Ok(
                    c.block(c.ws.agent(name, Some(role.to_string()), AgentOptions::default()))?
                        .to_string(),
                )
            }),
            2 => engine.register_fn("agent", move |name: &str, mut map: Map| -> R<String> {
                let node = take_node(&mut map)?;
                let o = options(map)?;
                Ok(match node {
                    Some(n) => c.block(c.ws.agent_on(&n, name, None, o))?,
                    None => c.block(c.ws.agent(name, None, o))?,
                }
                .to_string())
            }),
            _ => engine.register_fn(
                "agent",
                move |name: &str, role: &str, mut map: Map| -> R<String> {
                    let node = take_node(&mut map)?;
                    let o = options(map)?;
                    let role = Some(role.to_string());
                    Ok(match node {
                        Some(n) => c.block(c.ws.agent_on(&n, name, role, o))?,
                        None => c.block(c.ws.agent(name, role, o))?,
                    }
                    .to_string())
                },
            ),
        };
    }
    let c = ctx.clone();
    engine.register_fn("agents", move || -> R<Array> {
        Ok(c.block(c.ws.agents())?
            .into_iter()
            .map(|n| Dynamic::from(n.to_string()))
            .collect())
    });

    let c = ctx.clone();
    engine.register_fn("profile", move |name: &str, role: &str| -> R<()> {
        c.block(c.ws.profile(name, Some(role.to_string()), AgentOptions::default()))
    });
    let c = ctx.clone();
    engine.register_fn(
        "profile",
        move |name: &str, role: &str, map: Map| -> R<()> {
            let o = options(map)?;
            c.block(c.ws.profile(name, Some(role.to_string()), o))
        },
    );
    let c = ctx.clone();
    engine.register_fn("profiles", move || -> R<Array> {
        let ps = c.block(c.ws.profiles())?;
        if ps.is_empty() {
            println!("No profiles.");
        }
        for p in &ps {
            println!("{}: {}", p.name, p.role.as_deref().unwrap_or(""));
        }
        Ok(ps.into_iter().map(|p| Dynamic::from(p.name)).collect())
    });
    let c = ctx.clone();
    engine.register_fn(
        "from_profile",
        move |profile: &str, name: &str| -> R<String> {
            Ok(
                c.block(c.ws.from_profile(profile, name, AgentOptions::default()))?
                    .to_string(),
            )
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "from_profile",
        move |profile: &str, name: &str, map: Map| -> R<String> {
            let o = options(map)?;
            Ok(c.block(c.ws.from_profile(profile, name, o))?.to_string())
        },
    );

    let c = ctx.clone();
    engine.register_fn("ask", move |name: &str, prompt: &str| -> R<String> {
        let r = c.block(c.ws.ask(name, prompt))?;
        let n = AgentName::new(name).map_err(|e| err(e.into()))?;
        print_turn(&n, &r);
        Ok(n.to_string())
    });
    let c = ctx.clone();
    engine.register_fn("cast", move |name: &str, prompt: &str| -> R<String> {
        let r = c.block(c.ws.cast(name, prompt))?;
        Ok(r.to_string())
    });
    let c = ctx.clone();
    engine.register_fn("poll", move |reference: &str| -> R<String> {
        Ok(print::poll(&c.block(c.ws.poll(reference))?))
    });

    let c = ctx.clone();
    let await_fn = move |name: &str, timeout: Option<Duration>| -> R<String> {
        let out = c.block(c.ws.await_agent(name, timeout))?;
        if out.was_idle {
            println!("{} is {}.", out.agent, out.status);
        } else {
            match &out.last {
                Some(Ok(r)) => print_turn(&out.agent, r),
                Some(Err(e)) => println!("{}: {e}", out.agent),
                None => println!("{} is {}.", out.agent, out.status),
            }
        }
        Ok(out.agent.to_string())
    };
    let a = await_fn.clone();
    engine.register_fn("await", move |name: &str| a(name, None));
    engine.register_fn("await", move |name: &str, ms: i64| {
        await_fn(
            name,
            Some(timeout_arg("await(name, timeout_ms): timeout_ms", ms)?),
        )
    });
    for with_timeout in [false, true] {
        let c = ctx.clone();
        let f = move |timeout: Option<Duration>| -> R<()> {
            let all = c.block(c.ws.await_all(timeout))?;
            if all.is_empty() {
                println!("No busy agents.");
            }
            for r in all {
                match r {
                    Ok(o) => match &o.last {
                        Some(Ok(t)) => print_turn(&o.agent, t),
                        Some(Err(e)) => println!("{}: {e}", o.agent),
                        None => println!("{} is {}.", o.agent, o.status),
                    },
                    Err(e) => println!("{}", print::error(&e)),
                }
            }
            Ok(())
        };
        if with_timeout {
            engine.register_fn("await_all", move |ms: i64| {
                f(Some(timeout_arg("await_all(timeout_ms): timeout_ms", ms)?))
            });
        } else {
            engine.register_fn("await_all", move || f(None));
        }
    }

    let c = ctx.clone();
    let pipe_fn = move |from: &str, to: &str, msg: Option<&str>| -> R<String> {
        let to_name = c.block(c.ws.pipe(from, to, msg))?;
        if let Some(r) = c.block(c.ws.result(to_name.as_str()))? {
            print_turn(&to_name, &r);
        }
        Ok(to_name.to_string())
    };
    let p = pipe_fn.clone();
    engine.register_fn("pipe", move |from: &str, to: &str| p(from, to, None));
    engine.register_fn("pipe", move |from: &str, to: &str, m: &str| {
        pipe_fn(from, to, Some(m))
    });

    let c = ctx.clone();
    engine.register_fn("fan", move |message: &str, names: Array| -> R<Array> {
        let names: Vec<String> = names.into_iter().map(|d| d.to_string()).collect();
        let refs = c.block(c.ws.fan(message, &names))?;
        let mut out = Array::new();
        let mut sent = Vec::new();
        for r in refs {
            let r = r.map_err(err)?;
            sent.push(r.agent.to_string());
            out.push(Dynamic::from(r.to_string()));
        }
        println!("Sent to {}. Use await_all() to collect.", sent.join(", "));
        Ok(out)
    });

    macro_rules! tell {
        ($fname:literal, $method:ident) => {{
            let c = ctx.clone();
            engine.register_fn($fname, move |name: &str| -> R<()> {
                c.block(c.ws.$method(name))
            });
        }};
    }
    tell!("interrupt", interrupt);
    tell!("halt", halt);
    tell!("resume", resume);
    let c = ctx.clone();
    engine.register_fn("notify", move |name: &str, event: &str| -> R<()> {
        c.block(c.ws.notify(name, event))
    });
    let c = ctx.clone();
    engine.register_fn("reset", move |name: &str| -> R<()> {
        c.block(c.ws.reset(name))
    });
    let c = ctx.clone();
    engine.register_fn("dismiss", move |name: &str| -> R<()> {
        c.block(c.ws.dismiss(name))
    });
    let c = ctx.clone();
    engine.register_fn("reset_all", move || -> R<()> { c.block(c.ws.reset_all()) });

    let c = ctx.clone();
    engine.register_fn("status", move || -> R<()> {
        let nodes = c.block(c.ws.cluster_status())?;
        if nodes.len() <= 1 {
            let rows = nodes.into_iter().next().map(|n| n.rows).unwrap_or_default();
            print!("{}", print::status_table(&rows));
            return Ok(());
        }
        for n in nodes {
            match n.error {
                Some(e) => println!("node {}: {e}\n", n.node),
                None => println!("node {}:\n{}", n.node, print::status_table(&n.rows)),
            }
        }
        Ok(())
    });
    let c = ctx.clone();
    engine.register_fn("nodes", move || -> R<Array> {
        let nodes = c.block(c.ws.nodes())?;
        let now = workshop_types::now_ms();
        let mut out = Array::new();
        for n in nodes {
            println!(
                "{}{}{}  {}  {}  {} agents  {} workers",
                n.name,
                if n.this { " (this node)" } else { "" },
                if n.board { " [board]" } else { "" },
                n.addr.as_deref().unwrap_or("-"),
                if n.up {
                    format!(
                        "up {} s",
                        n.started_at_ms
                            .map(|s| now.saturating_sub(s) / 1000)
                            .unwrap_or(0)
                    )
                } else {
                    "DOWN".into()
                },
                n.agents,
                n.workers
            );
            out.push(Dynamic::from(n.name));
        }
        Ok(out)
    });
    let c = ctx.clone();
    engine.register_fn("info", move |name: &str| -> R<Dynamic> {
        let i = c.block(c.ws.info(name))?;
        print!("{}", print::info(&i));
        rhai::serde::to_dynamic(&i)
    });
    let c = ctx.clone();
    engine.register_fn("result", move |name: &str| -> R<Dynamic> {
        match c.block(c.ws.result(name))? {
            Some(r) => Ok(Dynamic::from(r.text)),
            None => Ok(Dynamic::UNIT),
        }
    });
    let c = ctx.clone();
    engine.register_fn("result", move |name: &str, full: &str| -> R<Dynamic> {
        if full.trim_start_matches(':') != "full" {
            return Err(format!(
                "result(name, \"full\") is the only two-argument form, got {full:?}"
            )
            .into());
        }
        match c.block(c.ws.result(name))? {
            Some(r) => result_map(&r),
            None => Ok(Dynamic::UNIT),
        }
    });
    for with_last in [false, true] {
        let c = ctx.clone();
        let f = move |name: &str, last: Option<usize>| -> R<()> {
            let turns = c.block(c.ws.history(name, last))?;
            if turns.is_empty() {
                println!("{name} has no history.");
            }
            for (i, t) in turns.iter().enumerate() {
                println!(
                    "[{}] > {} (${:.4})\n{}\n",
                    i + 1,
                    t.prompt,
                    t.cost_usd,
                    t.text
                );
            }
            Ok(())
        };
        if with_last {
            engine.register_fn("history", move |name: &str, n: i64| {
                let n = whole_arg("history(name, last): last", n, 1)?;
                f(name, Some(usize::try_from(n).unwrap_or(usize::MAX)))
            });
        } else {
            engine.register_fn("history", move |name: &str| f(name, None));
        }
    }
    let c = ctx.clone();
    engine.register_fn("cost", move || -> R<f64> {
        let total = c.block(c.ws.total_cost())?;
        print!("{}", print::costs(&c.block(c.ws.costs())?, total));
        Ok(total)
    });
    let c = ctx.clone();
    engine.register_fn("cost", move |name: &str| -> R<f64> {
        c.block(c.ws.cost(name))
    });
    let c = ctx.clone();
    engine.register_fn("total_cost", move || -> R<f64> {
        c.block(c.ws.total_cost())
    });

    for arity in 0..3 {
        let c = ctx.clone();
        let f = move |last: usize, topic: Option<&str>| -> R<()> {
            let topic = match topic {
                None => None,
                Some(t) => Some(Topic::parse(t).ok_or_else(|| {
                    format!("unknown topic {t:?}: use agent, turn, work, workflow, schedule, store, budget, node or custom")
                })?),
            };
            let evs = c.block(c.ws.cluster_events(last, topic))?;
            if evs.is_empty() {
                println!("No events.");
            }
            let tagged = evs.iter().any(|e| e.node != evs[0].node)
                || c.block(c.ws.nodes()).map(|n| n.len() > 1).unwrap_or(false);
            for e in evs {
                if tagged {
                    println!("{} {}", e.node, e.event.line);
                } else {
                    println!("{}", e.event.line);
                }
            }
            Ok(())
        };
        match arity {
            0 => engine.register_fn("events", move || f(20, None)),
            1 => engine.register_fn("events", move |n: i64| f(last_arg(n)?, None)),
            _ => engine.register_fn("events", move |n: i64, t: &str| f(last_arg(n)?, Some(t))),
        };
    }
    let c = ctx.clone();
    engine.register_fn("watch", move || -> R<()> {
        c.stop_watch();
        let tagged = c.block(c.ws.nodes()).map(|n| n.len() > 1).unwrap_or(false);
        let mut rx = c.block(c.ws.watch_cluster())?;
        let h = c.rt.spawn(async move {
            while let Some(e) = rx.recv().await {
                if tagged {
                    println!("{} {}", e.node, e.event.line);
                } else {
                    println!("{}", e.event.line);
                }
            }
        });
        *c.watcher.lock() = Some(h);
        Ok(())
    });
    let c = ctx.clone();
    engine.register_fn("unwatch", move || c.stop_watch());
    let c = ctx.clone();
    engine.register_fn("clear_events", move || -> R<()> {
        c.block(c.ws.clear_events())
    });
    register_store(engine, ctx);

    engine.register_fn("help", || {
        for (_, doc) in FUNCTIONS {
            println!("  {doc}");
        }
    });
}

/// Store keys: strings as they are; anything else (e.g. `["impl", "notes"]`) by its text.
fn key_of(d: &Dynamic) -> String {
    match d.clone().into_immutable_string() {
        Ok(s) => s.to_string(),
        Err(_) => d.to_string(),
    }
}

fn register_store(engine: &mut Engine, ctx: &Ctx) {
    let c = ctx.clone();
    engine.register_fn("put", move |key: Dynamic, value: Dynamic| -> R<()> {
        finite_value("put(key, value): value", &value)?;
        let v: serde_json::Value = rhai::serde::from_dynamic(&value)?;
        c.block(c.ws.put(&key_of(&key), v))
    });
    let get = {
        let c = ctx.clone();
        move |key: &Dynamic| -> R<Option<Dynamic>> {
            match c.block(c.ws.get(&key_of(key)))? {
                Some(v) => Ok(Some(rhai::serde::to_dynamic(v)?)),
                None => Ok(None),
            }
        }
    };
    let g = get.clone();
    engine.register_fn("get", move |key: Dynamic| -> R<Dynamic> {
        Ok(g(&key)?.unwrap_or(Dynamic::UNIT))
    });
    engine.register_fn("get", move |key: Dynamic, default: Dynamic| -> R<Dynamic> {
        Ok(get(&key)?.unwrap_or(default))
    });
    let c = ctx.clone();
    engine.register_fn("store", move || -> R<()> {
        let all = c.block(c.ws.store_all())?;
        if all.is_empty() {
            println!("Store is empty.");
        }
        for (k, v) in all {
            println!("{k}: {v}");
        }
        Ok(())
    });
    let c = ctx.clone();
    engine.register_fn("store_keys", move || -> R<Array> {
        Ok(c.block(c.ws.store_keys())?
            .into_iter()
            .map(Dynamic::from)
            .collect())
    });
    let c = ctx.clone();
    engine.register_fn("store_delete", move |key: Dynamic| -> R<()> {
        c.block(c.ws.store_delete(&key_of(&key)))
    });
    let show = |who: &str, b: workshop_node::BudgetView| match b.limit {
        Some(l) => println!(
            "{who}: ${:.4} spent of ${l:.4} (${:.4} left)",
            b.spent,
            b.remaining().unwrap_or(0.0)
        ),
        None => println!("{who}: ${:.4} spent, no limit", b.spent),
    };
    let c = ctx.clone();
    engine.register_fn("budget", move || -> R<()> {
        show("global", c.block(c.ws.budget())?);
        Ok(())
    });
    let c = ctx.clone();
    engine.register_fn("budget", move |name: &str| -> R<()> {
        show(name, c.block(c.ws.agent_budget(name))?);
        Ok(())
    });
    let c = ctx.clone();
    engine.register_fn("reset_budget", move || -> R<()> {
        c.block(c.ws.reset_budget())
    });

    let c = ctx.clone();
    engine.register_fn("every", move |name: &str, prompt: &str, ms: i64| -> R<()> {
        let ms = whole_arg(
            "every(name, prompt, interval_ms): interval_ms",
            ms,
            workshop_node::schedule::MIN_INTERVAL_MS,
        )?;
        c.block(c.ws.every(name, prompt, ms))
    });
    let c = ctx.clone();
    engine.register_fn("cancel", move |name: &str| -> R<()> {
        c.block(c.ws.cancel(name))
    });
    let c = ctx.clone();
    engine.register_fn("schedules", move || -> R<Array> {
        let all = c.block(c.ws.schedules())?;
        if all.is_empty() {
            println!("No schedules.");
        }
        let mut out = Array::new();
        for s in all {
            println!(
                "{}: every {} ms, {} runs ({} skipped) — {}",
                s.spec.agent, s.spec.interval_ms, s.run_count, s.skipped, s.spec.prompt
            );
            out.push(Dynamic::from(s.spec.agent.to_string()));
        }
        Ok(out)
    });
}

/// The `node` key of an agent's options map: the node of the cluster to create it on.
fn take_node(map: &mut Map) -> R<Option<String>> {
    match map.remove("node") {
        None => Ok(None),
        Some(v) => v
            .into_string()
            .map(|n| Some(n.trim_start_matches(':').to_string()))
            .map_err(|t| format!("node must be a node's name (a string), got {t}").into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn workshop_tools_is_an_option_of_the_console() {
        let mut map = Map::new();
        map.insert("workshop_tools".into(), Dynamic::from(true));
        map.insert("backend".into(), Dynamic::from("claude".to_string()));
        let o = options(map).expect("workshop_tools is a known option");
        assert_eq!(o.workshop_tools, Some(true));
        let mut bad = Map::new();
        bad.insert("workshop_tools".into(), Dynamic::from("yes".to_string()));
        let e = options(bad)
            .expect_err("a string is not a bool")
            .to_string();
        assert!(e.contains("expecting bool"), "{e}");
    }

    /// One spelling of every status, in the console's values as in the CLI's text and JSON:
    /// `work_item(x).status == "done"` is true once x is done.
    #[test]
    fn statuses_read_as_the_readme_spells_them() {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let node = rt.block_on(workshop_node::Node::start()).expect("node");
        let ctx = Ctx::new(node.client(), rt.handle().clone(), false);
        let engine = crate::console::engine(&ctx);
        let seen = engine
            .eval::<Dynamic>(
                r#"
                agent("a", #{});
                work("x", "a title");
                let before = work_item("x").status;
                claim_work("x", "a");
                start_work("x");
                let during = work_item("x").status;
                complete_work("x", "ok");
                [before, during, work_item("x").status == "done", info("a").status]
                "#,
            )
            .expect("script");
        assert_eq!(
            seen.to_string(),
            r#"["ready", "in_progress", true, "idle"]"#
        );
        rt.block_on(node.shutdown());
    }

    /// Ctrl-C during a blocking call cancels the call, not the console: the agent keeps its turn
    /// and the console goes on. SIGINT is sent with `kill -INT` to this test process (the
    /// handler is installed first, so the signal cannot end the process).
    #[test]
    fn ctrl_c_cancels_a_blocking_ask_and_the_console_goes_on() {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        // Install tokio's SIGINT handler before any signal is sent.
        rt.block_on(async {
            let _ = tokio::time::timeout(Duration::from_millis(1), tokio::signal::ctrl_c()).await;
        });
        let node = rt.block_on(workshop_node::Node::start()).expect("node");
        let ctx = Ctx::new(node.client(), rt.handle().clone(), true);
        let mut engine = Engine::new();
        register(&mut engine, &ctx);
        let name = engine
            .eval::<Dynamic>(r#"agent("slow", #{script: [#{hang: true}]})"#)
            .expect("agent");
        assert_eq!(name.to_string(), "slow");
        let pid = std::process::id().to_string();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(|| {
                let r = engine.eval::<Dynamic>(r#"ask("slow", "forever")"#);
                let _ = done_tx.send(r.map(|_| ()).map_err(|e| e.to_string()));
            });
            // Keep interrupting until the blocked call gives up (its ctrl_c listener may not be
            // polled yet when the first signal arrives).
            let mut tries = 0;
            let outcome = loop {
                tries += 1;
                assert!(tries < 400, "Ctrl-C never cancelled the ask");
                let _ = std::process::Command::new("kill")
                    .args(["-INT", &pid])
                    .status();
                if let Ok(r) = done_rx.recv_timeout(Duration::from_millis(50)) {
                    break r;
                }
            };
            let err = outcome.expect_err("the ask was cancelled");
            assert!(err.contains("cancelled with Ctrl-C"), "{err}");
        });
        // The console and the agent are still there; the agent is still in its turn.
        let status = engine
            .eval::<Dynamic>(r#"info("slow").status"#)
            .expect("info");
        assert_eq!(status.to_string(), "working");
        rt.block_on(node.shutdown());
    }
}
