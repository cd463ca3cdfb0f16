//! A trained run loaded for use: sample from it, and — where its family can — score windows by
//! likelihood and encode them to latents. Callers ask the model for a capability
//! ([`Sampler::density`], [`Sampler::encoder`]) instead of matching on families.

use std::path::PathBuf;

use burn::tensor::{Device, Tensor};
use neurogen_data::{SignalKind, SignalMeta, Signals};
use neurogen_models::condition::one_hot;
use neurogen_models::{Density, Encode, Observation, Sampler};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::registry::Build;
use crate::rng::{normals, rng, Stream};
use crate::run_dir::{Checkpoint, DataInfo};
use crate::trainer::host_tensor;
use crate::{Experiment, RunDir, TrainError};

/// A trained run, ready to sample.
#[derive(Debug)]
pub struct LoadedRun {
    /// The resolved experiment it was trained with.
    pub exp: Experiment,
    /// Its data's shape, names and normalisation.
    pub info: DataInfo,
    /// The checkpoint loaded.
    pub checkpoint: Checkpoint,
    /// The model with that checkpoint's weights (a GAN's generator, or its moving average when
    /// the run kept one).
    pub model: Box<dyn Sampler>,
}

impl LoadedRun {
    /// The model's log-likelihood, if its family has one.
    pub fn density(&self) -> Option<&dyn Density> {
        self.model.density()
    }

    /// The model's encoder, if its family has one.
    pub fn encoder(&self) -> Option<&dyn Encode> {
        self.model.encoder()
    }

    /// The steps each sample is drawn before its first, for a run whose samples burn in (an
    /// autoregressive one not driven by inputs); `None` for the others.
    pub fn burn_in(&self) -> Option<usize> {
        if self.model.driven().is_some() {
            return None;
        }
        self.model.sequence().map(|s| s.burn_in())
    }

    /// The names of the labels a conditional run generates and scores (empty when the model is
    /// unconditional).
    pub fn label_names(&self) -> &[String] {
        if self.model.classes() > 0 {
            &self.info.meta.label_names
        } else {
            &[]
        }
    }

    /// Labels for `n` windows in the training split's proportions (largest remainders, in label
    /// order); `None` for an unconditional run.
    pub fn default_labels(&self, n: usize) -> Option<Vec<u32>> {
        let classes = self.model.classes();
        if classes == 0 {
            return None;
        }
        let counts = match &self.info.label_counts {
            c if c.len() == classes && c.iter().sum::<usize>() > 0 => c.clone(),
            _ => vec![1; classes],
        };
        let total: usize = counts.iter().sum();
        let exact: Vec<f64> = counts
            .iter()
            .map(|&c| n as f64 * c as f64 / total as f64)
            .collect();
        let mut share: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
        let mut order: Vec<usize> = (0..classes).collect();
        order.sort_by(|&a, &b| {
            (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor()))
        });
        for &c in order.iter().take(n - share.iter().sum::<usize>()) {
            share[c] += 1;
        }
        Some(
            share
                .iter()
                .enumerate()
                .flat_map(|(c, &k)| std::iter::repeat_n(c as u32, k))
                .collect(),
        )
    }

    /// Refuses windows `s` whose exogenous inputs are not the run's: a driven run needs
    /// them, by the same names in the same order; a run without inputs takes none.
    pub fn check_inputs(&self, s: &Signals) -> Result<(), TrainError> {
        let want = &self.info.meta.input_names;
        let have: &[String] = match s.inputs {
            Some(_) => &s.meta.input_names,
            None => &[],
        };
        if want.as_slice() == have {
            return Ok(());
        }
        Err(TrainError::Input(if want.is_empty() {
            format!(
                "the windows carry exogenous inputs ({}), but the run was trained without",
                have.join(", ")
            )
        } else if have.is_empty() {
            format!(
                "the run is driven by exogenous inputs ({}), which the windows do not carry; \
                 give a recording in the run's data format that holds those channels, or an .npy \
                 with `<stem>_inputs.npy` beside it and `input_names` in its .json sidecar",
                want.join(", ")
            )
        } else {
            format!(
                "the windows' exogenous inputs are {}, but the run is driven by {}",
                have.join(", "),
                want.join(", ")
            )
        }))
    }

    /// The run's label index of each window of `s`, matched by name, for a conditional run;
    /// `None` for an unconditional one.
    pub fn labels_of(&self, s: &Signals) -> Result<Option<Vec<u32>>, TrainError> {
        let names = self.label_names();
        if names.is_empty() {
            return Ok(None);
        }
        let Some(labels) = &s.labels else {
            return Err(TrainError::Input(format!(
                "the run is conditional (it scores log p(x | label)), but the windows carry no \
                 labels; give them in an NPZ `labels` array, EDF+ epochs, a CSV condition \
                 column or the `labels` of the .npy's .json sidecar (the run's labels are {})",
                names.join(", ")
            )));
        };
        labels
            .iter()
            .map(|&l| {
                let name = s
                    .meta
                    .label_names
                    .get(l as usize)
                    .cloned()
                    .unwrap_or_default();
                names
                    .iter()
                    .position(|n| *n == name)
                    .map(|i| i as u32)
                    .ok_or_else(|| {
                        TrainError::Input(format!(
                            "label \"{name}\" of the windows is not one of the run's labels ({})",
                            names.join(", ")
                        ))
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

/// Loads the newest checkpoint of a run onto `device`.
pub fn load_run(run: &RunDir, device: &Device) -> Result<LoadedRun, TrainError> {
    load_checkpoint(run, device, false)
}

/// Loads a run onto `device` from its newest checkpoint, or with `best` from the checkpoint of
/// its best validation (`train.keep_best`).
pub fn load_checkpoint(run: &RunDir, device: &Device, best: bool) -> Result<LoadedRun, TrainError> {
    load_checkpoint_with(run, device, best, None)
}

/// Loads as [`load_checkpoint`], with an autoregressive model's `burn_in` set to `burn_in`
/// when given (`--burn-in`: how it samples, not what it learnt). Runs of families that draw
/// whole windows at once are refused with the reason.
pub fn load_checkpoint_with(
    run: &RunDir,
    device: &Device,
    best: bool,
    burn_in: Option<usize>,
) -> Result<LoadedRun, TrainError> {
    let mut exp = run.read_experiment()?;
    if let Some(n) = burn_in {
        if !exp.data.inputs.is_empty() {
            return Err(TrainError::Input(format!(
                "--burn-in: {}; drop --burn-in",
                crate::experiment::DRIVEN_NO_BURN_IN
            )));
        }
        match &mut exp.model {
            crate::registry::ModelConfig::Autoregressive(c) => c.burn_in = n,
            other => {
                return Err(TrainError::Input(format!(
                    "--burn-in: a `{}` run draws whole windows at once; only autoregressive \
                     runs burn in",
                    other.kind()
                )))
            }
        }
    }
    let info = run.read_data_info()?;
    let checkpoint = if best {
        run.best_checkpoint()?.ok_or_else(|| TrainError::RunDir {
            path: run.root().to_path_buf(),
            message: if exp.train.keep_best == crate::KeepBest::None {
                "has no best checkpoint: it was trained without train.keep_best = \"valid_loss\"; \
                 drop --best, or retrain with it"
                    .into()
            } else {
                "has no best checkpoint yet (none is written before the first validation)".into()
            },
        })?
    } else {
        run.latest_checkpoint()?.ok_or_else(|| TrainError::RunDir {
            path: run.root().to_path_buf(),
            message: "holds no complete checkpoint yet".into(),
        })?
    };
    run.verify(&checkpoint, exp.model.kind())?;
    let model = exp
        .model
        .family()
        .sampler(&Build::new(&exp, &info.meta, device), &checkpoint)?;
    Ok(LoadedRun {
        exp,
        info,
        checkpoint,
        model,
    })
}

/// Draws `n` windows from the model in physical units, deterministically for `seed`; a
/// conditional run draws window `i` of condition `labels[i]` (`labels` has `n` entries; see
/// [`LoadedRun::default_labels`]), an unconditional one ignores them.
///
/// Latents and observation noise are drawn on the host, so the same seed gives the same
/// samples on every backend (up to floating-point differences in the decoder).
pub fn sample_signals(
    run: &LoadedRun,
    n: usize,
    seed: u64,
    labels: Option<&[u32]>,
    device: &Device,
) -> Result<Signals, TrainError> {
    let d = run.model.noise_dim();
    let time = run.info.meta.time;
    sample_with(run, n, seed, labels, device, d, time, &|z, y| {
        run.model.generate(z, y)
    })
}

/// `n` recordings of `length` samples each from a run whose model generates step by step
/// (see [`sample_signals`] for seeds and labels); longer than the training window, without
/// seams. Other runs are refused with the reason.
pub fn sample_recordings(
    run: &LoadedRun,
    n: usize,
    length: usize,
    seed: u64,
    labels: Option<&[u32]>,
    device: &Device,
) -> Result<Signals, TrainError> {
    let Some(seq) = run.model.sequence() else {
        return Err(TrainError::Input(format!(
            "--length: a `{}` run generates fixed windows of {} samples; only autoregressive runs continue past their window",
            run.exp.model.kind(),
            run.info.meta.time
        )));
    };
    if length == 0 {
        return Err(TrainError::Input(
            "--length: must be at least 1 sample".into(),
        ));
    }
    let d = seq.noise_per_step() * (seq.burn_in() + length);
    sample_with(run, n, seed, labels, device, d, length, &|z, y| {
        Observation::Point {
            values: seq.generate_length(z, y, length),
        }
    })
}

/// The responses of a run driven by exogenous inputs (`[data] inputs`) to `inputs` in
/// physical units, `[n, inputs, length]` (one stimulus per response), deterministically for
/// `seed` (see [`sample_signals`] for seeds and labels). The result carries the inputs beside
/// the responses. A run without inputs is refused with the reason.
pub fn sample_driven(
    run: &LoadedRun,
    inputs: &[f32],
    n: usize,
    length: usize,
    seed: u64,
    labels: Option<&[u32]>,
    device: &Device,
) -> Result<Signals, TrainError> {
    let names = &run.info.meta.input_names;
    let Some(driven) = run.model.driven() else {
        return Err(TrainError::Input(format!(
            "--inputs: the `{}` run was not trained with exogenous inputs (`[data] inputs`)",
            run.exp.model.kind()
        )));
    };
    let k = driven.inputs();
    if names.len() != k {
        return Err(TrainError::RunDir {
            path: PathBuf::from("data.json"),
            message: format!(
                "names {} input(s) ({}), but the model reads {k}",
                names.len(),
                names.join(", ")
            ),
        });
    }
    if length == 0 || inputs.len() != n * k * length {
        return Err(TrainError::Input(format!(
            "--inputs: expected [{n}, {k}, length ≥ 1] values for the inputs {}, got {}",
            names.join(", "),
            inputs.len()
        )));
    }
    if let Some(v) = inputs.iter().find(|v| !v.is_finite()) {
        return Err(TrainError::Input(format!(
            "--inputs: the inputs contain {v}"
        )));
    }
    let mut normalised = inputs.to_vec();
    run.info.norm.apply_inputs(&mut normalised, length);
    let d = driven.driven_noise(length);
    // The chunk of windows being drawn: `sample_with` calls in order, from 0.
    let done = std::cell::Cell::new(0usize);
    let mut out = sample_with(run, n, seed, labels, device, d, length, &|z, y| {
        let m = z.dims()[0];
        let from = done.get();
        done.set(from + m);
        let u = host_tensor(
            normalised[from * k * length..(from + m) * k * length].to_vec(),
            [m, k, length],
            device,
        ); // [m, inputs, length]
        driven.generate_driven(z, y, u)
    })?;
    out.meta.input_names = names.clone();
    out.inputs = Some(inputs.to_vec());
    Ok(out)
}

/// `n` windows from the run to judge against the `held_out` windows (physical units): as
/// [`sample_signals`] draws them with [`LoadedRun::default_labels`], except that a run driven
/// by exogenous inputs responds to the held-out windows' inputs in turn (with their labels, when
/// it is also conditional), so that its samples compare like with like.
pub fn sample_held_out(
    run: &LoadedRun,
    held_out: &Signals,
    n: usize,
    seed: u64,
    device: &Device,
) -> Result<Signals, TrainError> {
    if run.model.driven().is_none() {
        return sample_signals(run, n, seed, run.default_labels(n).as_deref(), device);
    }
    run.check_inputs(held_out)?;
    let u = cycled_inputs(held_out, n).ok_or_else(|| {
        TrainError::Input(format!(
            "the run is driven by inputs ({}), but there are no held-out windows to drive it with",
            run.info.meta.input_names.join(", ")
        ))
    })?;
    let labels = run
        .labels_of(held_out)?
        .map(|l| (0..n).map(|i| l[i % l.len()]).collect::<Vec<_>>());
    sample_driven(
        run,
        &u,
        n,
        held_out.meta.time,
        seed,
        labels.as_deref(),
        device,
    )
}

/// The inputs of `n` windows taken from those of `s` in turn, `[n, inputs, time]`; `None`
/// when `s` has no windows or no inputs.
pub fn cycled_inputs(s: &Signals, n: usize) -> Option<Vec<f32>> {
    let u = s.inputs.as_ref().filter(|_| s.n > 0)?;
    let per = s.meta.input_names.len() * s.meta.time;
    Some(
        (0..n)
            .flat_map(|i| u[(i % s.n) * per..(i % s.n + 1) * per].to_vec())
            .collect(),
    )
}

/// Draws `n` windows of `time` samples through `generate`, `d` host normals per window.
#[allow(clippy::too_many_arguments)]
fn sample_with(
    run: &LoadedRun,
    n: usize,
    seed: u64,
    labels: Option<&[u32]>,
    device: &Device,
    d: usize,
    time: usize,
    generate: &dyn Fn(Tensor<2>, Option<Tensor<2>>) -> Observation,
) -> Result<Signals, TrainError> {
    let meta = SignalMeta {
        time,
        input_names: Vec::new(),
        ..run.info.meta.clone()
    };
    let classes = run.model.classes();
    let labels = labels.filter(|_| classes > 0);
    if let Some(l) = labels.filter(|l| l.len() != n || l.iter().any(|&x| x as usize >= classes)) {
        return Err(TrainError::Input(format!(
            "{} labels for {n} windows, each must be below {classes}",
            l.len()
        )));
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut values = Vec::with_capacity(n * meta.channels * meta.time);
    // Windows per call: 256, fewer when one window's noise is large (a stochastic diffusion
    // sampler draws a window's worth per step), so a call's noise stays near 16 M values.
    let chunk = (16_000_000 / d.max(1)).clamp(1, 256);
    let mut done = 0;
    while done < n {
        let m = chunk.min(n - done);
        let z = host_tensor(normals(&mut rng, m * d), [m, d], device); // [m, noise_dim]
        let y = labels.map(|l| one_hot(&l[done..done + m], classes, device)); // [m, classes]
        draw(generate(z, y), &meta, &mut rng, &mut values)?;
        done += m;
    }
    let mut out = Signals {
        inputs: None,
        values,
        n,
        meta,
        latents: None,
        labels: labels.map(<[u32]>::to_vec),
    };
    // Counts are never normalised (the config check refuses it), so they stay integers.
    run.info.norm.invert(&mut out);
    Ok(out)
}

/// Draws one observation per element on the host and appends them to `out`.
fn draw(
    obs: Observation,
    meta: &SignalMeta,
    rng: &mut StdRng,
    out: &mut Vec<f32>,
) -> Result<(), TrainError> {
    let read = |t: burn::tensor::TensorData| {
        t.try_to_vec::<f32>().map_err(|e| TrainError::RunDir {
            path: PathBuf::from("<device>"),
            message: format!("reading samples back failed: {e:?}"),
        })
    };
    match obs {
        Observation::Gaussian { mean, sigma } => {
            let mean = read(mean.into_data())?;
            let sigma = read(sigma.into_data())?;
            let eps = normals(rng, mean.len());
            for (i, (m, e)) in mean.iter().zip(eps).enumerate() {
                let c = (i / meta.time) % meta.channels;
                out.push(m + sigma[c] * e);
            }
        }
        Observation::GaussianAr1 { mean, sigma, phi } => {
            let mean = read(mean.into_data())?;
            let (sigma, phi) = (read(sigma.into_data())?, read(phi.into_data())?);
            let eps = normals(rng, mean.len());
            // One row per (window, channel): the stationary AR(1) chain from its first draw.
            for (row, (m, e)) in mean
                .chunks(meta.time)
                .zip(eps.chunks(meta.time))
                .enumerate()
            {
                let c = row % meta.channels;
                let (s, p) = (sigma[c], phi[c]);
                let innov = s * (1.0 - p * p).max(0.0).sqrt();
                let mut r = 0.0;
                for (k, (m, e)) in m.iter().zip(e).enumerate() {
                    r = if k == 0 { s * e } else { p * r + innov * e };
                    out.push(m + r);
                }
            }
        }
        Observation::Poisson { rate } => {
            for r in read(rate.into_data())? {
                out.push(neurogen_data::sim::poisson(rng, r as f64));
            }
        }
        Observation::Point { values } => out.extend(read(values.into_data())?),
    }
    if out.iter().any(|v| !v.is_finite()) {
        return Err(TrainError::RunDir {
            path: PathBuf::from("<samples>"),
            message: "the model produced non-finite samples (a diverged or unstable checkpoint)"
                .into(),
        });
    }
    Ok(())
}

/// A tensor's values read back to the host as `f64`; `what` names them in the error.
pub(crate) fn host_f64(data: burn::tensor::TensorData, what: &str) -> Result<Vec<f64>, TrainError> {
    Ok(data
        .try_to_vec::<f32>()
        .map_err(|e| TrainError::Input(format!("reading {what} back failed: {e:?}")))?
        .into_iter()
        .map(f64::from)
        .collect())
}

/// Per-window likelihood scores of a run.
#[derive(Debug, Clone)]
pub struct Scores {
    /// The run's label of each window (conditional runs: the score is log p(x | label)).
    pub labels: Option<Vec<u32>>,
    /// Which quantity `log_likelihood` is: `exact` (flows) or `iwae_k=K` (a lower bound).
    pub bound: String,
    /// Per window: log-likelihood (or its bound) in nats, in the run's normalised units.
    pub log_likelihood: Vec<f64>,
    /// Per window: the ELBO (where the score is an importance-weighted bound), in nats.
    pub elbo: Option<Vec<f64>>,
    /// Values per window, for bits per dimension.
    pub dim: usize,
}

/// Scores every window of `s` (physical units, the run's window shape) under the run's model
/// (see [`Density`]; an error for a family without one), with `k` importance samples where the
/// score is a bound; a conditional run scores log p(x | label) with the windows' own labels.
/// Deterministic for `seed`.
pub fn score_signals(
    run: &LoadedRun,
    s: &Signals,
    k: usize,
    seed: u64,
    device: &Device,
) -> Result<Scores, TrainError> {
    let (density, s) = scorable(run, s)?;
    let labels = run.labels_of(&s)?;
    let (ll, elbo) = score_with(run, density, &s, labels.as_deref(), k, seed, false, device)?;
    Ok(Scores {
        labels,
        bound: density.bound(k),
        elbo: (elbo.len() == ll.len()).then_some(elbo),
        log_likelihood: ll,
        dim: s.window_len(),
    })
}

/// Per window: the log-likelihood (or bound) of [`score_signals`], every window estimated from
/// the same random draws, for ranking windows against each other (anomaly scores).
pub fn score_signals_common(
    run: &LoadedRun,
    s: &Signals,
    k: usize,
    seed: u64,
    device: &Device,
) -> Result<Vec<f64>, TrainError> {
    let (density, s) = scorable(run, s)?;
    let labels = run.labels_of(&s)?;
    Ok(score_with(run, density, &s, labels.as_deref(), k, seed, true, device)?.0)
}

/// Every time step's exact log-likelihood given its past, summed over channels (nats, the
/// run's normalised units), `[n][time]`: where in a window the model was surprised. Only for
/// models that factorise over time (autoregressive); others are refused with the reason.
pub fn score_steps(
    run: &LoadedRun,
    s: &Signals,
    device: &Device,
) -> Result<Vec<Vec<f64>>, TrainError> {
    Ok(steps_of(
        &score_elements(run, s, device)?,
        s.meta.channels,
        s.meta.time,
    ))
}

/// Per window: the elements of [`score_elements`] (`[channels × time]`) summed over channels,
/// `[time]`.
pub fn steps_of(elements: &[Vec<f64>], channels: usize, time: usize) -> Vec<Vec<f64>> {
    elements
        .iter()
        .map(|w| {
            (0..time)
                .map(|t| (0..channels).map(|c| w[c * time + t]).sum())
                .collect()
        })
        .collect()
}

/// Every element's exact log-likelihood given the past, `log p(x_ct | x_{<t})` (nats, the
/// run's normalised units), `[n][channels × time]`: where in a window, and in which channel,
/// the model was surprised. Only for models that factorise over time and channels
/// (autoregressive); others are refused with the reason.
pub fn score_elements(
    run: &LoadedRun,
    s: &Signals,
    device: &Device,
) -> Result<Vec<Vec<f64>>, TrainError> {
    per_element(run, s, device, "scores", |d, x, y| {
        d.log_likelihood_elements(x, y).ok_or_else(|| {
            format!(
                "a `{}` run has no per-step likelihood; only autoregressive runs factorise over time",
                run.exp.model.kind()
            )
        })
    })
}

/// Every element's standard-normal residual given the past, `Φ⁻¹(F(x_ct | x_{<t}))`
/// ([`Density::residual_elements`]; i.i.d. N(0, 1) under the model), `[n][channels × time]`.
/// Only for autoregressive runs of continuous data; others are refused with the reason.
pub fn score_residuals(
    run: &LoadedRun,
    s: &Signals,
    device: &Device,
) -> Result<Vec<Vec<f64>>, TrainError> {
    per_element(run, s, device, "residuals", |d, x, y| {
        d.residual_elements(x, y).ok_or_else(|| {
            format!(
                "a `{}` run gives no residuals; only autoregressive runs of continuous data do",
                run.exp.model.kind()
            )
        })
    })
}

/// `[n][channels × time]` of what `each` computes per element of a chunk of windows; its
/// `Err` is the refusal.
fn per_element(
    run: &LoadedRun,
    s: &Signals,
    device: &Device,
    what: &str,
    each: impl Fn(&dyn Density, Tensor<3>, Option<Tensor<2>>) -> Result<Tensor<3>, String>,
) -> Result<Vec<Vec<f64>>, TrainError> {
    let (density, s) = scorable(run, s)?;
    let labels = run.labels_of(&s)?;
    let classes = run.model.classes();
    let len = s.window_len();
    let mut out = Vec::with_capacity(s.n);
    let indices: Vec<usize> = (0..s.n).collect();
    for idx in indices.chunks(density.score_batch(1)) {
        let x = s.batch(idx, device); // [chunk, channels, time]
        let y = labels
            .as_deref()
            .map(|l| rows_one_hot(l, idx, classes, device)); // [chunk, classes]
        let elements = each(density, x, y).map_err(TrainError::Input)?;
        let v = host_f64(elements.into_data(), what)?; // [chunk · channels · time]
        out.extend(v.chunks(len).map(<[f64]>::to_vec));
    }
    Ok(out)
}

/// Every element's share of the bound of a model that scores whole windows
/// ([`Density::bound_elements`]; nats, the run's normalised units), `[n][channels × time]`,
/// every window estimated from the same draws as [`score_signals_common`]: where in a window,
/// and in which channel, the bound is lost. Refused for a family whose bound does not split.
pub fn score_bound_elements(
    run: &LoadedRun,
    s: &Signals,
    k: usize,
    seed: u64,
    device: &Device,
) -> Result<Vec<Vec<f64>>, TrainError> {
    let (density, s) = scorable(run, s)?;
    let labels = run.labels_of(&s)?;
    let len = s.meta.channels * s.meta.time;
    let mut out = Vec::with_capacity(s.n);
    let kind = run.exp.model.kind();
    for_each_chunk(
        run,
        density,
        &s,
        labels.as_deref(),
        (k, seed, true),
        device,
        |x, y, eps| {
            let b = x.dims()[0];
            let elements = density
                .bound_elements(x, y, eps)
                .ok_or_else(|| {
                    TrainError::Input(format!(
                        "a `{kind}` run's likelihood does not split over elements (a model that factorises gives its elements through `score_elements`)"
                    ))
                })?
                .map_err(|e| TrainError::Input(e.to_string()))?;
            let v = host_f64(elements.into_data(), "scores")?; // [chunk · channels · time]
            if v.len() != b * len {
                return Err(TrainError::Input(format!(
                    "a `{kind}` run split {b} windows into {} values, not {b} × {len}",
                    v.len()
                )));
            }
            out.extend(v.chunks(len).map(<[f64]>::to_vec));
            Ok(())
        },
    )?;
    Ok(out)
}

/// A conditional run used as a generative classifier: every window scored under every label.
#[derive(Debug, Clone)]
pub struct Classified {
    /// `log p(x | label)` (or its bound) per window and label, `[n][classes]`, nats.
    pub log_likelihood: Vec<Vec<f64>>,
    /// `log p(x) = log Σ_y p(x | y) p(y)` per window: the score of windows without labels.
    pub marginal: Vec<f64>,
    /// The posterior `p(label | x)` with the training split's label proportions as the prior
    /// (counts plus one), `[n][classes]`.
    pub posterior: Vec<Vec<f64>>,
    /// The posterior's most probable label per window.
    pub predicted: Vec<u32>,
}

/// Scores every window of `s` under each of the conditional run's labels (the same noise for
/// each), and the posterior over labels: a likelihood-based decoder.
pub fn classify_signals(
    run: &LoadedRun,
    s: &Signals,
    k: usize,
    seed: u64,
    device: &Device,
) -> Result<Classified, TrainError> {
    let classes = run.label_names().len();
    if classes == 0 {
        return Err(TrainError::Input(format!(
            "a {} run trained without conditioning cannot classify: only a conditional run \
             (`[model] conditional = true`) has log p(x | label)",
            run.exp.model.kind()
        )));
    }
    let (density, s) = scorable(run, s)?;
    let mut per_class = Vec::with_capacity(classes);
    for c in 0..classes as u32 {
        let labels = vec![c; s.n];
        per_class.push(score_with(run, density, &s, Some(&labels), k, seed, false, device)?.0);
    }
    let prior = log_prior(run, classes);
    let log_likelihood: Vec<Vec<f64>> = (0..s.n)
        .map(|i| per_class.iter().map(|ll| ll[i]).collect())
        .collect();
    let posterior: Vec<Vec<f64>> = log_likelihood
        .iter()
        .map(|ll| {
            // A label whose score failed (non-finite) gets no posterior mass; when every label
            // failed, the posterior is undefined (NaN).
            let joint: Vec<f64> = ll
                .iter()
                .zip(&prior)
                .map(|(l, p)| {
                    if l.is_finite() {
                        l + p
                    } else {
                        f64::NEG_INFINITY
                    }
                })
                .collect();
            let max = joint.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if max == f64::NEG_INFINITY {
                return vec![f64::NAN; classes];
            }
            let w: Vec<f64> = joint.iter().map(|j| (j - max).exp()).collect();
            let total: f64 = w.iter().sum();
            w.iter().map(|v| v / total).collect()
        })
        .collect();
    let predicted = posterior
        .iter()
        .map(|p| {
            (0..classes)
                .max_by(|&a, &b| p[a].total_cmp(&p[b]))
                .unwrap_or(0) as u32
        })
        .collect();
    let marginal = log_likelihood
        .iter()
        .map(|ll| {
            let joint: Vec<f64> = ll.iter().zip(&prior).map(|(l, p)| l + p).collect();
            let max = joint.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            max + joint.iter().map(|j| (j - max).exp()).sum::<f64>().ln()
        })
        .collect();
    Ok(Classified {
        log_likelihood,
        marginal,
        posterior,
        predicted,
    })
}

/// ln of the label prior: the training split's label proportions with one added to each count
/// (so a label without training windows keeps some mass; uniform for a run that kept none).
fn log_prior(run: &LoadedRun, classes: usize) -> Vec<f64> {
    let counts = &run.info.label_counts;
    if counts.len() != classes {
        return vec![-(classes.max(1) as f64).ln(); classes];
    }
    let total = counts.iter().sum::<usize>() as f64 + classes as f64;
    counts
        .iter()
        .map(|&c| ((c as f64 + 1.0) / total).ln())
        .collect()
}

/// The run's density and `s` checked against the run and put in its normalised units.
fn scorable<'a>(run: &'a LoadedRun, s: &Signals) -> Result<(&'a dyn Density, Signals), TrainError> {
    let density = run.density().ok_or_else(|| {
        TrainError::Input(format!(
            "a {} model has no likelihood to score with",
            run.exp.model.kind()
        ))
    })?;
    let meta = &run.info.meta;
    if (s.meta.channels, s.meta.time) != (meta.channels, meta.time) {
        return Err(TrainError::Input(format!(
            "windows are [{} channels × {} samples], but the run was trained on [{} × {}]",
            s.meta.channels, s.meta.time, meta.channels, meta.time
        )));
    }
    if meta.kind == SignalKind::Counts && s.values.iter().any(|v| *v < 0.0 || v.fract() != 0.0) {
        return Err(TrainError::Input(
            "the run models spike counts, but the windows hold values that are not non-negative integers".into(),
        ));
    }
    if s.n == 0 {
        return Err(TrainError::Input("no windows to score".into()));
    }
    if s.values.iter().any(|v| !v.is_finite()) {
        return Err(TrainError::Input(
            "the windows contain NaN or infinite values".into(),
        ));
    }
    run.check_inputs(s)?;
    let mut s = s.clone();
    run.info.norm.apply(&mut s);
    Ok((density, s))
}

/// One-hot rows of the labels of windows `idx`.
///
/// # Shapes
/// - output: `[idx.len(), classes]`
fn rows_one_hot(labels: &[u32], idx: &[usize], classes: usize, device: &Device) -> Tensor<2> {
    let l: Vec<u32> = idx.iter().map(|&j| labels[j]).collect();
    one_hot(&l, classes, device)
}

/// Log-likelihoods (and ELBOs) of the normalised windows `s` given `labels`, in chunks whose
/// noise is keyed by `(seed, chunk)`.
///
/// With `common`, every window is scored with the same draws (common random numbers): each
/// window's estimate is as noisy as before, but two windows' estimates err alike, so their
/// difference — what an anomaly ranking compares — is far less noisy; the mean over windows
/// is noisier, so likelihood reports keep independent draws.
#[allow(clippy::too_many_arguments)]
fn score_with(
    run: &LoadedRun,
    density: &dyn Density,
    s: &Signals,
    labels: Option<&[u32]>,
    k: usize,
    seed: u64,
    common: bool,
    device: &Device,
) -> Result<(Vec<f64>, Vec<f64>), TrainError> {
    let read = |t: Tensor<1>| host_f64(t.into_data(), "scores");
    let (mut ll, mut elbo) = (Vec::with_capacity(s.n), Vec::new());
    for_each_chunk(
        run,
        density,
        s,
        labels,
        (k, seed, common),
        device,
        |x, y, eps| {
            let (l, e) = density
                .log_likelihood(x, y, eps)
                .map_err(|e| TrainError::Input(e.to_string()))?;
            ll.extend(read(l)?);
            if let Some(e) = e {
                elbo.extend(read(e)?);
            }
            Ok(())
        },
    )?;
    Ok((ll, elbo))
}

/// Calls `f` on every chunk of `s` (normalised) with its labels' one-hot rows and the score
/// noise [`Density::score_noise`] asks for: the same draws for every window when `common`,
/// else fresh ones per chunk, keyed by `seed`.
fn for_each_chunk(
    run: &LoadedRun,
    density: &dyn Density,
    s: &Signals,
    labels: Option<&[u32]>,
    (k, seed, common): (usize, u64, bool),
    device: &Device,
    mut f: impl FnMut(Tensor<3>, Option<Tensor<2>>, Tensor<3>) -> Result<(), TrainError>,
) -> Result<(), TrainError> {
    let (draws, d) = density.score_noise(k);
    // With common draws, one window's worth, repeated for every window of every chunk.
    let one = common.then(|| normals(&mut rng(seed, Stream::Score, 0), draws * d)); // [draws, dim]
    let classes = run.model.classes();
    let indices: Vec<usize> = (0..s.n).collect();
    for (i, idx) in indices.chunks(density.score_batch(k)).enumerate() {
        let x = s.batch(idx, device); // [chunk, channels, time]
        let b = idx.len();
        let y = labels.map(|l| rows_one_hot(l, idx, classes, device)); // [chunk, classes]
        let eps = match &one {
            Some(one) => one
                .chunks(d.max(1))
                .flat_map(|draw| std::iter::repeat_n(draw, b).flatten().copied())
                .collect(),
            None => normals(&mut rng(seed, Stream::Score, i as u64), draws * b * d),
        };
        f(x, y, host_tensor(eps, [draws, b, d], device))?; // eps: [draws, chunk, dim]
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;
    use burn::optim::{AdamConfig, GradientsParams};
    use burn::tensor::Distribution;
    use neurogen_models::{FamilyConfig, GenerativeModel, LossContext, VaeConfig, WindowShape};

    #[test]
    fn ar1_draws_have_the_stated_variance_and_lag_one_correlation() {
        let d = Device::flex();
        let (n, c, t) = (400, 2, 64);
        let meta = SignalMeta {
            input_names: Vec::new(),
            channels: c,
            time: t,
            sfreq: 100.0,
            channel_names: vec!["a".into(), "b".into()],
            kind: SignalKind::Continuous,
            unit: "uV".into(),
            label_names: vec![],
        };
        let obs = Observation::GaussianAr1 {
            mean: Tensor::full([n, c, t], 1.0, &d),
            sigma: host_tensor(vec![2.0, 0.5], [c], &d),
            phi: host_tensor(vec![0.9, -0.4], [c], &d),
        };
        let mut out = Vec::new();
        draw(obs, &meta, &mut StdRng::seed_from_u64(1), &mut out).unwrap();
        for (ch, (sigma, phi)) in [(2.0f64, 0.9f64), (0.5, -0.4)].into_iter().enumerate() {
            let rows: Vec<&[f32]> = out.chunks(t).skip(ch).step_by(c).collect();
            let (mut v, mut cov, mut m) = (0.0, 0.0, 0.0);
            for r in &rows {
                for k in 0..t {
                    let a = r[k] as f64 - 1.0;
                    v += a * a;
                    m += 1.0;
                    if k > 0 {
                        cov += a * (r[k - 1] as f64 - 1.0);
                    }
                }
            }
            let var = v / m;
            let lag1 = cov / (rows.len() * (t - 1)) as f64 / var;
            assert!(
                (var / (sigma * sigma) - 1.0).abs() < 0.08,
                "channel {ch}: var {var}"
            );
            assert!((lag1 - phi).abs() < 0.03, "channel {ch}: lag-1 {lag1}");
        }
    }

    #[test]
    fn a_checkpoint_round_trips_to_the_identical_loss() {
        let device = Device::flex();
        device.seed(3);
        let ad = device.clone().autodiff();
        let cfg = VaeConfig {
            latent_dim: 4,
            hidden: vec![16],
            ..Default::default()
        }
        .resolved(SignalKind::Continuous);
        let shape = WindowShape {
            inputs: 0,
            channels: 3,
            time: 8,
            sfreq: 100.0,
            classes: 0,
        };
        let x = Tensor::<3>::random([6, 3, 8], Distribution::Normal(0.0, 1.0), &device);
        let eps = Tensor::<2>::random([6, 4], Distribution::Normal(0.0, 1.0), &device);
        let ctx = LossContext {
            kl_warmup: 1.0,
            training: false,
        };

        // A few steps so every parameter (σ included) has moved away from its initial value.
        let mut model = cfg.init(shape, &ad);
        let mut optim = AdamConfig::new().init();
        for _ in 0..5 {
            let loss = model.loss(x.clone().autodiff(), None, eps.clone().autodiff(), &ctx);
            let grads = GradientsParams::from_grads(loss.total.backward(), &model);
            model = optim.step(1e-2, model, grads);
        }
        let before = model
            .valid()
            .loss(x.clone(), None, eps.clone(), &ctx)
            .total
            .into_scalar::<f32>();

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("model.bpk");
        model.clone().save_file(&file).unwrap();
        let fresh = cfg.init(shape, &device);
        let untrained = fresh
            .loss(x.clone(), None, eps.clone(), &ctx)
            .total
            .into_scalar::<f32>();
        let loaded = fresh.try_load_file(&file).unwrap();
        let after = loaded.loss(x, None, eps, &ctx).total.into_scalar::<f32>();
        assert_eq!(before.to_bits(), after.to_bits(), "{before} vs {after}");
        assert_ne!(
            untrained, after,
            "a fresh model must differ, or the test proves nothing"
        );
    }
}
