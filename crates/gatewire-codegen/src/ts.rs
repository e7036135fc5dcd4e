//! The generator for ts.

use std::path::{Path, PathBuf};

use crate::Error;
use crate::ir::Schema;

/// Writes the ts code for `ir` into `out`.
pub fn generate(
    _flatc: &Path,
    _ir: &Schema,
    _schema: &Path,
    _includes: &[PathBuf],
    _out: &Path,
) -> Result<Vec<PathBuf>, Error> {
    Err(Error::Schema("not available yet".into()))
}
