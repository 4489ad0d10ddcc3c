//! The real Claude Code CLI for tests: installed by `.ci/install-claude.sh`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The pinned version `.ci/install-claude.sh` installs.
pub const CLAUDE_VERSION: &str = "2.1.328";

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// `$CLAUDE_CLI`, else `<workspace>/.tools/claude/node_modules/.bin/claude`; panics with how to
/// install it when neither exists.
pub fn claude_bin() -> PathBuf {
    if let Ok(p) = std::env::var("CLAUDE_CLI") {
        if !p.is_empty() {
            let p = PathBuf::from(p);
            assert!(p.exists(), "CLAUDE_CLI={} does not exist", p.display());
            return p;
        }
    }
    let p = workspace_root().join(".tools/claude/node_modules/.bin/claude");
    assert!(
        p.exists(),
        "the real claude CLI is not installed at {}: run .ci/install-claude.sh (or set CLAUDE_CLI)",
        p.display()
    );
    p
}

/// The environment FINDINGS.md lists for running the CLI offline against the fake: fresh
/// `HOME`, the base URL, a fake key, no nonessential traffic, few retries. `IS_SANDBOX=1` lets
/// `bypassPermissions` work as root.
pub fn claude_env(base_url: &str, home: &Path, max_retries: u32) -> BTreeMap<String, String> {
    [
        ("HOME", home.display().to_string()),
        ("ANTHROPIC_BASE_URL", base_url.to_string()),
        ("ANTHROPIC_API_KEY", "sk-ant-fake-workshop-test".to_string()),
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".to_string()),
        ("DISABLE_TELEMETRY", "1".to_string()),
        ("DISABLE_ERROR_REPORTING", "1".to_string()),
        ("DISABLE_AUTOUPDATER", "1".to_string()),
        ("CLAUDE_CODE_MAX_RETRIES", max_retries.to_string()),
        ("TERM", "dumb".to_string()),
        ("LANG", "C.UTF-8".to_string()),
        ("IS_SANDBOX", "1".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}
