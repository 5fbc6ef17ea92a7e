//! The warm scan: when no `.db` name appeared, vanished or moved since the last scan, only
//! the files that may have changed are looked at (those not final yet, symlinks, and those
//! an event named), in place. A directory of thousands of dead writers' files then costs
//! what its live files cost, not one step per file.

use super::*;

impl Scanner {
    /// The warm scan, or `None` when it does not apply (a listing is due, names wait to be
    /// looked at again, or a file became unreadable): then the full scan runs.
    pub(super) fn warm_scan(&mut self, changes: &Changes) -> Option<ScanStats> {
        if !changes.listing_unchanged() || !self.listed || !self.others.is_empty() {
            return None;
        }
        let mut work: Vec<usize> = self.pending.iter().map(|&i| i as usize).collect();
        match changes {
            Changes::Named {
                listed: Some(names),
                ..
            } => {
                for name in names {
                    if let Ok(i) = self.files.binary_search_by(|f| (*f.name).cmp(name)) {
                        work.push(i);
                    }
                }
            }
            // Many names (a cold scan's own opens, another reader): ask every file.
            _ => work.extend(
                (self.files.iter().enumerate())
                    .filter(|(_, f)| changes.may_have_changed(&f.name))
                    .map(|(i, _)| i),
            ),
        }
        work.sort_unstable();
        work.dedup();
        let mut stats = ScanStats::default();
        let owners = || self.files.iter().filter_map(|f| f.db.owner_pid);
        let visible = match self.liveness.is_some() || self.prover.is_some_and(proves_namespace) {
            true => true,
            false => {
                let owners: BTreeSet<i32> = owners().collect();
                self.prover = namespace_prover(&owners);
                self.prover.is_some()
            }
        };
        stats.namespace_visible = visible;
        let mut dead = self.dead_probe();
        let mut jobs = Vec::with_capacity(work.len());
        let mut kept = 0;
        for &i in &work {
            let f = &self.files[i];
            let decision = self.decide(
                &f.name,
                Some(&f.db),
                f.link,
                Some(f),
                changes,
                &mut stats,
                |pid| visible && dead(pid),
            );
            match decision {
                Decision::Keep => kept += 1,
                Decision::Read(read) => jobs.push((i, read)),
                Decision::Drop | Decision::Other => return None,
            }
        }
        drop(dead);
        let touched: Vec<(usize, usize, bool, usize)> = jobs
            .iter()
            .map(|&(i, _)| {
                let f = &self.files[i];
                (i, f.len(), f.final_read, f.families.len())
            })
            .collect();
        let jobs: Vec<Job> = jobs
            .into_iter()
            .map(|(i, read)| {
                let fs = std::mem::replace(&mut self.files[i], Box::new(FileState::placeholder()));
                match read {
                    Read::Refresh { dead } => Job::Refresh(fs, dead),
                    Read::Full { dead } => Job::Full(Listed::of(&fs), dead),
                }
            })
            .collect();
        let outcomes = self.run_jobs(jobs);
        let mut lost = false;
        // Files the last scan read final are reduced with their neighbours from now on.
        let mut changed_layout = std::mem::take(&mut self.fresh_final);
        for ((i, old_len, old_final, old_fams), o) in touched.into_iter().zip(outcomes) {
            match o {
                Outcome::Ok(fs, bytes, full) => {
                    stats.bytes_read += bytes;
                    match full {
                        true => stats.parsed += 1,
                        false => stats.refreshed += 1,
                    }
                    changed_layout |= full
                        || fs.len() != old_len
                        || fs.final_read != old_final
                        || fs.families.len() != old_fams;
                    self.entries = self.entries + fs.len() - old_len;
                    self.fresh_final |= fs.final_read;
                    self.files[i] = fs;
                }
                // Unreadable now: the full scan next time sorts it out (the placeholder
                // left here is removed by it).
                Outcome::Empty
                | Outcome::Corrupt(_)
                | Outcome::NotRegular(_)
                | Outcome::Vanished => lost = true,
            }
        }
        if lost {
            self.files.retain(|f| !f.is_placeholder());
            self.listed = false;
            self.after_scan();
            return None;
        }
        if changed_layout {
            self.layout += 1;
            self.update_pending();
        }
        let untouched = self.files.len() - work.len();
        stats.skipped += untouched + kept;
        stats.unchecked += untouched;
        stats.files = self.files.len();
        stats.entries = self.entries;
        Some(stats)
    }

    /// What a full scan leaves for the next warm one: the files it must look at, the
    /// entry count, a new layout, and the inotify watch (set up after the first scan).
    pub(super) fn after_scan(&mut self) {
        self.watch.arm();
        self.family_lists.prune();
        self.layout += 1;
        let start = self.scan_start;
        self.fresh_final = self.files.iter().any(|f| f.final_read && f.serial >= start);
        self.entries = self.files.iter().map(|f| f.len()).sum();
        self.update_pending();
    }

    fn update_pending(&mut self) {
        self.pending = (self.files.iter().enumerate())
            .filter(|(_, f)| !f.final_read || f.link)
            .map(|(i, _)| i as u32)
            .collect();
    }

    /// Whether the owner pid is dead, asked once per pid and scan.
    pub(super) fn dead_probe(&self) -> impl FnMut(i32) -> bool + '_ {
        let mut cache: FxHashMap<i32, bool> = FxHashMap::default();
        move |pid| {
            *cache.entry(pid).or_insert_with(|| match &self.liveness {
                Some(Probe(alive)) => !alive(pid),
                None => pid_state(pid) == PidState::Dead,
            })
        }
    }
}
