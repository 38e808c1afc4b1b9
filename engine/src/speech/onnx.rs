//! The ONNX Runtime, loaded once per process from a shared library.
//!
//! hark never downloads ONNX Runtime: `ort` is built with `load-dynamic`, and
//! the library comes from the `onnxruntime` pip wheel through
//! `models/fetch.py` (or from a path the operator gives). ONNX Runtime can be
//! initialised only once per process, so the environment lives in a
//! `OnceLock`: the first caller's library path wins, and later callers get
//! the same environment (or the same error).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, TryLockError};

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;

/// Why ONNX Runtime is not available.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum OnnxError {
    /// The shared library could not be loaded.
    #[error(
        "cannot load ONNX Runtime from {path}: {reason} (run models/fetch.py, or set speech.onnxruntime in hark.toml or ORT_DYLIB_PATH)"
    )]
    Load {
        /// The library path tried.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A model could not be opened as a session.
    #[error("cannot load the ONNX model {path}: {reason}")]
    Model {
        /// The model file.
        path: PathBuf,
        /// ONNX Runtime's message.
        reason: String,
    },
}

static RUNTIME: OnceLock<Result<Environment, OnnxError>> = OnceLock::new();

/// The process's ONNX Runtime environment, loading `library` the first time.
pub fn environment(library: &Path) -> Result<Environment, OnnxError> {
    RUNTIME
        .get_or_init(|| {
            if !library.exists() {
                return Err(OnnxError::Load {
                    path: library.to_path_buf(),
                    reason: "no such file".into(),
                });
            }
            let load = |reason: String| OnnxError::Load {
                path: library.to_path_buf(),
                reason,
            };
            ort::init_from(library)
                .map_err(|e| load(e.to_string()))?
                .with_name("hark")
                .build()
                .map_err(|e| load(e.to_string()))
        })
        .clone()
}

/// Loads `model` `sessions` times (at least once), each with `threads`
/// intra-op threads: for a pool, or for inference threads that own one each.
pub(crate) fn load_sessions(
    library: &Path,
    model: &Path,
    sessions: usize,
    threads: usize,
) -> Result<Vec<Session>, OnnxError> {
    let env = environment(library)?;
    let fail = |reason: String| OnnxError::Model {
        path: model.to_path_buf(),
        reason,
    };
    if !model.exists() {
        return Err(fail("no such file (run models/fetch.py)".into()));
    }
    let mut out = Vec::with_capacity(sessions.max(1));
    for _ in 0..sessions.max(1) {
        let session = Session::builder(&env)
            .map_err(|e| fail(e.to_string()))?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(|e| fail(e.to_string()))?
            .with_intra_threads(threads.max(1))
            .map_err(|e| fail(e.to_string()))?
            .with_inter_threads(1)
            .map_err(|e| fail(e.to_string()))?
            .commit_from_file(model)
            .map_err(|e| fail(e.to_string()))?;
        out.push(session);
    }
    Ok(out)
}

/// A model loaded as a few ONNX Runtime sessions shared by all calls.
///
/// `Session::run` needs exclusive access, so each session has its own
/// mutex, held for one inference only. A caller takes the first free
/// session (round robin start), and waits only when all are busy.
pub(crate) struct SessionPool {
    path: PathBuf,
    sessions: Vec<Mutex<Session>>,
    next: AtomicUsize,
    /// Times a caller found every session busy and waited for a lock.
    waits: AtomicU64,
}

impl std::fmt::Debug for SessionPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionPool")
            .field("path", &self.path)
            .field("sessions", &self.sessions.len())
            .finish()
    }
}

impl SessionPool {
    /// Loads `model` `sessions` times, each with `threads` intra-op threads.
    pub(crate) fn load(
        library: &Path,
        model: &Path,
        sessions: usize,
        threads: usize,
    ) -> Result<Self, OnnxError> {
        let pool = load_sessions(library, model, sessions, threads)?
            .into_iter()
            .map(Mutex::new)
            .collect();
        Ok(Self {
            path: model.to_path_buf(),
            sessions: pool,
            next: AtomicUsize::new(0),
            waits: AtomicU64::new(0),
        })
    }

    /// Times a caller waited for a session's lock (all were busy).
    pub(crate) fn waits(&self) -> u64 {
        self.waits.load(Ordering::Relaxed)
    }

    /// Runs `f` on a free session (waiting for one if all are busy).
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Session) -> R) -> R {
        let n = self.sessions.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            match self.sessions[(start + i) % n].try_lock() {
                Ok(mut s) => return f(&mut s),
                Err(TryLockError::WouldBlock) => continue,
                // A panic mid-inference leaves the session usable.
                Err(TryLockError::Poisoned(p)) => return f(&mut p.into_inner()),
            }
        }
        self.waits.fetch_add(1, Ordering::Relaxed);
        let mut s = self.sessions[start % n]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        f(&mut s)
    }
}
