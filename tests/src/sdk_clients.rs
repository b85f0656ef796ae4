//! The real AWS SDKs installed by `tests/clients/install.sh` (which `.ci/run` calls before
//! the tests): two botocore virtualenvs and the JavaScript SDKs in `tests/clients/node_modules`.
//!
//! A test that needs one calls [`installed`] first: outside CI a missing install is a skip
//! that says how to install; under `CI=true` it is a failure.

use std::path::{Path, PathBuf};

use anyhow::bail;

use crate::env;

/// The pre-IMDSv2 botocore the old-SDK venv holds (IMDSv2 from 1.13.25).
pub const BOTOCORE_OLD: &str = "1.12.253";
/// The current botocore the new-SDK venv holds.
pub const BOTOCORE_NEW: &str = "1.44.5";
/// aws-sdk (JavaScript v2) before IMDSv2 (2.722.0), installed under this npm alias.
pub const JS_V2_OLD_MODULE: &str = "aws-sdk-2.700.0";
/// Its version.
pub const JS_V2_OLD: &str = "2.700.0";
/// The last aws-sdk 2.x, installed as `aws-sdk`.
pub const JS_V2_NEW_MODULE: &str = "aws-sdk";
/// Its version.
pub const JS_V2_NEW: &str = "2.1693.0";
/// The JavaScript v3 IMDS credential provider.
pub const JS_V3_MODULE: &str = "@aws-sdk/credential-provider-imds";
/// The installer, relative to the workspace root.
pub const INSTALL_SCRIPT: &str = "tests/clients/install.sh";

fn tests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `python` of the old-botocore venv.
pub fn botocore_old_python() -> PathBuf {
    tests_dir().join(".venv-botocore-old/bin/python")
}

/// `python` of the new-botocore venv.
pub fn botocore_new_python() -> PathBuf {
    tests_dir().join(".venv-botocore-new/bin/python")
}

/// `tests/clients/node_modules`.
pub fn node_modules() -> PathBuf {
    tests_dir().join("clients/node_modules")
}

/// The `node` binary (from `PATH`, resolved to the real file).
pub fn node() -> anyhow::Result<PathBuf> {
    let Some(node) = env::which("node") else {
        bail!("`node` is not on PATH (Node.js 18+ runs the JavaScript SDK clients)");
    };
    env::realpath(&node)
}

/// The environment botocore gets: no credentials anywhere but the instance metadata
/// service, which it finds at the mock; one attempt with a 1 s timeout per request (the
/// token PUT included, so a PUT lost to the hop limit costs one second).
pub const BOTOCORE_ENV: [(&str, &str); 5] = [
    ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
    ("AWS_CONFIG_FILE", "/dev/null"),
    (
        "AWS_EC2_METADATA_SERVICE_ENDPOINT",
        "http://169.254.169.254/",
    ),
    ("AWS_METADATA_SERVICE_TIMEOUT", "1"),
    ("AWS_METADATA_SERVICE_NUM_ATTEMPTS", "1"),
];

/// The environment the JavaScript clients get (no end-of-support banner on stderr).
pub const NODE_ENV: [(&str, &str); 1] = [("AWS_SDK_JS_SUPPRESS_MAINTENANCE_MODE_MESSAGE", "1")];

/// Whether everything the installer puts in place is there; `Err` says what is missing and
/// how to install it.
pub fn check_installed() -> anyhow::Result<()> {
    let modules = node_modules();
    let wanted: [(&str, PathBuf); 5] = [
        ("old botocore venv", botocore_old_python()),
        ("new botocore venv", botocore_new_python()),
        (
            "aws-sdk 2.700.0",
            modules.join(JS_V2_OLD_MODULE).join("package.json"),
        ),
        (
            "aws-sdk 2.x",
            modules.join(JS_V2_NEW_MODULE).join("package.json"),
        ),
        (
            "@aws-sdk/credential-provider-imds",
            modules.join(JS_V3_MODULE).join("package.json"),
        ),
    ];
    let missing: Vec<String> = wanted
        .iter()
        .filter(|(_, path)| !Path::new(path).exists())
        .map(|(what, path)| format!("{what} ({})", path.display()))
        .collect();
    if !missing.is_empty() {
        bail!(
            "the SDK test clients are not installed: {}; run `{INSTALL_SCRIPT}` (PyPI and npm)",
            missing.join(", ")
        );
    }
    node()?;
    Ok(())
}

/// [`check_installed`] under the skip-or-fail policy: `false` means "skipped" (never under
/// `CI=true`, where it panics).
pub fn installed() -> bool {
    match check_installed() {
        Ok(()) => true,
        Err(why) => {
            env::skip_or_fail(format!("{why:#}"));
            false
        }
    }
}

/// A client script in `tests/clients/`.
pub fn script(name: &str) -> PathBuf {
    env::client_script(name)
}
