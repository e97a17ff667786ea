//! Throughput of the hot paths: hashing an entry, appending to the frontier, and serving plus
//! checking an inclusion proof in a large tree.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tally_tlog::{inclusion_proof, leaf_hash, verify_inclusion, Frontier, MemoryTree, NodeSource};

const BIG_TREE: u64 = 1 << 20;

fn bench_leaf_hash(c: &mut Criterion) {
    let data = [0xa5u8; 512];
    let mut g = c.benchmark_group("leaf_hash");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("512B", |b| b.iter(|| leaf_hash(black_box(&data))));
    g.finish();
}

fn bench_frontier_push(c: &mut Criterion) {
    let leaves: Vec<_> = (0u64..1024).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let mut g = c.benchmark_group("frontier");
    g.throughput(Throughput::Elements(leaves.len() as u64));
    g.bench_function("push_1024", |b| {
        b.iter_batched_ref(
            Frontier::new,
            |f| {
                for h in &leaves {
                    f.push(*h, |level, index, hash| {
                        black_box((level, index, hash));
                    });
                }
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn bench_inclusion(c: &mut Criterion) {
    let tree: MemoryTree = (0..BIG_TREE).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let root = tree.root();
    let mut g = c.benchmark_group("inclusion_1M");
    let mut index = 0u64;
    g.bench_function("prove", |b| {
        b.iter(|| {
            // Walk the indices with a large odd stride so every shape of path is exercised.
            index = (index + 0x9e37_79b9) % BIG_TREE;
            inclusion_proof(black_box(index), BIG_TREE, &tree).unwrap()
        })
    });
    g.bench_function("prove_and_verify", |b| {
        b.iter(|| {
            index = (index + 0x9e37_79b9) % BIG_TREE;
            let proof = inclusion_proof(index, BIG_TREE, &tree).unwrap();
            let leaf = tree.node(0, index).unwrap();
            verify_inclusion(&leaf, index, BIG_TREE, &proof, &root).unwrap();
        })
    });
    // An unbalanced size exercises the right-edge recombination.
    let odd = BIG_TREE - 12345;
    let odd_root = tally_tlog::root_hash(odd, &tree).unwrap();
    g.bench_function("prove_and_verify_unbalanced", |b| {
        b.iter(|| {
            index = (index + 0x9e37_79b9) % odd;
            let proof = inclusion_proof(index, odd, &tree).unwrap();
            let leaf = tree.node(0, index).unwrap();
            verify_inclusion(&leaf, index, odd, &proof, &odd_root).unwrap();
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_leaf_hash,
    bench_frontier_push,
    bench_inclusion
);
criterion_main!(benches);
