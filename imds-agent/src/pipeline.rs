//! From kernel records to reported requests: keeps one [`Connection`] per socket cookie,
//! feeds it the captured bytes, attaches who connected, and hands finished exchanges to the
//! sinks. Everything here is synchronous and driven by the caller (the run loop or tests).

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Duration, Instant},
};

use imds_agent_common::{
    CHUNK_LEN, ConnectEvent, IMDS_V4, IMDS_V6, SegmentEvent, direction, segment_flags,
};

use crate::{
    classify::{Connection, Direction, Exchange, ImdsVersion, RequestKind, RequestRecord},
    kernel::events::Record,
    output::{ConnMeta, Report},
    process::{Attributor, ProcessInfo},
    workload::{
        HostContext, Workload, k8s::PodCache,
        sdk::{self, TokenHistory},
    },
};

/// A process, across pid reuse: (pid, start time).
type ProcKey = (u32, u64);

/// Most processes whose token history is kept.
const MAX_HISTORIES: usize = 4096;

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;

/// Tunables of the [`Tracker`].
#[derive(Clone, Debug)]
pub struct TrackerConfig {
    /// A request with no response after this much silence on its connection is reported
    /// as unanswered.
    pub response_timeout: Duration,
    /// A connection silent this long is forgotten entirely.
    pub forget_after: Duration,
    /// Most connections tracked at once; the least recently active is flushed beyond it.
    pub max_connections: usize,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            response_timeout: Duration::from_secs(5),
            forget_after: Duration::from_secs(300),
            max_connections: 16_384,
        }
    }
}

struct ConnState {
    meta: ConnMeta,
    conn: Connection,
    attribution: Option<ProcessInfo>,
    last_seen: Instant,
    /// Something arrived since the last idle flush.
    active: bool,
}

/// Per-connection state for every IMDS connection in flight.
pub struct Tracker {
    cfg: TrackerConfig,
    conns: HashMap<u64, ConnState>,
    next_id: u64,
    attributor: Attributor,
    clock: WallClock,
    host: HostContext,
    pods: Option<PodCache>,
    pods_synced: bool,
    /// What each process did with token requests, for the v1 diagnosis.
    history: HashMap<ProcKey, (TokenHistory, Instant)>,
}

impl Tracker {
    pub fn new(cfg: TrackerConfig, attributor: Attributor) -> Self {
        Self {
            cfg,
            conns: HashMap::new(),
            next_id: 1,
            attributor,
            clock: WallClock::new(),
            host: HostContext::detect(),
            pods: None,
            pods_synced: false,
            history: HashMap::new(),
        }
    }

    /// Resolves Kubernetes pods through this cache (when running on a node).
    pub fn with_pods(mut self, pods: Option<PodCache>) -> Self {
        self.pods = pods;
        self
    }

    /// Connections currently tracked.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Handles one kernel record; finished requests are pushed to `out`.
    pub fn on_record(&mut self, record: Record, now: Instant, out: &mut Vec<Report>) {
        match record {
            Record::Connect(ev) => self.on_connect(&ev, now, out),
            Record::Segment(ev) => self.on_segment(&ev, now, out),
        }
    }

    fn on_connect(&mut self, ev: &ConnectEvent, now: Instant, out: &mut Vec<Report>) {
        let cookie = ev.header.cookie;
        // A cookie is never reused while the kernel runs, but a stale entry from a lost
        // close would otherwise mislabel: flush it.
        if let Some(mut old) = self.conns.remove(&cookie) {
            self.flush(&mut old, now, out);
        }
        // Rule-based redaction happens here; the token the requests carry is redacted
        // again when each request is reported.
        let attribution = self.attributor.attribute(ev, &[]);
        let meta = ConnMeta {
            id: self.next_id,
            server: server_addr(ev),
            time_ns: self.clock.wall_ns(ev.header.boot_ns),
        };
        self.next_id += 1;
        self.insert(cookie, meta, Some(attribution), now, out);
    }

    fn insert(
        &mut self,
        cookie: u64,
        meta: ConnMeta,
        attribution: Option<ProcessInfo>,
        now: Instant,
        out: &mut Vec<Report>,
    ) {
        if self.conns.len() >= self.cfg.max_connections
            && let Some(oldest) = self
                .conns
                .iter()
                .min_by_key(|(_, c)| c.last_seen)
                .map(|(k, _)| *k)
            && let Some(mut old) = self.conns.remove(&oldest)
        {
            tracing::warn!(
                "tracking {} IMDS connections; flushing the least recently active",
                self.cfg.max_connections
            );
            self.flush(&mut old, now, out);
        }
        self.conns.insert(
            cookie,
            ConnState {
                meta,
                conn: Connection::new(),
                attribution,
                last_seen: now,
                active: false,
            },
        );
    }

    fn on_segment(&mut self, ev: &SegmentEvent, now: Instant, out: &mut Vec<Report>) {
        let cookie = ev.header.cookie;
        if !self.conns.contains_key(&cookie) {
            // Connected before the agent started (or the connect record was lost): the
            // bytes still count, attribution is unknown.
            let meta = ConnMeta {
                id: self.next_id,
                server: if ev.ip_version == 6 {
                    IpAddr::V6(Ipv6Addr::from(IMDS_V6))
                } else {
                    IpAddr::V4(Ipv4Addr::from(IMDS_V4))
                },
                time_ns: self.clock.wall_ns(ev.header.boot_ns),
            };
            self.next_id += 1;
            self.insert(cookie, meta, None, now, out);
        }
        let Some(state) = self.conns.get_mut(&cookie) else {
            return;
        };
        let syn = ev.tcp_flags & TCP_SYN != 0;
        // Only bytes (or a new connection) are activity: a FIN retransmitted into a
        // black hole (the hop-limit case) must not keep postponing the unanswered report.
        if ev.payload_len > 0 || syn {
            state.last_seen = now;
            state.active = true;
        }
        let dir = if ev.direction == direction::EGRESS {
            Direction::Request
        } else {
            Direction::Response
        };
        if syn && ev.offset == 0 {
            state.conn.on_syn(dir, ev.seq);
        }
        // Data in a SYN (TCP fast open) starts one past the ISN.
        let base = ev.seq.wrapping_add(u32::from(syn));
        let start = base.wrapping_add(ev.offset);
        let len = usize::from(ev.len).min(CHUNK_LEN);
        if len > 0 {
            if dir == Direction::Request {
                state.meta.time_ns = self.clock.wall_ns(ev.header.boot_ns);
            }
            state.conn.on_data(dir, start, &ev.data[..len]);
        }
        if ev.flags & segment_flags::LOAD_FAILED != 0 {
            let missing = ev.payload_len.saturating_sub(ev.offset).min(CHUNK_LEN as u32);
            state.conn.on_gap(dir, start, missing);
        }
        let covered = ev.offset.saturating_add(u32::from(ev.len));
        if ev.flags & segment_flags::TRUNCATED != 0 {
            state
                .conn
                .on_gap(dir, base.wrapping_add(covered), ev.payload_len - covered.min(ev.payload_len));
        }
        let last_chunk = ev.flags & segment_flags::TRUNCATED != 0
            || ev.offset.saturating_add(CHUNK_LEN as u32) >= ev.payload_len;
        if last_chunk {
            if ev.tcp_flags & TCP_RST != 0 {
                state.conn.on_reset();
            } else if ev.tcp_flags & TCP_FIN != 0 {
                state.conn.on_close(dir);
            }
        }
        let ready = state.conn.take_ready();
        let closed = state.conn.is_closed();
        let lost = state.conn.response_tracking_lost();
        let (meta, attribution) = (state.meta.clone(), state.attribution.clone());
        for exchange in ready {
            let r = self.report(&meta, attribution.as_ref(), exchange, lost, now);
            out.push(r);
        }
        if closed && let Some(mut state) = self.conns.remove(&cookie) {
            self.flush(&mut state, now, out);
        }
    }

    /// Reports requests left unanswered past the response timeout and forgets silent
    /// connections. Call about once a second.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Report>) {
        let mut idle_flush = Vec::new();
        let mut forget = Vec::new();
        for (cookie, state) in &self.conns {
            let idle = now.saturating_duration_since(state.last_seen);
            if idle >= self.cfg.forget_after {
                forget.push(*cookie);
            } else if state.active && idle >= self.cfg.response_timeout {
                idle_flush.push(*cookie);
            }
        }
        for cookie in idle_flush {
            if let Some(mut state) = self.conns.remove(&cookie) {
                self.flush(&mut state, now, out);
                state.conn = Connection::new();
                state.active = false;
                self.conns.insert(cookie, state);
            }
        }
        for cookie in forget {
            if let Some(mut state) = self.conns.remove(&cookie) {
                self.flush(&mut state, now, out);
            }
        }
        self.history
            .retain(|_, (_, seen)| now.saturating_duration_since(*seen) < self.cfg.forget_after);
        if !self.pods_synced
            && let Some(pods) = &self.pods
            && pods.is_synced()
        {
            self.pods_synced = true;
            tracing::info!("Kubernetes pod cache synced: {} pods on this node", pods.len());
        }
    }

    /// Reports everything still pending (shutdown).
    pub fn flush_all(&mut self, out: &mut Vec<Report>) {
        let now = Instant::now();
        let cookies: Vec<u64> = self.conns.keys().copied().collect();
        for cookie in cookies {
            if let Some(mut state) = self.conns.remove(&cookie) {
                self.flush(&mut state, now, out);
            }
        }
    }

    /// Reports everything pending on a connection that is going away.
    fn flush(&mut self, state: &mut ConnState, now: Instant, out: &mut Vec<Report>) {
        let mut exchanges = state.conn.take_ready();
        exchanges.extend(state.conn.finish());
        let lost = state.conn.response_tracking_lost();
        for exchange in exchanges {
            let r = self.report(&state.meta, state.attribution.as_ref(), exchange, lost, now);
            out.push(r);
        }
    }

    /// Token requests of process `key` still waiting for an answer on its connections.
    fn awaiting_token_requests(&self, key: ProcKey) -> u32 {
        let mut n = 0;
        for state in self.conns.values() {
            let same = state
                .attribution
                .as_ref()
                .is_some_and(|a| proc_key(a) == key);
            if same {
                n += state
                    .conn
                    .awaiting_response()
                    .filter(|r| matches!(r, RequestRecord::Http(h) if h.kind == RequestKind::TokenRequest))
                    .count() as u32;
            }
        }
        n
    }

    /// Builds the report for one exchange: SDK, v1 diagnosis, workload.
    fn report(
        &mut self,
        meta: &ConnMeta,
        attribution: Option<&ProcessInfo>,
        exchange: Exchange,
        response_lost: bool,
        now: Instant,
    ) -> Report {
        let mut sdk_info = None;
        let mut diagnosis = None;
        if let (Some(p), RequestRecord::Http(req)) = (attribution, &exchange.request) {
            let key = proc_key(p);
            sdk_info = sdk::identify(req.user_agent.as_deref(), &p.executable_name, &p.command_args);
            if req.kind == RequestKind::TokenRequest {
                if self.history.len() >= MAX_HISTORIES && !self.history.contains_key(&key) {
                    self.history.clear();
                }
                let (h, seen) = self
                    .history
                    .entry(key)
                    .or_insert_with(|| (TokenHistory::default(), now));
                *seen = now;
                h.token_requests += 1;
                match exchange.response.as_ref().map(|r| r.status) {
                    Some(200) => h.succeeded += 1,
                    Some(_) => h.refused += 1,
                    None if !response_lost => h.unanswered += 1,
                    None => {}
                }
            } else if req.version == Some(ImdsVersion::V1) {
                let mut h = self.history.get(&key).map(|(h, _)| *h).unwrap_or_default();
                let pending = self.awaiting_token_requests(key);
                h.token_requests += pending;
                h.unanswered += pending;
                diagnosis = Some(sdk::diagnose(sdk_info.as_ref(), &h));
            }
        } else if let RequestRecord::Http(req) = &exchange.request
            && req.version == Some(ImdsVersion::V1)
        {
            sdk_info = sdk::identify(req.user_agent.as_deref(), "", &[]);
            diagnosis = Some(sdk::diagnose(sdk_info.as_ref(), &TokenHistory::default()));
        }
        let workload = attribution.map(|p| {
            let attributor = &mut self.attributor;
            Workload::describe(p, &self.host, self.pods.as_ref(), |id| attributor.resolve_cgroup(id))
        });
        Report {
            response_lost: exchange.response.is_none() && response_lost,
            exchange,
            meta: meta.clone(),
            attribution: attribution.cloned(),
            sdk: sdk_info,
            diagnosis,
            workload,
        }
    }
}

fn proc_key(p: &ProcessInfo) -> ProcKey {
    (p.pid, p.start_boot_ns.unwrap_or(0))
}

fn server_addr(ev: &ConnectEvent) -> IpAddr {
    if ev.family == libc::AF_INET as u16 {
        let mut a = [0u8; 4];
        a.copy_from_slice(&ev.daddr[..4]);
        IpAddr::V4(Ipv4Addr::from(a))
    } else {
        let v6 = Ipv6Addr::from(ev.daddr);
        // ::ffff:169.254.169.254 is the IPv4 endpoint; the wire is IPv4.
        match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        }
    }
}

/// Converts kernel boot-time stamps to wall-clock time.
struct WallClock {
    /// realtime - boottime, in ns, measured at start.
    offset_ns: i128,
}

impl WallClock {
    fn new() -> Self {
        let real = clock_ns(libc::CLOCK_REALTIME);
        let boot = clock_ns(libc::CLOCK_BOOTTIME);
        Self {
            offset_ns: real - boot,
        }
    }

    fn wall_ns(&self, boot_ns: u64) -> i128 {
        i128::from(boot_ns) + self.offset_ns
    }
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

#[cfg(test)]
mod tests {
    use imds_agent_common::{EventHeader, connect_flags, kind};

    use super::*;
    use crate::kernel::events::Record;

    const COOKIE: u64 = 42;

    fn header(kind: u32) -> EventHeader {
        EventHeader {
            kind,
            _pad: 0,
            boot_ns: 1_000,
            cookie: COOKIE,
        }
    }

    fn connect(argv: &[u8]) -> Record {
        // SAFETY: plain-old-data; all-zero is valid.
        let mut ev: ConnectEvent = unsafe { std::mem::zeroed() };
        ev.header = header(kind::CONNECT);
        ev.tgid = 4242;
        ev.pid = 4243;
        ev.ppid = 1;
        ev.flags = connect_flags::TASK_OK | connect_flags::ARGV_OK | connect_flags::EXE_OK;
        ev.family = libc::AF_INET as u16;
        ev.dport = 80;
        ev.daddr[..4].copy_from_slice(&IMDS_V4);
        ev.comm[..4].copy_from_slice(b"curl");
        ev.argv[..argv.len()].copy_from_slice(argv);
        ev.argv_len = argv.len() as u32;
        for (i, part) in ["curl", "bin", "usr"].iter().enumerate() {
            ev.exe[i][..part.len()].copy_from_slice(part.as_bytes());
        }
        ev.exe_depth = 3;
        Record::Connect(Box::new(ev))
    }

    fn segment(dir: u8, seq: u32, flags: u8, data: &[u8]) -> Record {
        segment_on(COOKIE, dir, seq, flags, data)
    }

    fn segment_on(cookie: u64, dir: u8, seq: u32, flags: u8, data: &[u8]) -> Record {
        // SAFETY: as above.
        let mut ev: SegmentEvent = unsafe { std::mem::zeroed() };
        ev.header = header(kind::SEGMENT);
        ev.header.cookie = cookie;
        ev.seq = seq;
        ev.payload_len = data.len() as u32;
        ev.len = data.len() as u16;
        ev.direction = dir;
        ev.tcp_flags = flags;
        ev.ip_version = 4;
        ev.data[..data.len()].copy_from_slice(data);
        Record::Segment(Box::new(ev))
    }

    fn tracker() -> Tracker {
        Tracker::new(
            TrackerConfig {
                response_timeout: Duration::from_secs(5),
                ..TrackerConfig::default()
            },
            Attributor::with_cgroup_root(None),
        )
    }

    const GET: &[u8] = b"GET /latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n";
    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

    #[test]
    fn connect_request_response_reports_one_attributed_v1() {
        let mut t = tracker();
        let now = Instant::now();
        let mut out = Vec::new();
        t.on_record(connect(b"curl\0-s\0http://169.254.169.254/\0"), now, &mut out);
        t.on_record(segment(direction::EGRESS, 99, TCP_SYN, b""), now, &mut out);
        t.on_record(segment(direction::INGRESS, 499, TCP_SYN | 0x10, b""), now, &mut out);
        t.on_record(segment(direction::EGRESS, 100, 0x18, GET), now, &mut out);
        assert!(out.is_empty(), "reported before the response");
        t.on_record(segment(direction::INGRESS, 500, 0x18, OK), now, &mut out);
        assert_eq!(out.len(), 1);
        let j = out[0].to_json();
        assert_eq!(j["imds.version"], "v1");
        assert_eq!(j["http.response.status_code"], 200);
        assert_eq!(j["process.pid"], 4242);
        assert_eq!(j["process.executable.path"], "/usr/bin/curl");
        assert_eq!(j["process.command_line"], "curl -s http://169.254.169.254/");
        assert_eq!(j["server.address"], "169.254.169.254");
        // FIN both ways forgets the connection.
        t.on_record(segment(direction::EGRESS, 100 + GET.len() as u32, TCP_FIN, b""), now, &mut out);
        t.on_record(segment(direction::INGRESS, 500 + OK.len() as u32, TCP_FIN, b""), now, &mut out);
        assert!(t.is_empty());
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn unanswered_after_timeout_and_reset_flushes() {
        let mut t = tracker();
        let now = Instant::now();
        let mut out = Vec::new();
        t.on_record(connect(b"python3\0"), now, &mut out);
        let put = b"PUT /latest/api/token HTTP/1.1\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\nContent-Length: 0\r\n\r\n";
        t.on_record(segment(direction::EGRESS, 1, 0x18, put), now, &mut out);
        t.tick(now + Duration::from_secs(1), &mut out);
        assert!(out.is_empty());
        t.tick(now + Duration::from_secs(6), &mut out);
        assert_eq!(out.len(), 1);
        let j = out[0].to_json();
        assert_eq!(j["imds.request.kind"], "token");
        assert_eq!(j["imds.unanswered"], true);
        assert!(j.get("http.response.status_code").is_none());
        // The connection lives on; a later tokenless GET then RST is flushed at once.
        t.on_record(segment(direction::EGRESS, 1 + put.len() as u32, 0x18, GET), now, &mut out);
        t.on_record(segment(direction::EGRESS, 1 + (put.len() + GET.len()) as u32, TCP_RST, b""), now, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].to_json()["imds.version"], "v1");
        assert!(t.is_empty());
    }

    fn connect_on(cookie: u64, ua_argv: &[u8]) -> Record {
        let Record::Connect(mut ev) = connect(ua_argv) else {
            unreachable!()
        };
        ev.header.cookie = cookie;
        Record::Connect(ev)
    }

    /// Retransmitted FINs carry no bytes and do not postpone the unanswered report.
    #[test]
    fn fin_retransmissions_do_not_postpone_the_timeout() {
        let mut t = tracker();
        let now = Instant::now();
        let mut out = Vec::new();
        t.on_record(connect(b"curl\0"), now, &mut out);
        let put = b"PUT /latest/api/token HTTP/1.1\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\n\r\n";
        t.on_record(segment(direction::EGRESS, 1, 0x18, put), now, &mut out);
        for s in 1..6 {
            let at = now + Duration::from_secs(s);
            t.on_record(segment(direction::EGRESS, 1 + put.len() as u32, TCP_FIN, b""), at, &mut out);
            t.tick(at, &mut out);
        }
        assert_eq!(out.len(), 1, "reported 5 s after the request despite the FINs");
        assert_eq!(out[0].to_json()["imds.unanswered"], true);
    }

    /// The hop-limit case: the token PUT gets no answer (and no FIN back), the SDK opens a
    /// new connection and goes tokenless. The v1 GET is diagnosed while the PUT is still
    /// pending; the PUT itself is reported as unanswered later.
    #[test]
    fn v1_after_unanswered_token_put_is_a_fallback() {
        let mut t = tracker();
        let now = Instant::now();
        let mut out = Vec::new();
        let argv = b"python3\0-c\0import botocore\0";
        t.on_record(connect_on(1, argv), now, &mut out);
        let put = b"PUT /latest/api/token HTTP/1.1\r\nUser-Agent: Botocore/1.44.5 Python/3.11.7\r\nx-aws-ec2-metadata-token-ttl-seconds: 21600\r\nContent-Length: 0\r\n\r\n";
        t.on_record(segment_on(1, direction::EGRESS, 1, 0x18, put), now, &mut out);
        t.on_record(segment_on(1, direction::EGRESS, 1 + put.len() as u32, TCP_FIN, b""), now, &mut out);
        t.on_record(connect_on(2, argv), now, &mut out);
        let get = b"GET /latest/meta-data/iam/security-credentials/ HTTP/1.1\r\nUser-Agent: Botocore/1.44.5 Python/3.11.7\r\n\r\n";
        t.on_record(segment_on(2, direction::EGRESS, 1, 0x18, get), now, &mut out);
        t.on_record(segment_on(2, direction::INGRESS, 1, 0x18, OK), now, &mut out);
        assert_eq!(out.len(), 1);
        let j = out[0].to_json();
        assert_eq!(j["imds.version"], "v1");
        assert_eq!(j["imds.sdk.name"], "botocore");
        assert_eq!(j["imds.sdk.supports_v2"], true);
        assert_eq!(j["imds.v1_cause"], "fallback_after_token_failure", "{j}");
        t.tick(now + Duration::from_secs(6), &mut out);
        let put_report = out[1].to_json();
        assert_eq!(put_report["imds.request.kind"], "token");
        assert_eq!(put_report["imds.unanswered"], true);
    }

    /// Without any token attempt, a v2-capable SDK going tokenless is a v1 API call.
    #[test]
    fn v1_from_v2_capable_sdk_without_token_attempt() {
        let mut t = tracker();
        let now = Instant::now();
        let mut out = Vec::new();
        t.on_record(connect(b"node\0app.js\0"), now, &mut out);
        let get = b"GET /latest/meta-data/instance-id HTTP/1.1\r\nUser-Agent: aws-sdk-nodejs/2.1693.0 linux/v20.20.2\r\n\r\n";
        t.on_record(segment(direction::EGRESS, 1, 0x18, get), now, &mut out);
        t.on_record(segment(direction::INGRESS, 1, 0x18, OK), now, &mut out);
        let j = out[0].to_json();
        assert_eq!(j["imds.sdk.name"], "aws-sdk-js");
        assert_eq!(j["imds.v1_cause"], "v1_api_in_v2_sdk", "{j}");
    }

    #[test]
    fn bytes_without_connect_are_reported_unattributed() {
        let mut t = tracker();
        let now = Instant::now();
        let mut out = Vec::new();
        t.on_record(segment(direction::EGRESS, 7, 0x18, GET), now, &mut out);
        t.on_record(segment(direction::INGRESS, 9, 0x18, OK), now, &mut out);
        assert_eq!(out.len(), 1);
        let j = out[0].to_json();
        assert_eq!(j["imds.attribution"], "unknown");
        assert!(j.get("process.pid").is_none());
        assert_eq!(j["imds.version"], "v1");
    }

    #[test]
    fn token_in_argv_is_redacted_in_the_report() {
        let mut t = tracker();
        let now = Instant::now();
        let mut out = Vec::new();
        let canary = "AQAEAcanaryTOKENvalue123==";
        let argv = format!("tool\0--opaque\0{canary}\0");
        t.on_record(connect(argv.as_bytes()), now, &mut out);
        let get = format!(
            "GET /latest/meta-data/ HTTP/1.1\r\nX-aws-ec2-metadata-token: {canary}\r\n\r\n"
        );
        t.on_record(segment(direction::EGRESS, 1, 0x18, get.as_bytes()), now, &mut out);
        t.on_record(segment(direction::INGRESS, 1, 0x18, OK), now, &mut out);
        assert_eq!(out.len(), 1);
        let text = out[0].to_json().to_string();
        assert!(!text.contains(canary), "{text}");
        assert!(text.contains("[REDACTED]"));
        assert!(!format!("{:?}", out[0]).contains(canary));
    }
}
