//! The kata agent API. `agent`/`health` hold the protobuf messages, `*_ttrpc` the ttrpc clients
//! and server traits, all generated from `protos/` by `make protocols` (see codegen/).

pub mod agent;
pub mod agent_ttrpc;
pub mod health;
pub mod health_ttrpc;
