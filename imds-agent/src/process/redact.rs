//! Removing secrets from command lines before they leave the machine.
//!
//! The agent reports the command line of every process that calls IMDS, and those command
//! lines are where people put tokens: `curl -H "X-aws-ec2-metadata-token: $TOKEN"` runs with
//! the token expanded in its argv. Every rule keeps the *name* (header, flag, variable, URL
//! user) and replaces only the value with [`REDACTED`], so the report still says what was
//! passed.
//!
//! Rules, in the order they are tried on each argument:
//!
//! 1. **Exact secrets**: every occurrence of a value the caller knows is secret (e.g. the
//!    IMDS token the request carried) anywhere in any argument.
//! 2. **Headers** named in [`SECRET_HEADERS`] (whole name, any case), as `-H 'Name: value'`,
//!    `-HName:value`, `--header=Name: value`, `--proxy-header`, httpie's bare `Name:value`,
//!    and anywhere inside a script (`sh -c '…'`) or free text. The value is everything after
//!    the colon when the argument is a header; inside text it is the quoted string, or one
//!    word (two for `Authorization: Bearer x`). `X-aws-ec2-metadata-token-ttl-seconds` is a
//!    different name and is left alone. `-H @file` is left alone.
//! 3. **Flags**: `--NAME VALUE`, `-NAME VALUE` (Go style), `--NAME=VALUE` where NAME, with `-`
//!    read as `_` and any case, *ends* with one of [`SECRET_FLAG_SUFFIXES`] and does not start
//!    with `no_`: `--password`, `--passwd`, `--token`, `--secret`, `--api-key`, `--apikey`,
//!    `--aws-secret-access-key`, `--secret-key`, `--session-token`, `--access-token`,
//!    `--client-secret`, `--github-token`, …. The `=` form also redacts any NAME that
//!    matches rule 4. A following argument that starts with `--` is taken as the next flag,
//!    not as the value. `-p` is not a secret flag (it means port, parents, pid … elsewhere);
//!    neither is mysql's glued `-pPASSWORD`.
//!    `-u`/`-U`/`--user`/`--proxy-user` `user:password` (curl) → `user:[REDACTED]`, unless
//!    both sides are numbers (`docker run -u 1000:1000`).
//! 4. **Assignments** `NAME=VALUE` (environment style; NAME made of letters, digits, `_`, `-`,
//!    `.`) whose NAME contains one of [`SECRET_NAME_PARTS`] (any case, `-`/`.` read as `_`),
//!    unless it ends with one of [`NOT_SECRET_SUFFIXES`] (`AWS_WEB_IDENTITY_TOKEN_FILE=/path`
//!    names a file, `…_TOKEN_TTL_SECONDS=21600` a number).
//! 5. **URL user info** `scheme://user:password@host` → `scheme://user:[REDACTED]@host`.
//! 6. **URL query parameters** named in [`SECRET_QUERY_KEYS`] or matching rule 4
//!    (`token`, `secret`, `password`, `signature`, `X-Amz-Signature`,
//!    `X-Amz-Security-Token`, `X-Amz-Credential`, `access_token`, …), in `scheme://` URLs
//!    and in bare request targets (`/path?token=x`).
//!
//! Rules 2–4 first look at the argument as a whole: a header argument's value is everything
//! after the colon, a secret flag's or assignment's value everything after `=`, spaces and
//! all (`env SECRET="a b"`; also a script that starts with `TOKEN=…;`, which is then hidden
//! whole). An argument no whole-argument rule claims (a script given to `sh -c` or
//! `python -c`, a URL, a plain word) is redacted word by word with all the rules, as free
//! text is by [`redact_text`]. Everywhere, a value that is only a shell expansion (`$TOKEN`,
//! `${TOKEN}`, `$(cat f)`, `` `cat f` ``) is not a secret and is kept: it tells the reader
//! where the secret came from.
//!
//! Redacting already redacted arguments changes nothing.

use std::borrow::Cow;
use std::ops::Range;

/// What a secret is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// HTTP headers whose value is a credential (lower case, matched whole, any case).
pub const SECRET_HEADERS: &[&str] = &[
    "x-aws-ec2-metadata-token",
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-amz-security-token",
    "x-api-key",
    "x-auth-token",
    "x-vault-token",
    "private-token",
];

/// Headers whose value may start with an authentication scheme word (`Bearer x`).
const AUTH_HEADERS: &[&str] = &["authorization", "proxy-authorization"];

/// Authentication scheme words that precede the credential in `Authorization`.
const AUTH_SCHEMES: &[&str] = &[
    "basic",
    "bearer",
    "digest",
    "negotiate",
    "ntlm",
    "token",
    "aws4-hmac-sha256",
];

/// Arguments after which the next argument is a header.
const HEADER_FLAGS: &[&str] = &["-H", "--header", "--proxy-header", "--headers", "-Headers"];

/// Prefixes of an argument that carries a header glued to its flag.
const HEADER_FLAG_PREFIXES: &[&str] = &["--header=", "--proxy-header=", "-H"];

/// A long flag whose normalized name (upper case, `-` → `_`) ends with one of these takes a
/// secret value.
pub const SECRET_FLAG_SUFFIXES: &[&str] = &[
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "API_KEY",
    "APIKEY",
    "SECRET_KEY",
    "SECRET_ACCESS_KEY",
];

/// A `NAME=VALUE` whose normalized NAME contains one of these is a secret.
pub const SECRET_NAME_PARTS: &[&str] = &[
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "API_KEY",
    "APIKEY",
    "CREDENTIAL",
];

/// A NAME ending with one of these names something about a secret, not the secret itself.
pub const NOT_SECRET_SUFFIXES: &[&str] = &[
    "_FILE",
    "_PATH",
    "_DIR",
    "_TTL",
    "_TTL_SECONDS",
    "_URL",
    "_URI",
];

/// URL query parameters that are secrets besides those matching [`SECRET_NAME_PARTS`]
/// (lower case).
pub const SECRET_QUERY_KEYS: &[&str] = &[
    "signature",
    "sig",
    "x-amz-signature",
    "x-amz-security-token",
    "x-amz-credential",
    "x-goog-signature",
    "x-goog-credential",
];

/// Flags whose value is `user:password`.
const USER_FLAGS: &[&str] = &["-u", "-U", "--user", "--proxy-user"];

/// Redacts secrets from a process's arguments (see the module docs for the rules).
/// `secrets` are exact values known to be secret; empty ones are ignored.
pub fn redact_args(args: &[String], secrets: &[&str]) -> Vec<String> {
    let secrets = Secrets::new(secrets);
    let mut pending = Pending::None;
    args.iter()
        .map(|arg| {
            let arg = secrets.replace(arg);
            let (redacted, next) = redact_arg(&arg, pending);
            pending = next;
            redacted.unwrap_or_else(|| arg.into_owned())
        })
        .collect()
}

/// Redacts secrets from free text (a log line, a script): the exact `secrets`, then the
/// argument rules applied to its whitespace-separated words.
pub fn redact_text(s: &str, secrets: &[&str]) -> String {
    let s = Secrets::new(secrets).replace(s);
    redact_words(&s).into_owned()
}

/// What the previous argument said about this one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    None,
    /// The previous argument was a secret flag: this is its value.
    Value,
    /// The previous argument was `-H` or the like: this is a header.
    Header,
    /// The previous argument was `-u` or the like: this is `user:password`.
    UserPassword,
}

/// What a rule made of an argument (or a word of text).
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The rule does not apply: try the next one.
    NotMine,
    /// The rule applies and is the last one tried: the argument becomes this (`None`:
    /// stays as it is, e.g. already redacted or `uid:gid`).
    Done(Option<String>),
    /// The rule applies to this argument and to the next one.
    Expect(Pending),
}

impl Outcome {
    fn or_else(self, next: impl FnOnce() -> Self) -> Self {
        match self {
            Self::NotMine => next(),
            done => done,
        }
    }

    fn prefixed(self, prefix: &str) -> Self {
        match self {
            Self::Done(Some(redacted)) => Self::Done(Some(format!("{prefix}{redacted}"))),
            other => other,
        }
    }
}

/// `-H` (the next argument is a header) or a header glued to its flag (`-HName: value`,
/// `--header=Name: value`).
fn header_flag(arg: &str) -> Outcome {
    if HEADER_FLAGS.contains(&arg) {
        return Outcome::Expect(Pending::Header);
    }
    HEADER_FLAG_PREFIXES
        .iter()
        .filter_map(|prefix| Some(header_arg(arg.strip_prefix(prefix)?).prefixed(prefix)))
        .find(|outcome| *outcome != Outcome::NotMine)
        .unwrap_or(Outcome::NotMine)
}

/// Redacts one argument. `None` when nothing in it is secret.
fn redact_arg(arg: &str, pending: Pending) -> (Option<String>, Pending) {
    let from_previous = match pending {
        Pending::Value if !starts_long_flag(arg) => {
            Outcome::Done(redact_value(arg, Trailing::Quotes))
        }
        Pending::Header => header_arg(arg),
        Pending::UserPassword => user_password(arg, Trailing::Quotes),
        Pending::Value | Pending::None => Outcome::NotMine,
    };
    let outcome = from_previous
        .or_else(|| header_flag(arg))
        // httpie's `Name:value`, or a header given any other way as a whole argument.
        .or_else(|| header_arg(arg))
        .or_else(|| flag(arg, Trailing::Quotes))
        .or_else(|| assignment(arg, Trailing::Quotes))
        .or_else(|| match redact_words(arg) {
            Cow::Owned(redacted) => Outcome::Done(Some(redacted)),
            Cow::Borrowed(_) => Outcome::Done(None),
        });
    match outcome {
        Outcome::Done(redacted) => (redacted, Pending::None),
        Outcome::Expect(next) => (None, next),
        Outcome::NotMine => (None, Pending::None),
    }
}

/// The exact secret values, longest first so a secret containing another is replaced whole.
struct Secrets<'a>(Vec<&'a str>);

impl<'a> Secrets<'a> {
    fn new(secrets: &[&'a str]) -> Self {
        let mut secrets: Vec<&str> = secrets.iter().copied().filter(|s| !s.is_empty()).collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Self(secrets)
    }

    /// Replaces every occurrence of every secret in one left-to-right pass, so a short secret
    /// can never match inside a [`REDACTED`] marker, new or from an earlier pass.
    fn replace<'s>(&self, s: &'s str) -> Cow<'s, str> {
        if !self.0.iter().any(|secret| s.contains(secret)) {
            return Cow::Borrowed(s);
        }
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(c) = rest.chars().next() {
            if let Some(secret) = self.0.iter().find(|secret| rest.starts_with(*secret)) {
                out.push_str(REDACTED);
                rest = &rest[secret.len()..];
            } else if let Some(after) = rest.strip_prefix(REDACTED) {
                // A marker from an earlier pass stays whole.
                out.push_str(REDACTED);
                rest = after;
            } else {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
        Cow::Owned(out)
    }
}

/// Which characters at the end of a value are kept around [`REDACTED`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trailing {
    /// A whole argument: only quotes.
    Quotes,
    /// A word in text: quotes and closing punctuation (`abc');` → `[REDACTED]');`).
    Punctuation,
}

impl Trailing {
    fn keeps(self, c: char) -> bool {
        match self {
            Self::Quotes => is_quote(c),
            Self::Punctuation => is_quote(c) || matches!(c, ',' | ';' | ')' | '}' | ']'),
        }
    }

    /// Length of `value` without its kept trailing characters, never cutting into a
    /// [`REDACTED`] marker (whose `]` is not punctuation).
    fn trimmed_len(self, value: &str) -> usize {
        let trimmed = value.trim_end_matches(|c| self.keeps(c)).len();
        value
            .rfind(REDACTED)
            .map_or(trimmed, |at| trimmed.max(at + REDACTED.len()))
    }
}

fn is_quote(c: char) -> bool {
    c == '\'' || c == '"'
}

/// Replaces a value with [`REDACTED`], keeping its surrounding quotes (and, for words in
/// text, closing punctuation). `None` when there is nothing to hide: the value is empty,
/// already redacted, or only a shell expansion.
fn redact_value(value: &str, trailing: Trailing) -> Option<String> {
    let core_start = value.len() - value.trim_start_matches(is_quote).len();
    let core_end = trailing.trimmed_len(value);
    let core = value.get(core_start..core_end).unwrap_or_default();
    let already = value[core_start..]
        .strip_prefix(REDACTED)
        .is_some_and(|rest| rest.chars().all(|c| trailing.keeps(c) || c.is_whitespace()));
    if core.is_empty() || already || is_shell_expansion(core) {
        return None;
    }
    Some(format!(
        "{}{REDACTED}{}",
        &value[..core_start],
        &value[core_end..]
    ))
}

/// `$NAME`, `${…}`, `$(…`, `` `… ``: text a shell expands, so not a secret itself.
fn is_shell_expansion(s: &str) -> bool {
    if s.starts_with("$(") || s.starts_with("${") || s.starts_with('`') {
        return true;
    }
    s.strip_prefix('$').is_some_and(is_identifier)
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Upper case, with `-` and `.` read as `_`.
fn normalize_name(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '-' | '.' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect()
}

/// Does a variable, flag or parameter NAME hold a secret (rule 4)?
pub fn is_secret_name(name: &str) -> bool {
    let name = normalize_name(name);
    SECRET_NAME_PARTS.iter().any(|part| name.contains(part))
        && !NOT_SECRET_SUFFIXES
            .iter()
            .any(|suffix| name.ends_with(suffix))
}

/// Does a long flag NAME (without dashes) take a secret value as the next argument (rule 3)?
fn is_secret_value_flag(name: &str) -> bool {
    let name = normalize_name(name);
    !name.starts_with("NO_")
        && SECRET_FLAG_SUFFIXES
            .iter()
            .any(|suffix| name.ends_with(suffix))
}

fn starts_long_flag(arg: &str) -> bool {
    arg.len() > 2 && arg.starts_with("--")
}

/// Rule 3: a flag, `--name`, `-name` or `--name=value`, and curl's glued `-uuser:password`.
fn flag(arg: &str, trailing: Trailing) -> Outcome {
    let glued_user = arg.strip_prefix("-u").filter(|rest| {
        rest.split_once(':').is_some_and(|(user, _)| {
            !user.contains(|c: char| c == '=' || c == '/' || c.is_whitespace())
        })
    });
    if let Some(glued) = glued_user {
        return user_password(glued, trailing).prefixed("-u");
    }
    let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
        return Outcome::NotMine;
    };
    let (name, value) = match body.split_once('=') {
        Some((name, value)) => (name, Some(value)),
        None => (body, None),
    };
    let name_ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !name_ok {
        return Outcome::NotMine;
    }
    let head = &arg[..arg.len() - value.map_or(0, str::len)];
    let user_flag = USER_FLAGS.contains(&head.trim_end_matches('='));
    let long = name.len() > 1;
    match value {
        Some(value) if user_flag => user_password(value, trailing).prefixed(head),
        Some(value) if long && (is_secret_value_flag(name) || is_secret_name(name)) => {
            Outcome::Done(redact_value(value, trailing).map(|value| format!("{head}{value}")))
        }
        Some(_) => Outcome::NotMine,
        None if user_flag => Outcome::Expect(Pending::UserPassword),
        None if long && is_secret_value_flag(name) => Outcome::Expect(Pending::Value),
        None => Outcome::NotMine,
    }
}

/// `user:password` → `user:[REDACTED]`; `uid:gid` (both numbers) is left alone. Not mine
/// without a colon (`sudo -u ec2-user`), nor for a URL (rule 5 handles those).
fn user_password(value: &str, trailing: Trailing) -> Outcome {
    let Some((user, password)) = value.split_once(':') else {
        return Outcome::NotMine;
    };
    if password.starts_with("//") {
        return Outcome::NotMine;
    }
    let numeric = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    if numeric(user.trim_start_matches(is_quote)) && numeric(password.trim_end_matches(is_quote)) {
        return Outcome::Done(None);
    }
    Outcome::Done(redact_value(password, trailing).map(|password| format!("{user}:{password}")))
}

/// Rule 4: `NAME=VALUE` with a secret NAME → `NAME=[REDACTED]` (leading quotes kept).
fn assignment(arg: &str, trailing: Trailing) -> Outcome {
    let body = arg.trim_start_matches(is_quote);
    let Some((name, value)) = body.split_once('=') else {
        return Outcome::NotMine;
    };
    let name_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !name_ok || !is_secret_name(name) {
        return Outcome::NotMine;
    }
    let head = &arg[..arg.len() - value.len()];
    Outcome::Done(redact_value(value, trailing).map(|value| format!("{head}{value}")))
}

/// A secret header name found in text.
struct HeaderMatch {
    /// Byte just past the `:`.
    after_colon: usize,
    /// The quote that opened the string the header is in, if it is still open at the `:`.
    open_quote: Option<char>,
    auth: bool,
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Is there a secret header name starting at byte `at` of `s`, at a word boundary and
/// followed by `:`?
fn header_at(s: &str, at: usize) -> Option<HeaderMatch> {
    let bytes = s.as_bytes();
    let rest = bytes.get(at..)?;
    let boundary = at == 0
        || !is_token_byte(bytes[at - 1])
        // curl's glued `-HName: value`, at the start of a word.
        || (at >= 2
            && &bytes[at - 2..at] == b"-H"
            && (at == 2 || bytes[at - 3].is_ascii_whitespace() || is_quote(char::from(bytes[at - 3]))));
    if !boundary {
        return None;
    }
    let name = SECRET_HEADERS.iter().find(|name| {
        rest.get(..name.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(name.as_bytes()))
            && !rest.get(name.len()).copied().is_some_and(is_token_byte)
    })?;
    let before = at
        .checked_sub(1)
        .map(|i| char::from(bytes[i]))
        .filter(|&c| is_quote(c));
    let mut i = at + name.len();
    let mut open_quote = before;
    if let Some(&b) = bytes.get(i)
        && is_quote(char::from(b))
    {
        if before == Some(char::from(b)) {
            open_quote = None;
        }
        i += 1;
    }
    while bytes.get(i).is_some_and(|&b| b == b' ' || b == b'\t') {
        i += 1;
    }
    (bytes.get(i) == Some(&b':')).then(|| HeaderMatch {
        after_colon: i + 1,
        open_quote,
        auth: AUTH_HEADERS.contains(name),
    })
}

/// Rule 2 for a header given as a whole argument (`Name: value`, possibly quoted): redacts
/// everything after the colon.
fn header_arg(arg: &str) -> Outcome {
    let start = arg.len()
        - arg
            .trim_start_matches(|c: char| is_quote(c) || c == ' ' || c == '\t')
            .len();
    let Some(header) = header_at(arg, start) else {
        return Outcome::NotMine;
    };
    let value = &arg[header.after_colon..];
    let value_start = value.len() - value.trim_start_matches([' ', '\t']).len();
    Outcome::Done(
        redact_value(&value[value_start..], Trailing::Quotes).map(|redacted| {
            format!(
                "{}{}{redacted}",
                &arg[..header.after_colon],
                &value[..value_start]
            )
        }),
    )
}

/// The span of a header's value in text, starting just past the colon.
fn header_value_span(s: &str, header: &HeaderMatch) -> Option<Range<usize>> {
    let bytes = s.as_bytes();
    let mut start = header.after_colon;
    while bytes.get(start).is_some_and(|&b| b == b' ' || b == b'\t') {
        start += 1;
    }
    let first = char::from(*bytes.get(start)?);
    let find_from = |from: usize, stop: &dyn Fn(u8) -> bool| {
        bytes
            .get(from..)
            .and_then(|rest| rest.iter().position(|&b| stop(b)))
            .map_or(bytes.len(), |n| from + n)
    };
    let span = if is_quote(first) {
        // `"Name": "value"`
        let end = find_from(start + 1, &|b| b == first as u8 || b == b'\n');
        start + 1..end
    } else if let Some(quote) = header.open_quote {
        // `"Name: value with spaces"`
        start..find_from(start, &|b| b == quote as u8 || b == b'\n')
    } else {
        let word_end = |from: usize| {
            let end = find_from(from, &|b: u8| b.is_ascii_whitespace());
            from + Trailing::Punctuation.trimmed_len(&s[from..end])
        };
        let mut end = word_end(start);
        let word = &s[start..end];
        if header.auth
            && AUTH_SCHEMES
                .iter()
                .any(|scheme| word.eq_ignore_ascii_case(scheme))
        {
            let mut next = end;
            while bytes.get(next).is_some_and(|&b| b == b' ' || b == b'\t') {
                next += 1;
            }
            if next < bytes.len() && next > end {
                end = word_end(next);
            }
        }
        start..end
    };
    if s[span.start..].starts_with(REDACTED) {
        return None;
    }
    let value = s[span.clone()].trim_end();
    let all_expansions = value.split_whitespace().all(|word| {
        is_shell_expansion(word)
            || AUTH_SCHEMES
                .iter()
                .any(|scheme| word.eq_ignore_ascii_case(scheme))
    });
    if value.is_empty() || all_expansions {
        return None;
    }
    Some(span.start..span.start + value.len())
}

/// Applies replacements (non-overlapping byte ranges) to `s`.
fn apply_edits(s: &str, mut edits: Vec<(Range<usize>, String)>) -> Cow<'_, str> {
    if edits.is_empty() {
        return Cow::Borrowed(s);
    }
    edits.sort_by_key(|(range, _)| range.start);
    let mut out = String::with_capacity(s.len());
    let mut copied = 0;
    for (range, replacement) in edits {
        out.push_str(&s[copied..range.start]);
        out.push_str(&replacement);
        copied = range.end;
    }
    out.push_str(&s[copied..]);
    Cow::Owned(out)
}

/// Rule 2 inside text: every secret header's value, wherever it appears.
fn redact_headers_in_text(s: &str) -> Cow<'_, str> {
    let mut edits = Vec::new();
    let mut at = 0;
    while at < s.len() {
        if let Some(header) = header_at(s, at) {
            if let Some(span) = header_value_span(s, &header) {
                at = span.end;
                edits.push((span, REDACTED.to_owned()));
            } else {
                at = header.after_colon;
            }
        } else {
            at += 1;
        }
    }
    apply_edits(s, edits)
}

/// Byte ranges of the whitespace-separated words of `s`.
fn words(s: &str) -> Vec<Range<usize>> {
    let mut words = Vec::new();
    let mut start = None;
    for (i, c) in s.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(begin)) => {
                words.push(begin..i);
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(begin) = start {
        words.push(begin..s.len());
    }
    words
}

/// Rules 3 and 4 on the words of text.
fn redact_flags_in_text(s: &str) -> Cow<'_, str> {
    let mut edits = Vec::new();
    let mut pending = Pending::None;
    for range in words(s) {
        let word = &s[range.clone()];
        // A word in a script may open a quote: `"--password=x"`, `'TOKEN=x'`.
        let lead = &word[..word.len() - word.trim_start_matches(is_quote).len()];
        let body = &word[lead.len()..];
        let outcome = match std::mem::replace(&mut pending, Pending::None) {
            Pending::Value if !starts_long_flag(body) => {
                Outcome::Done(redact_value(word, Trailing::Punctuation))
            }
            Pending::UserPassword => user_password(word, Trailing::Punctuation),
            Pending::Value | Pending::Header | Pending::None => Outcome::NotMine,
        };
        let outcome = outcome
            .or_else(|| flag(body, Trailing::Punctuation).prefixed(lead))
            .or_else(|| assignment(word, Trailing::Punctuation));
        match outcome {
            Outcome::Done(Some(redacted)) => edits.push((range, redacted)),
            Outcome::Expect(next) => pending = next,
            Outcome::Done(None) | Outcome::NotMine => {}
        }
    }
    apply_edits(s, edits)
}

/// Rules 5 and 6: user info and secret query parameters of every `scheme://` URL in `s`.
fn redact_urls(s: &str) -> Cow<'_, str> {
    let bytes = s.as_bytes();
    let mut edits = Vec::new();
    let mut search = 0;
    while let Some(found) = s.get(search..).and_then(|rest| rest.find("://")) {
        let sep = search + found;
        let scheme_start = s[..sep]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-')))
            .map_or(0, |i| i + 1);
        let authority_start = sep + 3;
        let url_end = bytes[authority_start..]
            .iter()
            .position(|&b| {
                b.is_ascii_whitespace() || matches!(b, b'\'' | b'"' | b'<' | b'>' | b'`')
            })
            .map_or(bytes.len(), |n| authority_start + n);
        search = url_end.max(authority_start);
        if !bytes.get(scheme_start).is_some_and(u8::is_ascii_alphabetic) {
            continue;
        }
        let authority_end = bytes[authority_start..url_end]
            .iter()
            .position(|&b| matches!(b, b'/' | b'?' | b'#'))
            .map_or(url_end, |n| authority_start + n);
        let authority = &s[authority_start..authority_end];
        if let Some(at) = authority.rfind('@')
            && let Some(colon) = authority[..at].find(':')
        {
            let password = authority_start + colon + 1..authority_start + at;
            let value = &s[password.clone()];
            if !value.is_empty() && value != REDACTED && !is_shell_expansion(value) {
                edits.push((password, REDACTED.to_owned()));
            }
        }
        if let Some(query) = s[authority_end..url_end].find('?') {
            redact_query(s, authority_end + query + 1..url_end, &mut edits);
        }
    }
    // Request targets without scheme and host (`/latest/meta-data/?token=x`), as HTTP
    // request lines and logs show them.
    for word in words(s) {
        let target = &s[word.clone()];
        let lead = target.len() - target.trim_start_matches(is_quote).len();
        if target[lead..].starts_with('/')
            && !target.contains("://")
            && let Some(query) = target.find('?')
        {
            let end = word.start + target.trim_end_matches(is_quote).len();
            redact_query(
                s,
                word.start + query + 1..end.max(word.start + query + 1),
                &mut edits,
            );
        }
    }
    apply_edits(s, edits)
}

/// Rule 6 on the query string `s[query]` (from just past `?` to the end of the URL).
fn redact_query(s: &str, query: Range<usize>, edits: &mut Vec<(Range<usize>, String)>) {
    let query_end = s[query.clone()]
        .find('#')
        .map_or(query.end, |n| query.start + n);
    let mut param_start = query.start;
    for param in s[query.start..query_end].split(['&', ';']) {
        if let Some((key, value)) = param.split_once('=') {
            let value_start = param_start + key.len() + 1;
            let secret_key = SECRET_QUERY_KEYS
                .iter()
                .any(|k| key.eq_ignore_ascii_case(k))
                || is_secret_name(key);
            if secret_key && !value.is_empty() && value != REDACTED && !is_shell_expansion(value) {
                edits.push((value_start..value_start + value.len(), REDACTED.to_owned()));
            }
        }
        param_start += param.len() + 1;
    }
}

/// All text rules, one pass each. Each pass leaves its own output alone when run again, and
/// `[REDACTED]` triggers none of them, so the passes compose.
fn redact_words(s: &str) -> Cow<'_, str> {
    let headers = redact_headers_in_text(s);
    let flags = redact_flags_in_text(&headers);
    let urls = redact_urls(&flags);
    let unchanged = matches!(headers, Cow::Borrowed(_))
        && matches!(flags, Cow::Borrowed(_))
        && matches!(urls, Cow::Borrowed(_));
    if unchanged {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(urls.into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;
    use rstest::rstest;

    const TOKEN: &str = "AQAEAFakeTokenValue0123456789abcdefghijklmnopqrstuvwxyz==";

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| (*s).to_owned()).collect()
    }

    fn check(args: &[&str], secrets: &[&str], expected: &[&str]) {
        let redacted = redact_args(&strings(args), secrets);
        assert_eq!(redacted, strings(expected), "args: {args:?}");
        assert_eq!(
            redact_args(&redacted, secrets),
            redacted,
            "not stable: {args:?}"
        );
    }

    /// `{T}` in a case stands for [`TOKEN`].
    #[rstest]
    #[case::whole_arg(&["curl", "{T}"], &["curl", "[REDACTED]"])]
    #[case::inside_arg(&["curl", "-HX-Other: a{T}b"], &["curl", "-HX-Other: a[REDACTED]b"])]
    #[case::twice(&["{T}:{T}"], &["[REDACTED]:[REDACTED]"])]
    #[case::in_script(&["sh", "-c", "echo {T} > /tmp/t"], &["sh", "-c", "echo [REDACTED] > /tmp/t"])]
    #[case::in_url(&["curl", "http://h/{T}/x"], &["curl", "http://h/[REDACTED]/x"])]
    fn exact_secrets(#[case] args: &[&str], #[case] expected: &[&str]) {
        let args: Vec<String> = args.iter().map(|arg| arg.replace("{T}", TOKEN)).collect();
        let redacted = redact_args(&args, &[TOKEN]);
        assert_eq!(redacted, strings(expected));
        assert_eq!(redact_args(&redacted, &[TOKEN]), redacted);
    }

    #[test]
    fn exact_secrets_edge_cases() {
        // Empty secrets are ignored.
        check(&["curl", "-s"], &["", ""], &["curl", "-s"]);
        // Longer secret wins over a shorter one inside it.
        check(&["abcdef"], &["abc", "abcdef"], &["[REDACTED]"]);
        // A secret that occurs in the marker does not corrupt an inserted marker.
        check(&["xx RED"], &["xx", "RED"], &["[REDACTED] [REDACTED]"]);
        // Multi-byte text around a secret.
        check(
            &["héllo-s3cr3t-wörld"],
            &["s3cr3t"],
            &["héllo-[REDACTED]-wörld"],
        );
    }

    #[rstest]
    #[case::separate(&["curl", "-H", "X-aws-ec2-metadata-token: abc123", "http://169.254.169.254/latest/meta-data/"],
        &["curl", "-H", "X-aws-ec2-metadata-token: [REDACTED]", "http://169.254.169.254/latest/meta-data/"])]
    #[case::any_case(&["curl", "-H", "x-AWS-ec2-METADATA-token:abc123"], &["curl", "-H", "x-AWS-ec2-METADATA-token:[REDACTED]"])]
    #[case::glued(&["curl", "-HX-aws-ec2-metadata-token:abc123"], &["curl", "-HX-aws-ec2-metadata-token:[REDACTED]"])]
    #[case::glued_space(&["curl", "-HX-aws-ec2-metadata-token: abc123"], &["curl", "-HX-aws-ec2-metadata-token: [REDACTED]"])]
    #[case::long_eq(&["wget", "--header=X-aws-ec2-metadata-token: abc123", "-qO-"], &["wget", "--header=X-aws-ec2-metadata-token: [REDACTED]", "-qO-"])]
    #[case::long_separate(&["wget", "--header", "X-aws-ec2-metadata-token: abc123"], &["wget", "--header", "X-aws-ec2-metadata-token: [REDACTED]"])]
    #[case::proxy_header(&["curl", "--proxy-header", "Proxy-Authorization: Basic dXNlcjpwYXNz"], &["curl", "--proxy-header", "Proxy-Authorization: [REDACTED]"])]
    #[case::space_before_colon(&["curl", "-H", "X-aws-ec2-metadata-token : abc"], &["curl", "-H", "X-aws-ec2-metadata-token : [REDACTED]"])]
    #[case::literal_quotes(&["curl", "-H", "'X-aws-ec2-metadata-token: abc'"], &["curl", "-H", "'X-aws-ec2-metadata-token: [REDACTED]'"])]
    #[case::authorization_bearer(&["curl", "-H", "Authorization: Bearer eyJhbGciOi.x.y"], &["curl", "-H", "Authorization: [REDACTED]"])]
    #[case::cookie(&["curl", "-H", "Cookie: session=abc; other=def"], &["curl", "-H", "Cookie: [REDACTED]"])]
    #[case::amz_security_token(&["curl", "-H", "X-Amz-Security-Token: FwoGZXIvYXdzE"], &["curl", "-H", "X-Amz-Security-Token: [REDACTED]"])]
    #[case::api_key(&["curl", "-H", "x-api-key: k-123"], &["curl", "-H", "x-api-key: [REDACTED]"])]
    #[case::httpie(&["http", "GET", "169.254.169.254/latest/meta-data/", "X-aws-ec2-metadata-token:abc123"],
        &["http", "GET", "169.254.169.254/latest/meta-data/", "X-aws-ec2-metadata-token:[REDACTED]"])]
    #[case::in_script(&["sh", "-c", "curl -s -H \"X-aws-ec2-metadata-token: abc123\" http://169.254.169.254/latest/meta-data/"],
        &["sh", "-c", "curl -s -H \"X-aws-ec2-metadata-token: [REDACTED]\" http://169.254.169.254/latest/meta-data/"])]
    #[case::in_script_auth(&["bash", "-c", "curl -H 'Authorization: Bearer abc.def' https://api/"],
        &["bash", "-c", "curl -H 'Authorization: [REDACTED]' https://api/"])]
    #[case::in_python(&["python3", "-c", "requests.get(u, headers={'X-aws-ec2-metadata-token': 'abc123'})"],
        &["python3", "-c", "requests.get(u, headers={'X-aws-ec2-metadata-token': '[REDACTED]'})"])]
    #[case::in_python_no_space(&["python3", "-c", "h={\"X-aws-ec2-metadata-token\":\"abc123\"}"],
        &["python3", "-c", "h={\"X-aws-ec2-metadata-token\":\"[REDACTED]\"}"])]
    fn headers(#[case] args: &[&str], #[case] expected: &[&str]) {
        check(args, &[], expected);
    }

    #[rstest]
    #[case::secret_flags(&["mytool", "--password", "hunter2", "--verbose"], &["mytool", "--password", "[REDACTED]", "--verbose"])]
    #[case::eq(&["mytool", "--password=hunter2"], &["mytool", "--password=[REDACTED]"])]
    #[case::passwd(&["x", "--passwd", "p"], &["x", "--passwd", "[REDACTED]"])]
    #[case::token(&["vault", "login", "--token", "s.abc"], &["vault", "login", "--token", "[REDACTED]"])]
    #[case::token_eq(&["x", "--token=s.abc"], &["x", "--token=[REDACTED]"])]
    #[case::secret(&["x", "--secret", "s"], &["x", "--secret", "[REDACTED]"])]
    #[case::api_key(&["x", "--api-key", "k"], &["x", "--api-key", "[REDACTED]"])]
    #[case::aws_secret(&["aws", "configure", "set", "--aws-secret-access-key", "wJalr"], &["aws", "configure", "set", "--aws-secret-access-key", "[REDACTED]"])]
    #[case::session_token(&["x", "--session-token", "FwoG"], &["x", "--session-token", "[REDACTED]"])]
    #[case::suffix(&["gh", "--github-token", "ghp_x"], &["gh", "--github-token", "[REDACTED]"])]
    #[case::go_style(&["agent", "-token", "abc"], &["agent", "-token", "[REDACTED]"])]
    #[case::eq_contains(&["x", "--db-password-value=abc"], &["x", "--db-password-value=[REDACTED]"])]
    #[case::quoted_value(&["x", "--password='abc'"], &["x", "--password='[REDACTED]'"])]
    #[case::value_with_space(&["x", "--password", "two words"], &["x", "--password", "[REDACTED]"])]
    #[case::next_flag_not_value(&["x", "--token", "--verbose"], &["x", "--token", "--verbose"])]
    #[case::curl_user(&["curl", "-u", "admin:hunter2", "https://h/"], &["curl", "-u", "admin:[REDACTED]", "https://h/"])]
    #[case::curl_user_glued(&["curl", "-uadmin:hunter2"], &["curl", "-uadmin:[REDACTED]"])]
    #[case::curl_user_long(&["curl", "--user=admin:hunter2"], &["curl", "--user=admin:[REDACTED]"])]
    #[case::curl_user_long_separate(&["curl", "--user", "admin:hunter2"], &["curl", "--user", "admin:[REDACTED]"])]
    #[case::in_script(&["sh", "-c", "mytool --password hunter2 && mytool --token=abc"], &["sh", "-c", "mytool --password [REDACTED] && mytool --token=[REDACTED]"])]
    fn flags(#[case] args: &[&str], #[case] expected: &[&str]) {
        check(args, &[], expected);
    }

    #[rstest]
    #[case::token(&["env", "TOKEN=abc", "curl"], &["env", "TOKEN=[REDACTED]", "curl"])]
    #[case::imds_token(&["env", "IMDS_TOKEN=abc"], &["env", "IMDS_TOKEN=[REDACTED]"])]
    #[case::lower(&["env", "my_secret=abc"], &["env", "my_secret=[REDACTED]"])]
    #[case::password(&["env", "PGPASSWORD=abc"], &["env", "PGPASSWORD=[REDACTED]"])]
    #[case::passwd(&["env", "DB_PASSWD=abc"], &["env", "DB_PASSWD=[REDACTED]"])]
    #[case::api_key(&["env", "DD_API_KEY=abc"], &["env", "DD_API_KEY=[REDACTED]"])]
    #[case::apikey(&["env", "APIKEY=abc"], &["env", "APIKEY=[REDACTED]"])]
    #[case::dashed_api_key(&["x", "api-key=abc"], &["x", "api-key=[REDACTED]"])]
    #[case::credential(&["env", "GIT_CREDENTIAL=abc"], &["env", "GIT_CREDENTIAL=[REDACTED]"])]
    #[case::aws_session_token(&["env", "AWS_SESSION_TOKEN=FwoG"], &["env", "AWS_SESSION_TOKEN=[REDACTED]"])]
    #[case::aws_secret_key(&["env", "AWS_SECRET_ACCESS_KEY=wJalr"], &["env", "AWS_SECRET_ACCESS_KEY=[REDACTED]"])]
    #[case::docker_env(&["docker", "run", "-e", "API_TOKEN=abc", "img"], &["docker", "run", "-e", "API_TOKEN=[REDACTED]", "img"])]
    #[case::value_with_equals(&["env", "TOKEN=a=b"], &["env", "TOKEN=[REDACTED]"])]
    #[case::in_script(&["sh", "-c", "cd /tmp && TOKEN=abc ./run; export SECRET=def"], &["sh", "-c", "cd /tmp && TOKEN=[REDACTED] ./run; export SECRET=[REDACTED]"])]
    // A whole argument that starts as an assignment is taken as one value, spaces and all
    // (`env SECRET="a b"`), even when it is a script.
    #[case::value_with_space(&["env", "SECRET=a b", "cmd"], &["env", "SECRET=[REDACTED]", "cmd"])]
    #[case::script_starting_with_assignment(&["sh", "-c", "TOKEN=abc; curl x"], &["sh", "-c", "TOKEN=[REDACTED]"])]
    #[case::in_script_quoted(&["sh", "-c", "export TOKEN='abc'"], &["sh", "-c", "export TOKEN='[REDACTED]'"])]
    fn assignments(#[case] args: &[&str], #[case] expected: &[&str]) {
        check(args, &[], expected);
    }

    #[rstest]
    #[case::userinfo(&["git", "clone", "https://bob:hunter2@example.com/r.git"], &["git", "clone", "https://bob:[REDACTED]@example.com/r.git"])]
    #[case::userinfo_no_path(&["psql", "postgres://u:p@db:5432"], &["psql", "postgres://u:[REDACTED]@db:5432"])]
    #[case::userinfo_in_assignment(&["env", "DATABASE_URL=mysql://u:pw@h/db"], &["env", "DATABASE_URL=mysql://u:[REDACTED]@h/db"])]
    #[case::user_only_kept(&["git", "clone", "ssh://git@example.com/r.git"], &["git", "clone", "ssh://git@example.com/r.git"])]
    #[case::query_token(&["curl", "https://h/p?a=1&token=abc&b=2"], &["curl", "https://h/p?a=1&token=[REDACTED]&b=2"])]
    #[case::query_secret_password(&["curl", "https://h/?secret=s&password=p"], &["curl", "https://h/?secret=[REDACTED]&password=[REDACTED]"])]
    #[case::query_signature(&["curl", "https://h/?Signature=s#frag"], &["curl", "https://h/?Signature=[REDACTED]#frag"])]
    #[case::presigned(&["curl", "https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F2024&X-Amz-Security-Token=Fwo&X-Amz-Signature=ab12"],
        &["curl", "https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=[REDACTED]&X-Amz-Security-Token=[REDACTED]&X-Amz-Signature=[REDACTED]"])]
    #[case::access_token(&["curl", "https://h/?access_token=abc"], &["curl", "https://h/?access_token=[REDACTED]"])]
    #[case::in_script(&["sh", "-c", "curl 'https://u:p@h/?token=t' -o x"], &["sh", "-c", "curl 'https://u:[REDACTED]@h/?token=[REDACTED]' -o x"])]
    fn urls(#[case] args: &[&str], #[case] expected: &[&str]) {
        check(args, &[], expected);
    }

    #[rstest]
    #[case::imds_get(&["curl", "-s", "-m", "2", "http://169.254.169.254/latest/meta-data/instance-id"])]
    #[case::imds_token_url(&["curl", "-X", "PUT", "http://169.254.169.254/latest/api/token"])]
    #[case::ttl_header(&["curl", "-X", "PUT", "-H", "X-aws-ec2-metadata-token-ttl-seconds: 21600", "http://169.254.169.254/latest/api/token"])]
    #[case::ttl_header_glued(&["curl", "-HX-aws-ec2-metadata-token-ttl-seconds:21600"])]
    #[case::ttl_httpie(&["http", "PUT", "169.254.169.254/latest/api/token", "X-aws-ec2-metadata-token-ttl-seconds:21600"])]
    #[case::ttl_in_script(&["sh", "-c", "curl -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 21600' http://169.254.169.254/latest/api/token"])]
    #[case::ttl_assignment(&["env", "X_AWS_EC2_METADATA_TOKEN_TTL_SECONDS=21600"])]
    #[case::header_file(&["curl", "-H", "@/etc/imds-headers", "http://169.254.169.254/"])]
    #[case::empty_header(&["curl", "-H", "X-aws-ec2-metadata-token:", "http://169.254.169.254/"])]
    #[case::other_header(&["curl", "-H", "Accept: application/json"])]
    #[case::dash_p(&["mysql", "-p", "hunter2", "-h", "db"])]
    #[case::dash_p_glued(&["mysql", "-phunter2"])]
    #[case::port(&["ssh", "-p", "2222", "host"])]
    #[case::paths(&["cat", "/var/run/secrets/kubernetes.io/serviceaccount/token", "/home/u/.aws/credentials"])]
    #[case::token_file(&["env", "AWS_WEB_IDENTITY_TOKEN_FILE=/var/run/secrets/eks.amazonaws.com/serviceaccount/token"])]
    #[case::token_path_flag(&["x", "--token-file=/run/token", "--token-path", "/run/token"])]
    #[case::no_token(&["x", "--no-token", "positional"])]
    #[case::other_assignment(&["env", "HOME=/root", "LANG=C.UTF-8", "PWD=/"])]
    #[case::uid_gid(&["docker", "run", "-u", "1000:1000", "--user=0:0", "img"])]
    #[case::sudo_user(&["sudo", "-u", "ec2-user", "id"])]
    #[case::go_url_flag(&["consul", "-url=http://127.0.0.1:8500/v1", "-upstream=a:b"])]
    #[case::url_after_dash_u(&["tool", "-u", "http://127.0.0.1:8080/"])]
    #[case::shell_variable(&["sh", "-c", "curl -H \"X-aws-ec2-metadata-token: $TOKEN\" http://169.254.169.254/latest/meta-data/"])]
    #[case::shell_variable_braced(&["sh", "-c", "curl -H \"Authorization: Bearer ${TOKEN}\" https://h/ --password \"$PW\""])]
    #[case::shell_command_substitution(&["sh", "-c", "TOKEN=$(curl -s -X PUT http://169.254.169.254/latest/api/token)"])]
    #[case::user_only_url(&["curl", "https://user@h/"])]
    #[case::plain_query(&["curl", "https://h/?a=1&tokens"])]
    #[case::empty(&[])]
    #[case::unicode(&["echo", "héllo wörld", "日本"])]
    fn left_alone(#[case] args: &[&str]) {
        check(args, &[], args);
    }

    #[rstest]
    #[case::plain("nothing to see here", "nothing to see here")]
    #[case::exact("token is {T}.", "token is [REDACTED].")]
    #[case::header_word(
        "X-aws-ec2-metadata-token: abc123 sent",
        "X-aws-ec2-metadata-token: [REDACTED] sent"
    )]
    #[case::header_quoted(
        "curl -H 'X-aws-ec2-metadata-token: abc 123' x",
        "curl -H 'X-aws-ec2-metadata-token: [REDACTED]' x"
    )]
    #[case::auth_scheme("Authorization: Bearer abc then", "Authorization: [REDACTED] then")]
    #[case::auth_scheme_only("Authorization: Bearer", "Authorization: Bearer")]
    #[case::flag("run --password hunter2 now", "run --password [REDACTED] now")]
    #[case::flag_eq("run --api-key=k1, done", "run --api-key=[REDACTED], done")]
    #[case::assignment("AWS_SESSION_TOKEN=Fwo; next", "AWS_SESSION_TOKEN=[REDACTED]; next")]
    #[case::url(
        "fetching https://u:p@h/x?token=t&a=b ok",
        "fetching https://u:[REDACTED]@h/x?token=[REDACTED]&a=b ok"
    )]
    #[case::ttl(
        "X-aws-ec2-metadata-token-ttl-seconds: 21600",
        "X-aws-ec2-metadata-token-ttl-seconds: 21600"
    )]
    #[case::newline(
        "a\nX-aws-ec2-metadata-token: abc\nb",
        "a\nX-aws-ec2-metadata-token: [REDACTED]\nb"
    )]
    #[case::whitespace_kept("a  \t b", "a  \t b")]
    #[case::request_target(
        "/latest/meta-data/iam?token=abc&x=1",
        "/latest/meta-data/iam?token=[REDACTED]&x=1"
    )]
    #[case::request_line(
        "GET /p?X-Amz-Signature=s#f HTTP/1.1",
        "GET /p?X-Amz-Signature=[REDACTED]#f HTTP/1.1"
    )]
    #[case::quoted_target("'/p?password=pw'", "'/p?password=[REDACTED]'")]
    #[case::imds_paths(
        "/latest/api/token /latest/meta-data/",
        "/latest/api/token /latest/meta-data/"
    )]
    fn text(#[case] input: &str, #[case] expected: &str) {
        let redacted = redact_text(&input.replace("{T}", TOKEN), &[TOKEN]);
        assert_eq!(redacted, expected);
        assert_eq!(redact_text(&redacted, &[TOKEN]), redacted);
    }

    #[test]
    fn redaction_is_idempotent() {
        let args = strings(&[
            "curl",
            "-H",
            "Authorization: Bearer x",
            "--password=p",
            "https://u:p@h/?token=t",
            "sh -c 'TOKEN=a curl -H \"Cookie: c\"'",
        ]);
        let once = redact_args(&args, &["x"]);
        assert_eq!(redact_args(&once, &["x"]), once);
    }

    /// Pieces that trigger every rule, to assemble into hostile arguments.
    const PIECES: &[&str] = &[
        "-H",
        "-HX-aws-ec2-metadata-token:",
        "X-aws-ec2-metadata-token",
        ":",
        " ",
        "\t",
        "\n",
        "Authorization",
        "Bearer",
        "'",
        "\"",
        "--password",
        "--token=",
        "=",
        "TOKEN",
        "://",
        "https",
        "@",
        "?",
        "&",
        "token=",
        "#",
        "-u",
        "u:p",
        "é",
        "日",
        "$T",
        "${",
        "$(",
        "[REDACTED]",
        "]",
        ";",
        "x",
        "-",
    ];

    fn hostile() -> impl proptest::strategy::Strategy<Value = String> {
        proptest::collection::vec(proptest::sample::select(PIECES), 0..12)
            .prop_map(|pieces| pieces.concat())
    }

    proptest::proptest! {
        /// Garbage made of every rule's trigger never panics, and a second pass keeps the
        /// first pass's markers (it may hide more, never less).
        #[test]
        fn hostile_input_never_panics(args in proptest::collection::vec(hostile(), 0..6)) {
            let once = redact_args(&args, &["u:p"]);
            proptest::prop_assert_eq!(once.len(), args.len());
            let twice = redact_args(&once, &["u:p"]);
            for (first, second) in once.iter().zip(&twice) {
                proptest::prop_assert!(
                    !first.contains(REDACTED) || second.contains(REDACTED),
                    "{first:?} → {second:?}"
                );
            }
            let text = redact_text(&args.join(" "), &[]);
            let again = redact_text(&text, &["u:p"]);
            proptest::prop_assert!(!text.contains(REDACTED) || again.contains(REDACTED));
        }

        #[test]
        fn never_panics_and_hides_exact_secrets(
            args in proptest::collection::vec(".{0,40}", 0..6),
            secret in "[A-Za-z0-9]{8,20}",
        ) {
            proptest::prop_assume!(!REDACTED.contains(&secret));
            let with_secret: Vec<String> = args.iter().map(|a| format!("{a}{secret}{a}")).collect();
            let redacted = redact_args(&with_secret, &[&secret]);
            proptest::prop_assert_eq!(redacted.len(), with_secret.len());
            for arg in &redacted {
                proptest::prop_assert!(!arg.contains(&secret), "{arg:?} still holds the secret");
            }
            let text = redact_text(&with_secret.join(" "), &[&secret]);
            proptest::prop_assert!(!text.contains(&secret));
        }
    }
}
