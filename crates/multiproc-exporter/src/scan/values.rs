//! A file's entry values (and a gauge file's timestamps), kept between scrapes in a
//! compact form: only the values that are not `+0.0` (most entries are never-observed
//! histogram buckets, and most gauges write no timestamp), each as the gap to the
//! previous one's index and the value, small integers (the usual counts) in a byte or
//! two. A 2,000-writer directory's values take about a quarter of what an index and an
//! `f64` per value took.

use super::varint::{get_varint, put_varint, unzigzag, zigzag};

/// Values of entries `0..n` of which only the non-zero ones are stored, in index order.
#[derive(Debug, Default, Clone)]
pub struct SparseValues {
    bytes: Vec<u8>,
    /// Index of the last value stored (`u32::MAX`: none yet).
    last: u32,
}

/// Reads [`SparseValues`] at increasing indexes (see [`SparseValues::cursor`]).
#[derive(Debug)]
pub struct Cursor<'a> {
    values: &'a SparseValues,
    pos: usize,
    /// The next stored value not yet passed: its index and value.
    next: Option<(usize, f64)>,
}

impl Cursor<'_> {
    /// The value at index `i` (`0.0` when none is stored); `i` must not decrease from one
    /// call to the next.
    #[inline]
    pub fn at(&mut self, i: usize) -> f64 {
        while let Some((at, v)) = self.next {
            if at > i {
                break;
            }
            if at == i {
                return v;
            }
            self.next = self.values.next(&mut self.pos, at + 1);
        }
        0.0
    }
}

/// Integers up to this magnitude are stored as varints (exactly: below 2^53).
const INT_LIMIT: f64 = (1u64 << 40) as f64;

impl SparseValues {
    /// No values.
    pub fn new() -> SparseValues {
        SparseValues {
            bytes: Vec::new(),
            last: u32::MAX,
        }
    }

    /// Forgets every value (the layout is re-read).
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.last = u32::MAX;
    }

    /// Reserves room for about `n` more values.
    pub fn reserve_exact(&mut self, n: usize) {
        self.bytes.reserve_exact(n * 3);
    }

    /// Gives back unused capacity (the values live as long as the file).
    pub fn shrink_to_fit(&mut self) {
        self.bytes.shrink_to_fit();
    }

    /// Stores entry `i`'s value (indexes must ascend); `+0.0` is not stored.
    #[inline]
    pub fn push(&mut self, i: usize, v: f64) {
        if v.to_bits() == 0 {
            return;
        }
        let gap = i as u32 - self.last.wrapping_add(1);
        self.last = i as u32;
        put_varint(&mut self.bytes, gap as u64);
        // A cast and back, not `fract()` (a call to `trunc` on baseline x86-64).
        if v.abs() <= INT_LIMIT && (v as i64) as f64 == v && v.to_bits() != (-0.0f64).to_bits() {
            put_varint(&mut self.bytes, zigzag(v as i64) << 1);
        } else {
            self.bytes.push(1);
            self.bytes.extend_from_slice(&v.to_le_bytes());
        }
    }

    /// Calls `f(index, value)` for the `n` entries in order (`0.0` for those not stored).
    pub fn for_each(&self, n: usize, mut f: impl FnMut(usize, f64)) {
        let mut pos = 0;
        let mut next = self.next(&mut pos, 0);
        for i in 0..n {
            match next {
                Some((at, v)) if at == i => {
                    f(i, v);
                    next = self.next(&mut pos, i + 1);
                }
                _ => f(i, 0.0),
            }
        }
    }

    /// Calls `f(index, value)` for the entries whose value is not `+0.0`, in order.
    pub fn for_each_nonzero(&self, mut f: impl FnMut(usize, f64)) {
        let (mut pos, mut from) = (0, 0);
        while let Some((at, v)) = self.next(&mut pos, from) {
            f(at, v);
            from = at + 1;
        }
    }

    /// A reader of the values at increasing indexes, one at a time.
    pub fn cursor(&self) -> Cursor<'_> {
        let mut pos = 0;
        let next = self.next(&mut pos, 0);
        Cursor {
            values: self,
            pos,
            next,
        }
    }

    /// The next stored value at `pos`, whose index is at least `from`.
    fn next(&self, pos: &mut usize, from: usize) -> Option<(usize, f64)> {
        if *pos >= self.bytes.len() {
            return None;
        }
        let gap = get_varint(&self.bytes, pos) as usize;
        let code = get_varint(&self.bytes, pos);
        let v = if code == 1 {
            let mut a = [0u8; 8];
            a.copy_from_slice(&self.bytes[*pos..*pos + 8]);
            *pos += 8;
            f64::from_le_bytes(a)
        } else {
            unzigzag(code >> 1) as f64
        };
        Some((from + gap, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_come_back_bit_for_bit() {
        let vals = [
            0.0,
            1.0,
            -1.0,
            0.0,
            -0.0,
            2.5,
            f64::NAN,
            1e17,
            -((1u64 << 40) as f64),
            (1u64 << 40) as f64 + 1.0,
            f64::INFINITY,
            123456789.0,
            5e-324,
        ];
        let mut s = SparseValues::new();
        for (i, v) in vals.iter().enumerate() {
            s.push(i * 3, *v);
        }
        let mut got = vec![f64::NAN; vals.len() * 3];
        s.for_each(got.len(), |i, v| got[i] = v);
        let mut nonzero = Vec::new();
        s.for_each_nonzero(|i, v| nonzero.push((i, v.to_bits())));
        let want: Vec<_> = (vals.iter().enumerate())
            .filter(|(_, v)| v.to_bits() != 0)
            .map(|(i, v)| (i * 3, v.to_bits()))
            .collect();
        assert_eq!(nonzero, want);
        for (i, v) in vals.iter().enumerate() {
            assert_eq!(got[i * 3].to_bits(), v.to_bits(), "value {i}: {v}");
            assert_eq!(got[i * 3 + 1].to_bits(), 0);
        }
        // A cursor asked at every index, and at every other one, reads the same.
        let mut c = s.cursor();
        let all: Vec<u64> = (0..got.len()).map(|i| c.at(i).to_bits()).collect();
        assert_eq!(all, got.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
        let mut c = s.cursor();
        for i in (0..got.len()).step_by(2) {
            assert_eq!(c.at(i).to_bits(), got[i].to_bits(), "index {i}");
        }
    }
}
