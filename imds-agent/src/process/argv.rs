//! Turning the raw bytes the kernel copied (argument block, dentry names) into strings.

use std::borrow::Cow;

/// Appended to the last argument when the kernel cut the argument block short.
pub const TRUNCATION_MARK: &str = "…";

/// Splits a NUL-separated argument block (`/proc/<pid>/cmdline`, or the kernel's copy of
/// `mm->arg_start..arg_end`) into arguments.
///
/// Bytes that are not UTF-8 become U+FFFD. Trailing empty arguments are dropped: the block's
/// terminating NUL makes one, and programs that rewrite their title (`setproctitle`) leave
/// NUL padding behind. An empty argument in the middle is kept: it is a real argument.
///
/// With `truncated`, the last argument gets a trailing [`TRUNCATION_MARK`]; if the cut fell
/// exactly on an argument boundary, the mark is a separate last argument, so no complete
/// argument is shown as cut. A multi-byte character split by the cut is dropped rather than
/// shown as U+FFFD.
pub fn argv_from_block(block: &[u8], truncated: bool) -> Vec<String> {
    let mut pieces: Vec<&[u8]> = block.split(|&b| b == 0).collect();
    while pieces.last().is_some_and(|piece| piece.is_empty()) {
        pieces.pop();
    }
    let cut_inside_last = truncated && block.last().is_some_and(|&b| b != 0);
    let last = pieces.len().wrapping_sub(1);
    let mut args: Vec<String> = pieces
        .iter()
        .enumerate()
        .map(|(i, piece)| {
            if cut_inside_last && i == last {
                let mut arg = String::from_utf8_lossy(trim_incomplete_utf8(piece)).into_owned();
                arg.push_str(TRUNCATION_MARK);
                arg
            } else {
                String::from_utf8_lossy(piece).into_owned()
            }
        })
        .collect();
    if truncated && !cut_inside_last {
        args.push(TRUNCATION_MARK.to_owned());
    }
    args
}

/// Drops a UTF-8 sequence cut short at the end of `bytes`.
fn trim_incomplete_utf8(bytes: &[u8]) -> &[u8] {
    for back in 1..=bytes.len().min(3) {
        let at = bytes.len() - back;
        let byte = bytes[at];
        if byte & 0xC0 == 0x80 {
            // Continuation byte: keep looking for the sequence's lead byte.
            continue;
        }
        let needed = match byte {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => 1,
        };
        return if needed > back { &bytes[..at] } else { bytes };
    }
    bytes
}

/// The bytes of a fixed-size, NUL-terminated slot up to its first NUL (all of it if none).
pub fn until_nul(slot: &[u8]) -> &[u8] {
    slot.iter()
        .position(|&b| b == 0)
        .map_or(slot, |end| &slot[..end])
}

/// A `comm` (or any NUL-terminated name slot) as a string, lossy.
pub fn name_from_slot(slot: &[u8]) -> String {
    String::from_utf8_lossy(until_nul(slot)).into_owned()
}

/// Builds an absolute path from dentry names collected leaf first, as the kernel walks
/// `d_parent` from the executable's dentry: `["curl", "bin", "usr", "/"]` → `/usr/bin/curl`.
///
/// Each component may be NUL-terminated inside its fixed slot. The root dentry's name (`/`)
/// and empty components are skipped, so the result never holds `//`. `None` when no component
/// is left.
pub fn exe_path_from_components(leaf_first: &[&[u8]]) -> Option<String> {
    let names: Vec<Cow<'_, str>> = leaf_first
        .iter()
        .map(|component| until_nul(component))
        .filter(|name| !name.is_empty() && *name != b"/")
        .map(String::from_utf8_lossy)
        .collect();
    if names.is_empty() {
        return None;
    }
    let mut path = String::new();
    for name in names.iter().rev() {
        path.push('/');
        path.push_str(name);
    }
    Some(path)
}

/// Joins arguments into one line for people to read. An argument that is empty or holds
/// whitespace, a quote or a backslash is put in single quotes (a `'` inside becomes `'\''`),
/// so the line can be pasted into a POSIX shell and splits back into the same arguments.
pub fn join_command_line(args: &[String]) -> String {
    let mut line = String::new();
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            line.push(' ');
        }
        if needs_quoting(arg) {
            line.push('\'');
            line.push_str(&arg.replace('\'', r"'\''"));
            line.push('\'');
        } else {
            line.push_str(arg);
        }
    }
    line
}

fn needs_quoting(arg: &str) -> bool {
    arg.is_empty()
        || arg
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '\'' | '"' | '\\'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| (*s).to_owned()).collect()
    }

    #[rstest]
    #[case::empty(b"", false, &[])]
    #[case::empty_truncated(b"", true, &["…"])]
    #[case::one(b"curl\0", false, &["curl"])]
    #[case::no_final_nul(b"curl", false, &["curl"])]
    #[case::several(b"curl\0-s\0http://169.254.169.254/\0", false, &["curl", "-s", "http://169.254.169.254/"])]
    #[case::empty_middle_arg_kept(b"printf\0\0x\0", false, &["printf", "", "x"])]
    #[case::setproctitle_padding(b"nginx: worker\0\0\0\0\0", false, &["nginx: worker"])]
    #[case::only_nuls(b"\0\0\0", false, &[])]
    #[case::non_utf8(b"cat\0caf\xe9\0", false, &["cat", "caf\u{fffd}"])]
    #[case::truncated_inside_arg(b"curl\0http://169.25", true, &["curl", "http://169.25…"])]
    #[case::truncated_on_boundary(b"curl\0-s\0", true, &["curl", "-s", "…"])]
    #[case::truncated_mid_char(b"echo\0h\xc3\xa9llo w\xc3", true, &["echo", "héllo w…"])]
    #[case::truncated_mid_4byte_char(b"echo\0a\xf0\x9f\x98", true, &["echo", "a…"])]
    #[case::truncated_after_whole_char(b"echo\0a\xc3\xa9", true, &["echo", "aé…"])]
    fn argv_block(#[case] block: &[u8], #[case] truncated: bool, #[case] expected: &[&str]) {
        assert_eq!(argv_from_block(block, truncated), strings(expected));
    }

    #[rstest]
    #[case::empty(&[], None)]
    #[case::simple(&[&b"curl"[..], b"bin", b"usr"], Some("/usr/bin/curl"))]
    #[case::with_root_dentry(&[&b"curl"[..], b"bin", b"usr", b"/"], Some("/usr/bin/curl"))]
    #[case::nul_padded_slots(&[&b"curl\0\0\0\0"[..], b"bin\0garbage", b"usr\0"], Some("/usr/bin/curl"))]
    #[case::empty_slots_skipped(&[&b"python3"[..], b"\0\0", b"bin"], Some("/bin/python3"))]
    #[case::only_root(&[&b"/"[..]], None)]
    #[case::only_empty(&[&b"\0\0"[..]], None)]
    #[case::single(&[&b"init"[..]], Some("/init"))]
    #[case::non_utf8(&[&b"x\xff"[..], b"opt"], Some("/opt/x\u{fffd}"))]
    fn exe_path(#[case] leaf_first: &[&[u8]], #[case] expected: Option<&str>) {
        assert_eq!(exe_path_from_components(leaf_first).as_deref(), expected);
    }

    #[rstest]
    #[case::empty(&[], "")]
    #[case::plain(&["curl", "-s", "http://169.254.169.254/latest/meta-data/"], "curl -s http://169.254.169.254/latest/meta-data/")]
    #[case::space(&["curl", "-H", "X-aws-ec2-metadata-token: [REDACTED]"], "curl -H 'X-aws-ec2-metadata-token: [REDACTED]'")]
    #[case::single_quote(&["sh", "-c", "echo 'hi there'"], r"sh -c 'echo '\''hi there'\'''")]
    #[case::empty_arg(&["printf", "", "x"], "printf '' x")]
    #[case::double_quote(&["jq", r#"{"a":1}"#], r#"jq '{"a":1}'"#)]
    #[case::tab(&["a\tb"], "'a\tb'")]
    #[case::brackets_not_quoted(&["--password=[REDACTED]"], "--password=[REDACTED]")]
    fn join(#[case] args: &[&str], #[case] expected: &str) {
        assert_eq!(join_command_line(&strings(args)), expected);
    }

    #[rstest]
    #[case(b"curl\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", "curl")]
    #[case(b"0123456789abcdef", "0123456789abcdef")]
    #[case(b"\0", "")]
    fn name_slot(#[case] slot: &[u8], #[case] expected: &str) {
        assert_eq!(name_from_slot(slot), expected);
    }
}
