//! Reassembly of one direction of a TCP byte stream from captured segments.
//!
//! Sequence numbers are mapped to a 64-bit stream offset with wrapping arithmetic, so the
//! stream may cross `u32::MAX`. Bytes already delivered are trimmed off retransmissions; bytes
//! ahead of the next expected one wait in a bounded out-of-order buffer. When that buffer would
//! exceed [`WINDOW`] bytes (or [`MAX_SEGMENTS`] segments), the hole in front of it is given up
//! on and delivered as a [`Piece::Gap`]; so is a range reported lost.

/// Out-of-order bytes buffered per direction before holes are declared lost.
pub const WINDOW: u64 = 64 * 1024;
/// Out-of-order segments buffered per direction before holes are declared lost.
pub const MAX_SEGMENTS: usize = 256;

/// What reassembly hands the parser, in stream order.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    Data(&'a [u8]),
    /// This many bytes of the stream are lost.
    Gap(u64),
}

#[derive(Debug)]
enum Body {
    Data(Vec<u8>),
    Lost(u64),
}

#[derive(Debug)]
struct Segment {
    start: u64,
    body: Body,
}

impl Segment {
    fn end(&self) -> u64 {
        self.start
            + match &self.body {
                Body::Data(d) => d.len() as u64,
                Body::Lost(n) => *n,
            }
    }
}

/// One direction of a connection.
#[derive(Debug, Default)]
pub struct Reassembler {
    /// Sequence number of stream offset 0; `None` until a SYN or the first segment.
    base: Option<u32>,
    /// Stream offset of the next byte to deliver.
    offset: u64,
    pending: Vec<Segment>,
    pending_bytes: u64,
    closed: bool,
}

impl Reassembler {
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// SYN with initial sequence number `isn`: data starts at `isn + 1`. Ignored once the
    /// stream has a base (a retransmitted SYN, or a SYN seen after data).
    pub fn syn(&mut self, isn: u32) {
        if self.base.is_none() {
            self.base = Some(isn.wrapping_add(1));
        }
    }

    /// Stream offset of sequence number `seq`, relative to the next byte to deliver (negative:
    /// already delivered). Distances beyond ±2 GiB alias, as they do for TCP itself.
    fn relative(&mut self, seq: u32) -> i64 {
        let base = *self.base.get_or_insert(seq);
        // Truncation is the point: sequence space is modulo 2^32.
        let next = base.wrapping_add(self.offset as u32);
        i64::from(seq.wrapping_sub(next) as i32)
    }

    /// Payload `data` whose first byte has sequence number `seq`.
    pub fn data(&mut self, seq: u32, data: &[u8], out: &mut impl FnMut(Piece<'_>)) {
        if self.closed || data.is_empty() {
            return;
        }
        let mut rel = self.relative(seq);
        if rel > 0 {
            let start = self.offset + rel.unsigned_abs();
            let len = data.len() as u64;
            if !self.must_give_up(start + len, len) {
                self.pending_bytes += len;
                self.pending.push(Segment {
                    start,
                    body: Body::Data(data.to_vec()),
                });
                return;
            }
            self.give_up_until(start, out);
            rel = self.relative(seq);
        }
        let skip = usize::try_from(rel.unsigned_abs()).unwrap_or(usize::MAX);
        if let Some(fresh) = data.get(skip..).filter(|d| !d.is_empty()) {
            self.offset += fresh.len() as u64;
            out(Piece::Data(fresh));
            self.drain(out);
        }
    }

    /// Bytes `[seq, seq + len)` are known lost.
    pub fn gap(&mut self, seq: u32, len: u32, out: &mut impl FnMut(Piece<'_>)) {
        if self.closed || len == 0 {
            return;
        }
        let len = u64::from(len);
        let mut rel = self.relative(seq);
        if rel > 0 {
            let start = self.offset + rel.unsigned_abs();
            if !self.must_give_up(start + len, 0) {
                self.pending.push(Segment {
                    start,
                    body: Body::Lost(len),
                });
                return;
            }
            self.give_up_until(start, out);
            rel = self.relative(seq);
        }
        let skip = rel.unsigned_abs();
        if skip < len {
            self.offset += len - skip;
            out(Piece::Gap(len - skip));
            self.drain(out);
        }
    }

    /// FIN or RST: whatever is still buffered is delivered, holes as gaps; later segments are
    /// ignored.
    pub fn close(&mut self, out: &mut impl FnMut(Piece<'_>)) {
        if self.closed {
            return;
        }
        self.give_up_until(u64::MAX, out);
        self.closed = true;
    }

    fn must_give_up(&self, end: u64, add_bytes: u64) -> bool {
        end - self.offset > WINDOW
            || self.pending_bytes + add_bytes > WINDOW
            || self.pending.len() >= MAX_SEGMENTS
    }

    /// Delivers buffered segments up to `until`, the holes between them as gaps.
    fn give_up_until(&mut self, until: u64, out: &mut impl FnMut(Piece<'_>)) {
        loop {
            self.drain(out);
            let Some(next) = self.pending.iter().map(|s| s.start).min() else {
                break;
            };
            let to = next.min(until);
            if to <= self.offset {
                break;
            }
            out(Piece::Gap(to - self.offset));
            self.offset = to;
        }
        if until != u64::MAX && until > self.offset {
            out(Piece::Gap(until - self.offset));
            self.offset = until;
        }
    }

    /// Delivers buffered segments that have become contiguous; drops stale ones.
    fn drain(&mut self, out: &mut impl FnMut(Piece<'_>)) {
        loop {
            let offset = self.offset;
            self.pending.retain(|s| s.end() > offset);
            // Prefer real bytes over a lost range covering the same offset.
            let pick = self
                .pending
                .iter()
                .enumerate()
                .filter(|(_, s)| s.start <= offset)
                .min_by_key(|(_, s)| matches!(s.body, Body::Lost(_)))
                .map(|(i, _)| i);
            let Some(i) = pick else {
                self.pending_bytes = self.pending.iter().map(Segment::pending_bytes).sum();
                return;
            };
            let seg = self.pending.swap_remove(i);
            let end = seg.end();
            let skip = offset - seg.start;
            match &seg.body {
                Body::Data(d) => {
                    let fresh = usize::try_from(skip)
                        .ok()
                        .and_then(|s| d.get(s..))
                        .unwrap_or(&[]);
                    out(Piece::Data(fresh));
                }
                Body::Lost(_) => out(Piece::Gap(end - offset)),
            }
            self.offset = end;
        }
    }
}

impl Segment {
    fn pending_bytes(&self) -> u64 {
        match &self.body {
            Body::Data(d) => d.len() as u64,
            Body::Lost(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[derive(Debug, PartialEq, Eq)]
    enum Out {
        D(Vec<u8>),
        G(u64),
    }

    enum Op {
        Syn(u32),
        Data(u32, &'static [u8]),
        Gap(u32, u32),
        Close,
    }

    fn run(ops: &[Op]) -> Vec<Out> {
        let mut r = Reassembler::default();
        let mut got = Vec::new();
        let mut out = |p: Piece<'_>| match p {
            Piece::Data(d) => match got.last_mut() {
                Some(Out::D(prev)) => prev.extend_from_slice(d),
                _ => got.push(Out::D(d.to_vec())),
            },
            Piece::Gap(n) => got.push(Out::G(n)),
        };
        for op in ops {
            match op {
                Op::Syn(isn) => r.syn(*isn),
                Op::Data(seq, d) => r.data(*seq, d, &mut out),
                Op::Gap(seq, n) => r.gap(*seq, *n, &mut out),
                Op::Close => r.close(&mut out),
            }
        }
        got
    }

    fn d(s: &str) -> Out {
        Out::D(s.as_bytes().to_vec())
    }

    const MAX: u32 = u32::MAX;

    #[rustfmt::skip]
    #[rstest]
    #[case::in_order(&[Op::Syn(99), Op::Data(100, b"abc"), Op::Data(103, b"def")], vec![d("abcdef")])]
    #[case::no_syn(&[Op::Data(5000, b"abc"), Op::Data(5003, b"def")], vec![d("abcdef")])]
    #[case::duplicate(&[Op::Data(1, b"abc"), Op::Data(1, b"abc"), Op::Data(4, b"d")], vec![d("abcd")])]
    #[case::overlap(&[Op::Data(1, b"abc"), Op::Data(2, b"bcdef")], vec![d("abcdef")])]
    #[case::old_retransmit(&[Op::Data(10, b"abcdef"), Op::Data(11, b"bc")], vec![d("abcdef")])]
    #[case::reorder(&[Op::Syn(0), Op::Data(4, b"def"), Op::Data(1, b"abc")], vec![d("abcdef")])]
    #[case::reorder_three(&[Op::Syn(0), Op::Data(7, b"g"), Op::Data(4, b"def"), Op::Data(1, b"abc")], vec![d("abcdefg")])]
    #[case::reorder_overlapping(&[Op::Syn(0), Op::Data(3, b"cdef"), Op::Data(5, b"efg"), Op::Data(1, b"abcd")], vec![d("abcdefg")])]
    #[case::wrap(&[Op::Syn(MAX - 2), Op::Data(MAX - 1, b"ab"), Op::Data(0, b"cd")], vec![d("abcd")])]
    #[case::wrap_inside(&[Op::Syn(MAX - 2), Op::Data(MAX - 1, b"abcd"), Op::Data(2, b"e")], vec![d("abcde")])]
    #[case::wrap_reorder(&[Op::Syn(MAX - 2), Op::Data(0, b"cd"), Op::Data(MAX - 1, b"ab"), Op::Data(MAX, b"bc")], vec![d("abcd")])]
    #[case::wrap_syn_at_max(&[Op::Syn(MAX), Op::Data(0, b"ab"), Op::Data(0, b"a"), Op::Data(2, b"c")], vec![d("abc")])]
    #[case::gap_in_order(&[Op::Data(1, b"ab"), Op::Gap(3, 4), Op::Data(7, b"cd")], vec![d("ab"), Out::G(4), d("cd")])]
    #[case::gap_ahead(&[Op::Data(1, b"ab"), Op::Data(7, b"cd"), Op::Gap(3, 4)], vec![d("ab"), Out::G(4), d("cd")])]
    #[case::gap_then_retransmit(&[Op::Data(1, b"ab"), Op::Gap(3, 2), Op::Data(3, b"xyz")], vec![d("ab"), Out::G(2), d("z")])]
    #[case::hole_at_close(&[Op::Syn(0), Op::Data(1, b"ab"), Op::Data(5, b"ef"), Op::Close, Op::Data(3, b"cd")], vec![d("ab"), Out::G(2), d("ef")])]
    fn reassembles(#[case] ops: &[Op], #[case] want: Vec<Out>) {
        assert_eq!(run(ops), want);
    }

    #[test]
    fn window_overflow_gives_up_on_the_hole() {
        let big: &'static [u8] = Box::leak(vec![b'x'; 40 * 1024].into_boxed_slice());
        let got = run(&[
            Op::Syn(0),
            Op::Data(1, b"ab"),
            // hole of 2 bytes at 3..5
            Op::Data(5, big),
            Op::Data(5 + big.len() as u32, big),
        ]);
        let mut want_data = big.to_vec();
        want_data.extend_from_slice(big);
        assert_eq!(got, vec![d("ab"), Out::G(2), Out::D(want_data)]);
    }

    #[test]
    fn far_ahead_segment_is_a_gap() {
        let got = run(&[Op::Data(1, b"ab"), Op::Data(1_000_003, b"cd")]);
        assert_eq!(got, vec![d("ab"), Out::G(1_000_000), d("cd")]);
    }

    #[test]
    fn many_tiny_segments_are_bounded() {
        let mut r = Reassembler::default();
        let mut delivered = 0u64;
        let mut out = |p: Piece<'_>| match p {
            Piece::Data(d) => delivered += d.len() as u64,
            Piece::Gap(n) => delivered += n,
        };
        r.data(0, b"a", &mut out);
        for i in 0..10_000u32 {
            r.data(2 + 2 * i, b"b", &mut out);
            assert!(r.pending.len() <= MAX_SEGMENTS);
            assert!(r.pending_bytes <= WINDOW);
        }
        r.close(&mut out);
        assert_eq!(delivered, 2 + 2 * 9_999 + 1);
    }
}
