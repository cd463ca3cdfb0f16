//! Sweeps: one base experiment, many points, each point a run directory of its own.
//!
//! ```text
//! sweeps/<name>/
//!   sweep.toml            the sweep file as given
//!   points.json           every point's overrides, in index order
//!   <index>/              a run directory (see run_dir): experiment.toml, point.json, status.json…
//! ```
//!
//! A point's directory *is* its run directory: `neurogen train <point>/experiment.toml --out
//! <point> --resume` trains it, continues it after a kill or a Slurm requeue, and every command
//! that takes a run (`sample`, `eval`, `inspect`) takes the point. Nothing but the run
//! directories records progress, so the local runner, a Slurm array and `--collect` agree on
//! what is finished without talking to each other.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use neurogen_data::io::write_atomic;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{ConfigError, Experiment, RunDir, TrainError};

/// How a random axis is drawn.
#[derive(Debug, Clone, PartialEq)]
pub enum Draw {
    /// Uniform on `[lo, hi]`.
    Uniform(f64, f64),
    /// Log-uniform on `[lo, hi]` (both > 0).
    LogUniform(f64, f64),
    /// A uniform integer in `lo..=hi`.
    IntUniform(i64, i64),
    /// One of the values, uniformly.
    Choice(Vec<toml::Value>),
}

/// `[slurm]`: resources for the job array.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmConfig {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--time`, e.g. `"02:00:00"`.
    pub time: Option<String>,
    /// `--cpus-per-task`.
    pub cpus: Option<u32>,
    /// `--gres=gpu:N`.
    pub gpus: Option<u32>,
    /// `--mem`, e.g. `"8G"`.
    pub memory: Option<String>,
    /// `--account`.
    pub account: Option<String>,
    /// The `%M` of `--array=0-(N-1)%M`: tasks running at once; default every point.
    pub max_parallel: Option<u32>,
}

/// A parsed sweep file.
#[derive(Debug, Clone)]
pub struct Sweep {
    /// The sweep file.
    pub path: PathBuf,
    /// Its text, kept beside the points.
    pub text: String,
    /// `name`; default the file's stem.
    pub name: String,
    /// `base`, resolved against the sweep file's directory.
    pub base: PathBuf,
    /// `[axes]`: key → values (a grid without `[random]`).
    pub axes: Vec<(String, Vec<toml::Value>)>,
    /// `[random]`.
    pub random: Option<Random>,
    /// `[slurm]`.
    pub slurm: SlurmConfig,
}

/// `[random]`: draws instead of a grid.
#[derive(Debug, Clone)]
pub struct Random {
    /// How many points.
    pub n: usize,
    /// Seed of the draws.
    pub seed: u64,
    /// Key → how it is drawn.
    pub draws: Vec<(String, Draw)>,
}

/// One point: its index and the overrides that make it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Index, from 0 (the Slurm array task id).
    pub index: usize,
    /// Dotted key → value, as applied to the base experiment.
    pub overrides: BTreeMap<String, Value>,
}

impl Point {
    /// The overrides as `--set` arguments.
    pub fn set_args(&self) -> Vec<String> {
        self.overrides
            .iter()
            .map(|(k, v)| format!("{k}={}", toml_literal(v)))
            .collect()
    }
}

/// A JSON value written as a TOML literal (strings quoted, arrays bracketed).
fn toml_literal(v: &Value) -> String {
    match v {
        Value::String(s) => toml::Value::String(s.clone()).to_string(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(toml_literal).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(m) => format!(
            "{{ {} }}",
            m.iter()
                .map(|(k, v)| format!("{} = {}", toml::Value::String(k.clone()), toml_literal(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

fn to_json(v: &toml::Value) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

impl Sweep {
    /// Reads and checks a sweep file.
    pub fn load(path: &Path) -> Result<Sweep, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let bad = |key: &str, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key: key.to_string(),
            message,
        };
        let mut table = crate::experiment::parse_toml(&text, path)?;
        for key in table.keys() {
            if !["name", "base", "axes", "random", "slurm"].contains(&key.as_str()) {
                return Err(bad(
                    key,
                    "unknown key; a sweep file has name, base, [axes], [random] and [slurm]".into(),
                ));
            }
        }
        let plain = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                && !s.starts_with('.')
        };
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        let name =
            match table.remove("name") {
                None if stem.as_deref().is_some_and(plain) => stem.unwrap_or_default(),
                Some(toml::Value::String(s)) if plain(&s) => s,
                None => {
                    return Err(bad(
                        "name",
                        "missing, and the file's name is not a plain name: give name = \"…\" \
                     (letters, digits, '-', '_' or '.')"
                            .into(),
                    ))
                }
                Some(_) => return Err(bad(
                    "name",
                    "expected a non-empty string of letters, digits, '-', '_' or '.' (it names \
                     the directory sweeps/<name>)"
                        .into(),
                )),
            };
        let base =
            match table.remove("base") {
                Some(toml::Value::String(s)) => {
                    let dir = path.parent().unwrap_or(Path::new("."));
                    let p = dir.join(s);
                    std::path::absolute(&p).unwrap_or(p)
                }
                Some(_) => {
                    return Err(bad(
                        "base",
                        "expected the path of an experiment file".into(),
                    ))
                }
                None => return Err(bad(
                    "base",
                    "missing: the experiment file every point starts from (relative to this file)"
                        .into(),
                )),
            };
        let mut axes = Vec::new();
        match table.remove("axes") {
            None => {}
            Some(toml::Value::Table(t)) => {
                for (k, v) in t {
                    let key = format!("axes.\"{k}\"");
                    match v {
                        toml::Value::Array(a) if !a.is_empty() => axes.push((k, a)),
                        _ => {
                            return Err(bad(
                                &key,
                                "expected a non-empty array of the values to try".into(),
                            ))
                        }
                    }
                }
            }
            Some(_) => return Err(bad("axes", "expected a table of key = [values]".into())),
        }
        let random = match table.remove("random") {
            None => None,
            Some(toml::Value::Table(mut t)) => {
                let n = match t.remove("n") {
                    Some(toml::Value::Integer(n)) if n > 0 => n as usize,
                    _ => {
                        return Err(bad(
                            "random.n",
                            "expected a positive integer: how many points to draw".into(),
                        ))
                    }
                };
                let seed = match t.remove("seed") {
                    None => 0,
                    Some(toml::Value::Integer(s)) if s >= 0 => s as u64,
                    Some(_) => return Err(bad("random.seed", "expected an integer ≥ 0".into())),
                };
                let mut draws = Vec::new();
                for (k, v) in t {
                    let key = format!("random.\"{k}\"");
                    draws.push((k, parse_draw(&v).map_err(|m| bad(&key, m))?));
                }
                Some(Random { n, seed, draws })
            }
            Some(_) => return Err(bad("random", "expected a table".into())),
        };
        let slurm = match table.remove("slurm") {
            None => SlurmConfig::default(),
            Some(v) => serde_path_to_error::deserialize::<_, SlurmConfig>(v).map_err(|e| {
                let at = e.path().to_string();
                let key = if at == "." {
                    "slurm".to_string()
                } else {
                    format!("slurm.{at}")
                };
                bad(&key, e.into_inner().to_string())
            })?,
        };
        for (key, v) in [
            ("partition", &slurm.partition),
            ("time", &slurm.time),
            ("memory", &slurm.memory),
            ("account", &slurm.account),
        ] {
            let odd = |c: char| c.is_whitespace() || c.is_control() || "\"'%".contains(c);
            if let Some(v) = v.as_deref().filter(|v| v.is_empty() || v.chars().any(odd)) {
                return Err(bad(
                    &format!("slurm.{key}"),
                    format!("{v:?}: expected one word (no spaces, quotes or %)"),
                ));
            }
        }
        if slurm.max_parallel == Some(0) {
            return Err(bad("slurm.max_parallel", "expected at least 1".into()));
        }
        if axes.is_empty() && random.as_ref().is_none_or(|r| r.draws.is_empty()) {
            return Err(bad(
                "axes",
                "nothing to sweep: give [axes] (a grid) or [random] (draws)".into(),
            ));
        }
        let grid = axes
            .iter()
            .try_fold(1usize, |n, (_, v)| n.checked_mul(v.len()))
            .filter(|&n| random.is_some() || n <= MAX_POINTS);
        let n = random
            .as_ref()
            .map_or(grid, |r| Some(r.n).filter(|&n| n <= MAX_POINTS));
        if n.is_none() {
            let key = if random.is_some() { "random.n" } else { "axes" };
            return Err(bad(key, format!("more than {MAX_POINTS} points")));
        }
        let mut keys: Vec<&String> = axes.iter().map(|(k, _)| k).collect();
        if let Some(r) = &random {
            keys.extend(r.draws.iter().map(|(k, _)| k));
        }
        for (i, k) in keys.iter().enumerate() {
            if keys[..i].contains(k) {
                return Err(bad(k, "swept in both [axes] and [random]; keep one".into()));
            }
        }
        Ok(Sweep {
            path: path.to_path_buf(),
            text,
            name,
            base,
            axes,
            random,
            slurm,
        })
    }

    /// The points: the grid of `[axes]` (the last key, in alphabetical order, varies fastest),
    /// or with `[random]`, `n` draws in which each `[axes]` key takes one of its values at
    /// random and each `[random]` key its draw.
    pub fn points(&self) -> Vec<Point> {
        let mut out = Vec::new();
        match &self.random {
            None => {
                let total: usize = self.axes.iter().map(|(_, v)| v.len()).product();
                for index in 0..total {
                    let mut rest = index;
                    let mut overrides = BTreeMap::new();
                    for (k, values) in self.axes.iter().rev() {
                        overrides.insert(k.clone(), to_json(&values[rest % values.len()]));
                        rest /= values.len();
                    }
                    out.push(Point { index, overrides });
                }
            }
            Some(Random { n, seed, draws }) => {
                let mut rng = rand::rngs::StdRng::seed_from_u64(*seed);
                for index in 0..*n {
                    let mut overrides = BTreeMap::new();
                    for (k, values) in &self.axes {
                        let i = rng.random_range(0..values.len());
                        overrides.insert(k.clone(), to_json(&values[i]));
                    }
                    for (k, d) in draws {
                        let v = match d {
                            Draw::Uniform(lo, hi) => Value::from(rng.random_range(*lo..=*hi)),
                            Draw::LogUniform(lo, hi) => {
                                Value::from(rng.random_range(lo.ln()..=hi.ln()).exp())
                            }
                            Draw::IntUniform(lo, hi) => Value::from(rng.random_range(*lo..=*hi)),
                            Draw::Choice(c) => to_json(&c[rng.random_range(0..c.len())]),
                        };
                        overrides.insert(k.clone(), v);
                    }
                    out.push(Point { index, overrides });
                }
            }
        }
        out
    }

    /// Resolves every point against the base experiment, checking each (a bad value fails
    /// here, naming the point, before anything runs).
    pub fn experiments(&self) -> Result<Vec<(Point, Experiment)>, TrainError> {
        let base_text = std::fs::read_to_string(&self.base).map_err(|source| {
            TrainError::Config(ConfigError::Read {
                path: self.base.clone(),
                source,
            })
        })?;
        self.points()
            .into_iter()
            .map(|p| {
                let mut exp =
                    Experiment::parse(&base_text, &self.base, &p.set_args()).map_err(|e| {
                        ConfigError::Invalid {
                            path: self.path.clone(),
                            key: format!("point {} ({})", p.index, p.set_args().join(" ")),
                            message: e.to_string(),
                        }
                    })?;
                exp.name = format!("{}-{}", self.name, p.index);
                Ok((p, exp))
            })
            .collect()
    }

    /// Writes `root/sweep.toml`, `root/points.json` and one resolved experiment per point
    /// (`root/<index>/experiment.toml` and `point.json`). Points that have trained keep their
    /// runs and take only what `--resume` may change; any other change to one is refused.
    pub fn write(&self, root: &Path) -> Result<Vec<PathBuf>, TrainError> {
        let points = self.experiments()?;
        let listed: Vec<&Point> = points.iter().map(|(p, _)| p).collect();
        let json = serde_json::to_string_pretty(&listed).unwrap_or_default();
        let points_file = root.join("points.json");
        // A started point may only take what --resume may change (train.steps, …): its run
        // compares the file with itself when it resumes, so this is the check. All points are
        // checked before any file is written.
        let mut started = Vec::new();
        for (p, exp) in &points {
            let dir = root.join(p.index.to_string());
            let run = RunDir::new(&dir);
            if run.latest_checkpoint()?.is_none() {
                started.push(None);
                continue;
            }
            let stored = run.read_experiment()?;
            let changed =
                crate::runs::key_differences(&stored.resume_key(), &exp.resume_key(), true);
            if !changed.is_empty() {
                return Err(TrainError::RunDir {
                    path: dir,
                    message: format!(
                        "this point has started, and the sweep now gives it another {} than it \
                         was started with; only the keys --resume may change (train.steps, …) \
                         can change: remove the sweep directory or rename the sweep",
                        changed.join(", ")
                    ),
                });
            }
            started.push(Some(stored));
        }
        std::fs::create_dir_all(root).map_err(TrainError::io(root.to_path_buf()))?;
        write_atomic(&root.join("sweep.toml"), self.text.as_bytes())?;
        write_atomic(&points_file, json.as_bytes())?;
        let mut dirs = Vec::new();
        for (p, exp) in &points {
            let dir = root.join(p.index.to_string());
            let run = RunDir::new(&dir);
            std::fs::create_dir_all(&dir).map_err(TrainError::io(dir.clone()))?;
            match &started[p.index] {
                None => run.write_experiment(exp)?,
                Some(stored) => {
                    let mut updated = exp.clone();
                    updated.data = stored.data.clone();
                    updated.provenance = stored.provenance.clone();
                    run.write_experiment(&updated)?;
                }
            }
            let pj = serde_json::to_string_pretty(p).unwrap_or_default();
            write_atomic(&dir.join("point.json"), pj.as_bytes())?;
            dirs.push(dir);
        }
        Ok(dirs)
    }
}

/// At most this many points: a sweep is many single runs, each a directory.
pub const MAX_POINTS: usize = 100_000;

fn parse_draw(v: &toml::Value) -> Result<Draw, String> {
    const EXPECTED: &str = "expected { uniform = [lo, hi] }, { log_uniform = [lo, hi] }, \
                            { int_uniform = [lo, hi] } or { choice = [values…] }";
    let t = v.as_table().filter(|t| t.len() == 1).ok_or(EXPECTED)?;
    let (kind, arg) = t.iter().next().ok_or(EXPECTED)?;
    let pair = || -> Result<(f64, f64), String> {
        let a = arg.as_array().filter(|a| a.len() == 2).ok_or(EXPECTED)?;
        let num = |v: &toml::Value| {
            v.as_float()
                .or_else(|| v.as_integer().map(|i| i as f64))
                .ok_or_else(|| format!("{kind}: bounds must be numbers"))
        };
        let (lo, hi) = (num(&a[0])?, num(&a[1])?);
        if !(hi - lo).is_finite() {
            return Err(format!("{kind}: bounds must be finite, got [{lo}, {hi}]"));
        }
        if lo > hi {
            return Err(format!("{kind}: expected lo ≤ hi, got [{lo}, {hi}]"));
        }
        Ok((lo, hi))
    };
    match kind.as_str() {
        "uniform" => pair().map(|(a, b)| Draw::Uniform(a, b)),
        "log_uniform" => {
            let (a, b) = pair()?;
            if a <= 0.0 {
                return Err(format!("log_uniform: bounds must be > 0, got [{a}, {b}]"));
            }
            Ok(Draw::LogUniform(a, b))
        }
        "int_uniform" => {
            let a = arg
                .as_array()
                .filter(|a| a.len() == 2 && a.iter().all(|v| v.is_integer()))
                .ok_or("int_uniform: expected [lo, hi] of integers")?;
            let (lo, hi) = (
                a[0].as_integer().unwrap_or(0),
                a[1].as_integer().unwrap_or(0),
            );
            if lo > hi {
                return Err(format!("int_uniform: expected lo ≤ hi, got [{lo}, {hi}]"));
            }
            Ok(Draw::IntUniform(lo, hi))
        }
        "choice" => match arg {
            toml::Value::Array(a) if !a.is_empty() => Ok(Draw::Choice(a.clone())),
            _ => Err("choice: expected a non-empty array".into()),
        },
        _ => Err(EXPECTED.into()),
    }
}

/// Where a point stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointState {
    /// Never started.
    Pending,
    /// A training process holds it.
    Running,
    /// Trained to `train.steps` (or stopped early).
    Finished,
    /// Its training failed, or was killed and has not been resumed.
    Failed,
}

impl PointState {
    /// The word `--collect` writes.
    pub fn name(self) -> &'static str {
        match self {
            PointState::Pending => "pending",
            PointState::Running => "running",
            PointState::Finished => "finished",
            PointState::Failed => "failed",
        }
    }
}

/// A point's state from its run directory's `status.json`.
///
/// A `running` status whose process is gone counts as failed (interrupted) unless Slurm has the
/// task queued again; on another host, squeue decides. A `finished` point whose experiment now
/// asks for more steps (a re-expanded sweep) is pending again.
pub fn point_state(dir: &Path) -> PointState {
    let run = RunDir::new(dir);
    let Some(s) = run.read_status() else {
        return PointState::Pending;
    };
    let queue = s.slurm_job.as_deref().map(slurm_state);
    let queued = match &queue {
        Some(Queue::Listed(state)) => match state.as_str() {
            "PENDING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "CONFIGURING" => {
                Some(PointState::Pending)
            }
            "RUNNING" | "COMPLETING" | "SUSPENDED" => Some(PointState::Running),
            _ => Some(PointState::Failed),
        },
        Some(Queue::Gone) => Some(PointState::Failed),
        Some(Queue::Unknown) | None => None,
    };
    match s.state.as_str() {
        "finished" => {
            let wanted = std::fs::read_to_string(run.experiment_file())
                .ok()
                .and_then(|t| t.parse::<toml::Table>().ok())
                .and_then(|t| t.get("train")?.get("steps")?.as_integer());
            match (s.target, wanted) {
                (Some(had), Some(now)) if now as u64 > had => PointState::Pending,
                _ => PointState::Finished,
            }
        }
        "running" if s.host == crate::run_dir::host_name() => {
            if process_alive(s.pid) {
                PointState::Running
            } else if queued == Some(PointState::Pending) {
                PointState::Pending
            } else {
                PointState::Failed
            }
        }
        "running" => queued.unwrap_or(PointState::Running),
        "stopped" => PointState::Pending,
        _ if queued == Some(PointState::Pending) => PointState::Pending,
        _ => PointState::Failed,
    }
}

/// What squeue says of a job.
enum Queue {
    /// Listed, in this state.
    Listed(String),
    /// squeue ran and does not list it (ended, or forgotten).
    Gone,
    /// No squeue, or it failed (no controller).
    Unknown,
}

fn slurm_state(job: &str) -> Queue {
    let out = std::process::Command::new("squeue")
        .args(["-h", "-o", "%T", "-j", job])
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let state = String::from_utf8_lossy(&o.stdout).trim().to_string();
            if state.is_empty() {
                Queue::Gone
            } else {
                Queue::Listed(state)
            }
        }
        // squeue exits 1 for a job id it has forgotten ("Invalid job id specified").
        Ok(o) if String::from_utf8_lossy(&o.stderr).contains("Invalid job id") => Queue::Gone,
        _ => Queue::Unknown,
    }
}

fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// One row of `results.csv`.
#[derive(Debug, Clone)]
pub struct Row {
    /// The point.
    pub point: Point,
    /// Its state.
    pub state: PointState,
    /// Columns by name: `step`, `train_loss`, `valid_loss`, `attempts` and the numbers of
    /// `eval/report.json` (dotted paths).
    pub values: BTreeMap<String, f64>,
}

/// Gathers every point of the sweep in `root`.
pub fn collect(root: &Path) -> Result<Vec<Row>, TrainError> {
    let points_file = root.join("points.json");
    let text = std::fs::read_to_string(&points_file).map_err(|e| TrainError::RunDir {
        path: root.to_path_buf(),
        message: format!("not a sweep directory (cannot read points.json: {e})"),
    })?;
    let points: Vec<Point> = serde_json::from_str(&text).map_err(|e| TrainError::RunDir {
        path: points_file.clone(),
        message: format!("malformed: {e}"),
    })?;
    let mut rows = Vec::new();
    for point in points {
        let dir = root.join(point.index.to_string());
        let run = RunDir::new(&dir);
        let mut values = BTreeMap::new();
        if let Some(s) = run.read_status() {
            values.insert("attempts".into(), s.attempt as f64);
        }
        if let Ok(Some(c)) = run.latest_checkpoint() {
            values.insert("step".into(), c.step as f64);
        }
        for (split, col) in [("train", "train_loss"), ("valid", "valid_loss")] {
            if let Some(line) = run.last_metrics(Some(split), 1)?.pop() {
                if let Some(v) = line.get("loss").and_then(Value::as_f64) {
                    values.insert(col.into(), v);
                }
            }
        }
        if let Ok(text) = std::fs::read_to_string(dir.join("eval").join("report.json")) {
            if let Ok(v) = serde_json::from_str::<Value>(&text) {
                flatten("", &v, &mut values);
            }
        }
        rows.push(Row {
            state: point_state(&dir),
            point,
            values,
        });
    }
    Ok(rows)
}

/// Numbers of a JSON tree under dotted paths (arrays and `meta` skipped: a table column is one
/// number).
fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, f64>) {
    match v {
        Value::Number(n) if !prefix.is_empty() => {
            // The run's own columns (step, losses) win over a report's same-named numbers.
            if let Some(x) = n.as_f64() {
                out.entry(prefix.to_string()).or_insert(x);
            }
        }
        Value::Object(m) => {
            for (k, v) in m {
                if prefix.is_empty() && k == "meta" {
                    continue;
                }
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&p, v, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sweep(text: &str) -> Result<Sweep, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.toml");
        std::fs::write(&p, text).unwrap();
        Sweep::load(&p)
    }

    #[test]
    fn grid_is_the_product_with_the_last_key_fastest() {
        let s =
            sweep("base = \"b.toml\"\n[axes]\nseed = [1, 2, 3]\n\"model.latent_dim\" = [8, 16]\n")
                .unwrap();
        let p = s.points();
        assert_eq!(p.len(), 6);
        let args: Vec<String> = p.iter().map(|p| p.set_args().join(" ")).collect();
        assert_eq!(args[0], "model.latent_dim=8 seed=1");
        assert_eq!(args[1], "model.latent_dim=8 seed=2");
        assert_eq!(args[3], "model.latent_dim=16 seed=1");
        assert_eq!(args[5], "model.latent_dim=16 seed=3");
        let distinct: std::collections::BTreeSet<_> = args.iter().collect();
        assert_eq!(distinct.len(), 6);
    }

    #[test]
    fn random_draws_are_seeded_and_within_bounds() {
        let text = "base = \"b.toml\"\n[axes]\nseed = [1, 2]\n[random]\nn = 50\nseed = 3\n\
                    \"train.lr\" = { log_uniform = [1e-4, 1e-2] }\n\
                    \"model.hidden\" = { choice = [\"a\", \"b\"] }\n\
                    \"train.batch_size\" = { int_uniform = [8, 9] }\n";
        let (a, b) = (sweep(text).unwrap().points(), sweep(text).unwrap().points());
        assert_eq!(a, b);
        assert_eq!(a.len(), 50);
        let lrs: Vec<f64> = a
            .iter()
            .map(|p| p.overrides["train.lr"].as_f64().unwrap())
            .collect();
        assert!(lrs.iter().all(|&l| (1e-4..=1e-2).contains(&l)));
        // Log-uniform: about half the draws below the geometric midpoint 1e-3.
        let below = lrs.iter().filter(|&&l| l < 1e-3).count();
        assert!((15..=35).contains(&below), "{below} of 50 below 1e-3");
        for p in &a {
            assert!([1, 2].contains(&p.overrides["seed"].as_i64().unwrap()));
            assert!([8, 9].contains(&p.overrides["train.batch_size"].as_i64().unwrap()));
            assert!(["a", "b"].contains(&p.overrides["model.hidden"].as_str().unwrap()));
        }
        assert!(
            a[0].set_args().contains(&"model.hidden=\"a\"".to_string())
                || a[0].set_args().contains(&"model.hidden=\"b\"".to_string())
        );
    }

    #[test]
    fn bad_sweep_files_name_the_key() {
        let cases = [
            ("[axes]\nseed = [1]\n", "base: missing"),
            ("base = \"b.toml\"\n", "axes: nothing to sweep"),
            ("base = \"b.toml\"\n[axes]\nseed = []\n", "axes.\"seed\": expected a non-empty array"),
            ("base = \"b.toml\"\n[axes]\nseed = 3\n", "axes.\"seed\": expected a non-empty array"),
            ("base = \"b.toml\"\nfoo = 1\n[axes]\nseed = [1]\n", "foo: unknown key"),
            ("base = \"b.toml\"\n[random]\nseed = 1\n", "random.n: expected a positive integer"),
            (
                "base = \"b.toml\"\n[random]\nn = 2\n\"train.lr\" = { log_uniform = [0, 1] }\n",
                "log_uniform: bounds must be > 0",
            ),
            (
                "base = \"b.toml\"\n[random]\nn = 2\n\"train.lr\" = { gauss = [0, 1] }\n",
                "random.\"train.lr\": expected { uniform",
            ),
            (
                "base = \"b.toml\"\n[axes]\nseed = [1]\n[slurm]\ngpu = 1\n",
                "slurm.gpu: unknown field `gpu`, expected one of",
            ),
            (
                "base = \"b.toml\"\n[axes]\n\"train.lr\" = [0.1]\n[random]\nn = 2\n\"train.lr\" = { choice = [0.2] }\n",
                "swept in both",
            ),
            ("name = \"../x\"\nbase = \"b.toml\"\n[axes]\nseed = [1]\n", "name: expected"),
        ];
        for (text, want) in cases {
            let e = sweep(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(e.contains("s.toml"), "{e}");
        }
    }
}
