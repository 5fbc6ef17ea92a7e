//! Property tests of the `.db` reader (issue 20, item 3): files written by a model of
//! Python's `MmapedDict` read back exactly; arbitrary bytes, truncations and bit flips
//! are refused with an error or read consistently (entries tile `8..used` exactly),
//! never a panic, and nothing past `used` ever changes what is read.
//! `PROPTEST_CASES=100000 cargo test -p multiproc-exporter --test it prop_` runs them longer.

use std::io::Write;

use multiproc_exporter::format::{self, FormatError};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// One entry as Python writes it (reference/python-multiprocess.md §1.3):
/// `i32 len | key | 1..=8 spaces so that 4+len+pad is a multiple of 8 | f64 | f64`.
/// Written independently of `format::encode`, so a shared mistake cannot hide.
fn python_entry(key: &[u8], value: f64, timestamp: f64) -> Vec<u8> {
    let mut e = (key.len() as i32).to_le_bytes().to_vec();
    e.extend_from_slice(key);
    let mut pad = 8 - (4 + key.len()) % 8;
    if pad == 0 {
        pad = 8;
    }
    e.extend(std::iter::repeat_n(b' ', pad));
    e.extend_from_slice(&value.to_le_bytes());
    e.extend_from_slice(&timestamp.to_le_bytes());
    e
}

type Entry = (String, f64, f64);

/// A whole file as Python leaves it: header, entries, then zeros up to the capacity
/// (64 KiB doubled); `pending` is an entry appended after the last `used` update, as a
/// reader can see it mid-append: it must not be read.
fn python_file(entries: &[Entry], pending: Option<&Entry>) -> (Vec<u8>, usize) {
    let mut body = vec![0u8; 8];
    for (k, v, t) in entries {
        body.extend(python_entry(k.as_bytes(), *v, *t));
    }
    let used = body.len();
    body[..4].copy_from_slice(&(used as i32).to_le_bytes());
    if let Some((k, v, t)) = pending {
        body.extend(python_entry(k.as_bytes(), *v, *t));
    }
    let mut cap = 1usize << 16;
    while body.len() > cap {
        cap *= 2;
    }
    body.resize(cap, 0);
    (body, used)
}

fn read_bytes(bytes: &[u8]) -> Result<Vec<Entry>, FormatError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("counter_1.db");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
    format::read_file(&path)
}

/// Compares floats by their bits: NaN payloads must survive too.
fn bits(entries: &[Entry]) -> Vec<(String, u64, u64)> {
    entries
        .iter()
        .map(|(k, v, t)| (k.clone(), v.to_bits(), t.to_bits()))
        .collect()
}

/// A read that succeeded is consistent: its entries tile `8..used` exactly, so no entry
/// reached past `used`.
fn assert_tiles(bytes: &[u8], entries: &[Entry]) -> Result<(), TestCaseError> {
    let used = if bytes.len() < 8 {
        0
    } else {
        i32::from_le_bytes(bytes[..4].try_into().unwrap()).max(0) as usize
    };
    let covered: usize = entries
        .iter()
        .map(|(k, _, _)| format::entry_len(k.len()))
        .sum();
    if used == 0 {
        prop_assert!(entries.is_empty());
    } else {
        prop_assert_eq!(covered + 8, used, "entries do not tile 8..used");
    }
    Ok(())
}

fn key() -> impl Strategy<Value = String> {
    (
        "[a-z_:][a-z0-9_:]{0,12}",
        prop_oneof![Just(""), Just("_total"), Just("_bucket"), Just("_sum")],
        prop::collection::vec(("[a-z_][a-z0-9_]{0,6}", any::<String>()), 0..3),
        any::<String>(),
    )
        .prop_map(|(metric, suffix, labels, help)| {
            let sample = format!("{metric}{suffix}");
            let labels: Vec<(&str, &str)> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            format::python_key(&metric, &sample, &labels, &help)
        })
}

fn entries() -> impl Strategy<Value = Vec<Entry>> {
    prop::collection::vec((key(), any::<f64>(), any::<f64>()), 0..12)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn prop_db_python_writer_reads_back_exactly(
        entries in entries(),
        pending in prop::option::of((key(), any::<f64>(), any::<f64>())),
    ) {
        let (bytes, used) = python_file(&entries, pending.as_ref());
        // The model and the crate's own encoder agree byte for byte.
        let ours = format::encode(entries.iter().map(|(k, v, t)| (k.as_bytes(), *v, *t)));
        prop_assert_eq!(&ours[..], &bytes[..used]);
        let read = read_bytes(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(bits(&read), bits(&entries));
    }

    #[test]
    fn prop_db_arbitrary_bytes_error_or_consistent(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..300),
            // A plausible header so the entry walk is reached more often.
            (0i32..300, prop::collection::vec(any::<u8>(), 0..300)).prop_map(|(used, rest)| {
                let mut b = ((used / 8) * 8).to_le_bytes().to_vec();
                b.extend([0; 4]);
                b.extend(rest);
                b
            }),
        ],
        tail in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let first = read_bytes(&bytes);
        if let Ok(entries) = &first {
            assert_tiles(&bytes, entries)?;
            // Bytes past `used` never change what is read.
            let used = if bytes.len() < 8 { 0 } else { i32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize };
            if used >= 8 {
                let mut other = bytes[..used].to_vec();
                other.extend(&tail);
                let again = read_bytes(&other).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(bits(&again), bits(entries));
            }
        }
    }

    #[test]
    fn prop_db_truncation_is_empty_error_or_whole(
        entries in entries(),
        cut in any::<prop::sample::Index>(),
    ) {
        let (bytes, used) = python_file(&entries, None);
        let len = cut.index(used + 16);
        let result = read_bytes(&bytes[..len.min(bytes.len())]);
        if len < 8 {
            // A writer between open and truncate: simply empty for now.
            prop_assert!(matches!(&result, Ok(e) if e.is_empty()), "{:?}", result);
        } else if len < used {
            prop_assert!(matches!(result, Err(FormatError::Truncated { .. })), "{:?}", result);
        } else {
            let read = result.map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(bits(&read), bits(&entries));
        }
    }

    #[test]
    fn prop_db_bit_flip_is_error_or_consistent(
        entries in entries(),
        at in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let (mut bytes, used) = python_file(&entries, None);
        // Flip anywhere in the used part or just past it.
        let pos = at.index(used + 64);
        bytes[pos] ^= 1 << bit;
        match read_bytes(&bytes) {
            Ok(read) => {
                assert_tiles(&bytes, &read)?;
                if pos >= used || (4..8).contains(&pos) {
                    // Past `used`, or the header's unused half: nothing read changes.
                    prop_assert_eq!(bits(&read), bits(&entries));
                }
            }
            Err(e) => {
                // Only a flip inside what is read can make it fail.
                prop_assert!(pos < used, "flip at {} past used {} gave {}", pos, used, e);
            }
        }
    }
}
