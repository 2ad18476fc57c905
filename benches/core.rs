//! Micro-benchmarks of the hot paths inside the root: frame encode/decode and lock-table
//! transitions. `cargo bench --bench core`.

use std::hint::black_box;

use actor_tui::proto::{self, ActorId, Reason, ToRoot};
use actor_tui::runtime::lock::{LockKey, LockRequest, LockTable, ReleaseCause};
use criterion::{Criterion, criterion_group, criterion_main};

fn codec(c: &mut Criterion) {
    let small = ToRoot::LockRequest {
        task: 7,
        task_name: "main".into(),
        reason: Reason::Pause,
        location: "src/main.rs:10:5".into(),
        peek: None,
    };
    let output = ToRoot::ReplOutput {
        task: 7,
        epoch: 3,
        data: "x".repeat(4096),
    };
    let small_bytes = proto::frame_bytes(&small).expect("encode");
    let output_bytes = proto::frame_bytes(&output).expect("encode");
    c.bench_function("encode lock_request", |b| {
        b.iter(|| proto::frame_bytes(black_box(&small)))
    });
    c.bench_function("decode lock_request", |b| {
        b.iter(|| proto::read_frame_sync::<_, ToRoot>(&mut black_box(&small_bytes[..])))
    });
    c.bench_function("encode repl_output 4KiB", |b| {
        b.iter(|| proto::frame_bytes(black_box(&output)))
    });
    c.bench_function("decode repl_output 4KiB", |b| {
        b.iter(|| proto::read_frame_sync::<_, ToRoot>(&mut black_box(&output_bytes[..])))
    });
}

fn request(actor: u32, task: u64) -> LockRequest {
    LockRequest {
        key: LockKey {
            actor: ActorId(u64::from(actor)),
            task,
        },
        task_name: "t".into(),
        reason: Reason::Pause,
        location: "x.rs:1".into(),
    }
}

fn lock(c: &mut Criterion) {
    c.bench_function("lock request+release, 100 waiters", |b| {
        let mut t = LockTable::new();
        for a in 0..100 {
            t.request(request(a, 1)).expect("fresh");
        }
        b.iter(|| {
            // Release the holder and put it back at the end of the queue: one handoff.
            let g = t.holder().cloned().expect("held");
            let tr = t
                .release(&g.request.key, g.epoch, ReleaseCause::Continue)
                .expect("holder");
            black_box(tr);
            t.request(g.request).expect("requeue");
        })
    });
    c.bench_function("lock remove_actor from 1000 waiters", |b| {
        b.iter_batched(
            || {
                let mut t = LockTable::new();
                for a in 0..1000 {
                    t.request(request(a, 1)).expect("fresh");
                }
                t
            },
            |mut t| black_box(t.remove_actor(ActorId(500), ReleaseCause::Disconnect)),
            criterion::BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, codec, lock);
criterion_main!(benches);
