//! Stack state shared by a team in S3 (moto's, strict flags): two "machines" (two
//! `GEUSEMAKER_HOME`s) operating the same stacks through one bucket.

use crate::support;

use support::{Outcome, Sdk, World};

mod locks;
mod shared_state;

/// A bucket of its own for one test.
fn bucket(sdk: &Sdk, name: &str) -> String {
    let bucket = format!("{}-{:08x}", name, rand_u32());
    sdk.block_on(sdk.s3.create_bucket().bucket(&bucket).send())
        .expect("create the test bucket");
    bucket
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish() as u32
}

/// A machine of the team: its own home, the team's state backend in its config.toml. Tests
/// that wait for a lease use 10 s: short, yet longer than a renewal takes on a busy moto.
fn machine(url: &str, lease: &str) -> World {
    let w = World::moto();
    std::fs::write(
        w.home.path().join("config.toml"),
        format!("[state]\nurl = \"{url}\"\nlease = \"{lease}\"\n"),
    )
    .unwrap();
    w
}

/// Every object in `bucket`: key → (body, server-side encryption).
fn objects(sdk: &Sdk, bucket: &str) -> Vec<(String, String, Option<String>)> {
    let list = sdk
        .block_on(sdk.s3.list_objects_v2().bucket(bucket).send())
        .unwrap();
    list.contents()
        .iter()
        .map(|o| {
            let key = o.key().unwrap().to_string();
            let got = sdk
                .block_on(sdk.s3.get_object().bucket(bucket).key(&key).send())
                .unwrap();
            let sse = got.server_side_encryption().map(|s| s.as_str().to_string());
            let body = sdk.block_on(got.body.collect()).unwrap().to_vec();
            (key, String::from_utf8(body).unwrap(), sse)
        })
        .collect()
}

fn object(sdk: &Sdk, bucket: &str, key: &str) -> Option<String> {
    objects(sdk, bucket)
        .into_iter()
        .find(|(k, _, _)| k == key)
        .map(|(_, body, _)| body)
}

fn quick_recipe(w: &World) -> String {
    w.recipe(
        "quick.rhai",
        "let sg = ec2::security_group(\"web\", ec2::default_vpc(), #{});\nstate::output(\"group\", sg.id);\n",
    )
    .to_string_lossy()
    .into_owned()
}
