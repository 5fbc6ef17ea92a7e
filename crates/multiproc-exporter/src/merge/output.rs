//! The last step of the merge: the touched slots grouped per family and label set in
//! Python's insertion order, histogram buckets made cumulative, and the merged families
//! built. What does not change between scrapes (a label set as `dict(labels)`, a bucket's
//! labels with its `le`, a histogram's `_bucket`/`_count` names) is built once and shared
//! by reference, so a warm scrape allocates per family, not per sample.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::settled::{Accs, NONE, Op};
use super::{Fam, Group, Labels, MergedFamily, MergedSample, Merger, NO_PID};
use crate::keys::{Interner, Sid};
use exposition::float_to_go_string;

/// Per-merge lists of touched slots per group, as linked lists through arrays kept
/// between merges (a generation stamp stands for clearing them).
#[derive(Debug, Default)]
pub(super) struct GroupLists {
    generation: u32,
    stamp: Vec<u32>,
    normal: Vec<(u32, u32)>,
    bucket: Vec<(u32, u32)>,
    /// Next touched slot of the same group and kind (`NONE`: last).
    next: Vec<u32>,
}

impl GroupLists {
    fn begin(&mut self, groups: usize, slots: usize) {
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.stamp.iter_mut().for_each(|s| *s = 0);
            self.generation = 1;
        }
        self.stamp.resize(groups, 0);
        self.normal.resize(groups, (NONE, NONE));
        self.bucket.resize(groups, (NONE, NONE));
        self.next.resize(slots, NONE);
    }

    /// Appends slot `s` to group `g`'s list of its kind; `true` when it is the first.
    fn push(&mut self, g: u32, s: u32, bucket: bool) -> bool {
        let gi = g as usize;
        if self.stamp[gi] != self.generation {
            self.stamp[gi] = self.generation;
            self.normal[gi] = (NONE, NONE);
            self.bucket[gi] = (NONE, NONE);
        }
        let list = if bucket {
            &mut self.bucket[gi]
        } else {
            &mut self.normal[gi]
        };
        self.next[s as usize] = NONE;
        if list.0 == NONE {
            *list = (s, s);
            true
        } else {
            self.next[list.1 as usize] = s;
            list.1 = s;
            false
        }
    }

    fn iter(&self, head: u32) -> impl Iterator<Item = u32> + '_ {
        std::iter::successors((head != NONE).then_some(head), |&s| {
            let n = self.next[s as usize];
            (n != NONE).then_some(n)
        })
    }

    fn has_normal(&self, g: u32) -> bool {
        self.stamp[g as usize] == self.generation && self.normal[g as usize].0 != NONE
    }
}

/// What is built once per label set, bucket and histogram family.
#[derive(Debug, Default)]
pub(super) struct OutputCache {
    /// `dict(labels)` of each group.
    group_labels: Vec<Option<Labels>>,
    /// A bucket slot's labels: its group's, then `le`.
    bucket_labels: FxHashMap<u32, Labels>,
    /// `<family>_bucket` and `<family>_count` of each histogram family.
    hist_names: FxHashMap<Sid, (Arc<str>, Arc<str>)>,
    lists: GroupLists,
    /// Scratch for one group's buckets: (bound, value, slot).
    buckets: Vec<(f64, f64, u32)>,
}

impl Merger {
    /// Builds the families from the slots touched by this merge (in touch order).
    pub(super) fn emit(
        &mut self,
        fams: &[Fam],
        fam_idx: &FxHashMap<Sid, u32>,
        accs: &Accs,
        touched: &[u32],
        it: &Interner,
    ) -> Vec<MergedFamily> {
        let nf = fams.len();
        let mut normal_order: Vec<Vec<u32>> = vec![Vec::new(); nf];
        let mut bucket_order: Vec<Vec<u32>> = vec![Vec::new(); nf];
        // The fork's merge keeps its non-bucket samples in one dict: plain first-seen order.
        let mut normal_flat: Vec<Vec<u32>> = vec![Vec::new(); nf];
        // Samples per family (a touched slot each, and a `_count` per bucketed label set):
        // the vectors are made to size, as the largest are a good part of the peak memory.
        let mut sizes: Vec<usize> = vec![0; nf];
        let mut cache = std::mem::take(&mut self.output);
        cache.lists.begin(self.groups.len(), self.slots.len());
        for &s in touched {
            let slot = &self.slots[s as usize];
            let g = slot.group;
            let fi = fam_idx[&self.groups[g as usize].metric] as usize;
            let bucket = slot.bucket.is_some();
            sizes[fi] += 1;
            if cache.lists.push(g, s, bucket) {
                match bucket {
                    true => {
                        bucket_order[fi].push(g);
                        sizes[fi] += 1;
                    }
                    false => normal_order[fi].push(g),
                }
            }
            if !bucket && fams[fi].fork {
                normal_flat[fi].push(s);
            }
        }

        let mut out = Vec::with_capacity(nf);
        for (fi, fam) in fams.iter().enumerate() {
            let name = it.str(fam.metric).clone();
            let stamped = fam.op == Op::Latest;
            let mut samples = Vec::with_capacity(sizes[fi]);
            let normal = |s: u32, labels: &Labels, out: &mut Vec<MergedSample>| {
                let a = &accs.acc[s as usize];
                out.push(MergedSample {
                    name: it.str(self.slots[s as usize].name).clone(),
                    labels: labels.clone(),
                    value: a.v,
                    // +inf is the fork's "no timestamp"; NaN or -inf cannot be written
                    // in milliseconds (Python fails the whole scrape).
                    timestamp: (stamped && a.ts.is_finite()).then_some(a.ts),
                });
            };
            if fam.fork {
                for &s in &normal_flat[fi] {
                    let g = self.slots[s as usize].group;
                    let labels = self.group_labels(&mut cache, g, it);
                    normal(s, &labels, &mut samples);
                }
                for &g in &bucket_order[fi] {
                    self.emit_buckets(&mut cache, accs, fam.metric, g, 0, &mut samples, it);
                }
            } else {
                for &g in &normal_order[fi] {
                    let labels = self.group_labels(&mut cache, g, it);
                    let first = samples.len();
                    let head = cache.lists.normal[g as usize].0;
                    for s in cache.lists.iter(head) {
                        normal(s, &labels, &mut samples);
                    }
                    self.emit_buckets(&mut cache, accs, fam.metric, g, first, &mut samples, it);
                }
                for &g in &bucket_order[fi] {
                    if !cache.lists.has_normal(g) {
                        let first = samples.len();
                        self.emit_buckets(&mut cache, accs, fam.metric, g, first, &mut samples, it);
                    }
                }
            }
            out.push(MergedFamily {
                name,
                help: it.str(fam.help).clone(),
                typ: fam.typ.to_string(),
                samples,
            });
        }
        self.output = cache;
        out
    }

    /// `dict(labels)` of group `g`, built once.
    fn group_labels(&self, cache: &mut OutputCache, g: u32, it: &Interner) -> Labels {
        let gi = g as usize;
        if cache.group_labels.len() <= gi {
            cache
                .group_labels
                .resize(self.groups.len().max(gi + 1), None);
        }
        cache.group_labels[gi]
            .get_or_insert_with(|| dict_labels(it, self.groups[gi], self.pid_name))
            .clone()
    }

    /// The buckets of group `g`, made cumulative, then `_count`: an existing (count,
    /// labels) sample from `samples[first..]` is overwritten in place, as the Python dict
    /// assignment does.
    #[allow(clippy::too_many_arguments)]
    fn emit_buckets(
        &self,
        cache: &mut OutputCache,
        accs: &Accs,
        metric: Sid,
        g: u32,
        first: usize,
        samples: &mut Vec<MergedSample>,
        it: &Interner,
    ) {
        let head = cache.lists.bucket[g as usize].0;
        if cache.lists.stamp[g as usize] != cache.lists.generation || head == NONE {
            return;
        }
        let labels = self.group_labels(cache, g, it);
        let mut bs = std::mem::take(&mut cache.buckets);
        bs.clear();
        bs.extend(cache.lists.iter(head).map(|s| {
            (
                self.slots[s as usize].bucket.unwrap_or(f64::NAN),
                accs.acc[s as usize].v,
                s,
            )
        }));
        bs.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
        let (bucket_name, count_name) = cache
            .hist_names
            .entry(metric)
            .or_insert_with(|| {
                let name = it.str(metric);
                (
                    format!("{name}_bucket").into(),
                    format!("{name}_count").into(),
                )
            })
            .clone();
        let mut acc = 0.0;
        for &(bound, v, s) in &bs {
            acc += v;
            let l = cache
                .bucket_labels
                .entry(s)
                .or_insert_with(|| {
                    let mut l: Vec<(Arc<str>, Arc<str>)> =
                        labels.iter().filter(|p| *p.0 != *"le").cloned().collect();
                    l.push(("le".into(), float_to_go_string(bound).into()));
                    l.into()
                })
                .clone();
            samples.push(MergedSample {
                name: bucket_name.clone(),
                labels: l,
                value: acc,
                timestamp: None,
            });
        }
        cache.buckets = bs;
        match samples[first..]
            .iter_mut()
            .find(|s| *s.name == *count_name && s.labels == labels)
        {
            Some(s) => s.value = acc,
            None => samples.push(MergedSample {
                name: count_name,
                labels,
                value: acc,
                timestamp: None,
            }),
        }
    }
}

/// A group's label tuple as `dict(labels)`: the key's labels, then the added `pid` label
/// (`pid_name`, as Python appends it to the tuple); the last value of a repeated name wins.
fn dict_labels(it: &Interner, g: Group, pid_name: Sid) -> Labels {
    let pairs = it.labels(g.labels);
    let pid = (g.pid != NO_PID).then_some((pid_name, g.pid));
    let mut out: Vec<(Arc<str>, Arc<str>)> = Vec::with_capacity(pairs.len() + 1);
    for &(k, v) in pairs.iter().chain(pid.iter()) {
        let (k, v) = (it.str(k).clone(), it.str(v).clone());
        match out.iter_mut().find(|p| p.0 == k) {
            Some(p) => p.1 = v,
            None => out.push((k, v)),
        }
    }
    out.into()
}
