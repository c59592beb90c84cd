//! Whether the kernel's `PAGEMAP_SCAN` tells wasmtime which pages an instance really dirtied.
//!
//! When an instance ends, the pooling allocator resets its linear memory for the next one. With
//! `pagemap_scan` on, wasmtime asks the kernel (`PAGEMAP_SCAN`, Linux 6.7+) for the pages written
//! since the slot was mapped and resets only those in place. wasmtime 50.0.1 asks for pages that are
//! *written*, no longer *written and present*, so that a dirty page in swap is reset too. But without
//! userfaultfd write protection the kernel counts a page that was never touched as written (measured
//! on Linux 6.18: of 256 pages with 2 written, the scan reports 255; asking for present pages too
//! reports the 2). wasmtime then resets the whole slot, up to `linear_memory_keep_resident`, in place
//! after every request: a `memset` of every page the guest never touched, which faults each one in,
//! plus the scan itself. Measured on `hello` that costs more than resetting the same bytes without a
//! scan (BENCHMARKS.md, "Where the 0.2 time went").
//!
//! So the engine turns the scan on only where this probe finds it precise: one page written out of
//! four, and the scan reports exactly that page.

/// True when a `PAGEMAP_SCAN` asking what wasmtime asks reports only the pages that were written.
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
#[allow(unsafe_code)]
pub(crate) fn scan_is_precise() -> bool {
    use std::ffi::c_void;

    /// `struct pm_scan_arg` of `linux/fs.h`.
    #[repr(C)]
    struct ScanArg {
        size: u64,
        flags: u64,
        start: u64,
        end: u64,
        walk_end: u64,
        vec: u64,
        vec_len: u64,
        max_pages: u64,
        category_inverted: u64,
        category_mask: u64,
        category_anyof_mask: u64,
        return_mask: u64,
    }
    /// `struct page_region` of `linux/fs.h`.
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Region {
        start: u64,
        end: u64,
        categories: u64,
    }
    // The categories of `linux/fs.h`.
    const PAGE_IS_WRITTEN: u64 = 1 << 1;
    const PAGE_IS_FILE: u64 = 1 << 2;
    const PAGE_IS_PFNZERO: u64 = 1 << 5;
    // `_IOWR('f', 16, struct pm_scan_arg)`.
    const PAGEMAP_SCAN: u64 = (3 << 30) | ((size_of::<ScanArg>() as u64) << 16) | (0x66 << 8) | 16;
    const PAGES: usize = 4;

    // SAFETY: a private anonymous mapping of our own, written and scanned only here and unmapped
    // before returning; the ioctl writes at most `vec_len` regions into `regions`, which outlives it.
    unsafe {
        let page = match usize::try_from(libc::sysconf(libc::_SC_PAGESIZE)) {
            Ok(page) if page > 0 => page,
            _ => return false,
        };
        let len = PAGES * page;
        let base = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if base == libc::MAP_FAILED {
            return false;
        }
        base.cast::<u8>().write_volatile(1);
        let precise = (|| {
            let fd = libc::open(
                c"/proc/self/pagemap".as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            );
            if fd < 0 {
                return false;
            }
            let mut regions = [Region::default(); PAGES];
            let mut arg = ScanArg {
                size: size_of::<ScanArg>() as u64,
                flags: 0,
                start: base as u64,
                end: base as u64 + len as u64,
                walk_end: 0,
                vec: regions.as_mut_ptr() as u64,
                vec_len: PAGES as u64,
                max_pages: PAGES as u64,
                category_inverted: PAGE_IS_PFNZERO | PAGE_IS_FILE,
                category_mask: PAGE_IS_WRITTEN | PAGE_IS_PFNZERO | PAGE_IS_FILE,
                category_anyof_mask: 0,
                return_mask: 0,
            };
            let found = libc::ioctl(
                fd,
                PAGEMAP_SCAN as _,
                &mut arg as *mut ScanArg as *mut c_void,
            );
            libc::close(fd);
            found == 1
                && regions[0].start == base as u64
                && regions[0].end == base as u64 + page as u64
        })();
        libc::munmap(base, len);
        precise
    }
}

/// Elsewhere wasmtime does not scan at all.
#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
pub(crate) fn scan_is_precise() -> bool {
    false
}
