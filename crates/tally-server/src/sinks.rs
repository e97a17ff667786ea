//! SIEM sinks in the server: the privacy layer shows each record to a sink as its
//! configuration allows (`tally_sinks::EventViews`), and what the sinks gave up on is counted
//! in `/metrics`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tally_privacy::record::View;

use crate::privacy::Privacy;

/// The sinks' own metrics (their positions and lag are the consumers').
#[derive(Default)]
pub struct SinkMetrics {
    names: Vec<String>,
    dead_lettered: Family<Vec<(String, String)>, Counter>,
}

impl SinkMetrics {
    /// The counter of events `sink` wrote to its dead-letter file.
    pub fn dead_lettered(&mut self, sink: &str) -> Counter {
        self.names.push(sink.to_string());
        self.dead_lettered
            .get_or_create(&vec![("sink".to_string(), sink.to_string())])
            .clone()
    }
}

impl crate::Component for SinkMetrics {
    fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.sub_registry_with_prefix("tally_sink").register(
            "dead_lettered_events",
            "Events a sink gave up on after its max_attempts and wrote to its dead-letter file",
            self.dead_lettered.clone(),
        );
    }

    fn health(&self) -> (bool, serde_json::Value) {
        // Each sink's lag and last error are under `consumers`.
        (true, serde_json::json!({"sinks": self.names}))
    }
}

impl tally_sinks::EventViews for Privacy {
    fn clear(&self, tenant: &str, stored: &[u8]) -> Result<Vec<u8>, String> {
        self.open(tenant, stored, View::Clear)
            .map(|o| o.bytes)
            .map_err(|e| e.to_string())
    }

    fn shown(&self, tenant: &str, stored: &[u8], clear: bool) -> Result<Vec<u8>, String> {
        let view = if clear { View::Clear } else { View::Masked };
        self.open(tenant, stored, view)
            .map(|o| o.bytes)
            .map_err(|e| e.to_string())
    }
}
