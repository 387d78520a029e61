//! The storage service `quotestream-store` (docs/store.md): a stateless HTTP service in front
//! of PostgreSQL / TimescaleDB. Parts: [`cli`] (flags), [`server`] (startup, routes, drain),
//! [`ingest`] (POST /quotes/batch), [`pool`] (database sessions), [`health`] (/health,
//! /ready), [`metrics`] (/metrics).

pub mod cli;
pub mod health;
pub mod ingest;
pub mod metrics;
pub mod pool;
pub mod server;
