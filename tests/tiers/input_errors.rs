//! Bad input to the tiers (no GPU, HTTPS without a certificate, an unknown region) is caught
//! before anything is created.

use super::*;

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
