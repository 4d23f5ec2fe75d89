//! [`Ec2Api`] over aws-sdk-ec2, one file per area: [`Ec2Network`] (`network.rs`),
//! [`Ec2Catalog`] (`catalog.rs`), [`Ec2Instances`] (`instances.rs`), [`Ec2Volumes`]
//! (`volumes.rs`).

use super::Blocking;

mod catalog;
mod instances;
mod network;
mod volumes;

/// [`Ec2Api`] over aws-sdk-ec2 (and SSM for the public AMI parameter).
pub struct SdkEc2 {
    client: aws_sdk_ec2::Client,
    ssm: aws_sdk_ssm::Client,
    rt: Blocking,
}

impl SdkEc2 {
    pub fn new(client: aws_sdk_ec2::Client, ssm: aws_sdk_ssm::Client, rt: Blocking) -> Self {
        SdkEc2 { client, ssm, rt }
    }
}
