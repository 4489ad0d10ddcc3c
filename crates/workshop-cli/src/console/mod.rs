//! `workshop console`: a rhai REPL over the node's `Workshop` API, with AgentWorkshop's
//! function names. `.workshop.rhai` in the working dir is loaded at start; `--script FILE` (or a
//! script on standard input) runs non-interactively and stops at the first error.

pub mod api;
pub mod board;
pub mod print;

use std::borrow::Cow;
use std::path::Path;

use rhai::{Dynamic, Engine, EvalAltResult, Scope};
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, Helper};

pub use api::Ctx;

pub const SETUP_FILE: &str = ".workshop.rhai";

/// A rhai engine with every console function registered.
pub fn engine(ctx: &Ctx) -> Engine {
    let mut engine = Engine::new();
    // `await` is a reserved word in rhai; AgentWorkshop calls the function `await`, so the
    // tokenizer hands it to the parser as an ordinary identifier.
    #[allow(deprecated)]
    engine.on_parse_token(|token, _, _| match token {
        rhai::Token::Reserved(s) if &*s == "await" => rhai::Token::Identifier(s),
        t => t,
    });
    engine.set_max_expr_depths(128, 64);
    api::register(&mut engine, ctx);
    board::register(&mut engine, ctx);
    let c = ctx.clone();
    engine.register_fn(
        "load",
        move |path: &str| -> Result<(), Box<EvalAltResult>> { load(&c, Path::new(path)) },
    );
    let c = ctx.clone();
    engine.register_fn("load", move || -> Result<(), Box<EvalAltResult>> {
        load(&c, Path::new(SETUP_FILE))
    });
    engine
}

/// Run a setup file in its own scope.
pub fn load(ctx: &Ctx, path: &Path) -> Result<(), Box<EvalAltResult>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot load {}: {e}", path.display()))?;
    run(ctx, &text, &mut Scope::new()).map(|_| ())
}

pub fn run(ctx: &Ctx, text: &str, scope: &mut Scope) -> Result<Dynamic, Box<EvalAltResult>> {
    engine(ctx).eval_with_scope::<Dynamic>(scope, text)
}

/// Non-interactive: run a whole script; the first error ends it (the caller exits non-zero).
pub fn run_script(ctx: &Ctx, text: &str) -> Result<(), String> {
    run(ctx, text, &mut Scope::new())
        .map(|_| ())
        .map_err(|e| explain(&e))
}

/// An error as the console shows it. A call the engine could not match (a wrong argument type
/// or count, a misspelt function) says how the function is called, or which one was meant.
pub fn explain(e: &EvalAltResult) -> String {
    let EvalAltResult::ErrorFunctionNotFound(sig, pos) = e else {
        return e.to_string();
    };
    let name = sig.split([' ', '(']).next().unwrap_or(sig).trim();
    let got = sig[name.len()..]
        .trim()
        .replace("&str | ImmutableString | String", "string")
        .replace("i64", "integer")
        .replace("f64", "number");
    let got = got.as_str();
    let at = if pos.is_none() {
        String::new()
    } else {
        format!(" ({pos})")
    };
    let known: Vec<&str> = api::FUNCTIONS
        .iter()
        .filter(|(f, _)| *f == name)
        .map(|(_, usage)| *usage)
        .collect();
    if !known.is_empty() {
        return format!(
            "{name} cannot take {}{at}; use {}",
            if got.is_empty() {
                "these arguments"
            } else {
                got
            },
            known.join("; or ")
        );
    }
    match closest(name, api::FUNCTIONS.iter().map(|(f, _)| *f)) {
        Some(near) => format!("no function {name}{at}; did you mean {near}? help() lists them"),
        None => format!("no function {name}{at}; help() lists them"),
    }
}

pub use workshop_types::closest;

struct ConsoleHelper {
    ctx: Ctx,
}

impl Completer for ConsoleHelper {
    type Candidate = Pair;
    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let start = line[..pos]
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
            .map(|i| i + 1)
            .unwrap_or(0);
        let word = &line[start..pos];
        let in_string = line[..start].matches('"').count() % 2 == 1;
        let mut out = Vec::new();
        if in_string {
            let names = self
                .ctx
                .rt
                .block_on(self.ctx.ws.agents())
                .unwrap_or_default();
            for n in names {
                if n.as_str().starts_with(word) {
                    out.push(Pair {
                        display: n.to_string(),
                        replacement: n.to_string(),
                    });
                }
            }
        } else {
            for (f, _) in api::FUNCTIONS {
                if f.starts_with(word) {
                    out.push(Pair {
                        display: f.to_string(),
                        replacement: format!("{f}("),
                    });
                }
            }
        }
        Ok((start, out))
    }
}

impl Hinter for ConsoleHelper {
    type Hint = String;
}
impl Highlighter for ConsoleHelper {
    fn highlight_prompt<'b, 's: 'b, 'p: 'b>(
        &'s self,
        prompt: &'p str,
        _default: bool,
    ) -> Cow<'b, str> {
        Cow::Borrowed(prompt)
    }
}
impl Validator for ConsoleHelper {}
impl Helper for ConsoleHelper {}

/// The interactive REPL. Returns when the user types `exit`/`quit` or presses Ctrl-D.
pub fn repl(ctx: &Ctx) -> anyhow::Result<()> {
    let mut editor: Editor<ConsoleHelper, rustyline::history::DefaultHistory> = Editor::new()?;
    editor.set_helper(Some(ConsoleHelper { ctx: ctx.clone() }));
    let history = std::env::var_os("HOME")
        .map(|h| Path::new(&h).join(".workshop_history"))
        .unwrap_or_else(|| ".workshop_history".into());
    let _ = editor.load_history(&history);
    let engine = engine(ctx);
    let mut scope = Scope::new();
    println!(
        "workshop {} console — help() lists the functions, Ctrl-D quits.",
        env!("CARGO_PKG_VERSION")
    );
    loop {
        match editor.readline("workshop> ") {
            Ok(line) => {
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                let _ = editor.add_history_entry(line);
                if matches!(line, "exit" | "quit" | "exit()" | "quit()") {
                    break;
                }
                match engine.eval_with_scope::<Dynamic>(&mut scope, line) {
                    Ok(v) if v.is_unit() => {}
                    Ok(v) => println!("=> {v:?}"),
                    Err(e) => println!("error: {}", explain(&e)),
                }
            }
            Err(ReadlineError::Interrupted) => {
                println!("(Ctrl-C: type exit or press Ctrl-D to quit)");
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        }
    }
    let _ = editor.save_history(&history);
    ctx.stop_watch();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script_error(text: &str) -> String {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let node = rt.block_on(workshop_node::Node::start()).expect("node");
        let ctx = Ctx::new(node.client(), rt.handle().clone(), false);
        let e = run_script(&ctx, text).expect_err("the script fails");
        rt.block_on(node.shutdown());
        e
    }

    #[test]
    fn a_call_with_the_wrong_arguments_shows_how_the_function_is_called() {
        let e = script_error(r#"ask("a", 5)"#);
        assert_eq!(
            e,
            "ask cannot take (string, integer) (line 1, position 1); use ask(name, prompt) — send and wait; prints the result, returns the name"
        );
    }

    #[test]
    fn a_misspelt_function_names_the_closest_one() {
        let e = script_error(r#"statuss()"#);
        assert_eq!(
            e,
            "no function statuss (line 1, position 1); did you mean status? help() lists them"
        );
        let e = script_error(r#"frobnicate(1)"#);
        assert_eq!(
            e,
            "no function frobnicate (line 1, position 1); help() lists them"
        );
    }

    #[test]
    fn a_claims_lease_is_an_option_with_bounds() {
        let e = script_error(r#"work("x", "t"); claim_work("x", "a", #{lease: -5})"#);
        assert!(e.contains("lease must be milliseconds, got -5"), "{e}");
        let e = script_error(r#"work("x", "t"); claim_work("x", "a", #{lease: 500})"#);
        assert!(e.contains("lease_ms 500 is out of bounds"), "{e}");
        let e = script_error(r#"work("x", "t"); claim_work("x", "a", #{leese: 5000})"#);
        assert!(e.contains("unknown option leese"), "{e}");
        let e = script_error(
            r#"work("x", "t"); claim_work("x", "a", #{lease: 5000}); complete_work("nope")"#,
        );
        assert!(e.contains("nope"), "the claim with a lease worked: {e}");
    }

    /// Issue 8 item 5: a console settles the items it claimed itself; another console (or
    /// one that did not claim) needs the token or force, and is told so naming the holder.
    #[test]
    fn settling_by_hand_needs_the_claim_s_token_or_force() {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let node = rt.block_on(workshop_node::Node::start()).expect("node");
        let mine = Ctx::new(node.client(), rt.handle().clone(), false);
        let other = Ctx::new(node.client(), rt.handle().clone(), false);
        run_script(
            &mine,
            r#"work("a", "t"); work("b", "t"); work("c", "t");
               claim_work("a", "me"); claim_work("b", "me"); claim_work("c", "me");"#,
        )
        .expect("claims");
        let e = run_script(&other, r#"complete_work("a", "not mine")"#).expect_err("held");
        assert!(e.contains("work item `a` is claimed, held by me"), "{e}");
        assert!(e.contains("#{force: true}"), "{e}");
        let e = run_script(&other, r#"fail_work("a", "no", #{token: 999999})"#)
            .expect_err("a wrong token");
        assert!(e.contains("stale fencing token 999999"), "{e}");
        let e = run_script(&other, r#"complete_work("a", "x", #{forse: true})"#)
            .expect_err("misspelt option");
        assert!(
            e.contains("unknown option forse: use token or force"),
            "{e}"
        );
        // The claiming console settles its own claims; the other one forces, or passes the token.
        run_script(&mine, r#"complete_work("a", "mine")"#).expect("own claim");
        run_script(&other, r#"fail_work("b", "taken", #{force: true})"#).expect("forced");
        let token = rt
            .block_on(node.client().work_item("c"))
            .expect("get")
            .and_then(|i| i.token())
            .expect("c is claimed");
        run_script(
            &other,
            &format!(r#"complete_work("c", "with the token", #{{token: {token}}})"#),
        )
        .expect("with the token");
        let status = |id: &str| {
            rt.block_on(node.client().work_item(id))
                .expect("get")
                .expect("item")
                .status
                .to_string()
        };
        assert_eq!(
            [status("a"), status("b"), status("c")],
            ["done", "failed", "done"]
        );
        let events = rt
            .block_on(node.client().events(100, Some(workshop_types::Topic::Work)))
            .expect("events");
        assert!(
            events
                .iter()
                .any(|e| e.kind == "forced" && e.line.contains("b failed by force, taken from me")),
            "{events:?}"
        );
        rt.block_on(node.shutdown());
    }

    #[test]
    fn closest_allows_a_third_of_the_letters_off() {
        let names = ["ask", "cast", "await", "await_all", "status"];
        assert_eq!(closest("awayt", names.into_iter()), Some("await"));
        assert_eq!(closest("statu", names.into_iter()), Some("status"));
        assert_eq!(closest("xyz", names.into_iter()), None);
    }
}
