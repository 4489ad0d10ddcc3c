//! Orchestrators: agents with `workshop_tools`. [`wrap`] puts every backend of a node behind a
//! decorator; when such an agent's session starts on a backend that speaks MCP, the decorator
//! mints the agent's token ([`McpAccess::mint`]), writes an MCP config naming the node's server
//! and the token to a file only the owner can read (`<data dir>/mcp/<agent>.json`; an ephemeral
//! node uses a private directory under the temp dir), and starts the real backend with a *copy*
//! of the spec that adds the file to `mcp_config`, allows the `workshop` tools and puts short
//! orchestrator guidance before the appended system prompt. The stored spec (persisted, shown by
//! `info()`) never changes, and the token is never on a command line, in an event or in a log.
//! When the session ends (shutdown, dismissal, the node stopping, a replacement) its token is
//! revoked and its file removed.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use workshop_agent::backend::{Backend, BackendError, Backends, BoxFut, Session, TurnContext};
use workshop_types::{AgentSpec, TurnError, TurnResult};

use crate::mcp_access::{random_token, McpAccess};

/// The name of the node's server in an agent's MCP config (tools are `mcp__workshop__<tool>`).
pub const SERVER_NAME: &str = "workshop";
/// What `allowed_tools` gains so the server's tools run without a permission prompt under `-p`
/// (Claude Code 2.1.x takes a server's name as "every tool of that server").
pub const ALLOWED_TOOLS: &str = "mcp__workshop";
/// The directory under a durable node's data dir that holds the agents' MCP configs.
pub const CONFIG_DIR: &str = "mcp";

/// The orchestrator guidance put before an agent's appended system prompt.
pub fn guidance(agent: &str) -> String {
    format!(
        "You are an orchestrator: you run a fleet of agents on a workshop node through the \
         `workshop` MCP tools (create_agent, agents, status, ask, cast, await, await_all, \
         dismiss, add_work, board and more). What you do there is recorded as done by you \
         ({agent}).\n\
         - Prefer cast to several agents, then await_all, for work that can run in parallel; ask \
         waits for one answer.\n\
         - Put lasting or dependent work on the board (add_work with depends_on) and follow it \
         with board.\n\
         - Dismiss agents you no longer need.\n\
         - Your own budget is set by the operator and cannot be raised through these tools."
    )
}

/// Every backend of `backends` behind the orchestrator decorator. `data_dir` is the node's
/// (None: an ephemeral node, whose configs go to a private temp directory, removed when the
/// last of these backends and their sessions are gone).
pub fn wrap(backends: &Backends, access: Arc<McpAccess>, data_dir: Option<&Path>) -> Backends {
    let wiring = Arc::new(Wiring {
        access,
        place: match data_dir {
            Some(dir) => Place::Data(dir.join(CONFIG_DIR)),
            None => Place::Temp(Mutex::new(None)),
        },
    });
    backends
        .names()
        .into_iter()
        .filter_map(|name| backends.get(name))
        .fold(Backends::default(), |out, inner| {
            out.with(Arc::new(Orchestrated {
                inner,
                wiring: wiring.clone(),
            }))
        })
}

/// Where the config files go.
enum Place {
    /// `<data dir>/mcp`, created (0700) on first use.
    Data(PathBuf),
    /// `$TMPDIR/workshop-mcp-<pid>-<random>`, created (0700, never an existing one) on first use.
    Temp(Mutex<Option<PathBuf>>),
}

/// What the decorators of one node share: the access table and the config directory.
struct Wiring {
    access: Arc<McpAccess>,
    place: Place,
}

impl Drop for Wiring {
    fn drop(&mut self) {
        if let Place::Temp(dir) = &self.place {
            if let Some(dir) = dir.lock().take() {
                if let Err(e) = fs::remove_dir_all(&dir) {
                    tracing::debug!(dir = %dir.display(), error = %e, "MCP config dir not removed");
                }
            }
        }
    }
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> BackendError {
    BackendError(format!("cannot {what} {}: {e}", path.display()))
}

impl Wiring {
    /// The config directory, created owner-only if it is not there yet.
    fn dir(&self) -> Result<PathBuf, BackendError> {
        match &self.place {
            Place::Data(dir) => {
                match fs::DirBuilder::new().mode(0o700).create(dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                            .map_err(|e| io_err("make owner-only", dir, e))?;
                    }
                    Err(e) => return Err(io_err("create", dir, e)),
                }
                Ok(dir.clone())
            }
            Place::Temp(slot) => {
                let mut slot = slot.lock();
                if let Some(dir) = slot.as_ref() {
                    return Ok(dir.clone());
                }
                let suffix = random_token().map_err(|e| BackendError(e.to_string()))?;
                let dir = std::env::temp_dir().join(format!(
                    "workshop-mcp-{}-{}",
                    std::process::id(),
                    suffix.get(..12).unwrap_or(&suffix)
                ));
                // `create`, not `create_all`: a directory someone else made there is refused.
                fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&dir)
                    .map_err(|e| io_err("create", &dir, e))?;
                *slot = Some(dir.clone());
                Ok(dir)
            }
        }
    }

    /// The spec the backend gets for an orchestrator, and the grant that ends with its session.
    fn wire(self: &Arc<Self>, spec: &AgentSpec) -> Result<(AgentSpec, Grant), BackendError> {
        let agent = spec.name.as_str();
        let url = self.access.url().ok_or_else(|| {
            BackendError(format!(
                "agent {agent} has workshop_tools, but this node serves no MCP server: run it on \
                 a node started with `workshop node` (it serves MCP on --mcp-port, default 4222, \
                 unless --no-mcp); a console's own in-process node serves none"
            ))
        })?;
        let dir = self.dir()?;
        let token = self
            .access
            .mint(agent)
            .map_err(|e| BackendError(e.to_string()))?;
        let path = dir.join(format!("{agent}.json"));
        let grant = Grant {
            wiring: self.clone(),
            token,
            path,
            released: false,
        };
        crate::secrets::write_private(&grant.path, config_json(&url, &grant.token).as_bytes())
            .map_err(|e| io_err("write", &grant.path, e))?;
        let mut wired = spec.clone();
        let o = &mut wired.options;
        o.mcp_config
            .get_or_insert_with(Vec::new)
            .push(grant.path.display().to_string());
        let allowed = o.allowed_tools.get_or_insert_with(Vec::new);
        if !allowed.iter().any(|t| t == ALLOWED_TOOLS) {
            allowed.push(ALLOWED_TOOLS.to_string());
        }
        let guide = guidance(agent);
        o.append_system_prompt = Some(match o.append_system_prompt.take() {
            Some(own) if !own.trim().is_empty() => format!("{guide}\n\n{own}"),
            _ => guide,
        });
        Ok((wired, grant))
    }
}

/// The MCP config Claude Code 2.1.x reads for a streamable-HTTP server with a bearer token.
fn config_json(url: &str, token: &str) -> String {
    serde_json::json!({
        "mcpServers": {
            SERVER_NAME: {
                "type": "http",
                "url": url,
                "headers": {"Authorization": format!("Bearer {token}")},
            }
        }
    })
    .to_string()
}

/// One session's token and config file: revoked and removed when the session ends (or the
/// grant is dropped). A newer session of the same agent has its own token and has rewritten the
/// file, so an older grant ending touches neither.
struct Grant {
    wiring: Arc<Wiring>,
    token: String,
    path: PathBuf,
    released: bool,
}

impl Grant {
    fn release(&mut self) {
        if std::mem::replace(&mut self.released, true) {
            return;
        }
        self.wiring.access.revoke_token(&self.token);
        // The file is this grant's only while it still holds this grant's token.
        let ours = fs::read_to_string(&self.path).is_ok_and(|c| c.contains(&self.token));
        if ours {
            if let Err(e) = fs::remove_file(&self.path) {
                tracing::debug!(path = %self.path.display(), error = %e, "MCP config not removed");
            }
        }
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        self.release();
    }
}

/// A backend behind the orchestrator decorator.
struct Orchestrated {
    inner: Arc<dyn Backend>,
    wiring: Arc<Wiring>,
}

impl Backend for Orchestrated {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn speaks_mcp(&self) -> bool {
        self.inner.speaks_mcp()
    }

    fn start_session(&self, spec: &AgentSpec) -> Result<Box<dyn Session>, BackendError> {
        // Backends that speak no MCP (`script`) accept the option and have nothing to wire.
        if spec.options.workshop_tools != Some(true) || !self.inner.speaks_mcp() {
            return self.inner.start_session(spec);
        }
        let (wired, grant) = self.wiring.wire(spec)?;
        // On failure the grant is dropped here: token revoked, file removed.
        let inner = self.inner.start_session(&wired)?;
        Ok(Box::new(OrchestratorSession { inner, grant }))
    }
}

/// An orchestrator's session; its grant ends after the inner session (fields drop in order).
struct OrchestratorSession {
    inner: Box<dyn Session>,
    grant: Grant,
}

impl Session for OrchestratorSession {
    fn turn<'a>(
        &'a mut self,
        prompt: &'a str,
        ctx: TurnContext,
    ) -> BoxFut<'a, Result<TurnResult, TurnError>> {
        self.inner.turn(prompt, ctx)
    }

    fn reset(&mut self) -> BoxFut<'_, Result<(), BackendError>> {
        self.inner.reset()
    }

    fn shutdown(&mut self) -> BoxFut<'_, ()> {
        Box::pin(async move {
            self.inner.shutdown().await;
            // The token stops working as soon as the session is released, not only when the
            // session value is dropped later.
            self.grant.release();
        })
    }

    fn session_id(&self) -> Option<String> {
        self.inner.session_id()
    }

    fn survives_panic(&self) -> bool {
        self.inner.survives_panic()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use workshop_agent::backend::claude::args::build_args;
    use workshop_agent::backend::script::ScriptBackend;
    use workshop_types::{AgentName, AgentOptions};

    use crate::mcp_access::Caller;

    const URL: &str = "http://127.0.0.1:4999/mcp";

    /// A backend that speaks MCP and records the spec each session was started with (its
    /// sessions are script sessions).
    #[derive(Default)]
    struct Recorder {
        seen: Mutex<Vec<AgentSpec>>,
        /// The token in the config file the session was given, read when it started.
        tokens: Mutex<Vec<String>>,
        fail: bool,
    }

    impl Backend for Recorder {
        fn name(&self) -> &'static str {
            "claude"
        }
        fn speaks_mcp(&self) -> bool {
            true
        }
        fn start_session(&self, spec: &AgentSpec) -> Result<Box<dyn Session>, BackendError> {
            self.seen.lock().push(spec.clone());
            if let Some(config) = spec.options.mcp_config.iter().flatten().last() {
                if let Ok(text) = fs::read_to_string(config) {
                    if let Some((_, t)) = text.split_once("Bearer ") {
                        self.tokens.lock().push(t.chars().take(64).collect());
                    }
                }
            }
            if self.fail {
                return Err(BackendError("the inner backend failed".into()));
            }
            ScriptBackend.start_session(spec)
        }
    }

    fn served() -> Arc<McpAccess> {
        let access = Arc::new(McpAccess::new());
        access.served(URL.into(), None);
        access
    }

    fn orchestrator_spec() -> AgentSpec {
        AgentSpec {
            name: AgentName::new("boss").expect("name"),
            role: Some("You lead.".into()),
            system_prompt: Some("Rust project.\n\nYou lead.".into()),
            options: AgentOptions {
                backend: Some("claude".into()),
                workshop_tools: Some(true),
                allowed_tools: Some(vec!["Read".into()]),
                mcp_config: Some(vec!["/home/me/other.json".into()]),
                append_system_prompt: Some("Be brief.".into()),
                ..Default::default()
            },
            resume_session: None,
        }
    }

    fn wrapped(inner: Arc<dyn Backend>, access: &Arc<McpAccess>, dir: Option<&Path>) -> Backends {
        wrap(&Backends::default().with(inner), access.clone(), dir)
    }

    fn start(backends: &Backends, name: &str, spec: &AgentSpec) -> Box<dyn Session> {
        match backends.get(name).expect("backend").start_session(spec) {
            Ok(s) => s,
            Err(e) => panic!("the session did not start: {e}"),
        }
    }

    /// The token in an MCP config file, checking the file's whole shape on the way.
    fn token_in(path: &Path) -> String {
        let text = fs::read_to_string(path).expect("config file");
        let v: serde_json::Value = serde_json::from_str(&text).expect("config is JSON");
        let servers = v["mcpServers"].as_object().expect("mcpServers");
        assert_eq!(servers.len(), 1, "{v}");
        let server = &servers["workshop"];
        assert_eq!(server["type"], "http", "{v}");
        assert_eq!(server["url"], URL, "{v}");
        let auth = server["headers"]["Authorization"]
            .as_str()
            .expect("an Authorization header");
        let token = auth.strip_prefix("Bearer ").expect("a bearer token");
        assert_eq!(token.len(), 64, "{auth}");
        token.to_string()
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn an_orchestrator_starts_on_a_copy_wired_to_a_private_config_and_the_stored_spec_is_untouched()
    {
        let data = tempfile::tempdir().expect("data dir");
        let access = served();
        let recorder = Arc::new(Recorder::default());
        let backends = wrapped(recorder.clone(), &access, Some(data.path()));
        let spec = orchestrator_spec();
        let stored = spec.clone();
        let _session = start(&backends, "claude", &spec);
        assert_eq!(spec, stored, "the caller's spec is never changed");

        let dir = data.path().join("mcp");
        let path = dir.join("boss.json");
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&path), 0o600);
        let names: Vec<String> = fs::read_dir(&dir)
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["boss.json"], "no temp file is left behind");
        let token = token_in(&path);
        assert_eq!(access.caller(&token), Some(Caller::Agent("boss".into())));

        let seen = recorder.seen.lock().clone();
        assert_eq!(seen.len(), 1);
        let wired = &seen[0];
        let o = &wired.options;
        assert_eq!(
            o.mcp_config,
            Some(vec![
                "/home/me/other.json".to_string(),
                path.display().to_string()
            ])
        );
        assert_eq!(
            o.allowed_tools,
            Some(vec!["Read".to_string(), "mcp__workshop".to_string()])
        );
        let append = o.append_system_prompt.as_deref().expect("appended prompt");
        assert!(append.starts_with(&guidance("boss")), "{append}");
        assert!(append.ends_with("\n\nBe brief."), "{append}");
        assert!(append.contains("create_agent") && append.contains("cannot be raised"));
        assert_eq!(
            wired.system_prompt, stored.system_prompt,
            "the user's own system prompt is kept as it is"
        );
        let unchanged = AgentSpec {
            options: AgentOptions {
                mcp_config: stored.options.mcp_config.clone(),
                allowed_tools: stored.options.allowed_tools.clone(),
                append_system_prompt: stored.options.append_system_prompt.clone(),
                ..o.clone()
            },
            ..wired.clone()
        };
        assert_eq!(unchanged, stored, "nothing else differs");
    }

    #[test]
    fn the_claude_command_line_names_the_config_file_never_the_token() {
        let data = tempfile::tempdir().expect("data dir");
        let access = served();
        let recorder = Arc::new(Recorder::default());
        let backends = wrapped(recorder.clone(), &access, Some(data.path()));
        let _session = start(&backends, "claude", &orchestrator_spec());
        let path = data.path().join("mcp/boss.json");
        let token = token_in(&path);
        let wired = recorder.seen.lock()[0].clone();
        let argv = build_args(
            &wired.options,
            wired.system_prompt.as_deref(),
            Some("a-session"),
        );
        assert!(
            argv.iter().all(|a| !a.contains(&token)),
            "the token is on the command line: {argv:?}"
        );
        let want = format!("--mcp-config={}", path.display());
        assert!(argv.contains(&want), "{argv:?}");
        assert!(
            argv.contains(&"--allowedTools=Read,mcp__workshop".to_string()),
            "{argv:?}"
        );
        let append = argv
            .iter()
            .find(|a| a.starts_with("--append-system-prompt="))
            .expect("an appended prompt");
        assert!(
            append.starts_with(
                "--append-system-prompt=Rust project.\n\nYou lead.\n\nYou are an orchestrator"
            ),
            "the composed prompt first, then the guidance: {append}"
        );
    }

    #[test]
    fn without_a_served_mcp_server_an_orchestrator_does_not_start_and_is_told_why() {
        let data = tempfile::tempdir().expect("data dir");
        let access = Arc::new(McpAccess::new());
        let recorder = Arc::new(Recorder::default());
        let backends = wrapped(recorder.clone(), &access, Some(data.path()));
        let e = match backends
            .get("claude")
            .expect("backend")
            .start_session(&orchestrator_spec())
        {
            Ok(_) => panic!("started without an MCP server"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains("serves no MCP server"), "{e}");
        assert!(
            e.contains("workshop node") && e.contains("--mcp-port"),
            "{e}"
        );
        assert!(e.contains("console"), "{e}");
        assert!(recorder.seen.lock().is_empty(), "the backend was not asked");
        assert!(!data.path().join("mcp").exists(), "nothing written");
    }

    #[test]
    fn a_failing_backend_leaves_no_token_and_no_file() {
        let data = tempfile::tempdir().expect("data dir");
        let access = served();
        let recorder = Arc::new(Recorder {
            fail: true,
            ..Default::default()
        });
        let backends = wrapped(recorder.clone(), &access, Some(data.path()));
        let spec = orchestrator_spec();
        let e = backends
            .get("claude")
            .expect("backend")
            .start_session(&spec)
            .err()
            .expect("the inner failure comes back");
        assert_eq!(e.0, "the inner backend failed");
        let wired = recorder.seen.lock()[0].clone();
        let path = PathBuf::from(wired.options.mcp_config.expect("wired").remove(1));
        assert!(!path.exists(), "the config was removed");
        let token = recorder.tokens.lock()[0].clone();
        assert_eq!(token.len(), 64);
        assert_eq!(access.caller(&token), None, "the token was revoked");
    }

    #[test]
    fn agents_without_the_option_and_backends_without_mcp_are_passed_through() {
        let data = tempfile::tempdir().expect("data dir");
        let access = Arc::new(McpAccess::new());
        let recorder = Arc::new(Recorder::default());
        let backends = wrap(
            &Backends::default()
                .with(recorder.clone())
                .with(Arc::new(ScriptBackend)),
            access.clone(),
            Some(data.path()),
        );
        assert_eq!(backends.names(), vec!["claude", "script"]);
        let mut plain = orchestrator_spec();
        plain.options.workshop_tools = Some(false);
        let _s = start(&backends, "claude", &plain);
        assert_eq!(recorder.seen.lock()[0], plain);
        // `script` speaks no MCP: the option is accepted even on a node that serves none.
        let mut scripted = orchestrator_spec();
        scripted.options.backend = Some("script".into());
        let _s = start(&backends, "script", &scripted);
        assert!(!data.path().join("mcp").exists(), "nothing written");
    }

    #[tokio::test]
    async fn a_session_that_ends_revokes_its_token_and_removes_its_file_but_not_a_newer_ones() {
        let data = tempfile::tempdir().expect("data dir");
        let access = served();
        let backends = wrapped(Arc::new(Recorder::default()), &access, Some(data.path()));
        let path = data.path().join("mcp/boss.json");
        let spec = orchestrator_spec();

        let mut first = start(&backends, "claude", &spec);
        let t1 = token_in(&path);
        first.shutdown().await;
        assert_eq!(
            access.caller(&t1),
            None,
            "a shut down session's token is dead"
        );
        assert!(!path.exists(), "and its config is gone");
        drop(first);

        // A crashed turn's session is replaced: the new one starts before the old is dropped.
        let old = start(&backends, "claude", &spec);
        let t2 = token_in(&path);
        let new = start(&backends, "claude", &spec);
        let t3 = token_in(&path);
        assert_ne!(t2, t3);
        assert_eq!(
            access.caller(&t2),
            None,
            "minting again replaced the old token"
        );
        drop(old);
        assert_eq!(access.caller(&t3), Some(Caller::Agent("boss".into())));
        assert_eq!(token_in(&path), t3, "the newer session's file stays");
        drop(new);
        assert_eq!(access.caller(&t3), None);
        assert!(!path.exists());
    }

    #[test]
    fn an_ephemeral_node_keeps_configs_in_a_private_temp_dir_removed_with_the_node() {
        let access = served();
        let recorder = Arc::new(Recorder::default());
        let backends = wrapped(recorder.clone(), &access, None);
        let session = start(&backends, "claude", &orchestrator_spec());
        let wired = recorder.seen.lock()[0].clone();
        let path = PathBuf::from(wired.options.mcp_config.expect("wired").remove(1));
        let dir = path.parent().expect("a directory").to_path_buf();
        let name = dir
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        assert!(
            name.starts_with(&format!("workshop-mcp-{}-", std::process::id())),
            "{name}"
        );
        assert!(dir.starts_with(std::env::temp_dir()), "{}", dir.display());
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(path, dir.join("boss.json"));
        assert_eq!(mode(&path), 0o600);
        token_in(&path);
        drop(backends);
        assert!(dir.exists(), "a live session keeps the directory");
        drop(session);
        assert!(
            !dir.exists(),
            "the last session and backend gone: the directory is removed"
        );
    }
}
