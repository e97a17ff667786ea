//! A tantivy [`Directory`] that keeps every file of a tenant's index encrypted at rest, for a
//! server whose records are (the index holds their terms and would otherwise be the one place
//! event content stays in the clear).
//!
//! Each file is sealed in chunks, so that a read of a few bytes (a posting list, a term
//! block) decrypts only the chunks it touches:
//!
//! ```text
//! file     "\0TIX" ‖ key id: u32 LE ‖ nonce prefix[16] ‖ chunk* ‖ last chunk
//! chunk    XChaCha20-Poly1305(data key, prefix ‖ i: u64 LE, 16 KiB of the file,
//!                             aad = "tally index v1" ‖ len(tenant): u8 ‖ tenant ‖ file name
//!                                   ‖ i: u64 LE ‖ last: u8)
//! ```
//!
//! The last chunk (0 to 16 KiB, flagged in its associated data) ends the file, so a file cut
//! short or extended is refused, as is a chunk moved within a file or between files or
//! tenants. The plaintext length follows from the file length. Keys are the tenant's data keys
//! ([`IndexCipher`]); a file names the key it was sealed under, so keys rotate without
//! rewriting the index (merges rewrite it under the current key as they go).

use std::fmt;
use std::io::{self, BufWriter, Write};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use tantivy::directory::error::{DeleteError, LockError, OpenReadError, OpenWriteError};
use tantivy::directory::{
    AntiCallToken, Directory, DirectoryLock, FileHandle, Lock, OwnedBytes, TerminatingWrite,
    WatchCallback, WatchHandle, WritePtr,
};
use tantivy::HasLen;

/// The data keys an encrypted index is sealed under, per tenant (the server's encryption at
/// rest provides them).
pub trait IndexCipher: Send + Sync + fmt::Debug {
    /// The key new files of `tenant` are sealed under, and its id.
    fn current(&self, tenant: &str) -> io::Result<(u32, XChaCha20Poly1305)>;
    /// The key `id` of `tenant`.
    fn key(&self, tenant: &str, id: u32) -> io::Result<XChaCha20Poly1305>;
}

const MAGIC: &[u8; 4] = b"\0TIX";
const HEADER: usize = 4 + 4 + 16;
const CHUNK: usize = 16 << 10;
const TAG: usize = 16;

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// What binds a chunk to its file: everything but the chunk's number and last flag.
fn aad_base(tenant: &str, path: &Path) -> Vec<u8> {
    let name = path.to_string_lossy();
    let mut aad = b"tally index v1".to_vec();
    aad.push(tenant.len() as u8);
    aad.extend_from_slice(tenant.as_bytes());
    aad.extend_from_slice(name.as_bytes());
    aad
}

fn chunk_aad(base: &[u8], i: u64, last: bool) -> Vec<u8> {
    let mut aad = Vec::with_capacity(base.len() + 9);
    aad.extend_from_slice(base);
    aad.extend_from_slice(&i.to_le_bytes());
    aad.push(u8::from(last));
    aad
}

fn nonce(prefix: &[u8; 16], i: u64) -> XNonce {
    let mut n = [0u8; 24];
    n[..16].copy_from_slice(prefix);
    n[16..].copy_from_slice(&i.to_le_bytes());
    n.into()
}

/// Seals `plain` whole (what `atomic_write` stores).
fn seal_all(
    key: &XChaCha20Poly1305,
    key_id: u32,
    base: &[u8],
    plain: &[u8],
) -> io::Result<Vec<u8>> {
    let mut w = ChunkSealer::new(key.clone(), key_id, base.to_vec(), Vec::new())?;
    w.write_all(plain)?;
    w.finish()
}

/// Encrypts a stream chunk by chunk into `out`.
struct ChunkSealer<W: Write> {
    key: XChaCha20Poly1305,
    prefix: [u8; 16],
    base: Vec<u8>,
    buf: Vec<u8>,
    next: u64,
    out: W,
}

impl<W: Write> ChunkSealer<W> {
    fn new(key: XChaCha20Poly1305, key_id: u32, base: Vec<u8>, mut out: W) -> io::Result<Self> {
        let mut prefix = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut prefix);
        out.write_all(MAGIC)?;
        out.write_all(&key_id.to_le_bytes())?;
        out.write_all(&prefix)?;
        Ok(ChunkSealer {
            key,
            prefix,
            base,
            buf: Vec::with_capacity(CHUNK),
            next: 0,
            out,
        })
    }

    fn seal_chunk(&mut self, last: bool) -> io::Result<()> {
        let aad = chunk_aad(&self.base, self.next, last);
        let sealed = self
            .key
            .encrypt(
                &nonce(&self.prefix, self.next),
                Payload {
                    msg: &self.buf,
                    aad: &aad,
                },
            )
            .map_err(|_| invalid("encrypting an index chunk failed".into()))?;
        self.out.write_all(&sealed)?;
        self.buf.clear();
        self.next += 1;
        Ok(())
    }

    /// Seals the last chunk and returns the output.
    fn finish(mut self) -> io::Result<W> {
        self.seal_chunk(true)?;
        Ok(self.out)
    }
}

impl<W: Write> Write for ChunkSealer<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.seal_chunk(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Only whole chunks are written before the end; tantivy flushes before terminating.
        Ok(())
    }
}

/// The writer `open_write` hands tantivy.
struct EncryptedWrite {
    sealer: Option<ChunkSealer<WritePtr>>,
}

impl Write for EncryptedWrite {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match &mut self.sealer {
            Some(s) => s.write(data),
            None => Err(io::Error::other("write after terminate")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TerminatingWrite for EncryptedWrite {
    fn terminate_ref(&mut self, _: AntiCallToken) -> io::Result<()> {
        let sealer = self
            .sealer
            .take()
            .ok_or_else(|| io::Error::other("terminated twice"))?;
        sealer.finish()?.terminate()
    }
}

/// Layout of a sealed file of `len` bytes: (chunks, plaintext length).
fn layout(len: usize) -> io::Result<(usize, usize)> {
    let body = len
        .checked_sub(HEADER)
        .filter(|b| *b >= TAG)
        .ok_or_else(|| {
            invalid(format!(
                "an encrypted index file of {len} bytes is too short"
            ))
        })?;
    let chunks = body.div_ceil(CHUNK + TAG);
    Ok((chunks, body - chunks * TAG))
}

/// A sealed file, read chunk by chunk.
struct EncryptedFile {
    inner: Arc<dyn FileHandle>,
    key: XChaCha20Poly1305,
    prefix: [u8; 16],
    base: Vec<u8>,
    chunks: usize,
    len: usize,
}

impl fmt::Debug for EncryptedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptedFile")
            .field("len", &self.len)
            .finish()
    }
}

impl HasLen for EncryptedFile {
    fn len(&self) -> usize {
        self.len
    }
}

impl FileHandle for EncryptedFile {
    fn read_bytes(&self, range: Range<usize>) -> io::Result<OwnedBytes> {
        if range.start >= range.end {
            return Ok(OwnedBytes::empty());
        }
        if range.end > self.len {
            return Err(invalid(format!(
                "read of {range:?} beyond an index file of {} bytes",
                self.len
            )));
        }
        let (first, last) = (range.start / CHUNK, (range.end - 1) / CHUNK);
        let from = HEADER + first * (CHUNK + TAG);
        let to = (HEADER + (last + 1) * (CHUNK + TAG)).min(self.inner.len());
        let sealed = self.inner.read_bytes(from..to)?;
        let mut plain = Vec::with_capacity((last - first + 1) * CHUNK);
        for (k, chunk) in sealed.as_slice().chunks(CHUNK + TAG).enumerate() {
            let i = first + k;
            let aad = chunk_aad(&self.base, i as u64, i + 1 == self.chunks);
            let opened = self
                .key
                .decrypt(
                    &nonce(&self.prefix, i as u64),
                    Payload {
                        msg: chunk,
                        aad: &aad,
                    },
                )
                .map_err(|_| {
                    invalid(format!(
                        "chunk {i} of an encrypted index file does not decrypt: the file was \
                         changed; delete the index to rebuild it from the log"
                    ))
                })?;
            plain.extend_from_slice(&opened);
        }
        let offset = first * CHUNK;
        Ok(OwnedBytes::new(plain).slice(range.start - offset..range.end - offset))
    }
}

/// A directory whose files are sealed under a tenant's data keys (see the module docs).
#[derive(Clone)]
pub struct EncryptedDirectory {
    inner: Box<dyn Directory>,
    cipher: Arc<dyn IndexCipher>,
    tenant: String,
}

impl fmt::Debug for EncryptedDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptedDirectory")
            .field("inner", &self.inner)
            .field("tenant", &self.tenant)
            .finish()
    }
}

impl EncryptedDirectory {
    /// `inner`'s files, sealed under `tenant`'s keys from `cipher`.
    pub fn new(inner: Box<dyn Directory>, cipher: Arc<dyn IndexCipher>, tenant: &str) -> Self {
        EncryptedDirectory {
            inner,
            cipher,
            tenant: tenant.to_owned(),
        }
    }

    fn header(&self, bytes: &[u8], path: &Path) -> io::Result<(XChaCha20Poly1305, [u8; 16])> {
        if bytes.len() < HEADER || &bytes[..4] != MAGIC {
            return Err(invalid(format!(
                "{} is not an encrypted index file; delete the index to rebuild it from the log",
                path.display()
            )));
        }
        let key_id = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
        let key = self.cipher.key(&self.tenant, key_id)?;
        Ok((key, bytes[8..HEADER].try_into().expect("16 bytes")))
    }

    fn open_sealed(&self, path: &Path, sealed: &[u8]) -> io::Result<Vec<u8>> {
        let (key, prefix) = self.header(sealed, path)?;
        let (chunks, _) = layout(sealed.len())?;
        let base = aad_base(&self.tenant, path);
        let mut plain = Vec::new();
        for (i, chunk) in sealed[HEADER..].chunks(CHUNK + TAG).enumerate() {
            let aad = chunk_aad(&base, i as u64, i + 1 == chunks);
            plain.extend(
                key.decrypt(
                    &nonce(&prefix, i as u64),
                    Payload {
                        msg: chunk,
                        aad: &aad,
                    },
                )
                .map_err(|_| {
                    invalid(format!(
                        "{} does not decrypt: it was changed; delete the index to rebuild it",
                        path.display()
                    ))
                })?,
            );
        }
        Ok(plain)
    }
}

impl Directory for EncryptedDirectory {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        let inner = self.inner.get_file_handle(path)?;
        let wrap = |e: io::Error| OpenReadError::wrap_io_error(e, path.to_path_buf());
        let head = inner.read_bytes(0..HEADER.min(inner.len())).map_err(wrap)?;
        let (key, prefix) = self.header(head.as_slice(), path).map_err(wrap)?;
        let (chunks, len) = layout(inner.len()).map_err(wrap)?;
        Ok(Arc::new(EncryptedFile {
            inner,
            key,
            prefix,
            base: aad_base(&self.tenant, path),
            chunks,
            len,
        }))
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        self.inner.delete(path)
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        self.inner.exists(path)
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        let wrap = |e: io::Error| OpenWriteError::wrap_io_error(e, path.to_path_buf());
        let (key_id, key) = self.cipher.current(&self.tenant).map_err(wrap)?;
        let inner = self.inner.open_write(path)?;
        let sealer =
            ChunkSealer::new(key, key_id, aad_base(&self.tenant, path), inner).map_err(wrap)?;
        Ok(BufWriter::with_capacity(
            CHUNK,
            Box::new(EncryptedWrite {
                sealer: Some(sealer),
            }),
        ))
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        let sealed = self.inner.atomic_read(path)?;
        self.open_sealed(path, &sealed)
            .map_err(|e| OpenReadError::wrap_io_error(e, path.to_path_buf()))
    }

    fn atomic_write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let (key_id, key) = self.cipher.current(&self.tenant)?;
        let sealed = seal_all(&key, key_id, &aad_base(&self.tenant, path), data)?;
        self.inner.atomic_write(path, &sealed)
    }

    fn sync_directory(&self) -> io::Result<()> {
        self.inner.sync_directory()
    }

    fn acquire_lock(&self, lock: &Lock) -> Result<DirectoryLock, LockError> {
        self.inner.acquire_lock(lock)
    }

    fn watch(&self, watch_callback: WatchCallback) -> tantivy::Result<WatchHandle> {
        self.inner.watch(watch_callback)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chacha20poly1305::KeyInit;
    use tantivy::directory::RamDirectory;

    #[derive(Debug)]
    struct Keys;

    impl IndexCipher for Keys {
        fn current(&self, tenant: &str) -> io::Result<(u32, XChaCha20Poly1305)> {
            Ok((2, self.key(tenant, 2)?))
        }
        fn key(&self, _tenant: &str, id: u32) -> io::Result<XChaCha20Poly1305> {
            Ok(XChaCha20Poly1305::new(&[id as u8; 32].into()))
        }
    }

    fn dir() -> (RamDirectory, EncryptedDirectory) {
        let ram = RamDirectory::create();
        let enc = EncryptedDirectory::new(Box::new(ram.clone()), Arc::new(Keys), "acme");
        (ram, enc)
    }

    fn write(dir: &EncryptedDirectory, path: &str, data: &[u8]) {
        let mut w = dir.open_write(Path::new(path)).unwrap();
        // Odd-sized writes, so chunks fill across calls.
        for piece in data.chunks(7001) {
            w.write_all(piece).unwrap();
        }
        w.flush().unwrap();
        w.into_inner().ok().unwrap().terminate().unwrap();
    }

    #[test]
    fn files_of_every_size_read_back_in_any_range_and_hold_no_plaintext() {
        let (ram, enc) = dir();
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let name = format!("f{len}");
            write(&enc, &name, &data);
            let stored = ram.atomic_read(Path::new(&name)).unwrap();
            assert_eq!(layout(stored.len()).unwrap().1, len);
            if len >= 64 {
                assert!(!stored.windows(32).any(|w| w == &data[..32]));
            }
            let handle = enc.get_file_handle(Path::new(&name)).unwrap();
            assert_eq!(handle.len(), len);
            assert_eq!(handle.read_bytes(0..len).unwrap().as_slice(), &data[..]);
            for (a, b) in [(0, 1), (CHUNK - 3, CHUNK + 3), (len / 2, len)] {
                if a < b && b <= len {
                    assert_eq!(handle.read_bytes(a..b).unwrap().as_slice(), &data[a..b]);
                }
            }
        }
        enc.atomic_write(Path::new("meta.json"), b"{\"a\":1}")
            .unwrap();
        assert_eq!(
            enc.atomic_read(Path::new("meta.json")).unwrap(),
            b"{\"a\":1}"
        );
        assert!(!ram
            .atomic_read(Path::new("meta.json"))
            .unwrap()
            .windows(5)
            .any(|w| w == b"\"a\":1"));
    }

    #[test]
    fn changed_cut_extended_or_moved_files_are_refused() {
        let (ram, enc) = dir();
        let data = vec![7u8; 2 * CHUNK + 5];
        write(&enc, "a", &data);
        let stored = ram.atomic_read(Path::new("a")).unwrap();
        let check = |bytes: Vec<u8>, name: &str| {
            ram.atomic_write(Path::new(name), &bytes).unwrap();
            enc.get_file_handle(Path::new(name))
                .and_then(|h| {
                    h.read_bytes(0..h.len())
                        .map_err(|e| OpenReadError::wrap_io_error(e, name.into()))
                })
                .is_err()
        };
        let mut flipped = stored.clone();
        flipped[HEADER + 100] ^= 1;
        assert!(check(flipped, "a"));
        // The last chunk dropped: the chunk before is not flagged last.
        assert!(check(stored[..HEADER + 2 * (CHUNK + TAG)].to_vec(), "a"));
        // Copied under another name.
        assert!(check(stored.clone(), "d"));
        // The same bytes under their own name are fine.
        assert!(!check(stored, "a"));
        // Another tenant's directory cannot read them.
        let other = EncryptedDirectory::new(Box::new(ram.clone()), Arc::new(Keys), "beta");
        assert!(other.atomic_read(Path::new("a")).is_err());
    }
}
