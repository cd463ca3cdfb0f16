//! Generative adversarial network: a generator from noise to windows and a critic that scores
//! windows, as 1-D convolution stacks (DCGAN-style) or MLPs.
//!
//! The two players are separate modules with separate optimisers; the trainer that alternates
//! them is neurogen-train's `gan.rs` (its `vae_gan.rs` trains the same critic against a VAE,
//! [`AdversarialConfig`]). This file holds the networks and the losses, so each loss's sign and which player it differentiates can be
//! tested on its own.

use burn::module::Module;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::activation::{relu, softplus};
use burn::tensor::{Device, Tensor};
use neurogen_data::SignalKind;
use serde::{Deserialize, Serialize};

use crate::condition::{self, LabelEmbedding};
use crate::conv::{leaky_relu, ConvDown, ConvUp, Upsample};
use crate::mlp::MlpHead;
use crate::spectral::SnLinear;
use crate::{FamilyConfig, ModelError, Observation, Sampler, WindowShape};

/// Network shape of both players.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    /// Multilayer perceptrons over the flattened window.
    Mlp,
    /// Transposed convolutions up (generator), strided convolutions down (critic).
    Conv,
}

/// The adversarial objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GanLoss {
    /// Goodfellow's non-saturating loss (critic output is a logit).
    NonSaturating,
    /// Hinge loss (Lim & Ye; as in SN-GAN and BigGAN).
    Hinge,
    /// Wasserstein loss with weight clipping (Arjovsky et al.).
    WganClip,
    /// Wasserstein loss with a gradient penalty: refused by `check` (see there).
    WganGp,
}

/// `[model] kind = "gan"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GanConfig {
    /// `conv` or `mlp`.
    pub arch: Arch,
    /// Size of the generator's standard-normal input.
    pub noise_dim: usize,
    /// `conv`: the generator's channels from coarse to fine (the critic mirrors them);
    /// `mlp`: the generator's hidden sizes (the critic mirrors them).
    pub hidden: Vec<usize>,
    /// `conv`: how the generator doubles time, `nearest` (resize-convolution) or `transposed`.
    pub upsample: Upsample,
    /// `non_saturating`, `hinge` or `wgan_clip`.
    pub loss: GanLoss,
    /// Spectral normalisation of every critic layer.
    pub spectral_norm: bool,
    /// Critic updates per generator update.
    pub n_critic: usize,
    /// `wgan_clip`: critic weights are clamped to `[-clip, clip]` after each update.
    pub clip: f64,
    /// Learning rate of the critic; default: `[train] lr`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub critic_lr: Option<f64>,
    /// Decay of an exponential moving average of the generator used for sampling (e.g. 0.999);
    /// absent: sample from the generator itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ema: Option<f64>,
    /// A conditional GAN: the label's embedding joins the generator's noise, and the critic is
    /// a projection discriminator (Miyato & Koyama 2018).
    pub conditional: bool,
    /// Size of the generator's learned label embedding.
    pub embed_dim: usize,
}

impl Default for GanConfig {
    fn default() -> Self {
        GanConfig {
            arch: Arch::Conv,
            noise_dim: 64,
            hidden: vec![128, 64, 32],
            upsample: Upsample::Nearest,
            loss: GanLoss::NonSaturating,
            spectral_norm: false,
            n_critic: 1,
            clip: 0.01,
            critic_lr: None,
            ema: None,
            conditional: false,
            embed_dim: crate::condition::default_embed_dim(),
        }
    }
}

impl FamilyConfig for GanConfig {
    const KIND: &'static str = "gan";

    fn check(&self, _kind: SignalKind) -> Result<(), ModelError> {
        let bad = |key, message: String| Err(ModelError::Invalid { key, message });
        if self.loss == GanLoss::WganGp {
            return bad(
                "loss",
                "\"wgan_gp\" is not available: its gradient penalty needs the gradient of a \
                 gradient (double backward), which burn 0.22's autodiff does not provide, so it \
                 would compile and silently add zero gradient; use \"wgan_clip\", \"hinge\" with \
                 spectral_norm = true, or \"non_saturating\""
                    .into(),
            );
        }
        if self.noise_dim == 0 {
            return bad("noise_dim", "must be at least 1".into());
        }
        if self.hidden.is_empty() || self.hidden.contains(&0) {
            return bad(
                "hidden",
                format!("needs at least one layer, each ≥ 1, got {:?}", self.hidden),
            );
        }
        if self.n_critic == 0 {
            return bad("n_critic", "must be at least 1".into());
        }
        if !(self.clip.is_finite() && self.clip > 0.0) {
            return bad("clip", format!("must be positive, got {}", self.clip));
        }
        if let Some(lr) = self.critic_lr {
            if !(lr.is_finite() && lr > 0.0) {
                return bad("critic_lr", format!("must be positive, got {lr}"));
            }
        }
        if let Some(d) = self.ema {
            if !(0.0..1.0).contains(&d) {
                return bad("ema", format!("the decay must lie in [0, 1), got {d}"));
            }
        }
        crate::condition::check(self.conditional, self.embed_dim)
    }

    fn conditional(&self) -> bool {
        self.conditional
    }
}

impl GanConfig {
    /// Labels a conditional player is built for (0: unconditional).
    fn classes(&self, shape: WindowShape) -> usize {
        if self.conditional {
            shape.classes
        } else {
            0
        }
    }

    /// Builds the generator for windows of `shape` of data of `kind`.
    pub fn init_generator(
        &self,
        shape: WindowShape,
        kind: SignalKind,
        device: &Device,
    ) -> Generator {
        let classes = self.classes(shape);
        let e = if classes > 0 { self.embed_dim } else { 0 };
        let body = match self.arch {
            Arch::Conv => GenBody::Conv(ConvUp::init(
                self.noise_dim + e,
                &self.hidden,
                shape.channels,
                shape.time,
                self.upsample,
                device,
            )),
            Arch::Mlp => {
                let mut sizes = vec![self.noise_dim + e];
                sizes.extend(&self.hidden);
                GenBody::Mlp(MlpHead::init(&sizes, shape.dim(), device))
            }
        };
        Generator {
            body,
            channels: shape.channels,
            time: shape.time,
            noise_dim: self.noise_dim,
            counts: kind == SignalKind::Counts,
            embed: condition::init(self.conditional, classes, self.embed_dim, device),
        }
    }

    /// Builds the critic for windows of `shape`.
    pub fn init_critic(&self, shape: WindowShape, device: &Device) -> Critic {
        let rev: Vec<usize> = self.hidden.iter().rev().copied().collect();
        let sn = self.spectral_norm;
        let (body, features) = match self.arch {
            Arch::Conv => {
                let down = ConvDown::init(shape.channels, shape.time, &rev, sn, device);
                let f = down.features();
                (CriticBody::Conv(down), f)
            }
            Arch::Mlp => {
                let mut sizes = vec![shape.dim()];
                sizes.extend(&rev);
                let layers = sizes
                    .windows(2)
                    .map(|w| SnLinear::init(w[0], w[1], sn, device))
                    .collect();
                (CriticBody::Mlp(layers), *sizes.last().unwrap_or(&1))
            }
        };
        let classes = self.classes(shape);
        Critic {
            body,
            head: SnLinear::init(features, 1, sn, device),
            // Zero-initialised: the critic starts label-blind, as an unconditional one, and the
            // projection grows with what tells the conditions apart.
            projection: (classes > 0).then(|| {
                LinearConfig::new(classes, features)
                    .with_bias(false)
                    .with_initializer(Initializer::Zeros)
                    .init(device)
            }),
        }
    }
}

#[derive(Module, Debug)]
enum GenBody {
    Conv(ConvUp),
    Mlp(MlpHead),
}

/// Noise → window.
#[derive(Module, Debug)]
pub struct Generator {
    body: GenBody,
    channels: usize,
    time: usize,
    noise_dim: usize,
    /// Trained on dequantised counts `k + u`: samples are floored back to counts.
    counts: bool,
    /// The label embedding of a conditional generator.
    embed: Option<LabelEmbedding>,
}

/// No density and no encoder: a GAN only samples.
impl Sampler for Generator {
    fn noise_dim(&self) -> usize {
        self.noise_dim
    }

    fn classes(&self) -> usize {
        self.embed.as_ref().map_or(0, LabelEmbedding::classes)
    }

    fn generate(&self, z: Tensor<2>, y: Option<Tensor<2>>) -> Observation {
        let x = self.forward(z, y);
        let values = if self.counts {
            x.clamp_min(0.0).floor()
        } else {
            x
        };
        Observation::Point { values }
    }
}

impl Generator {
    /// # Shapes
    /// - `z`: `[batch, noise_dim]`; `y`: `[batch, classes]` → `[batch, channels, time]`
    ///   (normalised units)
    pub fn forward(&self, z: Tensor<2>, y: Option<Tensor<2>>) -> Tensor<3> {
        let b = z.dims()[0];
        let z = condition::with(z.clone(), condition::embed(&self.embed, y, b, &z.device()));
        match &self.body {
            GenBody::Conv(up) => up.forward(z),
            GenBody::Mlp(mlp) => mlp.forward(z).reshape([b, self.channels, self.time]),
        }
    }
}

#[derive(Module, Debug)]
enum CriticBody {
    Conv(ConvDown),
    Mlp(Vec<SnLinear>),
}

/// Window (and its label) → one unbounded score (a logit for the non-saturating loss).
#[derive(Module, Debug)]
pub struct Critic {
    body: CriticBody,
    head: SnLinear,
    /// A conditional critic's projection: the score gains `⟨V y, φ(x)⟩`, the features `φ(x)`
    /// against the label's row of `V` (Miyato & Koyama 2018).
    projection: Option<Linear>,
}

impl Critic {
    /// # Shapes
    /// - `x`: `[batch, channels, time]`; `y`: `[batch, classes]` → `[batch]`
    pub fn forward(&self, x: Tensor<3>, y: Option<Tensor<2>>) -> Tensor<1> {
        let [b, c, t] = x.dims();
        let h = match &self.body {
            CriticBody::Conv(down) => down.forward(x),
            CriticBody::Mlp(layers) => layers
                .iter()
                .fold(x.reshape([b, c * t]), |h, l| leaky_relu(l.forward(h), 0.2)),
        }; // [batch, features]
        let score = self.head.forward(h.clone()).reshape([b]);
        match (&self.projection, y) {
            (Some(v), Some(y)) => score + (v.forward(y) * h).sum_dim(1).reshape([b]),
            _ => score,
        }
    }

    /// One power-iteration step in every spectrally normalised layer.
    pub fn power_iteration(self) -> Self {
        Critic {
            body: match self.body {
                CriticBody::Conv(d) => CriticBody::Conv(d.power_iteration()),
                CriticBody::Mlp(ls) => {
                    CriticBody::Mlp(ls.into_iter().map(SnLinear::power_iteration).collect())
                }
            },
            head: self.head.power_iteration(),
            projection: self.projection,
        }
    }

    /// Clamps every weight and bias to `[-c, c]`.
    pub fn clip(self, c: f32) -> Self {
        Critic {
            body: match self.body {
                CriticBody::Conv(d) => CriticBody::Conv(d.clip(c)),
                CriticBody::Mlp(ls) => CriticBody::Mlp(ls.into_iter().map(|l| l.clip(c)).collect()),
            },
            head: self.head.clip(c),
            projection: self.projection.map(|mut v| {
                v.weight = v.weight.map(|w| w.clamp(-c, c));
                v
            }),
        }
    }
}

/// `[model] adversarial = { … }` of a VAE: a critic on the VAE's samples beside the ELBO (the
/// VAE-GAN of Larsen et al. 2016), trained by neurogen-train's `vae_gan.rs`.
///
/// The decoder minimises `ELBO + weight · channels · time · L_G`: `weight` is per element of a
/// window, so one value serves windows of any size against an ELBO summed over them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdversarialConfig {
    /// Weight of the adversarial term per window element, in nats (0: the plain ELBO, with a
    /// critic trained beside it).
    pub weight: f64,
    /// `conv`: the critic's channels, mirrored as a GAN's (`[128, 64, 32]` → a critic of 32, 64,
    /// 128 channels); `mlp`: its hidden sizes, mirrored.
    pub hidden: Vec<usize>,
    /// `conv` or `mlp`.
    pub arch: Arch,
    /// `non_saturating`, `hinge` or `wgan_clip`.
    pub loss: GanLoss,
    /// Spectral normalisation of every critic layer.
    pub spectral_norm: bool,
    /// Learning rate of the critic; default: `[train] lr`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub critic_lr: Option<f64>,
    /// `wgan_clip`: critic weights are clamped to `[-clip, clip]` after each update.
    pub clip: f64,
}

impl Default for AdversarialConfig {
    fn default() -> Self {
        AdversarialConfig {
            weight: 0.05,
            hidden: vec![64, 32, 16],
            arch: Arch::Conv,
            loss: GanLoss::Hinge,
            spectral_norm: true,
            critic_lr: None,
            clip: 0.01,
        }
    }
}

impl AdversarialConfig {
    /// Refuses settings the critic cannot train with; keys are named `adversarial.<key>`.
    pub fn check(&self) -> Result<(), ModelError> {
        let bad = |key, message: String| Err(ModelError::Invalid { key, message });
        if !(self.weight.is_finite() && self.weight >= 0.0) {
            return bad(
                "adversarial.weight",
                format!("must be ≥ 0, got {}", self.weight),
            );
        }
        if self.hidden.is_empty() || self.hidden.contains(&0) {
            return bad(
                "adversarial.hidden",
                format!("needs at least one layer, each ≥ 1, got {:?}", self.hidden),
            );
        }
        if self.loss == GanLoss::WganGp {
            return bad(
                "adversarial.loss",
                "\"wgan_gp\" is not available (burn 0.22 has no double backward); use \"hinge\", \
                 \"non_saturating\" or \"wgan_clip\""
                    .into(),
            );
        }
        if let Some(lr) = self.critic_lr {
            if !(lr.is_finite() && lr > 0.0) {
                return bad(
                    "adversarial.critic_lr",
                    format!("must be positive, got {lr}"),
                );
            }
        }
        if !(self.clip.is_finite() && self.clip > 0.0) {
            return bad(
                "adversarial.clip",
                format!("must be positive, got {}", self.clip),
            );
        }
        Ok(())
    }

    /// The critic of these settings, for windows of `shape` (a projection critic when the VAE
    /// is conditional on `shape.classes` labels).
    pub fn init_critic(&self, shape: WindowShape, conditional: bool, device: &Device) -> Critic {
        GanConfig {
            arch: self.arch,
            hidden: self.hidden.clone(),
            spectral_norm: self.spectral_norm,
            conditional,
            ..GanConfig::default()
        }
        .init_critic(shape, device)
    }
}

impl GanLoss {
    /// The critic's loss from its scores on real and generated windows (both `[batch]`).
    pub fn critic(self, real: Tensor<1>, fake: Tensor<1>) -> Tensor<1> {
        match self {
            GanLoss::NonSaturating => softplus(-real, 1.0).mean() + softplus(fake, 1.0).mean(),
            GanLoss::Hinge => {
                relu(real.neg().add_scalar(1.0)).mean() + relu(fake.add_scalar(1.0)).mean()
            }
            GanLoss::WganClip | GanLoss::WganGp => fake.mean() - real.mean(),
        }
    }

    /// The generator's loss from the critic's scores on generated windows (`[batch]`).
    pub fn generator(self, fake: Tensor<1>) -> Tensor<1> {
        match self {
            GanLoss::NonSaturating => softplus(-fake, 1.0).mean(),
            GanLoss::Hinge | GanLoss::WganClip | GanLoss::WganGp => -fake.mean(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::optim::GradientsParams;
    use burn::tensor::{Distribution, TensorData};

    fn shape() -> WindowShape {
        WindowShape {
            inputs: 0,
            channels: 3,
            time: 20,
            sfreq: 100.0,
            classes: 0,
        }
    }

    fn scalar(t: Tensor<1>) -> f32 {
        t.into_scalar::<f32>()
    }

    #[test]
    fn losses_have_the_right_signs() {
        let d = Device::flex();
        let t = |v: f32| Tensor::<1>::from_data(TensorData::new(vec![v; 4], [4]), &d);
        for loss in [GanLoss::NonSaturating, GanLoss::Hinge, GanLoss::WganClip] {
            // A critic that scores real windows high and fakes low has a lower loss than one
            // that is fooled; the generator's loss falls as its fakes score higher.
            let good = scalar(loss.critic(t(3.0), t(-3.0)));
            let fooled = scalar(loss.critic(t(-3.0), t(3.0)));
            assert!(good < fooled, "{loss:?}: {good} vs {fooled}");
            let low = scalar(loss.generator(t(-2.0)));
            let high = scalar(loss.generator(t(2.0)));
            assert!(high < low, "{loss:?}: {high} vs {low}");
        }
        // Known values: non-saturating at logits 0 is 2 ln 2 for the critic, ln 2 for G.
        let ns = scalar(GanLoss::NonSaturating.critic(t(0.0), t(0.0)));
        assert!((ns - 2.0 * 2f32.ln()).abs() < 1e-6);
        let hinge = scalar(GanLoss::Hinge.critic(t(0.5), t(-2.0)));
        assert!((hinge - 0.5).abs() < 1e-6);
    }

    #[test]
    fn each_step_differentiates_only_its_own_player() {
        for arch in [Arch::Conv, Arch::Mlp] {
            let ad = Device::flex().autodiff();
            let _rng_lock = crate::test_util::seed(&ad, 5);
            let cfg = GanConfig {
                arch,
                hidden: vec![8, 4],
                noise_dim: 5,
                spectral_norm: true,
                ..Default::default()
            };
            let g = cfg.init_generator(shape(), SignalKind::Continuous, &ad);
            let c = cfg.init_critic(shape(), &ad);
            let z = Tensor::<2>::random([6, 5], Distribution::Normal(0.0, 1.0), &ad);
            let real = Tensor::<3>::random([6, 3, 20], Distribution::Normal(0.0, 1.0), &ad);

            // Critic step: fakes are detached, so the generator gets no gradient.
            let fake = g.forward(z.clone(), None).detach();
            let loss = GanLoss::NonSaturating.critic(c.forward(real, None), c.forward(fake, None));
            let grads = loss.backward();
            assert_eq!(GradientsParams::from_grads(grads, &g).len(), 0, "{arch:?}");
            let grads = GanLoss::NonSaturating
                .critic(
                    c.forward(Tensor::random([6, 3, 20], Distribution::Default, &ad), None),
                    c.forward(g.forward(z.clone(), None).detach(), None),
                )
                .backward();
            // Every critic weight and bias has a gradient; the power-iteration vectors do not.
            let n_critic = GradientsParams::from_grads(grads, &c).len();
            assert!(n_critic > 0, "{arch:?}");

            // Generator step: a fresh forward gives the generator a gradient for every
            // parameter.
            let grads = GanLoss::NonSaturating
                .generator(c.forward(g.forward(z, None), None))
                .backward();
            let n_gen = g.num_params();
            let got = GradientsParams::from_grads(grads, &g).len();
            assert!(got > 0 && n_gen > 0, "{arch:?}: {got}");
        }
    }

    /// Mean periodogram power of an untrained conv generator's windows (`[1 channel, 256]`,
    /// four doublings from 16 steps) at bins `k − 2 … k + 2`.
    fn untrained_power_near(upsample: Upsample, k: usize) -> Vec<f64> {
        let d = Device::flex();
        let _rng_lock = crate::test_util::seed(&d, 7);
        let cfg = GanConfig {
            hidden: vec![32, 32, 32, 32],
            noise_dim: 16,
            upsample,
            ..Default::default()
        };
        let shape = WindowShape {
            channels: 1,
            time: 256,
            ..shape()
        };
        let g = cfg.init_generator(shape, SignalKind::Continuous, &d);
        let n = 128;
        let z = Tensor::<2>::random([n, 16], burn::tensor::Distribution::Normal(0.0, 1.0), &d);
        let x: Vec<f32> = g.forward(z, None).into_data().try_to_vec().unwrap();
        (k - 2..=k + 2)
            .map(|f| {
                let mut p = 0.0;
                for w in x.chunks(256) {
                    let (mut re, mut im) = (0.0f64, 0.0f64);
                    for (t, v) in w.iter().enumerate() {
                        let a = std::f64::consts::TAU * (f * t) as f64 / 256.0;
                        re += *v as f64 * a.cos();
                        im -= *v as f64 * a.sin();
                    }
                    p += re * re + im * im;
                }
                p / n as f64
            })
            .collect()
    }

    #[test]
    fn resize_convolution_has_no_line_at_fs_over_16() {
        // Four stride-2 layers repeat a pattern every 16 steps: lines at multiples of bin
        // 256/16 = 16. A line is a bin's power over the mean of the bins two either side.
        let line = |p: Vec<f64>| p[2] / (0.25 * (p[0] + p[1] + p[3] + p[4]));
        let lines = |u| -> Vec<f64> {
            (1..8)
                .map(|k| line(untrained_power_near(u, 16 * k)))
                .collect()
        };
        let (transposed, nearest) = (lines(Upsample::Transposed), lines(Upsample::Nearest));
        let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
        // Measured: transposed 2.9× at fs/16 and 53× at fs/4; nearest ≤ 1.4× everywhere.
        assert!(max(&transposed) > 10.0, "transposed {transposed:?}");
        assert!(max(&nearest) < 2.0, "nearest {nearest:?}");
        // Summed over the harmonics: which harmonic is strongest depends on the initial
        // weights, which other tests' draws from the one device generator can shift (the fs/16
        // line alone once came out 0.70× against nearest's 1.40×).
        let sum = |v: &[f64]| v.iter().sum::<f64>();
        assert!(
            sum(&transposed) > 2.0 * sum(&nearest),
            "{transposed:?} vs {nearest:?}"
        );
    }

    #[test]
    fn wgan_gp_is_refused_with_the_reason() {
        let e = GanConfig {
            loss: GanLoss::WganGp,
            ..Default::default()
        }
        .check(SignalKind::Continuous)
        .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("double backward") && msg.contains("wgan_clip"),
            "{msg}"
        );
    }

    #[test]
    fn shapes_of_both_players() {
        let d = Device::flex();
        for arch in [Arch::Conv, Arch::Mlp] {
            let cfg = GanConfig {
                arch,
                hidden: vec![16, 8],
                ..Default::default()
            };
            let g = cfg.init_generator(shape(), SignalKind::Continuous, &d);
            let x = g.forward(Tensor::zeros([4, 64], &d), None);
            assert_eq!(x.dims(), [4, 3, 20]);
            assert_eq!(cfg.init_critic(shape(), &d).forward(x, None).dims(), [4]);
        }
    }
}
