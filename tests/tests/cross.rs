//! The cross-build configuration in cross/: what can be checked on an x86
//! host without an aarch64 Rust standard library. The config files parse and
//! point at files that exist, the workspace resolves for the target with the
//! GPU features, and the CMake toolchain file really configures and compiles
//! ggml (from the whisper.cpp that whisper-rs-sys vendors) for aarch64 with
//! explicit ARM flags instead of the host's CPU.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;

use hearken_tests::{cargo, repo_file, repo_root, stderr, stdout, systemd_verify, unit_for_analysis};

const TARGET: &str = "aarch64-unknown-linux-gnu";
/// ELF `e_machine` of AArch64 objects.
const EM_AARCH64: u16 = 183;

/// `cargo tree` for the aarch64 target with `features` (if any), inverted on `package`.
fn tree_for_target(features: &str, package: &str) -> String {
    let mut command = cargo();
    command.args(["tree", "--locked", "--target", TARGET, "-e", "features", "-i", package]);
    if !features.is_empty() {
        command.args(["--features", features]);
    }
    let output = command.output().unwrap();
    assert!(output.status.success(), "cargo tree: {}", stderr(&output));
    stdout(&output)
}

#[test]
fn cross_toml_parses_and_its_dockerfile_installs_alsa_and_the_toolchain_file() {
    let config: toml::Value = std::fs::read_to_string(repo_file("cross/Cross.toml")).unwrap().parse().unwrap();
    let target = &config["target"][TARGET];
    let dockerfile = target["dockerfile"]["file"].as_str().unwrap();
    let context = target["dockerfile"]["context"].as_str().unwrap();
    let text = std::fs::read_to_string(repo_file(dockerfile)).unwrap();
    assert!(text.contains("libasound2-dev:$CROSS_DEB_ARCH"), "no arm64 ALSA headers in {dockerfile}");
    assert!(text.contains("FROM $CROSS_BASE_IMAGE"), "{dockerfile} must extend cross's image");
    // Every COPY source exists in the build context; the toolchain file is one.
    let copies: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("COPY ")).collect();
    assert!(!copies.is_empty());
    for copy in copies {
        let source = copy.split_whitespace().next().unwrap();
        assert!(repo_root().join(context).join(source).is_file(), "COPY {source}: not in {context}/");
    }
    assert!(text.contains("CMAKE_TOOLCHAIN_FILE_aarch64_unknown_linux_gnu=/opt/hearken/aarch64-linux-gnu.cmake"));
    assert!(text.contains("BINDGEN_EXTRA_CLANG_ARGS_aarch64_unknown_linux_gnu=\"--sysroot="));
    let passthrough = config["build"]["env"]["passthrough"].as_array().unwrap();
    assert!(passthrough.iter().any(|v| v.as_str() == Some("GGML_CPU_ARM_ARCH")));

    // cross/env.sh (plain cargo) sets the same variables as the image.
    let env = std::fs::read_to_string(repo_file("cross/env.sh")).unwrap();
    for variable in [
        "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=",
        "CMAKE_TOOLCHAIN_FILE_aarch64_unknown_linux_gnu=",
        "BINDGEN_EXTRA_CLANG_ARGS_aarch64_unknown_linux_gnu=",
        "PKG_CONFIG_LIBDIR_aarch64_unknown_linux_gnu=",
    ] {
        assert!(env.contains(&format!("export {variable}")), "cross/env.sh lacks {variable}");
    }
}

#[test]
fn the_workspace_resolves_for_aarch64_with_the_cuda_features() {
    let whisper = tree_for_target("hearken-whisper/cuda", "whisper-rs-sys");
    assert!(whisper.contains("whisper-rs-sys feature \"cuda\""), "{whisper}");
    let llama = tree_for_target("hearken-llama/cuda", "llama-cpp-sys-2");
    assert!(llama.contains("llama-cpp-sys-2 feature \"cuda\""), "{llama}");
    // Jetson boards with 8 GB: CUDA without virtual memory management.
    let jetson = tree_for_target("hearken-llama/cuda-no-vmm", "llama-cpp-sys-2");
    assert!(jetson.contains("llama-cpp-sys-2 feature \"cuda-no-vmm\""), "{jetson}");
    // The microphone on the target: cpal links ALSA, so the image needs its arm64 headers.
    let alsa = tree_for_target("", "alsa-sys");
    assert!(alsa.contains("cpal"), "{alsa}");
}

/// The whisper.cpp sources that whisper-rs-sys vendors (from cargo's registry).
fn vendored_whisper_cpp() -> PathBuf {
    let output = cargo().args(["metadata", "--locked", "--format-version", "1"]).output().unwrap();
    assert!(output.status.success(), "cargo metadata: {}", stderr(&output));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let manifest = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "whisper-rs-sys")
        .and_then(|p| p["manifest_path"].as_str())
        .expect("whisper-rs-sys in cargo metadata");
    Path::new(manifest).parent().unwrap().join("whisper.cpp")
}

/// Configures whisper.cpp with the toolchain file the way the `cmake` crate
/// does for the host (GGML_NATIVE=ON is its default there), with `arch` as
/// GGML_CPU_ARM_ARCH in the environment; returns the build directory.
fn configure_for_aarch64(build: &Path, arch: Option<&str>) -> PathBuf {
    let mut command = Command::new("cmake");
    command
        .arg("-S")
        .arg(vendored_whisper_cpp())
        .arg("-B")
        .arg(build)
        .arg(format!("-DCMAKE_TOOLCHAIN_FILE={}", repo_file("cross/aarch64-linux-gnu.cmake").display()))
        .args([
            "-DGGML_NATIVE=ON",
            "-DGGML_OPENMP=OFF",
            "-DBUILD_SHARED_LIBS=OFF",
            "-DWHISPER_BUILD_TESTS=OFF",
            "-DWHISPER_BUILD_EXAMPLES=OFF",
            "-DCMAKE_BUILD_TYPE=Release",
        ]);
    command.env_remove("GGML_CPU_ARM_ARCH");
    if let Some(arch) = arch {
        command.env("GGML_CPU_ARM_ARCH", arch);
    }
    let output = command.output().expect("cmake (scripts/setup.sh installs it)");
    assert!(output.status.success(), "cmake configure: {}\n{}", stdout(&output), stderr(&output));
    build.to_path_buf()
}

fn cache_entry(build: &Path, name: &str) -> String {
    let cache = std::fs::read_to_string(build.join("CMakeCache.txt")).unwrap();
    cache
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{name}:")).and_then(|rest| rest.split_once('=')).map(|(_, v)| v.to_string())
        })
        .unwrap_or_else(|| panic!("{name} not in the CMake cache"))
}

fn ggml_cpu_flags(build: &Path) -> String {
    std::fs::read_to_string(build.join("ggml/src/CMakeFiles/ggml-cpu.dir/flags.make")).unwrap()
}

#[test]
fn the_toolchain_file_builds_ggml_for_the_aarch64_cpu_not_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let build = configure_for_aarch64(&dir.path().join("default"), None);
    assert_eq!(cache_entry(&build, "GGML_NATIVE"), "OFF", "the host's -march=native leaked into the target build");
    assert_eq!(cache_entry(&build, "GGML_CPU_ARM_ARCH"), "armv8-a");
    assert!(cache_entry(&build, "CMAKE_C_COMPILER_AR").contains("aarch64-linux-gnu-gcc-ar"));
    let flags = ggml_cpu_flags(&build);
    assert!(flags.contains("-march=armv8-a"), "{flags}");
    assert!(!flags.contains("-march=native"), "{flags}");

    // One of ggml's CPU kernels, compiled with those flags, is an AArch64 object.
    let object = "ggml-cpu/ggml-cpu.c.o";
    let make = Command::new("make").arg("-C").arg(build.join("ggml/src")).arg(object).output().unwrap();
    assert!(make.status.success(), "make {object}: {}", stderr(&make));
    let bytes = std::fs::read(build.join("ggml/src/CMakeFiles/ggml-cpu.dir").join(object)).unwrap();
    assert_eq!(&bytes[..4], b"\x7fELF");
    assert_eq!(u16::from_le_bytes([bytes[18], bytes[19]]), EM_AARCH64, "not an AArch64 object");

    // A newer board (Raspberry Pi 5, Jetson Orin) gets its own architecture.
    let orin = configure_for_aarch64(&dir.path().join("orin"), Some("armv8.2-a+dotprod+fp16"));
    assert!(ggml_cpu_flags(&orin).contains("-march=armv8.2-a+dotprod+fp16"));
}

#[test]
fn the_jetson_drop_in_applies_cleanly_and_its_engine_settings_check() {
    let dir = tempfile::tempdir().unwrap();
    // The unit with the drop-in next to it, where systemd-analyze looks for it.
    let unit = std::fs::read_to_string(repo_file("systemd/hearken.service")).unwrap();
    let unit_path = unit_for_analysis(dir.path(), &unit, &hearken_tests::hearken_bin());
    let drop_in = std::fs::read_to_string(repo_file("cross/jetson/hearken-jetson.conf")).unwrap();
    std::fs::create_dir_all(dir.path().join("hearken.service.d")).unwrap();
    hearken_tests::write_file(&dir.path().join("hearken.service.d"), "jetson.conf", &drop_in);
    let verify = systemd_verify(&unit_path);
    assert!(verify.status.success() && stderr(&verify).trim().is_empty(), "{}", stderr(&verify));
    let security =
        Command::new("systemd-analyze").args(["security", "--offline=true"]).arg(&unit_path).output().unwrap();
    let report = stdout(&security);
    let line = report.lines().find(|l| l.contains("MemoryDenyWriteExecute=")).unwrap_or_default();
    assert!(line.starts_with('✗'), "the drop-in was not applied: {report}");

    // The engine settings merged into the default config pass `config check`.
    let mut config: toml::Table = std::fs::read_to_string(repo_file("systemd/hearken.toml")).unwrap().parse().unwrap();
    let jetson: toml::Table =
        std::fs::read_to_string(repo_file("cross/jetson/hearken-jetson.toml")).unwrap().parse().unwrap();
    for (section, values) in jetson {
        let table = config.get_mut(&section).and_then(|v| v.as_table_mut()).unwrap();
        table.extend(values.as_table().unwrap().clone());
    }
    config.insert("catalog".into(), repo_file("devices/home.toml").display().to_string().into());
    let path = hearken_tests::write_file(dir.path(), "hearken.toml", &config.to_string());
    let check = hearken_tests::hearken(&["config", "check", path.to_str().unwrap()]);
    assert!(check.status.success(), "{}", stderr(&check));
}
