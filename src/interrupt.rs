//! Ctrl-C: the first one asks the run to stop at the next primitive (or wait poll), so the
//! ledger and lock are left in order; a second one exits at once.

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Has Ctrl-C been pressed (since the last [`reset`])?
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

pub fn reset() {
    REQUESTED.store(false, Ordering::SeqCst);
}

/// Listen for Ctrl-C on `rt` for as long as that runtime lives.
pub fn listen(rt: &tokio::runtime::Handle) {
    rt.spawn(async {
        while tokio::signal::ctrl_c().await.is_ok() {
            if REQUESTED.swap(true, Ordering::SeqCst) {
                eprintln!("\ninterrupted again: exiting now (the ledger is intact; `geusemaker destroy` finds everything)");
                std::process::exit(130);
            }
            eprintln!("\ninterrupt: stopping at the next step (Ctrl-C again to exit at once)");
        }
    });
}
