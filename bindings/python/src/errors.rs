//! convlm's errors as the package's exceptions (defined in `convlm/_errors.py`, where they
//! can subclass both `ConvlmError` and the builtin that fits): the message is the library's
//! own, as the command line prints it.

use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError};
use pyo3::prelude::*;

/// The exception class `name` of `convlm._errors`.
fn class<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    py.import("convlm._errors")?.getattr(name)
}

/// The exception for `e`.
pub fn to_py(e: convlm::Error) -> PyErr {
    use convlm::Error;
    let name = match &e {
        Error::Shape { .. } | Error::Config { .. } => "ConfigError",
        Error::Data(_) | Error::Tokenizer(_) => "DataError",
        Error::Io { path, .. } | Error::BadFile { path, .. } | Error::RunDir { path, .. } if !path.exists() => "MissingFileError",
        Error::Io { .. } | Error::BadFile { .. } | Error::RunDir { .. } => "FileError",
        Error::NonFinite { .. } | Error::Memory(_) | Error::Distributed(_) | Error::PeerFailed | Error::Device(_) => "TrainingError",
        Error::Interrupted { .. } | Error::Cancelled => return PyKeyboardInterrupt::new_err(e.to_string()),
    };
    let message = e.to_string();
    Python::attach(|py| match class(py, name).and_then(|c| c.call1((message.clone(),))) {
        Ok(exc) => PyErr::from_value(exc),
        Err(_) => PyRuntimeError::new_err(message),
    })
}

/// `Result<T, convlm::Error>` as a `PyResult`.
pub trait IntoPy<T> {
    fn py_err(self) -> PyResult<T>;
}

impl<T> IntoPy<T> for convlm::Result<T> {
    fn py_err(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}

/// A `ConfigError` naming `field` (for arguments the library never sees: a setting of a
/// Python type that has no JSON form…).
pub fn config_error(field: &str, message: impl Into<String>) -> PyErr {
    to_py(convlm::Error::config(field, message))
}
