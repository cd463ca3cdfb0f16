//! The model-side half of `neurogen eval`: a run's splits in physical units, latents inferred
//! by its encoder, their linear recovery of a simulator's true latents, and likelihoods.

use burn::tensor::Device;
use neurogen_data::{SignalKind, Signals, SplitName};
use neurogen_eval::Report;

use crate::loaded::{host_f64, score_signals, LoadedRun};
use crate::{RunDir, TrainError};

/// A run's windows rebuilt from its stored `[data]`, in physical units.
#[derive(Debug, Clone)]
pub struct RunSplits {
    /// Training windows.
    pub train: Signals,
    /// Validation windows.
    pub valid: Signals,
    /// Test windows.
    pub test: Signals,
    /// Start of each test window in seconds from the start of its recording.
    pub test_start_s: Vec<f64>,
}

/// Rebuilds the data a run was trained on and cuts it into its splits.
pub fn run_splits(run: &RunDir, loaded: &LoadedRun) -> Result<RunSplits, TrainError> {
    let windows = loaded.exp.build_data(&run.experiment_file())?;
    let pick = |split| windows.signals.select(&windows.indices(split));
    let sfreq = windows.signals.meta.sfreq;
    Ok(RunSplits {
        train: pick(SplitName::Train),
        valid: pick(SplitName::Valid),
        test: pick(SplitName::Test),
        test_start_s: windows
            .indices(SplitName::Test)
            .iter()
            .map(|&i| windows.info[i].start as f64 / sfreq)
            .collect(),
    })
}

/// Latents a model's encoder infers for a set of windows.
#[derive(Debug, Clone)]
pub struct Latents {
    /// Posterior mean per window (`z` of the VAE, `z0` of the latent ODE), `[n, dim]`.
    pub codes: Vec<f64>,
    /// Latent dimension.
    pub dim: usize,
    /// The latent ODE's trajectory from the posterior mean, `[n, time, dim]`.
    pub path: Option<Vec<f64>>,
}

/// The posterior means of `s` (physical units) under the run's encoder; `None` for families
/// without one (RealNVP's latent is the whole window, the GAN has no encoder).
pub fn infer_latents(
    run: &LoadedRun,
    s: &Signals,
    device: &Device,
) -> Result<Option<Latents>, TrainError> {
    let Some(encoder) = run.encoder() else {
        return Ok(None);
    };
    run.check_inputs(s)?;
    let labels = run.labels_of(s)?;
    let classes = run.label_names().len();
    let mut s = s.clone();
    run.info.norm.apply(&mut s);
    let mut codes = Vec::new();
    let mut path: Option<Vec<f64>> = None;
    let mut dim = 0;
    let indices: Vec<usize> = (0..s.n).collect();
    for idx in indices.chunks(256) {
        let x = s.batch(idx, device); // [chunk, channels, time]
        let y = labels.as_ref().map(|l| {
            let l: Vec<u32> = idx.iter().map(|&j| l[j]).collect();
            neurogen_models::condition::one_hot(&l, classes, device)
        }); // [chunk, classes]
        let (mu, z) = encoder
            .encode_mean(x, y)
            .map_err(|e| TrainError::Input(e.to_string()))?; // [chunk, latent], [chunk, time, latent]
        dim = mu.dims()[1];
        codes.extend(host_f64(mu.into_data(), "latents")?);
        if let Some(z) = z {
            path.get_or_insert_with(Vec::new)
                .extend(host_f64(z.into_data(), "latents")?);
        }
    }
    Ok(Some(Latents { codes, dim, path }))
}

/// R² of a linear map from inferred latents to a simulator's true latents, fitted on `train`
/// and scored on `test`, whose latents `score` the caller has inferred (callers also draw
/// them). Both sets must carry true latents (`None` otherwise or for families without an
/// encoder).
///
/// The latent ODE maps its trajectory `z(t)` to the true state at the same time step, pooling
/// windows and steps; the VAE, whose latent is one vector per window, maps it to the window's
/// whole true trajectory (every (latent, step) pair a target column). Phases (Kuramoto) are
/// replaced by their cosine and sine.
pub fn latent_r2(
    run: &LoadedRun,
    train: &Signals,
    test: &Signals,
    score: &Latents,
    device: &Device,
) -> Result<Option<f64>, TrainError> {
    let (Some((true_train, l)), Some((true_test, _))) = (&train.latents, &test.latents) else {
        return Ok(None);
    };
    let t = train.meta.time;
    // Phases wrap at 2π; their cosine and sine are what a linear map can recover.
    let phases = run.exp.data.source.latents_are_phases();
    let (true_train, true_test, l) = if phases {
        (
            &cos_sin(true_train, train.n, *l, t),
            &cos_sin(true_test, test.n, *l, t),
            &(2 * l),
        )
    } else {
        (true_train, true_test, l)
    };
    let Some(fit) = infer_latents(run, train, device)? else {
        return Ok(None);
    };
    let wide = |v: &[f32]| v.iter().map(|x| *x as f64).collect::<Vec<f64>>();
    // [n, latent, time] → [n·time, latent]
    let per_step = |v: &[f32], n: usize| -> Vec<f64> {
        let mut out = Vec::with_capacity(n * t * l);
        for i in 0..n {
            for k in 0..t {
                for j in 0..*l {
                    out.push(v[(i * l + j) * t + k] as f64);
                }
            }
        }
        out
    };
    let r2 = match (&fit.path, &score.path) {
        (Some(pf), Some(ps)) => neurogen_eval::linear_r2(
            pf,
            &per_step(true_train, train.n),
            ps,
            &per_step(true_test, test.n),
            fit.dim,
            *l,
        ),
        _ => neurogen_eval::linear_r2(
            &fit.codes,
            &wide(true_train),
            &score.codes,
            &wide(true_test),
            fit.dim,
            l * t,
        ),
    };
    Ok(Some(r2))
}

/// Angles `[n, latent, time]` → `[n, 2·latent, time]`: each angle's cosine, then its sine.
fn cos_sin(v: &[f32], n: usize, l: usize, t: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(2 * v.len());
    for i in 0..n {
        let w = &v[i * l * t..(i + 1) * l * t];
        out.extend(w.iter().map(|a| a.cos()));
        out.extend(w.iter().map(|a| a.sin()));
    }
    out
}

/// Adds the likelihood of `reference` under the run's model to `report`: `neg_elbo`,
/// `neg_iwae` (IWAE-`k` bound) and `bits_per_dim` for the VAE and latent ODE,
/// `neg_log_likelihood` and `bits_per_dim` for RealNVP (all means per window, nats, in the
/// run's normalised units), and for counts `bits_per_spike` against a homogeneous Poisson model
/// with each neuron's mean training rate. Nothing for a family without a likelihood, nor for a
/// conditional run whose reference windows carry no labels.
pub fn add_likelihood(
    report: &mut Report,
    run: &LoadedRun,
    reference: &Signals,
    train: &Signals,
    k: usize,
    seed: u64,
    device: &Device,
) -> Result<(), TrainError> {
    if run.density().is_none() {
        return Ok(());
    }
    if !run.label_names().is_empty() && reference.labels.is_none() {
        // log p(x | label) needs each window's label; say why the rows are missing.
        report.meta.insert(
            "likelihood".into(),
            serde_json::json!(
                "skipped: the run is conditional and the reference windows carry no labels"
            ),
        );
        return Ok(());
    }
    if let Err(e) = run.check_inputs(reference) {
        // A likelihood given the inputs needs the windows' inputs; say why the rows are missing.
        report.meta.insert(
            "likelihood".into(),
            serde_json::json!(format!("skipped: {e}")),
        );
        return Ok(());
    }
    let scores = score_signals(run, reference, k, seed, device)?;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let ll = mean(&scores.log_likelihood);
    match &scores.elbo {
        Some(elbo) => {
            report.set("neg_elbo", -mean(elbo));
            report.set(format!("neg_iwae_k{k}"), -ll);
        }
        None => report.set("neg_log_likelihood", -ll),
    }
    report.set(
        "bits_per_dim",
        -ll / (scores.dim as f64 * std::f64::consts::LN_2),
    );
    if reference.meta.kind == SignalKind::Counts {
        let null = poisson_null(train, reference);
        let spikes: f64 = reference.values.iter().map(|v| *v as f64).sum();
        if spikes > 0.0 {
            let total = ll * reference.n as f64;
            report.set(
                "bits_per_spike",
                (total - null) / (spikes * std::f64::consts::LN_2),
            );
        }
    }
    report.meta.insert(
        "likelihood".into(),
        serde_json::json!({ "bound": scores.bound, "k": k, "windows": reference.n }),
    );
    Ok(())
}

/// Log-likelihood (nats, summed) of `reference` counts under independent Poisson bins with
/// each neuron's mean count per bin in `train` (floored at 1e-6).
fn poisson_null(train: &Signals, reference: &Signals) -> f64 {
    let (c, t) = (train.meta.channels, train.meta.time);
    let mut rate = vec![0f64; c];
    for (i, v) in train.values.iter().enumerate() {
        rate[(i / t) % c] += *v as f64;
    }
    for r in rate.iter_mut() {
        *r = (*r / (train.n * t).max(1) as f64).max(1e-6);
    }
    reference
        .values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let (x, lam) = (*v as f64, rate[(i / t) % c]);
            x * lam.ln() - lam - ln_factorial(x as u64)
        })
        .sum()
}

fn ln_factorial(n: u64) -> f64 {
    (2..=n).map(|k| (k as f64).ln()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use neurogen_data::SignalMeta;

    #[test]
    fn phases_become_cosine_then_sine_per_window() {
        // Two windows, one latent, two steps.
        let v = [0.0, std::f32::consts::FRAC_PI_2, std::f32::consts::PI, 0.0];
        let out = cos_sin(&v, 2, 1, 2);
        let want = [1.0, 0.0, 0.0, 1.0, -1.0, 1.0, 0.0, 0.0];
        for (a, b) in out.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{out:?}");
        }
    }

    #[test]
    fn the_poisson_null_matches_its_formula() {
        let meta = SignalMeta {
            input_names: Vec::new(),
            channels: 2,
            time: 2,
            sfreq: 10.0,
            channel_names: vec!["a".into(), "b".into()],
            kind: SignalKind::Counts,
            unit: "count".into(),
            label_names: vec![],
        };
        // Training rates: neuron a 1.5/bin, neuron b 0 (floored at 1e-6).
        let train = Signals {
            inputs: None,
            values: vec![1.0, 2.0, 0.0, 0.0],
            n: 1,
            meta: meta.clone(),
            latents: None,
            labels: None,
        };
        let reference = Signals {
            values: vec![3.0, 0.0, 0.0, 1.0],
            ..train.clone()
        };
        let want = (3.0 * 1.5f64.ln() - 1.5 - 6f64.ln()) + (-1.5) + (-1e-6) + (1e-6f64.ln() - 1e-6);
        assert!((poisson_null(&train, &reference) - want).abs() < 1e-12);
    }
}
