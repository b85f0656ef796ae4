//! What one reported request looks like, as a JSON object with OpenTelemetry attribute
//! names, and the JSON-lines sink. The schema is documented in the README; keep both in step.

use std::{
    io::{self, Write},
    net::IpAddr,
};

use serde_json::{Map, Value, json};

use crate::{
    classify::{Exchange, RequestRecord},
    process::{self, ProcessInfo},
    workload::{
        Workload,
        sdk::{Diagnosis, SdkInfo},
    },
};

/// About the connection a request travelled on.
#[derive(Clone, Debug)]
pub struct ConnMeta {
    /// Agent-local connection number (same for requests on one TCP connection).
    pub id: u64,
    pub server: IpAddr,
    /// Wall-clock ns of the latest request bytes seen (or the connect).
    pub time_ns: i128,
}

/// One finished request, ready for the sinks.
#[derive(Debug)]
pub struct Report {
    pub exchange: Exchange,
    pub meta: ConnMeta,
    pub attribution: Option<ProcessInfo>,
    /// Response bytes were lost, so a missing response proves nothing.
    pub response_lost: bool,
    /// The client, from the User-Agent or the process.
    pub sdk: Option<SdkInfo>,
    /// Why a v1 request is v1, and what to do (v1 requests only).
    pub diagnosis: Option<Diagnosis>,
    /// The workload the process belongs to.
    pub workload: Option<Workload>,
}

/// The port IMDS listens on.
const SERVER_PORT: u16 = 80;

impl Report {
    /// The JSON object for this request.
    pub fn to_json(&self) -> Value {
        let Self {
            exchange,
            meta,
            attribution,
            response_lost,
            sdk,
            diagnosis,
            workload,
        } = self;
        let mut m = Map::new();
        m.insert("time".into(), json!(rfc3339(meta.time_ns)));
        let mut secrets: Vec<&str> = Vec::new();
        match &exchange.request {
            RequestRecord::Http(req) => {
                if let Some(token) = &req.token {
                    secrets.push(token.expose());
                }
                m.insert("imds.version".into(), json!(req.version.map(|v| v.as_str())));
                m.insert("imds.cloud".into(), json!(req.cloud.as_str()));
                m.insert("imds.request.kind".into(), json!(req.kind.as_str()));
                m.insert("http.request.method".into(), json!(req.method));
                // OpenTelemetry: url.path stops at '?', the rest is url.query.
                let (path, query) = match req.path.split_once('?') {
                    Some((p, q)) => (p, Some(q)),
                    None => (req.path.as_str(), None),
                };
                m.insert("url.path".into(), json!(process::redact_text(path, &secrets)));
                if let Some(q) = query {
                    // Query parameters named like secrets are redacted by the same rules.
                    let q = process::redact_text(&format!("/?{q}"), &secrets);
                    m.insert("url.query".into(), json!(q.trim_start_matches("/?")));
                }
                if let Some(ua) = &req.user_agent {
                    m.insert(
                        "user_agent.original".into(),
                        json!(process::redact_text(ua, &secrets)),
                    );
                }
                if req.has_forwarded_for {
                    m.insert("imds.forwarded".into(), json!(true));
                }
            }
            RequestRecord::Unparsed(u) => {
                m.insert("imds.version".into(), Value::Null);
                m.insert("imds.cloud".into(), json!("unknown"));
                m.insert("imds.unparsed".into(), json!(true));
                m.insert("imds.unparsed.reason".into(), json!(u.reason));
                m.insert("imds.unparsed.bytes".into(), json!(u.bytes));
            }
        }
        match &exchange.response {
            Some(r) => {
                m.insert("http.response.status_code".into(), json!(r.status));
            }
            None if *response_lost => {
                m.insert("imds.response.lost".into(), json!(true));
            }
            None => {
                m.insert("imds.unanswered".into(), json!(true));
            }
        }
        m.insert("server.address".into(), json!(meta.server.to_string()));
        m.insert("server.port".into(), json!(SERVER_PORT));
        m.insert(
            "network.type".into(),
            json!(if meta.server.is_ipv4() { "ipv4" } else { "ipv6" }),
        );
        m.insert("imds.connection.id".into(), json!(meta.id));
        match attribution {
            Some(a) => {
                let mut a = a.clone();
                a.redact_secrets(&secrets);
                m.insert("process.pid".into(), json!(a.pid));
                m.insert("thread.id".into(), json!(a.tid));
                m.insert("process.parent_pid".into(), json!(a.ppid));
                m.insert("process.executable.name".into(), json!(a.executable_name));
                m.insert("process.executable.path".into(), json!(a.executable_path));
                m.insert("process.command_line".into(), json!(a.command_line));
                m.insert("process.command_args".into(), json!(a.command_args));
                m.insert("process.owner".into(), json!(a.owner));
                m.insert("process.user.id".into(), json!(a.uid));
                m.insert("process.group.id".into(), json!(a.gid));
                m.insert("cgroup.id".into(), json!(a.cgroup_id));
                m.insert("cgroup.path".into(), json!(a.cgroup_path));
            }
            None => {
                m.insert("imds.attribution".into(), json!("unknown"));
                m.insert("workload".into(), json!("unknown (connected before the agent started)"));
            }
        }
        if let (Some(w), Some(a)) = (workload, attribution) {
            w.add_json(a, &mut m);
        }
        if let Some(s) = sdk {
            m.insert("imds.sdk.name".into(), json!(s.name));
            m.insert("imds.sdk.version".into(), json!(s.version));
            m.insert("imds.sdk.supports_v2".into(), json!(s.supports_v2));
        }
        if let Some(d) = diagnosis {
            m.insert("imds.v1_cause".into(), json!(d.cause.as_str()));
            m.insert("imds.v1_advice".into(), json!(d.advice));
        }
        Value::Object(m)
    }
}

fn rfc3339(wall_ns: i128) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(wall_ns)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// Writes one JSON object per line.
pub struct JsonLines<W: Write> {
    out: W,
    written: u64,
}

impl<W: Write> JsonLines<W> {
    pub fn new(out: W) -> Self {
        Self { out, written: 0 }
    }

    pub fn write(&mut self, report: &Report) -> io::Result<()> {
        self.write_json(&report.to_json())
    }

    /// Writes an already built event object.
    pub fn write_json(&mut self, event: &Value) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, event)?;
        self.out.write_all(b"\n")?;
        self.written += 1;
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Lines written so far.
    pub fn written(&self) -> u64 {
        self.written
    }
}
