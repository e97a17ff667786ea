//! Where a tenant log's bytes are kept: the storage driver seam.
//!
//! The engine (sequencer, recovery, reads, checkpoint signing) is written once against
//! [`Storage`] and [`StoredFile`]; a driver decides where the bytes go. Files are named by the
//! paths [`crate::layout`] gives them, so the layout stays the one owner of names and a driver
//! that is not a file system (an object store, a database) maps them to its own keys.
//!
//! Drivers here: [`PosixStorage`] (local files, the data directory's format) and
//! [`FaultyStorage`] (wraps another driver and makes its operations fail the way disks fail,
//! for tests).
//!
//! What a driver stores is the log of record: record segments, leaf entries, signed
//! checkpoints and the persisted tree state. Projections that can be rebuilt from it (the
//! event-id index, the search index) and the server's configuration files (keys, API keys,
//! consumer cursors) are not its business.
//!
//! The engine relies on exactly these guarantees; each method states its part:
//! - nothing written is durable until [`StoredFile::sync`] (or [`Storage::sync_dir`] for
//!   a directory entry) has returned `Ok`;
//! - a failed [`StoredFile::append`] may leave any prefix of its bytes behind: the engine
//!   cuts it with [`StoredFile::truncate`];
//! - after a failed [`StoredFile::sync`] nothing about the file's durable contents is known
//!   (the kernel may have dropped dirty pages), so the engine stops writing until recovery
//!   has run; a driver must never report a failed sync as success.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use crate::faults::{Fault, FaultPoint, Faults};
use crate::layout::PRIVATE_FILE_MODE;

/// How [`Storage::open`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Reading only; the file must exist.
    Read,
    /// Reading and appending; created empty if missing (the creation is durable only after
    /// [`Storage::sync_dir`] of its directory).
    Append,
    /// Reading and appending a file that must not exist yet (a new segment).
    CreateNew,
}

/// One file of a tenant's log: read anywhere, written only at its end.
///
/// Shared by the writer, the syncer and every reader of the tenant at once, so every method
/// takes `&self` and is safe to call concurrently; reads of bytes below the length an
/// earlier append produced see those bytes.
pub trait StoredFile: Send + Sync + fmt::Debug {
    /// The file's length: everything appended, durable or not. Pure.
    fn len(&self) -> io::Result<u64>;

    /// Whether the file is empty. Pure.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Fills `buf` from `offset`; `UnexpectedEof` if the file ends first. Pure.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;

    /// Appends `bytes` at the end. Not durable when it returns. On error any prefix of
    /// `bytes` may have been stored: the caller cuts it with [`StoredFile::truncate`].
    /// Not idempotent (a retry appends again).
    fn append(&self, bytes: &[u8]) -> io::Result<()>;

    /// Cuts the file to `len` bytes (`len` at most its length). Idempotent. Not durable
    /// until the next [`StoredFile::sync`].
    fn truncate(&self, len: u64) -> io::Result<()>;

    /// Makes every earlier append and truncate durable (fdatasync). Idempotent when nothing
    /// changed. After an error the durable contents are unknown: the engine stops writing.
    fn sync(&self) -> io::Result<()>;
}

/// Where a data directory's tenant logs are stored. See the module docs for what the engine
/// relies on.
pub trait Storage: Send + Sync + fmt::Debug {
    /// Opens `path` as [`OpenMode`] says. `NotFound` for a missing file opened to read,
    /// `AlreadyExists` for an existing one opened with [`OpenMode::CreateNew`].
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StoredFile>>;

    /// The entry names in directory `dir`, unsorted; empty if it does not exist. Pure.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;

    /// Whether a file or directory exists at `path`. Pure.
    fn exists(&self, path: &Path) -> io::Result<bool>;

    /// Creates `dir` and its missing parents. Idempotent. Durable after [`Storage::sync_dir`]
    /// of each created directory's parent.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;

    /// Makes the entries of `dir` (files created, renamed or removed in it) durable.
    /// Idempotent.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;

    /// Removes the file at `path`. Not idempotent (`NotFound` the second time). Durable after
    /// [`Storage::sync_dir`] of its directory.
    fn remove_file(&self, path: &Path) -> io::Result<()>;

    /// Removes `dir` and everything in it. Durable after [`Storage::sync_dir`] of its parent.
    fn remove_dir_all(&self, dir: &Path) -> io::Result<()>;

    /// The whole content of a small file (`NotFound` if missing). Pure.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;

    /// Replaces the file at `path` with `bytes` atomically and durably: when this returns
    /// `Ok` a crash leaves the new content, and at any earlier instant the old one (or none).
    /// Idempotent.
    fn replace(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;

    /// Takes the one writer's lock named `path`, for as long as the returned guard lives:
    /// `WouldBlock` while another holder (another process, or another open log in this one)
    /// has it. Readers never take it. A crashed holder's lock is released with it.
    fn lock_writer(&self, path: &Path) -> io::Result<Box<dyn WriterLock>>;
}

/// A held writer's lock ([`Storage::lock_writer`]); dropping it releases the lock.
pub trait WriterLock: Send + Sync + fmt::Debug {}

/// An exclusive `flock` on a lock file (the kernel releases it when the process dies).
#[derive(Debug)]
struct PosixLock {
    _file: File,
}

impl WriterLock for PosixLock {}

/// Local files: the data directory format every release has written.
#[derive(Debug, Clone, Copy, Default)]
pub struct PosixStorage;

impl PosixStorage {
    /// The POSIX driver, shared.
    pub fn shared() -> Arc<dyn Storage> {
        Arc::new(PosixStorage)
    }
}

/// A local file. Opened with `O_APPEND`, so appends from one handle never overwrite each
/// other and a cut is followed by appends at the new end.
#[derive(Debug)]
struct PosixFile(File);

impl StoredFile for PosixFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }

    fn append(&self, bytes: &[u8]) -> io::Result<()> {
        (&self.0).write_all(bytes)
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn sync(&self) -> io::Result<()> {
        self.0.sync_data()
    }
}

impl Storage for PosixStorage {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StoredFile>> {
        let mut options = OpenOptions::new();
        options.read(true).mode(PRIVATE_FILE_MODE);
        match mode {
            OpenMode::Read => {}
            OpenMode::Append => {
                options.append(true).create(true);
            }
            OpenMode::CreateNew => {
                options.append(true).create_new(true);
            }
        }
        Ok(Arc::new(PosixFile(options.open(path)?)))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        entries
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect()
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        crate::layout::create_private_dir_all(dir)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::remove_dir_all(dir)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn replace(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let tmp = path.with_extension("tmp");
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(PRIVATE_FILE_MODE)
            .open(&tmp)?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(PRIVATE_FILE_MODE))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        self.sync_dir(path.parent().unwrap_or(Path::new(".")))
    }

    fn lock_writer(&self, path: &Path) -> io::Result<Box<dyn WriterLock>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(PRIVATE_FILE_MODE)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Box::new(PosixLock { _file: file })),
            Err(fs::TryLockError::WouldBlock) => Err(io::ErrorKind::WouldBlock.into()),
            Err(fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

/// Reads a stored file from start to end with `std::io::Read` (wrap it in a `BufReader`), up
/// to the length it had when the reader was made: a snapshot of a file that may be growing.
#[derive(Debug)]
pub struct SequentialReader {
    file: Arc<dyn StoredFile>,
    pos: u64,
    end: u64,
}

impl SequentialReader {
    /// Reads `file` from its start.
    pub fn new(file: Arc<dyn StoredFile>) -> io::Result<SequentialReader> {
        let end = file.len()?;
        Ok(SequentialReader { file, pos: 0, end })
    }

    /// The length being read to.
    pub fn end(&self) -> u64 {
        self.end
    }
}

impl io::Read for SequentialReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (self.end - self.pos).min(buf.len() as u64) as usize;
        if n == 0 {
            return Ok(0);
        }
        self.file.read_exact_at(&mut buf[..n], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// The role of a file in a tenant's log, from its name (see [`crate::layout::TenantDir`]):
/// which fault points its operations are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Segment,
    Leaves,
    Checkpoints,
    Other,
}

impl Role {
    fn of(path: &Path) -> Role {
        match path.file_name().and_then(|n| n.to_str()) {
            Some("leaves") => Role::Leaves,
            Some("checkpoints") => Role::Checkpoints,
            Some(n) if n.ends_with(".seg") => Role::Segment,
            _ => Role::Other,
        }
    }

    fn write_point(self) -> Option<FaultPoint> {
        match self {
            Role::Segment => Some(FaultPoint::RecordWrite),
            Role::Leaves => Some(FaultPoint::LeafWrite),
            Role::Checkpoints => Some(FaultPoint::CheckpointWrite),
            Role::Other => None,
        }
    }

    fn sync_point(self) -> Option<FaultPoint> {
        match self {
            Role::Segment => Some(FaultPoint::RecordSync),
            Role::Leaves => Some(FaultPoint::LeafSync),
            Role::Checkpoints => Some(FaultPoint::CheckpointSync),
            Role::Other => None,
        }
    }
}

/// A driver that fails the way disks fail, for tests: wraps another driver and consults
/// [`Faults`] at every append (`RecordWrite`, `LeafWrite`, `CheckpointWrite`), sync
/// (`RecordSync`, `LeafSync`, `CheckpointSync`) and segment creation (`SegmentRoll`). A
/// [`Fault::Crash`] fails the operation and marks the handle crashed, which the sequencer
/// takes as the process dying there.
#[derive(Debug)]
pub struct FaultyStorage {
    inner: Arc<dyn Storage>,
    faults: Arc<Faults>,
}

impl FaultyStorage {
    /// `inner` with the faults armed in `faults`.
    pub fn new(inner: Arc<dyn Storage>, faults: Arc<Faults>) -> FaultyStorage {
        FaultyStorage { inner, faults }
    }
}

/// The I/O error a fault at `point` causes, or `None` to go on. For a short write, the
/// number of bytes to store before failing.
fn strike(faults: &Faults, point: Option<FaultPoint>) -> Result<(), (io::Error, Option<usize>)> {
    if faults.crashed() {
        return Err((crashed(), None));
    }
    let Some(point) = point else { return Ok(()) };
    match faults.strike(point) {
        None => Ok(()),
        Some(Fault::Error(code)) => Err((io::Error::from_raw_os_error(code), None)),
        Some(Fault::ShortWrite { bytes }) => Err((no_space(), Some(bytes))),
        Some(Fault::Crash) => Err((crashed(), None)),
    }
}

fn crashed() -> io::Error {
    io::Error::other("simulated crash: the process died here")
}

fn no_space() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOSPC)
}

#[derive(Debug)]
struct FaultyFile {
    inner: Arc<dyn StoredFile>,
    role: Role,
    faults: Arc<Faults>,
}

impl StoredFile for FaultyFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, offset)
    }

    fn append(&self, bytes: &[u8]) -> io::Result<()> {
        match strike(&self.faults, self.role.write_point()) {
            Ok(()) => self.inner.append(bytes),
            Err((e, Some(short))) => {
                let _ = self.inner.append(&bytes[..short.min(bytes.len())]);
                Err(e)
            }
            Err((e, None)) => Err(e),
        }
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        if self.faults.crashed() {
            return Err(crashed());
        }
        self.inner.truncate(len)
    }

    fn sync(&self) -> io::Result<()> {
        strike(&self.faults, self.role.sync_point()).map_err(|(e, _)| e)?;
        self.inner.sync()
    }
}

impl Storage for FaultyStorage {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StoredFile>> {
        if mode == OpenMode::CreateNew {
            strike(&self.faults, Some(FaultPoint::SegmentRoll)).map_err(|(e, _)| e)?;
        }
        Ok(Arc::new(FaultyFile {
            inner: self.inner.open(path, mode)?,
            role: Role::of(path),
            faults: self.faults.clone(),
        }))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list(dir)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.inner.exists(path)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.inner.sync_dir(dir)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.remove_dir_all(dir)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.inner.read(path)
    }

    fn replace(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        self.inner.replace(path, bytes)
    }

    fn lock_writer(&self, path: &Path) -> io::Result<Box<dyn WriterLock>> {
        self.inner.lock_writer(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_posix_file_appends_after_a_cut_and_reads_what_it_appended() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("leaves");
        let f = PosixStorage.open(&path, OpenMode::Append).unwrap();
        f.append(b"hello world").unwrap();
        f.truncate(5).unwrap();
        f.append(b"!").unwrap();
        f.sync().unwrap();
        assert_eq!(f.len().unwrap(), 6);
        let mut buf = [0u8; 6];
        f.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"hello!");
        let reader = PosixStorage.open(&path, OpenMode::Read).unwrap();
        let mut past = [0u8; 2];
        assert_eq!(
            reader.read_exact_at(&mut past, 5).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        assert!(reader.append(b"x").is_err(), "a reader cannot write");
        assert_eq!(
            PosixStorage
                .open(&path, OpenMode::CreateNew)
                .unwrap_err()
                .kind(),
            io::ErrorKind::AlreadyExists
        );
    }

    #[test]
    fn replace_is_whole_and_listing_a_missing_directory_is_empty() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("tree-state");
        PosixStorage.replace(&path, b"one").unwrap();
        PosixStorage.replace(&path, b"two").unwrap();
        assert_eq!(PosixStorage.read(&path).unwrap(), b"two");
        assert_eq!(
            PosixStorage.list(tmp.path()).unwrap(),
            vec!["tree-state".to_string()]
        );
        assert!(PosixStorage
            .list(&tmp.path().join("none"))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn the_writer_lock_is_held_until_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("LOCK");
        let held = PosixStorage.lock_writer(&path).unwrap();
        assert_eq!(
            PosixStorage.lock_writer(&path).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        drop(held);
        PosixStorage.lock_writer(&path).unwrap();
    }

    #[test]
    fn the_faulty_driver_strikes_by_role_and_a_short_write_leaves_a_prefix() {
        let tmp = tempfile::tempdir().unwrap();
        let faults = Faults::new();
        let storage = FaultyStorage::new(PosixStorage::shared(), faults.clone());
        let seg = storage
            .open(
                &tmp.path().join("00000000000000000000.seg"),
                OpenMode::Append,
            )
            .unwrap();
        let leaves = storage
            .open(&tmp.path().join("leaves"), OpenMode::Append)
            .unwrap();
        faults.arm(FaultPoint::RecordWrite, Fault::ShortWrite { bytes: 3 }, 1);
        leaves.append(b"entry").unwrap(); // another role: untouched
        let err = seg.append(b"record").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(seg.len().unwrap(), 3, "the prefix a full disk took");
        seg.append(b"record").unwrap(); // struck once only
        faults.arm(FaultPoint::LeafSync, Fault::Error(libc::EIO), 1);
        assert_eq!(leaves.sync().unwrap_err().raw_os_error(), Some(libc::EIO));
        seg.sync().unwrap();
        faults.arm(FaultPoint::SegmentRoll, Fault::Error(libc::ENOSPC), 1);
        assert!(storage
            .open(
                &tmp.path().join("00000000000000000100.seg"),
                OpenMode::CreateNew
            )
            .is_err());
        faults.arm(FaultPoint::RecordWrite, Fault::Crash, 1);
        assert!(seg.append(b"x").is_err());
        assert!(faults.crashed());
        assert!(leaves.append(b"y").is_err(), "nothing runs after a crash");
    }
}
