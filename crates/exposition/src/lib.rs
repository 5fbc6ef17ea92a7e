//! `exposition`: the Prometheus exposition formats, text 0.0.4 and OpenMetrics 1.0.
//!
//! * [`model`]: families and samples ([`MetricFamily`], [`Sample`], [`Timestamp`],
//!   [`Exemplar`]) and [`FamilyView`], the trait the encoder reads families through, so
//!   that a program with its own representation (multiproc-exporter's interned families)
//!   encodes without copying.
//! * [`encode`](mod@encode): [`encode_text`] and [`encode_openmetrics`] write byte for byte what
//!   Python's prometheus_client 0.26.0 `generate_latest` and
//!   `openmetrics.exposition.generate_latest` write (float formatting, escaping, name
//!   escaping schemes, `_created`/`_gsum`/`_gcount` gauges in text, timestamps as both
//!   upstream and the postmates fork write them, exemplars).
//! * [`negotiate`]: Python's `choose_encoder` ([`choose_format`]), `gzip_accepted`, gzip
//!   detection, and [`Negotiated`]: format, Content-Type and gzip of one scrape.
//! * [`parse`](mod@parse): the parser and validator; errors name the line and what is wrong.
//! * [`float`] and [`names`]: the number and name rules both sides share.
//!
//! `parse(encode(x)) == x` for every family set the format can express (see the crate's
//! property tests).
#![forbid(unsafe_code)]

pub mod encode;
pub mod error;
pub mod float;
pub mod model;
pub mod names;
pub mod negotiate;
pub mod parse;

pub use encode::{encode, encode_openmetrics, encode_sized, encode_text};
pub use error::{ErrorKind, ParseError};
pub use float::{float_to_go_string, push_float_go, python_repr};
pub use model::{
    Exemplar, FamilyView, LabelPair, MetricFamily, MetricType, Sample, SampleRef, Timestamp,
};
pub use names::Escaping;
pub use negotiate::{
    CONTENT_TYPE_OPENMETRICS, CONTENT_TYPE_TEXT, Format, Negotiated, choose_format, gzip,
    gzip_accepted, is_gzip,
};
pub use parse::{parse, parse_bytes, validate};
