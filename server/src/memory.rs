//! Process-wide allocator setting, so that the server's memory follows its load back down.
//!
//! glibc serves large blocks (an Argon2 check's 19 MiB, an 8 MiB chunk body) with `mmap`
//! and unmaps them on free, but it raises its mmap threshold to the size of each such
//! block freed, after which blocks that size come from the heap and stay there. Measured
//! here before this setting: every failed login added 19 MiB of resident memory (189 MiB
//! after 20; 680 MiB peak in the attack suite's `wrong_logins_1000`). A fixed threshold
//! turns the dynamic adjustment off: 33 MiB peak, back to 14 MiB after.

/// Fixes glibc's mmap threshold at its default (128 KiB). No-op elsewhere.
pub fn return_large_blocks_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}
