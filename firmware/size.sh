#!/usr/bin/env bash
# Footprint of the sensor-node image: builds the release ELF (qemu/build.sh)
# and prints flash_bytes (vector table, code, read-only data and the
# initialisers of .data) and ram_bytes (.data + .bss + .uninit: static RAM,
# stack not included). Exits 1 over budget: 64 KiB flash, 20 KiB RAM.
set -euo pipefail
cd "$(dirname "$0")"
FLASH_BUDGET=$((64 * 1024))
RAM_BUDGET=$((20 * 1024))
elf="$(./qemu/build.sh)"
python3 - "$elf" "$FLASH_BUDGET" "$RAM_BUDGET" <<'PY'
import struct, sys
path, flash_budget, ram_budget = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = open(path, "rb").read()
if data[:4] != b"\x7fELF" or data[4] != 1:
    sys.exit(f"{path}: not a 32-bit ELF")
shoff, = struct.unpack_from("<I", data, 0x20)
shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x2E)
secs = []
for i in range(shnum):
    name, typ, flags, addr, off, size = struct.unpack_from("<IIIIII", data, shoff + i * shentsize)
    secs.append((name, typ, flags, size))
stroff = struct.unpack_from("<IIIIII", data, shoff + shstrndx * shentsize)[4]
def nm(o):
    end = data.index(b"\0", stroff + o)
    return data[stroff + o:end].decode()
SHF_ALLOC, SHT_NOBITS = 0x2, 8
flash = ram = 0
for name, typ, flags, size in secs:
    n = nm(name)
    if not flags & SHF_ALLOC or size == 0:
        continue
    if n in (".data",):
        flash += size; ram += size
    elif typ == SHT_NOBITS or n in (".uninit",):
        ram += size
    else:
        flash += size
print(f"flash_bytes={flash} ram_bytes={ram} (budget flash {flash_budget}, ram {ram_budget}) {path}")
if flash > flash_budget or ram > ram_budget:
    print("over budget", file=sys.stderr)
    sys.exit(1)
PY
