//! Allocator benchmarks: a whole /16 handed out, and allocation around
//! 10,000 addresses already taken. `cargo bench --bench pool`.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use mvconf::pool::{Allocator, IpRange, Pool};
use std::hint::black_box;
use std::net::Ipv4Addr;

fn slash16() -> Pool {
    Pool::new([IpRange::new(Ipv4Addr::new(10, 0, 0, 0), Ipv4Addr::new(10, 0, 255, 255)).unwrap()])
}

fn bench(c: &mut Criterion) {
    c.bench_function("allocate every address of a /16 (65,536)", |b| {
        b.iter_batched(
            || Allocator::new(slash16()),
            |mut a| {
                while let Ok(ip) = a.allocate(None) {
                    black_box(ip);
                }
                a
            },
            BatchSize::LargeInput,
        )
    });

    // 10,000 taken addresses scattered over the /16 (every sixth one, plus a
    // solid block at the start), then 1,000 allocations around them.
    let mut taken = Allocator::new(slash16());
    for i in 0..10_000u32 {
        let v = if i < 2_000 {
            i
        } else {
            2_000 + (i - 2_000) * 6
        };
        taken.exclude(Ipv4Addr::from(0x0a00_0000 + v));
    }
    c.bench_function("1,000 allocations with 10,000 addresses taken", |b| {
        b.iter_batched(
            || taken.clone(),
            |mut a| {
                for _ in 0..1_000 {
                    black_box(a.allocate(None).ok());
                }
                a
            },
            BatchSize::LargeInput,
        )
    });
    c.bench_function("1,000 preferred allocations with 10,000 taken", |b| {
        b.iter_batched(
            || taken.clone(),
            |mut a| {
                for i in 0..1_000u32 {
                    black_box(a.allocate(Some(Ipv4Addr::from(0x0a00_f000 + i))).ok());
                }
                a
            },
            BatchSize::LargeInput,
        )
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
