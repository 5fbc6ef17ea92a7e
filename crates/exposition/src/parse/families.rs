//! Lexed lines into families, checking the rules that span lines: every sample in its
//! family, metadata before samples and once, families not split, no duplicate series,
//! `le`/`quantile` where the type needs them, `# EOF` last (OpenMetrics).

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use crate::error::{ErrorKind, ParseError};
use crate::float::parse_value;
use crate::model::{MetricFamily, MetricType, Sample};
use crate::parse::line::{Line, RawSample, lex};

/// Suffixes that give a sample name structure: one of these after a typed family's name
/// means the sample belongs to that family, or is outside it.
const STRUCTURAL: [&str; 8] = [
    "_bucket", "_count", "_sum", "_total", "_created", "_gcount", "_gsum", "_info",
];

/// Where a series was first seen: family index, sample index, line.
type SeriesAt = (usize, usize, usize);

struct Fam {
    /// The name of its metadata lines (`foo_total` for a text counter).
    key: String,
    model: MetricFamily,
    typed: bool,
    has_help: bool,
    has_unit: bool,
    first_line: usize,
    /// It was current and another family followed: it may not resume.
    closed: bool,
}

/// Builds families line by line, collecting every error (a bad line is skipped).
pub(crate) struct Builder {
    om: bool,
    fams: Vec<Fam>,
    by_key: HashMap<String, usize>,
    current: Option<usize>,
    /// Series by a hash of name and sorted labels; a hit is compared in full. Keys are
    /// not cloned strings: that was most of the parse time of a large body.
    series: HashMap<u64, Vec<SeriesAt>>,
    eof_line: Option<usize>,
    pub errors: Vec<ParseError>,
}

impl Builder {
    pub(crate) fn new(om: bool) -> Self {
        Builder {
            om,
            fams: Vec::new(),
            by_key: HashMap::new(),
            current: None,
            series: HashMap::new(),
            eof_line: None,
            errors: Vec::new(),
        }
    }

    /// Feeds line `n` (1-based).
    pub(crate) fn line(&mut self, n: usize, text: &str) {
        if self.eof_line.is_some() {
            self.err(n, ErrorKind::AfterEof);
            return;
        }
        let res = match lex(text, self.om) {
            Ok(Line::Blank | Line::Comment) => Ok(()),
            Ok(Line::Eof) => {
                self.eof_line = Some(n);
                Ok(())
            }
            Ok(Line::Meta { what, name, text }) => self.meta(n, what, name, text),
            Ok(Line::Sample(s)) => self.sample(n, s),
            Err(e) => Err(e),
        };
        if let Err(kind) = res {
            self.err(n, kind);
        }
    }

    fn err(&mut self, line: usize, kind: ErrorKind) {
        self.errors.push(ParseError { line, kind });
    }

    fn family(&mut self, key: &str, line: usize) -> usize {
        if let Some(&i) = self.by_key.get(key) {
            return i;
        }
        self.fams.push(Fam {
            key: key.to_string(),
            model: MetricFamily::new(key, "", MetricType::Unknown),
            typed: false,
            has_help: false,
            has_unit: false,
            first_line: line,
            closed: false,
        });
        self.by_key.insert(key.to_string(), self.fams.len() - 1);
        self.fams.len() - 1
    }

    /// Makes family `i` the current one, or says it is split.
    fn enter(&mut self, i: usize) -> Result<(), ErrorKind> {
        if self.current == Some(i) {
            return Ok(());
        }
        let f = &self.fams[i];
        if f.closed {
            return Err(ErrorKind::FamilySplit {
                name: f.key.clone(),
                first_line: f.first_line,
            });
        }
        if let Some(c) = self.current {
            self.fams[c].closed = true;
        }
        self.current = Some(i);
        Ok(())
    }

    fn meta(
        &mut self,
        n: usize,
        what: &'static str,
        name: String,
        text: String,
    ) -> Result<(), ErrorKind> {
        let i = self.family(&name, n);
        if !self.fams[i].model.samples.is_empty() {
            return Err(ErrorKind::MetadataAfterSamples { what, name });
        }
        self.enter(i)?;
        let om = self.om;
        let f = &mut self.fams[i];
        match what {
            "HELP" => {
                if f.has_help {
                    return Err(ErrorKind::DuplicateHelp(name));
                }
                f.has_help = true;
                f.model.help = text;
            }
            "TYPE" => {
                let parsed = if om {
                    MetricType::from_openmetrics(&text)
                } else {
                    MetricType::from_text(&text)
                };
                let Some(t) = parsed else {
                    return Err(ErrorKind::UnknownType(text));
                };
                if f.typed {
                    return Err(ErrorKind::DuplicateType {
                        name,
                        first: f.model.typ.to_string(),
                        second: t.to_string(),
                    });
                }
                f.typed = true;
                f.model.typ = t;
            }
            _ => {
                if f.has_unit {
                    return Err(ErrorKind::DuplicateUnit(name));
                }
                if !name.ends_with(&format!("_{text}")) {
                    return Err(ErrorKind::UnitMismatch { name, unit: text });
                }
                f.has_unit = true;
                f.model.unit = text;
            }
        }
        Ok(())
    }

    fn suffixes(&self, t: MetricType) -> &'static [&'static str] {
        if self.om {
            t.openmetrics_suffixes()
        } else {
            t.text_suffixes()
        }
    }

    /// The family a sample name belongs to, or why it belongs to none.
    fn owner(&self, name: &str) -> Result<Option<(usize, &'static str)>, ErrorKind> {
        for suffix in std::iter::once("").chain(STRUCTURAL) {
            let Some(base) = name.strip_suffix(suffix) else {
                continue;
            };
            if let Some(&i) = self.by_key.get(base) {
                let f = &self.fams[i];
                let allowed = if f.typed {
                    self.suffixes(f.model.typ)
                } else {
                    &[""]
                };
                if allowed.contains(&suffix) {
                    return Ok(Some((i, suffix)));
                }
            }
        }
        for suffix in std::iter::once("").chain(STRUCTURAL) {
            if let Some(base) = name.strip_suffix(suffix)
                && let Some(&i) = self.by_key.get(base)
                && self.fams[i].typed
            {
                return Err(ErrorKind::SampleOutsideFamily {
                    sample: name.to_string(),
                    family: base.to_string(),
                    typ: self.fams[i].model.typ.to_string(),
                    suffix: if suffix.is_empty() {
                        "unsuffixed"
                    } else {
                        suffix
                    }
                    .to_string(),
                });
            }
        }
        Ok(None)
    }

    fn sample(&mut self, n: usize, s: RawSample) -> Result<(), ErrorKind> {
        let (i, suffix) = match self.owner(&s.name)? {
            Some(found) => found,
            None => (self.family(&s.name, n), ""),
        };
        self.enter(i)?;
        let typ = self.fams[i].model.typ;
        check_labels(typ, suffix, &s)?;
        if s.exemplar.is_some() {
            let ok = match typ {
                MetricType::Histogram | MetricType::GaugeHistogram => suffix == "_bucket",
                MetricType::Counter => suffix == "_total",
                _ => false,
            };
            if !ok {
                return Err(ErrorKind::ExemplarNotAllowed(s.name));
            }
        }
        let sorted = sorted_labels(&s.labels);
        let fingerprint = {
            let mut h = DefaultHasher::new();
            s.name.hash(&mut h);
            sorted.hash(&mut h);
            h.finish()
        };
        let seen = self.series.entry(fingerprint).or_default();
        for &(fi, si, first_line) in seen.iter() {
            let other = &self.fams[fi].model.samples[si];
            if other.name != s.name || sorted_labels(&other.labels) != sorted {
                continue;
            }
            // The same series at different timestamps is history, not a duplicate.
            let (a, b) = (other.timestamp, s.timestamp);
            if a.is_none() || b.is_none() || a == b {
                return Err(ErrorKind::DuplicateSeries {
                    series: series_name(&s),
                    first_line,
                });
            }
        }
        seen.push((i, self.fams[i].model.samples.len(), n));
        self.fams[i].model.samples.push(Sample {
            name: s.name,
            labels: s.labels,
            value: s.value,
            timestamp: s.timestamp,
            exemplar: s.exemplar,
        });
        Ok(())
    }

    /// The families, and the error of a missing `# EOF` (OpenMetrics).
    pub(crate) fn finish(mut self, last_line: usize) -> (Vec<MetricFamily>, Vec<ParseError>) {
        if self.om && self.eof_line.is_none() {
            self.err(last_line, ErrorKind::MissingEof);
        }
        let om = self.om;
        let fams = self
            .fams
            .into_iter()
            .map(|mut f| {
                // Text counters are declared as `foo_total`; the model's name is `foo`.
                if !om
                    && f.model.typ == MetricType::Counter
                    && let Some(base) = f.key.strip_suffix("_total")
                {
                    f.model.name = base.to_string();
                }
                f.model
            })
            .collect();
        (fams, self.errors)
    }
}

fn sorted_labels(labels: &[(String, String)]) -> Vec<&(String, String)> {
    let mut v: Vec<&(String, String)> = labels.iter().collect();
    v.sort();
    v
}

fn series_name(s: &RawSample) -> String {
    let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{}{{{}}}", s.name, labels.join(","))
}

/// `le` on histogram buckets, `quantile` on summary quantiles, both numbers.
fn check_labels(typ: MetricType, suffix: &str, s: &RawSample) -> Result<(), ErrorKind> {
    let label = match (typ, suffix) {
        (MetricType::Histogram | MetricType::GaugeHistogram, "_bucket") => "le",
        (MetricType::Summary, "") => "quantile",
        _ => return Ok(()),
    };
    let Some((_, v)) = s.labels.iter().find(|(k, _)| k == label) else {
        return Err(ErrorKind::MissingLabel {
            sample: s.name.clone(),
            label,
        });
    };
    match parse_value(v) {
        Some(x) if !x.is_nan() => Ok(()),
        _ => Err(ErrorKind::InvalidLabelValue {
            label,
            value: v.clone(),
        }),
    }
}
