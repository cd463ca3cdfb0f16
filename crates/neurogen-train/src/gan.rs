//! The GAN's trainer: two players, two optimisers, the one family with a [`Trainer`] of its
//! own (every other family trains through [`crate::trainer::ModelTrainer`]).

use std::path::PathBuf;

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};
use neurogen_data::{SignalKind, Signals};
use neurogen_models::{Critic, GanConfig, GanLoss, Generator, Sampler};
use serde_json::{json, Map, Value};

use crate::guard::clip_grad_norm;
use crate::params::{blend, bumped, collect_grads, first_non_finite};
use crate::registry::{Build, Family};
use crate::rng::{batch_indices, normals, rng, uniforms, Stream};
use crate::run_dir::Checkpoint;
use crate::trainer::{
    adam, host_tensor, load, load_optim, save, scalar, Batch, StepArgs, StepOut, Trainer,
    Validation,
};
use crate::{TrainConfig, TrainError};

/// Both players and the sampling average.
#[derive(Debug, Clone)]
pub(crate) struct Players {
    /// The generator (on the autodiff device).
    pub generator: Generator,
    /// The critic (on the autodiff device).
    pub critic: Critic,
    /// Exponential moving average of the generator (plain device), when configured.
    pub ema: Option<Generator>,
}

/// File of the critic's weights in a checkpoint.
pub(crate) fn critic_file(c: &Checkpoint) -> PathBuf {
    c.dir.join("critic.bpk")
}

/// File of the critic's optimiser state in a checkpoint.
pub(crate) fn critic_optim_file(c: &Checkpoint) -> PathBuf {
    c.dir.join("optim_critic.bpk")
}

/// The GAN in the registry: [`GanTrainer`] to train, the generator (or its moving average)
/// to sample.
pub(crate) struct Adversarial<'a>(pub &'a GanConfig);

impl Family for Adversarial<'_> {
    fn trainer(&self, b: &Build, _init: Option<&Signals>) -> Box<dyn Trainer> {
        let (c, ad) = (self.0, b.device.clone().autodiff());
        let generator = c.init_generator(b.shape, b.kind, &ad);
        let players = Players {
            ema: c.ema.map(|_| generator.valid()),
            critic: c.init_critic(b.shape, &ad),
            generator,
        };
        Box::new(GanTrainer {
            players: Some(players),
            cfg: c.clone(),
            opt_g: adam(b.train).init(),
            opt_c: adam(b.train).init(),
            train: b.train.clone(),
            seed: b.seed,
            device: b.device.clone(),
        })
    }

    fn sampler(&self, b: &Build, ckpt: &Checkpoint) -> Result<Box<dyn Sampler>, TrainError> {
        Ok(Box::new(self.generator(b, ckpt)?))
    }

    fn tensors(
        &self,
        b: &Build,
        ckpt: &Checkpoint,
    ) -> Result<Vec<burn::store::burn_pack::Tensor>, TrainError> {
        Ok(crate::registry::torch_tensors(&self.generator(b, ckpt)?))
    }
}

impl Adversarial<'_> {
    /// The generator a GAN samples with: its moving average when the run kept one.
    fn generator(&self, b: &Build, ckpt: &Checkpoint) -> Result<Generator, TrainError> {
        let file = crate::registry::sampling_file(ckpt, true);
        let g = self.0.init_generator(b.shape, b.kind, b.device);
        crate::registry::load_weights(g, &file)
    }
}

/// Trains both players: `n_critic` critic updates, then one generator update.
pub(crate) struct GanTrainer {
    /// `None` only inside a step.
    players: Option<Players>,
    cfg: GanConfig,
    opt_g: ModuleOptimizer,
    opt_c: ModuleOptimizer,
    train: TrainConfig,
    seed: u64,
    device: Device,
}

impl GanTrainer {
    fn players(&self) -> &Players {
        self.players
            .as_ref()
            .expect("the players are put back after every step")
    }
}

impl Trainer for GanTrainer {
    fn batches_per_step(&self) -> u64 {
        self.cfg.n_critic as u64
    }

    fn batch(&self, data: &Signals, step: u64) -> Batch {
        let classes = self.players().generator.classes();
        real_batches(
            self.seed,
            &self.cfg,
            (self.train.batch_size, classes),
            data,
            step,
            &self.device.clone().autodiff(),
        )
    }

    fn step(&mut self, batch: Batch, args: StepArgs) -> StepOut {
        let p = self
            .players
            .take()
            .expect("the players are put back after every step");
        let lr = (
            self.train.lr * args.lr_scale,
            self.cfg.critic_lr.unwrap_or(self.train.lr) * args.lr_scale,
        );
        let b = self.train.batch_size;
        let z = noise(self.seed, &self.cfg, b, args.step, &self.device);
        let (p, out) = gan_step(
            p,
            &self.cfg,
            batch,
            z,
            lr,
            args,
            (&mut self.opt_g, &mut self.opt_c),
        );
        self.players = Some(p);
        out
    }

    fn validate(&self, valid: &Signals, _step: u64) -> Option<Validation> {
        // The diversity ratio compares pairs of windows.
        if valid.n < 2 {
            return None;
        }
        let p = self.players();
        let sampler = p.ema.clone().unwrap_or_else(|| p.generator.valid());
        let line = quality(
            &sampler,
            &p.critic.valid(),
            &self.cfg,
            valid,
            self.seed,
            &self.device,
        );
        let get = |k: &str| line.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
        let summary = format!(
            "valid mmd2 {:.4}, diversity {:.3}",
            get("mmd2"),
            get("diversity")
        );
        Some(Validation {
            loss: line.get("loss").and_then(Value::as_f64),
            line,
            summary,
        })
    }

    fn save(&self, c: &Checkpoint) -> Result<(), TrainError> {
        let p = self.players();
        save(&p.generator, &c.model_file())?;
        save(&p.critic, &critic_file(c))?;
        if let Some(ema) = &p.ema {
            save(ema, &c.ema_file())?;
        }
        let optims = [
            (&self.opt_g, c.optim_file()),
            (&self.opt_c, critic_optim_file(c)),
        ];
        for (o, f) in optims {
            o.save(&f).map_err(|e| crate::trainer::ckpt_err(&f, e))?;
        }
        Ok(())
    }

    fn restore(&mut self, c: &Checkpoint) -> Result<(), TrainError> {
        let p = self.players();
        let restored = Players {
            generator: load(p.generator.clone(), &c.model_file())?,
            critic: load(p.critic.clone(), &critic_file(c))?,
            ema: match &p.ema {
                Some(ema) => Some(load(ema.clone(), &c.ema_file())?),
                None => None,
            },
        };
        self.opt_g = load_optim(&self.train, &c.optim_file())?;
        self.opt_c = load_optim(&self.train, &critic_optim_file(c))?;
        self.players = Some(restored);
        Ok(())
    }

    fn first_non_finite(&self) -> Option<String> {
        let p = self.players();
        first_non_finite(&p.generator)
            .map(|s| format!("generator.{s}"))
            .or_else(|| first_non_finite(&p.critic).map(|s| format!("critic.{s}")))
    }

    fn num_params(&self) -> usize {
        let p = self.players();
        p.generator.num_params() + p.critic.num_params()
    }

    fn sampler(&self) -> Box<dyn Sampler> {
        let p = self.players();
        Box::new(p.ema.clone().unwrap_or_else(|| p.generator.valid()))
    }

    fn perturb(&mut self, delta: f32) {
        if let Some(p) = self.players.as_mut() {
            p.generator = bumped(p.generator.clone(), delta);
            p.critic = bumped(p.critic.clone(), delta);
        }
    }
}

/// The real windows of `step` for each of its `n_critic` critic updates, `[batch, channels,
/// time]` each; counts dequantised as `k + u` so the generator can match a continuous density
/// (the floor of its samples gives counts back). Drawn on the host from `(seed, step)`.
fn real_batches(
    seed: u64,
    cfg: &GanConfig,
    (b, classes): (usize, usize),
    data: &Signals,
    step: u64,
    device: &Device,
) -> Batch {
    let (nc, dim) = (cfg.n_critic as u64, data.meta.channels * data.meta.time);
    let shape = [b, data.meta.channels, data.meta.time];
    let mut batch = Batch {
        windows: Vec::new(),
        labels: Vec::new(),
    };
    for c in 0..nc {
        let idx = batch_indices(seed, (step.max(1) - 1) * nc + c + 1, data.n, b);
        let x = data.batch(&idx, device); // [batch, channels, time]
        batch.windows.push(if data.meta.kind == SignalKind::Counts {
            let u = uniforms(&mut rng(seed, Stream::Dequantise, step * nc + c), b * dim);
            x + host_tensor(u, shape, device)
        } else {
            x
        });
        if classes > 0 {
            batch.labels.extend(data.label_batch(&idx, classes, device)); // [batch, classes]
        }
    }
    batch
}

/// Generator noise of `step` for each critic update, then for the generator update,
/// `[batch, noise_dim]` each, on `device`'s autodiff twin.
fn noise(seed: u64, cfg: &GanConfig, b: usize, step: u64, device: &Device) -> Vec<Tensor<2>> {
    let (nc, ad) = (cfg.n_critic as u64, device.clone().autodiff());
    (0..=nc)
        .map(|c| {
            let mut r = rng(seed, Stream::TrainNoise, step * (nc + 1) + c);
            host_tensor(normals(&mut r, b * cfg.noise_dim), [b, cfg.noise_dim], &ad)
        })
        .collect()
}

/// `n_critic` critic updates on detached fakes, then one generator update through a fresh
/// forward pass of the updated critic. A conditional GAN generates each update's fakes with the
/// labels of its real windows. With `args.grads`, the gradients of the first critic update
/// (`critic.…`) and of the generator update (`generator.…`) come back by path.
fn gan_step(
    mut p: Players,
    cfg: &GanConfig,
    batch: Batch,
    z: Vec<Tensor<2>>,
    lr: (f64, f64),
    args: StepArgs,
    (opt_g, opt_c): (&mut ModuleOptimizer, &mut ModuleOptimizer),
) -> (Players, StepOut) {
    let (loss, clip) = (cfg.loss, args.clip);
    let mut last = None;
    let mut norm_c = 0.0f64;
    let mut grads_out: Option<Vec<(String, Vec<f32>)>> = None;
    let labels: Vec<Option<Tensor<2>>> = (0..batch.windows.len())
        .map(|i| batch.labels_of(i))
        .collect();
    for ((real, z), y) in batch.windows.into_iter().zip(&z).zip(&labels) {
        let mut critic = p.critic;
        if cfg.spectral_norm {
            critic = critic.power_iteration();
        }
        let fake = p.generator.forward(z.clone(), y.clone()).detach(); // [batch, channels, time]
        let (d_real, d_fake) = (
            critic.forward(real, y.clone()),
            critic.forward(fake, y.clone()),
        );
        let l = loss.critic(d_real.clone(), d_fake.clone());
        let mut grads = GradientsParams::from_grads(l.backward(), &critic);
        if args.grads && grads_out.is_none() {
            grads_out = Some(prefixed("critic", collect_grads(&critic, &grads)));
        }
        if clip > 0.0 {
            let norm;
            (grads, norm) = clip_grad_norm(&critic, grads, clip);
            // A NaN must survive later finite updates, and `f64::max` drops NaN operands.
            norm_c = if norm_c.is_nan() || norm.is_nan() {
                f64::NAN
            } else {
                norm_c.max(norm)
            };
        }
        critic = opt_c.step(lr.1, critic, grads);
        if loss == GanLoss::WganClip {
            critic = critic.clip(cfg.clip as f32);
        }
        p.critic = critic;
        last = Some((l, d_real.mean(), d_fake.mean()));
    }
    let (Some((lc, d_real, d_fake)), Some(z)) = (last, z.last().cloned()) else {
        return (p, StepOut::default());
    };
    let y = labels.last().cloned().flatten();
    let lg = loss.generator(judge(&p.critic).forward(p.generator.forward(z, y.clone()), y));
    // Only the generator's parameters are collected, so this step leaves the critic as it is.
    let mut grads = GradientsParams::from_grads(lg.backward(), &p.generator);
    if let Some(out) = grads_out.as_mut() {
        out.extend(prefixed("generator", collect_grads(&p.generator, &grads)));
    }
    let mut norm_g = 0.0;
    if clip > 0.0 {
        (grads, norm_g) = clip_grad_norm(&p.generator, grads, clip);
    }
    p.generator = opt_g.step(lr.0, p.generator, grads);
    if let (Some(ema), Some(decay)) = (p.ema.take(), cfg.ema) {
        p.ema = Some(blend(ema, &p.generator.valid(), decay as f32));
    }
    let critic = scalar(&lc);
    let mut out = StepOut {
        losses: vec![
            ("loss", critic),
            ("loss_critic", critic),
            ("loss_generator", scalar(&lg)),
        ],
        // The critic's mean scores start near 0, where a relative difference (parity) says
        // nothing: logged, not compared.
        stats: vec![("d_real", scalar(&d_real)), ("d_fake", scalar(&d_fake))],
        fields: vec![],
        grads: grads_out,
    };
    if clip > 0.0 {
        out.stats.extend([
            ("grad_norm_critic", norm_c),
            ("grad_norm_generator", norm_g),
        ]);
    }
    (p, out)
}

/// The critic as the generator's update sees it: a copy whose parameters take no gradient.
/// That update changes only the generator, and the critic's weight gradients would be half of
/// its backward pass's products, computed and dropped; the generator's gradients are the same
/// bits either way.
pub(crate) fn judge(critic: &Critic) -> Critic {
    critic.clone().no_grad()
}

pub(crate) fn prefixed(p: &str, v: Vec<(String, Vec<f32>)>) -> Vec<(String, Vec<f32>)> {
    v.into_iter()
        .map(|(k, g)| (format!("{p}.{k}"), g))
        .collect()
}

/// Validation figures: the critic's loss on valid windows against fakes, the MMD² between
/// generated and valid windows, and the diversity ratio (mean pairwise distance of samples over
/// that of the data; near 0 = mode collapse), on up to 256 windows of each with fixed noise.
fn quality(
    g: &Generator,
    critic: &Critic,
    cfg: &GanConfig,
    valid: &Signals,
    seed: u64,
    device: &Device,
) -> Map<String, Value> {
    let n = valid.n.min(256);
    let idx: Vec<usize> = (0..n).collect();
    let real = valid.batch(&idx, device); // [n, channels, time]
    let classes = g.classes();
    let y = (classes > 0)
        .then(|| valid.label_batch(&idx, classes, device))
        .flatten(); // [n, classes]
    let z = host_tensor(
        normals(&mut rng(seed, Stream::ValidNoise, 0), n * cfg.noise_dim),
        [n, cfg.noise_dim],
        device,
    );
    let fake = g.forward(z, y.clone()); // [n, channels, time]
    let loss = cfg.loss.critic(
        critic.forward(real.clone(), y.clone()),
        critic.forward(fake.clone(), y),
    );
    let dim = valid.meta.channels * valid.meta.time;
    let read = |t: Tensor<3>| t.into_data().try_to_vec::<f32>().unwrap_or_default();
    let (r, f) = (read(real), read(fake));
    let spread = neurogen_eval::mean_pairwise_distance(&r, dim);
    let diversity = neurogen_eval::mean_pairwise_distance(&f, dim) / spread;
    [
        ("loss", json!(scalar(&loss))),
        ("mmd2", json!(neurogen_eval::mmd2_rbf(&f, &r, dim))),
        ("diversity", json!(diversity)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::host_params;
    use burn::tensor::Distribution;
    use neurogen_models::gan::Arch;
    use neurogen_models::{Observation, WindowShape};

    #[test]
    fn a_step_updates_the_critic_on_detached_fakes_and_the_generator_alone_after() {
        let ad = Device::flex().autodiff();
        ad.seed(3);
        let shape = WindowShape {
            inputs: 0,
            channels: 2,
            time: 16,
            sfreq: 10.0,
            classes: 0,
        };
        let cfg = GanConfig {
            hidden: vec![8, 4],
            noise_dim: 6,
            n_critic: 2,
            ema: Some(0.5),
            ..Default::default()
        };
        let g = cfg.init_generator(shape, SignalKind::Continuous, &ad);
        let p = Players {
            ema: Some(g.valid()),
            generator: g,
            critic: cfg.init_critic(shape, &ad),
        };
        let before = (host_params(&p.generator), host_params(&p.critic));
        let normal = |dims: [usize; 3]| Tensor::random(dims, Distribution::Normal(0.0, 1.0), &ad);
        let batch = Batch {
            windows: (0..2).map(|_| normal([5, 2, 16])).collect(),
            labels: vec![],
        };
        let z: Vec<Tensor<2>> = (0..3)
            .map(|_| Tensor::random([5, 6], Distribution::Normal(0.0, 1.0), &ad))
            .collect();
        let args = StepArgs {
            step: 1,
            lr_scale: 1.0,
            clip: 0.0,
            grads: true,
        };
        let adam = burn::optim::AdamConfig::new();
        // Same critic learning rate, generator learning rate 0 or not: the critics come out
        // identical (the generator update does not touch the critic), the generators do not.
        let (mut og, mut oc) = (adam.init(), adam.init());
        let step = |p, lr, og: &mut _, oc: &mut _| {
            gan_step(p, &cfg, batch.clone(), z.clone(), lr, args, (og, oc))
        };
        let (p0, _) = step(p.clone(), (0.0, 1e-2), &mut og, &mut oc);
        assert_eq!(
            host_params(&p0.generator),
            before.0,
            "lr 0 leaves G as it is"
        );
        assert_ne!(host_params(&p0.critic), before.1, "the critic steps");
        let (mut og, mut oc) = (adam.init(), adam.init());
        let (p1, out) = step(p, (1e-2, 1e-2), &mut og, &mut oc);
        assert_eq!(
            host_params(&p1.critic),
            host_params(&p0.critic),
            "the generator step leaves the critic"
        );
        assert_ne!(host_params(&p1.generator), before.0, "the generator steps");
        // EMA with decay ½ sits halfway between the old and the new generator.
        let (old, new, ema) = (
            before.0,
            host_params(&p1.generator),
            host_params(p1.ema.as_ref().unwrap()),
        );
        for ((o, n), e) in old.iter().zip(&new).zip(&ema) {
            assert!((e - 0.5 * (o + n)).abs() < 1e-6);
        }
        let names: Vec<&str> = out.values().iter().map(|(k, _)| *k).collect();
        assert_eq!(
            names,
            ["loss", "loss_critic", "loss_generator", "d_real", "d_fake"]
        );
        assert!(out.values().iter().all(|(_, v)| v.is_finite()));
        // Both players' gradients, by path: the critic's weights and the generator's.
        let grads = out.grads.unwrap();
        assert!(grads.iter().any(|(k, _)| k.starts_with("critic.")));
        assert!(grads.iter().any(|(k, _)| k.starts_with("generator.")));
        assert!(grads.iter().all(|(_, g)| g.iter().all(|v| v.is_finite())));
    }

    #[test]
    fn the_generator_s_gradients_through_a_frozen_copy_of_the_critic_are_the_same_bits() {
        // The generator step scores its fakes with `judge(&critic)`: that must skip only the
        // critic's own gradients, not change a bit of the generator's, and leave the critic it
        // was copied from trainable.
        let ad = Device::flex().autodiff();
        ad.seed(5);
        let shape = WindowShape {
            inputs: 0,
            channels: 3,
            time: 32,
            sfreq: 10.0,
            classes: 0,
        };
        for arch in [Arch::Conv, Arch::Mlp] {
            let cfg = GanConfig {
                arch,
                hidden: vec![8, 4],
                noise_dim: 6,
                ..Default::default()
            };
            let g = cfg.init_generator(shape, SignalKind::Continuous, &ad);
            let critic = cfg.init_critic(shape, &ad);
            let z = Tensor::<2>::random([7, 6], Distribution::Normal(0.0, 1.0), &ad);
            let grads = |c: &Critic| {
                let lg = cfg
                    .loss
                    .generator(c.forward(g.forward(z.clone(), None), None));
                let mut raw = lg.backward();
                (
                    collect_grads(&g, &GradientsParams::from_module(&mut raw, &g)),
                    collect_grads(c, &GradientsParams::from_module(&mut raw, c)),
                )
            };
            let (through_trainable, critic_grads) = grads(&critic);
            let (through_frozen, frozen_grads) = grads(&judge(&critic));
            assert!(
                !critic_grads.is_empty(),
                "{arch:?}: the trainable critic has gradients"
            );
            assert!(
                frozen_grads.is_empty(),
                "{arch:?}: the frozen copy has none"
            );
            assert!(!through_trainable.is_empty());
            let bits = |v: &[(String, Vec<f32>)]| -> Vec<(String, Vec<u32>)> {
                v.iter()
                    .map(|(k, g)| (k.clone(), g.iter().map(|x| x.to_bits()).collect()))
                    .collect()
            };
            assert_eq!(bits(&through_frozen), bits(&through_trainable), "{arch:?}");
            let (again, _) = grads(&critic);
            assert_eq!(
                bits(&again),
                bits(&through_trainable),
                "{arch:?}: still trainable"
            );
        }
    }

    #[test]
    fn a_conditional_gan_learns_each_label_s_windows() {
        // Windows of label 0 sit at +2, of label 1 at −2: a generator conditioned on the label
        // must put its samples where the label's windows are.
        let device = Device::flex();
        device.seed(11);
        let (n, t) = (128, 8);
        let values: Vec<f32> = (0..n * t)
            .map(|i| if (i / t) % 2 == 0 { 2.0 } else { -2.0 } + 0.1 * ((i * 7 % 13) as f32 - 6.0) / 6.0)
            .collect();
        let data = Signals {
            inputs: None,
            values,
            n,
            meta: neurogen_data::SignalMeta {
                input_names: Vec::new(),
                channels: 1,
                time: t,
                sfreq: 10.0,
                channel_names: vec!["x".into()],
                kind: SignalKind::Continuous,
                unit: "a.u.".into(),
                label_names: vec!["up".into(), "down".into()],
            },
            latents: None,
            labels: Some((0..n).map(|i| (i % 2) as u32).collect()),
        };
        let cfg = GanConfig {
            arch: neurogen_models::gan::Arch::Mlp,
            hidden: vec![32],
            noise_dim: 4,
            conditional: true,
            embed_dim: 4,
            ..Default::default()
        };
        let train = TrainConfig {
            batch_size: 32,
            lr: 2e-3,
            betas: [0.5, 0.999],
            ..Default::default()
        };
        let build = Build {
            shape: WindowShape::from(&data.meta),
            kind: SignalKind::Continuous,
            train: &train,
            seed: 3,
            device: &device,
        };
        let mut trainer = Adversarial(&cfg).trainer(&build, None);
        for step in 1..=400 {
            let batch = trainer.batch(&data, step);
            let args = StepArgs {
                step,
                lr_scale: 1.0,
                clip: 0.0,
                grads: false,
            };
            trainer.step(batch, args);
        }
        let g = trainer.sampler();
        assert_eq!(g.classes(), 2);
        for (label, sign) in [(0u32, 1.0f32), (1, -1.0)] {
            let z = Tensor::random([64, 4], Distribution::Normal(0.0, 1.0), &device);
            let y = neurogen_models::condition::one_hot(&[label; 64], 2, &device);
            let Observation::Point { values } = g.generate(z, Some(y)) else {
                panic!("a GAN generates points")
            };
            let mean = values.mean().into_scalar::<f32>();
            assert!(sign * mean > 1.0, "label {label}: mean {mean}");
        }
    }
}
