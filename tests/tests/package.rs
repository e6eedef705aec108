//! The Debian package, built by `scripts/package-deb.sh` from this build's
//! binaries: what it holds, its control data, its unit, and what its
//! maintainer scripts do to a system.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use hearken_tests::{hearken_bin, repo_file, repo_root, stderr, stdout, systemd_verify, unit_for_analysis, write_file};

/// Every file the package must hold, and nothing else.
const CONTENTS: &[&str] = &[
    "etc/hearken/hearken.toml",
    "usr/bin/hearken",
    "usr/bin/hearken-llama",
    "usr/bin/hearken-whisper",
    "usr/lib/systemd/system/hearken.service",
    "usr/lib/sysusers.d/hearken.conf",
    "usr/lib/tmpfiles.d/hearken.conf",
    "usr/share/doc/hearken/README.md.gz",
    "usr/share/doc/hearken/copyright",
    "usr/share/doc/hearken/systemd.md.gz",
    "usr/share/hearken/catalogs/cottage.toml",
    "usr/share/hearken/catalogs/factory.toml",
    "usr/share/hearken/catalogs/home.toml",
    "usr/share/hearken/catalogs/house.toml",
    "usr/share/hearken/catalogs/office.toml",
    "usr/share/hearken/schemas/ack.schema.json",
    "usr/share/hearken/schemas/audit-record.schema.json",
    "usr/share/hearken/schemas/catalog.schema.json",
    "usr/share/hearken/schemas/command.schema.json",
    "usr/share/hearken/schemas/event.schema.json",
];

/// The package built from the binaries next to `hearken_bin()`, once per run
/// (debug binaries are large), under cargo's scratch directory for tests.
fn package() -> &'static Path {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(|| build_package(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("package")))
}

/// The package's files and DEBIAN/ control files, extracted once per run.
fn extracted() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let root = package().with_file_name("root");
        if root.exists() {
            std::fs::remove_dir_all(&root).unwrap();
        }
        dpkg_deb(&["--raw-extract", package().to_str().unwrap(), root.to_str().unwrap()]);
        root
    })
}

fn build_package(out: &Path) -> PathBuf {
    let bin_dir = hearken_bin().parent().unwrap().to_path_buf();
    let output = Command::new(repo_file("scripts/package-deb.sh"))
        .args(["--fast", "--bin-dir", bin_dir.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .current_dir(repo_root())
        .output()
        .expect("scripts/package-deb.sh");
    assert!(output.status.success(), "package-deb.sh failed: {}", stderr(&output));
    let deb = PathBuf::from(stdout(&output).trim());
    assert!(deb.is_file(), "no package at {}", deb.display());
    deb
}

fn dpkg_deb(args: &[&str]) -> String {
    let output = Command::new("dpkg-deb").args(args).output().expect("dpkg-deb");
    assert!(output.status.success(), "dpkg-deb {args:?}: {}", stderr(&output));
    stdout(&output)
}

fn control_field(control: &str, name: &str) -> String {
    control
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} in control:\n{control}"))
        .to_string()
}

fn workspace_version() -> String {
    let manifest: toml::Value = std::fs::read_to_string(repo_file("Cargo.toml")).unwrap().parse().unwrap();
    manifest["workspace"]["package"]["version"].as_str().unwrap().to_string()
}

fn is_root() -> bool {
    let output = Command::new("id").arg("-u").output().unwrap();
    stdout(&output).trim() == "0"
}

#[test]
fn the_package_holds_the_binaries_unit_snippets_config_and_catalogs_and_nothing_else() {
    let deb = package().to_str().unwrap();

    let control = dpkg_deb(&["--field", deb]);
    assert_eq!(control_field(&control, "Package"), "hearken");
    assert_eq!(control_field(&control, "Version"), workspace_version());
    let arch = stdout(&Command::new("dpkg").arg("--print-architecture").output().unwrap());
    assert_eq!(control_field(&control, "Architecture"), arch.trim());
    let depends = control_field(&control, "Depends");
    for needed in ["libasound2", "libc6", "libstdc++6", "systemd"] {
        assert!(depends.contains(needed), "Depends lacks {needed}: {depends}");
    }

    let listing = dpkg_deb(&["--contents", deb]);
    let files: BTreeSet<String> = listing
        .lines()
        .filter(|l| l.starts_with('-'))
        .map(|l| l.rsplit(' ').next().unwrap().trim_start_matches("./").to_string())
        .collect();
    let expected: BTreeSet<String> = CONTENTS.iter().map(|s| s.to_string()).collect();
    assert_eq!(files, expected, "package contents differ");
    for line in listing.lines().filter(|l| l.starts_with('-') && l.contains("./usr/bin/")) {
        assert!(line.starts_with("-rwxr-xr-x root/root"), "binary mode/owner: {line}");
    }

    // Installable here: apt resolves every dependency (a simulation changes nothing).
    let install = Command::new("apt-get").args(["install", "--simulate", deb]).output().unwrap();
    assert!(install.status.success(), "apt-get install --simulate: {}{}", stdout(&install), stderr(&install));
    assert!(stdout(&install).contains("Inst hearken ("), "{}", stdout(&install));

    let extracted = extracted();
    let conffiles = std::fs::read_to_string(extracted.join("DEBIAN/conffiles")).unwrap();
    assert_eq!(conffiles.trim(), "/etc/hearken/hearken.toml");
    for script in ["postinst", "prerm", "postrm"] {
        let path = extracted.join("DEBIAN").join(script);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o755, "{script} mode");
        let syntax = Command::new("sh").arg("-n").arg(&path).output().unwrap();
        assert!(syntax.status.success(), "{script}: {}", stderr(&syntax));
    }
    // The shipped files are the repository's.
    for (packaged, source) in [
        ("usr/lib/systemd/system/hearken.service", "systemd/hearken.service"),
        ("usr/lib/sysusers.d/hearken.conf", "systemd/hearken.sysusers"),
        ("usr/lib/tmpfiles.d/hearken.conf", "systemd/hearken.tmpfiles"),
        ("etc/hearken/hearken.toml", "systemd/hearken.toml"),
    ] {
        assert_eq!(
            std::fs::read(extracted.join(packaged)).unwrap(),
            std::fs::read(repo_file(source)).unwrap(),
            "{packaged} differs from {source}"
        );
    }
}

#[test]
fn the_packaged_unit_verifies_and_the_packaged_binary_checks_the_packaged_config() {
    let dir = tempfile::tempdir().unwrap();
    let root = extracted();
    let hearken = root.join("usr/bin/hearken");

    // verify checks that ExecStart's binary exists: point it at the packaged one.
    let unit = std::fs::read_to_string(root.join("usr/lib/systemd/system/hearken.service")).unwrap();
    let verify = systemd_verify(&unit_for_analysis(dir.path(), &unit, &hearken));
    assert!(verify.status.success(), "{}", stderr(&verify));

    // Out of the box the service refuses to start: no catalog has been chosen.
    let config = root.join("etc/hearken/hearken.toml");
    let unconfigured = Command::new(&hearken).args(["config", "check", config.to_str().unwrap()]).output().unwrap();
    assert_eq!(unconfigured.status.code(), Some(2), "{}", stdout(&unconfigured));
    assert!(stderr(&unconfigured).contains("/etc/hearken/catalog.toml"), "{}", stderr(&unconfigured));

    // With any of the packaged example catalogs, the packaged config checks.
    let text = std::fs::read_to_string(&config).unwrap();
    for catalog in ["home", "factory", "office"] {
        let path = root.join(format!("usr/share/hearken/catalogs/{catalog}.toml"));
        let configured = text.replace("/etc/hearken/catalog.toml", path.to_str().unwrap());
        let configured = write_file(dir.path(), &format!("{catalog}.toml"), &configured);
        let check = Command::new(&hearken).args(["config", "check", configured.to_str().unwrap()]).output().unwrap();
        assert!(check.status.success(), "{catalog}: {}", stderr(&check));
    }
}

#[test]
fn the_packaged_snippets_create_the_user_and_its_directories_in_a_fresh_root() {
    let dir = tempfile::tempdir().unwrap();
    let package = extracted();
    let system = dir.path().join("system");
    std::fs::create_dir_all(system.join("etc")).unwrap();

    let sysusers = Command::new("systemd-sysusers")
        .arg(format!("--root={}", system.display()))
        .arg(package.join("usr/lib/sysusers.d/hearken.conf"))
        .output()
        .unwrap();
    assert!(sysusers.status.success(), "{}", stderr(&sysusers));
    let passwd = std::fs::read_to_string(system.join("etc/passwd")).unwrap();
    let user = passwd.lines().find(|l| l.starts_with("hearken:")).expect("no hearken user");
    assert!(user.ends_with(":/var/lib/hearken:/usr/sbin/nologin"), "{user}");
    let group = std::fs::read_to_string(system.join("etc/group")).unwrap();
    assert!(group.lines().any(|l| l.starts_with("audio:") && l.ends_with(":hearken")), "{group}");

    if !is_root() {
        eprintln!("not root: the tmpfiles snippet (which chowns) is checked only as root");
        return;
    }
    let tmpfiles = Command::new("systemd-tmpfiles")
        .arg(format!("--root={}", system.display()))
        .arg("--create")
        .arg(package.join("usr/lib/tmpfiles.d/hearken.conf"))
        .output()
        .unwrap();
    assert!(tmpfiles.status.success(), "{}", stderr(&tmpfiles));
    let uid: u32 = user.split(':').nth(2).unwrap().parse().unwrap();
    for directory in ["var/lib/hearken", "var/lib/hearken/models", "var/log/hearken"] {
        let metadata = std::fs::metadata(system.join(directory)).unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::uid(&metadata), uid, "{directory} owner");
        assert_eq!(metadata.permissions().mode() & 0o777, 0o750, "{directory} mode");
    }
}

#[test]
fn postinst_creates_the_user_but_never_starts_or_enables_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let package = extracted();

    // Stand-ins that record how postinst calls the system tools. postinst
    // reaches systemctl only where systemd runs (/run/systemd/system), so a
    // recording systemctl is first on PATH for that case too.
    let shims = dir.path().join("shims");
    std::fs::create_dir_all(&shims).unwrap();
    let log = dir.path().join("calls.log");
    for tool in ["systemd-sysusers", "systemd-tmpfiles", "systemctl"] {
        let shim = write_file(&shims, tool, &format!("#!/bin/sh\necho \"{tool} $*\" >>'{}'\n", log.display()));
        std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!("{}:{}", shims.display(), std::env::var("PATH").unwrap());
    let postinst = package.join("DEBIAN/postinst");

    let install = Command::new(&postinst).arg("configure").arg("").env("PATH", &path).output().unwrap();
    assert!(install.status.success(), "{}", stderr(&install));
    assert!(stdout(&install).contains("not started"), "{}", stdout(&install));
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(calls.contains("systemd-sysusers /usr/lib/sysusers.d/hearken.conf"), "{calls}");
    assert!(calls.contains("systemd-tmpfiles --create /usr/lib/tmpfiles.d/hearken.conf"), "{calls}");
    for forbidden in ["start hearken", "enable", "restart"] {
        assert!(!calls.contains(forbidden), "fresh install ran `{forbidden}`: {calls}");
    }

    // An upgrade restarts the service only if it is already running.
    std::fs::remove_file(&log).unwrap();
    let upgrade = Command::new(&postinst).args(["configure", "0.0.1"]).env("PATH", &path).output().unwrap();
    assert!(upgrade.status.success(), "{}", stderr(&upgrade));
    let calls = std::fs::read_to_string(&log).unwrap();
    let systemd_runs = Path::new("/run/systemd/system").is_dir();
    assert_eq!(calls.contains("systemctl try-restart hearken.service"), systemd_runs, "{calls}");
    assert!(!calls.contains("enable") && !calls.contains("systemctl start"), "{calls}");
}
