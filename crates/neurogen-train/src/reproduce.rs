//! `neurogen reproduce`: what differs between two runs of one experiment.
//!
//! On the CPU backends a run is a function of its experiment (host RNG keyed by seed and
//! step), so two runs are compared exactly: every logged figure but the throughput, and the
//! weights byte for byte. GPU reductions are not ordered, so wgpu runs get a tolerance.

use std::collections::BTreeMap;
use std::path::Path;

use burn::store::{BurnpackStore, ModuleStore};
use serde_json::Value;

use crate::{Checkpoint, RunDir, TrainError};

/// Logged figures that measure the machine, not the run.
pub const TIMING_KEYS: [&str; 1] = ["samples_per_s"];

/// How close two numbers must be: `|a − b| ≤ abs + rel·max(|a|, |b|)`; zero for exact.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// Relative part.
    pub rel: f64,
    /// Absolute part.
    pub abs: f64,
}

impl Tolerance {
    /// Bit-for-bit.
    pub const EXACT: Tolerance = Tolerance { rel: 0.0, abs: 0.0 };

    /// Whether `a` and `b` agree.
    pub fn agree(&self, a: f64, b: f64) -> bool {
        a == b
            || (a.is_nan() && b.is_nan())
            || (a - b).abs() <= self.abs + self.rel * a.abs().max(b.abs())
    }
}

fn read_lines(path: &Path) -> Result<Vec<Value>, TrainError> {
    let text = std::fs::read_to_string(path).map_err(TrainError::io(path))?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

fn describe(line: &Value) -> String {
    let split = line.get("split").and_then(Value::as_str).unwrap_or("?");
    let step = line.get("step").and_then(Value::as_u64).unwrap_or(0);
    format!("step {step} ({split})")
}

/// The first difference between two `metrics.jsonl` files, over lines up to step `up_to`
/// (all when `None`), ignoring [`TIMING_KEYS`]; `None` when they agree within `tol`. Also
/// returns how many lines were compared.
pub fn compare_metrics(
    original: &Path,
    other: &Path,
    up_to: Option<u64>,
    tol: Tolerance,
) -> Result<(Option<String>, usize), TrainError> {
    let keep = |v: &Value| {
        up_to.is_none_or(|k| {
            v.get("step")
                .and_then(Value::as_u64)
                .is_some_and(|s| s <= k)
        })
    };
    let a: Vec<Value> = read_lines(original)?.into_iter().filter(keep).collect();
    let b: Vec<Value> = read_lines(other)?.into_iter().filter(keep).collect();
    for (x, y) in a.iter().zip(&b) {
        if describe(x) != describe(y) {
            return Ok((
                Some(format!(
                    "the original logged {} where the reproduction logged {}",
                    describe(x),
                    describe(y)
                )),
                a.len(),
            ));
        }
        let (Some(xm), Some(ym)) = (x.as_object(), y.as_object()) else {
            continue;
        };
        let keys: std::collections::BTreeSet<&String> = xm.keys().chain(ym.keys()).collect();
        for k in keys {
            if TIMING_KEYS.contains(&k.as_str()) {
                continue;
            }
            let (u, v) = (xm.get(k), ym.get(k));
            let same = match (u.and_then(Value::as_f64), v.and_then(Value::as_f64)) {
                (Some(p), Some(q)) => tol.agree(p, q),
                _ => u == v,
            };
            if !same {
                let show = |v: Option<&Value>| v.map_or("(absent)".to_string(), Value::to_string);
                return Ok((
                    Some(format!(
                        "{}: {k} = {} in the original, {} in the reproduction",
                        describe(x),
                        show(u),
                        show(v)
                    )),
                    a.len(),
                ));
            }
        }
    }
    if a.len() != b.len() {
        let (longer, which) = if a.len() > b.len() {
            (&a[b.len()], "only the original")
        } else {
            (&b[a.len()], "only the reproduction")
        };
        return Ok((
            Some(format!("{} is logged by {which}", describe(longer))),
            a.len().min(b.len()),
        ));
    }
    Ok((None, a.len()))
}

fn read_weights(file: &Path) -> Result<BTreeMap<String, Vec<f32>>, TrainError> {
    let err = |message: String| TrainError::Checkpoint {
        path: file.to_path_buf(),
        message,
    };
    let mut store = BurnpackStore::from_file(file);
    let tensors = store.get_all_tensors().map_err(|e| err(e.to_string()))?;
    let mut out = BTreeMap::new();
    for (name, t) in tensors {
        let bytes = t.to_bytes().map_err(|e| err(e.to_string()))?;
        let values = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        out.insert(name.clone(), values);
    }
    Ok(out)
}

/// The first difference between the weights of two checkpoints (every module but the
/// optimisers'); `None` when they agree within `tol`. Returns the number of tensors
/// compared too.
pub fn compare_weights(
    original: &Checkpoint,
    other: &Checkpoint,
    tol: Tolerance,
) -> Result<(Option<String>, usize), TrainError> {
    let mut compared = 0;
    // Every module of the checkpoint: the model, its moving average, a GAN's critic (the
    // optimisers' states follow from the weights and are not compared).
    let mut files: Vec<String> = std::fs::read_dir(&original.dir)
        .map_err(TrainError::io(original.dir.clone()))?
        .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".bpk") && !n.starts_with("optim"))
        .collect();
    files.sort();
    for name in files {
        let (a, b) = (original.dir.join(&name), other.dir.join(&name));
        if !b.exists() {
            return Ok((
                Some(format!("{name} is missing from the reproduction")),
                compared,
            ));
        }
        let (wa, wb) = (read_weights(&a)?, read_weights(&b)?);
        let file = a
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        for (name, x) in &wa {
            let Some(y) = wb.get(name) else {
                return Ok((
                    Some(format!("{file}: {name} is missing from the reproduction")),
                    compared,
                ));
            };
            compared += 1;
            if x.len() != y.len() {
                return Ok((
                    Some(format!(
                        "{file}: {name} has {} values vs {}",
                        x.len(),
                        y.len()
                    )),
                    compared,
                ));
            }
            if let Some(i) = (0..x.len()).find(|&i| !tol.agree(x[i] as f64, y[i] as f64)) {
                let max = x
                    .iter()
                    .zip(y)
                    .map(|(p, q)| (p - q).abs())
                    .fold(0f32, f32::max);
                return Ok((
                    Some(format!(
                        "{file}: {name}[{i}] = {} in the original, {} in the reproduction (max |Δ| {max:.3e})",
                        x[i], y[i]
                    )),
                    compared,
                ));
            }
        }
        if let Some(extra) = wb.keys().find(|k| !wa.contains_key(*k)) {
            return Ok((
                Some(format!("{file}: {extra} is only in the reproduction")),
                compared,
            ));
        }
    }
    Ok((None, compared))
}

/// The checkpoint of `run` at `step`, if kept.
pub fn checkpoint_at(run: &RunDir, step: u64) -> Result<Option<Checkpoint>, TrainError> {
    Ok(run.checkpoints()?.into_iter().find(|c| c.step == step))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_differences_name_the_step_and_term() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let line = |step: u64, loss: f64, rate: f64| {
            format!("{{\"loss\":{loss},\"samples_per_s\":{rate},\"split\":\"train\",\"step\":{step}}}\n")
        };
        std::fs::write(&a, line(10, 1.0, 5.0) + &line(20, 0.5, 5.0)).unwrap();
        std::fs::write(&b, line(10, 1.0, 9.0) + &line(20, 0.5, 1.0)).unwrap();
        assert_eq!(
            compare_metrics(&a, &b, None, Tolerance::EXACT).unwrap(),
            (None, 2)
        );
        std::fs::write(&b, line(10, 1.0, 9.0) + &line(20, 0.5000001, 1.0)).unwrap();
        let (d, _) = compare_metrics(&a, &b, None, Tolerance::EXACT).unwrap();
        let d = d.unwrap();
        assert!(
            d.contains("step 20 (train): loss = 0.5 in the original, 0.5000001"),
            "{d}"
        );
        let loose = Tolerance {
            rel: 1e-3,
            abs: 0.0,
        };
        assert_eq!(compare_metrics(&a, &b, None, loose).unwrap().0, None);
        // Only steps ≤ 10 compared.
        assert_eq!(
            compare_metrics(&a, &b, Some(10), Tolerance::EXACT).unwrap(),
            (None, 1)
        );
        std::fs::write(&b, line(10, 1.0, 9.0)).unwrap();
        let d = compare_metrics(&a, &b, None, Tolerance::EXACT)
            .unwrap()
            .0
            .unwrap();
        assert!(
            d.contains("step 20 (train) is logged by only the original"),
            "{d}"
        );
    }
}
