//! SIEM sinks in the server: the privacy layer shows each record to a sink as its
//! configuration allows (`tally_sinks::EventViews`).

use tally_privacy::record::View;

use crate::privacy::Privacy;

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
