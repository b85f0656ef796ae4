//! Drives the pure classifier with arbitrary segments in both directions: any bytes, any
//! sequence numbers, gaps, closes. It must never panic, and never hold a token in Debug.
#![no_main]

use imds_agent::classify::{Connection, Direction};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut conn = Connection::new();
    let mut seq = [0u32; 2];
    let mut rest = data;
    while let [op, a, b, tail @ ..] = rest {
        let dir = if op & 1 == 0 { Direction::Request } else { Direction::Response };
        let d = usize::from(op & 1);
        let n = usize::from(*a).min(tail.len());
        match op >> 1 & 7 {
            0 => conn.on_syn(dir, u32::from(*b) << 8),
            1 => conn.on_gap(dir, seq[d], u32::from(*b)),
            2 => conn.on_close(dir),
            3 => seq[d] = seq[d].wrapping_sub(u32::from(*b)),
            _ => {
                conn.on_data(dir, seq[d], &tail[..n]);
                seq[d] = seq[d].wrapping_add(n as u32);
            }
        }
        let _ = conn.take_ready();
        rest = &tail[n..];
    }
    let _ = conn.finish();
});
