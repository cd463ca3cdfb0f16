//! Sweeps (local and on a real Slurm), `reproduce` and `export`, through the binary.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A sweep file over the tiny VAE-Lorenz: `axes` (TOML lines under `[axes]`) beside the
/// shrinking overrides as one-value axes, plus `tail` (more tables).
fn sweep_file(dir: &Path, name: &str, axes: &str, steps: u64, tail: &str) -> PathBuf {
    let base = root().join("configs/vae-lorenz.toml");
    let mut text = format!(
        "name = \"{name}\"\nbase = \"{}\"\n[axes]\n{axes}\n",
        base.display()
    );
    let sets = tiny_sets("vae-lorenz", steps, &[]);
    for s in sets.iter().filter(|s| *s != "--set") {
        let (k, v) = s.split_once('=').unwrap();
        text += &format!("\"{k}\" = [{v}]\n");
    }
    text += tail;
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Trains (or continues) one point as its Slurm task would.
fn resume_point(cwd: &Path, point: &str) {
    let exp = format!("{point}/experiment.toml");
    ok(cwd, &["train", &exp, "--out", point, "--resume", "-q"]);
}

fn status_of(point: &Path) -> serde_json::Value {
    read_json(&point.join("status.json"))
}

fn results(dir: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(dir.join("results.csv"))
        .unwrap()
        .lines()
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let began = Instant::now();
    while !done() {
        assert!(began.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_local_sweep_trains_every_point_then_skips_finished_and_resumes_interrupted_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let file = sweep_file(
        cwd,
        "grid",
        "seed = [1, 2]\n\"model.latent_dim\" = [2, 4]",
        60,
        "",
    );
    let sweep = cwd.join("sweeps/grid");

    // First attempt: the first point to reach step 30's checkpoint stalls there; kill it and
    // the sweep, as a crash or a Ctrl-C would.
    let marker = cwd.join("stalled");
    let mut child = Command::new(binary())
        .args(["sweep", file.to_str().unwrap(), "--local", "--jobs", "1"])
        .current_dir(cwd)
        .env("NEUROGEN_FAULT_STALL_CHECKPOINT", "30")
        .env("NEUROGEN_FAULT_STALL_MARKER", &marker)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("a point to stall", Duration::from_secs(120), || {
        marker.exists() && std::fs::read_to_string(&marker).is_ok_and(|s| !s.is_empty())
    });
    let stalled = cwd.join(std::fs::read_to_string(&marker).unwrap());
    let pid = status_of(&stalled)["pid"].as_u64().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    wait_for("the stalled process to go", Duration::from_secs(10), || {
        !Path::new(&format!("/proc/{pid}")).exists()
    });

    let r = ok(cwd, &["sweep", "--collect", "sweeps/grid"]);
    assert!(r.stdout.contains("| failed |"), "{}", r.stdout);
    assert!(r.stdout.contains("| pending |"), "{}", r.stdout);

    // Second attempt: every point finishes; the interrupted one resumed from step 20.
    let r = ok(
        cwd,
        &["sweep", file.to_str().unwrap(), "--local", "-j", "2"],
    );
    assert!(
        r.stderr.contains("4 points trained, 0 skipped"),
        "{}",
        r.stderr
    );
    let s = status_of(&stalled);
    assert_eq!(s["state"], "finished");
    assert_eq!(s["attempt"], 2);
    assert_eq!(s["started_from"], 20);
    // ... and equals an uninterrupted run of its experiment.
    let r = ok(
        cwd,
        &["reproduce", stalled.to_str().unwrap(), "--out", "whole"],
    );
    assert!(r.stdout.starts_with("identical: "), "{}", r.stdout);

    // Third attempt: nothing to do.
    let before = std::fs::read(sweep.join("0/metrics.jsonl")).unwrap();
    let r = ok(cwd, &["sweep", file.to_str().unwrap(), "--local"]);
    assert!(
        r.stderr.contains("4 points already finished: skipped"),
        "{}",
        r.stderr
    );
    assert_eq!(
        before,
        std::fs::read(sweep.join("0/metrics.jsonl")).unwrap()
    );

    // Each point's experiment carries its overrides.
    for (i, (seed, latent)) in [(1, 2), (2, 2), (1, 4), (2, 4)].iter().enumerate() {
        let exp: toml::Table = std::fs::read_to_string(sweep.join(format!("{i}/experiment.toml")))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(exp["seed"].as_integer(), Some(*seed), "point {i}");
        assert_eq!(
            exp["model"]["latent_dim"].as_integer(),
            Some(*latent),
            "point {i}"
        );
        assert_eq!(exp["name"].as_str(), Some(format!("grid-{i}").as_str()));
    }

    // --collect: every point, finished, best (lowest valid loss) first.
    let r = ok(cwd, &["sweep", "--collect", "sweeps/grid"]);
    assert!(r.stderr.contains("4 points (4 finished)"), "{}", r.stderr);
    let rows = results(&sweep);
    let head = &rows[0];
    let col = |name: &str| head.iter().position(|h| h == name).unwrap();
    assert_eq!(rows.len(), 5);
    let valid: Vec<f64> = rows[1..]
        .iter()
        .map(|r| r[col("valid_loss")].parse().unwrap())
        .collect();
    assert!(valid.windows(2).all(|w| w[0] <= w[1]), "{valid:?}");
    assert!(rows[1..]
        .iter()
        .all(|r| r[col("status")] == "finished" && r[col("step")] == "60"));
    let attempts: Vec<&str> = rows[1..]
        .iter()
        .map(|r| r[col("attempts")].as_str())
        .collect();
    assert_eq!(
        attempts.iter().filter(|a| **a == "2").count(),
        1,
        "{attempts:?}"
    );
    assert!(sweep.join("results.md").exists());
    // --by a column of eval/report.json once a point has one; highest first with --descending.
    let r = ok(
        cwd,
        &[
            "sweep",
            "--collect",
            "sweeps/grid",
            "--by",
            "train_loss",
            "--descending",
        ],
    );
    let rows = results(&sweep);
    let train: Vec<f64> = rows[1..]
        .iter()
        .map(|r| r[col("train_loss")].parse().unwrap())
        .collect();
    assert!(
        train.windows(2).all(|w| w[0] >= w[1]),
        "{train:?}\n{}",
        r.stdout
    );
}

#[test]
fn bad_sweeps_fail_with_their_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    // A value the experiment refuses fails before anything runs, naming the point.
    let file = sweep_file(cwd, "bad", "\"model.latent_dim\" = [4, 0]", 10, "");
    let r = neurogen(cwd, &["sweep", file.to_str().unwrap(), "--local"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("bad.toml")
            && r.stderr.contains("point 1")
            && r.stderr.contains("model.latent_dim"),
        "{}",
        r.stderr
    );
    assert!(!cwd.join("sweeps/bad").exists());
    // A base that does not exist.
    std::fs::write(
        cwd.join("nobase.toml"),
        "base = \"missing.toml\"\n[axes]\nseed = [1]\n",
    )
    .unwrap();
    fails(cwd, &["sweep", "nobase.toml"], 2, "missing.toml");
    // A malformed draw.
    std::fs::write(
        cwd.join("draw.toml"),
        "base = \"b.toml\"\n[random]\nn = 2\n\"train.lr\" = { log_uniform = [0.0, 1.0] }\n",
    )
    .unwrap();
    fails(
        cwd,
        &["sweep", "draw.toml"],
        2,
        "draw.toml: random.\"train.lr\": log_uniform: bounds must be > 0",
    );
    // The same name with other points is refused once they have trained: it would mix two sweeps.
    let a = sweep_file(cwd, "same", "seed = [1, 2]", 10, "");
    ok(cwd, &["sweep", a.to_str().unwrap(), "--local"]);
    let b = sweep_file(cwd, "same", "seed = [1, 3]", 10, "");
    fails(
        cwd,
        &["sweep", b.to_str().unwrap()],
        2,
        "sweeps/same/1: this point has started, and the sweep now gives it another seed",
    );
    // --collect of something else, or by a column no point has.
    fails(
        cwd,
        &["sweep", "--collect", "."],
        2,
        "not a sweep directory",
    );
    fails(
        cwd,
        &["sweep", "--collect", "sweeps/same", "--by", "nope"],
        2,
        "--by nope: no point has that column",
    );
    // --submit without --slurm, --jobs 0.
    assert_eq!(
        neurogen(cwd, &["sweep", a.to_str().unwrap(), "--submit"]).code,
        2
    );
    assert_eq!(
        neurogen(cwd, &["sweep", a.to_str().unwrap(), "--local", "-j", "0"]).code,
        2
    );
}

#[test]
fn slurm_script_names_resources_absolute_paths_and_this_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let tail = "[slurm]\npartition = \"gpu\"\ntime = \"02:00:00\"\ncpus = 4\ngpus = 1\nmemory = \"8G\"\naccount = \"lab\"\nmax_parallel = 2\n";
    let file = sweep_file(cwd, "res", "seed = [1, 2, 3]", 10, tail);
    let r = ok(cwd, &["sweep", file.to_str().unwrap(), "--slurm"]);
    let script = std::fs::read_to_string(cwd.join("sweeps/res/sweep.sbatch")).unwrap();
    assert!(r.stdout.contains("sweep.sbatch"), "{}", r.stdout);
    let abs = std::fs::canonicalize(cwd).unwrap().join("sweeps/res");
    for want in [
        "#SBATCH --array=0-2%2".to_string(),
        "#SBATCH --partition=gpu".into(),
        "#SBATCH --time=02:00:00".into(),
        "#SBATCH --cpus-per-task=4".into(),
        "#SBATCH --gres=gpu:1".into(),
        "#SBATCH --mem=8G".into(),
        "#SBATCH --account=lab".into(),
        "#SBATCH --requeue".into(),
        format!("point='{}'/\"$SLURM_ARRAY_TASK_ID\"", abs.display()),
        format!(
            "exec '{}' train \"$point/experiment.toml\" --out \"$point\" --resume",
            binary().display()
        ),
    ] {
        assert!(script.contains(&want), "missing {want:?} in\n{script}");
    }
}

/// Whether a Slurm controller answers: CI starts a one-node cluster (scripts/slurm-local.sh)
/// and sets NEUROGEN_TEST_SLURM=1, which makes its absence an error.
fn slurm_available() -> bool {
    let up = Command::new("sinfo")
        .args(["-h", "-o", "%t"])
        .output()
        .is_ok_and(|o| o.status.success() && !o.stdout.is_empty());
    if !up {
        assert!(
            std::env::var("NEUROGEN_TEST_SLURM").is_err(),
            "NEUROGEN_TEST_SLURM is set but no Slurm controller answers (run scripts/slurm-local.sh)"
        );
        eprintln!("skipping: no Slurm cluster (scripts/slurm-local.sh starts one)");
    }
    up
}

fn scontrol(args: &[&str]) {
    let out = Command::new("scontrol").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "scontrol {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_slurm_job_array_trains_every_point_and_a_requeued_task_resumes_exactly() {
    if !slurm_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let tail = "[slurm]\ncpus = 1\nmemory = \"1G\"\nmax_parallel = 2\n";
    let file = sweep_file(cwd, "array", "seed = [1, 2, 3]", 80, tail);
    // The first task to reach step 40's checkpoint stalls inside its write (the environment
    // reaches the tasks through sbatch's --export=ALL); the test requeues it there.
    let marker = cwd.join("stalled");
    let r = neurogen_env(
        cwd,
        &["sweep", file.to_str().unwrap(), "--slurm", "--submit"],
        &[
            ("NEUROGEN_FAULT_STALL_CHECKPOINT", "40"),
            ("NEUROGEN_FAULT_STALL_MARKER", marker.to_str().unwrap()),
        ],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let job = r.stdout.split_whitespace().nth(3).unwrap().to_string();
    let array_done = || {
        let out = Command::new("squeue")
            .args(["-h", "-j", &job])
            .output()
            .unwrap();
        out.status.success() && out.stdout.is_empty()
    };
    wait_for("a task to stall", Duration::from_secs(300), || {
        std::fs::read_to_string(&marker).is_ok_and(|s| !s.is_empty()) || array_done()
    });
    let stalled =
        PathBuf::from(std::fs::read_to_string(&marker).expect("a task stalled at step 40"));
    let task = status_of(&stalled)["slurm_job"]
        .as_str()
        .unwrap()
        .to_string();
    scontrol(&["requeue", &task]);
    // Slurm holds a requeued task back until its old credential expires (scripts/slurm-local.sh
    // sets 10 s); it then resumes from its newest complete checkpoint.
    wait_for("the array to finish", Duration::from_secs(600), array_done);

    let r = ok(cwd, &["sweep", "--collect", "sweeps/array"]);
    assert!(
        r.stderr.contains("3 points (3 finished)"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    let s = status_of(&stalled);
    assert_eq!(s["state"], "finished");
    assert_eq!(s["attempt"], 2, "{s}");
    assert_eq!(s["slurm_restarts"], 1, "{s}");
    assert_eq!(s["started_from"], 30, "{s}");
    let log = std::fs::read_to_string(stalled.join(format!("slurm-{task}.out"))).unwrap();
    assert!(log.contains("DUE TO JOB REQUEUE"), "{log}");
    // The requeued point equals an uninterrupted run.
    let r = ok(
        cwd,
        &["reproduce", stalled.to_str().unwrap(), "--out", "whole"],
    );
    assert!(r.stdout.starts_with("identical: "), "{}", r.stdout);
}

#[test]
fn reproduce_says_identical_or_names_the_first_step_and_term_that_differ() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let run = cwd.join("run");
    ok(cwd, &args_of(&tiny_train_args("vae-lorenz", &run, 40, &[])));
    let exp: toml::Table = std::fs::read_to_string(run.join("experiment.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let prov = exp["provenance"].as_table().unwrap();
    // Built from this checkout: the commit is recorded.
    if Command::new("git")
        .arg("-C")
        .arg(root())
        .args(["rev-parse", "HEAD"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let c = prov["git_commit"].as_str().unwrap();
        assert!(
            c.len() == 40 && c.chars().all(|c| c.is_ascii_hexdigit()),
            "{c}"
        );
    }

    let r = ok(cwd, &["reproduce", "run"]);
    assert!(
        r.stdout
            .starts_with("identical: 12 metric lines up to step 40 and the"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("agree exactly"), "{}", r.stdout);
    assert!(cwd.join("run-reproduced/checkpoints/40").exists());
    // Again into the same place: refused, nothing overwritten.
    fails(
        cwd,
        &["reproduce", "run"],
        2,
        "run-reproduced: already exists",
    );
    // The first 30 steps of the same schedule, with the weights of step 30.
    let r = ok(cwd, &["reproduce", "run", "--steps", "30", "--out", "r30"]);
    assert!(
        r.stdout.contains("up to step 30 and the")
            && r.stdout.contains("weight tensors of step 30"),
        "{}",
        r.stdout
    );
    // A step whose checkpoint was not kept: metrics only, and it says so.
    let r = ok(cwd, &["reproduce", "run", "--steps", "15", "--out", "r15"]);
    assert!(
        r.stdout
            .contains("weights not compared: the original keeps no checkpoint of step 15"),
        "{}",
        r.stdout
    );
    fails(
        cwd,
        &["reproduce", "run", "--steps", "50", "--out", "r50"],
        2,
        "--steps 50: the run has only reached step 40",
    );

    // A changed figure in the original's log is found at its step and term.
    let metrics = run.join("metrics.jsonl");
    let text = std::fs::read_to_string(&metrics).unwrap();
    let changed: Vec<String> = text
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            if v["step"] == 25 && v["split"] == "train" {
                v["kl"] = serde_json::json!(v["kl"].as_f64().unwrap() * (1.0 + 1e-12));
            }
            v.to_string()
        })
        .collect();
    std::fs::write(&metrics, changed.join("\n") + "\n").unwrap();
    fails(
        cwd,
        &["reproduce", "run", "--out", "r-changed"],
        1,
        "not reproduced: metrics.jsonl differs at step 25 (train): kl = ",
    );

    // Not a run.
    fails(
        cwd,
        &["reproduce", "nowhere"],
        2,
        "nowhere: no such run directory",
    );
}

#[test]
fn a_run_records_its_input_files_and_reproduce_says_when_one_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let edf = cwd.join("rec.edf");
    std::fs::copy(root().join("assets/data/motor-imagery-demo.edf"), &edf).unwrap();
    let cfg = std::fs::read_to_string(root().join("configs/vae-edf.toml"))
        .unwrap()
        .replace("../assets/data/motor-imagery-demo.edf", "rec.edf");
    assert!(
        cfg.contains("\"rec.edf\""),
        "the config names its recording"
    );
    std::fs::write(cwd.join("e.toml"), cfg).unwrap();
    ok(
        cwd,
        &[
            "train",
            "e.toml",
            "--out",
            "run",
            "--set",
            "train.steps=10",
            "--set",
            "train.log_every=5",
            "-q",
        ],
    );
    let exp: toml::Table = std::fs::read_to_string(cwd.join("run/experiment.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let inputs = exp["provenance"]["inputs"]
        .as_table()
        .expect("[provenance.inputs]");
    let (path, hash) = inputs.iter().next().unwrap();
    assert!(path.ends_with("rec.edf"), "{path}");
    assert_eq!(hash.as_str().unwrap().len(), 32);

    // One sample changed in the data record: the data differ, the run does not reproduce.
    let mut bytes = std::fs::read(&edf).unwrap();
    let header = 256 * (1 + 5); // the demo's 4 signals + annotations
    bytes[header + 100] ^= 0x40;
    std::fs::write(&edf, bytes).unwrap();
    let r = neurogen(cwd, &["reproduce", "run"]);
    assert!(
        r.stderr.contains("rec.edf changed since training"),
        "{}",
        r.stderr
    );
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("not reproduced"), "{}", r.stderr);
}

fn args_of(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The tensors of a safetensors file: name → (shape, values), checking the layout.
fn read_safetensors(path: &Path) -> std::collections::BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    let mut out = std::collections::BTreeMap::new();
    let mut end = 0;
    for (name, t) in header.as_object().unwrap() {
        if name == "__metadata__" {
            continue;
        }
        assert_eq!(t["dtype"], "F32");
        let shape: Vec<usize> = t["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        let [a, b] = [0, 1].map(|i| t["data_offsets"][i].as_u64().unwrap() as usize);
        assert_eq!(b - a, shape.iter().product::<usize>() * 4, "{name}");
        end = end.max(b);
        let values = data[a..b]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        out.insert(name.clone(), (shape, values));
    }
    assert_eq!(
        end,
        data.len(),
        "the data section holds exactly the tensors"
    );
    out
}

#[test]
fn export_writes_pytorch_names_and_shapes_that_python_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let families = [
        "vae-lorenz",
        "gan-kuramoto",
        "realnvp-kuramoto",
        "latent-ode-lorenz",
        "diffusion-kuramoto",
        "wavenet-lorenz",
    ];
    for config in families {
        let run = cwd.join(config);
        ok(cwd, &args_of(&tiny_train_args(config, &run, 10, &[])));
        let out = cwd.join(format!("{config}.safetensors"));
        ok(
            cwd,
            &["export", run.to_str().unwrap(), "-o", out.to_str().unwrap()],
        );
        let tensors = read_safetensors(&out);
        let desc = read_json(&out.with_extension("json"));
        // model.json lists exactly the tensors, with their shapes.
        let listed = desc["tensors"].as_object().unwrap();
        assert_eq!(listed.len(), tensors.len(), "{config}");
        for (name, (shape, _)) in &tensors {
            assert_eq!(listed[name], serde_json::json!(shape), "{config}: {name}");
            assert!(!name.contains("..") && !name.starts_with('.'), "{name}");
        }
        assert_eq!(desc["family"], desc["model"]["kind"], "{config}");
        assert_eq!(
            desc["window"]["channels"].as_u64().unwrap() as usize,
            desc["normalization"]["mean"].as_array().unwrap().len()
        );
        let reference = read_safetensors(&out.with_extension("reference.safetensors"));
        let (zs, _) = &reference["z"];
        assert_eq!(zs[0], 4, "{config}");
        let (ms, _) = &reference["mean"];
        assert_eq!(
            ms[1..],
            [
                desc["window"]["channels"].as_u64().unwrap() as usize,
                desc["window"]["time"].as_u64().unwrap() as usize
            ]
        );
    }
    // PyTorch's layouts: the VAE's Linear weights are [out, in].
    let desc = read_json(&cwd.join("vae-lorenz.json"));
    let latent = desc["model"]["latent_dim"].as_u64().unwrap() as usize;
    let hidden = desc["model"]["hidden"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .as_u64()
        .unwrap() as usize;
    let vae = read_safetensors(&cwd.join("vae-lorenz.safetensors"));
    assert_eq!(vae["mu.weight"].0, vec![latent, hidden]);
    assert_eq!(vae["mu.bias"].0, vec![latent]);
    // Conv1d weights are [out, in, kernel] in both.
    let gan = read_safetensors(&cwd.join("gan-kuramoto.safetensors"));
    assert!(
        gan.iter()
            .any(|(n, (s, _))| n.ends_with(".weight") && s.len() == 3),
        "{:?}",
        gan.keys()
    );

    // Python's safetensors and NumPy read every tensor with the same name, shape and values.
    let required = std::env::var("NEUROGEN_TEST_NUMPY").is_ok();
    let script = r#"
import json, sys
from safetensors.numpy import load_file
out = {}
for f in sys.argv[1:]:
    t = load_file(f)
    out[f] = {k: [list(v.shape), float(v.astype("float64").sum())] for k, v in t.items()}
print(json.dumps(out))
"#;
    let files: Vec<String> = families
        .iter()
        .map(|c| cwd.join(format!("{c}.safetensors")).display().to_string())
        .collect();
    let py = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(&files)
        .output();
    match py {
        Ok(o) if o.status.success() => {
            let got: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            for f in &files {
                let ours = read_safetensors(Path::new(f));
                let theirs = got[f].as_object().unwrap();
                assert_eq!(theirs.len(), ours.len(), "{f}");
                for (name, (shape, values)) in &ours {
                    assert_eq!(theirs[name][0], serde_json::json!(shape), "{f}: {name}");
                    let sum: f64 = values.iter().map(|&v| v as f64).sum();
                    let py_sum = theirs[name][1].as_f64().unwrap();
                    assert!(
                        (sum - py_sum).abs() <= 1e-9 * sum.abs().max(1.0),
                        "{f}: {name}: {sum} vs {py_sum}"
                    );
                }
            }
        }
        other => {
            assert!(
                !required,
                "NEUROGEN_TEST_NUMPY is set but python3 with safetensors failed: {other:?}"
            );
            eprintln!("skipping the Python check: python3 with safetensors not found");
        }
    }

    // Bad arguments.
    fails(
        cwd,
        &["export", "vae-lorenz", "-o", "x.pt"],
        2,
        "-o x.pt: expected a .safetensors file name",
    );
    let best = ["export", "vae-lorenz", "--best", "-o", "b.safetensors"];
    fails(cwd, &best, 2, "no best checkpoint");
}

/// The PyTorch port (scripts/neurogen_torch.py) reproduces `generate` of every family on the
/// export's reference draws. Runs where a Python with torch is found: NEUROGEN_TEST_TORCH_PYTHON
/// names one (CI does not install torch: ~3 GB of wheels would take much of its time budget).
#[test]
fn the_pytorch_port_reproduces_generate_of_every_family() {
    let python = std::env::var("NEUROGEN_TEST_TORCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let has_torch = Command::new(&python)
        .args(["-c", "import torch, safetensors, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_torch {
        assert!(
            std::env::var("NEUROGEN_TEST_TORCH_PYTHON").is_err(),
            "NEUROGEN_TEST_TORCH_PYTHON={python} cannot import torch"
        );
        eprintln!("skipping: no python with torch (set NEUROGEN_TEST_TORCH_PYTHON)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let mut files = Vec::new();
    for (config, extra) in [
        ("vae-lorenz", &[][..]),
        ("vae-kuramoto", &["model.likelihood=\"gaussian_ar1\""][..]),
        ("cvae-kuramoto", &[][..]),
        ("gan-kuramoto", &[][..]),
        ("gan-lorenz", &[][..]),
        ("gan-kuramoto", &["model.arch=\"mlp\""][..]),
        ("realnvp-kuramoto", &[][..]),
        ("realnvp-lorenz", &[][..]),
        ("latent-ode-lorenz", &[][..]),
        ("latent-ode-kuramoto", &[][..]),
        ("diffusion-kuramoto", &[][..]),
        ("diffusion-lorenz", &[][..]),
        ("wavenet-kuramoto", &[][..]),
        ("wavenet-lorenz", &[][..]),
        ("wavenet-lorenz", &["model.burn_in=7"][..]),
    ] {
        let name = format!("{config}-{}", files.len());
        let run = cwd.join(&name);
        ok(cwd, &args_of(&tiny_train_args(config, &run, 10, extra)));
        let out = cwd.join(format!("{name}.safetensors"));
        ok(
            cwd,
            &["export", run.to_str().unwrap(), "-o", out.to_str().unwrap()],
        );
        files.push(out.display().to_string());
    }
    let out = Command::new(&python)
        .arg(root().join("scripts/neurogen_torch.py"))
        .args(&files)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.matches("agrees within").count(), files.len(), "{text}");
}

#[test]
fn every_shipped_sweep_file_expands_into_checked_points() {
    let tmp = tempfile::tempdir().unwrap();
    let mut seen = 0;
    for entry in std::fs::read_dir(root().join("configs/sweeps")).unwrap() {
        let path = entry.unwrap().path();
        let out = tmp.path().join(path.file_stem().unwrap());
        let r = ok(
            tmp.path(),
            &[
                "sweep",
                path.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
        );
        let points: Vec<serde_json::Value> =
            serde_json::from_value(read_json(&out.join("points.json"))).unwrap();
        assert!(!points.is_empty(), "{}", path.display());
        assert_eq!(r.stdout.lines().count(), points.len(), "{}", r.stdout);
        for p in &points {
            let dir = out.join(p["index"].to_string());
            assert!(dir.join("experiment.toml").exists());
        }
        seen += 1;
    }
    assert!(seen >= 1);
}

#[test]
fn a_resweep_extends_finished_points_and_refuses_changes_to_started_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    // Right after expansion nothing has a loss yet: --collect lists the points by index.
    let file = sweep_file(cwd, "ext", "seed = [1, 2]", 20, "");
    ok(cwd, &["sweep", file.to_str().unwrap()]);
    let r = ok(cwd, &["sweep", "--collect", "sweeps/ext"]);
    assert!(r.stderr.contains("2 points (2 pending)"), "{}", r.stderr);
    ok(cwd, &["sweep", file.to_str().unwrap(), "--local"]);
    // More steps: both points are pending again and continue from step 20.
    let longer = sweep_file(cwd, "ext", "seed = [1, 2]", 30, "");
    let r = ok(cwd, &["sweep", "--collect", "sweeps/ext"]);
    assert!(r.stderr.contains("2 points (2 finished)"), "{}", r.stderr);
    ok(cwd, &["sweep", longer.to_str().unwrap()]);
    let r = ok(cwd, &["sweep", "--collect", "sweeps/ext"]);
    assert!(r.stderr.contains("2 points (2 pending)"), "{}", r.stderr);
    // Only the unfinished points go into a Slurm array.
    resume_point(cwd, "sweeps/ext/1");
    ok(cwd, &["sweep", longer.to_str().unwrap(), "--slurm"]);
    let script = std::fs::read_to_string(cwd.join("sweeps/ext/sweep.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --array=0%1\n"), "{script}");
    let r = ok(cwd, &["sweep", longer.to_str().unwrap(), "--local"]);
    assert!(
        r.stderr.contains("1 points already finished"),
        "{}",
        r.stderr
    );
    let s = status_of(&cwd.join("sweeps/ext/0"));
    assert_eq!(
        (s["attempt"].as_u64(), s["started_from"].as_u64()),
        (Some(2), Some(20))
    );
    // Another learning rate for points that have trained is not the same sweep.
    let text = std::fs::read_to_string(&longer).unwrap() + "\"train.lr\" = [0.5]\n";
    std::fs::write(&longer, text).unwrap();
    fails(
        cwd,
        &["sweep", longer.to_str().unwrap()],
        2,
        "sweeps/ext/0: this point has started, and the sweep now gives it another train.lr",
    );
}

#[test]
fn a_sweep_over_a_recording_settles_its_window_on_the_first_run() {
    // cvae-edf-epochs leaves window and stride to the data (its annotated epochs).
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let base = root().join("configs/cvae-edf-epochs.toml");
    let text = format!(
        "base = \"{}\"\n[axes]\nseed = [1, 2]\n\"train.steps\" = [4]\n",
        base.display()
    );
    std::fs::write(cwd.join("epochs.toml"), text).unwrap();
    ok(cwd, &["sweep", "epochs.toml", "--local", "-j", "2"]);
    let r = ok(cwd, &["sweep", "--collect", "sweeps/epochs"]);
    assert!(r.stderr.contains("2 points (2 finished)"), "{}", r.stderr);
    // Expanding it again keeps the settled window, so the points still resume.
    ok(cwd, &["sweep", "epochs.toml", "--local"]);
    resume_point(cwd, "sweeps/epochs/0");
}

#[test]
fn a_second_trainer_on_one_run_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let run = cwd.join("run");
    let mut args = tiny_train_args("vae-lorenz", &run, 40, &[]);
    let mut first = Command::new(binary())
        .args(&args)
        .current_dir(cwd)
        .env("NEUROGEN_FAULT_STALL_CHECKPOINT", "20")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(stalled(&mut first));
    args.push("--resume".into());
    let r = neurogen(cwd, &args_of(&args));
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(r.code, 2, "{}", r.stderr);
    let needle = "another neurogen process is training this run (pid";
    assert!(r.stderr.contains(needle), "{}", r.stderr);
    // Once it is gone, the run resumes.
    ok(cwd, &args_of(&args));
    assert_eq!(status_of(&run)["state"], "finished");
}
