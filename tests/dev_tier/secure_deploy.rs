//! The dev stack deployed securely, re-run without change, and healed after its instance is
//! gone (the checks are in `checks`).

use crate::support::heredoc;

use super::checks::*;
use super::*;

#[test]
fn dev_deploys_the_ai_stack_securely_and_a_rerun_changes_nothing() {
    let w = World::moto();
    let stack = support::stack_name("dev");
    let cidr = "198.51.100.7/32";
    let out = deploy(&w, &stack, None, &[&format!("allowed_cidr={cidr}")]);
    assert_ready_with_every_service_healthy(&out, &stack);

    let state = w.state(&stack);
    let sdk = w.sdk();
    let ids = DevIds::from_ledger(&state);
    assert_state_complete(&state, &ids, cidr);
    let az = assert_instance_hardened(&sdk, &stack, &ids);
    assert_security_groups_exact(&sdk, &stack, &ids, cidr);
    assert_efs_encrypted_and_tagged(&sdk, &stack, &ids, &az);
    assert_data_volume_outlives_the_instance(&sdk, &stack, &ids, &az);
    let script = sdk.user_data(&ids.instance);
    assert_secrets_never_leak(&w, &sdk, &stack, &out, &script);
    assert_boot_script_clean_and_mounting_efs(&w, &sdk, &ids, &script);
    let compose: serde_yaml::Value =
        serde_yaml::from_str(heredoc(&script, "/opt/geusemaker/compose.yaml"))
            .expect("compose file is YAML");
    let services = compose["services"].as_mapping().unwrap();
    assert_services_pinned_and_on_loopback(services);
    assert_secrets_in_per_service_env_files(services, &script);
    assert_data_on_the_right_storage(services);
    assert_every_resource_tagged(&sdk, &stack, &ids);

    let again = deploy(&w, &stack, None, &[&format!("allowed_cidr={cidr}")]);
    assert_rerun_created_nothing(&again, &w, &sdk, &stack, &state);

    terminate_instance(&sdk, &ids.instance);
    assert_data_survives_the_instance(&sdk, &ids);

    let key_before = encryption_key(&sdk, &stack);
    let healed = deploy(&w, &stack, None, &[&format!("allowed_cidr={cidr}")]);
    assert_next_run_reattaches_the_data(&healed, &w, &sdk, &stack, &ids, &az, &key_before);
}
