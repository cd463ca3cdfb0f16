//! Window files: `[n, channels, time]` arrays as `neurogen sample` and `neurogen data` write
//! them (in any output format) and `eval`, `plot` and `score` read them back (`.npy`), each
//! with a `.json` sidecar beside it that says what the numbers are: rate, channel names, kind,
//! unit, and labels when the windows are labelled.

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::sources::format_err;
use crate::{DataError, SignalKind, SignalMeta, Signals};

/// `x.npy` → `x<suffix>` beside it (`.json` for the sidecar, `_latents.npy` for latents).
pub fn sidecar_path(path: &Path, suffix: &str) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!("{stem}{suffix}"))
}

/// The sidecar fields every window file has: `shape`, `sfreq`, `channel_names`, `kind`, `unit`,
/// and `label_names` with each window's `labels` when the windows are labelled.
pub fn sidecar(s: &Signals) -> Map<String, Value> {
    let mut meta = Map::new();
    meta.insert("shape".into(), json!([s.n, s.meta.channels, s.meta.time]));
    meta.insert("sfreq".into(), json!(s.meta.sfreq));
    meta.insert("channel_names".into(), json!(s.meta.channel_names));
    meta.insert("kind".into(), json!(s.meta.kind));
    meta.insert("unit".into(), json!(s.meta.unit));
    if let (Some(labels), false) = (&s.labels, s.meta.label_names.is_empty()) {
        meta.insert("label_names".into(), json!(s.meta.label_names));
        meta.insert("labels".into(), json!(labels));
    }
    if s.has_inputs() {
        meta.insert("input_names".into(), json!(s.meta.input_names));
    }
    meta
}

/// Writes `meta` as the `.json` sidecar of the window file `path`, atomically; returns the
/// sidecar's path.
pub fn write_sidecar(path: &Path, meta: &Map<String, Value>) -> Result<PathBuf, DataError> {
    let side = sidecar_path(path, ".json");
    let text = serde_json::to_string_pretty(meta).map_err(|e| format_err(&side, e.to_string()))?;
    crate::io::write_atomic(&side, text.as_bytes())?;
    Ok(side)
}

/// The `.json` sidecar of the window file `path`, if there is one. One that is not JSON is an
/// error naming it.
pub fn read_sidecar(path: &Path) -> Result<Option<Value>, DataError> {
    let side = sidecar_path(path, ".json");
    match std::fs::read_to_string(&side) {
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            format_err(
                &side,
                format!("not the JSON sidecar of {}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format_err(&side, e.to_string())),
    }
}

/// Refuses the first NaN or infinity in `values` read from `path`, naming its position.
pub fn check_finite(path: &Path, values: &[f32]) -> Result<(), DataError> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(format_err(
            path,
            format!(
                "value {i} (in file order) is {}; the data must be finite",
                values[i]
            ),
        )),
        None => Ok(()),
    }
}

/// Refuses values that are not spike counts (non-negative integers) in a window file said to
/// hold counts; `why` says who said so.
pub fn check_counts(path: &Path, values: &[f32], why: &str) -> Result<(), DataError> {
    if values.iter().any(|v| *v < 0.0 || v.fract() != 0.0) {
        return Err(format_err(
            path,
            format!(
                "the windows should be spike counts ({why}), but the file holds values that are \
                 not non-negative integers"
            ),
        ));
    }
    Ok(())
}

/// What the user said about a window file (`--sfreq`, `--kind` on the command line).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stated {
    /// Sampling rate in Hz.
    pub sfreq: Option<f64>,
    /// What the numbers are.
    pub kind: Option<SignalKind>,
}

/// Reads `[n, channels, time]` windows (or one `[channels, time]` window) from an `.npy`.
///
/// Rate, kind, channel names and unit come from, in order: what the user `stated`, the
/// file's `.json` sidecar, then `fallback` (a run's data); labels from the sidecar's `labels`
/// and `label_names`; exogenous inputs from `<stem>_inputs.npy` when the sidecar names
/// `input_names`. Every value must be finite, and counts non-negative integers.
pub fn read_windows(
    path: &Path,
    fallback: Option<&SignalMeta>,
    stated: Stated,
) -> Result<Signals, DataError> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if !ext.eq_ignore_ascii_case("npy") {
        return Err(format_err(
            path,
            "expected an .npy of windows [n, channels, time]".into(),
        ));
    }
    let (shape, values) = crate::npy::read_f32(path)?;
    let [n, channels, time] = match shape[..] {
        [n, c, t] => [n, c, t],
        [c, t] => [1, c, t],
        _ => {
            return Err(format_err(
                path,
                format!("shape {shape:?}: expected windows [n, channels, time]"),
            ))
        }
    };
    if n == 0 || channels == 0 || time == 0 {
        return Err(format_err(path, format!("shape {shape:?} holds no values")));
    }
    check_finite(path, &values)?;
    let side = read_sidecar(path)?;
    let from_side = |key: &str| side.as_ref().and_then(|s| s.get(key));
    let sfreq = stated
        .sfreq
        .or_else(|| from_side("sfreq").and_then(|v| v.as_f64()))
        .or(fallback.map(|m| m.sfreq));
    let Some(sfreq) = sfreq.filter(|f| *f > 0.0 && f.is_finite()) else {
        return Err(format_err(
            path,
            "the sampling rate is unknown: pass --sfreq HZ (a positive number)".into(),
        ));
    };
    let (kind, why) = match stated.kind {
        Some(SignalKind::Continuous) => (SignalKind::Continuous, "--kind continuous"),
        Some(SignalKind::Counts) => (SignalKind::Counts, "--kind counts"),
        None => match from_side("kind").and_then(|v| v.as_str()) {
            Some("counts") => (SignalKind::Counts, "its .json sidecar says so"),
            Some(_) => (SignalKind::Continuous, "its .json sidecar says so"),
            None => match fallback {
                Some(m) if m.kind == SignalKind::Counts => {
                    (SignalKind::Counts, "the run models spike counts")
                }
                _ => (SignalKind::Continuous, "the default"),
            },
        },
    };
    if kind == SignalKind::Counts {
        check_counts(path, &values, why)?;
    }
    let channel_names = from_side("channel_names")
        .and_then(|v| serde_json::from_value::<Vec<String>>(v.clone()).ok())
        .filter(|n| n.len() == channels)
        .or_else(|| {
            fallback
                .filter(|m| m.channels == channels)
                .map(|m| m.channel_names.clone())
        })
        .unwrap_or_else(|| (0..channels).map(|c| format!("ch{c}")).collect());
    let unit = from_side("unit")
        .and_then(|v| v.as_str().map(str::to_string))
        .or(fallback.map(|m| m.unit.clone()))
        .unwrap_or_else(|| {
            if kind == SignalKind::Counts {
                "count"
            } else {
                "a.u."
            }
            .into()
        });
    // Labels, when the sidecar has them: one index per window into `label_names`.
    let label_names = match from_side("label_names").filter(|v| !v.is_null()) {
        Some(v) => serde_json::from_value::<Vec<String>>(v.clone()).map_err(|e| {
            format_err(
                &sidecar_path(path, ".json"),
                format!("label_names: expected a list of strings: {e}"),
            )
        })?,
        None => Vec::new(),
    };
    let labels = match from_side("labels").filter(|v| !v.is_null()) {
        Some(_) if label_names.is_empty() => {
            return Err(format_err(
                &sidecar_path(path, ".json"),
                "labels: given without `label_names` (the name of each label index)".into(),
            ))
        }
        Some(v) => {
            let l: Vec<u32> = serde_json::from_value(v.clone()).map_err(|e| {
                format_err(
                    &sidecar_path(path, ".json"),
                    format!("labels: expected one label index per window: {e}"),
                )
            })?;
            if l.len() != n || l.iter().any(|&i| i as usize >= label_names.len()) {
                return Err(format_err(
                    &sidecar_path(path, ".json"),
                    format!(
                        "labels: {} indices for {n} windows, each below {} (the label_names)",
                        l.len(),
                        label_names.len()
                    ),
                ));
            }
            Some(l)
        }
        _ => None,
    };
    let (input_names, inputs) = read_inputs(path, from_side("input_names"), n, time)?;
    Ok(Signals {
        inputs,
        values,
        n,
        meta: SignalMeta {
            input_names,
            channels,
            time,
            sfreq,
            channel_names,
            kind,
            unit,
            label_names: if labels.is_some() {
                label_names
            } else {
                vec![]
            },
        },
        latents: None,
        labels,
    })
}

/// The inputs `[n, inputs, time]` of the window file `path` from `<stem>_inputs.npy`, when its
/// sidecar names them (`names`); none otherwise.
fn read_inputs(
    path: &Path,
    names: Option<&Value>,
    n: usize,
    time: usize,
) -> Result<(Vec<String>, Option<Vec<f32>>), DataError> {
    let side = sidecar_path(path, ".json");
    let names: Vec<String> =
        match names.filter(|v| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty())) {
            Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
                format_err(
                    &side,
                    format!("input_names: expected a list of strings: {e}"),
                )
            })?,
            None => return Ok((Vec::new(), None)),
        };
    let file = sidecar_path(path, "_inputs.npy");
    if !file.exists() {
        return Err(format_err(
            &side,
            format!(
                "input_names: names the inputs {} of the windows, but {} is missing",
                names.join(", "),
                file.display()
            ),
        ));
    }
    let (shape, values) = crate::npy::read_f32(&file)?;
    if shape != [n, names.len(), time] {
        return Err(format_err(
            &file,
            format!(
                "shape {shape:?}: expected the inputs {} of {n} windows of {time} samples, [{n}, {}, {time}]",
                names.join(", "),
                names.len()
            ),
        ));
    }
    check_finite(&file, &values)?;
    Ok((names, Some(values)))
}
