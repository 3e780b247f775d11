//! Puts `memory.x` where cortex-m-rt's `link.x` finds it.

use std::io::Write;
use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let mut f = std::fs::File::create(out.join("memory.x")).expect("memory.x");
    f.write_all(include_bytes!("memory.x")).expect("memory.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
}
