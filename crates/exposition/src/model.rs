//! The data model: owned families and samples (what the parser returns and the encoder
//! takes), and the [`FamilyView`] trait through which the encoder reads any other
//! representation (multiproc-exporter's interned families) without copying it.

use std::fmt;

use crate::float::same_f64;

/// A metric type as Python's `Metric.type` names it (OpenMetrics names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricType {
    /// `counter`.
    Counter,
    /// `gauge`.
    Gauge,
    /// `histogram`.
    Histogram,
    /// `gaugehistogram`.
    GaugeHistogram,
    /// `summary`.
    Summary,
    /// `info`.
    Info,
    /// `stateset`.
    StateSet,
    /// `unknown` (`untyped` in the text format).
    Unknown,
}

impl MetricType {
    /// Every type, in declaration order.
    pub const ALL: [MetricType; 8] = [
        MetricType::Counter,
        MetricType::Gauge,
        MetricType::Histogram,
        MetricType::GaugeHistogram,
        MetricType::Summary,
        MetricType::Info,
        MetricType::StateSet,
        MetricType::Unknown,
    ];

    /// The OpenMetrics name (`counter`, `gaugehistogram`, `unknown`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
            MetricType::Unknown => "unknown",
        }
    }

    /// The type of an OpenMetrics `# TYPE` line (`untyped` is not one).
    pub fn from_openmetrics(s: &str) -> Option<MetricType> {
        MetricType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The type of a text 0.0.4 `# TYPE` line: `counter`, `gauge`, `histogram`, `summary`,
    /// `untyped` (Prometheus's list).
    pub fn from_text(s: &str) -> Option<MetricType> {
        match s {
            "counter" => Some(MetricType::Counter),
            "gauge" => Some(MetricType::Gauge),
            "histogram" => Some(MetricType::Histogram),
            "summary" => Some(MetricType::Summary),
            "untyped" => Some(MetricType::Unknown),
            _ => None,
        }
    }

    /// Sample name suffixes of this type in OpenMetrics (Python's `type_suffixes`).
    pub fn openmetrics_suffixes(self) -> &'static [&'static str] {
        match self {
            MetricType::Counter => &["_total", "_created"],
            MetricType::Summary => &["", "_count", "_sum", "_created"],
            MetricType::Histogram => &["_count", "_sum", "_bucket", "_created"],
            MetricType::GaugeHistogram => &["_gcount", "_gsum", "_bucket"],
            MetricType::Info => &["_info"],
            MetricType::Gauge | MetricType::StateSet | MetricType::Unknown => &[""],
        }
    }

    /// Sample name suffixes of this type in the text format, relative to the `# TYPE`
    /// name (a counter's `# TYPE` name already ends in `_total`).
    pub fn text_suffixes(self) -> &'static [&'static str] {
        match self {
            MetricType::Summary => &["", "_count", "_sum"],
            MetricType::Histogram | MetricType::GaugeHistogram => &["_bucket", "_count", "_sum"],
            _ => &[""],
        }
    }
}

impl fmt::Display for MetricType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A sample's timestamp, in the form it came in, so that it is written back unchanged.
#[derive(Debug, Clone, Copy)]
pub enum Timestamp {
    /// Seconds as a Python float (`time.time()`; what the postmates fork's `latest` gauges
    /// and upstream's `Sample(timestamp=...)` carry). Text: `int(ts * 1000)` milliseconds;
    /// OpenMetrics: `repr(ts)` seconds. This is what the OpenMetrics parser returns.
    Seconds(f64),
    /// Integer milliseconds, as the text format writes them and its parser returns them.
    /// OpenMetrics: the same instant as decimal seconds (`1700000000.123`).
    Millis(i64),
}

impl PartialEq for Timestamp {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Timestamp::Seconds(a), Timestamp::Seconds(b)) => same_f64(*a, *b),
            (Timestamp::Millis(a), Timestamp::Millis(b)) => a == b,
            _ => false,
        }
    }
}

/// An OpenMetrics exemplar (`# {trace_id="x"} 0.5 1700000000.0` after a sample).
#[derive(Debug, Clone)]
pub struct Exemplar {
    /// Exemplar labels, written in sorted order.
    pub labels: Vec<(String, String)>,
    /// Exemplar value.
    pub value: f64,
    /// Optional timestamp.
    pub timestamp: Option<Timestamp>,
}

impl PartialEq for Exemplar {
    fn eq(&self, other: &Self) -> bool {
        self.labels == other.labels
            && same_f64(self.value, other.value)
            && self.timestamp == other.timestamp
    }
}

/// One sample line.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Full sample name (`http_requests_total`, `latency_bucket`, ...).
    pub name: String,
    /// Labels in the order they were given (the encoder writes them sorted).
    pub labels: Vec<(String, String)>,
    /// Value.
    pub value: f64,
    /// Optional timestamp.
    pub timestamp: Option<Timestamp>,
    /// Optional exemplar (OpenMetrics only; the text format drops it, as Python does).
    pub exemplar: Option<Exemplar>,
}

impl Sample {
    /// A sample without timestamp or exemplar.
    pub fn new(name: impl Into<String>, labels: &[(&str, &str)], value: f64) -> Sample {
        Sample {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
            timestamp: None,
            exemplar: None,
        }
    }

    /// The value of label `name`, if present.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// NaN equals NaN so that parse(encode(x)) == x holds for NaN values too.
impl PartialEq for Sample {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.labels == other.labels
            && same_f64(self.value, other.value)
            && self.timestamp == other.timestamp
            && self.exemplar == other.exemplar
    }
}

/// One metric family: Python's `Metric`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricFamily {
    /// Family name (counters without `_total`, info without `_info`).
    pub name: String,
    /// Help text (unescaped).
    pub help: String,
    /// Type.
    pub typ: MetricType,
    /// Unit (OpenMetrics `# UNIT`), empty when none.
    pub unit: String,
    /// Samples in output order.
    pub samples: Vec<Sample>,
}

impl MetricFamily {
    /// A family without samples or unit.
    pub fn new(name: impl Into<String>, help: impl Into<String>, typ: MetricType) -> Self {
        MetricFamily {
            name: name.into(),
            help: help.into(),
            typ,
            unit: String::new(),
            samples: Vec::new(),
        }
    }
}

/// A label as the encoder reads it: `(name, value)` pairs of any string type.
pub trait LabelPair {
    /// Label name.
    fn label_name(&self) -> &str;
    /// Label value.
    fn label_value(&self) -> &str;
}

impl<A: AsRef<str>, B: AsRef<str>> LabelPair for (A, B) {
    fn label_name(&self) -> &str {
        self.0.as_ref()
    }
    fn label_value(&self) -> &str {
        self.1.as_ref()
    }
}

/// One sample as the encoder reads it, borrowed from whatever holds it.
#[derive(Debug, Clone, Copy)]
pub struct SampleRef<'a, L> {
    /// Full sample name.
    pub name: &'a str,
    /// Labels with unique names, in any order (the encoder sorts them).
    pub labels: &'a [L],
    /// Value.
    pub value: f64,
    /// Optional timestamp.
    pub timestamp: Option<Timestamp>,
    /// Optional exemplar (OpenMetrics only).
    pub exemplar: Option<&'a Exemplar>,
}

/// A family as the encoder reads it. Implemented by [`MetricFamily`] and by any other
/// holder of families (multiproc-exporter's merged, interned families), so that the
/// encoder writes straight from them into one `String`.
pub trait FamilyView {
    /// The label pair type of the samples.
    type Label: LabelPair;
    /// Family name (counters without `_total`).
    fn name(&self) -> &str;
    /// Help text (unescaped).
    fn help(&self) -> &str;
    /// Type as Python's `Metric.type` spells it (`counter`, `gaugehistogram`, ...).
    fn type_name(&self) -> &str;
    /// Unit, empty when none.
    fn unit(&self) -> &str {
        ""
    }
    /// The samples in output order.
    fn samples(&self) -> impl Iterator<Item = SampleRef<'_, Self::Label>>;
    /// Whether samples with equal names (sample and label names) share one string, so
    /// that the encoder may remember what it checked by address. Checking strings owned
    /// per sample through that memory would only add lookups that always miss.
    fn shares_names(&self) -> bool {
        false
    }
}

impl FamilyView for MetricFamily {
    type Label = (String, String);
    fn name(&self) -> &str {
        &self.name
    }
    fn help(&self) -> &str {
        &self.help
    }
    fn type_name(&self) -> &str {
        self.typ.as_str()
    }
    fn unit(&self) -> &str {
        &self.unit
    }
    fn samples(&self) -> impl Iterator<Item = SampleRef<'_, Self::Label>> {
        self.samples.iter().map(|s| SampleRef {
            name: &s.name,
            labels: &s.labels,
            value: s.value,
            timestamp: s.timestamp,
            exemplar: s.exemplar.as_ref(),
        })
    }
}
