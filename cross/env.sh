# Source this (`. cross/env.sh`) to cross-build hearken for
# aarch64-unknown-linux-gnu with plain cargo on a Debian/Ubuntu x86-64 host:
#   dpkg --add-architecture arm64 && apt-get update
#   apt-get install gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libasound2-dev:arm64 libclang-dev cmake
#   rustup target add aarch64-unknown-linux-gnu
#   . cross/env.sh && cargo build --release --locked --target aarch64-unknown-linux-gnu
# cross/Dockerfile.aarch64 sets the same variables inside cross-rs's image.

_hearken_cross_dir=$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd)

# Rust: link with the cross gcc; cc-rs builds C with it too.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export CXX_aarch64_unknown_linux_gnu=aarch64-linux-gnu-g++
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
# whisper.cpp / llama.cpp: CMake configures ggml for the target CPU.
export CMAKE_TOOLCHAIN_FILE_aarch64_unknown_linux_gnu="$_hearken_cross_dir/aarch64-linux-gnu.cmake"
# bindgen (whisper-rs-sys, llama-cpp-sys-2) parses the C headers as the target sees them.
export BINDGEN_EXTRA_CLANG_ARGS_aarch64_unknown_linux_gnu="--sysroot=/usr/aarch64-linux-gnu -I/usr/aarch64-linux-gnu/include"
# alsa-sys finds libasound through pkg-config: the arm64 .pc files only.
export PKG_CONFIG_ALLOW_CROSS=1
export PKG_CONFIG_LIBDIR_aarch64_unknown_linux_gnu=/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig

unset _hearken_cross_dir
