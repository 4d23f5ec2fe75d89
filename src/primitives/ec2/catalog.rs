//! `ec2::` — what instances are made of: images, key pairs, instance types and the zones that
//! offer them, spot prices.

use std::collections::BTreeMap;

use rhai::plugin::*;
use rhai::{Array, Dynamic, EvalAltResult};

use super::super::{id_of, rt, usage_err};
use crate::state::Kind;

#[export_module]
pub mod api {
    use super::*;
    use crate::cloud::ec2::{Image, KeyPair, SpotPrice};
    use crate::primitives::{cloud_err, state_err};

    /// The latest Amazon Linux 2023 AMI for x86_64, from the public SSM parameter (falling
    /// back to DescribeImages).
    ///
    /// ```rhai
    /// let ami = ec2::latest_al2023_ami();
    /// ```
    #[rhai_fn(name = "latest_al2023_ami", return_raw)]
    pub fn latest_al2023_ami(ctx: NativeCallContext) -> Result<Image, Box<EvalAltResult>> {
        latest_al2023_ami_arch(ctx, "x86_64")
    }

    /// The latest Amazon Linux 2023 AMI for `arch`: `"x86_64"` or `"arm64"`.
    ///
    /// ```rhai
    /// let ami = ec2::latest_al2023_ami("arm64");
    /// ```
    #[rhai_fn(name = "latest_al2023_ami", return_raw)]
    pub fn latest_al2023_ami_arch(
        ctx: NativeCallContext,
        arch: &str,
    ) -> Result<Image, Box<EvalAltResult>> {
        if !["x86_64", "arm64"].contains(&arch) {
            return Err(usage_err(format!(
                "ec2::latest_al2023_ami: arch must be \"x86_64\" or \"arm64\", not \"{arch}\""
            )));
        }
        rt(&ctx)?.aws()?.ec2.latest_al2023(arch).map_err(cloud_err)
    }

    /// Create (or find) the key pair `<stack>-<name>` (ed25519). A newly created private key
    /// is saved under `$GEUSEMAKER_HOME/keys/` with mode 0600; `key.private_key_path` says where.
    ///
    /// ```rhai
    /// let key = ec2::key_pair("admin");
    /// ui::info(`ssh key: ${key.private_key_path}`);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn key_pair(ctx: NativeCallContext, name: &str) -> Result<KeyPair, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let aws = rt.aws()?;
        let key_name = rt.resource_name(name);
        let path = rt.home.keys_dir().join(format!("{key_name}.pem"));
        let path_str = path.to_string_lossy().to_string();
        if let Some(mut k) = aws.ec2.find_key_pair(&key_name).map_err(cloud_err)? {
            rt.adopt(Kind::KeyPair, name, &k.name, BTreeMap::new())?;
            k.private_key_path = path.exists().then_some(path_str);
            return Ok(k);
        }
        let (mut key, material) = rt.create_recorded(
            Kind::KeyPair,
            name,
            |_token| aws.ec2.create_key_pair(&key_name, &rt.tags(name)),
            |(k, _): &(KeyPair, String)| {
                (
                    k.name.clone(),
                    BTreeMap::from([("key_pair_id".to_string(), k.id.clone())]),
                )
            },
        )?;
        rt.home.ensure().map_err(state_err)?;
        crate::state::write_atomic(&path, material.as_bytes()).map_err(state_err)?;
        key.private_key_path = Some(path_str);
        Ok(key)
    }

    /// Import a public key as the key pair `<stack>-<name>` (or find it on a re-run).
    ///
    /// ```rhai
    /// let key = ec2::import_key_pair("admin", "ssh-ed25519 AAAA… me@laptop");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn import_key_pair(
        ctx: NativeCallContext,
        name: &str,
        public_key: &str,
    ) -> Result<KeyPair, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let aws = rt.aws()?;
        let key_name = rt.resource_name(name);
        if let Some(k) = aws.ec2.find_key_pair(&key_name).map_err(cloud_err)? {
            rt.adopt(Kind::KeyPair, name, &k.name, BTreeMap::new())?;
            return Ok(k);
        }
        rt.create_recorded(
            Kind::KeyPair,
            name,
            |_token| {
                aws.ec2
                    .import_key_pair(&key_name, public_key, &rt.tags(name))
            },
            |k: &KeyPair| (k.name.clone(), BTreeMap::new()),
        )
    }

    /// Delete a key pair (a handle or its name) and its saved private key; `false` when it was
    /// already gone.
    ///
    /// ```rhai
    /// ec2::delete_key_pair(key);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn delete_key_pair(
        ctx: NativeCallContext,
        key: Dynamic,
    ) -> Result<bool, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let name = id_of(&key, "a key pair")?;
        let result = rt.aws()?.ec2.delete_key_pair(&name);
        let _ = std::fs::remove_file(rt.home.keys_dir().join(format!("{name}.pem")));
        rt.settle_delete(Kind::KeyPair, &name, result)
    }

    /// What an instance type offers in this region (vCPUs, memory, GPUs); an error naming the
    /// type when the region does not know it.
    ///
    /// ```rhai
    /// let info = ec2::instance_type_info("g4dn.xlarge");
    /// if info.gpus == 0 { throw "not a GPU type"; }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn instance_type_info(
        ctx: NativeCallContext,
        instance_type: &str,
    ) -> Result<crate::cloud::ec2::InstanceTypeInfo, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let region = rt.region()?;
        rt.aws()?
            .ec2
            .instance_type_info(instance_type)
            .map_err(cloud_err)?
            .ok_or_else(|| {
                crate::primitives::usage_err_hint(
                    format!("instance type {instance_type} does not exist in {region}"),
                    "check the spelling (e.g. g4dn.xlarge) and that the region offers it",
                )
            })
    }

    /// The Availability Zones of the region that offer an instance type, sorted.
    ///
    /// ```rhai
    /// let zones = ec2::zones_offering("g4dn.xlarge");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn zones_offering(
        ctx: NativeCallContext,
        instance_type: &str,
    ) -> Result<Array, Box<EvalAltResult>> {
        let zones = rt(&ctx)?
            .aws()?
            .ec2
            .zones_offering(instance_type)
            .map_err(cloud_err)?;
        Ok(zones.into_iter().map(Dynamic::from).collect())
    }

    /// The latest Deep Learning Base AMI (NVIDIA driver and container toolkit, Amazon Linux
    /// 2023) from its public SSM parameter, falling back to DescribeImages by name.
    ///
    /// ```rhai
    /// let ami = ec2::latest_gpu_ami();
    /// ```
    #[rhai_fn(return_raw)]
    pub fn latest_gpu_ami(ctx: NativeCallContext) -> Result<Image, Box<EvalAltResult>> {
        rt(&ctx)?.aws()?.ec2.latest_gpu_ami().map_err(cloud_err)
    }

    /// Current spot prices for an instance type, one per Availability Zone, cheapest first.
    ///
    /// ```rhai
    /// let cheapest = ec2::spot_prices("t3.medium")[0];
    /// ui::info(`${cheapest.az}: $${cheapest.usd_per_hour}/h`);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn spot_prices(
        ctx: NativeCallContext,
        instance_type: &str,
    ) -> Result<Array, Box<EvalAltResult>> {
        let list: Vec<SpotPrice> = rt(&ctx)?
            .aws()?
            .ec2
            .spot_price_history(instance_type)
            .map_err(cloud_err)?;
        Ok(list.into_iter().map(Dynamic::from).collect())
    }
}
