//! End-to-end scenarios: the real `workshop` binary, run as a user runs it.

mod claude;
mod client_api;
mod client_board_workers;
mod cluster;
mod cluster_config;
mod console;
mod durability;
mod mcp_clients;
mod orchestrator;
mod remote_cli;
mod support;
