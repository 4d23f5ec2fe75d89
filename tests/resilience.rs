//! Resilience under AWS faults (issue 9): a dev deploy through the fault proxy — throttled
//! requests, lost responses — ends with exactly one of everything.

use crate::support;

use std::time::Duration;

use support::proxy::{FaultProxy, Faults};
use support::{stand_ins, Outcome, World};

fn deploy_through(w: &World, stack: &str, proxy: &FaultProxy) -> Outcome {
    let out = w
        .cmd()
        .args([
            "run",
            "dev",
            "--name",
            stack,
            "--set",
            "health_timeout=60",
            "--set",
            "allowed_cidr=192.0.2.1/32",
        ])
        .env("GEUSEMAKER_HEALTH_ENDPOINTS", stand_ins())
        .env("AWS_ENDPOINT_URL", proxy.endpoint())
        .output()
        .unwrap();
    Outcome::from(out)
}

/// Exactly one of each resource the dev tier makes (counted in moto, not in our ledger).
fn assert_exactly_one_of_each(w: &World, stack: &str) {
    let sdk = w.sdk();
    let l = sdk.leftovers(stack);
    assert_eq!(l.instances.len(), 1, "instances: {:?}", l.instances);
    assert_eq!(
        l.file_systems.len(),
        1,
        "file systems: {:?}",
        l.file_systems
    );
    let data = sdk
        .block_on(
            sdk.ec2
                .describe_volumes()
                .filters(support::filter("tag:Name", &format!("{stack}-data")))
                .send(),
        )
        .unwrap();
    assert_eq!(
        data.volumes().len(),
        1,
        "data volumes: {:?}",
        data.volumes()
    );
    assert_eq!(
        l.volumes.len(),
        2,
        "the data volume and the instance's root volume: {:?}",
        l.volumes
    );
    assert_eq!(l.parameters.len(), 5, "secrets: {:?}", l.parameters);
    let groups = sdk.stack_security_groups(stack);
    let mut names: Vec<&str> = groups.iter().filter_map(|g| g.group_name()).collect();
    names.sort();
    assert_eq!(
        names,
        [format!("{stack}-app"), format!("{stack}-efs")],
        "security groups"
    );
}

#[test]
fn a_deploy_rides_through_20_percent_throttling() {
    let w = World::moto();
    let stack = support::stack_name("throttle");
    let proxy = FaultProxy::start_with(
        &support::moto().endpoint,
        vec![],
        Faults {
            throttle: 0.2,
            seed: 7,
            ..Faults::default()
        },
    );
    let out = deploy_through(&w, &stack, &proxy);
    out.success();
    let stats = proxy.stats();
    assert!(
        stats.throttled >= 5,
        "the proxy throttled {} of {} requests",
        stats.throttled,
        stats.requests
    );
    assert_exactly_one_of_each(&w, &stack);
    // The summary says how many requests were retried.
    assert!(out.stdout.contains("retried"), "{}", out.stdout);
}

#[test]
fn lost_responses_do_not_duplicate_anything() {
    let w = World::moto();
    let stack = support::stack_name("lost");
    let proxy = FaultProxy::start_with(
        &support::moto().endpoint,
        vec![],
        Faults {
            lose: 0.1,
            seed: 7,
            latency: Duration::ZERO,
            // Besides the random 10%: the first answer to every create is lost.
            lose_first: vec![
                "RunInstances",
                "CreateVolume",
                "CreateSecurityGroup",
                "AuthorizeSecurityGroupIngress",
                "AttachVolume",
                "POST /2015-02-01/file-systems ",
                "POST /2015-02-01/mount-targets",
                "PutParameter",
                "CreateRole",
                "CreateInstanceProfile",
                "AddRoleToInstanceProfile",
            ],
            ..Faults::default()
        },
    );
    let out = deploy_through(&w, &stack, &proxy);
    out.success();
    let stats = proxy.stats();
    assert!(
        stats.lost >= 10,
        "the proxy lost {} of {} responses",
        stats.lost,
        stats.requests
    );
    assert_exactly_one_of_each(&w, &stack);
}

#[test]
fn the_load_balancer_tier_survives_lost_answers_to_its_creates() {
    let w = World::moto();
    let stack = support::stack_name("lostlb");
    let proxy = FaultProxy::start_with(
        &support::moto().endpoint,
        vec![],
        Faults {
            lose_first: vec![
                "CreateLoadBalancer",
                "CreateTargetGroup",
                "CreateListener",
                "RegisterTargets",
            ],
            ..Faults::default()
        },
    );
    let out = w
        .cmd()
        .args([
            "run",
            "automation",
            "--name",
            &stack,
            "--set",
            "health_timeout=60",
        ])
        .env("GEUSEMAKER_HEALTH_ENDPOINTS", stand_ins())
        .env("AWS_ENDPOINT_URL", proxy.endpoint())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(proxy.stats().lost, 4);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let conf = rt.block_on(
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&support::moto().endpoint)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                "test", "test", None, None, "tests",
            ))
            .load(),
    );
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&conf);
    let lbs = rt.block_on(elb.describe_load_balancers().send()).unwrap();
    let ours: Vec<_> = lbs
        .load_balancers()
        .iter()
        .filter(|l| {
            l.load_balancer_name()
                .is_some_and(|n| n.starts_with(&stack[..10]))
        })
        .collect();
    assert_eq!(ours.len(), 1, "one load balancer: {ours:?}");
    let listeners = rt
        .block_on(
            elb.describe_listeners()
                .load_balancer_arn(ours[0].load_balancer_arn().unwrap())
                .send(),
        )
        .unwrap();
    assert_eq!(listeners.listeners().len(), 1, "one listener on port 80");
    let tgs = rt.block_on(elb.describe_target_groups().send()).unwrap();
    let tgs: Vec<_> = tgs
        .target_groups()
        .iter()
        .filter(|t| {
            t.target_group_name()
                .is_some_and(|n| n.starts_with(&stack[..10]))
        })
        .collect();
    assert_eq!(tgs.len(), 1, "one target group");
}

/// Creates go out without asking first when the ledger knows nothing (issue 9's critical
/// path). With the state file lost, a second deploy still finds what the first made — the
/// creates answer "already exists" and the lookups by tag find the instance and the data
/// volume — and makes no second anything; the secrets keep their values.
#[test]
fn a_redeploy_after_losing_the_state_file_duplicates_nothing() {
    let w = World::moto();
    let stack = support::stack_name("lostst");
    let deploy = || {
        w.cmd()
            .args(["run", "dev", "--name", &stack, "--set", "health_timeout=60"])
            .env("GEUSEMAKER_HEALTH_ENDPOINTS", stand_ins())
            .output()
            .unwrap()
    };
    Outcome::from(deploy()).success();
    let sdk = w.sdk();
    let secret = |name: &str| {
        sdk.block_on(
            sdk.ssm
                .get_parameter()
                .name(format!("/geusemaker/{stack}/{name}"))
                .with_decryption(true)
                .send(),
        )
        .unwrap()
        .parameter()
        .and_then(|p| p.value())
        .map(str::to_string)
    };
    let key_before = secret("n8n/encryption_key");
    assert!(key_before.is_some());
    let instance_before = sdk.stack_instances(&stack)[0]
        .instance_id()
        .map(str::to_string);

    std::fs::remove_file(w.state_path(&stack)).unwrap();
    Outcome::from(deploy())
        .success()
        .stdout_has("already running");
    assert_exactly_one_of_each(&w, &stack);
    assert_eq!(
        secret("n8n/encryption_key"),
        key_before,
        "the secret was kept"
    );
    assert_eq!(
        sdk.stack_instances(&stack)[0]
            .instance_id()
            .map(str::to_string),
        instance_before,
        "the same instance"
    );
    // The new ledger knows everything again, so destroy can find it.
    let state = w.state(&stack);
    let kinds: Vec<&str> = state["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "created")
        .filter_map(|r| r["kind"].as_str())
        .collect();
    for kind in [
        "ec2:security-group",
        "efs:file-system",
        "ssm:parameter",
        "ec2:instance",
        "ec2:volume",
        "iam:instance-profile",
    ] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
}

/// A key pair whose CreateKeyPair answer was lost has no usable private key (it was in the
/// answer): it is deleted and made again, so the key on disk opens the key pair AWS has.
#[test]
fn a_lost_key_pair_answer_makes_the_key_pair_again() {
    let w = World::moto();
    let stack = support::stack_name("lostkey");
    let proxy = FaultProxy::start_with(
        &support::moto().endpoint,
        vec![],
        Faults {
            lose_first: vec!["CreateKeyPair"],
            ..Faults::default()
        },
    );
    let recipe = w.recipe(
        "key.rhai",
        "let k = ec2::key_pair(\"admin\");\nprint(`key ${k.id} ${k.private_key_path}`);\n",
    );
    let out = Outcome::from(
        w.cmd()
            .args(["run", recipe.to_str().unwrap(), "--name", &stack])
            .env("AWS_ENDPOINT_URL", proxy.endpoint())
            .output()
            .unwrap(),
    );
    out.success();
    let line = out
        .stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("key "))
        .unwrap_or_else(|| panic!("{}", out.stdout))
        .to_string();
    let (id, pem) = line.split_once(' ').unwrap();
    let stats = proxy.stats();
    let ops: Vec<&str> = stats
        .log
        .iter()
        .map(|(op, _)| op.as_str())
        .filter(|op| op.contains("KeyPair"))
        .collect();
    assert_eq!(
        ops.iter().filter(|o| **o == "CreateKeyPair").count(),
        2,
        "{ops:?}"
    );
    assert!(ops.contains(&"DeleteKeyPair"), "{ops:?}");
    let sdk = w.sdk();
    let pairs = sdk
        .block_on(
            sdk.ec2
                .describe_key_pairs()
                .key_names(format!("{stack}-admin"))
                .send(),
        )
        .unwrap();
    assert_eq!(pairs.key_pairs().len(), 1);
    assert_eq!(pairs.key_pairs()[0].key_pair_id(), Some(id));
    let key = std::fs::read_to_string(pem).unwrap();
    assert!(key.contains("PRIVATE KEY"), "{key}");
}

/// Real IAM takes seconds to show a new instance profile to EC2, and RunInstances refuses it
/// meanwhile ("Invalid IAM Instance Profile name"). The launch waits and asks again.
#[test]
fn a_launch_waits_for_a_new_instance_profile_to_become_visible() {
    let w = World::moto();
    let stack = support::stack_name("iamprop");
    let proxy = FaultProxy::start_with(
        &support::moto().endpoint,
        vec![support::proxy::Rule::ec2_error(
            &["Action=RunInstances"],
            "InvalidParameterValue",
            &format!(
                "Value ({stack}-app) for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name"
            ),
        )
        .first(2)],
        Faults::default(),
    );
    let out = deploy_through(&w, &stack, &proxy);
    out.success();
    assert_eq!(proxy.hit_count(), 2, "refused twice, then launched");
    assert_exactly_one_of_each(&w, &stack);
}
