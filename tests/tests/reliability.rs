//! Crash safety and the NaN guard through the real binary: `kill -9` at random moments
//! (and inside a checkpoint write) never costs more than the steps since the last checkpoint
//! and the resumed run equals the uninterrupted one; divergence in every family rolls back,
//! cuts the learning rate and, past `train.max_rollbacks`, stops with exit code 3.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use rand::{Rng, SeedableRng};

mod common;

use common::{
    binary, metrics_without_timing, neurogen, neurogen_env, ok, read_npy, stalled, tiny_train_args,
};

fn args_of(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn guard_lines(run: &Path) -> Vec<serde_json::Value> {
    metrics_without_timing(run)
        .into_iter()
        .filter(|m| m["split"] == "guard")
        .collect()
}

#[test]
fn divergence_in_every_family_rolls_back_then_stops_with_exit_3() {
    let tmp = tempfile::tempdir().unwrap();
    for config in [
        "vae-lorenz",
        "realnvp-kuramoto",
        "latent-ode-lorenz",
        "gan-kuramoto",
    ] {
        // An absurd learning rate: the first update makes the weights non-finite.
        let run = tmp.path().join(config);
        let args = tiny_train_args(config, &run, 30, &["train.lr=1e30"]);
        let r = neurogen(tmp.path(), &args_of(&args));
        assert_eq!(r.code, 3, "{config}: {}", r.stderr);
        let err = r.stderr.lines().last().unwrap_or_default();
        for want in [
            "training diverged: `",
            "at step",
            "parameter `",
            "3 rollback(s)",
            "train.grad_clip",
            "--resume",
        ] {
            assert!(err.contains(want), "{config}: {want:?} in {err}");
        }
        let rollbacks = guard_lines(&run);
        assert_eq!(rollbacks.len(), 3, "{config}: one guard line per rollback");
        for (k, g) in rollbacks.iter().enumerate() {
            assert_eq!(g["step"], 0, "{config}: restored the step-0 checkpoint");
            assert_eq!(g["rollbacks"], k as u64 + 1);
            let lr = g["lr"].as_f64().unwrap();
            let want = 1e30 * 0.5f64.powi(k as i32 + 1);
            assert!(
                (lr / want - 1.0).abs() < 1e-9,
                "{config}: lr {lr} vs {want}"
            );
        }
        // What is left is the last good state, and it samples.
        let out = tmp.path().join(format!("{config}.npy"));
        ok(
            tmp.path(),
            &[
                "sample",
                run.to_str().unwrap(),
                "-n",
                "3",
                "-o",
                out.to_str().unwrap(),
            ],
        );
        assert!(read_npy(&out).values.iter().all(|v| v.is_finite()));

        // A cut large enough to recover: one rollback, then training runs to the end.
        let run = tmp.path().join(format!("{config}-cut"));
        let args = tiny_train_args(config, &run, 30, &["train.lr=1e30", "train.lr_cut=1e-33"]);
        let r = ok(tmp.path(), &args_of(&args));
        assert!(r.stderr.contains("rolling back"), "{config}: {}", r.stderr);
        let m = metrics_without_timing(&run);
        assert_eq!(guard_lines(&run).len(), 1, "{config}");
        let last = m.iter().rev().find(|l| l["split"] == "train").unwrap();
        assert_eq!(last["step"], 30);
        assert!(last["loss"].as_f64().unwrap().is_finite(), "{config}");
        assert!((last["lr"].as_f64().unwrap() / 1e-3 - 1.0).abs() < 1e-6);
    }
}

#[test]
fn a_rollback_mid_run_replays_from_the_checkpoint_and_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let nan = [("NEUROGEN_FAULT_NAN_AT_STEP", "17")];
    let clip = ["train.grad_clip=5.0"];
    let whole = tmp.path().join("whole");
    let args = tiny_train_args("vae-lorenz", &whole, 40, &clip);
    let r = neurogen_env(tmp.path(), &args_of(&args), &nan);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("`loss` was NaN at step 17")
            && r.stderr
                .contains("rolling back to the checkpoint of step 10"),
        "{}",
        r.stderr
    );
    let m = metrics_without_timing(&whole);
    let guard = guard_lines(&whole);
    assert_eq!(guard.len(), 1);
    assert_eq!(
        (guard[0]["step"].as_u64(), guard[0]["bad_step"].as_u64()),
        (Some(10), Some(17))
    );
    // Steps 11..16 were thrown away and replayed: each training line appears once, in order,
    // at the original rate up to step 10 and at half of it after.
    let train: Vec<_> = m.iter().filter(|l| l["split"] == "train").collect();
    let steps: Vec<u64> = train.iter().map(|l| l["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, (1..=8).map(|k| 5 * k).collect::<Vec<_>>());
    for l in &train {
        let step = l["step"].as_u64().unwrap();
        let want = if step <= 10 { 1e-3 } else { 5e-4 };
        assert!((l["lr"].as_f64().unwrap() / want - 1.0).abs() < 1e-9, "{l}");
        // Clipping on: the pre-clip global norm is logged and finite.
        assert!(l["grad_norm"].as_f64().unwrap().is_finite(), "{l}");
    }

    // Stopped at 25 (after the rollback), resumed without the fault: the cut learning rate
    // comes back from the checkpoint and the run equals the uninterrupted one.
    let split = tmp.path().join("split");
    let args = tiny_train_args("vae-lorenz", &split, 25, &clip);
    assert_eq!(neurogen_env(tmp.path(), &args_of(&args), &nan).code, 0);
    let mut args = tiny_train_args("vae-lorenz", &split, 40, &clip);
    args.push("--resume".into());
    ok(tmp.path(), &args_of(&args));
    assert_eq!(metrics_without_timing(&split), m);
}

#[test]
fn a_cosine_schedule_decays_the_rate_the_optimiser_uses_and_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let cosine = ["train.lr_schedule=\"cosine\""];
    let whole = tmp.path().join("whole");
    ok(
        tmp.path(),
        &args_of(&tiny_train_args("vae-lorenz", &whole, 40, &cosine)),
    );
    let m = metrics_without_timing(&whole);
    let train: Vec<_> = m.iter().filter(|l| l["split"] == "train").collect();
    assert_eq!(train.len(), 8);
    for l in &train {
        // Step s of 40 runs at lr · ½(1 + cos(π (s − 1)/40)): the full rate first, ~0 last.
        let s = l["step"].as_f64().unwrap();
        let want = 1e-3 * 0.5 * (1.0 + (std::f64::consts::PI * (s - 1.0) / 40.0).cos());
        assert!((l["lr"].as_f64().unwrap() / want - 1.0).abs() < 1e-9, "{l}");
    }
    // The optimiser takes the decayed rate, not only the log: the losses part from a constant
    // run's after the first step, whose rate both share.
    let constant = tmp.path().join("constant");
    ok(
        tmp.path(),
        &args_of(&tiny_train_args("vae-lorenz", &constant, 40, &[])),
    );
    let c = metrics_without_timing(&constant);
    let loss = |m: &[serde_json::Value], step: u64| {
        m.iter()
            .find(|l| l["split"] == "train" && l["step"] == step)
            .map(|l| l["loss"].as_f64().unwrap())
            .unwrap()
    };
    assert_ne!(loss(&m, 40), loss(&c, 40));
    // The first 25 steps retrained by `reproduce` (stopped at 25 under the 40-step schedule)
    // equal the run's, and resumed from there to 40 they give the uninterrupted run: the
    // rate is a function of the step.
    let split = tmp.path().join("split");
    let (w, sp) = (whole.display().to_string(), split.display().to_string());
    ok(
        tmp.path(),
        &["reproduce", &w, "--steps", "25", "--out", &sp, "-q"],
    );
    let cfg = split.join("experiment.toml").display().to_string();
    ok(tmp.path(), &["train", &cfg, "--out", &sp, "--resume", "-q"]);
    assert_eq!(metrics_without_timing(&split), m);
}

#[test]
fn the_gan_rolls_back_through_the_same_loop() {
    // One loop for every family: the NaN fault hook and the rollback reach the GAN's two
    // players too, and the replay after the rollback resumes exactly.
    let tmp = tempfile::tempdir().unwrap();
    let nan = [("NEUROGEN_FAULT_NAN_AT_STEP", "13")];
    let whole = tmp.path().join("whole");
    let args = tiny_train_args("gan-kuramoto", &whole, 20, &[]);
    let r = neurogen_env(tmp.path(), &args_of(&args), &nan);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("`loss` was NaN at step 13")
            && r.stderr
                .contains("rolling back to the checkpoint of step 10"),
        "{}",
        r.stderr
    );
    let guard = guard_lines(&whole);
    assert_eq!(guard.len(), 1, "{guard:?}");
    assert_eq!(guard[0]["bad_step"].as_u64(), Some(13));
    let m = metrics_without_timing(&whole);
    let lr: Vec<f64> = m
        .iter()
        .filter(|l| l["split"] == "train")
        .map(|l| l["lr"].as_f64().unwrap())
        .collect();
    // lr 2e-4 up to the checkpoint of step 10, halved after the rollback.
    assert_eq!(lr.len(), 4, "{m:?}");
    assert!((lr[1] / 2e-4 - 1.0).abs() < 1e-9 && (lr[3] / 1e-4 - 1.0).abs() < 1e-9);
    // Stopped after the rollback and resumed without the fault: the same run.
    let split = tmp.path().join("split");
    let args = tiny_train_args("gan-kuramoto", &split, 15, &[]);
    assert_eq!(neurogen_env(tmp.path(), &args_of(&args), &nan).code, 0);
    let mut args = tiny_train_args("gan-kuramoto", &split, 20, &[]);
    args.push("--resume".into());
    ok(tmp.path(), &args_of(&args));
    assert_eq!(metrics_without_timing(&split), m);
}

/// The newest checkpoint of `run` (a step directory, never a `.partial-` one) passes
/// `sample`'s manifest check; its step, if there is one.
fn newest_checkpoint_loads(cwd: &Path, run: &Path) -> Option<u64> {
    let dir = run.join("checkpoints");
    let steps: Vec<u64> = std::fs::read_dir(&dir)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let newest = *steps.iter().max()?;
    let out = cwd.join("probe.npy");
    ok(
        cwd,
        &[
            "sample",
            run.to_str().unwrap(),
            "-n",
            "2",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    Some(newest)
}

#[test]
fn kill_9_at_random_moments_then_resume_equals_the_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    // Checkpoints every 5 steps (kept 2), lines every 2, validation every 10: most of the
    // time goes to checkpoint writes, so random kills land inside them too.
    let extra = [
        "train.checkpoint_every=5",
        "train.keep_checkpoints=2",
        "train.log_every=2",
    ];
    let steps = 1000;
    let whole = tmp.path().join("whole");
    let began = Instant::now();
    ok(
        tmp.path(),
        &args_of(&tiny_train_args("vae-lorenz", &whole, steps, &extra)),
    );
    let full_time = began.elapsed();

    let run = tmp.path().join("killed");
    let mut resume = tiny_train_args("vae-lorenz", &run, steps, &extra);
    resume.push("--resume".into());
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let (mut landed, mut attempts, mut in_checkpoint) = (0, 0, 0);

    // Twice, stop the process inside a checkpoint write (weights written, manifest not) and
    // kill it there: the half-written checkpoint must be ignored and later cleared away.
    for stall_at in [15u64, 40] {
        let mut child = Command::new(binary())
            .args(args_of(&resume))
            .current_dir(tmp.path())
            .env("NEUROGEN_FAULT_STALL_CHECKPOINT", stall_at.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        assert!(
            stalled(&mut child),
            "the stall hook must fire at step {stall_at}"
        );
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        landed += 1;
        in_checkpoint += 1;
        let partial = run.join(format!("checkpoints/.partial-{stall_at}"));
        assert!(partial.join("model.bpk").exists(), "killed mid-write");
        assert!(!run.join(format!("checkpoints/{stall_at}")).exists());
        assert!(newest_checkpoint_loads(tmp.path(), &run).unwrap() < stall_at);
    }

    // Then at random moments until at least 10 more kills have hit a live process.
    while landed < 12 && attempts < 60 {
        attempts += 1;
        let spawned = std::time::SystemTime::now();
        let mut child = Command::new(binary())
            .args(args_of(&resume))
            .current_dir(tmp.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Short lives (a few percent of the whole run each), so that the run is still going
        // after a dozen of them.
        let delay = full_time.mul_f64(rng.random_range(0.01..0.04));
        std::thread::sleep(delay);
        let alive = child.try_wait().unwrap().is_none();
        if alive {
            child.kill().unwrap(); // SIGKILL
        }
        child.wait().unwrap();
        if alive {
            landed += 1;
            // A half-written checkpoint this process started (one left by an earlier kill is
            // cleared by the next write, and is not counted again).
            let mid_write = std::fs::read_dir(run.join("checkpoints"))
                .map(|d| {
                    d.filter_map(Result::ok).any(|e| {
                        e.file_name().to_string_lossy().starts_with(".partial")
                            && e.metadata()
                                .and_then(|m| m.modified())
                                .is_ok_and(|t| t >= spawned)
                    })
                })
                .unwrap_or(false);
            in_checkpoint += usize::from(mid_write);
        }
        newest_checkpoint_loads(tmp.path(), &run);
    }
    assert!(
        landed >= 12,
        "only {landed} kills landed in {attempts} attempts"
    );
    let r = ok(tmp.path(), &args_of(&resume));
    assert!(r.stdout.contains(&format!("..{steps})")), "{}", r.stdout);
    assert_eq!(
        metrics_without_timing(&run),
        metrics_without_timing(&whole),
        "after {landed} kills ({in_checkpoint} inside a checkpoint write)"
    );
    let leftovers: Vec<_> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        leftovers.len(),
        2,
        "keep_checkpoints = 2, no leftovers: {leftovers:?}"
    );
    eprintln!("{landed} kills landed in {attempts} attempts, {in_checkpoint} mid-checkpoint");
}
