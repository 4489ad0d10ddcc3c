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
        .map_err(|e| e.to_string())
}

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
                    Err(e) => println!("error: {e}"),
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
