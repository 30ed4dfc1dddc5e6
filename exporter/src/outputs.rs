//! A command's output paths checked before it does any work: each location (its folder exists
//! or can be created and is writable, a file where a file is written, a folder where a folder
//! is, `-` only for stream outputs), and every output against every input and every other
//! output after resolving symbolic links, so no run overwrites what it reads or writes one
//! output over another. [`check`] is the one entry point; the writers themselves are in
//! [`crate::atomic`].

use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use crate::atomic::{destination, file_kind, folder_target, is_stdout, parent_dir, Destination};
use crate::error::ExportError;

type Result<T> = std::result::Result<T, ExportError>;

/// What kind of output a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// A file (a model, a table, a store): a missing path or a regular file (symbolic links
    /// followed); its folder must exist.
    File,
    /// A text or report stream: as [`Form::File`], or `-` (standard output), a FIFO or a
    /// character device, written through.
    Stream,
    /// A folder built aside and moved into place whole (an engine folder, a model folder, a
    /// Triton entry): an existing one is replaced only when it holds `marker` or is empty, so
    /// no input may lie inside it. Its parents are created.
    Folder {
        marker: &'static str,
        kind: &'static str,
    },
    /// A folder files are written into (a report folder): created with its parents when
    /// missing, never replaced.
    Into,
}

/// One output of a command: the option that names it (`--out`, or a description such as
/// `the config written beside --out`), its path and its form.
#[derive(Debug, Clone)]
pub struct Output {
    pub label: String,
    pub path: PathBuf,
    pub form: Form,
}

impl Output {
    pub fn new(label: impl Into<String>, path: impl Into<PathBuf>, form: Form) -> Output {
        Output {
            label: label.into(),
            path: path.into(),
            form,
        }
    }
}

/// One input of a command, described for the error (`the input model`, `the trial list`).
#[derive(Debug, Clone)]
pub struct Input {
    pub what: String,
    pub path: PathBuf,
}

impl Input {
    pub fn new(what: impl Into<String>, path: impl Into<PathBuf>) -> Input {
        Input {
            what: what.into(),
            path: path.into(),
        }
    }
}

fn bad(o: &Output, reason: impl Into<String>) -> ExportError {
    ExportError::Output {
        label: o.label.clone(),
        path: o.path.clone(),
        reason: reason.into(),
    }
}

/// `p` made absolute with every symbolic link in its existing part resolved and `.`/`..`
/// removed from the rest (which does not exist yet). `-` stays `-`.
pub fn resolve(p: &Path) -> PathBuf {
    resolve_depth(p, 0)
}

fn resolve_depth(p: &Path, depth: usize) -> PathBuf {
    if is_stdout(p) {
        return p.to_path_buf();
    }
    if let Ok(c) = p.canonicalize() {
        return c;
    }
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("/"))
            .join(p)
    };
    let mut cur = PathBuf::from("/");
    let mut exists = true;
    for c in abs.components() {
        match c {
            Component::Prefix(_) | Component::RootDir => cur = PathBuf::from("/"),
            Component::CurDir => {}
            Component::ParentDir => {
                cur.pop();
                exists = cur.exists();
            }
            Component::Normal(name) => {
                let next = cur.join(name);
                if !exists {
                    cur = next;
                    continue;
                }
                match std::fs::symlink_metadata(&next) {
                    Ok(m) if m.file_type().is_symlink() && depth < 40 => {
                        cur = match next.canonicalize() {
                            Ok(real) => real,
                            // a dangling link: where it points, resolved the same way
                            Err(_) => match std::fs::read_link(&next) {
                                Ok(l) => resolve_depth(&cur.join(l), depth + 1),
                                Err(_) => next,
                            },
                        };
                        exists = cur.exists();
                    }
                    Ok(_) => cur = next,
                    Err(_) => {
                        exists = false;
                        cur = next;
                    }
                }
            }
        }
    }
    cur
}

/// A path once resolved, with its inode when it exists (hard links and bind mounts).
struct Resolved {
    path: PathBuf,
    inode: Option<(u64, u64)>,
}

impl Resolved {
    fn of(p: &Path) -> Resolved {
        let path = resolve(p);
        let inode = if is_stdout(&path) {
            None
        } else {
            std::fs::metadata(&path).ok().map(|m| (m.dev(), m.ino()))
        };
        Resolved { path, inode }
    }

    fn same(&self, other: &Resolved) -> bool {
        self.path == other.path || (self.inode.is_some() && self.inode == other.inode)
    }
}

/// Whether a file can be created in the existing folder `dir` (tried, then removed).
fn writable(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".voxq-probe-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// The nearest existing folder at or above `dir`; an error when that ancestor is not a folder
/// or cannot be written in.
fn check_creatable(o: &Output, dir: &Path) -> Result<()> {
    let mut d = dir.to_path_buf();
    loop {
        match std::fs::metadata(&d) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => return Err(bad(o, format!("{} is not a folder", d.display()))),
            Err(_) => {
                if !d.pop() {
                    return Ok(());
                }
            }
        }
    }
    writable(&d).map_err(|e| bad(o, format!("cannot write in folder {}: {e}", d.display())))
}

/// The checks of one output's location (module docs); `made` are the folders other outputs
/// of this run create.
fn check_location(o: &Output, made: &[PathBuf]) -> Result<()> {
    let text = o.path.to_string_lossy();
    match o.form {
        Form::File | Form::Stream => {
            if is_stdout(&o.path) {
                return match o.form {
                    Form::Stream => Ok(()),
                    _ => Err(bad(
                        o,
                        "this output cannot go to standard output; give a file path",
                    )),
                };
            }
            if text.ends_with('/') {
                return Err(bad(o, "names a folder; give a file path"));
            }
            let real = match destination(&o.path) {
                Ok(Destination::Replace(real)) => real,
                Ok(Destination::Stdout | Destination::Through { .. }) if o.form == Form::Stream => {
                    return Ok(())
                }
                Ok(Destination::Stdout) => {
                    return Err(bad(o, "this output cannot go to standard output"));
                }
                Ok(Destination::Through { what, .. }) => {
                    return Err(bad(
                        o,
                        format!("is {what}; this output must be a regular file"),
                    ));
                }
                Err(ExportError::Io { source, .. }) => return Err(bad(o, source.to_string())),
                Err(e) => return Err(e),
            };
            let dir = parent_dir(&real);
            if dir.is_dir() {
                return writable(&dir)
                    .map_err(|e| bad(o, format!("cannot write in folder {}: {e}", dir.display())));
            }
            let rdir = resolve(&dir);
            if made.iter().any(|m| rdir.starts_with(m)) {
                return check_creatable(o, &dir);
            }
            if dir.exists() {
                return Err(bad(o, format!("{} is not a folder", dir.display())));
            }
            Err(bad(o, format!("folder {} does not exist", dir.display())))
        }
        Form::Folder { marker, kind } => {
            let real = folder_target(&o.path).map_err(|e| match e {
                ExportError::Io { source, .. } => bad(o, source.to_string()),
                e => e,
            })?;
            match std::fs::metadata(&real) {
                Ok(m) if m.is_dir() => {
                    let empty = std::fs::read_dir(&real)
                        .map(|mut d| d.next().is_none())
                        .unwrap_or(false);
                    if !empty && !real.join(marker).is_file() {
                        return Err(bad(
                            o,
                            format!(
                                "exists and is not {kind}; not replacing it (remove it or write elsewhere)"
                            ),
                        ));
                    }
                    check_creatable(o, &parent_dir(&real))
                }
                Ok(m) => Err(bad(
                    o,
                    format!(
                        "exists and is {}, not a folder",
                        file_kind(&m.file_type()).unwrap_or("a file")
                    ),
                )),
                Err(_) => check_creatable(o, &parent_dir(&real)),
            }
        }
        Form::Into => {
            if is_stdout(&o.path) {
                return Err(bad(
                    o,
                    "a folder output cannot go to standard output; give a folder path",
                ));
            }
            match std::fs::metadata(&o.path) {
                Ok(m) if m.is_dir() => writable(&o.path).map_err(|e| {
                    bad(
                        o,
                        format!("cannot write in folder {}: {e}", o.path.display()),
                    )
                }),
                Ok(m) => Err(bad(
                    o,
                    format!(
                        "exists and is {}, not a folder",
                        file_kind(&m.file_type()).unwrap_or("a file")
                    ),
                )),
                Err(_) => check_creatable(o, &o.path),
            }
        }
    }
}

/// `what` of an input, with its path when the output was named differently.
fn describe(input: &Input, out: &Output) -> String {
    if input.path == out.path {
        input.what.clone()
    } else {
        format!("{} ({})", input.what, input.path.display())
    }
}

/// Checks every output against every input and every other output, then every output's
/// location (after resolving symbolic links; hard links count as the same file), before any
/// work: `--out campplus.onnx is the input model`. A folder output ([`Form::Folder`]) is
/// replaced whole, so it may hold no input. A folder input counts as itself: list the files of
/// a model folder as inputs of their own.
pub fn check(inputs: &[Input], outputs: &[Output]) -> Result<()> {
    let made: Vec<PathBuf> = outputs
        .iter()
        .filter(|o| matches!(o.form, Form::Into | Form::Folder { .. }))
        .map(|o| resolve(&o.path))
        .collect();
    let outs: Vec<Resolved> = outputs.iter().map(|o| Resolved::of(&o.path)).collect();
    let ins: Vec<Resolved> = inputs.iter().map(|i| Resolved::of(&i.path)).collect();
    for (o, ro) in outputs.iter().zip(&outs) {
        let folder = matches!(o.form, Form::Folder { .. });
        for (i, ri) in inputs.iter().zip(&ins) {
            if ro.same(ri) {
                return Err(ExportError::SameFile {
                    label: o.label.clone(),
                    path: o.path.clone(),
                    what: describe(i, o),
                });
            }
            if folder && !is_stdout(&ro.path) && ri.path.starts_with(&ro.path) {
                return Err(ExportError::SameFile {
                    label: o.label.clone(),
                    path: o.path.clone(),
                    what: format!(
                        "a folder holding {} ({}); it would be replaced",
                        i.what,
                        i.path.display()
                    ),
                });
            }
        }
    }
    for (a, (oa, ra)) in outputs.iter().zip(&outs).enumerate() {
        for (ob, rb) in outputs.iter().zip(&outs).skip(a + 1) {
            let inside = |outer: &Output, ro: &Resolved, inner: &Resolved| {
                matches!(outer.form, Form::Folder { .. })
                    && !is_stdout(&ro.path)
                    && inner.path.starts_with(&ro.path)
            };
            if ra.same(rb) || inside(oa, ra, rb) || inside(ob, rb, ra) {
                let also = if oa.path == ob.path {
                    ob.label.clone()
                } else {
                    format!("{} ({})", ob.label, ob.path.display())
                };
                return Err(ExportError::SameFile {
                    label: oa.label.clone(),
                    path: oa.path.clone(),
                    what: format!("also {also}"),
                });
            }
        }
    }
    for o in outputs {
        check_location(o, &made)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_follows_links_and_keeps_the_missing_rest() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().canonicalize().unwrap();
        std::fs::write(real.join("a.txt"), b"x").unwrap();
        std::os::unix::fs::symlink(real.join("a.txt"), real.join("l.txt")).unwrap();
        std::os::unix::fs::symlink(real.join("gone.txt"), real.join("dangling")).unwrap();
        assert_eq!(resolve(&real.join("l.txt")), real.join("a.txt"));
        assert_eq!(resolve(&real.join("dangling")), real.join("gone.txt"));
        assert_eq!(
            resolve(&real.join("new/../b/./c.txt")),
            real.join("b/c.txt")
        );
        assert_eq!(resolve(Path::new("-")), PathBuf::from("-"));
    }

    #[test]
    fn outputs_against_inputs_and_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("m.onnx"), b"x").unwrap();
        std::os::unix::fs::symlink(d.join("m.onnx"), d.join("link.onnx")).unwrap();
        let model = [Input::new("the input model", d.join("m.onnx"))];
        let e = check(
            &model,
            &[Output::new("--out", d.join("link.onnx"), Form::File)],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("--out") && e.contains("is the input model"),
            "{e}"
        );
        let e = check(
            &[],
            &[
                Output::new("--out", d.join("x.json"), Form::File),
                Output::new(
                    "the config written beside --out",
                    d.join("x.json"),
                    Form::File,
                ),
            ],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("is also the config written beside --out"), "{e}");
        let e = check(
            &model,
            &[Output::new(
                "--out",
                d,
                Form::Folder {
                    marker: "manifest.json",
                    kind: "an engine folder",
                },
            )],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("holding the input model"), "{e}");
        check(
            &model,
            &[
                Output::new("--out", d.join("q.onnx"), Form::File),
                Output::new("--report", "-", Form::Stream),
            ],
        )
        .unwrap();
    }

    #[test]
    fn locations_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let e = check(
            &[],
            &[Output::new("--det", d.join("missing/x.png"), Form::Stream)],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("does not exist"), "{e}");
        let e = check(&[], &[Output::new("--out", "-", Form::File)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("standard output"), "{e}");
        let e = check(&[], &[Output::new("--out", d, Form::File)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("is a folder"), "{e}");
        // files inside a report folder this run creates
        check(
            &[],
            &[
                Output::new("--out", d.join("r/s"), Form::Into),
                Output::new("--out", d.join("r/s/sensitivity.md"), Form::File),
            ],
        )
        .unwrap();
        assert!(!d.join("r").exists(), "a check creates nothing");
    }
}
