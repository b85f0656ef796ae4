//! HTTP/1.x message framing for each direction of a connection.
//!
//! [`RequestParser`] and [`ResponseParser`] take the reassembled stream piece by piece (split
//! anywhere), parse each head with `httparse`, skip bodies by their framing, and report to a
//! [`Sink`]: every request as a [`RequestRecord`], every final response status. Heads are
//! buffered up to [`MAX_HEAD`] bytes; bodies are counted, never buffered.

use super::rules;
use super::stream::Piece;
use super::{RequestRecord, ResponseInfo, UnparsedInfo};

/// Largest request or response head (request line + headers) buffered.
pub const MAX_HEAD: usize = 16 * 1024;
/// Most headers parsed in one head.
pub const MAX_HEADERS: usize = 100;
/// Longest chunk-size line or trailer section of a chunked body.
const MAX_CHUNK_LINE: usize = 1024;

const LOST: &str = "bytes lost";
const TOO_LARGE: &str = "headers too large";
const TOO_MANY: &str = "too many headers";
const INCOMPLETE: &str = "incomplete request";
const UNFRAMEABLE: &str = "request body framing unknown";

/// Receives what the parsers find, and tells the response parser which request a response
/// answers (a response to HEAD has no body).
pub trait Sink {
    fn request(&mut self, record: RequestRecord);
    fn response(&mut self, response: ResponseInfo);
    /// Method of the request the next final response answers, if known.
    fn next_method(&self) -> Option<&str>;
    /// No more responses will be parsed; `lost` when that is because bytes were lost or were
    /// not HTTP, rather than because the stream ended cleanly.
    fn responses_end(&mut self, lost: bool);
}

/// How a message body is delimited, and how much of it is left.
#[derive(Debug)]
enum Body {
    Length(u64),
    Chunked(Chunked),
    UntilClose,
}

#[derive(Debug)]
enum Chunked {
    /// Reading a chunk-size line.
    Size(Vec<u8>),
    /// Inside chunk data, this many bytes left.
    Data(u64),
    /// Reading the line break after chunk data.
    DataEnd(Vec<u8>),
    /// Reading trailer lines after the last chunk; the line so far and the section's size.
    Trailer(Vec<u8>, usize),
}

/// Outcome of feeding bytes to a body.
enum BodyStep {
    /// All input consumed, body not finished.
    More,
    /// Body finished after this many bytes.
    Done(usize),
}

impl Body {
    fn consume(&mut self, data: &[u8]) -> Result<BodyStep, &'static str> {
        match self {
            Body::Length(left) => {
                let take = data.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                *left -= take as u64;
                Ok(if *left == 0 {
                    BodyStep::Done(take)
                } else {
                    BodyStep::More
                })
            }
            Body::UntilClose => Ok(BodyStep::More),
            Body::Chunked(state) => state.consume(data),
        }
    }

    /// `n` bytes of the body are lost: fine unless they run past where the framing is known.
    fn gap(&mut self, n: u64) -> Result<bool, ()> {
        match self {
            Body::Length(left) if n <= *left => {
                *left -= n;
                Ok(*left == 0)
            }
            Body::UntilClose => Ok(false),
            Body::Chunked(Chunked::Data(left)) if n <= *left => {
                *left -= n;
                if *left == 0 {
                    *self = Body::Chunked(Chunked::DataEnd(Vec::new()));
                }
                Ok(false)
            }
            _ => Err(()),
        }
    }
}

/// Appends `data` up to and including the first `\n` to `line`. Returns bytes used and whether
/// the line is complete.
fn read_line(line: &mut Vec<u8>, data: &[u8]) -> Result<(usize, bool), &'static str> {
    let (used, complete) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (i + 1, true),
        None => (data.len(), false),
    };
    line.extend_from_slice(data.get(..used).unwrap_or(data));
    if line.len() > MAX_CHUNK_LINE {
        return Err("chunk line too long");
    }
    Ok((used, complete))
}

fn is_blank_line(line: &[u8]) -> bool {
    matches!(line, b"\r\n" | b"\n")
}

impl Chunked {
    fn consume(&mut self, data: &[u8]) -> Result<BodyStep, &'static str> {
        let mut pos = 0;
        while let Some(rest) = data.get(pos..).filter(|r| !r.is_empty()) {
            match self {
                Chunked::Size(line) => {
                    let (used, complete) = read_line(line, rest)?;
                    pos += used;
                    if complete {
                        let size = match httparse::parse_chunk_size(line) {
                            Ok(httparse::Status::Complete((_, size))) => size,
                            _ => return Err("invalid chunk size"),
                        };
                        *self = if size == 0 {
                            Chunked::Trailer(Vec::new(), 0)
                        } else {
                            Chunked::Data(size)
                        };
                    }
                }
                Chunked::Data(left) => {
                    let take = rest.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                    *left -= take as u64;
                    pos += take;
                    if *left == 0 {
                        *self = Chunked::DataEnd(Vec::new());
                    }
                }
                Chunked::DataEnd(line) => {
                    let (used, complete) = read_line(line, rest)?;
                    pos += used;
                    if complete {
                        if !is_blank_line(line) {
                            return Err("invalid chunk end");
                        }
                        *self = Chunked::Size(Vec::new());
                    }
                }
                Chunked::Trailer(line, total) => {
                    let (used, complete) = read_line(line, rest)?;
                    pos += used;
                    *total += used;
                    if *total > MAX_HEAD {
                        return Err("trailers too large");
                    }
                    if complete {
                        if is_blank_line(line) {
                            return Ok(BodyStep::Done(pos));
                        }
                        line.clear();
                    }
                }
            }
        }
        Ok(BodyStep::More)
    }
}

/// Result of trying to parse a head from the start of a buffer.
enum Head<T> {
    Complete { len: usize, message: T },
    Partial,
    Error(String),
}

fn head_error(e: httparse::Error, what: &str) -> String {
    match e {
        httparse::Error::TooManyHeaders => TOO_MANY.to_owned(),
        e => format!("invalid HTTP {what}: {e}"),
    }
}

/// All values of the comma-separated header `name`, across repeated headers.
fn list_values<'h>(
    headers: &'h [httparse::Header<'_>],
    name: &'h str,
) -> impl Iterator<Item = &'h [u8]> + 'h {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|v| !v.is_empty())
}

/// Message framing from the headers (RFC 9112 section 6).
enum Framing {
    /// `Transfer-Encoding` whose final coding is `chunked`.
    Chunked,
    /// `Transfer-Encoding` without a final `chunked`.
    OtherCoding,
    /// `Content-Length`, all copies agreeing.
    Length(u64),
    /// `Content-Length` that is not one number.
    BadLength,
    None,
}

fn framing(headers: &[httparse::Header<'_>]) -> Framing {
    if let Some(last) = list_values(headers, "Transfer-Encoding").last() {
        return if last.eq_ignore_ascii_case(b"chunked") {
            Framing::Chunked
        } else {
            Framing::OtherCoding
        };
    }
    let mut length = None;
    for value in list_values(headers, "Content-Length") {
        let parsed = std::str::from_utf8(value)
            .ok()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok());
        match (parsed, length) {
            (None, _) => return Framing::BadLength,
            (Some(n), Some(m)) if n != m => return Framing::BadLength,
            (Some(n), _) => length = Some(n),
        }
    }
    length.map_or(Framing::None, Framing::Length)
}

// ---------------------------------------------------------------------------------------------
// Requests

#[derive(Debug)]
enum RequestPhase {
    Head,
    Body(Body),
    /// After a request whose body length is unknown: anything more cannot be framed.
    Unframeable,
    /// After CONNECT: the rest is a tunnel, not HTTP.
    Opaque,
    /// Gave up (an `Unparsed` record was emitted).
    Dead,
}

/// What follows a request head.
struct RequestHead {
    record: RequestRecord,
    next: RequestPhase,
}

fn parse_request(bytes: &[u8]) -> Head<RequestHead> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => {
            let next = if req.method == Some("CONNECT") {
                RequestPhase::Opaque
            } else {
                match framing(req.headers) {
                    Framing::Chunked => {
                        RequestPhase::Body(Body::Chunked(Chunked::Size(Vec::new())))
                    }
                    Framing::Length(0) | Framing::None => RequestPhase::Head,
                    Framing::Length(n) => RequestPhase::Body(Body::Length(n)),
                    Framing::OtherCoding | Framing::BadLength => RequestPhase::Unframeable,
                }
            };
            let record = RequestRecord::Http(rules::describe_request(&req));
            Head::Complete {
                len,
                message: RequestHead { record, next },
            }
        }
        Ok(httparse::Status::Partial) => Head::Partial,
        Err(e) => Head::Error(head_error(e, "request")),
    }
}

/// Client→server direction: one record per request, or one `Unparsed` and silence.
#[derive(Debug)]
pub struct RequestParser {
    phase: RequestPhase,
    /// Head bytes received so far (never more than `MAX_HEAD + 1`).
    buf: Vec<u8>,
}

impl Default for RequestParser {
    fn default() -> Self {
        Self {
            phase: RequestPhase::Head,
            buf: Vec::new(),
        }
    }
}

impl RequestParser {
    pub fn feed(&mut self, piece: Piece<'_>, sink: &mut impl Sink) {
        match piece {
            Piece::Data(data) => self.feed_data(data, sink),
            Piece::Gap(n) => self.gap(n, sink),
        }
    }

    fn gap(&mut self, n: u64, sink: &mut impl Sink) {
        let lost = usize::try_from(n).unwrap_or(usize::MAX);
        match &mut self.phase {
            RequestPhase::Head => {
                let bytes = self.buf.len().saturating_add(lost);
                self.fail(LOST.to_owned(), bytes, sink);
            }
            RequestPhase::Body(body) => match body.gap(n) {
                Ok(true) => self.phase = RequestPhase::Head,
                Ok(false) => {}
                Err(()) => self.fail(LOST.to_owned(), lost, sink),
            },
            RequestPhase::Unframeable => self.fail(LOST.to_owned(), lost, sink),
            RequestPhase::Opaque | RequestPhase::Dead => {}
        }
    }

    fn feed_data(&mut self, mut data: &[u8], sink: &mut impl Sink) {
        while !data.is_empty() {
            match &mut self.phase {
                RequestPhase::Head if self.buf.is_empty() => match parse_request(data) {
                    Head::Complete { len, message } => {
                        self.emit(message, sink);
                        data = data.get(len..).unwrap_or(&[]);
                    }
                    Head::Partial if data.len() > MAX_HEAD => {
                        return self.fail(TOO_LARGE.to_owned(), data.len(), sink);
                    }
                    Head::Partial => {
                        self.buf.extend_from_slice(data);
                        return;
                    }
                    Head::Error(reason) => return self.fail(reason, data.len(), sink),
                },
                RequestPhase::Head => {
                    let room = (MAX_HEAD + 1).saturating_sub(self.buf.len());
                    let (now, later) = data.split_at(data.len().min(room));
                    data = later;
                    self.buf.extend_from_slice(now);
                    // A head can only end, and a parse can only change its mind, at a new line.
                    if !now.contains(&b'\n') && self.buf.len() <= MAX_HEAD {
                        continue;
                    }
                    match parse_request(&self.buf) {
                        Head::Complete { len, message } => {
                            self.emit(message, sink);
                            let rest = self.buf.split_off(len.min(self.buf.len()));
                            self.buf = Vec::new();
                            // `buf` is empty now: this call does not come back here.
                            self.feed_data(&rest, sink);
                        }
                        Head::Partial if self.buf.len() > MAX_HEAD => {
                            let bytes = self.buf.len() + data.len();
                            return self.fail(TOO_LARGE.to_owned(), bytes, sink);
                        }
                        Head::Partial => {}
                        Head::Error(reason) => {
                            let bytes = self.buf.len() + data.len();
                            return self.fail(reason, bytes, sink);
                        }
                    }
                }
                RequestPhase::Body(body) => match body.consume(data) {
                    Ok(BodyStep::More) => return,
                    Ok(BodyStep::Done(used)) => {
                        self.phase = RequestPhase::Head;
                        data = data.get(used..).unwrap_or(&[]);
                    }
                    Err(reason) => return self.fail(reason.to_owned(), data.len(), sink),
                },
                RequestPhase::Unframeable => {
                    return self.fail(UNFRAMEABLE.to_owned(), data.len(), sink);
                }
                RequestPhase::Opaque | RequestPhase::Dead => return,
            }
        }
    }

    fn emit(&mut self, head: RequestHead, sink: &mut impl Sink) {
        let RequestHead { record, next } = head;
        sink.request(record);
        self.phase = next;
    }

    fn fail(&mut self, reason: String, bytes: usize, sink: &mut impl Sink) {
        sink.request(RequestRecord::Unparsed(UnparsedInfo { reason, bytes }));
        self.phase = RequestPhase::Dead;
        self.buf = Vec::new();
    }

    /// The request stream ended: a partial head becomes an `Unparsed` record.
    pub fn finish(&mut self, sink: &mut impl Sink) {
        if matches!(self.phase, RequestPhase::Head) && !self.buf.trim_ascii().is_empty() {
            let reason = match parse_request(&self.buf) {
                Head::Error(reason) => reason,
                Head::Complete { .. } | Head::Partial => INCOMPLETE.to_owned(),
            };
            let bytes = self.buf.len();
            self.fail(reason, bytes, sink);
        }
        self.phase = RequestPhase::Dead;
        self.buf = Vec::new();
    }
}

// ---------------------------------------------------------------------------------------------
// Responses

#[derive(Debug)]
enum ResponsePhase {
    Head,
    Body(Body),
    Dead,
}

/// What follows a response head.
struct ResponseHead {
    status: u16,
    framing: Framing,
}

fn parse_response(bytes: &[u8]) -> Head<ResponseHead> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => Head::Complete {
            len,
            message: ResponseHead {
                status: resp.code.unwrap_or(0),
                framing: framing(resp.headers),
            },
        },
        Ok(httparse::Status::Partial) => Head::Partial,
        Err(e) => Head::Error(head_error(e, "response")),
    }
}

/// Server→client direction: one status per final response.
#[derive(Debug)]
pub struct ResponseParser {
    phase: ResponsePhase,
    buf: Vec<u8>,
}

impl Default for ResponseParser {
    fn default() -> Self {
        Self {
            phase: ResponsePhase::Head,
            buf: Vec::new(),
        }
    }
}

impl ResponseParser {
    pub fn feed(&mut self, piece: Piece<'_>, sink: &mut impl Sink) {
        match piece {
            Piece::Data(data) => self.feed_data(data, sink),
            Piece::Gap(n) => match &mut self.phase {
                ResponsePhase::Head => self.fail(sink),
                ResponsePhase::Body(body) => match body.gap(n) {
                    Ok(true) => self.phase = ResponsePhase::Head,
                    Ok(false) => {}
                    Err(()) => self.fail(sink),
                },
                ResponsePhase::Dead => {}
            },
        }
    }

    fn feed_data(&mut self, mut data: &[u8], sink: &mut impl Sink) {
        while !data.is_empty() {
            match &mut self.phase {
                ResponsePhase::Head if self.buf.is_empty() => match parse_response(data) {
                    Head::Complete { len, message } => {
                        self.emit(message, sink);
                        data = data.get(len..).unwrap_or(&[]);
                    }
                    Head::Partial if data.len() <= MAX_HEAD => {
                        self.buf.extend_from_slice(data);
                        return;
                    }
                    Head::Partial | Head::Error(_) => return self.fail(sink),
                },
                ResponsePhase::Head => {
                    let room = (MAX_HEAD + 1).saturating_sub(self.buf.len());
                    let (now, later) = data.split_at(data.len().min(room));
                    data = later;
                    self.buf.extend_from_slice(now);
                    if !now.contains(&b'\n') && self.buf.len() <= MAX_HEAD {
                        continue;
                    }
                    match parse_response(&self.buf) {
                        Head::Complete { len, message } => {
                            self.emit(message, sink);
                            let rest = self.buf.split_off(len.min(self.buf.len()));
                            self.buf = Vec::new();
                            self.feed_data(&rest, sink);
                        }
                        Head::Partial if self.buf.len() <= MAX_HEAD => {}
                        Head::Partial | Head::Error(_) => return self.fail(sink),
                    }
                }
                ResponsePhase::Body(body) => match body.consume(data) {
                    Ok(BodyStep::More) => return,
                    Ok(BodyStep::Done(used)) => {
                        self.phase = ResponsePhase::Head;
                        data = data.get(used..).unwrap_or(&[]);
                    }
                    Err(_) => return self.fail(sink),
                },
                ResponsePhase::Dead => return,
            }
        }
    }

    /// Links a final response and works out how its body is delimited (RFC 9112 section 6.3).
    fn emit(&mut self, head: ResponseHead, sink: &mut impl Sink) {
        let ResponseHead { status, framing } = head;
        if (100..200).contains(&status) && status != 101 {
            // Interim (100 Continue, 103 Early Hints): the final response follows.
            self.phase = ResponsePhase::Head;
            return;
        }
        let method = sink.next_method();
        let head_request = method == Some("HEAD");
        let tunnel = status == 101 || (method == Some("CONNECT") && (200..300).contains(&status));
        sink.response(ResponseInfo { status });
        self.phase = if tunnel {
            ResponsePhase::Body(Body::UntilClose)
        } else if head_request || status == 204 || status == 304 {
            ResponsePhase::Head
        } else {
            match framing {
                Framing::Chunked => ResponsePhase::Body(Body::Chunked(Chunked::Size(Vec::new()))),
                Framing::Length(0) => ResponsePhase::Head,
                Framing::Length(n) => ResponsePhase::Body(Body::Length(n)),
                Framing::OtherCoding | Framing::None => ResponsePhase::Body(Body::UntilClose),
                Framing::BadLength => ResponsePhase::Dead,
            }
        };
        if matches!(self.phase, ResponsePhase::Dead) {
            sink.responses_end(true);
        }
    }

    fn fail(&mut self, sink: &mut impl Sink) {
        self.phase = ResponsePhase::Dead;
        self.buf = Vec::new();
        sink.responses_end(true);
    }

    /// The response stream ended: requests still waiting will get no response.
    pub fn finish(&mut self, sink: &mut impl Sink) {
        if matches!(self.phase, ResponsePhase::Dead) {
            return;
        }
        let truncated =
            matches!(self.phase, ResponsePhase::Head) && !self.buf.trim_ascii().is_empty();
        self.phase = ResponsePhase::Dead;
        self.buf = Vec::new();
        sink.responses_end(truncated);
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    /// Feeds `body` to a fresh decoder one split at a time; returns bytes left after the body.
    fn run_body(mut body: Body, parts: &[&[u8]]) -> Result<Option<usize>, &'static str> {
        let mut left_over = None;
        for part in parts {
            if let Some(n) = left_over.as_mut() {
                *n += part.len();
                continue;
            }
            match body.consume(part)? {
                BodyStep::More => {}
                BodyStep::Done(used) => left_over = Some(part.len() - used),
            }
        }
        Ok(left_over)
    }

    fn chunked() -> Body {
        Body::Chunked(Chunked::Size(Vec::new()))
    }

    #[rustfmt::skip]
    #[rstest]
    #[case::length(Body::Length(3), &["a", "cdX"], Ok(Some(1)))]
    #[case::length_unfinished(Body::Length(3), &["a"], Ok(None))]
    #[case::chunked(chunked(), &["3\r\nabc\r\n0\r\n\r\nGET"], Ok(Some(3)))]
    #[case::chunked_split(chunked(), &["3\r", "\na", "c\r", "\n0\r\n", "\r", "\nG"], Ok(Some(1)))]
    #[case::chunked_ext(chunked(), &["3;name=v\r\nabc\r\n0\r\n\r\n"], Ok(Some(0)))]
    #[case::chunked_trailer(chunked(), &["1\r\na\r\n0\r\nX-T: 1\r\n\r\nZ"], Ok(Some(1)))]
    #[case::chunked_hex(chunked(), &["A\r\n0123456789\r\n0\r\n\r\n"], Ok(Some(0)))]
    #[case::chunked_bad_size(chunked(), &["zz\r\n"], Err("invalid chunk size"))]
    #[case::chunked_bad_end(chunked(), &["1\r\nabc\r\n"], Err("invalid chunk end"))]
    fn bodies(
        #[case] body: Body,
        #[case] parts: &[&str],
        #[case] want: Result<Option<usize>, &'static str>,
    ) {
        let parts: Vec<&[u8]> = parts.iter().map(|p| p.as_bytes()).collect();
        assert_eq!(run_body(body, &parts), want);
    }

    #[rustfmt::skip]
    #[rstest]
    #[case::none("", Framing::None)]
    #[case::length("Content-Length: 12\r\n", Framing::Length(12))]
    #[case::length_repeated("Content-Length: 12\r\nContent-Length: 12\r\n", Framing::Length(12))]
    #[case::length_list("Content-Length: 12, 12\r\n", Framing::Length(12))]
    #[case::length_conflict("Content-Length: 12\r\nContent-Length: 13\r\n", Framing::BadLength)]
    #[case::length_signed("Content-Length: +12\r\n", Framing::BadLength)]
    #[case::chunked("Transfer-Encoding: gzip, Chunked\r\nContent-Length: 3\r\n", Framing::Chunked)]
    #[case::other("Transfer-Encoding: chunked, gzip\r\n", Framing::OtherCoding)]
    fn framings(#[case] headers: &str, #[case] want: Framing) {
        let raw = format!("HTTP/1.1 200 OK\r\n{headers}\r\n");
        let mut h = [httparse::EMPTY_HEADER; 8];
        let mut resp = httparse::Response::new(&mut h);
        assert!(matches!(resp.parse(raw.as_bytes()), Ok(httparse::Status::Complete(_))));
        let got = framing(resp.headers);
        assert_eq!(format!("{got:?}"), format!("{want:?}"));
    }

    impl std::fmt::Debug for Framing {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                Framing::Chunked => write!(f, "Chunked"),
                Framing::OtherCoding => write!(f, "OtherCoding"),
                Framing::Length(n) => write!(f, "Length({n})"),
                Framing::BadLength => write!(f, "BadLength"),
                Framing::None => write!(f, "None"),
            }
        }
    }
}
