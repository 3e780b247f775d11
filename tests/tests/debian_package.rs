//! The Debian package (issue 16): `cargo deb -p gateway` builds it from the
//! metadata in gateway/Cargo.toml; its control data names the package, its
//! dependencies, the configuration as a conffile and maintainer scripts
//! that create the `fire-gateway` user and enable the unit; its files are
//! the binary, the unit, the default configuration and the cluster docs.
//! Unpacked into a scratch root, the unit passes `systemd-analyze verify`
//! (its binary present) and the packaged configuration passes the packaged
//! binary's `check-config`, as does deploy/cluster/gateway-replica.toml.
//!
//! The binary packaged here is this crate's `gateway-under-test` (the same
//! main.rs, a debug build): a release build in the test suite would cost
//! minutes and test nothing more about the package.

use e2e::require;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The cargo-deb the package is built with (scripts/test installs it).
const CARGO_DEB: &str = "3.8.0";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_debian_package_carries_the_gateway_its_unit_and_user() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let (ok, said) = run(Command::new(&cargo).args(["deb", "--version"]));
    assert!(
        ok,
        "cargo-deb is not installed: run `cargo install cargo-deb --version ={CARGO_DEB} --locked` (./scripts/test installs it)\n{said}"
    );
    require("dpkg-deb", "dpkg");
    let systemd_analyze = require("systemd-analyze", "systemd");

    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target");
    std::fs::create_dir_all(target.join("release")).unwrap();
    std::fs::copy(
        env!("CARGO_BIN_EXE_gateway-under-test"),
        target.join("release/gateway"),
    )
    .unwrap();
    let deb = dir.path().join("fire-gateway.deb");
    let started = std::time::Instant::now();
    let (ok, said) = run(Command::new(&cargo)
        .current_dir(workspace())
        .env("CARGO_TARGET_DIR", &target)
        .args(["deb", "-p", "gateway", "--no-build", "--fast", "--output"])
        .arg(&deb));
    assert!(ok, "cargo deb failed:\n{said}");
    let built_in = started.elapsed();

    // Control data.
    let (ok, info) = run(Command::new("dpkg-deb").arg("-I").arg(&deb));
    assert!(ok, "{info}");
    for want in [
        "Package: fire-gateway",
        "Architecture: ",
        "adduser",
        "postinst",
        "postrm",
        "conffiles",
    ] {
        assert!(info.contains(want), "dpkg-deb -I lacks {want:?}:\n{info}");
    }
    let control = dir.path().join("control");
    let (ok, said) = run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    assert!(ok, "{said}");
    let conffiles = std::fs::read_to_string(control.join("conffiles")).unwrap();
    assert!(
        conffiles
            .lines()
            .any(|l| l == "/etc/fire-gateway/gateway.toml"),
        "{conffiles}"
    );
    let postinst = std::fs::read_to_string(control.join("postinst")).unwrap();
    assert!(
        postinst.contains("adduser --system --group") && postinst.contains("dialout"),
        "{postinst}"
    );
    assert!(
        !postinst.contains("#DEBHELPER#") && postinst.contains("deb-systemd-helper"),
        "the unit's enable snippet was not filled in:\n{postinst}"
    );

    // Files.
    let (ok, list) = run(Command::new("dpkg-deb").arg("-c").arg(&deb));
    assert!(ok, "{list}");
    let unit_path = if list.contains("./usr/lib/systemd/system/fire-gateway.service") {
        "usr/lib/systemd/system/fire-gateway.service"
    } else {
        "lib/systemd/system/fire-gateway.service"
    };
    for want in [
        "./usr/bin/fire-gateway",
        "./etc/fire-gateway/gateway.toml",
        "./usr/share/doc/fire-gateway/cluster/README.md",
        "./usr/share/doc/fire-gateway/cluster/gateway-replica.toml",
        &format!("./{unit_path}"),
    ] {
        assert!(list.contains(want), "dpkg-deb -c lacks {want}:\n{list}");
    }
    let mode = |path: &str| {
        list.lines()
            .find(|l| l.ends_with(path))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(mode("./usr/bin/fire-gateway"), "-rwxr-xr-x");
    assert_eq!(mode("./etc/fire-gateway/gateway.toml"), "-rw-r-----");

    // Unpacked into a scratch root: the unit verifies against it.
    let root = dir.path().join("root");
    let (ok, said) = run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    assert!(ok, "{said}");
    let units = root.join(Path::new(unit_path).parent().unwrap());
    // systemd-analyze resolves the unit's dependencies (sysinit.target…)
    // in the root: give it the host's units beside ours.
    for host in ["/lib/systemd/system", "/usr/lib/systemd/system"] {
        if let Ok(entries) = std::fs::read_dir(host) {
            for e in entries.flatten() {
                let to = units.join(e.file_name());
                if !to.exists() && e.path().is_file() {
                    let _ = std::fs::copy(e.path(), &to);
                }
            }
        }
    }
    // The unit's other commands (ExecReload's `/bin/kill`, from procps on
    // every Debian system) come from the host too; only the package's own
    // binary must be the one unpacked.
    let kill = root.join("bin/kill");
    std::fs::create_dir_all(kill.parent().unwrap()).unwrap();
    if !kill.exists() {
        std::fs::copy("/bin/kill", &kill).unwrap_or_else(|e| panic!("/bin/kill: {e}"));
    }
    let (ok, said) = run(Command::new(&systemd_analyze)
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg("--man=no")
        .arg(root.join(unit_path)));
    assert!(
        ok && said.trim().is_empty(),
        "systemd-analyze verify:\n{said}"
    );
    let unit = std::fs::read_to_string(root.join(unit_path)).unwrap();
    for want in [
        "User=fire-gateway",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "SupplementaryGroups=dialout",
        "DeviceAllow=char-ttyUSB rw",
        "DevicePolicy=closed",
        "ExecStart=/usr/bin/fire-gateway run --config /etc/fire-gateway/gateway.toml",
    ] {
        assert!(unit.contains(want), "the unit lacks {want:?}");
    }
    assert!(
        !unit.lines().any(|l| l.trim() == "PrivateDevices=yes"),
        "PrivateDevices=yes hides the serial ports"
    );

    // The packaged binary accepts the packaged configuration and the
    // cluster replica's.
    let bin = root.join("usr/bin/fire-gateway");
    for config in [
        root.join("etc/fire-gateway/gateway.toml"),
        workspace().join("deploy/cluster/gateway-replica.toml"),
    ] {
        let (ok, said) = run(Command::new(&bin).arg("check-config").arg(&config));
        assert!(ok, "check-config {}:\n{said}", config.display());
    }
    eprintln!("cargo deb (--fast, debug binary) took {built_in:?}");
}
