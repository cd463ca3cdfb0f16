//! The VAE in the registry, and its second trainer: with `[model] adversarial`, a critic
//! judges the VAE's prior samples beside the ELBO (the VAE-GAN of Larsen et al. 2016) and two
//! optimisers take turns, as the GAN's do. Without it the VAE trains through
//! [`ModelTrainer`], as every single-optimiser family does.
//!
//! The critic sees what `neurogen sample` draws, observation noise included (a reparameterised
//! Gaussian or AR(1) draw), so it can push back on whatever tells samples from data: a decoder
//! mean that is too smooth, and white noise where the data's residual is not.

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::Device;
use neurogen_data::Signals;
use neurogen_models::{
    AdversarialConfig, Critic, GanLoss, GenerativeModel, LossContext, Sampler, Vae, VaeConfig,
};
use serde_json::json;

use crate::gan::{critic_file, critic_optim_file, judge, prefixed};
use crate::params::{bumped, collect_grads, first_non_finite};
use crate::registry::{Build, Family, Single};
use crate::rng::{normals, rng, Stream};
use crate::run_dir::Checkpoint;
use crate::trainer::{
    adam, checkpoint_kl_warmup, host_tensor, kl_weight, load, load_optim, loss_values, save,
    scalar, single_batch, update, validate_model, Batch, StepArgs, StepOut, Trainer, Validation,
};
use crate::{TrainConfig, TrainError};

/// `kind = "vae"`: [`VaeGanTrainer`] with `adversarial`, [`Single`] without; both sample,
/// score and export the VAE alone (the critic stays in the checkpoints).
pub(crate) struct Variational<'a>(pub &'a VaeConfig);

impl Family for Variational<'_> {
    fn trainer(&self, b: &Build, init: Option<&Signals>) -> Box<dyn Trainer> {
        let Some(adv) = &self.0.adversarial else {
            return Single(self.0).trainer(b, init);
        };
        let ad = b.device.clone().autodiff();
        let vae = self.0.init(b.shape, &ad);
        let critic = adv.init_critic(b.shape, self.0.conditional, &ad);
        Box::new(VaeGanTrainer::new((vae, critic), adv, b))
    }

    fn sampler(&self, b: &Build, ckpt: &Checkpoint) -> Result<Box<dyn Sampler>, TrainError> {
        Single(self.0).sampler(b, ckpt)
    }

    fn tensors(
        &self,
        b: &Build,
        ckpt: &Checkpoint,
    ) -> Result<Vec<burn::store::burn_pack::Tensor>, TrainError> {
        Single(self.0).tensors(b, ckpt)
    }
}

/// Trains the VAE on `ELBO + weight · channels · time · L_G` and the critic on real windows
/// against the VAE's prior samples, one update each per step (critic first).
pub(crate) struct VaeGanTrainer {
    /// The VAE and the critic (autodiff device); `None` only inside a step.
    players: Option<(Vae, Critic)>,
    adv: AdversarialConfig,
    opt_v: ModuleOptimizer,
    opt_c: ModuleOptimizer,
    train: TrainConfig,
    seed: u64,
    device: Device,
}

impl VaeGanTrainer {
    /// A trainer of `players` (on the autodiff device) with fresh optimisers.
    fn new(players: (Vae, Critic), adv: &AdversarialConfig, b: &Build) -> Self {
        VaeGanTrainer {
            players: Some(players),
            adv: adv.clone(),
            opt_v: adam(b.train).init(),
            opt_c: adam(b.train).init(),
            train: b.train.clone(),
            seed: b.seed,
            device: b.device.clone(),
        }
    }

    fn players(&self) -> &(Vae, Critic) {
        self.players
            .as_ref()
            .expect("the players are put back after every step")
    }
}

impl Trainer for VaeGanTrainer {
    fn batch(&self, data: &Signals, step: u64) -> Batch {
        let key = (self.seed, self.train.batch_size, self.players().0.classes());
        single_batch(key, data, step, &self.device)
    }

    fn step(&mut self, batch: Batch, args: StepArgs) -> StepOut {
        let y = batch.labels_of(0);
        let Some(x) = batch.windows.into_iter().next() else {
            return StepOut::default();
        };
        let (vae, critic) = self
            .players
            .take()
            .expect("the players are put back after every step");
        let [b, c, t] = x.dims();
        let (l, ad) = (vae.loss_noise_dim(), x.device());
        // The ELBO's draws are the plain VAE's (same stream, same key); the prior and
        // observation draws the critic judges come from a stream of their own.
        let eps = normals(&mut rng(self.seed, Stream::TrainNoise, args.step), b * l);
        let eps = host_tensor(eps, [b, l], &ad); // [batch, latent]
        let mut r = rng(self.seed, Stream::Adversarial, args.step);
        let z = host_tensor(normals(&mut r, b * l), [b, l], &ad); // [batch, latent]
        let obs = host_tensor(normals(&mut r, b * c * t), [b, c, t], &ad); // [batch, channels, time]
        let loss = self.adv.loss;
        let lr = self.train.lr * args.lr_scale;
        let lr_c = self.adv.critic_lr.unwrap_or(self.train.lr) * args.lr_scale;

        // The critic, on the samples detached from the VAE (the VAE step below reuses them
        // attached: the VAE has not changed in between).
        let mut critic = if self.adv.spectral_norm {
            critic.power_iteration()
        } else {
            critic
        };
        let sample = vae.draw(z, y.clone(), obs); // [batch, channels, time]
        let fake = sample.clone().detach();
        let (d_real, d_fake) = (
            critic.forward(x.clone(), y.clone()),
            critic.forward(fake, y.clone()),
        );
        let lc = loss.critic(d_real.clone(), d_fake.clone());
        let grads = GradientsParams::from_grads(lc.backward(), &critic);
        let mut grads_out = args
            .grads
            .then(|| prefixed("critic", collect_grads(&critic, &grads)));
        let norm_c;
        (critic, norm_c) = update(critic, &mut self.opt_c, grads, lr_c, args.clip);
        if loss == GanLoss::WganClip {
            critic = critic.clip(self.adv.clip as f32);
        }

        // The VAE, through a fresh pass of the updated critic; only its parameters are
        // collected, so the critic keeps this step's update alone (and `judge` spares its
        // gradients).
        let ctx = LossContext {
            kl_warmup: kl_weight(&self.train, args.step) as f32,
            training: true,
        };
        let elbo = vae.loss(x, y.clone(), eps, &ctx);
        let lg = loss.generator(judge(&critic).forward(sample, y));
        let weight = self.adv.weight * (c * t) as f64;
        // Weight 0 leaves the term out rather than multiplying it by 0: a diverged critic's
        // NaN times 0 would still reach the VAE's gradients.
        let total = if weight > 0.0 {
            elbo.total.clone() + lg.clone().mul_scalar(weight)
        } else {
            elbo.total.clone()
        };
        let (terms, mut stats) = loss_values(&elbo);
        let grads = GradientsParams::from_grads(total.backward(), &vae);
        if let Some(out) = grads_out.as_mut() {
            out.extend(collect_grads(&vae, &grads));
        }
        let (vae, norm) = update(vae, &mut self.opt_v, grads, lr, args.clip);
        self.players = Some((vae, critic));

        let mut losses = vec![("loss", scalar(&total))];
        // The ELBO's own total becomes `loss_elbo`; its terms follow under their names.
        losses.extend(terms.into_iter().map(|(k, v)| match k {
            "loss" => ("loss_elbo", v),
            k => (k, v),
        }));
        losses.extend([
            ("loss_adversarial", scalar(&lg)),
            ("loss_critic", scalar(&lc)),
        ]);
        stats.extend([
            ("d_real", scalar(&d_real.mean())),
            ("d_fake", scalar(&d_fake.mean())),
        ]);
        if let (Some(n), Some(nc)) = (norm, norm_c) {
            stats.extend([("grad_norm", n), ("grad_norm_critic", nc)]);
        }
        StepOut {
            losses,
            stats,
            fields: vec![("kl_warmup", json!(ctx.kl_warmup))],
            grads: grads_out,
        }
    }

    fn validate(&self, valid: &Signals, step: u64) -> Option<Validation> {
        // The ELBO on the valid split, as the plain VAE reports it: `keep_best` ranks by the
        // likelihood bound, which the critic does not change the meaning of.
        let vae = self.players().0.valid();
        let key = (&self.train, self.seed);
        Some(validate_model(&vae, valid, step, key, &self.device))
    }

    fn kl_warmup(&self, step: u64) -> f64 {
        checkpoint_kl_warmup(&self.train, step)
    }

    fn save(&self, ckpt: &Checkpoint) -> Result<(), TrainError> {
        let (vae, critic) = self.players();
        save(vae, &ckpt.model_file())?;
        save(critic, &critic_file(ckpt))?;
        for (o, f) in [
            (&self.opt_v, ckpt.optim_file()),
            (&self.opt_c, critic_optim_file(ckpt)),
        ] {
            o.save(&f).map_err(|e| crate::trainer::ckpt_err(&f, e))?;
        }
        Ok(())
    }

    fn restore(&mut self, ckpt: &Checkpoint) -> Result<(), TrainError> {
        let (vae, critic) = self.players();
        let restored = (
            load(vae.clone(), &ckpt.model_file())?,
            load(critic.clone(), &critic_file(ckpt))?,
        );
        self.opt_v = load_optim(&self.train, &ckpt.optim_file())?;
        self.opt_c = load_optim(&self.train, &critic_optim_file(ckpt))?;
        self.players = Some(restored);
        Ok(())
    }

    fn first_non_finite(&self) -> Option<String> {
        let (vae, critic) = self.players();
        first_non_finite(vae).or_else(|| first_non_finite(critic).map(|s| format!("critic.{s}")))
    }

    fn num_params(&self) -> usize {
        let (vae, critic) = self.players();
        vae.num_params() + critic.num_params()
    }

    fn sampler(&self) -> Box<dyn Sampler> {
        Box::new(self.players().0.valid())
    }

    fn perturb(&mut self, delta: f32) {
        if let Some((vae, critic)) = self.players.take() {
            self.players = Some((bumped(vae, delta), bumped(critic, delta)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::host_params;
    use crate::trainer::ModelTrainer;
    use burn::tensor::Tensor;
    use neurogen_data::{SignalKind, SignalMeta};
    use neurogen_models::{FamilyConfig, Likelihood, WindowShape};

    fn data(n: usize, c: usize, t: usize) -> Signals {
        // Sines of random phase per window: structure a critic can learn.
        let values = (0..n * c * t)
            .map(|i| {
                let (w, ch, s) = (i / (c * t), (i / t) % c, i % t);
                (0.4 * s as f32 + w as f32 * 1.7 + ch as f32).sin()
            })
            .collect();
        Signals {
            inputs: None,
            values,
            n,
            meta: SignalMeta {
                input_names: Vec::new(),
                channels: c,
                time: t,
                sfreq: 10.0,
                channel_names: (0..c).map(|i| format!("c{i}")).collect(),
                kind: SignalKind::Continuous,
                unit: "a.u.".into(),
                label_names: Vec::new(),
            },
            latents: None,
            labels: None,
        }
    }

    fn config(weight: f64, likelihood: Likelihood) -> VaeConfig {
        VaeConfig {
            latent_dim: 3,
            hidden: vec![16],
            likelihood: Some(likelihood),
            adversarial: Some(AdversarialConfig {
                weight,
                hidden: vec![8, 4],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn args(step: u64) -> StepArgs {
        StepArgs {
            step,
            lr_scale: 1.0,
            clip: 0.0,
            grads: false,
        }
    }

    /// A trainer of `cfg` and the plain VAE's trainer, from one set of initial VAE weights.
    fn trainers(cfg: &VaeConfig, build: &Build) -> (VaeGanTrainer, ModelTrainer<Vae>) {
        let ad = build.device.clone().autodiff();
        let vae = cfg.init(build.shape, &ad);
        let adv = cfg.adversarial.as_ref().unwrap();
        let critic = adv.init_critic(build.shape, false, &ad);
        let plain = ModelTrainer::new(vae.clone(), build.train, build.seed, build.device);
        (VaeGanTrainer::new((vae, critic), adv, build), plain)
    }

    #[test]
    fn with_weight_zero_the_vae_trains_exactly_as_the_plain_vae_and_the_critic_learns_beside_it() {
        let device = Device::flex();
        let data = data(32, 2, 16);
        let train = TrainConfig {
            batch_size: 8,
            ..Default::default()
        };
        let cfg = config(0.0, Likelihood::GaussianAr1);
        cfg.check(SignalKind::Continuous).unwrap();
        let build = Build {
            shape: WindowShape::from(&data.meta),
            kind: SignalKind::Continuous,
            train: &train,
            seed: 5,
            device: &device,
        };
        let (mut gan, mut plain) = trainers(&cfg, &build);
        let critic_before = host_params(&gan.players().1);
        for step in 1..=5 {
            let out = gan.step(gan.batch(&data, step), args(step));
            let plain_out = plain.step(plain.batch(&data, step), args(step));
            let names: Vec<&str> = out.values().iter().map(|(k, _)| *k).collect();
            assert_eq!(
                names,
                [
                    "loss",
                    "loss_elbo",
                    "nll",
                    "kl",
                    "neg_elbo",
                    "loss_adversarial",
                    "loss_critic",
                    "d_real",
                    "d_fake"
                ]
            );
            // The ELBO of the same draws on the same weights: the plain VAE's loss exactly.
            assert_eq!(out.values()[1].1, plain_out.values()[0].1, "step {step}");
        }
        let vae = |t: &dyn Trainer| {
            let z = Tensor::<2>::ones([2, 3], &device);
            match t.sampler().generate(z, None) {
                neurogen_models::Observation::GaussianAr1 { mean, .. } => {
                    mean.into_data().try_to_vec::<f32>().unwrap()
                }
                _ => panic!("an AR(1) VAE decodes to AR(1) residuals"),
            }
        };
        assert_eq!(vae(&gan), vae(&plain));
        assert_ne!(
            host_params(&gan.players().1),
            critic_before,
            "the critic learns"
        );
        assert!(gan.num_params() > plain.num_params());
    }

    #[test]
    fn the_adversarial_term_moves_the_vae_and_the_critic_separates_real_from_fake() {
        let device = Device::flex();
        let data = data(64, 2, 16);
        let train = TrainConfig {
            batch_size: 16,
            lr: 2e-3,
            ..Default::default()
        };
        let build = Build {
            shape: WindowShape::from(&data.meta),
            kind: SignalKind::Continuous,
            train: &train,
            seed: 1,
            device: &device,
        };
        let cfg = config(0.5, Likelihood::Gaussian);
        let (mut gan, mut plain) = trainers(&cfg, &build);
        let mut last = StepOut::default();
        for step in 1..=40 {
            last = gan.step(gan.batch(&data, step), args(step));
            plain.step(plain.batch(&data, step), args(step));
        }
        let get = |k: &str| last.values().into_iter().find(|(n, _)| *n == k).unwrap().1;
        assert!(get("d_real") > get("d_fake"), "{:?}", last.values());
        assert!(last.values().iter().all(|(_, v)| v.is_finite()));
        // With weight > 0 the VAE's updates differ from the plain VAE's.
        assert_ne!(host_params(&gan.players().0), host_params(plain.model()));
    }

    #[test]
    fn counts_and_bad_settings_are_refused_with_their_keys() {
        let e = config(1.0, Likelihood::Poisson)
            .check(SignalKind::Counts)
            .unwrap_err()
            .to_string();
        assert!(e.contains("adversarial") && e.contains("Poisson"), "{e}");
        let e = config(-1.0, Likelihood::Gaussian)
            .check(SignalKind::Continuous)
            .unwrap_err()
            .to_string();
        assert!(e.contains("adversarial.weight"), "{e}");
        let mut c = config(1.0, Likelihood::Gaussian);
        c.adversarial.as_mut().unwrap().loss = GanLoss::WganGp;
        let e = c.check(SignalKind::Continuous).unwrap_err().to_string();
        assert!(e.contains("adversarial.loss"), "{e}");
    }
}
