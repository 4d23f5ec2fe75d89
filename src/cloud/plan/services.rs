//! EFS, ELB, CloudFront, SSM, IAM and Pricing as a plan sees them: answered from the model.

use crate::cloud::cloudfront::{CloudFrontApi, Distribution, OriginSpec};
use crate::cloud::efs::{EfsApi, FileSystem, MountTarget};
use crate::cloud::elb::{
    ElbApi, HeaderRule, Listener, ListenerAction, LoadBalancer, TargetGroup, TargetGroupSpec,
};
use crate::cloud::iam::{IamApi, InstanceProfile};
use crate::cloud::pricing::PricingApi;
use crate::cloud::ssm::{CommandResult, Parameter, SsmApi};
use crate::cloud::{CloudError, Tags};
use crate::state::Kind;

use super::*;

impl EfsApi for PlanApi {
    fn find_by_token(&self, token: &str) -> Result<Option<FileSystem>, CloudError> {
        self.0.op(&["EFS:DescribeFileSystems"]);
        Ok(self
            .model()
            .file_systems
            .find(|f| f.creation_token == token))
    }
    fn file_system(&self, id: &str) -> Result<FileSystem, CloudError> {
        self.0.op(&["EFS:DescribeFileSystems"]);
        self.model()
            .file_systems
            .find(|f| f.id == id)
            .ok_or_else(|| not_found("efs", "DescribeFileSystems", "FileSystemNotFound", id))
    }
    fn automatic_backups(&self, _id: &str) -> Result<bool, CloudError> {
        self.0.op(&["EFS:DescribeBackupPolicy"]);
        Ok(true)
    }
    fn set_automatic_backups(&self, _id: &str, _on: bool) -> Result<(), CloudError> {
        self.0.op(&["EFS:PutBackupPolicy"]);
        Ok(())
    }
    fn backups(&self, _id: &str) -> Result<Vec<(String, String)>, CloudError> {
        self.0.op(&[
            "EFS:DescribeFileSystems",
            "Backup:ListRecoveryPointsByResource",
        ]);
        Ok(Vec::new())
    }
    fn delete_backup(&self, _vault: &str, _point: &str) -> Result<(), CloudError> {
        self.0.op(&["Backup:DeleteRecoveryPoint"]);
        Ok(())
    }
    fn create_file_system(
        &self,
        token: &str,
        _backups: bool,
        tags: &Tags,
    ) -> Result<FileSystem, CloudError> {
        // "Already exists" (same creation token) is answered by looking it up.
        self.0
            .op(&["EFS:CreateFileSystem", "EFS:DescribeFileSystems"]);
        let f = FileSystem {
            id: self.0.id("fs"),
            name: tags.name.clone(),
            state: "available".into(),
            encrypted: true,
            creation_token: token.into(),
            size_bytes: 0,
            mount_targets: 0,
        };
        self.model().file_systems.add(f.clone(), tags.pairs());
        Ok(f)
    }
    fn delete_file_system(&self, id: &str) -> Result<(), CloudError> {
        self.0.op(&["EFS:DeleteFileSystem"]);
        self.model().file_systems.remove(|f| f.id == id);
        Ok(())
    }
    fn mount_targets(&self, fs_id: &str) -> Result<Vec<MountTarget>, CloudError> {
        self.0.op(&["EFS:DescribeMountTargets"]);
        Ok(self
            .model()
            .mount_targets
            .iter()
            .filter(|m| m.file_system_id == fs_id)
            .cloned()
            .collect())
    }
    fn mount_target(&self, id: &str) -> Result<Option<MountTarget>, CloudError> {
        self.0.op(&["EFS:DescribeMountTargets"]);
        Ok(self
            .model()
            .mount_targets
            .iter()
            .find(|m| m.id == id)
            .cloned())
    }
    fn list(&self) -> Result<Vec<FileSystem>, CloudError> {
        self.0.op(&["EFS:DescribeFileSystems"]);
        Ok(self.model().file_systems.filter(|_| true))
    }
    fn find_by_tag(&self, key: &str, value: &str) -> Result<Vec<FileSystem>, CloudError> {
        self.0.op(&["EFS:DescribeFileSystems"]);
        let want = [(key.to_string(), value.to_string())];
        Ok(self.model().file_systems.tagged(&want, |_| true))
    }
    fn create_mount_target(
        &self,
        fs_id: &str,
        subnet_id: &str,
        _sgs: &[String],
    ) -> Result<MountTarget, CloudError> {
        self.0.op(&["EFS:CreateMountTarget"]);
        let m = MountTarget {
            id: self.0.id("fsmt"),
            file_system_id: fs_id.into(),
            subnet_id: subnet_id.into(),
            az: subnet_id
                .rsplit_once(&format!("{PLANNED}-"))
                .map(|(_, a)| a.to_string())
                .unwrap_or_default(),
            ip: "10.0.0.20".into(),
            state: "available".into(),
        };
        self.model().mount_targets.push(m.clone());
        Ok(m)
    }
    fn delete_mount_target(&self, id: &str) -> Result<(), CloudError> {
        self.0.op(&["EFS:DeleteMountTarget"]);
        self.model().mount_targets.retain(|m| m.id != id);
        Ok(())
    }
}

impl ElbApi for PlanApi {
    fn find_load_balancer(&self, name: &str) -> Result<Option<LoadBalancer>, CloudError> {
        self.0
            .op(&["Elastic Load Balancing v2:DescribeLoadBalancers"]);
        Ok(self.model().load_balancers.find(|l| l.name == name))
    }
    fn load_balancers(&self) -> Result<Vec<LoadBalancer>, CloudError> {
        self.0
            .op(&["Elastic Load Balancing v2:DescribeLoadBalancers"]);
        Ok(self.model().load_balancers.filter(|_| true))
    }
    fn create_load_balancer(
        &self,
        name: &str,
        _subnets: &[String],
        _sgs: &[String],
        tags: &Tags,
    ) -> Result<LoadBalancer, CloudError> {
        self.0.op(&["Elastic Load Balancing v2:CreateLoadBalancer"]);
        let id = self.0.id("lb");
        let l = LoadBalancer {
            arn: format!(
                "arn:aws:elasticloadbalancing:{}:000000000000:loadbalancer/app/{name}/{id}",
                self.0.region
            ),
            name: name.into(),
            dns_name: format!("{name}-{PLANNED}.{}.elb.amazonaws.com", self.0.region),
            state: "active".into(),
            vpc_id: String::new(),
        };
        self.model().load_balancers.add(l.clone(), tags.pairs());
        Ok(l)
    }
    fn delete_load_balancer(&self, arn: &str) -> Result<(), CloudError> {
        self.0.op(&["Elastic Load Balancing v2:DeleteLoadBalancer"]);
        self.model().load_balancers.remove(|l| l.arn == arn);
        Ok(())
    }
    fn find_target_group(&self, name: &str) -> Result<Option<TargetGroup>, CloudError> {
        self.0
            .op(&["Elastic Load Balancing v2:DescribeTargetGroups"]);
        Ok(self.model().target_groups.find(|t| t.name == name))
    }
    fn create_target_group(
        &self,
        spec: &TargetGroupSpec,
        tags: &Tags,
    ) -> Result<TargetGroup, CloudError> {
        self.0.op(&["Elastic Load Balancing v2:CreateTargetGroup"]);
        let id = self.0.id("tg");
        let t = TargetGroup {
            arn: format!(
                "arn:aws:elasticloadbalancing:{}:000000000000:targetgroup/{}/{id}",
                self.0.region, spec.name
            ),
            name: spec.name.clone(),
            port: i64::from(spec.port),
            health_path: spec.health_path.clone(),
        };
        self.model().target_groups.add(t.clone(), tags.pairs());
        Ok(t)
    }
    fn delete_target_group(&self, arn: &str) -> Result<(), CloudError> {
        self.0.op(&["Elastic Load Balancing v2:DeleteTargetGroup"]);
        self.model().target_groups.remove(|t| t.arn == arn);
        Ok(())
    }
    fn listeners(&self, lb_arn: &str) -> Result<Vec<Listener>, CloudError> {
        self.0.op(&["Elastic Load Balancing v2:DescribeListeners"]);
        Ok(self
            .model()
            .listeners
            .iter()
            .filter(|(l, _)| l == lb_arn)
            .map(|(_, l)| l.clone())
            .collect())
    }
    fn create_listener(
        &self,
        lb_arn: &str,
        port: i32,
        certificate_arn: Option<&str>,
        a: &ListenerAction,
        _t: &Tags,
    ) -> Result<Listener, CloudError> {
        self.0.op(&["Elastic Load Balancing v2:CreateListener"]);
        let l = Listener {
            arn: format!("{lb_arn}/listener-{}", self.0.id("l")),
            port: i64::from(port),
            protocol: if certificate_arn.is_some() {
                "HTTPS"
            } else {
                "HTTP"
            }
            .into(),
            default_action: match a {
                ListenerAction::Forward { .. } => "forward",
                ListenerAction::RedirectToHttps => "redirect",
                ListenerAction::Forbidden => "fixed-response",
            }
            .into(),
            default_target: match a {
                ListenerAction::Forward { target_group_arn } => Some(target_group_arn.clone()),
                _ => None,
            },
        };
        self.model().listeners.push((lb_arn.into(), l.clone()));
        Ok(l)
    }
    fn set_default_action(&self, _l: &str, _a: &ListenerAction) -> Result<(), CloudError> {
        self.0.op(&["Elastic Load Balancing v2:ModifyListener"]);
        Ok(())
    }
    fn ensure_header_rule(&self, _l: &str, _r: &HeaderRule, _t: &Tags) -> Result<bool, CloudError> {
        self.0.op(&[
            "Elastic Load Balancing v2:DescribeRules",
            "Elastic Load Balancing v2:CreateRule",
        ]);
        Ok(true)
    }
    fn delete_listener(&self, arn: &str) -> Result<(), CloudError> {
        self.0.op(&["Elastic Load Balancing v2:DeleteListener"]);
        self.model().listeners.retain(|(_, l)| l.arn != arn);
        Ok(())
    }
    fn register(&self, _tg: &str, _i: &str, _p: i32) -> Result<(), CloudError> {
        self.0.op(&["Elastic Load Balancing v2:RegisterTargets"]);
        Ok(())
    }
    fn deregister(&self, _tg: &str, _i: &str) -> Result<(), CloudError> {
        self.0.op(&["Elastic Load Balancing v2:DeregisterTargets"]);
        Ok(())
    }
    fn target_health(&self, _tg: &str, _i: &str) -> Result<Option<(String, String)>, CloudError> {
        self.0
            .op(&["Elastic Load Balancing v2:DescribeTargetHealth"]);
        Ok(Some(("healthy".into(), String::new())))
    }
    fn tagged(&self, key: &str, value: &str) -> Result<Vec<(Kind, String, String)>, CloudError> {
        self.0.op(&[
            "Elastic Load Balancing v2:DescribeLoadBalancers",
            "Elastic Load Balancing v2:DescribeTargetGroups",
            "Elastic Load Balancing v2:DescribeTags",
        ]);
        let want = [(key.to_string(), value.to_string())];
        let m = self.model();
        let lbs = m.load_balancers.tagged(&want, |_| true).into_iter();
        let tgs = m.target_groups.tagged(&want, |_| true).into_iter();
        Ok(lbs
            .map(|l| (Kind::LoadBalancer, l.arn, l.name))
            .chain(tgs.map(|g| (Kind::TargetGroup, g.arn, g.name)))
            .collect())
    }
}

impl CloudFrontApi for PlanApi {
    fn create(
        &self,
        _caller: &str,
        origin: &OriginSpec,
        _comment: &str,
        tags: &Tags,
    ) -> Result<Distribution, CloudError> {
        self.0.op(&["CloudFront:CreateDistributionWithTags"]);
        let id = self.0.id("E").to_uppercase();
        let d = Distribution {
            arn: format!("arn:aws:cloudfront::000000000000:distribution/{id}"),
            domain: format!("{}.cloudfront.net", id.to_lowercase()),
            id,
            status: "Deployed".into(),
            enabled: true,
            origin: origin.domain.clone(),
        };
        self.model().distributions.add(d.clone(), tags.pairs());
        Ok(d)
    }
    fn converge_origin(&self, _id: &str, _origin: &OriginSpec) -> Result<bool, CloudError> {
        self.0.op(&["CloudFront:GetDistributionConfig"]);
        Ok(false)
    }
    fn ensure_function(
        &self,
        name: &str,
        _comment: &str,
        _code: &str,
    ) -> Result<(String, bool), CloudError> {
        self.0.op(&[
            "CloudFront:GetFunction",
            "CloudFront:CreateFunction",
            "CloudFront:DescribeFunction",
            "CloudFront:PublishFunction",
        ]);
        Ok((
            format!("arn:aws:cloudfront::000000000000:function/{name}"),
            true,
        ))
    }
    fn delete_function(&self, _name: &str) -> Result<bool, CloudError> {
        self.0
            .op(&["CloudFront:DescribeFunction", "CloudFront:DeleteFunction"]);
        Ok(true)
    }
    fn get(&self, id: &str) -> Result<Option<Distribution>, CloudError> {
        self.0.op(&["CloudFront:GetDistribution"]);
        Ok(self.model().distributions.find(|d| d.id == id))
    }
    fn list(&self) -> Result<Vec<Distribution>, CloudError> {
        self.0.op(&["CloudFront:ListDistributions"]);
        Ok(self.model().distributions.filter(|_| true))
    }
    fn find_tagged(&self, key: &str, value: &str) -> Result<Vec<Distribution>, CloudError> {
        self.0.op(&[
            "CloudFront:ListDistributions",
            "CloudFront:ListTagsForResource",
        ]);
        let want = [(key.to_string(), value.to_string())];
        Ok(self.model().distributions.tagged(&want, |_| true))
    }
    fn disable(&self, id: &str) -> Result<(), CloudError> {
        self.0.op(&[
            "CloudFront:GetDistributionConfig",
            "CloudFront:UpdateDistribution",
        ]);
        if let Some(d) = self.model().distributions.find_mut(|d| d.id == id) {
            d.enabled = false;
        }
        Ok(())
    }
    fn delete(&self, id: &str) -> Result<(), CloudError> {
        self.0.op(&[
            "CloudFront:GetDistributionConfig",
            "CloudFront:DeleteDistribution",
        ]);
        self.model().distributions.remove(|d| d.id == id);
        Ok(())
    }
}

impl SsmApi for PlanApi {
    fn put_secure(
        &self,
        name: &str,
        _value: &str,
        overwrite: bool,
        _tags: &Tags,
    ) -> Result<(Parameter, bool), CloudError> {
        // Without overwrite, an existing parameter is read instead.
        self.0.op(&["SSM:PutParameter", "SSM:GetParameter"]);
        let mut m = self.model();
        if let Some(p) = m.parameters.get(name) {
            if !overwrite {
                return Ok((p.clone(), false));
            }
        }
        let p = Parameter {
            name: name.into(),
            kind: "SecureString".into(),
            version: 1,
        };
        m.parameters.insert(name.into(), p.clone());
        Ok((p, true))
    }
    fn get(&self, name: &str) -> Result<Option<(Parameter, String)>, CloudError> {
        self.0.op(&["SSM:GetParameter"]);
        Ok(self
            .model()
            .parameters
            .get(name)
            .map(|p| (p.clone(), "generated-at-apply".to_string())))
    }
    fn delete(&self, name: &str) -> Result<(), CloudError> {
        self.0.op(&["SSM:DeleteParameter"]);
        self.model().parameters.remove(name);
        Ok(())
    }
    fn list_by_path(&self, path: &str) -> Result<Vec<Parameter>, CloudError> {
        self.0.op(&["SSM:GetParametersByPath"]);
        Ok(self
            .model()
            .parameters
            .values()
            .filter(|p| p.name.starts_with(path))
            .cloned()
            .collect())
    }
    fn send_command(&self, _i: &str, _c: &[String], _comment: &str) -> Result<String, CloudError> {
        self.0.op(&["SSM:SendCommand"]);
        Ok(self.0.id("cmd"))
    }
    fn command_result(
        &self,
        command_id: &str,
        instance_id: &str,
    ) -> Result<CommandResult, CloudError> {
        self.0.op(&["SSM:GetCommandInvocation"]);
        Ok(CommandResult {
            command_id: command_id.into(),
            instance_id: instance_id.into(),
            status: "Success".into(),
            exit_code: 0,
            stdout: String::new(),
            stderr: String::new(),
        })
    }
}

impl IamApi for PlanApi {
    fn ensure_instance_profile(
        &self,
        name: &str,
        _managed: &[String],
        _inline: (&str, &str),
        _tags: &Tags,
        _look_first: bool,
    ) -> Result<(InstanceProfile, bool), CloudError> {
        self.0.op(&[
            "IAM:GetInstanceProfile",
            "IAM:GetRole",
            "IAM:CreateRole",
            "IAM:AttachRolePolicy",
            "IAM:PutRolePolicy",
            "IAM:CreateInstanceProfile",
            "IAM:AddRoleToInstanceProfile",
        ]);
        let p = InstanceProfile {
            name: name.into(),
            arn: format!("arn:aws:iam::000000000000:instance-profile/{name}"),
            role_name: name.into(),
            role_arn: format!("arn:aws:iam::000000000000:role/{name}"),
        };
        self.model().profiles.push(p.clone());
        Ok((p, true))
    }
    fn find_instance_profile(&self, name: &str) -> Result<Option<InstanceProfile>, CloudError> {
        self.0.op(&["IAM:GetInstanceProfile"]);
        Ok(self
            .model()
            .profiles
            .iter()
            .find(|p| p.name == name)
            .cloned())
    }
    fn role_exists(&self, name: &str) -> Result<bool, CloudError> {
        self.0.op(&["IAM:GetRole"]);
        Ok(self.model().profiles.iter().any(|p| p.role_name == name))
    }
    fn delete_instance_profile(&self, name: &str) -> Result<(), CloudError> {
        self.0.op(&[
            "IAM:GetInstanceProfile",
            "IAM:RemoveRoleFromInstanceProfile",
            "IAM:DeleteInstanceProfile",
            "IAM:ListAttachedRolePolicies",
            "IAM:DetachRolePolicy",
            "IAM:ListRolePolicies",
            "IAM:DeleteRolePolicy",
            "IAM:DeleteRole",
        ]);
        self.model().profiles.retain(|p| p.name != name);
        Ok(())
    }
}

impl PricingApi for PlanApi {
    fn get_products(&self, _filters: &[(&str, &str)]) -> Result<Vec<String>, CloudError> {
        self.0.op(&["Pricing:GetProducts"]);
        Err(CloudError::new(
            "pricing",
            "GetProducts",
            "PlanMode",
            "a plan makes no AWS calls",
        ))
    }
}
