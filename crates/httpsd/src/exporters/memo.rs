//! What a scrape of `P/metrics/<sub>` computes once and reuses while its inputs stay
//! the same, so that a scrape answered from the cache costs about what a static target
//! path does (a lookup per exporter, one buffer written, no per-exporter allocation):
//!
//! - a [`Plan`] per (catalog generation, path, parameters): the exporters the path
//!   selects and their run keys. A new, deleted or changed file is a new generation,
//!   so a plan never outlives the listing it was made from.
//! - a [`Merged`] per plan: the outcome of merging one set of exporter results (which
//!   exporter a conflict leaves out) and the body it encodes to, per format, except
//!   the per-scrape durations. It is keyed by the identity of each exporter's output
//!   (a new run is a new `Arc`, a failure has none), so a new run, a changed `.prom`
//!   file or a failing exporter shows at the next scrape.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use exposition::{Format, MetricFamily, float_to_go_string};

use super::merge::{Outcome, exclude_conflicts, own_families};
use super::run::{EOF, ExporterOutput, encode_part};
use crate::cache::RunKey;
use crate::catalog::Snapshot;
use crate::error::{GeneratorError, PathError};
use crate::params::Params;
use crate::tree::GeneratorFile;

/// How many plans are kept per generation: parameters come from query strings, so a
/// client could otherwise grow the map without bound. Past it, plans are made per
/// scrape (slower, still correct).
const MAX_PLANS: usize = 1024;

/// One exporter's result in a scrape.
pub type ExporterResult = Result<Arc<ExporterOutput>, GeneratorError>;

/// The exporters a path selects, with the run keys of one parameter set.
#[derive(Debug)]
pub struct Plan {
    /// The selected exporter files, in path order.
    pub files: Vec<GeneratorFile>,
    /// Their run keys, in the same order.
    pub keys: Vec<RunKey>,
    /// The merge of the latest results.
    merged: Mutex<Option<Arc<Merged>>>,
}

impl Plan {
    /// The plan of `files` run with `params`.
    pub fn new(files: Vec<GeneratorFile>, params: &Params) -> Plan {
        let keys = files
            .iter()
            .map(|f| RunKey::new(f.clone(), params))
            .collect();
        Plan {
            files,
            keys,
            merged: Mutex::new(None),
        }
    }

    /// The merge of `results` (one per file): the one kept when its inputs are the very
    /// same outputs and failures, a new one (then kept) otherwise.
    pub fn merged(&self, results: &[ExporterResult]) -> Arc<Merged> {
        let mut kept = self.merged.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = kept.as_ref().filter(|m| m.made_of(results)) {
            return m.clone();
        }
        let m = Arc::new(Merged::new(&self.files, results));
        *kept = Some(m.clone());
        m
    }
}

/// Plans by (path, canonical parameters), for one catalog generation.
#[derive(Debug, Default)]
pub struct Plans {
    inner: RwLock<PlanMap>,
}

#[derive(Debug, Default)]
struct PlanMap {
    generation: u64,
    plans: HashMap<(String, Params), Arc<Plan>>,
}

impl Plans {
    /// The plan of `rel` with `params` in `snapshot`; `select` finds the files when
    /// there is none yet. A path that selects nothing valid is not kept (its error is
    /// found again next time, and unknown paths cannot fill the map).
    pub fn get(
        &self,
        snapshot: &Snapshot,
        rel: String,
        params: &Params,
        select: impl FnOnce() -> Result<Vec<GeneratorFile>, PathError>,
    ) -> Result<Arc<Plan>, PathError> {
        let key = (rel, params.canonical());
        {
            let map = self.inner.read().unwrap_or_else(|e| e.into_inner());
            if map.generation == snapshot.generation
                && let Some(plan) = map.plans.get(&key)
            {
                return Ok(plan.clone());
            }
        }
        let plan = Arc::new(Plan::new(select()?, params));
        let mut map = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if map.generation != snapshot.generation {
            // Only the newest generation is kept: scrapes of an older snapshot still
            // under way get their plan without it being stored.
            if map.generation > snapshot.generation {
                return Ok(plan);
            }
            map.generation = snapshot.generation;
            map.plans.clear();
        }
        if map.plans.len() < MAX_PLANS {
            map.plans.insert(key, plan.clone());
        }
        Ok(plan)
    }
}

/// The merge of one set of exporter results: which succeeded exporters a conflict
/// leaves out, and the body per format.
#[derive(Debug)]
pub struct Merged {
    /// Per exporter: its output, `None` when it failed (the inputs this was made of).
    inputs: Vec<Option<Arc<ExporterOutput>>>,
    /// Per exporter: why it is left out although it succeeded.
    excluded: Vec<Option<GeneratorError>>,
    /// The body's fixed parts, by format, made on first use.
    encoded: Mutex<HashMap<Format, Arc<Encoded>>>,
}

impl Merged {
    fn new(files: &[GeneratorFile], results: &[ExporterResult]) -> Merged {
        // The outcomes only to run the one conflict rule (`check` runs it too).
        let mut outcomes: Vec<Outcome> = (files.iter().zip(results))
            .map(|(file, result)| Outcome {
                file: file.clone(),
                result: result.clone(),
                duration: Duration::ZERO,
            })
            .collect();
        exclude_conflicts(&mut outcomes);
        let excluded = (outcomes.into_iter().zip(results))
            .map(|(o, before)| match (o.result, before) {
                (Err(e), Ok(_)) => Some(e),
                _ => None,
            })
            .collect();
        Merged {
            inputs: results.iter().map(|r| r.as_ref().ok().cloned()).collect(),
            excluded,
            encoded: Mutex::new(HashMap::new()),
        }
    }

    /// True when `results` are the very outputs (and failures) this was made of.
    fn made_of(&self, results: &[ExporterResult]) -> bool {
        self.inputs.len() == results.len()
            && (self.inputs.iter().zip(results)).all(|(kept, r)| match (kept, r) {
                (Some(a), Ok(b)) => Arc::ptr_eq(a, b),
                (None, Err(_)) => true,
                _ => false,
            })
    }

    /// Turns `results` into what is served: a left-out exporter's output replaced by why.
    pub fn apply(&self, results: &mut [ExporterResult]) {
        for (r, why) in results.iter_mut().zip(&self.excluded) {
            if let Some(e) = why {
                *r = Err(e.clone());
            }
        }
    }

    /// The body's fixed parts in `format` for `files` (those this was made for).
    pub fn encoded(&self, files: &[GeneratorFile], format: &Format) -> Arc<Encoded> {
        let mut cache = self.encoded.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry(*format)
            .or_insert_with(|| Arc::new(self.encode(files, format)))
            .clone()
    }

    fn encode(&self, files: &[GeneratorFile], format: &Format) -> Encoded {
        let served: Vec<&Arc<ExporterOutput>> = (self.inputs.iter().zip(&self.excluded))
            .filter_map(|(out, why)| out.as_ref().filter(|_| why.is_none()))
            .collect();
        let own =
            (files.iter().zip(self.inputs.iter().zip(&self.excluded))).map(|(f, (out, why))| {
                (
                    f.rel.as_str(),
                    out.is_some() && why.is_none(),
                    Duration::ZERO,
                )
            });
        let [up, duration] = own_families(own);
        let mut head = String::new();
        for out in served {
            head.push_str(&out.encoded(format));
        }
        head.push_str(&encode_part([&up], format));
        // The duration family is the one part that changes with every scrape: its
        // header is kept, and each sample's line up to its value, all as the encoder
        // writes them (encoded here with the value 0 and cut before it).
        let empty = MetricFamily {
            samples: Vec::new(),
            ..duration.clone()
        };
        let header = encode_part([&empty], format);
        head.push_str(&header);
        let zero = format!("{}\n", float_to_go_string(0.0));
        let samples = encode_part([&duration], format);
        let lines = samples[header.len()..]
            .split_inclusive('\n')
            .map(|line| {
                debug_assert!(line.ends_with(&zero), "{line:?}");
                line[..line.len() - zero.len()].to_string()
            })
            .collect();
        Encoded {
            head,
            lines,
            tail: if matches!(format, Format::OpenMetrics(_)) {
                EOF
            } else {
                ""
            },
        }
    }
}

/// A body's fixed parts in one format: everything but the duration values.
#[derive(Debug)]
pub struct Encoded {
    /// The exporters' families, `httpsd_exporter_up` and the duration family's header.
    head: String,
    /// Per exporter, its duration sample's line up to the value.
    lines: Vec<String>,
    /// What ends the body (`# EOF` in OpenMetrics).
    tail: &'static str,
}

impl Encoded {
    /// The body with each exporter's duration of this scrape (one per exporter, in order).
    pub fn render(&self, durations: &[Duration]) -> String {
        let size = self.head.len()
            + (self.lines.iter()).map(|l| l.len() + 24).sum::<usize>()
            + self.tail.len();
        let mut body = String::with_capacity(size);
        body.push_str(&self.head);
        for (line, took) in self.lines.iter().zip(durations) {
            body.push_str(line);
            exposition::push_float_go(&mut body, took.as_secs_f64());
            body.push('\n');
        }
        body.push_str(self.tail);
        body
    }
}

/// A scrape of a path: its plan, the merge of its results, and each exporter's result
/// (as served) and time.
#[derive(Debug)]
pub struct Scrape {
    /// The path's exporters.
    pub plan: Arc<Plan>,
    /// The merge of the results.
    pub merged: Arc<Merged>,
    /// Per exporter: its output, or why it has none (conflicts applied).
    pub results: Vec<ExporterResult>,
    /// Per exporter: time spent obtaining its result in this scrape.
    pub durations: Vec<Duration>,
}

impl Scrape {
    /// The body in `format`: the served exporters' families, then httpsd's.
    pub fn body(&self, format: &Format) -> String {
        (self.merged.encoded(&self.plan.files, format)).render(&self.durations)
    }

    /// Each exporter's part, for `?debug=true`.
    pub fn outcomes(&self) -> Vec<Outcome> {
        (self
            .plan
            .files
            .iter()
            .zip(&self.results)
            .zip(&self.durations))
        .map(|((file, result), duration)| Outcome {
            file: file.clone(),
            result: result.clone(),
            duration: *duration,
        })
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use exposition::Escaping;

    use super::*;
    use crate::error::ErrorKind;
    use crate::tree::{FileStamp, GeneratorKind};

    fn file(rel: &str) -> GeneratorFile {
        GeneratorFile {
            rel: rel.to_string(),
            abs: format!("/x/{rel}").into(),
            kind: GeneratorKind::Prom,
            stamp: FileStamp {
                dev: 0,
                ino: 0,
                size: 0,
                mtime_ns: 0,
                ctime_ns: 0,
            },
        }
    }

    fn output(text: &str) -> ExporterResult {
        let fmt = Format::OpenMetrics(Escaping::Underscores);
        let families = exposition::parse(text, fmt).expect("valid OpenMetrics");
        Ok(Arc::new(ExporterOutput::new(families)))
    }

    fn failed() -> ExporterResult {
        Err(GeneratorError::new(ErrorKind::Exit, "boom"))
    }

    const FORMATS: [Format; 3] = [
        Format::Text(Escaping::Underscores),
        Format::OpenMetrics(Escaping::Underscores),
        Format::OpenMetrics(Escaping::AllowUtf8),
    ];

    /// The body as one encoding of every served family and httpsd's own, the way it
    /// was written before the merge was kept: what a kept body must equal byte for byte.
    fn one_encoding(
        files: &[GeneratorFile],
        served: &[ExporterResult],
        durations: &[Duration],
        format: &Format,
    ) -> String {
        let mut families: Vec<MetricFamily> = (served.iter())
            .filter_map(|r| r.as_ref().ok())
            .flat_map(|o| o.families.clone())
            .collect();
        let own = (files.iter().zip(served).zip(durations))
            .map(|((f, r), d)| (f.rel.as_str(), r.is_ok(), *d));
        families.extend(own_families(own));
        exposition::encode(&families, format)
    }

    #[test]
    fn a_kept_body_equals_one_encoding_in_every_format() {
        // `b.prom` redefines `a`'s family (left out), `c` failed, names need escaping.
        let files = [
            file("d/a.py"),
            file("d/b.prom"),
            file("d/c\"q\\.sh"),
            file("d/a.prom"),
        ];
        let results = vec![
            output("# TYPE x counter\nx_total{k=\"1\"} 1.5\n# EOF\n"),
            output("# TYPE x gauge\nx 2\n# EOF\n"),
            failed(),
            output(
                "# TYPE h histogram\nh_bucket{le=\"1.0\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_count 2\nh_sum 3.0\n# EOF\n",
            ),
        ];
        let plan = Plan::new(files.to_vec(), &Params::default());
        let merged = plan.merged(&results);
        let mut served = results.clone();
        merged.apply(&mut served);
        assert!(
            served[1]
                .as_ref()
                .is_err_and(|e| e.message.contains("already defined"))
        );
        let durations = [
            Duration::from_nanos(5370),
            Duration::from_millis(1500),
            Duration::from_secs(7),
            Duration::from_nanos(1),
        ];
        for format in &FORMATS {
            let want = one_encoding(&files, &served, &durations, format);
            // Twice: the second body comes from the kept parts.
            for _ in 0..2 {
                let scrape = Scrape {
                    plan: Arc::new(Plan::new(files.to_vec(), &Params::default())),
                    merged: plan.merged(&results),
                    results: served.clone(),
                    durations: durations.to_vec(),
                };
                assert_eq!(scrape.body(format), want, "{format:?}");
            }
        }
        assert!(want_contains_labels(&merged, &files));
    }

    fn want_contains_labels(merged: &Merged, files: &[GeneratorFile]) -> bool {
        let text = merged.encoded(files, &FORMATS[0]).head.clone();
        text.contains("httpsd_exporter_up{exporter=\"d/a\",file=\"d/a.py\"} 1.0\n")
            && text.contains("httpsd_exporter_up{exporter=\"d/a\",file=\"d/a.prom\"} 1.0\n")
            && text.contains("httpsd_exporter_up{exporter=\"d/b\",file=\"d/b.prom\"} 0.0\n")
    }

    #[test]
    fn a_merge_is_reused_only_for_the_very_same_results() {
        let files = [file("a.prom"), file("b.prom")];
        let plan = Plan::new(files.to_vec(), &Params::default());
        let first = vec![output("a 1\n# EOF\n"), output("b 1\n# EOF\n")];
        let m1 = plan.merged(&first);
        assert!(Arc::ptr_eq(&m1, &plan.merged(&first.clone())));
        // A new run of `b` with the same text is a new output: a new merge.
        let rerun = vec![first[0].clone(), output("b 1\n# EOF\n")];
        let m2 = plan.merged(&rerun);
        assert!(!Arc::ptr_eq(&m1, &m2));
        // A failure shows at once, and a recovery too.
        let failing = vec![first[0].clone(), failed()];
        let m3 = plan.merged(&failing);
        assert!(!Arc::ptr_eq(&m2, &m3));
        let b_up = |m: &Merged, want: &str| {
            let text = m.encoded(&files, &FORMATS[0]).render(&[Duration::ZERO; 2]);
            let line = format!("httpsd_exporter_up{{exporter=\"b\",file=\"b.prom\"}} {want}\n");
            assert!(text.contains(&line), "{text}");
            text
        };
        assert!(!b_up(&m3, "0.0").contains("\nb 1"));
        let m4 = plan.merged(&rerun);
        assert!(!Arc::ptr_eq(&m3, &m4));
        assert!(b_up(&m4, "1.0").contains("\nb 1"));
    }

    #[test]
    fn plans_are_kept_per_generation_path_and_parameters() {
        let plans = Plans::default();
        let snap = |generation| Snapshot {
            generation,
            ..Default::default()
        };
        let selects = std::cell::Cell::new(0);
        let select = || {
            selects.set(selects.get() + 1);
            Ok(vec![file("a.prom")])
        };
        let p = Params::from_pairs(vec![("t".to_string(), "1".to_string())]);
        let one = plans.get(&snap(1), "a".into(), &p, select).unwrap();
        let again = plans.get(&snap(1), "a".into(), &p, select).unwrap();
        assert!(Arc::ptr_eq(&one, &again));
        assert_eq!(selects.get(), 1);
        assert_eq!(one.keys[0].params, p);
        let other = plans
            .get(&snap(1), "a".into(), &Params::default(), select)
            .unwrap();
        assert!(!Arc::ptr_eq(&one, &other));
        // A new generation (a file added, changed or deleted) selects again.
        let newer = plans.get(&snap(2), "a".into(), &p, select).unwrap();
        assert!(!Arc::ptr_eq(&one, &newer));
        assert_eq!(selects.get(), 3);
        // Errors are not kept.
        let missing = || Err(PathError::NotFound("b".into()));
        assert!(plans.get(&snap(2), "b".into(), &p, missing).is_err());
        assert!(plans.get(&snap(2), "b".into(), &p, missing).is_err());
    }
}
