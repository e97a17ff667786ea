//! Running a helper command that holds a secret (a signing key, a key-encryption key) so that
//! an HSM or a KMS can be wired in: bounded in time and output, killed with everything it
//! started.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use wait_timeout::ChildExt;

/// The most standard error kept for an error report.
const MAX_STDERR: u64 = 4096;
/// How much of the command's standard error or output an error message quotes.
const QUOTE_CHARS: usize = 300;

/// Runs `command` with `/bin/sh -c` in a process group of its own, writes `input` on its
/// standard input, and returns what it printed on standard output (at most `max_output`
/// bytes). The whole group is killed after `timeout`. An error says what went wrong, to be
/// prefixed with which command it was (it never quotes standard output: it may hold a key).
pub(crate) fn run(
    command: &str,
    input: &[u8],
    timeout: Duration,
    max_output: u64,
) -> Result<Vec<u8>, String> {
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A group of its own, so that a timeout also kills whatever the command started.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("could not be started: {e}"))?;
    let group = child.id() as libc::pid_t;
    let deadline = Instant::now() + timeout;
    // Output is read on threads of its own, so that a command which fills a pipe or
    // never closes one cannot hold this thread past the deadline.
    let stdout = read_pipe(child.stdout.take(), max_output);
    let stderr = read_pipe(child.stderr.take(), MAX_STDERR);
    if let Some(mut stdin) = child.stdin.take() {
        // The text is far smaller than a pipe buffer, so this never blocks; a command that
        // exits without reading it is judged by what it printed.
        let _ = stdin.write_all(input);
    }
    let status = match child.wait_timeout(timeout) {
        Ok(Some(status)) => status,
        Ok(None) => {
            kill_group(group);
            let _ = child.wait();
            return Err(format!(
                "did not finish within {} ms and was killed",
                timeout.as_millis()
            ));
        }
        Err(e) => {
            kill_group(group);
            let _ = child.wait();
            return Err(format!("could not be waited for: {e}"));
        }
    };
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(100));
    let out = match stdout.recv_timeout(left) {
        Ok(out) => out,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            kill_group(group);
            return Err(
                "exited but left a process holding its standard output open; it was killed".into(),
            );
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            return Err("could not be read: no thread to read its output".into())
        }
    };
    let err = match stderr.recv_timeout(Duration::from_millis(100)) {
        Ok(Ok(err)) => err.bytes,
        _ => {
            // Something it started still holds standard error open.
            kill_group(group);
            Vec::new()
        }
    };
    if !status.success() {
        let err = String::from_utf8_lossy(&err);
        let err = err.trim();
        return Err(if err.is_empty() {
            format!("failed ({status})")
        } else {
            format!("failed ({status}): {}", quote(err))
        });
    }
    let out = out.map_err(|e| format!("output could not be read: {e}"))?;
    if out.truncated {
        return Err(format!("printed more than {max_output} bytes"));
    }
    Ok(out.bytes)
}

#[derive(Debug, Default)]
struct PipeOutput {
    bytes: Vec<u8>,
    truncated: bool,
}

/// Reads up to `limit` bytes of a pipe on a thread, then discards the rest until end of file.
fn read_pipe(
    pipe: Option<impl Read + Send + 'static>,
    limit: u64,
) -> mpsc::Receiver<std::io::Result<PipeOutput>> {
    let (tx, rx) = mpsc::channel();
    let Some(mut pipe) = pipe else {
        let _ = tx.send(Ok(PipeOutput::default()));
        return rx;
    };
    // If no thread can be started, `tx` is dropped with the closure and the caller sees a
    // disconnected channel.
    let _ = std::thread::Builder::new()
        .name("tally-sign-io".into())
        .spawn(move || {
            let mut bytes = Vec::new();
            let result = (&mut pipe)
                .take(limit)
                .read_to_end(&mut bytes)
                .and_then(|_| {
                    // Draining keeps the command from blocking on a full pipe; only whether
                    // there was more matters.
                    let rest = std::io::copy(&mut pipe, &mut std::io::sink())?;
                    Ok(PipeOutput {
                        bytes,
                        truncated: rest > 0,
                    })
                });
            let _ = tx.send(result);
        });
    rx
}

#[allow(unsafe_code)]
fn kill_group(group: libc::pid_t) {
    // SAFETY: kill(2) only takes integers and touches no memory of this process. The group
    // is the command's own (`process_group(0)` made its leader's pid the group id), and it
    // still exists when this is called: either its leader is not yet reaped, or a member is
    // still holding one of our pipes open.
    unsafe {
        libc::kill(-group, libc::SIGKILL);
    }
}

pub(crate) fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTE_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}
