//! Unpacks an extension zip into memory, refusing anything unsafe: paths that
//! climb out (`..`), absolute paths, drive letters, backslashes, symlinks and
//! other special entries, duplicate names, and bombs (too many entries, too
//! many bytes in all, an entry compressed beyond the allowed ratio). Sizes
//! are enforced while decompressing: the sizes an archive declares are never
//! trusted, and an entry whose bytes differ from its declared size or CRC is
//! refused.
//!
//! No I/O but reading the given bytes; no database, no HTTP.

use std::collections::HashSet;
use std::io::{Cursor, Read};

use tandem_protocol::ErrorCode;

/// Bounds of one archive.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Entries (files and directories) in the archive.
    pub max_entries: usize,
    /// Unpacked bytes of all files together.
    pub max_total_bytes: u64,
    /// An entry may unpack to at most `max_ratio` × its compressed size…
    pub max_ratio: u64,
    /// …or this many bytes, whichever is larger (tiny files compress oddly).
    pub ratio_floor_bytes: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_entries: 1_000,
            max_total_bytes: 50 * 1024 * 1024,
            max_ratio: 100,
            ratio_floor_bytes: 64 * 1024,
        }
    }
}

/// One unpacked file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub bytes: Vec<u8>,
}

/// Why an archive was refused: a code of [`ErrorCode`] and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    pub code: ErrorCode,
    pub message: String,
}

fn refuse(code: ErrorCode, message: impl Into<String>) -> Refused {
    Refused {
        code,
        message: message.into(),
    }
}

const MAX_PATH_BYTES: usize = 512;
const EOCD_SIG: u32 = 0x0605_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFLNK: u32 = 0o120_000;

/// Checks that `path` is a safe relative path with `/` separators; a
/// trailing `/` (a directory entry) is allowed.
pub fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() || path.len() > MAX_PATH_BYTES {
        return Err(format!("entry names must be 1..={MAX_PATH_BYTES} bytes"));
    }
    if path.contains('\\') {
        return Err(format!("entry {path:?} contains a backslash"));
    }
    if path.starts_with('/') {
        return Err(format!("entry {path:?} is an absolute path"));
    }
    if path.contains(':') {
        return Err(format!(
            "entry {path:?} contains ':' (a drive letter or stream name)"
        ));
    }
    if path.chars().any(char::is_control) {
        return Err(format!("entry {path:?} contains a control character"));
    }
    let body = path.strip_suffix('/').unwrap_or(path);
    for part in body.split('/') {
        match part {
            "" => return Err(format!("entry {path:?} has an empty path segment")),
            "." | ".." => return Err(format!("entry {path:?} has a {part:?} segment")),
            _ => {}
        }
    }
    Ok(())
}

fn u16_at(b: &[u8], at: usize) -> Option<usize> {
    Some(u16::from_le_bytes([*b.get(at)?, *b.get(at + 1)?]) as usize)
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// The raw entry names of the central directory, in order, read without the
/// zip crate (which keeps only the last of duplicate names).
fn central_names(zip: &[u8], max_entries: usize) -> Result<Vec<Vec<u8>>, Refused> {
    let bad = |m: &str| refuse(ErrorCode::InvalidArchive, m);
    // The end record is in the last 22 + 65535 (comment) bytes.
    let floor = zip.len().saturating_sub(22 + 65_535);
    let eocd = (floor..=zip.len().saturating_sub(22))
        .rev()
        .find(|&i| u32_at(zip, i) == Some(EOCD_SIG))
        .ok_or_else(|| bad("not a zip archive (no end of central directory)"))?;
    let count = u16_at(zip, eocd + 10).ok_or_else(|| bad("truncated end record"))?;
    if count == 0xFFFF {
        return Err(bad("ZIP64 archives are not accepted"));
    }
    if count > max_entries {
        return Err(refuse(
            ErrorCode::ArchiveTooLarge,
            format!("the archive has {count} entries; at most {max_entries} are allowed"),
        ));
    }
    let start = u32_at(zip, eocd + 16).ok_or_else(|| bad("truncated end record"))? as usize;
    let mut at = start;
    let mut names = Vec::with_capacity(count);
    for _ in 0..count {
        if u32_at(zip, at) != Some(CENTRAL_SIG) {
            return Err(bad("corrupt central directory"));
        }
        let header = || bad("truncated central directory");
        let name_len = u16_at(zip, at + 28).ok_or_else(header)?;
        let extra = u16_at(zip, at + 30).ok_or_else(header)?;
        let comment = u16_at(zip, at + 32).ok_or_else(header)?;
        let name = zip.get(at + 46..at + 46 + name_len).ok_or_else(header)?;
        names.push(name.to_vec());
        at += 46 + name_len + extra + comment;
    }
    Ok(names)
}

/// Unpacks every file of `zip` (directory entries are checked, then skipped).
pub fn unpack(zip: &[u8], limits: &Limits) -> Result<Vec<Entry>, Refused> {
    let raw_names = central_names(zip, limits.max_entries)?;
    let mut seen = HashSet::new();
    for raw in &raw_names {
        let name = std::str::from_utf8(raw)
            .map_err(|_| refuse(ErrorCode::UnsafeEntry, "entry names must be UTF-8"))?;
        check_path(name).map_err(|m| refuse(ErrorCode::UnsafeEntry, m))?;
        if !seen.insert(name.trim_end_matches('/')) {
            return Err(refuse(
                ErrorCode::UnsafeEntry,
                format!("entry {name:?} appears more than once"),
            ));
        }
    }
    let mut archive = zip::ZipArchive::new(Cursor::new(zip)).map_err(|e| {
        refuse(
            ErrorCode::InvalidArchive,
            format!("not a readable zip: {e}"),
        )
    })?;
    if archive.len() != raw_names.len() {
        return Err(refuse(
            ErrorCode::InvalidArchive,
            "the archive's directory is inconsistent",
        ));
    }
    let mut total: u64 = 0;
    let mut out = Vec::new();
    for (i, raw) in raw_names.iter().enumerate() {
        let mut file = archive
            .by_index(i)
            .map_err(|e| refuse(ErrorCode::InvalidArchive, format!("entry {i}: {e}")))?;
        let name = file.name().to_string();
        if name.as_bytes() != raw.as_slice() {
            return Err(refuse(
                ErrorCode::InvalidArchive,
                "entry names must be UTF-8 and flagged as such",
            ));
        }
        let mode = file.unix_mode().map(|m| m & S_IFMT);
        if file.is_symlink() || mode == Some(S_IFLNK) {
            return Err(refuse(
                ErrorCode::UnsafeEntry,
                format!("entry {name:?} is a symlink"),
            ));
        }
        if mode.is_some_and(|m| m != 0 && m != S_IFREG && m != S_IFDIR) {
            return Err(refuse(
                ErrorCode::UnsafeEntry,
                format!("entry {name:?} is not a regular file"),
            ));
        }
        if file.is_dir() || name.ends_with('/') {
            continue;
        }
        let allowed = file
            .compressed_size()
            .saturating_mul(limits.max_ratio)
            .max(limits.ratio_floor_bytes);
        let remaining = limits.max_total_bytes - total;
        let cap = allowed.min(remaining);
        let mut bytes = Vec::new();
        (&mut file)
            .take(cap + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| refuse(ErrorCode::InvalidArchive, format!("entry {name:?}: {e}")))?;
        let got = bytes.len() as u64;
        if got > allowed {
            return Err(refuse(
                ErrorCode::ArchiveTooLarge,
                format!(
                    "entry {name:?} unpacks to more than {} times its compressed size",
                    limits.max_ratio
                ),
            ));
        }
        if got > remaining {
            return Err(refuse(
                ErrorCode::ArchiveTooLarge,
                format!(
                    "the archive unpacks to more than {} bytes",
                    limits.max_total_bytes
                ),
            ));
        }
        if got != file.size() {
            return Err(refuse(
                ErrorCode::InvalidArchive,
                format!("entry {name:?} is not the size it declares"),
            ));
        }
        total += got;
        out.push(Entry { path: name, bytes });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::check_path;

    #[test]
    fn paths() {
        for ok in ["a", "a/b.js", "dir/", "a.b/c-d_e.css", "été/x"] {
            assert!(check_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "/etc/x", "../x", "a/../b", "./a", "a//b", "C:\\x", "C:/x", "a\\b", "a/./b",
            "x\u{0}", "..",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
    }
}
