//! Fault injection for tests: make the log's own write path fail the way disks fail.
//!
//! A [`Faults`] handle given in [`crate::LogConfig::faults`] wraps the storage driver in a
//! [`crate::FaultyStorage`], which consults it at every append, sync and segment creation,
//! and the sequencer consults it at the crash points between those; a fault armed at a point
//! strikes the next operations there. Without a handle (production) nothing is consulted.
//!
//! The points are the crash points the sequencer's comments name, so a test can show for
//! each of them that no acknowledged event is lost and that recovery and `tally verify`
//! pass afterwards.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

/// A place on the log's write path where a fault can strike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultPoint {
    /// Writing a group's record frames to the current segment.
    RecordWrite,
    /// Writing a group's leaf entries.
    LeafWrite,
    /// After a group is written (page cache), before its fsync.
    BeforeSync,
    /// The fsync of the segments a group wrote.
    RecordSync,
    /// After the fsync, before the group is published to readers.
    BeforePublish,
    /// After publishing, before the group's requests are acknowledged.
    BeforeAcknowledge,
    /// Starting a new segment (creating its file).
    SegmentRoll,
    /// The fsync of the leaf entries a checkpoint is about to cover.
    LeafSync,
    /// Appending a signed checkpoint to the checkpoints file.
    CheckpointWrite,
    /// The fsync of the checkpoints file.
    CheckpointSync,
}

/// What happens at a fault point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The operation fails with this OS error (`libc::EIO`, `libc::ENOSPC`, …) and writes
    /// nothing.
    Error(i32),
    /// A write stores only its first `bytes` bytes, then fails with `ENOSPC` (what a disk
    /// that fills up mid-write does). At a sync point this is the same as `Error(ENOSPC)`.
    ShortWrite {
        /// Bytes written before the failure.
        bytes: usize,
    },
    /// The process dies here: the sequencer stops at once without answering, syncing or
    /// signing anything more, as after `kill -9` (what is in the page cache stays, as it
    /// would on a real machine that keeps running). [`crate::Log::shutdown`] then only
    /// releases the directory, so a test can reopen it and run recovery.
    Crash,
}

#[derive(Debug)]
struct Armed {
    point: FaultPoint,
    fault: Fault,
    /// Operations at the point to let pass first.
    skip: usize,
    remaining: usize,
}

/// Faults armed for a log under test. Cheap to share; arm and clear them at any time.
#[derive(Debug, Default)]
pub struct Faults {
    armed: Mutex<Vec<Armed>>,
    crashed: AtomicBool,
}

impl Faults {
    /// A handle with nothing armed.
    pub fn new() -> Arc<Faults> {
        Arc::new(Faults::default())
    }

    /// Makes the next `times` operations at `point` suffer `fault`.
    pub fn arm(&self, point: FaultPoint, fault: Fault, times: usize) {
        self.arm_after(point, 0, fault, times);
    }

    /// Lets the next `skip` operations at `point` pass, then makes the `times` after them
    /// suffer `fault` (e.g. the second tenant's write in one group).
    pub fn arm_after(&self, point: FaultPoint, skip: usize, fault: Fault, times: usize) {
        self.armed.lock().push(Armed {
            point,
            fault,
            skip,
            remaining: times,
        });
    }

    /// Disarms every fault (the disk works again). A crash cannot be undone: reopen the log.
    pub fn clear(&self) {
        self.armed.lock().clear();
    }

    /// Whether a [`Fault::Crash`] has struck.
    pub fn crashed(&self) -> bool {
        self.crashed.load(Ordering::Acquire)
    }

    /// The fault striking the operation at `point` now, if one is armed.
    pub(crate) fn strike(&self, point: FaultPoint) -> Option<Fault> {
        let mut armed = self.armed.lock();
        let at = armed
            .iter()
            .position(|a| a.point == point && a.remaining > 0)?;
        if armed[at].skip > 0 {
            armed[at].skip -= 1;
            return None;
        }
        armed[at].remaining -= 1;
        let fault = armed[at].fault;
        if armed[at].remaining == 0 {
            armed.remove(at);
        }
        if fault == Fault::Crash {
            self.crashed.store(true, Ordering::Release);
        }
        Some(fault)
    }
}

/// Whether the simulated process dies at `point`, one of the crash points between I/O
/// operations (`BeforeSync`, `BeforePublish`, `BeforeAcknowledge`): a crash armed there
/// strikes, or one struck earlier. Only [`Fault::Crash`] means anything at these points.
pub(crate) fn crashes_at(faults: Option<&Faults>, point: FaultPoint) -> bool {
    let Some(faults) = faults else {
        return false;
    };
    faults.crashed() || faults.strike(point) == Some(Fault::Crash)
}
