//! The accumulation step of the merge, and what a run of settled files (consecutive in
//! merge order, writers proven dead, unchanged) contributes to it, reduced once per slot
//! so that a warm scrape applies a few numbers per output series instead of re-merging
//! every entry of every dead writer's file.
//!
//! The reduction must give the same bits as merging the files one entry at a time, in
//! order, on top of whatever the files before the run left in the accumulator:
//!
//! * `Set` (last wins), `Min`/`Max` (first extreme wins), `MostRecent`/`Latest` (first
//!   newest wins) are associative: the run's own result, applied with the same rule, is
//!   the sequential result. NaN breaks that for `Min`/`Max` (a NaN accumulator absorbs,
//!   a NaN entry is skipped) and for `Latest` timestamps, so such slots are marked and
//!   the whole run is merged entry by entry when they meet an accumulator already set.
//! * `Sum` is not associative in floating point. Sums of integers are exact (so any
//!   grouping gives the same bits) while every partial sum stays below 2^53 in magnitude:
//!   the run keeps its total and the sum of magnitudes, and applies the total at once when
//!   the accumulator is an integer small enough; otherwise it adds its non-zero values
//!   one by one (kept only for slots that saw a non-integer, and only once the run
//!   meets such a series already set: where the run starts the series, its own total
//!   from 0.0 is the sequential result).
//! * Output order is the order in which slots are first set: the run lists its slots in
//!   that order (for `MostRecent`, the first entry with a timestamp > 0 sets the slot).

/// Slot id meaning "not merged" (no family).
pub(super) const NONE: u32 = u32::MAX;
/// Slot id meaning "skipped": a histogram bucket whose `le` is not a number.
pub(super) const DROP: u32 = u32::MAX - 1;

/// Largest magnitude below which every integer is a float (2^53).
const EXACT: f64 = 9_007_199_254_740_992.0;

/// Whether `x` is an integer below 2^53 in magnitude (every partial sum of such
/// integers is exact). A cast and back instead of `fract()`, which is a call to `trunc`
/// on the baseline x86-64 target, in the loop that reduces every settled entry.
pub(super) fn is_exact_int(x: f64) -> bool {
    x.abs() < EXACT && (x as i64) as f64 == x
}

/// How a family combines the samples of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Op {
    Sum,
    Min,
    Max,
    MostRecent,
    Latest,
    Set,
}

/// One output series' accumulator; `init`/`out` hold the merge generation that set them.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Acc {
    pub(super) v: f64,
    pub(super) ts: f64,
    init: u32,
    out: u32,
}

/// Accumulators of all slots, reused between merges (a generation counter stands for
/// clearing them).
#[derive(Debug, Default)]
pub(super) struct Accs {
    pub(super) acc: Vec<Acc>,
    generation: u32,
    /// Slots set in this merge, in the order they were first set (the output order).
    pub(super) touched: Vec<u32>,
}

/// Whether a fork `latest` timestamp beats the current one: newer wins, ties keep the
/// first (Python's `max`), and `+inf` (stored "none") loses to any real timestamp.
pub(super) fn latest_is_newer(ts: f64, current: f64) -> bool {
    ts != f64::INFINITY && (current == f64::INFINITY || ts > current)
}

/// The timestamp an entry counts with: missing ones are `0` (never set) for `mostrecent`
/// and `+inf` ("none") for the fork's `latest`.
pub(super) fn entry_ts(op: Op, ts: Option<f64>) -> f64 {
    match (op, ts) {
        (_, Some(t)) => t,
        (Op::Latest, None) => f64::INFINITY,
        _ => 0.0,
    }
}

impl Accs {
    /// Starts a merge: every accumulator reads as unset.
    pub(super) fn begin(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.acc.iter_mut().for_each(|a| *a = Acc::default());
            self.generation = 1;
        }
        self.touched.clear();
    }

    fn slot(&mut self, slot: u32) -> &mut Acc {
        let i = slot as usize;
        if i >= self.acc.len() {
            self.acc.resize(i + 1, Acc::default());
        }
        &mut self.acc[i]
    }

    /// Merges one entry (value `x`, timestamp `ts` as [`entry_ts`] gives it) into `slot`.
    pub(super) fn apply(&mut self, slot: u32, op: Op, x: f64, ts: f64) {
        let g = self.generation;
        let a = self.slot(slot);
        let first = a.init != g;
        if first {
            a.init = g;
            a.ts = 0.0;
        }
        let newly_out = match op {
            Op::MostRecent => {
                if a.ts < ts {
                    a.v = x;
                    a.ts = ts;
                }
                a.ts > 0.0 && a.out != g
            }
            Op::Latest if first => {
                a.v = x;
                a.ts = ts;
                true
            }
            Op::Latest => {
                if latest_is_newer(ts, a.ts) {
                    a.v = x;
                    a.ts = ts;
                }
                false
            }
            _ if first => {
                a.v = if op == Op::Sum { 0.0 + x } else { x };
                true
            }
            Op::Sum => {
                a.v += x;
                false
            }
            Op::Min => {
                if x < a.v {
                    a.v = x;
                }
                false
            }
            Op::Max => {
                if x > a.v {
                    a.v = x;
                }
                false
            }
            Op::Set => {
                a.v = x;
                false
            }
        };
        if newly_out {
            a.out = g;
            self.touched.push(slot);
        }
    }

    fn is_set(&self, slot: u32, op: Op) -> Option<&Acc> {
        let a = self.acc.get(slot as usize)?;
        let set = match op {
            // A `mostrecent` accumulator initialised by a timestamp-0 entry is still unset.
            Op::MostRecent => a.out == self.generation,
            _ => a.init == self.generation,
        };
        set.then_some(a)
    }
}

/// What a run contributes to one slot.
#[derive(Debug, Clone, Copy)]
struct RunSlot {
    slot: u32,
    op: Op,
    /// The run's own result: sum from 0.0, last, extreme, or newest value.
    v: f64,
    /// Its timestamp (`MostRecent`, `Latest`), or the sum of magnitudes (`Sum`).
    aux: f64,
    /// Range of the slot's non-zero values in [`Run::values`] (`Sum` with non-integers).
    start: u32,
    len: u32,
    /// `Sum`: all values integers (the total applies at once). Others: no NaN (the
    /// result applies at once); when false the run is merged entry by entry.
    exact: bool,
}

/// The reduced contribution of a run of settled files.
#[derive(Debug, Default)]
pub(super) struct Run {
    /// Serials of the run's files, in order: the run is valid while they are the same.
    pub(super) serials: Vec<u64>,
    slots: Vec<RunSlot>,
    /// The non-zero values of the `Sum` slots that are not exact, when collected (see
    /// [`RunBuilder::collect_values`]).
    values: Vec<f64>,
    /// Whether `values` holds what the slots that are not exact need (also true when no
    /// slot needs any).
    has_values: bool,
    /// Entries skipped for a bad `le`.
    pub(super) bad_le: usize,
}

/// Builds a [`Run`] from the run's entries, fed in merge order; kept between the builds
/// of one merge (its dense index by slot id is as long as the slot table).
#[derive(Debug, Default)]
pub(super) struct RunBuilder {
    /// Per slot id: (build generation, index in `slots`).
    index: Vec<(u32, u32)>,
    generation: u32,
    slots: Vec<RunSlot>,
    /// Whether each slot has been set (its position in the output order is known).
    order: Vec<u32>,
    seen: Vec<bool>,
    /// Per slot: non-zero values seen (a `Sum` slot that is not exact keeps them).
    nnz: Vec<u32>,
    /// Per slot: where its next kept value goes in `values`.
    fill: Vec<u32>,
    values: Vec<f64>,
    /// Whether [`collect_values`](Self::collect_values) was called for this run.
    collected: bool,
    bad_le: usize,
}

/// What [`Run::apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Applied {
    /// The run is applied.
    Yes,
    /// Nothing applied: a series of a sum that is not exact is already set, so the run's
    /// values must be added one by one, and they were not collected: build the run again
    /// with them.
    NeedsValues,
    /// Nothing applied: some slot can only be merged entry by entry on top of what is
    /// already there.
    No,
}

impl RunBuilder {
    /// Adds one entry (timestamp as [`entry_ts`] gives it; `slot` may be [`DROP`]).
    pub(super) fn push(&mut self, slot: u32, op: Op, x: f64, ts: f64) {
        if slot == DROP {
            self.bad_le += 1;
            return;
        }
        let si = slot as usize;
        if si >= self.index.len() {
            self.index
                .resize((si + 1).max(self.index.len() * 2), (0, 0));
        }
        let i = match self.index[si] {
            (g, i) if g == self.generation => i as usize,
            _ => {
                let i = self.slots.len();
                self.index[si] = (self.generation, i as u32);
                self.slots.push(RunSlot {
                    slot,
                    op,
                    v: if op == Op::Sum { 0.0 } else { f64::NAN },
                    aux: 0.0,
                    start: 0,
                    len: 0,
                    exact: true,
                });
                self.seen.push(false);
                self.nnz.push(0);
                i
            }
        };
        let r = &mut self.slots[i];
        let first = !self.seen[i];
        let mut set_now = first;
        match op {
            Op::Sum => {
                r.v += x;
                r.aux += x.abs();
                if !(is_exact_int(x) && r.aux < EXACT) {
                    r.exact = false;
                }
                if x != 0.0 {
                    self.nnz[i] += 1;
                }
            }
            Op::Set => r.v = x,
            Op::Min | Op::Max => {
                if x.is_nan() {
                    r.exact = false;
                }
                if first || (op == Op::Min && x < r.v) || (op == Op::Max && x > r.v) {
                    r.v = x;
                }
            }
            Op::MostRecent => {
                // Unset until a timestamp > 0 (`aux` starts at 0.0); NaN never wins.
                set_now = false;
                if r.aux < ts {
                    r.v = x;
                    r.aux = ts;
                    set_now = first;
                }
            }
            Op::Latest => {
                if ts.is_nan() {
                    r.exact = false;
                }
                if first || latest_is_newer(ts, r.aux) {
                    r.v = x;
                    r.aux = ts;
                }
            }
        }
        if set_now {
            self.seen[i] = true;
            self.order.push(i as u32);
        }
    }

    /// Starts a new run.
    pub(super) fn begin(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.index.iter_mut().for_each(|e| *e = (0, 0));
            self.generation = 1;
        }
        self.slots.clear();
        self.order.clear();
        self.seen.clear();
        self.nnz.clear();
        self.fill.clear();
        self.values = Vec::new();
        self.collected = false;
        self.bad_le = 0;
    }

    /// After every entry was pushed, to keep the values of the `Sum` slots that are not
    /// exact: whether there are any (then every entry is fed again through
    /// [`push_value`](Self::push_value)). Two passes instead of a list per slot while
    /// pushing: the lists of the slots that turn out exact (most) were a large transient.
    /// Only asked for when the run meets a set series of such a sum (see
    /// [`Applied::NeedsValues`]): a run that starts a series applies its own total.
    pub(super) fn collect_values(&mut self) -> bool {
        self.collected = true;
        let mut total = 0u32;
        self.fill.clear();
        for (r, &n) in self.slots.iter_mut().zip(&self.nnz) {
            self.fill.push(total);
            if r.op == Op::Sum && !r.exact {
                r.start = total;
                r.len = n;
                total += n;
            }
        }
        self.values = vec![0.0; total as usize];
        total > 0
    }

    /// Second pass: keeps entry value `x` of `slot` when its slot needs its values.
    pub(super) fn push_value(&mut self, slot: u32, x: f64) {
        let Some(&(g, i)) = self.index.get(slot as usize) else {
            return;
        };
        if slot == DROP || g != self.generation || x == 0.0 {
            return;
        }
        let (r, fill) = (&self.slots[i as usize], &mut self.fill[i as usize]);
        if r.op == Op::Sum && !r.exact && *fill < r.start + r.len {
            self.values[*fill as usize] = x;
            *fill += 1;
        }
    }

    /// The run, its slots in the order they were first set.
    pub(super) fn finish(&mut self, serials: Vec<u64>) -> Run {
        let slots: Vec<RunSlot> = self.order.iter().map(|&i| self.slots[i as usize]).collect();
        let inexact = slots.iter().any(|r| r.op == Op::Sum && !r.exact);
        Run {
            serials,
            slots,
            values: std::mem::take(&mut self.values),
            has_values: self.collected || !inexact,
            bad_le: self.bad_le,
        }
    }
}

impl Run {
    /// Applies the run to the accumulators, unless some slot cannot be applied at once
    /// (then nothing is applied).
    pub(super) fn apply(&self, accs: &mut Accs) -> Applied {
        let mut needs_values = false;
        let blocked = self.slots.iter().any(|r| match accs.is_set(r.slot, r.op) {
            None => false,
            Some(a) => match r.op {
                Op::Sum if r.exact => !(is_exact_int(a.v) && a.v.abs() + r.aux < EXACT),
                Op::Sum => {
                    needs_values |= !self.has_values;
                    false
                }
                _ => !r.exact,
            },
        });
        if blocked {
            return Applied::No;
        }
        if needs_values {
            return Applied::NeedsValues;
        }
        for r in &self.slots {
            match accs.is_set(r.slot, r.op).is_some() {
                // Unset: the run's own result is the sequential one.
                false => accs.apply_first(r.slot, r.op, r.v, r.aux),
                true if r.op == Op::Sum && !r.exact => {
                    let (s, e) = (r.start as usize, (r.start + r.len) as usize);
                    for &x in &self.values[s..e] {
                        accs.apply(r.slot, Op::Sum, x, 0.0);
                    }
                }
                // Sum of integers: exact, any grouping. Others: same rule as one entry.
                true => accs.apply(r.slot, r.op, r.v, r.aux),
            }
        }
        Applied::Yes
    }
}

impl Accs {
    /// Sets an unset slot to `v` (timestamp `ts`), as the run's first entries did.
    fn apply_first(&mut self, slot: u32, op: Op, v: f64, ts: f64) {
        let g = self.generation;
        let a = self.slot(slot);
        a.init = g;
        a.out = g;
        a.v = v;
        a.ts = if matches!(op, Op::MostRecent | Op::Latest) {
            ts
        } else {
            0.0
        };
        self.touched.push(slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_ints_are_told_as_fract_tells_them() {
        let mut xs = vec![
            0.0,
            -0.0,
            1.0,
            -3.0,
            0.5,
            -0.5,
            1e-300,
            5e-324,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e300,
            -1e300,
            9.223_372_036_854_776e18,
            EXACT,
            -EXACT,
        ];
        for k in [1.0, 3.0, 1e3, 1e15, EXACT - 1.0] {
            xs.extend([k, -k, k + 0.25, k - 0.5, k * 1.000_000_1]);
        }
        for x in xs {
            let want = x.fract() == 0.0 && x.abs() < EXACT;
            assert_eq!(is_exact_int(x), want, "{x:e}");
        }
    }
}
