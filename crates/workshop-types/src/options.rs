use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum OptionError {
    #[error("invalid permission_mode {0:?}: use one of default, accept_edits, bypass_permissions, dont_ask, plan, auto")]
    PermissionMode(String),
    #[error("invalid effort {0:?}: use one of low, medium, high, xhigh, max")]
    Effort(String),
    #[error("invalid option: {0}")]
    Invalid(String),
}

/// Claude Code's permission modes. The workshop default is `accept_edits`: with `-p` no mode
/// waits for a human, and this one lets agents edit files without a blanket bypass (which the
/// CLI refuses as root anyway).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(try_from = "String", into = "String")]
pub enum PermissionMode {
    Default,
    #[default]
    AcceptEdits,
    BypassPermissions,
    DontAsk,
    Plan,
    Auto,
}

impl PermissionMode {
    /// The spelling the `claude` CLI takes for `--permission-mode`.
    pub fn cli_value(self) -> &'static str {
        match self {
            PermissionMode::Default => "default",
            PermissionMode::AcceptEdits => "acceptEdits",
            PermissionMode::BypassPermissions => "bypassPermissions",
            PermissionMode::DontAsk => "dontAsk",
            PermissionMode::Plan => "plan",
            PermissionMode::Auto => "auto",
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            PermissionMode::Default => "default",
            PermissionMode::AcceptEdits => "accept_edits",
            PermissionMode::BypassPermissions => "bypass_permissions",
            PermissionMode::DontAsk => "dont_ask",
            PermissionMode::Plan => "plan",
            PermissionMode::Auto => "auto",
        }
    }
}

impl FromStr for PermissionMode {
    type Err = OptionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().trim_start_matches(':');
        Ok(match t {
            "default" => PermissionMode::Default,
            "accept_edits" | "acceptEdits" => PermissionMode::AcceptEdits,
            "bypass_permissions" | "bypassPermissions" => PermissionMode::BypassPermissions,
            "dont_ask" | "dontAsk" => PermissionMode::DontAsk,
            "plan" => PermissionMode::Plan,
            "auto" => PermissionMode::Auto,
            _ => return Err(OptionError::PermissionMode(s.to_string())),
        })
    }
}

impl TryFrom<String> for PermissionMode {
    type Error = OptionError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<PermissionMode> for String {
    fn from(p: PermissionMode) -> String {
        p.as_str().to_string()
    }
}

impl fmt::Display for PermissionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Effort {
    Low,
    Medium,
    High,
    XHigh,
    Max,
}

impl Effort {
    pub fn as_str(self) -> &'static str {
        match self {
            Effort::Low => "low",
            Effort::Medium => "medium",
            Effort::High => "high",
            Effort::XHigh => "xhigh",
            Effort::Max => "max",
        }
    }
}

impl TryFrom<String> for Effort {
    type Error = OptionError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Ok(match s.trim().trim_start_matches(':') {
            "low" => Effort::Low,
            "medium" => Effort::Medium,
            "high" => Effort::High,
            "xhigh" => Effort::XHigh,
            "max" => Effort::Max,
            _ => return Err(OptionError::Effort(s)),
        })
    }
}

impl From<Effort> for String {
    fn from(e: Effort) -> String {
        e.as_str().to_string()
    }
}

/// One scripted turn of the `script` backend. Every field is optional; an empty step answers
/// with the backend's default reply. Steps run in order, one per turn.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScriptStep {
    /// Final text of the turn (`{prompt}` is replaced by the prompt).
    pub text: Option<String>,
    /// Streamed chunks, published as text deltas; their concatenation is the text when `text` is unset.
    pub chunks: Vec<String>,
    /// Delay before answering (and between chunks), in milliseconds.
    pub delay_ms: u64,
    pub cost_usd: Option<f64>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Fail the turn with this backend error.
    pub error: Option<String>,
    /// Never answer (until interrupted or the watchdog fires).
    pub hang: bool,
    /// Block until the test kit releases the named gate (deterministic tests).
    pub gate: Option<String>,
    /// Crash the turn (the backend task panics), as a broken backend would.
    pub crash: bool,
}

macro_rules! options {
    (
        $( $(#[$m:meta])* $field:ident : $ty:ty ),* $(,)?
        ; since format 2:
        $( $(#[$m2:meta])* $field2:ident : $ty2:ty ),* $(,)?
    ) => {
        /// Options of an agent, a profile or the global defaults. Every field is optional so that
        /// layers compose: globals, then profile, then per-agent overrides (`overlay`).
        ///
        /// Stored records of an older format (see [`crate::compat`]) decode through that
        /// format's layout ([`AgentOptionsV1`]); the fields it lacks come back unset.
        ///
        /// Its `Debug` shows the keys of `env` but not their values (see [`AgentOptions::HIDDEN`]),
        /// so a spec in a log line or an error never carries a secret.
        #[derive(Clone, Default, PartialEq, Serialize)]
        pub struct AgentOptions {
            $( $(#[$m])* pub $field: Option<$ty>, )*
            $( $(#[$m2])* pub $field2: Option<$ty2>, )*
        }

        /// What every format decodes into (field names and order as `AgentOptions`).
        #[derive(Default, Deserialize)]
        #[serde(default, deny_unknown_fields, rename = "AgentOptions")]
        struct AgentOptionsRepr {
            $( $field: Option<$ty>, )*
            $( $field2: Option<$ty2>, )*
        }

        /// `AgentOptions` as format 1 stored it (before `workshop_tools`): for reading old
        /// records, and for tests that write them.
        #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields, rename = "AgentOptions")]
        pub struct AgentOptionsV1 {
            $( pub $field: Option<$ty>, )*
        }

        impl From<AgentOptionsRepr> for AgentOptions {
            fn from(r: AgentOptionsRepr) -> Self {
                AgentOptions {
                    $( $field: r.$field, )*
                    $( $field2: r.$field2, )*
                }
            }
        }

        impl From<AgentOptionsV1> for AgentOptions {
            fn from(r: AgentOptionsV1) -> Self {
                AgentOptions {
                    $( $field: r.$field, )*
                    ..AgentOptions::default()
                }
            }
        }

        impl From<&AgentOptions> for AgentOptionsV1 {
            fn from(o: &AgentOptions) -> Self {
                AgentOptionsV1 {
                    $( $field: o.$field.clone(), )*
                }
            }
        }

        impl fmt::Debug for AgentOptions {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let shown = self.env_hidden();
                f.debug_struct("AgentOptions")
                    $( .field(stringify!($field), &shown.$field) )*
                    $( .field(stringify!($field2), &shown.$field2) )*
                    .finish()
            }
        }

        impl<'de> Deserialize<'de> for AgentOptions {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                // Only the binary codec has formats; JSON, TOML and rhai maps name their fields.
                if !d.is_human_readable() && crate::compat::reading() < 2 {
                    return AgentOptionsV1::deserialize(d).map(AgentOptions::from);
                }
                AgentOptionsRepr::deserialize(d).map(AgentOptions::from)
            }
        }

        impl AgentOptions {
            /// `other`'s set fields win over `self`'s.
            pub fn overlay(&self, other: &AgentOptions) -> AgentOptions {
                AgentOptions {
                    $( $field: other.$field.clone().or_else(|| self.$field.clone()), )*
                    $( $field2: other.$field2.clone().or_else(|| self.$field2.clone()), )*
                }
            }

            /// The names of every option, for completion and error messages.
            pub const NAMES: &'static [&'static str] =
                &[$(stringify!($field),)* $(stringify!($field2),)*];
        }
    };
}

options! {
    /// `script` (default) or `claude`.
    backend: String,
    model: String,
    fallback_model: String,
    max_turns: u32,
    permission_mode: PermissionMode,
    effort: Effort,
    allowed_tools: Vec<String>,
    disallowed_tools: Vec<String>,
    /// The base tool set (`--tools`).
    tools: Vec<String>,
    /// Replaces the composed system prompt entirely.
    system_prompt: String,
    append_system_prompt: String,
    mcp_config: Vec<String>,
    strict_mcp_config: bool,
    add_dir: Vec<String>,
    settings: String,
    setting_sources: Vec<String>,
    /// The CLI's own per-invocation cap (`--max-budget-usd`).
    max_budget_usd: f64,
    /// Workshop's budget for this agent: checked before every send.
    max_cost_usd: f64,
    json_schema: String,
    worktree: String,
    no_session_persistence: bool,
    dangerously_skip_permissions: bool,
    working_dir: String,
    env: BTreeMap<String, String>,
    /// Per-turn watchdog in milliseconds (default 10 minutes).
    timeout_ms: u64,
    /// Backend inactivity watchdog in milliseconds (no output while a turn is open).
    inactivity_timeout_ms: u64,
    /// Bounded mailbox depth (default 5).
    queue_depth: u32,
    /// Inline script for the `script` backend.
    script: Vec<ScriptStep>,
    /// A TOML file of `[[turn]]` script steps for the `script` backend.
    script_file: String,
    /// The `claude` executable (default `claude` on PATH, or `$CLAUDE_CLI`).
    claude_bin: String,
    ; since format 2:
    /// Make this agent an orchestrator: its backend reaches the node's MCP server (the
    /// `workshop` tools: agents, asks, the board) with a token of its own, so its calls act as
    /// this agent, and short orchestrator guidance goes before its appended system prompt. Needs
    /// a node that serves MCP (`workshop node`); the `script` backend accepts it and ignores it.
    workshop_tools: bool,
}

impl AgentOptions {
    pub const DEFAULT_QUEUE_DEPTH: u32 = 5;

    /// What every view of an agent, a profile or the configuration shows in place of an `env`
    /// value (`info`, `profiles()`, `config()`, `--json`, MCP replies, `Debug`, logs): the keys
    /// are shown, the values never.
    pub const HIDDEN: &'static str = "<hidden>";

    /// A copy whose `env` values are all [`Self::HIDDEN`] (the keys kept).
    pub fn env_hidden(&self) -> AgentOptions {
        self.env_values_replaced(Self::HIDDEN)
    }

    /// A copy whose `env` values are all `placeholder` (the keys kept); no copy of the map
    /// when there is no `env`.
    pub fn env_values_replaced(&self, placeholder: &str) -> AgentOptions {
        let mut shown = self.clone();
        if let Some(env) = &mut shown.env {
            for v in env.values_mut() {
                *v = placeholder.to_string();
            }
        }
        shown
    }

    /// Whether `env` has values at all (keys with values to keep out of the database).
    pub fn has_env_values(&self) -> bool {
        self.env.as_ref().is_some_and(|e| !e.is_empty())
    }
    pub const DEFAULT_TIMEOUT_MS: u64 = 10 * 60 * 1000;

    pub fn backend_name(&self) -> &str {
        self.backend.as_deref().unwrap_or("script")
    }
    pub fn queue_depth(&self) -> u32 {
        self.queue_depth.unwrap_or(Self::DEFAULT_QUEUE_DEPTH)
    }
    pub fn timeout_ms(&self) -> u64 {
        self.timeout_ms.unwrap_or(Self::DEFAULT_TIMEOUT_MS)
    }
    pub fn permission_mode(&self) -> PermissionMode {
        self.permission_mode.unwrap_or_default()
    }

    /// The numeric options, each with the least value it takes (`crate::numbers`' rule): what
    /// `validate` checks, and what a console checks before decoding so that a negative value
    /// is refused naming its option.
    pub const WHOLE: &'static [(&'static str, u64, Option<u64>)] = &[
        ("max_turns", 1, Some(u32::MAX as u64)),
        ("timeout_ms", 1, None),
        ("inactivity_timeout_ms", 1, None),
        ("queue_depth", 1, Some(u32::MAX as u64)),
    ];
    /// The amount options (money): finite and 0 or more.
    pub const AMOUNTS: &'static [&'static str] = &["max_budget_usd", "max_cost_usd"];

    /// Checks what serde cannot: known backends, and the numbers rule for every numeric option
    /// (`crate::numbers`), naming the option and its range.
    pub fn validate(&self) -> Result<(), OptionError> {
        if let Some(b) = &self.backend {
            if !matches!(b.as_str(), "script" | "claude") {
                return Err(OptionError::Invalid(format!(
                    "unknown backend {b:?}: use \"script\" or \"claude\""
                )));
            }
        }
        let whole = [
            self.max_turns.map(u64::from),
            self.timeout_ms,
            self.inactivity_timeout_ms,
            self.queue_depth.map(u64::from),
        ];
        for ((name, min, max), v) in Self::WHOLE.iter().zip(whole) {
            if let Some(v) = v {
                if v < *min || max.is_some_and(|m| v > m) {
                    return Err(OptionError::Invalid(format!(
                        "{name} must be {}, got {v}",
                        crate::numbers::whole_range(*min, *max)
                    )));
                }
            }
        }
        for (name, v) in Self::AMOUNTS
            .iter()
            .zip([self.max_budget_usd, self.max_cost_usd])
        {
            if let Some(v) = v {
                crate::numbers::amount(name, v)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_prefers_the_later_layer() {
        let global = AgentOptions {
            model: Some("sonnet".into()),
            max_turns: Some(10),
            ..Default::default()
        };
        let agent = AgentOptions {
            model: Some("opus".into()),
            ..Default::default()
        };
        let eff = global.overlay(&agent);
        assert_eq!(eff.model.as_deref(), Some("opus"));
        assert_eq!(eff.max_turns, Some(10));
    }

    #[test]
    fn env_values_are_never_in_debug_nor_in_the_hidden_copy() {
        let o = AgentOptions {
            model: Some("opus".into()),
            env: Some(BTreeMap::from([(
                "ANTHROPIC_API_KEY".to_string(),
                "sk-secret-xyz".to_string(),
            )])),
            ..Default::default()
        };
        let debug = format!("{o:?} {o:#?}");
        assert!(!debug.contains("sk-secret-xyz"), "{debug}");
        assert!(debug.contains("ANTHROPIC_API_KEY") && debug.contains("<hidden>"));
        assert!(debug.contains("opus") && debug.starts_with("AgentOptions {"));
        let hidden = o.env_hidden();
        assert_eq!(
            hidden.env.as_ref().and_then(|e| e.get("ANTHROPIC_API_KEY")),
            Some(&"<hidden>".to_string())
        );
        assert_eq!(hidden.model, o.model);
        assert!(o.has_env_values() && !AgentOptions::default().has_env_values());
    }

    #[test]
    fn permission_modes_parse_both_spellings() {
        assert_eq!(
            "acceptEdits".parse::<PermissionMode>(),
            Ok(PermissionMode::AcceptEdits)
        );
        assert_eq!(
            ":dont_ask".parse::<PermissionMode>(),
            Ok(PermissionMode::DontAsk)
        );
        assert!(matches!(
            "yolo".parse::<PermissionMode>(),
            Err(OptionError::PermissionMode(_))
        ));
    }

    #[test]
    fn workshop_tools_is_listed_and_layers_like_any_option() {
        assert!(AgentOptions::NAMES.contains(&"workshop_tools"));
        let profile = AgentOptions {
            workshop_tools: Some(true),
            ..Default::default()
        };
        assert_eq!(
            profile.overlay(&AgentOptions::default()).workshop_tools,
            Some(true)
        );
        let off = AgentOptions {
            workshop_tools: Some(false),
            ..Default::default()
        };
        assert_eq!(profile.overlay(&off).workshop_tools, Some(false));
        assert_eq!(profile.validate(), Ok(()));
    }

    #[test]
    fn validation_rejects_nonsense() {
        let bad = AgentOptions {
            backend: Some("gpt".into()),
            ..Default::default()
        };
        assert!(bad.validate().is_err());
        let zero = AgentOptions {
            queue_depth: Some(0),
            ..Default::default()
        };
        assert!(zero.validate().is_err());
    }

    #[test]
    fn every_numeric_option_follows_the_numbers_rule_and_is_named() {
        let cases = [
            (
                AgentOptions {
                    timeout_ms: Some(0),
                    ..Default::default()
                },
                "timeout_ms must be a whole number, 1 or more, got 0",
            ),
            (
                AgentOptions {
                    inactivity_timeout_ms: Some(0),
                    ..Default::default()
                },
                "inactivity_timeout_ms must be a whole number, 1 or more, got 0",
            ),
            (
                AgentOptions {
                    queue_depth: Some(0),
                    ..Default::default()
                },
                "queue_depth must be a whole number from 1 to 4294967295, got 0",
            ),
            (
                AgentOptions {
                    max_turns: Some(0),
                    ..Default::default()
                },
                "max_turns must be a whole number from 1 to 4294967295, got 0",
            ),
            (
                AgentOptions {
                    max_cost_usd: Some(-1.0),
                    ..Default::default()
                },
                "max_cost_usd must be a finite number, 0 or more, got -1",
            ),
            (
                AgentOptions {
                    max_budget_usd: Some(f64::INFINITY),
                    ..Default::default()
                },
                "max_budget_usd must be a finite number, 0 or more, got inf",
            ),
            (
                AgentOptions {
                    max_cost_usd: Some(f64::NAN),
                    ..Default::default()
                },
                "max_cost_usd must be a finite number, 0 or more, got NaN",
            ),
        ];
        for (o, want) in cases {
            let e = o.validate().expect_err(want);
            assert_eq!(e.to_string(), format!("invalid option: {want}"));
        }
        let fine = AgentOptions {
            timeout_ms: Some(1),
            inactivity_timeout_ms: Some(1),
            queue_depth: Some(1),
            max_turns: Some(1),
            max_cost_usd: Some(0.0),
            max_budget_usd: Some(0.5),
            ..Default::default()
        };
        assert_eq!(fine.validate(), Ok(()));
    }
}
