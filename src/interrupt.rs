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

/// Listen for Ctrl-C for the rest of the process (once: later calls do nothing), on a thread
/// of its own so that it outlives the runtimes of single runs (`monitor` runs many).
pub fn listen() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let spawned = std::thread::Builder::new()
            .name("geusemaker-ctrl-c".into())
            .spawn(|| {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async {
                    while tokio::signal::ctrl_c().await.is_ok() {
                        if REQUESTED.swap(true, Ordering::SeqCst) {
                            eprintln!("\ninterrupted again: exiting now (the ledger is intact; `geusemaker destroy` finds everything)");
                            std::process::exit(130);
                        }
                        eprintln!("\ninterrupt: stopping at the next step (Ctrl-C again to exit at once)");
                    }
                });
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
        }
    });
}
