//! `workshop mcp --stdio`: the same tools over stdin/stdout, as the operator.

use rmcp::ServiceExt;
use workshop_node::Client;

use crate::handler::WorkshopMcp;

/// Serve MCP on this process's stdin and stdout until the host closes them.
pub async fn serve_stdio(client: Client) -> Result<(), String> {
    let service = WorkshopMcp::operator(client)
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| format!("the MCP stdio session did not start: {e}"))?;
    service
        .waiting()
        .await
        .map_err(|e| format!("the MCP stdio session failed: {e}"))?;
    Ok(())
}
