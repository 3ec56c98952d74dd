//! Holding a model (or a workspace) in a `static` with the 64-byte alignment
//! [`crate::Model::from_bytes`] requires.
//!
//! `include_bytes!` gives a `&'static [u8; N]` with alignment 1, which
//! `Model::from_bytes` rejects with [`crate::LoadError::Misaligned`] unless the
//! linker happens to place it well. Wrap the bytes in [`AlignedBytes`] instead;
//! [`include_model!`](crate::include_model) does it in one line:
//!
//! ```
//! use albert_edge::aligned::AlignedBytes;
//! // In firmware: `static MODEL: &AlignedBytes<[u8]> = albert_edge::include_model!("model.albert");`
//! static BYTES: AlignedBytes<[u8; 128]> = AlignedBytes([0; 128]);
//! assert_eq!(BYTES.as_bytes().as_ptr() as usize % 64, 0);
//! ```
//!
//! The same type serves as a statically allocated workspace:
//! `static mut WS: AlignedBytes<[u8; WS_LEN]> = AlignedBytes([0; WS_LEN]);`
//! (any alignment works for a workspace, but an aligned one wastes no slack).
//!
//! No `unsafe` here: the alignment comes from `#[repr(C, align(64))]`, and the
//! unsized coercion `&AlignedBytes<[u8; N]> -> &AlignedBytes<[u8]>` keeps it.

/// Alignment of model files in memory (equal to [`crate::format::ALIGN`]).
pub const MODEL_ALIGN: usize = 64;

/// Bytes that start on a 64-byte boundary. `T` is `[u8; N]` for a sized
/// value (a `static`), or `[u8]` behind a reference (what `include_model!`
/// returns, so the length need not be spelled out).
#[repr(C, align(64))]
pub struct AlignedBytes<T: ?Sized>(pub T);

// The attribute above is the whole point of the type: check it at compile time.
const _: () = assert!(core::mem::align_of::<AlignedBytes<[u8; 1]>>() == MODEL_ALIGN);
const _: () = assert!(MODEL_ALIGN == crate::format::ALIGN);

impl<T: ?Sized + AsRef<[u8]>> AlignedBytes<T> {
    /// The bytes (64-byte aligned).
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_ref()
    }
}

impl<T: ?Sized + AsMut<[u8]>> AlignedBytes<T> {
    /// The bytes, mutably (e.g. to hand to [`crate::Workspace::from_bytes`]).
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        self.0.as_mut()
    }
}

impl<const N: usize> AlignedBytes<[u8; N]> {
    /// `N` zero bytes, for a `static` workspace.
    pub const fn zeroed() -> Self {
        AlignedBytes([0; N])
    }

    /// Length in bytes.
    pub const fn len(&self) -> usize {
        N
    }

    /// Whether `N` is zero.
    pub const fn is_empty(&self) -> bool {
        N == 0
    }
}

/// Embeds a model file in the binary (in flash on a microcontroller),
/// 64-byte aligned, as a `&'static AlignedBytes<[u8]>`:
///
/// ```text
/// static MODEL: &albert_edge::aligned::AlignedBytes<[u8]> =
///     albert_edge::include_model!("../model.albert");
///
/// let model = albert_edge::Model::from_bytes(MODEL.as_bytes())?;
/// ```
///
/// The path is resolved like `include_bytes!`'s: relative to the file that
/// invokes the macro. `firmware-examples/no-std-cortex-m` uses it and is built
/// and run by `tests/cross_cli.rs`.
#[macro_export]
macro_rules! include_model {
    ($path:expr) => {{
        static ALIGNED: &$crate::aligned::AlignedBytes<[u8]> =
            &$crate::aligned::AlignedBytes(*include_bytes!($path));
        ALIGNED
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statics_and_references_are_aligned() {
        static A: AlignedBytes<[u8; 3]> = AlignedBytes([1, 2, 3]);
        static B: &AlignedBytes<[u8]> = &AlignedBytes([9u8; 65]);
        assert_eq!(A.as_bytes().as_ptr() as usize % MODEL_ALIGN, 0);
        assert_eq!(A.as_bytes(), &[1, 2, 3]);
        assert_eq!(B.as_bytes().as_ptr() as usize % MODEL_ALIGN, 0);
        assert_eq!(B.as_bytes().len(), 65);
        let mut w = AlignedBytes::<[u8; 70]>::zeroed();
        assert_eq!(w.len(), 70);
        assert_eq!(w.as_bytes_mut().as_ptr() as usize % MODEL_ALIGN, 0);
    }

    #[test]
    fn include_model_is_aligned() {
        let m: &AlignedBytes<[u8]> = crate::include_model!("aligned.rs");
        assert_eq!(m.as_bytes().as_ptr() as usize % MODEL_ALIGN, 0);
        assert!(m.as_bytes().starts_with(b"//! Holding"));
    }
}
