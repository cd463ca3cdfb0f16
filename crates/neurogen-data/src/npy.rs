//! NumPy `.npy` (format 1.0) writing for float32 arrays.
//!
//! Only what `neurogen sample` and `neurogen data` emit: little-endian `<f4`, C order. The file
//! is written beside its final name and renamed into place, so a crash never leaves a
//! half-written file that looks complete.

use std::io::Write;
use std::path::Path;

use crate::DataError;

/// The header bytes (magic, version, length, dict padded to a multiple of 64).
pub fn header(shape: &[usize]) -> Vec<u8> {
    let dims = match shape {
        [one] => format!("{one},"),
        _ => shape
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(", "),
    };
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({dims}), }}");
    // magic(6) + version(2) + header_len(2) + dict + '\n', padded with spaces to 64.
    let unpadded = 10 + dict.len() + 1;
    let pad = (64 - unpadded % 64) % 64;
    let mut out = Vec::with_capacity(unpadded + pad);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&((dict.len() + pad + 1) as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend(std::iter::repeat_n(b' ', pad));
    out.push(b'\n');
    out
}

/// Writes `values` with `shape` to `path` atomically.
pub fn write_f32(path: &Path, shape: &[usize], values: &[f32]) -> Result<(), DataError> {
    let expected: usize = shape.iter().product();
    if expected != values.len() {
        return Err(DataError::invalid(
            "shape",
            format!("{shape:?} holds {expected} values, got {}", values.len()),
        ));
    }
    let mut bytes = header(shape);
    bytes.reserve(values.len() * 4);
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    write_atomic(path, &bytes)
}

/// Writes `bytes` to a temporary file beside `path`, syncs it and renames it into place.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    let io = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = std::path::PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io)
}
