//! `parallel(#{ name: || …, … })`: run independent steps at the same time (a global function).
//!
//! Each closure runs on its own thread, in the caller's context (its imports, its functions),
//! so a recipe can have AWS work on independent creates at once. Results come back in a map
//! under the same names; the first error (by name order) is the error of the whole call, after
//! every branch has finished — nothing is left running.

use rhai::plugin::*;
use rhai::{Dynamic, EvalAltResult, FnPtr, Map};

use super::usage_err;

pub fn module() -> rhai::Module {
    exported_module!(api)
}

#[export_module]
pub mod api {
    /// Run each closure of `steps` at the same time and return their results under the same
    /// names. Use it for steps that do not need each other's results.
    ///
    /// ```rhai
    /// let r = parallel(#{
    ///     sgs:   || security::stack_groups(net.vpc, allowed_cidr, ssh_cidr),
    ///     base:  || tier::foundation(),
    ///     image: || ec2::latest_al2023_ami(),
    /// });
    /// let vm = ec2::run_instance("app", #{ image: r.image, security_groups: [r.sgs.app] });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn parallel(ctx: NativeCallContext, steps: Map) -> Result<Map, Box<EvalAltResult>> {
        let mut branches: Vec<(String, FnPtr)> = Vec::with_capacity(steps.len());
        for (name, step) in steps {
            let f = step.try_cast::<FnPtr>().ok_or_else(|| {
                usage_err(format!(
                    "parallel: `{name}` must be a closure (|| …), e.g. #{{ {name}: || ec2::default_vpc() }}"
                ))
            })?;
            branches.push((name.to_string(), f));
        }
        if branches.len() <= 1 {
            let mut out = Map::new();
            for (name, f) in branches {
                out.insert(name.into(), f.call_within_context::<Dynamic>(&ctx, ())?);
            }
            return Ok(out);
        }
        #[allow(deprecated)]
        let store = ctx.store_data();
        let engine = ctx.engine();
        type Outcome = (
            String,
            Result<Dynamic, Box<EvalAltResult>>,
            Option<crate::primitives::CallSite>,
        );
        let results: Vec<Outcome> = std::thread::scope(|s| {
            let handles: Vec<_> = branches
                .into_iter()
                .map(|(name, f)| {
                    let store = &store;
                    s.spawn(move || {
                        #[allow(deprecated)]
                        let ctx = store.create_context(engine);
                        let result = f.call_within_context::<Dynamic>(&ctx, ());
                        let site = result
                            .is_err()
                            .then(crate::primitives::thread_call)
                            .flatten();
                        (name, result, site)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        (
                            String::new(),
                            Err(usage_err("parallel: a step panicked")),
                            None,
                        )
                    })
                })
                .collect()
        });
        let mut out = Map::new();
        let mut first_error = None;
        for (name, r, site) in results {
            match r {
                Ok(v) => {
                    out.insert(name.into(), v);
                }
                Err(e) if first_error.is_none() => first_error = Some((e, site)),
                Err(_) => {}
            }
        }
        match first_error {
            Some((e, site)) => {
                // Errors point at the failing step's primitive call.
                if let (Some(site), Ok(rt)) = (site, crate::primitives::rt(&ctx)) {
                    rt.set_last_call(site);
                }
                Err(e)
            }
            None => Ok(out),
        }
    }
}
