//! The quotestream data plane: one worker process streams one shard of a QuoteStream from its
//! source, through validation, to its sinks.

pub mod quote;
