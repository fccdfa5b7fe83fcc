//! Interned strings: one text blob plus end offsets, addressed by small ids, so repository
//! metadata is compact in memory and loads from the cache without one allocation per string.

use std::hash::BuildHasher;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use hashbrown::HashTable;

/// An interned string's id. `Sid(0)` is the empty string, used for "absent".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Sid(pub u32);

impl Sid {
    pub const EMPTY: Sid = Sid(0);

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

#[derive(Default)]
pub struct Strings {
    blob: String,
    /// `ends[i]` is where string `i` ends in `blob` (it starts where `i - 1` ends).
    ends: Vec<u32>,
    /// Built on first lookup: ids by content.
    table: OnceLock<HashTable<u32>>,
    /// Lookups answered by scanning, before the table was worth building.
    scans: AtomicU32,
}

/// How many lookups scan the blob before the hash table is built.
const LINEAR_LOOKUPS: u32 = 16;

impl std::fmt::Debug for Strings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Strings({} strings, {} bytes)",
            self.ends.len(),
            self.blob.len()
        )
    }
}

fn hash(s: &str) -> u64 {
    foldhash::fast::FixedState::with_seed(0x6b696c6e).hash_one(s)
}

impl Strings {
    pub fn new() -> Self {
        let mut s = Strings {
            blob: String::new(),
            ends: Vec::new(),
            table: OnceLock::new(),
            scans: AtomicU32::new(0),
        };
        s.ends.push(0);
        s
    }

    /// Rebuilds a table from its parts (as stored in the cache). Fails if they are inconsistent.
    pub fn from_parts(blob: String, ends: Vec<u32>) -> Option<Self> {
        let ok = ends.first() == Some(&0)
            && ends.windows(2).all(|w| w[0] <= w[1])
            && ends.last().is_some_and(|&e| e as usize == blob.len())
            && ends.iter().all(|&e| blob.is_char_boundary(e as usize));
        ok.then(|| Strings {
            blob,
            ends,
            table: OnceLock::new(),
            scans: AtomicU32::new(0),
        })
    }

    pub fn parts(&self) -> (&str, &[u32]) {
        (&self.blob, &self.ends)
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.len() <= 1
    }

    pub fn get(&self, id: Sid) -> &str {
        let i = id.0 as usize;
        if i == 0 || i >= self.ends.len() {
            return "";
        }
        &self.blob[self.ends[i - 1] as usize..self.ends[i] as usize]
    }

    fn table(&self) -> &HashTable<u32> {
        self.table.get_or_init(|| {
            let mut t = HashTable::with_capacity(self.ends.len());
            for i in 1..self.ends.len() as u32 {
                let s = self.get(Sid(i));
                t.insert_unique(hash(s), i, |&j| hash(self.get(Sid(j))));
            }
            t
        })
    }

    /// The id of `s`, if it is interned. The first few lookups scan (the resolver asks for a
    /// handful of names; hashing 300 000 strings for them would cost more), then a table is
    /// built.
    pub fn lookup(&self, s: &str) -> Option<Sid> {
        if s.is_empty() {
            return Some(Sid::EMPTY);
        }
        if self.table.get().is_none() && self.scans.fetch_add(1, Ordering::Relaxed) < LINEAR_LOOKUPS
        {
            let (blob, ends) = (self.blob.as_bytes(), &self.ends);
            let want = s.as_bytes();
            return (1..ends.len())
                .find(|&i| {
                    let (a, b) = (ends[i - 1] as usize, ends[i] as usize);
                    b - a == want.len() && &blob[a..b] == want
                })
                .map(|i| Sid(i as u32));
        }
        self.table()
            .find(hash(s), |&j| self.get(Sid(j)) == s)
            .map(|&j| Sid(j))
    }

    /// Interns `s`, returning its id (the same id for the same text).
    pub fn intern(&mut self, s: &str) -> Sid {
        if s.is_empty() {
            return Sid::EMPTY;
        }
        self.table();
        let h = hash(s);
        let Strings {
            blob, ends, table, ..
        } = self;
        let table = table.get_mut().expect("initialised above");
        let get = |j: u32| -> &str {
            let j = j as usize;
            &blob[ends[j - 1] as usize..ends[j] as usize]
        };
        if let Some(&j) = table.find(h, |&j| get(j) == s) {
            return Sid(j);
        }
        let id = ends.len() as u32;
        blob.push_str(s);
        ends.push(blob.len() as u32);
        let (blob, ends) = (&*blob, &*ends);
        table.insert_unique(h, id, |&j| {
            let j = j as usize;
            hash(&blob[ends[j - 1] as usize..ends[j] as usize])
        });
        Sid(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn scanning_and_hashed_lookups_agree() {
        let mut s = Strings::new();
        let ids: Vec<Sid> = (0..100).map(|i| s.intern(&format!("name{i}"))).collect();
        let (blob, ends) = s.parts();
        let t = Strings::from_parts(blob.to_string(), ends.to_vec()).unwrap();
        // More lookups than the scanning budget: the later ones go through the table.
        for _ in 0..3 {
            for (i, id) in ids.iter().enumerate() {
                assert_eq!(t.lookup(&format!("name{i}")), Some(*id));
            }
            assert_eq!(t.lookup("name100"), None);
        }
    }

    #[test]
    fn interns_and_finds() {
        let mut s = Strings::new();
        let a = s.intern("bash");
        let b = s.intern("glibc");
        assert_eq!(s.intern("bash"), a);
        assert_ne!(a, b);
        assert_eq!(s.get(a), "bash");
        assert_eq!(s.intern(""), Sid::EMPTY);
        assert_eq!(s.lookup("glibc"), Some(b));
        assert_eq!(s.lookup("zsh"), None);
        let (blob, ends) = s.parts();
        let t = Strings::from_parts(blob.to_string(), ends.to_vec()).unwrap();
        assert_eq!(t.lookup("bash"), Some(a));
        assert_eq!(t.get(b), "glibc");
        assert!(Strings::from_parts("ab".into(), vec![0, 3]).is_none());
    }

    proptest! {
        #[test]
        fn every_string_round_trips(words in prop::collection::vec("\\PC{0,12}", 0..50)) {
            let mut s = Strings::new();
            let ids: Vec<Sid> = words.iter().map(|w| s.intern(w)).collect();
            for (w, id) in words.iter().zip(&ids) {
                prop_assert_eq!(s.get(*id), w.as_str());
                prop_assert_eq!(s.lookup(w), Some(*id));
            }
        }
    }
}
