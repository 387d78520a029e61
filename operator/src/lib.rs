//! The quotestream control plane as a library: the desired state the reconciler applies
//! ([`resources`]), kept free of API calls so it can be tested as plain functions.

pub mod controller;
pub mod history;
pub mod leader;
pub mod metrics;
pub mod policy;
pub mod resources;
pub mod run;
pub mod server;
