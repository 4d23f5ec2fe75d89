//! Test support: one moto server for the suite, a temp `$GEUSEMAKER_HOME` per test, the
//! real binary run with the endpoint and fake credentials, and SDK clients for assertions.

pub mod proxy;

mod aws;
mod run;
mod stubs;
mod tmux;
mod world;

// Every helper keeps its `support::` path, whichever file it lives in.
pub use aws::*;
pub use run::*;
pub use stubs::*;
pub use tmux::*;
pub use world::*;
