//! `pricing::` — on-demand prices and monthly estimates.

use rhai::plugin::*;

use super::OptionKeys;
use rhai::{Engine, EvalAltResult};

use super::rt;

pub fn types(engine: &mut Engine) {
    engine.build_type::<crate::cloud::pricing::Price>();
}

pub fn module() -> rhai::Module {
    exported_module!(api)
}

/// The functions whose options are decoded into a struct (none yet: read key by key).
pub const OPTIONS: &[OptionKeys] = &[];

#[export_module]
pub mod api {
    use crate::cloud::pricing::{on_demand_price, Price, HOURS_PER_MONTH};
    use crate::primitives::cloud_err;

    /// The on-demand Linux hourly price of `instance_type` in the run's region: from the
    /// Price List API, cached for 15 minutes, or (said in `price.source`/`price.note`) from a
    /// bundled table when the API cannot be reached.
    ///
    /// ```rhai
    /// let p = pricing::on_demand("t3.medium");
    /// ui::info(`$${p.usd_per_hour}/h (${p.source})`);
    /// ```
    #[rhai_fn(name = "on_demand", return_raw)]
    pub fn on_demand(
        ctx: NativeCallContext,
        instance_type: &str,
    ) -> Result<Price, Box<EvalAltResult>> {
        let region = rt(&ctx)?.region()?;
        on_demand_in(ctx, instance_type, &region)
    }

    /// The on-demand hourly price in another region.
    ///
    /// ```rhai
    /// let p = pricing::on_demand("g4dn.xlarge", "eu-west-1");
    /// ```
    #[rhai_fn(name = "on_demand", return_raw)]
    pub fn on_demand_in(
        ctx: NativeCallContext,
        instance_type: &str,
        region: &str,
    ) -> Result<Price, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let aws = rt.aws()?;
        let price = on_demand_price(
            aws.pricing.as_ref(),
            &rt.home.cache_dir(),
            region,
            instance_type,
        )
        .map_err(cloud_err)?;
        if price.source == "fallback" {
            rt.ui
                .warn(&format!("price of {instance_type}: {}", price.note));
        }
        Ok(price)
    }

    /// An hourly rate as a monthly cost (730 hours).
    ///
    /// ```rhai
    /// let monthly = pricing::monthly(0.0416);   // 30.368
    /// ```
    pub fn monthly(usd_per_hour: f64) -> f64 {
        usd_per_hour * HOURS_PER_MONTH
    }
}
