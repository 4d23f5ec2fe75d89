//! Crash-safe file writes: temp file in the same directory, fsync, rename, fsync the directory.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::StateError;

/// Replace `path` with `bytes` so that a reader (or a crash) sees either the old or the new
/// content, never a torn file. The file is created with mode 0600.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let dir = path
        .parent()
        .ok_or_else(|| StateError::io(path, std::io::Error::other("path has no parent")))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(|e| StateError::io(dir, e))?;
    tmp.write_all(bytes).map_err(|e| StateError::io(path, e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| StateError::io(path, e))?;
    tmp.persist(path)
        .map_err(|e| StateError::io(path, e.error))?;
    // The rename is durable only once the directory entry is.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StateError::io(dir, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn replaces_content_with_private_mode_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "two");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["s.json".to_string()]);
    }
}
