fn main() {
    // Rebuild the programs when bpf-linker changes.
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
