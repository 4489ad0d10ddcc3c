//! `workshop demo`: the embedded demo script, run through the console like any setup file.

use crate::console::{self, Ctx};

pub const SCRIPT: &str = include_str!("demo.rhai");

pub fn run(ctx: &Ctx) -> anyhow::Result<()> {
    console::run_script(ctx, SCRIPT).map_err(|e| anyhow::anyhow!("demo failed: {e}"))
}
