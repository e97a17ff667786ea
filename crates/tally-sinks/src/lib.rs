//! SIEM streaming: each sink a durable consumer of the log that sends the events matching its
//! search, in the format a security team's tools read ([`format`]: Tally JSON, OCSF, CEF), to
//! a receiver ([`transport`]: syslog over TCP, Splunk's HTTP Event Collector), from its own
//! cursor ([`sink`]).
//!
//! Architecture Invariant: a sink only reads the log and shows each event as its
//! configuration allows (personal values masked by default); a receiver that is down makes
//! the sink lag, never the log wait.

#![forbid(unsafe_code)]

pub mod format;
pub mod sink;
pub mod transport;

pub use format::Format;
pub use sink::{
    parse_sink_file, EventViews, PersonalData, Sink, SinkConsumer, SinkError, SinkSpec,
};
