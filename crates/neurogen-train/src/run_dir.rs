//! The run directory: resolved experiment, data statistics, metrics and checkpoints.
//!
//! ```text
//! runs/<name>/
//!   experiment.toml     resolved experiment + [provenance]
//!   data.json           shape, sfreq, channel names, kind, unit, normalisation statistics
//!   metrics.jsonl       one JSON object per logged step
//!   checkpoints/<step>/ model.bpk, optim.bpk, state.toml
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

use neurogen_data::npy::write_atomic;
use neurogen_data::{Normalization, SignalMeta};
use serde::{Deserialize, Serialize};

use crate::{Experiment, TrainError};

/// What a run needs to know about its data to sample in physical units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataInfo {
    /// Shape of one window, rate, names, kind and unit.
    #[serde(flatten)]
    pub meta: SignalMeta,
    /// Training-split statistics used for normalisation.
    pub norm: Normalization,
    /// Windows per split: train, valid, test.
    pub windows: [usize; 3],
}

/// One complete checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The step it was taken after.
    pub step: u64,
    /// Its directory.
    pub dir: PathBuf,
}

impl Checkpoint {
    /// The model weights.
    pub fn model_file(&self) -> PathBuf {
        self.dir.join("model.bpk")
    }

    /// The optimiser state.
    pub fn optim_file(&self) -> PathBuf {
        self.dir.join("optim.bpk")
    }
}

/// The on-disk state of a checkpoint beside its weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    /// Steps completed.
    pub step: u64,
    /// The run's seed.
    pub seed: u64,
    /// Epoch the next step falls in.
    pub epoch: u64,
    /// Batch within that epoch.
    pub batch_in_epoch: u64,
    /// KL warm-up factor at this step.
    pub kl_warmup: f64,
    /// neurogen version that wrote it.
    pub neurogen_version: String,
    /// Loss sums since the last logged training line.
    pub interval: crate::fit::LossSums,
}

/// A run directory.
#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// A handle on `root` (nothing is created).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        RunDir { root: root.into() }
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `experiment.toml`.
    pub fn experiment_file(&self) -> PathBuf {
        self.root.join("experiment.toml")
    }

    /// `data.json`.
    pub fn data_file(&self) -> PathBuf {
        self.root.join("data.json")
    }

    /// `metrics.jsonl`.
    pub fn metrics_file(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }

    fn checkpoints_dir(&self) -> PathBuf {
        self.root.join("checkpoints")
    }

    /// Creates the directory tree.
    pub fn create(&self) -> Result<(), TrainError> {
        std::fs::create_dir_all(self.checkpoints_dir())
            .map_err(TrainError::io(self.checkpoints_dir()))
    }

    /// Writes the resolved experiment (with provenance).
    pub fn write_experiment(&self, exp: &Experiment) -> Result<(), TrainError> {
        let text = exp.to_toml().map_err(|message| TrainError::RunDir {
            path: self.experiment_file(),
            message,
        })?;
        write_atomic(&self.experiment_file(), text.as_bytes())?;
        Ok(())
    }

    /// Reads the resolved experiment.
    pub fn read_experiment(&self) -> Result<Experiment, TrainError> {
        let path = self.experiment_file();
        if !self.root.is_dir() {
            return Err(TrainError::RunDir {
                path: self.root.clone(),
                message: "no such run directory".into(),
            });
        }
        let text = std::fs::read_to_string(&path).map_err(|e| TrainError::RunDir {
            path: path.clone(),
            message: format!(
                "cannot read the run's experiment ({e}); is this a neurogen run directory?"
            ),
        })?;
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| TrainError::RunDir {
                path: path.clone(),
                message: format!("not valid TOML: {e}"),
            })?;
        Ok(Experiment::from_table(table, &path)?)
    }

    /// Writes `data.json`.
    pub fn write_data_info(&self, info: &DataInfo) -> Result<(), TrainError> {
        let text = serde_json::to_string_pretty(info).map_err(|e| TrainError::RunDir {
            path: self.data_file(),
            message: e.to_string(),
        })?;
        write_atomic(&self.data_file(), text.as_bytes())?;
        Ok(())
    }

    /// Reads `data.json`.
    pub fn read_data_info(&self) -> Result<DataInfo, TrainError> {
        let path = self.data_file();
        let text = std::fs::read_to_string(&path).map_err(|e| TrainError::RunDir {
            path: path.clone(),
            message: format!("cannot read the run's data statistics ({e})"),
        })?;
        serde_json::from_str(&text).map_err(|e| TrainError::RunDir {
            path,
            message: format!("malformed data statistics: {e}"),
        })
    }

    /// Complete checkpoints, oldest first. Directories without `state.toml` (a write that never
    /// finished) are ignored.
    pub fn checkpoints(&self) -> Result<Vec<Checkpoint>, TrainError> {
        let dir = self.checkpoints_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(TrainError::io(dir)(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(TrainError::io(&dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Ok(step) = name.parse::<u64>() {
                let dir = entry.path();
                if dir.join("state.toml").is_file() {
                    out.push(Checkpoint { step, dir });
                }
            }
        }
        out.sort_by_key(|c| c.step);
        Ok(out)
    }

    /// The newest complete checkpoint.
    pub fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, TrainError> {
        Ok(self.checkpoints()?.pop())
    }

    /// Writes a checkpoint: files go to a temporary directory that is renamed into place only
    /// once complete, so a crash never leaves a half-written checkpoint under a step's name.
    pub fn save_checkpoint(
        &self,
        state: &CheckpointState,
        keep: usize,
        write: impl FnOnce(&Checkpoint) -> Result<(), TrainError>,
    ) -> Result<Checkpoint, TrainError> {
        let tmp = Checkpoint {
            step: state.step,
            dir: self
                .checkpoints_dir()
                .join(format!(".partial-{}", state.step)),
        };
        if tmp.dir.exists() {
            std::fs::remove_dir_all(&tmp.dir).map_err(TrainError::io(&tmp.dir))?;
        }
        std::fs::create_dir_all(&tmp.dir).map_err(TrainError::io(&tmp.dir))?;
        write(&tmp)?;
        let text = toml::to_string(state).map_err(|e| TrainError::Checkpoint {
            path: tmp.dir.join("state.toml"),
            message: e.to_string(),
        })?;
        write_atomic(&tmp.dir.join("state.toml"), text.as_bytes())?;
        let done = Checkpoint {
            step: state.step,
            dir: self.checkpoints_dir().join(state.step.to_string()),
        };
        if done.dir.exists() {
            std::fs::remove_dir_all(&done.dir).map_err(TrainError::io(&done.dir))?;
        }
        std::fs::rename(&tmp.dir, &done.dir).map_err(TrainError::io(&done.dir))?;
        let all = self.checkpoints()?;
        for old in all.iter().take(all.len().saturating_sub(keep)) {
            std::fs::remove_dir_all(&old.dir).map_err(TrainError::io(&old.dir))?;
        }
        Ok(done)
    }

    /// Reads a checkpoint's `state.toml`.
    pub fn read_state(&self, ckpt: &Checkpoint) -> Result<CheckpointState, TrainError> {
        let path = ckpt.dir.join("state.toml");
        let text = std::fs::read_to_string(&path).map_err(TrainError::io(&path))?;
        toml::from_str(&text).map_err(|e| TrainError::Checkpoint {
            path,
            message: format!("malformed checkpoint state: {e}"),
        })
    }

    /// Keeps the metric lines a run resumed at `start` would have written by then and opens the
    /// file for appending: lines after `start` go, and so do lines at `start` that lie off the
    /// `log_every` / `valid_every` grid (written only because `start` was the last step).
    pub fn open_metrics(
        &self,
        start: u64,
        log_every: u64,
        valid_every: u64,
    ) -> Result<std::fs::File, TrainError> {
        let keep = |line: &serde_json::Value| {
            let step = line.get("step").and_then(|s| s.as_u64());
            let every = match line.get("split").and_then(|s| s.as_str()) {
                Some("valid") => valid_every,
                _ => log_every,
            };
            step.is_some_and(|s| s < start || (s == start && s.is_multiple_of(every.max(1))))
        };
        let path = self.metrics_file();
        let kept: Vec<String> = match std::fs::read_to_string(&path) {
            Ok(text) => text
                .lines()
                .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| keep(&v)))
                .map(str::to_string)
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(TrainError::io(&path)(e)),
        };
        let mut body = kept.join("\n");
        if !body.is_empty() {
            body.push('\n');
        }
        write_atomic(&path, body.as_bytes())?;
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(TrainError::io(&path))
    }

    /// The last `n` metric lines of `split` (all splits when `None`).
    pub fn last_metrics(
        &self,
        split: Option<&str>,
        n: usize,
    ) -> Result<Vec<serde_json::Value>, TrainError> {
        let path = self.metrics_file();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(TrainError::io(&path)(e)),
        };
        let mut lines: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|v: &serde_json::Value| {
                split.is_none_or(|s| v.get("split").and_then(|x| x.as_str()) == Some(s))
            })
            .collect();
        let start = lines.len().saturating_sub(n);
        Ok(lines.split_off(start))
    }
}

/// Appends one JSON line and flushes it.
pub(crate) fn write_line(
    file: &mut std::fs::File,
    path: &Path,
    value: &serde_json::Value,
) -> Result<(), TrainError> {
    writeln!(file, "{value}").map_err(TrainError::io(path))?;
    file.flush().map_err(TrainError::io(path))
}
