//! The distinct family lists of the kept files, shared between the files whose lists
//! are equal.

use std::sync::{Arc, Mutex};

use rustc_hash::FxHashSet;

use crate::keys::{KeyId, Sid};

/// A file's families in order of first appearance, with the first key of each.
pub type FamilyList = Arc<[(Sid, KeyId)]>;

/// The distinct family lists of the kept files. Files of one type written by the same
/// code usually list the same families with the same first keys: each keeps a reference
/// to one shared list instead of a list of its own (about 60 bytes per file).
#[derive(Debug)]
pub(super) struct FamilyLists {
    set: Mutex<FxHashSet<FamilyList>>,
    /// The list of a file before its parse (cloned without taking the lock).
    empty: FamilyList,
}

impl Default for FamilyLists {
    fn default() -> FamilyLists {
        FamilyLists {
            set: Mutex::default(),
            empty: Arc::new([]),
        }
    }
}

impl FamilyLists {
    /// An empty list.
    pub(super) fn empty(&self) -> FamilyList {
        self.empty.clone()
    }

    /// The shared list equal to `list`.
    pub(super) fn get(&self, list: &[(Sid, KeyId)]) -> FamilyList {
        let mut set = self.set.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(shared) = set.get(list) {
            return shared.clone();
        }
        let shared: FamilyList = list.into();
        set.insert(shared.clone());
        shared
    }

    /// Forgets the lists no kept file refers to any more.
    pub(super) fn prune(&mut self) {
        let set = self.set.get_mut().unwrap_or_else(|p| p.into_inner());
        set.retain(|list| Arc::strong_count(list) > 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_family_lists_are_shared_until_no_file_holds_them() {
        let mut lists = FamilyLists::default();
        let a = lists.get(&[(1, 10), (2, 20)]);
        let b = lists.get(&[(1, 10), (2, 20)]);
        let c = lists.get(&[(1, 10)]);
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        drop(c);
        lists.prune();
        assert_eq!(
            lists.set.lock().unwrap().len(),
            1,
            "the list nobody holds is gone"
        );
        drop((a, b));
        lists.prune();
        assert!(lists.set.lock().unwrap().is_empty());
    }
}
