//! The one checked way mexa opens a file it reads: a regular file (never a FIFO, a device, a
//! socket or a folder, so nothing can hang a read or stream forever), no larger than what its
//! kind may be, and for files inside a store never through a symbolic link. Errors name the
//! path and say what was expected. Files read whole have a size limit per kind (so a file
//! cannot fill memory); text corpora are streamed line by line ([`for_each_line`]) with a
//! bound on each line instead.
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// What a file is read as: how large it may be and whether a symbolic link is followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A pipeline file or one it imports (YAML).
    Pipeline,
    /// A store's small files: manifests, refs, run registrations, the file-hash cache.
    StoreMeta,
    /// A store's data files (Parquet tables); links refused, no size limit.
    StoreData,
    /// A model's config.json, a tokenizer, a node spec: JSON read whole.
    Config,
    /// Downstream task results (CSV/TSV/Parquet, lm-eval JSON): a small table read whole.
    Results,
    /// Input data read whole: a corpus as one TSV or Parquet table, a task's items.
    Data,
    /// A text corpus file, streamed line by line with a bound on each line
    /// ([`for_each_line`]): no size limit, nothing is read whole.
    Text,
    /// A model's weights (GGUF, safetensors): links followed (the Hugging Face cache is made of
    /// them), no size limit.
    Model,
}

impl FileKind {
    /// The largest size accepted, in bytes (`None`: no limit).
    pub fn limit(self) -> Option<u64> {
        const MIB: u64 = 1 << 20;
        match self {
            FileKind::Pipeline => Some(16 * MIB),
            // Real manifests are KB (the largest list shard keys: 205 languages × 65 bytes);
            // parsing JSON takes up to ~110× its size in memory.
            FileKind::StoreMeta => Some(16 * MIB),
            // The largest tokenizer.json files are ~35 MB.
            FileKind::Config => Some(256 * MIB),
            FileKind::Results => Some(64 * MIB),
            FileKind::Data => Some(1024 * MIB),
            FileKind::StoreData | FileKind::Model | FileKind::Text => None,
        }
    }

    /// Whether a symbolic link is followed (a store never follows one: a shared store could
    /// point it anywhere).
    pub fn follows_links(self) -> bool {
        !matches!(self, FileKind::StoreMeta | FileKind::StoreData)
    }

    fn noun(self) -> &'static str {
        match self {
            FileKind::Pipeline => "a pipeline file",
            FileKind::StoreMeta => "a store's metadata file",
            FileKind::StoreData => "a store's data file",
            FileKind::Config => "a configuration file",
            FileKind::Results => "a task results file",
            FileKind::Data => "a data file",
            FileKind::Text => "a text file",
            FileKind::Model => "a model file",
        }
    }
}

const O_NOFOLLOW: i32 = 0o400000;
const O_NONBLOCK: i32 = 0o4000;

fn err(path: &Path, what: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{}: {what}", path.display()))
}

/// Opens `path` for reading as a `kind` file: a regular file within the kind's size limit.
/// The open never blocks (O_NONBLOCK, so a FIFO is refused instead of waited on) and, for
/// store files, never follows a link (O_NOFOLLOW).
pub fn open(path: &Path, kind: FileKind) -> io::Result<File> {
    let flags = O_NONBLOCK | if kind.follows_links() { 0 } else { O_NOFOLLOW };
    let f = File::options().read(true).custom_flags(flags).open(path).map_err(|e| {
        if !kind.follows_links() && e.raw_os_error() == Some(40) {
            err(path, "is a symbolic link; refused (files inside a store are never followed through a link)")
        } else {
            err(path, format!("cannot open ({e})"))
        }
    })?;
    let md = f.metadata().map_err(|e| err(path, e))?;
    let ft = md.file_type();
    if !ft.is_file() {
        use std::os::unix::fs::FileTypeExt;
        let what = if ft.is_dir() {
            "a folder"
        } else if ft.is_fifo() {
            "a FIFO (named pipe)"
        } else if ft.is_char_device() || ft.is_block_device() {
            "a device"
        } else if ft.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(err(path, format!("is {what}; expected {} (a regular file)", kind.noun())));
    }
    if let Some(limit) = kind.limit() {
        if md.len() > limit {
            return Err(err(
                path,
                format!("is {} bytes; {} may be at most {} MiB", md.len(), kind.noun(), limit >> 20),
            ));
        }
    }
    Ok(f)
}

/// The bytes of a `kind` file (see [`open`]); a file that grows past the limit while being
/// read is refused too.
pub fn read(path: &Path, kind: FileKind) -> io::Result<Vec<u8>> {
    let f = open(path, kind)?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let cap = kind.limit().unwrap_or(u64::MAX);
    let mut v = Vec::with_capacity(len.min(cap) as usize);
    f.take(cap.saturating_add(1)).read_to_end(&mut v).map_err(|e| err(path, format!("cannot read ({e})")))?;
    if v.len() as u64 > cap {
        return Err(err(path, format!("grew past {} MiB while being read; refused", cap >> 20)));
    }
    Ok(v)
}

/// A `kind` JSON file parsed into `T`: [`read`], then JSON; a parse error names the file and
/// the line and column (`m/config.json: not valid JSON: expected value at line 13 column 21`).
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path, kind: FileKind) -> io::Result<T> {
    serde_json::from_slice(&read(path, kind)?).map_err(|e| err(path, format!("not valid JSON: {e}")))
}

/// The text of a `kind` file: [`read`], then UTF-8 (an error names the byte offset).
pub fn read_text(path: &Path, kind: FileKind) -> io::Result<String> {
    String::from_utf8(read(path, kind)?)
        .map_err(|e| err(path, format!("is not UTF-8 text (invalid byte at offset {})", e.utf8_error().valid_up_to())))
}

/// Reads a [`FileKind::Text`] file line by line (lines end at `\n`; a trailing `\r` is
/// dropped), calling `f(line number, bytes)` for each: memory holds one line at a time. A
/// line longer than `max_line` bytes is refused with its number as soon as it is seen, so
/// a huge file with no line breaks (a binary, a sparse file) costs `max_line` bytes, not its
/// size. `what` says what a line should be (for that error).
pub fn for_each_line(
    path: &Path,
    max_line: usize,
    what: &str,
    mut f: impl FnMut(usize, &[u8]) -> io::Result<()>,
) -> io::Result<()> {
    use std::io::BufRead;
    let too_long =
        |n: usize| io::Error::other(format!("{}:{n}: a line of more than {max_line} bytes; {what}", path.display()));
    let mut r = io::BufReader::with_capacity(1 << 16, open(path, FileKind::Text)?);
    let mut line = Vec::new();
    let mut n = 1;
    loop {
        let buf = r.fill_buf().map_err(|e| err(path, format!("cannot read ({e})")))?;
        if buf.is_empty() {
            break;
        }
        let (take, end) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        line.extend_from_slice(&buf[..take - end as usize]);
        r.consume(take);
        // `+ 1`: a line may still end in the `\r` of a `\r\n`.
        if line.len() > max_line + 1 {
            return Err(too_long(n));
        }
        if end {
            let l = line.strip_suffix(b"\r").unwrap_or(&line);
            if l.len() > max_line {
                return Err(too_long(n));
            }
            f(n, l)?;
            line.clear();
            n += 1;
        }
    }
    if !line.is_empty() {
        let l = line.strip_suffix(b"\r").unwrap_or(&line);
        if l.len() > max_line {
            return Err(too_long(n));
        }
        f(n, l)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_are_read_and_everything_else_refused() {
        let d = std::env::temp_dir().join(format!("mexa-core-file-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let f = d.join("a.yaml");
        std::fs::write(&f, "x: 1\n").unwrap();
        assert_eq!(read_text(&f, FileKind::Pipeline).unwrap(), "x: 1\n");
        // A folder, a device, a FIFO: refused at once with what it is.
        let e = read(&d, FileKind::Pipeline).unwrap_err().to_string();
        assert!(e.contains("a folder"), "{e}");
        let e = read(Path::new("/dev/zero"), FileKind::Pipeline).unwrap_err().to_string();
        assert!(e.contains("a device") && e.contains("/dev/zero"), "{e}");
        let fifo = d.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        extern "C" {
            fn mkfifo(path: *const std::ffi::c_char, mode: u32) -> i32;
        }
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read(&fifo, FileKind::Pipeline).unwrap_err().to_string();
        assert!(e.contains("FIFO"), "{e}");
        // A link: followed for inputs, refused inside a store.
        let link = d.join("link");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        assert!(read(&link, FileKind::Config).is_ok());
        let e = read(&link, FileKind::StoreMeta).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        // Too large for its kind.
        let big = d.join("big.yaml");
        std::fs::File::create(&big).unwrap().set_len(17 << 20).unwrap();
        let e = read(&big, FileKind::Pipeline).unwrap_err().to_string();
        assert!(e.contains("at most 16 MiB"), "{e}");
        // Lines are streamed; a line past its bound is refused at once with its number.
        std::fs::write(&f, "one\r\ntwo\n\nthree").unwrap();
        let mut seen = Vec::new();
        for_each_line(&f, 5, "a short line", |n, l| {
            seen.push((n, l.to_vec()));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, [(1, b"one".to_vec()), (2, b"two".to_vec()), (3, vec![]), (4, b"three".to_vec())]);
        let e = for_each_line(&big, 100, "one sentence per line", |_, _| Ok(())).unwrap_err().to_string();
        assert!(e.contains("big.yaml:1: a line of more than 100 bytes"), "{e}");
        std::fs::write(&f, [b'a', 0xff, b'b']).unwrap();
        let e = read_text(&f, FileKind::Pipeline).unwrap_err().to_string();
        assert!(e.contains("offset 1"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
