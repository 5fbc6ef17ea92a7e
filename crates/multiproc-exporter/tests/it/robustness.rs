//! Bad input never fails a scrape: corrupt, truncated, empty, zero-length, foreign-named
//! and vanishing files are skipped (and counted), everything else is served.

use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use multiproc_exporter::format;

use crate::helpers::*;

#[test]
fn corrupt_truncated_empty_and_foreign_files_are_skipped_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    run_py("workers.py", &[d.to_str().expect("utf-8"), "nasty", "2"]);
    let expected = oracle(d, "sorted-text");

    // A copy of a real counter file whose `used` claims more than the file holds.
    let real = fs::read_dir(d)
        .expect("ls")
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().starts_with("counter_"))
        .expect("a counter file")
        .path();
    let mut bytes = fs::read(&real).expect("read");
    let used = i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    bytes.truncate(used - 20);
    fs::write(d.join("counter_4000001.db"), &bytes).expect("write");
    // An entry running past `used`.
    let mut b2 = format::encode([(br#"["x", "x_total", {}, "h"]"#.as_slice(), 1.0, 0.0)]);
    b2[0..4].copy_from_slice(&16i32.to_le_bytes());
    fs::write(d.join("counter_4000002.db"), &b2).expect("write");
    // A well-formed file with a key that is not JSON, and one with a 2-element key (neither
    // upstream's 4 elements nor the postmates fork's 3).
    format::write_file(
        &d.join("counter_4000003.db"),
        [(b"not json".as_slice(), 1.0, 0.0)],
    )
    .expect("write");
    format::write_file(
        &d.join("counter_4000004.db"),
        [(br#"["x", "x_total"]"#.as_slice(), 1.0, 0.0)],
    )
    .expect("write");
    // Negative and unaligned `used`.
    let mut b3 = vec![0u8; 64];
    b3[0..4].copy_from_slice(&(-8i32).to_le_bytes());
    fs::write(d.join("gauge_all_4000005.db"), &b3).expect("write");
    b3[0..4].copy_from_slice(&13i32.to_le_bytes());
    fs::write(d.join("histogram_4000006.db"), &b3).expect("write");
    // Plus counter.db and gauge_max.db below: the fork's archive names, garbage inside.
    let corrupt = 8.0;
    // Empty ones: zero length, 4 bytes, pre-sized but never initialised, header only.
    fs::write(d.join("counter_4000010.db"), b"").expect("write");
    fs::write(d.join("counter_4000011.db"), [8u8, 0, 0, 0]).expect("write");
    fs::write(d.join("counter_4000012.db"), vec![0u8; 65536]).expect("write");
    format::write_file(&d.join("summary_4000013.db"), []).expect("write");
    // Foreign names and things that are not files.
    for n in [
        "counter.db",
        "gauge_max.db",
        "foo_1.db",
        "notes.txt",
        ".counter_1.db",
        "counter_1.db.tmp",
    ] {
        fs::write(d.join(n), b"garbage garbage garbage").expect("write");
    }
    fs::create_dir(d.join("counter_4000020.db")).expect("mkdir");
    // A FIFO would block a plain open() for reading until a writer came.
    nix::unistd::mkfifo(
        &d.join("counter_4000021.db"),
        nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
    )
    .expect("mkfifo");
    let foreign = 3.0; // foo_1.db, the directory, the FIFO

    let exp = Exporter::start(d, &[]);
    for _ in 0..2 {
        let text = exp.scrape();
        assert_eq!(strip_own(&text), expected);
        assert_eq!(
            sample_value(&text, "multiproc_exporter_corrupt_files"),
            Some(corrupt),
            "{text}"
        );
        assert_eq!(
            sample_value(&text, "multiproc_exporter_foreign_files"),
            Some(foreign),
            "{text}"
        );
    }
    // A file that becomes valid later is picked up.
    fs::remove_file(d.join("counter_4000003.db")).expect("rm");
    format::write_file(
        &d.join("counter_4000003.db"),
        [(
            br#"["late", "late_total", {}, "Late"]"#.as_slice(),
            2.0,
            0.0,
        )],
    )
    .expect("write");
    let text = exp.scrape();
    assert_eq!(sample_value(&text, "late_total"), Some(2.0));
    assert_eq!(
        sample_value(&text, "multiproc_exporter_corrupt_files"),
        Some(corrupt - 1.0)
    );
}

#[test]
fn vanishing_and_appearing_files_never_fail_a_scrape() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_path_buf();
    run_py("workers.py", &[d.to_str().expect("utf-8"), "nasty", "1"]);
    let expected = oracle(&d, "sorted-text");
    let exp = Exporter::start(&d, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let churn = {
        let (d, stop) = (d.clone(), stop.clone());
        std::thread::spawn(move || {
            let key = br#"["churn", "churn_total", {}, "Churn"]"#;
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) && i < 20_000 {
                let p = d.join(format!("counter_{}.db", 4_100_000 + i % 50));
                if i.is_multiple_of(2) {
                    let _ = format::write_file(&p, [(key.as_slice(), 1.0, 0.0)]);
                } else {
                    let _ = fs::remove_file(&p);
                }
                i += 1;
            }
        })
    };
    for _ in 0..30 {
        let text = exp.scrape();
        let without: String = strip_own(&text)
            .lines()
            .filter(|l| !l.contains("churn"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(without, expected);
        let churn = sample_value(&text, "churn_total").unwrap_or(0.0);
        assert!((0.0..=50.0).contains(&churn), "{churn}");
    }
    stop.store(true, Ordering::Relaxed);
    churn.join().expect("churn thread");
}
