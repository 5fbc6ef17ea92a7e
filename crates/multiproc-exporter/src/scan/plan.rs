//! Deciding what a scan does with each name of the directory: listing it (or reusing the
//! last listing when no name appeared or vanished), whether the writers' PID namespace is
//! visible, and per name whether to keep, re-read or parse the file.

use nix::fcntl::AtFlags;
use nix::sys::stat::fstatat;

use super::*;

impl Scanner {
    /// Lists the directory's `.db` names, sorted (the merge order).
    pub(super) fn list(&self) -> Result<Vec<Listed>, ScanError> {
        let rd = fs::read_dir(&self.dir).map_err(|source| ScanError::Dir {
            path: self.dir.clone(),
            source,
        })?;
        let mut names: Vec<Listed> = Vec::new();
        for ent in rd {
            let Ok(ent) = ent else { continue };
            let Ok(name) = ent.file_name().into_string() else {
                continue;
            };
            if !is_listed(&name) {
                continue;
            }
            let link = ent.file_type().map(|t| t.is_symlink()).unwrap_or(true);
            // The name's parse is kept from the last scan when it has the file.
            names.push(Listed {
                name: name.into(),
                db: None,
                link,
            });
        }
        names.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        Ok(names)
    }

    /// A listing paired with the last scan's state of each name by a merge-join (both
    /// lists are sorted by name).
    pub(super) fn pair(names: Vec<Listed>, old: Files) -> Vec<Candidate> {
        let mut old = old.into_iter().peekable();
        names
            .into_iter()
            .map(|mut l| {
                while old.next_if(|o| o.name < l.name).is_some() {}
                let prev = old.next_if(|o| o.name == l.name);
                l.db = match &prev {
                    Some(p) => Some(p.db.clone()),
                    None => DbName::parse(&l.name),
                };
                Candidate::Listed(l, prev)
            })
            .collect()
    }

    /// The last scan's names again, without a listing: its kept files and its other
    /// names, merged in name order.
    pub(super) fn relist(old: Files, others: Vec<Listed>) -> Vec<Candidate> {
        let mut out = Vec::with_capacity(old.len() + others.len());
        let mut others = others.into_iter().peekable();
        for fs in old {
            while let Some(l) = others.next_if(|l| l.name < fs.name) {
                out.push(Candidate::Listed(l, None));
            }
            out.push(Candidate::Known(fs));
        }
        out.extend(others.map(|l| Candidate::Listed(l, None)));
        out
    }

    /// Whether the writers' PID namespace is visible (see
    /// [`namespace_visible`](crate::liveness::namespace_visible)); the owner that proved it
    /// last time is asked first, so a warm scan does not probe every dead owner.
    pub(super) fn visible(&mut self, cands: &[Candidate]) -> bool {
        if self.liveness.is_some() {
            return true;
        }
        if self.prover.is_some_and(proves_namespace) {
            return true;
        }
        let owners: BTreeSet<i32> = cands.iter().filter_map(Candidate::owner_pid).collect();
        self.prover = namespace_prover(&owners);
        self.prover.is_some()
    }

    /// What to do with one name (`prev`: the last scan's state of it; `dead`: whether an
    /// owner pid is proven dead).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn decide(
        &self,
        name: &str,
        db: Option<&DbName>,
        link: bool,
        prev: Option<&FileState>,
        changes: &Changes,
        stats: &mut ScanStats,
        mut dead: impl FnMut(i32) -> bool,
    ) -> Decision {
        let Some(db) = db else {
            stats.foreign += 1;
            stats.problems.push(format!(
                "{name}: not a prometheus_client file name, ignored"
            ));
            return Decision::Other;
        };
        let Some(prev) = prev else {
            // A new name: opening it tells all a stat would (the read sees it vanish, or
            // not be a regular file).
            return Decision::Read(Read::Full {
                dead: db.owner_pid.is_some_and(&mut dead),
            });
        };
        if !link && !changes.may_have_changed(name) {
            let p = prev;
            stats.unchecked += 1;
            // No event named it: a final content is still final (no liveness probe
            // needed), anything else is re-read.
            return match p.final_read {
                true => Decision::Keep,
                false => Decision::Read(Read::Refresh {
                    dead: db.owner_pid.is_some_and(&mut dead),
                }),
            };
        }
        // Follows symlinks, like Python's open().
        let ident = match self.stat(name, link) {
            Ok(Some(ident)) => ident,
            Ok(None) => {
                stats.foreign += 1;
                stats
                    .problems
                    .push(format!("{name}: not a regular file, ignored"));
                return Decision::Other;
            }
            Err(_) => {
                stats.vanished += 1;
                return Decision::Drop;
            }
        };
        let dead = db.owner_pid.is_some_and(&mut dead);
        match prev {
            p if p.ident == ident && p.final_read && dead => Decision::Keep,
            p if p.ident == ident => Decision::Read(Read::Refresh { dead }),
            _ => Decision::Read(Read::Full { dead }),
        }
    }
}

impl Scanner {
    /// Stats a name of the directory (following a symlink when `follow`): its identity,
    /// `None` when it is not a regular file.
    fn stat(&self, name: &str, follow: bool) -> io::Result<Option<Ident>> {
        let Some(dir) = &self.dir_fd else {
            return Err(io::Error::other("directory not open"));
        };
        let flags = match follow {
            true => AtFlags::empty(),
            false => AtFlags::AT_SYMLINK_NOFOLLOW,
        };
        let st = fstatat(dir, name, flags).map_err(io::Error::from)?;
        Ok(Ident::of_regular(&st))
    }
}

/// Whether a directory entry's name is one a scan looks at (`*.db`, no dot-files).
pub(super) fn is_listed(name: &str) -> bool {
    !name.starts_with('.') && name.ends_with(".db")
}
