//! Detection over the log: rules that say which events matter and when ([`rule`]), their
//! evaluation over each tenant's records in leaf order ([`engine`]), and the alerts they
//! raise, each recorded as an event in the tenant's own log so that alerts are as
//! tamper-evident and searchable as what they are about.
//!
//! Architecture Invariant: the engine is pure. It reads records and returns alerts; appending
//! them, notifying people and remembering state across restarts belong to the consumer that
//! runs it.

#![forbid(unsafe_code)]

pub mod backtest;
pub mod consumer;
pub mod engine;
pub mod pack;
pub mod rule;

pub use consumer::{AlertConsumer, AlertOutput, RuleUpdates};
pub use engine::{Alert, Engine, EngineState};
pub use rule::{
    check_rules, parse_rule_file, Condition, Rule, RuleError, RuleFile, RuleSpec, Schedule,
    Severity, WhenSpec,
};
