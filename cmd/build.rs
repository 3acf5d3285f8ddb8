//! Links the code the node agent runs at rest together, at the front of the release
//! executable's text, so the agent maps only those pages and not the 64 KiB around every
//! scattered function it calls (the kernel maps a faulting page's neighbours that are in the
//! page cache along with it, mm/memory.c do_fault_around). That is most of the agent's RSS:
//! issue 10's lean agent, measured by `bench/agent_footprint.sh`.
//!
//! The list is `link/agent-hot-code.txt`, one symbol per line as the linker sees it, made by
//! `bench/agent_code_order.sh` from the pages a running agent touches. A symbol the build no
//! longer has (code changed, a dependency upgraded) is passed over without a warning: a stale
//! list costs memory, never correctness. Only lld reads such a list (`--symbol-ordering-file`),
//! the linker rustc uses for x86_64-unknown-linux-gnu since 1.90; other targets and older
//! toolchains link as before. `KUBEBOOT_CODE_ORDER=0` turns it off.

use std::path::PathBuf;
use std::process::Command;

/// The variables that name another linker for this target.
const LINKER_VARS: &[&str] = &[
    "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER",
    "RUSTC_LINKER",
];

fn main() {
    let list = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default())
        .join("link")
        .join("agent-hot-code.txt");
    println!("cargo:rerun-if-changed={}", list.display());
    for var in ["KUBEBOOT_CODE_ORDER", "RUSTFLAGS"]
        .iter()
        .chain(LINKER_VARS)
    {
        println!("cargo:rerun-if-env-changed={var}");
    }
    if std::env::var("PROFILE").as_deref() != Ok("release")
        || std::env::var("TARGET").as_deref() != Ok("x86_64-unknown-linux-gnu")
        || std::env::var("KUBEBOOT_CODE_ORDER").as_deref() == Ok("0")
        || !list.is_file()
        || !links_with_lld()
    {
        return;
    }
    println!(
        "cargo:rustc-link-arg-bin=kubeboot=-Wl,--symbol-ordering-file={}",
        list.display()
    );
    println!("cargo:rustc-link-arg-bin=kubeboot=-Wl,--no-warn-symbol-ordering");
}

/// Whether rustc links this target with its own lld: 1.90 or later (its default there), the
/// lld it ships in its sysroot (rustup's toolchains; a distribution's rustc may link with the
/// system's `ld`, which refuses the list), and no other linker named for it.
fn links_with_lld() -> bool {
    let custom = LINKER_VARS.iter().any(|v| std::env::var_os(v).is_some())
        || std::env::var("CARGO_ENCODED_RUSTFLAGS")
            .is_ok_and(|f| f.contains("linker") || f.contains("fuse-ld"));
    if custom {
        return false;
    }
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let shipped = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .is_ok_and(|o| {
            PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())
                .join("lib/rustlib/x86_64-unknown-linux-gnu/bin/gcc-ld/ld.lld")
                .exists()
        });
    let Ok(out) = Command::new(&rustc).arg("-V").output() else {
        return false;
    };
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let text = String::from_utf8_lossy(&out.stdout);
    let mut version = text
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (version.next().unwrap_or(0), version.next().unwrap_or(0));
    shipped && (major, minor) >= (1, 90)
}
