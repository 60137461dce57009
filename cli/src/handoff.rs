//! `nommer up` and `nommer demo` run the local stack, which lives in its own crate and
//! binary (`nommer-devstack`, from `devstack/`) so that this command stays a small client.
//! The command hands those two over to that binary, with the same arguments.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The local stack's binary.
pub const DEVSTACK: &str = "nommer-devstack";

fn file_name() -> String {
    format!("{DEVSTACK}{}", std::env::consts::EXE_SUFFIX)
}

fn is_executable(p: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        p.is_file()
    }
}

/// Where `nommer-devstack` is: in `exe_dir` (beside this executable, as a workspace build
/// leaves it), else the first on `path` (PATH's folders).
pub fn find(exe_dir: Option<&Path>, path: Option<&OsStr>) -> Option<PathBuf> {
    let name = file_name();
    let on_path = path.into_iter().flat_map(std::env::split_paths);
    exe_dir
        .map(Path::to_path_buf)
        .into_iter()
        .chain(on_path)
        .map(|dir| dir.join(&name))
        .find(|p| is_executable(p))
}

/// What to say when the local stack's binary is nowhere.
pub fn missing(exe_dir: Option<&Path>) -> String {
    let beside = exe_dir
        .map(|d| format!("beside {} or ", d.display()))
        .unwrap_or_default();
    format!(
        "nommer: `up` and `demo` run the local stack, and its binary `{DEVSTACK}` is not {beside}on PATH. \
         From a Nommer checkout run `scripts/nommer up` (it builds everything), or build the workspace \
         (`cargo build --workspace --bins`, or `cargo build -p {DEVSTACK}`) and put {DEVSTACK} beside \
         this `nommer` (both land in `$CARGO_TARGET_DIR/debug/`) or on PATH"
    )
}

/// Replaces this process with `nommer-devstack`, given this process's own arguments
/// (`up …` or `demo …`). Returns only when it cannot: the exit status to end with, after
/// saying why (2 when the binary is not there).
pub fn hand_over() -> i32 {
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf));
    let Some(bin) = find(exe_dir.as_deref(), std::env::var_os("PATH").as_deref()) else {
        eprintln!("{}", missing(exe_dir.as_deref()));
        return 2;
    };
    let mut cmd = Command::new(&bin);
    cmd.args(std::env::args_os().skip(1));
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let e = cmd.exec();
        eprintln!("nommer: running {}: {e}", bin.display());
        1
    }
    #[cfg(not(unix))]
    match cmd.status() {
        Ok(st) => st.code().unwrap_or(1),
        Err(e) => {
            eprintln!("nommer: running {}: {e}", bin.display());
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(dir: &Path, executable: bool) -> PathBuf {
        let p = dir.join(file_name());
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = if executable { 0o755 } else { 0o644 };
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        p
    }

    #[test]
    fn beside_the_executable_first_then_path() {
        let beside = tempfile::tempdir().unwrap();
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let path = std::env::join_paths([a.path(), b.path()]).unwrap();
        // nowhere yet
        assert_eq!(find(Some(beside.path()), Some(&path)), None);
        let on_b = put(b.path(), true);
        assert_eq!(find(Some(beside.path()), Some(&path)), Some(on_b.clone()));
        assert_eq!(find(None, Some(&path)), Some(on_b));
        let on_a = put(a.path(), true);
        assert_eq!(find(None, Some(&path)), Some(on_a), "PATH's order");
        let here = put(beside.path(), true);
        assert_eq!(find(Some(beside.path()), Some(&path)), Some(here));
    }

    #[cfg(unix)]
    #[test]
    fn a_file_that_cannot_run_is_passed_over() {
        let beside = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        put(beside.path(), false);
        assert_eq!(find(Some(beside.path()), None), None);
        let runnable = put(other.path(), true);
        assert_eq!(
            find(Some(beside.path()), Some(other.path().as_os_str())),
            Some(runnable)
        );
    }

    #[test]
    fn the_message_says_how_to_get_it() {
        let m = missing(Some(Path::new("/opt/nommer/bin")));
        assert!(m.contains("nommer-devstack") && m.contains("/opt/nommer/bin"), "{m}");
        assert!(
            m.contains("scripts/nommer up") && m.contains("cargo build --workspace"),
            "{m}"
        );
    }
}
