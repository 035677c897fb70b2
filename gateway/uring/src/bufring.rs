//! The provided-buffer ring of one io_uring: `count` buffers of `size`
//! bytes that the kernel picks from for multishot receives. A buffer
//! belongs to the kernel until a completion names it, then to the caller
//! until [`BufRing::recycle`] gives it back; a connection that receives
//! nothing holds none.

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::IoUring;

/// One anonymous, private, page-aligned mapping, unmapped on drop.
#[derive(Debug)]
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> io::Result<Self> {
        // SAFETY: a fresh anonymous mapping; no existing memory is touched.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { ptr: ptr.cast(), len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.ptr.is_null() {
            return;
        }
        // SAFETY: `ptr..ptr + len` is the mapping made in `new`, unmapped
        // only here.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

/// The buffers and the ring of their addresses that the kernel takes from.
#[derive(Debug)]
pub(crate) struct BufRing {
    /// `count` ring entries (16 bytes each); the kernel reads them.
    entries: Mapping,
    /// `count * size` bytes of buffers; the kernel writes them.
    buffers: Mapping,
    count: u16,
    size: u32,
    /// The next entry to fill, published to the kernel after each recycle.
    tail: u16,
}

impl BufRing {
    /// Maps `count` (a power of two, at most 32,768) buffers of `size` bytes
    /// and registers them with `ring` as buffer group `group`.
    pub(crate) fn new(ring: &IoUring, group: u16, count: u16, size: u32) -> io::Result<Self> {
        if !count.is_power_of_two() || count > 1 << 15 || size == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffers: a power of two up to 32768, of a non-zero size",
            ));
        }
        let entries = Mapping::new(usize::from(count) * std::mem::size_of::<BufRingEntry>())?;
        let buffers = Mapping::new(usize::from(count) * size as usize)?;
        let mut ring_buffers = Self { entries, buffers, count, size, tail: 0 };
        // SAFETY: the entries mapping is page aligned, holds `count` entries
        // and lives as long as the ring (the `Ring` unregisters the group or
        // keeps the mapping alive while the kernel may still use it).
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                ring_buffers.entries.ptr as u64,
                count,
                group,
                0,
            )?;
        }
        for bid in 0..count {
            ring_buffers.push(bid);
        }
        ring_buffers.publish();
        Ok(ring_buffers)
    }

    /// Keeps the memory mapped for good: the kernel may still use it.
    pub(crate) fn leak(&mut self) {
        self.entries.ptr = std::ptr::null_mut();
        self.buffers.ptr = std::ptr::null_mut();
        self.count = 0;
    }

    /// The size of each buffer.
    pub(crate) fn size(&self) -> u32 {
        self.size
    }

    /// The first `len` bytes of buffer `bid`, which a completion has handed
    /// to the caller (`None` for an id or a length the ring never gave).
    pub(crate) fn get_mut(&mut self, bid: u16, len: usize) -> Option<&mut [u8]> {
        if bid >= self.count || len > self.size as usize {
            return None;
        }
        let offset = usize::from(bid) * self.size as usize;
        // SAFETY: `offset + len` is within the buffers mapping (checked
        // above), and buffer `bid` belongs to the caller until it is
        // recycled: the kernel does not write it meanwhile. `&mut self`
        // keeps a second slice from being made at the same time.
        Some(unsafe { std::slice::from_raw_parts_mut(self.buffers.ptr.add(offset), len) })
    }

    /// Gives buffer `bid` back to the kernel.
    pub(crate) fn recycle(&mut self, bid: u16) {
        if bid < self.count {
            self.push(bid);
            self.publish();
        }
    }

    /// Writes buffer `bid`'s entry at the tail (not yet visible to the
    /// kernel).
    fn push(&mut self, bid: u16) {
        let index = usize::from(self.tail & (self.count - 1));
        let addr = self.buffers.ptr as u64 + u64::from(bid) * u64::from(self.size);
        // SAFETY: `index < count`, within the entries mapping; the kernel
        // only reads entries between its head and the published tail, and
        // this one is past the tail until `publish`.
        let entry = unsafe { &mut *self.entries.ptr.cast::<BufRingEntry>().add(index) };
        entry.set_addr(addr);
        entry.set_len(self.size);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes the entries written so far visible to the kernel.
    fn publish(&self) {
        // SAFETY: the tail field lies in the first entry of the mapping,
        // 2-byte aligned; the kernel reads it with acquire ordering.
        let tail = unsafe { AtomicU16::from_ptr(BufRingEntry::tail(self.entries.ptr.cast()).cast_mut()) };
        tail.store(self.tail, Ordering::Release);
    }
}
