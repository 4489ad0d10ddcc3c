//! The rmcp server handler: lists the catalogue and runs tool calls through `tools::call`
//! with the caller the transport established (the HTTP layer puts it in the request's
//! extensions; stdio is the operator).

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CompleteRequestMethod,
    CompleteRequestParams, CompleteResult, ContentBlock, Implementation, ListPromptsRequestMethod,
    ListPromptsResult, ListResourceTemplatesRequestMethod, ListResourceTemplatesResult,
    ListResourcesRequestMethod, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ProgressNotificationParam, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use workshop_node::mcp_access::Caller;
use workshop_node::Client;

use crate::tools::{self, ToolCtx};

/// What the server tells a host when it connects.
pub const INSTRUCTIONS: &str = "workshop runs a fleet of named, long-lived coding agents and a \
shared work board across a cluster of nodes. create_agent starts an agent; ask waits for its \
answer, cast queues a prompt and await collects it (cast to several, then await_all, to work in \
parallel); add_work puts items on the board for board workers; status, board and events show \
what is going on. Dismiss agents you no longer need.";

/// One MCP service over a node's `Client` (cheap to clone: one per HTTP session).
#[derive(Clone)]
pub struct WorkshopMcp {
    client: Client,
    /// The caller when the transport names none (stdio: the operator).
    default_caller: Option<Caller>,
    tools: Arc<Vec<Tool>>,
}

impl WorkshopMcp {
    /// A service whose callers come from the HTTP layer (requests without one are refused).
    pub fn http(client: Client) -> Self {
        Self {
            client,
            default_caller: None,
            tools: Arc::new(tools::catalogue()),
        }
    }

    /// A service whose every call is the operator's (stdio: whoever launched the process).
    pub fn operator(client: Client) -> Self {
        Self {
            client,
            default_caller: Some(Caller::Operator),
            tools: Arc::new(tools::catalogue()),
        }
    }

    fn caller(&self, ctx: &RequestContext<RoleServer>) -> Option<Caller> {
        ctx.extensions
            .get::<http::request::Parts>()
            .and_then(|p| p.extensions.get::<Caller>().cloned())
            .or_else(|| self.default_caller.clone())
    }
}

/// A tool result: text first, the reply as structured content beside it.
pub fn tool_result(r: Result<tools::Reply, tools::ToolError>) -> CallToolResult {
    match r {
        Ok(reply) => {
            let mut out = CallToolResult::success(vec![ContentBlock::text(reply.text)]);
            out.structured_content = Some(reply.structured);
            out
        }
        Err(e) => {
            let mut out = CallToolResult::error(vec![ContentBlock::text(e.message.clone())]);
            out.structured_content = Some(e.structured());
            out
        }
    }
}

impl ServerHandler for WorkshopMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(
                Implementation::new("workshop", env!("CARGO_PKG_VERSION")).with_title("workshop"),
            )
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.tools.as_ref().clone()))
    }

    // Only tools are declared: what is not declared is not answered (rmcp's defaults would
    // answer empty lists, which a client reads as a capability the server never declared).
    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        Err(ErrorData::method_not_found::<ListPromptsRequestMethod>())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Err(ErrorData::method_not_found::<ListResourcesRequestMethod>())
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Err(ErrorData::method_not_found::<
            ListResourceTemplatesRequestMethod,
        >())
    }

    async fn complete(
        &self,
        _request: CompleteRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        Err(ErrorData::method_not_found::<CompleteRequestMethod>())
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tools.iter().find(|t| t.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some(caller) = self.caller(&context) else {
            return Err(ErrorData::invalid_request(
                "no caller: this request did not pass the server's authentication",
                None,
            ));
        };
        if self.get_tool(&request.name).is_none() {
            return Err(ErrorData::invalid_params(
                format!("no tool named {:?}; tools/list lists them", request.name),
                None,
            ));
        }
        let mut ctx = ToolCtx::new(self.client.clone(), caller);
        ctx.cancel = context.ct.clone();
        if let Some(token) = context.meta.get_progress_token() {
            let peer = context.peer.clone();
            let step = Arc::new(std::sync::atomic::AtomicU64::new(0));
            ctx.progress = Some(Arc::new(move |message: String| {
                let n = step.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                let peer = peer.clone();
                let param =
                    ProgressNotificationParam::new(token.clone(), n as f64).with_message(message);
                tokio::spawn(async move {
                    let _ = peer.notify_progress(param).await;
                });
            }));
        }
        let args = request
            .arguments
            .map(serde_json::Value::Object)
            .unwrap_or(serde_json::Value::Null);
        let r = tools::call(&ctx, &request.name, args).await;
        Ok(tool_result(r).into())
    }
}
