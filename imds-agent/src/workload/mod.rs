//! Which workload a process belongs to — container, Kubernetes pod and owner, systemd
//! unit, notebook or job — and one human name for it. Built from what attribution captured
//! at connect time ([`ProcessInfo`]: cgroup path, allow-listed environment, argv), plus the
//! Kubernetes pod cache when the agent runs on a node.

pub mod cgroup_identity;
pub mod env;
pub mod k8s;
pub mod sdk;

use serde_json::{Map, Value, json};

use crate::process::ProcessInfo;
use cgroup_identity::CgroupIdentity;

/// Where SageMaker notebook instances describe themselves.
pub const SAGEMAKER_METADATA: &str = "/opt/ml/metadata/resource-metadata.json";

/// What the agent knows about the workload of one process.
#[derive(Clone, Debug, Default)]
pub struct Workload {
    pub cgroup: CgroupIdentity,
    pub pod: Option<k8s::PodMeta>,
    pub container: Option<k8s::ContainerMeta>,
    /// Jupyter kernel id from the kernel's `-f .../kernel-<id>.json` argument.
    pub jupyter_kernel_id: Option<String>,
    /// SageMaker notebook instance name (host-wide).
    pub sagemaker_notebook: Option<String>,
    pub env: Vec<(String, String)>,
    /// Ancestors kept for the report: up to the first one outside the process's
    /// container (or its cgroup, for host processes), parent first.
    pub ancestor_count: usize,
}

/// Host-wide facts read once at start.
#[derive(Clone, Debug, Default)]
pub struct HostContext {
    pub sagemaker_notebook: Option<String>,
}

impl HostContext {
    pub fn detect() -> Self {
        let sagemaker_notebook = std::fs::read_to_string(SAGEMAKER_METADATA)
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .and_then(|v| v.get("ResourceName")?.as_str().map(str::to_owned));
        Self { sagemaker_notebook }
    }
}

/// Jupyter kernels are started as `... -f <runtime dir>/kernel-<id>.json`.
pub fn jupyter_kernel_id(args: &[String]) -> Option<String> {
    let file = args
        .windows(2)
        .find(|w| w[0] == "-f" || w[0] == "--f")
        .map(|w| w[1].as_str())
        .or_else(|| args.iter().find_map(|a| a.strip_prefix("--f=")))?;
    let name = file.rsplit('/').next()?;
    let id = name.strip_prefix("kernel-")?.strip_suffix(".json")?;
    (!id.is_empty()).then(|| id.to_owned())
}

impl Workload {
    /// Describes the workload of `process`. `cgroup_path_of` resolves ancestors' cgroup ids.
    pub fn describe(
        process: &ProcessInfo,
        host: &HostContext,
        pods: Option<&k8s::PodCache>,
        mut cgroup_path_of: impl FnMut(u64) -> Option<String>,
    ) -> Self {
        let cgroup = process
            .cgroup_path
            .as_deref()
            .map(cgroup_identity::parse)
            .unwrap_or_default();
        let (pod, container) = match pods {
            Some(cache) => match cgroup.container_id.as_deref().and_then(|id| cache.by_container_id(id)) {
                Some((pod, container)) => (Some(pod), Some(container)),
                None => (cgroup.pod_uid.as_deref().and_then(|uid| cache.by_uid(uid)), None),
            },
            None => (None, None),
        };
        // Ancestors stay while they are in the same container (or, outside containers,
        // the same cgroup — systemd gives each service and login session its own): the
        // tree a person recognises, not the node's daemons.
        let mut ancestor_count = 0;
        for a in &process.ancestors {
            if a.pid <= 1 {
                break;
            }
            let same = if a.cgroup_id == process.cgroup_id {
                true
            } else if let Some(id) = &cgroup.container_id {
                cgroup_path_of(a.cgroup_id)
                    .map(|p| cgroup_identity::parse(&p).container_id.as_ref() == Some(id))
                    .unwrap_or(false)
            } else {
                // Host process: the tree within its cgroup — its systemd service or login
                // session scope (bash from cron, a kernel from jupyter-server), not the
                // supervisor that started the service.
                false
            };
            if !same {
                break;
            }
            ancestor_count += 1;
        }
        Self {
            jupyter_kernel_id: jupyter_kernel_id(&process.command_args),
            sagemaker_notebook: host.sagemaker_notebook.clone(),
            env: process.env.clone(),
            cgroup,
            pod,
            container,
            ancestor_count,
        }
    }

    fn env(&self, name: &str) -> Option<&str> {
        self.env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The best name a person would recognise.
    pub fn name(&self, process: &ProcessInfo) -> String {
        let mut parts: Vec<String> = Vec::new();
        if let Some(pod) = &self.pod {
            let owner = pod.owner.as_ref().map(|o| {
                let name = o.cronjob.as_ref().map(|n| ("cronjob", n))
                    .or(o.job.as_ref().map(|n| ("job", n)))
                    .or(o.deployment.as_ref().map(|n| ("deployment", n)))
                    .or(o.statefulset.as_ref().map(|n| ("statefulset", n)))
                    .or(o.daemonset.as_ref().map(|n| ("daemonset", n)));
                match name {
                    Some((kind, n)) => format!("{kind}/{n}"),
                    None => format!("{}/{}", o.kind.to_lowercase(), o.name),
                }
            });
            let mut s = format!(
                "k8s {}/{}",
                pod.namespace,
                owner.unwrap_or_else(|| format!("pod/{}", pod.name))
            );
            if let Some(c) = &self.container {
                s.push_str(&format!(" container {}", c.name));
            }
            parts.push(s);
        } else if let Some(uid) = &self.cgroup.pod_uid {
            parts.push(format!("k8s pod {uid}"));
        }
        if let Some(nb) = self.env(env::JPY_SESSION_NAME) {
            parts.push(format!("notebook {nb}"));
        } else if let Some(id) = &self.jupyter_kernel_id {
            parts.push(format!("jupyter kernel {id}"));
        }
        if let Some(nb) = &self.sagemaker_notebook
            && (self.jupyter_kernel_id.is_some() || self.env(env::JPY_SESSION_NAME).is_some())
        {
            parts.push(format!("sagemaker notebook instance {nb}"));
        }
        if let Some(name) = self.env(env::DB_CLUSTER_NAME).or(self.env(env::DB_CLUSTER_ID)) {
            parts.push(format!("databricks cluster {name}"));
        }
        if let Some(job) = self.env(env::AWS_BATCH_JOB_ID) {
            parts.push(format!("aws batch job {job}"));
        }
        if let Some(dag) = self.env(env::AIRFLOW_CTX_DAG_ID) {
            match self.env(env::AIRFLOW_CTX_TASK_ID) {
                Some(task) => parts.push(format!("airflow {dag}.{task}")),
                None => parts.push(format!("airflow {dag}")),
            }
        }
        if let Some(uri) = self.env(env::ECS_CONTAINER_METADATA_URI_V4)
            && self.pod.is_none()
        {
            let id = uri.trim_end_matches('/').rsplit('/').next().unwrap_or(uri);
            parts.push(format!("ecs container {id}"));
        }
        if self.pod.is_none()
            && self.cgroup.pod_uid.is_none()
            && let Some(id) = &self.cgroup.container_id
        {
            let runtime = self.cgroup.runtime.map_or("container", |r| r.as_str());
            parts.push(format!("{runtime} container {}", &id[..id.len().min(12)]));
        }
        if parts.is_empty()
            && let Some(unit) = &self.cgroup.systemd_unit
            && !unit.starts_with("session-")
        {
            parts.push(format!("systemd {unit}"));
        }
        let program = match &process.executable_path {
            Some(path) => format!("{} ({path})", process.executable_name),
            None => process.executable_name.clone(),
        };
        if parts.is_empty() {
            let user = process.owner.clone().unwrap_or_else(|| process.uid.to_string());
            return format!("process {program} of user {user}");
        }
        format!("{}: {program}", parts.join(", "))
    }

    /// Adds this workload's keys to an event.
    pub fn add_json(&self, process: &ProcessInfo, m: &mut Map<String, Value>) {
        m.insert("workload".into(), json!(self.name(process)));
        let c = &self.cgroup;
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.into(), v);
            }
        };
        put("container.id", c.container_id.as_ref().map(|v| json!(v)));
        put("container.runtime", c.runtime.map(|v| json!(v.as_str())));
        put("k8s.pod.uid", c.pod_uid.as_ref().or(self.pod.as_ref().map(|p| &p.uid)).map(|v| json!(v)));
        put("k8s.pod.qos_class", c.qos.map(|v| json!(v.as_str())));
        // systemd keys describe host services; for pods and containers the slice is the
        // runtime's bookkeeping, not something a person would look for.
        if c.pod_uid.is_none() && c.container_id.is_none() {
            put("systemd.unit", c.systemd_unit.as_ref().map(|v| json!(v)));
            put("systemd.slice", c.systemd_slice.as_ref().map(|v| json!(v)));
        }
        if let Some(pod) = &self.pod {
            put("k8s.pod.name", Some(json!(pod.name)));
            put("k8s.namespace.name", Some(json!(pod.namespace)));
            put("k8s.node.name", pod.node_name.as_ref().map(|v| json!(v)));
            for (k, v) in &pod.labels {
                put(&format!("k8s.pod.label.{k}"), Some(json!(v)));
            }
            if let Some(o) = &pod.owner {
                put("k8s.job.name", o.job.as_ref().map(|v| json!(v)));
                put("k8s.cronjob.name", o.cronjob.as_ref().map(|v| json!(v)));
                put("k8s.deployment.name", o.deployment.as_ref().map(|v| json!(v)));
                put("k8s.replicaset.name", o.replicaset.as_ref().map(|v| json!(v)));
                put("k8s.daemonset.name", o.daemonset.as_ref().map(|v| json!(v)));
                put("k8s.statefulset.name", o.statefulset.as_ref().map(|v| json!(v)));
            }
        }
        if let Some(cm) = &self.container {
            put("k8s.container.name", Some(json!(cm.name)));
            put("container.image.name", cm.image.as_ref().map(|v| json!(v)));
        }
        put("jupyter.kernel.id", self.jupyter_kernel_id.as_ref().map(|v| json!(v)));
        put("aws.sagemaker.notebook_instance.name", self.sagemaker_notebook.as_ref().map(|v| json!(v)));
        for (name, value) in &self.env {
            if let Some(key) = env::json_key(name) {
                put(key, Some(json!(value)));
            }
        }
        let ancestors: Vec<Value> = process
            .ancestors
            .iter()
            .take(self.ancestor_count)
            .map(|a| {
                json!({
                    "pid": a.pid,
                    "executable.name": a.executable_name,
                    "command_line": a.command_line,
                })
            })
            .collect();
        m.insert("process.ancestors".into(), Value::Array(ancestors));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jupyter_kernel_id_from_argv() {
        let args: Vec<String> = ["python3", "-m", "ipykernel_launcher", "-f", "/root/.local/share/jupyter/runtime/kernel-1a2b-3c.json"]
            .map(String::from)
            .to_vec();
        assert_eq!(jupyter_kernel_id(&args).as_deref(), Some("1a2b-3c"));
        assert_eq!(jupyter_kernel_id(&["python3".to_owned()]), None);
        assert_eq!(
            jupyter_kernel_id(&["x".to_owned(), "--f=/r/kernel-9.json".to_owned()]).as_deref(),
            Some("9")
        );
    }
}
