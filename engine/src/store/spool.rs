//! The spool: an append-only file of events, one JSON object per line,
//! fsync'd before the writer lets go of them. While the database is away,
//! every event goes here (in order); when it returns, the spool is replayed
//! from a read offset in batches and emptied once all of it is written. A
//! daemon killed mid-outage finds the file at its next start.
//!
//! Only whole lines count: a line torn by a crash mid-append is cut off at
//! open (it was never fsync'd, so its batch was never acknowledged).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{StoreError, StoreEvent};

/// The spool file and how far replay has read it.
#[derive(Debug)]
pub(crate) struct Spool {
    path: PathBuf,
    file: File,
    /// Bytes of the file replayed (written to the database) so far.
    read: u64,
    /// Bytes of whole lines in the file.
    len: u64,
    /// Lines not yet replayed.
    pending: u64,
}

impl Spool {
    /// Opens (creating) the spool, cutting a torn last line.
    pub(crate) fn open(path: &Path) -> Result<Spool, StoreError> {
        let err = |source| StoreError::Spool {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(err)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(err)?;
        let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if whole < bytes.len() {
            tracing::warn!(
                spool = %path.display(),
                bytes = bytes.len() - whole,
                "cutting a torn last line from the spool"
            );
            file.set_len(whole as u64).map_err(err)?;
            file.sync_all().map_err(err)?;
        }
        let pending = bytes[..whole].iter().filter(|&&b| b == b'\n').count() as u64;
        Ok(Spool {
            path: path.to_path_buf(),
            file,
            read: 0,
            len: whole as u64,
            pending,
        })
    }

    fn err(&self, source: std::io::Error) -> StoreError {
        StoreError::Spool {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// Events waiting to be replayed.
    pub(crate) fn pending(&self) -> u64 {
        self.pending
    }

    /// Appends `events` and fsyncs: when this returns `Ok`, they survive a crash.
    pub(crate) fn append(&mut self, events: &[StoreEvent]) -> Result<(), StoreError> {
        let mut buf = Vec::with_capacity(events.len() * 256);
        for e in events {
            // Serializing our own plain structs cannot fail.
            serde_json::to_writer(&mut buf, e).map_err(|e| self.err(e.into()))?;
            buf.push(b'\n');
        }
        self.file.write_all(&buf).map_err(|e| self.err(e))?;
        self.file.sync_data().map_err(|e| self.err(e))?;
        self.len += buf.len() as u64;
        self.pending += events.len() as u64;
        Ok(())
    }

    /// Up to `max` events from the replay offset, and the offset after them.
    /// A line that does not parse (a file edited by hand, an older format)
    /// is returned as an error string so the caller can set it aside.
    pub(crate) fn peek(
        &mut self,
        max: usize,
    ) -> Result<(Vec<Result<StoreEvent, String>>, u64), StoreError> {
        self.file
            .seek(SeekFrom::Start(self.read))
            .map_err(|e| self.err(e))?;
        let mut reader = BufReader::new(&self.file);
        let mut out = Vec::new();
        let mut offset = self.read;
        let mut line = String::new();
        while out.len() < max && offset < self.len {
            line.clear();
            let n = reader.read_line(&mut line).map_err(|e| self.err(e))?;
            if n == 0 {
                break;
            }
            offset += n as u64;
            out.push(
                serde_json::from_str(line.trim_end()).map_err(|_| line.trim_end().to_string()),
            );
        }
        Ok((out, offset))
    }

    /// Marks everything before `offset` as written; empties the file once
    /// all of it is.
    pub(crate) fn advance(&mut self, offset: u64, events: u64) -> Result<(), StoreError> {
        self.read = offset.min(self.len);
        self.pending = self.pending.saturating_sub(events);
        if self.read >= self.len {
            self.file.set_len(0).map_err(|e| self.err(e))?;
            self.file.sync_all().map_err(|e| self.err(e))?;
            self.read = 0;
            self.len = 0;
            self.pending = 0;
        }
        Ok(())
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Segment, StoreEvent};

    fn seg(seq: i64) -> StoreEvent {
        StoreEvent::Segment(Segment {
            call_id: "c".into(),
            seq,
            speaker: "caller".into(),
            text: format!("line {seq}"),
            start_ms: 0,
            end_ms: 1,
            confidence: None,
            interrupted: false,
        })
    }

    #[test]
    fn appends_replays_in_order_and_empties() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.spool");
        let mut s = Spool::open(&path).unwrap();
        s.append(&[seg(0), seg(1), seg(2)]).unwrap();
        assert_eq!(s.pending(), 3);
        let (got, off) = s.peek(2).unwrap();
        assert_eq!(got, vec![Ok(seg(0)), Ok(seg(1))]);
        s.advance(off, 2).unwrap();
        s.append(&[seg(3)]).unwrap();
        let (got, off) = s.peek(10).unwrap();
        assert_eq!(got, vec![Ok(seg(2)), Ok(seg(3))]);
        s.advance(off, 2).unwrap();
        assert_eq!(s.pending(), 0);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }

    #[test]
    fn survives_reopen_and_cuts_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.spool");
        {
            let mut s = Spool::open(&path).unwrap();
            s.append(&[seg(0), seg(1)]).unwrap();
        }
        // A crash in the middle of the next append.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"kind\":\"segm").unwrap();
        drop(f);
        let mut s = Spool::open(&path).unwrap();
        assert_eq!(s.pending(), 2);
        let (got, _) = s.peek(10).unwrap();
        assert_eq!(got, vec![Ok(seg(0)), Ok(seg(1))]);
    }

    #[test]
    fn a_bad_line_is_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.spool");
        std::fs::write(&path, "not json\n").unwrap();
        let mut s = Spool::open(&path).unwrap();
        s.append(&[seg(5)]).unwrap();
        let (got, _) = s.peek(10).unwrap();
        assert_eq!(got, vec![Err("not json".to_string()), Ok(seg(5))]);
    }
}
