//! The cache's command-line options, compatible with both originals, and their
//! conversion into [`CacheSettings`].
//!
//! 1.x: `--cache-type Timeout|None` and repeatable `--cache-opt key=value` with the
//! keys of its `TimeoutDecorator`. 3.x: `-m/--cache-seconds`, `--cache-refresh-interval`,
//! `--cache-dir`, `--update-threads`, mapped to their nearest meaning here. Ours:
//! `--max-stale` and `--cache-max-entries`. Every value is parsed strictly: a bad one
//! is a startup error naming the option (clap exits with status 2).

use std::path::PathBuf;
use std::time::Duration;

use crate::cache::policy::{
    DEFAULT_MAX_ENTRIES, DEFAULT_MAX_STALE_SECS, DEFAULT_NAME, DEFAULT_REFRESH_INTERVAL,
    MIN_HARD_LIMIT,
};
use crate::cache::{CacheSettings, Policy};

/// `--cache-type`: the 1.x cache implementations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CacheType {
    /// Cache results (the default).
    #[value(name = "Timeout")]
    Timeout,
    /// No caching: every request runs the generator (concurrent requests still share one run).
    #[value(name = "None")]
    Disabled,
}

/// One `--cache-opt key=value`, parsed and range-checked.
#[derive(Debug, Clone, PartialEq)]
pub enum CacheOpt {
    /// `timeout`: how long a caller waits for a run (`None`: until it ends).
    Timeout(Option<Duration>),
    /// `cache_time`: how long a successful result is reused.
    CacheTime(Duration),
    /// `cache_exception_time`: how long a failure is remembered.
    CacheExceptionTime(Duration),
    /// `name`: the `name` label of the garbage-collection metrics.
    Name(String),
    /// `garbage_collection_count`: idle entries are swept only when there are more.
    GarbageCollectionCount(usize),
    /// `garbage_collection_interval`: seconds between two sweeps of idle entries.
    GarbageCollectionInterval(Duration),
    /// `copy_response`: accepted for compatibility; results are immutable and shared.
    CopyResponse(bool),
}

/// The keys `--cache-opt` accepts, in the 1.x README's order.
pub const CACHE_OPT_KEYS: [&str; 7] = [
    "timeout",
    "cache_time",
    "cache_exception_time",
    "name",
    "garbage_collection_count",
    "garbage_collection_interval",
    "copy_response",
];

/// Parses one `--cache-opt` value (`key=value`); the error names the key and the problem.
pub fn parse_cache_opt(raw: &str) -> Result<CacheOpt, String> {
    let Some((key, value)) = raw.split_once('=') else {
        return Err(format!(
            "expected KEY=VALUE, got {raw:?} (keys: {})",
            CACHE_OPT_KEYS.join(", ")
        ));
    };
    let bad = |why: &str| format!("{key}={value:?}: {why}");
    match key {
        "timeout" => {
            if value.eq_ignore_ascii_case("none") {
                return Ok(CacheOpt::Timeout(None));
            }
            let d = parse_seconds(value).map_err(|e| bad(&e))?;
            if d.is_zero() {
                return Err(bad(
                    "must be more than 0 seconds (or None to wait until the run ends)",
                ));
            }
            Ok(CacheOpt::Timeout(Some(d)))
        }
        "cache_time" => Ok(CacheOpt::CacheTime(
            parse_seconds(value).map_err(|e| bad(&e))?,
        )),
        "cache_exception_time" => Ok(CacheOpt::CacheExceptionTime(
            parse_seconds(value).map_err(|e| bad(&e))?,
        )),
        "name" => {
            if value.is_empty() {
                return Err(bad("must not be empty"));
            }
            Ok(CacheOpt::Name(value.to_string()))
        }
        "garbage_collection_count" => value
            .parse::<usize>()
            .map(CacheOpt::GarbageCollectionCount)
            .map_err(|_| bad("expected a whole number of entries (0 or more)")),
        "garbage_collection_interval" => {
            let d = parse_seconds(value).map_err(|e| bad(&e))?;
            if d.is_zero() {
                return Err(bad("must be more than 0 seconds"));
            }
            Ok(CacheOpt::GarbageCollectionInterval(d))
        }
        "copy_response" => parse_bool(value)
            .map(CacheOpt::CopyResponse)
            .ok_or_else(|| bad("expected true or false")),
        other => Err(format!(
            "unknown key {other:?} (keys: {})",
            CACHE_OPT_KEYS.join(", ")
        )),
    }
}

/// Parses a number of seconds: finite, not negative, fractions allowed, at most a year.
pub fn parse_seconds(value: &str) -> Result<Duration, String> {
    let secs: f64 = value
        .trim()
        .parse()
        .map_err(|_| format!("{value:?} is not a number of seconds"))?;
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("{value:?} is not a number of seconds (0 or more)"));
    }
    if secs > 365.0 * 86400.0 {
        return Err(format!("{value:?} seconds is more than a year"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a number of seconds above 0 (see [`parse_seconds`]).
pub fn parse_positive_seconds(value: &str) -> Result<Duration, String> {
    let d = parse_seconds(value)?;
    if d.is_zero() {
        return Err(format!("{value:?}: must be more than 0 seconds"));
    }
    Ok(d)
}

/// Parses a whole number of at least 1.
pub fn parse_positive_count(value: &str) -> Result<usize, String> {
    match value.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{value:?} is not a whole number of at least 1")),
    }
}

/// Strict booleans: `true/false`, `1/0`, `yes/no`, `on/off` (any case). Unlike 1.x,
/// where any non-empty value (even `False`) meant true.
fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// The cache's options (flattened into `serve`).
#[derive(Debug, Clone, clap::Args)]
pub struct CacheArgs {
    /// Directory where last good results are persisted, so that a restarted server answers at once (created if missing).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Maximum age of a served result in seconds (3.x); the stale bound is this minus cache_time.
    #[arg(short = 'm', long, value_name = "SECONDS", value_parser = parse_positive_seconds)]
    pub cache_seconds: Option<Duration>,
    /// Seconds between proactive refresh passes: recently requested results that would expire before the next pass are refreshed in the background [default: 10].
    #[arg(long, value_name = "SECONDS", value_parser = parse_positive_seconds)]
    pub cache_refresh_interval: Option<Duration>,
    /// How many background refreshes may run at once [default: 8].
    #[arg(long, value_name = "N", value_parser = parse_positive_count)]
    pub update_threads: Option<usize>,
    /// 1.x cache type: Timeout (cache results) or None (run on every request, concurrent requests still share one run).
    #[arg(long, value_enum, ignore_case = true, value_name = "TYPE")]
    pub cache_type: Option<CacheType>,
    /// 1.x cache option KEY=VALUE, repeatable: timeout, cache_time, cache_exception_time, name, garbage_collection_count, garbage_collection_interval, copy_response.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_cache_opt)]
    pub cache_opt: Vec<CacheOpt>,
    /// How long past its cache_time a result may still be served while refreshes fail, in seconds [default: 3600].
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub max_stale: Option<Duration>,
    /// Hard cap on cached (generator, parameters) entries; least recently requested ones are evicted first.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_ENTRIES, value_parser = parse_positive_count)]
    pub cache_max_entries: usize,
}

impl CacheArgs {
    /// The options given that have no effect with the other options given.
    pub fn ignored_options(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.cache_type == Some(CacheType::Disabled) {
            if self.cache_dir.is_some() {
                v.push("--cache-dir (with --cache-type None nothing is cached)");
            }
            if self.cache_refresh_interval.is_some() {
                v.push("--cache-refresh-interval (with --cache-type None nothing is cached)");
            }
        }
        v
    }
}

/// Builds the cache settings from the command line; later `--cache-opt` keys win.
pub fn cache_settings(args: &CacheArgs) -> CacheSettings {
    let mut p = Policy::default();
    let mut name = DEFAULT_NAME.to_string();
    for opt in &args.cache_opt {
        match opt {
            CacheOpt::Timeout(t) => p.timeout = *t,
            CacheOpt::CacheTime(d) => p.cache_time = *d,
            CacheOpt::CacheExceptionTime(d) => p.cache_exception_time = *d,
            CacheOpt::Name(n) => name.clone_from(n),
            CacheOpt::GarbageCollectionCount(n) => p.gc_count = *n,
            CacheOpt::GarbageCollectionInterval(d) => p.gc_interval = *d,
            CacheOpt::CopyResponse(_) => {}
        }
    }
    let max_stale = args
        .max_stale
        .unwrap_or(Duration::from_secs_f64(DEFAULT_MAX_STALE_SECS));
    p.max_age = p.cache_time.saturating_add(max_stale);
    if let Some(m) = args.cache_seconds {
        // 3.x `-m`: nothing older than this is ever served.
        p.max_age = p.max_age.min(m);
        p.cache_time = p.cache_time.min(m);
    }
    p.refresh_interval = match args.cache_refresh_interval {
        Some(i) => i,
        // By default a pass runs at least every cache_time / 2, so that results do
        // not expire between two passes.
        None => DEFAULT_REFRESH_INTERVAL.min(p.cache_time / 2),
    };
    if let Some(n) = args.update_threads {
        p.refresh_concurrency = n;
    }
    p.max_entries = args.cache_max_entries;
    p.hard_limit = p
        .timeout
        .map_or(Duration::from_secs(86400), |t| t.max(MIN_HARD_LIMIT));
    let enabled = args.cache_type != Some(CacheType::Disabled);
    if !enabled {
        p.enabled = false;
    }
    CacheSettings {
        policy: p,
        cache_dir: if enabled {
            args.cache_dir.clone()
        } else {
            None
        },
        name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct T {
        #[command(flatten)]
        cache: CacheArgs,
    }

    fn parse(args: &[&str]) -> Result<CacheSettings, clap::Error> {
        let mut v = vec!["t"];
        v.extend_from_slice(args);
        T::try_parse_from(v).map(|t| cache_settings(&t.cache))
    }

    #[test]
    fn defaults_suit_pollers() {
        let s = parse(&[]).unwrap();
        let p = &s.policy;
        assert!(p.enabled);
        assert_eq!(p.cache_time, Duration::from_secs(60));
        assert_eq!(p.cache_exception_time, Duration::ZERO);
        assert_eq!(p.timeout, Some(Duration::from_secs(60)));
        assert_eq!(p.max_age, Duration::from_secs(3660));
        assert_eq!(p.refresh_interval, Duration::from_secs(10));
        assert_eq!(p.refresh_concurrency, 8);
        assert_eq!(p.max_entries, 4096);
        assert_eq!(s.name, "target_generator");
        assert_eq!(s.cache_dir, None);
    }

    #[test]
    fn every_cache_opt_key() {
        let s = parse(&[
            "--cache-opt",
            "timeout=2.5",
            "--cache-opt",
            "cache_time=30",
            "--cache-opt",
            "cache_exception_time=7",
            "--cache-opt",
            "name=gen",
            "--cache-opt",
            "garbage_collection_count=3",
            "--cache-opt",
            "garbage_collection_interval=9",
            "--cache-opt",
            "copy_response=False",
        ])
        .unwrap();
        let p = &s.policy;
        assert_eq!(p.timeout, Some(Duration::from_millis(2500)));
        assert_eq!(p.cache_time, Duration::from_secs(30));
        assert_eq!(p.cache_exception_time, Duration::from_secs(7));
        assert_eq!(s.name, "gen");
        assert_eq!(p.gc_count, 3);
        assert_eq!(p.gc_interval, Duration::from_secs(9));
        // Other keys keep their defaults (1.x replaced the whole list).
        assert_eq!(p.max_age, Duration::from_secs(30 + 3600));
        let s = parse(&["--cache-opt", "timeout=None"]).unwrap();
        assert_eq!(s.policy.timeout, None);
    }

    #[test]
    fn bad_cache_opt_values_name_the_option() {
        for bad in [
            "timeout",
            "timeout=0",
            "timeout=abc",
            "timeout=-1",
            "cache_time=soon",
            "cache_time=-3",
            "cache_time=inf",
            "cache_exception_time=NaN",
            "name=",
            "garbage_collection_count=-1",
            "garbage_collection_count=1.5",
            "garbage_collection_interval=0",
            "garbage_collection_interval=x",
            "copy_response=maybe",
            "copy_response=",
            "colour=blue",
            "=1",
        ] {
            let e = parse(&["--cache-opt", bad]).expect_err(bad);
            assert_eq!(e.exit_code(), 2, "{bad}");
            let msg = e.to_string();
            assert!(msg.contains("--cache-opt"), "{bad}: {msg}");
        }
    }

    #[test]
    fn three_x_flags_map() {
        let s = parse(&[
            "-m",
            "300",
            "--cache-refresh-interval",
            "2",
            "--update-threads",
            "3",
            "--cache-dir",
            "/tmp/x",
        ])
        .unwrap();
        assert_eq!(s.policy.max_age, Duration::from_secs(300));
        assert_eq!(s.policy.cache_time, Duration::from_secs(60));
        assert_eq!(s.policy.refresh_interval, Duration::from_secs(2));
        assert_eq!(s.policy.refresh_concurrency, 3);
        assert_eq!(s.cache_dir, Some(PathBuf::from("/tmp/x")));
        // -m below cache_time caps both.
        let s = parse(&["-m", "10"]).unwrap();
        assert_eq!(s.policy.cache_time, Duration::from_secs(10));
        assert_eq!(s.policy.max_age, Duration::from_secs(10));
        // The default refresh pass keeps up with a short cache_time.
        assert_eq!(s.policy.refresh_interval, Duration::from_secs(5));
        for bad in [
            &["-m", "0"][..],
            &["--cache-refresh-interval", "0"],
            &["--update-threads", "0"],
            &["--cache-type", "Redis"],
            &["--max-stale", "-1"],
            &["--cache-max-entries", "0"],
        ] {
            assert_eq!(parse(bad).expect_err("bad").exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn cache_type_none_disables_caching() {
        let s = parse(&["--cache-type", "None", "--cache-dir", "/tmp/x"]).unwrap();
        assert!(!s.policy.enabled);
        assert_eq!(s.cache_dir, None);
        assert!(parse(&["--cache-type", "timeout"]).unwrap().policy.enabled);
    }
}
