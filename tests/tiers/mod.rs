//! The automation and GPU tiers end to end through the binary against moto: load balancer,
//! target group, listeners, CloudFront, GPU instance and AMI; destroy to zero non-data
//! resources; bad input.

use crate::support;

use support::{stand_ins, Outcome, World};

mod automation;
mod gpu;
mod input_errors;

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
