//! The recording backend behind `run --plan`: every service interface answered from memory,
//! with no network and no credentials. Each call records the AWS operations the SDK
//! implementation would make (the list `geusemaker policy` turns into IAM actions); created
//! resources get ids marked "known after apply" and are found again by later calls, so a recipe
//! runs end to end exactly as it would for a first deploy.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::cloudfront::Distribution;
use super::ec2::{Instance, KeyPair, SecurityGroup, Volume};
use super::efs::{FileSystem, MountTarget};
use super::elb::{Listener, LoadBalancer, TargetGroup};
use super::iam::InstanceProfile;
use super::ssm::Parameter;
use super::{Aws, CallStats, CloudError, Identity};

/// Marks ids that exist only after a real run.
pub const PLANNED: &str = "planned";

/// Is `id` one the plan made up?
pub fn is_planned(id: &str) -> bool {
    id.to_ascii_lowercase().contains(PLANNED)
}

/// Planned resources of one type, each with the tags it was created with: the model's one
/// store, for every type.
struct Tagged<T>(Vec<(T, Vec<(String, String)>)>);

impl<T> Default for Tagged<T> {
    fn default() -> Self {
        Tagged(Vec::new())
    }
}

impl<T: Clone> Tagged<T> {
    /// Record `item`, created with `tags`.
    fn add(&mut self, item: T, tags: Vec<(String, String)>) {
        self.0.push((item, tags));
    }

    /// The first item `pred` accepts.
    fn find(&self, pred: impl Fn(&T) -> bool) -> Option<T> {
        self.0.iter().map(|(x, _)| x).find(|x| pred(x)).cloned()
    }

    fn find_mut(&mut self, pred: impl Fn(&T) -> bool) -> Option<&mut T> {
        self.0.iter_mut().map(|(x, _)| x).find(|x| pred(x))
    }

    /// The first item `pred` accepts, with its tags.
    fn find_tagged_mut(
        &mut self,
        pred: impl Fn(&T) -> bool,
    ) -> Option<(&mut T, &mut Vec<(String, String)>)> {
        self.0
            .iter_mut()
            .find(|(x, _)| pred(x))
            .map(|(x, t)| (x, t))
    }

    /// Every item `pred` accepts.
    fn filter(&self, pred: impl Fn(&T) -> bool) -> Vec<T> {
        self.0
            .iter()
            .map(|(x, _)| x)
            .filter(|x| pred(x))
            .cloned()
            .collect()
    }

    /// The items carrying all the `want` tags that `pred` accepts.
    fn tagged(&self, want: &[(String, String)], pred: impl Fn(&T) -> bool) -> Vec<T> {
        self.0
            .iter()
            .filter(|(x, t)| has_tags(t, want) && pred(x))
            .map(|(x, _)| x.clone())
            .collect()
    }

    fn remove(&mut self, pred: impl Fn(&T) -> bool) {
        self.0.retain(|(x, _)| !pred(x));
    }
}

#[derive(Default)]
struct Model {
    instances: Tagged<Instance>,
    groups: Tagged<SecurityGroup>,
    key_pairs: Tagged<KeyPair>,
    volumes: Tagged<Volume>,
    file_systems: Tagged<FileSystem>,
    mount_targets: Vec<MountTarget>,
    load_balancers: Tagged<LoadBalancer>,
    target_groups: Tagged<TargetGroup>,
    listeners: Vec<(String, Listener)>,
    distributions: Tagged<Distribution>,
    parameters: BTreeMap<String, Parameter>,
    profiles: Vec<InstanceProfile>,
}

/// What a plan did: the operations, in order, and the model of what it created.
pub struct Recorder {
    region: String,
    calls: Mutex<Vec<String>>,
    /// The user data of each instance launched: (name, script).
    user_data: Mutex<Vec<(String, String)>>,
    next: Mutex<u32>,
    model: Mutex<Model>,
}

fn has_tags(have: &[(String, String)], want: &[(String, String)]) -> bool {
    want.iter().all(|w| have.contains(w))
}

fn not_found(service: &'static str, op: &str, code: &str, what: &str) -> CloudError {
    CloudError::new(service, op, code, format!("{what} does not exist"))
}

impl Recorder {
    pub fn new(region: &str) -> Arc<Recorder> {
        Arc::new(Recorder {
            region: region.to_string(),
            calls: Mutex::new(Vec::new()),
            user_data: Mutex::new(Vec::new()),
            next: Mutex::new(0),
            model: Mutex::new(Model::default()),
        })
    }

    /// The operations recorded so far (`EC2:RunInstances`, …), in call order.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    /// The user data of every instance the plan launched, as `(name, script)`.
    pub fn user_data(&self) -> Vec<(String, String)> {
        self.user_data.lock().unwrap().clone()
    }

    /// Operation → count.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        for c in self.calls() {
            *m.entry(c).or_default() += 1;
        }
        m
    }

    fn op(&self, ops: &[&str]) {
        self.calls
            .lock()
            .unwrap()
            .extend(ops.iter().map(|s| s.to_string()));
    }

    fn id(&self, prefix: &str) -> String {
        let mut n = self.next.lock().unwrap();
        *n += 1;
        format!("{prefix}-{PLANNED}{:04}", *n)
    }

    fn az(&self, i: usize) -> String {
        format!("{}{}", self.region, ["a", "b", "c"][i % 3])
    }

    /// The AWS clients of a plan: every service answered by this recorder.
    pub fn aws(self: &Arc<Self>) -> Aws {
        Aws {
            region: self.region.clone(),
            identity: Identity {
                account: "123456789012".into(),
                arn: "arn:aws:iam::123456789012:user/plan".into(),
            },
            ec2: Arc::new(PlanApi(self.clone())),
            efs: Arc::new(PlanApi(self.clone())),
            elb: Arc::new(PlanApi(self.clone())),
            cloudfront: Arc::new(PlanApi(self.clone())),
            ssm: Arc::new(PlanApi(self.clone())),
            iam: Arc::new(PlanApi(self.clone())),
            pricing: Arc::new(PlanApi(self.clone())),
            stats: Arc::new(CallStats::default()),
        }
    }
}

/// One handle type implements every service interface over the shared recorder.
struct PlanApi(Arc<Recorder>);

impl PlanApi {
    fn model(&self) -> std::sync::MutexGuard<'_, Model> {
        self.0.model.lock().unwrap()
    }

    /// Move a planned instance to `state`; returns the state it had.
    fn set_state(&self, id: &str, state: &str) -> Result<String, CloudError> {
        let mut m = self.model();
        Ok(match m.instances.find_mut(|i| i.id == id) {
            Some(i) => std::mem::replace(&mut i.state, state.into()),
            None => state.into(),
        })
    }
}

mod ec2;
mod services;
