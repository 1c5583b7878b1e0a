//! Function identity: how a child finds the function its parent named.
//!
//! Parent and child run the same executable, so a function sits at the same distance
//! from any other function in both, whatever address the loader chose. The parent
//! sends the *offset* of a function from [`anchor`]; the child adds its own anchor's
//! address back. This is only sound in the same build, so the handshake first compares
//! build fingerprints and refuses a different binary.

use std::io::Read;
use std::sync::OnceLock;

/// The fixed point offsets are measured from. Never inlined, so it has an address.
#[inline(never)]
fn anchor() {
    std::hint::black_box(());
}

fn anchor_addr() -> i64 {
    let f: fn() = anchor;
    f as usize as i64
}

/// The offset of the function at `addr` from the anchor.
pub(crate) fn offset_of(addr: usize) -> i64 {
    addr as i64 - anchor_addr()
}

/// Turns an offset received from the parent back into a function pointer of type `F`.
///
/// # Safety
/// `offset` must come from [`offset_of`] of a function of exactly type `F` in a process
/// running the same build (same fingerprint) as this one.
unsafe fn function_at<F: Copy>(offset: i64) -> F {
    assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<usize>(), "function_at needs a fn pointer type");
    let addr = (anchor_addr() + offset) as usize;
    // SAFETY: `F` is a function-pointer type of pointer size (asserted above); by the
    // caller's contract `addr` is the address of a function of that type in this binary.
    unsafe { std::mem::transmute_copy::<usize, F>(&addr) }
}

/// The build fingerprint of this executable: its GNU build-id with its length, or, for a
/// binary linked without a build-id, a hash of its whole content. Computed once.
pub(crate) fn fingerprint() -> u64 {
    static FP: OnceLock<u64> = OnceLock::new();
    *FP.get_or_init(|| fingerprint_of("/proc/self/exe").unwrap_or(0))
}

/// The fingerprint of the executable at `path`.
pub(crate) fn fingerprint_of(path: &str) -> std::io::Result<u64> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let mut head = vec![0u8; 64 * 1024];
    let n = read_up_to(&mut file, &mut head)?;
    head.truncate(n);
    if let Some(id) = build_id(&head) {
        let mut h = Fnv::new();
        h.write(b"build-id");
        h.write(id);
        h.write(&len.to_le_bytes());
        return Ok(h.finish());
    }
    let mut h = Fnv::new();
    h.write(b"content");
    h.write(&head);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = read_up_to(&mut file, &mut buf)?;
        if n == 0 {
            break;
        }
        h.write(&buf[..n]);
    }
    Ok(h.finish())
}

fn read_up_to(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Finds the GNU build-id note of a little-endian ELF64 file from its first bytes.
fn build_id(elf: &[u8]) -> Option<&[u8]> {
    let u16_at = |o: usize| elf.get(o..o.checked_add(2)?).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| elf.get(o..o.checked_add(4)?).map(|b| u32::from_le_bytes(b.try_into().unwrap()));
    let u64_at = |o: usize| elf.get(o..o.checked_add(8)?).map(|b| u64::from_le_bytes(b.try_into().unwrap()));
    if elf.get(..4)? != b"\x7fELF" || elf.get(4)? != &2 || elf.get(5)? != &1 {
        return None;
    }
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let phentsize = u16_at(0x36)? as usize;
    let phnum = u16_at(0x38)? as usize;
    for i in 0..phnum {
        let ph = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if u32_at(ph)? != 4 {
            continue; // not PT_NOTE
        }
        let off = usize::try_from(u64_at(ph.checked_add(8)?)?).ok()?;
        let size = usize::try_from(u64_at(ph.checked_add(0x20)?)?).ok()?;
        let end = off.checked_add(size)?;
        let mut p = off;
        while p.checked_add(12)? <= end {
            let (namesz, descsz, kind) =
                (u32_at(p)? as usize, u32_at(p.checked_add(4)?)? as usize, u32_at(p.checked_add(8)?)?);
            let name = p + 12;
            let desc = name.checked_add(namesz.div_ceil(4) * 4)?;
            if kind == 3 && elf.get(name..name.checked_add(namesz)?)? == b"GNU\0" {
                return elf.get(desc..desc.checked_add(descsz)?);
            }
            p = desc.checked_add(descsz.div_ceil(4) * 4)?;
        }
    }
    None
}

/// FNV-1a, 64 bits: small and good enough to tell builds apart.
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// What a task function may be: a fn item or a non-capturing closure (zero-sized, named
/// by its type), or a plain `fn` pointer `P` (pointer-sized, named by its offset).
///
/// Returns the offset to send (0 for the zero-sized kind).
pub(crate) fn encode_fn<F: Copy + 'static, P: Copy + 'static>(f: F) -> i64 {
    const { assert_task_fn_size::<F>() };
    if std::mem::size_of::<F>() == 0 {
        return 0;
    }
    assert!(
        std::any::TypeId::of::<F>() == std::any::TypeId::of::<P>(),
        "`{}` captures its environment; a multiproc task must be a fn item, a non-capturing \
         closure or a fn pointer (pass data in the argument instead)",
        std::any::type_name::<F>()
    );
    // SAFETY: `F` is `P`, a fn-pointer type (checked above), so its bits are an address.
    offset_of(unsafe { std::mem::transmute_copy::<F, usize>(&f) })
}

/// Proof that offsets come from a process running this very build, so they may be
/// turned back into functions.
///
/// The invariant lives here: a `SameBuild` is made only by comparing a peer's build
/// fingerprint with this program's ([`SameBuild::check`]), or, in a child, by the spawn
/// handshake that did so with its parent ([`SameBuild::parent`]). Peers of one build make
/// offsets only with [`offset_of`] / [`encode_fn`] for the exact type the receiving,
/// monomorphised trampoline expects, which is what makes the resolution below sound. (A
/// peer of the same build that forged offsets could run any function of the program, as
/// an authenticated peer of Python's `pickle` can; that is why remote peers authenticate.)
#[derive(Clone, Copy, Debug)]
pub(crate) struct SameBuild(());

static PARENT_CHECKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl SameBuild {
    /// `Some` when `peer` is this program's fingerprint.
    pub(crate) fn check(peer: u64) -> Option<SameBuild> {
        (peer == fingerprint()).then_some(SameBuild(()))
    }

    /// Records that the handshake matched the parent's fingerprint; returns the proof.
    pub(crate) fn parent_checked(peer: u64) -> Option<SameBuild> {
        let proof = SameBuild::check(peer)?;
        PARENT_CHECKED.store(true, std::sync::atomic::Ordering::SeqCst);
        Some(proof)
    }

    /// The proof for offsets sent by this child's parent.
    ///
    /// # Panics
    /// In a process whose parent's build was not checked (one not started by multiproc):
    /// offsets reach only children, so this is a bug, not an input error.
    // Inlined: a worker asks for it once per item of a task.
    #[inline]
    pub(crate) fn parent() -> SameBuild {
        assert!(
            PARENT_CHECKED.load(std::sync::atomic::Ordering::SeqCst),
            "multiproc: a function offset reached a process whose parent's build was never checked"
        );
        SameBuild(())
    }

    /// The function of type `F` at `offset` (made by [`offset_of`] of an `F`).
    pub(crate) fn function_at<F: Copy>(self, offset: i64) -> F {
        // SAFETY: `self` proves the offset comes from this very build, where it was made
        // from a function of type `F` (see the type's docs).
        unsafe { function_at::<F>(offset) }
    }

    /// The receiving side of [`encode_fn`]: the task function `F` the offset names.
    pub(crate) fn decode_fn<F: Copy + 'static>(self, offset: i64) -> F {
        if std::mem::size_of::<F>() == 0 {
            // SAFETY: `F` is zero-sized: a fn item or a non-capturing closure, which hold
            // no data and have no invalid values, so reading zero bytes yields a valid one.
            unsafe { std::mem::transmute_copy::<(), F>(&()) }
        } else {
            self.function_at::<F>(offset)
        }
    }
}

/// A compile-time check that `F` can name a function across processes.
pub(crate) const fn assert_task_fn_size<F>() {
    assert!(
        std::mem::size_of::<F>() == 0 || std::mem::size_of::<F>() == std::mem::size_of::<usize>(),
        "a multiproc task must be a fn item, a non-capturing closure or a fn pointer"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn triple(x: u64) -> u64 {
        x * 3
    }

    #[test]
    fn an_offset_resolves_to_the_same_function() {
        let f: fn(u64) -> u64 = triple;
        let off = offset_of(f as usize);
        // SAFETY: the offset was taken from a `fn(u64) -> u64` in this very process.
        let g: fn(u64) -> u64 = unsafe { function_at(off) };
        assert_eq!(g(5), 15);
    }

    #[test]
    fn this_test_binary_has_a_stable_fingerprint() {
        let a = fingerprint();
        assert_ne!(a, 0);
        assert_eq!(fingerprint_of("/proc/self/exe").unwrap(), a);
    }

    #[test]
    fn build_id_is_found_or_absent_but_never_panics() {
        let exe = std::fs::read("/proc/self/exe").unwrap();
        let _ = build_id(&exe[..exe.len().min(65536)]);
        assert_eq!(build_id(b"not an elf"), None);
        let mut bad = exe[..4096.min(exe.len())].to_vec();
        bad[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(build_id(&bad), None);
    }
}
