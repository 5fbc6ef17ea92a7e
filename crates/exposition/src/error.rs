//! Parse and validation errors: the line (1-based) and what is wrong with it.

use thiserror::Error;

/// One problem in exposition text, at a line of the input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line}: {kind}")]
pub struct ParseError {
    /// 1-based line number within the input.
    pub line: usize,
    /// What is wrong.
    pub kind: ErrorKind,
}

/// What is wrong with a line.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ErrorKind {
    /// The input is not UTF-8.
    #[error("invalid UTF-8")]
    InvalidUtf8,
    /// A line that is none of comment, metadata or sample.
    #[error("syntax error: {0}")]
    Syntax(String),
    /// A metric name outside `[a-zA-Z_:][a-zA-Z0-9_:]*` and not quoted.
    #[error("invalid metric name {0:?}")]
    InvalidMetricName(String),
    /// A label name outside `[a-zA-Z_][a-zA-Z0-9_]*` and not quoted.
    #[error("invalid label name {0:?}")]
    InvalidLabelName(String),
    /// A backslash escape other than `\\`, `\"` and `\n` (OpenMetrics).
    #[error("invalid escape sequence \\{0} in a quoted string")]
    InvalidEscape(char),
    /// The same label name twice in one sample.
    #[error("duplicate label name {0:?}")]
    DuplicateLabel(String),
    /// A sample value that is not a number.
    #[error("invalid value {0:?}")]
    InvalidValue(String),
    /// A timestamp that is not an integer (text) or a finite number (OpenMetrics).
    #[error("invalid timestamp {0:?}")]
    InvalidTimestamp(String),
    /// A `# TYPE` with a type the format does not have.
    #[error("unknown metric type {0:?}")]
    UnknownType(String),
    /// A second `# TYPE` line for one family.
    #[error("second TYPE line for {name} (first said {first}, this says {second})")]
    DuplicateType {
        /// Family name.
        name: String,
        /// Type of the first TYPE line.
        first: String,
        /// Type of this line.
        second: String,
    },
    /// A second `# HELP` line for one family.
    #[error("second HELP line for {0}")]
    DuplicateHelp(String),
    /// A second `# UNIT` line for one family.
    #[error("second UNIT line for {0}")]
    DuplicateUnit(String),
    /// A `# UNIT` whose family name does not end in `_<unit>`.
    #[error("unit {unit:?} does not match metric name {name}")]
    UnitMismatch {
        /// Family name.
        name: String,
        /// Unit given.
        unit: String,
    },
    /// A `# HELP`/`# TYPE`/`# UNIT` after samples of its family.
    #[error("{what} for {name} after its samples")]
    MetadataAfterSamples {
        /// `TYPE`, `HELP` or `UNIT`.
        what: &'static str,
        /// Family name.
        name: String,
    },
    /// A sample whose name is its family's with a suffix that family's type does not have
    /// (`foo_bucket` under gauge `foo`).
    #[error(
        "sample {sample} is outside its family: {family} is a {typ}, which has no {suffix} samples"
    )]
    SampleOutsideFamily {
        /// Sample name.
        sample: String,
        /// Family name.
        family: String,
        /// Family type.
        typ: String,
        /// The suffix.
        suffix: String,
    },
    /// Lines of one family after another family's (the family is split in two).
    #[error(
        "family {name} is split: it continues here after other families (it started on line {first_line})"
    )]
    FamilySplit {
        /// Family name (as in its metadata lines).
        name: String,
        /// The family's first line.
        first_line: usize,
    },
    /// The same series (name and label set) twice.
    #[error("duplicate series {series} (first on line {first_line})")]
    DuplicateSeries {
        /// `name{labels}`.
        series: String,
        /// Where it was first seen.
        first_line: usize,
    },
    /// A histogram bucket without `le`, a summary quantile without `quantile`.
    #[error("sample {sample} lacks the {label:?} label its type requires")]
    MissingLabel {
        /// Sample name.
        sample: String,
        /// `le` or `quantile`.
        label: &'static str,
    },
    /// An `le` or `quantile` label that is not a number.
    #[error("label {label}={value:?} is not a number")]
    InvalidLabelValue {
        /// Label name.
        label: &'static str,
        /// Its value.
        value: String,
    },
    /// An exemplar on a sample that cannot have one.
    #[error("sample {0} cannot have an exemplar (only histogram buckets and counter totals can)")]
    ExemplarNotAllowed(String),
    /// A blank line (OpenMetrics).
    #[error("blank line")]
    BlankLine,
    /// A comment other than HELP, TYPE, UNIT and EOF (OpenMetrics).
    #[error("invalid comment line (OpenMetrics allows only HELP, TYPE, UNIT and EOF)")]
    InvalidComment,
    /// OpenMetrics text that does not end with `# EOF`.
    #[error("missing # EOF at the end")]
    MissingEof,
    /// A line after `# EOF`.
    #[error("line after # EOF")]
    AfterEof,
}
