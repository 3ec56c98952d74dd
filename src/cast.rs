//! The only place that reinterprets bytes as numbers.
//!
//! Model files are little-endian and every tensor starts 64-byte aligned
//! (checked by [`crate::format::parse`]), so on a little-endian host a tensor's
//! bytes *are* its `f32`/`i32` values and can be viewed without copying.

/// Views `b` as `f32` values. Returns `None` unless `b` is 4-byte aligned and its
/// length a multiple of 4.
pub fn f32s(b: &[u8]) -> Option<&[f32]> {
    if !(b.as_ptr() as usize).is_multiple_of(core::mem::align_of::<f32>())
        || !b.len().is_multiple_of(4)
    {
        return None;
    }
    // SAFETY: the pointer is aligned for f32 (checked above), the length is an
    // exact multiple of 4 bytes (checked above) and stays within `b`, every bit
    // pattern is a valid f32, and the returned slice borrows `b` immutably.
    Some(unsafe { core::slice::from_raw_parts(b.as_ptr().cast::<f32>(), b.len() / 4) })
}

/// Views `b` as `i32` values; same conditions as [`f32s`].
pub fn i32s(b: &[u8]) -> Option<&[i32]> {
    if !(b.as_ptr() as usize).is_multiple_of(core::mem::align_of::<i32>())
        || !b.len().is_multiple_of(4)
    {
        return None;
    }
    // SAFETY: as in `f32s`: aligned, exact length, any bit pattern is a valid i32.
    Some(unsafe { core::slice::from_raw_parts(b.as_ptr().cast::<i32>(), b.len() / 4) })
}

/// Views bytes as `i8` values.
pub fn i8s(b: &[u8]) -> &[i8] {
    // SAFETY: i8 and u8 have the same size and alignment and every bit pattern is
    // valid for both; the slice keeps `b`'s length and borrow.
    unsafe { core::slice::from_raw_parts(b.as_ptr().cast::<i8>(), b.len()) }
}

/// Views a mutable `f32` region as `i8` scratch (4 bytes per float).
pub fn f32s_as_i8s_mut(b: &mut [f32]) -> &mut [i8] {
    // SAFETY: i8 has alignment 1 and every bit pattern is valid for both types;
    // the byte length is exactly `4 * b.len()`; the result borrows `b` mutably,
    // so no other view of the region exists while it lives.
    unsafe { core::slice::from_raw_parts_mut(b.as_mut_ptr().cast::<i8>(), b.len() * 4) }
}

/// The largest 64-byte aligned `f32` region inside `b`.
pub fn aligned_f32s_mut(b: &mut [u8]) -> &mut [f32] {
    let skip = b.as_ptr().align_offset(64).min(b.len());
    let rest = &mut b[skip..];
    let n = rest.len() / 4;
    // SAFETY: `rest` starts 64-byte (hence 4-byte) aligned, `n * 4 <= rest.len()`,
    // every bit pattern is a valid f32, and the result reborrows `rest` mutably.
    unsafe { core::slice::from_raw_parts_mut(rest.as_mut_ptr().cast::<f32>(), n) }
}

/// Views a mutable `f32` region as `i32` values (same size and alignment).
pub fn f32s_as_i32s_mut(b: &mut [f32]) -> &mut [i32] {
    // SAFETY: f32 and i32 have the same size and alignment and every bit pattern
    // is valid for both; the result borrows `b` mutably for its whole length.
    unsafe { core::slice::from_raw_parts_mut(b.as_mut_ptr().cast::<i32>(), b.len()) }
}

/// Extends the lifetime of a view into a model's own storage.
///
/// # Safety
///
/// The caller must guarantee that the bytes stay valid and unchanged for as
/// long as the returned slice is used: `Model` stores such views next to the
/// storage they point into (a borrowed slice, an mmap or a heap buffer, none of
/// which moves when the `Model` moves), and only hands them out re-borrowed for
/// the lifetime of `&self`.
pub(crate) unsafe fn extend_lifetime(b: &[u8]) -> &'static [u8] {
    // SAFETY: same pointer and length; validity for the extended lifetime is the
    // caller's obligation (see above).
    unsafe { core::slice::from_raw_parts(b.as_ptr(), b.len()) }
}
