//! The allow-list of environment variables the agent reads, and what they mean.
//!
//! Environments hold secrets, so the agent never reads a whole environment: the kernel
//! program scans the connecting process's environment block in kernel memory and copies out
//! only variables whose name hashes to one of [`allow_hashes`]; user space then keeps only
//! exact matches of [`ALLOWED`] (a hash collision is dropped here, never reported).

use imds_agent_common::{ENV_ALLOW_MAX, env_name_hash};

/// Jupyter (recent jupyter_server): the notebook's path.
pub const JPY_SESSION_NAME: &str = "JPY_SESSION_NAME";
pub const DATABRICKS_RUNTIME_VERSION: &str = "DATABRICKS_RUNTIME_VERSION";
pub const DB_CLUSTER_ID: &str = "DB_CLUSTER_ID";
pub const DB_CLUSTER_NAME: &str = "DB_CLUSTER_NAME";
pub const AWS_BATCH_JOB_ID: &str = "AWS_BATCH_JOB_ID";
pub const ECS_CONTAINER_METADATA_URI_V4: &str = "ECS_CONTAINER_METADATA_URI_V4";
pub const AIRFLOW_CTX_DAG_ID: &str = "AIRFLOW_CTX_DAG_ID";
pub const AIRFLOW_CTX_TASK_ID: &str = "AIRFLOW_CTX_TASK_ID";
/// SDK switch that turns off the IMDSv1 fallback (useful for the diagnosis).
pub const AWS_EC2_METADATA_V1_DISABLED: &str = "AWS_EC2_METADATA_V1_DISABLED";

/// Every variable name the agent may read, and the JSON key it is reported under.
pub const ALLOWED: [(&str, &str); 9] = [
    (JPY_SESSION_NAME, "jupyter.session.name"),
    (DATABRICKS_RUNTIME_VERSION, "databricks.runtime.version"),
    (DB_CLUSTER_ID, "databricks.cluster.id"),
    (DB_CLUSTER_NAME, "databricks.cluster.name"),
    (AWS_BATCH_JOB_ID, "aws.batch.job.id"),
    (ECS_CONTAINER_METADATA_URI_V4, "aws.ecs.container.metadata_uri"),
    (AIRFLOW_CTX_DAG_ID, "airflow.dag.id"),
    (AIRFLOW_CTX_TASK_ID, "airflow.task.id"),
    (AWS_EC2_METADATA_V1_DISABLED, "aws.ec2_metadata_v1_disabled"),
];

const _: () = assert!(ALLOWED.len() <= ENV_ALLOW_MAX);

/// Name hashes for the kernel program (zero-filled).
pub fn allow_hashes() -> [u32; ENV_ALLOW_MAX] {
    let mut out = [0u32; ENV_ALLOW_MAX];
    for (slot, (name, _)) in out.iter_mut().zip(ALLOWED) {
        *slot = env_name_hash(name.as_bytes());
    }
    out
}

/// Keeps the allow-listed `NAME=VALUE` strings from the kernel's slots (each
/// NUL-terminated), as (name, value). Anything else is dropped.
pub fn filter(slots: &[&[u8]]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for slot in slots {
        let end = slot.iter().position(|&b| b == 0).unwrap_or(slot.len());
        let Ok(text) = std::str::from_utf8(&slot[..end]) else {
            continue;
        };
        let Some((name, value)) = text.split_once('=') else {
            continue;
        };
        if ALLOWED.iter().any(|(n, _)| *n == name) && !out.iter().any(|(n, _)| n == name) {
            out.push((name.to_owned(), value.to_owned()));
        }
    }
    out
}

/// The JSON key of an allow-listed variable.
pub fn json_key(name: &str) -> Option<&'static str> {
    ALLOWED.iter().find(|(n, _)| *n == name).map(|(_, k)| *k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_keeps_only_exact_allow_listed_names() {
        let slots: [&[u8]; 5] = [
            b"JPY_SESSION_NAME=/home/u/etl.ipynb\0junk",
            b"SECRET_TOKEN=hunter2\0",
            b"JPY_SESSION_NAMEX=nope\0",
            b"DB_CLUSTER_ID=0101-abc\0",
            b"JPY_SESSION_NAME=duplicate\0",
        ];
        assert_eq!(
            filter(&slots),
            vec![
                ("JPY_SESSION_NAME".to_owned(), "/home/u/etl.ipynb".to_owned()),
                ("DB_CLUSTER_ID".to_owned(), "0101-abc".to_owned()),
            ]
        );
    }

    #[test]
    fn hashes_are_distinct_and_nonzero() {
        let h = allow_hashes();
        let used = &h[..ALLOWED.len()];
        assert!(used.iter().all(|&x| x != 0));
        let mut sorted = used.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ALLOWED.len());
        assert_eq!(json_key(DB_CLUSTER_NAME), Some("databricks.cluster.name"));
    }
}
