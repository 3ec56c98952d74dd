//! Bare-metal int8 ALBERT on a Cortex-M4F: no `std`, no allocator.
//!
//! * the model file sits in flash, 64-byte aligned, via `include_model!`;
//! * the workspace is a `static` in RAM whose size `build.rs` computed from the
//!   same model file (`Model::workspace_len(MAX_SEQ, 1)`);
//! * one classification of fixed token ids, logits printed over semihosting.
//!
//! Run it in QEMU: `cargo run --release` (see `.cargo/config.toml`).
#![no_std]
#![no_main]

use albert_edge::aligned::AlignedBytes;
use albert_edge::{Input, Model, Workspace};
use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};

mod sizes {
    include!(concat!(env!("OUT_DIR"), "/sizes.rs"));
}
use sizes::{MAX_SEQ, NUM_LABELS, WORKSPACE_LEN};

/// The model, in flash (`.rodata`), 64-byte aligned.
static MODEL: &AlignedBytes<[u8]> = albert_edge::include_model!("../model/seqcls2.int8.albert");

/// `[CLS] ... [SEP]` ids of a short sentence (any ids below the vocabulary size work).
const INPUT_IDS: [u32; 8] = [2, 48, 13, 201, 77, 640, 9, 3];

#[entry]
fn main() -> ! {
    // cortex-m-rt turns this `static mut` into a `&'static mut` owned by `main`
    // (safe: `main` runs once). It lives in RAM (.bss), not on the stack.
    static mut WS: AlignedBytes<[u8; WORKSPACE_LEN]> = AlignedBytes::zeroed();

    let code = match classify(WS.as_bytes_mut()) {
        Ok(()) => debug::EXIT_SUCCESS,
        Err(msg) => {
            hprintln!("error: {}", msg);
            debug::EXIT_FAILURE
        }
    };
    debug::exit(code);
    #[allow(clippy::empty_loop)]
    loop {}
}

fn classify(ws_bytes: &mut [u8]) -> Result<(), &'static str> {
    let model = match Model::from_bytes(MODEL.as_bytes()) {
        Ok(m) => m,
        Err(e) => {
            hprintln!("load: {}", e);
            return Err("the model does not validate");
        }
    };
    if model.workspace_len(MAX_SEQ, 1) > ws_bytes.len() {
        return Err("the static workspace is smaller than the model needs");
    }
    hprintln!(
        "model: {} bytes in flash, tier {}, workspace {} bytes for {} tokens",
        model.bytes().len(),
        model.kernels().tier.name(),
        ws_bytes.len(),
        MAX_SEQ
    );
    let mut ws = Workspace::from_bytes(ws_bytes);
    let out = match model.run(&mut ws, &Input::single(&INPUT_IDS)) {
        Ok(o) => o,
        Err(e) => {
            hprintln!("run: {}", e);
            return Err("run failed");
        }
    };
    let logits = out.get("logits").ok_or("no logits")?.data;
    let mut best = 0;
    for (i, v) in logits.iter().enumerate() {
        // `{:08x}` of the bits: an exact, float-formatting-free print to compare with the host.
        hprintln!("logit[{}] = {:08x}", i, v.to_bits());
        if *v > logits[best] {
            best = i;
        }
    }
    debug_assert_eq!(logits.len(), NUM_LABELS);
    hprintln!("label: {}", model.label(best).unwrap_or("?"));
    Ok(())
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hprintln!("panic: {}", info);
    debug::exit(debug::EXIT_FAILURE);
    loop {}
}
