//! Crash points for the crash-safety tests: with `PROCTOR_CRASH_AT=<name>` in its
//! environment the process kills itself with SIGKILL when it reaches that step, exactly as
//! a power cut or the OOM killer would, so that a test can show the restart finishes the
//! work. Named steps: `after-pv-recorded`, `after-key-delete`, `during-blob-deletion`.

pub fn crash_point(name: &str) {
    if std::env::var("PROCTOR_CRASH_AT").is_ok_and(|v| v == name) {
        tracing::warn!(step = name, "crash point reached: SIGKILL");
        // SAFETY: kill(2) on our own pid has no memory-safety requirement.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}
