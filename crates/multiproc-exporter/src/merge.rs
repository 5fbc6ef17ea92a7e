//! `MultiProcessCollector`'s merge (prometheus_client 0.26.0, `multiprocess.py`), done on
//! interned ids. Semantics, rule by rule:
//!
//! * Files are merged in **sorted name order** (Python: directory order, which is
//!   arbitrary). This makes every "first"/"last" rule below deterministic.
//! * A family (by metric name) takes its help and type from the first file that has it;
//!   later files are merged into it whatever their type.
//! * Gauge files add `pid="<parts[2][:-3]>"` to their samples. The family's mode is the
//!   mode of the *last* gauge file that has the family (a conflict is reported).
//! * Counter, summary and other types: sum per (sample name, labels), from 0.0.
//! * Histogram: samples with an `le` label are summed per (labels without `le`, float(le)),
//!   then sorted by bound, made cumulative, emitted as `<family>_bucket` with
//!   `le=floatToGoString(bound)`, followed by `<family>_count` = the total. Other histogram
//!   samples (`_sum`) are summed.
//! * Gauge modes `min|max|sum|mostrecent` and their `live` variants drop every `pid` label;
//!   min/max keep the first value and replace it only when strictly smaller/greater; sum
//!   adds from 0.0; mostrecent keeps the value with the greatest timestamp > 0 (ties: first
//!   file wins; never-set series are omitted). `all`, `liveall` and any unknown mode keep
//!   the pid label and the last value wins.
//! * Families of the postmates fork (their first key is the fork's 3-element key) merge as
//!   the fork's `multiprocess.merge` does: modes `min`, `max`, `livesum` as above, `latest`
//!   keeps per series (labels without `pid`) the value with the newest timestamp (ties:
//!   first file wins) and exports that timestamp; a stored `+inf` timestamp means "none"
//!   and loses to any real one (the fork's `max` raises `TypeError` on that mix and fails
//!   the scrape); every other mode keeps the pid label (`all`, `liveall`). Pid-less files
//!   (the fork's archives `gauge_latest.db`, ...) add no `pid` label.
//! * Output order: families in order of first appearance; within a family, label sets in
//!   order of first appearance, samples of a label set in order of first appearance,
//!   histogram buckets after the other samples of their label set.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::keys::{Interner, KeyId, LabelsId, Sid};
use crate::scan::FileState;
use exposition::float_to_go_string;

/// One output sample.
#[derive(Debug, Clone, PartialEq)]
pub struct MergedSample {
    /// Sample name.
    pub name: Arc<str>,
    /// Labels (unique names, in no particular order; encoders sort them).
    pub labels: Vec<(Arc<str>, Arc<str>)>,
    /// Value.
    pub value: f64,
    /// Timestamp in seconds (only the fork's `latest` gauges have one).
    pub timestamp: Option<f64>,
}

/// One output family.
#[derive(Debug, Clone, PartialEq)]
pub struct MergedFamily {
    /// Family name (counters without `_total`).
    pub name: Arc<str>,
    /// Help text.
    pub help: Arc<str>,
    /// Type as Python's `Metric.type` (`counter`, `gauge`, `histogram`, `summary`, ...).
    pub typ: String,
    /// Samples in output order.
    pub samples: Vec<MergedSample>,
}

impl MergedFamily {
    /// This family restricted to `names` (`/metrics?name[]=...`): the whole family when
    /// its name (or its exposed name, `x_total` for a counter `x`) is asked for, else the
    /// samples whose own name is asked for, as Python's `restricted_registry` does; `None`
    /// when nothing is left.
    pub fn restricted(&self, names: &std::collections::BTreeSet<String>) -> Option<MergedFamily> {
        let exposed = match self.typ.as_str() {
            "counter" => format!("{}_total", self.name),
            "info" => format!("{}_info", self.name),
            _ => self.name.to_string(),
        };
        if names.contains(&*self.name) || names.contains(&exposed) {
            return Some(self.clone());
        }
        let samples: Vec<MergedSample> = self
            .samples
            .iter()
            .filter(|s| names.contains(&*s.name))
            .cloned()
            .collect();
        (!samples.is_empty()).then(|| MergedFamily {
            samples,
            ..self.clone()
        })
    }
}

/// Things worth logging about a merge.
#[derive(Debug, Default, Clone)]
pub struct MergeStats {
    /// Families whose gauge files disagree on the mode (the last file decided).
    pub mode_conflicts: Vec<String>,
    /// Families found in files of different types (the first file decided).
    pub type_conflicts: Vec<String>,
    /// Histogram samples skipped because their `le` is not a number (Python fails the scrape).
    pub bad_le: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Sum,
    Min,
    Max,
    MostRecent,
    Latest,
    Set,
}

#[derive(Debug, Clone, Copy)]
enum Variant {
    Plain,
    Filtered,
    Pid(Sid),
}

#[derive(Debug)]
struct Slot {
    group: u32,
    name: Sid,
    bucket: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Acc {
    v: f64,
    ts: f64,
    init: u32,
    out: u32,
}

const NONE: u32 = u32::MAX;
const DROP: u32 = u32::MAX - 1;

struct Fam {
    metric: Sid,
    help: Sid,
    typ: String,
    mode: Option<String>,
    op: Op,
    filter: bool,
    hist: bool,
    fork: bool,
}

/// Merge state kept between scrapes: slots (one per output series) are interned once, so
/// a scrape is one pass of array lookups over all entries.
#[derive(Debug, Default)]
pub struct Merger {
    slots: Vec<Slot>,
    slot_ids: FxHashMap<(u32, u8, u64), u32>,
    groups: Vec<(Sid, LabelsId)>,
    group_ids: FxHashMap<(Sid, LabelsId), u32>,
    key_slots: Vec<[u32; 4]>,
    pid_slots: FxHashMap<(KeyId, Sid, bool), u32>,
    acc: Vec<Acc>,
    generation: u32,
}

fn parse_py_float(s: &str) -> Option<f64> {
    let t = s.trim();
    if t.contains('_') {
        let cleaned: String = t.chars().filter(|c| *c != '_').collect();
        return cleaned.parse().ok();
    }
    t.parse().ok()
}

impl Merger {
    /// An empty merger.
    pub fn new() -> Merger {
        Merger::default()
    }

    fn make_slot(
        &mut self,
        it: &mut Interner,
        key: KeyId,
        variant: Variant,
        hist: bool,
        pid: Sid,
        le: Sid,
    ) -> u32 {
        let k = it.key(key);
        let mut pairs: Vec<(Sid, Sid)> = it.labels(k.labels).to_vec();
        match variant {
            Variant::Plain => {}
            Variant::Filtered => pairs.retain(|p| p.0 != pid),
            Variant::Pid(p) => pairs.push((pid, p)),
        }
        let mut bucket = None;
        if hist && let Some(&(_, v)) = pairs.iter().find(|p| p.0 == le) {
            match parse_py_float(it.str(v)) {
                Some(b) => bucket = Some(if b == 0.0 { 0.0 } else { b }),
                None => return DROP,
            }
            pairs.retain(|p| p.0 != le);
        }
        let labels = it.labels_id(pairs);
        let gkey = (k.metric, labels);
        let group = match self.group_ids.get(&gkey) {
            Some(g) => *g,
            None => {
                let g = self.groups.len() as u32;
                self.groups.push(gkey);
                self.group_ids.insert(gkey, g);
                g
            }
        };
        let skey = match bucket {
            Some(b) => (group, 1u8, b.to_bits()),
            None => (group, 0u8, k.sample as u64),
        };
        if let Some(s) = self.slot_ids.get(&skey) {
            return *s;
        }
        let s = self.slots.len() as u32;
        self.slots.push(Slot {
            group,
            name: k.sample,
            bucket,
        });
        self.acc.push(Acc::default());
        self.slot_ids.insert(skey, s);
        s
    }

    /// Merges the files of a scan (already in merge order) into families.
    pub fn merge(
        &mut self,
        files: &[Box<FileState>],
        it: &mut Interner,
    ) -> (Vec<MergedFamily>, MergeStats) {
        let mut stats = MergeStats::default();
        let pid = it.sid("pid");
        let le = it.sid("le");

        // Pass 1: families, their help/type (first file) and gauge mode (last file).
        let mut fams: Vec<Fam> = Vec::new();
        let mut fam_idx: FxHashMap<Sid, u32> = FxHashMap::default();
        for f in files {
            for &(metric, first_key) in &f.families {
                let idx = *fam_idx.entry(metric).or_insert_with(|| {
                    fams.push(Fam {
                        metric,
                        help: it.key(first_key).help,
                        typ: f.db.typ.clone(),
                        mode: None,
                        op: Op::Sum,
                        filter: false,
                        hist: false,
                        fork: it.key(first_key).fork,
                    });
                    (fams.len() - 1) as u32
                });
                let fam = &mut fams[idx as usize];
                if fam.typ != f.db.typ
                    && !stats.type_conflicts.iter().any(|n| **n == **it.str(metric))
                {
                    stats.type_conflicts.push(it.str(metric).to_string());
                }
                if f.is_gauge() {
                    if let (Some(old), Some(new)) = (&fam.mode, &f.db.mode)
                        && old != new
                        && !stats.mode_conflicts.iter().any(|n| **n == **it.str(metric))
                    {
                        stats.mode_conflicts.push(it.str(metric).to_string());
                    }
                    fam.mode = f.db.mode.clone();
                }
            }
        }
        for fam in &mut fams {
            fam.hist = fam.typ == "histogram";
            if fam.typ == "gauge" {
                let m = fam.mode.as_deref().unwrap_or("all");
                let (op, filter) = if fam.fork {
                    match m {
                        "min" => (Op::Min, true),
                        "max" => (Op::Max, true),
                        "livesum" => (Op::Sum, true),
                        "latest" => (Op::Latest, true),
                        _ => (Op::Set, false),
                    }
                } else {
                    match m {
                        "min" | "livemin" => (Op::Min, true),
                        "max" | "livemax" => (Op::Max, true),
                        "sum" | "livesum" => (Op::Sum, true),
                        "mostrecent" | "livemostrecent" => (Op::MostRecent, true),
                        _ => (Op::Set, false),
                    }
                };
                fam.op = op;
                fam.filter = filter;
            }
        }

        // Pass 2: every entry into its slot.
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.acc.iter_mut().for_each(|a| *a = Acc::default());
            self.generation = 1;
        }
        let generation = self.generation;
        let nkeys = it.key_count();
        if self.key_slots.len() < nkeys {
            self.key_slots.resize(nkeys, [NONE; 4]);
        }
        let mut key_fam: Vec<u32> = vec![NONE; nkeys];
        let mut touched: Vec<u32> = Vec::new();
        for f in files {
            let gauge = f.is_gauge();
            // Pid-less gauge files (the fork's archives) add no pid label.
            let pid_value = if gauge {
                f.db.pid_label.as_deref().map(|p| it.sid(p))
            } else {
                None
            };
            f.for_each(|i, key, x| {
                let mut fi = key_fam[key as usize];
                if fi == NONE {
                    fi = fam_idx.get(&it.key(key).metric).copied().unwrap_or(NONE);
                    key_fam[key as usize] = fi;
                }
                if fi == NONE {
                    return;
                }
                let fam = &fams[fi as usize];
                let (op, hist, filter) = (fam.op, fam.hist, fam.filter);
                let slot = match pid_value {
                    Some(p) if !filter => match self.pid_slots.get(&(key, p, hist)) {
                        Some(s) => *s,
                        None => {
                            let s = self.make_slot(it, key, Variant::Pid(p), hist, pid, le);
                            self.pid_slots.insert((key, p, hist), s);
                            s
                        }
                    },
                    _ => {
                        let vi = (filter as usize) * 2 + hist as usize;
                        let mut s = self.key_slots[key as usize][vi];
                        if s == NONE {
                            let variant = if filter {
                                Variant::Filtered
                            } else {
                                Variant::Plain
                            };
                            s = self.make_slot(it, key, variant, hist, pid, le);
                            self.key_slots[key as usize][vi] = s;
                        }
                        s
                    }
                };
                if slot == DROP {
                    stats.bad_le += 1;
                    return;
                }
                let a = &mut self.acc[slot as usize];
                if op == Op::Latest {
                    let ts = f.timestamps.get(i).copied().unwrap_or(f64::INFINITY);
                    if a.init != generation {
                        a.init = generation;
                        a.out = generation;
                        a.v = x;
                        a.ts = ts;
                        touched.push(slot);
                    } else if latest_is_newer(ts, a.ts) {
                        a.v = x;
                        a.ts = ts;
                    }
                } else if op == Op::MostRecent {
                    if a.init != generation {
                        a.init = generation;
                        a.ts = 0.0;
                    }
                    let ts = f.timestamps.get(i).copied().unwrap_or(0.0);
                    if a.ts < ts {
                        a.v = x;
                        a.ts = ts;
                        if a.out != generation {
                            a.out = generation;
                            touched.push(slot);
                        }
                    }
                } else if a.init != generation {
                    a.init = generation;
                    a.out = generation;
                    a.v = if op == Op::Sum { 0.0 + x } else { x };
                    touched.push(slot);
                } else {
                    match op {
                        Op::Sum => a.v += x,
                        Op::Min => {
                            if x < a.v {
                                a.v = x
                            }
                        }
                        Op::Max => {
                            if x > a.v {
                                a.v = x
                            }
                        }
                        Op::Set => a.v = x,
                        Op::MostRecent | Op::Latest => {}
                    }
                }
            });
        }

        // Group touched slots per family, in Python's insertion order.
        let nf = fams.len();
        let mut normal_order: Vec<Vec<u32>> = vec![Vec::new(); nf];
        let mut bucket_order: Vec<Vec<u32>> = vec![Vec::new(); nf];
        // The fork's merge keeps its non-bucket samples in one dict: plain first-seen order.
        let mut normal_flat: Vec<Vec<u32>> = vec![Vec::new(); nf];
        let mut normal_slots: FxHashMap<u32, Vec<u32>> = FxHashMap::default();
        let mut bucket_slots: FxHashMap<u32, Vec<u32>> = FxHashMap::default();
        for &s in &touched {
            let slot = &self.slots[s as usize];
            let g = slot.group;
            let fi = fam_idx[&self.groups[g as usize].0] as usize;
            let (order, map) = if slot.bucket.is_some() {
                (&mut bucket_order[fi], &mut bucket_slots)
            } else {
                normal_flat[fi].push(s);
                (&mut normal_order[fi], &mut normal_slots)
            };
            map.entry(g)
                .or_insert_with(|| {
                    order.push(g);
                    Vec::new()
                })
                .push(s);
        }

        let mut out = Vec::with_capacity(nf);
        for (fi, fam) in fams.iter().enumerate() {
            let name = it.str(fam.metric).clone();
            let stamped = fam.op == Op::Latest;
            let mut samples = Vec::new();
            let emit_normal = |s: u32, labels: &[(Arc<str>, Arc<str>)], out: &mut Vec<_>| {
                let a = &self.acc[s as usize];
                out.push(MergedSample {
                    name: it.str(self.slots[s as usize].name).clone(),
                    labels: labels.to_vec(),
                    value: a.v,
                    // +inf is the fork's "no timestamp"; NaN or -inf cannot be written
                    // in milliseconds (Python fails the whole scrape).
                    timestamp: (stamped && a.ts.is_finite()).then_some(a.ts),
                });
            };
            // Buckets of group `g`, made cumulative, then `_count`: an existing (count,
            // labels) sample from `samples[first..]` is overwritten in place, as the Python
            // dict assignment does.
            let emit_buckets = |g: u32, first: usize, samples: &mut Vec<MergedSample>| {
                let Some(bs) = bucket_slots.get(&g) else {
                    return;
                };
                let labels = dict_labels(it, self.groups[g as usize].1);
                let mut bs: Vec<(f64, f64)> = bs
                    .iter()
                    .map(|&s| {
                        (
                            self.slots[s as usize].bucket.unwrap_or(f64::NAN),
                            self.acc[s as usize].v,
                        )
                    })
                    .collect();
                bs.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
                let bucket_name: Arc<str> = format!("{name}_bucket").into();
                let le_name: Arc<str> = "le".into();
                let mut acc = 0.0;
                for (bound, v) in bs {
                    acc += v;
                    let mut l = labels.clone();
                    l.retain(|p| *p.0 != *"le");
                    l.push((le_name.clone(), float_to_go_string(bound).into()));
                    samples.push(MergedSample {
                        name: bucket_name.clone(),
                        labels: l,
                        value: acc,
                        timestamp: None,
                    });
                }
                let count_name = format!("{name}_count");
                match samples[first..]
                    .iter_mut()
                    .find(|s| *s.name == *count_name && s.labels == labels)
                {
                    Some(s) => s.value = acc,
                    None => samples.push(MergedSample {
                        name: count_name.into(),
                        labels,
                        value: acc,
                        timestamp: None,
                    }),
                }
            };
            if fam.fork {
                for &s in &normal_flat[fi] {
                    let labels =
                        dict_labels(it, self.groups[self.slots[s as usize].group as usize].1);
                    emit_normal(s, &labels, &mut samples);
                }
                for &g in &bucket_order[fi] {
                    emit_buckets(g, 0, &mut samples);
                }
            } else {
                for &g in &normal_order[fi] {
                    let labels = dict_labels(it, self.groups[g as usize].1);
                    let first = samples.len();
                    for &s in normal_slots.get(&g).map(|v| v.as_slice()).unwrap_or(&[]) {
                        emit_normal(s, &labels, &mut samples);
                    }
                    emit_buckets(g, first, &mut samples);
                }
                for &g in &bucket_order[fi] {
                    if !normal_slots.contains_key(&g) {
                        let first = samples.len();
                        emit_buckets(g, first, &mut samples);
                    }
                }
            }
            out.push(MergedFamily {
                name,
                help: it.str(fam.help).clone(),
                typ: fam.typ.clone(),
                samples,
            });
        }
        (out, stats)
    }
}

/// Whether a fork `latest` timestamp beats the current one: newer wins, ties keep the
/// first (Python's `max`), and `+inf` (stored "none") loses to any real timestamp.
fn latest_is_newer(ts: f64, current: f64) -> bool {
    ts != f64::INFINITY && (current == f64::INFINITY || ts > current)
}

/// A label tuple as `dict(labels)`: the last value of a repeated name wins.
fn dict_labels(it: &Interner, id: LabelsId) -> Vec<(Arc<str>, Arc<str>)> {
    let pairs = it.labels(id);
    let mut out: Vec<(Arc<str>, Arc<str>)> = Vec::with_capacity(pairs.len());
    for &(k, v) in pairs.iter() {
        let (k, v) = (it.str(k).clone(), it.str(v).clone());
        match out.iter_mut().find(|p| p.0 == k) {
            Some(p) => p.1 = v,
            None => out.push((k, v)),
        }
    }
    out
}
