//! Kubernetes pod metadata from the API server: the agent started with `--kubeconfig` and
//! `--kube-node` watches the pods of its node through a fake API server
//! (`tests/fake_kube_api.py`) and names the pod, container, image and owner chain (Job →
//! CronJob) of a caller whose cgroup is named like a kubelet + containerd pod's.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use imds_agent_e2e::agent::AgentOptions;
use imds_agent_e2e::child::{Collector, terminate};
use imds_agent_e2e::client::run_client_env;
use imds_agent_e2e::events::{assert_fields, assert_str, for_pid, pretty};
use imds_agent_e2e::{Agent, Fixture, MockOptions, NestedCgroup, NetNs, TestCgroup, env, imds_url};
use serde_json::{Value, json};

const NODE: &str = "e2e-node";
const NAMESPACE: &str = "batch";
const POD_NAME: &str = "nightly-export-29000000-abcde";
const POD_UID: &str = "6f1c2d3e-4b5a-4978-8a6b-1c2d3e4f5a6b";
const JOB: &str = "nightly-export-29000000";
const JOB_UID: &str = "0a1b2c3d-0000-4000-8000-000000000001";
const CRONJOB: &str = "nightly-export";
const CRONJOB_UID: &str = "0a1b2c3d-0000-4000-8000-000000000002";
const CONTAINER: &str = "export";
const IMAGE: &str = "registry.example/export:1.2";
const INSTANCE_ID_PATH: &str = "/latest/meta-data/instance-id";

/// What the fake prints once it listens.
const FAKE_READY: &str = "fake-kube-api ready port=";
/// What the agent logs once the first list of the node's pods arrived.
const SYNCED_LINE: &str = "Kubernetes pod cache synced:";
const FAKE_READY_TIMEOUT: Duration = Duration::from_secs(10);
const SYNC_TIMEOUT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(50);

/// `tests/fake_kube_api.py`, running on a loopback port of the host's network namespace
/// (where the agent runs). Drop stops it.
struct FakeKubeApi {
    child: Option<Child>,
    stdout: Option<Collector>,
    stderr: Option<Collector>,
    port: u16,
    /// Holds the objects file and the kubeconfig.
    dir: tempfile::TempDir,
}

impl FakeKubeApi {
    /// Serves `objects` (`{"pods": [...], "objects": [...]}`) for pods of `node`.
    fn start(node: &str, objects: &Value) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(env::NAME_PREFIX)
            .tempdir()?;
        let file = dir.path().join("objects.json");
        std::fs::write(&file, serde_json::to_vec_pretty(objects)?)?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fake_kube_api.py");
        let mut child = Command::new(env::python3()?)
            .arg(&script)
            .args(["--node", node, "--port", "0", "--objects"])
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().map(|pipe| {
            Collector::spawn(pipe, move |line| {
                if let Some(port) = line.strip_prefix(FAKE_READY) {
                    let _ = tx.send(port.trim().to_owned());
                }
            })
        });
        let stderr = child
            .stderr
            .take()
            .map(|pipe| Collector::spawn(pipe, |_| {}));
        let mut fake = Self {
            child: Some(child),
            stdout,
            stderr,
            port: 0,
            dir,
        };
        match rx.recv_timeout(FAKE_READY_TIMEOUT) {
            Ok(port) => {
                fake.port = port.parse()?;
                Ok(fake)
            }
            Err(_) => anyhow::bail!(
                "{} did not print {FAKE_READY:?} within {FAKE_READY_TIMEOUT:?}; stderr:\n{}",
                script.display(),
                fake.stderr_text()
            ),
        }
    }

    /// Its request log so far (one `request GET <target> accept=<..> -> <status>` line per
    /// request, `VIOLATION <target>` for pod requests without the node selector).
    fn log(&self) -> String {
        self.stdout
            .as_ref()
            .map(Collector::text)
            .unwrap_or_default()
    }

    fn stderr_text(&self) -> String {
        self.stderr
            .as_ref()
            .map(Collector::text)
            .unwrap_or_default()
    }

    /// A kubeconfig for this server: plain HTTP, a user without credentials, current context
    /// set.
    fn write_kubeconfig(&self) -> anyhow::Result<PathBuf> {
        let config = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{
                "name": "e2e",
                "cluster": {"server": format!("http://127.0.0.1:{}", self.port)},
            }],
            "users": [{"name": "anonymous", "user": {}}],
            "contexts": [{
                "name": "e2e",
                "context": {"cluster": "e2e", "user": "anonymous"},
            }],
            "current-context": "e2e",
            "preferences": {},
        });
        let path = self.dir.path().join("kubeconfig");
        std::fs::write(&path, serde_json::to_vec_pretty(&config)?)?;
        Ok(path)
    }

    /// Fails the test if any pod request lacked the node's field selector.
    #[track_caller]
    fn assert_clean(&self) {
        let log = self.log();
        let violations: Vec<&str> = log.lines().filter(|l| l.starts_with("VIOLATION")).collect();
        assert!(
            violations.is_empty(),
            "pod requests without the node selector spec.nodeName={NODE}: {violations:?}\n\
             fake API log:\n{log}"
        );
    }
}

impl Drop for FakeKubeApi {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = terminate(&mut child, Duration::from_secs(2));
        }
    }
}

/// Poll until `done()` holds, or panic with `what` and `context()`.
#[track_caller]
fn wait_for(what: &str, timeout: Duration, done: impl Fn() -> bool, context: impl Fn() -> String) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}\n{}",
            context()
        );
        std::thread::sleep(POLL);
    }
}

/// The pod, its Job and the Job's CronJob, as the API server serves them.
fn cluster(container_id: &str) -> Value {
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": POD_NAME,
            "namespace": NAMESPACE,
            "uid": POD_UID,
            "resourceVersion": "90",
            "creationTimestamp": "2026-11-24T00:00:00Z",
            "labels": {
                "batch.kubernetes.io/controller-uid": JOB_UID,
                "batch.kubernetes.io/job-name": JOB,
                "controller-uid": JOB_UID,
                "job-name": JOB,
            },
            "ownerReferences": [{
                "apiVersion": "batch/v1",
                "kind": "Job",
                "name": JOB,
                "uid": JOB_UID,
                "controller": true,
                "blockOwnerDeletion": true,
            }],
        },
        "spec": {
            "nodeName": NODE,
            "restartPolicy": "OnFailure",
            "containers": [{
                "name": CONTAINER,
                "image": IMAGE,
                "resources": {"requests": {"cpu": "100m"}},
            }],
        },
        "status": {
            "phase": "Running",
            "qosClass": "Burstable",
            "podIP": "10.0.0.12",
            "startTime": "2026-11-24T00:00:01Z",
            "containerStatuses": [{
                "name": CONTAINER,
                "containerID": format!("containerd://{container_id}"),
                "image": IMAGE,
                "imageID": "registry.example/export@sha256:0000000000000000000000000000000000000000000000000000000000000000",
                "ready": true,
                "restartCount": 0,
                "started": true,
                "state": {"running": {"startedAt": "2026-11-24T00:00:02Z"}},
            }],
        },
    });
    let job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": JOB,
            "namespace": NAMESPACE,
            "uid": JOB_UID,
            "resourceVersion": "80",
            "ownerReferences": [{
                "apiVersion": "batch/v1",
                "kind": "CronJob",
                "name": CRONJOB,
                "uid": CRONJOB_UID,
                "controller": true,
                "blockOwnerDeletion": true,
            }],
        },
        "spec": {"template": {"spec": {"containers": [{"name": CONTAINER, "image": IMAGE}]}}},
        "status": {"active": 1},
    });
    let cronjob = json!({
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": CRONJOB,
            "namespace": NAMESPACE,
            "uid": CRONJOB_UID,
            "resourceVersion": "70",
        },
        "spec": {
            "schedule": "0 2 * * *",
            "jobTemplate": {"spec": {"template": {"spec": {
                "containers": [{"name": CONTAINER, "image": IMAGE}],
            }}}},
        },
    });
    json!({"pods": [pod], "objects": [job, cronjob]})
}

/// A tokenless curl in the container's cgroup of a pod of a CronJob: the event names the
/// pod, namespace, container, image, Job and CronJob from the API, the container id, pod
/// uid and QoS class from the cgroup path, and the workload is the CronJob.
#[test]
fn kubernetes_api_names_a_cronjob_pod() {
    if let Err(why) = env::preflight() {
        env::skip_or_fail(format!("{why:#}"));
        return;
    }
    let container_id = env::random_hex(32);
    let fake = FakeKubeApi::start(NODE, &cluster(&container_id))
        .unwrap_or_else(|e| panic!("starting the fake Kubernetes API: {e:#}"));
    let kubeconfig = fake
        .write_kubeconfig()
        .unwrap_or_else(|e| panic!("writing the kubeconfig: {e:#}"));

    let name = env::unique_name();
    let netns = NetNs::create(&name, &MockOptions::default())
        .unwrap_or_else(|e| panic!("creating netns {name}: {e:#}"));
    let cgroup =
        TestCgroup::create(&name).unwrap_or_else(|e| panic!("creating cgroup {name}: {e:#}"));
    let extra: Vec<OsString> = vec![
        "--kubeconfig".into(),
        kubeconfig.into_os_string(),
        "--kube-node".into(),
        NODE.into(),
    ];
    let agent = match Agent::start_with_args(cgroup.path(), &AgentOptions::default(), &extra) {
        Ok(agent) => agent,
        Err(e) => {
            env::skip_or_fail(format!("{e}\nfake API log:\n{}", fake.log()));
            return;
        }
    };
    let fx = Fixture {
        agent,
        cgroup,
        netns,
    };
    let context = || {
        format!(
            "agent stderr:\n{}\nfake API log:\n{}",
            fx.agent.stderr(),
            fake.log()
        )
    };

    // The first list arrived, and the Job's owner has been asked for and answered.
    wait_for(
        "the agent's pod cache to sync",
        SYNC_TIMEOUT,
        || fx.agent.stderr().contains(SYNCED_LINE),
        context,
    );
    let stderr = fx.agent.stderr();
    assert!(
        stderr.contains(&format!("{SYNCED_LINE} 1 pods on this node")),
        "the agent must have cached exactly the one pod of {NODE}\n{}",
        context()
    );
    let job_path = format!("/apis/batch/v1/namespaces/{NAMESPACE}/jobs/{JOB}");
    wait_for(
        "the agent to look up the pod's Job",
        SYNC_TIMEOUT,
        || {
            fake.log()
                .lines()
                .any(|l| l.contains(&format!("GET {job_path} ")) && l.ends_with("-> 200"))
        },
        context,
    );
    // The answer is stored right after it was read; give it a moment.
    std::thread::sleep(Duration::from_millis(500));

    let relative = format!(
        "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{container_id}.scope",
        POD_UID.replace('-', "_")
    );
    let container = NestedCgroup::create(&fx.cgroup, &relative)
        .unwrap_or_else(|e| panic!("creating the container cgroup: {e:#}"));
    let url = imds_url(INSTANCE_ID_PATH);
    let run = run_client_env(
        &fx.netns.path(),
        container.path(),
        &["curl", "-s", "--max-time", "10", url.as_str()],
        &[],
    )
    .unwrap_or_else(|e| panic!("{e:#}\nmock log:\n{}", fx.netns.mock_log()));
    run.assert_success();

    fx.agent.wait_for_pid(run.pid, 1);
    drop(container);
    let output = fx.stop();
    let mine = for_pid(&output.events, run.pid);
    assert_eq!(
        mine.len(),
        1,
        "expected exactly one event for curl (pid {}); all events:\n{}\nagent stderr:\n{}",
        run.pid,
        pretty(&output.events),
        output.stderr
    );
    let event = &mine[0];
    assert_fields(
        event,
        &[
            ("imds.version", json!("v1")),
            ("url.path", json!(INSTANCE_ID_PATH)),
            ("process.executable.name", json!("curl")),
            ("k8s.pod.name", json!(POD_NAME)),
            ("k8s.namespace.name", json!(NAMESPACE)),
            ("k8s.pod.uid", json!(POD_UID)),
            ("k8s.pod.qos_class", json!("Burstable")),
            ("k8s.job.name", json!(JOB)),
            ("k8s.cronjob.name", json!(CRONJOB)),
            ("k8s.container.name", json!(CONTAINER)),
            ("container.image.name", json!(IMAGE)),
            ("container.id", json!(container_id)),
        ],
    );
    assert_str(
        event,
        "workload",
        &format!("a description naming cronjob/{CRONJOB}"),
        |w| w.contains(&format!("cronjob/{CRONJOB}")),
    );

    // Every pod request selected this node; the Job lookup used the API as expected.
    fake.assert_clean();
    let log = fake.log();
    assert!(
        log.lines()
            .any(|l| l.starts_with("request GET /api/v1/pods?")
                && l.contains("watch=true")
                && l.ends_with("-> 200")),
        "the agent never watched the node's pods; fake API log:\n{log}"
    );
    eprintln!("event:\n{}\nfake API log:\n{log}", pretty(&mine));
}
