//! Connection-level tests: whole request/response streams fed as the kernel would feed them.

use proptest::prelude::*;
use rstest::rstest;

use super::*;

// ---------------------------------------------------------------------------------------------
// Helpers

/// A connection fed contiguous segments, tracking each direction's next sequence number.
struct Sim {
    conn: Connection,
    next: [u32; 2],
}

fn idx(dir: Direction) -> usize {
    match dir {
        Direction::Request => 0,
        Direction::Response => 1,
    }
}

impl Sim {
    fn new() -> Self {
        Self::with_isn(1000, 50_000)
    }

    fn with_isn(client: u32, server: u32) -> Self {
        let mut conn = Connection::new();
        conn.on_syn(Direction::Request, client);
        conn.on_syn(Direction::Response, server);
        Self {
            conn,
            next: [client.wrapping_add(1), server.wrapping_add(1)],
        }
    }

    fn send(&mut self, dir: Direction, bytes: &[u8]) {
        let seq = &mut self.next[idx(dir)];
        self.conn.on_data(dir, *seq, bytes);
        *seq = seq.wrapping_add(bytes.len() as u32);
    }

    /// Sends `bytes` cut at each (sorted) offset in `cuts`.
    fn send_cut(&mut self, dir: Direction, bytes: &[u8], cuts: &[usize]) {
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
            let cut = cut.clamp(start, bytes.len());
            self.send(dir, &bytes[start..cut]);
            start = cut;
        }
    }

    fn client(&mut self, bytes: &[u8]) {
        self.send(Direction::Request, bytes);
    }

    fn server(&mut self, bytes: &[u8]) {
        self.send(Direction::Response, bytes);
    }

    fn lose(&mut self, dir: Direction, len: u32) {
        let seq = &mut self.next[idx(dir)];
        self.conn.on_gap(dir, *seq, len);
        *seq = seq.wrapping_add(len);
    }
}

/// One line per exchange: `METHOD path cloud version kind -> status`.
fn summary(e: &Exchange) -> String {
    let request = match &e.request {
        RequestRecord::Http(i) => format!(
            "{} {} {} {} {}",
            i.method,
            i.path,
            i.cloud,
            i.version.map_or("-", ImdsVersion::as_str),
            i.kind
        ),
        RequestRecord::Unparsed(u) => format!("unparsed: {}", u.reason),
    };
    match e.response {
        Some(r) => format!("{request} -> {}", r.status),
        None => format!("{request} -> none"),
    }
}

fn summaries(exchanges: &[Exchange]) -> Vec<String> {
    exchanges.iter().map(summary).collect()
}

const CANARY: &str = "CANARY-TOKEN-5f3c9a1e-imds-agent-fixture-do-not-log==";

fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nServer: EC2ws\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

const UNAUTHORIZED: &[u8] =
    b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\nServer: EC2ws\r\n\r\n";

const PUT: &[u8] =
    b"PUT /latest/api/token HTTP/1.1\r\nHost: 169.254.169.254\r\nx-aws-ec2-metadata-token-ttl-seconds: 21600\r\n\r\n";
const GET_V1: &[u8] =
    b"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n";

fn get_v2() -> Vec<u8> {
    format!(
        "GET /latest/meta-data/ami-id HTTP/1.1\r\nHost: 169.254.169.254\r\nx-aws-ec2-metadata-token: {CANARY}\r\n\r\n"
    )
    .into_bytes()
}

const S_PUT: &str = "PUT /latest/api/token aws v2 token";
const S_V1: &str = "GET /latest/meta-data/instance-id aws v1 metadata";
const S_V2: &str = "GET /latest/meta-data/ami-id aws v2 metadata";

// ---------------------------------------------------------------------------------------------
// Keep-alive, pipelining, linking

#[test]
fn keep_alive_links_each_request_to_its_status() {
    let mut sim = Sim::new();
    sim.client(PUT);
    assert!(sim.conn.take_ready().is_empty(), "no response yet");
    sim.server(&ok(CANARY));
    sim.client(&get_v2());
    sim.server(&ok("ami-0123456789"));
    sim.client(GET_V1);
    sim.server(UNAUTHORIZED);
    let got = sim.conn.take_ready();
    assert_eq!(
        summaries(&got),
        [
            format!("{S_PUT} -> 200"),
            format!("{S_V2} -> 200"),
            format!("{S_V1} -> 401")
        ]
    );
    let tokens: Vec<_> = got
        .iter()
        .map(|e| {
            e.request
                .http()
                .and_then(|i| i.token.as_ref())
                .map(Secret::expose)
        })
        .collect();
    assert_eq!(tokens, [None, Some(CANARY), None]);
    assert!(sim.conn.take_ready().is_empty(), "take_ready removes");
    assert!(sim.conn.finish().is_empty());
}

#[test]
fn pipelined_requests_and_responses_in_one_chunk() {
    let mut sim = Sim::new();
    sim.client(&[PUT, &get_v2(), GET_V1].concat());
    sim.server(&[ok(CANARY), ok("ami-1"), UNAUTHORIZED.to_vec()].concat());
    assert_eq!(
        summaries(&sim.conn.take_ready()),
        [
            format!("{S_PUT} -> 200"),
            format!("{S_V2} -> 200"),
            format!("{S_V1} -> 401")
        ]
    );
}

#[test]
fn pipelined_responses_split_everywhere() {
    let requests = [PUT, &get_v2(), GET_V1].concat();
    let responses = [ok(CANARY), ok("ami-1"), UNAUTHORIZED.to_vec()].concat();
    for cut in 0..=responses.len() {
        let mut sim = Sim::new();
        sim.client(&requests);
        sim.send_cut(Direction::Response, &responses, &[cut]);
        assert_eq!(
            summaries(&sim.conn.take_ready()),
            [
                format!("{S_PUT} -> 200"),
                format!("{S_V2} -> 200"),
                format!("{S_V1} -> 401")
            ],
            "response cut at {cut}"
        );
    }
}

#[test]
fn responses_seen_before_requests_still_pair_in_order() {
    let mut sim = Sim::new();
    sim.server(&[ok(CANARY), UNAUTHORIZED.to_vec()].concat());
    assert!(sim.conn.take_ready().is_empty());
    sim.client(&[PUT, GET_V1].concat());
    assert_eq!(
        summaries(&sim.conn.take_ready()),
        [format!("{S_PUT} -> 200"), format!("{S_V1} -> 401")]
    );
}

#[rstest]
#[case::content_length(ok("0123456789"))]
#[case::chunked(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n3;x=y\r\nefg\r\n0\r\nX-Trailer: 1\r\n\r\n".to_vec())]
#[case::no_content(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec())]
#[case::not_modified(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n".to_vec())]
#[case::continue_first([b"HTTP/1.1 100 Continue\r\n\r\n".as_slice(), &ok("x")].concat())]
fn response_bodies_are_skipped(#[case] first: Vec<u8>) {
    let status = httparse_status(&first);
    let mut sim = Sim::new();
    sim.client(&[GET_V1, GET_V1].concat());
    sim.send_cut(
        Direction::Response,
        &[first, UNAUTHORIZED.to_vec()].concat(),
        &[7, 30, 31, 60],
    );
    assert_eq!(
        summaries(&sim.conn.take_ready()),
        [format!("{S_V1} -> {status}"), format!("{S_V1} -> 401")]
    );
}

/// Status of the last (final) response head in `raw`, by scanning the status lines.
fn httparse_status(raw: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(raw);
    text.lines()
        .filter_map(|l| l.strip_prefix("HTTP/1.1 "))
        .filter_map(|l| l.get(..3)?.parse().ok())
        .rfind(|s| *s >= 200)
        .unwrap_or(0)
}

#[test]
fn response_to_head_has_no_body_even_with_content_length() {
    let head = b"HEAD /latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n";
    let mut sim = Sim::new();
    sim.client(&[head.as_slice(), GET_V1].concat());
    // The HEAD answer announces 10 bytes but carries none; the next response follows at once.
    sim.server(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n");
    sim.server(UNAUTHORIZED);
    assert_eq!(
        summaries(&sim.conn.take_ready()),
        [
            "HEAD /latest/meta-data/ aws v1 metadata -> 200".to_owned(),
            format!("{S_V1} -> 401")
        ]
    );
}

#[test]
fn response_without_length_runs_until_close() {
    let mut sim = Sim::new();
    sim.client(&[GET_V1, GET_V1].concat());
    sim.server(b"HTTP/1.0 200 OK\r\nConnection: close\r\n\r\nbody that looks like HTTP/1.1 401 Unauthorized\r\n\r\n");
    sim.conn.on_close(Direction::Response);
    assert_eq!(
        summaries(&sim.conn.take_ready()),
        [format!("{S_V1} -> 200"), format!("{S_V1} -> none")]
    );
    assert!(!sim.conn.response_tracking_lost());
}

#[test]
fn request_bodies_are_skipped() {
    let with_length = b"PUT /latest/api/token HTTP/1.1\r\nContent-Length: 17\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\n\r\nGET / HTTP/1.1\r\n\r\n";
    let chunked =
        b"POST /latest/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nGET /\r\n0\r\n\r\n";
    let mut sim = Sim::new();
    sim.client(&[with_length.as_slice(), chunked, GET_V1].concat());
    sim.server(&[ok("t"), ok("u"), ok("v")].concat());
    assert_eq!(
        summaries(&sim.conn.take_ready()),
        [
            format!("{S_PUT} -> 200"),
            "POST /latest/x aws v1 metadata -> 200".to_owned(),
            format!("{S_V1} -> 200"),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Classification through the whole pipeline

#[rustfmt::skip]
#[rstest]
#[case::lower("x-aws-ec2-metadata-token", "v2")]
#[case::canonical("X-Aws-Ec2-Metadata-Token", "v2")]
#[case::upper("X-AWS-EC2-METADATA-TOKEN", "v2")]
#[case::ttl_canonical("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", "v2")]
#[case::ttl_suffix_trap("X-aws-ec2-metadata-token-ttl-seconds-foo", "v1")]
#[case::token_suffix_trap("x-aws-ec2-metadata-token-x", "v1")]
#[case::token_prefix_trap("x-aws-ec2-metadata", "v1")]
fn header_names_are_whole_and_case_insensitive(#[case] name: &str, #[case] version: &str) {
    let mut sim = Sim::new();
    sim.client(format!("GET /latest/meta-data/ HTTP/1.1\r\n{name}: 21600\r\n\r\n").as_bytes());
    sim.server(&ok("x"));
    assert_eq!(
        summaries(&sim.conn.take_ready()),
        [format!("GET /latest/meta-data/ aws {version} metadata -> 200")]
    );
}

#[test]
fn put_with_only_the_ttl_header_is_a_v2_token_request() {
    let mut sim = Sim::new();
    sim.client(
        b"PUT /latest/api/token HTTP/1.1\r\nX-aws-ec2-metadata-token-ttl-seconds: 21600\r\n\r\n",
    );
    sim.server(&ok(CANARY));
    let got = sim.conn.take_ready();
    assert_eq!(summaries(&got), [format!("{S_PUT} -> 200")]);
    let info = got[0].request.http().cloned();
    assert!(
        info.is_some_and(|i| i.token.is_none()),
        "the ttl header is not a token"
    );
}

#[rustfmt::skip]
#[rstest]
#[case::gcp("GET /computeMetadata/v1/instance/id HTTP/1.1\r\nMetadata-Flavor: Google\r\n\r\n", "GET /computeMetadata/v1/instance/id gcp - metadata")]
#[case::azure("GET /metadata/instance?api-version=2021-02-01 HTTP/1.1\r\nMetadata: true\r\n\r\n", "GET /metadata/instance?api-version=2021-02-01 azure - metadata")]
#[case::oci("GET /opc/v2/instance/ HTTP/1.1\r\nAuthorization: Bearer Oracle\r\n\r\n", "GET /opc/v2/instance/ oci - metadata")]
#[case::ibm("PUT /instance_identity/v1/token?version=2022-03-01 HTTP/1.1\r\nMetadata-Flavor: ibm\r\n\r\n", "PUT /instance_identity/v1/token?version=2022-03-01 ibm - metadata")]
#[case::ibm_upper("GET /metadata/v1/instance HTTP/1.1\r\nMetadata-Flavor: IBM\r\n\r\n", "GET /metadata/v1/instance ibm - metadata")]
#[case::head("HEAD /latest/meta-data/ HTTP/1.1\r\n\r\n", "HEAD /latest/meta-data/ aws v1 metadata")]
#[case::dated("GET /2009-04-04/meta-data/ HTTP/1.0\r\n\r\n", "GET /2009-04-04/meta-data/ aws v1 metadata")]
#[case::unknown("GET /robots.txt HTTP/1.1\r\n\r\n", "GET /robots.txt unknown v1 metadata")]
fn flavours(#[case] request: &str, #[case] want: &str) {
    let mut sim = Sim::new();
    sim.client(request.as_bytes());
    sim.server(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(summaries(&sim.conn.take_ready()), [format!("{want} -> 404")]);
}

#[test]
fn request_fields() {
    let mut sim = Sim::new();
    sim.client(
        b"GET /latest/meta-data/ HTTP/1.0\r\nHost: 169.254.169.254\r\nUser-Agent: curl/8.5.0\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n",
    );
    let got = sim.conn.finish();
    let info = got.first().and_then(|e| e.request.http()).cloned();
    assert_eq!(
        info,
        Some(RequestInfo {
            method: "GET".into(),
            path: "/latest/meta-data/".into(),
            http_minor: 0,
            user_agent: Some("curl/8.5.0".into()),
            host: Some("169.254.169.254".into()),
            cloud: Cloud::Aws,
            version: Some(ImdsVersion::V1),
            kind: RequestKind::Metadata,
            has_forwarded_for: true,
            token: None,
        })
    );
}

#[test]
fn long_fields_are_cut() {
    let ua = "é".repeat(MAX_FIELD);
    let mut sim = Sim::new();
    sim.client(format!("GET / HTTP/1.1\r\nUser-Agent: {ua}\r\n\r\n").as_bytes());
    let got = sim.conn.finish();
    let kept = got
        .first()
        .and_then(|e| e.request.http()?.user_agent.clone());
    assert!(kept.is_some_and(|k| k.len() <= MAX_FIELD && ua.starts_with(&k)));
}

// ---------------------------------------------------------------------------------------------
// Garbage, loss, limits

#[rustfmt::skip]
#[rstest]
#[case::binary(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, b'\n'], "invalid HTTP request: invalid token")]
#[case::ssh(b"SSH-2.0-OpenSSH_9.6\r\n", "invalid HTTP request: invalid token")]
#[case::bad_header(b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", "invalid HTTP request: invalid header name")]
#[case::bad_version(b"GET / HTTP/2.0\r\n\r\n", "invalid HTTP request: invalid HTTP version")]
fn garbage_is_one_unparsed_exchange(#[case] garbage: &[u8], #[case] reason: &str) {
    let mut sim = Sim::new();
    sim.client(garbage);
    sim.client(GET_V1); // ignored: the stream is not HTTP
    sim.server(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    sim.conn.on_close(Direction::Response);
    let got = sim.conn.take_ready();
    assert_eq!(summaries(&got), [format!("unparsed: {reason} -> 400")]);
    assert!(sim.conn.finish().is_empty());
}

#[test]
fn garbage_without_newline_is_reported_when_the_stream_ends() {
    let mut sim = Sim::new();
    sim.client(b"\x00\x01\x02 not http");
    assert!(sim.conn.take_ready().is_empty());
    sim.conn.on_close(Direction::Request);
    sim.conn.on_close(Direction::Response);
    assert!(sim.conn.is_closed());
    assert_eq!(
        summaries(&sim.conn.take_ready()),
        ["unparsed: invalid HTTP request: invalid token -> none"]
    );
}

#[test]
fn valid_requests_before_garbage_are_kept() {
    let mut sim = Sim::new();
    sim.client(&[PUT, b"\x7fELF garbage\r\n\r\n"].concat());
    let got = sim.conn.finish();
    assert_eq!(
        summaries(&got),
        [
            format!("{S_PUT} -> none"),
            "unparsed: invalid HTTP request: invalid token -> none".to_owned()
        ]
    );
}

#[test]
fn unparsed_never_holds_raw_bytes() {
    let mut sim = Sim::new();
    sim.client(format!("GET / HTTP/1.1\r\nbroken {CANARY}\r\n\r\n").as_bytes());
    let debug = format!("{:?}", sim.conn.finish());
    assert!(debug.contains("Unparsed"), "{debug}");
    assert!(!debug.contains(CANARY), "{debug}");
}

#[test]
fn incomplete_request_at_close() {
    let mut sim = Sim::new();
    sim.client(b"GET /latest/meta-data/ HTTP/1.1\r\nHost: 169.2");
    assert_eq!(
        summaries(&sim.conn.finish()),
        ["unparsed: incomplete request -> none"]
    );
}

#[test]
fn headers_too_large() {
    let huge = format!(
        "GET / HTTP/1.1\r\nX-Big: {}\r\n",
        "a".repeat(http::MAX_HEAD)
    );
    for cuts in [vec![], vec![10], (0..huge.len()).step_by(1000).collect()] {
        let mut sim = Sim::new();
        sim.send_cut(Direction::Request, huge.as_bytes(), &cuts);
        let got = sim.conn.finish();
        assert_eq!(
            summaries(&got),
            ["unparsed: headers too large -> none"],
            "cuts {cuts:?}"
        );
    }
}

#[test]
fn too_many_headers() {
    let many: String = (0..=http::MAX_HEADERS)
        .map(|i| format!("X-H{i}: v\r\n"))
        .collect();
    let mut sim = Sim::new();
    sim.client(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes());
    assert_eq!(
        summaries(&sim.conn.finish()),
        ["unparsed: too many headers -> none"]
    );
}

#[test]
fn gap_between_requests_is_bytes_lost() {
    let mut sim = Sim::new();
    sim.client(PUT);
    sim.lose(Direction::Request, 120);
    sim.client(GET_V1);
    sim.server(&[ok(CANARY), ok("lost one"), ok("i-1")].concat());
    let got = sim.conn.take_ready();
    assert_eq!(
        summaries(&got),
        [
            format!("{S_PUT} -> 200"),
            "unparsed: bytes lost -> 200".to_owned()
        ]
    );
    assert!(matches!(&got[1].request, RequestRecord::Unparsed(u) if u.bytes == 120));
}

#[test]
fn gap_inside_a_request_head_is_bytes_lost() {
    let mut sim = Sim::new();
    sim.client(&GET_V1[..10]);
    sim.lose(Direction::Request, 5);
    sim.client(&GET_V1[15..]);
    assert_eq!(
        summaries(&sim.conn.finish()),
        ["unparsed: bytes lost -> none"]
    );
}

#[test]
fn gap_inside_a_request_body_is_harmless() {
    let head = b"PUT /latest/api/token HTTP/1.1\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\nContent-Length: 100\r\n\r\n";
    let mut sim = Sim::new();
    sim.client(head);
    sim.client(&[b'x'; 30]);
    sim.lose(Direction::Request, 50);
    sim.client(&[b'x'; 20]);
    sim.client(GET_V1);
    sim.server(&[ok("t"), ok("i")].concat());
    assert_eq!(
        summaries(&sim.conn.take_ready()),
        [format!("{S_PUT} -> 200"), format!("{S_V1} -> 200")]
    );
}

#[test]
fn gap_inside_a_response_body_is_harmless() {
    let mut sim = Sim::new();
    sim.client(&[PUT, GET_V1].concat());
    let first = ok(CANARY);
    let body_start = first.len() - CANARY.len();
    sim.server(&first[..body_start + 5]);
    sim.lose(Direction::Response, 10);
    sim.server(&first[body_start + 15..]);
    sim.server(UNAUTHORIZED);
    assert_eq!(
        summaries(&sim.conn.take_ready()),
        [format!("{S_PUT} -> 200"), format!("{S_V1} -> 401")]
    );
    assert!(!sim.conn.response_tracking_lost());
}

#[test]
fn gap_in_a_response_head_makes_responses_unknown() {
    let mut sim = Sim::new();
    sim.client(&[PUT, GET_V1].concat());
    sim.server(&ok(CANARY));
    sim.lose(Direction::Response, 20);
    sim.server(&UNAUTHORIZED[20..]);
    assert_eq!(
        summaries(&sim.conn.take_ready()),
        [format!("{S_PUT} -> 200"), format!("{S_V1} -> none")]
    );
    assert!(sim.conn.response_tracking_lost());
}

#[test]
fn garbage_response_makes_responses_unknown() {
    let mut sim = Sim::new();
    sim.client(GET_V1);
    sim.server(b"\x00\x00garbage\r\n\r\n");
    assert_eq!(
        summaries(&sim.conn.take_ready()),
        [format!("{S_V1} -> none")]
    );
    assert!(sim.conn.response_tracking_lost());
}

#[test]
fn too_many_unanswered_requests_are_released() {
    let mut sim = Sim::new();
    for _ in 0..MAX_WAITING + 3 {
        sim.client(GET_V1);
    }
    let released = sim.conn.take_ready();
    assert_eq!(released.len(), 3);
    assert!(sim.conn.response_tracking_lost());
    // The first three responses belong to the released requests and are discarded.
    for _ in 0..4 {
        sim.server(UNAUTHORIZED);
    }
    let got = sim.conn.take_ready();
    assert_eq!(summaries(&got), [format!("{S_V1} -> 401")]);
    assert_eq!(sim.conn.finish().len(), MAX_WAITING - 1);
}

// ---------------------------------------------------------------------------------------------
// Reassembly through the whole pipeline

#[test]
fn retransmitted_and_overlapping_segments_do_not_duplicate_requests() {
    let stream = [PUT, GET_V1].concat();
    let mut conn = Connection::new();
    conn.on_syn(Direction::Request, 99);
    conn.on_data(Direction::Request, 100, &stream[..50]);
    conn.on_data(Direction::Request, 100, &stream[..50]); // exact retransmit
    conn.on_data(Direction::Request, 130, &stream[30..120]); // overlaps both sides
    conn.on_data(Direction::Request, 100, &stream); // everything again
    conn.on_data(Direction::Request, 100, &stream);
    conn.on_data(Direction::Response, 7, &[ok("t"), ok("i")].concat());
    conn.on_data(Direction::Response, 7, &ok("t")); // retransmitted response
    assert_eq!(
        summaries(&conn.take_ready()),
        [format!("{S_PUT} -> 200"), format!("{S_V1} -> 200")]
    );
    assert!(conn.finish().is_empty());
}

#[test]
fn out_of_order_segments() {
    let stream = [PUT, GET_V1].concat();
    let mut conn = Connection::new();
    conn.on_syn(Direction::Request, 0);
    conn.on_data(Direction::Request, 121, &stream[120..]);
    conn.on_data(Direction::Request, 41, &stream[40..120]);
    assert!(conn.finish_is_pending());
    conn.on_data(Direction::Request, 1, &stream[..40]);
    conn.on_data(
        Direction::Response,
        1,
        &[ok("t"), UNAUTHORIZED.to_vec()].concat(),
    );
    assert_eq!(
        summaries(&conn.take_ready()),
        [format!("{S_PUT} -> 200"), format!("{S_V1} -> 401")]
    );
}

impl Connection {
    /// Test helper: nothing has come out yet.
    fn finish_is_pending(&self) -> bool {
        self.pairing.ready.is_empty() && self.pairing.waiting.is_empty()
    }
}

#[rstest]
#[case::before(u32::MAX - 300)]
#[case::at(u32::MAX - 1)]
#[case::max(u32::MAX)]
#[case::inside_put(u32::MAX - 50)]
fn sequence_wraparound(#[case] isn: u32) {
    let mut sim = Sim::with_isn(isn, isn.wrapping_sub(17));
    sim.send_cut(
        Direction::Request,
        &[PUT, &get_v2()].concat(),
        &[13, 99, 140],
    );
    sim.send_cut(
        Direction::Response,
        &[ok(CANARY), ok("x")].concat(),
        &[5, 80],
    );
    assert_eq!(
        summaries(&sim.conn.take_ready()),
        [format!("{S_PUT} -> 200"), format!("{S_V2} -> 200")]
    );
}

#[test]
fn no_syn_first_segment_sets_the_base() {
    let mut conn = Connection::new();
    conn.on_data(Direction::Request, 777, GET_V1);
    conn.on_data(Direction::Response, 123_456, UNAUTHORIZED);
    assert_eq!(summaries(&conn.take_ready()), [format!("{S_V1} -> 401")]);
}

// ---------------------------------------------------------------------------------------------
// Unanswered requests (hop limit)

#[test]
fn unanswered_token_put_comes_out_of_finish() {
    let mut sim = Sim::new();
    sim.client(PUT);
    // The PUT's answer leaves with TTL 1 and dies one hop short; the client gives up.
    sim.conn.on_close(Direction::Request);
    assert!(
        sim.conn.take_ready().is_empty(),
        "response stream still open"
    );
    assert!(!sim.conn.is_closed());
    assert_eq!(summaries(&sim.conn.finish()), [format!("{S_PUT} -> none")]);
    assert!(!sim.conn.response_tracking_lost());
    assert!(sim.conn.is_closed());
}

#[test]
fn unanswered_requests_come_out_when_the_response_stream_ends() {
    let mut sim = Sim::new();
    sim.client(&[GET_V1, PUT].concat());
    sim.server(UNAUTHORIZED);
    sim.conn.on_close(Direction::Response);
    assert_eq!(
        summaries(&sim.conn.take_ready()),
        [format!("{S_V1} -> 401"), format!("{S_PUT} -> none")]
    );
    sim.client(GET_V1); // after the server closed: no answer can come
    assert_eq!(
        summaries(&sim.conn.take_ready()),
        [format!("{S_V1} -> none")]
    );
}

#[test]
fn reset_closes_both_directions() {
    let mut sim = Sim::new();
    sim.client(PUT);
    sim.conn.on_reset();
    assert!(sim.conn.is_closed());
    assert_eq!(
        summaries(&sim.conn.take_ready()),
        [format!("{S_PUT} -> none")]
    );
}

// ---------------------------------------------------------------------------------------------
// Secrets

#[test]
fn token_never_appears_in_debug_output() {
    let mut sim = Sim::new();
    sim.client(&get_v2());
    sim.server(&ok("x"));
    let got = sim.conn.take_ready();
    let token = got.first().and_then(|e| e.request.http()?.token.clone());
    assert_eq!(token.as_ref().map(Secret::expose), Some(CANARY));
    for text in [
        format!("{got:?}"),
        format!("{got:#?}"),
        format!("{:?}", got[0].request),
        format!("{token:?}"),
        token.as_ref().map(ToString::to_string).unwrap_or_default(),
    ] {
        assert!(!text.contains(CANARY), "{text}");
        assert!(!text.contains("CANARY"), "{text}");
    }
    assert!(format!("{got:?}").contains("[REDACTED]"));
}

#[test]
fn enum_names() {
    let all = [
        Cloud::Aws,
        Cloud::Gcp,
        Cloud::Azure,
        Cloud::Oci,
        Cloud::Ibm,
        Cloud::Unknown,
    ];
    let names: Vec<_> = all.iter().map(|c| c.as_str()).collect();
    assert_eq!(names, ["aws", "gcp", "azure", "oci", "ibm", "unknown"]);
    assert_eq!(
        (ImdsVersion::V1.as_str(), ImdsVersion::V2.as_str()),
        ("v1", "v2")
    );
    assert_eq!(
        (
            RequestKind::TokenRequest.as_str(),
            RequestKind::Metadata.as_str()
        ),
        ("token", "metadata")
    );
}

// ---------------------------------------------------------------------------------------------
// Real botocore requests (captured by fixtures/capture_botocore.py)

const BOTOCORE_VERSION: &str = "1.44.5";
const BOTOCORE_PUT: &[u8] = include_bytes!("fixtures/botocore-1.44.5-token-put.http");
const BOTOCORE_GET: &[u8] = include_bytes!("fixtures/botocore-1.44.5-get-with-token.http");
const BOTOCORE_KEEPALIVE: &[u8] = include_bytes!("fixtures/botocore-1.44.5-keepalive.http");
const BOTOCORE_FALLBACK_PUT: &[u8] = include_bytes!("fixtures/botocore-1.44.5-fallback-put.http");
const BOTOCORE_FALLBACK_GETS: &[u8] =
    include_bytes!("fixtures/botocore-1.44.5-fallback-v1-gets.http");

/// What the tests compare across splits: method, path, cloud, version, kind, User-Agent, token.
fn classification(exchanges: &[Exchange]) -> Vec<String> {
    exchanges
        .iter()
        .map(|e| match &e.request {
            RequestRecord::Http(i) => format!(
                "{} {} {} {} {} ua={:?} token={:?}",
                i.method,
                i.path,
                i.cloud,
                i.version.map_or("-", ImdsVersion::as_str),
                i.kind,
                i.user_agent,
                i.token.as_ref().map(Secret::expose),
            ),
            RequestRecord::Unparsed(u) => format!("unparsed {u:?}"),
        })
        .collect()
}

fn feed_cut(stream: &[u8], cuts: &[usize]) -> Vec<Exchange> {
    let mut sim = Sim::new();
    sim.send_cut(Direction::Request, stream, cuts);
    sim.conn.finish()
}

fn botocore_ua() -> String {
    format!("Some(\"Botocore/{BOTOCORE_VERSION} Python/3.11.7 Linux/6.18.44-fc-v595\")")
}

#[test]
fn botocore_fixtures_classify() {
    let ua = botocore_ua();
    let token = format!("Some({CANARY:?})");
    let role = "/latest/meta-data/iam/security-credentials/";
    assert_eq!(
        classification(&feed_cut(BOTOCORE_KEEPALIVE, &[])),
        [
            format!("PUT /latest/api/token aws v2 token ua={ua} token=None"),
            format!("GET {role} aws v2 metadata ua={ua} token={token}"),
            format!("GET {role}test-role aws v2 metadata ua={ua} token={token}"),
        ]
    );
    // The hop-limit fallback: the PUT goes unanswered, then tokenless GETs on a new connection.
    let put = feed_cut(BOTOCORE_FALLBACK_PUT, &[]);
    assert_eq!(summaries(&put), [format!("{S_PUT} -> none")]);
    assert_eq!(
        classification(&feed_cut(BOTOCORE_FALLBACK_GETS, &[])),
        [
            format!("GET {role} aws v1 metadata ua={ua} token=None"),
            format!("GET {role}test-role aws v1 metadata ua={ua} token=None"),
        ]
    );
}

#[test]
fn botocore_split_at_every_offset() {
    for stream in [
        BOTOCORE_PUT,
        BOTOCORE_GET,
        BOTOCORE_KEEPALIVE,
        BOTOCORE_FALLBACK_GETS,
    ] {
        let whole = classification(&feed_cut(stream, &[]));
        assert!(!whole.is_empty() && whole.iter().all(|c| !c.starts_with("unparsed")));
        for cut in 0..=stream.len() {
            assert_eq!(
                classification(&feed_cut(stream, &[cut])),
                whole,
                "cut at {cut}"
            );
        }
    }
}

#[test]
fn botocore_put_split_at_every_pair_of_offsets() {
    let whole = classification(&feed_cut(BOTOCORE_PUT, &[]));
    assert_eq!(whole.len(), 1);
    for a in 0..=BOTOCORE_PUT.len() {
        for b in a..=BOTOCORE_PUT.len() {
            assert_eq!(
                classification(&feed_cut(BOTOCORE_PUT, &[a, b])),
                whole,
                "cuts at {a}, {b}"
            );
        }
    }
}

#[test]
fn botocore_keepalive_every_segment_retransmitted() {
    // Each segment sent twice and the stream cut at every offset: nothing is duplicated.
    let whole = classification(&feed_cut(BOTOCORE_KEEPALIVE, &[]));
    for cut in 0..=BOTOCORE_KEEPALIVE.len() {
        let mut conn = Connection::new();
        let (a, b) = BOTOCORE_KEEPALIVE.split_at(cut);
        conn.on_data(Direction::Request, 5, a);
        conn.on_data(Direction::Request, 5 + cut as u32, b);
        conn.on_data(Direction::Request, 5, a);
        conn.on_data(Direction::Request, 5 + cut as u32, b);
        assert_eq!(classification(&conn.finish()), whole, "cut at {cut}");
    }
}

// ---------------------------------------------------------------------------------------------
// Property tests

/// Request/response pairs that make a valid stream when concatenated in any order.
fn pool() -> Vec<(Vec<u8>, Vec<u8>)> {
    vec![
        (PUT.to_vec(), ok(CANARY)),
        (get_v2(), ok("ami-1")),
        (GET_V1.to_vec(), UNAUTHORIZED.to_vec()),
        (
            b"HEAD /latest/meta-data/ HTTP/1.1\r\nX-Aws-Ec2-Metadata-Token: t\r\n\r\n".to_vec(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n".to_vec(),
        ),
        (
            b"PUT /latest/api/token HTTP/1.1\r\nX-AWS-EC2-METADATA-TOKEN-TTL-SECONDS: 5\r\nContent-Length: 3\r\n\r\nabc".to_vec(),
            b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nno\r\n0\r\n\r\n".to_vec(),
        ),
        (
            b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n3\r\nabc\r\n0\r\n\r\n".to_vec(),
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
        ),
        (
            b"GET /computeMetadata/v1/ HTTP/1.1\r\nmetadata-flavor: Google\r\n\r\n".to_vec(),
            b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nx".to_vec(),
        ),
        (BOTOCORE_GET.to_vec(), ok("role")),
        (
            b"\r\nGET /2021-01-03/dynamic/ HTTP/1.0\r\nUser-Agent: x\r\n\r\n".to_vec(),
            b"HTTP/1.0 204 No Content\r\n\r\n".to_vec(),
        ),
    ]
}

fn cuts_strategy(max_len: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0..=max_len, 0..12).prop_map(|mut v| {
        v.sort_unstable();
        v
    })
}

#[derive(Debug, Clone)]
enum Op {
    Syn(bool, u32),
    Data(bool, u32, Vec<u8>),
    Gap(bool, u32, u32),
    Close(bool),
    Take,
}

fn dir(request: bool) -> Direction {
    if request {
        Direction::Request
    } else {
        Direction::Response
    }
}

fn op_strategy() -> impl Strategy<Value = Op> {
    // Sequence numbers near the wrap, so that base, reordering and wrap all get exercised.
    let seq = prop_oneof![0u32..300, (u32::MAX - 300)..=u32::MAX, any::<u32>()];
    let bytes = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        prop::sample::select(pool()).prop_map(|(q, r)| [q, r].concat()),
    ];
    prop_oneof![
        1 => (any::<bool>(), seq.clone()).prop_map(|(d, s)| Op::Syn(d, s)),
        4 => (any::<bool>(), seq.clone(), bytes).prop_map(|(d, s, b)| Op::Data(d, s, b)),
        1 => (any::<bool>(), seq, prop_oneof![0u32..100, any::<u32>()]).prop_map(|(d, s, n)| Op::Gap(d, s, n)),
        1 => any::<bool>().prop_map(Op::Close),
        1 => Just(Op::Take),
    ]
}

proptest! {
    #[test]
    fn arbitrary_bytes_and_splits_never_panic(
        request in prop::collection::vec(any::<u8>(), 0..600),
        response in prop::collection::vec(any::<u8>(), 0..600),
        request_cuts in cuts_strategy(600),
        response_cuts in cuts_strategy(600),
        isn in any::<u32>(),
    ) {
        let mut sim = Sim::with_isn(isn, isn ^ 0x5555_5555);
        sim.send_cut(Direction::Request, &request, &request_cuts);
        sim.send_cut(Direction::Response, &response, &response_cuts);
        let mut all = sim.conn.take_ready();
        all.extend(sim.conn.finish());
        let unparsed = all.iter().filter(|e| matches!(e.request, RequestRecord::Unparsed(_))).count();
        prop_assert!(unparsed <= 1);
        if let Some(last) = all.iter().position(|e| matches!(e.request, RequestRecord::Unparsed(_))) {
            prop_assert_eq!(last, all.len() - 1, "nothing parsed after Unparsed");
        }
    }

    #[test]
    fn arbitrary_event_sequences_never_panic(ops in prop::collection::vec(op_strategy(), 0..40)) {
        let mut conn = Connection::new();
        let mut out = Vec::new();
        for op in ops {
            match op {
                Op::Syn(d, isn) => conn.on_syn(dir(d), isn),
                Op::Data(d, seq, bytes) => conn.on_data(dir(d), seq, &bytes),
                Op::Gap(d, seq, len) => conn.on_gap(dir(d), seq, len),
                Op::Close(d) => conn.on_close(dir(d)),
                Op::Take => out.extend(conn.take_ready()),
            }
        }
        out.extend(conn.finish());
        prop_assert!(conn.is_closed());
        prop_assert!(conn.finish().is_empty());
        let unparsed = out.iter().filter(|e| matches!(e.request, RequestRecord::Unparsed(_))).count();
        prop_assert!(unparsed <= 1);
    }

    #[test]
    fn valid_stream_split_randomly_classifies_as_unsplit(
        picks in prop::collection::vec(prop::sample::select(pool()), 1..8),
        request_cuts in cuts_strategy(1500),
        response_cuts in cuts_strategy(1500),
        responses_first in any::<bool>(),
        isn in any::<u32>(),
    ) {
        let requests: Vec<u8> = picks.iter().flat_map(|(q, _)| q.clone()).collect();
        let responses: Vec<u8> = picks.iter().flat_map(|(_, r)| r.clone()).collect();

        let mut whole = Sim::new();
        whole.client(&requests);
        whole.server(&responses);
        let want = whole.conn.take_ready();
        prop_assert_eq!(want.len(), picks.len());
        prop_assert!(want.iter().all(|e| e.response.is_some() && e.request.http().is_some()));

        // A response parsed before its request is framed as if that request were not HEAD
        // (documented limitation), so HEAD is only tested in causal order.
        let has_head = picks.iter().any(|(q, _)| q.starts_with(b"HEAD"));
        let mut split = Sim::with_isn(isn, isn.wrapping_add(0x8000_0000));
        if responses_first && !has_head {
            split.send_cut(Direction::Response, &responses, &response_cuts);
            split.send_cut(Direction::Request, &requests, &request_cuts);
        } else {
            split.send_cut(Direction::Request, &requests, &request_cuts);
            split.send_cut(Direction::Response, &responses, &response_cuts);
        }
        let got = split.conn.take_ready();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn reordered_and_duplicated_segments_classify_as_in_order(
        picks in prop::collection::vec(prop::sample::select(pool()), 1..6),
        cuts in cuts_strategy(1000),
        order in Just((0..13usize).collect::<Vec<_>>()).prop_shuffle(),
        duplicate in prop::collection::vec(any::<bool>(), 13),
        isn in any::<u32>(),
    ) {
        let requests: Vec<u8> = picks.iter().flat_map(|(q, _)| q.clone()).collect();
        let want = classification(&feed_cut(&requests, &[]));

        let mut bounds: Vec<usize> = cuts.into_iter().map(|c| c.min(requests.len())).collect();
        bounds.insert(0, 0);
        bounds.push(requests.len());
        let segments: Vec<(usize, usize)> = bounds.windows(2).map(|w| (w[0], w[1])).collect();
        let mut conn = Connection::new();
        conn.on_syn(Direction::Request, isn);
        for &i in order.iter().filter(|&&i| i < segments.len()) {
            let (start, end) = segments[i];
            let seq = isn.wrapping_add(1).wrapping_add(start as u32);
            conn.on_data(Direction::Request, seq, &requests[start..end]);
            if duplicate[i] {
                conn.on_data(Direction::Request, seq, &requests[start..end]);
            }
        }
        prop_assert_eq!(classification(&conn.finish()), want);
    }
}
