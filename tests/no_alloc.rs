//! `Model::run` performs no heap allocation, for every head and both precisions.
//! Proved with a counting global allocator (counts per thread, so other tests
//! running in parallel do not interfere).

mod common;

use albert_edge::{Input, Model, Precision};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn allocations() -> usize {
    ALLOCS.with(|c| c.get())
}

#[test]
fn run_allocates_nothing_for_any_head_or_precision() {
    let ckpts = [
        "tiny-base/base",
        "tiny-base/seqcls2",
        "tiny-base/tokcls5",
        "tiny-base/qa",
        "tiny-base/mlm",
        "tiny-groups/seqcls2",
    ];
    let ids: Vec<u32> = (0..24u32).map(|i| 2 + (i * 37) % 7000).collect();
    let mask: Vec<u32> = (0..48).map(|i| u32::from(i % 24 < 20)).collect();
    let types: Vec<u32> = (0..48).map(|i| u32::from(i % 24 >= 12)).collect();
    let batch_ids: Vec<u32> = ids.iter().chain(ids.iter()).copied().collect();
    for ckpt in ckpts {
        for precision in [Precision::F32, Precision::Int8] {
            let bytes = common::convert_fixture(ckpt, precision);
            let model = Model::from_vec(&bytes).unwrap();
            let mut ws = model.new_workspace(24, 2);
            let inputs = [
                Input::single(&ids),
                Input {
                    batch: 2,
                    seq: 24,
                    input_ids: &batch_ids,
                    attention_mask: Some(&mask),
                    token_type_ids: Some(&types),
                },
            ];
            for input in &inputs {
                let before = allocations();
                let out = model.run(&mut ws, input).unwrap();
                let n = out.iter().count();
                let after = allocations();
                assert_eq!(
                    after - before,
                    0,
                    "{ckpt} {precision:?}: run allocated {} times",
                    after - before
                );
                assert!(n >= 1);
            }
            // An error path allocates nothing either.
            let before = allocations();
            let bad = [9_999_999u32];
            assert!(model.run(&mut ws, &Input::single(&bad)).is_err());
            assert_eq!(allocations() - before, 0);
        }
    }
}
