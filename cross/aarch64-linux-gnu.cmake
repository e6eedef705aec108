# CMake toolchain for aarch64 Linux (Raspberry Pi 4/5, Jetson Orin, Graviton)
# built on an x86-64 host with Debian/Ubuntu's gcc-aarch64-linux-gnu.
#
# whisper-rs-sys and llama-cpp-sys-2 build whisper.cpp and llama.cpp with the
# `cmake` crate, which hands this file to CMake when
# CMAKE_TOOLCHAIN_FILE_aarch64_unknown_linux_gnu names it (cross/env.sh and
# cross/Dockerfile.aarch64 set it). Without it CMake would configure ggml for
# the host: GGML_NATIVE=ON means -march=native, i.e. x86 flags.

set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(HEARKEN_TRIPLE aarch64-linux-gnu)
set(CMAKE_C_COMPILER ${HEARKEN_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${HEARKEN_TRIPLE}-g++)
set(CMAKE_ASM_COMPILER ${HEARKEN_TRIPLE}-gcc)

# Headers and libraries come from the target's sysroot (the cross compiler's
# /usr/aarch64-linux-gnu plus multiarch arm64 packages); programs from the host.
if(DEFINED ENV{HEARKEN_AARCH64_SYSROOT})
    set(CMAKE_SYSROOT $ENV{HEARKEN_AARCH64_SYSROOT})
endif()
set(CMAKE_FIND_ROOT_PATH /usr/${HEARKEN_TRIPLE} /usr/lib/${HEARKEN_TRIPLE})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# ggml: never probe the build machine's CPU; compile for an explicit ARM
# architecture instead. The default, armv8-a, runs on every 64-bit Pi and
# Jetson; GGML_CPU_ARM_ARCH picks a newer one (armv8.2-a+dotprod+fp16 for a
# Raspberry Pi 5 or Jetson Orin: the int8 dot-product kernels are several
# times faster for quantized models).
set(GGML_NATIVE OFF CACHE BOOL "hearken: build for the target, not the host" FORCE)
if(DEFINED ENV{GGML_CPU_ARM_ARCH})
    set(GGML_CPU_ARM_ARCH $ENV{GGML_CPU_ARM_ARCH} CACHE STRING "hearken: target ARM architecture" FORCE)
else()
    set(GGML_CPU_ARM_ARCH armv8-a CACHE STRING "hearken: target ARM architecture" FORCE)
endif()
