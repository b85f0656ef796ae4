//! Which client made an IMDS call, and why a tokenless (IMDSv1) call happened. Pure: no I/O.
//!
//! [`identify`] names the client from the request's `User-Agent`, and falls back on what the
//! process itself shows (executable name, argv) because several real clients send no
//! `User-Agent` to IMDS at all. [`diagnose`] then turns one tokenless request, plus what the
//! same process did with token requests before it ([`TokenHistory`]), into a cause and one line
//! of advice, in this order:
//!
//! 1. a token PUT went unanswered or was refused → [`V1Cause::FallbackAfterTokenFailure`]
//!    (the SDK fell back to IMDSv1; hop limit, boot-time timeout or a proxy), whatever the SDK;
//! 2. an AWS SDK older than its first IMDSv2 version → [`V1Cause::SdkTooOld`];
//! 3. an IMDSv2-capable AWS SDK that still sent a tokenless request → [`V1Cause::V1ApiInV2Sdk`]
//!    (aws-sdk-js 2.x `MetadataService.request()` is the classic);
//! 4. a plain HTTP client (curl, wget, urllib, requests, Go net/http, ...) → [`V1Cause::NoSdk`];
//! 5. otherwise [`V1Cause::Unknown`].
//!
//! # User-Agent shapes, checked against real clients
//!
//! Every "verified" row below was produced by the real client talking to a fake IMDS on
//! 127.0.0.1; the raw bytes are in `fixtures/<client>-<version>[-variant].http` and the tests
//! replay them (`fixtures/capture_clients.py` regenerates them). `-fallback` fixtures are runs
//! where the fake IMDS never answered the token PUT (the hop-limit case). The kernel part of
//! botocore's `Linux/…` is the capture host's and varies.
//!
//! | client | version | `User-Agent` sent to IMDS (exact) | token PUT? | source |
//! |---|---|---|---|---|
//! | botocore | 1.12.253 | `Botocore/1.12.253 Python/3.7.16 Linux/6.18.44-fc-v595` | no | verified |
//! | boto3 (+ botocore 1.12.253) | 1.9.253 | `Boto3/1.9.253 Python/3.7.16 Linux/6.18.44-fc-v595 Botocore/1.12.253` | no | verified |
//! | botocore | 1.13.24 | `Botocore/1.13.24 Python/3.7.16 Linux/6.18.44-fc-v595` | **yes** (one below the documented 1.13.25); tokenless fallback after an unanswered PUT | verified |
//! | botocore | 1.44.5 | `Botocore/1.44.5 Python/3.11.7 Linux/6.18.44-fc-v595` | yes; fallback after 1 s without answer | verified |
//! | boto3 | 1.44.5 | `Boto3/1.44.5 Python/3.11.7 Linux/6.18.44-fc-v595 Botocore/1.44.5` | yes | verified |
//! | AWS CLI v1 (botocore 1.12.190) | 1.16.200 | `aws-cli/1.16.200 Python/3.7.16 Linux/6.18.44-fc-v595 botocore/1.12.190` (lower-case `botocore/`) | no | verified |
//! | AWS CLI v1 (botocore 1.43.62) | 1.46.3 | `aws-cli/1.46.3 Python/3.11.7 Linux/6.18.44-fc-v595 botocore/1.43.62` | yes | verified |
//! | AWS CLI v2 (Debian 12 package) | 2.9.19 | `aws-cli/2.9.19` (nothing else, unlike its service calls) | yes | verified |
//! | aws-sdk (JS v2) | 2.500.0 | `aws-sdk-nodejs/2.500.0 linux/v20.20.2`, credentials and `request()` | no | verified |
//! | aws-sdk (JS v2) | 2.700.0 | credentials: **no User-Agent** on PUT and GETs; `request()`: `aws-sdk-nodejs/2.700.0 linux/v20.20.2`, tokenless | credentials: **yes** (below the documented 2.722.0); `request()`: no | verified |
//! | aws-sdk (JS v2) | 2.1693.0 | as 2.700.0: requests that carry a token carry no User-Agent; `request()` without a token and the fallback GETs send `aws-sdk-nodejs/2.1693.0 linux/v20.20.2` | credentials and `fetchMetadataToken()`: yes; `request()`: no | verified |
//! | @aws-sdk/credential-provider-imds (JS v3, @smithy 1.1.0) | 3.374.0 | **none** | yes | verified |
//! | @aws-sdk/credential-provider-node (JS v3, @smithy 4.5.2) | 3.972.97 | **none**, fallback GETs included | yes | verified |
//! | aws-sdk-go (Debian 12) | 1.44.133 | `aws-sdk-go/1.44.133 (go1.19.8; linux; amd64)` | yes (header `X-Aws-Ec2-Metadata-Token`) | verified |
//! | aws-sdk-go-v2 (imds 1.12.19, Debian 12) | 1.17.1 | `aws-sdk-go-v2/1.17.1 os/linux lang/go/1.19.8 md/GOOS/linux md/GOARCH/amd64 ft/ec2-imds` | yes (TTL 300; 3 PUT attempts before fallback) | verified |
//! | aws-sdk-core (Ruby, Debian 12) | 3.168.1 | `aws-sdk-ruby3/3.168.1` | yes | verified |
//! | curl | 7.88.1 | `curl/7.88.1` | only if the script does it | verified |
//! | GNU Wget | 1.21.3 | `Wget/1.21.3` | no | verified |
//! | Python urllib | 3.11.7 | `Python-urllib/3.11` | no | verified |
//! | urllib3 | 2.8.0 | `python-urllib3/2.8.0` | no | verified |
//! | requests | 2.34.2 | `python-requests/2.34.2` | no | verified |
//! | Go net/http | 1.19.8 | `Go-http-client/1.1` (HTTP version, not Go's) | no | verified |
//! | Node.js `http.get` | 20.20.2 | **none** | no | verified |
//! | Node.js `fetch()` | 20.20.2 | `node` | no | verified |
//! | AWS CLI v2 | 2.x | `aws-cli/2.x …` | yes | facts table (service-call shape) |
//! | JS v3 (service calls) | 3.x | `aws-sdk-js/3.x …`; to IMDS it sends none (above) | yes | facts table |
//! | Java 1.x / 2.x | | `aws-sdk-java/1.x …` / `aws-sdk-java/2.x …` | ≥ 1.11.678 / ≥ 2.10.21 | facts table |
//! | .NET | | `aws-sdk-dotnet-*/3.x` (`aws-sdk-dotnet-core/…` preferred) | ≥ 3.3.634.1 | facts table |
//! | C++, PHP, Ruby 2 | | `aws-sdk-cpp/1.x`, `aws-sdk-php/3.x`, `aws-sdk-ruby2/2.x` | ≥ 1.7.229, ≥ 3.147.7, ≥ 3.79.0 | facts table |
//! | PowerShell | | `AWSPowerShell/4.x` (`AWSPowerShell.NetCore/…`) | ≥ 4.0.1.0 | facts table |
//! | Rust, Kotlin | | `aws-sdk-rust/…`, `aws-sdk-kotlin/…` | always, never fall back | facts table |
//! | axios, OkHttp, Apache HttpClient, java.net.http, HttpURLConnection, httpx, aiohttp, Guzzle, PowerShell `Invoke-RestMethod`, Ruby Net::HTTP | | `axios/…`, `okhttp/…`, `Apache-HttpClient/…`, `Java-http-client/…`, `Java/…`, `python-httpx/…`, `aiohttp/…`, `GuzzleHttp/…`, `PowerShell/…`, `Ruby` | no | library documentation |
//!
//! What the captures changed in our understanding:
//! - A missing `User-Agent` is normal: JS v3 never sends one to IMDS, JS v2 drops it whenever
//!   a token header is set, Node's `http` sends none. Such a process is named from its
//!   executable (`node`), and the diagnosis leans on [`TokenHistory`].
//! - The documented minimums are conservative: botocore 1.13.24 and aws-sdk 2.700.0 already
//!   send the PUT for credentials. We keep the documented numbers for the advice (they are what
//!   AWS supports), so a tokenless call from those versions is judged "too old" only when no
//!   token failure explains it; for aws-sdk-js the advice also names `request()`.
//! - The AWS CLI v1 `User-Agent` carries `botocore/` in lower case; product names are matched
//!   case-insensitively. boto3's carries `Boto3/x` and `Botocore/y`: IMDSv2 support is judged
//!   on botocore's version.

use std::fmt;

use serde::Serialize;

/// One client, as far as it can be told.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SdkInfo {
    /// Stable short name: "botocore", "boto3", "aws-cli", "aws-sdk-js", "aws-sdk-js-v3",
    /// "aws-sdk-java", "aws-sdk-java-v2", "aws-sdk-go", "aws-sdk-go-v2", "aws-sdk-dotnet",
    /// "aws-sdk-cpp", "aws-sdk-php", "aws-sdk-ruby", "aws-powershell", "aws-sdk-rust",
    /// "aws-sdk-kotlin"; plain HTTP clients ([`HTTP_CLIENTS`]); runtimes known only from the
    /// executable ([`RUNTIMES`]).
    pub name: String,
    /// As the client reported it (sanitised: `[0-9A-Za-z._+-]`, at most [`MAX_VERSION`] bytes).
    pub version: Option<String>,
    pub is_aws_sdk: bool,
    /// Some(true) if this version supports IMDSv2, Some(false) if too old, None if unknown.
    pub supports_v2: Option<bool>,
    /// Minimum version with IMDSv2 support (from the facts table), for the advice.
    pub min_v2_version: Option<&'static str>,
}

impl fmt::Display for SdkInfo {
    /// "botocore 1.12.253", or just "node" when the version is not known.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.version {
            Some(v) => write!(f, "{} {v}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Longest version string kept from a `User-Agent` or a path.
pub const MAX_VERSION: usize = 40;
/// Longest product name looked at in a `User-Agent` token; longer ones are not ours.
const MAX_PRODUCT: usize = 48;

/// Names given to plain HTTP clients (no SDK): a tokenless call from one is [`V1Cause::NoSdk`].
pub const HTTP_CLIENTS: &[&str] = &[
    "curl",
    "wget",
    "python-urllib",
    "python-urllib3",
    "python-requests",
    "python-httpx",
    "aiohttp",
    "go-http-client",
    "node-fetch",
    "axios",
    "okhttp",
    "apache-httpclient",
    "java-http-client",
    "java-urlconnection",
    "guzzle",
    "powershell",
    "ruby-net-http",
];

/// Names given to a process known only by its language runtime: the SDK inside is unknown.
pub const RUNTIMES: &[&str] = &["node", "python", "java", "ruby", "php", "dotnet", "pwsh"];

/// First IMDSv2 versions (EC2 User Guide, see `shared/imds-facts.md`).
const MIN_AWS_CLI_V1: &str = "1.16.289";
const MIN_BOTOCORE: &str = "1.13.25";
const MIN_BOTO3: &str = "1.12.6";
const MIN_JAVA_V1: &str = "1.11.678";
const MIN_JAVA_V2: &str = "2.10.21";
const MIN_GO_V1: &str = "1.25.38";
const MIN_GO_V2: &str = "0.19.0";
const MIN_JS_V2: &str = "2.722.0";
const MIN_DOTNET: &str = "3.3.634.1";
const MIN_CPP: &str = "1.7.229";
const MIN_PHP: &str = "3.147.7";
const MIN_RUBY: &str = "3.79.0";
const MIN_POWERSHELL: &str = "4.0.1.0";

/// How a client's IMDSv2 support is decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Support {
    /// From this version on.
    Since(&'static str),
    /// Every version.
    All,
    /// Not known, or not an AWS SDK.
    Unknown,
}

/// A recognised client before it becomes an [`SdkInfo`].
#[derive(Clone, Copy, Debug)]
struct Known {
    name: &'static str,
    aws: bool,
    support: Support,
}

const fn sdk(name: &'static str, support: Support) -> Known {
    Known {
        name,
        aws: true,
        support,
    }
}

const fn http(name: &'static str) -> Known {
    Known {
        name,
        aws: false,
        support: Support::Unknown,
    }
}

fn build(known: Known, version: Option<String>) -> SdkInfo {
    let Known { name, aws, support } = known;
    let (supports_v2, min_v2_version) = match support {
        Support::Since(min) => (
            version.as_deref().and_then(|v| version_at_least(v, min)),
            Some(min),
        ),
        Support::All => (Some(true), None),
        Support::Unknown => (None, None),
    };
    SdkInfo {
        name: name.to_owned(),
        version,
        is_aws_sdk: aws,
        supports_v2,
        min_v2_version,
    }
}

// ---------------------------------------------------------------------------------------------
// Identification

/// Identify the client from the User-Agent, else from hints (executable name like "curl",
/// "wget", "aws"; argv like ["python3", ".../site-packages/awscli/..."] or ["/usr/bin/aws", ...]
/// or ["node", "app.js"]).
///
/// A `User-Agent` naming an AWS SDK wins. A plain-HTTP-client `User-Agent` loses to hints that
/// name an AWS SDK (an SDK may use a bare HTTP library's default). An unrecognised or missing
/// `User-Agent` leaves the hints. Never panics; cost is linear in the input.
pub fn identify(
    user_agent: Option<&str>,
    executable_name: &str,
    args: &[String],
) -> Option<SdkInfo> {
    let from_ua = user_agent.and_then(from_user_agent);
    if from_ua.as_ref().is_some_and(|s| s.is_aws_sdk) {
        return from_ua;
    }
    let from_hints = from_hints(executable_name, args);
    if from_hints.as_ref().is_some_and(|s| s.is_aws_sdk) {
        return from_hints;
    }
    from_ua.or(from_hints)
}

/// The product tokens of a `User-Agent`: `name/version` separated by white space. Comments
/// (`(go1.19.8; linux; amd64)`) and bare words yield no version.
fn products(ua: &str) -> impl Iterator<Item = (&str, Option<String>)> {
    ua.split_ascii_whitespace().filter_map(|token| {
        let (product, rest) = token.split_once('/')?;
        (!product.is_empty() && product.len() <= MAX_PRODUCT)
            .then(|| (product, clean_version(rest)))
    })
}

/// The leading `[0-9A-Za-z._+-]` run of `raw`, if it starts with a digit (a leading `v` is
/// dropped), at most [`MAX_VERSION`] bytes.
fn clean_version(raw: &str) -> Option<String> {
    let raw = raw.strip_prefix(['v', 'V']).unwrap_or(raw);
    let end = raw
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-')))
        .unwrap_or(raw.len())
        .min(MAX_VERSION);
    let v = raw.get(..end)?;
    v.starts_with(|c: char| c.is_ascii_digit())
        .then(|| v.to_owned())
}

/// The major version, when it is a plain number.
fn major(version: Option<&str>) -> Option<u64> {
    let v = version?;
    let digits = v.split('.').next()?;
    if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// What one product token names, and its rank: lower wins when a `User-Agent` names several
/// (the CLI's carries botocore's, PowerShell's the .NET SDK's, boto3's botocore's, and AWS
/// SDKs' carry `java/…`).
fn product_kind(product: &str, version: Option<&str>) -> Option<(u8, Known)> {
    let p = product.to_ascii_lowercase();
    let found = match p.as_str() {
        "aws-cli" => match major(version) {
            Some(1) => (0, sdk("aws-cli", Support::Since(MIN_AWS_CLI_V1))),
            Some(m) if m >= 2 => (0, sdk("aws-cli", Support::All)),
            _ => (0, sdk("aws-cli", Support::Unknown)),
        },
        "awspowershell" | "awspowershell.netcore" => {
            (1, sdk("aws-powershell", Support::Since(MIN_POWERSHELL)))
        }
        "boto3" => (2, sdk("boto3", Support::Since(MIN_BOTO3))),
        "botocore" => (3, sdk("botocore", Support::Since(MIN_BOTOCORE))),
        "aws-sdk-nodejs" => (4, sdk("aws-sdk-js", Support::Since(MIN_JS_V2))),
        "aws-sdk-js" => match major(version) {
            Some(m) if m >= 3 => (4, sdk("aws-sdk-js-v3", Support::All)),
            Some(2) => (4, sdk("aws-sdk-js", Support::Since(MIN_JS_V2))),
            _ => (4, sdk("aws-sdk-js", Support::Unknown)),
        },
        "aws-sdk-java" => match major(version) {
            Some(1) => (4, sdk("aws-sdk-java", Support::Since(MIN_JAVA_V1))),
            Some(2) => (4, sdk("aws-sdk-java-v2", Support::Since(MIN_JAVA_V2))),
            _ => (4, sdk("aws-sdk-java", Support::Unknown)),
        },
        "aws-sdk-go" => (4, sdk("aws-sdk-go", Support::Since(MIN_GO_V1))),
        "aws-sdk-go-v2" => (4, sdk("aws-sdk-go-v2", Support::Since(MIN_GO_V2))),
        "aws-sdk-dotnet-core" => (4, sdk("aws-sdk-dotnet", Support::Since(MIN_DOTNET))),
        d if d.starts_with("aws-sdk-dotnet-") => {
            (5, sdk("aws-sdk-dotnet", Support::Since(MIN_DOTNET)))
        }
        "aws-sdk-cpp" => (4, sdk("aws-sdk-cpp", Support::Since(MIN_CPP))),
        "aws-sdk-php" => (4, sdk("aws-sdk-php", Support::Since(MIN_PHP))),
        "aws-sdk-ruby3" | "aws-sdk-ruby2" | "aws-sdk-ruby" => {
            (4, sdk("aws-sdk-ruby", Support::Since(MIN_RUBY)))
        }
        "aws-sdk-rust" => (4, sdk("aws-sdk-rust", Support::All)),
        "aws-sdk-kotlin" => (4, sdk("aws-sdk-kotlin", Support::All)),
        "curl" => (10, http("curl")),
        "wget" => (10, http("wget")),
        "python-urllib" => (10, http("python-urllib")),
        "python-urllib3" => (10, http("python-urllib3")),
        "python-requests" => (10, http("python-requests")),
        "python-httpx" => (10, http("python-httpx")),
        "aiohttp" => (10, http("aiohttp")),
        "go-http-client" => (10, http("go-http-client")),
        "node-fetch" => (10, http("node-fetch")),
        "axios" => (10, http("axios")),
        "okhttp" => (10, http("okhttp")),
        "apache-httpclient" => (10, http("apache-httpclient")),
        "java-http-client" => (10, http("java-http-client")),
        "guzzlehttp" => (10, http("guzzle")),
        "powershell" | "windowspowershell" => (10, http("powershell")),
        "java" => (11, http("java-urlconnection")),
        _ => return None,
    };
    Some(found)
}

fn from_user_agent(ua: &str) -> Option<SdkInfo> {
    let ua = ua.trim();
    // Whole-string defaults that carry no version.
    if ua == "node" {
        return Some(build(http("node-fetch"), None));
    }
    if ua == "Ruby" {
        return Some(build(http("ruby-net-http"), None));
    }
    let mut best: Option<(u8, Known, Option<String>)> = None;
    for (product, version) in products(ua) {
        if let Some((rank, known)) = product_kind(product, version.as_deref())
            && best.as_ref().is_none_or(|(r, _, _)| rank < *r)
        {
            best = Some((rank, known, version));
        }
    }
    let (_, known, version) = best?;
    // "Go-http-client/1.1" is the HTTP version, not the client's.
    let version = if known.name == "go-http-client" {
        None
    } else {
        version
    };
    let mut info = build(known, version);
    if info.name == "boto3" {
        // boto3 only wraps botocore, which does the IMDS work: judge by botocore's version.
        let botocore = products(ua)
            .find(|(p, _)| p.eq_ignore_ascii_case("botocore"))
            .and_then(|(_, v)| v);
        if let Some(b) = botocore {
            info.supports_v2 = version_at_least(&b, MIN_BOTOCORE);
        }
    }
    Some(info)
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// What the executable name and argv say.
fn from_hints(executable_name: &str, args: &[String]) -> Option<SdkInfo> {
    let exe = basename(executable_name).to_ascii_lowercase();
    let arg0 = args
        .first()
        .map(|a| basename(a).to_ascii_lowercase())
        .unwrap_or_default();
    let is = |name: &str| exe == name || arg0 == name;
    let all = || std::iter::once(executable_name).chain(args.iter().map(String::as_str));

    // AWS CLI v2 lives under .../aws-cli/v2/<version>/ (or .../v2/current/).
    if let Some(rest) = all().find_map(|a| a.split_once("/aws-cli/v2/").map(|(_, rest)| rest)) {
        let version = rest.split('/').next().and_then(clean_version);
        return Some(build(sdk("aws-cli", Support::All), version));
    }
    // AWS CLI v1 is a Python package: python3 /usr/bin/aws, or .../site-packages/awscli/....
    let cli_v1 =
        all().any(|a| a.contains("site-packages/awscli") || a.contains("dist-packages/awscli"));
    let python = |s: &str| s.starts_with("python");
    let aws_script =
        (python(&exe) || python(&arg0)) && args.get(1).is_some_and(|a| basename(a) == "aws");
    if cli_v1 || aws_script {
        return Some(build(sdk("aws-cli", Support::Since(MIN_AWS_CLI_V1)), None));
    }
    if is("aws") {
        // Either major: v1's minimum is the one that can matter.
        let mut info = build(sdk("aws-cli", Support::Unknown), None);
        info.min_v2_version = Some(MIN_AWS_CLI_V1);
        return Some(info);
    }
    if all().any(|a| a.contains("node_modules/@aws-sdk/")) {
        return Some(build(sdk("aws-sdk-js-v3", Support::All), None));
    }
    if all().any(|a| a.contains("node_modules/aws-sdk/")) {
        return Some(build(sdk("aws-sdk-js", Support::Since(MIN_JS_V2)), None));
    }
    for client in ["curl", "wget"] {
        if is(client) {
            return Some(build(http(client), None));
        }
    }
    let runtime = [&exe, &arg0]
        .into_iter()
        .find_map(|name| match name.as_str() {
            "node" | "nodejs" => Some("node"),
            n if python(n) => Some("python"),
            "java" => Some("java"),
            n if n.starts_with("ruby") => Some("ruby"),
            n if n.starts_with("php") => Some("php"),
            "dotnet" => Some("dotnet"),
            "pwsh" | "powershell" => Some("pwsh"),
            _ => None,
        })?;
    Some(build(
        Known {
            name: runtime,
            aws: false,
            support: Support::Unknown,
        },
        None,
    ))
}

// ---------------------------------------------------------------------------------------------
// Versions

/// Compare dotted versions numerically ("1.16.289" vs "1.16.30"); non-numeric parts handled
/// sanely.
///
/// Each dot-separated part is compared by its leading digits as a number of any length
/// ("289" > "30"; leading zeros ignored); missing parts count as 0 ("1.13" == "1.13.0"). A
/// leading `v` is ignored. A part of `version` with text after its digits ("0-rc1", "4b")
/// only matters on a tie: a pre-release (`-` followed by a letter) of exactly `min` is not
/// at least `min`. None when either side has a part with no leading digit, or is empty.
pub fn version_at_least(version: &str, min: &str) -> Option<bool> {
    let a = numeric_parts(version)?;
    let b = numeric_parts(min)?;
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or("0");
        let y = b.get(i).copied().unwrap_or("0");
        match cmp_digits(x, y) {
            std::cmp::Ordering::Greater => return Some(true),
            std::cmp::Ordering::Less => return Some(false),
            std::cmp::Ordering::Equal => {}
        }
    }
    Some(!is_prerelease(version))
}

/// The leading digits of each dot-separated part; None if a part has none.
fn numeric_parts(v: &str) -> Option<Vec<&str>> {
    let v = v.trim();
    let v = v.strip_prefix(['v', 'V']).unwrap_or(v);
    if v.is_empty() {
        return None;
    }
    v.split('.')
        .map(|part| {
            let end = part
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(part.len());
            part.get(..end).filter(|d| !d.is_empty())
        })
        .collect()
}

/// Numbers as digit strings, of any length.
fn cmp_digits(a: &str, b: &str) -> std::cmp::Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn is_prerelease(v: &str) -> bool {
    v.split_once('-')
        .is_some_and(|(_, rest)| rest.starts_with(|c: char| c.is_ascii_alphabetic()))
}

// ---------------------------------------------------------------------------------------------
// Diagnosis

/// What this process did with tokens before the v1 call (tracked by the caller per process).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenHistory {
    /// Token PUTs sent.
    pub token_requests: u32,
    /// Token PUTs that got no response (hop limit / timeout).
    pub unanswered: u32,
    /// Token PUTs answered 403/404/405 (or other 4xx/5xx).
    pub refused: u32,
    /// Token PUTs answered 200.
    pub succeeded: u32,
}

/// Why a request went out without a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum V1Cause {
    /// The SDK predates IMDSv2.
    SdkTooOld,
    /// The token PUT failed (no answer, or refused) and the SDK fell back to IMDSv1.
    FallbackAfterTokenFailure,
    /// An IMDSv2-capable SDK, through an API that does not use tokens.
    V1ApiInV2Sdk,
    /// A plain HTTP client: the code itself must fetch and send the token.
    NoSdk,
    /// Client not identified.
    Unknown,
}

impl V1Cause {
    pub const ALL: [V1Cause; 5] = [
        Self::SdkTooOld,
        Self::FallbackAfterTokenFailure,
        Self::V1ApiInV2Sdk,
        Self::NoSdk,
        Self::Unknown,
    ];

    /// Stable label (metrics, JSON): same as the serde name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::SdkTooOld => "sdk_too_old",
            Self::FallbackAfterTokenFailure => "fallback_after_token_failure",
            Self::V1ApiInV2Sdk => "v1_api_in_v2_sdk",
            Self::NoSdk => "no_sdk",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for V1Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A cause and one line of specific advice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnosis {
    pub cause: V1Cause,
    pub advice: String,
}

const STOP_FALLBACK: &str = "or AWS_EC2_METADATA_V1_DISABLED=true to stop the fallback";
const RAW_HTTP_ADVICE: &str = "fetch a token with PUT /latest/api/token \
     (header X-aws-ec2-metadata-token-ttl-seconds) and send it as X-aws-ec2-metadata-token";
const JS_REQUEST_ADVICE: &str = "MetadataService.request() without a token is v1 even on the newest 2.x: \
     call fetchMetadataToken() first or move to @aws-sdk v3";

/// Diagnose one v1 (tokenless) request.
///
/// The rules, first match wins: a token PUT of this process went unanswered or was refused →
/// [`V1Cause::FallbackAfterTokenFailure`] (whatever the SDK); a known AWS SDK version older than
/// its first IMDSv2 version → [`V1Cause::SdkTooOld`]; an IMDSv2-capable AWS SDK →
/// [`V1Cause::V1ApiInV2Sdk`] (also when the same process got tokens on other calls: a code path
/// that does not use them, like aws-sdk-js 2.x credentials with token next to a bare
/// `MetadataService.request()`); a plain HTTP client → [`V1Cause::NoSdk`]; anything else (no
/// client, a bare runtime, an AWS SDK of unknown version) → [`V1Cause::Unknown`].
pub fn diagnose(sdk: Option<&SdkInfo>, history: &TokenHistory) -> Diagnosis {
    let TokenHistory {
        token_requests,
        unanswered,
        refused,
        succeeded,
    } = *history;
    let who = sdk.map(|s| format!("{s}: ")).unwrap_or_default();

    if unanswered > 0 || refused > 0 {
        let advice = if refused == 0 {
            format!(
                "{who}token PUT got no answer ({unanswered} of {token_requests}) (hop limit?): \
                 set HttpPutResponseHopLimit=2 for containers, {STOP_FALLBACK}"
            )
        } else if unanswered == 0 {
            format!(
                "{who}token PUT was refused with an error status ({refused} of {token_requests}): \
                 look for a proxy adding X-Forwarded-For or blocking PUT, {STOP_FALLBACK}"
            )
        } else {
            format!(
                "{who}token PUT got no answer {unanswered} times and an error status {refused} times \
                 (of {token_requests}): check HttpPutResponseHopLimit (2 for containers) and proxies, \
                 {STOP_FALLBACK}"
            )
        };
        return Diagnosis {
            cause: V1Cause::FallbackAfterTokenFailure,
            advice,
        };
    }

    let Some(sdk) = sdk else {
        return Diagnosis {
            cause: V1Cause::Unknown,
            advice:
                "client not identified (no known User-Agent or executable): look at the process's \
                     command line and loaded libraries to find the code calling IMDS"
                    .to_owned(),
        };
    };

    if sdk.is_aws_sdk && sdk.supports_v2 == Some(false) {
        let from = sdk.version.as_deref().unwrap_or("?");
        let to = sdk
            .min_v2_version
            .unwrap_or("a version with IMDSv2 support");
        let extra = match sdk.name.as_str() {
            "boto3" => format!(" (with botocore at least {MIN_BOTOCORE})"),
            "aws-cli" => " (or move to AWS CLI v2)".to_owned(),
            "aws-sdk-js" => format!("; {JS_REQUEST_ADVICE}"),
            _ => String::new(),
        };
        return Diagnosis {
            cause: V1Cause::SdkTooOld,
            advice: format!("upgrade {} from {from} to at least {to}{extra}", sdk.name),
        };
    }

    if sdk.is_aws_sdk && sdk.supports_v2 == Some(true) {
        let got_tokens = if succeeded > 0 {
            format!(" although it got {succeeded} token(s) on other calls")
        } else {
            String::new()
        };
        let advice = if sdk.name == "aws-sdk-js" {
            format!(
                "{sdk} MetadataService.request() without a token is v1{got_tokens}: \
                 call fetchMetadataToken() first or move to @aws-sdk v3"
            )
        } else {
            format!(
                "{sdk} supports IMDSv2 but sent a tokenless request{got_tokens}: find the code path calling IMDS \
                 without a token (a v1-only API, custom HTTP, or token fetching disabled), {STOP_FALLBACK}"
            )
        };
        return Diagnosis {
            cause: V1Cause::V1ApiInV2Sdk,
            advice,
        };
    }

    if sdk.is_aws_sdk {
        // An AWS SDK whose version is unknown: too old, or a v1-only API.
        let min = sdk
            .min_v2_version
            .map(|m| format!(" (IMDSv2 from {m})"))
            .unwrap_or_default();
        let what = if sdk.version.is_some() {
            format!("{sdk}: IMDSv2 support of this version is not known and it")
        } else {
            format!("{sdk} (version unknown)")
        };
        return Diagnosis {
            cause: V1Cause::Unknown,
            advice: format!(
                "{what} sent no token request: check its version{min} and upgrade if older, \
                 else look for a v1-only API in the code"
            ),
        };
    }

    if HTTP_CLIENTS.contains(&sdk.name.as_str()) {
        return Diagnosis {
            cause: V1Cause::NoSdk,
            advice: format!("{sdk} (raw HTTP, no SDK): {RAW_HTTP_ADVICE}"),
        };
    }

    let hint = match sdk.name.as_str() {
        "node" => {
            " (@aws-sdk v3 sends no User-Agent but always a token PUT first; Node's http module sends none)"
        }
        _ => "",
    };
    Diagnosis {
        cause: V1Cause::Unknown,
        advice: format!(
            "a {sdk} process with no recognisable User-Agent{hint}: look at its command line for the \
             library calling IMDS"
        ),
    }
}

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rstest::rstest;

    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    fn ua(s: &str) -> Option<SdkInfo> {
        identify(Some(s), "", &[])
    }

    // -----------------------------------------------------------------------------------------
    // Real clients: every fixture, replayed.

    /// One request of a fixture.
    #[derive(Debug)]
    struct Req {
        put_token: bool,
        has_token: bool,
        user_agent: Option<String>,
    }

    /// Parses a fixture: back-to-back requests, none with a body.
    fn requests(mut raw: &[u8]) -> Vec<Req> {
        let mut out = Vec::new();
        while !raw.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            let len = match req.parse(raw) {
                Ok(httparse::Status::Complete(len)) => len,
                other => panic!("fixture does not parse: {other:?}"),
            };
            let header = |name: &str| {
                req.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| String::from_utf8_lossy(h.value).into_owned())
            };
            assert!(
                header("content-length").is_none_or(|l| l == "0"),
                "fixture request has a body"
            );
            out.push(Req {
                put_token: req.method == Some("PUT") && req.path == Some("/latest/api/token"),
                has_token: header("x-aws-ec2-metadata-token").is_some(),
                user_agent: header("user-agent"),
            });
            raw = &raw[len..];
        }
        out
    }

    /// Whether the fake IMDS answered the token PUTs in that capture.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Put {
        Answered,
        Dropped,
    }
    use Put::{Answered, Dropped};

    type Ident = Option<(&'static str, Option<&'static str>, Option<bool>)>;

    macro_rules! fixture {
        ($name:literal) => {
            (
                $name,
                include_bytes!(concat!("fixtures/", $name, ".http")).as_slice(),
            )
        };
    }

    /// For each captured run: what the User-Agent alone identifies (None: the run sent none),
    /// whether a token PUT was sent, the process hints, and the cause of its first tokenless
    /// request (None: every request carried a token).
    #[rstest]
    #[case::botocore_1_12_253(fixture!("botocore-1.12.253"), Answered, "python3",
        Some(("botocore", Some("1.12.253"), Some(false))), false, Some(V1Cause::SdkTooOld))]
    #[case::boto3_1_9_253(fixture!("boto3-1.9.253"), Answered, "python3",
        Some(("boto3", Some("1.9.253"), Some(false))), false, Some(V1Cause::SdkTooOld))]
    #[case::botocore_1_13_24(fixture!("botocore-1.13.24"), Answered, "python3",
        Some(("botocore", Some("1.13.24"), Some(false))), true, None)]
    #[case::botocore_1_13_24_fallback(fixture!("botocore-1.13.24-fallback"), Dropped, "python3",
        Some(("botocore", Some("1.13.24"), Some(false))), true, Some(V1Cause::FallbackAfterTokenFailure))]
    #[case::botocore_1_44_5(fixture!("botocore-1.44.5"), Answered, "python3",
        Some(("botocore", Some("1.44.5"), Some(true))), true, None)]
    #[case::botocore_1_44_5_fallback(fixture!("botocore-1.44.5-fallback"), Dropped, "python3",
        Some(("botocore", Some("1.44.5"), Some(true))), true, Some(V1Cause::FallbackAfterTokenFailure))]
    #[case::boto3_1_44_5(fixture!("boto3-1.44.5"), Answered, "python3",
        Some(("boto3", Some("1.44.5"), Some(true))), true, None)]
    #[case::aws_cli_1_16_200(fixture!("aws-cli-1.16.200"), Answered, "aws",
        Some(("aws-cli", Some("1.16.200"), Some(false))), false, Some(V1Cause::SdkTooOld))]
    #[case::aws_cli_1_46_3(fixture!("aws-cli-1.46.3"), Answered, "aws",
        Some(("aws-cli", Some("1.46.3"), Some(true))), true, None)]
    #[case::aws_cli_2_9_19(fixture!("aws-cli-2.9.19"), Answered, "aws",
        Some(("aws-cli", Some("2.9.19"), Some(true))), true, None)]
    #[case::js_2_500_0_creds(fixture!("aws-sdk-js-2.500.0-creds"), Answered, "node",
        Some(("aws-sdk-js", Some("2.500.0"), Some(false))), false, Some(V1Cause::SdkTooOld))]
    #[case::js_2_500_0_request(fixture!("aws-sdk-js-2.500.0-request"), Answered, "node",
        Some(("aws-sdk-js", Some("2.500.0"), Some(false))), false, Some(V1Cause::SdkTooOld))]
    #[case::js_2_700_0_creds(fixture!("aws-sdk-js-2.700.0-creds"), Answered, "node", None, true, None)]
    #[case::js_2_700_0_request(fixture!("aws-sdk-js-2.700.0-request"), Answered, "node",
        Some(("aws-sdk-js", Some("2.700.0"), Some(false))), false, Some(V1Cause::SdkTooOld))]
    #[case::js_2_1693_0_creds(fixture!("aws-sdk-js-2.1693.0-creds"), Answered, "node", None, true, None)]
    #[case::js_2_1693_0_token(fixture!("aws-sdk-js-2.1693.0-token"), Answered, "node", None, true, None)]
    #[case::js_2_1693_0_request(fixture!("aws-sdk-js-2.1693.0-request"), Answered, "node",
        Some(("aws-sdk-js", Some("2.1693.0"), Some(true))), false, Some(V1Cause::V1ApiInV2Sdk))]
    #[case::js_2_1693_0_creds_fallback(fixture!("aws-sdk-js-2.1693.0-creds-fallback"), Dropped, "node",
        Some(("aws-sdk-js", Some("2.1693.0"), Some(true))), true, Some(V1Cause::FallbackAfterTokenFailure))]
    #[case::js_v3_imds_3_374_0(fixture!("aws-sdk-js-v3-credential-provider-imds-3.374.0"), Answered, "node",
        None, true, None)]
    #[case::js_v3_node_3_972_97(fixture!("aws-sdk-js-v3-credential-provider-node-3.972.97"), Answered, "node",
        None, true, None)]
    #[case::js_v3_node_3_972_97_fallback(fixture!("aws-sdk-js-v3-credential-provider-node-3.972.97-fallback"),
        Dropped, "node", None, true, Some(V1Cause::FallbackAfterTokenFailure))]
    #[case::go_1_44_133(fixture!("aws-sdk-go-1.44.133"), Answered, "app",
        Some(("aws-sdk-go", Some("1.44.133"), Some(true))), true, None)]
    #[case::go_v2_1_17_1(fixture!("aws-sdk-go-v2-1.17.1"), Answered, "app",
        Some(("aws-sdk-go-v2", Some("1.17.1"), Some(true))), true, None)]
    #[case::go_v2_1_17_1_fallback(fixture!("aws-sdk-go-v2-1.17.1-fallback"), Dropped, "app",
        Some(("aws-sdk-go-v2", Some("1.17.1"), Some(true))), true, Some(V1Cause::FallbackAfterTokenFailure))]
    #[case::ruby_3_168_1(fixture!("aws-sdk-ruby-3.168.1"), Answered, "ruby",
        Some(("aws-sdk-ruby", Some("3.168.1"), Some(true))), true, None)]
    #[case::curl_7_88_1(fixture!("curl-7.88.1"), Answered, "curl",
        Some(("curl", Some("7.88.1"), None)), false, Some(V1Cause::NoSdk))]
    #[case::curl_7_88_1_token(fixture!("curl-7.88.1-token"), Answered, "curl",
        Some(("curl", Some("7.88.1"), None)), true, None)]
    #[case::wget_1_21_3(fixture!("wget-1.21.3"), Answered, "wget",
        Some(("wget", Some("1.21.3"), None)), false, Some(V1Cause::NoSdk))]
    #[case::python_urllib_3_11_7(fixture!("python-urllib-3.11.7"), Answered, "python3",
        Some(("python-urllib", Some("3.11"), None)), false, Some(V1Cause::NoSdk))]
    #[case::python_urllib3_2_8_0(fixture!("python-urllib3-2.8.0"), Answered, "python3",
        Some(("python-urllib3", Some("2.8.0"), None)), false, Some(V1Cause::NoSdk))]
    #[case::python_requests_2_34_2(fixture!("python-requests-2.34.2"), Answered, "python3",
        Some(("python-requests", Some("2.34.2"), None)), false, Some(V1Cause::NoSdk))]
    #[case::go_http_client_1_19_8(fixture!("go-http-client-1.19.8"), Answered, "app",
        Some(("go-http-client", None, None)), false, Some(V1Cause::NoSdk))]
    #[case::node_fetch_20_20_2(fixture!("node-fetch-20.20.2"), Answered, "node",
        Some(("node-fetch", None, None)), false, Some(V1Cause::NoSdk))]
    #[case::node_http_20_20_2(fixture!("node-http-20.20.2"), Answered, "node", None, false, Some(V1Cause::Unknown))]
    fn real_client_fixture(
        #[case] fixture: (&str, &[u8]),
        #[case] put: Put,
        #[case] exe: &str,
        #[case] by_ua: Ident,
        #[case] sent_put: bool,
        #[case] v1_cause: Option<V1Cause>,
    ) {
        let (name, raw) = fixture;
        let reqs = requests(raw);
        assert!(!reqs.is_empty(), "{name}");
        assert_eq!(
            reqs.iter().any(|r| r.put_token),
            sent_put,
            "{name}: token PUT sent?"
        );

        // What the User-Agent alone says (the first one sent; the tokenless requests' one when
        // the SDK sends a User-Agent only on those, as aws-sdk-js 2.x does).
        let first_ua = reqs
            .iter()
            .find(|r| !r.has_token && !r.put_token && r.user_agent.is_some())
            .or_else(|| reqs.iter().find(|r| r.user_agent.is_some()))
            .and_then(|r| r.user_agent.as_deref());
        let got = first_ua.and_then(ua);
        let got_tuple = got
            .as_ref()
            .map(|s| (s.name.as_str(), s.version.as_deref(), s.supports_v2));
        assert_eq!(got_tuple, by_ua, "{name}: UA {first_ua:?}");

        // The first tokenless request, diagnosed as the agent would: User-Agent plus hints,
        // with the token PUTs sent before it on record.
        let args = strings(&[exe, "app"]);
        let first_v1 = reqs.iter().position(|r| !r.put_token && !r.has_token);
        let cause = first_v1.map(|i| {
            let puts =
                u32::try_from(reqs[..i].iter().filter(|r| r.put_token).count()).unwrap_or(u32::MAX);
            let history = match put {
                Answered => TokenHistory {
                    token_requests: puts,
                    succeeded: puts,
                    ..Default::default()
                },
                Dropped => TokenHistory {
                    token_requests: puts,
                    unanswered: puts,
                    ..Default::default()
                },
            };
            let sdk = identify(reqs[i].user_agent.as_deref(), exe, &args);
            let d = diagnose(sdk.as_ref(), &history);
            assert!(
                !d.advice.is_empty() && !d.advice.contains('\n'),
                "{name}: {d:?}"
            );
            d.cause
        });
        assert_eq!(cause, v1_cause, "{name}");
    }

    /// The JS v2 and v3 runs that send no User-Agent are still named, from the process.
    #[rstest]
    #[case::js_v3(fixture!("aws-sdk-js-v3-credential-provider-node-3.972.97-fallback"))]
    #[case::js_v2_creds(fixture!("aws-sdk-js-2.700.0-creds"))]
    #[case::node_http(fixture!("node-http-20.20.2"))]
    fn no_user_agent_falls_back_to_the_process(#[case] fixture: (&str, &[u8])) {
        let (name, raw) = fixture;
        assert!(
            requests(raw).iter().all(|r| r.user_agent.is_none()),
            "{name}"
        );
        let sdk = identify(None, "node", &strings(&["node", "server.js"]));
        assert_eq!(sdk.map(|s| s.name), Some("node".to_owned()), "{name}");
    }

    // -----------------------------------------------------------------------------------------
    // Documented and synthetic User-Agent shapes.

    #[rstest]
    // Facts-table clues (documentation only).
    #[case(
        "aws-cli/2.15.0 Python/3.11.6 Linux/6.1.0 exe/x86_64.amzn.2023 prompt/off command/sts.get-caller-identity",
        "aws-cli",
        Some("2.15.0"),
        Some(true),
        true
    )]
    #[case(
        "aws-cli/1.16.289 Python/2.7.16 Linux/4.14 botocore/1.13.25",
        "aws-cli",
        Some("1.16.289"),
        Some(true),
        true
    )]
    #[case(
        "aws-cli/1.16.288 Python/2.7.16 Linux/4.14 botocore/1.13.24",
        "aws-cli",
        Some("1.16.288"),
        Some(false),
        true
    )]
    #[case(
        "Botocore/1.13.25 Python/3.8.0 Linux/5.4",
        "botocore",
        Some("1.13.25"),
        Some(true),
        true
    )]
    #[case("botocore/1.12.9", "botocore", Some("1.12.9"), Some(false), true)]
    #[case(
        "Boto3/1.12.6 Python/3.8.0 Linux/5.4 Botocore/1.15.6",
        "boto3",
        Some("1.12.6"),
        Some(true),
        true
    )]
    #[case(
        "Boto3/1.10.30 Python/3.8.0 Linux/5.4 Botocore/1.13.30",
        "boto3",
        Some("1.10.30"),
        Some(true),
        true
    )]
    #[case(
        "Boto3/1.10.20 Python/3.8.0 Linux/5.4 Botocore/1.13.20",
        "boto3",
        Some("1.10.20"),
        Some(false),
        true
    )]
    #[case("Boto3/1.12.6 Python/3.8.0", "boto3", Some("1.12.6"), Some(true), true)]
    #[case(
        "aws-sdk-java/1.11.678 Linux/4.14 OpenJDK_64-Bit_Server_VM/25.232-b09 java/1.8.0_232 vendor/Amazon.com_Inc.",
        "aws-sdk-java",
        Some("1.11.678"),
        Some(true),
        true
    )]
    #[case(
        "aws-sdk-java/1.11.600 Linux/4.14 java/1.8.0_232",
        "aws-sdk-java",
        Some("1.11.600"),
        Some(false),
        true
    )]
    #[case(
        "aws-sdk-java/2.10.21 Linux/4.14 OpenJDK_64-Bit_Server_VM/11.0.5+10-LTS Java/11.0.5",
        "aws-sdk-java-v2",
        Some("2.10.21"),
        Some(true),
        true
    )]
    #[case(
        "aws-sdk-java/2.10.0 Linux/4.14 Java/11.0.5",
        "aws-sdk-java-v2",
        Some("2.10.0"),
        Some(false),
        true
    )]
    #[case(
        "aws-sdk-go/1.25.38 (go1.13.4; linux; amd64)",
        "aws-sdk-go",
        Some("1.25.38"),
        Some(true),
        true
    )]
    #[case(
        "aws-sdk-go/1.25.37 (go1.13.4; linux; amd64)",
        "aws-sdk-go",
        Some("1.25.37"),
        Some(false),
        true
    )]
    #[case(
        "aws-sdk-go-v2/0.18.0 (go1.13.4; linux; amd64)",
        "aws-sdk-go-v2",
        Some("0.18.0"),
        Some(false),
        true
    )]
    #[case(
        "aws-sdk-go-v2/1.24.0 os/linux lang/go#1.21.5 md/GOOS#linux md/GOARCH#amd64 api/imds#1.14.11",
        "aws-sdk-go-v2",
        Some("1.24.0"),
        Some(true),
        true
    )]
    #[case(
        "aws-sdk-nodejs/2.721.0 linux/v12.18.0",
        "aws-sdk-js",
        Some("2.721.0"),
        Some(false),
        true
    )]
    #[case(
        "aws-sdk-nodejs/2.722.0 linux/v12.18.0",
        "aws-sdk-js",
        Some("2.722.0"),
        Some(true),
        true
    )]
    #[case(
        "aws-sdk-js/3.370.0 ua/2.0 os/linux#5.10 lang/js md/nodejs#18.16.0 api/sts#3.370.0",
        "aws-sdk-js-v3",
        Some("3.370.0"),
        Some(true),
        true
    )]
    #[case(
        "aws-sdk-js/2.600.0 callback",
        "aws-sdk-js",
        Some("2.600.0"),
        Some(false),
        true
    )]
    #[case(
        "aws-sdk-dotnet-coreclr/3.3.634.1 aws-sdk-dotnet-core/3.3.634.1 .NET_Core/4.6 OS/Linux ClientSync",
        "aws-sdk-dotnet",
        Some("3.3.634.1"),
        Some(true),
        true
    )]
    #[case(
        "aws-sdk-dotnet-45/3.3.600.0 aws-sdk-dotnet-core/3.3.600.0 .NET_Runtime/4.0 OS/Microsoft_Windows",
        "aws-sdk-dotnet",
        Some("3.3.600.0"),
        Some(false),
        true
    )]
    #[case(
        "aws-sdk-dotnet-coreclr/3.7.1.0 .NET_Core/6.0",
        "aws-sdk-dotnet",
        Some("3.7.1.0"),
        Some(true),
        true
    )]
    #[case(
        "aws-sdk-cpp/1.7.229 Linux/4.14 x86_64 GCC/7.3.1",
        "aws-sdk-cpp",
        Some("1.7.229"),
        Some(true),
        true
    )]
    #[case(
        "aws-sdk-cpp/1.7.100 Linux/4.14",
        "aws-sdk-cpp",
        Some("1.7.100"),
        Some(false),
        true
    )]
    #[case(
        "aws-sdk-php/3.147.7 OS/Linux/4.14 lang/php/7.4.3 GuzzleHttp/6",
        "aws-sdk-php",
        Some("3.147.7"),
        Some(true),
        true
    )]
    #[case(
        "aws-sdk-php/3.100.0 GuzzleHttp/6",
        "aws-sdk-php",
        Some("3.100.0"),
        Some(false),
        true
    )]
    #[case(
        "aws-sdk-ruby3/3.79.0 ruby/2.6.5 x86_64-linux",
        "aws-sdk-ruby",
        Some("3.79.0"),
        Some(true),
        true
    )]
    #[case(
        "aws-sdk-ruby3/3.78.0",
        "aws-sdk-ruby",
        Some("3.78.0"),
        Some(false),
        true
    )]
    #[case(
        "aws-sdk-ruby2/2.11.300 ruby/2.5.0 x86_64-linux",
        "aws-sdk-ruby",
        Some("2.11.300"),
        Some(false),
        true
    )]
    #[case(
        "AWSPowerShell/4.0.1.0 .NET_Runtime/4.0 aws-sdk-dotnet-45/3.3.600.0 aws-sdk-dotnet-core/3.3.600.0",
        "aws-powershell",
        Some("4.0.1.0"),
        Some(true),
        true
    )]
    #[case(
        "AWSPowerShell.NetCore/3.3.618.0 .NET_Core/4.6 aws-sdk-dotnet-core/3.3.104.0",
        "aws-powershell",
        Some("3.3.618.0"),
        Some(false),
        true
    )]
    #[case(
        "aws-sdk-rust/0.56.1 os/linux lang/rust/1.72.0 api/imds/0.56.1",
        "aws-sdk-rust",
        Some("0.56.1"),
        Some(true),
        true
    )]
    #[case(
        "aws-sdk-kotlin/1.0.0 ua/2.0 api/imds#1.0.0 os/linux#6.1 lang/kotlin#1.9.20 md/javaVersion#17",
        "aws-sdk-kotlin",
        Some("1.0.0"),
        Some(true),
        true
    )]
    // Plain HTTP clients (library documentation).
    #[case("axios/1.6.2", "axios", Some("1.6.2"), None, false)]
    #[case("okhttp/4.12.0", "okhttp", Some("4.12.0"), None, false)]
    #[case(
        "Apache-HttpClient/4.5.13 (Java/11.0.2)",
        "apache-httpclient",
        Some("4.5.13"),
        None,
        false
    )]
    #[case(
        "Java-http-client/17.0.9",
        "java-http-client",
        Some("17.0.9"),
        None,
        false
    )]
    #[case("Java/1.8.0_392", "java-urlconnection", Some("1.8.0_392"), None, false)]
    #[case("python-httpx/0.25.2", "python-httpx", Some("0.25.2"), None, false)]
    #[case("Python/3.11 aiohttp/3.9.1", "aiohttp", Some("3.9.1"), None, false)]
    #[case("GuzzleHttp/7", "guzzle", Some("7"), None, false)]
    #[case(
        "Mozilla/5.0 (Linux; Linux 6.1.0; en-US) PowerShell/7.4.0",
        "powershell",
        Some("7.4.0"),
        None,
        false
    )]
    #[case("Ruby", "ruby-net-http", None, None, false)]
    #[case("node", "node-fetch", None, None, false)]
    // Shapes with odd spelling or spacing.
    #[case("  CURL/8.5.0  ", "curl", Some("8.5.0"), None, false)]
    #[case("AWS-CLI/2.0.0", "aws-cli", Some("2.0.0"), Some(true), true)]
    #[case("aws-cli/", "aws-cli", None, None, true)]
    #[case("botocore/unknown", "botocore", None, None, true)]
    #[case("aws-cli/3.0.0", "aws-cli", Some("3.0.0"), Some(true), true)]
    #[case("aws-sdk-java/3.0.0", "aws-sdk-java", Some("3.0.0"), None, true)]
    #[case("aws-sdk-go/v1.25.38", "aws-sdk-go", Some("1.25.38"), Some(true), true)]
    #[case(
        "aws-sdk-go/1.30.0;extra",
        "aws-sdk-go",
        Some("1.30.0"),
        Some(true),
        true
    )]
    fn documented_user_agents(
        #[case] user_agent: &str,
        #[case] name: &str,
        #[case] version: Option<&str>,
        #[case] supports: Option<bool>,
        #[case] aws: bool,
    ) {
        let sdk = ua(user_agent).unwrap_or_else(|| panic!("not identified: {user_agent}"));
        assert_eq!(sdk.name, name, "{user_agent}");
        assert_eq!(sdk.version.as_deref(), version, "{user_agent}");
        assert_eq!(sdk.supports_v2, supports, "{user_agent}");
        assert_eq!(sdk.is_aws_sdk, aws, "{user_agent}");
    }

    #[rstest]
    #[case("")]
    #[case("   ")]
    #[case("Mozilla/5.0 (X11; Linux x86_64)")]
    #[case("my-app/1.0")]
    #[case("aws-sdk-javascript/1.0")]
    #[case("/1.0 aws-sdk")]
    fn unrecognised_user_agents(#[case] user_agent: &str) {
        assert_eq!(ua(user_agent), None);
    }

    #[rstest]
    #[case(
        "aws-cli/1.16.200 Python/3.7.16 Linux/x botocore/1.12.190",
        Some("1.16.289")
    )]
    #[case("aws-cli/2.9.19", None)]
    #[case("Boto3/1.9.253 Python/3.7.16 Botocore/1.12.253", Some("1.12.6"))]
    #[case("Botocore/1.12.253", Some("1.13.25"))]
    #[case("aws-sdk-nodejs/2.500.0 linux/v20.20.2", Some("2.722.0"))]
    #[case("aws-sdk-js/3.1.0", None)]
    #[case("aws-sdk-go-v2/0.18.0", Some("0.19.0"))]
    #[case("curl/7.88.1", None)]
    fn min_versions_come_from_the_facts_table(#[case] user_agent: &str, #[case] min: Option<&str>) {
        assert_eq!(ua(user_agent).and_then(|s| s.min_v2_version), min);
    }

    // -----------------------------------------------------------------------------------------
    // Hints: executable and argv.

    #[rstest]
    #[case(None, "curl", &["curl", "-s", "http://169.254.169.254/latest/meta-data/"], Some(("curl", None, None)))]
    #[case(None, "wget", &["wget", "-qO-", "http://169.254.169.254/"], Some(("wget", None, None)))]
    #[case(None, "aws", &["/usr/bin/aws", "s3", "ls"], Some(("aws-cli", None, None)))]
    #[case(None, "python3", &["/usr/bin/python3", "/usr/bin/aws", "s3", "ls"], Some(("aws-cli", None, None)))]
    #[case(None, "python3",
        &["python3", "/usr/lib/python3/site-packages/awscli/__main__.py"], Some(("aws-cli", None, None)))]
    #[case(None, "python3.11",
        &["/usr/bin/python3.11", "/usr/lib/python3/dist-packages/awscli/clidriver.py"], Some(("aws-cli", None, None)))]
    #[case(None, "aws", &["/usr/local/aws-cli/v2/2.15.0/dist/aws", "sts", "get-caller-identity"],
        Some(("aws-cli", Some("2.15.0"), Some(true))))]
    #[case(None, "aws", &["/usr/local/aws-cli/v2/current/bin/aws"], Some(("aws-cli", None, Some(true))))]
    #[case(None, "node", &["node", "app.js"], Some(("node", None, None)))]
    #[case(None, "nodejs", &["nodejs", "/srv/node_modules/@aws-sdk/client-s3/dist/x.js"],
        Some(("aws-sdk-js-v3", None, Some(true))))]
    #[case(None, "node", &["node", "/srv/node_modules/aws-sdk/scripts/x.js"], Some(("aws-sdk-js", None, None)))]
    #[case(None, "python3", &["python3", "job.py"], Some(("python", None, None)))]
    #[case(None, "java", &["java", "-jar", "app.jar"], Some(("java", None, None)))]
    #[case(None, "ruby3.1", &["ruby", "app.rb"], Some(("ruby", None, None)))]
    #[case(None, "php-fpm8.2", &["php-fpm: pool www"], Some(("php", None, None)))]
    #[case(None, "dotnet", &["dotnet", "App.dll"], Some(("dotnet", None, None)))]
    #[case(None, "pwsh", &["pwsh", "-File", "x.ps1"], Some(("pwsh", None, None)))]
    #[case(None, "my-go-app", &["/usr/local/bin/my-go-app"], None)]
    #[case(None, "", &[], None)]
    // A generic User-Agent loses to hints naming an AWS SDK, and wins over a bare runtime.
    #[case(Some("python-urllib3/1.25.11"), "python3", &["python3", "/usr/bin/aws", "sts"], Some(("aws-cli", None, None)))]
    #[case(Some("python-urllib3/1.25.11"), "python3", &["python3", "job.py"],
        Some(("python-urllib3", Some("1.25.11"), None)))]
    // An AWS SDK User-Agent wins over every hint.
    #[case(Some("Botocore/1.12.253 Python/3.7.16"), "aws", &["/usr/bin/aws"], Some(("botocore", Some("1.12.253"), Some(false))))]
    // An unrecognised User-Agent leaves the hints.
    #[case(Some("my-app/1.0"), "curl", &["curl"], Some(("curl", None, None)))]
    fn hints(
        #[case] user_agent: Option<&str>,
        #[case] exe: &str,
        #[case] args: &[&str],
        #[case] want: Ident,
    ) {
        let got = identify(user_agent, exe, &strings(args));
        let got = got
            .as_ref()
            .map(|s| (s.name.as_str(), s.version.as_deref(), s.supports_v2));
        assert_eq!(got, want);
    }

    #[test]
    fn aws_cli_hint_carries_the_v1_minimum() {
        let sdk = identify(None, "aws", &strings(&["aws"]));
        assert_eq!(sdk.and_then(|s| s.min_v2_version), Some("1.16.289"));
    }

    // -----------------------------------------------------------------------------------------
    // Versions.

    #[rstest]
    #[case("1.16.289", "1.16.289", Some(true))]
    #[case("1.16.289", "1.16.30", Some(true))]
    #[case("1.16.30", "1.16.289", Some(false))]
    #[case("1.16.290", "1.16.289", Some(true))]
    #[case("1.17.0", "1.16.289", Some(true))]
    #[case("2.0.0", "1.16.289", Some(true))]
    #[case("0.19.0", "0.19.0", Some(true))]
    #[case("0.18.99", "0.19.0", Some(false))]
    #[case("1.13", "1.13.0", Some(true))]
    #[case("1.13", "1.13.25", Some(false))]
    #[case("1.13.25.0", "1.13.25", Some(true))]
    #[case("1.13.25.1", "1.13.25", Some(true))]
    #[case("3.3.634.1", "3.3.634.1", Some(true))]
    #[case("3.3.634.0", "3.3.634.1", Some(false))]
    #[case("4.0.1.0", "4.0.1.0", Some(true))]
    #[case("01.013.025", "1.13.25", Some(true))]
    #[case("v1.25.38", "1.25.38", Some(true))]
    #[case("1.13.25-rc1", "1.13.25", Some(false))]
    #[case("1.13.26-rc1", "1.13.25", Some(true))]
    #[case("1.13.25+build5", "1.13.25", Some(true))]
    #[case("1.8.0_392", "1.8.0", Some(true))]
    #[case("25.372-b07", "25.0", Some(true))]
    #[case("99999999999999999999999.0", "1.0", Some(true))]
    #[case("1.0", "99999999999999999999999.0", Some(false))]
    #[case(" 1.2.3 ", "1.2.3", Some(true))]
    #[case("", "1.0", None)]
    #[case("1.0", "", None)]
    #[case("abc", "1.0", None)]
    #[case("1..2", "1.0", None)]
    #[case("1.x.2", "1.0", None)]
    #[case("unknown", "1.13.25", None)]
    fn versions(#[case] version: &str, #[case] min: &str, #[case] want: Option<bool>) {
        assert_eq!(version_at_least(version, min), want, "{version} >= {min}");
    }

    // -----------------------------------------------------------------------------------------
    // Diagnosis: every cause.

    fn info(user_agent: &str) -> SdkInfo {
        ua(user_agent).unwrap_or_else(|| panic!("not identified: {user_agent}"))
    }

    const NO_ANSWER: TokenHistory = TokenHistory {
        token_requests: 1,
        unanswered: 1,
        refused: 0,
        succeeded: 0,
    };
    const REFUSED: TokenHistory = TokenHistory {
        token_requests: 2,
        unanswered: 0,
        refused: 2,
        succeeded: 0,
    };
    const BOTH: TokenHistory = TokenHistory {
        token_requests: 3,
        unanswered: 1,
        refused: 1,
        succeeded: 1,
    };
    const NEVER: TokenHistory = TokenHistory {
        token_requests: 0,
        unanswered: 0,
        refused: 0,
        succeeded: 0,
    };
    const FINE: TokenHistory = TokenHistory {
        token_requests: 2,
        unanswered: 0,
        refused: 0,
        succeeded: 2,
    };

    #[rstest]
    // Token failure wins, whatever the SDK (even a too-old one, or none).
    #[case(
        Some("Botocore/1.44.5 Python/3.11.7"),
        NO_ANSWER,
        V1Cause::FallbackAfterTokenFailure,
        "botocore 1.44.5: token PUT got no answer (1 of 1) (hop limit?): set HttpPutResponseHopLimit=2 for containers, or AWS_EC2_METADATA_V1_DISABLED=true to stop the fallback"
    )]
    #[case(
        Some("Botocore/1.12.253"),
        NO_ANSWER,
        V1Cause::FallbackAfterTokenFailure,
        "no answer"
    )]
    #[case(
        Some("aws-sdk-go-v2/1.17.1 os/linux"),
        REFUSED,
        V1Cause::FallbackAfterTokenFailure,
        "refused with an error status (2 of 2)"
    )]
    #[case(
        None,
        BOTH,
        V1Cause::FallbackAfterTokenFailure,
        "no answer 1 times and an error status 1 times (of 3)"
    )]
    #[case(
        Some("curl/7.88.1"),
        REFUSED,
        V1Cause::FallbackAfterTokenFailure,
        "curl 7.88.1: token PUT was refused"
    )]
    // Too old.
    #[case(
        Some("Botocore/1.12.253 Python/3.7.16"),
        NEVER,
        V1Cause::SdkTooOld,
        "upgrade botocore from 1.12.253 to at least 1.13.25"
    )]
    #[case(
        Some("Boto3/1.9.253 Python/3.7.16 Botocore/1.12.253"),
        NEVER,
        V1Cause::SdkTooOld,
        "upgrade boto3 from 1.9.253 to at least 1.12.6 (with botocore at least 1.13.25)"
    )]
    #[case(
        Some("aws-cli/1.16.200 Python/3.7.16 botocore/1.12.190"),
        NEVER,
        V1Cause::SdkTooOld,
        "upgrade aws-cli from 1.16.200 to at least 1.16.289 (or move to AWS CLI v2)"
    )]
    #[case(
        Some("aws-sdk-nodejs/2.700.0 linux/v20.20.2"),
        NEVER,
        V1Cause::SdkTooOld,
        "upgrade aws-sdk-js from 2.700.0 to at least 2.722.0; MetadataService.request() without a token is v1"
    )]
    #[case(
        Some("aws-sdk-java/1.11.600"),
        NEVER,
        V1Cause::SdkTooOld,
        "upgrade aws-sdk-java from 1.11.600 to at least 1.11.678"
    )]
    #[case(
        Some("AWSPowerShell/3.3.0.0"),
        NEVER,
        V1Cause::SdkTooOld,
        "upgrade aws-powershell from 3.3.0.0 to at least 4.0.1.0"
    )]
    #[case(
        Some("Botocore/1.13.24"),
        FINE,
        V1Cause::SdkTooOld,
        "upgrade botocore from 1.13.24 to at least 1.13.25"
    )]
    // A v1 API in a v2-capable SDK.
    #[case(
        Some("aws-sdk-nodejs/2.1693.0 linux/v20.20.2"),
        NEVER,
        V1Cause::V1ApiInV2Sdk,
        "aws-sdk-js 2.1693.0 MetadataService.request() without a token is v1: call fetchMetadataToken() first or move to @aws-sdk v3"
    )]
    #[case(
        Some("aws-sdk-nodejs/2.1693.0 linux/v20.20.2"),
        FINE,
        V1Cause::V1ApiInV2Sdk,
        "although it got 2 token(s)"
    )]
    #[case(
        Some("aws-sdk-go/1.44.133 (go1.19.8; linux; amd64)"),
        NEVER,
        V1Cause::V1ApiInV2Sdk,
        "aws-sdk-go 1.44.133 supports IMDSv2 but sent a tokenless request"
    )]
    #[case(
        Some("aws-cli/2.9.19"),
        NEVER,
        V1Cause::V1ApiInV2Sdk,
        "aws-cli 2.9.19 supports IMDSv2"
    )]
    // Plain HTTP.
    #[case(
        Some("curl/7.88.1"),
        NEVER,
        V1Cause::NoSdk,
        "curl 7.88.1 (raw HTTP, no SDK): fetch a token with PUT /latest/api/token (header X-aws-ec2-metadata-token-ttl-seconds) and send it as X-aws-ec2-metadata-token"
    )]
    #[case(
        Some("Wget/1.21.3"),
        NEVER,
        V1Cause::NoSdk,
        "wget 1.21.3 (raw HTTP, no SDK)"
    )]
    #[case(
        Some("Python-urllib/3.11"),
        NEVER,
        V1Cause::NoSdk,
        "python-urllib 3.11"
    )]
    #[case(
        Some("python-requests/2.34.2"),
        NEVER,
        V1Cause::NoSdk,
        "python-requests"
    )]
    #[case(
        Some("Go-http-client/1.1"),
        NEVER,
        V1Cause::NoSdk,
        "go-http-client (raw HTTP"
    )]
    #[case(Some("node"), FINE, V1Cause::NoSdk, "node-fetch")]
    // Unknown.
    #[case(None, NEVER, V1Cause::Unknown, "look at the process's command line")]
    #[case(
        Some("aws-sdk-java/3.0.0"),
        NEVER,
        V1Cause::Unknown,
        "aws-sdk-java 3.0.0: IMDSv2 support of this version is not known and it sent no token request"
    )]
    fn diagnoses(
        #[case] user_agent: Option<&str>,
        #[case] history: TokenHistory,
        #[case] cause: V1Cause,
        #[case] advice_contains: &str,
    ) {
        let sdk = user_agent.map(info);
        let d = diagnose(sdk.as_ref(), &history);
        assert_eq!(d.cause, cause, "{d:?}");
        assert!(
            d.advice.contains(advice_contains),
            "{:?} lacks {advice_contains:?}",
            d.advice
        );
        assert!(!d.advice.contains('\n'));
    }

    #[rstest]
    #[case("node", &["node", "server.js"], "a node process with no recognisable User-Agent (@aws-sdk v3 sends no User-Agent")]
    #[case("python3", &["python3", "job.py"], "a python process with no recognisable User-Agent: look at its command line")]
    #[case("aws", &["aws", "s3", "ls"], "aws-cli (version unknown) sent no token request: check its version (IMDSv2 from 1.16.289)")]
    #[case("python3", &["python3", "/usr/bin/aws"], "aws-cli (version unknown)")]
    fn diagnoses_from_hints(
        #[case] exe: &str,
        #[case] args: &[&str],
        #[case] advice_contains: &str,
    ) {
        let sdk = identify(None, exe, &strings(args));
        let d = diagnose(sdk.as_ref(), &NEVER);
        assert_eq!(d.cause, V1Cause::Unknown);
        assert!(d.advice.contains(advice_contains), "{:?}", d.advice);
    }

    #[test]
    fn v3_fallback_without_user_agent_is_still_a_fallback() {
        let sdk = identify(None, "node", &strings(&["node", "server.js"]));
        let d = diagnose(sdk.as_ref(), &NO_ANSWER);
        assert_eq!(d.cause, V1Cause::FallbackAfterTokenFailure);
        assert!(
            d.advice.starts_with("node: token PUT got no answer"),
            "{}",
            d.advice
        );
    }

    #[test]
    fn cause_labels_match_serde() {
        for cause in V1Cause::ALL {
            let json = serde_json::to_string(&cause).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", cause.as_str()));
            assert_eq!(cause.to_string(), cause.as_str());
        }
    }

    #[test]
    fn sdk_info_serialises() {
        let json = serde_json::to_value(info("Botocore/1.12.253")).unwrap_or_default();
        assert_eq!(
            json,
            serde_json::json!({"name": "botocore", "version": "1.12.253", "is_aws_sdk": true,
                               "supports_v2": false, "min_v2_version": "1.13.25"})
        );
    }

    #[test]
    fn versions_are_sanitised_and_bounded() {
        let sdk = info(&format!("curl/7.{}\u{1b}[31m", "1".repeat(200)));
        let v = sdk.version.unwrap_or_default();
        assert_eq!(v.len(), MAX_VERSION);
        assert!(v.bytes().all(|b| b.is_ascii_digit() || b == b'.'));
    }

    #[test]
    fn every_known_name_is_stable() {
        let names: Vec<String> = [
            "aws-cli/1.0",
            "Boto3/1.0",
            "Botocore/1.0",
            "aws-sdk-nodejs/2.0",
            "aws-sdk-js/3.0",
            "aws-sdk-java/1.0",
            "aws-sdk-java/2.0",
            "aws-sdk-go/1.0",
            "aws-sdk-go-v2/1.0",
            "aws-sdk-dotnet-core/3.0",
            "aws-sdk-cpp/1.0",
            "aws-sdk-php/3.0",
            "aws-sdk-ruby3/3.0",
            "AWSPowerShell/4.0",
            "aws-sdk-rust/1.0",
            "aws-sdk-kotlin/1.0",
        ]
        .iter()
        .filter_map(|u| ua(u).map(|s| s.name))
        .collect();
        assert_eq!(
            names,
            [
                "aws-cli",
                "boto3",
                "botocore",
                "aws-sdk-js",
                "aws-sdk-js-v3",
                "aws-sdk-java",
                "aws-sdk-java-v2",
                "aws-sdk-go",
                "aws-sdk-go-v2",
                "aws-sdk-dotnet",
                "aws-sdk-cpp",
                "aws-sdk-php",
                "aws-sdk-ruby",
                "aws-powershell",
                "aws-sdk-rust",
                "aws-sdk-kotlin",
            ]
        );
    }

    // -----------------------------------------------------------------------------------------
    // Never panics.

    const PIECES: &[&str] = &[
        "aws-cli/",
        "Boto3/",
        "Botocore/",
        "aws-sdk-",
        "dotnet-",
        "/",
        " ",
        "\t",
        ".",
        "-",
        "v",
        "1",
        "99",
        "0",
        "rc",
        "(",
        ";",
        ")",
        "é",
        "\u{1F600}",
        "\0",
        "/aws-cli/v2/",
        "site-packages/awscli",
        "node_modules/@aws-sdk/",
        "python",
        "node",
        "aws",
    ];

    fn hostile() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(PIECES), 0..16).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn identify_never_panics(ua in proptest::option::of(any::<String>()), exe in any::<String>(),
                                 args in prop::collection::vec(any::<String>(), 0..4)) {
            let sdk = identify(ua.as_deref(), &exe, &args);
            let d = diagnose(sdk.as_ref(), &TokenHistory::default());
            prop_assert!(!d.advice.contains('\n'));
        }

        #[test]
        fn identify_never_panics_on_near_misses(ua in hostile(), exe in hostile(),
                                                args in prop::collection::vec(hostile(), 0..4)) {
            if let Some(sdk) = identify(Some(&ua), &exe, &args) {
                prop_assert!(sdk.version.as_ref().is_none_or(|v| v.len() <= MAX_VERSION));
                prop_assert!(sdk.version.as_ref().is_none_or(|v| v.bytes().all(|b| b.is_ascii_graphic())));
            }
        }

        #[test]
        fn version_compare_never_panics_and_is_consistent(a in hostile(), b in hostile()) {
            let ab = version_at_least(&a, &b);
            let ba = version_at_least(&b, &a);
            // If a < b then b >= a.
            if ab == Some(false) && !is_prerelease(&b) {
                prop_assert_eq!(ba, Some(true));
            }
        }

        #[test]
        fn diagnose_never_panics(tr in any::<u32>(), un in any::<u32>(), re in any::<u32>(), su in any::<u32>(),
                                 ua in hostile()) {
            let sdk = identify(Some(&ua), "", &[]);
            let d = diagnose(sdk.as_ref(), &TokenHistory { token_requests: tr, unanswered: un, refused: re, succeeded: su });
            prop_assert_eq!(d.cause == V1Cause::FallbackAfterTokenFailure, un > 0 || re > 0);
        }
    }
}
