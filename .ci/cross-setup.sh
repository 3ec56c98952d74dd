#!/usr/bin/env bash
# Installs what the cross-compilation tests need (tests/cross_cli.rs, the
# no-std firmware build): the Rust targets, the GNU cross linkers and C
# libraries for 64-bit and 32-bit ARM Linux, QEMU user-mode emulation, and
# QEMU's Cortex-M boards (qemu-system-arm) for the optional firmware run.
# Idempotent; needs root (or sudo) for apt.
set -euo pipefail

rustup target add aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf thumbv7em-none-eabihf

pkgs=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross gcc-arm-linux-gnueabihf libc6-dev-armhf-cross qemu-user qemu-system-arm)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

for tool in aarch64-linux-gnu-gcc arm-linux-gnueabihf-gcc qemu-aarch64 qemu-arm qemu-system-arm; do
    command -v "$tool" >/dev/null || { echo "cross-setup: $tool still missing" >&2; exit 1; }
done
echo "cross-setup: ARM cross toolchains and QEMU ready"
