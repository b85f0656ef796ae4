use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;

/// Name of the eBPF package built by this script.
const EBPF_PACKAGE: &str = "imds-agent-ebpf";

fn main() -> anyhow::Result<()> {
    let out_dir = std::env::var_os("OUT_DIR").ok_or_else(|| anyhow!("OUT_DIR not set"))?;
    let object = std::path::Path::new(&out_dir).join("imds-agent");
    // With AYA_BUILD_SKIP=1 (clippy, unit tests on machines without the BPF toolchain)
    // aya-build builds nothing; leave an empty object so the crate still compiles. The
    // loader refuses an empty object with a clear error.
    let skip = std::env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip && !object.exists() {
        std::fs::write(&object, []).context("writing placeholder eBPF object")?;
    }
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = packages
        .into_iter()
        .find(|p| p.name.as_str() == EBPF_PACKAGE)
        .ok_or_else(|| anyhow!("{EBPF_PACKAGE} package not found"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", ebpf.manifest_path))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: EBPF_PACKAGE,
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        Toolchain::default(),
    )
}
