//! Reading one file of the directory for a scan: the worker threads that claim jobs,
//! opening and stat-ing, re-reading a known file's values from its old `used` on, and
//! parsing a new file whole.

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{Mode, fstat};

use super::*;

impl Scanner {
    pub(super) fn run_jobs(&self, jobs: Vec<Job>) -> Vec<Outcome> {
        let n = jobs.len();
        let work: Vec<Mutex<Option<Job>>> = jobs.into_iter().map(|j| Mutex::new(Some(j))).collect();
        let results: Vec<Mutex<Option<Outcome>>> = (0..n).map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(0);
        let worker = || {
            let mut scratch = Scratch::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let job = work[i].lock().ok().and_then(|mut g| g.take());
                if let Some(job) = job {
                    let out = self.run_job(job, &mut scratch);
                    if let Ok(mut g) = results[i].lock() {
                        *g = Some(out);
                    }
                }
            }
        };
        let threads = if n < 64 { 1 } else { self.threads.min(n) };
        if threads <= 1 {
            worker();
        } else {
            std::thread::scope(|s| {
                for _ in 1..threads {
                    s.spawn(worker);
                }
                worker();
            });
        }
        results
            .into_iter()
            .map(|m| {
                m.into_inner()
                    .ok()
                    .flatten()
                    .unwrap_or(Outcome::Corrupt("internal: job lost".into()))
            })
            .collect()
    }

    pub(super) fn run_job(&self, job: Job, sc: &mut Scratch) -> Outcome {
        match job {
            Job::Refresh(fs, dead) => {
                let listed = Listed::of(&fs);
                match self.refresh(fs, dead, sc) {
                    Ok(Some(o)) => o,
                    // Layout changed under us: parse from scratch.
                    Ok(None) => self.full(listed, dead, sc),
                    Err(o) => o,
                }
            }
            Job::Full(listed, dead) => self.full(listed, dead, sc),
        }
    }

    pub(super) fn open(&self, name: &str) -> Result<(File, Ident), Outcome> {
        let Some(dir) = &self.dir_fd else {
            return Err(Outcome::Corrupt(format!("{name}: directory not open")));
        };
        // Non-blocking, so that a FIFO named like a .db file cannot hang the scan (a new
        // name is opened without a stat first); regular files ignore the flag. Relative
        // to the directory's descriptor: the kernel resolves one name instead of the
        // whole path (an eighth of a cold scan's CPU was opening files).
        let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        let f = match nix::fcntl::openat(dir, name, flags, Mode::empty()) {
            Ok(fd) => File::from(fd),
            Err(Errno::ENOENT) => return Err(Outcome::Vanished),
            Err(e) => return Err(Outcome::Corrupt(format!("{name}: {}", io::Error::from(e)))),
        };
        let st =
            fstat(&f).map_err(|e| Outcome::Corrupt(format!("{name}: {}", io::Error::from(e))))?;
        match Ident::of_regular(&st) {
            Some(ident) => Ok((f, ident)),
            None => Err(Outcome::NotRegular(format!(
                "{name}: not a regular file, ignored"
            ))),
        }
    }

    /// Re-reads values of a known file (`dead`: its writer was proven dead before);
    /// `Ok(None)` when its layout changed.
    pub(super) fn refresh(
        &self,
        mut fs: Box<FileState>,
        dead: bool,
        scratch: &mut Scratch,
    ) -> Result<Option<Outcome>, Outcome> {
        let (mut f, ident) = self.open(&fs.name)?;
        if ident.ino != fs.ident.ino || ident.dev != fs.ident.dev {
            return Ok(None);
        }
        let buf = &mut scratch.buf;
        let used = format::read_used(&mut f, buf)
            .map_err(|e| Outcome::Corrupt(format!("{}: {e}", fs.name)))?;
        if used < fs.used {
            return Ok(None);
        }
        // Walk the known entries by their length fields and take the values.
        let mut pos = HEADER_LEN;
        let gauge = fs.is_gauge();
        fs.values.clear();
        fs.timestamps.clear();
        for i in 0..fs.len() {
            let Some(len) = buf.get(pos..pos + 4) else {
                return Ok(None);
            };
            let len = i32::from_le_bytes([len[0], len[1], len[2], len[3]]);
            if len < 0 {
                return Ok(None);
            }
            let end = pos + format::entry_len(len as usize);
            if end > fs.used {
                return Ok(None);
            }
            let v = &buf[end - 16..end];
            let mut a = [0u8; 8];
            a.copy_from_slice(&v[..8]);
            fs.push_value(i, f64::from_le_bytes(a));
            if gauge {
                a.copy_from_slice(&v[8..]);
                fs.timestamps.push(i, f64::from_le_bytes(a));
            }
            pos = end;
        }
        if pos != fs.used {
            return Ok(None);
        }
        if used > fs.used {
            let start = fs.used;
            self.parse_into(&mut fs, buf, start, used, &mut scratch.p)
                .map_err(|e| Outcome::Corrupt(format!("{}: {e}", fs.name)))?;
        }
        fs.used = used;
        fs.ident = ident;
        fs.serial = next_serial();
        fs.final_read = dead;
        Ok(Some(Outcome::Ok(fs, used as u64, false)))
    }

    /// Parses a file whole (`dead`: its writer was proven dead before).
    pub(super) fn full(&self, listed: Listed, dead: bool, scratch: &mut Scratch) -> Outcome {
        let Listed { name, db, link } = listed;
        let Some(db) = db else {
            return Outcome::Corrupt(format!("{name}: not a prometheus_client file name"));
        };
        let (mut f, ident) = match self.open(&name) {
            Ok(x) => x,
            Err(o) => return o,
        };
        let buf = &mut scratch.buf;
        let used = match format::read_used(&mut f, buf) {
            Ok(u) => u,
            Err(e) => return Outcome::Corrupt(format!("{name}: {e}")),
        };
        if used <= HEADER_LEN {
            return Outcome::Empty;
        }
        let mut fs = FileState {
            name,
            db,
            ident,
            used: HEADER_LEN,
            serial: next_serial(),
            final_read: dead,
            link,
            key_runs: KeyRuns::default(),
            entries: 0,
            values: SparseValues::new(),
            timestamps: SparseValues::new(),
            families: self.family_lists.empty(),
        };
        if let Err(e) = self.parse_into(&mut fs, buf, HEADER_LEN, used, &mut scratch.p) {
            return Outcome::Corrupt(format!("{}: {e}", fs.name));
        }
        fs.used = used;
        Outcome::Ok(Box::new(fs), used as u64, true)
    }

    /// Parses entries of `buf[start..used]` and appends them to `fs`, interning new keys.
    pub(super) fn parse_into(
        &self,
        fs: &mut FileState,
        buf: &[u8],
        start: usize,
        used: usize,
        sc: &mut ParseScratch,
    ) -> Result<(), FormatError> {
        let gauge = fs.is_gauge();
        let ParseScratch {
            misses,
            values,
            tss,
            ids,
            seen,
            families,
        } = sc;
        misses.clear();
        values.clear();
        tss.clear();
        ids.clear();
        // One walk of the entries: look each key up as it comes (the common case: every
        // key is known, and the next one is the id after the last), and note where the
        // unknown ones are.
        let mut n_nz = 0;
        {
            let interner = self.interner.read().unwrap_or_else(|p| p.into_inner());
            let mut prev: Option<KeyId> = None;
            format::for_each_entry(buf, start, used, |e| {
                let id = match prev {
                    Some(p) => interner.lookup_after(p, e.key),
                    None => interner.lookup(e.key),
                };
                if id.is_none() {
                    let off = e.key.as_ptr() as usize - buf.as_ptr() as usize;
                    misses.push((ids.len(), off, e.key.len()));
                }
                ids.push(id.unwrap_or(KeyId::MAX));
                n_nz += usize::from(e.value.to_bits() != 0);
                values.push(e.value);
                if gauge {
                    tss.push(e.timestamp);
                }
                prev = id;
            })?;
        }
        if !misses.is_empty() {
            self.intern_misses(buf, misses, ids)?;
        }
        // Exact reservations: these vectors live as long as the file, and growing them by
        // doubling (then shrinking) leaves the allocator fragmented.
        let mut next = fs.key_runs.next_in_run();
        let mut n_runs = 0;
        for &id in ids.iter() {
            n_runs += usize::from(next != Some(id));
            next = Some(id.wrapping_add(1));
        }
        fs.key_runs.reserve(n_runs);
        fs.values.reserve_exact(n_nz);
        let interner = self.interner.read().unwrap_or_else(|p| p.into_inner());
        seen.clear();
        seen.extend(fs.families.iter().map(|f| f.0));
        families.clear();
        families.extend(fs.families.iter().copied());
        let known = families.len();
        let mut last = Sid::MAX;
        for (k, (&id, &v)) in ids.iter().zip(values.iter()).enumerate() {
            let metric = interner.key(id).metric;
            // Entries of one family are usually adjacent: test the last one first.
            if metric != last && !seen.contains(&metric) {
                seen.push(metric);
                families.push((metric, id));
            }
            last = metric;
            let i = fs.len();
            fs.push_key(id);
            fs.push_value(i, v);
            if gauge {
                fs.timestamps.push(i, tss[k]);
            }
        }
        if families.len() > known {
            fs.families = self.family_lists.get(families);
        }
        // Per-file vectors live as long as the file: no doubling slack (memory is a goal).
        fs.key_runs.shrink_to_fit();
        fs.values.shrink_to_fit();
        fs.timestamps.shrink_to_fit();
        Ok(())
    }

    /// Parses and interns the keys the interner did not know (`misses`: entry index and
    /// the key's place in `buf`), in file order so that a file's new keys get consecutive
    /// ids (key runs), and puts their ids into `ids`.
    fn intern_misses(
        &self,
        buf: &[u8],
        misses: &[(usize, usize, usize)],
        ids: &mut [KeyId],
    ) -> Result<(), FormatError> {
        let key_of = |&(_, off, len): &(usize, usize, usize)| &buf[off..off + len];
        let mut parsed: FxHashMap<&[u8], Option<ParsedKey>> = FxHashMap::default();
        for m in misses {
            let k = key_of(m);
            if parsed.contains_key(k) {
                continue;
            }
            let p = parse_key(k).map_err(|reason| FormatError::BadKey {
                offset: 0,
                reason: format!("{reason} in {}", String::from_utf8_lossy(k)),
            })?;
            parsed.insert(k, Some(p));
        }
        let mut interner = self.interner.write().unwrap_or_else(|p| p.into_inner());
        let mut new_ids: FxHashMap<&[u8], KeyId> = FxHashMap::default();
        for m in misses {
            let k = key_of(m);
            let id = match parsed.get_mut(k).and_then(|p| p.take()) {
                Some(p) => *new_ids.entry(k).or_insert_with(|| interner.insert(k, p)),
                None => new_ids[k],
            };
            ids[m.0] = id;
        }
        Ok(())
    }
}
