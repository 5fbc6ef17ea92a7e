//! Criterion micro-benchmarks of the hot functions of a static request: encoding a
//! 1,000-target response as Flask would (`pyjson`), validating generator output
//! (`validate`), parsing a request path and selecting its generators (`tree`).
//! Run with `cargo bench -p httpsd --bench micro`; whole-program benchmarks live in
//! `bench/`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use httpsd::tree::{FileStamp, GeneratorFile, GeneratorKind, Listing, SubPath};
use httpsd::validate::{Profile, validate};
use serde_json::{Value, json};

/// 100 groups of 10 targets with three labels each: the static benchmark's path.
fn thousand_targets() -> Value {
    let groups: Vec<Value> = (0..100)
        .map(|g| {
            let targets: Vec<String> = (0..10)
                .map(|t| format!("10.{}.{}.{}:9100", g / 256, g % 256, t))
                .collect();
            json!({
                "targets": targets,
                "labels": {"job": "node", "group": format!("g{g}"), "dc": "eu-west-1"},
            })
        })
        .collect();
    Value::Array(groups)
}

/// A listing of 2,000 generators in 40 directories of 50 files.
fn listing() -> Listing {
    let mut listing = Listing::default();
    listing.dirs.insert(String::new());
    let stamp = FileStamp {
        dev: 0,
        ino: 0,
        size: 0,
        mtime_ns: 0,
        ctime_ns: 0,
    };
    let mut generators = Vec::new();
    for d in 0..40 {
        listing.dirs.insert(format!("d{d:02}"));
        for f in 0..50 {
            let rel = format!("d{d:02}/g{f:02}.json");
            generators.push(GeneratorFile {
                abs: rel.clone().into(),
                rel,
                kind: GeneratorKind::Json,
                stamp,
            });
        }
    }
    generators.sort_by(|a, b| httpsd::tree::cmp_components(&a.rel, &b.rel));
    listing.generators = generators;
    listing
}

fn bench_pyjson(c: &mut Criterion) {
    let v = thousand_targets();
    c.bench_function("pyjson::to_body 1000 targets", |b| {
        b.iter(|| httpsd::pyjson::to_body(black_box(&v)))
    });
    c.bench_function("serde_json::to_vec 1000 targets (reference)", |b| {
        b.iter(|| serde_json::to_vec(black_box(&v)))
    });
}

fn bench_validate(c: &mut Criterion) {
    let v = thousand_targets();
    c.bench_function("validate serve profile 1000 targets", |b| {
        b.iter(|| validate(black_box(&v), &Profile::SERVE))
    });
    let check = Profile::check(false);
    c.bench_function("validate check profile 1000 targets", |b| {
        b.iter(|| validate(black_box(&v), &check))
    });
}

fn bench_select(c: &mut Criterion) {
    let l = listing();
    c.bench_function("SubPath::parse + select dir of 50 in 2000", |b| {
        b.iter(|| {
            let sub = SubPath::parse(black_box("d17/")).expect("valid path");
            matches!(l.select(&sub), httpsd::tree::Selection::Generators(g) if g.len() == 50)
        })
    });
    c.bench_function("SubPath::parse + select one file in 2000", |b| {
        b.iter(|| {
            let sub = SubPath::parse(black_box("d33/g07.json")).expect("valid path");
            matches!(l.select(&sub), httpsd::tree::Selection::Generators(g) if g.len() == 1)
        })
    });
}

criterion_group!(benches, bench_pyjson, bench_validate, bench_select);
criterion_main!(benches);
