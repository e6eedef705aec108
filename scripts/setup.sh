#!/usr/bin/env bash
# Installs what hearken's build, tests and demo need on Debian/Ubuntu:
# Mosquitto (the real broker the tests talk to), its client tools, OpenSSL
# (the TLS test makes its own certificates), cmake and libclang (whisper.cpp),
# ALSA headers, espeak-ng and sox (synthesized test speech), systemd-analyze,
# dpkg-dev (the Debian package), the aarch64 cross compiler (cross/ checks),
# Node.js and npm (Zigbee2MQTT's device definitions for the import test, Kokoro's
# voice styles), python3-venv (natural test speech). Idempotent: installs only what is
# missing, and runs `apt-get update` only when it has to install something.
set -euo pipefail

need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v mosquitto_passwd >/dev/null 2>&1 || need+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v cc >/dev/null 2>&1 || need+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
# whisper.cpp / llama.cpp are built by cmake; bindgen needs libclang.
command -v cmake >/dev/null 2>&1 || need+=(cmake)
ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 || need+=(libclang-dev)
# ALSA headers for microphone capture (cpal).
[ -e /usr/include/alsa/asoundlib.h ] || need+=(libasound2-dev)
# The Debian package: dpkg-shlibdeps computes its library dependencies.
command -v dpkg-shlibdeps >/dev/null 2>&1 || need+=(dpkg-dev)
# The cross-build test compiles ggml for aarch64 with cross/aarch64-linux-gnu.cmake.
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || need+=(gcc-aarch64-linux-gnu)
command -v aarch64-linux-gnu-g++ >/dev/null 2>&1 || need+=(g++-aarch64-linux-gnu)
# Test audio is synthesized: espeak-ng speaks, sox converts.
command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)
command -v sox >/dev/null 2>&1 || need+=(sox)
# The systemd unit test runs systemd-analyze (verify, security --offline).
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
# pip fetches the models from PyPI.
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
# Natural test speech (scripts/speech/fetch.sh) runs in its own venv.
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
# The Zigbee2MQTT import test runs Zigbee2MQTT's own device definitions (npm).
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)

if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "setup: installing ${need[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Debian starts a system-wide Mosquitto on :1883 after installing it. hearken's
# tests start their own brokers on free ports and do not need it.
command -v cargo >/dev/null 2>&1 || { echo "setup: cargo not found; install the Rust toolchain (rustup)" >&2; exit 1; }

# Zigbee2MQTT's device definitions, the version pinned in tests/z2m/zhc-version,
# cached outside the clone like the models (tests/tests/device_import.rs).
zhc_version="$(cat "$(dirname "$0")/../tests/z2m/zhc-version")"
zhc_dir="${XDG_CACHE_HOME:-$HOME/.cache}/hearken/npm/zigbee-herdsman-converters-$zhc_version"
if [ ! -e "$zhc_dir/node_modules/zigbee-herdsman-converters/package.json" ]; then
    echo "setup: installing zigbee-herdsman-converters $zhc_version into $zhc_dir" >&2
    mkdir -p "$zhc_dir"
    npm install --prefix "$zhc_dir" --no-audit --no-fund --ignore-scripts --loglevel=error \
        "zigbee-herdsman-converters@$zhc_version" >/dev/null
fi
echo "setup: ok" >&2
