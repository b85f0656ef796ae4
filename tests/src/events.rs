//! Reading and asserting on the agent's JSON events.

use serde_json::Value;

/// `process.pid` of an event.
pub fn pid_of(event: &Value) -> Option<u32> {
    event.get("process.pid")?.as_u64()?.try_into().ok()
}

/// A string field of an event.
pub fn str_of<'a>(event: &'a Value, key: &str) -> Option<&'a str> {
    event.get(key)?.as_str()
}

/// The events of process `pid`, in output order.
pub fn for_pid(events: &[Value], pid: u32) -> Vec<Value> {
    events
        .iter()
        .filter(|e| pid_of(e) == Some(pid))
        .cloned()
        .collect()
}

/// Events as pretty JSON, for failure messages.
/// Exactly one event for `pid`, from the final output.
#[track_caller]
pub fn only_event(events: &[Value], pid: u32) -> Value {
    let mine = for_pid(events, pid);
    assert_eq!(
        mine.len(),
        1,
        "expected exactly one event for pid {pid}; all events:\n{}",
        pretty(events)
    );
    mine.into_iter()
        .next()
        .unwrap_or_else(|| panic!("no event for pid {pid}"))
}

pub fn pretty(events: &[Value]) -> String {
    if events.is_empty() {
        return "(none)".to_owned();
    }
    events
        .iter()
        .map(|e| serde_json::to_string_pretty(e).unwrap_or_else(|_| e.to_string()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Assert every `(key, value)` pair; lists all mismatches at once, with the whole event.
#[track_caller]
pub fn assert_fields(event: &Value, expected: &[(&str, Value)]) {
    let mismatches: Vec<String> = expected
        .iter()
        .filter_map(|(key, want)| {
            let got = event.get(*key).unwrap_or(&Value::Null);
            (got != want).then(|| format!("  {key}: expected {want}, got {got}"))
        })
        .collect();
    assert!(
        mismatches.is_empty(),
        "event fields differ:\n{}\nevent:\n{}",
        mismatches.join("\n"),
        pretty(std::slice::from_ref(event))
    );
}

/// Assert `key` is absent or null.
#[track_caller]
pub fn assert_null(event: &Value, key: &str) {
    let got = event.get(key).unwrap_or(&Value::Null);
    assert!(
        got.is_null(),
        "{key} must be absent or null, got {got}; event:\n{}",
        pretty(std::slice::from_ref(event))
    );
}

/// Assert `key` is not `true` (absent, null or false).
#[track_caller]
pub fn assert_not_true(event: &Value, key: &str) {
    let got = event.get(key).unwrap_or(&Value::Null);
    assert!(
        got != &Value::Bool(true),
        "{key} must not be true; event:\n{}",
        pretty(std::slice::from_ref(event))
    );
}

/// Assert `key` is a string satisfying `check`.
#[track_caller]
pub fn assert_str(event: &Value, key: &str, what: &str, check: impl Fn(&str) -> bool) {
    let got = str_of(event, key);
    assert!(
        got.is_some_and(&check),
        "{key} must be {what}, got {:?}; event:\n{}",
        event.get(key),
        pretty(std::slice::from_ref(event))
    );
}

/// A plausible RFC 3339 timestamp: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
pub fn looks_rfc3339(text: &str) -> bool {
    let b = text.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let tail = text.get(19..).unwrap_or("");
    let tail = tail
        .strip_prefix('.')
        .map_or(tail, |t| t.trim_start_matches(|c: char| c.is_ascii_digit()));
    b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && (b[10] == b'T' || b[10] == b't')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && (tail == "Z"
            || tail == "z"
            || (tail.len() == 6 && (tail.starts_with('+') || tail.starts_with('-'))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert!(looks_rfc3339("2026-11-24T09:10:23Z"));
        assert!(looks_rfc3339("2026-11-24T09:10:23.123456789Z"));
        assert!(looks_rfc3339("2026-11-24T09:10:23.1+01:00"));
        assert!(!looks_rfc3339("2026-11-24 09:10:23"));
        assert!(!looks_rfc3339("1732439423"));
    }
}
