//! End-to-end scenarios: the real `workshop` binary, run as a user runs it.

mod claude;
mod client_api;
mod console;
mod durability;
mod support;
