//! A file's entry keys, kept between scrapes in a compact form. Keys are interned in file
//! order and files are written in blocks (a histogram child's buckets, a labelled child's
//! samples), so a file's key ids are runs of consecutive ids. Each run is stored as two
//! varints, the distance of its start from the previous run's end and its length: about
//! 3 bytes a run (a 2,000-writer directory has ~470 K runs), where a pair of `u32` took 8.

use super::varint::{get_varint, put_varint, unzigzag, zigzag};
use crate::keys::KeyId;

/// The key ids of a file's entries, in file order.
#[derive(Debug, Default, Clone)]
pub struct KeyRuns {
    /// The closed runs, encoded.
    bytes: Vec<u8>,
    /// End (last id + 1) of the last closed run: the next start is coded from it.
    closed_end: KeyId,
    /// The last run, still growing: `(start, length)`; length 0 when there is none.
    open: (KeyId, u32),
}

impl KeyRuns {
    /// Appends the key of the next entry.
    #[inline]
    pub fn push(&mut self, id: KeyId) {
        let (start, len) = self.open;
        if len > 0 && start.wrapping_add(len) == id {
            self.open.1 += 1;
            return;
        }
        if len > 0 {
            let delta = i64::from(start) - i64::from(self.closed_end);
            put_varint(&mut self.bytes, zigzag(delta));
            put_varint(&mut self.bytes, u64::from(len));
            self.closed_end = start.wrapping_add(len);
        }
        self.open = (id, 1);
    }

    /// The id that would extend the last run (`None` before the first key).
    pub fn next_in_run(&self) -> Option<KeyId> {
        (self.open.1 > 0).then(|| self.open.0.wrapping_add(self.open.1))
    }

    /// Reserves room for about `runs` more runs.
    pub fn reserve(&mut self, runs: usize) {
        self.bytes.reserve_exact(runs * 3);
    }

    /// Gives back unused capacity (the list lives as long as the file).
    pub fn shrink_to_fit(&mut self) {
        self.bytes.shrink_to_fit();
    }

    /// The runs in file order, as `(first id, length)`.
    pub fn runs(&self) -> impl Iterator<Item = (KeyId, u32)> + '_ {
        let mut pos = 0;
        let mut end: KeyId = 0;
        let closed = std::iter::from_fn(move || {
            if pos >= self.bytes.len() {
                return None;
            }
            let start = (i64::from(end) + unzigzag(get_varint(&self.bytes, &mut pos))) as KeyId;
            let len = get_varint(&self.bytes, &mut pos) as u32;
            end = start.wrapping_add(len);
            Some((start, len))
        });
        closed.chain((self.open.1 > 0).then_some(self.open))
    }

    /// The ids in file order.
    pub fn iter(&self) -> impl Iterator<Item = KeyId> + '_ {
        self.runs()
            .flat_map(|(start, len)| start..start.wrapping_add(len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_back_in_order() {
        let ids: Vec<KeyId> = vec![5, 6, 7, 0, 1, 9000, 9001, 3, 3, 4, 70000, 2, 8];
        let mut runs = KeyRuns::default();
        assert_eq!(runs.iter().count(), 0);
        for &id in &ids {
            runs.push(id);
        }
        assert_eq!(runs.iter().collect::<Vec<_>>(), ids);
        assert_eq!(runs.next_in_run(), Some(9));
        // Runs of consecutive ids take a few bytes each.
        assert!(runs.bytes.len() <= 3 * 10, "{}", runs.bytes.len());
    }
}
