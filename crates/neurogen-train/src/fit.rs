//! The training loop: one for every family, driving a [`Trainer`].

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::time::Instant;

use neurogen_data::{Dataset, Signals};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::guard::{inject_fault, Fault, Guard};
use crate::progress::Progress;
use crate::run_dir::{write_line, BestSoFar, CheckpointState};
use crate::trainer::{StepArgs, Trainer};
use crate::{RunDir, TrainConfig, TrainError, Verbosity};

/// How `fit` starts and reports.
#[derive(Debug, Clone, Copy, Default)]
pub struct FitOptions {
    /// Continue from the newest checkpoint in the run directory.
    pub resume: bool,
    /// Progress output.
    pub verbosity: Verbosity,
    /// Stop after this step (checkpointing it) as if the run were interrupted there:
    /// `train.steps` still sets the schedule and the last logged step (`neurogen reproduce
    /// --steps K`).
    pub stop_at: Option<u64>,
}

/// What a finished run measured.
#[derive(Debug, Clone)]
pub struct FitReport {
    /// Step the run started from (0 unless resumed).
    pub start_step: u64,
    /// Last step.
    pub steps: u64,
    /// Mean training loss over the last logging interval.
    pub train_loss: f64,
    /// Validation loss (total) at the end, if there is a validation split.
    pub valid_loss: Option<f64>,
    /// The last validation line (every figure logged), if any.
    pub valid: Option<Map<String, Value>>,
    /// Wall time of this invocation, seconds.
    pub wall_s: f64,
    /// The best validation, when the run tracks it (`train.keep_best` or `train.patience`).
    pub best: Option<BestSoFar>,
    /// Set when `train.patience` validations passed without improvement before `train.steps`.
    pub stopped_early: bool,
}

impl FitReport {
    /// A report for a run starting at `step`, before any step.
    pub(crate) fn starting_at(step: u64) -> Self {
        FitReport {
            start_step: step,
            steps: step,
            train_loss: f64::NAN,
            valid_loss: None,
            valid: None,
            wall_s: 0.0,
            best: None,
            stopped_early: false,
        }
    }
}

/// The newest checkpoint of `run`, verified against its manifest (as one of a `kind` model),
/// and its state.
pub(crate) fn resume_point(
    run: &RunDir,
    kind: &str,
) -> Result<(crate::Checkpoint, CheckpointState), TrainError> {
    let ckpt = run.latest_checkpoint()?.ok_or_else(|| TrainError::RunDir {
        path: run.root().to_path_buf(),
        message: "no complete checkpoint to resume from".into(),
    })?;
    run.verify(&ckpt, kind)?;
    let state = run.read_state(&ckpt)?;
    tracing::info!(step = state.step, dir = %ckpt.dir.display(), "restoring");
    Ok((ckpt, state))
}

/// What [`fit`] needs beyond the trainer and the data.
#[derive(Debug, Clone, Copy)]
pub struct FitSpec<'a> {
    /// The `[train]` settings.
    pub train: &'a TrainConfig,
    /// The run's seed (recorded in checkpoints).
    pub seed: u64,
    /// The model family, for checkpoint manifests.
    pub kind: &'a str,
}

impl CheckpointState {
    /// The state after `step` of a trainer whose steps each consume `batches_per_step` batches.
    pub(crate) fn at(
        step: u64,
        spec: &FitSpec,
        n_train: usize,
        trainer: &dyn Trainer,
        interval: &LossSums,
        guard: &Guard,
        best: Option<BestSoFar>,
    ) -> Self {
        let per_epoch = (n_train / spec.train.batch_size).max(1) as u64;
        let batches = step * trainer.batches_per_step();
        CheckpointState {
            step,
            seed: spec.seed,
            epoch: batches / per_epoch,
            batch_in_epoch: batches % per_epoch,
            kl_warmup: trainer.kl_warmup(step),
            neurogen_version: env!("CARGO_PKG_VERSION").into(),
            interval: interval.clone(),
            lr_scale: guard.lr_scale,
            rollbacks: guard.rollbacks,
            best,
        }
    }
}

/// Trains `trainer` on `data.train`, logging to and checkpointing in `run`: the one training
/// loop, for every family. A fresh run checkpoints its initial weights as step 0, so the NaN
/// guard always has a state to restore.
pub fn fit(
    trainer: &mut dyn Trainer,
    data: &Dataset,
    run: &RunDir,
    spec: &FitSpec,
    opts: FitOptions,
) -> Result<FitReport, TrainError> {
    let (t, n_train) = (spec.train, data.train.n);
    let (mut step, mut interval, mut guard) = (0, LossSums::default(), Guard::new(None));
    let mut best: Option<BestSoFar> = None;
    if opts.resume {
        let (ckpt, state) = resume_point(run, spec.kind)?;
        trainer.restore(&ckpt)?;
        (step, interval, guard) = (state.step, state.interval.clone(), Guard::new(Some(&state)));
        best = state.best;
        run.drop_best_after(step)?;
    }
    let mut log = Log::open(run, step, t, opts.verbosity)?;
    let state_at = |trainer: &dyn Trainer, step, interval: &LossSums, guard: &Guard, best| {
        CheckpointState::at(step, spec, n_train, trainer, interval, guard, best)
    };
    let save = |trainer: &dyn Trainer, step, interval: &LossSums, guard: &Guard, best| {
        tracing::debug!(step, "writing checkpoint");
        let state = state_at(trainer, step, interval, guard, best);
        run.save_checkpoint(&state, spec.kind, t.keep_checkpoints, |c| trainer.save(c))
    };
    if !opts.resume {
        save(trainer, 0, &interval, &guard, best)?;
    }
    let (began, mut since) = (Instant::now(), Instant::now());
    let mut report = FitReport::starting_at(step);
    let patience_spent =
        |b: &Option<BestSoFar>| t.patience > 0 && b.is_some_and(|b| b.since >= t.patience);
    // A run that already stopped early stays stopped when resumed.
    let mut stop = patience_spent(&best);
    let last = opts.stop_at.map_or(t.steps, |k| k.min(t.steps));
    while step < last && !stop {
        step += 1;
        let batch = trainer.batch(&data.train, step);
        let lr_scale = guard.lr_scale * t.lr_schedule.factor(step, t.steps);
        let args = StepArgs {
            step,
            lr_scale,
            clip: t.grad_clip,
            grads: false,
        };
        let out = trainer.step(batch, args);
        let mut values = out.values();
        inject_fault(step, &mut values);
        if let Some(mut fault) = Fault::find(step, &values) {
            fault.param = trainer.first_non_finite();
            let (ckpt, state, file) = guard.roll_back(run, spec.kind, fault, t)?;
            trainer.restore(&ckpt)?;
            (step, interval, log.file, since) = (state.step, state.interval, file, Instant::now());
            best = state.best;
            run.drop_best_after(step)?;
            continue;
        }
        interval.add_named(&values, 1.0);
        let rate = log.progress(step, &interval, since, t);
        // The last step always logs; off the log_every grid it keeps its interval, so a run
        // resumed from it averages the same steps as an uninterrupted one.
        let on_grid = step.is_multiple_of(t.log_every);
        if on_grid || step == t.steps {
            log.train(step, &interval, out.fields, t.lr * lr_scale, rate)?;
            report.train_loss = interval.mean("loss");
            if on_grid {
                (interval, since) = (LossSums::default(), Instant::now());
            }
        }
        if (step.is_multiple_of(t.valid_every) || step == t.steps) && data.valid.n > 0 {
            if let Some((line, loss)) = log.valid(step, &*trainer, &data.valid)? {
                (report.valid_loss, report.valid) = (loss, Some(line));
                // During the KL warm-up the loss weighs the KL less, so it ranks nothing yet.
                let ranked = t.tracks_best() && step >= t.kl_warmup_steps;
                if let Some(v) = loss.filter(|v| ranked && v.is_finite()) {
                    best = Some(match best {
                        Some(b) if b.valid_loss <= v => BestSoFar {
                            since: b.since + 1,
                            ..b
                        },
                        _ => {
                            let b = BestSoFar {
                                step,
                                valid_loss: v,
                                since: 0,
                            };
                            if t.keep_best != crate::KeepBest::None {
                                let state = state_at(trainer, step, &interval, &guard, Some(b));
                                run.save_best(&state, spec.kind, |c| trainer.save(c))?;
                            }
                            b
                        }
                    });
                    stop = patience_spent(&best);
                }
            }
        }
        if step.is_multiple_of(t.checkpoint_every) || step == t.steps || step == last || stop {
            save(trainer, step, &interval, &guard, best)?;
        }
        report.steps = step;
    }
    log.bar.finish();
    report.wall_s = began.elapsed().as_secs_f64();
    report.best = best;
    report.stopped_early = stop && step < t.steps;
    Ok(report)
}

/// A written validation line and the loss the run reports.
type ValidLine = (Map<String, Value>, Option<f64>);

/// Where the loop reports: `metrics.jsonl` and the progress display.
struct Log {
    file: File,
    path: PathBuf,
    bar: Progress,
}

impl Log {
    /// Opens `run`'s metrics for a run (re)starting after step `start`.
    fn open(
        run: &RunDir,
        start: u64,
        t: &TrainConfig,
        verbosity: Verbosity,
    ) -> Result<Log, TrainError> {
        Ok(Log {
            file: run.open_metrics(start, t.log_every, t.valid_every, false)?,
            path: run.metrics_file(),
            bar: Progress::new(verbosity, start, t.steps),
        })
    }

    /// Shows the progress of `step`; returns the training rate (samples/s) since `since`.
    fn progress(&self, step: u64, interval: &LossSums, since: Instant, t: &TrainConfig) -> f64 {
        let (elapsed, timed) = (
            since.elapsed().as_secs_f64().max(1e-9),
            interval.weight.max(1.0),
        );
        let rate = timed * t.batch_size as f64 / elapsed;
        let eta = (t.steps - step) as f64 * elapsed / timed;
        self.bar.update(step, interval.mean("loss"), rate, eta);
        rate
    }

    /// Writes the training line of `step`: the interval's means and the step's fields.
    fn train(
        &mut self,
        step: u64,
        interval: &LossSums,
        fields: Vec<(&'static str, Value)>,
        lr: f64,
        rate: f64,
    ) -> Result<(), TrainError> {
        let mut line = interval.means();
        extend(
            &mut line,
            [("step", json!(step)), ("split", json!("train"))],
        );
        extend(&mut line, fields);
        extend(
            &mut line,
            [("lr", json!(lr)), ("samples_per_s", json!(rate))],
        );
        write_line(&mut self.file, &self.path, &Value::Object(line))
    }

    /// Validates `trainer` on `valid` after `step` and writes the line, if the trainer has one.
    fn valid(
        &mut self,
        step: u64,
        trainer: &dyn Trainer,
        valid: &Signals,
    ) -> Result<Option<ValidLine>, TrainError> {
        let timer = Instant::now();
        let Some(v) = trainer.validate(valid, step) else {
            return Ok(None);
        };
        let rate = valid.n as f64 / timer.elapsed().as_secs_f64().max(1e-9);
        let mut line = v.line;
        extend(
            &mut line,
            [("step", json!(step)), ("split", json!("valid"))],
        );
        extend(&mut line, [("samples_per_s", json!(rate))]);
        write_line(&mut self.file, &self.path, &Value::Object(line.clone()))?;
        self.bar.println(&format!("step {step}: {}", v.summary));
        Ok(Some((line, v.loss)))
    }
}

/// Adds `(key, value)` pairs to a log line.
fn extend(line: &mut Map<String, Value>, items: impl IntoIterator<Item = (&'static str, Value)>) {
    line.extend(items.into_iter().map(|(k, v)| (k.to_string(), v)));
}

/// Weighted sums of the loss terms; `mean` divides by the total weight.
///
/// Training adds each step with weight 1 and writes the means every `log_every` steps; the
/// sums since the last line are saved in each checkpoint, so a resumed run's next line averages
/// the same steps as the uninterrupted run's. Validation adds each batch weighted by its size.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LossSums {
    /// Total weight added (steps, or windows for validation).
    pub weight: f64,
    /// Weighted sum of each term; `loss` is the total minimised.
    pub sums: BTreeMap<String, f64>,
}

impl LossSums {
    /// Adds named values with `weight`.
    pub(crate) fn add_named(&mut self, values: &[(&str, f64)], weight: f64) {
        self.weight += weight;
        for (name, v) in values {
            *self.sums.entry(name.to_string()).or_default() += weight * v;
        }
    }

    pub(crate) fn mean(&self, key: &str) -> f64 {
        self.sums.get(key).copied().unwrap_or(f64::NAN) / self.weight.max(1e-12)
    }

    pub(crate) fn means(&self) -> Map<String, Value> {
        self.sums
            .keys()
            .map(|k| (k.clone(), json!(self.mean(k))))
            .collect()
    }
}
