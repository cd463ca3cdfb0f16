//! `[data] source = "npy"` or `"npz"`: `[channels, samples]` recordings or
//! `[n, channels, time]` trials, with an NPZ's `sfreq`, `channel_names` and `labels`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{check_sfreq, continuous, default_unit, format_err, Common};
use crate::npy::{NpyArray, NpyValues};
use crate::sim::Recordings;
use crate::{DataError, SignalKind};

/// `[data] source = "npy"` or `"npz"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArraySource {
    /// The file: `[channels, samples]` (continuous) or `[n, channels, time]` (trials).
    pub path: PathBuf,
    /// Sampling rate in Hz; required unless an NPZ holds an `sfreq` array.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sfreq: Option<f64>,
    /// One name per channel in the file; default: an NPZ's `channel_names`, else `ch1`, `ch2`, ….
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_names: Option<Vec<String>>,
    /// Channels to keep, by name; default: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<String>>,
    /// `[data] inputs`, read besides `channels` (set by [`crate::DataConfig::build`]).
    #[serde(skip)]
    pub inputs: Vec<String>,
    /// NPZ member holding the signals; default `data`, or the only 2-D/3-D array.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array: Option<String>,
    /// `continuous` (default) or `counts`.
    #[serde(default = "continuous")]
    pub kind: SignalKind,
    /// Physical unit; default `uV` for continuous data, `count` for counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

fn numbers(path: &Path, name: &str, a: NpyArray) -> Result<(Vec<usize>, Vec<f32>), DataError> {
    a.into_numbers()
        .map_err(|e| format_err(path, format!("{name}: {e}")))
}

fn texts(a: NpyArray) -> Vec<String> {
    match a.values {
        NpyValues::Text(t) => t,
        NpyValues::Numbers(v) => v
            .iter()
            .map(|x| {
                if x.fract() == 0.0 {
                    format!("{}", *x as i64)
                } else {
                    x.to_string()
                }
            })
            .collect(),
    }
}

impl ArraySource {
    /// Reads an `.npy` (`npz = false`) or `.npz` file; each of `self.inputs` that names an NPZ
    /// member (not a channel) is read from it as one more channel (`[n, time]` or
    /// `[n, 1, time]` for trials, `[samples]` or `[1, samples]` for a recording).
    pub fn load(&self, npz: bool) -> Result<Recordings, DataError> {
        let path = &self.path;
        let unit = default_unit(self.kind, &self.unit);
        let common = Common::new(
            path,
            self.channels.as_deref(),
            &self.inputs,
            self.kind,
            unit,
        );
        if !npz {
            if self.array.is_some() {
                return Err(DataError::invalid(
                    "array",
                    "names an NPZ member; this source is npy",
                ));
            }
            let (shape, values) = numbers(path, "data", crate::npy::read(path)?)?;
            let sfreq = check_sfreq(self.sfreq, "an .npy file cannot state its sampling rate")?;
            let names = self.names(&shape);
            return common.recordings(sfreq, &shape, values, names, None);
        }
        let mut members = crate::npy::read_npz(path)?;
        fn take_from(members: &mut Vec<(String, NpyArray)>, name: &str) -> Option<NpyArray> {
            let i = members.iter().position(|(k, _)| k == name)?;
            Some(members.remove(i).1)
        }
        let data = match &self.array {
            Some(name) => take_from(&mut members, name).ok_or_else(|| {
                DataError::invalid(
                    "array",
                    format!("{} has no member \"{name}\"", path.display()),
                )
            })?,
            None => match take_from(&mut members, "data") {
                Some(a) => a,
                None => {
                    let cands: Vec<String> = members
                        .iter()
                        .filter(|(_, a)| matches!(a.shape.len(), 2 | 3))
                        .map(|(k, _)| k.clone())
                        .collect();
                    match &cands[..] {
                        [one] => take_from(&mut members, &one.clone())
                            .ok_or_else(|| format_err(path, "vanished member".into()))?,
                        _ => {
                            return Err(DataError::invalid(
                                "array",
                                format!(
                                "{} has no \"data\" member and {} 2-D/3-D arrays ({}); name one",
                                path.display(),
                                cands.len(),
                                cands.join(", ")
                            ),
                            ))
                        }
                    }
                }
            },
        };
        let (mut shape, mut values) = numbers(path, "data", data)?;
        let sfreq = match (self.sfreq, take_from(&mut members, "sfreq")) {
            (Some(f), _) => Some(f),
            (None, Some(a)) => match a.values {
                NpyValues::Numbers(v) if v.len() == 1 => Some(v[0] as f64),
                _ => return Err(format_err(path, "sfreq: expected one number".into())),
            },
            (None, None) => None,
        };
        let sfreq = check_sfreq(
            sfreq,
            "give it in [data] or store an `sfreq` array in the archive",
        )?;
        let mut names = match (
            &self.channel_names,
            take_from(&mut members, "channel_names"),
        ) {
            (None, Some(a)) => texts(a),
            _ => self.names(&shape),
        };
        for name in &self.inputs {
            if names.contains(name) {
                continue;
            }
            if let Some(a) = take_from(&mut members, name) {
                let (s, v) = numbers(path, name, a)?;
                append_channel(path, name, (&mut shape, &mut values), (&s, v))?;
                names.push(name.clone());
            }
        }
        let labels = take_from(&mut members, "labels").map(texts);
        common.recordings(sfreq, &shape, values, names, labels)
    }

    fn names(&self, shape: &[usize]) -> Vec<String> {
        let channels = shape
            .get(shape.len().saturating_sub(2))
            .copied()
            .unwrap_or(0);
        self.channel_names
            .clone()
            .unwrap_or_else(|| (1..=channels).map(|i| format!("ch{i}")).collect())
    }
}

/// Appends the member `name` (`[n, time]`/`[n, 1, time]` beside trials `[n, c, time]`,
/// `[samples]`/`[1, samples]` beside a recording `[c, samples]`) to the data as one channel.
fn append_channel(
    path: &Path,
    name: &str,
    (shape, values): (&mut Vec<usize>, &mut Vec<f32>),
    (member, v): (&[usize], Vec<f32>),
) -> Result<(), DataError> {
    let fits = match (shape.as_slice(), member) {
        ([n, _, t], [m, u]) | ([n, _, t], [m, 1, u]) => m == n && u == t,
        ([_, t], [u]) | ([_, t], [1, u]) => u == t,
        _ => false,
    };
    if !fits {
        let want = match shape.as_slice() {
            [n, _, t] => format!("[{n}, {t}] (one row per trial)"),
            [_, t] => format!("[{t}]"),
            _ => "the data's trials and samples".into(),
        };
        return Err(DataError::invalid(
            "inputs",
            format!(
                "member \"{name}\" of {} has shape {member:?}; beside data of shape {shape:?} an input needs {want}",
                path.display()
            ),
        ));
    }
    match shape.as_mut_slice() {
        [n, c, t] => {
            let (n, c, t) = (*n, *c, *t);
            let mut out = Vec::with_capacity(n * (c + 1) * t);
            for i in 0..n {
                out.extend_from_slice(&values[i * c * t..(i + 1) * c * t]);
                out.extend_from_slice(&v[i * t..(i + 1) * t]);
            }
            *values = out;
            shape[1] += 1;
        }
        _ => {
            values.extend_from_slice(&v);
            shape[0] += 1;
        }
    }
    Ok(())
}
