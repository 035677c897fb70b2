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
    /// One bit per buffer: lent to the caller (a completion named it, and
    /// it was not recycled yet). Only a lent buffer can be read or given
    /// back, so no buffer is ever in the ring twice.
    lent: Vec<u64>,
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
        let lent = vec![0; usize::from(count).div_ceil(64)];
        let mut ring_buffers = Self { entries, buffers, count, size, tail: 0, lent };
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
        self.lent.clear();
    }

    /// The size of each buffer.
    pub(crate) fn size(&self) -> u32 {
        self.size
    }

    /// Buffer `bid`, which a completion named, is the caller's until it is
    /// recycled.
    pub(crate) fn lend(&mut self, bid: u16) {
        if let Some(word) = self.lent.get_mut(usize::from(bid) / 64) {
            *word |= 1 << (bid % 64);
        }
    }

    fn is_lent(&self, bid: u16) -> bool {
        self.lent.get(usize::from(bid) / 64).is_some_and(|word| word & (1 << (bid % 64)) != 0)
    }

    /// The first `len` bytes of buffer `bid`, if it is lent to the caller
    /// (`None` for any other id, or a length past the buffer).
    pub(crate) fn get_mut(&mut self, bid: u16, len: usize) -> Option<&mut [u8]> {
        if bid >= self.count || len > self.size as usize || !self.is_lent(bid) {
            return None;
        }
        let offset = usize::from(bid) * self.size as usize;
        // SAFETY: `offset + len` is within the buffers mapping (checked
        // above), and buffer `bid` is lent to the caller: the kernel does
        // not write it until it is recycled. `&mut self` keeps a second
        // slice from being made at the same time.
        Some(unsafe { std::slice::from_raw_parts_mut(self.buffers.ptr.add(offset), len) })
    }

    /// Gives lent buffer `bid` back to the kernel (an id not lent is
    /// ignored: it is the kernel's already).
    pub(crate) fn recycle(&mut self, bid: u16) {
        if self.is_lent(bid) {
            if let Some(word) = self.lent.get_mut(usize::from(bid) / 64) {
                *word &= !(1 << (bid % 64));
            }
            self.push(bid);
            self.publish();
        }
    }

    /// Gives back buffer `bid`, which a completion named without its bytes
    /// reaching the caller (the end of the stream, an error).
    pub(crate) fn give_back(&mut self, bid: u16) {
        if bid < self.count && !self.is_lent(bid) {
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
