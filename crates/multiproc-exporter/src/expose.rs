//! The adapter between the merge and the `exposition` crate: merged families are encoded
//! in place through [`FamilyView`] (no copy of the interned names and labels), and the
//! crate's negotiation and encoders are re-exported for the server.

use std::sync::Arc;

pub use exposition::{
    CONTENT_TYPE_OPENMETRICS, CONTENT_TYPE_TEXT, Escaping, Format, choose_format, encode,
    encode_openmetrics, encode_sized, encode_text, float_to_go_string, gzip_accepted,
};
use exposition::{FamilyView, SampleRef};

use crate::merge::MergedFamily;

impl FamilyView for MergedFamily {
    type Label = (Arc<str>, Arc<str>);

    fn name(&self) -> &str {
        &self.name
    }

    fn help(&self) -> &str {
        &self.help
    }

    fn type_name(&self) -> &str {
        &self.typ
    }

    fn samples(&self) -> impl Iterator<Item = SampleRef<'_, Self::Label>> {
        self.samples.iter().map(|s| SampleRef {
            name: &s.name,
            labels: &s.labels,
            value: s.value,
            // The fork's `latest` gauges carry a timestamp in seconds (a Python float).
            timestamp: s.timestamp.map(exposition::Timestamp::Seconds),
            exemplar: None,
        })
    }

    /// Names are interned: equal names are one `Arc<str>`.
    fn shares_names(&self) -> bool {
        true
    }
}
