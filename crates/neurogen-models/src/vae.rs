//! Variational autoencoder over whole windows.
//!
//! The encoder maps a window, flattened through an MLP (`arch = "mlp"`) or through strided 1-D
//! convolutions (`arch = "conv"`), to the mean and log-variance of a diagonal Gaussian
//! posterior; the decoder (MLP, or transposed convolutions) maps a latent back to the
//! parameters of the observation model (Gaussian means, or Poisson log-rates for counts).

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use neurogen_data::SignalKind;
use serde::{Deserialize, Serialize};

use crate::condition::{self, LabelEmbedding};
use crate::conv::{ConvDown, ConvUp, Upsample};
use crate::gan::{AdversarialConfig, Arch};
use crate::likelihood::{
    bounds, elbo_elements, elbo_loss, posterior_draws, prior_draw, prior_kl, repeat_draws,
    LearnedPrior, Likelihood, ObservationHead, Prior,
};
use crate::{
    Density, Encode, FamilyConfig, GenerativeModel, Loss, LossContext, Mlp, MlpHead, ModelError,
    ModelFamily, Observation, Sampler, WindowShape,
};

/// `[model] kind = "vae"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VaeConfig {
    /// `mlp` or `conv`.
    pub arch: Arch,
    /// Latent dimension.
    pub latent_dim: usize,
    /// `mlp`: hidden layer sizes of the encoder; `conv`: its channels per strided layer (the
    /// decoder mirrors them).
    pub hidden: Vec<usize>,
    /// Observation model; default `poisson` for counts, `gaussian` otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub likelihood: Option<Likelihood>,
    /// Gaussian σ in normalised units: the fixed value, or the start of a learned one.
    pub sigma: f64,
    /// Learn one σ per channel (Gaussian likelihood only).
    pub learn_sigma: bool,
    /// Final weight of the KL term (β-VAE); `[train] kl_warmup_steps` ramps up to it.
    pub beta: f64,
    /// A conditional VAE (CVAE): the label's embedding joins the encoder's features and the
    /// decoder's input.
    pub conditional: bool,
    /// Size of the learned label embedding of a conditional model.
    pub embed_dim: usize,
    /// The prior of `z`: `standard` N(0, I) or a `learned` diagonal Gaussian (as the latent
    /// ODE's).
    #[serde(skip_serializing_if = "Prior::is_standard")]
    pub prior: Prior,
    /// A critic on the VAE's samples beside the ELBO (VAE-GAN); absent: the ELBO alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adversarial: Option<AdversarialConfig>,
}

impl Default for VaeConfig {
    fn default() -> Self {
        VaeConfig {
            arch: Arch::Mlp,
            latent_dim: 16,
            hidden: vec![256, 128],
            likelihood: None,
            sigma: 1.0,
            learn_sigma: true,
            beta: 1.0,
            conditional: false,
            embed_dim: crate::condition::default_embed_dim(),
            prior: Prior::Standard,
            adversarial: None,
        }
    }
}

impl FamilyConfig for VaeConfig {
    const KIND: &'static str = "vae";

    fn resolved(&self, kind: SignalKind) -> VaeConfig {
        VaeConfig {
            likelihood: Some(Likelihood::resolve(self.likelihood, kind)),
            ..self.clone()
        }
    }

    fn check(&self, kind: SignalKind) -> Result<(), ModelError> {
        let bad = |key, message: String| Err(ModelError::Invalid { key, message });
        if self.latent_dim == 0 {
            return bad("latent_dim", "must be at least 1".into());
        }
        if self.hidden.contains(&0) || (self.arch == Arch::Conv && self.hidden.is_empty()) {
            return bad(
                "hidden",
                format!(
                    "layer sizes must be ≥ 1 (conv: at least one layer), got {:?}",
                    self.hidden
                ),
            );
        }
        if !(self.sigma.is_finite() && self.sigma > 0.0) {
            return bad("sigma", format!("must be positive, got {}", self.sigma));
        }
        if !(self.beta.is_finite() && self.beta >= 0.0) {
            return bad("beta", format!("must be ≥ 0, got {}", self.beta));
        }
        crate::condition::check(self.conditional, self.embed_dim)?;
        Likelihood::check(self.likelihood, kind)?;
        if let Some(adv) = &self.adversarial {
            if Likelihood::resolve(self.likelihood, kind) == Likelihood::Poisson {
                return bad(
                    "adversarial",
                    "needs a Gaussian likelihood (continuous data): the critic learns through a \
                     reparameterised draw, and Poisson counts have none"
                        .into(),
                );
            }
            adv.check()?;
        }
        Ok(())
    }

    fn conditional(&self) -> bool {
        self.conditional
    }
}

impl ModelFamily for VaeConfig {
    type Model = Vae;

    fn build(&self, shape: WindowShape, _kind: SignalKind, device: &Device) -> Vae {
        self.init(shape, device)
    }
}

impl VaeConfig {
    /// Builds the model for windows of `shape` (a resolved config: see
    /// [`FamilyConfig::resolved`]).
    pub fn init(&self, shape: WindowShape, device: &Device) -> Vae {
        let (input, l) = (shape.dim(), self.latent_dim);
        // A conditional model appends the label's embedding to the encoder's features and the
        // decoder's input.
        let e = if self.conditional && shape.classes > 0 {
            self.embed_dim
        } else {
            0
        };
        let (encoder, features, decoder) = match self.arch {
            Arch::Mlp => {
                let mut enc = vec![input];
                enc.extend(&self.hidden);
                let last = *enc.last().unwrap_or(&input);
                let mut dec = vec![l + e];
                dec.extend(self.hidden.iter().rev());
                (
                    VaeEncoder::Mlp(Mlp::init(&enc, device)),
                    last,
                    VaeDecoder::Mlp(MlpHead::init(&dec, input, device)),
                )
            }
            Arch::Conv => {
                let down = ConvDown::init(shape.channels, shape.time, &self.hidden, false, device);
                let f = down.features();
                let rev: Vec<usize> = self.hidden.iter().rev().copied().collect();
                (
                    VaeEncoder::Conv(down),
                    f,
                    VaeDecoder::Conv(ConvUp::init(
                        l + e,
                        &rev,
                        shape.channels,
                        shape.time,
                        Upsample::Transposed,
                        device,
                    )),
                )
            }
        };
        let obs = ObservationHead::new(self.likelihood, self.learn_sigma, shape.channels);
        Vae {
            encoder,
            mu: LinearConfig::new(features + e, l).init(device),
            logvar: LinearConfig::new(features + e, l).init(device),
            decoder,
            log_sigma: obs.init_log_sigma(self.sigma, device),
            ar: obs.init_ar(device),
            prior: (self.prior == Prior::Learned).then(|| LearnedPrior::init(l, device)),
            embed: condition::init(self.conditional, shape.classes, self.embed_dim, device),
            channels: shape.channels,
            time: shape.time,
            latent_dim: l,
            obs,
            beta: self.beta as f32,
        }
    }
}

#[derive(Module, Debug)]
enum VaeEncoder {
    Mlp(Mlp),
    Conv(ConvDown),
}

#[derive(Module, Debug)]
enum VaeDecoder {
    Mlp(MlpHead),
    Conv(ConvUp),
}

/// The VAE module.
#[derive(Module, Debug)]
pub struct Vae {
    encoder: VaeEncoder,
    mu: Linear,
    logvar: Linear,
    decoder: VaeDecoder,
    /// ln σ per channel (Gaussian likelihood).
    log_sigma: Param<Tensor<1>>,
    /// The AR(1) residuals' coefficient parameter per channel (`likelihood = "gaussian_ar1"`).
    ar: Option<Param<Tensor<1>>>,
    /// The learned prior of `z` (`prior = "learned"`; N(0, I) without).
    prior: Option<LearnedPrior>,
    /// The label embedding of a conditional model.
    embed: Option<LabelEmbedding>,
    channels: usize,
    time: usize,
    latent_dim: usize,
    #[module(skip)]
    obs: ObservationHead,
    beta: f32,
}

impl Vae {
    /// Posterior mean and log-variance (given the windows' labels, for a conditional model).
    ///
    /// # Shapes
    /// - `x`: `[batch, channels, time]`; `y`: `[batch, classes]` → (`[batch, latent]`,
    ///   `[batch, latent]`)
    pub fn encode(&self, x: Tensor<3>, y: Option<Tensor<2>>) -> (Tensor<2>, Tensor<2>) {
        let [b, c, t] = x.dims();
        let e = condition::embed(&self.embed, y, b, &x.device());
        let x = self.obs.encoder_input(x);
        let h = match &self.encoder {
            VaeEncoder::Mlp(m) => m.forward(x.reshape([b, c * t])),
            VaeEncoder::Conv(d) => d.forward(x),
        }; // [batch, features]
        let h = condition::with(h, e); // [batch, features + embed]
                                       // Bounded log-variance keeps exp() finite early in training.
        (
            self.mu.forward(h.clone()),
            self.logvar.forward(h).clamp(-12.0, 8.0),
        )
    }

    /// Decoder output: Gaussian means or Poisson log-rates.
    ///
    /// # Shapes
    /// - `z`: `[batch, latent]`; `y`: `[batch, classes]` → `[batch, channels, time]`
    pub fn decode(&self, z: Tensor<2>, y: Option<Tensor<2>>) -> Tensor<3> {
        let b = z.dims()[0];
        let z = condition::with(z.clone(), condition::embed(&self.embed, y, b, &z.device()));
        let out = match &self.decoder {
            VaeDecoder::Mlp(m) => m.forward(z).reshape([b, self.channels, self.time]),
            VaeDecoder::Conv(u) => u.forward(z),
        }; // [batch, channels, time]
        self.obs.output(out)
    }

    /// Negative log-likelihood of `x` under decoder output `out`, per window.
    ///
    /// # Shapes
    /// - `x`, `out`: `[batch, channels, time]` → `[batch]`
    pub fn nll(&self, x: Tensor<3>, out: Tensor<3>) -> Tensor<1> {
        self.obs.nll(x, out, &self.log_sigma, self.ar.as_ref())
    }

    /// Windows drawn from the model with a path for gradients: latent noise `z` through the
    /// prior and the decoder, observation noise `eps` through the (Gaussian or AR(1)) residual
    /// (what a VAE-GAN's critic judges). A Poisson VAE returns its rates: counts have no
    /// reparameterised draw.
    ///
    /// # Shapes
    /// - `z`: `[batch, latent]`; `y`: `[batch, classes]`; `eps`: `[batch, channels, time]` →
    ///   `[batch, channels, time]`
    pub fn draw(&self, z: Tensor<2>, y: Option<Tensor<2>>, eps: Tensor<3>) -> Tensor<3> {
        let z = prior_draw(self.prior.as_ref(), z); // [batch, latent]
        self.obs
            .rsample(self.decode(z, y), &self.log_sigma, self.ar.as_ref(), eps)
    }
}

impl Vae {
    /// Importance log-weights `ln p(x, z) − ln q(z | x)` for `k` posterior draws per window.
    ///
    /// # Shapes
    /// - `x`: `[batch, channels, time]`; `y`: `[batch, classes]`; `eps`: `[k, batch, latent]` →
    ///   `[k, batch]`
    pub fn log_weights(&self, x: Tensor<3>, y: Option<Tensor<2>>, eps: Tensor<3>) -> Tensor<2> {
        let [k, b, _] = eps.dims();
        let (x, out, log_p_over_q) = self.posterior_decode(x, y, eps);
        let nll = self.nll(x, out); // [k * batch]
        (log_p_over_q - nll).reshape([k, b])
    }

    /// The decoder's output for `k` posterior draws per window, with the windows repeated to
    /// match and `ln p(z) − ln q(z | x)`, draw-major: what the IWAE weights and the ELBO's
    /// split over elements score.
    ///
    /// # Shapes
    /// - `x`: `[batch, channels, time]`; `y`: `[batch, classes]`; `eps`: `[k, batch, latent]` →
    ///   (`[k·batch, channels, time]`, `[k·batch, channels, time]`, `[k·batch]`)
    fn posterior_decode(
        &self,
        x: Tensor<3>,
        y: Option<Tensor<2>>,
        eps: Tensor<3>,
    ) -> (Tensor<3>, Tensor<3>, Tensor<1>) {
        let k = eps.dims()[0];
        let (mu, logvar) = self.encode(x.clone(), y.clone());
        let (z, log_p_over_q) = posterior_draws(mu, logvar, eps, self.prior.as_ref()); // [k * batch, latent], [k * batch]
        let y = y.map(|y| condition::repeat_rows(y, k)); // [k * batch, classes]
        (repeat_draws(x, k), self.decode(z, y), log_p_over_q)
    }
}

impl GenerativeModel for Vae {
    fn loss(
        &self,
        x: Tensor<3>,
        y: Option<Tensor<2>>,
        noise: Tensor<2>,
        ctx: &LossContext,
    ) -> Loss {
        let (mu, logvar) = self.encode(x.clone(), y.clone()); // [batch, latent]
        let z = mu.clone() + logvar.clone().mul_scalar(0.5).exp() * noise; // [batch, latent]
        let nll = self.nll(x, self.decode(z, y)); // [batch]
        let kl = prior_kl(self.prior.as_ref(), mu, logvar); // [batch]
        elbo_loss(nll, kl, self.beta * ctx.kl_warmup)
    }
}

impl Sampler for Vae {
    fn noise_dim(&self) -> usize {
        self.latent_dim
    }

    fn classes(&self) -> usize {
        self.embed.as_ref().map_or(0, LabelEmbedding::classes)
    }

    fn generate(&self, z: Tensor<2>, y: Option<Tensor<2>>) -> Observation {
        let z = prior_draw(self.prior.as_ref(), z); // [n, latent]
        self.obs
            .observation(self.decode(z, y), &self.log_sigma, self.ar.as_ref())
    }

    fn density(&self) -> Option<&dyn Density> {
        Some(self)
    }

    fn encoder(&self) -> Option<&dyn Encode> {
        Some(self)
    }
}

/// The IWAE bound (Burda et al. 2016) with `k` importance samples, and the ELBO.
impl Density for Vae {
    fn bound(&self, k: usize) -> String {
        format!("iwae_k={k}")
    }

    fn score_noise(&self, k: usize) -> (usize, usize) {
        (k, self.latent_dim)
    }

    fn log_likelihood(
        &self,
        x: Tensor<3>,
        y: Option<Tensor<2>>,
        noise: Tensor<3>,
    ) -> Result<(Tensor<1>, Option<Tensor<1>>), ModelError> {
        let (elbo, iwae) = bounds(self.log_weights(x, y, noise));
        Ok((iwae, Some(elbo)))
    }

    fn bound_elements(
        &self,
        x: Tensor<3>,
        y: Option<Tensor<2>>,
        noise: Tensor<3>,
    ) -> Option<Result<Tensor<3>, ModelError>> {
        let k = noise.dims()[0];
        let (x, out, log_p_over_q) = self.posterior_decode(x, y, noise);
        let nll = self
            .obs
            .nll_elements(x, out, &self.log_sigma, self.ar.as_ref()); // [k * batch, channels, time]
        Some(Ok(elbo_elements(nll.neg(), log_p_over_q, k)))
    }

    fn splits_bound(&self) -> bool {
        true
    }
}

impl Encode for Vae {
    fn encode_mean(
        &self,
        x: Tensor<3>,
        y: Option<Tensor<2>>,
    ) -> Result<(Tensor<2>, Option<Tensor<3>>), ModelError> {
        Ok((self.encode(x, y).0, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::optim::{AdamConfig, GradientsParams};
    use burn::tensor::{Distribution, TensorData};

    fn fit_steps(kind: SignalKind, x: Tensor<3>, steps: usize) -> (f32, f32) {
        fit_arch(Arch::Mlp, vec![32], kind, x, steps)
    }

    fn fit_arch(
        arch: Arch,
        hidden: Vec<usize>,
        kind: SignalKind,
        x: Tensor<3>,
        steps: usize,
    ) -> (f32, f32) {
        let device = x.device();
        let cfg = VaeConfig {
            arch,
            latent_dim: 3,
            hidden,
            ..Default::default()
        }
        .resolved(kind);
        let [b, c, t] = x.dims();
        let mut model = cfg.init(
            WindowShape {
                inputs: 0,
                channels: c,
                time: t,
                sfreq: 100.0,
                classes: 0,
            },
            &device,
        );
        let mut optim = AdamConfig::new().init();
        let noise = Tensor::<2>::random([b, 3], Distribution::Normal(0.0, 1.0), &device);
        let ctx = LossContext {
            kl_warmup: 1.0,
            training: false,
        };
        let first = model
            .loss(x.clone(), None, noise.clone(), &ctx)
            .total
            .into_scalar::<f32>();
        for _ in 0..steps {
            let loss = model.loss(x.clone(), None, noise.clone(), &ctx);
            let grads = GradientsParams::from_grads(loss.total.backward(), &model);
            model = optim.step(1e-2, model, grads);
        }
        (
            first,
            model.loss(x, None, noise, &ctx).total.into_scalar::<f32>(),
        )
    }

    #[test]
    fn loss_falls_on_a_tiny_batch() {
        let device = Device::flex().autodiff();
        let _rng_lock = crate::test_util::seed(&device, 1);
        let x = Tensor::<3>::random([8, 4, 10], Distribution::Normal(0.0, 1.0), &device);
        let (first, last) = fit_steps(SignalKind::Continuous, x, 150);
        assert!(
            last < first - 0.25 * first.abs(),
            "gaussian: {first} -> {last}"
        );

        // Counts with a clear per-channel rate structure: 0, 1, 3, 6 expected per bin.
        let counts: Vec<f32> = (0..8 * 4 * 10)
            .map(|i| [0.0, 1.0, 3.0, 6.0][(i / 10) % 4])
            .collect();
        let x = Tensor::<3>::from_data(TensorData::new(counts, [8, 4, 10]), &device);
        let (first, last) = fit_steps(SignalKind::Counts, x, 150);
        assert!(last < 0.5 * first, "poisson: {first} -> {last}");
    }

    #[test]
    fn the_conv_architecture_learns_too() {
        let device = Device::flex().autodiff();
        let _rng_lock = crate::test_util::seed(&device, 2);
        let x = Tensor::<3>::random([8, 4, 24], Distribution::Normal(0.0, 1.0), &device);
        let (first, last) = fit_arch(Arch::Conv, vec![8, 16], SignalKind::Continuous, x, 150);
        assert!(last < first - 0.25 * first.abs(), "conv: {first} -> {last}");
    }

    #[test]
    fn a_learned_prior_starts_as_the_standard_normal() {
        let device = Device::flex();
        let _rng_lock = crate::test_util::seed(&device, 5);
        let x = Tensor::<3>::random([4, 3, 7], Distribution::Normal(0.0, 1.0), &device);
        let eps = Tensor::<3>::random([6, 4, 2], Distribution::Normal(0.0, 1.0), &device);
        let z = Tensor::<2>::random([3, 2], Distribution::Normal(0.0, 1.0), &device);
        let run = |prior| {
            device.seed(6);
            let cfg = VaeConfig {
                latent_dim: 2,
                hidden: vec![8],
                prior,
                ..Default::default()
            }
            .resolved(SignalKind::Continuous);
            let shape = WindowShape {
                inputs: 0,
                channels: 3,
                time: 7,
                sfreq: 10.0,
                classes: 0,
            };
            let m = cfg.init(shape, &device);
            let lw = crate::test_util::host(m.log_weights(x.clone(), None, eps.clone()));
            let Observation::Gaussian { mean, .. } = m.generate(z.clone(), None) else {
                panic!("continuous data decodes to a Gaussian");
            };
            (lw, crate::test_util::host(mean))
        };
        let ((la, ma), (lb, mb)) = (run(Prior::Standard), run(Prior::Learned));
        for (p, q) in la.iter().zip(&lb) {
            assert!((p - q).abs() < 1e-4 * p.abs().max(1.0), "{p} vs {q}");
        }
        assert_eq!(ma, mb);
    }

    #[test]
    fn importance_weights_agree_with_the_loss_and_iwae_tightens_the_elbo() {
        let device = Device::flex();
        let _rng_lock = crate::test_util::seed(&device, 8);
        let cfg = VaeConfig {
            latent_dim: 3,
            hidden: vec![16],
            ..Default::default()
        }
        .resolved(SignalKind::Continuous);
        let shape = WindowShape {
            inputs: 0,
            channels: 2,
            time: 5,
            sfreq: 10.0,
            classes: 0,
        };
        let model = cfg.init(shape, &device);
        let x = Tensor::<3>::random([4, 2, 5], Distribution::Normal(0.0, 1.0), &device);
        let k = 4000;
        let eps = Tensor::<3>::random([k, 4, 3], Distribution::Normal(0.0, 1.0), &device);
        let lw = model.log_weights(x.clone(), None, eps);
        let (elbo, iwae) = crate::likelihood::bounds(lw);
        let elbo: Vec<f32> = elbo.into_data().try_to_vec().unwrap();
        let iwae: Vec<f32> = iwae.into_data().try_to_vec().unwrap();
        // The Monte Carlo ELBO over many draws matches the loss's analytic-KL ELBO, window by
        // window (the loss's neg_elbo is the batch mean, so compare the means).
        let mean_elbo = elbo.iter().sum::<f32>() / 4.0;
        let ctx = LossContext {
            kl_warmup: 1.0,
            training: false,
        };
        let mut neg = 0.0;
        for i in 0..50 {
            device.seed(100 + i);
            let noise = Tensor::<2>::random([4, 3], Distribution::Normal(0.0, 1.0), &device);
            let loss = model.loss(x.clone(), None, noise, &ctx);
            neg += loss.terms[2].1.clone().into_scalar::<f32>() / 50.0;
        }
        assert!(
            (mean_elbo + neg).abs() < 0.02 * neg.abs(),
            "{mean_elbo} vs {}",
            -neg
        );
        for (e, i) in elbo.iter().zip(&iwae) {
            assert!(i >= e, "iwae {i} < elbo {e}");
        }
    }

    #[test]
    fn the_elbo_splits_over_elements_and_a_spike_is_lost_where_it_is() {
        let device = Device::flex();
        let _rng_lock = crate::test_util::seed(&device, 9);
        let shape = WindowShape {
            inputs: 0,
            channels: 3,
            time: 16,
            sfreq: 10.0,
            classes: 0,
        };
        for likelihood in [Likelihood::Gaussian, Likelihood::GaussianAr1] {
            let cfg = VaeConfig {
                latent_dim: 3,
                hidden: vec![16],
                likelihood: Some(likelihood),
                ..Default::default()
            }
            .resolved(SignalKind::Continuous);
            let model = cfg.init(shape, &device);
            let x = Tensor::<3>::random([4, 3, 16], Distribution::Normal(0.0, 1.0), &device);
            let eps = Tensor::<3>::random([8, 4, 3], Distribution::Normal(0.0, 1.0), &device);
            let (_, elbo) = model.log_likelihood(x.clone(), None, eps.clone()).unwrap();
            crate::test_util::check_bound_elements(&model, x, eps, elbo.unwrap(), true);
        }
    }

    #[test]
    fn fixed_sigma_is_not_learned_and_generate_has_the_right_shapes() {
        let device = Device::flex().autodiff();
        let _rng_lock = crate::test_util::seed(&device, 4);
        let x = Tensor::<3>::random([8, 3, 7], Distribution::Normal(0.0, 3.0), &device);
        let noise = Tensor::<2>::random([8, 16], Distribution::Normal(0.0, 1.0), &device);
        let ctx = LossContext {
            kl_warmup: 1.0,
            training: false,
        };
        // Train with σ fixed at 0.5 and with σ learned from 0.5: only the second moves it
        // (data with sd 3 pull σ up).
        let trained_sigma = |learn_sigma: bool| {
            let cfg = VaeConfig {
                learn_sigma,
                sigma: 0.5,
                hidden: vec![16],
                ..Default::default()
            }
            .resolved(SignalKind::Continuous);
            let shape = WindowShape {
                inputs: 0,
                channels: 3,
                time: 7,
                sfreq: 100.0,
                classes: 0,
            };
            let mut model = cfg.init(shape, &device);
            let mut optim = AdamConfig::new().init();
            for _ in 0..20 {
                let loss = model.loss(x.clone(), None, noise.clone(), &ctx);
                let grads = GradientsParams::from_grads(loss.total.backward(), &model);
                model = optim.step(1e-2, model, grads);
            }
            model
        };
        let fixed = trained_sigma(false);
        let learned = trained_sigma(true);
        let sigma = |m: &Vae| -> Vec<f32> {
            match m.generate(Tensor::zeros([1, 16], &device), None) {
                Observation::Gaussian { sigma, .. } => sigma.into_data().try_to_vec().unwrap(),
                _ => panic!("continuous data decodes to a Gaussian"),
            }
        };
        assert!(sigma(&fixed).iter().all(|v| (v - 0.5).abs() < 1e-6));
        assert!(
            sigma(&learned).iter().all(|v| *v > 0.55),
            "{:?}",
            sigma(&learned)
        );
        let model = fixed.valid();
        let device = Device::flex();
        match model.generate(Tensor::zeros([5, 16], &device), None) {
            Observation::Gaussian { mean, sigma } => {
                assert_eq!(mean.dims(), [5, 3, 7]);
                let s = sigma.into_data().try_to_vec::<f32>().unwrap();
                assert!(s.iter().all(|v| (v - 0.5).abs() < 1e-6), "{s:?}");
            }
            _ => panic!("continuous data decodes to a Gaussian"),
        }
        let counts = VaeConfig::default().resolved(SignalKind::Counts);
        assert_eq!(counts.likelihood, Some(Likelihood::Poisson));
        let e = VaeConfig {
            likelihood: Some(Likelihood::Poisson),
            ..Default::default()
        }
        .check(SignalKind::Continuous)
        .unwrap_err();
        assert!(e.to_string().contains("likelihood"));
    }
}
