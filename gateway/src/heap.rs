//! Settings of the process heap for the binaries that run the gateway
//! (`gateway`, `alarm-load`), whose global allocator is mimalloc.

/// Turns transparent huge pages off for this process.
///
/// mimalloc advises huge pages on its arenas (`MADV_HUGEPAGE`). It gives
/// freed pages back to the kernel after a short delay, and the next touch
/// of such a page then faults in, and zeroes, a whole 2 MiB page: on a
/// normal day through Mosquitto that zeroing (`clear_page_erms` under
/// `do_huge_pmd_anonymous_page`) was 12 % of the pipeline thread's time and
/// the gateway's peak RSS 97 MB; without huge pages 59 MB, and the gateway
/// went from 0.86× to 0.97× of Mosquitto alone (ARCHITECTURE.md,
/// "Alarm-path benchmark"). On other systems this does nothing.
pub fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no
        // memory of ours; it only sets a flag on this process's address
        // space, consulted at later page faults.
        let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        if rc != 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "cannot turn transparent huge pages off"
            );
        }
    }
}
