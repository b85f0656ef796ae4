//! Which workload a caller is: containers and pods from cgroup paths named exactly like real
//! runtimes name them, notebook and job context from an allow-list of environment variables
//! (captured in the kernel at connect time), and the process's ancestors.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]

use imds_agent_e2e::client::run_client_env;
use imds_agent_e2e::events::{
    assert_fields, assert_null, assert_str, only_event, pretty, str_of,
};
use imds_agent_e2e::{Fixture, NestedCgroup, env, imds_url};
use serde_json::{Value, json};

const INSTANCE_ID_PATH: &str = "/latest/meta-data/instance-id";
const INSTANCE_ID: &str = "i-0123456789abcdef0";
const REDACTED: &str = "[REDACTED]";

/// A Kubernetes pod UID (`8-4-4-4-12` hex).
fn pod_uid() -> String {
    let h = env::random_hex(16);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// The `workload` string must exist, and mention at least one of `names`.
#[track_caller]
fn assert_workload_mentions(event: &Value, names: &[&str]) {
    assert_str(
        event,
        "workload",
        &format!("a description mentioning one of {names:?}"),
        |w| names.iter().any(|n| w.contains(n)),
    );
}

/// How a runtime names one container's cgroup, and what the agent must make of it.
struct ContainerCase {
    /// Below the test cgroup.
    relative: String,
    container_id: String,
    runtime: &'static str,
    /// Dashed, as Kubernetes shows it.
    pod_uid: Option<String>,
    qos_class: Option<&'static str>,
}

/// A tokenless curl inside the container's cgroup; the event must name the container (and
/// the pod).
fn container_case(case: &ContainerCase) {
    let Some(fx) = Fixture::start() else { return };
    let container = NestedCgroup::create(&fx.cgroup, &case.relative)
        .unwrap_or_else(|e| panic!("creating the container cgroup: {e:#}"));
    let url = imds_url(INSTANCE_ID_PATH);
    let run = run_client_env(
        &fx.netns.path(),
        container.path(),
        &["curl", "-s", url.as_str()],
        &[],
    )
    .unwrap();
    run.assert_success();
    assert_eq!(run.stdout, INSTANCE_ID);
    fx.agent.wait_for_pid(run.pid, 1);
    let cgroup_path = container.relative().to_owned();
    drop(container);
    let out = fx.stop();

    let event = only_event(&out.events, run.pid);
    assert_fields(
        &event,
        &[
            ("imds.version", json!("v1")),
            ("cgroup.path", json!(cgroup_path)),
            ("container.id", json!(case.container_id)),
            ("container.runtime", json!(case.runtime)),
        ],
    );
    match &case.pod_uid {
        Some(uid) => {
            assert_fields(
                &event,
                &[
                    ("k8s.pod.uid", json!(uid)),
                    ("k8s.pod.qos_class", json!(case.qos_class)),
                ],
            );
            assert_workload_mentions(&event, &[uid, &case.container_id[..12]]);
        }
        None => {
            assert_null(&event, "k8s.pod.uid");
            assert_null(&event, "k8s.pod.qos_class");
            assert_workload_mentions(&event, &[&case.container_id[..12]]);
        }
    }
}

#[test]
fn containerd_pod_with_the_systemd_cgroup_driver() {
    let (uid, id) = (pod_uid(), env::random_hex(32));
    container_case(&ContainerCase {
        relative: format!(
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{id}.scope",
            uid.replace('-', "_")
        ),
        container_id: id,
        runtime: "containerd",
        pod_uid: Some(uid),
        qos_class: Some("Burstable"),
    });
}

#[test]
fn crio_pod_with_the_systemd_cgroup_driver() {
    let (uid, id) = (pod_uid(), env::random_hex(32));
    container_case(&ContainerCase {
        relative: format!(
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/crio-{id}.scope",
            uid.replace('-', "_")
        ),
        container_id: id,
        runtime: "cri-o",
        pod_uid: Some(uid),
        qos_class: Some("Burstable"),
    });
}

#[test]
fn docker_container_with_the_systemd_cgroup_driver() {
    let id = env::random_hex(32);
    container_case(&ContainerCase {
        relative: format!("system.slice/docker-{id}.scope"),
        container_id: id,
        runtime: "docker",
        pod_uid: None,
        qos_class: None,
    });
}

#[test]
fn besteffort_pod_with_the_cgroupfs_driver() {
    let (uid, id) = (pod_uid(), env::random_hex(32));
    container_case(&ContainerCase {
        relative: format!("kubepods/besteffort/pod{uid}/{id}"),
        container_id: id,
        runtime: "unknown",
        pod_uid: Some(uid),
        qos_class: Some("BestEffort"),
    });
}

#[test]
fn host_process_is_no_container() {
    let Some(fx) = Fixture::start() else { return };
    let url = imds_url(INSTANCE_ID_PATH);
    let run = run_client_env(
        &fx.netns.path(),
        fx.cgroup.path(),
        &["curl", "-s", url.as_str()],
        &[],
    )
    .unwrap();
    run.assert_success();
    fx.agent.wait_for_pid(run.pid, 1);
    let out = fx.stop();

    let event = only_event(&out.events, run.pid);
    assert_str(&event, "workload", "a non-empty description", |w| {
        !w.trim().is_empty()
    });
    for key in [
        "container.id",
        "container.runtime",
        "k8s.pod.uid",
        "k8s.pod.qos_class",
    ] {
        assert_null(&event, key);
    }
}

const KERNEL_ID: &str = "1a2b3c4d-0000-1111-2222-333344445555";
const NOTEBOOK: &str = "/home/u/analysis/etl.ipynb";
const SECRET_CANARY: &str = "hunter2-canary";

#[test]
fn jupyter_kernel_is_named_by_its_notebook_and_other_env_stays_out() {
    let Some(fx) = Fixture::start() else { return };
    let python = env::python3().unwrap();
    let script = env::client_script("jupyter_kernel.py");
    let connection_file = format!("/root/.local/share/jupyter/runtime/kernel-{KERNEL_ID}.json");
    let run = run_client_env(
        &fx.netns.path(),
        fx.cgroup.path(),
        &[
            python.as_os_str(),
            script.as_os_str(),
            "-f".as_ref(),
            connection_file.as_ref(),
        ],
        &[
            ("JPY_SESSION_NAME", NOTEBOOK),
            ("SECRET_DB_PASSWORD", SECRET_CANARY),
        ],
    )
    .unwrap();
    run.assert_success();
    assert_eq!(run.stdout.trim(), INSTANCE_ID);
    fx.agent.wait_for_pid(run.pid, 1);
    let out = fx.stop();

    let event = only_event(&out.events, run.pid);
    assert_fields(
        &event,
        &[
            ("imds.version", json!("v1")),
            ("jupyter.session.name", json!(NOTEBOOK)),
            ("jupyter.kernel.id", json!(KERNEL_ID)),
        ],
    );
    assert_workload_mentions(&event, &["etl.ipynb"]);
    assert!(
        !out.all_text().contains(SECRET_CANARY),
        "an environment variable outside the allow-list leaked; output file, stdout and stderr:\n{}",
        out.all_text()
    );
}

#[test]
fn job_environment_is_reported_from_the_allow_list() {
    let Some(fx) = Fixture::start() else { return };
    let env_vars = [
        ("DB_CLUSTER_ID", "0123-456789-e2etest1"),
        ("DB_CLUSTER_NAME", "etl-nightly"),
        ("DATABRICKS_RUNTIME_VERSION", "14.3"),
        ("AWS_BATCH_JOB_ID", "4f4c7a42-7d5e-4e2b-9d0a-2c8e6a1b3c5d"),
        (
            "ECS_CONTAINER_METADATA_URI_V4",
            "http://169.254.170.2/v4/e2e-task-container",
        ),
        ("AIRFLOW_CTX_DAG_ID", "daily_sales"),
        ("AIRFLOW_CTX_TASK_ID", "extract_orders"),
        ("AWS_EC2_METADATA_V1_DISABLED", "true"),
        ("SECRET_DB_PASSWORD", SECRET_CANARY),
        ("UNLISTED_VARIABLE", "unlisted-canary"),
    ];
    // curl exits right after its request: the values must come from connect time.
    let url = imds_url(INSTANCE_ID_PATH);
    let run = run_client_env(
        &fx.netns.path(),
        fx.cgroup.path(),
        &["curl", "-s", url.as_str()],
        &env_vars,
    )
    .unwrap();
    run.assert_success();
    fx.agent.wait_for_pid(run.pid, 1);
    let out = fx.stop();

    let event = only_event(&out.events, run.pid);
    assert_fields(
        &event,
        &[
            ("databricks.cluster.id", json!("0123-456789-e2etest1")),
            ("databricks.cluster.name", json!("etl-nightly")),
            ("databricks.runtime.version", json!("14.3")),
            (
                "aws.batch.job.id",
                json!("4f4c7a42-7d5e-4e2b-9d0a-2c8e6a1b3c5d"),
            ),
            (
                "aws.ecs.container.metadata_uri",
                json!("http://169.254.170.2/v4/e2e-task-container"),
            ),
            ("airflow.dag.id", json!("daily_sales")),
            ("airflow.task.id", json!("extract_orders")),
            ("aws.ec2_metadata_v1_disabled", json!("true")),
        ],
    );
    assert_null(&event, "jupyter.session.name");
    assert_null(&event, "jupyter.kernel.id");
    assert_workload_mentions(&event, &["etl-nightly", "daily_sales"]);
    for canary in [SECRET_CANARY, "unlisted-canary", "UNLISTED_VARIABLE"] {
        assert!(
            !out.all_text().contains(canary),
            "{canary:?} is outside the allow-list but was reported; output file, stdout and stderr:\n{}",
            out.all_text()
        );
    }
}

#[test]
fn process_ancestors_are_listed_parent_first_and_redacted() {
    let Some(fx) = Fixture::start() else { return };
    let canary = format!("anc-canary-{}", env::random_hex(8));
    let url = imds_url("/latest/meta-data/");
    // `; echo` after each command keeps bash and sh from exec'ing their last command, so
    // the tree really is test → bash → sh → curl. Each shell gets the secret as an argument.
    // Ancestors' command lines come from /proc (no program can read another process's
    // memory at connect time), so sh lingers a moment as real parents (a shell, cron,
    // jupyter-server) do; one that is already gone is reported with a null command line.
    let sh_script = format!("echo sh=$$; curl -s {url}; sleep 1; echo");
    let bash_script = format!("echo bash=$$; sh -c '{sh_script}' sh \"$1\"; echo");
    let secret_arg = format!("--password={canary}");
    let run = run_client_env(
        &fx.netns.path(),
        fx.cgroup.path(),
        &[
            "bash",
            "-c",
            bash_script.as_str(),
            "bash",
            secret_arg.as_str(),
        ],
        &[],
    )
    .unwrap();
    run.assert_success();
    let pid_of = |shell: &str| -> u64 {
        run.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{shell}=")))
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {shell}=PID line in {:?}", run.stdout))
    };
    let (bash_pid, sh_pid) = (pid_of("bash"), pid_of("sh"));
    assert_eq!(bash_pid, u64::from(run.pid));
    fx.agent
        .wait_for_events(1, |e| e["process.parent_pid"] == json!(sh_pid));
    let out = fx.stop();

    let mine: Vec<&Value> = out
        .events
        .iter()
        .filter(|e| e["process.parent_pid"] == json!(sh_pid))
        .collect();
    assert_eq!(
        mine.len(),
        1,
        "one event from curl, child of sh {sh_pid}:\n{}",
        pretty(&out.events)
    );
    let event = mine[0];
    assert_eq!(str_of(event, "process.executable.name"), Some("curl"));
    let ancestors = event["process.ancestors"].as_array().unwrap_or_else(|| {
        panic!(
            "process.ancestors must be an array:\n{}",
            pretty(std::slice::from_ref(event))
        )
    });
    assert!(
        ancestors.len() >= 2,
        "at least sh and bash:\n{}",
        pretty(std::slice::from_ref(event))
    );
    let (sh, bash) = (&ancestors[0], &ancestors[1]);
    assert_eq!(sh["pid"], json!(sh_pid), "ancestors[0] is sh: {sh}");
    assert!(
        matches!(sh["executable.name"].as_str(), Some("sh" | "dash")),
        "ancestors[0] is sh: {sh}"
    );
    assert_eq!(bash["pid"], json!(bash_pid), "ancestors[1] is bash: {bash}");
    assert_eq!(
        bash["executable.name"],
        json!("bash"),
        "ancestors[1]: {bash}"
    );
    if let Some(grandparent) = ancestors.get(2) {
        assert_eq!(
            grandparent["pid"],
            json!(std::process::id()),
            "ancestors[2] is the test process that started bash: {grandparent}"
        );
    }
    for ancestor in [sh, bash] {
        let line = ancestor["command_line"].as_str().unwrap_or_else(|| {
            panic!("command_line must be a string: {ancestor}");
        });
        assert!(
            line.contains(&format!("--password={REDACTED}")),
            "the secret argument must be redacted: {line:?}"
        );
    }
    assert!(
        bash["command_line"]
            .as_str()
            .is_some_and(|l| l.starts_with("bash -c ")),
        "{bash}"
    );
    assert!(
        !out.all_text().contains(&canary),
        "the canary {canary} leaked; output file, stdout and stderr:\n{}",
        out.all_text()
    );
}

#[test]
fn environment_is_captured_at_connect_time_not_read_later() {
    let Some(fx) = Fixture::start() else { return };
    let python = env::python3().unwrap();
    let script = env::client_script("env_rewrite.py");
    // The client rewrites DB_CLUSTER_NAME in its own environment block right after connecting,
    // before sending its request, and stays alive after the answer.
    let run = run_client_env(
        &fx.netns.path(),
        fx.cgroup.path(),
        &[python.as_os_str(), script.as_os_str()],
        &[("DB_CLUSTER_NAME", "at-connect-time")],
    )
    .unwrap();
    run.assert_success();
    assert_eq!(run.stdout.trim(), "rewritten 200");
    fx.agent.wait_for_pid(run.pid, 1);
    let out = fx.stop();

    let event = only_event(&out.events, run.pid);
    assert_fields(
        &event,
        &[
            ("imds.version", json!("v1")),
            ("databricks.cluster.name", json!("at-connect-time")),
        ],
    );
}
