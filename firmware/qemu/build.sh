#!/usr/bin/env bash
# Builds the QEMU sensor-node image (release: opt-level "z", LTO, panic
# halts) and prints its path. The node's identity, credentials and channels
# come from a provisioning artefact (wire::provision) loaded at 0x00300000.
# Run it:  qemu-system-arm -M mps2-an386 -display none -monitor none \
#            -serial tcp:127.0.0.1:1883,reconnect=1 -serial stdio \
#            -device loader,file=node.fprv,addr=0x00300000,force-raw=on \
#            -kernel "$(firmware/qemu/build.sh)"
set -euo pipefail
cd "$(dirname "$0")"
if ! rustup target list --installed 2>/dev/null | grep -qx thumbv7em-none-eabihf; then
    rustup target add thumbv7em-none-eabihf >&2
fi
target_dir="${CARGO_TARGET_DIR:-$(cd ../.. && pwd)/target/fire-node-qemu}"
CARGO_TARGET_DIR="$target_dir" cargo build --release --locked >&2
echo "$target_dir/thumbv7em-none-eabihf/release/fire-node"
