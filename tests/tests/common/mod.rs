//! Helpers for the end-to-end tests: run the real `neurogen` command line, read NPY files.

// Each test file uses its own subset of the helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root (where `configs/` lives).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The command line under test: `src/bin/neurogen-e2e.rs`, which cargo builds for these tests.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_neurogen-e2e"))
}

/// The result of one run of the binary.
#[derive(Debug)]
pub struct Run {
    /// Exit code (-1 if killed by a signal).
    pub code: i32,
    /// Captured stdout.
    pub stdout: String,
    /// Captured stderr.
    pub stderr: String,
}

/// Runs `neurogen args…` in `cwd` and captures everything.
pub fn neurogen(cwd: &Path, args: &[&str]) -> Run {
    neurogen_env(cwd, args, &[])
}

/// Runs `neurogen args…` in `cwd` with extra environment variables and captures everything.
pub fn neurogen_env(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let out: Output = Command::new(binary())
        .args(args)
        .current_dir(cwd)
        .envs(env.iter().copied())
        .env_remove("NEUROGEN_LOG")
        .output()
        .expect("spawn neurogen");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Reads `child`'s piped stderr until the fault-injection hook says it stalled inside a
/// checkpoint write (`NEUROGEN_FAULT_STALL_CHECKPOINT`); false if it ended without stalling.
pub fn stalled(child: &mut std::process::Child) -> bool {
    use std::io::BufRead;
    let stderr = std::io::BufReader::new(child.stderr.take().expect("stderr piped"));
    stderr
        .lines()
        .map_while(Result::ok)
        .any(|l| l.contains("stalled inside the checkpoint write"))
}

/// Runs and asserts exit `code` with `needle` in stderr, returning the run.
pub fn fails(cwd: &Path, args: &[&str], code: i32, needle: &str) -> Run {
    let r = neurogen(cwd, args);
    assert_eq!(
        r.code, code,
        "neurogen {args:?}:\n{}\n{}",
        r.stdout, r.stderr
    );
    assert!(
        r.stderr.contains(needle),
        "neurogen {args:?}: no {needle:?} in\n{}",
        r.stderr
    );
    r
}

/// Runs and asserts exit 0, returning the run.
pub fn ok(cwd: &Path, args: &[&str]) -> Run {
    let r = neurogen(cwd, args);
    assert_eq!(
        r.code, 0,
        "neurogen {args:?} failed:\n{}\n{}",
        r.stdout, r.stderr
    );
    r
}

/// A parsed `.npy` file of float32 values.
#[derive(Debug)]
pub struct Npy {
    /// The shape from the header.
    pub shape: Vec<usize>,
    /// The values.
    pub values: Vec<f32>,
}

/// Reads a little-endian float32 C-order `.npy` file, checking its header field by field.
pub fn read_npy(path: &Path) -> Npy {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..6], b"\x93NUMPY", "magic");
    assert_eq!(bytes[6], 1, "major version");
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + hlen) % 64, 0, "header must be padded to 64 bytes");
    let header = std::str::from_utf8(&bytes[10..10 + hlen]).expect("ascii header");
    assert!(header.contains("'descr': '<f4'"), "{header}");
    assert!(header.contains("'fortran_order': False"), "{header}");
    assert!(header.ends_with('\n'));
    let inner = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .expect("shape");
    let shape: Vec<usize> = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("dim"))
        .collect();
    let data = &bytes[10 + hlen..];
    assert_eq!(
        data.len(),
        shape.iter().product::<usize>() * 4,
        "data length"
    );
    let values = data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Npy { shape, values }
}

/// Reads a JSON file.
pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("valid JSON")
}

/// The metric lines of a run, with the timing field removed (it differs between runs).
pub fn metrics_without_timing(run_dir: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(run_dir.join("metrics.jsonl")).expect("metrics.jsonl");
    text.lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
            v.as_object_mut().expect("object").remove("samples_per_s");
            v
        })
        .collect()
}

/// A Lorenz spike recording shrunk to seconds of work.
pub const TINY_LORENZ_DATA: &[&str] = &["data.n_trials=60", "data.n_neurons=6", "data.n_bins=20"];
/// A Kuramoto recording shrunk to seconds of work.
pub const TINY_KURAMOTO_DATA: &[&str] = &[
    "data.duration_s=120.0",
    "data.n_channels=3",
    "data.window=32",
    "data.stride=32",
];
const TINY_TRAIN: &[&str] = &[
    "train.batch_size=8",
    "train.log_every=5",
    "train.valid_every=10",
    "train.checkpoint_every=10",
    "train.kl_warmup_steps=5",
];

/// Overrides that shrink a shipped config of `family` to seconds.
fn tiny_model(family: &str) -> &'static [&'static str] {
    match family {
        "gan" => &["model.hidden=[8, 4]", "model.noise_dim=8"],
        "vae-gan" => &[
            "model.hidden=[16]",
            "model.latent_dim=4",
            "model.adversarial.hidden=[8, 4]",
        ],
        "realnvp" => &["model.n_layers=2", "model.hidden=[16]"],
        "latent-ode" => &[
            "model.latent_dim=3",
            "model.rnn_hidden=8",
            "model.hidden=[8]",
        ],
        "diffusion" => &[
            "model.hidden=8",
            "model.time_embed=8",
            "model.dilations=[1, 2]",
            "model.steps=50",
            "model.sample_steps=5",
        ],
        "wavenet" => &[
            "model.residual=8",
            "model.skip=8",
            "model.dilations=[1, 2, 4]",
        ],
        _ => &[],
    }
}

/// `train` arguments for shipped `config` (e.g. `gan-kuramoto`) shrunk to `steps` steps of
/// seconds' work into `out`, with extra `--set` overrides after the shrinking ones.
pub fn tiny_train_args(config: &str, out: &Path, steps: u64, extra: &[&str]) -> Vec<String> {
    let mut args = train_args(config, out, &[]);
    args.extend(tiny_sets(config, steps, extra));
    args
}

/// `train` arguments for shipped `config` into `out` with `--set` overrides `sets`.
pub fn train_args(config: &str, out: &Path, sets: &[&str]) -> Vec<String> {
    let cfg = root().join("configs").join(format!("{config}.toml"));
    let mut args = vec![
        "train".to_string(),
        cfg.display().to_string(),
        "--out".into(),
        out.display().to_string(),
    ];
    for s in sets {
        args.extend(["--set".to_string(), s.to_string()]);
    }
    args
}

/// The `--set` arguments that shrink shipped `config` to `steps` steps of seconds' work, with
/// `extra` overrides after them.
pub fn tiny_sets(config: &str, steps: u64, extra: &[&str]) -> Vec<String> {
    let family = config.rsplit_once('-').map(|(f, _)| f).unwrap_or(config);
    let data = if config.ends_with("lorenz") {
        TINY_LORENZ_DATA
    } else {
        TINY_KURAMOTO_DATA
    };
    let steps = format!("train.steps={steps}");
    let mut sets: Vec<&str> = data.to_vec();
    sets.extend(tiny_model(family));
    sets.extend(TINY_TRAIN);
    sets.push(&steps);
    sets.extend(extra);
    let mut args = Vec::new();
    for s in sets {
        args.extend(["--set".to_string(), s.to_string()]);
    }
    args
}

/// Whether the wgpu tests run: CI installs Mesa's software Vulkan and sets NEUROGEN_TEST_WGPU=1;
/// elsewhere they run when a Vulkan driver manifest exists (and say why they skip otherwise).
pub fn wgpu_available() -> bool {
    let forced = std::env::var("NEUROGEN_TEST_WGPU").is_ok();
    let has_icd = ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d"]
        .iter()
        .any(|d| {
            std::fs::read_dir(d)
                .map(|mut e| e.next().is_some())
                .unwrap_or(false)
        });
    if !forced && !has_icd {
        eprintln!("skipping: no Vulkan driver found (install mesa-vulkan-drivers)");
    }
    forced || has_icd
}
