//! A small tmpfs mounted for one test: a disk that really fills up, or really is read-only.
//! Mounting needs root (CI runs as root); where it is not permitted the test says so and skips.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Tmpfs {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`"4m"`), or explains on stderr why it cannot and gives `None`.
    pub fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().to_path_buf();
        let mounted = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(&path)
            .output();
        match mounted {
            Ok(out) if out.status.success() => Some(Tmpfs { _dir: dir, path }),
            Ok(out) => {
                eprintln!(
                    "skipped: cannot mount a tmpfs here ({}); this test needs root",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("skipped: cannot run mount ({e}); this test needs root");
                None
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Remounts it read-only: nothing, root included, can write there any more.
    pub fn make_read_only(&self) {
        let status = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.path)
            .status()
            .expect("run mount");
        assert!(status.success(), "remount read-only failed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a daemon the test killed may still hold a file open for a moment.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}
