//! `ui::` — what the user sees while a recipe runs.

use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, EvalAltResult};

use super::{rt, usage_err, ChangeAction, OptionKeys};

pub fn types(_engine: &mut Engine) {}

pub fn module() -> rhai::Module {
    exported_module!(api)
}

/// The functions whose options are decoded into a struct (none yet: read key by key).
pub const OPTIONS: &[OptionKeys] = &[];

fn cells(row: Dynamic) -> Result<Vec<String>, Box<EvalAltResult>> {
    let arr = row
        .try_cast::<Array>()
        .ok_or_else(|| usage_err("ui::table: each row is an array of cells"))?;
    Ok(arr.into_iter().map(|c| c.to_string()).collect())
}

#[export_module]
pub mod api {
    /// A stage heading: `==> Title`.
    ///
    /// ```rhai
    /// ui::stage("Network");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn stage(ctx: NativeCallContext, title: &str) -> Result<(), Box<EvalAltResult>> {
        rt(&ctx)?.ui.stage(title);
        Ok(())
    }

    /// An indented information line.
    ///
    /// ```rhai
    /// ui::info(`VPC ${vpc.id}`);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn info(ctx: NativeCallContext, message: &str) -> Result<(), Box<EvalAltResult>> {
        rt(&ctx)?.ui.info(message);
        Ok(())
    }

    /// A success line.
    ///
    /// ```rhai
    /// ui::success("stack ready");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn success(ctx: NativeCallContext, message: &str) -> Result<(), Box<EvalAltResult>> {
        rt(&ctx)?.ui.success(message);
        Ok(())
    }

    /// A warning (on stderr).
    ///
    /// ```rhai
    /// ui::warn("n8n is open to the whole internet");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn warn(ctx: NativeCallContext, message: &str) -> Result<(), Box<EvalAltResult>> {
        rt(&ctx)?.ui.warn(message);
        Ok(())
    }

    /// A table: a header row and rows of cells (any values; printed as text).
    ///
    /// ```rhai
    /// ui::table(["SERVICE", "STATUS"], [["n8n", "healthy"], ["postgres", "healthy"]]);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn table(
        ctx: NativeCallContext,
        headers: Array,
        rows: Array,
    ) -> Result<(), Box<EvalAltResult>> {
        let headers: Vec<String> = headers.into_iter().map(|h| h.to_string()).collect();
        let rows = rows.into_iter().map(cells).collect::<Result<Vec<_>, _>>()?;
        rt(&ctx)?.ui.table(&headers, &rows);
        Ok(())
    }

    /// A dollar amount: four decimals below $1 (hourly prices), two above.
    ///
    /// ```rhai
    /// ui::info(`${ui::usd(0.0416)}/h`);   // $0.0416/h
    /// ```
    pub fn usd(amount: f64) -> String {
        if amount.abs() < 1.0 {
            format!("${amount:.4}")
        } else {
            format!("${amount:.2}")
        }
    }

    /// Ask a yes/no question; `--yes` answers yes. Without a terminal and without `--yes`
    /// this is an error rather than a silent guess.
    ///
    /// ```rhai
    /// if !ui::confirm("Delete the data volume?") { return; }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn confirm(ctx: NativeCallContext, question: &str) -> Result<bool, Box<EvalAltResult>> {
        rt(&ctx)?.ui.confirm(question).map_err(usage_err)
    }

    /// Show a change to something that exists and count it in the run's summary. `action`:
    /// `"in_place"` (`~`), `"restart"` (`~!`, stopped and started) or `"replace"` (`-/+`).
    ///
    /// ```rhai
    /// ui::change("in_place", "services", "n8n: n8nio/n8n:2.41.3 → n8nio/n8n:2.42.0");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn change(
        ctx: NativeCallContext,
        action: &str,
        resource: &str,
        detail: &str,
    ) -> Result<(), Box<EvalAltResult>> {
        let action = ChangeAction::parse(action).ok_or_else(|| {
            usage_err(format!(
                "ui::change: `{action}` is not an action: in_place, restart or replace"
            ))
        })?;
        rt(&ctx)?.record_change(action, resource, detail);
        Ok(())
    }

    /// Ask before changing what runs: on a terminal the user answers (`--yes` answers yes);
    /// without a terminal the change goes ahead and the run says so.
    ///
    /// ```rhai
    /// if !ui::approve("Replace the instance now?") { throw "not replaced: nothing was changed"; }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn approve(ctx: NativeCallContext, question: &str) -> Result<bool, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        if rt.is_diff() {
            // A plan of a live stack ends here: the diff is shown, nothing is changed.
            rt.finish_diff();
            return Err(usage_err("the plan ends before the changes"));
        }
        rt.ui.approve(question).map_err(usage_err)
    }
}
