//! [`Ec2Instances`] over aws-sdk-ec2: launch (spot or on-demand), find, stop, start, resize,
//! terminate.

use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, Filter, HttpTokensState, IamInstanceProfileSpecification,
    InstanceInterruptionBehavior, InstanceMarketOptionsRequest, InstanceMetadataEndpointState,
    InstanceMetadataOptionsRequest, InstanceType, MarketType, ResourceType, SpotInstanceType,
    SpotMarketOptions, Tag, VolumeType,
};
use base64::Engine as _;

use crate::cloud::{retry_create, CloudError};

use super::super::convert::*;
use super::super::*;
use super::SdkEc2;

impl SdkEc2 {
    /// One RunInstances request, without the SDK's retries (see [`retry_create`]).
    fn run_instance_once(&self, spec: &LaunchSpec) -> Result<Instance, CloudError> {
        let mut tags = spec.tags.clone();
        tags.extra
            .insert(TOKEN_TAG.to_string(), spec.client_token.clone());
        let mut req = self
            .client
            .run_instances()
            .image_id(&spec.image_id)
            .instance_type(InstanceType::from(spec.instance_type.as_str()))
            .min_count(1)
            .max_count(1)
            .subnet_id(&spec.subnet_id)
            .set_security_group_ids(Some(spec.security_group_ids.clone()))
            .client_token(&spec.client_token)
            .metadata_options(
                InstanceMetadataOptionsRequest::builder()
                    .http_tokens(HttpTokensState::Required)
                    .http_endpoint(InstanceMetadataEndpointState::Enabled)
                    // One hop: the instance itself. Containers are a hop further away and so
                    // cannot take the instance role's credentials (nothing in them needs AWS).
                    .http_put_response_hop_limit(1)
                    .build(),
            )
            .tag_specifications(tag_spec(ResourceType::Instance, &tags))
            .tag_specifications(tag_spec(ResourceType::Volume, &spec.tags));
        if let Some(key) = &spec.key_name {
            req = req.key_name(key);
        }
        if let Some(ud) = &spec.user_data {
            let payload = crate::boot::user_data_payload(ud).map_err(|packed| {
                CloudError::new(
                    SVC,
                    "RunInstances",
                    "UserDataTooLarge",
                    format!("user data is {packed} bytes gzipped; EC2 takes 16 KiB"),
                )
            })?;
            req = req.user_data(base64::engine::general_purpose::STANDARD.encode(payload));
        }
        if let Some(profile) = &spec.instance_profile {
            let p = if profile.starts_with("arn:") {
                IamInstanceProfileSpecification::builder().arn(profile)
            } else {
                IamInstanceProfileSpecification::builder().name(profile)
            };
            req = req.iam_instance_profile(p.build());
        }
        if spec.spot {
            let mut opts = SpotMarketOptions::builder()
                .spot_instance_type(SpotInstanceType::OneTime)
                .instance_interruption_behavior(InstanceInterruptionBehavior::Terminate);
            if let Some(p) = &spec.max_price {
                opts = opts.max_price(p);
            }
            req = req.instance_market_options(
                InstanceMarketOptionsRequest::builder()
                    .market_type(MarketType::Spot)
                    .spot_options(opts.build())
                    .build(),
            );
        }
        for v in &spec.volumes {
            req = req.block_device_mappings(
                BlockDeviceMapping::builder()
                    .device_name(&v.device)
                    .ebs(
                        EbsBlockDevice::builder()
                            .volume_size(v.size_gb)
                            .volume_type(VolumeType::from(v.volume_type.as_str()))
                            .delete_on_termination(v.delete_on_termination)
                            .encrypted(v.encrypted)
                            .build(),
                    )
                    .build(),
            );
        }
        let out = self.rt.call(
            SVC,
            "RunInstances",
            req.customize().config_override(no_sdk_retries()).send(),
        )?;
        out.instances().first().map(to_instance).ok_or_else(|| {
            CloudError::new(
                SVC,
                "RunInstances",
                "NoInstance",
                "RunInstances returned no instance",
            )
        })
    }
}

impl Ec2Instances for SdkEc2 {
    fn run_instance(&self, spec: &LaunchSpec) -> Result<Instance, CloudError> {
        // An instance profile made seconds ago is not yet visible to EC2 (IAM propagates
        // eventually): RunInstances refuses it as invalid. Nothing was launched; wait and ask
        // again, for up to PROFILE_PROPAGATION.
        let started = std::time::Instant::now();
        let mut delay = std::time::Duration::from_secs(1);
        loop {
            // The client token makes AWS return the same instance for a repeated request;
            // the token tag lets us find it ourselves (emulators ignore client tokens).
            let launched = retry_create(
                || self.run_instance_once(spec),
                || {
                    Ok(self
                        .describe_instances(&[
                            (format!("tag:{TOKEN_TAG}"), vec![spec.client_token.clone()]),
                            (
                                "instance-state-name".into(),
                                vec!["pending".into(), "running".into()],
                            ),
                        ])?
                        .into_iter()
                        .next())
                },
            );
            match launched {
                Err(e)
                    if spec.instance_profile.is_some()
                        && profile_not_yet_visible(&e)
                        && started.elapsed() + delay < PROFILE_PROPAGATION =>
                {
                    tracing::info!(
                        waited = ?started.elapsed(),
                        "the instance profile is not visible to EC2 yet; launching again in {delay:?}"
                    );
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(std::time::Duration::from_secs(8));
                }
                other => return other,
            }
        }
    }

    fn instance(&self, id: &str) -> Result<Instance, CloudError> {
        let out = self.rt.call(
            SVC,
            "DescribeInstances",
            self.client.describe_instances().instance_ids(id).send(),
        )?;
        out.reservations()
            .iter()
            .flat_map(|r| r.instances())
            .next()
            .map(to_instance)
            .ok_or_else(|| {
                CloudError::new(
                    SVC,
                    "DescribeInstances",
                    "InvalidInstanceID.NotFound",
                    format!("instance {id} not found"),
                )
            })
    }

    fn find_instances(&self, tags: &[(String, String)]) -> Result<Vec<Instance>, CloudError> {
        let mut req = self.client.describe_instances().filters(filter(
            "instance-state-name",
            &["pending", "running", "stopping", "stopped"],
        ));
        for (k, v) in tags {
            req = req.filters(filter(&format!("tag:{k}"), &[v]));
        }
        let out = self.rt.call(SVC, "DescribeInstances", req.send())?;
        Ok(out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .map(to_instance)
            .collect())
    }

    fn terminate_instance(&self, id: &str) -> Result<String, CloudError> {
        let out = self.rt.call(
            SVC,
            "TerminateInstances",
            self.client.terminate_instances().instance_ids(id).send(),
        )?;
        Ok(previous_state(out.terminating_instances()))
    }

    fn spot_request_status(&self, request_id: &str) -> Result<Option<String>, CloudError> {
        let out = self.rt.call(
            SVC,
            "DescribeSpotInstanceRequests",
            self.client
                .describe_spot_instance_requests()
                .spot_instance_request_ids(request_id)
                .send(),
        )?;
        Ok(out
            .spot_instance_requests()
            .first()
            .and_then(|r| r.status())
            .and_then(|st| st.code())
            .map(str::to_string))
    }

    fn stop_instance(&self, id: &str) -> Result<String, CloudError> {
        let out = self.rt.call(
            SVC,
            "StopInstances",
            self.client.stop_instances().instance_ids(id).send(),
        )?;
        Ok(previous_state(out.stopping_instances()))
    }

    fn start_instance(&self, id: &str) -> Result<String, CloudError> {
        let out = self.rt.call(
            SVC,
            "StartInstances",
            self.client.start_instances().instance_ids(id).send(),
        )?;
        Ok(previous_state(out.starting_instances()))
    }

    fn set_instance_type(&self, id: &str, instance_type: &str) -> Result<(), CloudError> {
        self.rt
            .call(
                SVC,
                "ModifyInstanceAttribute",
                self.client
                    .modify_instance_attribute()
                    .instance_id(id)
                    .instance_type(
                        aws_sdk_ec2::types::AttributeValue::builder()
                            .value(instance_type)
                            .build(),
                    )
                    .send(),
            )
            .map(|_| ())
    }

    fn set_tags(&self, resource_id: &str, tags: &[(String, String)]) -> Result<(), CloudError> {
        self.rt
            .call(
                SVC,
                "CreateTags",
                self.client
                    .create_tags()
                    .resources(resource_id)
                    .set_tags(Some(
                        tags.iter()
                            .map(|(k, v)| Tag::builder().key(k).value(v).build())
                            .collect(),
                    ))
                    .send(),
            )
            .map(|_| ())
    }

    fn describe_instances(
        &self,
        filters: &[(String, Vec<String>)],
    ) -> Result<Vec<Instance>, CloudError> {
        let mut req = self.client.describe_instances();
        for (name, values) in filters {
            req = req.filters(
                Filter::builder()
                    .name(name)
                    .set_values(Some(values.clone()))
                    .build(),
            );
        }
        let out = self.rt.call(SVC, "DescribeInstances", req.send())?;
        Ok(out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .map(to_instance)
            .collect())
    }
}
