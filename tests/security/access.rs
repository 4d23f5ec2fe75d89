//! Who may connect: the deployer's address (found, or nothing created), ranges with host bits
//! refused, the load balancer tier (the deployer only, HTTPS with its own domain), CloudFront's
//! viewer filter.

use super::*;

/// The stack's instance's boot script, and the environment its compose file gives n8n.
fn n8n_env(sdk: &support::Sdk, stack: &str) -> (String, serde_yaml::Value) {
    let script = sdk.user_data(sdk.stack_instances(stack)[0].instance_id().unwrap());
    let compose: serde_yaml::Value =
        serde_yaml::from_str(heredoc(&script, "/opt/geusemaker/compose.yaml")).unwrap();
    let env = compose["services"]["n8n"]["environment"].clone();
    (script, env)
}

#[test]
fn when_the_deployers_address_cannot_be_found_nothing_is_created() {
    let w = World::moto();
    let stack = support::stack_name("noip");
    let out = Outcome::from(
        w.cmd()
            .args(["run", "dev", "--name", &stack])
            .env("GEUSEMAKER_CHECKIP_URL", "http://127.0.0.1:9/")
            .output()
            .unwrap(),
    );
    out.failure(1)
        .stderr_has("this machine's public address")
        .stderr_has("--set allowed_cidr=");
    assert!(w.sdk().leftovers(&stack).is_empty());
    if w.state_path(&stack).exists() {
        let state = w.state(&stack);
        assert!(state["resources"].as_array().is_none_or(|r| r.is_empty()));
    }
    // A service that answers something else is no address either.
    let captive = support::http_stub(200, "<html>sign in to the hotel wifi</html>");
    let out = Outcome::from(
        w.cmd()
            .args(["run", "automation", "--name", &stack])
            .env(
                "GEUSEMAKER_CHECKIP_URL",
                format!("http://127.0.0.1:{captive}/"),
            )
            .output()
            .unwrap(),
    );
    out.failure(1).stderr_has("not an IPv4 address");
    assert!(w.sdk().leftovers(&stack).is_empty());
}

#[test]
fn a_range_with_host_bits_is_refused_before_anything_is_created() {
    // EC2 would store 203.0.113.7/24 as 203.0.113.0/24, and 1.2.3.4/0 is the whole internet.
    let w = World::moto();
    let stack = support::stack_name("hostbits");
    for range in ["203.0.113.7/24", "1.2.3.4/0"] {
        for param in ["allowed_cidr", "ssh_cidr"] {
            let out = Outcome::from(
                w.cmd()
                    .args([
                        "run",
                        "dev",
                        "--name",
                        &stack,
                        "--set",
                        &format!("{param}={range}"),
                    ])
                    .output()
                    .unwrap(),
            );
            // Refused where it is given (the header's `cidr` type): exit 2, nothing created.
            out.failure(2).stderr_has("has host bits set");
            assert!(w.sdk().leftovers(&stack).is_empty(), "{param}={range}");
        }
    }
}

#[test]
fn the_load_balancer_tier_admits_the_deployer_only_by_default() {
    let w = World::moto();
    let stack = support::stack_name("secalb");
    let (n8n, logins) = n8n_stub(200);
    run(
        &w,
        &[
            "run",
            "automation",
            "--name",
            &stack,
            "--set",
            "health_timeout=30",
        ],
        &stand_ins_with_n8n(n8n),
    )
    .success();
    assert_eq!(
        open_ranges(&w, &stack),
        [format!("{stack}-alb 80:80 from {DEPLOYER_IP}/32")],
        "the load balancer from the deployer; the instance from the load balancer only"
    );
    // n8n knows the URL its users reach (the load balancer's name) before it boots.
    let state = w.state(&stack);
    let dns = state["outputs"]["load_balancer_dns"].as_str().unwrap();
    let sdk = w.sdk();
    let (script, env) = n8n_env(&sdk, &stack);
    let env = &env;
    assert_eq!(
        env["WEBHOOK_URL"].as_str(),
        Some(format!("http://{dns}/").as_str())
    );
    assert_eq!(
        env["N8N_EDITOR_BASE_URL"].as_str(),
        Some(format!("http://{dns}/").as_str())
    );
    assert_eq!(
        env["N8N_SECURE_COOKIE"].as_str(),
        Some("false"),
        "plain HTTP"
    );
    assert_eq!(env["N8N_BLOCK_ENV_ACCESS_IN_NODE"].as_str(), Some("true"));
    assert!(
        !script.contains("WEBHOOK_URL=http://$public_ip"),
        "not from the instance"
    );
    assert!(
        !logins.lock().unwrap().is_empty(),
        "logged in through the load balancer"
    );

    // Someone changed the listener to answer on its own: the re-run makes it forward to n8n's
    // target group again.
    use aws_sdk_elasticloadbalancingv2::types::{
        Action, ActionTypeEnum, FixedResponseActionConfig,
    };
    let lb = state["outputs"]["load_balancer_arn"].as_str().unwrap();
    let tg = state["outputs"]["target_group_arn"].as_str().unwrap();
    let default_of = || {
        let l = sdk
            .block_on(sdk.elb.describe_listeners().load_balancer_arn(lb).send())
            .unwrap();
        let a = l.listeners()[0].default_actions()[0].clone();
        (
            l.listeners()[0].listener_arn().unwrap().to_string(),
            a.r#type().unwrap().as_str().to_string(),
            a.target_group_arn().map(str::to_string),
        )
    };
    let (listener, kind, target) = default_of();
    assert_eq!((kind.as_str(), target.as_deref()), ("forward", Some(tg)));
    sdk.block_on(
        sdk.elb
            .modify_listener()
            .listener_arn(&listener)
            .default_actions(
                Action::builder()
                    .r#type(ActionTypeEnum::FixedResponse)
                    .fixed_response_config(
                        FixedResponseActionConfig::builder()
                            .status_code("200")
                            .message_body("hijacked")
                            .build(),
                    )
                    .build(),
            )
            .send(),
    )
    .unwrap();
    assert_eq!(default_of().1, "fixed-response");
    run(
        &w,
        &[
            "run",
            "automation",
            "--name",
            &stack,
            "--set",
            "health_timeout=30",
        ],
        &stand_ins_with_n8n(n8n),
    )
    .success();
    let (_, kind, target) = default_of();
    assert_eq!((kind.as_str(), target.as_deref()), ("forward", Some(tg)));
    run(&w, &["destroy", &stack, "--yes"], &stand_ins_with_n8n(n8n)).success();
}

#[test]
fn with_its_own_domain_the_load_balancer_tier_tells_n8n_its_https_url() {
    let w = World::moto();
    let stack = support::stack_name("secdom");
    let cert = support::acm_certificate(&support::moto().endpoint, "n8n.example.com");
    let (n8n, _) = n8n_stub(200);
    let ends = stand_ins_with_n8n(n8n);
    run(
        &w,
        &[
            "run",
            "automation",
            "--name",
            &stack,
            "--set",
            "health_timeout=30",
            "--set",
            &format!("certificate_arn={cert}"),
            "--set",
            "domain=n8n.example.com",
        ],
        &ends,
    )
    .success()
    .stderr_has("point n8n.example.com at");
    let state = w.state(&stack);
    assert_eq!(state["outputs"]["n8n_url"], "https://n8n.example.com");
    let sdk = w.sdk();
    let (_, env) = n8n_env(&sdk, &stack);
    let env = &env;
    assert_eq!(
        env["WEBHOOK_URL"].as_str(),
        Some("https://n8n.example.com/")
    );
    assert_eq!(
        env["N8N_SECURE_COOKIE"].as_str(),
        Some("true"),
        "HTTPS: secure cookies"
    );
    run(&w, &["destroy", &stack, "--yes"], &ends).success();
}

#[test]
fn the_cloudfront_viewer_filter_admits_its_ranges_only() {
    // The generated CloudFront Function, run by Node.js (the same ECMAScript CloudFront's
    // cloudfront-js-2.0 runtime takes) against viewers inside and outside the ranges.
    let code = geusemaker::cloud::cloudfront::viewer_filter_code(&[
        ("203.0.113.9".parse().unwrap(), 32),
        ("198.51.100.0".parse().unwrap(), 24),
        ("10.0.0.0".parse().unwrap(), 8),
    ]);
    let harness = format!(
        "{code}\nvar ips = process.argv.slice(2);\nips.forEach(function (ip) {{\n  var r = handler({{ viewer: {{ ip: ip }}, request: {{ uri: '/' }} }});\n  console.log(ip + ' ' + (r.statusCode === 403 ? 'denied' : 'allowed'));\n}});\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("viewer-filter.js");
    std::fs::write(&file, harness).unwrap();
    let cases = [
        ("203.0.113.9", "allowed"),
        ("203.0.113.10", "denied"),
        ("198.51.100.0", "allowed"),
        ("198.51.100.255", "allowed"),
        ("198.51.101.1", "denied"),
        ("10.255.0.1", "allowed"),
        ("11.0.0.1", "denied"),
        ("2001:db8::1", "denied"),
        ("203.0.113.9.1", "denied"),
        ("not-an-ip", "denied"),
    ];
    let out = std::process::Command::new("node")
        .arg(&file)
        .args(cases.iter().map(|(ip, _)| *ip))
        .output()
        .expect("node runs (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    for (ip, verdict) in cases {
        assert!(
            stdout.lines().any(|l| l == format!("{ip} {verdict}")),
            "{ip} should be {verdict}:\n{stdout}"
        );
    }
}
