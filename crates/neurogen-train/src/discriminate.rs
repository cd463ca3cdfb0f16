//! The neural discriminative score of time-series generation (TimeGAN's post-hoc classifier, as
//! TSGBench runs it): a small 1-D CNN learns to tell real training windows from synthetic
//! windows, then is scored on held-out real windows against fresh synthetic ones.
//!
//! The logistic C2ST of `neurogen-eval` sees only hand-made features (band powers, moments); a
//! learned classifier sees shapes those miss (waveforms, spike timing), so the two complement
//! each other. It lives here, not in `neurogen-eval`, because it trains with burn.
//!
//! Everything random — initial weights, batch order — is drawn on the host from the seed, so
//! the score is a function of the windows and the seed on every backend.

use burn::module::{Module, Param};
use burn::optim::GradientsParams;
use burn::tensor::activation::softplus;
use burn::tensor::{Device, Tensor};
use neurogen_data::Signals;
use neurogen_models::conv::{conv1d_nlc, leaky_relu};
use rand::seq::SliceRandom;
use serde_json::json;

use crate::rng::{normals, rng, Stream};
use crate::trainer::host_tensor;
use crate::TrainError;

/// The classifier and its training; the defaults are what `neurogen eval` uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiscriminatorConfig {
    /// Channels of every convolution.
    pub hidden: usize,
    /// Strided convolutions (kernel 5, stride 2), each halving time.
    pub layers: usize,
    /// Adam steps.
    pub steps: usize,
    /// Windows per step, half real and half synthetic.
    pub batch_size: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// Seed of the initial weights and the batch order.
    pub seed: u64,
}

impl Default for DiscriminatorConfig {
    fn default() -> Self {
        DiscriminatorConfig {
            hidden: 32,
            layers: 3,
            steps: 400,
            batch_size: 64,
            lr: 1e-3,
            seed: 0,
        }
    }
}

impl DiscriminatorConfig {
    /// The settings as the report's `meta` states them.
    pub fn describe(&self) -> serde_json::Value {
        json!({
            "architecture": format!(
                "{} × (conv1d k=5 stride 2, {} channels, LeakyReLU 0.2) → mean over time → linear → logit",
                self.layers, self.hidden
            ),
            "steps": self.steps,
            "batch_size": self.batch_size,
            "optimiser": format!("Adam, lr {}", self.lr),
            "seed": self.seed,
            "inputs": "windows z-scored per channel with the real training windows' statistics",
        })
    }
}

/// Held-out performance of the classifier.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Discrimination {
    /// Balanced accuracy on the held-out pairs (threshold at probability ½).
    pub accuracy: f64,
    /// |accuracy − 0.5|: 0 when the classifier cannot tell, 0.5 when it always can.
    pub score: f64,
    /// Area under the ROC curve of real against synthetic.
    pub auc: f64,
}

#[derive(Module, Debug)]
struct ConvLayer {
    weight: Param<Tensor<3>>,
    bias: Param<Tensor<1>>,
}

/// Strided convolutions, a mean over time and a linear logit.
#[derive(Module, Debug)]
struct Classifier {
    convs: Vec<ConvLayer>,
    head: Param<Tensor<2>>,
    head_bias: Param<Tensor<1>>,
}

const KERNEL: usize = 5;

impl Classifier {
    /// He-normal weights from host draws, zero biases.
    fn init(channels: usize, cfg: &DiscriminatorConfig, device: &Device) -> Classifier {
        let mut r = rng(cfg.seed, Stream::Discriminate, 0);
        let mut draw = |shape: [usize; 3], fan_in: usize| {
            let n = shape.iter().product();
            let scale = (2.0 / fan_in as f32).sqrt();
            let w = normals(&mut r, n).into_iter().map(|v| v * scale).collect();
            host_tensor(w, shape, device)
        };
        let mut convs = Vec::new();
        let mut c_in = channels;
        for _ in 0..cfg.layers.max(1) {
            convs.push(ConvLayer {
                weight: Param::from_tensor(draw([cfg.hidden, c_in, KERNEL], c_in * KERNEL)),
                bias: Param::from_tensor(Tensor::zeros([cfg.hidden], device)),
            });
            c_in = cfg.hidden;
        }
        let head = draw([1, cfg.hidden, 1], cfg.hidden).reshape([cfg.hidden, 1]);
        Classifier {
            convs,
            head: Param::from_tensor(head),
            head_bias: Param::from_tensor(Tensor::zeros([1], device)),
        }
    }

    /// # Shapes
    /// - `x`: `[batch, channels, time]` → logits of "real", `[batch]`
    fn forward(&self, x: Tensor<3>) -> Tensor<1> {
        let b = x.dims()[0];
        let h = self.convs.iter().fold(x.swap_dims(1, 2), |h, l| {
            let y = conv1d_nlc(h, l.weight.val(), Some(l.bias.val()), 2, KERNEL / 2);
            leaky_relu(y, 0.2)
        }); // [batch, time', hidden]
        let c = h.dims()[2];
        let pooled = h.mean_dim(1).reshape([b, c]); // [batch, hidden]
        (pooled.matmul(self.head.val()) + self.head_bias.val().reshape([1, 1])).reshape([b])
    }
}

/// Trains the classifier on `real_train` (label real) against `fake_train` (label synthetic),
/// then scores `real_test` against `fake_test`. Every set holds `[n, channels, time]` windows of
/// one shape, in physical units; each needs at least two windows.
pub fn discriminative_score(
    real_train: &Signals,
    fake_train: &Signals,
    real_test: &Signals,
    fake_test: &Signals,
    cfg: &DiscriminatorConfig,
    device: &Device,
) -> Result<Discrimination, TrainError> {
    let sets = [real_train, fake_train, real_test, fake_test];
    let (c, t) = (real_train.meta.channels, real_train.meta.time);
    for s in sets {
        if (s.meta.channels, s.meta.time) != (c, t) || s.n < 2 {
            return Err(TrainError::Input(format!(
                "the discriminative score needs at least 2 windows of [{c} × {t}] per set, \
                 got {} of [{} × {}]",
                s.n, s.meta.channels, s.meta.time
            )));
        }
    }
    let by = neurogen_eval::standardiser(real_train);
    let [rt, ft, re, fe] = sets.map(|s| neurogen_eval::standardised(s, &by));
    let len = c * t;
    let ad = device.clone().autodiff();
    let mut model = Classifier::init(c, cfg, &ad);
    let mut optim = crate::adam::Adam {
        beta_1: 0.9,
        beta_2: 0.999,
        epsilon: 1e-8,
        weight_decay: 0.0,
    }
    .init();
    let half = (cfg.batch_size / 2).max(1);
    let gather = |values: &[f32], idx: &[usize], out: &mut Vec<f32>| {
        for &i in idx {
            out.extend_from_slice(&values[i * len..(i + 1) * len]);
        }
    };
    // Each side cycles through its own seeded permutations, one per pass.
    let picks = |n: usize, step: usize, side: u64| -> Vec<usize> {
        let k = half.min(n);
        let per_pass = n / k;
        let (pass, j) = (step / per_pass, step % per_pass);
        let mut perm: Vec<usize> = (0..n).collect();
        perm.shuffle(&mut rng(
            cfg.seed,
            Stream::Discriminate,
            1 + 2 * pass as u64 + side,
        ));
        perm[j * k..(j + 1) * k].to_vec()
    };
    for step in 0..cfg.steps {
        let (ir, if_) = (picks(real_train.n, step, 0), picks(fake_train.n, step, 1));
        let mut x = Vec::with_capacity((ir.len() + if_.len()) * len);
        gather(&rt, &ir, &mut x);
        gather(&ft, &if_, &mut x);
        let (nr, nf) = (ir.len(), if_.len());
        let x = host_tensor(x, [nr + nf, c, t], &ad); // [batch, channels, time]
        let logits = model.forward(x); // [batch]
        let real = logits.clone().narrow(0, 0, nr);
        let fake = logits.narrow(0, nr, nf);
        let loss = softplus(-real, 1.0).mean() + softplus(fake, 1.0).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(cfg.lr, model, grads);
    }
    let model = model.valid();
    let logits = |values: &[f32], n: usize| -> Result<Vec<f64>, TrainError> {
        let mut out = Vec::with_capacity(n);
        for start in (0..n).step_by(256) {
            let m = 256.min(n - start);
            let x = values[start * len..(start + m) * len].to_vec();
            let y = model.forward(host_tensor(x, [m, c, t], device));
            out.extend(crate::loaded::host_f64(y.into_data(), "classifier logits")?);
        }
        Ok(out)
    };
    let (lr_, lf) = (logits(&re, real_test.n)?, logits(&fe, fake_test.n)?);
    if lr_.iter().chain(&lf).any(|l| !l.is_finite()) {
        // A diverged classifier would score 0.5 everywhere: "indistinguishable" by accident.
        return Err(TrainError::Input(
            "the discriminator diverged (non-finite logits); are the windows finite?".into(),
        ));
    }
    let hit = |v: &[f64], real: bool| {
        v.iter().filter(|&&l| (l > 0.0) == real).count() as f64 / v.len() as f64
    };
    let accuracy = 0.5 * (hit(&lr_, true) + hit(&lf, false));
    let labels: Vec<bool> = (0..lr_.len())
        .map(|_| true)
        .chain(lf.iter().map(|_| false))
        .collect();
    let scores: Vec<f64> = lr_.iter().chain(&lf).copied().collect();
    Ok(Discrimination {
        accuracy,
        score: (accuracy - 0.5).abs(),
        auc: neurogen_eval::auc(&scores, &labels),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use neurogen_data::{SignalKind, SignalMeta};
    use rand::{Rng, SeedableRng};

    /// `n` windows of 2 channels × 128 samples: a sinusoid of `freq` cycles per window with a
    /// random phase, in unit white noise.
    fn waves(n: usize, freq: f64, seed: u64) -> Signals {
        let mut r = rand::rngs::StdRng::seed_from_u64(seed);
        let (c, t) = (2, 128);
        let mut values = Vec::with_capacity(n * c * t);
        for _ in 0..n * c {
            let phase = r.random::<f64>() * std::f64::consts::TAU;
            for k in 0..t {
                let x = k as f64 / t as f64;
                let s = 2.0 * (std::f64::consts::TAU * freq * x + phase).sin();
                values.push((s + r.sample::<f64, _>(rand_distr::StandardNormal)) as f32);
            }
        }
        Signals {
            inputs: None,
            values,
            n,
            meta: SignalMeta {
                input_names: Vec::new(),
                channels: c,
                time: t,
                sfreq: 128.0,
                channel_names: vec!["a".into(), "b".into()],
                kind: SignalKind::Continuous,
                unit: "uV".into(),
                label_names: vec![],
            },
            latents: None,
            labels: None,
        }
    }

    #[test]
    fn two_draws_of_one_process_score_near_zero_and_different_ones_near_half() {
        let device = Device::flex();
        let cfg = DiscriminatorConfig {
            steps: 150,
            ..DiscriminatorConfig::default()
        };
        let (a, b, c, d) = (
            waves(200, 8.0, 1),
            waves(200, 8.0, 2),
            waves(200, 8.0, 3),
            waves(200, 8.0, 4),
        );
        let same = discriminative_score(&a, &b, &c, &d, &cfg, &device).unwrap();
        assert!(same.score < 0.1, "{same:?}");
        assert!((same.auc - 0.5).abs() < 0.12, "{same:?}");
        // A different rhythm: 20 cycles per window instead of 8.
        let (e, f) = (waves(200, 20.0, 5), waves(200, 20.0, 6));
        let other = discriminative_score(&a, &e, &c, &f, &cfg, &device).unwrap();
        assert!(other.score > 0.45, "{other:?}");
        assert!(other.auc > 0.98, "{other:?}");
        // A function of the windows and the seed.
        let again = discriminative_score(&a, &e, &c, &f, &cfg, &device).unwrap();
        assert_eq!(other, again);
    }

    #[test]
    fn mismatched_sets_are_refused() {
        let a = waves(10, 8.0, 1);
        let one = a.select(&[0]);
        let e = discriminative_score(
            &a,
            &a,
            &a,
            &one,
            &DiscriminatorConfig::default(),
            &Device::flex(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("at least 2 windows"), "{e}");
    }
}
