//! `health::` — HTTP, TCP and container checks made from option maps, and waiting until a set
//! of them passes (here), the checks built from option maps (`checks.rs`). The probes
//! themselves are the health engine's (`src/health.rs`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, EvalAltResult, Map};

use super::follow::{BootFollower, Followed};
use super::opts::{decode, keys};
use super::{health_err, id_of, rt, usage_err, OptionKeys, Runtime};
use crate::health::{
    endpoint_overrides, run_checks, with_override, Check, HealthResult, Probe, ENDPOINTS_ENV,
};

mod checks;
use checks::*;
pub use checks::{check_from_map, checks_from_json};

fn overrides() -> Result<HashMap<String, String>, Box<EvalAltResult>> {
    endpoint_overrides(std::env::var(ENDPOINTS_ENV).ok().as_deref()).map_err(usage_err)
}

/// How long a deploy whose services are healthy waits for the boot to report its end.
const BOOT_SETTLE: Duration = Duration::from_secs(120);

/// Once the services answer, the rest of the boot followed to its end (up to [`BOOT_SETTLE`],
/// within the wait's deadline): a failure reported meanwhile is the wait's error; a boot still
/// not finished then is a warning.
fn settle(
    rt: &Runtime,
    f: &mut BootFollower,
    waiting: &crate::ui::Waiting,
    interval: Duration,
    deadline: Instant,
) -> Result<(), Box<EvalAltResult>> {
    let until = (Instant::now() + BOOT_SETTLE).min(deadline);
    loop {
        // Read again first: the report may have come since this round's read.
        if let Some(failed) = f.poll(rt) {
            return Err(failed);
        }
        if f.settled() {
            return Ok(());
        }
        let now = Instant::now();
        if now >= until || crate::interrupt::requested() {
            if let Some(step) = f.unfinished_step() {
                rt.ui.warn(&format!(
                    "the services are healthy, but the boot had not finished (step `{step}`): `geusemaker logs --boot` shows how it ended"
                ));
            }
            return Ok(());
        }
        waiting.update(
            &format!(
                "all healthy · {}",
                f.now().unwrap_or_else(|| "boot finishing".into())
            ),
            until - now,
        );
        std::thread::sleep(interval.min(until - now));
    }
}

fn run_round(rt: &Runtime, checks: &[Check]) -> Vec<HealthResult> {
    if rt.is_plan() {
        // A plan probes nothing: every service counts as answering. The calls a real round
        // makes are recorded all the same (the IAM policy is made from them).
        if let Ok(aws) = rt.aws() {
            let mut asked = std::collections::BTreeSet::new();
            for on in checks.iter().filter_map(|c| c.on.as_deref()) {
                if asked.insert(on) {
                    let _ = aws
                        .ssm
                        .send_command(on, &[], "geusemaker health")
                        .and_then(|id| aws.ssm.command_result(&id, on));
                }
            }
            let posts = checks
                .iter()
                .any(|c| matches!(c.probe, Probe::Http { post: Some(_), .. }));
            if posts {
                let _ = aws.ssm.get(&format!("/geusemaker/{}/", rt.stack));
            }
        }
        return checks
            .iter()
            .map(|c| HealthResult {
                name: c.name.clone(),
                target: c.target(),
                ok: true,
                status: 200,
                latency_ms: 0,
                error: None,
            })
            .collect();
    }
    let needs_aws = checks
        .iter()
        .any(|c| c.on.is_some() || matches!(c.probe, Probe::Http { post: Some(_), .. }));
    let aws = if needs_aws { rt.aws().ok() } else { None };
    run_checks(
        &rt.blocking,
        aws,
        checks,
        Some(&format!("/geusemaker/{}/", rt.stack)),
    )
}

/// `health::wait_until_healthy`'s options.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitHealthyOptions {
    timeout: Option<i64>,
    interval: Option<i64>,
    /// The instance whose boot to follow.
    boot: Option<Dynamic>,
}

pub fn types(engine: &mut Engine) {
    engine.build_type::<HealthResult>();
}

pub fn module() -> rhai::Module {
    exported_module!(api)
}

/// The functions whose options are decoded into a struct (listed in the reference).
pub const OPTIONS: &[OptionKeys] = &[
    OptionKeys {
        function: "http",
        keys: keys::<HttpOptions>,
    },
    OptionKeys {
        function: "tcp",
        keys: keys::<TcpOptions>,
    },
    OptionKeys {
        function: "wait_until_healthy",
        keys: keys::<WaitHealthyOptions>,
    },
];

#[export_module]
pub mod api {
    /// GET `url` and check the status (200 unless `status`) and, with `body`, that the body
    /// contains that text (or each text of a list). Options: `status`, `body`, `timeout_ms`
    /// (5000), `name`, `on` (an instance: run the check there, through SSM, e.g. against
    /// `http://127.0.0.1:…`), `post` (a map sent as JSON instead of a GET, from here only;
    /// `#{ secret: "/geusemaker/<stack>/…" }` inside it is replaced by that stack parameter's
    /// value when the check runs, and redirects are not followed).
    ///
    /// ```rhai
    /// let r = health::http("http://10.0.0.5:5678/healthz", #{ timeout_ms: 5000 });
    /// if r.ok { ui::success(`n8n answers in ${r.latency_ms} ms`); }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn http(
        ctx: NativeCallContext,
        url: &str,
        options: Map,
    ) -> Result<HealthResult, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let check = http_check(
            "health::http",
            url,
            decode::<HttpOptions>("health::http", options)?.into(),
        )?;
        let check = with_override(check, &overrides()?);
        Ok(run_round(&rt, &[check]).remove(0))
    }

    /// Open a TCP connection to `host:port`. Options: `timeout_ms` (3000), `name`, `on`.
    ///
    /// ```rhai
    /// let r = health::tcp("10.0.0.5", 5432, #{ name: "postgres" });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn tcp(
        ctx: NativeCallContext,
        host: &str,
        port: i64,
        options: Map,
    ) -> Result<HealthResult, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let check = tcp_check(
            "health::tcp",
            format!("{host}:{port}"),
            decode::<TcpOptions>("health::tcp", options)?.into(),
        )?;
        let check = with_override(check, &overrides()?);
        Ok(run_round(&rt, &[check]).remove(0))
    }

    /// Run all `checks` (maps: `#{ name, url, status, body, timeout_ms, on }` or
    /// `#{ name, tcp: "host:port", timeout_ms, on }`) every `interval` seconds (5) until every
    /// one passes or `timeout` seconds (600) have passed; returns the final results. The error
    /// on timeout names each failing check and its last error. Checks whose `name` appears in
    /// `GEUSEMAKER_HEALTH_ENDPOINTS` go to the address given there.
    ///
    /// With `boot: vm` (an instance launched by this run with a reporting boot script,
    /// `userdata::script(…, #{ report: true })`) the wait follows the instance's boot channel:
    /// each boot step is shown with its time as it passes, a failed step ends the wait at once
    /// with the step and the last lines of the boot log, and the boot's timeline is kept in the
    /// stack's state (`boot`, shown by `status`).
    ///
    /// ```rhai
    /// let results = health::wait_until_healthy([
    ///     #{ name: "n8n", url: `http://${vm.public_ip}:5678/healthz` },
    ///     #{ name: "postgres", tcp: "127.0.0.1:5432", on: vm },
    /// ], #{ timeout: 600, boot: vm });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn wait_until_healthy(
        ctx: NativeCallContext,
        checks: Array,
        options: Map,
    ) -> Result<Array, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let o: WaitHealthyOptions = decode("health::wait_until_healthy", options)?;
        let timeout = Duration::from_secs(o.timeout.unwrap_or(600).max(1) as u64);
        let interval = Duration::from_secs(o.interval.unwrap_or(5).max(1) as u64);
        // Only an instance this run launched has a boot of this run to follow (a report that
        // claims this run's id for any other is not believed).
        let boot = match o.boot {
            Some(vm) => Some(id_of(&vm, "an instance")?),
            None => None,
        };
        let boot = match boot {
            Some(id) if rt.is_plan() || rt.created_this_run(&id)? => Some(id),
            _ => None,
        };
        let mut follow = boot.map(|instance| BootFollower::new(&rt, instance, Followed::Boot));
        let ov = overrides()?;
        let checks = checks
            .into_iter()
            .map(|c| {
                c.try_cast::<Map>()
                    .ok_or_else(|| usage_err("health::wait_until_healthy: each check is a map"))
                    .and_then(check_from_map)
            })
            .map(|c| c.map(|c| with_override(c, &ov)))
            .collect::<Result<Vec<_>, _>>()?;
        if checks.is_empty() {
            return Err(usage_err("health::wait_until_healthy: no checks given"));
        }
        let waiting = rt.ui.wait(&format!("{} services healthy", checks.len()));
        let deadline = Instant::now() + timeout;
        loop {
            if crate::interrupt::requested() {
                rt.add_wait(waiting.failed());
                return Err(usage_err("interrupted by Ctrl-C"));
            }
            let round = Instant::now();
            if let Some(f) = follow.as_mut() {
                if let Some(failed) = f.poll(&rt) {
                    rt.add_wait(waiting.failed());
                    f.keep(&rt);
                    return Err(failed);
                }
            }
            let results = run_round(&rt, &checks);
            let failing: Vec<&HealthResult> = results.iter().filter(|r| !r.ok).collect();
            if failing.is_empty() {
                if let Some(f) = follow.as_mut() {
                    // The boot's last steps (backups, snapshots) run after the services
                    // answer: a failure there is this deploy's too.
                    if let Err(failed) = settle(&rt, f, &waiting, interval, deadline) {
                        rt.add_wait(waiting.failed());
                        f.keep(&rt);
                        return Err(failed);
                    }
                    f.keep(&rt);
                }
                rt.add_wait(waiting.done("all healthy"));
                return Ok(results.into_iter().map(Dynamic::from).collect());
            }
            let now = Instant::now();
            if now >= deadline {
                rt.add_wait(waiting.failed());
                if let Some(f) = follow.as_mut() {
                    f.keep(&rt);
                }
                let detail = failing
                    .iter()
                    .map(|r| {
                        format!(
                            "{} ({}): {}",
                            r.name,
                            r.target,
                            r.error.as_deref().unwrap_or("failing")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(health_err(
                    format!("not healthy after {}s: {detail}", timeout.as_secs()),
                    "check the instance's boot log (/var/log/geusemaker-boot.log) and `docker compose ps` via SSM; the run can be repeated",
                ));
            }
            let names: Vec<&str> = failing.iter().map(|r| r.name.as_str()).collect();
            let boot = follow
                .as_ref()
                .and_then(BootFollower::now)
                .map(|n| format!(" · {n}"))
                .unwrap_or_default();
            waiting.update(
                &format!(
                    "{}/{} healthy, waiting for {}{boot}",
                    results.len() - failing.len(),
                    results.len(),
                    names.join(", ")
                ),
                deadline - now,
            );
            std::thread::sleep(interval.saturating_sub(round.elapsed()).min(deadline - now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{
        parse_remote, remote_script, resolve_posts, with_secrets, CONTAINER_HEALTHY,
    };

    #[test]
    fn container_health_is_read_from_docker_and_stood_in_by_its_json() {
        let c = check_from_map(rhai::Map::from_iter([
            ("name".into(), "postgres".into()),
            ("container_health".into(), true.into()),
            ("on".into(), "i-1".into()),
        ]))
        .unwrap();
        assert_eq!(
            c.probe,
            Probe::Container {
                service: "postgres".into()
            }
        );
        let script = remote_script(std::slice::from_ref(&c));
        assert!(script[1].contains("ps -q 'postgres'"), "{}", script[1]);
        assert!(script[1].contains("docker inspect --format '{{json .State.Health}}'"));
        assert!(script[1].contains(CONTAINER_HEALTHY));
        let r = parse_remote("GMCHECK 0 0 30 fail\n", std::slice::from_ref(&c));
        assert!(r[0].error.as_deref().unwrap().contains("not healthy"));
        // A stand-in answers Docker's JSON: "unhealthy" must not pass for "healthy".
        let o = endpoint_overrides(Some("postgres=127.0.0.1:4001")).unwrap();
        let Probe::Http { body, .. } = with_override(c, &o).probe else {
            panic!("redirected to HTTP");
        };
        assert!(!"{\"Status\":\"unhealthy\"}".contains(body[0].as_str()));
        assert!("{\"Status\":\"healthy\"}".contains(body[0].as_str()));
    }

    #[test]
    fn post_checks_read_their_secrets_at_check_time_and_never_run_remotely() {
        let json = serde_json::json!({
            "emailOrLdapLoginId": "ops@example.com",
            "password": { "secret": "/geusemaker/s/n8n/owner_password" },
        });
        let read = |name: &str| -> Result<String, String> {
            assert_eq!(name, "/geusemaker/s/n8n/owner_password");
            Ok("Gm1-value".into())
        };
        assert_eq!(
            with_secrets(&json, &read).unwrap(),
            serde_json::json!({ "emailOrLdapLoginId": "ops@example.com", "password": "Gm1-value" })
        );
        let missing = |_: &str| -> Result<String, String> { Err("secret x does not exist".into()) };
        assert!(with_secrets(&json, &missing).is_err());
        let remote = check_from_map(rhai::Map::from_iter([
            ("url".into(), "http://127.0.0.1:5678/rest/login".into()),
            ("post".into(), rhai::Dynamic::from_map(rhai::Map::new())),
            ("on".into(), "i-1".into()),
        ]));
        assert!(
            remote.is_err(),
            "a POST with secrets never travels in an SSM command"
        );
        let many = check_from_map(rhai::Map::from_iter([
            ("url".into(), "http://127.0.0.1:11434/api/tags".into()),
            (
                "body".into(),
                rhai::Dynamic::from_array(vec!["llama3.2:3b".into(), "nomic-embed-text".into()]),
            ),
            ("on".into(), "i-1".into()),
        ]))
        .unwrap();
        let script = remote_script(&[many]);
        assert!(
            script[1].contains("grep -qF -- 'llama3.2:3b'")
                && script[1].contains("grep -qF -- 'nomic-embed-text'"),
            "every model must be listed: {}",
            script[1]
        );
    }

    #[test]
    fn a_post_check_reads_only_its_own_stacks_parameters_and_is_never_stored() {
        let mut m = rhai::Map::new();
        m.insert("url".into(), "http://127.0.0.1:9/rest/login".into());
        let mut post = rhai::Map::new();
        let mut secret = rhai::Map::new();
        secret.insert(
            "secret".into(),
            "/geusemaker/other/n8n/owner_password".into(),
        );
        post.insert("password".into(), rhai::Dynamic::from_map(secret));
        m.insert("post".into(), rhai::Dynamic::from_map(post));
        let check = check_from_map(m).unwrap();
        let resolved = resolve_posts(None, Some("/geusemaker/mine/"), vec![check.clone()]);
        let failed = resolved.into_iter().next().unwrap().unwrap_err();
        assert!(
            failed.error.unwrap().contains("not one of this stack's"),
            "another stack's secret is refused before AWS is asked"
        );
        let outside_a_run = resolve_posts(None, None, vec![check]);
        assert!(outside_a_run[0].is_err());
        let stored = serde_json::json!([{ "url": "http://127.0.0.1:9/", "post": {} }]);
        assert!(checks_from_json(&stored)
            .unwrap_err()
            .contains("deploy only"));
    }
}
