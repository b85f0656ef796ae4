//! Per-connection HTTP classification of metadata-service traffic. Pure: no I/O, no kernel.
//!
//! The kernel side hands us, per TCP connection, the payload of each direction with its
//! sequence numbers, plus SYN/FIN/RST notices and ranges it knows it lost. A [`Connection`]
//! turns that into one [`Exchange`] per HTTP request, in three layers:
//!
//! 1. [`stream`]: reassembly per direction. Duplicates and overlaps are trimmed, out-of-order
//!    segments wait in a buffer bounded to 64 KiB; sequence numbers wrap. What comes out is
//!    bytes in order, or "n bytes lost".
//! 2. [`http`]: HTTP/1.x framing per direction with `httparse`. Heads may be split at any byte
//!    (buffered up to 16 KiB), several messages may share one piece; bodies are skipped by
//!    `Content-Length` / chunked / no-body rules, never buffered. A request stream that is not
//!    HTTP, or loses bytes outside a body, yields one [`RequestRecord::Unparsed`] and is then
//!    ignored. A response stream that does is ignored from there on.
//! 3. [`rules`]: what each request is: which cloud, IMDSv1 or IMDSv2, token request or
//!    metadata read ([`classify_request`]). Header names are matched whole, case-insensitively.
//!
//! Responses are paired with requests first-in first-out (HTTP/1.1 has no other order;
//! interim 1xx responses are skipped). A response is normally parsed after its request (the
//! kernel reports in causal order); one parsed first waits for its request, but its body is
//! framed as if that request were not HEAD. An exchange is ready once its response status is known,
//! or once the response stream has ended without one: that is how an unanswered token PUT
//! (the hop-limit case) shows up, as `response: None`. When response bytes were lost,
//! [`Connection::response_tracking_lost`] says that `None` proves nothing.
//!
//! Nothing here panics on input, and every buffer is bounded. Token values are kept only in
//! [`Secret`], which never prints them.

mod http;
mod rules;
mod stream;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fmt;

pub use rules::{MAX_FIELD, TOKEN_HEADER, TOKEN_PATH, TOKEN_TTL_HEADER, classify_request};

/// Most requests kept waiting for their responses per connection. Beyond that the oldest is
/// released with `response: None` (and its response, when it comes, is discarded).
pub const MAX_WAITING: usize = 128;
/// Most responses kept waiting for their requests (seen before them) per connection.
const MAX_EARLY: usize = 128;

/// Which way bytes travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client to metadata service.
    Request,
    /// Metadata service to client.
    Response,
}

/// One HTTP request and, when seen, the status of its response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    pub request: RequestRecord,
    pub response: Option<ResponseInfo>,
}

/// A parsed request, or what was on the wire instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestRecord {
    Http(RequestInfo),
    Unparsed(UnparsedInfo),
}

impl RequestRecord {
    /// The parsed request, if it was HTTP.
    pub fn http(&self) -> Option<&RequestInfo> {
        match self {
            RequestRecord::Http(info) => Some(info),
            RequestRecord::Unparsed(_) => None,
        }
    }
}

/// Why a request stream could not be parsed. Never holds the bytes themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnparsedInfo {
    pub reason: String,
    /// How many bytes were given up on when parsing stopped.
    pub bytes: usize,
}

/// The part of a response that matters: its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseInfo {
    pub status: u16,
}

/// One parsed request. Path, User-Agent and Host are cut at [`MAX_FIELD`] bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    pub method: String,
    /// The request target as sent (query included).
    pub path: String,
    /// `1` for HTTP/1.1, `0` for HTTP/1.0.
    pub http_minor: u8,
    pub user_agent: Option<String>,
    pub host: Option<String>,
    pub cloud: Cloud,
    /// `None` for other clouds' metadata services: those are not IMDSv1 calls.
    pub version: Option<ImdsVersion>,
    pub kind: RequestKind,
    /// `X-Forwarded-For` present (IMDS refuses such token PUTs with 403).
    pub has_forwarded_for: bool,
    /// The token value the request carried, for redacting it elsewhere. Never printable.
    pub token: Option<Secret>,
}

/// Whose metadata service a request is for (they share 169.254.169.254).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Cloud {
    Aws,
    Gcp,
    Azure,
    Oci,
    Ibm,
    Unknown,
}

impl Cloud {
    pub fn as_str(self) -> &'static str {
        match self {
            Cloud::Aws => "aws",
            Cloud::Gcp => "gcp",
            Cloud::Azure => "azure",
            Cloud::Oci => "oci",
            Cloud::Ibm => "ibm",
            Cloud::Unknown => "unknown",
        }
    }
}

/// IMDSv1 (no token header) or IMDSv2 (either token header), by AWS's own definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImdsVersion {
    V1,
    V2,
}

impl ImdsVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            ImdsVersion::V1 => "v1",
            ImdsVersion::V2 => "v2",
        }
    }
}

/// A session-token request (`PUT /latest/api/token`) or anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum RequestKind {
    #[serde(rename = "token")]
    TokenRequest,
    #[serde(rename = "metadata")]
    Metadata,
}

impl RequestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::TokenRequest => "token",
            RequestKind::Metadata => "metadata",
        }
    }
}

macro_rules! display_as_str {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}
display_as_str!(Cloud, ImdsVersion, RequestKind);

/// A token value. Prints as `[REDACTED]` and is deliberately not `Serialize`; use
/// [`Secret::expose`] only to redact it from other text.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// State of the response direction, as far as pairing is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Responses {
    Open,
    /// Ended cleanly: a request still waiting was not answered.
    Ended,
    /// Bytes lost or not HTTP: a request still waiting may or may not have been answered.
    Lost,
}

/// FIFO pairing of requests with responses.
#[derive(Debug)]
struct Pairing {
    ready: Vec<Exchange>,
    waiting: VecDeque<RequestRecord>,
    /// Responses parsed before their requests (the two directions are fed independently).
    early: VecDeque<ResponseInfo>,
    /// Responses still to come for requests released early (over [`MAX_WAITING`]).
    discard: usize,
    responses: Responses,
    /// Some `None` response may hide a response that was there.
    uncertain: bool,
}

impl Pairing {
    fn new() -> Self {
        Self {
            ready: Vec::new(),
            waiting: VecDeque::new(),
            early: VecDeque::new(),
            discard: 0,
            responses: Responses::Open,
            uncertain: false,
        }
    }
}

impl http::Sink for Pairing {
    fn request(&mut self, request: RequestRecord) {
        if let Some(response) = self.early.pop_front() {
            self.ready.push(Exchange {
                request,
                response: Some(response),
            });
        } else if self.responses != Responses::Open {
            self.ready.push(Exchange {
                request,
                response: None,
            });
        } else {
            self.waiting.push_back(request);
            if self.waiting.len() > MAX_WAITING
                && let Some(request) = self.waiting.pop_front()
            {
                self.ready.push(Exchange {
                    request,
                    response: None,
                });
                self.discard += 1;
                self.uncertain = true;
            }
        }
    }

    fn response(&mut self, response: ResponseInfo) {
        if self.discard > 0 {
            self.discard -= 1;
        } else if let Some(request) = self.waiting.pop_front() {
            self.ready.push(Exchange {
                request,
                response: Some(response),
            });
        } else if self.early.len() < MAX_EARLY {
            self.early.push_back(response);
        } else {
            // Far more responses than requests: pairing is meaningless from here on.
            self.early.clear();
            self.responses_end(true);
        }
    }

    fn next_method(&self) -> Option<&str> {
        if self.discard > 0 || !self.early.is_empty() {
            return None;
        }
        self.waiting
            .front()
            .and_then(RequestRecord::http)
            .map(|info| info.method.as_str())
    }

    fn responses_end(&mut self, lost: bool) {
        if lost {
            self.responses = Responses::Lost;
            self.uncertain = true;
        } else if self.responses == Responses::Open {
            self.responses = Responses::Ended;
        }
        self.ready
            .extend(self.waiting.drain(..).map(|request| Exchange {
                request,
                response: None,
            }));
    }
}

/// One TCP connection to a metadata service, both directions.
#[derive(Debug)]
pub struct Connection {
    request_stream: stream::Reassembler,
    response_stream: stream::Reassembler,
    request_parser: http::RequestParser,
    response_parser: http::ResponseParser,
    pairing: Pairing,
}

impl Default for Connection {
    fn default() -> Self {
        Self::new()
    }
}

impl Connection {
    pub fn new() -> Self {
        Self {
            request_stream: stream::Reassembler::default(),
            response_stream: stream::Reassembler::default(),
            request_parser: http::RequestParser::default(),
            response_parser: http::ResponseParser::default(),
            pairing: Pairing::new(),
        }
    }

    /// SYN seen in `dir` with initial sequence number `isn` (first data byte is `isn + 1`).
    pub fn on_syn(&mut self, dir: Direction, isn: u32) {
        match dir {
            Direction::Request => self.request_stream.syn(isn),
            Direction::Response => self.response_stream.syn(isn),
        }
    }

    /// Payload bytes whose first byte has TCP sequence `seq`. Duplicates, overlaps and
    /// reordering are handled; if no SYN was seen, the first segment sets the base.
    pub fn on_data(&mut self, dir: Direction, seq: u32, data: &[u8]) {
        let Self {
            request_stream,
            response_stream,
            request_parser,
            response_parser,
            pairing,
        } = self;
        match dir {
            Direction::Request => {
                request_stream.data(seq, data, &mut |piece| request_parser.feed(piece, pairing));
            }
            Direction::Response => {
                response_stream.data(seq, data, &mut |piece| response_parser.feed(piece, pairing));
            }
        }
    }

    /// Bytes `[seq, seq + len)` of `dir` are known lost (capture truncated, ring buffer loss).
    pub fn on_gap(&mut self, dir: Direction, seq: u32, len: u32) {
        let Self {
            request_stream,
            response_stream,
            request_parser,
            response_parser,
            pairing,
        } = self;
        match dir {
            Direction::Request => {
                request_stream.gap(seq, len, &mut |piece| request_parser.feed(piece, pairing));
            }
            Direction::Response => {
                response_stream.gap(seq, len, &mut |piece| response_parser.feed(piece, pairing));
            }
        }
    }

    /// FIN or RST seen in `dir`: no more data will be taken in that direction.
    pub fn on_close(&mut self, dir: Direction) {
        let Self {
            request_stream,
            response_stream,
            request_parser,
            response_parser,
            pairing,
        } = self;
        match dir {
            Direction::Request => {
                request_stream.close(&mut |piece| request_parser.feed(piece, pairing));
                request_parser.finish(pairing);
            }
            Direction::Response => {
                response_stream.close(&mut |piece| response_parser.feed(piece, pairing));
                response_parser.finish(pairing);
            }
        }
    }

    /// RST: both directions are over.
    pub fn on_reset(&mut self) {
        self.on_close(Direction::Request);
        self.on_close(Direction::Response);
    }

    /// Exchanges complete so far (request + its response, or request known to be unanswered
    /// because the response stream ended), in request order. Removes them.
    pub fn take_ready(&mut self) -> Vec<Exchange> {
        std::mem::take(&mut self.pairing.ready)
    }

    /// Connection gone (closed or idle timeout): everything still pending; requests without a
    /// response get `response: None`.
    pub fn finish(&mut self) -> Vec<Exchange> {
        self.on_reset();
        self.take_ready()
    }

    /// Requests parsed but not yet answered, oldest first (nothing is removed).
    pub fn awaiting_response(&self) -> impl Iterator<Item = &RequestRecord> {
        self.pairing.waiting.iter()
    }

    /// True once both directions closed (or RST).
    pub fn is_closed(&self) -> bool {
        self.request_stream.is_closed() && self.response_stream.is_closed()
    }

    /// True when response bytes were lost or unparseable (or too many requests went
    /// unanswered to pair them all): then `response: None` on this connection's exchanges does
    /// not prove the request went unanswered.
    pub fn response_tracking_lost(&self) -> bool {
        self.pairing.uncertain
    }
}
