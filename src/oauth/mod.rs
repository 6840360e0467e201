//! passgate as an OAuth 2.1 authorization server for MCP clients, and the
//! resource-server side that protects `/mcp`.

pub mod grants;
