//! The run directory: resolved experiment, data statistics, metrics and checkpoints.
//!
//! ```text
//! runs/<name>/
//!   experiment.toml     resolved experiment + [provenance]
//!   data.json           shape, sfreq, channel names, kind, unit, normalisation statistics
//!   metrics.jsonl       one JSON object per logged step
//!   checkpoints/<step>/ model.bpk, optim.bpk, state.toml, manifest.json
//!   checkpoints/best-<step>/ the same, of the best validation (`train.keep_best`)
//!   status.json         running / finished / failed, with host, pid and attempt
//! ```
//!
//! A checkpoint is built in `checkpoints/.partial-<step>/`, every file fsynced, then
//! `manifest.json` (format, model kind, each file's size and XXH3-128 hash) written last and the
//! directory renamed into place: a crash at any instant leaves either the complete checkpoint
//! or none under the step's name, and loading checks every file against the manifest, so a
//! truncated or corrupted file is refused by name rather than loaded.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use neurogen_data::io::write_atomic;
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
    /// Training windows per label (labelled data): the proportions a conditional run samples
    /// in by default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub label_counts: Vec<usize>,
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

    /// The moving average of the model's weights, when the run keeps one.
    pub fn ema_file(&self) -> PathBuf {
        self.dir.join("ema.bpk")
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
    /// Product of the learning-rate cuts the NaN guard has made so far.
    pub lr_scale: f64,
    /// Rollbacks the NaN guard has made so far.
    pub rollbacks: u32,
    /// The best validation so far, when the run keeps its best checkpoint or stops early.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best: Option<BestSoFar>,
}

/// The lowest validation loss a run has seen, and how long ago.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BestSoFar {
    /// The step validated.
    pub step: u64,
    /// Its validation loss.
    pub valid_loss: f64,
    /// Validations since, none lower.
    pub since: u64,
}

/// `status.json`: whether a training process holds the run, and how its last attempt ended.
///
/// Written when training starts and when it ends; a process killed in between leaves
/// `running` with its pid, which readers on the same host see is gone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStatus {
    /// `running`, `finished`, `failed`, or `stopped` (before `train.steps`, on purpose).
    pub state: String,
    /// Host of the training process.
    pub host: String,
    /// Its pid.
    pub pid: u32,
    /// Attempts so far (1 for a run trained in one go; each `--resume` adds one).
    pub attempt: u32,
    /// The checkpoint step this attempt started from (0 for a fresh run).
    pub started_from: u64,
    /// `train.steps` of this attempt: a later, larger one makes a finished run resumable again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<u64>,
    /// The step reached (when ended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u64>,
    /// Unix time of the last change.
    pub unix: u64,
    /// `SLURM_ARRAY_JOB_ID_SLURM_ARRAY_TASK_ID` (or `SLURM_JOB_ID`) when run by Slurm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm_job: Option<String>,
    /// `SLURM_RESTART_COUNT` (requeues) when run by Slurm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm_restarts: Option<u32>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// This machine's host name (for telling whether a `running` status's pid is ours to check).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl RunStatus {
    /// The status of an attempt starting now from `started_from`, after `previous`.
    pub fn starting(started_from: u64, previous: Option<&RunStatus>) -> RunStatus {
        let env = |k: &str| std::env::var(k).ok();
        let slurm_job = match (env("SLURM_ARRAY_JOB_ID"), env("SLURM_ARRAY_TASK_ID")) {
            (Some(j), Some(t)) => Some(format!("{j}_{t}")),
            _ => env("SLURM_JOB_ID"),
        };
        RunStatus {
            state: "running".into(),
            host: host_name(),
            pid: std::process::id(),
            attempt: previous.map_or(0, |p| p.attempt) + 1,
            started_from,
            target: None,
            step: None,
            unix: unix_now(),
            slurm_job,
            slurm_restarts: env("SLURM_RESTART_COUNT").and_then(|s| s.parse().ok()),
            error: None,
        }
    }
}

/// The checkpoint layout this neurogen writes and reads.
pub const CHECKPOINT_FORMAT: u32 = 2;

/// `manifest.json`: what a complete checkpoint holds, checked before anything is loaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Layout version ([`CHECKPOINT_FORMAT`] when written by this neurogen).
    pub format: u32,
    /// neurogen version that wrote it.
    pub neurogen_version: String,
    /// The model family (`vae`, `gan`, `realnvp`, `latent_ode`).
    pub model: String,
    /// Steps completed.
    pub step: u64,
    /// Every other file of the checkpoint.
    pub files: BTreeMap<String, FileEntry>,
}

/// One file's size and content hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Length in bytes.
    pub bytes: u64,
    /// XXH3-128 of the contents, 32 hex digits.
    pub xxh3_128: String,
}

fn hash_hex(bytes: &[u8]) -> String {
    format!("{:032x}", twox_hash::XxHash3_128::oneshot(bytes))
}

/// The XXH3-128 of a file's contents (32 hex digits), read in pieces.
pub fn hash_file(path: &Path) -> Result<String, TrainError> {
    use std::io::Read;
    let io = |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = twox_hash::XxHash3_128::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.write(&buf[..n]);
    }
    Ok(format!("{:032x}", hasher.finish_128()))
}

/// Flushes a directory entry (a rename or a new file) to disk.
fn sync_dir(dir: &Path) -> Result<(), TrainError> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(TrainError::io(dir))
}

/// Test hook (the `fault-injection` feature, which only the tests enable): with
/// `NEUROGEN_FAULT_STALL_CHECKPOINT=<step>`, the write of that step's checkpoint stops
/// half-way (weights written, manifest not) and says so on stderr, so a test can `kill -9` the
/// process at exactly that moment. With `NEUROGEN_FAULT_STALL_MARKER=<file>` as well, only the
/// first process to get there stalls: it creates the file and writes its run directory into it
/// (the Slurm test sets both for a whole job array, then requeues the task that stalled).
#[cfg(feature = "fault-injection")]
fn stall_for_fault_injection(step: u64, run: &Path) {
    let wanted = std::env::var("NEUROGEN_FAULT_STALL_CHECKPOINT").ok();
    if wanted.and_then(|s| s.parse::<u64>().ok()) != Some(step) {
        return;
    }
    if let Ok(marker) = std::env::var("NEUROGEN_FAULT_STALL_MARKER") {
        let first = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&marker)
            .and_then(|mut f| write!(f, "{}", run.display()));
        if first.is_err() {
            return;
        }
    }
    eprintln!("neurogen: stalled inside the checkpoint write of step {step}");
    std::thread::sleep(std::time::Duration::from_secs(600));
}

/// Without the `fault-injection` feature no checkpoint write stalls.
#[cfg(not(feature = "fault-injection"))]
fn stall_for_fault_injection(_step: u64, _run: &Path) {}

/// The manifest's file name inside a checkpoint.
pub const MANIFEST: &str = "manifest.json";

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
        let mut table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| TrainError::RunDir {
                    path: path.clone(),
                    message: format!("not valid TOML: {e}"),
                })?;
        // GAN runs resolved before `model.upsample` existed used transposed convolutions; the
        // default for new experiments is now resize-convolution.
        if let Some(m) = table.get_mut("model").and_then(toml::Value::as_table_mut) {
            if m.get("kind").and_then(toml::Value::as_str) == Some("gan")
                && !m.contains_key("upsample")
            {
                m.insert("upsample".into(), "transposed".into());
            }
        }
        let written_by = table
            .get("provenance")
            .and_then(|p| p.get("neurogen_version"))
            .and_then(|v| v.as_str())
            .map(str::to_string);
        Experiment::from_table(table, &path).map_err(|e| match written_by {
            Some(v) if v != env!("CARGO_PKG_VERSION") => TrainError::RunDir {
                path: path.clone(),
                message: format!(
                    "written by neurogen {v}, which this neurogen {} cannot read ({e}); use the \
                     version that trained the run",
                    env!("CARGO_PKG_VERSION")
                ),
            },
            _ => e.into(),
        })
    }

    /// `status.json`.
    pub fn status_file(&self) -> PathBuf {
        self.root.join("status.json")
    }

    /// Writes `status.json`.
    pub fn write_status(&self, status: &RunStatus) -> Result<(), TrainError> {
        let text = serde_json::to_string_pretty(status).map_err(|e| TrainError::RunDir {
            path: self.status_file(),
            message: e.to_string(),
        })?;
        write_atomic(&self.status_file(), text.as_bytes())?;
        Ok(())
    }

    /// Reads `status.json`, if there is a readable one (runs trained before it existed have none).
    pub fn read_status(&self) -> Option<RunStatus> {
        let text = std::fs::read_to_string(self.status_file()).ok()?;
        serde_json::from_str(&text).ok()
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

    /// Checkpoints, oldest first (unverified: see [`RunDir::verify`]). Writes that never
    /// finished live under dot-names and are ignored.
    pub fn checkpoints(&self) -> Result<Vec<Checkpoint>, TrainError> {
        self.step_dirs(|name| name.parse().ok())
    }

    /// The directories under `checkpoints/` whose names `step` reads a step from, oldest first.
    fn step_dirs(&self, step: impl Fn(&str) -> Option<u64>) -> Result<Vec<Checkpoint>, TrainError> {
        let dir = self.checkpoints_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(TrainError::io(dir)(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(TrainError::io(&dir))?;
            if let Some(step) = step(&entry.file_name().to_string_lossy()) {
                out.push(Checkpoint {
                    step,
                    dir: entry.path(),
                });
            }
        }
        out.sort_by_key(|c| c.step);
        Ok(out)
    }

    /// The newest complete checkpoint.
    pub fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, TrainError> {
        Ok(self.checkpoints()?.pop())
    }

    /// Writes a checkpoint of a `model` run and keeps the newest `keep` (and the best one its
    /// state records, when the run keeps one): `write` puts the
    /// weights into a temporary directory; the state and the manifest follow, everything is
    /// fsynced, and the directory is renamed into place.
    pub fn save_checkpoint(
        &self,
        state: &CheckpointState,
        model: &str,
        keep: usize,
        write: impl FnOnce(&Checkpoint) -> Result<(), TrainError>,
    ) -> Result<Checkpoint, TrainError> {
        let root = self.checkpoints_dir();
        self.remove_leftovers()?;
        let tmp = self.write_partial(state, model, &state.step.to_string(), write)?;
        let done = Checkpoint {
            step: state.step,
            dir: root.join(state.step.to_string()),
        };
        std::fs::rename(&tmp.dir, &done.dir).map_err(TrainError::io(&done.dir))?;
        sync_dir(&root)?;
        let all = self.checkpoints()?;
        for old in all.iter().take(all.len().saturating_sub(keep.max(1))) {
            let trash = root.join(format!(".trash-{}", old.step));
            std::fs::rename(&old.dir, &trash).map_err(TrainError::io(&old.dir))?;
        }
        if let Some(best) = state.best {
            // Older bests are superseded once a checkpoint records the newer one.
            self.drop_best(|c| c.step != best.step)?;
        }
        self.remove_leftovers()?;
        Ok(done)
    }

    /// The best checkpoints on disk, `checkpoints/best-<step>/`, oldest first.
    fn best_dirs(&self) -> Result<Vec<Checkpoint>, TrainError> {
        self.step_dirs(|name| name.strip_prefix("best-")?.parse().ok())
    }

    /// Writes the checkpoint of the best validation so far as `checkpoints/best-<step>/`. The
    /// previous best stays until a regular checkpoint records the new one (see
    /// [`RunDir::save_checkpoint`]), so a rollback to that checkpoint still finds its best.
    pub fn save_best(
        &self,
        state: &CheckpointState,
        model: &str,
        write: impl FnOnce(&Checkpoint) -> Result<(), TrainError>,
    ) -> Result<Checkpoint, TrainError> {
        let root = self.checkpoints_dir();
        self.remove_leftovers()?;
        let name = format!("best-{}", state.step);
        let done = Checkpoint {
            step: state.step,
            dir: root.join(&name),
        };
        // A resumed run validates the same step again: the one on disk already holds it.
        if !done.dir.exists() {
            let tmp = self.write_partial(state, model, &name, write)?;
            std::fs::rename(&tmp.dir, &done.dir).map_err(TrainError::io(&done.dir))?;
            sync_dir(&root)?;
        }
        Ok(done)
    }

    /// Removes the best checkpoints of steps after `step`: a run resumed or rolled back to
    /// `step` has not validated them on its way yet.
    pub(crate) fn drop_best_after(&self, step: u64) -> Result<(), TrainError> {
        self.drop_best(|c| c.step > step)
    }

    fn drop_best(&self, which: impl Fn(&Checkpoint) -> bool) -> Result<(), TrainError> {
        let root = self.checkpoints_dir();
        for old in self.best_dirs()?.into_iter().filter(|c| which(c)) {
            let trash = root.join(format!(".trash-best-{}", old.step));
            std::fs::rename(&old.dir, &trash).map_err(TrainError::io(&old.dir))?;
        }
        self.remove_leftovers()
    }

    /// The best validated checkpoint (unverified), if the run keeps one.
    pub fn best_checkpoint(&self) -> Result<Option<Checkpoint>, TrainError> {
        Ok(self.best_dirs()?.pop())
    }

    /// Writes a complete checkpoint, manifest last, into `checkpoints/.partial-<name>/`.
    fn write_partial(
        &self,
        state: &CheckpointState,
        model: &str,
        name: &str,
        write: impl FnOnce(&Checkpoint) -> Result<(), TrainError>,
    ) -> Result<Checkpoint, TrainError> {
        let tmp = Checkpoint {
            step: state.step,
            dir: self.checkpoints_dir().join(format!(".partial-{name}")),
        };
        std::fs::create_dir_all(&tmp.dir).map_err(TrainError::io(&tmp.dir))?;
        write(&tmp)?;
        let text = toml::to_string(state).map_err(|e| TrainError::Checkpoint {
            path: tmp.dir.join("state.toml"),
            message: e.to_string(),
        })?;
        write_atomic(&tmp.dir.join("state.toml"), text.as_bytes())?;
        stall_for_fault_injection(state.step, &self.root);
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(&tmp.dir).map_err(TrainError::io(&tmp.dir))? {
            let path = entry.map_err(TrainError::io(&tmp.dir))?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            let Some(name) = name.filter(|n| !n.ends_with(".partial")) else {
                continue;
            };
            // Hash what is on disk, after it is flushed: the manifest vouches for the file.
            let f = std::fs::File::open(&path).map_err(TrainError::io(&path))?;
            f.sync_all().map_err(TrainError::io(&path))?;
            let bytes = std::fs::read(&path).map_err(TrainError::io(&path))?;
            let entry = FileEntry {
                bytes: bytes.len() as u64,
                xxh3_128: hash_hex(&bytes),
            };
            files.insert(name, entry);
        }
        let manifest = Manifest {
            format: CHECKPOINT_FORMAT,
            neurogen_version: env!("CARGO_PKG_VERSION").into(),
            model: model.into(),
            step: state.step,
            files,
        };
        let text = serde_json::to_string_pretty(&manifest).map_err(|e| TrainError::Checkpoint {
            path: tmp.dir.join(MANIFEST),
            message: e.to_string(),
        })?;
        write_atomic(&tmp.dir.join(MANIFEST), text.as_bytes())?;
        sync_dir(&tmp.dir)?;
        Ok(tmp)
    }

    /// Removes unfinished writes and pruned checkpoints (dot-named directories).
    fn remove_leftovers(&self) -> Result<(), TrainError> {
        let root = self.checkpoints_dir();
        let entries = match std::fs::read_dir(&root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(TrainError::io(root)(e)),
        };
        for entry in entries {
            let path = entry.map_err(TrainError::io(&root))?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            if name.is_some_and(|n| n.starts_with(".partial-") || n.starts_with(".trash-")) {
                std::fs::remove_dir_all(&path).map_err(TrainError::io(&path))?;
            }
        }
        Ok(())
    }

    /// Checks a checkpoint against its manifest: the format this neurogen reads, the model
    /// family `model`, and every file's size and hash.
    pub fn verify(&self, ckpt: &Checkpoint, model: &str) -> Result<Manifest, TrainError> {
        let path = ckpt.dir.join(MANIFEST);
        let bad = |path: &Path, message: String| TrainError::Checkpoint {
            path: path.to_path_buf(),
            message,
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(bad(
                    &path,
                    format!(
                        "missing: the checkpoint was written by a neurogen older than \
                         {} (checkpoint format 1) or is not a neurogen checkpoint; retrain, or \
                         use the version that trained it",
                        env!("CARGO_PKG_VERSION")
                    ),
                ))
            }
            Err(e) => return Err(bad(&path, format!("cannot read the manifest: {e}"))),
        };
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| bad(&path, format!("malformed checkpoint manifest: {e}")))?;
        if manifest.format != CHECKPOINT_FORMAT {
            return Err(bad(
                &path,
                format!(
                    "checkpoint format {} (written by neurogen {}), but this neurogen {} reads \
                     format {CHECKPOINT_FORMAT}; use the version that trained it",
                    manifest.format,
                    manifest.neurogen_version,
                    env!("CARGO_PKG_VERSION")
                ),
            ));
        }
        if manifest.model != model {
            return Err(bad(
                &path,
                format!(
                    "holds a `{}` model, but the run's experiment.toml describes a `{model}` \
                     model: the checkpoint belongs to another run",
                    manifest.model
                ),
            ));
        }
        if manifest.step != ckpt.step {
            return Err(bad(
                &path,
                format!(
                    "is for step {}, but lies in the directory of step {}",
                    manifest.step, ckpt.step
                ),
            ));
        }
        for (name, want) in &manifest.files {
            let file = ckpt.dir.join(name);
            let len = match std::fs::metadata(&file) {
                Ok(m) => m.len(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(bad(&file, "missing from the checkpoint".into()))
                }
                Err(e) => return Err(bad(&file, format!("cannot read: {e}"))),
            };
            if len != want.bytes {
                return Err(bad(
                    &file,
                    format!(
                        "{len} bytes, but the checkpoint manifest says {} (truncated or \
                         overwritten)",
                        want.bytes
                    ),
                ));
            }
            let bytes =
                std::fs::read(&file).map_err(|e| bad(&file, format!("cannot read: {e}")))?;
            if hash_hex(&bytes) != want.xxh3_128 {
                return Err(bad(
                    &file,
                    "contents differ from the checkpoint manifest's hash (corrupt)".into(),
                ));
            }
        }
        Ok(manifest)
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
    /// The NaN guard's `guard` lines (stamped with the step rolled back to) stay when
    /// `keep_guard` (a rollback truncating) and otherwise only from before `start` (a resume:
    /// the replay makes the same rollback again).
    pub fn open_metrics(
        &self,
        start: u64,
        log_every: u64,
        valid_every: u64,
        keep_guard: bool,
    ) -> Result<std::fs::File, TrainError> {
        let keep = |line: &serde_json::Value| {
            let step = line.get("step").and_then(|s| s.as_u64());
            let every = match line.get("split").and_then(|s| s.as_str()) {
                Some("guard") => {
                    return step.is_some_and(|s| s < start || (keep_guard && s == start))
                }
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
