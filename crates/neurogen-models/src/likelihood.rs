//! Observation likelihoods and the Gaussian KL, each summed over a window.

use burn::module::Param;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::{Loss, Observation};

/// The observation model of a decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Likelihood {
    /// Independent Gaussians (continuous signals in normalised units).
    Gaussian,
    /// Gaussian residuals that follow a stationary AR(1) process along time, one learned
    /// coefficient φ and σ per channel: the residual's spectrum is red, not white (VAE only).
    GaussianAr1,
    /// Independent Poisson counts (binned spikes); the decoder outputs log-rates.
    Poisson,
}

impl Likelihood {
    /// `chosen`, or the natural default for data of `kind` (Poisson for counts).
    pub fn resolve(chosen: Option<Likelihood>, kind: neurogen_data::SignalKind) -> Likelihood {
        chosen.unwrap_or(match kind {
            neurogen_data::SignalKind::Counts => Likelihood::Poisson,
            neurogen_data::SignalKind::Continuous => Likelihood::Gaussian,
        })
    }

    /// Refuses a Poisson likelihood on continuous data.
    pub fn check(
        chosen: Option<Likelihood>,
        kind: neurogen_data::SignalKind,
    ) -> Result<(), crate::ModelError> {
        if kind == neurogen_data::SignalKind::Continuous && chosen == Some(Likelihood::Poisson) {
            return Err(crate::ModelError::Invalid {
                key: "likelihood",
                message:
                    "\"poisson\" needs count data; this data set is continuous (use \"gaussian\")"
                        .into(),
            });
        }
        if kind == neurogen_data::SignalKind::Counts && chosen == Some(Likelihood::GaussianAr1) {
            return Err(crate::ModelError::Invalid {
                key: "likelihood",
                message:
                    "\"gaussian_ar1\" needs continuous data; these are counts (use \"poisson\")"
                        .into(),
            });
        }
        Ok(())
    }
}

/// The observation model a decoder's output parametrises, shared by the VAE and the latent ODE:
/// Gaussian means with one σ per channel (fixed or learned), or Poisson log-rates.
///
/// The family keeps ln σ as its own parameter (`log_sigma`, so checkpoint paths stay where
/// they are); the head holds what to do with it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ObservationHead {
    poisson: bool,
    ar1: bool,
    learn_sigma: bool,
    channels: usize,
}

impl ObservationHead {
    /// The head for a resolved `likelihood` (Poisson or Gaussian) on `channels` channels.
    pub fn new(likelihood: Option<Likelihood>, learn_sigma: bool, channels: usize) -> Self {
        ObservationHead {
            poisson: likelihood == Some(Likelihood::Poisson),
            ar1: likelihood == Some(Likelihood::GaussianAr1),
            learn_sigma,
            channels,
        }
    }

    /// The AR(1) coefficients' parameter `a` (φ = 0.99·tanh a, so the process stays
    /// stationary), zero (white residuals) at first; `None` for other likelihoods, so their
    /// checkpoints hold no such tensor.
    pub fn init_ar(&self, device: &Device) -> Option<Param<Tensor<1>>> {
        self.ar1
            .then(|| Param::from_tensor(Tensor::zeros([self.channels], device)))
    }

    /// φ broadcastable over `[batch, channels, time]`.
    fn phi(&self, ar: &Param<Tensor<1>>) -> Tensor<3> {
        ar_phi(ar.val()).reshape([1, self.channels, 1])
    }

    /// The initial ln σ parameter, `[channels]`.
    pub fn init_log_sigma(&self, sigma: f64, device: &Device) -> Param<Tensor<1>> {
        Param::from_tensor(Tensor::full([self.channels], sigma.ln(), device))
    }

    /// Whether the observations are Poisson counts.
    pub fn is_poisson(&self) -> bool {
        self.poisson
    }

    /// What an encoder reads: counts are heavy-tailed, so `ln(1 + x)` keeps them near unit
    /// scale; continuous signals as they are.
    pub fn encoder_input<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        if self.poisson {
            x.log1p()
        } else {
            x
        }
    }

    /// Bounds a decoder's raw output: Poisson log-rates to `[-15, 8]` so `exp` stays finite.
    pub fn output(&self, out: Tensor<3>) -> Tensor<3> {
        if self.poisson {
            out.clamp(-15.0, 8.0)
        } else {
            out
        }
    }

    /// ln σ broadcastable over `[batch, channels, time]` (no gradient when σ is fixed).
    fn log_sigma(&self, log_sigma: &Param<Tensor<1>>) -> Tensor<3> {
        let ls = log_sigma.val();
        let ls = if self.learn_sigma { ls } else { ls.detach() };
        ls.reshape([1, self.channels, 1])
    }

    /// Negative log-likelihood of each element of `x` under decoder output `out`.
    ///
    /// # Shapes
    /// - `x`, `out`: `[batch, channels, time]` → `[batch, channels, time]`
    pub fn nll_elements(
        &self,
        x: Tensor<3>,
        out: Tensor<3>,
        log_sigma: &Param<Tensor<1>>,
        ar: Option<&Param<Tensor<1>>>,
    ) -> Tensor<3> {
        match (self.poisson, ar) {
            (true, _) => poisson_nll_elements(x, out),
            (false, Some(a)) => {
                gaussian_ar1_nll_elements(x, out, self.log_sigma(log_sigma), self.phi(a))
            }
            (false, None) => gaussian_nll_elements(x, out, self.log_sigma(log_sigma)),
        }
    }

    /// [`nll_elements`](Self::nll_elements) summed over each window.
    ///
    /// # Shapes
    /// - `x`, `out`: `[batch, channels, time]` → `[batch]`
    pub fn nll(
        &self,
        x: Tensor<3>,
        out: Tensor<3>,
        log_sigma: &Param<Tensor<1>>,
        ar: Option<&Param<Tensor<1>>>,
    ) -> Tensor<1> {
        match (self.poisson, ar) {
            (true, _) => poisson_nll(x, out),
            (false, Some(_)) => sum_window(self.nll_elements(x, out, log_sigma, ar)),
            (false, None) => gaussian_nll(x, out, self.log_sigma(log_sigma)),
        }
    }

    /// A draw from the distribution decoder output `out` parametrises, differentiable in `out`,
    /// σ (when learned) and φ: `out + σ·eps` (Gaussian), `out` plus the AR(1) filter of `eps`
    /// (r_0 = σ ε_0, r_t = φ r_{t−1} + σ √(1 − φ²) ε_t), or the rates (Poisson: no such draw).
    ///
    /// # Shapes
    /// - `out`, `eps`: `[batch, channels, time]` → `[batch, channels, time]`
    pub fn rsample(
        &self,
        out: Tensor<3>,
        log_sigma: &Param<Tensor<1>>,
        ar: Option<&Param<Tensor<1>>>,
        eps: Tensor<3>,
    ) -> Tensor<3> {
        let sigma = self.log_sigma(log_sigma).exp(); // [1, channels, 1]
        match (self.poisson, ar) {
            (true, _) => out.exp(),
            (false, Some(a)) => out + ar1_filter(eps, ar_phi(a.val()), sigma),
            (false, None) => out + eps * sigma,
        }
    }

    /// The distribution decoder output `out` parametrises, for sampling.
    ///
    /// # Shapes
    /// - `out`: `[n, channels, time]`
    pub fn observation(
        &self,
        out: Tensor<3>,
        log_sigma: &Param<Tensor<1>>,
        ar: Option<&Param<Tensor<1>>>,
    ) -> Observation {
        let sigma = log_sigma.val().detach().exp();
        match (self.poisson, ar) {
            (true, _) => Observation::Poisson { rate: out.exp() },
            (false, Some(a)) => Observation::GaussianAr1 {
                mean: out,
                sigma,
                phi: ar_phi(a.val().detach()),
            },
            (false, None) => Observation::Gaussian { mean: out, sigma },
        }
    }
}

/// The loss of a latent-variable model trained on its ELBO: `mean(nll + w·kl)` with the KL
/// weight `w` (β times the warm-up), and the terms `nll`, `kl` and `neg_elbo` (`w` = 1).
///
/// # Shapes
/// - `nll`, `kl`: `[batch]`
pub fn elbo_loss(nll: Tensor<1>, kl: Tensor<1>, kl_weight: f32) -> Loss {
    let total = (nll.clone() + kl.clone().mul_scalar(kl_weight)).mean();
    Loss {
        total,
        terms: vec![
            ("nll", nll.clone().mean()),
            ("kl", kl.clone().mean()),
            ("neg_elbo", (nll + kl).mean()),
        ],
        stats: vec![],
    }
}

/// `Φ(n)`: standard-normal draws `n` mapped to uniforms on (0, 1), how every family turns the
/// host's normals into the uniforms it needs (dequantisation, masks, inverse CDFs).
pub(crate) fn normal_cdf<const D: usize>(n: Tensor<D>) -> Tensor<D> {
    n.mul_scalar(std::f32::consts::FRAC_1_SQRT_2)
        .erf()
        .add_scalar(1.0)
        .mul_scalar(0.5)
}

pub(crate) const HALF_LN_2PI: f32 = 0.918_938_5;

/// `Φ⁻¹(u)`: the standard-normal quantile of `u` in (0, 1), by Acklam's rational approximation
/// (relative error 1.2e-9; evaluated in f32, whose cancellations in the central rational
/// function leave about 1e-4); `u` is clamped to
/// [1e-7, 1 − 6e-8] first, so the result is finite (|z| ≤ 5.3).
#[allow(clippy::excessive_precision)]
pub(crate) fn normal_quantile<const D: usize>(u: Tensor<D>) -> Tensor<D> {
    // Acklam's coefficients as published; f32 keeps what it can of them.
    const A: [f32; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f32; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f32; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D4: [f32; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const LOW: f32 = 0.024_25;
    let horner = |x: Tensor<D>, coefs: &[f32], last_one: bool| {
        let mut acc = x.zeros_like().add_scalar(coefs[0]);
        for &c in &coefs[1..] {
            acc = acc * x.clone() + c;
        }
        if last_one {
            acc * x + 1.0
        } else {
            acc
        }
    };
    let u = u.clamp(1e-7, 1.0 - 6e-8);
    // The central region: a rational function of q = u − ½.
    let q = u.clone().sub_scalar(0.5);
    let r = q.clone().square();
    let central = horner(r.clone(), &A, false) * q.clone() / horner(r, &B, true);
    // The tails: a rational function of √(−2 ln min(u, 1 − u)), negative in the lower one.
    let tail_p = u.clone().min_pair(u.clone().neg().add_scalar(1.0));
    let s = tail_p.clone().log().mul_scalar(-2.0).sqrt();
    let lower = horner(s.clone(), &C, false) / horner(s, &D4, true);
    let upper_side = q.greater_elem(0.0);
    let tail = lower.clone().mask_where(upper_side, lower.neg());
    central.mask_where(tail_p.lower_elem(LOW), tail)
}

/// Gaussian negative log-likelihood, summed over channels and time.
///
/// # Shapes
/// - `x`, `mean`: `[batch, channels, time]`
/// - `log_sigma`: broadcastable to `x`, e.g. `[1, channels, 1]`
/// - output: `[batch]`
pub fn gaussian_nll(x: Tensor<3>, mean: Tensor<3>, log_sigma: Tensor<3>) -> Tensor<1> {
    sum_window(gaussian_nll_elements(x, mean, log_sigma))
}

/// [`gaussian_nll`] before the sum: one term per element, `[batch, channels, time]`.
pub fn gaussian_nll_elements(x: Tensor<3>, mean: Tensor<3>, log_sigma: Tensor<3>) -> Tensor<3> {
    let z = (x - mean) / log_sigma.clone().exp(); // [batch, channels, time]
    z.square().mul_scalar(0.5) + log_sigma + HALF_LN_2PI
}

/// φ = 0.99·tanh(a): |φ| < 0.99 keeps the innovation variance σ²(1 − φ²) away from zero.
fn ar_phi(a: Tensor<1>) -> Tensor<1> {
    a.tanh().mul_scalar(0.99)
}

/// The stationary AR(1) residuals of white noise `eps`, as one lower-triangular filter per
/// channel (a batched matmul rather than `time` sequential steps on the autodiff tape):
/// r_t = Σ_{s≤t} φ^{t−s} g_s ε_s with g_0 = σ and g_s = σ √(1 − φ²).
///
/// # Shapes
/// - `eps`: `[batch, channels, time]`; `phi`: `[channels]`; `sigma`: `[1, channels, 1]` →
///   `[batch, channels, time]`
fn ar1_filter(eps: Tensor<3>, phi: Tensor<1>, sigma: Tensor<3>) -> Tensor<3> {
    let [_, c, t] = eps.dims();
    let device = eps.device();
    let host = |f: &dyn Fn(usize, usize) -> f32| {
        let v: Vec<f32> = (0..t * t).map(|i| f(i / t, i % t)).collect();
        Tensor::<2>::from_data(burn::tensor::TensorData::new(v, [t, t]), &device).reshape([1, t, t])
    };
    let lag = host(&|i, j| if j <= i { (i - j) as f32 } else { 0.0 }); // [1, time, time]
    let lower = host(&|i, j| if j <= i { 1.0 } else { 0.0 });
    let odd = host(&|i, j| if j <= i { ((i - j) % 2) as f32 } else { 0.0 });
    // |φ|^k through exp(k ln|φ|); the floor keeps ln finite at φ = 0 (where φ^0 = 1 still).
    let ln_abs = phi.clone().abs().clamp_min(1e-12).log().reshape([c, 1, 1]);
    let sign = phi.clone().detach().sign().reshape([c, 1, 1]); // [channels, 1, 1]
    let signs = (odd.clone() * sign.neg().add_scalar(1.0))
        .neg()
        .add_scalar(1.0); // 1 or (−1)^k

    // Lag 1 takes φ itself: through exp(ln|φ|) no gradient would reach φ at φ = 0, where every
    // run starts (a = 0), although ∂r_t/∂φ = σ ε_{t−1} there.
    let sub = host(&|i, j| if i == j + 1 { 1.0 } else { 0.0 });
    let powers = (lag * ln_abs).exp() * signs * lower * sub.clone().neg().add_scalar(1.0)
        + sub * phi.clone().reshape([c, 1, 1]); // [channels, time, time]
    let innovation = phi.square().neg().add_scalar(1.0).sqrt(); // [channels]
    let first: Vec<f32> = (0..t).map(|s| if s == 0 { 1.0 } else { 0.0 }).collect();
    let first = Tensor::<1>::from_data(burn::tensor::TensorData::new(first, [t]), &device)
        .reshape([1, 1, t]); // [1, 1, time]
    let gain = (first.clone() + (first.neg().add_scalar(1.0)) * innovation.reshape([c, 1, 1]))
        * sigma.reshape([c, 1, 1]); // [channels, 1, time]: g_s per column
    let filter = powers * gain; // [channels, time, time]
    eps.swap_dims(0, 1) // [channels, batch, time]
        .matmul(filter.swap_dims(1, 2))
        .swap_dims(0, 1)
}

/// Negative log-likelihood of each element under a stationary AR(1) residual process per
/// channel: r = x − mean, r_0 ~ N(0, σ²), r_t = φ r_{t−1} + e_t with e_t ~ N(0, σ²(1 − φ²)).
/// The chain rule makes the window's density exact — the Gaussian with covariance
/// Σ_ij = σ² φ^|i−j| — at O(time) cost: element 0 is r_0's term, element t the innovation's.
///
/// # Shapes
/// - `x`, `mean`: `[batch, channels, time]`; `log_sigma`, `phi`: `[1, channels, 1]`
/// - output: `[batch, channels, time]`
pub fn gaussian_ar1_nll_elements(
    x: Tensor<3>,
    mean: Tensor<3>,
    log_sigma: Tensor<3>,
    phi: Tensor<3>,
) -> Tensor<3> {
    let r = x - mean; // [batch, channels, time]
    let t = r.dims()[2];
    let first = r.clone().narrow(2, 0, 1); // [batch, channels, 1]
    let first = gaussian_nll_elements(first.clone(), first.zeros_like(), log_sigma.clone());
    if t == 1 {
        return first;
    }
    let innov = r.clone().narrow(2, 1, t - 1) - r.narrow(2, 0, t - 1) * phi.clone(); // [batch, channels, time − 1]
    let log_scale = log_sigma + phi.square().neg().add_scalar(1.0).log().mul_scalar(0.5); // [1, channels, 1]
    let rest = gaussian_nll_elements(innov.clone(), innov.zeros_like(), log_scale);
    Tensor::cat(vec![first, rest], 2)
}

/// Poisson negative log-likelihood of counts `x` under `exp(log_rate)`, with the `ln x!` term,
/// summed over channels and time.
///
/// # Shapes
/// - `x`, `log_rate`: `[batch, channels, time]`
/// - output: `[batch]`
pub fn poisson_nll(x: Tensor<3>, log_rate: Tensor<3>) -> Tensor<1> {
    sum_window(poisson_nll_elements(x, log_rate))
}

/// [`poisson_nll`] before the sum: one term per element, `[batch, channels, time]`.
pub fn poisson_nll_elements(x: Tensor<3>, log_rate: Tensor<3>) -> Tensor<3> {
    log_rate.clone().exp() - x.clone() * log_rate + ln_factorial(x)
}

/// `ln x!` for non-negative integer-valued `x`, elementwise.
///
/// Stirling's series at `n = x + 2` (error < 1e-5 there and falling), then
/// `ln x! = ln (x+2)! − ln(x+1) − ln(x+2)`.
pub fn ln_factorial<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let n = x.clone().add_scalar(2.0);
    let inv = n.clone().recip();
    let stirling = n.clone() * n.clone().log() - n.clone()
        + (n.clone().log() + (2.0 * std::f32::consts::PI).ln()).mul_scalar(0.5)
        + inv.clone().div_scalar(12.0)
        - inv.powi_scalar(3).div_scalar(360.0);
    stirling - x.add_scalar(1.0).log() - n.log()
}

/// KL(N(mu, exp(logvar)) ‖ N(0, I)) in closed form, summed over the latent dimension.
///
/// # Shapes
/// - `mu`, `logvar`: `[batch, latent]`
/// - output: `[batch]`
pub fn gaussian_kl(mu: Tensor<2>, logvar: Tensor<2>) -> Tensor<1> {
    let kl = (mu.square() + logvar.clone().exp() - logvar)
        .sub_scalar(1.0)
        .mul_scalar(0.5); // [batch, latent]
    kl.sum_dim(1).squeeze_dim(1)
}

/// A learned diagonal Gaussian prior N(m, diag(exp(logvar))) over a latent, in place of
/// N(0, I): its KL stays closed-form and its samples follow where the posteriors went.
#[derive(burn::module::Module, Debug)]
pub struct LearnedPrior {
    mean: Param<Tensor<1>>,
    logvar: Param<Tensor<1>>,
}

impl LearnedPrior {
    /// N(0, I) on `dim` dimensions, to be learned.
    pub fn init(dim: usize, device: &Device) -> Self {
        LearnedPrior {
            mean: Param::from_tensor(Tensor::zeros([dim], device)),
            logvar: Param::from_tensor(Tensor::zeros([dim], device)),
        }
    }

    fn rows(&self) -> (Tensor<2>, Tensor<2>) {
        (
            self.mean.val().unsqueeze_dim(0),
            self.logvar.val().clamp(-8.0, 4.0).unsqueeze_dim(0),
        )
    }

    /// KL(N(mu, exp(logvar)) ‖ this prior), summed over the latent dimension.
    ///
    /// # Shapes
    /// - `mu`, `logvar`: `[batch, latent]` → `[batch]`
    pub fn kl(&self, mu: Tensor<2>, logvar: Tensor<2>) -> Tensor<1> {
        let (m, plv) = self.rows(); // [1, latent]
        let kl = (plv.clone() - logvar.clone() + (logvar.exp() + (mu - m).square()) / plv.exp())
            .sub_scalar(1.0)
            .mul_scalar(0.5); // [batch, latent]
        kl.sum_dim(1).squeeze_dim(1)
    }

    /// ln p(z), summed over the latent dimension.
    ///
    /// # Shapes
    /// - `z`: `[batch, latent]` → `[batch]`
    pub fn log_prob(&self, z: Tensor<2>) -> Tensor<1> {
        let (m, plv) = self.rows();
        let half = plv.clone().mul_scalar(0.5);
        std_normal_log_prob((z - m) / half.clone().exp()) - half.sum_dim(1).squeeze_dim(1)
    }

    /// Prior draws from standard-normal noise `eps`: `m + exp(logvar / 2) · eps`.
    ///
    /// # Shapes
    /// - `eps`: `[n, latent]` → `[n, latent]`
    pub fn draw(&self, eps: Tensor<2>) -> Tensor<2> {
        let (m, plv) = self.rows();
        m + plv.mul_scalar(0.5).exp() * eps
    }
}

/// Which prior a latent-variable model's `z` has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prior {
    /// N(0, I).
    #[default]
    Standard,
    /// A diagonal Gaussian whose mean and variance are learned with the model ([`LearnedPrior`]).
    Learned,
}

impl Prior {
    /// Whether this is the standard normal.
    pub fn is_standard(&self) -> bool {
        *self == Prior::Standard
    }
}

/// Standard-normal log-density summed over the last dimension.
///
/// # Shapes
/// - `z`: `[batch, dim]` → `[batch]`
pub fn std_normal_log_prob(z: Tensor<2>) -> Tensor<1> {
    let d = z.dims()[1] as f32;
    z.square().sum_dim(1).squeeze_dim(1).mul_scalar(-0.5) - d * HALF_LN_2PI
}

/// KL(q ‖ prior) of the diagonal Gaussian posterior `(mu, logvar)`: against the learned
/// `prior` when there is one, else against N(0, I), summed over the latent dimension.
///
/// # Shapes
/// - `mu`, `logvar`: `[batch, latent]` → `[batch]`
pub fn prior_kl(prior: Option<&LearnedPrior>, mu: Tensor<2>, logvar: Tensor<2>) -> Tensor<1> {
    match prior {
        Some(p) => p.kl(mu, logvar),
        None => gaussian_kl(mu, logvar),
    }
}

/// Prior draws from standard-normal noise `eps`: `eps` itself under N(0, I).
///
/// # Shapes
/// - `eps`: `[n, latent]` → `[n, latent]`
pub fn prior_draw(prior: Option<&LearnedPrior>, eps: Tensor<2>) -> Tensor<2> {
    match prior {
        Some(p) => p.draw(eps),
        None => eps,
    }
}

/// Posterior draws `z = mu + σ·ε` for `k` noise draws per window, with
/// `ln p(z) − ln q(z | x)` for each (the learned `prior`, else N(0, I); diagonal Gaussian
/// posterior), for importance weights `ln p(x | z) + ln p(z) − ln q(z | x)`.
///
/// # Shapes
/// - `mu`, `logvar`: `[batch, latent]`; `eps`: `[k, batch, latent]` → (`[k·batch, latent]`,
///   `[k·batch]`), draw-major (row `j·batch + i` is draw `j` of window `i`)
pub fn posterior_draws(
    mu: Tensor<2>,
    logvar: Tensor<2>,
    eps: Tensor<3>,
    prior: Option<&LearnedPrior>,
) -> (Tensor<2>, Tensor<1>) {
    let [k, b, l] = eps.dims();
    let rep = |v: Tensor<2>| {
        v.unsqueeze_dim::<3>(0)
            .expand([k, b, l])
            .reshape([k * b, l])
    };
    let e = eps.reshape([k * b, l]);
    let z = rep(mu) + rep(logvar.clone()).mul_scalar(0.5).exp() * e.clone();
    // ln q(z|x) = ln N(ε; 0, I) − ½ Σ logvar.
    let log_q = std_normal_log_prob(e) - rep(logvar).sum_dim(1).squeeze_dim(1).mul_scalar(0.5);
    let log_p = match prior {
        Some(p) => p.log_prob(z.clone()),
        None => std_normal_log_prob(z.clone()),
    };
    (z, log_p - log_q)
}

/// `x` repeated for `k` draws, in the row order of [`posterior_draws`].
///
/// # Shapes
/// - `x`: `[batch, channels, time]` → `[k·batch, channels, time]`
pub fn repeat_draws(x: Tensor<3>, k: usize) -> Tensor<3> {
    let [b, c, t] = x.dims();
    x.unsqueeze_dim::<4>(0)
        .expand([k, b, c, t])
        .reshape([k * b, c, t])
}

/// The ELBO and the IWAE bound (Burda et al. 2016) per window from `k` importance log-weights:
/// `mean_k w` and `logsumexp_k w − ln k`; the second is never below the first.
///
/// # Shapes
/// - `log_w`: `[k, batch]` → (`[batch]`, `[batch]`)
pub fn bounds(log_w: Tensor<2>) -> (Tensor<1>, Tensor<1>) {
    let k = log_w.dims()[0] as f32;
    let elbo = log_w.clone().mean_dim(0).squeeze_dim(0);
    let max = log_w.clone().max_dim(0); // [1, batch]
    let lse = (log_w - max.clone()).exp().sum_dim(0).log() + max;
    (elbo, lse.squeeze_dim(0).sub_scalar(k.ln()))
}

/// The ELBO split over elements (see [`Density::bound_elements`](crate::Density::bound_elements)):
/// each element's `log p(x_ct | z)` plus an equal share of `ln p(z) − ln q(z | x)`, averaged
/// over the `k` draws; summed over a window it is the ELBO of [`bounds`].
///
/// # Shapes
/// - `log_lik`: `[k·batch, channels, time]`, `log_p_over_q`: `[k·batch]`, both draw-major as
///   [`posterior_draws`] gives them → `[batch, channels, time]`
pub fn elbo_elements(log_lik: Tensor<3>, log_p_over_q: Tensor<1>, k: usize) -> Tensor<3> {
    let [kb, c, t] = log_lik.dims();
    let b = kb / k.max(1);
    let share = log_p_over_q
        .reshape([k, b, 1, 1])
        .div_scalar((c * t) as f32); // [k, batch, 1, 1]
    (log_lik.reshape([k, b, c, t]) + share)
        .mean_dim(0)
        .reshape([b, c, t])
}

/// Sums `[batch, channels, time]` to `[batch]`.
pub fn sum_window(x: Tensor<3>) -> Tensor<1> {
    let [b, c, t] = x.dims();
    x.reshape([b, c * t]).sum_dim(1).squeeze_dim(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    fn dev() -> Device {
        Device::flex()
    }

    #[test]
    fn the_normal_quantile_inverts_the_cdf_and_has_the_known_values() {
        let d = dev();
        let known = [
            (0.5f32, 0.0f32),
            (0.975, 1.959_964),
            (0.025, -1.959_964),
            (0.841_344_7, 1.0),
        ];
        let u = Tensor::<1>::from_data(TensorData::new(known.map(|k| k.0).to_vec(), [4]), &d);
        for (z, (_, want)) in host1(normal_quantile(u)).iter().zip(known) {
            assert!((z - want).abs() < 3e-4, "{z} vs {want}");
        }
        // Both branches and the joins between them, through Φ and back.
        let zs: Vec<f32> = (-50..=50).map(|i| i as f32 * 0.1).collect();
        let z = Tensor::<1>::from_data(TensorData::new(zs.clone(), [zs.len()]), &d);
        for (back, z) in host1(normal_quantile(normal_cdf(z))).iter().zip(&zs) {
            // Φ = (1 + erf) / 2 in f32 keeps about 7 digits of u and of 1 − u: the tails'
            // round trip loses precision, not the quantile.
            let tol = if z.abs() > 3.0 { 2e-2 } else { 2e-3 };
            assert!((back - z).abs() < tol, "Φ⁻¹(Φ({z})) = {back}");
        }
    }

    fn host1(t: Tensor<1>) -> Vec<f32> {
        crate::test_util::host(t)
            .into_iter()
            .map(|v| v as f32)
            .collect()
    }

    /// −ln N(r; 0, Σ) with Σ_ij = σ² φ^|i−j|, by a dense Cholesky factorisation in f64.
    fn dense_ar1_nll(r: &[f64], sigma: f64, phi: f64) -> f64 {
        let n = r.len();
        let cov = |i: usize, j: usize| sigma * sigma * phi.powi((i as i32 - j as i32).abs());
        let mut l = vec![0f64; n * n];
        for i in 0..n {
            for j in 0..=i {
                let s: f64 = (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum();
                l[i * n + j] = if i == j {
                    (cov(i, i) - s).sqrt()
                } else {
                    (cov(i, j) - s) / l[j * n + j]
                };
            }
        }
        // Solve L y = r; −ln N = ½|y|² + Σ ln L_ii + (n/2) ln 2π.
        let mut y = vec![0f64; n];
        for i in 0..n {
            let s: f64 = (0..i).map(|k| l[i * n + k] * y[k]).sum();
            y[i] = (r[i] - s) / l[i * n + i];
        }
        0.5 * y.iter().map(|v| v * v).sum::<f64>()
            + (0..n).map(|i| l[i * n + i].ln()).sum::<f64>()
            + 0.5 * n as f64 * (2.0 * std::f64::consts::PI).ln()
    }

    #[test]
    fn learned_prior_kl_and_density_match_their_closed_forms() {
        let d = dev();
        let mut prior = LearnedPrior::init(2, &d);
        prior.mean = Param::from_tensor(Tensor::from_data(
            TensorData::new(vec![0.5f32, -1.0], [2]),
            &d,
        ));
        prior.logvar = Param::from_tensor(Tensor::from_data(
            TensorData::new(vec![0.4f32, -0.6], [2]),
            &d,
        ));
        let mu = Tensor::<2>::from_data(TensorData::new(vec![0.1f32, 0.3], [1, 2]), &d);
        let lv = Tensor::<2>::from_data(TensorData::new(vec![-0.2f32, 0.5], [1, 2]), &d);
        let kl: Vec<f32> = prior
            .kl(mu.clone(), lv.clone())
            .into_data()
            .try_to_vec()
            .unwrap();
        // KL(N(a, s²) ‖ N(m, v)) = ½ (ln v − ln s² + (s² + (a − m)²)/v − 1), per dimension.
        let want: f64 = [(0.1, -0.2, 0.5, 0.4), (0.3, 0.5, -1.0, -0.6)]
            .iter()
            .map(|&(a, ls2, m, lv): &(f64, f64, f64, f64)| {
                0.5 * (lv - ls2 + (ls2.exp() + (a - m) * (a - m)) / lv.exp() - 1.0)
            })
            .sum();
        assert!((kl[0] as f64 - want).abs() < 1e-5, "{kl:?} vs {want}");
        // At the standard normal it is the closed-form KL against N(0, I).
        let std = LearnedPrior::init(2, &d);
        let a: Vec<f32> = std
            .kl(mu.clone(), lv.clone())
            .into_data()
            .try_to_vec()
            .unwrap();
        let b: Vec<f32> = gaussian_kl(mu, lv).into_data().try_to_vec().unwrap();
        assert!((a[0] - b[0]).abs() < 1e-6);
        // ln p(z) against the univariate densities.
        let z = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, -2.0], [1, 2]), &d);
        let lp: Vec<f32> = prior.log_prob(z).into_data().try_to_vec().unwrap();
        let ln_n = |x: f64, m: f64, lv: f64| {
            -0.5 * (x - m) * (x - m) / lv.exp() - 0.5 * lv - 0.5 * (2.0 * std::f64::consts::PI).ln()
        };
        let want = ln_n(1.0, 0.5, 0.4) + ln_n(-2.0, -1.0, -0.6);
        assert!((lp[0] as f64 - want).abs() < 1e-5, "{lp:?} vs {want}");
    }

    #[test]
    fn ar1_likelihood_equals_the_dense_gaussian_with_ar1_covariance() {
        let d = dev();
        // Two windows, two channels (φ = 0.8 and −0.5, σ = 1.5 and 0.7), six steps.
        let (b, c, t) = (2, 2, 6);
        let x: Vec<f32> = (0..b * c * t)
            .map(|i| ((i * 7 % 11) as f32 - 5.0) / 3.0)
            .collect();
        let mean: Vec<f32> = (0..b * c * t).map(|i| (i as f32 * 0.3).sin()).collect();
        let (sig, phi) = ([1.5f32, 0.7], [0.8f32, -0.5]);
        let t3 = |v: Vec<f32>, s: [usize; 3]| Tensor::<3>::from_data(TensorData::new(v, s), &d);
        let nll = sum_window(gaussian_ar1_nll_elements(
            t3(x.clone(), [b, c, t]),
            t3(mean.clone(), [b, c, t]),
            t3(sig.iter().map(|s| s.ln()).collect(), [1, c, 1]),
            t3(phi.to_vec(), [1, c, 1]),
        ));
        let got: Vec<f32> = nll.into_data().try_to_vec().unwrap();
        for w in 0..b {
            let want: f64 = (0..c)
                .map(|ch| {
                    let r: Vec<f64> = (0..t)
                        .map(|k| (x[(w * c + ch) * t + k] - mean[(w * c + ch) * t + k]) as f64)
                        .collect();
                    dense_ar1_nll(&r, sig[ch] as f64, phi[ch] as f64)
                })
                .sum();
            assert!(
                (got[w] as f64 - want).abs() < 1e-4 * want.abs().max(1.0),
                "{got:?} vs {want}"
            );
        }
        // φ = 0 is the independent Gaussian.
        let white = gaussian_ar1_nll_elements(
            t3(x.clone(), [b, c, t]),
            t3(mean.clone(), [b, c, t]),
            t3(vec![0.2; c], [1, c, 1]),
            t3(vec![0.0; c], [1, c, 1]),
        );
        let plain = gaussian_nll_elements(
            t3(x, [b, c, t]),
            t3(mean, [b, c, t]),
            t3(vec![0.2; c], [1, c, 1]),
        );
        white
            .into_data()
            .assert_approx_eq::<f32>(&plain.into_data(), burn::tensor::Tolerance::absolute(1e-6));
    }

    /// KL(N(m, s²) ‖ N(0, 1)) by the trapezoid rule on a wide grid, in f64.
    fn kl_numeric(m: f64, s: f64) -> f64 {
        let (lo, hi, n) = (m - 12.0 * s, m + 12.0 * s, 200_000);
        let h = (hi - lo) / n as f64;
        let mut acc = 0.0;
        for i in 0..=n {
            let x = lo + i as f64 * h;
            let q = (-(x - m).powi(2) / (2.0 * s * s)).exp()
                / (s * (2.0 * std::f64::consts::PI).sqrt());
            let lq =
                -(x - m).powi(2) / (2.0 * s * s) - s.ln() - 0.5 * (2.0 * std::f64::consts::PI).ln();
            let lp = -x * x / 2.0 - 0.5 * (2.0 * std::f64::consts::PI).ln();
            let w = if i == 0 || i == n { 0.5 } else { 1.0 };
            acc += w * q * (lq - lp);
        }
        acc * h
    }

    #[test]
    fn the_reparameterised_ar1_draw_is_the_recursion_with_gradients_to_sigma_and_phi() {
        let d = Device::flex().autodiff();
        // Three channels: φ > 0, φ < 0 and φ = 0 (white), σ = 1.5, 0.7, 1.
        let (phis, sigmas) = ([0.8f32, -0.5, 0.0], [1.5f32, 0.7, 1.0]);
        let a: Vec<f32> = phis.iter().map(|p| (p / 0.99).atanh()).collect();
        let head = ObservationHead::new(Some(Likelihood::GaussianAr1), true, 3);
        let ar = Param::from_tensor(Tensor::<1>::from_data(TensorData::new(a, [3]), &d));
        let ls: Vec<f32> = sigmas.iter().map(|s| s.ln()).collect();
        let log_sigma = Param::from_tensor(Tensor::<1>::from_data(TensorData::new(ls, [3]), &d));
        let (b, t) = (2, 7);
        let eps: Vec<f32> = (0..b * 3 * t)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) / 6.0)
            .collect();
        let mean = Tensor::<3>::zeros([b, 3, t], &d).require_grad();
        let eps_t = Tensor::<3>::from_data(TensorData::new(eps.clone(), [b, 3, t]), &d);
        let r = head.rsample(mean.clone(), &log_sigma, Some(&ar), eps_t);
        let got: Vec<f32> = r.clone().into_data().try_to_vec().unwrap();
        for w in 0..b {
            for c in 0..3 {
                let (phi, sigma) = (phis[c], sigmas[c]);
                let mut prev = 0.0f32;
                for s in 0..t {
                    let e = eps[(w * 3 + c) * t + s];
                    let want = if s == 0 {
                        sigma * e
                    } else {
                        phi * prev + sigma * (1.0 - phi * phi).sqrt() * e
                    };
                    let g = got[(w * 3 + c) * t + s];
                    assert!(
                        (g - want).abs() < 1e-4 * (1.0 + want.abs()),
                        "{w} {c} {s}: {g} vs {want}"
                    );
                    prev = want;
                }
            }
        }
        // Gradients of Σ w·r against central differences of the same recursion in f64, for
        // φ > 0, φ < 0 and φ = 0 (where every run starts): the critic of a VAE-GAN trains σ
        // and φ through this draw.
        let weight = |i: usize| ((i % 5) as f64 - 2.0) / 2.0;
        let host_f = |a: [f64; 3], ls: [f64; 3]| {
            let mut f = 0.0;
            for w in 0..b {
                for c in 0..3 {
                    let (phi, sigma) = (0.99 * a[c].tanh(), ls[c].exp());
                    let mut prev = 0.0f64;
                    for s in 0..t {
                        let i = (w * 3 + c) * t + s;
                        let e = eps[i] as f64;
                        prev = if s == 0 {
                            sigma * e
                        } else {
                            phi * prev + sigma * (1.0 - phi * phi).sqrt() * e
                        };
                        f += weight(i) * prev;
                    }
                }
            }
            f
        };
        let wt: Vec<f32> = (0..b * 3 * t).map(|i| weight(i) as f32).collect();
        let wt = Tensor::<3>::from_data(TensorData::new(wt, [b, 3, t]), &d);
        let grads = (r * wt).sum().backward();
        let grad = |p: &Param<Tensor<1>>| -> Vec<f32> {
            p.val()
                .grad(&grads)
                .unwrap()
                .into_data()
                .try_to_vec()
                .unwrap()
        };
        let (g_ar, g_ls) = (grad(&ar), grad(&log_sigma));
        let a0: Vec<f64> = phis.iter().map(|p| ((p / 0.99) as f64).atanh()).collect();
        let l0: Vec<f64> = sigmas.iter().map(|s| (*s as f64).ln()).collect();
        let (a0, l0): ([f64; 3], [f64; 3]) = (a0.try_into().unwrap(), l0.try_into().unwrap());
        let h = 1e-5;
        for c in 0..3 {
            let bump = |v: [f64; 3], by: f64| {
                let mut v = v;
                v[c] += by;
                v
            };
            let fd_a = (host_f(bump(a0, h), l0) - host_f(bump(a0, -h), l0)) / (2.0 * h);
            let fd_l = (host_f(a0, bump(l0, h)) - host_f(a0, bump(l0, -h))) / (2.0 * h);
            for (name, got, want) in [("a", g_ar[c], fd_a), ("ln σ", g_ls[c], fd_l)] {
                assert!(
                    (got as f64 - want).abs() < 1e-3 * (1.0 + want.abs()),
                    "channel {c}: ∂/∂{name} {got} vs {want}"
                );
            }
            assert!(
                fd_a.abs() > 0.01,
                "channel {c}: a gradient to check ({fd_a})"
            );
        }
        // A fixed σ (learn_sigma = false) takes no gradient through the draw.
        let fixed = ObservationHead::new(Some(Likelihood::GaussianAr1), false, 3);
        let eps_t = Tensor::<3>::from_data(TensorData::new(eps.clone(), [b, 3, t]), &d);
        let grads = fixed
            .rsample(mean.clone(), &log_sigma, Some(&ar), eps_t)
            .sum()
            .backward();
        assert!(log_sigma.val().grad(&grads).is_none());
        // A Gaussian head draws mean + σ·ε.
        let white = ObservationHead::new(Some(Likelihood::Gaussian), true, 3);
        let eps_t = Tensor::<3>::from_data(TensorData::new(eps.clone(), [b, 3, t]), &d);
        let w: Vec<f32> = white
            .rsample(mean.ones_like(), &log_sigma, None, eps_t)
            .into_data()
            .try_to_vec()
            .unwrap();
        for (i, v) in w.iter().enumerate() {
            let want = 1.0 + sigmas[(i / t) % 3] * eps[i];
            assert!((v - want).abs() < 1e-5, "{v} vs {want}");
        }
    }

    #[test]
    fn gaussian_kl_matches_numerical_integration() {
        let cases: [(f64, f64); 5] = [
            (0.0, 0.0),
            (1.5, 0.0),
            (-0.7, -1.2),
            (2.0, 0.8),
            (0.3, -3.0),
        ];
        let mu: Vec<f32> = cases.iter().map(|c| c.0 as f32).collect();
        let lv: Vec<f32> = cases.iter().map(|c| c.1 as f32).collect();
        let n = cases.len();
        // One latent dimension per row so each row is one case.
        let kl = gaussian_kl(
            Tensor::from_data(TensorData::new(mu, [n, 1]), &dev()),
            Tensor::from_data(TensorData::new(lv, [n, 1]), &dev()),
        )
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
        for (i, (m, lv)) in cases.iter().enumerate() {
            let want = kl_numeric(*m, (0.5 * lv).exp());
            assert!(
                (kl[i] as f64 - want).abs() < 1e-4 * (1.0 + want),
                "case {i}: {} vs {want}",
                kl[i]
            );
        }
        // Summing over latent dimensions: two copies of a case give twice its KL.
        let two = gaussian_kl(
            Tensor::from_data(TensorData::new(vec![1.5f32, 1.5], [1, 2]), &dev()),
            Tensor::from_data(TensorData::new(vec![0.0f32, 0.0], [1, 2]), &dev()),
        )
        .into_scalar::<f32>();
        assert!((two - 2.0 * 1.125).abs() < 1e-5);
    }

    #[test]
    fn ln_factorial_is_exact_enough() {
        let xs: Vec<f32> = (0..30).map(|i| i as f32).collect();
        let got = ln_factorial(Tensor::<1>::from_data(
            TensorData::new(xs.clone(), [30]),
            &dev(),
        ))
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
        let mut exact = 0f64;
        for (i, g) in got.iter().enumerate() {
            if i > 0 {
                exact += (i as f64).ln();
            }
            assert!(
                (*g as f64 - exact).abs() < 1e-4 * (1.0 + exact),
                "{i}! : {g} vs {exact}"
            );
        }
    }

    #[test]
    fn nlls_match_their_formulas() {
        let x = Tensor::<3>::from_data(
            TensorData::new(vec![0f32, 1.0, 3.0, 2.0], [1, 2, 2]),
            &dev(),
        );
        let lr = Tensor::<3>::from_data(
            TensorData::new(vec![0.5f32, -0.2, 1.0, 0.0], [1, 2, 2]),
            &dev(),
        );
        let got = poisson_nll(x.clone(), lr).into_scalar::<f32>() as f64;
        let want: f64 = [(0.0, 0.5), (1.0, -0.2), (3.0, 1.0), (2.0, 0.0)]
            .iter()
            .map(|&(k, l): &(f64, f64)| {
                l.exp() - k * l + (1..=k as u32).map(|j| (j as f64).ln()).sum::<f64>()
            })
            .sum();
        assert!((got - want).abs() < 1e-4, "{got} vs {want}");

        let mean = Tensor::<3>::zeros([1, 2, 2], &dev());
        let ls = Tensor::<3>::from_data(TensorData::new(vec![0f32, 0.7], [1, 2, 1]), &dev());
        let got = gaussian_nll(x, mean, ls).into_scalar::<f32>() as f64;
        let want: f64 = [(0.0, 0.0), (1.0, 0.0), (3.0, 0.7), (2.0, 0.7)]
            .iter()
            .map(|&(v, l): &(f64, f64)| {
                0.5 * (v / l.exp()).powi(2) + l + 0.5 * (2.0 * std::f64::consts::PI).ln()
            })
            .sum();
        assert!((got - want).abs() < 1e-4, "{got} vs {want}");
    }
}
