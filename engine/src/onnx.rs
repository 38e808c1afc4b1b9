//! The ONNX Runtime, loaded once per process from a shared library.
//!
//! hark never downloads ONNX Runtime: `ort` is built with `load-dynamic`, and
//! the library comes from the `onnxruntime` pip wheel through
//! `models/fetch.py` (or from a path the operator gives). ONNX Runtime can be
//! initialised only once per process, so the environment lives in a
//! `OnceLock`: the first caller's library path wins, and later callers get
//! the same environment (or the same error).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;

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
