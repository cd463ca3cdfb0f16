//! NumPy `.npy` files: writing float32 (format 1.0), reading every common numeric dtype.
//!
//! Writing covers what `neurogen sample` and `neurogen data` emit: little-endian `<f4`, C
//! order. The file is written beside its final name and renamed into place, so a crash never
//! leaves a half-written file that looks complete. Reading takes little-endian float32/64,
//! (u)int8–64 and unicode strings in C or Fortran order, checks every header field against the
//! file's size before allocating, and names the field that is wrong.

use std::path::Path;

use crate::DataError;

/// The header bytes (magic, version, length, dict padded to a multiple of 64).
pub fn header(shape: &[usize]) -> Vec<u8> {
    header_with(shape, "<f4")
}

fn header_with(shape: &[usize], descr: &str) -> Vec<u8> {
    let dims = match shape {
        [one] => format!("{one},"),
        _ => shape
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(", "),
    };
    let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({dims}), }}");
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
    crate::io::write_atomic(path, &bytes)
}

/// Reads an `.npy` array of numbers as f32 in C order, with its shape.
pub fn read_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>), DataError> {
    crate::error::read_parsed(path, |bytes| parse(bytes)?.into_numbers())
}

/// What an array holds: numbers (any supported numeric dtype, as f32) or strings (`<U`).
#[derive(Debug, Clone, PartialEq)]
pub enum NpyValues {
    /// Every element as f32, in C order.
    Numbers(Vec<f32>),
    /// Every element of a unicode (`<Un`) array, in C order.
    Text(Vec<String>),
}

/// One array from an `.npy` file or an `.npz` member.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its elements in C (row-major) order, whatever the file's order.
    pub values: NpyValues,
}

impl NpyArray {
    /// Its shape and numbers; an array of strings is an error naming the dtype.
    pub fn into_numbers(self) -> Result<(Vec<usize>, Vec<f32>), String> {
        match self.values {
            NpyValues::Numbers(v) => Ok((self.shape, v)),
            NpyValues::Text(_) => Err("descr: an array of strings; expected numbers".into()),
        }
    }
}

/// Reads an `.npy` file.
pub fn read(path: &Path) -> Result<NpyArray, DataError> {
    crate::error::read_parsed(path, parse)
}

#[derive(Clone, Copy)]
enum Dtype {
    F4,
    F8,
    I1,
    I2,
    I4,
    I8,
    U1,
    U2,
    U4,
    U8,
    Unicode(usize),
}

impl Dtype {
    fn parse(descr: &str) -> Result<Dtype, String> {
        let d = descr
            .strip_prefix('\'')
            .and_then(|s| s.split('\'').next())
            .ok_or_else(|| format!("descr: {descr:.20} is not a dtype string"))?;
        let unsupported = || {
            format!(
                "descr: dtype '{d}' is not supported (little-endian float32/64, int8/16/32/64, uint8/16/32/64 or unicode '<U')"
            )
        };
        // By characters, not bytes: the header may hold any UTF-8 (found by fuzzing).
        let split = d.chars().next().map_or(0, char::len_utf8);
        let (order, code) = d.split_at(split);
        if !matches!(order, "<" | "|") {
            return Err(if order == ">" {
                format!(
                    "descr: '{d}' is big-endian; save with arr.astype(arr.dtype.newbyteorder('<'))"
                )
            } else {
                unsupported()
            });
        }
        Ok(match code {
            "f4" => Dtype::F4,
            "f8" => Dtype::F8,
            "i1" => Dtype::I1,
            "i2" => Dtype::I2,
            "i4" => Dtype::I4,
            "i8" => Dtype::I8,
            "u1" => Dtype::U1,
            "u2" => Dtype::U2,
            "u4" => Dtype::U4,
            "u8" => Dtype::U8,
            u if u.starts_with('U') => match u[1..].parse::<usize>() {
                Ok(n) if n > 0 && n <= 1 << 20 => Dtype::Unicode(n),
                _ => return Err(unsupported()),
            },
            _ => return Err(unsupported()),
        })
    }

    fn size(self) -> usize {
        match self {
            Dtype::I1 | Dtype::U1 => 1,
            Dtype::I2 | Dtype::U2 => 2,
            Dtype::F4 | Dtype::I4 | Dtype::U4 => 4,
            Dtype::F8 | Dtype::I8 | Dtype::U8 => 8,
            Dtype::Unicode(n) => 4 * n,
        }
    }

    fn number(self, c: &[u8]) -> f32 {
        let b8 = |c: &[u8]| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&c[..8]);
            a
        };
        match self {
            Dtype::F4 => f32::from_le_bytes([c[0], c[1], c[2], c[3]]),
            Dtype::F8 => f64::from_le_bytes(b8(c)) as f32,
            Dtype::I1 => c[0] as i8 as f32,
            Dtype::I2 => i16::from_le_bytes([c[0], c[1]]) as f32,
            Dtype::I4 => i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32,
            Dtype::I8 => i64::from_le_bytes(b8(c)) as f32,
            Dtype::U1 => c[0] as f32,
            Dtype::U2 => u16::from_le_bytes([c[0], c[1]]) as f32,
            Dtype::U4 => u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32,
            Dtype::U8 => u64::from_le_bytes(b8(c)) as f32,
            Dtype::Unicode(_) => f32::NAN,
        }
    }
}

/// Parses a whole `.npy` file held in memory.
pub fn parse(bytes: &[u8]) -> Result<NpyArray, String> {
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
    let dtype = Dtype::parse(field("descr")?)?;
    let fortran = match field("fortran_order")? {
        f if f.starts_with("False") => false,
        f if f.starts_with("True") => true,
        _ => return Err("fortran_order: expected True or False".into()),
    };
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
    let size = dtype.size();
    let data = &bytes[end..];
    if count.checked_mul(size) != Some(data.len()) {
        return Err(format!(
            "shape: {shape:?} of {size}-byte values needs {} bytes of data, the file has {}",
            count.saturating_mul(size),
            data.len()
        ));
    }
    // Sizes are checked: `count` elements are exactly the bytes present.
    let values = match dtype {
        Dtype::Unicode(n) => {
            let mut out = Vec::with_capacity(count);
            for c in data.chunks_exact(size) {
                let mut s = String::with_capacity(n.min(64));
                for u in c.chunks_exact(4) {
                    let code = u32::from_le_bytes([u[0], u[1], u[2], u[3]]);
                    if code == 0 {
                        break;
                    }
                    s.push(
                        char::from_u32(code).ok_or("data: a string holds an invalid code point")?,
                    );
                }
                out.push(s);
            }
            NpyValues::Text(if fortran {
                to_c_order(out, &shape)
            } else {
                out
            })
        }
        _ => {
            let out: Vec<f32> = data.chunks_exact(size).map(|c| dtype.number(c)).collect();
            NpyValues::Numbers(if fortran {
                to_c_order(out, &shape)
            } else {
                out
            })
        }
    };
    Ok(NpyArray { shape, values })
}

/// Reorders a Fortran-ordered (first index fastest) buffer into C order.
fn to_c_order<T: Clone>(f: Vec<T>, shape: &[usize]) -> Vec<T> {
    if shape.len() < 2 || f.is_empty() {
        return f;
    }
    let mut c_stride = vec![1usize; shape.len()];
    for d in (0..shape.len() - 1).rev() {
        c_stride[d] = c_stride[d + 1] * shape[d + 1];
    }
    let mut out = f.clone();
    let mut idx = vec![0usize; shape.len()];
    for v in f {
        let at: usize = idx.iter().zip(&c_stride).map(|(i, s)| i * s).sum();
        out[at] = v;
        for (d, i) in idx.iter_mut().enumerate() {
            *i += 1;
            if *i < shape[d] {
                break;
            }
            *i = 0;
        }
    }
    out
}

/// Reads every array of an `.npz` archive (stored or deflated), in archive order.
///
/// Members are decompressed into buffers that grow with the bytes actually produced, never
/// sized from a header, and a member that inflates past its declared size is refused.
pub fn read_npz(path: &Path) -> Result<Vec<(String, NpyArray)>, DataError> {
    crate::error::read_parsed(path, parse_npz)
}

/// Parses a whole `.npz` archive held in memory.
pub fn parse_npz(bytes: &[u8]) -> Result<Vec<(String, NpyArray)>, String> {
    use std::io::Read;
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| format!("not an NPZ (zip) archive: {e}"))?;
    let mut out = Vec::new();
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| format!("archive member {}: {e}", i + 1))?;
        let name = entry.name().to_string();
        let Some(key) = name.strip_suffix(".npy") else {
            continue;
        };
        let declared = entry.size();
        let mut buf = Vec::new();
        (&mut entry)
            .take(declared.saturating_add(1))
            .read_to_end(&mut buf)
            .map_err(|e| format!("{name}: {e}"))?;
        if buf.len() as u64 != declared {
            return Err(format!(
                "{name}: declares {declared} bytes, holds {}",
                buf.len()
            ));
        }
        let array = parse(&buf).map_err(|e| format!("{name}: {e}"))?;
        out.push((key.to_string(), array));
    }
    if out.is_empty() {
        return Err("the archive holds no .npy array".into());
    }
    Ok(out)
}

/// Writes named float32 arrays (and optional string arrays) as an uncompressed `.npz`,
/// atomically.
pub fn write_npz(path: &Path, arrays: &[(&str, NpyArray)]) -> Result<(), DataError> {
    use std::io::Write as _;
    let io = |e: std::io::Error| DataError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let mut cursor = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut cursor);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        for (name, a) in arrays {
            zip.start_file(format!("{name}.npy"), opts)
                .map_err(|e| io(std::io::Error::other(e)))?;
            zip.write_all(&encode(a)).map_err(io)?;
        }
        zip.finish().map_err(|e| io(std::io::Error::other(e)))?;
    }
    crate::io::write_atomic(path, &cursor.into_inner())
}

/// An array as `.npy` bytes: float32 numbers, or `<Un` strings.
pub fn encode(a: &NpyArray) -> Vec<u8> {
    match &a.values {
        NpyValues::Numbers(v) => {
            let mut out = header(&a.shape);
            for x in v {
                out.extend_from_slice(&x.to_le_bytes());
            }
            out
        }
        NpyValues::Text(v) => {
            let n = v
                .iter()
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(1)
                .max(1);
            let mut out = header_with(&a.shape, &format!("<U{n}"));
            for s in v {
                let mut k = 0;
                for ch in s.chars() {
                    out.extend_from_slice(&(ch as u32).to_le_bytes());
                    k += 1;
                }
                for _ in k..n {
                    out.extend_from_slice(&[0; 4]);
                }
            }
            out
        }
    }
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
