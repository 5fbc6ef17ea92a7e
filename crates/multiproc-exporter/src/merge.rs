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

use rustc_hash::{FxHashMap, FxHashSet};

mod output;
mod settled;

use crate::keys::{Interner, KeyId, LabelsId, Sid};
use crate::scan::FileState;
use settled::{Accs, Applied, DROP, NONE, Op, Run, RunBuilder, entry_ts};

/// One output sample.
#[derive(Debug, Clone, PartialEq)]
pub struct MergedSample {
    /// Sample name.
    pub name: Arc<str>,
    /// Labels (unique names, in no particular order; encoders sort them), shared by the
    /// samples of a label set.
    pub labels: Labels,
    /// Value.
    pub value: f64,
    /// Timestamp in seconds (only the fork's `latest` gauges have one).
    pub timestamp: Option<f64>,
}

/// A sample's labels: name-value pairs, shared between scrapes and samples.
pub type Labels = Arc<[(Arc<str>, Arc<str>)]>;

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

#[derive(Debug, Clone, Copy)]
enum Variant {
    Plain,
    Filtered,
    Pid(Sid),
}

/// An output label set: its family, the key's labels and the value of the `pid` label a
/// gauge file adds ([`NO_PID`]: none). The pid is kept apart from the labels so that the
/// per-pid series of thousands of dead writers do not each intern a label set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Group {
    metric: Sid,
    labels: LabelsId,
    pid: Sid,
}

/// [`Group::pid`] of a label set without an added `pid` label.
const NO_PID: Sid = Sid::MAX;

#[derive(Debug)]
struct Slot {
    group: u32,
    name: Sid,
    bucket: Option<f64>,
}

#[derive(Debug)]
struct Fam {
    metric: Sid,
    help: Sid,
    typ: &'static str,
    /// Index of the last gauge file that has the family (its name gives the mode).
    mode_file: Option<usize>,
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
    groups: Vec<Group>,
    group_ids: FxHashMap<Group, u32>,
    /// The interned name `pid` (set by every merge, before any group with a pid exists).
    pid_name: Sid,
    key_slots: Vec<[u32; 4]>,
    pid_slots: FxHashMap<(KeyId, Sid, bool), u32>,
    accs: Accs,
    /// Cached reductions of runs of settled files, by the serial of their first file.
    runs: FxHashMap<u64, Run>,
    /// The families' rules the cached runs were built with.
    fam_sig: Vec<(Sid, Op, bool, bool)>,
    /// What the output step builds once (see `output`).
    output: output::OutputCache,
    /// The last merge's plan.
    plan: Option<Plan>,
    /// Reused for every run one merge builds (dropped after it).
    builder: RunBuilder,
}

/// Shorter runs of settled files are merged entry by entry (not worth a cache entry).
const MIN_RUN: usize = 2;

/// One step of a merge: a file merged entry by entry, or a run of settled files
/// `(start, len)` applied through its cached reduction.
#[derive(Debug, Clone, Copy)]
enum Unit {
    File(u32),
    Run(u32, u32),
}

/// What a merge derives from the files' layout (not their values): the families with
/// their rules, and the steps. Kept while the scanner's layout is unchanged.
#[derive(Debug)]
struct Plan {
    layout: Option<u64>,
    nfiles: usize,
    fams: Vec<Fam>,
    fam_idx: FxHashMap<Sid, u32>,
    units: Vec<Unit>,
    mode_conflicts: Vec<String>,
    type_conflicts: Vec<String>,
}

impl Plan {
    /// Pass 1: families, their help/type (first file) and gauge mode (last file); then
    /// the steps (runs of settled files, other files one by one).
    fn new(files: &[Box<FileState>], it: &Interner, layout: u64, fresh_from: u64) -> Plan {
        let mut stats = MergeStats::default();
        let mut fams: Vec<Fam> = Vec::new();
        let mut fam_idx: FxHashMap<Sid, u32> = FxHashMap::default();
        for (fidx, f) in files.iter().enumerate() {
            for &(metric, first_key) in f.families.iter() {
                let idx = *fam_idx.entry(metric).or_insert_with(|| {
                    fams.push(Fam {
                        metric,
                        help: it.key(first_key).help,
                        typ: f.db.typ,
                        mode_file: None,
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
                    let old = fam.mode_file.and_then(|i| files[i].db.mode.as_ref());
                    if let (Some(old), Some(new)) = (old, &f.db.mode)
                        && old != new
                        && !stats.mode_conflicts.iter().any(|n| **n == **it.str(metric))
                    {
                        stats.mode_conflicts.push(it.str(metric).to_string());
                    }
                    // An index, not a clone of the mode: this runs per file and family.
                    fam.mode_file = Some(fidx);
                }
            }
        }
        for fam in &mut fams {
            fam.hist = fam.typ == "histogram";
            if fam.typ == "gauge" {
                let mode = fam.mode_file.and_then(|i| files[i].db.mode.as_deref());
                (fam.op, fam.filter) = gauge_rule(fam.fork, mode.unwrap_or("all"));
            }
        }
        let mut units = Vec::new();
        let mut i = 0;
        while i < files.len() {
            let n = files[i..]
                .iter()
                .take_while(|f| f.is_settled() && f.serial() < fresh_from)
                .count();
            if n < MIN_RUN {
                let n = n.max(1);
                units.extend((i..i + n).map(|i| Unit::File(i as u32)));
                i += n;
            } else {
                units.push(Unit::Run(i as u32, n as u32));
                i += n;
            }
        }
        Plan {
            layout: Some(layout),
            nfiles: files.len(),
            fams,
            fam_idx,
            units,
            mode_conflicts: stats.mode_conflicts,
            type_conflicts: stats.type_conflicts,
        }
    }
}

/// How a gauge family of this multiprocess mode merges: its op, and whether the `pid`
/// label is dropped.
fn gauge_rule(fork: bool, mode: &str) -> (Op, bool) {
    if fork {
        match mode {
            "min" => (Op::Min, true),
            "max" => (Op::Max, true),
            "livesum" => (Op::Sum, true),
            "latest" => (Op::Latest, true),
            _ => (Op::Set, false),
        }
    } else {
        match mode {
            "min" | "livemin" => (Op::Min, true),
            "max" | "livemax" => (Op::Max, true),
            "sum" | "livesum" => (Op::Sum, true),
            "mostrecent" | "livemostrecent" => (Op::MostRecent, true),
            _ => (Op::Set, false),
        }
    }
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
        let mut pid_value = NO_PID;
        match variant {
            Variant::Plain => {}
            Variant::Filtered => pairs.retain(|p| p.0 != pid),
            // Added after the key's labels when the output labels are built.
            Variant::Pid(p) => pid_value = p,
        }
        let mut bucket = None;
        if hist && let Some(&(_, v)) = pairs.iter().find(|p| p.0 == le) {
            match parse_py_float(it.str(v)) {
                Some(b) => bucket = Some(if b == 0.0 { 0.0 } else { b }),
                None => return DROP,
            }
            pairs.retain(|p| p.0 != le);
        }
        let gkey = Group {
            metric: k.metric,
            labels: it.labels_id(pairs),
            pid: pid_value,
        };
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
        self.slot_ids.insert(skey, s);
        s
    }

    /// Merges the files of a scan (already in merge order) into families. `layout` is the
    /// scanner's [`layout`](crate::scan::Scanner::layout): while it is unchanged, only
    /// values of files that are not settled changed, and the last merge's plan is reused.
    /// Settled files with a serial from `fresh_from` on (read by this scan) are merged
    /// file by file, not reduced yet.
    pub fn merge(
        &mut self,
        files: &[Box<FileState>],
        it: &mut Interner,
        layout: u64,
        fresh_from: u64,
    ) -> (Vec<MergedFamily>, MergeStats) {
        let pid = it.sid("pid");
        let le = it.sid("le");
        self.pid_name = pid;
        let (plan, reused) = match self.plan.take() {
            Some(p) if p.layout == Some(layout) && p.nfiles == files.len() => (p, true),
            _ => (Plan::new(files, it, layout, fresh_from), false),
        };
        let mut stats = MergeStats {
            mode_conflicts: plan.mode_conflicts.clone(),
            type_conflicts: plan.type_conflicts.clone(),
            bad_le: 0,
        };
        let (fams, fam_idx) = (&plan.fams, &plan.fam_idx);

        // Pass 2: every entry into its slot. Runs of settled files (writers dead, files
        // unchanged) apply their cached reduction (see `settled`), built when first seen.
        let sig: Vec<(Sid, Op, bool, bool)> = {
            let mut v: Vec<_> = fams
                .iter()
                .map(|f| (f.metric, f.op, f.filter, f.hist))
                .collect();
            v.sort_unstable();
            v
        };
        if sig != self.fam_sig {
            // A family's rule changed: every cached reduction may be wrong.
            self.runs.clear();
            self.fam_sig = sig;
        }
        let nkeys = it.key_count();
        if self.key_slots.len() < nkeys {
            self.key_slots.resize(nkeys, [NONE; 4]);
        }
        let mut accs = std::mem::take(&mut self.accs);
        accs.begin();
        let mut ctx = Ctx {
            fams,
            fam_idx,
            key_fam: vec![UNSEEN; nkeys],
            key_plain: vec![(UNSEEN, Op::Sum); nkeys],
            pid,
            le,
        };
        // Key runs whose slots this merge has set (see `Covered`).
        let mut covered = Covered::default();
        let mut runs = std::mem::take(&mut self.runs);
        let mut kept: FxHashMap<u64, Run> = FxHashMap::default();
        for unit in &plan.units {
            let (start, len) = match *unit {
                Unit::File(i) => {
                    let f = &files[i as usize];
                    self.merge_file(f, it, &mut ctx, &mut covered, &mut accs, &mut stats);
                    continue;
                }
                Unit::Run(start, len) => (start as usize, len as usize),
            };
            let run_files = &files[start..start + len];
            let first = run_files[0].serial();
            let cached = runs.remove(&first);
            // An unchanged layout means unchanged settled files: no need to compare.
            let valid = cached.as_ref().is_some_and(|r| {
                reused
                    || r.serials
                        .iter()
                        .copied()
                        .eq(run_files.iter().map(|f| f.serial()))
            });
            let mut run = match cached {
                Some(r) if valid => r,
                _ => self.build_run(run_files, it, &mut ctx, false),
            };
            let mut applied = run.apply(&mut accs);
            if applied == Applied::NeedsValues {
                run = self.build_run(run_files, it, &mut ctx, true);
                applied = run.apply(&mut accs);
            }
            if applied == Applied::Yes {
                stats.bad_le += run.bad_le;
            } else {
                for f in run_files {
                    self.merge_file(f, it, &mut ctx, &mut covered, &mut accs, &mut stats);
                }
            }
            kept.insert(first, run);
        }
        // Runs not seen this time are gone (a file changed, appeared or vanished).
        self.runs = kept;
        // The builder's scratch is as long as the slot table and needed only when a run
        // is built (rarely after the second scrape): not kept through the output step.
        self.builder = RunBuilder::default();
        let touched = std::mem::take(&mut accs.touched);
        let out = self.emit(fams, fam_idx, &accs, &touched, it);
        accs.touched = touched;
        self.accs = accs;
        self.plan = Some(plan);
        (out, stats)
    }

    /// Reduces a run of settled files (`with_values`: keeping the values of the sums that
    /// are not exact, for a run that meets series already set).
    fn build_run(
        &mut self,
        run_files: &[Box<FileState>],
        it: &mut Interner,
        ctx: &mut Ctx<'_>,
        with_values: bool,
    ) -> Run {
        let mut b = std::mem::take(&mut self.builder);
        b.begin();
        let mut covered = Covered::default();
        for f in run_files {
            let zeros = Zeros::NoOpOnceSet(&mut covered);
            self.for_each_slot(f, it, ctx, zeros, |s, op, x, ts| b.push(s, op, x, ts));
        }
        if with_values && b.collect_values() {
            for f in run_files {
                self.for_each_slot(f, it, ctx, Zeros::Ignored, |s, _, x, _| b.push_value(s, x));
            }
        }
        let run = b.finish(run_files.iter().map(|f| f.serial()).collect());
        self.builder = b;
        run
    }

    /// Resolves the slot of every entry of `f` and calls `g(slot, op, value, timestamp)`
    /// in file order (`slot` may be [`DROP`]; entries of no family are left out).
    /// `zeros` says which `+0.0` entries `g` can be spared.
    fn for_each_slot(
        &mut self,
        f: &FileState,
        it: &mut Interner,
        ctx: &mut Ctx<'_>,
        zeros: Zeros<'_>,
        mut g: impl FnMut(u32, Op, f64, f64),
    ) {
        let gauge = f.is_gauge();
        // Pid-less gauge files (the fork's archives) add no pid label.
        let pid_value = if gauge {
            f.db.pid_label.as_deref().map(|p| it.sid(p))
        } else {
            None
        };
        if pid_value.is_none() {
            // Most entries: the slot and rule of a key in a file without a pid label are
            // one lookup, not a chain of dependent ones (family, rule, variant, slot).
            let mut ts = f.timestamps();
            let mut visit = |i: usize, key: KeyId, x: f64| {
                let (slot, op) = match ctx.key_plain[key as usize] {
                    (UNSEEN, _) => {
                        let found = self.plain_slot(it, ctx, key);
                        ctx.key_plain[key as usize] = found;
                        found
                    }
                    found => found,
                };
                if slot != NONE {
                    g(slot, op, x, entry_ts(op, ts.at(i)));
                }
            };
            match zeros {
                Zeros::Ignored => f.for_each_nonzero(visit),
                Zeros::NoOpOnceSet(c) if c.covers(f) => f.for_each_nonzero(visit),
                Zeros::NoOpOnceSet(c) => {
                    f.for_each(&mut visit);
                    c.add(f, &ctx.key_plain);
                }
            }
            return;
        }
        let (pid, le) = (ctx.pid, ctx.le);
        let mut ts = f.timestamps();
        f.for_each(|i, key, x| {
            let fi = ctx.fam_of(key, it);
            if fi == NONE {
                return;
            }
            let fam = &ctx.fams[fi as usize];
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
                // A family that drops the pid label: the key's slot as in any file.
                _ => self.plain_slot(it, ctx, key).0,
            };
            g(slot, op, x, entry_ts(op, ts.at(i)));
        });
    }

    /// The slot of `key` in a file without a pid label, made if missing, and its family's
    /// rule (`NONE` for a key of no family).
    fn plain_slot(&mut self, it: &mut Interner, ctx: &mut Ctx<'_>, key: KeyId) -> (u32, Op) {
        let fi = ctx.fam_of(key, it);
        if fi == NONE {
            return (NONE, Op::Sum);
        }
        let fam = &ctx.fams[fi as usize];
        let (op, hist, filter) = (fam.op, fam.hist, fam.filter);
        let vi = (filter as usize) * 2 + hist as usize;
        let mut s = self.key_slots[key as usize][vi];
        if s == NONE {
            let variant = match filter {
                true => Variant::Filtered,
                false => Variant::Plain,
            };
            s = self.make_slot(it, key, variant, hist, ctx.pid, ctx.le);
            self.key_slots[key as usize][vi] = s;
        }
        (s, op)
    }

    /// Merges every entry of one file into the accumulators.
    fn merge_file(
        &mut self,
        f: &FileState,
        it: &mut Interner,
        ctx: &mut Ctx<'_>,
        covered: &mut Covered,
        accs: &mut Accs,
        stats: &mut MergeStats,
    ) {
        let zeros = Zeros::NoOpOnceSet(covered);
        self.for_each_slot(f, it, ctx, zeros, |slot, op, x, ts| {
            if slot == DROP {
                stats.bad_le += 1;
            } else {
                accs.apply(slot, op, x, ts);
            }
        });
    }
}

/// What resolving an entry's slot needs from the current merge.
struct Ctx<'a> {
    fams: &'a [Fam],
    fam_idx: &'a FxHashMap<Sid, u32>,
    /// Family index of each key id (`UNSEEN` until looked up; `NONE`: no family).
    key_fam: Vec<u32>,
    /// Slot and rule of each key id in files without a pid label (`UNSEEN` until made).
    key_plain: Vec<(u32, Op)>,
    pid: Sid,
    le: Sid,
}

/// Not looked up yet (in [`Ctx`]); no slot id reaches it.
const UNSEEN: u32 = u32::MAX - 2;

impl Ctx<'_> {
    /// The family index of a key (`NONE`: no family), looked up once per merge.
    fn fam_of(&mut self, key: KeyId, it: &Interner) -> u32 {
        let k = key as usize;
        if self.key_fam[k] == UNSEEN {
            self.key_fam[k] = (self.fam_idx.get(&it.key(key).metric).copied()).unwrap_or(NONE);
        }
        self.key_fam[k]
    }
}

/// Which `+0.0` entries a merge step can be spared.
enum Zeros<'c> {
    /// The step ignores every `+0.0` entry.
    Ignored,
    /// A `+0.0` entry changes nothing once its `Sum` slot is set in the step's scope
    /// (a merge, or a run being built): entries of key runs the set holds are visited
    /// only when not zero.
    NoOpOnceSet(&'c mut Covered),
}

/// Key runs `(first key, length)` of files without a pid label whose every key has a
/// `Sum` rule and a slot already set in the current scope. Adding `+0.0` to a sum never
/// changes it (a sum from `0.0` is never `-0.0`), and most histogram buckets are zero:
/// a file made only of such runs is visited by its non-zero entries.
#[derive(Debug, Default)]
struct Covered(FxHashSet<(KeyId, u32)>);

impl Covered {
    /// Whether every key run of `f` is covered.
    fn covers(&self, f: &FileState) -> bool {
        !self.0.is_empty() && f.key_runs().all(|r| self.0.contains(&r))
    }

    /// Adds the runs of `f`, just visited whole, whose keys all have a `Sum` rule and a
    /// slot (`key_plain`: each key's slot and rule, as the visit resolved them).
    fn add(&mut self, f: &FileState, key_plain: &[(u32, Op)]) {
        for (start, len) in f.key_runs() {
            let keys = start as usize..start as usize + len as usize;
            let sums = key_plain[keys].iter().all(|&(slot, op)| {
                // `NONE`: a key of no family, never merged; `DROP` counts every entry.
                slot == NONE || (slot != DROP && slot != UNSEEN && op == Op::Sum)
            });
            if sums {
                self.0.insert((start, len));
            }
        }
    }
}
