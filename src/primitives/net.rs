//! `net::` — this machine as the internet sees it: the default of who may connect.

use rhai::plugin::*;

use super::OptionKeys;
use rhai::{Engine, EvalAltResult};

pub fn types(_engine: &mut Engine) {}

pub fn module() -> rhai::Module {
    exported_module!(api)
}

/// The functions whose options are decoded into a struct (none yet: read key by key).
pub const OPTIONS: &[OptionKeys] = &[];

#[export_module]
pub mod api {
    use crate::primitives::{rt, usage_err_hint};
    use crate::public_ip;

    /// This machine's public IPv4 address as a one-address range (`203.0.113.7/32`), asked of
    /// AWS's checkip service (`GEUSEMAKER_CHECKIP_URL` points elsewhere, e.g. behind a proxy).
    /// The default of who may reach a stack: the person deploying it, not the internet. An
    /// error (before anything is created) when it cannot be found.
    ///
    /// ```rhai
    /// let clients = net::my_cidr();
    /// ui::info(`n8n will answer ${clients} only`);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn my_cidr(ctx: NativeCallContext) -> Result<String, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        match rt.blocking.block_on(public_ip::detect_cached()) {
            Ok(ip) => Ok(format!("{ip}/32")),
            Err(e) => Err(usage_err_hint(
                e.to_string(),
                "say who may connect: --set allowed_cidr=YOUR.PUBLIC.ADDRESS/32 (0.0.0.0/0 opens the stack to everyone)",
            )),
        }
    }

    /// `range` when it is an IPv4 range with no host bits set (`203.0.113.0/24`, not
    /// `203.0.113.7/24`, which EC2 would store as the former); an error otherwise. For checking
    /// a param before anything is created.
    ///
    /// ```rhai
    /// let office = net::check_cidr("203.0.113.0/24");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn check_cidr(range: &str) -> Result<String, Box<EvalAltResult>> {
        crate::cidr::parse(range)
            .map(|_| range.to_string())
            .map_err(|e| crate::primitives::usage_err(format!("net::check_cidr: {e}")))
    }
}
