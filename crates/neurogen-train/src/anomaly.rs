//! Anomaly scores from a run's likelihood: plain likelihood, typicality and the likelihood
//! ratio against a background model, each calibrated into p-values on the validation split.
//!
//! Likelihood alone ranks a flat line as the most normal window there is (a deep generative
//! model's "likelihood paradox"); typicality (Nalisnick et al. 2019) flags windows whose
//! −log p(x) is far from held-out windows' in *either* direction, and the ratio (Ren et
//! al. 2019) subtracts what a per-channel autoregression already explains, so what remains is
//! what the model knows beyond scale and spectrum.

use burn::tensor::Device;
use neurogen_data::{SignalKind, Signals};
use neurogen_eval::anomaly::{p_values, ArBackground, Artefact};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::loaded::{
    score_bound_elements, score_elements, score_residuals, score_signals_common, LoadedRun,
};
use crate::TrainError;

/// The background autoregression's order.
pub const BACKGROUND_ORDER: usize = 8;
/// Windows the typical set is estimated on (a seeded subsample beyond this).
pub const TYPICAL_WINDOWS: usize = 512;
/// The fewest validation windows the typical set is estimated on (else on the training
/// windows). The typical windows are among the windows that calibrate the p-values, so those
/// run a little low; from 500 windows on it did not show (false-positive rates at α = 0.01 of
/// 0.0056–0.0209, mean 0.011, on the nine such benchmark runs), below it did: with this at 100,
/// the EDF's 225 validation windows (each 16 samples from the next) took `vae-edf`'s from 0.027
/// to 0.093.
pub const HELD_OUT_TYPICAL: usize = 500;
/// Validation windows scored for the p-values (a seeded subsample beyond this).
pub const CALIBRATION_WINDOWS: usize = 2000;

/// How a window's anomaly score is made from its likelihood. Higher = more anomalous.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// −log p(x): unlikely windows.
    Likelihood,
    /// |−log p(x) − E_train[−log p]| / sd_train: windows outside the typical set, too likely
    /// as well as too unlikely; where the model gives elements, the larger of that and the
    /// scan (the largest such distance over each channel's [`stretches`]) standardised by
    /// the typical windows' scans.
    Typicality,
    /// −(log p_model(x) − log p_background(x)): what the model finds unlikely beyond the
    /// background's low-level statistics.
    Ratio,
}

impl Method {
    /// Every method, in report order.
    pub const ALL: [Method; 3] = [Method::Likelihood, Method::Typicality, Method::Ratio];

    /// The name in reports and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Method::Likelihood => "likelihood",
            Method::Typicality => "typicality",
            Method::Ratio => "ratio",
        }
    }
}

/// What scoring a set of windows gives before any method is applied.
#[derive(Debug, Clone)]
pub struct Raw {
    /// Per window: the model's log-likelihood (or its bound), nats, normalised units.
    pub ll: Vec<f64>,
    /// Per window, `[channels × time]`: the model's `log p(x_ct | x_{<t})` where it factorises,
    /// else its bound's share per element where the bound splits
    /// ([`Density::bound_elements`](neurogen_models::Density::bound_elements)). A VAE's or
    /// latent ODE's shares sum to the ELBO, not to `ll` (the IWAE bound), so per-channel and
    /// per-element scores need not add up to the window's.
    pub elements: Option<Vec<Vec<f64>>>,
    /// Per window, `[channels × time]`: the model's standard-normal residual of each element
    /// given the past ([`Density::residual_elements`](neurogen_models::Density::residual_elements))
    /// where it gives them (autoregressive models of continuous data), else, on continuous
    /// data, the background autoregression's.
    pub residuals: Option<Vec<Vec<f64>>>,
    /// Per window, `[channels × time]`: 1 where the element repeats the one before it exactly
    /// (x_ct = x_c,t−1), else 0; continuous data only.
    pub repeats: Option<Vec<Vec<f64>>>,
    /// Per window, `[channels × time]`: the background's per-element log-density.
    pub background: Vec<Vec<f64>>,
    /// Channels and steps of a window.
    pub shape: (usize, usize),
    /// The [`stretches`] of a channel that typicality compares.
    spans: Vec<(usize, usize)>,
}

impl Raw {
    /// Scores windows `s` (physical units) under the run and under `background`. A bound
    /// estimated from random draws uses the same draws for every window (see
    /// [`score_signals_common`]): windows are ranked against each other.
    pub fn of(
        run: &LoadedRun,
        s: &Signals,
        background: &ArBackground,
        k: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Raw, TrainError> {
        let factorises = run.density().is_some_and(|d| d.factorises());
        let (ll, elements) = if factorises {
            let e = score_elements(run, s, device)?;
            (e.iter().map(|w| w.iter().sum()).collect(), Some(e))
        } else {
            let ll = score_signals_common(run, s, k, seed, device)?;
            (ll, Raw::shares(run, s, k, seed, device)?)
        };
        let residuals = Raw::residuals(run, s, device)?;
        Ok(Raw::with(ll, elements, residuals, run, s, background))
    }

    /// The residuals of a model that gives them; `None` for the others.
    pub fn residuals(
        run: &LoadedRun,
        s: &Signals,
        device: &Device,
    ) -> Result<Option<Vec<Vec<f64>>>, TrainError> {
        let gives = run.density().is_some_and(|d| d.gives_residuals());
        gives.then(|| score_residuals(run, s, device)).transpose()
    }

    /// The bound's share per element (common draws) for a model that scores whole windows and
    /// whose bound splits; `None` for the others.
    pub fn shares(
        run: &LoadedRun,
        s: &Signals,
        k: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Option<Vec<Vec<f64>>>, TrainError> {
        let splits = run
            .density()
            .is_some_and(|d| !d.factorises() && d.splits_bound());
        splits
            .then(|| score_bound_elements(run, s, k, seed, device))
            .transpose()
    }

    /// A `Raw` from log-likelihoods already computed (e.g. a conditional run's marginal).
    pub fn with(
        ll: Vec<f64>,
        elements: Option<Vec<Vec<f64>>>,
        residuals: Option<Vec<Vec<f64>>>,
        run: &LoadedRun,
        s: &Signals,
        background: &ArBackground,
    ) -> Raw {
        let mut norm = s.clone();
        run.info.norm.apply(&mut norm);
        let (c, t) = (s.meta.channels, s.meta.time);
        let ar = background;
        let background = (0..norm.n)
            .map(|i| ar.elements(norm.window(i), c, t))
            .collect();
        // Exact elements without residuals are sharp enough for sixteenths; a bound's shares
        // are noisier, and their sixteenths' c × 31 more statistics raise clean windows' maxima
        // more than they find (measured on the VAE and latent ODE runs, see the README). With
        // residuals, quarters' whiteness finds what sixteenths' surprise did, and more.
        let exact = run.density().is_some_and(|d| d.factorises());
        let finest = if exact && residuals.is_none() { 16 } else { 4 };
        // A model that scores whole windows has no residuals of its own; the background's
        // (exact, and white under it) still show a held stretch, as the model's split cannot.
        let residuals = residuals.or_else(|| {
            (!exact && s.meta.kind == SignalKind::Continuous).then(|| {
                (0..norm.n)
                    .map(|i| ar.residuals(norm.window(i), c, t))
                    .collect()
            })
        });
        // An exact repeat has probability zero under every density, yet no lower density than
        // any other value: the likelihood cannot see it, so it is counted. (A recording's
        // quantisation repeats values too; the typical windows say how often.)
        let repeats = (s.meta.kind == SignalKind::Continuous).then(|| {
            (0..norm.n)
                .map(|i| {
                    let w = norm.window(i);
                    (0..c * t)
                        .map(|e| f64::from(u8::from(e % t > 0 && w[e] == w[e - 1])))
                        .collect()
                })
                .collect()
        });
        Raw {
            ll,
            elements,
            residuals,
            repeats,
            background,
            shape: (c, t),
            spans: stretches(t, finest),
        }
    }

    /// The kinds of statistic typicality compares, in order: the surprise of each of the
    /// [`stretches`], then, with residuals, each stretch's whiteness, then, on continuous
    /// data, each stretch's count of exact repeats.
    fn kinds(&self) -> Vec<Kind> {
        let mut kinds = vec![Kind::Surprise];
        if self.residuals.is_some() {
            kinds.push(Kind::Whiteness);
        }
        if self.repeats.is_some() {
            kinds.push(Kind::Repeats);
        }
        kinds
    }

    /// Statistics per channel that typicality compares: every kind over every stretch.
    fn per_channel(&self) -> usize {
        self.spans.len() * self.kinds().len()
    }

    /// Per window, `[channel × statistic]` ([`per_channel`](Self::per_channel) of them, see
    /// [`stretches`]), where the model gives elements: the elements' summed surprise over each
    /// stretch of each channel; then, with residuals, each stretch's [`whiteness`] (≈ N(0, 1)
    /// under the model); then, on continuous data, each stretch's count of exact repeats. A
    /// held value is about as likely as a moving one — the first held steps are surprising,
    /// the later ones too likely, and a stretch's sum hides both — but the model mispredicts
    /// every held step alike, so its residuals are correlated, and its values repeat.
    fn stretch_stats(&self) -> Option<Vec<Vec<f64>>> {
        let (c, t) = self.shape;
        let spans = &self.spans;
        let elements = self.elements.as_ref()?;
        Some(
            elements
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    let z = self.residuals.as_ref().map(|r| &r[i]);
                    let held = self.repeats.as_ref().map(|r| &r[i]);
                    let mut out = Vec::with_capacity(c * self.per_channel());
                    for ch in 0..c {
                        let row = &w[ch * t..(ch + 1) * t];
                        for &(s, len) in spans {
                            out.push(-row[s..s + len].iter().sum::<f64>());
                        }
                        if let Some(z) = z {
                            let row = &z[ch * t..(ch + 1) * t];
                            out.extend(spans.iter().map(|&(s, len)| whiteness(&row[s..s + len])));
                        }
                        if let Some(held) = held {
                            let row = &held[ch * t..(ch + 1) * t];
                            out.extend(
                                spans
                                    .iter()
                                    .map(|&(s, len)| row[s..s + len].iter().sum::<f64>()),
                            );
                        }
                    }
                    out
                })
                .collect(),
        )
    }
}

/// A kind of statistic typicality compares over stretches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The summed surprise.
    Surprise,
    /// The residuals' [`whiteness`].
    Whiteness,
    /// The count of exact repeats, measured by its Poisson tail (see [`distance`]); the
    /// typical windows' scans of it are all but zero, so their sd is floored at 1.
    Repeats,
}

/// The lag-1 autocorrelation of residuals `z` scaled by √(len − 1): about N(0, 1) for white
/// residuals, large for a run the model mispredicts alike.
pub fn whiteness(z: &[f64]) -> f64 {
    if z.len() < 2 {
        return 0.0;
    }
    let lag: f64 = z.windows(2).map(|p| p[0] * p[1]).sum();
    let energy: f64 = z.iter().map(|v| v * v).sum();
    let w = ((z.len() - 1) as f64).sqrt() * lag / energy.max(1e-12);
    // A non-finite residual (σ underflowed) says nothing about whiteness; NaN would be
    // dropped silently by the maxima downstream, so say 0 outright.
    if w.is_finite() {
        w
    } else {
        0.0
    }
}

/// The stretches of a `t`-step window typicality compares, as `(start, len)`: the whole window,
/// then half-overlapping quarter windows and, with `finest = 16`, sixteenth windows (of at
/// least 2 steps). An artefact that fills a quarter of one channel is diluted 4 × channels-fold
/// in the window's total −log p; in the stretch that holds it, it is not. (Single steps as well
/// would find a spike at its step, but the maximum over c × t more statistics hides flat
/// quarters: on `wavenet-kuramoto` the flat channel's AUROC fell from 0.904 to 0.865.)
pub fn stretches(t: usize, finest: usize) -> Vec<(usize, usize)> {
    let mut out = vec![(0, t)];
    for parts in [4, 16].into_iter().filter(|&p| p <= finest) {
        let len = t / parts;
        if len < 2 {
            break;
        }
        out.extend(
            (0..)
                .map(|i| i * len / 2)
                .take_while(|s| s + len <= t)
                .map(|s| (s, len)),
        );
    }
    out
}

/// What a method's scores are measured against: the background fitted on training windows,
/// the typical set of held-out (else training) windows' −log p, and the validation windows'
/// raw scores.
#[derive(Debug, Clone)]
pub struct Reference {
    /// The background autoregression (normalised units).
    pub background: ArBackground,
    /// Mean and sd of the typical windows' −log p(x).
    typical: (f64, f64),
    /// Per channel and statistic (`[channel × statistic]`, see [`Raw::stretch_stats`]): mean
    /// and sd of the typical windows' summed surprise over each stretch (and its residuals'
    /// whiteness, and its count of repeats), where the model gives elements.
    typical_stretches: Option<Vec<(f64, f64)>>,
    /// Per element (`[channels × time]`): the typical windows' mean surprise there, where the
    /// model gives elements (a causal model's first steps, predicted from little or no past,
    /// are typically more surprising than its later ones).
    typical_elements: Option<Vec<f64>>,
    /// Per element (`[channels × time]`): how often the typical windows repeat the value
    /// before it there, on continuous data; and the least rate a stretch is given (half a
    /// repeat over all the typical windows).
    typical_repeats: Option<(Vec<f64>, f64)>,
    /// Per kind of statistic (surprise, then whiteness where there are residuals, then repeats
    /// on continuous data): mean and sd of the typical windows' scan, the largest distance over
    /// their statistics of the kind.
    typical_scan: Vec<(f64, f64)>,
    /// The validation windows' raw scores; `None` without a validation split.
    calibration: Option<Raw>,
    /// Windows the typical set was estimated on.
    pub typical_windows: usize,
    /// The split they came from: `validation` or `training`.
    pub typical_split: &'static str,
}

impl Reference {
    /// Fits the background on `train`, estimates the typical set on (at most
    /// [`TYPICAL_WINDOWS`] of) `valid` — or `train` when `valid` holds fewer than
    /// [`HELD_OUT_TYPICAL`] windows — and scores (at most [`CALIBRATION_WINDOWS`] of) `valid`
    /// for the p-values. Deterministic for `seed`.
    ///
    /// Held-out windows, because a model fits its training windows more closely than any new
    /// one: against a flow's training windows every held-out window is atypical (`realnvp-
    /// kuramoto`'s scored a median 3.3 against them, its training windows 1.0), and the
    /// artefact in a window no longer stands out of that.
    pub fn build(
        run: &LoadedRun,
        train: &Signals,
        valid: &Signals,
        k: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Reference, TrainError> {
        if train.n == 0 {
            return Err(TrainError::Input(
                "the run's training split holds no windows to estimate the typical set on".into(),
            ));
        }
        let mut fit_on = neurogen_eval::subsample(train, 4000, seed);
        run.info.norm.apply(&mut fit_on);
        let background = ArBackground::fit(
            &fit_on.values,
            fit_on.meta.channels,
            fit_on.meta.time,
            BACKGROUND_ORDER,
        );
        let (typical_from, typical_split) = if valid.n >= HELD_OUT_TYPICAL {
            (valid, "validation")
        } else {
            (train, "training")
        };
        let typ = neurogen_eval::subsample(typical_from, TYPICAL_WINDOWS, seed);
        let raw = Raw::of(run, &typ, &background, k, seed, device)?;
        let nll: Vec<f64> = raw.ll.iter().map(|v| -v).collect();
        let (typical_stretches, typical_scan) = match raw.stretch_stats() {
            Some(per) => {
                let (typ, scan) = typical_of(&per, &raw);
                (Some(typ), scan)
            }
            None => (None, Vec::new()),
        };
        let typical_elements = raw.elements.as_ref().map(|e| typical_surprise(e));
        let typical_repeats = raw
            .repeats
            .as_ref()
            .map(|r| (mean_per_element(r), 0.5 / r.len().max(1) as f64));
        let calibration = if valid.n > 0 {
            let v = neurogen_eval::subsample(valid, CALIBRATION_WINDOWS, seed);
            Some(Raw::of(run, &v, &background, k, seed, device)?)
        } else {
            None
        };
        Ok(Reference {
            background,
            typical: mean_sd(&nll),
            typical_stretches,
            typical_elements,
            typical_repeats,
            typical_scan,
            calibration,
            typical_windows: typ.n,
            typical_split,
        })
    }

    /// Validation windows behind the p-values (0 without a validation split).
    pub fn calibration_windows(&self) -> usize {
        self.calibration.as_ref().map_or(0, |r| r.ll.len())
    }

    /// Per window: the anomaly score of `method` (higher = more anomalous).
    pub fn score(&self, method: Method, raw: &Raw) -> Vec<f64> {
        match method {
            Method::Likelihood => raw.ll.iter().map(|v| -v).collect(),
            Method::Ratio => raw
                .ll
                .iter()
                .zip(&raw.background)
                .map(|(l, b)| -(l - b.iter().sum::<f64>()))
                .collect(),
            Method::Typicality => {
                let (m, s) = self.typical;
                let whole = raw.ll.iter().map(|v| ((-v - m) / s).abs());
                // A scan's maximum over c × stretches statistics runs high on clean windows
                // too; standardised by its own training mean and sd it is weighed fairly
                // against the whole window's distance, and each kind against the other (the
                // surprise of a bound's shares is heavier-tailed than whiteness, and would
                // drown it).
                match (raw.stretch_stats(), &self.typical_stretches) {
                    (Some(per), Some(typ)) => per
                        .iter()
                        .zip(whole)
                        .map(|(w, whole)| {
                            scans(w, typ, raw)
                                .zip(&self.typical_scan)
                                .map(|(v, (sm, ss))| (v - sm) / ss)
                                .fold(whole, f64::max)
                        })
                        .collect(),
                    _ => whole.collect(),
                }
            }
        }
    }

    /// Per window and channel: the anomaly score of `method` restricted to that channel, where
    /// the model gives elements.
    pub fn channel_scores(&self, method: Method, raw: &Raw) -> Option<Vec<Vec<f64>>> {
        let per = raw.stretch_stats()?;
        let (c, t) = raw.shape;
        let k = raw.per_channel();
        Some(match method {
            Method::Likelihood => per
                .iter()
                .map(|w| (0..c).map(|ch| w[ch * k]).collect())
                .collect(),
            Method::Ratio => per
                .iter()
                .zip(&raw.background)
                .map(|(w, b)| {
                    (0..c)
                        .map(|ch| w[ch * k] + b[ch * t..(ch + 1) * t].iter().sum::<f64>())
                        .collect()
                })
                .collect(),
            Method::Typicality => {
                let typ = self.typical_stretches.as_ref()?;
                per.iter()
                    .map(|w| {
                        // Each kind standardised as the window's score standardises it, so the
                        // channel that drives the window's score has the largest of them.
                        (0..c)
                            .map(|ch| {
                                let span = ch * k..(ch + 1) * k;
                                scans(&w[span.clone()], &typ[span], raw)
                                    .zip(&self.typical_scan)
                                    .map(|(v, (sm, ss))| (v - sm) / ss)
                                    .fold(f64::MIN, f64::max)
                            })
                            .collect()
                    })
                    .collect()
            }
        })
    }

    /// Per window, `[channels × time]`: each element's anomaly score under `method`, where
    /// the model gives elements — localisation in time and channel. Likelihood: the surprise
    /// (−log p(x_ct | x_{<t}), or the element's share of −log p or of the bound); ratio: the
    /// surprise beyond the background's; typicality: the surprise's distance from the
    /// training windows' mean surprise at that element and, where there are residuals, the
    /// larger of that and the surprise W²/2 of the [`whiteness`] W of the residuals in the
    /// eighth of the window centred on the element (N(0, 1) under the model, so W²/2 is in
    /// nats as the surprise is). A held stretch's own steps are too likely, and only its end,
    /// where the signal jumps back, is surprising: the whiteness puts the peak inside it.
    /// (The largest typicality of the stretches holding an element localises no better — a
    /// one-sample spike is anywhere in its sixteenth — and worse on every type measured.)
    pub fn element_scores(&self, method: Method, raw: &Raw) -> Option<Vec<Vec<f64>>> {
        let elements = raw.elements.as_ref()?;
        let (c, t) = raw.shape;
        Some(match method {
            Method::Likelihood => elements
                .iter()
                .map(|w| w.iter().map(|v| -v).collect())
                .collect(),
            Method::Ratio => elements
                .iter()
                .zip(&raw.background)
                .map(|(w, b)| w.iter().zip(b).map(|(v, g)| g - v).collect())
                .collect(),
            Method::Typicality => {
                let typ = self.typical_elements.as_ref()?;
                elements
                    .iter()
                    .enumerate()
                    .map(|(n, w)| {
                        let mut out: Vec<f64> =
                            w.iter().zip(typ).map(|(v, m)| (-v - m).abs()).collect();
                        let span = (t / 8).max(2).min(t);
                        let around = |step: usize| {
                            let start = step.saturating_sub(span / 2).min(t - span);
                            start..start + span
                        };
                        if let Some(z) = raw.residuals.as_ref().map(|r| &r[n]) {
                            for ch in 0..c {
                                let row = &z[ch * t..(ch + 1) * t];
                                for step in 0..t {
                                    let w = whiteness(&row[around(step)]);
                                    let e = &mut out[ch * t + step];
                                    *e = e.max(0.5 * w * w);
                                }
                            }
                        }
                        // The repeats in the same eighth, by their tail surprise under the
                        // training windows' rate there (nats): a held stretch's repeats fill its
                        // own eighths, not its end's.
                        let held = raw.repeats.as_ref().map(|r| &r[n]);
                        if let (Some(held), Some((rate, least))) = (held, &self.typical_repeats) {
                            for ch in 0..c {
                                let row = ch * t..(ch + 1) * t;
                                let (held, rate) = (&held[row.clone()], &rate[row]);
                                for step in 0..t {
                                    let r: f64 = held[around(step)].iter().sum();
                                    let lambda: f64 = rate[around(step)].iter().sum();
                                    let e = &mut out[ch * t + step];
                                    *e = e.max(poisson_tail_surprise(r, lambda.max(*least)));
                                }
                            }
                        }
                        out
                    })
                    .collect()
            }
        })
    }

    /// The conformal p-values of `scores` (of `method`) against the validation windows';
    /// `None` without a validation split.
    pub fn p_values(&self, method: Method, scores: &[f64]) -> Option<Vec<f64>> {
        let cal = self.calibration.as_ref()?;
        Some(p_values(scores, &self.score(method, cal)))
    }
}

/// A statistic's mean and sd over the typical windows.
type MeanSd = (f64, f64);

/// Mean and sd of each of the statistics `per` (of windows scored as `raw` was) over the
/// windows, and per kind of statistic mean and sd of the windows' [`scans`] against them.
fn typical_of(per: &[Vec<f64>], raw: &Raw) -> (Vec<MeanSd>, Vec<MeanSd>) {
    let n = per.first().map_or(0, Vec::len);
    let kinds = raw.kinds();
    let (per_channel, spans) = (raw.per_channel(), raw.spans.len().max(1));
    // A count never seen in training still has a rate: at most half a repeat over them all.
    let least = 0.5 / per.len().max(1) as f64;
    let floor = |kind: Kind, (m, sd): MeanSd| match kind {
        Kind::Repeats => (m.max(least), sd.max(1.0)),
        _ => (m, sd),
    };
    let typ: Vec<(f64, f64)> = (0..n)
        .map(|i| {
            let kind = kinds[(i % per_channel) / spans];
            floor(kind, mean_sd(&per.iter().map(|w| w[i]).collect::<Vec<_>>()))
        })
        .collect();
    let all: Vec<Vec<f64>> = per.iter().map(|w| scans(w, &typ, raw).collect()).collect();
    let scan = kinds
        .iter()
        .enumerate()
        .map(|(k, &kind)| floor(kind, mean_sd(&all.iter().map(|s| s[k]).collect::<Vec<_>>())))
        .collect();
    (typ, scan)
}

/// Per kind of statistic (see [`Raw::stretch_stats`]): the largest distance of a window's
/// statistics `w` of that kind from their typical values `typ`.
fn scans<'a>(w: &'a [f64], typ: &'a [(f64, f64)], raw: &Raw) -> impl Iterator<Item = f64> + 'a {
    let kinds = raw.kinds();
    let (per_channel, spans) = (raw.per_channel(), raw.spans.len().max(1));
    (0..kinds.len()).map(move |k| {
        (0..w.len())
            .filter(|i| (i % per_channel) / spans == k)
            .map(|i| distance(kinds[k], w[i], typ[i]))
            .fold(0.0, f64::max)
    })
}

/// How far a statistic `v` of `kind` lies from its typical `(m, s)`, in standard deviations:
/// |v − m| / s; for a count of repeats, the standard-normal deviate √(2S) of its tail
/// surprise S = −ln P(N ≥ v) under a Poisson of the typical windows' mean count `m` (a
/// continuous signal's is zero, and one repeat is then as telling as several sds).
fn distance(kind: Kind, v: f64, (m, s): (f64, f64)) -> f64 {
    match kind {
        Kind::Repeats => (2.0 * poisson_tail_surprise(v, m)).sqrt(),
        _ => ((v - m) / s).abs(),
    }
}

/// −ln P(N ≥ k) for N ~ Poisson(λ), 0 where k ≤ λ: how surprising k or more events are.
pub fn poisson_tail_surprise(k: f64, lambda: f64) -> f64 {
    if k <= lambda || k < 1.0 {
        return 0.0;
    }
    let k = k.round();
    // ln pmf(k) + ln Σ_{j ≥ k} pmf(j) / pmf(k), the sum's terms λ / (k + 1), … falling fast.
    let ln_fact: f64 = (2..=k as u64).map(|j| (j as f64).ln()).sum();
    let ln_pmf = k * lambda.ln() - lambda - ln_fact;
    let (mut term, mut sum, mut j) = (1.0f64, 1.0f64, k);
    while term > 1e-12 * sum && j < k + 10_000.0 {
        j += 1.0;
        term *= lambda / j;
        sum += term;
    }
    (-(ln_pmf + sum.ln())).max(0.0)
}

/// The step at which element scores `w` (`[channels × time]`), summed over channels, peak:
/// where the benchmark says a window's anomaly is.
fn peak_step(w: &[f64], (c, t): (usize, usize)) -> usize {
    let per_step: Vec<f64> = (0..t)
        .map(|s| (0..c).map(|ch| w[ch * t + s]).sum())
        .collect();
    (0..t)
        .max_by(|&x, &y| per_step[x].total_cmp(&per_step[y]))
        .unwrap_or(0)
}

/// The mean surprise of each element over windows `e` (log-likelihoods per element).
fn typical_surprise(e: &[Vec<f64>]) -> Vec<f64> {
    mean_per_element(e).iter().map(|m| -m).collect()
}

/// The mean of each element over windows `e`.
fn mean_per_element(e: &[Vec<f64>]) -> Vec<f64> {
    let n = e.len().max(1) as f64;
    let mut sum = vec![0.0; e.first().map_or(0, Vec::len)];
    for w in e {
        sum.iter_mut().zip(w).for_each(|(s, v)| *s += v);
    }
    sum.iter().map(|s| s / n).collect()
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    // A floor keeps a perfectly constant training score from dividing by zero.
    (m, var.sqrt().max(1e-9 * m.abs().max(1.0)))
}

/// Merges flagged windows into stretches of the recording: `(first sample, end sample,
/// smallest p-value)` per run of overlapping or adjacent flagged windows, in order.
pub fn flagged_stretches(
    starts: &[usize],
    len: usize,
    flags: &[bool],
    p: &[f64],
) -> Vec<(usize, usize, f64)> {
    let mut order: Vec<usize> = (0..starts.len()).filter(|&i| flags[i]).collect();
    order.sort_by_key(|&i| starts[i]);
    let mut out: Vec<(usize, usize, f64)> = Vec::new();
    for i in order {
        let (s, e) = (starts[i], starts[i] + len);
        match out.last_mut() {
            Some(last) if s <= last.1 => {
                last.1 = last.1.max(e);
                last.2 = last.2.min(p[i]);
            }
            _ => out.push((s, e, p[i])),
        }
    }
    out
}

/// What [`benchmark`] measured: per method and artefact type, how well clean held-out windows
/// are told from the same windows with the artefact injected.
#[derive(Debug, Clone)]
pub struct Benchmark {
    /// The methods, rows of every table.
    pub methods: Vec<Method>,
    /// The artefact types, columns.
    pub artefacts: Vec<Artefact>,
    /// `[method][artefact]`: ROC AUC, injected = positive.
    pub auroc: Vec<Vec<f64>>,
    /// `[method][artefact]`: average precision.
    pub auprc: Vec<Vec<f64>>,
    /// `[method][artefact]`: fraction of injected windows whose peak per-step score falls inside
    /// the injected stretch; `None` where the model gives no per-element scores.
    pub localisation: Option<Vec<Vec<f64>>>,
    /// `[method]`: the fraction of clean test windows (all of them, up to
    /// [`CALIBRATION_WINDOWS`]) flagged at `alpha`.
    pub false_positive_rate: Vec<f64>,
    /// `[method]`: the KS statistic of those windows' p-values against uniform.
    pub p_value_ks: Vec<f64>,
    /// The significance level of `false_positive_rate`.
    pub alpha: f64,
    /// Clean test windows (and as many injected ones per type).
    pub windows: usize,
    /// Clean test windows behind `false_positive_rate` and `p_value_ks`.
    pub clean_windows: usize,
    /// Validation windows behind the p-values.
    pub calibration_windows: usize,
    /// Windows behind the typical set.
    pub typical_windows: usize,
    /// The split they came from.
    pub typical_split: &'static str,
}

/// The artefact benchmark of `neurogen eval --anomalies`: at most `n` test windows (seeded
/// subsample) scored clean and with each [`Artefact`] injected (in normalised units, see
/// [`neurogen_eval::anomaly`]), under every [`Method`]. Deterministic for `seed`.
#[allow(clippy::too_many_arguments)]
pub fn benchmark(
    run: &LoadedRun,
    train: &Signals,
    valid: &Signals,
    test: &Signals,
    n: usize,
    (k, seed, alpha): (usize, u64, f64),
    device: &Device,
    progress: &mut dyn FnMut(&str),
) -> Result<Benchmark, TrainError> {
    if test.meta.kind == neurogen_data::SignalKind::Counts {
        return Err(TrainError::Input(
            "--anomalies: the artefact benchmark injects EEG artefacts into continuous signals; this run models spike counts".into(),
        ));
    }
    if test.n < 2 {
        return Err(TrainError::Input(format!(
            "--anomalies: the run's test split holds {} window(s); at least 2 are needed",
            test.n
        )));
    }
    progress("scoring training and validation windows (typical set, background, calibration)");
    let reference = Reference::build(run, train, valid, k, seed, device)?;
    let clean = neurogen_eval::subsample(test, n, seed);
    let clean_raw = Raw::of(run, &clean, &reference.background, k, seed, device)?;
    let (c, t) = (clean.meta.channels, clean.meta.time);
    let methods = Method::ALL.to_vec();
    let artefacts = Artefact::ALL.to_vec();
    let mut auroc = vec![Vec::new(); methods.len()];
    let mut auprc = vec![Vec::new(); methods.len()];
    let mut localisation = clean_raw
        .elements
        .as_ref()
        .map(|_| vec![Vec::new(); methods.len()]);
    // The clean windows' scores, once: every artefact is told from the same ones.
    let clean_scores: Vec<Vec<f64>> = methods
        .iter()
        .map(|&m| reference.score(m, &clean_raw))
        .collect();
    for (a_i, artefact) in artefacts.iter().enumerate() {
        progress(&format!(
            "injecting {} into {} test windows",
            artefact.name(),
            clean.n
        ));
        let mut inj = clean.clone();
        run.info.norm.apply(&mut inj);
        let mut rng = StdRng::seed_from_u64(seed.wrapping_add(1 + a_i as u64));
        let len = c * t;
        let mut at = Vec::with_capacity(inj.n);
        for w in inj.values.chunks_mut(len) {
            at.push(artefact.inject(w, c, t, inj.meta.sfreq, &mut rng));
        }
        run.info.norm.invert(&mut inj);
        let raw = Raw::of(run, &inj, &reference.background, k, seed, device)?;
        for (m_i, &m) in methods.iter().enumerate() {
            let mut scores = clean_scores[m_i].clone();
            scores.extend(reference.score(m, &raw));
            let labels: Vec<bool> = (0..2 * clean.n).map(|i| i >= clean.n).collect();
            auroc[m_i].push(neurogen_eval::auc(&scores, &labels));
            auprc[m_i].push(neurogen_eval::anomaly::auprc(&scores, &labels));
            if let (Some(loc), Some(el)) = (&mut localisation, reference.element_scores(m, &raw)) {
                let inside = el
                    .iter()
                    .zip(&at)
                    .filter(|(w, injected)| injected.contains(peak_step(w, (c, t))))
                    .count();
                loc[m_i].push(inside as f64 / clean.n as f64);
            }
        }
    }
    // A rate of 1 % needs more than a few hundred windows to be told from 0.5 % or 2 %: the
    // false positives are counted on every clean test window (up to the calibration's size).
    let held = neurogen_eval::subsample(test, CALIBRATION_WINDOWS, seed);
    let held_raw = if held.n == clean.n {
        clean_raw
    } else {
        progress(&format!(
            "scoring {} clean test windows for the false-positive rate",
            held.n
        ));
        Raw::of(run, &held, &reference.background, k, seed, device)?
    };
    let mut false_positive_rate = Vec::new();
    let mut p_value_ks = Vec::new();
    for &m in &methods {
        let p = reference
            .p_values(m, &reference.score(m, &held_raw))
            .unwrap_or_default();
        let flagged = p.iter().filter(|v| **v <= alpha).count();
        false_positive_rate.push(if p.is_empty() {
            f64::NAN
        } else {
            flagged as f64 / p.len() as f64
        });
        p_value_ks.push(if p.is_empty() {
            f64::NAN
        } else {
            neurogen_eval::anomaly::ks_uniform(&p)
        });
    }
    Ok(Benchmark {
        methods,
        artefacts,
        auroc,
        auprc,
        localisation,
        false_positive_rate,
        p_value_ks,
        alpha,
        windows: clean.n,
        clean_windows: held.n,
        calibration_windows: reference.calibration_windows(),
        typical_windows: reference.typical_windows,
        typical_split: reference.typical_split,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` windows of `(channels, time)` elements drawn uniformly from (−2, 0), without
    /// residuals, with `repeats`.
    fn uniform_raw(
        rng: &mut StdRng,
        n: usize,
        (c, t): (usize, usize),
        finest: usize,
        repeats: Option<Vec<Vec<f64>>>,
    ) -> Raw {
        use rand::Rng;
        let elements: Vec<Vec<f64>> = (0..n)
            .map(|_| (0..c * t).map(|_| rng.random_range(-2.0..0.0)).collect())
            .collect();
        Raw {
            ll: elements.iter().map(|w| w.iter().sum()).collect(),
            elements: Some(elements),
            residuals: None,
            repeats,
            background: vec![vec![-1.0; c * t]; n],
            shape: (c, t),
            spans: stretches(t, finest),
        }
    }

    /// The reference of typical windows `train` (a stand-in background, no calibration).
    fn reference_of(train: &Raw, typical_repeats: Option<(Vec<f64>, f64)>) -> Reference {
        let (c, t) = train.shape;
        let (typ, typical_scan) = typical_of(&train.stretch_stats().unwrap(), train);
        Reference {
            background: ArBackground::fit(&vec![0.5f32; c * t], c, t, 1),
            typical: mean_sd(&train.ll.iter().map(|v| -v).collect::<Vec<_>>()),
            typical_stretches: Some(typ),
            typical_elements: Some(typical_surprise(train.elements.as_ref().unwrap())),
            typical_repeats,
            typical_scan,
            calibration: None,
            typical_windows: train.ll.len(),
            typical_split: "training",
        }
    }

    #[test]
    fn overlapping_flagged_windows_merge_into_one_stretch() {
        let starts = [0, 128, 256, 384, 512, 640];
        let flags = [true, true, false, false, true, false];
        let p = [0.01, 0.002, 0.5, 0.4, 0.009, 0.3];
        let got = flagged_stretches(&starts, 256, &flags, &p);
        assert_eq!(got, vec![(0, 384, 0.002), (512, 768, 0.009)]);
        assert!(flagged_stretches(&starts, 128, &[false; 6], &p).is_empty());
    }

    #[test]
    fn stretches_are_the_window_then_half_overlapping_quarters_and_sixteenths() {
        let s = stretches(32, 16);
        assert_eq!(s[0], (0, 32));
        assert_eq!(
            &s[1..8],
            &[(0, 8), (4, 8), (8, 8), (12, 8), (16, 8), (20, 8), (24, 8)]
        );
        assert_eq!(s.len(), 1 + 7 + 31);
        assert!(s[8..].iter().all(|&(_, len)| len == 2));
        assert_eq!(s.last(), Some(&(30, 2)));
        // Too short for sixteenths: the window and its quarters.
        assert_eq!(stretches(16, 16).len(), 1 + 7);
        assert_eq!(stretches(1, 16), vec![(0, 1)]);
        // A bound's shares: the window and its quarters only.
        assert_eq!(stretches(32, 4), s[..8].to_vec());
    }

    #[test]
    fn a_window_s_typicality_is_the_largest_of_its_whole_and_channel_scores() {
        let (c, t) = (3, 32);
        let mut rng = StdRng::seed_from_u64(3);
        let mut raw_of = |n: usize| uniform_raw(&mut rng, n, (c, t), 16, None);
        let train = raw_of(50);
        let reference = reference_of(&train, None);
        assert_eq!(
            reference.typical_scan.len(),
            1,
            "one kind of statistic without residuals"
        );
        let test = raw_of(5);
        let scores = reference.score(Method::Typicality, &test);
        let channels = reference.channel_scores(Method::Typicality, &test).unwrap();
        let (m, sd) = reference.typical;
        for ((s, ch), ll) in scores.iter().zip(&channels).zip(&test.ll) {
            // The whole window's distance, or the largest channel's (each channel's scan
            // standardised by the typical windows' largest).
            let whole = ((-ll - m) / sd).abs();
            let largest = ch.iter().copied().fold(f64::MIN, f64::max);
            assert_eq!(*s, whole.max(largest));
        }
        // A window typical channel by channel but not as a whole is told by the whole.
        let mut shifted = test.clone();
        shifted.ll[0] -= 100.0 * sd;
        assert!(reference.score(Method::Typicality, &shifted)[0] > 90.0);
        // Elements: each one's distance from the training windows' mean surprise there.
        let elements = reference.element_scores(Method::Typicality, &test).unwrap();
        let typical = -train
            .elements
            .as_ref()
            .unwrap()
            .iter()
            .map(|w| w[t + 5])
            .sum::<f64>()
            / 50.0;
        let v = test.elements.as_ref().unwrap()[2][t + 5];
        assert!((elements[2][t + 5] - (-v - typical).abs()).abs() < 1e-12);
    }

    #[test]
    fn whiteness_is_the_scaled_lag_one_autocorrelation() {
        // Constant: Σ z_t z_{t−1} / Σ z_t² = 4/5, times √4.
        assert!((whiteness(&[0.3; 5]) - 2.0 * 0.8).abs() < 1e-12);
        assert!((whiteness(&[1.0, -1.0, 1.0, -1.0, 1.0]) + 2.0 * 0.8).abs() < 1e-12);
        assert_eq!(whiteness(&[0.0; 4]), 0.0);
        assert_eq!(whiteness(&[2.0]), 0.0);
    }

    #[test]
    fn correlated_residuals_raise_typicality_and_localise_where_the_surprise_does_not() {
        use rand::Rng;
        let (c, t) = (3, 256);
        let mut rng = StdRng::seed_from_u64(5);
        let mut raw_of = |n: usize| {
            let mut draw = |_| {
                // Box–Muller: white N(0, 1) residuals, as under the model.
                let (u, v): (f64, f64) = (rng.random_range(1e-12..1.0), rng.random());
                (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
            };
            let residuals: Vec<Vec<f64>> = (0..n)
                .map(|_| (0..c * t).map(&mut draw).collect())
                .collect();
            let elements: Vec<Vec<f64>> = residuals
                .iter()
                .map(|w| w.iter().map(|z| -0.5 * z * z - 0.919).collect())
                .collect();
            Raw {
                ll: elements.iter().map(|w| w.iter().sum()).collect(),
                elements: Some(elements),
                residuals: Some(residuals),
                repeats: None,
                background: vec![vec![-1.0; c * t]; n],
                shape: (c, t),
                spans: stretches(t, 4),
            }
        };
        let train = raw_of(200);
        assert_eq!(
            train.stretch_stats().unwrap()[0].len(),
            c * 2 * stretches(t, 4).len()
        );
        let reference = reference_of(&train, None);
        assert_eq!(
            reference.typical_scan.len(),
            2,
            "surprise and whiteness, each standardised"
        );
        let clean = raw_of(40);
        // Channel 1 held over steps 96..160: its residuals one small value, and its surprise
        // left as it was, so only the residuals tell.
        let mut held = clean.clone();
        for w in held.residuals.as_mut().unwrap() {
            w[t + 96..t + 160].iter_mut().for_each(|z| *z = 0.4);
        }
        let clean_scores = reference.score(Method::Typicality, &clean);
        let held_scores = reference.score(Method::Typicality, &held);
        let worst_clean = clean_scores.iter().copied().fold(f64::MIN, f64::max);
        assert!(
            held_scores.iter().all(|s| *s > worst_clean),
            "{held_scores:?} vs clean up to {worst_clean}"
        );
        // The held channel has the largest channel score (whiteness standardised as the
        // window's score standardises it), and the peak element is inside the held stretch.
        for ch in reference.channel_scores(Method::Typicality, &held).unwrap() {
            let top = (0..c).max_by(|&a, &b| ch[a].total_cmp(&ch[b])).unwrap();
            assert_eq!(top, 1, "channel scores {ch:?}");
        }
        for w in reference.element_scores(Method::Typicality, &held).unwrap() {
            let peak = peak_step(&w, (c, t));
            assert!((96..160).contains(&peak), "peak at {peak}");
        }
    }

    #[test]
    fn the_poisson_tail_surprise_is_minus_the_log_of_the_tail() {
        // P(N ≥ 2 | λ = 0.5) = 1 − e^−0.5 (1 + 0.5).
        let tail = 1.0 - (-0.5f64).exp() * 1.5;
        assert!((poisson_tail_surprise(2.0, 0.5) + tail.ln()).abs() < 1e-9);
        // P(N ≥ 1 | λ) = 1 − e^−λ.
        let l: f64 = 1e-3;
        assert!((poisson_tail_surprise(1.0, l) + (1.0 - (-l).exp()).ln()).abs() < 1e-6);
        assert_eq!(poisson_tail_surprise(0.0, 0.5), 0.0);
        assert_eq!(
            poisson_tail_surprise(3.0, 4.0),
            0.0,
            "no more than expected"
        );
        let s: Vec<f64> = (1..20)
            .map(|k| poisson_tail_surprise(k as f64, 0.01))
            .collect();
        assert!(s.windows(2).all(|p| p[1] > p[0]), "{s:?}");
    }

    #[test]
    fn exact_repeats_raise_typicality_and_localise_though_no_density_sees_them() {
        let (c, t) = (3, 256);
        let mut rng = StdRng::seed_from_u64(9);
        let mut raw_of =
            |n: usize| uniform_raw(&mut rng, n, (c, t), 4, Some(vec![vec![0.0; c * t]; n]));
        let train = raw_of(100);
        let reference = reference_of(&train, Some((vec![0.0; c * t], 0.5 / 100.0)));
        assert_eq!(reference.typical_scan.len(), 2, "surprise and repeats");
        let clean = raw_of(30);
        // Channel 2 clipped over steps 100..164: five of its values repeat the one before.
        let mut clipped = clean.clone();
        for w in clipped.repeats.as_mut().unwrap() {
            for step in [110, 111, 130, 150, 151] {
                w[2 * t + step] = 1.0;
            }
        }
        let clean_scores = reference.score(Method::Typicality, &clean);
        let worst_clean = clean_scores.iter().copied().fold(f64::MIN, f64::max);
        let scores = reference.score(Method::Typicality, &clipped);
        assert!(
            scores.iter().all(|s| *s > worst_clean),
            "{scores:?} vs clean up to {worst_clean}"
        );
        for w in reference
            .element_scores(Method::Typicality, &clipped)
            .unwrap()
        {
            let peak = peak_step(&w, (c, t));
            assert!((100..164).contains(&peak), "peak at {peak}");
        }
    }

    #[test]
    fn typical_scale_is_the_sample_sd() {
        let (m, s) = mean_sd(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(m, 2.5);
        assert!((s - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert!(mean_sd(&[3.0, 3.0]).1 > 0.0);
    }
}
