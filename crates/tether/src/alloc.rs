//! The global allocator: mimalloc, called the way its fast paths expect.
//!
//! A request allocates and frees a few blocks on one thread; glibc's malloc cost about 4% of the
//! CPU per proxied request, mimalloc's thread-local free lists less than half. The `mimalloc`
//! crate's allocator passes every request to `mi_malloc_aligned`, whose fast path only serves a
//! size whose free list already holds a block. When it does not, a block size that is not a power
//! of two takes the over-allocating path (size + alignment), which fills *another* size's free
//! list, so the next request of that size misses again: a request's boxed head and future (600 and
//! 1,300 bytes) went that way every time, about 250 instructions each. Here a word-aligned block
//! comes from `mi_malloc`, which serves every size from its own free list. A larger alignment is
//! asked of `mi_malloc` first too, and kept when the block happens to be aligned (mimalloc's
//! blocks of one size sit at multiples of that size, so e.g. every 896-byte block is 128-aligned:
//! a task's cell), and only otherwise of the aligned functions.
//!
//! mimalloc is built without transparent huge pages (`no_thp`): it asked the kernel for them on its
//! arenas, and a first touch of a huge page stalled for zeroing or compaction. Applying a
//! 10,000-route table took 10 ms or, one time in three, 35-45 ms (on an idle proxy); without them,
//! 10-15 ms every time.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// Alignment every mimalloc block has: block sizes are whole machine words and each page's
/// blocks start word-aligned (blocks of 16 bytes or more are even 16-aligned).
const WORD: usize = std::mem::size_of::<usize>();

/// Is `p` a block (not null) at a multiple of `align`?
fn aligned(p: *mut u8, align: usize) -> bool {
    !p.is_null() && (p as usize).is_multiple_of(align)
}

/// A block for `layout` from `plain` (mimalloc's size-class allocation) when it is aligned enough,
/// else from `aligned`.
///
/// # Safety
/// `plain` and `aligned` must be mimalloc's plain and aligned forms of one allocation function
/// (`mi_malloc`/`mi_malloc_aligned` or `mi_zalloc`/`mi_zalloc_aligned`).
#[allow(unsafe_code)]
#[inline]
unsafe fn block(
    layout: Layout,
    plain: unsafe extern "C" fn(usize) -> *mut c_void,
    aligned_fn: unsafe extern "C" fn(usize, usize) -> *mut c_void,
) -> *mut u8 {
    // SAFETY: plain FFI calls with a size and a power-of-two alignment (a `Layout` invariant); a
    // plain block is returned only if it is aligned as asked (every block is word-aligned, see
    // `WORD`; a larger alignment is checked), and one that is not goes back to mimalloc at once.
    unsafe {
        let p = plain(layout.size()).cast::<u8>();
        if layout.align() <= WORD || aligned(p, layout.align()) {
            return p;
        }
        mi::mi_free(p.cast());
        aligned_fn(layout.size(), layout.align()).cast()
    }
}

/// mimalloc, with word-aligned requests on its plain (size-class) functions.
pub struct Mimalloc;

#[allow(unsafe_code)]
// SAFETY: every pointer returned comes from mimalloc and is aligned as `layout` asks: a layout
// aligned to at most a word gets a plain block (word-aligned, see `WORD`); for a larger alignment a
// plain block is returned only after checking its address, else mimalloc's aligned functions
// (which guarantee it) are used. `dealloc` and `realloc` receive only
// pointers this allocator returned, which `mi_free`/`mi_realloc*` accept whichever function made
// them (mimalloc finds a block's page from its address). Null is returned on exhaustion, as
// `GlobalAlloc` requires.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: `mi_malloc` and `mi_malloc_aligned` are the plain and aligned forms of one
        // allocation, as `block` requires.
        unsafe { block(layout, mi::mi_malloc, mi::mi_malloc_aligned) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`, zeroed.
        unsafe { block(layout, mi::mi_zalloc, mi::mi_zalloc_aligned) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` was returned by this allocator (the caller's `GlobalAlloc` contract).
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was returned by this allocator for `layout` (the caller's contract); the
        // new block keeps `layout`'s alignment by the same rule as `alloc`.
        unsafe {
            if layout.align() <= WORD {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_aligned_as_asked_and_keep_their_bytes() {
        let a = Mimalloc;
        for align in [1, 2, 4, 8, 16, 32, 64, 128, 4096] {
            for size in [1, 7, 8, 24, 600, 896, 1328, 70_000] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: a non-zero-size layout; the block is written within its size, grown
                // with the same layout, and freed once.
                #[allow(unsafe_code)]
                unsafe {
                    let p = a.alloc(layout);
                    assert!(
                        !p.is_null() && (p as usize).is_multiple_of(align),
                        "{size}/{align}"
                    );
                    p.write_bytes(0xab, size);
                    let q = a.realloc(p, layout, size * 2);
                    assert!(
                        !q.is_null() && (q as usize).is_multiple_of(align),
                        "{size}/{align} grown"
                    );
                    assert_eq!(*q.add(size - 1), 0xab);
                    a.dealloc(q, Layout::from_size_align(size * 2, align).unwrap());
                    let z = a.alloc_zeroed(layout);
                    assert!((z as usize).is_multiple_of(align) && *z.add(size - 1) == 0);
                    a.dealloc(z, layout);
                }
            }
        }
    }
}
