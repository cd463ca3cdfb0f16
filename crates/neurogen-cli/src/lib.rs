//! The `neurogen` command line.
//!
//! The one design decision of this crate: **it is the only place that knows which backend
//! runs**. [`device_for`] maps the configured [`Backend`] to a burn `Device`; every other crate
//! takes a `Device` and never names a backend. It is also the only crate that reads argv, prints
//! errors for people and picks exit codes: 0 on success, 2 for the user's input (usage, config,
//! data, run directory), 1 for anything else, never a panic backtrace.

mod bench;
mod common;
mod data;
mod eval;
mod export;
mod inspect;
mod parity;
mod plot;
mod reproduce;
mod sample;
mod score;
mod sweep;
mod train;

use std::ffi::OsString;

use burn::tensor::Device;
use clap::{Parser, Subcommand};
use neurogen_train::Backend;

/// Train deep generative models of neural signals and sample synthetic data from them.
#[derive(Debug, Parser)]
#[command(name = "neurogen", version, about)]
pub struct Cli {
    /// More log output (-v info, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors: no progress, no summaries.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train the model an experiment file describes.
    Train(train::Args),
    /// Sample synthetic windows from a trained run.
    Sample(sample::Args),
    /// Write every window an experiment's [data] builds, in physical units.
    Data(data::Args),
    /// Score windows by their likelihood under a trained run (low = anomalous).
    ///
    /// RealNVP gives the exact log-likelihood; the VAE and the latent ODE give the IWAE bound
    /// with K samples (and the ELBO). Scores are in nats in the run's normalised units.
    Score(score::Args),
    /// Judge samples against real data: spectra, amplitudes, spike statistics, two-sample
    /// tests, likelihood, memorisation and latent recovery; writes report.json and figures.
    ///
    /// With a RUN_DIR, samples are drawn from the run (or read from --samples) and compared
    /// with its test split (or --against FILE). Without one, compares two .npy files of
    /// windows [n, channels, time]: --samples A.npy --against B.npy --sfreq HZ.
    Eval(eval::Args),
    /// Draw figures of a run (traces or rasters, PSD, loss curves, latents) or of an .npy file.
    Plot(plot::Args),
    /// Time the reference workloads (../shared/bench/WORKLOADS.md) on each backend: one JSON
    /// line per workload and backend, then a table.
    ///
    /// Each row runs in its own process (so its peak RSS is its own): 10 warm-up steps, then
    /// the median rate of 5 repeats of 50 steps. The models are the shipped configs under
    /// configs/bench/, trained exactly as `neurogen train` trains them.
    Bench(bench::Args),
    /// Check that backends agree: the same initial weights, batches and noise on each, then the
    /// loss and every parameter's gradient after one step and the loss curve after K steps,
    /// against tolerances; a JSON report.
    Parity(parity::Args),
    /// Show a run's resolved experiment, newest checkpoint and last metrics.
    Inspect(inspect::Args),
    /// Expand a sweep file into one run per point; run them here (--local), as a Slurm job
    /// array (--slurm), and gather their results (--collect).
    Sweep(sweep::Args),
    /// Retrain a run from its resolved experiment into a fresh directory and compare metrics and
    /// weights with the original: "identical", or the first step and term that differ.
    Reproduce(reproduce::Args),
    /// Write a run's weights as safetensors with PyTorch names and shapes, plus model.json.
    Export(export::Args),
}

impl Cli {
    fn dispatch(&self) -> anyhow::Result<()> {
        let quiet = self.quiet;
        match &self.command {
            Command::Train(a) => train::run(a, quiet),
            Command::Sample(a) => sample::run(a, quiet),
            Command::Data(a) => data::run(a, quiet),
            Command::Score(a) => score::run(a, quiet),
            Command::Eval(a) => eval::run(a, quiet),
            Command::Plot(a) => plot::run(a, quiet),
            Command::Bench(a) => bench::run(a, quiet),
            Command::Parity(a) => parity::run(a, quiet),
            Command::Inspect(a) => inspect::run(a),
            Command::Sweep(a) => sweep::run(a, quiet),
            Command::Reproduce(a) => reproduce::run(a, quiet),
            Command::Export(a) => export::run(a, quiet),
        }
    }
}

/// mimalloc keeps freed memory for reuse: burn allocates a fresh buffer for nearly every tensor
/// op (forward, backward, and burn's own Adam a dozen parameter-sized ones per step), and glibc's
/// malloc hands large buffers back to the kernel on free, so each one was paid again in page
/// faults.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's setting for how long freed memory stays mapped before it goes back to the kernel.
const PURGE_DELAY: &str = "MIMALLOC_PURGE_DELAY";
/// One second: a training step frees its forward pass's buffers during the backward pass and
/// asks for them again at the next step, 10–200 ms later. With mimalloc's default (10 ms) each
/// step gave them back to the kernel and faulted them in again, zeroed: 1.4–1.9× slower steps
/// for the diffusion and WaveNet workloads on the 2-core VM (README, "Round four"). A second
/// keeps them through the loop, and memory still goes back once a phase ends.
const PURGE_DELAY_MS: &str = "1000";

/// Starts this process again as itself with [`PURGE_DELAY`] set, unless it is set already (the
/// user's own value wins).
///
/// mimalloc reads its settings from the environment before `main`, and setting one from Rust
/// takes an `unsafe` call into C (`mi_option_set`), which this workspace forbids; `exec` keeps
/// the process id, the arguments (`argv[0]` included), the descriptors and the exit status, so
/// callers, pipes and signals see one `neurogen`. Returns only when it could not (no
/// `/proc/self/exe`, say): then the run goes on with mimalloc's defaults, slower, not wrong.
#[cfg(unix)]
pub fn reexec_with_allocator_settings() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os(PURGE_DELAY).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        command.arg0(arg0);
    }
    // `exec` returns only on failure; the error is ignored for the reason above.
    let _ = command.args(args).env(PURGE_DELAY, PURGE_DELAY_MS).exec();
}

/// Nothing to do where there is no `exec`.
#[cfg(not(unix))]
pub fn reexec_with_allocator_settings() {}

/// Exit code for bad usage, config or input.
pub const EXIT_USAGE: i32 = 2;

/// Maps a backend to its burn device, or a usage error naming the backends this build has.
///
/// Also points `BURN_DEVICE` at it, so the places where burn falls back to its default device
/// (optimiser state loaded from a checkpoint) use the same backend instead of probing for a GPU.
#[allow(deprecated)] // burn-ndarray is deprecated upstream but is this project's default CPU backend.
pub fn device_for(backend: Backend) -> anyhow::Result<Device> {
    ensure_built(backend)?;
    std::env::set_var("BURN_DEVICE", backend.name());
    Ok(match backend {
        #[cfg(feature = "ndarray")]
        Backend::Ndarray => Device::ndarray(),
        #[cfg(feature = "flex")]
        Backend::Flex => Device::flex(),
        #[cfg(feature = "wgpu")]
        Backend::Wgpu => Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
        // `ensure_built` turned away the backends this build lacks.
        #[allow(unreachable_patterns)]
        _ => Device::default(),
    })
}

/// The backends compiled into this binary (the cargo features `flex`, `ndarray`, `wgpu`).
pub const BUILT_BACKENDS: &[&str] = &[
    #[cfg(feature = "ndarray")]
    "ndarray",
    #[cfg(feature = "flex")]
    "flex",
    #[cfg(feature = "wgpu")]
    "wgpu",
];

/// A usage error unless `backend` is compiled into this binary.
pub(crate) fn ensure_built(backend: Backend) -> anyhow::Result<()> {
    built_in(backend, BUILT_BACKENDS)
}

fn built_in(backend: Backend, built: &[&str]) -> anyhow::Result<()> {
    if built.contains(&backend.name()) {
        return Ok(());
    }
    Err(common::UsageError(format!(
        "backend {}: not in this build of neurogen, which has {} (pass `--backend {}` or set \
         `backend` in the experiment file; or rebuild with the default features)",
        backend.name(),
        built.join(", "),
        built.first().unwrap_or(&"flex"),
    ))
    .into())
}

/// A CPU device for host-side work (eval's discriminator): flex where built in, else ndarray,
/// else burn's default device.
#[allow(deprecated, unreachable_code)]
pub fn host_device() -> Device {
    #[cfg(feature = "flex")]
    return Device::flex();
    #[cfg(feature = "ndarray")]
    return Device::ndarray();
    Device::default()
}

#[cfg(not(any(feature = "flex", feature = "ndarray", feature = "wgpu")))]
compile_error!("neurogen needs at least one backend: build with a feature flex, ndarray or wgpu");

/// Runs the command line `args` (program name first) and returns the exit code.
pub fn run<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    init_logging(cli.verbose, cli.quiet);
    // A panic is a bug of ours: report it in one line, not as a backtrace.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(|| on_worker_thread(|| cli.dispatch()));
    std::panic::set_hook(default_hook);
    match result {
        Ok(Ok(())) => 0,
        Ok(Err(e)) if is_broken_pipe(&e) => 0,
        Ok(Err(e)) => {
            eprintln!("neurogen: error: {}", common::describe(&e));
            common::exit_code(&e)
        }
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            // `println!` panics when stdout is a pipe whose reader has gone (`| head`): the
            // reader has what it wanted, so this is a normal end, as for other Unix tools.
            if msg.contains("failed printing to stdout") && msg.contains("Broken pipe") {
                return 0;
            }
            eprintln!("neurogen: internal error: {msg}");
            if msg.contains("wgpu") || msg.contains("adapter") || msg.contains("Vulkan") {
                eprintln!("hint: the wgpu backend found no usable GPU adapter; install a Vulkan driver (e.g. Debian's mesa-vulkan-drivers) or use --backend ndarray");
            }
            1
        }
    }
}

/// Whether `e` is a write to a closed pipe (see the panic case in [`run`]).
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Runs `f` on a thread of the compute pool rather than beside it.
///
/// The CPU backends split each large op over rayon's pool. Called from a thread outside the
/// pool, every such op parks the caller and wakes it again when the workers finish: two context
/// switches per op, which on the 2-core VM cost more than the second core gave (RealNVP training
/// ran faster on one thread than on two). On a pool thread the caller takes its own share of
/// the op and only the other workers are woken. The pool has `RAYON_NUM_THREADS` threads (rayon's
/// default: one per core), as the global pool would.
fn on_worker_thread<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    match rayon::ThreadPoolBuilder::new().build() {
        Ok(pool) => pool.install(f),
        Err(_) => f(),
    }
}

fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("NEUROGEN_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "neurogen={level},neurogen_train={level},neurogen_data={level},neurogen_cli={level}"
        ))
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backend_left_out_of_the_build_is_a_usage_error_naming_those_built_in() {
        let e = built_in(Backend::Ndarray, &["flex"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "backend ndarray: not in this build of neurogen, which has flex (pass `--backend \
             flex` or set `backend` in the experiment file; or rebuild with the default features)"
        );
        assert_eq!(common::exit_code(&e), EXIT_USAGE);
        assert!(built_in(Backend::Flex, &["flex"]).is_ok());
        // The default build has every backend.
        #[cfg(all(feature = "flex", feature = "ndarray", feature = "wgpu"))]
        for b in [Backend::Ndarray, Backend::Flex, Backend::Wgpu] {
            assert!(ensure_built(b).is_ok(), "{} missing", b.name());
        }
    }
}
