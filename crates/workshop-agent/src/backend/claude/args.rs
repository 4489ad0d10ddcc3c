//! How an agent's options become the `claude` command line and environment (pure).

use std::collections::BTreeMap;
use std::path::PathBuf;

use workshop_types::AgentOptions;

/// Variables that make a CLI believe it runs inside another Claude Code (or under an SDK host):
/// stripped from the inherited environment before the agent's own `env` is applied.
pub const STRIPPED_ENV: &[&str] = &[
    "CLAUDECODE",
    "CLAUDE_CODE_ENTRYPOINT",
    "CLAUDE_CODE_SSE_PORT",
    "CLAUDE_CODE_EXECPATH",
    "CLAUDE_CODE_SESSION_ID",
    "CLAUDE_CODE_CHILD_SESSION",
    "CLAUDE_CODE_CHILD_NOTES_DIR",
    "CLAUDE_AGENT_SDK_VERSION",
    "CLAUDE_AGENT_SDK_CLIENT_APP",
];

/// Prefixes of the same family (session identity, parent messaging socket, SDK host markers).
pub const STRIPPED_ENV_PREFIXES: &[&str] = &[
    "CLAUDE_CODE_SESSION_",
    "CLAUDE_CODE_MESSAGING_",
    "CLAUDE_CODE_SDK_",
    "CLAUDE_AGENT_SDK_",
];

pub fn is_stripped(name: &str) -> bool {
    STRIPPED_ENV.contains(&name) || STRIPPED_ENV_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The child's environment: the inherited one minus [`is_stripped`], plus the agent's `env`.
pub fn child_env(
    inherited: impl IntoIterator<Item = (String, String)>,
    agent_env: Option<&BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = inherited
        .into_iter()
        .filter(|(k, _)| !is_stripped(k))
        .collect();
    if let Some(extra) = agent_env {
        env.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    env
}

/// Which executable: `options.claude_bin`, else `$CLAUDE_CLI`, else `claude` on PATH.
pub fn claude_bin(options: &AgentOptions, env_cli: Option<String>) -> PathBuf {
    options
        .claude_bin
        .clone()
        .filter(|s| !s.is_empty())
        .or(env_cli.filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "claude".to_string())
        .into()
}

/// The long-lived stream-json invocation for these options. `system_prompt` is the agent's
/// composed prompt (context + role); it is *appended* to Claude Code's own prompt unless
/// `options.system_prompt` replaces the whole thing. `resume` adds `--resume=<id>` (equals form:
/// a dash-leading value cannot become a flag).
pub fn build_args(
    o: &AgentOptions,
    system_prompt: Option<&str>,
    resume: Option<&str>,
) -> Vec<String> {
    let mut a: Vec<String> = [
        "-p",
        "--input-format",
        "stream-json",
        "--output-format",
        "stream-json",
        "--verbose",
        "--include-partial-messages",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut kv = |flag: &str, value: &str| a.push(format!("--{flag}={value}"));
    if let Some(m) = &o.model {
        kv("model", m);
    }
    if let Some(m) = &o.fallback_model {
        kv("fallback-model", m);
    }
    if let Some(n) = o.max_turns {
        kv("max-turns", &n.to_string());
    }
    if o.dangerously_skip_permissions == Some(true) {
        a.push("--dangerously-skip-permissions".into());
    } else {
        a.push(format!(
            "--permission-mode={}",
            o.permission_mode().cli_value()
        ));
    }
    let mut kv = |flag: &str, value: &str| a.push(format!("--{flag}={value}"));
    if let Some(t) = o.allowed_tools.as_ref().filter(|t| !t.is_empty()) {
        kv("allowedTools", &t.join(","));
    }
    if let Some(t) = o.disallowed_tools.as_ref().filter(|t| !t.is_empty()) {
        kv("disallowedTools", &t.join(","));
    }
    if let Some(t) = &o.tools {
        // an empty list means no tools at all (`--tools ""`)
        kv("tools", &t.join(","));
    }
    match (&o.system_prompt, system_prompt) {
        (Some(replace), _) => kv("system-prompt", replace),
        (None, composed) => {
            let append: Vec<&str> = [composed, o.append_system_prompt.as_deref()]
                .into_iter()
                .flatten()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            if !append.is_empty() {
                kv("append-system-prompt", &append.join("\n\n"));
            }
        }
    }
    if o.system_prompt.is_some() {
        if let Some(extra) = o.append_system_prompt.as_deref().filter(|s| !s.is_empty()) {
            kv("append-system-prompt", extra);
        }
    }
    for c in o.mcp_config.iter().flatten() {
        kv("mcp-config", c);
    }
    if o.strict_mcp_config == Some(true) {
        a.push("--strict-mcp-config".into());
    }
    let mut kv = |flag: &str, value: &str| a.push(format!("--{flag}={value}"));
    for d in o.add_dir.iter().flatten() {
        kv("add-dir", d);
    }
    if let Some(s) = &o.settings {
        kv("settings", s);
    }
    if let Some(s) = &o.setting_sources {
        kv("setting-sources", &s.join(","));
    }
    if let Some(e) = o.effort {
        kv("effort", e.as_str());
    }
    if let Some(b) = o.max_budget_usd {
        kv("max-budget-usd", &b.to_string());
    }
    if let Some(s) = &o.json_schema {
        kv("json-schema", s);
    }
    if let Some(w) = &o.worktree {
        kv("worktree", w);
    }
    if o.no_session_persistence == Some(true) {
        a.push("--no-session-persistence".into());
    }
    if let Some(id) = resume.filter(|_| o.no_session_persistence != Some(true)) {
        a.push(format!("--resume={id}"));
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use workshop_types::{Effort, PermissionMode};

    #[test]
    fn defaults_are_long_lived_stream_json_and_never_interactive() {
        let a = build_args(&AgentOptions::default(), None, None);
        assert_eq!(
            &a[..7],
            &[
                "-p",
                "--input-format",
                "stream-json",
                "--output-format",
                "stream-json",
                "--verbose",
                "--include-partial-messages"
            ]
        );
        assert!(a.contains(&"--permission-mode=acceptEdits".to_string()));
        assert!(!a.iter().any(|x| x.starts_with("--resume")));
    }

    #[test]
    fn every_option_maps_to_its_flag() {
        let o = AgentOptions {
            model: Some("sonnet".into()),
            fallback_model: Some("haiku".into()),
            max_turns: Some(7),
            permission_mode: Some(PermissionMode::DontAsk),
            allowed_tools: Some(vec!["Read".into(), "Bash(git log:*)".into()]),
            disallowed_tools: Some(vec!["WebFetch".into()]),
            tools: Some(vec![]),
            append_system_prompt: Some("be brief".into()),
            mcp_config: Some(vec!["/a.json".into(), "{\"mcpServers\":{}}".into()]),
            strict_mcp_config: Some(true),
            add_dir: Some(vec!["/x".into(), "/y".into()]),
            settings: Some("/s.json".into()),
            setting_sources: Some(vec!["project".into(), "local".into()]),
            effort: Some(Effort::High),
            max_budget_usd: Some(2.5),
            json_schema: Some("{}".into()),
            worktree: Some("wt".into()),
            ..Default::default()
        };
        let a = build_args(&o, Some("You are the planner."), Some("-evil"));
        for want in [
            "--model=sonnet",
            "--fallback-model=haiku",
            "--max-turns=7",
            "--permission-mode=dontAsk",
            "--allowedTools=Read,Bash(git log:*)",
            "--disallowedTools=WebFetch",
            "--tools=",
            "--append-system-prompt=You are the planner.\n\nbe brief",
            "--mcp-config=/a.json",
            "--mcp-config={\"mcpServers\":{}}",
            "--strict-mcp-config",
            "--add-dir=/x",
            "--add-dir=/y",
            "--settings=/s.json",
            "--setting-sources=project,local",
            "--effort=high",
            "--max-budget-usd=2.5",
            "--json-schema={}",
            "--worktree=wt",
            "--resume=-evil",
        ] {
            assert!(a.contains(&want.to_string()), "missing {want:?} in {a:?}");
        }
        assert!(!a.iter().any(|x| x.starts_with("--system-prompt")));
    }

    #[test]
    fn replacing_system_prompt_and_skip_permissions_and_no_persistence() {
        let o = AgentOptions {
            system_prompt: Some("only this".into()),
            append_system_prompt: Some("and this".into()),
            dangerously_skip_permissions: Some(true),
            no_session_persistence: Some(true),
            ..Default::default()
        };
        let a = build_args(&o, Some("only this"), Some("abc"));
        assert!(a.contains(&"--system-prompt=only this".to_string()));
        assert!(a.contains(&"--append-system-prompt=and this".to_string()));
        assert!(a.contains(&"--dangerously-skip-permissions".to_string()));
        assert!(!a.iter().any(|x| x.starts_with("--permission-mode")));
        assert!(a.contains(&"--no-session-persistence".to_string()));
        assert!(
            !a.iter().any(|x| x.starts_with("--resume")),
            "nothing to resume without persistence"
        );
    }

    #[test]
    fn nested_cli_markers_are_stripped_and_agent_env_wins() {
        let inherited = [
            ("CLAUDECODE", "1"),
            ("CLAUDE_CODE_ENTRYPOINT", "cli"),
            ("CLAUDE_CODE_SESSION_ACCESS_TOKEN", "t"),
            ("CLAUDE_CODE_MESSAGING_SOCKET", "/s"),
            ("CLAUDE_CODE_MAX_RETRIES", "2"),
            ("PATH", "/bin"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let agent: BTreeMap<String, String> = [
            ("IS_SANDBOX".to_string(), "1".to_string()),
            ("PATH".to_string(), "/opt".to_string()),
        ]
        .into();
        let env = child_env(inherited, Some(&agent));
        assert_eq!(
            env.keys().map(String::as_str).collect::<Vec<_>>(),
            vec!["CLAUDE_CODE_MAX_RETRIES", "IS_SANDBOX", "PATH"]
        );
        assert_eq!(env["PATH"], "/opt");
    }

    #[test]
    fn binary_resolution_order() {
        let mut o = AgentOptions::default();
        assert_eq!(claude_bin(&o, None), PathBuf::from("claude"));
        assert_eq!(
            claude_bin(&o, Some("/env/claude".into())),
            PathBuf::from("/env/claude")
        );
        o.claude_bin = Some("/opt/claude".into());
        assert_eq!(
            claude_bin(&o, Some("/env/claude".into())),
            PathBuf::from("/opt/claude")
        );
    }
}
