//! The codec on the values a pool sends most: a small task envelope, its result, and a
//! 1 MiB byte buffer (as a plain `Vec<u8>`, and as serde bytes, which copy in one go).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use multiproc::bench_api::{decode, encode_into};
use serde::{Deserialize, Serialize};

/// The shape of a task on the wire: an id, the function's offset, the argument.
#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Task {
    id: u64,
    fn_offset: i64,
    arg: u64,
}

/// A byte buffer that serializes as one serde `bytes` value instead of a sequence of u8.
#[derive(PartialEq, Debug)]
struct Bytes(Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
        }
        d.deserialize_byte_buf(Visit)
    }
}

const MIB: usize = 1 << 20;

fn one_mib() -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..MIB)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn small(c: &mut Criterion) {
    let task = Task { id: 1_000_003, fn_offset: -74_512, arg: 0x7f3a_dead_beef };
    let result: Result<u64, String> = Ok(0xfe75_bd5b_7dde);
    let mut buf = Vec::with_capacity(64);
    let mut g = c.benchmark_group("codec/small");
    g.throughput(Throughput::Elements(1));
    g.bench_function("task_encode", |b| {
        b.iter(|| {
            buf.clear();
            encode_into(black_box(&task), &mut buf).unwrap();
            black_box(&buf);
        })
    });
    let task_bytes = {
        let mut v = Vec::new();
        encode_into(&task, &mut v).unwrap();
        v
    };
    assert_eq!(decode::<Task>(&task_bytes).unwrap(), task);
    g.bench_function("task_decode", |b| b.iter(|| decode::<Task>(black_box(&task_bytes)).unwrap()));
    g.bench_function("result_encode", |b| {
        b.iter(|| {
            buf.clear();
            encode_into(black_box(&result), &mut buf).unwrap();
            black_box(&buf);
        })
    });
    let result_bytes = {
        let mut v = Vec::new();
        encode_into(&result, &mut v).unwrap();
        v
    };
    g.bench_function("result_decode", |b| b.iter(|| decode::<Result<u64, String>>(black_box(&result_bytes)).unwrap()));
    g.finish();
}

fn one_mib_payload(c: &mut Criterion) {
    let data = one_mib();
    let mut g = c.benchmark_group("codec/1MiB");
    g.throughput(Throughput::Bytes(MIB as u64));
    g.sample_size(30);
    let mut buf = Vec::with_capacity(MIB + 16);

    let as_seq = data.clone();
    g.bench_function("vec_u8_encode", |b| {
        b.iter(|| {
            buf.clear();
            encode_into(black_box(&as_seq), &mut buf).unwrap();
            black_box(&buf);
        })
    });
    let seq_bytes = {
        let mut v = Vec::new();
        encode_into(&as_seq, &mut v).unwrap();
        v
    };
    g.bench_function("vec_u8_decode", |b| b.iter(|| decode::<Vec<u8>>(black_box(&seq_bytes)).unwrap()));

    let as_bytes = Bytes(data);
    g.bench_function("serde_bytes_encode", |b| {
        b.iter(|| {
            buf.clear();
            encode_into(black_box(&as_bytes), &mut buf).unwrap();
            black_box(&buf);
        })
    });
    let bytes_bytes = {
        let mut v = Vec::new();
        encode_into(&as_bytes, &mut v).unwrap();
        v
    };
    assert_eq!(decode::<Bytes>(&bytes_bytes).unwrap(), as_bytes);
    g.bench_function("serde_bytes_decode", |b| b.iter(|| decode::<Bytes>(black_box(&bytes_bytes)).unwrap()));
    g.finish();
}

criterion_group!(benches, small, one_mib_payload);
criterion_main!(benches);
