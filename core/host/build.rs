//! Builds the plugins workspace (`plugins/`, target `wasm32-wasip2`) with a
//! nested cargo and exports where the components and their manifests are:
//! `LOCKGATE_BUNDLED_PLUGINS_DIR` (one `NAME.wasm` + `NAME.toml` per plugin the
//! gateway ships) and `LOCKGATE_TEST_PLUGINS_DIR` (every plugin, the fault-isolation
//! test plugins of `plugins/test/` included; for tests and benchmarks only).
//! The nested cargo has its own target directory (so it never waits on the
//! outer build's lock) and a clean environment (no outer RUSTFLAGS, wrappers
//! or target dir). `LOCKGATE_SKIP_PLUGIN_BUILD=1` skips it (the directory is
//! then empty).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest_dir.join("../..");
    let plugins = root.join("plugins");
    let wit = root.join("wit");
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    // <target>/<profile>/build/<pkg>/out -> <target>/plugins (shared by profiles).
    let target_root = out_dir
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "build"))
        .and_then(|b| b.parent())
        .and_then(|p| p.parent())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| out_dir.clone());
    let nested_target = target_root.join("plugins");
    let bundled = nested_target.join("bundled");
    let test_plugins = nested_target.join("test-plugins");

    println!("cargo:rerun-if-env-changed=LOCKGATE_SKIP_PLUGIN_BUILD");
    emit_rerun(&plugins);
    emit_rerun(&wit);
    println!(
        "cargo:rustc-env=LOCKGATE_BUNDLED_PLUGINS_DIR={}",
        bundled.display()
    );
    println!(
        "cargo:rustc-env=LOCKGATE_TEST_PLUGINS_DIR={}",
        test_plugins.display()
    );
    std::fs::create_dir_all(&bundled).expect("create the bundled plugins directory");
    std::fs::create_dir_all(&test_plugins).expect("create the test plugins directory");
    if env::var_os("LOCKGATE_SKIP_PLUGIN_BUILD").is_some_and(|v| v == "1") {
        return;
    }

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    ensure_target();
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(&plugins)
        .args(["build", "--release", "--target", TARGET, "--target-dir"])
        .arg(&nested_target);
    if plugins.join("Cargo.lock").is_file() {
        cmd.arg("--locked");
    }
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_MAKEFLAGS",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_PKG_NAME",
        "TARGET",
        "HOST",
        "OUT_DIR",
        "PROFILE",
        "OPT_LEVEL",
        "DEBUG",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("RUSTFLAGS", "-D warnings");
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cargo:?}: {e}"));
    if !output.status.success() {
        panic!(
            "building the plugins workspace failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }

    let release = nested_target.join(TARGET).join("release");
    // Start from empty directories: a plugin removed from the workspace must not linger.
    for dir in [&bundled, &test_plugins] {
        for entry in std::fs::read_dir(dir)
            .expect("read plugin directory")
            .flatten()
        {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "wasm" || e == "toml") {
                std::fs::remove_file(&path).expect("remove a stale plugin file");
            }
        }
    }
    for manifest in plugin_manifests(&plugins) {
        let text = std::fs::read_to_string(&manifest).expect("read plugin.toml");
        let parsed: toml::Table = toml::from_str(&text).expect("parse plugin.toml");
        let name = parsed
            .get("name")
            .and_then(|v| v.as_str())
            .expect("plugin.toml has a name");
        let cargo_toml = std::fs::read_to_string(manifest.with_file_name("Cargo.toml"))
            .expect("read Cargo.toml");
        let cargo_toml: toml::Table = toml::from_str(&cargo_toml).expect("parse Cargo.toml");
        let crate_name = cargo_toml["package"]["name"]
            .as_str()
            .expect("package name")
            .replace('-', "_");
        let wasm = release.join(format!("{crate_name}.wasm"));
        // Test plugins (trap, spin, bombs...) never ship: only the test directory has them.
        let is_test = manifest
            .strip_prefix(&plugins)
            .is_ok_and(|p| p.starts_with("test"));
        let targets: &[&Path] = if is_test {
            &[&test_plugins]
        } else {
            &[&bundled, &test_plugins]
        };
        for dir in targets {
            std::fs::copy(&wasm, dir.join(format!("{name}.wasm")))
                .unwrap_or_else(|e| panic!("copy {}: {e}", wasm.display()));
            std::fs::write(dir.join(format!("{name}.toml")), &text).expect("write manifest");
        }
    }
}

/// Installs the wasm target when rustup is in charge and it is missing
/// (`rust-toolchain.toml` lists it, but rustup adds listed targets only when
/// it installs the toolchain itself).
fn ensure_target() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(&rustc).args(["--print", "sysroot"]).output();
    let Ok(sysroot) = sysroot else { return };
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    if sysroot.join("lib/rustlib").join(TARGET).is_dir() {
        return;
    }
    let status = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status();
    if !status.is_ok_and(|s| s.success()) {
        println!(
            "cargo:warning=the {TARGET} target is missing and `rustup target add {TARGET}` failed"
        );
    }
}

/// Every `plugin.toml` of the plugins workspace (not under `target/`).
fn plugin_manifests(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() && path.file_name().is_some_and(|n| n != "target") {
            out.extend(plugin_manifests(&path));
        } else if path.file_name().is_some_and(|n| n == "plugin.toml") {
            out.push(path);
        }
    }
    out
}

/// `rerun-if-changed` for every file and directory below `dir`, except
/// build output (`dir` itself is not named: cargo would scan a `target/` in it).
fn emit_rerun(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if path.file_name().is_some_and(|n| n == "target") {
            continue;
        }
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            emit_rerun(&path);
        } else {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}
