//! Train → sample → inspect through the real binary, resume, and the `data` command.

use std::path::Path;

mod common;

use common::{metrics_without_timing, neurogen, ok, read_json, read_npy, root, wgpu_available};

/// Shrinks a shipped config to a few seconds of work.
const TINY_LORENZ: &[&str] = &[
    "--set",
    "data.n_trials=60",
    "--set",
    "data.n_neurons=6",
    "--set",
    "data.n_bins=20",
    "--set",
    "model.hidden=[16]",
    "--set",
    "model.latent_dim=4",
    "--set",
    "train.batch_size=8",
    "--set",
    "train.log_every=5",
    "--set",
    "train.valid_every=10",
    "--set",
    "train.checkpoint_every=10",
    "--set",
    "train.kl_warmup_steps=10",
];

fn train(
    cwd: &Path,
    config: &str,
    out: &Path,
    steps: u64,
    backend: &str,
    extra: &[&str],
) -> common::Run {
    let cfg = root().join("configs").join(config);
    let steps = format!("train.steps={steps}");
    let mut args = vec![
        "train",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--backend",
        backend,
        "--set",
        &steps,
    ];
    args.extend_from_slice(extra);
    ok(cwd, &args)
}

fn train_and_sample_spikes(backend: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let r = train(
        tmp.path(),
        "vae-lorenz.toml",
        &run,
        30,
        backend,
        TINY_LORENZ,
    );
    assert!(r.stdout.contains("trained 30 steps"), "{}", r.stdout);

    // The run directory holds the resolved experiment with provenance, data stats, metrics and checkpoints.
    let exp = std::fs::read_to_string(run.join("experiment.toml")).unwrap();
    for key in [
        "likelihood = \"poisson\"",
        "normalize = \"none\"",
        "split_by = \"trial\"",
        "[provenance]",
        "burn_version = \"0.22.1\"",
        &format!("backend = \"{backend}\""),
    ] {
        assert!(exp.contains(key), "resolved experiment lacks {key}:\n{exp}");
    }
    assert!(run.join("checkpoints/30/model.bpk").is_file());
    assert!(run.join("checkpoints/30/optim.bpk").is_file());
    assert!(run.join("checkpoints/30/state.toml").is_file());
    let metrics = metrics_without_timing(&run);
    let train_lines: Vec<_> = metrics.iter().filter(|m| m["split"] == "train").collect();
    let valid_lines: Vec<_> = metrics.iter().filter(|m| m["split"] == "valid").collect();
    assert_eq!(train_lines.len(), 6, "a train line every 5 steps");
    assert_eq!(valid_lines.len(), 3, "a valid line every 10 steps");
    for m in &train_lines {
        for key in ["step", "loss", "nll", "kl", "neg_elbo", "lr", "kl_warmup"] {
            assert!(
                m.get(key).is_some_and(|v| !v.is_null()),
                "metrics line lacks {key}: {m}"
            );
        }
    }
    // Spike-count loss falls even in 30 steps (the first interval starts at the untrained model).
    let first = train_lines[0]["loss"].as_f64().unwrap();
    let last = train_lines.last().unwrap()["loss"].as_f64().unwrap();
    assert!(last < first, "loss {first} -> {last}");

    let out = tmp.path().join("synthetic.npy");
    ok(
        tmp.path(),
        &[
            "sample",
            run.to_str().unwrap(),
            "-n",
            "12",
            "--seed",
            "3",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    let npy = read_npy(&out);
    assert_eq!(npy.shape, vec![12, 6, 20]);
    assert!(
        npy.values.iter().all(|v| *v >= 0.0 && v.fract() == 0.0),
        "counts are non-negative integers"
    );
    let meta = read_json(&tmp.path().join("synthetic.json"));
    assert_eq!(meta["shape"], serde_json::json!([12, 6, 20]));
    assert_eq!(meta["kind"], "counts");
    assert_eq!(meta["model"], "vae");
    assert_eq!(meta["checkpoint_step"], 30);
    assert_eq!(meta["sfreq"], 100.0);
    assert_eq!(meta["channel_names"].as_array().unwrap().len(), 6);

    // Same seed, same samples; the default output lands in the run directory.
    ok(
        tmp.path(),
        &["sample", run.to_str().unwrap(), "-n", "12", "--seed", "3"],
    );
    assert_eq!(read_npy(&run.join("samples.npy")).values, npy.values);

    let r = ok(tmp.path(), &["inspect", run.to_str().unwrap()]);
    assert!(
        r.stdout.contains("newest checkpoint: step 30"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("last valid metrics"), "{}", r.stdout);

    numpy_opens(&out, &[12, 6, 20]);
}

/// When Python with NumPy is present (CI installs it), `numpy.load` must agree.
fn numpy_opens(path: &Path, shape: &[usize]) {
    let required = std::env::var("NEUROGEN_TEST_NUMPY").is_ok();
    let dims = shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let script = format!(
        "import numpy as np, sys\na = np.load(sys.argv[1])\nassert a.dtype == np.float32, a.dtype\nassert a.shape == ({dims},), a.shape\nassert np.isfinite(a).all()\nprint('numpy ok', a.shape)"
    );
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(&script)
        .arg(path)
        .output();
    match out {
        Ok(o) if o.status.success() => {
            assert!(String::from_utf8_lossy(&o.stdout).contains("numpy ok"))
        }
        Ok(o)
            if required
                || !String::from_utf8_lossy(&o.stderr).contains("No module named 'numpy'") =>
        {
            panic!("numpy.load failed: {}", String::from_utf8_lossy(&o.stderr))
        }
        Err(e) if required => panic!("python3: {e}"),
        _ => eprintln!("skipping the NumPy check: python3 with numpy not found"),
    }
}

#[test]
fn train_and_sample_spikes_on_ndarray() {
    train_and_sample_spikes("ndarray");
}

#[test]
fn train_and_sample_spikes_on_flex() {
    train_and_sample_spikes("flex");
}

/// wgpu runs on a GPU or on Mesa's software Vulkan. CI installs the latter and sets
/// NEUROGEN_TEST_WGPU=1; elsewhere the test runs when a Vulkan driver manifest exists.
#[test]
fn train_and_sample_on_wgpu() {
    if !wgpu_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let mut extra = TINY_LORENZ.to_vec();
    extra.extend_from_slice(&["--set", "train.steps=10"]);
    train(tmp.path(), "vae-lorenz.toml", &run, 10, "wgpu", &extra);
    let out = tmp.path().join("wgpu.npy");
    ok(
        tmp.path(),
        &[
            "sample",
            run.to_str().unwrap(),
            "-n",
            "5",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    let npy = read_npy(&out);
    assert_eq!(npy.shape, vec![5, 6, 20]);
    assert!(npy.values.iter().all(|v| *v >= 0.0 && v.fract() == 0.0));
}

#[test]
fn eeg_samples_come_back_in_microvolts() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let tiny = [
        "--set",
        "data.duration_s=60",
        "--set",
        "data.window=64",
        "--set",
        "data.stride=32",
        "--set",
        "model.hidden=[32]",
        "--set",
        "model.latent_dim=4",
        "--set",
        "train.batch_size=16",
        "--set",
        "train.valid_every=20",
        "--set",
        "train.checkpoint_every=20",
    ];
    train(tmp.path(), "vae-kuramoto.toml", &run, 40, "ndarray", &tiny);
    let stats = read_json(&run.join("data.json"));
    assert_eq!(stats["unit"], "uV");
    let stds: Vec<f64> = stats["norm"]["std"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(
        stds.iter().all(|s| *s > 1.0),
        "physical scale is µV, not unit: {stds:?}"
    );

    let out = tmp.path().join("eeg.npy");
    ok(
        tmp.path(),
        &[
            "sample",
            run.to_str().unwrap(),
            "-n",
            "20",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    let npy = read_npy(&out);
    assert_eq!(npy.shape, vec![20, 8, 64]);
    assert!(npy.values.iter().all(|v| v.is_finite()));
    // Samples are de-normalised: their spread is on the data's µV scale, not ~1.
    let n = npy.values.len() as f64;
    let mean = npy.values.iter().map(|&v| v as f64).sum::<f64>() / n;
    let sd = (npy
        .values
        .iter()
        .map(|&v| (v as f64 - mean).powi(2))
        .sum::<f64>()
        / n)
        .sqrt();
    let data_sd = stds.iter().sum::<f64>() / stds.len() as f64;
    assert!(
        sd > 0.3 * data_sd && sd < 3.0 * data_sd,
        "sample sd {sd} vs data sd {data_sd}"
    );
    let meta = read_json(&tmp.path().join("eeg.json"));
    assert_eq!(meta["kind"], "continuous");
    assert_eq!(meta["sfreq"], 128.0);
    assert_eq!(meta["channel_names"][0], "EEG01");
}

/// N steps, then --resume to N+M, equals N+M steps uninterrupted, line for line.
///
/// N = 18 lies off the logging (5) and validation (10) grids: the interrupted run writes extra
/// lines at its last step and its logging interval is cut mid-way, which resume must undo.
fn resume_is_exact(backend: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let (whole, split) = (tmp.path().join("whole"), tmp.path().join("split"));
    train(
        tmp.path(),
        "vae-lorenz.toml",
        &whole,
        40,
        backend,
        TINY_LORENZ,
    );
    train(
        tmp.path(),
        "vae-lorenz.toml",
        &split,
        18,
        backend,
        TINY_LORENZ,
    );
    let mut resume = TINY_LORENZ.to_vec();
    resume.push("--resume");
    let r = train(tmp.path(), "vae-lorenz.toml", &split, 40, backend, &resume);
    assert!(
        r.stdout.contains("trained 22 steps (18..40)"),
        "{}",
        r.stdout
    );
    let (a, b) = (
        metrics_without_timing(&whole),
        metrics_without_timing(&split),
    );
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x, y, "metrics differ after resume");
    }
    // And the final weights give identical samples.
    let (sa, sb) = (tmp.path().join("a.npy"), tmp.path().join("b.npy"));
    ok(
        tmp.path(),
        &[
            "sample",
            whole.to_str().unwrap(),
            "-n",
            "8",
            "-o",
            sa.to_str().unwrap(),
        ],
    );
    ok(
        tmp.path(),
        &[
            "sample",
            split.to_str().unwrap(),
            "-n",
            "8",
            "-o",
            sb.to_str().unwrap(),
        ],
    );
    assert_eq!(read_npy(&sa).values, read_npy(&sb).values);
}

#[test]
fn resume_equals_uninterrupted_on_ndarray() {
    resume_is_exact("ndarray");
}

#[test]
fn resume_equals_uninterrupted_on_flex() {
    resume_is_exact("flex");
}

#[test]
fn a_run_is_never_overwritten_and_resume_needs_the_same_experiment() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    train(
        tmp.path(),
        "vae-lorenz.toml",
        &run,
        10,
        "ndarray",
        TINY_LORENZ,
    );
    let cfg = root().join("configs/vae-lorenz.toml");
    let mut args = vec![
        "train",
        cfg.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ];
    args.extend_from_slice(TINY_LORENZ);
    let r = neurogen(tmp.path(), &args);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("already holds a run") && r.stderr.contains("--resume"),
        "{}",
        r.stderr
    );
    args.extend_from_slice(&["--resume", "--set", "model.latent_dim=5"]);
    let r = neurogen(tmp.path(), &args);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("differs from the one this run was started with"),
        "{}",
        r.stderr
    );
    // Nothing to resume yet (never started, or killed before its first checkpoint): --resume
    // starts from step 0, so a job scheduler can always restart with it.
    let fresh = tmp.path().join("fresh");
    let mut args = vec![
        "train",
        cfg.to_str().unwrap(),
        "--out",
        fresh.to_str().unwrap(),
        "--resume",
        "--set",
        "train.steps=5",
    ];
    args.extend_from_slice(TINY_LORENZ);
    let r = ok(tmp.path(), &args);
    assert!(
        r.stderr
            .contains("no checkpoint to resume from yet; starting from step 0"),
        "{}",
        r.stderr
    );
    let r = neurogen(
        tmp.path(),
        &["sample", run.to_str().unwrap(), "-o", "x.mat"],
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("x.mat") && r.stderr.contains(".npy, .npz, .edf, .bdf or .csv"),
        "{}",
        r.stderr
    );
}

#[test]
fn data_writes_every_window_with_its_split_and_latents() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = root().join("configs/vae-lorenz.toml");
    let out = tmp.path().join("lorenz.npy");
    ok(
        tmp.path(),
        &[
            "data",
            cfg.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--set",
            "data.n_trials=50",
            "--set",
            "data.n_bins=30",
        ],
    );
    let x = read_npy(&out);
    assert_eq!(x.shape, vec![50, 30, 30]);
    let meta = read_json(&tmp.path().join("lorenz.json"));
    let windows = meta["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 50);
    let count = |s: &str| windows.iter().filter(|w| w["split"] == s).count();
    assert_eq!((count("train"), count("valid"), count("test")), (40, 5, 5));
    // Recording order: window i is trial i.
    for (i, w) in windows.iter().enumerate() {
        assert_eq!(w["recording"], i);
    }
    let lat = read_npy(&tmp.path().join("lorenz_latents.npy"));
    assert_eq!(lat.shape, vec![50, 3, 30]);
    assert_eq!(meta["latents"]["file"], "lorenz_latents.npy");

    // Deterministic: the same config gives the same bytes.
    let again = tmp.path().join("again.npy");
    ok(
        tmp.path(),
        &[
            "data",
            cfg.to_str().unwrap(),
            "-o",
            again.to_str().unwrap(),
            "--set",
            "data.n_trials=50",
            "--set",
            "data.n_bins=30",
        ],
    );
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&again).unwrap());
}

#[test]
fn inspect_into_a_closed_pipe_ends_quietly() {
    // `neurogen inspect RUN | head -1`: the reader goes away before the output is written, as
    // `head` does once it has its line. A Unix tool then stops without an error of its own.
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let args = common::tiny_train_args("vae-lorenz", &run, 2, &[]);
    ok(
        tmp.path(),
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let mut child = std::process::Command::new(common::binary())
        .args(["inspect", run.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.is_empty(), "{err}");
}
