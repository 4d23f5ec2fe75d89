//! The GPU tier: a GPU instance on a Deep Learning AMI behind CloudFront and a load balancer that
//! admits CloudFront only (with its secret header), the viewer filter; destroy takes it all.

use crate::support::proxy::{FaultProxy, Rule};

use super::*;

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
