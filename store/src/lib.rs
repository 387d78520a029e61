//! The storage service `quotestream-store` (docs/store.md): a stateless HTTP service in front
//! of PostgreSQL / TimescaleDB. Parts: [`cli`] (flags), [`server`] (startup, routes, drain),
//! [`ingest`] (POST /quotes/batch), [`pool`] (database sessions), [`health`] (/health,
//! /ready), [`metrics`] (/metrics), [`query`] (the read API under /v1, docs/query-api.md),
//! [`openapi`] (/openapi.json), [`page`] (the live page at /).

pub mod cli;
pub mod health;
pub mod ingest;
pub mod metrics;
pub mod openapi;
pub mod page;
pub mod pool;
pub mod query;
pub mod server;
