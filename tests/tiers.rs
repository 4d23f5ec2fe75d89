//! The automation and GPU tiers end to end through the binary against moto: load balancer,
//! target group, listeners, CloudFront, GPU instance and AMI; destroy to zero non-data
//! resources; bad input.

use crate::support;

use support::proxy::{FaultProxy, Rule};
use support::{stand_ins, Outcome, World};

fn run(w: &World, args: &[&str]) -> Outcome {
    let out = w
        .cmd()
        .args(args)
        .env("GEUSEMAKER_HEALTH_ENDPOINTS", stand_ins())
        .output()
        .unwrap();
    Outcome::from(out)
}

fn elb(
    w: &World,
) -> (
    tokio::runtime::Runtime,
    aws_sdk_elasticloadbalancingv2::Client,
    aws_sdk_cloudfront::Client,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let conf = rt.block_on(
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(w.endpoint.as_deref().unwrap())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                "test", "test", None, None, "tests",
            ))
            .load(),
    );
    (
        rt,
        aws_sdk_elasticloadbalancingv2::Client::new(&conf),
        aws_sdk_cloudfront::Client::new(&conf),
    )
}

fn app_sg_rules_on_5678(w: &World, stack: &str) -> (Vec<String>, Vec<String>) {
    let sdk = w.sdk();
    let groups = sdk.stack_security_groups(stack);
    let app = groups
        .iter()
        .find(|g| g.group_name() == Some(format!("{stack}-app").as_str()))
        .unwrap();
    let p = app
        .ip_permissions()
        .iter()
        .find(|p| p.from_port() == Some(5678))
        .unwrap();
    (
        p.ip_ranges()
            .iter()
            .filter_map(|r| r.cidr_ip().map(str::to_string))
            .collect(),
        p.user_id_group_pairs()
            .iter()
            .filter_map(|g| g.group_id().map(str::to_string))
            .collect(),
    )
}

#[test]
fn automation_puts_n8n_behind_a_load_balancer_and_destroys_cleanly() {
    let w = World::moto();
    let stack = support::stack_name("auto");
    let out = automation(&w, &stack, &[]);
    out.success()
        .stdout_has("healthy behind the load balancer")
        .stdout_has("includes load balancer");
    let state = w.state(&stack);
    let dns = state["outputs"]["load_balancer_dns"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(state["outputs"]["n8n_url"], format!("http://{dns}"));

    let (rt, elbv2, _) = elb(&w);
    let lb = assert_load_balancer_internet_facing_and_tagged(&rt, &elbv2, &stack, &dns);
    let tg = assert_target_group_serves_the_instance(&rt, &elbv2, &stack, &lb, &state);
    let sdk = w.sdk();
    assert_instance_admits_the_load_balancer_only(&w, &sdk, &stack, &lb);

    // Re-run: no second load balancer or target group.
    automation(&w, &stack, &[])
        .success()
        .stdout_has("nothing changed");
    assert_one_load_balancer(&rt, &elbv2, &stack);

    // A new type replaces the instance: the load balancer ends up with the new one only.
    automation(&w, &stack, &["--set", "instance_type=t3.xlarge"])
        .success()
        .stdout_has(&format!("-/+ instance {stack}-app: t3.large → t3.xlarge"));
    assert_only_the_new_instance_serves(&w, &rt, &elbv2, &stack, &tg, &state);

    run(&w, &["destroy", &stack, "--yes"]).success();
    assert_destroyed_with_its_load_balancer(&sdk, &rt, &elbv2, &stack);
}

/// `run automation` for `stack`, n8n open to 198.51.100.0/24, with `more` arguments.
fn automation(w: &World, stack: &str, more: &[&str]) -> Outcome {
    let mut args = vec![
        "run",
        "automation",
        "--name",
        stack,
        "--set",
        "health_timeout=30",
        "--set",
        "allowed_cidr=198.51.100.0/24",
    ];
    args.extend_from_slice(more);
    run(w, &args)
}

/// The load balancer: internet-facing, in two zones or more, tagged; returns it.
fn assert_load_balancer_internet_facing_and_tagged(
    rt: &tokio::runtime::Runtime,
    elbv2: &aws_sdk_elasticloadbalancingv2::Client,
    stack: &str,
    dns: &str,
) -> aws_sdk_elasticloadbalancingv2::types::LoadBalancer {
    let lbs = rt
        .block_on(
            elbv2
                .describe_load_balancers()
                .names(format!("{stack}-web"))
                .send(),
        )
        .unwrap();
    let lb = &lbs.load_balancers()[0];
    assert_eq!(lb.dns_name(), Some(dns));
    assert_eq!(lb.scheme().map(|s| s.as_str()), Some("internet-facing"));
    let zones: std::collections::BTreeSet<_> = lb
        .availability_zones()
        .iter()
        .filter_map(|z| z.zone_name())
        .collect();
    assert!(zones.len() >= 2, "{zones:?}");
    let tags = rt
        .block_on(
            elbv2
                .describe_tags()
                .resource_arns(lb.load_balancer_arn().unwrap())
                .send(),
        )
        .unwrap();
    assert!(tags.tag_descriptions()[0]
        .tags()
        .iter()
        .any(|t| t.key() == Some("geusemaker:stack") && t.value() == Some(stack)));
    lb.clone()
}

/// The target group checks n8n's health on 5678, the one HTTP listener forwards to it, and
/// its target is the stack's instance; returns it.
fn assert_target_group_serves_the_instance(
    rt: &tokio::runtime::Runtime,
    elbv2: &aws_sdk_elasticloadbalancingv2::Client,
    stack: &str,
    lb: &aws_sdk_elasticloadbalancingv2::types::LoadBalancer,
    state: &serde_json::Value,
) -> aws_sdk_elasticloadbalancingv2::types::TargetGroup {
    let tgs = rt
        .block_on(
            elbv2
                .describe_target_groups()
                .names(format!("{stack}-n8n"))
                .send(),
        )
        .unwrap();
    let tg = &tgs.target_groups()[0];
    assert_eq!(tg.port(), Some(5678));
    assert_eq!(tg.health_check_path(), Some("/healthz"));
    assert_eq!(
        (tg.healthy_threshold_count(), tg.unhealthy_threshold_count()),
        (Some(2), Some(3))
    );
    let listeners = rt
        .block_on(
            elbv2
                .describe_listeners()
                .load_balancer_arn(lb.load_balancer_arn().unwrap())
                .send(),
        )
        .unwrap();
    assert_eq!(listeners.listeners().len(), 1);
    let l = &listeners.listeners()[0];
    assert_eq!(
        (l.port(), l.protocol().map(|p| p.as_str())),
        (Some(80), Some("HTTP"))
    );
    assert_eq!(
        l.default_actions()[0].target_group_arn(),
        tg.target_group_arn()
    );
    let health = rt
        .block_on(
            elbv2
                .describe_target_health()
                .target_group_arn(tg.target_group_arn().unwrap())
                .send(),
        )
        .unwrap();
    assert_eq!(
        health.target_health_descriptions()[0]
            .target()
            .unwrap()
            .id(),
        state["outputs"]["instance_id"].as_str()
    );
    tg.clone()
}

/// The instance takes n8n traffic from the load balancer's group only; the load balancer
/// takes port 80 from the allowed range.
fn assert_instance_admits_the_load_balancer_only(
    w: &World,
    sdk: &support::Sdk,
    stack: &str,
    lb: &aws_sdk_elasticloadbalancingv2::types::LoadBalancer,
) {
    let alb_sg = lb.security_groups()[0].clone();
    let (cidrs, groups) = app_sg_rules_on_5678(w, stack);
    assert!(cidrs.is_empty(), "{cidrs:?}");
    assert_eq!(groups, std::slice::from_ref(&alb_sg));
    let alb = sdk
        .block_on(sdk.ec2.describe_security_groups().group_ids(&alb_sg).send())
        .unwrap();
    let p = &alb.security_groups()[0].ip_permissions()[0];
    assert_eq!(
        (p.from_port(), p.ip_ranges()[0].cidr_ip()),
        (Some(80), Some("198.51.100.0/24"))
    );
}

/// Exactly one load balancer of the stack's name.
fn assert_one_load_balancer(
    rt: &tokio::runtime::Runtime,
    elbv2: &aws_sdk_elasticloadbalancingv2::Client,
    stack: &str,
) {
    let all = rt.block_on(elbv2.describe_load_balancers().send()).unwrap();
    assert_eq!(
        all.load_balancers()
            .iter()
            .filter(|l| l.load_balancer_name() == Some(format!("{stack}-web").as_str()))
            .count(),
        1
    );
}

/// A replaced instance: the target group serves the new one only, healthy.
fn assert_only_the_new_instance_serves(
    w: &World,
    rt: &tokio::runtime::Runtime,
    elbv2: &aws_sdk_elasticloadbalancingv2::Client,
    stack: &str,
    tg: &aws_sdk_elasticloadbalancingv2::types::TargetGroup,
    state: &serde_json::Value,
) {
    let new_id = w.state(stack)["outputs"]["instance_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(
        Some(new_id.as_str()),
        state["outputs"]["instance_id"].as_str()
    );
    let health = rt
        .block_on(
            elbv2
                .describe_target_health()
                .target_group_arn(tg.target_group_arn().unwrap())
                .send(),
        )
        .unwrap();
    let targets: Vec<(&str, &str)> = health
        .target_health_descriptions()
        .iter()
        .map(|d| {
            (
                d.target().and_then(|t| t.id()).unwrap_or_default(),
                d.target_health()
                    .and_then(|h| h.state())
                    .map(|s| s.as_str())
                    .unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        targets,
        [(new_id.as_str(), "healthy")],
        "only the new instance serves"
    );
}

/// Destroy leaves no non-data resource, load balancer or target group.
fn assert_destroyed_with_its_load_balancer(
    sdk: &support::Sdk,
    rt: &tokio::runtime::Runtime,
    elbv2: &aws_sdk_elasticloadbalancingv2::Client,
    stack: &str,
) {
    let left = sdk.leftovers(stack);
    assert!(left.non_data().is_empty(), "{left:?}");
    assert!(
        rt.block_on(
            elbv2
                .describe_load_balancers()
                .names(format!("{stack}-web"))
                .send()
        )
        .is_err(),
        "load balancer deleted"
    );
    assert!(
        rt.block_on(
            elbv2
                .describe_target_groups()
                .names(format!("{stack}-n8n"))
                .send()
        )
        .is_err(),
        "target group deleted"
    );
}

#[test]
fn automation_with_a_certificate_serves_https_and_redirects_http() {
    let w = World::moto();
    let stack = support::stack_name("autotls");
    let cert = support::acm_certificate(w.endpoint.as_deref().unwrap(), "n8n.example.com");
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
        ],
    )
    .success();
    let state = w.state(&stack);
    let dns = state["outputs"]["load_balancer_dns"].as_str().unwrap();
    assert_eq!(state["outputs"]["n8n_url"], format!("https://{dns}"));
    let (rt, elbv2, _) = elb(&w);
    let lb_arn = state["outputs"]["load_balancer_arn"].as_str().unwrap();
    let listeners = rt
        .block_on(elbv2.describe_listeners().load_balancer_arn(lb_arn).send())
        .unwrap();
    let mut ports: Vec<(i32, String)> = listeners
        .listeners()
        .iter()
        .map(|l| {
            (
                l.port().unwrap(),
                l.protocol().unwrap().as_str().to_string(),
            )
        })
        .collect();
    ports.sort();
    assert_eq!(
        ports,
        [(80, "HTTP".to_string()), (443, "HTTPS".to_string())]
    );
    for l in listeners.listeners() {
        let action = &l.default_actions()[0];
        if l.port() == Some(443) {
            assert_eq!(l.certificates()[0].certificate_arn(), Some(cert.as_str()));
            assert_eq!(
                action.target_group_arn(),
                state["outputs"]["target_group_arn"].as_str()
            );
        } else {
            let redirect = action.redirect_config().expect("80 redirects");
            assert_eq!(
                (redirect.protocol(), redirect.port()),
                (Some("HTTPS"), Some("443"))
            );
        }
    }
    run(
        &w,
        &["destroy", &stack, "--yes", "--set", "delete_data=true"],
    )
    .success();
    assert!(w.sdk().leftovers(&stack).is_empty());
}

/// CloudFront Functions answered as AWS does (moto has none): the function does not exist yet,
/// is created and published, and destroy deletes it.
fn cloudfront_function_rules(name: &str) -> Vec<Rule> {
    let arn = format!("arn:aws:cloudfront::123456789012:function/{name}");
    let summary = |stage: &str, status: &str| {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<FunctionSummary xmlns="http://cloudfront.amazonaws.com/doc/2020-05-31/"><Name>{name}</Name><Status>{status}</Status><FunctionConfig><Comment>geusemaker</Comment><Runtime>cloudfront-js-2.0</Runtime></FunctionConfig><FunctionMetadata><FunctionARN>{arn}</FunctionARN><Stage>{stage}</Stage><CreatedTime>2026-12-02T03:00:00.000Z</CreatedTime><LastModifiedTime>2026-12-02T03:00:00.000Z</LastModifiedTime></FunctionMetadata></FunctionSummary>"#
        )
    };
    let missing = r#"<?xml version="1.0" encoding="UTF-8"?>
<ErrorResponse xmlns="http://cloudfront.amazonaws.com/doc/2020-05-31/"><Error><Type>Sender</Type><Code>NoSuchFunctionExists</Code><Message>The function does not exist.</Message></Error><RequestId>fault-proxy</RequestId></ErrorResponse>"#;
    vec![
        Rule::rest_xml(
            &format!("GET /2020-05-31/function/{name}?Stage=DEVELOPMENT "),
            404,
            missing,
        ),
        Rule::rest_xml(
            "POST /2020-05-31/function ",
            201,
            &summary("DEVELOPMENT", "UNPUBLISHED"),
        )
        .header("ETag", "ETVPDKIKX0DER"),
        Rule::rest_xml(
            &format!("GET /2020-05-31/function/{name}/describe?Stage=LIVE"),
            404,
            missing,
        ),
        Rule::rest_xml(
            &format!("POST /2020-05-31/function/{name}/publish"),
            200,
            &summary("LIVE", "UNASSOCIATED"),
        ),
        Rule::rest_xml(
            &format!("GET /2020-05-31/function/{name}/describe?Stage=DEVELOPMENT"),
            200,
            &summary("DEVELOPMENT", "UNASSOCIATED"),
        )
        .header("ETag", "ETVPDKIKX0DER"),
        Rule::rest_xml(&format!("DELETE /2020-05-31/function/{name}"), 204, ""),
    ]
}

#[test]
fn gpu_tier_runs_on_a_gpu_behind_cloudfront_and_destroys_cleanly() {
    let w = World::moto();
    let stack = support::stack_name("gpu");
    let function = format!("{stack}-viewers");
    let proxy = FaultProxy::start(
        &support::moto().endpoint,
        cloudfront_function_rules(&function),
    );
    let through_proxy = |args: &[&str]| {
        Outcome::from(
            w.cmd()
                .args(args)
                .env("GEUSEMAKER_HEALTH_ENDPOINTS", stand_ins())
                .env("AWS_ENDPOINT_URL", proxy.endpoint())
                .output()
                .unwrap(),
        )
    };
    let out = through_proxy(&["run", "gpu", "--name", &stack, "--set", "health_timeout=30"]);
    out.success();
    assert_viewer_filter_admits_the_deployer_only(&proxy, &function);
    out.success()
        .stdout_has("1× NVIDIA T4")
        .stdout_has("includes CloudFront");
    let state = w.state(&stack);
    let domain = state["outputs"]["cloudfront_domain"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(state["outputs"]["n8n_url"], format!("https://{domain}"));

    let sdk = w.sdk();
    let inst = sdk.stack_instances(&stack);
    assert_gpu_instance_on_a_deep_learning_ami(&sdk, &inst[0]);
    assert_ollama_gets_the_gpu(&sdk, &inst[0]);
    let (rt, _, cf) = elb(&w);
    let id = state["outputs"]["cloudfront_id"].as_str().unwrap();
    let config = assert_cloudfront_uncached_https_to_the_load_balancer(&rt, &cf, id, &state);
    let secret = assert_origin_secret_is_long(&sdk, &stack);
    assert_load_balancer_admits_cloudfront_only(&sdk, &stack);
    assert_listener_forwards_only_with_the_secret(&w, &rt, &state, &secret);
    assert_cloudfront_sends_the_secret_the_state_never_holds(&w, &stack, &config, &secret);
    assert_status_and_cost_see_the_front(&w, &stack, id, &domain);

    through_proxy(&["destroy", &stack, "--yes"])
        .success()
        .stdout_has("cloudfront:distribution")
        .stdout_has(&format!("cloudfront:function viewers ({function})"));
    assert_destroyed_with_its_viewer_filter_and_distribution(
        &proxy, &function, &sdk, &stack, &rt, &cf, id,
    );
}

/// CloudFront has no security group: a viewer function admits the deployer only, and the
/// distribution runs it on every viewer request.
fn assert_viewer_filter_admits_the_deployer_only(proxy: &FaultProxy, function: &str) {
    use base64::Engine as _;
    let seen = proxy.stats().seen;
    let (_, create_fn) = seen
        .iter()
        .find(|(line, _)| line.starts_with("POST /2020-05-31/function "))
        .expect("the viewer filter was created");
    let b64 = create_fn
        .split("<FunctionCode>")
        .nth(1)
        .and_then(|r| r.split("</FunctionCode>").next())
        .unwrap();
    let code = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
    )
    .unwrap();
    let deployer = u32::from(support::DEPLOYER_IP.parse::<std::net::Ipv4Addr>().unwrap());
    assert!(
        code.contains(&format!("var allowed = [[{deployer}, 32]];")),
        "the deployer's /32 only:\n{code}"
    );
    let arn = format!("arn:aws:cloudfront::123456789012:function/{function}");
    let (_, create_cdn) = seen
        .iter()
        .find(|(line, _)| line.starts_with("POST /2020-05-31/distribution"))
        .expect("the distribution was created");
    assert!(
        create_cdn.contains(&format!("<FunctionARN>{arn}</FunctionARN>"))
            && create_cdn.contains("<EventType>viewer-request</EventType>"),
        "the distribution runs the filter on viewer requests: {create_cdn}"
    );
}

/// The GPU instance: the type, a Deep Learning AMI, a zone that offers the type.
fn assert_gpu_instance_on_a_deep_learning_ami(
    sdk: &support::Sdk,
    i: &aws_sdk_ec2::types::Instance,
) {
    assert_eq!(i.instance_type().map(|t| t.as_str()), Some("g4dn.xlarge"));
    let image = sdk
        .block_on(
            sdk.ec2
                .describe_images()
                .image_ids(i.image_id().unwrap())
                .send(),
        )
        .unwrap();
    assert!(
        image.images()[0].name().unwrap().contains("Deep Learning"),
        "{:?}",
        image.images()[0].name()
    );
    assert_ne!(
        i.placement().unwrap().availability_zone(),
        Some("us-east-1e"),
        "moto's us-east-1e does not offer g4dn.xlarge"
    );
}

/// Ollama gets the GPU in the compose file.
fn assert_ollama_gets_the_gpu(sdk: &support::Sdk, i: &aws_sdk_ec2::types::Instance) {
    let script = sdk.user_data(i.instance_id().unwrap());
    let compose: serde_yaml::Value =
        serde_yaml::from_str(support::heredoc(&script, "/opt/geusemaker/compose.yaml")).unwrap();
    let device =
        &compose["services"]["ollama"]["deploy"]["resources"]["reservations"]["devices"][0];
    assert_eq!(
        device["driver"].as_str(),
        Some("nvidia"),
        "GPU reservation for Ollama"
    );
    assert_eq!(device["capabilities"][0].as_str(), Some("gpu"));
}

/// CloudFront: origin = the load balancer, no caching, HTTPS for viewers; returns the
/// distribution's config.
fn assert_cloudfront_uncached_https_to_the_load_balancer(
    rt: &tokio::runtime::Runtime,
    cf: &aws_sdk_cloudfront::Client,
    id: &str,
    state: &serde_json::Value,
) -> aws_sdk_cloudfront::types::DistributionConfig {
    let d = rt.block_on(cf.get_distribution().id(id).send()).unwrap();
    let d = d.distribution().unwrap();
    let config = d.distribution_config().unwrap();
    assert!(config.enabled());
    assert_eq!(
        config.origins().unwrap().items()[0].domain_name(),
        state["outputs"]["load_balancer_dns"].as_str().unwrap()
    );
    let behavior = config.default_cache_behavior().unwrap();
    assert_eq!(
        behavior.cache_policy_id(),
        Some("4135ea2d-6df8-44a3-9df3-4b5a84be39ad"),
        "CachingDisabled"
    );
    assert_eq!(
        behavior.viewer_protocol_policy().as_str(),
        "redirect-to-https"
    );
    assert_eq!(
        behavior.allowed_methods().unwrap().quantity(),
        7,
        "every method reaches n8n"
    );
    config.clone()
}

/// The stack's secret origin header value, kept in SSM: long and random; returns it.
fn assert_origin_secret_is_long(sdk: &support::Sdk, stack: &str) -> String {
    let secret = sdk.secret_value(&format!("/geusemaker/{stack}/cloudfront/origin_secret"));
    assert!(secret.len() >= 32, "a long random secret");
    secret
}

/// CloudFront is the only way to the load balancer: its group admits CloudFront's
/// origin-facing prefix list on one port and nothing else; no group admits an address range.
fn assert_load_balancer_admits_cloudfront_only(sdk: &support::Sdk, stack: &str) {
    let cloudfront_pl = sdk
        .block_on(
            sdk.ec2
                .describe_managed_prefix_lists()
                .filters(
                    aws_sdk_ec2::types::Filter::builder()
                        .name("prefix-list-name")
                        .values("com.amazonaws.global.cloudfront.origin-facing")
                        .build(),
                )
                .send(),
        )
        .unwrap()
        .prefix_lists()[0]
        .prefix_list_id()
        .unwrap()
        .to_string();
    let groups = sdk.stack_security_groups(stack);
    // The default deploy admits no address range anywhere: the instance from the load
    // balancer's group, the load balancer from CloudFront's prefix list, EFS from the instance.
    for g in &groups {
        for p in g.ip_permissions() {
            assert!(
                p.ip_ranges().is_empty() && p.ipv6_ranges().is_empty(),
                "{}: {p:?}",
                g.group_name().unwrap()
            );
        }
    }
    let alb_sg = groups
        .iter()
        .find(|g| g.group_name() == Some(format!("{stack}-alb").as_str()))
        .unwrap();
    let perms = alb_sg.ip_permissions();
    assert_eq!(perms.len(), 1, "one rule: {perms:?}");
    assert_eq!(perms[0].from_port(), Some(80));
    assert!(perms[0].ip_ranges().is_empty(), "no CIDR: {perms:?}");
    assert!(perms[0].user_id_group_pairs().is_empty());
    assert_eq!(
        perms[0]
            .prefix_list_ids()
            .iter()
            .map(|p| p.prefix_list_id().unwrap())
            .collect::<Vec<_>>(),
        [cloudfront_pl.as_str()]
    );
}

/// The listener answers 403 by default and forwards only requests with the stack's secret
/// origin header.
fn assert_listener_forwards_only_with_the_secret(
    w: &World,
    rt: &tokio::runtime::Runtime,
    state: &serde_json::Value,
    secret: &String,
) {
    let lb_arn = state["outputs"]["load_balancer_arn"].as_str().unwrap();
    let elbc = elb(w).1;
    let listeners = rt
        .block_on(elbc.describe_listeners().load_balancer_arn(lb_arn).send())
        .unwrap();
    let listener = &listeners.listeners()[0];
    let default = &listener.default_actions()[0];
    assert_eq!(default.r#type().unwrap().as_str(), "fixed-response");
    assert_eq!(
        default.fixed_response_config().unwrap().status_code(),
        Some("403")
    );
    let rules = rt
        .block_on(
            elbc.describe_rules()
                .listener_arn(listener.listener_arn().unwrap())
                .send(),
        )
        .unwrap();
    let first = rules
        .rules()
        .iter()
        .find(|r| r.priority() == Some("1"))
        .expect("a rule that forwards with the header");
    let header = first.conditions()[0].http_header_config().unwrap();
    assert_eq!(header.http_header_name(), Some("X-Origin-Verify"));
    assert_eq!(header.values(), std::slice::from_ref(secret));
    assert_eq!(
        first.actions()[0].target_group_arn(),
        state["outputs"]["target_group_arn"].as_str()
    );
}

/// The distribution adds the secret origin header; the secret never reaches the state file.
fn assert_cloudfront_sends_the_secret_the_state_never_holds(
    w: &World,
    stack: &str,
    config: &aws_sdk_cloudfront::types::DistributionConfig,
    secret: &str,
) {
    let origin = &config.origins().unwrap().items()[0];
    let sent: Vec<(&str, &str)> = origin
        .custom_headers()
        .unwrap()
        .items()
        .iter()
        .map(|h| (h.header_name(), h.header_value()))
        .collect();
    assert_eq!(sent, [("X-Origin-Verify", secret)]);
    assert!(
        !std::fs::read_to_string(w.state_path(stack))
            .unwrap()
            .contains(secret),
        "the secret never reaches the state file"
    );
}

/// status and cost see what sits in front of the instance.
fn assert_status_and_cost_see_the_front(w: &World, stack: &str, id: &str, domain: &str) {
    let out = run(w, &["status", stack, "--json"]);
    out.success();
    let s: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(s["tier"], "gpu");
    assert_eq!(s["load_balancer"]["target_state"], "healthy", "{s}");
    assert_eq!(s["cloudfront"]["id"], id);
    assert_eq!(s["cloudfront"]["domain"], domain);
    assert_eq!(s["cloudfront"]["status"], "Deployed");
    run(w, &["status", stack])
        .success()
        .stdout_has("Load balancer  ")
        .stdout_has("target healthy")
        .stdout_has(&format!("CloudFront     {domain} · Deployed"));
    let out = run(w, &["cost", stack, "--json"]);
    out.success();
    let c: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let items: Vec<&str> = c["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["item"].as_str().unwrap())
        .collect();
    assert!(items.contains(&"application load balancer"), "{items:?}");
    assert!(
        items.iter().any(|i| i.starts_with("CloudFront (")),
        "{items:?}"
    );
    assert_eq!(c["instance"]["instance_type"], "g4dn.xlarge");
    assert_eq!(c["instance"]["on_demand_usd_per_hour"], 0.526);
}

/// Destroy deleted the viewer filter and the distribution, and left no non-data resource.
fn assert_destroyed_with_its_viewer_filter_and_distribution(
    proxy: &FaultProxy,
    function: &str,
    sdk: &support::Sdk,
    stack: &str,
    rt: &tokio::runtime::Runtime,
    cf: &aws_sdk_cloudfront::Client,
    id: &str,
) {
    assert!(
        proxy
            .stats()
            .seen
            .iter()
            .any(|(line, _)| line.starts_with(&format!("DELETE /2020-05-31/function/{function}"))),
        "the viewer filter deleted"
    );
    assert!(sdk.leftovers(stack).non_data().is_empty());
    assert!(
        rt.block_on(cf.get_distribution().id(id).send()).is_err(),
        "distribution deleted"
    );
}

#[test]
fn gpu_tier_with_a_certificate_reaches_its_load_balancer_over_https() {
    let w = World::moto();
    let stack = support::stack_name("gpus");
    let endpoint = w.endpoint.clone().unwrap();
    let cert = support::acm_certificate(&endpoint, "origin.example.com");
    let proxy = FaultProxy::start(
        &support::moto().endpoint,
        cloudfront_function_rules(&format!("{stack}-viewers")),
    );
    let deploy = |extra: &[&str]| {
        let mut args = vec!["run", "gpu", "--name", &stack, "--set", "health_timeout=30"];
        args.extend_from_slice(extra);
        Outcome::from(
            w.cmd()
                .args(&args)
                .env("GEUSEMAKER_HEALTH_ENDPOINTS", stand_ins())
                .env("AWS_ENDPOINT_URL", proxy.endpoint())
                .output()
                .unwrap(),
        )
    };
    // Half of it is refused before anything is created.
    deploy(&["--set", "origin_domain=origin.example.com"])
        .failure(1)
        .stderr_has("needs both");
    assert!(w.sdk().leftovers(&stack).is_empty());

    deploy(&[
        "--set",
        "origin_domain=origin.example.com",
        "--set",
        &format!("certificate_arn={cert}"),
    ])
    .success()
    .stderr_has("point origin.example.com at");
    let state = w.state(&stack);
    assert_eq!(state["outputs"]["origin_domain"], "origin.example.com");
    // The load balancer admits CloudFront on 443 only; its HTTPS listener requires the header.
    let alb_sg = w
        .sdk()
        .stack_security_groups(&stack)
        .into_iter()
        .find(|g| g.group_name() == Some(format!("{stack}-alb").as_str()))
        .unwrap();
    let perms = alb_sg.ip_permissions();
    assert_eq!(perms.len(), 1, "{perms:?}");
    assert_eq!(perms[0].from_port(), Some(443));
    assert_eq!(perms[0].prefix_list_ids().len(), 1);
    let (rt, elbc, cf) = elb(&w);
    let lb_arn = state["outputs"]["load_balancer_arn"].as_str().unwrap();
    let listeners = rt
        .block_on(elbc.describe_listeners().load_balancer_arn(lb_arn).send())
        .unwrap();
    let https = listeners
        .listeners()
        .iter()
        .find(|l| l.port() == Some(443))
        .expect("an HTTPS listener");
    assert_eq!(https.protocol().map(|p| p.as_str()), Some("HTTPS"));
    assert_eq!(
        https.default_actions()[0].r#type().unwrap().as_str(),
        "fixed-response"
    );
    // CloudFront connects to the name the certificate covers, over HTTPS only.
    let id = state["outputs"]["cloudfront_id"].as_str().unwrap();
    let d = rt.block_on(cf.get_distribution().id(id).send()).unwrap();
    let origin = &d
        .distribution()
        .unwrap()
        .distribution_config()
        .unwrap()
        .origins()
        .unwrap()
        .items()[0];
    assert_eq!(origin.domain_name(), "origin.example.com");
    assert_eq!(
        origin
            .custom_origin_config()
            .unwrap()
            .origin_protocol_policy()
            .as_str(),
        "https-only"
    );
    let destroy = Outcome::from(
        w.cmd()
            .args(["destroy", &stack, "--yes"])
            .env("AWS_ENDPOINT_URL", proxy.endpoint())
            .output()
            .unwrap(),
    );
    destroy.success();
    assert!(w.sdk().leftovers(&stack).non_data().is_empty());
}

#[test]
fn tier_input_errors_are_caught_before_anything_is_created() {
    let w = World::moto();
    let stack = support::stack_name("badgpu");
    run(
        &w,
        &[
            "run",
            "gpu",
            "--name",
            &stack,
            "--set",
            "instance_type=t3.medium",
        ],
    )
    .failure(1)
    .stderr_has("t3.medium has no GPU")
    .stderr_has("stdlib/instance.rhai:");
    assert!(!w.state_path(&stack).exists());

    let stack = support::stack_name("badhttps");
    run(
        &w,
        &["run", "automation", "--name", &stack, "--set", "https=true"],
    )
    .failure(1)
    .stderr_has("HTTPS needs a certificate")
    .stderr_has("--set certificate_arn=");
    assert!(!w.state_path(&stack).exists());
    run(
        &w,
        &[
            "run",
            "automation",
            "--name",
            &stack,
            "--set",
            "https=true",
            "--set",
            "certificate_arn=not-an-arn",
        ],
    )
    .failure(2)
    .stderr_has("--set certificate_arn=not-an-arn: `not-an-arn` is not an ACM certificate ARN")
    .stderr_has("hint: certificate_arn: an ACM certificate");

    let stack = support::stack_name("badregion");
    run(
        &w,
        &[
            "run",
            "automation",
            "--name",
            &stack,
            "--region",
            "us-east-9",
        ],
    )
    .failure(2)
    .stderr_has("`us-east-9` is not an AWS region")
    .stderr_has("did you mean `us-east-");
    assert!(w.sdk().leftovers(&stack).is_empty());
}
