//! `iam::` — the instance role and profile.

use std::collections::BTreeMap;

use rhai::plugin::*;
use rhai::{Dynamic, Engine, EvalAltResult};

use super::opts::{decode, keys};
use super::{id_of, rt, ChangeAction, OptionKeys};
use crate::state::Kind;

pub fn types(engine: &mut Engine) {
    engine.build_type::<crate::cloud::iam::InstanceProfile>();
}

pub fn module() -> rhai::Module {
    exported_module!(api)
}

/// The functions whose options are decoded into a struct (listed in the reference).
pub const OPTIONS: &[OptionKeys] = &[OptionKeys {
    function: "instance_profile",
    keys: keys::<ProfileOptions>,
}];

/// The options of `iam::instance_profile`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileOptions {
    /// The role may snapshot the stack's data volume and delete its snapshots.
    #[serde(default)]
    data_snapshots: bool,
}

#[export_module]
pub mod api {
    use crate::cloud::iam::{instance_policy, ssm_core_policy_arn, InstanceProfile, Scope};
    use crate::primitives::cloud_err;

    /// Create (or find) the role and instance profile `<stack>-<name>` for the stack's
    /// instances: Session Manager / Run Command (AmazonSSMManagedInstanceCore) and read access
    /// to the stack's own SSM parameters (`/geusemaker/<stack>/*`); an explicit Deny takes
    /// away the managed policy's read of every other parameter.
    ///
    /// ```rhai
    /// let profile = iam::instance_profile("app");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn instance_profile(
        ctx: NativeCallContext,
        name: &str,
    ) -> Result<InstanceProfile, Box<EvalAltResult>> {
        instance_profile_opts(ctx, name, rhai::Map::new())
    }

    /// `instance_profile` with options: `data_snapshots` (false) also lets the instance
    /// snapshot the stack's data volume (`ec2::volume("data")`) and nothing else, and delete
    /// the stack's snapshots only (for `userdata::data_snapshots`). A re-run applies the
    /// policy the options describe.
    ///
    /// ```rhai
    /// let profile = iam::instance_profile("app", #{ data_snapshots: true });
    /// ```
    #[rhai_fn(name = "instance_profile", return_raw)]
    pub fn instance_profile_opts(
        ctx: NativeCallContext,
        name: &str,
        options: rhai::Map,
    ) -> Result<InstanceProfile, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let o: ProfileOptions = decode("iam::instance_profile", options)?;
        let snapshots = o.data_snapshots;
        let aws = rt.aws()?;
        let full = rt.resource_name(name);
        let data_volume = rt.resource_name("data");
        let region = rt.region()?;
        let scope = Scope {
            partition: aws.identity.partition(),
            region: &region,
            account: &aws.identity.account,
        };
        let policy = instance_policy(&rt.stack, &scope, snapshots.then_some(data_volume.as_str()));
        let managed = [ssm_core_policy_arn(scope.partition)];
        let tags = rt.tags(name);
        // The ledger says whether this stack made it: then look at it and bring it up to date;
        // otherwise create it straight away (one round of calls less; a profile that exists
        // after all — state lost, or a lost answer — answers "already exists" and is adopted).
        if rt.ledger_id(Kind::InstanceProfile, name)?.is_some() {
            // Re-apply the policies: a customised recipe may have changed them.
            let (p, changed) = aws
                .iam
                .ensure_instance_profile(
                    &full,
                    &managed,
                    ("geusemaker-stack-parameters", &policy),
                    &tags,
                    true,
                )
                .map_err(cloud_err)?;
            rt.adopt(Kind::InstanceProfile, name, &p.name, BTreeMap::new())?;
            if changed {
                rt.record_change(
                    ChangeAction::InPlace,
                    &format!("role {full}"),
                    "its policies made the recipe's",
                );
            }
            return Ok(p);
        }
        rt.create_recorded(
            Kind::InstanceProfile,
            name,
            |_t| {
                aws.iam
                    .ensure_instance_profile(
                        &full,
                        &managed,
                        ("geusemaker-stack-parameters", &policy),
                        &tags,
                        false,
                    )
                    .map(|(p, _)| p)
            },
            |p: &InstanceProfile| {
                (
                    p.name.clone(),
                    BTreeMap::from([("role".to_string(), p.role_name.clone())]),
                )
            },
        )
    }

    /// Delete an instance profile and its role (by handle or name); `false` when neither existed.
    ///
    /// ```rhai
    /// iam::delete_instance_profile(profile);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn delete_instance_profile(
        ctx: NativeCallContext,
        profile: Dynamic,
    ) -> Result<bool, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let name = match profile.clone().try_cast::<InstanceProfile>() {
            Some(p) => p.name,
            None => id_of(&profile, "an instance profile")?,
        };
        let iam = &rt.aws()?.iam;
        let existed = iam
            .find_instance_profile(&name)
            .map_err(cloud_err)?
            .is_some()
            || iam.role_exists(&name).map_err(cloud_err)?;
        iam.delete_instance_profile(&name).map_err(cloud_err)?;
        rt.mark_deleted(Kind::InstanceProfile, &name)?;
        Ok(existed)
    }
}
