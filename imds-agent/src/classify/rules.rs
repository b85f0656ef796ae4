//! Which cloud a metadata request speaks to, and whether it is IMDSv1 or IMDSv2.
//!
//! Pure functions over a parsed [`httparse::Request`]. Header names are compared
//! case-insensitively and as whole names: `x-aws-ec2-metadata-token-ttl-seconds` is not
//! `x-aws-ec2-metadata-token`, and `x-aws-ec2-metadata-token-foo` is neither.
//!
//! Precedence, most specific first:
//! 1. a token PUT (`PUT /latest/api/token`) is an AWS IMDSv2 token request;
//! 2. an AWS path (`/latest`, `/YYYY-MM-DD`) or an AWS token header means AWS: IMDS answers such
//!    a request whatever other headers it carries, so a tokenless one is a real IMDSv1 call
//!    (no other cloud uses these paths);
//! 3. another cloud's flavour header (`Metadata-Flavor: Google|ibm`, `Metadata: true`,
//!    `Authorization: Bearer Oracle`); it comes before paths because IBM's `/metadata/v1/...`
//!    overlaps Azure's `/metadata/...`, and multi-cloud probes of `/` carry only the header;
//! 4. another cloud's path (`/computeMetadata/`, `/metadata/`, `/opc/v1`, `/opc/v2`);
//! 5. the bare root `/` is AWS (it lists the API versions);
//! 6. anything else is [`Cloud::Unknown`], still split v1/v2 by the token-header rule.
//!
//! Non-AWS flavours get no IMDS version: they are not IMDSv1 calls.

use super::{Cloud, ImdsVersion, RequestInfo, RequestKind, Secret};

/// Header whose presence makes a request IMDSv2 (carries the session token).
pub const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
/// Header of the token PUT; its presence also makes a request IMDSv2.
pub const TOKEN_TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
/// Path of the IMDSv2 session-token request.
pub const TOKEN_PATH: &str = "/latest/api/token";

const GCP_PATH: &str = "/computeMetadata/";
const AZURE_PATH: &str = "/metadata/";
const OCI_PATHS: [&str; 2] = ["/opc/v1", "/opc/v2"];
const AWS_LATEST: &str = "/latest";

/// Classifies one parsed request: `(cloud, IMDS version, kind)`.
///
/// The version is `None` for non-AWS flavours; for AWS and unknown requests it is
/// [`ImdsVersion::V2`] when either AWS token header is present (or for a token PUT) and
/// [`ImdsVersion::V1`] otherwise.
pub fn classify_request(
    req: &httparse::Request<'_, '_>,
) -> (Cloud, Option<ImdsVersion>, RequestKind) {
    let method = req.method.unwrap_or("");
    let path = path_only(req.path.unwrap_or(""));
    let headers: &[httparse::Header<'_>] = req.headers;

    let has_aws_header = has_header(headers, TOKEN_HEADER) || has_header(headers, TOKEN_TTL_HEADER);
    let aws_version = Some(if has_aws_header {
        ImdsVersion::V2
    } else {
        ImdsVersion::V1
    });

    if method == "PUT" && path == TOKEN_PATH {
        return (Cloud::Aws, Some(ImdsVersion::V2), RequestKind::TokenRequest);
    }
    let cloud = if is_aws_path(path) || has_aws_header {
        Cloud::Aws
    } else if let Some(cloud) = cloud_by_header(headers).or_else(|| cloud_by_path(path)) {
        cloud
    } else if path == "/" {
        Cloud::Aws
    } else {
        Cloud::Unknown
    };
    let version = match cloud {
        Cloud::Aws | Cloud::Unknown => aws_version,
        Cloud::Gcp | Cloud::Azure | Cloud::Oci | Cloud::Ibm => None,
    };
    (cloud, version, RequestKind::Metadata)
}

/// Longest path, User-Agent or Host kept; longer ones are cut (at a character boundary).
pub const MAX_FIELD: usize = 1024;

/// Everything the agent keeps about one parsed request.
pub fn describe_request(req: &httparse::Request<'_, '_>) -> RequestInfo {
    let (cloud, version, kind) = classify_request(req);
    let headers: &[httparse::Header<'_>] = req.headers;
    let text = |name: &str| header_value(headers, name).map(|v| field(v.trim_ascii()));
    RequestInfo {
        method: truncate(req.method.unwrap_or("")),
        path: truncate(req.path.unwrap_or("")),
        http_minor: req.version.unwrap_or(0),
        user_agent: text("User-Agent"),
        host: text("Host"),
        cloud,
        version,
        kind,
        has_forwarded_for: has_header(headers, "X-Forwarded-For"),
        // Kept whole (not cut) so that it can be found and redacted elsewhere.
        token: header_value(headers, TOKEN_HEADER)
            .map(|v| Secret::new(String::from_utf8_lossy(v.trim_ascii()).into_owned())),
    }
}

fn field(value: &[u8]) -> String {
    truncate(&String::from_utf8_lossy(value))
}

fn truncate(s: &str) -> String {
    let mut end = s.len().min(MAX_FIELD);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("").to_owned()
}

/// The first value of header `name` (whole name, any case).
pub fn header_value<'h>(headers: &'h [httparse::Header<'_>], name: &str) -> Option<&'h [u8]> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

/// Whether a header called exactly `name` (any case) is present.
pub fn has_header(headers: &[httparse::Header<'_>], name: &str) -> bool {
    headers.iter().any(|h| h.name.eq_ignore_ascii_case(name))
}

/// Whether some header `name` has value `value` (both compared case-insensitively, value
/// trimmed of surrounding whitespace).
fn header_is(headers: &[httparse::Header<'_>], name: &str, value: &str) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .any(|h| h.value.trim_ascii().eq_ignore_ascii_case(value.as_bytes()))
}

/// The path without query or fragment; an absolute-form target (`http://host/path`, as sent to
/// a proxy) is reduced to its path.
fn path_only(target: &str) -> &str {
    let target = match target.find("://") {
        Some(scheme_end) => {
            let rest = target.get(scheme_end + 3..).unwrap_or("");
            rest.find('/').and_then(|i| rest.get(i..)).unwrap_or("/")
        }
        None => target,
    };
    let end = target.find(['?', '#']).unwrap_or(target.len());
    target.get(..end).unwrap_or(target)
}

fn cloud_by_path(path: &str) -> Option<Cloud> {
    if path.starts_with(GCP_PATH) {
        Some(Cloud::Gcp)
    } else if path.starts_with(AZURE_PATH) {
        Some(Cloud::Azure)
    } else if OCI_PATHS.iter().any(|p| segment_prefix(path, p)) {
        Some(Cloud::Oci)
    } else {
        None
    }
}

fn cloud_by_header(headers: &[httparse::Header<'_>]) -> Option<Cloud> {
    if header_is(headers, "Metadata-Flavor", "Google") {
        Some(Cloud::Gcp)
    } else if header_is(headers, "Metadata-Flavor", "ibm") {
        Some(Cloud::Ibm)
    } else if header_is(headers, "Metadata", "true") {
        Some(Cloud::Azure)
    } else if header_is(headers, "Authorization", "Bearer Oracle") {
        Some(Cloud::Oci)
    } else {
        None
    }
}

/// `/latest...` or a dated API version `/YYYY-MM-DD...` (each ending the path or followed by `/`).
fn is_aws_path(path: &str) -> bool {
    if segment_prefix(path, AWS_LATEST) {
        return true;
    }
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    let segment = rest.split('/').next().unwrap_or("");
    is_date(segment)
}

/// `YYYY-MM-DD`, digits only (no calendar check: IMDS answers any listed version).
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

/// `path` is `prefix` or starts with `prefix/`.
fn segment_prefix(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    fn classify(raw: &str) -> (Cloud, Option<ImdsVersion>, RequestKind) {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(raw.as_bytes()) {
            Ok(httparse::Status::Complete(_)) => classify_request(&req),
            other => panic!("test request does not parse: {other:?}"),
        }
    }

    use Cloud::*;
    use ImdsVersion::*;
    use RequestKind::*;

    #[rustfmt::skip]
    #[rstest]
    // token PUT, with and without the ttl header, any header case
    #[case::put_lower("PUT /latest/api/token HTTP/1.1\r\nx-aws-ec2-metadata-token-ttl-seconds: 21600\r\n\r\n", Aws, Some(V2), TokenRequest)]
    #[case::put_canonical("PUT /latest/api/token HTTP/1.1\r\nX-Aws-Ec2-Metadata-Token-Ttl-Seconds: 21600\r\n\r\n", Aws, Some(V2), TokenRequest)]
    #[case::put_no_ttl("PUT /latest/api/token HTTP/1.1\r\n\r\n", Aws, Some(V2), TokenRequest)]
    #[case::put_query("PUT /latest/api/token?x=1 HTTP/1.1\r\n\r\n", Aws, Some(V2), TokenRequest)]
    #[case::put_elsewhere("PUT /latest/meta-data HTTP/1.1\r\n\r\n", Aws, Some(V1), Metadata)]
    // token use, three header spellings
    #[case::get_lower("GET /latest/meta-data/ HTTP/1.1\r\nx-aws-ec2-metadata-token: t\r\n\r\n", Aws, Some(V2), Metadata)]
    #[case::get_canonical("GET /latest/meta-data/ HTTP/1.1\r\nX-Aws-Ec2-Metadata-Token: t\r\n\r\n", Aws, Some(V2), Metadata)]
    #[case::get_upper("GET /latest/meta-data/ HTTP/1.1\r\nX-AWS-EC2-METADATA-TOKEN: t\r\n\r\n", Aws, Some(V2), Metadata)]
    #[case::get_ttl_only("GET /latest/meta-data/ HTTP/1.1\r\nx-aws-ec2-metadata-token-ttl-seconds: 5\r\n\r\n", Aws, Some(V2), Metadata)]
    #[case::get_empty_token("GET /latest/meta-data/ HTTP/1.1\r\nx-aws-ec2-metadata-token:\r\n\r\n", Aws, Some(V2), Metadata)]
    // prefix traps: neither header is present under a longer or shorter name
    #[case::trap_ttl_suffix("GET /latest/meta-data/ HTTP/1.1\r\nX-aws-ec2-metadata-token-ttl-seconds-foo: 5\r\n\r\n", Aws, Some(V1), Metadata)]
    #[case::trap_token_suffix("GET /latest/meta-data/ HTTP/1.1\r\nx-aws-ec2-metadata-tokens: t\r\n\r\n", Aws, Some(V1), Metadata)]
    #[case::trap_token_prefix("GET /latest/meta-data/ HTTP/1.1\r\nx-aws-ec2-metadata-tok: t\r\n\r\n", Aws, Some(V1), Metadata)]
    #[case::trap_in_value("GET /latest/meta-data/ HTTP/1.1\r\nX-Note: x-aws-ec2-metadata-token\r\n\r\n", Aws, Some(V1), Metadata)]
    #[case::trap_in_path("GET /latest/x-aws-ec2-metadata-token HTTP/1.1\r\n\r\n", Aws, Some(V1), Metadata)]
    // tokenless AWS shapes
    #[case::v1_get("GET /latest/meta-data/instance-id HTTP/1.1\r\n\r\n", Aws, Some(V1), Metadata)]
    #[case::v1_head("HEAD /latest/meta-data/ HTTP/1.1\r\n\r\n", Aws, Some(V1), Metadata)]
    #[case::v2_head("HEAD /latest/meta-data/ HTTP/1.1\r\nx-aws-ec2-metadata-token: t\r\n\r\n", Aws, Some(V2), Metadata)]
    #[case::v1_latest_bare("GET /latest HTTP/1.0\r\n\r\n", Aws, Some(V1), Metadata)]
    #[case::v1_root("GET / HTTP/1.1\r\n\r\n", Aws, Some(V1), Metadata)]
    #[case::v1_dated("GET /2009-04-04/meta-data/ HTTP/1.1\r\n\r\n", Aws, Some(V1), Metadata)]
    #[case::v1_dated_bare("GET /2021-07-15 HTTP/1.1\r\n\r\n", Aws, Some(V1), Metadata)]
    #[case::v1_absolute_form("GET http://169.254.169.254/latest/user-data HTTP/1.1\r\n\r\n", Aws, Some(V1), Metadata)]
    #[case::v1_with_flavour_header("GET /latest/meta-data/ HTTP/1.1\r\nMetadata: true\r\n\r\n", Aws, Some(V1), Metadata)]
    // other clouds: never v1
    #[case::gcp_both("GET /computeMetadata/v1/instance/id HTTP/1.1\r\nMetadata-Flavor: Google\r\n\r\n", Gcp, None, Metadata)]
    #[case::gcp_path("GET /computeMetadata/v1/ HTTP/1.1\r\n\r\n", Gcp, None, Metadata)]
    #[case::gcp_root_probe("GET / HTTP/1.1\r\nMetadata-Flavor: Google\r\n\r\n", Gcp, None, Metadata)]
    #[case::azure_both("GET /metadata/instance?api-version=2021-02-01 HTTP/1.1\r\nMetadata: true\r\n\r\n", Azure, None, Metadata)]
    #[case::azure_header("GET /something HTTP/1.1\r\nmetadata: True\r\n\r\n", Azure, None, Metadata)]
    #[case::oci_v2("GET /opc/v2/instance/ HTTP/1.1\r\nAuthorization: Bearer Oracle\r\n\r\n", Oci, None, Metadata)]
    #[case::oci_v1("GET /opc/v1/instance/ HTTP/1.1\r\n\r\n", Oci, None, Metadata)]
    #[case::oci_header("GET /other HTTP/1.1\r\nAuthorization: Bearer Oracle\r\n\r\n", Oci, None, Metadata)]
    #[case::ibm("PUT /instance_identity/v1/token?version=2022-03-01 HTTP/1.1\r\nMetadata-Flavor: ibm\r\n\r\n", Ibm, None, Metadata)]
    #[case::ibm_case("GET /metadata/v1/instance HTTP/1.1\r\nMetadata-Flavor: IBM\r\n\r\n", Ibm, None, Metadata)]
    #[case::ibm_get_without_flavour("GET /metadata/v1/instance?version=2022-03-01 HTTP/1.1\r\nAuthorization: Bearer abc\r\n\r\n", Azure, None, Metadata)]
    #[case::ibm_case_other_path("GET /instance_identity/v1 HTTP/1.1\r\nmetadata-flavor: IBM\r\n\r\n", Ibm, None, Metadata)]
    // unknown paths: v1/v2 by the token-header rule
    #[case::unknown_v1("GET /favicon.ico HTTP/1.1\r\n\r\n", Unknown, Some(V1), Metadata)]
    #[case::unknown_latestish("GET /latestx HTTP/1.1\r\n\r\n", Unknown, Some(V1), Metadata)]
    #[case::unknown_v2("GET /whatever HTTP/1.1\r\nx-aws-ec2-metadata-token: t\r\n\r\n", Aws, Some(V2), Metadata)]
    fn classifies(
        #[case] raw: &str,
        #[case] cloud: Cloud,
        #[case] version: Option<ImdsVersion>,
        #[case] kind: RequestKind,
    ) {
        assert_eq!(classify(raw), (cloud, version, kind));
    }

    #[rstest]
    #[case("/latest/meta-data?x=1", "/latest/meta-data")]
    #[case("/a#frag", "/a")]
    #[case("http://169.254.169.254", "/")]
    #[case("http://169.254.169.254/latest/", "/latest/")]
    #[case("*", "*")]
    fn path_only_strips(#[case] target: &str, #[case] path: &str) {
        assert_eq!(path_only(target), path);
    }

    #[rstest]
    #[case("2009-04-04", true)]
    #[case("2009-4-04", false)]
    #[case("2009_04_04", false)]
    #[case("latest", false)]
    #[case("", false)]
    fn dates(#[case] s: &str, #[case] ok: bool) {
        assert_eq!(is_date(s), ok);
    }
}
