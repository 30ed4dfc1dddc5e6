//! Atomic file writes: a temp file in the destination folder, fsync, rename, fsync the folder.
//!
//! Every writer of models, engines, tables, reports and enrollment data goes through here, so a
//! failed or interrupted run never leaves a half-written file under the final name. Folder
//! outputs (engine folders, Whisper model folders, Triton repository entries) are built in a
//! scratch folder beside the destination ([`scratch_dir`]) and moved into place by
//! [`commit_dir`].
//!
//! Temporary names, all hidden and beside the destination `NAME`: `.NAME.tmp-PID-N` (files),
//! `.NAME.partial-PID` (folders being built), `.NAME.old-PID` (the folder being replaced, for
//! the moment between two renames) and `.NAME.PID.tmp.png` (plots). A process killed mid-write
//! leaves them behind; the next write of the same destination removes those whose process is
//! no longer running ([`remove_stale_temps`]).
//!
//! What stands at the destination decides how it is written ([`destination`]): a missing path
//! or a regular file is replaced atomically; a symbolic link is followed and its final target
//! replaced (the link stays); a FIFO, a character device or a descriptor link (`/dev/stdout`,
//! `/proc/self/fd/N`) is written through (opened for appending, no temporary file, no rename);
//! the path `-` is standard output. Folders, block devices and sockets are refused: nothing
//! here ever replaces something that is not a regular file. Written-through and standard-output
//! destinations are buffered in memory and written at [`AtomicFile::commit`], so a failed run
//! sends nothing to them either. Output paths are checked before a command's work by
//! [`crate::outputs`].

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::ExportError;

type Result<T> = std::result::Result<T, ExportError>;

/// The folder a path lives in (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The process id in a temporary name of ours for `name` (see the module docs), if it is one.
fn temp_owner(file: &str, name: &str) -> Option<u32> {
    let rest = file
        .strip_prefix('.')?
        .strip_prefix(name)?
        .strip_prefix('.')?;
    if let Some(r) = rest.strip_prefix("tmp-") {
        let (pid, n) = r.split_once('-')?;
        n.parse::<u64>().ok()?;
        return pid.parse().ok();
    }
    if let Some(r) = rest
        .strip_prefix("partial-")
        .or_else(|| rest.strip_prefix("old-"))
        .or_else(|| rest.strip_suffix(".tmp.png"))
    {
        return r.parse().ok();
    }
    None
}

/// Whether process `pid` is running; `None` where that cannot be told (no `/proc`).
fn pid_alive(pid: u32) -> Option<bool> {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return None;
    }
    Some(proc.join(pid.to_string()).exists())
}

/// Removes what interrupted writes of `dest` left beside it: temporary files and folders of
/// ours (module docs) whose process is no longer running. Best effort: what cannot be removed
/// stays.
pub fn remove_stale_temps(dest: &Path) {
    let Some(name) = dest.file_name().and_then(|n| n.to_str()) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(parent_dir(dest)) else {
        return;
    };
    for e in entries.flatten() {
        let file = e.file_name();
        let Some(pid) = file.to_str().and_then(|f| temp_owner(f, name)) else {
            continue;
        };
        if pid == std::process::id() || pid_alive(pid) != Some(false) {
            continue;
        }
        let p = e.path();
        let gone = match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&p),
            Ok(_) => std::fs::remove_file(&p),
            Err(e) => Err(e),
        };
        if gone.is_ok() {
            log::info!("removed {} left by an interrupted run", p.display());
        }
    }
}

/// The output path that means standard output.
pub const STDOUT: &str = "-";

/// Whether `path` is `-`, standard output.
pub fn is_stdout(path: &Path) -> bool {
    path.as_os_str() == STDOUT
}

/// How a write to a path is done (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Standard output (`-`, `/dev/stdout`, `/dev/fd/1`, `/proc/self/fd/1`).
    Stdout,
    /// An existing FIFO or character device, or a descriptor link: opened for appending and
    /// written through, never replaced. `what` says which ("a FIFO").
    Through { path: PathBuf, what: &'static str },
    /// A missing path or a regular file (symbolic links resolved to their final target):
    /// replaced atomically.
    Replace(PathBuf),
}

/// What a non-regular file type is, in words ("a FIFO"); `None` for a regular file.
pub fn file_kind(t: &std::fs::FileType) -> Option<&'static str> {
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a folder")
    } else if t.is_fifo() {
        Some("a FIFO")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else if t.is_socket() {
        Some("a socket")
    } else if t.is_symlink() {
        Some("a symbolic link")
    } else {
        Some("not a regular file")
    }
}

fn refuse(path: &Path, kind: std::io::ErrorKind, why: String) -> ExportError {
    ExportError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(kind, why),
    }
}

/// Whether `p` lies in `/proc` (or `/dev/fd`), where links name open descriptors.
fn is_descriptor_path(p: &Path) -> bool {
    p.starts_with("/proc") || p.starts_with("/dev/fd")
}

/// How a write to `path` is done: standard output, through an existing FIFO/character
/// device/descriptor, or atomically over the final target of any symbolic links. Folders,
/// block devices and sockets are refused with an error naming `path` and what it is.
pub fn destination(path: &Path) -> Result<Destination> {
    let stdout_links = ["/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"];
    if is_stdout(path) || stdout_links.iter().any(|l| path == Path::new(l)) {
        return Ok(Destination::Stdout);
    }
    let mut cur = path.to_path_buf();
    for _ in 0..40 {
        let real_parent = parent_dir(&cur).canonicalize().ok();
        if is_descriptor_path(&cur) || real_parent.as_deref().is_some_and(is_descriptor_path) {
            return Ok(Destination::Through {
                path: path.to_path_buf(),
                what: "an open descriptor",
            });
        }
        let m = match std::fs::symlink_metadata(&cur) {
            Ok(m) => m,
            // Missing (or under a file): created by the write, whose error then names the folder.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(Destination::Replace(cur));
            }
            Err(e) => return Err(io_at(path)(e)),
        };
        let t = m.file_type();
        if t.is_symlink() {
            let link = std::fs::read_link(&cur).map_err(io_at(path))?;
            cur = parent_dir(&cur).join(link);
            continue;
        }
        return match file_kind(&t) {
            None => Ok(Destination::Replace(cur)),
            Some(what) if t.is_fifo() || t.is_char_device() => {
                Ok(Destination::Through { path: cur, what })
            }
            Some(what) => Err(refuse(
                path,
                std::io::ErrorKind::InvalidInput,
                format!("is {what}, not a file; not writing over it"),
            )),
        };
    }
    Err(refuse(
        path,
        std::io::ErrorKind::InvalidInput,
        "too many levels of symbolic links".into(),
    ))
}

/// Where the bytes of an [`AtomicFile`] go until it is committed.
enum Sink {
    /// The temporary file beside the destination.
    Temp(BufWriter<File>),
    /// Held in memory, written to standard output or through the destination at commit.
    Memory(Vec<u8>),
}

impl Sink {
    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Sink::Temp(f) => f,
            Sink::Memory(v) => v,
        }
    }
}

/// A file written under a temporary name in its destination folder and renamed into place by
/// [`AtomicFile::commit`]; dropped uncommitted, it removes its temp file. For standard output
/// and written-through destinations ([`destination`]) the bytes are held in memory and written
/// at commit.
pub struct AtomicFile {
    /// The path asked for (named in errors).
    asked: PathBuf,
    target: Destination,
    tmp: PathBuf,
    file: Option<Sink>,
}

impl AtomicFile {
    /// Creates the temp file next to the destination's final target (after removing stale
    /// ones of earlier runs), or a memory buffer for a stream destination ([`destination`]).
    pub fn create(dest: &Path) -> Result<AtomicFile> {
        let target = destination(dest)?;
        let real = match &target {
            Destination::Replace(p) => p.clone(),
            _ => {
                return Ok(AtomicFile {
                    asked: dest.to_path_buf(),
                    target,
                    tmp: PathBuf::new(),
                    file: Some(Sink::Memory(Vec::new())),
                })
            }
        };
        remove_stale_temps(&real);
        let dir = parent_dir(&real);
        let name = real
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".into());
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.tmp-{}-{n}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|source| {
                // Name the file the user asked for, not our temporary one.
                let source = if dir.is_dir() {
                    source
                } else if dir.exists() {
                    std::io::Error::new(source.kind(), format!("{} is not a folder", dir.display()))
                } else {
                    std::io::Error::new(
                        source.kind(),
                        format!("folder {} does not exist", dir.display()),
                    )
                };
                ExportError::Io {
                    path: dest.to_path_buf(),
                    source,
                }
            })?;
        Ok(AtomicFile {
            asked: dest.to_path_buf(),
            target,
            tmp,
            file: Some(Sink::Temp(BufWriter::with_capacity(1 << 20, file))),
        })
    }

    /// Flushes, fsyncs and renames the temp file over the destination, then fsyncs the folder;
    /// for a stream destination, writes the buffered bytes to it.
    pub fn commit(mut self) -> Result<()> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ExportError::Io { path, source }
        };
        let w = match self.file.take() {
            None => return Ok(()),
            Some(Sink::Memory(bytes)) => {
                return match &self.target {
                    Destination::Through { path, .. } => std::fs::OpenOptions::new()
                        .append(true)
                        .open(path)
                        .and_then(|mut f| f.write_all(&bytes).and_then(|()| f.flush()))
                        .map_err(io(&self.asked)),
                    _ => {
                        let mut out = std::io::stdout().lock();
                        out.write_all(&bytes)
                            .and_then(|()| out.flush())
                            .map_err(io(&self.asked))
                    }
                };
            }
            Some(Sink::Temp(w)) => w,
        };
        let Destination::Replace(real) = self.target.clone() else {
            return Ok(());
        };
        let f = w.into_inner().map_err(|e| ExportError::Io {
            path: self.tmp.clone(),
            source: e.into_error(),
        })?;
        f.sync_all().map_err(io(&self.tmp))?;
        drop(f);
        std::fs::rename(&self.tmp, &real).map_err(io(&self.asked))?;
        // Make the rename itself durable; not every filesystem lets a folder be fsynced.
        if let Ok(d) = File::open(parent_dir(&real)) {
            let _ = d.sync_all();
        }
        self.tmp = PathBuf::new();
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &mut self.file {
            Some(f) => f.writer().write(buf),
            None => Err(std::io::Error::other("file already committed")),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match &mut self.file {
            Some(f) => f.writer().write_all(buf),
            None => Err(std::io::Error::other("file already committed")),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.file {
            Some(f) => f.writer().flush(),
            None => Ok(()),
        }
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        self.file.take();
        if !self.tmp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The folder a folder output `out` really is: `out`, or the final target of the symbolic
/// links at `out` (the links stay and point at the new folder). `-` is refused.
pub fn folder_target(out: &Path) -> Result<PathBuf> {
    if is_stdout(out) {
        return Err(refuse(
            out,
            std::io::ErrorKind::InvalidInput,
            "a folder output cannot go to standard output; give a folder path".into(),
        ));
    }
    let mut cur = out.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                let link = std::fs::read_link(&cur).map_err(io_at(out))?;
                cur = parent_dir(&cur).join(link);
            }
            _ => return Ok(cur),
        }
    }
    Ok(out.to_path_buf())
}

/// A fresh scratch folder `.NAME.partial-PID` beside `out` (its parent is created), for a
/// folder output that [`commit_dir`] moves into place when it is complete.
pub fn scratch_dir(out: &Path) -> Result<PathBuf> {
    let out = &folder_target(out)?;
    let parent = parent_dir(out);
    std::fs::create_dir_all(&parent).map_err(io_at(&parent))?;
    remove_stale_temps(out);
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let scratch = parent.join(format!(".{name}.partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir(&scratch).map_err(io_at(&scratch))?;
    Ok(scratch)
}

/// fsyncs every file and folder under `dir` (the folder itself last).
fn sync_tree(dir: &Path) -> Result<()> {
    for e in std::fs::read_dir(dir).map_err(io_at(dir))? {
        let p = e.map_err(io_at(dir))?.path();
        let m = std::fs::symlink_metadata(&p).map_err(io_at(&p))?;
        if m.is_dir() {
            sync_tree(&p)?;
        } else if m.is_file() {
            File::open(&p)
                .and_then(|f| f.sync_all())
                .map_err(io_at(&p))?;
        }
    }
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Moves the complete folder `scratch` (from [`scratch_dir`]) to `out`. An existing `out` is
/// replaced only when it is empty or `is_ours(out)` says it is an earlier output of the same
/// kind (it holds a manifest, say); anything else is refused as "exists and is not {kind}", so
/// a mistaken `--out` never deletes a folder of other files. The earlier output is renamed
/// aside, the new one renamed in, then the old one removed: `out` is never a mix of the two,
/// and a failed rename puts the old one back. On error `scratch` is left to the caller.
pub fn commit_dir(
    scratch: &Path,
    out: &Path,
    kind: &str,
    is_ours: impl Fn(&Path) -> bool,
) -> Result<()> {
    let out = &folder_target(out)?;
    sync_tree(scratch)?;
    let refuse = |why: String| ExportError::Io {
        path: out.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, why),
    };
    match std::fs::symlink_metadata(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::rename(scratch, out).map_err(io_at(out))?;
        }
        Err(e) => return Err(io_at(out)(e)),
        Ok(m) => {
            let empty = m.is_dir()
                && std::fs::read_dir(out)
                    .map(|mut d| d.next().is_none())
                    .unwrap_or(false);
            if !(m.is_dir() && (empty || is_ours(out))) {
                return Err(refuse(format!(
                    "exists and is not {kind}; not replacing it (remove it or write elsewhere)"
                )));
            }
            let name = out
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "out".into());
            let old = parent_dir(out).join(format!(".{name}.old-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&old);
            std::fs::rename(out, &old).map_err(io_at(out))?;
            if let Err(e) = std::fs::rename(scratch, out) {
                let _ = std::fs::rename(&old, out);
                return Err(io_at(out)(e));
            }
            let _ = std::fs::remove_dir_all(&old);
        }
    }
    if let Ok(d) = File::open(parent_dir(out)) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically (temp file, fsync, rename), or to standard output or
/// through a FIFO/character device ([`destination`]).
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    write_all_atomic(&[(path.as_ref(), bytes)])
}

/// Writes several outputs as one: every temporary file is written in full (and every stream's
/// bytes buffered) before the first rename, so a failure while writing any of them leaves
/// none. Only a rename failing after others succeeded (the folder vanished, say) can leave
/// part of the set; its error names the file.
pub fn write_all_atomic(files: &[(&Path, &[u8])]) -> Result<()> {
    let mut staged = Vec::with_capacity(files.len());
    for (path, bytes) in files {
        let mut f = AtomicFile::create(path)?;
        f.write_all(bytes).map_err(|source| ExportError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        f.flush().map_err(|source| ExportError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        staged.push(f);
    }
    // Files before streams: a stream cannot be taken back, a rename can fail.
    staged.sort_by_key(|f| !matches!(f.target, Destination::Replace(_)));
    for f in staged {
        f.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_folder_names_the_destination() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("no/such/dir/model.onnx");
        let e = write_atomic(&dest, b"x").unwrap_err().to_string();
        assert!(e.starts_with(&dest.display().to_string()), "{e}");
        assert!(e.contains("does not exist"), "{e}");
        assert!(!e.contains(".model.onnx.tmp"), "{e}");
    }

    #[test]
    fn temp_names_and_their_owners() {
        assert_eq!(temp_owner(".m.onnx.tmp-123-0", "m.onnx"), Some(123));
        assert_eq!(temp_owner(".eng.partial-77", "eng"), Some(77));
        assert_eq!(temp_owner(".eng.old-78", "eng"), Some(78));
        assert_eq!(temp_owner(".det.png.9.tmp.png", "det.png"), Some(9));
        assert_eq!(temp_owner(".m.onnx.tmp-123", "m.onnx"), None);
        assert_eq!(temp_owner(".other.onnx.tmp-1-0", "m.onnx"), None);
        assert_eq!(temp_owner("m.onnx", "m.onnx"), None);
    }

    #[test]
    fn stale_temps_of_dead_processes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("t.json");
        // pid_max on Linux is at most 2^22: this one is not running
        let dead = dir.path().join(".t.json.tmp-4194999-0");
        std::fs::write(&dead, b"partial").unwrap();
        let dead_dir = dir.path().join(".t.json.partial-4194999");
        std::fs::create_dir(&dead_dir).unwrap();
        let live = dir
            .path()
            .join(format!(".t.json.tmp-{}-99", std::process::id()));
        std::fs::write(&live, b"ours").unwrap();
        write_atomic(&dest, b"{}").unwrap();
        if pid_alive(1).is_some() {
            assert!(!dead.exists() && !dead_dir.exists());
        }
        assert!(live.exists(), "a running process's temp file stays");
    }

    #[test]
    fn commit_dir_replaces_only_its_own_kind() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("eng");
        let ours = |p: &Path| p.join("manifest.json").is_file();
        let s = scratch_dir(&out).unwrap();
        std::fs::write(s.join("manifest.json"), b"1").unwrap();
        commit_dir(&s, &out, "an engine folder", ours).unwrap();
        let s = scratch_dir(&out).unwrap();
        std::fs::write(s.join("manifest.json"), b"2").unwrap();
        commit_dir(&s, &out, "an engine folder", ours).unwrap();
        assert_eq!(std::fs::read(out.join("manifest.json")).unwrap(), b"2");
        // a folder of other files is not replaced
        let other = dir.path().join("home");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join("notes.txt"), b"mine").unwrap();
        let s = scratch_dir(&other).unwrap();
        let e = commit_dir(&s, &other, "an engine folder", ours).unwrap_err();
        assert!(
            e.to_string().contains("exists and is not an engine folder"),
            "{e}"
        );
        assert_eq!(std::fs::read(other.join("notes.txt")).unwrap(), b"mine");
        std::fs::remove_dir_all(&s).unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn several_outputs_are_written_as_one() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.txt"), dir.path().join("no/b.txt"));
        let e = write_all_atomic(&[(&a, b"a"), (&b, b"b")]).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        write_all_atomic(&[(&a, b"a")]).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), b"a");
    }

    #[test]
    fn links_are_followed_and_folders_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("real"), b"old").unwrap();
        std::os::unix::fs::symlink("real", d.join("link")).unwrap();
        write_atomic(d.join("link"), b"new").unwrap();
        assert!(std::fs::symlink_metadata(d.join("link"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(d.join("real")).unwrap(), b"new");
        let e = write_atomic(d, b"x").unwrap_err().to_string();
        assert!(e.contains("is a folder"), "{e}");
        assert_eq!(destination(Path::new("-")).unwrap(), Destination::Stdout);
    }

    #[test]
    fn dropped_uncommitted_file_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("t.bin");
        {
            let mut f = AtomicFile::create(&dest).unwrap();
            f.write_all(b"partial").unwrap();
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        write_atomic(&dest, b"whole").unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"whole");
    }
}
