//! Decoding ring-buffer records into owned values.

use imds_agent_common::{ConnectEvent, EventHeader, SegmentEvent, kind};

/// One record from the kernel.
pub enum Record {
    Connect(Box<ConnectEvent>),
    Segment(Box<SegmentEvent>),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {len} bytes is shorter than its header")]
    Short { len: usize },
    #[error("record kind {kind} has {len} bytes, expected {expected}")]
    Size {
        kind: u32,
        len: usize,
        expected: usize,
    },
    #[error("unknown record kind {kind}")]
    Kind { kind: u32 },
}

/// Decodes one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
    let header: EventHeader = read(bytes).ok_or(DecodeError::Short { len: bytes.len() })?;
    let size_err = |expected| DecodeError::Size {
        kind: header.kind,
        len: bytes.len(),
        expected,
    };
    match header.kind {
        kind::CONNECT => read(bytes)
            .map(|e| Record::Connect(Box::new(e)))
            .ok_or_else(|| size_err(size_of::<ConnectEvent>())),
        kind::SEGMENT => read(bytes)
            .map(|e| Record::Segment(Box::new(e)))
            .ok_or_else(|| size_err(size_of::<SegmentEvent>())),
        kind => Err(DecodeError::Kind { kind }),
    }
}

/// Copies a `#[repr(C)]` plain-data struct out of `bytes` if they are long enough.
fn read<T: Copy>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < size_of::<T>() {
        return None;
    }
    // SAFETY: length checked; T is one of the plain-old-data records of
    // imds-agent-common, for which every bit pattern is valid; unaligned read.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_short_and_unknown() {
        assert_eq!(decode(&[0u8; 3]).err(), Some(DecodeError::Short { len: 3 }));
        let mut b = vec![0u8; 64];
        b[0] = 99;
        assert_eq!(decode(&b).err(), Some(DecodeError::Kind { kind: 99 }));
        b[0] = kind::SEGMENT as u8;
        assert!(matches!(decode(&b), Err(DecodeError::Size { kind: 2, .. })));
    }

    #[test]
    fn decodes_segment() {
        let mut b = vec![0u8; size_of::<SegmentEvent>()];
        b[0] = kind::SEGMENT as u8;
        b[16] = 7; // cookie
        b[24] = 1; // seq
        match decode(&b) {
            Ok(Record::Segment(s)) => {
                assert_eq!(s.header.cookie, 7);
                assert_eq!(s.seq, 1);
            }
            _ => panic!("not a segment"),
        }
    }
}
