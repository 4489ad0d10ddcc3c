//! Console functions of the work board, board workers and workflows (AgentWorkshop's names).

use rhai::{Array, Dynamic, Engine, EvalAltResult, Map};
use workshop_board::item::{SettleBy, WorkItem};
use workshop_node::WorkOptions;
use workshop_workflow::{Source, Stage, Workflow};

use super::api::{options, timeout_arg, whole_arg, Ctx};

type R<T> = Result<T, Box<EvalAltResult>>;

fn work_options(map: Map) -> R<WorkOptions> {
    rhai::serde::from_dynamic(&Dynamic::from_map(map)).map_err(|e| {
        format!("invalid work options: {e} (known: type, spec, priority, depends_on, max_attempts, title, metadata)")
            .into()
    })
}

/// For an item completed in parts (a result too large for one frame): its `result` is only a
/// preview, and how to read it all.
pub fn parts_note(i: &WorkItem) -> Option<String> {
    let parts = i.result_parts()?;
    let bytes = i
        .result_bytes()
        .map(|b| format!("{b} bytes"))
        .unwrap_or_else(|| "its size unknown".into());
    Some(format!(
        "{}: the result is {bytes} in {parts} parts; `result` holds its start only. \
         work_result(\"{}\") (or `workshop work result {}`) reads it all.",
        i.id, i.id, i.id
    ))
}

/// This console claimed `item`: its own settles of it use the lease's token.
fn remember_claim(c: &Ctx, item: &WorkItem) {
    if let Some(token) = item.token() {
        c.claims.lock().insert(item.id.as_str().to_string(), token);
    }
}

enum Settle {
    Complete(Option<String>),
    Fail(Option<String>),
}

/// `complete_work`/`fail_work`: with `#{token: N}` or `#{force: true}` if given, else with the
/// token of this console's own claim of the item, else with neither (refused while the item is
/// held, naming the holder).
fn settle(c: &Ctx, id: &str, how: Settle, opts: Option<Map>) -> R<()> {
    let name = match how {
        Settle::Complete(_) => "complete_work",
        Settle::Fail(_) => "fail_work",
    };
    let mut by = None;
    for (k, v) in opts.unwrap_or_default() {
        match k.as_str() {
            "token" => {
                let t = v
                    .as_int()
                    .ok()
                    .and_then(|t| u64::try_from(t).ok())
                    .ok_or_else(|| format!("{name}: token must be the lease token (a whole number 0 or more), got {v}"))?;
                by = Some(SettleBy::Token(t));
            }
            "force" => {
                let f = v
                    .as_bool()
                    .map_err(|t| format!("{name}: force must be true or false, got {t}"))?;
                if f && by.is_none() {
                    by = Some(SettleBy::Force);
                }
            }
            other => {
                return Err(format!("{name}: unknown option {other}: use token or force").into())
            }
        }
    }
    let key = id.trim_start_matches(':');
    let by = by.or_else(|| c.claims.lock().get(key).copied().map(SettleBy::Token));
    match how {
        Settle::Complete(result) => c.block(c.ws.complete_work(id, result, by))?,
        Settle::Fail(error) => c.block(c.ws.fail_work(id, error, by))?,
    };
    c.claims.lock().remove(key);
    Ok(())
}

fn item_map(i: &WorkItem) -> R<Dynamic> {
    rhai::serde::to_dynamic(i)
}

fn text_of(d: &Dynamic) -> String {
    match d.clone().into_immutable_string() {
        Ok(s) => s.to_string(),
        Err(_) => d.to_string(),
    }
}

/// A stage from `#{stage:, agent:, title:, from:, type:, priority:}` or
/// `[stage, agent, title, #{from:, type:, priority:}]` (AgentWorkshop's tuple).
fn stage(d: Dynamic, names: &[String]) -> R<Stage> {
    let (name, agent, title, opts) = if d.is_map() {
        let mut m = d.cast::<Map>();
        let mut take = |k: &str| m.remove(k).map(|v| text_of(&v));
        let name = take("stage").or_else(|| take("name"));
        let agent = take("agent");
        let title = take("title");
        match (name, agent, title) {
            (Some(n), Some(a), Some(t)) => (n, a, t, m),
            _ => return Err("a stage map needs stage, agent and title".into()),
        }
    } else if d.is_array() {
        let a = d.cast::<Array>();
        if a.len() < 3 || a.len() > 4 {
            return Err(format!(
                "invalid stage: expected [stage, agent, title] or [stage, agent, title, #{{opts}}], got {} elements",
                a.len()
            )
            .into());
        }
        let opts = a
            .get(3)
            .and_then(|o| o.clone().try_cast::<Map>())
            .unwrap_or_default();
        (text_of(&a[0]), text_of(&a[1]), text_of(&a[2]), opts)
    } else {
        return Err(
            format!("invalid stage {d}: use a map or [stage, agent, title, #{{opts}}]").into(),
        );
    };
    let mut s = Stage::new(&name, &agent, &title);
    for (k, v) in opts {
        match k.as_str() {
            "from" => {
                s.from = if v.is_array() {
                    Source::Stages(v.cast::<Array>().iter().map(text_of).collect())
                } else {
                    let t = text_of(&v);
                    let t = t.trim_start_matches(':').to_string();
                    // A stage's name means that stage; anything else is a file path.
                    if names.contains(&t) {
                        Source::Stages(vec![t])
                    } else {
                        Source::File(t)
                    }
                }
            }
            "type" => s.work_type = text_of(&v).trim_start_matches(':').to_string(),
            "priority" => {
                let what = format!("stage {name}: priority");
                let p = v.as_int().map_err(|t| {
                    format!("{what} must be a whole number from 1 to 5, got {v} ({t})")
                })?;
                let p = workshop_types::numbers::whole(&what, p, 1, Some(5))
                    .map_err(|e| e.to_string())?;
                s.priority = u8::try_from(p).map_err(|e| e.to_string())?;
            }
            other => {
                return Err(format!(
                    "unknown stage option {other:?} in stage {name}: use from, type or priority"
                )
                .into())
            }
        }
    }
    Ok(s)
}

fn stage_name(d: &Dynamic) -> Option<String> {
    if d.is_map() {
        let m = d.clone().cast::<Map>();
        m.get("stage").or_else(|| m.get("name")).map(text_of)
    } else if d.is_array() {
        d.clone().cast::<Array>().first().map(text_of)
    } else {
        None
    }
}

pub fn register(engine: &mut Engine, ctx: &Ctx) {
    let c = ctx.clone();
    engine.register_fn("work", move |id: &str, title: &str| -> R<Dynamic> {
        let i = c.block(c.ws.work(id, title, WorkOptions::default()))?;
        item_map(&i)
    });
    let c = ctx.clone();
    engine.register_fn("work", move |id: &str, title: &str, o: Map| -> R<Dynamic> {
        let o = work_options(o)?;
        let i = c.block(c.ws.work(id, title, o))?;
        item_map(&i)
    });
    for with_filter in [false, true] {
        let c = ctx.clone();
        let f = move |filter: Map| -> R<()> {
            let status = filter.get("status").map(text_of);
            let work_type = filter.get("type").map(text_of);
            if let Some(k) = filter
                .keys()
                .find(|k| !matches!(k.as_str(), "status" | "type"))
            {
                return Err(format!("board() filters by status and type, not {k:?}").into());
            }
            let items = c.block(c.ws.board(status.as_deref(), work_type.as_deref()))?;
            if items.is_empty() {
                println!("Board is empty.");
            }
            for i in &items {
                println!("{}", i.line());
            }
            Ok(())
        };
        if with_filter {
            engine.register_fn("board", move |m: Map| f(m));
        } else {
            engine.register_fn("board", move || f(Map::new()));
        }
    }
    let c = ctx.clone();
    engine.register_fn("work_item", move |id: &str| -> R<Dynamic> {
        match c.block(c.ws.work_item(id))? {
            Some(i) => {
                if let Some(note) = parts_note(&i) {
                    println!("{note}");
                }
                item_map(&i)
            }
            None => Ok(Dynamic::UNIT),
        }
    });
    let c = ctx.clone();
    engine.register_fn("work_result", move |id: &str| -> R<Dynamic> {
        match c.block(c.ws.work_result(id))? {
            Some(text) => Ok(Dynamic::from(text)),
            None => Ok(Dynamic::UNIT),
        }
    });
    let c = ctx.clone();
    engine.register_fn("claim_work", move |id: &str, agent: &str| -> R<()> {
        let item = c.block(c.ws.claim_work(id, agent))?;
        remember_claim(&c, &item);
        Ok(())
    });
    let c = ctx.clone();
    engine.register_fn(
        "claim_work",
        move |id: &str, agent: &str, o: Map| -> R<()> {
            let mut lease = None;
            for (k, v) in o {
                match k.as_str() {
                    "lease" => {
                        let ms = v
                            .as_int()
                            .map_err(|t| format!("lease must be milliseconds, got {t}"))?;
                        let ms = u64::try_from(ms)
                            .map_err(|_| format!("lease must be milliseconds, got {ms}"))?;
                        lease = Some(ms);
                    }
                    other => {
                        return Err(format!("claim_work: unknown option {other}: use lease").into())
                    }
                }
            }
            let item = c.block(c.ws.claim_work_for(id, agent, lease))?;
            remember_claim(&c, &item);
            Ok(())
        },
    );
    let c = ctx.clone();
    engine.register_fn("start_work", move |id: &str| -> R<()> {
        c.block(c.ws.start_work(id)).map(|_| ())
    });
    let c = ctx.clone();
    engine.register_fn("complete_work", move |id: &str| -> R<()> {
        settle(&c, id, Settle::Complete(None), None)
    });
    let c = ctx.clone();
    engine.register_fn("complete_work", move |id: &str, result: &str| -> R<()> {
        settle(&c, id, Settle::Complete(Some(result.into())), None)
    });
    let c = ctx.clone();
    engine.register_fn(
        "complete_work",
        move |id: &str, result: &str, o: Map| -> R<()> {
            settle(&c, id, Settle::Complete(Some(result.into())), Some(o))
        },
    );
    let c = ctx.clone();
    engine.register_fn("fail_work", move |id: &str| -> R<()> {
        settle(&c, id, Settle::Fail(None), None)
    });
    let c = ctx.clone();
    engine.register_fn("fail_work", move |id: &str, error: &str| -> R<()> {
        settle(&c, id, Settle::Fail(Some(error.into())), None)
    });
    let c = ctx.clone();
    engine.register_fn("fail_work", move |id: &str, error: &str, o: Map| -> R<()> {
        settle(&c, id, Settle::Fail(Some(error.into())), Some(o))
    });
    let c = ctx.clone();
    engine.register_fn("cancel_work", move |id: &str| -> R<()> {
        c.block(c.ws.cancel_work(id)).map(|_| ())
    });
    let c = ctx.clone();
    engine.register_fn(
        "work_from_result",
        move |agent: &str, id: &str| -> R<Dynamic> {
            let i = c.block(c.ws.work_from_result(agent, id, WorkOptions::default()))?;
            item_map(&i)
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "work_from_result",
        move |agent: &str, id: &str, o: Map| -> R<Dynamic> {
            let o = work_options(o)?;
            let i = c.block(c.ws.work_from_result(agent, id, o))?;
            item_map(&i)
        },
    );

    for with_opts in [false, true] {
        let c = ctx.clone();
        let f = move |name: &str, work_type: &str, mut o: Map| -> R<String> {
            let profile = o.remove("profile").map(|p| text_of(&p));
            let interval = match o.remove("interval") {
                None => None,
                Some(v) => Some(whole_arg(
                    "board_worker interval",
                    v.as_int()
                        .map_err(|t| format!("interval must be milliseconds, got {t}"))?,
                    workshop_node::worker::MIN_WORKER_INTERVAL_MS,
                )?),
            };
            let lease = match o.remove("lease") {
                None => None,
                Some(v) => Some(whole_arg(
                    "board_worker lease",
                    v.as_int()
                        .map_err(|t| format!("lease must be milliseconds, got {t}"))?,
                    workshop_node::worker::MIN_WORKER_LEASE_MS,
                )?),
            };
            let worktree = match o.remove("worktree") {
                None => false,
                Some(v) => v
                    .as_bool()
                    .map_err(|t| format!("worktree must be true or false, got {t}"))?,
            };
            let overrides = options(o)?;
            let n = c.block(c.ws.board_worker(
                name,
                work_type,
                workshop_node::WorkerOptions {
                    profile,
                    options: overrides,
                    interval_ms: interval,
                    worktree,
                    lease_ms: lease,
                },
            ))?;
            Ok(n.to_string())
        };
        if with_opts {
            engine.register_fn("board_worker", move |n: &str, t: &str, o: Map| f(n, t, o));
        } else {
            engine.register_fn("board_worker", move |n: &str, t: &str| f(n, t, Map::new()));
        }
    }
    let c = ctx.clone();
    engine.register_fn("workers", move || -> R<Array> {
        let ws = c.block(c.ws.workers())?;
        if ws.is_empty() {
            println!("No board workers.");
        }
        let mut out = Array::new();
        for w in ws {
            let working = w
                .current_item
                .as_ref()
                .map(|i| format!(" (working on {i})"))
                .unwrap_or_default();
            println!(
                "{}: {}, {} completed, {} failed{working}",
                w.name, w.work_type, w.completed, w.failed
            );
            out.push(Dynamic::from(w.name.to_string()));
        }
        Ok(out)
    });

    let c = ctx.clone();
    engine.register_fn("workflow", move |name: &str, stages: Array| -> R<()> {
        let names: Vec<String> = stages.iter().filter_map(stage_name).collect();
        let stages = stages
            .into_iter()
            .map(|d| stage(d, &names))
            .collect::<R<Vec<Stage>>>()?;
        let wf = Workflow::new(name, stages).map_err(|e| e.to_string())?;
        c.block(c.ws.workflow(wf))
    });
    let c = ctx.clone();
    engine.register_fn("run_workflow", move |name: &str| -> R<()> {
        let items = c.block(c.ws.run_workflow(name))?;
        println!(
            "{} started: {} items on the board.",
            name.trim_start_matches(':'),
            items.len()
        );
        Ok(())
    });
    let c = ctx.clone();
    engine.register_fn("workflow_status", move |name: &str| -> R<String> {
        let (status, stages) = c.block(c.ws.workflow_status(name))?;
        let status = workshop_node::workflows::status_name(status);
        println!("{}: {status}", name.trim_start_matches(':'));
        for (stage, item) in stages {
            match item {
                Some(i) => println!("  {stage}: {}", i.line()),
                None => println!("  {stage}: (not run)"),
            }
        }
        Ok(status.to_string())
    });
    let c = ctx.clone();
    engine.register_fn("workflows", move || -> R<Array> {
        let all = c.block(c.ws.workflows())?;
        if all.is_empty() {
            println!("No workflows.");
        }
        Ok(all
            .into_iter()
            .map(|w| {
                let stages: Vec<&str> = w.stages.iter().map(|s| s.name.as_str()).collect();
                println!("{}: {}", w.name, stages.join(" -> "));
                Dynamic::from(w.name)
            })
            .collect())
    });
    for with_timeout in [false, true] {
        let c = ctx.clone();
        let f = move |id: &str, t: Option<std::time::Duration>| -> R<Dynamic> {
            let i = c.block(c.ws.await_work(id, t))?;
            println!("{}: {}", i.id, i.status);
            item_map(&i)
        };
        if with_timeout {
            engine.register_fn("await_work", move |n: &str, ms: i64| {
                f(
                    n,
                    Some(timeout_arg("await_work(id, timeout_ms): timeout_ms", ms)?),
                )
            });
        } else {
            engine.register_fn("await_work", move |n: &str| f(n, None));
        }
    }
    for with_timeout in [false, true] {
        let c = ctx.clone();
        let f = move |name: &str, t: Option<std::time::Duration>| -> R<String> {
            let s = c.block(c.ws.await_workflow(name, t))?;
            let s = workshop_node::workflows::status_name(s);
            println!("{}: {s}", name.trim_start_matches(':'));
            Ok(s.to_string())
        };
        if with_timeout {
            engine.register_fn("await_workflow", move |n: &str, ms: i64| {
                f(
                    n,
                    Some(timeout_arg(
                        "await_workflow(name, timeout_ms): timeout_ms",
                        ms,
                    )?),
                )
            });
        } else {
            engine.register_fn("await_workflow", move |n: &str| f(n, None));
        }
    }
    let c = ctx.clone();
    engine.register_fn("reset_workflow", move |name: &str| -> R<()> {
        c.block(c.ws.reset_workflow(name))
    });
}
