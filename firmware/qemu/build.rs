//! Puts `memory.x` where cortex-m-rt's `link.x` finds it, and rebuilds the
//! image when the node's identity variables change.

use std::io::Write;
use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let mut f = std::fs::File::create(out.join("memory.x")).expect("memory.x");
    f.write_all(include_bytes!("memory.x")).expect("memory.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    for v in [
        "FIRE_NODE_SITE",
        "FIRE_NODE_NODE",
        "FIRE_NODE_PASSWORD",
        "FIRE_NODE_BOOT",
    ] {
        println!("cargo:rerun-if-env-changed={v}");
    }
}
