//! NumPy `.npy` files of windows: writing float32 (format 1.0), reading float32 or float64.
//!
//! Writing covers what `neurogen sample` and `neurogen data` emit: little-endian `<f4`, C
//! order. The file is written beside its final name and renamed into place, so a crash never
//! leaves a half-written file that looks complete. Reading takes little-endian `<f4`/`<f8` in C
//! order (what NumPy writes by default), checks every header field against the file's size
//! before allocating, and names the field that is wrong.

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

/// Reads an `.npy` array of little-endian `<f4` or `<f8` in C order as f32, with its shape.
pub fn read_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>), DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&bytes).map_err(|message| DataError::Format {
        path: path.to_path_buf(),
        message,
    })
}

fn parse(bytes: &[u8]) -> Result<(Vec<usize>, Vec<f32>), String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not an NPY file (magic \\x93NUMPY missing)".into());
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => {
            return Err(format!(
                "NPY format version {v} is not supported (1, 2, 3 are)"
            ))
        }
    };
    let end = start
        .checked_add(header_len)
        .filter(|&e| e <= bytes.len())
        .ok_or("header: its length runs past the end of the file")?;
    let header = std::str::from_utf8(&bytes[start..end]).map_err(|_| "header: not text")?;
    let field = |key: &str| -> Result<&str, String> {
        let at = header
            .find(&format!("'{key}'"))
            .ok_or(format!("header: no '{key}' field"))?;
        let rest = header[at + key.len() + 2..].trim_start();
        rest.strip_prefix(':')
            .map(str::trim_start)
            .ok_or(format!("header: '{key}' has no value"))
    };
    let descr = field("descr")?;
    let size = if descr.starts_with("'<f4'") {
        4
    } else if descr.starts_with("'<f8'") {
        8
    } else {
        let d: String = descr.chars().take_while(|c| *c != ',').collect();
        return Err(format!(
            "descr: dtype {d} is not supported (little-endian float32 '<f4' or float64 '<f8')"
        ));
    };
    if !field("fortran_order")?.starts_with("False") {
        return Err("fortran_order: Fortran-ordered arrays are not supported; save with np.ascontiguousarray".into());
    }
    let shape_text = field("shape")?;
    let inner = shape_text
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or("shape: expected a tuple")?;
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("shape: \"{s}\" is not a size"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("shape: the sizes overflow")?;
    let data = &bytes[end..];
    if count.checked_mul(size) != Some(data.len()) {
        return Err(format!(
            "shape: {shape:?} of {size}-byte values needs {} bytes of data, the file has {}",
            count.saturating_mul(size),
            data.len()
        ));
    }
    let values = if size == 4 {
        data.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    } else {
        data.chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect()
    };
    Ok((shape, values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_we_write_we_read_and_bad_headers_name_their_field() {
        let dir = std::env::temp_dir().join(format!("neurogen-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.npy");
        let v: Vec<f32> = (0..24).map(|i| i as f32 * 0.5).collect();
        write_f32(&p, &[2, 3, 4], &v).unwrap();
        assert_eq!(read_f32(&p).unwrap(), (vec![2, 3, 4], v));
        let good = std::fs::read(&p).unwrap();
        // Byte-level replacement: the magic is not UTF-8.
        let swap = |from: &[u8], to: &[u8], bytes: &[u8]| -> Vec<u8> {
            let at = bytes.windows(from.len()).position(|w| w == from).unwrap();
            [&bytes[..at], to, &bytes[at + from.len()..]].concat()
        };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"hello".to_vec(), "magic"),
            (good[..good.len() - 4].to_vec(), "needs 96 bytes"),
            (swap(b"<f4", b">i2", &good), "descr"),
            (
                swap(b"(2, 3, 4)", b"(9999999999, 99999999999, 4)", &good),
                "shape",
            ),
        ];
        for (bytes, want) in cases {
            std::fs::write(&p, &bytes).unwrap();
            let e = read_f32(&p).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("a.npy"), "{e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
